//! Moves bytes between the job's connection and the upstream one without buffering bodies:
//! splice(2) through a pipe, so payload never enters the supervisor's memory.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

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
