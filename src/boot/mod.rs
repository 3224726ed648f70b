//! `test-boot`: boots a built image under QEMU and shows whether its kargs and initramfs really put the
//! planned device on vfio-pci, before anyone reboots a workstation into it.
//!
//! - [`disk`]: the image's root filesystem (podman), kernel, initramfs, kargs.d, and the ext4 disk made of it
//! - [`qemu`]: the VM's kernel command line and QEMU command line, run under a timeout
//! - [`probe`]: the script that runs as init in the VM, and the parser for its console report
//! - [`verdict`]: one check per question, from the probe's report
//! - [`capture`]: `--capture DIR`, the probe's sysfs/procfs tree written on the host

pub(crate) mod capture;
pub(crate) mod disk;
pub(crate) mod probe;
pub(crate) mod qemu;
pub(crate) mod verdict;

use std::time::Duration;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use crate::checks::{Report, Status};
use crate::image_ref::ImageRef;
use probe::ProbeReport;
use qemu::{Accel, Capture, IommuKind, StandIns, VmSpec};
use verdict::{BootFacts, CaptureState};

/// Lines of the console shown when a check fails.
pub(crate) const CONSOLE_TAIL_LINES: usize = 40;

#[derive(Debug, Clone)]
pub(crate) struct TestBootOptions {
    pub(crate) image: ImageRef,
    pub(crate) iommu: IommuKind,
    pub(crate) timeout: Duration,
    /// Write the VM's sysfs/procfs tree here (`--capture`); checked by [`capture::check_target`] first.
    pub(crate) capture: Option<Utf8PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct BootReport {
    pub(crate) image: String,
    pub(crate) kernel: String,
    pub(crate) iommu: IommuKind,
    pub(crate) accel: Accel,
    pub(crate) stand_in: String,
    /// How many stand-ins and where: one bound by ID, or twins when the image binds by address.
    pub(crate) stand_ins: StandIns,
    /// The kargs from the image's kargs.d, as bootc would apply them.
    pub(crate) image_kargs: Vec<String>,
    /// The VM's whole kernel command line.
    pub(crate) cmdline: Vec<String>,
    pub(crate) checks: Report,
    pub(crate) passed: bool,
    /// Seconds from QEMU's start until the probe's report was complete.
    pub(crate) probe_seconds: Option<f64>,
    /// Seconds QEMU ran in all.
    pub(crate) vm_seconds: f64,
    pub(crate) timed_out: bool,
    pub(crate) probe: Option<ProbeReport>,
    /// The end of the serial console, when a check failed.
    pub(crate) console_tail: Option<Vec<String>>,
    /// What `--capture` wrote.
    pub(crate) capture: Option<capture::Captured>,
}

impl BootReport {
    pub(crate) fn failures(&self) -> usize {
        self.checks.count(Status::Fail)
    }
}

/// Exports the image to a disk, boots it and judges what the probe saw. `progress` gets one line per step.
pub(crate) fn test_boot(options: &TestBootOptions, progress: &dyn Fn(&str)) -> Result<BootReport> {
    // Removed with everything in it (the disk is as large as the image) however test_boot returns.
    let scratch = tempfile::Builder::new()
        .prefix("passthru-test-boot.")
        .tempdir_in(std::env::var_os("TMPDIR").unwrap_or_else(|| "/var/tmp".into()))
        .context("creating a work directory")?;
    let work = Utf8PathBuf::try_from(scratch.path().to_path_buf())
        .context("the work directory's path is not UTF-8")?;

    progress(&format!("Mounting {}", options.image));
    let mounted = disk::MountedImage::mount(&options.image)?;
    let files = disk::boot_files(mounted.root())?;
    let kernel = work.join("vmlinuz");
    let initrd = work.join("initramfs.img");
    std::fs::copy(&files.kernel, &kernel).context("copying the image's kernel")?;
    std::fs::copy(&files.initrd, &initrd).context("copying the image's initramfs")?;
    progress(&format!(
        "Making an ext4 disk of its root filesystem (kernel {})",
        files.kver
    ));
    let disk_path = work.join("root.img");
    disk::make_disk(mounted.root(), &work, &disk_path)?;
    drop(mounted);
    crate::interrupt::check()?;

    let stand_ins = StandIns::for_image(&files.kargs);
    let mut spec = VmSpec {
        kernel,
        initrd,
        disk: disk_path,
        console: work.join("console.log"),
        cmdline: qemu::cmdline(
            &files.kargs,
            qemu::STAND_IN,
            stand_ins,
            match options.capture {
                Some(_) => Capture::Asked,
                None => Capture::NotAsked,
            },
        ),
        iommu: options.iommu,
        accel: Accel::detect(),
        stand_ins,
        capture: options.capture.as_ref().map(|_| work.join("capture.b64")),
    };
    progress(&format!(
        "Booting under QEMU ({}, {} IOMMU, timeout {} s)",
        match spec.accel {
            Accel::Kvm => "KVM",
            Accel::Tcg => "TCG emulation, no KVM",
        },
        spec.iommu,
        options.timeout.as_secs()
    ));
    let mut run = qemu::run(&spec, options.timeout)?;
    // A terminal's Ctrl-C reaches QEMU first: it exits on its own, and that is no boot result to judge.
    crate::interrupt::check()?;
    // /dev/kvm can open and still not run a guest (nested or restricted hosts: QEMU aborts setting MSRs).
    if spec.accel == Accel::Kvm && !run.exit_ok && run.console.trim().is_empty() {
        progress(&format!(
            "KVM did not start the VM ({}); retrying with TCG emulation",
            run.stderr.lines().next().unwrap_or("no message").trim()
        ));
        spec.accel = Accel::Tcg;
        let _ = std::fs::remove_file(&spec.console);
        if let Some(file) = &spec.capture {
            let _ = std::fs::remove_file(file);
        }
        run = qemu::run(&spec, options.timeout)?;
        crate::interrupt::check()?;
    }
    let parsed = probe::parse(&run.console);
    if !run.exit_ok && matches!(parsed, probe::Parsed::NotStarted) && !run.timed_out {
        anyhow::bail!(
            "{} failed before the VM booted:\n{}",
            qemu::QEMU,
            run.stderr.trim()
        );
    }
    let capture = match (&options.capture, &spec.capture) {
        (Some(dir), Some(_)) if matches!(parsed, probe::Parsed::NotStarted) => {
            CaptureState::NoProbe(dir.clone())
        }
        (Some(dir), Some(file)) => {
            progress(&format!("Writing the captured sysfs/procfs tree to {dir}"));
            write_capture(file, dir)
        }
        _ => CaptureState::NotAsked,
    };
    let facts = BootFacts {
        parsed,
        image_kargs: files.kargs.clone(),
        stand_in: qemu::STAND_IN,
        stand_ins,
        timed_out_after: run.timed_out.then_some(options.timeout.as_secs()),
        capture,
    };
    let checks = verdict::judge(&facts)?;
    let passed = checks.outcomes.iter().all(|c| c.status == Status::Pass);
    let captured = match facts.capture {
        CaptureState::Written(captured) => Some(captured),
        _ => None,
    };
    let parsed = facts.parsed;
    let probe = match parsed {
        probe::Parsed::Complete(report) | probe::Parsed::Truncated(report) => Some(report),
        probe::Parsed::NotStarted => None,
    };
    Ok(BootReport {
        image: options.image.to_string(),
        kernel: files.kver,
        iommu: options.iommu,
        accel: spec.accel,
        stand_in: qemu::STAND_IN.to_string(),
        stand_ins,
        image_kargs: files.kargs.iter().map(|k| k.as_str().to_owned()).collect(),
        cmdline: spec.cmdline,
        checks,
        passed,
        probe_seconds: run.probe_done_after.map(|d| round(d.as_secs_f64())),
        vm_seconds: round(run.elapsed.as_secs_f64()),
        timed_out: run.timed_out,
        probe,
        console_tail: (!passed).then(|| tail(&run.console, CONSOLE_TAIL_LINES)),
        capture: captured,
    })
}

/// Writes the capture the probe sent, when it arrived whole and reads as a host tree. Independent of the other
/// checks, so a boot that fails them can still be captured (a host where binding went wrong is a fixture too).
fn write_capture(serial_file: &Utf8Path, dir: &Utf8Path) -> CaptureState {
    let serial = std::fs::read(serial_file)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    match capture::write(&serial, dir) {
        Ok(captured) => CaptureState::Written(captured),
        Err(e) => CaptureState::Failed {
            dir: dir.to_owned(),
            error: format!("{e:#}"),
        },
    }
}

fn round(seconds: f64) -> f64 {
    (seconds * 10.0).round() / 10.0
}

/// The last `n` lines of the console without the probe's own lines (the report shows those already), and
/// without carriage returns: what the kernel and the initramfs said on the way.
pub(crate) fn tail(console: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = console
        .lines()
        .filter(|l| !l.contains(probe::PREFIX))
        .collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.trim_end_matches('\r').to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(super::tail("a\r\nb\r\nc\r\n", 2), ["b", "c"]);
        assert_eq!(
            super::tail("a\nptprobe:begin 1\nptprobe:end 1\nb\n", 2),
            ["a", "b"]
        );
        assert_eq!(super::tail("", 5), Vec::<String>::new());
    }
}
