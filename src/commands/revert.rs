use anyhow::Result;

use super::apply::Report;
use crate::cli::{Cli, RevertArgs};
use crate::live::{preflight, revert};

pub fn run(cli: &Cli, args: &RevertArgs) -> Result<()> {
    let reverted = revert::revert(
        &args.root.root(),
        &args.live.sysroot,
        preflight::running_as_root()?,
    )?;
    let report = Report::for_run(cli.verbosity());
    if reverted.steps_run.is_empty() && reverted.incomplete.is_none() {
        report.line("Nothing to revert: no apply is recorded.")?;
    }
    report.live_steps("Reverted", &reverted.steps_run, reverted.incomplete)
}
