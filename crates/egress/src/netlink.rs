//! A minimal netlink message writer and acknowledgement reader, enough to add one route and one
//! nftables ruleset without exec'ing `ip` and `nft` (each costs milliseconds per job).
//! No permissively licensed crate speaks nf_tables netlink (rustables is GPL), so this is ours.

use std::os::fd::OwnedFd;

use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, netlink};

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("open netlink socket")]
    Socket(#[source] std::io::Error),
    #[error("send netlink request")]
    Send(#[source] std::io::Error),
    #[error("read netlink answer")]
    Recv(#[source] std::io::Error),
    #[error("malformed netlink answer")]
    Malformed,
    #[error("kernel refused message {index} ({what})")]
    Refused {
        index: usize,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Clears NLM_F_ACK on every message but the last that has it: the kernel runs a batch in
/// order and reports any failing message anyway, so one acknowledgement says all went through
/// (saving a receive per message).
pub fn ack_last_only(msgs: &mut [Vec<u8>]) {
    let flags = |m: &Vec<u8>| u16::from_ne_bytes([m[6], m[7]]);
    let Some(last) = msgs.iter().rposition(|m| m.len() >= 16 && flags(m) & NLM_F_ACK != 0) else {
        return;
    };
    for m in msgs[..last].iter_mut().filter(|m| m.len() >= 16) {
        let f = flags(m) & !NLM_F_ACK;
        m[6..8].copy_from_slice(&f.to_ne_bytes());
    }
}

/// One netlink message being written: header, fixed part, then attributes.
pub struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Msg {
    pub fn new(kind: u16, flags: u16, seq: u32) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
        Msg { buf, nests: Vec::new() }
    }

    /// The fixed-size family header (rtmsg, nfgenmsg, ...), already 4-byte aligned.
    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.buf.extend_from_slice(bytes);
        self.pad();
        self
    }

    fn pad(&mut self) {
        while self.buf.len() & 3 != 0 {
            self.buf.push(0);
        }
    }

    pub fn attr(mut self, kind: u16, data: &[u8]) -> Self {
        let len = u16::try_from(4 + data.len()).expect("netlink attribute fits in 64 KiB");
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    pub fn str(self, kind: u16, s: &str) -> Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v)
    }

    pub fn be32(self, kind: u16, v: u32) -> Self {
        self.attr(kind, &v.to_be_bytes())
    }

    pub fn ne32(self, kind: u16, v: u32) -> Self {
        self.attr(kind, &v.to_ne_bytes())
    }

    pub fn begin(mut self, kind: u16) -> Self {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    pub fn end(mut self) -> Self {
        let start = self.nests.pop().expect("end() matches begin()");
        let len = u16::try_from(self.buf.len() - start).expect("nested attribute fits");
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    pub fn finish(mut self) -> Vec<u8> {
        assert!(self.nests.is_empty(), "unbalanced nested attributes");
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

fn socket(protocol: Option<rustix::net::Protocol>) -> Result<OwnedFd, NetlinkError> {
    rustix::net::socket_with(AddressFamily::NETLINK, SocketType::RAW, SocketFlags::CLOEXEC, protocol)
        .map_err(|e| NetlinkError::Socket(e.into()))
}

pub fn route_socket() -> Result<OwnedFd, NetlinkError> {
    // NETLINK_ROUTE is protocol 0, which rustix spells as "no protocol".
    socket(None)
}

pub fn netfilter_socket() -> Result<OwnedFd, NetlinkError> {
    socket(Some(netlink::NETFILTER))
}

pub fn sock_diag_socket() -> Result<OwnedFd, NetlinkError> {
    socket(Some(netlink::SOCK_DIAG))
}

/// Sends `msgs` in one datagram and waits for the acknowledgement of every message carrying
/// NLM_F_ACK; an error for any message fails. `acked` names messages by sequence number, for
/// errors.
pub fn transact(fd: &OwnedFd, msgs: &[Vec<u8>], acked: &[(u32, &'static str)]) -> Result<(), NetlinkError> {
    let datagram: Vec<u8> = msgs.concat();
    let n = rustix::net::send(fd, &datagram, SendFlags::empty()).map_err(|e| NetlinkError::Send(e.into()))?;
    if n != datagram.len() {
        return Err(NetlinkError::Send(std::io::Error::other("short send")));
    }
    let flagged = |m: &Vec<u8>| m.len() >= 16 && u16::from_ne_bytes([m[6], m[7]]) & NLM_F_ACK != 0;
    let seq_of = |m: &Vec<u8>| u32::from_ne_bytes([m[8], m[9], m[10], m[11]]);
    let mut pending: Vec<u32> = msgs.iter().filter(|m| flagged(m)).map(seq_of).collect();
    let mut buf = vec![0u8; 16384];
    while !pending.is_empty() {
        let (n, _) =
            rustix::net::recv(fd, &mut buf[..], RecvFlags::empty()).map_err(|e| NetlinkError::Recv(e.into()))?;
        let mut off = 0;
        while off + 16 <= n {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
            let seq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().unwrap());
            if len < 16 || off + len > n {
                return Err(NetlinkError::Malformed);
            }
            if kind == NLMSG_ERROR {
                if len < 20 {
                    return Err(NetlinkError::Malformed);
                }
                let code = i32::from_ne_bytes(buf[off + 16..off + 20].try_into().unwrap());
                if code != 0 {
                    return Err(NetlinkError::Refused {
                        index: seq as usize,
                        what: acked.iter().find(|a| a.0 == seq).map_or("batch", |a| a.1),
                        source: std::io::Error::from_raw_os_error(-code),
                    });
                }
                pending.retain(|s| *s != seq);
            }
            off += (len + 3) & !3;
        }
    }
    Ok(())
}
