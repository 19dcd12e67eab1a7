//! Every way a sandbox can fail to start or to end cleanly, one variant per step, with the cause.
//! The binary maps all of them to exit code 125 and prints them on one line.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("stockade must fork the sandbox while single-threaded, but {0} threads run")]
    Threaded(usize),
    #[error("job directory {path}: {source}")]
    JobDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("workspace {path}: {source}")]
    Workspace {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cgroup {path}: {source}")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("clone (new namespaces): {0}")]
    Clone(#[source] io::Error),
    #[error("user namespace map {file}: {source}")]
    UserMap {
        file: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("channel to the sandbox: {0}")]
    Channel(#[source] io::Error),
    #[error("inside the sandbox, {step}: {message}")]
    Setup { step: String, message: String },
    #[error("the sandbox's init died before reporting the job's status")]
    InitDied,
    #[error("waiting for the job: {0}")]
    Wait(#[source] io::Error),
    #[error("signal handling: {0}")]
    Signals(#[source] io::Error),
}

/// An error inside the sandbox's own processes, sent to the supervisor as data.
#[derive(Debug)]
pub struct StepError {
    pub step: String,
    pub source: io::Error,
}

impl StepError {
    pub fn new(step: impl Into<String>, source: io::Error) -> Self {
        StepError {
            step: step.into(),
            source,
        }
    }
}

/// Attaches the step's name to an io::Result, for code running inside the sandbox.
pub trait Step<T> {
    fn step(self, step: impl FnOnce() -> String) -> Result<T, StepError>;
}

impl<T> Step<T> for io::Result<T> {
    fn step(self, step: impl FnOnce() -> String) -> Result<T, StepError> {
        self.map_err(|e| StepError::new(step(), e))
    }
}
