//! Which block device holds a path, and whether that device is dm-crypt (LUKS) underneath,
//! from mountinfo and sysfs; for an image without /proc, from fstab and crypttab.

use crate::host::Host;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: String,
    pub dev: String,
    pub fstype: String,
    pub source: String,
}

pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split_whitespace().collect();
            let r: Vec<&str> = right.split_whitespace().collect();
            Some(Mount {
                dev: f.get(2)?.to_string(),
                mount_point: unescape(f.get(4)?),
                fstype: r.first()?.to_string(),
                source: r.get(1).map(|s| unescape(s)).unwrap_or_default(),
            })
        })
        .collect()
}

/// mountinfo and fstab write spaces and friends as \040-style octal escapes.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount that holds `path` (the last, longest matching mount point wins, as mounts stack).
pub fn mount_of<'a>(mounts: &'a [Mount], path: &str) -> Option<&'a Mount> {
    let mut best: Option<&Mount> = None;
    for m in mounts {
        let mp = m.mount_point.trim_end_matches('/');
        let inside =
            mp.is_empty() || path == mp || (path.starts_with(mp) && path.as_bytes().get(mp.len()) == Some(&b'/'));
        if inside && best.is_none_or(|b| mp.len() >= b.mount_point.trim_end_matches('/').len()) {
            best = Some(m);
        }
    }
    best
}

/// Is device MAJ:MIN a dm-crypt target, or stacked (LVM, RAID) on one? Follows sysfs `slaves`.
pub fn dev_is_crypt(host: &Host, majmin: &str, depth: usize) -> Result<bool, String> {
    if depth > 8 {
        return Ok(false);
    }
    let base = format!("/sys/dev/block/{majmin}");
    match host.read_optional(&format!("{base}/dm/uuid")) {
        Ok(Some(uuid)) if uuid.trim().starts_with("CRYPT-") => return Ok(true),
        Ok(_) => {}
        Err(e) => return Err(e.to_string()),
    }
    let slaves = match host.read_dir(&format!("{base}/slaves")) {
        Ok(s) => s,
        Err(e) if e.is_not_found() => {
            // No such device directory at all: sysfs is not there to tell.
            if !host.exists(&base).map_err(|e| e.to_string())? {
                return Err(format!("{base}: not found"));
            }
            return Ok(false);
        }
        Err(e) => return Err(e.to_string()),
    };
    for s in slaves {
        let dev = host
            .read_string(&format!("/sys/class/block/{s}/dev"))
            .map_err(|e| e.to_string())?;
        if dev_is_crypt(host, dev.trim(), depth + 1)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// For an image: the fstab device of `path`'s mount point and whether crypttab maps it.
pub fn crypt_from_fstab(host: &Host, path: &str) -> Result<Option<(String, bool)>, String> {
    let Some(fstab) = host.read_optional("/etc/fstab").map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let mounts: Vec<Mount> = fstab
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(Mount {
                source: unescape(f.first()?),
                mount_point: unescape(f.get(1)?),
                fstype: f.get(2)?.to_string(),
                dev: String::new(),
            })
        })
        .collect();
    let Some(m) = mount_of(&mounts, path) else {
        return Ok(None);
    };
    let crypttab = host
        .read_optional("/etc/crypttab")
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    let names: Vec<&str> = crypttab
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mapped = m
        .source
        .strip_prefix("/dev/mapper/")
        .is_some_and(|n| names.contains(&n));
    Ok(Some((
        format!("{} on {} ({})", m.source, m.mount_point, m.fstype),
        mapped,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_mount_of_a_path() {
        let m = parse_mountinfo(
            "27 1 254:0 / / rw - ext4 /dev/vda rw\n40 27 254:1 / /home/runner/_work rw - ext4 /dev/mapper/work rw\n41 27 0:50 / /home/run\\040x rw - tmpfs tmpfs rw\n",
        );
        assert_eq!(mount_of(&m, "/etc").unwrap().dev, "254:0");
        assert_eq!(mount_of(&m, "/home/runner/_work/repo").unwrap().dev, "254:1");
        assert_eq!(mount_of(&m, "/home/runner/_workx").unwrap().dev, "254:0");
        assert_eq!(mount_of(&m, "/home/run x/a").unwrap().fstype, "tmpfs");
    }
}
