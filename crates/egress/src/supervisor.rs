//! The supervisor's side: serves the sockets `setup_netns` made inside the job's namespace,
//! from outside it, on a small tokio runtime of its own, and hands back the log at the end.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::net::{SocketType, sockopt};

use crate::EgressError;
use crate::log::{EgressLog, Sink};
use crate::names::Names;
use crate::policy::{EgressPolicy, Mode, PolicyError};
use crate::state::State;
use crate::upstream::Upstream;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("egress mode is none: nothing to serve")]
    ModeNone,
    #[error("check the egress policy")]
    Policy(#[source] PolicyError),
    #[error("expected 3 sockets from setup_netns (proxy, DNS UDP, DNS TCP), got {0}")]
    FdCount(usize),
    #[error("socket {index} from setup_netns is not a {expected}")]
    FdKind { index: usize, expected: &'static str },
    #[error("start the egress runtime")]
    Runtime(#[source] std::io::Error),
    #[error("serve the socket from setup_netns")]
    Register(#[source] std::io::Error),
}

/// How long `finish` waits for connections that are closing to log themselves.
const DRAIN: Duration = Duration::from_millis(300);

/// Egress being served for one job. `finish` stops it and returns the log.
pub struct Egress {
    serving: Option<(tokio::sync::oneshot::Sender<()>, std::thread::JoinHandle<()>)>,
    state: Arc<State>,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress").field("mode", &self.state.policy.mode).finish()
    }
}

fn expect_kind(
    fds: &[OwnedFd],
    index: usize,
    ty: SocketType,
    listening: bool,
    expected: &'static str,
) -> Result<(), StartError> {
    let fd = &fds[index];
    let bad = || StartError::FdKind { index, expected };
    if sockopt::socket_type(fd).map_err(|_| bad())? != ty {
        return Err(bad());
    }
    if listening && !sockopt::socket_acceptconn(fd).map_err(|_| bad())? {
        return Err(bad());
    }
    Ok(())
}

impl Egress {
    /// Serves the sockets returned by `setup_netns` (same order). Call it in the supervisor,
    /// outside the job's namespaces; it starts one thread, which serves everything. Raises this
    /// process's soft open-files limit to its hard limit: every relayed connection holds two
    /// sockets and two pipes.
    pub fn start(policy: &EgressPolicy, fds: Vec<OwnedFd>) -> Result<Egress, EgressError> {
        if policy.mode == Mode::None {
            return Err(StartError::ModeNone.into());
        }
        let compiled = policy.compile().map_err(StartError::Policy)?;
        if fds.len() != 3 {
            return Err(StartError::FdCount(fds.len()).into());
        }
        expect_kind(&fds, 0, SocketType::STREAM, true, "listening TCP socket")?;
        expect_kind(&fds, 1, SocketType::DGRAM, false, "UDP socket")?;
        expect_kind(&fds, 2, SocketType::STREAM, true, "listening TCP socket")?;
        let compiled_upstream = compiled.upstream.clone();
        raise_nofile();
        // One thread serves everything: the work is waiting on sockets, splice moves the bytes
        // in the kernel, and one thread starts and stops faster than a pool.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(StartError::Runtime)?;
        let state = Arc::new(State {
            policy: compiled,
            sink: Arc::new(Sink::default()),
            names: Mutex::new(Names::default()),
            // The host's resolvers and addresses are read when first needed: jobs that only
            // use pinned names never pay for them, and start-up stays short.
            upstream: Upstream::new(compiled_upstream),
            host_addrs: std::sync::OnceLock::new(),
        });
        let mut fds = fds.into_iter();
        let (proxy, dns_udp, dns_tcp) = (
            fds.next().expect("checked count"),
            fds.next().expect("checked count"),
            fds.next().expect("checked count"),
        );
        {
            let _guard = rt.enter();
            let proxy = std::net::TcpListener::from(proxy);
            let dns_udp = std::net::UdpSocket::from(dns_udp);
            let dns_tcp = std::net::TcpListener::from(dns_tcp);
            for r in [
                proxy.set_nonblocking(true),
                dns_udp.set_nonblocking(true),
                dns_tcp.set_nonblocking(true),
            ] {
                r.map_err(StartError::Register)?;
            }
            let proxy = tokio::net::TcpListener::from_std(proxy).map_err(StartError::Register)?;
            let dns_udp = tokio::net::UdpSocket::from_std(dns_udp).map_err(StartError::Register)?;
            let dns_tcp = tokio::net::TcpListener::from_std(dns_tcp).map_err(StartError::Register)?;
            rt.spawn(crate::proxy::serve(state.clone(), proxy));
            rt.spawn(crate::dns::serve_udp(state.clone(), dns_udp));
            rt.spawn(crate::dns::serve_tcp(state.clone(), dns_tcp));
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("stockade-egress".into())
            .spawn(move || {
                rt.block_on(async {
                    let _ = stopped.await;
                });
                // Dropping the runtime drops every task; each open connection logs itself then.
                drop(rt);
            })
            .map_err(StartError::Runtime)?;
        Ok(Egress {
            serving: Some((stop, thread)),
            state,
        })
    }

    /// Stops serving (open connections are cut and logged as such) and returns the log.
    pub fn finish(mut self) -> EgressLog {
        // The job is over, so its connections are closing; let them log their real end.
        let deadline = std::time::Instant::now() + DRAIN;
        while self.state.sink.active() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        self.stop();
        let (events, dropped_events) = self.state.sink.take();
        EgressLog {
            mode: self.state.policy.mode.as_str().to_string(),
            events,
            dropped_events,
        }
    }

    /// The events logged so far (for a live view or a test), without stopping.
    pub fn events_so_far(&self) -> usize {
        self.state.sink.logged()
    }

    fn stop(&mut self) {
        if let Some((stop, thread)) = self.serving.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

impl Drop for Egress {
    fn drop(&mut self) {
        self.stop();
    }
}

fn raise_nofile() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        // Best effort: without it, egress still works for fewer parallel connections.
        let _ = setrlimit(Resource::Nofile, l);
    }
}
