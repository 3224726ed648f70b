//! Live mode on real ostree sysroots (made with the `ostree` CLI), with the rpm-ostree test double of
//! tests/live/rpm-ostree on PATH. The double applies every change with `ostree admin deploy`, and every
//! assertion about the host reads the sysroot back through libostree (passthru_image::live::deployment).

use std::path::PathBuf;
use std::time::Instant;

use assert_cmd::Command;
use camino::{Utf8Path, Utf8PathBuf};
use passthru_image::live::deployment::{self, DeploymentState};
use serde_json::Value;

const BASE_KARGS: &[&str] = &["root=UUID=6e1d6a1c-3b2a-4f7e-9a0e-1f2d3c4b5a69", "rw"];

const CONFIG: &str = r#"
[cpu]
vendor = "amd"
[vfio]
ids = ["10de:1b80", "10de:10f0"]
[gpu]
vendors = ["nvidia"]
"#;

/// A host in a tempdir: `root/` (with /run/ostree-booted and /etc), an ostree `sysroot/`, a config, and the
/// double's call log.
struct Host {
    _dir: tempfile::TempDir,
    base: Utf8PathBuf,
    root: Utf8PathBuf,
    sysroot: Utf8PathBuf,
    config: Utf8PathBuf,
    log: Utf8PathBuf,
}

fn run(program: &str, args: &[&str]) {
    let out = duct::cmd(program, args)
        .env("OSTREE_SYSROOT_DEBUG", "mutable-deployments")
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .unwrap_or_else(|e| panic!("{program} could not start: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Host {
    /// A sysroot whose only deployment has `BASE_KARGS` plus `kargs`, and `origin_extra` in its origin.
    fn new(kargs: &[&str], origin_extra: &str) -> Host {
        Host::with_initramfs(kargs, origin_extra, b"not an initramfs\n")
    }

    /// As [`Host::new`], with `initramfs` as the deployment's own initramfs.
    fn with_initramfs(kargs: &[&str], origin_extra: &str, initramfs: &[u8]) -> Host {
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("pt-live-")
            .tempdir()
            .unwrap();
        let base = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
        let root = base.join("root");
        let sysroot = base.join("sysroot");
        std::fs::create_dir_all(root.join("run")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        // A host without PCI devices of its own: the plan reads them (nouveau.modeset=0 depends on them).
        std::fs::create_dir_all(root.join("sys/bus/pci/devices")).unwrap();
        std::fs::write(root.join("run/ostree-booted"), "").unwrap();
        std::fs::create_dir_all(&sysroot).unwrap();

        let kver = "6.1.0-pt-live";
        let tree = base.join("tree");
        let modules = tree.join("usr/lib/modules").join(kver);
        std::fs::create_dir_all(&modules).unwrap();
        std::fs::create_dir_all(tree.join("usr/etc")).unwrap();
        // Never booted: the kernel and initramfs only have to exist for ostree to make a BLS entry (and for
        // apply to list the initramfs).
        std::fs::write(modules.join("vmlinuz"), "not a kernel\n").unwrap();
        std::fs::write(modules.join("initramfs.img"), initramfs).unwrap();
        std::fs::write(tree.join("usr/etc/os-release"), "ID=testos\nNAME=TestOS\n").unwrap();

        run(
            "ostree",
            &["admin", "init-fs", "--modern", sysroot.as_str()],
        );
        run(
            "ostree",
            &[
                "admin",
                "os-init",
                &format!("--sysroot={sysroot}"),
                "testos",
            ],
        );
        let repo = format!("--repo={sysroot}/ostree/repo");
        let tree_arg = format!("--tree=dir={tree}");
        run(
            "ostree",
            &[
                &repo,
                "commit",
                "--branch=testos/stable",
                "--bootable",
                &tree_arg,
                "-s",
                "base",
            ],
        );
        let origin = base.join("initial.origin");
        std::fs::write(
            &origin,
            format!("[origin]\nrefspec=testos/stable\n{origin_extra}"),
        )
        .unwrap();
        let mut deploy: Vec<String> = vec![
            "admin".into(),
            "deploy".into(),
            format!("--sysroot={sysroot}"),
            "--os=testos".into(),
            format!("--origin-file={origin}"),
        ];
        deploy.extend(
            BASE_KARGS
                .iter()
                .chain(kargs)
                .map(|k| format!("--karg={k}")),
        );
        deploy.push("testos/stable".into());
        run(
            "ostree",
            &deploy.iter().map(String::as_str).collect::<Vec<_>>(),
        );

        let config = base.join("passthru.toml");
        std::fs::write(&config, CONFIG).unwrap();
        eprintln!("sysroot fixture made in {:?}", started.elapsed());
        Host {
            log: base.join("rpm-ostree.log"),
            _dir: dir,
            base,
            root,
            sysroot,
            config,
        }
    }

    fn tool(&self, args: &[&str]) -> Command {
        let double_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/live");
        let path = std::env::join_paths(
            std::iter::once(double_dir)
                .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
        )
        .unwrap();
        let mut cmd = Command::cargo_bin("passthru-image").unwrap();
        cmd.env("PATH", path)
            .env("PT_RPM_OSTREE_LOG", &self.log)
            .env_remove("PT_RPM_OSTREE_FAIL_AT")
            .env_remove("PT_RPM_OSTREE_BUSY")
            .env_remove("PT_RPM_OSTREE_CONCURRENT_KARGS")
            .env_remove("PT_RPM_OSTREE_CONCURRENT_STATUS_KARGS")
            .args(["--root", self.root.as_str()]);
        // revert undoes what apply recorded and reads no config.
        if args.first() != Some(&"revert") {
            cmd.args(["--config", self.config.as_str()]);
        }
        cmd.args(args);
        cmd
    }

    fn apply(&self, extra: &[&str]) -> Command {
        let mut args = vec!["apply", "--sysroot", self.sysroot.as_str()];
        args.extend(extra);
        self.tool(&args)
    }

    fn revert(&self) -> Command {
        self.tool(&["revert", "--sysroot", self.sysroot.as_str()])
    }

    fn pending(&self) -> DeploymentState {
        deployment::read(&self.sysroot).unwrap().pending
    }

    /// The double's calls so far, each as its argv.
    fn calls(&self) -> Vec<Vec<String>> {
        match std::fs::read_to_string(&self.log) {
            Ok(text) => text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Calls that start a transaction (anything but `status`).
    fn transactions(&self) -> Vec<Vec<String>> {
        self.calls()
            .into_iter()
            .filter(|c| c[0] != "status")
            .collect()
    }

    fn planned_kargs(&self) -> Vec<String> {
        let out = succeeds(&mut self.tool(&["plan", "--json"]));
        let plan: Value = serde_json::from_str(&out).unwrap();
        strings(&plan["kargs"])
    }

    /// Deploys the commit again with `kargs` appended and the first origin: a host that already has them, so
    /// that only the drop-ins differ from the plan.
    fn deploy_with_kargs(&self, kargs: &[String]) {
        let mut args: Vec<String> = vec![
            "admin".into(),
            "deploy".into(),
            format!("--sysroot={}", self.sysroot),
            "--os=testos".into(),
            format!("--origin-file={}", self.base.join("initial.origin")),
        ];
        args.extend(kargs.iter().map(|k| format!("--karg-append={k}")));
        args.push("testos/stable".into());
        run(
            "ostree",
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        );
    }

    /// Runs the double directly, as the user would run rpm-ostree.
    fn rpm_ostree(&self, args: &[&str]) {
        let double = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/live/rpm-ostree");
        let sysroot = format!("--sysroot={}", self.sysroot);
        let mut argv = vec![args[0], &sysroot];
        argv.extend(&args[1..]);
        duct::cmd(double, argv)
            .env("PT_RPM_OSTREE_LOG", self.base.join("user-rpm-ostree.log"))
            .run()
            .unwrap();
    }

    fn etc(&self, path: &str) -> Utf8PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn words(state: &DeploymentState) -> Vec<String> {
    state.kargs.iter().map(|k| k.to_string()).collect()
}

/// Runs `cmd` once, checks that it succeeds and returns its stdout.
fn succeeds(cmd: &mut Command) -> String {
    let assert = cmd.assert().success();
    String::from_utf8_lossy(&assert.get_output().stdout).into_owned()
}

/// Runs `cmd` once, checks its exit code and returns its stderr.
fn fails_with(cmd: &mut Command, code: i32) -> String {
    let assert = cmd.assert().code(code);
    String::from_utf8_lossy(&assert.get_output().stderr).into_owned()
}

const DRACUT: &str = "/etc/dracut.conf.d/50-passthru-vfio.conf";
const MODPROBE: &str = "/etc/modprobe.d/50-passthru-vfio.conf";
const STATE: &str = "/etc/passthru-image/live-state.json";

#[test]
fn first_apply_appends_planned_kargs_writes_dropins_enables_initramfs_and_verifies() {
    let host = Host::new(&[], "");
    let planned = host.planned_kargs();
    assert!(planned.contains(&"iommu=pt".to_owned()), "{planned:?}");
    assert!(
        !planned.contains(&"amd_iommu=on".to_owned()),
        "not an option of the AMD driver"
    );

    let out = succeeds(&mut host.apply(&[]));
    assert!(out.contains("Reboot"));

    let pending = host.pending();
    let mut expected: Vec<String> = BASE_KARGS.iter().map(|s| s.to_string()).collect();
    expected.extend(planned.iter().cloned());
    assert_eq!(words(&pending), expected);
    assert!(pending.regenerate_initramfs);
    let dracut = std::fs::read_to_string(host.etc(DRACUT)).unwrap();
    assert!(
        dracut.contains("force_drivers+=\" vfio vfio_iommu_type1 vfio_pci \""),
        "{dracut}"
    );
    let modprobe = std::fs::read_to_string(host.etc(MODPROBE)).unwrap();
    assert!(
        modprobe.contains("softdep nouveau pre: vfio-pci"),
        "{modprobe}"
    );

    let transactions = host.transactions();
    assert_eq!(transactions.len(), 2, "{transactions:?}");
    let kargs_call = &transactions[0];
    assert_eq!(kargs_call[0], "kargs");
    assert!(kargs_call.contains(&"--unchanged-exit-77".to_owned()));
    for karg in &planned {
        assert!(
            kargs_call.contains(&format!("--append-if-missing={karg}")),
            "{kargs_call:?}"
        );
    }
    assert_eq!(transactions[1][0], "initramfs");
    assert!(transactions[1].contains(&"--enable".to_owned()));
    assert!(host.etc(STATE).exists());
}

#[test]
fn second_apply_runs_no_transaction() {
    let host = Host::new(&[], "");
    host.apply(&[]).assert().success();
    let before = host.pending().id;
    let transactions = host.transactions().len();

    let out = succeeds(&mut host.apply(&[]));
    assert!(out.contains("Nothing to change"));
    assert_eq!(
        host.transactions().len(),
        transactions,
        "{:?}",
        host.calls()
    );
    assert_eq!(host.pending().id, before);
}

#[test]
fn conflicting_karg_is_refused_then_replaced_with_the_flag_and_put_back_by_revert() {
    let host = Host::new(&["iommu=off"], "");
    let before = host.pending();

    let mut refused = host.apply(&[]);
    let err = fails_with(&mut refused, 2);
    assert!(
        err.contains("iommu=off") && err.contains("--replace-conflicts"),
        "{err}"
    );
    assert!(host.transactions().is_empty());
    assert!(!host.etc(DRACUT).exists());
    assert!(!host.etc(STATE).exists());
    assert_eq!(host.pending().id, before.id);

    host.apply(&["--replace-conflicts"]).assert().success();
    let pending = host.pending();
    assert!(!words(&pending).contains(&"iommu=off".to_owned()));
    assert!(words(&pending).contains(&"iommu=pt".to_owned()));
    let kargs_call = &host.transactions()[0];
    assert!(
        kargs_call.contains(&"--delete-if-present=iommu=off".to_owned()),
        "{kargs_call:?}"
    );

    host.revert().assert().success();
    let reverted = host.pending();
    assert_eq!(words(&reverted), words(&before));
    assert!(!reverted.regenerate_initramfs);
}

#[test]
fn initramfs_already_enabled_is_left_alone() {
    let host = Host::new(&[], "\n[rpmostree]\nregenerate-initramfs=true\n");
    assert!(host.pending().regenerate_initramfs);
    host.apply(&[]).assert().success();
    let transactions = host.transactions();
    assert!(
        transactions.iter().all(|c| c[0] != "initramfs"),
        "{transactions:?}"
    );
    assert_eq!(transactions.len(), 1);
    assert!(host.pending().regenerate_initramfs);

    // Revert keeps it on: the user enabled it, not apply.
    host.revert().assert().success();
    assert!(host.pending().regenerate_initramfs);
    assert!(host.transactions().iter().all(|c| c[0] != "initramfs"));
}

#[test]
fn revert_restores_kargs_files_and_initramfs_state() {
    let host = Host::new(&[], "");
    let before = host.pending();
    std::fs::create_dir_all(host.etc("/etc/modprobe.d")).unwrap();
    std::fs::write(host.etc(MODPROBE), "options snd_hda_intel power_save=0\n").unwrap();

    host.apply(&[]).assert().success();
    assert_ne!(
        std::fs::read_to_string(host.etc(MODPROBE)).unwrap(),
        "options snd_hda_intel power_save=0\n"
    );

    let out = succeeds(&mut host.revert());
    assert!(out.contains("Reverted"));
    let after = host.pending();
    assert_eq!(words(&after), words(&before));
    assert!(!after.regenerate_initramfs);
    assert_eq!(
        std::fs::read_to_string(host.etc(MODPROBE)).unwrap(),
        "options snd_hda_intel power_save=0\n"
    );
    assert!(!host.etc(DRACUT).exists());
    assert!(!host.etc(STATE).exists());
    assert!(
        !host
            .etc("/etc/passthru-image/backup/etc/modprobe.d/50-passthru-vfio.conf")
            .exists()
    );

    // Nothing left to undo: a second revert runs nothing.
    let count = host.transactions().len();
    host.revert().assert().success();
    assert_eq!(host.transactions().len(), count);
}

#[test]
fn a_revert_that_died_right_after_restoring_a_file_is_finished_by_the_next() {
    let host = Host::new(&[], "");
    std::fs::create_dir_all(host.etc("/etc/modprobe.d")).unwrap();
    std::fs::write(host.etc(MODPROBE), "options snd_hda_intel power_save=0\n").unwrap();
    host.apply(&[]).assert().success();
    // What the earlier revert did before it died: the user's file back in place, the copy gone, the record
    // not yet saved.
    let backup = host.etc(&format!("/etc/passthru-image/backup{MODPROBE}"));
    std::fs::rename(&backup, host.etc(MODPROBE)).unwrap();

    host.revert().assert().success();
    assert_eq!(
        std::fs::read_to_string(host.etc(MODPROBE)).unwrap(),
        "options snd_hda_intel power_save=0\n"
    );
    assert!(!host.etc(DRACUT).exists());
    assert!(!host.etc(STATE).exists());
}

#[test]
fn a_double_failing_half_way_leaves_a_consistent_record_and_a_rerun_completes() {
    let host = Host::new(&[], "");
    let planned = host.planned_kargs();
    // Calls: 1 status, 2 kargs, 3 initramfs --enable.
    let mut failing = host.apply(&[]);
    failing.env("PT_RPM_OSTREE_FAIL_AT", "3");
    let err = fails_with(&mut failing, 1);
    let (applied, not_applied) = err.split_once("Not applied:").expect(&err);
    assert!(
        applied.contains("Applied") && applied.contains("kargs"),
        "{err}"
    );
    assert!(applied.contains(DRACUT), "{err}");
    assert!(
        not_applied.contains("initramfs") && !not_applied.contains("kargs"),
        "{err}"
    );

    let pending = host.pending();
    assert!(planned.iter().all(|k| words(&pending).contains(k)));
    assert!(!pending.regenerate_initramfs);
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(host.etc(STATE)).unwrap()).unwrap();
    assert_eq!(strings(&record["kargs_appended"]), planned);
    assert_eq!(record["initramfs_enabled"], false);
    assert_eq!(record["files"].as_array().unwrap().len(), 2);

    let calls_before = host.transactions().len();
    host.apply(&[]).assert().success();
    let rerun: Vec<Vec<String>> = host.transactions().split_off(calls_before);
    assert_eq!(rerun.len(), 1, "{rerun:?}");
    assert_eq!(rerun[0][0], "initramfs");
    assert!(host.pending().regenerate_initramfs);
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(host.etc(STATE)).unwrap()).unwrap();
    assert_eq!(record["initramfs_enabled"], true);
}

#[test]
fn dry_run_shows_the_plan_kargs_and_changes_nothing() {
    let host = Host::new(&[], "");
    let planned = host.planned_kargs();
    let out = succeeds(&mut host.apply(&["--dry-run", "--json"]));
    let proposal: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(strings(&proposal["kargs"]), planned);
    assert_eq!(strings(&proposal["append"]), planned);
    let steps = proposal["steps"].as_array().unwrap();
    let kargs_step = steps.iter().find(|s| s["step"] == "kargs").unwrap();
    let command = strings(&kargs_step["command"]);
    for karg in &planned {
        assert!(command.contains(&format!("--append-if-missing={karg}")));
    }

    let text = succeeds(&mut host.apply(&["--dry-run"]));
    for karg in &planned {
        assert!(text.contains(karg), "{text}");
    }
    assert!(
        text.contains(&format!(
            "rpm-ostree initramfs --sysroot={} --enable",
            host.sysroot
        )),
        "{text}"
    );
    assert!(text.contains(DRACUT), "{text}");

    assert!(host.calls().is_empty());
    assert!(!host.etc(DRACUT).exists());
    assert!(!host.pending().regenerate_initramfs);
}

#[test]
fn refuses_while_a_transaction_is_in_progress_or_off_an_ostree_host() {
    let host = Host::new(&[], "");
    let mut busy = host.apply(&[]);
    busy.env("PT_RPM_OSTREE_BUSY", "1");
    assert!(fails_with(&mut busy, 1).contains("transaction is in progress"));
    assert!(host.transactions().is_empty());
    assert!(!host.etc(DRACUT).exists());

    std::fs::remove_file(host.root.join("run/ostree-booted")).unwrap();
    let mut not_ostree = host.apply(&[]);
    assert!(fails_with(&mut not_ostree, 1).contains("ostree-booted"));
}

#[test]
fn a_sysroot_that_is_not_one_is_bad_input() {
    let host = Host::new(&[], "");
    let not_a_sysroot = host.base.join("empty");
    std::fs::create_dir(&not_a_sysroot).unwrap();
    for args in [
        vec!["apply", "--dry-run", "--sysroot", not_a_sysroot.as_str()],
        vec!["apply", "--sysroot", not_a_sysroot.as_str()],
        vec!["revert", "--sysroot", "/nonexistent"],
    ] {
        let err = fails_with(&mut host.tool(&args), 2);
        assert!(
            err.contains("--sysroot") && err.contains("not an ostree sysroot"),
            "{args:?}: {err}"
        );
    }
    assert!(host.transactions().is_empty());
    assert!(!host.etc(DRACUT).exists());
}

#[test]
fn vendor_reset_is_refused_with_a_pointer_to_image_mode() {
    let host = Host::new(&[], "");
    // 1002:67df is a Polaris 10 GPU: vendor-reset turns on by itself.
    std::fs::write(
        &host.config,
        "[cpu]\nvendor = \"amd\"\n[vfio]\nids = [\"1002:67df\", \"1002:aaf0\"]\n[gpu]\nvendors = [\"amd\"]\n",
    )
    .unwrap();
    let mut apply = host.apply(&[]);
    let err = fails_with(&mut apply, 2);
    assert!(
        err.contains("vendor-reset") && err.contains("image mode"),
        "{err}"
    );
    assert!(host.calls().iter().all(|c| c[0] == "status"));
}

#[test]
fn addresses_are_refused_with_a_pointer_to_image_mode() {
    let host = Host::new(&[], "");
    std::fs::write(
        &host.config,
        CONFIG.replace("[gpu]", "addresses = [\"0000:02:00.0\"]\n[gpu]"),
    )
    .unwrap();
    let err = fails_with(&mut host.apply(&[]), 2);
    assert!(
        err.contains("vfio.addresses") && err.contains("image mode"),
        "{err}"
    );
    assert!(host.calls().iter().all(|c| c[0] == "status"));
}

/// What apply carried out is recorded with what it did, for `doctor` without a config; revert drops it.
#[test]
fn apply_records_its_plan_and_revert_drops_it() {
    let host = Host::new(&[], "");
    host.apply(&[]).assert().success();
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(host.etc(STATE)).unwrap()).unwrap();
    assert_eq!(state["plan"]["format"], 1);
    assert_eq!(
        strings(&state["plan"]["plan"]["kargs"]),
        host.planned_kargs()
    );
    host.revert().assert().success();
    assert!(!host.etc(STATE).exists());
}

fn acs_config(host: &Host, source: &str) {
    std::fs::write(
        &host.config,
        format!("{CONFIG}[acs-override]\nenabled = true\n{source}\n"),
    )
    .unwrap();
}

#[test]
fn acs_kernel_from_local_packages_is_an_override_replace_undone_by_revert() {
    let host = Host::new(&[], "");
    let packages = host.base.join("kernel-acs");
    std::fs::create_dir_all(&packages).unwrap();
    let rpm = "kernel-core-6.11.4-301.acs.fc41.x86_64.rpm";
    std::fs::write(packages.join(rpm), "not really an rpm\n").unwrap();
    acs_config(&host, &format!("packages = \"{packages}\""));

    host.apply(&[]).assert().success();
    let replace: Vec<Vec<String>> = host
        .transactions()
        .into_iter()
        .filter(|c| c[0] == "override")
        .collect();
    assert_eq!(replace.len(), 1);
    assert_eq!(replace[0][1], "replace");
    assert!(replace[0].contains(&packages.join(rpm).to_string()));
    let pending = host.pending();
    assert_eq!(pending.replaced_local.len(), 1);
    assert!(pending.replaced_local[0].ends_with(":kernel-core-6.11.4-301.acs.fc41.x86_64"));
    assert!(words(&pending).contains(&"pcie_acs_override=downstream,multifunction".to_owned()));

    let count = host.transactions().len();
    host.apply(&[]).assert().success();
    assert_eq!(
        host.transactions().len(),
        count,
        "the override is already there"
    );

    host.revert().assert().success();
    let reset = host.transactions().pop().unwrap();
    assert_eq!(reset[..2], ["override".to_owned(), "reset".to_owned()]);
    assert!(reset.contains(&"kernel-core".to_owned()));
    assert!(host.pending().replaced_local.is_empty());
}

#[test]
fn acs_kernel_from_a_repo_is_refused_live() {
    let host = Host::new(&[], "");
    acs_config(
        &host,
        "repo = \"https://example.org/fedora-acs-override.repo\"",
    );
    let mut apply = host.apply(&["--dry-run"]);
    let err = fails_with(&mut apply, 2);
    assert!(
        err.contains("acs-override.repo") && err.contains("local packages"),
        "{err}"
    );
}

#[test]
fn sysroot_state_is_read_through_libostree() {
    let host = Host::new(
        &["iommu=off"],
        "\n[rpmostree]\nregenerate-initramfs=true\ninitramfs-args=-I;/etc/foo;\n",
    );
    let state = deployment::read(Utf8Path::new(&host.sysroot)).unwrap();
    assert_eq!(state.pending.osname, "testos");
    assert_eq!(
        words(&state.pending),
        [BASE_KARGS[0], BASE_KARGS[1], "iommu=off"]
    );
    assert!(state.pending.regenerate_initramfs);
    assert_eq!(state.pending.initramfs_args, ["-I", "/etc/foo"]);
    // Nothing booted this sysroot.
    assert!(state.booted.is_none());
}

#[test]
fn kargs_already_added_by_someone_else_exit_77_are_not_recorded_as_ours_and_apply_stops_on_their_deployment()
 {
    let host = Host::new(&[], "");
    let planned = host.planned_kargs();
    // Another client adds every planned karg between our read and our transaction: rpm-ostree exits 77. Its
    // deployment is not the one apply planned the initramfs step on, so apply stops there.
    let mut apply = host.apply(&[]);
    apply.env("PT_RPM_OSTREE_CONCURRENT_KARGS", planned.join(" "));
    let err = fails_with(&mut apply, 1);
    assert!(
        err.contains("the pending deployment changed while apply ran")
            && err.contains("run apply again"),
        "{err}"
    );
    let kargs_calls: Vec<Vec<String>> = host
        .transactions()
        .into_iter()
        .filter(|c| c[0] == "kargs")
        .collect();
    assert_eq!(kargs_calls.len(), 1, "{kargs_calls:?}");
    assert!(kargs_calls[0].contains(&"--unchanged-exit-77".to_owned()));
    assert!(
        host.transactions().iter().all(|c| c[0] != "initramfs"),
        "{:?}",
        host.transactions()
    );
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(host.etc(STATE)).unwrap()).unwrap();
    assert!(strings(&record["kargs_appended"]).is_empty(), "{record}");
    assert_eq!(record["initramfs_enabled"], false);

    // Run again, as the message says: it starts from the other client's deployment.
    host.apply(&[]).assert().success();
    assert!(planned.iter().all(|k| words(&host.pending()).contains(k)));
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(host.etc(STATE)).unwrap()).unwrap();
    assert!(strings(&record["kargs_appended"]).is_empty(), "{record}");
    assert_eq!(record["initramfs_enabled"], true);

    // Revert leaves those kargs alone: they were not apply's.
    host.revert().assert().success();
    assert!(planned.iter().all(|k| words(&host.pending()).contains(k)));
    assert!(
        host.transactions()
            .iter()
            .all(|c| c[0] != "kargs" || c == &kargs_calls[0])
    );
}

#[test]
fn a_deployment_made_between_apply_reading_the_host_and_its_first_change_stops_it_before_any_write()
{
    let host = Host::new(&[], "");
    let before = host.pending();
    // Another client's transaction ends while apply checks that rpm-ostree is idle: after apply read the
    // sysroot, before it wrote anything.
    let mut apply = host.apply(&[]);
    apply.env("PT_RPM_OSTREE_CONCURRENT_STATUS_KARGS", "quiet");
    let err = fails_with(&mut apply, 1);
    assert!(
        err.contains("the pending deployment changed while apply ran")
            && err.contains(&before.id)
            && err.contains("run apply again"),
        "{err}"
    );
    assert!(host.transactions().is_empty(), "{:?}", host.transactions());
    assert!(!host.etc(DRACUT).exists() && !host.etc(MODPROBE).exists());
    assert!(!host.etc(STATE).exists());
    let raced = host.pending();
    assert_ne!(raced.id, before.id);
    assert!(words(&raced).contains(&"quiet".to_owned()));

    host.apply(&[]).assert().success();
    let pending = host.pending();
    assert!(words(&pending).contains(&"quiet".to_owned()));
    assert!(
        host.planned_kargs()
            .iter()
            .all(|k| words(&pending).contains(k))
    );
}

const REGENERATE_WITH_ARGS: &str =
    "\n[rpmostree]\nregenerate-initramfs=true\ninitramfs-args=-I;/etc/foo;\n";

#[test]
fn changed_dropins_alone_rerun_initramfs_enable_with_the_origins_own_args() {
    let host = Host::new(&[], REGENERATE_WITH_ARGS);
    let planned = host.planned_kargs();
    host.deploy_with_kargs(&planned);
    // The user's older version of the drop-in: apply changes it, and nothing else.
    std::fs::create_dir_all(host.etc("/etc/dracut.conf.d")).unwrap();
    std::fs::write(host.etc(DRACUT), "force_drivers+=\" vfio \"\n").unwrap();
    let before = host.pending();
    assert!(planned.iter().all(|k| words(&before).contains(k)));

    let out = succeeds(&mut host.apply(&[]));
    assert!(
        out.contains("Reboot") && !out.contains("NOT COMPLETE"),
        "{out}"
    );

    let transactions = host.transactions();
    assert_eq!(
        transactions,
        [[
            "initramfs".to_owned(),
            format!("--sysroot={}", host.sysroot),
            "--enable".into(),
            "--arg=-I".into(),
            "--arg=/etc/foo".into(),
        ]]
    );
    let after = host.pending();
    assert_ne!(after.id, before.id, "the rerun makes a new deployment");
    assert!(after.regenerate_initramfs);
    assert_eq!(after.initramfs_args, before.initramfs_args);
    assert_eq!(words(&after), words(&before));
    assert!(
        std::fs::read_to_string(host.etc(DRACUT))
            .unwrap()
            .contains("vfio_pci")
    );

    // The rebuild changed no setting, so there is nothing initramfs-related to undo.
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(host.etc(STATE)).unwrap()).unwrap();
    assert_eq!(record["initramfs_enabled"], false);
    assert!(strings(&record["kargs_appended"]).is_empty(), "{record}");
    assert!(record["initramfs_stale_in"].is_null(), "{record}");

    let count = host.transactions().len();
    host.apply(&[]).assert().success();
    assert_eq!(host.transactions().len(), count, "{:?}", host.calls());

    // Revert puts the user's drop-in back and rebuilds the same way, so the initramfs loses apply's.
    let applied = host.pending();
    host.revert().assert().success();
    let rebuild = host.transactions().split_off(count);
    assert_eq!(rebuild, transactions, "the same rerun, args unchanged");
    let reverted = host.pending();
    assert_ne!(reverted.id, applied.id);
    assert_eq!(reverted.initramfs_args, before.initramfs_args);
    assert_eq!(
        std::fs::read_to_string(host.etc(DRACUT)).unwrap(),
        "force_drivers+=\" vfio \"\n"
    );
    assert!(!host.etc(STATE).exists());
}

#[test]
fn changed_dropins_alone_without_origin_args_are_reported_not_complete() {
    let host = Host::new(&[], "\n[rpmostree]\nregenerate-initramfs=true\n");
    let planned = host.planned_kargs();
    host.deploy_with_kargs(&planned);
    let before = host.pending();

    let dry = succeeds(&mut host.apply(&["--dry-run"]));
    assert!(dry.contains("NOT COMPLETE"), "{dry}");

    // The files are written and verified, but the job is not done: exit 3, the reason on stderr.
    let out = host.apply(&[]).assert().code(3).get_output().clone();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stderr.contains("NOT COMPLETE") && stderr.contains("rpm-ostree initramfs --disable"),
        "{stderr}"
    );
    assert!(stdout.contains(&format!("write {DRACUT}")), "{stdout}");
    assert!(!stdout.contains("Reboot to use it"), "{stdout}");
    assert!(host.transactions().is_empty(), "{:?}", host.calls());
    assert!(host.etc(DRACUT).exists() && host.etc(MODPROBE).exists());
    let after = host.pending();
    assert_eq!(after.id, before.id);
    assert!(after.regenerate_initramfs && after.initramfs_args.is_empty());

    // The files are in place now, but the initramfs still lacks them: say so again, run nothing.
    let again = host.apply(&[]).assert().code(3).get_output().stderr.clone();
    let again = String::from_utf8_lossy(&again);
    assert!(again.contains("NOT COMPLETE"), "{again}");
    assert!(host.transactions().is_empty(), "{:?}", host.calls());

    // The user follows the advice: the newer deployment has a regenerated initramfs.
    host.rpm_ostree(&["initramfs", "--disable"]);
    host.rpm_ostree(&["initramfs", "--enable"]);
    let done = succeeds(&mut host.apply(&[]));
    assert!(
        done.contains("Nothing to change") && !done.contains("NOT COMPLETE"),
        "{done}"
    );

    // Revert removes the drop-ins and, for the same reason, cannot get them out of the initramfs.
    let reverted = host.revert().assert().code(3).get_output().clone();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&reverted.stdout),
        String::from_utf8_lossy(&reverted.stderr),
    );
    assert!(stdout.contains(&format!("remove {DRACUT}")), "{stdout}");
    assert!(stderr.contains("NOT COMPLETE"), "{stderr}");
    assert!(host.transactions().is_empty(), "{:?}", host.calls());
    assert!(!host.etc(DRACUT).exists() && !host.etc(MODPROBE).exists());
}

#[test]
fn a_failed_initramfs_rerun_is_run_again_by_the_next_apply() {
    let host = Host::new(&[], REGENERATE_WITH_ARGS);
    let planned = host.planned_kargs();
    host.deploy_with_kargs(&planned);
    let before = host.pending();
    // Calls: 1 status, 2 initramfs --enable --arg=... (fails, after the drop-ins are written).
    let mut failing = host.apply(&[]);
    failing.env("PT_RPM_OSTREE_FAIL_AT", "2");
    let err = fails_with(&mut failing, 1);
    let (_, not_applied) = err.split_once("Not applied:").expect(&err);
    assert!(not_applied.contains("initramfs"), "{err}");
    assert!(host.etc(DRACUT).exists());
    assert_eq!(host.pending().id, before.id);
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(host.etc(STATE)).unwrap()).unwrap();
    assert_eq!(record["initramfs_stale_in"], before.id.as_str(), "{record}");

    // The drop-ins already match the plan; the record says the initramfs does not have them yet.
    let count = host.transactions().len();
    host.apply(&[]).assert().success();
    let rerun = host.transactions().split_off(count);
    assert_eq!(rerun.len(), 1, "{rerun:?}");
    assert_eq!(
        rerun[0][..3],
        [
            "initramfs".to_owned(),
            format!("--sysroot={}", host.sysroot),
            "--enable".into()
        ]
    );
    assert_ne!(host.pending().id, before.id);
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(host.etc(STATE)).unwrap()).unwrap();
    assert!(record["initramfs_stale_in"].is_null(), "{record}");
}

#[test]
fn revert_failing_half_way_records_what_was_undone_and_a_second_revert_finishes() {
    let host = Host::new(&[], "");
    let before = host.pending();
    let planned = host.planned_kargs();
    // Renamed packages: apply removes the base kernel and installs these; revert undoes both in one call.
    let packages = host.base.join("kernel-acs");
    std::fs::create_dir_all(&packages).unwrap();
    let rpm = "kernel-acs-core-6.11.4-301.fc41.x86_64.rpm";
    std::fs::write(packages.join(rpm), "not really an rpm\n").unwrap();
    acs_config(&host, &format!("packages = \"{packages}\""));
    host.apply(&[]).assert().success();
    let applied = host.pending();
    assert_eq!(applied.requested_local.len(), 1);
    assert!(applied.removed.contains(&"kernel-core".to_owned()));

    // Revert's calls: 1 status, 2 kargs, 3 initramfs --disable, 4 override reset --uninstall (fails).
    let mut failing = host.revert();
    failing.env(
        "PT_RPM_OSTREE_FAIL_AT",
        (host.calls().len() + 4).to_string(),
    );
    let err = fails_with(&mut failing, 1);
    assert!(
        err.contains("half-way") && err.contains("rpm-ostree initramfs"),
        "{err}"
    );

    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(host.etc(STATE)).unwrap()).unwrap();
    assert!(record["files"].as_array().unwrap().is_empty(), "{record}");
    assert!(strings(&record["kargs_appended"]).is_empty(), "{record}");
    assert_eq!(record["initramfs_enabled"], false, "{record}");
    assert_eq!(strings(&record["kernel"]["install"]).len(), 1, "{record}");
    assert!(
        strings(&record["kernel"]["remove"]).contains(&"kernel-core".to_owned()),
        "{record}"
    );
    // The failed call changed nothing: the ACS kernel is still the only kernel, none is missing.
    let half = host.pending();
    assert!(planned.iter().all(|k| !words(&half).contains(k)));
    assert!(!half.regenerate_initramfs);
    assert_eq!(half.requested_local, applied.requested_local);
    assert_eq!(half.removed, applied.removed);
    assert!(!host.etc(DRACUT).exists() && !host.etc(MODPROBE).exists());

    // The double refuses to reset or uninstall what is not there: a redone step would fail this run.
    let count = host.transactions().len();
    host.revert().assert().success();
    let rest: Vec<Vec<String>> = host.transactions().split_off(count);
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0][..2], ["override".to_owned(), "reset".to_owned()]);
    assert!(rest[0].contains(&"kernel-core".to_owned()), "{rest:?}");
    assert!(
        rest[0].contains(&"--uninstall=kernel-acs-core".to_owned()),
        "{rest:?}"
    );
    let after = host.pending();
    assert!(after.removed.is_empty() && after.requested_local.is_empty());
    assert_eq!(words(&after), words(&before));
    assert!(!host.etc(STATE).exists());
}

/// A gzip-compressed newc cpio, as dracut writes an initramfs, holding the VFIO modules of KVER.
fn initramfs_with_vfio() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let vfio = dir
        .path()
        .join("usr/lib/modules/6.1.0-pt-live/kernel/drivers/vfio");
    std::fs::create_dir_all(vfio.join("pci")).unwrap();
    for module in ["vfio.ko.xz", "vfio_iommu_type1.ko.xz", "pci/vfio-pci.ko.xz"] {
        std::fs::write(vfio.join(module), "module").unwrap();
    }
    duct::cmd!("find", ".")
        .pipe(duct::cmd!("cpio", "--quiet", "-o", "-H", "newc"))
        .pipe(duct::cmd!("gzip", "-n"))
        .dir(dir.path())
        .stdout_capture()
        .run()
        .unwrap()
        .stdout
}

/// Bazzite's initramfs holds vfio-pci: with `rd.driver.pre=vfio-pci` planned, apply turns no client-side
/// regeneration on (which would make `bootc upgrade` refuse the host), and says so.
#[test]
fn a_deployed_initramfs_with_the_vfio_drivers_is_not_regenerated() {
    let host = Host::with_initramfs(&[], "", &initramfs_with_vfio());
    let out = succeeds(&mut host.apply(&[]));
    assert!(out.contains("already holds the VFIO drivers"), "{out}");
    assert!(
        !host.transactions().iter().any(|c| c[0] == "initramfs"),
        "{:?}",
        host.transactions()
    );
    let pending = host.pending();
    assert!(!pending.regenerate_initramfs);
    assert!(words(&pending).contains(&"rd.driver.pre=vfio-pci".to_owned()));
    // The drop-ins are still written, for modprobe after the switch to the real root and for any later
    // regeneration.
    assert!(host.etc(DRACUT).is_file());
}

/// rpm-ostree refuses to regenerate an initramfs while `initramfs-etc` tracks files: apply stops before it
/// writes or runs anything, and says what to do.
#[test]
fn a_deployment_using_initramfs_etc_is_refused_before_any_change() {
    let host = Host::new(&[], "[rpmostree]\ninitramfs-etc=/etc/crypttab;\n");
    let err = fails_with(&mut host.apply(&[]), 1);
    assert!(err.contains("initramfs-etc"), "{err}");
    assert!(err.contains("--untrack-all"), "{err}");
    assert!(host.transactions().is_empty(), "{:?}", host.transactions());
    assert!(!host.etc(DRACUT).exists() && !host.etc(MODPROBE).exists());
    assert!(!host.etc(STATE).exists());
}

/// rpm-ostree regenerates with --no-hostonly, where dracut copies /etc/modprobe.d only when named: the
/// dracut drop-in apply writes names the modprobe drop-in in install_items.
#[test]
fn the_live_dracut_dropin_carries_the_modprobe_dropin_into_the_initramfs() {
    let host = Host::new(&[], "");
    let assert = host.apply(&[]).assert().success();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    let dracut = std::fs::read_to_string(host.etc(DRACUT)).unwrap();
    assert!(
        dracut.contains(&format!("install_items+=\" {MODPROBE} \"")),
        "{dracut}"
    );
    assert!(host.etc(MODPROBE).is_file());
    // Regeneration was turned on, and the user is told what that costs on a bootc host.
    assert!(host.pending().regenerate_initramfs);
    assert!(stderr.contains("`bootc upgrade` refuses"), "{stderr}");
}
