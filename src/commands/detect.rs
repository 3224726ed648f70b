use anyhow::Result;
use camino::Utf8Path;
use serde::Serialize;

use super::{Destination, print_json};
use crate::atomic;
use crate::cli::DetectArgs;
use crate::config::{Config, ConfigFile, Switch};
use crate::detect::{self, Decided, Detection, Sysroot};
use crate::error::InputError;
use crate::host::pci::PciAddress;
use crate::host::topology::{GpuReport, HostNeeds, Topology};
use crate::plan::host_safety::{self, Taken};
use crate::root::Root;

/// What `--write` does with a file that is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    Refuse,
    /// `--force`.
    Replace,
    /// `--merge`: keep the user's keys and comments, change what detection decided.
    Merge,
}

impl Existing {
    fn of(args: &DetectArgs) -> Existing {
        match (args.force, args.merge) {
            (true, _) => Existing::Replace,
            (_, true) => Existing::Merge,
            _ => Existing::Refuse,
        }
    }
}

pub(crate) fn run(args: &DetectArgs) -> Result<()> {
    let root = args.root.root();
    let destination = Destination::of(args.write.as_deref());
    destination.refuse_for_stdout("--force", args.force)?;
    destination.refuse_for_stdout("--merge", args.merge)?;
    let existing = Existing::of(args);
    // Refuse before reading anything: an existing config is the user's work, and a config goes only where
    // the user's directory is.
    if let Destination::File(path) = destination {
        check_write_target(path, existing)?;
    }
    let into = merge_source(args, destination, existing)?;
    let sysroot = match &args.sysroot {
        Some(dir) => Sysroot::Given(dir.to_owned()),
        None => Sysroot::HostRoot(root.path().to_owned()),
    };
    let mut detection = detect::detect(&root, args.device, &sysroot)?;
    withdraw_what_the_host_needs(&mut detection, &root)?;
    let text = match &into {
        Some((origin, text)) => detect::merge(&detection, &root, text, origin)?,
        None => detect::render(&detection, &root)?,
    };
    let json = args.json;
    // With --json the warnings are in the document.
    if !json {
        for warning in &detection.warnings {
            warnln!("{warning}");
        }
    }
    let written = match destination {
        Destination::File(path) => {
            atomic::write_file(path, "--write", text.as_bytes(), 0o644)?;
            if !json {
                infoln!("Wrote {path}; check it with: passthru-image plan --config {path}");
            }
            Some(path)
        }
        Destination::Stdout => None,
    };
    match (json, destination) {
        (true, _) => print_json(&DetectReport {
            config: &detection.config,
            toml: &text,
            gpu: detection.gpu.as_ref(),
            findings: &detection.findings,
            warnings: &detection.warnings,
            written,
        }),
        (false, Destination::Stdout) => {
            out!("{text}");
            Ok(())
        }
        (false, Destination::File(_)) => Ok(()),
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
    let judgement = host_safety::judge(
        root,
        &topology,
        &needs,
        &taken,
        &detection.config.accept_risk,
    );
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

/// The user's config that the proposal is merged into, with how messages name it and its text: an existing
/// `--write FILE` with `--merge`, else `--config FILE` (`-`: standard input). Only one of them may name it.
fn merge_source(
    args: &DetectArgs,
    destination: Destination,
    existing: Existing,
) -> Result<Option<(String, String)>> {
    let merge_into = match (existing, destination) {
        (Existing::Merge, Destination::File(path)) if std::fs::symlink_metadata(path).is_ok() => {
            Some(path)
        }
        _ => None,
    };
    let config = args.config.file();
    let file = match (merge_into, config) {
        (Some(write), Some(config)) if write != config.path => {
            return Err(InputError::new(
                config.field,
                format!(
                    "--merge merges into --write {write}; {} names another file ({}): give one of \
                     them",
                    config.field, config.path
                ),
            )
            .into());
        }
        (Some(path), _) => ConfigFile {
            path,
            field: "--write",
        },
        (None, Some(config)) => config,
        (None, None) => return Ok(None),
    };
    let (text, source) = file.read()?;
    Ok(Some((source.to_string(), text)))
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
            "exists; pass --merge to change what detect finds and keep the rest, --force to \
             replace it, or choose another file",
        )),
        _ => Ok(()),
    }
}
