//! Facts read from the host (or a fixture tree) through a [`crate::root::Root`].

pub mod cpu;
pub mod firmware;
pub mod iommu;
pub mod kernel;
pub mod pci;
pub mod topology;
