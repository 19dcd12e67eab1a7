//! What the job's environment and /etc/resolv.conf say when egress is on: the proxy variables
//! (for clients that honour them) and stockade's resolver as the only nameserver.

use crate::netns::{DNS_ADDR, PROXY_ADDR};
use crate::policy::{EgressPolicy, Mode};

/// HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY and their lowercase forms; empty with mode none.
pub fn job_env(policy: &EgressPolicy) -> Vec<(String, String)> {
    if policy.mode == Mode::None {
        return Vec::new();
    }
    let url = format!("http://{PROXY_ADDR}");
    let no_proxy = "localhost,127.0.0.1,::1".to_string();
    let mut v = Vec::new();
    for (k, val) in [
        ("HTTP_PROXY", &url),
        ("HTTPS_PROXY", &url),
        ("ALL_PROXY", &url),
        ("NO_PROXY", &no_proxy),
    ] {
        v.push((k.to_string(), val.clone()));
        v.push((k.to_ascii_lowercase(), val.clone()));
    }
    v
}

/// The job's /etc/resolv.conf; empty with mode none (the sandbox then leaves the host's).
pub fn resolv_conf(policy: &EgressPolicy) -> String {
    if policy.mode == Mode::None {
        return String::new();
    }
    format!(
        "# Written by stockade: the job's only resolver, which answers allowed names only.\n\
         nameserver {}\noptions timeout:2 attempts:2\n",
        DNS_ADDR.ip()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_and_resolv_conf_follow_the_mode() {
        let mut p = EgressPolicy::default();
        assert!(job_env(&p).is_empty());
        assert!(resolv_conf(&p).is_empty());
        p.mode = Mode::Allowlist;
        let env = job_env(&p);
        for k in ["HTTP_PROXY", "https_proxy", "ALL_PROXY", "no_proxy"] {
            assert!(env.iter().any(|(n, _)| n == k), "{k}");
        }
        assert!(env.contains(&("HTTPS_PROXY".into(), "http://127.0.0.1:3128".into())));
        assert!(resolv_conf(&p).contains("\nnameserver 127.0.0.1\n"));
    }
}
