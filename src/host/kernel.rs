//! The running kernel: its command line and its loaded modules.

use anyhow::Result;

use crate::kargs::{HostKarg, split_cmdline};
use crate::root::Root;

pub const CMDLINE: &str = "/proc/cmdline";
pub const MODULES: &str = "/proc/modules";
pub const SYS_MODULE_DIR: &str = "/sys/module";

/// The kernel arguments the host booted with.
pub fn cmdline(root: &Root) -> Result<Vec<HostKarg>> {
    Ok(split_cmdline(&root.read(CMDLINE)?))
}

/// Names of the loadable modules in memory, as /proc/modules writes them (`vfio_pci`). A kernel without
/// module support has no /proc/modules.
pub fn loaded_modules(root: &Root) -> Result<Vec<String>> {
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
pub fn module_name(name: &str) -> String {
    name.replace('-', "_")
}

/// A module is present when it is loaded, or built in: built-in modules with parameters (vfio_pci is one)
/// show up in /sys/module without a line in /proc/modules.
pub fn module_present(root: &Root, loaded: &[String], name: &str) -> bool {
    let name = module_name(name);
    loaded.contains(&name) || root.is_dir(camino::Utf8Path::new(SYS_MODULE_DIR).join(&name))
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
            "vfio_pci 16384 0 - Live 0x0000000000000000\nvfio 45056 2 vfio_pci,vfio_iommu_type1, Live 0x0\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.join("/sys/module/vendor_reset")).unwrap();
        let loaded = loaded_modules(&root).unwrap();
        assert_eq!(loaded, ["vfio_pci", "vfio"]);
        assert!(module_present(&root, &loaded, "vfio-pci"));
        assert!(module_present(&root, &loaded, "vendor-reset"));
        assert!(!module_present(&root, &loaded, "vfio_iommu_type1"));
    }
}
