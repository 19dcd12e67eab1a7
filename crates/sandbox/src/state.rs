//! Host-side state of a job (its directory, owner record, cgroups) and the garbage collector that
//! removes what a killed supervisor could not: the fourth layer of "leave nothing behind".

use crate::cgroup;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Default state root: /var/lib/stockade as root, a per-user directory otherwise.
pub fn default_state_root() -> PathBuf {
    if crate::sys::getuid() == 0 {
        PathBuf::from("/var/lib/stockade")
    } else if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|x| Path::new(x).is_absolute()) {
        PathBuf::from(x).join("stockade")
    } else {
        std::env::temp_dir().join(format!("stockade-{}", crate::sys::getuid()))
    }
}

pub fn jobs_dir(state_root: &Path) -> PathBuf {
    state_root.join("jobs")
}

/// Creates `state_root/jobs/<id>`; traversable (0711) so the job's unprivileged ids can reach
/// their workspace, listable by no one else.
pub fn create_job_dir(state_root: &Path, id: &str) -> io::Result<PathBuf> {
    ensure_dir(state_root)?;
    dir_in(&jobs_dir(state_root), id, 0o711)
}

/// Makes `dir` (and what is missing above it) and keeps it 0711 whatever the umask did; an
/// existing directory already 0711 is left untouched (a chmod would be a journalled inode
/// update on every job).
fn ensure_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() && m.mode() & 0o7777 == 0o711 => return Ok(()),
        Ok(m) if !m.is_dir() => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new().recursive(true).mode(0o711).create(dir)?;
        }
        Err(e) => return Err(e),
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o711))
}

/// Creates `state_root/work/<id>`, the scratch workspace of a job given none. It lives beside
/// the job directory, not in it: the job's init covers its job directory with a private tmpfs.
pub fn create_scratch_dir(state_root: &Path, id: &str) -> io::Result<PathBuf> {
    dir_in(&state_root.join("work"), id, 0o700)
}

/// Creates `parent/<id>` with `mode`, and `parent` itself where missing; `parent` is made (and
/// kept, whatever the umask did) traversable but not listable: 0711.
fn dir_in(parent: &Path, id: &str, mode: u32) -> io::Result<PathBuf> {
    ensure_dir(parent)?;
    let dir = parent.join(id);
    fs::DirBuilder::new().mode(mode).create(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(mode))?;
    Ok(dir)
}

/// A new job id that also names its supervisor: "<random hex>.<pid>.<start time>", so that gc
/// can tell a live job from a dead one from the id alone, whatever state root it used.
pub fn new_job_id() -> String {
    let pid = std::process::id() as i32;
    let mut rnd = [0u8; 4];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut rnd);
    }
    let hex: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
    let start = owner_record(pid)
        .and_then(|r| r.split_whitespace().nth(1).map(String::from))
        .unwrap_or_default();
    format!("{hex}.{pid}.{start}")
}

/// "pid starttime": a pid alone is reused, the pair is not.
fn owner_record(pid: i32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let start = after.split_whitespace().nth(19)?;
    Some(format!("{pid} {start}"))
}

/// Whether the supervisor named in a job id still runs.
pub fn owner_alive(id: &str) -> bool {
    let mut parts = id.split('.');
    let (Some(_), Some(pid), Some(start)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<i32>() else { return false };
    owner_record(pid).is_some_and(|now| now == format!("{pid} {start}"))
}

/// Removes a job directory or a scratch workspace (which may hold files of the job's uid). The
/// job directory is always empty, a scratch workspace often: one rmdir, then the full walk.
pub fn remove_job_dir(dir: &Path) -> io::Result<()> {
    let r = match fs::remove_dir(dir) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST | libc::ENOTDIR)) => {
            fs::remove_dir_all(dir)
        }
        r => r,
    };
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// What `gc` found and removed.
#[derive(Debug, Default, serde::Serialize)]
pub struct GcReport {
    pub jobs_removed: Vec<String>,
    pub cgroups_removed: Vec<String>,
    pub errors: Vec<String>,
}

/// Removes the state of every job whose supervisor is gone: kills what is left in its cgroups,
/// removes the cgroups, the job directory and the scratch workspace.
pub fn gc(state_root: &Path) -> GcReport {
    collect(state_root, true)
}

/// `gc` before a job: the host's cgroups are searched only when this state root holds a dead
/// job. A dead job's directory outlives its cgroups (teardown removes them first), so only the
/// empty cgroups of a job under another state root wait, for a job there or `stockade gc`
/// (their processes died with the job's init): four cgroup listings less per job.
pub fn gc_before_job(state_root: &Path) -> GcReport {
    collect(state_root, false)
}

fn collect(state_root: &Path, always_cgroups: bool) -> GcReport {
    let mut rep = GcReport::default();
    let mut live = Vec::new();
    for parent in [jobs_dir(state_root), state_root.join("work")] {
        let Ok(rd) = fs::read_dir(&parent) else { continue };
        for e in rd.flatten() {
            let dir = e.path();
            let id = e.file_name().to_string_lossy().into_owned();
            if owner_alive(&id) {
                live.push(id);
                continue;
            }
            // A crashed job may still have mounts in our namespace only if someone entered it;
            // its own mount namespace died with its processes.
            match remove_job_dir(&dir) {
                Ok(()) if !rep.jobs_removed.contains(&id) => rep.jobs_removed.push(id),
                Ok(()) => {}
                Err(err) => rep.errors.push(format!("{}: {err}", dir.display())),
            }
        }
    }
    if !always_cgroups && rep.jobs_removed.is_empty() && rep.errors.is_empty() {
        return rep;
    }
    for (ctrl, dir) in cgroup::all_job_dirs() {
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if live.contains(&id) || owner_alive(&id) {
            continue;
        }
        match ctrl {
            None => cgroup::kill_dirs(Some(&dir), std::iter::empty()),
            Some(c) => cgroup::kill_dirs(None, std::iter::once((c, dir.as_path()))),
        }
        let left = cgroup::remove_dirs(std::iter::once(dir.as_path()));
        if left.is_empty() {
            rep.cgroups_removed.push(dir.display().to_string());
        } else {
            rep.errors.extend(left);
        }
    }
    rep
}
