//! `revert`: undo exactly what `apply` recorded, nothing the user did on their own.

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};

use super::changes::KernelChange;
use super::deployment::{self, DeploymentState};
use super::files;
use super::initramfs;
use super::preflight;
use super::rpm_ostree::Regeneration;
use super::session::{LiveHost, Privilege, Session};
use super::state::{self, LiveState};
use crate::atomic;
use crate::error::ChecksFailed;
use crate::root::Root;

#[derive(Debug)]
pub(crate) struct Reverted {
    pub(crate) steps_run: Vec<String>,
    /// Why the revert is not complete yet, when it is not (the initramfs could not be rebuilt).
    pub(crate) incomplete: Option<&'static str>,
}

pub(crate) fn revert(host: &LiveHost, privilege: Privilege) -> Result<Reverted> {
    let root = &host.root;
    deployment::check_sysroot(&host.sysroot)?;
    preflight::check_host(root, privilege)?;
    // The record is input: read and checked before anything is written (the lock file included), so a record
    // apply did not write changes nothing.
    load_checked(root)?;
    let _lock = preflight::lock_when_idle(root, &host.rpm)?;
    // Again under the lock: another run may have changed it since.
    let record = load_checked(root)?;
    if record.is_empty() {
        return Ok(Reverted {
            steps_run: Vec::new(),
            incomplete: None,
        });
    }
    let original = record.clone();
    let expected_files = expected_files(root, &record)?;
    let mut session = Session::new(host, record);
    // Being undone: the plan no longer describes the host, whichever step ends the revert.
    session.record.plan = None;
    // Each undo saves the record right after its command, keeping only what is left: a revert that fails
    // half-way can be run again and neither redoes nor trips over what is already undone.
    let result = (|| {
        undo_files(&mut session)?;
        undo_kargs(&mut session)?;
        undo_initramfs(&mut session)?;
        undo_kernel(&mut session)?;
        initramfs::rebuild_if_stale(&mut session)
    })();
    let incomplete = match result {
        Ok(incomplete) => incomplete,
        Err(err) => {
            return Err(err.context(format!(
                "revert stopped half-way; done: [{}]; what is left to undo stays recorded in {}: \
                 run revert again",
                session.done.join("; "),
                state::FILE
            )));
        }
    };
    verify(host, &original, &expected_files)?;
    Ok(Reverted {
        steps_run: session.done,
        incomplete,
    })
}

/// The record, validated, and every file it names reachable without following a symlink: revert writes the
/// files and the record back, removes the backups, and reads nothing outside the root.
fn load_checked(root: &Root) -> Result<LiveState> {
    let record = state::load(root)?;
    atomic::check_host_file(root, Utf8Path::new(state::FILE))?;
    for file in &record.files {
        atomic::check_host_file(root, &file.path)?;
        if let Some(backup) = &file.backup {
            atomic::check_host_file(root, backup)?;
        }
    }
    Ok(record)
}

/// Files first: when initramfs regeneration stays on, the next deployment must read the old /etc.
fn undo_files(session: &mut Session) -> Result<()> {
    if session.record.files.is_empty() {
        return Ok(());
    }
    let root = &session.host.root;
    // Marked before the files change: under regeneration, the pending initramfs has apply's drop-ins in it
    // until a new deployment exists (see `initramfs::rebuild_if_stale`).
    let pending = session.host.pending()?;
    session.record.initramfs_stale_in = pending.regenerate_initramfs.then_some(pending.id);
    session.save_record()?;
    while let Some(file) = session.record.files.first().cloned() {
        match &file.backup {
            // Restored already: a revert that stopped between restoring (which removes the copy) and saving
            // the record.
            Some(backup) if !root.exists(backup) && root.exists(&file.path) => {}
            Some(backup) => {
                files::restore(root, &file.path, backup)?;
                session
                    .done
                    .push(format!("restore {} from {backup}", file.path));
            }
            None => {
                files::remove(root, &file.path)?;
                session.done.push(format!("remove {}", file.path));
            }
        }
        session.record.files.remove(0);
        session.save_record()?;
    }
    Ok(())
}

fn undo_kargs(session: &mut Session) -> Result<()> {
    let record = &session.record;
    if record.kargs_appended.is_empty() && record.kargs_deleted.is_empty() {
        return Ok(());
    }
    // One call for both, like apply; `-if-present`/`-if-missing` make it safe to repeat.
    let command = session
        .host
        .rpm
        .kargs(&record.kargs_deleted, &record.kargs_appended);
    session.run_listed(&command)?;
    session.record.kargs_appended.clear();
    session.record.kargs_deleted.clear();
    session.save_record()
}

fn undo_initramfs(session: &mut Session) -> Result<()> {
    if !session.record.initramfs_enabled {
        return Ok(());
    }
    // Read now, not before the kargs call: `--disable` fails when regeneration is already off (e.g. the
    // user turned it off, or an interrupted revert got this far without saving).
    if session.host.pending()?.regenerate_initramfs {
        let command = session.host.rpm.initramfs(Regeneration::Disable);
        session.run_listed(&command)?;
    }
    session.record.initramfs_enabled = false;
    session.save_record()
}

/// One transaction undoes the kernel change: for renamed packages, `override reset` of the base packages
/// with `--uninstall` of the installed ones.
fn undo_kernel(session: &mut Session) -> Result<()> {
    let Some(kernel) = &session.record.kernel else {
        return Ok(());
    };
    let rpm = &session.host.rpm;
    let command = match kernel {
        KernelChange::Replace { packages } => rpm.override_reset(&package_names(packages), &[]),
        KernelChange::RemoveInstall { remove, install } => {
            rpm.override_reset(remove, &package_names(install))
        }
    };
    session.run_listed(&command)?;
    session.record.kernel = None;
    session.save_record()
}

fn package_names(files: &[Utf8PathBuf]) -> Vec<String> {
    files.iter().map(|p| package_name(p)).collect()
}

/// The package name of an RPM file named `name-version-release.arch.rpm`.
fn package_name(file: &camino::Utf8Path) -> String {
    let stem = file
        .file_name()
        .unwrap_or_default()
        .trim_end_matches(".rpm");
    let mut parts = stem.rsplitn(3, '-');
    let (_release_arch, _version) = (parts.next(), parts.next());
    parts.next().unwrap_or(stem).to_owned()
}

/// What each file apply touched must hold after revert: the backed-up bytes, or nothing. Read before
/// the revert, which removes the backups; a backup already gone was restored by an earlier, interrupted
/// revert, and its file is left out.
fn expected_files(root: &Root, record: &LiveState) -> Result<Vec<(Utf8PathBuf, Option<Vec<u8>>)>> {
    let mut expected = Vec::new();
    for file in &record.files {
        match &file.backup {
            None => expected.push((file.path.clone(), None)),
            Some(backup) => {
                if let Some(copy) = root.read_bytes_optional(backup)? {
                    expected.push((file.path.clone(), Some(copy.bytes)));
                }
            }
        }
    }
    Ok(expected)
}

/// Reads the host again: nothing apply added is left, everything it removed or replaced is back.
fn verify(
    host: &LiveHost,
    undone: &LiveState,
    expected_files: &[(Utf8PathBuf, Option<Vec<u8>>)],
) -> Result<()> {
    let root = &host.root;
    let pending = host.pending()?;
    let mut problems = Vec::new();
    for (path, expected) in expected_files {
        let actual = root.read_bytes_optional(path)?.map(|file| file.bytes);
        match (expected, actual) {
            (None, Some(_)) => problems.push(format!("{path} is still there")),
            (Some(_), None) => problems.push(format!("{path} was not restored")),
            (Some(want), Some(got)) if *want != got => {
                problems.push(format!("{path} differs from the copy apply kept"))
            }
            _ => {}
        }
    }
    for karg in &undone.kargs_appended {
        if pending.has_host_karg(karg) {
            problems.push(format!("{karg} is still there"));
        }
    }
    for karg in &undone.kargs_deleted {
        if !pending.has_host_karg(karg) {
            problems.push(format!("{karg} was not put back"));
        }
    }
    if undone.initramfs_enabled && pending.regenerate_initramfs {
        problems.push("initramfs regeneration is still on".into());
    }
    if let Some(kernel) = &undone.kernel {
        problems.extend(kernel_leftovers(kernel, &pending));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ChecksFailed(format!(
            "after revert, the pending deployment {} does not match: {}",
            pending.id,
            problems.join("; ")
        ))
        .into())
    }
}

/// The overrides of `kernel` that the pending deployment's origin still carries.
fn kernel_leftovers(kernel: &KernelChange, pending: &DeploymentState) -> Vec<String> {
    let still_listed = |files: &[Utf8PathBuf], list: &[String]| -> Vec<String> {
        files
            .iter()
            .filter_map(|file| file.file_name()?.strip_suffix(".rpm"))
            .filter(|nevra| deployment::lists_local_package(list, nevra))
            .map(|nevra| format!("the kernel package {nevra} is still overridden"))
            .collect()
    };
    match kernel {
        KernelChange::Replace { packages } => still_listed(packages, &pending.replaced_local),
        KernelChange::RemoveInstall { remove, install } => {
            let mut left = still_listed(install, &pending.requested_local);
            left.extend(
                remove
                    .iter()
                    .filter(|name| pending.removed.contains(name))
                    .map(|name| format!("the base package {name} is still removed")),
            );
            left
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending_with(replaced: &[&str], removed: &[&str], requested: &[&str]) -> DeploymentState {
        let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        DeploymentState {
            osname: "fedora".into(),
            id: "abc.1".into(),
            kargs: Vec::new(),
            regenerate_initramfs: false,
            initramfs_args: Vec::new(),
            initramfs_etc: Vec::new(),
            dir: "/nonexistent/deploy".into(),
            container_image: None,
            replaced_local: strings(replaced),
            removed: strings(removed),
            requested_local: strings(requested),
        }
    }

    #[test]
    fn kernel_overrides_left_after_revert_are_named() {
        let replace = KernelChange::Replace {
            packages: vec!["/srv/kernel-core-6.11.4-301.acs.fc41.x86_64.rpm".into()],
        };
        let still = pending_with(&["0a1b:kernel-core-6.11.4-301.acs.fc41.x86_64"], &[], &[]);
        assert_eq!(
            kernel_leftovers(&replace, &still),
            ["the kernel package kernel-core-6.11.4-301.acs.fc41.x86_64 is still overridden"]
        );
        // Another package of the same name is not ours.
        let other = pending_with(&["0a1b:kernel-core-6.12.0-1.fc41.x86_64"], &[], &[]);
        assert!(kernel_leftovers(&replace, &other).is_empty());

        let renamed = KernelChange::RemoveInstall {
            remove: vec!["kernel".into(), "kernel-core".into()],
            install: vec!["/srv/kernel-acs-6.11.4-1.fc41.x86_64.rpm".into()],
        };
        let half = pending_with(&[], &["kernel-core"], &[]);
        assert_eq!(
            kernel_leftovers(&renamed, &half),
            ["the base package kernel-core is still removed"]
        );
        assert!(kernel_leftovers(&renamed, &pending_with(&[], &[], &[])).is_empty());
    }

    #[test]
    fn package_names_come_from_rpm_file_names() {
        assert_eq!(
            package_name("/srv/kernel-core-6.11.4-301.acs.fc41.x86_64.rpm".into()),
            "kernel-core"
        );
        assert_eq!(
            package_name("kernel-6.11.4-301.fc41.x86_64.rpm".into()),
            "kernel"
        );
    }
}
