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
            // write_file would create missing directories; a config goes only where the user's directory is.
            let dir = path.parent().filter(|d| !d.as_str().is_empty());
            if path.file_name().is_none() || dir.is_some_and(|d| !d.is_dir()) {
                return Err(InputError::new(
                    "--write",
                    format!("{path} is not a file in an existing directory"),
                )
                .into());
            }
            atomic::write_file(path, text.as_bytes(), 0o644)?;
            if !cli.quiet {
                eprintln!("Wrote {path}; check it with: passthru-image --config {path} plan");
            }
        }
    }
    Ok(())
}
