//! Asks the host's resolvers (or the policy's `upstream`) for the addresses of allowed names,
//! from the supervisor, with a small cache; the proxy connects only to what this returns.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const TRY_TIMEOUT: Duration = Duration::from_secs(2);
const MIN_TTL: u32 = 5;
const MAX_TTL: u32 = 300;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Addrs(Vec<IpAddr>),
    NxDomain,
    /// The name exists but has no address.
    NoData,
}

#[derive(Debug)]
pub struct Upstream {
    /// From the policy; empty means the host's /etc/resolv.conf, read at the first question.
    configured: Vec<SocketAddr>,
    servers: std::sync::OnceLock<Vec<SocketAddr>>,
    cache: Mutex<HashMap<String, (Lookup, Instant)>>,
}

/// The `nameserver` lines of a resolv.conf; glibc's default (127.0.0.1) if there are none.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut v: Vec<SocketAddr> = text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next()).flatten()
        })
        .filter_map(|a| {
            // Drop a zone index (fe80::1%eth0): the supervisor cannot use it portably.
            a.split('%').next().and_then(|a| a.parse::<IpAddr>().ok())
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    if v.is_empty() {
        v.push(SocketAddr::from(([127, 0, 0, 1], 53)));
    }
    v
}

fn random_id() -> u16 {
    let mut b = [0u8; 2];
    match rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()) {
        Ok(_) => u16::from_ne_bytes(b),
        // getrandom cannot fail on Linux >= 3.17 with a 2-byte buffer; keep going regardless.
        Err(_) => (Instant::now().elapsed().subsec_nanos() & 0xffff) as u16,
    }
}

impl Upstream {
    pub fn new(configured: Vec<SocketAddr>) -> Self {
        Upstream {
            configured,
            servers: std::sync::OnceLock::new(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn servers(&self) -> &[SocketAddr] {
        self.servers.get_or_init(|| {
            if self.configured.is_empty() {
                // Unreadable counts as empty, which means glibc's default, 127.0.0.1.
                parse_resolv_conf(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default())
            } else {
                self.configured.clone()
            }
        })
    }

    /// The addresses of `name`: A records first, AAAA if there are none.
    pub async fn lookup(&self, name: &str) -> Result<Lookup, String> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .filter(|(_, exp)| *exp > Instant::now())
            .map(|(l, _)| l.clone());
        if let Some(l) = cached {
            return Ok(l);
        }
        let (mut result, mut ttl) = self.query(name, RecordType::A).await?;
        if result == Lookup::NoData {
            (result, ttl) = self.query(name, RecordType::AAAA).await?;
        }
        let ttl = Duration::from_secs(u64::from(ttl.clamp(MIN_TTL, MAX_TTL)));
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), (result.clone(), Instant::now() + ttl));
        Ok(result)
    }

    async fn query(&self, name: &str, rtype: RecordType) -> Result<(Lookup, u32), String> {
        let qname = Name::from_ascii(format!("{name}.")).map_err(|e| format!("bad name: {e}"))?;
        let mut last = String::from("no upstream resolver");
        for server in self.servers() {
            for _ in 0..2 {
                let id = random_id();
                let mut msg = Message::new();
                msg.set_id(id)
                    .set_message_type(MessageType::Query)
                    .set_op_code(OpCode::Query)
                    .set_recursion_desired(true)
                    .add_query(Query::query(qname.clone(), rtype));
                let bytes = msg.to_vec().map_err(|e| e.to_string())?;
                match tokio::time::timeout(TRY_TIMEOUT, exchange(*server, &bytes, id, &qname)).await {
                    Ok(Ok(resp)) => return interpret(&resp, rtype),
                    Ok(Err(e)) => last = format!("upstream {server}: {e}"),
                    Err(_) => last = format!("upstream {server}: no answer in {TRY_TIMEOUT:?}"),
                }
            }
        }
        Err(last)
    }
}

fn interpret(resp: &Message, rtype: RecordType) -> Result<(Lookup, u32), String> {
    match resp.response_code() {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return Ok((Lookup::NxDomain, MIN_TTL)),
        other => return Err(format!("upstream answered {other}")),
    }
    let mut addrs = Vec::new();
    let mut ttl = MAX_TTL;
    for r in resp.answers() {
        let ip = match (r.data(), rtype) {
            (RData::A(a), RecordType::A) => IpAddr::V4(a.0),
            (RData::AAAA(a), RecordType::AAAA) => IpAddr::V6(a.0),
            _ => continue,
        };
        ttl = ttl.min(r.ttl());
        addrs.push(ip);
    }
    if addrs.is_empty() {
        Ok((Lookup::NoData, MIN_TTL))
    } else {
        Ok((Lookup::Addrs(addrs), ttl))
    }
}

async fn exchange(server: SocketAddr, q: &[u8], id: u16, qname: &Name) -> Result<Message, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let sock = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    sock.connect(server).await.map_err(|e| e.to_string())?;
    sock.send(q).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).await.map_err(|e| e.to_string())?;
        let Ok(m) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        // Only our answer counts: same id, same question (spoofed or stale packets are dropped).
        if m.id() != id
            || m.message_type() != MessageType::Response
            || m.queries().first().map(|q| q.name()) != Some(qname)
        {
            continue;
        }
        if m.truncated() {
            return exchange_tcp(server, q, id).await;
        }
        return Ok(m);
    }
}

async fn exchange_tcp(server: SocketAddr, q: &[u8], id: u16) -> Result<Message, String> {
    let mut s = TcpStream::connect(server).await.map_err(|e| e.to_string())?;
    let mut out = (q.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(q);
    s.write_all(&out).await.map_err(|e| e.to_string())?;
    let len = s.read_u16().await.map_err(|e| e.to_string())? as usize;
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    let m = Message::from_vec(&buf).map_err(|e| e.to_string())?;
    if m.id() != id {
        return Err("answer with a foreign id".into());
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers() {
        let t =
            "# c\nsearch example\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\noptions edns0\nnameserver bogus\n";
        assert_eq!(
            parse_resolv_conf(t),
            vec!["127.0.0.53:53".parse().unwrap(), "[fe80::1]:53".parse().unwrap()]
        );
        assert_eq!(parse_resolv_conf(""), vec!["127.0.0.1:53".parse().unwrap()]);
    }
}
