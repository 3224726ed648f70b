//! The plan's kernel arguments, rendered in one place from typed facts (CPU vendor, switches, PCI IDs), in the
//! order they are written, with the user's extras last. The guide users follow asks for more arguments than
//! today's kernels want; each one left out is recorded with its reason, so `plan` can say why.

use anyhow::Result;
use serde::Serialize;

use crate::config::{Config, GpuVendor, Switch};
use crate::error::InputError;
use crate::host::cpu::CpuVendor;
use crate::host::pci::PciAddress;
use crate::kargs::params::{self, Param};
use crate::kargs::{COMMAND_LINE_MAX, Karg, Kargs};
use crate::pci_id::PciId;

/// What the bootloader and the host add on their own (`BOOT_IMAGE=`, `root=UUID=…`, `ostree=/ostree/boot.1/…`,
/// `rd.luks.uuid=…`, `rhgb quiet`): planned arguments that leave less than this warn.
const HOST_ARGS_RESERVE: usize = 512;

/// An argument of the guide that the plan leaves out, and why in one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct OmittedKarg {
    pub(crate) karg: &'static str,
    pub(crate) reason: String,
}

/// What the host the plan is for tells about its own GPUs; `None` when the plan is for an image built
/// elsewhere and the host cannot be read.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostGpus {
    /// GPUs the host keeps (not passed through) that are driven by nouveau.
    pub(crate) kept_on_nouveau: Vec<PciAddress>,
}

/// The kernel arguments of a plan and the guide's arguments it leaves out.
#[derive(Debug, Clone)]
pub(crate) struct PlannedKargs {
    pub(crate) kargs: Kargs,
    pub(crate) omitted: Vec<OmittedKarg>,
    pub(crate) warnings: Vec<String>,
}

/// The facts the arguments are rendered from.
pub(crate) struct KargFacts<'a> {
    pub(crate) config: &'a Config,
    pub(crate) cpu: CpuVendor,
    /// The devices bound to vfio-pci by ID.
    pub(crate) vfio_ids: &'a [PciId],
    /// The devices bound to vfio-pci by address.
    pub(crate) vfio_addresses: &'a [PciAddress],
    pub(crate) host: Option<&'a HostGpus>,
}

#[derive(Default)]
struct Planner {
    planned: Vec<Karg>,
    omitted: Vec<OmittedKarg>,
}

impl Planner {
    fn plan(&mut self, param: &Param, value: impl std::fmt::Display) {
        self.planned.push(Karg::new(param, value));
    }

    fn omit(&mut self, karg: &'static str, reason: impl Into<String>) {
        self.omitted.push(OmittedKarg {
            karg,
            reason: reason.into(),
        });
    }
}

pub(crate) fn plan_kargs(facts: &KargFacts) -> Result<PlannedKargs> {
    let mut p = Planner::default();
    iommu(&mut p, facts.cpu);
    kvm(&mut p, facts);
    framebuffers(&mut p, facts.config);
    gpu_drivers(&mut p, facts);
    vfio(&mut p, facts);
    acs_override(&mut p, facts.config);

    let mut kargs = Kargs::default();
    for karg in p.planned {
        if let Err(conflict) = kargs.push(karg.clone()) {
            panic!(
                "planned kernel arguments contradict each other: {karg}: {}",
                conflict.reason
            );
        }
    }
    for (i, extra) in facts.config.kargs.extra.iter().enumerate() {
        if let Err(conflict) = kargs.push(extra.0.clone()) {
            let with = conflict
                .planned
                .map(|k| format!(" (planned {k})"))
                .unwrap_or_default();
            return Err(InputError::new(
                format!("kargs.extra[{i}]"),
                format!(
                    "{}{with}: {}; remove the extra or change the setting that plans the other",
                    extra.0, conflict.reason
                ),
            )
            .into());
        }
    }
    let len = kargs.command_line_len();
    if len > COMMAND_LINE_MAX {
        return Err(InputError::new(
            "kargs.extra",
            format!(
                "the planned kernel arguments take {len} bytes; the whole x86 kernel command line \
                 holds {COMMAND_LINE_MAX}, the host's own arguments included"
            ),
        )
        .into());
    }
    let warnings = (len > COMMAND_LINE_MAX - HOST_ARGS_RESERVE)
        .then(|| {
            format!(
                "the planned kernel arguments take {len} bytes of the {COMMAND_LINE_MAX} the x86 \
                 command line holds, leaving less than {HOST_ARGS_RESERVE} for the host's own \
                 (root=, ostree=, rd.luks.uuid=, ...): the bootloader cuts off what does not fit"
            )
        })
        .into_iter()
        .collect();
    Ok(PlannedKargs {
        kargs,
        omitted: p.omitted,
        warnings,
    })
}

/// The IOMMU on, in passthrough mode. Intel's driver needs `intel_iommu=on` (off by default on many
/// kernels); AMD-Vi is on by default and has no `on` option at all.
fn iommu(p: &mut Planner, cpu: CpuVendor) {
    match cpu {
        CpuVendor::Intel => p.plan(&params::INTEL_IOMMU, "on"),
        CpuVendor::Amd => p.omit(
            "amd_iommu=on",
            "not an option: drivers/iommu/amd/init.c logs `AMD-Vi: Unknown option - 'on'`; AMD-Vi \
             is on by default (only amd_iommu=off turns it off)",
        ),
    }
    p.plan(&params::IOMMU, "pt");
}

fn kvm(p: &mut Planner, facts: &KargFacts) {
    let c = &facts.config.cpu;
    if facts.cpu == CpuVendor::Amd {
        for (on, param, karg, key) in [
            (c.npt, &params::KVM_AMD_NPT, "kvm_amd.npt=1", "npt"),
            (c.avic, &params::KVM_AMD_AVIC, "kvm_amd.avic=1", "avic"),
            (
                c.nested,
                &params::KVM_AMD_NESTED,
                "kvm_amd.nested=1",
                "nested",
            ),
            (c.sev, &params::KVM_AMD_SEV, "kvm_amd.sev=1", "sev"),
        ] {
            match on {
                true => p.plan(param, 1),
                false => p.omit(karg, format!("cpu.{key} = false")),
            }
        }
    }
    match c.ignore_msrs {
        true => {
            p.plan(&params::KVM_IGNORE_MSRS, 1);
            p.plan(&params::KVM_REPORT_IGNORED_MSRS, 0);
        }
        false => {
            let reason = "opt-in (cpu.ignore-msrs): only guests that touch MSRs KVM does not \
                          emulate need it";
            p.omit("kvm.ignore_msrs=1", reason);
            p.omit("kvm.report_ignored_msrs=0", reason);
        }
    }
}

/// The guide's `video=vesafb:off,efifb:off` reaches vesafb only (drivers/video/cmdline.c hands each `video=`
/// value to the driver named before its first `:`), and on today's kernels none of the three is needed.
fn framebuffers(p: &mut Planner, config: &Config) {
    let gpu = &config.gpu;
    if gpu.vendors.is_empty() {
        return;
    }
    match gpu.disable_boot_framebuffers {
        true => {
            for driver in ["vesafb", "efifb", "simplefb"] {
                p.plan(&params::VIDEO, format!("{driver}:off"));
            }
        }
        false => p.omit(
            "video=vesafb:off,efifb:off",
            "the firmware framebuffer goes to simpledrm on Fedora's kernels, which no video=…:off \
             reaches (efifb/vesafb bind only when the mode cannot be handed over, simplefb is not \
             built), and vfio-pci evicts firmware framebuffers from a GPU it claims since Linux \
             6.0; for older kernels: gpu.disable-boot-framebuffers = true (one video= per driver)",
        ),
    }
    if gpu.disable_sysfb {
        p.plan(&params::INITCALL_BLACKLIST, "sysfb_init");
    }
}

fn gpu_drivers(p: &mut Planner, facts: &KargFacts) {
    let gpu = &facts.config.gpu;
    if gpu.vendors.contains(&GpuVendor::Nvidia) {
        match nouveau_off(gpu.disable_nouveau, facts.host) {
            Ok(()) => p.plan(&params::NOUVEAU_MODESET, 0),
            Err(reason) => p.omit("nouveau.modeset=0", reason),
        }
    }
    if gpu.vendors.contains(&GpuVendor::Amd) {
        match gpu.disable_amdgpu_aspm {
            true => p.plan(&params::AMDGPU_ASPM, 0),
            false => p.omit(
                "amdgpu.aspm=0",
                "opt-in (gpu.disable-amdgpu-aspm): it changes only GPUs the host drives itself; \
                 the passed GPU is on vfio-pci",
            ),
        }
    }
}

/// `nouveau.modeset=0` turns nouveau off for every NVIDIA GPU, the host's own included: vfio-pci's early
/// binding already keeps nouveau off the passed one.
fn nouveau_off(switch: Switch, host: Option<&HostGpus>) -> Result<(), String> {
    match (switch, host) {
        (Switch::On, _) => Ok(()),
        (Switch::Off, _) => Err("gpu.disable-nouveau = false".into()),
        (Switch::Auto, Some(host)) if host.kept_on_nouveau.is_empty() => Ok(()),
        (Switch::Auto, Some(host)) => Err(format!(
            "the host keeps {} on nouveau, which it would turn off too (vfio-pci's early binding \
             keeps nouveau off the passed GPU anyway)",
            host.kept_on_nouveau
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        // An image for hosts this machine cannot see.
        (Switch::Auto, None) => Err(
            "it turns nouveau off for the host's own NVIDIA GPUs too, and this plan cannot see the \
             host (no --root): set gpu.disable-nouveau = true when no GPU the host keeps uses \
             nouveau"
                .into(),
        ),
    }
}

fn vfio(p: &mut Planner, facts: &KargFacts) {
    match facts.config.vfio.early_binding {
        true => p.plan(&params::RD_DRIVER_PRE, "vfio-pci"),
        false => p.omit("rd.driver.pre=vfio-pci", "vfio.early-binding = false"),
    }
    match facts.vfio_ids.is_empty() {
        true => p.omit("vfio_pci.ids=…", "vfio.ids is empty"),
        false => p.plan(&params::VFIO_PCI_IDS, join(facts.vfio_ids.iter())),
    }
    // Not the guide's: nothing to record when it is left out.
    if !facts.vfio_addresses.is_empty() {
        p.plan(
            &params::RD_PASSTHRU_VFIO_ADDRESSES,
            join(facts.vfio_addresses.iter()),
        );
    }
}

/// Only with the ACS-override kernel: other kernels would hand the unknown parameter to init.
fn acs_override(p: &mut Planner, config: &Config) {
    let acs = &config.acs_override;
    if !acs.enabled {
        return;
    }
    let modes = acs.mode.iter().map(|m| m.as_str().to_owned());
    let ids = acs.ids.iter().map(|id| format!("id:{id}"));
    p.plan(
        &params::PCIE_ACS_OVERRIDE,
        first_of_each(modes.chain(ids)).join(","),
    );
}

/// The items in their first-seen order, each once, comma-separated: a value repeated in the config is not
/// repeated on the kernel command line.
fn join<T: ToString>(items: impl Iterator<Item = T>) -> String {
    first_of_each(items.map(|i| i.to_string())).join(",")
}

fn first_of_each(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|item| seen.insert(item.clone()))
        .collect()
}
