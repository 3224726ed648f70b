use anyhow::Result;

use crate::cli::{Cli, LiveArgs};
use crate::live::{preflight, revert};

pub fn run(cli: &Cli, live: &LiveArgs) -> Result<()> {
    let reverted = revert::revert(&cli.root(), &live.sysroot, preflight::running_as_root()?)?;
    if reverted.steps_run.is_empty() {
        println!("Nothing to revert: no apply is recorded.");
    } else {
        println!("Reverted:");
        for step in &reverted.steps_run {
            println!("  {step}");
        }
        println!("Verified on the pending deployment. Reboot to use it.");
    }
    Ok(())
}
