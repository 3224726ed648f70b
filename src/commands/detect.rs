use anyhow::Result;
use camino::Utf8Path;
use serde::Serialize;

use super::print_json;
use crate::atomic;
use crate::cli::Cli;
use crate::config::{Config, Switch};
use crate::detect::{self, Decided, Detection, Sysroot};
use crate::error::InputError;
use crate::host::pci::PciAddress;
use crate::host::topology::{GpuReport, HostNeeds, Topology};
use crate::plan::host_safety::{self, Taken};
use crate::root::{Root, UserFile};

/// What `detect` was asked to do, beyond reading the host.
pub(crate) struct Options<'a> {
    /// `--write FILE`.
    pub(crate) write: Option<&'a Utf8Path>,
    /// How an existing `--write FILE` is treated.
    pub(crate) existing: Existing,
    /// `--device ADDRESS`.
    pub(crate) device: Option<PciAddress>,
    /// `--sysroot DIR`.
    pub(crate) sysroot: Option<&'a Utf8Path>,
    /// `--json`.
    pub(crate) json: bool,
}

/// What `--write` does with a file that is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Existing {
    Refuse,
    /// `--force`.
    Replace,
    /// `--merge`: keep the user's keys and comments, change what detection decided.
    Merge,
}

pub(crate) fn run(cli: &Cli, options: &Options) -> Result<()> {
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
    let mut detection = detect::detect(&root, options.device, &sysroot)?;
    withdraw_what_the_host_needs(&mut detection, &root)?;
    let text = match &into {
        Some((path, text)) => detect::merge(&detection, &root, text, path.as_str())?,
        None => detect::render(&detection, &root)?,
    };
    let json = options.json;
    if !cli.quiet && !json {
        for warning in &detection.warnings {
            errln!("warning: {warning}");
        }
    }
    if let Some(path) = options.write {
        atomic::write_file(path, "--write", text.as_bytes(), 0o644)?;
        if !cli.quiet && !json {
            errln!("Wrote {path}; check it with: passthru-image --config {path} plan");
        }
    }
    match (json, options.write) {
        (true, _) => print_json(&DetectReport {
            config: &detection.config,
            toml: &text,
            gpu: detection.gpu.as_ref(),
            findings: &detection.findings,
            warnings: &detection.warnings,
            written: options.write,
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
    /// The proposed config, as `plan --config` would read the TOML (without `--merge`'s other keys).
    config: &'a Config,
    /// The proposed passthru.toml, comments included (with --merge or --config: the user's file with it).
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
/// and the warnings say why and how to take them anyway. A merge then leaves the user's devices alone.
fn withdraw_what_the_host_needs(detection: &mut Detection, root: &Root) -> Result<()> {
    let ids = detection.config.vfio.ids.clone();
    let addresses = detection.config.vfio.addresses.clone();
    if ids.is_empty() && addresses.is_empty() {
        return Ok(());
    }
    let topology = Topology::read(root)?;
    let needs = HostNeeds::read(root, &topology)?;
    let taken = Taken {
        ids: &ids,
        addresses: &addresses,
    };
    let judgement = host_safety::judge(&topology, &needs, &taken, &detection.config.accept_risk);
    if judgement.refusals.is_empty() {
        return Ok(());
    }
    let mut keys: Vec<&str> = judgement.refusals.iter().map(|r| r.risk.key()).collect();
    keys.dedup();
    for refusal in &judgement.refusals {
        detection.warnings.push(format!(
            "not proposed for {}: {}",
            refusal.field, refusal.reason
        ));
    }
    detection.warnings.push(format!(
        "vfio.ids and vfio.addresses are left empty; to pass these devices anyway: {} and {}",
        listed(&ids, &addresses),
        keys.iter()
            .map(|k| format!("{k} = true"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let config = &mut detection.config;
    config.vfio.ids.clear();
    config.vfio.addresses.clear();
    config.gpu.vendors.clear();
    config.vendor_reset.enabled = Switch::Auto;
    detection.decided.retain(|d| {
        !matches!(
            d,
            Decided::VfioDevices | Decided::GpuVendors | Decided::VendorReset
        )
    });
    Ok(())
}

/// `vfio.ids = [...]` and `vfio.addresses = [...]`, the ones that are not empty.
fn listed(ids: &[crate::pci_id::PciId], addresses: &[PciAddress]) -> String {
    let quoted = |items: Vec<String>| {
        items
            .iter()
            .map(|i| format!("\"{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut keys = Vec::new();
    if !ids.is_empty() {
        keys.push(format!(
            "vfio.ids = [{}]",
            quoted(ids.iter().map(ToString::to_string).collect())
        ));
    }
    if !addresses.is_empty() {
        keys.push(format!(
            "vfio.addresses = [{}]",
            quoted(addresses.iter().map(ToString::to_string).collect())
        ));
    }
    keys.join(", ")
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
