//! Detections: one small rule per suspicious behaviour, each a pure function of report records,
//! so that the live monitor and `stockade report` (over a saved report) reach the same verdicts.

use crate::baseline::{self, Baseline};
use crate::report::{Detection, FileChange, JobReport, MonitorEvent, ProcessRecord, Severity};
use std::collections::{BTreeMap, HashMap};

/// Every detection this version raises: id, severity, what it means (docs/detections.md).
pub const RULES: &[(&str, Severity, &str)] = &[
    (
        "reverse-shell",
        Severity::Critical,
        "a shell whose stdin or stdout is a network socket",
    ),
    (
        "memory-read-attempt",
        Severity::Critical,
        "a process opened another process's memory (/proc/PID/mem, environ) or ptrace-attached to it",
    ),
    (
        "source-tampered",
        Severity::High,
        "a protected source file of the workspace was changed or deleted after checkout",
    ),
    (
        "persistence-attempt",
        Severity::High,
        "a process outlived the job, or the job wrote a shell rc file, crontab, systemd unit, autostart entry or authorized_keys",
    ),
    (
        "priv-escalation-attempt",
        Severity::High,
        "a denied mount, unshare, setns, bpf, module or keyring call, or a set-id executable",
    ),
    (
        "cpu-anomaly",
        Severity::High,
        "sustained CPU use far above the baseline (the miner pattern)",
    ),
    (
        "egress-denied",
        Severity::Medium,
        "a connection to a destination the egress policy does not allow",
    ),
    (
        "dns-denied",
        Severity::Medium,
        "a DNS question for a name the egress policy does not allow (high when its labels carry data: DNS exfiltration)",
    ),
    (
        "egress-new-destination",
        Severity::Medium,
        "an allowed destination that the baseline never saw",
    ),
    (
        "process-unexpected",
        Severity::Medium,
        "an executable the baseline never saw",
    ),
    (
        "duration-anomaly",
        Severity::Medium,
        "the job ran far longer than the baseline or the expected duration",
    ),
    (
        "failed-auth",
        Severity::Medium,
        "su or sudo failed, or the proxy saw repeated 401/403/407 answers",
    ),
    (
        "file-outside-workspace",
        Severity::Low,
        "the job left files outside its workspace (medium when the baseline never saw the place)",
    ),
    (
        "syscall-denied",
        Severity::Low,
        "the seccomp filter denied a call that is not a privilege escalation",
    ),
];

pub fn severity_of(id: &str) -> Severity {
    RULES
        .iter()
        .find(|r| r.0 == id)
        .map(|r| r.1)
        .unwrap_or(Severity::Medium)
}

/// What the rules compare against.
#[derive(Debug, Clone, Default)]
pub struct Ctx<'a> {
    pub baseline: Option<&'a Baseline>,
    pub workspace: Option<String>,
    /// The policy's or the command line's expected duration.
    pub expected_duration_ms: Option<u64>,
    /// Multiplier of the baseline's p95 duration.
    pub duration_factor: f64,
    /// Multiplier of the baseline's CPU peak (the policy's `cpu_anomaly_factor`); 0: 1.5.
    pub cpu_factor: f64,
}

impl Ctx<'_> {
    pub fn factor(&self) -> f64 {
        if self.duration_factor > 0.0 {
            self.duration_factor
        } else {
            2.0
        }
    }

    pub fn cpu_factor(&self) -> f64 {
        if self.cpu_factor > 0.0 { self.cpu_factor } else { 1.5 }
    }
}

fn det(id: &str, subject: impl Into<String>, explanation: String, evidence: Vec<String>) -> Detection {
    Detection {
        id: id.into(),
        severity: severity_of(id),
        explanation,
        subject: subject.into(),
        evidence,
        at_ms: None,
        pid: None,
    }
}

const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "tcsh", "csh", "busybox", "rbash",
];
const AUTH_TOOLS: &[&str] = &["su", "sudo", "doas", "pkexec", "runuser"];

fn base_name(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// True for the programs whose stdio the monitor checks at exec.
pub fn is_shell(name: &str) -> bool {
    SHELLS.contains(&base_name(name))
}

fn show(p: &ProcessRecord) -> String {
    let argv = if p.argv.is_empty() {
        p.exe.clone().unwrap_or_default()
    } else {
        p.argv.join(" ")
    };
    format!(
        "pid {} (job pid {}): {}",
        p.pid,
        p.ns_pid.map(|n| n.to_string()).unwrap_or("?".into()),
        argv
    )
}

/// Rules on one exec'd program.
pub fn on_exec(p: &ProcessRecord, ctx: &Ctx) -> Vec<Detection> {
    let mut out = Vec::new();
    let exe = p
        .exe
        .clone()
        .unwrap_or_else(|| p.argv.first().cloned().unwrap_or_default());
    let mut stamp = |mut d: Detection| {
        d.at_ms = Some(p.start_ms);
        d.pid = Some(p.pid);
        out.push(d);
    };
    if p.has("stdio-socket") && is_shell(&exe) {
        stamp(det(
            "reverse-shell",
            exe.clone(),
            format!("{} runs with a network socket as its stdin or stdout", base_name(&exe)),
            vec![show(p)],
        ));
    }
    let known = ctx
        .baseline
        .is_some_and(|b| b.knows_executable(&exe, ctx.workspace.as_deref()));
    if p.has("setuid") && !known {
        stamp(det(
            "priv-escalation-attempt",
            exe.clone(),
            format!("the job ran the set-id program {exe} (no_new_privs keeps it unprivileged)"),
            vec![show(p)],
        ));
    }
    if ctx.baseline.is_some() && !exe.is_empty() && !known {
        stamp(det(
            "process-unexpected",
            baseline::normalize_path(&exe, ctx.workspace.as_deref()),
            format!("{exe} ran, and the baseline never saw it"),
            vec![show(p)],
        ));
    }
    out
}

/// Rules on a process that ended.
pub fn on_exit(p: &ProcessRecord) -> Vec<Detection> {
    let exe = p.exe.as_deref().unwrap_or("");
    let name = base_name(exe);
    if AUTH_TOOLS.contains(&name) && p.exit.is_some_and(|c| c != 0) {
        let mut d = det(
            "failed-auth",
            name,
            format!("{name} failed (exit {})", p.exit.unwrap_or(0)),
            vec![show(p)],
        );
        d.at_ms = p.end_ms;
        d.pid = Some(p.pid);
        return vec![d];
    }
    Vec::new()
}

/// Syscalls whose denial means the job tried to gain privileges or leave its sandbox.
const PRIV_CALLS: &[&str] = &[
    "mount",
    "umount2",
    "unshare",
    "setns",
    "clone",
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "pivot_root",
    "chroot",
    "fsopen",
    "fsconfig",
    "fsmount",
    "move_mount",
    "open_tree",
    "fspick",
    "mount_setattr",
    "open_by_handle_at",
    "name_to_handle_at",
    "pidfd_getfd",
    "iopl",
    "ioperm",
    "reboot",
    "swapon",
    "swapoff",
    "settimeofday",
    "clock_settime",
    "sethostname",
    "setdomainname",
    "quotactl",
    "userfaultfd",
    "ioctl",
    "acct",
    "syslog",
    "lookup_dcookie",
    "fanotify_init",
];

/// Rules on one monitor event.
pub fn on_event(e: &MonitorEvent, ctx: &Ctx) -> Vec<Detection> {
    let who = e.pid.map(|p| format!("pid {p}")).unwrap_or_else(|| "a process".into());
    let mut d = match e.kind.as_str() {
        "mem-open" => det(
            "memory-read-attempt",
            e.subject.clone(),
            format!("{who} opened {} (another process's memory)", e.subject),
            vec![format!("{who}: {}", e.detail.clone().unwrap_or_default())],
        ),
        "environ-open" => {
            let mut d = det(
                "memory-read-attempt",
                e.subject.clone(),
                format!("{who} read {} (another process's environment and secrets)", e.subject),
                vec![format!("{who}: {}", e.detail.clone().unwrap_or_default())],
            );
            d.severity = Severity::High;
            d
        }
        "process-vm" => det(
            "memory-read-attempt",
            e.subject.clone(),
            format!("{who} called {} on another process", e.subject),
            vec![format!("{who}: {}", e.detail.clone().unwrap_or_default())],
        ),
        "ptrace" => {
            let mut d = det(
                "memory-read-attempt",
                e.subject.clone(),
                format!("{who} attached to {} with ptrace", e.subject),
                vec![format!("{who}: {}", e.detail.clone().unwrap_or_default())],
            );
            d.severity = Severity::High;
            d
        }
        "denied-syscall" => {
            let id = if PRIV_CALLS.contains(&e.subject.as_str()) {
                "priv-escalation-attempt"
            } else {
                "syscall-denied"
            };
            det(
                id,
                e.subject.clone(),
                format!("the sandbox denied {}() to {who}", e.subject),
                vec![format!("{who}: {}", e.detail.clone().unwrap_or_default())],
            )
        }
        "source-write" => det(
            "source-tampered",
            e.subject.clone(),
            format!("{who} wrote the protected source file {}", e.subject),
            vec![format!("{who}: {}", e.detail.clone().unwrap_or_default())],
        ),
        "file-write" => match file_rule(&e.subject, ctx) {
            Some(d) => {
                let mut d = d;
                d.evidence = vec![format!(
                    "{who} wrote {}: {}",
                    e.subject,
                    e.detail.clone().unwrap_or_default()
                )];
                d
            }
            None => return Vec::new(),
        },
        _ => return Vec::new(),
    };
    d.at_ms = Some(e.at_ms);
    d.pid = e.pid;
    vec![d]
}

/// Where a write outside the workspace makes the job outlive itself on a reused runner.
pub fn persistence_place(path: &str) -> Option<&'static str> {
    let name = base_name(path);
    const RC: &[&str] = &[
        ".bashrc",
        ".bash_profile",
        ".bash_login",
        ".bash_logout",
        ".profile",
        ".zshrc",
        ".zprofile",
        ".zshenv",
        ".zlogin",
        ".kshrc",
        ".cshrc",
        ".tcshrc",
        ".inputrc",
        "config.fish",
        ".xprofile",
        ".xinitrc",
    ];
    if RC.contains(&name) {
        return Some("a shell startup file");
    }
    if path.contains("/cron") || path.starts_with("/var/spool/cron") || path.contains("crontab") {
        return Some("a crontab");
    }
    if path.contains("/systemd/") || name.ends_with(".service") || name.ends_with(".timer") {
        return Some("a systemd unit");
    }
    if path.contains("/autostart/") || path.contains("/.config/autostart") {
        return Some("an autostart entry");
    }
    if path.contains("/.ssh/") && (name.starts_with("authorized_keys") || name == "rc") {
        return Some("ssh authorized keys");
    }
    if path.starts_with("/etc/profile.d/") || path == "/etc/rc.local" || path.starts_with("/etc/init.d/") {
        return Some("a system startup script");
    }
    None
}

/// A file the job left (or wrote) outside its workspace.
pub fn file_rule(path: &str, ctx: &Ctx) -> Option<Detection> {
    if let Some(what) = persistence_place(path) {
        return Some(det(
            "persistence-attempt",
            path.to_string(),
            format!("the job wrote {path}, {what} that runs again later"),
            vec![],
        ));
    }
    let key = baseline::path_key(path);
    match ctx.baseline {
        Some(b) if b.knows_path(path) => None,
        Some(_) => {
            let mut d = det(
                "file-outside-workspace",
                key.clone(),
                format!("the job wrote under {key}, which the baseline never saw"),
                vec![],
            );
            d.severity = Severity::Medium;
            Some(d)
        }
        None => Some(det(
            "file-outside-workspace",
            key.clone(),
            format!("the job left files under {key}, outside its workspace"),
            vec![],
        )),
    }
}

/// Sustained CPU far above the baseline: two consecutive 5 s windows over the limit.
pub fn cpu_rule(windows: &[f32], ctx: &Ctx) -> Option<Detection> {
    let b = ctx.baseline?;
    let limit = b.cpu_limit_cores(ctx.cpu_factor());
    let mut run = 0;
    for (i, w) in windows.iter().enumerate() {
        if *w as f64 > limit {
            run += 1;
            if run >= 2 {
                let mut d = det(
                    "cpu-anomaly",
                    "cpu",
                    format!(
                        "the job used {:.2} cores for {} s; the baseline's peak is {:.2} (limit {:.2})",
                        w,
                        run * 5,
                        b.cpu_peak_cores.p95,
                        limit
                    ),
                    windows[i + 1 - run..=i]
                        .iter()
                        .enumerate()
                        .map(|(k, c)| format!("window {}: {c:.2} cores", i + 1 - run + k))
                        .collect(),
                );
                d.at_ms = Some(((i + 1) * 5000) as u64);
                return Some(d);
            }
        } else {
            run = 0;
        }
    }
    None
}

/// The job ran longer than its baseline's p95 times the factor, or than it was expected to.
pub fn duration_rule(wall_ms: u64, ctx: &Ctx) -> Option<Detection> {
    let (limit, why) = match (ctx.baseline, ctx.expected_duration_ms) {
        (_, Some(exp)) => (exp as f64, format!("the expected duration is {} s", exp / 1000)),
        (Some(b), None) => (
            b.duration_limit_ms(ctx.factor()),
            format!(
                "the baseline's p95 is {:.1} s (limit {:.1} s)",
                b.duration_ms.p95 / 1000.0,
                b.duration_limit_ms(ctx.factor()) / 1000.0
            ),
        ),
        (None, None) => return None,
    };
    if (wall_ms as f64) <= limit {
        return None;
    }
    let mut d = det(
        "duration-anomaly",
        "duration",
        format!("the job ran {:.1} s; {why}", wall_ms as f64 / 1000.0),
        vec![format!("wall time {wall_ms} ms")],
    );
    d.at_ms = Some(limit as u64);
    Some(d)
}

/// A DNS name that carries data: base32 padding, or a long label of encoded-looking characters.
pub fn looks_like_exfiltration(name: &str) -> bool {
    name.split('.').any(|l| {
        let digits = l.bytes().filter(|b| b.is_ascii_digit()).count();
        l.contains('=')
            || (l.len() >= 16 && digits >= 2 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
            || l.len() >= 32
    }) || name.len() > 100
}

/// What one egress event shows, as far as that event alone can tell.
#[derive(Debug, Clone, PartialEq)]
pub struct EgressFinding {
    /// `egress-denied`, `dns-denied`, `dns-exfiltration` (reported as a high `dns-denied`),
    /// `egress-new-destination`, or empty.
    pub id: &'static str,
    pub subject: String,
    pub explanation: String,
    /// The event on one line, for evidence.
    pub line: String,
    /// An allowed request answered 401, 403 or 407: (destination, evidence line).
    pub auth_failure: Option<(String, String)>,
}

/// Repeated 401/403/407 answers from one destination raise failed-auth at this count.
pub const FAILED_AUTH_COUNT: usize = 3;

/// Classifies one egress event (an element of the egress log's `events`).
pub fn egress_event(e: &serde_json::Value, ctx: &Ctx) -> EgressFinding {
    let s = |k: &str| e.get(k).and_then(|v| v.as_str()).map(String::from);
    let verdict = s("verdict").unwrap_or_default();
    let protocol = s("protocol").unwrap_or_default();
    let port = e.get("port").and_then(|p| p.as_u64()).unwrap_or(0);
    let dest = s("name")
        .or_else(|| s("client_target"))
        .unwrap_or_else(|| format!("?:{port}"));
    let line = format!(
        "{} {} {} {} ({}){}",
        s("time").unwrap_or_default(),
        protocol,
        dest,
        verdict,
        s("rule").unwrap_or_default(),
        e.get("pid")
            .and_then(|p| p.as_u64())
            .map(|p| format!(" pid {p}"))
            .unwrap_or_default()
    );
    let (id, explanation) = match (verdict.as_str(), protocol.as_str()) {
        ("refused" | "flagged", "dns") if looks_like_exfiltration(&dest) => (
            "dns-exfiltration",
            format!(
                "DNS exfiltration: refused questions for names under {} carry data in their labels",
                registered_domain(&dest)
            ),
        ),
        ("refused" | "flagged", "dns") => (
            "dns-denied",
            format!("the job asked DNS for {dest}, which the policy does not allow"),
        ),
        ("refused" | "flagged", _) => (
            "egress-denied",
            format!(
                "the job tried to reach {dest}{}, which the policy does not allow",
                if port > 0 {
                    format!(" port {port}")
                } else {
                    String::new()
                }
            ),
        ),
        ("allowed", _) if protocol != "dns" && ctx.baseline.is_some_and(|b| !b.knows_domain(&dest)) => (
            "egress-new-destination",
            format!("the job reached {dest}, which the baseline never saw"),
        ),
        _ => ("", String::new()),
    };
    let auth_failure = e
        .get("http_status")
        .and_then(|c| c.as_u64())
        .filter(|c| matches!(c, 401 | 403 | 407) && verdict == "allowed")
        .map(|code| (dest.clone(), format!("{line}: HTTP {code}")));
    // Exfiltration spreads over many names of one domain: group by the registered part.
    let subject = if id == "dns-exfiltration" {
        registered_domain(&dest)
    } else {
        dest
    };
    EgressFinding {
        id,
        subject,
        explanation,
        line,
        auth_failure,
    }
}

fn egress_detection(id: &str, subject: String, explanation: String, evidence: Vec<String>) -> Detection {
    // Exfiltration is reported as dns-denied, one severity up.
    let mut d = det(
        if id == "dns-exfiltration" { "dns-denied" } else { id },
        subject,
        explanation,
        evidence,
    );
    if id == "dns-exfiltration" {
        d.severity = Severity::High;
    }
    d
}

fn failed_auth(dest: &str, evidence: &[String]) -> Detection {
    det(
        "failed-auth",
        dest.to_string(),
        format!("{dest} answered 401/403/407 {} times", evidence.len()),
        evidence.iter().take(5).cloned().collect(),
    )
}

/// Rules on one egress event as it happens (the live monitor); `auth` keeps the 401/403/407
/// answers seen so far per destination.
pub fn egress_live(e: &serde_json::Value, ctx: &Ctx, auth: &mut BTreeMap<String, Vec<String>>) -> Vec<Detection> {
    let f = egress_event(e, ctx);
    let mut out = Vec::new();
    if !f.id.is_empty() {
        out.push(egress_detection(f.id, f.subject, f.explanation, vec![f.line]));
    }
    if let Some((dest, line)) = f.auth_failure {
        let seen = auth.entry(dest.clone()).or_default();
        seen.push(line);
        if seen.len() == FAILED_AUTH_COUNT {
            out.push(failed_auth(&dest, seen));
        }
    }
    out
}

/// Rules on the egress log (the report's `egress` field, written by the egress proxy).
pub fn egress_rules(egress: &serde_json::Value, ctx: &Ctx) -> Vec<Detection> {
    let events = egress
        .get("events")
        .and_then(|e| e.as_array())
        .map(|v| v.as_slice())
        .unwrap_or(&[]);
    // (id, subject) -> (explanation, evidence, count)
    let mut groups: BTreeMap<(&'static str, String), (String, Vec<String>, u64)> = BTreeMap::new();
    let mut auth: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in events {
        let f = egress_event(e, ctx);
        if let Some((dest, line)) = f.auth_failure {
            auth.entry(dest).or_default().push(line);
        }
        if f.id.is_empty() {
            continue;
        }
        let g = groups
            .entry((f.id, f.subject))
            .or_insert((f.explanation, Vec::new(), 0));
        g.2 += 1;
        if g.1.len() < 5 {
            g.1.push(f.line);
        }
    }
    let mut out = Vec::new();
    for ((id, subject), (expl, mut evidence, count)) in groups {
        if count > evidence.len() as u64 {
            evidence.push(format!("… {} attempts in all", count));
        }
        out.push(egress_detection(id, subject, expl, evidence));
    }
    for (dest, ev) in auth {
        if ev.len() >= FAILED_AUTH_COUNT {
            out.push(failed_auth(&dest, &ev));
        }
    }
    out
}

fn registered_domain(name: &str) -> String {
    let labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
    let n = labels.len();
    if n <= 2 {
        name.to_string()
    } else {
        labels[n - 2..].join(".")
    }
}

/// Rules on the denied-syscall table of a report (for reports whose denials were not seen live).
pub fn denied_rules(denied: &serde_json::Value, ctx: &Ctx) -> Vec<Detection> {
    let mut out = Vec::new();
    let Some(map) = denied.as_object() else {
        return out;
    };
    for (name, v) in map {
        let first = v.get("first").and_then(|f| f.as_array()).cloned().unwrap_or_default();
        let mut e = MonitorEvent {
            kind: "denied-syscall".into(),
            subject: name.clone(),
            ..Default::default()
        };
        if let Some(f) = first.first() {
            e.pid = f.get(0).and_then(|p| p.as_u64()).map(|p| p as u32);
            e.detail = f.get(1).and_then(|a| a.as_str()).map(String::from);
        }
        for mut d in on_event(&e, ctx) {
            d.at_ms = None;
            let count = v.get("count").and_then(|c| c.as_u64()).unwrap_or(1);
            d.evidence = first
                .iter()
                .map(|f| {
                    format!(
                        "pid {}: {}",
                        f.get(0).and_then(|p| p.as_u64()).unwrap_or(0),
                        f.get(1).and_then(|a| a.as_str()).unwrap_or("")
                    )
                })
                .collect();
            d.evidence.push(format!("{count} denied in all"));
            out.push(d);
        }
    }
    out
}

fn file_changes(files: &[FileChange], ctx: &Ctx) -> Vec<Detection> {
    let mut by: BTreeMap<(String, String), Detection> = BTreeMap::new();
    for f in files {
        if let Some(d) = file_rule(&f.path, ctx) {
            let e = by.entry((d.id.clone(), d.subject.clone())).or_insert(d);
            if e.evidence.len() < 5 {
                e.evidence.push(format!("{} {} {}", f.change, f.kind, f.path));
            }
        }
    }
    by.into_values().collect()
}

/// Every detection a finished report supports: the live ones it carries plus what the rules find
/// in its records now, one per (id, subject), most severe first.
pub fn evaluate(r: &JobReport, ctx: &Ctx) -> Vec<Detection> {
    let mut all: Vec<Detection> = r.observed.detections.clone();
    for p in &r.observed.processes {
        if p.has("exec") {
            all.extend(on_exec(p, ctx));
        }
        if p.end_ms.is_some() {
            all.extend(on_exit(p));
        }
    }
    for e in &r.observed.events {
        all.extend(on_event(e, ctx));
    }
    all.extend(file_changes(&r.observed.files.outside_workspace, ctx));
    for f in &r.observed.files.protected_changed {
        all.push(det(
            "source-tampered",
            f.path.clone(),
            format!("the protected source file {} was {} during the job", f.path, f.change),
            vec![format!("{} {} {}", f.change, f.kind, f.path)],
        ));
    }
    for l in &r.left_running {
        all.push(det(
            "persistence-attempt",
            format!(
                "left running: {}",
                if l.cmdline.is_empty() { &l.comm } else { &l.cmdline }
            ),
            format!("{} was still running when the job's main process exited", l.comm),
            vec![format!("job pid {}: {}", l.pid, l.cmdline)],
        ));
    }
    all.extend(denied_rules(&r.denied_syscalls, ctx));
    all.extend(egress_rules(&r.egress, ctx));
    if let Some(d) = duration_rule(r.resources.wall_ms, ctx) {
        all.push(d);
    }
    let windows = r
        .observed
        .monitor
        .as_ref()
        .map(|m| m.cpu_windows.clone())
        .unwrap_or_default();
    if let Some(d) = cpu_rule(&windows, ctx) {
        all.push(d);
    }
    dedup(all)
}

/// One detection per (id, subject), keeping the first (earliest, live) with its time and pid;
/// a later one that carries more evidence (the whole log at the end, where the live one saw a
/// single event) lends it its evidence and explanation.
pub fn dedup(all: Vec<Detection>) -> Vec<Detection> {
    let mut at: HashMap<(String, String), usize> = HashMap::new();
    let mut out: Vec<Detection> = Vec::new();
    for d in all {
        match at.get(&(d.id.clone(), d.subject.clone())) {
            Some(&i) => {
                let kept = &mut out[i];
                if d.evidence.len() > kept.evidence.len() {
                    kept.evidence = d.evidence;
                    kept.explanation = d.explanation;
                }
            }
            None => {
                at.insert((d.id.clone(), d.subject.clone()), out.len());
                out.push(d);
            }
        }
    }
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.at_ms.unwrap_or(u64::MAX).cmp(&b.at_ms.unwrap_or(u64::MAX)))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc_rec(exe: &str, flags: &[&str]) -> ProcessRecord {
        ProcessRecord {
            pid: 10,
            ns_pid: Some(3),
            ppid: 9,
            exe: Some(exe.into()),
            argv: vec![exe.into()],
            flags: flags.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_shell_on_a_socket_is_a_reverse_shell_and_other_programs_are_not() {
        let ctx = Ctx::default();
        let d = on_exec(&proc_rec("/usr/bin/bash", &["exec", "stdio-socket"]), &ctx);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].id, "reverse-shell");
        assert_eq!(d[0].severity, Severity::Critical);
        assert!(on_exec(&proc_rec("/usr/bin/curl", &["exec", "stdio-socket"]), &ctx).is_empty());
        assert!(on_exec(&proc_rec("/usr/bin/bash", &["exec"]), &ctx).is_empty());
    }

    #[test]
    fn persistence_places() {
        assert!(persistence_place("/tmp/.bashrc").is_some());
        assert!(persistence_place("/home/u/.config/autostart/x.desktop").is_some());
        assert!(persistence_place("/var/spool/cron/crontabs/u").is_some());
        assert!(persistence_place("/tmp/.ssh/authorized_keys").is_some());
        assert!(persistence_place("/tmp/build/out.o").is_none());
        let d = file_rule("/tmp/.profile", &Ctx::default()).unwrap();
        assert_eq!(d.id, "persistence-attempt");
        let d = file_rule("/tmp/cache/x", &Ctx::default()).unwrap();
        assert_eq!((d.id.as_str(), d.severity), ("file-outside-workspace", Severity::Low));
    }

    #[test]
    fn exfiltration_names() {
        assert!(!looks_like_exfiltration("onswg4tfoqfa.evil.test"));
        assert!(looks_like_exfiltration("onswg4tfoqfa2lzomfxgizq3.evil.test"));
        assert!(looks_like_exfiltration("ONSWG4TFOQFA====.evil.test"));
        assert!(!looks_like_exfiltration("index.crates.io"));
    }

    #[test]
    fn denied_mount_is_privilege_escalation_and_personality_is_not() {
        let e = |s: &str| MonitorEvent {
            kind: "denied-syscall".into(),
            subject: s.into(),
            pid: Some(4),
            ..Default::default()
        };
        assert_eq!(on_event(&e("mount"), &Ctx::default())[0].id, "priv-escalation-attempt");
        assert_eq!(on_event(&e("personality"), &Ctx::default())[0].id, "syscall-denied");
    }

    #[test]
    fn dedup_keeps_one_per_subject_most_severe_first() {
        let a = det("egress-denied", "x", "a".into(), vec![]);
        let b = det("reverse-shell", "sh", "b".into(), vec![]);
        let out = dedup(vec![a.clone(), b, a]);
        assert_eq!(
            out.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            vec!["reverse-shell", "egress-denied"]
        );
    }
}
