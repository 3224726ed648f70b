//! Plan -> build context (Containerfile + layer files + scripts), in memory and deterministic.
//!
//! Rendering never touches the output directory; [`super::context`] writes the result. The Containerfile
//! itself is [`super::containerfile`]'s; the scripts in layers/scripts/ and the template are compiled into the binary.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use sha2::{Digest, Sha256};

use super::containerfile::{self, HEADERS_DIR, KERNEL_DIR, ModuleBuild, SCRIPTS, SCRIPTS_DIR};
use super::engine::Label;
use crate::config::sources::{KernelPackage, PackageKeys};
use crate::config::{HeaderPackages, KernelSource, ModuleSource};
use crate::error::InputError;
use crate::plan::{Layer, ModuleConf, ModulePlan, Plan};

/// One file of the build context, relative to its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextFile {
    pub(crate) path: Utf8PathBuf,
    pub(crate) mode: u32,
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
    render_labelled(plan, &[])
}

/// The context with `labels` set by a last LABEL instruction (`build`'s labels: [`super::labels`]).
pub(crate) fn render_labelled(plan: &Plan, labels: &[Label]) -> Result<BuildContext> {
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
        let (packages, sums) =
            bind_mounted_packages(dir, packages, KERNEL_DIR, PackageKeys::AcsKernel)?;
        kernel_sums = Some(sums);
        files.extend(packages);
    }
    let mut modules = Vec::new();
    for module in &plan.modules {
        let (build, module_files) = module_build(module)?;
        modules.push(build);
        files.extend(module_files);
    }
    let inputs = containerfile::Inputs {
        kernel_sums: kernel_sums.as_deref(),
        modules: &modules,
        labels,
    };
    files.push(ContextFile::text(
        "Containerfile",
        0o644,
        &containerfile::render(plan, &inputs)?,
    ));
    for (name, content) in SCRIPTS {
        files.push(ContextFile::text(
            format!("{SCRIPTS_DIR}/{name}"),
            0o755,
            content,
        ));
    }
    for file in &plan.files {
        let dir = match file.layer {
            Layer::Initramfs => containerfile::INITRAMFS_LAYER,
            Layer::Host => containerfile::HOST_LAYER,
        };
        let relative = file.path.strip_prefix("/").unwrap_or(&file.path);
        files.push(ContextFile::text(
            Utf8Path::new(dir).join(relative),
            file.mode,
            &file.content,
        ));
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(BuildContext { files })
}

/// The module's source (and header packages) in the context, for its build step.
fn module_build(module: &ModulePlan) -> Result<(ModuleBuild<'_>, Vec<ContextFile>)> {
    let ModuleConf::Read { dir, conf } = &module.conf else {
        bail!(
            "{} was not fetched: the build context needs the module's source",
            module.origin()
        );
    };
    let field = match module.source {
        ModuleSource::Path { .. } => "vendor-reset.path",
        ModuleSource::Git { .. } => "vendor-reset.git",
    };
    let context_dir = format!("sources/{}", conf.name);
    let mut files = Vec::new();
    let mut budget = SourceBudget::MODULE;
    copy_tree(dir, Utf8Path::new(&context_dir), &mut files, &mut budget)
        .map_err(|e| InputError::new(field, format!("{e:#}")))?;
    let mut headers_sums = None;
    if let Some(HeaderPackages {
        dir,
        files: packages,
    }) = &module.headers
    {
        let (packages, sums) =
            bind_mounted_packages(dir, packages, HEADERS_DIR, PackageKeys::ModuleHeaders)?;
        files.extend(packages);
        headers_sums = Some(sums);
    }
    let build = ModuleBuild {
        context_dir,
        conf,
        headers_sums,
    };
    Ok((build, files))
}

/// How much of a module source may still be copied into the context. The context is held in memory, and a
/// path that names a home directory or `/` instead of the module's checkout must end as bad input, not by
/// reading the whole disk. Real module sources are orders of magnitude below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SourceBudget {
    files: usize,
    bytes: u64,
}

impl SourceBudget {
    const MODULE: SourceBudget = SourceBudget {
        files: 20_000,
        bytes: 256 * 1024 * 1024,
    };

    fn spend(&mut self, path: &Utf8Path, len: u64) -> Result<()> {
        if self.files == 0 || len > self.bytes {
            bail!(
                "{path}: a module source holds at most {} files and {} MiB, and this one holds more; \
                 name the module's own directory, the one with its dkms.conf",
                SourceBudget::MODULE.files,
                SourceBudget::MODULE.bytes / (1024 * 1024)
            );
        }
        self.files -= 1;
        self.bytes -= len;
        Ok(())
    }
}

/// Copies a local module source into the context, file by file, so the context stays self-contained.
fn copy_tree(
    src: &Utf8Path,
    dest: &Utf8Path,
    out: &mut Vec<ContextFile>,
    budget: &mut SourceBudget,
) -> Result<()> {
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
            copy_tree(entry.path(), &dest.join(name), out, budget)?;
        } else if kind.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let meta = entry.metadata()?;
            budget.spend(entry.path(), meta.len())?;
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

/// Local packages for the context directory `context_dir`, with a SHA256SUMS the build checks again
/// (configured sums are checked now), and the sha256 of that SHA256SUMS. A bind mount is not something the
/// engine's layer cache looks into: the step that mounts the packages names that sha256, so other packages
/// make another step.
fn bind_mounted_packages(
    dir: &Utf8Path,
    packages: &[KernelPackage],
    context_dir: &str,
    keys: PackageKeys,
) -> Result<(Vec<ContextFile>, String)> {
    let mut out = Vec::new();
    let mut sums = BTreeMap::new();
    for package in packages {
        let (content, actual) = package.read_checked_as(dir, keys)?;
        sums.insert(package.name.clone(), actual);
        out.push(ContextFile {
            path: Utf8Path::new(context_dir).join(&package.name),
            mode: 0o644,
            content,
        });
    }
    let listing: String = sums
        .iter()
        .map(|(name, sum)| format!("{sum}  {name}\n"))
        .collect();
    let digest = format!("{:x}", Sha256::digest(&listing));
    out.push(ContextFile::text(
        format!("{context_dir}/SHA256SUMS"),
        0o644,
        &listing,
    ));
    Ok((out, digest))
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

    /// A module source with upstream vendor-reset's dkms.conf and a file in a subdirectory.
    fn module_tree() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
        std::fs::write(
            path.join("dkms.conf"),
            "PACKAGE_NAME=\"vendor-reset\"\nPACKAGE_VERSION=\"0.1.1\"\n\
             BUILT_MODULE_NAME[0]=\"${PACKAGE_NAME}\"\nMAKE[0]=\"make KDIR=${kernel_source_dir}\"\n\
             CLEAN=\"make KDIR=${kernel_source_dir} clean\"\n\
             DEST_MODULE_LOCATION[0]=\"/kernel/drivers/misc\"\nAUTOINSTALL=\"yes\"\n",
        )
        .unwrap();
        std::fs::create_dir_all(path.join("src/.git")).unwrap();
        std::fs::write(path.join("src/module.c"), "int x;\n").unwrap();
        std::fs::create_dir(path.join(".git")).unwrap();
        std::fs::write(path.join(".git/HEAD"), "ref: refs/heads/master\n").unwrap();
        (dir, path)
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
        // The packages to install from it come from the plan too.
        let names = crate::plan::acs_repository_packages().join(",");
        assert_eq!(
            argv[argv.len() - 3..],
            ["repo", "https://example.org/acs.repo", &names]
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
        let (_dir, tree) = module_tree();
        let text = containerfile_for(
            &format!("[vendor-reset]\npath = \"{tree}\"\n"),
            &["1002:67df"],
        );
        assert_eq!(
            from_lines(&text),
            [
                "FROM quay.io/fedora/fedora-bootc:44 AS system",
                "FROM system AS kmods",
                "FROM system"
            ]
        );
        assert!(text.contains("COPY --from=kmods /out/ /"), "{text}");
        // The source where dkms keeps it; the build gets everything from the plan: directories, the modules
        // the image loads at boot, and dkms.conf's build command with the placeholders the build fills.
        assert!(
            text.contains("COPY sources/vendor-reset/ /usr/src/vendor-reset-0.1.1/\n"),
            "{text}"
        );
        let (mounts, argv) = run_line(&text, "build-kmods");
        assert_eq!(mounts, "");
        assert_eq!(
            argv,
            [
                "/usr/libexec/passthru-image/build-kmods",
                "--name",
                "vendor-reset",
                "--version",
                "0.1.1",
                "--source",
                "/usr/src/vendor-reset-0.1.1",
                "--build",
                "/var/lib/dkms/vendor-reset/0.1.1/build",
                "--out",
                "/out",
                "--module",
                "vendor-reset",
                "--",
                "make",
                "-j${parallel_jobs}",
                "KERNELRELEASE=${kernelver}",
                "KDIR=${kernel_source_dir}",
            ]
        );
        assert_host_layer_last(&text);
    }

    #[test]
    fn the_module_source_reaches_the_context_without_git_metadata() {
        let (_dir, tree) = module_tree();
        let config = Config::from_toml(
            &format!("[vendor-reset]\nenabled = true\npath = \"{tree}\"\n"),
            "t.toml",
        )
        .unwrap();
        let plan = Plan::resolve(
            &config.with_overrides(&Overrides {
                cpu: Some(CpuChoice::Amd),
                ..Default::default()
            }),
            &crate::plan::Target::Image,
        )
        .unwrap();
        let ctx = render(&plan).unwrap();
        let sources: Vec<&str> = ctx
            .files
            .iter()
            .map(|f| f.path.as_str())
            .filter(|p| p.starts_with("sources/"))
            .collect();
        assert_eq!(
            sources,
            [
                "sources/vendor-reset/dkms.conf",
                "sources/vendor-reset/src/module.c"
            ]
        );
    }

    #[test]
    fn local_header_packages_are_bind_mounted_with_their_sums_on_the_build_step() {
        let (_dir, tree) = module_tree();
        let headers = tempfile::tempdir().unwrap();
        let headers = Utf8Path::from_path(headers.path()).unwrap();
        std::fs::write(
            headers.join("linux-headers-6.1.0-50-amd64_6.1.176-1_amd64.deb"),
            b"deb",
        )
        .unwrap();
        let text = containerfile_for(
            &format!("[vendor-reset]\npath = \"{tree}\"\nheaders = \"{headers}\"\n"),
            &["1002:67df"],
        );
        let sums = format!(
            "{:x}",
            Sha256::digest(format!(
                "{:x}  linux-headers-6.1.0-50-amd64_6.1.176-1_amd64.deb\n",
                Sha256::digest(b"deb")
            ))
        );
        let (mounts, argv) = run_line(&text, "build-kmods");
        assert_eq!(
            mounts,
            "--mount=type=bind,source=headers,target=/run/passthru-headers"
        );
        let headers = argv.iter().position(|a| a == "--header-packages").unwrap();
        assert_eq!(
            argv[headers..headers + 4],
            [
                "--header-packages",
                "/run/passthru-headers",
                "--header-sums",
                &sums
            ]
        );
        assert!(!text.contains("COPY headers"), "{text}");
    }

    /// A `mok new`-like certificate (and key) in `dir`, and the `[signing]` section naming them.
    fn signing_toml(dir: &Utf8Path) -> String {
        crate::cmd::Cmd::new("openssl")
            .args([
                "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=render test MOK"])
            .args(["-addext", "extendedKeyUsage=codeSigning"])
            .args(["-keyout", dir.join("MOK.key").as_str()])
            .args(["-out", dir.join("MOK.pem").as_str()])
            .read()
            .unwrap();
        format!("[signing]\nkey = \"{dir}/MOK.key\"\ncert = \"{dir}/MOK.pem\"\n")
    }

    /// The module from `tree`, the ACS kernel from `packages` (when given), signed with the key in `keys`.
    fn signed_plan(tree: &Utf8Path, packages: Option<&Utf8Path>, keys: &Utf8Path) -> Plan {
        let mut toml = format!("[vendor-reset]\npath = \"{tree}\"\n{}", signing_toml(keys));
        if let Some(dir) = packages {
            std::fs::write(
                dir.join("kernel-core-6.11.4-301.acs.fc41.x86_64.rpm"),
                b"rpm",
            )
            .unwrap();
            toml += &format!("[acs-override]\nenabled = true\npackages = \"{dir}\"\n");
        }
        let overrides = Overrides {
            cpu: Some(CpuChoice::Amd),
            vfio_ids: Some(vec!["1002:67df".parse().unwrap()]),
            ..Default::default()
        };
        let config = Config::from_toml(&toml, "t.toml")
            .unwrap()
            .with_overrides(&overrides);
        Plan::resolve(&config, &crate::plan::Target::Image).unwrap()
    }

    #[test]
    fn a_source_larger_than_any_module_is_bad_input_before_it_is_read() {
        // vendor-reset.path naming a home directory or a disk image instead of the module's checkout. The
        // file is sparse: the budget refuses it by its size, so the test reads none of it.
        let (_dir, tree) = module_tree();
        let big = std::fs::File::create(tree.join("disk.img")).unwrap();
        big.set_len(SourceBudget::MODULE.bytes + 1).unwrap();
        let config = Config::from_toml(&format!("[vendor-reset]\npath = \"{tree}\"\n"), "t.toml")
            .unwrap()
            .with_overrides(&Overrides {
                vfio_ids: Some(vec!["1002:67df".parse().unwrap()]),
                ..Default::default()
            });
        let plan = Plan::resolve(&config, &crate::plan::Target::Image).unwrap();
        let err = render(&plan).unwrap_err();
        let input = err.downcast_ref::<InputError>().expect("an input error");
        assert_eq!(input.field, "vendor-reset.path");
        assert!(err.to_string().contains("disk.img"), "{err}");
        assert!(
            err.to_string().contains("the one with its dkms.conf"),
            "{err}"
        );
    }

    #[test]
    fn a_source_with_more_files_than_its_budget_is_refused() {
        let (_dir, tree) = module_tree();
        let mut out = Vec::new();
        let mut fits = SourceBudget {
            files: 2,
            bytes: SourceBudget::MODULE.bytes,
        };
        // dkms.conf and src/module.c; .git is never copied.
        copy_tree(&tree, Utf8Path::new("sources/m"), &mut out, &mut fits).unwrap();
        assert_eq!(out.len(), 2);
        let mut short = SourceBudget {
            files: 1,
            bytes: SourceBudget::MODULE.bytes,
        };
        let err = copy_tree(
            &tree,
            Utf8Path::new("sources/m"),
            &mut Vec::new(),
            &mut short,
        );
        assert!(err.unwrap_err().to_string().contains("holds at most"));
    }

    fn utf8_tempdir() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
        (dir, path)
    }

    #[test]
    fn signing_happens_in_throwaway_stages_with_the_secrets_mounted_there_only() {
        let (_tree_dir, tree) = module_tree();
        let (_packages_dir, packages) = utf8_tempdir();
        let (_keys_dir, keys) = utf8_tempdir();
        let plan = signed_plan(&tree, Some(&packages), &keys);
        let sum = plan.signing.as_ref().unwrap().certificate.sha256.clone();
        let ctx = render(&plan).unwrap();
        let text = ctx.containerfile();
        assert_eq!(
            from_lines(text),
            [
                "FROM quay.io/fedora/fedora-bootc:44 AS system",
                "FROM system AS kmods",
                "FROM system AS kernel-signing",
                "FROM system"
            ]
        );
        let secrets = "--mount=type=secret,id=mok-key,target=/run/secrets/mok-key \
                       --mount=type=secret,id=mok-cert,target=/run/secrets/mok-cert";
        let signing_runs: Vec<(String, Vec<String>)> = text
            .lines()
            .filter(|l| l.starts_with("RUN ") && l.contains("mok-sign"))
            .map(|l| run_line(l, "mok-sign"))
            .collect();
        let mok_sign = |mode_args: &[&str]| {
            let secrets = [
                "/usr/libexec/passthru-image/mok-sign",
                "--key",
                "/run/secrets/mok-key",
                "--cert",
                "/run/secrets/mok-cert",
                "--cert-sha256",
                &sum,
            ];
            secrets
                .iter()
                .chain(mode_args)
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            signing_runs,
            [
                (secrets.to_owned(), mok_sign(&["modules", "/out"])),
                (
                    format!(
                        "--mount=type=bind,from=quay.io/fedora/fedora-bootc:44,\
                         source=/usr/lib/modules,target=/run/passthru-base-modules {secrets}"
                    ),
                    mok_sign(&["kernel", "/run/passthru-base-modules", "/out"])
                ),
            ]
        );
        // The modules are signed after they are built, in their stage; the final stage starts with the signed
        // kernel and mounts no secret.
        let kmods = text.find("FROM system AS kmods").unwrap();
        let built = text.find("build-kmods\",\"--name").unwrap();
        let signed = text.find("\"modules\",\"/out\"]").unwrap();
        let kernel_stage = text.find("FROM system AS kernel-signing").unwrap();
        assert!(
            kmods < built && built < signed && signed < kernel_stage,
            "{text}"
        );
        let last = text.rfind("FROM system\n").unwrap();
        assert!(
            text[last..].starts_with("FROM system\nCOPY --from=kernel-signing /out/ /\n"),
            "{text}"
        );
        assert!(!text[last..].contains("type=secret"), "{text}");
        assert_host_layer_last(text);
        // mok-sign comes with the context; no file of it holds the key or the certificate.
        assert!(ctx.get("scripts/mok-sign").is_some_and(|f| f.mode == 0o755));
        let pem = std::fs::read(keys.join("MOK.key")).unwrap();
        let cert = &plan.signing.as_ref().unwrap().certificate.pem;
        for file in &ctx.files {
            for secret in [&pem[..], cert.as_bytes()] {
                assert!(
                    !file
                        .content
                        .windows(64)
                        .any(|w| secret.windows(64).any(|s| s == w)),
                    "{} holds a part of the key or certificate",
                    file.path
                );
            }
        }
    }

    #[test]
    fn without_a_kernel_only_the_modules_are_signed_and_without_signing_nothing_is() {
        let (_tree_dir, tree) = module_tree();
        let (_keys_dir, keys) = utf8_tempdir();
        let plan = signed_plan(&tree, None, &keys);
        let text = render(&plan).unwrap().containerfile().to_owned();
        assert_eq!(
            from_lines(&text),
            [
                "FROM quay.io/fedora/fedora-bootc:44 AS system",
                "FROM system AS kmods",
                "FROM system"
            ]
        );
        assert_eq!(text.matches("mok-sign\",").count(), 1, "{text}");
        assert!(
            text.contains("COPY scripts/image-kernel scripts/build-kmods scripts/mok-sign /usr/")
        );
        assert!(
            text.contains("podman build --secret id=mok-key,src=MOK.key"),
            "{text}"
        );

        let unsigned = containerfile_for(
            &format!("[vendor-reset]\npath = \"{tree}\"\n"),
            &["1002:67df"],
        );
        assert!(
            !unsigned.contains("mok-sign") && !unsigned.contains("secret"),
            "{unsigned}"
        );
    }

    /// The whole signed Containerfile, for review; the certificate's fingerprint differs per run.
    #[test]
    fn signed_containerfile_snapshot() {
        let (_tree_dir, tree) = module_tree();
        let (_packages_dir, packages) = utf8_tempdir();
        let (_keys_dir, keys) = utf8_tempdir();
        let plan = signed_plan(&tree, Some(&packages), &keys);
        let sum = &plan.signing.as_ref().unwrap().certificate.sha256;
        let text = render(&plan)
            .unwrap()
            .containerfile()
            .replace(sum, "<CERT-SHA256>");
        insta::assert_snapshot!(text);
    }

    #[test]
    fn an_unfetched_git_source_cannot_be_rendered() {
        let config = Config::default().with_overrides(&Overrides {
            cpu: Some(CpuChoice::Amd),
            vfio_ids: Some(vec!["1002:67df".parse().unwrap()]),
            ..Default::default()
        });
        let plan = Plan::resolve(&config, &crate::plan::Target::Image).unwrap();
        let err = render(&plan).unwrap_err();
        assert!(err.to_string().contains("was not fetched"), "{err}");
    }
}
