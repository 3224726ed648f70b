//! The record of what `apply` changed, so `revert` undoes exactly that and nothing the user did.
//!
//! Kept in /etc/passthru-image/ (under --root): /etc survives upgrades and follows the host, like the drop-ins.
//! It is saved after every step, so a run that fails half-way still leaves an accurate record.

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use super::changes::KernelChange;
use super::files;
use crate::error::InputError;
use crate::kargs::HostKarg;
use crate::plan::record::PlanRecord;
use crate::plan::{ACS_KERNEL_PACKAGES, LIVE_DRACUT_CONF, LIVE_MODPROBE_CONF};
use crate::root::Root;
use crate::text_rules::{PLAIN_NAME_RULE, is_lower_hex, is_plain_name};

pub(crate) const FILE: &str = "/etc/passthru-image/live-state.json";
/// Copies of the files `apply` replaced, at their host path below this directory.
pub(crate) const BACKUP_DIR: &str = "/etc/passthru-image/backup";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LiveState {
    /// Kargs `apply` appended (it deletes them on revert).
    pub(crate) kargs_appended: Vec<HostKarg>,
    /// Host kargs `apply` removed to resolve conflicts (appended again on revert).
    pub(crate) kargs_deleted: Vec<HostKarg>,
    /// `apply` turned initramfs regeneration on (it was off).
    pub(crate) initramfs_enabled: bool,
    pub(crate) files: Vec<FileRecord>,
    pub(crate) kernel: Option<KernelChange>,
    /// The pending deployment apply changed the drop-ins under while regeneration was already on: its
    /// initramfs predates them. Any newer deployment was regenerated from them, so this one alone is stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) initramfs_stale_in: Option<String>,
    /// The plan the last apply carried out, which `doctor` without a config checks the host against. Not
    /// something to undo: it goes with the record once nothing is left to undo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) plan: Option<PlanRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRecord {
    /// Host path, e.g. /etc/modprobe.d/50-passthru-vfio.conf.
    pub(crate) path: Utf8PathBuf,
    /// Host path of the copy of what was there before; `None` when the file did not exist.
    pub(crate) backup: Option<Utf8PathBuf>,
}

impl LiveState {
    /// Nothing left to undo (a recorded plan alone is not worth keeping).
    pub(crate) fn is_empty(&self) -> bool {
        LiveState {
            plan: None,
            ..self.clone()
        } == LiveState::default()
    }

    pub(crate) fn file(&self, path: &Utf8PathBuf) -> Option<&FileRecord> {
        self.files.iter().find(|f| &f.path == path)
    }
}

/// Reads the record. It is input like any other file under --root: anything `apply` would not have written is
/// bad input naming the field, found before anything changes (see [`validate`]).
pub(crate) fn load(root: &Root) -> Result<LiveState> {
    let Some(text) = root.read_optional(FILE)? else {
        return Ok(LiveState::default());
    };
    let path = root.join(FILE);
    parse(&text).map_err(|e| InputError::new(format!("{path}: {}", e.field), e.message).into())
}

/// Reads and validates a record; the error names the field (`kargs_appended[0]`).
fn parse(text: &str) -> Result<LiveState, InputError> {
    let state: LiveState = serde_path_to_error::deserialize(
        &mut serde_json::Deserializer::from_str(text),
    )
    .map_err(|e| {
        InputError::new(
            e.path().to_string(),
            format!("not what apply records: {}", e.into_inner()),
        )
    })?;
    validate(&state)?;
    Ok(state)
}

/// Accepts only what `apply` itself records: its own drop-in paths with backups at their derived place,
/// kernel arguments that read as one host argument and are no option, the kernel packages it installs and
/// removes, and a deployment ID. `revert` deletes, restores and passes on what the record names, so nothing
/// else may get through.
pub(crate) fn validate(state: &LiveState) -> Result<(), InputError> {
    let known = drop_in_paths();
    for (i, file) in state.files.iter().enumerate() {
        if !known.contains(&file.path) {
            let allowed: Vec<&str> = known.iter().map(|p| p.as_str()).collect();
            return Err(InputError::new(
                format!("files[{i}].path"),
                format!(
                    "{:?} is not a file apply writes ({})",
                    file.path,
                    allowed.join(", ")
                ),
            ));
        }
        if state.files[..i].iter().any(|f| f.path == file.path) {
            return Err(InputError::new(
                format!("files[{i}].path"),
                format!("{} is recorded twice", file.path),
            ));
        }
        let backup = files::backup_path(&file.path);
        if file.backup.as_ref().is_some_and(|b| *b != backup) {
            return Err(InputError::new(
                format!("files[{i}].backup"),
                format!(
                    "apply keeps the copy of {} at {backup}, nothing else",
                    file.path
                ),
            ));
        }
    }
    if let Some(kernel) = &state.kernel {
        check_kernel_change(kernel)?;
    }
    if let Some(id) = &state.initramfs_stale_in
        && !is_deployment_id(id)
    {
        return Err(InputError::new(
            "initramfs_stale_in",
            format!("{id:?} is not a deployment ID (CHECKSUM.SERIAL)"),
        ));
    }
    if let Some(plan) = &state.plan {
        plan.check()
            .map_err(|message| InputError::new("plan.format", message))?;
    }
    Ok(())
}

fn check_kernel_change(kernel: &KernelChange) -> Result<(), InputError> {
    let (field, files) = match kernel {
        KernelChange::Replace { packages } => ("kernel.packages", packages),
        KernelChange::RemoveInstall { remove, install } => {
            if remove
                .iter()
                .map(String::as_str)
                .ne(ACS_KERNEL_PACKAGES.iter().copied())
            {
                return Err(InputError::new(
                    "kernel.remove",
                    format!(
                        "apply removes exactly the base kernel packages ({}), not {remove:?}",
                        ACS_KERNEL_PACKAGES.join(", ")
                    ),
                ));
            }
            ("kernel.install", install)
        }
    };
    for (i, file) in files.iter().enumerate() {
        check_package_path(file).map_err(|e| InputError::new(format!("{field}[{i}]"), e))?;
    }
    Ok(())
}

/// A local kernel package as apply records it: a path (from `acs-override.packages`) to a file named
/// `NAME-VERSION-RELEASE.ARCH.rpm`, no part of it an option or holding control characters.
fn check_package_path(path: &Utf8Path) -> Result<(), String> {
    let name = path.file_name().unwrap_or_default();
    let stem = name.strip_suffix(".rpm").unwrap_or_default();
    if !is_plain_name(name) || stem.matches('-').count() < 2 {
        return Err(format!(
            "{path:?} is not a kernel package file (NAME-VERSION-RELEASE.ARCH.rpm; \
             {PLAIN_NAME_RULE})"
        ));
    }
    if path.as_str().chars().any(char::is_control)
        || path.components().any(|c| c.as_str().starts_with('-'))
    {
        return Err(format!("{path:?} is not a plain path to a package file"));
    }
    Ok(())
}

/// `CHECKSUM.SERIAL`, as [`super::deployment`] names deployments.
fn is_deployment_id(id: &str) -> bool {
    id.split_once('.').is_some_and(|(checksum, serial)| {
        is_lower_hex(checksum, 64)
            && !serial.is_empty()
            && serial.bytes().all(|b| b.is_ascii_digit())
    })
}

/// The /etc paths apply writes drop-ins to: the live place of each file the plan can make.
fn drop_in_paths() -> Vec<Utf8PathBuf> {
    [LIVE_DRACUT_CONF, LIVE_MODPROBE_CONF]
        .into_iter()
        .map(Utf8PathBuf::from)
        .collect()
}

/// Saves the record, or removes it once there is nothing left to undo.
pub(crate) fn save(root: &Root, state: &LiveState) -> Result<()> {
    if state.is_empty() {
        return crate::atomic::remove_host_file(root, Utf8Path::new(FILE));
    }
    let text = serde_json::to_string_pretty(state)? + "\n";
    crate::atomic::write_host_file(root, Utf8Path::new(FILE), text.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(json: &str) -> Result<LiveState, InputError> {
        parse(json)
    }

    const EMPTY: &str =
        r#""kargs_appended":[],"kargs_deleted":[],"initramfs_enabled":false,"kernel":null"#;

    #[test]
    fn what_apply_records_is_accepted() {
        let ok = format!(
            r#"{{"kargs_appended":["iommu=pt","dyndbg=\"file x +p\""],"kargs_deleted":["iommu=off"],
            "initramfs_enabled":true,"kernel":{{"kind":"remove-install",
            "remove":["kernel","kernel-core","kernel-modules","kernel-modules-core",
            "kernel-modules-extra"],
            "install":["/srv/acs/kernel-acs-6.11.4-1.fc41.x86_64.rpm"]}},
            "files":[{{"path":"/etc/modprobe.d/50-passthru-vfio.conf",
            "backup":"/etc/passthru-image/backup/etc/modprobe.d/50-passthru-vfio.conf"}},
            {{"path":"/etc/dracut.conf.d/50-passthru-vfio.conf","backup":null}}],
            "initramfs_stale_in":"{}.1"}}"#,
            "a".repeat(64)
        );
        state(&ok).unwrap();
    }

    #[test]
    fn anything_else_is_refused_naming_the_field() {
        let files = |entry: &str| format!(r#"{{{EMPTY},"files":[{entry}]}}"#);
        let kargs = |list: &str| {
            format!(r#"{{{EMPTY},"files":[]}}"#).replace(
                r#""kargs_appended":[]"#,
                &format!(r#""kargs_appended":{list}"#),
            )
        };
        let cases = [
            (
                files(r#"{"path":"../../etc/passwd","backup":null}"#),
                "files[0].path",
            ),
            (
                files(r#"{"path":"/etc/passwd","backup":null}"#),
                "files[0].path",
            ),
            (
                files(r#"{"path":"/etc/modprobe.d/other.conf","backup":null}"#),
                "files[0].path",
            ),
            (
                files(r#"{"path":"/etc/modprobe.d/50-passthru-vfio.conf","backup":"/etc/shadow"}"#),
                "files[0].backup",
            ),
            (kargs(r#"["--unchanged-exit-77"]"#), "kargs_appended[0]"),
            (kargs(r#"["iommu=pt","a b"]"#), "kargs_appended[1]"),
            (kargs(r#"["dyndbg=\"x"]"#), "kargs_appended[0]"),
            (kargs(r#"["a\nb"]"#), "kargs_appended[0]"),
            (kargs(r#"[""]"#), "kargs_appended[0]"),
            (
                format!(r#"{{{EMPTY},"files":[]}}"#).replace(
                    r#""kernel":null"#,
                    r#""kernel":{"kind":"replace","packages":["/srv/-rf.rpm"]}"#,
                ),
                "kernel.packages[0]",
            ),
            (
                format!(r#"{{{EMPTY},"files":[]}}"#).replace(
                    r#""kernel":null"#,
                    r#""kernel":{"kind":"remove-install","remove":["glibc"],"install":[]}"#,
                ),
                "kernel.remove",
            ),
            (
                format!(r#"{{{EMPTY},"files":[],"initramfs_stale_in":"../x"}}"#),
                "initramfs_stale_in",
            ),
        ];
        for (json, field) in cases {
            let err = state(&json).unwrap_err();
            assert_eq!(err.field, field, "{json}: {err}");
        }
    }

    /// The plan apply carried out is kept with what it did, read back typed, and goes with the record.
    #[test]
    fn the_recorded_plan_is_read_back_checked_and_kept_only_with_something_to_undo() {
        let config =
            crate::config::Config::from_toml("[cpu]\nvendor = \"amd\"\n", "t.toml").unwrap();
        let plan = crate::plan::Plan::resolve(&config, &crate::plan::Target::Image).unwrap();
        let with_plan = LiveState {
            kargs_appended: vec![HostKarg::parse("iommu=pt").unwrap()],
            plan: Some(PlanRecord::of(&plan)),
            ..LiveState::default()
        };
        let text = serde_json::to_string(&with_plan).unwrap();
        assert_eq!(state(&text).unwrap(), with_plan);
        let mut bad: serde_json::Value = serde_json::from_str(&text).unwrap();
        bad["plan"]["format"] = 99.into();
        assert_eq!(state(&bad.to_string()).unwrap_err().field, "plan.format");
        bad["plan"]["format"] = 1.into();
        bad["plan"]["expect"]["kargs"][0] = "--unchanged-exit-77".into();
        assert!(
            state(&bad.to_string())
                .unwrap_err()
                .field
                .starts_with("plan.expect.kargs"),
        );
        let plan_only = LiveState {
            plan: with_plan.plan.clone(),
            ..LiveState::default()
        };
        assert!(plan_only.is_empty(), "nothing to undo");
        assert!(!with_plan.is_empty());
    }

    #[test]
    fn saves_loads_and_removes_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap());
        assert!(load(&root).unwrap().is_empty());
        let state = LiveState {
            kargs_appended: vec![HostKarg::parse("iommu=pt").unwrap()],
            initramfs_enabled: true,
            ..LiveState::default()
        };
        save(&root, &state).unwrap();
        assert_eq!(load(&root).unwrap(), state);
        save(&root, &LiveState::default()).unwrap();
        assert!(!root.exists(FILE));
    }
}
