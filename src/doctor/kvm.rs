//! KVM as the host runs it: the vendor module loaded, /dev/kvm, and the module parameters the plan sets.

use super::Facts;
use super::boot::KARG;
use super::firmware::CPU_VIRTUALIZATION;
use crate::checks::{Check, Finding};
use crate::host::cpu::CpuVendor;
use crate::host::kernel;
use crate::host::kvm::{self, DevKvm};
use crate::kargs::{Karg, KernelArg};

pub(super) static KVM: Check<Facts> = Check {
    name: "kvm",
    verifies: "the CPU vendor's KVM module (kvm_intel, kvm_amd) is loaded: the firmware lets KVM \
               run",
    requires: &[],
    judge: |facts, earlier| {
        let vendor = facts.plan.cpu_vendor;
        let module = kvm::vendor_module(vendor);
        if kernel::module_present(&facts.root, &facts.loaded, module) {
            let registered = match kvm::registered(&facts.root) {
                true => ", /dev/kvm registered (misc 10:232)",
                false => "",
            };
            return Ok(vec![Finding::pass(format!("{module} loaded{registered}"))]);
        }
        let (flag, setting) = match vendor {
            CpuVendor::Intel => ("vmx", "VT-x (Intel Virtualization Technology)"),
            CpuVendor::Amd => ("svm", "SVM Mode"),
        };
        let finding = match facts.cpu.virtualization {
            // AMD keeps svm in the flags when the firmware disabled SVM; kvm_amd then refuses to load.
            true => Finding::fail(
                format!(
                    "{flag} is in the CPU flags but {module} is not loaded: the firmware may have \
                     {setting} disabled"
                ),
                format!(
                    "enable {setting} in the firmware setup; `sudo modprobe {module}` and the \
                     kernel's log show why it does not load"
                ),
            ),
            false => Finding::fail(
                format!("{module} is not loaded"),
                format!("enable {setting} in the firmware setup"),
            ),
        };
        Ok(vec![
            finding.because(earlier.failed(&CPU_VIRTUALIZATION, None)),
        ])
    },
};

pub(super) static DEV_KVM: Check<Facts> = Check {
    name: "dev-kvm",
    verifies: "/dev/kvm opens read-write, as QEMU opens it",
    requires: &[&KVM],
    judge: |facts, _| {
        let path = facts.root.join(kvm::DEV_KVM);
        Ok(vec![match kvm::dev_kvm(&facts.root) {
            DevKvm::Usable => Finding::pass(format!("{path} opens read-write")),
            DevKvm::NoDevDir => Finding::not_run(format!(
                "{} has no /dev (a copied or captured tree): only a running host has device nodes",
                facts.root.path()
            )),
            DevKvm::Missing => Finding::fail(
                format!("no {path} although KVM is loaded"),
                "udev makes /dev/kvm from /sys/class/misc/kvm: `sudo udevadm trigger`, or reboot",
            ),
            DevKvm::Refused(reason) => Finding::fail(
                reason,
                "run doctor as root; VM users need to be in the kvm group (or /dev/kvm mode 0666)",
            ),
        }])
    },
};

pub(super) static PARAMS: Check<Facts> = Check {
    name: "kvm-param",
    verifies: "each planned KVM module argument (kvm_amd.npt, kvm.ignore_msrs, ...) is the \
               module's effective value",
    requires: &[&KVM],
    judge: |facts, earlier| {
        let mut findings = Vec::new();
        for karg in facts.plan.kargs.iter() {
            let key = karg.normalized_key();
            let Some((module, name)) = key.split_once('.') else {
                continue;
            };
            if !matches!(module, "kvm" | "kvm_amd" | "kvm_intel") {
                continue;
            }
            let finding = param(facts, karg, module, name)?;
            findings.push(
                finding
                    .about(format!("{module}.{name}"))
                    .because(earlier.failed(&KARG, Some(karg.as_str()))),
            );
        }
        Ok(findings)
    },
};

fn param(facts: &Facts, karg: &Karg, module: &str, name: &str) -> anyhow::Result<Finding> {
    let asked = karg.value().unwrap_or("1");
    let dir = camino::Utf8Path::new(kernel::SYS_MODULE_DIR)
        .join(module)
        .join("parameters");
    if !facts.root.is_dir(&dir) {
        return Ok(Finding::not_run(format!(
            "no {} (a tree without the module's parameters)",
            facts.root.join(&dir)
        )));
    }
    Ok(match kvm::param(&facts.root, module, name)? {
        Some(value) if kvm::same_value(asked, &value) => Finding::pass(format!("reads {value}")),
        Some(value) => Finding::warn(
            format!(
                "{karg} was asked for, but the module reads {value}: {}",
                why_off(name)
            ),
            how_on(name),
        ),
        None => Finding::warn(
            format!("{module} has no parameter {name} on this kernel: {karg} does nothing"),
            "stop asking for it in the config",
        ),
    })
}

/// Why the kernel turns a feature off although asked.
fn why_off(name: &str) -> &'static str {
    match name {
        "sev" => "the firmware has SEV (or SME) off, or the CPU has none",
        "avic" => "the CPU has no AVIC, or the kernel turned it off for this CPU",
        "npt" | "nested" => "the CPU or the firmware does not offer it",
        _ => "the module did not take the value",
    }
}

fn how_on(name: &str) -> &'static str {
    match name {
        "sev" => "enable SEV and SME in the firmware setup, or set cpu.sev = false to stop asking",
        "avic" => "AVIC needs a CPU that has it: set cpu.avic = false to stop asking",
        "npt" => "set cpu.npt = false to stop asking",
        "nested" => "set cpu.nested = false to stop asking",
        _ => "check the firmware setup and the kernel's log",
    }
}
