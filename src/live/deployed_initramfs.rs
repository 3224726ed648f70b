//! What the pending deployment's own initramfs (the one its image shipped) already holds. When it has the VFIO
//! drivers (Bazzite's does), live mode turns no client-side regeneration on: `rpm-ostree initramfs --enable`
//! writes an `[rpmostree]` group into the origin, and `bootc upgrade` refuses such a deployment.

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::cmd::Cmd;
use crate::host::kernel::module_name;
use crate::root::Root;

/// Whether the deployment's initramfs has every module asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Contents {
    /// Every module is in it, as a file, or built into the kernel.
    HasAll,
    /// These are neither in it nor built in.
    Lacks(Vec<String>),
    /// It could not be read; the reason.
    Unreadable(String),
}

/// Looks for `modules` in the initramfs of the deployment rooted at `dir`.
pub(crate) fn modules_in(dir: &Utf8Path, modules: &[String]) -> Contents {
    match read(dir, modules) {
        Ok(missing) if missing.is_empty() => Contents::HasAll,
        Ok(missing) => Contents::Lacks(missing),
        Err(e) => Contents::Unreadable(format!("{e:#}")),
    }
}

/// The deployment's tree is read through a [`Root`]: inside it, regular files only, capped.
fn read(dir: &Utf8Path, modules: &[String]) -> Result<Vec<String>> {
    let deployment = Root::new(dir);
    let kernel = kernel_dir(&deployment)?;
    let image = kernel.join("initramfs.img");
    if !deployment.is_file(&image) {
        anyhow::bail!("{} is not a regular file", deployment.join(&image));
    }
    // lsinitrd is dracut's own lister: it knows the early-microcode cpio and every compression dracut writes.
    let listing = Cmd::new("lsinitrd")
        .arg(deployment.join(&image).as_str())
        .read()?;
    let builtin = deployment
        .read_optional(kernel.join("modules.builtin"))?
        .unwrap_or_default();
    Ok(modules
        .iter()
        .filter(|m| !has_module(&listing, m) && !has_module(&builtin, m))
        .cloned()
        .collect())
}

/// The deployment's kernel directory (a path inside it): the one under /usr/lib/modules that holds a vmlinuz
/// (a bootc image has exactly one).
fn kernel_dir(deployment: &Root) -> Result<Utf8PathBuf> {
    let modules = Utf8Path::new("/usr/lib/modules");
    let names = deployment
        .read_dir(modules)?
        .with_context(|| format!("listing {}", deployment.join(modules)))?;
    let kernels: Vec<Utf8PathBuf> = names
        .iter()
        .map(|name| modules.join(name))
        .filter(|dir| deployment.is_file(dir.join("vmlinuz")))
        .collect();
    match kernels.as_slice() {
        [one] => Ok(one.clone()),
        _ => anyhow::bail!(
            "{} kernels with a vmlinuz under {}, expected one",
            kernels.len(),
            deployment.join(modules)
        ),
    }
}

/// Whether a listing (lsinitrd's, or modules.builtin) names the module's file: `.../vfio-pci.ko.xz` for
/// `vfio_pci`; `-` and `_` are the same in module names.
fn has_module(listing: &str, module: &str) -> bool {
    let wanted = module_name(module);
    listing.lines().any(|line| {
        let path = line.split_whitespace().last().unwrap_or_default();
        let file = path.rsplit('/').next().unwrap_or_default();
        file.split_once(".ko")
            .is_some_and(|(name, _)| module_name(name) == wanted)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_modules_in_lsinitrd_listings_and_modules_builtin() {
        let listing = "\
-rw-r--r--   1 root     root        38196 Jan  1  1970 usr/lib/modules/6.11.4-301.fc41.x86_64/kernel/drivers/vfio/pci/vfio-pci.ko.xz
-rw-r--r--   1 root     root        20000 Jan  1  1970 usr/lib/modules/6.11.4-301.fc41.x86_64/kernel/drivers/vfio/vfio.ko.xz
";
        assert!(has_module(listing, "vfio_pci"));
        assert!(has_module(listing, "vfio"));
        assert!(!has_module(listing, "vfio_iommu_type1"));
        assert!(has_module(
            "kernel/drivers/vfio/vfio_iommu_type1.ko\n",
            "vfio_iommu_type1"
        ));
        assert!(!has_module(
            "kernel/drivers/vfio/vfio-pci-core.ko\n",
            "vfio_pci"
        ));
    }
}
