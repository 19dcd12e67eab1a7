//! Baselines: what earlier, trusted runs of the same pipeline did (executables, destinations,
//! paths written outside the workspace, duration and CPU), learned from their reports.

use crate::report::JobReport;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

pub const BASELINE_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("no reports to learn from")]
    NoReports,
    #[error("{0}: the report has no process tree (was the job run with monitoring on?)")]
    NotMonitored(String),
    #[error("{0}: the job was blocked ({1}); a baseline learns only from runs that passed")]
    Blocked(String, String),
    #[error("{path}: not a baseline: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: baseline version {found} (this stockade reads {BASELINE_VERSION})")]
    Version { path: String, found: u32 },
}

/// Nearest-rank percentiles of one figure over the learned runs.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Spread {
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Spread::default();
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Spread {
            p50: rank(0.50),
            p95: rank(0.95),
            max: v[v.len() - 1],
        }
    }
}

/// The readable JSON a pipeline's jobs are compared against (`stockade run --baseline`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Baseline {
    pub version: u32,
    /// How many reports it was learned from, and which jobs.
    pub runs: usize,
    pub jobs: Vec<String>,
    /// The command of the first run, for the reader.
    pub command: Vec<String>,
    /// Executables run, normalized (see `normalize_path`).
    pub executables: BTreeSet<String>,
    /// Names the job reached through egress.
    pub domains: BTreeSet<String>,
    /// Places written outside the workspace: the mount and the entry under it (`path_key`).
    pub paths_outside_workspace: BTreeSet<String>,
    pub duration_ms: Spread,
    pub cpu_ms: Spread,
    /// Highest CPU use over a 5-second window, in cores.
    pub cpu_peak_cores: Spread,
}

impl Baseline {
    pub fn parse(path: &str, text: &str) -> Result<Baseline, BaselineError> {
        let b: Baseline = serde_json::from_str(text).map_err(|source| BaselineError::Parse {
            path: path.to_string(),
            source,
        })?;
        if b.version != BASELINE_VERSION {
            return Err(BaselineError::Version {
                path: path.to_string(),
                found: b.version,
            });
        }
        Ok(b)
    }

    /// Wall time past which a run is anomalous: the p95 times `factor`, and never less than
    /// 10 s above it (short jobs jitter by more than their own length).
    pub fn duration_limit_ms(&self, factor: f64) -> f64 {
        (self.duration_ms.p95 * factor).max(self.duration_ms.p95 + 10_000.0)
    }

    /// Sustained CPU use (cores) past which a run looks like a miner: `factor` times the learned
    /// peak (the policy's `cpu_anomaly_factor`, 1.5 by default), and at least a quarter core more.
    pub fn cpu_limit_cores(&self, factor: f64) -> f64 {
        (self.cpu_peak_cores.p95 * factor).max(self.cpu_peak_cores.p95 + 0.25)
    }

    pub fn knows_executable(&self, exe: &str, workspace: Option<&str>) -> bool {
        self.executables.contains(&normalize_path(exe, workspace))
    }

    pub fn knows_domain(&self, name: &str) -> bool {
        self.domains.contains(&normalize_domain(name))
    }

    pub fn knows_path(&self, path: &str) -> bool {
        self.paths_outside_workspace.contains(&path_key(path))
    }
}

/// How a report names the baseline it was compared with: path and content digest.
pub fn label(path: &str, text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{path} (sha256:{hex}…)")
}

/// Learns a baseline from reports of earlier runs: `(name for errors, report)`.
pub fn learn(reports: &[(String, JobReport)]) -> Result<Baseline, BaselineError> {
    if reports.is_empty() {
        return Err(BaselineError::NoReports);
    }
    let mut b = Baseline {
        version: BASELINE_VERSION,
        runs: reports.len(),
        jobs: Vec::new(),
        command: reports[0].1.command.clone(),
        executables: BTreeSet::new(),
        domains: BTreeSet::new(),
        paths_outside_workspace: BTreeSet::new(),
        duration_ms: Spread::default(),
        cpu_ms: Spread::default(),
        cpu_peak_cores: Spread::default(),
    };
    let (mut dur, mut cpu, mut peak) = (Vec::new(), Vec::new(), Vec::new());
    for (name, r) in reports {
        let Some(info) = &r.observed.monitor else {
            return Err(BaselineError::NotMonitored(name.clone()));
        };
        if let Some(bl) = &info.blocked {
            return Err(BaselineError::Blocked(name.clone(), bl.id.clone()));
        }
        b.jobs.push(r.job_id.clone());
        let ws = info.workspace.as_deref();
        for p in &r.observed.processes {
            if let Some(exe) = &p.exe
                && p.has("exec")
            {
                b.executables.insert(normalize_path(exe, ws));
            }
        }
        for d in egress_names(&r.egress, &["allowed", "flagged"]) {
            b.domains.insert(normalize_domain(&d));
        }
        for f in &r.observed.files.outside_workspace {
            b.paths_outside_workspace.insert(path_key(&f.path));
        }
        for e in r.observed.events.iter().filter(|e| e.kind == "file-write") {
            b.paths_outside_workspace.insert(path_key(&e.subject));
        }
        dur.push(r.resources.wall_ms as f64);
        if let Some(c) = r.resources.cpu_ms {
            cpu.push(c as f64);
        }
        peak.push(peak_cores(r));
    }
    b.duration_ms = Spread::of(&dur);
    b.cpu_ms = Spread::of(&cpu);
    b.cpu_peak_cores = Spread::of(&peak);
    Ok(b)
}

/// The highest 5-second CPU window of a run, or its average when it was too short for one.
pub fn peak_cores(r: &JobReport) -> f64 {
    let windows = r
        .observed
        .monitor
        .as_ref()
        .map(|m| m.cpu_windows.as_slice())
        .unwrap_or(&[]);
    let avg = match (r.resources.cpu_ms, r.resources.wall_ms) {
        (Some(c), w) if w > 0 => c as f64 / w as f64,
        _ => 0.0,
    };
    windows.iter().map(|w| *w as f64).fold(avg, f64::max)
}

/// Names of egress events with one of these verdicts (`allowed`, `refused`, `flagged`).
pub fn egress_names(egress: &serde_json::Value, verdicts: &[&str]) -> Vec<String> {
    let events = egress
        .get("events")
        .and_then(|e| e.as_array())
        .map(|v| v.as_slice())
        .unwrap_or(&[]);
    events
        .iter()
        .filter(|e| {
            e.get("verdict")
                .and_then(|v| v.as_str())
                .is_some_and(|v| verdicts.contains(&v))
        })
        .filter_map(|e| e.get("name").and_then(|n| n.as_str()).map(String::from))
        .collect()
}

pub fn normalize_domain(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A path with the job's workspace as `$WORKSPACE` and random-looking parts (temp names, hashes)
/// as `*`, digit runs as `#`, so that the same pipeline's runs compare equal.
pub fn normalize_path(path: &str, workspace: Option<&str>) -> String {
    let (prefix, rest) = match workspace.filter(|w| !w.is_empty() && *w != "/") {
        Some(w) if path == w => return "$WORKSPACE".into(),
        Some(w) if path.starts_with(w) && path[w.len()..].starts_with('/') => ("$WORKSPACE", &path[w.len()..]),
        _ => ("", path),
    };
    let mut out = String::from(prefix);
    for comp in rest.split('/').filter(|c| !c.is_empty()) {
        out.push('/');
        out.push_str(&normalize_component(comp));
    }
    if out.is_empty() { "/".into() } else { out }
}

/// Prefixes of temporary directories that tools make with random suffixes (rustc, gcc, mktemp,
/// Python's tempfile, pip, pytest, go), whatever the suffix looks like.
const TEMP_PREFIXES: &[&str] = &["rustc", "tmp", "cc", "pip-", "pytest-", "go-build", "npm-", "tmp."];

/// The baseline key of a path written outside the workspace: its mount (`/tmp`) and the entry
/// under it, normalized; a file right in the mount, or a temporary name, is `*`.
pub fn path_key(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let (root, rest) = match parts.as_slice() {
        [] => return "/".into(),
        ["var", "tmp", rest @ ..] => ("var/tmp", rest),
        ["dev", "shm", rest @ ..] => ("dev/shm", rest),
        [first, rest @ ..] => (*first, rest),
    };
    let second = match rest {
        [] => return format!("/{root}"),
        [_] => "*".to_string(),
        [d, ..] => {
            let temp = TEMP_PREFIXES.iter().find(|p| {
                d.len() >= p.len() + 6 && d.starts_with(*p) && d[p.len()..].bytes().all(|b| b.is_ascii_alphanumeric())
            });
            match temp {
                Some(p) => format!("{p}*"),
                None => normalize_component(d),
            }
        }
    };
    format!("/{root}/{second}")
}

fn normalize_component(c: &str) -> String {
    let mut out = String::new();
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        if token.is_empty() {
            return;
        }
        if random_looking(token) {
            out.push('*');
        } else if token.bytes().all(|b| b.is_ascii_digit()) {
            out.push('#');
        } else {
            out.push_str(token);
        }
        token.clear();
    };
    for ch in c.chars() {
        if matches!(ch, '.' | '-' | '_' | '+' | '~') {
            flush(&mut token, &mut out);
            out.push(ch);
        } else {
            token.push(ch);
        }
    }
    flush(&mut token, &mut out);
    out
}

fn random_looking(t: &str) -> bool {
    if t.len() < 6 {
        return false;
    }
    let digits = t.bytes().filter(|b| b.is_ascii_digit()).count();
    let letters = t.bytes().filter(|b| b.is_ascii_alphabetic()).count();
    let upper = t.bytes().filter(|b| b.is_ascii_uppercase()).count();
    let lower = t.bytes().filter(|b| b.is_ascii_lowercase()).count();
    // A word followed by a version number (python311, gcc12) is a name, not noise.
    let word_then_number = {
        let split = t.find(|c: char| c.is_ascii_digit()).unwrap_or(t.len());
        t[..split].bytes().all(|b| b.is_ascii_alphabetic()) && t[split..].bytes().all(|b| b.is_ascii_digit())
    };
    let hex = t.bytes().all(|b| b.is_ascii_hexdigit());
    (digits >= 2 && letters >= 2 && !word_then_number)
        || (hex && t.len() >= 8 && digits >= 1)
        || (upper >= 2 && lower >= 2 && t.len() >= 8 && !t[1..].bytes().all(|b| b.is_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_and_hashes_normalize_alike() {
        assert_eq!(normalize_path("/tmp/tmp.4TyQpZ8kLm/x", None), "/tmp/tmp.*/x");
        assert_eq!(normalize_path("/tmp/tmp.Ab9cD2eFgh/x", None), "/tmp/tmp.*/x");
        assert_eq!(
            normalize_path(
                "/w/target/debug/build/foo-1a2b3c4d5e6f7a8b/build-script-build",
                Some("/w")
            ),
            "$WORKSPACE/target/debug/build/foo-*/build-script-build"
        );
        assert_eq!(normalize_path("/usr/bin/python3.11", None), "/usr/bin/python3.#");
        assert_eq!(normalize_path("/usr/bin/cc", None), "/usr/bin/cc");
        assert_eq!(
            normalize_path("/tmp/pytest-of-user/pytest-3", None),
            "/tmp/pytest-of-user/pytest-#"
        );
        assert_eq!(path_key("/tmp/.cache/pip/http/a/b"), "/tmp/.cache");
        assert_eq!(path_key("/tmp/ccabcdef.o"), "/tmp/*");
        assert_eq!(path_key("/tmp/rustcabcdef/symbols.o"), "/tmp/rustc*");
        assert_eq!(path_key("/tmp/rustcA1b2C3/symbols.o"), "/tmp/rustc*");
        assert_eq!(path_key("/var/tmp/x/y"), "/var/tmp/x");
        assert_eq!(path_key("/run"), "/run");
        // A workspace that is a prefix of another path is not that path's parent.
        assert_eq!(normalize_path("/work2/x", Some("/work")), "/work2/x");
    }

    #[test]
    fn spread_uses_nearest_rank() {
        let s = Spread::of(&[10.0, 30.0, 20.0]);
        assert_eq!((s.p50, s.p95, s.max), (20.0, 30.0, 30.0));
        assert_eq!(Spread::of(&[]), Spread::default());
    }

    #[test]
    fn limits_have_floors() {
        assert!(matches!(learn(&[]), Err(BaselineError::NoReports)));
        let b = Baseline {
            version: 1,
            runs: 2,
            jobs: vec![],
            command: vec![],
            executables: BTreeSet::new(),
            domains: BTreeSet::new(),
            paths_outside_workspace: BTreeSet::new(),
            duration_ms: Spread {
                p50: 100.0,
                p95: 200.0,
                max: 200.0,
            },
            cpu_ms: Spread::default(),
            cpu_peak_cores: Spread {
                p50: 0.1,
                p95: 0.2,
                max: 0.2,
            },
        };
        assert_eq!(b.duration_limit_ms(2.0), 10_200.0);
        assert!((b.cpu_limit_cores(1.5) - 0.45).abs() < 1e-9);
        assert!((b.cpu_limit_cores(3.0) - 0.6).abs() < 1e-9);
    }
}
