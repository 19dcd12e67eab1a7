//! Runner pools and the job gate: which jobs a pool admits (project, ref protection, refs, event,
//! fork, image) and the pool's own sandbox settings, enforced on the runner from trusted metadata.
//!
//! A pool's sandbox settings are written as top-level sections under the pool
//! (`[pools.prod.limits] memory = "8G"`). The effective policy of a pool is the top-level policy
//! with each of the pool's sections merged in key by key: tables merge recursively, every other
//! value (arrays included) replaces the top-level value. Keys the pool does not name keep their
//! top-level value.

use crate::Policy;
use crate::context::JobContext;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// One pool: an admission rule and the sandbox settings its jobs get.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pool {
    /// Project paths or globs (`group/app`, `group/*`, `group/**`); empty: any project.
    pub projects: Vec<String>,
    /// Admit only jobs whose ref the platform says is protected.
    pub protected_refs_only: bool,
    /// Ref patterns; `refs/...` patterns match the full ref, others the branch or tag name.
    pub refs: Vec<String>,
    /// Pipeline sources or events admitted; empty: any.
    pub sources: Vec<String>,
    /// Pipeline sources or events refused.
    pub deny_sources: Vec<String>,
    /// Admit jobs whose code comes from a fork. Default false.
    pub forks: bool,
    /// Image patterns admitted (for jobs that name an image); empty: any.
    pub images: Vec<String>,
    /// Sandbox settings: top-level policy sections (`limits`, `job`, `filesystem`, ...) as written.
    pub sections: BTreeMap<String, toml::Table>,
    /// Keys that did not parse, as (key, message): reported by `validate`, which knows the pool's
    /// name and can name the line.
    invalid: Vec<(String, String)>,
}

/// The admission keys of a pool, in the order the gate checks them.
pub const ADMISSION_KEYS: &[&str] = &[
    "projects",
    "protected_refs_only",
    "refs",
    "sources",
    "deny_sources",
    "forks",
    "images",
];

/// Top-level keys that are not sandbox settings: a pool cannot set them.
const NOT_SECTIONS: &[&str] = &["version", "pools", "default_pool"];

impl<'de> Deserialize<'de> for Pool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, toml::Value>::deserialize(d)?;
        let mut pool = Pool::default();
        for (k, v) in raw {
            let r = match k.as_str() {
                "projects" => v.try_into().map(|x| pool.projects = x),
                "protected_refs_only" => v.try_into().map(|x| pool.protected_refs_only = x),
                "refs" => v.try_into().map(|x| pool.refs = x),
                "sources" => v.try_into().map(|x| pool.sources = x),
                "deny_sources" => v.try_into().map(|x| pool.deny_sources = x),
                "forks" => v.try_into().map(|x| pool.forks = x),
                "images" => v.try_into().map(|x| pool.images = x),
                _ => {
                    match v {
                        toml::Value::Table(t) => {
                            pool.sections.insert(k.clone(), t);
                        }
                        _ => pool.invalid.push((
                            k.clone(),
                            format!(
                                "unknown field `{k}` (a pool has {} and policy sections such as [pools.NAME.limits])",
                                ADMISSION_KEYS.join(", ")
                            ),
                        )),
                    }
                    Ok(())
                }
            };
            if let Err(e) = r {
                pool.invalid.push((k, e.message().trim().replace('\n', " ")));
            }
        }
        Ok(pool)
    }
}

impl Serialize for Pool {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("projects", &self.projects)?;
        m.serialize_entry("protected_refs_only", &self.protected_refs_only)?;
        m.serialize_entry("refs", &self.refs)?;
        m.serialize_entry("sources", &self.sources)?;
        m.serialize_entry("deny_sources", &self.deny_sources)?;
        m.serialize_entry("forks", &self.forks)?;
        m.serialize_entry("images", &self.images)?;
        for (k, v) in &self.sections {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("pool {name:?} is not defined in the policy (defined: {})", list(defined))]
    Unknown { name: String, defined: Vec<String> },
    #[error("no pool given and the policy sets no default_pool (pools: {})", list(defined))]
    NoPool { defined: Vec<String> },
    #[error("pools.{pool}.{key}: {message}")]
    Effective { pool: String, key: String, message: String },
}

fn list(v: &[String]) -> String {
    if v.is_empty() { "none".into() } else { v.join(", ") }
}

/// One rule of the gate, checked against one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// The rule's key in the policy: `pools.prod.protected_refs_only`.
    pub rule: String,
    pub ok: bool,
    pub reason: String,
}

/// What the gate decided for one job, with every rule it checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The pool the job was checked against; None when the policy defines no pools.
    pub pool: Option<String>,
    pub allowed: bool,
    pub checks: Vec<Check>,
}

impl Decision {
    /// The first rule that refused the job.
    pub fn refusal(&self) -> Option<&Check> {
        self.checks.iter().find(|c| !c.ok)
    }

    /// One line: `admitted to pool prod` or `refused by pools.prod.forks: ...`.
    pub fn summary(&self) -> String {
        match (self.refusal(), &self.pool) {
            (Some(c), _) => format!("refused by {}: {}", c.rule, c.reason),
            (None, Some(p)) => format!("admitted to pool {p}"),
            (None, None) => "admitted (the policy defines no pools)".into(),
        }
    }
}

impl Policy {
    /// The pool a job goes to: the one named, else `default_pool`; None when the policy has no
    /// pools at all (the top-level policy then admits every job).
    pub fn resolve_pool<'a>(&'a self, name: Option<&'a str>) -> Result<Option<&'a str>, PoolError> {
        let defined = || self.pools.keys().cloned().collect::<Vec<_>>();
        match name.or(self.default_pool.as_deref()) {
            Some(n) if self.pools.contains_key(n) => Ok(Some(n)),
            Some(n) => Err(PoolError::Unknown {
                name: n.to_string(),
                defined: defined(),
            }),
            None if self.pools.is_empty() => Ok(None),
            None => Err(PoolError::NoPool { defined: defined() }),
        }
    }

    /// The effective policy of pool `name`: the top-level policy with the pool's sections merged
    /// in (see the module docs). It has no pools of its own.
    pub fn for_pool(&self, name: &str) -> Result<Policy, PoolError> {
        let pool = self.pools.get(name).ok_or_else(|| PoolError::Unknown {
            name: name.to_string(),
            defined: self.pools.keys().cloned().collect(),
        })?;
        let err = |key: String, message: String| PoolError::Effective {
            pool: name.to_string(),
            key,
            message,
        };
        if let Some(s) = pool.sections.keys().find(|s| NOT_SECTIONS.contains(&s.as_str())) {
            return Err(err(s.clone(), "not a setting a pool can change".into()));
        }
        let base = self.base_table().map_err(|m| err(String::new(), m))?;
        let mut merged = base.clone();
        for (section, t) in &pool.sections {
            merge_section(&mut merged, section, t);
        }
        let mut p = match toml::Value::Table(merged).try_into::<Policy>() {
            Ok(p) => p,
            Err(_) => {
                let (key, message) = failing_key(&base, &pool.sections);
                return Err(err(key, message));
            }
        };
        p.pools.clear();
        p.default_pool = None;
        crate::validate(&p).map_err(|(key, message)| err(key, message))?;
        Ok(p)
    }

    /// The top-level settings as a TOML table, without the pools.
    fn base_table(&self) -> Result<toml::Table, String> {
        let mut top = self.clone();
        top.pools.clear();
        top.default_pool = None;
        match toml::Value::try_from(&top) {
            Ok(toml::Value::Table(t)) => Ok(t),
            Ok(_) => Err("the policy is not a table".into()),
            Err(e) => Err(format!("the top-level policy cannot be merged: {e}")),
        }
    }
}

/// Names the key of a pool's sections that makes the merged policy invalid: merges one section,
/// then one key, at a time.
fn failing_key(base: &toml::Table, sections: &BTreeMap<String, toml::Table>) -> (String, String) {
    let fails = |section: &str, over: &toml::Table| {
        let mut one = base.clone();
        merge_section(&mut one, section, over);
        toml::Value::Table(one)
            .try_into::<Policy>()
            .err()
            .map(|e| e.message().trim().replace('\n', " "))
    };
    for (section, t) in sections {
        if fails(section, &toml::Table::new()).is_some() {
            let known: Vec<&str> = base
                .keys()
                .map(String::as_str)
                .filter(|k| !NOT_SECTIONS.contains(k))
                .collect();
            return (
                section.clone(),
                format!("not a policy section (a pool can set: {})", known.join(", ")),
            );
        }
        for (k, v) in t {
            let mut only = toml::Table::new();
            only.insert(k.clone(), v.clone());
            if let Some(m) = fails(section, &only) {
                return (format!("{section}.{k}"), m);
            }
        }
    }
    (String::new(), "the merged settings do not form a valid policy".into())
}

fn merge_section(base: &mut toml::Table, section: &str, over: &toml::Table) {
    match base.get_mut(section) {
        Some(toml::Value::Table(t)) => merge(t, over),
        _ => {
            base.insert(section.to_string(), toml::Value::Table(over.clone()));
        }
    }
}

fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Checks the pools of a policy: names, patterns, `default_pool`, and that each pool's effective
/// policy is valid. Errors are (dotted key, message), as in `validate`.
pub(crate) fn validate_pools(p: &Policy) -> Result<(), (String, String)> {
    for (name, pool) in &p.pools {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err((
                format!("pools.{name}"),
                format!("{name:?} is not a pool name (letters, digits, - and _)"),
            ));
        }
        if let Some((key, message)) = pool.invalid.first() {
            return Err((format!("pools.{name}.{key}"), message.clone()));
        }
        for (key, list) in [
            ("projects", &pool.projects),
            ("refs", &pool.refs),
            ("sources", &pool.sources),
            ("deny_sources", &pool.deny_sources),
            ("images", &pool.images),
        ] {
            if let Some(bad) = list
                .iter()
                .find(|s| s.trim().is_empty() || s.chars().any(|c| c.is_control()))
            {
                return Err((format!("pools.{name}.{key}"), format!("{bad:?} is not a pattern")));
            }
        }
        p.for_pool(name).map_err(|e| match e {
            PoolError::Effective { pool, key, message } if key.is_empty() => (format!("pools.{pool}"), message),
            PoolError::Effective { pool, key, message } => (format!("pools.{pool}.{key}"), message),
            other => (format!("pools.{name}"), other.to_string()),
        })?;
    }
    if let Some(d) = &p.default_pool
        && !p.pools.contains_key(d)
    {
        return Err((
            "default_pool".into(),
            format!(
                "{d:?} is not a pool of this policy (pools: {})",
                list(&p.pools.keys().cloned().collect::<Vec<_>>())
            ),
        ));
    }
    Ok(())
}

/// The gate: resolves the job's pool and checks every admission rule of it. Returns the decision
/// and the effective policy the job runs under when admitted.
pub fn gate(policy: &Policy, pool: Option<&str>, ctx: &JobContext) -> Result<(Decision, Policy), PoolError> {
    match policy.resolve_pool(pool)? {
        None => Ok((
            Decision {
                pool: None,
                allowed: true,
                checks: vec![Check {
                    rule: "pools".into(),
                    ok: true,
                    reason: "the policy defines no pools: the top-level policy admits every job".into(),
                }],
            },
            policy.clone(),
        )),
        Some(name) => {
            let effective = policy.for_pool(name)?;
            Ok((evaluate(name, &policy.pools[name], ctx), effective))
        }
    }
}

/// Checks every admission rule of `pool` against the job, in the order of `ADMISSION_KEYS`.
pub fn evaluate(name: &str, pool: &Pool, ctx: &JobContext) -> Decision {
    let mut checks = Vec::new();
    let mut check = |key: &str, ok: bool, reason: String| {
        checks.push(Check {
            rule: format!("pools.{name}.{key}"),
            ok,
            reason,
        })
    };
    let project = &ctx.project;

    // projects
    if pool.projects.is_empty() {
        check("projects", true, "any project (projects is not set)".into());
    } else {
        match pool
            .projects
            .iter()
            .find(|p| glob(&p.to_ascii_lowercase(), &project.to_ascii_lowercase()))
        {
            Some(p) => check("projects", true, format!("project {project} matches {p:?}")),
            None => check(
                "projects",
                false,
                format!("project {project} is not in projects {:?}", pool.projects),
            ),
        }
    }

    // protected_refs_only
    let r = &ctx.git_ref;
    match (pool.protected_refs_only, ctx.ref_protected) {
        (false, _) => check("protected_refs_only", true, "protected refs are not required".into()),
        (true, true) => check("protected_refs_only", true, format!("ref {r} is protected")),
        (true, false) => check("protected_refs_only", false, format!("ref {r} is not protected")),
    }

    // refs
    if pool.refs.is_empty() {
        check("refs", true, "any ref (refs is not set)".into());
    } else {
        let short = ctx.short_ref();
        let named = short != r.as_str();
        let hit = pool.refs.iter().find(|p| {
            if p.starts_with("refs/") {
                glob(p, r)
            } else {
                named && glob(p, short)
            }
        });
        match hit {
            Some(p) => check("refs", true, format!("ref {r} matches {p:?}")),
            None => check("refs", false, format!("ref {r} matches none of refs {:?}", pool.refs)),
        }
    }

    // sources
    let s = &ctx.source;
    let shown = if s.is_empty() {
        "(none given)".to_string()
    } else {
        s.clone()
    };
    if pool.sources.is_empty() {
        check("sources", true, "any source (sources is not set)".into());
    } else {
        match pool.sources.iter().find(|p| !s.is_empty() && glob(p, s)) {
            Some(p) => check("sources", true, format!("source {shown} matches {p:?}")),
            None => check(
                "sources",
                false,
                format!("source {shown} is not in sources {:?}", pool.sources),
            ),
        }
    }

    // deny_sources
    match pool.deny_sources.iter().find(|p| !s.is_empty() && glob(p, s)) {
        Some(p) => check(
            "deny_sources",
            false,
            format!("source {shown} is denied (matches {p:?})"),
        ),
        None => check("deny_sources", true, format!("source {shown} is not denied")),
    }

    // forks
    match (ctx.from_fork, pool.forks) {
        (false, _) => check("forks", true, "the code does not come from a fork".into()),
        (true, true) => check("forks", true, "the code comes from a fork, and forks = true".into()),
        (true, false) => check(
            "forks",
            false,
            "the code comes from a fork of the project (forks = false)".into(),
        ),
    }

    // images
    match (&ctx.image, pool.images.is_empty()) {
        (_, true) => check("images", true, "any image (images is not set)".into()),
        (None, false) => check("images", true, "the job names no image".into()),
        (Some(img), false) => match pool.images.iter().find(|p| glob(p, img)) {
            Some(p) => check("images", true, format!("image {img} matches {p:?}")),
            None => check(
                "images",
                false,
                format!("image {img} is not in images {:?}", pool.images),
            ),
        },
    }

    let allowed = checks.iter().all(|c| c.ok);
    Decision {
        pool: Some(name.to_string()),
        allowed,
        checks,
    }
}

/// Glob match: `*` and `?` stay within one `/`-separated segment, `**` crosses segments.
/// Linear in pattern times text (no backtracking blow-up on hostile refs).
pub fn glob(pattern: &str, text: &str) -> bool {
    #[derive(Clone, Copy)]
    enum Tok {
        Lit(char),
        One,
        Star,
        DoubleStar,
    }
    let mut toks = Vec::new();
    let mut it = pattern.chars().peekable();
    while let Some(c) = it.next() {
        toks.push(match c {
            '*' if it.peek() == Some(&'*') => {
                while it.peek() == Some(&'*') {
                    it.next();
                }
                Tok::DoubleStar
            }
            '*' => Tok::Star,
            '?' => Tok::One,
            c => Tok::Lit(c),
        });
    }
    let t: Vec<char> = text.chars().collect();
    // m[j]: pattern suffix from the current token matches text[j..].
    let mut next = vec![false; t.len() + 1];
    next[t.len()] = true;
    for tok in toks.iter().rev() {
        let mut cur = vec![false; t.len() + 1];
        for j in (0..=t.len()).rev() {
            cur[j] = match tok {
                Tok::Lit(c) => j < t.len() && t[j] == *c && next[j + 1],
                Tok::One => j < t.len() && t[j] != '/' && next[j + 1],
                Tok::Star => next[j] || (j < t.len() && t[j] != '/' && cur[j + 1]),
                Tok::DoubleStar => next[j] || (j < t.len() && cur[j + 1]),
            };
        }
        next = cur;
    }
    next[0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn ctx() -> JobContext {
        JobContext {
            platform: "gitlab".into(),
            project: "group/app".into(),
            git_ref: "refs/heads/main".into(),
            ref_protected: true,
            source: "push".into(),
            from_fork: false,
            job_id: "1".into(),
            user: None,
            image: None,
        }
    }

    const POLICY: &str = r#"
default_pool = "ci"
[limits]
pids = 300
[pools.prod]
projects = ["group/app", "ops/*"]
protected_refs_only = true
refs = ["main", "release/*", "refs/tags/v*"]
deny_sources = ["merge_request_event", "pull_request_target", "issue_comment"]
images = ["registry.example.com/**"]
[pools.prod.limits]
memory = "8G"
[pools.prod.job.env]
DEPLOY = "1"
[pools.ci]
sources = ["push", "merge_request_event"]
forks = true
"#;

    fn policy() -> Policy {
        parse(POLICY, "p.toml").unwrap()
    }

    fn refused_by(d: &Decision) -> Vec<&str> {
        d.checks.iter().filter(|c| !c.ok).map(|c| c.rule.as_str()).collect()
    }

    #[test]
    fn globs() {
        assert!(glob("group/*", "group/app"));
        assert!(!glob("group/*", "group/sub/app"));
        assert!(glob("group/**", "group/sub/app"));
        assert!(glob("release/*", "release/1.2"));
        assert!(!glob("release/*", "release/1/2"));
        assert!(glob("v?.*", "v1.2"));
        assert!(glob("**", "anything/at/all"));
        assert!(!glob("main", "main2"));
        assert!(glob("", ""));
        // Hostile input stays fast: no exponential backtracking.
        let long = "a".repeat(2000);
        assert!(!glob("**a**a**a**a**a**b", &long));
    }

    #[test]
    fn effective_policy_merges_the_pool_over_the_top_level() {
        let p = policy();
        let prod = p.for_pool("prod").unwrap();
        assert_eq!(prod.limits.memory.unwrap().0, 8 << 30);
        assert_eq!(
            prod.limits.pids,
            Some(300),
            "keys the pool does not set keep their top-level value"
        );
        assert_eq!(prod.job.env.get("DEPLOY").map(String::as_str), Some("1"));
        assert!(prod.pools.is_empty());
        let ci = p.for_pool("ci").unwrap();
        assert_eq!(ci.limits.memory.unwrap().0, 4 << 30);
        // A pool without sections runs exactly the top-level settings.
        let mut top = p.clone();
        top.pools.clear();
        top.default_pool = None;
        assert_eq!(ci.digest(), top.digest());
    }

    #[test]
    fn gate_checks_every_rule() {
        let p = policy();
        let (d, eff) = gate(&p, Some("prod"), &ctx()).unwrap();
        assert!(d.allowed, "{d:?}");
        assert_eq!(d.checks.len(), ADMISSION_KEYS.len());
        assert_eq!(eff.limits.memory.unwrap().0, 8 << 30);
        assert_eq!(d.summary(), "admitted to pool prod");

        let mut c = ctx();
        c.ref_protected = false;
        c.git_ref = "refs/heads/feature".into();
        let (d, _) = gate(&p, Some("prod"), &c).unwrap();
        assert!(!d.allowed);
        assert_eq!(refused_by(&d), ["pools.prod.protected_refs_only", "pools.prod.refs"]);
        assert_eq!(
            d.summary(),
            "refused by pools.prod.protected_refs_only: ref refs/heads/feature is not protected"
        );

        let mut c = ctx();
        c.project = "Other/App".into();
        c.source = "pull_request_target".into();
        c.from_fork = true;
        c.image = Some("docker.io/evil:latest".into());
        let (d, _) = gate(&p, Some("prod"), &c).unwrap();
        assert_eq!(
            refused_by(&d),
            [
                "pools.prod.projects",
                "pools.prod.deny_sources",
                "pools.prod.forks",
                "pools.prod.images"
            ]
        );

        // Projects match case-insensitively, as GitLab and GitHub paths do.
        let mut c = ctx();
        c.project = "OPS/Tools".into();
        c.git_ref = "refs/tags/v1.0".into();
        c.image = Some("registry.example.com/ops/img:1".into());
        assert!(gate(&p, Some("prod"), &c).unwrap().0.allowed);

        // A full-ref pattern never matches a bare branch name, nor the reverse.
        let mut c = ctx();
        c.git_ref = "refs/merge-requests/3/head".into();
        let (d, _) = gate(&p, Some("prod"), &c).unwrap();
        assert_eq!(refused_by(&d), ["pools.prod.refs"]);
    }

    #[test]
    fn default_pool_and_sources() {
        let p = policy();
        let (d, _) = gate(&p, None, &ctx()).unwrap();
        assert_eq!(d.pool.as_deref(), Some("ci"));
        assert!(d.allowed);
        let mut c = ctx();
        c.source = "schedule".into();
        c.from_fork = true;
        let (d, _) = gate(&p, None, &c).unwrap();
        assert_eq!(refused_by(&d), ["pools.ci.sources"]);
        c.source = String::new();
        let (d, _) = gate(&p, None, &c).unwrap();
        assert_eq!(
            d.summary(),
            "refused by pools.ci.sources: source (none given) is not in sources [\"push\", \"merge_request_event\"]"
        );
    }

    #[test]
    fn no_pools_admits_and_unknown_pools_fail() {
        let p = Policy::default_policy();
        let (d, eff) = gate(&p, None, &ctx()).unwrap();
        assert!(d.allowed && d.pool.is_none());
        assert_eq!(eff.digest(), p.digest());
        assert_eq!(
            gate(&p, Some("prod"), &ctx()).unwrap_err().to_string(),
            "pool \"prod\" is not defined in the policy (defined: none)"
        );
        let p = parse("[pools.a]\n[pools.b]\n", "p.toml").unwrap();
        assert_eq!(
            gate(&p, None, &ctx()).unwrap_err().to_string(),
            "no pool given and the policy sets no default_pool (pools: a, b)"
        );
    }

    #[test]
    fn the_commented_example_in_the_default_policy_is_valid() {
        let start = crate::DEFAULT_TOML
            .find("# default_pool")
            .expect("the example is in default.toml");
        let example: String = crate::DEFAULT_TOML[start..]
            .lines()
            .map(|l| l.strip_prefix("# ").or_else(|| l.strip_prefix('#')).unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let p = parse(&example, "example").unwrap();
        assert_eq!(p.default_pool.as_deref(), Some("ci"));
        assert_eq!(p.for_pool("prod").unwrap().limits.memory.unwrap().0, 8 << 30);
        assert!(p.pools["prod"].protected_refs_only && !p.pools["prod"].forks);
    }

    #[test]
    fn bad_pools_name_file_line_and_key() {
        let e = |t: &str| parse(t, "p.toml").unwrap_err().to_string();
        assert_eq!(
            e("[pools.prod]\nprojects = [\"a\"]\n[pools.prod.limits]\nmemory = \"8X\"\n"),
            "p.toml:4: pools.prod.limits.memory: invalid size \"8X\" (unit must be K, M, G or T)"
        );
        assert!(
            e("[pools.prod.limits]\nmemroy = \"8G\"\n")
                .starts_with("p.toml:2: pools.prod.limits.memroy: unknown field `memroy`"),
            "{}",
            e("[pools.prod.limits]\nmemroy = \"8G\"\n")
        );
        assert!(
            e("[pools.prod]\nprotected_ref_only = true\n")
                .starts_with("p.toml:2: pools.prod.protected_ref_only: unknown field `protected_ref_only`")
        );
        assert_eq!(
            e("[pools.prod]\nforks = \"no\"\n"),
            "p.toml:2: pools.prod.forks: invalid type: string \"no\", expected a boolean"
        );
        assert!(
            e("[pools.prod.limit]\npids = 3\n")
                .starts_with("p.toml:1: pools.prod.limit: not a policy section (a pool can set: "),
            "{}",
            e("[pools.prod.limit]\npids = 3\n")
        );
        assert_eq!(
            e("default_pool = \"nope\"\n[pools.a]\n"),
            "p.toml:1: default_pool: \"nope\" is not a pool of this policy (pools: a)"
        );
        assert_eq!(
            e("[pools.prod]\nrefs = [\"\"]\n"),
            "p.toml:2: pools.prod.refs: \"\" is not a pattern"
        );
        assert_eq!(
            e("[pools.prod.limits]\ncpus = -2.0\n"),
            "p.toml:2: pools.prod.limits.cpus: -2 is not a CPU count (0 for no limit)"
        );
        assert!(e("[pools.\"a b\"]\n").contains("is not a pool name"));
        assert!(e("[pools.prod.pools]\n").contains("pools.prod.pools: not a setting a pool can change"));
        for t in [
            "[pools.prod.limits]\nmemroy = \"8G\"\n",
            "[pools.prod]\nforks = \"no\"\n",
        ] {
            assert!(!e(t).contains('\n'));
        }
    }
}
