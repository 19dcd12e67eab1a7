//! Turns every packet the job's firewall refuses (UDP other than DNS, ICMP, IPv6, other IP
//! protocols) into an event: the reject rules first log to an NFLOG group that is read here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::Arc;

use rustix::net::{RecvFlags, sockopt};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::log::{Pending, Protocol, Verdict, Via};
use crate::netlink::{self, Msg, NLM_F_ACK, NLM_F_REQUEST, NetlinkError};
use crate::owner::{Key, Table};
use crate::state::State;

/// The NFLOG group of the reject rules (groups are per network namespace).
pub const GROUP: u16 = 7;
/// Bytes of each refused packet copied to the supervisor: the IP header, IPv6 extension headers
/// and the start of the transport header, never the payload.
pub const SNAPLEN: u32 = 128;

const SUBSYS_ULOG: u16 = 4;
const MSG_PACKET: u16 = 0;
const MSG_CONFIG: u16 = 1;
const CFG_CMD: u16 = 1;
const CFG_MODE: u16 = 2;
const CFG_QTHRESH: u16 = 5;
const CFG_FLAGS: u16 = 6;
const CMD_BIND: u8 = 1;
const COPY_PACKET: u8 = 2;
const F_SEQ: u16 = 1;
const ATTR_PAYLOAD: u16 = 9;
const ATTR_SEQ: u16 = 12;
const RCVBUF: usize = 1 << 20;

/// Binds the NFLOG group in the current network namespace (which needs its CAP_NET_ADMIN, so
/// the sandbox's init does it) and returns the socket that receives the refused packets.
pub fn open() -> Result<OwnedFd, NetlinkError> {
    let fd = netlink::netfilter_socket()?;
    // Room for a burst; a flood beyond it is dropped by the kernel and counted from the gaps
    // in the sequence numbers. The kernel caps this at net.core.rmem_max.
    let _ = sockopt::set_socket_recv_buffer_size(&fd, RCVBUF);
    let g = GROUP.to_be_bytes();
    let mut mode = SNAPLEN.to_be_bytes().to_vec();
    mode.extend_from_slice(&[COPY_PACKET, 0]);
    let msg = Msg::new((SUBSYS_ULOG << 8) | MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, 1)
        .raw(&[0, 0, g[0], g[1]])
        .attr(CFG_CMD, &[CMD_BIND])
        .attr(CFG_MODE, &mode)
        // One packet per message, sent at once: the kernel's default batches up to 100 packets
        // or a second, and a job that ends sooner would take its last ones along.
        .be32(CFG_QTHRESH, 1)
        .attr(CFG_FLAGS, &F_SEQ.to_be_bytes())
        .finish();
    netlink::transact(&fd, &[msg], &[(1, "bind the NFLOG group")])?;
    Ok(fd)
}

/// Reads refused packets until the runtime stops; each becomes one event (up to the cap).
/// `sock` is the NFLOG netlink socket from `open`, registered with the runtime through the
/// UdpSocket type (only its readiness is used; receiving goes through rustix).
pub async fn serve(state: Arc<State>, sock: UdpSocket) {
    let mut buf = vec![0u8; 64 << 10];
    let mut seq = Gaps::default();
    loop {
        if sock.readable().await.is_err() {
            return;
        }
        let r = sock.try_io(Interest::READABLE, || {
            rustix::net::recv(&sock, &mut buf[..], RecvFlags::DONTWAIT).map_err(std::io::Error::from)
        });
        match r {
            Ok((n, _)) => {
                let n = n.min(buf.len());
                for (n, packet) in messages(&buf[..n]) {
                    state.sink.lost_packets(seq.lost_before(n));
                    if state.sink.admit_packet() {
                        log_packet(&state, packet);
                    }
                }
            }
            // ENOBUFS: the socket overflowed; the next sequence number tells how much was lost.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOBUFS.raw_os_error()) => {}
            Err(_) => return,
        }
    }
}

/// Counts the packets the kernel logged but could not deliver (the socket was full), from the
/// gaps in the instance's sequence numbers.
#[derive(Debug, Default)]
struct Gaps {
    next: Option<u32>,
}

impl Gaps {
    fn lost_before(&mut self, seq: Option<u32>) -> u64 {
        let Some(seq) = seq else {
            return 0;
        };
        let lost = self.next.map_or(0, |want| u64::from(seq.wrapping_sub(want)));
        self.next = Some(seq.wrapping_add(1));
        lost
    }
}

/// The packet messages of one datagram: (sequence number, packet bytes from the IP header).
fn messages(mut d: &[u8]) -> Vec<(Option<u32>, &[u8])> {
    let mut out = Vec::new();
    while d.len() >= 16 {
        let len = u32::from_ne_bytes([d[0], d[1], d[2], d[3]]) as usize;
        let kind = u16::from_ne_bytes([d[4], d[5]]);
        if len < 16 || len > d.len() {
            break;
        }
        if kind == (SUBSYS_ULOG << 8) | MSG_PACKET && len >= 20 {
            let (mut seq, mut payload) = (None, None);
            let mut a = &d[20..len];
            while a.len() >= 4 {
                let alen = u16::from_ne_bytes([a[0], a[1]]) as usize;
                let akind = u16::from_ne_bytes([a[2], a[3]]) & 0x3fff;
                if alen < 4 || alen > a.len() {
                    break;
                }
                let v = &a[4..alen];
                match akind {
                    ATTR_PAYLOAD => payload = Some(v),
                    ATTR_SEQ if v.len() == 4 => seq = Some(u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
                    _ => {}
                }
                a = &a[((alen + 3) & !3).min(a.len())..];
            }
            if let Some(p) = payload {
                out.push((seq, p));
            }
        }
        d = &d[((len + 3) & !3).min(d.len())..];
    }
    out
}

/// What the event needs from a refused packet's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub protocol: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Source and destination ports (TCP, UDP); for an ICMP echo request the source "port" is
    /// its identifier, which is what the job's ping socket is bound to.
    pub sport: u16,
    pub dport: u16,
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

/// Parses the IP and transport headers of a packet, `None` if it is not IP.
pub fn parse_packet(p: &[u8]) -> Option<Packet> {
    let (protocol, src, dst, mut l4) = match p.first()? >> 4 {
        4 if p.len() >= 20 => {
            let ihl = usize::from(p[0] & 0xf) * 4;
            let src: [u8; 4] = p[12..16].try_into().ok()?;
            let dst: [u8; 4] = p[16..20].try_into().ok()?;
            let l4 = p.get(ihl..).unwrap_or(&[]);
            // Only the first fragment carries the transport header.
            let offset = u16::from_be_bytes([p[6], p[7]]) & 0x1fff;
            let l4 = if offset == 0 { l4 } else { &[][..] };
            (
                p[9],
                IpAddr::V4(Ipv4Addr::from(src)),
                IpAddr::V4(Ipv4Addr::from(dst)),
                l4,
            )
        }
        6 if p.len() >= 40 => {
            let src: [u8; 16] = p[8..24].try_into().ok()?;
            let dst: [u8; 16] = p[24..40].try_into().ok()?;
            (
                p[6],
                IpAddr::V6(Ipv6Addr::from(src)),
                IpAddr::V6(Ipv6Addr::from(dst)),
                &p[40..],
            )
        }
        _ => return None,
    };
    let mut protocol = protocol;
    if src.is_ipv6() {
        // Hop-by-hop, routing, destination options, fragment: step over them (a few at most).
        for _ in 0..4 {
            match protocol {
                0 | 43 | 60 if l4.len() >= 2 => {
                    let n = (usize::from(l4[1]) + 1) * 8;
                    protocol = l4[0];
                    l4 = l4.get(n..).unwrap_or(&[]);
                }
                44 if l4.len() >= 8 => {
                    let first = u16::from_be_bytes([l4[2], l4[3]]) & 0xfff8 == 0;
                    protocol = l4[0];
                    l4 = if first { &l4[8..] } else { &[] };
                }
                _ => break,
            }
        }
    }
    let be16 = |b: &[u8], i: usize| b.get(i..i + 2).map(|x| u16::from_be_bytes([x[0], x[1]]));
    let (sport, dport) = match protocol {
        TCP | UDP => (be16(l4, 0).unwrap_or(0), be16(l4, 2).unwrap_or(0)),
        // Echo requests (8, 128): the identifier names the job's ping socket.
        ICMP | ICMPV6 if matches!(l4.first(), Some(8) | Some(128)) => (be16(l4, 4).unwrap_or(0), 0),
        _ => (0, 0),
    };
    Some(Packet {
        protocol,
        src,
        dst,
        sport,
        dport,
    })
}

fn log_packet(state: &State, bytes: &[u8]) {
    let Some(pk) = parse_packet(bytes) else {
        return;
    };
    let (protocol, table) = match pk.protocol {
        UDP => (Protocol::Udp, Some(Table::Udp)),
        ICMP | ICMPV6 => (Protocol::Icmp, Some(Table::Icmp)),
        TCP => (Protocol::Tcp, Some(Table::Tcp)),
        _ => (Protocol::Other, None),
    };
    let mut p = Pending::new(state.sink.clone(), protocol, Via::Firewall, pk.dport);
    let source = SocketAddr::new(pk.src, pk.sport);
    if let Some(table) = table.filter(|_| pk.sport != 0) {
        p.owner = Some(state.owners.find(Key {
            table,
            local: source,
            remote: Some(SocketAddr::new(pk.dst, pk.dport)),
        }));
    }
    p.event.source = Some(source);
    p.event.client_target = Some(SocketAddr::new(pk.dst, pk.dport));
    p.event.verdict = Verdict::Refused;
    p.event.rule = match (pk.dst, protocol) {
        // The resolver is IPv4: over IPv6, DNS too is refused.
        (IpAddr::V6(_), Protocol::Udp) => "IPv6 UDP is refused".into(),
        (_, Protocol::Udp) => "UDP other than DNS is refused".into(),
        (_, Protocol::Icmp) => "ICMP is refused".into(),
        (_, Protocol::Tcp) => "TCP around the proxy is refused".into(),
        _ => format!("IP protocol {} is refused", pk.protocol),
    };
    p.finish(None);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0, 127, 0, 0, 1, 10, 214, 5, 2,
        ];
        p.extend_from_slice(l4);
        p
    }

    #[test]
    fn packets_parse() {
        let udp = parse_packet(&v4(UDP, &[0xa1, 0xb2, 0x27, 0x0f, 0, 9, 0, 0])).unwrap();
        assert_eq!(udp.protocol, UDP);
        assert_eq!((udp.sport, udp.dport), (0xa1b2, 9999));
        assert_eq!(udp.dst, "10.214.5.2".parse::<IpAddr>().unwrap());
        // Echo request: type 8, code 0, checksum, identifier 0x1234, sequence 1.
        let ping = parse_packet(&v4(ICMP, &[8, 0, 0, 0, 0x12, 0x34, 0, 1])).unwrap();
        assert_eq!((ping.sport, ping.dport), (0x1234, 0));
        // A later fragment carries no transport header.
        let mut frag = v4(UDP, &[1, 2, 3, 4]);
        frag[7] = 8;
        assert_eq!(parse_packet(&frag).unwrap().dport, 0);
        let mut six = vec![0x60, 0, 0, 0, 0, 8, 60, 64];
        six.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        six.extend_from_slice(&"fd00:214::2".parse::<Ipv6Addr>().unwrap().octets());
        // Destination options (8 bytes), then TCP to port 8080.
        six.extend_from_slice(&[TCP, 0, 0, 0, 0, 0, 0, 0]);
        six.extend_from_slice(&[0xc0, 0x01, 0x1f, 0x90]);
        let t = parse_packet(&six).unwrap();
        assert_eq!((t.protocol, t.sport, t.dport), (TCP, 0xc001, 8080));
        assert_eq!(parse_packet(&[0x45, 0]), None);
        assert_eq!(parse_packet(&[]), None);
    }

    #[test]
    fn nflog_messages_parse() {
        let pkt = v4(UDP, &[0, 1, 0, 2, 0, 8, 0, 0]);
        let mut m = Msg::new((SUBSYS_ULOG << 8) | MSG_PACKET, 0, 0)
            .raw(&[2, 0, 0, 7])
            .attr(ATTR_SEQ, &41u32.to_be_bytes())
            .attr(ATTR_PAYLOAD, &pkt)
            .finish();
        let second = Msg::new((SUBSYS_ULOG << 8) | MSG_PACKET, 0, 0)
            .raw(&[2, 0, 0, 7])
            .attr(ATTR_PAYLOAD, &pkt)
            .finish();
        m.extend_from_slice(&second);
        let got = messages(&m);
        assert_eq!(got, vec![(Some(41), &pkt[..]), (None, &pkt[..])]);
        // Truncated input ends the walk without a panic.
        assert_eq!(messages(&m[..10]), vec![]);
        assert_eq!(messages(&m[..m.len() - 3]).len(), 1);
    }

    #[test]
    fn sequence_gaps_count_lost_packets() {
        let mut g = Gaps::default();
        assert_eq!(g.lost_before(Some(0)), 0);
        assert_eq!(g.lost_before(Some(1)), 0);
        assert_eq!(g.lost_before(Some(5)), 3);
        assert_eq!(g.lost_before(None), 0);
        assert_eq!(g.lost_before(Some(6)), 0);
        let mut w = Gaps { next: Some(u32::MAX) };
        assert_eq!(w.lost_before(Some(1)), 2);
    }
}
