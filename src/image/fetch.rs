//! Git module sources, fetched on the build machine for `generate` and `build`, so the build stage needs neither
//! git nor network for them and the dkms.conf reader sees a git source as it sees a local one.
//!
//! Only the pinned commit is fetched (`--depth 1`, by hash), over https, ssh or file transports alone, without
//! a terminal prompt, and the checkout's HEAD must be that commit. git runs with argument vectors and `--`
//! before the URL; the URL itself was checked when the config was read (no ssh host starting with `-`). The
//! checkout lives in a scratch directory that goes with [`Fetched`]; the build context takes its files, never
//! its `.git`.

use anyhow::{Context, Result, bail};
use camino::Utf8Path;

use crate::cmd::Cmd;
use crate::config::ModuleSource;
use crate::plan::{Checkouts, ModuleConf, Plan};
use crate::verbosity::Verbosity;

/// `-c` options of every git call: no transport but https, ssh and file, and ssh that never asks.
const GIT_OPTIONS: &[&str] = &[
    "-c",
    "protocol.allow=never",
    "-c",
    "protocol.https.allow=always",
    "-c",
    "protocol.ssh.allow=always",
    "-c",
    "protocol.file.allow=always",
    "-c",
    "core.sshCommand=ssh -o BatchMode=yes",
    "-c",
    "advice.detachedHead=false",
];

/// The checkouts of this run's git sources, removed when dropped.
pub(crate) struct Fetched {
    pub(crate) checkouts: Checkouts,
    _scratch: Option<tempfile::TempDir>,
}

/// Fetches every git module source of `plan` whose dkms.conf is still unread; each fetch is announced unless
/// `verbosity` is quiet.
pub(crate) fn fetch_git_sources(plan: &Plan, verbosity: Verbosity) -> Result<Fetched> {
    let mut checkouts = Checkouts::default();
    let sources: Vec<(&str, &str)> = plan
        .modules
        .iter()
        .filter(|m| matches!(m.conf, ModuleConf::AtCommit))
        .filter_map(|m| match &m.source {
            ModuleSource::Git { url, commit } => Some((url.as_str(), commit.as_str())),
            ModuleSource::Path { .. } => None,
        })
        .collect();
    if sources.is_empty() {
        return Ok(Fetched {
            checkouts,
            _scratch: None,
        });
    }
    let scratch = tempfile::Builder::new()
        .prefix("passthru-image-sources.")
        .tempdir()
        .context("creating a directory for the module sources")?;
    for (i, (url, commit)) in sources.into_iter().enumerate() {
        let dir = Utf8Path::from_path(scratch.path())
            .context("the temporary directory's path is not UTF-8")?
            .join(format!("source-{i}"));
        if verbosity >= Verbosity::Normal {
            crate::error::stderr_line(format_args!("Fetching {url} at {commit}"));
        }
        fetch(url, commit, &dir)?;
        checkouts.add(url, commit, dir);
    }
    Ok(Fetched {
        checkouts,
        _scratch: Some(scratch),
    })
}

/// Fetches `commit` alone from `url` into a new repository in `dir` and checks it out.
fn fetch(url: &str, commit: &str, dir: &Utf8Path) -> Result<()> {
    for git in [
        init_cmd(dir),
        fetch_cmd(dir, url, commit),
        checkout_cmd(dir, commit),
    ] {
        git.read()
            .with_context(|| format!("fetching {url} at {commit}"))?;
    }
    let head = head_cmd(dir).read()?;
    if head.trim() != commit {
        bail!(
            "fetching {url} at {commit} checked out {}, not the pinned commit",
            head.trim()
        );
    }
    Ok(())
}

/// git without a terminal prompt (a private repository would otherwise wait for a password).
fn git(dir: Option<&Utf8Path>) -> Cmd {
    let git = Cmd::new("git").env("GIT_TERMINAL_PROMPT", "0");
    let git = match dir {
        Some(dir) => git.arg("-C").arg(dir.as_str()),
        None => git,
    };
    git.args(GIT_OPTIONS)
}

/// An empty repository without the user's template directory (whose hooks would run on checkout).
fn init_cmd(dir: &Utf8Path) -> Cmd {
    git(None)
        .args(["init", "--quiet", "--template=", "--"])
        .arg(dir.as_str())
}

fn fetch_cmd(dir: &Utf8Path, url: &str, commit: &str) -> Cmd {
    git(Some(dir)).args([
        "fetch",
        "--quiet",
        "--depth=1",
        "--no-tags",
        "--",
        url,
        commit,
    ])
}

fn checkout_cmd(dir: &Utf8Path, commit: &str) -> Cmd {
    git(Some(dir)).args(["checkout", "--quiet", "--detach", commit, "--"])
}

fn head_cmd(dir: &Utf8Path) -> Cmd {
    git(Some(dir)).args(["rev-parse", "--verify", "HEAD^{commit}"])
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: &str = "29b25fd6929a2215477a5e39b29a0d5c4d45b6e9";

    fn words(cmd: &Cmd) -> Vec<String> {
        cmd.display().split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn every_git_call_allows_only_https_ssh_and_file() {
        let dir = Utf8Path::new("/tmp/x");
        for cmd in [
            init_cmd(dir),
            fetch_cmd(dir, "https://example.org/vr.git", COMMIT),
            checkout_cmd(dir, COMMIT),
            head_cmd(dir),
        ] {
            let options = cmd.display();
            assert!(
                options.contains(
                    "-c protocol.allow=never -c protocol.https.allow=always -c \
                     protocol.ssh.allow=always -c protocol.file.allow=always"
                ),
                "{options}"
            );
            assert!(
                options.contains("-c \"core.sshCommand=ssh -o BatchMode=yes\""),
                "{options}"
            );
        }
    }

    #[test]
    fn the_url_and_the_commit_come_after_a_double_dash() {
        let argv = words(&fetch_cmd(
            Utf8Path::new("/tmp/x"),
            "ssh://git@example.org/vr.git",
            COMMIT,
        ));
        let tail: Vec<&str> = argv.iter().map(String::as_str).skip(3).collect();
        assert_eq!(&argv[..3], ["git", "-C", "/tmp/x"]);
        assert_eq!(
            &tail[tail.len() - 7..],
            [
                "fetch",
                "--quiet",
                "--depth=1",
                "--no-tags",
                "--",
                "ssh://git@example.org/vr.git",
                COMMIT
            ]
        );
        let init = words(&init_cmd(Utf8Path::new("/tmp/-x")));
        assert_eq!(&init[init.len() - 2..], ["--", "/tmp/-x"]);
    }

    /// A local repository, the pinned commit not at its tip: only that commit is fetched and checked out,
    /// with no .git in what the build context copies.
    #[test]
    fn fetches_the_pinned_commit_from_a_local_repository() {
        let repo = tempfile::tempdir().unwrap();
        let repo = Utf8Path::from_path(repo.path()).unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(repo)
                .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        git(&["init", "--quiet"]);
        std::fs::write(repo.join("dkms.conf"), "first\n").unwrap();
        git(&["add", "dkms.conf"]);
        git(&["commit", "--quiet", "-m", "first"]);
        let pinned = git(&["rev-parse", "HEAD"]);
        std::fs::write(repo.join("dkms.conf"), "second\n").unwrap();
        git(&["commit", "--quiet", "-am", "second"]);

        let out = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(out.path()).unwrap().join("checkout");
        let url = format!("file://{repo}");
        fetch(&url, &pinned, &dir).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("dkms.conf")).unwrap(),
            "first\n"
        );
        let history = std::process::Command::new("git")
            .args(["-C", dir.as_str(), "rev-list", "--count", "HEAD"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&history.stdout).trim(), "1");

        // A commit the repository does not have fails with git's own words.
        let missing = "0".repeat(40);
        let err = fetch(
            &url,
            &missing,
            &Utf8Path::from_path(out.path()).unwrap().join("other"),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains(&missing), "{err:#}");
    }
}
