use anyhow::Result;

use super::apply::Report;
use crate::cli::{Cli, RevertArgs};
use crate::live::revert;
use crate::live::session::{LiveHost, Privilege};

pub(crate) fn run(cli: &Cli, args: &RevertArgs) -> Result<()> {
    let host = LiveHost::new(args.root.root(), &args.live.sysroot);
    let reverted = revert::revert(&host, Privilege::of_this_process()?)?;
    let report = Report::for_run(cli.verbosity());
    if reverted.steps_run.is_empty() && reverted.incomplete.is_none() {
        report.line("Nothing to revert: no apply is recorded.")?;
    }
    report.live_steps("Reverted", &reverted.steps_run, reverted.incomplete)
}
