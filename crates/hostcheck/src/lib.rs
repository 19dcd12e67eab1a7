//! `stockade host-check`: the runner-hardening checklist made executable, read-only, against the
//! live host or a mounted image/fixture tree; one check per file under `checks/`.

pub mod checks;
pub mod facts;
pub mod host;

pub use checks::{ALL, Check, Group, Outcome};
pub use host::{Host, HostError};

use stockade_report::checks::CheckResult;

/// Runs every check against `host` and returns the results in checklist order.
pub fn run(host: &Host, probe: bool) -> Vec<CheckResult> {
    let ctx = facts::Ctx::new(host, probe);
    ALL.iter()
        .map(|c| {
            let o = (c.run)(&ctx);
            CheckResult {
                id: c.id.to_string(),
                group: c.group.label().to_string(),
                title: c.title.to_string(),
                severity: c.severity,
                result: o.status,
                reason: o.reason,
                evidence: o.evidence,
                remediation: c.remediation.to_string(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::PathBuf;

    /// A throw-away root for the facts that only an unmounted image exercises.
    struct Root(PathBuf);
    impl Root {
        fn new(tag: &str) -> Root {
            let p = std::env::temp_dir().join(format!("stockade-hc-lib-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Root(p)
        }
        fn file(&self, rel: &str, data: &[u8]) {
            let p = self.0.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
    }
    impl Drop for Root {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn apt_lists_in_lz4_and_gzip_are_read() {
        let r = Root::new("lists");
        let text = b"Package: openssl\nVersion: 3.0.15-1~deb12u1\n";
        let mut lz = lz4_flex::frame::FrameEncoder::new(Vec::new());
        lz.write_all(text).unwrap();
        r.file("l_Packages.lz4", &lz.finish().unwrap());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text).unwrap();
        r.file("l_Packages.gz", &gz.finish().unwrap());
        r.file("l_Packages.xz", b"\xfd7zXZ");
        r.file("bad_Packages.lz4", b"not lz4");
        let host = Host::open(&r.0).unwrap();
        for f in ["/l_Packages.lz4", "/l_Packages.gz"] {
            let list = facts::dpkg::parse_packages(&facts::dpkg::read_list(&host, f).unwrap());
            assert_eq!(list["openssl"], "3.0.15-1~deb12u1", "{f}");
        }
        assert!(
            facts::dpkg::read_list(&host, "/l_Packages.xz")
                .unwrap_err()
                .contains("compressed as xz")
        );
        assert!(
            facts::dpkg::read_list(&host, "/bad_Packages.lz4")
                .unwrap_err()
                .starts_with("/bad_Packages.lz4: ")
        );
    }

    #[test]
    fn an_image_without_proc_uses_sysctl_d_and_crypttab() {
        let r = Root::new("image");
        r.file(
            "etc/sysctl.d/90-hardening.conf",
            b"kernel.kptr_restrict = 2\n# fs.protected_fifos = 0\nfs/protected_fifos=1\n",
        );
        r.file(
            "etc/fstab",
            b"# <fs> <mp> <type>\n/dev/mapper/cryptroot / ext4 defaults 0 1\n/dev/sdb1 /srv ext4 defaults 0 2\n",
        );
        r.file("etc/crypttab", b"cryptroot UUID=1234 none luks,discard\n");
        let host = Host::open(&r.0).unwrap();
        let conf = facts::sysctl::configured(&host);
        assert_eq!(
            facts::sysctl::get(&host, "kernel.kptr_restrict", &conf),
            facts::sysctl::Value::Found("2".into(), "/etc/sysctl.d/90-hardening.conf (configured)".into())
        );
        assert!(
            matches!(facts::sysctl::get(&host, "fs.protected_fifos", &conf), facts::sysctl::Value::Found(v, _) if v == "1")
        );
        assert_eq!(
            facts::sysctl::get(&host, "kernel.dmesg_restrict", &conf),
            facts::sysctl::Value::Absent
        );
        let (desc, crypt) = facts::mounts::crypt_from_fstab(&host, "/home/x").unwrap().unwrap();
        assert!(crypt, "{desc}");
        let (desc, crypt) = facts::mounts::crypt_from_fstab(&host, "/srv/work").unwrap().unwrap();
        assert!(!crypt && desc.starts_with("/dev/sdb1 on /srv"), "{desc}");
        // The whole run on such an image: no panics, every check answers with a reason.
        for res in run(&host, false) {
            assert!(!res.reason.is_empty(), "{}: empty reason", res.id);
        }
    }
}
