//! From what the probe saw to a verdict per check: did the VM boot, did the image's kargs reach the kernel,
//! is the IOMMU on, is the stand-in device on vfio-pci (and its twin, when the image binds by address, on its
//! own driver), did the initramfs load the VFIO modules.

use anyhow::Result;
use camino::Utf8PathBuf;

use super::capture::Captured;
use super::probe::{Parsed, ProbeReport, ProbedDevice};
use super::qemu::{STAND_IN_DRIVER, StandIns};
use crate::checks::{self, Check, Finding, Report};
use crate::host::pci::PciAddress;
use crate::kargs::params::{
    AMD_IOMMU, INTEL_IOMMU, IOMMU, RD_DRIVER_PRE, RD_PASSTHRU_VFIO_ADDRESSES, VFIO_PCI_IDS,
};
use crate::kargs::{HostKarg, KernelArg, normalize_key};
use crate::pci_id::PciId;
use crate::plan::VFIO_DRIVERS;

/// What the checks judge: the probe's report, what the image asked for, and how the boot and its capture
/// ended.
#[derive(Debug, Clone)]
pub(crate) struct BootFacts {
    pub(crate) parsed: Parsed,
    /// The kargs bootc would apply from the image's kargs.d (before the stand-in was added).
    pub(crate) image_kargs: Vec<HostKarg>,
    /// The emulated device that stands in for the planned one.
    pub(crate) stand_in: PciId,
    /// One stand-in bound by ID, or twins, one bound by address.
    pub(crate) stand_ins: StandIns,
    /// Seconds after which the VM was killed, when it was.
    pub(crate) timed_out_after: Option<u64>,
    pub(crate) capture: CaptureState,
}

/// How `--capture DIR` went, decided before the checks run (writing DIR is no check's business).
#[derive(Debug, Clone)]
pub(crate) enum CaptureState {
    /// No `--capture`.
    NotAsked,
    /// Without a probe there is no capture to look for.
    NoProbe(Utf8PathBuf),
    Written(Captured),
    Failed {
        dir: Utf8PathBuf,
        error: String,
    },
}

impl BootFacts {
    fn report(&self) -> Option<&ProbeReport> {
        match &self.parsed {
            Parsed::Complete(report) => Some(report),
            _ => None,
        }
    }

    /// The stand-in that must come up on vfio-pci: the one with the ID, or the twin named by address.
    fn stand_in_device<'r>(&self, report: &'r ProbeReport) -> Option<&'r ProbedDevice> {
        match self.stand_ins {
            StandIns::Id => report.device(self.stand_in),
            StandIns::Address { bound, .. } => report.device_at(bound),
        }
    }

    fn stand_in_name(&self) -> String {
        match self.stand_ins {
            StandIns::Id => format!("the stand-in {}", self.stand_in),
            StandIns::Address { bound, .. } => format!("the stand-in {} at {bound}", self.stand_in),
        }
    }
}

/// Every test-boot check, in the order they run; `boot` first.
pub(crate) const CHECKS: &[&Check<BootFacts>] = &[
    &CHECK_BOOT,
    &CHECK_KARGS,
    &CHECK_IOMMU,
    &CHECK_STAND_IN,
    &CHECK_VFIO_MODULES,
    &CHECK_TWIN,
    &CHECK_CAPTURE,
];

/// Runs every check over what the boot left.
pub(crate) fn judge(facts: &BootFacts) -> Result<Report> {
    checks::run(CHECKS, facts)
}

static CHECK_BOOT: Check<BootFacts> = Check {
    name: "boot",
    verifies: "the image's kernel and initramfs mounted its root filesystem and ran the probe to \
               its end",
    requires: &[],
    judge: |facts, _| {
        let detail = match &facts.parsed {
            Parsed::Complete(_) => {
                return Ok(vec![Finding::pass(
                    "the image's kernel and initramfs mounted the root filesystem and ran the \
                     probe",
                )]);
            }
            Parsed::Truncated(_) => "the probe started but its report was cut off",
            Parsed::NotStarted => {
                "the VM never reached the probe (no `ptprobe:begin` on the console)"
            }
        };
        Ok(vec![Finding::fail_plain(match facts.timed_out_after {
            Some(secs) => format!("timed out after {secs} s: {detail}"),
            None => detail.to_owned(),
        })])
    },
};

/// Judges the complete probe report; the `boot` check they all require has made sure there is one.
fn with_report(
    facts: &BootFacts,
    judge: impl FnOnce(&ProbeReport) -> Finding,
) -> Result<Vec<Finding>> {
    Ok(vec![match facts.report() {
        Some(report) => judge(report),
        None => Finding::not_run("no complete probe report"),
    }])
}

static CHECK_KARGS: Check<BootFacts> = Check {
    name: "kargs",
    verifies: "every kargs.d argument reached the kernel, with vfio_pci.ids (or \
               rd.passthru.vfio_addresses) and rd.driver.pre=vfio-pci, and the kernel refused none",
    requires: &[&CHECK_BOOT],
    judge: |facts, _| with_report(facts, |report| kargs(report, &facts.image_kargs)),
};

static CHECK_IOMMU: Check<BootFacts> = Check {
    name: "iommu",
    verifies: "IOMMU groups exist, the stand-in is in one, and the kernel's log acknowledges the \
               IOMMU kargs",
    requires: &[&CHECK_BOOT],
    judge: |facts, _| with_report(facts, |report| iommu(report, facts)),
};

static CHECK_STAND_IN: Check<BootFacts> = Check {
    name: "stand-in-on-vfio-pci",
    verifies: "the stand-in device is bound to vfio-pci",
    requires: &[&CHECK_BOOT],
    judge: |facts, _| with_report(facts, |report| stand_in(report, facts)),
};

static CHECK_VFIO_MODULES: Check<BootFacts> = Check {
    name: "vfio-modules",
    verifies: "the VFIO modules were loaded before the root filesystem's init ran (from the \
               initramfs)",
    requires: &[&CHECK_BOOT],
    judge: |facts, _| with_report(facts, vfio_modules),
};

static CHECK_TWIN: Check<BootFacts> = Check {
    name: "twin-on-own-driver",
    verifies: "with an image that binds by address: the stand-in's identical twin, not named, \
               stays on its own driver",
    requires: &[],
    judge: |facts, _| match facts.stand_ins {
        StandIns::Id => Ok(Vec::new()),
        StandIns::Address { twin, .. } => with_report(facts, |report| {
            twin_on_own_driver(report, facts.stand_in, twin)
        }),
    },
};

static CHECK_CAPTURE: Check<BootFacts> = Check {
    name: "capture",
    verifies: "with --capture: the VM's sysfs/procfs tree arrived whole, reads as a host tree, and \
               was written",
    requires: &[],
    judge: |facts, _| {
        Ok(match &facts.capture {
            CaptureState::NotAsked => Vec::new(),
            CaptureState::NoProbe(dir) => vec![Finding::not_run(format!(
                "nothing written to {dir}: no probe report"
            ))],
            CaptureState::Written(captured) => vec![Finding::pass(format!(
                "{} PCI devices; {} files and {} symlinks written to {}",
                captured.pci_devices, captured.files, captured.links, captured.dir
            ))],
            CaptureState::Failed { dir, error } => vec![Finding::fail_plain(format!(
                "nothing written to {dir}: {error}"
            ))],
        })
    },
};

fn kargs(report: &ProbeReport, image_kargs: &[HostKarg]) -> Finding {
    let cmdline = report.cmdline_kargs();
    let mut problems = Vec::new();
    if image_kargs.is_empty() {
        problems.push("the image's kargs.d sets no kernel arguments".to_owned());
    }
    // Test-boot adds its stand-in to these two.
    let missing: Vec<&str> = image_kargs
        .iter()
        .filter(|k| !k.is(&VFIO_PCI_IDS) && !k.is(&RD_PASSTHRU_VFIO_ADDRESSES))
        .filter(|k| !cmdline.iter().any(|c| c.same_as(*k)))
        .map(HostKarg::as_str)
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "not on the VM's command line: {}",
            missing.join(" ")
        ));
    }
    if !image_kargs
        .iter()
        .any(|k| k.is(&VFIO_PCI_IDS) || k.is(&RD_PASSTHRU_VFIO_ADDRESSES))
    {
        problems.push("kargs.d has no vfio_pci.ids (nor rd.passthru.vfio_addresses)".into());
    }
    if !image_kargs.iter().any(is_driver_pre_vfio) {
        problems.push("kargs.d has no rd.driver.pre=vfio-pci".into());
    }
    problems.extend(refused_by_the_kernel(report, image_kargs));
    match problems.is_empty() {
        true => Finding::pass(format!(
            "all {} kargs.d arguments reached the kernel, with the devices to bind and \
             rd.driver.pre, and the kernel refused none",
            image_kargs.len()
        )),
        false => Finding::fail_plain(problems.join("; ")),
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

fn iommu(report: &ProbeReport, facts: &BootFacts) -> Finding {
    let stand_in = facts.stand_in_name();
    let groups = report.iommu_groups.len();
    if groups == 0 {
        return Finding::fail_plain(
            "no IOMMU groups in /sys/kernel/iommu_groups: the IOMMU is off",
        );
    }
    let Some(group) = facts
        .stand_in_device(report)
        .and_then(|d| d.iommu_group.as_deref())
    else {
        return Finding::fail_plain(format!("{groups} IOMMU groups, but {stand_in} is in none"));
    };
    let found = format!("{groups} IOMMU groups; {stand_in} is in group {group}");
    // Groups alone prove little (Debian's kernel made them under QEMU without any IOMMU karg): the kargs
    // are proven by the kernel's own log lines. Without the domain line the kernel's info messages did
    // not reach the console (`quiet`), and nothing can be told from their absence.
    let Some(domain) = &report.iommu_domain else {
        return Finding::pass(format!(
            "{found} (the kernel logged no default domain type on the console)"
        ));
    };
    let has = |param, token: &str| {
        facts
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
        true => Finding::pass(format!("{found}; default domain {domain}")),
        false => Finding::fail_plain(format!("{found}, but {}", problems.join("; "))),
    }
}

fn stand_in(report: &ProbeReport, facts: &BootFacts) -> Finding {
    let id = facts.stand_in;
    let Some(device) = facts.stand_in_device(report) else {
        return Finding::fail_plain(format!("no {} in the VM", facts.stand_in_name()));
    };
    let by_address = matches!(facts.stand_ins, StandIns::Address { .. });
    let hint = match by_address || facts.image_kargs.iter().any(|k| k.is(&VFIO_PCI_IDS)) {
        true => "",
        false => {
            " (the image's kargs.d sets no vfio_pci.ids, so the test boot had nowhere to add it)"
        }
    };
    match device.driver.as_deref() {
        Some("vfio-pci") => {
            Finding::pass(format!("{id} at {} is bound to vfio-pci", device.address))
        }
        Some(driver) => Finding::fail_plain(format!(
            "{id} at {} is bound to {driver}{hint}",
            device.address
        )),
        None => Finding::fail_plain(format!("{id} at {} has no driver{hint}", device.address)),
    }
}

/// The stand-in's identical twin, not named by address, keeps its own driver: binding by address took exactly
/// the one device, and the twin's driver (in the initramfs, so it raced vfio-pci there) did not take the other.
fn twin_on_own_driver(report: &ProbeReport, id: PciId, twin: PciAddress) -> Finding {
    let Some(device) = report.device_at(twin) else {
        return Finding::fail_plain(format!("no {id} twin at {twin} in the VM"));
    };
    match device.driver.as_deref() {
        Some(STAND_IN_DRIVER) => Finding::pass(format!(
            "its twin {id} at {twin} stays on {STAND_IN_DRIVER}: only the address named was bound"
        )),
        Some("vfio-pci") => Finding::fail_plain(format!(
            "its twin {id} at {twin} is on vfio-pci too: the binding took a device it did not name"
        )),
        Some(other) => Finding::fail_plain(format!(
            "its twin {id} at {twin} is on {other}, not {STAND_IN_DRIVER}"
        )),
        None => Finding::fail_plain(format!(
            "its twin {id} at {twin} has no driver: {STAND_IN_DRIVER} is not in the image's \
             initramfs, so the race between the twins' driver and vfio-pci was never run"
        )),
    }
}

fn vfio_modules(report: &ProbeReport) -> Finding {
    let missing: Vec<&str> = VFIO_DRIVERS
        .iter()
        .copied()
        .filter(|m| !report.has_module(m))
        .collect();
    match missing.is_empty() {
        true => Finding::pass(format!(
            "{} loaded before the root filesystem's init ran (from the initramfs)",
            VFIO_DRIVERS.join(", ")
        )),
        false => Finding::fail_plain(format!(
            "not loaded when the root filesystem's init ran: {} (missing from the initramfs?)",
            missing.join(", ")
        )),
    }
}

fn is_driver_pre_vfio(karg: &HostKarg) -> bool {
    karg.is(&RD_DRIVER_PRE) && karg.tokens().iter().any(|m| normalize_key(m) == "vfio_pci")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::probe::ProbedDevice;
    use crate::checks::{Outcome, Status};

    /// What the image asked for, as the tests vary it.
    struct Asked<'a> {
        image_kargs: &'a [HostKarg],
        stand_in: PciId,
    }

    fn facts(parsed: &Parsed, expect: &Asked) -> BootFacts {
        BootFacts {
            parsed: parsed.clone(),
            stand_ins: StandIns::for_image(expect.image_kargs),
            image_kargs: expect.image_kargs.to_vec(),
            stand_in: expect.stand_in,
            timed_out_after: None,
            capture: CaptureState::NotAsked,
        }
    }

    fn judged(parsed: &Parsed, expect: &Asked) -> Vec<Outcome> {
        judge(&facts(parsed, expect)).unwrap().outcomes
    }

    fn kargs(words: &str) -> Vec<HostKarg> {
        crate::kargs::split_cmdline(words)
    }

    fn good_report() -> ProbeReport {
        ProbeReport {
            cmdline: "intel_iommu=on iommu=pt rd.driver.pre=vfio-pci \
                      vfio-pci.ids=10de:2684,8086:10d3 root=/dev/vda"
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

    fn statuses(checks: &[Outcome]) -> Vec<(&str, Status)> {
        checks.iter().map(|c| (c.name.as_str(), c.status)).collect()
    }

    #[test]
    fn a_good_boot_passes_every_check() {
        let image = kargs("intel_iommu=on iommu=pt rd.driver.pre=vfio-pci vfio_pci.ids=10de:2684");
        let expect = Asked {
            image_kargs: &image,
            stand_in: "8086:10d3".parse().unwrap(),
        };
        let checks = judged(&Parsed::Complete(good_report()), &expect);
        assert!(
            checks.iter().all(|c| c.status == Status::Pass),
            "{checks:#?}"
        );
        assert_eq!(checks.len(), 5);
    }

    fn twins_report(twin_driver: Option<&str>) -> ProbeReport {
        let mut report = good_report();
        report.cmdline =
            "iommu=pt rd.driver.pre=vfio-pci rd.passthru.vfio_addresses=0000:02:00.0,0000:00:10.0"
                .split(' ')
                .map(str::to_owned)
                .collect();
        let twin = |address: &str, driver: Option<&str>, group: &str| ProbedDevice {
            address: address.into(),
            id: "8086:10d3".parse().unwrap(),
            class: "020000".into(),
            driver: driver.map(str::to_owned),
            iommu_group: Some(group.into()),
        };
        report.devices = vec![
            twin("0000:00:10.0", Some("vfio-pci"), "3"),
            twin("0000:00:11.0", twin_driver, "4"),
        ];
        report
    }

    /// An image that binds by address is judged with twins: the named one on vfio-pci, the other on its own
    /// driver, which must have been in the initramfs to race at all.
    #[test]
    fn twins_pass_only_when_the_named_one_alone_is_on_vfio_pci() {
        let image =
            kargs("iommu=pt rd.driver.pre=vfio-pci rd.passthru.vfio_addresses=0000:02:00.0");
        let expect = Asked {
            image_kargs: &image,
            stand_in: "8086:10d3".parse().unwrap(),
        };
        let checks = judged(&Parsed::Complete(twins_report(Some("e1000e"))), &expect);
        assert!(
            checks.iter().all(|c| c.status == Status::Pass),
            "{checks:#?}"
        );
        assert_eq!(statuses(&checks)[5], ("twin-on-own-driver", Status::Pass));
        assert!(
            checks[3]
                .detail
                .contains("at 0000:00:10.0 is bound to vfio-pci"),
            "{}",
            checks[3].detail
        );
        assert!(
            checks[2].detail.contains("at 0000:00:10.0 is in group 3"),
            "{}",
            checks[2].detail
        );

        let both = judged(&Parsed::Complete(twins_report(Some("vfio-pci"))), &expect);
        assert_eq!(both[5].status, Status::Fail);
        assert!(
            both[5].detail.contains("did not name"),
            "{}",
            both[5].detail
        );
        let never_raced = judged(&Parsed::Complete(twins_report(None)), &expect);
        assert_eq!(never_raced[5].status, Status::Fail);
        assert!(
            never_raced[5]
                .detail
                .contains("not in the image's initramfs")
        );
        let mut swapped = twins_report(Some("e1000e"));
        swapped.devices[0].driver = Some("e1000e".into());
        let unbound = judged(&Parsed::Complete(swapped), &expect);
        assert_eq!(unbound[3].status, Status::Fail);
        assert!(
            !unbound[3].detail.contains("sets no vfio_pci.ids"),
            "{}",
            unbound[3].detail
        );

        let not_run = judged(&Parsed::NotStarted, &expect);
        assert_eq!(
            statuses(&not_run)[5],
            ("twin-on-own-driver", Status::NotRun)
        );
        // An image that binds by ID has no twin to judge.
        let by_id = kargs("iommu=pt rd.driver.pre=vfio-pci vfio_pci.ids=10de:2684");
        let expect = Asked {
            image_kargs: &by_id,
            stand_in: "8086:10d3".parse().unwrap(),
        };
        let checks = judged(&Parsed::Complete(good_report()), &expect);
        assert!(!checks.iter().any(|c| c.name == "twin-on-own-driver"));
    }

    #[test]
    fn iommu_kargs_must_be_acknowledged_in_the_kernels_log() {
        let image = kargs("intel_iommu=on iommu=pt rd.driver.pre=vfio-pci vfio_pci.ids=10de:2684");
        let expect = Asked {
            image_kargs: &image,
            stand_in: "8086:10d3".parse().unwrap(),
        };
        let iommu = |domain: Option<&str>| {
            let mut report = good_report();
            report.iommu_domain = domain.map(str::to_owned);
            judged(&Parsed::Complete(report), &expect).remove(2)
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
        let unacknowledged = judged(&Parsed::Complete(report), &expect).remove(2);
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
        let expect = Asked {
            image_kargs: &no_pt,
            stand_in: "8086:10d3".parse().unwrap(),
        };
        let mut report = good_report();
        report.iommu_domain = Some("Translated".into());
        assert_eq!(
            judged(&Parsed::Complete(report), &expect)[2].status,
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
        let expect = Asked {
            image_kargs: &[],
            stand_in: "8086:10d3".parse().unwrap(),
        };
        let checks = judged(&Parsed::Complete(report), &expect);
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
        let expect = Asked {
            image_kargs: &image,
            stand_in: "8086:10d3".parse().unwrap(),
        };
        let checks = judged(&Parsed::Complete(report), &expect);
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
        let expect = Asked {
            image_kargs: &image,
            stand_in: "8086:10d3".parse().unwrap(),
        };
        for parsed in [Parsed::NotStarted, Parsed::Truncated(good_report())] {
            let checks = judged(&parsed, &expect);
            assert_eq!(checks[0].status, Status::Fail);
            assert!(checks[1..].iter().all(|c| c.status == Status::NotRun));
            assert_eq!(checks[1].detail, "not checked: boot failed");
            assert_eq!(checks.len(), 5);
        }
    }

    #[test]
    fn a_timeout_and_the_capture_are_reported_by_their_checks() {
        let image = kargs("rd.driver.pre=vfio-pci");
        let expect = Asked {
            image_kargs: &image,
            stand_in: "8086:10d3".parse().unwrap(),
        };
        let mut facts = facts(&Parsed::NotStarted, &expect);
        facts.timed_out_after = Some(300);
        facts.capture = CaptureState::NoProbe("/tmp/tree".into());
        let report = judge(&facts).unwrap();
        assert!(
            report.outcomes[0]
                .detail
                .starts_with("timed out after 300 s: the VM never reached")
        );
        let capture = report.get("capture").unwrap();
        assert_eq!(
            (capture.status, capture.detail.as_str()),
            (
                Status::NotRun,
                "nothing written to /tmp/tree: no probe report"
            )
        );
        facts.capture = CaptureState::Failed {
            dir: "/tmp/tree".into(),
            error: "the capture was cut off".into(),
        };
        let report = judge(&facts).unwrap();
        assert_eq!(report.get("capture").unwrap().status, Status::Fail);
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
        let expect = Asked {
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
        let expect = Asked {
            image_kargs: &plain,
            stand_in: "8086:10d3".parse().unwrap(),
        };
        assert_eq!(kargs_check(&report, &expect).status, Status::Pass);
    }

    fn kargs_check(report: &ProbeReport, expect: &Asked) -> Outcome {
        judged(&Parsed::Complete(report.clone()), expect)
            .into_iter()
            .find(|c| c.name == "kargs")
            .unwrap()
    }
}
