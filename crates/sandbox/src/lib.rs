//! A fresh, ephemeral, locked-down Linux sandbox for one CI job, torn down completely afterwards.
//! `Sandbox::spawn` and `Sandbox::wait` read as the ordered checklist of a job's life.

mod cgroup;
mod child;
pub mod doctor;
mod error;
mod idmap;
mod landlock_fs;
mod mnt;
mod msg;
mod output;
mod plan;
mod seccomp;
pub mod state;
mod sys;
mod teardown;

pub use cgroup::CgroupStats;
pub use error::SandboxError;
pub use msg::ProcInfo;
pub use plan::{BeforeJob, BindMount, FileMount, HIDDEN, Limits, NetSetup, Plan};
pub use sys::WaitStatus;
pub use teardown::Killer;

use cgroup::Cgroups;
use child::ChildCtx;
use mnt::JobPaths;
use msg::{FromSandbox, ToInit};
use std::collections::BTreeMap;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// First host uid of the per-job id ranges used when stockade runs as root.
const HOST_ID_BASE: u32 = 100_000_000;
const HOST_ID_RANGE: u32 = 65536;

/// A syscall the job was denied, with its first instances.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DeniedCall {
    pub count: u64,
    /// Up to 5 first instances: (host pid, argv).
    pub first: Vec<(u32, String)>,
}

/// Everything known about a job once it ended and was torn down.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub status: Option<WaitStatus>,
    pub timed_out: bool,
    /// Signal forwarded from stockade's own SIGINT/SIGTERM, if any.
    pub interrupted: Option<i32>,
    pub oom_killed: bool,
    pub pids_limit_hit: bool,
    pub exec_error: Option<(i32, String)>,
    pub wall: Duration,
    pub stats: CgroupStats,
    pub denied_syscalls: BTreeMap<String, DeniedCall>,
    /// Processes still alive when the job's main process exited (killed by teardown).
    pub left_running: Vec<ProcInfo>,
    pub warnings: Vec<String>,
    pub enforced: Vec<String>,
    /// Anything teardown found still present after cleaning up: an error.
    pub leftovers: Vec<String>,
}

/// A running sandbox.
pub struct Sandbox {
    pub job_id: String,
    sock: OwnedFd,
    init_pid: sys::Pid,
    init_pidfd: OwnedFd,
    cgroups: Cgroups,
    paths: JobPaths,
    timeout: Duration,
    kill_grace: Duration,
    started: Instant,
    warnings: Vec<String>,
    net_fds: Vec<OwnedFd>,
    denied: Arc<Mutex<BTreeMap<String, DeniedCall>>>,
    notif_thread: Option<std::thread::JoinHandle<()>>,
    notif_tx: Option<std::sync::mpsc::Sender<NotifStart>>,
    stop_notif: Arc<std::sync::atomic::AtomicBool>,
    output: Option<output::Masker>,
    sigfd: OwnedFd,
    on_denied: Option<DeniedHook>,
    on_watched: Option<WatchHook>,
    /// Init waits for `KillAll` once the job's main process has ended (a monitored job).
    holds_at_exit: bool,
    before_kill: Option<Box<dyn Fn() + Send>>,
}

/// Called for every syscall the job was denied: (name, host pid, argv).
pub type DeniedHook = Arc<dyn Fn(&str, u32, &str) + Send + Sync>;
/// Called for every watched syscall (`Plan::watch_syscalls`) while its caller waits: (host tid,
/// name, arguments). The call goes on when the hook returns.
pub type WatchHook = Arc<dyn Fn(u32, &str, [u64; 6]) + Send + Sync>;

/// Closes `fd` in a short-lived detached process: for a file whose last close is slow (a fanotify
/// group) and whose owner has nothing left to wait for.
pub fn close_detached(fd: OwnedFd) {
    sys::close_detached(fd)
}

/// Removes a job's cgroups and what the supervisor made on the host for it, when it fails to
/// start; cgroups that would not go keep the job directory, the mark by which gc finds them.
fn discard(cgroups: &Cgroups, paths: &JobPaths) {
    let kept = !cgroups.remove().is_empty();
    paths.remove(kept);
}

/// Open file descriptors of this process, to check that a job leaks none of the supervisor's.
pub fn count_fds() -> usize {
    fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

impl Sandbox {
    /// Creates the job's sandbox and starts its command. Must be called while the process is
    /// single-threaded (it clones); the callers' threads start after it returns (it starts the
    /// seccomp thread itself, once the clone is done).
    pub fn spawn(mut plan: Plan) -> Result<Sandbox, SandboxError> {
        let threads = sys::thread_count();
        if threads > 1 {
            return Err(SandboxError::Threaded(threads));
        }
        // From here on SIGINT/SIGTERM/SIGHUP wait in a signalfd, to be forwarded to the job.
        let sigfd = sys::signalfd(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP]).map_err(SandboxError::Signals)?;
        let root = sys::getuid() == 0;
        let mut warnings = Vec::new();
        let (host_uid, host_gid) = if root {
            let slot = (std::process::id() % 10_000) * HOST_ID_RANGE;
            (HOST_ID_BASE + slot + plan.uid, HOST_ID_BASE + slot + plan.gid)
        } else {
            (sys::getuid(), sys::getgid())
        };

        // 1. The workspace, checked before anything is created; then the job's directory and,
        // without a workspace, a scratch one. The job directory stays empty on the host: init
        // covers it with a private tmpfs for the new root, the hidden-file stand-in and the files
        // given to the job, so that secrets never reach the disk.
        let ws_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SandboxError::Workspace { path, source }
        };
        let given = match &plan.workspace {
            Some(w) => {
                let w = fs::canonicalize(w).map_err(ws_err(w))?;
                if !w.is_dir() {
                    return Err(ws_err(&w)(std::io::Error::from_raw_os_error(libc::ENOTDIR)));
                }
                Some(w)
            }
            None => None,
        };
        // A workspace owned by someone else is shown to the job as its own through an id-mapped
        // mount: the owner's files stay the owner's on disk.
        let workspace_tree = match &given {
            Some(w) if root => {
                use std::os::unix::fs::MetadataExt;
                let meta = fs::metadata(w).map_err(ws_err(w))?;
                if meta.uid() != host_uid || meta.gid() != host_gid {
                    Some(idmap::workspace_tree(w, (meta.uid(), meta.gid()), (host_uid, host_gid)).map_err(ws_err(w))?)
                } else {
                    None
                }
            }
            _ => None,
        };
        let lower_tree = if root && plan.writable_root {
            Some(
                idmap::root_lower_tree(
                    &plan.rootfs,
                    (host_uid - plan.uid, host_gid - plan.gid),
                    (plan.uid, plan.gid),
                    HOST_ID_RANGE,
                )
                .map_err(|source| SandboxError::JobDir {
                    path: plan.rootfs.clone(),
                    source,
                })?,
            )
        } else {
            None
        };
        let dir = state::create_job_dir(&plan.state_root, &plan.job_id).map_err(|source| SandboxError::JobDir {
            path: plan.state_root.join("jobs").join(&plan.job_id),
            source,
        })?;
        let mut paths = JobPaths {
            dir: dir.clone(),
            workspace: PathBuf::new(),
            scratch: None,
            workspace_tree: None,
            lower_tree: None,
        };
        paths.workspace = match given {
            Some(w) => w,
            None => {
                let made = state::create_scratch_dir(&plan.state_root, &plan.job_id).and_then(|w| {
                    paths.scratch = Some(w.clone());
                    sys::chown(&w, host_uid, host_gid).map(|_| w)
                });
                match made {
                    Ok(w) => w,
                    Err(source) => {
                        paths.remove(false);
                        return Err(SandboxError::Workspace {
                            path: plan.state_root.join("work").join(&plan.job_id),
                            source,
                        });
                    }
                }
            }
        };
        let workspace = paths.workspace.clone();

        // 2. Cgroups and the limits they carry; rlimits where they cannot.
        let cgroups = match Cgroups::create(&plan.job_id, &plan.limits) {
            Ok(c) => c,
            Err(e) => {
                paths.remove(false);
                return Err(e);
            }
        };
        warnings.extend(cgroups.warnings.iter().cloned());
        let nproc_fallback = plan.limits.pids.filter(|_| !cgroups.has_limit("pids")).map(u64::from);
        let as_fallback = plan.limits.memory.filter(|_| !cgroups.has_limit("memory"));
        if !root {
            warnings.push("running unprivileged: the job's uid maps to the caller's own uid".into());
        }

        // 3. Channels, and output pipes when secrets must be masked.
        let (sup_sock, child_sock) = sys::seqpacket_pair().map_err(SandboxError::Channel)?;
        let (masker, out_pipes) = if plan.mask.is_empty() {
            (None, None)
        } else {
            let (m, w_out, w_err) = output::Masker::new(plan.mask.clone()).map_err(SandboxError::Channel)?;
            (Some(m), Some((w_out, w_err)))
        };

        let mut writable = vec![
            workspace.clone(),
            PathBuf::from("/tmp"),
            PathBuf::from("/var/tmp"),
            PathBuf::from("/run"),
            PathBuf::from("/dev/shm"),
        ];
        writable.extend(plan.binds.iter().filter(|b| b.writable).map(|b| b.target.clone()));
        writable.extend(plan.writable.iter().cloned());
        if plan.writable_root {
            writable.push(PathBuf::from("/"));
        }
        let ctx = ChildCtx {
            sock: child_sock.as_raw_fd(),
            paths: JobPaths {
                dir: paths.dir.clone(),
                workspace: paths.workspace.clone(),
                scratch: paths.scratch.clone(),
                workspace_tree,
                lower_tree,
            },
            root_mapped: root,
            nproc_fallback,
            as_fallback,
            out_pipes: out_pipes.as_ref().map(|(o, e)| (o.as_raw_fd(), e.as_raw_fd())),
            writable,
            pause_before_job: plan.before_job.is_some(),
        };
        let timeout = plan.timeout;
        let kill_grace = plan.kill_grace;
        if plan.hostname.is_empty() {
            plan.hostname = format!("stockade-{}", &plan.job_id[..8.min(plan.job_id.len())]);
        }

        // 4. Clone into new namespaces (and atomically into the v2 cgroup).
        let cg_fd = match &cgroups.v2 {
            Some(d) => Some(sys::open_dir(d).map_err(|source| SandboxError::Cgroup {
                path: d.clone(),
                source,
            })?),
            None => None,
        };
        let flags = (libc::CLONE_NEWUSER
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS) as u64;
        let forked = match sys::clone3_fork(flags, cg_fd.as_ref().map(|f| f.as_raw_fd())) {
            Ok(f) => f,
            Err(e) => {
                discard(&cgroups, &paths);
                return Err(SandboxError::Clone(e));
            }
        };
        let (init_pid, init_pidfd) = match forked {
            sys::Forked::Child => {
                drop(sup_sock);
                child::init_main(plan, ctx)
            }
            sys::Forked::Parent { pid, pidfd } => (pid, pidfd),
        };
        drop(child_sock);
        drop(out_pipes);
        drop(cg_fd);
        let mut masker = masker;
        if let Some(m) = masker.as_mut() {
            m.start();
        }

        let mut sb = Sandbox {
            job_id: plan.job_id.clone(),
            sock: sup_sock,
            init_pid,
            init_pidfd,
            cgroups,
            paths,
            timeout,
            kill_grace,
            started: Instant::now(),
            warnings,
            net_fds: Vec::new(),
            denied: Arc::new(Mutex::new(BTreeMap::new())),
            notif_thread: None,
            notif_tx: None,
            stop_notif: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            output: masker,
            sigfd,
            on_denied: None,
            on_watched: None,
            holds_at_exit: plan.before_job.is_some(),
            before_kill: None,
        };

        // 5. Identity maps; then init builds the sandbox while we join it to the v1 cgroups (a
        // v1 migration waits out an RCU grace period: time better spent in parallel). Init
        // starts the job only on `Start`, so the job's first process is born inside its limits.
        if let Err(e) = sb.write_maps(root, host_uid, host_gid, &plan) {
            sb.abort();
            return Err(e);
        }
        if let Err(e) = msg::send(sb.sock.as_raw_fd(), &ToInit::Go, &[]) {
            sb.abort();
            return Err(SandboxError::Channel(e));
        }
        if plan.seccomp {
            sb.prestart_notif_thread();
        }
        let joined = sb.cgroups.join_v1(init_pid);
        if let Err(e) = joined {
            sb.abort();
            return Err(e);
        }
        // 6. With egress, init hands back its listening sockets before the job starts.
        if plan.net_setup.is_some() {
            match msg::recv::<FromSandbox>(sb.sock.as_raw_fd()) {
                Ok(Some((FromSandbox::NetFds, fds))) => sb.net_fds = fds,
                Ok(Some((FromSandbox::SetupFailed { step, message }, _))) => {
                    sb.abort();
                    return Err(SandboxError::Setup { step, message });
                }
                Ok(_) => {
                    sb.abort();
                    return Err(SandboxError::InitDied);
                }
                Err(e) => {
                    sb.abort();
                    return Err(SandboxError::Channel(e));
                }
            }
        }
        // 7. The monitor's hook, between the job's root being built and its first process.
        if let Some(hook) = plan.before_job.take() {
            match msg::recv::<FromSandbox>(sb.sock.as_raw_fd()) {
                Ok(Some((FromSandbox::RootReady, _))) => hook(init_pid),
                Ok(Some((FromSandbox::SetupFailed { step, message }, _))) => {
                    sb.abort();
                    return Err(SandboxError::Setup { step, message });
                }
                Ok(_) => {
                    sb.abort();
                    return Err(SandboxError::InitDied);
                }
                Err(e) => {
                    sb.abort();
                    return Err(SandboxError::Channel(e));
                }
            }
        }
        // 8. Everything is in place: the job may start.
        if let Err(e) = msg::send(sb.sock.as_raw_fd(), &ToInit::Start, &[]) {
            sb.abort();
            return Err(SandboxError::Channel(e));
        }
        Ok(sb)
    }

    /// Every denied syscall is also handed to `hook` as it happens (the monitor's block mode).
    pub fn on_denied(&mut self, hook: DeniedHook) {
        self.on_denied = Some(hook);
    }

    /// Called when the job's main process has ended and before what outlived it is killed (the
    /// monitor catches up with the job's events while the processes they name still exist).
    /// Only a job spawned with `Plan::before_job` waits for it.
    pub fn before_kill(&mut self, hook: Box<dyn Fn() + Send>) {
        self.before_kill = Some(hook);
    }

    /// Every watched syscall is handed to `hook` before it goes on.
    pub fn on_watched(&mut self, hook: WatchHook) {
        self.on_watched = Some(hook);
    }

    fn write_maps(&self, root: bool, host_uid: u32, host_gid: u32, plan: &Plan) -> Result<(), SandboxError> {
        let base = format!("/proc/{}", self.init_pid);
        let w = |file: &'static str, s: String| {
            fs::write(format!("{base}/{file}"), s).map_err(|source| SandboxError::UserMap { file, source })
        };
        if root {
            let uid0 = host_uid - plan.uid;
            let gid0 = host_gid - plan.gid;
            w("uid_map", format!("0 {uid0} {HOST_ID_RANGE}\n"))?;
            w("gid_map", format!("0 {gid0} {HOST_ID_RANGE}\n"))?;
        } else {
            w("setgroups", "deny".into())?;
            w("uid_map", format!("{} {host_uid} 1\n", plan.uid))?;
            w("gid_map", format!("{} {host_gid} 1\n", plan.gid))?;
        }
        Ok(())
    }

    /// Listening sockets the egress setup made inside the job's network namespace.
    pub fn take_net_fds(&mut self) -> Vec<OwnedFd> {
        std::mem::take(&mut self.net_fds)
    }

    /// A handle that kills the whole job from any thread (block mode, signals).
    pub fn killer(&self) -> Killer {
        Killer::new(&self.cgroups, &self.init_pidfd)
    }

    /// The host pid of the sandbox's init (pid 1 of the job).
    pub fn init_pid(&self) -> i32 {
        self.init_pid
    }

    fn abort(&mut self) {
        let _ = sys::pidfd_send_signal(&self.init_pidfd, libc::SIGKILL);
        let _ = sys::waitpid(self.init_pid, false);
        self.cgroups.kill_all();
        discard(&self.cgroups, &self.paths);
    }

    /// Supervises the job until it ends (forwarding SIGINT/SIGTERM, enforcing the timeout), then
    /// tears everything down and verifies that nothing of it remains.
    pub fn wait(mut self) -> Result<Outcome, SandboxError> {
        let mut status = None;
        let mut left_running = Vec::new();
        let mut exec_error = None;
        let mut timed_out = false;
        let mut interrupted = None;
        let mut kill_at: Option<Instant> = None;
        let deadline = self.started + self.timeout;
        let mut sock_open = true;
        let mut setup_error = None;

        loop {
            let now = Instant::now();
            if kill_at.is_none() && now >= deadline {
                timed_out = true;
                let _ = msg::send(self.sock.as_raw_fd(), &ToInit::Signal(libc::SIGTERM), &[]);
                kill_at = Some(now + self.kill_grace);
            }
            if let Some(k) = kill_at
                && now >= k
            {
                let _ = msg::send(self.sock.as_raw_fd(), &ToInit::KillAll, &[]);
                self.cgroups.kill_all();
                let _ = sys::pidfd_send_signal(&self.init_pidfd, libc::SIGKILL);
                kill_at = Some(now + Duration::from_secs(3600));
            }
            let next = kill_at.unwrap_or(deadline).saturating_duration_since(now);
            let wait_ms = next.as_millis().min(60_000) as i32 + 1;
            let sock_fd = if sock_open { self.sock.as_raw_fd() } else { -1 };
            let ready = sys::poll_read(&[sock_fd, self.sigfd.as_raw_fd(), self.init_pidfd.as_raw_fd()], wait_ms)
                .map_err(SandboxError::Wait)?;
            if ready[0] {
                match msg::recv::<FromSandbox>(self.sock.as_raw_fd()) {
                    Ok(Some((m, fds))) => match m {
                        FromSandbox::SeccompListener => {
                            if let (Some(fd), Some(tx)) = (fds.into_iter().next(), self.notif_tx.take()) {
                                let _ = tx.send(NotifStart {
                                    fd,
                                    hook: self.on_denied.clone(),
                                    watch: self.on_watched.clone(),
                                });
                            }
                        }
                        FromSandbox::Exited { status: s, leftovers } => {
                            status = Some(s);
                            left_running = leftovers;
                            if self.holds_at_exit {
                                if let Some(hook) = &self.before_kill {
                                    hook();
                                }
                                let _ = msg::send(self.sock.as_raw_fd(), &ToInit::KillAll, &[]);
                            }
                        }
                        FromSandbox::ExecFailed { errno, message } => exec_error = Some((errno, message)),
                        FromSandbox::SetupFailed { step, message } => setup_error = Some((step, message)),
                        FromSandbox::NetFds | FromSandbox::RootReady => {}
                    },
                    _ => sock_open = false,
                }
            }
            if ready[1] {
                while let Some(sig) = sys::read_signalfd(&self.sigfd) {
                    interrupted = Some(sig);
                    let _ = msg::send(self.sock.as_raw_fd(), &ToInit::Signal(sig), &[]);
                    if kill_at.is_none() {
                        kill_at = Some(Instant::now() + self.kill_grace);
                    }
                }
            }
            if ready[2] {
                // init is gone, and with it the pid namespace: collect any last messages.
                while sock_open {
                    match sys::poll_read(&[self.sock.as_raw_fd()], 0) {
                        Ok(r) if r[0] => match msg::recv::<FromSandbox>(self.sock.as_raw_fd()) {
                            Ok(Some((FromSandbox::Exited { status: s, leftovers }, _))) => {
                                status = Some(s);
                                left_running = leftovers;
                            }
                            Ok(Some((FromSandbox::ExecFailed { errno, message }, _))) => {
                                exec_error = Some((errno, message))
                            }
                            Ok(Some((FromSandbox::SetupFailed { step, message }, _))) => {
                                setup_error = Some((step, message))
                            }
                            Ok(Some(_)) => {}
                            _ => sock_open = false,
                        },
                        _ => break,
                    }
                }
                let init_status = sys::waitpid(self.init_pid, false).map_err(SandboxError::Wait)?;
                if status.is_none() && setup_error.is_none() {
                    // Killed from outside (timeout, signal, OOM of init): init's own status speaks.
                    status = init_status.map(|(_, s)| s);
                }
                break;
            }
        }
        let wall = self.started.elapsed();

        // Teardown: kill what is left, collect figures, remove and verify.
        self.cgroups.kill_all();
        let stats = self.cgroups.stats();
        self.stop_notif.store(true, std::sync::atomic::Ordering::Relaxed);
        drop(self.notif_tx.take());
        if let Some(t) = self.notif_thread.take() {
            let _ = t.join();
        }
        if let Some(m) = self.output.take() {
            m.finish();
        }
        drop(std::mem::take(&mut self.net_fds));
        let mut leftovers = self.cgroups.remove();
        let keep_mark = !leftovers.is_empty();
        leftovers.extend(teardown::verify(&self.paths, &self.cgroups, keep_mark));
        if let Some((step, message)) = setup_error {
            return Err(SandboxError::Setup { step, message });
        }
        let denied = std::mem::take(&mut *self.denied.lock().unwrap_or_else(|e| e.into_inner()));
        Ok(Outcome {
            status,
            timed_out,
            interrupted,
            oom_killed: stats.oom_kills.unwrap_or(0) > 0
                || (stats.memory_limit_hit && matches!(status, Some(WaitStatus::Signaled(libc::SIGKILL)))),
            pids_limit_hit: stats.pids_limit_hit,
            exec_error,
            wall,
            stats,
            denied_syscalls: denied,
            left_running,
            warnings: std::mem::take(&mut self.warnings),
            enforced: self.cgroups.enforced.clone(),
            leftovers,
        })
    }

    /// Starts the thread that answers the job's seccomp notifications before the job exists, off
    /// the job's path: its first exec waits for that thread. The listener and the hooks (set
    /// after `spawn`) reach it when the job sends the listener.
    fn prestart_notif_thread(&mut self) {
        let (tx, rx) = std::sync::mpsc::channel::<NotifStart>();
        let denied = Arc::clone(&self.denied);
        let stop = Arc::clone(&self.stop_notif);
        self.notif_tx = Some(tx);
        self.notif_thread = Some(std::thread::spawn(move || {
            // No listener (no filter, or the job never started): the sender is dropped.
            if let Ok(start) = rx.recv() {
                notif_loop(start, &denied, &stop);
            }
        }));
    }
}

/// The seccomp listener of a job and what to tell of its calls.
struct NotifStart {
    fd: OwnedFd,
    hook: Option<DeniedHook>,
    watch: Option<WatchHook>,
}

fn notif_loop(start: NotifStart, denied: &Mutex<BTreeMap<String, DeniedCall>>, stop: &std::sync::atomic::AtomicBool) {
    let NotifStart { fd, hook, watch } = start;
    // The notifying process waits for us: let the kernel hand the CPU straight over in
    // both directions instead of waking the other side on another CPU (measured: most of
    // the cost of each watched exec was those two cross-CPU wake-ups). Kernels before 6.6
    // refuse, and keep the ordinary wake-ups.
    let _ = sys::seccomp_notif_set_sync(fd.as_raw_fd());
    loop {
        let ev = sys::poll_revents(fd.as_raw_fd(), libc::POLLIN, 100).unwrap_or(libc::POLLERR);
        if ev & libc::POLLIN != 0 {
            let Ok(n) = sys::seccomp_notif_recv(fd.as_raw_fd()) else {
                continue;
            };
            if let Some(name) = seccomp::watched_name(n.data.nr) {
                // Nothing here may block on other threads: the caller waits until we answer.
                if let Some(w) = &watch {
                    w(n.pid, name, n.data.args);
                }
                let _ = sys::seccomp_notif_continue(fd.as_raw_fd(), n.id);
                continue;
            }
            let name = seccomp::name(n.data.nr);
            let mut argv = teardown::cmdline(n.pid as i32);
            if argv.len() > 256 {
                let mut cut = 256;
                while !argv.is_char_boundary(cut) {
                    cut -= 1;
                }
                argv.truncate(cut);
                argv.push('…');
            }
            // Answer first: the job is blocked until we do.
            let _ = sys::seccomp_notif_deny(fd.as_raw_fd(), n.id, libc::EPERM);
            if let Some(h) = &hook {
                h(&name, n.pid, &argv);
            }
            let mut d = denied.lock().unwrap_or_else(|e| e.into_inner());
            let e = d.entry(name).or_default();
            e.count += 1;
            if e.first.len() < 5 {
                e.first.push((n.pid, argv));
            }
        } else if ev & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            // The filter has no users left: every process of the job is gone.
            return;
        } else if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
    }
}
