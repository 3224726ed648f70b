//! The host's PCI devices arranged in IOMMU groups, with a passthrough verdict per GPU.
//!
//! This is the `groups --json` contract (DESIGN §3): `iommu_enabled`, `groups[].devices[]` and `gpus[]`.

use std::collections::HashMap;

use anyhow::Result;
use serde::Serialize;

use super::iommu;
use super::pci::{self, PciAddress, PciDevice};
use crate::root::Root;
use crate::vendor_reset;

#[derive(Debug, Clone)]
pub struct Topology {
    /// Sorted by address.
    pub devices: Vec<PciDevice>,
    /// Group number -> members, both sorted; empty when the IOMMU is off.
    pub groups: Vec<(u32, Vec<PciAddress>)>,
    /// Address -> group, from the group directories.
    group_of: HashMap<PciAddress, u32>,
    /// Group -> its members that are not PCI bridges, sorted: the ones that can keep a device from going alone.
    non_bridges: HashMap<u32, Vec<PciAddress>>,
}

/// Most addresses a GPU report lists in `sharing_with`; `sharing_count` has them all. A real group holds a
/// handful of devices; a list per GPU of every other member of a huge group would grow with the square.
pub const SHARING_LISTED: usize = 16;

/// Whether a GPU can be handed to a VM on its own (with its slot's other functions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Every other group member is a function of the same slot or a PCI bridge.
    Isolated,
    /// Another device shares the group: it would have to go to the VM too (or an ACS override split it).
    Shared,
    /// No IOMMU groups: the IOMMU is off, nothing can be passed through yet.
    Unknown,
}

#[derive(Debug, Clone, Serialize)]
pub struct GpuReport {
    pub address: PciAddress,
    pub group: Option<u32>,
    pub vendor_id: String,
    pub device_id: String,
    pub class: String,
    pub name: String,
    pub driver: Option<String>,
    pub boot_vga: bool,
    pub isolation: Isolation,
    /// The other functions of the GPU's slot (audio, USB-C): they go to the VM with it.
    pub companions: Vec<PciAddress>,
    /// Group members that make it `shared`: the first [`SHARING_LISTED`] of them.
    pub sharing_with: Vec<PciAddress>,
    /// How many group members make it `shared`.
    pub sharing_count: usize,
    /// The GPU is in vendor-reset's table (DESIGN §5).
    pub vendor_reset: bool,
}

impl Topology {
    pub fn read(root: &Root) -> Result<Topology> {
        let devices = pci::read_devices(root)?;
        let groups = iommu::read_groups(root)?.into_iter().collect();
        Ok(Topology::new(devices, groups))
    }

    /// Indexes devices by address and group, so every question below takes time in the size of its answer,
    /// not of the host (a tree may hold thousands of devices in one group).
    pub fn new(mut devices: Vec<PciDevice>, mut groups: Vec<(u32, Vec<PciAddress>)>) -> Topology {
        devices.sort_by_key(|d| d.address);
        groups.sort_by_key(|(id, _)| *id);
        let mut topology = Topology {
            devices,
            groups,
            group_of: HashMap::new(),
            non_bridges: HashMap::new(),
        };
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

    pub fn iommu_enabled(&self) -> bool {
        !self.groups.is_empty()
    }

    pub fn device(&self, address: &PciAddress) -> Option<&PciDevice> {
        self.devices
            .binary_search_by_key(address, |d| d.address)
            .ok()
            .map(|i| &self.devices[i])
    }

    /// The group of a device, from the group directory (the device's own link says the same on real sysfs).
    pub fn group_of(&self, address: &PciAddress) -> Option<u32> {
        self.group_of.get(address).copied()
    }

    pub fn members(&self, group: u32) -> impl Iterator<Item = &PciDevice> {
        let members = match self.groups.binary_search_by_key(&group, |(id, _)| *id) {
            Ok(i) => self.groups[i].1.as_slice(),
            Err(_) => &[],
        };
        members.iter().filter_map(|address| self.device(address))
    }

    pub fn gpus(&self) -> impl Iterator<Item = &PciDevice> {
        self.devices.iter().filter(|d| d.is_gpu())
    }

    /// The other functions of `device`'s slot, whatever their group.
    pub fn companions(&self, device: &PciDevice) -> Vec<PciAddress> {
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
    pub fn sharing_with(&self, device: &PciDevice) -> (Vec<PciAddress>, usize) {
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

    pub fn gpu_report(&self, gpu: &PciDevice) -> GpuReport {
        let group = self.group_of(&gpu.address);
        let (sharing_with, sharing_count) = self.sharing_with(gpu);
        let isolation = match group {
            None => Isolation::Unknown,
            Some(_) if sharing_count == 0 => Isolation::Isolated,
            Some(_) => Isolation::Shared,
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

    pub fn gpu_reports(&self) -> Vec<GpuReport> {
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
pub struct DeviceReport {
    pub address: PciAddress,
    pub vendor_id: String,
    pub device_id: String,
    pub class: String,
    pub driver: Option<String>,
    pub vendor_name: Option<&'static str>,
    pub device_name: Option<&'static str>,
    pub class_name: Option<&'static str>,
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
pub struct GroupReport {
    pub id: u32,
    pub devices: Vec<DeviceReport>,
}

/// The whole `groups --json` document.
#[derive(Debug, Clone, Serialize)]
pub struct GroupsReport {
    pub iommu_enabled: bool,
    pub groups: Vec<GroupReport>,
    pub gpus: Vec<GpuReport>,
}

impl GroupsReport {
    /// `gpus_only`: keep the groups that hold a GPU (`groups --gpus`).
    pub fn new(topology: &Topology, gpus_only: bool) -> GroupsReport {
        let groups = topology
            .groups
            .iter()
            .filter(|(id, _)| !gpus_only || topology.members(*id).any(PciDevice::is_gpu))
            .map(|(id, _)| GroupReport {
                id: *id,
                devices: topology.members(*id).map(DeviceReport::from).collect(),
            })
            .collect();
        GroupsReport {
            iommu_enabled: topology.iommu_enabled(),
            groups,
            gpus: topology.gpu_reports(),
        }
    }
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
        assert_eq!(first.isolation, Isolation::Shared);
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
        assert_eq!(report.isolation, Isolation::Isolated);
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
        assert_eq!(report.isolation, Isolation::Shared);
        assert_eq!(report.sharing_with, ["0000:03:00.0".parse().unwrap()]);
        assert_eq!(report.sharing_count, 1);
    }

    #[test]
    fn without_groups_the_verdict_is_unknown() {
        let t = topology(vec![dev("0000:01:00.0", "1002:67df", 0x030000)], &[]);
        assert!(!t.iommu_enabled());
        let report = t.gpu_report(&t.devices[0]);
        assert_eq!(report.isolation, Isolation::Unknown);
        assert!(report.vendor_reset);
    }
}
