//! Boot proof end to end: images built by `passthru-image build` from the offline test base boot under QEMU
//! (TCG when KVM is unusable) with their own kernel, initramfs and kargs.d, and the stand-in e1000e comes up
//! on vfio-pci, with the Intel and with the AMD virtual IOMMU. A broken image fails a check, a boot that
//! cannot finish is cut off by the timeout, and bad input exits 2 before anything boots. `--capture` writes
//! the booted VM's sysfs/procfs tree, which `groups` reads like a host's.
//!
//! Boots take 40-60 s each under TCG on two cores; they run one at a time (BOOTS) so they do not slow each
//! other down into their timeouts.

mod common;

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use common::{RemoveImages, bin, build_image, write_config};
use predicates::str::contains;
use serde_json::Value;

static BOOTS: Mutex<()> = Mutex::new(());

const NVIDIA: &str =
    "[gpu]\nvendors = [\"nvidia\"]\n\n[vfio]\nids = [\"10de:2684\", \"10de:22ba\"]\n";

/// Builds an image for `cpu` (intel or amd) with an NVIDIA GPU to pass as `localhost/passthru-e2e-boot:NAME`,
/// and returns its config and tag.
fn build_for(dir: &Path, cpu: &str, name: &str) -> (std::path::PathBuf, String) {
    let tag = format!("localhost/passthru-e2e-boot:{name}");
    let config = write_config(dir, &tag, &format!("[cpu]\nvendor = \"{cpu}\"\n\n{NVIDIA}"));
    build_image(&config, &tag);
    (config, tag)
}

/// `test-boot --json` with the config's defaults (its tag, the IOMMU of its CPU vendor); the report and
/// the exit code.
fn test_boot(config: &Path, extra: &[&str]) -> (Value, i32, f64) {
    let _one_at_a_time = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let start = Instant::now();
    let out = bin()
        .arg("--config")
        .arg(config)
        .args(["test-boot", "--json", "--timeout", "240"])
        .args(extra)
        .output()
        .unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (report, out.status.code().unwrap(), seconds)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

fn assert_boot_passed(report: &Value, code: i32, iommu: &str) {
    assert_eq!(code, 0, "test-boot failed:\n{report:#}");
    assert_eq!(report["iommu"], iommu);
    assert_eq!(report["passed"], true);
    for name in [
        "boot",
        "kargs",
        "iommu",
        "stand-in-on-vfio-pci",
        "vfio-modules",
    ] {
        assert_eq!(check(report, name)["status"], "pass", "{name}: {report:#}");
    }
    // Independently of the verdicts: the probe's own view of the stand-in and of the command line.
    let nic = report["probe"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "8086:10d3")
        .expect("the e1000e is in the VM");
    assert_eq!(nic["driver"], "vfio-pci");
    assert!(nic["iommu_group"].is_string());
    let cmdline: Vec<&str> = report["probe"]["cmdline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert!(cmdline.contains(&"vfio_pci.ids=10de:2684,10de:22ba,8086:10d3"));
    assert!(cmdline.contains(&"rd.driver.pre=vfio-pci"));
    // iommu=pt and intel_iommu=on reached the IOMMU drivers: the kernel says so itself.
    assert_eq!(
        report["probe"]["iommu_domain"], "Passthrough (set via kernel command line)",
        "{report:#}"
    );
    assert_eq!(
        report["probe"]["intel_iommu_enabled"],
        iommu == "intel",
        "{report:#}"
    );
    assert!(report["console_tail"].is_null());
}

/// Set to regenerate tests/fixtures/qemu-q35-{intel,amd}-iommu from the captures of the test below.
const RECAPTURE: &str = "PASSTHRU_RECAPTURE_FIXTURES";

/// Both boots also `--capture` the VM's sysfs/procfs tree (no extra boot): it must read with `groups --json`
/// and show what the probe saw, the stand-in on vfio-pci in a group of its own. With RECAPTURE set, the trees
/// replace the committed fixtures.
#[test]
fn built_images_boot_with_the_stand_in_on_vfio_pci_under_intel_and_amd_iommus() {
    let dir = tempfile::tempdir().unwrap();
    let (intel_dir, amd_dir) = (dir.path().join("intel"), dir.path().join("amd"));
    std::fs::create_dir_all(&intel_dir).unwrap();
    std::fs::create_dir_all(&amd_dir).unwrap();
    let (intel, intel_tag) = build_for(&intel_dir, "intel", "intel");
    let (amd, amd_tag) = build_for(&amd_dir, "amd", "amd");
    let _cleanup = RemoveImages::new(&[intel_tag, amd_tag]);

    let tree = intel_dir.join("captured");
    let (report, code, seconds) = test_boot(&intel, &["--capture", tree.to_str().unwrap()]);
    eprintln!(
        "intel IOMMU: probe after {} s, test-boot {seconds:.1} s",
        report["probe_seconds"]
    );
    assert_boot_passed(&report, code, "intel");
    let cmdline = report["cmdline"].as_array().unwrap();
    assert!(cmdline.contains(&"intel_iommu=on".into()));
    assert_capture_matches_the_probe(&report, &tree);
    recapture(&tree, "qemu-q35-intel-iommu");

    let tree = amd_dir.join("captured");
    let (report, code, seconds) = test_boot(&amd, &["--capture", tree.to_str().unwrap()]);
    eprintln!(
        "amd IOMMU: probe after {} s, test-boot {seconds:.1} s",
        report["probe_seconds"]
    );
    assert_boot_passed(&report, code, "amd");
    let cmdline = report["cmdline"].as_array().unwrap();
    assert!(
        !cmdline.contains(&"amd_iommu=on".into()),
        "AMD-Vi has no `on` option; it is on by default"
    );
    assert!(cmdline.contains(&"kvm_amd.npt=1".into()));
    assert_capture_matches_the_probe(&report, &tree);
    recapture(&tree, "qemu-q35-amd-iommu");
}

/// `groups --json` on the captured tree sees the stand-in where the probe saw it: on vfio-pci, alone in its
/// group; and the capture kept nothing but the paths the readers use.
fn assert_capture_matches_the_probe(report: &Value, tree: &Path) {
    assert_eq!(check(report, "capture")["status"], "pass", "{report:#}");
    assert_eq!(report["capture"]["dir"], tree.to_str().unwrap());
    let probed = report["probe"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "8086:10d3")
        .unwrap();
    let out = bin()
        .arg("--root")
        .arg(tree)
        .args(["groups", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let groups: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(groups["iommu_enabled"], true);
    let group = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| {
            g["devices"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["device_id"] == "10d3")
        })
        .expect("the stand-in is in a group of the captured tree");
    assert_eq!(
        group["id"].to_string(),
        probed["iommu_group"].as_str().unwrap()
    );
    let devices = group["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "alone in its group: {group:#}");
    assert_eq!(devices[0]["address"], probed["address"]);
    assert_eq!(devices[0]["driver"], "vfio-pci");
    let top: Vec<String> = std::fs::read_dir(tree.join("sys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        top.iter().all(|d| [
            "bus", "class", "dev", "devices", "kernel", "module", "firmware"
        ]
        .contains(&d.as_str())),
        "{top:?}"
    );
}

/// With RECAPTURE set, `tree` replaces tests/fixtures/NAME (copied with `cp -a`: the symlinks stay links).
fn recapture(tree: &Path, name: &str) {
    if std::env::var_os(RECAPTURE).is_none() {
        return;
    }
    let fixture = common::repo_dir().join("tests/fixtures").join(name);
    let _ = std::fs::remove_dir_all(&fixture);
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(tree)
        .arg(&fixture)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "copying {} to {}",
        tree.display(),
        fixture.display()
    );
}

/// Builds `localhost/passthru-e2e-boot:NAME` from `containerfile` (after a `FROM` of a good Intel image) in
/// `dir`, with `files` in its context, and returns the tags of both images.
fn break_image(dir: &Path, name: &str, containerfile: &str, files: &[(&str, &str)]) -> [String; 2] {
    let (_config, good) = build_for(dir, "intel", &format!("{name}-before"));
    let broken = format!("localhost/passthru-e2e-boot:{name}");
    let ctx = dir.join("broken");
    std::fs::create_dir_all(&ctx).unwrap();
    for (file, text) in files {
        std::fs::write(ctx.join(file), text).unwrap();
    }
    std::fs::write(
        ctx.join("Containerfile"),
        format!("FROM {good}\n{containerfile}"),
    )
    .unwrap();
    let status = std::process::Command::new("podman")
        .args([
            "build",
            "--isolation",
            "chroot",
            "--pull=never",
            "-t",
            &broken,
        ])
        .arg(&ctx)
        .status()
        .unwrap();
    assert!(status.success(), "building {broken}");
    [good, broken]
}

/// The image after a Containerfile that regenerates the initramfs without our dracut drop-in: the kargs
/// are right, but vfio-pci is not in the initramfs, so nothing claims the device before the root
/// filesystem's init runs.
#[test]
fn an_image_without_vfio_in_its_initramfs_fails_binding_and_modules() {
    let dir = tempfile::tempdir().unwrap();
    let images = break_image(
        dir.path(),
        "no-vfio-initramfs",
        "RUN rm /usr/lib/dracut/dracut.conf.d/50-passthru-vfio.conf && kver=$(ls /usr/lib/modules) && \
         dracut --no-hostonly --kver \"$kver\" --reproducible -f \"/usr/lib/modules/$kver/initramfs.img\"\n",
        &[],
    );
    let _cleanup = RemoveImages::new(&images);
    let config = write_config(dir.path(), &images[1], "[cpu]\nvendor = \"intel\"\n");
    // Captured too: a boot whose checks fail still leaves a faithful tree of what went wrong.
    let tree = dir.path().join("captured");
    let (report, code, _) = test_boot(&config, &["--capture", tree.to_str().unwrap()]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(check(&report, "capture")["status"], "pass", "{report:#}");
    let out = bin()
        .arg("--root")
        .arg(&tree)
        .args(["groups", "--json"])
        .output()
        .unwrap();
    let groups: Value = serde_json::from_slice(&out.stdout).unwrap();
    let nic = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["devices"].as_array().unwrap())
        .find(|d| d["device_id"] == "10d3")
        .expect("the stand-in in the captured tree");
    assert_ne!(nic["driver"], "vfio-pci", "{groups:#}");
    assert_eq!(check(&report, "boot")["status"], "pass");
    assert_eq!(
        check(&report, "kargs")["status"],
        "pass",
        "the kargs are fine"
    );
    assert_eq!(check(&report, "stand-in-on-vfio-pci")["status"], "fail");
    let modules = check(&report, "vfio-modules");
    assert_eq!(modules["status"], "fail");
    assert!(modules["detail"].as_str().unwrap().contains("vfio_pci"));
}

/// Reaching the command line is not enough: the kernel must take each argument. `amd_iommu=on` (which the AMD
/// driver refuses with `AMD-Vi: Unknown option - 'on'`), a parameter only a patched kernel knows (handed to
/// init as unknown) and a module parameter vfio_pci does not have each fail the kargs check.
#[test]
fn arguments_the_kernel_refuses_fail_the_kargs_check() {
    let dir = tempfile::tempdir().unwrap();
    let tag = "localhost/passthru-e2e-boot:refused-kargs".to_owned();
    let _cleanup = RemoveImages::new(&[&tag]);
    let config = write_config(
        dir.path(),
        &tag,
        &format!(
            "[cpu]\nvendor = \"intel\"\n\n[kargs]\nextra = [\"amd_iommu=on\", \"pcie_acs_override=downstream\", \
             \"vfio_pci.no_such_param=1\"]\n\n{NVIDIA}"
        ),
    );
    build_image(&config, &tag);
    let (report, code, _) = test_boot(&config, &[]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(check(&report, "boot")["status"], "pass");
    assert_eq!(check(&report, "stand-in-on-vfio-pci")["status"], "pass");
    let kargs = check(&report, "kargs");
    assert_eq!(kargs["status"], "fail", "{report:#}");
    let detail = kargs["detail"].as_str().unwrap();
    for refused in [
        "`AMD-Vi: Unknown option - 'on'`",
        "does not know pcie_acs_override=downstream",
        "does not know vfio_pci.no_such_param=1",
    ] {
        assert!(detail.contains(refused), "{refused} not in: {detail}");
    }
    let refused = &report["probe"]["refused_kargs"];
    assert_eq!(
        refused["unknown"],
        serde_json::json!(["pcie_acs_override"]),
        "{refused:#}"
    );
}

/// The image bootc would get after retracting our kargs (`kargs = []`): the initramfs still has the VFIO
/// drivers, but nothing names a device, and test-boot says so instead of passing.
#[test]
fn an_image_whose_kargs_d_was_emptied_fails_kargs_and_binding() {
    let dir = tempfile::tempdir().unwrap();
    let images = break_image(
        dir.path(),
        "no-kargs",
        "COPY 50-passthru.toml /usr/lib/bootc/kargs.d/50-passthru.toml\n",
        &[("50-passthru.toml", "kargs = []\n")],
    );
    let _cleanup = RemoveImages::new(&images);
    let broken = &images[1];
    let config = write_config(dir.path(), broken, "[cpu]\nvendor = \"intel\"\n");
    let (report, code, _) = test_boot(&config, &[]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["passed"], false);
    assert_eq!(
        check(&report, "boot")["status"],
        "pass",
        "it boots, it just does not bind"
    );
    assert_eq!(check(&report, "kargs")["status"], "fail");
    assert!(
        check(&report, "kargs")["detail"]
            .as_str()
            .unwrap()
            .contains("no vfio_pci.ids")
    );
    let binding = check(&report, "stand-in-on-vfio-pci");
    assert_eq!(binding["status"], "fail");
    assert!(
        binding["detail"]
            .as_str()
            .unwrap()
            .contains("sets no vfio_pci.ids")
    );
    assert!(
        !report["cmdline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k.as_str().unwrap().contains("8086:10d3")),
        "the stand-in is only added to the image's own vfio_pci.ids"
    );
    assert!(!report["console_tail"].as_array().unwrap().is_empty());

    // The same image, human output and a timeout far too short to boot: cut off, exit 1, console shown.
    let _one_at_a_time = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let start = Instant::now();
    let tree = dir.path().join("never-captured");
    bin()
        .arg("--config")
        .arg(&config)
        .args(["test-boot", "--timeout", "3", "--capture"])
        .arg(&tree)
        .assert()
        .code(1)
        .stdout(contains("FAIL  boot: timed out after 3 s"))
        .stdout(contains("SKIP  capture: nothing written"))
        .stdout(contains("serial console"));
    assert!(!tree.exists(), "no capture, no directory");
    assert!(
        start.elapsed().as_secs() < 120,
        "the timeout bounds the boot"
    );
}

/// Kills the whole process group of a test-boot the test spawned, should the test fail before it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group of a child we spawned as its leader.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// Starts test-boot in a process group of its own, waits until QEMU runs (its console log exists in the work
/// directory), sends `signal` to the group (a terminal's Ctrl-C) or to test-boot alone (`kill PID`), and
/// checks what is left: exit 130, no QEMU, no work directory, the image not mounted.
fn interrupt_boot(
    config: &Path,
    tag: &str,
    scratch: &Path,
    signal: libc::c_int,
    whole_group: bool,
) {
    use std::os::unix::process::CommandExt;
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("passthru-image"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("TMPDIR", scratch)
        .arg("--config")
        .arg(config)
        .args(["test-boot", "--timeout", "240"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let pid = child.0.id() as i32;
    let started = Instant::now();
    let work = loop {
        let found = std::fs::read_dir(scratch)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.join("console.log").exists());
        if let Some(work) = found {
            break work;
        }
        assert!(
            started.elapsed().as_secs() < 180,
            "QEMU did not start within 180 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    std::thread::sleep(std::time::Duration::from_secs(2));
    let target = if whole_group { -pid } else { pid };
    // SAFETY: kill(2) on a child (or its group) that we spawned and have not waited for.
    assert_eq!(unsafe { libc::kill(target, signal) }, 0);
    let mut pipe = child.0.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
        text
    });
    let stopping = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopping.elapsed().as_secs() < 60,
            "test-boot did not stop within 60 s of the signal"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let stderr = reader.join().unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        std::fs::read_dir(scratch).unwrap().next().is_none(),
        "the work directory with the disk is removed"
    );
    let qemu = std::process::Command::new("pgrep")
        .args(["-f", work.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        qemu.stdout.is_empty(),
        "QEMU still runs: {}",
        String::from_utf8_lossy(&qemu.stdout)
    );
    let mounts = std::process::Command::new("podman")
        .args(["image", "mount"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&mounts.stdout).contains(tag),
        "the image is still mounted"
    );
}

/// Ctrl-C in a terminal (SIGINT to the whole process group, QEMU included) and `kill` of test-boot alone
/// (SIGTERM: test-boot stops QEMU itself) both end with exit 130 and nothing left behind.
#[test]
fn an_interrupted_boot_stops_qemu_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (config, tag) = build_for(dir.path(), "intel", "interrupted");
    let _cleanup = RemoveImages::new(std::slice::from_ref(&tag));
    let scratch = dir.path().join("tmp");
    std::fs::create_dir(&scratch).unwrap();
    let _one_at_a_time = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    interrupt_boot(&config, &tag, &scratch, libc::SIGINT, true);
    interrupt_boot(&config, &tag, &scratch, libc::SIGTERM, false);
}

#[test]
fn bad_input_exits_2_before_anything_boots() {
    bin()
        .args([
            "test-boot",
            "localhost/passthru-e2e-boot:does-not-exist",
            "--iommu",
            "intel",
        ])
        .assert()
        .code(2)
        .stderr(contains("not in podman's local storage"));
    bin()
        .args(["test-boot", "localhost/x:1", "--timeout", "0"])
        .assert()
        .code(2)
        .stderr(contains("--timeout"));
    bin()
        .args(["test-boot", "localhost/x:1", "--iommu", "arm"])
        .assert()
        .code(2);
    bin().args(["test-boot", "Not An Image"]).assert().code(2);
    // Checked before the image is looked at: a non-empty capture directory is refused whatever the image.
    let taken = tempfile::tempdir().unwrap();
    std::fs::write(taken.path().join("keep"), "mine").unwrap();
    bin()
        .args([
            "test-boot",
            "localhost/x:1",
            "--iommu",
            "intel",
            "--capture",
        ])
        .arg(taken.path())
        .assert()
        .code(2)
        .stderr(contains("--capture"));
    assert_eq!(
        std::fs::read_to_string(taken.path().join("keep")).unwrap(),
        "mine"
    );
}

/// Identical twins: an image that binds by address (and by ID: both mixed) boots with two identical e1000e
/// stand-ins; the one test-boot adds to the image's address argument comes up on vfio-pci, its twin on e1000e.
/// The base's own initramfs was built with e1000e (tests/base/variants/nic-in-initramfs), which the build keeps,
/// so the twins' driver loads in the image's initramfs and races vfio-pci there: the race binding by address
/// must win. The built image also carries its
/// plan and config under /usr/share/passthru-image for doctor.
#[test]
fn an_image_that_binds_by_address_splits_identical_twins() {
    let dir = tempfile::tempdir().unwrap();
    let base = common::test_base_variant("nic-in-initramfs");
    let tag = "localhost/passthru-e2e-boot:twins".to_owned();
    let _cleanup = RemoveImages::new(std::slice::from_ref(&tag));
    let config = dir.path().join("passthru.toml");
    std::fs::write(
        &config,
        format!(
            "[image]\nbase = \"{base}\"\ntag = \"{tag}\"\n\n[cpu]\nvendor = \"intel\"\n\n[gpu]\nvendors = [\"nvidia\"]\n\n\
             [vfio]\nids = [\"10de:2684\"]\naddresses = [\"02:00.0\"]\n"
        ),
    )
    .unwrap();
    let start = Instant::now();
    build_image(&config, &tag);
    eprintln!(
        "twins image built in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    {
        let image = common::MountedImage::new(&tag);
        let record: Value = serde_json::from_str(
            &std::fs::read_to_string(image.path("/usr/share/passthru-image/plan.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            record["plan"]["vfio"]["addresses"],
            serde_json::json!(["0000:02:00.0"])
        );
        let recorded_config =
            std::fs::read_to_string(image.path("/usr/share/passthru-image/passthru.toml")).unwrap();
        assert!(
            recorded_config.contains("addresses = [\"0000:02:00.0\"]"),
            "{recorded_config}"
        );
        assert!(
            image
                .path("/usr/lib/dracut/modules.d/90passthru-vfio/passthru-vfio-bind.sh")
                .is_file()
        );
    }

    let (report, code, seconds) = test_boot(&config, &[]);
    eprintln!(
        "twins: probe after {} s, test-boot {seconds:.1} s",
        report["probe_seconds"]
    );
    assert_eq!(code, 0, "test-boot failed:\n{report:#}");
    assert_eq!(
        report["stand_ins"],
        serde_json::json!({"bound_by": "address", "bound": "0000:00:10.0", "twin": "0000:00:11.0"})
    );
    for name in [
        "boot",
        "kargs",
        "iommu",
        "stand-in-on-vfio-pci",
        "vfio-modules",
        "twin-on-own-driver",
    ] {
        assert_eq!(check(&report, name)["status"], "pass", "{name}: {report:#}");
    }
    // The probe's own view: the named twin on vfio-pci, the other on e1000e.
    let driver_at = |address: &str| {
        report["probe"]["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["address"] == address)
            .unwrap_or_else(|| panic!("no device at {address}: {report:#}"))["driver"]
            .clone()
    };
    assert_eq!(driver_at("0000:00:10.0"), "vfio-pci");
    assert_eq!(driver_at("0000:00:11.0"), "e1000e");
    let cmdline: Vec<&str> = report["probe"]["cmdline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert!(
        cmdline.contains(&"rd.passthru.vfio_addresses=0000:02:00.0,0000:00:10.0"),
        "{cmdline:?}"
    );
    assert!(
        cmdline.contains(&"vfio_pci.ids=10de:2684"),
        "the stand-in's ID stays out of vfio_pci.ids: {cmdline:?}"
    );
    // The kernel neither called our argument unknown nor handed it to init.
    assert_eq!(
        report["probe"]["refused_kargs"]["unknown"],
        serde_json::json!([])
    );
}
