//! The kernel's process-event connector (NETLINK_CONNECTOR, CN_IDX_PROC): every fork, exec and
//! exit on the host, sent by the kernel itself, so the job can neither skip nor forge them.

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::{AddressFamily, Protocol, RecvFlags, SendFlags, SocketFlags, SocketType};

const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDR: usize = 16;
const CN_MSG_HDR: usize = 20;
/// The proc_event's union starts after `what`, `cpu` and `timestamp_ns`.
const EVENT_DATA: usize = NLMSG_HDR + CN_MSG_HDR + 16;

const EV_FORK: u32 = 0x1;
const EV_EXEC: u32 = 0x2;
const EV_UID: u32 = 0x4;
const EV_PTRACE: u32 = 0x100;
const EV_EXIT: u32 = 0x8000_0000;

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("open a NETLINK_CONNECTOR socket (needs root): {0}")]
    Socket(#[source] std::io::Error),
    #[error("bind to the proc connector group: {0}")]
    Bind(#[source] std::io::Error),
    #[error("subscribe to process events (needs CAP_NET_ADMIN in the host's namespaces): {0}")]
    Subscribe(#[source] std::io::Error),
    #[error("read process events: {0}")]
    Recv(#[source] std::io::Error),
}

/// One process event, pids as the host sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcEvent {
    Fork {
        parent_tgid: u32,
        child_pid: u32,
        child_tgid: u32,
    },
    Exec {
        pid: u32,
        tgid: u32,
    },
    /// `code` is a wait status: exit status << 8, or the terminating signal.
    Exit {
        pid: u32,
        tgid: u32,
        code: u32,
    },
    Uid {
        tgid: u32,
        ruid: u32,
        euid: u32,
    },
    /// `tracer_tgid` 0 means detach.
    Ptrace {
        tgid: u32,
        tracer_tgid: u32,
    },
}

/// A timestamped event (CLOCK_MONOTONIC nanoseconds, as the kernel stamped it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamped {
    pub ns: u64,
    pub event: ProcEvent,
}

/// A subscribed connector socket. Subscribe before the job's first process exists: the
/// kernel queues events from then on, whenever they are read.
pub struct Connector {
    fd: OwnedFd,
}

impl Connector {
    pub fn open() -> Result<Connector, ConnectorError> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            Some(Protocol::from_raw(rustix::net::RawProtocol::new(11).expect("non-zero"))),
        )
        .map_err(|e| ConnectorError::Socket(e.into()))?;
        // A burst of short processes must not overflow the queue before we read it.
        if rustix::net::sockopt::set_socket_recv_buffer_size_force(&fd, 32 << 20).is_err() {
            let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&fd, 32 << 20);
        }
        let addr = SocketAddrNetlink::new(0, CN_IDX_PROC);
        rustix::net::bind(&fd, &addr).map_err(|e| ConnectorError::Bind(e.into()))?;
        let mut msg = Vec::with_capacity(NLMSG_HDR + CN_MSG_HDR + 8);
        let total = (NLMSG_HDR + CN_MSG_HDR + 8) as u32;
        msg.extend_from_slice(&total.to_ne_bytes());
        msg.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&std::process::id().to_ne_bytes());
        msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
        msg.extend_from_slice(&0u32.to_ne_bytes()); // ack
        msg.extend_from_slice(&8u16.to_ne_bytes()); // len of the payload
        msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
        // proc_input: the op, then (kernels >= 6.6) which events we want; older ones read only the op.
        msg.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
        msg.extend_from_slice(&(EV_FORK | EV_EXEC | EV_UID | EV_PTRACE | EV_EXIT).to_ne_bytes());
        rustix::net::sendto(&fd, &msg, SendFlags::empty(), &SocketAddrNetlink::new(0, CN_IDX_PROC))
            .map_err(|e| ConnectorError::Subscribe(e.into()))?;
        Ok(Connector { fd })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Reads what is queued without blocking. `Ok(None)` when nothing is; events lost to a full
    /// queue show as `lost`.
    pub fn read(&self, buf: &mut [u8], out: &mut Vec<Stamped>, lost: &mut u64) -> Result<bool, ConnectorError> {
        match rustix::net::recv(&self.fd, &mut *buf, RecvFlags::DONTWAIT) {
            Ok((n, _)) => {
                parse(&buf[..n.min(buf.len())], out);
                Ok(true)
            }
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => Ok(false),
            Err(rustix::io::Errno::NOBUFS) => {
                *lost += 1;
                Ok(true)
            }
            Err(e) => Err(ConnectorError::Recv(e.into())),
        }
    }
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4)
        .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_ne_bytes(a))
}

/// Parses one datagram (one or more netlink messages) into events; unknown kinds are skipped.
pub fn parse(mut b: &[u8], out: &mut Vec<Stamped>) {
    while b.len() >= NLMSG_HDR {
        let len = u32_at(b, 0).unwrap_or(0) as usize;
        if len < NLMSG_HDR || len > b.len() {
            return;
        }
        let m = &b[..len];
        if let Some(ev) = parse_one(m) {
            out.push(ev);
        }
        // Netlink messages are 4-byte aligned.
        let next = (len + 3) & !3;
        b = b.get(next..).unwrap_or(&[]);
    }
}

fn parse_one(m: &[u8]) -> Option<Stamped> {
    let idx = u32_at(m, NLMSG_HDR)?;
    if idx != CN_IDX_PROC {
        return None;
    }
    let base = NLMSG_HDR + CN_MSG_HDR;
    let what = u32_at(m, base)?;
    let ns = u64_at(m, base + 8)?;
    let d = |i: usize| u32_at(m, EVENT_DATA + 4 * i);
    let event = match what {
        EV_FORK => ProcEvent::Fork {
            parent_tgid: d(1)?,
            child_pid: d(2)?,
            child_tgid: d(3)?,
        },
        EV_EXEC => ProcEvent::Exec {
            pid: d(0)?,
            tgid: d(1)?,
        },
        EV_EXIT => ProcEvent::Exit {
            pid: d(0)?,
            tgid: d(1)?,
            code: d(2)?,
        },
        EV_UID => ProcEvent::Uid {
            tgid: d(1)?,
            ruid: d(2)?,
            euid: d(3)?,
        },
        EV_PTRACE => ProcEvent::Ptrace {
            tgid: d(1)?,
            tracer_tgid: d(3)?,
        },
        _ => return None,
    };
    Some(Stamped { ns, event })
}

/// CLOCK_MONOTONIC now, in the connector's unit.
pub fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(what: u32, ns: u64, data: &[u32]) -> Vec<u8> {
        let mut m = Vec::new();
        let len = (EVENT_DATA + 4 * data.len()) as u32;
        m.extend_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(&[0u8; 12]);
        m.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        m.extend_from_slice(&[0u8; 16]);
        m.extend_from_slice(&what.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&ns.to_ne_bytes());
        for v in data {
            m.extend_from_slice(&v.to_ne_bytes());
        }
        m
    }

    #[test]
    fn parses_fork_exec_exit_and_skips_unknown() {
        let mut b = msg(EV_FORK, 5, &[10, 10, 11, 11]);
        b.extend(msg(0x200, 6, &[11, 11, 0, 0]));
        b.extend(msg(EV_EXEC, 7, &[11, 11]));
        b.extend(msg(EV_EXIT, 8, &[11, 11, 256, 17, 10, 10]));
        let mut out = Vec::new();
        parse(&b, &mut out);
        assert_eq!(
            out.iter().map(|s| s.event).collect::<Vec<_>>(),
            vec![
                ProcEvent::Fork {
                    parent_tgid: 10,
                    child_pid: 11,
                    child_tgid: 11
                },
                ProcEvent::Exec { pid: 11, tgid: 11 },
                ProcEvent::Exit {
                    pid: 11,
                    tgid: 11,
                    code: 256
                },
            ]
        );
        assert_eq!(out[2].ns, 8);
    }

    #[test]
    fn truncated_messages_are_ignored() {
        let b = msg(EV_FORK, 5, &[10, 10, 11, 11]);
        let mut out = Vec::new();
        parse(&b[..b.len() - 3], &mut out);
        assert!(out.is_empty());
    }
}
