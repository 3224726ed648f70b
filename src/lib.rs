//! passthru-image: PCIe/GPU passthrough for immutable Fedora hosts.
//!
//! One [`plan::Plan`] is resolved from `passthru.toml` and the host; executors (image build, live apply,
//! doctor) only carry it out. ARCHITECTURE.md is the map of the code, README.md the user's view.

#![warn(unreachable_pub)]

pub(crate) mod atomic;
pub(crate) mod boot;
pub(crate) mod checks;
pub(crate) mod ci_workflow;
pub mod cli;
pub(crate) mod cmd;
pub mod commands;
pub mod config;
pub(crate) mod detect;
pub(crate) mod doctor;
pub mod error;
pub(crate) mod fleet;
pub(crate) mod host;
pub mod image;
pub(crate) mod image_ref;
pub mod interrupt;
pub mod kargs;
pub mod kargs_d;
pub mod live;
pub(crate) mod mok;
pub(crate) mod pci_id;
pub mod plan;
pub mod root;
pub(crate) mod text_rules;
pub(crate) mod vendor_reset;
pub(crate) mod verbosity;
