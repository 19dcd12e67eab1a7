//! The supervisor's side: serves the sockets `setup_netns` made inside the job's namespace,
//! from outside it, on a small tokio runtime of its own, and hands back the log at the end.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::net::{AddressFamily, SocketType, sockopt};

use crate::EgressError;
use crate::log::{EgressLog, Sink};
use crate::names::Names;
use crate::owner::Owners;
use crate::policy::{EgressPolicy, Mode, PolicyError};
use crate::state::State;
use crate::upstream::Upstream;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("egress mode is none: nothing to serve")]
    ModeNone,
    #[error("check the egress policy")]
    Policy(#[source] PolicyError),
    #[error(
        "expected 5 or 6 sockets from setup_netns (proxy, DNS UDP, DNS TCP, NFLOG, sock_diag, IPv6 proxy), got {0}"
    )]
    FdCount(usize),
    #[error("socket {index} from setup_netns is not a {expected}")]
    FdKind { index: usize, expected: &'static str },
    #[error("start the egress runtime")]
    Runtime(#[source] std::io::Error),
    #[error("serve the socket from setup_netns")]
    Register(#[source] std::io::Error),
}

/// What the supervisor knows about the job besides its sockets.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartConfig {
    /// A process that stays in the job's network namespace while the job runs (the sandbox's
    /// init, as the supervisor's pid namespace numbers it): with it, each event names the job
    /// process that made the attempt. `None`: events carry no pid.
    pub job_init_pid: Option<i32>,
}

/// How long `finish` waits for connections that are closing to log themselves.
const DRAIN: Duration = Duration::from_millis(300);

/// Egress being served for one job. `finish` stops it and returns the log.
pub struct Egress {
    serving: Option<(tokio::sync::oneshot::Sender<()>, std::thread::JoinHandle<()>)>,
    state: Arc<State>,
}

/// How long a connection's first reply waits for the lookup of its process at most; the lookup
/// normally takes well under a millisecond and runs while upstream is being connected.
pub const OWNER_WAIT: Duration = Duration::from_millis(250);

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
    if ty == SocketType::RAW && sockopt::socket_domain(fd).map_err(|_| bad())? != AddressFamily::NETLINK {
        return Err(bad());
    }
    if listening && !sockopt::socket_acceptconn(fd).map_err(|_| bad())? {
        return Err(bad());
    }
    Ok(())
}

impl Egress {
    /// Serves the sockets returned by `setup_netns` (same order). Call it in the supervisor,
    /// outside the job's namespaces; it starts one thread, which serves everything (and at the
    /// first attempt one that finds the job process behind each, see `StartConfig`). Raises
    /// this process's soft open-files limit to its hard limit: every relayed connection holds
    /// two sockets and two pipes.
    pub fn start(policy: &EgressPolicy, fds: Vec<OwnedFd>, config: StartConfig) -> Result<Egress, EgressError> {
        if policy.mode == Mode::None {
            return Err(StartError::ModeNone.into());
        }
        let compiled = policy.compile().map_err(StartError::Policy)?;
        if !(5..=6).contains(&fds.len()) {
            return Err(StartError::FdCount(fds.len()).into());
        }
        expect_kind(&fds, 0, SocketType::STREAM, true, "listening TCP socket")?;
        expect_kind(&fds, 1, SocketType::DGRAM, false, "UDP socket")?;
        expect_kind(&fds, 2, SocketType::STREAM, true, "listening TCP socket")?;
        expect_kind(&fds, 3, SocketType::RAW, false, "netlink socket")?;
        expect_kind(&fds, 4, SocketType::RAW, false, "netlink socket")?;
        if fds.len() == 6 {
            expect_kind(&fds, 5, SocketType::STREAM, true, "listening TCP socket")?;
        }
        let compiled_upstream = compiled.upstream.clone();
        let mut fds = fds.into_iter();
        let (proxy, dns_udp, dns_tcp, nflog, diag, proxy6) = (
            fds.next().expect("checked count"),
            fds.next().expect("checked count"),
            fds.next().expect("checked count"),
            fds.next().expect("checked count"),
            Some(fds.next().expect("checked count")),
            fds.next(),
        );
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
            owners: Owners::new(config.job_init_pid, diag),
        });
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
            // The netlink socket only needs the reactor's readiness, and receives through
            // rustix: a tokio UdpSocket is the safe owner of that registration (AsyncFd is
            // unsafe to construct, and this crate has no unsafe).
            let nflog = std::net::UdpSocket::from(nflog);
            nflog.set_nonblocking(true).map_err(StartError::Register)?;
            let nflog = tokio::net::UdpSocket::from_std(nflog).map_err(StartError::Register)?;
            rt.spawn(crate::proxy::serve(state.clone(), proxy));
            if let Some(proxy6) = proxy6 {
                let proxy6 = std::net::TcpListener::from(proxy6);
                proxy6.set_nonblocking(true).map_err(StartError::Register)?;
                let proxy6 = tokio::net::TcpListener::from_std(proxy6).map_err(StartError::Register)?;
                rt.spawn(crate::proxy::serve(state.clone(), proxy6));
            }
            rt.spawn(crate::nflog::serve(state.clone(), nflog));
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
        // Every attempt is logged now; its process lookup may still be queued.
        self.state.owners.barrier();
        self.state.owners.stop();
        let (events, dropped_events, dropped_packets) = self.state.sink.take();
        EgressLog {
            mode: self.state.policy.mode.as_str().to_string(),
            events,
            dropped_events,
            dropped_packets,
        }
    }

    /// Hands each event to `hook` as it is logged (those logged before the call first), on the
    /// thread that serves egress: keep it short.
    pub fn on_event(&self, hook: crate::log::EventHook) {
        self.state.sink.set_hook(hook);
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
