//! Errors that decide the exit code.
//!
//! Everything the user can get wrong (config, flags, device IDs, paths, host files) is an [`InputError`]:
//! it names the field and what is allowed, and `main` maps it to exit code 2. Every other error (an external
//! program failed, a check failed) exits 1. A live change that ran but could not finish the job (the
//! initramfs cannot be rebuilt from here) is [`Incomplete`], exit 3, so scripts cannot mistake it for success.

use std::fmt;

/// Bad input from the user: exit code 2, nothing written or changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// The config key, flag or file the bad value came from, e.g. `vfio.ids[1]` or `--vfio-ids`.
    pub field: String,
    /// What is wrong and what is allowed.
    pub(crate) message: String,
}

impl InputError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for InputError {}

/// A check ran and failed (doctor, verify after apply, test-boot): exit code 1, the report says why.
#[derive(Debug)]
pub(crate) struct ChecksFailed(pub(crate) String);

impl fmt::Display for ChecksFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ChecksFailed {}

/// `apply`/`revert` did what they could and the host is consistent, but a step is left to the user
/// (the message says which): exit code 3.
#[derive(Debug)]
pub(crate) struct Incomplete(pub(crate) String);

impl fmt::Display for Incomplete {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NOT COMPLETE: {}", self.0)
    }
}

impl std::error::Error for Incomplete {}

/// Exit codes of the command-line contract.
pub(crate) const EXIT_FAILED: i32 = 1;
pub(crate) const EXIT_BAD_INPUT: i32 = 2;
pub(crate) const EXIT_INCOMPLETE: i32 = 3;
/// Stopped by a caught Ctrl-C or SIGTERM after cleaning up (see `interrupt`), as a shell reports SIGINT.
pub const EXIT_INTERRUPTED: i32 = 130;

/// The exit code for an error: 2 when anything in its chain is bad input, 3 when the error is that a live
/// change is incomplete, else 1. (After a caught signal `main` exits 130 whatever the error.)
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.chain().any(|cause| cause.is::<InputError>()) {
        EXIT_BAD_INPUT
    } else if err.chain().any(|cause| cause.is::<Incomplete>()) {
        EXIT_INCOMPLETE
    } else {
        EXIT_FAILED
    }
}

/// Writes a line to stderr. A failed write is dropped: stderr is where it would be reported, so there is
/// nowhere left to say it (and `eprintln!` would panic).
pub fn stderr_line(line: impl fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_error_anywhere_in_the_chain_exits_2() {
        let err = anyhow::Error::new(InputError::new("cpu.vendor", "expected intel, amd or auto"))
            .context("loading passthru.toml");
        assert_eq!(exit_code(&err), EXIT_BAD_INPUT);
        assert_eq!(exit_code(&anyhow::anyhow!("podman failed")), EXIT_FAILED);
        let incomplete = anyhow::Error::new(Incomplete("regenerate the initramfs".into()));
        assert_eq!(exit_code(&incomplete), EXIT_INCOMPLETE);
    }
}
