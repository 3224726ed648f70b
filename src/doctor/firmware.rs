//! The CPU and firmware: virtualization extensions, UEFI or CSM, Secure Boot and the kernel's lockdown.

use super::Facts;
use crate::checks::{Check, Finding};
use crate::host::firmware::{self, SecureBoot};
use crate::host::keys;

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
                "switch the firmware to UEFI boot (CSM off): GPU passthrough needs a GPU with UEFI \
                 firmware and works best this way",
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
            SecureBoot::On if facts.plans_modules() => Finding::pass(format!(
                "on: the kernel loads only signed modules, and the plan builds {} (module-signer \
                 checks its signature)",
                module_names(facts)
            )),
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
            _ if facts.plans_modules() => Finding::pass(format!(
                "{mode}: the kernel loads only signed modules, and the plan builds {} \
                 (module-signer checks its signature)",
                module_names(facts)
            )),
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

/// Where the kernel says whether it enforces module signatures (Debian's and Fedora's kernels set it under
/// Secure Boot).
const SIG_ENFORCE: &str = "/sys/module/module/parameters/sig_enforce";

pub(super) static MODULE_SIGNER: Check<Facts> = Check {
    name: "module-signer",
    verifies: "when the kernel loads only signed modules, each planned out-of-tree module is \
               signed by a key it trusts, and it refused none",
    requires: &[],
    judge: |facts, _| {
        if !facts.plans_modules() {
            return Ok(Vec::new());
        }
        let Some(why) = signatures_enforced(facts)? else {
            return Ok(vec![Finding::pass(
                "the kernel loads unsigned modules (no Secure Boot, no lockdown, sig_enforce off)",
            )]);
        };
        let trusted = keys::trusted_signers(&facts.root)?;
        let mut findings: Vec<Finding> = facts
            .plan
            .modules
            .iter()
            .flat_map(|m| m.kernel_modules())
            .map(|module| signer_finding(facts, module, &why, trusted.as_deref()).about(module))
            .collect();
        if let Ok(log) = facts.kernel_log()
            && !log.module_refusals.is_empty()
        {
            findings.push(
                Finding::fail(
                    format!(
                        "the kernel refused modules: {}",
                        log.module_refusals.join(" | ")
                    ),
                    SIGN_FIX,
                )
                .about("refused"),
            );
        }
        Ok(findings)
    },
};

const SIGN_FIX: &str = "sign the modules with your Machine Owner Key: `passthru-image mok new \
     DIR`, [signing] in passthru.toml, rebuild the image; enroll the key once with `sudo mokutil \
     --import DIR/MOK.der` and reboot";

/// Why the kernel loads only signed modules, or `None` when it loads any.
fn signatures_enforced(facts: &Facts) -> anyhow::Result<Option<String>> {
    if firmware::uefi_boot(&facts.root) && firmware::secure_boot(&facts.root)? == SecureBoot::On {
        return Ok(Some("Secure Boot is on".into()));
    }
    if let Some(mode) = firmware::lockdown(&facts.root)?
        && mode != "none"
    {
        return Ok(Some(format!("the kernel is locked down ({mode})")));
    }
    let enforce = facts.root.read_optional(SIG_ENFORCE)?;
    Ok((enforce.as_deref().map(str::trim) == Some("Y")).then(|| "sig_enforce is on".into()))
}

/// One module: signed, by a key in the kernel's keyrings.
fn signer_finding(facts: &Facts, module: &str, why: &str, trusted: Option<&[String]>) -> Finding {
    let signer = match keys::module_signer(&facts.root, facts.machine, module) {
        Ok(signer) => signer,
        Err(e) => {
            return Finding::not_run(format!(
                "cannot read its signature with modinfo: {}",
                format!("{e:#}").lines().next().unwrap_or_default()
            ));
        }
    };
    let Some(signer) = signer else {
        return Finding::fail(
            format!("{why}, and {module} is not signed: the kernel refuses it"),
            SIGN_FIX,
        );
    };
    match trusted {
        None => Finding::not_run(format!(
            "signed by \"{signer}\"; no {} to tell whether the kernel trusts it",
            facts.root.join(keys::PROC_KEYS)
        )),
        Some(keys) if keys.contains(&signer) => {
            Finding::pass(format!("signed by \"{signer}\", a key the kernel holds"))
        }
        Some(_) => Finding::fail(
            format!(
                "{why}, and {module} is signed by \"{signer}\", a key the kernel does not hold"
            ),
            "enroll that key's certificate once with `sudo mokutil --import MOK.der` and reboot \
             (MokManager asks for the password), or rebuild with the key that is enrolled",
        ),
    }
}
