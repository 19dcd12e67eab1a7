//! The job's seccomp filter: Docker's default allowlist, minus what a CI job never needs, plus
//! argument checks (TIOCSTI/TIOCLINUX, namespace flags of clone, AF_VSOCK). Denied calls go to
//! the supervisor through a user-notification fd, which answers EPERM and counts them.

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_USER_NOTIF: u32 = 0x7fc0_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const X32_BIT: u32 = 0x4000_0000;

const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGE_K: u16 = 0x35;
const JGT_K: u16 = 0x25;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg_lo(i: u32) -> u32 {
    16 + 8 * i
}

const TIOCSTI: u32 = 0x5412;
const TIOCLINUX: u32 = 0x541C;
const AF_VSOCK: u32 = 40;
/// CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWTIME: no new namespaces.
const CLONE_NS_FLAGS: u32 = 0x7E02_0080;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Docker's default profile (moby/profiles/seccomp/default.json) on x86_64, unconditional part,
/// less io_uring (Docker dropped it too). Calls outside it are denied.
#[cfg(target_arch = "x86_64")]
const ALLOWED: &[libc::c_long] = {
    use libc::*;
    &[
        SYS_accept,
        SYS_accept4,
        SYS_access,
        SYS_adjtimex,
        SYS_alarm,
        SYS_bind,
        SYS_brk,
        SYS_capget,
        SYS_capset,
        SYS_chdir,
        SYS_chmod,
        SYS_chown,
        SYS_clock_adjtime,
        SYS_clock_getres,
        SYS_clock_gettime,
        SYS_clock_nanosleep,
        SYS_close,
        SYS_close_range,
        SYS_connect,
        SYS_copy_file_range,
        SYS_creat,
        SYS_dup,
        SYS_dup2,
        SYS_dup3,
        SYS_epoll_create,
        SYS_epoll_create1,
        SYS_epoll_ctl,
        SYS_epoll_pwait,
        SYS_epoll_pwait2,
        SYS_epoll_wait,
        SYS_eventfd,
        SYS_eventfd2,
        SYS_execve,
        SYS_execveat,
        SYS_exit,
        SYS_exit_group,
        SYS_faccessat,
        SYS_faccessat2,
        SYS_fadvise64,
        SYS_fallocate,
        SYS_fchdir,
        SYS_fchmod,
        SYS_fchmodat,
        452, /* fchmodat2 */
        SYS_fchown,
        SYS_fchownat,
        SYS_fcntl,
        SYS_fdatasync,
        SYS_fgetxattr,
        SYS_flistxattr,
        SYS_flock,
        SYS_fork,
        SYS_fremovexattr,
        SYS_fsetxattr,
        SYS_fstat,
        SYS_fstatfs,
        SYS_fsync,
        SYS_ftruncate,
        SYS_futex,
        SYS_futex_waitv,
        456, /* futex_wake */
        455, /* futex_wait */
        457, /* futex_requeue */
        SYS_futimesat,
        SYS_getcpu,
        SYS_getcwd,
        SYS_getdents,
        SYS_getdents64,
        SYS_getegid,
        SYS_geteuid,
        SYS_getgid,
        SYS_getgroups,
        SYS_getitimer,
        SYS_getpeername,
        SYS_getpgid,
        SYS_getpgrp,
        SYS_getpid,
        SYS_getppid,
        SYS_getpriority,
        SYS_getrandom,
        SYS_getresgid,
        SYS_getresuid,
        SYS_getrlimit,
        SYS_get_robust_list,
        SYS_getrusage,
        SYS_getsid,
        SYS_getsockname,
        SYS_getsockopt,
        SYS_gettid,
        SYS_gettimeofday,
        SYS_getuid,
        SYS_getxattr,
        SYS_inotify_add_watch,
        SYS_inotify_init,
        SYS_inotify_init1,
        SYS_inotify_rm_watch,
        SYS_io_cancel,
        SYS_ioctl,
        SYS_io_destroy,
        SYS_io_getevents,
        333, /* io_pgetevents */
        SYS_ioprio_get,
        SYS_ioprio_set,
        SYS_io_setup,
        SYS_io_submit,
        SYS_kill,
        SYS_landlock_add_rule,
        SYS_landlock_create_ruleset,
        SYS_landlock_restrict_self,
        SYS_lchown,
        SYS_lgetxattr,
        SYS_link,
        SYS_linkat,
        SYS_listen,
        SYS_listxattr,
        SYS_llistxattr,
        SYS_lremovexattr,
        SYS_lseek,
        SYS_lsetxattr,
        SYS_lstat,
        SYS_madvise,
        SYS_membarrier,
        SYS_memfd_create,
        SYS_mincore,
        SYS_mkdir,
        SYS_mkdirat,
        SYS_mknod,
        SYS_mknodat,
        SYS_mlock,
        SYS_mlock2,
        SYS_mlockall,
        SYS_mmap,
        SYS_mprotect,
        SYS_mq_getsetattr,
        SYS_mq_notify,
        SYS_mq_open,
        SYS_mq_timedreceive,
        SYS_mq_timedsend,
        SYS_mq_unlink,
        SYS_mremap,
        462, /* mseal */
        SYS_msgctl,
        SYS_msgget,
        SYS_msgrcv,
        SYS_msgsnd,
        SYS_msync,
        SYS_munlock,
        SYS_munlockall,
        SYS_munmap,
        SYS_nanosleep,
        SYS_newfstatat,
        SYS_open,
        SYS_openat,
        SYS_openat2,
        SYS_pause,
        SYS_pidfd_open,
        SYS_pidfd_send_signal,
        SYS_pipe,
        SYS_pipe2,
        SYS_pkey_alloc,
        SYS_pkey_free,
        SYS_pkey_mprotect,
        SYS_poll,
        SYS_ppoll,
        SYS_prctl,
        SYS_pread64,
        SYS_preadv,
        SYS_preadv2,
        SYS_prlimit64,
        SYS_process_mrelease,
        SYS_pselect6,
        SYS_pwrite64,
        SYS_pwritev,
        SYS_pwritev2,
        SYS_read,
        SYS_readahead,
        SYS_readlink,
        SYS_readlinkat,
        SYS_readv,
        SYS_recvfrom,
        SYS_recvmmsg,
        SYS_recvmsg,
        SYS_remap_file_pages,
        SYS_removexattr,
        SYS_rename,
        SYS_renameat,
        SYS_renameat2,
        SYS_restart_syscall,
        SYS_rmdir,
        SYS_rseq,
        SYS_rt_sigaction,
        SYS_rt_sigpending,
        SYS_rt_sigprocmask,
        SYS_rt_sigqueueinfo,
        SYS_rt_sigreturn,
        SYS_rt_sigsuspend,
        SYS_rt_sigtimedwait,
        SYS_rt_tgsigqueueinfo,
        SYS_sched_getaffinity,
        SYS_sched_getattr,
        SYS_sched_getparam,
        SYS_sched_get_priority_max,
        SYS_sched_get_priority_min,
        SYS_sched_getscheduler,
        SYS_sched_rr_get_interval,
        SYS_sched_setaffinity,
        SYS_sched_setattr,
        SYS_sched_setparam,
        SYS_sched_setscheduler,
        SYS_sched_yield,
        SYS_seccomp,
        SYS_select,
        SYS_semctl,
        SYS_semget,
        SYS_semop,
        SYS_semtimedop,
        SYS_sendfile,
        SYS_sendmmsg,
        SYS_sendmsg,
        SYS_sendto,
        SYS_setfsgid,
        SYS_setfsuid,
        SYS_setgid,
        SYS_setgroups,
        SYS_setitimer,
        SYS_setpgid,
        SYS_setpriority,
        SYS_setregid,
        SYS_setresgid,
        SYS_setresuid,
        SYS_setreuid,
        SYS_setrlimit,
        SYS_set_robust_list,
        SYS_setsid,
        SYS_setsockopt,
        SYS_set_tid_address,
        SYS_setuid,
        SYS_setxattr,
        SYS_shmat,
        SYS_shmctl,
        SYS_shmdt,
        SYS_shmget,
        SYS_shutdown,
        SYS_sigaltstack,
        SYS_signalfd,
        SYS_signalfd4,
        SYS_socketpair,
        SYS_splice,
        SYS_stat,
        SYS_statfs,
        SYS_statx,
        SYS_symlink,
        SYS_symlinkat,
        SYS_sync,
        SYS_sync_file_range,
        SYS_syncfs,
        SYS_sysinfo,
        SYS_tee,
        SYS_tgkill,
        SYS_time,
        SYS_timer_create,
        SYS_timer_delete,
        SYS_timer_getoverrun,
        SYS_timer_gettime,
        SYS_timer_settime,
        SYS_timerfd_create,
        SYS_timerfd_gettime,
        SYS_timerfd_settime,
        SYS_times,
        SYS_tkill,
        SYS_truncate,
        SYS_umask,
        SYS_uname,
        SYS_unlink,
        SYS_unlinkat,
        SYS_utime,
        SYS_utimensat,
        SYS_utimes,
        SYS_vfork,
        SYS_vmsplice,
        SYS_wait4,
        SYS_waitid,
        SYS_write,
        SYS_writev,
        SYS_arch_prctl,
        SYS_modify_ldt,
        SYS_process_vm_readv,
        SYS_process_vm_writev,
        SYS_ptrace,
        451, /* cachestat */
    ]
};

/// Calls allowed only with some arguments; everything else about them is denied.
#[cfg(target_arch = "x86_64")]
fn conditional(prog: &mut Vec<libc::sock_filter>, deny: u32) {
    // ioctl: everything but injecting input into a terminal.
    prog.push(jump(JEQ_K, libc::SYS_ioctl as u32, 0, 5));
    prog.push(stmt(LD_W_ABS, off_arg_lo(1)));
    prog.push(jump(JEQ_K, TIOCSTI, 1, 0));
    prog.push(jump(JEQ_K, TIOCLINUX, 0, 1));
    prog.push(stmt(RET_K, deny));
    prog.push(stmt(RET_K, RET_ALLOW));
    // clone: no new namespaces (a nested user namespace is the usual first step of an escape).
    prog.push(jump(JEQ_K, libc::SYS_clone as u32, 0, 4));
    prog.push(stmt(LD_W_ABS, off_arg_lo(0)));
    prog.push(jump(JSET_K, CLONE_NS_FLAGS, 0, 1));
    prog.push(stmt(RET_K, deny));
    prog.push(stmt(RET_K, RET_ALLOW));
    // clone3 hides its flags in memory: ENOSYS makes libc fall back to clone, which we can read.
    prog.push(jump(JEQ_K, libc::SYS_clone3 as u32, 0, 1));
    prog.push(stmt(RET_K, RET_ERRNO | libc::ENOSYS as u32));
    // socket: every family but vsock (the hypervisor's channel).
    prog.push(jump(JEQ_K, libc::SYS_socket as u32, 0, 4));
    prog.push(stmt(LD_W_ABS, off_arg_lo(0)));
    prog.push(jump(JEQ_K, AF_VSOCK, 0, 1));
    prog.push(stmt(RET_K, deny));
    prog.push(stmt(RET_K, RET_ALLOW));
    // personality: only the harmless values Docker allows.
    prog.push(jump(JEQ_K, libc::SYS_personality as u32, 0, 8));
    prog.push(stmt(LD_W_ABS, off_arg_lo(0)));
    for (i, v) in [0u32, 0x8, 0x20000, 0x20008, 0xffff_ffff].iter().enumerate() {
        prog.push(jump(JEQ_K, *v, (5 - i) as u8, 0));
    }
    prog.push(stmt(RET_K, deny));
    prog.push(stmt(RET_K, RET_ALLOW));
}

/// Contiguous runs of allowed syscall numbers, so the filter compares ranges, not each call.
fn ranges(nrs: &[libc::c_long]) -> Vec<(u32, u32)> {
    let mut v: Vec<u32> = nrs.iter().map(|n| *n as u32).collect();
    v.sort_unstable();
    v.dedup();
    let mut out: Vec<(u32, u32)> = Vec::new();
    for n in v {
        match out.last_mut() {
            Some((_, hi)) if *hi + 1 == n => *hi = n,
            _ => out.push((n, n)),
        }
    }
    out
}

/// Calls the monitor watches (`Plan::watch_syscalls`): sent to the supervisor, which records
/// them (argv at exec, the target of a memory read, that a process changed directory) and lets
/// them go on.
#[cfg(target_arch = "x86_64")]
pub const WATCHED: &[libc::c_long] = &[
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_chdir,
    libc::SYS_fchdir,
];
#[cfg(not(target_arch = "x86_64"))]
pub const WATCHED: &[libc::c_long] = &[];

/// The name of a watched call, without allocating: it is looked up while the caller waits.
pub fn watched_name(nr: i32) -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    let names: &[(libc::c_long, &str)] = &[
        (libc::SYS_execve, "execve"),
        (libc::SYS_execveat, "execveat"),
        (libc::SYS_ptrace, "ptrace"),
        (libc::SYS_process_vm_readv, "process_vm_readv"),
        (libc::SYS_process_vm_writev, "process_vm_writev"),
        (libc::SYS_chdir, "chdir"),
        (libc::SYS_fchdir, "fchdir"),
    ];
    #[cfg(not(target_arch = "x86_64"))]
    let names: &[(libc::c_long, &str)] = &[];
    names.iter().find(|(n, _)| *n == nr as libc::c_long).map(|(_, s)| *s)
}

/// The BPF program. With `notify`, denied calls are sent to the supervisor; otherwise they fail
/// with EPERM directly. With `watch` (and `notify`), the `WATCHED` calls are sent there too.
#[cfg(target_arch = "x86_64")]
pub fn program(notify: bool, watch: bool) -> Vec<libc::sock_filter> {
    let deny = if notify {
        RET_USER_NOTIF
    } else {
        RET_ERRNO | libc::EPERM as u32
    };
    let mut p = vec![
        stmt(LD_W_ABS, OFF_ARCH),
        jump(JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(RET_K, RET_KILL_PROCESS),
        stmt(LD_W_ABS, OFF_NR),
        jump(JGE_K, X32_BIT, 0, 1),
        stmt(RET_K, deny),
    ];
    if notify && watch {
        for nr in WATCHED {
            p.push(jump(JEQ_K, *nr as u32, 0, 1));
            p.push(stmt(RET_K, RET_USER_NOTIF));
        }
    }
    conditional(&mut p, deny);
    // The conditional blocks leave the accumulator holding an argument; reload the number.
    p.push(stmt(LD_W_ABS, OFF_NR));
    for (lo, hi) in ranges(ALLOWED) {
        p.push(jump(JGE_K, lo, 0, 2));
        p.push(jump(JGT_K, hi, 1, 0));
        p.push(stmt(RET_K, RET_ALLOW));
    }
    p.push(stmt(RET_K, deny));
    p
}

#[cfg(not(target_arch = "x86_64"))]
pub fn program(_notify: bool, _watch: bool) -> Vec<libc::sock_filter> {
    Vec::new()
}

/// Name of a syscall number, for reports (only the ones a job is likely to be denied).
pub fn name(nr: i32) -> String {
    #[cfg(target_arch = "x86_64")]
    {
        use libc::*;
        let n = nr as c_long;
        let known: &[(c_long, &str)] = &[
            (SYS_mount, "mount"),
            (SYS_umount2, "umount2"),
            (SYS_unshare, "unshare"),
            (SYS_setns, "setns"),
            (SYS_clone, "clone"),
            (SYS_bpf, "bpf"),
            (SYS_perf_event_open, "perf_event_open"),
            (SYS_userfaultfd, "userfaultfd"),
            (SYS_keyctl, "keyctl"),
            (SYS_add_key, "add_key"),
            (SYS_request_key, "request_key"),
            (SYS_kexec_load, "kexec_load"),
            (SYS_kexec_file_load, "kexec_file_load"),
            (SYS_init_module, "init_module"),
            (SYS_finit_module, "finit_module"),
            (SYS_delete_module, "delete_module"),
            (SYS_ioctl, "ioctl"),
            (SYS_socket, "socket"),
            (SYS_personality, "personality"),
            (SYS_pivot_root, "pivot_root"),
            (SYS_chroot, "chroot"),
            (SYS_fsopen, "fsopen"),
            (SYS_fsconfig, "fsconfig"),
            (SYS_fsmount, "fsmount"),
            (SYS_move_mount, "move_mount"),
            (SYS_open_tree, "open_tree"),
            (SYS_fspick, "fspick"),
            (SYS_mount_setattr, "mount_setattr"),
            (SYS_open_by_handle_at, "open_by_handle_at"),
            (SYS_name_to_handle_at, "name_to_handle_at"),
            (SYS_io_uring_setup, "io_uring_setup"),
            (SYS_io_uring_enter, "io_uring_enter"),
            (SYS_io_uring_register, "io_uring_register"),
            (SYS_reboot, "reboot"),
            (SYS_swapon, "swapon"),
            (SYS_swapoff, "swapoff"),
            (SYS_syslog, "syslog"),
            (SYS_acct, "acct"),
            (SYS_settimeofday, "settimeofday"),
            (SYS_clock_settime, "clock_settime"),
            (SYS_sethostname, "sethostname"),
            (SYS_setdomainname, "setdomainname"),
            (SYS_iopl, "iopl"),
            (SYS_ioperm, "ioperm"),
            (SYS_quotactl, "quotactl"),
            (SYS_lookup_dcookie, "lookup_dcookie"),
            (SYS_fanotify_init, "fanotify_init"),
            (SYS_pidfd_getfd, "pidfd_getfd"),
            (SYS_kcmp, "kcmp"),
            (SYS_vhangup, "vhangup"),
            (SYS_get_mempolicy, "get_mempolicy"),
            (SYS_set_mempolicy, "set_mempolicy"),
            (SYS_mbind, "mbind"),
            (SYS_move_pages, "move_pages"),
            (SYS_nfsservctl, "nfsservctl"),
            (SYS_uselib, "uselib"),
            (SYS_ustat, "ustat"),
            (SYS_sysfs, "sysfs"),
            (SYS__sysctl, "_sysctl"),
            (SYS_clone3, "clone3"),
            (SYS_execve, "execve"),
            (SYS_execveat, "execveat"),
            (SYS_ptrace, "ptrace"),
            (SYS_process_vm_readv, "process_vm_readv"),
            (SYS_process_vm_writev, "process_vm_writev"),
        ];
        if let Some((_, s)) = known.iter().find(|(k, _)| *k == n) {
            return s.to_string();
        }
    }
    format!("syscall_{nr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_neighbours() {
        assert_eq!(ranges(&[5, 1, 2, 3, 9, 10]), vec![(1, 3), (5, 5), (9, 10)]);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn dangerous_calls_are_not_in_the_allowlist() {
        for nr in [
            libc::SYS_mount,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_bpf,
            libc::SYS_perf_event_open,
            libc::SYS_userfaultfd,
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_request_key,
            libc::SYS_kexec_load,
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_fsopen,
            libc::SYS_fsmount,
            libc::SYS_move_mount,
            libc::SYS_open_tree,
            libc::SYS_fsconfig,
            libc::SYS_open_by_handle_at,
            libc::SYS_io_uring_setup,
            libc::SYS_pivot_root,
            libc::SYS_chroot,
            libc::SYS_mount_setattr,
            libc::SYS_pidfd_getfd,
        ] {
            assert!(!ALLOWED.contains(&nr), "{} must be denied", name(nr as i32));
        }
        // Every jump stays inside the program, and it ends in a return.
        let p = program(true, true);
        for (i, ins) in p.iter().enumerate() {
            if ins.code & 0x07 == 0x05 {
                assert!(i + 1 + (ins.jt.max(ins.jf) as usize) < p.len());
            }
        }
        assert_eq!(p.last().unwrap().code, RET_K);
        assert!(p.len() < 4096);
    }
}
