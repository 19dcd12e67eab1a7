//! The `[egress]` table of the policy file and the CLI flags that amend it, checked once into
//! a compiled form that the resolver and the proxy consult for every name and address.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::presets;

/// What the job may reach. Default: `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// No network at all: only `lo`, no route; every connection fails at once.
    #[default]
    None,
    /// Only the names in `allow` (and the ranges in `allow_cidrs`); everything else is refused.
    Allowlist,
    /// Everything is allowed, and what `allowlist` would refuse is logged as flagged.
    Audit,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Allowlist => "allowlist",
            Mode::Audit => "audit",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Mode {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Mode::None),
            "allowlist" => Ok(Mode::Allowlist),
            "audit" => Ok(Mode::Audit),
            _ => Err(PolicyError::Mode(s.to_string())),
        }
    }
}

/// The `[egress]` table. Every field is optional; the defaults give a job no network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressPolicy {
    /// `"none"` (default), `"allowlist"` or `"audit"`.
    pub mode: Mode,
    /// Names the job may connect to: `"github.com"`, `"*.githubusercontent.com"` (any name below,
    /// not the name itself), `"registry.npmjs.org:443"` (only that port; without a port, 80 and
    /// 443), or a preset: `"@github"`, `"@npm"`, `"@pypi"`, `"@crates"`, `"@debian"`,
    /// `"@docker-hub"`, `"@ghcr"`, `"@gitlab"`. Default: empty.
    pub allow: Vec<String>,
    /// Address ranges the job may connect to directly, by IP, on any port: `"10.1.0.0/16"`,
    /// `"192.0.2.7"` (one address). Also exempts resolved addresses in these ranges from the
    /// private-address refusal. Default: empty.
    pub allow_cidrs: Vec<String>,
    /// Pins a name to an address, like curl's `--resolve`: the resolver and the proxy use this
    /// address and never ask upstream, and the address is accepted even where it is private or
    /// loopback. Pinning does not allow a name; `allow` does. Default: empty.
    pub resolve: BTreeMap<String, String>,
    /// Resolvers the supervisor forwards allowed names to: `"192.0.2.53"` or `"[2001:db8::53]:5353"`.
    /// Default: empty, meaning the `nameserver` lines of the host's /etc/resolv.conf.
    pub upstream: Vec<String>,
}

/// The egress flags of `stockade run`, as given; `EgressPolicy::apply_cli` folds them in.
#[derive(Debug, Clone, Default)]
pub struct EgressCli {
    /// `--egress MODE`
    pub mode: Option<String>,
    /// `--allow-domain NAME[:PORT]`, repeatable.
    pub allow_domains: Vec<String>,
    /// `--allow-cidr CIDR`, repeatable.
    pub allow_cidrs: Vec<String>,
    /// `--resolve NAME=IP`, repeatable.
    pub resolve: Vec<String>,
}

/// A policy entry that cannot be used; the message names the field and the entry.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("egress.mode: unknown mode {0:?} (expected none, allowlist or audit)")]
    Mode(String),
    #[error("egress.allow: entry {entry:?}: {reason}")]
    Allow { entry: String, reason: String },
    #[error("egress.allow_cidrs: entry {entry:?}: {reason}")]
    Cidr { entry: String, reason: String },
    #[error("egress.resolve: entry {entry:?}: {reason}")]
    Resolve { entry: String, reason: String },
    #[error("egress.upstream: entry {entry:?}: {reason}")]
    Upstream { entry: String, reason: String },
}

fn allow_err(entry: &str, reason: impl Into<String>) -> PolicyError {
    PolicyError::Allow {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

impl EgressPolicy {
    /// Whether the sandbox must set egress up at all (mode is not `none`).
    pub fn is_enabled(&self) -> bool {
        self.mode != Mode::None
    }

    /// Folds the CLI flags in: `--egress` replaces the mode; the lists are appended to. An
    /// `--allow-domain` or `--allow-cidr` without `--egress` turns mode `none` into `allowlist`,
    /// since asking for a destination means asking for the network. Checks what it adds.
    pub fn apply_cli(&mut self, cli: &EgressCli) -> Result<(), PolicyError> {
        if let Some(m) = &cli.mode {
            self.mode = m.parse()?;
        } else if self.mode == Mode::None && (!cli.allow_domains.is_empty() || !cli.allow_cidrs.is_empty()) {
            self.mode = Mode::Allowlist;
        }
        for d in &cli.allow_domains {
            parse_allow_entry(d)?;
            self.allow.push(d.clone());
        }
        for c in &cli.allow_cidrs {
            parse_cidr(c)?;
            self.allow_cidrs.push(c.clone());
        }
        for r in &cli.resolve {
            let (name, ip) = r.split_once('=').ok_or_else(|| PolicyError::Resolve {
                entry: r.clone(),
                reason: "expected NAME=IP".into(),
            })?;
            parse_pin(name, ip)?;
            self.resolve.insert(name.to_string(), ip.to_string());
        }
        Ok(())
    }

    /// Checks every entry; the first bad one is the error, named with its field.
    pub fn validate(&self) -> Result<(), PolicyError> {
        self.compile().map(|_| ())
    }

    /// The checked, normalised form used at run time.
    pub fn compile(&self) -> Result<CompiledPolicy, PolicyError> {
        let mut rules = Vec::new();
        for entry in &self.allow {
            let trimmed = entry.trim();
            if let Some(preset) = trimmed.strip_prefix('@') {
                let list = presets::get(preset).ok_or_else(|| {
                    allow_err(
                        entry,
                        format!("unknown preset (known: {})", presets::names().join(", ")),
                    )
                })?;
                for line in presets::entries(list) {
                    let mut r = parse_allow_entry(line)?;
                    r.origin = format!("@{preset} {line}");
                    rules.push(r);
                }
            } else {
                rules.push(parse_allow_entry(entry)?);
            }
        }
        let mut cidrs = Vec::new();
        for c in &self.allow_cidrs {
            cidrs.push((parse_cidr(c)?, c.trim().to_string()));
        }
        let mut pins = BTreeMap::new();
        for (name, ip) in &self.resolve {
            let (n, a) = parse_pin(name, ip)?;
            pins.insert(n, a);
        }
        let mut upstream = Vec::new();
        for u in &self.upstream {
            upstream.push(parse_upstream(u)?);
        }
        Ok(CompiledPolicy {
            mode: self.mode,
            rules,
            cidrs,
            pins,
            upstream,
        })
    }
}

/// Which ports an allow rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ports {
    /// No port given: 80 and 443.
    Web,
    One(u16),
}

impl Ports {
    fn covers(self, port: u16) -> bool {
        match self {
            Ports::Web => port == 80 || port == 443,
            Ports::One(p) => p == port,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Exact(String),
    /// `*.example.com`, stored as `example.com`: matches names strictly below it.
    Below(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowRule {
    pub pattern: Pattern,
    pub ports: Ports,
    /// How the rule reads in the log: the entry, or `@preset entry`.
    pub origin: String,
}

impl AllowRule {
    fn matches_name(&self, name: &str) -> bool {
        match &self.pattern {
            Pattern::Exact(n) => n == name,
            Pattern::Below(suffix) => {
                name.len() > suffix.len() + 1
                    && name.ends_with(suffix.as_str())
                    && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
            }
        }
    }
}

/// The policy after checking: what the resolver and proxy ask.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    pub mode: Mode,
    pub rules: Vec<AllowRule>,
    pub cidrs: Vec<(IpNet, String)>,
    pub pins: BTreeMap<String, IpAddr>,
    pub upstream: Vec<SocketAddr>,
}

/// The allowlist's answer for one name or address, before audit mode softens it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The rule that allowed it, or why it was refused.
    pub rule: String,
}

impl Decision {
    pub fn allow(rule: impl Into<String>) -> Self {
        Decision {
            allowed: true,
            rule: rule.into(),
        }
    }
    pub fn refuse(rule: impl Into<String>) -> Self {
        Decision {
            allowed: false,
            rule: rule.into(),
        }
    }
}

impl CompiledPolicy {
    /// May the job connect to `name` on `port`? `name` must be normalised (see `normalize_name`).
    pub fn check_name(&self, name: &str, port: u16) -> Decision {
        let mut other_port = false;
        for r in &self.rules {
            if r.matches_name(name) {
                if r.ports.covers(port) {
                    return Decision::allow(format!("allow {}", r.origin));
                }
                other_port = true;
            }
        }
        if other_port {
            Decision::refuse(format!("port {port} not allowed for {name}"))
        } else {
            Decision::refuse("name not in allowlist")
        }
    }

    /// May the resolver answer `name`? Yes if any port of it is allowed.
    pub fn check_dns(&self, name: &str) -> Decision {
        match self.rules.iter().find(|r| r.matches_name(name)) {
            Some(r) => Decision::allow(format!("allow {}", r.origin)),
            None => Decision::refuse("name not in allowlist"),
        }
    }

    /// The `allow_cidrs` entry that covers `ip`, if any.
    pub fn cidr_for(&self, ip: IpAddr) -> Option<&str> {
        let ip = crate::addr::canonical(ip);
        self.cidrs
            .iter()
            .find(|(net, _)| net.contains(&ip))
            .map(|(_, s)| s.as_str())
    }

    pub fn pin(&self, name: &str) -> Option<IpAddr> {
        self.pins.get(name).copied()
    }
}

/// Lower case, no trailing dot; `None` unless it is a host name (letters, digits, `-`, `_`,
/// labels of 1 to 63 bytes, at most 253 bytes). IP literals are not names.
pub fn normalize_name(raw: &str) -> Option<String> {
    let n = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    if n.is_empty() || n.len() > 253 || n.parse::<IpAddr>().is_ok() {
        return None;
    }
    for label in n.split('.') {
        if label.is_empty()
            || label.len() > 63
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
    }
    Some(n)
}

fn parse_allow_entry(entry: &str) -> Result<AllowRule, PolicyError> {
    let e = entry.trim();
    if e.is_empty() {
        return Err(allow_err(entry, "empty entry"));
    }
    if e.contains("://") || e.contains('/') || e.contains('?') || e.contains('#') {
        return Err(allow_err(
            entry,
            "a URL, not a name: give the host, e.g. \"github.com\" or \"github.com:443\"",
        ));
    }
    if e.starts_with('@') {
        return Err(allow_err(entry, "presets cannot be nested or combined"));
    }
    if e.contains('@') {
        return Err(allow_err(entry, "contains '@': give only the host name, no user"));
    }
    if e.parse::<IpAddr>().is_ok() || e.starts_with('[') {
        return Err(allow_err(
            entry,
            "an address, not a name: list addresses in allow_cidrs",
        ));
    }
    let (host, ports) = match e.rsplit_once(':') {
        Some((h, p)) => {
            let port: u16 = p
                .parse()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| allow_err(entry, format!("bad port {p:?} (expected 1-65535)")))?;
            (h, Ports::One(port))
        }
        None => (e, Ports::Web),
    };
    if host.parse::<IpAddr>().is_ok() {
        return Err(allow_err(
            entry,
            "an address, not a name: list addresses in allow_cidrs",
        ));
    }
    let pattern = if let Some(rest) = host.strip_prefix("*.") {
        let n = normalize_name(rest).ok_or_else(|| {
            allow_err(
                entry,
                "bad wildcard: only a leading \"*.\" followed by a name is allowed",
            )
        })?;
        Pattern::Below(n)
    } else if host.contains('*') {
        return Err(allow_err(
            entry,
            "bad wildcard: only a leading \"*.\" followed by a name is allowed",
        ));
    } else {
        Pattern::Exact(normalize_name(host).ok_or_else(|| allow_err(entry, "not a valid host name"))?)
    };
    Ok(AllowRule {
        pattern,
        ports,
        origin: e.to_string(),
    })
}

fn parse_cidr(entry: &str) -> Result<IpNet, PolicyError> {
    let e = entry.trim();
    let err = |reason: &str| PolicyError::Cidr {
        entry: entry.to_string(),
        reason: reason.to_string(),
    };
    if e.is_empty() {
        return Err(err("empty entry"));
    }
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    let net: IpNet = e.parse().map_err(|_| err("not an address or ADDRESS/PREFIX range"))?;
    if net.trunc() != net {
        return Err(err(&format!("host bits set: did you mean {}?", net.trunc())));
    }
    Ok(net)
}

fn parse_pin(name: &str, ip: &str) -> Result<(String, IpAddr), PolicyError> {
    let entry = format!("{name}={ip}");
    let n = normalize_name(name.trim()).ok_or_else(|| PolicyError::Resolve {
        entry: entry.clone(),
        reason: "not a valid host name".into(),
    })?;
    let a: IpAddr = ip.trim().parse().map_err(|_| PolicyError::Resolve {
        entry: entry.clone(),
        reason: "not an IP address".into(),
    })?;
    Ok((n, a))
}

fn parse_upstream(entry: &str) -> Result<SocketAddr, PolicyError> {
    let e = entry.trim();
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    e.parse::<SocketAddr>().map_err(|_| PolicyError::Upstream {
        entry: entry.to_string(),
        reason: "expected IP or IP:PORT ([IPv6]:PORT)".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pol(allow: &[&str]) -> CompiledPolicy {
        EgressPolicy {
            mode: Mode::Allowlist,
            allow: allow.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
        .compile()
        .unwrap()
    }

    #[test]
    fn default_is_none_and_toml_round_trips() {
        let p = EgressPolicy::default();
        assert_eq!(p.mode, Mode::None);
        let text = r#"
            mode = "allowlist"
            allow = ["github.com", "*.githubusercontent.com", "registry.npmjs.org:443", "@pypi"]
            allow_cidrs = ["10.1.0.0/16", "192.0.2.7"]
            resolve = { "allowed.test" = "127.0.0.1" }
            upstream = ["127.0.0.1:5353"]
        "#;
        let p: EgressPolicy = toml::from_str(text).unwrap();
        p.validate().unwrap();
        let back: EgressPolicy = toml::from_str(&toml::to_string(&p).unwrap()).unwrap();
        assert_eq!(p, back);
    }

    #[test]
    fn unknown_key_is_an_error() {
        let err = toml::from_str::<EgressPolicy>("mode = \"none\"\nallowed = []\n").unwrap_err();
        assert!(err.to_string().contains("allowed"), "{err}");
    }

    #[test]
    fn names_match_exactly_and_below_wildcards() {
        let p = pol(&["github.com", "*.githubusercontent.com"]);
        assert!(p.check_name("github.com", 443).allowed);
        assert!(p.check_name("github.com", 80).allowed);
        assert!(!p.check_name("github.com", 22).allowed);
        assert!(!p.check_name("api.github.com", 443).allowed);
        assert!(!p.check_name("evilgithub.com", 443).allowed);
        assert!(p.check_name("raw.githubusercontent.com", 443).allowed);
        assert!(p.check_name("a.b.githubusercontent.com", 443).allowed);
        assert!(!p.check_name("githubusercontent.com", 443).allowed);
        assert!(!p.check_name("xgithubusercontent.com", 443).allowed);
        assert_eq!(
            p.check_name("raw.githubusercontent.com", 443).rule,
            "allow *.githubusercontent.com"
        );
    }

    #[test]
    fn explicit_port_replaces_the_web_ports() {
        let p = pol(&["registry.npmjs.org:443", "git.example:22"]);
        assert!(p.check_name("registry.npmjs.org", 443).allowed);
        assert!(!p.check_name("registry.npmjs.org", 80).allowed);
        assert!(p.check_name("git.example", 22).allowed);
        let d = p.check_name("git.example", 443);
        assert!(!d.allowed);
        assert!(d.rule.contains("port 443"), "{}", d.rule);
        assert!(p.check_dns("git.example").allowed);
        assert!(!p.check_dns("other.example").allowed);
    }

    #[test]
    fn presets_expand_and_name_themselves() {
        let p = pol(&[
            "@github",
            "@npm",
            "@pypi",
            "@crates",
            "@debian",
            "@docker-hub",
            "@ghcr",
            "@gitlab",
        ]);
        let d = p.check_name("codeload.github.com", 443);
        assert!(d.allowed);
        assert_eq!(d.rule, "allow @github *.github.com");
        assert!(p.check_name("github.com", 22).allowed);
        assert!(p.check_name("files.pythonhosted.org", 443).allowed);
        assert!(p.check_name("index.crates.io", 443).allowed);
        assert!(!p.check_name("example.org", 443).allowed);
    }

    #[test]
    fn bad_entries_name_themselves() {
        for (entry, want) in [
            ("*.*", "wildcard"),
            ("", "empty"),
            ("   ", "empty"),
            ("https://github.com/foo", "URL"),
            ("github.com/foo", "URL"),
            ("github.com:0", "bad port"),
            ("github.com:65536", "bad port"),
            ("github.com:https", "bad port"),
            ("foo.*.com", "wildcard"),
            ("*", "wildcard"),
            ("*github.com", "wildcard"),
            ("10.0.0.1", "allow_cidrs"),
            ("[::1]:443", "allow_cidrs"),
            ("@nosuch", "unknown preset"),
            ("git@github.com", "'@'"),
            ("bad_host!.com", "valid host"),
            ("a..b", "valid host"),
        ] {
            let p = EgressPolicy {
                allow: vec![entry.to_string()],
                ..Default::default()
            };
            let err = p.validate().unwrap_err().to_string();
            assert!(err.contains(&format!("{entry:?}")), "{entry}: {err}");
            assert!(err.contains(want), "{entry}: {err}");
            assert!(err.starts_with("egress.allow:"), "{err}");
        }
    }

    #[test]
    fn cidrs_resolve_and_upstream_are_checked() {
        for c in ["10.0.0.0/33", "10.0.0.1/8", "nope", "", "10.0.0/8"] {
            let p = EgressPolicy {
                allow_cidrs: vec![c.into()],
                ..Default::default()
            };
            let err = p.validate().unwrap_err().to_string();
            assert!(err.starts_with("egress.allow_cidrs:"), "{err}");
            assert!(err.contains(&format!("{c:?}")), "{err}");
        }
        let p = EgressPolicy {
            resolve: [("x.test".to_string(), "999.1.1.1".to_string())].into(),
            ..Default::default()
        };
        assert!(p.validate().unwrap_err().to_string().contains("x.test=999.1.1.1"));
        let p = EgressPolicy {
            upstream: vec!["resolver.example".into()],
            ..Default::default()
        };
        assert!(p.validate().unwrap_err().to_string().starts_with("egress.upstream:"));
        let p = EgressPolicy {
            allow_cidrs: vec!["10.1.0.0/16".into(), "192.0.2.7".into(), "fd00::/8".into()],
            upstream: vec!["127.0.0.1".into(), "[::1]:5353".into()],
            ..Default::default()
        }
        .compile()
        .unwrap();
        assert_eq!(p.cidr_for("10.1.200.3".parse().unwrap()), Some("10.1.0.0/16"));
        assert_eq!(p.cidr_for("192.0.2.7".parse().unwrap()), Some("192.0.2.7"));
        assert_eq!(p.cidr_for("::ffff:10.1.0.1".parse().unwrap()), Some("10.1.0.0/16"));
        assert_eq!(p.cidr_for("10.2.0.1".parse().unwrap()), None);
        assert_eq!(p.upstream[0], "127.0.0.1:53".parse().unwrap());
        assert_eq!(p.upstream[1], "[::1]:5353".parse().unwrap());
    }

    #[test]
    fn cli_flags_fold_in() {
        let mut p = EgressPolicy::default();
        p.apply_cli(&EgressCli {
            mode: None,
            allow_domains: vec!["allowed.test:8443".into()],
            allow_cidrs: vec!["10.9.0.0/16".into()],
            resolve: vec!["Allowed.Test.=127.0.0.1".into()],
        })
        .unwrap();
        assert_eq!(p.mode, Mode::Allowlist);
        let c = p.compile().unwrap();
        assert!(c.check_name("allowed.test", 8443).allowed);
        assert_eq!(c.pin("allowed.test"), Some("127.0.0.1".parse().unwrap()));

        let mut p = EgressPolicy::default();
        p.apply_cli(&EgressCli {
            mode: Some("audit".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(p.mode, Mode::Audit);

        let mut p = EgressPolicy::default();
        let err = p
            .apply_cli(&EgressCli {
                resolve: vec!["allowed.test:127.0.0.1".into()],
                ..Default::default()
            })
            .unwrap_err();
        assert!(err.to_string().contains("NAME=IP"), "{err}");
        let err = p
            .apply_cli(&EgressCli {
                mode: Some("open".into()),
                ..Default::default()
            })
            .unwrap_err();
        assert!(err.to_string().contains("\"open\""), "{err}");
        let err = p
            .apply_cli(&EgressCli {
                allow_domains: vec!["*.*".into()],
                ..Default::default()
            })
            .unwrap_err();
        assert!(err.to_string().contains("\"*.*\""), "{err}");
    }

    #[test]
    fn names_normalise() {
        assert_eq!(normalize_name("GitHub.COM.").as_deref(), Some("github.com"));
        assert_eq!(normalize_name("127.0.0.1"), None);
        assert_eq!(normalize_name("::1"), None);
        assert_eq!(normalize_name("a b"), None);
        assert_eq!(normalize_name(&"a".repeat(64)), None);
    }
}
