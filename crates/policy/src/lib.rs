//! The job policy: one TOML file whose schema is the source of truth, and an embedded default
//! so that `stockade run -- CMD` works with no file at all. Every error names the file, line and key.

pub mod context;
pub mod pools;
pub mod schema;
pub mod units;

pub use context::{ContextError, JobContext};
pub use pools::{Check, Decision, Pool, PoolError, gate};
pub use schema::{Bind, Filesystem, Job, JobId, Limits, Monitor, MonitorMode, Policy, Security, Severity};
pub use units::{Dur, Size};

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The embedded default policy, with a comment on every key.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("reading policy {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {key}: {message}")]
    Parse {
        file: String,
        line: usize,
        key: String,
        message: String,
    },
}

impl Policy {
    /// The embedded default policy (the strictest sensible one).
    pub fn default_policy() -> Policy {
        parse(DEFAULT_TOML, "<default policy>").expect("the embedded default policy is valid")
    }

    /// A stable digest of the effective policy, recorded in job reports.
    pub fn digest(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let d = Sha256::digest(&json);
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }
}

/// Reads and validates a policy file.
pub fn load(path: &Path) -> Result<Policy, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses and validates policy text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Policy, PolicyError> {
    let policy: Policy = toml::from_str(text).map_err(|e| {
        let (line, key) = match e.span() {
            Some(span) => locate_span(text, span.start),
            None => (0, String::new()),
        };
        PolicyError::Parse {
            file: file.to_string(),
            line,
            key: if key.is_empty() { "(document)".into() } else { key },
            message: e.message().trim().replace('\n', " "),
        }
    })?;
    validate(&policy).map_err(|(key, message)| PolicyError::Parse {
        file: file.to_string(),
        line: locate_key(text, &key),
        key,
        message,
    })?;
    Ok(policy)
}

/// Checks the values that the types alone cannot: relations and absolute paths.
fn validate(p: &Policy) -> Result<(), (String, String)> {
    let err = |k: &str, m: String| Err((k.to_string(), m));
    if p.version != 1 {
        return err(
            "version",
            format!(
                "unsupported policy version {} (this stockade reads version 1)",
                p.version
            ),
        );
    }
    if let Err(e) = p.egress.validate() {
        let msg = e.to_string();
        let (key, rest) = msg.split_once(": ").unwrap_or(("egress", &msg));
        return err(key, rest.to_string());
    }
    if !(p.limits.cpus.is_finite() && p.limits.cpus >= 0.0) {
        return err(
            "limits.cpus",
            format!("{} is not a CPU count (0 for no limit)", p.limits.cpus),
        );
    }
    if p.limits.pids == Some(0) {
        return err("limits.pids", "must be at least 1".into());
    }
    if p.limits.open_files < 16 {
        return err(
            "limits.open_files",
            format!("{} is too low to start a process (at least 16)", p.limits.open_files),
        );
    }
    if p.job.kill_grace.0 > std::time::Duration::from_secs(600) {
        return err("job.kill_grace", "at most 10m".into());
    }
    if !p.job.hostname.is_empty()
        && (p.job.hostname.len() > 63
            || !p
                .job
                .hostname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
    {
        return err("job.hostname", format!("{:?} is not a valid hostname", p.job.hostname));
    }
    for name in p.job.env.keys().chain(p.job.env_pass.iter()) {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return err("job.env", format!("{name:?} is not a variable name"));
        }
    }
    let abs = |k: &str, path: &Path| -> Result<(), (String, String)> {
        if path.is_absolute() {
            Ok(())
        } else {
            Err((k.to_string(), format!("{} must be an absolute path", path.display())))
        }
    };
    abs("filesystem.rootfs", &p.filesystem.rootfs)?;
    for h in &p.filesystem.hidden {
        abs("filesystem.hidden", h)?;
    }
    for b in &p.filesystem.binds {
        abs("filesystem.binds", &b.source)?;
        if let Some(t) = &b.target {
            abs("filesystem.binds", t)?;
        }
    }
    for w in &p.security.writable {
        abs("security.writable", w)?;
    }
    let f = p.monitor.cpu_anomaly_factor;
    if !(f.is_finite() && (1.0..=100.0).contains(&f)) {
        return err(
            "monitor.cpu_anomaly_factor",
            format!("{f} is not a factor between 1 and 100 (1.5: half again the baseline's peak)"),
        );
    }
    for g in &p.monitor.protect_source {
        if g == "git" {
            continue;
        }
        if g.is_empty() || g.starts_with('/') || g.split('/').any(|c| c == "..") {
            return err(
                "monitor.protect_source",
                format!("{g:?}: a glob relative to the workspace (or \"git\"), inside it"),
            );
        }
        if let Err(e) = globset::Glob::new(g) {
            return err("monitor.protect_source", format!("{g:?}: {}", e.kind()));
        }
    }
    pools::validate_pools(p)?;
    Ok(())
}

/// 1-based line of a byte offset, and the dotted key written on or governing that line.
fn locate_span(text: &str, offset: usize) -> (usize, String) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let mut table = String::new();
    for l in before.lines() {
        let t = l.trim();
        if t.starts_with('[') {
            table = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
    }
    let cur = text.lines().nth(line - 1).unwrap_or("");
    let key = match cur.split_once('=') {
        Some((k, _)) if !cur.trim_start().starts_with('[') => k.trim().trim_matches('"').to_string(),
        _ => String::new(),
    };
    let full = match (table.is_empty(), key.is_empty()) {
        (true, _) => key,
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    };
    (line, full)
}

/// 1-based line where `section.key` is written (0 when it is not written: a default).
fn locate_key(text: &str, dotted: &str) -> usize {
    let (section, key) = dotted.rsplit_once('.').unwrap_or(("", dotted));
    let mut table = String::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            table = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            // A whole table can be the culprit (an unknown pool section).
            if table == dotted {
                return i + 1;
            }
            continue;
        }
        if let Some((k, _)) = t.split_once('=')
            && table == section
            && k.trim() == key
        {
            return i + 1;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_parses_and_is_strict() {
        let p = Policy::default_policy();
        assert_eq!(p.job.uid.0, 1000);
        assert!(p.security.seccomp && p.security.landlock);
        assert!(!p.filesystem.writable_root);
        assert_eq!(p.limits.pids, Some(1024));
        assert!(p.digest().starts_with("sha256:"));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = parse("[limits]\nmemory = \"2X\"\n", "p.toml").unwrap_err().to_string();
        assert!(e.starts_with("p.toml:2: limits.memory: invalid size"), "{e}");
        let e = parse("[job]\nuid = 0\n", "p.toml").unwrap_err().to_string();
        assert!(e.starts_with("p.toml:2: job.uid: must not be 0"), "{e}");
        let e = parse("[job]\nfoo = 1\n", "p.toml").unwrap_err().to_string();
        assert!(e.contains("p.toml:2: job.foo: unknown field `foo`"), "{e}");
        let e = parse("[limits]\npids = \"many\"\n", "p.toml").unwrap_err().to_string();
        assert!(e.starts_with("p.toml:2: limits.pids:"), "{e}");
        let e = parse("[limits]\ncpus = -1.0\n", "p.toml").unwrap_err().to_string();
        assert_eq!(e, "p.toml:2: limits.cpus: -1 is not a CPU count (0 for no limit)");
        let e = parse("[egress]\nmode = \"allowlist\"\nallow = [\"*.*\"]\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p.toml:3: egress.allow: entry \"*.*\""), "{e}");
        let e = parse("[filesystem]\nhidden = [\"relative\"]\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("p.toml:2: filesystem.hidden: relative must be an absolute path"),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }

    #[test]
    fn monitor_section_defaults_and_errors() {
        let p = Policy::default_policy();
        assert_eq!(p.monitor.mode, MonitorMode::Audit);
        assert_eq!(p.monitor.block_at, Severity::High);
        assert_eq!(p.monitor.cpu_anomaly_factor, 1.5);
        assert!(p.monitor.expected_duration.is_none() && p.monitor.protect_source.is_empty());
        let p = parse(
            "[monitor]\nmode = \"block\"\nblock_at = \"medium\"\nexpected_duration = \"90s\"\ncpu_anomaly_factor = 3.0\nprotect_source = [\"git\", \"src/**/*.rs\"]\n",
            "p.toml",
        )
        .unwrap();
        assert_eq!(p.monitor.mode, MonitorMode::Block);
        assert_eq!(p.monitor.block_at, Severity::Medium);
        assert_eq!(p.monitor.expected_duration.unwrap().0.as_secs(), 90);
        assert_eq!(p.monitor.cpu_anomaly_factor, 3.0);
        assert_eq!(p.monitor.protect_source, ["git", "src/**/*.rs"]);
        let e = |t: &str| parse(t, "p.toml").unwrap_err().to_string();
        assert!(
            e("[monitor]\nmode = \"watch\"\n").starts_with("p.toml:2: monitor.mode: unknown variant `watch`"),
            "{}",
            e("[monitor]\nmode = \"watch\"\n")
        );
        assert!(
            e("[monitor]\n\nblock_at = \"severe\"\n")
                .starts_with("p.toml:3: monitor.block_at: unknown variant `severe`")
        );
        assert!(e("[monitor]\nexpected_duration = \"soon\"\n").starts_with("p.toml:2: monitor.expected_duration:"));
        assert_eq!(
            e("[monitor]\nexpected_duration = \"0s\"\n"),
            "p.toml:2: monitor.expected_duration: duration \"0s\" must be greater than zero"
        );
        assert!(
            e("[monitor]\ncpu_anomaly_factor = 0.5\n")
                .starts_with("p.toml:2: monitor.cpu_anomaly_factor: 0.5 is not a factor between 1 and 100")
        );
        assert!(
            e("[monitor]\nprotect_source = [\"src/[\"]\n").starts_with("p.toml:2: monitor.protect_source: \"src/[\": ")
        );
        assert!(
            e("[monitor]\nprotect_source = [\"/etc/*\"]\n").starts_with("p.toml:2: monitor.protect_source: \"/etc/*\"")
        );
        assert!(e("[monitor]\nmod = \"block\"\n").starts_with("p.toml:2: monitor.mod: unknown field `mod`"));
        // A pool may watch its jobs more strictly.
        let p = parse(
            "default_pool = \"ci\"\n[pools.ci]\n[pools.prod]\n[pools.prod.monitor]\nmode = \"block\"\n",
            "p.toml",
        )
        .unwrap();
        assert_eq!(p.for_pool("prod").unwrap().monitor.mode, MonitorMode::Block);
        assert_eq!(p.for_pool("ci").unwrap().monitor.mode, MonitorMode::Audit);
    }
}
