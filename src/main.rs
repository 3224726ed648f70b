use clap::Parser;

use passthru_image::cli::Cli;
use passthru_image::{commands, error, interrupt};

fn main() {
    restore_default_sigpipe();
    if let Err(err) = commands::run(Cli::parse()) {
        // After Ctrl-C the children fail too (they got the signal): that failure is not the story.
        if interrupt::requested() {
            error::stderr_line(format_args!("error: {}", interrupt::Interrupted));
            std::process::exit(error::EXIT_INTERRUPTED);
        }
        error::stderr_line(format_args!("error: {err:#}"));
        std::process::exit(error::exit_code(&err));
    }
}

/// Rust ignores SIGPIPE, which turns `passthru-image groups --json | head` into a panic on the next print.
/// A command-line tool should end quietly like any other Unix filter instead.
fn restore_default_sigpipe() {
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
