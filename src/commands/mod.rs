//! One module per command: thin glue from parsed arguments to the library.

mod apply;
mod build;
mod ci;
mod detect;
mod doctor;
mod generate;
mod groups;
mod mok;
mod plan;
mod revert;
mod test_boot;

use anyhow::Result;

use crate::cli::{CiTarget, Cli, Command, OverrideArgs};
use crate::config::{Config, ConfigSource};

pub fn run(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Plan {
            json,
            hosts: None,
            overrides,
        } => plan::run(cli, overrides, *json),
        Command::Plan {
            json,
            hosts: Some(dir),
            overrides,
        } => plan::run_fleet(cli, overrides, dir, *json),
        Command::Generate {
            output,
            force,
            overrides,
        } => generate::run(cli, overrides, output, *force),
        Command::Apply {
            live,
            dry_run,
            replace_conflicts,
            json,
            overrides,
        } => apply::run(cli, overrides, live, *dry_run, *replace_conflicts, *json),
        Command::Build(args) => build::run(cli, args),
        Command::Revert { live } => revert::run(cli, live),
        Command::Groups { json, gpus, class } => {
            let mut classes = class.clone();
            if *gpus {
                classes.push(crate::host::class::DeviceClass::Gpu);
            }
            groups::run(cli, *json, &classes)
        }
        Command::Detect {
            write,
            force,
            merge,
            device,
            sysroot,
            json,
        } => detect::run(
            cli,
            &detect::Options {
                write: write.as_deref(),
                existing: match (*force, *merge) {
                    (true, _) => detect::Existing::Replace,
                    (_, true) => detect::Existing::Merge,
                    _ => detect::Existing::Refuse,
                },
                device: *device,
                sysroot: sysroot.as_deref(),
                json: *json,
            },
        ),
        Command::Doctor {
            json,
            list_checks,
            overrides,
        } => doctor::run(cli, overrides, *json, *list_checks),
        Command::TestBoot(args) => test_boot::run(cli, args),
        Command::Mok { command } => mok::run(cli, command),
        Command::Ci {
            target: CiTarget::Github(args),
        } => ci::github(cli, args),
    }
}

/// The config for this run: `--config`/./passthru.toml/embedded, with the command's overrides applied.
pub fn load_config(cli: &Cli, overrides: &OverrideArgs) -> Result<(Config, ConfigSource)> {
    let (config, source) = Config::load(cli.config.as_deref())?;
    Ok((config.with_overrides(&overrides.into()), source))
}

/// `--hosts` takes each host's config, tag and device IDs from its file: flags that would replace them for every
/// host are refused.
pub fn refuse_with_hosts(cli: &Cli, overrides: &OverrideArgs) -> Result<()> {
    let refused = [
        (
            "--config",
            cli.config.is_some(),
            "each host file is a config",
        ),
        (
            "--tag",
            overrides.tag.is_some(),
            "each host's tag comes from its file name",
        ),
        (
            "--vfio-ids",
            overrides.vfio_ids.is_some(),
            "device IDs are what tells the hosts apart",
        ),
    ];
    match refused.into_iter().find(|(_, given, _)| *given) {
        Some((flag, _, why)) => Err(crate::error::InputError::new(
            flag,
            format!("cannot be used with --hosts: {why}"),
        )
        .into()),
        None => Ok(()),
    }
}

/// Prints `value` as pretty JSON on stdout: the machine-readable contract of `--json`.
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
