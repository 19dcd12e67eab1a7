//! The typed messages between the supervisor and the sandbox's processes, over one
//! SOCK_SEQPACKET pair (youki's lesson: a child's error travels back to the parent as data).

use crate::sys::{self, WaitStatus};
use serde::{Deserialize, Serialize};
use std::io;
use std::os::fd::{OwnedFd, RawFd};

#[derive(Debug, Serialize, Deserialize)]
pub enum ToInit {
    /// The user namespace maps are written: set the sandbox up.
    Go,
    /// The cgroups are joined (and the monitor is ready): start the job.
    Start,
    /// Forward this signal to the job's main process.
    Signal(i32),
    /// Kill every process of the job now.
    KillAll,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcInfo {
    pub pid: i32,
    pub comm: String,
    pub cmdline: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum FromSandbox {
    /// A setup step failed; the job never started.
    SetupFailed { step: String, message: String },
    /// Listening sockets made inside the job's network namespace (fds ride along).
    NetFds,
    /// The seccomp user-notification fd (rides along).
    SeccompListener,
    /// The job's root is built; init waits for `Go` before starting the job (`Plan::before_job`).
    RootReady,
    /// The job's command could not be executed (errno).
    ExecFailed { errno: i32, message: String },
    /// The job's main process ended; these processes were still alive and are being killed.
    Exited {
        status: WaitStatus,
        leftovers: Vec<ProcInfo>,
    },
}

pub fn send<T: Serialize>(sock: RawFd, m: &T, fds: &[RawFd]) -> io::Result<()> {
    let data = serde_json::to_vec(m).map_err(io::Error::other)?;
    sys::send_msg(sock, &data, fds)
}

/// Ok(None) on end of stream (the peer is gone).
pub fn recv<T: for<'de> Deserialize<'de>>(sock: RawFd) -> io::Result<Option<(T, Vec<OwnedFd>)>> {
    let (data, fds) = sys::recv_msg(sock)?;
    if data.is_empty() {
        return Ok(None);
    }
    let m = serde_json::from_slice(&data).map_err(io::Error::other)?;
    Ok(Some((m, fds)))
}
