//! passthru-image: PCIe/GPU passthrough for immutable Fedora hosts.
//!
//! One [`plan::Plan`] is resolved from `passthru.toml` and the host; executors (image build, live apply,
//! doctor) only carry it out. See DESIGN.md in the project's shared notes and README.md.

pub mod atomic;
pub mod boot;
pub mod checks;
pub(crate) mod ci_workflow;
pub mod cli;
pub(crate) mod cmd;
pub mod commands;
pub mod config;
pub mod detect;
pub mod doctor;
pub mod error;
pub(crate) mod fleet;
pub mod host;
pub mod image;
pub mod image_ref;
pub mod interrupt;
pub mod kargs;
pub mod kargs_d;
pub mod live;
pub(crate) mod mok;
pub mod pci_id;
pub mod plan;
pub mod root;
pub mod text_rules;
pub mod vendor_reset;
pub mod verbosity;
