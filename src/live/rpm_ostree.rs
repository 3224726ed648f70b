//! `rpm-ostree` invocations, built as argument vectors and run through [`crate::cmd`] (which also decides that
//! exit 77 after `--unchanged-exit-77` means "unchanged").
//!
//! Each [`Invocation`] is also what `apply --dry-run` prints, so the dry run shows exactly what would run.

use std::fmt;

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use crate::cmd::Cmd;
use crate::cmd::Completion;
use crate::kargs::HostKarg;

/// How rpm-ostree is reached: the program on PATH, pointed at the sysroot being changed.
#[derive(Debug, Clone)]
pub(crate) struct RpmOstree {
    program: String,
    /// `--sysroot`, passed only when it is not `/` (rpm-ostree's own default).
    sysroot: Option<Utf8PathBuf>,
}

/// One rpm-ostree command line (without the program name).
/// Whether rpm-ostree regenerates the initramfs on the host (`rpm-ostree initramfs --enable/--disable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Regeneration {
    Enable,
    Disable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub(crate) struct Invocation(pub(crate) Vec<String>);

impl RpmOstree {
    pub(crate) fn new(sysroot: &Utf8Path) -> RpmOstree {
        RpmOstree {
            program: "rpm-ostree".into(),
            sysroot: (sysroot != "/").then(|| sysroot.to_owned()),
        }
    }

    /// `words` (the subcommand), then `--sysroot` when needed, then the subcommand's arguments.
    fn build(&self, words: &[&str], rest: impl IntoIterator<Item = String>) -> Invocation {
        let mut args: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        if let Some(sysroot) = &self.sysroot {
            args.push(format!("--sysroot={sysroot}"));
        }
        args.extend(rest);
        Invocation(args)
    }

    /// All karg changes in one transaction: one new deployment, one reboot.
    pub(crate) fn kargs(&self, append: &[HostKarg], delete: &[HostKarg]) -> Invocation {
        let delete = delete.iter().map(|k| format!("--delete-if-present={k}"));
        let append = append.iter().map(|k| format!("--append-if-missing={k}"));
        let rest = delete
            .chain(append)
            .chain(["--unchanged-exit-77".to_owned()]);
        self.build(&["kargs"], rest)
    }

    pub(crate) fn initramfs(&self, regeneration: Regeneration) -> Invocation {
        let flag = match regeneration {
            Regeneration::Enable => "--enable",
            Regeneration::Disable => "--disable",
        };
        self.build(&["initramfs"], [flag.to_owned()])
    }

    /// `initramfs --enable` again with the origin's current args: rpm-ostree regenerates without changing them.
    ///
    /// rpm-ostree documents `--arg` as deprecated in favour of dracut config in /etc, which is what apply
    /// writes; but the args are already in this origin, and passing the same list again is the only call
    /// rpm-ostree accepts to regenerate while regeneration is on. Should a future rpm-ostree drop `--arg`, this
    /// call fails loudly (apply reports the step as not applied and the next apply retries it); the fix then
    /// is to plan [`super::changes::InitramfsRebuild::NotPossible`] instead, which tells the user to run
    /// `--disable` and `--enable`.
    pub(crate) fn initramfs_rerun(&self, args: &[String]) -> Invocation {
        let rest =
            std::iter::once("--enable".to_owned()).chain(args.iter().map(|a| format!("--arg={a}")));
        self.build(&["initramfs"], rest)
    }

    /// Replaces base packages by local package files of the same names.
    pub(crate) fn override_replace(&self, packages: &[Utf8PathBuf]) -> Invocation {
        self.build(
            &["override", "replace"],
            packages.iter().map(|p| p.to_string()),
        )
    }

    /// Removes base packages and installs local ones of other names in the same transaction.
    pub(crate) fn override_remove_install(
        &self,
        remove: &[String],
        install: &[Utf8PathBuf],
    ) -> Invocation {
        let install = install.iter().map(|p| format!("--install={p}"));
        self.build(
            &["override", "remove"],
            remove.iter().cloned().chain(install),
        )
    }

    /// Undoes overrides of the named packages and removes the layered packages `uninstall` in the same
    /// transaction (the override commands take `--uninstall` like `--install`), so no deployment in between
    /// is left without a kernel.
    pub(crate) fn override_reset(&self, names: &[String], uninstall: &[String]) -> Invocation {
        let uninstall = uninstall.iter().map(|n| format!("--uninstall={n}"));
        self.build(
            &["override", "reset"],
            names.iter().cloned().chain(uninstall),
        )
    }

    /// The program with an invocation's arguments.
    fn command(&self, invocation: &Invocation) -> Cmd {
        Cmd::new(&self.program).args(&invocation.0)
    }

    /// Runs a command; its output goes to the user's stderr as it comes (rpm-ostree reports progress there).
    pub(crate) fn run(&self, invocation: &Invocation) -> Result<Completion> {
        self.command(invocation).run()
    }

    /// Whether rpm-ostree is in the middle of a transaction (`"transaction"` is null when idle).
    pub(crate) fn transaction_in_progress(&self) -> Result<Option<String>> {
        let status = self.build(&["status"], ["--json".to_owned()]);
        let json: serde_json::Value = self.command(&status).read_json()?;
        Ok(transaction_of(&json))
    }

    /// The command line as a user would type it.
    pub(crate) fn display(&self, invocation: &Invocation) -> String {
        std::iter::once(self.program.as_str())
            .chain(invocation.0.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Display for Invocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

fn transaction_of(status: &serde_json::Value) -> Option<String> {
    match status.get("transaction") {
        None | Some(serde_json::Value::Null) => None,
        Some(t) => Some(t.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn karg(s: &str) -> HostKarg {
        HostKarg::parse(s).unwrap()
    }

    #[test]
    fn kargs_go_in_one_call_deletions_first() {
        let r = RpmOstree::new(Utf8Path::new("/"));
        let inv = r.kargs(
            &[karg("iommu=pt"), karg("intel_iommu=on")],
            &[karg("iommu=off")],
        );
        assert_eq!(
            inv.0,
            [
                "kargs",
                "--delete-if-present=iommu=off",
                "--append-if-missing=iommu=pt",
                "--append-if-missing=intel_iommu=on",
                "--unchanged-exit-77"
            ]
        );
    }

    #[test]
    fn sysroot_is_passed_only_when_not_slash() {
        let r = RpmOstree::new(Utf8Path::new("/mnt/s"));
        assert_eq!(
            r.initramfs(Regeneration::Enable).0,
            ["initramfs", "--sysroot=/mnt/s", "--enable"]
        );
        assert_eq!(
            r.display(&r.initramfs(Regeneration::Disable)),
            "rpm-ostree initramfs --sysroot=/mnt/s --disable"
        );
    }

    #[test]
    fn a_null_transaction_is_idle() {
        let idle: serde_json::Value = serde_json::json!({"deployments": [], "transaction": null});
        assert_eq!(transaction_of(&idle), None);
        let busy =
            serde_json::json!({"transaction": ["kargs", "/org/projectatomic/rpmostree1/fedora"]});
        assert!(transaction_of(&busy).unwrap().contains("kargs"));
    }
}
