//! The kernel's log lines doctor reads: the IOMMU's (whether the driver came up, the default domain type,
//! interrupt remapping, faults, refused options, firmware bugs) and the module loader's refusals under Secure
//! Boot and lockdown.
//!
//! Read from the journal when a program may be run on the host (`journalctl -k -b`, or `journalctl -D` on the
//! root's own journal, which covers the whole boot), else from `/dev/kmsg` under the root (the ring buffer,
//! which may have lost the first lines of a long boot). Neither may be there: the check then says why.

use std::io::Read;

use anyhow::Result;
use camino::Utf8Path;

use crate::cmd::Cmd;
use crate::host::Machine;
use crate::root::{Device, Root};

pub(crate) const KMSG: &str = "/dev/kmsg";
pub(crate) const JOURNAL_DIR: &str = "/var/log/journal";
/// Records read from /dev/kmsg at most: a ring buffer of a few MiB holds far fewer.
const MAX_RECORDS: usize = 1_000_000;
/// Lines of each kind kept for the report; the rest are counted.
const KEPT: usize = 3;

/// The lines of one boot's kernel log that doctor judges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KernelLog {
    /// Where the lines came from (`journalctl -k -b`, `/dev/kmsg`).
    pub(crate) source: String,
    /// Lines read in all.
    pub(crate) lines: usize,
    /// The driver came up (`DMAR: IOMMU enabled`, `AMD-Vi: Found IOMMU ...`).
    pub(crate) enabled: Vec<String>,
    /// `iommu: Default domain type: Passthrough (set via kernel command line)`.
    pub(crate) domain: Option<String>,
    pub(crate) remapping: Vec<String>,
    pub(crate) faults: Vec<String>,
    pub(crate) fault_count: usize,
    /// Options the IOMMU drivers did not take (`AMD-Vi: Unknown option - 'on'`).
    pub(crate) refused: Vec<String>,
    pub(crate) firmware_bugs: Vec<String>,
    /// Modules the kernel refused to load for want of a signature it trusts.
    pub(crate) module_refusals: Vec<String>,
}

const ENABLED: &[&str] = &[
    "DMAR: IOMMU enabled",
    "AMD-Vi: Found IOMMU",
    "perf/amd_iommu: Detected AMD IOMMU",
];
const DOMAIN: &str = "iommu: Default domain type: ";
const REMAPPING: &[&str] = &[
    "DMAR-IR: Enabled IRQ remapping",
    "AMD-Vi: Interrupt remapping enabled",
];
const FAULTS: &[&str] = &[
    "DMAR: DRHD: handling fault",
    "DMAR: [DMA Read",
    "DMAR: [DMA Write",
    "DMAR: [INTR-REMAP",
    "IO_PAGE_FAULT",
    "AMD-Vi: Event logged [",
];
const REFUSED: &str = "Unknown option - '";
/// kernel/module/signing.c with sig_enforce (Debian's and Fedora's kernels under Secure Boot), and
/// security/lockdown/lockdown.c without it (mainline under lockdown).
const MODULE_REFUSALS: &[&str] = &[
    "Loading of unsigned module is rejected",
    "Loading of module with unavailable key is rejected",
    "unsigned module loading is restricted",
];
const IOMMU_WORDS: &[&str] = &["DMAR", "AMD-Vi", "IVRS", "IOMMU", "iommu"];

impl KernelLog {
    /// Sorts one log line into the kinds above.
    pub(crate) fn take(&mut self, line: &str) {
        self.lines += 1;
        let line = line.trim();
        let keep = |list: &mut Vec<String>| {
            if list.len() < KEPT {
                list.push(line.to_owned());
            }
        };
        if let Some((_, domain)) = line.split_once(DOMAIN) {
            self.domain = Some(domain.trim().to_owned());
        } else if ENABLED.iter().any(|p| line.contains(p)) {
            keep(&mut self.enabled);
        } else if REMAPPING.iter().any(|p| line.contains(p)) {
            keep(&mut self.remapping);
        } else if FAULTS.iter().any(|p| line.contains(p)) {
            self.fault_count += 1;
            keep(&mut self.faults);
        } else if line.contains(REFUSED) && IOMMU_WORDS.iter().any(|w| line.contains(w)) {
            keep(&mut self.refused);
        } else if line.contains("[Firmware Bug]") && IOMMU_WORDS.iter().any(|w| line.contains(w)) {
            keep(&mut self.firmware_bugs);
        } else if MODULE_REFUSALS.iter().any(|p| line.contains(p)) {
            keep(&mut self.module_refusals);
        }
    }
}

/// The log, or why none could be read (one reason per source tried).
pub(crate) fn read(root: &Root, machine: Machine) -> Result<KernelLog, Vec<String>> {
    let mut reasons = Vec::new();
    match from_journal(root, machine) {
        Ok(log) => return Ok(log),
        Err(reason) => reasons.push(reason),
    }
    match from_kmsg(root) {
        Ok(log) => return Ok(log),
        Err(reason) => reasons.push(reason),
    }
    Err(reasons)
}

/// `journalctl -k -b`: on this machine, or with `-D` on the root's own persistent journal. A journal of
/// another machine that is not under the root is never read: the program would see this one.
fn from_journal(root: &Root, machine: Machine) -> Result<KernelLog, String> {
    let mut cmd = Cmd::new("journalctl");
    let source = match machine {
        Machine::This => "journalctl -k -b".to_owned(),
        Machine::Other => {
            let dir = root.join(JOURNAL_DIR);
            if !root.is_dir(JOURNAL_DIR) {
                return Err(format!(
                    "no journal under the root ({dir}), and journalctl without -D would read this \
                     machine's"
                ));
            }
            cmd = cmd.arg("-D").arg(dir.as_str());
            format!("journalctl -D {dir} -k -b")
        }
    };
    let mut log = KernelLog {
        source,
        ..KernelLog::default()
    };
    cmd.args(["-k", "-b", "-o", "cat", "--no-pager", "-q"])
        .stream(|line| log.take(line))
        .map_err(|e| format!("{}: {e:#}", log.source))?;
    match log.lines {
        0 => Err(format!("{}: no kernel messages", log.source)),
        _ => Ok(log),
    }
}

/// Every record of `/dev/kmsg` under the root, opened non-blocking: the read ends where the buffer does.
fn from_kmsg(root: &Root) -> Result<KernelLog, String> {
    let path = root.join(KMSG);
    if !root.exists(Utf8Path::new(KMSG)) {
        return Err(format!("no {path}"));
    }
    let mut file = root
        .open_device(Device::Kmsg)
        .map_err(|e| format!("{e:#}"))?;
    let mut log = KernelLog {
        source: path.to_string(),
        ..KernelLog::default()
    };
    // One record per read; a record is at most a little over 1 KiB.
    let mut record = vec![0u8; 16 * 1024];
    while log.lines < MAX_RECORDS {
        match file.read(&mut record) {
            Ok(0) => break,
            Ok(n) => log.take(&message(&record[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            // The ring buffer overwrote the record before it was read: the next read gets the oldest left.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) => return Err(format!("reading {path}: {e}")),
        }
    }
    Ok(log)
}

/// The text of a `/dev/kmsg` record: `prio,seq,usec,flags;text\n` followed by ` KEY=value` lines.
fn message(record: &[u8]) -> String {
    let text = String::from_utf8_lossy(record);
    let body = text.split_once(';').map_or(text.as_ref(), |(_, body)| body);
    body.lines().next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iommu_lines_are_sorted_by_kind() {
        let mut log = KernelLog::default();
        for line in [
            "Command line: BOOT_IMAGE=... amd_iommu=on iommu=pt",
            "AMD-Vi: Unknown option - 'on'",
            "pci 0000:00:00.2: AMD-Vi: Found IOMMU cap 0x40",
            "AMD-Vi: Interrupt remapping enabled",
            "iommu: Default domain type: Passthrough (set via kernel command line)",
            "vfio-pci 0000:0b:00.0: AMD-Vi: Event logged [IO_PAGE_FAULT domain=0x000b \
             address=0xfd000000 flags=0x0020]",
            "vfio-pci 0000:0b:00.0: AMD-Vi: Event logged [IO_PAGE_FAULT domain=0x000b \
             address=0xfd001000 flags=0x0020]",
            "AMD-Vi: [Firmware Bug]: : IOAPIC[32] not in IVRS table",
            "usb 1-2: new high-speed USB device number 2 using xhci_hcd",
            "Loading of module with unavailable key is rejected",
            "Lockdown: modprobe: unsigned module loading is restricted; see man kernel_lockdown.7",
        ] {
            log.take(line);
        }
        assert_eq!(log.lines, 11);
        assert_eq!(log.module_refusals.len(), 2, "{log:?}");
        assert_eq!(log.enabled.len(), 1);
        assert_eq!(
            log.domain.as_deref(),
            Some("Passthrough (set via kernel command line)")
        );
        assert_eq!(log.remapping, ["AMD-Vi: Interrupt remapping enabled"]);
        assert_eq!((log.faults.len(), log.fault_count), (2, 2));
        assert_eq!(log.refused, ["AMD-Vi: Unknown option - 'on'"]);
        assert_eq!(log.firmware_bugs.len(), 1);
        assert_eq!(
            message(b"6,339,5140900,-;DMAR: IOMMU enabled\n SUBSYSTEM=x\n"),
            "DMAR: IOMMU enabled"
        );
    }

    #[test]
    fn a_tree_without_a_journal_or_kmsg_says_why() {
        let (_dir, root) = Root::temporary();
        let reasons = read(&root, Machine::Other).unwrap_err();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(
            reasons[0].contains("no journal under the root"),
            "{reasons:?}"
        );
        assert!(reasons[1].starts_with("no "), "{reasons:?}");
    }

    /// The tests run as root: a node with /dev/kmsg's numbers (1, 11) under a tree reads this machine's
    /// kernel log through the root's named device exception, to its end without blocking.
    #[test]
    fn kmsg_under_the_root_reads_the_ring_buffer_to_its_end() {
        let (_dir, root) = Root::temporary();
        std::fs::create_dir_all(root.join("/dev")).unwrap();
        let node = std::ffi::CString::new(root.join(KMSG).as_str()).unwrap();
        // SAFETY: a valid NUL-terminated path; makedev(1, 11) is /dev/kmsg.
        let made =
            unsafe { libc::mknod(node.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 11)) };
        assert_eq!(made, 0, "mknod needs root");
        let log = read(&root, Machine::Other).unwrap();
        assert!(log.source.ends_with("/dev/kmsg"), "{log:?}");
        assert!(log.lines > 0, "{log:?}");
    }
}
