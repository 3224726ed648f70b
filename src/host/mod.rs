//! Facts read from the host (or a fixture tree) through a [`crate::root::Root`].

pub(crate) mod acpi;
pub(crate) mod bar;
pub(crate) mod block;
pub(crate) mod class;
pub(crate) mod cpu;
pub(crate) mod firmware;
pub(crate) mod iommu;
pub(crate) mod irq;
pub(crate) mod kernel;
pub(crate) mod keys;
pub(crate) mod kmsg;
pub(crate) mod kvm;
pub(crate) mod modprobe;
pub(crate) mod pci;
pub(crate) mod topology;
pub(crate) mod usb;

use crate::root::Root;

/// Whether the root is the machine this tool runs on. A program (journalctl, virt-host-validate) sees only
/// that machine: a check runs one for another root only when the program can be given the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Machine {
    /// The root is `/`.
    This,
    /// A fixture tree, a capture, or a host mounted elsewhere (`--root /host` in a container).
    Other,
}

impl Machine {
    pub(crate) fn of(root: &Root) -> Machine {
        match root.path() == "/" {
            true => Machine::This,
            false => Machine::Other,
        }
    }
}
