use anyhow::Result;
use camino::Utf8Path;
use serde::Serialize;

use super::print_json;
use crate::atomic;
use crate::cli::Cli;
use crate::config::{Config, Switch};
use crate::detect::{self, Detection};
use crate::error::InputError;
use crate::host::pci::PciAddress;
use crate::host::topology::{GpuReport, HostNeeds, Topology};
use crate::plan::host_safety::{self, Taken};
use crate::root::Root;

pub fn run(
    cli: &Cli,
    write: Option<&Utf8Path>,
    force: bool,
    device: Option<PciAddress>,
    json: bool,
) -> Result<()> {
    let root = cli.root();
    // Refuse before reading anything: an existing config is the user's work, and a config goes only where
    // the user's directory is.
    if let Some(path) = write {
        check_write_target(path, force)?;
    }
    let mut detection = detect::detect(&root, device)?;
    withdraw_what_the_host_needs(&mut detection, &root)?;
    let text = detect::render(&detection, &root)?;
    if !cli.quiet && !json {
        for warning in &detection.warnings {
            errln!("warning: {warning}");
        }
    }
    if let Some(path) = write {
        atomic::write_file(path, "--write", text.as_bytes(), 0o644)?;
        if !cli.quiet && !json {
            errln!("Wrote {path}; check it with: passthru-image --config {path} plan");
        }
    }
    match (json, write) {
        (true, _) => print_json(&DetectReport {
            config: &detection.config,
            toml: &text,
            gpu: detection.gpu.as_ref(),
            findings: &detection.findings,
            warnings: &detection.warnings,
            written: write,
        }),
        (false, None) => {
            out!("{text}");
            Ok(())
        }
        (false, Some(_)) => Ok(()),
    }
}

/// The `detect --json` document.
#[derive(Serialize)]
struct DetectReport<'a> {
    /// The proposed config, as `plan --config` would read the TOML.
    config: &'a Config,
    /// The proposed passthru.toml, comments included.
    toml: &'a str,
    /// The GPU detect chose to pass, whether or not the host can give it up.
    gpu: Option<&'a GpuReport>,
    findings: &'a [String],
    warnings: &'a [String],
    /// Where `--write` put the TOML.
    written: Option<&'a Utf8Path>,
}

/// detect proposes what `plan` on the same host accepts: the devices the host cannot give up (its only display,
/// its root disk, its keyboard's USB controller, a twin of the host's own card) are withdrawn from the proposal,
/// and the warnings say why and how to take them anyway.
fn withdraw_what_the_host_needs(detection: &mut Detection, root: &Root) -> Result<()> {
    let ids = detection.config.vfio.ids.clone();
    if ids.is_empty() {
        return Ok(());
    }
    let topology = Topology::read(root)?;
    let needs = HostNeeds::read(root, &topology)?;
    let taken = Taken {
        ids: &ids,
        addresses: &[],
    };
    let judgement = host_safety::judge(&topology, &needs, &taken, &detection.config.accept_risk);
    if judgement.refusals.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = ids.iter().map(|id| format!("\"{id}\"")).collect();
    let mut keys: Vec<&str> = judgement.refusals.iter().map(|r| r.risk.key()).collect();
    keys.dedup();
    for refusal in &judgement.refusals {
        detection
            .warnings
            .push(format!("not proposed for vfio.ids: {}", refusal.reason));
    }
    detection.warnings.push(format!(
        "vfio.ids is left empty; to pass these devices anyway: vfio.ids = [{}] and {}",
        listed.join(", "),
        keys.iter()
            .map(|k| format!("{k} = true"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let config = &mut detection.config;
    config.vfio.ids.clear();
    config.gpu.vendors.clear();
    config.vendor_reset.enabled = Switch::Auto;
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
