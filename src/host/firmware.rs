//! Firmware facts: whether the host booted through UEFI.

use crate::root::Root;

pub const EFI_DIR: &str = "/sys/firmware/efi";

/// `/sys/firmware/efi` exists only when the kernel was started by UEFI firmware.
pub fn uefi_boot(root: &Root) -> bool {
    root.is_dir(EFI_DIR)
}
