//! File changes: what the job left in its own tmpfs mounts (examined through fds that outlive
//! its mount namespace), and which protected source files of the workspace it touched.

use crate::report::FileChange;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Changes kept per report; past this the list says it was cut.
pub const MAX_CHANGES: usize = 5000;
/// Protected files watched at most (a larger tree is cut, and the report says so).
const MAX_PROTECTED: usize = 500_000;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("--protect-source: read git's index {path}: {source}")]
    ReadIndex {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--protect-source: {path}: not a git index ({why})")]
    BadIndex { path: PathBuf, why: String },
    #[error("--protect-source: bad glob {glob:?}: {source}")]
    Glob {
        glob: String,
        #[source]
        source: globset::Error,
    },
    #[error("--protect-source: walk the workspace {path}: {source}")]
    Walk {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn kind_of(ft: fs::FileType) -> &'static str {
    if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "file"
    } else {
        "other"
    }
}

/// Lists what is in one of the job's tmpfs mounts: `root` reaches its top (a /proc/self/fd
/// path), `label` is where the job saw it. Other filesystems mounted below are not entered.
pub fn scan_tmpfs(root: &Path, label: &str, out: &mut Vec<FileChange>, truncated: &mut bool) {
    // `root` is usually a /proc/self/fd link: follow it to the directory it stands for.
    let Ok(top) = fs::metadata(root) else {
        return;
    };
    let dev = top.dev();
    let mut stack = vec![(root.to_path_buf(), label.trim_end_matches('/').to_string())];
    while let Some((dir, shown)) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Ok(m) = fs::symlink_metadata(e.path()) else {
                continue;
            };
            if m.dev() != dev {
                continue;
            }
            let path = format!("{shown}/{}", e.file_name().to_string_lossy());
            if m.is_dir() {
                stack.push((e.path(), path));
                continue;
            }
            if out.len() >= MAX_CHANGES {
                *truncated = true;
                return;
            }
            out.push(FileChange {
                path,
                change: "created".into(),
                kind: kind_of(m.file_type()).into(),
                size: m.is_file().then_some(m.len()),
            });
        }
    }
}

/// What the job's writable root already held when the job started (mount points and what init
/// made for them): path -> (inode, ctime), or None for a mount point (covered while the job
/// ran, so the job cannot have changed it), so that only the job's own changes are listed.
pub type OverlaySetup = BTreeMap<String, Option<(u64, (i64, i64))>>;

/// The id of the mount `p` is on (or, for a mount point, of what is mounted there).
fn mount_id(p: &Path, follow: bool) -> Option<u64> {
    let flags = if follow {
        rustix::fs::AtFlags::empty()
    } else {
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW
    };
    rustix::fs::statx(rustix::fs::CWD, p, flags, rustix::fs::StatxFlags::MNT_ID)
        .ok()
        .map(|s| s.stx_mnt_id)
}

fn ctime(m: &fs::Metadata) -> (i64, i64) {
    (m.ctime(), m.ctime_nsec())
}

/// Walks the writable root's overlay through `merged` (its top, reached through an fd kept
/// open since before the job) and calls `each(path as the job saw it, merged entry, lower
/// entry)` for every entry that may have changed, and `gone(path, lower entry)` for what the
/// job deleted. The overlay's upper layer has no path the supervisor can reach, but what it
/// holds shows in the merged view: every copied-up or created entry, and every directory above
/// one, has a ctime (which no one can set back) no older than `since`, the time before the
/// overlay existed. An older directory was never copied up, so nothing under it changed, and
/// it is not entered; a deletion leaves a whiteout, which copies its directory up too.
fn walk_overlay(
    merged: &Path,
    lower: &Path,
    since: (i64, i64),
    each: &mut dyn FnMut(&str, &fs::Metadata, Option<&fs::Metadata>) -> bool,
    mounted: &mut dyn FnMut(&str),
    gone: &mut dyn FnMut(&str, &fs::Metadata) -> bool,
) {
    // `merged` is usually a /proc/self/fd link: follow it to the directory it stands for.
    let Ok(top) = fs::metadata(merged) else {
        return;
    };
    let dev = top.dev();
    let mnt = mount_id(merged, true);
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let mdir = merged.join(&rel);
        let ldir = lower.join(&rel);
        let Ok(rd) = fs::read_dir(&mdir) else { continue };
        let mut names: Vec<std::ffi::OsString> = rd.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for name in &names {
            let r = if rel.is_empty() {
                PathBuf::from(name)
            } else {
                Path::new(&rel).join(name)
            };
            let Ok(m) = fs::symlink_metadata(mdir.join(name)) else {
                continue;
            };
            let shown = format!("/{}", r.to_string_lossy());
            // While the job runs, the sandbox's mounts cover parts of the root.
            if mnt.is_some() && mount_id(&mdir.join(name), false) != mnt {
                mounted(&shown);
                continue;
            }
            if ctime(&m) < since {
                continue;
            }
            if m.is_dir() {
                // Another filesystem mounted there (while the job still runs) is not the overlay.
                if m.dev() == dev {
                    stack.push(r.to_string_lossy().into_owned());
                }
                continue;
            }
            let l = fs::symlink_metadata(ldir.join(name)).ok();
            if !each(&shown, &m, l.as_ref()) {
                return;
            }
        }
        // Names the lower directory has and the merged one lacks: deleted by the job.
        let Ok(lrd) = fs::read_dir(&ldir) else { continue };
        let mut lnames: Vec<std::ffi::OsString> = lrd.flatten().map(|e| e.file_name()).collect();
        lnames.sort();
        for name in lnames {
            if names.binary_search(&name).is_ok() {
                continue;
            }
            let Ok(l) = fs::symlink_metadata(ldir.join(&name)) else {
                continue;
            };
            let shown = if rel.is_empty() {
                format!("/{}", name.to_string_lossy())
            } else {
                format!("/{rel}/{}", name.to_string_lossy())
            };
            if !gone(&shown, &l) {
                return;
            }
        }
    }
}

/// The time before the job's writable root existed, in the units of a ctime: entries of the
/// overlay no older than this were made or copied up after it.
pub fn overlay_epoch(t: std::time::SystemTime) -> (i64, i64) {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    // A second of slack for coarse filesystem clocks: older host changes only cost a comparison.
    (d.as_secs() as i64 - 1, d.subsec_nanos() as i64)
}

/// What the overlay holds before the job's first process: the mount points init made.
pub fn overlay_setup(merged: &Path, lower: &Path, since: (i64, i64)) -> OverlaySetup {
    let setup = std::cell::RefCell::new(OverlaySetup::new());
    walk_overlay(
        merged,
        lower,
        since,
        &mut |p, m, _| {
            let mut s = setup.borrow_mut();
            s.insert(p.to_string(), Some((m.ino(), ctime(m))));
            s.len() < MAX_CHANGES
        },
        &mut |p| {
            setup.borrow_mut().insert(p.to_string(), None);
        },
        &mut |_, _| true,
    );
    setup.into_inner()
}

/// Lists what the job created, modified or deleted in its writable root (see `walk_overlay`);
/// entries already there when it started (`setup`) and left alone are not the job's.
pub fn scan_overlay(
    merged: &Path,
    lower: &Path,
    since: (i64, i64),
    setup: &OverlaySetup,
    out: &mut Vec<FileChange>,
    truncated: &mut bool,
) {
    let before = out.len();
    let found = std::cell::RefCell::new(std::mem::take(out));
    let push = |c: FileChange| {
        let mut f = found.borrow_mut();
        if f.len() >= MAX_CHANGES {
            return false;
        }
        f.push(c);
        true
    };
    walk_overlay(
        merged,
        lower,
        since,
        &mut |path, m, l| {
            match setup.get(path) {
                Some(None) => return true,
                Some(Some(s)) if *s == (m.ino(), ctime(m)) => return true,
                _ => {}
            }
            let change = match l {
                None => "created",
                Some(l) if l.file_type() != m.file_type() => "replaced",
                // The merged view shows the lower file itself: the job did not touch it.
                Some(l) if ctime(l) == ctime(m) && l.size() == m.size() && l.mtime() == m.mtime() => return true,
                Some(_) => "modified",
            };
            push(FileChange {
                path: path.to_string(),
                change: change.into(),
                kind: kind_of(m.file_type()).into(),
                size: m.is_file().then_some(m.len()),
            })
        },
        &mut |_| {},
        &mut |path, l| {
            push(FileChange {
                path: path.to_string(),
                change: "deleted".into(),
                kind: kind_of(l.file_type()).into(),
                size: None,
            })
        },
    );
    *out = found.into_inner();
    out[before..].sort_by(|a, b| a.path.cmp(&b.path));
    if out.len() >= MAX_CHANGES {
        *truncated = true;
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    mode: u32,
    size: u64,
    mtime: (i64, i64),
    /// ctime cannot be set back by the job: any write or chmod moves it.
    ctime: (i64, i64),
}

/// The file-type bits of `st_mode`.
const S_IFMT: u32 = 0o170000;

fn stamp(m: &fs::Metadata) -> Stamp {
    Stamp {
        ino: m.ino(),
        mode: m.mode(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    }
}

/// The protected files of a workspace, stamped before the job starts.
#[derive(Debug)]
pub struct SourceGuard {
    workspace: PathBuf,
    files: BTreeMap<String, Option<Stamp>>,
    pub truncated: bool,
}

impl SourceGuard {
    /// `specs`: `git` (the files git tracks) and/or globs relative to the workspace.
    pub fn snapshot(workspace: &Path, specs: &[String]) -> Result<SourceGuard, SourceError> {
        let mut names: Vec<String> = Vec::new();
        let mut globs = globset::GlobSetBuilder::new();
        let mut any_glob = false;
        for s in specs {
            if s == "git" {
                let index = workspace.join(".git").join("index");
                let data = fs::read(&index).map_err(|source| SourceError::ReadIndex {
                    path: index.clone(),
                    source,
                })?;
                names.extend(git_index_paths(&data).map_err(|why| SourceError::BadIndex {
                    path: index.clone(),
                    why,
                })?);
            } else {
                let g = globset::GlobBuilder::new(s)
                    .literal_separator(true)
                    .build()
                    .map_err(|source| SourceError::Glob {
                        glob: s.clone(),
                        source,
                    })?;
                globs.add(g);
                any_glob = true;
            }
        }
        if any_glob {
            let set = globs.build().map_err(|source| SourceError::Glob {
                glob: specs.join(" "),
                source,
            })?;
            walk_matching(workspace, &set, &mut names)?;
        }
        let mut truncated = false;
        let mut files = BTreeMap::new();
        for n in names {
            if files.len() >= MAX_PROTECTED {
                truncated = true;
                break;
            }
            let st = fs::symlink_metadata(workspace.join(&n)).ok().map(|m| stamp(&m));
            files.insert(n, st);
        }
        Ok(SourceGuard {
            workspace: workspace.to_path_buf(),
            files,
            truncated,
        })
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The path inside the workspace, if it is a protected file.
    pub fn protects(&self, path: &str) -> bool {
        let ws = self.workspace.to_string_lossy();
        path.strip_prefix(&*ws)
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|rel| self.files.contains_key(rel))
    }

    /// Protected files changed, replaced or deleted since the snapshot (never follows links).
    pub fn changes(&self) -> Vec<FileChange> {
        let mut out = Vec::new();
        for (rel, before) in &self.files {
            let path = self.workspace.join(rel);
            let now = fs::symlink_metadata(&path).ok();
            let change = match (before, &now) {
                (Some(_), None) => "deleted",
                (None, Some(_)) => "created",
                (Some(b), Some(m)) => {
                    let n = stamp(m);
                    // A new file may reuse the old one's inode number: a different type is
                    // a replacement too (a source file swapped for a symlink, say).
                    if b.ino != n.ino || b.mode & S_IFMT != n.mode & S_IFMT {
                        "replaced"
                    } else if *b != n {
                        "modified"
                    } else {
                        continue;
                    }
                }
                (None, None) => continue,
            };
            out.push(FileChange {
                path: path.to_string_lossy().into_owned(),
                change: change.into(),
                kind: now.as_ref().map(|m| kind_of(m.file_type())).unwrap_or("file").into(),
                size: now.as_ref().filter(|m| m.is_file()).map(|m| m.len()),
            });
            if out.len() >= MAX_CHANGES {
                break;
            }
        }
        out
    }
}

fn walk_matching(ws: &Path, set: &globset::GlobSet, out: &mut Vec<String>) -> Result<(), SourceError> {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = ws.join(&rel);
        let rd = fs::read_dir(&dir).map_err(|source| SourceError::Walk {
            path: dir.clone(),
            source,
        })?;
        for e in rd.flatten() {
            let name = e.file_name();
            if rel.as_os_str().is_empty() && name == ".git" {
                continue;
            }
            let r = rel.join(&name);
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(r);
            } else if set.is_match(&r) {
                out.push(r.to_string_lossy().into_owned());
            }
            if out.len() >= MAX_PROTECTED {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The paths of git's index (DIRC versions 2, 3 and 4), read without running git: the
/// workspace is the job's, and git's config in it could run commands.
pub fn git_index_paths(d: &[u8]) -> Result<Vec<String>, String> {
    let be32 = |o: usize| -> Result<u32, String> {
        d.get(o..o + 4)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
            .ok_or_else(|| "truncated".to_string())
    };
    if d.get(..4) != Some(b"DIRC") {
        return Err("no DIRC signature".into());
    }
    let version = be32(4)?;
    if !(2..=4).contains(&version) {
        return Err(format!("index version {version}"));
    }
    let count = be32(8)? as usize;
    let mut out = Vec::with_capacity(count.min(1 << 20));
    let mut off = 12;
    let mut prev: Vec<u8> = Vec::new();
    for _ in 0..count {
        let start = off;
        let flags = d.get(off + 60..off + 62).ok_or("truncated entry")?;
        let flags = u16::from_be_bytes([flags[0], flags[1]]);
        off += 62;
        if version >= 3 && flags & 0x4000 != 0 {
            off += 2;
        }
        let name: Vec<u8> = if version == 4 {
            // Prefix compression: drop N bytes of the previous name, then a NUL-terminated suffix.
            let mut strip: usize;
            let mut c = *d.get(off).ok_or("truncated varint")?;
            off += 1;
            strip = (c & 0x7f) as usize;
            while c & 0x80 != 0 {
                c = *d.get(off).ok_or("truncated varint")?;
                off += 1;
                strip = ((strip + 1) << 7) | (c & 0x7f) as usize;
            }
            let end = d[off..].iter().position(|b| *b == 0).ok_or("unterminated name")? + off;
            let keep = prev.len().checked_sub(strip).ok_or("bad prefix length")?;
            let mut n = prev[..keep].to_vec();
            n.extend_from_slice(&d[off..end]);
            off = end + 1;
            n
        } else {
            let end = d
                .get(off..)
                .ok_or("truncated")?
                .iter()
                .position(|b| *b == 0)
                .ok_or("unterminated name")?
                + off;
            let n = d[off..end].to_vec();
            // Entries are NUL-padded to a multiple of 8 bytes.
            let len = end - start;
            off = start + ((len + 8) & !7);
            n
        };
        out.push(String::from_utf8_lossy(&name).into_owned());
        prev = name;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) {
        let ok = Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(dir)
            .status()
            .expect("git runs")
            .success();
        assert!(ok, "git {args:?}");
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("stockade-monitor-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("src/deep")).unwrap();
        d
    }

    #[test]
    fn reads_every_index_version_like_git_does() {
        for v in ["2", "3", "4"] {
            let d = tmpdir(&format!("idx{v}"));
            fs::write(d.join("a.c"), "a").unwrap();
            fs::write(d.join("src/deep/b.rs"), "b").unwrap();
            fs::write(d.join("src/deep/bb.rs"), "b").unwrap();
            fs::write(d.join("untracked"), "u").unwrap();
            git(&d, &["init", "-q"]);
            git(&d, &["add", "a.c", "src"]);
            git(&d, &["update-index", "--index-version", v]);
            if v == "3" {
                // An intent-to-add entry carries extended flags.
                fs::write(d.join("ita"), "i").unwrap();
                git(&d, &["add", "-N", "ita"]);
            }
            let data = fs::read(d.join(".git/index")).unwrap();
            let mut want = vec!["a.c", "src/deep/b.rs", "src/deep/bb.rs"];
            if v == "3" {
                want.insert(1, "ita");
            }
            assert_eq!(git_index_paths(&data).unwrap(), want, "index version {v}");
            fs::remove_dir_all(&d).unwrap();
        }
        assert!(git_index_paths(b"nope").is_err());
    }

    #[test]
    fn guard_sees_changes_deletions_and_replacements_but_not_reads() {
        let d = tmpdir("guard");
        for f in ["a.c", "b.c", "c.c", "d.c"] {
            fs::write(d.join(f), f).unwrap();
        }
        git(&d, &["init", "-q"]);
        git(&d, &["add", "."]);
        let g = SourceGuard::snapshot(&d, &["git".into()]).unwrap();
        assert_eq!(g.len(), 4);
        assert!(g.protects(&format!("{}/a.c", d.display())));
        assert!(!g.protects(&format!("{}/zz.c", d.display())));
        let _ = fs::read(d.join("a.c")).unwrap();
        fs::write(d.join("b.c"), "changed").unwrap();
        fs::remove_file(d.join("c.c")).unwrap();
        fs::remove_file(d.join("d.c")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("d.c")).unwrap();
        let ch: Vec<(String, String)> = g
            .changes()
            .into_iter()
            .map(|c| (c.path.rsplit('/').next().unwrap().to_string(), c.change))
            .collect();
        assert_eq!(
            ch,
            vec![
                ("b.c".into(), "modified".into()),
                ("c.c".into(), "deleted".into()),
                ("d.c".into(), "replaced".into())
            ]
        );
        let g2 = SourceGuard::snapshot(&d, &["*.c".into()]).unwrap();
        assert_eq!(g2.len(), 3);
        assert!(SourceGuard::snapshot(&d, &["[".into()]).is_err());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_real_overlay_lists_what_was_created_modified_and_deleted_but_not_setup() {
        use nix::mount::{MsFlags, mount};
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: mounting an overlay needs root");
            return;
        }
        let d = tmpdir("ovl");
        let lower = d.join("lower");
        for p in ["etc/keep", "etc/edit", "etc/gone", "opt/tree/x", "opt/tree/y", "top"] {
            fs::create_dir_all(lower.join(p).parent().unwrap()).unwrap();
            fs::write(lower.join(p), p).unwrap();
        }
        for p in ["upper", "work", "merged"] {
            fs::create_dir(d.join(p)).unwrap();
        }
        let since = overlay_epoch(std::time::SystemTime::now());
        let dir = d.clone();
        // The overlay lives in a mount namespace of this thread's own, like the job's.
        let got = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .unwrap();
            let merged = dir.join("merged");
            let opts = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                dir.join("upper").display(),
                dir.join("work").display()
            );
            mount(
                Some("overlay"),
                &merged,
                Some("overlay"),
                MsFlags::empty(),
                Some(opts.as_str()),
            )
            .unwrap();
            // What the sandbox's init does before the job: a mount point in a copied-up dir, with
            // a file bound over it, and a file it leaves as it is.
            fs::write(merged.join("etc/resolv.conf"), "").unwrap();
            let bound = dir.join("bound");
            fs::write(&bound, "nameserver 127.0.0.1\n").unwrap();
            mount(
                Some(&bound),
                &merged.join("etc/resolv.conf"),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .unwrap();
            fs::write(merged.join("top-setup"), "").unwrap();
            // Reached as the monitor reaches them: through fds kept open.
            let (mf, lf) = (fs::File::open(&merged).unwrap(), fs::File::open(&lower).unwrap());
            let fd_path = |f: &fs::File| PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(f)));
            let setup = overlay_setup(&fd_path(&mf), &fd_path(&lf), since);
            // The job.
            fs::write(merged.join("etc/new"), "new").unwrap();
            fs::write(merged.join("etc/edit"), "edited").unwrap();
            fs::remove_file(merged.join("etc/gone")).unwrap();
            fs::remove_dir_all(merged.join("opt/tree")).unwrap();
            fs::create_dir_all(merged.join("srv/a")).unwrap();
            std::os::unix::fs::symlink("/x", merged.join("srv/a/link")).unwrap();
            let _ = fs::read(merged.join("etc/keep")).unwrap();
            // The job's mount namespace is gone by the time the monitor looks.
            nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH).unwrap();
            let mut out = Vec::new();
            let mut truncated = false;
            scan_overlay(&fd_path(&mf), &fd_path(&lf), since, &setup, &mut out, &mut truncated);
            assert!(!truncated);
            out.into_iter()
                .map(|c| (c.path, c.change, c.kind))
                .collect::<Vec<(String, String, String)>>()
        })
        .join()
        .unwrap();
        let want: Vec<(String, String, String)> = [
            ("/etc/edit", "modified", "file"),
            ("/etc/gone", "deleted", "file"),
            ("/etc/new", "created", "file"),
            ("/opt/tree", "deleted", "dir"),
            ("/srv/a/link", "created", "symlink"),
        ]
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
        assert_eq!(got, want);
        // The lower layer, like the host's root, is untouched.
        assert_eq!(fs::read_to_string(d.join("lower/etc/edit")).unwrap(), "etc/edit");
        assert!(d.join("lower/etc/gone").exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn tmpfs_scan_lists_files_not_dirs() {
        let d = tmpdir("scan");
        fs::write(d.join("src/deep/x"), "12345").unwrap();
        std::os::unix::fs::symlink("x", d.join("src/l")).unwrap();
        let mut out = Vec::new();
        let mut t = false;
        // Reached the way the monitor reaches the job's tmpfs: through an fd kept open.
        let f = fs::File::open(&d).unwrap();
        let p = PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&f)));
        scan_tmpfs(&p, "/tmp", &mut out, &mut t);
        let got: Vec<(String, String, Option<u64>)> = out.into_iter().map(|c| (c.path, c.kind, c.size)).collect();
        assert_eq!(
            got,
            vec![
                ("/tmp/src/l".into(), "symlink".into(), None),
                ("/tmp/src/deep/x".into(), "file".into(), Some(5))
            ]
        );
        assert!(!t);
        fs::remove_dir_all(&d).unwrap();
    }
}
