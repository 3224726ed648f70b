//! Refuses a plan made for a host when it takes what the host needs: the only display, the disk it runs
//! from, the keyboard. Runs whenever a plan is made from a host's facts ([`super::Target::Host`]), before
//! anything is written; each risk has its own switch in `[accept-risk]` that lets the plan take it.
//!
//! It judges "the devices the plan takes", given as IDs (every device carrying one) and as addresses, so it
//! does not care how the plan binds them.

use std::collections::BTreeSet;

use anyhow::Result;

use crate::config::AcceptRiskConfig;
use crate::error::InputError;
use crate::host::class::DeviceClass;
use crate::host::pci::{PciAddress, PciDevice};
use crate::host::topology::{HostNeeds, Topology};
use crate::pci_id::PciId;
use crate::root::Root;

/// The devices a plan binds to vfio-pci.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Taken<'a> {
    /// `vfio.ids`: every device with one of them.
    pub(crate) ids: &'a [PciId],
    /// Devices named by address.
    pub(crate) addresses: &'a [PciAddress],
}

impl Taken<'_> {
    pub(crate) fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.addresses.is_empty()
    }

    fn takes(&self, device: &PciDevice) -> bool {
        self.ids.contains(&device.id) || self.addresses.contains(&device.address)
    }

    /// The config key that takes `device`.
    fn field(&self, device: &PciDevice) -> &'static str {
        match self.ids.contains(&device.id) {
            true => "vfio.ids",
            false => "vfio.addresses",
        }
    }
}

/// What the host would lose, one switch each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Risk {
    BootGpu,
    IdenticalDevices,
    RootDiskController,
    HostUsbController,
}

impl Risk {
    /// The config switch that accepts it.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Risk::BootGpu => "accept-risk.boot-gpu",
            Risk::IdenticalDevices => "accept-risk.identical-devices",
            Risk::RootDiskController => "accept-risk.root-disk-controller",
            Risk::HostUsbController => "accept-risk.host-usb-controller",
        }
    }

    fn accepted(self, accepted: &AcceptRiskConfig) -> bool {
        match self {
            Risk::BootGpu => accepted.boot_gpu,
            Risk::IdenticalDevices => accepted.identical_devices,
            Risk::RootDiskController => accepted.root_disk_controller,
            Risk::HostUsbController => accepted.host_usb_controller,
        }
    }
}

/// One device the plan must not take without the switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) risk: Risk,
    /// The config key that takes the device (`vfio.ids`, `vfio.addresses`).
    pub(crate) field: &'static str,
    pub(crate) device: PciAddress,
    /// Why, and what to do instead, in words.
    pub(crate) reason: String,
}

/// The verdict on a plan's devices for one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Judgement {
    pub(crate) refusals: Vec<Refusal>,
    /// IDs and addresses no device of the host has: fine when the image is for another host.
    pub(crate) warnings: Vec<String>,
}

/// Reads what the host needs and judges `taken`: the warnings, or bad input listing every refusal. Reads
/// nothing when the plan takes nothing.
pub(crate) fn check(
    root: &Root,
    topology: Option<&Topology>,
    taken: &Taken,
    accepted: &AcceptRiskConfig,
) -> Result<Vec<String>> {
    let Some(topology) = topology.filter(|_| !taken.is_empty()) else {
        return Ok(Vec::new());
    };
    let needs = HostNeeds::read(root, topology)?;
    let judgement = judge(root, topology, &needs, taken, accepted);
    match judgement.refusals.first() {
        None => Ok(judgement.warnings),
        Some(first) => {
            Err(InputError::new(first.field, refusal_message(root, &judgement.refusals)).into())
        }
    }
}

fn refusal_message(root: &Root, refusals: &[Refusal]) -> String {
    let mut text = format!(
        "the plan takes what the host under {} needs; nothing was written:",
        root.path()
    );
    for refusal in refusals {
        text.push_str(&format!("\n  - {}", refusal.reason));
    }
    text
}

/// The refusals and warnings for `taken` on the host under `root`, the accepted risks left out.
pub(crate) fn judge(
    root: &Root,
    topology: &Topology,
    needs: &HostNeeds,
    taken: &Taken,
    accepted: &AcceptRiskConfig,
) -> Judgement {
    let devices: Vec<&PciDevice> = topology.devices.iter().filter(|d| taken.takes(d)).collect();
    let mut refusals = Vec::new();
    refusals.extend(boot_gpu(topology, taken, &devices));
    refusals.extend(identical(topology, taken));
    for device in &devices {
        refusals.extend(root_disk(needs, taken, device));
    }
    refusals.extend(usb(topology, needs, taken, &devices));
    refusals.retain(|r| !r.risk.accepted(accepted));
    Judgement {
        refusals,
        warnings: unknown(root, topology, taken),
    }
}

fn refusal(risk: Risk, taken: &Taken, device: &PciDevice, why: String, instead: &str) -> Refusal {
    Refusal {
        risk,
        field: taken.field(device),
        device: device.address,
        reason: format!(
            "{} {} [{}]: {why}. {instead}, or set {} = true to take it anyway",
            device.address,
            device.display_name(),
            device.id,
            risk.key()
        ),
    }
}

/// The boot GPU, when no display device stays with the host.
fn boot_gpu(topology: &Topology, taken: &Taken, devices: &[&PciDevice]) -> Vec<Refusal> {
    let host_keeps_a_display = topology
        .devices
        .iter()
        .any(|d| d.is_display() && !taken.takes(d));
    devices
        .iter()
        .filter(|d| d.boot_vga == Some(true) && !host_keeps_a_display)
        .map(|d| {
            refusal(
                Risk::BootGpu,
                taken,
                d,
                "the boot GPU, and no other display device would remain: the host boots without a \
                 display"
                    .into(),
                "Pass another GPU (passthru-image detect --device ADDRESS)",
            )
        })
        .collect()
}

/// An ID carried by cards in more than one slot: vfio_pci.ids takes all of them, the host's too.
fn identical(topology: &Topology, taken: &Taken) -> Vec<Refusal> {
    let mut refusals = Vec::new();
    for id in taken.ids {
        let matching: Vec<&PciDevice> = topology.devices.iter().filter(|d| d.id == *id).collect();
        let slots: BTreeSet<(u32, u8, u8)> = matching
            .iter()
            .map(|d| (d.address.domain, d.address.bus, d.address.device))
            .collect();
        if slots.len() < 2 {
            continue;
        }
        let addresses: Vec<String> = matching.iter().map(|d| d.address.to_string()).collect();
        refusals.push(refusal(
            Risk::IdenticalDevices,
            taken,
            matching[0],
            format!(
                "vfio.ids {id} matches {} in {} slots: vfio_pci.ids takes every one of them, the \
                 ones the host keeps too",
                addresses.join(", "),
                slots.len()
            ),
            "Bind the one to pass by address (vfio.addresses) instead of its ID",
        ));
    }
    refusals
}

fn root_disk(needs: &HostNeeds, taken: &Taken, device: &PciDevice) -> Option<Refusal> {
    let fs = needs.root_fs.as_ref()?;
    needs.holds_root_fs(device.address).then(|| {
        refusal(
            Risk::RootDiskController,
            taken,
            device,
            format!(
                "it holds the root filesystem ({} on {}): the host cannot run without it",
                fs.mount_point, fs.source
            ),
            "Pass another controller",
        )
    })
}

/// A USB controller with a keyboard or mouse behind it, or the last one the host would have.
fn usb(
    topology: &Topology,
    needs: &HostNeeds,
    taken: &Taken,
    devices: &[&PciDevice],
) -> Vec<Refusal> {
    let is_usb = |d: &PciDevice| DeviceClass::Usb.matches(d.class_code());
    let host_keeps_usb = topology
        .devices
        .iter()
        .any(|d| is_usb(d) && !taken.takes(d));
    let mut refusals = Vec::new();
    for device in devices.iter().filter(|d| is_usb(d)) {
        let inputs = needs.inputs_behind(device.address);
        if !inputs.is_empty() {
            let named: Vec<String> = inputs
                .iter()
                .map(|u| format!("{} ({})", u.describe(), u.port))
                .collect();
            refusals.push(refusal(
                Risk::HostUsbController,
                taken,
                device,
                format!("{} hang on it: the host loses its input", named.join(", ")),
                "Plug the keyboard and mouse into another controller's ports, or pass another \
                 controller",
            ));
        } else if !host_keeps_usb {
            refusals.push(refusal(
                Risk::HostUsbController,
                taken,
                device,
                "the host's only USB controller: the host keeps no USB port, for a keyboard \
                 neither"
                    .into(),
                "Pass a USB controller of an add-in card",
            ));
        }
    }
    refusals
}

/// IDs and addresses that no device of the host has.
fn unknown(root: &Root, topology: &Topology, taken: &Taken) -> Vec<String> {
    let mut warnings = Vec::new();
    for id in taken.ids {
        if !topology.devices.iter().any(|d| d.id == *id) {
            warnings.push(format!(
                "vfio.ids: no device of {} has the ID {id} (fine when the image is for another \
                 host)",
                root.host_name()
            ));
        }
    }
    for address in taken.addresses {
        if topology.device(address).is_none() {
            warnings.push(format!(
                "vfio.addresses: {} has no device at {address} (fine when the image is for another \
                 host)",
                root.host_name()
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::block::RootFs;
    use crate::host::usb::{Input, UsbDevice};

    fn dev(address: &str, id: &str, class: u32, boot_vga: Option<bool>) -> PciDevice {
        PciDevice {
            address: address.parse().unwrap(),
            id: id.parse().unwrap(),
            class,
            driver: None,
            iommu_group: None,
            boot_vga,
            reset_method: None,
        }
    }

    fn host() -> Topology {
        Topology::new(
            vec![
                dev("0000:00:02.0", "8086:3e98", 0x030000, Some(true)),
                dev("0000:00:14.0", "8086:a36d", 0x0c0330, None),
                dev("0000:01:00.0", "10de:1b80", 0x030000, Some(false)),
                dev("0000:02:00.0", "10de:1b80", 0x030000, Some(false)),
                dev("0000:03:00.0", "144d:a808", 0x010802, None),
            ],
            Vec::new(),
        )
    }

    /// The judgement for `host()`, under /host.
    fn judge_host(needs: &HostNeeds, taken: &Taken, accept: &AcceptRiskConfig) -> Judgement {
        judge(&Root::new("/host"), &host(), needs, taken, accept)
    }

    fn ids(list: &[&str]) -> Vec<PciId> {
        list.iter().map(|i| i.parse().unwrap()).collect()
    }

    fn risks(judgement: &Judgement) -> Vec<(Risk, String)> {
        judgement
            .refusals
            .iter()
            .map(|r| (r.risk, r.device.to_string()))
            .collect()
    }

    #[test]
    fn the_boot_gpu_is_refused_only_when_no_display_remains() {
        let needs = HostNeeds::default();
        let accept = AcceptRiskConfig::default();
        let igpu = ids(&["8086:3e98"]);
        let taken = Taken {
            ids: &igpu,
            addresses: &[],
        };
        // The twins stay with the host: it keeps a display.
        assert!(judge_host(&needs, &taken, &accept).refusals.is_empty());
        let all = ids(&["8086:3e98", "10de:1b80"]);
        let taken = Taken {
            ids: &all,
            addresses: &[],
        };
        let judgement = judge_host(&needs, &taken, &accept);
        assert_eq!(
            risks(&judgement),
            [
                (Risk::BootGpu, "0000:00:02.0".into()),
                (Risk::IdenticalDevices, "0000:01:00.0".into())
            ]
        );
        assert!(
            judgement.refusals[0]
                .reason
                .contains("accept-risk.boot-gpu = true")
        );
        assert!(judgement.refusals[1].reason.contains("vfio.addresses"));
        let accept = AcceptRiskConfig {
            boot_gpu: true,
            identical_devices: true,
            ..Default::default()
        };
        assert!(judge_host(&needs, &taken, &accept).refusals.is_empty());
    }

    #[test]
    fn a_device_named_by_address_leaves_its_twin_to_the_host() {
        let twin: PciAddress = "0000:02:00.0".parse().unwrap();
        let taken = Taken {
            ids: &[],
            addresses: &[twin],
        };
        let judgement = judge_host(&HostNeeds::default(), &taken, &AcceptRiskConfig::default());
        assert_eq!(judgement, Judgement::default());
    }

    #[test]
    fn the_root_disk_and_the_keyboards_controller_are_refused() {
        let mut needs = HostNeeds {
            root_fs: Some(RootFs {
                mount_point: "/sysroot".into(),
                source: "/dev/nvme0n1p3".into(),
                controllers: vec!["0000:03:00.0".parse().unwrap()],
            }),
            ..Default::default()
        };
        needs.usb.insert(
            "0000:00:14.0".parse().unwrap(),
            vec![UsbDevice {
                port: "1-2".into(),
                id: "046d:c31c".into(),
                manufacturer: Some("Logitech".into()),
                product: Some("USB Keyboard".into()),
                inputs: vec![Input::Keyboard],
            }],
        );
        let taken_ids = ids(&["144d:a808", "8086:a36d"]);
        let taken = Taken {
            ids: &taken_ids,
            addresses: &[],
        };
        let judgement = judge_host(&needs, &taken, &AcceptRiskConfig::default());
        assert_eq!(
            risks(&judgement),
            [
                (Risk::RootDiskController, "0000:03:00.0".into()),
                (Risk::HostUsbController, "0000:00:14.0".into())
            ]
        );
        assert!(
            judgement.refusals[1]
                .reason
                .contains("046d:c31c Logitech USB Keyboard (1-2)")
        );
        // Without the keyboard it is still the only USB controller.
        needs.usb.clear();
        let judgement = judge_host(&needs, &taken, &AcceptRiskConfig::default());
        assert!(judgement.refusals[1].reason.contains("only USB controller"));
    }

    #[test]
    fn ids_and_addresses_no_device_has_are_only_warnings() {
        let missing = ids(&["1002:67df"]);
        let nowhere: PciAddress = "0000:09:00.0".parse().unwrap();
        let taken = Taken {
            ids: &missing,
            addresses: &[nowhere],
        };
        let judgement = judge_host(&HostNeeds::default(), &taken, &AcceptRiskConfig::default());
        assert!(judgement.refusals.is_empty());
        assert_eq!(judgement.warnings.len(), 2);
        assert!(
            judgement.warnings[0]
                .contains("no device of the host under /host has the ID 1002:67df")
        );
        assert!(
            judgement.warnings[1].contains("the host under /host has no device at 0000:09:00.0")
        );
    }
}
