//! The job report: one JSON document per job, with a versioned schema (docs/report-schema.md).
//! Fields are added, never renamed or repurposed, within one version.

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeftProcess {
    pub pid: i32,
    pub comm: String,
    pub cmdline: String,
}
