//! The job report: one JSON document per job, with a versioned schema (docs/report-schema.md).
//! Fields are added, never renamed or repurposed, within one version.

use serde::{Deserialize, Serialize};
use serde_json::Value;
pub use stockade_report::Severity;

pub const REPORT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobReport {
    /// Schema version of this document.
    pub version: u32,
    pub job_id: String,
    /// The command, with secrets masked.
    pub command: Vec<String>,
    pub policy_digest: String,
    /// Where the job came from (CI integrations fill this in), free-form per platform.
    #[serde(default)]
    pub context: Option<Value>,
    pub started_at: String,
    pub outcome: Outcome,
    pub resources: Resources,
    /// Limits and protections that landed, and where.
    pub enforced: Vec<String>,
    /// Limits or protections that could not be enforced on this host.
    pub warnings: Vec<String>,
    /// Syscalls the seccomp filter denied: name -> count and first instances.
    pub denied_syscalls: Value,
    /// Processes still alive when the main process exited (killed at teardown).
    pub left_running: Vec<LeftProcess>,
    /// What teardown found still present after cleaning up: each one is an error.
    pub leftovers: Vec<String>,
    /// Egress attempts (filled by the egress proxy).
    #[serde(default)]
    pub egress: Value,
    /// What the monitor saw and concluded: process tree, events, file changes, detections.
    #[serde(flatten, default)]
    pub observed: Observed,
}

/// The monitor's part of the report (its keys sit at the report's top level).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Observed {
    /// How the job was watched; absent when monitoring was off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<MonitorInfo>,
    /// Every process of the job (one record per program image), in start order.
    #[serde(default)]
    pub processes: Vec<ProcessRecord>,
    /// Other things seen while the job ran (memory reads, file writes, denied calls), in order.
    #[serde(default)]
    pub events: Vec<MonitorEvent>,
    #[serde(default)]
    pub files: FileChanges,
    /// Detections, most severe first.
    #[serde(default)]
    pub detections: Vec<Detection>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorInfo {
    /// `audit` or `block`.
    pub mode: String,
    /// Block mode stops the job at the first detection at or above this.
    pub threshold: Severity,
    /// The kernel interfaces the monitor used.
    pub mechanism: String,
    /// The job's workspace as the job sees it (paths under it are the job's own business).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// The baseline compared against (path and sha256), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// Kernel events lost to a full queue (the process tree may be incomplete if non-zero).
    #[serde(default)]
    pub events_lost: u64,
    /// Events past the report's cap, counted but not kept.
    #[serde(default)]
    pub events_dropped: u64,
    /// CPU use of the job in cores, one value per 5-second window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpu_windows: Vec<f32>,
    /// Set when block mode acted on a detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<Blocked>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Blocked {
    pub id: String,
    pub severity: Severity,
    pub explanation: String,
    /// The job was killed while running (false: the detection came at its end, so it only
    /// failed the job).
    pub stopped: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
}

/// One program image of the job: a fork, or an exec (which starts a new record).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// Host pid.
    pub pid: u32,
    /// The pid the job itself sees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_pid: Option<u32>,
    /// Host pid of the parent.
    pub ppid: u32,
    /// The executable, as the job sees its path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// argv, secrets masked as `***`; empty for a fork that did not exec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// uid inside the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Milliseconds since the job started.
    pub start_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// `exec`, `setuid` (the executable is set-id), `stdio-socket` (stdin or stdout is a socket),
    /// `info-lost` (gone before its details could be read), `replaced` (it exec'd again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

impl ProcessRecord {
    pub fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MonitorEvent {
    pub at_ms: u64,
    /// `mem-open`, `environ-open`, `ptrace`, `file-write`, `denied-syscall`.
    pub kind: String,
    /// Host pid of the process that acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// What it acted on: a path, a syscall name, a traced pid.
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FileChanges {
    /// The places examined before teardown (`/tmp`, `/var/tmp`, ...).
    #[serde(default)]
    pub examined: Vec<String>,
    /// Files the job left outside its workspace.
    #[serde(default)]
    pub outside_workspace: Vec<FileChange>,
    /// Number of protected source files watched (`--protect-source`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_files: Option<u64>,
    /// Protected source files the job changed or deleted.
    #[serde(default)]
    pub protected_changed: Vec<FileChange>,
    /// More changes than the report keeps.
    #[serde(default)]
    pub truncated: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FileChange {
    pub path: String,
    /// `created`, `modified`, `deleted`, `replaced`.
    pub change: String,
    /// `file`, `dir`, `symlink`, `other`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// Something the job did that a person should look at.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Detection {
    /// Stable id, documented in docs/detections.md (`reverse-shell`, `egress-denied`, ...).
    pub id: String,
    pub severity: Severity,
    /// One line: what happened and why it matters.
    pub explanation: String,
    /// What it is about (an executable, a domain, a path, a syscall); one detection per id and subject.
    pub subject: String,
    /// The records that show it.
    #[serde(default)]
    pub evidence: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    /// stockade's exit code for this job.
    pub exit_code: i32,
    /// The main process's exit status, when it exited.
    pub status: Option<i32>,
    /// The signal that killed the main process, when one did.
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub oom_killed: bool,
    pub pids_limit_hit: bool,
    /// The signal stockade received and forwarded (SIGINT, SIGTERM).
    pub interrupted: Option<i32>,
    /// Why the command could not run, when it could not.
    pub exec_error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Resources {
    pub wall_ms: u64,
    pub cpu_ms: Option<u64>,
    pub cpu_user_ms: Option<u64>,
    pub cpu_system_ms: Option<u64>,
    pub memory_peak_bytes: Option<u64>,
    pub pids_peak: Option<u64>,
    /// Bytes the job received and sent through egress, when egress was on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeftProcess {
    pub pid: i32,
    pub comm: String,
    pub cmdline: String,
}
