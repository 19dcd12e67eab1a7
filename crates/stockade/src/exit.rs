//! The documented exit codes, in one place, so that `--help`, the README and `main` agree.

/// `stockade run` could not set the job up: bad policy, a failed setup step.
pub const SETUP_FAILED: i32 = 125;
/// The job hit its --timeout.
pub const TIMEOUT: i32 = 124;
/// The command exists but could not be executed.
pub const NOT_EXECUTABLE: i32 = 126;
/// The command was not found.
pub const NOT_FOUND: i32 = 127;

pub const HELP: &str = "\
Exit codes of `stockade run`:
  N        the job's own exit status
  128+N    the job was killed by signal N
  124      the job hit its --timeout
  125      stockade itself failed (bad policy or a setup step; the message names the step)
  126      the command was found but is not executable
  127      the command was not found
Exit codes of `stockade audit` and `stockade host-check`:
  0 nothing at or above --fail-on; 1 findings; 2 usage or I/O error";
