//! The end of a job: a handle that kills all of it from anywhere, and the verification that
//! nothing of it remains (processes, cgroups, mounts, files); a leftover is an error, not a shrug.

use crate::cgroup::Cgroups;
use crate::mnt::JobPaths;
use crate::sys;
use std::fs;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

/// Kills every process of a job: the v2 cgroup at once, then init (which takes its pid
/// namespace with it). Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct Killer {
    v2: Option<PathBuf>,
    v1: Vec<(&'static str, PathBuf)>,
    init: Arc<Option<OwnedFd>>,
}

impl Killer {
    pub(crate) fn new(cg: &Cgroups, init_pidfd: &OwnedFd) -> Killer {
        // The killer owns a duplicate of the pidfd, valid however long it lives.
        let dup = init_pidfd.try_clone().ok();
        Killer {
            v2: cg.v2.clone(),
            v1: cg.v1.clone(),
            init: Arc::new(dup),
        }
    }

    pub fn kill(&self) {
        if let Some(fd) = self.init.as_ref() {
            let _ = sys::pidfd_send_signal(fd, libc::SIGKILL);
        }
        crate::cgroup::kill_dirs(self.v2.as_deref(), self.v1.iter().map(|(c, d)| (*c, d.as_path())));
    }
}

/// argv of a host process, space-joined (empty when it is gone).
pub fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Removes the job directory and checks that no process, cgroup, mount or file of the job is
/// left. A workspace the caller gave lives outside the job directory and stays. With
/// `keep_mark` (cgroups that would not go) the job directory stays, for gc to find them by.
pub fn verify(paths: &JobPaths, cg: &Cgroups, keep_mark: bool) -> Vec<String> {
    let job_dir = paths.dir.as_path();
    let mut left = Vec::new();
    for pid in cg.pids() {
        left.push(format!("process {pid} ({}) still runs", cmdline(pid)));
    }
    for dir in cg.v2.iter().chain(cg.v1.iter().map(|(_, d)| d)) {
        if dir.exists() {
            left.push(format!("cgroup {} still exists", dir.display()));
        }
    }
    for (what, dir) in paths.made(keep_mark) {
        if let Err(e) = crate::state::remove_job_dir(dir) {
            left.push(format!("{what} {}: {e}", dir.display()));
        }
        if dir.exists() {
            left.push(format!("{what} {} still exists", dir.display()));
        }
    }
    // Our own mount table must not mention the job (its mounts lived in its own namespace).
    let jd = job_dir.to_string_lossy();
    if let Ok(mi) = fs::read_to_string("/proc/self/mountinfo") {
        for line in mi.lines() {
            if let Some(mp) = line.split(' ').nth(4)
                && mp.starts_with(&*jd)
            {
                left.push(format!("mount {mp} still present"));
            }
        }
    }
    left
}
