//! The host's PCI devices arranged in IOMMU groups, with a passthrough verdict per GPU and per device of every
//! class, and the caveats of taking a device from the host (its display, keyboard, root disk).
//!
//! This is the `groups --json` contract (ARCHITECTURE.md#json-is-a-contract): `iommu_enabled`,
//! `groups[].devices[]` and `gpus[]`, plus `verdicts[]` for every device that is no bridge.

use std::collections::BTreeMap;

use std::collections::HashMap;

use anyhow::Result;
use serde::Serialize;

use super::block::{self, RootFs};
use super::class::DeviceClass;
use super::firmware;
use super::iommu;
use super::pci::{self, PciAddress, PciDevice};
use super::usb::{self, UsbDevice};
use crate::root::Root;
use crate::vendor_reset;

#[derive(Debug, Clone)]
pub(crate) struct Topology {
    /// Sorted by address.
    pub(crate) devices: Vec<PciDevice>,
    /// Group number -> members, both sorted; empty when the IOMMU is off.
    pub(crate) groups: Vec<(u32, Vec<PciAddress>)>,
    /// Address -> group, from the group directories.
    group_of: HashMap<PciAddress, u32>,
    /// Group -> its members that are not PCI bridges, sorted: the ones that can keep a device from going alone.
    non_bridges: HashMap<u32, Vec<PciAddress>>,
    /// How many devices of each class the host has.
    class_counts: HashMap<DeviceClass, usize>,
}

/// Most addresses a GPU report lists in `sharing_with`; `sharing_count` has them all. A real group holds a
/// handful of devices; a list per GPU of every other member of a huge group would grow with the square.
pub(crate) const SHARING_LISTED: usize = 16;

/// Whether a GPU can be handed to a VM on its own (with its slot's other functions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum GroupIsolation {
    /// Every other group member is a function of the same slot or a PCI bridge.
    Isolated,
    /// Another device shares the group: it would have to go to the VM too (or an ACS override split it).
    Shared,
    /// No IOMMU groups: the IOMMU is off, nothing can be passed through yet.
    Unknown,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct GpuReport {
    pub(crate) address: PciAddress,
    pub(crate) group: Option<u32>,
    pub(crate) vendor_id: String,
    pub(crate) device_id: String,
    pub(crate) class: String,
    pub(crate) name: String,
    pub(crate) driver: Option<String>,
    pub(crate) boot_vga: bool,
    pub(crate) isolation: GroupIsolation,
    /// The other functions of the GPU's slot (audio, USB-C): they go to the VM with it.
    pub(crate) companions: Vec<PciAddress>,
    /// Group members that make it `shared`: the first [`SHARING_LISTED`] of them.
    pub(crate) sharing_with: Vec<PciAddress>,
    /// How many group members make it `shared`.
    pub(crate) sharing_count: usize,
    /// The GPU is in vendor-reset's table ([`vendor_reset::needs_vendor_reset`]).
    pub(crate) vendor_reset: bool,
}

impl Topology {
    pub(crate) fn read(root: &Root) -> Result<Topology> {
        let devices = pci::read_devices(root)?;
        let groups = iommu::read_groups(root)?.into_iter().collect();
        Ok(Topology::new(devices, groups))
    }

    /// Indexes devices by address and group, so every question below takes time in the size of its answer,
    /// not of the host (a tree may hold thousands of devices in one group).
    pub(crate) fn new(
        mut devices: Vec<PciDevice>,
        mut groups: Vec<(u32, Vec<PciAddress>)>,
    ) -> Topology {
        devices.sort_by_key(|d| d.address);
        groups.sort_by_key(|(id, _)| *id);
        let mut topology = Topology {
            devices,
            groups,
            group_of: HashMap::new(),
            non_bridges: HashMap::new(),
            class_counts: HashMap::new(),
        };
        for device in &topology.devices {
            for class in <DeviceClass as clap::ValueEnum>::value_variants() {
                if class.matches(device.class_code()) {
                    *topology.class_counts.entry(*class).or_default() += 1;
                }
            }
        }
        for (id, members) in &topology.groups {
            for address in members {
                topology.group_of.insert(*address, *id);
            }
            let mut non_bridges: Vec<PciAddress> = members
                .iter()
                .filter(|a| topology.device(a).is_some_and(|d| !d.is_pci_bridge()))
                .copied()
                .collect();
            non_bridges.sort();
            topology.non_bridges.insert(*id, non_bridges);
        }
        topology
    }

    pub(crate) fn iommu_enabled(&self) -> bool {
        !self.groups.is_empty()
    }

    pub(crate) fn device(&self, address: &PciAddress) -> Option<&PciDevice> {
        self.devices
            .binary_search_by_key(address, |d| d.address)
            .ok()
            .map(|i| &self.devices[i])
    }

    /// The group of a device, from the group directory (the device's own link says the same on real sysfs).
    pub(crate) fn group_of(&self, address: &PciAddress) -> Option<u32> {
        self.group_of.get(address).copied()
    }

    pub(crate) fn members(&self, group: u32) -> impl Iterator<Item = &PciDevice> {
        let members = match self.groups.binary_search_by_key(&group, |(id, _)| *id) {
            Ok(i) => self.groups[i].1.as_slice(),
            Err(_) => &[],
        };
        members.iter().filter_map(|address| self.device(address))
    }

    pub(crate) fn gpus(&self) -> impl Iterator<Item = &PciDevice> {
        self.devices.iter().filter(|d| d.is_gpu())
    }

    /// The other functions of `device`'s slot, whatever their group.
    pub(crate) fn companions(&self, device: &PciDevice) -> Vec<PciAddress> {
        let start = self
            .devices
            .partition_point(|d| d.address < slot_start(&device.address));
        self.devices[start..]
            .iter()
            .take_while(|d| d.address.same_slot(&device.address))
            .filter(|d| d.address != device.address)
            .map(|d| d.address)
            .collect()
    }

    /// Group members other than the device's own slot and PCI bridges, what stops it going alone: the first
    /// [`SHARING_LISTED`], and how many there are.
    pub(crate) fn sharing_with(&self, device: &PciDevice) -> (Vec<PciAddress>, usize) {
        let Some(non_bridges) = self
            .group_of(&device.address)
            .and_then(|group| self.non_bridges.get(&group))
        else {
            return (Vec::new(), 0);
        };
        let count = non_bridges.len() - slot_of(non_bridges, &device.address).len();
        let listed = non_bridges
            .iter()
            .filter(|a| !a.same_slot(&device.address))
            .take(SHARING_LISTED)
            .copied()
            .collect();
        (listed, count)
    }

    pub(crate) fn gpu_report(&self, gpu: &PciDevice) -> GpuReport {
        let group = self.group_of(&gpu.address);
        let (sharing_with, sharing_count) = self.sharing_with(gpu);
        let isolation = match group {
            None => GroupIsolation::Unknown,
            Some(_) if sharing_count == 0 => GroupIsolation::Isolated,
            Some(_) => GroupIsolation::Shared,
        };
        GpuReport {
            address: gpu.address,
            group,
            vendor_id: format!("{:04x}", gpu.id.vendor),
            device_id: format!("{:04x}", gpu.id.device),
            class: format!("{:04x}", gpu.class_code()),
            name: gpu.display_name(),
            driver: gpu.driver.clone(),
            boot_vga: gpu.boot_vga == Some(true),
            isolation,
            companions: self.companions(gpu),
            sharing_with,
            sharing_count,
            vendor_reset: vendor_reset::needs_vendor_reset(gpu.id),
        }
    }

    pub(crate) fn gpu_reports(&self) -> Vec<GpuReport> {
        self.gpus().map(|gpu| self.gpu_report(gpu)).collect()
    }
}

/// The addresses of `address`'s slot in a sorted list: they stand together, the slot ordering before the
/// function.
fn slot_of<'a>(sorted: &'a [PciAddress], address: &PciAddress) -> &'a [PciAddress] {
    let start = sorted.partition_point(|a| *a < slot_start(address));
    let len = sorted[start..].partition_point(|a| a.same_slot(address));
    &sorted[start..start + len]
}

/// Function 0 of `address`'s slot: no address of the slot sorts before it.
fn slot_start(address: &PciAddress) -> PciAddress {
    PciAddress {
        function: 0,
        ..*address
    }
}

/// One device in `groups --json`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DeviceReport {
    pub(crate) address: PciAddress,
    pub(crate) vendor_id: String,
    pub(crate) device_id: String,
    pub(crate) class: String,
    pub(crate) driver: Option<String>,
    pub(crate) vendor_name: Option<&'static str>,
    pub(crate) device_name: Option<&'static str>,
    pub(crate) class_name: Option<&'static str>,
}

impl From<&PciDevice> for DeviceReport {
    fn from(d: &PciDevice) -> Self {
        DeviceReport {
            address: d.address,
            vendor_id: format!("{:04x}", d.id.vendor),
            device_id: format!("{:04x}", d.id.device),
            class: format!("{:04x}", d.class_code()),
            driver: d.driver.clone(),
            vendor_name: d.vendor_name(),
            device_name: d.device_name(),
            class_name: d.class_name(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct GroupReport {
    pub(crate) id: u32,
    pub(crate) devices: Vec<DeviceReport>,
}

/// The whole `groups --json` document.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GroupsReport {
    pub(crate) iommu_enabled: bool,
    pub(crate) groups: Vec<GroupReport>,
    pub(crate) gpus: Vec<GpuReport>,
    /// A verdict for every device that is no bridge (of the chosen classes).
    pub(crate) verdicts: Vec<DeviceVerdict>,
}

impl GroupsReport {
    /// `classes`: keep the groups that hold a device of one of them, and their verdicts (`groups --class`);
    /// all when empty.
    pub(crate) fn new(
        topology: &Topology,
        needs: &HostNeeds,
        classes: &[DeviceClass],
    ) -> GroupsReport {
        let chosen =
            |d: &PciDevice| classes.is_empty() || classes.iter().any(|c| c.matches(d.class_code()));
        let groups = topology
            .groups
            .iter()
            .filter(|(id, _)| topology.members(*id).any(chosen))
            .map(|(id, _)| GroupReport {
                id: *id,
                devices: topology.members(*id).map(DeviceReport::from).collect(),
            })
            .collect();
        GroupsReport {
            iommu_enabled: topology.iommu_enabled(),
            groups,
            gpus: topology.gpu_reports(),
            verdicts: topology
                .devices
                .iter()
                .filter(|d| !DeviceClass::Bridge.matches(d.class_code()) && chosen(d))
                .map(|d| topology.verdict(d, needs))
                .collect(),
        }
    }
}

/// What the host uses itself, which passing a device would take from it.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostNeeds {
    /// The USB devices behind each USB controller.
    pub(crate) usb: BTreeMap<PciAddress, Vec<UsbDevice>>,
    /// The root filesystem and its controllers; `None` when the root has no mount table.
    pub(crate) root_fs: Option<RootFs>,
    /// The DMI chassis is a laptop's; `None` without DMI.
    pub(crate) portable: Option<bool>,
}

impl HostNeeds {
    pub(crate) fn read(root: &Root, topology: &Topology) -> Result<HostNeeds> {
        let mut usb = BTreeMap::new();
        for controller in topology
            .devices
            .iter()
            .filter(|d| DeviceClass::Usb.matches(d.class_code()))
        {
            usb.insert(controller.address, usb::behind(root, controller.address)?);
        }
        Ok(HostNeeds {
            usb,
            root_fs: block::root_filesystem(root)?,
            portable: firmware::portable(root)?,
        })
    }

    /// The keyboards, mice and other HID devices behind a USB controller.
    pub(crate) fn inputs_behind(&self, controller: PciAddress) -> Vec<&UsbDevice> {
        self.usb
            .get(&controller)
            .into_iter()
            .flatten()
            .filter(|d| d.is_input())
            .collect()
    }

    /// Whether the root filesystem lives on this controller.
    pub(crate) fn holds_root_fs(&self, controller: PciAddress) -> bool {
        self.root_fs
            .as_ref()
            .is_some_and(|fs| fs.controllers.contains(&controller))
    }
}

/// Whether a device can go to a VM on its own, what goes with it, and what the host loses.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DeviceVerdict {
    pub(crate) address: PciAddress,
    pub(crate) id: String,
    pub(crate) class: String,
    /// The most specific of the `--class` names; `None` for other devices (SMBus, signal processing, …).
    pub(crate) kind: Option<DeviceClass>,
    pub(crate) name: String,
    pub(crate) driver: Option<String>,
    pub(crate) group: Option<u32>,
    pub(crate) isolation: GroupIsolation,
    pub(crate) companions: Vec<PciAddress>,
    /// Group members that make it `shared`: the first [`SHARING_LISTED`] of them.
    pub(crate) sharing_with: Vec<PciAddress>,
    /// How many group members make it `shared`.
    pub(crate) sharing_count: usize,
    pub(crate) caveats: Vec<Caveat>,
    /// For a USB controller: the USB devices behind it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) usb_devices: Option<Vec<UsbDevice>>,
}

/// Something that makes passing a device costly or unlikely to work, whatever its group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Caveat {
    pub(crate) caveat: CaveatKind,
    pub(crate) detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum CaveatKind {
    BootGpu,
    /// A 3D controller (0302): no display outputs; in a laptop a mux-less Optimus GPU.
    ThreeDController,
    /// Keyboards or mice hang on this USB controller.
    InputDevices,
    /// A function of the chipset's slot, with its LPC bridge or SMBus.
    ChipsetFunction,
    OnlyUsbController,
    RootFilesystem,
    OnlyNetworkController,
    VendorReset,
}

impl Topology {
    /// The verdict on one device, with the caveats `needs` gives.
    pub(crate) fn verdict(&self, device: &PciDevice, needs: &HostNeeds) -> DeviceVerdict {
        let group = self.group_of(&device.address);
        let (sharing_with, sharing_count) = self.sharing_with(device);
        let isolation = match group {
            None => GroupIsolation::Unknown,
            Some(_) if sharing_count == 0 => GroupIsolation::Isolated,
            Some(_) => GroupIsolation::Shared,
        };
        let kind = DeviceClass::of(device.class_code());
        DeviceVerdict {
            address: device.address,
            id: device.id.to_string(),
            class: format!("{:04x}", device.class_code()),
            kind,
            name: device.display_name(),
            driver: device.driver.clone(),
            group,
            isolation,
            companions: self.companions(device),
            sharing_with,
            sharing_count,
            caveats: self.caveats(device, needs),
            usb_devices: (kind == Some(DeviceClass::Usb))
                .then(|| needs.usb.get(&device.address).cloned().unwrap_or_default()),
        }
    }

    fn caveats(&self, device: &PciDevice, needs: &HostNeeds) -> Vec<Caveat> {
        let mut caveats = Vec::new();
        let mut add = |caveat, detail: String| caveats.push(Caveat { caveat, detail });
        if device.boot_vga == Some(true) {
            add(CaveatKind::BootGpu, self.boot_gpu_caveat(device));
        }
        if let Some(chipset) = self.chipset_companions(device) {
            add(CaveatKind::ChipsetFunction, chipset);
        }
        if device.class_code() == pci::CLASS_3D {
            add(CaveatKind::ThreeDController, three_d_caveat(needs.portable));
        }
        if DeviceClass::Usb.matches(device.class_code()) {
            let inputs = needs.inputs_behind(device.address);
            if !inputs.is_empty() {
                add(CaveatKind::InputDevices, input_caveat(&inputs));
            }
            if self.only_of_class(device, DeviceClass::Usb) {
                add(
                    CaveatKind::OnlyUsbController,
                    "the host's only USB controller: the host loses every USB device, the keyboard \
                     and mouse plugged in later too"
                        .into(),
                );
            }
        }
        if let Some(fs) = needs
            .root_fs
            .as_ref()
            .filter(|_| needs.holds_root_fs(device.address))
        {
            add(
                CaveatKind::RootFilesystem,
                format!(
                    "holds the root filesystem ({} on {}): the host cannot run without it",
                    fs.mount_point, fs.source
                ),
            );
        }
        if DeviceClass::Network.matches(device.class_code())
            && self.only_of_class(device, DeviceClass::Network)
        {
            add(
                CaveatKind::OnlyNetworkController,
                "the host's only network controller: the host is offline while the VM has it"
                    .into(),
            );
        }
        if vendor_reset::needs_vendor_reset(device.id) {
            add(
                CaveatKind::VendorReset,
                "cannot reset itself between VM starts: needs the vendor-reset module".into(),
            );
        }
        caveats
    }

    /// Display devices (VGA or other display controllers, not 3D controllers, which have no outputs) other
    /// than `device`.
    pub(crate) fn other_displays(&self, device: &PciDevice) -> Vec<&PciDevice> {
        self.devices
            .iter()
            .filter(|d| d.address != device.address && d.is_display())
            .collect()
    }

    fn boot_gpu_caveat(&self, device: &PciDevice) -> String {
        let others = self.other_displays(device);
        match others.first() {
            None => {
                "the boot GPU and the host's only display device: passed to a VM, it leaves the \
                 host without a display (single-GPU passthrough)"
                    .into()
            }
            Some(other) => format!(
                "the boot GPU: the firmware and boot screens show on it; the host's display would \
                 have to move to {} {}",
                other.address,
                other.display_name()
            ),
        }
    }

    /// A function of the chipset's own slot, beside its LPC/ISA bridge or SMBus: those go with it.
    fn chipset_companions(&self, device: &PciDevice) -> Option<String> {
        let chipset: Vec<String> = self
            .companions(device)
            .iter()
            .filter_map(|a| self.device(a))
            .filter(|d| matches!(d.class_code(), CLASS_ISA_BRIDGE | CLASS_SMBUS))
            .map(|d| format!("{} ({})", d.address, d.class_name().unwrap_or("chipset")))
            .collect();
        (!chipset.is_empty()).then(|| {
            format!(
                "a function of the chipset: its slot also holds {}, which would go to the VM with \
                 it and which the host needs; passing it rarely works",
                chipset.join(", ")
            )
        })
    }

    fn only_of_class(&self, device: &PciDevice, class: DeviceClass) -> bool {
        let all = self.class_counts.get(&class).copied().unwrap_or(0);
        all == usize::from(class.matches(device.class_code()))
    }
}

/// The chipset functions that share a slot with devices people try to pass (HD Audio, USB).
const CLASS_ISA_BRIDGE: u16 = 0x0601;
const CLASS_SMBUS: u16 = 0x0c05;

fn three_d_caveat(portable: Option<bool>) -> String {
    match portable {
        Some(true) => {
            "a laptop's 3D controller (mux-less Optimus): it has no display outputs, the screen \
             belongs to the iGPU, and the guest driver often refuses it; passing it rarely works"
                .into()
        }
        _ => "a 3D controller: it has no display outputs, so the guest shows its picture only \
              through another GPU or a remote display; in a laptop (mux-less Optimus) passing it \
              rarely works"
            .into(),
    }
}

fn input_caveat(inputs: &[&UsbDevice]) -> String {
    let named: Vec<String> = inputs
        .iter()
        .map(|d| format!("{} {} ({})", d.input_names(), d.describe(), d.port))
        .collect();
    format!(
        "{} behind it: the host loses them while the VM has it",
        named.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci_id::PciId;

    fn dev(address: &str, id: &str, class: u32) -> PciDevice {
        PciDevice {
            address: address.parse().unwrap(),
            id: id.parse::<PciId>().unwrap(),
            class,
            driver: None,
            iommu_group: None,
            boot_vga: None,
            reset_method: None,
        }
    }

    fn topology(devices: Vec<PciDevice>, groups: &[(u32, &[&str])]) -> Topology {
        Topology::new(
            devices,
            groups
                .iter()
                .map(|(id, members)| (*id, members.iter().map(|m| m.parse().unwrap()).collect()))
                .collect(),
        )
    }

    #[test]
    fn thousands_of_gpus_in_one_group_list_a_few_and_count_the_rest() {
        let devices: Vec<PciDevice> = (0..4000)
            .map(|i| {
                let address = format!("0000:{:02x}:{:02x}.{}", i / 256, (i / 8) % 32, i % 8);
                dev(&address, "10de:1401", 0x030000)
            })
            .collect();
        let addresses: Vec<String> = devices.iter().map(|d| d.address.to_string()).collect();
        let members: Vec<&str> = addresses.iter().map(String::as_str).collect();
        let t = topology(devices, &[(1, &members)]);
        let started = std::time::Instant::now();
        let reports = t.gpu_reports();
        assert!(started.elapsed().as_secs() < 2, "{:?}", started.elapsed());
        let first = &reports[0];
        assert_eq!(first.isolation, GroupIsolation::Shared);
        assert_eq!(first.companions.len(), 7);
        assert_eq!(first.sharing_count, 4000 - 8);
        assert_eq!(first.sharing_with.len(), SHARING_LISTED);
        assert_eq!(first.sharing_with[0].to_string(), "0000:00:01.0");
    }

    #[test]
    fn gpu_with_its_audio_and_root_port_is_isolated() {
        let t = topology(
            vec![
                dev("0000:00:01.0", "8086:1901", 0x060400),
                dev("0000:01:00.0", "10de:1401", 0x030000),
                dev("0000:01:00.1", "10de:0fba", 0x040300),
            ],
            &[(1, &["0000:00:01.0", "0000:01:00.0", "0000:01:00.1"])],
        );
        let report = t.gpu_report(&t.devices[1]);
        assert_eq!(report.isolation, GroupIsolation::Isolated);
        assert_eq!(report.group, Some(1));
        assert_eq!(report.companions, ["0000:01:00.1".parse().unwrap()]);
        assert!(!report.vendor_reset);
    }

    #[test]
    fn another_endpoint_in_the_group_makes_it_shared() {
        let t = topology(
            vec![
                dev("0000:03:00.0", "8086:1539", 0x020000),
                dev("0000:04:00.0", "10de:128b", 0x030000),
            ],
            &[(8, &["0000:03:00.0", "0000:04:00.0"])],
        );
        let report = t.gpu_report(&t.devices[1]);
        assert_eq!(report.isolation, GroupIsolation::Shared);
        assert_eq!(report.sharing_with, ["0000:03:00.0".parse().unwrap()]);
        assert_eq!(report.sharing_count, 1);
    }

    #[test]
    fn without_groups_the_verdict_is_unknown() {
        let t = topology(vec![dev("0000:01:00.0", "1002:67df", 0x030000)], &[]);
        assert!(!t.iommu_enabled());
        let report = t.gpu_report(&t.devices[0]);
        assert_eq!(report.isolation, GroupIsolation::Unknown);
        assert!(report.vendor_reset);
    }
}
