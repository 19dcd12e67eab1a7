//! Id-mapped workspace mounts: a workspace owned by the runner (or root) appears owned by the
//! job's unprivileged uid, and what the job writes lands on disk owned by the workspace's owner.

use crate::sys::{self, MOUNT_ATTR_IDMAP, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// Makes a detached copy of `dir` whose files owned by `owner` appear owned by `job` (host ids).
/// Runs in the supervisor (host root), while single-threaded: it forks a short-lived process to
/// hold the user namespace that carries the mapping.
pub fn workspace_tree(dir: &Path, owner: (u32, u32), job: (u32, u32)) -> io::Result<OwnedFd> {
    let (r, w) = sys::pipe()?;
    let pid = match sys::clone3_fork(libc::CLONE_NEWUSER as u64, None)? {
        sys::Forked::Child => {
            drop(w);
            // Wait until the parent has what it needs (it closes the pipe), then vanish.
            let mut b = [0u8; 1];
            let _ = sys::read_fd(r.as_raw_fd(), &mut b);
            sys::exit_now(0)
        }
        sys::Forked::Parent { pid, .. } => pid,
    };
    drop(r);
    let result = (|| {
        fs::write(format!("/proc/{pid}/uid_map"), format!("{} {} 1\n", owner.0, job.0))?;
        fs::write(format!("/proc/{pid}/gid_map"), format!("{} {} 1\n", owner.1, job.1))?;
        let userns = fs::File::open(format!("/proc/{pid}/ns/user"))?;
        let tree = sys::open_tree_clone(dir, true)?;
        sys::mount_setattr_fd(
            &tree,
            MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
            userns.as_raw_fd(),
        )?;
        Ok(tree)
    })();
    drop(w);
    let _ = sys::waitpid(pid, false);
    result
}
