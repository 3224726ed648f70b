//! Plan + host state -> the minimal list of changes live mode makes. Pure: reads files, changes nothing.

use anyhow::Result;
use camino::Utf8PathBuf;
use serde::{Deserialize, Serialize};

use super::deployed_initramfs;
use super::deployment::{self, DeploymentState};
use super::state::LiveState;
use crate::config::KernelSource;
use crate::error::{ChecksFailed, InputError};
use crate::kargs::{HostKarg, Karg, Kargs};
use crate::plan::{ACS_KERNEL_PACKAGES, Plan};
use crate::root::Root;

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Changes {
    /// Every planned karg, in plan order (what `plan` shows).
    pub(crate) kargs: Vec<Karg>,
    /// Planned kargs the pending deployment lacks, and what is left of a host's token argument whose other
    /// tokens contradict the plan.
    pub(crate) append: Vec<HostKarg>,
    /// Host kargs that contradict the plan, removed with `--replace-conflicts`.
    pub(crate) delete: Vec<HostKarg>,
    pub(crate) conflicts: Vec<HostConflict>,
    pub(crate) files: Vec<FileChange>,
    /// Whether the initramfs the deployment shipped already does the job.
    pub(crate) deployed_initramfs: DeployedInitramfs,
    /// `rpm-ostree initramfs --enable` is needed (regeneration is off, and the deployed initramfs lacks VFIO).
    pub(crate) enable_initramfs: bool,
    /// Regeneration is already on and only the drop-ins change: the initramfs must be rebuilt to read them.
    pub(crate) rebuild_initramfs: Option<InitramfsRebuild>,
    pub(crate) kernel: Option<KernelChange>,
    pub(crate) warnings: Vec<String>,
}

/// The pending deployment's initramfs, for the VFIO drivers the plan needs at boot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state", content = "why")]
pub(crate) enum DeployedInitramfs {
    /// rpm-ostree already regenerates it on the host from /etc.
    #[default]
    Regenerated,
    /// The one the image shipped holds the VFIO drivers and `rd.driver.pre=vfio-pci` loads them first: no
    /// regeneration, so the host stays upgradable with `bootc upgrade`.
    Suffices,
    /// The one the image shipped will not do; why.
    Lacks(String),
}

/// How the initramfs gets rebuilt when only /etc drop-ins changed and no other step makes a new deployment.
/// rpm-ostree re-runs `initramfs --enable` while regeneration is on only when the origin or the call has
/// `--arg=` values (it assumes a config file was edited); with none on either side it refuses with
/// "initramfs regeneration state is already enabled".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "how")]
pub(crate) enum InitramfsRebuild {
    /// `rpm-ostree initramfs --enable` again with the origin's own `--arg=` values, unchanged.
    Rerun { args: Vec<String> },
    /// No args to re-pass: the tool cannot trigger it without changing the user's settings.
    NotPossible,
}

/// What the user is told when the rebuild cannot be triggered (by apply or revert).
pub(crate) const INITRAMFS_NOT_REBUILT: &str = "the initramfs still lacks the change until it is \
     regenerated: regeneration is already on without arguments, and rpm-ostree then refuses to \
     re-run `initramfs --enable`. The /etc/dracut.conf.d and /etc/modprobe.d files as they are now \
     reach the initramfs with the next deployment rpm-ostree makes (e.g. `rpm-ostree upgrade`); to \
     do it now, run `rpm-ostree initramfs --disable` and then `rpm-ostree initramfs --enable`, \
     then reboot";

/// A host argument that contradicts the plan.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HostConflict {
    pub(crate) host: HostKarg,
    /// The planned argument it contradicts; `None` when it contradicts the plan as a whole (the IOMMU off).
    pub(crate) planned: Option<Karg>,
    pub(crate) reason: String,
    /// What of `host` stays when it goes: its tokens that contradict nothing.
    pub(crate) keep: Option<HostKarg>,
}

impl HostConflict {
    /// `iommu=off (planned iommu=pt)`, for messages.
    pub(crate) fn describe(&self) -> String {
        match &self.planned {
            Some(planned) => format!("{} (planned {planned}: {})", self.host, self.reason),
            None => format!("{} ({})", self.host, self.reason),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct FileChange {
    /// Host path (under --root when one is given).
    pub(crate) path: Utf8PathBuf,
    pub(crate) mode: u32,
    pub(crate) content: String,
    /// The file exists now with other content: it is backed up before it is replaced.
    pub(crate) replaces_existing: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub(crate) enum KernelChange {
    /// `rpm-ostree override replace` of local packages with the base kernel's package names.
    Replace { packages: Vec<Utf8PathBuf> },
    /// Packages of other names (`kernel-acs*`): remove the base kernel packages, install these.
    RemoveInstall {
        remove: Vec<String>,
        install: Vec<Utf8PathBuf>,
    },
}

impl Changes {
    pub(crate) fn needs_kargs_transaction(&self) -> bool {
        !self.append.is_empty() || !self.delete.is_empty()
    }
}

/// What apply does about host kargs that contradict the plan (`--replace-conflicts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostConflicts {
    /// Bad input that names them: rpm-ostree would append the planned karg beside the old one, and the kernel
    /// would keep whichever comes last.
    Refuse,
    /// Deleted, with what of them contradicts nothing appended again.
    Replace,
}

/// The changes that bring `pending` to the plan. `record` is what earlier applies did: kargs one of them added
/// are replaced without asking (they are ours), and its mark says whether the drop-ins changed after
/// `pending`'s initramfs was built.
pub(crate) fn compute(
    plan: &Plan,
    pending: &DeploymentState,
    root: &Root,
    conflicts: HostConflicts,
    record: &LiveState,
) -> Result<Changes> {
    let own = &record.kargs_appended;
    let initramfs_stale = record.initramfs_stale_in.as_deref() == Some(pending.id.as_str());
    if let Some(module) = plan.modules.first() {
        return Err(InputError::new(
            "vendor-reset",
            format!(
                "live mode cannot build the {} module: /usr is read-only on an rpm-ostree host and \
                 the module must be built against the deployed kernel. Use image mode \
                 (`passthru-image build`) or set vendor-reset.enabled = false",
                module.label()
            ),
        )
        .into());
    }
    if !plan.vfio.addresses.is_empty() {
        return Err(InputError::new(
            "vfio.addresses",
            "live mode cannot bind by address: the hook that sets driver_override before udev \
             starts is a dracut module, and /usr/lib/dracut/modules.d is read-only on an \
             rpm-ostree host. Use image mode (`passthru-image build`), or bind by ID (vfio.ids) \
             when no device the host keeps has the same ID",
        )
        .into());
    }
    let mut changes = Changes {
        kargs: plan.kargs.iter().cloned().collect(),
        ..Changes::default()
    };
    for host in &pending.kargs {
        if let Some(conflict) = plan.kargs.conflict_with(host) {
            changes.conflicts.push(HostConflict {
                host: host.clone(),
                planned: conflict.planned,
                reason: conflict.reason,
                keep: plan.kargs.remainder_of(host),
            });
        }
    }
    for conflict in &changes.conflicts {
        if !changes.delete.contains(&conflict.host) {
            changes.delete.push(conflict.host.clone());
        }
        if let Some(keep) = &conflict.keep
            && !changes.append.contains(keep)
        {
            changes.append.push(keep.clone());
        }
    }
    // What the kernel gets once the conflicting arguments are gone: a planned argument "present" only through
    // a host argument that goes must be appended.
    let staying: Vec<HostKarg> = pending
        .kargs
        .iter()
        .filter(|k| !changes.delete.contains(k))
        .chain(&changes.append)
        .cloned()
        .collect();
    for planned in &plan.kargs {
        if !Kargs::satisfied_by(&staying, planned) {
            changes.append.push(HostKarg::from(planned));
        }
    }
    let foreign: Vec<&HostConflict> = changes
        .conflicts
        .iter()
        .filter(|c| !own.contains(&c.host))
        .collect();
    if !foreign.is_empty() && conflicts == HostConflicts::Refuse {
        let list: Vec<String> = foreign.iter().map(|c| c.describe()).collect();
        return Err(InputError::new(
            "--replace-conflicts",
            format!(
                "the pending deployment has kernel arguments that contradict the plan: {}; pass \
                 --replace-conflicts to replace them, or change the config",
                list.join(", ")
            ),
        )
        .into());
    }

    for file in &plan.live_files {
        let path = file.path.clone();
        let current = root.read_optional(&path)?;
        if current.as_deref() != Some(file.content.as_str()) {
            changes.files.push(FileChange {
                path,
                mode: file.mode,
                content: file.content.clone(),
                replaces_existing: current.is_some(),
            });
        }
    }

    changes.deployed_initramfs = initramfs_decision(plan, pending);
    changes.enable_initramfs =
        !pending.regenerate_initramfs && changes.deployed_initramfs != DeployedInitramfs::Suffices;
    if let Some(kernel) = &plan.kernel {
        changes.kernel = kernel_change(&kernel.source, pending)?;
    }
    // A kargs or kernel transaction makes a new deployment, which regenerates the initramfs from the new /etc.
    // The drop-ins may already be in place from an apply that stopped, or could not rebuild, before.
    if pending.regenerate_initramfs
        && (!changes.files.is_empty() || initramfs_stale)
        && !changes.needs_kargs_transaction()
        && changes.kernel.is_none()
    {
        changes.rebuild_initramfs = Some(if pending.initramfs_args.is_empty() {
            InitramfsRebuild::NotPossible
        } else {
            InitramfsRebuild::Rerun {
                args: pending.initramfs_args.clone(),
            }
        });
    }
    let regenerates = changes.enable_initramfs || changes.rebuild_initramfs.is_some();
    if regenerates && !pending.initramfs_etc.is_empty() {
        return Err(ChecksFailed(format!(
            "the pending deployment copies /etc files into its initramfs with `rpm-ostree \
             initramfs-etc` ({}), and rpm-ostree refuses to regenerate the initramfs beside that, \
             which this plan needs. Stop tracking them (`rpm-ostree initramfs-etc --untrack-all`) \
             and run apply again, or use image mode (`passthru-image build`)",
            pending.initramfs_etc.join(", ")
        ))
        .into());
    }
    changes.warnings.extend(upgrade_blockers(&changes, pending));
    Ok(changes)
}

/// Whether the initramfs the deployment shipped can stay: it must hold the VFIO drivers, and vfio-pci must be
/// loaded from it before any GPU driver, which only `rd.driver.pre=vfio-pci` guarantees without our drop-ins in
/// it (the softdeps of /etc/modprobe.d reach it only by regeneration).
fn initramfs_decision(plan: &Plan, pending: &DeploymentState) -> DeployedInitramfs {
    if pending.regenerate_initramfs {
        return DeployedInitramfs::Regenerated;
    }
    if !plan.vfio.early_binding {
        return DeployedInitramfs::Lacks(
            "vfio.early-binding = false: only the regenerated initramfs carries the softdeps that \
             load vfio-pci first"
                .into(),
        );
    }
    match deployed_initramfs::modules_in(&pending.dir, &plan.initramfs_drivers) {
        deployed_initramfs::Contents::HasAll => DeployedInitramfs::Suffices,
        deployed_initramfs::Contents::Lacks(missing) => {
            DeployedInitramfs::Lacks(format!("it lacks {}", missing.join(", ")))
        }
        deployed_initramfs::Contents::Unreadable(why) => {
            DeployedInitramfs::Lacks(format!("it could not be read ({why})"))
        }
    }
}

/// What the user must know when apply changes the origin in ways `bootc upgrade` refuses.
fn upgrade_blockers(changes: &Changes, pending: &DeploymentState) -> Vec<String> {
    let mut used = Vec::new();
    if changes.enable_initramfs {
        used.push("`rpm-ostree initramfs --enable`");
    }
    if changes.kernel.is_some() {
        used.push("`rpm-ostree override replace` of the kernel");
    }
    if used.is_empty() {
        return Vec::new();
    }
    let image = pending
        .container_image
        .as_ref()
        .map(|image| {
            format!(
                " This deployment follows the container image {image}: image mode (`passthru-image \
                 build`) fits it better."
            )
        })
        .unwrap_or_default();
    vec![format!(
        "{} record client-side changes in the deployment's origin, and `bootc upgrade` refuses a \
         deployment with them until `passthru-image revert` (or `rpm-ostree initramfs --disable` / \
         `override reset`) undoes them.{image}",
        used.join(" and ")
    )]
}

/// The kernel packages still to install; `None` when the pending deployment already has them.
pub(crate) fn kernel_change(
    source: &KernelSource,
    pending: &DeploymentState,
) -> Result<Option<KernelChange>> {
    let (dir, files) = match source {
        KernelSource::Repo { url } => {
            return Err(InputError::new(
                "acs-override.repo",
                format!(
                    "live mode replaces the kernel from local packages only ({url} would have to \
                     become a system repo first); download the RPMs and set acs-override.packages, \
                     or use image mode"
                ),
            )
            .into());
        }
        KernelSource::Packages { dir, files } => (dir, files),
    };
    let mut paths = Vec::new();
    let mut stems = Vec::new();
    for file in files {
        let Some(stem) = file.name.strip_suffix(".rpm") else {
            return Err(InputError::new(
                "acs-override.packages",
                format!(
                    "{} is not an .rpm; an rpm-ostree host installs RPMs only",
                    file.name
                ),
            )
            .into());
        };
        file.read_checked(dir)?;
        paths.push(dir.join(&file.name));
        stems.push(stem.to_owned());
    }
    let recorded = |list: &[String]| {
        stems
            .iter()
            .all(|stem| deployment::lists_local_package(list, stem))
    };
    let renamed = stems.iter().any(|s| s.starts_with("kernel-acs"));
    if renamed {
        if recorded(&pending.requested_local) {
            return Ok(None);
        }
        Ok(Some(KernelChange::RemoveInstall {
            // The base packages an ACS kernel build replaces when its packages carry other names.
            remove: ACS_KERNEL_PACKAGES.iter().map(|s| s.to_string()).collect(),
            install: paths,
        }))
    } else if recorded(&pending.replaced_local) {
        Ok(None)
    } else {
        Ok(Some(KernelChange::Replace { packages: paths }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, CpuChoice};

    fn plan() -> Plan {
        let mut config = Config::default();
        config.cpu.vendor = CpuChoice::Amd;
        Plan::resolve(&config, &crate::plan::Target::Image).unwrap()
    }

    fn pending(kargs: &str) -> DeploymentState {
        DeploymentState {
            osname: "fedora".into(),
            id: "abc.0".into(),
            kargs: super::super::deployment::host_kargs(kargs),
            regenerate_initramfs: false,
            initramfs_args: Vec::new(),
            initramfs_etc: Vec::new(),
            dir: "/nonexistent/deploy".into(),
            container_image: None,
            replaced_local: Vec::new(),
            removed: Vec::new(),
            requested_local: Vec::new(),
        }
    }

    fn empty_root() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap());
        (dir, root)
    }

    /// The changes of a first apply: nothing is recorded yet.
    fn first_apply(
        plan: &Plan,
        pending: &DeploymentState,
        root: &Root,
        conflicts: HostConflicts,
    ) -> Result<Changes> {
        compute(plan, pending, root, conflicts, &LiveState::default())
    }

    fn host_karg(text: &str) -> HostKarg {
        HostKarg::parse(text).unwrap()
    }

    fn texts(kargs: &[HostKarg]) -> Vec<&str> {
        kargs.iter().map(HostKarg::as_str).collect()
    }

    #[test]
    fn addresses_are_refused_pointing_to_image_mode() {
        let (_dir, root) = empty_root();
        let mut config = Config::default();
        config.cpu.vendor = CpuChoice::Amd;
        config.vfio.addresses = vec!["0000:02:00.0".parse().unwrap()];
        let plan = Plan::resolve(&config, &crate::plan::Target::Image).unwrap();
        let err = first_apply(&plan, &pending("rw"), &root, HostConflicts::Refuse).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        let text = err.to_string();
        assert!(
            text.contains("vfio.addresses") && text.contains("image mode"),
            "{text}"
        );
    }

    #[test]
    fn appends_only_what_is_missing_whatever_the_spelling() {
        let (_dir, root) = empty_root();
        let host = pending("rw iommu=force,pt kvm-amd.npt=1");
        let changes = first_apply(&plan(), &host, &root, HostConflicts::Refuse).unwrap();
        let append = texts(&changes.append);
        assert!(!append.contains(&"kvm_amd.npt=1") && !append.contains(&"iommu=pt"));
        assert!(append.contains(&"kvm_amd.avic=1"));
        assert!(changes.enable_initramfs);
    }

    #[test]
    fn conflicts_need_the_flag_unless_the_karg_is_ours() {
        let (_dir, root) = empty_root();
        let host = pending("rw iommu=nopt");
        let err = first_apply(&plan(), &host, &root, HostConflicts::Refuse).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        assert!(
            err.to_string().contains("iommu=nopt (planned iommu=pt"),
            "{err}"
        );
        let changes = first_apply(&plan(), &host, &root, HostConflicts::Replace).unwrap();
        assert_eq!(texts(&changes.delete), ["iommu=nopt"]);
        assert!(texts(&changes.append).contains(&"iommu=pt"));
        // A value an earlier apply wrote is replaced without asking.
        let changes = compute(
            &plan(),
            &host,
            &root,
            HostConflicts::Refuse,
            &LiveState {
                kargs_appended: vec![host_karg("iommu=nopt")],
                ..LiveState::default()
            },
        )
        .unwrap();
        assert_eq!(texts(&changes.delete), ["iommu=nopt"]);
    }

    /// drivers/iommu/intel/iommu.c reads every token: a host's igfx_off stays beside the planned `on`, and a
    /// host's `off` goes (with --replace-conflicts) while the tokens beside it stay.
    #[test]
    fn host_iommu_tokens_that_do_not_contradict_the_plan_stay() {
        let (_dir, root) = empty_root();
        let mut config = Config::default();
        config.cpu.vendor = CpuChoice::Intel;
        let intel = Plan::resolve(&config, &crate::plan::Target::Image).unwrap();
        let host_kargs = pending("rw intel_iommu=igfx_off iommu=pt");
        let changes = first_apply(&intel, &host_kargs, &root, HostConflicts::Refuse).unwrap();
        assert!(changes.delete.is_empty(), "{:?}", changes.delete);
        assert!(texts(&changes.append).contains(&"intel_iommu=on"));

        let off = pending("rw intel_iommu=off,igfx_off");
        let changes = first_apply(&intel, &off, &root, HostConflicts::Replace).unwrap();
        assert_eq!(texts(&changes.delete), ["intel_iommu=off,igfx_off"]);
        let append = texts(&changes.append);
        assert!(append.contains(&"intel_iommu=igfx_off") && append.contains(&"intel_iommu=on"));
    }

    /// A handheld's `amd_iommu=off` contradicts an AMD plan that sets no amd_iommu token at all.
    #[test]
    fn amd_iommu_off_on_the_host_is_a_conflict() {
        let (_dir, root) = empty_root();
        let err = first_apply(
            &plan(),
            &pending("rw amd_iommu=off"),
            &root,
            HostConflicts::Refuse,
        )
        .unwrap_err();
        assert!(err.to_string().contains("turns the IOMMU off"), "{err}");
    }

    #[test]
    fn warns_image_based_hosts_about_bootc() {
        let (_dir, root) = empty_root();
        let mut host = pending("rw");
        host.container_image =
            Some("ostree-image-signed:docker://quay.io/fedora/fedora-bootc:44".into());
        let changes = first_apply(&plan(), &host, &root, HostConflicts::Refuse).unwrap();
        assert!(changes.warnings.iter().any(|w| w.contains("bootc upgrade")));
        host.regenerate_initramfs = true;
        let changes = first_apply(&plan(), &host, &root, HostConflicts::Refuse).unwrap();
        assert!(!changes.warnings.iter().any(|w| w.contains("bootc upgrade")));
    }
}
