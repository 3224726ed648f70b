use anyhow::Result;

use super::apply::report_live_steps;
use crate::cli::{Cli, LiveArgs};
use crate::live::revert;
use crate::live::session::{LiveHost, Privilege};

pub(crate) fn run(cli: &Cli, live: &LiveArgs) -> Result<()> {
    let host = LiveHost::new(cli.root(), &live.sysroot);
    let reverted = revert::revert(&host, Privilege::of_this_process()?)?;
    if reverted.steps_run.is_empty() && reverted.incomplete.is_none() {
        outln!("Nothing to revert: no apply is recorded.");
    }
    report_live_steps("Reverted", &reverted.steps_run, reverted.incomplete)
}
