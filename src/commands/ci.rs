//! `ci github`: writes the GitHub Actions workflow for the fleet in `--hosts`.

use anyhow::Result;

use super::Destination;
use crate::atomic;
use crate::ci_workflow::Workflow;
use crate::cli::GithubArgs;
use crate::config::Overrides;
use crate::error::InputError;
use crate::fleet::Fleet;
use crate::plan::Target;

pub(crate) fn github(args: &GithubArgs) -> Result<()> {
    let destination = Destination::of(args.write.as_deref());
    destination.refuse_for_stdout("--force", args.force)?;
    if let Destination::File(path) = destination
        && !args.force
        && (path.exists() || path.is_symlink())
    {
        return Err(InputError::new(
            "--write",
            format!("{path} exists; pass --force to replace it, or choose another file"),
        )
        .into());
    }
    // The workflow builds images for the fleet's hosts, which the runner cannot see.
    let fleet = Fleet::load(&args.hosts, &Overrides::default(), &Target::Image)?;
    let workflow = Workflow {
        hosts: &args.hosts,
        tool_image: &args.tool_image,
        branch: &args.branch,
        schedule: &args.schedule,
        sign: args.sign,
    };
    let text = workflow.render(&fleet)?;
    match destination {
        Destination::Stdout => out!("{text}"),
        Destination::File(path) => {
            atomic::write_file(path, "--write", text.as_bytes(), 0o644)?;
            infoln!(
                "Wrote {path} for {} hosts; commit it with {}/. The job runs in {}.",
                fleet.hosts.len(),
                args.hosts,
                args.tool_image
            );
        }
    }
    Ok(())
}
