use anyhow::Result;

use super::{load_config, print_json};
use crate::checks::{self, Colour};
use crate::cli::{Cli, OverrideArgs};
use crate::config::Config;
use crate::doctor;
use crate::error::ChecksFailed;
use crate::live;
use crate::plan::Plan;
use crate::plan::record::{self, Expectations, RecordSource};
use crate::root::Root;

pub(crate) fn run(cli: &Cli, overrides: &OverrideArgs, json: bool, list: bool) -> Result<()> {
    if list {
        return Ok(checks::list(doctor::CHECKS, &mut std::io::stdout())?);
    }
    let root = cli.root();
    let (expected, source) = expectations(cli, overrides, &root)?;
    let report = doctor::check(expected, root, source)?;
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

/// What the plan a user's config makes for this host expects; without a config (no --config, no
/// ./passthru.toml) and without overrides, what the plan recorded on the host expects: live mode's, as it
/// changed the host after its image was made, else the running image's. Only then the embedded default's.
/// Returns the expectations and where the plan came from.
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
    let plan = Plan::resolve_to_diagnose(&config, &cli.host_target())?;
    Ok((Expectations::of(&plan), source.to_string()))
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
