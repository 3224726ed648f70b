//! `ci github`: the GitHub Actions workflow that builds a fleet repository's images (its template, github.yml.j2, beside this file).
//!
//! The workflow runs one job in the tool's own container image (no build of passthru-image on the runner):
//! `build --hosts` builds every host, each stack once, and pushes to ghcr.io with the workflow token; a daily
//! run rebuilds only when a base's digest moved away from the `org.opencontainers.image.base.digest` label of
//! the image built from it. Every value that reaches the YAML is validated here and written as a JSON string.
//! Actions are pinned by full commit SHA (the tag in the comment beside each), checked in tests/ci_workflow.rs
//! with actionlint and zizmor.

use anyhow::Result;
use camino::{Utf8Component, Utf8Path};
use clap::ValueEnum;

use crate::config::CpuChoice;
use crate::error::InputError;
use crate::fleet::Fleet;
use crate::image_ref::ImageRef;

const TEMPLATE: &str = include_str!("github.yml.j2");

/// The registry the workflow token can push to.
const REGISTRY: &str = "ghcr.io";

/// Whether the workflow signs what it pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Signing {
    None,
    /// Keyless cosign signatures (Sigstore), by digest, with the workflow's OIDC identity.
    Cosign,
}

/// What the workflow is made of, each value checked.
pub(crate) struct Workflow<'a> {
    pub(crate) hosts: &'a Utf8Path,
    pub(crate) tool_image: &'a ImageRef,
    pub(crate) branch: &'a str,
    pub(crate) schedule: &'a str,
    pub(crate) sign: Signing,
}

impl Workflow<'_> {
    /// Checks the values and the fleet the workflow will build, then renders the YAML.
    pub(crate) fn render(&self, fleet: &Fleet) -> Result<String> {
        let hosts = repository_path(self.hosts)?;
        if self.tool_image.digest().is_none() {
            return Err(InputError::new(
                "--tool-image",
                format!(
                    "{}: pin the image by digest (IMAGE@sha256:...; `skopeo inspect --format \
                     '{{{{.Digest}}}}' docker://IMAGE` prints it), so the workflow always runs the \
                     tool you checked",
                    self.tool_image
                ),
            )
            .into());
        }
        if !is_branch(self.branch) {
            return Err(InputError::new(
                "--branch",
                format!(
                    "{:?}: expected a branch name of letters, digits and . _ - /",
                    self.branch
                ),
            )
            .into());
        }
        let schedule = cron(self.schedule)?;
        check_fleet(fleet)?;
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .block_delimiters("[%", "%]")
                .variable_delimiters("[[", "]]")
                .comment_delimiters("[#", "#]")
                .build()?,
        );
        env.add_template("workflow", TEMPLATE)?;
        let sign = match self.sign {
            Signing::None => "none",
            Signing::Cosign => "cosign",
        };
        let text = env.get_template("workflow")?.render(minijinja::context! {
            version => env!("CARGO_PKG_VERSION"),
            hosts => hosts,
            tool_image => self.tool_image.as_str(),
            tool_on_ghcr => self.tool_image.registry() == Some(REGISTRY),
            branch => self.branch,
            schedule => schedule,
            sign => sign,
        })?;
        Ok(text)
    }
}

/// The fleet as the runner will build it: every image goes to ghcr.io, every base comes from a registry the
/// runner can reach, and no host leaves its CPU vendor to the runner's CPU.
fn check_fleet(fleet: &Fleet) -> Result<(), InputError> {
    for host in &fleet.hosts {
        let field = |name: &str| format!("{}: {name}", host.file);
        let tag = &host.config.image.tag;
        if tag.registry() != Some(REGISTRY) {
            return Err(InputError::new(
                field("image.tag"),
                format!(
                    "{tag}: the workflow pushes with the workflow token, which only {REGISTRY} \
                     takes; set image.tag = \"{REGISTRY}/OWNER/NAME\""
                ),
            ));
        }
        let base = &host.config.image.base;
        let local = base
            .registry()
            .is_none_or(|r| r.starts_with("localhost") || r.starts_with("127."));
        if local {
            return Err(InputError::new(
                field("image.base"),
                format!(
                    "{base}: the runner pulls the base; name it with its registry \
                     (quay.io/fedora/fedora-bootc:44)"
                ),
            ));
        }
        if host.config.cpu.vendor == CpuChoice::Auto {
            return Err(InputError::new(
                field("cpu.vendor"),
                "\"auto\" would read the CI runner's CPU; set \"intel\" or \"amd\" (detect writes \
                 it)",
            ));
        }
    }
    Ok(())
}

/// The fleet directory as the workflow names it: relative to the repository root, plain names only.
fn repository_path(path: &Utf8Path) -> Result<String, InputError> {
    let components: Vec<&str> = path
        .components()
        .filter(|c| *c != Utf8Component::CurDir)
        .map(|c| match c {
            Utf8Component::Normal(name) if crate::text_rules::is_plain_name(name) => Ok(name),
            _ => Err(()),
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|parts| if parts.is_empty() { Err(()) } else { Ok(parts) })
        .map_err(|()| {
            InputError::new(
                "--hosts",
                format!(
                    "{path}: expected a path inside the repository, relative to its root (hosts, \
                     fleet/hosts); each part {}",
                    crate::text_rules::PLAIN_NAME_RULE
                ),
            )
        })?;
    Ok(components.join("/"))
}

/// A branch name git and YAML both take as it is.
fn is_branch(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && !s.starts_with(['-', '/', '.'])
        && !s.ends_with(['/', '.'])
        && !s.ends_with(".lock")
        && !s.contains("..")
        && !s.contains("//")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
}

/// Five cron fields of digits and `* , - /`, written with single spaces.
fn cron(s: &str) -> Result<String, InputError> {
    let fields: Vec<&str> = s.split_whitespace().collect();
    let ok = fields.len() == 5
        && fields
            .iter()
            .all(|f| f.chars().all(|c| c.is_ascii_digit() || "*,-/".contains(c)));
    if !ok {
        return Err(InputError::new(
            "--schedule",
            format!(
                "{s:?}: expected five cron fields of digits and * , - / (minute hour day month \
                 weekday, UTC)"
            ),
        ));
    }
    Ok(fields.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_schedules_and_paths_are_checked() {
        for good in ["main", "release/1.x", "v2_fleet"] {
            assert!(is_branch(good), "{good}");
        }
        for bad in ["", "-x", "a..b", "a b", "x.lock", "a/", "a'b", "${{x}}"] {
            assert!(!is_branch(bad), "{bad}");
        }
        assert_eq!(cron(" 5  4 * * 1-5 ").unwrap(), "5 4 * * 1-5");
        for bad in [
            "* * * *",
            "@daily",
            "0 4 * * MON",
            "0 4 * * * *",
            "0 4 * * '",
        ] {
            assert!(cron(bad).is_err(), "{bad}");
        }
        assert_eq!(
            repository_path(Utf8Path::new("fleet/hosts/")).unwrap(),
            "fleet/hosts"
        );
        assert_eq!(repository_path(Utf8Path::new("./hosts")).unwrap(), "hosts");
        for bad in ["/abs", "../up", "a/../b", "a b", "$x", "-h", "."] {
            let err = repository_path(Utf8Path::new(bad)).unwrap_err();
            assert_eq!(err.field, "--hosts", "{bad}");
        }
    }
}
