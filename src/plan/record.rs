//! The plan a host carries out, kept where `doctor` finds it without a config: in the image it was built into
//! (/usr/share/passthru-image/, host layer) and in live mode's state file.
//!
//! Doctor reads the recorded plan back as it was made, rather than planning the recorded config again: the
//! config may name sources only the build machine has (`vendor-reset.path`, `acs-override.packages`), its
//! `"auto"` values were decided for the machine that planned it (an image plan leaves `nouveau.modeset=0` out,
//! a plan for this host might not), and the passthru-image on the host may plan differently from the one that
//! built the image. What the image holds is the plan it was built from, so that is what doctor checks. The
//! effective config travels beside it as a readable starting point, not as the source of truth.

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use super::{Layer, Plan, PlannedFile};
use crate::config::Config;
use crate::error::InputError;
use crate::root::Root;

/// Where an image keeps its record.
pub const DIR: &str = "/usr/share/passthru-image";
pub const CONFIG_FILE: &str = "/usr/share/passthru-image/passthru.toml";
pub const PLAN_FILE: &str = "/usr/share/passthru-image/plan.json";

/// Raised when a record would no longer read right with an older passthru-image.
pub const FORMAT: u32 = 1;

/// A plan as it is recorded: its format, the passthru-image that made it, and the plan itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRecord {
    pub format: u32,
    /// `passthru-image 0.1.0`.
    pub made_by: String,
    pub plan: Plan,
}

impl PlanRecord {
    pub fn of(plan: &Plan) -> PlanRecord {
        PlanRecord {
            format: FORMAT,
            made_by: made_by(),
            plan: plan.clone(),
        }
    }

    /// Reads a record; anything that does not read as a plan of this format is bad input naming the field.
    pub fn parse(text: &str, origin: &str) -> Result<PlanRecord, InputError> {
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
    pub fn check(&self) -> Result<(), String> {
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
    let header = "# The config this image was planned from: passthru.toml with the build's command-line overrides.\n\
                  # Local paths in it (vendor-reset.path, acs-override.packages) are the build machine's. A starting\n\
                  # point for a config of your own; `passthru-image doctor` checks the host against plan.json.\n\n";
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
pub fn read_image_record(root: &Root) -> Result<Option<PlanRecord>> {
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
pub enum RecordSource {
    /// The state file of live mode's `apply` (its path under the root).
    LiveState(Utf8PathBuf),
    /// The record in the running image (its path under the root).
    Image(Utf8PathBuf),
}

impl RecordSource {
    pub fn path(&self) -> &Utf8Path {
        match self {
            RecordSource::LiveState(path) | RecordSource::Image(path) => path,
        }
    }
}

impl std::fmt::Display for RecordSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordSource::LiveState(path) => write!(f, "the plan `apply` recorded in {path}"),
            RecordSource::Image(path) => write!(f, "the plan the running image recorded in {path}"),
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
            "[vfio]\nids = [\"10de:2684\"]\naddresses = [\"02:00.0\"]\n[gpu]\nvendors = [\"nvidia\"]\n",
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
        // The record holds every file but itself.
        let mut without_record = plan.clone();
        without_record.files.retain(|f| f.path != PLAN_FILE);
        assert_eq!(record.plan, without_record);
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
                Box::new(|r| r["plan"]["kargs"][0] = "quiet splash".into()),
                "plan.kargs",
            ),
            (
                Box::new(|r| r["plan"]["kargs"][1] = "iommu=nopt".into()),
                "plan.kargs",
            ),
            (
                Box::new(|r| r["plan"]["vfio"]["addresses"][0] = "../..".into()),
                "plan.vfio.addresses[0]",
            ),
            (
                Box::new(|r| r["plan"]["files"][0]["mode"] = "9999".into()),
                "plan.files[0].mode",
            ),
            (Box::new(|r| r["plan"]["extra"] = true.into()), "plan"),
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
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(Utf8Path::from_path(dir.path()).unwrap());
        assert_eq!(read_image_record(&root).unwrap(), None);
        let plan = plan();
        let file = plan.files.iter().find(|f| f.path == PLAN_FILE).unwrap();
        std::fs::create_dir_all(root.join(DIR)).unwrap();
        std::fs::write(root.join(PLAN_FILE), &file.content).unwrap();
        let record = read_image_record(&root).unwrap().unwrap();
        assert_eq!(record.plan.kargs, plan.kargs);
    }
}
