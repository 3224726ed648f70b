//! `detect`: reads the host and proposes a passthru.toml ("can my GPU be passed through?").
//!
//! The proposal is a [`Config`] value rendered with serde, so it is always a file `plan` accepts; what was
//! found and what to watch out for goes in a comment header above it.

use anyhow::{Result, bail};

use crate::config::{Config, CpuChoice, GpuVendor, Switch};
use crate::error::InputError;
use crate::host::cpu::{CpuInfo, CpuVendor};
use crate::host::pci::PciAddress;
use crate::host::topology::{GpuReport, Isolation, Topology};
use crate::pci_id::PciId;
use crate::root::Root;

#[derive(Debug, Clone)]
pub struct Detection {
    pub config: Config,
    /// The GPU proposed for the VM.
    pub gpu: Option<GpuReport>,
    /// What was found, for the header.
    pub findings: Vec<String>,
    /// What the user must act on; also printed on stderr.
    pub warnings: Vec<String>,
}

/// Reads the host under `root`. `chosen`: the GPU to pass (`--device`), else the one detect picks.
pub fn detect(root: &Root, chosen: Option<PciAddress>) -> Result<Detection> {
    let cpu = CpuInfo::read(root)?;
    let topology = Topology::read(root)?;
    let gpus = topology.gpu_reports();
    let mut findings = Vec::new();
    let mut warnings = Vec::new();
    let mut config = Config::default();

    config.cpu.vendor = match cpu.vendor {
        Some(CpuVendor::Intel) => CpuChoice::Intel,
        Some(CpuVendor::Amd) => CpuChoice::Amd,
        None => {
            warnings.push(format!(
                "the CPU vendor is not in {}: set cpu.vendor to intel or amd",
                root.join("/proc/cpuinfo")
            ));
            CpuChoice::Auto
        }
    };
    findings.push(format!(
        "CPU: {}",
        cpu.vendor.map_or("unknown vendor", CpuVendor::as_str)
    ));
    if !cpu.virtualization {
        warnings.push(
            "the CPU flags have neither vmx nor svm: enable Intel VT-x / AMD SVM in the firmware setup"
                .into(),
        );
    }
    if !topology.iommu_enabled() {
        warnings.push(format!(
            "the IOMMU is off (no IOMMU groups): enable VT-d (Intel) or AMD-Vi/IOMMU (AMD) in the firmware setup and boot with the planned {}; isolation could not be checked",
            crate::plan::iommu_kargs(cpu.vendor.unwrap_or(CpuVendor::Intel)).join(" ")
        ));
    }

    let gpu = match chosen {
        Some(address) => match gpus.iter().find(|g| g.address == address) {
            Some(gpu) => Some(gpu.clone()),
            None => bail_no_gpu_at(address, &gpus)?,
        },
        None => pick_gpu(&gpus, &mut warnings),
    };
    for other in gpus
        .iter()
        .filter(|g| Some(g.address) != gpu.as_ref().map(|g| g.address))
    {
        findings.push(format!(
            "host keeps GPU {} {} [{}:{}]{}",
            other.address,
            other.name,
            other.vendor_id,
            other.device_id,
            if other.boot_vga { " (boot GPU)" } else { "" }
        ));
    }

    let Some(gpu) = gpu else {
        warnings.push("no GPU found (PCI class 0300, 0302 or 0380): vfio.ids is left empty; add the devices to pass by hand".into());
        return Ok(Detection {
            config,
            gpu: None,
            findings,
            warnings,
        });
    };

    findings.push(format!(
        "GPU to pass: {} {} [{}:{}], {}",
        gpu.address,
        gpu.name,
        gpu.vendor_id,
        gpu.device_id,
        match (gpu.group, gpu.isolation) {
            (Some(group), Isolation::Isolated) => format!("IOMMU group {group}, isolated"),
            (Some(group), _) => format!("IOMMU group {group}, shared"),
            (None, _) => "no IOMMU group (IOMMU off)".to_owned(),
        }
    ));
    let mut slot = vec![gpu.address];
    slot.extend(&gpu.companions);
    for address in &slot {
        let device = topology
            .device(address)
            .expect("slot members come from the device list");
        if *address != gpu.address {
            findings.push(format!(
                "  with {} {} [{}]",
                address,
                device.display_name(),
                device.id
            ));
        }
        if !config.vfio.ids.contains(&device.id) {
            config.vfio.ids.push(device.id);
        }
    }
    let gpu_id = PciId::new(
        u16::from_str_radix(&gpu.vendor_id, 16)?,
        u16::from_str_radix(&gpu.device_id, 16)?,
    );
    match gpu_vendor(gpu_id.vendor) {
        Some(vendor) => config.gpu.vendors = vec![vendor],
        None => warnings.push(format!(
            "GPU vendor {:04x} is not NVIDIA, AMD or Intel: gpu.vendors is left empty (no driver-specific kargs)",
            gpu_id.vendor
        )),
    }
    if gpu.vendor_reset {
        config.vendor_reset.enabled = Switch::On;
        findings.push(format!(
            "{} is a {} GPU: vendor-reset is built into the image so the VM can restart it",
            gpu.address,
            crate::vendor_reset::family(gpu_id).unwrap_or("vendor-reset")
        ));
    }
    if gpu.isolation == Isolation::Shared {
        let mut others: Vec<String> = gpu
            .sharing_with
            .iter()
            .filter_map(|a| topology.device(a))
            .map(|d| format!("{} {} [{}]", d.address, d.display_name(), d.id))
            .collect();
        if gpu.sharing_count > others.len() {
            let more = gpu.sharing_count - others.len();
            if let Some(last) = others.last_mut() {
                *last = format!("{last} and {more} more");
            }
        }
        warnings.push(format!(
            "{} shares IOMMU group {} with {}: it cannot go to a VM alone. Move the card to a slot with its own group, pass those devices too, or use an ACS-override kernel (weakens isolation): set [acs-override] enabled = true with repo = \"<dnf .repo URL>\" or packages = \"<dir of kernel packages>\"",
            gpu.address,
            gpu.group.unwrap_or_default(),
            others.join(", ")
        ));
    }
    let twins: Vec<String> = topology
        .devices
        .iter()
        .filter(|d| !slot.contains(&d.address) && config.vfio.ids.contains(&d.id))
        .map(|d| format!("{} [{}]", d.address, d.id))
        .collect();
    if !twins.is_empty() {
        warnings.push(format!(
            "identical IDs: vfio_pci.ids cannot tell the guest's devices from {} on the host, vfio-pci would take those too; bind the guest GPU by address (driver_override) instead",
            twins.join(", ")
        ));
    }
    Ok(Detection {
        config,
        gpu: Some(gpu),
        findings,
        warnings,
    })
}

fn bail_no_gpu_at(address: PciAddress, gpus: &[GpuReport]) -> Result<Option<GpuReport>> {
    let known: Vec<String> = gpus.iter().map(|g| g.address.to_string()).collect();
    Err(InputError::new(
        "--device",
        format!(
            "{address} is not a GPU on this host; GPUs: {}",
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        ),
    )
    .into())
}

/// The host keeps its boot GPU; of the others an isolated one is preferred. With one GPU it is proposed, with a
/// warning: the host loses its display while the VM runs.
fn pick_gpu(gpus: &[GpuReport], warnings: &mut Vec<String>) -> Option<GpuReport> {
    let mut candidates: Vec<&GpuReport> = gpus.iter().filter(|g| !g.boot_vga).collect();
    if candidates.is_empty() {
        let only = gpus.first()?;
        if gpus.len() == 1 {
            warnings.push(format!(
                "{} is the only GPU: the host has no display while the VM runs (single-GPU passthrough)",
                only.address
            ));
        }
        candidates.push(only);
    }
    candidates.sort_by_key(|g| (g.isolation != Isolation::Isolated, g.address));
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

/// The proposed passthru.toml: comments on what was found, then the config itself.
pub fn render(detection: &Detection, root: &Root) -> Result<String> {
    let mut text = format!(
        "# passthru.toml proposed by `passthru-image detect` from the host under {}.\n# Review it, then: passthru-image plan; passthru-image build (image mode) or apply (live mode).\n#\n",
        root.path()
    );
    for finding in &detection.findings {
        text.push_str(&format!("# {finding}\n"));
    }
    for warning in &detection.warnings {
        text.push_str(&format!("# WARNING: {warning}\n"));
    }
    text.push('\n');
    text.push_str(&toml::to_string(&detection.config)?);
    // The file must read back as exactly this config; a rendering bug must not reach the user's disk.
    let reread = Config::from_toml(&text, "detect output")?;
    if reread != detection.config {
        bail!(
            "internal error: the proposed passthru.toml does not read back as the detected config"
        );
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(address: &str, boot_vga: bool, isolation: Isolation) -> GpuReport {
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
            gpu("0000:01:00.0", true, Isolation::Isolated),
            gpu("0000:02:00.0", false, Isolation::Shared),
            gpu("0000:03:00.0", false, Isolation::Isolated),
        ];
        let mut warnings = Vec::new();
        let picked = pick_gpu(&gpus, &mut warnings).unwrap();
        assert_eq!(picked.address.to_string(), "0000:03:00.0");
        assert!(warnings[0].contains("--device"), "{warnings:?}");
    }

    #[test]
    fn a_single_gpu_is_proposed_with_a_warning_and_none_gives_none() {
        let mut warnings = Vec::new();
        let only = [gpu("0000:01:00.0", true, Isolation::Isolated)];
        assert!(pick_gpu(&only, &mut warnings).is_some());
        assert!(warnings[0].contains("single-GPU"), "{warnings:?}");
        assert!(pick_gpu(&[], &mut Vec::new()).is_none());
    }
}
