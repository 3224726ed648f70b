//! The container engines that build the rendered context: podman, buildah, docker.
//!
//! Each engine is only a different command line for the same acts (pull, look up, build, push an image), so
//! they are one enum with argv builders rather than a trait with three implementations; the argv is what the
//! unit tests check, and what `build` runs.

use std::ffi::OsString;

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use clap::ValueEnum;

use crate::cmd::Cmd;
use crate::error::InputError;
use crate::image_ref::{Digest, ImageRef};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Engine {
    Podman,
    Buildah,
    Docker,
}

/// Process isolation for RUN steps (podman's and buildah's `--isolation`). `chroot` builds where the OCI
/// runtime cannot make cgroups (hybrid cgroup hosts); unset keeps the engine's own default, so
/// BUILDAH_ISOLATION still works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BuildIsolation {
    Oci,
    Chroot,
    Rootless,
}

impl BuildIsolation {
    /// The engine's own spelling, written out: renaming the command-line value cannot change an engine's
    /// command line.
    fn engine_value(self) -> &'static str {
        match self {
            BuildIsolation::Oci => "oci",
            BuildIsolation::Chroot => "chroot",
            BuildIsolation::Rootless => "rootless",
        }
    }
}

/// When the engine may fetch the base image from its registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub(crate) enum Pull {
    Never,
    #[default]
    Missing,
    Always,
}

/// Whether a push checks the registry's TLS certificate. `false` is for a registry on plain HTTP or with a
/// certificate the machine does not trust; it applies to the push only, never to fetching the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub(crate) enum TlsVerify {
    #[default]
    #[value(name = "true")]
    Verify,
    #[value(name = "false")]
    Skip,
}

/// A secret the engine lends to the RUN steps that mount it (`RUN --mount=type=secret,id=ID`), read from a
/// file outside the build context: it reaches no layer, no build argument and no command line but its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BuildSecret {
    pub(crate) id: &'static str,
    /// A private file of this build (src/image/secrets.rs), whose path holds no `,` or `=`.
    pub(crate) src: Utf8PathBuf,
}

/// A `--label KEY=VALUE` for the built image, checked before it reaches the engine's command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Label {
    pub(crate) key: String,
    pub(crate) value: String,
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
                "label key {key:?}: expected letters, digits and . _ - /, starting with a letter \
                 or digit (e.g. org.opencontainers.image.source)"
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

/// How an image is built. The base is already in local storage when the build starts (`build` pulls it first
/// and records its digest), so the engine is never allowed to fetch it again: the image is built from exactly
/// the base its label names.
#[derive(Debug, Clone)]
pub(crate) struct BuildOptions<'a> {
    pub(crate) tag: &'a ImageRef,
    pub(crate) isolation: Option<BuildIsolation>,
    pub(crate) labels: &'a [Label],
    pub(crate) secrets: &'a [BuildSecret],
}

#[derive(Debug, Clone)]
pub(crate) struct PushOptions<'a> {
    pub(crate) tls_verify: TlsVerify,
    /// Where podman and buildah write the pushed manifest's digest (docker reports it in its image store).
    pub(crate) digest_file: &'a Utf8Path,
}

impl Engine {
    /// The first of podman, buildah, docker found on PATH: podman is bootc's own tool.
    pub(crate) fn detect() -> Result<Engine> {
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

    pub(crate) fn program(self) -> &'static str {
        match self {
            Engine::Podman => "podman",
            Engine::Buildah => "buildah",
            Engine::Docker => "docker",
        }
    }

    pub(crate) fn is_installed(self) -> bool {
        std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| dir.join(self.program()).is_file())
        })
    }

    /// Refuses option combinations this engine cannot honour, before anything runs.
    pub(crate) fn check(
        self,
        isolation: Option<BuildIsolation>,
        tls_verify: TlsVerify,
    ) -> Result<()> {
        if self == Engine::Docker && isolation.is_some() {
            bail!(InputError::new(
                "--isolation",
                "docker builds have no isolation choice; use podman or buildah for chroot isolation"
            ));
        }
        if self == Engine::Docker && tls_verify == TlsVerify::Skip {
            bail!(InputError::new(
                "--tls-verify",
                "docker has no per-push TLS switch; list the registry in the docker daemon's \
                 insecure-registries, or use podman or buildah"
            ));
        }
        Ok(())
    }

    pub(crate) fn pull_argv(self, image: &ImageRef) -> Vec<OsString> {
        [self.program(), "pull", image.as_str()]
            .into_iter()
            .map(OsString::from)
            .collect()
    }

    pub(crate) fn build_argv(self, context: &Utf8Path, options: &BuildOptions) -> Vec<OsString> {
        let mut argv: Vec<String> = vec![self.program().into()];
        match self {
            Engine::Podman => argv.extend(["build".into(), "--layers".into()]),
            Engine::Buildah => argv.extend(["bud".into(), "--layers".into()]),
            Engine::Docker => argv.push("build".into()),
        }
        // docker has no "never": its default takes a base that is in local storage, which it is by now.
        if self != Engine::Docker {
            argv.push("--pull=never".into());
        }
        if let Some(isolation) = options.isolation {
            argv.extend(["--isolation".into(), isolation.engine_value().into()]);
        }
        // podman and buildah turn each --label into a LABEL step after the last instruction: a user's label
        // never costs the cached layers below it.
        for label in options.labels {
            argv.extend(["--label".into(), format!("{}={}", label.key, label.value)]);
        }
        for secret in options.secrets {
            argv.extend([
                "--secret".into(),
                format!("id={},src={}", secret.id, secret.src),
            ]);
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

    pub(crate) fn push_argv(self, image: &ImageRef, options: &PushOptions) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec![self.program().into(), "push".into()];
        if self != Engine::Docker {
            argv.push("--digestfile".into());
            argv.push(options.digest_file.as_os_str().to_owned());
            if options.tls_verify == TlsVerify::Skip {
                argv.push("--tls-verify=false".into());
            }
        }
        argv.push(image.as_str().into());
        argv
    }

    /// The digest of the manifest a finished push stored in the registry.
    pub(crate) fn pushed_digest(self, image: &ImageRef, options: &PushOptions) -> Result<Digest> {
        let text = match self {
            Engine::Docker => {
                let digests = self.repo_digests(image)?;
                return digests
                    .into_iter()
                    .next()
                    .with_context(|| format!("docker recorded no registry digest for {image}"));
            }
            _ => std::fs::read_to_string(options.digest_file)
                .with_context(|| format!("reading {}", options.digest_file))?,
        };
        text.trim()
            .parse::<Digest>()
            .map_err(|e| anyhow::anyhow!("{} wrote no digest for {image}: {e}", self.program()))
    }

    /// The digest of the manifest the engine last stored for `image`: right after a pull, the digest the registry
    /// serves for it, which `skopeo inspect docker://IMAGE` reports while the registry still serves that image.
    /// None for an image docker holds no registry digest of (built locally).
    pub(crate) fn image_digest(self, image: &ImageRef) -> Result<Option<Digest>> {
        if let Some(digest) = image.digest() {
            return Ok(Some(digest));
        }
        let text = match self {
            // podman's `.Digest` is the first manifest the image was ever stored with: when the same image was
            // also pulled under another name (a mirror, a copy) it is not the one this pull got. buildah
            // reports the manifest stored last, from the same storage; podman alone has nothing better.
            Engine::Podman if !Engine::Buildah.is_installed() => query(&[
                "podman",
                "image",
                "inspect",
                "--format",
                "{{.Digest}}",
                image.as_str(),
            ])?,
            Engine::Podman | Engine::Buildah => query(&[
                "buildah",
                "inspect",
                "--type",
                "image",
                "--format",
                "{{.FromImageDigest}}",
                image.as_str(),
            ])?,
            Engine::Docker => return Ok(self.repo_digests(image)?.into_iter().next()),
        };
        let text = text.trim();
        text.parse::<Digest>()
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{} reported no digest for {image}: {e}", self.program()))
    }

    /// The registry digests docker recorded for `image`'s repository (`RepoDigests`), in its order.
    fn repo_digests(self, image: &ImageRef) -> Result<Vec<Digest>> {
        let entries: Vec<String> = Cmd::new(self.program())
            .args([
                "image",
                "inspect",
                "--format",
                "{{json .RepoDigests}}",
                image.as_str(),
            ])
            .read_json()?;
        Ok(digests_of_repository(&entries, image.repository()))
    }

    /// Whether `image` is in the engine's local storage.
    pub(crate) fn has_image(self, image: &ImageRef) -> Result<bool> {
        let argv: Vec<&str> = match self {
            Engine::Podman => vec!["podman", "image", "exists", image.as_str()],
            Engine::Buildah => vec!["buildah", "inspect", "--type", "image", image.as_str()],
            Engine::Docker => vec!["docker", "image", "inspect", image.as_str()],
        };
        Cmd::new(argv[0]).args(&argv[1..]).answers_yes()
    }
}

/// The digests in `repo@sha256:…` entries whose repository is `repository`, in their order.
fn digests_of_repository(entries: &[String], repository: &str) -> Vec<Digest> {
    entries
        .iter()
        .filter_map(|entry| entry.split_once('@'))
        .filter(|(repo, _)| *repo == repository)
        .filter_map(|(_, digest)| digest.parse().ok())
        .collect()
}

/// Runs a query of the engine and returns what it printed; a failure carries the engine's own message.
fn query(argv: &[&str]) -> Result<String> {
    Cmd::new(argv[0]).args(&argv[1..]).read()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(argv: &[OsString]) -> String {
        argv.iter()
            .map(|a| a.to_str().unwrap())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn argv(
        engine: Engine,
        isolation: Option<BuildIsolation>,
        labels: &[Label],
        secrets: &[BuildSecret],
    ) -> String {
        let tag: ImageRef = "localhost/vfio:1".parse().unwrap();
        let options = BuildOptions {
            tag: &tag,
            isolation,
            labels,
            secrets,
        };
        joined(&engine.build_argv(Utf8Path::new("/ctx"), &options))
    }

    #[test]
    fn podman_and_buildah_never_pull_during_the_build_and_take_isolation() {
        let labels = ["org.example.ci=42".parse().unwrap()];
        assert_eq!(
            argv(Engine::Podman, Some(BuildIsolation::Chroot), &labels, &[]),
            "podman build --layers --pull=never --isolation chroot --label org.example.ci=42 \
             --tag localhost/vfio:1 --file /ctx/Containerfile /ctx"
        );
        assert_eq!(
            argv(Engine::Buildah, None, &[], &[]),
            "buildah bud --layers --pull=never --tag localhost/vfio:1 --file /ctx/Containerfile \
             /ctx"
        );
    }

    /// podman's and buildah's own words, whatever the command line calls them.
    #[test]
    fn isolation_reaches_the_engine_in_its_spelling() {
        let values: Vec<String> = [
            BuildIsolation::Oci,
            BuildIsolation::Chroot,
            BuildIsolation::Rootless,
        ]
        .into_iter()
        .map(|isolation| argv(Engine::Buildah, Some(isolation), &[], &[]))
        .map(|line| line.split(' ').nth(5).unwrap().to_owned())
        .collect();
        assert_eq!(values, ["oci", "chroot", "rootless"]);
    }

    #[test]
    fn docker_takes_the_local_base_and_refuses_isolation_and_tls_skip() {
        assert_eq!(
            argv(Engine::Docker, None, &[], &[]),
            "docker build --tag localhost/vfio:1 --file /ctx/Containerfile /ctx"
        );
        let err = Engine::Docker
            .check(Some(BuildIsolation::Chroot), TlsVerify::Verify)
            .unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        let err = Engine::Docker.check(None, TlsVerify::Skip).unwrap_err();
        assert!(err.to_string().starts_with("--tls-verify: "), "{err}");
        assert!(
            Engine::Podman
                .check(Some(BuildIsolation::Chroot), TlsVerify::Skip)
                .is_ok()
        );
    }

    #[test]
    fn secrets_go_by_file_never_by_value() {
        let secrets = [
            BuildSecret {
                id: "mok-key",
                src: "/tmp/s/mok-key".into(),
            },
            BuildSecret {
                id: "mok-cert",
                src: "/tmp/s/mok-cert".into(),
            },
        ];
        // BuildKit (docker) and buildah read the same option.
        for engine in [Engine::Podman, Engine::Buildah, Engine::Docker] {
            let text = argv(engine, None, &[], &secrets);
            assert!(
                text.contains(
                    "--secret id=mok-key,src=/tmp/s/mok-key --secret \
                     id=mok-cert,src=/tmp/s/mok-cert --tag"
                ),
                "{text}"
            );
        }
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
    fn push_names_the_image_and_the_digest_file_and_skips_tls_only_when_told() {
        let tag: ImageRef = "ghcr.io/me/vfio:latest".parse().unwrap();
        let mut options = PushOptions {
            tls_verify: TlsVerify::Verify,
            digest_file: Utf8Path::new("/tmp/d"),
        };
        assert_eq!(
            joined(&Engine::Buildah.push_argv(&tag, &options)),
            "buildah push --digestfile /tmp/d ghcr.io/me/vfio:latest"
        );
        options.tls_verify = TlsVerify::Skip;
        assert_eq!(
            joined(&Engine::Podman.push_argv(&tag, &options)),
            "podman push --digestfile /tmp/d --tls-verify=false ghcr.io/me/vfio:latest"
        );
        assert_eq!(
            joined(&Engine::Docker.push_argv(&tag, &options)),
            "docker push ghcr.io/me/vfio:latest"
        );
        assert_eq!(
            joined(&Engine::Podman.pull_argv(&tag)),
            "podman pull ghcr.io/me/vfio:latest"
        );
    }

    #[test]
    fn repository_digests_are_taken_for_the_image_repository_only() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let entries = [
            format!("localhost/passthru-test-base@{a}"),
            format!("127.0.0.1:5000/e2e/base@{b}"),
            "garbage".to_owned(),
        ];
        let digests = digests_of_repository(&entries, "127.0.0.1:5000/e2e/base");
        assert_eq!(digests, [b.parse::<Digest>().unwrap()]);
        assert!(digests_of_repository(&entries, "127.0.0.1:5000/e2e").is_empty());
    }
}
