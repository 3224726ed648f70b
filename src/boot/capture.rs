//! `test-boot --capture DIR`: the probe's copy of the sysfs/procfs paths passthru-image reads, sent as a
//! base64 gzip tar on the VM's second serial port, unpacked on the host into a tree for
//! `passthru-image --root DIR groups|detect|doctor`.
//!
//! DIR is checked before anything boots and written only when the archive arrived whole and reads as a host
//! tree: it is unpacked beside DIR and renamed into place, so a failure leaves nothing behind.

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use crate::atomic::{self, Occupied};
use crate::cmd::Cmd;
use crate::error::InputError;
use crate::host::topology::{HostNeeds, Topology};
use crate::root::Root;

/// On the VM's kernel command line: asks the probe to send the tree on ttyS1 (the host's capture file).
pub(crate) const KARG: &str = "passthru_probe.capture=ttyS1";
const BEGIN: &str = "PTCAPTURE-BEGIN";
const END: &str = "PTCAPTURE-END";
const FLAG: &str = "--capture";

/// What was written to DIR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Captured {
    pub(crate) dir: Utf8PathBuf,
    pub(crate) files: usize,
    pub(crate) links: usize,
    pub(crate) pci_devices: usize,
}

/// Refuses a DIR that exists and is not an empty directory (or is a symlink, which would not be replaced but
/// written through), before the image is even mounted.
pub(crate) fn check_target(dir: &Utf8Path) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Ok(meta) if meta.file_type().is_symlink() => bail!(InputError::new(
            FLAG,
            format!("{dir} is a symlink; name the directory itself")
        )),
        _ => {}
    }
    let empty = dir.is_dir()
        && dir
            .read_dir_utf8()
            .with_context(|| format!("reading {dir}"))?
            .next()
            .is_none();
    if !empty {
        bail!(InputError::new(
            FLAG,
            format!("{dir} exists and is not an empty directory; name a new or empty one")
        ));
    }
    Ok(())
}

/// The base64 text between the probe's markers in what the second serial port received.
pub(crate) fn framed(serial: &str) -> Result<String> {
    let Some((_, rest)) = serial.split_once(BEGIN) else {
        bail!("the probe sent no capture (no {BEGIN} on the second serial port)");
    };
    let Some((body, _)) = rest.split_once(END) else {
        bail!("the capture was cut off (no {END} on the second serial port)");
    };
    // The tty turns each newline into CR LF; base64 ignores neither, so drop both.
    Ok(body.chars().filter(|c| !c.is_ascii_whitespace()).collect())
}

/// Unpacks the capture in `serial` into `dir` (which [`check_target`] accepted): into a staging directory
/// first, read back with the same code `groups` uses, then renamed into place.
pub(crate) fn write(serial: &str, dir: &Utf8Path) -> Result<Captured> {
    check_target(dir)?;
    let base64 = framed(serial)?;
    atomic::replace_dir(dir, FLAG, Occupied::Refuse, |staging| {
        unpack(&base64, staging)?;
        summarize(staging, dir)
    })
}

/// `base64 -d`, then `tar -xz` of its output: GNU tar keeps the symlinks as they are and refuses members outside
/// `into`.
fn unpack(base64: &str, into: &Utf8Path) -> Result<()> {
    let archive = Cmd::new("base64")
        .arg("-d")
        .stdin_bytes(base64)
        .read_bytes()
        .context("the capture is not base64")?;
    Cmd::new("tar")
        .args(["-xz", "--no-same-owner", "-f", "-", "-C", into.as_str()])
        .stdin_bytes(archive)
        .read_bytes()
        .context("the capture did not unpack")?;
    Ok(())
}

/// Counts the tree and reads it as `groups` will (devices, groups, USB devices, the root filesystem's
/// controllers): a capture that the detection code cannot read is refused.
fn summarize(tree: &Utf8Path, dir: &Utf8Path) -> Result<Captured> {
    // Flattened to a message: what is wrong is the VM's capture, not the user's --root (exit 1, not 2).
    let unreadable =
        |e: anyhow::Error| anyhow::anyhow!("the captured tree does not read as a host tree: {e:#}");
    let root = Root::new(tree);
    let topology = Topology::read(&root).map_err(unreadable)?;
    HostNeeds::read(&root, &topology).map_err(unreadable)?;
    if topology.devices.is_empty() {
        bail!("the captured tree has no PCI devices");
    }
    let (mut files, mut links) = (0, 0);
    let mut pending = vec![tree.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in d.read_dir_utf8().with_context(|| format!("reading {d}"))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_symlink() {
                links += 1;
            } else if kind.is_dir() {
                pending.push(entry.into_path());
            } else {
                files += 1;
            }
        }
    }
    Ok(Captured {
        dir: dir.to_path_buf(),
        files,
        links,
        pci_devices: topology.devices.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::try_from(dir.path().to_path_buf()).unwrap();
        (dir, path)
    }

    /// What the probe sends for a one-device tree, made with the same tools it uses.
    fn serial_for(tree: &Utf8Path) -> String {
        let body = duct::cmd!("tar", "-C", tree, "-cf", "-", ".")
            .pipe(duct::cmd!("gzip"))
            .pipe(duct::cmd!("base64"))
            .read()
            .unwrap();
        format!(
            "noise\r\n{BEGIN}\r\n{}\r\n{END}\r\n",
            body.replace('\n', "\r\n")
        )
    }

    fn host_tree(root: &Utf8Path) {
        let dev = root.join("sys/devices/pci0000:00/0000:00:02.0");
        std::fs::create_dir_all(&dev).unwrap();
        for (attr, value) in [
            ("vendor", "0x8086"),
            ("device", "0x10d3"),
            ("class", "0x020000"),
        ] {
            std::fs::write(dev.join(attr), format!("{value}\n")).unwrap();
        }
        std::fs::create_dir_all(root.join("sys/bus/pci/devices")).unwrap();
        std::os::unix::fs::symlink(
            "../../../devices/pci0000:00/0000:00:02.0",
            root.join("sys/bus/pci/devices/0000:00:02.0"),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("proc")).unwrap();
        std::fs::write(root.join("proc/cmdline"), "root=/dev/vda\n").unwrap();
    }

    #[test]
    fn a_whole_capture_becomes_a_tree_with_its_links_kept() {
        let (_tmp, tmp) = tempdir();
        host_tree(&tmp.join("vm"));
        let out = tmp.join("out");
        let captured = write(&serial_for(&tmp.join("vm")), &out).unwrap();
        assert_eq!(
            (captured.files, captured.links, captured.pci_devices),
            (4, 1, 1)
        );
        let link = std::fs::read_link(out.join("sys/bus/pci/devices/0000:00:02.0")).unwrap();
        assert_eq!(
            link.to_str(),
            Some("../../../devices/pci0000:00/0000:00:02.0")
        );
        assert_eq!(
            std::fs::read_to_string(out.join("proc/cmdline")).unwrap(),
            "root=/dev/vda\n"
        );
        // An empty directory is as good as none.
        let empty = tmp.join("empty");
        std::fs::create_dir(&empty).unwrap();
        write(&serial_for(&tmp.join("vm")), &empty).unwrap();
        assert!(empty.join("proc/cmdline").is_file());
    }

    #[test]
    fn nothing_is_written_when_the_capture_is_missing_cut_or_unreadable() {
        let (_tmp, tmp) = tempdir();
        host_tree(&tmp.join("vm"));
        let whole = serial_for(&tmp.join("vm"));
        let out = tmp.join("out");
        let cut = whole.split(END).next().unwrap();
        let err = write(cut, &out).unwrap_err().to_string();
        assert!(err.contains("cut off"), "{err}");
        let err = write("kernel noise only\n", &out).unwrap_err().to_string();
        assert!(err.contains("no capture"), "{err}");
        let garbled = whole.replace(BEGIN, &format!("{BEGIN}AAAA"));
        assert!(write(&garbled, &out).is_err());
        // A tree without PCI devices is no use to the detection tests.
        std::fs::remove_dir_all(tmp.join("vm/sys/bus")).unwrap();
        let err = write(&serial_for(&tmp.join("vm")), &out).unwrap_err();
        assert!(format!("{err:#}").contains("no PCI devices"), "{err:#}");
        let left: Vec<_> = tmp
            .read_dir_utf8()
            .unwrap()
            .map(|e| e.unwrap().file_name().to_owned())
            .collect();
        assert_eq!(left, ["vm"], "no output and no staging directory left");
    }

    #[test]
    fn an_existing_non_empty_target_is_bad_input() {
        let (_tmp, tmp) = tempdir();
        assert!(check_target(&tmp.join("new")).is_ok());
        std::fs::write(tmp.join("file"), "x").unwrap();
        for taken in [tmp.clone(), tmp.join("file")] {
            let err = check_target(&taken).unwrap_err();
            let input = err.downcast_ref::<InputError>().expect("an input error");
            assert_eq!(input.field, "--capture");
        }
    }
}
