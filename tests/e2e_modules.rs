//! End-to-end tests of the out-of-tree module build (issue 13): a module whose dkms.conf and build use
//! upstream vendor-reset's forms (tests/fixtures/vendor-reset-standin) built for real into images on the
//! offline Debian test base, from a local directory, from a local git repository at a pinned commit, and on a
//! base whose repositories carry no headers for its kernel. Images are inspected independently (podman image
//! mount, modinfo and readelf on the host against the mounted tree).

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use common::{
    MountedImage, RemoveImages, build_command, build_image, file_url, git_repository_of,
    image_history, image_label, repo_dir, run, standin_source, test_base, test_base_variant,
};

/// The stand-in's kernel module (BUILT_MODULE_NAME[0]="${PACKAGE_NAME}").
const MODULE: &str = "vendor-reset-standin";
/// A Polaris 10 GPU and its HDMI audio: vendor-reset turns on by itself and the udev rule names the GPU.
const IDS: &str = "\"1002:67df\", \"1002:aaf0\"";

/// One image build at a time: two at once on a small machine only make both slow.
fn one_build_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn tag(name: &str) -> String {
    format!(
        "localhost/passthru-e2e-modules-{name}:{}",
        std::process::id()
    )
}

/// A passthru.toml on `base` with the stand-in planned from `source` (the `[vendor-reset]` keys).
fn config(dir: &Path, base: &str, tag: &str, source: &str) -> std::path::PathBuf {
    let path = dir.join("passthru.toml");
    let text = format!(
        "[image]\nbase = \"{base}\"\ntag = \"{tag}\"\n\n[cpu]\nvendor = \"amd\"\n\n[gpu]\nvendors = [\"amd\"]\n\n\
         [vfio]\nids = [{IDS}]\n\n[vendor-reset]\n{source}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Entries of a directory of the mounted image (none when it does not exist).
fn entries(image: &MountedImage, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(image.path(dir))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// modinfo of the host, reading the image's module tree (modules.dep from the image's own depmod).
fn modinfo(image: &MountedImage, kver: &str, field: &str) -> String {
    run(Command::new("modinfo")
        .arg("-b")
        .arg(&image.root)
        .args(["-k", kver, "-F", field, MODULE]))
    .trim()
    .to_owned()
}

/// Installed dpkg packages of the image whose name starts with `prefix`.
fn installed_packages(image: &MountedImage, prefix: &str) -> Vec<String> {
    image
        .read("/var/lib/dpkg/status")
        .split("\n\n")
        .filter(|stanza| stanza.contains("\nStatus: install ok installed"))
        .filter_map(|stanza| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix("Package: "))
                .filter(|p| p.starts_with(prefix))
                .map(str::to_owned)
        })
        .collect()
}

/// What every image with the stand-in must show: the module for the image's own kernel where depmod and
/// modinfo find it, stripped as dkms strips, loaded at boot, loaded by the udev rule before the reset
/// method is set, and nothing of the build beside it.
fn assert_module_installed(image: &MountedImage, base: &MountedImage, version: &str) {
    let kver = image.only_kernel();
    assert_eq!(
        kver,
        base.only_kernel(),
        "the module build keeps the base's kernel"
    );
    let ko = image.path(&format!("/usr/lib/modules/{kver}/extra/{MODULE}.ko"));
    assert!(ko.is_file(), "{} missing", ko.display());
    assert!(
        modinfo(image, &kver, "vermagic").starts_with(&format!("{kver} ")),
        "built for another kernel"
    );
    assert_eq!(modinfo(image, &kver, "version"), version);
    let sections = run(Command::new("readelf").arg("-S").arg(&ko));
    assert!(
        !sections.contains(".debug_info"),
        "the module kept its debug information:\n{sections}"
    );
    let dep = image.read(&format!("/usr/lib/modules/{kver}/modules.dep"));
    assert!(
        dep.contains(&format!("extra/{MODULE}.ko:")),
        "depmod did not index it"
    );

    let load = image.read("/usr/lib/modules-load.d/vendor-reset.conf");
    assert!(load.lines().any(|l| l.trim() == MODULE), "{load}");
    let rule = image.read("/usr/lib/udev/rules.d/99-passthru-vendor-reset.rules");
    assert!(
        rule.contains(&format!(
            "ATTR{{vendor}}==\"0x1002\", ATTR{{device}}==\"0x67df\", PROGRAM=\"/sbin/modprobe -a {MODULE}\", \
             ATTR{{reset_method}}=\"device_specific\""
        )),
        "{rule}"
    );
    assert!(
        !rule.contains("0xaaf0"),
        "the HDMI audio function needs no reset:\n{rule}"
    );

    // The builder stage's compiler, sources, build tree and output stay there.
    for dir in ["/usr/bin", "/usr/src", "/var/lib/dkms"] {
        assert_eq!(entries(image, dir), entries(base, dir), "{dir} changed");
    }
    assert!(
        !image.path("/out").exists(),
        "the builder stage's /out leaked"
    );
}

#[test]
fn a_module_with_upstream_dkms_conf_forms_builds_from_a_local_directory() {
    let tag = tag("path");
    let _images = RemoveImages::new(&[&tag]);
    let dir = tempfile::tempdir().unwrap();
    let source = format!("path = \"{}\"", standin_source().display());
    let config = config(dir.path(), test_base(), &tag, &source);
    {
        let _one = one_build_at_a_time();
        build_image(&config, &tag);
    }
    let base = MountedImage::new(test_base());
    assert_module_installed(&MountedImage::new(&tag), &base, "0.9.1");
    assert_eq!(image_label(&tag, "containers.bootc").as_deref(), Some("1"));
}

#[test]
fn the_module_builds_from_a_local_git_repository_at_its_pinned_commit() {
    let tag = tag("git");
    let _images = RemoveImages::new(&[&tag]);
    let dir = tempfile::tempdir().unwrap();
    // The pinned commit is neither the first nor the tip: the image shows which one was built.
    let header = std::fs::read_to_string(standin_source().join("include/standin.h")).unwrap();
    let (repo, commits) = git_repository_of(
        &standin_source(),
        &[
            (
                "include/standin.h",
                &header.replace("\"0.9.1\"", "\"0.9.2-pinned\""),
            ),
            (
                "include/standin.h",
                &header.replace("\"0.9.1\"", "\"0.9.3-tip\""),
            ),
        ],
    );
    let url = file_url(repo.path());
    let pinned = &commits[1];
    let config = config(
        dir.path(),
        test_base(),
        &tag,
        &format!("git = \"{url}\"\ncommit = \"{pinned}\""),
    );

    // `plan` names the commit without fetching it.
    let plan = run(Command::new(env!("CARGO_BIN_EXE_passthru-image"))
        .arg("--config")
        .arg(&config)
        .arg("plan"));
    assert!(
        plan.contains(&format!("Module: from dkms.conf at {pinned} of {url};")),
        "{plan}"
    );

    let output = {
        let _one = one_build_at_a_time();
        build_image(&config, &tag)
    };
    assert!(
        output.contains(&format!("Fetching {url} at {pinned}")),
        "{output}"
    );
    let base = MountedImage::new(test_base());
    assert_module_installed(&MountedImage::new(&tag), &base, "0.9.2-pinned");
}

#[test]
fn a_base_without_headers_for_its_kernel_fails_naming_it_and_builds_with_local_headers() {
    let base_image = test_base_variant("no-headers");
    let tag = tag("no-headers");
    let _images = RemoveImages::new(&[&tag]);
    let dir = tempfile::tempdir().unwrap();
    let base = MountedImage::new(&base_image);
    let kver = base.only_kernel();
    let source = format!("path = \"{}\"", standin_source().display());

    let without = config(dir.path(), &base_image, &tag, &source);
    let output = {
        let _one = one_build_at_a_time();
        build_command(&without)
            .args(["--tag", &tag])
            .output()
            .unwrap()
    };
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "no kernel headers for the image's kernel {kver}: neither the image nor its repositories have them. \
             Download linux-headers-{kver}_*.deb"
        )),
        "{text}"
    );
    assert!(text.contains("vendor-reset.headers = \"DIR\""), "{text}");

    // The same build, given the headers as local packages (downloaded once per machine).
    let debs = run(Command::new("bash")
        .arg(repo_dir().join("tests/base/fetch-headers.sh"))
        .arg(&kver)
        .stderr(std::process::Stdio::inherit()));
    let debs = debs
        .lines()
        .last()
        .expect("fetch-headers.sh printed its directory");
    let with = config(
        dir.path(),
        &base_image,
        &tag,
        &format!("{source}\nheaders = \"{debs}\""),
    );
    {
        let _one = one_build_at_a_time();
        build_image(&with, &tag);
    }
    let image = MountedImage::new(&tag);
    assert_module_installed(&image, &base, "0.9.1");
    // The headers served the builder stage only: not installed in the image, not copied into a layer.
    assert_eq!(
        installed_packages(&image, "linux-headers-"),
        Vec::<String>::new()
    );
    assert_eq!(
        installed_packages(&image, "linux-kbuild-"),
        Vec::<String>::new()
    );
    let history = image_history(&tag);
    assert!(!history.contains("COPY headers"), "{history}");
}
