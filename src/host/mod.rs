//! Facts read from the host (or a fixture tree) through a [`crate::root::Root`].

pub mod cpu;
