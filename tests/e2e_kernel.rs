//! End-to-end tests of issue 5: the ACS-override kernel with the vendor-reset module, built for real into
//! images on the offline Debian test base and inspected independently (podman image mount, modinfo and
//! lsinitrd on the host against the mounted tree).
//!
//! The module source is the tests' own tests/fixtures/kmod-hello (with its own dkms.conf) standing in for
//! vendor-reset; the replacement kernel is Debian's cloud flavour of the base's kernel ABI, fetched once by
//! tests/base/fetch-alt-kernel.sh. Each image build takes about a minute here, so the tests share what they
//! can through the engine's layer cache: the two kernel tests build the same config, one after the other.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use common::{
    MountedImage, alt_kernel_debs, build_image, build_steps, image_history, repo_dir, run,
    test_base_kernel, write_config,
};

/// The module the kmod-hello fixture builds (its dkms.conf BUILT_MODULE_NAME).
const MODULE: &str = "kmod_hello";
/// A Polaris 10 GPU: in vendor-reset's table, so the udev rule names it.
const POLARIS: &str = "1002:67df";

/// Removes the images a test made when it ends, failed or not. Declared before any [`MountedImage`] so it is
/// dropped after them.
struct Images(Vec<String>);

impl Images {
    fn tag(&mut self, name: &str) -> String {
        let tag = format!(
            "localhost/passthru-e2e-kernel-{name}:{}",
            std::process::id()
        );
        self.0.push(tag.clone());
        tag
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = Command::new("podman")
                .args(["rmi", "--force", image])
                .output();
        }
    }
}

/// The kernel tests build the same image; one at a time, so the second takes it from the layer cache.
fn kernel_builds() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Paths under `dir` of the mounted image whose file name starts with `prefix`, relative to `dir`.
fn names(image: &MountedImage, dir: &str, prefix: &str) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(image.path(dir)) else {
        return BTreeSet::new();
    };
    entries
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// modinfo of the host, reading the image's module tree (modules.dep from the image's depmod).
fn modinfo(root: &Path, kver: &str, module: &str) -> String {
    run(Command::new("modinfo")
        .arg("-b")
        .arg(root)
        .args(["-k", kver, module]))
}

/// Installed packages of a dpkg status file with a dependency (without alternatives) on a package that is
/// neither installed nor provided: what makes every later `apt-get install` fail.
fn unmet_dependencies(status: &str) -> Vec<String> {
    let mut installed = BTreeSet::new();
    let mut depends = Vec::new();
    for stanza in status.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(": ")))
                .unwrap_or("")
        };
        if field("Status") != "install ok installed" {
            continue;
        }
        let package = field("Package").to_owned();
        installed.insert(package.clone());
        for provided in field("Provides").split(',') {
            installed.insert(provided.split_whitespace().next().unwrap_or("").to_owned());
        }
        for dep in field("Depends")
            .split(',')
            .chain(field("Pre-Depends").split(','))
        {
            let name = dep.split_whitespace().next().unwrap_or("");
            if !dep.contains('|') && !name.is_empty() {
                depends.push((package.clone(), name.split(':').next().unwrap().to_owned()));
            }
        }
    }
    depends
        .into_iter()
        .filter(|(_, dep)| !installed.contains(dep))
        .map(|(package, dep)| format!("{package} -> {dep}"))
        .collect()
}

/// vendor-reset from the local fixture source.
fn vendor_reset_toml() -> String {
    let source = repo_dir().join("tests/fixtures/kmod-hello");
    format!(
        "[vendor-reset]\nenabled = true\npath = \"{}\"\n",
        source.display()
    )
}

/// The ACS-override kernel from the local .debs plus vendor-reset, for the devices `ids`.
fn acs_config(dir: &Path, tag: &str, ids: &[&str]) -> std::path::PathBuf {
    let debs = alt_kernel_debs(test_base_kernel());
    let ids: Vec<String> = ids.iter().map(|id| format!("\"{id}\"")).collect();
    let body = format!(
        "[cpu]\nvendor = \"intel\"\n\n[gpu]\nvendors = [\"amd\"]\n\n[vfio]\nids = [{}]\n\n{}\n\
         [acs-override]\nenabled = true\nmode = [\"downstream\", \"multifunction\"]\npackages = \"{debs}\"\n",
        ids.join(", "),
        vendor_reset_toml()
    );
    write_config(dir, tag, &body)
}

#[test]
fn acs_kernel_swap_from_local_debs_leaves_exactly_the_new_kernel() {
    let mut images = Images(Vec::new());
    let tag = images.tag("acs");
    let dir = tempfile::tempdir().unwrap();
    let config = acs_config(dir.path(), &tag, &[POLARIS, "1002:aaf0"]);
    {
        let _one_at_a_time = kernel_builds();
        build_image(&config, &tag);
    }

    let image = MountedImage::new(&tag);
    let kver = image.only_kernel();
    let old = test_base_kernel();
    assert_ne!(kver, old, "the kernel was not swapped");
    assert_eq!(
        kver,
        format!("{}-cloud-amd64", old.trim_end_matches("-amd64"))
    );
    assert!(
        !image.path(&format!("/usr/lib/modules/{old}")).exists(),
        "the old kernel's module directory stayed"
    );
    let boot: Vec<_> = std::fs::read_dir(image.path("/boot"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(boot.is_empty(), "/boot is not empty: {boot:?}");

    // No dangling links into /boot, and a package database later layers can still apt-get on.
    for link in ["/vmlinuz", "/vmlinuz.old", "/initrd.img", "/initrd.img.old"] {
        assert!(
            image.path(link).symlink_metadata().is_err(),
            "{link} left in the image"
        );
    }
    let unmet = unmet_dependencies(&image.read("/var/lib/dpkg/status"));
    assert!(
        unmet.is_empty(),
        "installed packages with unmet dependencies: {unmet:?}"
    );

    // The initramfs of the new kernel, regenerated with the VFIO drivers.
    let initramfs = image.path(&format!("/usr/lib/modules/{kver}/initramfs.img"));
    let listing = run(Command::new("lsinitrd").arg(&initramfs));
    let vfio_pci = listing.lines().find(|l| {
        l.contains(&format!("/{kver}/"))
            && (l.contains("/vfio-pci.ko") || l.contains("/vfio_pci.ko"))
    });
    assert!(
        vfio_pci.is_some(),
        "no vfio_pci for {kver} in the initramfs:\n{listing}"
    );

    // The kernel arguments carry the override only with the swapped kernel.
    let kargs = image.read("/usr/lib/bootc/kargs.d/50-passthru.toml");
    assert!(
        kargs.contains("\"pcie_acs_override=downstream,multifunction\""),
        "{kargs}"
    );

    // The module was built against the new kernel, not the base's, with headers that stayed in the builder
    // stage: the final image has none for the new kernel, and the old kernel's went with it.
    let info = modinfo(&image.root, &kver, MODULE);
    assert!(info.contains(&format!("vermagic:       {kver} ")), "{info}");
    let headers = names(&image, "/usr/src", "linux-headers-");
    assert!(
        !headers
            .iter()
            .any(|h| h.ends_with(&kver) || h.ends_with(old)),
        "kernel headers in the final image: {headers:?}"
    );
    assert!(
        !image
            .path(&format!("/usr/lib/modules/{kver}/build"))
            .exists()
    );
    // Nor the packages the kernel came from, in any layer: they were bind-mounted, not copied.
    let history = image_history(&tag);
    assert!(
        history.contains("--mount=type=bind,source=kernel"),
        "{history}"
    );
    assert!(
        !history.contains("passthru-kernel/"),
        "a layer copied the kernel packages:\n{history}"
    );
    assert!(!image.path("/var/tmp/passthru-kernel").exists());
}

/// podman 4.3's output for a rebuild whose `COPY --from=kmods` makes it build the kmods stage in between
/// (from a CI run): the cache line after the stage belongs to the COPY, not to the stage's last step.
#[test]
fn build_steps_give_each_cache_line_to_its_own_step() {
    let output = "\
[3/3] STEP 2/9: COPY scripts/image-kernel scripts/regenerate-initramfs /usr/libexec/passthru-image/
--> Using cache 1809df32212f
--> 1809df32212
[3/3] STEP 3/9: COPY --from=kmods /out/ /
[2/3] STEP 1/4: FROM 77d83e6f18ef AS kmods
[2/3] STEP 2/4: COPY scripts/image-kernel scripts/build-kmods /usr/libexec/passthru-image/
--> Using cache 2af32615e55f
--> 2af32615e55
[2/3] STEP 4/4: RUN [\"/usr/libexec/passthru-image/build-kmods\",\"kmod-hello\",\"0.1\",\"kmod_hello\",\"path\"]
--> Using cache 1918e717ba54
--> 1918e717ba5
--> Using cache 5a37fcc10e9f
--> 5a37fcc10e9
[3/3] STEP 8/9: COPY layers/host/ /
--> 9875e305ad3
[3/3] STEP 9/9: RUN [\"/bin/sh\", \"-c\", \"bootc container lint\"]
[3/3] COMMIT localhost/passthru-e2e-kernel-cache-b:7414
--> fddf2c66877
";
    let seen: Vec<(String, bool)> = build_steps(output)
        .into_iter()
        .map(|s| (s.line.split(": ").next().unwrap().to_owned(), s.cached))
        .collect();
    let expected = [
        ("STEP 2/9", true),
        ("STEP 3/9", true),
        ("STEP 1/4", false),
        ("STEP 2/4", true),
        ("STEP 4/4", true),
        ("STEP 8/9", false),
        ("STEP 9/9", false),
    ];
    let expected: Vec<(String, bool)> = expected.iter().map(|(l, c)| (l.to_string(), *c)).collect();
    assert_eq!(seen, expected);
}

#[test]
fn changing_only_device_ids_rebuilds_only_the_host_layer() {
    let mut images = Images(Vec::new());
    let first = images.tag("cache-a");
    let second = images.tag("cache-b");
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let _one_at_a_time = kernel_builds();
    build_image(
        &acs_config(dir_a.path(), &first, &[POLARIS, "1002:aaf0"]),
        &first,
    );
    let output = build_image(
        &acs_config(dir_b.path(), &second, &[POLARIS, "1002:aaf0", "10de:1b80"]),
        &second,
    );

    let steps = build_steps(&output);
    let host = steps
        .iter()
        .position(|s| s.line.contains("COPY layers/host/"))
        .unwrap_or_else(|| panic!("no host layer step in:\n{output}"));
    // Each script's RUN step (its path ends the argv's first string), not the COPY that installs it.
    for heavy in [
        "/swap-kernel\"",
        "/build-kmods\"",
        "/depmod-kernel\"",
        "/regenerate-initramfs\"",
        "COPY --from=kmods",
    ] {
        let step = steps
            .iter()
            .find(|s| s.line.contains(heavy))
            .unwrap_or_else(|| panic!("no {heavy} step in:\n{output}"));
        assert!(step.cached, "{heavy} re-ran: {}\n{output}", step.line);
    }
    for step in &steps[..host] {
        assert!(
            step.cached || step.line.contains(": FROM "),
            "re-ran before the host layer: {}\n{output}",
            step.line
        );
    }
    assert!(
        !steps[host].cached,
        "the host layer came from cache although the IDs changed:\n{output}"
    );

    // And the rebuilt image carries the new IDs.
    let image = MountedImage::new(&second);
    let kargs = image.read("/usr/lib/bootc/kargs.d/50-passthru.toml");
    assert!(kargs.contains("10de:1b80"), "{kargs}");
}
