//! Config + host facts -> [`Plan`], the single source of truth for every executor.
//!
//! The image renderer, the live applier and doctor all read a `Plan`; none of them decides a karg, a driver
//! or a file of its own.

mod dkms_conf;
pub(crate) mod host_safety;
pub(crate) mod kargs;

use anyhow::Result;
use camino::Utf8PathBuf;
use serde::{Serialize, Serializer};

use crate::config::{Config, CpuChoice, GpuVendor, KernelSource, ModuleSource};
use crate::error::InputError;
use crate::host::cpu::{CpuInfo, CpuVendor};
use crate::host::topology::Topology;
use crate::image_ref::ImageRef;
use crate::kargs::Kargs;
use crate::kargs_d::{self, KargsD};
use crate::pci_id::PciId;
use crate::root::Root;
use crate::vendor_reset;
use kargs::{HostGpus, KargFacts, OmittedKarg};

/// Drivers forced into the initramfs so vfio-pci binds before any graphics driver.
pub const VFIO_DRIVERS: &[&str] = &["vfio", "vfio_iommu_type1", "vfio_pci"];

pub const DRACUT_CONF: &str = "/usr/lib/dracut/dracut.conf.d/50-passthru-vfio.conf";
pub const MODPROBE_CONF: &str = "/usr/lib/modprobe.d/50-passthru-vfio.conf";
pub const MODULES_LOAD_CONF: &str = "/usr/lib/modules-load.d/vendor-reset.conf";
pub const UDEV_RULE: &str = "/usr/lib/udev/rules.d/99-passthru-vendor-reset.rules";
/// Where live mode writes the drop-ins: the host's /etc, as /usr is read-only there.
pub const LIVE_DRACUT_CONF: &str = "/etc/dracut.conf.d/50-passthru-vfio.conf";
pub const LIVE_MODPROBE_CONF: &str = "/etc/modprobe.d/50-passthru-vfio.conf";

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
    pub cpu_vendor: CpuVendor,
    /// The vendor was read from a host (`cpu.vendor = "auto"`).
    pub cpu_vendor_detected: bool,
    /// The root of the host the plan was made for; `None` for an image planned from the config alone.
    pub host: Option<Utf8PathBuf>,
    pub image: ImagePlan,
    /// Devices vfio-pci claims at boot.
    pub vfio: VfioPlan,
    /// In the order they are written.
    pub kargs: Kargs,
    /// Arguments the guide asks for that this plan leaves out, each with its reason.
    pub omitted_kargs: Vec<OmittedKarg>,
    pub initramfs_drivers: Vec<String>,
    pub files: Vec<PlannedFile>,
    /// The files live mode writes instead of `files`.
    pub live_files: Vec<LiveFile>,
    pub kernel: Option<KernelPlan>,
    pub modules: Vec<ModulePlan>,
    /// Things in the config that will work, but probably not as the user hopes.
    pub warnings: Vec<String>,
}

/// The devices vfio-pci claims, as typed facts (the kernel arguments are rendered from them).
#[derive(Debug, Clone, Serialize)]
pub struct VfioPlan {
    /// Bound by vendor:device ID (`vfio_pci.ids`), each once.
    pub ids: Vec<PciId>,
    /// vfio-pci is loaded from the initramfs before any other driver (`rd.driver.pre=vfio-pci`).
    pub early_binding: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImagePlan {
    /// The base, pinned by digest when one is configured.
    pub base: ImageRef,
    pub tag: ImageRef,
}

/// Which layer of the image a file belongs to, which decides what a change to it rebuilds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// Read while the initramfs is generated; host-agnostic (no device IDs).
    Initramfs,
    /// Host-specific (device IDs): the last, tiny layer.
    Host,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedFile {
    pub path: Utf8PathBuf,
    #[serde(serialize_with = "octal")]
    pub mode: u32,
    pub layer: Layer,
    pub content: String,
}

/// A drop-in live mode writes into the host's /etc, where modprobe and rpm-ostree's initramfs regeneration read
/// it. Other planned files have no live place: kargs.d becomes `rpm-ostree kargs`, and out-of-tree modules (the
/// only source of the other files) are refused in live mode.
#[derive(Debug, Clone, Serialize)]
pub struct LiveFile {
    pub path: Utf8PathBuf,
    #[serde(serialize_with = "octal")]
    pub mode: u32,
    pub content: String,
}

fn octal<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{mode:04o}"))
}

#[derive(Debug, Clone, Serialize)]
pub struct KernelPlan {
    pub purpose: &'static str,
    pub source: KernelSource,
}

/// An out-of-tree module built with dkms against the image's own kernel.
#[derive(Debug, Clone, Serialize)]
pub struct ModulePlan {
    /// dkms PACKAGE_NAME and PACKAGE_VERSION.
    pub name: String,
    pub version: String,
    /// The kernel modules it builds (BUILT_MODULE_NAME), loaded at boot.
    pub kernel_modules: Vec<String>,
    pub source: ModuleSource,
}

impl Plan {
    pub fn resolve(config: &Config, target: &Target) -> Result<Plan> {
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
        let modules = plan_modules(config)?;
        let kernel = match config.acs_override.enabled {
            true => Some(KernelPlan {
                purpose: "acs-override",
                source: config.kernel_source()?,
            }),
            false => None,
        };
        let vfio = VfioPlan {
            ids: first_of_each(&config.vfio.ids),
            early_binding: config.vfio.early_binding,
        };
        // The host's devices are read only when something depends on them: an argument, or the devices the
        // plan takes, which must not be what the host needs (checked before anything is written).
        let nouveau_decides = config.gpu.vendors.contains(&GpuVendor::Nvidia)
            && config.gpu.disable_nouveau == crate::config::Switch::Auto;
        let taken = host_safety::Taken {
            ids: &vfio.ids,
            addresses: &[],
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
            host: host_gpus.as_ref(),
        })?;
        let kargs = planned.kargs;

        let mut files = vec![PlannedFile {
            path: DRACUT_CONF.into(),
            mode: 0o644,
            layer: Layer::Initramfs,
            content: dracut_conf(None),
        }];
        if let Some(content) = modprobe_conf(&config.gpu.vendors) {
            files.push(PlannedFile {
                path: MODPROBE_CONF.into(),
                mode: 0o644,
                layer: Layer::Initramfs,
                content,
            });
        }
        if !modules.is_empty() {
            let names: Vec<&str> = modules
                .iter()
                .flat_map(|m| m.kernel_modules.iter().map(String::as_str))
                .collect();
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
                    content: udev_rule(&reset_ids),
                });
            }
        }
        files.push(PlannedFile {
            path: Utf8PathBuf::from(kargs_d::DIR).join(kargs_d::FILE_NAME),
            mode: 0o644,
            layer: Layer::Host,
            content: KargsD::for_x86_64(&kargs).render(),
        });

        let base = match &config.image.digest {
            Some(digest) => config.image.base.pinned(digest),
            None => config.image.base.clone(),
        };
        let live_files = live_files(&files);
        let mut warnings = config_warnings(config);
        warnings.extend(planned.warnings);
        warnings.extend(host_warnings);
        Ok(Plan {
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
            warnings,
        })
    }

    /// The plan's warnings, and one more when the CPU vendor of an image came from the build machine, not from
    /// the config.
    pub fn image_mode_warnings(&self) -> Vec<String> {
        let cpu = (self.cpu_vendor_detected && self.host.is_none()).then(|| {
            format!(
                "cpu.vendor = \"auto\" read this machine's CPU ({}); the image gets its kernel arguments. \
                 Set cpu.vendor (or --cpu) when the image is for a host with another CPU",
                self.cpu_vendor.as_str()
            )
        });
        self.warnings.iter().cloned().chain(cpu).collect()
    }

    pub fn files_in(&self, layer: Layer) -> impl Iterator<Item = &PlannedFile> {
        self.files.iter().filter(move |f| f.layer == layer)
    }
}

/// What the host tells about its GPUs that the kernel arguments depend on.
fn host_gpus(topology: &Topology, vfio: &VfioPlan) -> HostGpus {
    HostGpus {
        kept_on_nouveau: topology
            .gpus()
            .filter(|gpu| !vfio.ids.contains(&gpu.id))
            .filter(|gpu| gpu.driver.as_deref() == Some("nouveau"))
            .map(|gpu| gpu.address)
            .collect(),
    }
}

/// The arguments that turn the IOMMU on in passthrough mode for a CPU vendor, for messages that tell a user
/// how to boot.
pub fn iommu_kargs(cpu: CpuVendor) -> &'static [&'static str] {
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

/// `modprobe_in_etc`: the live modprobe drop-in, which the initramfs must carry itself. rpm-ostree regenerates
/// with `--no-hostonly`, and dracut copies /etc/modprobe.d only in host-only mode (its 90kernel-modules
/// copies /usr/lib/modprobe.d always), so the file is named in `install_items`.
fn dracut_conf(modprobe_in_etc: Option<&str>) -> String {
    let drivers = VFIO_DRIVERS.join(" ");
    let install = modprobe_in_etc
        .map(|path| format!("install_items+=\" {path} \"\n"))
        .unwrap_or_default();
    format!(
        "# Generated by passthru-image: VFIO drivers in the initramfs, so vfio-pci claims the passed-through\n\
         # devices before any graphics driver does. Device IDs stay in the kernel arguments.\n\
         force_drivers+=\" {drivers} \"\n{install}"
    )
}

/// The drop-ins of `files` as live mode writes them into /etc.
fn live_files(files: &[PlannedFile]) -> Vec<LiveFile> {
    let has_modprobe = files.iter().any(|f| f.path == MODPROBE_CONF);
    let mut live = vec![LiveFile {
        path: LIVE_DRACUT_CONF.into(),
        mode: 0o644,
        content: dracut_conf(has_modprobe.then_some(LIVE_MODPROBE_CONF)),
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

/// On kernels >= 5.15 vendor-reset only acts when the device's reset method is `device_specific`.
fn udev_rule(ids: &[PciId]) -> String {
    let mut rule =
        String::from("# Generated by passthru-image: let vendor-reset reset these GPUs.\n");
    for id in ids {
        rule.push_str(&format!(
            "ACTION==\"add\", SUBSYSTEM==\"pci\", ATTR{{vendor}}==\"0x{:04x}\", ATTR{{device}}==\"0x{:04x}\", ATTR{{reset_method}}=\"device_specific\"\n",
            id.vendor, id.device
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
                    "vfio.ids: {id} is an AMD {family} GPU, which cannot reset itself between VM starts; \
                     with vendor-reset.enabled = false the second start of the VM usually fails (set it to \
                     \"auto\")"
                ));
            }
        }
    }
    warnings
}

fn plan_modules(config: &Config) -> Result<Vec<ModulePlan>> {
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
    let module = match &source {
        ModuleSource::Git { .. } => ModulePlan {
            name: "vendor-reset".into(),
            version: "0.1.1".into(),
            kernel_modules: vec!["vendor-reset".into()],
            source,
        },
        ModuleSource::Path { path } => {
            let conf = dkms_conf::read(path)
                .map_err(|message| InputError::new("vendor-reset.path", message))?;
            ModulePlan {
                name: conf.name,
                version: conf.version,
                kernel_modules: conf.modules,
                source,
            }
        }
    };
    Ok(vec![module])
}

#[cfg(test)]
mod tests;
