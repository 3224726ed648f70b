//! The test VM: its kernel command line, the QEMU command line, and running QEMU under a timeout while the
//! serial console goes to a file.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use clap::ValueEnum;
use serde::Serialize;

use super::{capture, probe};
use crate::cmd::Cmd;
use crate::host::cpu::CpuVendor;
use crate::host::pci::PciAddress;
use crate::kargs::params::{Param, RD_PASSTHRU_VFIO_ADDRESSES, VFIO_PCI_IDS};
use crate::kargs::{HostKarg, KernelArg, vfio_pci_ids};
use crate::pci_id::PciId;
use crate::root::{Device, Root};

pub(crate) const QEMU: &str = "qemu-system-x86_64";

/// The disk image as the VM's kernel sees it (virtio-blk).
pub(crate) const ROOT_DEVICE: &str = "/dev/vda";

/// The virtual IOMMU of the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum IommuKind {
    Intel,
    Amd,
}

impl IommuKind {
    pub(crate) fn for_cpu(cpu: CpuVendor) -> IommuKind {
        match cpu {
            CpuVendor::Intel => IommuKind::Intel,
            CpuVendor::Amd => IommuKind::Amd,
        }
    }

    fn device(self) -> &'static str {
        match self {
            // Interrupt remapping would need a split irqchip under KVM; the check does not need it.
            IommuKind::Intel => "intel-iommu,intremap=off",
            IommuKind::Amd => "amd-iommu",
        }
    }
}

/// For people: `Intel`, `AMD`.
impl std::fmt::Display for IommuKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IommuKind::Intel => "Intel",
            IommuKind::Amd => "AMD",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Accel {
    Kvm,
    Tcg,
}

/// For people: `KVM`, `TCG`.
impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "KVM",
            Accel::Tcg => "TCG",
        })
    }
}

impl Accel {
    /// KVM when /dev/kvm can be opened for reading and writing, TCG (emulation, slower) otherwise.
    pub(crate) fn detect() -> Accel {
        // QEMU runs on this machine, whatever --root says.
        let usable = Root::default().open_device(Device::Kvm).is_ok();
        if usable { Accel::Kvm } else { Accel::Tcg }
    }
}

/// The stand-in device QEMU emulates: an Intel 82574L NIC, which every distribution kernel knows.
pub(crate) const STAND_IN: PciId = PciId {
    vendor: 0x8086,
    device: 0x10d3,
};
const STAND_IN_QEMU_DEVICE: &str = "e1000e";
/// The stand-in's own driver, which its twin must keep.
pub(crate) const STAND_IN_DRIVER: &str = "e1000e";

/// The fixed places of the twin stand-ins on the q35 root bus (QEMU `addr=`), clear of the slots QEMU gives
/// its other devices.
pub(crate) const TWIN_BOUND: PciAddress = PciAddress {
    domain: 0,
    bus: 0,
    device: 0x10,
    function: 0,
};
pub(crate) const TWIN_KEPT: PciAddress = PciAddress {
    domain: 0,
    bus: 0,
    device: 0x11,
    function: 0,
};

/// The emulated devices that stand in for the image's planned ones, chosen by how the image binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "bound_by", rename_all = "lowercase")]
pub(crate) enum StandIns {
    /// One stand-in, added to the image's `vfio_pci.ids`.
    Id,
    /// Two identical stand-ins at fixed addresses: `bound` is added to the image's `rd.passthru.vfio_addresses`
    /// (and not to `vfio_pci.ids`, which would take both), `twin` must stay on its own driver.
    Address { bound: PciAddress, twin: PciAddress },
}

impl StandIns {
    /// Twins when the image binds by address (its kargs.d has the address argument), else one by ID.
    pub(crate) fn for_image(image_kargs: &[HostKarg]) -> StandIns {
        match image_kargs
            .iter()
            .any(|k| k.is(&RD_PASSTHRU_VFIO_ADDRESSES))
        {
            true => StandIns::Address {
                bound: TWIN_BOUND,
                twin: TWIN_KEPT,
            },
            false => StandIns::Id,
        }
    }

    /// The `-device` values of QEMU.
    fn qemu_devices(self) -> Vec<String> {
        match self {
            StandIns::Id => vec![STAND_IN_QEMU_DEVICE.to_owned()],
            StandIns::Address { bound, twin } => [bound, twin]
                .iter()
                .map(|a| {
                    format!(
                        "{STAND_IN_QEMU_DEVICE},addr={:02x}.{:x}",
                        a.device, a.function
                    )
                })
                .collect(),
        }
    }
}

/// The VM's kernel command line: the image's kargs as bootc would apply them, with the stand-in added to
/// the (last, effective) `vfio_pci.ids`, or with twins, its bound twin's address to the last
/// `rd.passthru.vfio_addresses`; then the test boot's own arguments: the disk, the console the host reads, the
/// probe as init, and a VM that ends by itself when anything goes wrong (a panic reboots and -no-reboot makes
/// QEMU exit; no dracut rescue shell waits for a keyboard). An image without `vfio_pci.ids` gets none: adding
/// one would hide what is wrong with it. [`Capture::Asked`] adds the karg that asks the probe to send its tree
/// (`test-boot --capture`).
pub(crate) fn cmdline(
    image_kargs: &[HostKarg],
    stand_in: PciId,
    stand_ins: StandIns,
    capture: Capture,
) -> Vec<String> {
    let mut words: Vec<String> = image_kargs.iter().map(|k| k.as_str().to_owned()).collect();
    match stand_ins {
        StandIns::Id => {
            let present = vfio_pci_ids(image_kargs).contains(&stand_in);
            add_to_last(&mut words, image_kargs, &VFIO_PCI_IDS, stand_in, present);
        }
        StandIns::Address { bound, .. } => {
            let present = last_list(image_kargs, &RD_PASSTHRU_VFIO_ADDRESSES)
                .any(|a| PciAddress::from_user(a) == Ok(bound));
            add_to_last(
                &mut words,
                image_kargs,
                &RD_PASSTHRU_VFIO_ADDRESSES,
                bound,
                present,
            );
        }
    }
    words.extend([
        format!("root={ROOT_DEVICE}"),
        "console=ttyS0".into(),
        format!("init={}", probe::PATH_IN_IMAGE),
        "panic=-1".into(),
        "rd.shell=0".into(),
    ]);
    if capture == Capture::Asked {
        words.push(capture::KARG.into());
    }
    words
}

/// Appends `item` to the comma-separated value of the last `param` of the image (the one that counts), unless
/// `present`.
fn add_to_last(
    words: &mut [String],
    image_kargs: &[HostKarg],
    param: &Param,
    item: impl std::fmt::Display,
    present: bool,
) {
    let Some(i) = image_kargs.iter().rposition(|k| k.is(param)) else {
        return;
    };
    if present {
        return;
    }
    let list = image_kargs[i].value().unwrap_or("");
    let sep = if list.is_empty() { "" } else { "," };
    words[i] = format!("{}={list}{sep}{item}", image_kargs[i].key());
}

/// The entries of the last `param`'s comma-separated value.
fn last_list<'a>(image_kargs: &'a [HostKarg], param: &Param) -> impl Iterator<Item = &'a str> {
    image_kargs
        .iter()
        .rfind(|k| k.is(param))
        .and_then(|k| k.value())
        .into_iter()
        .flat_map(|v| v.split(',').filter(|a| !a.is_empty()))
}

/// Whether the probe sends the VM's sysfs/procfs tree to the host (`test-boot --capture`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Capture {
    Asked,
    NotAsked,
}

/// Files and settings of one VM.
#[derive(Debug, Clone)]
pub(crate) struct VmSpec {
    pub(crate) kernel: Utf8PathBuf,
    pub(crate) initrd: Utf8PathBuf,
    pub(crate) disk: Utf8PathBuf,
    pub(crate) console: Utf8PathBuf,
    pub(crate) cmdline: Vec<String>,
    pub(crate) iommu: IommuKind,
    pub(crate) accel: Accel,
    pub(crate) stand_ins: StandIns,
    /// `test-boot --capture`: the file the VM's second serial port (ttyS1) writes to.
    pub(crate) capture: Option<Utf8PathBuf>,
}

impl VmSpec {
    pub(crate) fn argv(&self) -> Vec<OsString> {
        let mut argv: Vec<String> = vec![
            QEMU.into(),
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-machine".into(),
            "q35".into(),
        ];
        match self.accel {
            Accel::Kvm => argv.extend(["-accel", "kvm", "-cpu", "host"].map(String::from)),
            Accel::Tcg => argv.extend(["-accel", "tcg"].map(String::from)),
        }
        argv.extend([
            "-m".into(),
            "1024".into(),
            "-smp".into(),
            "2".into(),
            // The IOMMU first: QEMU wants it before the PCI devices it translates for.
            "-device".into(),
            self.iommu.device().into(),
            "-kernel".into(),
            self.kernel.to_string(),
            "-initrd".into(),
            self.initrd.to_string(),
            "-append".into(),
            self.cmdline.join(" "),
            "-drive".into(),
            format!("file={},format=raw,if=virtio", qemu_escape(&self.disk)),
        ]);
        for device in self.stand_ins.qemu_devices() {
            argv.extend(["-device".into(), device]);
        }
        argv.extend([
            "-display".into(),
            "none".into(),
            "-no-reboot".into(),
            "-serial".into(),
            format!("file:{}", self.console),
        ]);
        if let Some(file) = &self.capture {
            argv.extend([
                "-serial".into(),
                format!("file:{file}"),
                // A captured host without any GPU would leave the GPU verdicts of `groups` and `detect`
                // untested: QEMU's standard VGA is a real boot GPU (boot_vga 1) in its own group.
                "-device".into(),
                "VGA".into(),
            ]);
        }
        argv.into_iter().map(OsString::from).collect()
    }
}

/// QEMU option values separate with commas; a comma in a path is written twice.
fn qemu_escape(path: &Utf8Path) -> String {
    path.as_str().replace(',', ",,")
}

/// How the VM ended.
#[derive(Debug, Clone)]
pub(crate) struct VmRun {
    pub(crate) console: String,
    /// From QEMU's start until the probe's report was complete on the console.
    pub(crate) probe_done_after: Option<Duration>,
    pub(crate) elapsed: Duration,
    pub(crate) timed_out: bool,
    /// The end of QEMU's stderr, for when QEMU itself failed.
    pub(crate) stderr: String,
    pub(crate) exit_ok: bool,
}

/// After the report is complete the probe powers off; this long is allowed for that before QEMU is killed.
const POWER_OFF_GRACE: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(250);

/// Runs the VM until it powers off or `timeout` passes (then QEMU is killed).
pub(crate) fn run(spec: &VmSpec, timeout: Duration) -> Result<VmRun> {
    let argv = spec.argv();
    let start = Instant::now();
    let qemu = Cmd::new(&argv[0])
        .args(&argv[1..])
        .start()
        .context("starting QEMU (install qemu-system-x86)")?;
    let mut probe_done_after = None;
    let mut timed_out = false;
    while !qemu.has_exited()? {
        let elapsed = start.elapsed();
        if probe_done_after.is_none() && read_console(&spec.console).contains("ptprobe:end") {
            probe_done_after = Some(elapsed);
        }
        if crate::interrupt::requested() {
            // Waited for, so QEMU no longer holds the disk when the scratch directory goes.
            qemu.kill()?;
            let _ = qemu.wait();
            return Err(crate::interrupt::Interrupted.into());
        }
        let grace_over = probe_done_after.is_some_and(|done| elapsed > done + POWER_OFF_GRACE);
        if elapsed > timeout || grace_over {
            timed_out = probe_done_after.is_none();
            qemu.kill()?;
            break;
        }
        std::thread::sleep(POLL);
    }
    let ended = qemu.wait()?;
    let elapsed = start.elapsed();
    let console = read_console(&spec.console);
    if probe_done_after.is_none() && console.contains("ptprobe:end") {
        probe_done_after = Some(elapsed);
    }
    Ok(VmRun {
        console,
        probe_done_after,
        elapsed,
        timed_out,
        stderr: ended.stderr.join("\n"),
        exit_ok: ended.ok,
    })
}

fn read_console(path: &Utf8Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kargs(words: &str) -> Vec<HostKarg> {
        crate::kargs::split_cmdline(words)
    }

    #[test]
    fn the_stand_in_joins_the_effective_vfio_ids_only() {
        let image = kargs("amd_iommu=on vfio-pci.ids=1002:67df vfio_pci.ids=10de:2684,10de:22ba");
        assert_eq!(
            cmdline(&image, STAND_IN, StandIns::Id, Capture::NotAsked),
            [
                "amd_iommu=on",
                "vfio-pci.ids=1002:67df",
                "vfio_pci.ids=10de:2684,10de:22ba,8086:10d3",
                "root=/dev/vda",
                "console=ttyS0",
                "init=/passthru-probe",
                "panic=-1",
                "rd.shell=0",
            ]
        );
        let already = kargs("vfio_pci.ids=8086:10D3");
        assert_eq!(
            cmdline(&already, STAND_IN, StandIns::Id, Capture::NotAsked)[0],
            "vfio_pci.ids=8086:10D3"
        );
        let none = kargs("intel_iommu=on");
        let line = cmdline(&none, STAND_IN, StandIns::Id, Capture::NotAsked);
        assert!(!line.iter().any(|w| w.contains("8086:10d3")), "{line:?}");
        assert!(!line.iter().any(|w| w.starts_with("passthru_probe.")));
        assert_eq!(
            cmdline(&none, STAND_IN, StandIns::Id, Capture::Asked)
                .last()
                .map(String::as_str),
            Some("passthru_probe.capture=ttyS1")
        );
    }

    /// An image that binds by address gets twins: the bound one joins the last address argument, and the
    /// stand-in's ID stays out of `vfio_pci.ids`, which would take the twin too.
    #[test]
    fn twins_join_the_effective_address_argument_only() {
        let image = kargs(
            "rd.passthru.vfio_addresses=0000:05:00.0 vfio_pci.ids=10de:2684 \
             rd.passthru.vfio-addresses=0000:02:00.0,0000:02:00.1",
        );
        let twins = StandIns::for_image(&image);
        assert_eq!(
            twins,
            StandIns::Address {
                bound: TWIN_BOUND,
                twin: TWIN_KEPT
            }
        );
        assert_eq!(
            cmdline(&image, STAND_IN, twins, Capture::NotAsked)[..3],
            [
                "rd.passthru.vfio_addresses=0000:05:00.0",
                "vfio_pci.ids=10de:2684",
                "rd.passthru.vfio-addresses=0000:02:00.0,0000:02:00.1,0000:00:10.0",
            ]
        );
        let already = kargs("rd.passthru.vfio_addresses=00:10.0");
        assert_eq!(
            cmdline(&already, STAND_IN, twins, Capture::NotAsked)[0],
            "rd.passthru.vfio_addresses=00:10.0"
        );
        assert_eq!(
            StandIns::for_image(&kargs("vfio_pci.ids=10de:2684")),
            StandIns::Id
        );
        assert_eq!(
            serde_json::to_value(twins).unwrap(),
            serde_json::json!({
                "bound_by": "address",
                "bound": "0000:00:10.0",
                "twin": "0000:00:11.0"
            })
        );
    }

    #[test]
    fn argv_places_the_iommu_before_devices_and_picks_the_accelerator() {
        let spec = VmSpec {
            kernel: "/w/vmlinuz".into(),
            initrd: "/w/initramfs.img".into(),
            disk: "/w/a,b.img".into(),
            console: "/w/console.log".into(),
            cmdline: vec!["root=/dev/vda".into(), "console=ttyS0".into()],
            iommu: IommuKind::Intel,
            accel: Accel::Tcg,
            stand_ins: StandIns::Id,
            capture: None,
        };
        let text = |spec: &VmSpec| {
            spec.argv()
                .iter()
                .map(|a| a.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            text(&spec),
            "qemu-system-x86_64 -nodefaults -no-user-config -machine q35 -accel tcg -m 1024 -smp 2 \
             -device intel-iommu,intremap=off -kernel /w/vmlinuz -initrd /w/initramfs.img \
             -append root=/dev/vda console=ttyS0 -drive file=/w/a,,b.img,format=raw,if=virtio \
             -device e1000e -display none -no-reboot -serial file:/w/console.log"
        );
        let amd = VmSpec {
            iommu: IommuKind::Amd,
            accel: Accel::Kvm,
            ..spec
        };
        let line = text(&amd);
        assert!(line.contains("-accel kvm -cpu host"));
        assert!(line.contains("-device amd-iommu "));
        assert!(!line.contains("VGA"));
        let capturing = VmSpec {
            capture: Some("/w/capture.b64".into()),
            ..amd
        };
        assert!(
            text(&capturing)
                .ends_with("-serial file:/w/console.log -serial file:/w/capture.b64 -device VGA")
        );
        let twins = VmSpec {
            stand_ins: StandIns::Address {
                bound: TWIN_BOUND,
                twin: TWIN_KEPT,
            },
            ..capturing
        };
        assert!(
            text(&twins).contains("-device e1000e,addr=10.0 -device e1000e,addr=11.0 -display"),
            "{}",
            text(&twins)
        );
    }
}
