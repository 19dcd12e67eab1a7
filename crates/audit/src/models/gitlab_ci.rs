//! `.gitlab-ci.yml` and the files it includes: jobs (hidden templates apart), `extends` within
//! the file, variables, services and scripts, and the local includes to read next.

use crate::yaml::Node;

/// Top-level keys that are not jobs.
const GLOBAL_KEYS: &[&str] = &[
    "stages",
    "variables",
    "include",
    "default",
    "workflow",
    "image",
    "services",
    "before_script",
    "after_script",
    "cache",
    "spec",
    "pages",
];

/// An `extends` names a job that is not in this file (an include): the value is unknown here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefinedElsewhere;

pub struct GitlabCi<'a> {
    pub root: &'a Node<'a>,
}

pub struct CiJob<'a> {
    pub name: &'a str,
    pub key: &'a Node<'a>,
    pub node: &'a Node<'a>,
}

/// Whether a document looks like GitLab CI (used when the file name does not say).
pub fn looks_like_gitlab_ci(doc: &Node<'_>) -> bool {
    let Some(m) = doc.as_map() else { return false };
    if doc.get("jobs").is_some() && doc.get("on").is_some() {
        return false;
    }
    let has_job = m.iter().any(|(k, v)| {
        k.as_str().is_some_and(|k| !GLOBAL_KEYS.contains(&k))
            && v.as_map().is_some()
            && (v.get("script").is_some()
                || v.get("extends").is_some()
                || v.get("trigger").is_some()
                || (v.get("stage").is_some() && v.get("rules").is_some()))
    });
    has_job || (doc.get("stages").is_some() && doc.get("include").is_some())
}

impl<'a> GitlabCi<'a> {
    pub fn jobs(&self) -> Vec<CiJob<'a>> {
        self.root
            .as_map()
            .unwrap_or(&[])
            .iter()
            .filter_map(|(k, v)| {
                let name = k.as_str()?;
                if GLOBAL_KEYS.contains(&name) && name != "pages" || name.starts_with('.') {
                    return None;
                }
                v.as_map()?;
                Some(CiJob { name, key: k, node: v })
            })
            .collect()
    }

    /// Hidden jobs and jobs of this file, by name, for `extends`.
    pub fn template(&self, name: &str) -> Option<&'a Node<'a>> {
        self.root.get(name).filter(|n| n.as_map().is_some())
    }

    /// The value of `key` in a job, following `extends` (last wins, as GitLab merges) and then
    /// `default:`. `None` inside means "set nowhere in this file"; `Err` means an `extends` names
    /// a job in another file, so the answer is not known here.
    pub fn lookup(&self, job: &'a Node<'a>, key: &str) -> Result<Option<&'a Node<'a>>, DefinedElsewhere> {
        self.lookup_depth(job, key, 0)
            .map(|v| v.or_else(|| self.root.path(&["default", key])))
    }

    fn lookup_depth(
        &self,
        job: &'a Node<'a>,
        key: &str,
        depth: usize,
    ) -> Result<Option<&'a Node<'a>>, DefinedElsewhere> {
        if let Some(v) = job.get(key) {
            return Ok(Some(v));
        }
        if depth > 10 {
            return Err(DefinedElsewhere);
        }
        let Some(ext) = job.get("extends") else {
            return Ok(None);
        };
        let mut parents: Vec<&str> = ext.strings().into_iter().map(|(s, _)| s).collect();
        parents.reverse();
        for p in parents {
            let Some(t) = self.template(p) else {
                return Err(DefinedElsewhere);
            };
            if let Some(v) = self.lookup_depth(t, key, depth + 1)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// `include:` entries that name local files (`local: path` or a bare path).
    pub fn local_includes(&self) -> Vec<String> {
        let Some(inc) = self.root.get("include") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut push = |s: &str| {
            let s = s.trim();
            if !s.contains("://") && !s.contains('$') && !s.contains('*') && !s.is_empty() {
                out.push(s.to_string());
            }
        };
        let items: Vec<&Node<'_>> = if inc.as_seq().is_some() {
            inc.items().collect()
        } else {
            vec![inc]
        };
        for item in items {
            if let Some(s) = item.as_str() {
                push(s);
            } else if let Some(l) = item.get("local").and_then(Node::as_str) {
                push(l);
            }
        }
        out
    }
}

/// Every `variables:` mapping of the file (global, `default`, jobs, services).
pub fn variable_maps<'a>(root: &'a Node<'a>) -> Vec<&'a Node<'a>> {
    let mut out = Vec::new();
    if let Some(v) = root.get("variables") {
        out.push(v);
    }
    for (_, v) in root.entries() {
        if let Some(vars) = v.get("variables") {
            out.push(vars);
        }
        for key in ["services"] {
            for s in v.get(key).map(|n| n.items()).into_iter().flatten() {
                if let Some(vars) = s.get("variables") {
                    out.push(vars);
                }
            }
        }
    }
    for s in root.get("services").map(|n| n.items()).into_iter().flatten() {
        if let Some(vars) = s.get("variables") {
            out.push(vars);
        }
    }
    out
}

/// The image name of a `services:` entry (a string or `name:`).
pub fn service_image<'a>(s: &'a Node<'a>) -> Option<(&'a str, &'a Node<'a>)> {
    if let Some(t) = s.as_str() {
        return Some((t, s));
    }
    let n = s.get("name")?;
    Some((n.as_str()?, n))
}

/// `docker:dind`, `docker:24-dind`, `registry/docker:27.1-dind-rootless` ...
pub fn is_dind_image(image: &str) -> bool {
    let base = image.rsplit('/').next().unwrap_or(image);
    base.starts_with("docker:") && base.contains("dind") && !base.contains("rootless")
}
