//! The CLI's exit statuses, in one place (the README and `skynet submit --help` list them).

use std::process::ExitCode;

/// The job succeeded, or the command did what it was asked.
pub const OK: u8 = 0;
/// Something went wrong (NATS unreachable, an unknown job, a refusal by the server).
pub const FAILURE: u8 = 1;
/// A usage or configuration error: the message names the flag.
pub const USAGE: u8 = skynet_runtime::EXIT_CONFIG;
/// The job was rejected, or `submit --wait` refused an id that is already a job.
pub const REJECTED: u8 = 65;
/// `submit --wait` stopped watching (Ctrl-C); the job goes on.
pub const DETACHED: u8 = 75;
/// Policy or a person denied the job.
pub const DENIED: u8 = 77;
/// The job ran past its time limit.
pub const TIMED_OUT: u8 = 124;
/// The job was cancelled.
pub const CANCELLED: u8 = 130;

/// The table `submit --help` ends with.
pub const TABLE: &str = "\
Exit status with --wait:
  0    the job succeeded
  N    the job failed: the exit code of its failing step
  1    the job failed without an exit code, or skynet itself failed
  64   a usage error (the message names the flag)
  65   the job was rejected, or its --id is already a job (use --attach to watch it)
  75   detached: Ctrl-C stopped watching, the job goes on (skynet logs -f ID)
  77   the job was denied
  124  the job timed out
  130  the job was cancelled";

/// An error that ends the CLI with a given status.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl Exit {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

pub fn code(c: u8) -> ExitCode {
    ExitCode::from(c)
}
