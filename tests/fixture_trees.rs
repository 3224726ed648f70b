//! The host fixture trees under tests/fixtures/<name>/ are generated from tests/fixtures/hosts/<name>.toml and
//! committed. This test regenerates each one and requires it to equal the committed tree, so a description and
//! its tree never drift apart. To rewrite the trees after changing a description:
//!
//!     PASSTHRU_REGENERATE_FIXTURES=1 cargo test --test fixture_trees
//!
//! The trees have the layout of real sysfs: devices live under sys/devices/pci<domain>:<bus>/<bridge>/.../<addr>,
//! sys/bus/pci/devices/<addr> are relative symlinks to them, `driver` and `iommu_group` are relative symlinks,
//! and sys/kernel/iommu_groups/<N>/devices/<addr> link back to the devices.

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Host {
    /// /proc/cpuinfo vendor_id, e.g. GenuineIntel.
    cpu: String,
    flags: String,
    uefi: bool,
    cmdline: String,
    #[serde(default)]
    modules: Vec<String>,
    /// Signatures of the ACPI tables in sys/firmware/acpi/tables (each file holds its signature only).
    #[serde(default)]
    acpi_tables: Vec<String>,
    /// IOMMU units in sys/class/iommu (`dmar0`, `ivhd0`).
    #[serde(default)]
    iommu_units: Vec<String>,
    /// sys/kernel/irq/<N>/chip_name for N = 0, 1, ...
    #[serde(default)]
    irq_chips: Vec<String>,
    /// sys/kernel/iommu_groups/<N>/type of every group.
    group_type: Option<String>,
    /// sys/module/<module>/parameters/<name> = value.
    #[serde(default)]
    params: BTreeMap<String, BTreeMap<String, String>>,
    /// sys/class/misc/kvm: the kernel registered /dev/kvm.
    #[serde(default)]
    kvm_device: bool,
    /// The SecureBoot EFI variable (UEFI hosts only).
    secure_boot: Option<bool>,
    /// sys/kernel/security/lockdown: none, integrity or confidentiality.
    lockdown: Option<String>,
    /// sys/class/dmi/id/chassis_type (SMBIOS: 3 desktop, 10 notebook).
    chassis_type: Option<u8>,
    /// More files, by path under the tree (modprobe.d files).
    #[serde(default, rename = "file")]
    files: Vec<File>,
    #[serde(default, rename = "device")]
    devices: Vec<Device>,
    #[serde(default, rename = "usb")]
    usb: Vec<Usb>,
    #[serde(default, rename = "block")]
    blocks: Vec<Block>,
    /// proc/self/mountinfo, in this order.
    #[serde(default, rename = "mount")]
    mounts: Vec<Mount>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    path: String,
    text: String,
}

/// A USB device behind a USB controller; hubs are devices too.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Usb {
    /// The PCI address of its controller.
    controller: String,
    bus: u32,
    /// Port path on the bus: `2`, or `1.4` behind the hub on port 1.
    port: String,
    /// vvvv:pppp
    id: String,
    manufacturer: Option<String>,
    product: Option<String>,
    /// Each interface's class, subclass and protocol as 6 hex digits (`030101`: HID boot keyboard).
    interfaces: Vec<String>,
}

/// A block device in sysfs: under a PCI device, or virtual (device-mapper, NVMe multipath).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Block {
    name: String,
    /// major:minor
    dev: String,
    /// The PCI device it hangs under and the path below it (`nvme/nvme0`); with `multipath`, where its path
    /// device lives.
    pci: Option<String>,
    path: Option<String>,
    /// NVMe native multipath: the subsystem (`nvme-subsys0`) and the path device (`nvme0c0n1`).
    multipath: Option<(String, String)>,
    /// device-mapper name (`luks-…`): the block lives in devices/virtual/block.
    dm: Option<String>,
    /// Blocks (or partitions) under this one, by name.
    #[serde(default)]
    slaves: Vec<String>,
    /// (name, major:minor) of each partition.
    #[serde(default)]
    partitions: Vec<(String, String)>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mount {
    point: String,
    dev: String,
    fstype: String,
    source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Device {
    address: String,
    /// The bridge the device sits behind; devices on the root bus have none.
    parent: Option<String>,
    /// vvvv:dddd
    id: String,
    /// 6 hex digits: base class, subclass, programming interface.
    class: String,
    /// None: the IOMMU is off.
    group: Option<u32>,
    driver: Option<String>,
    boot_vga: Option<bool>,
    reset_method: Option<String>,
    /// Memory BARs for the `resource` file.
    #[serde(default)]
    bars: Vec<Bar>,
    /// BARs with a resourceN_resize file (the card supports Resizable BAR).
    #[serde(default)]
    resize: Vec<u8>,
    sriov_totalvfs: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Bar {
    index: usize,
    start: u64,
    size: u64,
    flags: u64,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `to` relative to the directory `from_dir`, both relative to the tree root, the way sysfs writes its links.
fn relative(from_dir: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from_dir.components().collect();
    let to_parts: Vec<Component> = to.components().collect();
    let common = from
        .iter()
        .zip(&to_parts)
        .take_while(|(a, b)| a == b)
        .count();
    let mut rel = PathBuf::new();
    for _ in common..from.len() {
        rel.push("..");
    }
    for part in &to_parts[common..] {
        rel.push(part);
    }
    rel
}

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn link(tree: &Path, link_rel: &Path, target_rel: &Path) {
    let target = relative(link_rel.parent().unwrap(), target_rel);
    let path = tree.join(link_rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    symlink(target, path).unwrap();
}

/// sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0 for a device behind the root port 00:01.0.
fn device_dir(host: &Host, device: &Device) -> PathBuf {
    let mut chain = vec![device.address.clone()];
    let mut parent = device.parent.clone();
    while let Some(address) = parent {
        let bridge = host
            .devices
            .iter()
            .find(|d| d.address == address)
            .unwrap_or_else(|| panic!("{}: parent {address} is not described", device.address));
        chain.push(address);
        parent = bridge.parent.clone();
    }
    let top = chain.last().unwrap();
    // The host bridge directory is named after the domain and root bus of the topmost device.
    let mut dir = PathBuf::from("sys/devices").join(format!("pci{}", &top[..7]));
    for address in chain.iter().rev() {
        dir.push(address);
    }
    dir
}

fn generate(host: &Host, tree: &Path) {
    write(
        &tree.join("proc/cpuinfo"),
        &format!(
            "processor\t: 0\nvendor_id\t: {}\ncpu family\t: 6\nmodel name\t: fixture CPU\nflags\t\t: {}\n\n",
            host.cpu, host.flags
        ),
    );
    write(&tree.join("proc/cmdline"), &format!("{}\n", host.cmdline));
    let modules: String = host
        .modules
        .iter()
        .map(|m| format!("{m} 16384 0 - Live 0x0000000000000000\n"))
        .collect();
    write(&tree.join("proc/modules"), &modules);
    if host.uefi {
        write(&tree.join("sys/firmware/efi/fw_platform_size"), "64\n");
    }
    firmware(host, tree);
    kernel(host, tree);
    for file in &host.files {
        write(&tree.join(file.path.trim_start_matches('/')), &file.text);
    }
    for device in &host.devices {
        let dir = device_dir(host, device);
        let (vendor, dev) = device.id.split_once(':').expect("id is vvvv:dddd");
        write(&tree.join(&dir).join("vendor"), &format!("0x{vendor}\n"));
        write(&tree.join(&dir).join("device"), &format!("0x{dev}\n"));
        write(
            &tree.join(&dir).join("class"),
            &format!("0x{}\n", device.class),
        );
        if let Some(boot_vga) = device.boot_vga {
            write(
                &tree.join(&dir).join("boot_vga"),
                if boot_vga { "1\n" } else { "0\n" },
            );
        }
        if let Some(methods) = &device.reset_method {
            write(
                &tree.join(&dir).join("reset_method"),
                &format!("{methods}\n"),
            );
        }
        if let Some(driver) = &device.driver {
            let driver_dir = Path::new("sys/bus/pci/drivers").join(driver);
            write(&tree.join(&driver_dir).join("bind"), "");
            link(tree, &dir.join("driver"), &driver_dir);
        }
        link(
            tree,
            &Path::new("sys/bus/pci/devices").join(&device.address),
            &dir,
        );
        if let Some(group) = device.group {
            let group_dir = Path::new("sys/kernel/iommu_groups").join(group.to_string());
            link(tree, &group_dir.join("devices").join(&device.address), &dir);
            link(tree, &dir.join("iommu_group"), &group_dir);
            if let Some(kind) = &host.group_type {
                write(&tree.join(&group_dir).join("type"), &format!("{kind}\n"));
            }
        }
        resources(device, &tree.join(&dir));
    }
    for usb in &host.usb {
        usb_device(host, usb, tree);
    }
    for block in &host.blocks {
        block_device(host, block, tree);
    }
    if !host.mounts.is_empty() {
        write(&tree.join("proc/self/mountinfo"), &mountinfo(&host.mounts));
    }
}

/// ACPI tables, Secure Boot, lockdown and the DMI chassis.
fn firmware(host: &Host, tree: &Path) {
    for table in &host.acpi_tables {
        write(&tree.join("sys/firmware/acpi/tables").join(table), table);
    }
    if let Some(on) = host.secure_boot {
        assert!(host.uefi, "Secure Boot needs a UEFI host");
        let efivars = tree.join("sys/firmware/efi/efivars");
        // 4 bytes of attributes (non-volatile, boot and runtime access), then the value.
        for (name, value) in [("SecureBoot", u8::from(on)), ("SetupMode", 0)] {
            let path = efivars.join(format!("{name}-8be4df61-93ca-11d2-aa0d-00e098032b8c"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, [6, 0, 0, 0, value]).unwrap();
        }
    }
    if let Some(mode) = &host.lockdown {
        let line = ["none", "integrity", "confidentiality"]
            .map(|m| match m == mode {
                true => format!("[{m}]"),
                false => m.to_owned(),
            })
            .join(" ");
        write(
            &tree.join("sys/kernel/security/lockdown"),
            &format!("{line}\n"),
        );
    }
    if let Some(chassis) = host.chassis_type {
        write(
            &tree.join("sys/class/dmi/id/chassis_type"),
            &format!("{chassis}\n"),
        );
    }
}

/// IOMMU units, interrupt chips, module parameters and the KVM device.
fn kernel(host: &Host, tree: &Path) {
    for unit in &host.iommu_units {
        let dir = Path::new("sys/devices/virtual/iommu").join(unit);
        write(&tree.join(&dir).join("uevent"), "");
        link(tree, &Path::new("sys/class/iommu").join(unit), &dir);
    }
    for (irq, chip) in host.irq_chips.iter().enumerate() {
        write(
            &tree.join(format!("sys/kernel/irq/{irq}/chip_name")),
            &format!("{chip}\n"),
        );
    }
    for (module, params) in &host.params {
        for (name, value) in params {
            write(
                &tree.join(format!("sys/module/{module}/parameters/{name}")),
                &format!("{value}\n"),
            );
        }
    }
    if host.kvm_device {
        let dir = Path::new("sys/devices/virtual/misc/kvm");
        write(&tree.join(dir).join("dev"), "10:232\n");
        link(tree, Path::new("sys/class/misc/kvm"), dir);
    }
}

/// `resource` (6 BARs, the ROM and 6 more windows, as the kernel writes 13 lines), `resourceN_resize`, SR-IOV.
fn resources(device: &Device, dir: &Path) {
    if !device.bars.is_empty() {
        let lines: String = (0..13)
            .map(
                |index| match device.bars.iter().find(|b| b.index == index) {
                    Some(b) => format!(
                        "0x{:016x} 0x{:016x} 0x{:016x}\n",
                        b.start,
                        b.start + b.size - 1,
                        b.flags
                    ),
                    None => format!("0x{0:016x} 0x{0:016x} 0x{0:016x}\n", 0),
                },
            )
            .collect();
        write(&dir.join("resource"), &lines);
    }
    for n in &device.resize {
        // Sizes supported, one bit per power of two from 1 MiB: 256 MiB to 32 GiB.
        write(
            &dir.join(format!("resource{n}_resize")),
            "0000000000007f00\n",
        );
    }
    if let Some(total) = device.sriov_totalvfs {
        write(&dir.join("sriov_totalvfs"), &format!("{total}\n"));
        write(&dir.join("sriov_numvfs"), "0\n");
    }
}

fn pci_device_dir(host: &Host, address: &str) -> PathBuf {
    let device = host
        .devices
        .iter()
        .find(|d| d.address == address)
        .unwrap_or_else(|| panic!("{address} is not described"));
    device_dir(host, device)
}

/// The device under its controller's root hub (`usb1/1-1/1-1.4`), its interfaces, and the root hub itself.
fn usb_device(host: &Host, usb: &Usb, tree: &Path) {
    let hub = pci_device_dir(host, &usb.controller).join(format!("usb{}", usb.bus));
    write(&tree.join(&hub).join("idVendor"), "1d6b\n");
    write(&tree.join(&hub).join("product"), "xHCI Host Controller\n");
    let hub_link = Path::new("sys/bus/usb/devices").join(format!("usb{}", usb.bus));
    // Every device on the bus shares the root hub.
    if std::fs::symlink_metadata(tree.join(&hub_link)).is_err() {
        link(tree, &hub_link, &hub);
    }
    let mut dir = hub;
    let mut name = usb.bus.to_string();
    for (i, port) in usb.port.split('.').enumerate() {
        name.push(if i == 0 { '-' } else { '.' });
        name.push_str(port);
        dir.push(&name);
    }
    let (vendor, product) = usb.id.split_once(':').expect("id is vvvv:pppp");
    write(&tree.join(&dir).join("idVendor"), &format!("{vendor}\n"));
    write(&tree.join(&dir).join("idProduct"), &format!("{product}\n"));
    for (attr, value) in [
        ("manufacturer", &usb.manufacturer),
        ("product", &usb.product),
    ] {
        if let Some(value) = value {
            write(&tree.join(&dir).join(attr), &format!("{value}\n"));
        }
    }
    for (i, interface) in usb.interfaces.iter().enumerate() {
        let idir = dir.join(format!("{name}:1.{i}"));
        for (attr, range) in [
            ("bInterfaceClass", 0..2),
            ("bInterfaceSubClass", 2..4),
            ("bInterfaceProtocol", 4..6),
        ] {
            write(
                &tree.join(&idir).join(attr),
                &format!("{}\n", &interface[range]),
            );
        }
    }
    link(tree, &Path::new("sys/bus/usb/devices").join(&name), &dir);
}

/// The block device's directory: under device-mapper, an NVMe subsystem, or its PCI device.
fn block_dir(host: &Host, block: &Block) -> PathBuf {
    if block.dm.is_some() {
        return Path::new("sys/devices/virtual/block").join(&block.name);
    }
    if let Some((subsystem, _)) = &block.multipath {
        return Path::new("sys/devices/virtual/nvme-subsystem")
            .join(subsystem)
            .join(&block.name);
    }
    let pci = block
        .pci
        .as_ref()
        .expect("a block device under a PCI device names it");
    pci_device_dir(host, pci)
        .join(block.path.as_deref().unwrap_or(""))
        .join(&block.name)
}

/// Where a block or partition named `name` lives.
fn block_or_partition_dir(host: &Host, name: &str) -> PathBuf {
    for block in &host.blocks {
        if block.name == name {
            return block_dir(host, block);
        }
        if block.partitions.iter().any(|(p, _)| p == name) {
            return block_dir(host, block).join(name);
        }
    }
    panic!("block {name} is not described")
}

fn block_device(host: &Host, block: &Block, tree: &Path) {
    let dir = block_dir(host, block);
    write(&tree.join(&dir).join("dev"), &format!("{}\n", block.dev));
    let mut names = vec![(block.name.clone(), block.dev.clone(), dir.clone())];
    for (n, (name, dev)) in block.partitions.iter().enumerate() {
        let part = dir.join(name);
        write(&tree.join(&part).join("dev"), &format!("{dev}\n"));
        write(&tree.join(&part).join("partition"), &format!("{}\n", n + 1));
        names.push((name.clone(), dev.clone(), part));
    }
    if let Some(dm) = &block.dm {
        write(&tree.join(&dir).join("dm/name"), &format!("{dm}\n"));
    }
    for slave in &block.slaves {
        link(
            tree,
            &dir.join("slaves").join(slave),
            &block_or_partition_dir(host, slave),
        );
    }
    if let Some((_, path_device)) = &block.multipath {
        let pci = block
            .pci
            .as_ref()
            .expect("a multipath namespace names its controller");
        let target = pci_device_dir(host, pci)
            .join(block.path.as_deref().unwrap_or(""))
            .join(path_device);
        write(&tree.join(&target).join("uevent"), "");
        link(tree, &dir.join("multipath").join(path_device), &target);
    }
    for (name, dev, target) in names {
        link(tree, &Path::new("sys/class/block").join(&name), &target);
        link(tree, &Path::new("sys/dev/block").join(&dev), &target);
    }
}

/// proc/self/mountinfo lines: `ID PARENT MAJ:MIN ROOT POINT OPTIONS SHARED - FSTYPE SOURCE SUPEROPTIONS`.
fn mountinfo(mounts: &[Mount]) -> String {
    mounts
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let id = 60 + i;
            let parent = if i == 0 { 1 } else { 60 };
            format!(
                "{id} {parent} {} / {} rw,relatime shared:{} - {} {} rw\n",
                m.dev,
                m.point,
                i + 1,
                m.fstype,
                m.source
            )
        })
        .collect()
}

#[derive(Debug, PartialEq, Eq)]
enum Entry {
    File(Vec<u8>),
    Link(PathBuf),
}

/// Files and symlinks by path; directories only matter through what they hold (git keeps no empty ones).
fn snapshot(tree: &Path) -> BTreeMap<PathBuf, Entry> {
    fn walk(tree: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(tree).unwrap().to_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                out.insert(rel, Entry::Link(std::fs::read_link(&path).unwrap()));
            } else if meta.is_dir() {
                walk(tree, &path, out);
            } else {
                out.insert(rel, Entry::File(std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(tree, tree, &mut out);
    out
}

fn descriptions() -> Vec<(String, Host)> {
    let dir = fixtures_dir().join("hosts");
    let mut hosts: Vec<(String, Host)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let host: Host = toml::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (name, host)
        })
        .collect();
    hosts.sort_by(|a, b| a.0.cmp(&b.0));
    hosts
}

#[test]
fn committed_fixture_trees_equal_their_descriptions() {
    let hosts = descriptions();
    assert!(hosts.len() >= 9, "expected the 9 described hosts");
    let regenerate = std::env::var_os("PASSTHRU_REGENERATE_FIXTURES").is_some();
    for (name, host) in hosts {
        let committed = fixtures_dir().join(&name);
        if regenerate {
            if committed.exists() {
                std::fs::remove_dir_all(&committed).unwrap();
            }
            generate(&host, &committed);
            continue;
        }
        let fresh = tempfile::tempdir().unwrap();
        generate(&host, fresh.path());
        assert!(
            committed.is_dir(),
            "{} is missing: run PASSTHRU_REGENERATE_FIXTURES=1 cargo test --test fixture_trees",
            committed.display()
        );
        let expected = snapshot(fresh.path());
        let actual = snapshot(&committed);
        assert!(
            expected == actual,
            "{} differs from hosts/{name}.toml (regenerate with PASSTHRU_REGENERATE_FIXTURES=1 cargo test --test fixture_trees): only generated {:?}, only committed {:?}",
            committed.display(),
            expected
                .keys()
                .filter(|k| actual.get(*k) != expected.get(*k))
                .collect::<Vec<_>>(),
            actual
                .keys()
                .filter(|k| !expected.contains_key(*k))
                .collect::<Vec<_>>(),
        );
    }
}

#[test]
fn links_are_relative_like_real_sysfs() {
    assert_eq!(
        relative(
            Path::new("sys/bus/pci/devices"),
            Path::new("sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0")
        ),
        Path::new("../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0")
    );
    assert_eq!(
        relative(
            Path::new("sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0"),
            Path::new("sys/kernel/iommu_groups/1")
        ),
        Path::new("../../../../kernel/iommu_groups/1")
    );
}
