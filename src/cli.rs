//! Command-line definitions (clap) and nothing else: each command's work lives in `commands/`.

use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand};

use crate::boot::qemu::IommuKind;
use crate::ci_workflow::Signing;
use crate::config::{CpuChoice, GpuVendor, Overrides};
use crate::host::class::DeviceClass;
use crate::host::pci::PciAddress;
use crate::image::engine::{BuildIsolation, Engine, Label, Pull, TlsVerify};
use crate::image_ref::ImageRef;
use crate::pci_id::PciId;
use crate::plan::Target;
use crate::root::Root;

#[derive(Debug, Parser)]
#[command(
    name = "passthru-image",
    version,
    about = "PCIe/GPU passthrough for immutable Fedora hosts"
)]
pub struct Cli {
    /// Configuration file [default: ./passthru.toml if present, else the embedded default]
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<Utf8PathBuf>,

    /// Root of the host filesystem whose /sys and /proc are read [default: /]; with plan, generate and build it
    /// also makes the plan for that host (its devices are read and checked)
    #[arg(long, global = true, value_name = "DIR", value_parser = parse_existing_dir)]
    pub(crate) root: Option<Utf8PathBuf>,

    /// Show the container engine's whole output during build, instead of one progress line
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub(crate) verbose: bool,

    /// Only errors
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

impl Cli {
    /// The root of the host that commands about a host read: `--root`, else `/`.
    pub(crate) fn root(&self) -> Root {
        self.root.clone().map(Root::new).unwrap_or_default()
    }

    /// Whom `plan`, `generate` and `build` plan for: the host under `--root`, else an image whose hosts this
    /// machine cannot see.
    pub(crate) fn image_target(&self) -> Target {
        match &self.root {
            Some(root) => Target::Host(Root::new(root.clone())),
            None => Target::Image,
        }
    }

    /// Whom the commands about this host (apply, doctor, detect) plan for.
    pub(crate) fn host_target(&self) -> Target {
        Target::Host(self.root())
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show the resolved plan: kernel arguments, initramfs drivers, files, kernel, modules
    Plan {
        /// Print the plan as JSON
        #[arg(long)]
        json: bool,
        /// Plan every host config in DIR (see `build --hosts`) and show which hosts share which stack
        #[arg(long, value_name = "DIR")]
        hosts: Option<Utf8PathBuf>,
        #[command(flatten)]
        overrides: OverrideArgs,
    },
    /// Write the image build context (Containerfile + layer files) to a directory
    Generate {
        /// Directory to write; refused when it is not empty and not made by passthru-image
        #[arg(short, long, value_name = "DIR")]
        output: Utf8PathBuf,
        /// Write into a non-empty directory that passthru-image did not make
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        overrides: OverrideArgs,
    },
    /// Image mode: render the build context and build the bootc image with podman, buildah or docker
    Build(BuildArgs),
    /// Live mode: apply the plan to this rpm-ostree host's next deployment (kargs, initramfs, drop-ins)
    Apply {
        #[command(flatten)]
        live: LiveArgs,
        /// Print the exact commands and file changes; change nothing
        #[arg(long)]
        dry_run: bool,
        /// Remove host kargs that set a planned parameter to another value (e.g. iommu=off for iommu=pt)
        #[arg(long)]
        replace_conflicts: bool,
        /// With --dry-run: print the proposal as JSON
        #[arg(long, requires = "dry_run")]
        json: bool,
        #[command(flatten)]
        overrides: OverrideArgs,
    },
    /// List IOMMU groups like ls-iommu, with a passthrough verdict per device and the USB devices behind
    /// each USB controller
    Groups {
        /// Print the groups and the verdicts as JSON
        #[arg(long)]
        json: bool,
        /// Only the groups that hold a GPU (the same as --class gpu)
        #[arg(long)]
        gpus: bool,
        /// Only the groups that hold a device of this class, and their verdicts (repeatable)
        #[arg(long, value_enum, value_name = "CLASS")]
        class: Vec<DeviceClass>,
    },
    /// Read the host and propose a passthru.toml (CPU vendor, base image, GPU to pass and its companion
    /// functions); with --config FILE, that file with what detect found put in
    Detect {
        /// Write the proposal to FILE instead of stdout; refused when FILE exists, unless --force or --merge
        #[arg(long, value_name = "FILE")]
        write: Option<Utf8PathBuf>,
        /// Replace an existing --write FILE
        #[arg(long, requires = "write", conflicts_with = "merge")]
        force: bool,
        /// Into an existing --write FILE, change only what detect finds; keep the other keys and comments
        #[arg(long, requires = "write")]
        merge: bool,
        /// The PCI device to pass (0000:02:00.0 or 02:00.0), any class, instead of the GPU detect picks
        #[arg(long, value_name = "ADDRESS", value_parser = parse_user_pci_address)]
        device: Option<PciAddress>,
        /// The ostree sysroot whose deployment tells the base image the host runs [default: --root]
        #[arg(long, value_name = "DIR")]
        sysroot: Option<Utf8PathBuf>,
        /// Print the proposal (config, TOML, findings, warnings) as JSON
        #[arg(long)]
        json: bool,
    },
    /// Check the running host against the plan and the firmware: kargs, IOMMU, KVM, modprobe, vfio-pci
    /// binding, groups, vendor-reset, BARs
    Doctor {
        /// Print the checks as JSON
        #[arg(long)]
        json: bool,
        /// List the checks and what each verifies; check nothing
        #[arg(long)]
        list_checks: bool,
        #[command(flatten)]
        overrides: OverrideArgs,
    },
    /// Live mode: undo what apply did (recorded in /etc/passthru-image/live-state.json)
    Revert {
        #[command(flatten)]
        live: LiveArgs,
    },
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
}

#[derive(Debug, Subcommand)]
pub(crate) enum MokCommand {
    /// Make a key pair and certificate for shim and the kernel in DIR (new or empty), and print how to
    /// enroll it with mokutil
    New {
        /// Directory for MOK.key, MOK.pem and MOK.der; refused when it is not empty
        #[arg(value_name = "DIR")]
        dir: Utf8PathBuf,
        /// Common name of the certificate [default: passthru-image MOK <this host's name>]
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
    /// Write the workflow to FILE (e.g. .github/workflows/passthru-image.yml) instead of stdout; refused when
    /// FILE exists, unless --force
    #[arg(long, value_name = "FILE")]
    pub(crate) write: Option<Utf8PathBuf>,
    /// Replace an existing --write FILE
    #[arg(long, requires = "write")]
    pub(crate) force: bool,
}

#[derive(Debug, Clone, Args)]
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
    #[arg(long)]
    pub(crate) list_checks: bool,
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
}

/// Where live mode finds the ostree deployments.
#[derive(Debug, Clone, Args)]
pub(crate) struct LiveArgs {
    /// The ostree sysroot holding the deployments
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub(crate) sysroot: Utf8PathBuf,
}

/// Config values a single run may override.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct OverrideArgs {
    /// CPU vendor, instead of cpu.vendor
    #[arg(long, value_enum)]
    pub(crate) cpu: Option<CpuChoice>,
    /// Vendors of the passed-through GPUs, comma-separated, instead of gpu.vendors
    #[arg(long, value_enum, value_delimiter = ',', num_args = 0..)]
    pub(crate) gpu: Option<Vec<GpuVendor>>,
    /// Device IDs to bind to vfio-pci (vvvv:dddd, comma-separated), instead of vfio.ids
    #[arg(long, value_delimiter = ',', value_parser = parse_pci_id, num_args = 0..)]
    pub(crate) vfio_ids: Option<Vec<PciId>>,
    /// Base image, instead of image.base (drops a configured digest)
    #[arg(long, value_parser = parse_image_ref, value_name = "IMAGE")]
    pub(crate) base: Option<ImageRef>,
    /// Tag of the built image, instead of image.tag
    #[arg(long, value_parser = parse_image_ref, value_name = "IMAGE")]
    pub(crate) tag: Option<ImageRef>,
}

impl OverrideArgs {
    /// No override given on the command line.
    pub(crate) fn is_empty(&self) -> bool {
        let OverrideArgs {
            cpu,
            gpu,
            vfio_ids,
            base,
            tag,
        } = self;
        cpu.is_none() && gpu.is_none() && vfio_ids.is_none() && base.is_none() && tag.is_none()
    }
}

impl From<&OverrideArgs> for Overrides {
    fn from(a: &OverrideArgs) -> Overrides {
        Overrides {
            cpu: a.cpu,
            gpu: a.gpu.clone(),
            vfio_ids: a.vfio_ids.clone(),
            base: a.base.clone(),
            tag: a.tag.clone(),
        }
    }
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
