//! Runs the audit: reads each file once, builds the models its content calls for, runs the
//! matching rules, and turns their hits into findings (config, suppressions, severities).

use crate::AuditError;
use crate::config::AuditConfig;
use crate::models::gitlab_ci::{GitlabCi, looks_like_gitlab_ci};
use crate::models::jenkinsfile::{self, looks_like_pipeline};
use crate::models::k8s::{
    PodSpec, is_arc_kind, is_arc_values, is_k8s_object, pod_specs_of_inline, pod_specs_of_object, pod_specs_of_values,
};
use crate::models::runner_config;
use crate::models::workflow::Workflow;
use crate::models::{ArcResource, Jcasc};
use crate::rules::{Check, Hit, RULES, Sink};
use crate::source::{CommentStyle, Source};
use crate::walk::{Hint, Item, collect};
use crate::yaml::{Node, Pos, YamlError, parse_stream};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use stockade_report::{Diagnostic, Finding};

/// Files bigger than this are not configuration; reading them would only cost memory.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The kinds of file the audit understands (for messages and counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    GithubWorkflow,
    GitlabCi,
    GitlabRunnerConfig,
    Jenkinsfile,
    Jcasc,
    Kubernetes,
    ArcValues,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    pub diagnostics: Vec<Diagnostic>,
    /// Files read and recognised as one of the kinds above.
    pub files_audited: usize,
    /// Candidate files looked at (recognised or not).
    pub files_seen: usize,
    /// Whether any file or directory could not be read (exit code 2).
    pub io_errors: bool,
}

#[derive(Default)]
struct FileResult {
    findings: Vec<Finding>,
    diagnostics: Vec<Diagnostic>,
    recognised: bool,
    io_error: bool,
    includes: Vec<Item>,
}

/// Audits `paths` (files or directories). `progress(done, total)` is called as files finish.
pub fn audit_paths(
    paths: &[PathBuf],
    cfg: &AuditConfig,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Outcome, AuditError> {
    let (items, walk_errors) = collect(paths)?;
    let mut out = Outcome::default();
    for (file, message) in walk_errors {
        out.io_errors = true;
        out.diagnostics.push(Diagnostic {
            kind: "io-error".into(),
            file,
            line: 1,
            column: 1,
            message,
        });
    }
    // Canonical paths of what was read, built only once a GitLab include needs it.
    let mut seen: Option<HashSet<PathBuf>> = None;
    let mut all_paths: Vec<PathBuf> = Vec::new();
    let mut batch = items;
    let total = AtomicUsize::new(batch.len());
    let done = AtomicUsize::new(0);
    // GitLab local includes found in one round are read in the next, once each.
    while !batch.is_empty() {
        all_paths.extend(batch.iter().map(|i| i.path.clone()));
        let results = run_parallel(&batch, cfg, &|| {
            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
            progress(d, total.load(Ordering::Relaxed));
        });
        let mut next = Vec::new();
        for r in results {
            out.files_seen += 1;
            out.files_audited += r.recognised as usize;
            out.io_errors |= r.io_error;
            out.findings.extend(r.findings);
            out.diagnostics.extend(r.diagnostics);
            for inc in r.includes {
                let seen = seen.get_or_insert_with(|| all_paths.iter().map(|p| normalize(p)).collect());
                if seen.insert(normalize(&inc.path)) {
                    next.push(inc);
                }
            }
        }
        total.fetch_add(next.len(), Ordering::Relaxed);
        batch = next;
    }
    out.findings
        .sort_by(|a, b| (&a.file, a.line, a.column, &a.rule).cmp(&(&b.file, b.line, b.column, &b.rule)));
    out.diagnostics
        .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    Ok(out)
}

fn normalize(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn run_parallel(items: &[Item], cfg: &AuditConfig, tick: &(dyn Fn() + Sync)) -> Vec<FileResult> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(items.len().max(1));
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<(usize, FileResult)>> = Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut local = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    local.push((i, audit_item_guarded(item, cfg)));
                    tick();
                }
                slots.lock().unwrap_or_else(|e| e.into_inner()).extend(local);
            });
        }
    });
    let mut all = slots.into_inner().unwrap_or_else(|e| e.into_inner());
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}

/// A bug in a rule must cost one file, not the run.
fn audit_item_guarded(item: &Item, cfg: &AuditConfig) -> FileResult {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| audit_item(item, cfg))) {
        Ok(r) => r,
        Err(_) => FileResult {
            diagnostics: vec![Diagnostic {
                kind: "internal-error".into(),
                file: item.display.clone(),
                line: 1,
                column: 1,
                message: "the audit of this file failed unexpectedly (a bug: please report it)".into(),
            }],
            ..FileResult::default()
        },
    }
}

fn diag(kind: &str, src_path: &str, pos: Pos, message: String) -> Diagnostic {
    Diagnostic {
        kind: kind.into(),
        file: src_path.to_string(),
        line: pos.line.max(1),
        column: pos.col.max(1),
        message,
    }
}

fn audit_item(item: &Item, cfg: &AuditConfig) -> FileResult {
    let mut res = FileResult::default();
    let bytes = match std::fs::metadata(&item.path).and_then(|m| {
        if m.len() > MAX_FILE_BYTES {
            Ok(None)
        } else {
            std::fs::read(&item.path).map(Some)
        }
    }) {
        Ok(Some(b)) => b,
        Ok(None) => {
            if item.explicit {
                res.diagnostics.push(diag(
                    "skipped",
                    &item.display,
                    Pos::new(1, 1),
                    format!("larger than {MAX_FILE_BYTES} bytes, not read"),
                ));
            }
            return res;
        }
        Err(e) => {
            res.io_error = true;
            res.diagnostics.push(diag(
                "io-error",
                &item.display,
                Pos::new(1, 1),
                format!("cannot read: {e}"),
            ));
            return res;
        }
    };
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let src = Source::new(item.display.clone(), lossy);
            let prefix = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
            let pos = src.pos_of_byte(prefix.len());
            if item.explicit || matches!(item.hint, Hint::Workflow | Hint::GitlabCi) {
                res.diagnostics.push(diag(
                    "parse-error",
                    &item.display,
                    pos,
                    format!("not valid UTF-8 (byte {valid})"),
                ));
            }
            return res;
        }
    };
    let src = Source::new(item.display.clone(), text);
    let mut hits: Vec<Hit> = Vec::new();
    let mut style = CommentStyle::Hash;
    match item.hint {
        Hint::Toml => audit_toml(&src, item, cfg, &mut res, &mut hits),
        Hint::Jenkinsfile | Hint::Groovy => {
            style = CommentStyle::SlashesAndHash;
            audit_jenkins(&src, item, cfg, &mut res, &mut hits);
        }
        Hint::Workflow | Hint::GitlabCi | Hint::Yaml => audit_yaml(&src, item, cfg, &mut res, &mut hits),
        Hint::Sniff => {
            if src.text.contains("[[runners]]") {
                audit_toml(&src, item, cfg, &mut res, &mut hits);
            } else if looks_like_pipeline(&src.text) && !src.text.trim_start().starts_with('{') {
                // A Jenkinsfile is not YAML; a YAML file naming `agent` stays YAML below.
                let yaml_ok = parse_stream(&src.text, 0).is_ok_and(|d| d.iter().any(|n| n.as_map().is_some()));
                if yaml_ok {
                    audit_yaml(&src, item, cfg, &mut res, &mut hits);
                } else {
                    style = CommentStyle::SlashesAndHash;
                    audit_jenkins(&src, item, cfg, &mut res, &mut hits);
                }
            } else {
                audit_yaml(&src, item, cfg, &mut res, &mut hits);
            }
        }
    }
    res.findings = to_findings(hits, &src, style, cfg);
    res
}

fn to_findings(hits: Vec<Hit>, src: &Source, style: CommentStyle, cfg: &AuditConfig) -> Vec<Finding> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for h in hits {
        // One finding per rule and place: merged or aliased YAML repeats the same node.
        if !seen.insert((h.rule, h.pos)) {
            continue;
        }
        if cfg.disable.iter().any(|d| d == h.rule) {
            continue;
        }
        if src.suppressed(h.pos.line, h.rule, style) || cfg.ignores(&src.path, h.pos.line) {
            continue;
        }
        let Some(rule) = crate::rules::find(h.rule) else {
            continue;
        };
        out.push(Finding {
            rule: h.rule.to_string(),
            severity: cfg.severity.get(h.rule).copied().unwrap_or(rule.meta.severity),
            file: src.path.clone(),
            line: h.pos.line.max(1),
            column: h.pos.col.max(1),
            message: h.message,
            remediation: rule.meta.remediation.to_string(),
        });
    }
    out
}

/// Runs every enabled rule of one check kind.
fn run_rules<'s>(cfg: &'s AuditConfig, src: &'s Source, hits: &mut Vec<Hit>, mut f: impl FnMut(&Check, &mut Sink<'s>)) {
    for rule in RULES {
        if cfg.disable.iter().any(|d| d == rule.meta.id) {
            continue;
        }
        let mut sink = Sink::new(cfg, src);
        sink.rule = rule.meta.id;
        f(&rule.check, &mut sink);
        hits.extend(sink.into_hits());
    }
}

fn run_pod_rules(pods: &[PodSpec<'_>], cfg: &AuditConfig, src: &Source, hits: &mut Vec<Hit>) {
    if pods.is_empty() {
        return;
    }
    run_rules(cfg, src, hits, |check, sink| {
        if let Check::Pod(f) = check {
            for p in pods {
                f(p, sink);
            }
        }
    });
}

fn audit_toml(src: &Source, item: &Item, cfg: &AuditConfig, res: &mut FileResult, hits: &mut Vec<Hit>) {
    let named = item
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains("config.toml"));
    if !src.text.contains("[[runners]]") && !named {
        return;
    }
    match runner_config::parse(src) {
        Ok(rc) => {
            if rc.runners.is_empty() {
                return;
            }
            res.recognised = true;
            run_rules(cfg, src, hits, |check, sink| {
                if let Check::Runner(f) = check {
                    f(&rc, sink);
                }
            });
        }
        Err(e) => {
            res.recognised = true;
            res.diagnostics.push(diag(
                "parse-error",
                &src.path,
                e.pos,
                format!("invalid TOML: {}", e.message),
            ));
        }
    }
}

fn audit_jenkins(src: &Source, item: &Item, cfg: &AuditConfig, res: &mut FileResult, hits: &mut Vec<Hit>) {
    if item.hint == Hint::Groovy && !looks_like_pipeline(&src.text) {
        return;
    }
    res.recognised = true;
    let jf = jenkinsfile::parse(src);
    run_rules(cfg, src, hits, |check, sink| {
        if let Check::Jenkinsfile(f) = check {
            f(&jf, sink);
        }
    });
    for y in &jf.inline_yaml {
        match parse_stream(&y.text, y.line_offset) {
            Ok(docs) => {
                let pods: Vec<PodSpec<'_>> = docs.iter().flat_map(pod_specs_of_inline).collect();
                run_pod_rules(&pods, cfg, src, hits);
            }
            Err(e) => res.diagnostics.push(yaml_diag(src, &e, "inline pod YAML: ")),
        }
    }
}

fn yaml_diag(src: &Source, e: &YamlError, prefix: &str) -> Diagnostic {
    diag("parse-error", &src.path, e.pos(), format!("{prefix}invalid YAML: {e}"))
}

fn audit_yaml(src: &Source, item: &Item, cfg: &AuditConfig, res: &mut FileResult, hits: &mut Vec<Hit>) {
    let docs = match parse_stream(&src.text, 0) {
        Ok(d) => d,
        Err(e) => {
            // A Helm template is Go template text, not YAML, and an unrelated YAML file is none of
            // our business: report only what the user named or what looks like ours.
            let certain =
                item.explicit || matches!(item.hint, Hint::Workflow | Hint::GitlabCi) || item.ci_root.is_some();
            if certain || (!src.text.contains("{{") && plausibly_ours(&src.text)) {
                res.recognised = certain;
                res.diagnostics.push(yaml_diag(src, &e, ""));
            }
            return;
        }
    };
    for doc in &docs {
        if doc.as_map().is_none() {
            continue;
        }
        let kind = match item.hint {
            Hint::Workflow => Some(crate::FileKind::GithubWorkflow),
            Hint::GitlabCi => Some(crate::FileKind::GitlabCi),
            _ => classify(doc),
        };
        let kind = kind.or(item.ci_root.as_ref().map(|_| crate::FileKind::GitlabCi));
        let Some(kind) = kind else { continue };
        res.recognised = true;
        match kind {
            crate::FileKind::GithubWorkflow => {
                let wf = Workflow::new(doc);
                run_rules(cfg, src, hits, |check, sink| {
                    if let Check::Workflow(f) = check {
                        f(&wf, sink);
                    }
                });
            }
            crate::FileKind::GitlabCi => {
                let ci = GitlabCi { root: doc };
                run_rules(cfg, src, hits, |check, sink| {
                    if let Check::GitlabCi(f) = check {
                        f(&ci, sink);
                    }
                });
                let root = item.ci_root.clone().or_else(|| {
                    let is_top = item
                        .path
                        .file_name()
                        .is_some_and(|n| n == ".gitlab-ci.yml" || n == ".gitlab-ci.yaml");
                    is_top.then(|| item.path.parent().map(Path::to_path_buf).unwrap_or_default())
                });
                if let Some(root) = root {
                    for inc in ci.local_includes() {
                        let rel = inc.trim_start_matches('/');
                        let path = root.join(rel);
                        if path.is_file() {
                            res.includes.push(Item {
                                display: path
                                    .to_string_lossy()
                                    .strip_prefix("./")
                                    .map(str::to_string)
                                    .unwrap_or_else(|| path.to_string_lossy().into_owned()),
                                path,
                                hint: Hint::GitlabCi,
                                explicit: false,
                                ci_root: Some(root.clone()),
                            });
                        }
                    }
                }
            }
            crate::FileKind::Kubernetes => {
                let k = doc.get("kind").and_then(Node::as_str).unwrap_or("");
                if is_arc_kind(k) {
                    let arc = ArcResource { doc, kind: Some(k) };
                    run_rules(cfg, src, hits, |check, sink| {
                        if let Check::Arc(f) = check {
                            f(&arc, sink);
                        }
                    });
                }
                run_pod_rules(&pod_specs_of_object(doc), cfg, src, hits);
            }
            crate::FileKind::ArcValues => {
                let arc = ArcResource { doc, kind: None };
                run_rules(cfg, src, hits, |check, sink| {
                    if let Check::Arc(f) = check {
                        f(&arc, sink);
                    }
                });
                run_pod_rules(&pod_specs_of_values(doc), cfg, src, hits);
            }
            crate::FileKind::Jcasc => {
                let Some(jenkins) = doc.get("jenkins") else {
                    continue;
                };
                let jc = Jcasc { jenkins };
                run_rules(cfg, src, hits, |check, sink| {
                    if let Check::Jcasc(f) = check {
                        f(&jc, sink);
                    }
                });
            }
            crate::FileKind::GitlabRunnerConfig | crate::FileKind::Jenkinsfile => {}
        }
    }
}

/// Whether broken YAML was probably meant to be one of the kinds audited here.
fn plausibly_ours(text: &str) -> bool {
    [
        "apiVersion:",
        "runs-on:",
        "jenkins:",
        "script:",
        "stages:",
        "githubConfigUrl:",
        "containerMode:",
    ]
    .iter()
    .any(|k| text.contains(k))
}

/// What a YAML document is, by content.
fn classify(doc: &Node<'_>) -> Option<crate::FileKind> {
    use crate::FileKind as K;
    if is_k8s_object(doc) {
        return Some(K::Kubernetes);
    }
    if doc.get("jenkins").is_some_and(|j| j.as_map().is_some()) {
        return Some(K::Jcasc);
    }
    if doc.get("jobs").is_some_and(|j| j.as_map().is_some()) && doc.get("on").is_some() {
        return Some(K::GithubWorkflow);
    }
    if is_arc_values(doc) {
        return Some(K::ArcValues);
    }
    if looks_like_gitlab_ci(doc) {
        return Some(K::GitlabCi);
    }
    None
}
