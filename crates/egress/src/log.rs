//! The egress log: one structured event per connection attempt or DNS question, kept for the
//! job report, and a one-screen summary of allowed and refused destinations for stderr.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use serde::Serialize;

/// Events kept per job; past this, attempts are only counted (a DNS flood must not exhaust the
/// supervisor's memory).
pub const MAX_EVENTS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// A DNS question to stockade's resolver.
    Dns,
    /// HTTPS or other TLS: decided by SNI (and CONNECT host).
    Tls,
    /// Plain HTTP: decided by the request target / Host header.
    Http,
    /// Other TCP: decided by the name the job resolved, the CONNECT host, or allow_cidrs.
    Tcp,
}

/// How the attempt reached stockade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    DnsUdp,
    DnsTcp,
    /// HTTP CONNECT to the proxy (HTTPS_PROXY).
    Connect,
    /// A plain HTTP request with an absolute URI to the proxy (HTTP_PROXY).
    ProxyRequest,
    /// A connection that ignored the proxy settings and was redirected.
    Transparent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allowed,
    Refused,
    /// Audit mode: allowed, but the allowlist would have refused it (`rule` says why).
    Flagged,
}

/// One attempt. Field names are part of the job report schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EgressEvent {
    /// When the attempt began, RFC 3339 UTC.
    pub time: String,
    /// The process that made it, where known.
    pub pid: Option<u32>,
    /// The job-side socket address (inside the job's network namespace): with the time, it
    /// identifies the socket for a monitor that knows the job's processes.
    pub source: Option<SocketAddr>,
    pub protocol: Protocol,
    pub via: Via,
    /// The name that decided (CONNECT host, SNI, Host, or the DNS question).
    pub name: Option<String>,
    /// The address stockade resolved and connected to (DNS: the upstream answer, if asked).
    pub address: Option<IpAddr>,
    pub port: u16,
    /// Where the job itself tried to go (transparent connections), if not via the proxy.
    pub client_target: Option<SocketAddr>,
    /// DNS only: the question's type (A, AAAA, TXT, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_type: Option<String>,
    pub verdict: Verdict,
    /// The allow rule that let it through, or why it was refused or flagged.
    pub rule: String,
    /// Allowed, but failed later (upstream unreachable, NXDOMAIN, reset), or cut at job end.
    pub error: Option<String>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub duration_ms: f64,
}

/// Everything egress saw during one job.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EgressLog {
    pub mode: String,
    pub events: Vec<EgressEvent>,
    /// Attempts past `MAX_EVENTS`, counted but not kept.
    pub dropped_events: u64,
}

impl EgressLog {
    pub fn count(&self, verdict: Verdict) -> usize {
        self.events.iter().filter(|e| e.verdict == verdict).count()
    }

    /// One screen for stderr: allowed, flagged and refused destinations with counts.
    pub fn summary(&self) -> String {
        #[derive(Default)]
        struct Row {
            count: u64,
            up: u64,
            down: u64,
            rule: String,
        }
        let mut groups: BTreeMap<(Verdict, String, String), Row> = BTreeMap::new();
        for e in &self.events {
            let dest = match (&e.name, e.protocol, e.client_target) {
                (Some(n), Protocol::Dns, _) => format!("dns {n}"),
                (Some(n), _, _) => format!("{n}:{}", e.port),
                (None, _, Some(t)) => t.to_string(),
                (None, _, None) => format!("?:{}", e.port),
            };
            let row = groups.entry((e.verdict, dest, e.rule.clone())).or_default();
            row.count += 1;
            row.up += e.bytes_up;
            row.down += e.bytes_down;
            if row.rule.is_empty() {
                row.rule = e.rule.clone();
            }
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "egress ({}): {} allowed, {} flagged, {} refused{}",
            self.mode,
            self.count(Verdict::Allowed),
            self.count(Verdict::Flagged),
            self.count(Verdict::Refused),
            if self.dropped_events > 0 {
                format!(" (+{} not kept)", self.dropped_events)
            } else {
                String::new()
            }
        );
        for (verdict, title) in [
            (Verdict::Refused, "refused"),
            (Verdict::Flagged, "flagged (audit: the allowlist would refuse)"),
            (Verdict::Allowed, "allowed"),
        ] {
            let rows: Vec<_> = groups.iter().filter(|((v, _, _), _)| *v == verdict).collect();
            if rows.is_empty() {
                continue;
            }
            let _ = writeln!(out, "  {title}:");
            let mut rows = rows;
            rows.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
            const LINES: usize = 8;
            for ((_, dest, _), row) in rows.iter().take(LINES) {
                let bytes = if row.up + row.down > 0 {
                    format!("  {} up, {} down", human(row.up), human(row.down))
                } else {
                    String::new()
                };
                let _ = writeln!(out, "    {:>5}x {dest:<40} {}{bytes}", row.count, clip(&row.rule, 48));
            }
            if rows.len() > LINES {
                let _ = writeln!(out, "    ... and {} more", rows.len() - LINES);
            }
        }
        out
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn human(b: u64) -> String {
    const U: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// Where finished events go; shared by every task of the supervisor.
#[derive(Debug, Default)]
pub struct Sink {
    inner: Mutex<(Vec<EgressEvent>, u64)>,
    /// Attempts begun and not yet logged.
    active: AtomicU64,
}

impl Sink {
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    pub fn logged(&self) -> usize {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0.len() + g.1 as usize
    }

    pub fn push(&self, e: EgressEvent) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.0.len() < MAX_EVENTS {
            g.0.push(e);
        } else {
            g.1 += 1;
        }
    }

    pub fn take(&self) -> (Vec<EgressEvent>, u64) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut ev = std::mem::take(&mut g.0);
        ev.sort_by(|a, b| a.time.cmp(&b.time));
        (ev, std::mem::take(&mut g.1))
    }
}

/// Live byte counters of one connection, written by the relay.
#[derive(Debug, Default)]
pub struct Counters {
    pub up: AtomicU64,
    pub down: AtomicU64,
}

/// An event being built; it is logged when dropped, so a connection cut short by the end of the
/// job (its task dropped) is still logged, with the bytes it had moved.
pub struct Pending {
    pub event: EgressEvent,
    pub counters: Arc<Counters>,
    started: Instant,
    sink: Arc<Sink>,
    done: bool,
}

impl Pending {
    pub fn new(sink: Arc<Sink>, protocol: Protocol, via: Via, port: u16) -> Self {
        sink.active.fetch_add(1, Ordering::Relaxed);
        Pending {
            event: EgressEvent {
                time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                pid: None,
                source: None,
                protocol,
                via,
                name: None,
                address: None,
                port,
                client_target: None,
                query_type: None,
                verdict: Verdict::Refused,
                rule: String::new(),
                error: None,
                bytes_up: 0,
                bytes_down: 0,
                duration_ms: 0.0,
            },
            counters: Arc::new(Counters::default()),
            started: Instant::now(),
            sink,
            done: false,
        }
    }

    /// Logs the event now, with this outcome.
    pub fn finish(mut self, error: Option<String>) {
        if error.is_some() {
            self.event.error = error;
        }
        self.flush();
    }

    fn flush(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        self.event.bytes_up = self.counters.up.load(Ordering::Relaxed);
        self.event.bytes_down = self.counters.down.load(Ordering::Relaxed);
        self.event.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        self.sink.push(self.event.clone());
        self.sink.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            if self.event.error.is_none() && self.event.verdict != Verdict::Refused {
                self.event.error = Some("cut when egress stopped".into());
            }
            self.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_groups_and_counts() {
        let sink = Arc::new(Sink::default());
        for i in 0..3 {
            let mut p = Pending::new(sink.clone(), Protocol::Tls, Via::Connect, 443);
            p.event.name = Some("allowed.test".into());
            p.event.verdict = Verdict::Allowed;
            p.event.rule = "allow allowed.test".into();
            p.counters.down.store(1024 * (i + 1), Ordering::Relaxed);
            p.finish(None);
        }
        let mut p = Pending::new(sink.clone(), Protocol::Dns, Via::DnsUdp, 53);
        p.event.name = Some("secret.evil.test".into());
        p.event.rule = "name not in allowlist".into();
        drop(p); // logged on drop
        let (events, dropped) = sink.take();
        let log = EgressLog {
            mode: "allowlist".into(),
            events,
            dropped_events: dropped,
        };
        assert_eq!(log.count(Verdict::Allowed), 3);
        assert_eq!(log.count(Verdict::Refused), 1);
        assert_eq!(log.events.iter().map(|e| e.bytes_down).sum::<u64>(), 6144);
        let s = log.summary();
        assert!(s.contains("3 allowed, 0 flagged, 1 refused"), "{s}");
        assert!(s.contains("3x allowed.test:443"), "{s}");
        assert!(s.contains("1x dns secret.evil.test"), "{s}");
        assert!(s.contains("6.0 KiB down"), "{s}");
        let refused = s.find("refused:").unwrap();
        let allowed = s.find("allowed:").unwrap();
        assert!(refused < allowed, "refused first: {s}");
        let json = serde_json::to_value(&log).unwrap();
        assert_eq!(json["events"][3]["verdict"], "refused");
        assert_eq!(json["events"][3]["protocol"], "dns");
        assert_eq!(json["events"][3]["via"], "dns-udp");
        assert_eq!(json["events"][0]["via"], "connect");
        assert_eq!(json["events"][0]["bytes_down"], 1024);
    }
}
