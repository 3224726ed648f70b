//! The container engines that build the rendered context: podman, buildah, docker.
//!
//! Each engine is only a different command line for the same three acts (build, push, look up an image), so
//! they are one enum with argv builders rather than a trait with three implementations; the argv is what the
//! unit tests check, and what `build` runs.

use std::ffi::OsString;

use anyhow::{Result, bail};
use camino::Utf8Path;
use clap::ValueEnum;

use crate::cmd::Cmd;
use crate::error::InputError;
use crate::image_ref::ImageRef;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    Podman,
    Buildah,
    Docker,
}

/// Process isolation for RUN steps. `chroot` builds where the OCI runtime cannot make cgroups (hybrid
/// cgroup hosts); unset keeps the engine's own default, so BUILDAH_ISOLATION still works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Isolation {
    Oci,
    Chroot,
    Rootless,
}

/// When the engine may fetch the base image from its registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Pull {
    Never,
    #[default]
    Missing,
    Always,
}

/// A `--label KEY=VALUE` for the built image, checked before it reaches the engine's command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub key: String,
    pub value: String,
}

impl std::str::FromStr for Label {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((key, value)) = s.split_once('=') else {
            return Err(format!("{s:?} is not KEY=VALUE"));
        };
        let key_ok = key.starts_with(|c: char| c.is_ascii_alphanumeric())
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
        if !key_ok {
            return Err(format!(
                "label key {key:?}: expected letters, digits and . _ - /, starting with a letter or digit \
                 (e.g. org.opencontainers.image.source)"
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(format!(
                "label {key}: the value may not hold control characters"
            ));
        }
        Ok(Label {
            key: key.to_owned(),
            value: value.to_owned(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct BuildOptions<'a> {
    pub tag: &'a ImageRef,
    pub isolation: Option<Isolation>,
    pub pull: Pull,
    pub labels: &'a [Label],
}

impl Engine {
    /// The first of podman, buildah, docker found on PATH: podman is bootc's own tool.
    pub fn detect() -> Result<Engine> {
        Engine::value_variants()
            .iter()
            .copied()
            .find(|engine| engine.is_installed())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no container engine found on PATH: install podman (or buildah, or docker)"
                )
            })
    }

    pub fn program(self) -> &'static str {
        match self {
            Engine::Podman => "podman",
            Engine::Buildah => "buildah",
            Engine::Docker => "docker",
        }
    }

    pub fn is_installed(self) -> bool {
        std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| dir.join(self.program()).is_file())
        })
    }

    /// Refuses option combinations this engine cannot honour, before anything runs.
    pub fn check(self, options: &BuildOptions) -> Result<()> {
        if self == Engine::Docker && options.isolation.is_some() {
            bail!(InputError::new(
                "--isolation",
                "docker builds have no isolation choice; use podman or buildah for chroot isolation"
            ));
        }
        Ok(())
    }

    pub fn build_argv(self, context: &Utf8Path, options: &BuildOptions) -> Vec<OsString> {
        let mut argv: Vec<String> = vec![self.program().into()];
        match self {
            Engine::Podman => argv.extend(["build".into(), "--layers".into()]),
            Engine::Buildah => argv.extend(["bud".into(), "--layers".into()]),
            Engine::Docker => argv.push("build".into()),
        }
        match (self, options.pull) {
            // docker's --pull is a switch for "always"; its default pulls only what is missing, and `never`
            // is enforced by `build` looking the base up first.
            (Engine::Docker, Pull::Always) => argv.push("--pull".into()),
            (Engine::Docker, _) => {}
            (_, pull) => argv.push(format!("--pull={}", pull.name())),
        }
        if let Some(isolation) = options.isolation {
            argv.extend(["--isolation".into(), isolation.name()]);
        }
        for label in options.labels {
            argv.extend(["--label".into(), format!("{}={}", label.key, label.value)]);
        }
        argv.extend([
            "--tag".into(),
            options.tag.to_string(),
            "--file".into(),
            context.join("Containerfile").into_string(),
            context.to_string(),
        ]);
        argv.into_iter().map(OsString::from).collect()
    }

    pub fn push_argv(self, image: &ImageRef) -> Vec<OsString> {
        [self.program(), "push", image.as_str()]
            .into_iter()
            .map(OsString::from)
            .collect()
    }

    /// Whether `image` is in the engine's local storage.
    pub fn has_image(self, image: &ImageRef) -> Result<bool> {
        let argv: Vec<&str> = match self {
            Engine::Podman => vec!["podman", "image", "exists", image.as_str()],
            Engine::Buildah => vec!["buildah", "inspect", "--type", "image", image.as_str()],
            Engine::Docker => vec!["docker", "image", "inspect", image.as_str()],
        };
        Cmd::new(argv[0]).args(&argv[1..]).answers_yes()
    }
}

trait ValueName {
    fn name(&self) -> String;
}

impl<T: ValueEnum> ValueName for T {
    fn name(&self) -> String {
        self.to_possible_value()
            .expect("no skipped variants")
            .get_name()
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(engine: Engine, isolation: Option<Isolation>, pull: Pull, labels: &[Label]) -> String {
        let tag: ImageRef = "localhost/vfio:1".parse().unwrap();
        let options = BuildOptions {
            tag: &tag,
            isolation,
            pull,
            labels,
        };
        let argv = engine.build_argv(Utf8Path::new("/ctx"), &options);
        argv.iter()
            .map(|a| a.to_str().unwrap())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn podman_and_buildah_take_pull_policy_and_isolation() {
        let labels = ["org.example.ci=42".parse().unwrap()];
        assert_eq!(
            argv(
                Engine::Podman,
                Some(Isolation::Chroot),
                Pull::Never,
                &labels
            ),
            "podman build --layers --pull=never --isolation chroot --label org.example.ci=42 \
             --tag localhost/vfio:1 --file /ctx/Containerfile /ctx"
        );
        assert_eq!(
            argv(Engine::Buildah, None, Pull::Always, &[]),
            "buildah bud --layers --pull=always --tag localhost/vfio:1 --file /ctx/Containerfile /ctx"
        );
    }

    #[test]
    fn docker_pull_is_a_switch_and_isolation_is_refused() {
        assert_eq!(
            argv(Engine::Docker, None, Pull::Always, &[]),
            "docker build --pull --tag localhost/vfio:1 --file /ctx/Containerfile /ctx"
        );
        assert_eq!(
            argv(Engine::Docker, None, Pull::Missing, &[]),
            "docker build --tag localhost/vfio:1 --file /ctx/Containerfile /ctx"
        );
        let tag: ImageRef = "localhost/vfio:1".parse().unwrap();
        let options = BuildOptions {
            tag: &tag,
            isolation: Some(Isolation::Chroot),
            pull: Pull::Missing,
            labels: &[],
        };
        let err = Engine::Docker.check(&options).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        assert!(Engine::Podman.check(&options).is_ok());
    }

    #[test]
    fn labels_are_checked() {
        let label: Label = "org.opencontainers.image.source=https://x/y"
            .parse()
            .unwrap();
        assert_eq!(label.value, "https://x/y");
        assert!("a=".parse::<Label>().is_ok());
        for bad in ["novalue", "=v", "-a=b", "a b=c", "k=line\nbreak", "k$=v"] {
            assert!(bad.parse::<Label>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn push_names_the_image() {
        let tag: ImageRef = "ghcr.io/me/vfio:latest".parse().unwrap();
        let argv = Engine::Buildah.push_argv(&tag);
        assert_eq!(argv, ["buildah", "push", "ghcr.io/me/vfio:latest"]);
    }
}
