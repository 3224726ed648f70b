//! Where out-of-tree code comes from: the vendor-reset module source and the ACS-override kernel.
//! Both end up in a Containerfile, so URLs, hashes and paths are checked here, not quoted later.

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{AcsOverrideConfig, VendorResetConfig};
use crate::error::InputError;
use crate::text_rules::{PLAIN_NAME_RULE, is_lower_hex, is_plain_name};

/// Upstream vendor-reset, at a commit whose src/amd/amdgpu/atom.c includes `<linux/unaligned.h>` from kernel
/// 6.12 on (where `asm/unaligned.h` went) and `<asm/unaligned.h>` below it: upstream's fix (its pull request 86)
/// on top of the previous pin, 084881c. The module build still bridges the move for older pins
/// (layers/scripts/build-kmods).
pub(crate) const VENDOR_RESET_GIT: &str = "https://github.com/gnif/vendor-reset.git";
pub(crate) const VENDOR_RESET_COMMIT: &str = "29b25fd6929a2215477a5e39b29a0d5c4d45b6e9";

/// Transports a module source may be fetched over. https and ssh authenticate the server; a `file://`
/// repository is the user's own. The commit pin guards the content either way.
pub(crate) const GIT_SCHEMES: &[&str] = &["https", "ssh", "file"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub(crate) enum ModuleSource {
    Git { url: String, commit: String },
    Path { path: Utf8PathBuf },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AcsMode {
    Downstream,
    Multifunction,
}

impl AcsMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AcsMode::Downstream => "downstream",
            AcsMode::Multifunction => "multifunction",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub(crate) enum KernelSource {
    /// A dnf `.repo` file URL (Fedora-family bases).
    Repo { url: String },
    /// Local package files (`.rpm` or `.deb`), each with its sha256 when one was configured.
    Packages {
        dir: Utf8PathBuf,
        files: Vec<KernelPackage>,
    },
}

/// For people: where the kernel comes from (`plan`'s text).
impl std::fmt::Display for KernelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelSource::Repo { url } => write!(f, "the repository {url}"),
            KernelSource::Packages { dir, files } => {
                let names: Vec<&str> = files.iter().map(|p| p.name.as_str()).collect();
                write!(f, "{} in {dir}", names.join(", "))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct KernelPackage {
    pub(crate) name: String,
    pub(crate) sha256: Option<String>,
}

/// Local kernel headers for building modules (`vendor-reset.headers`): .rpm or .deb files, each with its sha256
/// when one was configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct HeaderPackages {
    pub(crate) dir: Utf8PathBuf,
    pub(crate) files: Vec<KernelPackage>,
}

/// The config keys of a directory of local packages and of their sums, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PackageKeys {
    /// `acs-override.packages` and `acs-override.sha256`.
    AcsKernel,
    /// `vendor-reset.headers` and `vendor-reset.headers-sha256`.
    ModuleHeaders,
}

impl PackageKeys {
    pub(crate) fn dir(self) -> &'static str {
        match self {
            PackageKeys::AcsKernel => "acs-override.packages",
            PackageKeys::ModuleHeaders => "vendor-reset.headers",
        }
    }

    fn sum(self, name: &str) -> String {
        match self {
            PackageKeys::AcsKernel => format!("acs-override.sha256.{name}"),
            PackageKeys::ModuleHeaders => format!("vendor-reset.headers-sha256.{name}"),
        }
    }
}

impl KernelPackage {
    /// Reads an ACS-override kernel package from `dir` and checks it against its configured sum.
    pub(crate) fn read_checked(&self, dir: &Utf8Path) -> Result<(Vec<u8>, String), InputError> {
        self.read_checked_as(dir, PackageKeys::AcsKernel)
    }

    /// Reads the package from `dir` and checks it against its configured sum; `keys` name the config keys in
    /// messages. Returns the bytes and their sha256 (lowercase hex), so callers can pass the sum on to the build.
    pub(crate) fn read_checked_as(
        &self,
        dir: &Utf8Path,
        keys: PackageKeys,
    ) -> Result<(Vec<u8>, String), InputError> {
        let path = dir.join(&self.name);
        let content =
            crate::root::read_user_file(&path, crate::root::UserFile::KernelPackage, keys.dir())?;
        let actual = format!("{:x}", Sha256::digest(&content));
        match &self.sha256 {
            Some(expected) if *expected != actual => Err(InputError::new(
                keys.sum(&self.name),
                format!("{path} has sha256 {actual}, the config expects {expected}"),
            )),
            _ => Ok((content, actual)),
        }
    }
}

pub(super) fn vendor_reset_source(c: &VendorResetConfig) -> Result<ModuleSource, InputError> {
    if let Some(path) = &c.path {
        if c.git.is_some() || c.commit.is_some() {
            return Err(InputError::new(
                "vendor-reset.path",
                "give either `path` or `git` + `commit`, not both",
            ));
        }
        return Ok(ModuleSource::Path { path: path.clone() });
    }
    let url = c.git.clone().unwrap_or_else(|| VENDOR_RESET_GIT.to_owned());
    let commit = match (&c.git, &c.commit) {
        (_, Some(commit)) => commit.clone(),
        (None, None) => VENDOR_RESET_COMMIT.to_owned(),
        (Some(_), None) => {
            return Err(InputError::new(
                "vendor-reset.commit",
                "required with `git`: pin the source by its full 40-hex commit hash",
            ));
        }
    };
    check_url("vendor-reset.git", &url, GIT_SCHEMES)?;
    check_git_authority(&url)?;
    if !is_lower_hex(&commit, 40) {
        return Err(InputError::new(
            "vendor-reset.commit",
            format!(
                "{commit:?} is not a full commit hash; expected 40 lowercase hex digits (a branch \
                 or tag can move)"
            ),
        ));
    }
    Ok(ModuleSource::Git { url, commit })
}

pub(super) fn kernel_source(c: &AcsOverrideConfig) -> Result<KernelSource, InputError> {
    match (&c.repo, &c.packages) {
        (Some(_), Some(_)) => Err(InputError::new(
            "acs-override",
            "give either `repo` or `packages`, not both",
        )),
        (None, None) => Err(InputError::new(
            "acs-override",
            "enabled without a kernel source: set `repo` (a dnf .repo file URL) or `packages` (a \
             directory of .rpm/.deb files)",
        )),
        (Some(url), None) => {
            if !c.sha256.is_empty() {
                return Err(InputError::new(
                    "acs-override.sha256",
                    "only applies to local `packages`",
                ));
            }
            // The .repo file names the gpgkey that vouches for the kernel: fetch it over https only.
            check_url("acs-override.repo", url, &["https"])?;
            if !url.ends_with(".repo") {
                return Err(InputError::new(
                    "acs-override.repo",
                    format!("{url:?} must name a dnf .repo file"),
                ));
            }
            Ok(KernelSource::Repo { url: url.clone() })
        }
        (None, Some(dir)) => {
            let files = local_packages(dir, &c.sha256, PackageKeys::AcsKernel)?;
            Ok(KernelSource::Packages {
                dir: dir.clone(),
                files,
            })
        }
    }
}

pub(super) fn vendor_reset_headers(
    c: &VendorResetConfig,
) -> Result<Option<HeaderPackages>, InputError> {
    match &c.headers {
        None if !c.headers_sha256.is_empty() => Err(InputError::new(
            "vendor-reset.headers-sha256",
            "only applies to local `headers`",
        )),
        None => Ok(None),
        Some(dir) => Ok(Some(HeaderPackages {
            dir: dir.clone(),
            files: local_packages(dir, &c.headers_sha256, PackageKeys::ModuleHeaders)?,
        })),
    }
}

fn local_packages(
    dir: &Utf8Path,
    sums: &BTreeMap<String, String>,
    keys: PackageKeys,
) -> Result<Vec<KernelPackage>, InputError> {
    let field = keys.dir();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| InputError::new(field, format!("cannot read directory {dir}: {e}")))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| InputError::new(field, format!("reading {dir}: {e}")))?;
        let name = entry
            .file_name()
            .into_string()
            .map_err(|n| InputError::new(field, format!("{n:?} is not UTF-8")))?;
        if name.ends_with(".rpm") || name.ends_with(".deb") {
            check_file_name(field, &name)?;
            names.push(name);
        }
    }
    names.sort();
    let kinds: std::collections::BTreeSet<&str> = names.iter().map(|n| &n[n.len() - 3..]).collect();
    if names.is_empty() {
        return Err(InputError::new(
            field,
            format!("{dir} holds no .rpm or .deb files"),
        ));
    }
    if kinds.len() > 1 {
        return Err(InputError::new(
            field,
            format!("{dir} mixes .rpm and .deb files; use one kind"),
        ));
    }
    for (name, sum) in sums {
        if !names.contains(name) {
            return Err(InputError::new(
                keys.sum(name),
                format!("no such package in {dir}"),
            ));
        }
        // sha256sum prints lowercase, some vendors publish uppercase: both name the same digest.
        if !is_lower_hex(&sum.to_ascii_lowercase(), 64) {
            return Err(InputError::new(
                keys.sum(name),
                format!("{sum:?} is not a sha256 sum; expected 64 hex digits"),
            ));
        }
    }
    Ok(names
        .into_iter()
        .map(|name| KernelPackage {
            sha256: sums.get(&name).map(|sum| sum.to_ascii_lowercase()),
            name,
        })
        .collect())
}

/// Package file names are copied into the build context and named in a RUN step: keep them plain.
fn check_file_name(field: &str, name: &str) -> Result<(), InputError> {
    if is_plain_name(name) {
        Ok(())
    } else {
        Err(InputError::new(
            field,
            format!("package file name {name:?}: {PLAIN_NAME_RULE}"),
        ))
    }
}

/// An ssh URL's user and host go to ssh as one argument, where a leading `-` would be an option
/// (`ssh://-oProxyCommand=...`); a file URL names a local path (`file:///srv/vr.git`).
fn check_git_authority(url: &str) -> Result<(), InputError> {
    let (scheme, rest) = url.split_once("://").expect("checked by check_url");
    let authority = rest.split('/').next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let refusal = match scheme {
        "ssh" if authority.starts_with('-') || host.starts_with('-') => {
            "an ssh user or host may not start with `-`: ssh would take it for an option"
        }
        "ssh" | "https" if host.is_empty() => "the URL names no host",
        "file" if !authority.is_empty() => {
            "a file URL names a local path: file:///path/to/repository"
        }
        _ => return Ok(()),
    };
    Err(InputError::new(
        "vendor-reset.git",
        format!("{url:?}: {refusal}"),
    ))
}

/// A URL goes onto a `git fetch`/`curl` argument list: scheme from `schemes`, no whitespace, quotes or shell
/// characters.
fn check_url(field: &str, url: &str, schemes: &[&str]) -> Result<(), InputError> {
    let scheme_ok = url
        .split_once("://")
        .is_some_and(|(scheme, rest)| schemes.contains(&scheme) && !rest.is_empty());
    let chars_ok = url
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~:/?#@!&+,=%".contains(c));
    if scheme_ok && chars_ok {
        Ok(())
    } else {
        Err(InputError::new(
            field,
            format!(
                "{url:?} is not an allowed URL; expected {}:// followed by URL characters only",
                schemes.join("|")
            ),
        ))
    }
}
