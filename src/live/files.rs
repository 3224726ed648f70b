//! Writing host files so that a crash never leaves half a file, and keeping what they replace.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use super::state::BACKUP_DIR;
use crate::root::Root;

/// Writes `path` through a temporary file in the same directory and a rename: readers (dracut run by
/// rpm-ostree, modprobe) see the old file or the new one, never a part.
pub fn write_atomic(path: &Utf8Path, content: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().context("a file path has a parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
    let tmp = dir.join(format!(
        ".{}.passthru-tmp",
        path.file_name().unwrap_or("file")
    ));
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(content)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {path}"))
}

/// Where the copy of host file `abs` goes (host path, e.g. /etc/passthru-image/backup/etc/modprobe.d/x.conf).
pub fn backup_path(abs: &Utf8Path) -> Utf8PathBuf {
    Utf8Path::new(BACKUP_DIR).join(abs.strip_prefix("/").unwrap_or(abs))
}

/// Copies host file `abs` to its backup place, keeping its mode. Returns the backup's host path.
pub fn back_up(root: &Root, abs: &Utf8Path) -> Result<Utf8PathBuf> {
    let backup = backup_path(abs);
    let source = root.join(abs);
    let bytes = std::fs::read(&source).with_context(|| format!("reading {source}"))?;
    let mode = std::fs::metadata(&source)?.permissions().mode() & 0o7777;
    write_atomic(&root.join(&backup), &bytes, mode)?;
    Ok(backup)
}

/// Puts a backup back in place (atomically) and removes the copy.
pub fn restore(root: &Root, abs: &Utf8Path, backup: &Utf8Path) -> Result<()> {
    let copy = root.join(backup);
    let bytes = std::fs::read(&copy).with_context(|| format!("reading the backup {copy}"))?;
    let mode = std::fs::metadata(&copy)?.permissions().mode() & 0o7777;
    write_atomic(&root.join(abs), &bytes, mode)?;
    std::fs::remove_file(&copy).with_context(|| format!("removing {copy}"))
}

/// Removes host file `abs`; already gone is fine.
pub fn remove(root: &Root, abs: &Utf8Path) -> Result<()> {
    let path = root.join(abs);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {path}"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_up_replaces_and_restores() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap());
        let abs = Utf8Path::new("/etc/modprobe.d/x.conf");
        write_atomic(&root.join(abs), b"mine\n", 0o600).unwrap();
        let backup = back_up(&root, abs).unwrap();
        write_atomic(&root.join(abs), b"planned\n", 0o644).unwrap();
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
