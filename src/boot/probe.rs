//! The probe that runs inside the test VM, and the parser for what it prints on the serial console.
//!
//! The probe (`layers/boot/passthru-probe`, a POSIX sh script) runs as init of the image's root filesystem, so
//! it sees the system exactly as the initramfs left it. Each fact is one line starting with `ptprobe:`, framed
//! by `ptprobe:begin` and `ptprobe:end`; anything else on the console (kernel messages, dracut) is ignored.

use serde::Serialize;

use crate::host::pci::PciAddress;
use crate::kargs::{HostKarg, normalize_key, split_cmdline};
use crate::pci_id::PciId;

/// The probe script written into the disk image.
pub(crate) const SCRIPT: &str = include_str!("../../layers/boot/passthru-probe");
/// Where the probe lives in the disk image; the VM boots with `init=` this path.
pub(crate) const PATH_IN_IMAGE: &str = "/passthru-probe";

/// Starts every line of the probe's report.
pub(crate) const PREFIX: &str = "ptprobe:";

/// What the probe saw in the VM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct ProbeReport {
    /// The kernel command line the VM booted with.
    pub(crate) cmdline: Vec<String>,
    pub(crate) devices: Vec<ProbedDevice>,
    /// Directories in /sys/kernel/iommu_groups: none means the IOMMU is off.
    pub(crate) iommu_groups: Vec<String>,
    /// Module names from /proc/modules.
    pub(crate) modules: Vec<String>,
    /// /sys/module/vfio* entries (built-in modules show only there).
    pub(crate) sys_modules: Vec<String>,
    /// What the kernel itself logged on the console as its default IOMMU domain type, e.g. `Passthrough (set
    /// via kernel command line)`: the proof that `iommu=pt` took effect. None when it logged nothing (an
    /// image with `quiet` keeps info messages off the console).
    pub(crate) iommu_domain: Option<String>,
    /// The kernel logged `DMAR: IOMMU enabled`, which it does only when it parsed `intel_iommu=on`.
    pub(crate) intel_iommu_enabled: bool,
    /// The kernel's own refusals of command-line arguments, from its log on the console.
    pub(crate) refused_kargs: RefusedKargs,
}

/// What the kernel said it did not take from its command line. Each list is empty when the kernel logged
/// nothing of the kind (or kept its messages off the console with `quiet`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct RefusedKargs {
    /// Names of parameters without a dot that no built-in code knows (init/main.c
    /// `print_unknown_bootoptions`: "Unknown kernel command line parameters "…", will be passed to user space").
    pub(crate) unknown: Vec<String>,
    /// `module.param` a loaded module did not know (kernel/module/main.c: "MODULE: unknown parameter 'P'
    /// ignored"), names normalised.
    pub(crate) unknown_module_params: Vec<String>,
    /// IOMMU driver messages about options they do not have (`AMD-Vi: Unknown option - 'on'`,
    /// `DMAR: Unknown option - 'x'`).
    pub(crate) iommu_options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ProbedDevice {
    pub(crate) address: String,
    pub(crate) id: PciId,
    /// 6 hex digits, e.g. `020000`.
    pub(crate) class: String,
    pub(crate) driver: Option<String>,
    pub(crate) iommu_group: Option<String>,
}

/// How reading the console went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// `ptprobe:begin` and `ptprobe:end` both seen.
    Complete(ProbeReport),
    /// The probe started but its report stops before `ptprobe:end` (VM died or timed out mid-report).
    Truncated(ProbeReport),
    /// No `ptprobe:begin`: the VM never reached the probe.
    NotStarted,
}

impl ProbeReport {
    pub(crate) fn cmdline_kargs(&self) -> Vec<HostKarg> {
        self.cmdline.iter().flat_map(|k| split_cmdline(k)).collect()
    }

    pub(crate) fn device(&self, id: PciId) -> Option<&ProbedDevice> {
        self.devices.iter().find(|d| d.id == id)
    }

    pub(crate) fn device_at(&self, address: PciAddress) -> Option<&ProbedDevice> {
        self.devices
            .iter()
            .find(|d| d.address == address.to_string())
    }

    /// A module is loaded when /proc/modules lists it, or built in when only /sys/module has it.
    pub(crate) fn has_module(&self, name: &str) -> bool {
        let name = name.replace('-', "_");
        self.modules.contains(&name) || self.sys_modules.contains(&name)
    }
}

/// The kernel's own messages, logged long before the probe runs: the default domain type
/// (drivers/iommu/iommu.c), and the Intel driver's answer to `intel_iommu=on` (drivers/iommu/intel/iommu.c).
const DOMAIN_MESSAGE: &str = "iommu: Default domain type: ";
const INTEL_ON_MESSAGE: &str = "DMAR: IOMMU enabled";
const UNKNOWN_PARAMS_MESSAGE: &str = "Unknown kernel command line parameters \"";
const UNKNOWN_MODULE_PARAM: (&str, &str) = (": unknown parameter '", "' ignored");
const IOMMU_UNKNOWN_OPTION: &str = "Unknown option - '";

/// Parses the serial console output of a test boot.
pub(crate) fn parse(console: &str) -> Parsed {
    let mut report = ProbeReport::default();
    let (mut started, mut complete) = (false, false);
    let mut iommu_domain = None;
    let mut intel_iommu_enabled = false;
    let mut refused = RefusedKargs::default();
    for line in console.lines() {
        let line = line.trim_end_matches('\r');
        if let Some((_, domain)) = line.split_once(DOMAIN_MESSAGE) {
            iommu_domain = Some(domain.trim().to_owned());
        }
        intel_iommu_enabled |= line.ends_with(INTEL_ON_MESSAGE);
        refused_karg(line, &mut refused);
        // A kernel message can still land before our prefix on the same line: look for it anywhere.
        let Some(at) = line.find(PREFIX) else {
            continue;
        };
        let fact = &line[at + PREFIX.len()..];
        let (kind, rest) = fact.split_once(' ').unwrap_or((fact, ""));
        match kind {
            "begin" => {
                report = ProbeReport::default();
                started = true;
            }
            _ if !started => {}
            "end" => {
                complete = true;
                break;
            }
            "cmdline" => {
                report.cmdline = split_cmdline(rest)
                    .iter()
                    .map(|k| k.as_str().to_owned())
                    .collect()
            }
            "pci" => {
                if let Some(device) = parse_device(rest) {
                    report.devices.push(device);
                }
            }
            "group" => report.iommu_groups.push(rest.trim().to_owned()),
            "module" => report.modules.push(rest.trim().to_owned()),
            "sysmodule" => report.sys_modules.push(rest.trim().to_owned()),
            _ => {}
        }
    }
    report.iommu_domain = iommu_domain;
    report.intel_iommu_enabled = intel_iommu_enabled;
    report.refused_kargs = refused;
    match (started, complete) {
        (true, true) => Parsed::Complete(report),
        (true, false) => Parsed::Truncated(report),
        (false, _) => Parsed::NotStarted,
    }
}

/// Collects the kernel's refusals of its arguments from one console line.
fn refused_karg(line: &str, refused: &mut RefusedKargs) {
    if let Some((_, rest)) = line.split_once(UNKNOWN_PARAMS_MESSAGE) {
        let words = rest.rsplit_once('"').map_or(rest, |(words, _)| words);
        refused.unknown.extend(
            split_cmdline(words)
                .iter()
                .map(|k| normalize_key(k.as_str().split('=').next().unwrap_or_default())),
        );
    } else if let Some((head, tail)) = line.split_once(UNKNOWN_MODULE_PARAM.0)
        && let Some((param, _)) = tail.split_once(UNKNOWN_MODULE_PARAM.1)
    {
        let module = head
            .rsplit(|c: char| c.is_whitespace() || c == ']')
            .next()
            .unwrap_or(head);
        refused
            .unknown_module_params
            .push(normalize_key(&format!("{module}.{param}")));
    } else if let Some(at) = line.find(IOMMU_UNKNOWN_OPTION) {
        // The driver's prefix comes just before: `[    0.42] AMD-Vi: Unknown option - 'on'`.
        let start = line[..at].rfind(']').map_or(0, |i| i + 1);
        refused.iommu_options.push(line[start..].trim().to_owned());
    }
}

/// `0000:00:02.0 0x8086 0x10d3 0x020000 vfio-pci 1` (`-` for no driver or no group).
fn parse_device(rest: &str) -> Option<ProbedDevice> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let [address, vendor, device, class, driver, group] = words[..] else {
        return None;
    };
    let hex = |s: &str| s.trim_start_matches("0x").to_ascii_lowercase();
    let id = format!("{}:{}", hex(vendor), hex(device)).parse().ok()?;
    let optional = |s: &str| (s != "-").then(|| s.to_owned());
    Some(ProbedDevice {
        address: address.to_owned(),
        id,
        class: hex(class),
        driver: optional(driver),
        iommu_group: optional(group),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\
[    0.081744] DMAR: IOMMU enabled\r
[    0.987005] iommu: Default domain type: Passthrough (set via kernel command line)\r
[    6.147844] Run /init as init process\r
[   12.383109] vfio_pci: add [8086:10d3[ffffffff:ffffffff]] class 0x000000/00000000\r
ptprobe:begin 1\r
ptprobe:cmdline amd_iommu=on iommu=pt rd.driver.pre=vfio-pci vfio_pci.ids=10de:2684,8086:10d3 root=/dev/vda\r
ptprobe:pci 0000:00:00.0 0x8086 0x29c0 0x060000 - 0\r
ptprobe:pci 0000:00:01.0 0x1022 0x0008 0x080600 - -\r
ptprobe:pci 0000:00:02.0 0x8086 0x10d3 0x020000 vfio-pci 1\r
[   31.026942] hrtimer: interrupt took 17784440 nsptprobe:pci 0000:00:03.0 0x1af4 0x1001 0x010000 virtio-pci 2\r
ptprobe:group 0\r
ptprobe:group 1\r
ptprobe:module vfio_pci\r
ptprobe:module vfio_iommu_type1\r
ptprobe:module vfio\r
ptprobe:sysmodule vfio_pci\r
ptprobe:end 1\r
[   32.565653] reboot: Power down\r
";

    #[test]
    fn parses_a_complete_report_among_kernel_messages() {
        let Parsed::Complete(report) = parse(CONSOLE) else {
            panic!("expected a complete report");
        };
        assert_eq!(report.cmdline.len(), 5);
        assert_eq!(report.cmdline[3], "vfio_pci.ids=10de:2684,8086:10d3");
        assert_eq!(
            report.devices.len(),
            4,
            "the line after a kernel message counts too"
        );
        let nic = report.device("8086:10d3".parse().unwrap()).unwrap();
        assert_eq!(nic.address, "0000:00:02.0");
        assert_eq!(nic.class, "020000");
        assert_eq!(nic.driver.as_deref(), Some("vfio-pci"));
        assert_eq!(nic.iommu_group.as_deref(), Some("1"));
        let lpc = &report.devices[1];
        assert_eq!(
            (lpc.driver.as_deref(), lpc.iommu_group.as_deref()),
            (None, None)
        );
        assert_eq!(report.iommu_groups, ["0", "1"]);
        assert!(report.has_module("vfio-pci"));
        assert!(report.has_module("vfio_iommu_type1"));
        assert!(!report.has_module("vfio_virqfd"));
        assert_eq!(
            report.iommu_domain.as_deref(),
            Some("Passthrough (set via kernel command line)"),
            "the kernel's message before the report is read too"
        );
        assert!(report.intel_iommu_enabled);
        let Parsed::Complete(amd) =
            parse(&CONSOLE.replace("DMAR: IOMMU enabled", "AMD-Vi: Unknown option - 'on'"))
        else {
            panic!("expected a complete report");
        };
        assert!(!amd.intel_iommu_enabled);
    }

    #[test]
    fn a_report_cut_short_or_never_started_is_told_apart() {
        let cut = CONSOLE.split("ptprobe:group 1").next().unwrap();
        let Parsed::Truncated(report) = parse(cut) else {
            panic!("expected a truncated report");
        };
        assert_eq!(report.devices.len(), 4);
        assert_eq!(
            parse("[ 0.0] Linux version 6.1\r\nKernel panic - not syncing\r\n"),
            Parsed::NotStarted
        );
        assert_eq!(parse(""), Parsed::NotStarted);
    }

    #[test]
    fn malformed_device_lines_are_skipped() {
        let text = "ptprobe:begin 1\nptprobe:pci 0000:00:02.0 0x8086\nptprobe:pci a 0xzz 0x1 0x0 - \
                    -\nptprobe:end 1\n";
        let Parsed::Complete(report) = parse(text) else {
            panic!("expected a complete report");
        };
        assert!(report.devices.is_empty());
    }

    #[test]
    fn the_script_reports_every_fact_the_parser_reads() {
        for kind in [
            "begin",
            "cmdline",
            "pci",
            "group",
            "module",
            "sysmodule",
            "end",
        ] {
            assert!(
                SCRIPT.contains(&format!("out {kind}")),
                "probe never prints {kind}"
            );
        }
        assert!(SCRIPT.starts_with("#!/bin/sh\n"));
    }

    /// The kernel's own words (init/main.c, kernel/module/main.c, drivers/iommu/amd/init.c).
    #[test]
    fn collects_what_the_kernel_refused_from_its_log() {
        let console = "\
[    0.000000] AMD-Vi: Unknown option - 'on'\r
[    0.012000] DMAR: Unknown option - 'bogus'\r
[    0.052417] Unknown kernel command line parameters \"pcie_acs_override=downstream,multifunction foo\", will be passed to user space.\r
[    5.147844] vfio_pci: unknown parameter 'no_such_param' ignored\r
[    5.2] vfio-pci: unknown parameter 'other' ignored\r
ptprobe:begin 1\r
ptprobe:end 1\r
";
        let Parsed::Complete(report) = parse(console) else {
            panic!("expected a complete report");
        };
        let refused = report.refused_kargs;
        assert_eq!(refused.unknown, ["pcie_acs_override", "foo"]);
        assert_eq!(
            refused.unknown_module_params,
            ["vfio_pci.no_such_param", "vfio_pci.other"]
        );
        assert_eq!(
            refused.iommu_options,
            [
                "AMD-Vi: Unknown option - 'on'",
                "DMAR: Unknown option - 'bogus'"
            ]
        );
        assert_eq!(parse(CONSOLE), {
            let Parsed::Complete(mut clean) = parse(CONSOLE) else {
                unreachable!()
            };
            clean.refused_kargs = RefusedKargs::default();
            Parsed::Complete(clean)
        });
    }
}
