//! Config + host facts -> [`Plan`], the single source of truth for every executor.
//!
//! The image renderer, the live applier and doctor all read a `Plan`; none of them decides a karg, a driver
//! or a file of its own.

pub(crate) mod dkms_conf;
pub(crate) mod host_safety;
pub(crate) mod kargs;
pub(crate) mod record;

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::signing::{Certificate, PemSource};
use crate::config::{Config, CpuChoice, GpuVendor, HeaderPackages, KernelSource, ModuleSource};
use crate::error::InputError;
use crate::host::cpu::{CpuInfo, CpuVendor};
use crate::host::firmware::{self, SecureBoot};
use crate::host::kernel;
use crate::host::pci::PciAddress;
use crate::host::topology::Topology;
use crate::image_ref::ImageRef;
use crate::kargs::Kargs;
use crate::kargs_d::{self, KargsD};
use crate::pci_id::PciId;
use crate::root::Root;
use crate::vendor_reset;
use dkms_conf::{BuiltModule, DkmsConf, Word};
use kargs::{HostGpus, KargFacts, OmittedKarg};

/// Drivers forced into the initramfs so vfio-pci binds before any graphics driver.
pub(crate) const VFIO_DRIVERS: &[&str] = &["vfio", "vfio_iommu_type1", "vfio_pci"];

pub(crate) const DRACUT_CONF: &str = "/usr/lib/dracut/dracut.conf.d/50-passthru-vfio.conf";
pub(crate) const MODPROBE_CONF: &str = "/usr/lib/modprobe.d/50-passthru-vfio.conf";
pub(crate) const MODULES_LOAD_CONF: &str = "/usr/lib/modules-load.d/vendor-reset.conf";
pub(crate) const UDEV_RULE: &str = "/usr/lib/udev/rules.d/99-passthru-vendor-reset.rules";
/// The dracut module whose pre-udev hook binds `vfio.addresses` (layers/dracut/90passthru-vfio/), by the name
/// `add_dracutmodules` takes, and its files in the image.
pub(crate) const DRACUT_MODULE: &str = "passthru-vfio";
const DRACUT_MODULE_DIR: &str = "/usr/lib/dracut/modules.d/90passthru-vfio";
const DRACUT_MODULE_FILES: &[(&str, &str)] = &[
    (
        "module-setup.sh",
        include_str!("../layers/dracut/90passthru-vfio/module-setup.sh"),
    ),
    (
        "passthru-vfio-bind.sh",
        include_str!("../layers/dracut/90passthru-vfio/passthru-vfio-bind.sh"),
    ),
];
/// Where live mode writes the drop-ins: the host's /etc, as /usr is read-only there.
pub(crate) const LIVE_DRACUT_CONF: &str = "/etc/dracut.conf.d/50-passthru-vfio.conf";
pub(crate) const LIVE_MODPROBE_CONF: &str = "/etc/modprobe.d/50-passthru-vfio.conf";

/// Whom a plan is for, which decides whether a host is read.
#[derive(Debug, Clone)]
pub enum Target {
    /// The host whose filesystem is at this root (`/` on the host itself): live mode, doctor, detect, and
    /// plan/generate/build with `--root`. Its devices decide the arguments that depend on them.
    Host(Root),
    /// An image for hosts this machine cannot see (CI): the config alone decides. `cpu.vendor = "auto"` then
    /// reads this machine's CPU, with a warning.
    Image,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub(crate) cpu_vendor: CpuVendor,
    /// The vendor was read from a host (`cpu.vendor = "auto"`).
    pub(crate) cpu_vendor_detected: bool,
    /// The root of the host the plan was made for; `None` for an image planned from the config alone.
    pub(crate) host: Option<Utf8PathBuf>,
    pub image: ImagePlan,
    /// Devices vfio-pci claims at boot.
    pub(crate) vfio: VfioPlan,
    /// In the order they are written.
    pub kargs: Kargs,
    /// Arguments the guide asks for that this plan leaves out, each with its reason.
    pub(crate) omitted_kargs: Vec<OmittedKarg>,
    pub(crate) initramfs_drivers: Vec<String>,
    pub(crate) files: Vec<PlannedFile>,
    /// The files live mode writes instead of `files`.
    pub(crate) live_files: Vec<LiveFile>,
    pub(crate) kernel: Option<KernelPlan>,
    pub(crate) modules: Vec<ModulePlan>,
    /// The key the modules and the replacement kernel are signed with; `None`: nothing is signed.
    pub(crate) signing: Option<SigningPlan>,
    /// Things in the config that will work, but probably not as the user hopes.
    pub(crate) warnings: Vec<String>,
    /// What the plan decided from the host it is for, that the config alone does not say.
    pub(crate) notes: Vec<String>,
}

/// The devices vfio-pci claims, as typed facts (the kernel arguments are rendered from them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VfioPlan {
    /// Bound by vendor:device ID (`vfio_pci.ids`), each once.
    pub(crate) ids: Vec<PciId>,
    /// Bound by address (`rd.passthru.vfio_addresses`, read by the initramfs hook that sets driver_override),
    /// each once.
    pub(crate) addresses: Vec<PciAddress>,
    /// vfio-pci is loaded from the initramfs before any other driver (`rd.driver.pre=vfio-pci`).
    pub(crate) early_binding: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePlan {
    /// The base, pinned by digest when one is configured.
    pub base: ImageRef,
    pub(crate) tag: ImageRef,
}

/// Which layer of the image a file belongs to, which decides what a change to it rebuilds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Layer {
    /// Read while the initramfs is generated; host-agnostic (no device IDs).
    Initramfs,
    /// Host-specific (device IDs): the last, tiny layer.
    Host,
}

/// For people: the name `plan --json` gives it.
impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layer::Initramfs => "initramfs",
            Layer::Host => "host",
        })
    }
}

/// Read back only as a record's expectation ([`record::Expectations`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlannedFile {
    pub(crate) path: Utf8PathBuf,
    #[serde(serialize_with = "octal", deserialize_with = "from_octal")]
    pub(crate) mode: u32,
    pub(crate) layer: Layer,
    pub(crate) content: String,
}

/// A drop-in live mode writes into the host's /etc, where modprobe and rpm-ostree's initramfs regeneration read
/// it. Other planned files have no live place: kargs.d becomes `rpm-ostree kargs`, and out-of-tree modules (the
/// only source of the other files) are refused in live mode.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LiveFile {
    pub(crate) path: Utf8PathBuf,
    #[serde(serialize_with = "octal")]
    pub(crate) mode: u32,
    pub(crate) content: String,
}

fn octal<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{mode:04o}"))
}

/// `"0644"`: permission bits as [`octal`] writes them, nothing above 07777.
fn from_octal<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let text = String::deserialize(d)?;
    u32::from_str_radix(&text, 8)
        .ok()
        .filter(|mode| *mode <= 0o7777 && text.len() == 4)
        .ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not a file mode such as \"0644\""))
        })
}

/// A replacement kernel, swapped in at build time unless the image's own kernel makes it needless.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KernelPlan {
    pub(crate) purpose: &'static str,
    pub(crate) source: KernelSource,
    /// The swap is skipped when the image kernel's System.map names this symbol: the base's kernel already
    /// carries the ACS override patch (Bazzite's does), and the planned `pcie_acs_override` karg is enough.
    /// The plan is made without the base image's files, so only the build can tell.
    pub(crate) unless_symbol: &'static str,
    /// The old kernel's packages the swap removes, and nothing else.
    pub(crate) removes: OldKernelPackages,
}

/// The packages of the replaced kernel, by name: the one list the swap script receives (never kernel-tools,
/// kernel-headers or linux-headers-*-common, which share the kernel's version string on CentOS/RHEL and
/// Debian but are no part of the kernel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct OldKernelPackages {
    /// Fedora/CentOS names, removed only at the old kernel's version-release.arch. ACS builds' own names
    /// (`kernel-acs-core`) are included, so an image whose kernel came from one can be swapped again.
    pub(crate) rpm: Vec<String>,
    /// Debian names, [`KVER_PLACEHOLDER`] standing for the old kernel's release. The installed meta packages
    /// that strictly depend on them and share their name's prefix (`linux-image-amd64`) go with them.
    pub(crate) deb: Vec<String>,
}

/// Stands for the old kernel's release in [`OldKernelPackages::deb`].
pub(crate) const KVER_PLACEHOLDER: &str = "{kver}";

/// The packages an ACS-override kernel build consists of (some-natalie/fedora-acs-override), by the names of
/// the base kernel's packages it replaces; newer builds name them `kernel-acs*` ([`acs_named`]).
pub(crate) const ACS_KERNEL_PACKAGES: &[&str] = &[
    "kernel",
    "kernel-core",
    "kernel-modules",
    "kernel-modules-core",
    "kernel-modules-extra",
];

/// Fedora's other kernel packages that own files of a kernel release (kernel-modules-internal and
/// kernel-uki-virt-addons too: left behind, their modules would block the swap as foreign files).
const MORE_RPM_KERNEL_PACKAGES: &[&str] = &[
    "kernel-modules-internal",
    "kernel-uki-virt",
    "kernel-uki-virt-addons",
    "kernel-devel",
    "kernel-devel-matched",
];

/// A kernel package's name in the newer ACS-override builds: `kernel-core` is `kernel-acs-core`.
fn acs_named(name: &str) -> String {
    name.replacen("kernel", "kernel-acs", 1)
}

/// What a swap from an ACS-override repository installs, by name: the newest of each the repository offers,
/// the `kernel-acs*` names winning over the base kernel's.
pub(crate) fn acs_repository_packages() -> Vec<String> {
    let acs = ACS_KERNEL_PACKAGES.iter().map(|name| acs_named(name));
    acs.chain(ACS_KERNEL_PACKAGES.iter().map(|name| name.to_string()))
        .collect()
}

/// Debian's kernel packages are these prefixes followed by the kernel release.
const DEB_KERNEL_PACKAGE_PREFIXES: &[&str] = &["linux-image-", "linux-headers-"];

impl OldKernelPackages {
    pub(crate) fn all() -> OldKernelPackages {
        let base: Vec<&str> = [ACS_KERNEL_PACKAGES, MORE_RPM_KERNEL_PACKAGES].concat();
        let acs = base.iter().map(|name| acs_named(name));
        OldKernelPackages {
            rpm: base
                .iter()
                .map(|name| name.to_string())
                .chain(acs)
                .collect(),
            deb: DEB_KERNEL_PACKAGE_PREFIXES
                .iter()
                .map(|prefix| format!("{prefix}{KVER_PLACEHOLDER}"))
                .collect(),
        }
    }
}

/// Signing with the user's Machine Owner Key (`[signing]`): the modules in the throwaway module stage with
/// the kernel's own `sign-file`, the replacement kernel for shim with `sbsign`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SigningPlan {
    /// Checked for what shim and the kernel need; its fingerprint goes on the build steps that sign.
    pub(crate) certificate: Certificate,
    /// Where `build` reads the private key (no other command reads it): it reaches the engine only as a build
    /// secret.
    pub(crate) key: PemSource,
}

/// What a plan does about a module or a kernel it leaves unsigned (no `[signing]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnsignedCode {
    /// A plan that makes something: refused for a host that would refuse the code, a warning for an image.
    Refuse,
    /// doctor's plan: the host is checked as it is, and doctor reports what it would refuse.
    Diagnose,
}

/// How a user who is told that something will not be signed gets a key, enrolls it and names it.
const SIGNING_WAY_OUT: &str = "Make a Machine Owner Key with `passthru-image mok new DIR`, enroll \
    it on the host with `sudo mokutil --import DIR/MOK.der` (MokManager asks to confirm it at the \
    next boot), and set [signing] key = \"DIR/MOK.key\" and cert = \"DIR/MOK.pem\" in the config";

/// An out-of-tree module built against the image's own kernel, the way its dkms.conf says.
#[derive(Debug, Clone)]
pub(crate) struct ModulePlan {
    pub(crate) source: ModuleSource,
    /// Local kernel headers for an image kernel the base's repositories carry none for.
    pub(crate) headers: Option<HeaderPackages>,
    pub(crate) conf: ModuleConf,
}

/// Whether the module's dkms.conf has been read.
#[derive(Debug, Clone)]
pub(crate) enum ModuleConf {
    /// A git source `plan` does not fetch: its dkms.conf is read once `generate` or `build` fetched the commit.
    AtCommit,
    /// Read from the source tree in `dir`: the configured path, or the checkout of the pinned commit.
    Read { dir: Utf8PathBuf, conf: DkmsConf },
}

impl ModulePlan {
    /// The dkms.conf it is built by, once read.
    pub(crate) fn dkms_conf(&self) -> Option<&DkmsConf> {
        match &self.conf {
            ModuleConf::Read { conf, .. } => Some(conf),
            ModuleConf::AtCommit => None,
        }
    }

    /// The kernel modules it builds, which the image loads at boot; none known before its dkms.conf is read.
    pub(crate) fn kernel_modules(&self) -> Vec<&str> {
        self.dkms_conf()
            .map(|conf| conf.modules.iter().map(|m| m.name.as_str()).collect())
            .unwrap_or_default()
    }

    /// Its name in messages: PACKAGE_NAME once read, else the config section it comes from.
    pub(crate) fn label(&self) -> &str {
        self.dkms_conf()
            .map_or("vendor-reset", |conf| conf.name.as_str())
    }

    /// Which dkms.conf the module is built by.
    pub(crate) fn origin(&self) -> String {
        match &self.source {
            ModuleSource::Path { path } => format!("dkms.conf in {path}"),
            ModuleSource::Git { url, commit } => format!("dkms.conf at {commit} of {url}"),
        }
    }
}

/// `plan --json`: where the module comes from, and what its dkms.conf says (null until it is read).
impl Serialize for ModulePlan {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Json<'a> {
            from: String,
            source: &'a ModuleSource,
            name: Option<&'a str>,
            version: Option<&'a str>,
            kernel_modules: Option<&'a [BuiltModule]>,
            make: Option<&'a [Word]>,
            headers: &'a Option<HeaderPackages>,
        }
        let conf = self.dkms_conf();
        Json {
            from: self.origin(),
            source: &self.source,
            name: conf.map(|c| c.name.as_str()),
            version: conf.map(|c| c.version.as_str()),
            kernel_modules: conf.map(|c| c.modules.as_slice()),
            make: conf.map(|c| c.make.as_slice()),
            headers: &self.headers,
        }
        .serialize(s)
    }
}

/// Local checkouts of git module sources by URL and commit: what `image::fetch` made for this run.
#[derive(Debug, Default)]
pub(crate) struct Checkouts(Vec<(String, String, Utf8PathBuf)>);

impl Checkouts {
    pub(crate) fn add(&mut self, url: &str, commit: &str, dir: Utf8PathBuf) {
        self.0.push((url.to_owned(), commit.to_owned(), dir));
    }

    fn dir_of(&self, url: &str, commit: &str) -> Option<&Utf8Path> {
        self.0
            .iter()
            .find(|(u, c, _)| u == url && c == commit)
            .map(|(_, _, dir)| dir.as_path())
    }
}

impl Plan {
    /// The plan without fetching anything: a git module source is known by its commit alone.
    pub fn resolve(config: &Config, target: &Target) -> Result<Plan> {
        Plan::resolve_fetched(config, target, &Checkouts::default())
    }

    /// The plan with the git module sources in `checkouts` read (`generate` and `build` fetch them first).
    pub(crate) fn resolve_fetched(
        config: &Config,
        target: &Target,
        checkouts: &Checkouts,
    ) -> Result<Plan> {
        Plan::resolve_with(config, target, checkouts, UnsignedCode::Refuse)
    }

    /// The plan `doctor` checks a host against. Unsigned code the host would refuse is one of its findings
    /// (its Secure Boot and lockdown checks), not a reason to stop.
    pub(crate) fn resolve_to_diagnose(config: &Config, target: &Target) -> Result<Plan> {
        Plan::resolve_with(
            config,
            target,
            &Checkouts::default(),
            UnsignedCode::Diagnose,
        )
    }

    fn resolve_with(
        config: &Config,
        target: &Target,
        checkouts: &Checkouts,
        unsigned_code: UnsignedCode,
    ) -> Result<Plan> {
        let this_machine = Root::default();
        let cpu_root = match target {
            Target::Host(root) => root,
            Target::Image => &this_machine,
        };
        let cpu_vendor = match config.cpu.vendor {
            CpuChoice::Intel => CpuVendor::Intel,
            CpuChoice::Amd => CpuVendor::Amd,
            CpuChoice::Auto => CpuInfo::read(cpu_root)?.require_vendor(cpu_root)?,
        };
        let modules = plan_modules(config, checkouts)?;
        let mut notes = Vec::new();
        let kernel = match config.acs_override.enabled {
            true if host_kernel_has_acs_override(target)? => {
                notes.push(format!(
                    "the host's kernel already carries the ACS override patch ({} in \
                     /proc/kallsyms): pcie_acs_override is planned, no kernel is replaced",
                    kernel::ACS_OVERRIDE_SYMBOL
                ));
                None
            }
            true => Some(KernelPlan {
                purpose: "acs-override",
                source: config.kernel_source()?,
                unless_symbol: kernel::ACS_OVERRIDE_SYMBOL,
                removes: OldKernelPackages::all(),
            }),
            false => None,
        };
        let signing = plan_signing(config, kernel.as_ref())?;
        let unsigned_warning = match (&signing, unsigned_code) {
            (None, UnsignedCode::Refuse) => check_unsigned(target, &modules, kernel.as_ref())?,
            _ => None,
        };
        let vfio = VfioPlan {
            ids: first_of_each(&config.vfio.ids),
            addresses: first_of_each(&config.vfio.addresses),
            early_binding: config.vfio.early_binding,
        };
        // The host's devices are read only when something depends on them: an argument, or the devices the
        // plan takes, which must not be what the host needs (checked before anything is written).
        let nouveau_decides = config.gpu.vendors.contains(&GpuVendor::Nvidia)
            && config.gpu.disable_nouveau == crate::config::Switch::Auto;
        let taken = host_safety::Taken {
            ids: &vfio.ids,
            addresses: &vfio.addresses,
        };
        let topology = match target {
            Target::Host(root) if nouveau_decides || !taken.is_empty() => {
                Some(Topology::read(root)?)
            }
            _ => None,
        };
        let host_warnings = match target {
            Target::Host(root) => {
                host_safety::check(root, topology.as_ref(), &taken, &config.accept_risk)?
            }
            Target::Image => Vec::new(),
        };
        let host_gpus = topology
            .as_ref()
            .filter(|_| nouveau_decides)
            .map(|t| host_gpus(t, &vfio));
        let planned = kargs::plan_kargs(&KargFacts {
            config,
            cpu: cpu_vendor,
            vfio_ids: &vfio.ids,
            vfio_addresses: &vfio.addresses,
            host: host_gpus.as_ref(),
        })?;
        let kargs = planned.kargs;

        let mut files = vec![PlannedFile {
            path: DRACUT_CONF.into(),
            mode: 0o644,
            layer: Layer::Initramfs,
            content: dracut_conf(DracutModule::Added, None),
        }];
        files.extend(dracut_module_files());
        if let Some(content) = modprobe_conf(&config.gpu.vendors) {
            files.push(PlannedFile {
                path: MODPROBE_CONF.into(),
                mode: 0o644,
                layer: Layer::Initramfs,
                content,
            });
        }
        let names: Vec<&str> = modules.iter().flat_map(|m| m.kernel_modules()).collect();
        if !names.is_empty() {
            files.push(PlannedFile {
                path: MODULES_LOAD_CONF.into(),
                mode: 0o644,
                layer: Layer::Initramfs,
                content: format!(
                    "# Generated by passthru-image: load vendor-reset before any VM starts.\n{}\n",
                    names.join("\n")
                ),
            });
            let reset_ids: Vec<PciId> = vfio
                .ids
                .iter()
                .copied()
                .filter(|id| vendor_reset::needs_vendor_reset(*id))
                .collect();
            if !reset_ids.is_empty() {
                files.push(PlannedFile {
                    path: UDEV_RULE.into(),
                    mode: 0o644,
                    layer: Layer::Host,
                    content: udev_rule(&reset_ids, &names),
                });
            }
        }
        files.push(PlannedFile {
            path: Utf8PathBuf::from(kargs_d::DIR).join(kargs_d::FILE_NAME),
            mode: 0o644,
            layer: Layer::Host,
            content: KargsD::for_x86_64(&kargs).render(),
        });
        files.push(record::config_file(config)?);

        let base = match &config.image.digest {
            Some(digest) => config.image.base.pinned(digest),
            None => config.image.base.clone(),
        };
        let live_files = live_files(&files);
        let mut warnings = config_warnings(config);
        warnings.extend(planned.warnings);
        warnings.extend(host_warnings);
        warnings.extend(unsigned_warning);
        let mut plan = Plan {
            cpu_vendor,
            cpu_vendor_detected: config.cpu.vendor == CpuChoice::Auto,
            host: match target {
                Target::Host(root) => Some(root.path().to_owned()),
                Target::Image => None,
            },
            image: ImagePlan {
                base,
                tag: config.image.tag.clone(),
            },
            vfio,
            kargs,
            omitted_kargs: planned.omitted,
            initramfs_drivers: VFIO_DRIVERS.iter().map(|d| d.to_string()).collect(),
            files,
            live_files,
            kernel,
            modules,
            signing,
            warnings,
            notes,
        };
        // Last: the record holds the plan with every other file.
        let recorded = record::plan_file(&plan);
        plan.files.push(recorded);
        Ok(plan)
    }

    /// The plan's warnings, and one more when the CPU vendor of an image came from the build machine, not from
    /// the config.
    pub(crate) fn image_mode_warnings(&self) -> Vec<String> {
        let cpu = (self.cpu_vendor_detected && self.host.is_none()).then(|| {
            format!(
                "cpu.vendor = \"auto\" read this machine's CPU ({}); the image gets its kernel \
                 arguments. Set cpu.vendor (or --cpu) when the image is for a host with another \
                 CPU",
                self.cpu_vendor.as_str()
            )
        });
        self.warnings.iter().cloned().chain(cpu).collect()
    }

    pub(crate) fn files_in(&self, layer: Layer) -> impl Iterator<Item = &PlannedFile> {
        self.files.iter().filter(move |f| f.layer == layer)
    }

    /// Whether the build signs anything: `[signing]` with a module to build or a kernel to replace.
    pub(crate) fn signs(&self) -> bool {
        self.signing.is_some() && (!self.modules.is_empty() || self.kernel.is_some())
    }
}

/// `[signing]` read and checked: a kernel that will be signed needs a certificate shim accepts for it.
fn plan_signing(config: &Config, kernel: Option<&KernelPlan>) -> Result<Option<SigningPlan>> {
    let Some(signing) = &config.signing else {
        return Ok(None);
    };
    let certificate = Certificate::read(signing)?;
    if kernel.is_some() {
        certificate.check_signs_kernels()?;
    }
    Ok(Some(SigningPlan {
        certificate,
        key: signing.key_source(),
    }))
}

/// Without `[signing]`, the modules and kernel stay unsigned. A host with Secure Boot on (or its kernel locked
/// down) would refuse them: a plan for such a host is refused. A plan for an image, whose hosts this machine
/// cannot see, gets a warning instead.
fn check_unsigned(
    target: &Target,
    modules: &[ModulePlan],
    kernel: Option<&KernelPlan>,
) -> Result<Option<String>> {
    if modules.is_empty() && kernel.is_none() {
        return Ok(None);
    }
    let modules_text = match modules.is_empty() {
        true => None,
        false => {
            let names: Vec<&str> = modules.iter().map(ModulePlan::label).collect();
            Some(format!("the {} module", names.join(" and ")))
        }
    };
    match target {
        Target::Image => Ok(Some(unsigned_image_warning(
            modules_text.as_deref(),
            kernel.is_some(),
        ))),
        Target::Host(root) => {
            refuse_on_secure_boot(root, modules_text.as_deref(), kernel.is_some())?;
            Ok(None)
        }
    }
}

fn unsigned_image_warning(modules: Option<&str>, kernel: bool) -> String {
    let unsigned = match (modules, kernel) {
        (Some(modules), true) => format!("{modules} and the ACS-override kernel are"),
        (Some(modules), false) => format!("{modules} is"),
        (None, _) => "the ACS-override kernel is".to_owned(),
    };
    format!(
        "[signing] is not set: {unsigned} built unsigned, and a host booted with Secure Boot \
         refuses unsigned modules and kernels. {SIGNING_WAY_OUT}"
    )
}

/// Exit 2 when the host would not load the unsigned `modules` or boot the unsigned kernel.
fn refuse_on_secure_boot(root: &Root, modules: Option<&str>, kernel: bool) -> Result<()> {
    let secure_boot = firmware::secure_boot(root)? == SecureBoot::On;
    let lockdown = firmware::lockdown(root)?.filter(|mode| mode != "none");
    let mut refused = Vec::new();
    if let Some(modules) = modules
        && (secure_boot || lockdown.is_some())
    {
        refused.push(format!(
            "its kernel loads only signed modules, so {modules} would not load"
        ));
    }
    if kernel && secure_boot {
        refused.push(
            "shim boots only a signed kernel, so the ACS-override kernel would not boot".to_owned(),
        );
    }
    if refused.is_empty() {
        return Ok(());
    }
    let why: Vec<String> = [
        secure_boot.then(|| "Secure Boot is on".to_owned()),
        lockdown.map(|mode| format!("its kernel is locked down ({mode})")),
    ]
    .into_iter()
    .flatten()
    .collect();
    Err(InputError::new(
        "signing",
        format!(
            "not set, but on {} {}: {}. {SIGNING_WAY_OUT}",
            root.host_name(),
            why.join(" and "),
            refused.join("; ")
        ),
    )
    .into())
}

/// Whether the kernel of the host a plan is for already carries the ACS override patch (Bazzite's does): then
/// only the kernel argument is planned. An image plan cannot tell; its build checks the base's System.map.
fn host_kernel_has_acs_override(target: &Target) -> Result<bool> {
    match target {
        Target::Host(root) => kernel::has_acs_override(root),
        Target::Image => Ok(false),
    }
}

/// What the host tells about its GPUs that the kernel arguments depend on.
fn host_gpus(topology: &Topology, vfio: &VfioPlan) -> HostGpus {
    HostGpus {
        kept_on_nouveau: topology
            .gpus()
            .filter(|gpu| !vfio.ids.contains(&gpu.id) && !vfio.addresses.contains(&gpu.address))
            .filter(|gpu| gpu.driver.as_deref() == Some("nouveau"))
            .map(|gpu| gpu.address)
            .collect(),
    }
}

/// The arguments that turn the IOMMU on in passthrough mode for a CPU vendor, for messages that tell a user
/// how to boot.
pub(crate) fn iommu_kargs(cpu: CpuVendor) -> &'static [&'static str] {
    match cpu {
        CpuVendor::Intel => &["intel_iommu=on", "iommu=pt"],
        CpuVendor::Amd => &["iommu=pt"],
    }
}

/// The items in their first-seen order, each once.
fn first_of_each<T: Eq + std::hash::Hash + Copy>(items: &[T]) -> Vec<T> {
    let mut seen = std::collections::HashSet::new();
    items
        .iter()
        .copied()
        .filter(|item| seen.insert(*item))
        .collect()
}

/// Whether the initramfs gets passthru-image's dracut module (the hook that binds by address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DracutModule {
    /// Image mode: the module is installed in the same layer, always, so the initramfs does not depend on
    /// whether any address is configured.
    Added,
    /// Live mode: /usr/lib/dracut/modules.d is read-only on the host, so there is no module to add (and
    /// addresses are refused there).
    Absent,
}

/// `modprobe_in_etc`: the live modprobe drop-in, which the initramfs must carry itself. rpm-ostree regenerates
/// with `--no-hostonly`, and dracut copies /etc/modprobe.d only in host-only mode (its 90kernel-modules
/// copies /usr/lib/modprobe.d always), so the file is named in `install_items`.
fn dracut_conf(module: DracutModule, modprobe_in_etc: Option<&str>) -> String {
    let drivers = VFIO_DRIVERS.join(" ");
    let install = modprobe_in_etc
        .map(|path| format!("install_items+=\" {path} \"\n"))
        .unwrap_or_default();
    let add = match module {
        DracutModule::Added => format!(
            "# Its hook binds the devices of rd.passthru.vfio_addresses= by address, before udev \
             starts.\nadd_dracutmodules+=\" {DRACUT_MODULE} \"\n"
        ),
        DracutModule::Absent => String::new(),
    };
    format!(
        "# Generated by passthru-image: VFIO drivers in the initramfs, so vfio-pci claims the \
         passed-through\n# devices before any graphics driver does. Device IDs and addresses stay \
         in the kernel arguments.\nforce_drivers+=\" {drivers} \"\n{add}{install}"
    )
}

/// The dracut module of layers/dracut/, installed where dracut looks for modules.
fn dracut_module_files() -> impl Iterator<Item = PlannedFile> {
    DRACUT_MODULE_FILES
        .iter()
        .map(|(name, content)| PlannedFile {
            path: Utf8PathBuf::from(DRACUT_MODULE_DIR).join(name),
            mode: 0o755,
            layer: Layer::Initramfs,
            content: (*content).to_owned(),
        })
}

/// The drop-ins of `files` as live mode writes them into /etc.
fn live_files(files: &[PlannedFile]) -> Vec<LiveFile> {
    let has_modprobe = files.iter().any(|f| f.path == MODPROBE_CONF);
    let mut live = vec![LiveFile {
        path: LIVE_DRACUT_CONF.into(),
        mode: 0o644,
        content: dracut_conf(
            DracutModule::Absent,
            has_modprobe.then_some(LIVE_MODPROBE_CONF),
        ),
    }];
    live.extend(
        files
            .iter()
            .filter(|f| f.path == MODPROBE_CONF)
            .map(|f| LiveFile {
                path: LIVE_MODPROBE_CONF.into(),
                mode: f.mode,
                content: f.content.clone(),
            }),
    );
    live
}

/// Makes the host GPU drivers wait for vfio-pci, so it wins the race for the passed-through devices.
fn modprobe_conf(vendors: &[GpuVendor]) -> Option<String> {
    let mut vendors = vendors.to_vec();
    vendors.sort();
    vendors.dedup();
    let mut drivers: Vec<&str> = Vec::new();
    for vendor in vendors {
        drivers.extend(match vendor {
            GpuVendor::Nvidia => ["nvidia", "nouveau"],
            GpuVendor::Amd => ["amdgpu", "radeon"],
            GpuVendor::Intel => ["i915", "xe"],
        });
    }
    if drivers.is_empty() {
        return None;
    }
    let lines: String = drivers
        .iter()
        .map(|d| format!("softdep {d} pre: vfio-pci\n"))
        .collect();
    Some(format!(
        "# Generated by passthru-image: load vfio-pci before the GPU drivers.\n{lines}"
    ))
}

/// On kernels >= 5.15 vendor-reset only acts when the device's reset method is `device_specific`, and the
/// kernel takes that method only once the module is loaded: the rule loads `modules` first, as upstream's own
/// rule does. udev runs a rule's match keys (PROGRAM) before its assignments (ATTR{}=), whatever their order
/// on the line (systemd's udev-rules.c sorts the tokens of each rule by type).
fn udev_rule(ids: &[PciId], modules: &[&str]) -> String {
    let mut rule = String::from(
        "# Generated by passthru-image: load vendor-reset and let it reset these GPUs.\n",
    );
    for id in ids {
        rule.push_str(&format!(
            "ACTION==\"add\", SUBSYSTEM==\"pci\", ATTR{{vendor}}==\"0x{:04x}\", \
             ATTR{{device}}==\"0x{:04x}\", PROGRAM=\"/sbin/modprobe -a {}\", \
             ATTR{{reset_method}}=\"device_specific\"\n",
            id.vendor,
            id.device,
            modules.join(" ")
        ));
    }
    rule
}

fn config_warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    if config.vendor_reset.enabled == crate::config::Switch::Off {
        let mut ids = config.vfio.ids.clone();
        ids.sort();
        ids.dedup();
        for id in ids {
            if let Some(family) = vendor_reset::family(id) {
                warnings.push(format!(
                    "vfio.ids: {id} is an AMD {family} GPU, which cannot reset itself between VM \
                     starts; with vendor-reset.enabled = false the second start of the VM usually \
                     fails (set it to \"auto\")"
                ));
            }
        }
    }
    warnings
}

fn plan_modules(config: &Config, checkouts: &Checkouts) -> Result<Vec<ModulePlan>> {
    use crate::config::Switch;
    let wanted = match config.vendor_reset.enabled {
        Switch::On => true,
        Switch::Off => false,
        Switch::Auto => config
            .vfio
            .ids
            .iter()
            .any(|id| vendor_reset::needs_vendor_reset(*id)),
    };
    if !wanted {
        return Ok(Vec::new());
    }
    let source = config.vendor_reset_source()?;
    let (tree, field) = match &source {
        ModuleSource::Path { path } => (Some(path.clone()), "vendor-reset.path"),
        ModuleSource::Git { url, commit } => (
            checkouts.dir_of(url, commit).map(Utf8Path::to_owned),
            "vendor-reset.git",
        ),
    };
    let mut module = ModulePlan {
        headers: config.vendor_reset_headers()?,
        conf: ModuleConf::AtCommit,
        source,
    };
    if let Some(dir) = tree {
        let conf = dkms_conf::read(&dir, &module.origin())
            .map_err(|message| InputError::new(field, message))?;
        module.conf = ModuleConf::Read { dir, conf };
    }
    Ok(vec![module])
}

#[cfg(test)]
mod tests;
