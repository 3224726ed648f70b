use anyhow::Result;

use super::{load_config, print_json};
use crate::checks::{self, Colour};
use crate::cli::{Cli, OverrideArgs};
use crate::doctor;
use crate::error::ChecksFailed;
use crate::plan::Plan;

pub fn run(cli: &Cli, overrides: &OverrideArgs, json: bool, list: bool) -> Result<()> {
    if list {
        return Ok(checks::list(doctor::CHECKS, &mut std::io::stdout())?);
    }
    let (config, source) = load_config(cli, overrides)?;
    let root = cli.root();
    let plan = Plan::resolve(&config, &cli.host_target())?;
    let report = doctor::check(plan, root, source.to_string())?;
    if json {
        print_json(&report)?;
    } else {
        outln!(
            "Checking {} against the plan from {}",
            report.root,
            report.config
        );
        checks::print(&report.checks, &mut std::io::stdout(), Colour::for_stdout())?;
    }
    match report.counts.fail {
        0 => Ok(()),
        n => Err(ChecksFailed(format!(
            "{n} of {} checks failed",
            report.checks.outcomes.len()
        ))
        .into()),
    }
}
