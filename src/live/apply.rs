//! `apply`: bring the pending deployment to the plan with the fewest rpm-ostree transactions, record what was
//! done, and verify the result by reading the sysroot again.

use anyhow::{Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use super::changes::{
    self, Changes, DeployedInitramfs, FileChange, HostConflicts, InitramfsRebuild, KernelChange,
};
use super::deployment::{self, HostState};
use super::files;
use super::initramfs;
use super::preflight;
use super::rpm_ostree::{Invocation, Regeneration, RpmOstree};
use super::session::{LiveHost, Privilege, Session};
use super::state::{self, FileRecord, LiveState};
use crate::atomic;
use crate::cmd::Completion;
use crate::error::ChecksFailed;
use crate::kargs::HostKarg;
use crate::plan::Plan;
use crate::plan::record::PlanRecord;
use crate::root::Root;

/// One thing apply does, in the order it does them: files first (initramfs regeneration reads /etc), then
/// kargs, then initramfs, then the kernel. Each rpm-ostree call stacks on the pending deployment.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case", tag = "step")]
pub(crate) enum Step {
    WriteFile(FileChange),
    Kargs {
        append: Vec<HostKarg>,
        delete: Vec<HostKarg>,
        command: Invocation,
    },
    EnableInitramfs {
        command: Invocation,
    },
    /// Regeneration was on already: rebuild so the initramfs reads the new drop-ins. Changes no setting.
    RebuildInitramfs {
        command: Invocation,
    },
    Kernel {
        change: KernelChange,
        command: Invocation,
    },
}

impl Step {
    /// Whether the step is an rpm-ostree transaction (which stacks on the pending deployment).
    fn runs_rpm_ostree(&self) -> bool {
        !matches!(self, Step::WriteFile(_))
    }

    pub(crate) fn describe(&self, rpm: &RpmOstree) -> String {
        match self {
            Step::WriteFile(f) => format!(
                "write {} ({:04o}{})",
                f.path,
                f.mode,
                if f.replaces_existing {
                    ", replaces the existing file, backed up"
                } else {
                    ", new"
                }
            ),
            Step::Kargs { command, .. }
            | Step::EnableInitramfs { command }
            | Step::RebuildInitramfs { command }
            | Step::Kernel { command, .. } => rpm.display(command),
        }
    }
}

/// What apply would do: `--dry-run` prints it, apply carries it out.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Proposal {
    pub(crate) sysroot: Utf8PathBuf,
    pub(crate) pending: String,
    /// The running deployment, when the sysroot is booted.
    pub(crate) booted: Option<String>,
    #[serde(flatten)]
    pub(crate) changes: Changes,
    pub(crate) steps: Vec<Step>,
}

/// Reads the host and works out the steps. Changes nothing.
pub(crate) fn propose(plan: &Plan, host: &LiveHost, conflicts: HostConflicts) -> Result<Proposal> {
    propose_on(plan, host, conflicts, &state::load(&host.root)?)
}

/// [`propose`] with the record already read. Every file the steps write (the drop-ins, their backups, the
/// record) is checked to be writable without following a symlink, so a bad tree is refused before any write.
fn propose_on(
    plan: &Plan,
    host: &LiveHost,
    conflicts: HostConflicts,
    record: &LiveState,
) -> Result<Proposal> {
    let (root, rpm) = (&host.root, &host.rpm);
    let deployments = deployment::read(&host.sysroot)?;
    let changes = changes::compute(plan, &deployments.pending, root, conflicts, record)?;
    atomic::check_host_file(root, Utf8Path::new(state::FILE))?;
    for file in &changes.files {
        atomic::check_host_file(root, &file.path)?;
        atomic::check_host_file(root, &files::backup_path(&file.path))?;
    }
    let mut steps: Vec<Step> = changes.files.iter().cloned().map(Step::WriteFile).collect();
    if changes.needs_kargs_transaction() {
        steps.push(Step::Kargs {
            append: changes.append.clone(),
            delete: changes.delete.clone(),
            command: rpm.kargs(&changes.append, &changes.delete),
        });
    }
    if changes.enable_initramfs {
        steps.push(Step::EnableInitramfs {
            command: rpm.initramfs(Regeneration::Enable),
        });
    }
    if let Some(InitramfsRebuild::Rerun { args }) = &changes.rebuild_initramfs {
        steps.push(Step::RebuildInitramfs {
            command: rpm.initramfs_rerun(args),
        });
    }
    if let Some(kernel) = &changes.kernel {
        let command = match kernel {
            KernelChange::Replace { packages } => rpm.override_replace(packages),
            KernelChange::RemoveInstall { remove, install } => {
                rpm.override_remove_install(remove, install)
            }
        };
        steps.push(Step::Kernel {
            change: kernel.clone(),
            command,
        });
    }
    Ok(Proposal {
        sysroot: host.sysroot.clone(),
        pending: deployments.pending.id.clone(),
        booted: deployments.booted.as_ref().map(|b| b.id.clone()),
        changes,
        steps,
    })
}

/// The outcome of a completed apply.
#[derive(Debug)]
pub(crate) struct Applied {
    pub(crate) steps_run: Vec<String>,
    pub(crate) warnings: Vec<String>,
    /// Why the change is not complete yet, when it is not (the initramfs could not be rebuilt).
    pub(crate) incomplete: Option<&'static str>,
    /// The initramfs the deployment shipped does the job: regeneration stays off.
    pub(crate) deployed_initramfs_suffices: bool,
}

pub(crate) fn apply(
    plan: &Plan,
    host: &LiveHost,
    conflicts: HostConflicts,
    privilege: Privilege,
) -> Result<Applied> {
    let root = &host.root;
    deployment::check_sysroot(&host.sysroot)?;
    preflight::check_host(root, privilege)?;
    // Everything is read and checked before anything is written (the lock file included): bad input changes
    // nothing.
    let read = state::load(root)?;
    let proposal = propose_on(plan, host, conflicts, &read)?;
    let _lock = preflight::lock_when_idle(root, &host.rpm)?;
    // Another rpm-ostree client, or another passthru-image run before we held the lock, may have changed the
    // host since the proposal was read: then it is stale, and nothing may be written from it.
    let mut session = Session::new(host, state::load(root)?);
    if session.record != read {
        bail!(
            "{} changed since apply read it (another passthru-image run?); nothing was changed: \
             run apply again",
            root.join(state::FILE)
        );
    }
    let mut expected = Pending::read_as(host, &proposal.pending)?;
    let regenerated = proposal.changes.deployed_initramfs == DeployedInitramfs::Regenerated;
    if !proposal.changes.files.is_empty() && regenerated {
        // Saved before the files change: if no later step makes a new deployment (it fails, or there is
        // none), the next apply still knows this deployment's initramfs lacks the drop-ins.
        session.record.initramfs_stale_in = Some(proposal.pending.clone());
        session.save_record()?;
    }
    for (i, step) in proposal.steps.iter().enumerate() {
        let ran = expected
            .check_before(step, host)
            .and_then(|()| run_step(step, &mut session));
        let described = step.describe(&host.rpm);
        match ran {
            Ok(StepResult::Changed) => {
                session.done.push(described);
                if step.runs_rpm_ostree() {
                    expected = Pending::made_by_us(host)?;
                }
            }
            Ok(StepResult::Unchanged) => session.done.push(format!(
                "{described} (nothing changed: the host already had it)"
            )),
            Err(err) => {
                let not_done: Vec<String> = proposal.steps[i..]
                    .iter()
                    .map(|s| s.describe(&host.rpm))
                    .collect();
                return Err(err.context(half_way_report(root, &session.done, &not_done)));
            }
        }
    }
    // Whatever ran, the pending deployment must not be the one whose initramfs predates the drop-ins; when it
    // still is and cannot be rebuilt, this says why the change is not complete.
    let incomplete = expected
        .check_unchanged(host)
        .and_then(|()| initramfs::rebuild_if_stale(&mut session))
        .map_err(|err| {
            let not_done = ["rebuild of the initramfs for the new drop-ins".to_owned()];
            err.context(half_way_report(root, &session.done, &not_done))
        })?;
    verify(plan, &deployment::read(&host.sysroot)?, &proposal.changes)?;
    // Kept with what apply did, for `doctor` without a config (gone again once nothing is left to undo).
    session.record.plan = Some(PlanRecord::of(plan));
    session.save_record()?;
    Ok(Applied {
        steps_run: session.done,
        deployed_initramfs_suffices: proposal.changes.deployed_initramfs
            == DeployedInitramfs::Suffices,
        warnings: proposal.changes.warnings,
        incomplete,
    })
}

/// The pending deployment apply expects to find: the one the proposal was computed on, then the one each of
/// its own rpm-ostree steps made. Another client's deployment in between (rpm-ostree stacks every change on
/// the pending one) would make the rest of the proposal wrong, so apply stops before its next write.
struct Pending {
    id: String,
    /// How it came to be expected, for the message.
    origin: &'static str,
}

impl Pending {
    /// The proposal's deployment, checked to still be the pending one.
    fn read_as(host: &LiveHost, proposed: &str) -> Result<Pending> {
        let pending = Pending {
            id: proposed.to_owned(),
            origin: "apply read",
        };
        pending.check_unchanged(host)?;
        Ok(pending)
    }

    /// What our own last rpm-ostree step made.
    fn made_by_us(host: &LiveHost) -> Result<Pending> {
        Ok(Pending {
            id: host.pending()?.id,
            origin: "apply's last step made",
        })
    }

    /// Re-reads the sysroot before a step that calls rpm-ostree; other steps need no reading.
    fn check_before(&self, step: &Step, host: &LiveHost) -> Result<()> {
        match step.runs_rpm_ostree() {
            true => self.check_unchanged(host),
            false => Ok(()),
        }
    }

    fn check_unchanged(&self, host: &LiveHost) -> Result<()> {
        let now = host.pending()?.id;
        if now != self.id {
            bail!(
                "the pending deployment changed while apply ran: it is now {now}, not {} (which \
                 {}); another rpm-ostree client made a deployment. Nothing more was changed from \
                 the old reading: run apply again, it starts from the new deployment",
                self.id,
                self.origin
            );
        }
        Ok(())
    }
}

fn half_way_report(root: &Root, done: &[String], not_done: &[String]) -> String {
    let list = |items: &[String]| {
        if items.is_empty() {
            "  (nothing)\n".to_owned()
        } else {
            items.iter().map(|s| format!("  {s}\n")).collect()
        }
    };
    format!(
        "apply stopped half-way.\nApplied (recorded in {}):\n{}Not applied:\n{}\
         Run apply again to finish, or revert to undo what was applied",
        root.join(state::FILE),
        list(done),
        list(not_done)
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepResult {
    Changed,
    /// rpm-ostree exited 77: the host already was as asked.
    Unchanged,
}

/// Runs one step and records it, so the state file is right whichever step fails next.
fn run_step(step: &Step, session: &mut Session) -> Result<StepResult> {
    let (root, rpm, record) = (&session.host.root, &session.host.rpm, &mut session.record);
    match step {
        Step::WriteFile(file) => {
            if record.file(&file.path).is_none() {
                // The first time we touch this path: keep what the user had, to put it back on revert.
                let backup = match root.exists(&file.path) {
                    true => Some(files::back_up(root, &file.path)?),
                    false => None,
                };
                record.files.push(FileRecord {
                    path: file.path.clone(),
                    backup,
                });
                state::save(root, record)?;
            }
            crate::atomic::write_host_file(root, &file.path, file.content.as_bytes(), file.mode)?;
            Ok(StepResult::Changed)
        }
        Step::Kargs {
            append,
            delete,
            command,
        } => {
            if rpm.run(command)? == Completion::Unchanged {
                // Exit 77: the host already had what we asked for (someone else changed it since we read it),
                // so none of it is ours to undo.
                return Ok(StepResult::Unchanged);
            }
            // Record only what the new deployment really shows as changed.
            let pending = session.host.pending()?;
            for karg in delete.iter().filter(|k| !pending.has_host_karg(k)) {
                // Deleting a karg an earlier apply added undoes that apply; anything else was the user's.
                if let Some(pos) = record.kargs_appended.iter().position(|k| k == karg) {
                    record.kargs_appended.remove(pos);
                } else if !record.kargs_deleted.contains(karg) {
                    record.kargs_deleted.push(karg.clone());
                }
            }
            for karg in append.iter().filter(|k| pending.has_host_karg(k)) {
                if !record.kargs_appended.contains(karg) {
                    record.kargs_appended.push(karg.clone());
                }
            }
            state::save(root, record)?;
            Ok(StepResult::Changed)
        }
        Step::EnableInitramfs { command } => {
            rpm.run(command)?;
            record.initramfs_enabled = true;
            state::save(root, record)?;
            Ok(StepResult::Changed)
        }
        Step::RebuildInitramfs { command } => {
            // Nothing to record: the origin keeps the settings it had, so revert has nothing to undo.
            rpm.run(command)?;
            Ok(StepResult::Changed)
        }
        Step::Kernel { change, command } => {
            rpm.run(command)?;
            record.kernel = Some(change.clone());
            state::save(root, record)?;
            Ok(StepResult::Changed)
        }
    }
}

/// Reads back what the next boot gets: every planned karg, no contradicting one, initramfs regeneration on
/// unless the deployed initramfs already carries the VFIO drivers.
fn verify(plan: &Plan, host: &HostState, changes: &Changes) -> Result<()> {
    let pending = &host.pending;
    let mut problems = Vec::new();
    for karg in &plan.kargs {
        if !pending.has_karg(karg) {
            problems.push(format!("kernel argument {karg} is missing"));
        }
    }
    for rival in &pending.kargs {
        if let Some(conflict) = plan.kargs.conflict_with(rival) {
            problems.push(format!("{rival} is still there: {}", conflict.reason));
        }
    }
    if !pending.regenerate_initramfs && changes.deployed_initramfs != DeployedInitramfs::Suffices {
        problems.push("initramfs regeneration is off".into());
    }
    if let Some(kernel) = &plan.kernel
        && changes::kernel_change(&kernel.source, pending)?.is_some()
    {
        problems.push("the ACS kernel packages are not in the origin's overrides".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ChecksFailed(format!(
            "after apply, the pending deployment {} of {} does not match the plan: {}",
            pending.id,
            host.sysroot,
            problems.join("; ")
        ))
        .into())
    }
}
