//! Thin, safe wrappers over the raw Linux syscalls the sandbox needs and no crate wraps well
//! (clone3 into a cgroup, mount_setattr, pivot_root, seccomp listeners, SCM_RIGHTS). All of the
//! workspace's `unsafe` lives in this file, each block with the reason it is sound.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub type Pid = libc::pid_t;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cvt_long(r: libc::c_long) -> io::Result<libc::c_long> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

pub fn cstr_os(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

pub const CLONE_INTO_CGROUP: u64 = 0x200000000;

/// Outcome of a fork-like clone: we are either the parent (with the child's pid and pidfd) or the child.
pub enum Forked {
    Parent { pid: Pid, pidfd: OwnedFd },
    Child,
}

/// clone3 without a new stack: behaves like fork(2) but can create namespaces, return a pidfd and
/// place the child in a cgroup v2 directory atomically.
///
/// The caller must be single-threaded, as for fork(2): the child continues on a copy of this stack.
pub fn clone3_fork(flags: u64, cgroup: Option<RawFd>) -> io::Result<Forked> {
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: flags | libc::CLONE_PIDFD as u64 | cgroup.map_or(0, |_| CLONE_INTO_CGROUP),
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.map_or(0, |fd| fd as u64),
        ..Default::default()
    };
    // SAFETY: clone3 with stack == 0 duplicates the calling thread like fork(2); `args` and `pidfd`
    // outlive the call, and the size passed matches the struct. The caller guarantees the process
    // is single-threaded, so the child's copy of memory holds no lock owned by another thread.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    let r = cvt_long(r)?;
    if r == 0 {
        Ok(Forked::Child)
    } else {
        // SAFETY: the kernel stored a fresh pidfd in `pidfd` because CLONE_PIDFD was set and the
        // call succeeded; nothing else owns it.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        Ok(Forked::Parent { pid: r as Pid, pidfd })
    }
}

/// Runs `child` in a new process as posix_spawn does: it shares our memory and we are suspended
/// until it execs or exits (CLONE_VM | CLONE_VFORK, and `flags`), so no page table is copied (a
/// fork costs half a millisecond here). `child` runs on its own stack, with a guard page below
/// it, and ends in exec or returns its exit code; it may allocate, but must not drop or change
/// anything of ours: what it leaves in our heap is only leaked.
pub fn vfork(flags: libc::c_int, child: &mut dyn FnMut() -> i32) -> io::Result<Pid> {
    const STACK: usize = 1 << 20;
    extern "C" fn trampoline(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` points to the caller's `&mut dyn FnMut`, alive while it is suspended.
        let f = unsafe { &mut *(arg as *mut &mut dyn FnMut() -> i32) };
        // A panic must not unwind out of an extern "C" frame: it ends the child as a setup failure.
        exit_now(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(125))
    }
    // SAFETY: sysconf takes a constant.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 => p as usize,
        _ => 4096,
    };
    let size = STACK + page;
    // SAFETY: a fresh anonymous mapping; nothing else refers to it.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the lowest page of our own mapping becomes the guard: an overflow faults there
    // instead of writing into our heap.
    let guarded = cvt(unsafe { libc::mprotect(base, page, libc::PROT_NONE) });
    let mut f: &mut dyn FnMut() -> i32 = child;
    let pid = guarded.and_then(|_| {
        // SAFETY: CLONE_VFORK suspends us until the child execs or exits, so the stack mapping
        // and `f` outlive its use of them; the stack top is 16-byte aligned (mmap is page-aligned).
        cvt(unsafe {
            libc::clone(
                trampoline,
                (base as usize + size) as *mut libc::c_void,
                libc::CLONE_VM | libc::CLONE_VFORK | flags | libc::SIGCHLD,
                &mut f as *mut &mut dyn FnMut() -> i32 as *mut libc::c_void,
            )
        })
    });
    // SAFETY: the child has exec'd or exited: no one uses the stack any more.
    unsafe { libc::munmap(base, size) };
    pid
}

/// Closes `fd` in a detached grandchild, so that a slow last close (a fanotify group waits out an
/// SRCU grace period, 13 ms here) delays nobody; the grandchild closes every other fd first, and
/// closes `fd` only once we have dropped ours, so that its close is the last one.
/// Both children share our memory (`vfork` starts the first), run with every signal blocked,
/// and the grandchild, which may outlive this call, makes only raw system calls, which set no
/// errno. Each call leaks the grandchild's 16 KiB stack and a few words it may still read after
/// we return. Elsewhere than x86_64 and aarch64 the fd is closed here.
pub fn close_detached(fd: OwnedFd) {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        use std::sync::atomic::{AtomicU32, Ordering};
        const STACK: usize = 16 * 1024;
        /// Shared with the grandchild, which may outlive this call: leaked, never freed.
        struct Closing {
            fd: usize,
            /// The highest fd to close one by one, where close_range is refused.
            max: usize,
            /// Set (and woken) once our own reference is dropped.
            released: AtomicU32,
            /// How long the grandchild waits for that at a time.
            wait: libc::timespec,
            stack_top: *mut libc::c_void,
        }
        extern "C" fn closer(arg: *mut libc::c_void) -> libc::c_int {
            // SAFETY: `arg` is the leaked `Closing`, valid for ever.
            let c = unsafe { &*(arg as *const Closing) };
            let fd = c.fd;
            // SAFETY: raw system calls; the futex word and timeout live in the leaked `Closing`.
            unsafe {
                let below = if fd > 0 {
                    raw_syscall4(libc::SYS_close_range, 0, fd - 1, 0, 0)
                } else {
                    0
                };
                let above = raw_syscall4(libc::SYS_close_range, fd + 1, u32::MAX as usize, 0, 0);
                if below < 0 || above < 0 {
                    // close_range refused (an older seccomp profile): one by one.
                    for other in (0..=c.max).filter(|&o| o != fd) {
                        raw_syscall4(libc::SYS_close, other, 0, 0, 0);
                    }
                }
                // Bounded: a parent that died before releasing still lets us end.
                for _ in 0..4 {
                    if c.released.load(Ordering::Acquire) != 0 {
                        break;
                    }
                    raw_syscall4(
                        libc::SYS_futex,
                        c.released.as_ptr() as usize,
                        (libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG) as usize,
                        0,
                        &c.wait as *const libc::timespec as usize,
                    );
                }
                raw_syscall4(libc::SYS_close, fd, 0, 0, 0);
                raw_syscall4(libc::SYS_exit, 0, 0, 0, 0);
            }
            0
        }
        let raw = fd.as_raw_fd() as usize;
        // Only for the one-by-one fallback: the soft limit bounds our fds (unless lowered since).
        let max = getrlimit(libc::RLIMIT_NOFILE)
            .map_or(4096, |(soft, _)| soft.saturating_sub(1) as usize)
            .clamp(raw, 1 << 20);
        // The grandchild may run after we return: its stack and `Closing` must never be reused.
        let grand: &'static mut [u8] = Box::leak(vec![0u8; STACK].into_boxed_slice());
        let top = ((grand.as_mut_ptr() as usize + grand.len()) & !15) as *mut libc::c_void;
        let closing: &'static Closing = Box::leak(Box::new(Closing {
            fd: raw,
            max,
            released: AtomicU32::new(0),
            wait: libc::timespec {
                tv_sec: 0,
                tv_nsec: 500_000_000,
            },
            stack_top: top,
        }));
        // SAFETY: sigset_t is plain data; the calls only read and write these two sets.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above; a handler must not run in a child that shares our memory.
        unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        }
        // The launcher shares our fd table (CLONE_FILES): vfork lets us go before an exiting child
        // drops its files, and a copy of its own could then be the last holder of `fd`, with us
        // waiting for it in waitpid.
        let launched = vfork(libc::CLONE_FILES, &mut || {
            // SAFETY: the grandchild runs `closer` on its own leaked stack, with the leaked
            // `Closing`; it gets a copy of the fd table (no CLONE_FILES), so it holds the last
            // reference once we close ours.
            unsafe {
                libc::clone(
                    closer,
                    closing.stack_top,
                    libc::CLONE_VM | libc::SIGCHLD,
                    closing as *const Closing as *mut libc::c_void,
                )
            };
            0
        });
        // SAFETY: restores the mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        drop(fd);
        closing.released.store(1, Ordering::Release);
        // SAFETY: wakes waiters on a word of the leaked `Closing`; no other memory is touched.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                closing.released.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                1,
            );
        }
        if let Ok(pid) = launched {
            let _ = waitpid(pid, false);
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    drop(fd);
}

/// A system call that returns the kernel's result (`-errno` on failure) and writes no errno: for
/// a child that shares our memory and thread-local storage.
#[cfg(target_arch = "x86_64")]
unsafe fn raw_syscall4(nr: libc::c_long, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller passes a system call and arguments that touch no memory of ours but
    // what they point to; the kernel clobbers rcx and r11.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            in("r10") d,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(target_arch = "aarch64")]
unsafe fn raw_syscall4(nr: libc::c_long, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    // SAFETY: as for x86_64.
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") nr,
            inlateout("x0") a as isize => ret,
            in("x1") b,
            in("x2") c,
            in("x3") d,
            options(nostack),
        );
    }
    ret
}

pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit ends the process without running destructors, which is what a forked child
    // must do so that it does not flush or drop the parent's state.
    unsafe { libc::_exit(code) }
}

pub fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: unshare takes only flags and touches no memory of ours.
    cvt(unsafe { libc::unshare(flags) }).map(drop)
}

pub fn mount(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let src = src.map(cstr).transpose()?;
    let target = cstr(target)?;
    let fstype = fstype.map(|s| CString::new(s).expect("static fs name"));
    let data = data
        .map(|s| CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL)))
        .transpose()?;
    // SAFETY: every pointer is either null or a valid NUL-terminated string that outlives the call.
    cvt(unsafe {
        libc::mount(
            src.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            target.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            data.as_ref().map_or(std::ptr::null(), |s| s.as_ptr().cast()),
        )
    })
    .map(drop)
}

pub fn umount_detach(target: &Path) -> io::Result<()> {
    let t = cstr(target)?;
    // SAFETY: `t` is a valid C string for the duration of the call.
    cvt(unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

pub fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    let n = cstr(new_root)?;
    let o = cstr(put_old)?;
    // SAFETY: both are valid C strings for the duration of the call.
    cvt_long(unsafe { libc::syscall(libc::SYS_pivot_root, n.as_ptr(), o.as_ptr()) }).map(drop)
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_IDMAP: u64 = 0x100000;
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// Sets mount attributes on a whole mount tree (`recursive`) or one mount, e.g. read-only.
pub fn mount_setattr(path: &Path, recursive: bool, set: u64, userns_fd: Option<RawFd>) -> io::Result<()> {
    let p = cstr(path)?;
    let mut attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns_fd.map_or(0, |f| f as u64),
    };
    let flags = if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: `p` and `attr` are valid for the call and the size matches the struct.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            p.as_ptr(),
            flags,
            &mut attr as *mut MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// open_tree(OPEN_TREE_CLONE): a detached copy of a mount, to be id-mapped and attached.
pub fn open_tree_clone(path: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    let flags = 1 /* OPEN_TREE_CLONE */ | libc::O_CLOEXEC as libc::c_uint
        | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: `p` is a valid C string; on success the kernel returns a new fd we own.
    let fd = cvt_long(unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, p.as_ptr(), flags) })?;
    // SAFETY: fd was just returned by the kernel and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub fn mount_setattr_fd(fd: &OwnedFd, set: u64, userns_fd: RawFd) -> io::Result<()> {
    let empty = c"";
    let mut attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns_fd as u64,
    };
    // SAFETY: `empty` and `attr` are valid for the call; AT_EMPTY_PATH makes the kernel act on fd.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
            &mut attr as *mut MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// Attaches a detached mount tree `fd` on top of the directory open as `target`.
pub fn move_mount_fd(fd: &OwnedFd, target: &OwnedFd) -> io::Result<()> {
    let empty = c"";
    // SAFETY: valid strings for the call; MOVE_MOUNT_F_EMPTY_PATH (0x4) and
    // MOVE_MOUNT_T_EMPTY_PATH (0x40) make both ends the given fds.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            0x4u32 | 0x40u32,
        )
    })
    .map(drop)
}

pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: pointer and length describe `name`'s bytes.
    cvt(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

// The id changes are raw system calls, as in posix_spawn: glibc's wrappers signal every thread
// it believes the process has (setxid), and init, made by a raw clone3 and starting the job as by
// vfork, keeps whatever glibc recorded in the supervisor. Both are single-threaded, so changing
// the calling thread's ids changes the process's.

pub fn setresuid(uid: u32) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    cvt_long(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) }).map(drop)
}

pub fn setresgid(gid: u32) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    cvt_long(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) }).map(drop)
}

pub fn setgroups_empty() -> io::Result<()> {
    // SAFETY: a zero-length list with a null pointer is valid for setgroups.
    cvt_long(unsafe { libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) }).map(drop)
}

pub fn setsid() -> io::Result<()> {
    // SAFETY: no arguments.
    cvt(unsafe { libc::setsid() }).map(drop)
}

pub fn prctl(op: libc::c_int, a: libc::c_ulong) -> io::Result<()> {
    // SAFETY: every prctl op used here takes integer arguments only.
    cvt(unsafe { libc::prctl(op, a, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong) }).map(drop)
}

pub fn setrlimit(res: libc::__rlimit_resource_t, soft: u64, hard: u64) -> io::Result<()> {
    let l = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `l` is a valid rlimit for the duration of the call.
    cvt(unsafe { libc::setrlimit(res, &l) }).map(drop)
}

pub fn getrlimit(res: libc::__rlimit_resource_t) -> io::Result<(u64, u64)> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `l` is a valid, writable rlimit.
    cvt(unsafe { libc::getrlimit(res, &mut l) })?;
    Ok((l.rlim_cur, l.rlim_max))
}

pub fn dup2(from: RawFd, to: RawFd) -> io::Result<()> {
    // SAFETY: dup2 on integer fds; at worst it fails with EBADF.
    cvt(unsafe { libc::dup2(from, to) }).map(drop)
}

/// Closes fds first..=last, so nothing of the supervisor reaches the job.
pub fn close_range(first: u32, last: u32) -> io::Result<()> {
    // SAFETY: close_range on integer fds; the only caller is a forked child about to exec, in
    // which no live Rust object owns these fds any more.
    cvt_long(unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) }).map(drop)
}

pub fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `buf`, which is writable.
    let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Executes `path` with argv and envp; returns only on failure.
pub fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: both arrays are NULL-terminated and point into CStrings that outlive the call.
    unsafe { libc::execve(path.as_ptr(), a.as_ptr(), e.as_ptr()) };
    io::Error::last_os_error()
}

pub fn kill(pid: Pid, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: integer arguments.
    cvt(unsafe { libc::kill(pid, sig) }).map(drop)
}

pub fn pidfd_send_signal(pidfd: &OwnedFd, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid pidfd, no siginfo.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    })
    .map(drop)
}

/// The decoded status of a reaped child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitStatus {
    Exited(i32),
    Signaled(i32),
}

/// waitpid; `Ok(None)` when WNOHANG found nothing.
pub fn waitpid(pid: Pid, nohang: bool) -> io::Result<Option<(Pid, WaitStatus)>> {
    let mut st: libc::c_int = 0;
    loop {
        // SAFETY: `st` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut st, if nohang { libc::WNOHANG } else { 0 }) };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            return Ok(None);
        }
        let status = if libc::WIFEXITED(st) {
            WaitStatus::Exited(libc::WEXITSTATUS(st))
        } else if libc::WIFSIGNALED(st) {
            WaitStatus::Signaled(libc::WTERMSIG(st))
        } else {
            continue;
        };
        return Ok(Some((r, status)));
    }
}

/// Blocks `sigs` for this thread and returns a signalfd that reports them.
pub fn signalfd(sigs: &[libc::c_int]) -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it; the pointers are valid.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in sigs {
            libc::sigaddset(&mut set, *s);
        }
        cvt(libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()))?;
        let fd = cvt(libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK))?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Unblocks every signal and restores default dispositions, for a child about to exec.
pub fn reset_signals() {
    // SAFETY: sigset_t is plain data; resetting dispositions to SIG_DFL is always valid.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        for s in 1..32 {
            if s != libc::SIGKILL && s != libc::SIGSTOP {
                libc::signal(s, libc::SIG_DFL);
            }
        }
    }
}

/// Reads one signal number from a signalfd, or None when none is pending.
pub fn read_signalfd(fd: &OwnedFd) -> Option<i32> {
    // SAFETY: signalfd_siginfo is plain data, and the read size matches it.
    unsafe {
        let mut info: libc::signalfd_siginfo = std::mem::zeroed();
        let n = libc::read(
            fd.as_raw_fd(),
            (&mut info as *mut libc::signalfd_siginfo).cast(),
            std::mem::size_of::<libc::signalfd_siginfo>(),
        );
        (n == std::mem::size_of::<libc::signalfd_siginfo>() as isize).then_some(info.ssi_signo as i32)
    }
}

/// poll(2) over fds for readability; returns which are readable (or hung up).
pub fn poll_read(fds: &[RawFd], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `p` is a valid array of `p.len()` pollfd entries.
    let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
    if r == -1 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(e);
    }
    Ok(p.iter().map(|x| x.revents != 0).collect())
}

/// A connected SOCK_SEQPACKET pair: message boundaries are kept, and fds can ride along.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: both fds were just created and are owned by no one else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends one message, with optional fds as SCM_RIGHTS.
pub fn send_msg(sock: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) } as usize;
    let mut cbuf = vec![0u8; if fds.is_empty() { 0 } else { space }];
    // SAFETY: msghdr is plain data; we fill it with pointers into `iov` and `cbuf`, which outlive
    // sendmsg; the control message is written inside `cbuf`, sized by CMSG_SPACE.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = cbuf.len();
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as usize;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast(), fds.len());
        }
        loop {
            let r = libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL);
            if r >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// Receives one message (up to 64 KiB) and any fds that came with it (CLOEXEC).
pub fn recv_msg(sock: RawFd) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; 65536];
    let mut cbuf = vec![0u8; 512];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr points into `iov`/`cbuf`, which outlive recvmsg; the kernel bounds what it
    // writes by the lengths given; received fds are taken into OwnedFd exactly once.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = cbuf.len();
        let n = loop {
            let r = libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC);
            if r >= 0 {
                break r as usize;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        let mut fds = Vec::new();
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c) as *const RawFd;
                let count = ((*c).cmsg_len - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        buf.truncate(n);
        Ok((buf, fds))
    }
}

/// Brings a network interface (here: `lo`) up in the current network namespace.
pub fn interface_up(name: &str) -> io::Result<()> {
    // SAFETY: ifreq is plain data; the name fits (checked); the socket is closed via OwnedFd.
    unsafe {
        let s = cvt(libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0))?;
        let sock = OwnedFd::from_raw_fd(s);
        let mut req: libc::ifreq = std::mem::zeroed();
        if name.len() >= req.ifr_name.len() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        for (i, b) in name.bytes().enumerate() {
            req.ifr_name[i] = b as libc::c_char;
        }
        cvt(libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req))?;
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        cvt(libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req))?;
    }
    Ok(())
}

/// Installs a classic-BPF seccomp filter on this thread's process. With `listener`, returns the
/// user-notification fd through which the supervisor answers (and counts) denied calls.
pub fn seccomp_install(prog: &[libc::sock_filter], listener: bool) -> io::Result<Option<OwnedFd>> {
    let fprog = libc::sock_fprog {
        len: prog.len() as libc::c_ushort,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    let flags: libc::c_ulong = if listener {
        1 << 3 /* NEW_LISTENER */
    } else {
        0
    };
    // SAFETY: `fprog` points at `prog`, which outlives the call; the kernel copies the program.
    let r = cvt_long(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            1 as libc::c_ulong, /* SECCOMP_SET_MODE_FILTER */
            flags,
            &fprog as *const libc::sock_fprog,
        )
    })?;
    if listener {
        // SAFETY: with NEW_LISTENER the return value is a fresh fd owned by us.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(r as RawFd) }))
    } else {
        Ok(None)
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SeccompData {
    pub nr: i32,
    pub arch: u32,
    pub instruction_pointer: u64,
    pub args: [u64; 6],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SeccompNotif {
    pub id: u64,
    pub pid: u32,
    pub flags: u32,
    pub data: SeccompData,
}

#[repr(C)]
struct SeccompNotifResp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

// _IOWR('!', 0, struct seccomp_notif) and _IOWR('!', 1, struct seccomp_notif_resp)
const SECCOMP_IOCTL_NOTIF_RECV: libc::c_ulong = 0xc0502100;
const SECCOMP_IOCTL_NOTIF_SEND: libc::c_ulong = 0xc0182101;

/// Waits for the next denied call from the job; Err when the filter's last user is gone.
pub fn seccomp_notif_recv(fd: RawFd) -> io::Result<SeccompNotif> {
    loop {
        // SAFETY: SeccompNotif is plain data, zeroed as the kernel requires, and large enough for
        // the kernel's struct (checked by the ioctl number's size field).
        let mut n: SeccompNotif = unsafe { std::mem::zeroed() };
        // SAFETY: `n` is a valid, writable struct of the size the ioctl expects.
        let r = unsafe { libc::ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, &mut n) };
        if r == 0 {
            return Ok(n);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Answers a notification: the call fails with `errno`.
pub fn seccomp_notif_deny(fd: RawFd, id: u64, errno: i32) -> io::Result<()> {
    let resp = SeccompNotifResp {
        id,
        val: 0,
        error: -errno,
        flags: 0,
    };
    // SAFETY: `resp` is a valid struct of the size the ioctl expects.
    cvt(unsafe { libc::ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, &resp) }).map(drop)
}

/// Lets a watched (not denied) call go on as if the filter had allowed it.
pub fn seccomp_notif_continue(fd: RawFd, id: u64) -> io::Result<()> {
    const SECCOMP_USER_NOTIF_FLAG_CONTINUE: u32 = 1;
    let resp = SeccompNotifResp {
        id,
        val: 0,
        error: 0,
        flags: SECCOMP_USER_NOTIF_FLAG_CONTINUE,
    };
    // SAFETY: `resp` is a valid struct of the size the ioctl expects.
    cvt(unsafe { libc::ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, &resp) }).map(drop)
}

/// Asks the kernel (6.6+) to hand the CPU straight over between the notifying task and the
/// supervisor (SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP): the waiting side is woken on the current CPU
/// instead of through an inter-processor wake-up. Err on older kernels.
pub fn seccomp_notif_set_sync(fd: RawFd) -> io::Result<()> {
    // _IOW('!', 4, __u64)
    const SECCOMP_IOCTL_NOTIF_SET_FLAGS: libc::c_ulong = 0x4008_2104;
    const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: libc::c_ulong = 1;
    // SAFETY: this ioctl takes its flags by value; no memory is passed.
    cvt(unsafe { libc::ioctl(fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) }).map(drop)
}

pub fn getuid() -> u32 {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::getuid() }
}

pub fn getgid() -> u32 {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::getgid() }
}

/// How many threads this process runs: forking is refused unless it is one.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// Whether an fd (O_PATH ones too) names a directory: one fstat, where a stat of its
/// /proc/self/fd path walks procfs first.
pub fn fd_is_dir(fd: &OwnedFd) -> io::Result<bool> {
    // SAFETY: `st` is plain data the kernel fills in; the fd is valid while borrowed.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        cvt(libc::fstat(fd.as_raw_fd(), &mut st))?;
        Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
    }
}

/// Opens `path` as an O_PATH fd, resolving every component (symlinks and `..` included) as if
/// `root` were `/`, so that a job-controlled tree can never redirect us outside it.
pub fn open_in_root(root: &OwnedFd, path: &Path) -> io::Result<OwnedFd> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let c = cstr(rel)?;
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: `c` and `how` are valid for the call and the size matches the struct; the result
    // is a fresh fd that we take ownership of.
    let fd = cvt_long(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    })?;
    // SAFETY: fd was just returned by the kernel and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = cstr(path)?;
    // SAFETY: `c` is a valid C string; the result is a fresh fd we own.
    let fd = cvt(unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) })?;
    // SAFETY: fd was just returned by the kernel and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn chdir(path: &Path) -> io::Result<()> {
    let c = cstr(path)?;
    // SAFETY: `c` is a valid C string for the call.
    cvt(unsafe { libc::chdir(c.as_ptr()) }).map(drop)
}

pub fn chown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let c = cstr(path)?;
    // SAFETY: `c` is a valid C string for the call.
    cvt(unsafe { libc::lchown(c.as_ptr(), uid, gid) }).map(drop)
}

/// poll(2) on one fd; returns its revents (0 on timeout).
pub fn poll_revents(fd: RawFd, events: libc::c_short, timeout_ms: i32) -> io::Result<libc::c_short> {
    let mut p = libc::pollfd { fd, events, revents: 0 };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    if r == -1 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(p.revents)
}

pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both fds were just created and are owned by no one else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The Landlock ABI version, or 0 when Landlock is unavailable.
pub fn landlock_abi_version() -> i64 {
    // SAFETY: a null attr with size 0 and the VERSION flag (1) only queries the ABI.
    let r = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<u8>(), 0usize, 1u32) };
    if r < 0 { 0 } else { r }
}
