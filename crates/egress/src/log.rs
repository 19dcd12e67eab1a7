//! The egress log: one structured event per connection attempt or DNS question, kept for the
//! job report, and a one-screen summary of allowed and refused destinations for stderr.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::owner::Slot;

/// Events kept per job; past this, attempts are only counted (a DNS flood must not exhaust the
/// supervisor's memory).
pub const MAX_EVENTS: usize = 100_000;

/// Refused packets (UDP, ICMP, IPv6, other protocols) kept per job as events; past this they
/// are only counted, so a packet flood costs a counter, not memory.
pub const MAX_PACKET_EVENTS: u64 = 1_000;

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
    /// UDP other than DNS: refused by the job's firewall.
    Udp,
    /// ICMP or ICMPv6 (ping): refused by the job's firewall.
    Icmp,
    /// Any other IP protocol (SCTP, GRE, ...): refused by the job's firewall; `rule` names it.
    Other,
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
    /// A packet the firewall in the job's namespace refused (UDP other than DNS, ICMP, IPv6,
    /// other protocols), read from its NFLOG group.
    Firewall,
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
    /// The job process that held the socket (its pid in the supervisor's pid namespace), where
    /// known: absent when the socket was closed before stockade could look it up.
    pub pid: Option<u32>,
    /// That process's name (/proc/PID/comm) and executable, where known.
    pub comm: Option<String>,
    pub exe: Option<String>,
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
    /// Where the job itself tried to go (transparent connections, refused packets), if not via
    /// the proxy.
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
    /// Plain HTTP relayed by the proxy: the status of upstream's (final) response, read from its
    /// first bytes without buffering the body. `None` for CONNECT tunnels, TLS and other TCP.
    pub http_status: Option<u16>,
}

/// Everything egress saw during one job.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EgressLog {
    pub mode: String,
    pub events: Vec<EgressEvent>,
    /// Attempts past `MAX_EVENTS`, counted but not kept.
    pub dropped_events: u64,
    /// Refused packets past `MAX_PACKET_EVENTS`, or lost when the log socket overflowed:
    /// counted but not kept.
    pub dropped_packets: u64,
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
                (None, Protocol::Udp, Some(t)) => format!("udp {t}"),
                (None, Protocol::Icmp, Some(t)) => format!("icmp {}", t.ip()),
                (None, Protocol::Other, Some(t)) => format!("ip {}", t.ip()),
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
        if self.dropped_packets > 0 {
            let _ = writeln!(out, "  +{} refused packets counted, not kept", self.dropped_packets);
        }
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

/// A finished event and, if one was asked for, the lookup of the process behind it.
type Kept = (EgressEvent, Option<Arc<Slot>>);

/// Called with each event as it is logged (the live monitor: block mode stops a job at its
/// first refused connection, not at its end).
pub type EventHook = Arc<dyn Fn(&EgressEvent) + Send + Sync>;

#[derive(Clone)]
struct Hook(EventHook);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

/// Where finished events go; shared by every task of the supervisor.
#[derive(Debug, Default)]
pub struct Sink {
    inner: Mutex<(Vec<Kept>, u64)>,
    /// Set once; read under `inner`'s lock so that each event reaches it exactly once.
    hook: std::sync::OnceLock<Hook>,
    /// Attempts begun and not yet logged.
    active: AtomicU64,
    /// Refused packets seen, and those not kept.
    packets: AtomicU64,
    dropped_packets: AtomicU64,
}

impl Sink {
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    pub fn logged(&self) -> usize {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0.len() + g.1 as usize
    }

    pub fn push(&self, mut e: EgressEvent, owner: Option<Arc<Slot>>) {
        // Most lookups have run by now (a connection's first reply waits for its own), so the
        // hook sees the process too; those still running are filled in by `take`.
        if let Some(o) = owner.as_deref().and_then(Slot::get) {
            o.fill(&mut e);
        }
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let hooked = self.hook.get().map(|h| (h.clone(), e.clone()));
        if g.0.len() < MAX_EVENTS {
            g.0.push((e, owner));
        } else {
            g.1 += 1;
        }
        drop(g);
        if let Some((h, e)) = hooked {
            (h.0)(&e);
        }
    }

    /// Hands every event to `hook` as it is logged, those logged so far first.
    pub fn set_hook(&self, hook: EventHook) {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if self.hook.set(Hook(hook.clone())).is_err() {
            return;
        }
        let so_far: Vec<EgressEvent> = g.0.iter().map(|k| k.0.clone()).collect();
        drop(g);
        for e in &so_far {
            hook(e);
        }
    }

    /// Whether one more refused packet may become an event; if not, it is counted.
    pub fn admit_packet(&self) -> bool {
        if self.packets.fetch_add(1, Ordering::Relaxed) < MAX_PACKET_EVENTS {
            true
        } else {
            self.dropped_packets.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Refused packets the kernel could not hand over (the log socket was full).
    pub fn lost_packets(&self, n: u64) {
        self.dropped_packets.fetch_add(n, Ordering::Relaxed);
    }

    /// The events in time order, each with its process where the lookup found one (call after
    /// the lookups have run), the attempts not kept, and the refused packets not kept.
    pub fn take(&self) -> (Vec<EgressEvent>, u64, u64) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let kept = std::mem::take(&mut g.0);
        let mut ev: Vec<EgressEvent> = kept
            .into_iter()
            .map(|(mut e, slot)| {
                if let Some(o) = slot.as_deref().and_then(Slot::get) {
                    o.fill(&mut e);
                }
                e
            })
            .collect();
        ev.sort_by(|a, b| a.time.cmp(&b.time));
        (
            ev,
            std::mem::take(&mut g.1),
            self.dropped_packets.swap(0, Ordering::Relaxed),
        )
    }
}

/// Live byte counters of one connection, written by the relay.
#[derive(Debug, Default)]
pub struct Counters {
    pub up: AtomicU64,
    pub down: AtomicU64,
    /// Upstream's HTTP status; 0 until read (the relay's two directions run apart).
    pub http_status: std::sync::atomic::AtomicU16,
}

/// An event being built; it is logged when dropped, so a connection cut short by the end of the
/// job (its task dropped) is still logged, with the bytes it had moved.
pub struct Pending {
    pub event: EgressEvent,
    pub counters: Arc<Counters>,
    /// The lookup of the job process behind the attempt, if one was queued.
    pub owner: Option<Arc<Slot>>,
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
                comm: None,
                exe: None,
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
                http_status: None,
            },
            counters: Arc::new(Counters::default()),
            owner: None,
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
        let status = self.counters.http_status.load(Ordering::Relaxed);
        if status != 0 {
            self.event.http_status = Some(status);
        }
        self.sink.push(self.event.clone(), self.owner.clone());
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
        let (events, dropped, dropped_packets) = sink.take();
        let log = EgressLog {
            mode: "allowlist".into(),
            events,
            dropped_events: dropped,
            dropped_packets,
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
        assert!(json["events"][0]["http_status"].is_null());
        assert!(json["events"][0]["pid"].is_null());
    }

    #[test]
    fn the_hook_sees_every_event_once_including_those_before_it() {
        let sink = Arc::new(Sink::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = |name: &str| {
            let mut p = Pending::new(sink.clone(), Protocol::Dns, Via::DnsUdp, 53);
            p.event.name = Some(name.into());
            p.finish(None);
        };
        log("before.test");
        let s = seen.clone();
        sink.set_hook(Arc::new(move |e: &EgressEvent| {
            s.lock().unwrap().push(e.name.clone().unwrap_or_default())
        }));
        log("after.test");
        assert_eq!(*seen.lock().unwrap(), ["before.test", "after.test"]);
    }

    #[test]
    fn refused_packets_past_the_cap_are_counted_not_kept() {
        let sink = Sink::default();
        let kept = (0..MAX_PACKET_EVENTS + 250).filter(|_| sink.admit_packet()).count();
        assert_eq!(kept as u64, MAX_PACKET_EVENTS);
        sink.lost_packets(7);
        let (_, _, dropped) = sink.take();
        assert_eq!(dropped, 257);
    }
}
