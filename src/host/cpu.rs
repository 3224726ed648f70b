//! CPU vendor and virtualisation support from /proc/cpuinfo.

use anyhow::Result;
use serde::Serialize;

use crate::error::InputError;
use crate::root::Root;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuVendor {
    Intel,
    Amd,
}

impl CpuVendor {
    pub fn as_str(self) -> &'static str {
        match self {
            CpuVendor::Intel => "intel",
            CpuVendor::Amd => "amd",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuInfo {
    pub vendor: Option<CpuVendor>,
    /// `vmx` (Intel VT-x) or `svm` (AMD-V) present in the flags.
    pub virtualization: bool,
}

impl CpuInfo {
    pub fn read(root: &Root) -> Result<CpuInfo> {
        let text = root.read("/proc/cpuinfo")?;
        Ok(CpuInfo::parse(&text))
    }

    pub fn parse(text: &str) -> CpuInfo {
        let field = |name: &str| {
            text.lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(key, _)| key.trim() == name)
                .map(|(_, value)| value.trim().to_owned())
        };
        let vendor = match field("vendor_id").as_deref() {
            Some("GenuineIntel") => Some(CpuVendor::Intel),
            Some("AuthenticAMD") | Some("HygonGenuine") => Some(CpuVendor::Amd),
            _ => None,
        };
        let flags = field("flags").unwrap_or_default();
        let virtualization = flags.split_whitespace().any(|f| f == "vmx" || f == "svm");
        CpuInfo {
            vendor,
            virtualization,
        }
    }

    /// The vendor, or bad input telling the user to set it when the host does not say.
    pub fn require_vendor(&self, root: &Root) -> Result<CpuVendor> {
        self.vendor.ok_or_else(|| {
            InputError::new(
                "cpu.vendor",
                format!(
                    "\"auto\" could not tell the CPU vendor from {}; set cpu.vendor (or --cpu) to intel or amd",
                    root.join("/proc/cpuinfo")
                ),
            )
            .into()
        })
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
