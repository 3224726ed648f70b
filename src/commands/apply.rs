use anyhow::Result;

use super::{load_config, print_json};
use crate::cli::{Cli, LiveArgs, OverrideArgs};
use crate::error::Incomplete;
use crate::live::apply::{self, Proposal};
use crate::live::changes::{self, DeployedInitramfs, HostConflicts, InitramfsRebuild};
use crate::live::rpm_ostree::RpmOstree;
use crate::live::session::{LiveHost, Privilege};
use crate::plan::Plan;

/// What `apply` does with the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// `--dry-run`: show what it would do, as text or (`--json`) as JSON.
    Propose(Output),
    Apply,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    Text,
    Json,
}

pub(crate) fn run(
    cli: &Cli,
    overrides: &OverrideArgs,
    live: &LiveArgs,
    action: Action,
    conflicts: HostConflicts,
) -> Result<()> {
    let (config, _source) = load_config(cli, overrides)?;
    let host = LiveHost::new(cli.root(), &live.sysroot);
    let plan = Plan::resolve(&config, &cli.host_target())?;
    for warning in &plan.warnings {
        errln!("warning: {warning}");
    }
    for note in &plan.notes {
        errln!("note: {note}");
    }
    if let Action::Propose(output) = action {
        let proposal = apply::propose(&plan, &host, conflicts)?;
        return match output {
            Output::Json => print_json(&proposal),
            Output::Text => print_proposal(&proposal, &host.rpm),
        };
    }
    let applied = apply::apply(&plan, &host, conflicts, Privilege::of_this_process()?)?;
    for warning in &applied.warnings {
        errln!("warning: {warning}");
    }
    if applied.deployed_initramfs_suffices {
        outln!("{INITRAMFS_SUFFICES}");
    }
    if applied.steps_run.is_empty() {
        outln!("Nothing to change: the pending deployment already carries the plan.");
    }
    report_live_steps("Applied", &applied.steps_run, applied.incomplete)
}

const INITRAMFS_SUFFICES: &str = "The deployed initramfs already holds the VFIO drivers, and rd.driver.pre=vfio-pci \
     loads them first: no client-side regeneration, so the host stays upgradable with `bootc upgrade`.";

/// Prints what `apply` or `revert` ran and how it ended. An incomplete change is returned as the error, so
/// it exits 3 with its reason on stderr.
pub(super) fn report_live_steps(
    heading: &str,
    steps: &[String],
    incomplete: Option<&str>,
) -> Result<()> {
    if !steps.is_empty() {
        outln!("{heading}:");
        for step in steps {
            outln!("  {step}");
        }
        outln!("Verified on the pending deployment.");
    }
    if let Some(why) = incomplete {
        return Err(Incomplete(why.to_owned()).into());
    }
    if !steps.is_empty() {
        outln!("Reboot to use it.");
    }
    Ok(())
}

fn print_proposal(p: &Proposal, rpm: &RpmOstree) -> Result<()> {
    outln!("Pending deployment: {} (sysroot {})", p.pending, p.sysroot);
    if let Some(booted) = &p.booted {
        outln!("Booted deployment: {booted}");
    }
    outln!("Planned kernel arguments:");
    for karg in &p.changes.kargs {
        outln!("  {karg}");
    }
    for conflict in &p.changes.conflicts {
        let keep = conflict
            .keep
            .as_ref()
            .map(|k| format!(", keeping {k}"))
            .unwrap_or_default();
        outln!("Conflict, removed: {}{keep}", conflict.describe());
    }
    if let DeployedInitramfs::Lacks(why) = &p.changes.deployed_initramfs {
        outln!(
            "The deployed initramfs will not do ({why}): rpm-ostree regenerates it on this host."
        );
    }
    if p.changes.deployed_initramfs == DeployedInitramfs::Suffices {
        outln!("{INITRAMFS_SUFFICES}");
    }
    for warning in &p.changes.warnings {
        outln!("Warning: {warning}");
    }
    if p.changes.rebuild_initramfs == Some(InitramfsRebuild::NotPossible) {
        outln!(
            "NOT COMPLETE after apply: {}.",
            changes::INITRAMFS_NOT_REBUILT
        );
    }
    if p.steps.is_empty() {
        outln!("Nothing to change: the pending deployment already carries the plan.");
        return Ok(());
    }
    outln!("Would run, in order:");
    for step in &p.steps {
        outln!("  {}", step.describe(rpm));
    }
    for step in &p.steps {
        if let apply::Step::WriteFile(file) = step {
            outln!("--- {}", file.path);
            out!("{}", file.content);
        }
    }
    Ok(())
}
