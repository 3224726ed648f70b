//! Image mode: the build context rendered from a plan, and the engines that build it.

pub mod context;
pub mod engine;
pub(crate) mod fetch;
pub(crate) mod labels;
pub mod progress;
pub mod render;
