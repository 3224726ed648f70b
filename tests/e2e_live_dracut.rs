//! Live mode's drop-ins, put through real dracut as rpm-ostree runs it (`--no-hostonly`) inside the offline test
//! base: the modprobe drop-in in /etc reaches the initramfs only because the dracut drop-in names it in
//! `install_items` (dracut copies /etc/modprobe.d in host-only mode alone).

mod common;

use std::process::Command;

use common::{bin, stdout_of, test_base};
use serde_json::Value;

/// A working container of the test base, removed when dropped.
struct Container(String);

impl Container {
    fn new() -> Container {
        let out = buildah(&["from", "--pull=never", test_base()]);
        Container(out.trim().to_owned())
    }

    fn write(&self, path: &str, content: &str) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, content).unwrap();
        buildah(&["copy", &self.0, file.to_str().unwrap(), path]);
    }

    /// The listing of an initramfs dracut builds here the way rpm-ostree regenerates one.
    fn regenerated_initramfs_listing(&self) -> String {
        buildah(&[
            "run",
            &self.0,
            "--",
            "sh",
            "-c",
            "kver=$(ls /usr/lib/modules) && DRACUT_NO_XATTR=1 dracut --quiet --no-compress --no-hostonly --kver \"$kver\" \
             --force /tmp/initramfs.img && lsinitrd /tmp/initramfs.img",
        ])
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("buildah").args(["rm", &self.0]).output();
    }
}

fn buildah(args: &[&str]) -> String {
    let out = Command::new("buildah")
        .args(args)
        .env("BUILDAH_ISOLATION", "chroot")
        .output()
        .expect("run buildah");
    assert!(
        out.status.success(),
        "buildah {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The drop-ins `apply` writes for an NVIDIA plan, as `plan --json` lists them: (path, content).
fn live_files() -> Vec<(String, String)> {
    let stdout = stdout_of(
        bin()
            .args(["plan", "--json", "--cpu", "intel", "--gpu", "nvidia"])
            .args(["--vfio-ids", "10de:2684"])
            .output()
            .unwrap(),
    );
    let plan: Value = serde_json::from_str(&stdout).unwrap();
    plan["live_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

const MODPROBE: &str = "etc/modprobe.d/50-passthru-vfio.conf";

#[test]
fn the_modprobe_dropin_reaches_an_initramfs_regenerated_without_hostonly() {
    let files = live_files();
    assert_eq!(files.len(), 2, "{files:?}");

    let with = Container::new();
    for (path, content) in &files {
        with.write(path, content);
    }
    let listing = with.regenerated_initramfs_listing();
    assert!(listing.contains(MODPROBE), "{listing}");
    assert!(listing.contains("vfio-pci.ko"), "{listing}");

    // The fact the drop-in rests on: without install_items, dracut leaves /etc/modprobe.d out.
    let without = Container::new();
    for (path, content) in &files {
        let content: String = content
            .lines()
            .filter(|l| !l.starts_with("install_items"))
            .map(|l| format!("{l}\n"))
            .collect();
        without.write(path, &content);
    }
    let listing = without.regenerated_initramfs_listing();
    assert!(!listing.contains(MODPROBE), "{listing}");
    assert!(listing.contains("vfio-pci.ko"), "{listing}");
}
