use anyhow::Result;

use super::apply::report_live_steps;
use crate::cli::{Cli, LiveArgs};
use crate::live::{preflight, revert};

pub(crate) fn run(cli: &Cli, live: &LiveArgs) -> Result<()> {
    let reverted = revert::revert(&cli.root(), &live.sysroot, preflight::running_as_root()?)?;
    if reverted.steps_run.is_empty() && reverted.incomplete.is_none() {
        outln!("Nothing to revert: no apply is recorded.");
    }
    report_live_steps("Reverted", &reverted.steps_run, reverted.incomplete)
}
