//! What the host booted with: the planned kernel arguments, the modules the initramfs loads, and the modprobe
//! configuration that decides how modules load.

use super::{APPLY_FIX, Facts};
use crate::checks::{Check, Finding};
use crate::host::kernel;
use crate::host::modprobe::{self, Kind};
use crate::kargs::params::{RD_DRIVER_PRE, RD_PASSTHRU_VFIO_ADDRESSES, VFIO_PCI_IDS};
use crate::kargs::{HostKarg, Karg, Kargs};
use crate::plan::{LIVE_MODPROBE_CONF, MODPROBE_CONF, VFIO_DRIVERS};

pub(super) static KARG: Check<Facts> = Check {
    name: "karg",
    verifies: "each planned kernel argument is in /proc/cmdline, as the kernel reads repeated \
               arguments",
    requires: &[],
    judge: |facts, _| {
        Ok(facts
            .plan
            .kargs
            .iter()
            .map(|k| karg(k, &facts.plan.kargs, &facts.cmdline).about(k))
            .collect())
    },
};

pub(super) static KARG_CONFLICTS: Check<Facts> = Check {
    name: "karg-conflicts",
    verifies: "no argument in /proc/cmdline defeats the plan as a whole (iommu=off, amd_iommu=off)",
    requires: &[],
    judge: |facts, _| {
        Ok(plan_wide_conflicts(&facts.plan.kargs, &facts.cmdline)
            .into_iter()
            .collect())
    },
};

pub(super) static MODULE: Check<Facts> = Check {
    name: "module",
    verifies: "the VFIO drivers and the planned out-of-tree modules are loaded (or built in)",
    requires: &[],
    judge: |facts, earlier| {
        let mut findings = Vec::new();
        // rd.driver.pre=vfio-pci is what loads them from the initramfs (vfio-pci pulls in the other two).
        let early = facts
            .planned_karg(&RD_DRIVER_PRE)
            .and_then(|k| earlier.failed(&KARG, Some(&k)));
        for name in &facts.plan.initramfs_drivers {
            findings.push(module(facts, name, "VFIO").because(early.clone()));
        }
        for plan in &facts.plan.modules {
            for name in plan.kernel_modules() {
                findings.push(module(facts, name, plan.label()));
            }
        }
        Ok(findings)
    },
};

pub(super) static MODPROBE_CONFLICTS: Check<Facts> = Check {
    name: "modprobe",
    verifies: "no modprobe.d line or blacklist argument keeps a VFIO driver or a planned module \
               from loading",
    requires: &[],
    judge: |facts, _| {
        let mut modules: Vec<String> = VFIO_DRIVERS.iter().map(|m| m.to_string()).collect();
        modules.push("vfio_pci_core".into());
        modules.extend(
            facts
                .plan
                .modules
                .iter()
                .flat_map(|m| m.kernel_modules().into_iter().map(kernel::module_name)),
        );
        let mut findings = Vec::new();
        for module in &modules {
            findings.extend(fights(&facts.modprobe, module));
        }
        findings.extend(foreign_ids(facts));
        if findings.is_empty() {
            findings.push(Finding::pass(format!(
                "no line of the {} modprobe.d files read fights the plan",
                facts.modprobe.files.len()
            )));
        }
        Ok(findings)
    },
};

pub(super) static MODPROBE_SOFTDEP: Check<Facts> = Check {
    name: "softdep",
    verifies: "modprobe loads vfio-pci before each GPU driver the plan makes wait (the first \
               softdep line of a module is the one kmod uses)",
    requires: &[],
    judge: |facts, _| {
        let planned = facts
            .plan
            .files
            .iter()
            .filter(|f| f.path == MODPROBE_CONF)
            .flat_map(|f| modprobe::parse(&f.content, f.path.as_str()));
        Ok(planned
            .filter_map(|d| match d.kind {
                Kind::Softdep { module, pre, .. } => Some((module, pre)),
                _ => None,
            })
            .map(|(module, pre)| softdep(facts, &module, &pre).about(&module))
            .collect())
    },
};

fn karg(planned: &Karg, plan: &Kargs, cmdline: &[HostKarg]) -> Finding {
    if Kargs::satisfied_by(cmdline, planned) {
        return Finding::pass("in /proc/cmdline");
    }
    let rival = cmdline.iter().find(|host| {
        plan.conflict_with(*host)
            .is_some_and(|c| c.planned.as_ref() == Some(planned))
    });
    match rival {
        Some(other) => Finding::fail(
            format!("/proc/cmdline has {other} instead"),
            format!("remove {other} from the host's kernel arguments; {APPLY_FIX}"),
        ),
        None => Finding::fail("missing from /proc/cmdline", APPLY_FIX),
    }
}

/// Host arguments that defeat the plan as a whole, whatever it sets (`amd_iommu=off`).
fn plan_wide_conflicts(plan: &Kargs, cmdline: &[HostKarg]) -> Option<Finding> {
    let found: Vec<String> = cmdline
        .iter()
        .filter_map(|host| {
            let conflict = plan.conflict_with(host)?;
            conflict
                .planned
                .is_none()
                .then(|| format!("{host}: {}", conflict.reason))
        })
        .collect();
    (!found.is_empty()).then(|| {
        Finding::fail(
            found.join("; "),
            format!("remove them from the host's kernel arguments; {APPLY_FIX}"),
        )
    })
}

fn module(facts: &Facts, name: &str, purpose: &str) -> Finding {
    let finding = match kernel::module_present(&facts.root, &facts.loaded, name) {
        true => Finding::pass("loaded"),
        false => Finding::fail(
            format!("{name} ({purpose}) is not loaded"),
            format!("{APPLY_FIX}; `modprobe MODULE` shows whether one loads at all"),
        ),
    };
    finding.about(kernel::module_name(name))
}

/// The modprobe configuration's lines that keep `module` from loading, or only look as if they did.
fn fights(config: &modprobe::ModprobeConfig, module: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    if let Some(install) = config.install(module) {
        let Kind::Install { command, .. } = &install.kind else {
            unreachable!("install() finds install lines")
        };
        // `install M … modprobe --ignore-install M` runs something first and then loads M after all.
        if !command.contains("--ignore-install") {
            findings.push(
                Finding::fail(
                    format!(
                        "`{}` ({}): modprobe runs that instead of loading {module}",
                        install.kind.describe(),
                        install.source
                    ),
                    format!("remove the install line ({})", install.source),
                )
                .about(module),
            );
        }
    }
    for blacklist in config.blacklists(module) {
        findings.push(
            match blacklist.kind {
                Kind::KernelBlacklist(_) => Finding::fail(
                    format!(
                        "{}: the kernel refuses to load {module} at all",
                        blacklist.source
                    ),
                    format!(
                        "remove {module} from module_blacklist= in the host's kernel arguments"
                    ),
                ),
                _ => Finding::warn(
                    format!(
                        "`{}` ({}) stops only loading through an alias: rd.driver.pre and \
                         modules-load.d load it by name, so it does nothing here but mislead",
                        blacklist.kind.describe(),
                        blacklist.source
                    ),
                    format!("remove the blacklist of {module} ({})", blacklist.source),
                ),
            }
            .about(module),
        );
    }
    findings
}

/// `options vfio-pci ids=…` that name devices the plan does not: a loadable vfio-pci takes them (the kernel
/// argument comes later and wins only for what it sets), a built-in one ignores modprobe.d altogether.
fn foreign_ids(facts: &Facts) -> Vec<Finding> {
    let planned: Vec<String> = facts
        .plan
        .vfio
        .ids
        .iter()
        .map(|id| id.to_string())
        .collect();
    facts
        .modprobe
        .options("vfio_pci")
        .filter_map(|(directive, options)| {
            let ids = options.iter().find_map(|o| o.strip_prefix("ids="))?;
            let foreign: Vec<&str> = ids
                .split(',')
                .filter(|id| !planned.iter().any(|p| p.eq_ignore_ascii_case(id)))
                .collect();
            (!foreign.is_empty()).then(|| {
                Finding::warn(
                    format!(
                        "`{}` ({}) binds {} to vfio-pci, which the plan does not pass",
                        directive.kind.describe(),
                        directive.source,
                        foreign.join(", ")
                    ),
                    format!(
                        "remove the line ({}): the plan's kernel argument binds its devices",
                        directive.source
                    ),
                )
                .about("vfio_pci")
            })
        })
        .collect()
}

/// The first softdep line of `module`, which is the one kmod uses, must load each of `pre` first.
fn softdep(facts: &Facts, module: &str, pre: &[String]) -> Finding {
    let Some(first) = facts.modprobe.softdep(module) else {
        return Finding::warn(
            format!(
                "no softdep line for {module}: the plan's {} (or, in live mode, {}) is not in \
                 effect",
                MODPROBE_CONF, LIVE_MODPROBE_CONF
            ),
            APPLY_FIX,
        );
    };
    let Kind::Softdep { pre: effective, .. } = &first.kind else {
        unreachable!("softdep() finds softdep lines")
    };
    let missing: Vec<&str> = pre
        .iter()
        .filter(|m| !effective.contains(m))
        .map(String::as_str)
        .collect();
    match missing.is_empty() {
        true => Finding::pass(format!("`{}` ({})", first.kind.describe(), first.source)),
        false => Finding::warn(
            format!(
                "kmod uses the first softdep line of {module}, `{}` ({}), which does not load {} \
                 first; the plan's line comes later and is ignored",
                first.kind.describe(),
                first.source,
                missing.join(", ")
            ),
            format!(
                "put {} into that line's pre: list, in a file of the same name under \
                 /etc/modprobe.d (which hides {})",
                missing.join(" "),
                first
                    .source
                    .rsplit_once(':')
                    .map_or(first.source.as_str(), |(f, _)| f)
            ),
        ),
    }
}

/// The planned `vfio_pci.ids`, `rd.passthru.vfio_addresses` and `rd.driver.pre` kargs' outcome names, for the
/// checks whose failures they explain.
pub(super) fn binding_kargs(facts: &Facts) -> Vec<String> {
    [&VFIO_PCI_IDS, &RD_PASSTHRU_VFIO_ADDRESSES, &RD_DRIVER_PRE]
        .into_iter()
        .filter_map(|p| facts.planned_karg(p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn karg_of(s: &str) -> Karg {
        Karg::parse(s).unwrap()
    }

    fn planned(words: &[&str]) -> Kargs {
        let mut kargs = Kargs::default();
        for w in words {
            kargs.push(karg_of(w)).unwrap();
        }
        kargs
    }

    #[test]
    fn kargs_match_whatever_the_spelling_and_name_conflicts() {
        let plan = planned(&["iommu=pt", "intel_iommu=on", "vfio_pci.ids=10de:1401"]);
        let cmdline = crate::kargs::split_cmdline("ro vfio-pci.ids=10de:1401 iommu=nopt");
        let status = |k: &str, cmdline: &[HostKarg]| karg(&karg_of(k), &plan, cmdline);
        assert_eq!(
            status("vfio_pci.ids=10de:1401", &cmdline).status(),
            crate::checks::Status::Pass
        );
        let conflict = status("iommu=pt", &cmdline);
        assert_eq!(conflict.status(), crate::checks::Status::Fail);
        assert!(
            format!("{conflict:?}").contains("iommu=nopt"),
            "{conflict:?}"
        );
        let missing = status("intel_iommu=on", &cmdline);
        assert!(format!("{missing:?}").contains("missing from /proc/cmdline"));
        // Tokens add up: sm_on beside on is the same request.
        let tokens = crate::kargs::split_cmdline("intel_iommu=sm_on,on");
        assert_eq!(
            status("intel_iommu=on", &tokens).status(),
            crate::checks::Status::Pass
        );
    }

    #[test]
    fn an_iommu_turned_off_on_the_host_fails_the_whole_plan() {
        let plan = planned(&["iommu=pt"]);
        let cmdline = crate::kargs::split_cmdline("ro iommu=pt amd_iommu=off");
        let check = plan_wide_conflicts(&plan, &cmdline).unwrap();
        assert_eq!(check.status(), crate::checks::Status::Fail);
        assert!(format!("{check:?}").contains("amd_iommu=off"), "{check:?}");
        assert!(plan_wide_conflicts(&plan, &crate::kargs::split_cmdline("iommu=pt")).is_none());
    }

    #[test]
    fn install_lines_fail_blacklists_only_warn() {
        let config = modprobe::ModprobeConfig {
            directives: modprobe::parse(
                "install vfio-pci /bin/false\nblacklist vfio_pci\ninstall vfio /sbin/modprobe \
                 --ignore-install vfio\n",
                "/etc/modprobe.d/x.conf",
            ),
            files: vec![],
        };
        let findings = fights(&config, "vfio_pci");
        let statuses: Vec<_> = findings.iter().map(|f| f.status()).collect();
        assert_eq!(
            statuses,
            [crate::checks::Status::Fail, crate::checks::Status::Warn]
        );
        assert!(fights(&config, "vfio").is_empty());
    }
}
