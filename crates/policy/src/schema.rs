//! The policy file's schema: the source of truth for every setting of a job's sandbox.
//! Types reject impossible values while deserializing, so errors carry the file position.

use crate::pools::Pool;
use crate::units::{Dur, Size};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
pub use stockade_report::Severity;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default = "one")]
    pub version: u32,
    #[serde(default)]
    pub job: Job,
    #[serde(default)]
    pub filesystem: Filesystem,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub security: Security,
    /// Egress by name (see the egress crate; `stockade policy default` documents every key).
    #[serde(default)]
    pub egress: stockade_egress::EgressPolicy,
    /// How the job is watched and when it is stopped (the command line overrides each key).
    #[serde(default)]
    pub monitor: Monitor,
    /// Runner pools: an admission rule and sandbox settings each (see pools.rs).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pools: BTreeMap<String, Pool>,
    /// The pool a job goes to when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_pool: Option<String>,
}

fn one() -> u32 {
    1
}

/// A uid or gid of the job: any value but 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct JobId(pub u32);

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        match v {
            0 => Err(serde::de::Error::custom("must not be 0: a job never runs as root")),
            1..=65535 => Ok(JobId(v as u32)),
            _ => Err(serde::de::Error::custom(format!("{v} is out of range (1 to 65535)"))),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Job {
    pub uid: JobId,
    pub gid: JobId,
    pub hostname: String,
    pub env: BTreeMap<String, String>,
    pub env_pass: Vec<String>,
    pub stdin: bool,
    pub timeout: Dur,
    pub kill_grace: Dur,
}

impl Default for Job {
    fn default() -> Self {
        Job {
            uid: JobId(1000),
            gid: JobId(1000),
            hostname: String::new(),
            env: BTreeMap::new(),
            env_pass: Vec::new(),
            stdin: false,
            timeout: Dur(std::time::Duration::from_secs(3600)),
            kill_grace: Dur(std::time::Duration::from_secs(5)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Filesystem {
    pub rootfs: PathBuf,
    pub writable_root: bool,
    pub tmpfs_size: Size,
    pub shm_size: Size,
    pub hidden: Vec<PathBuf>,
    pub binds: Vec<Bind>,
}

impl Default for Filesystem {
    fn default() -> Self {
        Filesystem {
            rootfs: PathBuf::from("/"),
            writable_root: false,
            tmpfs_size: Size(512 << 20),
            shm_size: Size(64 << 20),
            hidden: Vec::new(),
            binds: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bind {
    pub source: PathBuf,
    #[serde(default)]
    pub target: Option<PathBuf>,
    #[serde(default)]
    pub writable: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub memory: Option<Size>,
    pub pids: Option<u32>,
    pub cpus: f64,
    pub open_files: u32,
    pub file_size: Option<Size>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: Some(Size(4 << 30)),
            pids: Some(1024),
            cpus: 0.0,
            open_files: 4096,
            file_size: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Security {
    pub seccomp: bool,
    pub landlock: bool,
    pub writable: Vec<PathBuf>,
}

impl Default for Security {
    fn default() -> Self {
        Security {
            seccomp: true,
            landlock: true,
            writable: Vec::new(),
        }
    }
}

/// How a job is watched: `audit` records and reports, `block` also stops the job at the first
/// detection at or above `block_at`, `off` records nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MonitorMode {
    Audit,
    Block,
    Off,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Monitor {
    pub mode: MonitorMode,
    pub block_at: Severity,
    /// Running longer than this raises duration-anomaly.
    pub expected_duration: Option<Dur>,
    /// Sustained CPU above the baseline's peak times this raises cpu-anomaly.
    pub cpu_anomaly_factor: f64,
    /// `git` (the files git tracks in the workspace) and/or globs relative to the workspace.
    pub protect_source: Vec<String>,
}

impl Default for Monitor {
    fn default() -> Self {
        Monitor {
            mode: MonitorMode::Audit,
            block_at: Severity::High,
            expected_duration: None,
            cpu_anomaly_factor: 1.5,
            protect_source: Vec::new(),
        }
    }
}
