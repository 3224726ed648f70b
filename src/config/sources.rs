//! Where out-of-tree code comes from: the vendor-reset module source and the ACS-override kernel.
//! Both end up in a Containerfile, so URLs, hashes and paths are checked here, not quoted later.

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{AcsOverrideConfig, VendorResetConfig};
use crate::error::InputError;
use crate::text_rules::{PLAIN_NAME_RULE, is_lower_hex, is_plain_name};

/// Upstream vendor-reset. Its default commit predates the kernel 6.12 header move (`asm/unaligned.h` became
/// `linux/unaligned.h`); the module build step bridges that for any pinned commit (layers/scripts/build-kmods).
pub const VENDOR_RESET_GIT: &str = "https://github.com/gnif/vendor-reset.git";
pub const VENDOR_RESET_COMMIT: &str = "084881c6e9e11bdadaf05798e669568848e698a3";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum ModuleSource {
    Git { url: String, commit: String },
    Path { path: Utf8PathBuf },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AcsMode {
    Downstream,
    Multifunction,
}

impl AcsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AcsMode::Downstream => "downstream",
            AcsMode::Multifunction => "multifunction",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum KernelSource {
    /// A dnf `.repo` file URL (Fedora-family bases).
    Repo { url: String },
    /// Local package files (`.rpm` or `.deb`), each with its sha256 when one was configured.
    Packages {
        dir: Utf8PathBuf,
        files: Vec<KernelPackage>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelPackage {
    pub name: String,
    pub sha256: Option<String>,
}

impl KernelPackage {
    /// Reads the package from `dir` and checks it against its configured sum. Returns the bytes and their
    /// sha256 (lowercase hex), so callers can pass the sum on to the build.
    pub fn read_checked(&self, dir: &Utf8Path) -> Result<(Vec<u8>, String), InputError> {
        let path = dir.join(&self.name);
        let content = crate::root::read_user_file(
            &path,
            crate::root::UserFile::KernelPackage,
            "acs-override.packages",
        )?;
        let actual = format!("{:x}", Sha256::digest(&content));
        match &self.sha256 {
            Some(expected) if *expected != actual => Err(InputError::new(
                format!("acs-override.sha256.{}", self.name),
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
    // Transports that authenticate the server: the commit pin guards the content, not who serves the clone.
    check_url("vendor-reset.git", &url, &["https", "ssh"])?;
    if !is_lower_hex(&commit, 40) {
        return Err(InputError::new(
            "vendor-reset.commit",
            format!(
                "{commit:?} is not a full commit hash; expected 40 lowercase hex digits (a branch or tag can move)"
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
            "enabled without a kernel source: set `repo` (a dnf .repo file URL) or `packages` (a directory of .rpm/.deb files)",
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
        (None, Some(dir)) => local_packages(dir, &c.sha256),
    }
}

fn local_packages(
    dir: &Utf8Path,
    sums: &BTreeMap<String, String>,
) -> Result<KernelSource, InputError> {
    let field = "acs-override.packages";
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
                format!("acs-override.sha256.{name}"),
                format!("no such package in {dir}"),
            ));
        }
        // sha256sum prints lowercase, some vendors publish uppercase: both name the same digest.
        if !is_lower_hex(&sum.to_ascii_lowercase(), 64) {
            return Err(InputError::new(
                format!("acs-override.sha256.{name}"),
                format!("{sum:?} is not a sha256 sum; expected 64 hex digits"),
            ));
        }
    }
    let files = names
        .into_iter()
        .map(|name| KernelPackage {
            sha256: sums.get(&name).map(|sum| sum.to_ascii_lowercase()),
            name,
        })
        .collect();
    Ok(KernelSource::Packages {
        dir: dir.to_owned(),
        files,
    })
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

/// A URL goes onto a `git clone`/`curl` argument list in the build: scheme from `schemes`, no whitespace,
/// quotes or shell characters.
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
