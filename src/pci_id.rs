//! PCI vendor:device IDs (`10de:2684`), the unit of `vfio_pci.ids` and of pcie_acs_override `id:` entries.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) struct PciId {
    pub(crate) vendor: u16,
    pub(crate) device: u16,
}

impl PciId {
    pub(crate) fn new(vendor: u16, device: u16) -> Self {
        PciId { vendor, device }
    }
}

impl FromStr for PciId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "{s:?} is not a PCI ID; expected vvvv:dddd with 4 hex digits each, e.g. 10de:2684"
            )
        };
        let (vendor, device) = s.split_once(':').ok_or_else(bad)?;
        let hex4 = |part: &str| {
            (part.len() == 4 && part.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u16::from_str_radix(part, 16).ok())
                .flatten()
        };
        match (hex4(vendor), hex4(device)) {
            (Some(vendor), Some(device)) => Ok(PciId { vendor, device }),
            _ => Err(bad()),
        }
    }
}

impl TryFrom<String> for PciId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<PciId> for String {
    fn from(id: PciId) -> String {
        id.to_string()
    }
}

impl fmt::Display for PciId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:04x}", self.vendor, self.device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_lowercase() {
        let id: PciId = "10DE:22bA".parse().unwrap();
        assert_eq!(id, PciId::new(0x10de, 0x22ba));
        assert_eq!(id.to_string(), "10de:22ba");
    }

    #[test]
    fn rejects_anything_but_two_groups_of_four_hex_digits() {
        for bad in [
            "",
            "10de",
            "10de:",
            "10de:228",
            "10de:22bab",
            "0x10:22ba",
            "10de:22bg",
            "10de 22ba",
            "+1de:22ba",
            "10de:22ba:1",
        ] {
            let err = bad.parse::<PciId>().unwrap_err();
            assert!(err.contains("vvvv:dddd"), "{bad:?}: {err}");
        }
    }
}
