use anyhow::Result;
use camino::Utf8Path;

use super::load_config;
use crate::cli::{Cli, OverrideArgs};
use crate::config::signing::PemSource;
use crate::image::secrets::{MOK_CERT, MOK_KEY};
use crate::image::{context, fetch, render};
use crate::plan::Plan;

pub(crate) fn run(
    cli: &Cli,
    overrides: &OverrideArgs,
    output: &Utf8Path,
    force: bool,
) -> Result<()> {
    let (config, source) = load_config(cli, overrides)?;
    let target = cli.image_target();
    let unfetched = Plan::resolve(&config, &target)?;
    let fetched = fetch::fetch_git_sources(&unfetched, cli.quiet)?;
    let plan = Plan::resolve_fetched(&config, &target, &fetched.checkouts)?;
    for warning in plan.image_mode_warnings() {
        errln!("warning: {warning}");
    }
    let ctx = render::render(&plan)?;
    let foreign = match force {
        true => context::Foreign::WriteInto,
        false => context::Foreign::Refuse,
    };
    context::write(&ctx, output, foreign)?;
    if !cli.quiet {
        errln!(
            "Wrote the build context for {} ({} files) from {source} to {output}",
            plan.image.tag,
            ctx.files.len()
        );
        errln!(
            "Build it with: podman build {}-t {} {output}",
            secret_options(&plan),
            plan.image.tag
        );
    }
    Ok(())
}

/// The engine options that lend the signing steps the key and the certificate, when the plan signs.
fn secret_options(plan: &Plan) -> String {
    let Some(signing) = plan.signing.as_ref().filter(|_| plan.signs()) else {
        return String::new();
    };
    // An input the environment holds is named by the file of `mok new` it comes from.
    let src = |source: &PemSource, file: &str| match source {
        PemSource::File { path } => path.to_string(),
        PemSource::Environment { .. } => file.to_owned(),
    };
    format!(
        "--secret id={MOK_KEY},src={} --secret id={MOK_CERT},src={} ",
        src(&signing.key, "MOK.key"),
        src(&signing.certificate.source, "MOK.pem")
    )
}
