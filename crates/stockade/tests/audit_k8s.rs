//! End-to-end tests of the Kubernetes pod-spec rules (`k8s-*`) through the real binary, on
//! tests/fixtures/audit/k8s: workloads, a CronJob, a bare Pod, non-pods and broken files.

mod audit_support;
use audit_support::*;

#[test]
fn k8s_rules_snapshot() {
    let r = run_in(&fixtures("k8s"), &["audit", "."]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    insta::assert_snapshot!(r.stdout);
}

#[test]
fn k8s_rules_fire_where_they_should_and_nowhere_else() {
    let (code, v) = audit_json("k8s");
    assert_eq!(code, 1);
    assert_every_rule_fires(&v, &["k8s-"]);
    assert_silent(&v, "chart-template.yaml");
    let h = hits(&v);
    // The hardened CronJob (lines 34-70) and the ConfigMap have nothing.
    let stray: Vec<_> = h
        .iter()
        .filter(|x| x.1 == "workloads.yaml")
        .filter(|x| (34..=70).contains(&x.2) || x.2 > 80)
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    let caps: Vec<u64> = h.iter().filter(|x| x.0 == "k8s-dangerous-caps").map(|x| x.2).collect();
    assert_eq!(caps, [23]);
    let paths: Vec<u64> = h
        .iter()
        .filter(|x| x.0 == "k8s-sensitive-hostpath")
        .map(|x| x.2)
        .collect();
    assert_eq!(paths, [28]);
    // Suppressed on the container's own line.
    assert!(!h.iter().any(|x| x.0 == "k8s-writable-root-fs" && x.2 == 75));
    assert!(h.iter().any(|x| x.0 == "k8s-run-as-root" && x.2 == 75));
    // A kustomize patch is judged on what it sets, not on what it leaves to its base.
    let patch: Vec<_> = h.iter().filter(|x| x.1 == "kustomize-patch.yaml").collect();
    assert_eq!(
        patch,
        [&("k8s-privileged".to_string(), "kustomize-patch.yaml".to_string(), 16)]
    );
    // Broken YAML that is not CI configuration is not reported.
    let d = v["diagnostics"].as_array().unwrap();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["file"], "broken.yaml");
}
