//! Read-only access to the host under inspection: the live system (`/`) or a mounted image or
//! fixture tree. Every path is resolved by the kernel inside the root (openat2 RESOLVE_IN_ROOT).
//!
//! A symlink in an image such as `/etc/sudoers -> /etc/shadow` therefore stays inside the image,
//! never reaching the inspecting host's files; nothing here writes, and only regular files are
//! opened for reading, so a FIFO or device node planted in an image cannot block or act.

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::fmt;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Files larger than this are refused rather than read whole (apt lists stay well below).
const MAX_READ: u64 = 128 << 20;

/// Why a file of the host could not be used; checks turn it into an `unknown` reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    PermissionDenied,
    NotRegular,
    TooLarge,
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot open the root {root}: {source}")]
    OpenRoot {
        root: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {}", describe(*.kind, .source))]
    Access {
        path: String,
        kind: ErrorKind,
        #[source]
        source: std::io::Error,
    },
}

fn describe(kind: ErrorKind, source: &std::io::Error) -> String {
    match kind {
        ErrorKind::NotFound => "not found".into(),
        ErrorKind::PermissionDenied => "permission denied".into(),
        ErrorKind::NotRegular => "not a regular file".into(),
        ErrorKind::TooLarge => format!("larger than {} MiB", MAX_READ >> 20),
        ErrorKind::Other => source.to_string(),
    }
}

impl HostError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            HostError::OpenRoot { .. } => ErrorKind::Other,
            HostError::Access { kind, .. } => *kind,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }

    fn access(path: &str, errno: Errno) -> Self {
        let kind = match errno {
            Errno::NOENT | Errno::NOTDIR => ErrorKind::NotFound,
            Errno::ACCESS | Errno::PERM => ErrorKind::PermissionDenied,
            _ => ErrorKind::Other,
        };
        HostError::Access {
            path: path.to_string(),
            kind,
            source: errno.into(),
        }
    }

    fn with_kind(path: &str, kind: ErrorKind) -> Self {
        HostError::Access {
            path: path.to_string(),
            kind,
            source: std::io::Error::other(describe(kind, &std::io::Error::other(""))),
        }
    }
}

/// What `stat` tells the checks: owner, mode and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub file_type: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Socket,
    Other,
}

impl Meta {
    /// Permission bits plus setuid/setgid/sticky.
    pub fn perm(&self) -> u32 {
        self.mode & 0o7777
    }
}

pub struct Host {
    root: PathBuf,
    root_fd: OwnedFd,
    live: bool,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("root", &self.root)
            .field("live", &self.live)
            .finish()
    }
}

impl Host {
    /// Opens `root`; it is the live system when it is the same directory as `/`.
    pub fn open(root: &Path) -> Result<Host, HostError> {
        let open_root = |p: &Path| {
            rustix::fs::open(p, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| {
                HostError::OpenRoot {
                    root: p.to_path_buf(),
                    source: e.into(),
                }
            })
        };
        let root_fd = open_root(root)?;
        let slash = open_root(Path::new("/"))?;
        let (a, b) = (
            rustix::fs::fstat(&root_fd).map_err(|e| HostError::OpenRoot {
                root: root.to_path_buf(),
                source: e.into(),
            })?,
            rustix::fs::fstat(&slash).map_err(|e| HostError::OpenRoot {
                root: "/".into(),
                source: e.into(),
            })?,
        );
        let live = a.st_dev == b.st_dev && a.st_ino == b.st_ino;
        Ok(Host {
            root: root.to_path_buf(),
            root_fd,
            live,
        })
    }

    /// True when the root is `/`: the live /proc, sockets and commands are the host's own.
    pub fn is_live(&self) -> bool {
        self.live
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn resolve(&self, path: &str, flags: OFlags) -> Result<OwnedFd, HostError> {
        let rel = path.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        // openat2 is strict: O_PATH admits only O_CLOEXEC, O_DIRECTORY and O_NOFOLLOW.
        let flags = if flags.contains(OFlags::PATH) {
            flags | OFlags::CLOEXEC
        } else {
            flags | OFlags::CLOEXEC | OFlags::NOCTTY
        };
        // The kernel answers EAGAIN when a concurrent rename could have let the walk escape.
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(&self.root_fd, rel, flags, Mode::empty(), how) {
                Err(Errno::AGAIN) if tries < 8 => tries += 1,
                Err(e) => return Err(HostError::access(path, e)),
                Ok(fd) => return Ok(fd),
            }
        }
    }

    fn meta_of(fd: impl AsFd, path: &str) -> Result<Meta, HostError> {
        let st = rustix::fs::fstat(fd).map_err(|e| HostError::access(path, e))?;
        let file_type = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            FileType::Socket => Kind::Socket,
            _ => Kind::Other,
        };
        Ok(Meta {
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            file_type,
        })
    }

    /// `stat`: follows a final symlink (inside the root).
    pub fn stat(&self, path: &str) -> Result<Meta, HostError> {
        let fd = self.resolve(path, OFlags::PATH)?;
        Self::meta_of(&fd, path)
    }

    /// `lstat`: describes a final symlink itself.
    pub fn lstat(&self, path: &str) -> Result<Meta, HostError> {
        let fd = self.resolve(path, OFlags::PATH | OFlags::NOFOLLOW)?;
        Self::meta_of(&fd, path)
    }

    /// Ok(false) only when the path is absent; a denied lookup is an error, not "absent".
    pub fn exists(&self, path: &str) -> Result<bool, HostError> {
        match self.lstat(path) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The whole content of a regular file.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, HostError> {
        // Look before opening for reading: opening a device or FIFO could block or act.
        let probe = self.resolve(path, OFlags::PATH)?;
        let before = rustix::fs::fstat(&probe).map_err(|e| HostError::access(path, e))?;
        if FileType::from_raw_mode(before.st_mode) != FileType::RegularFile {
            return Err(HostError::with_kind(path, ErrorKind::NotRegular));
        }
        let fd = self.resolve(path, OFlags::RDONLY | OFlags::NONBLOCK)?;
        let after = rustix::fs::fstat(&fd).map_err(|e| HostError::access(path, e))?;
        if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino) {
            return Err(HostError::with_kind(path, ErrorKind::NotRegular));
        }
        let mut file = std::fs::File::from(fd);
        let mut buf = Vec::with_capacity((after.st_size.max(0) as usize).min(1 << 20));
        let n = (&mut file)
            .take(MAX_READ + 1)
            .read_to_end(&mut buf)
            .map_err(|e| HostError::Access {
                path: path.to_string(),
                kind: match e.raw_os_error().map(Errno::from_raw_os_error) {
                    Some(Errno::ACCESS | Errno::PERM) => ErrorKind::PermissionDenied,
                    _ => ErrorKind::Other,
                },
                source: e,
            })?;
        if n as u64 > MAX_READ {
            return Err(HostError::with_kind(path, ErrorKind::TooLarge));
        }
        Ok(buf)
    }

    /// A text file; invalid UTF-8 is replaced rather than refused (configs are mostly ASCII).
    pub fn read_string(&self, path: &str) -> Result<String, HostError> {
        let bytes = self.read(path)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// Like `read_string`, with an absent file as `None`.
    pub fn read_optional(&self, path: &str) -> Result<Option<String>, HostError> {
        match self.read_string(path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Entry names of a directory, sorted, without `.` and `..`.
    pub fn read_dir(&self, path: &str) -> Result<Vec<String>, HostError> {
        let fd = self.resolve(path, OFlags::RDONLY | OFlags::DIRECTORY)?;
        let mut dir = rustix::fs::Dir::read_from(&fd).map_err(|e| HostError::access(path, e))?;
        let mut names = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|e| HostError::access(path, e))?;
            let name = entry.file_name().to_string_lossy();
            if name != "." && name != ".." {
                names.push(name.into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Like `read_dir`, with an absent directory as empty.
    pub fn read_dir_optional(&self, path: &str) -> Result<Vec<String>, HostError> {
        match self.read_dir(path) {
            Ok(v) => Ok(v),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The target of a symlink, as written (also `/proc/<pid>/fd/N` and `exe`, never followed).
    pub fn read_link(&self, path: &str) -> Result<String, HostError> {
        let fd = self.resolve(path, OFlags::PATH | OFlags::NOFOLLOW)?;
        let target = rustix::fs::readlinkat(&fd, "", Vec::new()).map_err(|e| HostError::access(path, e))?;
        Ok(target.to_string_lossy().into_owned())
    }

    /// Connects to a unix socket inside the root, through the resolved file descriptor so that
    /// the socket reached is the one that was resolved inside the root.
    pub fn connect_unix(&self, path: &str, timeout: Duration) -> Result<UnixStream, HostError> {
        use std::os::fd::AsRawFd;
        let fd = self.resolve(path, OFlags::PATH)?;
        let meta = Self::meta_of(&fd, path)?;
        if meta.file_type != Kind::Socket {
            return Err(HostError::with_kind(path, ErrorKind::NotRegular));
        }
        let via = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let stream = UnixStream::connect(&via).map_err(|e| HostError::Access {
            path: path.to_string(),
            kind: match e.kind() {
                std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                _ => ErrorKind::Other,
            },
            source: e,
        })?;
        let _ = stream.set_read_timeout(Some(timeout));
        let _ = stream.set_write_timeout(Some(timeout));
        Ok(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "stockade-hostcheck-{tag}-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn absolute_symlinks_stay_inside_the_root() {
        let outside = TempDir::new("outside");
        std::fs::write(outside.0.join("secret"), "outside").unwrap();
        let root = TempDir::new("root");
        std::fs::create_dir_all(root.0.join("etc")).unwrap();
        std::fs::write(root.0.join("inside"), "inside").unwrap();
        // Absolute and dot-dot escapes both land inside the root.
        symlink(outside.0.join("secret"), root.0.join("etc/abs")).unwrap();
        symlink("../../../../../../inside", root.0.join("etc/dots")).unwrap();
        symlink("/inside", root.0.join("etc/rooted")).unwrap();
        let host = Host::open(&root.0).unwrap();
        assert!(!host.is_live());
        assert!(host.read("/etc/abs").unwrap_err().is_not_found());
        assert_eq!(host.read_string("/etc/dots").unwrap(), "inside");
        assert_eq!(host.read_string("etc/rooted").unwrap(), "inside");
        assert_eq!(host.read_link("/etc/rooted").unwrap(), "/inside");
        assert_eq!(host.read_dir("/etc").unwrap(), vec!["abs", "dots", "rooted"]);
    }

    #[test]
    fn refuses_fifos_and_reports_missing_files() {
        let root = TempDir::new("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.0.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let host = Host::open(&root.0).unwrap();
        assert_eq!(host.read("/fifo").unwrap_err().kind(), ErrorKind::NotRegular);
        let err = host.read("/nope").unwrap_err();
        assert!(err.is_not_found());
        assert_eq!(err.to_string(), "/nope: not found");
        assert!(!host.exists("/nope").unwrap());
        assert_eq!(host.read_optional("/nope").unwrap(), None);
    }

    #[test]
    fn slash_is_live() {
        let host = Host::open(Path::new("/")).unwrap();
        assert!(host.is_live());
        assert!(host.stat("/proc/self").is_ok());
    }
}
