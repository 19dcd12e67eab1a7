//! One file per subcommand; each exposes `Args` (or `Command`) and `main`, returning the exit code.

pub mod audit;
pub mod baseline;
pub mod doctor;
pub mod gate;
pub mod gc;
pub mod github;
pub mod gitlab;
pub mod host_check;
pub mod policy;
pub mod report;
pub mod run;
