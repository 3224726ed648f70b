//! The devices the plan passes: there, bound to vfio-pci, in a group a VM can take, resettable; and the
//! firmware settings their memory windows show (Resizable BAR, Above 4G decoding, SR-IOV).

use std::collections::{HashMap, HashSet};

use super::Facts;
use super::boot::{KARG, MODPROBE_CONFLICTS, MODULE, binding_kargs};
use super::iommu::GROUPS;
use crate::checks::{Check, Finding, some_of};
use crate::host::bar::{self, GIB, MIB};
use crate::host::pci::{PciAddress, PciDevice};
use crate::vendor_reset;

/// Most devices a detail lists; the rest are counted.
const LISTED: usize = 8;
/// The largest BAR a GPU has without Resizable BAR (or a large fixed BAR).
const CLASSIC_BAR: u64 = 256 * MIB;

pub(super) static DEVICES: Check<Facts> = Check {
    name: "devices",
    verifies: "the plan binds some device to vfio-pci",
    requires: &[],
    judge: |facts, _| {
        let vfio = &facts.plan.vfio;
        Ok(match vfio.ids.is_empty() && vfio.addresses.is_empty() {
            true => vec![Finding::warn(
                "the plan binds no device to vfio-pci (vfio.ids and vfio.addresses are empty)",
                "run `passthru-image detect --write passthru.toml`, review it, and rebuild or \
                 re-apply",
            )],
            false => Vec::new(),
        })
    },
};

pub(super) static MISSING: Check<Facts> = Check {
    name: "device",
    verifies: "every device ID in vfio.ids and every address in vfio.addresses is on the host",
    requires: &[],
    judge: |facts, _| {
        let vfio = &facts.plan.vfio;
        let ids = vfio
            .ids
            .iter()
            .filter(|id| !facts.topology.devices.iter().any(|d| d.id == **id))
            .map(|id| {
                Finding::fail(
                    format!(
                        "vfio.ids lists {id} but no such device is on {}",
                        facts.root.host_name()
                    ),
                    "run `passthru-image groups` and correct vfio.ids",
                )
                .about(id)
            });
        let addresses = vfio
            .addresses
            .iter()
            .filter(|a| facts.topology.device(a).is_none())
            .map(|a| {
                Finding::fail(
                    format!(
                        "vfio.addresses lists {a} but no device is there on {}",
                        facts.root.host_name()
                    ),
                    "run `passthru-image groups` and correct vfio.addresses",
                )
                .about(a)
            });
        Ok(ids.chain(addresses).collect())
    },
};

pub(super) static IDENTICAL_IDS: Check<Facts> = Check {
    name: "identical-ids",
    verifies: "each ID in vfio.ids matches one card only: vfio_pci.ids cannot tell identical \
               devices apart",
    requires: &[],
    judge: |facts, _| {
        let mut findings = Vec::new();
        for id in &facts.plan.vfio.ids {
            let devices: Vec<&PciDevice> = facts
                .topology
                .devices
                .iter()
                .filter(|d| d.id == *id)
                .collect();
            let slots: HashSet<(u32, u8, u8)> = devices
                .iter()
                .map(|d| (d.address.domain, d.address.bus, d.address.device))
                .collect();
            let matching: Vec<String> = devices.iter().map(|d| d.address.to_string()).collect();
            if slots.len() > 1 {
                findings.push(
                    Finding::warn(
                        format!(
                            "{id} matches {} devices ({}): vfio_pci.ids binds all of them",
                            matching.len(),
                            some_of(&matching, LISTED)
                        ),
                        "identical devices cannot be told apart by ID: bind the guest's by address \
                         (vfio.addresses) instead",
                    )
                    .about(id),
                );
            }
        }
        Ok(findings)
    },
};

pub(super) static BOUND: Check<Facts> = Check {
    name: "bound",
    verifies: "each planned device is bound to vfio-pci",
    requires: &[],
    judge: |facts, earlier| {
        let kargs = binding_kargs(facts);
        let causes: Vec<_> = kargs
            .iter()
            .map(|k| (&KARG, Some(k.as_str())))
            .chain([
                (&MODULE, Some("vfio_pci")),
                (&MODPROBE_CONFLICTS, Some("vfio_pci")),
            ])
            .collect();
        let cause = earlier.first_failed(causes);
        Ok(facts
            .planned_devices()
            .map(|d| bound_to_vfio(d).about(d.address).because(cause.clone()))
            .collect())
    },
};

pub(super) static BOOT_GPU: Check<Facts> = Check {
    name: "boot-gpu",
    verifies: "no planned device is the boot GPU, which shows the firmware and boot screens",
    requires: &[],
    judge: |facts, _| {
        Ok(facts
            .planned_devices()
            .filter(|d| d.boot_vga == Some(true))
            .map(|d| {
                Finding::warn(
                    format!(
                        "{} is the boot GPU and is planned for vfio-pci: the host has no display \
                         from it",
                        d.address
                    ),
                    "keep it only for single-GPU passthrough; else pass another GPU \
                     (passthru-image detect --device ADDRESS)",
                )
                .about(d.address)
            })
            .collect())
    },
};

pub(super) static GROUP: Check<Facts> = Check {
    name: "group",
    verifies: "each planned device's IOMMU group can go to a VM: every other member is a bridge or \
               on vfio-pci (or no driver)",
    requires: &[],
    judge: |facts, earlier| {
        let planned: HashSet<PciAddress> = facts.planned_devices().map(|d| d.address).collect();
        let mut blockers = GroupBlockers::default();
        Ok(facts
            .planned_devices()
            .map(|d| group_viable(facts, &mut blockers, d, &planned, earlier).about(d.address))
            .collect())
    },
};

pub(super) static RESET_METHOD: Check<Facts> = Check {
    name: "reset-method",
    verifies: "a planned GPU that needs vendor-reset has device_specific first in reset_method",
    requires: &[],
    judge: |facts, _| {
        // The plan's only module is [vendor-reset]'s; a git source's kernel modules are known once fetched.
        let vendor_reset_planned = !facts.plan.modules.is_empty();
        Ok(facts
            .planned_devices()
            .filter(|d| vendor_reset_planned && vendor_reset::needs_vendor_reset(d.id))
            .map(|d| reset_method(d).about(d.address))
            .collect())
    },
};

pub(super) static RESIZABLE_BAR: Check<Facts> = Check {
    name: "resizable-bar",
    verifies: "no planned GPU has a BAR above 256 MiB: the guide has Resizable BAR off for \
               passthrough",
    requires: &[],
    judge: |facts, _| {
        let mut findings = Vec::new();
        for gpu in facts.planned_devices().filter(|d| d.is_gpu()) {
            let Some(bars) = bar::memory_bars(&facts.root, gpu.address)? else {
                findings.push(Finding::not_run("no resource file").about(gpu.address));
                continue;
            };
            let largest = bars.iter().max_by_key(|b| b.size());
            let resizable = bar::resizable_bars(&facts.root, gpu.address);
            let finding = match largest {
                Some(large) if large.size() > CLASSIC_BAR => Finding::warn(
                    format!(
                        "BAR {} is {}: Resizable BAR is in use (or the card has a large fixed BAR)",
                        large.index,
                        size(large.size())
                    ),
                    "the guide turns Resizable BAR off in the firmware setup for passthrough: \
                     guests and their drivers often mishandle a large BAR",
                ),
                _ if !resizable.is_empty() => Finding::pass(format!(
                    "the card supports Resizable BAR (resource{}_resize) but its BARs are at most \
                     256 MiB: not in use",
                    resizable[0]
                )),
                _ => Finding::pass("its BARs are at most 256 MiB"),
            };
            findings.push(finding.about(gpu.address));
        }
        Ok(findings)
    },
};

pub(super) static ABOVE_4G: Check<Facts> = Check {
    name: "above-4g",
    verifies: "the planned devices' 64-bit BARs sit above 4 GiB: Above 4G decoding is on",
    requires: &[],
    judge: |facts, _| {
        let mut low = Vec::new();
        let mut high = Vec::new();
        for device in facts.planned_devices() {
            for b in bar::memory_bars(&facts.root, device.address)?.unwrap_or_default() {
                if b.is_mem64() {
                    let place = format!("{} BAR {} at {:#x}", device.address, b.index, b.start);
                    match b.start >= 4 * GIB {
                        true => high.push(place),
                        false => low.push(place),
                    }
                }
            }
        }
        Ok(match (high.first(), low.is_empty()) {
            (Some(first), _) => vec![Finding::pass(format!("{first}: above 4 GiB"))],
            (None, false) => vec![Finding::warn(
                format!(
                    "every 64-bit BAR sits below 4 GiB ({}): Above 4G decoding looks off",
                    some_of(&low, 3)
                ),
                "enable Above 4G decoding in the firmware setup (large BARs and Resizable BAR need \
                 it)",
            )],
            (None, true) => Vec::new(),
        })
    },
};

pub(super) static SRIOV: Check<Facts> = Check {
    name: "sr-iov",
    verifies: "which devices offer SR-IOV virtual functions (one function can go to a VM instead \
               of the whole device)",
    requires: &[],
    judge: |facts, _| {
        let mut offers = Vec::new();
        for device in &facts.topology.devices {
            if let Some((total, enabled)) = bar::sriov(&facts.root, device.address)? {
                offers.push(format!(
                    "{} ({total} virtual functions, {enabled} enabled)",
                    device.address
                ));
            }
        }
        Ok(vec![Finding::pass(match offers.is_empty() {
            true => "no device offers SR-IOV virtual functions".to_owned(),
            false => format!(
                "{}: one virtual function can go to a VM while the host keeps the device (echo N > \
                 sriov_numvfs)",
                some_of(&offers, LISTED)
            ),
        })])
    },
};

fn size(bytes: u64) -> String {
    match bytes >= GIB {
        true => format!("{} GiB", bytes / GIB),
        false => format!("{} MiB", bytes / MIB),
    }
}

fn bound_to_vfio(device: &PciDevice) -> Finding {
    match device.driver.as_deref() {
        Some("vfio-pci") => Finding::pass(format!("{} bound to vfio-pci", device.id)),
        other => Finding::fail(
            match other {
                Some(driver) => format!("{} is bound to {driver}, not vfio-pci", device.id),
                None => format!("{} has no driver bound, not vfio-pci", device.id),
            },
            "vfio-pci must claim it first: rd.driver.pre=vfio-pci and vfio_pci.ids (or \
             rd.passthru.vfio_addresses, image mode) in effect, vfio-pci in the initramfs (see the \
             karg and module checks); then reboot",
        ),
    }
}

/// A group member that keeps the group from a VM: bound to a host driver, and no bridge.
fn blocks(device: &PciDevice) -> bool {
    !device.is_pci_bridge()
        && !matches!(
            device.driver.as_deref(),
            None | Some("vfio-pci" | "pci-stub")
        )
}

/// Per group, its members that block it (see [`blocks`]) and those of them the plan does not pass: worked out
/// once per group, so a check per device costs no walk through its group (a host tree may hold thousands of
/// devices in one).
#[derive(Default)]
struct GroupBlockers<'t>(HashMap<u32, Blockers<'t>>);

struct Blockers<'t> {
    bound: Vec<&'t PciDevice>,
    foreign: Vec<&'t PciDevice>,
}

impl<'t> GroupBlockers<'t> {
    fn of(&mut self, facts: &'t Facts, group: u32, planned: &HashSet<PciAddress>) -> &Blockers<'t> {
        self.0.entry(group).or_insert_with(|| {
            let bound: Vec<&PciDevice> = facts
                .topology
                .members(group)
                .filter(|d| blocks(d))
                .collect();
            let foreign = bound
                .iter()
                .filter(|d| !planned.contains(&d.address))
                .copied()
                .collect();
            Blockers { bound, foreign }
        })
    }
}

/// `a, b, c and 5 more`: the first items of a list of `total` ([`some_of`] for a list not made whole).
fn first_of(shown: &[String], total: usize) -> String {
    match total.saturating_sub(shown.len()) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

/// The kernel's rule: a group can be used by a VM when every device in it, bridges aside, is bound to
/// vfio-pci (or pci-stub) or to no driver.
fn group_viable<'t>(
    facts: &'t Facts,
    blockers: &mut GroupBlockers<'t>,
    device: &PciDevice,
    planned: &HashSet<PciAddress>,
    earlier: &crate::checks::Earlier,
) -> Finding {
    let Some(group) = facts.topology.group_of(&device.address) else {
        return Finding::fail(
            "in no IOMMU group",
            "turn the IOMMU on (see the iommu check)",
        )
        .because(earlier.failed(&GROUPS, None));
    };
    let Blockers { bound, foreign } = blockers.of(facts, group, planned);
    // The device itself is planned (so never foreign), and blocks only its own check.
    let others = bound.len() - usize::from(blocks(device));
    if others == 0 {
        return Finding::pass(format!("group {group} can go to a VM"));
    }
    let mut others_bound = bound.iter().filter(|d| d.address != device.address);
    let listed: Vec<String> = others_bound
        .clone()
        .take(LISTED)
        .map(|d| {
            format!(
                "{} ({}, {})",
                d.address,
                d.id,
                d.driver.as_deref().unwrap_or("")
            )
        })
        .collect();
    let detail = format!(
        "group {group} also holds {} bound to a host driver",
        first_of(&listed, others)
    );
    if foreign.is_empty() {
        // Only planned devices hold the group: their binding is the cause.
        let cause = others_bound.find_map(|d| earlier.failed(&BOUND, Some(&d.address.to_string())));
        return Finding::fail(detail, "bind them to vfio-pci (see their bound checks)")
            .because(cause);
    }
    let shown: Vec<String> = foreign
        .iter()
        .take(LISTED)
        .map(|d| format!("{} ({})", d.address, d.id))
        .collect();
    Finding::fail(
        detail,
        format!(
            "pass {} to the VM too (add to vfio.ids or vfio.addresses), move the card to a slot \
             with its own group, or enable [acs-override]",
            first_of(&shown, foreign.len())
        ),
    )
}

/// On kernels >= 5.15 vendor-reset only acts when `reset_method` is `device_specific`.
fn reset_method(device: &PciDevice) -> Finding {
    match device.reset_method.as_deref() {
        None => Finding::pass(
            "no reset_method attribute (kernel before 5.15): vendor-reset hooks in without it",
        ),
        Some([first, ..]) if first == "device_specific" => {
            Finding::pass("reset_method is device_specific")
        }
        Some(methods) => Finding::fail(
            format!(
                "reset_method is \"{}\", vendor-reset needs device_specific",
                methods.join(" ")
            ),
            format!(
                "the plan's udev rule sets it at boot: check it is installed; now: echo \
                 device_specific > /sys/bus/pci/devices/{}/reset_method",
                device.address
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;
    use crate::pci_id::PciId;

    #[test]
    fn reset_method_must_lead_with_device_specific() {
        let mut gpu = PciDevice {
            address: "0000:09:00.0".parse().unwrap(),
            id: PciId::new(0x1002, 0x67df),
            class: 0x030000,
            driver: Some("vfio-pci".into()),
            iommu_group: Some(14),
            boot_vga: Some(false),
            reset_method: Some(vec!["bus".into()]),
        };
        assert_eq!(reset_method(&gpu).status(), Status::Fail);
        gpu.reset_method = Some(vec!["device_specific".into()]);
        assert_eq!(reset_method(&gpu).status(), Status::Pass);
        gpu.reset_method = None;
        assert_eq!(reset_method(&gpu).status(), Status::Pass);
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(32 * GIB), "32 GiB");
        assert_eq!(size(256 * MIB), "256 MiB");
    }
}
