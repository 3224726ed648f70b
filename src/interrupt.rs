//! Ctrl-C (SIGINT) and SIGTERM during a long command that holds resources: instead of dying on the spot,
//! the command notices, stops its child (QEMU) and returns an error, so every guard runs its cleanup (the
//! image is unmounted, the multi-gigabyte scratch disk removed). A terminal's Ctrl-C also reaches the
//! children, which then fail on their own; `main` reports any error after a signal as the interruption
//! (exit 130), not as that child's failure.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(signal: libc::c_int) {
    // Only async-signal-safe work here: an atomic store, and signal(2) so that a second Ctrl-C ends the
    // process at once if the cleanup hangs.
    REQUESTED.store(true, Ordering::SeqCst);
    // SAFETY: signal(2) is async-signal-safe; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
    }
}

/// From now on SIGINT and SIGTERM set a flag instead of ending the process.
pub(crate) fn catch() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler does only async-signal-safe work (an atomic store and signal(2)).
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Whether a caught signal asked the process to stop.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// The error a command returns when it stopped for a signal (`main` exits 130 for it, like a shell).
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted; cleaned up")
    }
}

impl std::error::Error for Interrupted {}

/// Returns [`Interrupted`] when a signal asked to stop: call between steps.
pub(crate) fn check() -> anyhow::Result<()> {
    if requested() {
        Err(Interrupted.into())
    } else {
        Ok(())
    }
}
