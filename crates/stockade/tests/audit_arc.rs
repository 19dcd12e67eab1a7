//! End-to-end tests of the actions-runner-controller rules (`arc-*`, and `k8s-*` on runner pod
//! templates) through the real binary, on tests/fixtures/audit/arc.

mod audit_support;
use audit_support::*;

#[test]
fn arc_rules_snapshot() {
    let r = run_in(&fixtures("arc"), &["audit", "."]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    insta::assert_snapshot!(r.stdout);
}

#[test]
fn arc_rules_fire_where_they_should_and_nowhere_else() {
    let (code, v) = audit_json("arc");
    assert_eq!(code, 1);
    assert_every_rule_fires(&v, &["arc-"]);
    assert_silent(&v, "values-kubernetes-mode.yaml");
    let h = hits(&v);
    let dind: Vec<(String, u64)> = h
        .iter()
        .filter(|x| x.0 == "arc-dind-privileged")
        .map(|x| (x.1.clone(), x.2))
        .collect();
    assert_eq!(
        dind,
        [
            ("runnerdeployment.yaml".to_string(), 11),
            ("runnerdeployment.yaml".to_string(), 19),
            ("values.yaml".to_string(), 6),
            ("values.yaml".to_string(), 16),
        ]
    );
    // The hardened RunnerDeployment (3rd document) has no finding at all.
    assert!(
        !h.iter()
            .any(|x| x.1 == "runnerdeployment.yaml" && (22..=48).contains(&x.2))
    );
    // Pod rules read the AutoscalingRunnerSet template.
    assert!(h.contains(&("k8s-host-namespaces".into(), "autoscalingrunnerset.yaml".into(), 9)));
    assert!(h.contains(&("k8s-run-as-root".into(), "autoscalingrunnerset.yaml".into(), 14)));
}
