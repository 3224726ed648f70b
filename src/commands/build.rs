use anyhow::{Context, Result, bail};
use camino::Utf8PathBuf;

use super::load_config;
use crate::cli::{BuildArgs, Cli};
use crate::error::InputError;
use crate::image::engine::{BuildOptions, Engine, Pull};
use crate::image::{context, progress, render};
use crate::plan::Plan;

pub fn run(cli: &Cli, args: &BuildArgs) -> Result<()> {
    let (config, source) = load_config(cli, &args.overrides)?;
    let plan = Plan::resolve(&config, &cli.root())?;
    let engine = match args.engine {
        Some(engine) if !engine.is_installed() => bail!(
            "--engine {}: `{}` is not on PATH",
            engine.program(),
            engine.program()
        ),
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
    if let Some(warning) = plan.image_mode_warning() {
        eprintln!("warning: {warning}");
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
        eprintln!(
            "Building {} with {} from {source} ({} files in {dir})",
            plan.image.tag,
            engine.program(),
            ctx.files.len()
        );
    }
    progress::run_streamed(&engine.build_argv(dir, &options), cli.verbose > 0)
        .context("the image build failed")?;
    if args.push {
        progress::run_streamed(&engine.push_argv(&plan.image.tag), cli.verbose > 0)
            .with_context(|| format!("pushing {} failed", plan.image.tag))?;
    }
    if !cli.quiet {
        print_usage(&plan.image.tag, args.push);
    }
    Ok(())
}

fn print_usage(tag: &crate::image_ref::ImageRef, pushed: bool) {
    let local = if pushed {
        ""
    } else {
        " (push it to a registry the host can reach first, or use --push)"
    };
    println!("Built {tag}.");
    println!("On a bootc host{local}:");
    println!("  sudo bootc switch {tag} && systemctl reboot");
    println!("On an rpm-ostree host without bootc:");
    println!("  sudo rpm-ostree rebase ostree-unverified-registry:{tag} && systemctl reboot");
    println!(
        "  note: rpm-ostree does not apply the image's kargs.d (bootc does); add them with `passthru-image apply`."
    );
}
