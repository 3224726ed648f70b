//! IOMMU groups from `/sys/kernel/iommu_groups/<N>/devices/<address>` (no groups means the IOMMU is off), the
//! groups' default domain types, and the IOMMU units the kernel registered in `/sys/class/iommu`.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use camino::Utf8PathBuf;

use super::pci::{self, PciAddress};
use crate::error::InputError;
use crate::root::Root;

pub(crate) const GROUPS_DIR: &str = "/sys/kernel/iommu_groups";
pub(crate) const UNITS_DIR: &str = "/sys/class/iommu";

/// Group number -> member addresses, both sorted. Empty when the IOMMU is off (the directory is then empty or,
/// in a fixture tree, absent). A tree that names a group two ways or puts a device in two groups is bad input:
/// the kernel never writes one.
pub(crate) fn read_groups(root: &Root) -> Result<BTreeMap<u32, Vec<PciAddress>>> {
    let mut groups = BTreeMap::new();
    let Some(names) = root.read_dir(GROUPS_DIR)? else {
        return Ok(groups);
    };
    let dir = root.join(GROUPS_DIR);
    let mut group_of: HashMap<PciAddress, u32> = HashMap::new();
    for name in names {
        let id = pci::parse_group_number(&name).ok_or_else(|| {
            InputError::new(
                dir.as_str(),
                format!(
                    "{name:?} is not a group number as the kernel writes it (is --root a host \
                     filesystem?)"
                ),
            )
        })?;
        let members_dir = Utf8PathBuf::from(GROUPS_DIR).join(&name).join("devices");
        let Some(entries) = root.read_dir(&members_dir)? else {
            return Err(InputError::new(
                root.join(&members_dir).as_str(),
                "is missing: every IOMMU group has a devices directory (is --root a host \
                 filesystem?)",
            )
            .into());
        };
        let mut members = Vec::new();
        for member in entries {
            // Groups may hold non-PCI (platform) devices on other architectures; only PCI ones matter here.
            if member.parse::<PciAddress>().is_err() {
                continue;
            }
            let address = pci::canonical_address(&root.join(&members_dir), &member)?;
            if let Some(other) = group_of.insert(address, id) {
                return Err(InputError::new(
                    dir.as_str(),
                    format!(
                        "{address} is in group {other} and in group {id}; a device is in one group"
                    ),
                )
                .into());
            }
            members.push(address);
        }
        members.sort();
        groups.insert(id, members);
    }
    Ok(groups)
}

/// The IOMMU hardware units the kernel's IOMMU driver registered (`dmar0` for Intel VT-d, `ivhd0` for AMD-Vi,
/// `virtio-iommu` ones elsewhere), sorted; empty when no driver took the IOMMU.
pub(crate) fn units(root: &Root) -> Result<Vec<String>> {
    Ok(root.read_dir(UNITS_DIR)?.unwrap_or_default())
}

/// Each group's default domain type (`/sys/kernel/iommu_groups/<N>/type`, kernel >= 5.11): `identity` where
/// `iommu=pt` took effect, `DMA` or `DMA-FQ` where devices go through translation. `None` for a group without
/// the attribute.
pub(crate) fn group_types(
    root: &Root,
    groups: &BTreeMap<u32, Vec<PciAddress>>,
) -> Result<BTreeMap<u32, Option<String>>> {
    groups
        .keys()
        .map(|id| {
            let path = Utf8PathBuf::from(GROUPS_DIR)
                .join(id.to_string())
                .join("type");
            Ok((*id, root.read_optional(path)?.map(|t| t.trim().to_owned())))
        })
        .collect()
}
