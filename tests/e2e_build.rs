//! Image mode end to end: `passthru-image build` makes a real bootc image from the offline test base, and each
//! test opens the result with podman and host tools (lsinitrd, the bootc kargs.d rules), not with the tool.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{MountedImage, bin, build_image, image_label, test_base, write_config};
use passthru_image::kargs_d::KargsD;
use predicates::str::contains;

const AMD_NVIDIA: &str = "[cpu]\nvendor = \"amd\"\n\n[gpu]\nvendors = [\"nvidia\"]\n\n";

/// Removes the images a test made, also when an assertion failed half-way.
struct RemoveImages(Vec<&'static str>);

impl Drop for RemoveImages {
    fn drop(&mut self) {
        let _ = std::process::Command::new("podman")
            .args(["rmi", "--force", "--ignore"])
            .args(&self.0)
            .output();
    }
}

fn planned_kargs(config: &Path) -> Vec<String> {
    let out = bin()
        .arg("--config")
        .arg(config)
        .args(["plan", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["kargs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect()
}

/// The kernel arguments bootc would apply from the image: every kargs.d file, checked against bootc's rules.
fn image_kargs(image: &MountedImage) -> Vec<String> {
    let dir = image.path("/usr/lib/bootc/kargs.d");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no kargs.d file in the image");
    files
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let parsed = KargsD::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            parsed
                .kargs_for("x86_64")
                .into_iter()
                .map(|k| k.to_string())
        })
        .collect()
}

/// The one kernel version of the image: exactly one /usr/lib/modules/* directory with a vmlinuz.
fn only_kernel(image: &MountedImage) -> String {
    let with_vmlinuz: Vec<String> = std::fs::read_dir(image.path("/usr/lib/modules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("vmlinuz").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        with_vmlinuz.len(),
        1,
        "kernels with vmlinuz: {with_vmlinuz:?}"
    );
    with_vmlinuz.into_iter().next().unwrap()
}

/// Module names (with `-` read as `_`) in an initramfs, as listed by dracut's own lsinitrd.
fn initramfs_modules(initramfs: &Path) -> BTreeSet<String> {
    let out = std::process::Command::new("lsinitrd")
        .arg(initramfs)
        .output()
        .expect("run lsinitrd");
    assert!(out.status.success(), "lsinitrd {}", initramfs.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.rsplit('/').next())
        .filter_map(|name| name.split(".ko").next().filter(|_| name.contains(".ko")))
        .map(|m| m.replace('-', "_"))
        .collect()
}

/// Instructions the engine ran for real in a build (not taken from its layer cache), e.g. `COPY layers/host/ /`.
/// podman prints `STEP n/m: INSTRUCTION` for each step and `--> Using cache ID` right after a cached one.
fn steps_not_from_cache(output: &str) -> Vec<String> {
    let lines: Vec<&str> = output.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, line)| {
            let step = line.split_once("STEP ")?.1.split_once(": ")?.1;
            let cached = lines
                .get(i + 1)
                .is_some_and(|next| next.contains("Using cache"));
            (!cached && !step.starts_with("FROM ")).then(|| step.to_owned())
        })
        .collect()
}

#[test]
fn built_image_has_the_planned_kargs_vfio_initramfs_one_kernel_and_the_bootc_label() {
    let dir = tempfile::tempdir().unwrap();
    let tag = "localhost/passthru-e2e-build:ids";
    let _cleanup = RemoveImages(vec![tag]);
    let config = write_config(
        dir.path(),
        tag,
        &format!("{AMD_NVIDIA}[vfio]\nids = [\"10de:2684\", \"10de:22ba\"]\n"),
    );
    build_image(&config, tag);

    let image = MountedImage::new(tag);
    let kargs = image_kargs(&image);
    assert_eq!(kargs, planned_kargs(&config));
    assert!(
        kargs.contains(&"vfio_pci.ids=10de:2684,10de:22ba".to_owned()),
        "{kargs:?}"
    );

    let kver = only_kernel(&image);
    let modules = initramfs_modules(&image.path(&format!("/usr/lib/modules/{kver}/initramfs.img")));
    for wanted in ["vfio", "vfio_iommu_type1", "vfio_pci"] {
        assert!(
            modules.contains(wanted),
            "{wanted} not in the initramfs of {kver}: {modules:?}"
        );
    }

    let boot = image.path("/boot");
    let in_boot: Vec<_> = std::fs::read_dir(&boot)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(in_boot.is_empty(), "/boot is not empty: {in_boot:?}");

    assert_eq!(image_label(tag, "containers.bootc").as_deref(), Some("1"));
}

#[test]
fn changing_only_device_ids_rebuilds_only_the_host_layer() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (
        "localhost/passthru-e2e-build:cache-a",
        "localhost/passthru-e2e-build:cache-b",
    );
    let _cleanup = RemoveImages(vec![first, second]);
    let config = write_config(
        dir.path(),
        first,
        &format!("{AMD_NVIDIA}[vfio]\nids = [\"10de:1401\"]\n"),
    );
    build_image(&config, first);

    let config = write_config(
        dir.path(),
        second,
        &format!("{AMD_NVIDIA}[vfio]\nids = [\"10de:1401\", \"10de:0fba\"]\n"),
    );
    let output = build_image(&config, second);
    let rerun = steps_not_from_cache(&output);
    // The host layer is the last COPY; the step after it (the bootc lint) has a new parent, so it re-runs too.
    assert_eq!(
        rerun.first().map(String::as_str),
        Some("COPY layers/host/ /"),
        "re-run: {rerun:?}\n{output}"
    );
    assert!(
        rerun.len() <= 2,
        "more than the host layer re-ran: {rerun:?}\n{output}"
    );
    assert!(
        !output.contains("dracut:"),
        "the initramfs was regenerated:\n{output}"
    );

    let image = MountedImage::new(second);
    assert!(image_kargs(&image).contains(&"vfio_pci.ids=10de:1401,10de:0fba".to_owned()));
}

#[test]
fn a_failing_step_exits_nonzero_naming_the_step_and_the_engine_message() {
    // A base without a kernel: the initramfs step must stop the build instead of producing an unbootable image.
    let dir = tempfile::tempdir().unwrap();
    let (base, tag) = (
        "localhost/passthru-e2e-build:no-kernel-base",
        "localhost/passthru-e2e-build:no-kernel",
    );
    let _cleanup = RemoveImages(vec![base, tag]);
    std::fs::write(
        dir.path().join("Containerfile"),
        format!("FROM {}\nRUN rm -rf /usr/lib/modules/*\n", test_base()),
    )
    .unwrap();
    let made = std::process::Command::new("podman")
        .args(["build", "--isolation", "chroot", "--pull=never", "-t", base])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    let config = write_config(dir.path(), tag, AMD_NVIDIA);
    bin()
        .arg("--config")
        .arg(&config)
        .args([
            "build",
            "--isolation",
            "chroot",
            "--pull",
            "never",
            "--base",
            base,
        ])
        .assert()
        .code(1)
        .stderr(contains("failed"))
        .stderr(contains("at STEP"))
        .stderr(contains("regenerate-initramfs"))
        .stderr(contains("/usr/lib/modules"));
    let exists = std::process::Command::new("podman")
        .args(["image", "exists", tag])
        .status()
        .unwrap();
    assert!(!exists.success(), "a failed build left {tag} behind");
}

#[test]
fn bad_build_flags_exit_2_naming_the_flag_and_build_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tag = "localhost/passthru-e2e-build:never-built";
    let config = dir.path().join("passthru.toml");
    std::fs::write(&config, format!("[image]\ntag = \"{tag}\"\n\n{AMD_NVIDIA}")).unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--engine", "lxc"], "--engine"),
        (&["--pull", "sometimes"], "--pull"),
        (&["--isolation", "vm"], "--isolation"),
        (&["--label", "no-equals-sign"], "--label"),
        (&["--label", "bad key=value"], "--label"),
        (&["--label", "key=two\nlines"], "--label"),
        (&["--tag", "Upper/Case:x"], "--tag"),
        (&["--tag", "localhost/x:tag; rm -rf /"], "--tag"),
        (&["--vfio-ids", "10de:26840"], "--vfio-ids"),
        (
            &["--engine", "docker", "--isolation", "chroot"],
            "--isolation",
        ),
    ];
    for (args, named) in cases {
        let out = bin()
            .arg("--config")
            .arg(&config)
            .arg("build")
            .args(*args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(named),
            "{args:?} does not name {named}: {stderr}"
        );
    }
    let exists = std::process::Command::new("podman")
        .args(["image", "exists", tag])
        .status()
        .unwrap();
    assert!(!exists.success());
}
