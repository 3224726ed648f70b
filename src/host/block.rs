//! Which PCI controllers hold the root filesystem: the mount of `/` (or of `/sysroot`, where an ostree host
//! mounts its disk under a composefs or overlay `/`) from the mount table, its block device in
//! `/sys/dev/block` or `/sys/class/block`, and the PCI device the block device hangs under in sysfs, through
//! device-mapper and md `slaves` (LUKS, LVM, RAID) and NVMe multipath `multipath` links.
//!
//! The mount table is read from `/proc/1/mountinfo` first (the host's init: right also when the tool runs in a
//! container on `--root /host`), then `/proc/self/mountinfo`, then `/proc/mounts`.

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};

use super::pci::PciAddress;
use crate::error::InputError;
use crate::root::Root;

pub(crate) const MOUNT_TABLES: &[&str] =
    &["/proc/1/mountinfo", "/proc/self/mountinfo", "/proc/mounts"];
pub(crate) const DEV_BLOCK: &str = "/sys/dev/block";
pub(crate) const CLASS_BLOCK: &str = "/sys/class/block";
/// Layers of slaves and multipath links followed at most (a LUKS volume on LVM on RAID on NVMe is four).
const MAX_DEPTH: usize = 8;

/// The root filesystem and the controllers its data lives on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RootFs {
    /// `/` or `/sysroot`.
    pub(crate) mount_point: String,
    /// The mount's source, e.g. `/dev/mapper/luks-…` or `/dev/nvme0n1p3`.
    pub(crate) source: String,
    pub(crate) controllers: Vec<PciAddress>,
}

/// One line of the mount table, as far as it matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    point: String,
    /// `major:minor`; `None` from /proc/mounts.
    dev: Option<String>,
    source: String,
}

/// The root filesystem's controllers; `None` when there is no mount table under the root, or its root is on
/// nothing a PCI controller holds (a network or memory filesystem).
pub(crate) fn root_filesystem(root: &Root) -> Result<Option<RootFs>> {
    let Some(mounts) = mount_table(root)? else {
        return Ok(None);
    };
    for point in ["/", "/sysroot"] {
        // Mounts stack: the last one on a point is the one seen.
        let Some(mount) = mounts.iter().rev().find(|m| m.point == point) else {
            continue;
        };
        let Some(device) = block_device(root, mount)? else {
            continue;
        };
        let mut controllers = Vec::new();
        controllers_of(root, &device, 0, &mut controllers)?;
        if !controllers.is_empty() {
            controllers.sort();
            controllers.dedup();
            return Ok(Some(RootFs {
                mount_point: point.to_owned(),
                source: mount.source.clone(),
                controllers,
            }));
        }
    }
    Ok(None)
}

fn mount_table(root: &Root) -> Result<Option<Vec<Mount>>> {
    for table in MOUNT_TABLES {
        let Some(text) = root.read_optional(table)? else {
            continue;
        };
        let parse = match table.ends_with("mountinfo") {
            true => parse_mountinfo,
            false => parse_mounts,
        };
        return Ok(Some(text.lines().filter_map(parse).collect()));
    }
    Ok(None)
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue` (proc(5)).
fn parse_mountinfo(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let fields: Vec<&str> = before.split(' ').collect();
    let mut after = after.split(' ');
    let _fstype = after.next()?;
    Some(Mount {
        point: unescape(fields.get(4)?),
        dev: Some(fields.get(2)?.to_string()),
        source: unescape(after.next()?),
    })
}

/// `/dev/sda1 / ext4 rw 0 0`.
fn parse_mounts(line: &str) -> Option<Mount> {
    let mut fields = line.split(' ');
    let source = unescape(fields.next()?);
    Some(Mount {
        point: unescape(fields.next()?),
        dev: None,
        source,
    })
}

/// The kernel writes space, tab, newline and backslash in mount paths as octal escapes (`\040`).
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest
            .get(at + 1..at + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(byte as char);
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The block device's directory in sysfs (resolved): by `major:minor`, else by the source's name (btrfs
/// reports an anonymous `0:N`); `/dev/mapper/NAME` is the device-mapper device named so.
fn block_device(root: &Root, mount: &Mount) -> Result<Option<Utf8PathBuf>> {
    if let Some(dev) = mount.dev.as_deref().filter(|d| !d.starts_with("0:"))
        && let Some(dir) = resolve(root, &Utf8Path::new(DEV_BLOCK).join(dev))?
    {
        return Ok(Some(dir));
    }
    let Some(name) = mount.source.strip_prefix("/dev/") else {
        return Ok(None);
    };
    if let Some(dm_name) = name.strip_prefix("mapper/") {
        return dm_named(root, dm_name);
    }
    let base = name.rsplit('/').next().unwrap_or(name);
    resolve(root, &Utf8Path::new(CLASS_BLOCK).join(base))
}

fn dm_named(root: &Root, name: &str) -> Result<Option<Utf8PathBuf>> {
    for entry in root.read_dir(CLASS_BLOCK)?.unwrap_or_default() {
        if !entry.starts_with("dm-") {
            continue;
        }
        let dir = Utf8Path::new(CLASS_BLOCK).join(&entry);
        if root
            .read_optional(dir.join("dm/name"))?
            .as_deref()
            .map(str::trim)
            == Some(name)
        {
            return resolve(root, &dir);
        }
    }
    Ok(None)
}

/// Adds the PCI controllers under which the block device `dir` (resolved) lives.
fn controllers_of(
    root: &Root,
    dir: &Utf8Path,
    depth: usize,
    found: &mut Vec<PciAddress>,
) -> Result<()> {
    // A partition's disk is its parent directory.
    let dir = match root.exists(dir.join("partition")) {
        true => dir.parent().unwrap_or(dir),
        false => dir,
    };
    if let Some(controller) = dir
        .components()
        .rev()
        .find_map(|c| c.as_str().parse::<PciAddress>().ok())
    {
        found.push(controller);
        return Ok(());
    }
    if depth >= MAX_DEPTH {
        return Ok(());
    }
    for below in ["slaves", "multipath"] {
        let links = dir.join(below);
        for name in root.read_dir(&links)?.unwrap_or_default() {
            if let Some(next) = resolve(root, &links.join(name))? {
                controllers_of(root, &next, depth + 1, found)?;
            }
        }
    }
    Ok(())
}

/// `abs` with every link resolved, inside the root; `None` when it does not exist.
fn resolve(root: &Root, abs: &Utf8Path) -> Result<Option<Utf8PathBuf>> {
    let relative = abs.strip_prefix("/").unwrap_or(abs);
    match root.dir()?.canonicalize(relative) {
        Ok(path) => {
            let path = Utf8PathBuf::try_from(path).map_err(|_| {
                InputError::new(
                    root.join(abs).as_str(),
                    "resolves to a path that is not UTF-8",
                )
            })?;
            Ok(Some(Utf8PathBuf::from("/").join(path)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(InputError::new(
            root.join(abs).as_str(),
            format!("cannot be resolved inside {}: {e}", root.path()),
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(root: &Root, path: &str, text: &str) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn link(root: &Root, path: &str, target: &str) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        symlink(target, path).unwrap();
    }

    #[test]
    fn mount_lines_parse_with_their_escapes() {
        let m = parse_mountinfo(
            "98 1 253:0 / /sysroot ro,relatime shared:1 - xfs /dev/mapper/luks-1 rw,seclabel",
        )
        .unwrap();
        assert_eq!(
            (m.point.as_str(), m.dev.as_deref()),
            ("/sysroot", Some("253:0"))
        );
        assert_eq!(m.source, "/dev/mapper/luks-1");
        assert_eq!(unescape("/mnt/my\\040disk"), "/mnt/my disk");
        let m = parse_mounts("/dev/sda2 / ext4 rw 0 0").unwrap();
        assert_eq!(
            (m.point.as_str(), m.source.as_str(), m.dev),
            ("/", "/dev/sda2", None)
        );
    }

    /// Fedora Silverblue on LUKS: `/` is composefs, `/sysroot` the LUKS volume on a partition of an NVMe
    /// namespace that native multipath puts under virtual/nvme-subsystem.
    #[test]
    fn an_ostree_root_on_luks_on_multipath_nvme_leads_to_its_controller() {
        let (_dir, root) = Root::temporary();
        write(
            &root,
            "/proc/self/mountinfo",
            "60 1 0:31 / / ro shared:1 - overlay composefs \
             ro,lowerdir=/run/ostree/.private/cfsroot-lower\n98 60 253:0 / /sysroot ro shared:5 - \
             xfs /dev/mapper/luks-1 rw\n",
        );
        let pci = "/sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0";
        let subsys = "/sys/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1";
        write(&root, &format!("{pci}/nvme/nvme0/nvme0c0n1/uevent"), "");
        link(
            &root,
            &format!("{subsys}/multipath/nvme0c0n1"),
            "../../../../../pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0c0n1",
        );
        write(&root, &format!("{subsys}/nvme0n1p3/partition"), "3\n");
        write(&root, "/sys/devices/virtual/block/dm-0/dm/name", "luks-1\n");
        link(
            &root,
            "/sys/devices/virtual/block/dm-0/slaves/nvme0n1p3",
            "../../../nvme-subsystem/nvme-subsys0/nvme0n1/nvme0n1p3",
        );
        link(
            &root,
            "/sys/dev/block/253:0",
            "../../devices/virtual/block/dm-0",
        );
        let rootfs = root_filesystem(&root).unwrap().unwrap();
        assert_eq!(rootfs.mount_point, "/sysroot");
        assert_eq!(rootfs.controllers, ["0000:3d:00.0".parse().unwrap()]);

        // By name when major:minor does not lead anywhere (btrfs, /proc/mounts).
        std::fs::remove_file(root.join("/sys/dev/block/253:0")).unwrap();
        link(
            &root,
            "/sys/class/block/dm-0",
            "../../devices/virtual/block/dm-0",
        );
        assert_eq!(
            root_filesystem(&root).unwrap().unwrap().controllers.len(),
            1
        );
    }

    #[test]
    fn no_mount_table_or_a_root_on_nothing_is_none() {
        let (_dir, root) = Root::temporary();
        assert_eq!(root_filesystem(&root).unwrap(), None);
        write(&root, "/proc/mounts", "tmpfs / tmpfs rw 0 0\n");
        assert_eq!(root_filesystem(&root).unwrap(), None);
    }
}
