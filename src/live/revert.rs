//! `revert`: undo exactly what `apply` recorded, nothing the user did on their own.

use anyhow::Result;
use camino::Utf8PathBuf;

use super::changes::KernelChange;
use super::deployment;
use super::files;
use super::initramfs;
use super::preflight;
use super::rpm_ostree::{Invocation, RpmOstree};
use super::state::{self, LiveState};
use crate::error::ChecksFailed;
use crate::kargs::Karg;
use crate::root::Root;

#[derive(Debug)]
pub struct Reverted {
    pub steps_run: Vec<String>,
    /// Why the revert is not complete yet, when it is not (the initramfs could not be rebuilt).
    pub incomplete: Option<&'static str>,
}

pub fn revert(root: &Root, sysroot: &Utf8PathBuf, is_root: bool) -> Result<Reverted> {
    let rpm = RpmOstree::new(sysroot);
    let _lock = preflight::check(root, &rpm, is_root)?;
    let mut record = state::load(root)?;
    let mut done = Vec::new();
    if record.is_empty() {
        return Ok(Reverted {
            steps_run: done,
            incomplete: None,
        });
    }
    let original = record.clone();
    // Each undo saves the record right after its command, keeping only what is left: a revert that fails
    // half-way can be run again and neither redoes nor trips over what is already undone.
    let result = (|| {
        undo_files(root, sysroot, &mut record, &mut done)?;
        undo_kargs(root, &rpm, &mut record, &mut done)?;
        undo_initramfs(root, sysroot, &rpm, &mut record, &mut done)?;
        undo_kernel(root, &rpm, &mut record, &mut done)?;
        initramfs::rebuild_if_stale(root, sysroot, &rpm, &mut record, &mut done)
    })();
    let incomplete = match result {
        Ok(incomplete) => incomplete,
        Err(err) => {
            return Err(err.context(format!(
                "revert stopped half-way; done: [{}]; what is left to undo stays recorded in {}: run revert again",
                done.join("; "),
                state::FILE
            )));
        }
    };
    verify(sysroot, &original)?;
    Ok(Reverted {
        steps_run: done,
        incomplete,
    })
}

/// Files first: when initramfs regeneration stays on, the next deployment must read the old /etc.
fn undo_files(
    root: &Root,
    sysroot: &Utf8PathBuf,
    record: &mut LiveState,
    done: &mut Vec<String>,
) -> Result<()> {
    if record.files.is_empty() {
        return Ok(());
    }
    // Marked before the files change: under regeneration, the pending initramfs has apply's drop-ins in it
    // until a new deployment exists (see `initramfs::rebuild_if_stale`).
    let pending = deployment::read(sysroot)?.pending;
    record.initramfs_stale_in = pending.regenerate_initramfs.then_some(pending.id);
    state::save(root, record)?;
    while let Some(file) = record.files.first().cloned() {
        match &file.backup {
            Some(backup) => {
                files::restore(root, &file.path, backup)?;
                done.push(format!("restore {} from {backup}", file.path));
            }
            None => {
                files::remove(root, &file.path)?;
                done.push(format!("remove {}", file.path));
            }
        }
        record.files.remove(0);
        state::save(root, record)?;
    }
    Ok(())
}

fn undo_kargs(
    root: &Root,
    rpm: &RpmOstree,
    record: &mut LiveState,
    done: &mut Vec<String>,
) -> Result<()> {
    if record.kargs_appended.is_empty() && record.kargs_deleted.is_empty() {
        return Ok(());
    }
    let delete: Vec<Karg> = record
        .kargs_appended
        .iter()
        .map(|k| Karg::from_host(k))
        .collect();
    let append: Vec<Karg> = record
        .kargs_deleted
        .iter()
        .map(|k| Karg::from_host(k))
        .collect();
    // One call for both, like apply; `-if-present`/`-if-missing` make it safe to repeat.
    let command = rpm.kargs(&append, &delete);
    rpm.run(&command)?;
    done.push(rpm.display(&command));
    record.kargs_appended.clear();
    record.kargs_deleted.clear();
    state::save(root, record)
}

fn undo_initramfs(
    root: &Root,
    sysroot: &Utf8PathBuf,
    rpm: &RpmOstree,
    record: &mut LiveState,
    done: &mut Vec<String>,
) -> Result<()> {
    if !record.initramfs_enabled {
        return Ok(());
    }
    // Read now, not before the kargs call: `--disable` fails when regeneration is already off (e.g. the
    // user turned it off, or an interrupted revert got this far without saving).
    if deployment::read(sysroot)?.pending.regenerate_initramfs {
        let command = rpm.initramfs(false);
        rpm.run(&command)?;
        done.push(rpm.display(&command));
    }
    record.initramfs_enabled = false;
    state::save(root, record)
}

/// Renamed packages take two commands; after the first, the record keeps the kernel change without its
/// installed packages, so a rerun goes straight to the second.
fn undo_kernel(
    root: &Root,
    rpm: &RpmOstree,
    record: &mut LiveState,
    done: &mut Vec<String>,
) -> Result<()> {
    while let Some(kernel) = record.kernel.clone() {
        let (command, left) = next_kernel_undo(rpm, &kernel);
        rpm.run(&command)?;
        done.push(rpm.display(&command));
        record.kernel = left;
        state::save(root, record)?;
    }
    Ok(())
}

/// The next command that undoes `kernel`, and what is left to undo after it.
fn next_kernel_undo(rpm: &RpmOstree, kernel: &KernelChange) -> (Invocation, Option<KernelChange>) {
    match kernel {
        KernelChange::Replace { packages } => (rpm.override_reset(&package_names(packages)), None),
        KernelChange::RemoveInstall { remove, install } if !install.is_empty() => (
            rpm.uninstall(&package_names(install)),
            Some(KernelChange::RemoveInstall {
                remove: remove.clone(),
                install: Vec::new(),
            }),
        ),
        KernelChange::RemoveInstall { remove, .. } => (rpm.override_reset(remove), None),
    }
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

/// Reads the sysroot again: nothing apply added is left, everything it removed is back.
fn verify(sysroot: &Utf8PathBuf, undone: &LiveState) -> Result<()> {
    let pending = deployment::read(sysroot)?.pending;
    let mut problems = Vec::new();
    for text in &undone.kargs_appended {
        if pending.has_karg(&Karg::from_host(text)) {
            problems.push(format!("{text} is still there"));
        }
    }
    for text in &undone.kargs_deleted {
        if !pending.has_karg(&Karg::from_host(text)) {
            problems.push(format!("{text} was not put back"));
        }
    }
    if undone.initramfs_enabled && pending.regenerate_initramfs {
        problems.push("initramfs regeneration is still on".into());
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

#[cfg(test)]
mod tests {
    use super::*;

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
