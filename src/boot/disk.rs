//! The image under test, seen from the host: its root filesystem (mounted by podman), its kernel, initramfs
//! and kargs.d, and the ext4 disk image made from it with the probe added.

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};

use super::probe;
use crate::cmd::Cmd;
use crate::error::InputError;
use crate::image_ref::ImageRef;
use crate::kargs::HostKarg;
use crate::kargs_d::{self, KargsD};
use crate::root::Root;

/// An image's root filesystem, mounted read-only by podman for as long as this value lives.
pub(crate) struct MountedImage {
    image: ImageRef,
    root: Utf8PathBuf,
}

impl MountedImage {
    /// Mounts `image` from podman's local storage. An image that is not there is bad input.
    pub(crate) fn mount(image: &ImageRef) -> Result<MountedImage> {
        let exists = Cmd::new("podman")
            .args(["image", "exists", image.as_str()])
            .answers_yes()?;
        if !exists {
            bail!(InputError::new(
                "IMAGE",
                format!(
                    "{image} is not in podman's local storage; build it with `passthru-image \
                     build` or pull it"
                )
            ));
        }
        let out = Cmd::new("podman")
            .args(["image", "mount", image.as_str()])
            .read()
            .with_context(|| format!("podman image mount {image} (test-boot needs root)"))?;
        Ok(MountedImage {
            image: image.clone(),
            root: Utf8PathBuf::from(out.trim()),
        })
    }

    pub(crate) fn root(&self) -> &Utf8Path {
        &self.root
    }
}

impl Drop for MountedImage {
    fn drop(&mut self) {
        let _ = Cmd::new("podman")
            .args(["image", "unmount", self.image.as_str()])
            .read();
    }
}

/// What a test boot takes from the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BootFiles {
    pub(crate) kver: String,
    pub(crate) kernel: Utf8PathBuf,
    pub(crate) initrd: Utf8PathBuf,
    /// The kargs bootc would apply from kargs.d on x86_64, in its order (file names, then entries).
    pub(crate) kargs: Vec<HostKarg>,
}

/// Finds the image's kernel (the one directory of /usr/lib/modules with a vmlinuz, as bootc requires), its
/// initramfs, and the kargs of /usr/lib/bootc/kargs.d. The image's tree is read through a [`Root`]: a link in
/// it that points out of the image (an absolute one, or `..` too far) is not followed onto this machine.
pub(crate) fn boot_files(root: &Utf8Path) -> Result<BootFiles> {
    let image = Root::new(root);
    let modules = Utf8Path::new("/usr/lib/modules");
    let mut kernels: Vec<String> = image
        .read_dir(modules)?
        .with_context(|| {
            format!(
                "the image has no /usr/lib/modules ({})",
                image.join(modules)
            )
        })?
        .into_iter()
        .filter(|kver| image.is_file(modules.join(kver).join("vmlinuz")))
        .collect();
    kernels.sort();
    let kver = match kernels.as_slice() {
        [one] => one.clone(),
        [] => bail!("the image has no kernel: no /usr/lib/modules/*/vmlinuz"),
        many => bail!(
            "the image has {} kernels ({}); bootc needs exactly one",
            many.len(),
            many.join(", ")
        ),
    };
    let dir = modules.join(&kver);
    if !image.is_file(dir.join("initramfs.img")) {
        bail!("the image has no initramfs: /usr/lib/modules/{kver}/initramfs.img is missing");
    }
    Ok(BootFiles {
        kernel: image.join(dir.join("vmlinuz")),
        initrd: image.join(dir.join("initramfs.img")),
        kargs: kargs_d_kargs(&image)?,
        kver,
    })
}

/// The kargs of every `kargs.d/*.toml` for x86_64, in lexical file order, parsed by bootc's rules.
fn kargs_d_kargs(image: &Root) -> Result<Vec<HostKarg>> {
    let dir = Utf8Path::new(kargs_d::DIR);
    let Some(names) = image.read_dir(dir)? else {
        return Ok(Vec::new());
    };
    let mut kargs = Vec::new();
    for name in names {
        let file = dir.join(&name);
        if file.extension() != Some("toml") || !image.is_file(&file) {
            continue;
        }
        let text = image.read(&file)?;
        let parsed = KargsD::parse(&text).map_err(|e| {
            anyhow::anyhow!(
                "the image's {}/{name} is not valid for bootc: {e}",
                kargs_d::DIR
            )
        })?;
        kargs.extend(parsed.kargs_for("x86_64"));
    }
    Ok(kargs)
}

/// Makes an ext4 disk image at `disk` holding the image's root filesystem plus the probe at
/// [`probe::PATH_IN_IMAGE`]. `mkfs.ext4 -d` copies the tree without mounting anything; `debugfs` adds the
/// probe. The disk is the VM's own scratch copy: the image is never changed.
pub(crate) fn make_disk(root: &Utf8Path, work: &Utf8Path, disk: &Utf8Path) -> Result<()> {
    let used_mib: u64 = Cmd::new("du")
        .args(["-sm", "-x", root.as_str()])
        .read()
        .with_context(|| format!("measuring {root}"))?
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .context("reading du's output")?;
    // Room for ext4's own metadata and the journal; the file is sparse, so the margin costs nothing.
    let size_mib = used_mib + used_mib / 4 + 256;
    Cmd::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-L",
            "passthru-root",
            "-d",
            root.as_str(),
            disk.as_str(),
        ])
        .arg(format!("{size_mib}M"))
        .read()
        .context("mkfs.ext4 -d failed (is e2fsprogs installed?)")?;

    let probe_file = work.join("passthru-probe");
    std::fs::write(&probe_file, probe::SCRIPT).with_context(|| format!("writing {probe_file}"))?;
    let name = probe::PATH_IN_IMAGE.trim_start_matches('/');
    let commands = format!("write \"{probe_file}\" {name}\nsif {name} mode 0100755\n");
    let script = work.join("debugfs.cmds");
    std::fs::write(&script, commands).with_context(|| format!("writing {script}"))?;
    let stderr = Cmd::new("debugfs")
        .args(["-w", "-f", script.as_str(), disk.as_str()])
        .read_stderr()
        .context("running debugfs (is e2fsprogs installed?)")?;
    // debugfs exits 0 even when a command fails; its complaints name the command.
    if stderr
        .iter()
        .any(|l| l.contains(name) && !l.contains("Allocated inode"))
    {
        bail!(
            "debugfs could not add the probe to the disk image: {}",
            stderr.join("\n")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::try_from(dir.path().to_path_buf()).unwrap();
        (dir, root)
    }

    fn write(root: &Utf8Path, path: &str, text: &str) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn finds_the_one_kernel_and_reads_kargs_d_in_file_order() {
        let (_dir, root) = tree();
        write(&root, "usr/lib/modules/6.1.0-9-amd64/vmlinuz", "k");
        write(&root, "usr/lib/modules/6.1.0-9-amd64/initramfs.img", "i");
        write(&root, "usr/lib/modules/6.1.0-8-amd64/modules.dep", "");
        write(
            &root,
            "usr/lib/bootc/kargs.d/50-passthru.toml",
            "kargs = [\"iommu=pt\"]\n",
        );
        write(
            &root,
            "usr/lib/bootc/kargs.d/10-first.toml",
            "kargs = [\"quiet\"]\nmatch-architectures = [\"x86_64\"]\n",
        );
        write(
            &root,
            "usr/lib/bootc/kargs.d/20-arm.toml",
            "kargs = [\"arm=1\"]\nmatch-architectures = [\"aarch64\"]\n",
        );
        write(&root, "usr/lib/bootc/kargs.d/README", "not toml");
        let files = boot_files(&root).unwrap();
        assert_eq!(files.kver, "6.1.0-9-amd64");
        assert!(files.kernel.ends_with("6.1.0-9-amd64/vmlinuz"));
        let kargs: Vec<&str> = files.kargs.iter().map(HostKarg::as_str).collect();
        assert_eq!(kargs, ["quiet", "iommu=pt"]);
    }

    #[test]
    fn refuses_images_bootc_would_refuse() {
        let (_dir, root) = tree();
        write(&root, "usr/lib/modules/6.1.0-9-amd64/vmlinuz", "k");
        let err = boot_files(&root).unwrap_err().to_string();
        assert!(err.contains("no initramfs"), "{err}");
        write(&root, "usr/lib/modules/6.1.0-9-amd64/initramfs.img", "i");
        write(&root, "usr/lib/modules/6.2.0-1-amd64/vmlinuz", "k");
        let err = boot_files(&root).unwrap_err().to_string();
        assert!(err.contains("2 kernels"), "{err}");
        std::fs::remove_dir_all(root.join("usr/lib/modules/6.2.0-1-amd64")).unwrap();
        write(
            &root,
            "usr/lib/bootc/kargs.d/50-x.toml",
            "kargs = [\"a b\"]\n",
        );
        let err = boot_files(&root).unwrap_err().to_string();
        assert!(err.contains("50-x.toml"), "{err}");
    }

    #[test]
    fn links_out_of_the_image_are_not_followed_onto_this_machine() {
        let (_dir, root) = tree();
        write(&root, "usr/lib/modules/6.1.0-9-amd64/initramfs.img", "i");
        std::os::unix::fs::symlink(
            "/etc/hostname",
            root.join("usr/lib/modules/6.1.0-9-amd64/vmlinuz"),
        )
        .unwrap();
        let err = boot_files(&root).unwrap_err().to_string();
        assert!(err.contains("no kernel"), "{err}");
        std::fs::remove_file(root.join("usr/lib/modules/6.1.0-9-amd64/vmlinuz")).unwrap();
        write(&root, "usr/lib/modules/6.1.0-9-amd64/vmlinuz", "k");
        std::fs::create_dir_all(root.join("usr/lib/bootc")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("usr/lib/bootc/kargs.d")).unwrap();
        let err = format!("{:#}", boot_files(&root).unwrap_err());
        assert!(err.contains("leads outside"), "{err}");
    }

    #[test]
    fn an_image_without_kargs_d_boots_with_no_image_kargs() {
        let (_dir, root) = tree();
        write(&root, "usr/lib/modules/6.1.0-9-amd64/vmlinuz", "k");
        write(&root, "usr/lib/modules/6.1.0-9-amd64/initramfs.img", "i");
        assert!(boot_files(&root).unwrap().kargs.is_empty());
    }
}
