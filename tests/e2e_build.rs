//! Image mode end to end: `passthru-image build` makes a real bootc image from the offline test base, and each
//! test opens the result with podman and host tools (lsinitrd, the bootc kargs.d rules), not with the tool.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{
    MountedImage, RemoveImages, bin, bootc_kargs, build_command, build_image, build_refused,
    build_steps, image_exists, image_label, planned_kargs, run, test_base, write_config,
};

const AMD_NVIDIA: &str = "[cpu]\nvendor = \"amd\"\n\n[gpu]\nvendors = [\"nvidia\"]\n\n";

fn kernel_major_minor(kver: &str) -> (u32, u32) {
    let mut parts = kver.split(['.', '-']).map(|p| {
        p.parse::<u32>()
            .unwrap_or_else(|_| panic!("kernel version {kver}"))
    });
    (parts.next().unwrap(), parts.next().unwrap())
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

#[test]
fn built_image_has_the_planned_kargs_vfio_initramfs_one_kernel_and_the_bootc_label() {
    let dir = tempfile::tempdir().unwrap();
    let tag = "localhost/passthru-e2e-build:ids";
    let _cleanup = RemoveImages::new(&[tag]);
    let config = write_config(
        dir.path(),
        tag,
        &format!("{AMD_NVIDIA}[vfio]\nids = [\"10de:2684\", \"10de:22ba\"]\n"),
    );
    let built = build_command(&config)
        .args(["--label", "org.example.owner=e2e tests"])
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let usage = String::from_utf8_lossy(&built.stdout);
    assert!(
        usage.contains(&format!("sudo bootc switch {tag}")),
        "{usage}"
    );
    assert!(
        usage.contains(&format!(
            "rpm-ostree rebase ostree-unverified-registry:{tag}"
        )),
        "{usage}"
    );

    let image = MountedImage::new(tag);
    let kargs = bootc_kargs(&image.root);
    assert_eq!(
        kargs,
        planned_kargs(&["--config", config.to_str().unwrap()])
    );
    assert!(
        kargs.contains(&"vfio_pci.ids=10de:2684,10de:22ba".to_owned()),
        "{kargs:?}"
    );

    let kver = image.only_kernel();
    let modules = initramfs_modules(&image.path(&format!("/usr/lib/modules/{kver}/initramfs.img")));
    let mut wanted = vec!["vfio", "vfio_iommu_type1", "vfio_pci"];
    // Before 6.2, vfio-pci needs vfio_virqfd, a module of its own (later built into vfio).
    let (major, minor) = kernel_major_minor(&kver);
    if (major, minor) < (6, 2) {
        wanted.push("vfio_virqfd");
    }
    for wanted in wanted {
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
    assert_eq!(
        image_label(tag, "org.example.owner").as_deref(),
        Some("e2e tests")
    );
}

/// Device IDs and addresses live only in kargs.d: adding both rebuilds the host layer alone.
#[test]
fn changing_only_device_ids_rebuilds_only_the_host_layer() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (
        "localhost/passthru-e2e-build:cache-a",
        "localhost/passthru-e2e-build:cache-b",
    );
    let _cleanup = RemoveImages::new(&[first, second]);
    let config = write_config(
        dir.path(),
        first,
        &format!("{AMD_NVIDIA}[vfio]\nids = [\"10de:1401\"]\n"),
    );
    build_image(&config, first);

    let config = write_config(
        dir.path(),
        second,
        &format!(
            "{AMD_NVIDIA}[vfio]\nids = [\"10de:1401\", \"10de:0fba\"]\naddresses = [\"0b:00.0\"]\n"
        ),
    );
    let output = build_image(&config, second);
    // Instructions podman ran for real, e.g. `COPY layers/host/ /`.
    let rerun: Vec<String> = build_steps(&output)
        .into_iter()
        .filter(|s| !s.cached)
        .filter_map(|s| s.line.split_once(": ").map(|(_, i)| i.to_owned()))
        .filter(|i| !i.starts_with("FROM "))
        .collect();
    // The host layer is the last COPY; the steps after it (the bootc lint, the build's LABEL) have a new parent,
    // so they re-run too.
    assert_eq!(
        rerun.first().map(String::as_str),
        Some("COPY layers/host/ /"),
        "re-run: {rerun:?}\n{output}"
    );
    assert!(
        rerun.len() <= 3 && rerun.iter().skip(2).all(|i| i.starts_with("LABEL ")),
        "more than the host layer re-ran: {rerun:?}\n{output}"
    );
    assert!(
        !output.contains("dracut:"),
        "the initramfs was regenerated:\n{output}"
    );

    let image = MountedImage::new(second);
    let kargs = bootc_kargs(&image.root);
    assert!(kargs.contains(&"vfio_pci.ids=10de:1401,10de:0fba".to_owned()));
    assert!(kargs.contains(&"rd.passthru.vfio_addresses=0000:0b:00.0".to_owned()));
}

#[test]
fn a_failing_step_exits_nonzero_naming_the_step_and_the_engine_message() {
    // A base without a kernel: the initramfs step must stop the build instead of producing an unbootable image.
    let dir = tempfile::tempdir().unwrap();
    let (base, tag) = (
        "localhost/passthru-e2e-build:no-kernel-base",
        "localhost/passthru-e2e-build:no-kernel",
    );
    let _cleanup = RemoveImages::new(&[base, tag]);
    std::fs::write(
        dir.path().join("Containerfile"),
        format!("FROM {}\nRUN rm -rf /usr/lib/modules/*\n", test_base()),
    )
    .unwrap();
    run(std::process::Command::new("podman")
        .args(["build", "--isolation", "chroot", "--pull=never", "-t", base])
        .arg(dir.path()));

    let config = write_config(dir.path(), tag, AMD_NVIDIA);
    let out = build_command(&config)
        .args(["--base", base])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // The tool's own error line names the step; the engine's lines before it say why.
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    let step = error
        .split_once(" at ")
        .map(|(_, step)| step)
        .unwrap_or_else(|| panic!("no step in {error}"));
    assert!(
        step.contains("RUN [\"/usr/libexec/passthru-image/regenerate-initramfs\"]"),
        "{error}"
    );
    assert!(stderr.contains("no kernel in the image"), "{stderr}");
    assert!(!image_exists(tag), "a failed build left {tag} behind");
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
        build_refused(&config, args, named);
    }
    assert!(!image_exists(tag));
}

/// A stand-in engine on PATH: records its argv and whether it was given a context with a Containerfile, then
/// fails, so these tests check which engine the tool picks and what it passes without building anything.
/// buildah answers the look-ups of the base as if it were in its storage (with digest sha256:0…0), docker as if
/// it were not.
fn fake_engine(dir: &Path, name: &str) {
    let lookup = match name {
        // docker's "no such image" is exit 1.
        "docker" => "[ \"$1 $2\" = \"image inspect\" ] && exit 1\n".to_owned(),
        _ => format!(
            "[ \"$1\" = inspect ] && {{ echo sha256:{}; exit 0; }}\n",
            "0".repeat(64)
        ),
    };
    let script = format!(
        "#!/bin/sh\necho {name} \"$@\" >> {log}\n{lookup}for a; do last=$a; done\n[ -f \"$last/Containerfile\" ] && echo context-ok >> {log}\nexit 7\n",
        log = dir.join("argv.log").display()
    );
    let path = dir.join(name);
    std::fs::write(&path, script).unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
}

#[test]
fn the_engine_is_the_first_on_path_unless_passthru_engine_names_one() {
    let dir = tempfile::tempdir().unwrap();
    fake_engine(dir.path(), "buildah");
    fake_engine(dir.path(), "docker");
    let config = dir.path().join("passthru.toml");
    std::fs::write(
        &config,
        format!("[image]\nbase = \"localhost/base:1\"\ntag = \"localhost/out:1\"\n\n{AMD_NVIDIA}"),
    )
    .unwrap();
    let log = dir.path().join("argv.log");
    let build = |engine: Option<&str>| {
        let _ = std::fs::remove_file(&log);
        let mut cmd = bin();
        cmd.env("PATH", dir.path())
            .arg("--config")
            .arg(&config)
            .args(["build", "--pull", "never"]);
        if let Some(engine) = engine {
            cmd.env("PASSTHRU_ENGINE", engine);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (
            out.status.code(),
            stderr,
            std::fs::read_to_string(&log).unwrap_or_default(),
        )
    };

    // No podman here: buildah comes before docker.
    let (code, stderr, argv) = build(None);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("buildah failed (exit status: 7)"),
        "{stderr}"
    );
    // The base is looked up first; the build takes it from local storage.
    let build_line = argv
        .lines()
        .find(|l| l.starts_with("buildah bud "))
        .unwrap_or_else(|| panic!("no build: {argv}"));
    assert!(
        build_line.starts_with("buildah bud --layers --pull=never --tag localhost/out:1 --file "),
        "{argv}"
    );
    assert!(argv.contains("context-ok"), "{argv}");

    // docker has no "never pull": the tool asks docker for the base first, and stops when it is not there.
    let (code, stderr, argv) = build(Some("docker"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--pull") && stderr.contains("docker's local storage"),
        "{stderr}"
    );
    assert!(
        argv.starts_with("docker image inspect localhost/base:1"),
        "{argv}"
    );

    let (code, stderr, argv) = build(Some("podman"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--engine") && stderr.contains("`podman` is not on PATH"),
        "{stderr}"
    );
    assert!(argv.is_empty(), "{argv}");
}
