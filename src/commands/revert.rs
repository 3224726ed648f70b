use anyhow::Result;

use crate::cli::{Cli, LiveArgs};
use crate::error::Incomplete;
use crate::live::{preflight, revert};

pub fn run(cli: &Cli, live: &LiveArgs) -> Result<()> {
    let reverted = revert::revert(&cli.root(), &live.sysroot, preflight::running_as_root()?)?;
    if reverted.steps_run.is_empty() && reverted.incomplete.is_none() {
        println!("Nothing to revert: no apply is recorded.");
    } else if !reverted.steps_run.is_empty() {
        println!("Reverted:");
        for step in &reverted.steps_run {
            println!("  {step}");
        }
        println!("Verified on the pending deployment.");
    }
    match reverted.incomplete {
        Some(why) => Err(Incomplete(why.to_string()).into()),
        None => {
            if !reverted.steps_run.is_empty() {
                println!("Reboot to use it.");
            }
            Ok(())
        }
    }
}
