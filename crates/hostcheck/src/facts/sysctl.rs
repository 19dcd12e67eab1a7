//! Kernel settings: the running value from /proc/sys, or, for an image that is not running, the
//! value its sysctl.d files would set at boot.

use crate::host::Host;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// (value, where it was read)
    Found(String, String),
    Absent,
    Unreadable(String),
}

/// `kernel.kptr_restrict` -> /proc/sys/kernel/kptr_restrict, else sysctl.d configuration.
pub fn get(host: &Host, key: &str, configured: &[(String, String, String)]) -> Value {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    match host.read_string(&path) {
        Ok(v) => Value::Found(v.trim().to_string(), path),
        Err(e) if e.is_not_found() => {
            // Without a /proc/sys at all (an image), fall back to what boot would configure.
            if !host.exists("/proc/sys").unwrap_or(false)
                && let Some((_, v, file)) = configured.iter().rev().find(|(k, _, _)| k == key)
            {
                return Value::Found(v.clone(), format!("{file} (configured)"));
            }
            Value::Absent
        }
        Err(e) => Value::Unreadable(e.to_string()),
    }
}

/// (key, value, file) from sysctl.conf and sysctl.d, in the order systemd-sysctl applies them.
pub fn configured(host: &Host) -> Vec<(String, String, String)> {
    let mut files = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for dir in ["/etc/sysctl.d", "/run/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d"] {
        for n in host.read_dir_optional(dir).unwrap_or_default() {
            if n.ends_with(".conf") && !seen.contains(&n) {
                seen.push(n.clone());
                files.push((n.clone(), format!("{dir}/{n}")));
            }
        }
    }
    files.sort();
    let mut paths: Vec<String> = files.into_iter().map(|(_, p)| p).collect();
    paths.push("/etc/sysctl.conf".into());
    let mut out = Vec::new();
    for p in paths {
        let Ok(Some(text)) = host.read_optional(&p) else {
            continue;
        };
        for line in text.lines().map(str::trim) {
            if line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                let k = k.trim().trim_start_matches('-').replace('/', ".");
                out.push((k, v.trim().to_string(), p.clone()));
            }
        }
    }
    out
}
