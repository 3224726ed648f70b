//! The plan a host carries out, kept where `doctor` finds it without a config: in the image it was built into
//! (/usr/share/passthru-image/, host layer) and in live mode's state file.
//!
//! Doctor reads back what the plan expects of the host rather than planning the recorded config again: the
//! config may name sources only the build machine has (`vendor-reset.path`, `acs-override.packages`), a git
//! module source's kernel modules are known only once the build fetched it, its `"auto"` values were decided for
//! the machine that planned it (an image plan leaves `nouveau.modeset=0` out, a plan for this host might not),
//! and the passthru-image on the host may plan differently from the one that built the image. What the image
//! holds is the plan it was built from, so that is what doctor checks. The record carries those expectations
//! typed (and checked as they are read), the whole plan as `plan --json` shows it for people, and the effective
//! config travels beside it as a readable starting point.

use anyhow::Result;
use camino::Utf8PathBuf;
use serde::{Deserialize, Serialize};

use super::{ImagePlan, Layer, MODPROBE_CONF, Plan, PlannedFile, VfioPlan};
use crate::config::Config;
use crate::error::InputError;
use crate::host::cpu::CpuVendor;
use crate::kargs::Kargs;
use crate::root::Root;

/// Where an image keeps its record.
pub(crate) const CONFIG_FILE: &str = "/usr/share/passthru-image/passthru.toml";
pub(crate) const PLAN_FILE: &str = "/usr/share/passthru-image/plan.json";

/// Raised when a record would no longer read right with an older passthru-image.
pub(crate) const FORMAT: u32 = 1;

/// A plan as it is recorded: its format, the passthru-image that made it, what it expects of the host, and the
/// plan itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanRecord {
    pub(crate) format: u32,
    /// `passthru-image 0.1.0`.
    pub(crate) made_by: String,
    /// The base the image was built from (what `detect` proposes again on a host that runs it) and its tag.
    pub(crate) image: ImagePlan,
    pub(crate) expect: Expectations,
    /// The plan as `plan --json` shows it, for people and scripts; never read back.
    pub(crate) plan: serde_json::Value,
}

/// What a host shows when a plan is in effect, as doctor checks it: the CPU vendor (for the IOMMU advice), the
/// kernel arguments, the drivers the initramfs loads, the devices on vfio-pci, the out-of-tree modules, and the
/// modprobe.d drop-in whose softdeps modprobe must use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Expectations {
    pub(crate) cpu_vendor: CpuVendor,
    pub(crate) kargs: Kargs,
    pub(crate) initramfs_drivers: Vec<String>,
    pub(crate) vfio: VfioPlan,
    pub(crate) modules: Vec<ExpectedModule>,
    /// The plan's files doctor reads: its modprobe.d drop-in.
    pub(crate) files: Vec<PlannedFile>,
}

/// An out-of-tree module of the plan, as the host shows it: loaded kernel modules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExpectedModule {
    label: String,
    /// None known for a git source that was not fetched (`plan` alone does not fetch).
    kernel_modules: Vec<String>,
}

impl ExpectedModule {
    /// Its name in messages (dkms PACKAGE_NAME once its dkms.conf was read).
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    pub(crate) fn kernel_modules(&self) -> Vec<&str> {
        self.kernel_modules.iter().map(String::as_str).collect()
    }
}

impl Expectations {
    pub(crate) fn of(plan: &Plan) -> Expectations {
        Expectations {
            cpu_vendor: plan.cpu_vendor,
            kargs: plan.kargs.clone(),
            initramfs_drivers: plan.initramfs_drivers.clone(),
            vfio: plan.vfio.clone(),
            modules: plan
                .modules
                .iter()
                .map(|m| ExpectedModule {
                    label: m.label().to_owned(),
                    kernel_modules: m.kernel_modules().into_iter().map(str::to_owned).collect(),
                })
                .collect(),
            files: plan
                .files
                .iter()
                .filter(|f| f.path == MODPROBE_CONF)
                .cloned()
                .collect(),
        }
    }
}

impl PlanRecord {
    pub(crate) fn of(plan: &Plan) -> PlanRecord {
        PlanRecord {
            format: FORMAT,
            made_by: made_by(),
            image: plan.image.clone(),
            expect: Expectations::of(plan),
            plan: serde_json::to_value(plan).expect("a plan serialises"),
        }
    }

    /// Reads a record; anything that does not read as a record of this format is bad input naming the field.
    pub(crate) fn parse(text: &str, origin: &str) -> Result<PlanRecord, InputError> {
        let record: PlanRecord =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(text))
                .map_err(|e| {
                    InputError::new(
                        format!("{origin}: {}", e.path()),
                        format!("not a plan passthru-image recorded: {}", e.into_inner()),
                    )
                })?;
        record
            .check()
            .map_err(|message| InputError::new(format!("{origin}: format"), message))?;
        Ok(record)
    }

    /// What a record must hold beyond its types (those are checked as it is read: kargs, IDs, addresses).
    pub(crate) fn check(&self) -> Result<(), String> {
        match self.format {
            FORMAT => Ok(()),
            other => Err(format!(
                "format {other}, written by {}; this passthru-image ({}) reads format {FORMAT}",
                self.made_by,
                made_by()
            )),
        }
    }
}

fn made_by() -> String {
    format!("passthru-image {}", env!("CARGO_PKG_VERSION"))
}

/// The effective config (the file, the embedded default, and the run's overrides), for the image's host layer.
pub(super) fn config_file(config: &Config) -> Result<PlannedFile> {
    let header = "# The config this image was planned from: passthru.toml with the build's \
                  command-line overrides.\n# Local paths in it (vendor-reset.path, \
                  acs-override.packages) are the build machine's. A starting\n# point for a config \
                  of your own; `passthru-image doctor` checks the host against plan.json.\n\n";
    Ok(PlannedFile {
        path: CONFIG_FILE.into(),
        mode: 0o644,
        layer: Layer::Host,
        content: format!("{header}{}", toml::to_string(config)?),
    })
}

/// The record of `plan`, for the image's host layer. `plan` holds every other file of the image: a file cannot
/// hold itself.
pub(super) fn plan_file(plan: &Plan) -> PlannedFile {
    let text =
        serde_json::to_string_pretty(&PlanRecord::of(plan)).expect("a plan serialises") + "\n";
    PlannedFile {
        path: PLAN_FILE.into(),
        mode: 0o644,
        layer: Layer::Host,
        content: text,
    }
}

/// The record of the image the host under `root` runs (its /usr/share/passthru-image/plan.json), if it has one.
pub(crate) fn read_image_record(root: &Root) -> Result<Option<PlanRecord>> {
    let Some(text) = root.read_optional(PLAN_FILE)? else {
        return Ok(None);
    };
    Ok(Some(PlanRecord::parse(
        &text,
        root.join(PLAN_FILE).as_str(),
    )?))
}

/// Where a recorded plan came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordSource {
    /// The state file of live mode's `apply` (its path under the root).
    LiveState(Utf8PathBuf),
    /// The record in the running image (its path under the root).
    Image(Utf8PathBuf),
}

impl std::fmt::Display for RecordSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordSource::LiveState(path) => write!(f, "the record `apply` keeps in {path}"),
            RecordSource::Image(path) => write!(f, "the running image's record {path}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::{CpuChoice, GpuVendor, Overrides};
    use crate::plan::Target;

    fn plan() -> Plan {
        let mut config = Config::from_toml(
            "[vfio]\nids = [\"10de:2684\"]\naddresses = [\"02:00.0\"]\n[gpu]\nvendors = \
             [\"nvidia\"]\n",
            "t.toml",
        )
        .unwrap();
        config = config.with_overrides(&Overrides {
            cpu: Some(CpuChoice::Amd),
            gpu: Some(vec![GpuVendor::Nvidia]),
            ..Default::default()
        });
        Plan::resolve(&config, &Target::Image).unwrap()
    }

    #[test]
    fn a_plan_reads_back_from_its_record_as_it_was() {
        let plan = plan();
        let file = plan.files.iter().find(|f| f.path == PLAN_FILE).unwrap();
        assert_eq!(file.layer, Layer::Host);
        let record = PlanRecord::parse(&file.content, "plan.json").unwrap();
        assert_eq!(record.format, FORMAT);
        assert!(record.made_by.starts_with("passthru-image "));
        assert_eq!(record.expect, Expectations::of(&plan));
        assert_eq!(record.expect.vfio.addresses, plan.vfio.addresses);
        // The plan as `plan --json` shows it, with every file but the record itself.
        let mut shown = serde_json::to_value(&plan).unwrap();
        shown["files"].as_array_mut().unwrap().pop();
        assert_eq!(record.plan, shown);
        let config = plan.files.iter().find(|f| f.path == CONFIG_FILE).unwrap();
        let reread = Config::from_toml(&config.content, "passthru.toml").unwrap();
        assert_eq!(reread.vfio.addresses, plan.vfio.addresses);
        assert_eq!(reread.cpu.vendor, CpuChoice::Amd, "the overrides are in it");
    }

    #[test]
    fn records_that_are_not_plans_of_this_format_are_bad_input_naming_the_field() {
        let good = serde_json::to_value(PlanRecord::of(&plan())).unwrap();
        type Change = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|r| r["format"] = 2.into()), "format"),
            (
                Box::new(|r| r["expect"]["kargs"][0] = "quiet splash".into()),
                "expect.kargs",
            ),
            (
                Box::new(|r| r["expect"]["kargs"][1] = "iommu=nopt".into()),
                "expect.kargs",
            ),
            (
                Box::new(|r| r["expect"]["vfio"]["addresses"][0] = "../..".into()),
                "expect.vfio.addresses[0]",
            ),
            (
                Box::new(|r| r["expect"]["cpu_vendor"] = "arm".into()),
                "expect.cpu_vendor",
            ),
            (Box::new(|r| r["expect"]["extra"] = true.into()), "expect"),
        ];
        for (change, field) in cases {
            let mut bad = good.clone();
            change(&mut bad);
            let err = PlanRecord::parse(&bad.to_string(), "plan.json").unwrap_err();
            assert!(
                err.field.starts_with(&format!("plan.json: {field}")),
                "{field}: {err}"
            );
        }
    }

    #[test]
    fn an_image_record_is_read_under_the_root() {
        let (_dir, root) = Root::temporary();
        assert_eq!(read_image_record(&root).unwrap(), None);
        let plan = plan();
        let file = plan.files.iter().find(|f| f.path == PLAN_FILE).unwrap();
        std::fs::create_dir_all(root.join(PLAN_FILE).parent().unwrap()).unwrap();
        std::fs::write(root.join(PLAN_FILE), &file.content).unwrap();
        let record = read_image_record(&root).unwrap().unwrap();
        assert_eq!(record.expect.kargs, plan.kargs);
    }
}
