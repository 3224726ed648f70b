//! Facts read from the host (or a fixture tree) through a [`crate::root::Root`].

pub mod acpi;
pub mod bar;
pub mod block;
pub mod class;
pub mod cpu;
pub mod firmware;
pub mod iommu;
pub mod irq;
pub mod kernel;
pub mod kmsg;
pub mod kvm;
pub mod modprobe;
pub mod pci;
pub mod topology;
pub mod usb;

use crate::root::Root;

/// Whether the root is the machine this tool runs on. A program (journalctl, virt-host-validate) sees only
/// that machine: a check runs one for another root only when the program can be given the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// The root is `/`.
    This,
    /// A fixture tree, a capture, or a host mounted elsewhere (`--root /host` in a container).
    Other,
}

impl Machine {
    pub fn of(root: &Root) -> Machine {
        match root.path() == "/" {
            true => Machine::This,
            false => Machine::Other,
        }
    }
}
