//! Shared by the end-to-end tests: the offline test base image and building derived images from it.
//! Each test binary includes this module and uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use assert_cmd::Command;

pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> Command {
    let mut cmd = Command::cargo_bin("passthru-image").unwrap();
    // Tests never read the machine's own /sys, /proc or ./passthru.toml by accident.
    cmd.env_remove("PASSTHRU_ENGINE").current_dir(repo_dir());
    cmd
}

/// The offline bootc-layout test base (tests/base/make-base.sh), built once per machine and cached by the hash
/// of its inputs. A failure here fails the test: the end-to-end suite never skips for lack of a program.
pub fn test_base() -> &'static str {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(|| {
        let out = std::process::Command::new("bash")
            .arg(repo_dir().join("tests/base/make-base.sh"))
            .env("BUILDAH_ISOLATION", "chroot")
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run tests/base/make-base.sh");
        assert!(out.status.success(), "tests/base/make-base.sh failed");
        let stdout = String::from_utf8(out.stdout).unwrap();
        stdout.lines().last().expect("make-base.sh printed the image").trim().to_owned()
    })
}

/// A passthru.toml on the test base with `body` appended (everything but `[image]`).
pub fn write_config(dir: &Path, tag: &str, body: &str) -> PathBuf {
    let path = dir.join("passthru.toml");
    let text = format!("[image]\nbase = \"{}\"\ntag = \"{tag}\"\n\n{body}", test_base());
    std::fs::write(&path, text).unwrap();
    path
}

/// Builds `config` into the image `tag` in local storage.
pub fn build_image(config: &Path, tag: &str) {
    let ctx = tempfile::tempdir().unwrap();
    let out = ctx.path().join("context");
    bin()
        .args(["generate", "--config"])
        .arg(config)
        .arg("--output")
        .arg(&out)
        .assert()
        .success();
    let status = std::process::Command::new("podman")
        .args(["build", "--isolation", "chroot", "--pull=never", "--layers", "-t", tag])
        .arg(&out)
        .status()
        .expect("run podman build");
    assert!(status.success(), "podman build of {} failed", config.display());
}
