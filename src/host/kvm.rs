//! KVM as the host runs it: the vendor module (`kvm_intel`, `kvm_amd`), its effective parameters under
//! `/sys/module/<module>/parameters`, the misc device the kernel registers for `/dev/kvm`, and the device node.
//!
//! The CPU flag alone is not enough: on AMD, `svm` stays in /proc/cpuinfo while the firmware has SVM disabled,
//! and kvm_amd then refuses to load ("SVM disabled (by BIOS) in MSR_VM_CR"). Intel kernels since 5.6 clear
//! `vmx` instead and log it.

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};

use crate::host::cpu::CpuVendor;
use crate::host::kernel::SYS_MODULE_DIR;
use crate::root::{Device, Root};

/// The kernel registers this misc device (major 10, minor 232) when a vendor module initialised KVM: udev
/// makes /dev/kvm from it.
pub(crate) const MISC_DIR: &str = "/sys/class/misc/kvm";
pub(crate) const DEV_KVM: &str = "/dev/kvm";

/// The module that runs KVM on a vendor's CPUs.
pub(crate) fn vendor_module(vendor: CpuVendor) -> &'static str {
    match vendor {
        CpuVendor::Intel => "kvm_intel",
        CpuVendor::Amd => "kvm_amd",
    }
}

/// Whether the kernel registered the KVM device.
pub(crate) fn registered(root: &Root) -> bool {
    root.is_dir(MISC_DIR)
}

/// A module parameter's effective value, trimmed; `None` when the module (or the parameter) is not there.
pub(crate) fn param(root: &Root, module: &str, name: &str) -> Result<Option<String>> {
    let path = Utf8PathBuf::from(SYS_MODULE_DIR)
        .join(module)
        .join("parameters")
        .join(name);
    Ok(root.read_optional(path)?.map(|v| v.trim().to_owned()))
}

/// Whether an effective value is what a kernel argument asked for. Boolean parameters read `Y`/`N` whatever
/// was written (`1`, `y`, `on`); integer ones (kvm_amd's `nested` on older kernels) read back as written.
pub(crate) fn same_value(asked: &str, effective: &str) -> bool {
    match (as_bool(asked), as_bool(effective)) {
        (Some(a), Some(e)) => a == e,
        _ => asked == effective,
    }
}

/// The kernel's `kstrtobool`: y/Y/1/on true, n/N/0/off false.
fn as_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "y" | "1" | "on" | "yes" | "true" => Some(true),
        "n" | "0" | "off" | "no" | "false" => Some(false),
        _ => None,
    }
}

/// What opening /dev/kvm under the root found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DevKvm {
    /// Opened read-write, as QEMU opens it.
    Usable,
    /// The root has no /dev at all (a captured or copied tree): the node cannot be judged.
    NoDevDir,
    Missing,
    /// There, but it did not open (permissions, not a character device): the reason.
    Refused(String),
}

/// Opens /dev/kvm through the root's named device exception and closes it again.
pub(crate) fn dev_kvm(root: &Root) -> DevKvm {
    if !root.is_dir("/dev") {
        return DevKvm::NoDevDir;
    }
    if !root.exists(Utf8Path::new(DEV_KVM)) {
        return DevKvm::Missing;
    }
    match root.open_device(Device::Kvm) {
        Ok(_) => DevKvm::Usable,
        Err(e) => DevKvm::Refused(format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_compare_as_the_kernel_reads_them() {
        assert!(same_value("1", "Y"));
        assert!(same_value("0", "N"));
        assert!(!same_value("1", "N"));
        assert!(same_value("1", "1"));
        assert!(!same_value("2", "1"));
    }

    #[test]
    fn parameters_and_the_device_are_read_under_the_root() {
        let (_dir, root) = Root::temporary();
        assert_eq!(dev_kvm(&root), DevKvm::NoDevDir);
        std::fs::create_dir_all(root.join("/dev")).unwrap();
        assert_eq!(dev_kvm(&root), DevKvm::Missing);
        std::fs::write(root.join(DEV_KVM), "").unwrap();
        assert!(
            matches!(dev_kvm(&root), DevKvm::Refused(m) if m.contains("not a character device"))
        );
        // The tests run as root: a node with /dev/null's numbers opens read-write like /dev/kvm.
        std::fs::remove_file(root.join(DEV_KVM)).unwrap();
        let node = std::ffi::CString::new(root.join(DEV_KVM).as_str()).unwrap();
        // SAFETY: a valid NUL-terminated path; makedev(1, 3) is /dev/null.
        let made =
            unsafe { libc::mknod(node.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
        assert_eq!(made, 0, "mknod needs root");
        assert_eq!(dev_kvm(&root), DevKvm::Usable);

        let params = root.join("/sys/module/kvm_amd/parameters");
        std::fs::create_dir_all(&params).unwrap();
        std::fs::write(params.join("npt"), "Y\n").unwrap();
        assert_eq!(
            param(&root, "kvm_amd", "npt").unwrap().as_deref(),
            Some("Y")
        );
        assert_eq!(param(&root, "kvm_amd", "sev").unwrap(), None);
        assert_eq!(param(&root, "kvm_intel", "nested").unwrap(), None);
    }
}
