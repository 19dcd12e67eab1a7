//! Egress by name for Stockade jobs: the job's network namespace sends every TCP connection to
//! a proxy and every DNS question to a resolver, both served by the supervisor from outside.
//!
//! The sandbox calls, in this order:
//! 1. in the job's new user+network namespace (init, single-threaded, before pivot_root):
//!    [`setup_netns`], and sends the returned sockets to the supervisor;
//! 2. in the supervisor: [`Egress::start`] with those sockets, then [`Egress::finish`] after the
//!    job, which returns the [`EgressLog`] for the report and its [`EgressLog::summary`];
//! 3. for the job: [`job_env`] into its environment and [`resolv_conf`] bound read-only at
//!    /etc/resolv.conf.
//!
//! With `mode = "none"` none of this is called.
//!
//! ```no_run
//! # fn sandbox() -> Result<(), stockade_egress::EgressError> {
//! use stockade_egress::{Egress, EgressCli, EgressPolicy};
//! let mut policy = EgressPolicy::default(); // or the `egress` field of the policy file
//! policy.apply_cli(&EgressCli {
//!     mode: Some("allowlist".into()),
//!     allow_domains: vec!["@github".into(), "allowed.test:8443".into()],
//!     allow_cidrs: vec![],
//!     resolve: vec!["allowed.test=127.0.0.1".into()],
//! })?;
//! if policy.is_enabled() {
//!     let env = stockade_egress::job_env(&policy); // into the job's environment
//!     let resolv = stockade_egress::resolv_conf(&policy); // read-only at /etc/resolv.conf
//!     // In the job's init, inside its user+network namespace, lo up:
//!     let fds = stockade_egress::setup_netns(&policy)?;
//!     // ... fds travel to the supervisor over the sandbox's channel ...
//!     // The sandbox's init pid: each event then names the job process behind it.
//!     let config = stockade_egress::StartConfig { job_init_pid: Some(4242) };
//!     let egress = Egress::start(&policy, fds, config)?;
//!     // ... the job runs and ends ...
//!     let log = egress.finish();
//!     eprint!("{}", log.summary());
//!     let for_the_report = serde_json::to_value(&log);
//! #   let _ = (env, resolv, for_the_report);
//! }
//! # Ok(()) }
//! ```

mod addr;
mod dns;
mod env;
mod log;
mod names;
mod netlink;
mod netns;
mod nflog;
mod owner;
mod policy;
mod presets;
mod proxy;
mod relay;
mod sniff;
mod state;
mod supervisor;
mod upstream;

use std::os::fd::OwnedFd;

pub use addr::forbidden as forbidden_address;
pub use env::{job_env, resolv_conf};
pub use log::{EgressEvent, EgressLog, EventHook, MAX_EVENTS, MAX_PACKET_EVENTS, Protocol, Verdict, Via};
pub use netns::{DNS_ADDR, NFT_TABLE, NetnsError, PROXY_ADDR, PROXY_ADDR6};
pub use policy::{EgressCli, EgressPolicy, Mode, PolicyError};
pub use supervisor::{Egress, StartConfig, StartError};

/// Every way egress can fail; each variant names the step.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("egress policy")]
    Policy(#[from] PolicyError),
    #[error("egress setup in the job's network namespace")]
    Netns(#[from] NetnsError),
    #[error("egress start in the supervisor")]
    Start(#[from] StartError),
}

/// Sets up the job's network namespace for egress; see [`netns::setup_netns`].
/// Returns the sockets (proxy TCP, DNS UDP, DNS TCP, NFLOG, sock_diag, and the proxy's IPv6
/// listener where the namespace has IPv6) for [`Egress::start`].
pub fn setup_netns(policy: &EgressPolicy) -> Result<Vec<OwnedFd>, EgressError> {
    policy.validate()?;
    Ok(netns::setup_netns(policy)?)
}
