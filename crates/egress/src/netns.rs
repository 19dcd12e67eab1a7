//! Runs inside the job's fresh user+network namespace, before the job starts: a route that
//! keeps every destination on `lo`, nftables rules that hand outbound TCP to the proxy and all
//! DNS to the resolver and log and reject the rest, and the sockets the supervisor serves.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::OwnedFd;

use rustix::net::{AddressFamily, SocketFlags, SocketType, sockopt};

use crate::netlink::{self, Msg, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkError};
use crate::policy::{EgressPolicy, Mode};

/// Where the proxy listens inside the job's namespace, for explicit and transparent use.
pub const PROXY_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 3128);
/// Where the proxy takes the job's IPv6 TCP connections (transparent only: the proxy
/// variables name `PROXY_ADDR`).
pub const PROXY_ADDR6: SocketAddrV6 = SocketAddrV6::new(Ipv6Addr::LOCALHOST, 3128, 0, 0);
/// Where the resolver listens inside the job's namespace (UDP and TCP).
pub const DNS_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 53);
/// The nftables table stockade owns in the job's namespace.
pub const NFT_TABLE: &str = "stockade";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("egress mode is none: the sandbox must not set up egress")]
    ModeNone,
    #[error("create the {what} socket")]
    Socket {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("bind the {what} socket to {addr}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("listen on the {what} socket")]
    Listen {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("add the default routes via lo")]
    Route(#[source] NetlinkError),
    #[error("open the sock_diag socket that finds the process behind a connection")]
    SockDiag(#[source] NetlinkError),
    #[error("bind the NFLOG group {group} that logs refused packets")]
    Nflog {
        group: u16,
        #[source]
        source: NetlinkError,
    },
    #[error("install the nftables redirect rules (is nf_nat/nf_tables available?)")]
    Nftables(#[source] NetlinkError),
}

/// Sets up egress in the current network namespace and returns its sockets, in this order:
/// proxy (TCP), DNS (UDP), DNS (TCP), refused-packet log (NFLOG), sock_diag (NETLINK_SOCK_DIAG,
/// which answers for the namespace it was made in), and where `lo` has IPv6 the proxy's IPv6
/// listener (TCP, [::1]:3128). Call it in the job's namespace with its
/// capabilities, `lo` up, from a single thread: it spawns no thread and execs nothing.
pub fn setup_netns(policy: &EgressPolicy) -> Result<Vec<OwnedFd>, NetnsError> {
    if policy.mode == Mode::None {
        return Err(NetnsError::ModeNone);
    }
    let proxy = tcp_listener("proxy", PROXY_ADDR)?;
    let dns_udp = udp_socket("DNS (UDP)", DNS_ADDR)?;
    let dns_tcp = tcp_listener("DNS (TCP)", DNS_ADDR)?;
    // Bound before the rules exist, so that no refused packet goes unlogged.
    let nflog = crate::nflog::open().map_err(|source| NetnsError::Nflog {
        group: crate::nflog::GROUP,
        source,
    })?;
    let diag = netlink::sock_diag_socket().map_err(NetnsError::SockDiag)?;
    let ipv6 = ipv6_enabled();
    let proxy6 = if ipv6 {
        Some(tcp_listener("proxy (IPv6)", PROXY_ADDR6)?)
    } else {
        None
    };
    install_rules(ipv6).map_err(NetnsError::Nftables)?;
    add_default_routes(ipv6).map_err(NetnsError::Route)?;
    allow_ping_sockets();
    Ok([proxy, dns_udp, dns_tcp, nflog, diag]
        .into_iter()
        .chain(proxy6)
        .collect())
}

/// Whether `lo` of this namespace has IPv6: without it, IPv6 sockets reach nothing anyway.
fn ipv6_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv6/conf/lo/disable_ipv6").is_ok_and(|v| v.trim() == "0")
}

// ICMP echo ("ping") sockets for the job's groups: without them a job's ping fails at socket()
// and leaves no trace; with them its echo requests reach the firewall, which logs and rejects
// them (the job never has CAP_NET_RAW, so raw sockets stay impossible). Best effort: the
// range must consist of groups mapped in this user namespace, read from gid_map.
fn allow_ping_sockets() {
    let Ok(map) = std::fs::read_to_string("/proc/self/gid_map") else {
        return;
    };
    let ranges: Vec<(u64, u64)> = map
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(|x| x.parse::<u64>().ok());
            let (inside, _, count) = (f.next()??, f.next()??, f.next()??);
            (count > 0).then(|| (inside, inside + count - 1))
        })
        .collect();
    let (Some(lo), Some(hi)) = (ranges.iter().map(|r| r.0).min(), ranges.iter().map(|r| r.1).max()) else {
        return;
    };
    // The kernel takes gids up to 2^31 - 1.
    let hi = hi.min(i32::MAX as u64);
    let _ = std::fs::write("/proc/sys/net/ipv4/ping_group_range", format!("{lo} {hi}"));
}

fn tcp_listener(what: &'static str, addr: impl Into<SocketAddr>) -> Result<OwnedFd, NetnsError> {
    let addr: SocketAddr = addr.into();
    let family = if addr.is_ipv6() {
        AddressFamily::INET6
    } else {
        AddressFamily::INET
    };
    let fd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(|e| NetnsError::Socket { what, source: e.into() })?;
    sockopt::set_socket_reuseaddr(&fd, true).map_err(|e| NetnsError::Socket { what, source: e.into() })?;
    rustix::net::bind(&fd, &addr).map_err(|e| NetnsError::Bind {
        what,
        addr,
        source: e.into(),
    })?;
    rustix::net::listen(&fd, 4096).map_err(|e| NetnsError::Listen { what, source: e.into() })?;
    Ok(fd)
}

fn udp_socket(what: &'static str, addr: SocketAddrV4) -> Result<OwnedFd, NetnsError> {
    let fd = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(|e| NetnsError::Socket { what, source: e.into() })?;
    rustix::net::bind(&fd, &SocketAddr::V4(addr)).map_err(|e| NetnsError::Bind {
        what,
        addr: addr.into(),
        source: e.into(),
    })?;
    Ok(fd)
}

// `ip route add default dev lo src 127.0.0.1`: every IPv4 destination leaves through lo, where
// the nat rules catch it. The source must be 127.0.0.1: with no source the kernel picks 0.0.0.0
// and the replies of the redirected connection would have nowhere to go. With IPv6, also
// `ip -6 route add default dev lo src ::1`: IPv6 follows the IPv4 policy (TCP to the proxy, the
// rest logged and refused); without a route its packets would fail unseen with ENETUNREACH
// before reaching the rules. Both in one netlink round trip.
fn add_default_routes(ipv6: bool) -> Result<(), NetlinkError> {
    let mut msgs = vec![default_route(2, &Ipv4Addr::LOCALHOST.octets(), 1)];
    let mut acked = vec![(1, "default route")];
    if ipv6 {
        msgs.push(default_route(10, &Ipv6Addr::LOCALHOST.octets(), 2));
        acked.push((2, "IPv6 default route"));
    }
    let fd = netlink::route_socket()?;
    netlink::transact(&fd, &msgs, &acked)
}

fn default_route(family: u8, src: &[u8], seq: u32) -> Vec<u8> {
    const RTM_NEWROUTE: u16 = 24;
    const RTA_OIF: u16 = 4;
    const RTA_PREFSRC: u16 = 7;
    const LOOPBACK_IFINDEX: u32 = 1; // lo is always interface 1 of a network namespace
    let rtmsg = [
        family, // AF_INET or AF_INET6
        0,      // dst_len: default route
        0,      // src_len
        0,      // tos
        254,    // RT_TABLE_MAIN
        4,      // RTPROT_STATIC
        0,      // RT_SCOPE_UNIVERSE
        1,      // RTN_UNICAST
        0, 0, 0, 0, // flags
    ];
    Msg::new(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq)
        .raw(&rtmsg)
        .ne32(RTA_OIF, LOOPBACK_IFINDEX)
        .attr(RTA_PREFSRC, src)
        .finish()
}

// The ruleset, as `nft list ruleset` shows it:
//
// table ip stockade {
//   chain nat_out { type nat hook output priority -100; policy accept;
//     udp dport 53 redirect to :53          # all DNS, to any address, to the resolver
//     tcp dport 53 redirect to :53
//     ip daddr 127.0.0.0/8 return           # the job's own loopback traffic stays its own
//     meta l4proto tcp redirect to :3128    # every other TCP connection, to the proxy
//   }
//   chain filter_out { type filter hook output priority 0; policy accept;
//     ip daddr != 127.0.0.0/8 log group 7 snaplen 128   # UDP, ICMP and the rest: logged,
//     ip daddr != 127.0.0.0/8 reject                    # then they fail at once
//   }
// }
// table ip6 stockade {                    # only where lo has IPv6; the resolver gives out no
//   chain nat_out { type nat hook output priority -100; policy accept;   # IPv6 addresses, so
//     ip6 daddr ::1 return                  # these are IP literals
//     meta l4proto tcp redirect to :3128    # to the proxy's [::1]:3128: same policy as IPv4
//   }
//   chain filter_out { type filter hook output priority 0; policy accept;
//     ip6 daddr != ::1 log group 7 snaplen 128                # UDP (DNS too: the resolver is
//     ip6 daddr != ::1 reject with icmpv6 port-unreachable    # IPv4), ICMPv6, the rest
//   }
// }
mod nft {
    pub const SUBSYS: u16 = 10; // NFNL_SUBSYS_NFTABLES
    pub const BATCH_BEGIN: u16 = 0x10;
    pub const BATCH_END: u16 = 0x11;
    pub const NEWTABLE: u16 = 0;
    pub const NEWCHAIN: u16 = 3;
    pub const NEWRULE: u16 = 6;
    pub const NFPROTO_IPV4: u8 = 2;
    pub const NFPROTO_IPV6: u8 = 10;
    pub const HOOK_LOCAL_OUT: u32 = 3;
    pub const NF_ACCEPT: u32 = 1;
    pub const REG_VERDICT: u32 = 0;
    pub const REG_1: u32 = 1;
    pub const META_L4PROTO: u32 = 16;
    pub const PAYLOAD_NETWORK: u32 = 1;
    pub const PAYLOAD_TRANSPORT: u32 = 2;
    pub const CMP_EQ: u32 = 0;
    pub const CMP_NEQ: u32 = 1;
    pub const NFT_RETURN: i32 = -5;
    pub const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 2;
}

fn nfgenmsg(family: u8, res_id: u16) -> [u8; 4] {
    let r = res_id.to_be_bytes();
    [family, 0, r[0], r[1]]
}

/// One nftables expression appended to a rule's expression list.
enum Expr {
    MetaL4Proto,
    Payload {
        base: u32,
        offset: u32,
        len: u32,
    },
    Cmp {
        op: u32,
        data: Vec<u8>,
    },
    Immediate(Vec<u8>),
    Return,
    Redirect,
    /// ICMP (or ICMPv6) destination unreachable with this code.
    Reject(u8),
    Log,
}

fn push_expr(m: Msg, e: &Expr) -> Msg {
    const LIST_ELEM: u16 = 1;
    const EXPR_NAME: u16 = 1;
    const EXPR_DATA: u16 = 2;
    const DATA_VALUE: u16 = 1;
    const DATA_VERDICT: u16 = 2;
    let name = match e {
        Expr::MetaL4Proto => "meta",
        Expr::Payload { .. } => "payload",
        Expr::Cmp { .. } => "cmp",
        Expr::Immediate(_) | Expr::Return => "immediate",
        Expr::Redirect => "redir",
        Expr::Reject(_) => "reject",
        Expr::Log => "log",
    };
    let m = m.begin(LIST_ELEM).str(EXPR_NAME, name).begin(EXPR_DATA);
    let m = match e {
        Expr::MetaL4Proto => m.be32(1, nft::REG_1).be32(2, nft::META_L4PROTO),
        Expr::Payload { base, offset, len } => m.be32(1, nft::REG_1).be32(2, *base).be32(3, *offset).be32(4, *len),
        Expr::Cmp { op, data } => m.be32(1, nft::REG_1).be32(2, *op).begin(3).attr(DATA_VALUE, data).end(),
        Expr::Immediate(data) => m.be32(1, nft::REG_1).begin(2).attr(DATA_VALUE, data).end(),
        Expr::Return => m
            .be32(1, nft::REG_VERDICT)
            .begin(2)
            .begin(DATA_VERDICT)
            .be32(1, nft::NFT_RETURN as u32)
            .end()
            .end(),
        Expr::Redirect => m.be32(1, nft::REG_1).be32(3, nft::NF_NAT_RANGE_PROTO_SPECIFIED),
        // NFT_REJECT_ICMP_UNREACH with the family's code for "port unreachable".
        Expr::Reject(code) => m.be32(1, 0).attr(2, &[*code]),
        // NFTA_LOG_GROUP, NFTA_LOG_SNAPLEN: the NFLOG group that crate::nflog reads.
        Expr::Log => m
            .attr(1, &crate::nflog::GROUP.to_be_bytes())
            .be32(3, crate::nflog::SNAPLEN),
    };
    m.end().end()
}

fn rule(seq: u32, chain: &str, exprs: &[Expr]) -> Vec<u8> {
    rule_in(nft::NFPROTO_IPV4, seq, chain, exprs)
}

fn rule_in(family: u8, seq: u32, chain: &str, exprs: &[Expr]) -> Vec<u8> {
    let mut m = Msg::new(
        (nft::SUBSYS << 8) | nft::NEWRULE,
        NLM_F_REQUEST | NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK,
        seq,
    )
    .raw(&nfgenmsg(family, 0))
    .str(1, NFT_TABLE)
    .str(2, chain)
    .begin(4);
    for e in exprs {
        m = push_expr(m, e);
    }
    m.end().finish()
}

fn chain(seq: u32, name: &str, kind: &str, priority: i32) -> Vec<u8> {
    chain_in(nft::NFPROTO_IPV4, seq, name, kind, priority)
}

fn chain_in(family: u8, seq: u32, name: &str, kind: &str, priority: i32) -> Vec<u8> {
    Msg::new(
        (nft::SUBSYS << 8) | nft::NEWCHAIN,
        NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK,
        seq,
    )
    .raw(&nfgenmsg(family, 0))
    .str(1, NFT_TABLE)
    .str(3, name)
    .begin(4)
    .be32(1, nft::HOOK_LOCAL_OUT)
    .be32(2, priority as u32)
    .end()
    .be32(5, nft::NF_ACCEPT)
    .str(7, kind)
    .finish()
}

fn table(family: u8, seq: u32) -> Vec<u8> {
    Msg::new(
        (nft::SUBSYS << 8) | nft::NEWTABLE,
        NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK,
        seq,
    )
    .raw(&nfgenmsg(family, 0))
    .str(1, NFT_TABLE)
    .be32(2, 0)
    .finish()
}

fn install_rules(ipv6: bool) -> Result<(), NetlinkError> {
    let proto = |p: u8| Expr::Cmp {
        op: nft::CMP_EQ,
        data: vec![p],
    };
    let not_loopback = |then: Expr| {
        vec![
            Expr::Payload {
                base: nft::PAYLOAD_NETWORK,
                offset: 16,
                len: 1,
            },
            Expr::Cmp {
                op: nft::CMP_NEQ,
                data: vec![127],
            },
            then,
        ]
    };
    let not_loopback6 = |then: Expr| {
        vec![
            Expr::Payload {
                base: nft::PAYLOAD_NETWORK,
                offset: 24,
                len: 16,
            },
            Expr::Cmp {
                op: nft::CMP_NEQ,
                data: Ipv6Addr::LOCALHOST.octets().to_vec(),
            },
            then,
        ]
    };
    const ICMP_PORT_UNREACH: u8 = 3;
    const ICMPV6_PORT_UNREACH: u8 = 4;
    let port = |p: u16| p.to_be_bytes().to_vec();
    let dns = DNS_ADDR.port();
    let proxy = PROXY_ADDR.port();
    // udp|tcp dport 53 redirect to :53
    let dns_redirect = |seq: u32, l4: u8| {
        rule(
            seq,
            "nat_out",
            &[
                Expr::MetaL4Proto,
                proto(l4),
                Expr::Payload {
                    base: nft::PAYLOAD_TRANSPORT,
                    offset: 2,
                    len: 2,
                },
                Expr::Cmp {
                    op: nft::CMP_EQ,
                    data: port(dns),
                },
                Expr::Immediate(port(dns)),
                Expr::Redirect,
            ],
        )
    };

    let batch_begin = Msg::new(nft::BATCH_BEGIN, NLM_F_REQUEST, 0)
        .raw(&nfgenmsg(0, nft::SUBSYS))
        .finish();
    let mut msgs = vec![
        batch_begin,
        table(nft::NFPROTO_IPV4, 1),
        chain(2, "nat_out", "nat", -100),
        chain(3, "filter_out", "filter", 0),
        dns_redirect(4, 17),
        dns_redirect(5, 6),
        rule(
            6,
            "nat_out",
            &[
                Expr::Payload {
                    base: nft::PAYLOAD_NETWORK,
                    offset: 16,
                    len: 1,
                },
                Expr::Cmp {
                    op: nft::CMP_EQ,
                    data: vec![127],
                },
                Expr::Return,
            ],
        ),
        rule(
            7,
            "nat_out",
            &[
                Expr::MetaL4Proto,
                proto(6),
                Expr::Immediate(port(proxy)),
                Expr::Redirect,
            ],
        ),
        rule(8, "filter_out", &not_loopback(Expr::Log)),
        rule(9, "filter_out", &not_loopback(Expr::Reject(ICMP_PORT_UNREACH))),
    ];
    let mut acked = vec![
        (1, "table"),
        (2, "chain nat_out"),
        (3, "chain filter_out"),
        (4, "rule: udp dport 53 redirect"),
        (5, "rule: tcp dport 53 redirect"),
        (6, "rule: loopback return"),
        (7, "rule: tcp redirect to proxy"),
        (8, "rule: log the rest"),
        (9, "rule: reject the rest"),
    ];
    if ipv6 {
        let v6 = nft::NFPROTO_IPV6;
        msgs.extend([
            table(v6, 10),
            chain_in(v6, 11, "filter_out", "filter", 0),
            chain_in(v6, 12, "nat_out", "nat", -100),
            rule_in(
                v6,
                13,
                "nat_out",
                &[
                    Expr::Payload {
                        base: nft::PAYLOAD_NETWORK,
                        offset: 24,
                        len: 16,
                    },
                    Expr::Cmp {
                        op: nft::CMP_EQ,
                        data: Ipv6Addr::LOCALHOST.octets().to_vec(),
                    },
                    Expr::Return,
                ],
            ),
            rule_in(
                v6,
                14,
                "nat_out",
                &[
                    Expr::MetaL4Proto,
                    proto(6),
                    Expr::Immediate(port(proxy)),
                    Expr::Redirect,
                ],
            ),
            rule_in(v6, 15, "filter_out", &not_loopback6(Expr::Log)),
            rule_in(v6, 16, "filter_out", &not_loopback6(Expr::Reject(ICMPV6_PORT_UNREACH))),
        ]);
        acked.extend([
            (10, "ip6 table"),
            (11, "ip6 chain filter_out"),
            (12, "ip6 chain nat_out"),
            (13, "ip6 rule: loopback return"),
            (14, "ip6 rule: tcp redirect to proxy"),
            (15, "ip6 rule: log all but ::1"),
            (16, "ip6 rule: reject all but ::1"),
        ]);
    }
    msgs.push(
        Msg::new(nft::BATCH_END, NLM_F_REQUEST, 17)
            .raw(&nfgenmsg(0, nft::SUBSYS))
            .finish(),
    );
    netlink::ack_last_only(&mut msgs);
    let fd = netlink::netfilter_socket()?;
    netlink::transact(&fd, &msgs, &acked)
}
