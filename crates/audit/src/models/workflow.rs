//! GitHub Actions workflows: triggers, jobs, the runners a job asks for (with `${{ matrix.* }}`
//! resolved where the matrix is literal), containers, services and `run:` steps.

use crate::config::AuditConfig;
use crate::yaml::Node;

pub struct Workflow<'a> {
    pub root: &'a Node<'a>,
}

pub struct Job<'a> {
    pub id: &'a str,
    pub key: &'a Node<'a>,
    pub node: &'a Node<'a>,
}

/// One label a job may ask for, with the node it came from (a matrix value or `runs-on`).
#[derive(Debug, Clone)]
pub struct Label<'a> {
    pub name: String,
    pub node: &'a Node<'a>,
}

/// What `runs-on` asks for; several alternatives when it comes from a matrix.
pub struct RunsOn<'a> {
    pub node: &'a Node<'a>,
    pub alternatives: Vec<Vec<Label<'a>>>,
    /// `runs-on: {group: ...}`: a runner group restricts which repositories reach the runners.
    pub group: Option<&'a Node<'a>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hosting {
    GitHubHosted,
    SelfHosted,
    /// Taken from an expression we cannot evaluate.
    Unknown,
}

impl<'a> Workflow<'a> {
    pub fn new(root: &'a Node<'a>) -> Workflow<'a> {
        Workflow { root }
    }

    /// Event names with their nodes, whichever of the three `on:` forms is used.
    pub fn triggers(&self) -> Vec<(&'a str, &'a Node<'a>)> {
        let Some(on) = self.root.get("on") else {
            return Vec::new();
        };
        match &on.kind {
            crate::yaml::Kind::Scalar(..) => on.as_str().map(|s| vec![(s, on)]).unwrap_or_default(),
            crate::yaml::Kind::Seq(items) => items.iter().filter_map(|n| n.as_str().map(|s| (s, n))).collect(),
            crate::yaml::Kind::Map(m) => m.iter().filter_map(|(k, _)| k.as_str().map(|s| (s, k))).collect(),
        }
    }

    pub fn jobs(&self) -> Vec<Job<'a>> {
        let Some(jobs) = self.root.get("jobs") else {
            return Vec::new();
        };
        jobs.as_map()
            .unwrap_or(&[])
            .iter()
            .filter_map(|(k, v)| {
                Some(Job {
                    id: k.as_str()?,
                    key: k,
                    node: v,
                })
            })
            .collect()
    }
}

impl<'a> Job<'a> {
    pub fn runs_on(&self) -> Option<RunsOn<'a>> {
        let node = self.node.get("runs-on")?;
        let mut group = None;
        let labels_node: Option<&'a Node<'a>> = if node.as_map().is_some() {
            group = node.get("group");
            node.get("labels")
        } else {
            Some(node)
        };
        let mut alternatives: Vec<Vec<Label<'a>>> = vec![Vec::new()];
        if let Some(ln) = labels_node {
            for (text, n) in ln.strings() {
                let choices = self.resolve(text, n);
                // Each label multiplies the alternatives by its possible values.
                let mut next = Vec::new();
                for alt in &alternatives {
                    for choice in &choices {
                        let mut a = alt.clone();
                        a.extend(choice.iter().cloned());
                        next.push(a);
                    }
                }
                alternatives = next;
                if alternatives.len() > 256 {
                    alternatives.truncate(256);
                }
            }
        }
        Some(RunsOn {
            node,
            alternatives,
            group,
        })
    }

    /// The possible label lists that one `runs-on` entry stands for.
    fn resolve(&self, text: &str, n: &'a Node<'a>) -> Vec<Vec<Label<'a>>> {
        let t = text.trim();
        let Some(key) = t
            .strip_prefix("${{")
            .and_then(|r| r.strip_suffix("}}"))
            .map(str::trim)
            .and_then(|e| e.strip_prefix("matrix."))
            .filter(|k| k.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_'))
        else {
            return vec![vec![Label {
                name: t.to_string(),
                node: n,
            }]];
        };
        let Some(matrix) = self.node.path(&["strategy", "matrix"]) else {
            return vec![vec![unknown(t, n)]];
        };
        let mut out: Vec<Vec<Label<'a>>> = Vec::new();
        let values = matrix
            .get(key)
            .map(|v| v.items().collect::<Vec<_>>())
            .unwrap_or_default();
        let include = matrix
            .get("include")
            .map(|inc| inc.items().filter_map(|i| i.get(key)).collect::<Vec<_>>())
            .unwrap_or_default();
        if matrix.get(key).is_some_and(|v| v.as_seq().is_none()) {
            return vec![vec![unknown(t, n)]];
        }
        for v in values.into_iter().chain(include) {
            match &v.kind {
                crate::yaml::Kind::Seq(_) => out.push(
                    v.strings()
                        .into_iter()
                        .map(|(s, node)| Label {
                            name: s.to_string(),
                            node,
                        })
                        .collect(),
                ),
                crate::yaml::Kind::Scalar(..) => out.push(vec![Label {
                    name: v.as_str().unwrap_or_default().to_string(),
                    node: v,
                }]),
                crate::yaml::Kind::Map(_) => {
                    // `runs-on: ${{ matrix.runner }}` with `runner: {group: .., labels: ..}`
                    match v.get("labels") {
                        Some(l) => out.push(
                            l.strings()
                                .into_iter()
                                .map(|(s, node)| Label {
                                    name: s.to_string(),
                                    node,
                                })
                                .collect(),
                        ),
                        None => out.push(vec![unknown(t, n)]),
                    }
                }
            }
        }
        if out.is_empty() {
            out.push(vec![unknown(t, n)]);
        }
        out
    }

    /// `container:` and every `services.*` entry, with a name for messages.
    pub fn containers(&self) -> Vec<(String, &'a Node<'a>)> {
        let mut out = Vec::new();
        if let Some(c) = self.node.get("container") {
            out.push(("container".to_string(), c));
        }
        if let Some(s) = self.node.get("services") {
            for (k, v) in s.entries() {
                out.push((format!("service {}", k.as_str().unwrap_or("?")), v));
            }
        }
        out
    }

    /// Every `run:` script of the job's steps.
    pub fn run_scripts(&self) -> Vec<&'a Node<'a>> {
        self.node
            .get("steps")
            .map(|s| s.items().filter_map(|st| st.get("run")).collect())
            .unwrap_or_default()
    }
}

fn unknown<'a>(t: &str, n: &'a Node<'a>) -> Label<'a> {
    Label {
        name: format!("\u{0}{t}"),
        node: n,
    }
}

/// `*` matches any run of characters; labels compare case-insensitively, as GitHub does.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.to_ascii_lowercase();
    let t = text.to_ascii_lowercase();
    let parts: Vec<&str> = p.split('*').collect();
    if parts.len() == 1 {
        return p == t;
    }
    let mut rest = t.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

pub fn is_expression(label: &str) -> bool {
    label.starts_with('\u{0}') || label.contains("${{")
}

pub fn is_hosted_label(label: &str, cfg: &AuditConfig) -> bool {
    let l = label.to_ascii_lowercase();
    let builtin = ["ubuntu-", "windows-", "macos-"].iter().any(|p| l.starts_with(p));
    builtin || cfg.hosted_labels.iter().any(|p| glob_match(p, label))
}

/// How one alternative of `runs-on` is hosted.
pub fn hosting(labels: &[Label<'_>], cfg: &AuditConfig) -> Hosting {
    if labels.is_empty() {
        return Hosting::Unknown;
    }
    if labels
        .iter()
        .any(|l| cfg.self_hosted_labels.iter().any(|s| glob_match(s, &l.name)))
    {
        return Hosting::SelfHosted;
    }
    // An expression (even `ubuntu-${{ x }}`) stays unknown unless its prefix says hosted.
    if labels.iter().any(|l| is_expression(&l.name)) {
        let all_hosted = labels
            .iter()
            .all(|l| !l.name.starts_with('\u{0}') && is_hosted_label(&l.name, cfg));
        return if all_hosted {
            Hosting::GitHubHosted
        } else {
            Hosting::Unknown
        };
    }
    if labels.iter().all(|l| is_hosted_label(&l.name, cfg)) {
        Hosting::GitHubHosted
    } else {
        Hosting::SelfHosted
    }
}

/// Labels that every self-hosted runner of an organisation tends to carry: they select no
/// dedicated pool.
pub fn is_generic_label(label: &str, cfg: &AuditConfig) -> bool {
    const GENERIC: &[&str] = &[
        "self-hosted",
        "linux",
        "windows",
        "macos",
        "osx",
        "x64",
        "x86",
        "x86_64",
        "amd64",
        "arm",
        "arm64",
        "aarch64",
    ];
    GENERIC.contains(&label.to_ascii_lowercase().as_str())
        || cfg.self_hosted_labels.iter().any(|s| glob_match(s, label))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("ubuntu-*", "Ubuntu-22.04"));
        assert!(glob_match("*-xl-*", "linux-xl-gpu"));
        assert!(!glob_match("gpu", "gpu2"));
    }

    #[test]
    fn matrix_runs_on_resolves() {
        let text = "jobs:\n  a:\n    runs-on: ${{ matrix.os }}\n    strategy:\n      matrix:\n        os: [ubuntu-latest, [self-hosted, gpu]]\n";
        let docs = crate::yaml::parse_stream(text, 0).unwrap();
        let wf = Workflow::new(&docs[0]);
        let jobs = wf.jobs();
        let ro = jobs[0].runs_on().unwrap();
        let cfg = AuditConfig::default();
        let kinds: Vec<_> = ro.alternatives.iter().map(|a| hosting(a, &cfg)).collect();
        assert_eq!(kinds, [Hosting::GitHubHosted, Hosting::SelfHosted]);
    }
}
