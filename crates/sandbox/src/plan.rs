//! What a job's sandbox must look like, as plain data: the policy crate's settings turned into
//! paths, ids and numbers. Everything the sandbox does is decided from this struct alone.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

/// Runs inside the job's user and network namespaces (all capabilities of that user namespace,
/// `lo` up, host filesystem still visible) and returns listening sockets for the supervisor.
pub type NetSetup = Box<dyn FnOnce() -> Result<Vec<OwnedFd>, String>>;

/// Runs in the supervisor once the job's root is built and before the job's first process
/// exists, with init's host pid (the monitor marks the job's mounts here). Must start no thread.
pub type BeforeJob = Box<dyn FnOnce(i32) + Send>;

pub struct Plan {
    /// Unique id of the job: names its directory, cgroup and default hostname.
    pub job_id: String,
    pub argv: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub uid: u32,
    pub gid: u32,
    pub hostname: String,
    pub rootfs: PathBuf,
    pub writable_root: bool,
    /// Host directory bound read-write at the same path; None: a fresh one, removed at the end.
    pub workspace: Option<PathBuf>,
    pub tmpfs_size: u64,
    pub shm_size: u64,
    /// Paths hidden on top of the built-in list.
    pub hidden: Vec<PathBuf>,
    pub binds: Vec<BindMount>,
    /// Small files made for the job (resolv.conf, secrets), mounted read-only.
    pub files: Vec<FileMount>,
    pub limits: Limits,
    pub timeout: Duration,
    pub kill_grace: Duration,
    pub seccomp: bool,
    pub landlock: bool,
    /// Extra paths writable under Landlock.
    pub writable: Vec<PathBuf>,
    pub stdin: bool,
    /// Byte strings replaced by `***` in the job's stdout and stderr.
    pub mask: Vec<Vec<u8>>,
    /// Where job directories live: /var/lib/stockade as root.
    pub state_root: PathBuf,
    pub net_setup: Option<NetSetup>,
    pub before_job: Option<BeforeJob>,
    /// Send execve/execveat/ptrace/process_vm_* to the supervisor too (`Sandbox::on_watched`),
    /// which lets them go on: the monitor reads argv while the exec'ing process waits.
    pub watch_syscalls: bool,
}

#[derive(Debug, Clone)]
pub struct BindMount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub writable: bool,
}

#[derive(Debug, Clone)]
pub struct FileMount {
    pub target: PathBuf,
    pub contents: Vec<u8>,
    /// Readable only by the job's uid (secrets); otherwise world-readable.
    pub private: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub memory: Option<u64>,
    pub pids: Option<u32>,
    pub cpus: Option<f64>,
    pub open_files: u64,
    pub file_size: Option<u64>,
}

/// The built-in hidden paths: secrets of the host and of the CI runner that a job must never read.
/// Globs (`*`) are expanded against the rootfs at start.
pub const HIDDEN: &[&str] = &[
    "/root",
    "/home",
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssh/ssh_host_*",
    "/etc/gitlab-runner",
    "/etc/docker",
    "/etc/kubernetes",
    "/etc/boto.cfg",
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/var/run/containerd",
    "/run/containerd",
    "/var/run/crio",
    "/run/crio",
    "/run/podman",
    "/var/run/podman",
    "/run/buildkit",
    "/run/user",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/kubelet",
    "/var/lib/jenkins",
    "/var/lib/gitlab-runner",
    "/var/lib/waagent",
    "/var/lib/cloud",
    "/var/lib/stockade",
    "/opt/*/.credentials",
    "/opt/*/.credentials_rsaparams",
    "/opt/*/.runner",
    "/actions-runner/.credentials",
    "/actions-runner/.credentials_rsaparams",
    "/actions-runner/.runner",
    "/opt/*/*/.credentials",
    "/opt/*/*/.credentials_rsaparams",
    "/opt/*/*/.runner",
];
