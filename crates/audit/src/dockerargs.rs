//! Reads `docker run`-style option strings (GitHub container options, Jenkins agent args, shell
//! scripts) into flags, so that rules match `--privileged` and not a word that merely contains it.

/// One option with its value (`--cap-add=SYS_ADMIN`, `--cap-add SYS_ADMIN`, `-v a:b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// As written, without the value: `--privileged`, `-v`.
    pub name: String,
    pub value: Option<String>,
    /// The flag's text as it appears in the source, to locate it.
    pub raw: String,
}

/// Options that take a value in the following word when not written as `--opt=value`.
const VALUE_FLAGS: &[&str] = &[
    "--cap-add",
    "--cap-drop",
    "--pid",
    "--network",
    "--net",
    "--ipc",
    "--uts",
    "--userns",
    "--cgroupns",
    "--security-opt",
    "-v",
    "--volume",
    "--mount",
    "--volumes-from",
    "--user",
    "-u",
    "-e",
    "--env",
    "--env-file",
    "--name",
    "--entrypoint",
    "-w",
    "--workdir",
    "--device",
    "--group-add",
    "-p",
    "--publish",
    "--shm-size",
    "-m",
    "--memory",
    "--memory-swap",
    "--cpus",
    "--cpu-shares",
    "--cpuset-cpus",
    "--label",
    "-l",
    "--add-host",
    "--tmpfs",
    "--ulimit",
    "--hostname",
    "-h",
    "--dns",
    "--platform",
    "--gpus",
    "--runtime",
    "--restart",
    "--log-driver",
    "--log-opt",
    "--pull",
    "--stop-signal",
    "--network-alias",
    "--health-cmd",
    "--health-interval",
    "--health-timeout",
    "--health-retries",
    "--health-start-period",
    "--pids-limit",
    "--storage-opt",
    "--sysctl",
    "--cidfile",
    "--expose",
    "--link",
    "--isolation",
];

/// Splits like a shell would (quotes, backslashes), keeping each word's raw text.
pub fn words(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut raw = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => {
                quote = None;
                raw.push(c);
            }
            Some(_) => {
                cur.push(c);
                raw.push(c);
            }
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    in_word = true;
                    raw.push(c);
                }
                '\\' => {
                    if let Some(n) = chars.next()
                        && n != '\n'
                    {
                        cur.push(n);
                        raw.push(c);
                        raw.push(n);
                        in_word = true;
                    }
                }
                c if c.is_whitespace() => {
                    if in_word {
                        out.push((std::mem::take(&mut cur), std::mem::take(&mut raw)));
                        in_word = false;
                    }
                }
                _ => {
                    cur.push(c);
                    raw.push(c);
                    in_word = true;
                }
            },
        }
    }
    if in_word {
        out.push((cur, raw));
    }
    out
}

/// The options of an option string; stops at the first word that is not an option when
/// `stop_at_operand` (for `docker run OPTIONS IMAGE ARGS`), else reads all of it.
pub fn flags(s: &str, stop_at_operand: bool) -> Vec<Flag> {
    let ws = words(s);
    let mut out = Vec::new();
    let mut i = 0;
    while i < ws.len() {
        let (w, raw) = &ws[i];
        i += 1;
        if !w.starts_with('-') || w == "-" {
            if stop_at_operand {
                break;
            }
            continue;
        }
        if w == "--" {
            break;
        }
        if let Some((name, value)) = w.split_once('=') {
            out.push(Flag {
                name: name.to_string(),
                value: Some(value.to_string()),
                raw: raw.split('=').next().unwrap_or(raw).to_string(),
            });
        } else if VALUE_FLAGS.contains(&w.as_str()) {
            let value = ws.get(i).map(|(v, _)| v.clone());
            i += 1;
            out.push(Flag {
                name: w.clone(),
                value,
                raw: raw.clone(),
            });
        } else {
            out.push(Flag {
                name: w.clone(),
                value: None,
                raw: raw.clone(),
            });
        }
    }
    out
}

/// Host paths whose mount hands a job the host (the container engine, the kernel's views, or
/// the host's configuration and credentials).
pub fn is_sensitive_host_path(path: &str) -> bool {
    let p = path.trim().trim_end_matches('/');
    let p = if p.is_empty() && path.trim().starts_with('/') {
        "/"
    } else {
        p
    };
    const EXACT: &[&str] = &[
        "/",
        "/etc",
        "/root",
        "/home",
        "/proc",
        "/sys",
        "/boot",
        "/dev",
        "/var/run",
        "/run",
        "/var/lib/docker",
        "/var/lib/containerd",
        "/var/lib/kubelet",
        "/var/run/docker.sock",
        "/run/docker.sock",
        "/var/run/containerd",
        "/run/containerd",
        "/var/run/containerd/containerd.sock",
        "/run/containerd/containerd.sock",
        "/var/run/crio/crio.sock",
        "/run/crio/crio.sock",
        "/var/run/cri-dockerd.sock",
        "/run/podman/podman.sock",
    ];
    const UNDER: &[&str] = &[
        "/proc/",
        "/sys/",
        "/root/",
        "/var/lib/docker/",
        "/var/lib/containerd/",
        "/var/lib/kubelet/",
        "/run/containerd/",
        "/var/run/containerd/",
    ];
    EXACT.contains(&p) || UNDER.iter().any(|u| p.starts_with(u)) || p.ends_with("/docker.sock")
}

pub fn is_docker_socket(path: &str) -> bool {
    let p = path.trim();
    p.ends_with("docker.sock") || p == "/var/run" || p == "/run"
}

/// Capabilities that give a job the host, or most of it.
pub const DANGEROUS_CAPS: &[&str] = &[
    "ALL",
    "SYS_ADMIN",
    "NET_ADMIN",
    "SYS_PTRACE",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_BOOT",
    "DAC_READ_SEARCH",
    "DAC_OVERRIDE",
    "BPF",
    "PERFMON",
    "SYS_TIME",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "SYSLOG",
];

pub fn normalize_cap(cap: &str) -> String {
    let c = cap.trim().trim_matches(|c| c == '"' || c == '\'').to_ascii_uppercase();
    c.strip_prefix("CAP_").map(str::to_string).unwrap_or(c)
}

pub fn is_dangerous_cap(cap: &str) -> bool {
    DANGEROUS_CAPS.contains(&normalize_cap(cap).as_str())
}

/// What makes container options unsafe, with the raw text to point at.
pub fn risky_options(fl: &[Flag]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for f in fl {
        let v = f.value.as_deref().unwrap_or("");
        let why = match f.name.as_str() {
            "--privileged" if v != "false" => Some("--privileged".to_string()),
            "--cap-add" => Some(format!("--cap-add {v}")),
            "--pid" | "--network" | "--net" | "--ipc" | "--uts" | "--userns" | "--cgroupns" if v == "host" => {
                Some(format!("{}={v}", f.name))
            }
            "--security-opt" => {
                let n = v.replace(':', "=");
                if n.starts_with("seccomp=unconfined")
                    || n.starts_with("apparmor=unconfined")
                    || n.starts_with("label=disable")
                    || n.starts_with("systempaths=unconfined")
                {
                    Some(format!("--security-opt {v}"))
                } else {
                    None
                }
            }
            _ => None,
        };
        if let Some(w) = why {
            out.push((w, f.raw.clone()));
        }
    }
    out
}

/// Host paths of `-v host:ctr` / `--mount type=bind,source=...` options.
pub fn mounted_host_paths(fl: &[Flag]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for f in fl {
        let Some(v) = f.value.as_deref() else {
            continue;
        };
        match f.name.as_str() {
            "-v" | "--volume" => {
                if let Some((host, _)) = v.split_once(':') {
                    out.push((host.to_string(), f.raw.clone()));
                }
            }
            "--mount" => {
                for part in v.split(',') {
                    if let Some((k, val)) = part.split_once('=')
                        && matches!(k, "source" | "src")
                    {
                        out.push((val.to_string(), f.raw.clone()));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

pub fn drops_all_caps(fl: &[Flag]) -> bool {
    fl.iter().any(|f| {
        f.name == "--cap-drop"
            && f.value
                .as_deref()
                .is_some_and(|v| v.split(',').any(|c| normalize_cap(c) == "ALL"))
    })
}

/// Each `docker run`/`docker create`/`podman run` command in a shell script, as the text of
/// its arguments (continuation lines joined), with the byte offset of the command.
pub fn docker_run_commands(script: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    // Most scripts start no container at all.
    if !script.contains(" run") && !script.contains(" create") {
        return out;
    }
    let bytes = script.as_bytes();
    for pat in ["docker run", "docker container run", "docker create", "podman run"] {
        let mut from = 0;
        while let Some(i) = script[from..].find(pat) {
            let at = from + i;
            from = at + pat.len();
            let boundary_ok = at == 0 || {
                let b = bytes[at - 1];
                b.is_ascii_whitespace() || matches!(b, b';' | b'&' | b'|' | b'(' | b'`' | b'$')
            };
            let after_ok = bytes.get(at + pat.len()).is_none_or(|b| b.is_ascii_whitespace());
            if !boundary_ok || !after_ok {
                continue;
            }
            let rest = &script[at + pat.len()..];
            let mut cmd = String::new();
            let mut chars = rest.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\\' if chars.peek() == Some(&'\n') => {
                        chars.next();
                        cmd.push(' ');
                    }
                    '\n' | ';' => break,
                    '&' | '|' => break,
                    _ => cmd.push(c),
                }
            }
            out.push((at, cmd));
        }
    }
    out.sort_by_key(|(at, _)| *at);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_both_spellings_and_stop_at_the_image() {
        let f = flags(
            "--rm --cap-add SYS_ADMIN --network=host -v /var/run/docker.sock:/x img --privileged",
            true,
        );
        let names: Vec<_> = f.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["--rm", "--cap-add", "--network", "-v"]);
        let risky = risky_options(&f);
        assert_eq!(risky.len(), 2);
        assert_eq!(mounted_host_paths(&f)[0].0, "/var/run/docker.sock");
    }

    #[test]
    fn run_commands_join_continuations() {
        let s = "echo docker run\ndocker run \\\n  --privileged img && x\nmydocker run --privileged";
        let cmds = docker_run_commands(s);
        let privileged: Vec<_> = cmds.iter().filter(|c| c.1.contains("--privileged")).collect();
        assert_eq!(privileged.len(), 1);
        assert_eq!(privileged[0].0, s.find("docker run \\").unwrap());
    }

    #[test]
    fn sensitive_paths() {
        assert!(is_sensitive_host_path("/"));
        assert!(is_sensitive_host_path("/var/run/docker.sock"));
        assert!(is_sensitive_host_path("/proc/1"));
        assert!(!is_sensitive_host_path("/cache"));
        assert!(!is_sensitive_host_path("/etc/ssl/certs"));
        assert!(!is_sensitive_host_path("/home/runner/work"));
    }
}
