//! The job's cgroups: v2 to track every process and kill them all at once (`cgroup.kill`), and
//! v2 or v1 controllers for the limits, whichever this host has (hybrid hosts split the two).

use crate::error::SandboxError;
use crate::plan::Limits;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const V1_CONTROLLERS: &[&str] = &["memory", "pids", "cpu", "cpuacct", "freezer"];

/// Where this host mounts cgroup2, if anywhere (the pure v2 root or the hybrid `unified`).
pub fn v2_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.procs").exists() && p.join("cgroup.subtree_control").exists())
}

/// Mount points of cgroup v1 hierarchies carrying the named controller.
pub fn v1_mount(controller: &str) -> Option<PathBuf> {
    let p = PathBuf::from("/sys/fs/cgroup").join(controller);
    p.join("tasks").exists().then_some(p)
}

fn v2_controllers(root: &Path) -> Vec<String> {
    fs::read_to_string(root.join("cgroup.controllers"))
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

pub struct Cgroups {
    /// The job's v2 cgroup: tracking and kill.
    pub v2: Option<PathBuf>,
    /// v1 cgroups, one per controller used.
    pub v1: Vec<(&'static str, PathBuf)>,
    pub warnings: Vec<String>,
    /// Which limits landed where, for the report.
    pub enforced: Vec<String>,
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, value)
}

fn mkcg(path: &Path) -> Result<(), SandboxError> {
    match fs::create_dir_all(path) {
        Ok(()) => Ok(()),
        Err(source) => Err(SandboxError::Cgroup {
            path: path.to_path_buf(),
            source,
        }),
    }
}

impl Cgroups {
    /// Creates the job's cgroups and writes its limits. A limit that cannot land anywhere is a
    /// warning (the caller falls back to rlimits), never silence.
    pub fn create(job_id: &str, limits: &Limits) -> Result<Cgroups, SandboxError> {
        let mut cg = Cgroups {
            v2: None,
            v1: Vec::new(),
            warnings: Vec::new(),
            enforced: Vec::new(),
        };
        let mut want_mem = limits.memory;
        let mut want_pids = limits.pids;
        let mut want_cpu = limits.cpus.filter(|c| *c > 0.0);

        if let Some(root) = v2_root() {
            let parent = root.join("stockade");
            let dir = parent.join(job_id);
            match fs::create_dir_all(&dir) {
                Ok(()) => {
                    let ctrls = v2_controllers(&root);
                    // Enable what we need in our own subtree; ignore what the root does not offer.
                    let mut enable = String::new();
                    for c in ["memory", "pids", "cpu"] {
                        if ctrls.iter().any(|x| x == c) {
                            enable.push_str(&format!("+{c} "));
                        }
                    }
                    if !enable.is_empty() {
                        let _ = write(&root.join("cgroup.subtree_control"), enable.trim());
                        let _ = write(&parent.join("cgroup.subtree_control"), enable.trim());
                    }
                    if let Some(m) = want_mem
                        && write(&dir.join("memory.max"), &m.to_string()).is_ok()
                    {
                        let _ = write(&dir.join("memory.swap.max"), "0");
                        cg.enforced.push(format!("memory {m} bytes (cgroup v2)"));
                        want_mem = None;
                    }
                    if let Some(p) = want_pids
                        && write(&dir.join("pids.max"), &p.to_string()).is_ok()
                    {
                        cg.enforced.push(format!("pids {p} (cgroup v2)"));
                        want_pids = None;
                    }
                    if let Some(c) = want_cpu
                        && write(&dir.join("cpu.max"), &format!("{} 100000", (c * 100000.0) as u64)).is_ok()
                    {
                        cg.enforced.push(format!("cpus {c} (cgroup v2)"));
                        want_cpu = None;
                    }
                    cg.v2 = Some(dir);
                }
                Err(e) => cg.warnings.push(format!(
                    "cgroup v2 at {}: {e}: no cgroup.kill, teardown relies on the pid namespace",
                    parent.display()
                )),
            }
        }

        for ctrl in V1_CONTROLLERS {
            let needed = match *ctrl {
                "memory" => want_mem.is_some(),
                "pids" => want_pids.is_some(),
                "cpu" => want_cpu.is_some(),
                // v2's cpu.stat accounts CPU without any controller; v1 only where v2 is absent.
                "cpuacct" => cg.v2.is_none(),
                "freezer" => cg.v2.is_none(),
                _ => false,
            };
            if !needed {
                continue;
            }
            let Some(mnt) = v1_mount(ctrl) else { continue };
            let dir = mnt.join("stockade").join(job_id);
            if let Err(e) = mkcg(&dir) {
                // Accounting-only controllers failing is not a lost limit; the limits warn below.
                if matches!(*ctrl, "memory" | "pids" | "cpu") {
                    cg.warnings.push(e.to_string());
                }
                continue;
            }
            let ok = match *ctrl {
                "memory" => {
                    let m = want_mem.unwrap_or(0).to_string();
                    let r = write(&dir.join("memory.limit_in_bytes"), &m);
                    // Swap counts too where the kernel accounts it.
                    if dir.join("memory.memsw.limit_in_bytes").exists() {
                        let _ = write(&dir.join("memory.memsw.limit_in_bytes"), &m);
                    }
                    if r.is_ok() {
                        cg.enforced.push(format!("memory {m} bytes (cgroup v1)"));
                        want_mem = None;
                    }
                    r.is_ok()
                }
                "pids" => {
                    let p = want_pids.unwrap_or(0);
                    let r = write(&dir.join("pids.max"), &p.to_string());
                    if r.is_ok() {
                        cg.enforced.push(format!("pids {p} (cgroup v1)"));
                        want_pids = None;
                    }
                    r.is_ok()
                }
                "cpu" => {
                    let c = want_cpu.unwrap_or(0.0);
                    let r = write(&dir.join("cpu.cfs_period_us"), "100000")
                        .and_then(|_| write(&dir.join("cpu.cfs_quota_us"), &((c * 100000.0) as u64).to_string()));
                    if r.is_ok() {
                        cg.enforced.push(format!("cpus {c} (cgroup v1)"));
                        want_cpu = None;
                    }
                    r.is_ok()
                }
                _ => true,
            };
            if ok {
                cg.v1.push((ctrl, dir));
            } else {
                let _ = fs::remove_dir(&dir);
            }
        }
        if let Some(m) = want_mem {
            cg.warnings.push(format!(
                "memory limit {m} bytes: no writable memory cgroup; falling back to RLIMIT_AS (per process, not per job)"
            ));
        }
        if let Some(p) = want_pids {
            cg.warnings.push(format!(
                "pids limit {p}: no writable pids cgroup; falling back to RLIMIT_NPROC of the job's uid"
            ));
        }
        if let Some(c) = want_cpu {
            cg.warnings
                .push(format!("cpu limit {c}: no writable cpu cgroup; not enforced"));
        }
        Ok(cg)
    }

    /// True when a memory / pids limit actually landed in a cgroup.
    pub fn has_limit(&self, what: &str) -> bool {
        self.enforced.iter().any(|e| e.starts_with(what))
    }

    /// Moves a process into the v1 cgroups (v2 placement happens atomically at clone).
    pub fn join_v1(&self, pid: i32) -> Result<(), SandboxError> {
        for (_, dir) in &self.v1 {
            write(&dir.join("cgroup.procs"), &pid.to_string()).map_err(|source| SandboxError::Cgroup {
                path: dir.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Every pid still in any of the job's cgroups.
    pub fn pids(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for dir in self.v2.iter().chain(self.v1.iter().map(|(_, d)| d)) {
            if let Ok(s) = fs::read_to_string(dir.join("cgroup.procs")) {
                out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Kills every process of the job: cgroup.kill where present, else freeze, SIGKILL, thaw.
    pub fn kill_all(&self) {
        kill_dirs(self.v2.as_deref(), self.v1.iter().map(|(c, d)| (*c, d.as_path())));
    }

    pub fn stats(&self) -> CgroupStats {
        let mut st = CgroupStats::default();
        let read = |p: PathBuf| fs::read_to_string(p).ok();
        for (ctrl, dir) in &self.v1 {
            match *ctrl {
                "memory" => {
                    st.memory_peak = read(dir.join("memory.max_usage_in_bytes")).and_then(|s| s.trim().parse().ok());
                    st.oom_kills = read(dir.join("memory.oom_control"))
                        .and_then(|s| field(&s, "oom_kill"))
                        .or(st.oom_kills);
                    if st.oom_kills.unwrap_or(0) == 0
                        && read(dir.join("memory.failcnt"))
                            .and_then(|s| s.trim().parse::<u64>().ok())
                            .unwrap_or(0)
                            > 0
                    {
                        st.memory_limit_hit = true;
                    }
                }
                "pids" => {
                    st.pids_peak = read(dir.join("pids.peak")).and_then(|s| s.trim().parse().ok());
                    st.pids_limit_hit = read(dir.join("pids.events"))
                        .and_then(|s| field(&s, "max"))
                        .is_some_and(|n| n > 0);
                }
                "cpuacct" => {
                    st.cpu_usec = read(dir.join("cpuacct.usage"))
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .map(|ns| ns / 1000);
                }
                _ => {}
            }
        }
        if let Some(dir) = &self.v2 {
            if let Some(s) = read(dir.join("cpu.stat")) {
                st.cpu_usec = field(&s, "usage_usec").or(st.cpu_usec);
                st.cpu_user_usec = field(&s, "user_usec");
                st.cpu_system_usec = field(&s, "system_usec");
            }
            if let Some(v) = read(dir.join("memory.peak")).and_then(|s| s.trim().parse().ok()) {
                st.memory_peak = Some(v);
            }
            if let Some(s) = read(dir.join("memory.events")) {
                st.oom_kills = field(&s, "oom_kill").or(st.oom_kills);
            }
            if let Some(v) = read(dir.join("pids.peak")).and_then(|s| s.trim().parse().ok()) {
                st.pids_peak = Some(v);
            }
            if let Some(s) = read(dir.join("pids.events")) {
                st.pids_limit_hit |= field(&s, "max").is_some_and(|n| n > 0);
            }
        }
        st
    }

    /// Removes the job's cgroups, waiting (bounded) for the kernel to release them.
    pub fn remove(&self) -> Vec<String> {
        remove_dirs(
            self.v2
                .iter()
                .chain(self.v1.iter().map(|(_, d)| d))
                .map(|p| p.as_path()),
        )
    }
}

fn field(s: &str, name: &str) -> Option<u64> {
    s.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse().ok()).flatten()
    })
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CgroupStats {
    pub memory_peak: Option<u64>,
    pub oom_kills: Option<u64>,
    pub memory_limit_hit: bool,
    pub pids_peak: Option<u64>,
    pub pids_limit_hit: bool,
    pub cpu_usec: Option<u64>,
    pub cpu_user_usec: Option<u64>,
    pub cpu_system_usec: Option<u64>,
}

fn procs(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Kills everything in these cgroups and waits, bounded, until they are empty.
pub fn kill_dirs<'a>(v2: Option<&Path>, v1: impl Iterator<Item = (&'a str, &'a Path)> + Clone) {
    let deadline = Instant::now() + Duration::from_secs(5);
    if let Some(dir) = v2
        && dir.join("cgroup.kill").exists()
    {
        let _ = write(&dir.join("cgroup.kill"), "1");
    }
    let freezer = v1.clone().find(|(c, _)| *c == "freezer").map(|(_, d)| d.to_path_buf());
    if let Some(f) = &freezer {
        let _ = write(&f.join("freezer.state"), "FROZEN");
    }
    loop {
        let mut any = false;
        for dir in v2.into_iter().chain(v1.clone().map(|(_, d)| d)) {
            for pid in procs(dir) {
                any = true;
                let _ = crate::sys::kill(pid, libc::SIGKILL);
            }
        }
        if let Some(f) = &freezer {
            let _ = write(&f.join("freezer.state"), "THAWED");
        }
        if !any || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// rmdir with a bounded retry: a cgroup is busy for a moment after its last process is reaped.
pub fn remove_dirs<'a>(dirs: impl Iterator<Item = &'a Path>) -> Vec<String> {
    let mut left = Vec::new();
    for dir in dirs {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) if Instant::now() > deadline => {
                    left.push(format!("cgroup {}: {e}", dir.display()));
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_micros(200)),
            }
        }
    }
    left
}

/// From the directory entry's type, without a stat per control file.
fn is_dir(e: &fs::DirEntry) -> bool {
    e.file_type().is_ok_and(|t| t.is_dir())
}

/// Every job cgroup directory this host has under stockade's parents: (v2?, controller, path).
pub fn all_job_dirs() -> Vec<(Option<&'static str>, PathBuf)> {
    let mut out = Vec::new();
    if let Some(root) = v2_root()
        && let Ok(rd) = fs::read_dir(root.join("stockade"))
    {
        out.extend(rd.flatten().filter(is_dir).map(|e| (None, e.path())));
    }
    for ctrl in V1_CONTROLLERS {
        if let Some(m) = v1_mount(ctrl)
            && let Ok(rd) = fs::read_dir(m.join("stockade"))
        {
            out.extend(rd.flatten().filter(is_dir).map(|e| (Some(*ctrl), e.path())));
        }
    }
    out
}
