//! End-to-end tests of the .gitlab-ci.yml rules (`gitlab-ci-*`) through the real binary, on
//! tests/fixtures/audit/gitlab-ci, including a locally included file.

mod audit_support;
use audit_support::*;

#[test]
fn gitlab_ci_rules_snapshot() {
    let r = run_in(&fixtures("gitlab-ci"), &["audit", "."]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    insta::assert_snapshot!(r.stdout);
}

#[test]
fn gitlab_ci_rules_fire_where_they_should_and_nowhere_else() {
    let (code, v) = audit_json("gitlab-ci");
    assert_eq!(code, 1);
    assert_every_rule_fires(&v, &["gitlab-ci-"]);
    let h = hits(&v);
    let deploy: Vec<(String, u64)> = h
        .iter()
        .filter(|x| x.0 == "gitlab-ci-deploy-untagged")
        .map(|x| (x.1.clone(), x.2))
        .collect();
    // deploy-production and the production stop job; not the tagged, templated, remote or
    // trigger jobs.
    assert_eq!(
        deploy,
        [("ci/deploy.yml".to_string(), 5), ("ci/deploy.yml".to_string(), 29)]
    );
    // One finding for the anchored dind service, none for the rootless one.
    let dind: Vec<u64> = h
        .iter()
        .filter(|x| x.0 == "gitlab-ci-dind-build")
        .map(|x| x.2)
        .collect();
    assert_eq!(dind, [14]);
    let tls: Vec<u64> = h
        .iter()
        .filter(|x| x.0 == "gitlab-ci-dind-tls-disabled")
        .map(|x| x.2)
        .collect();
    assert_eq!(tls, [7, 20]);
}

#[test]
fn an_included_file_is_audited_once_when_named_directly_too() {
    let dir = fixtures("gitlab-ci");
    let r = run_in(
        &dir,
        &["audit", "--format", "json", ".gitlab-ci.yml", "ci/deploy.yml", "."],
    );
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let n = hits(&v).iter().filter(|x| x.1.ends_with("deploy.yml")).count();
    assert_eq!(n, 2);
    assert_eq!(v["findings"].as_array().unwrap().len(), hits(&v).len());
}
