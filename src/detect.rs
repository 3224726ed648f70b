//! `detect`: reads the host and proposes a passthru.toml ("can my GPU be passed through?").
//!
//! The proposal is a [`Config`] value rendered with serde, so it is always a file `plan` accepts; what was
//! found and what to watch out for goes in a comment header above it. [`merge`] puts what detection decided into
//! the user's own file instead, keeping everything else.

mod merge;

pub(crate) use merge::merge;

use anyhow::{Result, bail};
use camino::Utf8PathBuf;

use crate::config::{Config, CpuChoice, GpuVendor, Switch};
use crate::error::InputError;
use crate::host::cpu::{CpuInfo, CpuVendor};
use crate::host::pci::{PciAddress, PciDevice};
use crate::host::topology::{GpuReport, GroupIsolation, Topology};
use crate::image_ref::ImageRef;
use crate::live::deployment;
use crate::plan::record;
use crate::root::Root;

#[derive(Debug, Clone)]
pub(crate) struct Detection {
    pub(crate) config: Config,
    /// The device proposed for the VM (a GPU unless `--device` named another), with its verdict.
    pub(crate) gpu: Option<GpuReport>,
    /// What was found, for the header.
    pub(crate) findings: Vec<String>,
    /// What the user must act on; also printed on stderr.
    pub(crate) warnings: Vec<String>,
    /// The config keys detection decided, which `--merge` sets in the user's file (the rest stay the user's).
    pub(crate) decided: Vec<Decided>,
}

/// A config key detection sets from what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decided {
    ImageBase,
    CpuVendor,
    VfioDevices,
    GpuVendors,
    VendorReset,
}

/// Where detect looks for the ostree deployment the host runs, for `image.base`.
#[derive(Debug, Clone)]
pub(crate) enum Sysroot {
    /// `--sysroot DIR`: it must be an ostree sysroot.
    Given(Utf8PathBuf),
    /// The host's root (`--root`, default /): a host that is not an ostree system keeps the default base.
    HostRoot(Utf8PathBuf),
}

/// Reads the host under `root`. `chosen`: the device to pass (`--device`), else the GPU detect picks.
pub(crate) fn detect(
    root: &Root,
    chosen: Option<PciAddress>,
    sysroot: &Sysroot,
) -> Result<Detection> {
    let cpu = CpuInfo::read(root)?;
    let topology = Topology::read(root)?;
    let gpus = topology.gpu_reports();
    let mut d = Detection {
        config: Config::default(),
        gpu: None,
        findings: Vec::new(),
        warnings: Vec::new(),
        decided: Vec::new(),
    };
    propose_base(&mut d, sysroot)?;
    d.config.cpu.vendor = match cpu.vendor {
        Some(CpuVendor::Intel) => CpuChoice::Intel,
        Some(CpuVendor::Amd) => CpuChoice::Amd,
        None => {
            d.warnings.push(format!(
                "the CPU vendor is not in {}: set cpu.vendor to intel or amd",
                root.join("/proc/cpuinfo")
            ));
            CpuChoice::Auto
        }
    };
    if d.config.cpu.vendor != CpuChoice::Auto {
        d.decided.push(Decided::CpuVendor);
    }
    d.findings.push(format!(
        "CPU: {}",
        cpu.vendor.map_or("unknown vendor", CpuVendor::as_str)
    ));
    if !cpu.virtualization {
        d.warnings.push(
            "the CPU flags have neither vmx nor svm: enable Intel VT-x / AMD SVM in the firmware \
             setup"
                .into(),
        );
    }
    if !topology.iommu_enabled() {
        d.warnings.push(format!(
            "the IOMMU is off (no IOMMU groups): enable VT-d (Intel) or AMD-Vi/IOMMU (AMD) in the \
             firmware setup and boot with the planned {}; isolation could not be checked",
            crate::plan::iommu_kargs(cpu.vendor.unwrap_or(CpuVendor::Intel)).join(" ")
        ));
    }

    let device = match chosen {
        Some(address) => Some(chosen_device(root, &topology, address, &gpus)?),
        None => pick_gpu(&gpus, &mut d.warnings),
    };
    for other in gpus
        .iter()
        .filter(|g| Some(g.address) != device.as_ref().map(|g| g.address))
    {
        d.findings.push(format!(
            "host keeps GPU {} {} [{}:{}]{}",
            other.address,
            other.name,
            other.vendor_id,
            other.device_id,
            if other.boot_vga { " (boot GPU)" } else { "" }
        ));
    }
    let Some(device) = device else {
        d.warnings.push(
            "no GPU found (PCI class 0300, 0302 or 0380): vfio.ids is left empty; add the devices \
             to pass by hand, or name one with --device ADDRESS"
                .into(),
        );
        return Ok(d);
    };
    pass_device(&mut d, &topology, &device);
    d.gpu = Some(device);
    Ok(d)
}

/// The device to pass and the functions that go with it: bound by ID, or by address where a device the host
/// keeps has the same ID; its vendor's kargs when it is a GPU; vendor-reset; its isolation.
fn pass_device(d: &mut Detection, topology: &Topology, device: &GpuReport) {
    let is_gpu = topology
        .device(&device.address)
        .is_some_and(PciDevice::is_gpu);
    d.findings.push(format!(
        "{} to pass: {} {} [{}:{}], {}",
        if is_gpu { "GPU" } else { "Device" },
        device.address,
        device.name,
        device.vendor_id,
        device.device_id,
        match (device.group, device.isolation) {
            (Some(group), GroupIsolation::Isolated) => format!("IOMMU group {group}, isolated"),
            (Some(group), _) => format!("IOMMU group {group}, shared"),
            (None, _) => "no IOMMU group (IOMMU off)".to_owned(),
        }
    ));
    d.decided
        .extend([Decided::VfioDevices, Decided::GpuVendors]);
    let passed = devices_to_pass(topology, device, is_gpu);
    for address in &passed {
        let member = topology
            .device(address)
            .expect("passed devices come from the device list");
        if *address != device.address {
            d.findings.push(format!(
                "  with {} {} [{}]",
                address,
                member.display_name(),
                member.id
            ));
        }
        bind(d, topology, member, &passed);
    }
    if !d.config.vfio.addresses.is_empty() {
        d.findings.push(
            "vfio.addresses: bound with driver_override by an initramfs hook before udev starts; \
             image mode only (live mode cannot add the hook and refuses addresses)"
                .into(),
        );
    }
    let id = topology
        .device(&device.address)
        .expect("the device comes from the device list")
        .id;
    if is_gpu {
        match gpu_vendor(id.vendor) {
            Some(vendor) => d.config.gpu.vendors = vec![vendor],
            None => d.warnings.push(format!(
                "GPU vendor {:04x} is not NVIDIA, AMD or Intel: gpu.vendors is left empty (no \
                 driver-specific kargs)",
                id.vendor
            )),
        }
    }
    if device.vendor_reset {
        d.config.vendor_reset.enabled = Switch::On;
        d.decided.push(Decided::VendorReset);
        d.findings.push(format!(
            "{} is a {} GPU: vendor-reset is built into the image so the VM can restart it",
            device.address,
            crate::vendor_reset::family(id).unwrap_or("vendor-reset")
        ));
    }
    if device.isolation == GroupIsolation::Shared {
        let mut others: Vec<String> = device
            .sharing_with
            .iter()
            .filter_map(|a| topology.device(a))
            .map(|d| format!("{} {} [{}]", d.address, d.display_name(), d.id))
            .collect();
        if device.sharing_count > others.len() {
            let more = device.sharing_count - others.len();
            if let Some(last) = others.last_mut() {
                *last = format!("{last} and {more} more");
            }
        }
        d.warnings.push(format!(
            "{} shares IOMMU group {} with {}: it cannot go to a VM alone. Move the card to a slot \
             with its own group, pass those devices too, or use an ACS-override kernel (weakens \
             isolation): set [acs-override] enabled = true with repo = \"<dnf .repo URL>\" or \
             packages = \"<dir of kernel packages>\"",
            device.address,
            device.group.unwrap_or_default(),
            others.join(", ")
        ));
    }
}

/// A GPU goes with every other function of its card (audio, USB-C). Another device goes with the functions of
/// its slot that share its IOMMU group (a group goes to a VM whole), and alone when there are no groups.
fn devices_to_pass(topology: &Topology, device: &GpuReport, is_gpu: bool) -> Vec<PciAddress> {
    let mut passed = vec![device.address];
    passed.extend(device.companions.iter().filter(|companion| {
        is_gpu || (device.group.is_some() && topology.group_of(companion) == device.group)
    }));
    passed
}

/// Binds one function by ID, unless a device the host keeps has the same ID: `vfio_pci.ids` would take that
/// one too, so this one is bound by address.
fn bind(d: &mut Detection, topology: &Topology, member: &PciDevice, passed: &[PciAddress]) {
    let twins: Vec<String> = topology
        .devices
        .iter()
        .filter(|other| other.id == member.id && !passed.contains(&other.address))
        .map(|other| other.address.to_string())
        .collect();
    if twins.is_empty() {
        if !d.config.vfio.ids.contains(&member.id) {
            d.config.vfio.ids.push(member.id);
        }
        return;
    }
    d.config.vfio.addresses.push(member.address);
    d.findings.push(format!(
        "  {} bound by address: the host keeps {} with the same ID [{}], which vfio_pci.ids would \
         take too",
        member.address,
        twins.join(", "),
        member.id
    ));
}

fn chosen_device(
    root: &Root,
    topology: &Topology,
    address: PciAddress,
    gpus: &[GpuReport],
) -> Result<GpuReport> {
    match topology.device(&address) {
        Some(device) => Ok(topology.gpu_report(device)),
        None => Err(InputError::new(
            "--device",
            format!(
                "no PCI device at {address} on {}; GPUs: {} (`passthru-image groups` lists \
                 every device)",
                root.host_name(),
                match gpus.is_empty() {
                    true => "none".to_owned(),
                    false => gpus
                        .iter()
                        .map(|g| g.address.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            ),
        )
        .into()),
    }
}

/// `image.base` from what the host runs: the container image its deployment follows, or for an image
/// passthru-image built, the base recorded in it. Anything else keeps the default, and the header says why.
fn propose_base(d: &mut Detection, sysroot: &Sysroot) -> Result<()> {
    let path = match sysroot {
        Sysroot::Given(path) => path,
        Sysroot::HostRoot(path) if deployment::check_sysroot(path).is_err() => {
            d.findings.push(format!(
                "image.base: the default; {path} is not an ostree system, so no deployment tells \
                 what the host runs"
            ));
            return Ok(());
        }
        Sysroot::HostRoot(path) => path,
    };
    let host = deployment::read(path)?;
    let (running, which) = match &host.booted {
        Some(booted) => (booted, "booted"),
        None => (&host.pending, "default"),
    };
    let Some(reference) = &running.container_image else {
        d.findings.push(format!(
            "image.base: the default; the {which} deployment {} follows an ostree ref, not a \
             container image: set image.base to the bootc image of your system",
            running.id
        ));
        return Ok(());
    };
    if let Some(record) = record::read_image_record(&Root::new(running.dir.clone()))? {
        d.findings.push(format!(
            "image.base: {}, the base of the passthru-image image the {which} deployment runs \
             ({reference})",
            record.image.base
        ));
        d.config.image.base = record.image.base;
        d.decided.push(Decided::ImageBase);
        return Ok(());
    }
    match registry_image(reference) {
        Some(base) => {
            d.findings.push(format!(
                "image.base: {base}, the container image the {which} deployment follows \
                 ({reference})"
            ));
            d.config.image.base = base;
            d.decided.push(Decided::ImageBase);
        }
        None => d.findings.push(format!(
            "image.base: the default; the {which} deployment follows {reference}, which names no \
             image in a registry: set image.base to the bootc image of your system"
        )),
    }
    Ok(())
}

/// The registry image of an ostree container reference (`ostree-image-signed:docker://ghcr.io/x/y:tag`,
/// `ostree-unverified-registry:quay.io/x/y:tag`, `ostree-remote-image:REMOTE:docker://...`); `None` for images
/// from elsewhere (`containers-storage:`, `oci:`, ...).
fn registry_image(reference: &str) -> Option<ImageRef> {
    let image = if let Some(image) = reference.strip_prefix("ostree-unverified-registry:") {
        image
    } else if let Some(rest) = reference.strip_prefix("ostree-remote-registry:") {
        rest.split_once(':')?.1
    } else {
        let transported = match reference.strip_prefix("ostree-remote-image:") {
            Some(rest) => rest.split_once(':')?.1,
            None => reference
                .strip_prefix("ostree-unverified-image:")
                .or_else(|| reference.strip_prefix("ostree-image-signed:"))?,
        };
        transported
            .strip_prefix("docker://")
            .or_else(|| transported.strip_prefix("registry:"))?
    };
    image.parse().ok()
}

/// The host keeps its boot GPU; of the others an isolated one is preferred. With one GPU it is proposed, with a
/// warning: the host loses its display while the VM runs.
fn pick_gpu(gpus: &[GpuReport], warnings: &mut Vec<String>) -> Option<GpuReport> {
    let mut candidates: Vec<&GpuReport> = gpus.iter().filter(|g| !g.boot_vga).collect();
    if candidates.is_empty() {
        let only = gpus.first()?;
        if gpus.len() == 1 {
            warnings.push(format!(
                "{} is the only GPU: the host has no display while the VM runs (single-GPU \
                 passthrough)",
                only.address
            ));
        }
        candidates.push(only);
    }
    candidates.sort_by_key(|g| (g.isolation != GroupIsolation::Isolated, g.address));
    if candidates.len() > 1 {
        // A few addresses and a count: a host tree may hold thousands of GPUs.
        const LISTED: usize = 8;
        let mut listed: Vec<String> = candidates
            .iter()
            .take(LISTED)
            .map(|g| g.address.to_string())
            .collect();
        if candidates.len() > LISTED {
            listed.push(format!("and {} more", candidates.len() - LISTED));
        }
        warnings.push(format!(
            "several GPUs could be passed ({}); proposing {}: choose another with --device ADDRESS",
            listed.join(", "),
            candidates[0].address
        ));
    }
    Some(candidates[0].clone())
}

fn gpu_vendor(vendor: u16) -> Option<GpuVendor> {
    match vendor {
        0x10de => Some(GpuVendor::Nvidia),
        0x1002 => Some(GpuVendor::Amd),
        0x8086 => Some(GpuVendor::Intel),
        _ => None,
    }
}

/// The proposed passthru.toml: the header of what was found, then the config itself.
pub(crate) fn render(detection: &Detection, root: &Root) -> Result<String> {
    let text = format!(
        "{}\n{}",
        header(detection, root, &[]),
        toml::to_string(&detection.config)?
    );
    // The file must read back as exactly this config; a rendering bug must not reach the user's disk.
    let reread = Config::from_toml(&text, "detect output")?;
    if reread != detection.config {
        bail!(
            "internal error: the proposed passthru.toml does not read back as the detected config"
        );
    }
    Ok(text)
}

/// First and last line of the comment block detect writes at the top of a config; `--merge` replaces the block.
const HEADER_BEGIN: &str =
    "# >>> passthru-image detect (every `detect --merge` replaces this block)";
const HEADER_END: &str = "# <<< passthru-image detect";

/// What was found and what to watch out for, as comments between the header markers; `notes` say what a merge
/// changed beyond setting keys.
fn header(detection: &Detection, root: &Root, notes: &[String]) -> String {
    let mut text = format!(
        "{HEADER_BEGIN}\n# passthru.toml proposed by `passthru-image detect` from the host under \
         {}.\n# Review it, then: passthru-image plan; passthru-image build (image mode) or apply \
         (live mode).\n#\n",
        root.path()
    );
    for finding in &detection.findings {
        text.push_str(&format!("# {finding}\n"));
    }
    for warning in &detection.warnings {
        text.push_str(&format!("# WARNING: {warning}\n"));
    }
    for note in notes {
        text.push_str(&format!("# {note}\n"));
    }
    text.push_str(HEADER_END);
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(address: &str, boot_vga: bool, isolation: GroupIsolation) -> GpuReport {
        GpuReport {
            address: address.parse().unwrap(),
            group: Some(1),
            vendor_id: "10de".into(),
            device_id: "1401".into(),
            class: "0300".into(),
            name: String::new(),
            driver: None,
            boot_vga,
            isolation,
            companions: Vec::new(),
            sharing_with: Vec::new(),
            sharing_count: 0,
            vendor_reset: false,
        }
    }

    #[test]
    fn picks_an_isolated_gpu_that_is_not_the_boot_gpu() {
        let gpus = [
            gpu("0000:01:00.0", true, GroupIsolation::Isolated),
            gpu("0000:02:00.0", false, GroupIsolation::Shared),
            gpu("0000:03:00.0", false, GroupIsolation::Isolated),
        ];
        let mut warnings = Vec::new();
        let picked = pick_gpu(&gpus, &mut warnings).unwrap();
        assert_eq!(picked.address.to_string(), "0000:03:00.0");
        assert!(warnings[0].contains("--device"), "{warnings:?}");
    }

    /// ostree-ext's references (`ostree-[unverified|remote|…]-image:TRANSPORT:IMAGE`): only registry images
    /// are bases another machine can pull.
    #[test]
    fn origins_name_a_base_only_when_they_name_a_registry_image() {
        for (origin, base) in [
            (
                "ostree-image-signed:docker://ghcr.io/ublue-os/bazzite:stable",
                "ghcr.io/ublue-os/bazzite:stable",
            ),
            (
                "ostree-unverified-registry:quay.io/fedora/fedora-bootc:42",
                "quay.io/fedora/fedora-bootc:42",
            ),
            (
                "ostree-unverified-image:registry:quay.io/fedora/fedora-silverblue:41",
                "quay.io/fedora/fedora-silverblue:41",
            ),
            (
                "ostree-remote-image:fedora:docker://quay.io/fedora/fedora-kinoite:41",
                "quay.io/fedora/fedora-kinoite:41",
            ),
            (
                "ostree-remote-registry:fedora:quay.io/fedora/fedora-kinoite:41",
                "quay.io/fedora/fedora-kinoite:41",
            ),
        ] {
            assert_eq!(
                registry_image(origin).map(|r| r.to_string()).as_deref(),
                Some(base),
                "{origin}"
            );
        }
        for other in [
            "ostree-unverified-image:containers-storage:localhost/mine",
            "ostree-unverified-image:oci:/var/tmp/img",
            "docker://ghcr.io/x/y:1",
            "ostree-unverified-registry:Not An Image",
            "",
        ] {
            assert_eq!(registry_image(other), None, "{other}");
        }
    }

    #[test]
    fn a_single_gpu_is_proposed_with_a_warning_and_none_gives_none() {
        let mut warnings = Vec::new();
        let only = [gpu("0000:01:00.0", true, GroupIsolation::Isolated)];
        assert!(pick_gpu(&only, &mut warnings).is_some());
        assert!(warnings[0].contains("single-GPU"), "{warnings:?}");
        assert!(pick_gpu(&[], &mut Vec::new()).is_none());
    }
}
