//! The live monitor: a thread of the supervisor that follows the job through the proc connector
//! and fanotify, raises detections as they happen, and in block mode kills the job at the first
//! one at or above the threshold. `Monitor::new` runs before the sandbox exists (no threads),
//! `before_job` inside `Sandbox::spawn`, `start` right after it, `finish` after teardown.

use crate::baseline::Baseline;
use crate::connector::{self, Connector, ProcEvent, Stamped};
use crate::detect::{self, Ctx};
use crate::files::{self, SourceGuard};
use crate::procfs;
use crate::report::{Blocked, Detection, FileChanges, MonitorEvent, MonitorInfo, Observed, ProcessRecord, Severity};
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Records kept per report; past this, processes are counted, not kept.
const MAX_RECORDS: usize = 100_000;
/// Events (memory reads, file writes, denials) kept per report.
const MAX_EVENTS: usize = 10_000;
const CPU_WINDOW_NS: u64 = 5_000_000_000;
const MECHANISM: &str = "proc connector (fork/exec/exit/ptrace) + seccomp user notification (execve argv at entry, chdir, ptrace, process_vm_*, denied calls) + fanotify (job procfs opens, tmpfs and workspace writes)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Off,
    Audit,
    Block,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Audit => "audit",
            Mode::Block => "block",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "off" => Ok(Mode::Off),
            "audit" => Ok(Mode::Audit),
            "block" => Ok(Mode::Block),
            _ => Err(format!("unknown mode {s:?} (expected audit, block or off)")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("process events: {0}")]
    Connector(#[from] connector::ConnectorError),
    #[error("fanotify: {0}")]
    Fanotify(#[source] nix::Error),
    #[error(transparent)]
    Source(#[from] files::SourceError),
}

pub struct MonitorConfig {
    pub mode: Mode,
    pub threshold: Severity,
    pub baseline: Option<Baseline>,
    /// How the report names the baseline (path and digest).
    pub baseline_label: Option<String>,
    /// Secret values, masked as `***` in every argv the report keeps.
    pub secrets: Vec<String>,
    /// The workspace, as both the host and the job see it (when the caller chose one).
    pub workspace: Option<PathBuf>,
    /// `--protect-source`: `git` and/or globs relative to the workspace.
    pub protect: Vec<String>,
    pub expected_duration: Option<Duration>,
    /// With a writable root: the root it overlays (what the job changed there is listed).
    pub writable_root: Option<PathBuf>,
    /// The policy's `cpu_anomaly_factor`.
    pub cpu_factor: f64,
}

/// What `before_job` opened in the job's mount namespace: the tmpfs roots, kept open so that
/// they can be examined after the namespace is gone.
#[derive(Default)]
struct Attached {
    tmpfs: Vec<(String, File)>,
    /// The writable root: its lower layer (a copy of the rootfs made before the job, as the
    /// sandbox makes one), its merged top (opened before the job's first process) and what it
    /// held then, and the time before it existed.
    lower: Option<std::os::fd::OwnedFd>,
    merged: Option<File>,
    setup: files::OverlaySetup,
    since: (i64, i64),
    /// Mount id of each marked mount of the job and where the job sees it: a path read after the
    /// job's mount namespace is gone is relative to its mount and lacks that prefix.
    mounts: Vec<(u64, String)>,
    warnings: Vec<String>,
}

/// Created before the sandbox: the kernel queues the job's events from the first one on.
pub struct Monitor {
    cfg: MonitorConfig,
    conn: Connector,
    fan: Option<Arc<Fanotify>>,
    guard: Option<Arc<SourceGuard>>,
    attached: Arc<Mutex<Attached>>,
    warnings: Vec<String>,
    t0: u64,
}

impl Monitor {
    pub fn new(cfg: MonitorConfig) -> Result<Monitor, MonitorError> {
        let t0 = connector::now_ns();
        let conn = Connector::open()?;
        let mut warnings = Vec::new();
        let fan = match Fanotify::init(
            InitFlags::FAN_CLASS_NOTIF
                | InitFlags::FAN_CLOEXEC
                | InitFlags::FAN_NONBLOCK
                | InitFlags::FAN_UNLIMITED_QUEUE,
            EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC,
        ) {
            Ok(f) => Some(Arc::new(f)),
            Err(e) => {
                warnings.push(format!(
                    "fanotify unavailable ({e}): no live memory-read or file-write events"
                ));
                None
            }
        };
        let guard = match (&cfg.workspace, cfg.protect.is_empty()) {
            (Some(ws), false) => Some(Arc::new(SourceGuard::snapshot(ws, &cfg.protect)?)),
            _ => None,
        };
        if guard.as_ref().is_some_and(|g| g.truncated) {
            warnings.push("--protect-source: too many files; only the first 500000 are watched".into());
        }
        let mut attached = Attached {
            since: files::overlay_epoch(std::time::SystemTime::now()),
            ..Default::default()
        };
        if let Some(root) = &cfg.writable_root {
            // The same non-recursive copy the sandbox gives overlayfs as its lower layer.
            match rustix::mount::open_tree(
                rustix::fs::CWD,
                root,
                rustix::mount::OpenTreeFlags::OPEN_TREE_CLONE | rustix::mount::OpenTreeFlags::OPEN_TREE_CLOEXEC,
            ) {
                Ok(fd) => attached.lower = Some(fd),
                Err(e) => warnings.push(format!(
                    "copy the root {} for comparison ({e}): changes in the writable root are not listed",
                    root.display()
                )),
            }
        }
        Ok(Monitor {
            cfg,
            conn,
            fan,
            guard,
            attached: Arc::new(Mutex::new(attached)),
            warnings,
            t0,
        })
    }

    /// The hook `Sandbox::spawn` calls once the job's root is built and before the job's first
    /// process exists: marks the job's procfs, tmpfs mounts and workspace. Starts no thread.
    pub fn before_job(&self) -> Box<dyn FnOnce(i32) + Send> {
        let fan = self.fan.clone();
        let attached = Arc::clone(&self.attached);
        let ws_mark = self
            .guard
            .as_ref()
            .filter(|g| !g.is_empty())
            .and(self.cfg.workspace.clone());
        Box::new(move |init: i32| {
            let mut a = attached.lock().unwrap_or_else(|e| e.into_inner());
            let root = format!("/proc/{init}/root");
            let mark = |flags: MarkFlags, mask: MaskFlags, path: &str| -> Result<(), String> {
                match &fan {
                    Some(f) => f
                        .mark(MarkFlags::FAN_MARK_ADD | flags, mask, f.as_fd(), Some(path))
                        .map_err(|e| e.to_string()),
                    None => Ok(()),
                }
            };
            if let Some(id) = mount_id(&format!("{root}/proc")) {
                a.mounts.push((id, "/proc".into()));
            }
            if let Err(e) = mark(
                MarkFlags::FAN_MARK_FILESYSTEM,
                MaskFlags::FAN_OPEN,
                &format!("{root}/proc"),
            ) {
                a.warnings
                    .push(format!("fanotify on the job's /proc: {e}: no memory-read events"));
            }
            for dir in ["/tmp", "/var/tmp", "/run", "/dev/shm"] {
                let p = format!("{root}{dir}");
                match File::open(&p) {
                    Ok(f) => {
                        if let Some(id) = mount_id(&p) {
                            a.mounts.push((id, dir.to_string()));
                        }
                        a.tmpfs.push((dir.to_string(), f))
                    }
                    Err(e) => a.warnings.push(format!("open the job's {dir}: {e}: not examined")),
                }
                if let Err(e) = mark(MarkFlags::FAN_MARK_FILESYSTEM, MaskFlags::FAN_CLOSE_WRITE, &p) {
                    a.warnings
                        .push(format!("fanotify on the job's {dir}: {e}: no live write events there"));
                }
            }
            // A writable root is an overlay of the job's own: watch writes through it too, and
            // keep it open to list what the job changed in it once the job is gone.
            if rustix::fs::statfs(root.as_str()).is_ok_and(|s| s.f_type == 0x794c_7630) {
                if let Err(e) = mark(MarkFlags::FAN_MARK_FILESYSTEM, MaskFlags::FAN_CLOSE_WRITE, &root) {
                    a.warnings.push(format!("fanotify on the job's writable root: {e}"));
                }
                match (File::open(&root), &a.lower) {
                    (Ok(merged), Some(lower)) => {
                        let m = PathBuf::from(format!("/proc/self/fd/{}", merged.as_raw_fd()));
                        let l = PathBuf::from(format!("/proc/self/fd/{}", lower.as_raw_fd()));
                        a.setup = files::overlay_setup(&m, &l, a.since);
                        a.merged = Some(merged);
                    }
                    (Err(e), _) => a
                        .warnings
                        .push(format!("open the job's writable root: {e}: its changes are not listed")),
                    (_, None) => {}
                }
            }
            if let Some(ws) = ws_mark {
                let at = format!("{root}{}", ws.display());
                match mark(MarkFlags::FAN_MARK_MOUNT, MaskFlags::FAN_CLOSE_WRITE, &at) {
                    Ok(()) => {
                        if let Some(id) = mount_id(&at) {
                            a.mounts.push((id, ws.display().to_string()));
                        }
                    }
                    Err(e) => a.warnings.push(format!(
                        "fanotify on the workspace: {e}: protected files checked at the end only"
                    )),
                }
            }
        })
    }

    /// Starts following the job whose init has host pid `init_pid`. `kill` stops the whole job
    /// (block mode).
    pub fn start(self, init_pid: i32, kill: Box<dyn Fn() + Send + Sync>) -> Running {
        let init = init_pid as u32;
        let uid_map = std::fs::read_to_string(format!("/proc/{init}/uid_map")).unwrap_or_default();
        let cfg = &self.cfg;
        let state = State {
            mode: cfg.mode,
            threshold: cfg.threshold,
            baseline: cfg.baseline.clone(),
            secrets: cfg.secrets.iter().filter(|s| !s.is_empty()).cloned().collect(),
            workspace: cfg.workspace.as_ref().map(|w| w.to_string_lossy().into_owned()),
            expected_ms: cfg.expected_duration.map(|d| d.as_millis() as u64),
            cpu_factor: cfg.cpu_factor,
            guard: self.guard.clone(),
            t0: self.t0,
            init,
            tracked: HashSet::from([init]),
            live: HashMap::new(),
            pending: HashMap::new(),
            watching: false,
            setid_cache: HashMap::new(),
            last_tick: 0,
            records: Vec::new(),
            records_dropped: 0,
            events: Vec::new(),
            events_dropped: 0,
            written: HashSet::new(),
            detections: Vec::new(),
            seen: HashSet::new(),
            blocked: None,
            kill_now: false,
            lost: 0,
            uid_map,
            init_uid: None,
            cpu: CpuSampler::new(init),
            cpu_windows: Vec::new(),
            auth_failures: BTreeMap::new(),
            dirs: HashMap::new(),
            resolved: 0,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            kill,
        });
        // What exec'ing processes asked for goes to the monitor thread over a channel: the
        // seccomp thread answers the job as soon as it has read it, never waiting for a lock.
        let (exec_tx, exec_rx) = std::sync::mpsc::channel();
        let unsettled = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(Stop {
            flag: AtomicBool::new(false),
            // Wakes the thread at once when the job is over, instead of at its next poll timeout.
            wake: rustix::event::eventfd(
                0,
                rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
            )
            .ok(),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            let conn = self.conn;
            let fan = self.fan.clone();
            let mounts = self.attached.lock().map(|a| a.mounts.clone()).unwrap_or_default();
            std::thread::Builder::new()
                .name("stockade-monitor".into())
                .spawn({
                    let unsettled = Arc::clone(&unsettled);
                    move || run(shared, conn, fan, mounts, exec_rx, unsettled, stop)
                })
                .ok()
        };
        let mut warnings = self.warnings;
        if thread.is_none() {
            warnings.push("could not start the monitor thread: nothing recorded".into());
        }
        Running {
            fan: self.fan.filter(|_| thread.is_some()),
            close_fanotify: None,
            shared,
            stop,
            thread,
            exec_tx,
            unsettled,
            attached: self.attached,
            guard: self.guard,
            warnings,
            mode: self.cfg.mode,
            threshold: self.cfg.threshold,
            baseline_label: self.cfg.baseline_label,
        }
    }
}

/// One directory change of a thread: when it entered chdir, where it was, where it went.
struct DirChange {
    ns: u64,
    from: Option<String>,
    to: Option<String>,
}

/// Tells the monitor thread that the job is over: the flag, and an eventfd that wakes it.
struct Stop {
    flag: AtomicBool,
    wake: Option<OwnedFd>,
}

struct Shared {
    state: Mutex<State>,
    kill: Box<dyn Fn() + Send + Sync>,
}

impl Shared {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let r = f(&mut s);
        let kill = s.kill_now;
        s.kill_now = false;
        drop(s);
        if kill {
            (self.kill)();
        }
        r
    }
}

/// A monitor that follows a job.
pub struct Running {
    /// Read by the monitor thread; here only to see whether it has caught up.
    fan: Option<Arc<Fanotify>>,
    /// Closes the fanotify group at the end (see `close_fanotify_with`).
    close_fanotify: Option<fn(OwnedFd)>,
    shared: Arc<Shared>,
    stop: Arc<Stop>,
    thread: Option<std::thread::JoinHandle<()>>,
    exec_tx: std::sync::mpsc::Sender<Seen>,
    /// Directory changes sent to the monitor thread and not settled there yet.
    unsettled: Arc<AtomicUsize>,
    attached: Arc<Mutex<Attached>>,
    guard: Option<Arc<SourceGuard>>,
    warnings: Vec<String>,
    mode: Mode,
    threshold: Severity,
    baseline_label: Option<String>,
}

/// execve calls kept per thread while their exec events are awaited.
const MAX_PENDING_CALLS: usize = 16;

/// Threads that changed directory, past which every exec reads its cwd.
const MAX_MOVERS: usize = 100_000;

/// The seccomp thread's own view of directory changes (no other thread takes its lock).
#[derive(Default)]
struct Moves {
    /// The job's first exec'ing thread: its directory is the sandbox's choice, read at exec.
    first: Option<u32>,
    /// Threads that changed directory since they last exec'd.
    since_exec: HashSet<u32>,
    /// Past `MAX_MOVERS`: every exec reads its cwd.
    always: bool,
}

/// What the seccomp thread hands the monitor thread.
enum Seen {
    Exec(procfs::PreExec),
    /// A thread entered chdir or fchdir at this time (CLOCK_MONOTONIC ns), in `before` (read
    /// when its directory came from an earlier change the monitor has not seen the result of).
    Chdir {
        tid: u32,
        ns: u64,
        before: Option<String>,
    },
}

/// What the sandbox calls for every syscall it denied: (name, host pid, argv).
pub type DeniedHook = Arc<dyn Fn(&str, u32, &str) + Send + Sync>;
/// What the sandbox calls for every watched syscall while its caller waits: (host tid, name, args).
pub type WatchHook = Arc<dyn Fn(u32, &str, [u64; 6]) + Send + Sync>;
/// What egress calls for every event it logs (the event as the report will show it).
pub type EgressHook = Arc<dyn Fn(&serde_json::Value) + Send + Sync>;

impl Running {
    /// The last close of a fanotify group waits out an SRCU grace period (13 ms here): `close`
    /// may do it where nobody waits (`stockade_sandbox::close_detached`).
    pub fn close_fanotify_with(&mut self, close: fn(OwnedFd)) {
        self.close_fanotify = Some(close);
    }

    /// Hand this to the sandbox (`before_kill`): it returns once the monitor thread has taken
    /// every fanotify event queued so far. The kernel drops an event about /proc/N/... when N is
    /// gone by the time it is read (it cannot open the file for us; procfs allows no permission
    /// events that would hold the opener), so the job's last processes must not die before.
    pub fn catch_up_hook(&self) -> Box<dyn Fn() + Send> {
        let fan = self.fan.clone();
        Box::new(move || {
            let Some(fan) = &fan else { return };
            let until = std::time::Instant::now() + std::time::Duration::from_millis(200);
            while std::time::Instant::now() < until {
                use rustix::event::{PollFd, PollFlags, Timespec};
                let mut fds = [PollFd::new(fan.as_ref(), PollFlags::IN)];
                let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
                if !matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_micros(100));
            }
        })
    }

    /// Hand this to the sandbox: denied calls become events (and may block the job) as they happen.
    pub fn denied_hook(&self) -> DeniedHook {
        let shared = Arc::clone(&self.shared);
        Arc::new(move |name: &str, pid: u32, argv: &str| {
            shared.with(|s| {
                let at = s.ms(connector::now_ns());
                let detail = s.mask(argv);
                s.event(MonitorEvent {
                    at_ms: at,
                    kind: "denied-syscall".into(),
                    pid: Some(pid),
                    subject: name.to_string(),
                    detail: Some(detail),
                });
            })
        })
    }

    /// Hand this to the sandbox: execve (argv read while the caller waits), ptrace and
    /// process_vm_readv/writev (memory reads of other processes).
    pub fn watch_hook(&self) -> WatchHook {
        let shared = Arc::clone(&self.shared);
        let tx = self.exec_tx.clone();
        // Paths relative to an open /proc: no walk from the root for every exec.
        let proc = rustix::fs::open(
            "/proc",
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .ok();
        // A process has its parent's working directory unless it changed it: its own cwd is
        // read at exec (a readlink in /proc costs more than the rest of the exec's handling)
        // only for the job's first process, whose directory the sandbox chose, for threads
        // that changed directory since, and while the monitor thread has not yet learnt where
        // a change went (a child forked right after it has the new directory).
        let moved: Mutex<Moves> = Mutex::new(Moves::default());
        let unsettled = Arc::clone(&self.unsettled);
        Arc::new(move |tid: u32, name: &str, args: [u64; 6]| match name {
            "execve" | "execveat" => {
                // Without /proc the exec event's own reads (after the fact) are all there is.
                if let Some(proc) = &proc {
                    let with_cwd = {
                        let mut m = moved.lock().unwrap_or_else(|e| e.into_inner());
                        let first = *m.first.get_or_insert(tid) == tid;
                        m.since_exec.remove(&tid) || first || m.always || unsettled.load(Ordering::Acquire) > 0
                    };
                    let mut pre =
                        procfs::pre_exec(proc.as_fd(), tid, name == "execveat", args, with_cwd, detect::is_shell);
                    pre.ns = connector::now_ns();
                    let _ = tx.send(Seen::Exec(pre));
                }
            }
            "chdir" | "fchdir" => {
                {
                    let mut m = moved.lock().unwrap_or_else(|e| e.into_inner());
                    // Threads that exit without an exec leave their entries: past a bound,
                    // reading every cwd costs less than keeping them.
                    if m.since_exec.len() >= MAX_MOVERS {
                        m.always = true;
                        m.since_exec.clear();
                    }
                    if !m.always {
                        m.since_exec.insert(tid);
                    }
                }
                // It has not run since its last change took effect: its cwd is that change's
                // result, which the children it forked meanwhile have; and what `settle` must
                // see change to know this change has happened.
                let before = proc.as_ref().and_then(|proc| {
                    rustix::fs::readlinkat(proc, format!("{tid}/cwd"), Vec::new())
                        .ok()
                        .map(|c| String::from_utf8_lossy(c.as_bytes()).into_owned())
                });
                unsettled.fetch_add(1, Ordering::AcqRel);
                let _ = tx.send(Seen::Chdir {
                    tid,
                    ns: connector::now_ns(),
                    before,
                });
            }
            "ptrace" | "process_vm_readv" | "process_vm_writev" => {
                const PEEKS_AND_ATTACH: &[u64] = &[1, 2, 3, 16, 0x4206, 0x4209];
                let target = if name == "ptrace" {
                    if !PEEKS_AND_ATTACH.contains(&args[0]) {
                        return;
                    }
                    args[1] as u32
                } else {
                    args[0] as u32
                };
                let own = procfs::ns_pid(tid);
                if own == Some(target) {
                    return;
                }
                shared.with(|s| {
                    let at = s.ms(connector::now_ns());
                    let detail = s.argv_of(tid);
                    let kind = if name == "ptrace" { "ptrace" } else { "process-vm" };
                    s.event(MonitorEvent {
                        at_ms: at,
                        kind: kind.into(),
                        pid: Some(tid),
                        subject: format!("pid {target} ({name})"),
                        detail: Some(detail),
                    });
                });
            }
            _ => {}
        })
    }

    /// Hand this to egress: refused connections and DNS questions, new destinations and
    /// repeated 401/403/407 answers become detections (and may block the job) as they happen.
    pub fn egress_hook(&self) -> EgressHook {
        let shared = Arc::clone(&self.shared);
        Arc::new(move |e: &serde_json::Value| shared.with(|s| s.egress_event(e)))
    }

    /// The detection that made block mode stop the job, if one did (so far).
    pub fn blocked(&self) -> Option<Blocked> {
        self.shared.with(|s| s.blocked.clone())
    }

    /// Call after the sandbox is torn down: drains the last events, examines the job's tmpfs
    /// mounts and protected files, and returns the report's monitor part.
    pub fn finish(mut self) -> Observed {
        self.stop.flag.store(true, Ordering::Relaxed);
        if let Some(w) = &self.stop.wake {
            let _ = rustix::io::write(w, &1u64.to_ne_bytes());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let mut files = FileChanges::default();
        let attached = std::mem::take(&mut *self.attached.lock().unwrap_or_else(|e| e.into_inner()));
        for (label, f) in &attached.tmpfs {
            files.examined.push(label.clone());
            let p = PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
            files::scan_tmpfs(&p, label, &mut files.outside_workspace, &mut files.truncated);
        }
        drop(attached.tmpfs);
        if let (Some(m), Some(l)) = (&attached.merged, &attached.lower) {
            files.examined.push("/ (writable root)".into());
            files::scan_overlay(
                &PathBuf::from(format!("/proc/self/fd/{}", m.as_raw_fd())),
                &PathBuf::from(format!("/proc/self/fd/{}", l.as_raw_fd())),
                attached.since,
                &attached.setup,
                &mut files.outside_workspace,
                &mut files.truncated,
            );
        }
        drop(attached.merged);
        drop(attached.lower);
        if let Some(g) = &self.guard {
            files.protected_files = Some(g.len() as u64);
            files.protected_changed = g.changes();
        }
        self.warnings.extend(attached.warnings);
        if let Some(fan) = self.fan.take()
            && let Ok(fan) = Arc::try_unwrap(fan)
        {
            match self.close_fanotify.take() {
                Some(close) => close(OwnedFd::from(fan)),
                None => drop(fan),
            }
        }
        self.shared.with(|s| {
            let at = s.ms(connector::now_ns());
            // The job is over: whatever has no exit was lost or killed with the namespace.
            for &i in s.live.values() {
                if let Some(r) = s.records.get_mut(i)
                    && r.end_ms.is_none()
                {
                    r.end_ms = Some(at);
                }
            }
            if s.lost > 0 {
                self.warnings
                    .push(format!("{} batches of process events were lost (queue full)", s.lost));
            }
            s.cpu.sample(connector::now_ns(), &mut s.cpu_windows, true);
            Observed {
                monitor: Some(MonitorInfo {
                    mode: self.mode.as_str().into(),
                    threshold: self.threshold,
                    mechanism: MECHANISM.into(),
                    workspace: s.workspace.clone(),
                    baseline: self.baseline_label.clone(),
                    events_lost: s.lost,
                    events_dropped: s.events_dropped + s.records_dropped,
                    cpu_windows: s.cpu_windows.clone(),
                    blocked: s.blocked.clone(),
                    warnings: std::mem::take(&mut self.warnings),
                }),
                processes: std::mem::take(&mut s.records),
                events: std::mem::take(&mut s.events),
                files,
                detections: std::mem::take(&mut s.detections),
            }
        })
    }
}

struct State {
    mode: Mode,
    threshold: Severity,
    baseline: Option<Baseline>,
    secrets: Vec<String>,
    workspace: Option<String>,
    expected_ms: Option<u64>,
    cpu_factor: f64,
    guard: Option<Arc<SourceGuard>>,
    t0: u64,
    init: u32,
    /// Host tgids of the job's living processes (and its init).
    tracked: HashSet<u32>,
    /// tgid -> index of its current record.
    live: HashMap<u32, usize>,
    /// What exec'ing threads asked for, read at execve's entry, until the exec event comes.
    /// In call order: a thread may call execve again (a wrapper, or execvp trying each PATH
    /// entry) before the monitor thread has handled the first exec.
    pending: HashMap<u32, Vec<procfs::PreExec>>,
    /// Set once execve is watched: then exec events need no reads and may be taken in batches.
    watching: bool,
    setid_cache: HashMap<String, bool>,
    last_tick: u64,
    records: Vec<ProcessRecord>,
    records_dropped: u64,
    events: Vec<MonitorEvent>,
    events_dropped: u64,
    /// Paths already reported as written (one event per path).
    written: HashSet<String>,
    detections: Vec<Detection>,
    seen: HashSet<(String, String)>,
    blocked: Option<Blocked>,
    /// Set by `raise` in block mode; `Shared::with` kills outside the lock.
    kill_now: bool,
    lost: u64,
    uid_map: String,
    /// The uid (inside the job) of its init, which the job's main process starts with.
    init_uid: Option<u32>,
    cpu: CpuSampler,
    cpu_windows: Vec<f32>,
    /// 401/403/407 answers seen so far, per destination (failed-auth).
    auth_failures: BTreeMap<String, Vec<String>>,
    /// Directory changes of living processes: (when, the directory it went to, once known).
    dirs: HashMap<u32, Vec<DirChange>>,
    /// Changes in `dirs` whose destination became known since the monitor thread last looked
    /// (it lowers `unsettled` by as many).
    resolved: usize,
}

impl State {
    fn ms(&self, ns: u64) -> u64 {
        ns.saturating_sub(self.t0) / 1_000_000
    }

    fn mask(&self, s: &str) -> String {
        let mut out = s.to_string();
        for sec in &self.secrets {
            if out.contains(sec.as_str()) {
                out = out.replace(sec.as_str(), "***");
            }
        }
        out
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            baseline: self.baseline.as_ref(),
            workspace: self.workspace.clone(),
            expected_duration_ms: self.expected_ms,
            duration_factor: 2.0,
            cpu_factor: self.cpu_factor,
        }
    }

    fn raise(&mut self, d: Detection) {
        if !self.seen.insert((d.id.clone(), d.subject.clone())) {
            return;
        }
        if self.mode == Mode::Block && d.severity >= self.threshold && self.blocked.is_none() {
            self.blocked = Some(Blocked {
                id: d.id.clone(),
                severity: d.severity,
                explanation: d.explanation.clone(),
                stopped: true,
                at_ms: d.at_ms,
            });
            self.kill_now = true;
        }
        self.detections.push(d);
    }

    fn event(&mut self, e: MonitorEvent) {
        let found = detect::on_event(&e, &self.ctx());
        for d in found {
            self.raise(d);
        }
        if self.events.len() < MAX_EVENTS {
            self.events.push(e);
        } else {
            self.events_dropped += 1;
        }
    }

    /// A thread entered chdir at `ns` from `before`: its directories over time, for the
    /// children it forks. Where a change led is learnt from the thread's next change, or read
    /// by `settle` once it has taken effect.
    fn moved(&mut self, tid: u32, ns: u64, before: Option<String>) {
        // Every thread that gets here is the job's (its fork may not be handled yet).
        let h = self.dirs.entry(tid).or_default();
        // Forks are handled in order, soon after they happen: old changes are no longer asked.
        if h.len() >= 64 {
            self.resolved += h.drain(..32).filter(|c| c.to.is_none()).count();
        }
        if let (Some(last), Some(b)) = (h.last_mut(), &before) {
            // Read when the thread could not have moved since: exact, unlike `settle`'s read.
            if last.to.is_none() {
                self.resolved += 1;
            }
            last.to = Some(b.clone());
        }
        h.push(DirChange {
            ns,
            from: before,
            to: None,
        });
    }

    /// Reads where the latest change of each thread went, while it still runs (a thread that
    /// has moved on since has already sent the change that corrects it). The change is sent
    /// before it happens: a read that still finds the thread where it was proves nothing and is
    /// tried again later (a `cd .` waits for the thread's next change or its exit). Gone: left
    /// unknown.
    fn settle(&mut self) {
        for (tid, h) in self.dirs.iter_mut() {
            if let Some(last) = h.last_mut()
                && last.to.is_none()
                && let Some(now) = procfs::cwd(*tid)
                && last.from.as_ref() != Some(&now)
            {
                last.to = Some(now);
                self.resolved += 1;
            }
        }
    }

    /// A thread's execve call, until its exec event. Bounded: a job calling a failing execve in
    /// a loop must not grow the supervisor (the oldest calls go; an exec without its call reads
    /// what it can from /proc).
    fn queue_exec(&mut self, p: procfs::PreExec) {
        let calls = self.pending.entry(p.tid).or_default();
        if calls.len() >= MAX_PENDING_CALLS {
            calls.remove(0);
        }
        calls.push(p);
    }

    /// What the exec at `ns` of `tgid` asked for: the thread's last call before that moment (the
    /// calls before it failed); later calls wait for their own exec events.
    fn pre_exec_for(&mut self, tgid: u32, ns: u64) -> Option<procfs::PreExec> {
        let calls = self.pending.get_mut(&tgid)?;
        let upto = calls.partition_point(|p| p.ns <= ns);
        let found = calls.drain(..upto).next_back();
        if calls.is_empty() {
            self.pending.remove(&tgid);
        }
        found
    }

    /// The directory `pid` had at `ns` (a fork's time), if it changed directory before then. A
    /// change whose destination was never learnt (the thread exited first) gives where it was
    /// before: a guess, wrong if the change had taken effect.
    fn dir_at(&mut self, pid: u32, ns: u64) -> Option<String> {
        let h = self.dirs.get_mut(&pid)?;
        let i = h.iter().rposition(|c| c.ns < ns)?;
        h[i].to.clone().or_else(|| h[i].from.clone())
    }

    /// Whether the program at `exe` (as the job sees the path) is set-uid or set-gid. Set-id
    /// bits of a path change only where the job may write, and there only to its own ids: a
    /// cache keeps stat off the hot path.
    fn setid(&mut self, exe: &str) -> bool {
        if let Some(s) = self.setid_cache.get(exe) {
            return *s;
        }
        let s = procfs::setid_at(self.init, exe);
        self.setid_cache.insert(exe.to_string(), s);
        s
    }

    fn argv_of(&self, pid: u32) -> String {
        self.live
            .get(&pid)
            .and_then(|i| self.records.get(*i))
            .map(|r| {
                if r.argv.is_empty() {
                    r.exe.clone().unwrap_or_default()
                } else {
                    r.argv.join(" ")
                }
            })
            .unwrap_or_default()
    }

    fn proc_event(&mut self, ev: Stamped) {
        let at = self.ms(ev.ns);
        match ev.event {
            ProcEvent::Fork {
                parent_tgid,
                child_pid,
                child_tgid,
            } => {
                if child_pid != child_tgid || !self.tracked.contains(&parent_tgid) {
                    return;
                }
                self.tracked.insert(child_tgid);
                if self.records.len() >= MAX_RECORDS {
                    self.records_dropped += 1;
                    return;
                }
                let moved = self.dir_at(parent_tgid, ev.ns);
                let parent = self.live.get(&parent_tgid).and_then(|i| self.records.get(*i));
                // A child has its parent's ids: set-id programs cannot change them under
                // no_new_privs, and setuid() calls arrive as uid events.
                let uid = match parent {
                    Some(p) => p.uid,
                    None if parent_tgid == self.init => self.init_uid,
                    None => None,
                };
                let rec = ProcessRecord {
                    pid: child_tgid,
                    ppid: parent_tgid,
                    exe: parent.and_then(|p| p.exe.clone()),
                    cwd: moved.or_else(|| parent.and_then(|p| p.cwd.clone())),
                    uid,
                    start_ms: at,
                    ..Default::default()
                };
                self.live.insert(child_tgid, self.records.len());
                self.records.push(rec);
            }
            ProcEvent::Exec { tgid, .. } => {
                if !self.tracked.contains(&tgid) || tgid == self.init {
                    return;
                }
                let info = match self.pre_exec_for(tgid, ev.ns) {
                    // Read at the call's entry: complete even if the process is gone by now.
                    Some(p) => {
                        // A thread that reached execve is past its chdirs before that call: a cwd
                        // read there settles the last of them too (one that went nowhere, `cd .`,
                        // or failed). Not a change made after the call, by the new program, which
                        // may be handled first when both come in one batch.
                        if let (Some(c), Some(h)) = (&p.cwd, self.dirs.get_mut(&p.tid))
                            && let Some(last) = h.iter_mut().rev().find(|d| d.ns < p.ns)
                            && last.to.is_none()
                        {
                            last.to = Some(c.clone());
                            self.resolved += 1;
                        }
                        // Not read at exec: the directory it inherited.
                        let cwd = p.cwd.or_else(|| {
                            self.live
                                .get(&tgid)
                                .and_then(|&i| self.records.get(i))
                                .and_then(|r| r.cwd.clone())
                        });
                        let exe = match (p.path, &cwd) {
                            (Some(e), Some(d)) if !e.starts_with('/') => {
                                Some(format!("{}/{}", d.trim_end_matches('/'), e.trim_start_matches("./")))
                            }
                            (e, _) => e,
                        };
                        procfs::ExecInfo {
                            setid: exe.as_deref().is_some_and(|e| self.setid(e)),
                            ns_pid: None,
                            argv: p.argv,
                            exe,
                            cwd,
                            host_uid: None,
                            stdio_socket: p.stdio_socket,
                            lost: false,
                        }
                    }
                    None => procfs::exec_info(tgid, detect::is_shell),
                };
                let idx = match self.live.get(&tgid).copied() {
                    Some(i) if !self.records[i].has("exec") => i,
                    Some(i) => {
                        // A second exec: the old image ends here, a new record begins.
                        let old = &mut self.records[i];
                        old.end_ms = Some(at);
                        old.flags.push("replaced".into());
                        let ppid = old.ppid;
                        if self.records.len() >= MAX_RECORDS {
                            self.records_dropped += 1;
                            return;
                        }
                        self.records.push(ProcessRecord {
                            pid: tgid,
                            ppid,
                            start_ms: at,
                            ..Default::default()
                        });
                        self.records.len() - 1
                    }
                    None => return,
                };
                self.live.insert(tgid, idx);
                let argv: Vec<String> = if info.lost {
                    procfs::comm(tgid).into_iter().collect()
                } else {
                    info.argv.iter().map(|a| self.mask(a)).collect()
                };
                let uid = info.host_uid.and_then(|u| procfs::map_id(&self.uid_map, u));
                let r = &mut self.records[idx];
                r.argv = argv;
                r.exe = info.exe.or(r.exe.take());
                r.cwd = info.cwd.or(r.cwd.take());
                r.uid = uid.or(r.uid);
                r.ns_pid = info.ns_pid;
                r.flags.push("exec".into());
                if info.setid {
                    r.flags.push("setuid".into());
                }
                if info.stdio_socket {
                    r.flags.push("stdio-socket".into());
                }
                if info.lost {
                    r.flags.push("info-lost".into());
                }
                if self.workspace.is_none() && r.ppid == self.init {
                    // The job's main process starts in its workspace.
                    self.workspace = r.cwd.clone();
                }
                let mut found = detect::on_exec(&self.records[idx], &self.ctx());
                // The pid inside the job costs a status read: only for what a person will read.
                if !found.is_empty() && self.records[idx].ns_pid.is_none() {
                    self.records[idx].ns_pid = procfs::ns_pid(tgid);
                    found = detect::on_exec(&self.records[idx], &self.ctx());
                }
                for d in found {
                    self.raise(d);
                }
            }
            ProcEvent::Exit { pid, tgid, code } => {
                self.pending.remove(&pid);
                if let Some(h) = self.dirs.remove(&pid) {
                    self.resolved += h.iter().filter(|c| c.to.is_none()).count();
                }
                if pid != tgid || !self.tracked.remove(&tgid) {
                    return;
                }
                let Some(i) = self.live.remove(&tgid) else {
                    return;
                };
                let r = &mut self.records[i];
                r.end_ms = Some(at);
                if code & 0x7f == 0 {
                    r.exit = Some(((code >> 8) & 0xff) as i32);
                } else {
                    r.signal = Some((code & 0x7f) as i32);
                }
                let found = detect::on_exit(&self.records[i]);
                for d in found {
                    self.raise(d);
                }
            }
            ProcEvent::Ptrace { tgid, tracer_tgid } => {
                if tracer_tgid == 0 || !self.tracked.contains(&tracer_tgid) {
                    return;
                }
                let target = self
                    .live
                    .get(&tgid)
                    .and_then(|i| self.records.get(*i))
                    .and_then(|r| r.ns_pid)
                    .or_else(|| procfs::ns_pid(tgid));
                let detail = self.argv_of(tracer_tgid);
                self.event(MonitorEvent {
                    at_ms: at,
                    kind: "ptrace".into(),
                    pid: Some(tracer_tgid),
                    subject: match target {
                        Some(n) => format!("pid {n} (ptrace)"),
                        None => format!("host pid {tgid} (ptrace)"),
                    },
                    detail: Some(detail),
                });
            }
            ProcEvent::Uid { tgid, ruid, .. } => {
                let uid = procfs::map_id(&self.uid_map, ruid);
                if tgid == self.init {
                    self.init_uid = uid;
                } else if let Some(&i) = self.live.get(&tgid) {
                    self.records[i].uid = uid;
                }
            }
        }
    }

    fn egress_event(&mut self, e: &serde_json::Value) {
        let at = self.ms(connector::now_ns());
        let mut auth = std::mem::take(&mut self.auth_failures);
        let found = detect::egress_live(e, &self.ctx(), &mut auth);
        self.auth_failures = auth;
        for mut d in found {
            d.at_ms = Some(at);
            d.pid = e.get("pid").and_then(|p| p.as_u64()).map(|p| p as u32);
            self.raise(d);
        }
    }

    fn fan_event(&mut self, mask: MaskFlags, pid: u32, path: String) {
        let at = self.ms(connector::now_ns());
        if mask.contains(MaskFlags::FAN_OPEN) {
            // /proc/N/mem, /proc/N/task/T/mem, /proc/N/environ: N is a pid of the job's namespace.
            let parts: Vec<&str> = path.trim_start_matches("/proc/").split('/').collect();
            let (target, file) = match parts.as_slice() {
                [n, f] => (n.parse::<u32>().ok(), *f),
                [n, "task", _, f] => (n.parse::<u32>().ok(), *f),
                _ => return,
            };
            let kind = match file {
                "mem" => "mem-open",
                "environ" => "environ-open",
                _ => return,
            };
            let Some(target) = target else { return };
            let own = self
                .live
                .get(&pid)
                .and_then(|i| self.records.get(*i))
                .and_then(|r| r.ns_pid);
            if own == Some(target) || (own.is_none() && procfs::ns_pid(pid) == Some(target)) {
                return;
            }
            let detail = self.argv_of(pid);
            self.event(MonitorEvent {
                at_ms: at,
                kind: kind.into(),
                pid: Some(pid),
                subject: path,
                detail: Some(detail),
            });
        } else if mask.contains(MaskFlags::FAN_CLOSE_WRITE) {
            let in_ws = self
                .workspace
                .as_deref()
                .is_some_and(|w| path.starts_with(w) && path[w.len()..].starts_with('/'));
            let kind = if in_ws {
                if !self.guard.as_ref().is_some_and(|g| g.protects(&path)) {
                    return;
                }
                "source-write"
            } else {
                "file-write"
            };
            if !self.written.insert(path.clone()) {
                return;
            }
            let detail = self.argv_of(pid);
            self.event(MonitorEvent {
                at_ms: at,
                kind: kind.into(),
                pid: Some(pid),
                subject: path,
                detail: Some(detail),
            });
        }
    }

    fn tick(&mut self) {
        let now = connector::now_ns();
        if now.saturating_sub(self.last_tick) < 500_000_000 {
            return;
        }
        self.last_tick = now;
        if self.cpu.sample(now, &mut self.cpu_windows, false)
            && let Some(d) = detect::cpu_rule(&self.cpu_windows, &self.ctx())
        {
            self.raise(d);
        }
        let elapsed = self.ms(now);
        if let Some(mut d) = detect::duration_rule(elapsed, &self.ctx()) {
            d.at_ms = Some(elapsed);
            self.raise(d);
        }
    }
}

/// CPU use of the job's cgroup over fixed windows.
struct CpuSampler {
    /// (file, value is in nanoseconds rather than `usage_usec`)
    source: Option<(PathBuf, bool)>,
    start: Option<(u64, u64)>,
}

impl CpuSampler {
    fn new(init: u32) -> CpuSampler {
        let cg = std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap_or_default();
        let mut source = None;
        for line in cg.lines() {
            let mut it = line.splitn(3, ':');
            let (_, ctrl, path) = (it.next(), it.next().unwrap_or(""), it.next().unwrap_or(""));
            if ctrl.is_empty() {
                for root in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
                    let f = PathBuf::from(format!("{root}{path}/cpu.stat"));
                    if f.exists() {
                        source = Some((f, false));
                        break;
                    }
                }
            } else if source.is_none() && ctrl.split(',').any(|c| c == "cpuacct") {
                let f = PathBuf::from(format!("/sys/fs/cgroup/cpuacct{path}/cpuacct.usage"));
                if f.exists() {
                    source = Some((f, true));
                }
            }
        }
        CpuSampler { source, start: None }
    }

    fn read_usec(&self) -> Option<u64> {
        let (f, ns) = self.source.as_ref()?;
        let s = std::fs::read_to_string(f).ok()?;
        if *ns {
            s.trim().parse::<u64>().ok().map(|v| v / 1000)
        } else {
            s.lines()
                .find_map(|l| l.strip_prefix("usage_usec ").and_then(|v| v.trim().parse().ok()))
        }
    }

    /// Closes a window when 5 s have passed (or, with `last`, whatever has); true when one closed.
    fn sample(&mut self, now: u64, windows: &mut Vec<f32>, last: bool) -> bool {
        let Some(usage) = self.read_usec() else {
            return false;
        };
        let Some((t, u)) = self.start else {
            self.start = Some((now, usage));
            return false;
        };
        let span = now.saturating_sub(t);
        if span >= CPU_WINDOW_NS || (last && span >= CPU_WINDOW_NS / 5) {
            windows.push((usage.saturating_sub(u) as f64 * 1000.0 / span as f64) as f32);
            self.start = Some((now, usage));
            return true;
        }
        false
    }
}

fn mount_id(path: &str) -> Option<u64> {
    rustix::fs::statx(
        rustix::fs::CWD,
        path,
        rustix::fs::AtFlags::empty(),
        rustix::fs::StatxFlags::MNT_ID,
    )
    .ok()
    .map(|s| s.stx_mnt_id)
}

/// The path of a fanotify event's file as the job sees it (`mounts`: see `Attached::mounts`).
fn event_path(fd: std::os::fd::BorrowedFd<'_>, mounts: &[(u64, String)]) -> Option<String> {
    let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    let mut path = path.to_string_lossy().into_owned();
    let st = rustix::fs::statx(
        fd,
        "",
        rustix::fs::AtFlags::EMPTY_PATH,
        rustix::fs::StatxFlags::MNT_ID | rustix::fs::StatxFlags::NLINK,
    )
    .ok();
    let label = st
        .as_ref()
        .and_then(|s| mounts.iter().find(|(id, _)| *id == s.stx_mnt_id))
        .map(|(_, l)| l.as_str());
    // The kernel names an unlinked file "<path> (deleted)": a file the job wrote may be removed
    // by the time its event is read, and /proc/N/... of a process that has exited is unhashed
    // too. The path the job used is the one to report.
    if let Some(stripped) = path.strip_suffix(" (deleted)")
        && (st.as_ref().is_some_and(|s| s.stx_nlink == 0) || label == Some("/proc"))
    {
        path.truncate(stripped.len());
    }
    match label {
        Some(l) if !(path == l || path.starts_with(&format!("{l}/"))) => {
            Some(format!("{l}{}", if path == "/" { "" } else { &path }))
        }
        _ => Some(path),
    }
}

fn run(
    shared: Arc<Shared>,
    conn: Connector,
    fan: Option<Arc<Fanotify>>,
    mounts: Vec<(u64, String)>,
    execs: std::sync::mpsc::Receiver<Seen>,
    unsettled: Arc<AtomicUsize>,
    stop: Arc<Stop>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut batch: Vec<Stamped> = Vec::with_capacity(256);
    let mut pre: Vec<procfs::PreExec> = Vec::new();
    let mut moves: Vec<(u32, u64, Option<String>)> = Vec::new();
    let mut settled = 0usize;
    shared.with(|s| {
        let now = connector::now_ns();
        s.cpu.sample(now, &mut Vec::new(), false);
    });
    // Once the job is over, the events that matter were queued before `finish`; the connector
    // hears the whole host, so the final drain stops at the first event after that moment
    // instead of following a busy host forever.
    let mut stop_ns: Option<u64> = None;
    let mut caught_up = false;
    loop {
        let stopping = stop.flag.load(Ordering::Relaxed);
        if stopping && stop_ns.is_none() {
            stop_ns = Some(connector::now_ns());
        }
        {
            use rustix::event::{PollFd, PollFlags, Timespec};
            let cfd = conn.fd();
            let mut fds = vec![PollFd::new(&cfd, PollFlags::IN)];
            if let Some(f) = &fan {
                fds.push(PollFd::new(f.as_ref(), PollFlags::IN));
            }
            if let Some(w) = &stop.wake {
                fds.push(PollFd::new(w, PollFlags::IN));
            }
            let timeout = Timespec {
                tv_sec: 0,
                tv_nsec: if stopping { 0 } else { 200_000_000 },
            };
            let _ = rustix::event::poll(&mut fds, Some(&timeout));
        }
        let mut any = false;
        loop {
            // Take what is queued (up to a bound), then handle it under one lock.
            let mut lost = 0;
            batch.clear();
            let mut more = false;
            for _ in 0..256 {
                match conn.read(&mut buf, &mut batch, &mut lost) {
                    Ok(true) => more = true,
                    Ok(false) | Err(_) => {
                        more = false;
                        break;
                    }
                }
            }
            if let (Some(t), Some(last)) = (stop_ns, batch.last())
                && last.ns > t
            {
                caught_up = true;
                more = false;
            }
            // Taken after the batch: every exec in it was answered, so its argv was sent, before
            // the kernel queued the event.
            for seen in execs.try_iter() {
                match seen {
                    Seen::Exec(p) => pre.push(p),
                    Seen::Chdir { tid, ns, before } => moves.push((tid, ns, before)),
                }
            }
            if batch.is_empty() && lost == 0 && pre.is_empty() && moves.is_empty() {
                break;
            }
            any = true;
            let watching = shared.with(|s| {
                s.lost += lost;
                for p in pre.drain(..) {
                    s.watching = true;
                    s.queue_exec(p);
                }
                // Changes not settled yet (read too early, before they took effect) are read
                // again, before the forks of this batch ask where their parents were.
                let mut retry = unsettled.load(Ordering::Acquire) > 0;
                while retry || !moves.is_empty() {
                    retry = false;
                    for (tid, ns, before) in moves.drain(..) {
                        s.moved(tid, ns, before);
                    }
                    s.settle();
                    // A change that `settle` may have read the result of, in place of the one
                    // before it, is queued already (it is sent before it happens): its `before`
                    // puts that right.
                    for seen in execs.try_iter() {
                        match seen {
                            Seen::Exec(p) => {
                                s.queue_exec(p);
                            }
                            Seen::Chdir { tid, ns, before } => moves.push((tid, ns, before)),
                        }
                    }
                }
                for ev in batch.drain(..) {
                    s.proc_event(ev);
                }
                settled = std::mem::take(&mut s.resolved);
                s.watching
            });
            if settled > 0 {
                unsettled.fetch_sub(settled, Ordering::AcqRel);
                settled = 0;
            }
            if !more {
                // With execve watched, exec events need no reads: let a few gather before the
                // next wake-up instead of waking for each (the job's CPUs are shared with us).
                if watching && !stopping {
                    // fanotify still wakes us at once: its paths and fds must be read while they exist.
                    use rustix::event::{PollFd, PollFlags, Timespec};
                    let t = Timespec {
                        tv_sec: 0,
                        tv_nsec: 3_000_000,
                    };
                    let mut fds = Vec::with_capacity(2);
                    if let Some(f) = &fan {
                        fds.push(PollFd::new(f.as_ref(), PollFlags::IN));
                    }
                    if let Some(w) = &stop.wake {
                        fds.push(PollFd::new(w, PollFlags::IN));
                    }
                    let _ = rustix::event::poll(&mut fds, Some(&t));
                }
                break;
            }
        }
        if let Some(f) = &fan {
            while let Ok(events) = f.read_events() {
                if events.is_empty() {
                    break;
                }
                any = true;
                let items: Vec<(MaskFlags, u32, Option<String>)> = events
                    .iter()
                    .map(|e| {
                        let path = e.fd().and_then(|fd| event_path(fd, &mounts));
                        (e.mask(), e.pid() as u32, path)
                    })
                    .collect();
                drop(events);
                shared.with(|s| {
                    for (mask, pid, path) in items {
                        match path {
                            Some(p) => s.fan_event(mask, pid, p),
                            None if mask.contains(MaskFlags::FAN_Q_OVERFLOW) => s.lost += 1,
                            None => {}
                        }
                    }
                });
            }
        }
        shared.with(|s| s.tick());
        if stopping && (!any || caught_up) {
            return;
        }
    }
}
