//! `stockade doctor`: what this host can enforce and why, probed rather than assumed, so that an
//! operator learns before the first job which isolation is real here.

use crate::cgroup;
use std::fs;
use std::path::Path;

#[derive(Debug, serde::Serialize)]
pub struct Capability {
    pub name: &'static str,
    pub available: bool,
    pub detail: String,
}

fn read(p: &str) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

pub fn probe() -> Vec<Capability> {
    let mut out = Vec::new();
    let root = crate::sys::getuid() == 0;
    out.push(Capability {
        name: "privileges",
        available: true,
        detail: if root {
            "running as root: per-job host id ranges, cgroup limits".into()
        } else {
            "running unprivileged: the job maps to your own uid; cgroup limits only if delegated".into()
        },
    });
    for ns in ["user", "pid", "mnt", "net", "ipc", "uts", "cgroup"] {
        let ok = Path::new(&format!("/proc/self/ns/{ns}")).exists();
        out.push(Capability {
            name: match ns {
                "user" => "namespace: user",
                "pid" => "namespace: pid",
                "mnt" => "namespace: mount",
                "net" => "namespace: network",
                "ipc" => "namespace: ipc",
                "uts" => "namespace: uts",
                _ => "namespace: cgroup",
            },
            available: ok,
            detail: if ok { "present".into() } else { "kernel lacks it".into() },
        });
    }
    let max_userns = read("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    let unpriv = read("/proc/sys/kernel/unprivileged_userns_clone");
    out.push(Capability {
        name: "unprivileged user namespaces",
        available: max_userns != "0" && unpriv.as_deref() != Some("0"),
        detail: format!(
            "user.max_user_namespaces={max_userns}{}",
            unpriv
                .map(|v| format!(", kernel.unprivileged_userns_clone={v}"))
                .unwrap_or_default()
        ),
    });
    match cgroup::v2_root() {
        Some(r) => {
            let ctrls = read(&format!("{}/cgroup.controllers", r.display())).unwrap_or_default();
            out.push(Capability {
                name: "cgroup v2",
                available: true,
                detail: format!(
                    "{} (controllers: {}); tracking and cgroup.kill{}",
                    r.display(),
                    if ctrls.is_empty() { "none".into() } else { ctrls.clone() },
                    if r.ends_with("unified") { ", hybrid layout" } else { "" }
                ),
            });
        }
        None => out.push(Capability {
            name: "cgroup v2",
            available: false,
            detail: "not mounted: teardown relies on the pid namespace and the v1 freezer".into(),
        }),
    }
    let v1: Vec<&str> = ["memory", "pids", "cpu", "cpuacct", "freezer"]
        .into_iter()
        .filter(|c| cgroup::v1_mount(c).is_some())
        .collect();
    out.push(Capability {
        name: "cgroup v1",
        available: !v1.is_empty(),
        detail: if v1.is_empty() {
            "no v1 hierarchies".into()
        } else {
            format!("controllers: {}", v1.join(", "))
        },
    });
    let seccomp = read("/proc/self/status")
        .and_then(|s| s.lines().find(|l| l.starts_with("Seccomp:")).map(String::from))
        .is_some();
    let notif = read("/proc/sys/kernel/seccomp/actions_avail").unwrap_or_default();
    out.push(Capability {
        name: "seccomp",
        available: seccomp,
        detail: format!(
            "filter mode; actions: {}{}",
            notif,
            if notif.contains("user_notif") {
                " (denied calls are counted)"
            } else {
                ""
            }
        ),
    });
    let abi = landlock_abi();
    out.push(Capability {
        name: "landlock",
        available: abi > 0,
        detail: if abi > 0 {
            format!(
                "ABI {abi}{}",
                if abi >= 6 {
                    " (filesystem and signal scoping)"
                } else {
                    ""
                }
            )
        } else {
            "not enabled in this kernel (lsm= list)".into()
        },
    });
    let fs = read("/proc/filesystems").unwrap_or_default();
    out.push(Capability {
        name: "overlayfs",
        available: fs.contains("overlay"),
        detail: if fs.contains("overlay") {
            "--writable-root available".into()
        } else {
            "no --writable-root".into()
        },
    });
    out.push(Capability {
        name: "nftables",
        available: Path::new("/usr/sbin/nft").exists() || Path::new("/sbin/nft").exists(),
        detail: "transparent egress redirection inside the job's network namespace".into(),
    });
    out
}

/// The Landlock ABI version the kernel offers (0 when none).
pub fn landlock_abi() -> i64 {
    // landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) returns the ABI version.
    crate::sys::landlock_abi_version()
}
