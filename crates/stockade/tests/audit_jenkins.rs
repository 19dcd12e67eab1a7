//! End-to-end tests of the Jenkins rules (`jenkins-*`: Jenkinsfiles and JCasC) and of the `k8s-*`
//! rules on inline pod YAML, through the real binary, on tests/fixtures/audit/jenkins.

mod audit_support;
use audit_support::*;

#[test]
fn jenkins_rules_snapshot() {
    let r = run_in(&fixtures("jenkins"), &["audit", "."]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    insta::assert_snapshot!(r.stdout);
}

#[test]
fn jenkins_rules_fire_where_they_should_and_nowhere_else() {
    let (code, v) = audit_json("jenkins");
    assert_eq!(code, 1);
    assert_every_rule_fires(&v, &["jenkins-"]);
    assert_silent(&v, "jenkins-hardened.yaml");
    assert_silent(&v, "no-run-as-user.groovy");
    assert_silent(&v, "helper.groovy");
    let h = hits(&v);
    let privileged: Vec<u64> = h
        .iter()
        .filter(|x| x.0 == "jenkins-docker-agent-privileged")
        .map(|x| x.2)
        .collect();
    // --privileged, the socket, host network (line 6); --pid=host, --cap-add (26); --cap-add (30).
    assert_eq!(privileged, [6, 26, 30]);
    let cap_drop: Vec<u64> = h
        .iter()
        .filter(|x| x.0 == "jenkins-docker-agent-cap-drop-missing")
        .map(|x| x.2)
        .collect();
    // The outer agent, the shorthand agent and the first inside(); the suppressed one is not.
    assert_eq!(cap_drop, [4, 20, 26]);
    // Inline pod YAML keeps the Jenkinsfile's line numbers.
    assert!(h.contains(&("k8s-privileged".into(), "Jenkinsfile.k8s".into(), 21)));
    assert!(h.contains(&("k8s-host-namespaces".into(), "Jenkinsfile.k8s".into(), 16)));
    assert!(h.contains(&("k8s-sensitive-hostpath".into(), "Jenkinsfile.k8s".into(), 25)));
}
