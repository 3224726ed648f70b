//! The host filesystem root every host read goes through (`--root`, default `/`).
//!
//! Tests and offline analysis point it at a fixture tree; nothing else in the tool opens `/sys` or `/proc`
//! directly.

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root(Utf8PathBuf);

impl Default for Root {
    fn default() -> Self {
        Root(Utf8PathBuf::from("/"))
    }
}

impl Root {
    pub fn new(path: impl Into<Utf8PathBuf>) -> Self {
        Root(path.into())
    }

    pub fn path(&self) -> &Utf8Path {
        &self.0
    }

    /// The host path `abs` (e.g. `/proc/cpuinfo`) under this root.
    pub fn join(&self, abs: impl AsRef<Utf8Path>) -> Utf8PathBuf {
        let abs = abs.as_ref();
        self.0.join(abs.strip_prefix("/").unwrap_or(abs))
    }

    pub fn exists(&self, abs: impl AsRef<Utf8Path>) -> bool {
        self.join(abs).exists()
    }

    /// Reads a text file of the host.
    pub fn read(&self, abs: impl AsRef<Utf8Path>) -> Result<String> {
        let path = self.join(abs);
        std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))
    }

    /// Reads a file when it exists; `None` when it does not (sysfs attributes are often optional).
    pub fn read_optional(&self, abs: impl AsRef<Utf8Path>) -> Result<Option<String>> {
        let path = self.join(abs);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {path}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_absolute_host_paths_under_the_root() {
        let root = Root::new("/tmp/fixture");
        assert_eq!(root.join("/proc/cpuinfo"), "/tmp/fixture/proc/cpuinfo");
        assert_eq!(Root::default().join("/proc/cmdline"), "/proc/cmdline");
    }
}
