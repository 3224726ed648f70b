//! Checks before live mode changes anything, and the lock that keeps two runs apart.

use std::fs::{File, TryLockError};

use anyhow::{Context, Result};

use camino::Utf8Path;
use rustix::fs::{Mode, OFlags};

use super::rpm_ostree::RpmOstree;
use super::session::Privilege;
use crate::atomic::{self, MissingDirs};
use crate::error::ChecksFailed;
use crate::root::Root;

/// Present on every booted ostree system; its absence means this is not an rpm-ostree host.
pub(crate) const OSTREE_BOOTED: &str = "/run/ostree-booted";
pub(crate) const LOCK_FILE: &str = "/run/passthru-image-live.lock";

/// Held for the whole run; released when dropped (the lock dies with the process too).
#[derive(Debug)]
pub(crate) struct Lock {
    // Never read: holding the open file is holding the lock.
    _file: File,
}

/// Host and privilege checks that need no rpm-ostree.
pub(crate) fn check_host(root: &Root, privilege: Privilege) -> Result<()> {
    if !root.exists(OSTREE_BOOTED) {
        return Err(ChecksFailed(format!(
            "{} does not exist: this is not a booted ostree host; live mode is for rpm-ostree \
             hosts (Silverblue, Kinoite, ...), image mode (`passthru-image build`) for the rest",
            root.join(OSTREE_BOOTED)
        ))
        .into());
    }
    if privilege != Privilege::Superuser {
        return Err(ChecksFailed("live mode changes the host: run it as root".into()).into());
    }
    Ok(())
}

/// Takes the lock file in /run under the root, made if missing; a symlink standing there is not followed.
pub(crate) fn lock(root: &Root) -> Result<Lock> {
    let path = root.join(LOCK_FILE);
    let abs = Utf8Path::new(LOCK_FILE);
    let dir = atomic::host_dir(
        root,
        abs.parent().expect("an absolute path"),
        MissingDirs::Stop,
    )?
    .with_context(|| format!("{} does not exist", root.join("/run")))?;
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(
        &dir,
        abs.file_name().expect("a file name"),
        flags,
        Mode::from_raw_mode(0o600),
    )
    .map_err(std::io::Error::from)
    .with_context(|| format!("opening the lock file {path}"))?;
    let file = File::from(fd);
    match file.try_lock() {
        Ok(()) => Ok(Lock { _file: file }),
        Err(TryLockError::WouldBlock) => Err(ChecksFailed(format!(
            "another passthru-image apply or revert holds {path}; wait for it to finish"
        ))
        .into()),
        Err(TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {path}")),
    }
}

/// Right before the first change: our lock, and rpm-ostree idle. (The host checks and the reading of every
/// input come first, so bad input never even makes the lock file.)
pub(crate) fn lock_when_idle(root: &Root, rpm: &RpmOstree) -> Result<Lock> {
    let lock = lock(root)?;
    if let Some(transaction) = rpm.transaction_in_progress()? {
        return Err(ChecksFailed(format!(
            "an rpm-ostree transaction is in progress ({transaction}); wait for it or cancel it \
             with `rpm-ostree cancel`, then run again"
        ))
        .into());
    }
    Ok(lock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use camino::Utf8PathBuf;

    fn temp_root() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap());
        (dir, root)
    }

    #[test]
    fn refuses_hosts_without_ostree_booted_and_non_root() {
        let (_dir, root) = temp_root();
        let err = check_host(&root, Privilege::Superuser).unwrap_err();
        assert!(err.to_string().contains("ostree-booted"), "{err}");
        std::fs::create_dir_all(root.join("/run")).unwrap();
        std::fs::write(root.join(OSTREE_BOOTED), "").unwrap();
        let err = check_host(&root, Privilege::Unprivileged).unwrap_err();
        assert!(err.to_string().contains("as root"), "{err}");
        check_host(&root, Privilege::Superuser).unwrap();
    }

    #[test]
    fn a_second_lock_is_refused_while_the_first_is_held() {
        let (_dir, root) = temp_root();
        std::fs::create_dir_all(root.join("/run")).unwrap();
        let held = lock(&root).unwrap();
        let err = lock(&root).unwrap_err();
        assert!(err.to_string().contains("another passthru-image"), "{err}");
        drop(held);
        lock(&root).unwrap();
    }
}
