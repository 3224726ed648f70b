//! What every step of a live-mode run works on: the host's files, its ostree sysroot and the rpm-ostree that
//! changes it ([`LiveHost`]), and, while `apply` or `revert` holds the lock, the record of what is done
//! ([`Session`]).

use std::os::unix::fs::MetadataExt;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use super::deployment::{self, DeploymentState};
use super::rpm_ostree::{Invocation, RpmOstree};
use super::state::{self, LiveState};
use crate::cmd::Completion;
use crate::root::Root;

/// Whether this process may change the host: live mode changes it only as the superuser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Privilege {
    Superuser,
    Unprivileged,
}

impl Privilege {
    /// This process's: /proc/self belongs to the effective user.
    pub(crate) fn of_this_process() -> Result<Privilege> {
        let uid = std::fs::metadata("/proc/self")
            .context("reading /proc/self")?
            .uid();
        Ok(match uid {
            0 => Privilege::Superuser,
            _ => Privilege::Unprivileged,
        })
    }
}

/// The host a live-mode command reads and changes.
#[derive(Debug, Clone)]
pub(crate) struct LiveHost {
    /// The host's filesystem, where /etc and /run are: `--root` (`/` on the host itself).
    pub(crate) root: Root,
    /// The ostree sysroot whose deployments rpm-ostree changes: `--sysroot`.
    pub(crate) sysroot: Utf8PathBuf,
    /// rpm-ostree, pointed at that sysroot.
    pub(crate) rpm: RpmOstree,
}

impl LiveHost {
    pub(crate) fn new(root: Root, sysroot: &Utf8Path) -> LiveHost {
        LiveHost {
            root,
            sysroot: sysroot.to_owned(),
            rpm: RpmOstree::new(sysroot),
        }
    }

    /// The pending deployment as the sysroot has it now.
    pub(crate) fn pending(&self) -> Result<DeploymentState> {
        Ok(deployment::read(&self.sysroot)?.pending)
    }
}

/// One `apply` or `revert` under the lock: the host, the record as it stands (saved after each step, so it
/// is right whichever step fails next), and what ran so far, for the report.
#[derive(Debug)]
pub(crate) struct Session<'h> {
    pub(crate) host: &'h LiveHost,
    pub(crate) record: LiveState,
    pub(crate) done: Vec<String>,
}

impl<'h> Session<'h> {
    pub(crate) fn new(host: &'h LiveHost, record: LiveState) -> Session<'h> {
        Session {
            host,
            record,
            done: Vec::new(),
        }
    }

    pub(crate) fn save_record(&self) -> Result<()> {
        state::save(&self.host.root, &self.record)
    }

    /// Runs an rpm-ostree command and lists it among what ran.
    pub(crate) fn run_listed(&mut self, command: &Invocation) -> Result<Completion> {
        let completion = self.host.rpm.run(command)?;
        self.done.push(self.host.rpm.display(command));
        Ok(completion)
    }
}
