//! The IOMMU from the firmware up: its ACPI table, the units the kernel's driver registered, the groups,
//! interrupt remapping, whether `iommu=pt` took effect, and what the kernel logged about it.

use std::collections::BTreeMap;

use super::boot::{KARG, KARG_CONFLICTS};
use super::{APPLY_FIX, Facts};
use crate::checks::{Check, Finding};
use crate::host::acpi::{self, IommuTable};
use crate::host::irq::{self, Remapping};
use crate::host::kmsg;
use crate::host::{iommu, kvm};
use crate::kargs::KernelArg;
use crate::kargs::params::{INTEL_IOMMU, IOMMU};

pub(super) static ACPI_TABLE: Check<Facts> = Check {
    name: "iommu-firmware",
    verifies: "the firmware describes the IOMMU in its ACPI table (DMAR on Intel, IVRS on AMD): \
               VT-d/AMD-Vi is on in its setup",
    requires: &[],
    judge: |facts, _| {
        let table = acpi::iommu_table(facts.plan.cpu_vendor);
        Ok(vec![match acpi::iommu_table_state(&facts.root, table) {
            IommuTable::Present => Finding::pass(format!("ACPI {table} table present")),
            IommuTable::Missing => Finding::fail(
                format!(
                    "no ACPI {table} table: the firmware has the IOMMU off (or the board has none)"
                ),
                enable_in_firmware(),
            ),
            IommuTable::NoTables => Finding::not_run(format!(
                "no {} (no ACPI, or a tree without it)",
                facts.root.join(acpi::TABLES_DIR)
            )),
        }])
    },
};

pub(super) static UNITS: Check<Facts> = Check {
    name: "iommu-units",
    verifies: "the kernel's IOMMU driver registered the IOMMU units (/sys/class/iommu)",
    requires: &[],
    judge: |facts, earlier| {
        let units = iommu::units(&facts.root)?;
        if !units.is_empty() {
            return Ok(vec![Finding::pass(units.join(", "))]);
        }
        // A running kernel with groups always has units: a tree with groups and none did not copy them (a tree
        // without the directory stands for an empty one, as git keeps no empty directories).
        if facts.topology.iommu_enabled() {
            return Ok(vec![Finding::not_run(format!(
                "no {} although there are IOMMU groups (a tree without it)",
                facts.root.join(iommu::UNITS_DIR)
            ))]);
        }
        let intel = intel_iommu_karg(facts);
        let mut causes = vec![(&ACPI_TABLE, None), (&KARG_CONFLICTS, None)];
        if let Some(karg) = &intel {
            causes.push((&KARG, Some(karg.as_str())));
        }
        let cause = earlier.first_failed(causes);
        Ok(vec![
            Finding::fail(
                "no IOMMU unit registered: the kernel's IOMMU driver did not take the IOMMU",
                kernel_side_fix(facts),
            )
            .because(cause),
        ])
    },
};

pub(super) static GROUPS: Check<Facts> = Check {
    name: "iommu",
    verifies: "the kernel made IOMMU groups",
    requires: &[],
    judge: |facts, earlier| {
        let groups = facts.topology.groups.len();
        if groups > 0 {
            return Ok(vec![Finding::pass(format!("{groups} IOMMU groups"))]);
        }
        let table = acpi::iommu_table(facts.plan.cpu_vendor);
        let finding = match acpi::iommu_table_state(&facts.root, table) {
            IommuTable::Present => Finding::fail(
                format!(
                    "no IOMMU groups although the firmware has the IOMMU on ({table}): a \
                     kernel-side problem"
                ),
                kernel_side_fix(facts),
            ),
            _ => Finding::fail(
                "no IOMMU groups: the IOMMU is off",
                format!(
                    "{} and boot with {}",
                    enable_in_firmware(),
                    crate::plan::iommu_kargs(facts.plan.cpu_vendor).join(" ")
                ),
            ),
        };
        Ok(vec![finding.because(earlier.first_failed([
            (&UNITS, None),
            (&ACPI_TABLE, None),
            (&KARG_CONFLICTS, None),
        ]))])
    },
};

pub(super) static INTERRUPT_REMAPPING: Check<Facts> = Check {
    name: "interrupt-remapping",
    verifies: "device interrupts go through the IOMMU's interrupt remapping, without which VFIO \
               refuses to assign devices",
    requires: &[],
    judge: |facts, earlier| {
        let finding = match irq::remapping(&facts.root)? {
            Remapping::On(chip) => Finding::pass(format!("interrupts are remapped ({chip})")),
            Remapping::Unknown => {
                return Ok(vec![Finding::not_run(format!(
                    "no {} (kernel before 4.17, or a tree without it)",
                    facts.root.join(irq::IRQ_DIR)
                ))]);
            }
            Remapping::Off { count } => {
                let unsafe_allowed =
                    kvm::param(&facts.root, "vfio_iommu_type1", "allow_unsafe_interrupts")?
                        .is_some_and(|v| kvm::same_value("1", &v));
                let detail = format!("none of {count} interrupt chips remaps (no IR-… chip)");
                match unsafe_allowed {
                    true => Finding::warn(
                        format!(
                            "{detail}; vfio_iommu_type1.allow_unsafe_interrupts lets VFIO assign \
                             devices anyway, without protection from a guest's forged interrupts"
                        ),
                        "enable interrupt remapping in the firmware (it comes with VT-d/AMD-Vi and \
                         x2APIC)",
                    ),
                    false => Finding::fail(
                        format!("{detail}: VFIO refuses to assign devices"),
                        "enable interrupt remapping in the firmware (it comes with VT-d/AMD-Vi and \
                         x2APIC); a platform without it needs \
                         vfio_iommu_type1.allow_unsafe_interrupts=1 (kargs.extra), which accepts \
                         the risk",
                    ),
                }
            }
        };
        Ok(vec![finding.because(earlier.failed(&GROUPS, None))])
    },
};

pub(super) static PASSTHROUGH: Check<Facts> = Check {
    name: "iommu-passthrough",
    verifies: "iommu=pt took effect: the groups' default domain is identity",
    requires: &[&GROUPS],
    judge: |facts, earlier| {
        let Some(pt) = facts
            .plan
            .kargs
            .iter()
            .find(|k| k.is(&IOMMU) && k.tokens().contains(&"pt"))
            .map(|k| k.to_string())
        else {
            return Ok(Vec::new());
        };
        let groups: BTreeMap<u32, Vec<_>> = facts.topology.groups.iter().cloned().collect();
        let types = iommu::group_types(&facts.root, &groups)?;
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for kind in types.values().flatten() {
            *count.entry(kind.as_str()).or_default() += 1;
        }
        if count.is_empty() {
            return Ok(vec![Finding::not_run(
                "the groups have no type attribute (kernel before 5.11, or a tree without it)",
            )]);
        }
        let summary = count
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect::<Vec<_>>()
            .join(", ");
        let finding = match count.get("identity") {
            Some(_) if count.len() == 1 => {
                Finding::pass(format!("every group is identity ({summary})"))
            }
            // The kernel keeps translation for devices it does not trust (external ports), whatever iommu=pt says.
            Some(_) => Finding::pass(format!(
                "groups: {summary}; those not identity hold devices the kernel keeps translated \
                 (untrusted, external)"
            )),
            None => Finding::fail(
                format!("no group is identity ({summary}): iommu=pt did not take effect"),
                APPLY_FIX,
            ),
        };
        Ok(vec![finding.because(earlier.failed(&KARG, Some(&pt)))])
    },
};

pub(super) static KERNEL_LOG: Check<Facts> = Check {
    name: "kernel-log",
    verifies: "the kernel's log of this boot shows no IOMMU faults, refused IOMMU options or IOMMU \
               firmware bugs",
    requires: &[],
    judge: |facts, _| {
        let log = match facts.kernel_log() {
            Ok(log) => log,
            Err(reasons) => {
                return Ok(vec![Finding::not_run(format!(
                    "no kernel log: {}",
                    reasons.join("; ")
                ))]);
            }
        };
        let mut findings = Vec::new();
        if log.fault_count > 0 {
            findings.push(
                Finding::warn(
                    format!(
                        "{} IOMMU faults in {}, the first: {}",
                        log.fault_count,
                        log.source,
                        log.faults.join(" | ")
                    ),
                    "a device did DMA the IOMMU did not map: a device given to a VM that the host \
                     still drives, or firmware reserved memory (RMRR) the device needs; read the \
                     lines around it",
                )
                .about("faults"),
            );
        }
        if !log.refused.is_empty() {
            findings.push(
                Finding::warn(
                    format!("the IOMMU driver refused: {}", log.refused.join(" | ")),
                    "remove the refused option from the host's kernel arguments (amd_iommu=on is \
                     not an option)",
                )
                .about("refused-options"),
            );
        }
        if !log.firmware_bugs.is_empty() {
            findings.push(
                Finding::warn(
                    format!(
                        "the kernel reports firmware bugs: {}",
                        log.firmware_bugs.join(" | ")
                    ),
                    "update the firmware; the IOMMU may work partly or not at all until then",
                )
                .about("firmware-bugs"),
            );
        }
        if findings.is_empty() {
            findings.push(Finding::pass(summary(log)));
        }
        Ok(findings)
    },
};

fn summary(log: &kmsg::KernelLog) -> String {
    let mut parts = vec![format!("{} lines from {}", log.lines, log.source)];
    parts.extend(log.enabled.first().cloned());
    parts.extend(log.domain.as_ref().map(|d| format!("default domain {d}")));
    parts.extend(log.remapping.first().cloned());
    parts.join("; ")
}

fn enable_in_firmware() -> String {
    "enable the IOMMU in the firmware setup (Intel: VT-d; AMD: IOMMU or AMD-Vi)".into()
}

/// The planned `intel_iommu=` karg's outcome name.
fn intel_iommu_karg(facts: &Facts) -> Option<String> {
    facts.planned_karg(&INTEL_IOMMU)
}

fn kernel_side_fix(facts: &Facts) -> String {
    format!(
        "boot with {} and without iommu=off or intel_iommu=off/amd_iommu=off (see the karg \
         checks); the kernel's log says why its IOMMU driver stopped",
        crate::plan::iommu_kargs(facts.plan.cpu_vendor).join(" ")
    )
}
