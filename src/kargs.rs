//! Kernel arguments: parse, validate, normalise, and detect same-key conflicts.
//!
//! A karg ends up in a kargs.d TOML file, on an `rpm-ostree kargs` command line and in a QEMU `-append`, so it
//! is validated once here and never spliced raw anywhere. The rules are deliberately strict: no whitespace,
//! quotes, control characters or shell metacharacters, because bootc re-parses each kargs.d entry as a kernel
//! command line and quoting rules differ between the kernel, dracut and the shell.

use std::fmt;

use serde::{Serialize, Serializer};

/// Keys the kernel or dracut accept several times with different values, each one meaningful.
/// For every other key, two different values are a conflict (the kernel keeps the last one, silently).
const REPEATABLE_KEYS: &[&str] = &[
    "console",
    "video",
    "rd.driver.pre",
    "rd.driver.post",
    "rd.driver.blacklist",
    "module_blacklist",
];

/// Characters that are never allowed in a karg we write.
const FORBIDDEN: &[char] = &['"', '\'', '`', '$', ';', '\\'];

/// One kernel argument, `key` or `key=value`, as it is written on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Karg {
    text: String,
}

impl Karg {
    /// Parses and validates one argument. The error says what is wrong and what is allowed.
    pub fn parse(text: &str) -> Result<Karg, String> {
        if text.is_empty() {
            return Err("a kernel argument may not be empty".into());
        }
        if let Some(c) = text.chars().find(|c| c.is_whitespace()) {
            return Err(format!(
                "{text:?} contains whitespace ({c:?}); give each argument as its own list entry"
            ));
        }
        if let Some(c) = text.chars().find(|c| c.is_control() || !c.is_ascii()) {
            return Err(format!(
                "{text:?} contains {c:?}; only printable ASCII is allowed"
            ));
        }
        if let Some(c) = text.chars().find(|c| FORBIDDEN.contains(c)) {
            return Err(format!(
                "{text:?} contains {c:?}; quotes, backslashes, backticks, `$` and `;` are not allowed"
            ));
        }
        if text.starts_with('=') {
            return Err(format!("{text:?} has no parameter name before `=`"));
        }
        Ok(Karg {
            text: text.to_owned(),
        })
    }

    /// Takes a word read from a host's command line (/proc/cmdline, a BLS `options` line) as it is.
    /// Host kargs are compared against, never written back, so they are not held to [`Karg::parse`]'s rules.
    pub fn from_host(word: &str) -> Karg {
        Karg {
            text: word.to_owned(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parameter name as written (`vfio-pci.ids`).
    pub fn key(&self) -> &str {
        self.text.split_once('=').map_or(&self.text, |(key, _)| key)
    }

    pub fn value(&self) -> Option<&str> {
        self.text.split_once('=').map(|(_, value)| value)
    }

    /// The parameter name with `-` read as `_`, as the kernel compares them (`vfio-pci.ids` = `vfio_pci.ids`).
    pub fn normalized_key(&self) -> String {
        self.key().replace('-', "_")
    }

    /// The same argument, whatever the spelling of its name.
    pub fn same_as(&self, other: &Karg) -> bool {
        self.normalized_key() == other.normalized_key() && self.value() == other.value()
    }

    /// Two arguments that set the same parameter to different values.
    pub fn conflicts_with(&self, other: &Karg) -> bool {
        self.normalized_key() == other.normalized_key()
            && self.value() != other.value()
            && !REPEATABLE_KEYS.contains(&self.normalized_key().as_str())
    }
}

impl fmt::Display for Karg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Karg {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

/// An ordered list of kargs without duplicates, in the order they will be written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Kargs(Vec<Karg>);

impl Kargs {
    /// Appends `karg` unless the same argument is already there. Returns the argument it conflicts with,
    /// leaving the list unchanged, when one sets the same parameter to another value.
    pub fn push(&mut self, karg: Karg) -> Result<(), Karg> {
        if let Some(existing) = self.0.iter().find(|k| k.conflicts_with(&karg)) {
            return Err(existing.clone());
        }
        if !self.0.iter().any(|k| k.same_as(&karg)) {
            self.0.push(karg);
        }
        Ok(())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Karg> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, karg: &Karg) -> bool {
        self.0.iter().any(|k| k.same_as(karg))
    }

    pub fn as_strings(&self) -> Vec<String> {
        self.0.iter().map(|k| k.to_string()).collect()
    }
}

impl<'a> IntoIterator for &'a Kargs {
    type Item = &'a Karg;
    type IntoIter = std::slice::Iter<'a, Karg>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Splits a host command line (/proc/cmdline, BLS `options`) into words, keeping double-quoted values
/// (`dyndbg="file x +p"`) together as the kernel does.
pub fn split_cmdline(line: &str) -> Vec<Karg> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                word.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(Karg::from_host(&std::mem::take(&mut word)));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(Karg::from_host(&word));
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn karg(s: &str) -> Karg {
        Karg::parse(s).unwrap()
    }

    #[test]
    fn parses_flags_and_key_values() {
        assert_eq!(karg("quiet").key(), "quiet");
        assert_eq!(karg("quiet").value(), None);
        let ids = karg("vfio_pci.ids=10de:2684,10de:22ba");
        assert_eq!(ids.key(), "vfio_pci.ids");
        assert_eq!(ids.value(), Some("10de:2684,10de:22ba"));
        // Only the first `=` separates: the value may hold more.
        assert_eq!(karg("root=UUID=abc").value(), Some("UUID=abc"));
        assert_eq!(karg("foo=").value(), Some(""));
    }

    #[test]
    fn rejects_whitespace_quotes_control_and_shell_characters() {
        for bad in [
            "",
            "iommu=pt quiet",
            "a\tb",
            "foo=\"bar\"",
            "foo='bar'",
            "foo=`id`",
            "foo=$HOME",
            "foo=1;reboot",
            "foo=a\\b",
            "foo=\u{7}",
            "foo=\n",
            "foo=é",
            "=value",
        ] {
            assert!(Karg::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn error_says_what_is_allowed() {
        let err = Karg::parse("iommu=pt quiet").unwrap_err();
        assert!(err.contains("whitespace"), "{err}");
        let err = Karg::parse("a=$(reboot)").unwrap_err();
        assert!(err.contains("not allowed"), "{err}");
    }

    #[test]
    fn dashes_and_underscores_in_names_are_the_same_parameter() {
        assert!(karg("vfio-pci.ids=1:2").same_as(&karg("vfio_pci.ids=1:2")));
        assert_eq!(karg("vfio-pci.ids=1:2").normalized_key(), "vfio_pci.ids");
        // Values are not normalised: they are data.
        assert!(!karg("a=x-y").same_as(&karg("a=x_y")));
    }

    #[test]
    fn same_key_with_another_value_conflicts() {
        assert!(karg("iommu=pt").conflicts_with(&karg("iommu=off")));
        assert!(karg("vfio_pci.ids=1:2").conflicts_with(&karg("vfio-pci.ids=1:3")));
        assert!(karg("quiet").conflicts_with(&karg("quiet=0")));
        assert!(!karg("iommu=pt").conflicts_with(&karg("iommu=pt")));
        assert!(!karg("iommu=pt").conflicts_with(&karg("intel_iommu=on")));
    }

    #[test]
    fn repeatable_keys_never_conflict() {
        assert!(!karg("console=tty0").conflicts_with(&karg("console=ttyS0,115200")));
        assert!(!karg("video=efifb:off").conflicts_with(&karg("video=vesafb:off")));
        assert!(!karg("rd.driver.pre=vfio-pci").conflicts_with(&karg("rd.driver.pre=vfio")));
    }

    #[test]
    fn list_keeps_order_drops_duplicates_and_refuses_conflicts() {
        let mut list = Kargs::default();
        list.push(karg("intel_iommu=on")).unwrap();
        list.push(karg("iommu=pt")).unwrap();
        list.push(karg("intel-iommu=on")).unwrap();
        assert_eq!(list.push(karg("iommu=off")), Err(karg("iommu=pt")));
        assert_eq!(list.as_strings(), ["intel_iommu=on", "iommu=pt"]);
    }

    #[test]
    fn splits_host_command_lines_keeping_quoted_values() {
        let words =
            split_cmdline("BOOT_IMAGE=(hd0,gpt2)/vmlinuz ro  dyndbg=\"file x +p\" iommu=off\n");
        let words: Vec<&str> = words.iter().map(Karg::as_str).collect();
        assert_eq!(
            words,
            [
                "BOOT_IMAGE=(hd0,gpt2)/vmlinuz",
                "ro",
                "dyndbg=\"file x +p\"",
                "iommu=off"
            ]
        );
    }
}
