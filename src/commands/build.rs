use anyhow::{Context, Result, bail};
use camino::Utf8PathBuf;

use super::load_config;
use crate::cli::{BuildArgs, Cli};
use crate::error::InputError;
use crate::image::engine::{BuildOptions, Engine, Pull};
use crate::image::{context, fetch, progress, render};
use crate::plan::Plan;

pub fn run(cli: &Cli, args: &BuildArgs) -> Result<()> {
    let (config, source) = load_config(cli, &args.overrides)?;
    let target = cli.image_target();
    let plan = Plan::resolve(&config, &target)?;
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
    let options = BuildOptions {
        tag: &plan.image.tag,
        isolation: args.isolation,
        pull: args.pull,
        labels: &args.labels,
    };
    engine.check(&options)?;
    for warning in plan.image_mode_warnings() {
        errln!("warning: {warning}");
    }
    // docker has no "never pull": look the base up first so an offline build fails before it starts.
    if engine == Engine::Docker
        && args.pull == Pull::Never
        && !engine.has_image(&plan.image.base)?
    {
        bail!(InputError::new(
            "--pull",
            format!(
                "never, but {} is not in docker's local storage",
                plan.image.base
            )
        ));
    }

    let fetched = fetch::fetch_git_sources(&plan, cli.quiet)?;
    let plan = Plan::resolve_fetched(&config, &target, &fetched.checkouts)?;
    let ctx = render::render(&plan)?;
    // Always made (it is cheap) so the context's lifetime is plain: it goes when `build` returns.
    let scratch = tempfile::Builder::new()
        .prefix("passthru-image-context.")
        .tempdir()
        .context("creating a temporary build context")?;
    let dir = match &args.context {
        Some(dir) => dir.clone(),
        None => Utf8PathBuf::try_from(scratch.path().join("context"))
            .context("the temporary directory's path is not UTF-8")?,
    };
    let dir = dir.as_path();
    context::write(&ctx, dir, false)?;
    if !cli.quiet {
        errln!(
            "Building {} with {} from {source} ({} files in {dir})",
            plan.image.tag,
            engine.program(),
            ctx.files.len()
        );
    }
    progress::run_streamed(&engine.build_argv(dir, &options), cli.verbose)
        .context("the image build failed")?;
    if args.push {
        progress::run_streamed(&engine.push_argv(&plan.image.tag), cli.verbose)
            .with_context(|| format!("pushing {} failed", plan.image.tag))?;
    }
    if !cli.quiet {
        out!("{}", usage(&plan, args.push));
    }
    Ok(())
}

/// How to put the image on a host. bootc applies the image's kargs.d itself; rpm-ostree does not, so its
/// hosts get the planned kargs as an explicit command.
fn usage(plan: &Plan, pushed: bool) -> String {
    let tag = &plan.image.tag;
    let mut text = format!("Built {tag}.\n");
    if !pushed {
        text += "Push it to a registry the hosts can reach (or build with --push); on this machine itself:\n";
        text += &format!("  sudo bootc switch --transport containers-storage {tag}\n");
    }
    text += &format!("On a bootc host:\n  sudo bootc switch {tag} && systemctl reboot\n");
    text += &format!(
        "On an rpm-ostree host without bootc:\n  sudo rpm-ostree rebase ostree-unverified-registry:{tag}\n"
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
            "[image]\ntag = \"ghcr.io/me/vfio:1\"\n[cpu]\nvendor = \"intel\"\n[vfio]\nids = [\"10de:1401\"]\n",
        );
        let text = usage(&plan, true);
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
                "sudo rpm-ostree kargs --append-if-missing=intel_iommu=on --append-if-missing=iommu=pt "
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
            usage(&plan, false)
                .contains("bootc switch --transport containers-storage ghcr.io/me/vfio:1\n")
        );
    }
}
