//! The audit against real-world files (../shared/corpus): every file is read without a crash,
//! and the finding counts per rule are a snapshot, so any change in them shows in review.
//! Also: garbage bytes and truncated files never make it panic.

mod audit_support;
use audit_support::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn corpus() -> Option<PathBuf> {
    let p = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpus")).to_path_buf();
    if p.is_dir() {
        Some(p)
    } else {
        println!(
            "skipped: no corpus at {} (shared/ is not beside the clone)",
            p.display()
        );
        None
    }
}

#[test]
fn corpus_is_read_without_a_crash_and_counts_are_stable() {
    let Some(dir) = corpus() else { return };
    let r = run_in(&dir, &["audit", "--format", "json", "."]);
    assert!(r.code == 0 || r.code == 1, "exit {}: {}", r.code, r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for f in v["findings"].as_array().unwrap() {
        *counts.entry(f["rule"].as_str().unwrap().to_string()).or_default() += 1;
    }
    let mut diags: BTreeMap<String, usize> = BTreeMap::new();
    for d in v["diagnostics"].as_array().unwrap() {
        let kind = d["kind"].as_str().unwrap();
        assert_ne!(kind, "internal-error", "{d}");
        *diags.entry(kind.to_string()).or_default() += 1;
    }
    let mut report = String::from("findings per rule:\n");
    for (k, n) in &counts {
        report.push_str(&format!("  {k}: {n}\n"));
    }
    report.push_str("diagnostics per kind:\n");
    for (k, n) in &diags {
        report.push_str(&format!("  {k}: {n}\n"));
    }
    insta::assert_snapshot!(report);
}

/// xorshift: reproducible noise without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn garbage_and_truncated_files_never_panic() {
    let dir = std::env::temp_dir().join(format!("stockade-audit-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let wf = dir.join(".github/workflows");
    std::fs::create_dir_all(&wf).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Names that send the bytes to every parser.
    let names = [
        ".github/workflows/w{}.yml",
        "x{}.gitlab-ci.yml",
        "k{}.yaml",
        "config{}.toml",
        "Jenkinsfile{}",
        "p{}.groovy",
    ];
    let mut n = 0;
    for round in 0..40 {
        for name in names {
            let len = (rng.next() % 4096) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if round % 2 == 0 {
                // Mostly-structured noise: YAML/TOML/Groovy punctuation reaches deeper paths.
                const ALPHABET: &[u8] = b"{}[]:- \n\t'\"#&*!|>%@`,=()/\\abcxyz01runs-on:privileged";
                for b in bytes.iter_mut() {
                    *b = ALPHABET[(*b as usize) % ALPHABET.len()];
                }
            }
            std::fs::write(dir.join(name.replace("{}", &n.to_string())), &bytes).unwrap();
            n += 1;
        }
    }
    // Deep nesting and an alias bomb.
    std::fs::write(dir.join("deep.yaml"), "[".repeat(100_000)).unwrap();
    std::fs::write(dir.join("deep-map.yaml"), "{a: ".repeat(50_000)).unwrap();
    std::fs::write(dir.join("Jenkinsfile.deep"), "(".repeat(100_000) + "containerTemplate(").unwrap();
    // Truncated real files, cut at several points.
    if let Some(corpus) = corpus() {
        let mut files = Vec::new();
        for sub in ["workflows", "gitlab_ci", "gitlab_runner_config", "jenkins", "arc"] {
            let mut entries: Vec<_> = std::fs::read_dir(corpus.join(sub))
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .collect();
            entries.sort();
            files.extend(entries.into_iter().step_by(7));
        }
        for (i, f) in files.iter().enumerate() {
            let bytes = std::fs::read(f).unwrap();
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            for cut in [bytes.len() / 3, bytes.len() / 2, bytes.len() * 7 / 8] {
                let target = if name.ends_with(".yml") || name.ends_with(".yaml") {
                    wf.join(format!("t{i}-{cut}.yml"))
                } else {
                    dir.join(format!("t{i}-{cut}-{name}"))
                };
                std::fs::write(target, &bytes[..cut]).unwrap();
            }
        }
    }
    let r = run_in(&dir, &["audit", "--format", "json", "."]);
    assert!(r.code == 0 || r.code == 1, "exit {}: {}", r.code, r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let internal: Vec<_> = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "internal-error")
        .collect();
    assert!(internal.is_empty(), "{internal:#?}");
    // The garbage was read: it produced parse errors, each with a position.
    let parse = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "parse-error")
        .count();
    assert!(parse > 50, "only {parse} parse errors");
    std::fs::remove_dir_all(&dir).ok();
}
