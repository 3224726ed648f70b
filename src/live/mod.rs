//! Live mode: the plan applied to a running rpm-ostree host, verified on its ostree sysroot
//! (ARCHITECTURE.md#live-mode-srclive).

pub(crate) mod apply;
pub(crate) mod changes;
pub(crate) mod deployed_initramfs;
pub mod deployment;
pub(crate) mod files;
pub(crate) mod initramfs;
pub(crate) mod preflight;
pub(crate) mod revert;
pub(crate) mod rpm_ostree;
pub(crate) mod session;
pub(crate) mod state;
