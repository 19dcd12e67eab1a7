//! What the host's /proc tells about one of the job's processes at the moment of its exec:
//! argv, executable, cwd, ids, and whether its stdio is a socket (a reverse shell's tell).

use std::fs;
use std::os::unix::fs::PermissionsExt;

/// argv is cut past this many bytes in the report: a 10,000-process job must stay small.
const ARGV_BYTES: usize = 2048;

#[derive(Debug, Default, Clone)]
pub struct ExecInfo {
    pub argv: Vec<String>,
    pub exe: Option<String>,
    pub cwd: Option<String>,
    /// Real uid as the host sees it.
    pub host_uid: Option<u32>,
    pub ns_pid: Option<u32>,
    pub setid: bool,
    pub stdio_socket: bool,
    /// cmdline was empty although the process exec'd: it was gone before we looked.
    pub lost: bool,
}

/// Reads what the kernel still shows about `pid`. Never fails: what is gone stays empty.
pub fn exec_info(pid: u32, check_stdio: impl Fn(&str) -> bool) -> ExecInfo {
    let base = format!("/proc/{pid}");
    let mut info = ExecInfo::default();
    if let Ok(b) = fs::read(format!("{base}/cmdline")) {
        let mut used = 0;
        for a in b.split(|c| *c == 0).filter(|s| !s.is_empty()) {
            if used >= ARGV_BYTES {
                info.argv.push("…".into());
                break;
            }
            let s = String::from_utf8_lossy(a);
            let room = ARGV_BYTES - used;
            if s.len() > room {
                let mut cut = room;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                info.argv.push(format!("{}…", &s[..cut]));
            } else {
                info.argv.push(s.into_owned());
            }
            used += a.len();
        }
    }
    info.exe = fs::read_link(format!("{base}/exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    info.cwd = fs::read_link(format!("{base}/cwd"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    if let Ok(st) = fs::read_to_string(format!("{base}/status")) {
        for line in st.lines() {
            if let Some(v) = line.strip_prefix("Uid:") {
                info.host_uid = v.split_whitespace().next().and_then(|u| u.parse().ok());
            } else if let Some(v) = line.strip_prefix("NSpid:") {
                info.ns_pid = v.split_whitespace().last().and_then(|u| u.parse().ok());
            }
        }
    }
    if info.exe.is_some() {
        // stat through the magic link: the very file that runs, wherever its path points now.
        info.setid = fs::metadata(format!("{base}/exe")).is_ok_and(|m| m.permissions().mode() & 0o6000 != 0);
    }
    if info.argv.is_empty() && info.exe.is_none() {
        info.lost = true;
    }
    let name = info
        .exe
        .as_deref()
        .or(info.argv.first().map(|s| s.as_str()))
        .unwrap_or("");
    if check_stdio(name) {
        info.stdio_socket = ["0", "1"].iter().any(|fd| {
            fs::read_link(format!("{base}/fd/{fd}")).is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
        });
    }
    info
}

/// True when the program `pid` runs is set-uid or set-gid.
pub fn setid(pid: u32) -> bool {
    fs::metadata(format!("/proc/{pid}/exe")).is_ok_and(|m| m.permissions().mode() & 0o6000 != 0)
}

/// The short name of a process (kept by the kernel until it is reaped).
pub fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

/// The pid a host process has inside its own pid namespace.
pub fn ns_pid(pid: u32) -> Option<u32> {
    let st = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    st.lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|v| v.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

/// Maps a host id to the id inside the job through a uid_map's lines (`inside outside count`).
pub fn map_id(map: &str, host: u32) -> Option<u32> {
    map.lines().find_map(|l| {
        let mut it = l.split_whitespace().filter_map(|x| x.parse::<u64>().ok());
        let (inside, outside, count) = (it.next()?, it.next()?, it.next()?);
        let h = host as u64;
        (h >= outside && h < outside + count).then(|| (inside + h - outside) as u32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_host_ids_into_the_job() {
        let map = "         0  100000000      65536\n";
        assert_eq!(map_id(map, 100001000), Some(1000));
        assert_eq!(map_id(map, 99), None);
    }

    #[test]
    fn reads_our_own_process() {
        let info = exec_info(std::process::id(), |_| true);
        assert!(!info.argv.is_empty());
        assert!(info.exe.is_some());
        assert!(info.cwd.is_some());
        assert!(!info.lost);
    }
}

/// What an exec'ing process asked for, read at the syscall's entry while it waits for us:
/// nothing of it can be gone yet.
#[derive(Debug, Default, Clone)]
pub struct PreExec {
    /// The path handed to execve, made absolute against the cwd or the dirfd.
    pub path: Option<String>,
    pub info: ExecInfo,
}

/// Reads another process's memory with one syscall, no file to open (the caller waits in
/// seccomp, so its memory holds still).
fn remote_read(pid: u32, addr: u64, buf: &mut [u8]) -> Option<usize> {
    use nix::sys::uio::{RemoteIoVec, process_vm_readv};
    let remote = [RemoteIoVec {
        base: addr as usize,
        len: buf.len(),
    }];
    let mut local = [std::io::IoSliceMut::new(buf)];
    process_vm_readv(nix::unistd::Pid::from_raw(pid as i32), &mut local, &remote).ok()
}

fn read_cstr(pid: u32, addr: u64, max: usize) -> Option<Vec<u8>> {
    if addr == 0 {
        return None;
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    while out.len() < max {
        // Never cross a page in one read: the next page may be unmapped.
        let at = addr + out.len() as u64;
        let room = (4096 - (at % 4096) as usize).min(buf.len());
        let n = remote_read(pid, at, &mut buf[..room])?;
        if n == 0 {
            break;
        }
        match buf[..n].iter().position(|b| *b == 0) {
            Some(end) => {
                out.extend_from_slice(&buf[..end]);
                return Some(out);
            }
            None => out.extend_from_slice(&buf[..n]),
        }
    }
    out.truncate(max);
    Some(out)
}

/// Reads execve's (or execveat's) path and argv from the caller's memory, and its cwd, ids and
/// stdio, at the call's entry. `tid` is the calling thread's host id.
pub fn pre_exec(tid: u32, execveat: bool, args: [u64; 6], check_stdio: impl Fn(&str) -> bool) -> PreExec {
    let base = format!("/proc/{tid}");
    let mut pre = PreExec::default();
    let (dirfd, path_ptr, argv_ptr) = if execveat {
        (args[0] as i32, args[1], args[2])
    } else {
        (-100, args[0], args[1])
    };
    let info = &mut pre.info;
    info.cwd = fs::read_link(format!("{base}/cwd"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    let mut used = 0;
    let mut ptrs = [0u8; 8 * 64];
    let mut index = 0u64;
    'outer: while used < ARGV_BYTES && argv_ptr != 0 {
        let at = argv_ptr + index * 8;
        let room = ((4096 - (at % 4096) as usize) / 8 * 8).clamp(8, ptrs.len());
        let Some(n) = remote_read(tid, at, &mut ptrs[..room]) else {
            break;
        };
        if n < 8 {
            break;
        }
        for chunk in ptrs[..n - n % 8].chunks(8) {
            let p = u64::from_ne_bytes(chunk.try_into().unwrap_or([0; 8]));
            index += 1;
            if p == 0 {
                break 'outer;
            }
            let Some(s) = read_cstr(tid, p, ARGV_BYTES - used) else {
                break 'outer;
            };
            used += s.len() + 1;
            let mut a = String::from_utf8_lossy(&s).into_owned();
            if used >= ARGV_BYTES {
                a.push('…');
            }
            info.argv.push(a);
            if used >= ARGV_BYTES || index >= 4096 {
                break 'outer;
            }
        }
    }
    if let Some(p) = read_cstr(tid, path_ptr, 4096) {
        let p = String::from_utf8_lossy(&p).into_owned();
        pre.path = Some(if p.starts_with('/') {
            p
        } else {
            let dir = if dirfd == -100 {
                info.cwd.clone()
            } else {
                fs::read_link(format!("{base}/fd/{dirfd}"))
                    .ok()
                    .map(|d| d.to_string_lossy().into_owned())
            };
            match (dir, p.is_empty()) {
                (Some(d), true) => d,
                (Some(d), false) => {
                    format!("{}/{}", d.trim_end_matches('/'), p.trim_start_matches("./"))
                }
                (None, _) => p,
            }
        });
    }
    if let Ok(st) = fs::read_to_string(format!("{base}/status")) {
        for line in st.lines() {
            if let Some(v) = line.strip_prefix("Uid:") {
                info.host_uid = v.split_whitespace().next().and_then(|u| u.parse().ok());
            } else if let Some(v) = line.strip_prefix("NSpid:") {
                info.ns_pid = v.split_whitespace().last().and_then(|u| u.parse().ok());
            }
        }
    }
    let name = pre.path.as_deref().unwrap_or("");
    let argv0 = info.argv.first().map(|s| s.as_str()).unwrap_or("");
    if check_stdio(name) || check_stdio(argv0) {
        info.stdio_socket = ["0", "1"].iter().any(|fd| {
            fs::read_link(format!("{base}/fd/{fd}")).is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
        });
    }
    pre
}
