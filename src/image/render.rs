//! Plan -> build context (Containerfile + layer files + scripts), in memory and deterministic.
//!
//! Rendering never touches the output directory; [`super::context`] writes the result. The Containerfile
//! template lives in containerfiles/, the scripts in layers/scripts/; both are compiled into the binary.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{KernelSource, ModuleSource};
use crate::error::InputError;
use crate::plan::{Layer, Plan};

const CONTAINERFILE_TEMPLATE: &str = include_str!("../../containerfiles/Containerfile.j2");

/// Build-time helpers, installed under /usr/libexec/passthru-image/ in the image.
const SCRIPTS: &[(&str, &str)] = &[
    (
        "image-kernel",
        include_str!("../../layers/scripts/image-kernel"),
    ),
    (
        "regenerate-initramfs",
        include_str!("../../layers/scripts/regenerate-initramfs"),
    ),
    (
        "build-kmods",
        include_str!("../../layers/scripts/build-kmods"),
    ),
    (
        "swap-kernel",
        include_str!("../../layers/scripts/swap-kernel"),
    ),
];

/// One file of the build context, relative to its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextFile {
    pub path: Utf8PathBuf,
    pub mode: u32,
    pub content: Vec<u8>,
}

impl ContextFile {
    fn text(path: impl Into<Utf8PathBuf>, mode: u32, content: &str) -> Self {
        ContextFile {
            path: path.into(),
            mode,
            content: content.as_bytes().to_vec(),
        }
    }
}

/// The whole build context, sorted by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildContext {
    pub files: Vec<ContextFile>,
}

impl BuildContext {
    pub fn get(&self, path: &str) -> Option<&ContextFile> {
        self.files.iter().find(|f| f.path == path)
    }

    pub fn containerfile(&self) -> &str {
        std::str::from_utf8(&self.get("Containerfile").expect("always rendered").content)
            .expect("UTF-8")
    }
}

pub fn render(plan: &Plan) -> Result<BuildContext> {
    let mut files = Vec::new();
    // The packages reach the kernel swap through a bind mount, which the engine's layer cache does not look
    // into: the digest of their SHA256SUMS goes on the RUN line, so other packages make another step.
    let mut kernel_sums = None;
    if let Some(kernel) = &plan.kernel
        && let KernelSource::Packages {
            dir,
            files: packages,
        } = &kernel.source
    {
        let packages = kernel_packages(dir, packages)?;
        let listing = packages
            .iter()
            .find(|f| f.path == KERNEL_SUMS)
            .expect("kernel_packages writes the SHA256SUMS");
        kernel_sums = Some(format!("{:x}", Sha256::digest(&listing.content)));
        files.extend(packages);
    }
    files.push(ContextFile::text(
        "Containerfile",
        0o644,
        &containerfile(plan, kernel_sums.as_deref())?,
    ));
    for (name, content) in SCRIPTS {
        files.push(ContextFile::text(format!("scripts/{name}"), 0o755, content));
    }
    for file in &plan.files {
        let dir = match file.layer {
            Layer::Initramfs => "layers/initramfs",
            Layer::Host => "layers/host",
        };
        let relative = file.path.strip_prefix("/").unwrap_or(&file.path);
        files.push(ContextFile::text(
            Utf8Path::new(dir).join(relative),
            file.mode,
            &file.content,
        ));
    }
    for module in &plan.modules {
        if let ModuleSource::Path { path } = &module.source {
            copy_tree(
                path,
                &Utf8Path::new("sources").join(&module.name),
                &mut files,
            )
            .map_err(|e| InputError::new("vendor-reset.path", format!("{e:#}")))?;
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(BuildContext { files })
}

/// The checksums of the kernel packages, in the build context and in the bind mount of the swap step.
const KERNEL_SUMS: &str = "kernel/SHA256SUMS";

fn containerfile(plan: &Plan, kernel_sums: Option<&str>) -> Result<String> {
    #[derive(Serialize)]
    struct Module<'a> {
        name: &'a str,
        version: &'a str,
        kernel_modules: &'a [String],
        source: &'a ModuleSource,
    }
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.add_template("Containerfile", CONTAINERFILE_TEMPLATE)?;
    let modules: Vec<Module> = plan
        .modules
        .iter()
        .map(|m| Module {
            name: &m.name,
            version: &m.version,
            kernel_modules: &m.kernel_modules,
            source: &m.source,
        })
        .collect();
    let scratch = plan
        .kernel
        .as_ref()
        .map_or(&[][..], |k| package_manager_scratch(&k.source));
    let text = env
        .get_template("Containerfile")?
        .render(minijinja::context! {
            version => env!("CARGO_PKG_VERSION"),
            base => plan.image.base.as_str(),
            tag => plan.image.tag.as_str(),
            kernel => plan.kernel,
            kernel_sums => kernel_sums,
            kernel_scratch_dirs => scratch,
            modules => modules,
        })?;
    Ok(text)
}

/// Where the package manager that swaps the kernel keeps caches and logs: tmpfs during the swap, so none of
/// it reaches the layer. All of /var/cache for dnf (dnf4 and dnf5 use different directories); only apt's part
/// on Debian, whose debconf keeps its database in /var/cache/debconf.
fn package_manager_scratch(source: &KernelSource) -> &'static [&'static str] {
    let debs = matches!(source, KernelSource::Packages { files, .. }
        if files.iter().any(|f| f.name.ends_with(".deb")));
    match debs {
        true => &["/var/cache/apt", "/var/log"],
        false => &["/var/cache", "/var/log"],
    }
}

/// Copies a local module source into the context, file by file, so the context stays self-contained.
fn copy_tree(src: &Utf8Path, dest: &Utf8Path, out: &mut Vec<ContextFile>) -> Result<()> {
    let mut entries: Vec<_> = src
        .read_dir_utf8()
        .with_context(|| format!("reading {src}"))?
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("reading {src}"))?;
    entries.sort_by(|a, b| a.file_name().cmp(b.file_name()));
    for entry in entries {
        let name = entry.file_name();
        if name == ".git" {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(entry.path(), &dest.join(name), out)?;
        } else if kind.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let meta = entry.metadata()?;
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            let content =
                std::fs::read(entry.path()).with_context(|| format!("reading {}", entry.path()))?;
            out.push(ContextFile {
                path: dest.join(name),
                mode,
                content,
            });
        }
    }
    Ok(())
}

/// The kernel packages with a SHA256SUMS the build checks again; configured sums are checked now.
fn kernel_packages(
    dir: &Utf8Path,
    packages: &[crate::config::sources::KernelPackage],
) -> Result<Vec<ContextFile>> {
    let mut out = Vec::new();
    let mut sums = BTreeMap::new();
    for package in packages {
        let (content, actual) = package.read_checked(dir)?;
        sums.insert(package.name.clone(), actual);
        out.push(ContextFile {
            path: Utf8Path::new("kernel").join(&package.name),
            mode: 0o644,
            content,
        });
    }
    let listing: String = sums
        .iter()
        .map(|(name, sum)| format!("{sum}  {name}\n"))
        .collect();
    out.push(ContextFile::text(KERNEL_SUMS, 0o644, &listing));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, CpuChoice, GpuVendor, Overrides};

    fn containerfile_for(toml: &str, ids: &[&str]) -> String {
        let overrides = Overrides {
            cpu: Some(CpuChoice::Amd),
            gpu: Some(vec![GpuVendor::Amd]),
            vfio_ids: Some(ids.iter().map(|id| id.parse().unwrap()).collect()),
            ..Default::default()
        };
        let config = Config::from_toml(toml, "t.toml")
            .unwrap()
            .with_overrides(&overrides);
        let plan = Plan::resolve(&config, &crate::plan::Target::Image).unwrap();
        render(&plan).unwrap().containerfile().to_string()
    }

    fn from_lines(containerfile: &str) -> Vec<&str> {
        containerfile
            .lines()
            .filter(|l| l.starts_with("FROM "))
            .collect()
    }

    /// The host-specific layer must stay last so a device change rebuilds only it.
    fn assert_host_layer_last(containerfile: &str) {
        let host = containerfile.find("COPY layers/host/ /").unwrap();
        let initramfs = containerfile
            .find("RUN [\"/usr/libexec/passthru-image/regenerate-initramfs\"]")
            .unwrap();
        assert!(initramfs < host, "{containerfile}");
        assert!(!containerfile[host..].contains("FROM "), "{containerfile}");
    }

    /// The RUN line that runs `script`: its `--mount` options and its exec-form argument list.
    fn run_line(containerfile: &str, script: &str) -> (String, Vec<String>) {
        let line = containerfile
            .lines()
            .find(|l| l.starts_with("RUN ") && l.contains(script))
            .unwrap_or_else(|| panic!("no RUN of {script} in:\n{containerfile}"));
        let (mounts, argv) = line["RUN ".len()..].split_once('[').unwrap();
        let argv = serde_json::from_str(&format!("[{argv}")).expect(line);
        (mounts.trim().to_owned(), argv)
    }

    #[test]
    fn without_kernel_or_modules_there_is_one_unnamed_stage() {
        let text = containerfile_for("", &["1002:73bf"]);
        assert_eq!(from_lines(&text), ["FROM quay.io/fedora/fedora-bootc:44"]);
        assert_host_layer_last(&text);
    }

    #[test]
    fn a_configured_digest_pins_every_from_line_and_the_label_names_the_pinned_base() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let text = containerfile_for(&format!("[image]\ndigest = \"{digest}\"\n"), &[]);
        let pinned = format!("quay.io/fedora/fedora-bootc:44@{digest}");
        assert_eq!(from_lines(&text), [format!("FROM {pinned}")]);
        assert!(
            text.contains(&format!("org.opencontainers.image.base.name=\"{pinned}\"")),
            "{text}"
        );
    }

    #[test]
    fn a_kernel_swap_alone_needs_no_named_stage() {
        let dir = tempfile::tempdir().unwrap();
        let path = camino::Utf8Path::from_path(dir.path()).unwrap();
        std::fs::write(
            path.join("kernel-core-6.11.4-301.acs.fc41.x86_64.rpm"),
            b"rpm",
        )
        .unwrap();
        let text = containerfile_for(
            &format!("[acs-override]\nenabled = true\npackages = \"{path}\"\n"),
            &[],
        );
        assert_eq!(from_lines(&text), ["FROM quay.io/fedora/fedora-bootc:44"]);
        let swap = text
            .find("RUN --mount=type=bind,source=kernel")
            .expect(&text);
        // Bind-mounted with their checksums' digest on the RUN line, never copied into a layer.
        let sums = format!(
            "{:x}",
            Sha256::digest(format!(
                "{:x}  kernel-core-6.11.4-301.acs.fc41.x86_64.rpm\n",
                Sha256::digest(b"rpm")
            ))
        );
        let (mounts, argv) = run_line(&text, "swap-kernel");
        assert_eq!(
            mounts,
            "--mount=type=bind,source=kernel,target=/run/passthru-kernel \
             --mount=type=tmpfs,target=/var/cache --mount=type=tmpfs,target=/var/log"
        );
        // The kernel packages the plan lets it remove come from the plan, as one list.
        let removes = crate::plan::OldKernelPackages::all();
        let expected = [
            "/usr/libexec/passthru-image/swap-kernel",
            "--unless-symbol",
            "pcie_acs_override_setup",
            "--rpm-packages",
            &removes.rpm.join(","),
            "--deb-packages",
            "linux-image-{kver},linux-headers-{kver}",
            "packages",
            "/run/passthru-kernel",
            &sums,
        ];
        assert_eq!(argv, expected);
        assert!(!text.contains("COPY kernel"), "{text}");
        assert!(
            swap < text.find("regenerate-initramfs\"]").unwrap(),
            "{text}"
        );
        assert_host_layer_last(&text);
    }

    #[test]
    fn a_repo_kernel_swap_keeps_dnf_caches_and_logs_in_tmpfs() {
        let text = containerfile_for(
            "[acs-override]\nenabled = true\nrepo = \"https://example.org/acs.repo\"\n",
            &[],
        );
        let (mounts, argv) = run_line(&text, "swap-kernel");
        assert_eq!(
            mounts,
            "--mount=type=tmpfs,target=/var/cache --mount=type=tmpfs,target=/var/log"
        );
        assert_eq!(argv[1..3], ["--unless-symbol", "pcie_acs_override_setup"]);
        assert_eq!(
            argv[argv.len() - 2..],
            ["repo", "https://example.org/acs.repo"]
        );
    }

    #[test]
    fn a_swap_from_debs_keeps_apt_caches_in_tmpfs_and_debconf_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = camino::Utf8Path::from_path(dir.path()).unwrap();
        std::fs::write(path.join("linux-image-6.1.0-50-cloud-amd64.deb"), b"deb").unwrap();
        let text = containerfile_for(
            &format!("[acs-override]\nenabled = true\npackages = \"{path}\"\n"),
            &[],
        );
        let (mounts, _) = run_line(&text, "swap-kernel");
        assert!(
            mounts.ends_with(
                "--mount=type=tmpfs,target=/var/cache/apt --mount=type=tmpfs,target=/var/log"
            ),
            "{mounts}"
        );
    }

    #[test]
    fn modules_are_built_in_a_stage_from_the_named_system_stage() {
        // Polaris is in the vendor-reset table, so "auto" adds the module.
        let text = containerfile_for("", &["1002:67df"]);
        assert_eq!(
            from_lines(&text),
            [
                "FROM quay.io/fedora/fedora-bootc:44 AS system",
                "FROM system AS kmods",
                "FROM system"
            ]
        );
        assert!(text.contains("COPY --from=kmods /out/ /"), "{text}");
        // The modules the image loads at boot go to the build, which fails when the source builds others.
        assert!(
            text.contains(&format!(
                "[\"/usr/libexec/passthru-image/build-kmods\",\"vendor-reset\",\"0.1.1\",\"vendor-reset\",\"git\",\"{}\",\"{}\"]",
                crate::config::sources::VENDOR_RESET_GIT,
                crate::config::sources::VENDOR_RESET_COMMIT
            )),
            "{text}"
        );
        assert_host_layer_last(&text);
    }
}
