//! PCI devices from `/sys/bus/pci/devices`: address, IDs, class, bound driver and the per-device attributes
//! passthrough cares about, plus their names from the pci.ids database (the `pci-ids` crate).
//!
//! Real sysfs is read as it is: `/sys/bus/pci/devices/X` is a symlink into `/sys/devices/pci…/…/X`,
//! attributes end in a newline, IDs are written `0x10de`, the class `0x030000`, and `driver`, `iommu_group`,
//! `boot_vga` and `reset_method` may be missing.

use std::fmt;
use std::str::FromStr;

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};
use pci_ids::FromId;
use serde::{Deserialize, Serialize};

use crate::error::InputError;
use crate::pci_id::PciId;
use crate::root::Root;

pub(crate) const DEVICES_DIR: &str = "/sys/bus/pci/devices";

/// `0000:01:00.0`: domain, bus, device (slot) and function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct PciAddress {
    pub(crate) domain: u32,
    pub(crate) bus: u8,
    pub(crate) device: u8,
    pub(crate) function: u8,
}

impl PciAddress {
    /// The same slot: the functions of one card (GPU, its HDMI audio, its USB-C controller).
    pub(crate) fn same_slot(&self, other: &PciAddress) -> bool {
        (self.domain, self.bus, self.device) == (other.domain, other.bus, other.device)
    }

    /// An address as a user writes it: the kernel's `0000:02:00.0`, or lspci's short `02:00.0` (domain 0), in
    /// either case. Sysfs names are read with the strict [`FromStr`] instead: there, another spelling would be
    /// a second entry for the same device.
    pub(crate) fn from_user(s: &str) -> Result<PciAddress, String> {
        let full = match s.matches(':').count() {
            1 => format!("0000:{s}"),
            _ => s.to_owned(),
        };
        full.parse().map_err(|_| {
            format!(
                "{s:?} is not a PCI address; expected dddd:bb:ss.f or bb:ss.f (hex, as lspci shows \
                 it), e.g. 0000:02:00.0 or 02:00.0"
            )
        })
    }
}

impl FromStr for PciAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("{s:?} is not a PCI address; expected dddd:bb:ss.f (hex), e.g. 0000:01:00.0")
        };
        let (domain, rest) = s.split_once(':').ok_or_else(bad)?;
        let (bus, rest) = rest.split_once(':').ok_or_else(bad)?;
        let (device, function) = rest.split_once('.').ok_or_else(bad)?;
        let hex = |part: &str, min: usize, max: usize| {
            (part.len() >= min && part.len() <= max && part.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u32::from_str_radix(part, 16).ok())
                .flatten()
        };
        // Domains are 4 hex digits, or more behind Intel VMD (`10000:e1:00.0`).
        let domain = hex(domain, 4, 8).ok_or_else(bad)?;
        let bus = hex(bus, 2, 2).ok_or_else(bad)?;
        let device = hex(device, 2, 2).filter(|d| *d < 0x20).ok_or_else(bad)?;
        let function = hex(function, 1, 1).filter(|f| *f < 8).ok_or_else(bad)?;
        Ok(PciAddress {
            domain,
            bus: bus as u8,
            device: device as u8,
            function: function as u8,
        })
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl Serialize for PciAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Read as a user writes it ([`PciAddress::from_user`]): configs and recorded plans.
impl<'de> Deserialize<'de> for PciAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        PciAddress::from_user(&text).map_err(serde::de::Error::custom)
    }
}

/// Class codes passthrough decisions rest on: base class + subclass, the first four hex digits of sysfs's
/// `class` (a GPU is 0300 VGA, 0302 3D or 0380 display).
pub(crate) const CLASS_VGA: u16 = 0x0300;
pub(crate) const CLASS_3D: u16 = 0x0302;
pub(crate) const CLASS_DISPLAY_OTHER: u16 = 0x0380;
pub(crate) const CLASS_PCI_BRIDGE: u16 = 0x0604;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PciDevice {
    pub(crate) address: PciAddress,
    pub(crate) id: PciId,
    /// The 24-bit class: base class, subclass, programming interface.
    pub(crate) class: u32,
    /// The bound driver's name, `None` when no driver is bound.
    pub(crate) driver: Option<String>,
    /// From the device's `iommu_group` link; `None` when the IOMMU is off.
    pub(crate) iommu_group: Option<u32>,
    /// `boot_vga`: the firmware's console GPU. Only VGA devices have the attribute.
    pub(crate) boot_vga: Option<bool>,
    /// `reset_method` (kernel >= 5.15): the reset methods in the order the kernel tries them.
    pub(crate) reset_method: Option<Vec<String>>,
}

impl PciDevice {
    /// Base class + subclass, e.g. `0x0300`.
    pub(crate) fn class_code(&self) -> u16 {
        (self.class >> 8) as u16
    }

    pub(crate) fn is_gpu(&self) -> bool {
        matches!(
            self.class_code(),
            CLASS_VGA | CLASS_3D | CLASS_DISPLAY_OTHER
        )
    }

    /// A device that can drive a screen: VGA or another display controller (a 3D controller has no outputs).
    pub(crate) fn is_display(&self) -> bool {
        matches!(self.class_code(), CLASS_VGA | CLASS_DISPLAY_OTHER)
    }

    pub(crate) fn is_pci_bridge(&self) -> bool {
        self.class_code() == CLASS_PCI_BRIDGE
    }

    pub(crate) fn vendor_name(&self) -> Option<&'static str> {
        pci_ids::Vendor::from_id(self.id.vendor).map(|v| v.name())
    }

    pub(crate) fn device_name(&self) -> Option<&'static str> {
        pci_ids::Device::from_vid_pid(self.id.vendor, self.id.device).map(|d| d.name())
    }

    /// The subclass name (`VGA compatible controller`), else the base class name.
    pub(crate) fn class_name(&self) -> Option<&'static str> {
        let base = (self.class >> 16) as u8;
        let sub = (self.class >> 8) as u8;
        pci_ids::Subclass::from_cid_sid(base, sub)
            .map(|s| s.name())
            .or_else(|| pci_ids::Class::from_id(base).map(|c| c.name()))
    }

    /// `NVIDIA Corporation GM206 [GeForce GTX 960]`, as lspci names it, with lspci's fallbacks.
    pub(crate) fn display_name(&self) -> String {
        let vendor = self
            .vendor_name()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("Vendor {:04x}", self.id.vendor));
        let device = self
            .device_name()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("Device {:04x}", self.id.device));
        format!("{vendor} {device}")
    }
}

/// Every PCI device of the host, sorted by address.
pub(crate) fn read_devices(root: &Root) -> Result<Vec<PciDevice>> {
    let Some(names) = root.read_dir(DEVICES_DIR)? else {
        // A root without /sys is a wrong --root, not a host without devices: say so instead of reporting an
        // empty machine.
        if !root.exists("/sys") {
            return Err(InputError::new(
                "--root",
                format!(
                    "{} has no sys/: give the root of a Linux host (or of a captured sysfs/procfs \
                     tree)",
                    root.path()
                ),
            )
            .into());
        }
        // No PCI bus at all (a container, a non-PCI machine): nothing to pass through.
        return Ok(Vec::new());
    };
    let dir = root.join(DEVICES_DIR);
    let mut devices = Vec::with_capacity(names.len());
    for name in names {
        devices.push(read_device(root, canonical_address(&dir, &name)?)?);
    }
    devices.sort_by_key(|d| d.address);
    Ok(devices)
}

/// The address a sysfs entry is named after. The kernel writes each address one way (lowercase hex, fixed
/// widths); a name written another way would be a second entry for the same device.
pub(crate) fn canonical_address(dir: &Utf8Path, name: &str) -> Result<PciAddress> {
    let address: PciAddress = name
        .parse()
        .map_err(|e: String| InputError::new(dir.as_str(), e))?;
    if address.to_string() != name {
        return Err(InputError::new(
            dir.as_str(),
            format!(
                "{name:?} is not written as the kernel writes addresses ({address}); is --root a \
                 host filesystem?"
            ),
        )
        .into());
    }
    Ok(address)
}

/// Reads one device's attributes through its `/sys/bus/pci/devices` link.
pub(crate) fn read_device(root: &Root, address: PciAddress) -> Result<PciDevice> {
    let dir = Utf8PathBuf::from(DEVICES_DIR).join(address.to_string());
    let attr = |name: &str| -> Result<String> {
        let text = root.read(dir.join(name))?;
        Ok(text.trim().to_owned())
    };
    let optional = |name: &str| -> Result<Option<String>> {
        Ok(root
            .read_optional(dir.join(name))?
            .map(|t| t.trim().to_owned()))
    };
    let field = |name: &str| root.join(dir.join(name)).to_string();

    let vendor = parse_hex(&attr("vendor")?, 4)
        .ok_or_else(|| bad_attr(&field("vendor"), "a 16-bit hex ID such as 0x10de"))?;
    let device = parse_hex(&attr("device")?, 4)
        .ok_or_else(|| bad_attr(&field("device"), "a 16-bit hex ID such as 0x1401"))?;
    let class = parse_hex(&attr("class")?, 6)
        .ok_or_else(|| bad_attr(&field("class"), "a 24-bit hex class such as 0x030000"))?;
    let boot_vga = match optional("boot_vga")?.as_deref() {
        None => None,
        Some("1") => Some(true),
        Some("0") => Some(false),
        Some(_) => return Err(bad_attr(&field("boot_vga"), "0 or 1")),
    };
    let reset_method =
        optional("reset_method")?.map(|t| t.split_whitespace().map(str::to_owned).collect());
    let driver = root.link_name(dir.join("driver"))?;
    let iommu_group = match root.link_name(dir.join("iommu_group"))? {
        None => None,
        Some(name) => Some(
            parse_group_number(&name)
                .ok_or_else(|| bad_attr(&field("iommu_group"), "a link to a numbered group"))?,
        ),
    };
    Ok(PciDevice {
        address,
        id: PciId::new(vendor as u16, device as u16),
        class,
        driver,
        iommu_group,
        boot_vga,
        reset_method,
    })
}

/// An IOMMU group number as the kernel writes it: decimal digits without sign or leading zeros, so `+13` and
/// `0013` are not a second group 13.
pub(crate) fn parse_group_number(name: &str) -> Option<u32> {
    let canonical = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_digit())
        && (name == "0" || !name.starts_with('0'));
    canonical.then(|| name.parse().ok()).flatten()
}

/// `0x10de` (or `10de`) with at most `digits` hex digits.
fn parse_hex(text: &str, digits: usize) -> Option<u32> {
    let hex = text.strip_prefix("0x").unwrap_or(text);
    (!hex.is_empty() && hex.len() <= digits && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(hex, 16).ok())
        .flatten()
}

fn bad_attr(path: &str, expected: &str) -> anyhow::Error {
    InputError::new(
        path,
        format!("unexpected content; expected {expected} (is --root a host filesystem?)"),
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_print_and_compare_slots() {
        let gpu: PciAddress = "0000:01:00.0".parse().unwrap();
        let audio: PciAddress = "0000:01:00.1".parse().unwrap();
        let other: PciAddress = "0000:02:00.0".parse().unwrap();
        assert_eq!(gpu.to_string(), "0000:01:00.0");
        assert!(gpu.same_slot(&audio));
        assert!(!gpu.same_slot(&other));
        let vmd: PciAddress = "10000:E1:1f.7".parse().unwrap();
        assert_eq!(vmd.to_string(), "10000:e1:1f.7");
        for bad in [
            "",
            "01:00.0",
            "0000:01:00",
            "0000:01:20.0",
            "0000:01:00.8",
            "0000:1:00.0",
            "000g:01:00.0",
            "0000:01:00.0.1",
        ] {
            assert!(bad.parse::<PciAddress>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn users_may_write_the_short_form_in_any_case() {
        for (text, normal) in [
            ("02:00.0", "0000:02:00.0"),
            ("0A:1F.7", "0000:0a:1f.7"),
            ("0000:02:00.1", "0000:02:00.1"),
            ("10000:E1:00.0", "10000:e1:00.0"),
        ] {
            assert_eq!(PciAddress::from_user(text).unwrap().to_string(), normal);
        }
        for bad in [
            "",
            "2:00.0",
            "02:00",
            "02:20.0",
            "00.0",
            ":02:00.0",
            "02:00.0 ",
            "x:02:00.0",
        ] {
            let err = PciAddress::from_user(bad).unwrap_err();
            assert!(err.contains("bb:ss.f"), "{bad:?}: {err}");
        }
        let parsed: PciAddress = serde_json::from_str("\"02:00.1\"").unwrap();
        assert_eq!(parsed.to_string(), "0000:02:00.1");
    }

    #[test]
    fn group_numbers_and_entry_names_are_read_only_in_the_kernels_spelling() {
        assert_eq!(parse_group_number("0"), Some(0));
        assert_eq!(parse_group_number("13"), Some(13));
        for bad in ["", "+13", "0013", "-1", "1e3", "13 ", "99999999999"] {
            assert_eq!(parse_group_number(bad), None, "{bad:?}");
        }
        let dir = Utf8Path::new("/r/sys/bus/pci/devices");
        assert!(canonical_address(dir, "0000:0a:00.0").is_ok());
        let err = canonical_address(dir, "0000:0A:00.0").unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
    }

    #[test]
    fn sysfs_hex_attributes_parse_with_or_without_prefix() {
        assert_eq!(parse_hex("0x10de", 4), Some(0x10de));
        assert_eq!(parse_hex("10DE", 4), Some(0x10de));
        assert_eq!(parse_hex("0x030000", 6), Some(0x030000));
        assert_eq!(parse_hex("0x1234567", 6), None);
        assert_eq!(parse_hex("0x", 4), None);
        assert_eq!(parse_hex("nvidia", 4), None);
    }

    fn device(vendor: u16, dev: u16, class: u32) -> PciDevice {
        PciDevice {
            address: "0000:01:00.0".parse().unwrap(),
            id: PciId::new(vendor, dev),
            class,
            driver: None,
            iommu_group: None,
            boot_vga: None,
            reset_method: None,
        }
    }

    #[test]
    fn names_come_from_the_pci_ids_database() {
        let gpu = device(0x10de, 0x1401, 0x030000);
        assert!(gpu.is_gpu());
        assert_eq!(gpu.class_name(), Some("VGA compatible controller"));
        assert_eq!(
            gpu.display_name(),
            "NVIDIA Corporation GM206 [GeForce GTX 960]"
        );
        let unknown = device(0x0bad, 0xfffd, 0xff0000);
        assert!(!unknown.is_gpu());
        assert_eq!(unknown.display_name(), "Vendor 0bad Device fffd");
        assert!(device(0x8086, 0x1901, 0x060400).is_pci_bridge());
        assert!(device(0x10de, 0x1f95, 0x030200).is_gpu());
        assert!(device(0x1002, 0x1636, 0x038000).is_gpu());
    }
}
