use anyhow::Result;

use super::print_json;
use crate::cli::{Cli, GroupsArgs};
use crate::host::class::DeviceClass;
use crate::host::cpu::{CpuInfo, CpuVendor};
use crate::host::pci::PciDevice;
use crate::host::topology::{
    CaveatKind, DeviceVerdict, GpuReport, GroupIsolation, GroupsReport, HostNeeds, Topology,
};
use crate::plan::iommu_kargs;
use crate::root::Root;
use crate::verbosity::Verbosity;

pub(crate) fn run(cli: &Cli, args: &GroupsArgs) -> Result<()> {
    let mut classes = args.class.clone();
    if args.gpus {
        classes.push(DeviceClass::Gpu);
    }
    let classes = &classes[..];
    let root = args.root.root();
    let topology = Topology::read(&root)?;
    let needs = HostNeeds::read(&root, &topology)?;
    let report = GroupsReport::new(&topology, &needs, classes);
    if args.json {
        return print_json(&report);
    }
    if !report.iommu_enabled {
        outln!(
            "The IOMMU is off: {} has no groups.",
            root.join(crate::host::iommu::GROUPS_DIR)
        );
        // How to turn it on is advice, which -q leaves out.
        if cli.verbosity() >= Verbosity::Normal {
            outln!("{}", how_to_enable_the_iommu(&root)?);
        }
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
                "IOMMU Group {:>width$}: {}",
                group.id,
                ls_iommu_line(device)
            );
            for usb in needs.usb.get(&device.address).into_iter().flatten() {
                let inputs = match usb.is_input() {
                    false => String::new(),
                    true => format!(" ({})", usb.input_names()),
                };
                outln!(
                    "{:indent$}USB {}: {}{inputs}",
                    "",
                    usb.port,
                    usb.describe(),
                    indent = width + 16
                );
            }
        }
    }
    let shown: Vec<&DeviceVerdict> = report
        .verdicts
        .iter()
        .filter(|v| !classes.is_empty() || v.kind.is_some())
        .collect();
    if !shown.is_empty() {
        outln!();
    }
    for verdict in shown {
        let line = match report.gpus.iter().find(|g| g.address == verdict.address) {
            Some(gpu) => gpu_verdict(gpu),
            None => device_verdict(verdict),
        };
        outln!("{line}");
        for caveat in verdict
            .caveats
            .iter()
            .filter(|c| c.caveat != CaveatKind::VendorReset)
        {
            outln!("    caveat: {}", caveat.detail);
        }
    }
    Ok(())
}

fn how_to_enable_the_iommu(root: &Root) -> Result<String> {
    let karg = match CpuInfo::read(root)?.vendor {
        Some(vendor) => iommu_kargs(vendor).join(" "),
        None => format!(
            "{} (Intel) or {} (AMD)",
            iommu_kargs(CpuVendor::Intel).join(" "),
            iommu_kargs(CpuVendor::Amd).join(" ")
        ),
    };
    Ok(format!(
        "Enable it in the firmware setup (Intel: VT-d; AMD: IOMMU/AMD-Vi, with SVM for the VM \
         itself) and boot with {karg}.\n`passthru-image detect` proposes a passthru.toml that \
         plans these kernel arguments."
    ))
}

/// `0000:01:00.0 VGA compatible controller [0300]: NVIDIA … [10de:1401] (driver: nvidia)`, as ls-iommu writes.
fn ls_iommu_line(device: &PciDevice) -> String {
    format!(
        "{} {} [{:04x}]: {} [{}]{}",
        device.address,
        device.class_name().unwrap_or("Class"),
        device.class_code(),
        device.display_name(),
        device.id,
        device
            .driver
            .as_deref()
            .map_or_else(String::new, |d| format!(" (driver: {d})")),
    )
}

fn list(addresses: &[crate::host::pci::PciAddress]) -> String {
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether the device can go alone, and what goes with it.
fn isolation(
    group: Option<u32>,
    isolation: GroupIsolation,
    sharing_with: &[crate::host::pci::PciAddress],
    companions: &[crate::host::pci::PciAddress],
) -> String {
    let isolation = match isolation {
        GroupIsolation::Isolated => format!(
            "group {}, isolated: can be passed through",
            group.unwrap_or_default()
        ),
        GroupIsolation::Shared => format!(
            "group {}, shared with {}: pass those too, move the card, or use an ACS-override \
             kernel",
            group.unwrap_or_default(),
            list(sharing_with)
        ),
        GroupIsolation::Unknown => "no IOMMU group (IOMMU off)".to_owned(),
    };
    match companions.is_empty() {
        true => isolation,
        false => format!("{isolation}; pass with {}", list(companions)),
    }
}

fn gpu_verdict(gpu: &GpuReport) -> String {
    let reset = if gpu.vendor_reset {
        "; needs vendor-reset"
    } else {
        ""
    };
    let boot = if gpu.boot_vga { " (boot GPU)" } else { "" };
    format!(
        "GPU {}{boot} {}: {}{reset}",
        gpu.address,
        gpu.name,
        isolation(gpu.group, gpu.isolation, &gpu.sharing_with, &gpu.companions)
    )
}

fn device_verdict(verdict: &DeviceVerdict) -> String {
    let kind = verdict.kind.map_or("Device", DeviceClass::as_str);
    format!(
        "{kind} {} {}: {}",
        verdict.address,
        verdict.name,
        isolation(
            verdict.group,
            verdict.isolation,
            &verdict.sharing_with,
            &verdict.companions
        )
    )
}
