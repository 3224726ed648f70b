use anyhow::{Context, Result};
use camino::Utf8Path;

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
    // Refuse before reading anything: an existing config is the user's work.
    if let Some(path) = write
        && !force
        && (path.exists() || path.is_symlink())
    {
        return Err(InputError::new(
            "--write",
            format!("{path} exists; pass --force to replace it, or choose another file"),
        )
        .into());
    }
    let detection = detect::detect(&root, device)?;
    let text = detect::render(&detection, &root)?;
    if !cli.quiet {
        for warning in &detection.warnings {
            eprintln!("warning: {warning}");
        }
    }
    match write {
        None => print!("{text}"),
        Some(path) => {
            write_atomically(path, &text)?;
            if !cli.quiet {
                eprintln!("Wrote {path}; check it with: passthru-image --config {path} plan");
            }
        }
    }
    Ok(())
}

/// Writes beside the target and renames, so an interrupted write never leaves half a config.
fn write_atomically(path: &Utf8Path, text: &str) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_str().is_empty() => dir,
        _ => Utf8Path::new("."),
    };
    if !dir.is_dir() {
        return Err(InputError::new("--write", format!("{dir} is not a directory")).into());
    }
    let file_name = path
        .file_name()
        .ok_or_else(|| InputError::new("--write", format!("{path} does not name a file")))?;
    let tmp = dir.join(format!(".{file_name}.passthru-image.tmp"));
    std::fs::write(&tmp, text).with_context(|| format!("writing {tmp}"))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {tmp} to {path}"))?;
    Ok(())
}
