//! One file per subcommand; each exposes `Args` (or `Command`) and `main`, returning the exit code.

pub mod doctor;
pub mod gc;
pub mod policy;
pub mod run;
