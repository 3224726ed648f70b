//! `build`: render the build context and run the engine, for one config or a fleet of host configs (`--hosts`),
//! then optionally push. The base is made local first (per `--pull`) and its digest recorded in a label, so
//! every image of a run is built from the same base and says which one.

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};

use super::{load_config, refuse_with_hosts};
use crate::atomic;
use crate::cli::{BuildArgs, Cli};
use crate::config::Config;
use crate::config::signing::{KEY_ENV, SigningKey};
use crate::error::InputError;
use crate::fleet::{Fleet, Host};
use crate::image::engine::{BuildOptions, Engine, Pull, PushOptions};
use crate::image::labels::{self, Provenance};
use crate::image::secrets::SigningSecrets;
use crate::image::{context, fetch, progress, render};
use crate::image_ref::{Digest, ImageRef};
use crate::plan::Plan;
use crate::verbosity::Verbosity;

pub(crate) fn run(cli: &Cli, args: &BuildArgs) -> Result<()> {
    check_digest_file(args)?;
    if let Some(dir) = &args.context {
        context::check(dir, context::Foreign::Refuse)?;
    }
    match &args.hosts {
        None => build_one(cli, args),
        Some(dir) => build_fleet(cli, args, dir),
    }
}

fn build_one(cli: &Cli, args: &BuildArgs) -> Result<()> {
    let (config, source) = load_config(&args.config, &args.overrides.overrides())?;
    let target = args.root.target();
    let unfetched = Plan::resolve(&config, &target)?;
    let builder = Builder::new(cli, args)?;
    let fetched = fetch::fetch_git_sources(&unfetched, cli.verbosity())?;
    let plan = Plan::resolve_fetched(&config, &target, &fetched.checkouts)?;
    let image = Image {
        config: &config,
        plan: &plan,
        origin: source.to_string(),
    };
    let pushed = builder.build_all(&[image], args.context.as_deref())?;
    if let (Some(file), Some(digest)) = (&args.digest_file, &pushed[0]) {
        // podman's --digestfile format, which CI steps already read.
        atomic::write_file(file, "--digest-file", digest.to_string().as_bytes(), 0o644)?;
    }
    if cli.verbosity() >= Verbosity::Normal {
        out!("{}", usage(&plan, pushed[0].as_ref()));
    }
    Ok(())
}

fn build_fleet(cli: &Cli, args: &BuildArgs, dir: &Utf8Path) -> Result<()> {
    refuse_with_hosts(&args.config, &args.overrides.plan, &args.overrides.image)?;
    if args.context.is_some() {
        bail!(InputError::new(
            "--context",
            "cannot be used with --hosts: see one host's context with `generate --config \
             HOSTS/NAME.toml`"
        ));
    }
    let target = args.root.target();
    let fleet = Fleet::load(dir, &args.overrides.overrides(), &target)?;
    let builder = Builder::new(cli, args)?;
    let stacks = fleet.stacks();
    // Each stack's hosts one after another, so its layers are built once and then found in the cache. They share
    // their module sources too: fetched once per stack, and kept until every build has read them.
    let mut hosts: Vec<&Host> = Vec::new();
    let mut plans: Vec<Plan> = Vec::new();
    let mut sources = Vec::new();
    for stack in &stacks {
        let fetched = fetch::fetch_git_sources(&stack.hosts[0].plan, cli.verbosity())?;
        for host in &stack.hosts {
            plans.push(host.resolve_fetched(&target, &fetched.checkouts)?);
            hosts.push(host);
        }
        sources.push(fetched);
    }
    let images: Vec<Image> = hosts
        .iter()
        .zip(&plans)
        .map(|(host, plan)| Image {
            config: &host.config,
            plan,
            origin: format!("{} (stack {})", host.file, host.stack.short()),
        })
        .collect();
    let pushed = builder.build_all(&images, None)?;
    if let Some(file) = &args.digest_file {
        let lines: String = hosts
            .iter()
            .zip(&pushed)
            .filter_map(|(host, digest)| {
                let digest = digest.as_ref()?;
                Some(format!("{}@{digest}\n", host.plan.image.tag.repository()))
            })
            .collect();
        atomic::write_file(file, "--digest-file", lines.as_bytes(), 0o644)?;
    }
    if cli.verbosity() >= Verbosity::Normal {
        out!("{}", fleet_usage(&hosts, &pushed, stacks.len()));
    }
    Ok(())
}

/// `--digest-file` must be writable where it is named, before a build of many minutes.
fn check_digest_file(args: &BuildArgs) -> Result<()> {
    let Some(file) = &args.digest_file else {
        return Ok(());
    };
    let dir = file.parent().filter(|d| !d.as_str().is_empty());
    if file.file_name().is_none() || file.is_dir() || dir.is_some_and(|d| !d.is_dir()) {
        bail!(InputError::new(
            "--digest-file",
            format!("{file} is not a file in an existing directory")
        ));
    }
    Ok(())
}

/// One image of a run.
struct Image<'a> {
    config: &'a Config,
    plan: &'a Plan,
    /// Where its config came from, for messages.
    origin: String,
}

/// What every image of a run shares: the engine, the flags, the CI provenance.
struct Builder<'a> {
    cli: &'a Cli,
    args: &'a BuildArgs,
    engine: Engine,
    provenance: Provenance,
}

impl<'a> Builder<'a> {
    fn new(cli: &'a Cli, args: &'a BuildArgs) -> Result<Builder<'a>> {
        let engine = match args.engine {
            Some(engine) if !engine.is_installed() => bail!(InputError::new(
                "--engine",
                format!(
                    "`{}` is not on PATH; install it or choose podman, buildah or docker",
                    engine.program()
                )
            )),
            Some(engine) => engine,
            None => Engine::detect()?,
        };
        engine.check(args.isolation, args.tls_verify.unwrap_or_default())?;
        Ok(Builder {
            cli,
            args,
            engine,
            provenance: Provenance::from_env()?,
        })
    }

    /// Builds (and with `--push` pushes) every image in order; returns each pushed digest.
    fn build_all(
        &self,
        images: &[Image],
        context_dir: Option<&Utf8Path>,
    ) -> Result<Vec<Option<Digest>>> {
        let in_image = |image: &Image, text: String| match images.len() {
            1 => text,
            _ => format!("{}: {text}", image.origin),
        };
        for image in images {
            for warning in image.plan.image_mode_warnings() {
                warnln!("{}", in_image(image, warning));
            }
            if let Some(warning) = unused_key_warning(image.plan) {
                warnln!("{}", in_image(image, warning));
            }
        }
        // Every key is read and checked before anything is pulled or built.
        let mut keys = Vec::new();
        for image in images {
            keys.push(
                signing_key(image.plan).map_err(|e| match e.downcast::<InputError>() {
                    Ok(input) => {
                        InputError::new(in_image(image, input.field), input.message).into()
                    }
                    Err(e) => e,
                })?,
            );
        }
        // Each base once, before any build: with --pull always, all images get the same pull of it.
        let mut bases: Vec<(&ImageRef, Option<Digest>)> = Vec::new();
        for image in images {
            let base = &image.plan.image.base;
            if !bases.iter().any(|(b, _)| *b == base) {
                bases.push((base, self.make_local(base)?));
            }
        }
        let mut pushed = Vec::new();
        for (i, (image, key)) in images.iter().zip(&keys).enumerate() {
            let base_digest = bases
                .iter()
                .find(|(b, _)| **b == image.plan.image.base)
                .and_then(|(_, digest)| digest.as_ref());
            let count = match images.len() {
                1 => String::new(),
                n => format!(" [{}/{n}]", i + 1),
            };
            self.build(image, key.as_ref(), &count, base_digest, context_dir)?;
            pushed.push(match self.args.push {
                true => Some(self.push(&image.plan.image.tag)?),
                false => None,
            });
        }
        Ok(pushed)
    }

    /// Puts the base in local storage as `--pull` allows, and returns its digest for the label.
    fn make_local(&self, base: &ImageRef) -> Result<Option<Digest>> {
        let engine = self.engine;
        let fetch = match self.args.pull {
            Pull::Always => true,
            Pull::Missing => !engine.has_image(base)?,
            Pull::Never if engine.has_image(base)? => false,
            Pull::Never => bail!(InputError::new(
                "--pull",
                format!(
                    "never, but {base} is not in {}'s local storage",
                    engine.program()
                )
            )),
        };
        if fetch {
            progress::run_streamed(&engine.pull_argv(base), self.cli.verbosity())
                .with_context(|| format!("pulling the base {base} failed"))?;
        }
        let digest = engine.image_digest(base)?;
        if digest.is_none() {
            warnln!(
                "{} knows no registry digest of {base} (built locally?): the image gets no {} \
                 label",
                engine.program(),
                labels::BASE_DIGEST
            );
        }
        Ok(digest)
    }

    /// Builds one image, signed with `key` when its plan signs; `count` says which of the run's images it is
    /// (" [2/10]"), empty for a single one.
    fn build(
        &self,
        image: &Image,
        key: Option<&SigningKey>,
        count: &str,
        base_digest: Option<&Digest>,
        keep_in: Option<&Utf8Path>,
    ) -> Result<()> {
        let plan = image.plan;
        let computed = labels::image_labels(
            &self.provenance,
            base_digest,
            &labels::config_sha256(image.config),
            &self.args.labels,
        );
        // Written outside the context for this build only, and removed when it returns.
        let secrets = match (key, &plan.signing) {
            (Some(key), Some(signing)) => Some(SigningSecrets::write(key, &signing.certificate)?),
            _ => None,
        };
        let secret_options = secrets
            .as_ref()
            .map(SigningSecrets::build_secrets)
            .unwrap_or_default();
        let options = BuildOptions {
            tag: &plan.image.tag,
            isolation: self.args.isolation,
            labels: &self.args.labels,
            secrets: &secret_options,
        };
        let ctx = render::render_labelled(plan, &computed)?;
        // Always made (it is cheap) so the context's lifetime is plain: it goes when the build returns.
        let scratch = scratch_dir("passthru-image-context.")?;
        let dir = match keep_in {
            Some(dir) => dir.to_owned(),
            None => Utf8PathBuf::try_from(scratch.path().join("context"))
                .context("the temporary directory's path is not UTF-8")?,
        };
        context::write(&ctx, &dir, context::Foreign::Refuse)?;
        infoln!(
            "Building {}{count} with {} from {} ({} files in {dir})",
            plan.image.tag,
            self.engine.program(),
            image.origin,
            ctx.files.len()
        );
        progress::run_streamed(
            &self.engine.build_argv(&dir, &options),
            self.cli.verbosity(),
        )
        .with_context(|| format!("the build of {} failed", plan.image.tag))
    }

    /// Pushes `tag` and returns the digest the registry stored it under. A failed push leaves the built image.
    fn push(&self, tag: &ImageRef) -> Result<Digest> {
        let scratch = scratch_dir("passthru-image-push.")?;
        let digest_file = Utf8PathBuf::try_from(scratch.path().join("digest"))
            .context("the temporary directory's path is not UTF-8")?;
        let options = PushOptions {
            tls_verify: self.args.tls_verify.unwrap_or_default(),
            digest_file: &digest_file,
        };
        progress::run_streamed(&self.engine.push_argv(tag, &options), self.cli.verbosity())
            .with_context(|| format!("pushing {tag} failed (the image stays in local storage)"))?;
        self.engine.pushed_digest(tag, &options)
    }
}

/// The private key of an image whose plan signs something, read and checked against the plan's certificate.
fn signing_key(plan: &Plan) -> Result<Option<SigningKey>> {
    match &plan.signing {
        Some(signing) if plan.signs() => {
            Ok(Some(SigningKey::read(&signing.key, &signing.certificate)?))
        }
        _ => Ok(None),
    }
}

/// A key in the environment that nothing will use: the config has no `[signing]` for what it builds.
fn unused_key_warning(plan: &Plan) -> Option<String> {
    let builds_code = !plan.modules.is_empty() || plan.kernel.is_some();
    let key_set = std::env::var_os(KEY_ENV).is_some_and(|v| !v.is_empty());
    (builds_code && key_set && plan.signing.is_none()).then(|| {
        format!(
            "{KEY_ENV} is set, but the config has no [signing]: nothing is signed with it (add \
             [signing])"
        )
    })
}

fn scratch_dir(prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .context("creating a temporary directory")
}

/// What a fleet build made, and how each host takes its image.
fn fleet_usage(hosts: &[&Host], pushed: &[Option<Digest>], stacks: usize) -> String {
    let plural = if stacks == 1 { "" } else { "s" };
    let mut text = format!("Built {} images on {stacks} stack{plural}:\n", hosts.len());
    let width = hosts.iter().map(|h| h.name.len()).max().unwrap_or(0);
    for (host, digest) in hosts.iter().zip(pushed) {
        let tag = &host.plan.image.tag;
        text += &format!("  {:width$}  {tag}", host.name);
        if let Some(digest) = digest {
            text += &format!(", pushed as {}@{digest}", tag.repository());
        }
        text += "\n";
    }
    if pushed.iter().any(Option::is_none) {
        text += "Push them to a registry the hosts can reach (or build with --push).\n";
    }
    text += "On each bootc host, its own image (bootc applies the image's kernel arguments):\n";
    for host in hosts {
        text += &format!(
            "  {:width$}  sudo bootc switch {} && systemctl reboot\n",
            host.name, host.plan.image.tag
        );
    }
    text + "Hosts without bootc: rpm-ostree does not apply kargs.d; `passthru-image --config \
            HOST-FILE plan` lists the kernel arguments to add with `rpm-ostree kargs \
            --append-if-missing`.\n"
}

/// How to put the image on a host. bootc applies the image's kargs.d itself; rpm-ostree does not, so its
/// hosts get the planned kargs as an explicit command.
fn usage(plan: &Plan, pushed: Option<&Digest>) -> String {
    let tag = &plan.image.tag;
    let mut text = format!("Built {tag}.\n");
    if let Some(digest) = pushed {
        text += &format!("Pushed as {}@{digest}\n", tag.repository());
    } else {
        text += "Push it to a registry the hosts can reach (or build with --push); on this machine \
             itself:\n";
        text += &format!("  sudo bootc switch --transport containers-storage {tag}\n");
    }
    text += &format!("On a bootc host:\n  sudo bootc switch {tag} && systemctl reboot\n");
    text += &format!(
        "On an rpm-ostree host without bootc:\n  sudo rpm-ostree rebase \
         ostree-unverified-registry:{tag}\n"
    );
    if !plan.kargs.is_empty() {
        let append: Vec<String> = plan
            .kargs
            .iter()
            .map(|karg| format!("--append-if-missing={karg}"))
            .collect();
        text +=
            "  note: rpm-ostree does not apply the image's kargs.d (only bootc does); add them:\n";
        text += &format!("  sudo rpm-ostree kargs {}\n", append.join(" "));
    }
    text + "  then reboot: systemctl reboot\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn plan(toml: &str) -> Plan {
        let config = Config::from_toml(toml, "t.toml").unwrap();
        Plan::resolve(&config, &crate::plan::Target::Image).unwrap()
    }

    #[test]
    fn usage_names_both_switch_routes_and_gives_rpm_ostree_hosts_the_kargs() {
        let plan = plan(
            "[image]\ntag = \"ghcr.io/me/vfio:1\"\n[cpu]\nvendor = \"intel\"\n[vfio]\nids = \
             [\"10de:1401\"]\n",
        );
        let digest: Digest = format!("sha256:{}", "d".repeat(64)).parse().unwrap();
        let text = usage(&plan, Some(&digest));
        assert!(
            text.contains(&format!("Pushed as ghcr.io/me/vfio@{digest}\n")),
            "{text}"
        );
        assert!(
            text.contains("sudo bootc switch ghcr.io/me/vfio:1 "),
            "{text}"
        );
        assert!(
            text.contains("rpm-ostree rebase ostree-unverified-registry:ghcr.io/me/vfio:1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "sudo rpm-ostree kargs --append-if-missing=intel_iommu=on \
                 --append-if-missing=iommu=pt "
            ),
            "{text}"
        );
        assert!(
            text.contains("--append-if-missing=vfio_pci.ids=10de:1401\n"),
            "{text}"
        );
        assert!(
            !text.contains("containers-storage"),
            "pushed images need no local route: {text}"
        );
        assert!(
            usage(&plan, None)
                .contains("bootc switch --transport containers-storage ghcr.io/me/vfio:1\n")
        );
    }
}
