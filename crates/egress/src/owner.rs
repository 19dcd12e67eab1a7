//! Names the job process behind each attempt (pid, comm, exe) for its event: the socket's inode
//! from the job netns' /proc tables, then the job process holding it, on a thread of its own.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Which /proc/net table holds the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    Tcp,
    Udp,
    /// ICMP echo ("ping") sockets; their port is the echo identifier.
    Icmp,
}

/// A socket of the job, by its local address inside the job's network namespace, and for TCP
/// the address it is connected to (what the job connected to, before any redirect), which
/// allows an exact lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub table: Table,
    pub local: SocketAddr,
    pub remote: Option<SocketAddr>,
}

/// The job process that held the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// In the supervisor's pid namespace (the host's), like the monitor's pids.
    pub pid: u32,
    pub comm: Option<String>,
    pub exe: Option<String>,
}

impl Owner {
    pub fn fill(&self, e: &mut crate::log::EgressEvent) {
        e.pid = Some(self.pid);
        e.comm.clone_from(&self.comm);
        e.exe.clone_from(&self.exe);
    }
}

/// Where one lookup's answer lands; `None` once looked up and not found.
#[derive(Debug, Default)]
pub struct Slot {
    value: OnceLock<Option<Owner>>,
    done: tokio::sync::Notify,
}

impl Slot {
    pub fn get(&self) -> Option<&Owner> {
        self.value.get().and_then(Option::as_ref)
    }

    fn set(&self, v: Option<Owner>) {
        let _ = self.value.set(v);
        self.done.notify_waiters();
    }

    /// Waits until the lookup has run, at most `cap` (a stuck /proc read must not hold up the
    /// job's connection for long).
    pub async fn settled(&self, cap: Duration) {
        let wait = async {
            loop {
                let notified = self.done.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.value.get().is_some() {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(cap, wait).await;
    }
}

enum Req {
    Find(Key, Arc<Slot>),
    Barrier(Sender<()>),
}

/// The lookup thread of one job. The proxy and resolver only see an address (the job-side end of
/// a connection, the source of a datagram); at accept or receive time a lookup is queued here.
/// The thread finds the socket's inode (TCP: sock_diag in the job's namespace; UDP, ICMP:
/// `/proc/<init>/net/{udp,icmp}[6]`), then `/proc/<pid>/fd` of the job's processes for the one
/// holding `socket:[inode]`; requests that arrive together share one pass. A socket closed
/// before its lookup runs has no owner: its event carries no pid. The thread starts at the
/// first lookup, so a job that never uses the network never pays for it.
pub struct Owners {
    init: Option<u32>,
    diag: Mutex<Option<OwnedFd>>,
    tx: Mutex<Option<Sender<Req>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Lookups queued and not yet answered.
    outstanding: Arc<AtomicUsize>,
    stopped: AtomicBool,
}

impl std::fmt::Debug for Owners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owners")
            .field("init", &self.init)
            .finish_non_exhaustive()
    }
}

impl Owners {
    /// `init_pid`: a process in the job's network namespace for as long as the job runs (the
    /// sandbox's init). `None`: every lookup answers "unknown" at once. `diag`: a
    /// NETLINK_SOCK_DIAG socket made in the job's namespace, for exact TCP and UDP lookups.
    pub fn new(init_pid: Option<i32>, diag: Option<OwnedFd>) -> Owners {
        Owners {
            init: init_pid.filter(|p| *p > 0).map(|p| p as u32),
            diag: Mutex::new(diag),
            tx: Mutex::new(None),
            thread: Mutex::new(None),
            outstanding: Arc::new(AtomicUsize::new(0)),
            stopped: AtomicBool::new(false),
        }
    }

    /// Queues a lookup and returns where its answer will be.
    pub fn find(&self, key: Key) -> Arc<Slot> {
        let slot = Arc::new(Slot::default());
        let mut tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        if tx.is_none() && !self.stopped.load(Ordering::Relaxed) {
            *tx = self.spawn();
        }
        self.outstanding.fetch_add(1, Ordering::SeqCst);
        let sent = tx
            .as_ref()
            .is_some_and(|t| t.send(Req::Find(key, slot.clone())).is_ok());
        if !sent {
            self.outstanding.fetch_sub(1, Ordering::SeqCst);
            slot.set(None);
        }
        slot
    }

    fn spawn(&self) -> Option<Sender<Req>> {
        let init = self.init?;
        let diag = self.diag.lock().unwrap_or_else(|p| p.into_inner()).take();
        let (tx, rx) = channel();
        let outstanding = self.outstanding.clone();
        // Without the thread, lookups answer "unknown": events lose their pid, nothing else.
        let thread = std::thread::Builder::new()
            .name("stockade-egress-pids".into())
            .spawn(move || serve(init, diag, rx, &outstanding))
            .ok()?;
        *self.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread);
        Some(tx)
    }

    /// Returns once every lookup queued before it has run.
    pub fn barrier(&self) {
        if self.outstanding.load(Ordering::SeqCst) == 0 {
            return;
        }
        let (tx, rx) = channel();
        let sent = match &*self.tx.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(q) => q.send(Req::Barrier(tx)).is_ok(),
            None => false,
        };
        if sent {
            let _ = rx.recv();
        }
    }

    /// Ends the thread after the lookups already queued; later lookups answer "unknown".
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Owners {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Processes that held a looked-up socket lately, most recent first: a process that opens one
/// connection often opens more, and checking it first skips the walk of the job's processes.
const RECENT: usize = 8;

fn serve(init: u32, diag: Option<OwnedFd>, rx: Receiver<Req>, outstanding: &AtomicUsize) {
    let mut recent: Vec<u32> = Vec::with_capacity(RECENT + 1);
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut finds = Vec::new();
        let mut barriers = Vec::new();
        for r in batch {
            match r {
                Req::Find(k, s) => finds.push((k, s)),
                Req::Barrier(b) => barriers.push(b),
            }
        }
        if !finds.is_empty() {
            let keys: Vec<Key> = finds.iter().map(|(k, _)| *k).collect();
            let found = lookup(init, diag.as_ref(), &keys, &mut recent);
            for (k, s) in finds {
                s.set(found.get(&k).cloned());
                outstanding.fetch_sub(1, Ordering::SeqCst);
            }
        }
        for b in barriers {
            let _ = b.send(());
        }
    }
}

/// A row of a /proc/net table: local address, local port, socket inode.
type Row = (IpAddr, u16, u64);

/// One pass for a batch of keys.
fn lookup(init: u32, diag: Option<&OwnedFd>, keys: &[Key], recent: &mut Vec<u32>) -> HashMap<Key, Owner> {
    let mut tables: HashMap<(Table, bool), Vec<Row>> = HashMap::new();
    let mut inode_of: HashMap<Key, u64> = HashMap::new();
    for k in keys {
        // Reading /proc/net/tcp walks the kernel's whole connection hash table (milliseconds,
        // /proc/net/udp a fraction of one); sock_diag finds one socket by its addresses.
        if let (Table::Tcp | Table::Udp, Some(remote), Some(diag)) = (k.table, k.remote, diag) {
            if let Some(ino) = diag_inode(diag, k.table, k.local, remote) {
                inode_of.insert(*k, ino);
                continue;
            }
            // A UDP socket connected elsewhere than its datagram went (a redirected DNS
            // question) is only found by its local address.
            if k.table == Table::Tcp {
                continue;
            }
        }
        let v6 = k.local.is_ipv6();
        let rows = tables.entry((k.table, v6)).or_insert_with(|| {
            let file = match (k.table, v6) {
                (Table::Tcp, false) => "tcp",
                (Table::Tcp, true) => "tcp6",
                (Table::Udp, false) => "udp",
                (Table::Udp, true) => "udp6",
                (Table::Icmp, false) => "icmp",
                (Table::Icmp, true) => "icmp6",
            };
            std::fs::read_to_string(format!("/proc/{init}/net/{file}"))
                .map(|t| parse_table(&t))
                .unwrap_or_default()
        });
        if let Some(ino) = find_inode(rows, k) {
            inode_of.insert(*k, ino);
        }
    }
    if inode_of.is_empty() {
        return HashMap::new();
    }
    let wanted: HashSet<u64> = inode_of.values().copied().collect();
    let holders = holders(init, &wanted, recent);
    for pid in holders.values() {
        recent.retain(|p| p != pid);
        recent.insert(0, *pid);
        recent.truncate(RECENT);
    }
    inode_of
        .into_iter()
        .filter_map(|(k, ino)| holders.get(&ino).map(|&pid| (k, describe(pid))))
        .collect()
}

/// The inode of the TCP socket at `local` connected to `remote`, or of the UDP socket at `local`
/// that takes datagrams from `remote`, asked of sock_diag (the netlink socket was made in the
/// job's network namespace, so the kernel answers for that namespace).
fn diag_inode(diag: &OwnedFd, table: Table, local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    let family: u8 = if local.is_ipv6() { 10 } else { 2 };
    let words = |ip: IpAddr| -> [u8; 16] {
        match ip {
            IpAddr::V4(v4) => {
                let mut w = [0u8; 16];
                w[..4].copy_from_slice(&v4.octets());
                w
            }
            IpAddr::V6(v6) => v6.octets(),
        }
    };
    let remote = match (local, remote) {
        // The job's IPv6 socket may have reached an IPv4-mapped address.
        (SocketAddr::V6(_), SocketAddr::V4(r)) => SocketAddr::new(IpAddr::V6(r.ip().to_ipv6_mapped()), r.port()),
        _ => remote,
    };
    // TCP names the socket's own end as the source; UDP looks up the receiver of a datagram
    // from src to dst, so its own end is the destination ("swapped for historical reasons").
    let (protocol, src, dst) = match table {
        Table::Tcp => (6u8, local, remote),
        Table::Udp => (17u8, remote, local),
        Table::Icmp => return None,
    };
    // struct inet_diag_req_v2: family, protocol, ext, pad, states, then inet_diag_sockid:
    // sport, dport (big-endian), src[16], dst[16], if, cookie[2] (INET_DIAG_NOCOOKIE).
    let mut req = vec![family, protocol, 0, 0];
    req.extend_from_slice(&u32::MAX.to_ne_bytes());
    req.extend_from_slice(&src.port().to_be_bytes());
    req.extend_from_slice(&dst.port().to_be_bytes());
    req.extend_from_slice(&words(src.ip()));
    req.extend_from_slice(&words(dst.ip()));
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]);
    let msg = crate::netlink::Msg::new(SOCK_DIAG_BY_FAMILY, crate::netlink::NLM_F_REQUEST, 1)
        .raw(&req)
        .finish();
    rustix::net::send(diag, &msg, rustix::net::SendFlags::empty()).ok()?;
    let mut buf = [0u8; 1024];
    let (n, _) = rustix::net::recv(diag, &mut buf[..], rustix::net::RecvFlags::empty()).ok()?;
    let b = &buf[..n.min(buf.len())];
    // One answer: nlmsghdr (16), then struct inet_diag_msg: family, state, timer, retrans,
    // sockid (48), expires, rqueue, wqueue, uid, inode; or an NLMSG_ERROR (not found).
    let kind = u16::from_ne_bytes(b.get(4..6)?.try_into().ok()?);
    if kind != SOCK_DIAG_BY_FAMILY {
        return None;
    }
    let ino = u32::from_ne_bytes(b.get(16 + 68..16 + 72)?.try_into().ok()?);
    (ino != 0).then_some(u64::from(ino))
}

/// A socket bound to the wildcard address also matches (an unconnected UDP socket that sent).
fn find_inode(rows: &[Row], k: &Key) -> Option<u64> {
    let exact = rows
        .iter()
        .find(|(a, p, ino)| *ino != 0 && *p == k.local.port() && *a == k.local.ip());
    let any = || {
        rows.iter()
            .find(|(a, p, ino)| *ino != 0 && *p == k.local.port() && a.is_unspecified())
    };
    exact.or_else(any).map(|r| r.2)
}

/// Rows of a /proc/net/{tcp,udp,icmp}[6] table: local address, local port, inode.
fn parse_table(text: &str) -> Vec<Row> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let local = f.nth(1)?;
            let inode = f.nth(7)?.parse().ok()?;
            let (addr, port) = local.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            Some((parse_hex_addr(addr)?, port, inode))
        })
        .collect()
}

// The kernel prints each 32-bit word of the address as a native-endian number in hex.
fn parse_hex_addr(s: &str) -> Option<IpAddr> {
    let word = |w: &str| u32::from_str_radix(w, 16).ok().map(u32::to_ne_bytes);
    match s.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(s)?))),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(&s[i * 8..i * 8 + 8])?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// For each wanted inode, a process in the job's network namespace that holds it: first among
/// the `recent` holders, then the descendants of the job's init (the job, however big the
/// host), then, for what is still missing (a process that left the tree), among every process
/// in that namespace.
fn holders(init: u32, wanted: &HashSet<u64>, recent: &[u32]) -> HashMap<u64, u32> {
    let mut found = HashMap::new();
    let Ok(ns) = std::fs::metadata(format!("/proc/{init}/ns/net")) else {
        return found;
    };
    let in_job_ns = |pid: u32| {
        std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| m.dev() == ns.dev() && m.ino() == ns.ino())
    };
    for &pid in recent {
        if in_job_ns(pid) && scan_fds(pid, wanted, &mut found) {
            return found;
        }
    }
    let mut tree = descendants(init);
    // The process that just connected is most often the newest one.
    tree.sort_unstable_by(|a, b| b.cmp(a));
    tree.retain(|p| !recent.contains(p));
    for &pid in &tree {
        if in_job_ns(pid) && scan_fds(pid, wanted, &mut found) {
            return found;
        }
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    let seen: HashSet<u32> = tree.into_iter().chain(recent.iter().copied()).collect();
    let mut rest: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|p| !seen.contains(p))
        .collect();
    rest.sort_unstable_by(|a, b| b.cmp(a));
    for pid in rest {
        if in_job_ns(pid) && scan_fds(pid, wanted, &mut found) {
            break;
        }
    }
    found
}

/// `init` and its descendants, from /proc/PID/task/TID/children.
fn descendants(init: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![init];
    while let Some(pid) = todo.pop() {
        out.push(pid);
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            todo.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
    }
    out
}

/// Records which wanted inodes `pid` holds; true once all are found.
fn scan_fds(pid: u32, wanted: &HashSet<u64>, found: &mut HashMap<u64, u32>) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    for fd in fds.flatten() {
        let Ok(target) = std::fs::read_link(fd.path()) else {
            continue;
        };
        let ino = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse::<u64>().ok());
        if let Some(ino) = ino.filter(|i| wanted.contains(i)) {
            found.entry(ino).or_insert(pid);
        }
    }
    found.len() == wanted.len()
}

fn describe(pid: u32) -> Owner {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end_matches('\n').to_string());
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| p.to_str().map(str::to_string));
    Owner { pid, comm, exe }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tables_parse() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:0C38 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1148 1 0 100 0 0 10 0\n   1: 0100007F:D2F0 0100007F:0C38 01 00000000:00000000 00:00000000 00000000  1000        0 0 1 0\n";
        let rows = parse_table(tcp);
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(rows, vec![(lo, 3128, 1148), (lo, 0xd2f0, 0)]);
        let key = |port| Key {
            table: Table::Tcp,
            local: SocketAddr::new(lo, port),
            remote: None,
        };
        assert_eq!(find_inode(&rows, &key(3128)), Some(1148));
        // Inode 0: a socket in TIME_WAIT, whose process has let it go.
        assert_eq!(find_inode(&rows, &key(0xd2f0)), None);
        let udp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n  5: 00000000000000000000000000000000:A1B2 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 777 2 0 0\n  6: 00000000000000000000000001000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 778 2 0 0\n";
        let rows = parse_table(udp6);
        assert_eq!(rows[1].0, IpAddr::V6(Ipv6Addr::LOCALHOST));
        let k = Key {
            table: Table::Udp,
            local: "[::1]:41394".parse().unwrap(),
            remote: None,
        };
        // Bound to the wildcard address: it matches any local address with its port.
        assert_eq!(find_inode(&rows, &k), Some(777));
    }
}
