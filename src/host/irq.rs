//! Interrupt chips from `/sys/kernel/irq/<N>/chip_name`: with interrupt remapping on, the kernel names the
//! chips that deliver device interrupts `IR-…` (`IR-PCI-MSI-0000:00:14.0`, `IR-IO-APIC`), as /proc/interrupts
//! shows them. VFIO refuses to assign a device without interrupt remapping unless
//! `vfio_iommu_type1.allow_unsafe_interrupts=1`.

use anyhow::Result;
use camino::Utf8PathBuf;

use crate::root::Root;

pub(crate) const IRQ_DIR: &str = "/sys/kernel/irq";

/// What the interrupt chips say about interrupt remapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Remapping {
    /// A chip named `IR-…` delivers interrupts: this one.
    On(String),
    /// No chip of `count` interrupts is a remapping one.
    Off { count: usize },
    /// No /sys/kernel/irq (kernel before 4.17, or a tree that did not copy it).
    Unknown,
}

/// Reads the chips until the first remapping one.
pub(crate) fn remapping(root: &Root) -> Result<Remapping> {
    let Some(irqs) = root.read_dir(IRQ_DIR)? else {
        return Ok(Remapping::Unknown);
    };
    let mut count = 0;
    for irq in &irqs {
        let path = Utf8PathBuf::from(IRQ_DIR).join(irq).join("chip_name");
        let Some(chip) = root.read_optional(&path)? else {
            continue;
        };
        count += 1;
        let chip = chip.trim();
        if chip.starts_with("IR-") {
            return Ok(Remapping::On(chip.to_owned()));
        }
    }
    Ok(Remapping::Off { count })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chip_named_ir_means_remapping_is_on() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(camino::Utf8Path::from_path(dir.path()).unwrap());
        assert_eq!(remapping(&root).unwrap(), Remapping::Unknown);
        for (irq, chip) in [("0", "IO-APIC"), ("24", "PCI-MSI-0000:00:14.0")] {
            std::fs::create_dir_all(root.join(format!("{IRQ_DIR}/{irq}"))).unwrap();
            std::fs::write(
                root.join(format!("{IRQ_DIR}/{irq}/chip_name")),
                format!("{chip}\n"),
            )
            .unwrap();
        }
        assert_eq!(remapping(&root).unwrap(), Remapping::Off { count: 2 });
        std::fs::write(
            root.join(format!("{IRQ_DIR}/24/chip_name")),
            "IR-PCI-MSI-0000:00:14.0\n",
        )
        .unwrap();
        assert_eq!(
            remapping(&root).unwrap(),
            Remapping::On("IR-PCI-MSI-0000:00:14.0".into())
        );
    }
}
