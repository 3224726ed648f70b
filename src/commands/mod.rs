//! One module per command: thin glue from parsed arguments to the library.

mod apply;
mod build;
mod detect;
mod doctor;
mod generate;
mod groups;
mod plan;
mod revert;
mod test_boot;

use anyhow::Result;

use crate::cli::{Cli, Command, OverrideArgs};
use crate::config::{Config, ConfigSource};

pub fn run(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Plan { json, overrides } => plan::run(cli, overrides, *json),
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
            device,
            json,
        } => detect::run(cli, write.as_deref(), *force, *device, *json),
        Command::Doctor {
            json,
            list_checks,
            overrides,
        } => doctor::run(cli, overrides, *json, *list_checks),
        Command::TestBoot(args) => test_boot::run(cli, args),
    }
}

/// The config for this run: `--config`/./passthru.toml/embedded, with the command's overrides applied.
pub fn load_config(cli: &Cli, overrides: &OverrideArgs) -> Result<(Config, ConfigSource)> {
    let (config, source) = Config::load(cli.config.as_deref())?;
    Ok((config.with_overrides(&overrides.into()), source))
}

/// Prints `value` as pretty JSON on stdout: the machine-readable contract of `--json`.
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
