//! ACPI tables the firmware hands the kernel (`/sys/firmware/acpi/tables/<SIGNATURE>`): the IOMMU is described
//! in DMAR (Intel VT-d) or IVRS (AMD-Vi), and the firmware leaves the table out when the IOMMU is switched
//! off in its setup.

use crate::host::cpu::CpuVendor;
use crate::root::Root;

pub(crate) const TABLES_DIR: &str = "/sys/firmware/acpi/tables";

/// The table that describes the IOMMU of a CPU vendor's platform.
pub(crate) fn iommu_table(vendor: CpuVendor) -> &'static str {
    match vendor {
        CpuVendor::Intel => "DMAR",
        CpuVendor::Amd => "IVRS",
    }
}

/// What the firmware says about the IOMMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IommuTable {
    /// The table is there: the firmware has the IOMMU on.
    Present,
    /// The tables directory is there without it: the firmware has the IOMMU off.
    Missing,
    /// No tables directory at all (no ACPI, or a tree that did not copy it): nothing can be told.
    NoTables,
}

/// Whether the firmware published `table` (only its presence is read: the tables are binary and readable by
/// root only).
pub(crate) fn iommu_table_state(root: &Root, table: &str) -> IommuTable {
    if !root.is_dir(TABLES_DIR) {
        IommuTable::NoTables
    } else if root.exists(camino::Utf8Path::new(TABLES_DIR).join(table)) {
        IommuTable::Present
    } else {
        IommuTable::Missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_present_missing_or_not_knowable() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(camino::Utf8Path::from_path(dir.path()).unwrap());
        assert_eq!(iommu_table_state(&root, "DMAR"), IommuTable::NoTables);
        std::fs::create_dir_all(root.join(TABLES_DIR)).unwrap();
        assert_eq!(iommu_table_state(&root, "DMAR"), IommuTable::Missing);
        std::fs::write(root.join("/sys/firmware/acpi/tables/IVRS"), "IVRS").unwrap();
        assert_eq!(
            iommu_table_state(&root, iommu_table(CpuVendor::Amd)),
            IommuTable::Present
        );
    }
}
