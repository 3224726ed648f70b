use anyhow::Result;

use super::print_json;
use crate::cli::Cli;
use crate::host::cpu::{CpuInfo, CpuVendor};
use crate::host::topology::{GpuReport, GroupsReport, Isolation, Topology};
use crate::plan::iommu_kargs;

pub fn run(cli: &Cli, json: bool, gpus_only: bool) -> Result<()> {
    let root = cli.root();
    let topology = Topology::read(&root)?;
    let report = GroupsReport::new(&topology, gpus_only);
    if json {
        return print_json(&report);
    }
    if !report.iommu_enabled {
        let karg = match CpuInfo::read(&root)?.vendor {
            Some(vendor) => iommu_kargs(vendor).join(" "),
            None => format!(
                "{} (Intel) or {} (AMD)",
                iommu_kargs(CpuVendor::Intel).join(" "),
                iommu_kargs(CpuVendor::Amd).join(" ")
            ),
        };
        outln!(
            "The IOMMU is off: {} has no groups.\nEnable it in the firmware setup (Intel: VT-d; AMD: IOMMU/AMD-Vi, with SVM for the VM itself) and boot with {karg}.\n`passthru-image detect` proposes a passthru.toml that plans these kernel arguments.",
            root.join(crate::host::iommu::GROUPS_DIR)
        );
    }
    let width = topology
        .groups
        .iter()
        .map(|(id, _)| id.to_string().len())
        .max()
        .unwrap_or(0)
        .max(2);
    for group in &report.groups {
        for device in topology.members(group.id) {
            outln!(
                "IOMMU Group {:>width$}: {} {} [{:04x}]: {} [{}]{}",
                group.id,
                device.address,
                device.class_name().unwrap_or("Class"),
                device.class_code(),
                device.display_name(),
                device.id,
                device
                    .driver
                    .as_deref()
                    .map_or_else(String::new, |d| format!(" (driver: {d})")),
            );
        }
    }
    if !report.gpus.is_empty() {
        outln!();
        for gpu in &report.gpus {
            outln!("{}", gpu_verdict(gpu));
        }
    }
    Ok(())
}

fn gpu_verdict(gpu: &GpuReport) -> String {
    let list = |addresses: &[crate::host::pci::PciAddress]| {
        addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let isolation = match gpu.isolation {
        Isolation::Isolated => format!(
            "group {}, isolated: can be passed through",
            gpu.group.unwrap_or_default()
        ),
        Isolation::Shared => format!(
            "group {}, shared with {}{}: pass those too, move the card, or use an ACS-override kernel",
            gpu.group.unwrap_or_default(),
            list(&gpu.sharing_with),
            match gpu.sharing_count - gpu.sharing_with.len() {
                0 => String::new(),
                more => format!(" and {more} more"),
            }
        ),
        Isolation::Unknown => "no IOMMU group (IOMMU off)".to_owned(),
    };
    let companions = if gpu.companions.is_empty() {
        String::new()
    } else {
        format!("; pass with {}", list(&gpu.companions))
    };
    let reset = if gpu.vendor_reset {
        "; needs vendor-reset"
    } else {
        ""
    };
    let boot = if gpu.boot_vga { " (boot GPU)" } else { "" };
    format!(
        "GPU {}{boot} {}: {isolation}{companions}{reset}",
        gpu.address, gpu.name
    )
}
