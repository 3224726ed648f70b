//! The record of what `apply` changed, so `revert` undoes exactly that and nothing the user did.
//!
//! Kept in /etc/passthru-image/ (under --root): /etc survives upgrades and follows the host, like the drop-ins.
//! It is saved after every step, so a run that fails half-way still leaves an accurate record.

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use super::changes::KernelChange;
use crate::root::Root;

pub const DIR: &str = "/etc/passthru-image";
pub const FILE: &str = "/etc/passthru-image/live-state.json";
/// Copies of the files `apply` replaced, at their host path below this directory.
pub const BACKUP_DIR: &str = "/etc/passthru-image/backup";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveState {
    /// Kargs `apply` appended (it deletes them on revert).
    pub kargs_appended: Vec<String>,
    /// Host kargs `apply` removed to resolve conflicts (appended again on revert).
    pub kargs_deleted: Vec<String>,
    /// `apply` turned initramfs regeneration on (it was off).
    pub initramfs_enabled: bool,
    pub files: Vec<FileRecord>,
    pub kernel: Option<KernelChange>,
    /// The pending deployment apply changed the drop-ins under while regeneration was already on: its
    /// initramfs predates them. Any newer deployment was regenerated from them, so this one alone is stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initramfs_stale_in: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRecord {
    /// Host path, e.g. /etc/modprobe.d/50-passthru-vfio.conf.
    pub path: Utf8PathBuf,
    /// Host path of the copy of what was there before; `None` when the file did not exist.
    pub backup: Option<Utf8PathBuf>,
}

impl LiveState {
    pub fn is_empty(&self) -> bool {
        *self == LiveState::default()
    }

    pub fn file(&self, path: &Utf8PathBuf) -> Option<&FileRecord> {
        self.files.iter().find(|f| &f.path == path)
    }
}

pub fn load(root: &Root) -> Result<LiveState> {
    match root.read_optional(FILE)? {
        None => Ok(LiveState::default()),
        Some(text) => serde_json::from_str(&text).with_context(|| {
            format!(
                "reading {}: not a state file this version wrote",
                root.join(FILE)
            )
        }),
    }
}

/// Saves the record, or removes it once there is nothing left to undo.
pub fn save(root: &Root, state: &LiveState) -> Result<()> {
    if state.is_empty() {
        return crate::atomic::remove_host_file(root, Utf8Path::new(FILE));
    }
    let text = serde_json::to_string_pretty(state)? + "\n";
    crate::atomic::write_host_file(root, Utf8Path::new(FILE), text.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_loads_and_removes_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap());
        assert!(load(&root).unwrap().is_empty());
        let state = LiveState {
            kargs_appended: vec!["iommu=pt".into()],
            initramfs_enabled: true,
            ..LiveState::default()
        };
        save(&root, &state).unwrap();
        assert_eq!(load(&root).unwrap(), state);
        save(&root, &LiveState::default()).unwrap();
        assert!(!root.exists(FILE));
    }
}
