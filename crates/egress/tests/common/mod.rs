//! Test hosts for the egress tests: HTTP and HTTPS servers on loopback, network namespaces
//! made by the test (root only), and a runner that executes a command with egress in a fresh
//! user+network namespace through the real `stockade-egress-try` binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::Value;

pub const TRY: &str = env!("CARGO_BIN_EXE_stockade-egress-try");

/// Why this machine cannot run namespace tests, if it cannot.
pub fn netns_unavailable() -> Option<String> {
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "--", "nft", "list", "ruleset"])
        .output();
    match out {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "unshare -Urn nft failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run unshare/nft: {e}")),
    }
}

#[macro_export]
macro_rules! require_netns {
    () => {
        if let Some(why) = common::netns_unavailable() {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The `/bytes/N` resource: 64 KiB blocks of a fixed pattern, each stamped with its index so
/// that a lost, repeated or reordered block changes the digest.
fn fill_block(buf: &mut [u8], index: u64) {
    let stamp = index.to_le_bytes();
    let n = stamp.len().min(buf.len());
    buf[..n].copy_from_slice(&stamp[..n]);
}

fn base_block() -> Vec<u8> {
    (0..1u32 << 16).map(|i| (i % 251) as u8).collect()
}

/// A small HTTP/1.1 server on 127.0.0.1 (one thread per connection):
/// `/` says who it is; `/bytes/N` streams N pattern bytes; `/status/N` answers status N;
/// `/hold` answers only once `hold`
/// requests are open at the same time (or after a long safety wait), and reports how many were.
pub struct HttpServer {
    pub port: u16,
    pub who: String,
    pub connections: Arc<AtomicUsize>,
}

struct Hold {
    open: Mutex<usize>,
    peak: AtomicUsize,
    cv: Condvar,
}

impl HttpServer {
    pub fn start(who: &str, hold: usize) -> HttpServer {
        Self::start_on("127.0.0.1:0", who, hold)
    }

    pub fn start_on(addr: &str, who: &str, hold: usize) -> HttpServer {
        let l = TcpListener::bind(addr).unwrap();
        let port = l.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let conns = connections.clone();
        let who2 = who.to_string();
        let holdst = Arc::new(Hold {
            open: Mutex::new(0),
            peak: AtomicUsize::new(0),
            cv: Condvar::new(),
        });
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                conns.fetch_add(1, Ordering::SeqCst);
                let who = who2.clone();
                let holdst = holdst.clone();
                std::thread::spawn(move || {
                    let _ = serve_http(s, &who, hold, &holdst);
                });
            }
        });
        HttpServer {
            port,
            who: who.to_string(),
            connections,
        }
    }
}

fn serve_http(s: TcpStream, who: &str, hold: usize, h: &Hold) -> std::io::Result<()> {
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
        let mut buf = base_block();
        let mut i = 0u64;
        let mut index = 0u64;
        while i < n {
            let k = ((n - i) as usize).min(buf.len());
            fill_block(&mut buf, index);
            w.write_all(&buf[..k])?;
            i += k as u64;
            index += 1;
        }
        return Ok(());
    }
    if let Some(code) = path.strip_prefix("/status/") {
        // An error status, as a server refusing credentials answers.
        let body = "status\n";
        write!(
            w,
            "HTTP/1.1 {code} Test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return Ok(());
    }
    let body = if path == "/hold" {
        let mut open = h.open.lock().unwrap();
        *open += 1;
        h.peak.fetch_max(*open, Ordering::SeqCst);
        h.cv.notify_all();
        // Safety net only: the test asserts on the peak count, not on time.
        let (mut open, _) =
            h.cv.wait_timeout_while(open, Duration::from_secs(120), |o| {
                h.peak.load(Ordering::SeqCst) < hold && *o > 0
            })
            .unwrap();
        let peak = h.peak.load(Ordering::SeqCst);
        *open -= 1;
        format!("held peak={peak}\n")
    } else {
        format!("hello from {who} (Host: {host})\n")
    };
    write!(
        w,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    Ok(())
}

/// `openssl s_server -www` on 127.0.0.1 with a self-signed certificate for the test names.
pub struct HttpsServer {
    pub port: u16,
    pub cert: PathBuf,
    child: Child,
    _dir: TempDir,
}

impl HttpsServer {
    pub fn start() -> HttpsServer {
        let dir = TempDir::new("https");
        let cert = dir.0.join("cert.pem");
        let key = dir.0.join("key.pem");
        let st = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
            .args(["-nodes", "-days", "2", "-subj", "/CN=allowed.test"])
            .args([
                "-addext",
                "subjectAltName=DNS:allowed.test,DNS:shared.test,DNS:denied.test",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "openssl req");
        let port = free_port();
        let mut child = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Ready when it accepts a connection.
        for _ in 0..2000 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!("openssl s_server exited: {st}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        HttpsServer {
            port,
            cert,
            child,
            _dir: dir,
        }
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "stockade-egress-test-{tag}-{}-{}",
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

/// The result of one command run with egress.
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
    pub log: Value,
}

impl Run {
    pub fn events(&self) -> &Vec<Value> {
        self.log["events"].as_array().unwrap()
    }

    /// Events whose fields equal all of `want` (e.g. `[("via", "connect"), ("name", "x")]`).
    pub fn find(&self, want: &[(&str, &str)]) -> Vec<&Value> {
        self.events()
            .iter()
            .filter(|e| want.iter().all(|(k, v)| e[*k].as_str() == Some(*v)))
            .collect()
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status {}\n--- stdout\n{}\n--- stderr\n{}\n--- log\n{}",
            self.status,
            self.stdout,
            self.stderr,
            serde_json::to_string_pretty(&self.log).unwrap()
        )
    }
}

/// Runs `sh -c script` with egress under `policy` (JSON of the `[egress]` table).
pub fn run(policy: Value, script: &str) -> Run {
    run_opts(policy, script, true)
}

pub fn run_opts(policy: Value, script: &str, proxy_env: bool) -> Run {
    let dir = TempDir::new("run");
    let log = dir.0.join("log.json");
    let mut c = Command::new(TRY);
    c.arg("--policy-json").arg(policy.to_string()).arg("--log").arg(&log);
    if !proxy_env {
        c.arg("--no-proxy-env");
    }
    c.args(["--", "sh", "-c", script]);
    c.env("PATH", std::env::var("PATH").unwrap_or_default());
    c.env("TRY", TRY);
    let Output { status, stdout, stderr } = c.output().unwrap();
    let log = std::fs::read_to_string(&log)
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or(Value::Null);
    Run {
        status: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        log,
    }
}

/// A network namespace made by the test, joined to the host by a veth pair: the host side is
/// 10.213.N.1, the test host 10.213.N.2. Removed on drop (which removes the veth too).
pub struct TestHost {
    pub name: String,
    pub addr: String,
    /// The test host's IPv6 address (fd00:213:N::2; the host side is ::1).
    pub addr6: String,
    pub host_side: String,
    children: Vec<Child>,
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
    pub fn new() -> TestHost {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{}x{n}", std::process::id() % 100000);
        let name = format!("stkeg{tag}");
        let (vh, vp) = (format!("seh{tag}"), format!("sep{tag}"));
        let octet = 16 + (std::process::id() % 200 + n * 7) % 230;
        let host_side = format!("10.213.{octet}.1");
        let addr = format!("10.213.{octet}.2");
        let addr6 = format!("fd00:213:{octet}::2");
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let th = TestHost {
            name: name.clone(),
            addr: addr.clone(),
            addr6: addr6.clone(),
            host_side: host_side.clone(),
            children: Vec::new(),
        };
        ip(&["link", "add", &vh, "type", "veth", "peer", "name", &vp]);
        ip(&["link", "set", &vp, "netns", &name]);
        ip(&["addr", "add", &format!("{host_side}/30"), "dev", &vh]);
        ip(&["link", "set", &vh, "up"]);
        ip(&["-n", &name, "addr", "add", &format!("{addr}/30"), "dev", &vp]);
        ip(&["-n", &name, "link", "set", &vp, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        let a6 = format!("{addr6}/64");
        ip(&["-n", &name, "addr", "add", &a6, "dev", &vp, "nodad"]);
        let h6 = format!("fd00:213:{octet}::1/64");
        ip(&["addr", "add", &h6, "dev", &vh, "nodad"]);
        th
    }

    /// Starts `stockade-egress-try probe serve-tcp|serve-udp ADDR:PORT` inside the test host;
    /// its stdout (one line per connection or datagram) is read by `stop_server`.
    pub fn serve(&mut self, kind: &str, port: u16) -> usize {
        let at = format!("{}:{port}", self.addr);
        self.serve_at(kind, &at)
    }

    /// As `serve`, at any address of the test host (`[v6]:port`).
    pub fn serve_at(&mut self, kind: &str, at: &str) -> usize {
        let mut c = Command::new("ip")
            .args(["netns", "exec", &self.name, TRY, "probe", kind])
            .arg(at)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // The probe prints "listening" once bound.
        let mut out = c.stdout.take().unwrap();
        let mut first = [0u8; 10];
        out.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"listening\n");
        c.stdout = Some(out);
        self.children.push(c);
        self.children.len() - 1
    }

    /// Stops server `i` and returns what it printed.
    pub fn stop_server(&mut self, i: usize) -> String {
        let c = &mut self.children[i];
        let _ = c.kill();
        let _ = c.wait();
        let mut s = String::new();
        if let Some(mut o) = c.stdout.take() {
            let _ = o.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
