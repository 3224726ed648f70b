//! `groups`, `detect` and `doctor` run as the user runs them, with `--root` on the host fixture trees
//! (tests/fixtures/<name>/, see tests/fixtures/README.md).

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The binary with `--root` on a fixture, run in an empty directory so no ./passthru.toml is picked up.
fn cli(host: &str, cwd: &Path) -> Command {
    let mut cmd = Command::cargo_bin("passthru-image").unwrap();
    cmd.current_dir(cwd).arg("--root").arg(fixture(host));
    cmd
}

fn json_of(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn groups(host: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let output = cli(host, dir.path())
        .args(["groups", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    json_of(&output)
}

/// The entry of `report[list]` whose `key` is `value`.
fn entry<'a>(report: &'a Value, list: &str, key: &str, value: &str) -> &'a Value {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e[key] == value)
        .unwrap_or_else(|| panic!("no {list} entry with {key} {value} in {report:#}"))
}

fn gpu<'a>(report: &'a Value, address: &str) -> &'a Value {
    entry(report, "gpus", "address", address)
}

fn gpu_addresses(report: &Value) -> Vec<&str> {
    report["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["address"].as_str().unwrap())
        .collect()
}

/// (group, isolation, companions, vendor_reset) of one GPU.
fn verdict(report: &Value, address: &str) -> (Value, String, Vec<String>, bool) {
    let g = gpu(report, address);
    (
        g["group"].clone(),
        g["isolation"].as_str().unwrap().to_owned(),
        g["companions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect(),
        g["vendor_reset"].as_bool().unwrap(),
    )
}

#[test]
fn groups_intel_nvidia_gpu_is_isolated_with_its_audio() {
    let report = groups("intel-nvidia");
    assert_eq!(report["iommu_enabled"], true);
    assert_eq!(gpu_addresses(&report), ["0000:00:02.0", "0000:01:00.0"]);
    assert_eq!(
        verdict(&report, "0000:01:00.0"),
        (
            1.into(),
            "isolated".into(),
            vec!["0000:01:00.1".into()],
            false
        )
    );
    let nvidia = gpu(&report, "0000:01:00.0");
    assert_eq!(nvidia["vendor_id"], "10de");
    assert_eq!(nvidia["device_id"], "1401");
    assert_eq!(nvidia["boot_vga"], false);
    assert_eq!(gpu(&report, "0000:00:02.0")["boot_vga"], true);
    // The group's devices carry the contract's fields.
    let group1 = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == 1)
        .unwrap();
    let devices: Vec<(&str, &str, &str, &str, &Value)> = group1["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["address"].as_str().unwrap(),
                d["vendor_id"].as_str().unwrap(),
                d["device_id"].as_str().unwrap(),
                d["class"].as_str().unwrap(),
                &d["driver"],
            )
        })
        .collect();
    assert_eq!(
        devices,
        [
            (
                "0000:00:01.0",
                "8086",
                "1901",
                "0604",
                &Value::from("pcieport")
            ),
            (
                "0000:01:00.0",
                "10de",
                "1401",
                "0300",
                &Value::from("nvidia")
            ),
            (
                "0000:01:00.1",
                "10de",
                "0fba",
                "0403",
                &Value::from("snd_hda_intel")
            ),
        ]
    );
}

#[test]
fn groups_amd_two_gpus_are_each_isolated() {
    let report = groups("amd-two-gpus");
    assert_eq!(
        verdict(&report, "0000:0a:00.0"),
        (
            15.into(),
            "isolated".into(),
            vec!["0000:0a:00.1".into()],
            false
        )
    );
    assert_eq!(
        verdict(&report, "0000:0b:00.0"),
        (
            16.into(),
            "isolated".into(),
            vec!["0000:0b:00.1".into()],
            false
        )
    );
}

#[test]
fn groups_polaris_needs_vendor_reset() {
    let report = groups("amd-polaris");
    assert_eq!(
        verdict(&report, "0000:09:00.0"),
        (
            13.into(),
            "isolated".into(),
            vec!["0000:09:00.1".into()],
            true
        )
    );
    assert_eq!(gpu(&report, "0000:08:00.0")["vendor_reset"], false);
}

#[test]
fn groups_gpu_in_the_chipset_group_is_shared() {
    let report = groups("intel-shared-group");
    assert_eq!(
        verdict(&report, "0000:04:00.0"),
        (
            7.into(),
            "shared".into(),
            vec!["0000:04:00.1".into()],
            false
        )
    );
    // The network card makes it shared; the PCH root ports (bridges) do not.
    assert_eq!(
        gpu(&report, "0000:04:00.0")["sharing_with"],
        serde_json::json!(["0000:03:00.0"])
    );
    assert_eq!(
        verdict(&report, "0000:00:02.0").1,
        "isolated",
        "the iGPU has a group of its own"
    );
}

#[test]
fn groups_identical_twins_are_two_isolated_gpus() {
    let report = groups("identical-twins");
    assert_eq!(
        verdict(&report, "0000:01:00.0"),
        (
            1.into(),
            "isolated".into(),
            vec!["0000:01:00.1".into()],
            false
        )
    );
    assert_eq!(
        verdict(&report, "0000:02:00.0"),
        (
            2.into(),
            "isolated".into(),
            vec!["0000:02:00.1".into()],
            false
        )
    );
}

#[test]
fn groups_laptop_3d_controller_counts_as_gpu_and_its_root_port_does_not_share() {
    let report = groups("laptop-3d");
    assert_eq!(
        verdict(&report, "0000:01:00.0"),
        (2.into(), "isolated".into(), vec![], false)
    );
    assert_eq!(gpu(&report, "0000:01:00.0")["class"], "0302");
}

#[test]
fn groups_with_the_iommu_off_says_what_to_enable() {
    let report = groups("iommu-off");
    assert_eq!(report["iommu_enabled"], false);
    assert_eq!(report["groups"], serde_json::json!([]));
    assert_eq!(
        verdict(&report, "0000:01:00.0"),
        (
            Value::Null,
            "unknown".into(),
            vec!["0000:01:00.1".into()],
            false
        )
    );

    let dir = tempfile::tempdir().unwrap();
    let output = cli("iommu-off", dir.path()).arg("groups").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("The IOMMU is off"), "{text}");
    assert!(text.contains("VT-d"), "{text}");
    assert!(text.contains("intel_iommu=on iommu=pt"), "{text}");
}

#[test]
fn groups_prints_ls_iommu_lines_and_filters_gpu_groups() {
    let dir = tempfile::tempdir().unwrap();
    let output = cli("intel-nvidia", dir.path())
        .args(["groups", "--gpus"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.lines().any(|l| l
            == "IOMMU Group  1: 0000:01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GM206 [GeForce GTX 960] [10de:1401] (driver: nvidia)"),
        "{text}"
    );
    // --gpus keeps groups 1 and 2 (the GPUs'), not the USB controller's.
    assert!(!text.contains("0000:00:14.0"), "{text}");
    assert!(text.contains("IOMMU Group  2: 0000:00:02.0"), "{text}");

    let json = groups("intel-nvidia");
    let all: Vec<&Value> = json["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| &g["id"])
        .collect();
    assert_eq!(all.len(), 6);
    let output = cli("intel-nvidia", dir.path())
        .args(["groups", "--json", "--gpus"])
        .output()
        .unwrap();
    let ids: Vec<u64> = json_of(&output)["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2]);
}

/// detect's proposal for a fixture, written with --write, and its stderr.
fn detect(host: &str, dir: &Path) -> (PathBuf, String, String) {
    let path = dir.join(format!("{host}.toml"));
    let output = cli(host, dir)
        .args(["detect", "--write"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text, String::from_utf8(output.stderr).unwrap())
}

fn plan_json(host: &str, config: &Path, dir: &Path) -> Value {
    let output = cli(host, dir)
        .arg("--config")
        .arg(config)
        .args(["plan", "--json"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "plan refused detect's output: {output:?}"
    );
    json_of(&output)
}

fn planned_kargs(plan: &Value) -> Vec<&str> {
    plan["kargs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect()
}

#[test]
fn detect_output_goes_through_plan_for_every_fixture() {
    let dir = tempfile::tempdir().unwrap();
    for host in [
        "intel-nvidia",
        "amd-two-gpus",
        "amd-polaris",
        "intel-shared-group",
        "identical-twins",
        "laptop-3d",
        "iommu-off",
        "qemu-q35-intel-iommu",
        "qemu-q35-amd-iommu",
    ] {
        let (config, _, _) = detect(host, dir.path());
        let plan = plan_json(host, &config, dir.path());
        assert!(!planned_kargs(&plan).is_empty(), "{host}");
    }
}

#[test]
fn detect_passes_the_gpu_that_is_not_the_boot_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let (config, text, _) = detect("amd-two-gpus", dir.path());
    assert!(text.contains("GPU to pass: 0000:0b:00.0"), "{text}");
    let plan = plan_json("amd-two-gpus", &config, dir.path());
    assert_eq!(
        planned_kargs(&plan),
        [
            "iommu=pt",
            "kvm_amd.npt=1",
            "kvm_amd.avic=1",
            "kvm_amd.nested=1",
            "kvm_amd.sev=1",
            // Planned for this host: it keeps its RX 6800 XT on amdgpu, no GPU on nouveau.
            "nouveau.modeset=0",
            "rd.driver.pre=vfio-pci",
            "vfio_pci.ids=10de:2684,10de:22ba",
        ]
    );
    assert_eq!(plan["modules"], serde_json::json!([]));
}

#[test]
fn detect_plans_vendor_reset_for_polaris() {
    let dir = tempfile::tempdir().unwrap();
    let (config, text, _) = detect("amd-polaris", dir.path());
    assert!(text.contains("Polaris 10"), "{text}");
    let plan = plan_json("amd-polaris", &config, dir.path());
    assert!(planned_kargs(&plan).contains(&"vfio_pci.ids=1002:67df,1002:aaf0"));
    // Upstream at its pinned commit: `plan` does not fetch it, so it names the commit.
    let module = &plan["modules"][0];
    assert_eq!(module["source"]["kind"], "git");
    assert!(
        module["from"]
            .as_str()
            .unwrap()
            .starts_with("dkms.conf at "),
        "{module}"
    );
}

#[test]
fn detect_suggests_acs_override_for_a_shared_group() {
    let dir = tempfile::tempdir().unwrap();
    let (config, text, stderr) = detect("intel-shared-group", dir.path());
    assert!(
        stderr.contains("shares IOMMU group 7 with 0000:03:00.0"),
        "{stderr}"
    );
    assert!(stderr.contains("acs-override"), "{stderr}");
    assert!(
        text.contains("# WARNING: 0000:04:00.0 shares IOMMU group 7"),
        "{text}"
    );
    let plan = plan_json("intel-shared-group", &config, dir.path());
    assert!(planned_kargs(&plan).contains(&"vfio_pci.ids=10de:128b,10de:0e0f"));
}

/// Two identical GTX 1080s: `vfio_pci.ids` would take the host's card too, so the guest's functions are bound
/// by address, which plan turns into its own argument and doctor checks per address (never the host's twin).
#[test]
fn detect_binds_identical_twins_by_address() {
    let dir = tempfile::tempdir().unwrap();
    let (config, text, stderr) = detect("identical-twins", dir.path());
    assert!(text.contains("GPU to pass: 0000:02:00.0"), "{text}");
    assert!(
        text.contains("addresses = [\"0000:02:00.0\", \"0000:02:00.1\"]"),
        "{text}"
    );
    assert!(text.contains("\nids = []\n"), "{text}");
    assert!(
        text.contains("0000:02:00.0 bound by address: the host keeps 0000:01:00.0 with the same ID [10de:1b80]"),
        "{text}"
    );
    assert!(
        text.contains("# vfio.addresses: bound with driver_override"),
        "{text}"
    );
    assert!(!stderr.contains("identical IDs"), "{stderr}");
    let plan = plan_json("identical-twins", &config, dir.path());
    let kargs = planned_kargs(&plan);
    assert!(
        kargs.contains(&"rd.passthru.vfio_addresses=0000:02:00.0,0000:02:00.1"),
        "{kargs:?}"
    );
    assert!(
        !kargs.iter().any(|k| k.starts_with("vfio_pci.ids")),
        "{kargs:?}"
    );
    let (code, report) = doctor("identical-twins", &config, dir.path());
    assert_eq!(code, Some(1), "still on nvidia: {report:#}");
    assert_eq!(status_of(&report, "bound:0000:02:00.0"), "fail");
    assert_eq!(status_of(&report, "bound:0000:02:00.1"), "fail");
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"bound:0000:01:00.0"),
        "the host's twin is not planned: {names:?}"
    );
    // Hosts with distinct GPUs keep binding by ID.
    let (_, text, _) = detect("amd-two-gpus", dir.path());
    assert!(text.contains("\naddresses = []\n"), "{text}");
}

#[test]
fn detect_passes_a_laptop_3d_controller() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _, _) = detect("laptop-3d", dir.path());
    let plan = plan_json("laptop-3d", &config, dir.path());
    assert!(planned_kargs(&plan).contains(&"vfio_pci.ids=10de:1f95"));
    assert!(planned_kargs(&plan).contains(&"intel_iommu=on"));
}

#[test]
fn detect_prints_to_stdout_without_write() {
    let dir = tempfile::tempdir().unwrap();
    let output = cli("laptop-3d", dir.path()).arg("detect").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("ids = [\"10de:1f95\"]"), "{text}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn detect_write_refuses_an_existing_file_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passthru.toml");
    std::fs::write(&path, "# mine\n").unwrap();
    let output = cli("laptop-3d", dir.path())
        .args(["detect", "--write"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "# mine\n");

    let output = cli("laptop-3d", dir.path())
        .args(["detect", "--force", "--write"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("10de:1f95")
    );
}

/// `--device` takes any PCI device of the host, as lspci prints it (`00:14.0`) or as the kernel does.
#[test]
fn detect_device_takes_any_pci_device_of_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let output = cli("intel-nvidia", dir.path())
        .args(["detect", "--device", "00:15.0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--device"), "{stderr}");
    assert!(stderr.contains("no PCI device at 0000:00:15.0"), "{stderr}");
    assert!(stderr.contains("0000:00:02.0, 0000:01:00.0"), "{stderr}");
    let output = cli("intel-nvidia", dir.path())
        .args(["detect", "--device", "14.0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");

    // The host's USB controller: by ID, no GPU vendor, so no GPU driver arguments.
    let output = cli("intel-nvidia", dir.path())
        .args(["detect", "--device", "00:14.0"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("# Device to pass: 0000:00:14.0"), "{text}");
    assert!(text.contains("ids = [\"8086:a36d\"]"), "{text}");
    assert!(text.contains("vendors = []"), "{text}");

    let output = cli("intel-nvidia", dir.path())
        .args(["detect", "--device", "0000:00:02.0"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("ids = [\"8086:3e98\"]"));
}

/// `detect --write FILE --merge` (and `detect --config FILE`) put what detection found into the user's file and
/// keep the rest of it, comments included; plan accepts the result.
#[test]
fn detect_merge_keeps_the_users_keys_and_comments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passthru.toml");
    let mine = "# My workstation: keep this comment.\n[image]\ntag = \"ghcr.io/me/vfio:latest\"  # my registry\n\n\
                [vfio]\n# the guest's GPU\nids = [\"10de:ffff\"]\n\n[kargs]\nextra = [\"quiet\"]\n";
    std::fs::write(&path, mine).unwrap();
    let merge = |extra: &[&str]| {
        cli("identical-twins", dir.path())
            .args(["detect", "--write"])
            .arg(&path)
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = merge(&[]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--merge"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), mine);

    assert!(merge(&["--merge"]).status.success());
    let merged = std::fs::read_to_string(&path).unwrap();
    for kept in [
        "# My workstation: keep this comment.\n[image]\n",
        "tag = \"ghcr.io/me/vfio:latest\"  # my registry\n",
        "# the guest's GPU\nids = []\naddresses = [\"0000:02:00.0\", \"0000:02:00.1\"]\n",
        "[kargs]\nextra = [\"quiet\"]\n",
    ] {
        assert!(merged.contains(kept), "{kept:?} not in:\n{merged}");
    }
    assert!(
        merged.starts_with("# >>> passthru-image detect"),
        "{merged}"
    );
    let plan = plan_json("identical-twins", &path, dir.path());
    assert!(planned_kargs(&plan).contains(&"quiet"));
    assert_eq!(plan["image"]["tag"], "ghcr.io/me/vfio:latest");

    // Merged again: the same file, the header replaced rather than repeated.
    assert!(merge(&["--merge"]).status.success());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), merged);

    // --config FILE prints the merge and leaves the file alone.
    std::fs::write(&path, mine).unwrap();
    let output = cli("identical-twins", dir.path())
        .arg("--config")
        .arg(&path)
        .arg("detect")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("# the guest's GPU\nids = []\n"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), mine);

    // A broken config is bad input naming its field, and stays as it was.
    std::fs::write(&path, "[vfio]\nids = [\"x\"]\n").unwrap();
    let broken = merge(&["--merge"]);
    assert_eq!(broken.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&broken.stderr).contains("vfio.ids[0]"));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "[vfio]\nids = [\"x\"]\n"
    );
}

/// `doctor --json` on the fixture `host` with the config `detect` writes for it.
fn doctor_detected(host: &str) -> (Option<i32>, Value) {
    let dir = tempfile::tempdir().unwrap();
    let (config, _, _) = detect(host, dir.path());
    doctor(host, &config, dir.path())
}

/// `doctor` (its human output) on the fixture `host` with the config `detect` writes for it.
fn doctor_text_detected(host: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let (config, _, _) = detect(host, dir.path());
    run_doctor(host, &config, dir.path(), &[])
}

fn doctor(host: &str, config: &Path, dir: &Path) -> (Option<i32>, Value) {
    let output = run_doctor(host, config, dir, &["--json"]);
    (output.status.code(), json_of(&output))
}

fn run_doctor(host: &str, config: &Path, dir: &Path, extra: &[&str]) -> std::process::Output {
    cli(host, dir)
        .arg("--config")
        .arg(config)
        .arg("doctor")
        .args(extra)
        .output()
        .unwrap()
}

fn status_of<'a>(report: &'a Value, name: &str) -> &'a str {
    outcome(report, name)["status"].as_str().unwrap()
}

/// `check`'s `field` (its detail or its fix) holds `text`.
fn assert_says(check: &Value, field: &str, text: &str) {
    let said = check[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {check}"));
    assert!(said.contains(text), "{check}");
}

fn failed(report: &Value) -> Vec<&str> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

#[test]
fn doctor_passes_on_a_correctly_set_up_host() {
    let dir = tempfile::tempdir().unwrap();
    let (config, text, _) = detect("amd-polaris", dir.path());
    // vendor-reset from a local checkout with upstream's dkms.conf: its module names are known without a fetch.
    let checkout = dir.path().join("vendor-reset");
    std::fs::create_dir(&checkout).unwrap();
    std::fs::write(
        checkout.join("dkms.conf"),
        "PACKAGE_NAME=\"vendor-reset\"\nPACKAGE_VERSION=\"0.1.1\"\nBUILT_MODULE_NAME[0]=\"${PACKAGE_NAME}\"\n\
         MAKE[0]=\"make KDIR=${kernel_source_dir}\"\nDEST_MODULE_LOCATION[0]=\"/kernel/drivers/misc\"\n",
    )
    .unwrap();
    std::fs::write(
        &config,
        text.replace(
            "[vendor-reset]\n",
            &format!("[vendor-reset]\npath = \"{}\"\n", checkout.display()),
        ),
    )
    .unwrap();
    let (code, report) = doctor("amd-polaris", &config, dir.path());
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["ok"], true);
    assert_eq!(failed(&report), Vec::<&str>::new());
    for name in [
        "cpu-virtualization",
        "iommu",
        "uefi",
        "karg:iommu=pt",
        "karg:vfio_pci.ids=1002:67df,1002:aaf0",
        "module:vfio_pci",
        "module:vendor_reset",
        "bound:0000:09:00.0",
        "bound:0000:09:00.1",
        "group:0000:09:00.0",
        "reset-method:0000:09:00.0",
    ] {
        assert_eq!(status_of(&report, name), "pass", "{name}");
    }
    for check in report["checks"].as_array().unwrap() {
        assert!(
            check["detail"].is_string() && check.get("fix").is_some(),
            "{check}"
        );
    }
}

#[test]
fn doctor_fails_a_missing_karg_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let (config, text, _) = detect("amd-polaris", dir.path());
    // The plan now wants kvm.ignore_msrs, which the host did not boot with.
    std::fs::write(
        &config,
        text.replace("ignore-msrs = false", "ignore-msrs = true"),
    )
    .unwrap();
    let (code, report) = doctor("amd-polaris", &config, dir.path());
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["ok"], false);
    assert_eq!(
        failed(&report),
        ["karg:kvm.ignore_msrs=1", "karg:kvm.report_ignored_msrs=0"]
    );
    let check = outcome(&report, "karg:kvm.ignore_msrs=1");
    assert_eq!(check["detail"], "missing from /proc/cmdline");
    assert_says(check, "fix", "bootc switch");
}

#[test]
fn doctor_fails_a_device_bound_to_nvidia_instead_of_vfio_pci() {
    let (code, report) = doctor_detected("intel-nvidia");
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(
        status_of(&report, "karg:vfio_pci.ids=10de:1401,10de:0fba"),
        "pass"
    );
    assert_eq!(status_of(&report, "module:vfio_pci"), "pass");
    assert_eq!(status_of(&report, "bound:0000:01:00.0"), "fail");
    let bound = outcome(&report, "bound:0000:01:00.0");
    assert_eq!(
        bound["detail"],
        "10de:1401 is bound to nvidia, not vfio-pci"
    );
    assert_says(bound, "fix", "initramfs");
    // The audio function is still on its host driver, so the group cannot go to a VM either.
    assert_eq!(status_of(&report, "group:0000:01:00.0"), "fail");
}

#[test]
fn doctor_fails_with_the_iommu_off_and_warns_about_legacy_boot() {
    let dir = tempfile::tempdir().unwrap();
    // Its only GPU is the boot GPU: a plan takes it only when the config accepts that.
    let config = dir.path().join("passthru.toml");
    std::fs::write(
        &config,
        "[cpu]\nvendor = \"intel\"\n[vfio]\nids = [\"10de:1401\", \"10de:0fba\"]\n\
         [accept-risk]\nboot-gpu = true\n",
    )
    .unwrap();
    let (code, report) = doctor("iommu-off", &config, dir.path());
    assert_eq!(code, Some(1));
    assert_eq!(status_of(&report, "iommu"), "fail");
    assert_eq!(status_of(&report, "uefi"), "warn");
    assert_eq!(status_of(&report, "karg:intel_iommu=on"), "fail");
    assert_eq!(status_of(&report, "group:0000:01:00.0"), "fail");
    assert_eq!(status_of(&report, "boot-gpu:0000:01:00.0"), "warn");
}

#[test]
fn doctor_flags_a_group_shared_with_a_host_device() {
    let (code, report) = doctor_detected("intel-shared-group");
    assert_eq!(code, Some(1));
    let group = outcome(&report, "group:0000:04:00.0");
    assert_eq!(group["status"], "fail");
    assert_says(group, "fix", "0000:03:00.0 (8086:1539)");
}

#[test]
fn doctor_human_output_ends_in_exit_1_naming_the_failures() {
    let output = doctor_text_detected("intel-nvidia");
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("FAIL  bound:0000:01:00.0: 10de:1401 is bound to nvidia, not vfio-pci"),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("checks failed"));
}

/// The image the end-to-end suite builds (an NVIDIA plan on the Debian 12 test base) booted by
/// `test-boot --capture` in QEMU q35 (tests/fixtures/README.md): real sysfs from a real kernel, so the readers
/// are proven beyond generated trees. `nic` is the e1000e stand-in, `vga` QEMU's standard VGA.
struct Captured {
    tree: &'static str,
    cpu: &'static str,
    nic: &'static str,
    vga: &'static str,
    iommu_kargs: &'static [&'static str],
    /// Checks that fail on this VM's tree besides the ones every capture fails.
    failures: &'static [&'static str],
}

const INTEL_CAPTURE: Captured = Captured {
    tree: "qemu-q35-intel-iommu",
    cpu: "intel",
    nic: "0000:00:01.0",
    vga: "0000:00:02.0",
    iommu_kargs: &["intel_iommu=on", "iommu=pt"],
    failures: &["interrupt-remapping"],
};

const AMD_CAPTURE: Captured = Captured {
    tree: "qemu-q35-amd-iommu",
    cpu: "amd",
    nic: "0000:00:02.0",
    vga: "0000:00:03.0",
    // AMD-Vi is on by default; the image plans no amd_iommu=.
    iommu_kargs: &["iommu=pt"],
    failures: &[],
};

/// `groups --json`: the stand-in on vfio-pci alone in its group, the VGA an isolated boot GPU.
fn assert_captured_groups(host: &Captured) {
    let report = groups(host.tree);
    assert_eq!(report["iommu_enabled"], true);
    let group = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| {
            g["devices"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["address"] == host.nic)
        })
        .unwrap_or_else(|| panic!("{} is in no group: {report:#}", host.nic));
    let devices = group["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{group:#}");
    let nic = &devices[0];
    assert_eq!(
        (
            &nic["vendor_id"],
            &nic["device_id"],
            &nic["class"],
            &nic["driver"]
        ),
        (
            &"8086".into(),
            &"10d3".into(),
            &"0200".into(),
            &"vfio-pci".into()
        )
    );
    assert_eq!(gpu_addresses(&report), [host.vga]);
    let (_, isolation, companions, vendor_reset) = verdict(&report, host.vga);
    assert_eq!(
        (isolation.as_str(), companions.len(), vendor_reset),
        ("isolated", 0, false)
    );
    assert_eq!(gpu(&report, host.vga)["boot_vga"], true);
}

/// `doctor` with the plan the captured image was built from (plus the stand-in test-boot added to its
/// vfio_pci.ids): every karg, module, binding and group check passes; only the planned NVIDIA devices,
/// which the stand-in replaces in the VM, are missing, and SeaBIOS is not UEFI. The probe runs before udev,
/// so no KVM module is loaded, and the Intel VM's IOMMU has no interrupt remapping (`intremap=off`).
fn assert_captured_doctor(host: &Captured) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("passthru.toml");
    // The image was planned without --root, where "auto" leaves nouveau.modeset=0 out.
    std::fs::write(
        &config,
        format!(
            "[cpu]\nvendor = \"{}\"\n\n[gpu]\nvendors = [\"nvidia\"]\ndisable-nouveau = false\n\n\
             [vfio]\nids = [\"10de:2684\", \"10de:22ba\", \"8086:10d3\"]\n",
            host.cpu
        ),
    )
    .unwrap();
    let (code, report) = doctor(host.tree, &config, dir.path());
    assert_eq!(code, Some(1), "{report:#}");
    let mut expected: Vec<&str> = host.failures.to_vec();
    expected.extend(["kvm", "device:10de:2684", "device:10de:22ba"]);
    let mut failures = failed(&report);
    failures.sort();
    expected.sort();
    assert_eq!(failures, expected, "{report:#}");
    let karg = |name: &str| status_of(&report, &format!("karg:{name}")).to_owned();
    for name in host.iommu_kargs.iter().copied().chain([
        "rd.driver.pre=vfio-pci",
        "vfio_pci.ids=10de:2684,10de:22ba,8086:10d3",
    ]) {
        assert_eq!(karg(name), "pass", "{name}: {report:#}");
    }
    for name in [
        "module:vfio",
        "module:vfio_iommu_type1",
        "module:vfio_pci",
        "iommu-firmware",
        "iommu-units",
        "iommu-passthrough",
        "modprobe",
        "softdep:nvidia",
        "lockdown",
    ] {
        assert_eq!(status_of(&report, name), "pass", "{name}: {report:#}");
    }
    assert_eq!(status_of(&report, &format!("bound:{}", host.nic)), "pass");
    assert_eq!(status_of(&report, &format!("group:{}", host.nic)), "pass");
    assert_eq!(status_of(&report, "iommu"), "pass");
    assert_eq!(status_of(&report, "uefi"), "warn");
}

#[test]
fn captured_intel_iommu_vm_reads_groups_and_passes_doctor_kargs_and_binding() {
    assert_captured_groups(&INTEL_CAPTURE);
    assert_captured_doctor(&INTEL_CAPTURE);
}

/// The AMD IOMMU is itself a PCI device (1022:0008) with no IOMMU group: listed in sysfs, in no group.
#[test]
fn captured_amd_iommu_vm_reads_groups_and_passes_doctor_kargs_and_binding() {
    assert_captured_groups(&AMD_CAPTURE);
    assert_captured_doctor(&AMD_CAPTURE);
    let report = groups(AMD_CAPTURE.tree);
    let grouped = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["devices"].as_array().unwrap())
        .any(|d| d["vendor_id"] == "1022");
    assert!(!grouped, "{report:#}");
    assert!(
        fixture(AMD_CAPTURE.tree)
            .join("sys/bus/pci/devices/0000:00:01.0")
            .exists()
    );
}

#[test]
fn a_root_that_is_not_a_host_tree_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    for root in [dir.path().join("missing"), dir.path().to_path_buf()] {
        let out = Command::cargo_bin("passthru-image")
            .unwrap()
            .arg("--root")
            .arg(&root)
            .args(["groups", "--json"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", root.display());
        assert!(String::from_utf8_lossy(&out.stderr).contains("--root"));
    }
}

// doctor's checks of the firmware, the IOMMU, KVM and modprobe, on the fixture trees and on copies changed for
// one case (tests/fixtures/README.md says what each tree shows).

/// A copy of a fixture tree to change for one case (`cp -a`: its links stay links).
fn copy_of(host: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(fixture(host))
        .arg(dir.path().join("root"))
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

/// `doctor --json` with `--root root` and `config`.
fn doctor_at(root: &Path, config: &Path) -> (Option<i32>, Value) {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::cargo_bin("passthru-image")
        .unwrap()
        .current_dir(dir.path())
        .arg("--root")
        .arg(root)
        .arg("--config")
        .arg(config)
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    (output.status.code(), json_of(&output))
}

fn outcome<'a>(report: &'a Value, name: &str) -> &'a Value {
    entry(report, "checks", "name", name)
}

/// The 226-character fix of a host that booted without the plan was printed for every missing karg; now once,
/// with the checks it answers, and the failures that follow from others name their cause instead.
#[test]
fn doctor_on_amd_two_gpus_prints_each_fix_once() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _, _) = detect("amd-two-gpus", dir.path());
    let output = run_doctor("amd-two-gpus", &config, dir.path(), &[]);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8(output.stdout).unwrap();
    let apply =
        "image mode: `bootc switch`/`bootc upgrade` to the image `passthru-image build` made";
    assert_eq!(text.matches(apply).count(), 1, "{text}");
    let fixes: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("[fix "))
        .collect();
    let unique: std::collections::HashSet<&str> = fixes
        .iter()
        .map(|l| l.split_once("] ").unwrap().1)
        .collect();
    assert_eq!(unique.len(), fixes.len(), "{text}");
    assert!(
        text.contains(
            "FAIL  module:vfio_pci: vfio_pci (VFIO) is not loaded (because karg:rd.driver.pre=vfio-pci failed)\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("(because karg:vfio_pci.ids=10de:2684,10de:22ba failed)"),
        "{text}"
    );
    assert!(
        text.contains("for karg:iommu=pt, karg:kvm_amd.npt=1"),
        "{text}"
    );
    assert!(!text.contains("\x1b["), "no colour when piped");

    let (code, report) = doctor("amd-two-gpus", &config, dir.path());
    assert_eq!(code, Some(1));
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["counts"]["fail"], failed(&report).len());
    let texts: Vec<&str> = report["fixes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fix"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts.iter().filter(|t| t.starts_with("image mode")).count(),
        1
    );
    let group = outcome(&report, "group:0000:0b:00.0");
    assert_eq!(group["caused_by"], "bound:0000:0b:00.1");
    assert_eq!(group["fix"], Value::Null);
}

#[test]
fn doctor_on_amd_two_gpus_finds_svm_off_resizable_bar_and_no_passthrough_domain() {
    let (_, report) = doctor_detected("amd-two-gpus");
    let kvm = outcome(&report, "kvm");
    assert_eq!(kvm["status"], "fail");
    assert_says(
        kvm,
        "detail",
        "svm is in the CPU flags but kvm_amd is not loaded",
    );
    assert_eq!(status_of(&report, "dev-kvm"), "not-run");
    assert_eq!(status_of(&report, "kvm-param"), "not-run");
    let pt = outcome(&report, "iommu-passthrough");
    assert_eq!(pt["status"], "fail");
    assert_eq!(pt["caused_by"], "karg:iommu=pt");
    let rebar = outcome(&report, "resizable-bar:0000:0b:00.0");
    assert_eq!(rebar["status"], "warn");
    assert_says(rebar, "detail", "BAR 1 is 32 GiB");
    assert_eq!(status_of(&report, "above-4g"), "pass");
    // Secure Boot and lockdown are on, and this plan builds no module: nothing to sign.
    assert_eq!(status_of(&report, "secure-boot"), "pass");
    assert_eq!(status_of(&report, "lockdown"), "pass");
}

#[test]
fn doctor_on_a_set_up_host_passes_the_firmware_iommu_kvm_and_modprobe_checks() {
    let (code, report) = doctor_detected("amd-polaris");
    assert_eq!(code, Some(0), "{report:#}");
    for name in [
        "secure-boot",
        "lockdown",
        "iommu-firmware",
        "iommu-units",
        "interrupt-remapping",
        "iommu-passthrough",
        "kvm",
        "kvm-param:kvm_amd.npt",
        "kvm-param:kvm_amd.nested",
        "modprobe",
        "softdep:amdgpu",
        "softdep:radeon",
        "resizable-bar:0000:09:00.0",
        "above-4g",
        "sr-iov",
    ] {
        assert_eq!(status_of(&report, name), "pass", "{name}: {report:#}");
    }
    let sev = outcome(&report, "kvm-param:kvm_amd.sev");
    assert_eq!(sev["status"], "warn");
    assert_says(sev, "fix", "cpu.sev = false");
    // What a tree cannot show is not run, with the reason.
    for name in ["dev-kvm", "kernel-log", "virt-host-validate"] {
        assert_eq!(status_of(&report, name), "not-run", "{name}");
    }
    assert_says(
        outcome(&report, "virt-host-validate"),
        "detail",
        "would judge this machine",
    );
}

#[test]
fn doctor_with_the_iommu_off_in_the_firmware_names_the_table_as_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _, _) = detect("iommu-off", dir.path());
    let (_, report) = doctor("iommu-off", &config, dir.path());
    let table = outcome(&report, "iommu-firmware");
    assert_eq!(table["status"], "fail");
    assert_says(table, "detail", "no ACPI DMAR table");
    assert_says(table, "fix", "VT-d");
    assert_eq!(
        outcome(&report, "iommu-units")["caused_by"],
        "iommu-firmware"
    );
    assert_eq!(outcome(&report, "iommu")["caused_by"], "iommu-units");
    assert_eq!(
        outcome(&report, "interrupt-remapping")["caused_by"],
        "iommu"
    );
    assert_eq!(status_of(&report, "iommu-passthrough"), "not-run");

    // The same host with the table there: the firmware is fine, the kernel did not take the IOMMU.
    let copy = copy_of("iommu-off");
    let root = copy.path().join("root");
    std::fs::write(root.join("sys/firmware/acpi/tables/DMAR"), "DMAR").unwrap();
    let (_, report) = doctor_at(&root, &config);
    assert_eq!(status_of(&report, "iommu-firmware"), "pass");
    let groups = outcome(&report, "iommu");
    assert_says(
        groups,
        "detail",
        "although the firmware has the IOMMU on (DMAR): a kernel-side problem",
    );
    assert_eq!(groups["caused_by"], "iommu-units");
    let units = outcome(&report, "iommu-units");
    assert_eq!(units["caused_by"], "karg:intel_iommu=on");
}

#[test]
fn doctor_finds_a_softdep_hidden_by_another_and_bars_below_4g() {
    let (_, report) = doctor_detected("intel-nvidia");
    let softdep = outcome(&report, "softdep:nvidia");
    assert_eq!(softdep["status"], "warn");
    assert_says(
        softdep,
        "detail",
        "`softdep nvidia post: nvidia_uvm` (/etc/modprobe.d/10-nvidia-uvm.conf:1)",
    );
    assert_eq!(status_of(&report, "softdep:nouveau"), "pass");
    assert_eq!(status_of(&report, "above-4g"), "warn");
    assert_eq!(status_of(&report, "iommu-passthrough"), "pass");
    assert_eq!(status_of(&report, "interrupt-remapping"), "pass");
    // Without remapping VFIO refuses the device.
    let (_, report) = doctor_detected("intel-shared-group");
    assert_eq!(status_of(&report, "interrupt-remapping"), "fail");
}

#[test]
fn doctor_fails_a_modprobe_line_that_keeps_vfio_pci_from_loading_and_reports_secure_boot() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _, _) = detect("amd-polaris", dir.path());
    let copy = copy_of("amd-polaris");
    let root = copy.path().join("root");
    std::fs::create_dir_all(root.join("etc/modprobe.d")).unwrap();
    std::fs::write(
        root.join("etc/modprobe.d/no-vfio.conf"),
        "install vfio-pci /bin/false\n",
    )
    .unwrap();
    // Secure Boot on, and the plan builds vendor-reset.
    let var = root.join("sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c");
    std::fs::write(&var, [6, 0, 0, 0, 1]).unwrap();
    let (code, report) = doctor_at(&root, &config);
    assert_eq!(code, Some(1));
    let install = outcome(&report, "modprobe:vfio_pci");
    assert_eq!(install["status"], "fail");
    assert_says(
        install,
        "detail",
        "`install vfio_pci /bin/false` (/etc/modprobe.d/no-vfio.conf:1)",
    );
    // Secure Boot only states the fact; whether the module is signed by a trusted key is module-signer's.
    let secure = outcome(&report, "secure-boot");
    assert_eq!(secure["status"], "pass");
    let detail = secure["detail"].as_str().unwrap();
    assert!(
        detail.contains("vendor-reset") && detail.contains("module-signer"),
        "{secure}"
    );
}

/// Device nodes are the named exception of the safe read layer: the tests run as root, so a copy of a tree
/// gets /dev/kvm (with /dev/null's numbers, which opens read-write) and /dev/kmsg (the real kernel log).
#[test]
fn doctor_opens_dev_kvm_and_reads_dev_kmsg_under_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _, _) = detect("amd-polaris", dir.path());
    let copy = copy_of("amd-polaris");
    let root = copy.path().join("root");
    std::fs::create_dir_all(root.join("dev")).unwrap();
    for (name, minor) in [("kvm", 3), ("kmsg", 11)] {
        let node = std::ffi::CString::new(root.join("dev").join(name).to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; makedev(1, 3) is /dev/null, makedev(1, 11) /dev/kmsg.
        let made = unsafe {
            libc::mknod(
                node.as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(1, minor),
            )
        };
        assert_eq!(made, 0, "mknod needs root");
    }
    let (_, report) = doctor_at(&root, &config);
    assert_eq!(status_of(&report, "dev-kvm"), "pass", "{report:#}");
    let log = outcome(&report, "kernel-log");
    assert_ne!(log["status"], "not-run", "{log}");
}

#[test]
fn doctor_lists_its_checks() {
    let dir = tempfile::tempdir().unwrap();
    let output = cli("amd-polaris", dir.path())
        .args(["doctor", "--list-checks"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for name in [
        "iommu-firmware",
        "interrupt-remapping",
        "kvm-param",
        "softdep",
        "resizable-bar",
        "virt-host-validate",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name}: {text}"
        );
    }
}

// groups --class, the USB devices behind their controllers, and a verdict for every class.

fn verdict_of<'a>(report: &'a Value, address: &str) -> &'a Value {
    entry(report, "verdicts", "address", address)
}

fn caveats(verdict: &Value) -> Vec<&str> {
    verdict["caveats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["caveat"].as_str().unwrap())
        .collect()
}

#[test]
fn groups_class_usb_shows_the_keyboard_under_its_controller() {
    let dir = tempfile::tempdir().unwrap();
    let output = cli("usb-keyboard", dir.path())
        .args(["groups", "--class", "usb"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let controller = lines
        .iter()
        .position(|l| l.starts_with("IOMMU Group  2: 0000:00:14.0 USB controller"))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(
        lines[controller + 2].trim(),
        "USB 1-3.1: 046d:c31c Logitech USB Keyboard (keyboard)"
    );
    assert_eq!(
        lines[controller + 3].trim(),
        "USB 1-3.2: 046d:c077 Logitech USB Optical Mouse (mouse)"
    );
    assert!(text.contains("USB 3-1: 0781:5581 SanDisk Ultra"), "{text}");
    assert!(!text.contains("SATA controller"), "{text}");
    assert!(
        text.contains("caveat: keyboard 046d:c31c Logitech USB Keyboard (1-3.1)"),
        "{text}"
    );

    let report = groups_with(&["--class", "usb"], "usb-keyboard");
    let chipset = verdict_of(&report, "0000:00:14.0");
    assert_eq!(caveats(chipset), ["input-devices"]);
    assert_eq!(
        chipset["usb_devices"][1]["inputs"],
        serde_json::json!(["keyboard", "hid"])
    );
    let card = verdict_of(&report, "0000:05:00.0");
    assert_eq!(card["isolation"], "isolated");
    assert!(caveats(card).is_empty());
    assert_eq!(report["verdicts"].as_array().unwrap().len(), 2);
}

fn groups_with(args: &[&str], host: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let output = cli(host, dir.path())
        .args(["groups", "--json"])
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    json_of(&output)
}

#[test]
fn groups_give_every_class_a_verdict_with_its_caveats() {
    let disks = groups_with(&["--class", "storage"], "disk-controller");
    let ids: Vec<u64> = disks["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2]);
    let root = verdict_of(&disks, "0000:01:00.0");
    assert_eq!(root["kind"], "nvme");
    assert_eq!(caveats(root), ["root-filesystem"]);
    assert!(caveats(verdict_of(&disks, "0000:02:00.0")).is_empty());

    let laptop = groups_with(&[], "laptop-3d");
    let dgpu = verdict_of(&laptop, "0000:01:00.0");
    assert_eq!(caveats(dgpu), ["three-d-controller"]);
    assert!(
        dgpu["caveats"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("a laptop's 3D controller"),
        "{dgpu}"
    );
    assert_eq!(
        caveats(verdict_of(&laptop, "0000:00:02.0")),
        ["boot-gpu"],
        "the iGPU is the only display device"
    );

    let desktop = groups_with(&["--class", "audio", "--class", "gpu"], "intel-nvidia");
    let chipset_audio = verdict_of(&desktop, "0000:00:1f.3");
    assert_eq!(caveats(chipset_audio), ["chipset-function"]);
    let nvidia_audio = verdict_of(&desktop, "0000:01:00.1");
    assert_eq!(
        nvidia_audio["companions"],
        serde_json::json!(["0000:01:00.0"])
    );
    let polaris = groups_with(&["--gpus"], "amd-polaris");
    assert_eq!(
        caveats(verdict_of(&polaris, "0000:09:00.0")),
        ["vendor-reset"]
    );
}

// Plans made for a host refuse to take what it needs: exit 2 naming the device and the switch, nothing
// written.

/// `generate -o OUT --root HOST ARGS`: exit code, stderr, and whether OUT was written.
fn generate_for(host: &str, args: &[&str]) -> (Option<i32>, String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("context");
    let output = cli(host, dir.path())
        .args(["generate", "-o"])
        .arg(&out)
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stderr).unwrap(),
        out.exists(),
    )
}

#[test]
fn a_plan_taking_the_only_display_is_refused() {
    let (code, stderr, written) = generate_for("iommu-off", &["--vfio-ids", "10de:1401,10de:0fba"]);
    assert_eq!((code, written), (Some(2), false), "{stderr}");
    assert!(
        stderr.contains("error: vfio.ids: the plan takes what the host"),
        "{stderr}"
    );
    assert!(stderr.contains("0000:01:00.0"), "{stderr}");
    assert!(
        stderr.contains("no other display device would remain"),
        "{stderr}"
    );
    assert!(stderr.contains("accept-risk.boot-gpu = true"), "{stderr}");
    // Accepted in the config, it is planned.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("single-gpu.toml");
    std::fs::write(&config, "[accept-risk]\nboot-gpu = true\n").unwrap();
    let config = config.to_str().unwrap().to_owned();
    let (code, stderr, written) = generate_for(
        "iommu-off",
        &["--config", &config, "--vfio-ids", "10de:1401,10de:0fba"],
    );
    assert_eq!((code, written), (Some(0), true), "{stderr}");
}

#[test]
fn a_plan_taking_an_id_the_hosts_own_card_carries_is_refused() {
    let (code, stderr, written) =
        generate_for("identical-twins", &["--vfio-ids", "10de:1b80,10de:10f0"]);
    assert_eq!((code, written), (Some(2), false), "{stderr}");
    assert!(
        stderr.contains("vfio.ids 10de:1b80 matches 0000:01:00.0, 0000:02:00.0 in 2 slots"),
        "{stderr}"
    );
    assert!(stderr.contains("vfio.addresses"), "{stderr}");
    assert!(stderr.contains("accept-risk.identical-devices"), "{stderr}");
}

#[test]
fn a_plan_taking_the_root_disks_controller_is_refused() {
    let (code, stderr, written) = generate_for("disk-controller", &["--vfio-ids", "144d:a80a"]);
    assert_eq!((code, written), (Some(2), false), "{stderr}");
    assert!(
        stderr.contains(
            "0000:01:00.0 Samsung Electronics Co Ltd NVMe SSD Controller PM9A1/PM9A3/980PRO [144d:a80a]: it holds the root filesystem (/sysroot on /dev/mapper/luks-5a1d2c3e"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("accept-risk.root-disk-controller"),
        "{stderr}"
    );
    // The data drive can go.
    let (code, stderr, written) = generate_for("disk-controller", &["--vfio-ids", "15b7:5030"]);
    assert_eq!((code, written), (Some(0), true), "{stderr}");
}

#[test]
fn a_plan_taking_the_keyboards_usb_controller_or_the_only_one_is_refused() {
    let (code, stderr, written) = generate_for("usb-keyboard", &["--vfio-ids", "8086:a36d"]);
    assert_eq!((code, written), (Some(2), false), "{stderr}");
    assert!(
        stderr.contains("046d:c31c Logitech USB Keyboard (1-3.1), 046d:c077 Logitech USB Optical Mouse (1-3.2) hang on it"),
        "{stderr}"
    );
    assert!(
        stderr.contains("accept-risk.host-usb-controller"),
        "{stderr}"
    );
    let (code, stderr, written) = generate_for("usb-keyboard", &["--vfio-ids", "1b21:2142"]);
    assert_eq!((code, written), (Some(0), true), "{stderr}");
    let (code, stderr, written) = generate_for("intel-nvidia", &["--vfio-ids", "8086:a36d"]);
    assert_eq!((code, written), (Some(2), false), "{stderr}");
    assert!(
        stderr.contains("the host's only USB controller"),
        "{stderr}"
    );
}

#[test]
fn an_id_no_device_has_is_only_a_warning_and_without_root_nothing_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let output = cli("intel-nvidia", dir.path())
        .args(["plan", "--vfio-ids", "10de:1401,10de:0fba,1234:5678"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    let host = fixture("intel-nvidia");
    assert!(
        stderr.contains(&format!(
            "warning: vfio.ids: no device of the host under {} has the ID 1234:5678",
            host.display()
        )),
        "{stderr}"
    );
    // An image for hosts this machine cannot see: the config alone decides.
    let output = Command::cargo_bin("passthru-image")
        .unwrap()
        .current_dir(dir.path())
        .args(["plan", "--cpu", "intel", "--vfio-ids", "8086:a36d"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}

/// Every tree (generated and captured): what detect writes, plan on the same host accepts; where the host's
/// only display would go, the IDs are left out and the warning says how to take it anyway.
#[test]
fn detect_never_writes_what_plan_on_the_same_host_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let mut hosts: Vec<String> = std::fs::read_dir(fixture(""))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().join("sys").is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    hosts.sort();
    assert!(hosts.len() >= 11, "{hosts:?}");
    for host in &hosts {
        let (config, _, _) = detect(host, dir.path());
        plan_json(host, &config, dir.path());
    }
    let again = tempfile::tempdir().unwrap();
    let (_, text, stderr) = detect("iommu-off", again.path());
    assert!(text.contains("ids = []"), "{text}");
    assert!(stderr.contains("not proposed for vfio.ids"), "{stderr}");
    assert!(
        stderr
            .contains("vfio.ids = [\"10de:1401\", \"10de:0fba\"] and accept-risk.boot-gpu = true"),
        "{stderr}"
    );
}

#[test]
fn detect_json_has_the_proposal_and_its_toml() {
    let dir = tempfile::tempdir().unwrap();
    let output = cli("amd-two-gpus", dir.path())
        .args(["detect", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let report = json_of(&output);
    assert_eq!(
        report["config"]["vfio"]["ids"],
        serde_json::json!(["10de:2684", "10de:22ba"])
    );
    assert_eq!(report["gpu"]["address"], "0000:0b:00.0");
    assert!(report["toml"].as_str().unwrap().contains("[vfio]"));
    assert!(report["findings"].as_array().unwrap().len() > 1);
    assert_eq!(report["written"], Value::Null);
}

/// A copy of a fixture tree the test may add files to (`cp -a` keeps the sysfs symlinks).
fn fixture_copy(host: &str, dir: &Path) -> PathBuf {
    let tree = dir.join(host);
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(fixture(host))
        .arg(&tree)
        .status()
        .unwrap();
    assert!(status.success());
    tree
}

/// detect's proposal for amd-polaris without its vendor-reset module, whose upstream git source `generate`
/// would fetch (no network in the suite).
fn polaris_config_without_module(dir: &Path) -> PathBuf {
    let (config, text, _) = detect("amd-polaris", dir);
    let text = text.replace(
        "[vendor-reset]\nenabled = true\n",
        "[vendor-reset]\nenabled = false\n",
    );
    assert!(text.contains("[vendor-reset]\nenabled = false\n"), "{text}");
    std::fs::write(&config, text).unwrap();
    config
}

/// The record `generate` puts in an image's host layer for `config`: plan.json and passthru.toml.
fn generated_record(config: &Path, dir: &Path) -> PathBuf {
    let ctx = dir.join("ctx");
    Command::cargo_bin("passthru-image")
        .unwrap()
        .current_dir(dir)
        .arg("--config")
        .arg(config)
        .args(["generate", "-q", "-o"])
        .arg(&ctx)
        .assert()
        .success();
    ctx.join("layers/host/usr/share/passthru-image")
}

fn doctor_without_config(tree: &Path, cwd: &Path) -> (Option<i32>, Value) {
    let output = Command::cargo_bin("passthru-image")
        .unwrap()
        .current_dir(cwd)
        .arg("--root")
        .arg(tree)
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    (output.status.code(), json_of(&output))
}

/// After `bootc switch` to a built image, doctor needs no config: it checks the host against the plan the image
/// carries under /usr/share/passthru-image, and names it (`config` in --json). A config the user gives still
/// comes first.
#[test]
fn doctor_without_a_config_checks_the_plan_the_running_image_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let config = polaris_config_without_module(dir.path());
    let record = generated_record(&config, dir.path());
    assert!(record.join("passthru.toml").is_file());
    let tree = fixture_copy("amd-polaris", dir.path());
    std::fs::create_dir_all(tree.join("usr/share")).unwrap();
    std::fs::rename(&record, tree.join("usr/share/passthru-image")).unwrap();
    let cwd = dir.path().join("empty");
    std::fs::create_dir(&cwd).unwrap();

    let (code, report) = doctor_without_config(&tree, &cwd);
    assert_eq!(code, Some(0), "{report:#}");
    let from = report["config"].as_str().unwrap();
    assert!(
        from.contains("the running image's record")
            && from.contains("/usr/share/passthru-image/plan.json")
            && from.contains("made by passthru-image"),
        "{from}"
    );
    // Only the recorded plan binds these IDs; the embedded default binds none.
    assert_eq!(
        status_of(&report, "karg:vfio_pci.ids=1002:67df,1002:aaf0"),
        "pass"
    );

    // The user's ./passthru.toml is the plan to check, not the image's.
    std::fs::write(cwd.join("passthru.toml"), "[cpu]\nvendor = \"amd\"\n").unwrap();
    let (_, report) = doctor_without_config(&tree, &cwd);
    assert_eq!(report["config"], "passthru.toml");
    assert_eq!(status_of(&report, "devices"), "warn");
    std::fs::remove_file(cwd.join("passthru.toml")).unwrap();

    // A record that is not a plan is bad input naming the file, not a silent fallback.
    let plan_json = tree.join("usr/share/passthru-image/plan.json");
    let text = std::fs::read_to_string(&plan_json).unwrap();
    std::fs::write(&plan_json, text.replace("\"format\": 1", "\"format\": 7")).unwrap();
    let output = Command::cargo_bin("passthru-image")
        .unwrap()
        .current_dir(&cwd)
        .arg("--root")
        .arg(&tree)
        .arg("doctor")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("plan.json: format"), "{stderr}");
}

/// Live mode's record comes first: apply changed the host after its image was made.
#[test]
fn doctor_without_a_config_prefers_the_plan_live_mode_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let config = polaris_config_without_module(dir.path());
    let record = generated_record(&config, dir.path());
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(record.join("plan.json")).unwrap()).unwrap();
    let tree = fixture_copy("amd-polaris", dir.path());
    std::fs::create_dir_all(tree.join("etc/passthru-image")).unwrap();
    let state = serde_json::json!({
        "kargs_appended": ["iommu=pt"], "kargs_deleted": [], "initramfs_enabled": true, "files": [],
        "kernel": null, "plan": plan,
    });
    std::fs::write(
        tree.join("etc/passthru-image/live-state.json"),
        state.to_string(),
    )
    .unwrap();
    let (code, report) = doctor_without_config(&tree, dir.path());
    assert_eq!(code, Some(0), "{report:#}");
    let from = report["config"].as_str().unwrap();
    assert!(
        from.contains("the record `apply` keeps") && from.contains("live-state.json"),
        "{from}"
    );
    assert_eq!(status_of(&report, "bound:0000:09:00.0"), "pass");
}

fn ostree(args: &[&str]) {
    let output = std::process::Command::new("ostree")
        .args(args)
        .env("OSTREE_SYSROOT_DEBUG", "mutable-deployments")
        .output()
        .expect("run the ostree CLI");
    assert!(
        output.status.success(),
        "ostree {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A real ostree sysroot (never booted) whose one deployment has `origin` as its origin and `files` in its tree.
fn ostree_sysroot(dir: &Path, origin: &str, files: &[(&str, &str)]) -> PathBuf {
    let sysroot = dir.join("sysroot");
    let tree = dir.join("tree");
    let modules = tree.join("usr/lib/modules/6.1.0-pt-detect");
    std::fs::create_dir_all(&modules).unwrap();
    std::fs::create_dir_all(tree.join("usr/etc")).unwrap();
    std::fs::write(modules.join("vmlinuz"), "not a kernel\n").unwrap();
    std::fs::write(modules.join("initramfs.img"), "not an initramfs\n").unwrap();
    std::fs::write(tree.join("usr/etc/os-release"), "ID=testos\n").unwrap();
    for (path, content) in files {
        let file = tree.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    }
    std::fs::create_dir_all(&sysroot).unwrap();
    let s = sysroot.to_str().unwrap();
    ostree(&["admin", "init-fs", "--modern", s]);
    ostree(&["admin", "os-init", &format!("--sysroot={s}"), "testos"]);
    ostree(&[
        &format!("--repo={s}/ostree/repo"),
        "commit",
        "--branch=testos/stable",
        "--bootable",
        &format!("--tree=dir={}", tree.display()),
    ]);
    let origin_file = dir.join("origin");
    std::fs::write(
        &origin_file,
        format!("[origin]\nrefspec=testos/stable\n{origin}"),
    )
    .unwrap();
    ostree(&[
        "admin",
        "deploy",
        &format!("--sysroot={s}"),
        "--os=testos",
        &format!("--origin-file={}", origin_file.display()),
        "testos/stable",
    ]);
    sysroot
}

fn detect_with_sysroot(host: &str, sysroot: &Path, cwd: &Path) -> std::process::Output {
    cli(host, cwd)
        .arg("detect")
        .arg("--sysroot")
        .arg(sysroot)
        .output()
        .unwrap()
}

/// On an ostree host the proposed base is what the host runs: the container image its deployment follows, or,
/// when that is an image passthru-image built, the base recorded inside it. Anything else keeps the default and
/// the header says why.
#[test]
fn detect_proposes_the_base_image_the_host_runs() {
    let dir = tempfile::tempdir().unwrap();
    let bazzite = dir.path().join("bazzite");
    std::fs::create_dir(&bazzite).unwrap();
    let sysroot = ostree_sysroot(
        &bazzite,
        "container-image-reference=ostree-image-signed:docker://ghcr.io/ublue-os/bazzite:stable\n",
        &[],
    );
    let output = detect_with_sysroot("amd-two-gpus", &sysroot, dir.path());
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("\nbase = \"ghcr.io/ublue-os/bazzite:stable\"\n"),
        "{text}"
    );
    assert!(
        text.contains("# image.base: ghcr.io/ublue-os/bazzite:stable, the container image the default deployment follows (ostree-image-signed:docker://ghcr.io/ublue-os/bazzite:stable)"),
        "{text}"
    );

    // After `bootc switch` to the image passthru-image built: its recorded base, not the image itself.
    let config = polaris_config_without_module(dir.path());
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "base = \"quay.io/fedora/fedora-bootc:44\"",
        "base = \"ghcr.io/ublue-os/bazzite-deck:stable\"",
    );
    std::fs::write(&config, text).unwrap();
    let record = generated_record(&config, dir.path());
    let plan_json = std::fs::read_to_string(record.join("plan.json")).unwrap();
    let ours = dir.path().join("ours");
    std::fs::create_dir(&ours).unwrap();
    let sysroot = ostree_sysroot(
        &ours,
        "container-image-reference=ostree-unverified-registry:ghcr.io/me/passthru:latest\n",
        &[("usr/share/passthru-image/plan.json", &plan_json)],
    );
    let output = detect_with_sysroot("amd-polaris", &sysroot, dir.path());
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("\nbase = \"ghcr.io/ublue-os/bazzite-deck:stable\"\n"),
        "{text}"
    );
    assert!(
        text.contains("the base of the passthru-image image"),
        "{text}"
    );

    // An ostree ref, no container image: the default, and why.
    let classic = dir.path().join("classic");
    std::fs::create_dir(&classic).unwrap();
    let sysroot = ostree_sysroot(&classic, "", &[]);
    let output = detect_with_sysroot("amd-two-gpus", &sysroot, dir.path());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("\nbase = \"quay.io/fedora/fedora-bootc:44\"\n"),
        "{text}"
    );
    assert!(
        text.contains("# image.base: the default; the default deployment"),
        "{text}"
    );
    assert!(
        text.contains("follows an ostree ref, not a container image"),
        "{text}"
    );

    // --sysroot that is no sysroot is bad input.
    let output = detect_with_sysroot("amd-two-gpus", dir.path(), dir.path());
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--sysroot"));
}
