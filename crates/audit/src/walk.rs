//! Finds the files to audit: walks directories with ripgrep's `ignore` (so .gitignore holds),
//! and decides from a file's name what it may be before anything is read.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("cannot read {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a file's name says it is. `Sniff` means: read it and look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    Workflow,
    GitlabCi,
    /// Some YAML: Kubernetes, ARC, JCasC, a workflow or GitLab CI, decided by content.
    Yaml,
    Toml,
    Jenkinsfile,
    Groovy,
    /// Named on the command line with a name that says nothing: try every kind.
    Sniff,
}

/// One file to audit, the path shown for it, and the project root of a GitLab CI include chain.
#[derive(Debug, Clone)]
pub struct Item {
    pub path: PathBuf,
    pub display: String,
    pub hint: Hint,
    /// Set when the path was named explicitly: parse errors are always reported then.
    pub explicit: bool,
    pub ci_root: Option<PathBuf>,
}

pub fn hint_for(path: &Path) -> Option<Hint> {
    let name = path.file_name()?.to_str()?;
    let lower = name.to_ascii_lowercase();
    let ext_yaml = lower.ends_with(".yml") || lower.ends_with(".yaml");
    if ext_yaml {
        let s = path.to_string_lossy().replace('\\', "/");
        if s.contains(".github/workflows/") {
            return Some(Hint::Workflow);
        }
        if lower == ".gitlab-ci.yml" || lower.ends_with(".gitlab-ci.yml") || lower.ends_with(".gitlab-ci.yaml") {
            return Some(Hint::GitlabCi);
        }
        return Some(Hint::Yaml);
    }
    if lower.ends_with(".toml") || lower.contains("config.toml") {
        return Some(Hint::Toml);
    }
    if name.contains("Jenkinsfile") || lower.ends_with(".jenkinsfile") {
        return Some(Hint::Jenkinsfile);
    }
    if lower.ends_with(".groovy") {
        return Some(Hint::Groovy);
    }
    None
}

fn display(path: &Path) -> String {
    let s = path.to_string_lossy();
    s.strip_prefix("./").unwrap_or(&s).to_string()
}

/// Expands the command line's paths into items. A missing path is an error for the whole run;
/// an unreadable directory entry becomes a diagnostic the caller reports.
/// Entries a walk could not read: (path shown, reason).
pub type WalkProblems = Vec<(String, String)>;

pub fn collect(paths: &[PathBuf]) -> Result<(Vec<Item>, WalkProblems), WalkError> {
    let mut items = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|source| WalkError::Open {
            path: p.clone(),
            source,
        })?;
        if meta.is_file() {
            items.push(Item {
                path: p.clone(),
                display: display(p),
                hint: hint_for(p).unwrap_or(Hint::Sniff),
                explicit: true,
                ci_root: None,
            });
            continue;
        }
        let walker = ignore::WalkBuilder::new(p)
            .hidden(false)
            .require_git(false)
            .git_global(false)
            .parents(true)
            .filter_entry(|e| e.file_name() != ".git")
            .build();
        for entry in walker {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let where_ = match &e {
                        ignore::Error::WithPath { path, .. } => display(path),
                        _ => display(p),
                    };
                    errors.push((where_, e.to_string()));
                    continue;
                }
            };
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let path = entry.into_path();
            if let Some(hint) = hint_for(&path) {
                items.push(Item {
                    display: display(&path),
                    path,
                    hint,
                    explicit: false,
                    ci_root: None,
                });
            }
        }
    }
    // A file named on the command line and found again by a walk is read once.
    if paths.len() > 1 {
        let mut seen = std::collections::HashSet::new();
        items.retain(|i| seen.insert(std::fs::canonicalize(&i.path).unwrap_or_else(|_| i.path.clone())));
    }
    Ok((items, errors))
}
