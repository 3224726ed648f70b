use anyhow::Result;

use super::{load_config, print_json};
use crate::checks::{self, Colour};
use crate::cli::{Cli, DoctorArgs};
use crate::config::Config;
use crate::doctor;
use crate::error::ChecksFailed;
use crate::live;
use crate::plan::Plan;
use crate::plan::record::{self, Expectations, RecordSource};
use crate::root::Root;
use crate::verbosity::Verbosity;

pub(crate) fn run(cli: &Cli, args: &DoctorArgs) -> Result<()> {
    if args.list_checks {
        return Ok(checks::list(doctor::CHECKS, &mut std::io::stdout())?);
    }
    let root = args.root.root();
    let (expected, source) = expectations(args, &root)?;
    let report = doctor::check(expected, root, source)?;
    if args.json {
        print_json(&report)?;
    } else if cli.verbosity() == Verbosity::Quiet {
        // Only what needs doing: the failed checks and their fixes.
        checks::print(
            &report.checks.failures(),
            &mut std::io::stdout(),
            Colour::for_stdout(),
        )?;
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
/// PASSTHRU_CONFIG, no ./passthru.toml) and without overrides, what the plan recorded on the host expects: live
/// mode's, as it changed the host after its image was made, else the running image's. Only then the embedded
/// default's. Returns the expectations and where the plan came from.
fn expectations(args: &DoctorArgs, root: &Root) -> Result<(Expectations, String)> {
    if !Config::given(args.config.file())
        && args.overrides.is_empty()
        && let Some((recorded, from)) = recorded_plan(root)?
    {
        return Ok((
            recorded.expect,
            format!("{from} (made by {})", recorded.made_by),
        ));
    }
    let (config, source) = load_config(&args.config, &args.overrides.overrides())?;
    let plan = Plan::resolve_to_diagnose(&config, &args.root.target())?;
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
