//! The kernel parameters the tool plans or reasons about: one constant per name, and how the kernel (or dracut,
//! or kmod) reads a parameter given more than once. Conflicts follow from that, not from a guess: a parameter
//! whose last value wins conflicts with any other value; one whose comma-separated tokens add up conflicts only
//! where two tokens contradict each other.
//!
//! Names are written in the kernel's normal spelling; the kernel treats `-` and `_` in names alike
//! (kernel/params.c `parameqn`), and so does [`super::normalize_key`].

/// How repeated occurrences of a parameter combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repeats {
    /// The kernel keeps the last value (most `__setup` handlers and every module string or integer
    /// parameter, `vfio_pci.ids` and `module_blacklist` among them): two different values conflict.
    LastWins,
    /// Every occurrence counts on its own (kmod reads each `modprobe.blacklist`, dracut each `rd.driver.*`,
    /// the console driver each `console=`; `initcall_blacklist` adds each list to one blacklist).
    Accumulates,
    /// Each occurrence is a comma-separated token list, parsed in full every time, so the tokens of all
    /// occurrences add up (`iommu=`, `intel_iommu=`, `amd_iommu=`). Only `contradictions` conflict.
    Tokens(&'static TokenRules),
    /// `video=`: the framebuffer core keeps each value under the driver named before its first `:`
    /// (drivers/video/cmdline.c), and a driver takes the first value with its name: values for different
    /// drivers never conflict, two values for the same driver do.
    PerDriver,
}

/// The token rules of a [`Repeats::Tokens`] parameter.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TokenRules {
    /// Pairs of tokens that undo each other: whichever the kernel parses last wins, so both cannot be meant.
    pub(crate) contradictions: &'static [(&'static str, &'static str)],
    /// A token that turns the IOMMU off. No VFIO plan can work beside it, whatever tokens the plan itself sets
    /// for this parameter (a handheld's `amd_iommu=off` next to a plan that sets no `amd_iommu=` at all).
    pub(crate) iommu_off: &'static str,
}

/// A parameter name with its repeat rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Param {
    pub(crate) name: &'static str,
    pub(crate) repeats: Repeats,
}

/// arch/x86/kernel/pci-dma.c `iommu_setup`: `pt` sets the default domain to identity, `nopt` back to
/// translated; `off` disables every IOMMU.
pub(crate) const IOMMU: Param = Param {
    name: "iommu",
    repeats: Repeats::Tokens(&TokenRules {
        contradictions: &[("pt", "nopt")],
        iommu_off: "off",
    }),
};

/// drivers/iommu/intel/iommu.c `intel_iommu_setup`: on/off and scalable mode sm_on/sm_off are the pairs;
/// `igfx_off`, `strict`, `sp_off`, ... are independent tokens.
pub(crate) const INTEL_IOMMU: Param = Param {
    name: "intel_iommu",
    repeats: Repeats::Tokens(&TokenRules {
        contradictions: &[("on", "off"), ("sm_on", "sm_off")],
        iommu_off: "off",
    }),
};

/// drivers/iommu/amd/init.c `parse_amd_iommu_options`: there is no `on` (the driver logs
/// `AMD-Vi: Unknown option - 'on'`; AMD-Vi is on by default); page table v1/v2 is the one pair.
pub(crate) const AMD_IOMMU: Param = Param {
    name: "amd_iommu",
    repeats: Repeats::Tokens(&TokenRules {
        contradictions: &[("pgtbl_v1", "pgtbl_v2")],
        iommu_off: "off",
    }),
};

pub(crate) const KVM_AMD_NPT: Param = last_wins("kvm_amd.npt");
pub(crate) const KVM_AMD_AVIC: Param = last_wins("kvm_amd.avic");
pub(crate) const KVM_AMD_NESTED: Param = last_wins("kvm_amd.nested");
pub(crate) const KVM_AMD_SEV: Param = last_wins("kvm_amd.sev");
pub(crate) const KVM_IGNORE_MSRS: Param = last_wins("kvm.ignore_msrs");
pub(crate) const KVM_REPORT_IGNORED_MSRS: Param = last_wins("kvm.report_ignored_msrs");
pub(crate) const VIDEO: Param = Param {
    name: "video",
    repeats: Repeats::PerDriver,
};
pub(crate) const INITCALL_BLACKLIST: Param = accumulates("initcall_blacklist");
pub(crate) const NOUVEAU_MODESET: Param = last_wins("nouveau.modeset");
pub(crate) const AMDGPU_ASPM: Param = last_wins("amdgpu.aspm");
/// dracut loads every module of every `rd.driver.pre` before udev starts.
pub(crate) const RD_DRIVER_PRE: Param = accumulates("rd.driver.pre");
/// A module string parameter: the last one is the list vfio-pci binds by ID.
pub(crate) const VFIO_PCI_IDS: Param = last_wins("vfio_pci.ids");
/// Ours: the PCI functions vfio-pci claims by address (`driver_override`), read in the initramfs by the pre-udev
/// hook of layers/dracut/90passthru-vfio, which keeps the last occurrence. The name has a dot, so the kernel
/// takes it for a parameter of a module called `rd` (there is none): it neither logs it as unknown nor hands
/// it to init as an environment variable, and kmod has no such module to pass it to. The `rd.` prefix is
/// dracut's (and systemd's) mark for arguments the initramfs reads; `passthru.` keeps it apart from dracut's
/// own.
pub(crate) const RD_PASSTHRU_VFIO_ADDRESSES: Param = last_wins("rd.passthru.vfio_addresses");
/// The ACS-override patch parses its one string once: a second value replaces the first.
pub(crate) const PCIE_ACS_OVERRIDE: Param = last_wins("pcie_acs_override");

/// kmod reads every occurrence (libkmod-config.c): modules it will not load through an alias.
pub(crate) const MODPROBE_BLACKLIST: Param = accumulates("modprobe.blacklist");
/// The kernel's own list of modules it refuses to load at all: one string, the last one counts.
pub(crate) const MODULE_BLACKLIST: Param = last_wins("module_blacklist");

/// Parameters whose repeat rule is not "last wins", beyond the ones planned above.
const OTHERS: &[Param] = &[
    accumulates("console"),
    accumulates("rd.driver.post"),
    accumulates("rd.driver.blacklist"),
    MODPROBE_BLACKLIST,
];

const KNOWN: &[Param] = &[
    IOMMU,
    INTEL_IOMMU,
    AMD_IOMMU,
    VIDEO,
    INITCALL_BLACKLIST,
    RD_DRIVER_PRE,
];

const fn last_wins(name: &'static str) -> Param {
    Param {
        name,
        repeats: Repeats::LastWins,
    }
}

const fn accumulates(name: &'static str) -> Param {
    Param {
        name,
        repeats: Repeats::Accumulates,
    }
}

/// The repeat rule of a parameter by its normalised name; "last wins" for every parameter not listed, which is
/// what the kernel does for `__setup` and module parameters unless the handler collects values itself.
pub(crate) fn repeats(normalized_name: &str) -> Repeats {
    KNOWN
        .iter()
        .chain(OTHERS)
        .find(|p| p.name == normalized_name)
        .map_or(Repeats::LastWins, |p| p.repeats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_in_normal_spelling() {
        for param in KNOWN.iter().chain(OTHERS).chain([
            &KVM_AMD_NPT,
            &VFIO_PCI_IDS,
            &RD_PASSTHRU_VFIO_ADDRESSES,
            &PCIE_ACS_OVERRIDE,
            &NOUVEAU_MODESET,
        ]) {
            assert_eq!(super::super::normalize_key(param.name), param.name);
        }
    }

    #[test]
    fn unknown_parameters_keep_their_last_value() {
        assert_eq!(repeats("quiet"), Repeats::LastWins);
        assert_eq!(repeats("module_blacklist"), Repeats::LastWins);
        assert_eq!(repeats("modprobe.blacklist"), Repeats::Accumulates);
        assert!(matches!(repeats("amd_iommu"), Repeats::Tokens(_)));
    }
}
