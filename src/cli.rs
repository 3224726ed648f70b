//! Command-line definitions (clap) and nothing else: each command's work lives in `commands/`.
//!
//! Every command lists only the options it uses: `--config` where a config is read, `--root` where a host is
//! read (in one of two senses: [`HostRoot`], the host a command reads or changes; [`PlanRoot`], the host a plan
//! is made for instead of an image), the overrides where a plan is made. Only `-v` and `-q` are global: every
//! command honours them. `--config` and `--root` are also accepted before the command, as they were written
//! when they were global; [`Cli::settle`] moves them to the command, or refuses them for a command that does
//! not take them.

use camino::{Utf8Path, Utf8PathBuf};
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::boot::qemu::IommuKind;
use crate::ci_workflow::Signing;
use crate::config::{ConfigFile, CpuChoice, GpuVendor, Overrides};
use crate::error::InputError;
use crate::host::class::DeviceClass;
use crate::host::pci::PciAddress;
use crate::image::engine::{BuildIsolation, Engine, Label, Pull, TlsVerify};
use crate::image_ref::ImageRef;
use crate::pci_id::PciId;
use crate::plan::Target;
use crate::root::Root;
use crate::verbosity::Verbosity;

/// `passthru-image --version`: the version and the commit it was built from (src/build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PASSTHRU_IMAGE_COMMIT"),
    ")"
);

/// The variable that names the config when `--config` is not given (CI: one config for every step).
pub(crate) const CONFIG_ENV: &str = "PASSTHRU_CONFIG";

/// The heading of the options every command takes, listed after a command's own.
const GLOBAL: &str = "Global options";

#[derive(Debug, Parser)]
#[command(
    name = "passthru-image",
    version = VERSION,
    about = "PCIe/GPU passthrough for immutable Fedora hosts"
)]
pub struct Cli {
    #[command(flatten)]
    pub(crate) verbosity: VerbosityArgs,

    /// `--config` written before the command; see [`Cli::settle`].
    #[arg(long, hide = true, value_name = "FILE")]
    config: Option<Utf8PathBuf>,

    /// `--root` written before the command; see [`Cli::settle`].
    #[arg(long, hide = true, value_name = "DIR", value_parser = parse_existing_dir)]
    root: Option<Utf8PathBuf>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// `-q`, `-v`, `-vv`: one model for every command (see `crate::verbosity`).
#[derive(Debug, Clone, Copy, Default, Args)]
pub(crate) struct VerbosityArgs {
    /// More on stderr: -v the container engine's whole output instead of a progress line, and the command
    /// line of each program run; -vv also every file read (the config, host files under --root)
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "quiet",
          help_heading = GLOBAL)]
    verbose: u8,

    /// Only errors on stderr: no warnings, notes, progress or advice; doctor and test-boot list only failed
    /// checks and their fixes. A result asked for (a plan, a proposal, JSON) still prints
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    quiet: bool,
}

impl VerbosityArgs {
    pub(crate) fn level(&self) -> Verbosity {
        match (self.quiet, self.verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Normal,
            (false, 1) => Verbosity::Verbose,
            (false, _) => Verbosity::Trace,
        }
    }
}

impl Cli {
    pub(crate) fn verbosity(&self) -> Verbosity {
        self.verbosity.level()
    }

    /// Moves `--config` and `--root` written before the command into the command, which then holds every
    /// option it was given; fills `--config` from `PASSTHRU_CONFIG` where it was not given. An option given
    /// before a command that does not take it, or both before and after it, is bad input.
    pub(crate) fn settle(mut self) -> Result<Cli, InputError> {
        let name = self.command.name();
        if let Some(path) = self.config.take() {
            let slot = self.command.config().ok_or_else(|| {
                InputError::new(
                    "--config",
                    format!(
                        "`{name}` reads no config; the commands that do: plan, generate, build, \
                         apply, doctor, detect, test-boot"
                    ),
                )
            })?;
            slot.take_from_before(path)?;
        }
        if let Some(path) = self.root.take() {
            let slot = self.command.root().ok_or_else(|| {
                InputError::new(
                    "--root",
                    format!(
                        "`{name}` reads no host; the commands that do: groups, detect, doctor, \
                         apply, revert, and plan, generate and build for a host"
                    ),
                )
            })?;
            take_from_before(slot, path, "--root")?;
        }
        if let Some(slot) = self.command.config() {
            slot.fill_from_environment();
        }
        Ok(self)
    }
}

/// Puts `value`, given before the command, into the command's own option, unless that was given too.
fn take_from_before(
    slot: &mut Option<Utf8PathBuf>,
    value: Utf8PathBuf,
    flag: &str,
) -> Result<(), InputError> {
    match slot {
        Some(own) => Err(InputError::new(
            flag,
            format!("given twice, {value} before the command and {own} after it: give it once"),
        )),
        None => {
            *slot = Some(value);
            Ok(())
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show the resolved plan: kernel arguments, initramfs drivers, files, kernel, modules
    Plan(PlanArgs),
    /// Write the image build context (Containerfile + layer files) to a directory
    Generate(GenerateArgs),
    /// Image mode: render the build context and build the bootc image with podman, buildah or docker
    Build(BuildArgs),
    /// Live mode: apply the plan to this rpm-ostree host's next deployment (kargs, initramfs, drop-ins)
    Apply(ApplyArgs),
    /// List IOMMU groups like ls-iommu, with a passthrough verdict per device and the USB devices behind
    /// each USB controller
    Groups(GroupsArgs),
    /// Read the host and propose a passthru.toml (CPU vendor, base image, GPU to pass and its companion
    /// functions); with --config FILE, that file with what detect found put in
    Detect(DetectArgs),
    /// Check the running host against the plan and the firmware: kargs, IOMMU, KVM, modprobe, vfio-pci
    /// binding, groups, vendor-reset, BARs
    Doctor(DoctorArgs),
    /// Live mode: undo what apply did (recorded in /etc/passthru-image/live-state.json)
    Revert(RevertArgs),
    /// Boot a built image under QEMU and check that a stand-in device comes up on vfio-pci
    TestBoot(TestBootArgs),
    /// Secure Boot: the Machine Owner Key that signs modules and kernels
    Mok {
        #[command(subcommand)]
        command: MokCommand,
    },
    /// Generate a CI workflow that builds and pushes the fleet's images
    Ci {
        #[command(subcommand)]
        target: CiTarget,
    },
    /// Print the shell completion script for bash, zsh or fish
    Completions(CompletionsArgs),
    /// Write a man page for passthru-image and one for each of its commands to a directory
    Man(ManArgs),
}

impl Command {
    /// The command as typed, for messages.
    fn name(&self) -> &'static str {
        match self {
            Command::Plan(_) => "plan",
            Command::Generate(_) => "generate",
            Command::Build(_) => "build",
            Command::Apply(_) => "apply",
            Command::Groups(_) => "groups",
            Command::Detect(_) => "detect",
            Command::Doctor(_) => "doctor",
            Command::Revert(_) => "revert",
            Command::TestBoot(_) => "test-boot",
            Command::Mok { .. } => "mok",
            Command::Ci { .. } => "ci",
            Command::Completions(_) => "completions",
            Command::Man(_) => "man",
        }
    }

    /// The command's `--config`, when it reads a config.
    fn config(&mut self) -> Option<&mut ConfigArg> {
        match self {
            Command::Plan(a) => Some(&mut a.config),
            Command::Generate(a) => Some(&mut a.config),
            Command::Build(a) => Some(&mut a.config),
            Command::Apply(a) => Some(&mut a.config),
            Command::Detect(a) => Some(&mut a.config),
            Command::Doctor(a) => Some(&mut a.config),
            Command::TestBoot(a) => Some(&mut a.config),
            Command::Groups(_)
            | Command::Revert(_)
            | Command::Mok { .. }
            | Command::Ci { .. }
            | Command::Completions(_)
            | Command::Man(_) => None,
        }
    }

    /// The command's `--root`, when it reads a host.
    fn root(&mut self) -> Option<&mut Option<Utf8PathBuf>> {
        match self {
            Command::Plan(a) => Some(&mut a.root.root),
            Command::Generate(a) => Some(&mut a.root.root),
            Command::Build(a) => Some(&mut a.root.root),
            Command::Apply(a) => Some(&mut a.root.root),
            Command::Groups(a) => Some(&mut a.root.root),
            Command::Detect(a) => Some(&mut a.root.root),
            Command::Doctor(a) => Some(&mut a.root.root),
            Command::Revert(a) => Some(&mut a.root.root),
            Command::TestBoot(_)
            | Command::Mok { .. }
            | Command::Ci { .. }
            | Command::Completions(_)
            | Command::Man(_) => None,
        }
    }
}

/// `--config`, for the commands that read a config.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ConfigArg {
    /// Configuration file; `-` reads it from standard input, and relative paths in it are then relative to the
    /// current directory [default: $PASSTHRU_CONFIG, else ./passthru.toml if present, else the embedded default]
    #[arg(id = "config", long = "config", value_name = "FILE")]
    path: Option<Utf8PathBuf>,

    /// Whether `path` came from `PASSTHRU_CONFIG`, which messages then name.
    #[arg(skip)]
    from: ConfigFrom,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ConfigFrom {
    #[default]
    Flag,
    Environment,
}

impl ConfigArg {
    /// The config the user named, if any.
    pub(crate) fn file(&self) -> Option<ConfigFile<'_>> {
        let field = match self.from {
            ConfigFrom::Flag => "--config",
            ConfigFrom::Environment => CONFIG_ENV,
        };
        self.path.as_deref().map(|path| ConfigFile { path, field })
    }

    fn take_from_before(&mut self, path: Utf8PathBuf) -> Result<(), InputError> {
        take_from_before(&mut self.path, path, "--config")
    }

    /// `PASSTHRU_CONFIG`, unless `--config` was given; an empty variable is unset.
    fn fill_from_environment(&mut self) {
        if self.path.is_some() {
            return;
        }
        let value = std::env::var(CONFIG_ENV).ok().filter(|v| !v.is_empty());
        if let Some(value) = value {
            self.path = Some(value.into());
            self.from = ConfigFrom::Environment;
        }
    }
}

/// `--root` of the commands about a host: the host they read (and `apply` and `revert` change).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct HostRoot {
    /// Root of the host filesystem to use instead of /: its /sys, /proc and /etc (a host mounted in a
    /// container, a copied tree, a `test-boot --capture`)
    #[arg(long, value_name = "DIR", value_parser = parse_existing_dir)]
    root: Option<Utf8PathBuf>,
}

impl HostRoot {
    /// `--root`, else `/`.
    pub(crate) fn root(&self) -> Root {
        self.root.clone().map(Root::new).unwrap_or_default()
    }

    /// A plan for the host.
    pub(crate) fn target(&self) -> Target {
        Target::Host(self.root())
    }
}

/// `--root` of `plan`, `generate` and `build`: without it they plan an image from the config alone.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct PlanRoot {
    /// Plan for the host whose filesystem is at DIR (its devices are read and checked, its CPU decides
    /// cpu.vendor = "auto"), instead of for an image from the config alone
    #[arg(long, value_name = "DIR", value_parser = parse_existing_dir)]
    root: Option<Utf8PathBuf>,
}

impl PlanRoot {
    /// Whom the plan is for: the host under `--root`, else an image whose hosts this machine cannot see.
    pub(crate) fn target(&self) -> Target {
        match &self.root {
            Some(root) => Target::Host(Root::new(root.clone())),
            None => Target::Image,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub(crate) struct PlanArgs {
    /// Print the plan as JSON
    #[arg(long)]
    pub(crate) json: bool,
    /// Plan every host config in DIR (see `build --hosts`) and show which hosts share which stack
    #[arg(long, value_name = "DIR")]
    pub(crate) hosts: Option<Utf8PathBuf>,
    #[command(flatten)]
    pub(crate) overrides: OverrideArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArg,
    #[command(flatten)]
    pub(crate) root: PlanRoot,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct GenerateArgs {
    /// Directory to write; refused when it is not empty and not made by passthru-image
    #[arg(short, long, value_name = "DIR")]
    pub(crate) output: Utf8PathBuf,
    /// Write into a non-empty directory that passthru-image did not make
    #[arg(long)]
    pub(crate) force: bool,
    #[command(flatten)]
    pub(crate) overrides: OverrideArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArg,
    #[command(flatten)]
    pub(crate) root: PlanRoot,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct ApplyArgs {
    /// Print the exact commands and file changes; change nothing
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Remove host kargs that set a planned parameter to another value (e.g. iommu=off for iommu=pt)
    #[arg(long)]
    pub(crate) replace_conflicts: bool,
    /// With --dry-run: print the proposal as JSON
    #[arg(long, requires = "dry_run")]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) live: LiveArgs,
    #[command(flatten)]
    pub(crate) overrides: PlanOverrideArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArg,
    #[command(flatten)]
    pub(crate) root: HostRoot,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct GroupsArgs {
    /// Print the groups and the verdicts as JSON
    #[arg(long)]
    pub(crate) json: bool,
    /// Only the groups that hold a GPU (the same as --class gpu)
    #[arg(long)]
    pub(crate) gpus: bool,
    /// Only the groups that hold a device of this class, and their verdicts (repeatable)
    #[arg(long, value_enum, value_name = "CLASS")]
    pub(crate) class: Vec<DeviceClass>,
    #[command(flatten)]
    pub(crate) root: HostRoot,
}

#[derive(Debug, Clone, Args)]
#[command(mut_arg("config", |arg| arg.help(
    "This passthru.toml with what detect found put in, its other keys and comments kept, instead \
     of a new proposal; `-` reads it from standard input [default: $PASSTHRU_CONFIG, else a new \
     proposal]"
)))]
pub(crate) struct DetectArgs {
    /// Write the proposal to FILE instead of stdout (`-`: stdout); refused when FILE exists, unless --force or
    /// --merge
    #[arg(long, value_name = "FILE")]
    pub(crate) write: Option<Utf8PathBuf>,
    /// Replace an existing --write FILE
    #[arg(long, requires = "write", conflicts_with = "merge")]
    pub(crate) force: bool,
    /// Into an existing --write FILE, change only what detect finds; keep the other keys and comments
    #[arg(long, requires = "write")]
    pub(crate) merge: bool,
    /// The PCI device to pass (0000:02:00.0 or 02:00.0), any class, instead of the GPU detect picks
    #[arg(long, value_name = "ADDRESS", value_parser = parse_user_pci_address)]
    pub(crate) device: Option<PciAddress>,
    /// The ostree sysroot whose deployment tells the base image the host runs [default: --root]
    #[arg(long, value_name = "DIR")]
    pub(crate) sysroot: Option<Utf8PathBuf>,
    /// Print the proposal (config, TOML, findings, warnings) as JSON
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) config: ConfigArg,
    #[command(flatten)]
    pub(crate) root: HostRoot,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct DoctorArgs {
    /// Print the checks as JSON
    #[arg(long)]
    pub(crate) json: bool,
    /// List the checks and what each verifies; check nothing
    #[arg(long, conflicts_with_all = ["json", "cpu", "gpu", "vfio_ids", "config", "root"])]
    pub(crate) list_checks: bool,
    #[command(flatten)]
    pub(crate) overrides: PlanOverrideArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArg,
    #[command(flatten)]
    pub(crate) root: HostRoot,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct RevertArgs {
    #[command(flatten)]
    pub(crate) live: LiveArgs,
    #[command(flatten)]
    pub(crate) root: HostRoot,
}

#[derive(Debug, Subcommand)]
pub(crate) enum MokCommand {
    /// Make a key pair and certificate for shim and the kernel in DIR (new or empty), and print how to
    /// enroll it with mokutil
    New {
        /// Directory for MOK.key, MOK.pem and MOK.der; refused when it is not empty
        #[arg(value_name = "DIR")]
        dir: Utf8PathBuf,
        /// Common name of the certificate [default: passthru-image MOK <this machine's name>]
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CiTarget {
    /// A GitHub Actions workflow: build every host with `build --hosts` on push and when a base image changes
    Github(GithubArgs),
}

#[derive(Debug, Clone, Args)]
pub(crate) struct GithubArgs {
    /// The fleet directory, relative to the repository root (one NAME.toml per host, tags on ghcr.io)
    #[arg(long, value_name = "DIR", default_value = "hosts")]
    pub(crate) hosts: Utf8PathBuf,
    /// The passthru-image container image the workflow runs in, pinned by digest (IMAGE@sha256:...)
    #[arg(long, value_name = "IMAGE@DIGEST", value_parser = parse_image_ref)]
    pub(crate) tool_image: ImageRef,
    /// Branch whose pushes rebuild the images
    #[arg(long, value_name = "NAME", default_value = "main")]
    pub(crate) branch: String,
    /// When the daily check for base image updates runs: cron, UTC
    #[arg(long, value_name = "CRON", default_value = "23 4 * * *")]
    pub(crate) schedule: String,
    /// Sign every pushed image: cosign signs keyless with the workflow's identity
    #[arg(long, value_enum, default_value = "none")]
    pub(crate) sign: Signing,
    /// Write the workflow to FILE (e.g. .github/workflows/passthru-image.yml) instead of stdout (`-`:
    /// stdout); refused when FILE exists, unless --force
    #[arg(long, value_name = "FILE")]
    pub(crate) write: Option<Utf8PathBuf>,
    /// Replace an existing --write FILE
    #[arg(long, requires = "write")]
    pub(crate) force: bool,
}

#[derive(Debug, Clone, Args)]
#[command(mut_arg("config", |arg| arg.help(
    "Configuration file, read for what IMAGE and --iommu leave open: image.tag and cpu.vendor; `-` \
     reads it from standard input [default: $PASSTHRU_CONFIG, else ./passthru.toml if present, \
     else the embedded default]"
)))]
pub(crate) struct TestBootArgs {
    /// Image in podman's local storage [default: the config's image.tag]
    #[arg(value_parser = parse_image_ref, value_name = "IMAGE")]
    pub(crate) image: Option<ImageRef>,
    /// Print the report (checks, timings, what the probe saw) as JSON
    #[arg(long)]
    pub(crate) json: bool,
    /// Seconds the VM may run before it is killed and the boot fails
    #[arg(long, value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) timeout: u64,
    /// Virtual IOMMU of the VM [default: from the plan's CPU vendor]
    #[arg(long, value_enum)]
    pub(crate) iommu: Option<IommuKind>,
    /// Also write the VM's sysfs/procfs tree (the paths `--root` reads) to DIR, a new or empty directory
    #[arg(long, value_name = "DIR")]
    pub(crate) capture: Option<Utf8PathBuf>,
    /// List the checks and what each verifies; boot nothing
    #[arg(long, conflicts_with_all = ["image", "json", "iommu", "capture", "config"])]
    pub(crate) list_checks: bool,
    #[command(flatten)]
    pub(crate) config: ConfigArg,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct BuildArgs {
    /// Container engine [default: podman, else buildah, else docker, whichever is on PATH]
    #[arg(long, value_enum, env = "PASSTHRU_ENGINE")]
    pub(crate) engine: Option<Engine>,
    /// Process isolation for RUN steps (chroot where cgroups are hybrid) [default: the engine's own]
    #[arg(long, value_enum)]
    pub(crate) isolation: Option<BuildIsolation>,
    /// When the engine may fetch the base image
    #[arg(long, value_enum, default_value = "missing")]
    pub(crate) pull: Pull,
    /// Label for the built image (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub(crate) labels: Vec<Label>,
    /// Push the image to its registry after the build, and print its digest
    #[arg(long)]
    pub(crate) push: bool,
    /// With --push: write the pushed digest to FILE (as `podman push --digestfile`); with --hosts, one
    /// REPOSITORY@DIGEST line per host
    #[arg(long, value_name = "FILE", requires = "push")]
    pub(crate) digest_file: Option<Utf8PathBuf>,
    /// With --push: `false` pushes to a registry on plain HTTP or with a certificate this machine does not
    /// trust (podman, buildah; the base is still fetched with verification)
    #[arg(long, value_enum, value_name = "BOOL", requires = "push", num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub(crate) tls_verify: Option<TlsVerify>,
    /// Build every host config in DIR: NAME.toml, each a passthru.toml, makes REPOSITORY:NAME (the repository
    /// of its image.tag); hosts with the same base, kernel, modules and initramfs share those layers
    #[arg(long, value_name = "DIR")]
    pub(crate) hosts: Option<Utf8PathBuf>,
    /// Keep the build context in DIR (same rules as `generate -o`) instead of a temporary directory
    #[arg(long, value_name = "DIR")]
    pub(crate) context: Option<Utf8PathBuf>,
    #[command(flatten)]
    pub(crate) overrides: OverrideArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArg,
    #[command(flatten)]
    pub(crate) root: PlanRoot,
}

/// Where live mode finds the ostree deployments.
#[derive(Debug, Clone, Args)]
pub(crate) struct LiveArgs {
    /// The ostree sysroot holding the deployments
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub(crate) sysroot: Utf8PathBuf,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub(crate) shell: CompletionShell,
    /// Write the script to FILE instead of stdout (`-`: stdout), replacing it: the standard places are
    /// /usr/share/bash-completion/completions/passthru-image, /usr/share/zsh/site-functions/_passthru-image,
    /// /usr/share/fish/vendor_completions.d/passthru-image.fish
    #[arg(long, value_name = "FILE")]
    pub(crate) write: Option<Utf8PathBuf>,
}

/// The shells whose completion scripts the suite checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

impl CompletionShell {
    pub(crate) fn generator(self) -> clap_complete::Shell {
        match self {
            CompletionShell::Bash => clap_complete::Shell::Bash,
            CompletionShell::Zsh => clap_complete::Shell::Zsh,
            CompletionShell::Fish => clap_complete::Shell::Fish,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub(crate) struct ManArgs {
    /// An existing directory for passthru-image.1 and passthru-image-COMMAND.1 (e.g. /usr/share/man/man1 or
    /// ~/.local/share/man/man1); pages already there are replaced
    #[arg(value_name = "DIR")]
    pub(crate) dir: Utf8PathBuf,
}

/// Config values a single run of `plan`, `generate` or `build` may override.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct OverrideArgs {
    #[command(flatten)]
    pub(crate) plan: PlanOverrideArgs,
    #[command(flatten)]
    pub(crate) image: ImageOverrideArgs,
}

impl OverrideArgs {
    pub(crate) fn overrides(&self) -> Overrides {
        Overrides {
            base: self.image.base.clone(),
            tag: self.image.tag.clone(),
            ..self.plan.overrides()
        }
    }
}

/// Overrides of what the plan for a host holds: also for `apply` and `doctor`, which build no image.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct PlanOverrideArgs {
    /// CPU vendor, instead of cpu.vendor
    #[arg(long, value_enum)]
    pub(crate) cpu: Option<CpuChoice>,
    /// Vendors of the passed-through GPUs, comma-separated or repeated, instead of gpu.vendors
    #[arg(long, value_enum, value_delimiter = ',', value_name = "VENDOR")]
    pub(crate) gpu: Option<Vec<GpuVendor>>,
    /// Device IDs to bind to vfio-pci (vvvv:dddd, comma-separated or repeated), instead of vfio.ids
    #[arg(long, value_delimiter = ',', value_parser = parse_pci_id, value_name = "ID")]
    pub(crate) vfio_ids: Option<Vec<PciId>>,
}

impl PlanOverrideArgs {
    pub(crate) fn overrides(&self) -> Overrides {
        Overrides {
            cpu: self.cpu,
            gpu: self.gpu.clone(),
            vfio_ids: self.vfio_ids.clone(),
            base: None,
            tag: None,
        }
    }

    /// No override given on the command line.
    pub(crate) fn is_empty(&self) -> bool {
        let PlanOverrideArgs { cpu, gpu, vfio_ids } = self;
        cpu.is_none() && gpu.is_none() && vfio_ids.is_none()
    }
}

/// Overrides of the image a build makes.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ImageOverrideArgs {
    /// Base image, instead of image.base (drops a configured digest)
    #[arg(long, value_parser = parse_image_ref, value_name = "IMAGE")]
    pub(crate) base: Option<ImageRef>,
    /// Tag of the built image, instead of image.tag
    #[arg(long, value_parser = parse_image_ref, value_name = "IMAGE")]
    pub(crate) tag: Option<ImageRef>,
}

/// The name of `path` for `--write` and similar options: `-` is standard output, as for most Unix tools.
pub(crate) fn is_stdout(path: &Utf8Path) -> bool {
    path.as_str() == "-"
}

fn parse_existing_dir(s: &str) -> Result<Utf8PathBuf, String> {
    let path = Utf8PathBuf::from(s);
    if path.is_dir() {
        Ok(path)
    } else {
        Err(format!("{s} is not an existing directory"))
    }
}

fn parse_pci_id(s: &str) -> Result<PciId, String> {
    s.parse()
}

fn parse_user_pci_address(s: &str) -> Result<PciAddress, String> {
    PciAddress::from_user(s)
}

fn parse_label(s: &str) -> Result<Label, String> {
    s.parse()
}

fn parse_image_ref(s: &str) -> Result<ImageRef, String> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn settled(args: &[&str]) -> Result<Cli, InputError> {
        Cli::try_parse_from(std::iter::once("passthru-image").chain(args.iter().copied()))
            .unwrap()
            .settle()
    }

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn config_and_root_before_the_command_move_into_it() {
        let cli = settled(&["--config", "a.toml", "--root", "/", "plan"]).unwrap();
        let Command::Plan(plan) = &cli.command else {
            panic!("{cli:?}")
        };
        assert_eq!(plan.config.file().unwrap().path, "a.toml");
        assert_eq!(plan.config.file().unwrap().field, "--config");
        assert!(matches!(plan.root.target(), Target::Host(_)));
    }

    #[test]
    fn options_a_command_does_not_take_are_refused_before_it() {
        let err = settled(&["--config", "a.toml", "groups"]).unwrap_err();
        assert_eq!(err.field, "--config");
        assert!(err.message.contains("`groups` reads no config"), "{err}");
        let err = settled(&["--root", "/", "mok", "new", "k"]).unwrap_err();
        assert_eq!(err.field, "--root");
        let err = settled(&["--root", "/", "groups", "--root", "/tmp"]).unwrap_err();
        assert!(err.message.contains("given twice"), "{err}");
    }

    #[test]
    fn verbosity_counts_and_quiet_conflicts_with_it() {
        let level = |args: &[&str]| settled(args).unwrap().verbosity();
        assert_eq!(level(&["groups"]), Verbosity::Normal);
        assert_eq!(level(&["groups", "-q"]), Verbosity::Quiet);
        assert_eq!(level(&["-v", "groups"]), Verbosity::Verbose);
        assert_eq!(level(&["groups", "-vv"]), Verbosity::Trace);
        assert_eq!(level(&["groups", "-vvv"]), Verbosity::Trace);
        assert!(
            Cli::try_parse_from(["passthru-image", "groups", "-v", "-q"]).is_err(),
            "-v and -q contradict each other"
        );
    }

    #[test]
    fn overrides_take_at_least_one_value() {
        for flag in ["--gpu", "--vfio-ids"] {
            assert!(
                Cli::try_parse_from(["passthru-image", "plan", flag]).is_err(),
                "{flag} without a value"
            );
        }
        let cli = settled(&["plan", "--gpu", "nvidia,amd", "--gpu", "intel"]).unwrap();
        let Command::Plan(plan) = &cli.command else {
            panic!("{cli:?}")
        };
        assert_eq!(
            plan.overrides.plan.gpu.as_deref(),
            Some(&[GpuVendor::Nvidia, GpuVendor::Amd, GpuVendor::Intel][..])
        );
    }

    #[test]
    fn the_version_names_a_commit() {
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")), "{VERSION}");
        assert!(
            VERSION.ends_with(" (unknown commit)") || VERSION.contains(" (commit "),
            "{VERSION}"
        );
    }
}
