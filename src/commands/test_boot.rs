use std::time::Duration;

use anyhow::Result;

use super::{load_config, print_json};
use crate::boot::qemu::{IommuKind, StandIns};
use crate::boot::{self, BootReport, TestBootOptions};
use crate::checks::{self, Colour, Status};
use crate::cli::{Cli, OverrideArgs, TestBootArgs};
use crate::error::ChecksFailed;
use crate::plan::Plan;

pub(crate) fn run(cli: &Cli, args: &TestBootArgs) -> Result<()> {
    if args.list_checks {
        return Ok(checks::list(boot::verdict::CHECKS, &mut std::io::stdout())?);
    }
    if let Some(dir) = &args.capture {
        boot::capture::check_target(dir)?;
    }
    // The config is read only for what the command line leaves open: the image tag and the IOMMU kind.
    let (image, iommu) = match (&args.image, args.iommu) {
        (Some(image), Some(iommu)) => (image.clone(), iommu),
        (image, iommu) => {
            let (config, _) = load_config(cli, &OverrideArgs::default())?;
            let plan = Plan::resolve(&config, &cli.image_target())?;
            (
                image.clone().unwrap_or(plan.image.tag),
                iommu.unwrap_or(IommuKind::for_cpu(plan.cpu_vendor)),
            )
        }
    };
    let options = TestBootOptions {
        image,
        iommu,
        timeout: Duration::from_secs(args.timeout),
        capture: args.capture.clone(),
    };
    let quiet = cli.quiet || args.json;
    // A Ctrl-C must not leave the image mounted and the scratch disk behind.
    crate::interrupt::catch();
    let report = boot::test_boot(&options, &|step| {
        if !quiet {
            errln!("{step}");
        }
    })?;
    if args.json {
        print_json(&report)?;
    } else {
        print_human(&report)?;
    }
    match report.failures() {
        0 => Ok(()),
        n => Err(ChecksFailed(format!(
            "{n} of {} test-boot checks failed",
            report.checks.outcomes.len()
        ))
        .into()),
    }
}

fn print_human(report: &BootReport) -> Result<()> {
    let timing = match report.probe_seconds {
        Some(s) => format!("probe reported after {s} s"),
        None => format!("no probe report after {} s", report.vm_seconds),
    };
    outln!(
        "Test boot of {} (kernel {}, {} IOMMU, {}): {timing}",
        report.image,
        report.kernel,
        report.iommu,
        report.accel
    );
    outln!("Kernel command line: {}", report.cmdline.join(" "));
    checks::print(&report.checks, &mut std::io::stdout(), Colour::for_stdout())?;
    if let Some(tail) = &report.console_tail {
        if tail.is_empty() {
            outln!("--- the serial console stayed empty (the kernel printed nothing yet) ---");
        } else {
            outln!("--- last {} lines of the serial console ---", tail.len());
        }
        for line in tail {
            outln!("{line}");
        }
    }
    if report
        .checks
        .outcomes
        .iter()
        .all(|c| c.status == Status::Pass)
    {
        match report.stand_ins {
            StandIns::Id => outln!(
                "The stand-in device came up on vfio-pci: the image binds its planned devices the same way."
            ),
            StandIns::Address { .. } => outln!(
                "The stand-in named by address came up on vfio-pci and its identical twin on its own driver: the \
                 image binds its planned devices by address the same way."
            ),
        }
    }
    Ok(())
}
