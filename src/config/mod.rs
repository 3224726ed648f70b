//! `passthru.toml`: the schema, its defaults, loading and validation.
//!
//! The serde structs are the schema. `deny_unknown_fields` everywhere: a typo is an error, not a silently
//! ignored key. Values that later land in a Containerfile, a TOML file or a command line are parsed into
//! checked types here ([`PciId`], [`PciAddress`], [`ImageRef`], [`Karg`]), so the rest of the tool never sees raw strings.

pub(crate) mod signing;
pub(crate) mod sources;

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::InputError;
use crate::host::pci::PciAddress;
use crate::image_ref::{Digest, ImageRef};
use crate::kargs::Karg;
use crate::pci_id::PciId;
use crate::root::UserFile;

pub(crate) use signing::SigningConfig;
pub(crate) use sources::{AcsMode, HeaderPackages, KernelSource, ModuleSource};

/// The config read from the working directory when no `--config` is given.
pub(crate) const DEFAULT_FILE: &str = "passthru.toml";

/// Most `id:` entries the ACS-override patch accepts in `pcie_acs_override`.
pub(crate) const MAX_ACS_IDS: usize = 15;

/// `Default` is what every omitted key means; a test holds it equal to default.toml, the
/// documented reference.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Config {
    pub(crate) image: ImageConfig,
    pub(crate) cpu: CpuConfig,
    pub(crate) vfio: VfioConfig,
    pub(crate) gpu: GpuConfig,
    pub kargs: KargsConfig,
    pub(crate) vendor_reset: VendorResetConfig,
    pub(crate) acs_override: AcsOverrideConfig,
    pub(crate) accept_risk: AcceptRiskConfig,
    /// The Machine Owner Key that signs modules and a replacement kernel; nothing is signed without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) signing: Option<SigningConfig>,
}

/// Risks a plan made for a host may take only when the config accepts them, one switch per risk: without it
/// the plan is refused before anything is written (see `plan::host_safety`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub(crate) struct AcceptRiskConfig {
    /// Take the boot GPU although no other display device remains to the host (single-GPU passthrough).
    pub(crate) boot_gpu: bool,
    /// Take every device of an ID that devices in more than one slot carry (identical twins).
    pub(crate) identical_devices: bool,
    /// Take the controller of the disk that holds the root filesystem.
    pub(crate) root_disk_controller: bool,
    /// Take a USB controller with the keyboard or mouse behind it, or the host's only one.
    pub(crate) host_usb_controller: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct ImageConfig {
    #[serde(default = "default_base")]
    pub(crate) base: ImageRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) digest: Option<Digest>,
    #[serde(default = "default_tag")]
    pub(crate) tag: ImageRef,
}

fn default_base() -> ImageRef {
    "quay.io/fedora/fedora-bootc:44"
        .parse()
        .expect("valid reference")
}

fn default_tag() -> ImageRef {
    "localhost/passthru-image:latest"
        .parse()
        .expect("valid reference")
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            base: default_base(),
            digest: None,
            tag: default_tag(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CpuChoice {
    Intel,
    Amd,
    /// Read the vendor from /proc/cpuinfo under --root.
    Auto,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub(crate) struct CpuConfig {
    pub(crate) vendor: CpuChoice,
    pub(crate) npt: bool,
    pub(crate) avic: bool,
    pub(crate) nested: bool,
    pub(crate) sev: bool,
    pub(crate) ignore_msrs: bool,
}

impl Default for CpuConfig {
    fn default() -> Self {
        CpuConfig {
            vendor: CpuChoice::Auto,
            npt: true,
            avic: true,
            nested: true,
            sev: true,
            ignore_msrs: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub(crate) struct VfioConfig {
    pub(crate) ids: Vec<PciId>,
    /// Functions bound by address (`driver_override`), for devices whose ID a device the host keeps also has.
    /// Written `0000:02:00.0` or `02:00.0`; kept in the kernel's form.
    pub(crate) addresses: Vec<PciAddress>,
    pub(crate) early_binding: bool,
}

impl Default for VfioConfig {
    fn default() -> Self {
        VfioConfig {
            ids: Vec::new(),
            addresses: Vec::new(),
            early_binding: true,
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum GpuVendor {
    Nvidia,
    Amd,
    Intel,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub(crate) struct GpuConfig {
    pub(crate) vendors: Vec<GpuVendor>,
    /// `video=vesafb:off video=efifb:off video=simplefb:off`, for kernels before 6.0 (see plan/kargs.rs).
    pub(crate) disable_boot_framebuffers: bool,
    /// `initcall_blacklist=sysfb_init`: no firmware framebuffer at all, the host's firmware console included.
    pub(crate) disable_sysfb: bool,
    /// `nouveau.modeset=0`; "auto": when the host keeps no GPU on nouveau.
    pub(crate) disable_nouveau: Switch,
    /// `amdgpu.aspm=0`, for the GPUs the host drives itself.
    pub(crate) disable_amdgpu_aspm: bool,
}

impl Default for GpuConfig {
    fn default() -> Self {
        GpuConfig {
            vendors: Vec::new(),
            disable_boot_framebuffers: false,
            disable_sysfb: false,
            disable_nouveau: Switch::Auto,
            disable_amdgpu_aspm: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct KargsConfig {
    pub extra: Vec<ExtraKarg>,
}

/// A user-supplied karg, validated while the config is read so the error names its place in the file.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ExtraKarg(#[serde(serialize_with = "serialize_karg")] pub Karg);

fn serialize_karg<S: serde::Serializer>(karg: &Karg, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(karg.as_str())
}

impl<'de> Deserialize<'de> for ExtraKarg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Karg::parse(&text)
            .map(ExtraKarg)
            .map_err(serde::de::Error::custom)
    }
}

/// `true`, `false` or `"auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Switch {
    On,
    Off,
    Auto,
}

impl Serialize for Switch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Switch::On => s.serialize_bool(true),
            Switch::Off => s.serialize_bool(false),
            Switch::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for Switch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected true, false or \"auto\""))?
        {
            Raw::Bool(true) => Ok(Switch::On),
            Raw::Bool(false) => Ok(Switch::Off),
            Raw::Text(t) if t == "auto" => Ok(Switch::Auto),
            Raw::Text(t) => Err(serde::de::Error::custom(format!(
                "{t:?}: expected true, false or \"auto\""
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct VendorResetConfig {
    #[serde(default = "auto")]
    pub(crate) enabled: Switch,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) git: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<Utf8PathBuf>,
    /// Kernel headers as local .rpm/.deb files, for an image kernel whose headers the base's repositories
    /// no longer carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) headers: Option<Utf8PathBuf>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub(crate) headers_sha256: std::collections::BTreeMap<String, String>,
}

fn auto() -> Switch {
    Switch::Auto
}

impl Default for VendorResetConfig {
    fn default() -> Self {
        VendorResetConfig {
            enabled: Switch::Auto,
            git: None,
            commit: None,
            path: None,
            headers: None,
            headers_sha256: Default::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct AcsOverrideConfig {
    #[serde(default)]
    pub(crate) enabled: bool,
    #[serde(default = "default_acs_mode")]
    pub(crate) mode: Vec<AcsMode>,
    #[serde(default)]
    pub(crate) ids: Vec<PciId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) packages: Option<Utf8PathBuf>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub(crate) sha256: std::collections::BTreeMap<String, String>,
}

fn default_acs_mode() -> Vec<AcsMode> {
    vec![AcsMode::Downstream, AcsMode::Multifunction]
}

impl Default for AcsOverrideConfig {
    fn default() -> Self {
        AcsOverrideConfig {
            enabled: false,
            mode: default_acs_mode(),
            ids: Vec::new(),
            repo: None,
            packages: None,
            sha256: Default::default(),
        }
    }
}

/// The `--config` value that reads the config from standard input.
pub(crate) const STDIN: &str = "-";

/// How messages name a config read from standard input. It has no directory, so relative paths in it stay
/// relative to the current directory (see [`Config::from_toml`]).
pub(crate) const STDIN_ORIGIN: &str = "standard input";

/// Where the config came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConfigSource {
    File(Utf8PathBuf),
    /// `--config -`.
    Stdin,
    Embedded,
}

impl std::fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigSource::File(path) => write!(f, "{path}"),
            ConfigSource::Stdin => f.write_str(STDIN_ORIGIN),
            ConfigSource::Embedded => f.write_str("the embedded default config"),
        }
    }
}

/// A config the user named, and the option or variable that named it (`--config`, `PASSTHRU_CONFIG`), for
/// messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConfigFile<'a> {
    pub(crate) path: &'a Utf8Path,
    pub(crate) field: &'a str,
}

impl ConfigFile<'_> {
    /// Its text and how messages name it: `-` is standard input, anything else a file.
    pub(crate) fn read(self) -> Result<(String, ConfigSource), InputError> {
        match self.path.as_str() {
            STDIN => Ok((
                crate::root::read_user_stdin(UserFile::Config, self.field)?,
                ConfigSource::Stdin,
            )),
            _ => Ok((
                crate::root::read_user_text(self.path, UserFile::Config, self.field)?,
                ConfigSource::File(self.path.to_owned()),
            )),
        }
    }
}

impl Config {
    /// Loads `--config FILE` (`-`: standard input), else `./passthru.toml` when present, else the embedded
    /// default. A `./passthru.toml` that is there in any form (a directory, a FIFO, a dangling link) is the
    /// user's config and must read as one: it is never passed over for the embedded default.
    pub(crate) fn load(explicit: Option<ConfigFile>) -> Result<(Config, ConfigSource)> {
        let file = match explicit {
            Some(file) => file,
            None if Config::given(None) => ConfigFile {
                path: Utf8Path::new(DEFAULT_FILE),
                field: DEFAULT_FILE,
            },
            None => return Ok((Config::default(), ConfigSource::Embedded)),
        };
        let (text, source) = file.read()?;
        let config = Config::from_toml(&text, &source.to_string())?;
        Ok((config, source))
    }

    /// Whether the user gave a config: `--config FILE`, or a `./passthru.toml` in any form (see [`Config::load`]).
    pub(crate) fn given(explicit: Option<ConfigFile>) -> bool {
        explicit.is_some() || std::fs::symlink_metadata(DEFAULT_FILE).is_ok()
    }

    /// Parses and validates a config. `origin` names the file in messages, and relative paths in it
    /// (`vendor-reset.path`, `vendor-reset.headers`, `acs-override.packages`, `signing.key`, `signing.cert`) are
    /// taken relative to that file's directory, so a config means the same wherever the tool is run from. An
    /// origin without a directory ([`STDIN_ORIGIN`], `passthru.toml`) leaves them relative to the current one.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config> {
        let deserializer = toml::Deserializer::parse(text)
            .map_err(|e| InputError::new(origin, format!("not valid TOML: {e}")))?;
        let mut config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            // toml's message carries the line and a caret; its first line is the TOML location header.
            let message = inner.message().to_owned();
            let location = inner
                .span()
                .map(|span| line_of(text, span.start))
                .map(|line| format!(" (line {line})"));
            InputError::new(
                format!("{origin}: {field}"),
                format!("{message}{}", location.unwrap_or_default()),
            )
        })?;
        let base = Utf8Path::new(origin).parent().unwrap_or(Utf8Path::new(""));
        for path in [
            &mut config.vendor_reset.path,
            &mut config.vendor_reset.headers,
            &mut config.acs_override.packages,
        ]
        .into_iter()
        .flatten()
        .chain(config.signing.iter_mut().flat_map(SigningConfig::paths_mut))
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
        config
            .validate()
            .map_err(|e| InputError::new(format!("{origin}: {}", e.field), e.message))?;
        Ok(config)
    }

    /// Rules that involve more than one value.
    fn validate(&self) -> Result<(), InputError> {
        if self.acs_override.ids.len() > MAX_ACS_IDS {
            return Err(InputError::new(
                "acs-override.ids",
                format!(
                    "{} IDs given; the ACS-override patch accepts at most {MAX_ACS_IDS}",
                    self.acs_override.ids.len()
                ),
            ));
        }
        if self.acs_override.mode.is_empty() {
            return Err(InputError::new(
                "acs-override.mode",
                "give at least one of \"downstream\", \"multifunction\"",
            ));
        }
        self.vendor_reset_source()?;
        self.vendor_reset_headers()?;
        if self.acs_override.enabled {
            self.kernel_source()?;
        }
        Ok(())
    }

    /// The vendor-reset source: a local directory, or git URL + full commit hash (the default, upstream).
    pub(crate) fn vendor_reset_source(&self) -> Result<ModuleSource, InputError> {
        sources::vendor_reset_source(&self.vendor_reset)
    }

    /// Local kernel headers for the module build, when configured.
    pub(crate) fn vendor_reset_headers(&self) -> Result<Option<HeaderPackages>, InputError> {
        sources::vendor_reset_headers(&self.vendor_reset)
    }

    /// The ACS-override kernel source. Only meaningful when `acs-override.enabled`.
    pub(crate) fn kernel_source(&self) -> Result<KernelSource, InputError> {
        sources::kernel_source(&self.acs_override)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// One run's command-line overrides of the config (`--cpu`, `--gpu`, `--vfio-ids`, `--base`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides {
    pub(crate) cpu: Option<CpuChoice>,
    pub(crate) gpu: Option<Vec<GpuVendor>>,
    pub(crate) vfio_ids: Option<Vec<PciId>>,
    pub(crate) base: Option<ImageRef>,
    pub(crate) tag: Option<ImageRef>,
}

impl Config {
    pub(crate) fn with_overrides(mut self, o: &Overrides) -> Config {
        if let Some(cpu) = o.cpu {
            self.cpu.vendor = cpu;
        }
        if let Some(gpu) = &o.gpu {
            self.gpu.vendors = gpu.clone();
        }
        if let Some(ids) = &o.vfio_ids {
            self.vfio.ids = ids.clone();
        }
        if let Some(base) = &o.base {
            self.image.base = base.clone();
            // A digest pins the configured base, not another image.
            self.image.digest = None;
        }
        if let Some(tag) = &o.tag {
            self.image.tag = tag.clone();
        }
        self
    }
}

#[cfg(test)]
mod tests;
