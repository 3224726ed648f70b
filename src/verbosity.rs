//! How much a run says on stderr: one level for every command (`-q`, the default, `-v`, `-vv`).
//!
//! Errors always print, and so does the result a command was asked for (a plan, a proposal, JSON). The rest,
//! from the first level that shows it:
//! - the default: warnings, notes and progress (what was written where, what to run next, one progress line per
//!   build step on a terminal, rpm-ostree's output);
//! - `-v`: the container engine's whole output instead of a progress line, and the command line of every
//!   program the tool runs;
//! - `-vv`: also every file read (the config, the files the user named, host files under `--root`).
//!
//! The level is one setting for the whole process, like a logger's: programs run and files are read deep in
//! the library ([`crate::cmd`], [`crate::root`]), and a flag carried through every signature on the way would
//! put a command-line concern in all of them. [`crate::commands::run`] sets it once, before anything runs.

use std::fmt::Display;
use std::sync::atomic::{AtomicU8, Ordering};

/// The levels, quietest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Verbosity {
    /// `-q`: errors and the result asked for.
    Quiet,
    /// Warnings, notes, progress and advice.
    Normal,
    /// `-v`: the programs' whole output and their command lines.
    Verbose,
    /// `-vv`: every file read.
    Trace,
}

impl Verbosity {
    const ALL: [Verbosity; 4] = [
        Verbosity::Quiet,
        Verbosity::Normal,
        Verbosity::Verbose,
        Verbosity::Trace,
    ];
}

static LEVEL: AtomicU8 = AtomicU8::new(Verbosity::Normal as u8);

/// Sets the level of this run.
pub(crate) fn set(level: Verbosity) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// The level of this run.
pub(crate) fn current() -> Verbosity {
    let stored = LEVEL.load(Ordering::Relaxed);
    Verbosity::ALL
        .into_iter()
        .find(|level| *level as u8 == stored)
        .unwrap_or(Verbosity::Normal)
}

/// Whether this run shows what is shown from `level` on.
pub(crate) fn shows(level: Verbosity) -> bool {
    current() >= level
}

/// Writes `line` to stderr when this run shows `level`.
pub(crate) fn say(level: Verbosity, line: impl Display) {
    if shows(level) {
        crate::error::stderr_line(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_level_shows_what_the_quieter_ones_show() {
        for level in Verbosity::ALL {
            set(level);
            assert_eq!(current(), level);
            assert!(shows(Verbosity::Quiet));
            assert_eq!(shows(Verbosity::Normal), level >= Verbosity::Normal);
            assert_eq!(shows(Verbosity::Trace), level == Verbosity::Trace);
        }
        set(Verbosity::Normal);
    }
}
