use anyhow::Result;
use camino::Utf8Path;

use crate::atomic;
use crate::cli::Cli;
use crate::detect;
use crate::error::InputError;
use crate::host::pci::PciAddress;

pub fn run(
    cli: &Cli,
    write: Option<&Utf8Path>,
    force: bool,
    device: Option<PciAddress>,
) -> Result<()> {
    let root = cli.root();
    // Refuse before reading anything: an existing config is the user's work, and a config goes only where
    // the user's directory is.
    if let Some(path) = write {
        check_write_target(path, force)?;
    }
    let detection = detect::detect(&root, device)?;
    let text = detect::render(&detection, &root)?;
    if !cli.quiet {
        for warning in &detection.warnings {
            errln!("warning: {warning}");
        }
    }
    match write {
        None => out!("{text}"),
        Some(path) => {
            atomic::write_file(path, "--write", text.as_bytes(), 0o644)?;
            if !cli.quiet {
                errln!("Wrote {path}; check it with: passthru-image --config {path} plan");
            }
        }
    }
    Ok(())
}

/// `--write FILE` names a file in an existing directory; an existing FILE only with `--force`, and never a
/// directory.
fn check_write_target(path: &Utf8Path, force: bool) -> Result<()> {
    let bad = |what: &str| -> anyhow::Error {
        InputError::new("--write", format!("{path} {what}")).into()
    };
    let dir = path.parent().filter(|d| !d.as_str().is_empty());
    if path.file_name().is_none() || dir.is_some_and(|d| !d.is_dir()) {
        return Err(bad("is not a file in an existing directory"));
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Err(bad("is a directory; name a file")),
        Ok(_) if !force => Err(bad(
            "exists; pass --force to replace it, or choose another file",
        )),
        _ => Ok(()),
    }
}
