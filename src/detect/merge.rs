//! `detect --merge` and `detect --config FILE`: what detection decided, put into the user's own passthru.toml.
//!
//! Only the keys detection decides are touched ([`Decided`]), and only where their value changes; every other
//! key, comment and blank line stays where the user put it (toml_edit keeps the document's formatting). A key
//! that is changed keeps the comments around it. The header block of an earlier detect is replaced.

use anyhow::{Result, bail};
use toml_edit::{Array, DocumentMut, Item, Table, TableLike, Value};

use super::{Decided, Detection, HEADER_BEGIN, HEADER_END, header};
use crate::config::{Config, CpuChoice, GpuVendor, Switch};
use crate::error::InputError;
use crate::root::Root;

/// The user's config `text` (read from `origin`) with what `detection` decided. A config that does not read is
/// bad input naming the field, as for every other command.
pub(crate) fn merge(
    detection: &Detection,
    root: &Root,
    text: &str,
    origin: &str,
) -> Result<String> {
    let user = Config::from_toml(text, origin)?;
    let wanted = decided_config(&user, detection);
    let body = without_header(text);
    let mut doc: DocumentMut = body
        .parse()
        .map_err(|e| InputError::new(origin, format!("not valid TOML: {e}")))?;
    let mut notes = Vec::new();
    if wanted.image.base != user.image.base {
        set(&mut doc, "image", "base", wanted.image.base.as_str().into());
        if let Some(digest) = &user.image.digest {
            remove(&mut doc, "image", "digest");
            notes.push(format!(
                "image.digest {digest} removed: it pinned {}, not the new base",
                user.image.base
            ));
        }
    }
    if wanted.cpu.vendor != user.cpu.vendor {
        set(
            &mut doc,
            "cpu",
            "vendor",
            cpu_vendor(wanted.cpu.vendor).into(),
        );
    }
    if wanted.vfio.ids != user.vfio.ids {
        set(&mut doc, "vfio", "ids", strings(&wanted.vfio.ids));
    }
    if wanted.vfio.addresses != user.vfio.addresses {
        set(
            &mut doc,
            "vfio",
            "addresses",
            strings(&wanted.vfio.addresses),
        );
    }
    if wanted.gpu.vendors != user.gpu.vendors {
        set(&mut doc, "gpu", "vendors", gpu_vendors(&wanted.gpu.vendors));
    }
    if wanted.vendor_reset.enabled != user.vendor_reset.enabled {
        set(
            &mut doc,
            "vendor-reset",
            "enabled",
            switch(wanted.vendor_reset.enabled),
        );
    }
    let merged = format!("{}\n{}", header(detection, root, &notes), doc);
    // The file must read back as the user's config with exactly the decided keys changed.
    if Config::from_toml(&merged, origin)? != wanted {
        bail!(
            "internal error: the merged passthru.toml does not read back as the user's config with \
             the detected keys"
        );
    }
    Ok(merged)
}

/// The user's config with the keys detection decided set to what it found.
fn decided_config(user: &Config, detection: &Detection) -> Config {
    let found = &detection.config;
    let mut config = user.clone();
    for key in &detection.decided {
        match key {
            Decided::ImageBase if config.image.base != found.image.base => {
                config.image.base = found.image.base.clone();
                // A digest pins the configured base, not another image.
                config.image.digest = None;
            }
            Decided::ImageBase => {}
            Decided::CpuVendor => config.cpu.vendor = found.cpu.vendor,
            Decided::VfioDevices => {
                config.vfio.ids = found.vfio.ids.clone();
                config.vfio.addresses = found.vfio.addresses.clone();
            }
            Decided::GpuVendors => config.gpu.vendors = found.gpu.vendors.clone(),
            Decided::VendorReset => config.vendor_reset.enabled = found.vendor_reset.enabled,
        }
    }
    config
}

/// The text after the header block an earlier detect wrote at its top (and the blank line after it).
fn without_header(text: &str) -> &str {
    let Some(rest) = text.strip_prefix(HEADER_BEGIN) else {
        return text;
    };
    let Some(end) = rest.find(&format!("\n{HEADER_END}\n")) else {
        return text;
    };
    let after = &rest[end + HEADER_END.len() + 2..];
    after.strip_prefix('\n').unwrap_or(after)
}

/// Sets `table.key`, creating the table at the end when the file has none. An existing value's comments (the
/// line's trailing one included) stay with the new value.
fn set(doc: &mut DocumentMut, table: &str, key: &str, mut value: Value) {
    let table = doc
        .entry(table)
        .or_insert_with(|| Item::Table(Table::new()))
        .as_table_like_mut()
        .expect("Config::from_toml read this key as a table");
    match table.get_mut(key) {
        // Replaced in place: the key keeps the comment lines above it.
        Some(item) => {
            if let Some(old) = item.as_value() {
                *value.decor_mut() = old.decor().clone();
            }
            *item = Item::Value(value);
        }
        None => {
            table.insert(key, Item::Value(value));
        }
    }
}

fn remove(doc: &mut DocumentMut, table: &str, key: &str) {
    if let Some(table) = doc.get_mut(table).and_then(Item::as_table_like_mut) {
        TableLike::remove(table, key);
    }
}

fn strings<T: ToString>(items: &[T]) -> Value {
    Value::Array(items.iter().map(|i| i.to_string()).collect::<Array>())
}

fn cpu_vendor(choice: CpuChoice) -> &'static str {
    match choice {
        CpuChoice::Intel => "intel",
        CpuChoice::Amd => "amd",
        CpuChoice::Auto => "auto",
    }
}

fn gpu_vendors(vendors: &[GpuVendor]) -> Value {
    let names = vendors.iter().map(|v| match v {
        GpuVendor::Nvidia => "nvidia",
        GpuVendor::Amd => "amd",
        GpuVendor::Intel => "intel",
    });
    Value::Array(names.collect::<Array>())
}

fn switch(value: Switch) -> Value {
    match value {
        Switch::On => true.into(),
        Switch::Off => false.into(),
        Switch::Auto => "auto".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::pci::PciAddress;

    fn detection() -> Detection {
        let mut config = Config::default();
        config.image.base = "ghcr.io/ublue-os/bazzite:stable".parse().unwrap();
        config.cpu.vendor = CpuChoice::Intel;
        config.vfio.addresses = vec!["0000:02:00.0".parse::<PciAddress>().unwrap()];
        config.gpu.vendors = vec![GpuVendor::Nvidia];
        Detection {
            config,
            gpu: None,
            findings: vec!["CPU: intel".into()],
            warnings: Vec::new(),
            decided: vec![
                Decided::ImageBase,
                Decided::CpuVendor,
                Decided::VfioDevices,
                Decided::GpuVendors,
            ],
        }
    }

    const USER: &str = "\
# My workstation. Keep this line.
[image]
base = \"quay.io/fedora/fedora-bootc:42\"   # what I ran before
digest = \"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"
tag = \"ghcr.io/me/vfio:latest\" # mine

[vfio]
# the GPU, by ID for now
ids = [\"10de:1b80\"]

[kargs]
extra = [\"quiet\"]   # keep quiet
";

    #[test]
    fn changes_only_the_decided_keys_and_keeps_the_users_comments() {
        let root = Root::new("/");
        let merged = merge(&detection(), &root, USER, "passthru.toml").unwrap();
        for kept in [
            "# My workstation. Keep this line.\n[image]\n",
            "base = \"ghcr.io/ublue-os/bazzite:stable\"   # what I ran before\n",
            "tag = \"ghcr.io/me/vfio:latest\" # mine\n",
            "# the GPU, by ID for now\nids = []\n",
            "extra = [\"quiet\"]   # keep quiet\n",
        ] {
            assert!(merged.contains(kept), "{kept:?} not in:\n{merged}");
        }
        assert!(
            merged.contains("addresses = [\"0000:02:00.0\"]"),
            "{merged}"
        );
        assert!(
            !merged.contains("digest ="),
            "the digest pinned the old base:\n{merged}"
        );
        assert!(merged.contains("# image.digest sha256:0123"), "{merged}");
        assert!(merged.starts_with(HEADER_BEGIN), "{merged}");
        assert!(merged.contains("[cpu]\nvendor = \"intel\"\n"), "{merged}");

        // A second merge replaces the header instead of adding another, and changes nothing else.
        let again = merge(&detection(), &root, &merged, "passthru.toml").unwrap();
        assert_eq!(again.matches(HEADER_BEGIN).count(), 1, "{again}");
        assert_eq!(
            again.split_once(HEADER_END).unwrap().1,
            merged.split_once(HEADER_END).unwrap().1
        );
    }

    #[test]
    fn undecided_keys_stay_the_users_and_a_bad_config_is_bad_input() {
        let mut found = detection();
        found.decided = vec![Decided::CpuVendor];
        let merged = merge(&found, &Root::new("/"), USER, "passthru.toml").unwrap();
        assert!(merged.contains("ids = [\"10de:1b80\"]"), "{merged}");
        assert!(merged.contains("digest = "), "{merged}");
        let err = merge(&found, &Root::new("/"), "[vfio]\nids = [\"x\"]\n", "p.toml").unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        assert!(err.to_string().contains("vfio.ids[0]"), "{err}");
    }
}
