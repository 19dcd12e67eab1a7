//! End-to-end tests of `stockade host-check`: the real binary on a hardened and a weak fixture
//! host (every check passes on one and fails on the other), on the live host, and unprivileged.
//!
//! Fixture trees are copied to a temporary directory and given the owners and modes git cannot
//! keep (tests/fixtures/hostcheck/*.modes); that needs root, as CI is. `--probe` is never used:
//! it is the one option that sends traffic off the machine.

use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

const BIN: &str = env!("CARGO_BIN_EXE_stockade");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/hostcheck");

const ALL_IDS: [&str; 20] = [
    "host-minimal-os",
    "host-security-updates",
    "host-unnecessary-services",
    "host-disk-encryption",
    "host-audit-logging",
    "host-kernel-hardening",
    "host-lsm",
    "runner-non-root",
    "runner-no-privilege-groups",
    "runner-no-passwordless-sudo",
    "runner-capabilities",
    "runner-fs-access",
    "runner-ephemeral",
    "runner-no-persistence",
    "runner-egress-restricted",
    "runner-uses-stockade",
    "docker-daemon-config",
    "docker-socket-exposure",
    "docker-privileged-containers",
    "docker-rootless",
];

/// A temporary directory holding a prepared copy of a fixture tree at `root`.
struct Tree {
    dir: PathBuf,
    root: PathBuf,
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    // /proc/self is owned by the effective uid of the reader.
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

fn prepare(name: &str) -> Tree {
    assert!(
        is_root(),
        "host-check fixture tests give files owners with chown: run them as root (as CI does)"
    );
    let dir = std::env::temp_dir().join(format!(
        "stockade-hostcheck-test-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = dir.join("root");
    sh(Command::new("cp")
        .arg("-a")
        .arg(format!("{FIXTURES}/{name}"))
        .arg(&root));
    sh(Command::new("chown").args(["-R", "-h", "0:0"]).arg(&root));
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let modes = std::fs::read_to_string(format!("{FIXTURES}/{name}.modes")).unwrap();
    for line in modes
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let p = root.join(f[1].trim_start_matches('/'));
        match f[0] {
            "dir" | "path" => {
                if f[0] == "dir" {
                    std::fs::create_dir_all(&p).unwrap();
                }
                let mode = u32::from_str_radix(f[2], 8).unwrap();
                chown(&p, f[3].parse().unwrap(), f[4].parse().unwrap());
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            }
            "tree" => sh(Command::new("chown")
                .args(["-R", "-h", &format!("{}:{}", f[2], f[3])])
                .arg(&p)),
            other => panic!("{name}.modes: unknown op {other}"),
        }
    }
    Tree { dir, root }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    run_cmd(Command::new(BIN).args(args))
}

fn run_cmd(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("run stockade");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[derive(Debug)]
struct Res {
    result: String,
    reason: String,
    evidence: String,
}

fn parse(stdout: &str) -> HashMap<String, Res> {
    let v: Value = serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"));
    assert_eq!(v["version"], 1);
    let mut out = HashMap::new();
    for c in v["checks"].as_array().unwrap() {
        for k in ["id", "severity", "result", "evidence", "remediation"] {
            assert!(!c[k].is_null(), "check without {k}: {c}");
        }
        out.insert(
            c["id"].as_str().unwrap().to_string(),
            Res {
                result: c["result"].as_str().unwrap().to_string(),
                reason: c["reason"].as_str().unwrap().to_string(),
                evidence: c["evidence"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join("\n"),
            },
        );
    }
    out
}

fn json_of(root: &Path, extra: &[&str]) -> (i32, HashMap<String, Res>) {
    let mut args = vec!["host-check", "--root", root.to_str().unwrap(), "--format", "json"];
    args.extend_from_slice(extra);
    let r = run(&args);
    assert!(r.stderr.is_empty(), "stderr: {}", r.stderr);
    (r.code, parse(&r.stdout))
}

fn assert_all(results: &HashMap<String, Res>, want: &str) {
    assert_eq!(results.len(), ALL_IDS.len());
    let wrong: Vec<String> = ALL_IDS
        .iter()
        .filter(|id| results[**id].result != want)
        .map(|id| {
            format!(
                "{id}: {} ({}) evidence: {}",
                results[*id].result, results[*id].reason, results[*id].evidence
            )
        })
        .collect();
    assert!(wrong.is_empty(), "not {want}:\n{}", wrong.join("\n"));
}

fn has(results: &HashMap<String, Res>, id: &str, text: &str) {
    let r = &results[id];
    assert!(
        r.reason.contains(text) || r.evidence.contains(text),
        "{id}: {text:?} not in reason {:?} / evidence:\n{}",
        r.reason,
        r.evidence
    );
}

#[test]
fn hardened_host_passes_every_check() {
    let t = prepare("hardened");
    let (code, r) = json_of(&t.root, &[]);
    assert_all(&r, "pass");
    assert_eq!(code, 0);
    has(&r, "host-minimal-os", "12 packages installed");
    has(&r, "host-security-updates", "no pending security updates");
    has(&r, "host-unnecessary-services", "tcp/0.0.0.0:22 pid 400 sshd");
    has(
        &r,
        "host-disk-encryption",
        "/: /dev/mapper/vg0-root on / (ext4, dev 253:0): dm-crypt",
    );
    has(&r, "host-disk-encryption", "/opt/actions-runner/_work: tmpfs");
    has(&r, "host-audit-logging", "auditd active with 3 rules");
    has(&r, "host-kernel-hardening", "kernel.kptr_restrict = 2");
    has(&r, "host-lsm", "AppArmor with 2 enforcing profiles");
    has(&r, "runner-non-root", "jobs run as runner");
    has(
        &r,
        "runner-non-root",
        "GitLab Runner (unit /etc/systemd/system/gitlab-runner.service)",
    );
    has(&r, "runner-ephemeral", "started from a JIT config");
    has(&r, "runner-ephemeral", "registered --ephemeral");
    has(&r, "runner-ephemeral", "sandboxed executor=custom");
    has(&r, "runner-capabilities", "CapabilityBoundingSet=(empty)");
    has(
        &r,
        "runner-egress-restricted",
        "outbound traffic of runner dropped by default (/etc/nftables.conf)",
    );
    has(&r, "runner-egress-restricted", "jobs run inside stockade");
    has(&r, "runner-egress-restricted", "169.254.169.254 not probed");
    has(
        &r,
        "runner-uses-stockade",
        "ACTIONS_RUNNER_HOOK_JOB_STARTED=/usr/local/bin/stockade-job-started",
    );
    has(&r, "docker-socket-exposure", "as configured");
    has(
        &r,
        "docker-privileged-containers",
        "read from /var/lib/docker/containers",
    );
    has(&r, "docker-rootless", "userns-remap = default");
}

#[test]
fn weak_host_fails_every_check() {
    let t = prepare("weak");
    let (code, r) = json_of(&t.root, &[]);
    assert_all(&r, "fail");
    assert_eq!(code, 1);
    has(&r, "host-minimal-os", "xserver-xorg-core, gdm3");
    has(
        &r,
        "host-security-updates",
        "openssl 3.0.11-1~deb12u1 -> 3.0.15-1~deb12u1",
    );
    has(&r, "host-security-updates", "unattended-upgrades is not installed");
    has(
        &r,
        "host-unnecessary-services",
        "tcp/0.0.0.0:2375 pid 600 dockerd as root (uid 0)",
    );
    has(&r, "host-unnecessary-services", "tcp/[::]:80 pid 440 apache2");
    has(
        &r,
        "host-disk-encryption",
        "/home/runner/actions-runner/_work: /dev/sda2 on /home (ext4, dev 8:2): not encrypted",
    );
    has(&r, "host-audit-logging", "Storage=volatile");
    has(&r, "host-kernel-hardening", "kernel.yama.ptrace_scope=0");
    has(&r, "host-lsm", "AppArmor disabled");
    has(
        &r,
        "runner-non-root",
        "GitLab Runner (pid 510 gitlab-runner): service user root, jobs run as root",
    );
    has(&r, "runner-no-privilege-groups", "privileged: sudo,docker");
    has(
        &r,
        "runner-no-privilege-groups",
        "jenkins in groups jenkins,adm: privileged: adm",
    );
    has(
        &r,
        "runner-no-passwordless-sudo",
        "/etc/sudoers.d/ci:2: runner ALL=(ALL) NOPASSWD: ALL",
    );
    has(&r, "runner-no-passwordless-sudo", "/etc/sudoers.d/ci:4: BUILDERS");
    has(&r, "runner-capabilities", "CapPrm cap_net_admin,cap_net_raw");
    has(
        &r,
        "runner-fs-access",
        "work dir /home/runner/actions-runner/_work is world-writable (mode 0777)",
    );
    has(
        &r,
        "runner-fs-access",
        "/home/runner/actions-runner/bin/Runner.Listener owned by runner",
    );
    has(&r, "runner-fs-access", "/home/jenkins/agent.jar owned by jenkins");
    has(&r, "runner-ephemeral", "has no \"ephemeral\": true");
    has(&r, "runner-ephemeral", "shell executor runs jobs directly on the host");
    has(
        &r,
        "runner-no-persistence",
        "/home/runner/actions-runner/_work: _tool, app",
    );
    has(&r, "runner-no-persistence", "/tmp: runner-job-42.log owned by runner");
    has(
        &r,
        "runner-no-persistence",
        "/home/runner: .docker/config.json, .git-credentials",
    );
    has(&r, "runner-no-persistence", "/home/jenkins/work: workspace");
    has(&r, "runner-egress-restricted", "no default-drop egress rule for runner");
    has(&r, "runner-uses-stockade", "no job hooks in its .env");
    has(&r, "docker-daemon-config", "tcp://0.0.0.0:2375 without tlsverify");
    has(&r, "docker-daemon-config", "seccomp-profile = unconfined");
    has(
        &r,
        "docker-socket-exposure",
        "2 non-root users can reach the Docker socket: runner, alice",
    );
    has(
        &r,
        "docker-privileged-containers",
        "container dind-build (9b1dbbbbbbbb): Privileged, mounts the Docker socket",
    );
    has(&r, "docker-privileged-containers", "CapAdd SYS_PTRACE,SYS_ADMIN");
    has(
        &r,
        "docker-privileged-containers",
        "gitlab runner dind starts job containers with privileged = true",
    );
    has(&r, "docker-rootless", "dockerd runs as root without userns-remap");
    // The stopped privileged container is not counted.
    assert!(!r["docker-privileged-containers"].evidence.contains("old-privileged"));
}

#[test]
fn plain_table_sarif_and_fail_on() {
    let t = prepare("weak");
    let root = t.root.to_str().unwrap();
    let plain = run(&["host-check", "--root", root]);
    assert_eq!(plain.code, 1);
    let host = plain.stdout.find("\nRunner host\n").expect("group heading");
    let process = plain.stdout.find("\nRunner process\n").expect("group heading");
    let builds = plain.stdout.find("\nContainer builds\n").expect("group heading");
    assert!(host < process && process < builds);
    assert!(plain.stdout.contains("  FAIL     critical  docker-socket-exposure"));
    assert!(
        plain
            .stdout
            .contains("fix: Keep /run/docker.sock root:docker mode 0660")
    );
    let summary = plain.stdout.lines().last().unwrap();
    assert_eq!(
        summary,
        "summary: critical 0 passed 1 failed | high 0 passed 8 failed | medium 0 passed 8 failed | info 0 passed 3 failed | 0 warn, 0 not applicable, 0 unknown"
    );
    // Only the critical check decides at --fail-on critical; it fails here.
    assert_eq!(
        run(&[
            "host-check",
            "--root",
            root,
            "--format",
            "json",
            "--fail-on",
            "critical"
        ])
        .code,
        1
    );

    let sarif = run(&["host-check", "--root", root, "--format", "sarif"]);
    assert_eq!(sarif.code, 1);
    let v: Value = serde_json::from_str(&sarif.stdout).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let results = v["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 20);
    assert!(results.iter().all(|r| r["kind"] == "fail"));
    assert_eq!(v["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap().len(), 20);
    // The same SARIF schema subset the audit output is held to (see tests/audit_output.rs).
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/audit/sarif-2.1.0-subset.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let mut bad = v.clone();
    bad["runs"][0]["results"][0]["kind"] = Value::from("passed");
    assert!(
        validator.iter_errors(&bad).next().is_some(),
        "the schema must reject a bad kind"
    );

    // A host whose only failure is an info check: clean at the default threshold, not at info.
    let h = prepare("hardened");
    std::fs::write(h.root.join("opt/actions-runner/.env"), "LANG=C.UTF-8\n").unwrap();
    let (code, r) = json_of(&h.root, &[]);
    assert_eq!(r["runner-uses-stockade"].result, "fail");
    assert_eq!(r.values().filter(|x| x.result == "fail").count(), 1);
    assert_eq!(code, 0);
    assert_eq!(json_of(&h.root, &["--fail-on", "info"]).0, 1);
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    let r = run(&["host-check", "--root", "/nonexistent/stockade-root"]);
    assert_eq!(r.code, 2);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("--root") && r.stderr.contains("/nonexistent/stockade-root"),
        "{}",
        r.stderr
    );
    let r = run(&["host-check", "--root", "/etc/hostname"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stdout.is_empty());
    assert_eq!(run(&["host-check", "--format", "yaml"]).code, 2);
    assert_eq!(run(&["host-check", "--fail-on", "severe"]).code, 2);
}

/// A peer that answers like the Docker Engine API on a unix socket, since this machine runs no
/// Docker engine; it records every request line so the test can see that only GETs were sent.
fn fake_docker_api(path: &Path, inspect_body: &'static str) -> Arc<Mutex<Vec<String>>> {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let listener = UnixListener::bind(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        // At most a list and an inspect per run, two runs: a bounded loop.
        for stream in listener.incoming().take(8) {
            let Ok(stream) = stream else { return };
            serve(stream, inspect_body, &log);
        }
    });
    seen
}

fn serve(mut stream: UnixStream, inspect_body: &str, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    reader.read_line(&mut request).unwrap();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
            break;
        }
    }
    let request = request.trim_end().to_string();
    log.lock().unwrap().push(request.clone());
    let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    if request.starts_with("GET /containers/json ") {
        let body = format!("[{{\"Id\":\"{id}\",\"Names\":[\"/api-container\"],\"State\":\"running\"}}]");
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    } else if request.starts_with(&format!("GET /containers/{id}/json ")) {
        // Chunked, as the engine sends larger answers.
        let (a, b) = inspect_body.split_at(inspect_body.len() / 2);
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
            a.len(),
            b.len()
        );
    } else {
        let _ = write!(stream, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

#[test]
fn docker_api_is_read_with_gets_only() {
    let w = prepare("weak");
    let seen = fake_docker_api(
        &w.root.join("run/docker.sock"),
        r#"{"Name":"/api-privileged","HostConfig":{"Privileged":true,"CapAdd":null,"Binds":null}}"#,
    );
    let (_, r) = json_of(&w.root, &[]);
    assert_eq!(r["docker-privileged-containers"].result, "fail");
    has(
        &r,
        "docker-privileged-containers",
        "1 running containers listed through the Docker API on /run/docker.sock",
    );
    has(
        &r,
        "docker-privileged-containers",
        "container api-privileged (0123456789ab): Privileged",
    );
    // The API answered, so the on-disk state was not needed.
    assert!(!r["docker-privileged-containers"].evidence.contains("dind-build"));
    assert_eq!(r["docker-socket-exposure"].result, "fail");
    has(&r, "docker-socket-exposure", "world-accessible (mode 0666)");
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(
        requests
            .iter()
            .all(|l| l.starts_with("GET ") && l.ends_with(" HTTP/1.1")),
        "{requests:?}"
    );

    let h = prepare("hardened");
    let _seen = fake_docker_api(
        &h.root.join("run/docker.sock"),
        r#"{"Name":"/api-plain","HostConfig":{"Privileged":false,"CapAdd":["CHOWN"]}}"#,
    );
    std::fs::set_permissions(h.root.join("run/docker.sock"), std::fs::Permissions::from_mode(0o660)).unwrap();
    chown(&h.root.join("run/docker.sock"), 0, 998);
    let (_, r) = json_of(&h.root, &[]);
    assert_eq!(r["docker-privileged-containers"].result, "pass");
    has(
        &r,
        "docker-privileged-containers",
        "container api-plain (0123456789ab): unprivileged",
    );
    assert_eq!(r["docker-socket-exposure"].result, "pass");
    has(
        &r,
        "docker-socket-exposure",
        "/run/docker.sock: mode 0660, owner root (uid 0), group docker",
    );
}

/// setpriv drops to `nobody` with no groups; the binary is copied where that user can run it.
fn as_nobody(dir: &Path, args: &[&str]) -> Run {
    let bin = dir.join("stockade");
    if !bin.exists() {
        std::fs::copy(BIN, &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    run_cmd(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&bin)
            .args(args),
    )
}

#[test]
fn unprivileged_user_gets_unknown_with_the_reason() {
    let t = prepare("weak");
    // What only root may read on a real host.
    for pid in ["400", "430", "440", "600"] {
        std::fs::set_permissions(
            t.root.join(format!("proc/{pid}/fd")),
            std::fs::Permissions::from_mode(0o500),
        )
        .unwrap();
    }
    std::fs::set_permissions(t.root.join("var/lib/docker"), std::fs::Permissions::from_mode(0o710)).unwrap();
    let r = as_nobody(
        &t.dir,
        &["host-check", "--root", t.root.to_str().unwrap(), "--format", "json"],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let res = parse(&r.stdout);
    assert_eq!(res["runner-no-passwordless-sudo"].result, "unknown");
    has(
        &res,
        "runner-no-passwordless-sudo",
        "sudoers unreadable: /etc/sudoers: permission denied",
    );
    assert_eq!(res["host-unnecessary-services"].result, "fail");
    has(
        &res,
        "host-unnecessary-services",
        "tcp/0.0.0.0:2375 process not visible (fds of 4 processes unreadable)",
    );
    has(
        &res,
        "docker-privileged-containers",
        "not read: /var/lib/docker/containers: permission denied",
    );
    for (id, x) in &res {
        if x.result == "unknown" {
            assert!(!x.reason.is_empty(), "{id}: unknown without a reason");
        }
    }
}

#[test]
fn live_run_finishes_and_prints_the_table() {
    let r = run(&["host-check"]);
    assert!(r.code == 0 || r.code == 1, "exit {}: {}", r.code, r.stderr);
    for heading in [
        "stockade host-check (root /)",
        "\nRunner host\n",
        "\nRunner process\n",
        "\nContainer builds\n",
    ] {
        assert!(r.stdout.contains(heading), "{heading:?} missing:\n{}", r.stdout);
    }
    assert!(
        r.stdout.lines().last().unwrap().starts_with("summary: "),
        "{}",
        r.stdout
    );

    // The same as an unprivileged user: it finishes, and what it could not read says why.
    let dir = std::env::temp_dir().join(format!("stockade-hostcheck-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let u = as_nobody(&dir, &["host-check", "--format", "json"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(u.code == 0 || u.code == 1, "exit {}: {}", u.code, u.stderr);
    let res = parse(&u.stdout);
    assert_eq!(res.len(), ALL_IDS.len());
    for (id, x) in &res {
        assert!(!x.reason.is_empty(), "{id}: {} without a reason", x.result);
    }
}
