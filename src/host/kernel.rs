//! The running kernel: its command line, its loaded modules and whether it carries the ACS override patch.

use anyhow::Result;

use crate::kargs::{HostKarg, split_cmdline};
use crate::root::Root;

pub(crate) const CMDLINE: &str = "/proc/cmdline";
pub(crate) const MODULES: &str = "/proc/modules";
pub(crate) const SYS_MODULE_DIR: &str = "/sys/module";
pub(crate) const KALLSYMS: &str = "/proc/kallsyms";

/// The function the ACS override patch adds (`early_param("pcie_acs_override", ...)`): a kernel whose symbols
/// name it takes the `pcie_acs_override=` argument, and needs no replacement (Bazzite's does). Image builds
/// look for it in the image kernel's System.map, live mode in /proc/kallsyms.
pub(crate) const ACS_OVERRIDE_SYMBOL: &str = "pcie_acs_override_setup";

/// The kernel arguments the host booted with.
pub(crate) fn cmdline(root: &Root) -> Result<Vec<HostKarg>> {
    Ok(split_cmdline(&root.read(CMDLINE)?))
}

/// Names of the loadable modules in memory, as /proc/modules writes them (`vfio_pci`). A kernel without
/// module support has no /proc/modules.
pub(crate) fn loaded_modules(root: &Root) -> Result<Vec<String>> {
    if !root.exists(MODULES) {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    for line in root.lines(MODULES)? {
        if let Some(name) = line?.split_whitespace().next() {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// The kernel's spelling of a module name: `-` and `_` are the same, /proc/modules writes `_`.
pub(crate) fn module_name(name: &str) -> String {
    name.replace('-', "_")
}

/// A module is present when it is loaded, or built in: built-in modules with parameters (vfio_pci is one)
/// show up in /sys/module without a line in /proc/modules.
pub(crate) fn module_present(root: &Root, loaded: &[String], name: &str) -> bool {
    let name = module_name(name);
    loaded.contains(&name) || root.is_dir(camino::Utf8Path::new(SYS_MODULE_DIR).join(&name))
}

/// Whether the running kernel carries the ACS override patch: [`ACS_OVERRIDE_SYMBOL`] among its symbols.
/// Without /proc/kallsyms (a kernel built without CONFIG_KALLSYMS) this cannot be told, and the answer is no:
/// the caller then plans the replacement kernel, as it would without this check.
pub(crate) fn has_acs_override(root: &Root) -> Result<bool> {
    if !root.exists(KALLSYMS) {
        return Ok(false);
    }
    for line in root.lines(KALLSYMS)? {
        if names_symbol(&line?, ACS_OVERRIDE_SYMBOL) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A kallsyms or System.map line (`ADDRESS TYPE NAME [MODULE]`) for `symbol`, also under a compiler suffix
/// (`NAME.isra.0`, `NAME.cold`) that an optimised build may give a static function.
fn names_symbol(line: &str, symbol: &str) -> bool {
    line.split_whitespace()
        .nth(2)
        .and_then(|name| name.strip_prefix(symbol))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_module_names_from_proc_modules_lines() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(camino::Utf8Path::from_path(dir.path()).unwrap());
        std::fs::create_dir_all(root.join("/proc")).unwrap();
        std::fs::write(
            root.join(MODULES),
            "vfio_pci 16384 0 - Live 0x0000000000000000\nvfio 45056 2 vfio_pci,vfio_iommu_type1, \
             Live 0x0\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.join("/sys/module/vendor_reset")).unwrap();
        let loaded = loaded_modules(&root).unwrap();
        assert_eq!(loaded, ["vfio_pci", "vfio"]);
        assert!(module_present(&root, &loaded, "vfio-pci"));
        assert!(module_present(&root, &loaded, "vendor-reset"));
        assert!(!module_present(&root, &loaded, "vfio_iommu_type1"));
    }

    fn root_with_kallsyms(text: Option<&str>) -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(camino::Utf8Path::from_path(dir.path()).unwrap());
        if let Some(text) = text {
            std::fs::create_dir_all(root.join("/proc")).unwrap();
            std::fs::write(root.join(KALLSYMS), text).unwrap();
        }
        (dir, root)
    }

    #[test]
    fn a_kernel_with_the_acs_override_patch_names_its_setup_function() {
        // As an unprivileged reader sees it (kptr_restrict zeroes the addresses); the patch's function is
        // __init text, which kallsyms keeps.
        let patched = "0000000000000000 T pci_enable_device\n\
                       0000000000000000 t pcie_acs_override_setup\n\
                       0000000000000000 t vfio_pci_core_init\t[vfio_pci_core]\n";
        let (_dir, root) = root_with_kallsyms(Some(patched));
        assert!(has_acs_override(&root).unwrap());
        let (_dir, root) =
            root_with_kallsyms(Some("ffffffff81a3c2b0 t pcie_acs_override_setup.isra.0\n"));
        assert!(has_acs_override(&root).unwrap());
    }

    #[test]
    fn other_symbols_that_share_the_name_do_not_count() {
        let stock = "ffffffff81a3c2b0 T pci_enable_device\n\
                     ffffffff81a3c2c0 t pcie_acs_override_setup_extra\n\
                     ffffffff81a3c2d0 d __setup_str_pcie_acs_override_setup\n\
                     ffffffff81a3c2e0 t xpcie_acs_override_setup\n";
        let (_dir, root) = root_with_kallsyms(Some(stock));
        assert!(!has_acs_override(&root).unwrap());
    }

    #[test]
    fn without_kallsyms_the_kernel_counts_as_unpatched() {
        let (_dir, root) = root_with_kallsyms(None);
        assert!(!has_acs_override(&root).unwrap());
    }
}
