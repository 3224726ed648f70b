//! `doctor`: checks the running host against the plan, after the reboot ("is it working?"), and the firmware
//! and kernel facts passthrough rests on (the guide's "Checking Passthrough Support" and its BIOS checklist).
//!
//! Every expectation comes from a plan ([`Expectations`]: of the plan the config makes, or of the plan recorded
//! in the running image or by live mode): its kargs, its initramfs drivers, its devices, its modules.
//! Doctor adds no karg or device of its own. It reads the host through the [`Root`]; the checks that run a
//! program (journalctl, virt-host-validate) run it only on this machine's own root, or give it the root.
//!
//! Each check is declared once in the topic modules below and run in the order of [`CHECKS`], so a check can
//! name an earlier failure as its cause (see [`crate::checks`]).

mod boot;
mod devices;
mod firmware;
mod iommu;
mod kvm;
mod programs;

use anyhow::Result;
use camino::Utf8PathBuf;
use serde::Serialize;

use crate::checks::{self, Check, Fix, Report, Status};
use crate::host::Machine;
use crate::host::cpu::CpuInfo;
use crate::host::kernel;
use crate::host::kmsg;
use crate::host::modprobe;
use crate::host::pci::PciDevice;
use crate::host::topology::Topology;
use crate::kargs::params::Param;
use crate::kargs::{HostKarg, KernelArg};
use crate::plan::record::Expectations;
use crate::root::Root;

/// The version of the `doctor --json` document; raised when a field changes meaning or goes away.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// What makes the planned kargs, drivers and files take effect after the next boot, for both modes: the fix of
/// every check that fails because the plan is not (yet) what the host booted.
pub(crate) const APPLY_FIX: &str = "image mode: `bootc switch`/`bootc upgrade` to the image \
                                    `passthru-image build` made (kargs.d is applied by bootc, not \
                                    rpm-ostree); live mode: `passthru-image apply`; then reboot";

/// Every check, in the order they run: a check may name only earlier ones as its cause.
pub(crate) const CHECKS: &[&Check<Facts>] = &[
    &firmware::CPU_VIRTUALIZATION,
    &firmware::UEFI,
    &firmware::SECURE_BOOT,
    &firmware::LOCKDOWN,
    &firmware::MODULE_SIGNER,
    &boot::KARG,
    &boot::KARG_CONFLICTS,
    &iommu::ACPI_TABLE,
    &iommu::UNITS,
    &iommu::GROUPS,
    &iommu::INTERRUPT_REMAPPING,
    &iommu::PASSTHROUGH,
    &iommu::KERNEL_LOG,
    &kvm::KVM,
    &kvm::DEV_KVM,
    &kvm::PARAMS,
    &boot::MODULE,
    &boot::MODPROBE_CONFLICTS,
    &boot::MODPROBE_SOFTDEP,
    &devices::DEVICES,
    &devices::MISSING,
    &devices::IDENTICAL_IDS,
    &devices::BOUND,
    &devices::BOOT_GPU,
    &devices::GROUP,
    &devices::RESET_METHOD,
    &devices::RESIZABLE_BAR,
    &devices::ABOVE_4G,
    &devices::SRIOV,
    &programs::VIRT_HOST_VALIDATE,
];

/// What the checks judge: the plan and the host facts most of them need, read once. Checks read the rest
/// under `root` themselves.
pub(crate) struct Facts {
    pub(crate) plan: Expectations,
    pub(crate) root: Root,
    pub(crate) machine: Machine,
    pub(crate) cpu: CpuInfo,
    pub(crate) topology: Topology,
    pub(crate) cmdline: Vec<HostKarg>,
    /// Module names in /proc/modules.
    pub(crate) loaded: Vec<String>,
    pub(crate) modprobe: modprobe::ModprobeConfig,
    /// This boot's kernel log, read when a check first asks (it may run journalctl), or why it could not be.
    kernel_log: std::cell::OnceCell<Result<kmsg::KernelLog, Vec<String>>>,
}

impl Facts {
    pub(crate) fn read(plan: Expectations, root: Root) -> Result<Facts> {
        let cmdline = kernel::cmdline(&root)?;
        Ok(Facts {
            machine: Machine::of(&root),
            cpu: CpuInfo::read(&root)?,
            topology: Topology::read(&root)?,
            loaded: kernel::loaded_modules(&root)?,
            modprobe: modprobe::read(&root, &cmdline)?,
            cmdline,
            plan,
            root,
            kernel_log: std::cell::OnceCell::new(),
        })
    }

    /// The host's devices the plan binds to vfio-pci, by ID or by address, in address order.
    pub(crate) fn planned_devices(&self) -> impl Iterator<Item = &PciDevice> {
        let vfio = &self.plan.vfio;
        self.topology
            .devices
            .iter()
            .filter(|d| vfio.ids.contains(&d.id) || vfio.addresses.contains(&d.address))
    }

    /// The planned karg that sets `param`, as the `karg` check names its outcome.
    pub(crate) fn planned_karg(&self, param: &Param) -> Option<String> {
        self.plan
            .kargs
            .iter()
            .find(|k| k.is(param))
            .map(|k| k.to_string())
    }

    /// This boot's kernel log, or the reasons none could be read.
    pub(crate) fn kernel_log(&self) -> &Result<kmsg::KernelLog, Vec<String>> {
        self.kernel_log
            .get_or_init(|| kmsg::read(&self.root, self.machine))
    }

    /// Whether the plan builds out-of-tree modules (vendor-reset), which Secure Boot and lockdown refuse
    /// unsigned.
    pub(crate) fn plans_modules(&self) -> bool {
        !self.plan.modules.is_empty()
    }
}

/// The `doctor --json` document.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DoctorReport {
    pub(crate) schema_version: u32,
    /// The root that was checked.
    pub(crate) root: Utf8PathBuf,
    /// Where the plan came from: its config (a file, or the embedded default), or a record of it.
    pub(crate) config: String,
    /// No check failed.
    pub(crate) ok: bool,
    pub(crate) counts: Counts,
    pub(crate) checks: Report,
    /// Each fix once, with the checks it answers.
    pub(crate) fixes: Vec<Fix>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Counts {
    pub(crate) pass: usize,
    pub(crate) warn: usize,
    pub(crate) fail: usize,
    pub(crate) not_run: usize,
}

impl DoctorReport {
    fn new(checks: Report, root: &Root, config: String) -> DoctorReport {
        DoctorReport {
            schema_version: SCHEMA_VERSION,
            root: root.path().to_owned(),
            config,
            ok: checks.passed(),
            counts: Counts {
                pass: checks.count(Status::Pass),
                warn: checks.count(Status::Warn),
                fail: checks.count(Status::Fail),
                not_run: checks.count(Status::NotRun),
            },
            fixes: checks.fixes(),
            checks,
        }
    }
}

/// Runs every check of the host under `root` against what a plan expects. `config` names where the plan came
/// from.
pub(crate) fn check(plan: Expectations, root: Root, config: String) -> Result<DoctorReport> {
    let facts = Facts::read(plan, root)?;
    let report = checks::run(CHECKS, &facts)?;
    Ok(DoctorReport::new(report, &facts.root, config))
}
