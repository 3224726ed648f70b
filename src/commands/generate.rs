use anyhow::Result;
use camino::Utf8Path;

use super::load_config;
use crate::cli::{Cli, OverrideArgs};
use crate::image::{context, fetch, render};
use crate::plan::Plan;

pub fn run(cli: &Cli, overrides: &OverrideArgs, output: &Utf8Path, force: bool) -> Result<()> {
    let (config, source) = load_config(cli, overrides)?;
    let target = cli.image_target();
    let unfetched = Plan::resolve(&config, &target)?;
    let fetched = fetch::fetch_git_sources(&unfetched, cli.quiet)?;
    let plan = Plan::resolve_fetched(&config, &target, &fetched.checkouts)?;
    for warning in plan.image_mode_warnings() {
        errln!("warning: {warning}");
    }
    let ctx = render::render(&plan)?;
    context::write(&ctx, output, force)?;
    if !cli.quiet {
        errln!(
            "Wrote the build context for {} ({} files) from {source} to {output}",
            plan.image.tag,
            ctx.files.len()
        );
        errln!("Build it with: podman build -t {} {output}", plan.image.tag);
    }
    Ok(())
}
