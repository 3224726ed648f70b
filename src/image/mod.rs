//! Image mode: the build context rendered from a plan, and the engines that build it.

pub(crate) mod containerfile;
pub(crate) mod context;
pub(crate) mod engine;
pub(crate) mod fetch;
pub(crate) mod labels;
pub(crate) mod progress;
pub mod render;
pub(crate) mod secrets;
