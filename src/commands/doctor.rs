use anyhow::Result;

use super::{load_config, print_json};
use crate::cli::{Cli, OverrideArgs};
use crate::doctor;
use crate::error::ChecksFailed;
use crate::plan::Plan;

pub fn run(cli: &Cli, overrides: &OverrideArgs, json: bool) -> Result<()> {
    let (config, source) = load_config(cli, overrides)?;
    let root = cli.root();
    let plan = Plan::resolve(&config, &cli.host_target())?;
    // virt-host-validate looks at the machine it runs on, so only when that machine is the one checked.
    let extra = match root.path() == "/" {
        true => doctor::virt_host_validate().into_iter().collect(),
        false => Vec::new(),
    };
    let report = doctor::check(&plan, &root, extra)?;
    if json {
        print_json(&report)?;
    } else {
        outln!("Checking {} against the plan from {source}", root.path());
        for check in &report.checks {
            outln!("{}  {}: {}", check.status.label(), check.name, check.detail);
            if let Some(fix) = &check.fix {
                outln!("      fix: {fix}");
            }
        }
    }
    match report.failures() {
        0 => Ok(()),
        n => Err(ChecksFailed(format!("{n} of {} checks failed", report.checks.len())).into()),
    }
}
