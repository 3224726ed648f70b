//! Kernel arguments: the ones the tool plans ([`Karg`], validated, written to kargs.d, rpm-ostree and QEMU
//! command lines) and the ones read from a host ([`HostKarg`], anything the kernel accepts, compared against).
//!
//! A planned argument ends up in a kargs.d TOML file, on an `rpm-ostree kargs` command line and in a QEMU
//! `-append`, so it is validated once here and never spliced raw anywhere. The rules are deliberately strict: no
//! whitespace, quotes, control characters or shell metacharacters, because bootc re-parses each kargs.d entry as
//! a kernel command line and quoting rules differ between the kernel, dracut and the shell. How repeated
//! parameters combine, and so what conflicts, is in [`params`].

pub(crate) mod params;

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::pci_id::PciId;
use params::{Param, Repeats};

/// The x86 kernel command line holds COMMAND_LINE_SIZE = 2048 bytes with its terminating NUL
/// (arch/x86/include/asm/setup.h); the bootloader silently truncates what does not fit.
pub(crate) const COMMAND_LINE_MAX: usize = 2047;

/// Characters that are never allowed in a karg we write.
const FORBIDDEN: &[char] = &['"', '\'', '`', '$', ';', '\\'];

/// `-` and `_` in a parameter name are the same character to the kernel (kernel/params.c `parameqn`).
pub(crate) fn normalize_key(key: &str) -> String {
    key.replace('-', "_")
}

/// What planned and host arguments share: `key` or `key=value`, read the same way.
pub(crate) trait KernelArg {
    /// The argument as it is written on the command line.
    fn text(&self) -> &str;

    /// The parameter name as written (`vfio-pci.ids`).
    fn key(&self) -> &str {
        let text = self.text();
        text.split_once('=').map_or(text, |(key, _)| key)
    }

    fn value(&self) -> Option<&str> {
        self.text().split_once('=').map(|(_, value)| value)
    }

    /// The parameter name as the kernel compares it (`vfio_pci.ids`).
    fn normalized_key(&self) -> String {
        normalize_key(self.key())
    }

    /// Whether this sets `param`, whatever the spelling of its name.
    fn is(&self, param: &Param) -> bool {
        self.normalized_key() == param.name
    }

    /// The same argument, whatever the spelling of its name. Values are data and are not normalised.
    fn same_as(&self, other: &dyn KernelArg) -> bool {
        self.normalized_key() == other.normalized_key() && self.value() == other.value()
    }

    /// The comma-separated tokens of the value (`intel_iommu=on,sm_on` -> `on`, `sm_on`).
    fn tokens(&self) -> Vec<&str> {
        self.value()
            .map(|v| v.split(',').filter(|t| !t.is_empty()).collect())
            .unwrap_or_default()
    }
}

/// One planned kernel argument, `key` or `key=value`, validated by [`Karg::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Karg {
    text: String,
}

impl Karg {
    /// Parses and validates one argument. The error says what is wrong and what is allowed.
    pub fn parse(text: &str) -> Result<Karg, String> {
        if text.is_empty() {
            return Err("a kernel argument may not be empty".into());
        }
        if text.len() > COMMAND_LINE_MAX {
            return Err(format!(
                "{}... is {} bytes; the whole x86 kernel command line holds {COMMAND_LINE_MAX}",
                &text[..text.char_indices().nth(32).map_or(text.len(), |(i, _)| i)],
                text.len()
            ));
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
                "{text:?} contains {c:?}; quotes, backslashes, backticks, `$` and `;` are not \
                 allowed"
            ));
        }
        let key = text.split_once('=').map_or(text, |(key, _)| key);
        if key.is_empty() {
            return Err(format!("{text:?} has no parameter name before `=`"));
        }
        // `--` ends the kernel's arguments (the rest goes to init); a name is letters, digits, `_ - .`.
        let name_ok = !key.starts_with(['-', '.'])
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !name_ok {
            return Err(format!(
                "{text:?}: a parameter name is letters, digits, `_`, `-` and `.`, not starting \
                 with `-` or `.`"
            ));
        }
        Ok(Karg {
            text: text.to_owned(),
        })
    }

    /// A planned argument made from a parameter constant and a value rendered from typed, checked data (PCI IDs,
    /// fixed tokens). Checked again anyway: a rendering bug must fail loudly, not reach a command line.
    pub(crate) fn new(param: &Param, value: impl fmt::Display) -> Karg {
        let text = format!("{}={value}", param.name);
        Karg::parse(&text).unwrap_or_else(|e| panic!("a planned kernel argument is invalid: {e}"))
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl KernelArg for Karg {
    fn text(&self) -> &str {
        &self.text
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

impl<'de> Deserialize<'de> for Karg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Karg::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A kernel argument as a host has it (/proc/cmdline, a BLS `options` line, kargs.d of an image): anything the
/// kernel accepts, double-quoted values included (`dyndbg="file x +p"`). Compared against, and given back to
/// rpm-ostree by revert, but never planned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostKarg {
    text: String,
}

impl HostKarg {
    /// Checks one argument read from a record (the live state file): what [`split_cmdline`] gives for one word,
    /// and nothing that a command line would take for an option.
    pub(crate) fn parse(text: &str) -> Result<HostKarg, String> {
        let words = split_cmdline(text);
        match words.as_slice() {
            [word] if word.text == text => {}
            _ => {
                return Err(format!(
                    "{text:?} is not exactly one kernel argument (whitespace is allowed only \
                     inside double quotes)"
                ));
            }
        }
        if text.starts_with('-') {
            return Err(format!(
                "{text:?} begins with `-`: a command line would read it as an option"
            ));
        }
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return Err(format!("{text:?} contains the control character {c:?}"));
        }
        if text.matches('"').count() % 2 == 1 {
            return Err(format!("{text:?} has an unbalanced double quote"));
        }
        if text.len() > COMMAND_LINE_MAX {
            return Err(format!(
                "a {}-byte argument cannot be on a kernel command line of {COMMAND_LINE_MAX} bytes",
                text.len()
            ));
        }
        Ok(HostKarg {
            text: text.to_owned(),
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }
}

impl KernelArg for HostKarg {
    fn text(&self) -> &str {
        &self.text
    }
}

impl From<&Karg> for HostKarg {
    fn from(karg: &Karg) -> HostKarg {
        HostKarg {
            text: karg.text.clone(),
        }
    }
}

impl fmt::Display for HostKarg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for HostKarg {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for HostKarg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        HostKarg::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Why two arguments cannot both be meant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Conflict {
    /// The planned argument it contradicts; `None` when it contradicts the plan as a whole (the IOMMU off).
    pub(crate) planned: Option<Karg>,
    /// One line: what the kernel would do with both.
    pub(crate) reason: String,
}

/// An ordered list of planned kargs without duplicates or contradictions, in the order they are written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kargs {
    list: Vec<Karg>,
    /// Positions in `list` by normalised key, so adding an argument costs the same however many there are.
    by_key: HashMap<String, Vec<usize>>,
    /// Normalised `key=value` texts in `list`, for duplicates.
    texts: HashSet<(String, Option<String>)>,
}

impl Kargs {
    /// Appends `karg` unless the same argument is already there. When it contradicts an argument already in the
    /// list, the list is left unchanged and the contradiction returned.
    pub(crate) fn push(&mut self, karg: Karg) -> Result<(), Conflict> {
        if let Some(conflict) = self.conflict_with(&karg) {
            return Err(conflict);
        }
        let identity = (karg.normalized_key(), karg.value().map(str::to_owned));
        if self.texts.insert(identity) {
            self.by_key
                .entry(karg.normalized_key())
                .or_default()
                .push(self.list.len());
            self.list.push(karg);
        }
        Ok(())
    }

    /// The planned arguments with the parameter of `other`'s name.
    fn same_param(&self, other: &dyn KernelArg) -> impl Iterator<Item = &Karg> {
        self.by_key
            .get(&other.normalized_key())
            .into_iter()
            .flatten()
            .map(|&i| &self.list[i])
    }

    /// How `other` (a host's argument, or one more to plan) contradicts this list, if it does.
    pub(crate) fn conflict_with(&self, other: &dyn KernelArg) -> Option<Conflict> {
        let key = other.normalized_key();
        match params::repeats(&key) {
            Repeats::Accumulates => None,
            Repeats::LastWins => self
                .same_param(other)
                .find(|k| k.value() != other.value())
                .map(|k| Conflict {
                    planned: Some(k.clone()),
                    reason: format!("both set {key}, and the kernel keeps only the last value"),
                }),
            Repeats::PerDriver => {
                let driver = |a: &dyn KernelArg| {
                    a.value()
                        .map(|v| v.split(':').next().unwrap_or(v).to_owned())
                };
                self.same_param(other)
                    .find(|k| driver(*k) == driver(other) && k.value() != other.value())
                    .map(|k| Conflict {
                        planned: Some(k.clone()),
                        reason: format!(
                            "both give {key}= to the driver {}, which takes only the first",
                            driver(other).unwrap_or_default()
                        ),
                    })
            }
            Repeats::Tokens(rules) => {
                let theirs = other.tokens();
                if theirs.contains(&rules.iommu_off) {
                    return Some(Conflict {
                        planned: None,
                        reason: format!(
                            "{key}={} turns the IOMMU off, and passthrough needs it on",
                            rules.iommu_off
                        ),
                    });
                }
                self.same_param(other).find_map(|planned| {
                    let ours = planned.tokens();
                    rules.contradictions.iter().find_map(|&(a, b)| {
                        let clash = (ours.contains(&a) && theirs.contains(&b))
                            || (ours.contains(&b) && theirs.contains(&a));
                        clash.then(|| Conflict {
                            planned: Some(planned.clone()),
                            reason: format!(
                                "{key}= tokens {a} and {b} undo each other; the kernel keeps \
                                 whichever it reads last"
                            ),
                        })
                    })
                })
            }
        }
    }

    /// What is left of a host's token argument once the tokens that contradict this plan are taken out
    /// (`intel_iommu=off,igfx_off` beside a planned `intel_iommu=on` keeps `intel_iommu=igfx_off`); `None` when
    /// nothing is left or the parameter has no tokens.
    pub(crate) fn remainder_of(&self, host: &HostKarg) -> Option<HostKarg> {
        let key = host.normalized_key();
        let Repeats::Tokens(rules) = params::repeats(&key) else {
            return None;
        };
        let ours: Vec<&str> = self.same_param(host).flat_map(|k| k.tokens()).collect();
        let contradicted = |token: &str| {
            token == rules.iommu_off
                || rules.contradictions.iter().any(|&(a, b)| {
                    (token == a && ours.contains(&b)) || (token == b && ours.contains(&a))
                })
        };
        let kept: Vec<&str> = host
            .tokens()
            .into_iter()
            .filter(|t| !contradicted(t))
            .collect();
        (!kept.is_empty()).then(|| HostKarg {
            text: format!("{}={}", host.key(), kept.join(",")),
        })
    }

    /// Whether a host command line gives the kernel what `planned` asks for: every token of a token parameter
    /// among the tokens of all its occurrences, the last value of a last-wins parameter, else the argument itself.
    pub(crate) fn satisfied_by(cmdline: &[HostKarg], planned: &Karg) -> bool {
        let key = planned.normalized_key();
        let mut same = cmdline.iter().filter(|h| h.normalized_key() == key);
        match params::repeats(&key) {
            Repeats::Tokens(_) => {
                let theirs: HashSet<&str> = same.flat_map(|h| h.tokens()).collect();
                planned.tokens().iter().all(|t| theirs.contains(t))
            }
            Repeats::LastWins => same
                .next_back()
                .is_some_and(|h| h.value() == planned.value()),
            Repeats::Accumulates | Repeats::PerDriver => same.any(|h| h.value() == planned.value()),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Karg> {
        self.list.iter()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The bytes these arguments take on a command line, with the spaces between them.
    pub(crate) fn command_line_len(&self) -> usize {
        self.list.iter().map(|k| k.text.len()).sum::<usize>() + self.list.len().saturating_sub(1)
    }

    pub(crate) fn as_strings(&self) -> Vec<String> {
        self.list.iter().map(|k| k.to_string()).collect()
    }
}

impl Serialize for Kargs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.list.serialize(serializer)
    }
}

/// A recorded plan's list: each argument validated, none contradicting another (what [`Kargs::push`] allows).
impl<'de> Deserialize<'de> for Kargs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut kargs = Kargs::default();
        for karg in Vec::<Karg>::deserialize(d)? {
            kargs.push(karg.clone()).map_err(|conflict| {
                serde::de::Error::custom(format!("{karg}: {}", conflict.reason))
            })?;
        }
        Ok(kargs)
    }
}

impl<'a> IntoIterator for &'a Kargs {
    type Item = &'a Karg;
    type IntoIter = std::slice::Iter<'a, Karg>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

/// The device IDs the kernel's vfio-pci binds by: the value of the last `vfio_pci.ids` (a module string
/// parameter), each entry's vendor and device (an entry may go on with subsystem IDs and a class).
pub(crate) fn vfio_pci_ids<K: KernelArg>(kargs: &[K]) -> Vec<PciId> {
    let Some(value) = kargs
        .iter()
        .filter(|k| k.is(&params::VFIO_PCI_IDS))
        .last()
        .and_then(|k| k.value())
    else {
        return Vec::new();
    };
    value
        .split(',')
        .filter_map(|entry| {
            let mut parts = entry.splitn(3, ':');
            format!("{}:{}", parts.next()?, parts.next()?).parse().ok()
        })
        .collect()
}

/// Splits a host command line (/proc/cmdline, BLS `options`) into words, keeping double-quoted values
/// (`dyndbg="file x +p"`) together as the kernel does (lib/cmdline.c `next_arg`).
pub(crate) fn split_cmdline(line: &str) -> Vec<HostKarg> {
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
                    words.push(HostKarg {
                        text: std::mem::take(&mut word),
                    });
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(HostKarg { text: word });
    }
    words
}

#[cfg(test)]
mod tests;
