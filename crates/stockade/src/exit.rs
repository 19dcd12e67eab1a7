//! The documented exit codes, in one place, so that `--help`, the README and `main` agree.

/// `stockade run` could not set the job up: bad policy, a failed setup step.
pub const SETUP_FAILED: i32 = 125;
/// The job hit its --timeout.
pub const TIMEOUT: i32 = 124;
/// The command exists but could not be executed.
pub const NOT_EXECUTABLE: i32 = 126;
/// The command was not found.
pub const NOT_FOUND: i32 = 127;
/// `--mode block` stopped (or failed) the job on a detection; a job that exits 120 by itself
/// in block mode makes stockade exit 1 instead, so 120 always means a block.
pub const BLOCKED: i32 = 120;
/// The job's pool refused it (`stockade gate`, `run --pool/--context`, `github job-started`):
/// the job never started.
pub const REFUSED: i32 = 123;

/// `audit` and `host-check`: nothing at or above --fail-on.
pub const CLEAN: i32 = 0;
/// `audit` and `host-check`: findings at or above --fail-on.
pub const FINDINGS: i32 = 1;
/// `audit` and `host-check`: a usage or I/O error.
pub const USAGE_OR_IO: i32 = 2;

pub const HELP: &str = "\
Exit codes of `stockade run`:
  N        the job's own exit status
  128+N    the job was killed by signal N
  123      --context: the job's pool refused it; the job never started (the message names
           the rule)
  124      the job hit its --timeout
  125      stockade itself failed (bad policy or a setup step; the message names the step)
  126      the command was found but is not executable
  127      the command was not found
  120      --mode block: a detection at or above --block-at stopped the job (or, found at
           its end, failed it); a job's own exit 120 becomes 1 in block mode
Exit codes of `stockade gate` and `stockade github job-started`:
  0 admitted; 123 refused by the pool (the reason names the rule); 125 bad policy, context,
  pool or input (the message names the file and field)
Exit codes of `stockade gitlab config|prepare|run|cleanup`: gitlab-runner's own contract:
  0; $BUILD_FAILURE_EXIT_CODE for a failed script or a refused job (never retried);
  $SYSTEM_FAILURE_EXIT_CODE for an infrastructure failure or bad input
Exit codes of `stockade audit` and `stockade host-check`:
  0 nothing at or above --fail-on; 1 findings; 2 usage or I/O error
Exit codes of `stockade report` and `stockade baseline`:
  0 done; 1 (report --fail-on) a detection at or above the severity; 2 bad input or I/O error";
