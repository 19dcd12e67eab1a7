//! End-to-end tests of the GitHub Actions rules (`gha-*`) through the real binary, on
//! tests/fixtures/audit/github: each rule firing, and the shapes that must stay silent.

mod audit_support;
use audit_support::*;

#[test]
fn github_rules_snapshot() {
    let r = run_in(&fixtures("github"), &["audit", "."]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    insta::assert_snapshot!(r.stdout);
}

#[test]
fn github_rules_fire_where_they_should_and_nowhere_else() {
    let (code, v) = audit_json("github");
    assert_eq!(code, 1);
    assert_every_rule_fires(&v, &["gha-"]);
    assert_silent(&v, ".github/workflows/safe.yml");
    let h = hits(&v);
    let wf = ".github/workflows/untrusted-triggers.yml";
    let untrusted: Vec<u64> = h
        .iter()
        .filter(|x| x.0 == "gha-self-hosted-untrusted-trigger" && x.1 == wf)
        .map(|x| x.2)
        .collect();
    // generic, dedicated, custom label, matrix; not hosted, hosted matrix, expression, guarded,
    // suppressed.
    assert_eq!(untrusted, [9, 13, 17, 28], "{h:?}");
    let unrestricted: Vec<(String, u64)> = h
        .iter()
        .filter(|x| x.0 == "gha-self-hosted-unrestricted")
        .map(|x| (x.1.clone(), x.2))
        .collect();
    assert_eq!(
        unrestricted,
        [
            (".github/workflows/trusted.yml".to_string(), 8),
            (wf.to_string(), 9),
            (wf.to_string(), 44)
        ]
    );
    // Flags after the image belong to the container's command; echoed text is not a command.
    let docker_run: Vec<u64> = h
        .iter()
        .filter(|x| x.0 == "gha-docker-run-privileged")
        .map(|x| x.2)
        .collect();
    assert_eq!(docker_run, [26, 27]);
    // The suppressed job container: only the service's --privileged remains besides `build`.
    assert!(!h.iter().any(|x| x.0 == "gha-privileged-container" && x.2 == 38));
}

#[test]
fn labels_are_configurable() {
    let dir = fixtures("github");
    let cfg = std::env::temp_dir().join(format!("stockade-labels-{}.toml", std::process::id()));
    std::fs::write(
        &cfg,
        "[audit]\nhosted_labels = [\"linux.*\"]\nrestricted_labels = [\"gpu-a100\"]\n",
    )
    .unwrap();
    let r = run_in(
        &dir,
        &["audit", "--format", "json", "--config", cfg.to_str().unwrap(), "."],
    );
    std::fs::remove_file(&cfg).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let h = hits(&v);
    let wf = ".github/workflows/untrusted-triggers.yml";
    // linux.2xlarge is now GitHub-hosted (a larger runner).
    assert!(!h.contains(&("gha-self-hosted-untrusted-trigger".into(), wf.into(), 17)));
    // With restricted_labels set, [self-hosted, release] is no longer dedicated enough.
    assert!(h.contains(&(
        "gha-self-hosted-unrestricted".into(),
        ".github/workflows/trusted.yml".into(),
        18
    )));
    assert!(!h.contains(&("gha-self-hosted-unrestricted".into(), wf.into(), 13)));
}
