//! The labels `build` adds to the template's own (`containers.bootc`, title, base name): what CI users, registries
//! and the generated workflow read back from an image. Where each value comes from:
//!
//! | label | value |
//! |---|---|
//! | `org.opencontainers.image.source` | `$GITHUB_SERVER_URL/$GITHUB_REPOSITORY` (GitHub Actions sets both) |
//! | `org.opencontainers.image.revision` | `$GITHUB_SHA` |
//! | `org.opencontainers.image.created` | `$SOURCE_DATE_EPOCH` in RFC 3339, UTC |
//! | `org.opencontainers.image.base.digest` | the base's digest, as the engine pulled it |
//! | `passthru-image.config.sha256` | sha256 of the effective config (overrides applied) as JSON |
//! | `passthru-image.version` | the version of passthru-image that built the image |
//!
//! `org.opencontainers.image.version` is left to the base: the derived image inherits the base's label, which
//! is the OS version `bootc status` shows. `created` is the time of the source (SOURCE_DATE_EPOCH, the
//! reproducible-builds convention), never the clock's: a label that changes on every build would make every
//! build a new image even when nothing changed (the engine's own `created` field records the build time).
//! Unset or empty variables give no label; a set one that is malformed is bad input naming the variable.

use std::ffi::OsString;

use anyhow::Result;
use sha2::{Digest as _, Sha256};

use super::engine::Label;
use crate::config::Config;
use crate::error::InputError;
use crate::image_ref::Digest;

pub(crate) const SOURCE: &str = "org.opencontainers.image.source";
pub(crate) const REVISION: &str = "org.opencontainers.image.revision";
pub(crate) const CREATED: &str = "org.opencontainers.image.created";
/// Compared by the generated workflow's schedule with the base's current digest.
pub(crate) const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
pub(crate) const CONFIG_SHA256: &str = "passthru-image.config.sha256";
pub(crate) const TOOL_VERSION: &str = "passthru-image.version";

/// 9999-12-31T23:59:59Z, the last second RFC 3339 can write.
const MAX_EPOCH: u64 = 253_402_300_799;

/// Where the image's source is, from the CI environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Provenance {
    pub(crate) source: Option<String>,
    pub(crate) revision: Option<String>,
    pub(crate) created: Option<String>,
}

impl Provenance {
    pub(crate) fn from_env() -> Result<Provenance> {
        Provenance::from_vars(|name| std::env::var_os(name))
    }

    fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Result<Provenance> {
        let get = |name: &'static str| -> Result<Option<String>, InputError> {
            match var(name) {
                None => Ok(None),
                Some(value) if value.is_empty() => Ok(None),
                Some(value) => value
                    .into_string()
                    .map(Some)
                    .map_err(|_| InputError::new(name, "is not UTF-8")),
            }
        };
        let server = get("GITHUB_SERVER_URL")?;
        if let Some(server) = &server {
            check(
                "GITHUB_SERVER_URL",
                server,
                is_server_url(server),
                "https://HOST[:PORT]",
            )?;
        }
        let repository = get("GITHUB_REPOSITORY")?;
        if let Some(repository) = &repository {
            check(
                "GITHUB_REPOSITORY",
                repository,
                is_repository(repository),
                "OWNER/NAME",
            )?;
        }
        let revision = get("GITHUB_SHA")?;
        if let Some(revision) = &revision {
            let hex = crate::text_rules::is_lower_hex(revision, 40)
                || crate::text_rules::is_lower_hex(revision, 64);
            check(
                "GITHUB_SHA",
                revision,
                hex,
                "a commit hash of 40 (or 64) lowercase hex digits",
            )?;
        }
        let created = get("SOURCE_DATE_EPOCH")?
            .map(|epoch| match epoch.parse::<u64>() {
                Ok(seconds)
                    if seconds <= MAX_EPOCH && epoch.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    Ok(rfc3339(seconds))
                }
                _ => Err(InputError::new(
                    "SOURCE_DATE_EPOCH",
                    format!(
                        "{epoch:?}: expected seconds since 1970 (e.g. `git log -1 --format=%ct`)"
                    ),
                )),
            })
            .transpose()?;
        Ok(Provenance {
            source: server.zip(repository).map(|(s, r)| format!("{s}/{r}")),
            revision,
            created,
        })
    }
}

fn check(name: &str, value: &str, ok: bool, allowed: &str) -> Result<(), InputError> {
    if ok {
        Ok(())
    } else {
        Err(InputError::new(
            name,
            format!("{value:?}: expected {allowed}"),
        ))
    }
}

fn is_server_url(s: &str) -> bool {
    let Some(authority) = s.strip_prefix("https://") else {
        return false;
    };
    let (host, port) = authority.split_once(':').unwrap_or((authority, "443"));
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c))
        && !port.is_empty()
        && port.chars().all(|c| c.is_ascii_digit())
}

fn is_repository(s: &str) -> bool {
    let Some((owner, name)) = s.split_once('/') else {
        return false;
    };
    !owner.is_empty()
        && owner.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// sha256 of the config as JSON after the command line's overrides: comments and layout of the file do not
/// change it, a changed value does.
pub(crate) fn config_sha256(config: &Config) -> String {
    let json = serde_json::to_vec(config).expect("a config always serializes");
    format!("{:x}", Sha256::digest(json))
}

/// The labels `build` computes for one image, but those the user's `--label`s set themselves (theirs win). They go
/// into the Containerfile, the user's onto the engine's command line.
pub(crate) fn image_labels(
    provenance: &Provenance,
    base_digest: Option<&Digest>,
    config_sha256: &str,
    user: &[Label],
) -> Vec<Label> {
    let computed = [
        (SOURCE, provenance.source.clone()),
        (REVISION, provenance.revision.clone()),
        (CREATED, provenance.created.clone()),
        (BASE_DIGEST, base_digest.map(Digest::to_string)),
        (CONFIG_SHA256, Some(config_sha256.to_owned())),
        (TOOL_VERSION, Some(env!("CARGO_PKG_VERSION").to_owned())),
    ];
    computed
        .into_iter()
        .filter_map(|(key, value)| value.map(|value| (key, value)))
        .filter(|(key, _)| !user.iter().any(|label| label.key == *key))
        .map(|(key, value)| Label {
            key: key.to_owned(),
            value,
        })
        .collect()
}

/// A value a Containerfile holds as it is between double quotes: no `$` (expanded), quote, backslash or space.
pub(crate) fn is_plain_value(value: &str) -> bool {
    value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._:/+@=-".contains(c))
}

/// `seconds` since 1970 as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339(seconds: u64) -> String {
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let time = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        time / 3600,
        time % 3600 / 60,
        time % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provenance(vars: &[(&str, &str)]) -> Result<Provenance> {
        let vars: Vec<(String, OsString)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        Provenance::from_vars(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn github_actions_variables_make_source_and_revision() {
        let p = provenance(&[
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "me/fleet.config"),
            ("GITHUB_SHA", SHA),
            ("SOURCE_DATE_EPOCH", "1700000000"),
        ])
        .unwrap();
        assert_eq!(
            p.source.as_deref(),
            Some("https://github.com/me/fleet.config")
        );
        assert_eq!(p.revision.as_deref(), Some(SHA));
        assert_eq!(p.created.as_deref(), Some("2023-11-14T22:13:20Z"));
        // Outside CI there is nothing to say, and an empty variable is an unset one.
        assert_eq!(
            provenance(&[("GITHUB_SHA", ""), ("GITHUB_REPOSITORY", "me/x")]).unwrap(),
            Provenance::default()
        );
    }

    #[test]
    fn malformed_variables_are_bad_input_naming_the_variable() {
        for (name, value) in [
            ("GITHUB_SERVER_URL", "http://github.com"),
            ("GITHUB_SERVER_URL", "https://github.com/x\"y"),
            ("GITHUB_REPOSITORY", "me"),
            ("GITHUB_REPOSITORY", "me/x y"),
            ("GITHUB_SHA", "HEAD"),
            ("GITHUB_SHA", &SHA.to_uppercase()),
            ("SOURCE_DATE_EPOCH", "-1"),
            ("SOURCE_DATE_EPOCH", "+5"),
            ("SOURCE_DATE_EPOCH", "253402300800"),
            ("SOURCE_DATE_EPOCH", "yesterday"),
        ] {
            let err = provenance(&[(name, value)]).unwrap_err();
            assert_eq!(crate::error::exit_code(&err), 2, "{name}={value}");
            assert!(err.to_string().starts_with(name), "{err}");
        }
    }

    #[test]
    fn dates_are_utc_rfc3339_over_the_whole_range() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(rfc3339(MAX_EPOCH), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn computed_labels_leave_out_what_the_user_labels_and_what_is_unknown() {
        let digest: Digest = format!("sha256:{}", "c".repeat(64)).parse().unwrap();
        let user = [
            "org.opencontainers.image.revision=v1".parse().unwrap(),
            "org.example.x=y".parse().unwrap(),
        ];
        let provenance = Provenance {
            revision: Some(SHA.into()),
            ..Default::default()
        };
        let labels = image_labels(&provenance, Some(&digest), "abc", &user);
        let pairs: Vec<(&str, &str)> = labels
            .iter()
            .map(|l| (l.key.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                (BASE_DIGEST, digest.to_string().as_str()),
                (CONFIG_SHA256, "abc"),
                (TOOL_VERSION, env!("CARGO_PKG_VERSION")),
            ]
        );
    }

    #[test]
    fn every_computed_value_is_plain_enough_for_a_containerfile() {
        let provenance = provenance(&[
            ("GITHUB_SERVER_URL", "https://github.example.com:8443"),
            ("GITHUB_REPOSITORY", "me-2/fleet_x.y"),
            ("GITHUB_SHA", SHA),
            ("SOURCE_DATE_EPOCH", "253402300799"),
        ])
        .unwrap();
        let digest: Digest = format!("sha256:{}", "c".repeat(64)).parse().unwrap();
        for label in image_labels(&provenance, Some(&digest), &"e".repeat(64), &[]) {
            assert!(is_plain_value(&label.value), "{label:?}");
        }
        for not_plain in ["a b", "$HOME", "a\"b", "a\\b", "ü"] {
            assert!(!is_plain_value(not_plain), "{not_plain}");
        }
    }

    #[test]
    fn the_config_hash_follows_values_not_layout() {
        let a = Config::from_toml("[vfio]\nids = [\"10de:1401\"]\n", "a.toml").unwrap();
        let b =
            Config::from_toml("# a comment\n[vfio]\nids = [ \"10de:1401\" ]\n", "b.toml").unwrap();
        let c = Config::from_toml("[vfio]\nids = [\"10de:1402\"]\n", "c.toml").unwrap();
        assert_eq!(config_sha256(&a), config_sha256(&b));
        assert_ne!(config_sha256(&a), config_sha256(&c));
        assert_eq!(config_sha256(&a).len(), 64);
    }
}
