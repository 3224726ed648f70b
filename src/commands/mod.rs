//! One module per command: thin glue from parsed arguments to the library.
//!
//! Commands print through [`outln!`]/[`out!`] (stdout) and [`errln!`] (stderr), never `println!`: stdout may be
//! a full disk, /dev/full or a closed pipe, and a write error must end the run with a one-line error, not a
//! panic.

use std::io::Write;

/// `println!` that returns the write error (with `?`) instead of panicking.
macro_rules! outln {
    () => {
        $crate::commands::write_stdout(format_args!("\n"))?
    };
    ($($arg:tt)*) => {
        $crate::commands::write_stdout(format_args!("{}\n", format_args!($($arg)*)))?
    };
}

/// `print!` that returns the write error (with `?`) instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::commands::write_stdout(format_args!($($arg)*))?
    };
}

/// `eprintln!` that drops a failed write: stderr is where it would be reported.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::error::stderr_line(format_args!($($arg)*))
    };
}

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

use anyhow::{Context, Result};

use crate::cli::{CiTarget, Cli, Command, OverrideArgs};
use crate::config::{Config, ConfigSource};
use crate::live::changes::HostConflicts;

pub fn run(cli: &Cli) -> Result<()> {
    dispatch(cli)?;
    // What is still buffered must reach its file too; a full disk shows only now.
    std::io::stdout()
        .flush()
        .context("writing to standard output")
}

fn dispatch(cli: &Cli) -> Result<()> {
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
        } => {
            let action = match (*dry_run, *json) {
                (true, false) => apply::Action::Propose(apply::Output::Text),
                (true, true) => apply::Action::Propose(apply::Output::Json),
                (false, _) => apply::Action::Apply,
            };
            let conflicts = match *replace_conflicts {
                true => HostConflicts::Replace,
                false => HostConflicts::Refuse,
            };
            apply::run(cli, overrides, live, action, conflicts)
        }
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
pub(crate) fn load_config(cli: &Cli, overrides: &OverrideArgs) -> Result<(Config, ConfigSource)> {
    let (config, source) = Config::load(cli.config.as_deref())?;
    Ok((config.with_overrides(&overrides.into()), source))
}

/// `--hosts` takes each host's config, tag and device IDs from its file: flags that would replace them for every
/// host are refused.
pub(crate) fn refuse_with_hosts(cli: &Cli, overrides: &OverrideArgs) -> Result<()> {
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
pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Writes to stdout, returning the error a full disk or a closed pipe gives.
pub(crate) fn write_stdout(text: std::fmt::Arguments) -> Result<()> {
    std::io::stdout()
        .lock()
        .write_fmt(text)
        .context("writing to standard output")
}
