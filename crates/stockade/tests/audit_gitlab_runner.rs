//! End-to-end tests of the GitLab Runner config.toml rules (`gitlab-*` but `gitlab-ci-*`)
//! through the real binary, on tests/fixtures/audit/gitlab-runner.

mod audit_support;
use audit_support::*;

#[test]
fn gitlab_runner_rules_snapshot() {
    let r = run_in(&fixtures("gitlab-runner"), &["audit", "."]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    insta::assert_snapshot!(r.stdout);
}

#[test]
fn gitlab_runner_rules_fire_where_they_should_and_nowhere_else() {
    let (code, v) = audit_json("gitlab-runner");
    assert_eq!(code, 1);
    assert_every_rule_fires(&v, &["gitlab-docker-", "gitlab-k8s-", "gitlab-shell-"]);
    let h = hits(&v);
    // The hardened runners (lines 22-33 and 61-71) and the accepted one (35-43) stay silent.
    let stray: Vec<_> = h
        .iter()
        .filter(|x| x.1 == "config.toml")
        .filter(|x| (22..=43).contains(&x.2) || (61..=71).contains(&x.2))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    // Only the dangerous capabilities, and only host paths among the volumes.
    let caps: Vec<u64> = h
        .iter()
        .filter(|x| x.0 == "gitlab-docker-cap-add")
        .map(|x| x.2)
        .collect();
    assert_eq!(caps, [16], "two capabilities on one line");
    let vols = h.iter().filter(|x| x.0 == "gitlab-docker-sensitive-volume").count();
    assert_eq!(vols, 1, "one line holds both the socket and /");
    // A broken file is a diagnostic with its position; the run goes on.
    let d = v["diagnostics"].as_array().unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["kind"], "parse-error");
    assert_eq!(d[0]["file"], "broken-config.toml");
    assert_eq!(d[0]["line"], 3);
}
