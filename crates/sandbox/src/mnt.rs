//! The job's filesystem view: a read-only root (or a throw-away overlay), fresh tmpfs, /dev, /proc
//! and /sys, hidden secrets, the workspace and binds; then pivot_root so the host is out of reach.
//! Mount targets are resolved inside the new root with openat2(RESOLVE_IN_ROOT), never by strings.

use crate::error::{Step, StepError};
use crate::plan::{HIDDEN, Plan};
use crate::sys::{self, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Host-side paths prepared by the supervisor for this job.
pub struct JobPaths {
    /// The job's directory: empty on the host; init covers it with a private tmpfs (`stage`).
    pub dir: PathBuf,
    pub workspace: PathBuf,
    /// The scratch workspace made because the job was given none; removed at the end.
    pub scratch: Option<PathBuf>,
    /// A detached, id-mapped copy of the workspace, made by the supervisor, to attach.
    pub workspace_tree: Option<OwnedFd>,
    /// A detached, non-recursive copy of the rootfs for the writable-root overlay.
    pub lower_tree: Option<OwnedFd>,
}

impl JobPaths {
    /// What the supervisor made on the host, to remove at the job's end: the scratch workspace,
    /// and the (empty) job directory unless `keep_mark`, for cgroups that would not go: gc
    /// finds a dead job's leftover cgroups by its directory.
    pub fn made(&self, keep_mark: bool) -> impl Iterator<Item = (&'static str, &Path)> {
        (!keep_mark)
            .then_some(("job directory", self.dir.as_path()))
            .into_iter()
            .chain(self.scratch.as_deref().map(|s| ("scratch workspace", s)))
    }

    /// Removes what the supervisor made on the host (see `made`), when a job fails to start.
    pub fn remove(&self, keep_mark: bool) {
        for (_, dir) in self.made(keep_mark) {
            let _ = crate::state::remove_job_dir(dir);
        }
    }
}

/// What init puts in the private tmpfs over the job directory.
struct Staged {
    newroot: PathBuf,
    /// A detached copy of an empty file with mode 000: the first hidden file gets it, the others
    /// a bind of that one (a copy left unattached costs an RCU grace period when it is closed).
    hidden: OwnedFd,
    /// Detached copies of the files made for the job, in `plan.files` order.
    files: Vec<OwnedFd>,
}

/// Covers the job directory with a tmpfs seen only in the job's mount namespace and makes there
/// the new root's mount point and the sources of file mounts: secrets given as files live in
/// memory only, and nothing needs removing from the host's disk afterwards.
fn stage(plan: &Plan, dir: &Path) -> Result<Staged, StepError> {
    let bytes: u64 = plan.files.iter().map(|f| f.contents.len() as u64 + 4096).sum();
    sys::mount(
        Some(Path::new("tmpfs")),
        dir,
        Some("tmpfs"),
        TMPFS_FLAGS | libc::MS_NOEXEC,
        Some(&format!("size={},mode=711", (1u64 << 20) + bytes)),
    )
    .step(|| "mount the job's private staging tmpfs".into())?;
    let newroot = dir.join("root");
    fs::create_dir(&newroot).step(|| "create the new root's mount point".into())?;
    let hidden_file = dir.join("hidden");
    fs::File::create(&hidden_file)
        .and_then(|_| fs::set_permissions(&hidden_file, fs::Permissions::from_mode(0o000)))
        .step(|| "create the stand-in for hidden files".into())?;
    let clone = |p: &Path| sys::open_tree_clone(p, false).step(|| format!("copy {}", p.display()));
    let hidden = clone(&hidden_file)?;
    let mut files = Vec::new();
    for (i, f) in plan.files.iter().enumerate() {
        let p = dir.join(format!("file{i}"));
        let what = || format!("file for {}", f.target.display());
        fs::write(&p, &f.contents).step(what)?;
        if f.private {
            sys::chown(&p, plan.uid, plan.gid).step(what)?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o400)).step(what)?;
        } else {
            fs::set_permissions(&p, fs::Permissions::from_mode(0o444)).step(what)?;
        }
        files.push(clone(&p)?);
    }
    // Unbindable from now on, with everything bound from it copied out above: the recursive
    // binds to come (the host's root, an operator's `--bind /var/lib`) leave it out instead of
    // showing the job's files again under the state directory.
    sys::mount(None, dir, None, libc::MS_UNBINDABLE, None).step(|| "make the staging tmpfs unbindable".into())?;
    Ok(Staged { newroot, hidden, files })
}

const MS_BIND: libc::c_ulong = libc::MS_BIND;
const MS_REC: libc::c_ulong = libc::MS_REC;
const TMPFS_FLAGS: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV;

/// Docker's masked /proc paths: hidden from the job.
const PROC_MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/sysrq-trigger",
];
const PROC_READONLY: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"];
const SYS_MASKED: &[&str] = &["/sys/firmware", "/sys/devices/virtual/powercap", "/sys/kernel/debug"];
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// A mount target inside the new root, held open so it cannot be swapped under us.
struct Target {
    fd: OwnedFd,
}

impl Target {
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

struct Root {
    fd: OwnedFd,
}

impl Root {
    fn open(path: &Path) -> Result<Root, StepError> {
        let fd = sys::open_dir(path).step(|| format!("open new root {}", path.display()))?;
        Ok(Root { fd })
    }

    fn at(&self, inside: &Path) -> io::Result<Target> {
        Ok(Target {
            fd: sys::open_in_root(&self.fd, inside)?,
        })
    }

    /// Creates a missing mount point (a directory, or an empty file when `file`), resolving the
    /// parent inside the root first.
    fn ensure(&self, inside: &Path, file: bool) -> io::Result<Target> {
        match self.at(inside) {
            Ok(t) => return Ok(t),
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            Err(_) => {}
        }
        let parent = inside.parent().unwrap_or(Path::new("/"));
        let name = inside
            .file_name()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        let p = self.ensure(parent, false)?;
        let created = p.path().join(name);
        if file {
            fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&created)?;
        } else {
            match fs::DirBuilder::new().mode(0o755).create(&created) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        self.at(inside)
    }
}

fn tmpfs(t: &Target, size: u64, mode: u32, what: &str) -> Result<(), StepError> {
    sys::mount(
        Some(Path::new("tmpfs")),
        &t.path(),
        Some("tmpfs"),
        TMPFS_FLAGS,
        Some(&format!("size={size},mode={mode:o}")),
    )
    .step(|| format!("mount tmpfs on {what}"))
}

/// Binds `src` over `inside` (which must exist), then sets flags on the new mount: the target fd
/// still names the covered directory, so the mount is reached by resolving the path again.
fn bind(root: &Root, src: &Path, inside: &Path, writable: bool) -> Result<(), StepError> {
    let t = root
        .at(inside)
        .step(|| format!("open mount point {}", inside.display()))?;
    sys::mount(Some(src), &t.path(), None, MS_BIND | MS_REC, None)
        .step(|| format!("bind {} on {}", src.display(), inside.display()))?;
    let t = root.at(inside).step(|| format!("reopen {}", inside.display()))?;
    let mut attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if !writable {
        attrs |= MOUNT_ATTR_RDONLY;
    }
    sys::mount_setattr(&t.path(), true, attrs, None).step(|| {
        format!(
            "make {} {}",
            inside.display(),
            if writable { "nosuid" } else { "read-only" }
        )
    })
}

/// Read-only, nosuid and nodev: what the job gets of everything it may only read.
const SEALED: u64 = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;

/// Attaches `copy`, a detached copy of a single file, over the file open as `target`, with
/// `attrs` set on it first.
fn attach(target: &OwnedFd, copy: OwnedFd, attrs: u64) -> io::Result<()> {
    sys::mount_setattr_fd(&copy, attrs, 0)?;
    sys::move_mount_fd(&copy, target)
}

/// The stand-in over hidden files: the staged copy until the first hidden file gets it, then
/// that file, whose bind the others get.
enum StandIn {
    Detached(OwnedFd),
    Attached(Target),
}

/// Directory listings of the rootfs, read once however many patterns walk through them.
type Listings = HashMap<PathBuf, Vec<OsString>>;

/// Expands the `*` components of hidden-path patterns against the host's rootfs.
fn expand(rootfs: &Path, pattern: &str, listings: &mut Listings) -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("/")];
    for comp in Path::new(pattern).components().skip(1) {
        let c = comp.as_os_str().to_string_lossy();
        let mut next = Vec::new();
        for base in &out {
            if let Some(prefix) = c.strip_suffix('*').filter(|_| c.contains('*')) {
                let names = listings.entry(base.clone()).or_insert_with(|| {
                    fs::read_dir(rootfs.join(base.strip_prefix("/").unwrap_or(base)))
                        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
                        .unwrap_or_default()
                });
                for name in names.iter() {
                    if name.to_string_lossy().starts_with(prefix) {
                        next.push(base.join(name));
                    }
                }
            } else {
                next.push(base.join(&*c));
            }
        }
        out = next;
    }
    out.sort();
    out
}

/// Builds the job's root at `newroot` and pivots into it. Runs in the sandbox's init, as
/// root of the job's user namespace, in its fresh mount namespace.
pub fn build_root(plan: &Plan, paths: &JobPaths) -> Result<(), StepError> {
    // Nothing we mount may propagate back to the host.
    sys::mount(None, Path::new("/"), None, MS_REC | libc::MS_PRIVATE, None).step(|| "make mounts private".into())?;
    let mut listings = Listings::new();
    let hidden_paths: Vec<PathBuf> = HIDDEN
        .iter()
        .map(|s| s.to_string())
        .chain(plan.hidden.iter().map(|p| p.to_string_lossy().into_owned()))
        .flat_map(|pat| expand(&plan.rootfs, &pat, &mut listings))
        .collect();
    let Staged { newroot, hidden, files } = stage(plan, &paths.dir)?;

    let root_path = if plan.writable_root {
        sys::mount(
            Some(Path::new("tmpfs")),
            &newroot,
            Some("tmpfs"),
            TMPFS_FLAGS,
            Some(&format!("size={},mode=755", plan.tmpfs_size)),
        )
        .step(|| "mount tmpfs for the overlay's upper layer".into())?;
        for d in ["lower", "upper", "work", "merged"] {
            fs::create_dir(newroot.join(d)).step(|| format!("create overlay {d} dir"))?;
        }
        // The lower layer must have no submounts (overlayfs refuses locked ones, and a user
        // namespace may not make a non-recursive bind of them): the supervisor made one for us.
        let lower = newroot.join("lower");
        match &paths.lower_tree {
            Some(tree) => {
                let t = sys::open_dir(&lower).step(|| "open the lower layer's mount point".into())?;
                sys::move_mount_fd(tree, &t).step(|| "attach the rootfs as the lower layer".into())?;
            }
            None => sys::mount(Some(&plan.rootfs), &lower, None, MS_BIND, None)
                .step(|| format!("bind rootfs {} as the lower layer", plan.rootfs.display()))?,
        }
        let merged = newroot.join("merged");
        let opts = format!(
            "lowerdir={},upperdir={},workdir={},userxattr",
            lower.display(),
            newroot.join("upper").display(),
            newroot.join("work").display()
        );
        sys::mount(
            Some(Path::new("overlay")),
            &merged,
            Some("overlay"),
            libc::MS_NOSUID,
            Some(&opts),
        )
        .step(|| "mount the writable-root overlay".into())?;
        merged
    } else {
        sys::mount(Some(&plan.rootfs), &newroot, None, MS_BIND | MS_REC, None)
            .step(|| format!("bind rootfs {}", plan.rootfs.display()))?;
        sys::mount_setattr(&newroot, true, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, None)
            .step(|| "make the root read-only".into())?;
        newroot.clone()
    };
    let root = Root::open(&root_path)?;

    // Fresh, size-limited scratch space.
    for (dir, mode) in [("/tmp", 0o1777), ("/var/tmp", 0o1777), ("/run", 0o1777)] {
        let t = root
            .ensure(Path::new(dir), false)
            .step(|| format!("mount point {dir}"))?;
        tmpfs(&t, plan.tmpfs_size, mode, dir)?;
    }

    mount_dev(&root, plan.shm_size)?;
    mount_proc(&root)?;
    mount_sys(&root)?;

    // Hidden paths: an empty, unreadable directory or file over each one that exists.
    let mut hidden_dirs = Vec::new();
    let mut stand_in = StandIn::Detached(hidden);
    for p in hidden_paths {
        let Ok(t) = root.at(&p) else { continue };
        if sys::fd_is_dir(&t.fd).step(|| format!("stat hidden path {}", p.display()))? {
            tmpfs(&t, 1 << 20, 0o000, &p.to_string_lossy())?;
            hidden_dirs.push(p);
            continue;
        }
        let what = || format!("hide {}", p.display());
        stand_in = match stand_in {
            // A bind keeps its source's flags: read-only, nosuid, nodev (the job, without
            // CAP_SYS_ADMIN, cannot change them).
            StandIn::Attached(first) => {
                sys::mount(Some(&first.path()), &t.path(), None, MS_BIND, None).step(what)?;
                StandIn::Attached(first)
            }
            StandIn::Detached(copy) => {
                attach(&t.fd, copy, SEALED).step(what)?;
                // Reopened: the fd held names the covered file, not the stand-in now over it.
                StandIn::Attached(root.at(&p).step(what)?)
            }
        };
    }

    // The workspace and the binds the policy asks for, then the files made for the job.
    let mut binds: Vec<(PathBuf, PathBuf, bool)> = Vec::new();
    match &paths.workspace_tree {
        Some(tree) => {
            root.ensure(&paths.workspace, false)
                .step(|| format!("workspace mount point {}", paths.workspace.display()))?;
            let t = root.at(&paths.workspace).step(|| "open workspace mount point".into())?;
            sys::move_mount_fd(tree, &t.fd).step(|| "attach the id-mapped workspace".into())?;
        }
        None => binds.push((paths.workspace.clone(), paths.workspace.clone(), true)),
    }
    binds.extend(
        plan.binds
            .iter()
            .map(|b| (b.source.clone(), b.target.clone(), b.writable)),
    );
    for (src, target, writable) in binds {
        let is_file = fs::metadata(&src)
            .step(|| format!("bind source {}", src.display()))?
            .is_file();
        root.ensure(&target, is_file)
            .step(|| format!("bind target {} (missing in the rootfs)", target.display()))?;
        bind(&root, &src, &target, writable)?;
    }
    for (copy, f) in files.into_iter().zip(&plan.files) {
        let t = root
            .ensure(&f.target, true)
            .step(|| format!("file target {} (missing in the rootfs)", f.target.display()))?;
        attach(&t.fd, copy, SEALED).step(|| format!("mount the file for {}", f.target.display()))?;
    }
    // Mount points inside hidden dirs exist now; seal the dirs themselves. One that leads to a
    // mount (the workspace under /home, say) must be traversable, though still not listable.
    let targets: Vec<&Path> = std::iter::once(paths.workspace.as_path())
        .chain(plan.binds.iter().map(|b| b.target.as_path()))
        .chain(plan.files.iter().map(|f| f.target.as_path()))
        .collect();
    for p in hidden_dirs {
        let t = root.at(&p).step(|| format!("reopen hidden dir {}", p.display()))?;
        if targets.iter().any(|t| t.starts_with(&p) && *t != p) {
            fs::set_permissions(t.path(), fs::Permissions::from_mode(0o711))
                .step(|| format!("make hidden {} traversable", p.display()))?;
        }
        sys::mount_setattr(&t.path(), false, SEALED, None).step(|| format!("make hidden {} read-only", p.display()))?;
    }

    drop(root);
    // pivot_root(".", ".") stacks the old root under the new one; detaching it leaves only ours.
    sys::chdir(&root_path).step(|| "chdir to the new root".into())?;
    sys::pivot_root(Path::new("."), Path::new(".")).step(|| "pivot_root".into())?;
    sys::umount_detach(Path::new(".")).step(|| "detach the host root".into())?;
    sys::chdir(Path::new("/")).step(|| "chdir /".into())?;
    Ok(())
}

fn mount_dev(root: &Root, shm_size: u64) -> Result<(), StepError> {
    let t = root
        .ensure(Path::new("/dev"), false)
        .step(|| "mount point /dev".into())?;
    tmpfs(&t, 1 << 20, 0o755, "/dev")?;
    // The fd still names the covered directory; reopen to reach the new tmpfs.
    let t = root.at(Path::new("/dev")).step(|| "reopen /dev".into())?;
    let dev = t.path();
    for d in DEVICES {
        // A non-recursive copy of the host's node, made nosuid before it is attached over a
        // file made for it in our fresh /dev (device access stays: no nodev here).
        let copy = match sys::open_tree_clone(&Path::new("/dev").join(d), false) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).step(|| format!("copy /dev/{d}")),
        };
        let node = fs::File::create(dev.join(d)).step(|| format!("create /dev/{d}"))?;
        attach(&OwnedFd::from(node), copy, MOUNT_ATTR_NOSUID).step(|| format!("bind /dev/{d}"))?;
    }
    fs::create_dir(dev.join("pts")).step(|| "create /dev/pts".into())?;
    fs::create_dir(dev.join("shm")).step(|| "create /dev/shm".into())?;
    let pts = root.at(Path::new("/dev/pts")).step(|| "open /dev/pts".into())?;
    sys::mount(
        Some(Path::new("devpts")),
        &pts.path(),
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .step(|| "mount devpts".into())?;
    let shm = root.at(Path::new("/dev/shm")).step(|| "open /dev/shm".into())?;
    tmpfs(&shm, shm_size, 0o1777, "/dev/shm")?;
    for (link, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(to, dev.join(link)).step(|| format!("link /dev/{link}"))?;
    }
    // No new device nodes and nothing else written to /dev after this point.
    let t = root.at(Path::new("/dev")).step(|| "reopen /dev".into())?;
    sys::mount_setattr(&t.path(), false, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, None)
        .step(|| "make /dev read-only".into())?;
    Ok(())
}

fn mask(root: &Root, p: &str) -> Result<(), StepError> {
    let Ok(t) = root.at(Path::new(p)) else { return Ok(()) };
    if sys::fd_is_dir(&t.fd).step(|| format!("stat {p}"))? {
        sys::mount(
            Some(Path::new("tmpfs")),
            &t.path(),
            Some("tmpfs"),
            libc::MS_RDONLY | TMPFS_FLAGS,
            Some("size=0,mode=000"),
        )
        .step(|| format!("mask {p}"))
    } else {
        sys::mount(Some(Path::new("/dev/null")), &t.path(), None, MS_BIND, None).step(|| format!("mask {p}"))?;
        let t = root.at(Path::new(p)).step(|| format!("reopen {p}"))?;
        sys::mount_setattr(&t.path(), false, MOUNT_ATTR_RDONLY, None).step(|| format!("mask {p} read-only"))
    }
}

fn read_only_self(root: &Root, p: &str) -> Result<(), StepError> {
    let Ok(t) = root.at(Path::new(p)) else { return Ok(()) };
    sys::mount(Some(&t.path()), &t.path(), None, MS_BIND | MS_REC, None).step(|| format!("bind {p} onto itself"))?;
    let t = root.at(Path::new(p)).step(|| format!("reopen {p}"))?;
    sys::mount_setattr(&t.path(), true, SEALED, None).step(|| format!("make {p} read-only"))
}

fn mount_proc(root: &Root) -> Result<(), StepError> {
    let t = root
        .ensure(Path::new("/proc"), false)
        .step(|| "mount point /proc".into())?;
    sys::mount(
        Some(Path::new("proc")),
        &t.path(),
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )
    .step(|| "mount /proc".into())?;
    for p in PROC_MASKED {
        mask(root, p)?;
    }
    for p in PROC_READONLY {
        read_only_self(root, p)?;
    }
    Ok(())
}

fn mount_sys(root: &Root) -> Result<(), StepError> {
    let t = root
        .ensure(Path::new("/sys"), false)
        .step(|| "mount point /sys".into())?;
    // A fresh sysfs shows only this network namespace's devices; fall back to the host's, read-only.
    let fresh = sys::mount(
        Some(Path::new("sysfs")),
        &t.path(),
        Some("sysfs"),
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    );
    if fresh.is_err() {
        sys::mount(Some(Path::new("/sys")), &t.path(), None, MS_BIND | MS_REC, None).step(|| "bind /sys".into())?;
        let t = root.at(Path::new("/sys")).step(|| "reopen /sys".into())?;
        sys::mount_setattr(&t.path(), true, SEALED, None).step(|| "make /sys read-only".into())?;
    }
    for p in SYS_MASKED {
        mask(root, p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_globs_against_a_tree() {
        let d = std::env::temp_dir().join(format!("stockade-expand-{}", std::process::id()));
        fs::create_dir_all(d.join("opt/runner-a")).unwrap();
        fs::create_dir_all(d.join("opt/runner-b")).unwrap();
        fs::write(d.join("opt/runner-a/.runner"), "").unwrap();
        let mut listings = Listings::new();
        let got = expand(&d, "/opt/*/.runner", &mut listings);
        assert_eq!(
            got,
            vec![
                PathBuf::from("/opt/runner-a/.runner"),
                PathBuf::from("/opt/runner-b/.runner")
            ]
        );
        assert_eq!(
            expand(&d, "/etc/shadow", &mut listings),
            vec![PathBuf::from("/etc/shadow")]
        );
        // The listing is read once: a file added since is not seen by a later pattern.
        fs::write(d.join("opt/runner-b/.credentials"), "").unwrap();
        fs::create_dir_all(d.join("opt/runner-c")).unwrap();
        assert_eq!(
            expand(&d, "/opt/*/.credentials", &mut listings),
            vec![
                PathBuf::from("/opt/runner-a/.credentials"),
                PathBuf::from("/opt/runner-b/.credentials")
            ]
        );
        fs::remove_dir_all(&d).unwrap();
    }
}
