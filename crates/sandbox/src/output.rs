//! Secret masking: when a job holds secrets, its stdout and stderr pass through the supervisor,
//! which streams them on with every secret replaced by `***`.

use crate::sys;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::thread::JoinHandle;

pub struct Masker {
    secrets: Vec<Vec<u8>>,
    readers: Vec<(OwnedFd, bool)>,
    threads: Vec<JoinHandle<()>>,
}

impl Masker {
    /// Returns the masker and the write ends of the stdout and stderr pipes for the job. No
    /// thread starts until `start`, which the supervisor calls after forking.
    pub fn new(secrets: Vec<Vec<u8>>) -> io::Result<(Masker, OwnedFd, OwnedFd)> {
        let (r_out, w_out) = sys::pipe()?;
        let (r_err, w_err) = sys::pipe()?;
        let m = Masker {
            secrets,
            readers: vec![(r_out, false), (r_err, true)],
            threads: Vec::new(),
        };
        Ok((m, w_out, w_err))
    }

    pub fn start(&mut self) {
        for (r, to_err) in self.readers.drain(..) {
            let secrets = self.secrets.clone();
            self.threads.push(std::thread::spawn(move || pump(r, to_err, &secrets)));
        }
    }

    /// Waits until both pipes are drained (every writer in the job is gone).
    pub fn finish(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn pump(r: OwnedFd, to_err: bool, secrets: &[Vec<u8>]) {
    let mut src = std::fs::File::from(r);
    let longest = secrets.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        let eof = n == 0;
        pending.extend_from_slice(&buf[..n]);
        let masked = mask(&pending, secrets);
        // Hold back a tail that could be the start of a secret split across reads.
        let keep = if eof { 0 } else { (longest - 1).min(masked.1) };
        let (out, rest) = masked.0.split_at(masked.0.len() - keep);
        let _ = if to_err {
            io::stderr().write_all(out)
        } else {
            io::stdout().write_all(out).and_then(|_| io::stdout().flush())
        };
        pending = rest.to_vec();
        if eof {
            return;
        }
    }
}

/// Replaces every secret; returns the text and how many trailing bytes are unmasked raw input.
fn mask(data: &[u8], secrets: &[Vec<u8>]) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    let mut raw_tail = 0;
    'outer: while i < data.len() {
        for s in secrets {
            if !s.is_empty() && data[i..].starts_with(s) {
                out.extend_from_slice(b"***");
                i += s.len();
                raw_tail = 0;
                continue 'outer;
            }
        }
        out.push(data[i]);
        raw_tail += 1;
        i += 1;
    }
    (out, raw_tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence() {
        let (o, _) = mask(b"a hunter2 b hunter2", &[b"hunter2".to_vec()]);
        assert_eq!(o, b"a *** b ***");
    }
}
