//! What the resolver and proxy tasks of one job share: the compiled policy, the synthetic
//! names, the upstream resolver, the host's own addresses and the event sink.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::log::{Pending, Sink, Verdict};
use crate::names::Names;
use crate::policy::{CompiledPolicy, Mode};
use crate::upstream::{Lookup, Upstream};

pub struct State {
    pub policy: CompiledPolicy,
    pub sink: Arc<Sink>,
    pub names: Mutex<Names>,
    pub upstream: Upstream,
    /// The host's own addresses, listed at the first upstream-resolved connection.
    pub host_addrs: std::sync::OnceLock<Result<Vec<IpAddr>, String>>,
    /// Finds the job process behind each attempt.
    pub owners: crate::owner::Owners,
}

/// Why a connection did not go through.
#[derive(Debug)]
pub enum Fail {
    /// The policy refused it: the event's verdict is `refused`.
    Refused(String),
    /// Allowed, but it could not be served (the event keeps its verdict and gets this error).
    Error(String),
}

impl State {
    pub fn audit(&self) -> bool {
        self.policy.mode == Mode::Audit
    }

    /// Records one check on the event. The first passing check names the rule; a failing check
    /// refuses, or in audit mode flags (and lets it through). Returns whether to go on.
    pub fn judge(&self, p: &mut Pending, allowed: bool, rule: String) -> bool {
        if allowed {
            if p.event.rule.is_empty() {
                p.event.verdict = Verdict::Allowed;
                p.event.rule = rule;
            }
            true
        } else if self.audit() {
            if p.event.verdict == Verdict::Flagged {
                p.event.rule = format!("{}; {rule}", p.event.rule);
            } else {
                p.event.verdict = Verdict::Flagged;
                p.event.rule = rule;
            }
            true
        } else {
            p.event.verdict = Verdict::Refused;
            p.event.rule = rule;
            false
        }
    }

    /// The addresses the proxy may connect to for `name`, in order: the pin, or the upstream
    /// addresses that are public (or inside allow_cidrs).
    pub async fn resolve(&self, p: &mut Pending, name: &str) -> Result<Vec<IpAddr>, Fail> {
        if let Some(pin) = self.policy.pin(name) {
            p.event.address = Some(pin);
            return Ok(vec![pin]);
        }
        let addrs = match self.upstream.lookup(name).await {
            Ok(Lookup::Addrs(a)) => a,
            Ok(Lookup::NxDomain) => return Err(Fail::Error(format!("{name}: no such name"))),
            Ok(Lookup::NoData) => return Err(Fail::Error(format!("{name}: no address"))),
            Err(e) => return Err(Fail::Error(e)),
        };
        let host_addrs = match self
            .host_addrs
            .get_or_init(|| crate::addr::host_addresses().map_err(|e| e.to_string()))
        {
            Ok(h) => h,
            // Without them the check would be incomplete: do not guess.
            Err(e) => return Err(Fail::Error(format!("list the host's own addresses: {e}"))),
        };
        let ok: Vec<IpAddr> = addrs
            .iter()
            .copied()
            .filter(|a| self.policy.cidr_for(*a).is_some() || crate::addr::forbidden(*a, host_addrs).is_none())
            .collect();
        if let Some(first) = ok.first() {
            p.event.address = Some(*first);
            return Ok(ok);
        }
        // DNS rebinding and metadata tricks land here: an allowed name pointing inward.
        let a = addrs[0];
        let why = crate::addr::forbidden(a, host_addrs).unwrap_or("forbidden");
        p.event.address = Some(a);
        if self.judge(p, false, format!("{name} resolved to {a}: {why}")) {
            Ok(addrs)
        } else {
            Err(Fail::Refused(p.event.rule.clone()))
        }
    }
}
