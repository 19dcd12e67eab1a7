//! The job context: what a CI integration knows about a job from trusted metadata (project, ref,
//! protection, event, fork), the one input of the gate. JSON on disk; every error names the field.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// One job, as seen by the integration that received it. Refs are full (`refs/heads/main`,
/// `refs/tags/v1`, `refs/pull/7/merge`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobContext {
    /// `gitlab`, `github` or `local`.
    pub platform: String,
    /// Project path: `group/sub/app` (GitLab), `owner/repo` (GitHub).
    pub project: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The platform says the ref is protected (protected branch or tag).
    pub ref_protected: bool,
    /// Pipeline source (GitLab: `push`, `merge_request_event`, ...) or event (GitHub:
    /// `push`, `pull_request_target`, ...). Empty when the platform did not say.
    pub source: String,
    /// The code comes from a fork of the project (a merge or pull request from another project).
    pub from_fork: bool,
    pub job_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The container image the job asked for, where the platform has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("reading job context {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not JSON: {source}")]
    Json {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{file}: {field}: {message}")]
    Field {
        file: String,
        field: String,
        message: String,
    },
}

const FIELDS: &[&str] = &[
    "platform",
    "project",
    "ref",
    "ref_protected",
    "source",
    "from_fork",
    "job_id",
    "user",
    "image",
];

impl JobContext {
    /// Reads and checks a job context file.
    pub fn load(path: &Path) -> Result<JobContext, ContextError> {
        let text = std::fs::read_to_string(path).map_err(|source| ContextError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        JobContext::parse(&text, &path.display().to_string())
    }

    /// Parses a job context; `file` names it in errors. Field by field, so that an error names
    /// the field rather than a column.
    pub fn parse(text: &str, file: &str) -> Result<JobContext, ContextError> {
        let v: Value = serde_json::from_str(text).map_err(|source| ContextError::Json {
            file: file.to_string(),
            source,
        })?;
        JobContext::from_value(&v, file)
    }

    pub fn from_value(v: &Value, file: &str) -> Result<JobContext, ContextError> {
        let bad = |field: &str, message: String| ContextError::Field {
            file: file.to_string(),
            field: field.to_string(),
            message,
        };
        let obj = v
            .as_object()
            .ok_or_else(|| bad("(document)", "expected a JSON object".into()))?;
        if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(bad(
                k,
                format!("unknown field (expected one of: {})", FIELDS.join(", ")),
            ));
        }
        let string = |k: &str| -> Result<String, ContextError> {
            match obj.get(k) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(other) => Err(bad(k, format!("expected a string, got {}", kind(other)))),
                None => Err(bad(k, "missing".into())),
            }
        };
        let boolean = |k: &str| -> Result<bool, ContextError> {
            match obj.get(k) {
                Some(Value::Bool(b)) => Ok(*b),
                Some(other) => Err(bad(k, format!("expected true or false, got {}", kind(other)))),
                None => Err(bad(k, "missing".into())),
            }
        };
        let optional = |k: &str| -> Result<Option<String>, ContextError> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(bad(k, format!("expected a string or null, got {}", kind(other)))),
            }
        };
        // A job id is a string, but platforms hand out numbers: accept both.
        let job_id = match obj.get("job_id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) if n.is_u64() => n.to_string(),
            Some(other) => {
                return Err(bad(
                    "job_id",
                    format!("expected a string or a number, got {}", kind(other)),
                ));
            }
            None => return Err(bad("job_id", "missing".into())),
        };
        let ctx = JobContext {
            platform: string("platform")?,
            project: string("project")?,
            git_ref: string("ref")?,
            ref_protected: boolean("ref_protected")?,
            source: string("source")?,
            from_fork: boolean("from_fork")?,
            job_id,
            user: optional("user")?,
            image: optional("image")?,
        };
        ctx.check().map_err(|(f, m)| bad(f, m))?;
        Ok(ctx)
    }

    /// Values the types allow but a gate must not see: empty project paths, relative refs.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.platform.is_empty() {
            return Err(("platform", "must not be empty".into()));
        }
        if !self.project.contains('/')
            || self.project.starts_with('/')
            || self.project.ends_with('/')
            || self.project.split('/').any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err((
                "project",
                format!("{:?} is not a project path (group/app)", self.project),
            ));
        }
        if !self.git_ref.starts_with("refs/") || self.git_ref.len() <= "refs/".len() {
            return Err((
                "ref",
                format!("{:?} is not a full ref (refs/heads/NAME, refs/tags/NAME)", self.git_ref),
            ));
        }
        if self.git_ref.chars().any(|c| c.is_control() || c == ' ') {
            return Err(("ref", format!("{:?} is not a valid ref", self.git_ref)));
        }
        Ok(())
    }

    /// The branch or tag name (`main` for `refs/heads/main`), or the full ref for others.
    pub fn short_ref(&self) -> &str {
        self.git_ref
            .strip_prefix("refs/heads/")
            .or_else(|| self.git_ref.strip_prefix("refs/tags/"))
            .unwrap_or(&self.git_ref)
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Object(Map::new()))
    }
}

/// A full ref from a platform's branch or tag name and kind (`branch`, `tag`); refs that are
/// already full pass unchanged.
pub fn full_ref(name: &str, kind: &str) -> String {
    if name.starts_with("refs/") {
        name.to_string()
    } else if kind == "tag" {
        format!("refs/tags/{name}")
    } else {
        format!("refs/heads/{name}")
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"platform":"gitlab","project":"group/app","ref":"refs/heads/main",
        "ref_protected":true,"source":"push","from_fork":false,"job_id":42,"user":"alice"}"#;

    #[test]
    fn parses_and_round_trips() {
        let c = JobContext::parse(GOOD, "job.json").unwrap();
        assert_eq!(c.project, "group/app");
        assert_eq!(c.job_id, "42");
        assert_eq!(c.short_ref(), "main");
        assert_eq!(c.user.as_deref(), Some("alice"));
        let again = JobContext::from_value(&c.to_value(), "x").unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn errors_name_the_field() {
        let e = |t: &str| JobContext::parse(t, "job.json").unwrap_err().to_string();
        assert_eq!(
            e(&GOOD.replace("\"ref_protected\":true", "\"ref_protected\":\"yes\"")),
            "job.json: ref_protected: expected true or false, got a string"
        );
        assert_eq!(
            e(&GOOD.replace("\"project\":\"group/app\",", "")),
            "job.json: project: missing"
        );
        assert!(e(&GOOD.replace("\"user\"", "\"usr\"")).starts_with("job.json: usr: unknown field"));
        assert!(e(&GOOD.replace("refs/heads/main", "main")).starts_with("job.json: ref: \"main\" is not a full ref"));
        assert!(e(&GOOD.replace("group/app", "group/../app")).starts_with("job.json: project:"));
        assert!(e(&GOOD.replace("group/app", "app")).starts_with("job.json: project: \"app\" is not a project path"));
        assert!(e("[1]").starts_with("job.json: (document): expected a JSON object"));
        assert!(e("{").starts_with("job.json: not JSON"));
        assert!(!e("{").contains('\n'));
    }

    #[test]
    fn full_refs() {
        assert_eq!(full_ref("main", "branch"), "refs/heads/main");
        assert_eq!(full_ref("v1", "tag"), "refs/tags/v1");
        assert_eq!(
            full_ref("refs/merge-requests/3/head", "branch"),
            "refs/merge-requests/3/head"
        );
    }
}
