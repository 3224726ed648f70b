//! `ci github`: writes the GitHub Actions workflow for the fleet in `--hosts`.

use anyhow::Result;

use crate::atomic;
use crate::ci_workflow::Workflow;
use crate::cli::{Cli, GithubArgs};
use crate::config::Overrides;
use crate::error::InputError;
use crate::fleet::Fleet;

pub(crate) fn github(cli: &Cli, args: &GithubArgs) -> Result<()> {
    if let Some(path) = &args.write
        && !args.force
        && (path.exists() || path.is_symlink())
    {
        return Err(InputError::new(
            "--write",
            format!("{path} exists; pass --force to replace it, or choose another file"),
        )
        .into());
    }
    let fleet = Fleet::load(&args.hosts, &Overrides::default(), &cli.image_target())?;
    let workflow = Workflow {
        hosts: &args.hosts,
        tool_image: &args.tool_image,
        branch: &args.branch,
        schedule: &args.schedule,
        sign: args.sign,
    };
    let text = workflow.render(&fleet)?;
    match &args.write {
        None => out!("{text}"),
        Some(path) => {
            atomic::write_file(path, "--write", text.as_bytes(), 0o644)?;
            if !cli.quiet {
                errln!(
                    "Wrote {path} for {} hosts; commit it with {}/. The job runs in {}.",
                    fleet.hosts.len(),
                    args.hosts,
                    args.tool_image
                );
            }
        }
    }
    Ok(())
}
