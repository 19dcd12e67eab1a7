//! End-to-end tests of `stockade run`: the real binary, the real kernel, a probe inside the
//! sandbox that reports what it can see and do. They need root (CI runs as root).

#[macro_use]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_stockade");

/// A private state dir per test, so parallel tests never share job state.
fn state_dir(name: &str) -> PathBuf {
    // Not under /tmp: the job's fresh /tmp would show the mount point of a workspace kept there.
    let d = PathBuf::from(format!("/var/lib/stockade-tests/{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run_in(state: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("run")
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run stockade")
}

fn sh(state: &Path, script: &str) -> Output {
    run_in(state, &["--", "sh", "-c", script])
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("report written")).expect("report is JSON")
}

#[test]
fn identity_capabilities_nnp_and_seccomp() {
    need_root!();
    let st = state_dir("ident");
    let o = sh(
        &st,
        "id -u; id -g; grep -E '^(Cap|NoNewPrivs|Seccomp):' /proc/self/status",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1000"));
    assert_eq!(lines.next(), Some("1000"));
    for l in lines {
        let (k, v) = l.split_once(':').unwrap();
        let v = v.trim();
        match k {
            "CapInh" | "CapPrm" | "CapEff" | "CapBnd" | "CapAmb" => assert_eq!(v, "0000000000000000", "{k}"),
            "NoNewPrivs" => assert_eq!(v, "1"),
            "Seccomp" => assert_eq!(v, "2"),
            _ => panic!("unexpected line {l}"),
        }
    }
    // The job's host uid is unprivileged: seen from outside, its processes are not root.
    let o = sh(&st, "cat /proc/self/uid_map");
    let map = stdout(&o);
    let host_base: u64 = map.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(host_base >= 100_000_000, "job maps to host uid {host_base}");
}

#[test]
fn host_processes_are_invisible() {
    need_root!();
    let st = state_dir("pids");
    let o = sh(&st, "ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let pids: Vec<u32> = stdout(&o).split_whitespace().map(|p| p.parse().unwrap()).collect();
    // init, sh, ls, grep, sort, tr at most: a handful of small pids, none of the host's.
    assert!(pids.len() <= 8, "{pids:?}");
    assert!(pids.iter().all(|p| *p < 20), "{pids:?}");
    assert!(!pids.contains(&std::process::id()) || std::process::id() < 20);
}

#[test]
fn writes_only_to_workspace_and_tmpfs() {
    need_root!();
    let st = state_dir("writes");
    let o = sh(
        &st,
        "for d in / /etc /usr /var /opt /proc/sys/kernel; do touch $d/stockade-probe 2>/dev/null && echo WROTE $d; done; \
         echo x > /proc/sys/kernel/hostname 2>/dev/null && echo WROTE sysctl; \
         for d in /tmp /var/tmp /run /dev/shm .; do touch $d/ok && echo ok $d; done",
    );
    let out = stdout(&o);
    assert!(!out.contains("WROTE"), "{out}");
    for d in ["/tmp", "/var/tmp", "/run", "/dev/shm", "."] {
        assert!(
            out.contains(&format!("ok {d}\n")),
            "cannot write {d}: {out} {}",
            stderr(&o)
        );
    }
}

#[test]
fn hidden_paths_are_unreadable() {
    need_root!();
    let st = state_dir("hidden");
    // A fake runner credential and a policy-hidden path, made for this test.
    let opt = PathBuf::from(format!("/opt/stockade-test-runner-{}", std::process::id()));
    std::fs::create_dir_all(&opt).unwrap();
    std::fs::write(opt.join(".credentials"), "secret-token").unwrap();
    std::fs::write(opt.join("visible"), "fine").unwrap();
    let extra = std::env::temp_dir().join(format!("stockade-hide-{}", std::process::id()));
    std::fs::write(&extra, "hide me").unwrap();
    let script = format!(
        "for p in /root /home /etc/shadow /etc/gshadow /etc/sudoers /var/lib/stockade {opt}/.credentials {extra}; do \
           if [ -e $p ] || [ -L $p ]; then cat $p >/dev/null 2>&1 && echo READ $p; ls $p >/dev/null 2>&1 && [ -d $p ] && echo LISTED $p; fi; \
         done; cat {opt}/visible",
        opt = opt.display(),
        extra = extra.display()
    );
    let o = run_in(&st, &["--hide", &extra.to_string_lossy(), "--", "sh", "-c", &script]);
    let out = stdout(&o);
    std::fs::remove_dir_all(&opt).unwrap();
    std::fs::remove_file(&extra).unwrap();
    assert!(!out.contains("READ") && !out.contains("LISTED"), "{out}");
    assert!(
        out.ends_with("fine"),
        "a path beside a hidden one stays readable: {out} {}",
        stderr(&o)
    );
}

const SYSCALL_PROBE: &str = r#"
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
def t(name, *a):
    ctypes.set_errno(0)
    r = libc.syscall(*a)
    print(name, r, errno.errorcode.get(ctypes.get_errno(), "0"))
t("mount", 165, b"none", b"/tmp", b"tmpfs", 0, 0)
t("unshare_user", 272, 0x10000000)
t("bpf", 321, 0, 0, 0)
t("keyctl", 250, 0, 0, 0)
t("perf_event_open", 298, 0, 0, -1, -1, 0)
t("userfaultfd", 323, 0)
t("tiocsti", 16, 1, 0x5412, b"x")
t("fsopen", 430, b"tmpfs", 0)
t("getpid", 39)
"#;

#[test]
fn dangerous_syscalls_fail_with_eperm_and_are_counted() {
    need_root!();
    let st = state_dir("seccomp");
    let rep = st.join("report.json");
    let o = run_in(
        &st,
        &["--report", rep.to_str().unwrap(), "--", "python3", "-c", SYSCALL_PROBE],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    for name in [
        "mount",
        "unshare_user",
        "bpf",
        "keyctl",
        "perf_event_open",
        "userfaultfd",
        "tiocsti",
        "fsopen",
    ] {
        assert!(out.contains(&format!("{name} -1 EPERM")), "{name}: {out}");
    }
    assert!(
        out.contains("getpid 2 0") || out.lines().any(|l| l.starts_with("getpid ") && !l.contains("-1")),
        "{out}"
    );
    let r = report(&rep);
    for name in [
        "mount",
        "unshare",
        "bpf",
        "keyctl",
        "perf_event_open",
        "userfaultfd",
        "ioctl",
        "fsopen",
    ] {
        assert_eq!(
            r["denied_syscalls"][name]["count"], 1,
            "{name}: {}",
            r["denied_syscalls"]
        );
    }
}

#[test]
fn only_loopback_network() {
    need_root!();
    let st = state_dir("net");
    let o = sh(
        &st,
        "ls /sys/class/net; cat /sys/class/net/lo/operstate; awk 'NR>2{print $1}' /proc/net/dev",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "lo", "{out}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("lo")).count(), 2, "{out}");
    assert_eq!(lines.len(), 3, "{out}");
}

#[test]
fn memory_limit_stops_a_hog() {
    need_root!();
    let st = state_dir("mem");
    let rep = st.join("r.json");
    let o = run_in(
        &st,
        &[
            "--memory",
            "64M",
            "--report",
            rep.to_str().unwrap(),
            "--",
            "python3",
            "-c",
            "b=bytearray(512<<20); print('survived')",
        ],
    );
    assert_eq!(o.status.code(), Some(137), "{}", stderr(&o));
    assert!(!stdout(&o).contains("survived"));
    assert!(stderr(&o).contains("out of memory"), "{}", stderr(&o));
    let r = report(&rep);
    assert_eq!(r["outcome"]["oom_killed"], true);
    assert_eq!(r["outcome"]["exit_code"], 137);
}

#[test]
fn fork_bomb_is_held_by_the_pids_limit() {
    need_root!();
    let st = state_dir("forkbomb");
    let rep = st.join("r.json");
    let start = Instant::now();
    let o = run_in(
        &st,
        &[
            "--pids",
            "64",
            "--timeout",
            "5s",
            "--report",
            rep.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "f(){ f | f & }; f; sleep 3; echo done",
        ],
    );
    // The host stays responsive: we got here, and a host process still forks fine.
    assert!(Command::new("true").status().unwrap().success());
    let r = report(&rep);
    assert_eq!(r["outcome"]["pids_limit_hit"], true, "{}", stderr(&o));
    assert!(r["resources"]["pids_peak"].as_u64().unwrap_or(64) <= 64);
    assert!(start.elapsed() < Duration::from_secs(60));
    assert!(r["leftovers"].as_array().unwrap().is_empty(), "{}", r["leftovers"]);
}

#[test]
fn timeout_kills_and_exits_124() {
    need_root!();
    let st = state_dir("timeout");
    let o = run_in(&st, &["--timeout", "1s", "--", "sleep", "30"]);
    assert_eq!(o.status.code(), Some(124));
    assert!(stderr(&o).contains("timed out"));
}

fn host_has_process_with(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(marker))
            .unwrap_or(false)
    })
}

#[test]
fn daemonized_processes_die_with_the_job() {
    need_root!();
    let st = state_dir("daemon");
    let rep = st.join("r.json");
    let marker = format!("{}", 900000 + std::process::id() % 99999);
    let script = format!(
        "setsid sh -c 'sleep {marker} & sleep {marker} &' </dev/null >/dev/null 2>&1 & sleep 0.3; echo started"
    );
    let o = run_in(&st, &["--report", rep.to_str().unwrap(), "--", "sh", "-c", &script]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        !host_has_process_with(&format!("sleep\0{marker}")),
        "daemon survived the job"
    );
    let r = report(&rep);
    let left = r["left_running"].as_array().unwrap();
    assert!(
        left.iter().any(|p| p["cmdline"].as_str().unwrap().contains(&marker)),
        "{left:?}"
    );
}

#[test]
fn fresh_workspace_is_reachable_by_its_absolute_path() {
    need_root!();
    // The default workspace lives under the hidden state root; its path must still resolve.
    let st = PathBuf::from("/var/lib/stockade");
    let o = sh(
        &st,
        "touch \"$PWD/made\" && ls \"$PWD\" && ls /var/lib/stockade 2>/dev/null || echo unlisted",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "made\nunlisted\n");
}

#[test]
fn tmp_does_not_persist_between_jobs() {
    need_root!();
    let st = state_dir("tmp");
    let o = sh(&st, "echo secret > /tmp/leftover && ls /tmp");
    assert!(stdout(&o).contains("leftover"));
    let o = sh(&st, "ls -A /tmp | wc -l");
    assert_eq!(stdout(&o).trim(), "0");
}

fn stockade_cgroups() -> Vec<String> {
    let mut out = Vec::new();
    for base in [
        "/sys/fs/cgroup/unified/stockade",
        "/sys/fs/cgroup/stockade",
        "/sys/fs/cgroup/memory/stockade",
        "/sys/fs/cgroup/pids/stockade",
        "/sys/fs/cgroup/cpuacct/stockade",
    ] {
        if let Ok(rd) = std::fs::read_dir(base) {
            out.extend(
                rd.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.path().display().to_string()),
            );
        }
    }
    out
}

#[test]
fn sigkill_of_stockade_leaves_nothing_after_gc() {
    need_root!();
    let st = state_dir("sigkill");
    let marker = format!("{}", 800000 + std::process::id() % 99999);
    let mut child = Command::new(BIN)
        .args(["run", "--state-dir"])
        .arg(&st)
        .args(["--", "sh", "-c", &format!("sleep {marker} & sleep {marker}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait (bounded) until the job runs, then kill the supervisor outright.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !host_has_process_with(&format!("sleep\0{marker}")) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(host_has_process_with(&format!("sleep\0{marker}")), "job never started");
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while host_has_process_with(&format!("sleep\0{marker}")) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !host_has_process_with(&format!("sleep\0{marker}")),
        "job outlived its supervisor"
    );
    let o = Command::new(BIN).args(["gc", "--state-dir"]).arg(&st).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let jobs: Vec<_> = std::fs::read_dir(st.join("jobs")).unwrap().flatten().collect();
    assert!(jobs.is_empty(), "job dirs left: {jobs:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&*st.to_string_lossy()), "mounts left");
    for cg in stockade_cgroups() {
        // Other tests may be running; only a cgroup whose supervisor is dead would be a leak.
        let id = cg.rsplit('/').next().unwrap().to_string();
        let pid: i32 = id.split('.').nth(1).unwrap().parse().unwrap();
        assert!(Path::new(&format!("/proc/{pid}")).exists(), "stale cgroup {cg}");
    }
}

#[test]
fn two_hundred_sequential_jobs_leak_nothing() {
    need_root!();
    let st = state_dir("many");
    for i in 0..200 {
        let o = run_in(&st, &["--", "true"]);
        assert_eq!(o.status.code(), Some(0), "job {i}: {}", stderr(&o));
        assert!(!stderr(&o).contains("teardown left"), "job {i}: {}", stderr(&o));
    }
    // Other programs on the host may mount and unmount meanwhile; none of ours may remain.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&*st.to_string_lossy()), "a job's mount is left");
    assert_eq!(std::fs::read_dir(st.join("jobs")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(st.join("work")).unwrap().count(), 0);
}

#[test]
fn bad_policy_is_one_clear_line_and_125() {
    need_root!();
    let st = state_dir("badpolicy");
    let p = st.join("bad.toml");
    std::fs::write(&p, "[limits]\nmemory = \"lots\"\n").unwrap();
    let o = run_in(&st, &["--policy", p.to_str().unwrap(), "--", "true"]);
    assert_eq!(o.status.code(), Some(125));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("bad.toml:2: limits.memory: invalid size"), "{err}");
    let p2 = st.join("unknown.toml");
    std::fs::write(&p2, "[job]\nuid = 0\n").unwrap();
    let o = run_in(&st, &["--policy", p2.to_str().unwrap(), "--", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("unknown.toml:2: job.uid: must not be 0"),
        "{}",
        stderr(&o)
    );
    // Nothing left behind by a refused job.
    assert_eq!(std::fs::read_dir(st.join("jobs")).map(|d| d.count()).unwrap_or(0), 0);
}

#[test]
fn every_documented_exit_code() {
    need_root!();
    let st = state_dir("codes");
    assert_eq!(sh(&st, "exit 0").status.code(), Some(0));
    assert_eq!(sh(&st, "exit 42").status.code(), Some(42));
    assert_eq!(sh(&st, "kill -TERM $$").status.code(), Some(128 + 15));
    assert_eq!(
        run_in(&st, &["--timeout", "1s", "--", "sleep", "9"]).status.code(),
        Some(124)
    );
    let bad = run_in(&st, &["--memory", "nope", "--", "true"]);
    assert_eq!(bad.status.code(), Some(125));
    assert_eq!(stderr(&bad).lines().count(), 1, "{}", stderr(&bad));
    assert_eq!(
        run_in(&st, &["--workspace", "/nonexistent-dir", "--", "true"])
            .status
            .code(),
        Some(125)
    );
    assert_eq!(run_in(&st, &["--", "/etc/hostname"]).status.code(), Some(126));
    assert_eq!(run_in(&st, &["--", "no-such-command-xyz"]).status.code(), Some(127));
}

#[test]
fn secrets_are_given_and_masked() {
    need_root!();
    let st = state_dir("secret");
    let f = st.join("token");
    std::fs::write(&f, "s3cr3t-value\n").unwrap();
    let o = run_in(
        &st,
        &[
            "--secret",
            &format!("TOKEN=@{}", f.display()),
            "--",
            "sh",
            "-c",
            "echo token=$TOKEN; echo err=$TOKEN >&2; [ \"$TOKEN\" = s3cr3t-value ] && echo match",
        ],
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "token=***\nmatch\n");
    assert!(stderr(&o).contains("err=***") && !stderr(&o).contains("s3cr3t"));
}

#[test]
fn a_secret_file_is_seen_at_its_target_only() {
    need_root!();
    let st = state_dir("secretfile");
    let f = st.join("token");
    std::fs::write(&f, "s3cr3t-file\n").unwrap();
    // The file lives in init's staging tmpfs under the state dir: neither the job's copy of the
    // host's mount tree nor an operator's recursive bind of a directory above the state dir may
    // bring that tmpfs along.
    let script = format!(
        "cat /etc/hostname; grep -c ' {}/jobs' /proc/self/mountinfo; grep -c ' /opt/' /proc/self/mountinfo; true",
        st.display()
    );
    let o = run_in(
        &st,
        &[
            "--secret",
            &format!("/etc/hostname=@{}", f.display()),
            "--bind",
            &format!("{}:/opt", st.parent().unwrap().display()),
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "***\n0\n0\n", "{}", stderr(&o));
}

#[test]
fn workspace_is_shared_and_owned_files_stay_with_owner() {
    need_root!();
    let st = state_dir("ws");
    let ws = st.join("workspace");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("in"), "input").unwrap();
    let o = run_in(
        &st,
        &[
            "--workspace",
            ws.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "pwd; cat in; echo out > out",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{}\ninput", ws.display()));
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(ws.join("out")).unwrap();
    assert_eq!(
        m.uid(),
        0,
        "written through the id-mapped mount as the workspace's owner"
    );
}

#[test]
fn sigterm_is_forwarded_to_the_job() {
    need_root!();
    let st = state_dir("sigterm");
    let mut child = Command::new(BIN)
        .args(["run", "--state-dir"])
        .arg(&st)
        .args([
            "--",
            "sh",
            "-c",
            "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(rest.contains("got-term"), "{rest}");
    assert_eq!(status.code(), Some(7));
}

#[test]
fn writable_root_is_thrown_away() {
    need_root!();
    let st = state_dir("wroot");
    // The root is an overlay over the host's whose root-owned files the job (never root) sees as
    // its own: it can install into /usr/local or edit /etc, and nothing reaches the host. Hidden
    // paths stay hidden.
    let script = "awk '$2==\"/\"{print $3}' /proc/self/mounts; \
        echo 'echo installed' > /usr/local/bin/stockade-probe && chmod +x /usr/local/bin/stockade-probe && stockade-probe; \
        echo 'probe:x:4242:4242::/:/bin/sh' >> /etc/passwd && getent passwd probe | cut -d: -f3; \
        cat /etc/shadow 2>/dev/null || echo shadow-hidden; \
        stat -c %u /usr";
    let o = run_in(&st, &["--writable-root", "--", "sh", "-c", script]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "overlay\ninstalled\n4242\nshadow-hidden\n1000\n");
    assert!(!Path::new("/usr/local/bin/stockade-probe").exists());
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    assert!(!passwd.contains("probe:x:4242"), "the host's /etc/passwd changed");
}

#[test]
fn unprivileged_mode_isolates_and_reports_what_it_cannot_enforce() {
    need_root!();
    // setpriv drops to nobody: the kernel allows unprivileged user namespaces here.
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "env",
            "HOME=/tmp",
            "XDG_RUNTIME_DIR=",
        ])
        .arg(BIN)
        .args([
            "run",
            "--",
            "sh",
            "-c",
            "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; ls /home 2>/dev/null || echo hidden",
        ])
        .current_dir("/tmp")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "CapEff:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\nhidden\n"
    );
    let err = stderr(&o);
    assert!(err.contains("running unprivileged"), "{err}");
    assert!(err.contains("memory limit") && err.contains("RLIMIT_AS"), "{err}");
}
