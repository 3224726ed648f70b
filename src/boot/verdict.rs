//! From what the probe saw to a verdict per check: did the VM boot, did the image's kargs reach the kernel,
//! is the IOMMU on, is the stand-in device on vfio-pci, did the initramfs load the VFIO modules.

use serde::Serialize;

use super::probe::{Parsed, ProbeReport};
use crate::kargs::params::{AMD_IOMMU, INTEL_IOMMU, IOMMU, RD_DRIVER_PRE, VFIO_PCI_IDS};
use crate::kargs::{HostKarg, KernelArg, normalize_key};
use crate::pci_id::PciId;
use crate::plan::VFIO_DRIVERS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    Fail,
    /// Not decidable: the probe never reported.
    NotRun,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::NotRun => "----",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
}

impl Check {
    fn new(name: &'static str, ok: bool, detail: String) -> Check {
        let status = if ok { Status::Pass } else { Status::Fail };
        Check {
            name,
            status,
            detail,
        }
    }
}

/// What the verdict is judged against.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    /// The kargs bootc would apply from the image's kargs.d (before the stand-in was added).
    pub image_kargs: &'a [HostKarg],
    /// The emulated device that stands in for the planned one.
    pub stand_in: PciId,
}

/// One verdict per check, in a fixed order; `boot` first.
pub fn judge(parsed: &Parsed, expect: &Expectations) -> Vec<Check> {
    let report = match parsed {
        Parsed::Complete(report) => report,
        other => {
            let detail = match other {
                Parsed::Truncated(_) => "the probe started but its report was cut off",
                _ => "the VM never reached the probe (no `ptprobe:begin` on the console)",
            };
            let mut checks = vec![Check::new("boot", false, detail.to_owned())];
            checks.extend(NAMES.iter().map(|&name| Check {
                name,
                status: Status::NotRun,
                detail: "not checked: no probe report".into(),
            }));
            return checks;
        }
    };
    vec![
        Check::new(
            "boot",
            true,
            "the image's kernel and initramfs mounted the root filesystem and ran the probe".into(),
        ),
        kargs(report, expect.image_kargs),
        iommu(report, expect),
        stand_in(report, expect),
        vfio_modules(report),
    ]
}

const NAMES: [&str; 4] = ["kargs", "iommu", "stand-in-on-vfio-pci", "vfio-modules"];

fn kargs(report: &ProbeReport, image_kargs: &[HostKarg]) -> Check {
    let cmdline = report.cmdline_kargs();
    let mut problems = Vec::new();
    if image_kargs.is_empty() {
        problems.push("the image's kargs.d sets no kernel arguments".to_owned());
    }
    let missing: Vec<&str> = image_kargs
        .iter()
        .filter(|k| !k.is(&VFIO_PCI_IDS))
        .filter(|k| !cmdline.iter().any(|c| c.same_as(*k)))
        .map(HostKarg::as_str)
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "not on the VM's command line: {}",
            missing.join(" ")
        ));
    }
    if !image_kargs.iter().any(|k| k.is(&VFIO_PCI_IDS)) {
        problems.push("kargs.d has no vfio_pci.ids".into());
    }
    if !image_kargs.iter().any(is_driver_pre_vfio) {
        problems.push("kargs.d has no rd.driver.pre=vfio-pci".into());
    }
    problems.extend(refused_by_the_kernel(report, image_kargs));
    match problems.is_empty() {
        true => Check::new(
            "kargs",
            true,
            format!(
                "all {} kargs.d arguments reached the kernel, with vfio_pci.ids and rd.driver.pre, and the \
                 kernel refused none",
                image_kargs.len()
            ),
        ),
        false => Check::new("kargs", false, problems.join("; ")),
    }
}

/// The image's arguments the kernel said it did not take: a parameter without a dot that nothing built in knows
/// (handed to init instead), a module parameter its module does not have, an IOMMU option its driver does not
/// have. Reaching the command line is not enough; `amd_iommu=on` reached it for years and did nothing.
fn refused_by_the_kernel(report: &ProbeReport, image_kargs: &[HostKarg]) -> Vec<String> {
    let refused = &report.refused_kargs;
    let mut problems = Vec::new();
    for karg in image_kargs {
        let key = karg.normalized_key();
        let listed = match key.contains('.') {
            true => &refused.unknown_module_params,
            false => &refused.unknown,
        };
        if listed.contains(&key) {
            problems.push(format!("the kernel does not know {karg}"));
        }
    }
    for (param, driver) in [
        (&AMD_IOMMU, "AMD-Vi:"),
        (&INTEL_IOMMU, "DMAR:"),
        (&IOMMU, "iommu:"),
    ] {
        if image_kargs.iter().any(|k| k.is(param)) {
            problems.extend(
                refused
                    .iommu_options
                    .iter()
                    .filter(|m| m.starts_with(driver))
                    .map(|m| format!("the kernel refused an option of {}: `{m}`", param.name)),
            );
        }
    }
    problems
}

fn iommu(report: &ProbeReport, expect: &Expectations) -> Check {
    let stand_in = expect.stand_in;
    let groups = report.iommu_groups.len();
    if groups == 0 {
        return Check::new(
            "iommu",
            false,
            "no IOMMU groups in /sys/kernel/iommu_groups: the IOMMU is off".into(),
        );
    }
    let Some(group) = report
        .device(stand_in)
        .and_then(|d| d.iommu_group.as_deref())
    else {
        return Check::new(
            "iommu",
            false,
            format!("{groups} IOMMU groups, but the stand-in {stand_in} is in none"),
        );
    };
    let found = format!("{groups} IOMMU groups; the stand-in {stand_in} is in group {group}");
    // Groups alone prove little (Debian's kernel made them under QEMU without any IOMMU karg): the kargs
    // are proven by the kernel's own log lines. Without the domain line the kernel's info messages did
    // not reach the console (`quiet`), and nothing can be told from their absence.
    let Some(domain) = &report.iommu_domain else {
        return Check::new(
            "iommu",
            true,
            format!("{found} (the kernel logged no default domain type on the console)"),
        );
    };
    let has = |param, token: &str| {
        expect
            .image_kargs
            .iter()
            .any(|k| k.is(param) && k.tokens().contains(&token))
    };
    let mut problems = Vec::new();
    if has(&IOMMU, "pt") && !domain.starts_with("Passthrough") {
        problems.push(format!(
            "the kernel's default IOMMU domain is {domain}, not the Passthrough of iommu=pt"
        ));
    }
    if has(&INTEL_IOMMU, "on") && !report.intel_iommu_enabled {
        problems
            .push("the kernel never logged `DMAR: IOMMU enabled` for intel_iommu=on".to_owned());
    }
    match problems.is_empty() {
        true => Check::new("iommu", true, format!("{found}; default domain {domain}")),
        false => Check::new(
            "iommu",
            false,
            format!("{found}, but {}", problems.join("; ")),
        ),
    }
}

fn stand_in(report: &ProbeReport, expect: &Expectations) -> Check {
    const NAME: &str = "stand-in-on-vfio-pci";
    let id = expect.stand_in;
    let Some(device) = report.device(id) else {
        return Check::new(NAME, false, format!("no {id} device in the VM"));
    };
    let hint = match expect.image_kargs.iter().any(|k| k.is(&VFIO_PCI_IDS)) {
        true => "",
        false => {
            " (the image's kargs.d sets no vfio_pci.ids, so the test boot had nowhere to add it)"
        }
    };
    match device.driver.as_deref() {
        Some("vfio-pci") => Check::new(
            NAME,
            true,
            format!("{id} at {} is bound to vfio-pci", device.address),
        ),
        Some(driver) => Check::new(
            NAME,
            false,
            format!("{id} at {} is bound to {driver}{hint}", device.address),
        ),
        None => Check::new(
            NAME,
            false,
            format!("{id} at {} has no driver{hint}", device.address),
        ),
    }
}

fn vfio_modules(report: &ProbeReport) -> Check {
    let missing: Vec<&str> = VFIO_DRIVERS
        .iter()
        .copied()
        .filter(|m| !report.has_module(m))
        .collect();
    match missing.is_empty() {
        true => Check::new(
            "vfio-modules",
            true,
            format!(
                "{} loaded before the root filesystem's init ran (from the initramfs)",
                VFIO_DRIVERS.join(", ")
            ),
        ),
        false => Check::new(
            "vfio-modules",
            false,
            format!(
                "not loaded when the root filesystem's init ran: {} (missing from the initramfs?)",
                missing.join(", ")
            ),
        ),
    }
}

fn is_driver_pre_vfio(karg: &HostKarg) -> bool {
    karg.is(&RD_DRIVER_PRE) && karg.tokens().iter().any(|m| normalize_key(m) == "vfio_pci")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::probe::ProbedDevice;

    fn kargs(words: &str) -> Vec<HostKarg> {
        crate::kargs::split_cmdline(words)
    }

    fn good_report() -> ProbeReport {
        ProbeReport {
            cmdline: "intel_iommu=on iommu=pt rd.driver.pre=vfio-pci vfio-pci.ids=10de:2684,8086:10d3 root=/dev/vda"
                .split(' ')
                .map(str::to_owned)
                .collect(),
            devices: vec![ProbedDevice {
                address: "0000:00:02.0".into(),
                id: "8086:10d3".parse().unwrap(),
                class: "020000".into(),
                driver: Some("vfio-pci".into()),
                iommu_group: Some("1".into()),
            }],
            iommu_groups: vec!["0".into(), "1".into()],
            modules: vec!["vfio_pci".into(), "vfio_iommu_type1".into(), "vfio".into()],
            sys_modules: vec![],
            iommu_domain: Some("Passthrough (set via kernel command line)".into()),
            intel_iommu_enabled: true,
            refused_kargs: Default::default(),
        }
    }

    fn statuses(checks: &[Check]) -> Vec<(&str, Status)> {
        checks.iter().map(|c| (c.name, c.status)).collect()
    }

    #[test]
    fn a_good_boot_passes_every_check() {
        let image = kargs("intel_iommu=on iommu=pt rd.driver.pre=vfio-pci vfio_pci.ids=10de:2684");
        let expect = Expectations {
            image_kargs: &image,
            stand_in: "8086:10d3".parse().unwrap(),
        };
        let checks = judge(&Parsed::Complete(good_report()), &expect);
        assert!(
            checks.iter().all(|c| c.status == Status::Pass),
            "{checks:#?}"
        );
        assert_eq!(checks.len(), 5);
    }

    #[test]
    fn iommu_kargs_must_be_acknowledged_in_the_kernels_log() {
        let image = kargs("intel_iommu=on iommu=pt rd.driver.pre=vfio-pci vfio_pci.ids=10de:2684");
        let expect = Expectations {
            image_kargs: &image,
            stand_in: "8086:10d3".parse().unwrap(),
        };
        let iommu = |domain: Option<&str>| {
            let mut report = good_report();
            report.iommu_domain = domain.map(str::to_owned);
            judge(&Parsed::Complete(report), &expect).remove(2)
        };
        let translated = iommu(Some("Translated"));
        assert_eq!(translated.status, Status::Fail);
        assert!(
            translated.detail.contains("Translated") && translated.detail.contains("iommu=pt"),
            "{}",
            translated.detail
        );
        let pt = iommu(Some("Passthrough (set via kernel command line)"));
        assert_eq!(pt.status, Status::Pass);
        assert!(pt.detail.contains("Passthrough"), "{}", pt.detail);
        // intel_iommu=on that the kernel did not acknowledge.
        let mut report = good_report();
        report.intel_iommu_enabled = false;
        let unacknowledged = judge(&Parsed::Complete(report), &expect).remove(2);
        assert_eq!(unacknowledged.status, Status::Fail);
        assert!(
            unacknowledged.detail.contains("DMAR: IOMMU enabled"),
            "{}",
            unacknowledged.detail
        );
        // A kernel that logged nothing (`quiet`) is not held against the image: the groups still count.
        let silent = iommu(None);
        assert_eq!(silent.status, Status::Pass);
        assert!(silent.detail.contains("logged no default domain"));
        // Without iommu=pt in the image, the default domain is only reported.
        let no_pt = kargs("intel_iommu=on rd.driver.pre=vfio-pci vfio_pci.ids=10de:2684");
        let expect = Expectations {
            image_kargs: &no_pt,
            stand_in: "8086:10d3".parse().unwrap(),
        };
        let mut report = good_report();
        report.iommu_domain = Some("Translated".into());
        assert_eq!(
            judge(&Parsed::Complete(report), &expect)[2].status,
            Status::Pass
        );
    }

    #[test]
    fn an_image_without_passthrough_kargs_fails_kargs_iommu_and_binding() {
        let mut report = good_report();
        report.cmdline = vec!["root=/dev/vda".into()];
        report.iommu_groups.clear();
        report.devices[0].driver = Some("e1000e".into());
        report.devices[0].iommu_group = None;
        let expect = Expectations {
            image_kargs: &[],
            stand_in: "8086:10d3".parse().unwrap(),
        };
        let checks = judge(&Parsed::Complete(report), &expect);
        assert_eq!(
            statuses(&checks),
            [
                ("boot", Status::Pass),
                ("kargs", Status::Fail),
                ("iommu", Status::Fail),
                ("stand-in-on-vfio-pci", Status::Fail),
                ("vfio-modules", Status::Pass),
            ]
        );
        assert!(checks[1].detail.contains("no vfio_pci.ids"));
        assert!(checks[1].detail.contains("no rd.driver.pre=vfio-pci"));
        assert!(checks[3].detail.contains("bound to e1000e"));
        assert!(checks[3].detail.contains("sets no vfio_pci.ids"));
    }

    #[test]
    fn missing_modules_and_kargs_that_did_not_reach_the_kernel_are_named() {
        let mut report = good_report();
        report.modules = vec!["vfio".into()];
        report.sys_modules = vec!["vfio_pci".into()];
        let image =
            kargs("intel_iommu=on rd.driver.pre=vfio-pci vfio_pci.ids=10de:2684 kvm.ignore_msrs=1");
        let expect = Expectations {
            image_kargs: &image,
            stand_in: "8086:10d3".parse().unwrap(),
        };
        let checks = judge(&Parsed::Complete(report), &expect);
        assert_eq!(checks[1].status, Status::Fail);
        assert_eq!(
            checks[1].detail,
            "not on the VM's command line: kvm.ignore_msrs=1"
        );
        assert_eq!(checks[4].status, Status::Fail);
        assert!(checks[4].detail.contains("vfio_iommu_type1"));
        assert!(!checks[4].detail.contains("vfio_pci"), "built in counts");
    }

    #[test]
    fn no_report_fails_boot_and_leaves_the_rest_unchecked() {
        let image = kargs("rd.driver.pre=vfio-pci");
        let expect = Expectations {
            image_kargs: &image,
            stand_in: "8086:10d3".parse().unwrap(),
        };
        for parsed in [Parsed::NotStarted, Parsed::Truncated(good_report())] {
            let checks = judge(&parsed, &expect);
            assert_eq!(checks[0].status, Status::Fail);
            assert!(checks[1..].iter().all(|c| c.status == Status::NotRun));
            assert_eq!(checks.len(), 5);
        }
    }

    #[test]
    fn arguments_the_kernel_refused_fail_the_kargs_check() {
        let image = kargs(
            "intel_iommu=on iommu=pt rd.driver.pre=vfio-pci vfio_pci.ids=10de:2684 amd_iommu=on \
             pcie_acs_override=downstream vfio-pci.nope=1",
        );
        let mut report = good_report();
        report.cmdline.extend(
            [
                "amd_iommu=on",
                "pcie_acs_override=downstream",
                "vfio-pci.nope=1",
            ]
            .map(String::from),
        );
        report.refused_kargs = crate::boot::probe::RefusedKargs {
            unknown: vec!["pcie_acs_override".into()],
            unknown_module_params: vec!["vfio_pci.nope".into()],
            iommu_options: vec!["AMD-Vi: Unknown option - 'on'".into()],
        };
        let expect = Expectations {
            image_kargs: &image,
            stand_in: "8086:10d3".parse().unwrap(),
        };
        let check = kargs_check(&report, &expect);
        assert_eq!(check.status, Status::Fail);
        for refused in [
            "does not know pcie_acs_override=downstream",
            "does not know vfio-pci.nope=1",
            "refused an option of amd_iommu: `AMD-Vi: Unknown option - 'on'`",
        ] {
            assert!(check.detail.contains(refused), "{}", check.detail);
        }
        // DMAR's refusal is about intel_iommu: an image that plans none is not blamed for it.
        report.refused_kargs = crate::boot::probe::RefusedKargs {
            iommu_options: vec!["DMAR: Unknown option - 'x'".into()],
            ..Default::default()
        };
        let plain = kargs("iommu=pt rd.driver.pre=vfio-pci vfio_pci.ids=10de:2684");
        let expect = Expectations {
            image_kargs: &plain,
            stand_in: "8086:10d3".parse().unwrap(),
        };
        assert_eq!(kargs_check(&report, &expect).status, Status::Pass);
    }

    fn kargs_check(report: &ProbeReport, expect: &Expectations) -> Check {
        judge(&Parsed::Complete(report.clone()), expect)
            .into_iter()
            .find(|c| c.name == "kargs")
            .unwrap()
    }
}
