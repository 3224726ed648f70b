//! Device classes as users name them (`groups --class usb`): each a set of PCI base classes and subclasses.

use serde::Serialize;

use super::pci::{CLASS_3D, CLASS_DISPLAY_OTHER, CLASS_VGA};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DeviceClass {
    /// VGA, 3D and other display controllers (03xx).
    Gpu,
    /// Audio devices and HD Audio controllers (0401, 0403), a GPU's HDMI audio among them.
    Audio,
    /// USB controllers (0c03).
    Usb,
    /// Network controllers: Ethernet, Wi-Fi and others (02xx).
    Network,
    /// NVMe controllers (0108).
    Nvme,
    /// SATA controllers (0106).
    Sata,
    /// Every mass storage controller (01xx): NVMe, SATA, RAID, SAS.
    Storage,
    /// Bridges (06xx): host, ISA and PCI bridges, root ports.
    Bridge,
}

impl DeviceClass {
    /// Most specific first: a device's kind is the first that matches.
    const ALL: [DeviceClass; 8] = [
        DeviceClass::Gpu,
        DeviceClass::Audio,
        DeviceClass::Usb,
        DeviceClass::Network,
        DeviceClass::Nvme,
        DeviceClass::Sata,
        DeviceClass::Storage,
        DeviceClass::Bridge,
    ];

    /// Whether a device of `class_code` (base class + subclass) belongs to this class.
    pub(crate) fn matches(self, class_code: u16) -> bool {
        let base = class_code >> 8;
        match self {
            DeviceClass::Gpu => matches!(class_code, CLASS_VGA | CLASS_3D | CLASS_DISPLAY_OTHER),
            DeviceClass::Audio => matches!(class_code, 0x0401 | 0x0403),
            DeviceClass::Usb => class_code == 0x0c03,
            DeviceClass::Network => base == 0x02,
            DeviceClass::Nvme => class_code == 0x0108,
            DeviceClass::Sata => class_code == 0x0106,
            DeviceClass::Storage => base == 0x01,
            DeviceClass::Bridge => base == 0x06,
        }
    }

    /// The most specific class of a device; `None` for the rest (SMBus, signal processing, …).
    pub(crate) fn of(class_code: u16) -> Option<DeviceClass> {
        DeviceClass::ALL.into_iter().find(|c| c.matches(class_code))
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DeviceClass::Gpu => "GPU",
            DeviceClass::Audio => "audio",
            DeviceClass::Usb => "USB",
            DeviceClass::Network => "network",
            DeviceClass::Nvme => "NVMe",
            DeviceClass::Sata => "SATA",
            DeviceClass::Storage => "storage",
            DeviceClass::Bridge => "bridge",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_match_their_codes_and_kinds_are_the_most_specific() {
        assert_eq!(DeviceClass::of(0x0302), Some(DeviceClass::Gpu));
        assert_eq!(DeviceClass::of(0x0403), Some(DeviceClass::Audio));
        assert_eq!(DeviceClass::of(0x0108), Some(DeviceClass::Nvme));
        assert!(DeviceClass::Storage.matches(0x0108));
        assert_eq!(DeviceClass::of(0x0104), Some(DeviceClass::Storage));
        assert_eq!(DeviceClass::of(0x0280), Some(DeviceClass::Network));
        assert_eq!(DeviceClass::of(0x0604), Some(DeviceClass::Bridge));
        assert_eq!(DeviceClass::of(0x0c05), None);
    }
}
