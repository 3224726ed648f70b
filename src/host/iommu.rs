//! IOMMU groups from `/sys/kernel/iommu_groups/<N>/devices/<address>`. No groups means the IOMMU is off.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use super::pci::PciAddress;
use crate::error::InputError;
use crate::root::Root;

pub const GROUPS_DIR: &str = "/sys/kernel/iommu_groups";

/// Group number -> member addresses, both sorted. Empty when the IOMMU is off (the directory is then empty or,
/// in a fixture tree, absent).
pub fn read_groups(root: &Root) -> Result<BTreeMap<u32, Vec<PciAddress>>> {
    let dir = root.join(GROUPS_DIR);
    let mut groups = BTreeMap::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(groups),
        Err(e) => return Err(e).with_context(|| format!("listing {dir}")),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {dir}"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let id: u32 = name.parse().map_err(|_| {
            InputError::new(
                dir.as_str(),
                format!("{name:?} is not a group number (is --root a host filesystem?)"),
            )
        })?;
        let members_dir = dir.join(&name).join("devices");
        let mut members = Vec::new();
        for member in
            std::fs::read_dir(&members_dir).with_context(|| format!("listing {members_dir}"))?
        {
            let member = member.with_context(|| format!("listing {members_dir}"))?;
            let member = member.file_name().to_string_lossy().into_owned();
            // Groups may hold non-PCI (platform) devices on other architectures; only PCI ones matter here.
            if let Ok(address) = member.parse::<PciAddress>() {
                members.push(address);
            }
        }
        members.sort();
        groups.insert(id, members);
    }
    Ok(groups)
}
