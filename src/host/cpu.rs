//! CPU vendor and virtualisation support from /proc/cpuinfo.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::error::InputError;
use crate::root::Root;

const CPUINFO: &str = "/proc/cpuinfo";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CpuVendor {
    Intel,
    Amd,
}

impl CpuVendor {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CpuVendor::Intel => "intel",
            CpuVendor::Amd => "amd",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct CpuInfo {
    pub(crate) vendor: Option<CpuVendor>,
    /// `vmx` (Intel VT-x) or `svm` (AMD-V) present in the flags.
    pub(crate) virtualization: bool,
}

impl CpuInfo {
    /// Reads /proc/cpuinfo line by line up to the first CPU's `vendor_id` and `flags`: every CPU repeats them.
    pub(crate) fn read(root: &Root) -> Result<CpuInfo> {
        let mut fields = Fields::default();
        for line in root.lines(CPUINFO)? {
            if fields.take(&line?) {
                break;
            }
        }
        Ok(fields.into_info())
    }

    /// [`CpuInfo::read`] of a text, for the unit tests of the fields it takes.
    #[cfg(test)]
    pub(crate) fn parse(text: &str) -> CpuInfo {
        let mut fields = Fields::default();
        for line in text.lines() {
            if fields.take(line) {
                break;
            }
        }
        fields.into_info()
    }

    /// The vendor, or bad input telling the user to set it when the host does not say.
    pub(crate) fn require_vendor(&self, root: &Root) -> Result<CpuVendor> {
        self.vendor.ok_or_else(|| {
            InputError::new(
                "cpu.vendor",
                format!(
                    "\"auto\" could not tell the CPU vendor from {}; set cpu.vendor (or --cpu) to \
                     intel or amd",
                    root.join(CPUINFO)
                ),
            )
            .into()
        })
    }
}

/// The first `vendor_id` and `flags` lines of /proc/cpuinfo.
#[derive(Default)]
struct Fields {
    vendor_id: Option<String>,
    flags: Option<String>,
}

impl Fields {
    /// Takes one line; true once both fields are known.
    fn take(&mut self, line: &str) -> bool {
        if let Some((key, value)) = line.split_once(':') {
            let slot = match key.trim() {
                "vendor_id" => &mut self.vendor_id,
                "flags" => &mut self.flags,
                _ => return false,
            };
            slot.get_or_insert_with(|| value.trim().to_owned());
        }
        self.vendor_id.is_some() && self.flags.is_some()
    }

    fn into_info(self) -> CpuInfo {
        let vendor = match self.vendor_id.as_deref() {
            Some("GenuineIntel") => Some(CpuVendor::Intel),
            Some("AuthenticAMD") | Some("HygonGenuine") => Some(CpuVendor::Amd),
            _ => None,
        };
        let flags = self.flags.unwrap_or_default();
        let virtualization = flags.split_whitespace().any(|f| f == "vmx" || f == "svm");
        CpuInfo {
            vendor,
            virtualization,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vendor_and_virtualisation_flags() {
        let intel =
            CpuInfo::parse("processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vmx sse\n");
        assert_eq!(
            intel,
            CpuInfo {
                vendor: Some(CpuVendor::Intel),
                virtualization: true
            }
        );
        let amd = CpuInfo::parse("vendor_id : AuthenticAMD\nflags : fpu sse\n");
        assert_eq!(
            amd,
            CpuInfo {
                vendor: Some(CpuVendor::Amd),
                virtualization: false
            }
        );
        assert_eq!(CpuInfo::parse("").vendor, None);
    }
}
