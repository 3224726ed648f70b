//! End-to-end tests of issue 13's bases that are not a clean Fedora bootc image: each test base
//! (tests/base/variants/NAME, a thin layer over the offline test base) shows one fact of the real ones
//! (Bazzite, Bluefin, the NVIDIA images), and a real `passthru-image build` on it must keep the host working:
//! a kernel that already has the ACS override is kept, other packages' modules are never deleted, version locks
//! are cleared and said so, and the base's own initramfs parameters survive, with and without a kernel swap.
//!
//! The replacement kernel is Debian's cloud flavour of the base's kernel ABI, fetched once by
//! tests/base/fetch-alt-kernel.sh (shared with e2e_kernel).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    MountedImage, RemoveImages, alt_kernel_debs, build_command, build_image, run, test_base_variant,
};

/// The symbol whose presence in System.map means the kernel has the ACS override patch.
const ACS_SYMBOL: &str = "pcie_acs_override_setup";

fn tag(name: &str) -> String {
    format!("localhost/passthru-e2e-bases-{name}:{}", std::process::id())
}

/// A passthru.toml building `base`, with `body` appended (everything but `[image]`).
fn config_on(base: &str, dir: &Path, tag: &str, body: &str) -> PathBuf {
    let path = dir.join("passthru.toml");
    let text = format!(
        "[image]\nbase = \"{base}\"\ntag = \"{tag}\"\n\n[cpu]\nvendor = \"intel\"\n\n{body}"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The ACS-override kernel from the local cloud-kernel .debs.
fn acs_body(base_kver: &str) -> String {
    format!(
        "[acs-override]\nenabled = true\npackages = \"{}\"\n",
        alt_kernel_debs(base_kver)
    )
}

/// The swapped-in kernel's release for a base kernel release.
fn cloud_kernel(base_kver: &str) -> String {
    format!("{}-cloud-amd64", base_kver.trim_end_matches("-amd64"))
}

/// The installed packages of a mounted image's dpkg database, with their selection (`install`, `hold`).
fn dpkg_packages(image: &MountedImage) -> Vec<(String, String)> {
    image
        .read("/var/lib/dpkg/status")
        .split("\n\n")
        .filter_map(|stanza| {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(": ")))
            };
            let status: Vec<&str> = field("Status")?.split(' ').collect();
            (status.get(2) == Some(&"installed"))
                .then(|| (field("Package").unwrap().to_owned(), status[0].to_owned()))
        })
        .collect()
}

/// The paths in an image's initramfs for `kver`, as lsinitrd lists them.
fn initramfs_listing(image: &MountedImage, kver: &str) -> String {
    let initramfs = image.path(&format!("/usr/lib/modules/{kver}/initramfs.img"));
    run(Command::new("lsinitrd").arg(&initramfs))
}

fn has_module(listing: &str, kver: &str, module: &str) -> bool {
    let names = [
        format!("/{module}.ko"),
        format!("/{}.ko", module.replace('_', "-")),
    ];
    listing
        .lines()
        .any(|l| l.contains(&format!("/{kver}/")) && names.iter().any(|n| l.contains(n.as_str())))
}

#[test]
fn a_kernel_that_carries_the_acs_patch_is_kept_and_gets_only_the_karg() {
    let base = test_base_variant("acs-kernel");
    let kver = MountedImage::new(&base).only_kernel();
    let tag = tag("acs-kernel");
    let _cleanup = RemoveImages::new(&[&tag]);
    let dir = tempfile::tempdir().unwrap();
    let config = config_on(&base, dir.path(), &tag, &acs_body(&kver));

    // The plan is made without the base's files: it can only say what the build will check.
    let plan = common::bin()
        .arg("--config")
        .arg(&config)
        .arg("plan")
        .output()
        .unwrap();
    assert!(plan.status.success());
    let plan = String::from_utf8(plan.stdout).unwrap();
    assert!(
        plan.contains(&format!(
            "unless the base's kernel already carries the ACS override patch (checked at build time: {ACS_SYMBOL} in its System.map)"
        )),
        "{plan}"
    );

    let output = build_image(&config, &tag);
    assert!(
        output.contains(&format!(
            "kernel {kver} already carries the ACS override patch ({ACS_SYMBOL} in its System.map): nothing to swap"
        )),
        "{output}"
    );
    let image = MountedImage::new(&tag);
    assert_eq!(image.only_kernel(), kver, "the patched kernel was replaced");
    let installed = dpkg_packages(&image);
    assert!(
        installed
            .iter()
            .any(|(p, _)| *p == format!("linux-image-{kver}")),
        "the kernel's package was removed"
    );
    assert!(
        !installed.iter().any(|(p, _)| p.contains("cloud")),
        "the replacement kernel was installed: {installed:?}"
    );
    let kargs = image.read("/usr/lib/bootc/kargs.d/50-passthru.toml");
    assert!(
        kargs.contains("\"pcie_acs_override=downstream,multifunction\""),
        "{kargs}"
    );
    let listing = initramfs_listing(&image, &kver);
    assert!(has_module(&listing, &kver, "vfio_pci"), "{listing}");
}

#[test]
fn modules_of_other_packages_or_build_steps_refuse_the_swap_by_name() {
    let base = test_base_variant("third-party-kmod");
    let kver = MountedImage::new(&base).only_kernel();
    let tag = tag("third-party-kmod");
    let _cleanup = RemoveImages::new(&[&tag]);
    let dir = tempfile::tempdir().unwrap();
    let config = config_on(&base, dir.path(), &tag, &acs_body(&kver));

    let out = build_command(&config)
        .args(["--tag", &tag])
        .output()
        .unwrap();
    let output =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the swap went ahead:\n{output}");
    let moddir = format!("/usr/lib/modules/{kver}");
    for expected in [
        format!("kernel {kver} has modules that are not its own; replacing it would delete them:"),
        format!("package kmod-xone-test: {moddir}/extra/xone/xone-dongle.ko"),
        format!(
            "no package (added by an earlier build step): {moddir}/updates/dkms/added-by-a-build-step.ko"
        ),
        "nothing was changed. The packages kmod-xone-test would stay installed without these files"
            .to_owned(),
        "use a base whose kernel already carries the ACS override patch".to_owned(),
    ] {
        assert!(output.contains(&expected), "no {expected:?} in:\n{output}");
    }
    // Exactly those two: the kernel's own files, depmod's indexes and the bootc layout's vmlinuz and config are
    // the kernel's. (The error repeats the end of the engine's output, so each line may appear twice.)
    let listed: std::collections::BTreeSet<&str> = output
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("package ") || l.starts_with("no package"))
        .collect();
    assert_eq!(listed.len(), 2, "{listed:#?}");
    assert!(
        !output.contains("Unpacking"),
        "the refusal came after the install:\n{output}"
    );
}

#[test]
fn a_held_kernel_is_released_and_swapped_without_leaving_apt_logs_or_caches() {
    let base = test_base_variant("held-kernel");
    let base_image = MountedImage::new(&base);
    let kver = base_image.only_kernel();
    let tag = tag("held-kernel");
    let _cleanup = RemoveImages::new(&[&tag]);
    let dir = tempfile::tempdir().unwrap();
    let config = config_on(&base, dir.path(), &tag, &acs_body(&kver));

    let output = build_image(&config, &tag);
    let cleared = output
        .lines()
        .find(|l| l.contains("cleared the apt-mark hold on"))
        .unwrap_or_else(|| panic!("no hold cleared in:\n{output}"));
    for package in [
        format!("linux-image-{kver}"),
        format!("linux-headers-{kver}"),
        "linux-image-amd64".to_owned(),
        "linux-headers-amd64".to_owned(),
    ] {
        assert!(
            cleared.split_whitespace().any(|w| w == package),
            "{package} not in: {cleared}"
        );
    }

    let image = MountedImage::new(&tag);
    assert_eq!(image.only_kernel(), cloud_kernel(&kver));
    let installed = dpkg_packages(&image);
    for (package, selection) in &installed {
        assert!(
            !package.ends_with(&kver)
                && package != "linux-image-amd64"
                && package != "linux-headers-amd64",
            "{package} of the old kernel stayed"
        );
        assert_eq!(selection, "install", "{package} is still held");
    }
    // Packages that only share the version string stay (the cloud kernel's headers need them).
    let abi = kver.trim_end_matches("-amd64");
    assert!(
        installed
            .iter()
            .any(|(p, _)| *p == format!("linux-headers-{abi}-common")),
        "linux-headers-{abi}-common went with the kernel"
    );
    // apt's logs and caches went to tmpfs mounts, not into the swap's layer.
    assert_eq!(
        image.read("/var/log/dpkg.log"),
        base_image.read("/var/log/dpkg.log")
    );
    for cache in ["/var/cache/apt/pkgcache.bin", "/var/log/apt/history.log"] {
        assert_eq!(
            image.path(cache).exists(),
            base_image.path(cache).exists(),
            "{cache} differs from the base"
        );
    }
}

/// The base's initramfs was built with `--add-drivers "dummy veth"`; after our build, both are still in it,
/// beside the VFIO drivers.
fn assert_base_drivers_kept(output: &str, image: &MountedImage, kver: &str) {
    assert!(
        output.contains("keeping the base initramfs's parameters: --add-drivers dummy veth"),
        "{output}"
    );
    let listing = initramfs_listing(image, kver);
    for module in ["dummy", "veth", "vfio_pci", "vfio_iommu_type1"] {
        assert!(
            has_module(&listing, kver, module),
            "no {module} for {kver} in:\n{listing}"
        );
    }
}

#[test]
fn the_base_initramfs_parameters_survive_without_a_kernel_swap() {
    let base = test_base_variant("initramfs-driver");
    let kver = MountedImage::new(&base).only_kernel();
    let tag = tag("initramfs-kept");
    let _cleanup = RemoveImages::new(&[&tag]);
    let dir = tempfile::tempdir().unwrap();
    let output = build_image(&config_on(&base, dir.path(), &tag, ""), &tag);
    let image = MountedImage::new(&tag);
    assert_eq!(image.only_kernel(), kver);
    assert_base_drivers_kept(&output, &image, &kver);
}

#[test]
fn the_base_initramfs_parameters_survive_a_kernel_swap() {
    let base = test_base_variant("initramfs-driver");
    let kver = MountedImage::new(&base).only_kernel();
    let tag = tag("initramfs-swapped");
    let _cleanup = RemoveImages::new(&[&tag]);
    let dir = tempfile::tempdir().unwrap();
    let output = build_image(&config_on(&base, dir.path(), &tag, &acs_body(&kver)), &tag);
    let image = MountedImage::new(&tag);
    let new = image.only_kernel();
    assert_eq!(new, cloud_kernel(&kver));
    assert_base_drivers_kept(&output, &image, &new);
    // Read before the swap deleted the old initramfs, and not left in the image once used.
    assert!(
        output.contains(
            "the new kernel's initramfs will be built with the parameters of the old one"
        ),
        "{output}"
    );
    assert!(!image.path("/usr/lib/passthru-image").exists());
}
