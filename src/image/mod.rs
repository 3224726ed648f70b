//! Image mode: the build context rendered from a plan, and the engines that build it.

pub mod context;
pub mod render;
