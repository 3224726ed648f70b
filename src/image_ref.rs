//! Container image references (`quay.io/fedora/fedora-bootc:44`, `localhost/x@sha256:…`).
//!
//! They are written into a Containerfile `FROM` line and onto engine command lines, so they are checked against
//! the distribution reference grammar rather than passed through.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageRef(String);

impl ImageRef {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The reference pinned to `digest`, replacing any tag's role (`name:tag@sha256:…` is valid and explicit).
    pub(crate) fn pinned(&self, digest: &Digest) -> ImageRef {
        let name = self
            .0
            .split_once('@')
            .map_or(self.0.as_str(), |(name, _)| name);
        ImageRef(format!("{name}@{digest}"))
    }

    /// The reference without its tag and digest: `quay.io/fedora/fedora-bootc` of
    /// `quay.io/fedora/fedora-bootc:44@sha256:…`. Registries and engines key digests by it.
    pub(crate) fn repository(&self) -> &str {
        let name = self
            .0
            .split_once('@')
            .map_or(self.0.as_str(), |(name, _)| name);
        // As in parsing: a tag follows the last ':' after the last '/'; a ':' before that is a port.
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        match name[last_slash..].rfind(':') {
            Some(i) => &name[..last_slash + i],
            None => name,
        }
    }

    /// The registry host (with its port), when the reference names one: `ghcr.io`, `localhost:5000`.
    pub(crate) fn registry(&self) -> Option<&str> {
        let (first, _) = self.repository().split_once('/')?;
        (first.contains(['.', ':']) || first == "localhost").then_some(first)
    }

    /// The digest the reference pins, if any.
    pub(crate) fn digest(&self) -> Option<Digest> {
        let (_, digest) = self.0.split_once('@')?;
        Some(Digest(digest.to_owned()))
    }
}

impl FromStr for ImageRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let allowed = "expected [registry[:port]/]name[:tag][@sha256:<64 hex>], lowercase name \
                       components of [a-z0-9] joined by . _ - or /";
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (s, None),
        };
        if let Some(digest) = digest {
            digest.parse::<Digest>()?;
        }
        // A tag is after the last ':' that follows the last '/' (a ':' before it is a registry port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            let valid = !tag.is_empty()
                && tag.len() <= 128
                && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !valid {
                return Err(format!("{s:?} has an invalid tag {tag:?}: {allowed}"));
            }
        }
        if name.is_empty() || !name_is_valid(name) {
            return Err(format!("{s:?} is not an image reference: {allowed}"));
        }
        Ok(ImageRef(s.to_owned()))
    }
}

fn name_is_valid(name: &str) -> bool {
    let mut components = name.split('/').peekable();
    // The first component may be a registry host with a port and upper case (`Registry:5000`).
    let first = components.next().unwrap_or_default();
    let is_registry =
        components.peek().is_some() && (first.contains(['.', ':']) || first == "localhost");
    let first_ok = if is_registry {
        let (host, port) = first.split_once(':').unwrap_or((first, "0"));
        !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
            && !port.is_empty()
            && port.chars().all(|c| c.is_ascii_digit())
    } else {
        path_component_ok(first)
    };
    first_ok && components.all(path_component_ok)
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or any number of `-`.
fn path_component_ok(c: &str) -> bool {
    let starts_and_ends_alnum = c
        .starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
        && c.ends_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit());
    starts_and_ends_alnum
        && c.chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
        && !c.contains("..")
        && !c.contains("._")
        && !c.contains("_.")
        && !c.contains("___")
}

impl TryFrom<String> for ImageRef {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ImageRef> for String {
    fn from(r: ImageRef) -> String {
        r.0
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A content digest, `sha256:<64 lowercase hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) struct Digest(String);

impl FromStr for Digest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("sha256:") {
            Some(hex) if crate::text_rules::is_lower_hex(hex, 64) => Ok(Digest(s.to_owned())),
            _ => Err(format!(
                "{s:?} is not a digest; expected sha256: followed by 64 lowercase hex digits"
            )),
        }
    }
}

impl TryFrom<String> for Digest {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn accepts_the_references_people_use() {
        for good in [
            "quay.io/fedora/fedora-bootc:44",
            "ghcr.io/ublue-os/bazzite:stable",
            "localhost/passthru-image:latest",
            "localhost:5000/my/image",
            "fedora-bootc",
            "registry.example.com:8443/a_b/c-d.e:v1.2_3",
        ] {
            assert!(good.parse::<ImageRef>().is_ok(), "{good} rejected");
        }
        assert!(
            format!("quay.io/fedora/fedora-bootc@{DIGEST}")
                .parse::<ImageRef>()
                .is_ok()
        );
    }

    #[test]
    fn rejects_what_would_break_a_containerfile_or_a_command_line() {
        for bad in [
            "",
            "quay.io/Fedora/bootc",
            "quay.io/fedora/bootc:44 AS x",
            "quay.io/fedora/bootc\nRUN id",
            "a:b:c",
            "img:",
            "img:-bad",
            "img@sha256:short",
            "-img",
            "img/",
            "$(id)",
        ] {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn repository_registry_and_digest_are_the_parts_of_the_reference() {
        let pinned: ImageRef = format!("localhost:5000/a/b:44@{DIGEST}").parse().unwrap();
        assert_eq!(pinned.repository(), "localhost:5000/a/b");
        assert_eq!(pinned.registry(), Some("localhost:5000"));
        assert_eq!(pinned.digest().unwrap().to_string(), DIGEST);
        let short: ImageRef = "fedora-bootc:44".parse().unwrap();
        assert_eq!(short.repository(), "fedora-bootc");
        assert_eq!(short.registry(), None);
        assert_eq!(short.digest(), None);
        let docker_hub: ImageRef = "library/fedora".parse().unwrap();
        assert_eq!(docker_hub.registry(), None);
        let ghcr: ImageRef = "ghcr.io/me/vfio".parse().unwrap();
        assert_eq!(
            (ghcr.repository(), ghcr.registry()),
            ("ghcr.io/me/vfio", Some("ghcr.io"))
        );
    }

    #[test]
    fn pinning_keeps_the_name_and_adds_the_digest() {
        let r: ImageRef = "quay.io/fedora/fedora-bootc:44".parse().unwrap();
        let d: Digest = DIGEST.parse().unwrap();
        assert_eq!(
            r.pinned(&d).as_str(),
            format!("quay.io/fedora/fedora-bootc:44@{DIGEST}")
        );
    }
}
