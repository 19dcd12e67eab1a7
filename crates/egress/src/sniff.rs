//! Reads the name a client is heading for out of its first bytes, without terminating TLS:
//! the SNI of a TLS ClientHello (reassembled across records) or the Host of an HTTP request.
//! Hand-written because it must say "need more bytes" on partial input, which parsers of whole
//! records (tls-parser) do not; every length is bounds-checked.

/// Largest first flight the proxy buffers before deciding.
pub const MAX_FIRST_FLIGHT: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstFlight {
    /// A TLS ClientHello; `sni` is its server_name, if any.
    Tls { sni: Option<String> },
    /// An HTTP/1 request head; `host` is its Host header without port, if any, and
    /// `target_host` the host of an absolute-form target (`GET http://host/ HTTP/1.1`), which a
    /// server must prefer over Host.
    Http {
        host: Option<String>,
        target_host: Option<String>,
    },
    /// Anything else (SSH, a database protocol, random bytes).
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SniffError {
    #[error("malformed TLS ClientHello")]
    BadTls,
    #[error("malformed HTTP request head")]
    BadHttp,
    #[error("first bytes larger than {MAX_FIRST_FLIGHT} bytes without a complete header")]
    TooLong,
}

/// `Ok(None)`: need more bytes.
pub fn classify(buf: &[u8]) -> Result<Option<FirstFlight>, SniffError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let r = if buf[0] == 0x16 {
        if buf.len() < 2 {
            return Ok(None);
        }
        if buf[1] != 0x03 {
            return Ok(Some(FirstFlight::Other));
        }
        client_hello_sni(buf).map(|o| o.map(|sni| FirstFlight::Tls { sni }))
    } else if buf[0].is_ascii_uppercase() {
        http_host(buf)
    } else {
        return Ok(Some(FirstFlight::Other));
    };
    match r {
        Ok(None) if buf.len() >= MAX_FIRST_FLIGHT => Err(SniffError::TooLong),
        other => other,
    }
}

/// `Ok(None)`: need more; `Ok(Some(None))`: a ClientHello without SNI.
fn client_hello_sni(buf: &[u8]) -> Result<Option<Option<String>>, SniffError> {
    // Gather the handshake bytes of consecutive handshake records.
    let mut hs = Vec::new();
    let mut off = 0;
    loop {
        if buf.len() < off + 5 {
            return Ok(None);
        }
        if buf[off] != 0x16 || buf[off + 1] != 0x03 {
            return Err(SniffError::BadTls);
        }
        let len = u16::from_be_bytes([buf[off + 3], buf[off + 4]]) as usize;
        if len == 0 || len > 16384 + 2048 {
            return Err(SniffError::BadTls);
        }
        let end = off + 5 + len;
        let avail = &buf[off + 5..end.min(buf.len())];
        hs.extend_from_slice(avail);
        if hs.len() >= 4 {
            if hs[0] != 1 {
                return Err(SniffError::BadTls); // not a ClientHello
            }
            let need = 4 + (u32::from_be_bytes([0, hs[1], hs[2], hs[3]]) as usize);
            if need > MAX_FIRST_FLIGHT {
                return Err(SniffError::BadTls);
            }
            if hs.len() >= need {
                return parse_client_hello(&hs[4..need]).map(Some);
            }
        }
        if end > buf.len() {
            return Ok(None);
        }
        off = end;
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SniffError> {
        if self.b.len() < n {
            return Err(SniffError::BadTls);
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<usize, SniffError> {
        Ok(self.take(1)?[0] as usize)
    }
    fn u16(&mut self) -> Result<usize, SniffError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }
}

fn parse_client_hello(body: &[u8]) -> Result<Option<String>, SniffError> {
    let mut r = Reader { b: body };
    r.take(2 + 32)?; // legacy_version, random
    let n = r.u8()?;
    r.take(n)?; // session id
    let n = r.u16()?;
    r.take(n)?; // cipher suites
    let n = r.u8()?;
    r.take(n)?; // compression methods
    if r.b.is_empty() {
        return Ok(None); // no extensions at all
    }
    let n = r.u16()?;
    let mut ext = Reader { b: r.take(n)? };
    while !ext.b.is_empty() {
        let kind = ext.u16()?;
        let n = ext.u16()?;
        let data = ext.take(n)?;
        if kind == 0 {
            let mut s = Reader { b: data };
            let n = s.u16()?;
            let mut list = Reader { b: s.take(n)? };
            while !list.b.is_empty() {
                let name_type = list.u8()?;
                let n = list.u16()?;
                let name = list.take(n)?;
                if name_type == 0 {
                    let name = std::str::from_utf8(name).map_err(|_| SniffError::BadTls)?;
                    return Ok(Some(name.to_string()));
                }
            }
            return Ok(None);
        }
    }
    Ok(None)
}

fn http_host(buf: &[u8]) -> Result<Option<FirstFlight>, SniffError> {
    // A method token, then a space; anything else is not HTTP.
    for (i, b) in buf.iter().enumerate().take(16) {
        if *b == b' ' {
            if i == 0 {
                return Ok(Some(FirstFlight::Other));
            }
            break;
        }
        if !(b.is_ascii_uppercase() || *b == b'-') {
            return Ok(Some(FirstFlight::Other));
        }
        if i == 15 {
            return Ok(Some(FirstFlight::Other));
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 96];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(_)) => {
            let hosts = req
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("host"))
                .count();
            if hosts > 1 {
                // Which one a server believes is up to the server: refuse to guess.
                return Err(SniffError::BadHttp);
            }
            let host = header(req.headers, "host").map(|h| strip_port(h).to_string());
            let target_host = req.path.and_then(|t| {
                let lower = t.get(..8).map(str::to_ascii_lowercase)?;
                let rest = if lower.starts_with("http://") {
                    &t[7..]
                } else if lower.starts_with("https://") {
                    &t[8..]
                } else {
                    return None;
                };
                let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
                let authority = authority.rsplit('@').next().unwrap_or(authority);
                Some(strip_port(authority).to_string())
            });
            Ok(Some(FirstFlight::Http { host, target_host }))
        }
        Err(_) => Err(SniffError::BadHttp),
    }
}

pub fn header<'a>(headers: &[httparse::Header<'a>], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(str::trim)
}

/// `host:port` or `[v6]:port` or `host` → the host part, brackets removed.
pub fn strip_port(authority: &str) -> &str {
    split_authority(authority).0
}

/// Splits an authority into host (brackets removed) and port, if given and numeric.
pub fn split_authority(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some((h, tail)) = rest.split_once(']') {
            let port = tail.strip_prefix(':').and_then(|p| p.parse().ok());
            return (h, port);
        }
        return (authority, None);
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p.parse().ok()),
        _ => (authority, None),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ClientHello as a client would send it, with or without SNI, split into `records`
    /// TLS records.
    pub fn client_hello(sni: Option<&str>, records: usize) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01]);
        body.extend_from_slice(&[1, 0]);
        let mut exts = Vec::new();
        // an unrelated extension first (supported_versions)
        exts.extend_from_slice(&[0x00, 0x2b, 0, 3, 2, 0x03, 0x04]);
        if let Some(name) = sni {
            let n = name.len() as u16;
            exts.extend_from_slice(&0u16.to_be_bytes());
            exts.extend_from_slice(&(n + 5).to_be_bytes());
            exts.extend_from_slice(&(n + 3).to_be_bytes());
            exts.push(0);
            exts.extend_from_slice(&n.to_be_bytes());
            exts.extend_from_slice(name.as_bytes());
        }
        // padding, as big browsers' hellos are
        exts.extend_from_slice(&[0x00, 0x15, 0x04, 0x00]);
        exts.extend_from_slice(&[0u8; 1024]);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut hs = vec![1u8];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let chunk = hs.len().div_ceil(records);
        let mut out = Vec::new();
        for part in hs.chunks(chunk) {
            out.extend_from_slice(&[0x16, 0x03, 0x01]);
            out.extend_from_slice(&(part.len() as u16).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    #[test]
    fn sni_is_found_in_whole_and_split_hellos() {
        for records in [1, 2, 5] {
            let h = client_hello(Some("allowed.test"), records);
            assert_eq!(
                classify(&h),
                Ok(Some(FirstFlight::Tls {
                    sni: Some("allowed.test".into())
                }))
            );
            // Every prefix asks for more, never errs or guesses.
            for cut in 0..h.len() {
                assert_eq!(classify(&h[..cut]), Ok(None), "records {records} cut {cut}");
            }
        }
    }

    #[test]
    fn hello_without_sni() {
        let h = client_hello(None, 1);
        assert_eq!(classify(&h), Ok(Some(FirstFlight::Tls { sni: None })));
    }

    #[test]
    fn garbage_and_truncated_lengths_are_errors_not_panics() {
        let mut h = client_hello(Some("a.test"), 1);
        // Lie about the extensions length.
        let pos = 5 + 4 + 2 + 32 + 1 + 4 + 2;
        h[pos] = 0xff;
        assert_eq!(classify(&h), Err(SniffError::BadTls));
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0, 0]), Err(SniffError::BadTls));
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0, 4, 2, 0, 0, 0]), Err(SniffError::BadTls));
        assert_eq!(classify(&[0x16, 0x01]), Ok(Some(FirstFlight::Other)));
        assert_eq!(classify(b"SSH-2.0-OpenSSH\r\n"), Ok(Some(FirstFlight::Other)));
        assert_eq!(classify(b"\x00\x01binary"), Ok(Some(FirstFlight::Other)));
    }

    #[test]
    fn http_host_is_read() {
        assert_eq!(
            classify(b"GET / HTTP/1.1\r\nHost: Allowed.Test:8080\r\nAccept: */*\r\n\r\n"),
            Ok(Some(FirstFlight::Http {
                host: Some("Allowed.Test".into()),
                target_host: None,
            }))
        );
        assert_eq!(
            classify(b"GET http://u@Denied.test:80/x HTTP/1.1\r\nHost: allowed.test\r\n\r\n"),
            Ok(Some(FirstFlight::Http {
                host: Some("allowed.test".into()),
                target_host: Some("Denied.test".into()),
            }))
        );
        assert_eq!(
            classify(b"GET / HTTP/1.1\r\nHost: a.test\r\nhost: b.test\r\n\r\n"),
            Err(SniffError::BadHttp)
        );
        assert_eq!(classify(b"GET / HTTP/1.1\r\nHost: allowed.test\r\n"), Ok(None));
        assert_eq!(
            classify(b"GET / HTTP/1.0\r\n\r\n"),
            Ok(Some(FirstFlight::Http {
                host: None,
                target_host: None
            }))
        );
        assert_eq!(classify(b"GET /\x01 HTTP/1.1\r\n\r\n"), Err(SniffError::BadHttp));
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_FIRST_FLIGHT));
        assert_eq!(classify(&long), Err(SniffError::TooLong));
    }

    #[test]
    fn authorities_split() {
        assert_eq!(split_authority("a.test:443"), ("a.test", Some(443)));
        assert_eq!(split_authority("a.test"), ("a.test", None));
        assert_eq!(split_authority("[::1]:80"), ("::1", Some(80)));
        assert_eq!(split_authority("[::1]"), ("::1", None));
        assert_eq!(split_authority("::1"), ("::1", None));
    }
}
