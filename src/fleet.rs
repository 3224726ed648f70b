//! A fleet: a directory of host configs (`hosts/*.toml`, each a passthru.toml) built in one run.
//!
//! Each host gets its own image, tagged with its file name: `hosts/desk.toml` whose `image.tag` is
//! `ghcr.io/me/vfio:latest` becomes `ghcr.io/me/vfio:desk`. Hosts whose plans have the same host-agnostic inputs
//! (base, kernel, modules, initramfs files) share a *stack*: their Containerfiles are the same up to the host
//! layer, so the engine's layer cache builds the stack once and every further host adds only its last layer.
//! The stack key is the sha256 of those inputs; `plan --hosts` shows which hosts share which stack.

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::config::{Config, Overrides};
use crate::error::InputError;
use crate::image_ref::ImageRef;
use crate::plan::{Checkouts, KernelPlan, Layer, ModulePlan, Plan, PlannedFile, Target};
use crate::root::UserFile;

#[derive(Debug)]
pub(crate) struct Fleet {
    pub(crate) hosts: Vec<Host>,
}

#[derive(Debug)]
pub(crate) struct Host {
    /// The file name without `.toml`: the image's tag.
    pub(crate) name: String,
    pub(crate) file: Utf8PathBuf,
    /// As read, with the run's overrides and the host's tag applied.
    pub(crate) config: Config,
    pub(crate) plan: Plan,
    pub(crate) stack: StackKey,
}

/// The sha256 of a plan's host-agnostic inputs: equal keys mean equal Containerfiles up to the host layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub(crate) struct StackKey(String);

/// Hosts that share a stack, in the order of the fleet's files.
pub(crate) struct Stack<'a> {
    pub(crate) key: &'a StackKey,
    pub(crate) hosts: Vec<&'a Host>,
}

impl StackKey {
    pub(crate) fn of(plan: &Plan) -> StackKey {
        /// Everything the Containerfile reads before the host layer (its scripts come with the tool's version).
        #[derive(Serialize)]
        struct StackInputs<'a> {
            tool_version: &'static str,
            base: &'a ImageRef,
            kernel: &'a Option<KernelPlan>,
            modules: &'a [ModulePlan],
            initramfs_drivers: &'a [String],
            initramfs_files: Vec<&'a PlannedFile>,
            /// The certificate the modules and kernel are signed for (its fingerprint is on those steps).
            signing: Option<&'a str>,
        }
        let inputs = StackInputs {
            tool_version: env!("CARGO_PKG_VERSION"),
            base: &plan.image.base,
            kernel: &plan.kernel,
            modules: &plan.modules,
            initramfs_drivers: &plan.initramfs_drivers,
            initramfs_files: plan.files_in(Layer::Initramfs).collect(),
            signing: plan.signing.as_ref().map(|s| s.certificate.sha256.as_str()),
        };
        let json = serde_json::to_vec(&inputs).expect("a plan always serializes");
        StackKey(format!("{:x}", Sha256::digest(json)))
    }

    /// The first 12 hex digits, for people.
    pub(crate) fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl Host {
    /// The host's plan with its git module sources read from `checkouts` (`build` fetches them per stack).
    pub(crate) fn resolve_fetched(&self, target: &Target, checkouts: &Checkouts) -> Result<Plan> {
        Plan::resolve_fetched(&self.config, target, checkouts).map_err(|e| in_file(&self.file, e))
    }
}

impl Fleet {
    /// Reads and plans every host of `dir`. Any bad file fails the whole fleet, before anything is built.
    pub(crate) fn load(dir: &Utf8Path, overrides: &Overrides, target: &Target) -> Result<Fleet> {
        let hosts = host_files(dir)?
            .iter()
            .map(|file| load_host(file, overrides, target))
            .collect::<Result<Vec<_>>>()?;
        Ok(Fleet { hosts })
    }

    /// The stacks in the order their first host appears, each with its hosts.
    pub(crate) fn stacks(&self) -> Vec<Stack<'_>> {
        let mut stacks: Vec<Stack> = Vec::new();
        for host in &self.hosts {
            match stacks.iter_mut().find(|s| *s.key == host.stack) {
                Some(stack) => stack.hosts.push(host),
                None => stacks.push(Stack {
                    key: &host.stack,
                    hosts: vec![host],
                }),
            }
        }
        stacks
    }
}

/// The `*.toml` files of `dir`, sorted; hidden files (editor locks and backups) are not hosts.
fn host_files(dir: &Utf8Path) -> Result<Vec<Utf8PathBuf>> {
    let entries = dir.read_dir_utf8().map_err(|e| {
        InputError::new("--hosts", format!("{dir} is not a readable directory: {e}"))
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| InputError::new("--hosts", format!("reading {dir}: {e}")))?;
        let name = entry.file_name();
        if name.ends_with(".toml") && !name.starts_with('.') && entry.path().is_file() {
            files.push(entry.path().to_owned());
        }
    }
    if files.is_empty() {
        return Err(InputError::new(
            "--hosts",
            format!("{dir} holds no host configs (NAME.toml, each a passthru.toml)"),
        )
        .into());
    }
    files.sort();
    Ok(files)
}

fn load_host(file: &Utf8Path, overrides: &Overrides, target: &Target) -> Result<Host> {
    let name = file.file_stem().unwrap_or_default();
    if !is_tag(name) {
        return Err(InputError::new(
            file.as_str(),
            "the file name is the image's tag (REPOSITORY:NAME for NAME.toml): use letters, digits \
             and _ . - (not first: . or -), at most 128",
        )
        .into());
    }
    let text = crate::root::read_user_text(file, UserFile::Config, file.as_str())?;
    let config = Config::from_toml(&text, file.as_str())?.with_overrides(overrides);
    let tag = host_tag(&config.image.tag, name)
        .map_err(|message| InputError::new(format!("{file}: image.tag"), message))?;
    let config = config.with_overrides(&Overrides {
        tag: Some(tag),
        ..Default::default()
    });
    let plan = Plan::resolve(&config, target).map_err(|e| in_file(file, e))?;
    Ok(Host {
        name: name.to_owned(),
        file: file.to_owned(),
        stack: StackKey::of(&plan),
        config,
        plan,
    })
}

/// `REPOSITORY:NAME`, the repository being that of the config's `image.tag`.
fn host_tag(configured: &ImageRef, name: &str) -> Result<ImageRef, String> {
    if configured.digest().is_some() {
        return Err(format!(
            "{configured} pins a digest; a host's image is tagged with its file name, so give a \
             repository (any tag on it is replaced)"
        ));
    }
    format!("{}:{name}", configured.repository()).parse()
}

/// An image tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_tag(s: &str) -> bool {
    s.len() <= 128
        && s.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// A plan's bad input names the host file it came from, like a parse error does.
fn in_file(file: &Utf8Path, err: anyhow::Error) -> anyhow::Error {
    match err.downcast_ref::<InputError>() {
        Some(input) => {
            InputError::new(format!("{file}: {}", input.field), input.message.clone()).into()
        }
        None => err.context(format!("planning {file}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::render;

    const NVIDIA: &str = "[image]\nbase = \"localhost/base:1\"\ntag = \"ghcr.io/me/vfio:latest\"\n\
                          [cpu]\nvendor = \"amd\"\n[gpu]\nvendors = [\"nvidia\"]\n";

    fn fleet_dir(files: &[(&str, &str)]) -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::try_from(dir.path().to_path_buf()).unwrap();
        for (name, text) in files {
            std::fs::write(path.join(name), text).unwrap();
        }
        (dir, path)
    }

    fn load(dir: &Utf8Path) -> Result<Fleet> {
        Fleet::load(dir, &Overrides::default(), &Target::Image)
    }

    fn with_ids(ids: &str) -> String {
        format!("{NVIDIA}[vfio]\nids = [{ids}]\n")
    }

    #[test]
    fn hosts_are_the_toml_files_in_name_order_tagged_with_their_names() {
        let (_keep, dir) = fleet_dir(&[
            ("htpc.toml", &with_ids("\"10de:1401\"")),
            ("desk.toml", &with_ids("\"10de:2684\", \"10de:22ba\"")),
            (".desk.toml.swp.toml", "not toml"),
            ("README.md", "not a host"),
        ]);
        let fleet = load(&dir).unwrap();
        let tags: Vec<&str> = fleet
            .hosts
            .iter()
            .map(|h| h.plan.image.tag.as_str())
            .collect();
        assert_eq!(tags, ["ghcr.io/me/vfio:desk", "ghcr.io/me/vfio:htpc"]);
        assert_eq!(fleet.hosts[0].name, "desk");
        assert_eq!(fleet.hosts[0].file, dir.join("desk.toml"));
    }

    #[test]
    fn hosts_that_differ_in_device_ids_only_share_a_stack_and_its_whole_containerfile_prefix() {
        let (_keep, dir) = fleet_dir(&[
            ("a.toml", &with_ids("\"10de:2684\"")),
            ("b.toml", &with_ids("\"10de:1401\", \"10de:0fba\"")),
            (
                "c.toml",
                &with_ids("\"1002:73bf\"").replace("\"nvidia\"", "\"amd\""),
            ),
        ]);
        let fleet = load(&dir).unwrap();
        let stacks = fleet.stacks();
        let grouped: Vec<Vec<&str>> = stacks
            .iter()
            .map(|s| s.hosts.iter().map(|h| h.name.as_str()).collect())
            .collect();
        // AMD GPUs make another modprobe softdep file, an initramfs input: another stack.
        assert_eq!(grouped, [vec!["a", "b"], vec!["c"]]);
        assert_eq!(stacks[0].key.short().len(), 12);

        let [a, b, c] = [0, 1, 2].map(|i| render::render(&fleet.hosts[i].plan).unwrap());
        let stack_part = |ctx: &render::BuildContext| {
            let instructions: Vec<String> = ctx
                .containerfile()
                .lines()
                .take_while(|l| !l.starts_with("COPY layers/host/"))
                .filter(|l| !l.starts_with('#'))
                .map(str::to_owned)
                .collect();
            let files: Vec<(String, Vec<u8>)> = ctx
                .files
                .iter()
                .filter(|f| f.path != "Containerfile" && !f.path.starts_with("layers/host"))
                .map(|f| (f.path.to_string(), f.content.clone()))
                .collect();
            (instructions, files)
        };
        assert_eq!(stack_part(&a), stack_part(&b));
        assert_ne!(stack_part(&a), stack_part(&c));
        let kargs_d = format!(
            "layers/host{}/{}",
            crate::kargs_d::DIR,
            crate::kargs_d::FILE_NAME
        );
        assert_ne!(a.get(&kargs_d), b.get(&kargs_d));
        assert!(a.get(&kargs_d).is_some());
    }

    #[test]
    fn a_bad_host_file_is_bad_input_naming_the_file_and_the_field() {
        let (_keep, dir) = fleet_dir(&[
            ("a.toml", &with_ids("\"10de:2684\"")),
            ("b.toml", &with_ids("\"10de:14\"")),
        ]);
        let err = load(&dir).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("{dir}/b.toml: vfio.ids")),
            "{text}"
        );

        // A plan's own check (a conflicting extra karg) names the file too.
        let (_keep, dir) = fleet_dir(&[(
            "a.toml",
            &format!("{NVIDIA}[kargs]\nextra = [\"iommu=off\"]\n"),
        )]);
        let text = load(&dir).unwrap_err().to_string();
        assert!(
            text.starts_with(&format!("{dir}/a.toml: kargs.extra[0]")),
            "{text}"
        );
    }

    #[test]
    fn file_names_and_tags_that_cannot_make_an_image_tag_are_refused() {
        let (_keep, dir) = fleet_dir(&[("my desk.toml", NVIDIA)]);
        let text = load(&dir).unwrap_err().to_string();
        assert!(
            text.starts_with(&format!("{dir}/my desk.toml: the file name")),
            "{text}"
        );

        let pinned = NVIDIA.replace(
            "ghcr.io/me/vfio:latest",
            &format!("ghcr.io/me/vfio@sha256:{}", "a".repeat(64)),
        );
        let (_keep, dir) = fleet_dir(&[("desk.toml", &pinned)]);
        let text = load(&dir).unwrap_err().to_string();
        assert!(
            text.starts_with(&format!("{dir}/desk.toml: image.tag")),
            "{text}"
        );

        let (_keep, dir) = fleet_dir(&[("notes.txt", "")]);
        let err = load(&dir).unwrap_err();
        assert!(err.to_string().starts_with("--hosts: "), "{err}");
        assert!(
            load(&dir.join("missing"))
                .unwrap_err()
                .to_string()
                .starts_with("--hosts: ")
        );
    }

    #[test]
    fn tags_follow_the_tag_rules() {
        for good in ["desk", "Desk_2", "_x", "a.b-c", &"a".repeat(128)] {
            assert!(is_tag(good), "{good}");
        }
        for bad in ["", ".x", "-x", "a b", "a:b", "a/b", &"a".repeat(129)] {
            assert!(!is_tag(bad), "{bad}");
        }
    }
}
