//! The modprobe configuration as kmod reads it (what `modprobe -c` shows): the `*.conf` files of the
//! modprobe.d directories, a file name in an earlier directory hiding the same name in a later one, all read in
//! the order of their names; plus `modprobe.blacklist=` and the kernel's own `module_blacklist=` from the
//! command line.
//!
//! Module names are compared as kmod compares them, `-` and `_` alike. kmod takes only the first `softdep` and
//! the first `install` line for a module (libkmod-module.c: "find only the first command, as modprobe from
//! module-init-tools does"), while every `options` line adds up.

use std::collections::BTreeMap;

use anyhow::Result;
use camino::Utf8PathBuf;

use crate::kargs::params::{MODPROBE_BLACKLIST, MODULE_BLACKLIST};
use crate::kargs::{HostKarg, KernelArg};
use crate::root::Root;

/// kmod's configuration directories, the first the strongest.
pub(crate) const DIRS: &[&str] = &[
    "/etc/modprobe.d",
    "/run/modprobe.d",
    "/usr/local/lib/modprobe.d",
    "/usr/lib/modprobe.d",
    "/lib/modprobe.d",
];

/// One configuration line and where it came from (`/etc/modprobe.d/x.conf:3`, `/proc/cmdline`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Directive {
    pub(crate) source: String,
    pub(crate) kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `blacklist M` or `modprobe.blacklist=M`: M is not loaded through an alias (by name it still is).
    Blacklist(String),
    /// `module_blacklist=M`: the kernel refuses to load M at all.
    KernelBlacklist(String),
    /// `install M COMMAND`: modprobe runs COMMAND instead of loading M.
    Install { module: String, command: String },
    /// `options M a=1 b`: parameters given to M when it loads.
    Options {
        module: String,
        options: Vec<String>,
    },
    /// `softdep M pre: A B post: C`: modules loaded before and after M.
    Softdep {
        module: String,
        pre: Vec<String>,
        post: Vec<String>,
    },
}

/// The effective configuration, in the order kmod reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ModprobeConfig {
    pub(crate) directives: Vec<Directive>,
    /// The files read, after hiding.
    pub(crate) files: Vec<Utf8PathBuf>,
}

/// kmod's spelling of a module name.
pub(crate) fn module_name(name: &str) -> String {
    name.replace('-', "_")
}

/// Reads the configuration under `root`, with the blacklists of `cmdline`.
pub(crate) fn read(root: &Root, cmdline: &[HostKarg]) -> Result<ModprobeConfig> {
    let mut by_name: BTreeMap<String, Utf8PathBuf> = BTreeMap::new();
    for dir in DIRS {
        for name in root.read_dir(dir)?.unwrap_or_default() {
            if name.ends_with(".conf") && !name.starts_with('.') {
                by_name
                    .entry(name.clone())
                    .or_insert_with(|| Utf8PathBuf::from(dir).join(&name));
            }
        }
    }
    let mut config = ModprobeConfig::default();
    for path in by_name.into_values() {
        // A name that is a directory (or a dangling link) is skipped by kmod too.
        if !root.exists(&path) || root.is_dir(&path) {
            continue;
        }
        let text = root.read(&path)?;
        config.directives.extend(parse(&text, path.as_str()));
        config.files.push(path);
    }
    config.directives.extend(from_cmdline(cmdline));
    Ok(config)
}

/// The directives of one file's text; lines kmod does not know are skipped, as kmod skips them.
pub(crate) fn parse(text: &str, path: &str) -> Vec<Directive> {
    let mut directives = Vec::new();
    let mut pending = String::new();
    let mut first_line = 0;
    for (number, line) in text.lines().enumerate() {
        if pending.is_empty() {
            first_line = number + 1;
        }
        // A trailing backslash continues the line.
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let source = format!("{path}:{first_line}");
        if let Some(kind) = parse_line(&pending) {
            directives.push(Directive { source, kind });
        }
        pending.clear();
    }
    directives
}

fn parse_line(line: &str) -> Option<Kind> {
    let line = line.trim();
    if line.starts_with('#') {
        return None;
    }
    let mut words = line.split_whitespace();
    let command = words.next()?;
    let module = module_name(words.next()?);
    let rest: Vec<&str> = words.collect();
    Some(match command {
        "blacklist" => Kind::Blacklist(module),
        "install" => Kind::Install {
            module,
            command: rest.join(" "),
        },
        "options" => Kind::Options {
            module,
            options: rest.iter().map(|o| o.to_string()).collect(),
        },
        "softdep" => {
            let (mut pre, mut post) = (Vec::new(), Vec::new());
            let mut into = &mut pre;
            for word in rest {
                match word {
                    "pre:" => into = &mut pre,
                    "post:" => into = &mut post,
                    name => into.push(module_name(name)),
                }
            }
            Kind::Softdep { module, pre, post }
        }
        _ => return None,
    })
}

fn from_cmdline(cmdline: &[HostKarg]) -> Vec<Directive> {
    let mut directives = Vec::new();
    for karg in cmdline {
        let kind: fn(String) -> Kind = if karg.is(&MODPROBE_BLACKLIST) {
            Kind::Blacklist
        } else if karg.is(&MODULE_BLACKLIST) {
            Kind::KernelBlacklist
        } else {
            continue;
        };
        directives.extend(karg.tokens().into_iter().map(|m| Directive {
            source: format!("/proc/cmdline {karg}"),
            kind: kind(module_name(m)),
        }));
    }
    directives
}

impl ModprobeConfig {
    /// The `softdep` line kmod uses for `module`: the first one.
    pub(crate) fn softdep(&self, module: &str) -> Option<&Directive> {
        let module = module_name(module);
        self.directives
            .iter()
            .find(|d| matches!(&d.kind, Kind::Softdep { module: m, .. } if *m == module))
    }

    /// The `install` command kmod runs instead of loading `module`: the first one.
    pub(crate) fn install(&self, module: &str) -> Option<&Directive> {
        let module = module_name(module);
        self.directives
            .iter()
            .find(|d| matches!(&d.kind, Kind::Install { module: m, .. } if *m == module))
    }

    /// Every blacklist of `module`, kmod's and the kernel's.
    pub(crate) fn blacklists(&self, module: &str) -> impl Iterator<Item = &Directive> {
        let module = module_name(module);
        self.directives.iter().filter(move |d| {
            matches!(&d.kind, Kind::Blacklist(m) | Kind::KernelBlacklist(m) if *m == module)
        })
    }

    /// Every `options` line of `module`.
    pub(crate) fn options(&self, module: &str) -> impl Iterator<Item = (&Directive, &[String])> {
        let module = module_name(module);
        self.directives.iter().filter_map(move |d| match &d.kind {
            Kind::Options { module: m, options } if *m == module => Some((d, options.as_slice())),
            _ => None,
        })
    }
}

impl Kind {
    /// The line as modprobe.d writes it.
    pub(crate) fn describe(&self) -> String {
        match self {
            Kind::Blacklist(m) => format!("blacklist {m}"),
            Kind::KernelBlacklist(m) => format!("module_blacklist={m}"),
            Kind::Install { module, command } => format!("install {module} {command}"),
            Kind::Options { module, options } => format!("options {module} {}", options.join(" ")),
            Kind::Softdep { module, pre, post } => {
                let mut text = format!("softdep {module}");
                if !pre.is_empty() {
                    text.push_str(&format!(" pre: {}", pre.join(" ")));
                }
                if !post.is_empty() {
                    text.push_str(&format!(" post: {}", post.join(" ")));
                }
                text
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(camino::Utf8Path::from_path(dir.path()).unwrap());
        for (path, text) in files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        (dir, root)
    }

    #[test]
    fn lines_parse_as_kmod_reads_them() {
        let directives = parse(
            "# comment\nsoftdep nvidia pre: vfio-pci post: nvidia-drm\noptions vfio-pci \\\n \
             ids=10de:1b80 disable_vga=1\ninstall vfio_pci /bin/false\nblacklist nouveau\nalias \
             pci:v* vfio-pci\n",
            "/etc/modprobe.d/x.conf",
        );
        let kinds: Vec<String> = directives.iter().map(|d| d.kind.describe()).collect();
        assert_eq!(
            kinds,
            [
                "softdep nvidia pre: vfio_pci post: nvidia_drm",
                "options vfio_pci ids=10de:1b80 disable_vga=1",
                "install vfio_pci /bin/false",
                "blacklist nouveau",
            ]
        );
        assert_eq!(directives[1].source, "/etc/modprobe.d/x.conf:3");
        assert_eq!(directives[2].source, "/etc/modprobe.d/x.conf:5");
    }

    #[test]
    fn etc_hides_the_same_name_in_usr_lib_and_files_read_in_name_order() {
        let (_dir, root) = tree(&[
            (
                "/usr/lib/modprobe.d/50-passthru-vfio.conf",
                "softdep nvidia pre: vfio-pci\n",
            ),
            (
                "/etc/modprobe.d/50-passthru-vfio.conf",
                "# emptied by the user\n",
            ),
            (
                "/usr/lib/modprobe.d/10-nvidia.conf",
                "softdep nvidia pre: ecdh_generic\n",
            ),
            ("/run/modprobe.d/99-x.conf", "blacklist vfio-pci\n"),
            ("/etc/modprobe.d/notes.txt", "blacklist vfio\n"),
        ]);
        let cmdline = crate::kargs::split_cmdline(
            "ro modprobe.blacklist=nouveau,vfio module_blacklist=vendor-reset",
        );
        let config = read(&root, &cmdline).unwrap();
        assert_eq!(
            config.files,
            [
                "/usr/lib/modprobe.d/10-nvidia.conf",
                "/etc/modprobe.d/50-passthru-vfio.conf",
                "/run/modprobe.d/99-x.conf",
            ]
        );
        // Only the first softdep of a module counts: the NVIDIA package's.
        let softdep = config.softdep("nvidia").unwrap();
        assert_eq!(softdep.source, "/usr/lib/modprobe.d/10-nvidia.conf:1");
        assert_eq!(config.blacklists("vfio_pci").count(), 1);
        assert_eq!(
            config.blacklists("vfio").next().unwrap().source,
            "/proc/cmdline modprobe.blacklist=nouveau,vfio"
        );
        assert!(matches!(
            config.blacklists("vendor_reset").next().unwrap().kind,
            Kind::KernelBlacklist(_)
        ));
        assert!(config.install("vfio-pci").is_none());
    }
}
