use anyhow::Result;
use serde::Serialize;

use super::{load_config, print_json};
use crate::cli::{Cli, OverrideArgs};
use crate::config::Config;
use crate::doctor;
use crate::error::ChecksFailed;
use crate::live;
use crate::plan::Plan;
use crate::plan::record::{self, Expectations, RecordSource};
use crate::root::Root;

/// `doctor --json`: the checks, and which plan they were made against.
#[derive(Serialize)]
struct Output<'a> {
    plan_from: String,
    #[serde(flatten)]
    report: &'a doctor::Report,
}

pub fn run(cli: &Cli, overrides: &OverrideArgs, json: bool) -> Result<()> {
    let root = cli.root();
    let (expected, source) = expectations(cli, overrides, &root)?;
    // virt-host-validate looks at the machine it runs on, so only when that machine is the one checked.
    let extra = match root.path() == "/" {
        true => doctor::virt_host_validate().into_iter().collect(),
        false => Vec::new(),
    };
    let report = doctor::check(&expected, &root, extra)?;
    if json {
        print_json(&Output {
            plan_from: source,
            report: &report,
        })?;
    } else {
        println!("Checking {} against {source}", root.path());
        for check in &report.checks {
            println!("{}  {}: {}", check.status.label(), check.name, check.detail);
            if let Some(fix) = &check.fix {
                println!("      fix: {fix}");
            }
        }
    }
    match report.failures() {
        0 => Ok(()),
        n => Err(ChecksFailed(format!("{n} of {} checks failed", report.checks.len())).into()),
    }
}

/// What the plan a user's config makes for this host expects; without a config (no --config, no
/// ./passthru.toml) and without overrides, what the plan recorded on the host expects: live mode's, as it
/// changed the host after its image was made, else the running image's. Only then the embedded default's.
/// Returns the expectations and the plan they come from.
fn expectations(
    cli: &Cli,
    overrides: &OverrideArgs,
    root: &Root,
) -> Result<(Expectations, String)> {
    if !Config::given(cli.config.as_deref())
        && overrides.is_empty()
        && let Some((recorded, from)) = recorded_plan(root)?
    {
        return Ok((
            recorded.expect,
            format!("{from} (made by {})", recorded.made_by),
        ));
    }
    let (config, source) = load_config(cli, overrides)?;
    let plan = Plan::resolve(&config, &cli.host_target())?;
    Ok((Expectations::of(&plan), format!("the plan from {source}")))
}

fn recorded_plan(root: &Root) -> Result<Option<(record::PlanRecord, RecordSource)>> {
    if let Some(plan) = live::state::load(root)?.plan {
        return Ok(Some((
            plan,
            RecordSource::LiveState(root.join(live::state::FILE)),
        )));
    }
    Ok(record::read_image_record(root)?
        .map(|plan| (plan, RecordSource::Image(root.join(record::PLAN_FILE)))))
}
