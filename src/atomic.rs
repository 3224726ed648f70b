//! Writing files and directory trees so that a failure or a crash never leaves half of one: everything is
//! written beside its target first and then renamed into place.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result};
use camino::Utf8Path;

use crate::error::InputError;

/// Writes `path` through a temporary file in the same directory and a rename: readers (dracut run by
/// rpm-ostree, modprobe, the user's editor) see the old file or the new one, never a part.
pub fn write_file(path: &Utf8Path, content: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().context("a file path has a parent")?;
    let dir = if dir.as_str().is_empty() {
        Utf8Path::new(".")
    } else {
        dir
    };
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

/// Makes the directory `dir` by filling a fresh directory beside it with `fill` and renaming that into place.
/// `dir` may be absent or empty; a non-empty `dir` is replaced only with `replace_existing` (the caller knows it
/// is its own). When `fill` fails nothing is left behind and `dir` is as it was. `flag` names the option that
/// gave `dir`, for the error when it names no directory.
pub fn replace_dir<T>(
    dir: &Utf8Path,
    flag: &'static str,
    replace_existing: bool,
    fill: impl FnOnce(&Utf8Path) -> Result<T>,
) -> Result<T> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_str().is_empty())
        .unwrap_or(Utf8Path::new("."));
    let name = dir
        .file_name()
        .ok_or_else(|| InputError::new(flag, format!("{dir} names no directory")))?;
    let staging = parent.join(format!(".{name}.passthru-new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {staging}"))?;
    let filled = match fill(&staging) {
        Ok(filled) => filled,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    if dir.is_dir() {
        let removed = if replace_existing {
            std::fs::remove_dir_all(dir)
        } else {
            std::fs::remove_dir(dir)
        };
        removed.with_context(|| format!("replacing {dir}"))?;
    }
    std::fs::rename(&staging, dir).with_context(|| format!("moving {staging} to {dir}"))?;
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Utf8Path) -> Vec<String> {
        let mut names: Vec<String> = dir
            .read_dir_utf8()
            .unwrap()
            .map(|e| e.unwrap().file_name().to_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_failed_fill_leaves_the_old_directory_and_no_staging() {
        let tmp = tempfile::tempdir().unwrap();
        let top = Utf8Path::from_path(tmp.path()).unwrap();
        let dir = top.join("out");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("old"), "old").unwrap();

        let failed = replace_dir(&dir, "--output", true, |new| -> Result<()> {
            std::fs::write(new.join("half"), "x")?;
            anyhow::bail!("fill failed")
        });
        assert!(failed.is_err());
        assert_eq!(entries(top), ["out"]);
        assert_eq!(entries(&dir), ["old"]);

        replace_dir(&dir, "--output", true, |new| {
            Ok(std::fs::write(new.join("new"), "new")?)
        })
        .unwrap();
        assert_eq!(entries(top), ["out"]);
        assert_eq!(entries(&dir), ["new"]);
    }

    #[test]
    fn a_non_empty_directory_is_kept_unless_the_caller_owns_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap().join("out");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("theirs"), "x").unwrap();
        assert!(replace_dir(&dir, "--capture", false, |_| Ok(())).is_err());
        assert_eq!(entries(&dir), ["theirs"]);
    }

    #[test]
    fn write_file_sets_the_mode_and_leaves_no_temporary() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let path = dir.join("sub/file.conf");
        write_file(&path, b"one\n", 0o600).unwrap();
        write_file(&path, b"two\n", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(entries(&dir.join("sub")), ["file.conf"]);
    }
}
