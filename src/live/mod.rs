//! Live mode: the plan applied to a running rpm-ostree host (DESIGN §6), verified on its ostree sysroot.

pub mod apply;
pub mod changes;
pub mod deployed_initramfs;
pub mod deployment;
pub mod files;
pub mod initramfs;
pub mod preflight;
pub mod revert;
pub mod rpm_ostree;
pub mod state;
