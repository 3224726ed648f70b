use anyhow::Result;
use camino::Utf8Path;

use crate::atomic;
use crate::cli::Cli;
use crate::detect::{self, Sysroot};
use crate::error::InputError;
use crate::host::pci::PciAddress;
use crate::root::UserFile;

/// What `detect` was asked to do, beyond reading the host.
pub struct Options<'a> {
    /// `--write FILE`.
    pub write: Option<&'a Utf8Path>,
    /// How an existing `--write FILE` is treated.
    pub existing: Existing,
    /// `--device ADDRESS`.
    pub device: Option<PciAddress>,
    /// `--sysroot DIR`.
    pub sysroot: Option<&'a Utf8Path>,
}

/// What `--write` does with a file that is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    Refuse,
    /// `--force`.
    Replace,
    /// `--merge`: keep the user's keys and comments, change what detection decided.
    Merge,
}

pub fn run(cli: &Cli, options: &Options) -> Result<()> {
    let root = cli.root();
    // Refuse before reading anything: an existing config is the user's work, and a config goes only where
    // the user's directory is.
    if let Some(path) = options.write {
        check_write_target(path, options.existing)?;
    }
    let into = merge_source(cli, options)?;
    let sysroot = match options.sysroot {
        Some(dir) => Sysroot::Given(dir.to_owned()),
        None => Sysroot::HostRoot(root.path().to_owned()),
    };
    let detection = detect::detect(&root, options.device, &sysroot)?;
    let text = match &into {
        Some((path, text)) => detect::merge(&detection, &root, text, path.as_str())?,
        None => detect::render(&detection, &root)?,
    };
    if !cli.quiet {
        for warning in &detection.warnings {
            eprintln!("warning: {warning}");
        }
    }
    match options.write {
        None => print!("{text}"),
        Some(path) => {
            atomic::write_file(path, "--write", text.as_bytes(), 0o644)?;
            if !cli.quiet {
                eprintln!("Wrote {path}; check it with: passthru-image --config {path} plan");
            }
        }
    }
    Ok(())
}

/// The user's config that the proposal is merged into, with its text: an existing `--write FILE` with
/// `--merge`, else `--config FILE`. Only one of them may name it.
fn merge_source<'a>(cli: &'a Cli, options: &Options<'a>) -> Result<Option<(&'a Utf8Path, String)>> {
    let merge_into = match (options.existing, options.write) {
        (Existing::Merge, Some(path)) if std::fs::symlink_metadata(path).is_ok() => Some(path),
        _ => None,
    };
    let path = match (merge_into, cli.config.as_deref()) {
        (Some(write), Some(config)) if write != config => {
            return Err(InputError::new(
                "--config",
                format!(
                    "--merge merges into --write {write}; --config names another file ({config}): give one of them"
                ),
            )
            .into());
        }
        (Some(path), _) | (None, Some(path)) => path,
        (None, None) => return Ok(None),
    };
    let field = if merge_into.is_some() {
        "--write"
    } else {
        "--config"
    };
    let text = crate::root::read_user_text(path, UserFile::Config, field)?;
    Ok(Some((path, text)))
}

/// `--write FILE` names a file in an existing directory; an existing FILE only with `--force` or `--merge`,
/// and never a directory.
fn check_write_target(path: &Utf8Path, existing: Existing) -> Result<()> {
    let bad = |what: &str| -> anyhow::Error {
        InputError::new("--write", format!("{path} {what}")).into()
    };
    let dir = path.parent().filter(|d| !d.as_str().is_empty());
    if path.file_name().is_none() || dir.is_some_and(|d| !d.is_dir()) {
        return Err(bad("is not a file in an existing directory"));
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Err(bad("is a directory; name a file")),
        Ok(_) if existing == Existing::Refuse => Err(bad(
            "exists; pass --merge to change what detect finds and keep the rest, --force to replace it, or \
             choose another file",
        )),
        _ => Ok(()),
    }
}
