//! The CPU and firmware: virtualization extensions, UEFI or CSM, Secure Boot and the kernel's lockdown.

use super::Facts;
use crate::checks::{Check, Finding};
use crate::host::firmware::{self, SecureBoot};

pub(super) static CPU_VIRTUALIZATION: Check<Facts> = Check {
    name: "cpu-virtualization",
    verifies: "the CPU flags have vmx (Intel VT-x) or svm (AMD-V)",
    requires: &[],
    judge: |facts, _| {
        Ok(vec![match facts.cpu.virtualization {
            true => Finding::pass("vmx/svm flag present"),
            false => Finding::fail(
                "the CPU flags have neither vmx (Intel VT-x) nor svm (AMD-V)",
                "enable Intel VT-x or AMD SVM in the firmware setup",
            ),
        }])
    },
};

pub(super) static UEFI: Check<Facts> = Check {
    name: "uefi",
    verifies: "the host booted through UEFI, not the legacy BIOS (CSM)",
    requires: &[],
    judge: |facts, _| {
        Ok(vec![match firmware::uefi_boot(&facts.root) {
            true => Finding::pass("booted through UEFI"),
            false => Finding::warn(
                "booted in legacy BIOS mode (CSM; no /sys/firmware/efi)",
                "switch the firmware to UEFI boot (CSM off): GPU passthrough needs a GPU with UEFI firmware and works best this way",
            ),
        }])
    },
};

pub(super) static SECURE_BOOT: Check<Facts> = Check {
    name: "secure-boot",
    verifies: "Secure Boot's state, and that it lets the planned out-of-tree modules load",
    requires: &[],
    judge: |facts, _| {
        if !firmware::uefi_boot(&facts.root) {
            return Ok(vec![Finding::pass("no UEFI boot: no Secure Boot")]);
        }
        Ok(vec![match firmware::secure_boot(&facts.root)? {
            SecureBoot::Unknown => Finding::not_run(format!(
                "no SecureBoot variable in {} (efivarfs not mounted, or a tree without it)",
                facts.root.join(firmware::EFIVARS_DIR)
            )),
            SecureBoot::Off => Finding::pass("off"),
            SecureBoot::SetupMode => {
                Finding::pass("the firmware is in setup mode: nothing is enforced")
            }
            SecureBoot::On if facts.plans_modules() => Finding::warn(
                format!(
                    "on: the kernel loads only signed modules, and the plan builds {}",
                    module_names(facts)
                ),
                "sign the module with a key enrolled as MOK, or turn Secure Boot off in the firmware setup",
            ),
            SecureBoot::On => {
                Finding::pass("on; the plan builds no out-of-tree module, so nothing needs signing")
            }
        }])
    },
};

pub(super) static LOCKDOWN: Check<Facts> = Check {
    name: "lockdown",
    verifies: "the kernel's lockdown mode, and that it lets the planned out-of-tree modules load",
    requires: &[],
    judge: |facts, _| {
        let Some(mode) = firmware::lockdown(&facts.root)? else {
            return Ok(vec![Finding::not_run(format!(
                "no {} (securityfs not mounted, or a kernel without the lockdown LSM)",
                facts.root.join(firmware::LOCKDOWN)
            ))]);
        };
        Ok(vec![match mode.as_str() {
            "none" => Finding::pass("none"),
            _ if facts.plans_modules() => Finding::warn(
                format!(
                    "{mode}: the kernel loads only signed modules, and the plan builds {}",
                    module_names(facts)
                ),
                "sign the module with a key enrolled as MOK, or turn Secure Boot off in the firmware setup (lockdown follows it)",
            ),
            _ => Finding::pass(format!(
                "{mode} (VFIO works under it; the plan adds no module)"
            )),
        }])
    },
};

fn module_names(facts: &Facts) -> String {
    facts
        .plan
        .modules
        .iter()
        .map(|m| m.label())
        .collect::<Vec<_>>()
        .join(", ")
}
