use anyhow::Result;
use serde::Serialize;

use super::{load_config, print_json};
use crate::cli::{Cli, OverrideArgs};
use crate::config::Config;
use crate::doctor;
use crate::error::ChecksFailed;
use crate::live;
use crate::plan::Plan;
use crate::plan::record::{self, RecordSource};
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
    let (plan, source) = plan_to_check(cli, overrides, &root)?;
    // virt-host-validate looks at the machine it runs on, so only when that machine is the one checked.
    let extra = match root.path() == "/" {
        true => doctor::virt_host_validate().into_iter().collect(),
        false => Vec::new(),
    };
    let report = doctor::check(&plan, &root, extra)?;
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

/// The plan a user's config makes for this host; without a config (no --config, no ./passthru.toml) and
/// without overrides, the plan recorded on the host: live mode's, as it changed the host after its image was
/// made, else the running image's. Only then the embedded default. Returns the plan and where it came from.
fn plan_to_check(cli: &Cli, overrides: &OverrideArgs, root: &Root) -> Result<(Plan, String)> {
    if !Config::given(cli.config.as_deref())
        && overrides.is_empty()
        && let Some((recorded, from)) = recorded_plan(root)?
    {
        return Ok((
            recorded.plan,
            format!("{from} (made by {})", recorded.made_by),
        ));
    }
    let (config, source) = load_config(cli, overrides)?;
    Ok((
        Plan::resolve(&config, &cli.host_target())?,
        format!("the plan from {source}"),
    ))
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
