//! The USB devices behind a USB controller, read below its PCI device directory as the kernel lays them out
//! (what `/sys/bus/usb/devices` links to): root hubs `usbN`, devices `B-P[.P…]` inside their parent hub, and
//! each device's interfaces `B-P:C.I`. A HID interface with the boot protocol says keyboard or mouse.

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use super::pci::{DEVICES_DIR, PciAddress};
use crate::root::Root;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct UsbDevice {
    /// Bus and port path, e.g. `1-2` or `3-1.4` (behind a hub).
    pub(crate) port: String,
    /// `vvvv:pppp`.
    pub(crate) id: String,
    pub(crate) manufacturer: Option<String>,
    pub(crate) product: Option<String>,
    /// What its HID interfaces are, once each.
    pub(crate) inputs: Vec<Input>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Input {
    Keyboard,
    Mouse,
    /// Another HID interface (gamepads, receivers' vendor interfaces, keyboards without the boot protocol).
    Hid,
}

impl Input {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Input::Keyboard => "keyboard",
            Input::Mouse => "mouse",
            Input::Hid => "HID device",
        }
    }
}

impl UsbDevice {
    /// `046d:c31c Logitech, Inc. USB Keyboard`, as far as the device names itself.
    pub(crate) fn describe(&self) -> String {
        let names: Vec<&str> = [&self.manufacturer, &self.product]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        match names.is_empty() {
            true => self.id.clone(),
            false => format!("{} {}", self.id, names.join(" ")),
        }
    }

    /// A keyboard or mouse the host would lose with the controller.
    pub(crate) fn is_input(&self) -> bool {
        !self.inputs.is_empty()
    }

    /// `keyboard`, `keyboard, mouse` or `HID device`: a keyboard's extra HID interface (media keys) is no
    /// other input.
    pub(crate) fn input_names(&self) -> String {
        let named: Vec<&str> = self
            .inputs
            .iter()
            .filter(|i| **i != Input::Hid || self.inputs.len() == 1)
            .map(|i| i.as_str())
            .collect();
        named.join(", ")
    }
}

/// The USB devices behind `controller` (root hubs left out), in port order; none for a device that is no
/// USB controller.
pub(crate) fn behind(root: &Root, controller: PciAddress) -> Result<Vec<UsbDevice>> {
    let dir = Utf8PathBuf::from(DEVICES_DIR).join(controller.to_string());
    let mut devices = Vec::new();
    for hub in root.read_dir(&dir)?.unwrap_or_default() {
        if is_root_hub(&hub) {
            walk(root, &dir.join(&hub), &mut devices)?;
        }
    }
    devices.sort_by_key(|d| port_order(&d.port));
    Ok(devices)
}

/// `1-10` after `1-6`: bus and ports as numbers.
fn port_order(port: &str) -> Vec<u32> {
    port.split(['-', '.'])
        .map(|n| n.parse().unwrap_or(u32::MAX))
        .collect()
}

/// The devices in a hub's directory, and the devices behind them.
fn walk(root: &Root, hub: &Utf8Path, devices: &mut Vec<UsbDevice>) -> Result<()> {
    for name in root.read_dir(hub)?.unwrap_or_default() {
        if !is_device(&name) {
            continue;
        }
        let dir = hub.join(&name);
        devices.push(read_device(root, &dir, &name)?);
        walk(root, &dir, devices)?;
    }
    Ok(())
}

fn read_device(root: &Root, dir: &Utf8Path, port: &str) -> Result<UsbDevice> {
    let attr = |name: &str| -> Result<Option<String>> {
        Ok(root
            .read_optional(dir.join(name))?
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty()))
    };
    let id = format!(
        "{}:{}",
        attr("idVendor")?.unwrap_or_else(|| "????".into()),
        attr("idProduct")?.unwrap_or_else(|| "????".into())
    );
    let mut inputs = Vec::new();
    for interface in root.read_dir(dir)?.unwrap_or_default() {
        if interface.split_once(':').is_some_and(|(p, _)| p == port)
            && let Some(input) = hid_input(root, &dir.join(&interface))?
        {
            inputs.push(input);
        }
    }
    inputs.sort();
    inputs.dedup();
    Ok(UsbDevice {
        port: port.to_owned(),
        id,
        manufacturer: attr("manufacturer")?,
        product: attr("product")?,
        inputs,
    })
}

/// What a HID interface is; `None` for other interface classes.
fn hid_input(root: &Root, interface: &Utf8Path) -> Result<Option<Input>> {
    let attr = |name: &str| -> Result<String> {
        Ok(root
            .read_optional(interface.join(name))?
            .unwrap_or_default()
            .trim()
            .to_owned())
    };
    if attr("bInterfaceClass")? != "03" {
        return Ok(None);
    }
    // Boot interface subclass 01: protocol 01 keyboard, 02 mouse (USB HID 1.11, 4.2 and 4.3).
    Ok(Some(
        match (
            attr("bInterfaceSubClass")?.as_str(),
            attr("bInterfaceProtocol")?.as_str(),
        ) {
            ("01", "01") => Input::Keyboard,
            ("01", "02") => Input::Mouse,
            _ => Input::Hid,
        },
    ))
}

/// `usb1`: a root hub, one per bus of the controller.
fn is_root_hub(name: &str) -> bool {
    name.strip_prefix("usb")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `1-2` or `1-2.4.1`: a device (interfaces have a `:`).
fn is_device(name: &str) -> bool {
    let Some((bus, ports)) = name.split_once('-') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(bus) && ports.split('.').all(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Root, path: &str, text: &str) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("{text}\n")).unwrap();
    }

    #[test]
    fn devices_behind_hubs_with_their_hid_interfaces() {
        let (_dir, root) = Root::temporary();
        let controller = "/sys/devices/pci0000:00/0000:00:14.0";
        std::fs::create_dir_all(root.join("/sys/bus/pci/devices")).unwrap();
        std::os::unix::fs::symlink(
            "../../../devices/pci0000:00/0000:00:14.0",
            root.join("/sys/bus/pci/devices/0000:00:14.0"),
        )
        .unwrap();
        write(&root, &format!("{controller}/usb1/idVendor"), "1d6b");
        write(
            &root,
            &format!("{controller}/usb1/1-0:1.0/bInterfaceClass"),
            "09",
        );
        let hub = format!("{controller}/usb1/1-1");
        write(&root, &format!("{hub}/idVendor"), "05e3");
        write(&root, &format!("{hub}/idProduct"), "0610");
        write(&root, &format!("{hub}/product"), "USB2.1 Hub");
        let kbd = format!("{hub}/1-1.2");
        write(&root, &format!("{kbd}/idVendor"), "046d");
        write(&root, &format!("{kbd}/idProduct"), "c31c");
        write(&root, &format!("{kbd}/manufacturer"), "Logitech");
        write(&root, &format!("{kbd}/product"), "USB Keyboard");
        for (interface, sub, proto) in [("1-1.2:1.0", "01", "01"), ("1-1.2:1.1", "00", "00")] {
            write(&root, &format!("{kbd}/{interface}/bInterfaceClass"), "03");
            write(&root, &format!("{kbd}/{interface}/bInterfaceSubClass"), sub);
            write(
                &root,
                &format!("{kbd}/{interface}/bInterfaceProtocol"),
                proto,
            );
        }
        let devices = behind(&root, "0000:00:14.0".parse().unwrap()).unwrap();
        let ports: Vec<&str> = devices.iter().map(|d| d.port.as_str()).collect();
        assert_eq!(ports, ["1-1", "1-1.2"]);
        assert!(!devices[0].is_input());
        assert_eq!(devices[1].inputs, [Input::Keyboard, Input::Hid]);
        assert_eq!(devices[1].input_names(), "keyboard");
        assert!(port_order("1-6") < port_order("1-10") && port_order("1-1") < port_order("1-1.2"));
        assert_eq!(devices[1].describe(), "046d:c31c Logitech USB Keyboard");
        assert!(
            behind(&root, "0000:00:02.0".parse().unwrap())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn names_of_hubs_devices_and_interfaces() {
        assert!(is_root_hub("usb12") && !is_root_hub("usb") && !is_root_hub("usb1-port1"));
        assert!(is_device("1-2") && is_device("3-1.4.2"));
        for other in ["1-2:1.0", "usb1", "1-", "-1", "1-2.", "power", "1-0:1.0"] {
            assert!(!is_device(other), "{other}");
        }
    }
}
