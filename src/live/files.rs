//! Writing host files so that a crash never leaves half a file, and keeping what they replace.

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use super::state::BACKUP_DIR;
use crate::atomic;
use crate::root::Root;

/// Where the copy of host file `abs` goes (host path, e.g. /etc/passthru-image/backup/etc/modprobe.d/x.conf).
pub(crate) fn backup_path(abs: &Utf8Path) -> Utf8PathBuf {
    Utf8Path::new(BACKUP_DIR).join(abs.strip_prefix("/").unwrap_or(abs))
}

/// Copies host file `abs` to its backup place, keeping its mode. Returns the backup's host path.
pub(crate) fn back_up(root: &Root, abs: &Utf8Path) -> Result<Utf8PathBuf> {
    let backup = backup_path(abs);
    let file = root
        .read_bytes_optional(abs)?
        .with_context(|| format!("{} vanished before it was backed up", root.join(abs)))?;
    atomic::write_host_file(root, &backup, &file.bytes, file.mode)?;
    Ok(backup)
}

/// Puts a backup back in place (atomically) and removes the copy.
pub(crate) fn restore(root: &Root, abs: &Utf8Path, backup: &Utf8Path) -> Result<()> {
    let file = root
        .read_bytes_optional(backup)?
        .with_context(|| format!("the backup {} is gone", root.join(backup)))?;
    atomic::write_host_file(root, abs, &file.bytes, file.mode)?;
    atomic::remove_host_file(root, backup)
}

/// Removes host file `abs`; already gone is fine.
pub(crate) fn remove(root: &Root, abs: &Utf8Path) -> Result<()> {
    atomic::remove_host_file(root, abs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn backs_up_replaces_and_restores() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap());
        let abs = Utf8Path::new("/etc/modprobe.d/x.conf");
        atomic::write_host_file(&root, abs, b"mine\n", 0o600).unwrap();
        let backup = back_up(&root, abs).unwrap();
        atomic::write_host_file(&root, abs, b"planned\n", 0o644).unwrap();
        assert_eq!(root.read(abs).unwrap(), "planned\n");
        restore(&root, abs, &backup).unwrap();
        assert_eq!(root.read(abs).unwrap(), "mine\n");
        let mode = std::fs::metadata(root.join(abs))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!root.exists(&backup));
    }
}
