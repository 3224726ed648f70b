//! The tool's own container image (containerfiles/tool.Containerfile), as an immutable host runs it:
//! `podman run --rm --privileged -v /:/host IMAGE --root /host groups`, here with host fixture trees at /host.
//!
//! Built once, offline, from the Debian test base with the shared libraries the binary links
//! (tests/base/variants/tool-runtime) and the binary this test run built (BINARY=prebuilt): the Containerfile's
//! Fedora stages need a registry, and compiling the tool inside a container takes minutes and a Rust toolchain no
//! local image has. The final stage, its entrypoint and the binary running from the image are what is tested.
//!
//! `podman run` cannot start a container on this machine (hybrid cgroups: crun refuses, also with
//! --cgroups=disabled, --cgroup-manager=cgroupfs or --cgroupns=host), so the container runs the way build steps
//! run here: `buildah from` + `buildah run --isolation chroot -v FIXTURE:/host:ro`. buildah run does not go
//! through the image's ENTRYPOINT, so the test reads the entrypoint from the image and runs exactly that.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{RemoveImages, bin, repo_dir, run, test_base_variant};
use serde_json::Value;

const IMAGE: &str = "localhost/passthru-e2e-tool:test";

/// Builds the tool image; returns its entrypoint.
fn build_tool_image() -> Vec<String> {
    {
        let runtime = test_base_variant("tool-runtime");
        let context = tempfile::tempdir().unwrap();
        std::fs::copy(
            env!("CARGO_BIN_EXE_passthru-image"),
            context.path().join("passthru-image"),
        )
        .unwrap();
        run(Command::new("podman")
            .args(["build", "--pull=never", "--layers", "--isolation", "chroot"])
            .arg("--file")
            .arg(repo_dir().join("containerfiles/tool.Containerfile"))
            .args(["--build-arg", "BINARY=prebuilt"])
            .args(["--build-arg", &format!("RUNTIME={runtime}")])
            .args(["--tag", IMAGE])
            .arg(context.path()));
        let out = Command::new("podman")
            .args([
                "image",
                "inspect",
                "--format",
                "{{json .Config.Entrypoint}}",
                IMAGE,
            ])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// A working container of the tool image, removed when this value goes.
struct Container {
    name: String,
    entrypoint: Vec<String>,
}

impl Container {
    fn new(entrypoint: Vec<String>) -> Container {
        let name = common::run(Command::new("buildah").args(["from", "--pull-never", IMAGE]));
        Container {
            name: name.trim().to_owned(),
            entrypoint,
        }
    }

    /// Runs the image's entrypoint with `args`, `mounts` (host path, container path) mounted read-only.
    fn run(&self, mounts: &[(&Path, &str)], args: &[&str]) -> (Option<i32>, String, String) {
        let mut command = Command::new("buildah");
        command.args(["run", "--isolation", "chroot"]);
        for (host, inside) in mounts {
            command
                .arg("--volume")
                .arg(format!("{}:{inside}:ro", host.display()));
        }
        command
            .arg(&self.name)
            .arg("--")
            .args(&self.entrypoint)
            .args(args);
        let out = command.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("buildah").args(["rm", &self.name]).output();
    }
}

fn fixture(name: &str) -> PathBuf {
    repo_dir().join("tests/fixtures").join(name)
}

/// The same command with the binary on this machine, for comparison.
fn on_this_machine(args: &[&str]) -> (Option<i32>, String) {
    let out = bin().args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn the_tool_image_runs_groups_and_doctor_on_a_host_mounted_at_host() {
    let _cleanup = RemoveImages::new(&[IMAGE]);
    let entrypoint = build_tool_image();
    assert_eq!(entrypoint, ["/usr/bin/passthru-image"]);
    let container = Container::new(entrypoint);
    let host = fixture("amd-polaris");

    // The completions and man pages the binary made while the image was built, where the shells and man look.
    for path in [
        "/usr/share/bash-completion/completions/passthru-image",
        "/usr/share/zsh/site-functions/_passthru-image",
        "/usr/share/fish/vendor_completions.d/passthru-image.fish",
        "/usr/share/man/man1/passthru-image.1",
        "/usr/share/man/man1/passthru-image-groups.1",
    ] {
        let out = Command::new("buildah")
            .args([
                "run",
                "--isolation",
                "chroot",
                &container.name,
                "--",
                "test",
                "-s",
                path,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{path} is not in the image");
    }

    let (code, stdout, stderr) = container.run(
        &[(&host, "/host")],
        &["--root", "/host", "groups", "--json"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let groups: Value = serde_json::from_str(&stdout).unwrap();
    let host_arg = host.to_str().unwrap();
    let (_, expected) = on_this_machine(&["--root", host_arg, "groups", "--json"]);
    assert_eq!(groups, serde_json::from_str::<Value>(&expected).unwrap());
    assert_eq!(groups["iommu_enabled"], true);

    let (code, text, stderr) = container.run(&[(&host, "/host")], &["--root", "/host", "groups"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(text.contains("0000:09:00.0"), "{text}");

    // doctor with the config detect proposes for this host: the host is set up, so every check passes.
    let config_dir = tempfile::tempdir().unwrap();
    let (code, config) = on_this_machine(&["--root", host_arg, "detect"]);
    assert_eq!(code, Some(0));
    std::fs::write(config_dir.path().join("passthru.toml"), config).unwrap();
    let (code, stdout, stderr) = container.run(
        &[(&host, "/host"), (config_dir.path(), "/config")],
        &[
            "--root",
            "/host",
            "--config",
            "/config/passthru.toml",
            "doctor",
            "--json",
        ],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ok"], true, "{report:#}");
    let passed = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "pass")
        .count();
    assert!(passed >= 10, "{report:#}");

    // A host that is not set up: doctor fails with exit 1 from inside the container too.
    let off = fixture("iommu-off");
    let (code, _, _) = container.run(
        &[(&off, "/host"), (config_dir.path(), "/config")],
        &[
            "--root",
            "/host",
            "--config",
            "/config/passthru.toml",
            "doctor",
        ],
    );
    assert_eq!(code, Some(1));
}
