//! The proxy every TCP connection of the job reaches, explicitly (CONNECT, absolute-URI HTTP)
//! or redirected: it decides by name, resolves the name itself, connects to what it resolved,
//! checks that SNI and Host agree with the name, and streams bytes without terminating TLS.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::addr::canonical;
use crate::log::{Pending, Protocol, Via};
use crate::owner::{Key, Slot, Table};
use crate::policy::normalize_name;
use crate::relay::{peek_http_status, pump, read_some, write_all};
use crate::sniff::{self, FirstFlight, MAX_FIRST_FLIGHT, split_authority};
use crate::state::{Fail, State};

const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn serve(state: Arc<State>, listener: TcpListener) {
    loop {
        let client = match listener.accept().await {
            Ok((c, _)) => c,
            // EMFILE and friends: back off instead of spinning; the job sees a slow accept.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _ = client.set_nodelay(true);
            let local = client.local_addr().ok();
            let source = client.peer_addr().ok();
            let orig = original_dst(&client).filter(|o| Some(*o) != local);
            // Looked up while the request is read and upstream is connected; the first reply
            // to the job waits for it (`settle`), so the job's socket is still there to find.
            let owner = source.map(|source| {
                state.owners.find(Key {
                    table: Table::Tcp,
                    local: source,
                    remote: orig.or(local),
                })
            });
            CONN.scope(Conn { source, owner }, async move {
                match orig {
                    Some(orig) => transparent(&state, client, orig).await,
                    None => explicit(&state, client).await,
                }
            })
            .await
        });
    }
}

/// The connection being handled, for its event.
#[derive(Clone)]
struct Conn {
    /// The job-side address.
    source: Option<SocketAddr>,
    /// The lookup of the job process behind it.
    owner: Option<Arc<Slot>>,
}

tokio::task_local! {
    static CONN: Conn;
}

fn pending(state: &State, protocol: Protocol, via: Via, port: u16) -> Pending {
    let mut p = Pending::new(state.sink.clone(), protocol, via, port);
    if let Ok(c) = CONN.try_with(Conn::clone) {
        p.event.source = c.source;
        p.owner = c.owner;
    }
    p
}

/// Waits (briefly, see `OWNER_WAIT`) for the lookup of the job process: called before the
/// first reply to the job, while the job still waits for it and so still holds its socket.
async fn settle(p: &Pending) {
    if let Some(o) = &p.owner {
        o.settled(crate::supervisor::OWNER_WAIT).await;
    }
}

/// Where a redirected connection was headed. `None` (or our own address) means it was made to
/// the proxy itself.
pub fn original_dst(s: &TcpStream) -> Option<SocketAddr> {
    use rustix::net::sockopt::{ip_original_dst, ipv6_original_dst};
    match s.local_addr().ok()? {
        SocketAddr::V4(_) => ip_original_dst(s).ok().map(SocketAddr::V4),
        SocketAddr::V6(_) => ipv6_original_dst(s).ok().map(SocketAddr::V6),
    }
}

/// What to check in the client's first bytes before any reaches upstream.
#[derive(Clone)]
enum Check {
    /// The name the connection was allowed for: SNI and Host must be this name.
    Name(String),
    /// Allowed by address: nothing to check.
    None,
}

fn refusal_response(status: &str, why: &str) -> Vec<u8> {
    let body = format!("stockade egress: {why}\n");
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\nX-Stockade-Egress: refused\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn read_head(client: &TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    let fut = async {
        loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Some(pos + 4);
            }
            if buf.len() > MAX_FIRST_FLIGHT {
                return None;
            }
            match read_some(client, buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(HEAD_TIMEOUT, fut).await.ok().flatten()
}

async fn explicit(state: &State, client: TcpStream) {
    let mut buf = Vec::with_capacity(2048);
    let Some(head_len) = read_head(&client, &mut buf).await else {
        return;
    };
    let mut headers = [httparse::EMPTY_HEADER; 96];
    let mut req = httparse::Request::new(&mut headers);
    let parsed = req.parse(&buf[..head_len]);
    let (Ok(httparse::Status::Complete(_)), Some(method), Some(target)) = (parsed, req.method, req.path) else {
        let _ = write_all(&client, &refusal_response("400 Bad Request", "malformed request")).await;
        return;
    };
    let rest = buf[head_len..].to_vec();
    if method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = split_authority(target);
        let Some(port) = port.filter(|p| *p != 0) else {
            let _ = write_all(&client, &refusal_response("400 Bad Request", "CONNECT needs HOST:PORT")).await;
            return;
        };
        let mut p = pending(state, Protocol::Tcp, Via::Connect, port);
        let host = host.to_string();
        match open_target(state, &mut p, &host, port).await {
            Ok((upstream, check)) => {
                settle(&p).await;
                if write_all(&client, b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .is_err()
                {
                    p.finish(Some("client left".into()));
                    return;
                }
                let r = relay(state, &mut p, client, upstream, rest, check, true).await;
                finish(p, r).await;
            }
            Err(f) => answer_failure(&client, p, f).await,
        }
        return;
    }
    // A plain HTTP request through the proxy: the target is an absolute http:// URI.
    let Some(after_scheme) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("HTTP://"))
    else {
        let _ = write_all(
            &client,
            &refusal_response(
                "400 Bad Request",
                "a proxy request needs an absolute http:// URI (use CONNECT for https)",
            ),
        )
        .await;
        return;
    };
    let (authority, path) = match after_scheme.find(['/', '?', '#']) {
        Some(i) if after_scheme.as_bytes()[i] == b'/' => (&after_scheme[..i], &after_scheme[i..]),
        Some(i) => (&after_scheme[..i], "/"),
        None => (after_scheme, "/"),
    };
    let (host, port) = split_authority(authority);
    let port = port.unwrap_or(80);
    let mut p = pending(state, Protocol::Http, Via::ProxyRequest, port);
    // The Host header must name the same host as the URI, or the bytes would reach another
    // site on a shared server. (Upstream gets one Host header, ours, built from the URI.)
    let hosts = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .count();
    if hosts > 1 {
        p.event.name = Some(host.to_string());
        state.judge(&mut p, false, "more than one Host header".into());
        p.event.verdict = crate::log::Verdict::Refused;
        settle(&p).await;
        let _ = write_all(
            &client,
            &refusal_response("400 Bad Request", "more than one Host header"),
        )
        .await;
        p.finish(None);
        return;
    }
    if let Some(h) = sniff::header(req.headers, "host") {
        let hh = sniff::strip_port(h);
        if !same_host(hh, host) {
            p.event.name = Some(host.to_string());
            let why = format!("Host header {hh:?} differs from the request target {host:?}");
            if !state.judge(&mut p, false, why.clone()) {
                settle(&p).await;
                let _ = write_all(&client, &refusal_response("403 Forbidden", &why)).await;
                p.finish(None);
                return;
            }
        }
    }
    let (upstream, _check) = match open_target(state, &mut p, host, port).await {
        Ok(x) => x,
        Err(f) => return answer_failure(&client, p, f).await,
    };
    // Origin-form request line; one request per upstream connection (Connection: close), so
    // a later request on the client's connection cannot ride to another host.
    let mut head = format!("{method} {path} HTTP/1.{}\r\n", req.version.unwrap_or(1)).into_bytes();
    for h in req.headers.iter() {
        let n = h.name.to_ascii_lowercase();
        if matches!(
            n.as_str(),
            "proxy-connection" | "proxy-authorization" | "connection" | "keep-alive" | "host"
        ) {
            continue;
        }
        head.extend_from_slice(h.name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(h.value);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(format!("Host: {authority}\r\nConnection: close\r\n\r\n").as_bytes());
    head.extend_from_slice(&rest);
    let r = relay(state, &mut p, client, upstream, head, Check::None, false).await;
    finish(p, r).await;
}

fn same_host(a: &str, b: &str) -> bool {
    match (normalize_name(a), normalize_name(b)) {
        (Some(x), Some(y)) => x == y,
        _ => match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
            (Ok(x), Ok(y)) => canonical(x) == canonical(y),
            _ => false,
        },
    }
}

/// Tells an explicit-proxy client why its request failed (403 refused, 502 upstream error), then
/// logs the attempt.
async fn answer_failure(client: &TcpStream, p: Pending, f: Fail) {
    let resp = match &f {
        Fail::Refused(why) => refusal_response("403 Forbidden", why),
        Fail::Error(why) => refusal_response("502 Bad Gateway", why),
    };
    settle(&p).await;
    let _ = write_all(client, &resp).await;
    finish(p, Err(f)).await;
}

/// Logs the attempt; a refused or failed one only once its process is known, since the job's
/// connection is closed right after.
async fn finish(p: Pending, r: Result<(), Fail>) {
    settle(&p).await;
    match r {
        Ok(()) => p.finish(None),
        Err(Fail::Refused(_)) => p.finish(None),
        Err(Fail::Error(e)) => p.finish(Some(e)),
    }
}

/// Decides a destination given as text (CONNECT authority or URI host) and connects to it.
async fn open_target(state: &State, p: &mut Pending, host: &str, port: u16) -> Result<(TcpStream, Check), Fail> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        let ip = canonical(ip);
        let name = state
            .names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .name_of(ip)
            .map(str::to_string);
        if let Some(name) = name {
            return open_name(state, p, &name, port).await;
        }
        return open_address(state, p, SocketAddr::new(ip, port)).await;
    }
    let Some(name) = normalize_name(host) else {
        p.event.name = Some(host.to_string());
        state.judge(p, false, "not a host name".into());
        return Err(Fail::Refused(format!("{host:?} is not a host name")));
    };
    open_name(state, p, &name, port).await
}

async fn open_name(state: &State, p: &mut Pending, name: &str, port: u16) -> Result<(TcpStream, Check), Fail> {
    p.event.name = Some(name.to_string());
    let d = state.policy.check_name(name, port);
    if !state.judge(p, d.allowed, d.rule) {
        return Err(Fail::Refused(p.event.rule.clone()));
    }
    let addrs = state.resolve(p, name).await?;
    let mut last = Fail::Error(format!("{name}: no address"));
    for ip in addrs {
        match connect(SocketAddr::new(ip, port)).await {
            Ok(s) => {
                p.event.address = Some(ip);
                return Ok((s, Check::Name(name.to_string())));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// An IP destination: only inside allow_cidrs (audit: flagged, and connected as asked).
async fn open_address(state: &State, p: &mut Pending, to: SocketAddr) -> Result<(TcpStream, Check), Fail> {
    if crate::names::in_pool(to.ip()) {
        // Not even audit mode can let this through: there is nothing behind it.
        p.event.verdict = crate::log::Verdict::Refused;
        p.event.rule = format!("{} is no name's address", to.ip());
        return Err(Fail::Refused(p.event.rule.clone()));
    }
    let ok = match state.policy.cidr_for(to.ip()) {
        Some(c) => state.judge(p, true, format!("allow_cidrs {c}")),
        None => state.judge(p, false, format!("IP literal {} not in allow_cidrs", to.ip())),
    };
    if !ok {
        return Err(Fail::Refused(p.event.rule.clone()));
    }
    p.event.address = Some(to.ip());
    Ok((connect(to).await?, Check::None))
}

async fn connect(to: SocketAddr) -> Result<TcpStream, Fail> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(Fail::Error(format!("connect {to}: {e}"))),
        Err(_) => Err(Fail::Error(format!("connect {to}: timed out"))),
    }
}

async fn transparent(state: &State, client: TcpStream, orig: SocketAddr) {
    let ip = canonical(orig.ip());
    let port = orig.port();
    let mut p = pending(state, Protocol::Tcp, Via::Transparent, port);
    p.event.client_target = Some(orig);
    let name = state
        .names
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .name_of(ip)
        .map(str::to_string);
    // The job resolved a name through stockade: that name decides.
    if let Some(name) = name {
        match open_name(state, &mut p, &name, port).await {
            Ok((up, check)) => {
                let r = relay(state, &mut p, client, up, Vec::new(), check, true).await;
                finish(p, r).await;
            }
            Err(f) => finish(p, Err(f)).await,
        }
        return;
    }
    if crate::names::in_pool(ip) || state.policy.cidr_for(ip).is_some() {
        match open_address(state, &mut p, SocketAddr::new(ip, port)).await {
            Ok((up, check)) => {
                let r = relay(state, &mut p, client, up, Vec::new(), check, true).await;
                finish(p, r).await;
            }
            Err(f) => finish(p, Err(f)).await,
        }
        return;
    }
    // An address the job did not get from stockade: only a name in its first bytes can
    // allow it, and then stockade connects to that name's address, not to this one.
    let mut buf = Vec::new();
    let first = tokio::time::timeout(FIRST_BYTES_TIMEOUT, first_flight(&client, &mut buf)).await;
    let named = match first {
        Ok(Ok(FirstFlight::Tls { sni: Some(s) })) => {
            p.event.protocol = Protocol::Tls;
            Some(s)
        }
        Ok(Ok(FirstFlight::Http {
            host: Some(h),
            target_host,
        })) if target_host.as_deref().is_none_or(|t| same_host(t, &h)) => {
            p.event.protocol = Protocol::Http;
            Some(h)
        }
        Ok(Ok(FirstFlight::Tls { sni: None })) => {
            p.event.protocol = Protocol::Tls;
            None
        }
        _ => None,
    };
    let name = named.as_deref().and_then(normalize_name);
    let r = match name {
        Some(name) => match open_name(state, &mut p, &name, port).await {
            Ok((up, _)) => relay(state, &mut p, client, up, buf, Check::None, false).await,
            Err(f) => Err(f),
        },
        None => {
            let why = match (&named, p.event.protocol) {
                (Some(n), _) => format!("IP literal {ip} with name {n:?} in its first bytes"),
                (None, Protocol::Tls) => format!("TLS without SNI to IP literal {ip}"),
                _ => format!("IP literal {ip} not in allow_cidrs"),
            };
            if state.judge(&mut p, false, why) {
                // Audit: nothing but the job's own address to go to.
                p.event.address = Some(ip);
                match connect(SocketAddr::new(ip, port)).await {
                    Ok(up) => relay(state, &mut p, client, up, buf, Check::None, false).await,
                    Err(f) => Err(f),
                }
            } else {
                Err(Fail::Refused(p.event.rule.clone()))
            }
        }
    };
    finish(p, r).await;
}

/// Reads the client's first bytes until they say what they are.
async fn first_flight(client: &TcpStream, buf: &mut Vec<u8>) -> std::io::Result<FirstFlight> {
    loop {
        match sniff::classify(buf) {
            Ok(Some(f)) => return Ok(f),
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::other(e)),
        }
        if read_some(client, buf).await? == 0 {
            return Ok(FirstFlight::Other);
        }
    }
}

/// Streams both ways. With `Check::Name`, the client's first bytes are read and checked before
/// any of them reach upstream; meanwhile upstream's bytes already flow (server-first protocols).
async fn relay(
    state: &State,
    p: &mut Pending,
    client: TcpStream,
    upstream: TcpStream,
    prefix: Vec<u8>,
    check: Check,
    sniff_protocol: bool,
) -> Result<(), Fail> {
    settle(p).await;
    let counters = p.counters.clone();
    // Plain HTTP (not a CONNECT tunnel): upstream's status line, peeked before the body flows.
    let http = p.event.via != Via::Connect;
    let down = async {
        if http {
            let status = peek_http_status(&upstream).await;
            counters.http_status.store(status.unwrap_or(0), Ordering::Relaxed);
        }
        pump(&upstream, &client, &counters.down).await
    };
    let up = async {
        let mut buf = prefix;
        if let Check::Name(expected) = &check {
            match first_flight(&client, &mut buf).await {
                Ok(f) => {
                    if sniff_protocol {
                        p.event.protocol = match f {
                            FirstFlight::Tls { .. } => Protocol::Tls,
                            FirstFlight::Http { .. } => Protocol::Http,
                            FirstFlight::Other => Protocol::Tcp,
                        };
                    }
                    let mismatch = match &f {
                        FirstFlight::Tls { sni: None } => Some("TLS without SNI".to_string()),
                        FirstFlight::Tls { sni: Some(s) } if !same_host(s, expected) => {
                            Some(format!("SNI {s:?} differs from {expected:?}"))
                        }
                        FirstFlight::Http { host: Some(h), .. } if !same_host(h, expected) => {
                            Some(format!("Host header {h:?} differs from {expected:?}"))
                        }
                        FirstFlight::Http {
                            target_host: Some(t), ..
                        } if !same_host(t, expected) => {
                            Some(format!("request target host {t:?} differs from {expected:?}"))
                        }
                        _ => None,
                    };
                    let go_on = match mismatch {
                        Some(why) => state.judge(p, false, why),
                        None => true,
                    };
                    if !go_on {
                        return Err(Fail::Refused(p.event.rule.clone()));
                    }
                }
                Err(e) => {
                    if !state.judge(p, false, format!("unreadable first bytes: {e}")) {
                        return Err(Fail::Refused(p.event.rule.clone()));
                    }
                }
            }
        }
        if !buf.is_empty() {
            write_all(&upstream, &buf)
                .await
                .map_err(|e| Fail::Error(format!("send to upstream: {e}")))?;
            counters.up.fetch_add(buf.len() as u64, Ordering::Relaxed);
        }
        drop(buf);
        pump(&client, &upstream, &counters.up)
            .await
            .map_err(|e| Fail::Error(format!("job to upstream: {e}")))
    };
    let down = async { down.await.map_err(|e| Fail::Error(format!("upstream to job: {e}"))) };
    tokio::try_join!(up, down).map(|_| ())
}
