//! One module per command: thin glue from parsed arguments to the library.
//!
//! Commands print through [`outln!`]/[`out!`] (stdout) and [`warnln!`]/[`noteln!`]/[`infoln!`] (stderr, as
//! `-q` and `-v` allow), never `println!`: stdout may be a full disk, /dev/full or a closed pipe, and a write
//! error must end the run with a one-line error, not a panic.

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

/// A warning on stderr; `-q` leaves it out (see `crate::verbosity`).
macro_rules! warnln {
    ($($arg:tt)*) => {
        $crate::verbosity::say(
            $crate::verbosity::Verbosity::Normal,
            format_args!("warning: {}", format_args!($($arg)*)),
        )
    };
}

/// A note on stderr; `-q` leaves it out.
macro_rules! noteln {
    ($($arg:tt)*) => {
        $crate::verbosity::say(
            $crate::verbosity::Verbosity::Normal,
            format_args!("note: {}", format_args!($($arg)*)),
        )
    };
}

/// Progress and advice on stderr (what was written where, what to run next); `-q` leaves it out.
macro_rules! infoln {
    ($($arg:tt)*) => {
        $crate::verbosity::say($crate::verbosity::Verbosity::Normal, format_args!($($arg)*))
    };
}

mod apply;
mod build;
mod ci;
mod detect;
mod docs;
mod doctor;
mod generate;
mod groups;
mod mok;
mod plan;
mod revert;
mod test_boot;

use anyhow::{Context, Result};
use camino::Utf8Path;

use crate::cli::{CiTarget, Cli, Command, ConfigArg, ImageOverrideArgs, PlanOverrideArgs};
use crate::config::{Config, ConfigSource, Overrides};
use crate::error::InputError;

/// Runs the command line: its options settled (see [`Cli::settle`]), the run's verbosity set, the command run.
pub fn run(cli: Cli) -> Result<()> {
    let cli = cli.settle()?;
    crate::verbosity::set(cli.verbosity());
    dispatch(&cli)?;
    // What is still buffered must reach its file too; a full disk shows only now.
    std::io::stdout()
        .flush()
        .context("writing to standard output")
}

fn dispatch(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Plan(args) => match &args.hosts {
            None => plan::run(args),
            Some(dir) => plan::run_fleet(args, dir),
        },
        Command::Generate(args) => generate::run(cli, args),
        Command::Build(args) => build::run(cli, args),
        Command::Apply(args) => apply::run(cli, args),
        Command::Groups(args) => groups::run(cli, args),
        Command::Detect(args) => detect::run(args),
        Command::Doctor(args) => doctor::run(cli, args),
        Command::Revert(args) => revert::run(cli, args),
        Command::TestBoot(args) => test_boot::run(cli, args),
        Command::Mok { command } => mok::run(cli, command),
        Command::Ci {
            target: CiTarget::Github(args),
        } => ci::github(args),
        Command::Completions(args) => docs::completions(args),
        Command::Man(args) => docs::man(args),
    }
}

/// The config for this run: `--config`/`PASSTHRU_CONFIG`/./passthru.toml/embedded, with the command's
/// overrides applied.
pub(crate) fn load_config(
    config: &ConfigArg,
    overrides: &Overrides,
) -> Result<(Config, ConfigSource)> {
    let (loaded, source) = Config::load(config.file())?;
    Ok((loaded.with_overrides(overrides), source))
}

/// `--hosts` takes each host's config, tag and device IDs from its file: flags that would replace them for every
/// host are refused.
pub(crate) fn refuse_with_hosts(
    config: &ConfigArg,
    plan: &PlanOverrideArgs,
    image: &ImageOverrideArgs,
) -> Result<()> {
    let config_field = config.file().map(|file| file.field);
    let refused = [
        (
            config_field.unwrap_or("--config"),
            config_field.is_some(),
            "each host file is a config",
        ),
        (
            "--tag",
            image.tag.is_some(),
            "each host's tag comes from its file name",
        ),
        (
            "--vfio-ids",
            plan.vfio_ids.is_some(),
            "device IDs are what tells the hosts apart",
        ),
    ];
    match refused.into_iter().find(|(_, given, _)| *given) {
        Some((flag, _, why)) => {
            Err(InputError::new(flag, format!("cannot be used with --hosts: {why}")).into())
        }
        None => Ok(()),
    }
}

/// Where `--write` sends a command's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination<'a> {
    Stdout,
    File(&'a Utf8Path),
}

impl<'a> Destination<'a> {
    /// `--write FILE`; none, or `-`, is standard output.
    pub(crate) fn of(write: Option<&'a Utf8Path>) -> Destination<'a> {
        match write {
            Some(path) if !crate::cli::is_stdout(path) => Destination::File(path),
            _ => Destination::Stdout,
        }
    }

    /// Refuses `flag`, which only means something for a file, with `--write -`.
    pub(crate) fn refuse_for_stdout(self, flag: &str, given: bool) -> Result<()> {
        match (self, given) {
            (Destination::Stdout, true) => Err(InputError::new(
                flag,
                "--write - writes to standard output: there is no file for it to act on",
            )
            .into()),
            _ => Ok(()),
        }
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
