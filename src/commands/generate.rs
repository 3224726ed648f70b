use anyhow::Result;

use super::load_config;
use crate::cli::{Cli, GenerateArgs};
use crate::config::signing::PemSource;
use crate::image::secrets::{MOK_CERT, MOK_KEY};
use crate::image::{context, fetch, render};
use crate::plan::Plan;

pub(crate) fn run(cli: &Cli, args: &GenerateArgs) -> Result<()> {
    let (config, source) = load_config(&args.config, &args.overrides.overrides())?;
    let target = args.root.target();
    let unfetched = Plan::resolve(&config, &target)?;
    let fetched = fetch::fetch_git_sources(&unfetched, cli.verbosity())?;
    let plan = Plan::resolve_fetched(&config, &target, &fetched.checkouts)?;
    for warning in plan.image_mode_warnings() {
        warnln!("{warning}");
    }
    let ctx = render::render(&plan)?;
    let output = &args.output;
    let foreign = match args.force {
        true => context::Foreign::WriteInto,
        false => context::Foreign::Refuse,
    };
    context::write(&ctx, output, foreign)?;
    infoln!(
        "Wrote the build context for {} ({} files) from {source} to {output}",
        plan.image.tag,
        ctx.files.len()
    );
    infoln!(
        "Build it with: podman build {}-t {} {output}",
        secret_options(&plan),
        plan.image.tag
    );
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
