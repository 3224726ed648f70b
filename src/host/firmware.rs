//! Firmware facts: UEFI or legacy (CSM) boot, Secure Boot, the kernel's lockdown, and the machine's chassis.

use anyhow::Result;
use camino::Utf8Path;

use crate::root::Root;

pub(crate) const EFI_DIR: &str = "/sys/firmware/efi";
pub(crate) const EFIVARS_DIR: &str = "/sys/firmware/efi/efivars";
/// The EFI global variable GUID; `SecureBoot` and `SetupMode` live under it.
const GLOBAL_GUID: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
pub(crate) const LOCKDOWN: &str = "/sys/kernel/security/lockdown";
pub(crate) const CHASSIS_TYPE: &str = "/sys/class/dmi/id/chassis_type";

/// `/sys/firmware/efi` exists only when the kernel was started by UEFI firmware.
pub(crate) fn uefi_boot(root: &Root) -> bool {
    root.is_dir(EFI_DIR)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecureBoot {
    /// Enforced: shim, the kernel and every module must be signed by a trusted key.
    On,
    Off,
    /// The firmware is in setup mode (no platform key): nothing is enforced.
    SetupMode,
    /// No efivars under the root (legacy boot, efivarfs not mounted, or a tree that did not copy them).
    Unknown,
}

/// Reads the `SecureBoot` and `SetupMode` EFI variables: 4 bytes of attributes, then the value byte.
pub(crate) fn secure_boot(root: &Root) -> Result<SecureBoot> {
    let Some(enabled) = efi_flag(root, "SecureBoot")? else {
        return Ok(SecureBoot::Unknown);
    };
    Ok(match (enabled, efi_flag(root, "SetupMode")?) {
        (_, Some(true)) => SecureBoot::SetupMode,
        (true, _) => SecureBoot::On,
        (false, _) => SecureBoot::Off,
    })
}

fn efi_flag(root: &Root, name: &str) -> Result<Option<bool>> {
    let path = Utf8Path::new(EFIVARS_DIR).join(format!("{name}-{GLOBAL_GUID}"));
    Ok(root
        .read_bytes_optional(path)?
        .and_then(|file| file.bytes.get(4).copied())
        .map(|value| value == 1))
}

/// The kernel's lockdown mode: `none`, `integrity` (no unsigned modules, no /dev/mem) or `confidentiality`.
/// `None` without securityfs or without the lockdown LSM.
pub(crate) fn lockdown(root: &Root) -> Result<Option<String>> {
    Ok(root.read_optional(LOCKDOWN)?.map(|text| selected(&text)))
}

/// The bracketed word of `none [integrity] confidentiality`.
fn selected(text: &str) -> String {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
        .unwrap_or(text.trim())
        .to_owned()
}

/// Whether the DMI chassis type is a portable one: laptop, notebook, sub notebook, convertible, detachable.
/// `None` when the firmware gives no DMI table.
pub(crate) fn portable(root: &Root) -> Result<Option<bool>> {
    let Some(text) = root.read_optional(CHASSIS_TYPE)? else {
        return Ok(None);
    };
    // SMBIOS 3.x, 7.4.1: 8 Portable, 9 Laptop, 10 Notebook, 14 Sub Notebook, 31 Convertible, 32 Detachable.
    Ok(Some(matches!(
        text.trim().parse::<u8>(),
        Ok(8 | 9 | 10 | 14 | 31 | 32)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_boot_is_read_from_its_efi_variables() {
        let (_dir, root) = Root::temporary();
        assert_eq!(secure_boot(&root).unwrap(), SecureBoot::Unknown);
        std::fs::create_dir_all(root.join(EFIVARS_DIR)).unwrap();
        let var = |name: &str, value: u8| {
            std::fs::write(
                root.join(format!("{EFIVARS_DIR}/{name}-{GLOBAL_GUID}")),
                [6, 0, 0, 0, value],
            )
            .unwrap()
        };
        var("SecureBoot", 1);
        assert_eq!(secure_boot(&root).unwrap(), SecureBoot::On);
        var("SetupMode", 0);
        assert_eq!(secure_boot(&root).unwrap(), SecureBoot::On);
        var("SecureBoot", 0);
        assert_eq!(secure_boot(&root).unwrap(), SecureBoot::Off);
        var("SetupMode", 1);
        assert_eq!(secure_boot(&root).unwrap(), SecureBoot::SetupMode);
    }

    #[test]
    fn lockdown_and_chassis() {
        let (_dir, root) = Root::temporary();
        assert_eq!(lockdown(&root).unwrap(), None);
        assert_eq!(portable(&root).unwrap(), None);
        std::fs::create_dir_all(root.join("/sys/kernel/security")).unwrap();
        std::fs::write(root.join(LOCKDOWN), "none [integrity] confidentiality\n").unwrap();
        assert_eq!(lockdown(&root).unwrap().as_deref(), Some("integrity"));
        std::fs::create_dir_all(root.join("/sys/class/dmi/id")).unwrap();
        std::fs::write(root.join(CHASSIS_TYPE), "10\n").unwrap();
        assert_eq!(portable(&root).unwrap(), Some(true));
        std::fs::write(root.join(CHASSIS_TYPE), "3\n").unwrap();
        assert_eq!(portable(&root).unwrap(), Some(false));
    }
}
