//! Plan + host state -> the minimal list of changes live mode makes. Pure: reads files, changes nothing.

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use super::deployment::{self, DeploymentState};
use crate::config::KernelSource;
use crate::error::InputError;
use crate::kargs::Karg;
use crate::kargs_d;
use crate::plan::Plan;
use crate::root::Root;

/// Where live mode puts the plan's image files: the host's /etc, which rpm-ostree's initramfs regeneration
/// and modprobe read (/usr is read-only on a live host).
const LIVE_DIRS: &[(&str, &str)] = &[
    ("/usr/lib/dracut/dracut.conf.d", "/etc/dracut.conf.d"),
    ("/usr/lib/modprobe.d", "/etc/modprobe.d"),
];

/// The base packages an ACS kernel build replaces when its packages carry other names (`kernel-acs*`).
const BASE_KERNEL_PACKAGES: &[&str] = &[
    "kernel",
    "kernel-core",
    "kernel-modules",
    "kernel-modules-core",
    "kernel-modules-extra",
];

#[derive(Debug, Clone, Default, Serialize)]
pub struct Changes {
    /// Every planned karg, in plan order (what `plan` shows).
    pub kargs: Vec<Karg>,
    /// Planned kargs the pending deployment lacks.
    pub append: Vec<Karg>,
    /// Host kargs that set a planned parameter to another value, removed with `--replace-conflicts`.
    pub delete: Vec<Karg>,
    pub conflicts: Vec<Conflict>,
    pub files: Vec<FileChange>,
    /// `rpm-ostree initramfs --enable` is needed (regeneration is off in the pending deployment).
    pub enable_initramfs: bool,
    /// Regeneration is already on and only the drop-ins change: the initramfs must be rebuilt to read them.
    pub rebuild_initramfs: Option<InitramfsRebuild>,
    pub kernel: Option<KernelChange>,
    pub warnings: Vec<String>,
}

/// How the initramfs gets rebuilt when only /etc drop-ins changed and no other step makes a new deployment.
/// rpm-ostree re-runs `initramfs --enable` while regeneration is on only when the origin or the call has
/// `--arg=` values (it assumes a config file was edited); with none on either side it refuses with
/// "initramfs regeneration state is already enabled".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "how")]
pub enum InitramfsRebuild {
    /// `rpm-ostree initramfs --enable` again with the origin's own `--arg=` values, unchanged.
    Rerun { args: Vec<String> },
    /// No args to re-pass: the tool cannot trigger it without changing the user's settings.
    NotPossible,
}

/// What the user is told when the rebuild cannot be triggered (by apply or revert).
pub const INITRAMFS_NOT_REBUILT: &str = "the initramfs still lacks the change until it is regenerated: \
     regeneration is already on without arguments, and rpm-ostree then refuses to re-run `initramfs --enable`. \
     The /etc/dracut.conf.d and /etc/modprobe.d files as they are now reach the initramfs with the next deployment \
     rpm-ostree makes (e.g. `rpm-ostree upgrade`); to do it now, run `rpm-ostree initramfs --disable` and then \
     `rpm-ostree initramfs --enable`, then reboot";

#[derive(Debug, Clone, Serialize)]
pub struct Conflict {
    pub planned: Karg,
    pub host: Karg,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileChange {
    /// Host path (under --root when one is given).
    pub path: Utf8PathBuf,
    pub mode: u32,
    pub content: String,
    /// The file exists now with other content: it is backed up before it is replaced.
    pub replaces_existing: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum KernelChange {
    /// `rpm-ostree override replace` of local packages with the base kernel's package names.
    Replace { packages: Vec<Utf8PathBuf> },
    /// Packages of other names (`kernel-acs*`): remove the base kernel packages, install these.
    RemoveInstall {
        remove: Vec<String>,
        install: Vec<Utf8PathBuf>,
    },
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.append.is_empty()
            && self.delete.is_empty()
            && self.files.is_empty()
            && !self.enable_initramfs
            && self.kernel.is_none()
    }

    pub fn needs_kargs_transaction(&self) -> bool {
        !self.append.is_empty() || !self.delete.is_empty()
    }
}

/// The changes that bring `pending` to the plan. Same-key conflicts are an input error unless
/// `replace_conflicts`: rpm-ostree would append the planned karg beside the old one and the kernel would keep
/// whichever comes last. Kargs an earlier apply added (`own`) are replaced without asking: they are ours.
/// `initramfs_stale`: an earlier apply changed the drop-ins after `pending`'s initramfs was built.
pub fn compute(
    plan: &Plan,
    pending: &DeploymentState,
    root: &Root,
    replace_conflicts: bool,
    own: &[String],
    initramfs_stale: bool,
) -> Result<Changes> {
    if let Some(module) = plan.modules.first() {
        return Err(InputError::new(
            "vendor-reset",
            format!(
                "live mode cannot build the {} module: /usr is read-only on an rpm-ostree host and the module must \
                 be built against the deployed kernel. Use image mode (`passthru-image build`) or set \
                 vendor-reset.enabled = false",
                module.label()
            ),
        )
        .into());
    }
    let mut changes = Changes {
        kargs: plan.kargs.iter().cloned().collect(),
        ..Changes::default()
    };
    for planned in &plan.kargs {
        for host in pending.kargs.iter().filter(|h| h.conflicts_with(planned)) {
            changes.conflicts.push(Conflict {
                planned: planned.clone(),
                host: host.clone(),
            });
            if !changes.delete.contains(host) {
                changes.delete.push(host.clone());
            }
        }
        if !pending.has_karg(planned) {
            changes.append.push(planned.clone());
        }
    }
    let foreign: Vec<&Conflict> = changes
        .conflicts
        .iter()
        .filter(|c| !own.contains(&c.host.to_string()))
        .collect();
    if !foreign.is_empty() && !replace_conflicts {
        let list: Vec<String> = foreign
            .iter()
            .map(|c| format!("{} (planned {})", c.host, c.planned))
            .collect();
        return Err(InputError::new(
            "--replace-conflicts",
            format!(
                "the pending deployment sets planned parameters to other values: {}; pass --replace-conflicts to \
                 replace them, or change the config",
                list.join(", ")
            ),
        )
        .into());
    }

    for file in &plan.files {
        let Some(path) = live_path(&file.path)? else {
            continue;
        };
        let host_path = root.join(&path);
        let current = match std::fs::read_to_string(&host_path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {host_path}")),
        };
        if current.as_deref() != Some(file.content.as_str()) {
            changes.files.push(FileChange {
                path,
                mode: file.mode,
                content: file.content.clone(),
                replaces_existing: current.is_some(),
            });
        }
    }

    changes.enable_initramfs = !pending.regenerate_initramfs;
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
    if changes.enable_initramfs
        && let Some(image) = &pending.container_image
    {
        changes.warnings.push(format!(
            "the deployment follows the container image {image}: if bootc manages this host, \
             `rpm-ostree initramfs --enable` makes `bootc upgrade` refuse; image mode (`passthru-image build`) \
             fits such hosts better"
        ));
    }
    Ok(changes)
}

/// The /etc path live mode writes for an image file; `None` for files that do not apply live (kargs.d: the
/// kargs go through rpm-ostree).
fn live_path(image_path: &Utf8Path) -> Result<Option<Utf8PathBuf>> {
    if image_path.starts_with(kargs_d::DIR) {
        return Ok(None);
    }
    let file_name = image_path.file_name().unwrap_or_default();
    for (image_dir, live_dir) in LIVE_DIRS {
        if image_path.parent() == Some(Utf8Path::new(image_dir)) {
            return Ok(Some(Utf8Path::new(live_dir).join(file_name)));
        }
    }
    Err(InputError::new(
        "plan.files",
        format!("{image_path} has no place on a live rpm-ostree host; use image mode (`passthru-image build`)"),
    )
    .into())
}

/// The kernel packages still to install; `None` when the pending deployment already has them.
pub fn kernel_change(
    source: &KernelSource,
    pending: &DeploymentState,
) -> Result<Option<KernelChange>> {
    let (dir, files) = match source {
        KernelSource::Repo { url } => {
            return Err(InputError::new(
                "acs-override.repo",
                format!(
                    "live mode replaces the kernel from local packages only ({url} would have to become a system \
                     repo first); download the RPMs and set acs-override.packages, or use image mode"
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
            remove: BASE_KERNEL_PACKAGES.iter().map(|s| s.to_string()).collect(),
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
        Plan::resolve(&config, &Root::default()).unwrap()
    }

    fn pending(kargs: &str) -> DeploymentState {
        DeploymentState {
            osname: "fedora".into(),
            id: "abc.0".into(),
            kargs: super::super::deployment::host_kargs(kargs),
            regenerate_initramfs: false,
            initramfs_args: Vec::new(),
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

    #[test]
    fn appends_only_what_is_missing_whatever_the_spelling() {
        let (_dir, root) = empty_root();
        let host = pending("rw amd-iommu=on iommu=pt");
        let changes = compute(&plan(), &host, &root, false, &[], false).unwrap();
        let append: Vec<&str> = changes.append.iter().map(Karg::as_str).collect();
        assert!(!append.contains(&"amd_iommu=on") && !append.contains(&"iommu=pt"));
        assert!(append.contains(&"kvm_amd.npt=1"));
        assert!(changes.delete.is_empty());
        assert!(changes.enable_initramfs);
    }

    #[test]
    fn same_key_conflicts_need_the_flag_unless_the_karg_is_ours() {
        let (_dir, root) = empty_root();
        let host = pending("rw iommu=off");
        let err = compute(&plan(), &host, &root, false, &[], false).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        assert!(
            err.to_string().contains("iommu=off (planned iommu=pt)"),
            "{err}"
        );
        let changes = compute(&plan(), &host, &root, true, &[], false).unwrap();
        assert_eq!(changes.delete, [Karg::from_host("iommu=off")]);
        // A value an earlier apply wrote is replaced without asking.
        let changes = compute(&plan(), &host, &root, false, &["iommu=off".into()], false).unwrap();
        assert_eq!(changes.delete, [Karg::from_host("iommu=off")]);
    }

    #[test]
    fn warns_image_based_hosts_about_bootc() {
        let (_dir, root) = empty_root();
        let mut host = pending("rw");
        host.container_image =
            Some("ostree-image-signed:docker://quay.io/fedora/fedora-bootc:44".into());
        let changes = compute(&plan(), &host, &root, false, &[], false).unwrap();
        assert!(changes.warnings.iter().any(|w| w.contains("bootc upgrade")));
        host.regenerate_initramfs = true;
        let changes = compute(&plan(), &host, &root, false, &[], false).unwrap();
        assert!(!changes.warnings.iter().any(|w| w.contains("bootc upgrade")));
    }

    #[test]
    fn image_files_map_to_etc_and_kargs_d_is_skipped() {
        assert_eq!(
            live_path(Utf8Path::new(crate::plan::DRACUT_CONF))
                .unwrap()
                .unwrap(),
            "/etc/dracut.conf.d/50-passthru-vfio.conf"
        );
        assert_eq!(
            live_path(Utf8Path::new(crate::plan::MODPROBE_CONF))
                .unwrap()
                .unwrap(),
            "/etc/modprobe.d/50-passthru-vfio.conf"
        );
        let kargs_d = Utf8Path::new(kargs_d::DIR).join(kargs_d::FILE_NAME);
        assert_eq!(live_path(&kargs_d).unwrap(), None);
        let err = live_path(Utf8Path::new(crate::plan::UDEV_RULE)).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
    }
}
