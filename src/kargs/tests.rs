use super::*;

fn karg(s: &str) -> Karg {
    Karg::parse(s).unwrap()
}

fn host(line: &str) -> Vec<HostKarg> {
    split_cmdline(line)
}

fn list(words: &[&str]) -> Kargs {
    let mut kargs = Kargs::default();
    for w in words {
        kargs.push(karg(w)).unwrap();
    }
    kargs
}

#[test]
fn parses_flags_and_key_values() {
    assert_eq!(karg("quiet").key(), "quiet");
    assert_eq!(karg("quiet").value(), None);
    let ids = karg("vfio_pci.ids=10de:2684,10de:22ba");
    assert_eq!(ids.key(), "vfio_pci.ids");
    assert_eq!(ids.value(), Some("10de:2684,10de:22ba"));
    // Only the first `=` separates: the value may hold more.
    assert_eq!(karg("root=UUID=abc").value(), Some("UUID=abc"));
    assert_eq!(karg("foo=").value(), Some(""));
}

#[test]
fn rejects_whitespace_quotes_control_and_shell_characters() {
    for bad in [
        "",
        "iommu=pt quiet",
        "a\tb",
        "foo=\"bar\"",
        "foo='bar'",
        "foo=`id`",
        "foo=$HOME",
        "foo=1;reboot",
        "foo=a\\b",
        "foo=\u{7}",
        "foo=\n",
        "foo=é",
        "=value",
        // `--` hands the rest of the command line to init; `-x` reads as an option to rpm-ostree.
        "--",
        "-quiet",
        "a/b=1",
    ] {
        assert!(Karg::parse(bad).is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn error_says_what_is_allowed() {
    let err = Karg::parse("iommu=pt quiet").unwrap_err();
    assert!(err.contains("whitespace"), "{err}");
    let err = Karg::parse("a=$(reboot)").unwrap_err();
    assert!(err.contains("not allowed"), "{err}");
}

/// arch/x86/include/asm/setup.h: COMMAND_LINE_SIZE 2048, NUL included.
#[test]
fn an_argument_longer_than_the_x86_command_line_is_refused() {
    let long = format!("a={}", "x".repeat(COMMAND_LINE_MAX));
    let err = Karg::parse(&long).unwrap_err();
    assert!(err.contains("2047"), "{err}");
    assert!(Karg::parse(&format!("a={}", "x".repeat(COMMAND_LINE_MAX - 2))).is_ok());
}

/// kernel/params.c `parameqn`: `-` and `_` are the same in parameter names.
#[test]
fn dashes_and_underscores_in_names_are_the_same_parameter() {
    assert!(karg("vfio-pci.ids=1:2").same_as(&karg("vfio_pci.ids=1:2")));
    assert_eq!(karg("vfio-pci.ids=1:2").normalized_key(), "vfio_pci.ids");
    assert!(karg("vfio-pci.ids=1:2").is(&params::VFIO_PCI_IDS));
    // Values are not normalised: they are data.
    assert!(!karg("a=x-y").same_as(&karg("a=x_y")));
}

/// A module string parameter (vfio_pci.ids) and a plain `__setup` flag keep their last value: two values
/// cannot both be meant.
#[test]
fn last_wins_parameters_conflict_on_any_other_value() {
    let plan = list(&["vfio_pci.ids=1:2", "quiet"]);
    assert!(plan.conflict_with(&karg("vfio-pci.ids=1:3")).is_some());
    assert!(plan.conflict_with(&karg("quiet=0")).is_some());
    assert!(plan.conflict_with(&karg("vfio_pci.ids=1:2")).is_none());
    // kernel/module/main.c: module_blacklist is one string, the last one counts.
    let blacklist = list(&["module_blacklist=nouveau"]);
    assert!(
        blacklist
            .conflict_with(&karg("module_blacklist=radeon"))
            .is_some()
    );
}

/// arch/x86/kernel/pci-dma.c, drivers/iommu/intel/iommu.c and drivers/iommu/amd/init.c parse every
/// occurrence's comma list in full: tokens add up, and only contradicting ones conflict.
#[test]
fn iommu_tokens_add_up_and_only_contradictions_conflict() {
    let intel = list(&["intel_iommu=on", "iommu=pt"]);
    for fine in [
        "intel_iommu=sm_on",
        "intel_iommu=igfx_off",
        "intel-iommu=on,strict",
        "iommu=pt",
        "amd_iommu=force_isolation",
    ] {
        assert_eq!(intel.conflict_with(&karg(fine)), None, "{fine}");
    }
    let nopt = intel.conflict_with(&karg("iommu=nopt")).unwrap();
    assert_eq!(nopt.planned, Some(karg("iommu=pt")));
    assert!(nopt.reason.contains("pt and nopt"), "{}", nopt.reason);
    assert!(
        intel
            .conflict_with(&karg("intel_iommu=igfx_off,off"))
            .is_some()
    );
    let sm = list(&["intel_iommu=sm_on"]);
    assert!(sm.conflict_with(&karg("intel_iommu=sm_off")).is_some());
}

/// Bazzite adds `amd_iommu=off` on some handhelds: no passthrough can work beside it, even though the plan
/// sets no `amd_iommu=` token of its own (there is no `amd_iommu=on`).
#[test]
fn any_iommu_off_contradicts_the_plan_whatever_it_sets() {
    let amd = list(&["iommu=pt", "kvm_amd.npt=1"]);
    for off in [
        "amd_iommu=off",
        "intel_iommu=off",
        "iommu=off",
        "amd_iommu=fullflush,off",
    ] {
        let conflict = amd.conflict_with(&karg(off)).expect(off);
        assert_eq!(conflict.planned, None);
        assert!(
            conflict.reason.contains("turns the IOMMU off"),
            "{}",
            conflict.reason
        );
    }
}

/// drivers/video/cmdline.c: each `video=` value belongs to the driver named before its `:`.
#[test]
fn video_values_conflict_only_for_the_same_driver() {
    let plan = list(&["video=efifb:off", "video=vesafb:off"]);
    assert!(plan.conflict_with(&karg("video=simplefb:off")).is_none());
    assert!(plan.conflict_with(&karg("video=efifb:on")).is_some());
}

/// kmod reads every `modprobe.blacklist`, dracut every `rd.driver.pre`, the console every `console=`.
#[test]
fn accumulating_parameters_never_conflict() {
    let plan = list(&[
        "console=tty0",
        "rd.driver.pre=vfio-pci",
        "modprobe.blacklist=nouveau",
    ]);
    assert!(plan.conflict_with(&karg("console=ttyS0,115200")).is_none());
    assert!(plan.conflict_with(&karg("rd.driver.pre=vfio")).is_none());
    assert!(
        plan.conflict_with(&karg("modprobe.blacklist=radeon"))
            .is_none()
    );
}

#[test]
fn list_keeps_order_drops_duplicates_and_refuses_conflicts() {
    let mut kargs = Kargs::default();
    kargs.push(karg("intel_iommu=on")).unwrap();
    kargs.push(karg("iommu=pt")).unwrap();
    kargs.push(karg("intel-iommu=on")).unwrap();
    let err = kargs.push(karg("iommu=nopt")).unwrap_err();
    assert_eq!(err.planned, Some(karg("iommu=pt")));
    kargs.push(karg("intel_iommu=sm_on")).unwrap();
    assert_eq!(
        kargs.as_strings(),
        ["intel_iommu=on", "iommu=pt", "intel_iommu=sm_on"]
    );
    assert_eq!(
        kargs.command_line_len(),
        "intel_iommu=on iommu=pt intel_iommu=sm_on".len()
    );
}

#[test]
fn adding_many_arguments_stays_linear() {
    let mut kargs = Kargs::default();
    let start = std::time::Instant::now();
    for i in 0..20_000 {
        kargs.push(karg(&format!("p{i}=1"))).unwrap();
        kargs.push(karg(&format!("console=tty{i}"))).unwrap();
    }
    assert_eq!(kargs.iter().count(), 40_000);
    // Quadratic work here took half a minute; linear takes milliseconds even unoptimised.
    assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
}

#[test]
fn host_command_lines_satisfy_plans_by_the_kernels_rules() {
    let on = karg("intel_iommu=on");
    assert!(Kargs::satisfied_by(&host("intel_iommu=sm_on,on"), &on));
    assert!(Kargs::satisfied_by(
        &host("intel_iommu=igfx_off intel-iommu=on"),
        &on
    ));
    assert!(!Kargs::satisfied_by(&host("intel_iommu=sm_on"), &on));
    let ids = karg("vfio_pci.ids=10de:2684");
    assert!(Kargs::satisfied_by(
        &host("vfio-pci.ids=1:2 vfio_pci.ids=10de:2684"),
        &ids
    ));
    assert!(
        !Kargs::satisfied_by(&host("vfio_pci.ids=10de:2684 vfio_pci.ids=1:2"), &ids),
        "the last vfio_pci.ids is the one the module keeps"
    );
    let pre = karg("rd.driver.pre=vfio-pci");
    assert!(Kargs::satisfied_by(
        &host("rd.driver.pre=vfio-pci rd.driver.pre=x"),
        &pre
    ));
}

#[test]
fn splits_host_command_lines_keeping_quoted_values() {
    let words = split_cmdline("BOOT_IMAGE=(hd0,gpt2)/vmlinuz ro  dyndbg=\"file x +p\" iommu=off\n");
    let words: Vec<&str> = words.iter().map(HostKarg::as_str).collect();
    assert_eq!(
        words,
        [
            "BOOT_IMAGE=(hd0,gpt2)/vmlinuz",
            "ro",
            "dyndbg=\"file x +p\"",
            "iommu=off"
        ]
    );
}

#[test]
fn host_arguments_from_records_are_one_word_and_never_an_option() {
    assert!(HostKarg::parse("dyndbg=\"file x +p\"").is_ok());
    assert!(HostKarg::parse("iommu=off").is_ok());
    for bad in [
        "",
        "a b",
        "--unchanged-exit-77",
        "-x",
        "dyndbg=\"open",
        "a=\u{1b}",
        "a\nb",
    ] {
        assert!(HostKarg::parse(bad).is_err(), "{bad:?} accepted");
    }
    let json: Result<HostKarg, _> = serde_json::from_str("\"--delete=root\"");
    assert!(json.is_err());
}

#[test]
fn a_contradicting_token_argument_keeps_its_other_tokens() {
    let plan = list(&["intel_iommu=on", "iommu=pt"]);
    let kept = |h: &str| {
        plan.remainder_of(&HostKarg::parse(h).unwrap())
            .map(|k| k.to_string())
    };
    assert_eq!(
        kept("intel_iommu=off,igfx_off").as_deref(),
        Some("intel_iommu=igfx_off")
    );
    assert_eq!(kept("iommu=nopt"), None);
    assert_eq!(
        kept("amd_iommu=off,fullflush").as_deref(),
        Some("amd_iommu=fullflush")
    );
    assert_eq!(
        kept("quiet=0"),
        None,
        "last-wins parameters have no tokens to keep"
    );
}
