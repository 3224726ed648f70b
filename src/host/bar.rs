//! A PCI device's memory windows (BARs) from its `resource` file, whether it can resize them
//! (`resourceN_resize`), and its SR-IOV capability (`sriov_totalvfs`): the firmware settings the guide lists
//! (Resizable BAR, Above 4G decoding, SR-IOV) show in them.
//!
//! `resource` has one line per resource, `0x<start> 0x<end> 0x<flags>`: lines 0 to 5 are the BARs, 6 the
//! expansion ROM, then SR-IOV and bridge windows. An unused BAR is all zeros.

use anyhow::Result;
use camino::Utf8PathBuf;

use super::pci::{DEVICES_DIR, PciAddress};
use crate::error::InputError;
use crate::root::Root;

/// Standard BARs of a PCI function.
const BARS: usize = 6;
const IORESOURCE_MEM: u64 = 0x200;
const IORESOURCE_MEM_64: u64 = 0x0010_0000;

pub(crate) const MIB: u64 = 1 << 20;
pub(crate) const GIB: u64 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bar {
    pub(crate) index: usize,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) flags: u64,
}

impl Bar {
    pub(crate) fn size(&self) -> u64 {
        self.end - self.start + 1
    }

    pub(crate) fn is_mem64(&self) -> bool {
        self.flags & IORESOURCE_MEM != 0 && self.flags & IORESOURCE_MEM_64 != 0
    }
}

fn device_file(address: PciAddress, name: &str) -> Utf8PathBuf {
    Utf8PathBuf::from(DEVICES_DIR)
        .join(address.to_string())
        .join(name)
}

/// The memory BARs in use; `None` when the device has no `resource` file.
pub(crate) fn memory_bars(root: &Root, address: PciAddress) -> Result<Option<Vec<Bar>>> {
    let path = device_file(address, "resource");
    let Some(text) = root.read_optional(&path)? else {
        return Ok(None);
    };
    let mut bars = Vec::new();
    for (index, line) in text.lines().take(BARS).enumerate() {
        let bar = parse_line(index, line).ok_or_else(|| {
            InputError::new(
                root.join(&path).as_str(),
                format!(
                    "line {} is not `0x<start> 0x<end> 0x<flags>` (is --root a host filesystem?)",
                    index + 1
                ),
            )
        })?;
        if bar.flags & IORESOURCE_MEM != 0 && bar.end > bar.start {
            bars.push(bar);
        }
    }
    Ok(Some(bars))
}

fn parse_line(index: usize, line: &str) -> Option<Bar> {
    let mut words = line.split_whitespace().map(|w| {
        let hex = w.strip_prefix("0x")?;
        u64::from_str_radix(hex, 16).ok()
    });
    let (start, end, flags) = (words.next()??, words.next()??, words.next()??);
    (words.next().is_none() && end >= start).then_some(Bar {
        index,
        start,
        end,
        flags,
    })
}

/// The BARs the device can resize (`resourceN_resize`): the card supports Resizable BAR, which says nothing
/// about whether the firmware enabled it.
pub(crate) fn resizable_bars(root: &Root, address: PciAddress) -> Vec<usize> {
    (0..BARS)
        .filter(|n| root.exists(device_file(address, &format!("resource{n}_resize"))))
        .collect()
}

/// `(sriov_totalvfs, sriov_numvfs)`: the virtual functions the device can offer and has enabled; `None`
/// without SR-IOV.
pub(crate) fn sriov(root: &Root, address: PciAddress) -> Result<Option<(u32, u32)>> {
    let read = |name: &str| -> Result<Option<u32>> {
        let path = device_file(address, name);
        match root.read_optional(&path)? {
            None => Ok(None),
            Some(text) => text.trim().parse().map(Some).map_err(|_| {
                InputError::new(
                    root.join(&path).as_str(),
                    "is not a number (is --root a host filesystem?)",
                )
                .into()
            }),
        }
    };
    Ok(match read("sriov_totalvfs")? {
        Some(total) if total > 0 => Some((total, read("sriov_numvfs")?.unwrap_or(0))),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bars_their_sizes_and_placement() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(camino::Utf8Path::from_path(dir.path()).unwrap());
        let address: PciAddress = "0000:0b:00.0".parse().unwrap();
        assert_eq!(memory_bars(&root, address).unwrap(), None);
        let dev = root.join(format!("{DEVICES_DIR}/0000:0b:00.0"));
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(
            dev.join("resource"),
            "0x00000000fb000000 0x00000000fbffffff 0x0000000000040200\n\
             0x0000007800000000 0x0000007fffffffff 0x000000000014220c\n\
             0x0000000000000000 0x0000000000000000 0x0000000000000000\n\
             0x0000000000000000 0x0000000000000000 0x0000000000000000\n\
             0x0000000000000000 0x0000000000000000 0x0000000000000000\n\
             0x000000000000f000 0x000000000000f07f 0x0000000000040101\n\
             0x00000000fc000000 0x00000000fc07ffff 0x0000000000046200\n",
        )
        .unwrap();
        std::fs::write(dev.join("resource1_resize"), "0000000000003f00\n").unwrap();
        std::fs::write(dev.join("sriov_totalvfs"), "7\n").unwrap();
        let bars = memory_bars(&root, address).unwrap().unwrap();
        assert_eq!(
            bars.len(),
            2,
            "{bars:?}: the I/O BAR and the ROM are not memory BARs"
        );
        assert_eq!((bars[0].size(), bars[0].is_mem64()), (16 * MIB, false));
        assert_eq!((bars[1].size(), bars[1].is_mem64()), (32 * GIB, true));
        assert!(bars[1].start >= 4 * GIB);
        assert_eq!(resizable_bars(&root, address), [1]);
        assert_eq!(sriov(&root, address).unwrap(), Some((7, 0)));

        std::fs::write(dev.join("resource"), "0x1 nonsense\n").unwrap();
        let err = memory_bars(&root, address).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
    }
}
