//! Writing files and directory trees so that a failure or a crash never leaves half of one, and so that no
//! symlink can send a write somewhere else.
//!
//! - A file is written to a temporary file made inside its directory's open handle (`O_TMPFILE`, else a random
//!   name with `O_EXCL`: nothing planted beside the target is opened), then renamed over the target. A symlink
//!   standing at the target is replaced, never written through.
//! - The directories on the way to a host file under `--root` are opened one level at a time with
//!   `O_NOFOLLOW`: a symlinked `/etc/modprobe.d` is bad input, not a way out of the root.
//! - A tree is checked whole before its first file is written, staged, then renamed into place; a directory is
//!   built beside its target and swapped in with one `renameat2(RENAME_EXCHANGE)`.

use std::io::Write;
use std::time::SystemTime;

use anyhow::{Context, Result};
use camino::{Utf8Component, Utf8Path, Utf8PathBuf};
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use cap_tempfile::TempFile;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, Timestamps};

use crate::error::InputError;
use crate::root::Root;

/// Whether the directories missing on the way to a file are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MissingDirs {
    Create,
    /// Stop at the first missing one (the file cannot be there).
    Stop,
}

/// What stands in the way of a write, at a path relative to where the walk started.
#[derive(Debug)]
enum Obstacle {
    Symlink(Utf8PathBuf),
    NotDirectory(Utf8PathBuf),
    Directory(Utf8PathBuf),
    Other(Utf8PathBuf, std::io::Error),
}

impl Obstacle {
    /// The message for bad input, the obstacle's path shown under `base`.
    fn describe(&self, base: &Utf8Path) -> (Utf8PathBuf, String) {
        match self {
            Obstacle::Symlink(at) => (
                base.join(at),
                "is a symlink; it is not written through: make it a directory or remove it"
                    .to_owned(),
            ),
            Obstacle::NotDirectory(at) => (
                base.join(at),
                "is not a directory, but a directory goes there".to_owned(),
            ),
            Obstacle::Directory(at) => (
                base.join(at),
                "is a directory, but a file goes there".to_owned(),
            ),
            Obstacle::Other(at, e) => (base.join(at), format!("cannot be used: {e}")),
        }
    }

    fn into_input_error(self, base: &Utf8Path, field: Option<&str>) -> anyhow::Error {
        let (path, what) = self.describe(base);
        match field {
            Some(field) => InputError::new(field, format!("{path} {what}")),
            None => InputError::new(path.as_str(), what),
        }
        .into()
    }
}

/// Opens the directory `rel` below `base` one component at a time, never following a symlink. `Ok(None)`
/// when a component is missing and `missing` is [`MissingDirs::Stop`].
fn open_dirs(base: &Dir, rel: &Utf8Path, missing: MissingDirs) -> Result<Option<Dir>, Obstacle> {
    let mut dir = base
        .try_clone()
        .map_err(|e| Obstacle::Other(Utf8PathBuf::new(), e))?;
    let mut at = Utf8PathBuf::new();
    for component in rel.components() {
        let name = match component {
            Utf8Component::Normal(name) => name,
            Utf8Component::CurDir | Utf8Component::RootDir => continue,
            // Paths come from constants and validated names; a `..` here is a bug, and never followed.
            Utf8Component::ParentDir | Utf8Component::Prefix(_) => {
                return Err(Obstacle::Other(
                    at.join(component.as_str()),
                    std::io::Error::other("`..` is not allowed on the way to a file"),
                ));
            }
        };
        at.push(name);
        dir = match open_one_dir(&dir, name) {
            Ok(next) => next,
            Err(rustix::io::Errno::NOENT) if missing == MissingDirs::Stop => return Ok(None),
            Err(rustix::io::Errno::NOENT) => {
                match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(Obstacle::Other(at, e.into())),
                }
                open_one_dir(&dir, name).map_err(|e| obstacle(&dir, name, &at, e))?
            }
            Err(e) => return Err(obstacle(&dir, name, &at, e)),
        };
    }
    Ok(Some(dir))
}

fn open_one_dir(dir: &Dir, name: &str) -> Result<Dir, rustix::io::Errno> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::empty())?;
    Ok(Dir::from_std_file(std::fs::File::from(fd)))
}

/// Names what made opening `name` as a directory fail.
fn obstacle(dir: &Dir, name: &str, at: &Utf8Path, e: rustix::io::Errno) -> Obstacle {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink => {
            Obstacle::Symlink(at.to_owned())
        }
        Ok(stat) if FileType::from_raw_mode(stat.st_mode) != FileType::Directory => {
            Obstacle::NotDirectory(at.to_owned())
        }
        _ => Obstacle::Other(at.to_owned(), e.into()),
    }
}

/// What is at `name` in `dir` now, without following a symlink; `None` when nothing.
fn kind_of(dir: &Dir, name: &str) -> Result<Option<FileType>, rustix::io::Errno> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(FileType::from_raw_mode(stat.st_mode))),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Checks that a file can be written at `rel` below `base` without following a symlink: every directory on
/// the way is a real directory or missing, and the target is missing, a regular file or a symlink (replaced).
fn check_target(base: &Dir, rel: &Utf8Path) -> Result<(), Obstacle> {
    let (parent, name) = split(rel)?;
    let Some(dir) = open_dirs(base, parent, MissingDirs::Stop)? else {
        return Ok(());
    };
    match kind_of(&dir, name) {
        Ok(None | Some(FileType::RegularFile | FileType::Symlink)) => Ok(()),
        Ok(Some(FileType::Directory)) => Err(Obstacle::Directory(rel.to_owned())),
        Ok(Some(_)) => Err(Obstacle::Other(
            rel.to_owned(),
            std::io::Error::other("it is not a regular file"),
        )),
        Err(e) => Err(Obstacle::Other(rel.to_owned(), e.into())),
    }
}

fn split(rel: &Utf8Path) -> Result<(&Utf8Path, &str), Obstacle> {
    match (rel.parent(), rel.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(Obstacle::Other(
            rel.to_owned(),
            std::io::Error::other("names no file"),
        )),
    }
}

/// Writes `content` to a new temporary file in `dir` with `mode`, flushed to disk, ready to be renamed into
/// place by [`TempFile::replace`]. Dropped unrenamed, it is removed.
fn stage<'d>(
    dir: &'d Dir,
    content: &[u8],
    mode: u32,
    mtime: Option<SystemTime>,
) -> std::io::Result<TempFile<'d>> {
    let mut file = TempFile::new(dir)?;
    file.write_all(content)?;
    rustix::fs::fchmod(file.as_file(), Mode::from_raw_mode(mode))?;
    if let Some(mtime) = mtime {
        let time = timestamp(mtime);
        rustix::fs::futimens(
            file.as_file(),
            &Timestamps {
                last_access: time,
                last_modification: time,
            },
        )?;
    }
    file.as_file().sync_all()?;
    Ok(file)
}

fn timestamp(time: SystemTime) -> rustix::fs::Timespec {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    rustix::fs::Timespec {
        tv_sec: since.as_secs() as i64,
        tv_nsec: since.subsec_nanos() as _,
    }
}

/// Renames a staged file over `name` and flushes the directory, so the rename itself survives a crash.
fn commit(dir: &Dir, file: TempFile<'_>, name: &str) -> std::io::Result<()> {
    file.replace(name)?;
    rustix::fs::fsync(readable(dir)?)?;
    Ok(())
}

/// The directory opened for reading: cap-std may hold it as an `O_PATH` handle, which fsync and futimens
/// refuse.
fn readable(dir: &Dir) -> std::io::Result<std::os::fd::OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(dir, ".", flags, Mode::empty())?)
}

/// Checks before the first write that the host file `abs` under `root` can be written without following a
/// symlink (see [`check_target`]); bad input naming the obstacle's path otherwise.
pub(crate) fn check_host_file(root: &Root, abs: &Utf8Path) -> Result<()> {
    check_target(root.dir()?, abs).map_err(|o| o.into_input_error(root.path(), None))
}

/// The directory `abs_dir` under `root`, opened without following a symlink; `None` when it is missing and
/// `missing` is [`MissingDirs::Stop`].
pub(crate) fn host_dir(
    root: &Root,
    abs_dir: &Utf8Path,
    missing: MissingDirs,
) -> Result<Option<Dir>> {
    open_dirs(root.dir()?, abs_dir, missing).map_err(|o| o.into_input_error(root.path(), None))
}

/// Writes the host file `abs` under `root` atomically, making missing directories (mode 0755). Readers
/// (dracut run by rpm-ostree, modprobe, the user's editor) see the old file or the new one, never a part.
pub(crate) fn write_host_file(
    root: &Root,
    abs: &Utf8Path,
    content: &[u8],
    mode: u32,
) -> Result<()> {
    check_host_file(root, abs)?;
    let path = root.join(abs);
    let (parent, name) = split(abs).map_err(|o| o.into_input_error(root.path(), None))?;
    let dir = host_dir(root, parent, MissingDirs::Create)?.expect("made when missing");
    let file = stage(&dir, content, mode, None).with_context(|| format!("writing {path}"))?;
    commit(&dir, file, name).with_context(|| format!("writing {path}"))
}

/// Removes the host file `abs` under `root`; already gone is fine.
pub(crate) fn remove_host_file(root: &Root, abs: &Utf8Path) -> Result<()> {
    let path = root.join(abs);
    let (parent, name) = split(abs).map_err(|o| o.into_input_error(root.path(), None))?;
    let Some(dir) = host_dir(root, parent, MissingDirs::Stop)? else {
        return Ok(());
    };
    match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(std::io::Error::from(e)).with_context(|| format!("removing {path}")),
    }
}

/// Writes the file `path` the user named (`detect --write`) atomically, in its existing directory. `field`
/// names the option for bad input.
pub(crate) fn write_file(path: &Utf8Path, field: &str, content: &[u8], mode: u32) -> Result<()> {
    let bad =
        |what: &str| -> anyhow::Error { InputError::new(field, format!("{path} {what}")).into() };
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(bad("names no file"));
    };
    let parent = if parent.as_str().is_empty() {
        Utf8Path::new(".")
    } else {
        parent
    };
    let dir = Dir::open_ambient_dir(parent, ambient_authority())
        .map_err(|e| bad(&format!("is not in an existing directory: {e}")))?;
    check_target(&dir, Utf8Path::new(name)).map_err(|o| {
        let (_, what) = o.describe(parent);
        bad(&what)
    })?;
    let file = stage(&dir, content, mode, None).with_context(|| format!("writing {path}"))?;
    commit(&dir, file, name).with_context(|| format!("writing {path}"))
}

/// One file of a tree written by [`write_tree`], at a path relative to the tree's top.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TreeFile<'a> {
    pub(crate) path: &'a Utf8Path,
    pub(crate) mode: u32,
    pub(crate) content: &'a [u8],
}

/// Writes `files` into the existing directory `top` (other files there stay). Every path is checked first, so
/// a folder where a file goes (or the reverse), or a symlinked folder, refuses the run before anything is
/// written; then every file is staged and only then renamed into place. Files get `mtime`. `field` names the
/// option that gave `top`.
pub(crate) fn write_tree(
    top: &Utf8Path,
    field: &str,
    files: &[TreeFile],
    mtime: SystemTime,
) -> Result<()> {
    let base = Dir::open_ambient_dir(top, ambient_authority())
        .with_context(|| format!("opening {top}"))?;
    for file in files {
        check_target(&base, file.path).map_err(|o| o.into_input_error(top, Some(field)))?;
    }
    let mut dirs = Vec::with_capacity(files.len());
    for file in files {
        let (parent, _) = split(file.path).map_err(|o| o.into_input_error(top, Some(field)))?;
        let dir = open_dirs(&base, parent, MissingDirs::Create)
            .map_err(|o| o.into_input_error(top, Some(field)))?
            .expect("made when missing");
        dirs.push(dir);
    }
    let mut staged = Vec::with_capacity(files.len());
    for (file, dir) in files.iter().zip(&dirs) {
        let temp = stage(dir, file.content, file.mode, Some(mtime))
            .with_context(|| format!("writing {}", top.join(file.path)))?;
        staged.push((dir, temp, file.path));
    }
    for (dir, temp, path) in staged {
        let name = path.file_name().expect("checked by split");
        commit(dir, temp, name).with_context(|| format!("writing {}", top.join(path)))?;
    }
    Ok(())
}

/// Sets the modification time of the directory `rel` below `top` (and not of a symlink standing there).
pub(crate) fn set_dir_mtime(top: &Utf8Path, rel: &Utf8Path, mtime: SystemTime) -> Result<()> {
    let base = Dir::open_ambient_dir(top, ambient_authority())
        .with_context(|| format!("opening {top}"))?;
    let dir = open_dirs(&base, rel, MissingDirs::Stop)
        .map_err(|o| o.into_input_error(top, None))?
        .with_context(|| format!("{} is gone", top.join(rel)))?;
    let time = timestamp(mtime);
    rustix::fs::futimens(
        readable(&dir)?,
        &Timestamps {
            last_access: time,
            last_modification: time,
        },
    )
    .with_context(|| format!("setting the time of {}", top.join(rel)))
}

/// What [`replace_dir`] does with a `dir` that is there and not empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Occupied {
    /// Bad input: it may be the user's.
    Refuse,
    /// The caller knows it is its own.
    Replace,
}

/// Makes the directory `dir` by filling a fresh directory beside it with `fill` and swapping that into place.
/// `dir` may be absent or empty; a non-empty `dir` is replaced only with [`Occupied::Replace`]. `dir` may not
/// be a symlink. When `fill` fails, the staging directory goes and `dir` is as it was. `flag` names the option
/// that gave `dir`.
pub(crate) fn replace_dir<T>(
    dir: &Utf8Path,
    flag: &'static str,
    occupied: Occupied,
    fill: impl FnOnce(&Utf8Path) -> Result<T>,
) -> Result<T> {
    let bad =
        |what: String| -> anyhow::Error { InputError::new(flag, format!("{dir} {what}")).into() };
    let parent = dir
        .parent()
        .filter(|p| !p.as_str().is_empty())
        .unwrap_or(Utf8Path::new("."));
    let name = dir
        .file_name()
        .ok_or_else(|| bad("names no directory".into()))?;
    let exists = match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(bad("is a symlink; name the directory itself".into()));
        }
        Ok(meta) if !meta.is_dir() => return Err(bad("exists and is not a directory".into())),
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(bad(format!("cannot be used: {e}"))),
    };
    if exists && occupied == Occupied::Refuse && std::fs::read_dir(dir)?.next().is_some() {
        return Err(bad("is not empty".into()));
    }
    if !parent.is_dir() {
        return Err(bad(format!("cannot be made: {parent} is not a directory")));
    }
    // A random name made with mkdir: nothing planted beside `dir` is reused; removed when dropped.
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.passthru-new-"))
        .tempdir_in(parent)
        .with_context(|| format!("creating a staging directory in {parent}"))?;
    let staged = Utf8Path::from_path(staging.path()).context("the staging path is not UTF-8")?;
    let filled = fill(staged)?;
    let cwd = rustix::fs::CWD;
    if exists {
        // One step: readers see the old tree or the new one. The old one is left at the staging name and
        // removed with it.
        rustix::fs::renameat_with(
            cwd,
            staged.as_str(),
            cwd,
            dir.as_str(),
            RenameFlags::EXCHANGE,
        )
        .with_context(|| format!("moving {staged} to {dir}"))?;
    } else {
        rustix::fs::renameat_with(
            cwd,
            staged.as_str(),
            cwd,
            dir.as_str(),
            RenameFlags::NOREPLACE,
        )
        .with_context(|| format!("moving {staged} to {dir}"))?;
        // Renamed away: nothing is left to remove.
        let _ = staging.keep();
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn entries(dir: &Utf8Path) -> Vec<String> {
        let mut names: Vec<String> = dir
            .read_dir_utf8()
            .unwrap()
            .map(|e| e.unwrap().file_name().to_owned())
            .collect();
        names.sort();
        names
    }

    fn temp() -> (tempfile::TempDir, Utf8PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let top = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).unwrap();
        (tmp, top)
    }

    #[test]
    fn a_failed_fill_leaves_the_old_directory_and_no_staging() {
        let (_tmp, top) = temp();
        let dir = top.join("out");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("old"), "old").unwrap();

        let failed = replace_dir(&dir, "--output", Occupied::Replace, |new| -> Result<()> {
            std::fs::write(new.join("half"), "x")?;
            anyhow::bail!("fill failed")
        });
        assert!(failed.is_err());
        assert_eq!(entries(&top), ["out"]);
        assert_eq!(entries(&dir), ["old"]);

        replace_dir(&dir, "--output", Occupied::Replace, |new| {
            Ok(std::fs::write(new.join("new"), "new")?)
        })
        .unwrap();
        assert_eq!(entries(&top), ["out"]);
        assert_eq!(entries(&dir), ["new"]);
    }

    #[test]
    fn a_non_empty_or_symlinked_directory_is_kept_unless_the_caller_owns_it() {
        let (_tmp, top) = temp();
        let dir = top.join("out");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("theirs"), "x").unwrap();
        assert!(replace_dir(&dir, "--capture", Occupied::Refuse, |_| Ok(())).is_err());
        assert_eq!(entries(&dir), ["theirs"]);
        symlink(&dir, top.join("link")).unwrap();
        let err =
            replace_dir(&top.join("link"), "--output", Occupied::Replace, |_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("is a symlink"), "{err}");
        assert_eq!(entries(&dir), ["theirs"]);
        assert_eq!(entries(&top), ["link", "out"]);
    }

    #[test]
    fn write_file_sets_the_mode_and_replaces_a_symlink_without_following_it() {
        let (_tmp, dir) = temp();
        let path = dir.join("file.conf");
        write_file(&path, "--write", b"one\n", 0o600).unwrap();
        write_file(&path, "--write", b"two\n", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        std::fs::write(dir.join("victim"), "keep\n").unwrap();
        symlink(dir.join("victim"), dir.join("link")).unwrap();
        write_file(&dir.join("link"), "--write", b"new\n", 0o644).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("victim")).unwrap(),
            "keep\n"
        );
        assert!(
            !std::fs::symlink_metadata(dir.join("link"))
                .unwrap()
                .is_symlink()
        );
        assert_eq!(entries(&dir), ["file.conf", "link", "victim"]);
    }

    #[test]
    fn host_writes_refuse_symlinked_directories_under_the_root() {
        let (_tmp, top) = temp();
        let root = Root::new(top.join("root"));
        std::fs::create_dir_all(root.join("/etc")).unwrap();
        std::fs::create_dir_all(top.join("elsewhere")).unwrap();
        symlink(top.join("elsewhere"), root.join("/etc/modprobe.d")).unwrap();
        let err = write_host_file(&root, Utf8Path::new("/etc/modprobe.d/x.conf"), b"x", 0o644)
            .unwrap_err();
        let input = err.downcast_ref::<InputError>().expect("bad input");
        assert_eq!(input.field, root.join("/etc/modprobe.d").as_str());
        assert!(input.message.contains("is a symlink"), "{input}");
        assert!(entries(&top.join("elsewhere")).is_empty());

        write_host_file(
            &root,
            Utf8Path::new("/etc/dracut.conf.d/x.conf"),
            b"x\n",
            0o644,
        )
        .unwrap();
        assert_eq!(root.read("/etc/dracut.conf.d/x.conf").unwrap(), "x\n");
        remove_host_file(&root, Utf8Path::new("/etc/dracut.conf.d/x.conf")).unwrap();
        remove_host_file(&root, Utf8Path::new("/etc/dracut.conf.d/x.conf")).unwrap();
        assert!(entries(&root.join("/etc/dracut.conf.d")).is_empty());
    }

    #[test]
    fn a_tree_replaces_a_symlinked_file_and_leaves_its_target_alone() {
        let (_tmp, top) = temp();
        std::fs::write(top.join("victim"), "keep\n").unwrap();
        std::fs::create_dir(top.join("out")).unwrap();
        symlink(top.join("victim"), top.join("out/Containerfile")).unwrap();
        let files = [TreeFile {
            path: Utf8Path::new("Containerfile"),
            mode: 0o644,
            content: b"FROM base\n",
        }];
        write_tree(&top.join("out"), "--output", &files, SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(
            std::fs::read_to_string(top.join("victim")).unwrap(),
            "keep\n"
        );
        assert_eq!(
            std::fs::read_to_string(top.join("out/Containerfile")).unwrap(),
            "FROM base\n"
        );
        assert!(
            !std::fs::symlink_metadata(top.join("out/Containerfile"))
                .unwrap()
                .is_symlink()
        );
        assert_eq!(entries(&top.join("out")), ["Containerfile"]);
    }

    #[test]
    fn a_tree_with_a_folder_where_a_file_goes_is_refused_before_any_write() {
        let (_tmp, top) = temp();
        std::fs::write(top.join("Containerfile"), "mine\n").unwrap();
        std::fs::create_dir_all(top.join("layers/host")).unwrap();
        let files = [
            TreeFile {
                path: Utf8Path::new("Containerfile"),
                mode: 0o644,
                content: b"new\n",
            },
            TreeFile {
                path: Utf8Path::new("layers/host"),
                mode: 0o644,
                content: b"x",
            },
        ];
        let err = write_tree(&top, "--output", &files, SystemTime::UNIX_EPOCH).unwrap_err();
        assert!(
            err.to_string()
                .contains("is a directory, but a file goes there"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(top.join("Containerfile")).unwrap(),
            "mine\n"
        );
        assert_eq!(entries(&top), ["Containerfile", "layers"]);

        let files = [TreeFile {
            path: Utf8Path::new("Containerfile/x"),
            mode: 0o644,
            content: b"x",
        }];
        let err = write_tree(&top, "--output", &files, SystemTime::UNIX_EPOCH).unwrap_err();
        assert!(err.to_string().contains("is not a directory"), "{err}");
    }
}
