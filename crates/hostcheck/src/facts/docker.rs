//! Docker on the host: whether it is installed, its daemon settings (daemon.json and dockerd's
//! flags), its socket, and its running containers read with read-only GETs on the Engine API,
//! or from /var/lib/docker/containers when no daemon answers (an image, or a stopped daemon).

use super::procs::Proc;
use crate::host::Host;
use std::io::{Read, Write};
use std::time::Duration;

pub const SOCKETS: [&str; 2] = ["/run/docker.sock", "/var/run/docker.sock"];
const DAEMON_BINARIES: [&str; 5] = [
    "/usr/bin/dockerd",
    "/usr/sbin/dockerd",
    "/usr/local/bin/dockerd",
    "/bin/dockerd",
    "/snap/bin/dockerd",
];

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("{path}: not valid JSON: {source}")]
    DaemonJson {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("GET {path}: sending the request: {source}")]
    Send {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("GET {path}: reading the answer: {source}")]
    Receive {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("GET {path}: malformed HTTP answer ({what})")]
    Http { path: String, what: String },
    #[error("GET {path}: the daemon answered HTTP {status}")]
    Status { path: String, status: u16 },
    #[error("GET {path}: the body is not valid JSON: {source}")]
    Body {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Is Docker (the engine, not only the client) on this host? With the evidence that says so.
pub fn installed(host: &Host, procs: &[Proc]) -> Option<String> {
    for b in DAEMON_BINARIES {
        if host.exists(b).unwrap_or(false) {
            return Some(b.to_string());
        }
    }
    if host.exists("/etc/docker/daemon.json").unwrap_or(false) {
        return Some("/etc/docker/daemon.json".into());
    }
    for s in SOCKETS {
        if host.exists(s).unwrap_or(false) {
            return Some(s.to_string());
        }
    }
    procs
        .iter()
        .find(|p| p.name == "dockerd")
        .map(|p| format!("{} running", p.label()))
}

/// /etc/docker/daemon.json: Ok(None) when absent.
pub fn daemon_json(host: &Host) -> Result<Option<serde_json::Value>, String> {
    let path = "/etc/docker/daemon.json";
    match host.read_optional(path) {
        Ok(None) => Ok(None),
        Ok(Some(text)) => serde_json::from_str(&text).map(Some).map_err(|source| {
            DockerError::DaemonJson {
                path: path.into(),
                source,
            }
            .to_string()
        }),
        Err(e) => Err(e.to_string()),
    }
}

/// One GET on the Engine API over a connected unix stream; HTTP/1.1 with `Connection: close`,
/// body by Content-Length, chunked encoding, or to the end of the stream.
pub fn get_json(stream: &mut std::os::unix::net::UnixStream, path: &str) -> Result<serde_json::Value, DockerError> {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: stockade-host-check\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).map_err(|source| DockerError::Send {
        path: path.into(),
        source,
    })?;
    let mut raw = Vec::new();
    // A listing of many containers stays far below this; a peer that sends more is not Docker.
    stream
        .take(64 << 20)
        .read_to_end(&mut raw)
        .map_err(|source| DockerError::Receive {
            path: path.into(),
            source,
        })?;
    let http = |what: &str| DockerError::Http {
        path: path.into(),
        what: what.into(),
    };
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| http("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = &raw[split + 4..];
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| http("no status line"))?;
    let mut chunked = false;
    let mut length = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k == "content-length" {
                length = v.parse::<usize>().ok();
            }
        }
    }
    let decoded;
    if chunked {
        decoded = dechunk(body).ok_or_else(|| http("bad chunked encoding"))?;
        body = &decoded;
    } else if let Some(n) = length {
        body = body.get(..n).ok_or_else(|| http("body shorter than Content-Length"))?;
    }
    if status != 200 {
        return Err(DockerError::Status {
            path: path.into(),
            status,
        });
    }
    serde_json::from_slice(body).map_err(|source| DockerError::Body {
        path: path.into(),
        source,
    })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size_txt = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(size_txt.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// A running container and what makes it dangerous to its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub binds: Vec<String>,
}

/// Capabilities that let a container reach into its host.
const DANGEROUS_CAPS: [&str; 11] = [
    "ALL",
    "SYS_ADMIN",
    "SYS_MODULE",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "DAC_READ_SEARCH",
    "NET_ADMIN",
    "BPF",
    "PERFMON",
    "SYS_BOOT",
    "MAC_ADMIN",
];

impl Container {
    pub fn dangerous_caps(&self) -> Vec<String> {
        self.cap_add
            .iter()
            .map(|c| c.trim_start_matches("CAP_").to_ascii_uppercase())
            .filter(|c| DANGEROUS_CAPS.contains(&c.as_str()))
            .collect()
    }

    pub fn mounts_docker_socket(&self) -> bool {
        self.binds.iter().any(|b| {
            let src = b.split(':').next().unwrap_or("");
            SOCKETS.contains(&src) || src.ends_with("/docker.sock")
        })
    }

    pub fn findings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.privileged {
            out.push("Privileged".to_string());
        }
        let caps = self.dangerous_caps();
        if !caps.is_empty() {
            out.push(format!("CapAdd {}", caps.join(",")));
        }
        if self.mounts_docker_socket() {
            out.push("mounts the Docker socket".to_string());
        }
        out
    }
}

/// The fields from an inspect document (`GET /containers/{id}/json` or hostconfig.json).
pub fn container_from_host_config(id: &str, name: &str, hc: &serde_json::Value) -> Container {
    let strings = |k: &str| {
        hc.get(k)
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect::<Vec<_>>()
    };
    Container {
        id: id.chars().take(12).collect(),
        name: name.trim_start_matches('/').to_string(),
        privileged: hc.get("Privileged").and_then(|v| v.as_bool()) == Some(true),
        cap_add: strings("CapAdd"),
        binds: strings("Binds"),
    }
}

/// Running containers through the API: list, then inspect each (read-only GETs).
pub fn containers_via_api(host: &Host, socket: &str) -> Result<Vec<Container>, String> {
    let timeout = Duration::from_secs(3);
    // One connection per request, each closed before the next (Connection: close).
    let list = {
        let mut s = host.connect_unix(socket, timeout).map_err(|e| e.to_string())?;
        get_json(&mut s, "/containers/json").map_err(|e| e.to_string())?
    };
    let mut out = Vec::new();
    for c in list.as_array().into_iter().flatten() {
        let Some(id) = c.get("Id").and_then(|v| v.as_str()) else {
            continue;
        };
        // Only hex ids go into a request path.
        if !id.chars().all(|ch| ch.is_ascii_hexdigit()) {
            continue;
        }
        let mut s = host.connect_unix(socket, timeout).map_err(|e| e.to_string())?;
        let inspect = get_json(&mut s, &format!("/containers/{id}/json")).map_err(|e| e.to_string())?;
        let name = inspect.get("Name").and_then(|v| v.as_str()).unwrap_or("");
        let null = serde_json::Value::Null;
        let hc = inspect.get("HostConfig").unwrap_or(&null);
        out.push(container_from_host_config(id, name, hc));
    }
    Ok(out)
}

/// Running containers from the daemon's state on disk (config.v2.json State.Running).
pub fn containers_on_disk(host: &Host) -> Result<Option<Vec<Container>>, String> {
    let base = "/var/lib/docker/containers";
    let ids = match host.read_dir(base) {
        Ok(ids) => ids,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut out = Vec::new();
    for id in ids {
        let cfg = host
            .read_string(&format!("{base}/{id}/config.v2.json"))
            .map_err(|e| e.to_string())?;
        let cfg: serde_json::Value =
            serde_json::from_str(&cfg).map_err(|e| format!("{base}/{id}/config.v2.json: not valid JSON: {e}"))?;
        let running = cfg.pointer("/State/Running").and_then(|v| v.as_bool()).unwrap_or(false);
        if !running {
            continue;
        }
        let hc_path = format!("{base}/{id}/hostconfig.json");
        let hc = host.read_string(&hc_path).map_err(|e| e.to_string())?;
        let hc: serde_json::Value = serde_json::from_str(&hc).map_err(|e| format!("{hc_path}: not valid JSON: {e}"))?;
        let name = cfg.get("Name").and_then(|v| v.as_str()).unwrap_or("");
        out.push(container_from_host_config(&id, name, &hc));
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks_bodies() {
        assert_eq!(
            dechunk(b"4\r\n[1,2\r\n2\r\n,3\r\n1\r\n]\r\n0\r\n\r\n").unwrap(),
            b"[1,2,3]"
        );
        assert!(dechunk(b"zz\r\n").is_none());
    }

    #[test]
    fn container_findings() {
        let hc = serde_json::json!({"Privileged": false, "CapAdd": ["CAP_SYS_ADMIN", "CHOWN"], "Binds": ["/var/run/docker.sock:/var/run/docker.sock:ro"]});
        let c = container_from_host_config("0123456789abcdef", "/builder", &hc);
        assert_eq!(c.name, "builder");
        assert_eq!(c.id, "0123456789ab");
        assert_eq!(c.findings(), vec!["CapAdd SYS_ADMIN", "mounts the Docker socket"]);
        let safe = container_from_host_config("ab", "x", &serde_json::json!({"CapAdd": null}));
        assert!(safe.findings().is_empty());
    }
}
