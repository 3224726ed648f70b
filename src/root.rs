//! The host filesystem root every host read goes through (`--root`, default `/`), and the one way to read a
//! file the user named (config, dkms.conf, kernel packages).
//!
//! Tests and offline analysis point the root at a fixture tree; nothing else in the tool opens `/sys`, `/proc`
//! or the host's `/etc` directly. Every path is resolved inside the root through a cap-std directory handle:
//! `..` and symlinks may move around in the tree, never out of it (a link to `/etc` or to this machine's real
//! `/sys` is refused, not followed). Only regular files are read: they are opened non-blocking, so a FIFO
//! cannot hang the open, then checked; each kind of file is read up to a cap no real one reaches, so a file
//! linked to an endless source cannot fill the memory. Device files a check needs are the named exceptions of
//! [`Root::open_device`].
//!
//! A host file the command needs that is missing, unreadable, not UTF-8, too large, not a regular file or
//! outside the root is bad input ([`InputError`], exit 2) naming the path: the tree is what the user gave.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::sync::{Arc, OnceLock};

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt as _};

use crate::error::InputError;
use crate::verbosity::{self, Verbosity};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// The most bytes read from a host file, by where it lives (the first matching prefix wins). Real files stay
/// far below: a sysfs attribute is at most a page, /proc/cmdline at most 4 KiB, /proc/cpuinfo about 1.5 KiB
/// per CPU, /proc/kallsyms about 10 MiB on a Fedora kernel with its modules loaded.
const LIMITS: &[(&str, u64)] = &[
    ("/proc/kallsyms", 64 * MIB),
    ("/proc/cpuinfo", 16 * MIB),
    ("/proc", MIB),
    ("/sys", 64 * KIB),
];
/// Everything else read under the root: /etc drop-ins, the live state file and its backups.
const DEFAULT_LIMIT: u64 = MIB;

/// Files the user names outside the root, by kind; see [`read_user_file`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UserFile {
    /// passthru.toml: a few KiB.
    Config,
    /// A module source's dkms.conf: a few KiB.
    DkmsConf,
    /// An ACS-override kernel package: kernel-modules is the largest, well under 200 MiB.
    KernelPackage,
    /// A Machine Owner Key's private key or certificate (`[signing]`): a few KiB of PEM.
    SigningPem,
}

impl UserFile {
    fn limit(self) -> u64 {
        match self {
            UserFile::Config | UserFile::DkmsConf | UserFile::SigningPem => MIB,
            UserFile::KernelPackage => 1024 * MIB,
        }
    }
}

/// Device files a check opens: the only files under the root read without being regular files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Device {
    /// /dev/kvm, opened read-write: whether this machine can run a VM with KVM.
    Kvm,
    /// /dev/kmsg, opened read-only and non-blocking: the kernel log, one record per read.
    Kmsg,
}

impl Device {
    fn path(self) -> &'static str {
        match self {
            Device::Kvm => "/dev/kvm",
            Device::Kmsg => "/dev/kmsg",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Root {
    path: Utf8PathBuf,
    /// The root opened once, on first use (a host read opens every file through it).
    dir: Arc<OnceLock<Dir>>,
}

impl PartialEq for Root {
    fn eq(&self, other: &Root) -> bool {
        self.path == other.path
    }
}

impl Eq for Root {}

impl Default for Root {
    fn default() -> Self {
        Root::new("/")
    }
}

impl Root {
    pub fn new(path: impl Into<Utf8PathBuf>) -> Self {
        Root {
            path: path.into(),
            dir: Arc::default(),
        }
    }

    /// An empty root in a new temporary directory, removed when the returned guard drops.
    #[cfg(test)]
    pub(crate) fn temporary() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(Utf8Path::from_path(dir.path()).unwrap());
        (dir, root)
    }

    pub(crate) fn path(&self) -> &Utf8Path {
        &self.path
    }

    /// The host in messages: "this machine" for `/`, "the host under DIR" for any other root, so that nothing
    /// said about a tree's facts speaks of the machine the tool runs on.
    pub(crate) fn host_name(&self) -> String {
        match self.path == "/" {
            true => "this machine".to_owned(),
            false => format!("the host under {}", self.path),
        }
    }

    /// The host path `abs` (e.g. `/proc/cpuinfo`) under this root, for messages: nothing is opened by it.
    pub(crate) fn join(&self, abs: impl AsRef<Utf8Path>) -> Utf8PathBuf {
        self.path.join(relative(abs.as_ref()))
    }

    /// The root as a directory handle: every path opened through it stays inside.
    pub(crate) fn dir(&self) -> Result<&Dir> {
        if let Some(dir) = self.dir.get() {
            return Ok(dir);
        }
        let dir = Dir::open_ambient_dir(&self.path, ambient_authority()).map_err(|e| {
            InputError::new(
                "--root",
                format!("{} cannot be opened as a directory: {e}", self.path),
            )
        })?;
        Ok(self.dir.get_or_init(|| dir))
    }

    /// Whether `abs` is there inside the root. A link that leads out of the root counts as absent.
    pub(crate) fn exists(&self, abs: impl AsRef<Utf8Path>) -> bool {
        self.dir()
            .is_ok_and(|dir| dir.exists(relative(abs.as_ref())))
    }

    /// Whether `abs` is a directory inside the root (following links that stay inside).
    pub(crate) fn is_dir(&self, abs: impl AsRef<Utf8Path>) -> bool {
        self.dir()
            .is_ok_and(|dir| dir.is_dir(relative(abs.as_ref())))
    }

    /// Whether `abs` is a regular file inside the root (following links that stay inside).
    pub(crate) fn is_file(&self, abs: impl AsRef<Utf8Path>) -> bool {
        self.dir()
            .is_ok_and(|dir| dir.is_file(relative(abs.as_ref())))
    }

    /// Reads a text file of the host that the command needs.
    pub(crate) fn read(&self, abs: impl AsRef<Utf8Path>) -> Result<String> {
        let abs = abs.as_ref();
        match self.read_optional(abs)? {
            Some(text) => Ok(text),
            None => Err(self.bad(abs, "does not exist (is --root the root of a Linux host?)")),
        }
    }

    /// Reads a file when it exists; `None` when it does not (sysfs attributes are often optional).
    pub(crate) fn read_optional(&self, abs: impl AsRef<Utf8Path>) -> Result<Option<String>> {
        let abs = abs.as_ref();
        match self.read_bytes_optional(abs)? {
            None => Ok(None),
            Some(file) => String::from_utf8(file.bytes)
                .map(Some)
                .map_err(|_| self.bad(abs, "is not UTF-8 text")),
        }
    }

    /// The bytes and permission bits of a host file, `None` when it does not exist: for copies that must come
    /// back exactly as they were (backups of drop-ins).
    pub(crate) fn read_bytes_optional(
        &self,
        abs: impl AsRef<Utf8Path>,
    ) -> Result<Option<HostBytes>> {
        let abs = abs.as_ref();
        let Some(file) = self.open_regular(abs)? else {
            return Ok(None);
        };
        let mode = file
            .metadata()
            .map_err(|e| self.io_error(abs, e))?
            .permissions()
            .mode()
            & 0o7777;
        let limit = limit_for(abs);
        let mut bytes = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.io_error(abs, e))?;
        if bytes.len() as u64 > limit {
            return Err(self.too_large(abs, limit));
        }
        Ok(Some(HostBytes { bytes, mode }))
    }

    /// The lines of a host file the command needs, read as they are used (for files too large to want whole,
    /// like /proc/kallsyms). The size cap and the UTF-8 rule hold as for [`Root::read`].
    pub(crate) fn lines(&self, abs: impl AsRef<Utf8Path>) -> Result<Lines> {
        let abs = abs.as_ref();
        let Some(file) = self.open_regular(abs)? else {
            return Err(self.bad(abs, "does not exist (is --root the root of a Linux host?)"));
        };
        let limit = limit_for(abs);
        Ok(Lines {
            reader: BufReader::new(file.take(limit + 1)),
            path: self.join(abs),
            limit,
            read: 0,
        })
    }

    /// The entry names of a host directory, sorted; `None` when it does not exist.
    pub(crate) fn read_dir(&self, abs: impl AsRef<Utf8Path>) -> Result<Option<Vec<String>>> {
        let abs = abs.as_ref();
        let entries = match self.dir()?.read_dir(relative(abs)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.trace("listing", abs, " (absent)");
                return Ok(None);
            }
            Err(e) => return Err(self.io_error(abs, e)),
        };
        self.trace("listing", abs, "");
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.io_error(abs, e))?;
            let name = entry.file_name().into_string().map_err(|name| {
                self.bad(abs, &format!("holds {name:?}, which is not a UTF-8 name"))
            })?;
            names.push(name);
        }
        names.sort();
        Ok(Some(names))
    }

    /// The last component of a symlink's target (`../../bus/pci/drivers/nvidia` -> `nvidia`), `None` when the
    /// link does not exist. The target is not followed: only its name matters, wherever it points.
    pub(crate) fn link_name(&self, abs: impl AsRef<Utf8Path>) -> Result<Option<String>> {
        let abs = abs.as_ref();
        self.trace("reading the link", abs, "");
        let target = match self.dir()?.read_link_contents(relative(abs)) {
            Ok(target) => target,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                return Err(self.bad(abs, "is not a symlink"));
            }
            Err(e) => return Err(self.io_error(abs, e)),
        };
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| self.bad(abs, "is a link whose target has no UTF-8 name"))?;
        Ok(Some(name.to_owned()))
    }

    /// Opens one of the device files a check needs, which must be a character device inside the root.
    pub(crate) fn open_device(&self, device: Device) -> Result<std::fs::File> {
        let abs = Utf8Path::new(device.path());
        let mut options = OpenOptions::new();
        match device {
            Device::Kvm => options.read(true).write(true),
            Device::Kmsg => options.read(true).custom_flags(libc::O_NONBLOCK),
        };
        let file = self
            .dir()?
            .open_with(relative(abs), &options)
            .map_err(|e| self.io_error(abs, e))?
            .into_std();
        let kind = file
            .metadata()
            .map_err(|e| self.io_error(abs, e))?
            .file_type();
        if !kind.is_char_device() {
            return Err(self.bad(abs, "is not a character device"));
        }
        Ok(file)
    }

    /// Opens `abs` for reading when it is a regular file; `None` when it does not exist.
    fn open_regular(&self, abs: &Utf8Path) -> Result<Option<std::fs::File>> {
        let mut options = OpenOptions::new();
        // Non-blocking, so opening a FIFO returns at once (and is then refused) instead of waiting for a writer.
        options
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
        let file = match self.dir()?.open_with(relative(abs), &options) {
            Ok(file) => file.into_std(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.trace("reading", abs, " (absent)");
                return Ok(None);
            }
            Err(e) => return Err(self.io_error(abs, e)),
        };
        self.trace("reading", abs, "");
        let kind = file
            .metadata()
            .map_err(|e| self.io_error(abs, e))?
            .file_type();
        if !kind.is_file() {
            return Err(self.bad(abs, &format!("is {}, not a regular file", describe(kind))));
        }
        Ok(Some(file))
    }

    /// `-vv` shows every host path read, so a user can see what an answer rests on (and what a fixture tree
    /// must hold).
    fn trace(&self, what: &str, abs: &Utf8Path, note: &str) {
        verbosity::say(
            Verbosity::Trace,
            format_args!("{what} {}{note}", self.join(abs)),
        );
    }

    fn bad(&self, abs: &Utf8Path, what: &str) -> anyhow::Error {
        InputError::new(self.join(abs).as_str(), what.to_owned()).into()
    }

    fn too_large(&self, abs: &Utf8Path, limit: u64) -> anyhow::Error {
        self.bad(
            abs,
            &format!(
                "is larger than {limit} bytes, more than a real host's file of this kind holds"
            ),
        )
    }

    fn io_error(&self, abs: &Utf8Path, e: std::io::Error) -> anyhow::Error {
        let root = &self.path;
        let what = if is_escape(&e) {
            format!(
                "leads outside {root} (through a symlink or `..`); links in a host tree must stay \
                 inside it"
            )
        } else if e.kind() == std::io::ErrorKind::NotADirectory {
            "is not a directory (or a path on the way to it is not)".to_owned()
        } else {
            format!("cannot be read: {e}")
        };
        self.bad(abs, &what)
    }
}

/// A host file's bytes and permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostBytes {
    pub(crate) bytes: Vec<u8>,
    pub(crate) mode: u32,
}

/// The lines of a host file, without their line ends; see [`Root::lines`].
pub(crate) struct Lines {
    reader: BufReader<std::io::Take<std::fs::File>>,
    path: Utf8PathBuf,
    limit: u64,
    read: u64,
}

impl Iterator for Lines {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Result<String>> {
        let mut raw = Vec::new();
        let bad =
            |path: &Utf8Path, what: String| Some(Err(InputError::new(path.as_str(), what).into()));
        match self.reader.read_until(b'\n', &mut raw) {
            Ok(0) => return None,
            Ok(n) => self.read += n as u64,
            Err(e) => return bad(&self.path, format!("cannot be read: {e}")),
        }
        if self.read > self.limit {
            return bad(
                &self.path,
                format!(
                    "is larger than {} bytes, more than a real host's file of this kind holds",
                    self.limit
                ),
            );
        }
        if raw.last() == Some(&b'\n') {
            raw.pop();
        }
        match String::from_utf8(raw) {
            Ok(line) => Some(Ok(line)),
            Err(_) => bad(&self.path, "is not UTF-8 text".into()),
        }
    }
}

/// Reads a file the user named (`--config`, `vendor-reset.path`'s dkms.conf, a kernel package): only a regular
/// file, opened without blocking, up to the cap of its kind. Anything else is bad input for `field`.
pub(crate) fn read_user_file(
    path: &Utf8Path,
    kind: UserFile,
    field: &str,
) -> Result<Vec<u8>, InputError> {
    let bad = |what: String| InputError::new(field, format!("{path} {what}"));
    verbosity::say(Verbosity::Trace, format_args!("reading {path} ({field})"));
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => bad("does not exist".into()),
            _ => bad(format!("cannot be read: {e}")),
        })?;
    let kind_of = file
        .metadata()
        .map_err(|e| bad(format!("cannot be read: {e}")))?
        .file_type();
    if !kind_of.is_file() {
        return Err(bad(format!("is {}, not a regular file", describe(kind_of))));
    }
    let limit = kind.limit();
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("cannot be read: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(bad(format!("is larger than {limit} bytes")));
    }
    Ok(bytes)
}

/// [`read_user_file`] for text.
pub(crate) fn read_user_text(
    path: &Utf8Path,
    kind: UserFile,
    field: &str,
) -> Result<String, InputError> {
    String::from_utf8(read_user_file(path, kind, field)?)
        .map_err(|_| InputError::new(field, format!("{path} is not UTF-8 text")))
}

/// Reads text the user pipes in (`--config -`), up to the cap of its kind. A terminal on stdin is refused
/// rather than waited on: nobody types a config there, and the run would seem to hang.
pub(crate) fn read_user_stdin(kind: UserFile, field: &str) -> Result<String, InputError> {
    use std::io::IsTerminal;
    let bad =
        |what: String| InputError::new(field, format!("- reads standard input, which {what}"));
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(bad(
            "is a terminal: pipe the file in (`passthru-image detect | passthru-image plan \
             --config -`)"
                .into(),
        ));
    }
    verbosity::say(
        Verbosity::Trace,
        format_args!("reading standard input ({field})"),
    );
    let limit = kind.limit();
    let mut bytes = Vec::new();
    stdin
        .lock()
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("cannot be read: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(bad(format!("holds more than {limit} bytes")));
    }
    String::from_utf8(bytes).map_err(|_| bad("is not UTF-8 text".into()))
}

/// `abs` relative to the root: cap-std refuses absolute paths.
fn relative(abs: &Utf8Path) -> &Utf8Path {
    match abs.strip_prefix("/") {
        Ok(rest) if rest.as_str().is_empty() => Utf8Path::new("."),
        Ok(rest) => rest,
        Err(_) => abs,
    }
}

fn limit_for(abs: &Utf8Path) -> u64 {
    LIMITS
        .iter()
        .find(|(prefix, _)| abs.starts_with(prefix))
        .map_or(DEFAULT_LIMIT, |(_, limit)| *limit)
}

/// cap-std's refusal of a path that resolves outside its directory: permission denied without an OS error
/// code (a real EACCES carries one).
fn is_escape(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::PermissionDenied && e.raw_os_error().is_none()
}

fn describe(kind: std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, Root) {
        let (dir, root) = Root::temporary();
        std::fs::create_dir_all(root.join("/proc")).unwrap();
        std::fs::create_dir_all(root.join("/sys/devices/x")).unwrap();
        (dir, root)
    }

    fn input_field(err: anyhow::Error) -> String {
        err.downcast_ref::<InputError>()
            .unwrap_or_else(|| panic!("not an input error: {err:#}"))
            .to_string()
    }

    #[test]
    fn joins_absolute_host_paths_under_the_root() {
        let root = Root::new("/tmp/fixture");
        assert_eq!(root.join("/proc/cpuinfo"), "/tmp/fixture/proc/cpuinfo");
        assert_eq!(Root::default().join("/proc/cmdline"), "/proc/cmdline");
    }

    #[test]
    fn links_inside_the_root_are_followed_links_out_of_it_are_refused() {
        let (_dir, root) = tree();
        std::fs::write(root.join("/sys/devices/x/vendor"), "0x10de\n").unwrap();
        symlink("devices/../devices/x", root.join("/sys/inside")).unwrap();
        assert_eq!(root.read("/sys/inside/vendor").unwrap(), "0x10de\n");
        for (name, target) in [
            ("abs", "/etc"),
            ("up", "../../../../../../../../etc"),
            ("real-sys", "/sys/devices"),
        ] {
            symlink(target, root.join(format!("/sys/{name}"))).unwrap();
            let message = input_field(root.read(format!("/sys/{name}/passwd")).unwrap_err());
            assert!(message.contains("leads outside"), "{message}");
            assert!(!root.exists(format!("/sys/{name}")));
        }
    }

    #[test]
    fn fifos_devices_and_directories_are_refused_without_blocking() {
        let (_dir, root) = tree();
        let fifo = root.join("/proc/cpuinfo");
        let c = std::ffi::CString::new(fifo.as_str()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let message = input_field(root.read("/proc/cpuinfo").unwrap_err());
        assert!(message.contains("a FIFO, not a regular file"), "{message}");
        let message = input_field(root.read("/sys/devices").unwrap_err());
        assert!(message.contains("a directory"), "{message}");
        assert!(root.read_optional("/proc/missing").unwrap().is_none());
        let message = input_field(root.read("/proc/missing").unwrap_err());
        assert!(message.contains("does not exist"), "{message}");
    }

    #[test]
    fn reads_are_capped_by_kind_and_must_be_utf8() {
        let (_dir, root) = tree();
        std::fs::write(root.join("/sys/devices/x/class"), vec![b'0'; 65 * 1024]).unwrap();
        let message = input_field(root.read("/sys/devices/x/class").unwrap_err());
        assert!(message.contains("larger than 65536 bytes"), "{message}");
        std::fs::write(root.join("/proc/cmdline"), b"ro \xff\n").unwrap();
        let message = input_field(root.read("/proc/cmdline").unwrap_err());
        assert!(message.contains("not UTF-8"), "{message}");
        std::fs::write(root.join("/proc/kallsyms"), "a\nb\n".repeat(3)).unwrap();
        let lines: Vec<String> = root
            .lines("/proc/kallsyms")
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(lines, ["a", "b", "a", "b", "a", "b"]);
    }

    #[test]
    fn directories_and_link_names_are_read_inside_the_root() {
        let (_dir, root) = tree();
        std::fs::create_dir_all(root.join("/sys/bus/pci/drivers/nvidia")).unwrap();
        symlink(
            "../../../bus/pci/drivers/nvidia",
            root.join("/sys/devices/x/driver"),
        )
        .unwrap();
        assert_eq!(
            root.link_name("/sys/devices/x/driver").unwrap().as_deref(),
            Some("nvidia")
        );
        assert_eq!(root.link_name("/sys/devices/x/none").unwrap(), None);
        assert_eq!(root.read_dir("/sys/devices").unwrap().unwrap(), ["x"]);
        assert_eq!(root.read_dir("/sys/nothing").unwrap(), None);
        assert!(root.is_dir("/sys/devices/x") && !root.is_dir("/sys/devices/y"));
    }

    #[test]
    fn user_files_must_be_regular_and_small_enough() {
        let (_dir, root) = tree();
        let config = root.join("/passthru.toml");
        std::fs::write(&config, "[cpu]\n").unwrap();
        assert_eq!(
            read_user_text(&config, UserFile::Config, "--config").unwrap(),
            "[cpu]\n"
        );
        let err = read_user_file(&root.join("/proc"), UserFile::Config, "--config").unwrap_err();
        assert_eq!(err.field, "--config");
        assert!(err.message.contains("a directory"), "{err}");
        std::fs::write(&config, vec![b'#'; 2 * 1024 * 1024]).unwrap();
        let err = read_user_file(&config, UserFile::Config, "--config").unwrap_err();
        assert!(err.message.contains("larger than"), "{err}");
    }

    #[test]
    fn device_files_are_a_named_exception() {
        let (_dir, tree) = tree();
        std::fs::create_dir_all(tree.join("/dev")).unwrap();
        std::fs::write(tree.join("/dev/kvm"), "").unwrap();
        let message = input_field(tree.open_device(Device::Kvm).unwrap_err());
        assert!(message.contains("not a character device"), "{message}");
        // The tests run as root (see tests/run-tests.sh): a node with /dev/null's numbers stands in for kmsg.
        let kmsg = std::ffi::CString::new(tree.join("/dev/kmsg").as_str()).unwrap();
        // SAFETY: a valid NUL-terminated path; makedev(1, 3) is /dev/null.
        let made =
            unsafe { libc::mknod(kmsg.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 3)) };
        assert_eq!(made, 0, "mknod needs root");
        let file = tree.open_device(Device::Kmsg).unwrap();
        assert!(file.metadata().unwrap().file_type().is_char_device());
        // Read through the regular-file path, the same node is refused.
        let message = input_field(tree.read("/dev/kmsg").unwrap_err());
        assert!(message.contains("a device"), "{message}");
    }
}
