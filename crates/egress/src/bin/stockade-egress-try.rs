//! Runs one command with Stockade egress and nothing else of the sandbox: a new user, network
//! and mount namespace (via util-linux `unshare`), `setup_netns` inside, `Egress` outside.
//! For egress tests and benchmarks independent of `stockade run`, and as a reference of the
//! exact calls the sandbox makes. Also carries small network probes used from inside.
//!
//! Usage:
//!   stockade-egress-try [--policy-json JSON] [--log FILE] [--no-proxy-env] -- CMD [ARGS...]
//!   stockade-egress-try probe udp ADDR:PORT
//!   stockade-egress-try probe tcp ADDR:PORT [DATA]   (\r and \n in DATA are CR and LF)
//!   stockade-egress-try probe serve-tcp|serve-udp ADDR:PORT
//!   stockade-egress-try probe dns-udp|dns-tcp SERVER:PORT NAME
//! Exit status: CMD's, or 125 when egress itself failed.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};
use stockade_egress::{Egress, EgressPolicy, StartConfig, job_env, resolv_conf, setup_netns};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("--inside") => inside(&args[1..]),
        Some("probe") => probe(&args[1..]),
        _ => outside(&args),
    };
    match r {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("stockade-egress-try: error: {e}");
            ExitCode::from(125)
        }
    }
}

type R<T> = Result<T, String>;

fn split_cmd(args: &[String]) -> R<(&[String], &[String])> {
    let i = args.iter().position(|a| a == "--").ok_or("expected -- CMD [ARGS...]")?;
    if i + 1 >= args.len() {
        return Err("expected a command after --".into());
    }
    Ok((&args[..i], &args[i + 1..]))
}

fn outside(args: &[String]) -> R<u8> {
    let (opts, cmd) = split_cmd(args)?;
    let mut policy_json = r#"{"mode":"allowlist"}"#.to_string();
    let mut log: Option<PathBuf> = None;
    let mut proxy_env = true;
    let mut timing = false;
    let mut it = opts.iter();
    while let Some(o) = it.next() {
        match o.as_str() {
            "--policy-json" => policy_json = it.next().ok_or("--policy-json needs JSON")?.clone(),
            "--log" => log = Some(it.next().ok_or("--log needs FILE")?.into()),
            "--no-proxy-env" => proxy_env = false,
            "--timing" => timing = true,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    let policy: EgressPolicy = serde_json::from_str(&policy_json).map_err(|e| format!("--policy-json: {e}"))?;
    policy.validate().map_err(|e| e.to_string())?;

    let dir = std::env::temp_dir().join(format!(
        "stockade-egress-try-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let _cleanup = RemoveDir(dir.clone());
    let sock_path = dir.join("fds.sock");
    let resolv = dir.join("resolv.conf");
    std::fs::write(&resolv, resolv_conf(&policy)).map_err(|e| e.to_string())?;
    let listener = UnixListener::bind(&sock_path).map_err(|e| format!("bind: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;

    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new("unshare");
    child
        .args(["--user", "--map-root-user", "--net", "--mount", "--"])
        .arg(&me)
        .arg("--inside")
        .arg(&sock_path)
        .arg(&policy_json)
        .arg(&resolv)
        .arg(if timing { "--timing" } else { "--quiet" })
        .arg("--")
        .args(cmd);
    if proxy_env {
        child.envs(job_env(&policy));
    }
    let mut child = child.spawn().map_err(|e| format!("spawn unshare: {e}"))?;

    // Wait for the namespace's sockets, or for the child to fail first.
    let conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
                    return Err(format!("egress setup inside the namespace failed ({st})"));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    };
    conn.set_nonblocking(false).map_err(|e| e.to_string())?;
    let fds = recv_fds(&conn)?;
    let t = Instant::now();
    // The unshare child is the namespace's first process and becomes the job (exec).
    let config = StartConfig {
        job_init_pid: i32::try_from(child.id()).ok(),
    };
    let egress = Egress::start(&policy, fds, config).map_err(|e| error_chain(&e))?;
    if timing {
        eprintln!("timing: Egress::start {} us", t.elapsed().as_micros());
    }
    (&conn).write_all(b"g").map_err(|e| e.to_string())?;
    let status = child.wait().map_err(|e| e.to_string())?;
    let t = Instant::now();
    let log_data = egress.finish();
    if timing {
        eprintln!("timing: Egress::finish {} us", t.elapsed().as_micros());
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        for l in status
            .lines()
            .filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS"))
        {
            eprintln!("timing: supervisor {l}");
        }
        // utime and stime (fields 14 and 15) of every thread of this process, in clock ticks:
        // what serving egress cost, for the benchmark's CPU seconds per GiB.
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let after_comm = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = after_comm.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok());
        if let (Some(u), Some(s)) = (ticks(11), ticks(12)) {
            eprintln!("timing: supervisor cpu_ticks {}", u + s);
        }
    } else {
        eprint!("{}", log_data.summary());
    }
    if let Some(path) = log {
        let json = serde_json::to_string_pretty(&log_data).map_err(|e| e.to_string())?;
        std::fs::write(&path, json).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(status.code().map(|c| c as u8).unwrap_or(128))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

struct RemoveDir(PathBuf);
impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn inside(args: &[String]) -> R<u8> {
    let (opts, cmd) = split_cmd(args)?;
    let [sock_path, policy_json, resolv, timing] = opts else {
        return Err("--inside SOCK POLICY_JSON RESOLV_CONF --timing|--quiet -- CMD".into());
    };
    // What the sandbox has done before it calls setup_netns: lo is up.
    let st = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .map_err(|e| format!("ip link set lo up: {e}"))?;
    if !st.success() {
        return Err("ip link set lo up failed".into());
    }
    let policy: EgressPolicy = serde_json::from_str(policy_json).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let fds = setup_netns(&policy).map_err(|e| error_chain(&e))?;
    if timing == "--timing" {
        eprintln!("timing: setup_netns {} us", t.elapsed().as_micros());
    }
    let conn = UnixStream::connect(Path::new(sock_path)).map_err(|e| format!("connect: {e}"))?;
    send_fds(&conn, &fds)?;
    drop(fds);
    let mut go = [0u8; 1];
    (&conn)
        .read_exact(&mut go)
        .map_err(|e| format!("wait for the supervisor: {e}"))?;
    drop(conn);
    // What the sandbox does for the job: stockade's resolver as the only nameserver.
    let st = Command::new("mount")
        .args(["--bind", resolv, "/etc/resolv.conf"])
        .status()
        .map_err(|e| format!("mount resolv.conf: {e}"))?;
    if !st.success() {
        return Err("bind-mount of resolv.conf failed".into());
    }
    let err = Command::new(&cmd[0]).args(&cmd[1..]).exec();
    eprintln!("stockade-egress-try: exec {}: {err}", cmd[0]);
    Ok(127)
}

fn send_fds(conn: &UnixStream, fds: &[OwnedFd]) -> R<()> {
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(6))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    if !cmsg.push(SendAncillaryMessage::ScmRights(&borrowed)) {
        return Err("too many fds".into());
    }
    rustix::net::sendmsg(conn, &[IoSlice::new(b"f")], &mut cmsg, SendFlags::empty())
        .map_err(|e| format!("send fds: {e}"))?;
    Ok(())
}

fn recv_fds(conn: &UnixStream) -> R<Vec<OwnedFd>> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(6))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let mut b = [0u8; 1];
    rustix::net::recvmsg(conn, &mut [IoSliceMut::new(&mut b)], &mut cmsg, RecvFlags::CMSG_CLOEXEC)
        .map_err(|e| format!("receive fds: {e}"))?;
    let mut fds = Vec::new();
    for m in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(it) = m {
            fds.extend(it);
        }
    }
    Ok(fds)
}

fn say(line: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

/// Small network probes run inside the namespace; each prints one line saying what happened.
fn probe(args: &[String]) -> R<u8> {
    match args {
        [kind, to] if kind == "udp" => {
            let to: SocketAddr = to.parse().map_err(|_| "ADDR:PORT")?;
            let any = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            let s = UdpSocket::bind(any).map_err(|e| e.to_string())?;
            match s.send_to(b"stockade-udp-probe", to) {
                Ok(_) => println!("udp: sent"),
                Err(e) => println!("udp: send failed: {e}"),
            }
            Ok(0)
        }
        [kind, server, name] if kind == "dns-udp" || kind == "dns-tcp" => {
            let server: SocketAddr = server.parse().map_err(|_| "SERVER:PORT")?;
            let mut m = Message::new();
            m.set_id(0x5a5a)
                .set_message_type(MessageType::Query)
                .set_op_code(OpCode::Query)
                .set_recursion_desired(true)
                .add_query(Query::query(
                    Name::from_ascii(format!("{name}.")).map_err(|e| e.to_string())?,
                    RecordType::A,
                ));
            let q = m.to_vec().map_err(|e| e.to_string())?;
            let resp = if kind == "dns-udp" {
                let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(Duration::from_secs(5)))
                    .map_err(|e| e.to_string())?;
                s.send_to(&q, server).map_err(|e| format!("dns: send failed: {e}"))?;
                let mut buf = [0u8; 4096];
                match s.recv(&mut buf) {
                    Ok(n) => buf[..n].to_vec(),
                    Err(e) => {
                        println!("dns: no answer: {e}");
                        return Ok(0);
                    }
                }
            } else {
                let mut s = match TcpStream::connect_timeout(&server, Duration::from_secs(5)) {
                    Ok(s) => s,
                    Err(e) => {
                        println!("dns: connect failed: {e}");
                        return Ok(0);
                    }
                };
                s.set_read_timeout(Some(Duration::from_secs(5)))
                    .map_err(|e| e.to_string())?;
                let mut out = (q.len() as u16).to_be_bytes().to_vec();
                out.extend_from_slice(&q);
                s.write_all(&out).map_err(|e| e.to_string())?;
                let mut len = [0u8; 2];
                if let Err(e) = s.read_exact(&mut len) {
                    println!("dns: no answer: {e}");
                    return Ok(0);
                }
                let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
                s.read_exact(&mut buf).map_err(|e| e.to_string())?;
                buf
            };
            let r = Message::from_vec(&resp).map_err(|e| e.to_string())?;
            let answers: Vec<String> = r.answers().iter().map(|a| a.data().to_string()).collect();
            println!("dns: {:?} answers=[{}]", r.response_code(), answers.join(","));
            Ok(0)
        }
        [kind, to, rest @ ..] if kind == "tcp" && rest.len() <= 1 => {
            let to: SocketAddr = to.parse().map_err(|_| "ADDR:PORT")?;
            let mut s = match TcpStream::connect_timeout(&to, Duration::from_secs(5)) {
                Ok(s) => s,
                Err(e) => {
                    println!("tcp: connect failed: {e}");
                    return Ok(0);
                }
            };
            if let Some(data) = rest.first() {
                let data = data.replace("\\r", "\r").replace("\\n", "\n");
                let _ = s.write_all(data.as_bytes());
            }
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .map_err(|e| e.to_string())?;
            let mut got = Vec::new();
            match s.read_to_end(&mut got) {
                Ok(_) => println!("tcp: got {:?}", String::from_utf8_lossy(&got)),
                Err(e) => println!("tcp: read failed after {:?}: {e}", String::from_utf8_lossy(&got)),
            }
            Ok(0)
        }
        [kind, at] if kind == "serve-tcp" => {
            let l = std::net::TcpListener::bind(at).map_err(|e| format!("bind {at}: {e}"))?;
            say("listening");
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                say(&format!("accepted from {:?}", s.peer_addr().ok()));
                let _ = s.write_all(b"test-host\n");
            }
            Ok(0)
        }
        [kind, at, rest @ ..] if kind == "serve-http" => serve_http(at, rest),
        [kind, server, name, count] if kind == "dns-bench" => {
            let server: SocketAddr = server.parse().map_err(|_| "SERVER:PORT")?;
            let count: usize = count.parse().map_err(|_| "COUNT")?;
            let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
            s.connect(server).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .map_err(|e| e.to_string())?;
            let mut times = Vec::with_capacity(count);
            let mut buf = [0u8; 4096];
            for i in 0..count {
                let mut m = Message::new();
                m.set_id(i as u16)
                    .set_message_type(MessageType::Query)
                    .set_op_code(OpCode::Query)
                    .set_recursion_desired(true)
                    .add_query(Query::query(
                        Name::from_ascii(format!("{name}.")).map_err(|e| e.to_string())?,
                        RecordType::A,
                    ));
                let q = m.to_vec().map_err(|e| e.to_string())?;
                let t = Instant::now();
                s.send(&q).map_err(|e| e.to_string())?;
                s.recv(&mut buf).map_err(|e| format!("dns answer: {e}"))?;
                times.push(t.elapsed().as_nanos() as u64);
            }
            times.sort_unstable();
            println!("dns-bench: median {} us", times[times.len() / 2] as f64 / 1000.0);
            Ok(0)
        }
        [kind, at] if kind == "serve-udp" => {
            let s = UdpSocket::bind(at).map_err(|e| format!("bind {at}: {e}"))?;
            say("listening");
            let mut buf = [0u8; 2048];
            loop {
                if let Ok((_, from)) = s.recv_from(&mut buf) {
                    say(&format!("datagram from {from}"));
                }
            }
        }
        _ => Err(
            "probe udp ADDR:PORT | probe dns-udp|dns-tcp SERVER:PORT NAME | probe serve-tcp|serve-udp ADDR:PORT".into(),
        ),
    }
}

/// A plain HTTP/1.1 server for benchmarks: `/bytes/N` streams N bytes, `/` answers a few bytes,
/// `/hold` answers once `--hold N` requests are open together, after creating `--ready FILE`
/// and seeing `--release FILE` appear (so a benchmark can measure while they are open).
fn serve_http(at: &str, opts: &[String]) -> R<u8> {
    let mut hold = 0usize;
    let mut ready: Option<PathBuf> = None;
    let mut release: Option<PathBuf> = None;
    let mut it = opts.iter();
    while let Some(o) = it.next() {
        let v = it.next().ok_or("option needs a value")?;
        match o.as_str() {
            "--hold" => hold = v.parse().map_err(|_| "--hold N")?,
            "--ready" => ready = Some(v.into()),
            "--release" => release = Some(v.into()),
            _ => return Err(format!("unknown option {o}")),
        }
    }
    let l = std::net::TcpListener::bind(at).map_err(|e| format!("bind {at}: {e}"))?;
    say("listening");
    let open = std::sync::Arc::new((std::sync::Mutex::new(0usize), std::sync::Condvar::new()));
    let block: std::sync::Arc<Vec<u8>> = std::sync::Arc::new((0..1u32 << 20).map(|i| (i % 251) as u8).collect());
    for s in l.incoming() {
        let Ok(s) = s else { continue };
        let (open, block, ready, release) = (open.clone(), block.clone(), ready.clone(), release.clone());
        std::thread::spawn(move || -> std::io::Result<()> {
            let mut r = std::io::BufReader::new(s.try_clone()?);
            let mut w = s;
            let mut line = String::new();
            std::io::BufRead::read_line(&mut r, &mut line)?;
            loop {
                let mut h = String::new();
                if std::io::BufRead::read_line(&mut r, &mut h)? == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            if let Some(n) = path.strip_prefix("/bytes/") {
                let n: u64 = n.parse().unwrap_or(0);
                write!(w, "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n")?;
                let mut left = n;
                while left > 0 {
                    let k = (left as usize).min(block.len());
                    w.write_all(&block[..k])?;
                    left -= k as u64;
                }
                return Ok(());
            }
            if path == "/hold" {
                let (m, cv) = &*open;
                let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
                *g += 1;
                if *g == hold {
                    if let Some(f) = &ready {
                        let _ = std::fs::write(f, b"");
                    }
                    if let Some(f) = &release {
                        while !f.exists() {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                    cv.notify_all();
                }
                while *g < hold {
                    g = cv.wait(g).unwrap_or_else(|p| p.into_inner());
                }
            }
            w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")?;
            Ok(())
        });
    }
    Ok(0)
}
