//! The job's only resolver: answers allowed names with their synthetic addresses, refuses
//! (NXDOMAIN) and logs every other name, so a DNS question carries nothing out of the job.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::log::{Pending, Protocol, Via};
use crate::owner::{Key, Slot, Table};
use crate::policy::normalize_name;
use crate::state::State;
use crate::upstream::Lookup;

const ANSWER_TTL: u32 = 60;
const TCP_IDLE: Duration = Duration::from_secs(10);

pub async fn serve_udp(state: Arc<State>, sock: UdpSocket) {
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let q = buf[..n].to_vec();
        let state = state.clone();
        let sock = sock.clone();
        // Most often the asker's socket is unconnected or connected to us (resolv.conf).
        let owner = state.owners.find(Key {
            table: Table::Udp,
            local: peer,
            remote: Some(SocketAddr::V4(crate::netns::DNS_ADDR)),
        });
        tokio::spawn(async move {
            if let Some(resp) = answer(&state, &q, Via::DnsUdp, Some(peer), Some(owner)).await {
                let _ = sock.send_to(&resp, peer).await;
            }
        });
    }
}

pub async fn serve_tcp(state: Arc<State>, listener: TcpListener) {
    loop {
        let Ok((s, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _ = tcp_conn(&state, s, peer).await;
        });
    }
}

async fn tcp_conn(state: &State, mut s: TcpStream, peer: SocketAddr) -> std::io::Result<()> {
    // What the job connected to: a redirected connection's original destination, or us.
    let remote = crate::proxy::original_dst(&s).or_else(|| s.local_addr().ok());
    let owner = state.owners.find(Key {
        table: Table::Tcp,
        local: peer,
        remote,
    });
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, s.read_u16()).await {
            Ok(Ok(l)) => l as usize,
            _ => return Ok(()),
        };
        let mut q = vec![0u8; len];
        tokio::time::timeout(TCP_IDLE, s.read_exact(&mut q))
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)??;
        let Some(resp) = answer(state, &q, Via::DnsTcp, Some(peer), Some(owner.clone())).await else {
            return Ok(());
        };
        let mut out = (resp.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&resp);
        s.write_all(&out).await?;
    }
}

fn reply(req: &Message, code: ResponseCode) -> Message {
    let mut m = Message::new();
    m.set_id(req.id())
        .set_message_type(MessageType::Response)
        .set_op_code(req.op_code())
        .set_recursion_desired(req.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(code)
        .add_queries(req.queries().to_vec());
    m
}

/// The answer to one DNS message, or `None` to stay silent (not a query, or unparsable).
/// `owner`: the lookup of the job process that asked. A refused question's answer waits for it
/// (briefly), so the asker is known; an allowed one does not, to keep name lookups fast, and its
/// event names the asker only if it still holds its socket when the lookup runs.
pub async fn answer(
    state: &State,
    q: &[u8],
    via: Via,
    source: Option<SocketAddr>,
    owner: Option<Arc<Slot>>,
) -> Option<Vec<u8>> {
    let req = match Message::from_vec(q) {
        Ok(m) => m,
        Err(_) if q.len() >= 12 => {
            let id = u16::from_be_bytes([q[0], q[1]]);
            let m = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
            return m.to_vec().ok();
        }
        Err(_) => return None,
    };
    if req.message_type() != MessageType::Query {
        return None;
    }
    if req.op_code() != OpCode::Query {
        return reply(&req, ResponseCode::NotImp).to_vec().ok();
    }
    let [question] = req.queries() else {
        return reply(&req, ResponseCode::FormErr).to_vec().ok();
    };
    let rtype = question.query_type();
    let raw_name = question.name().to_ascii();
    let mut p = Pending::new(state.sink.clone(), Protocol::Dns, via, 53);
    p.event.source = source;
    p.event.query_type = Some(rtype.to_string());
    p.owner = owner;
    let Some(name) = normalize_name(&raw_name) else {
        p.event.name = Some(raw_name);
        state.judge(&mut p, false, "not a host name".into());
        settle(&p).await;
        p.finish(None);
        return reply(&req, ResponseCode::NXDomain).to_vec().ok();
    };
    p.event.name = Some(name.clone());
    let d = state.policy.check_dns(&name);
    if !state.judge(&mut p, d.allowed, d.rule) {
        settle(&p).await;
        p.finish(None);
        return reply(&req, ResponseCode::NXDomain).to_vec().ok();
    }
    let exists = if let Some(pin) = state.policy.pin(&name) {
        p.event.address = Some(pin);
        Ok(true)
    } else {
        match state.upstream.lookup(&name).await {
            Ok(Lookup::Addrs(a)) => {
                p.event.address = a.first().copied();
                Ok(true)
            }
            Ok(Lookup::NoData) => Ok(false),
            Ok(Lookup::NxDomain) => Err((ResponseCode::NXDomain, "no such name upstream".into())),
            Err(e) => Err((ResponseCode::ServFail, e)),
        }
    };
    let mut resp;
    match exists {
        Err((code, why)) => {
            p.finish(Some(why));
            return reply(&req, code).to_vec().ok();
        }
        Ok(exists) => {
            resp = reply(&req, ResponseCode::NoError);
            // Only A questions get an address: IPv6 is closed inside the job, and other record
            // types (TXT, SRV, HTTPS with address hints) could carry addresses or data around
            // the proxy.
            if exists && rtype == RecordType::A {
                let fake = state.names.lock().unwrap_or_else(|e| e.into_inner()).assign(&name);
                match fake {
                    Some(ip) => {
                        resp.add_answer(Record::from_rdata(question.name().clone(), ANSWER_TTL, RData::A(A(ip))));
                    }
                    None => {
                        p.finish(Some("synthetic address pool exhausted".into()));
                        return reply(&req, ResponseCode::ServFail).to_vec().ok();
                    }
                }
            }
        }
    }
    if p.event.verdict != crate::log::Verdict::Allowed {
        // Audit mode: flagged, which matters as much as refused.
        settle(&p).await;
    }
    p.finish(None);
    resp.to_vec().ok()
}

async fn settle(p: &Pending) {
    if let Some(o) = &p.owner {
        o.settled(crate::supervisor::OWNER_WAIT).await;
    }
}
