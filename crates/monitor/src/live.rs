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
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Records kept per report; past this, processes are counted, not kept.
const MAX_RECORDS: usize = 100_000;
/// Events (memory reads, file writes, denials) kept per report.
const MAX_EVENTS: usize = 10_000;
const CPU_WINDOW_NS: u64 = 5_000_000_000;
const MECHANISM: &str = "proc connector (fork/exec/exit/ptrace) + seccomp user notification (execve argv at entry, ptrace, process_vm_*, denied calls) + fanotify (job procfs opens, tmpfs and workspace writes)";

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
}

/// What `before_job` opened in the job's mount namespace: the tmpfs roots, kept open so that
/// they can be examined after the namespace is gone.
#[derive(Default)]
struct Attached {
    tmpfs: Vec<(String, File)>,
    /// Device of each marked filesystem and where the job sees it: a path read after the job's
    /// mount namespace is gone lacks that prefix.
    devs: Vec<(u64, String)>,
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
        Ok(Monitor {
            cfg,
            conn,
            fan,
            guard,
            attached: Arc::new(Mutex::new(Attached::default())),
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
            if let Ok(m) = std::fs::metadata(format!("{root}/proc")) {
                a.devs.push((std::os::unix::fs::MetadataExt::dev(&m), "/proc".into()));
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
                        if let Ok(m) = f.metadata() {
                            a.devs.push((std::os::unix::fs::MetadataExt::dev(&m), dir.to_string()));
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
            // A writable root is an overlay of the job's own: watch writes through it too.
            if rustix::fs::statfs(root.as_str()).is_ok_and(|s| s.f_type == 0x794c_7630)
                && let Err(e) = mark(MarkFlags::FAN_MARK_FILESYSTEM, MaskFlags::FAN_CLOSE_WRITE, &root)
            {
                a.warnings.push(format!("fanotify on the job's writable root: {e}"));
            }
            if let Some(ws) = ws_mark
                && let Err(e) = mark(
                    MarkFlags::FAN_MARK_MOUNT,
                    MaskFlags::FAN_CLOSE_WRITE,
                    &format!("{root}{}", ws.display()),
                )
            {
                a.warnings.push(format!(
                    "fanotify on the workspace: {e}: protected files checked at the end only"
                ));
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
            cpu: CpuSampler::new(init),
            cpu_windows: Vec::new(),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            kill,
        });
        let stop = Arc::new(AtomicBool::new(false));
        // Wakes the thread at once when the job is over, instead of at its next poll timeout.
        let wake = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )
        .ok()
        .map(Arc::new);
        let thread = {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            let wake = wake.clone();
            let conn = self.conn;
            let fan = self.fan.clone();
            let devs = self.attached.lock().map(|a| a.devs.clone()).unwrap_or_default();
            std::thread::Builder::new()
                .name("stockade-monitor".into())
                .spawn(move || run(shared, conn, fan, devs, stop, wake))
                .ok()
        };
        let mut warnings = self.warnings;
        if thread.is_none() {
            warnings.push("could not start the monitor thread: nothing recorded".into());
        }
        Running {
            shared,
            stop,
            wake,
            thread,
            attached: self.attached,
            guard: self.guard,
            warnings,
            mode: self.cfg.mode,
            threshold: self.cfg.threshold,
            baseline_label: self.cfg.baseline_label,
        }
    }
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
    wake: Option<Arc<OwnedFd>>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    attached: Arc<Mutex<Attached>>,
    guard: Option<Arc<SourceGuard>>,
    warnings: Vec<String>,
    mode: Mode,
    threshold: Severity,
    baseline_label: Option<String>,
}

/// What the sandbox calls for every syscall it denied: (name, host pid, argv).
pub type DeniedHook = Arc<dyn Fn(&str, u32, &str) + Send + Sync>;
/// What the sandbox calls for every watched syscall while its caller waits: (host tid, name, args).
pub type WatchHook = Arc<dyn Fn(u32, &str, [u64; 6]) + Send + Sync>;

impl Running {
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
        Arc::new(move |tid: u32, name: &str, args: [u64; 6]| match name {
            "execve" | "execveat" => {
                let pre = procfs::pre_exec(tid, name == "execveat", args, detect::is_shell);
                shared.with(|s| {
                    s.watching = true;
                    s.pending.insert(tid, pre);
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

    /// The detection that made block mode stop the job, if one did (so far).
    pub fn blocked(&self) -> Option<Blocked> {
        self.shared.with(|s| s.blocked.clone())
    }

    /// Call after the sandbox is torn down: drains the last events, examines the job's tmpfs
    /// mounts and protected files, and returns the report's monitor part.
    pub fn finish(mut self) -> Observed {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = &self.wake {
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
        if let Some(g) = &self.guard {
            files.protected_files = Some(g.len() as u64);
            files.protected_changed = g.changes();
        }
        self.warnings.extend(attached.warnings);
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
    guard: Option<Arc<SourceGuard>>,
    t0: u64,
    init: u32,
    /// Host tgids of the job's living processes (and its init).
    tracked: HashSet<u32>,
    /// tgid -> index of its current record.
    live: HashMap<u32, usize>,
    /// What exec'ing threads asked for, read at execve's entry, until the exec event comes.
    pending: HashMap<u32, procfs::PreExec>,
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
    cpu: CpuSampler,
    cpu_windows: Vec<f32>,
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
                let parent = self.live.get(&parent_tgid).and_then(|i| self.records.get(*i));
                let rec = ProcessRecord {
                    pid: child_tgid,
                    ppid: parent_tgid,
                    exe: parent.and_then(|p| p.exe.clone()),
                    cwd: parent.and_then(|p| p.cwd.clone()),
                    uid: parent.and_then(|p| p.uid),
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
                let pre = self.pending.remove(&tgid);
                let info = match pre {
                    // Read at the call's entry: complete even if the process is gone by now.
                    Some(p) => {
                        let mut i = p.info;
                        i.exe = p.path;
                        if let Some(exe) = &i.exe {
                            // Set-id bits of a path only change where the job may write, and
                            // there only to its own ids: a cache keeps stat off the hot path.
                            i.setid = match self.setid_cache.get(exe) {
                                Some(s) => *s,
                                None => {
                                    let s = procfs::setid(tgid);
                                    self.setid_cache.insert(exe.clone(), s);
                                    s
                                }
                            };
                        }
                        i
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
                let rec = self.records[idx].clone();
                for d in detect::on_exec(&rec, &self.ctx()) {
                    self.raise(d);
                }
            }
            ProcEvent::Exit { pid, tgid, code } => {
                self.pending.remove(&pid);
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
                let rec = r.clone();
                for d in detect::on_exit(&rec) {
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
            ProcEvent::Uid { .. } => {}
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

/// The path of a fanotify event's file as the job sees it.
fn event_path(fd: std::os::fd::BorrowedFd<'_>, devs: &[(u64, String)]) -> Option<String> {
    let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    let path = path.to_string_lossy().into_owned();
    let dev = rustix::fs::fstat(fd).ok().map(|s| s.st_dev);
    match devs.iter().find(|(d, _)| Some(*d) == dev) {
        Some((_, label)) if !(path == *label || path.starts_with(&format!("{label}/"))) => {
            Some(format!("{label}{}", if path == "/" { "" } else { &path }))
        }
        _ => Some(path),
    }
}

fn run(
    shared: Arc<Shared>,
    conn: Connector,
    fan: Option<Arc<Fanotify>>,
    devs: Vec<(u64, String)>,
    stop: Arc<AtomicBool>,
    wake: Option<Arc<OwnedFd>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut batch: Vec<Stamped> = Vec::with_capacity(256);
    shared.with(|s| {
        let now = connector::now_ns();
        s.cpu.sample(now, &mut Vec::new(), false);
    });
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        {
            use rustix::event::{PollFd, PollFlags, Timespec};
            let cfd = conn.fd();
            let mut fds = vec![PollFd::new(&cfd, PollFlags::IN)];
            if let Some(f) = &fan {
                fds.push(PollFd::new(f.as_ref(), PollFlags::IN));
            }
            if let Some(w) = &wake {
                fds.push(PollFd::new(w.as_ref(), PollFlags::IN));
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
            if batch.is_empty() && lost == 0 {
                break;
            }
            any = true;
            let watching = shared.with(|s| {
                s.lost += lost;
                for ev in batch.drain(..) {
                    s.proc_event(ev);
                }
                s.watching
            });
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
                    if let Some(w) = &wake {
                        fds.push(PollFd::new(w.as_ref(), PollFlags::IN));
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
                        let path = e.fd().and_then(|fd| event_path(fd, &devs));
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
        if stopping && !any {
            return;
        }
    }
}
