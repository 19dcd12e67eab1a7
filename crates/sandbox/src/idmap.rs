//! Id-mapped mounts: a workspace owned by the runner (or root) appears owned by the job's
//! unprivileged uid (what it writes lands on disk as the owner's), and so do the writable root's files.

use crate::sys::{self, MOUNT_ATTR_IDMAP, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// An id mapping of a mount: (on-disk id, id shown, count) extents for uids and gids (host ids).
pub struct IdMap {
    pub uids: Vec<(u32, u32, u32)>,
    pub gids: Vec<(u32, u32, u32)>,
}

/// Makes a detached copy of `dir` whose files owned by `owner` appear owned by `job` (host ids).
pub fn workspace_tree(dir: &Path, owner: (u32, u32), job: (u32, u32)) -> io::Result<OwnedFd> {
    let map = IdMap {
        uids: vec![(owner.0, job.0, 1)],
        gids: vec![(owner.1, job.1, 1)],
    };
    mapped_tree(dir, &map, true)
}

/// The writable root's lower layer: the host's root-owned files appear owned by the job's uid
/// and gid, so that the job (never root) can change them in its throw-away upper layer; every
/// other id keeps its number inside the job's user namespace (`ns_base` is the host id of the
/// namespace's 0). An on-disk owner equal to the job's own number appears unowned.
pub fn root_lower_tree(rootfs: &Path, ns_base: (u32, u32), job: (u32, u32), range: u32) -> io::Result<OwnedFd> {
    let extents = |base: u32, job_inside: u32| {
        let mut v = vec![(0, base + job_inside, 1)];
        if job_inside > 1 {
            v.push((1, base + 1, job_inside - 1));
        }
        if job_inside + 1 < range {
            v.push((job_inside + 1, base + job_inside + 1, range - job_inside - 1));
        }
        v
    };
    let map = IdMap {
        uids: extents(ns_base.0, job.0),
        gids: extents(ns_base.1, job.1),
    };
    mapped_tree(rootfs, &map, false)
}

/// A detached copy of `dir` carrying the id mapping `map`. Runs in the supervisor (host root),
/// while single-threaded: it forks a short-lived process to hold the user namespace that
/// carries the mapping.
fn mapped_tree(dir: &Path, map: &IdMap, recursive: bool) -> io::Result<OwnedFd> {
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
    let lines = |ext: &[(u32, u32, u32)]| ext.iter().map(|(a, b, n)| format!("{a} {b} {n}\n")).collect::<String>();
    let result = (|| {
        fs::write(format!("/proc/{pid}/uid_map"), lines(&map.uids))?;
        fs::write(format!("/proc/{pid}/gid_map"), lines(&map.gids))?;
        let userns = fs::File::open(format!("/proc/{pid}/ns/user"))?;
        let tree = sys::open_tree_clone(dir, recursive)?;
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
