//! What the ostree sysroot says about the host: the pending deployment (what the next boot runs) and the
//! booted one. Read with libostree through the `ostree` crate, never by parsing `rpm-ostree status` text, so
//! the state the applier compares against is the one the bootloader will use.

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use ostree::{gio, glib};
use serde::Serialize;

use crate::error::InputError;
use crate::kargs::{HostKarg, Karg, Kargs, KernelArg, split_cmdline};

/// The origin group rpm-ostree keeps its client-side settings in (initramfs, kargs history).
const RPMOSTREE_GROUP: &str = "rpmostree";
const OVERRIDES_GROUP: &str = "overrides";
const PACKAGES_GROUP: &str = "packages";

#[derive(Debug, Clone, Serialize)]
pub struct HostState {
    pub(crate) sysroot: Utf8PathBuf,
    pub pending: DeploymentState,
    pub booted: Option<DeploymentState>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeploymentState {
    pub osname: String,
    /// `CHECKSUM.SERIAL`, as `ostree admin status` names deployments.
    pub id: String,
    /// The BLS `options` line without the `ostree=` argument ostree adds itself.
    pub kargs: Vec<HostKarg>,
    /// `[rpmostree] regenerate-initramfs` of the origin.
    pub regenerate_initramfs: bool,
    /// `[rpmostree] initramfs-args` of the origin.
    pub initramfs_args: Vec<String>,
    /// `[rpmostree] initramfs-etc`: /etc files rpm-ostree copies into the deployment's initramfs. rpm-ostree
    /// refuses to regenerate the initramfs while it tracks any.
    pub(crate) initramfs_etc: Vec<String>,
    /// The deployment's root directory (`SYSROOT/ostree/deploy/OS/deploy/CHECKSUM.SERIAL`).
    pub(crate) dir: Utf8PathBuf,
    /// The deployment follows a container image (`container-image-reference`), as bootc-managed hosts do.
    pub(crate) container_image: Option<String>,
    /// `[overrides] replace-local`: local packages that replace base packages (`sha256:nevra`).
    pub replaced_local: Vec<String>,
    /// `[overrides] remove`: base packages removed.
    pub removed: Vec<String>,
    /// `[packages] requested-local`: local packages layered on top (`sha256:nevra`).
    pub requested_local: Vec<String>,
}

impl DeploymentState {
    /// Whether the deployment's command line gives the kernel what `karg` asks for (by the kernel's rules for
    /// repeated parameters: `intel_iommu=on,sm_on` has `intel_iommu=on`).
    pub(crate) fn has_karg(&self, karg: &Karg) -> bool {
        Kargs::satisfied_by(&self.kargs, karg)
    }

    /// Whether the deployment's command line has exactly this argument (as rpm-ostree compares them).
    pub(crate) fn has_host_karg(&self, karg: &HostKarg) -> bool {
        self.kargs.iter().any(|k| k.same_as(karg))
    }
}

/// Whether a local-package list of the origin (`replaced_local`, `requested_local`) holds the package
/// `nevra`: rpm-ostree records local packages as `SHA256:NEVRA`, and package files are named after the NEVRA.
pub(crate) fn lists_local_package(list: &[String], nevra: &str) -> bool {
    list.iter()
        .any(|entry| entry.split_once(':').map(|(_, n)| n) == Some(nevra))
}

/// `--sysroot` names an ostree sysroot. libostree's own message for a wrong directory is about a file deep
/// inside it, and rpm-ostree's is worse; this one names the flag (bad input, exit 2).
pub(crate) fn check_sysroot(path: &Utf8Path) -> Result<(), InputError> {
    if path.join("ostree/repo").is_dir() && path.join("ostree/deploy").is_dir() {
        Ok(())
    } else {
        Err(InputError::new(
            "--sysroot",
            format!(
                "{path} is not an ostree sysroot (it has no ostree/repo and ostree/deploy); give \
                 the root of an ostree system, / on a running Silverblue host"
            ),
        ))
    }
}

/// Reads the sysroot at `path` (`/` on a real host).
pub fn read(path: &Utf8Path) -> Result<HostState> {
    check_sysroot(path)?;
    let sysroot = ostree::Sysroot::new(Some(&gio::File::for_path(path)));
    sysroot
        .load(gio::Cancellable::NONE)
        .with_context(|| format!("loading the ostree sysroot at {path}"))?;
    let deployments = sysroot.deployments();
    let booted = sysroot.booted_deployment();
    let osname = match (&booted, deployments.first()) {
        (Some(b), _) => b.osname().to_string(),
        (None, Some(first)) => first.osname().to_string(),
        (None, None) => bail!("the ostree sysroot at {path} has no deployment"),
    };
    // The pending deployment is the first one of the OS: ostree orders deployments by boot priority, and a
    // staged deployment (finalised at shutdown) comes first.
    let pending = deployments
        .iter()
        .find(|d| d.osname() == osname)
        .expect("the OS name comes from a deployment of this sysroot");
    Ok(HostState {
        sysroot: path.to_owned(),
        pending: describe(&sysroot, path, pending)?,
        booted: booted
            .as_ref()
            .map(|b| describe(&sysroot, path, b))
            .transpose()?,
    })
}

fn describe(
    sysroot: &ostree::Sysroot,
    path: &Utf8Path,
    d: &ostree::Deployment,
) -> Result<DeploymentState> {
    let id = format!("{}.{}", d.csum(), d.deployserial());
    let options = d
        .bootconfig()
        .and_then(|b| b.get("options"))
        .map(|o| o.to_string())
        .unwrap_or_default();
    let kargs = host_kargs(&options);
    let origin = d
        .origin()
        .with_context(|| format!("deployment {id} has no origin file"))?;
    Ok(DeploymentState {
        osname: d.osname().to_string(),
        kargs,
        regenerate_initramfs: optional(origin.boolean(RPMOSTREE_GROUP, "regenerate-initramfs"))
            .with_context(|| format!("origin of {id}: [rpmostree] regenerate-initramfs"))?
            .unwrap_or(false),
        initramfs_args: list(&origin, RPMOSTREE_GROUP, "initramfs-args")
            .with_context(|| format!("origin of {id}"))?,
        initramfs_etc: list(&origin, RPMOSTREE_GROUP, "initramfs-etc")
            .with_context(|| format!("origin of {id}"))?,
        dir: path.join(sysroot.deployment_dirpath(d).as_str()),
        container_image: optional(origin.string("origin", "container-image-reference"))?
            .map(|s| s.to_string()),
        replaced_local: list(&origin, OVERRIDES_GROUP, "replace-local")?,
        removed: list(&origin, OVERRIDES_GROUP, "remove")?,
        requested_local: list(&origin, PACKAGES_GROUP, "requested-local")?,
        id,
    })
}

/// The kargs of a BLS `options` line, without `ostree=` (ostree adds it per deployment; nobody plans it).
pub(crate) fn host_kargs(options: &str) -> Vec<HostKarg> {
    split_cmdline(options)
        .into_iter()
        .filter(|k| k.key() != "ostree")
        .collect()
}

/// A keyfile value, `None` when the group or key is absent (an origin only has what was ever set).
fn optional<T>(value: Result<T, glib::Error>) -> Result<Option<T>> {
    match value {
        Ok(v) => Ok(Some(v)),
        Err(e)
            if e.matches(glib::KeyFileError::GroupNotFound)
                || e.matches(glib::KeyFileError::KeyNotFound) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

fn list(origin: &glib::KeyFile, group: &str, key: &str) -> Result<Vec<String>> {
    Ok(optional(origin.string_list(group, key))
        .with_context(|| format!("[{group}] {key}"))?
        .map(|items| items.iter().map(|s| s.to_string()).collect())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_kargs_drop_the_ostree_argument() {
        let kargs = host_kargs("root=UUID=abc rw ostree=/ostree/boot.1/testos/abc/0 iommu=off");
        let words: Vec<&str> = kargs.iter().map(HostKarg::as_str).collect();
        assert_eq!(words, ["root=UUID=abc", "rw", "iommu=off"]);
    }
}
