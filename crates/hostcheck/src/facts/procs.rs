//! Processes and listening sockets, from `/proc` under the root: the live /proc when the root is
//! `/`, the fake entries of a fixture tree otherwise (an unmounted image simply has none).

use crate::host::Host;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    /// The kernel's `comm` (Name: in status), at most 15 bytes.
    pub name: String,
    pub cmdline: Vec<String>,
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub cap_eff: u64,
    pub cap_prm: u64,
}

impl Proc {
    /// "pid 812 Runner.Listener (uid 1001)" style label for evidence.
    pub fn label(&self) -> String {
        format!("pid {} {}", self.pid, self.name)
    }

    pub fn argv0_base(&self) -> &str {
        self.cmdline
            .first()
            .map(|a| a.rsplit('/').next().unwrap_or(a))
            .unwrap_or("")
    }

    /// The value following `flag` (`--flag value` or `--flag=value`).
    pub fn arg_value(&self, flags: &[&str]) -> Option<String> {
        arg_value(&self.cmdline, flags)
    }
}

pub fn arg_value(argv: &[String], flags: &[&str]) -> Option<String> {
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        for f in flags {
            if a == f {
                return it.next().cloned();
            }
            if let Some(v) = a.strip_prefix(&format!("{f}=")) {
                return Some(v.to_string());
            }
        }
    }
    None
}

/// All user-space processes. An absent /proc gives an empty list; vanished pids are skipped.
pub fn list(host: &Host) -> Result<Vec<Proc>, String> {
    let pids = match host.read_dir("/proc") {
        Ok(names) => names,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    let mut out = Vec::new();
    for name in pids {
        let Ok(pid) = name.parse::<u32>() else {
            continue;
        };
        let Ok(status) = host.read_string(&format!("/proc/{pid}/status")) else {
            continue;
        };
        let Some(mut p) = parse_status(pid, &status) else {
            continue;
        };
        // Kernel threads have an empty cmdline; they are children of kthreadd (pid 2).
        let cmdline = host.read(&format!("/proc/{pid}/cmdline")).unwrap_or_default();
        p.cmdline = split_cmdline(&cmdline);
        if p.cmdline.is_empty() && (p.ppid == 2 || pid == 2) {
            continue;
        }
        out.push(p);
    }
    Ok(out)
}

pub fn split_cmdline(raw: &[u8]) -> Vec<String> {
    raw.split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

pub fn parse_status(pid: u32, text: &str) -> Option<Proc> {
    let mut p = Proc {
        pid,
        ppid: 0,
        name: String::new(),
        cmdline: Vec::new(),
        uid: u32::MAX,
        euid: u32::MAX,
        gid: u32::MAX,
        groups: Vec::new(),
        cap_eff: 0,
        cap_prm: 0,
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let mut nums = value.split_whitespace();
        match key {
            "Name" => p.name = value.to_string(),
            "PPid" => p.ppid = value.parse().unwrap_or(0),
            "Uid" => {
                p.uid = nums.next()?.parse().ok()?;
                p.euid = nums.next().and_then(|n| n.parse().ok()).unwrap_or(p.uid);
            }
            "Gid" => p.gid = nums.next()?.parse().ok()?,
            "Groups" => p.groups = nums.filter_map(|n| n.parse().ok()).collect(),
            "CapEff" => p.cap_eff = u64::from_str_radix(value, 16).unwrap_or(0),
            "CapPrm" => p.cap_prm = u64::from_str_radix(value, 16).unwrap_or(0),
            _ => {}
        }
    }
    (p.uid != u32::MAX).then_some(p)
}

/// Capability names by bit number (linux/capability.h).
const CAP_NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// "cap_net_admin,cap_sys_admin" or "all (0x000001ffffffffff)" for a full set.
pub fn cap_names(mask: u64) -> String {
    if mask == 0 {
        return "none".into();
    }
    let known: u64 = (1u64 << CAP_NAMES.len()) - 1;
    if mask & known == known {
        return format!("all ({mask:#018x})");
    }
    (0..64)
        .filter(|b| mask & (1u64 << b) != 0)
        .map(|b| match CAP_NAMES.get(b) {
            Some(n) => format!("cap_{n}"),
            None => format!("cap_{b}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub proto: &'static str,
    pub addr: std::net::IpAddr,
    pub port: u16,
    pub inode: u64,
    pub uid: u32,
}

impl Listener {
    pub fn is_loopback(&self) -> bool {
        match self.addr {
            std::net::IpAddr::V4(a) => a.is_loopback(),
            std::net::IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        }
    }

    pub fn endpoint(&self) -> String {
        match self.addr {
            std::net::IpAddr::V4(a) => format!("{}/{a}:{}", self.proto, self.port),
            std::net::IpAddr::V6(a) => format!("{}/[{a}]:{}", self.proto, self.port),
        }
    }
}

/// Listening TCP sockets and bound, unconnected UDP sockets. Ok(None) when /proc/net is absent.
pub fn listeners(host: &Host) -> Result<Option<Vec<Listener>>, String> {
    let mut out = Vec::new();
    let mut any = false;
    for (file, proto, v6) in [
        ("/proc/net/tcp", "tcp", false),
        ("/proc/net/tcp6", "tcp", true),
        ("/proc/net/udp", "udp", false),
        ("/proc/net/udp6", "udp", true),
    ] {
        match host.read_string(file) {
            Ok(text) => {
                any = true;
                out.extend(parse_proc_net(&text, proto, v6));
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(any.then_some(out))
}

pub fn parse_proc_net(text: &str, proto: &'static str, v6: bool) -> Vec<Listener> {
    // TCP_LISTEN is 0x0A; a bound UDP socket with no peer shows TCP_CLOSE (0x07).
    let want = if proto == "tcp" { "0A" } else { "07" };
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || f[3] != want {
            continue;
        }
        let Some((addr_hex, port_hex)) = f[1].split_once(':') else {
            continue;
        };
        let Ok(port) = u16::from_str_radix(port_hex, 16) else {
            continue;
        };
        let Some(addr) = parse_hex_addr(addr_hex, v6) else {
            continue;
        };
        out.push(Listener {
            proto,
            addr,
            port,
            uid: f[7].parse().unwrap_or(u32::MAX),
            inode: f[9].parse().unwrap_or(0),
        });
    }
    out
}

/// /proc/net addresses are the in-memory words printed as hex: each 32-bit word little-endian.
fn parse_hex_addr(hex: &str, v6: bool) -> Option<std::net::IpAddr> {
    // Slicing below is by byte; a file from an image may hold anything.
    if !hex.is_ascii() {
        return None;
    }
    let words: Vec<u32> = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).ok())
        .collect::<Option<_>>()?;
    if !v6 {
        let [w] = words[..] else { return None };
        return Some(std::net::Ipv4Addr::from(w.to_le_bytes()).into());
    }
    if words.len() != 4 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, w) in words.iter().enumerate() {
        bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    Some(std::net::Ipv6Addr::from(bytes).into())
}

/// Which processes hold each socket inode, from /proc/<pid>/fd links; pids whose fds cannot be
/// read (another user's, when unprivileged) are counted in the second value.
pub fn socket_owners(host: &Host, procs: &[Proc], inodes: &[u64]) -> (Vec<(u64, u32)>, usize) {
    let mut found = Vec::new();
    let mut unreadable = 0;
    for p in procs {
        let dir = format!("/proc/{}/fd", p.pid);
        let Ok(fds) = host.read_dir(&dir) else {
            unreadable += 1;
            continue;
        };
        let mut denied = false;
        for fd in fds {
            let target = match host.read_link(&format!("{dir}/{fd}")) {
                Ok(t) => t,
                Err(e) => {
                    denied |= !e.is_not_found();
                    continue;
                }
            };
            if let Some(ino) = target
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse::<u64>().ok())
                && inodes.contains(&ino)
                && !found.contains(&(ino, p.pid))
            {
                found.push((ino, p.pid));
            }
        }
        if denied {
            unreadable += 1;
        }
    }
    (found, unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_caps() {
        let p = parse_status(
            7,
            "Name:\tRunner.Listener\nPPid:\t1\nUid:\t1001\t1001\t1001\t1001\nGid:\t1001\t1001\t1001\t1001\nGroups:\t998 1001 \nCapPrm:\t0000000000003000\nCapEff:\t0000000000000000\n",
        )
        .unwrap();
        assert_eq!((p.uid, p.gid, p.ppid), (1001, 1001, 1));
        assert_eq!(p.groups, vec![998, 1001]);
        assert_eq!(cap_names(p.cap_prm), "cap_net_admin,cap_net_raw");
        assert_eq!(cap_names(0x000001ffffffffff), "all (0x000001ffffffffff)");
        assert_eq!(cap_names(0), "none");
    }

    #[test]
    fn parses_proc_net_listeners() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1148 1 0 100 0 0 10 0\n   1: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000   104        0 2000 1 0\n   2: 0100007F:0CEA 0100007F:1234 01 00000000:00000000 00:00000000 00000000   104        0 2001 1 0\n";
        let l = parse_proc_net(tcp, "tcp", false);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].endpoint(), "tcp/0.0.0.0:22");
        assert!(!l[0].is_loopback());
        assert_eq!(l[1].endpoint(), "tcp/127.0.0.1:3306");
        assert!(l[1].is_loopback());
        let tcp6 = "  sl  local\n   0: 00000000000000000000000001000000:0277 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3000 1 0\n";
        assert!(parse_proc_net("x\n 0: 0000é000:0016 0 0A 0 0 0 0 0 1\n", "tcp", false).is_empty());
        let l6 = parse_proc_net(tcp6, "tcp", true);
        assert_eq!(l6[0].endpoint(), "tcp/[::1]:631");
        assert!(l6[0].is_loopback());
    }

    #[test]
    fn arg_values() {
        let argv: Vec<String> = ["x", "--user", "gl", "--config=/c.toml"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(arg_value(&argv, &["--user", "-u"]).as_deref(), Some("gl"));
        assert_eq!(arg_value(&argv, &["--config", "-c"]).as_deref(), Some("/c.toml"));
        assert_eq!(arg_value(&argv, &["--nope"]), None);
    }
}
