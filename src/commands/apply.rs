use anyhow::Result;

use super::{load_config, print_json};
use crate::cli::{ApplyArgs, Cli};
use crate::error::Incomplete;
use crate::live::apply::{self, Proposal};
use crate::live::changes::{self, DeployedInitramfs, HostConflicts, InitramfsRebuild};
use crate::live::rpm_ostree::RpmOstree;
use crate::live::session::{LiveHost, Privilege};
use crate::plan::Plan;
use crate::verbosity::Verbosity;

pub(crate) fn run(cli: &Cli, args: &ApplyArgs) -> Result<()> {
    let (config, _source) = load_config(&args.config, &args.overrides.overrides())?;
    let host = LiveHost::new(args.root.root(), &args.live.sysroot);
    let plan = Plan::resolve(&config, &args.root.target())?;
    for warning in &plan.warnings {
        warnln!("{warning}");
    }
    for note in &plan.notes {
        noteln!("{note}");
    }
    let conflicts = match args.replace_conflicts {
        true => HostConflicts::Replace,
        false => HostConflicts::Refuse,
    };
    if args.dry_run {
        let proposal = apply::propose(&plan, &host, conflicts)?;
        return match args.json {
            true => print_json(&proposal),
            false => print_proposal(&proposal, &host.rpm),
        };
    }
    let applied = apply::apply(&plan, &host, conflicts, Privilege::of_this_process()?)?;
    for warning in &applied.warnings {
        warnln!("{warning}");
    }
    let report = Report::for_run(cli.verbosity());
    if applied.deployed_initramfs_suffices {
        report.line(INITRAMFS_SUFFICES)?;
    }
    if applied.steps_run.is_empty() {
        report.line("Nothing to change: the pending deployment already carries the plan.")?;
    }
    report.live_steps("Applied", &applied.steps_run, applied.incomplete)
}

const INITRAMFS_SUFFICES: &str = "The deployed initramfs already holds the VFIO drivers, and \
     rd.driver.pre=vfio-pci loads them first: no client-side regeneration, so the host stays \
     upgradable with `bootc upgrade`.";

/// How `apply` and `revert` report what they did on stdout: in full, or with `-q` not at all (an incomplete
/// change is an error, and errors always print).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Report {
    Full,
    Silent,
}

impl Report {
    pub(super) fn for_run(verbosity: Verbosity) -> Report {
        match verbosity {
            Verbosity::Quiet => Report::Silent,
            _ => Report::Full,
        }
    }

    pub(super) fn line(self, text: &str) -> Result<()> {
        if self == Report::Full {
            outln!("{text}");
        }
        Ok(())
    }

    /// Prints what `apply` or `revert` ran and how it ended. An incomplete change is returned as the error, so
    /// it exits 3 with its reason on stderr.
    pub(super) fn live_steps(
        self,
        heading: &str,
        steps: &[String],
        incomplete: Option<&str>,
    ) -> Result<()> {
        if !steps.is_empty() {
            self.line(&format!("{heading}:"))?;
            for step in steps {
                self.line(&format!("  {step}"))?;
            }
            self.line("Verified on the pending deployment.")?;
        }
        if let Some(why) = incomplete {
            return Err(Incomplete(why.to_owned()).into());
        }
        if !steps.is_empty() {
            self.line("Reboot to use it.")?;
        }
        Ok(())
    }
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
            "The deployed initramfs will not do ({why}): rpm-ostree regenerates it client-side."
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
