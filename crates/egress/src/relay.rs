//! Moves bytes between the job's connection and the upstream one without buffering bodies:
//! splice(2) through a pipe, so payload never enters the supervisor's memory.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::net::RecvFlags;
use rustix::pipe::{PipeFlags, SpliceFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

const DEFAULT_PIPE: usize = 64 << 10;
const PIPE_SIZE: usize = 1 << 20;
const GROW_AFTER: u64 = 4 << 20;

/// Writes all of `data` to `dst`.
pub async fn write_all(dst: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        dst.writable().await?;
        match dst.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads what is available from `src` into `buf` (at least one byte, or 0 at EOF).
pub async fn read_some(src: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut tmp = [0u8; 8192];
    loop {
        src.readable().await?;
        match src.try_read(&mut tmp) {
            Ok(n) => {
                buf.extend_from_slice(&tmp[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// Copies `src` to `dst` until EOF, then half-closes `dst`. Counts bytes into `count`.
pub async fn pump(src: &TcpStream, dst: &TcpStream, count: &AtomicU64) -> io::Result<()> {
    let (pr, pw) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
    let mut total = 0u64;
    let mut grown = false;
    let mut chunk = DEFAULT_PIPE;
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    loop {
        // The pipe is empty here, so EAGAIN can only mean that `src` has nothing to read.
        let n = loop {
            src.readable().await?;
            match src.try_io(Interest::READABLE, || {
                rustix::pipe::splice(src, None, &pw, None, chunk, flags).map_err(io::Error::from)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            // The peer may already be gone; nothing is lost by ignoring that here.
            let _ = rustix::net::shutdown(dst, rustix::net::Shutdown::Write);
            return Ok(());
        }
        let mut left = n;
        while left > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || {
                rustix::pipe::splice(&pr, None, dst, None, left, flags).map_err(io::Error::from)
            }) {
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
        total += n as u64;
        if !grown && total > GROW_AFTER {
            // A bulk transfer: a bigger pipe means fewer wake-ups per byte. Only then, since
            // pipe sizes count against a per-user budget and most connections are small; the
            // default size still works if the kernel says no.
            grown = true;
            if let Ok(size) = rustix::pipe::fcntl_setpipe_size(&pw, PIPE_SIZE) {
                chunk = size;
            }
        }
    }
}

/// How much of upstream's first bytes `peek_http_status` looks at: a status line, and interim
/// (1xx) responses before the final one if they fit.
const STATUS_WINDOW: usize = 2048;

/// The status of the HTTP/1 response at the start of what `src` has to read, without consuming
/// anything: the body then goes through splice as before. `None` if the first bytes are not an
/// HTTP response (TLS, SSH, ...) or the connection ends first.
pub async fn peek_http_status(src: &TcpStream) -> Option<u16> {
    let mut buf = vec![0u8; STATUS_WINDOW];
    loop {
        let ready = src.ready(Interest::READABLE).await.ok()?;
        let eof = ready.is_read_closed();
        let r = src.try_io(Interest::READABLE, || {
            let (n, _) = rustix::net::recv(src, &mut buf[..], RecvFlags::PEEK | RecvFlags::DONTWAIT)?;
            match http_status(&buf[..n], eof || n == buf.len()) {
                // Not enough yet: WouldBlock clears the readiness, so the next wait is for more.
                Status::NeedMore => Err(io::ErrorKind::WouldBlock.into()),
                Status::Code(c) => Ok(Some(c)),
                Status::NotHttp => Ok(None),
            }
        });
        match r {
            Ok(found) => return found,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => return None,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Status {
    Code(u16),
    NotHttp,
    NeedMore,
}

/// `all`: no more bytes will come into view (end of stream, or the window is full).
fn http_status(b: &[u8], all: bool) -> Status {
    const PREFIX: &[u8] = b"HTTP/1.";
    // "HTTP/1.1 200": 12 bytes.
    if b.len() < 12 {
        let n = b.len().min(PREFIX.len());
        return if b[..n] != PREFIX[..n] || all {
            Status::NotHttp
        } else {
            Status::NeedMore
        };
    }
    let digits = &b[9..12];
    if &b[..7] != PREFIX || !b[7].is_ascii_digit() || b[8] != b' ' || !digits.iter().all(u8::is_ascii_digit) {
        return Status::NotHttp;
    }
    let code = digits.iter().fold(0u16, |a, d| a * 10 + u16::from(d - b'0'));
    // 100 Continue, 102, 103 Early Hints come before the final response; 101 is final.
    if (100..200).contains(&code) && code != 101 {
        return match b.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(end) => match http_status(&b[end + 4..], all) {
                Status::NotHttp => Status::Code(code),
                other => other,
            },
            None if all => Status::Code(code),
            None => Status::NeedMore,
        };
    }
    Status::Code(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(http_status(b"HTTP/1.1 401 Unauthorized\r\n", false), Status::Code(401));
        assert_eq!(http_status(b"HTTP/1.0 200 OK\r\n\r\n", true), Status::Code(200));
        assert_eq!(http_status(b"HTTP/1.1 40", false), Status::NeedMore);
        assert_eq!(http_status(b"HTTP/1.1 40", true), Status::NotHttp);
        assert_eq!(http_status(b"HTT", false), Status::NeedMore);
        assert_eq!(http_status(b"\x16\x03\x03", false), Status::NotHttp);
        assert_eq!(http_status(b"SSH-2.0-OpenSSH_9.2\r\n", false), Status::NotHttp);
        assert_eq!(http_status(b"HTTP/1.1 2x0 OK\r\n", false), Status::NotHttp);
        let interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 407 Proxy Authentication Required\r\n";
        assert_eq!(http_status(interim, false), Status::Code(407));
        assert_eq!(http_status(&interim[..30], false), Status::NeedMore);
        assert_eq!(http_status(b"HTTP/1.1 100 Continue\r\n", true), Status::Code(100));
        assert_eq!(
            http_status(b"HTTP/1.1 101 Switching Protocols\r\n", false),
            Status::Code(101)
        );
    }
}
