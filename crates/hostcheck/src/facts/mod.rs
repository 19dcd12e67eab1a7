//! Facts about the host that several checks need (processes, users, runners, packages, Docker),
//! each gathered once, on first use, and shared through `Ctx`.

pub mod docker;
pub mod dpkg;
pub mod firewall;
pub mod mounts;
pub mod procs;
pub mod runners;
pub mod sudoers;
pub mod sysctl;
pub mod units;
pub mod users;

use crate::host::Host;
use std::cell::OnceCell;

/// What the checks see: the host plus lazily gathered, shared facts.
pub struct Ctx<'h> {
    pub host: &'h Host,
    /// `--probe`: the only permission to send network traffic (to the metadata address).
    pub probe: bool,
    procs: OnceCell<Result<Vec<procs::Proc>, String>>,
    users: OnceCell<users::Users>,
    runners: OnceCell<Result<Vec<runners::Runner>, String>>,
    dpkg: OnceCell<Result<Option<dpkg::Dpkg>, String>>,
    docker_installed: OnceCell<Option<String>>,
    daemon_json: OnceCell<Result<Option<serde_json::Value>, String>>,
}

impl<'h> Ctx<'h> {
    pub fn new(host: &'h Host, probe: bool) -> Self {
        Ctx {
            host,
            probe,
            procs: OnceCell::new(),
            users: OnceCell::new(),
            runners: OnceCell::new(),
            dpkg: OnceCell::new(),
            docker_installed: OnceCell::new(),
            daemon_json: OnceCell::new(),
        }
    }

    pub fn procs(&self) -> Result<&[procs::Proc], &str> {
        self.procs
            .get_or_init(|| procs::list(self.host))
            .as_deref()
            .map_err(String::as_str)
    }

    /// Processes, or none when /proc could not be listed (the checks say so in evidence).
    pub fn procs_or_empty(&self) -> &[procs::Proc] {
        self.procs().unwrap_or(&[])
    }

    pub fn users(&self) -> &users::Users {
        self.users.get_or_init(|| users::Users::load(self.host))
    }

    pub fn runners(&self) -> Result<&[runners::Runner], &str> {
        self.runners
            .get_or_init(|| {
                let procs = self.procs().map_err(|e| format!("cannot list processes: {e}"))?;
                Ok(runners::discover(self.host, self.users(), procs))
            })
            .as_deref()
            .map_err(String::as_str)
    }

    pub fn dpkg(&self) -> Result<Option<&dpkg::Dpkg>, &str> {
        self.dpkg
            .get_or_init(|| dpkg::load(self.host))
            .as_ref()
            .map(Option::as_ref)
            .map_err(String::as_str)
    }

    /// Some(evidence) when the Docker engine is installed or running.
    pub fn docker_installed(&self) -> Option<&str> {
        self.docker_installed
            .get_or_init(|| docker::installed(self.host, self.procs_or_empty()))
            .as_deref()
    }

    pub fn daemon_json(&self) -> Result<Option<&serde_json::Value>, &str> {
        self.daemon_json
            .get_or_init(|| docker::daemon_json(self.host))
            .as_ref()
            .map(Option::as_ref)
            .map_err(String::as_str)
    }
}
