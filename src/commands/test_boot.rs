use std::time::Duration;

use anyhow::Result;

use super::{load_config, print_json};
use crate::boot::qemu::{IommuKind, StandIns};
use crate::boot::{self, BootReport, TestBootOptions};
use crate::checks::{self, Colour, Status};
use crate::cli::{Cli, TestBootArgs};
use crate::config::Overrides;
use crate::error::{ChecksFailed, InputError};
use crate::plan::{Plan, Target};
use crate::verbosity::Verbosity;

pub(crate) fn run(cli: &Cli, args: &TestBootArgs) -> Result<()> {
    if args.list_checks {
        return Ok(checks::list(boot::verdict::CHECKS, &mut std::io::stdout())?);
    }
    if let Some(dir) = &args.capture {
        boot::capture::check_target(dir)?;
    }
    // The config is read only for what the command line leaves open: the image tag and the IOMMU kind.
    let (image, iommu) = match (&args.image, args.iommu) {
        (Some(image), Some(iommu)) => {
            refuse_unread_config(args)?;
            (image.clone(), iommu)
        }
        (image, iommu) => {
            let (config, _) = load_config(&args.config, &Overrides::default())?;
            let plan = Plan::resolve(&config, &Target::Image)?;
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
    let verbosity = match args.json {
        // The steps would interleave with nothing, but a JSON consumer reads stdout alone: keep stderr for errors.
        true => Verbosity::Quiet,
        false => cli.verbosity(),
    };
    // A Ctrl-C must not leave the image mounted and the scratch disk behind.
    crate::interrupt::catch();
    let report = boot::test_boot(&options, &|step| {
        if verbosity >= Verbosity::Normal {
            crate::error::stderr_line(step);
        }
    })?;
    if args.json {
        print_json(&report)?;
    } else {
        print_human(&report, verbosity)?;
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

/// A config named while IMAGE and --iommu leave nothing to read from it would be ignored: refused instead.
fn refuse_unread_config(args: &TestBootArgs) -> Result<()> {
    match args.config.file() {
        Some(file) => Err(InputError::new(
            file.field,
            "test-boot reads the config only for the image tag and the CPU vendor, and IMAGE and \
             --iommu give both",
        )
        .into()),
        None => Ok(()),
    }
}

/// The report for people; with `-q` only the failed checks, their fixes and the console's tail (a report has
/// one only when something failed).
fn print_human(report: &BootReport, verbosity: Verbosity) -> Result<()> {
    if verbosity == Verbosity::Quiet {
        checks::print(
            &report.checks.failures(),
            &mut std::io::stdout(),
            Colour::for_stdout(),
        )?;
        return print_console_tail(report);
    }
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
    print_console_tail(report)?;
    if report
        .checks
        .outcomes
        .iter()
        .all(|c| c.status == Status::Pass)
    {
        match report.stand_ins {
            StandIns::Id => outln!(
                "The stand-in device came up on vfio-pci: the image binds its planned devices the \
                 same way."
            ),
            StandIns::Address { .. } => outln!(
                "The stand-in named by address came up on vfio-pci and its identical twin on its \
                 own driver: the image binds its planned devices by address the same way."
            ),
        }
    }
    Ok(())
}

fn print_console_tail(report: &BootReport) -> Result<()> {
    let Some(tail) = &report.console_tail else {
        return Ok(());
    };
    if tail.is_empty() {
        outln!("--- the serial console stayed empty (the kernel printed nothing yet) ---");
    } else {
        outln!("--- last {} lines of the serial console ---", tail.len());
    }
    for line in tail {
        outln!("{line}");
    }
    Ok(())
}
