//! `doctor`: checks the running host against the plan, after the reboot ("is it working?").
//!
//! Every expectation comes from the [`Plan`]: its kargs, its initramfs drivers, its `vfio_pci.ids`, its
//! modules. Doctor adds no karg or device of its own; it only reads the host through the [`Root`].

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use serde::Serialize;

use crate::cmd::Cmd;
use crate::host::cpu::CpuInfo;
use crate::host::firmware;
use crate::host::kernel;
use crate::host::pci::PciDevice;
use crate::host::topology::Topology;
use crate::kargs::{HostKarg, Karg, Kargs};
use crate::pci_id::PciId;
use crate::plan::Plan;
use crate::root::Root;
use crate::vendor_reset;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    /// One line telling the user what to do; `None` when the check passed.
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Pass,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warn(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn fail(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The `doctor --json` document.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn failures(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count()
    }
}

/// What makes a karg take effect after the next boot, for both modes.
const APPLY_FIX: &str = "image mode: `bootc switch`/`bootc upgrade` to the image `passthru-image build` made (kargs.d is applied by bootc, not rpm-ostree); live mode: `passthru-image apply`; then reboot";

/// Runs every check. `extra` are checks made outside the root (virt-host-validate), appended as they are.
pub fn check(plan: &Plan, root: &Root, extra: Vec<Check>) -> Result<Report> {
    let cpu = CpuInfo::read(root)?;
    let topology = Topology::read(root)?;
    let cmdline = kernel::cmdline(root)?;
    let loaded = kernel::loaded_modules(root)?;

    let mut checks = vec![virtualization(&cpu), iommu(&topology, plan), uefi(root)];
    checks.extend(plan.kargs.iter().map(|k| karg(k, &plan.kargs, &cmdline)));
    checks.extend(plan_wide_conflicts(&plan.kargs, &cmdline));
    checks.extend(
        plan.initramfs_drivers
            .iter()
            .map(|m| module(root, &loaded, m, "VFIO")),
    );

    let ids = &plan.vfio.ids;
    if ids.is_empty() {
        checks.push(Check::warn(
            "devices",
            "the plan binds no device to vfio-pci (vfio.ids is empty)",
            "run `passthru-image detect --write passthru.toml`, review it, and rebuild or re-apply",
        ));
    }
    // The plan's only module is [vendor-reset]'s; a git source's kernel modules are known once fetched.
    let vendor_reset_planned = !plan.modules.is_empty();
    for module_plan in &plan.modules {
        for name in module_plan.kernel_modules() {
            checks.push(module(root, &loaded, name, module_plan.label()));
        }
    }
    // Indexed once: a host tree may hold thousands of devices of one ID in one group.
    let mut by_id: HashMap<PciId, Vec<&PciDevice>> = HashMap::new();
    for device in &topology.devices {
        by_id.entry(device.id).or_default().push(device);
    }
    let planned: HashSet<PciId> = ids.iter().copied().collect();
    let mut blockers = GroupBlockers::default();
    for id in ids {
        let matching: &[&PciDevice] = by_id.get(id).map_or(&[], Vec::as_slice);
        if matching.is_empty() {
            checks.push(Check::fail(
                format!("device:{id}"),
                format!("vfio.ids lists {id} but no such device is on this host"),
                "run `passthru-image groups` and correct vfio.ids",
            ));
        }
        if matching.len() > 1 {
            let addresses: Vec<String> = matching
                .iter()
                .take(LISTED)
                .map(|d| d.address.to_string())
                .collect();
            checks.push(Check::warn(
                format!("identical-ids:{id}"),
                format!("{id} matches {} devices ({}): vfio_pci.ids binds all of them", matching.len(), some_of(&addresses, matching.len())),
                "identical devices cannot be told apart by ID: bind the guest's by address (driver_override) instead",
            ));
        }
        for &device in matching {
            checks.push(bound_to_vfio(device));
            if device.boot_vga == Some(true) {
                checks.push(Check::warn(
                    format!("boot-gpu:{}", device.address),
                    format!("{} is the boot GPU and is planned for vfio-pci: the host has no display from it", device.address),
                    "keep it only for single-GPU passthrough; else pass another GPU (passthru-image detect --device ADDRESS)",
                ));
            }
            checks.push(group_viable(&topology, &mut blockers, device, &planned));
            if vendor_reset_planned && vendor_reset::needs_vendor_reset(device.id) {
                checks.push(reset_method(device));
            }
        }
    }
    checks.extend(extra);
    Ok(Report {
        ok: checks.iter().all(|c| c.status != Status::Fail),
        checks,
    })
}

fn virtualization(cpu: &CpuInfo) -> Check {
    if cpu.virtualization {
        Check::pass("cpu-virtualization", "vmx/svm flag present")
    } else {
        Check::fail(
            "cpu-virtualization",
            "the CPU flags have neither vmx (Intel VT-x) nor svm (AMD-V)",
            "enable Intel VT-x or AMD SVM in the firmware setup",
        )
    }
}

fn iommu(topology: &Topology, plan: &Plan) -> Check {
    if topology.iommu_enabled() {
        Check::pass("iommu", format!("{} IOMMU groups", topology.groups.len()))
    } else {
        let karg = format!(
            " and boot with {}",
            crate::plan::iommu_kargs(plan.cpu_vendor).join(" ")
        );
        Check::fail(
            "iommu",
            "no IOMMU groups: the IOMMU is off",
            format!("enable VT-d (Intel) or AMD-Vi/IOMMU (AMD) in the firmware setup{karg}"),
        )
    }
}

fn uefi(root: &Root) -> Check {
    if firmware::uefi_boot(root) {
        Check::pass("uefi", "booted through UEFI")
    } else {
        Check::warn(
            "uefi",
            "booted in legacy BIOS mode (no /sys/firmware/efi)",
            "switch the firmware to UEFI boot (CSM off): GPU passthrough needs a GPU with UEFI firmware and works best this way",
        )
    }
}

fn karg(planned: &Karg, plan: &Kargs, cmdline: &[HostKarg]) -> Check {
    let name = format!("karg:{planned}");
    if Kargs::satisfied_by(cmdline, planned) {
        return Check::pass(name, "in /proc/cmdline");
    }
    let rival = cmdline.iter().find(|host| {
        plan.conflict_with(*host)
            .is_some_and(|c| c.planned.as_ref() == Some(planned))
    });
    match rival {
        Some(other) => Check::fail(
            name,
            format!("/proc/cmdline has {other} instead"),
            format!("remove {other} from the host's kernel arguments; {APPLY_FIX}"),
        ),
        None => Check::fail(name, "missing from /proc/cmdline", APPLY_FIX),
    }
}

/// Host arguments that defeat the plan as a whole, whatever it sets (`amd_iommu=off`).
fn plan_wide_conflicts(plan: &Kargs, cmdline: &[HostKarg]) -> Option<Check> {
    let found: Vec<String> = cmdline
        .iter()
        .filter_map(|host| {
            let conflict = plan.conflict_with(host)?;
            conflict
                .planned
                .is_none()
                .then(|| format!("{host}: {}", conflict.reason))
        })
        .collect();
    (!found.is_empty()).then(|| {
        Check::fail(
            "karg-conflicts",
            found.join("; "),
            format!("remove them from the host's kernel arguments; {APPLY_FIX}"),
        )
    })
}

fn module(root: &Root, loaded: &[String], name: &str, purpose: &str) -> Check {
    let check_name = format!("module:{}", kernel::module_name(name));
    if kernel::module_present(root, loaded, name) {
        Check::pass(check_name, "loaded")
    } else {
        Check::fail(
            check_name,
            format!("{name} ({purpose}) is not loaded"),
            format!(
                "boot the image or deployment that has it in the initramfs; meanwhile `modprobe {name}` shows whether it loads at all"
            ),
        )
    }
}

fn bound_to_vfio(device: &PciDevice) -> Check {
    let name = format!("bound:{}", device.address);
    match device.driver.as_deref() {
        Some("vfio-pci") => Check::pass(name, format!("{} bound to vfio-pci", device.id)),
        other => Check::fail(
            name,
            match other {
                Some(driver) => format!("{} is bound to {driver}, not vfio-pci", device.id),
                None => format!("{} has no driver bound, not vfio-pci", device.id),
            },
            "vfio-pci must claim it first: rd.driver.pre=vfio-pci and vfio_pci.ids in effect, vfio-pci in the initramfs (see the karg and module checks); then reboot",
        ),
    }
}

/// Per group, its members bound to a host driver (bridges aside), and those of them the plan does not pass:
/// worked out once per group, so a check per device costs no walk through its group.
#[derive(Default)]
struct GroupBlockers<'t>(HashMap<u32, Blockers<'t>>);

struct Blockers<'t> {
    bound: Vec<&'t PciDevice>,
    foreign: Vec<&'t PciDevice>,
}

impl<'t> GroupBlockers<'t> {
    fn of(
        &mut self,
        topology: &'t Topology,
        group: u32,
        planned: &HashSet<PciId>,
    ) -> &Blockers<'t> {
        self.0.entry(group).or_insert_with(|| {
            let bound: Vec<&PciDevice> = topology.members(group).filter(|d| blocks(d)).collect();
            let foreign = bound
                .iter()
                .filter(|d| !planned.contains(&d.id))
                .copied()
                .collect();
            Blockers { bound, foreign }
        })
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

/// Most items a check's detail lists; the rest are counted.
const LISTED: usize = 8;

/// `a, b, c and 5 more`: the first items of a list of `total`, so a detail stays short whatever the host holds.
fn some_of(shown: &[String], total: usize) -> String {
    match total.saturating_sub(shown.len()) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

/// The kernel's rule: a group can be used by a VM when every device in it, bridges aside, is bound to
/// vfio-pci (or pci-stub) or to no driver.
fn group_viable<'t>(
    topology: &'t Topology,
    blockers: &mut GroupBlockers<'t>,
    device: &PciDevice,
    planned: &HashSet<PciId>,
) -> Check {
    let name = format!("group:{}", device.address);
    let Some(group) = topology.group_of(&device.address) else {
        return Check::fail(
            name,
            "in no IOMMU group",
            "turn the IOMMU on (see the iommu check)",
        );
    };
    let Blockers { bound, foreign } = blockers.of(topology, group, planned);
    // The device itself is planned (so never foreign), and blocks only its own viability check.
    let others = bound.len() - usize::from(blocks(device));
    if others == 0 {
        return Check::pass(name, format!("group {group} can go to a VM"));
    }
    let listed: Vec<String> = bound
        .iter()
        .filter(|d| d.address != device.address)
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
        some_of(&listed, others)
    );
    let fix = if foreign.is_empty() {
        "these are planned: see their bound checks".to_owned()
    } else {
        let shown: Vec<String> = foreign
            .iter()
            .take(LISTED)
            .map(|d| format!("{} ({})", d.address, d.id))
            .collect();
        format!(
            "pass {} to the VM too (add to vfio.ids), move the card to a slot with its own group, or enable [acs-override]",
            some_of(&shown, foreign.len())
        )
    };
    Check::fail(name, detail, fix)
}

/// On kernels >= 5.15 vendor-reset only acts when `reset_method` is `device_specific`.
fn reset_method(device: &PciDevice) -> Check {
    let name = format!("reset-method:{}", device.address);
    match device.reset_method.as_deref() {
        None => Check::pass(
            name,
            "no reset_method attribute (kernel before 5.15): vendor-reset hooks in without it",
        ),
        Some([first, ..]) if first == "device_specific" => {
            Check::pass(name, "reset_method is device_specific")
        }
        Some(methods) => Check::fail(
            name,
            format!(
                "reset_method is \"{}\", vendor-reset needs device_specific",
                methods.join(" ")
            ),
            format!(
                "the plan's udev rule sets it at boot: check it is installed; now: echo device_specific > /sys/bus/pci/devices/{}/reset_method",
                device.address
            ),
        ),
    }
}

/// `virt-host-validate qemu` (libvirt), when installed: its own view of the same host.
pub fn virt_host_validate() -> Option<Check> {
    let program = find_program("virt-host-validate")?;
    let mut text = String::new();
    let output = Cmd::new(program).arg("qemu").stream(|line| {
        text.push_str(line);
        text.push('\n');
    });
    Some(match output {
        Ok(_) => parse_virt_host_validate(&text),
        Err(e) => Check::warn(
            "virt-host-validate",
            format!("could not run virt-host-validate: {e}"),
            "run `virt-host-validate qemu` yourself",
        ),
    })
}

/// Reads `  QEMU: Checking for hardware virtualization     : PASS` lines; FAIL beats WARN beats PASS.
fn parse_virt_host_validate(text: &str) -> Check {
    let mut fails = Vec::new();
    let mut warns = Vec::new();
    for line in text.lines() {
        let Some((what, verdict)) = line.rsplit_once(": ") else {
            continue;
        };
        let what = what.trim().trim_start_matches("QEMU:").trim();
        let verdict = verdict.trim();
        if verdict.starts_with("FAIL") {
            fails.push(format!("{what}: {verdict}"));
        } else if verdict.starts_with("WARN") {
            warns.push(format!("{what}: {verdict}"));
        }
    }
    let fix = "see `virt-host-validate qemu`";
    if !fails.is_empty() {
        Check::fail("virt-host-validate", fails.join("; "), fix)
    } else if !warns.is_empty() {
        Check::warn("virt-host-validate", warns.join("; "), fix)
    } else {
        Check::pass("virt-host-validate", "all QEMU checks pass")
    }
}

fn find_program(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn karg_of(s: &str) -> Karg {
        Karg::parse(s).unwrap()
    }

    fn planned(words: &[&str]) -> Kargs {
        let mut kargs = Kargs::default();
        for w in words {
            kargs.push(karg_of(w)).unwrap();
        }
        kargs
    }

    #[test]
    fn kargs_match_whatever_the_spelling_and_name_conflicts() {
        let plan = planned(&["iommu=pt", "intel_iommu=on", "vfio_pci.ids=10de:1401"]);
        let cmdline = crate::kargs::split_cmdline("ro vfio-pci.ids=10de:1401 iommu=nopt");
        assert_eq!(
            karg(&karg_of("vfio_pci.ids=10de:1401"), &plan, &cmdline).status,
            Status::Pass
        );
        let conflict = karg(&karg_of("iommu=pt"), &plan, &cmdline);
        assert_eq!(conflict.status, Status::Fail);
        assert!(
            conflict.detail.contains("iommu=nopt"),
            "{}",
            conflict.detail
        );
        let missing = karg(&karg_of("intel_iommu=on"), &plan, &cmdline);
        assert_eq!(missing.detail, "missing from /proc/cmdline");
        // Tokens add up: sm_on beside on is the same request.
        let tokens = crate::kargs::split_cmdline("intel_iommu=sm_on,on");
        assert_eq!(
            karg(&karg_of("intel_iommu=on"), &plan, &tokens).status,
            Status::Pass
        );
    }

    #[test]
    fn an_iommu_turned_off_on_the_host_fails_the_whole_plan() {
        let plan = planned(&["iommu=pt"]);
        let cmdline = crate::kargs::split_cmdline("ro iommu=pt amd_iommu=off");
        let check = plan_wide_conflicts(&plan, &cmdline).unwrap();
        assert_eq!(check.status, Status::Fail);
        assert!(check.detail.contains("amd_iommu=off"), "{}", check.detail);
        assert!(plan_wide_conflicts(&plan, &crate::kargs::split_cmdline("iommu=pt")).is_none());
    }

    #[test]
    fn virt_host_validate_verdict_is_its_worst_line() {
        let text = "  QEMU: Checking for hardware virtualization                                 : FAIL (Only emulated CPUs are available, performance will be significantly limited)\n  QEMU: Checking if device /dev/vhost-net exists                             : PASS\n  QEMU: Checking for secure guest support                                    : WARN (Unknown if this platform has Secure Guest support)\n";
        let check = parse_virt_host_validate(text);
        assert_eq!(check.status, Status::Fail);
        assert!(
            check
                .detail
                .starts_with("Checking for hardware virtualization: FAIL")
        );
        let warn = parse_virt_host_validate(
            "  QEMU: Checking for secure guest support      : WARN (Unknown)\n",
        );
        assert_eq!(warn.status, Status::Warn);
        assert_eq!(
            parse_virt_host_validate("  QEMU: Checking x : PASS\n").status,
            Status::Pass
        );
    }

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
        assert_eq!(reset_method(&gpu).status, Status::Fail);
        gpu.reset_method = Some(vec!["device_specific".into()]);
        assert_eq!(reset_method(&gpu).status, Status::Pass);
        gpu.reset_method = None;
        assert_eq!(reset_method(&gpu).status, Status::Pass);
    }
}
