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
    #[serde(default, rename = "device")]
    devices: Vec<Device>,
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
        }
    }
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
    assert!(hosts.len() >= 7, "expected the 7 described hosts");
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
