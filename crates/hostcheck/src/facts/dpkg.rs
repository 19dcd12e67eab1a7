//! The Debian package database and apt's package lists: how many packages are installed, and
//! which installed packages have a newer version in a security archive's list (pending updates).

use crate::host::Host;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::io::Read;

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("{path}: {source}")]
    Decompress {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: compressed as {format}, which this build does not read")]
    Unsupported { path: String, format: String },
}

#[derive(Debug, Default)]
pub struct Dpkg {
    /// name -> version of every package in state "install ok installed".
    pub installed: HashMap<String, String>,
}

/// Ok(None) when there is no dpkg database (not a Debian-family system).
pub fn load(host: &Host) -> Result<Option<Dpkg>, String> {
    let text = match host.read_optional("/var/lib/dpkg/status") {
        Ok(Some(t)) => t,
        Ok(None) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    Ok(Some(Dpkg {
        installed: parse_status(&text),
    }))
}

/// Splits Debian control stanzas and yields (Package, Version, Status) for each.
fn stanzas(text: &str) -> impl Iterator<Item = (&str, &str, &str)> {
    text.split("\n\n").filter_map(|st| {
        let mut pkg = "";
        let mut ver = "";
        let mut status = "";
        for line in st.lines() {
            if let Some(v) = line.strip_prefix("Package:") {
                pkg = v.trim();
            } else if let Some(v) = line.strip_prefix("Version:") {
                ver = v.trim();
            } else if let Some(v) = line.strip_prefix("Status:") {
                status = v.trim();
            }
        }
        (!pkg.is_empty()).then_some((pkg, ver, status))
    })
}

pub fn parse_status(text: &str) -> HashMap<String, String> {
    stanzas(text)
        .filter(|(_, _, s)| *s == "install ok installed")
        .map(|(p, v, _)| (p.to_string(), v.to_string()))
        .collect()
}

/// The highest version of each package in one Packages list.
pub fn parse_packages(text: &str) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    for (p, v, _) in stanzas(text) {
        match out.get(p) {
            Some(old) if compare_versions(old, v) != Ordering::Less => {}
            _ => {
                out.insert(p.to_string(), v.to_string());
            }
        }
    }
    out
}

/// apt's lists for security archives (file names contain "security"), plain or compressed.
pub fn security_lists(host: &Host) -> Result<Vec<String>, String> {
    let names = host
        .read_dir_optional("/var/lib/apt/lists")
        .map_err(|e| e.to_string())?;
    Ok(names
        .into_iter()
        .filter(|n| n.contains("security") && n.contains("_Packages"))
        .map(|n| format!("/var/lib/apt/lists/{n}"))
        .collect())
}

/// Reads a list file, decompressing the formats apt keeps with Acquire::GzipIndexes.
pub fn read_list(host: &Host, path: &str) -> Result<String, String> {
    let raw = host.read(path).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let err = |source| ListError::Decompress {
        path: path.to_string(),
        source,
    };
    if path.ends_with(".lz4") {
        lz4_flex::frame::FrameDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| err(e).to_string())?;
    } else if path.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| err(e).to_string())?;
    } else if let Some((_, ext)) = path.rsplit_once("_Packages.") {
        return Err(ListError::Unsupported {
            path: path.to_string(),
            format: ext.to_string(),
        }
        .to_string());
    } else {
        out = raw;
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Debian version ordering (deb-version(7)): epoch, then upstream and revision compared as
/// alternating non-digit and digit runs, where '~' sorts before everything, even the end.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) if e.chars().all(|c| c.is_ascii_digit()) => (e.parse().unwrap_or(0), r),
            _ => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((u, r)) => (epoch, u, r),
            None => (epoch, rest, ""),
        }
    }
    fn order(c: Option<u8>) -> i32 {
        match c {
            Some(b'~') => -1,
            None => 0,
            Some(c) if c.is_ascii_alphabetic() => c as i32,
            Some(c) => c as i32 + 256,
        }
    }
    fn part(a: &str, b: &str) -> Ordering {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            // Non-digit run, character by character.
            while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
                let ca = a.get(i).copied().filter(|c| !c.is_ascii_digit());
                let cb = b.get(j).copied().filter(|c| !c.is_ascii_digit());
                let (oa, ob) = (order(ca), order(cb));
                if oa != ob {
                    return oa.cmp(&ob);
                }
                if ca.is_some() {
                    i += 1;
                }
                if cb.is_some() {
                    j += 1;
                }
            }
            // Digit run, numerically.
            let (si, sj) = (i, j);
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let na = std::str::from_utf8(&a[si..i]).unwrap_or("0").trim_start_matches('0');
            let nb = std::str::from_utf8(&b[sj..j]).unwrap_or("0").trim_start_matches('0');
            let c = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if c != Ordering::Equal {
                return c;
            }
        }
        Ordering::Equal
    }
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb).then_with(|| part(ua, ub)).then_with(|| part(ra, rb))
}

/// APT::Periodic::Unattended-Upgrade as set in /etc/apt/apt.conf(.d): (value, file).
pub fn unattended_setting(host: &Host) -> Result<Option<(String, String)>, String> {
    let mut files = vec!["/etc/apt/apt.conf".to_string()];
    for n in host
        .read_dir_optional("/etc/apt/apt.conf.d")
        .map_err(|e| e.to_string())?
    {
        files.push(format!("/etc/apt/apt.conf.d/{n}"));
    }
    let mut found = None;
    // Later files override earlier ones, as apt reads them in order.
    for f in files {
        let Some(text) = host.read_optional(&f).map_err(|e| e.to_string())? else {
            continue;
        };
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with("//") || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix("APT::Periodic::Unattended-Upgrade") {
                let v = rest.trim().trim_end_matches(';').trim().trim_matches('"');
                found = Some((v.to_string(), f.clone()));
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_version_order() {
        use Ordering::*;
        for (a, b, o) in [
            ("1.0", "1.0", Equal),
            ("1.0-1", "1.0-2", Less),
            ("1:1.0", "2.0", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0", "1.0a", Less),
            ("1.10", "1.9", Greater),
            ("2.36.1-8+deb12u1", "2.36.1-8", Greater),
            ("2.36.1-8+deb12u1", "2.36.1-8+deb12u2", Less),
            ("1.0-1~bpo12+1", "1.0-1", Less),
            ("3.0.11-1~deb12u2", "3.0.11-1~deb12u1", Greater),
        ] {
            assert_eq!(compare_versions(a, b), o, "{a} vs {b}");
        }
    }

    #[test]
    fn installed_and_lists() {
        let st = "Package: a\nStatus: install ok installed\nVersion: 1.0\n\nPackage: b\nStatus: deinstall ok config-files\nVersion: 2\n";
        let inst = parse_status(st);
        assert_eq!(inst.len(), 1);
        let list = parse_packages("Package: a\nVersion: 1.0+deb12u1\n\nPackage: a\nVersion: 0.9\n");
        assert_eq!(list["a"], "1.0+deb12u1");
    }
}
