//! The processes inside the sandbox: `init` (pid 1 of the job's pid namespace: sets the sandbox
//! up, starts the job, reaps, and takes every process with it when it exits) and the job itself,
//! which drops every privilege in a fixed order before exec. Read `init_setup` and `job_exec` as
//! checklists, in the order the steps must happen.

use crate::error::{Step, StepError};
use crate::mnt::{self, JobPaths};
use crate::msg::{self, FromSandbox, ProcInfo, ToInit};
use crate::plan::Plan;
use crate::sys::{self, Pid, WaitStatus};
use crate::{landlock_fs, seccomp};
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What init and the job need besides the plan.
pub struct ChildCtx {
    pub sock: RawFd,
    pub paths: JobPaths,
    /// uid 0 is mapped in the job's user namespace (stockade runs as root).
    pub root_mapped: bool,
    /// Set when no cgroup holds the limit: (RLIMIT_NPROC, RLIMIT_AS) fallbacks.
    pub nproc_fallback: Option<u64>,
    pub as_fallback: Option<u64>,
    /// Write ends of the output pipes when the supervisor masks secrets.
    pub out_pipes: Option<(RawFd, RawFd)>,
    /// Paths writable under Landlock.
    pub writable: Vec<PathBuf>,
    /// The job is monitored (`Plan::before_job`): report the root ready before waiting for
    /// `Start`, and wait for `KillAll` before killing what outlived the job's main process.
    pub pause_before_job: bool,
}

/// Entry point of the sandbox's init process, right after clone. Never returns.
pub fn init_main(mut plan: Plan, ctx: ChildCtx) -> ! {
    match init_setup(&mut plan, &ctx) {
        Ok((job, sigfd)) => init_loop(ctx.sock, job, sigfd, ctx.pause_before_job),
        Err(e) => {
            let _ = msg::send(
                ctx.sock,
                &FromSandbox::SetupFailed {
                    step: e.step,
                    message: e.source.to_string(),
                },
                &[],
            );
            sys::exit_now(125)
        }
    }
}

fn init_setup(plan: &mut Plan, ctx: &ChildCtx) -> Result<(Pid, RawFd), StepError> {
    // If the supervisor's thread dies, so does the whole job (third layer of teardown).
    sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong).step(|| "set parent-death signal".into())?;
    // The supervisor writes our uid/gid maps, then says go.
    match msg::recv::<ToInit>(ctx.sock) {
        Ok(Some((ToInit::Go, _))) => {}
        _ => sys::exit_now(125),
    }
    if ctx.root_mapped {
        // Become root of the user namespace: from here on our host identity is unprivileged.
        sys::setresgid(0).step(|| "become root of the user namespace (gid)".into())?;
        sys::setresuid(0).step(|| "become root of the user namespace (uid)".into())?;
    }
    sys::unshare(libc::CLONE_NEWCGROUP).step(|| "new cgroup namespace".into())?;
    sys::sethostname(&plan.hostname).step(|| format!("set hostname {}", plan.hostname))?;
    sys::interface_up("lo").step(|| "bring lo up".into())?;
    if let Some(net) = plan.net_setup.take() {
        let fds = net().map_err(|e| StepError::new("egress network setup", io::Error::other(e)))?;
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        msg::send(ctx.sock, &FromSandbox::NetFds, &raw).step(|| "send egress sockets".into())?;
    }
    mnt::build_root(plan, &ctx.paths)?;
    if ctx.pause_before_job {
        // The supervisor's monitor marks the job's mounts before the job's first process exists.
        msg::send(ctx.sock, &FromSandbox::RootReady, &[]).step(|| "report the root ready".into())?;
    }
    // The supervisor joined us to the cgroups meanwhile; the job starts inside them.
    match msg::recv::<ToInit>(ctx.sock) {
        Ok(Some((ToInit::Start, _))) => {}
        _ => sys::exit_now(125),
    }
    // SIGCHLD arrives through a signalfd; block it before the job can exit.
    let sigfd = sys::signalfd(&[libc::SIGCHLD]).step(|| "signalfd".into())?;
    // The job shares init's memory until its exec (the signalfd is closed with every other fd
    // but the socket in `job_exec`): it only borrows, and its exit code says how it failed.
    let plan: &Plan = plan;
    let pid = sys::vfork(0, &mut || {
        let e = job_exec(plan, ctx);
        let errno = e.source.raw_os_error().unwrap_or(0);
        let _ = msg::send(
            ctx.sock,
            &FromSandbox::ExecFailed {
                errno,
                message: format!("{}: {}", e.step, e.source),
            },
            &[],
        );
        if errno == libc::ENOENT {
            127
        } else if e.step.starts_with("exec") {
            126
        } else {
            125
        }
    })
    .step(|| "start the job".into())?;
    // Nobody in the job may ptrace or read the memory of init. Set only now: the job's uid
    // change reset the dumpable flag of the memory it shared with us to the host's
    // fs.suid_dumpable.
    sys::prctl(libc::PR_SET_DUMPABLE, 0).step(|| "make init non-dumpable".into())?;
    Ok((pid, sigfd.into_raw_fd()))
}

/// The job's privilege drop, in order; returns only on failure.
fn job_exec(plan: &Plan, ctx: &ChildCtx) -> StepError {
    match job_exec_inner(plan, ctx) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

enum Never {}

fn job_exec_inner(plan: &Plan, ctx: &ChildCtx) -> Result<Never, StepError> {
    sys::reset_signals();
    sys::setsid().step(|| "new session".into())?;
    if !plan.stdin {
        let null = std::fs::File::open("/dev/null").step(|| "open /dev/null".into())?;
        sys::dup2(null.as_raw_fd(), 0).step(|| "stdin from /dev/null".into())?;
    }
    if let Some((out, err)) = ctx.out_pipes {
        sys::dup2(out, 1).step(|| "stdout pipe".into())?;
        sys::dup2(err, 2).step(|| "stderr pipe".into())?;
    }
    set_rlimits(plan, ctx)?;
    sys::chdir(&ctx.paths.workspace).step(|| format!("chdir to workspace {}", ctx.paths.workspace.display()))?;

    // Capabilities: empty the bounding set while we still may, then lose the rest with the uid.
    drop_capabilities()?;
    if ctx.root_mapped {
        sys::setgroups_empty().step(|| "drop supplementary groups".into())?;
    }
    sys::setresgid(plan.gid).step(|| format!("setresgid {}", plan.gid))?;
    sys::setresuid(plan.uid).step(|| format!("setresuid {}", plan.uid))?;
    verify_no_capabilities()?;
    sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1).step(|| "no_new_privs".into())?;

    if plan.landlock {
        landlock_fs::restrict(&ctx.writable).map_err(|e| StepError::new("landlock", io::Error::other(e)))?;
    }

    let env = build_env(&plan.env);
    let argv: Vec<CString> = plan
        .argv
        .iter()
        .map(|a| sys::cstr_os(a))
        .collect::<io::Result<_>>()
        .step(|| "command line (NUL byte in an argument)".into())?;
    let candidates = resolve_command(&plan.argv[0], &plan.env);

    if plan.seccomp {
        let prog = seccomp::program(true, plan.watch_syscalls);
        match sys::seccomp_install(&prog, true) {
            Ok(Some(listener)) => {
                msg::send(ctx.sock, &FromSandbox::SeccompListener, &[listener.as_raw_fd()])
                    .step(|| "send seccomp listener".into())?;
            }
            Ok(None) => {}
            // Kernels without user notification still get the filter, answering EPERM directly.
            Err(_) => {
                sys::seccomp_install(&seccomp::program(false, false), false)
                    .step(|| "install seccomp filter".into())?;
            }
        }
    }

    // Nothing of the supervisor's but stdio reaches the job (the socket is close-on-exec).
    if ctx.sock > 3 {
        let _ = sys::close_range(3, ctx.sock as u32 - 1);
    }
    let _ = sys::close_range(ctx.sock as u32 + 1, u32::MAX);

    let mut last = io::Error::from_raw_os_error(libc::ENOENT);
    for c in &candidates {
        let Ok(path) = sys::cstr(c) else { continue };
        let e = sys::execve(&path, &argv, &env);
        match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => {}
            _ => last = e,
        }
        if last.raw_os_error() != Some(libc::ENOENT) {
            break;
        }
    }
    Err(StepError::new(format!("exec {}", plan.argv[0].to_string_lossy()), last))
}

fn set_rlimits(plan: &Plan, ctx: &ChildCtx) -> Result<(), StepError> {
    let (_, hard) = sys::getrlimit(libc::RLIMIT_NOFILE).step(|| "read RLIMIT_NOFILE".into())?;
    let n = plan.limits.open_files.min(hard);
    sys::setrlimit(libc::RLIMIT_NOFILE, n, n).step(|| "set RLIMIT_NOFILE".into())?;
    sys::setrlimit(libc::RLIMIT_CORE, 0, 0).step(|| "set RLIMIT_CORE".into())?;
    if let Some(f) = plan.limits.file_size {
        sys::setrlimit(libc::RLIMIT_FSIZE, f, f).step(|| "set RLIMIT_FSIZE".into())?;
    }
    if let Some(p) = ctx.nproc_fallback {
        sys::setrlimit(libc::RLIMIT_NPROC, p, p).step(|| "set RLIMIT_NPROC".into())?;
    }
    if let Some(m) = ctx.as_fallback {
        sys::setrlimit(libc::RLIMIT_AS, m, m).step(|| "set RLIMIT_AS".into())?;
    }
    Ok(())
}

fn drop_capabilities() -> Result<(), StepError> {
    use caps::CapSet;
    caps::clear(None, CapSet::Ambient)
        .map_err(|e| StepError::new("clear ambient capabilities", io::Error::other(e.to_string())))?;
    for cap in caps::all() {
        caps::drop(None, CapSet::Bounding, cap).map_err(|e| {
            StepError::new(
                format!("drop {cap} from the bounding set"),
                io::Error::other(e.to_string()),
            )
        })?;
    }
    caps::clear(None, CapSet::Inheritable)
        .map_err(|e| StepError::new("clear inheritable capabilities", io::Error::other(e.to_string())))?;
    Ok(())
}

fn verify_no_capabilities() -> Result<(), StepError> {
    use caps::CapSet;
    // Without keep-caps, setresuid to a non-zero uid already emptied these; make sure.
    for set in [
        CapSet::Effective,
        CapSet::Permitted,
        CapSet::Inheritable,
        CapSet::Ambient,
    ] {
        caps::clear(None, set).map_err(|e| StepError::new("clear capabilities", io::Error::other(e.to_string())))?;
        let left =
            caps::read(None, set).map_err(|e| StepError::new("read capabilities", io::Error::other(e.to_string())))?;
        if !left.is_empty() {
            return Err(StepError::new(
                "verify capabilities",
                io::Error::other(format!("{set:?} still holds {left:?}")),
            ));
        }
    }
    Ok(())
}

fn build_env(env: &[(OsString, OsString)]) -> Vec<CString> {
    env.iter()
        .filter_map(|(k, v)| {
            let mut b = k.as_bytes().to_vec();
            b.push(b'=');
            b.extend_from_slice(v.as_bytes());
            CString::new(b).ok()
        })
        .collect()
}

/// The command's candidate paths: itself when it has a slash, else each PATH entry.
fn resolve_command(cmd: &OsStr, env: &[(OsString, OsString)]) -> Vec<PathBuf> {
    if cmd.as_bytes().contains(&b'/') {
        return vec![PathBuf::from(cmd)];
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    std::env::split_paths(&path).map(|d| d.join(cmd)).collect()
}

/// pid 1 of the job: forwards signals, reaps orphans, and when the job's main process exits,
/// reports what is still alive and takes it all down with it.
fn init_loop(sock: RawFd, job: Pid, sigfd_raw: RawFd, hold: bool) -> ! {
    loop {
        let ready = sys::poll_read(&[sock, sigfd_raw], -1).unwrap_or_else(|_| vec![true, true]);
        if ready[0] {
            match msg::recv::<ToInit>(sock) {
                Ok(Some((ToInit::Signal(s), _))) => {
                    let _ = sys::kill(job, s);
                }
                Ok(Some((ToInit::Go | ToInit::Start, _))) => {}
                // KillAll, or the supervisor is gone: end everything now.
                _ => {
                    let _ = sys::kill(-1, libc::SIGKILL);
                    sys::exit_now(137);
                }
            }
        }
        if ready[1] {
            drain(sigfd_raw);
            while let Ok(Some((pid, status))) = sys::waitpid(-1, true) {
                if pid == job {
                    let leftovers = living_processes();
                    let _ = msg::send(sock, &FromSandbox::Exited { status, leftovers }, &[]);
                    if hold {
                        // The monitor reads what the job did to them (a /proc/N/mem open can only
                        // be examined while N lives) before they die. Bounded: a supervisor that
                        // does not answer does not keep them alive.
                        if let Ok(r) = sys::poll_read(&[sock], 2000)
                            && r[0]
                        {
                            let _ = msg::recv::<ToInit>(sock);
                        }
                    }
                    let _ = sys::kill(-1, libc::SIGKILL);
                    sys::exit_now(match status {
                        WaitStatus::Exited(c) => c,
                        WaitStatus::Signaled(s) => 128 + s,
                    });
                }
            }
        }
    }
}

fn drain(fd: RawFd) {
    let mut buf = [0u8; 128 * 8];
    loop {
        // Non-blocking signalfd: read until EAGAIN.
        match sys::read_fd(fd, &mut buf) {
            Ok(n) if n > 0 => continue,
            _ => return,
        }
    }
}

/// Processes of the job still alive (pid 1 excluded), seen through the job's own /proc.
fn living_processes() -> Vec<ProcInfo> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else { return out };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == 1 {
            continue;
        }
        let base = Path::new("/proc").join(pid.to_string());
        let comm = std::fs::read_to_string(base.join("comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let cmdline = crate::teardown::cmdline(pid);
        // Zombies of the job's main process tree already ended; report only the living.
        let state = std::fs::read_to_string(base.join("stat")).unwrap_or_default();
        if state
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'))
        {
            continue;
        }
        out.push(ProcInfo { pid, comm, cmdline });
    }
    out
}
