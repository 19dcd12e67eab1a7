//! Egress rules: the live nftables/iptables ruleset when the root is `/` and it can be read,
//! otherwise the saved rulesets under the root, reduced to "is outbound traffic dropped by
//! default, for everyone or for a given user".

use crate::host::Host;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("{cmd}: could not start: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{cmd}: {message}")]
    Failed { cmd: String, message: String },
    #[error("{cmd}: no answer within {secs} s")]
    Timeout { cmd: String, secs: u64 },
}

/// One ruleset's verdicts that matter for egress.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Egress {
    /// Where the rules came from ("nft list ruleset", "/etc/nftables.conf", ...).
    pub source: String,
    /// An output-hook chain (or iptables OUTPUT) with policy drop.
    pub output_drop: bool,
    /// A forward-hook chain (or iptables FORWARD) with policy drop: container traffic.
    pub forward_drop: bool,
    /// Users (names or uids as written) for whom an output rule drops or rejects everything.
    pub user_drops: Vec<String>,
}

impl Egress {
    pub fn drops_for(&self, name: &str, uid: Option<u32>) -> bool {
        self.output_drop
            || self
                .user_drops
                .iter()
                .any(|u| u == name || uid.is_some_and(|id| u.parse() == Ok(id)))
    }
}

/// nftables text (as `nft list ruleset` prints it or as /etc/nftables.conf declares it).
pub fn parse_nft(text: &str, source: &str) -> Egress {
    let mut e = Egress {
        source: source.to_string(),
        ..Default::default()
    };
    let mut in_chain = false;
    let mut hook = String::new();
    let mut depth = 0i32;
    let mut chain_depth = 0i32;
    for raw in text.lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        let opens = line.matches('{').count() as i32;
        let closes = line.matches('}').count() as i32;
        if line.starts_with("chain ") && opens > 0 {
            in_chain = true;
            hook.clear();
            chain_depth = depth + 1;
        }
        if in_chain {
            // Statements are separated by newlines or ';'.
            for stmt in line.split(';').map(str::trim) {
                let words: Vec<&str> = stmt.split_whitespace().collect();
                if let Some(i) = words.iter().position(|w| *w == "hook") {
                    hook = words.get(i + 1).unwrap_or(&"").to_string();
                }
                if let Some(i) = words.iter().position(|w| *w == "policy") {
                    let drop = words.get(i + 1).is_some_and(|p| p.starts_with("drop"));
                    match hook.as_str() {
                        "output" if drop => e.output_drop = true,
                        "forward" if drop => e.forward_drop = true,
                        _ => {}
                    }
                }
                if hook == "output"
                    && let Some(i) = words.iter().position(|w| *w == "skuid")
                {
                    {
                        let verdict = words.last().copied().unwrap_or("");
                        let narrowed = words
                            .iter()
                            .any(|w| w.ends_with("daddr") || w.ends_with("dport") || *w == "oif" || *w == "oifname");
                        let mut who = words.get(i + 1).copied().unwrap_or("");
                        if who == "==" {
                            who = words.get(i + 2).copied().unwrap_or("");
                        }
                        if matches!(verdict, "drop" | "reject") && !narrowed && who != "!=" {
                            e.user_drops.push(who.trim_matches('"').to_string());
                        }
                    }
                }
            }
        }
        depth += opens - closes;
        if in_chain && depth < chain_depth {
            in_chain = false;
        }
    }
    e
}

/// iptables-save format (`*filter`, `:OUTPUT DROP [0:0]`, `-A OUTPUT ... -j DROP`).
pub fn parse_iptables(text: &str, source: &str) -> Egress {
    let mut e = Egress {
        source: source.to_string(),
        ..Default::default()
    };
    let mut table = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_string();
            continue;
        }
        if table != "filter" {
            continue;
        }
        if let Some(rest) = line.strip_prefix(':') {
            let mut w = rest.split_whitespace();
            match (w.next(), w.next()) {
                (Some("OUTPUT"), Some("DROP")) => e.output_drop = true,
                (Some("FORWARD"), Some("DROP")) => e.forward_drop = true,
                _ => {}
            }
        } else if line.starts_with("-P OUTPUT DROP") {
            e.output_drop = true;
        } else if line.starts_with("-P FORWARD DROP") {
            e.forward_drop = true;
        } else if line.starts_with("-A OUTPUT") {
            let w: Vec<&str> = line.split_whitespace().collect();
            let target = w
                .iter()
                .position(|x| *x == "-j")
                .and_then(|i| w.get(i + 1))
                .copied()
                .unwrap_or("");
            let narrowed = w.iter().any(|x| {
                matches!(
                    *x,
                    "-d" | "--destination" | "--dport" | "--dports" | "-o" | "--out-interface"
                )
            });
            let negated = w
                .iter()
                .position(|x| *x == "--uid-owner")
                .is_some_and(|i| i > 0 && w[i - 1] == "!");
            if let Some(i) = w.iter().position(|x| *x == "--uid-owner")
                && matches!(target, "DROP" | "REJECT")
                && !narrowed
                && !negated
            {
                e.user_drops.extend(w.get(i + 1).map(|s| s.to_string()));
            }
        }
    }
    e
}

/// Saved rulesets under the root, in the places Debian, Red Hat and nftables keep them.
pub fn from_files(host: &Host) -> (Vec<Egress>, Vec<String>) {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for (path, nft) in [
        ("/etc/nftables.conf", true),
        ("/etc/sysconfig/nftables.conf", true),
        ("/etc/iptables/rules.v4", false),
        ("/etc/iptables/rules.v6", false),
        ("/etc/sysconfig/iptables", false),
    ] {
        match host.read_optional(path) {
            Ok(Some(text)) => found.push(if nft {
                parse_nft(&text, path)
            } else {
                parse_iptables(&text, path)
            }),
            Ok(None) => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    (found, errors)
}

/// Runs a read-only listing command of the live host, with a deadline, and returns stdout.
pub fn run_listing(argv: &[&str], timeout: Duration) -> Result<String, FirewallError> {
    let cmd = argv.join(" ");
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("LC_ALL", "C")
        .spawn()
        .map_err(|source| FirewallError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    // Read stdout on a thread so a large ruleset cannot fill the pipe while we wait.
    let mut out = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(FirewallError::Timeout {
                    cmd,
                    secs: timeout.as_secs(),
                });
            }
        }
    };
    let stdout = reader.join().unwrap_or_default();
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let message = err
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("failed")
            .trim()
            .to_string();
        return Err(FirewallError::Failed { cmd, message });
    }
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nft_output_policy_and_user_rules() {
        let e = parse_nft(
            "table inet egress {\n\tchain out {\n\t\ttype filter hook output priority filter; policy drop;\n\t\toif \"lo\" accept\n\t}\n\tchain fwd {\n\t\ttype filter hook forward priority 0; policy accept;\n\t}\n}\n",
            "x",
        );
        assert!(e.output_drop && !e.forward_drop);
        let u = parse_nft(
            "table inet f {\n chain output {\n  type filter hook output priority 0; policy accept;\n  meta skuid \"runner\" ip daddr 10.0.0.0/8 accept\n  meta skuid \"runner\" tcp dport 22 drop\n  meta skuid \"runner\" drop\n  meta skuid 1002 reject\n }\n chain input { type filter hook input priority 0; policy drop; }\n}\n",
            "x",
        );
        assert!(!u.output_drop);
        assert_eq!(u.user_drops, vec!["runner", "1002"]);
        assert!(u.drops_for("runner", Some(1001)));
        assert!(u.drops_for("other", Some(1002)));
        assert!(!u.drops_for("other", Some(1003)));
    }

    #[test]
    fn input_drop_is_not_egress() {
        let e = parse_nft(
            "table inet filter {\n  chain input {\n    type filter hook input priority 0; policy drop;\n  }\n  chain output {\n    type filter hook output priority 0; policy accept;\n  }\n}\n",
            "x",
        );
        assert!(!e.output_drop && e.user_drops.is_empty());
    }

    #[test]
    fn iptables_save() {
        let e = parse_iptables(
            "*nat\n:OUTPUT DROP [0:0]\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -m owner --uid-owner runner -d 10.0.0.0/8 -j DROP\n-A OUTPUT -m owner --uid-owner gitlab-runner -j REJECT --reject-with icmp-port-unreachable\nCOMMIT\n",
            "x",
        );
        assert!(!e.output_drop && e.forward_drop);
        assert_eq!(e.user_drops, vec!["gitlab-runner"]);
    }
}
