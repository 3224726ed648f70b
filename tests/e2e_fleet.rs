//! A fleet end to end: `build --hosts DIR` builds three hosts on the offline test base, and the tests show with
//! podman's own output and image metadata that the host-agnostic stack was built once and shared: the later
//! hosts take every stack step from the cache, and all three images have the same stack layers.

mod common;

use std::path::Path;

use common::{
    MountedImage, RemoveImages, bin, build_steps, image_exists, image_label, stdout_of, test_base,
};
use serde_json::Value;

const AMD_NVIDIA: &str = "[cpu]\nvendor = \"amd\"\n\n[gpu]\nvendors = [\"nvidia\"]\n\n";

/// Writes `hosts/NAME.toml` on the test base for each (name, body).
fn write_hosts(dir: &Path, repository: &str, hosts: &[(&str, &str)]) -> std::path::PathBuf {
    let hosts_dir = dir.join("hosts");
    std::fs::create_dir_all(&hosts_dir).unwrap();
    for (name, body) in hosts {
        let text = format!(
            "[image]\nbase = \"{}\"\ntag = \"{repository}:latest\"\n\n{body}",
            test_base()
        );
        std::fs::write(hosts_dir.join(format!("{name}.toml")), text).unwrap();
    }
    hosts_dir
}

fn with_ids(ids: &str) -> String {
    format!("{AMD_NVIDIA}[vfio]\nids = [{ids}]\n")
}

fn plan_json(hosts: &Path) -> Value {
    let stdout = stdout_of(
        bin()
            .arg("plan")
            .arg("--hosts")
            .arg(hosts)
            .arg("--json")
            .output()
            .unwrap(),
    );
    serde_json::from_str(&stdout).unwrap()
}

/// `build --hosts HOSTS` with the options every test build needs here (chroot isolation, no registry).
fn build_hosts(hosts: &Path) -> std::process::Output {
    bin()
        .args([
            "build",
            "--isolation",
            "chroot",
            "--pull",
            "never",
            "--hosts",
        ])
        .arg(hosts)
        .output()
        .unwrap()
}

fn layers(image: &str) -> Vec<String> {
    let out = std::process::Command::new("podman")
        .args([
            "image",
            "inspect",
            "--format",
            "{{json .RootFS.Layers}}",
            image,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "podman image inspect {image}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The engine output of each image a fleet build made, split at the tool's `Building IMAGE [i/n]` lines.
fn per_image_output(stderr: &str) -> Vec<(String, String)> {
    let mut parts: Vec<(String, String)> = Vec::new();
    for line in stderr.lines() {
        if let Some(rest) = line.strip_prefix("Building ") {
            let image = rest.split_whitespace().next().unwrap().to_owned();
            parts.push((image, String::new()));
        } else if let Some((_, text)) = parts.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    parts
}

#[test]
fn three_hosts_build_one_shared_stack_and_differ_only_in_their_host_layers() {
    let dir = tempfile::tempdir().unwrap();
    let repository = "localhost/passthru-e2e-fleet";
    let names = ["desk", "htpc", "lab"];
    let tags: Vec<String> = names.iter().map(|n| format!("{repository}:{n}")).collect();
    let _cleanup = RemoveImages::new(&tags);
    let hosts = write_hosts(
        dir.path(),
        repository,
        &[
            ("desk", &with_ids("\"10de:2684\", \"10de:22ba\"")),
            ("htpc", &with_ids("\"10de:1401\", \"10de:0fba\"")),
            ("lab", &with_ids("\"10de:1b80\"")),
        ],
    );

    let plan = plan_json(&hosts);
    let stacks = plan["stacks"].as_array().unwrap();
    assert_eq!(stacks.len(), 1, "{plan:#}");
    assert_eq!(stacks[0]["hosts"], serde_json::json!(names));

    let out = build_hosts(&hosts);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("Built 3 images on 1 stack:\n"),
        "{stdout}"
    );
    for tag in &tags {
        assert!(
            stdout.contains(&format!("sudo bootc switch {tag} ")),
            "{stdout}"
        );
    }

    // The stack is built (or found) for the first host; the others take all of it from the cache.
    let parts = per_image_output(&stderr);
    let built: Vec<&str> = parts.iter().map(|(image, _)| image.as_str()).collect();
    assert_eq!(built, tags, "{stderr}");
    for (image, output) in &parts[1..] {
        let steps = build_steps(output);
        let stack: Vec<_> = steps
            .iter()
            .take_while(|s| !s.line.contains("COPY layers/host/"))
            .filter(|s| !s.line.contains(": FROM "))
            .collect();
        assert!(stack.len() >= 3, "{image}: {steps:?}");
        let rebuilt: Vec<&str> = stack
            .iter()
            .filter(|s| !s.cached)
            .map(|s| s.line.as_str())
            .collect();
        assert!(
            rebuilt.is_empty(),
            "{image} rebuilt stack steps {rebuilt:?}"
        );
        assert!(
            !output.contains("dracut:"),
            "{image} regenerated the initramfs"
        );
    }

    // The images share every stack layer: only the layers from the host layer on differ.
    let all: Vec<Vec<String>> = tags.iter().map(|t| layers(t)).collect();
    let shared = all[0]
        .iter()
        .zip(&all[1])
        .zip(&all[2])
        .take_while(|((a, b), c)| a == b && b == c)
        .count();
    let base_layers = layers(test_base()).len();
    for image in &all {
        assert!(
            image.len() - shared <= 2,
            "more than the host layers differ: shared {shared} of {}",
            image.len()
        );
    }
    assert!(
        shared > base_layers,
        "the initramfs layer is not shared: {shared} shared, base has {base_layers}"
    );

    // Each host has its own device IDs, its own config hash (the one `plan --hosts` shows) and the base's digest.
    // skopeo reads the manifest local storage holds for the base, as buildah does when the tool asks it.
    let base_digest = std::process::Command::new("skopeo")
        .args(["inspect", "--format", "{{.Digest}}"])
        .arg(format!("containers-storage:{}", test_base()))
        .output()
        .unwrap();
    let base_digest = String::from_utf8(base_digest.stdout).unwrap();
    for (i, tag) in tags.iter().enumerate() {
        let image = MountedImage::new(tag);
        let kargs_d =
            std::fs::read_to_string(image.path("/usr/lib/bootc/kargs.d/50-passthru.toml")).unwrap();
        let ids = plan["hosts"][i]["plan"]["kargs"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|k| k.as_str().filter(|k| k.starts_with("vfio_pci.ids=")))
            .unwrap()
            .to_owned();
        assert!(kargs_d.contains(&format!("\"{ids}\"")), "{tag}: {kargs_d}");
        assert_eq!(
            image_label(tag, "passthru-image.config.sha256").as_deref(),
            plan["hosts"][i]["config_sha256"].as_str(),
            "{tag}"
        );
        assert_eq!(
            image_label(tag, "org.opencontainers.image.base.digest").as_deref(),
            Some(base_digest.trim()),
            "{tag}"
        );
    }
}

#[test]
fn plan_hosts_groups_hosts_by_stack() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = write_hosts(
        dir.path(),
        "ghcr.io/me/vfio",
        &[
            ("desk", &with_ids("\"10de:2684\"")),
            ("htpc", &with_ids("\"10de:1401\"")),
            (
                "lab",
                &with_ids("\"1002:73bf\"").replace("\"nvidia\"", "\"amd\""),
            ),
        ],
    );
    let plan = plan_json(&hosts);
    let grouping: Vec<Value> = plan["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["hosts"].clone())
        .collect();
    assert_eq!(
        grouping,
        [
            serde_json::json!(["desk", "htpc"]),
            serde_json::json!(["lab"])
        ]
    );
    let tags: Vec<&str> = plan["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["plan"]["image"]["tag"].as_str().unwrap())
        .collect();
    assert_eq!(
        tags,
        [
            "ghcr.io/me/vfio:desk",
            "ghcr.io/me/vfio:htpc",
            "ghcr.io/me/vfio:lab"
        ]
    );
    assert_eq!(plan["hosts"][0]["stack"], plan["stacks"][0]["key"]);

    let out = bin()
        .arg("plan")
        .arg("--hosts")
        .arg(&hosts)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    let key = plan["stacks"][1]["key"].as_str().unwrap();
    assert!(text.contains("3 hosts on 2 stacks"), "{text}");
    assert!(text.contains(&format!("Stack {}: ", &key[..12])), "{text}");
    assert!(text.contains("  lab -> ghcr.io/me/vfio:lab\n"), "{text}");
}

#[test]
fn a_bad_host_file_fails_the_fleet_before_any_build_naming_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let repository = "localhost/passthru-e2e-fleet-bad";
    let hosts = write_hosts(
        dir.path(),
        repository,
        &[
            ("good", &with_ids("\"10de:2684\"")),
            (
                "typo",
                &with_ids("\"10de:2684\"").replace("[vfio]", "[vfoi]"),
            ),
        ],
    );
    let out = build_hosts(&hosts);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let named = format!("{}: vfoi", hosts.join("typo.toml").display());
    assert!(stderr.contains(&named), "{stderr}");
    assert!(!stderr.contains("Building "), "{stderr}");
    assert!(
        !image_exists(&format!("{repository}:good")),
        "the good host was built"
    );

    // Flags that would give every host the same tag or device IDs, or replace the host files, are refused.
    std::fs::remove_file(hosts.join("typo.toml")).unwrap();
    for (args, named) in [
        (&["--tag", "localhost/x:1"][..], "--tag"),
        (&["--vfio-ids", "10de:1401"][..], "--vfio-ids"),
        (&["--context", "ctx"][..], "--context"),
    ] {
        let out = bin()
            .args(["build", "--pull", "never", "--hosts"])
            .arg(&hosts)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
    let out = bin()
        .arg("--config")
        .arg(hosts.join("good.toml"))
        .arg("plan")
        .arg("--hosts")
        .arg(&hosts)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
}
