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

/// True when `path`, in the root of the job whose init is `init`, is set-uid or set-gid.
pub fn setid_at(init: u32, path: &str) -> bool {
    fs::metadata(format!("/proc/{init}/root{path}")).is_ok_and(|m| m.permissions().mode() & 0o6000 != 0)
}

/// The working directory of a process, while it exists.
pub fn cwd(pid: u32) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/cwd"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
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

/// What an exec'ing process asked for, read at the syscall's entry while it waits for us:
/// nothing of it can be gone yet. Only what exec replaces (argv, the path), what a short
/// process would take with it (stdio) and, when its directory may differ from its parent's,
/// its cwd are read here; ids come from the proc connector.
#[derive(Debug, Default, Clone)]
pub struct PreExec {
    /// The calling thread's host id.
    pub tid: u32,
    /// When it was read (CLOCK_MONOTONIC, the connector's clock): before the exec it precedes.
    pub ns: u64,
    /// The path handed to execve, made absolute against the cwd or the dirfd.
    pub path: Option<String>,
    pub argv: Vec<String>,
    /// Read when asked (`with_cwd`); otherwise the parent's, as the monitor knows it.
    pub cwd: Option<String>,
    /// Checked for shells only: stdin or stdout is a socket.
    pub stdio_socket: bool,
}

/// Pointers of argv read in one go (more are read in further passes).
const PTRS_PER_READ: usize = 512;
const PAGE: u64 = 4096;

/// Bytes from `addr` to the end of its page: a read that crosses into the next page could fail
/// on an unmapped one and take the whole batch with it.
fn to_page_end(addr: u64) -> usize {
    (PAGE - addr % PAGE) as usize
}

/// Memory of the exec'ing process read so far, as (address, bytes) windows.
#[derive(Default)]
struct Windows(Vec<(u64, Vec<u8>)>);

impl Windows {
    /// Reads these ranges with one syscall (the caller waits in seccomp, so its memory holds
    /// still); ranges past an unreadable one are lost with it.
    fn read(&mut self, pid: u32, ranges: &[(u64, usize)]) {
        use nix::sys::uio::{RemoteIoVec, process_vm_readv};
        if ranges.is_empty() {
            return;
        }
        let mut bufs: Vec<Vec<u8>> = ranges.iter().map(|r| vec![0u8; r.1]).collect();
        let remote: Vec<RemoteIoVec> = ranges
            .iter()
            .map(|&(base, len)| RemoteIoVec {
                base: base as usize,
                len,
            })
            .collect();
        let mut local: Vec<std::io::IoSliceMut> = bufs.iter_mut().map(|b| std::io::IoSliceMut::new(b)).collect();
        let mut got = process_vm_readv(nix::unistd::Pid::from_raw(pid as i32), &mut local, &remote).unwrap_or(0);
        drop(local);
        for (&(base, _), mut b) in ranges.iter().zip(bufs) {
            let n = got.min(b.len());
            got -= n;
            b.truncate(n);
            if n == 0 {
                continue;
            }
            // The rest of a string that crossed a page joins the window it continues.
            match self.0.iter_mut().find(|(wb, w)| wb + w.len() as u64 == base) {
                Some((_, w)) => w.extend_from_slice(&b),
                None => self.0.push((base, b)),
            }
        }
    }

    fn bytes(&self) -> usize {
        self.0.iter().map(|w| w.1.len()).sum()
    }

    /// The bytes read from `addr` on, to the end of the window holding it.
    fn at(&self, addr: u64) -> Option<&[u8]> {
        self.0
            .iter()
            .filter(|(base, b)| addr >= *base && addr < base + b.len() as u64)
            .map(|(base, b)| &b[(addr - base) as usize..])
            .max_by_key(|b| b.len())
    }

    /// The C string at `addr` (cut at `max` bytes); None while its end is not read yet.
    fn cstr(&self, addr: u64, max: usize) -> Option<&[u8]> {
        let b = self.at(addr)?;
        match b.iter().take(max).position(|c| *c == 0) {
            Some(end) => Some(&b[..end]),
            None if b.len() >= max => Some(&b[..max]),
            None => None,
        }
    }

    /// Where to read next for the C string at `addr`: right after what is read of it.
    fn next_for(&self, addr: u64) -> u64 {
        self.at(addr).map_or(addr, |b| addr + b.len() as u64)
    }
}

/// Reads the C strings at `addrs` (each cut at `max`), reading as few ranges as it can: a
/// range covers every string up to the end of its page, so neighbouring strings (a shell's
/// arguments sit together) come in one. Strings whose memory cannot be read stay empty.
fn read_cstrs(pid: u32, w: &mut Windows, addrs: &[u64], max: usize) -> Vec<Vec<u8>> {
    for _ in 0..(max / PAGE as usize + 2) {
        let mut want: Vec<u64> = addrs
            .iter()
            .filter(|&&a| a != 0 && w.cstr(a, max).is_none())
            .map(|&a| w.next_for(a))
            .collect();
        if want.is_empty() {
            break;
        }
        want.sort_unstable();
        want.dedup();
        let mut ranges: Vec<(u64, usize)> = Vec::new();
        for a in want {
            let end = a + to_page_end(a).min(max + 1) as u64;
            match ranges.last_mut() {
                Some((base, len)) if a <= *base + *len as u64 => {
                    let e = end.max(*base + *len as u64).min(*base + to_page_end(*base) as u64);
                    *len = (e - *base) as usize;
                }
                _ => ranges.push((a, (end - a) as usize)),
            }
        }
        let before = w.bytes();
        w.read(pid, &ranges);
        if w.bytes() == before {
            break;
        }
    }
    addrs
        .iter()
        .map(|&a| match w.cstr(a, max) {
            Some(s) => s.to_vec(),
            // Unreadable past some point: what was read.
            None => w.at(a).map(|b| b.to_vec()).unwrap_or_default(),
        })
        .collect()
}

/// Reads execve's (or execveat's) path and argv from the caller's memory, its cwd (with
/// `with_cwd`) and (for shells) its stdio, at the call's entry: usually one or two
/// process_vm_readv calls (the pointer array and the path, then the strings, unless they sit in
/// the same pages). `tid` is the calling thread's host id, `proc` an open /proc.
pub fn pre_exec(
    proc: std::os::fd::BorrowedFd<'_>,
    tid: u32,
    execveat: bool,
    args: [u64; 6],
    with_cwd: bool,
    check_stdio: impl Fn(&str) -> bool,
) -> PreExec {
    let (dirfd, path_ptr, argv_ptr) = if execveat {
        (args[0] as i32, args[1], args[2])
    } else {
        (-100, args[0], args[1])
    };
    let link = |rel: &str| {
        rustix::fs::readlinkat(proc, rel, Vec::new())
            .ok()
            .map(|c| String::from_utf8_lossy(c.as_bytes()).into_owned())
    };
    let mut w = Windows::default();
    // The pointer array and the path to the ends of their pages, in one read: the strings
    // often sit right there too.
    let mut first = Vec::new();
    if argv_ptr != 0 {
        first.push((argv_ptr, to_page_end(argv_ptr)));
    }
    if path_ptr != 0 && !(argv_ptr != 0 && path_ptr >= argv_ptr && path_ptr < argv_ptr + to_page_end(argv_ptr) as u64) {
        first.push((path_ptr, to_page_end(path_ptr)));
    }
    w.read(tid, &first);
    let mut ptrs: Vec<u64> = Vec::new();
    let mut at = argv_ptr;
    'ptrs: while argv_ptr != 0 && ptrs.len() < ARGV_BYTES {
        let chunk = match w.at(at) {
            Some(b) if b.len() >= 8 => b[..b.len() / 8 * 8].to_vec(),
            _ => {
                let len = (to_page_end(at) / 8 * 8).clamp(8, 8 * PTRS_PER_READ);
                let before = w.bytes();
                w.read(tid, &[(at, len)]);
                if w.bytes() == before {
                    break;
                }
                continue;
            }
        };
        for c in chunk.chunks_exact(8) {
            let p = u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]));
            if p == 0 {
                break 'ptrs;
            }
            ptrs.push(p);
        }
        at += chunk.len() as u64;
    }
    let mut addrs = ptrs;
    addrs.push(path_ptr);
    let mut strings = read_cstrs(tid, &mut w, &addrs, ARGV_BYTES);
    let path = strings.pop().unwrap_or_default();
    let mut pre = PreExec {
        tid,
        cwd: if with_cwd { link(&format!("{tid}/cwd")) } else { None },
        ..Default::default()
    };
    let mut used = 0;
    for s in &strings {
        if used >= ARGV_BYTES {
            pre.argv.push("…".into());
            break;
        }
        let room = ARGV_BYTES - used;
        let mut a = String::from_utf8_lossy(&s[..s.len().min(room)]).into_owned();
        used += s.len() + 1;
        if s.len() >= room {
            a.push('…');
        }
        pre.argv.push(a);
    }
    if path_ptr != 0 && w.at(path_ptr).is_some() {
        let p = String::from_utf8_lossy(&path).into_owned();
        pre.path = Some(if p.starts_with('/') {
            p
        } else {
            // Relative to a cwd not read here: the monitor joins it with the one it knows.
            let dir = if dirfd == -100 {
                pre.cwd.clone()
            } else {
                link(&format!("{tid}/fd/{dirfd}"))
            };
            match (dir, p.is_empty()) {
                (Some(d), true) => d,
                (Some(d), false) => format!("{}/{}", d.trim_end_matches('/'), p.trim_start_matches("./")),
                (None, _) => p,
            }
        });
    }
    let name = pre.path.as_deref().unwrap_or("");
    let argv0 = pre.argv.first().map(|s| s.as_str()).unwrap_or("");
    if check_stdio(name) || check_stdio(argv0) {
        pre.stdio_socket = ["0", "1"]
            .iter()
            .any(|fd| link(&format!("{tid}/fd/{fd}")).is_some_and(|l| l.starts_with("socket:")));
    }
    pre
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

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

    #[test]
    fn reads_argv_and_path_from_another_threads_memory_in_few_reads() {
        use std::ffi::CString;
        let proc = rustix::fs::open(
            "/proc",
            rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        let long = "x".repeat(3000);
        let args: Vec<CString> = ["cc", "-c", "a b.c", long.as_str()]
            .iter()
            .map(|a| CString::new(*a).unwrap())
            .collect();
        let mut ptrs: Vec<u64> = args.iter().map(|a| a.as_ptr() as u64).collect();
        ptrs.push(0);
        let path = CString::new("bin/cc").unwrap();
        let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
        let mut call = [0u64; 6];
        call[0] = path.as_ptr() as u64;
        call[1] = ptrs.as_ptr() as u64;
        let pre = pre_exec(proc.as_fd(), tid, false, call, true, |_| true);
        let cwd = std::env::current_dir().unwrap().to_string_lossy().into_owned();
        assert_eq!(pre.cwd.as_deref(), Some(cwd.as_str()));
        assert_eq!(pre.path, Some(format!("{}/bin/cc", cwd.trim_end_matches('/'))));
        assert_eq!(&pre.argv[..3], &["cc", "-c", "a b.c"]);
        // Cut at the report's budget, and marked as cut.
        assert!(
            pre.argv[3].ends_with('…') && pre.argv[3].len() < 2100,
            "{}",
            pre.argv[3].len()
        );
        assert!(!pre.stdio_socket);
        // execveat: the path is relative to a directory fd of the caller.
        let dir = std::fs::File::open("/usr").unwrap();
        let rel = CString::new("bin/true").unwrap();
        let mut call = [0u64; 6];
        call[0] = std::os::fd::AsRawFd::as_raw_fd(&dir) as u64;
        call[1] = rel.as_ptr() as u64;
        call[2] = ptrs.as_ptr() as u64;
        let pre = pre_exec(proc.as_fd(), tid, true, call, true, |_| false);
        assert_eq!(pre.path.as_deref(), Some("/usr/bin/true"));
        assert_eq!(pre.argv.len(), 4);
    }
}
