//! Build script: names the commit the binary is built from, for `passthru-image --version`.
//!
//! It asks git for the checkout's commit and gives it to the crate as `PASSTHRU_IMAGE_COMMIT` ("commit
//! 0123456789ab"). Without git, outside a checkout (a source tarball, the tool image's build stage, which copies
//! only the sources) or when git fails for any reason it gives "unknown commit": the version line is a help to
//! the user, never a reason for a build to fail. It runs git directly: a build script cannot use the crate's
//! own program runner (`src/cmd.rs`), and git's arguments here are constants.

use std::path::PathBuf;
use std::process::Command;

/// Hex digits of the commit shown: unique in any repository of this size, short enough to read.
const COMMIT_DIGITS: usize = 12;

fn main() {
    println!("cargo:rustc-env=PASSTHRU_IMAGE_COMMIT={}", commit_text());
    let watched = match in_own_checkout() {
        true => files_that_move_head(),
        false => Vec::new(),
    };
    for path in watched {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    // Without a rerun-if-changed line cargo would rerun this on any change in the package.
    println!("cargo:rerun-if-changed=src/build.rs");
}

fn commit_text() -> String {
    if !in_own_checkout() {
        return "unknown commit".to_owned();
    }
    match git(&["rev-parse", "--verify", "--quiet", "HEAD^{commit}"]) {
        Some(hash) if is_commit_hash(&hash) => format!("commit {}", &hash[..COMMIT_DIGITS]),
        _ => "unknown commit".to_owned(),
    }
}

/// Whether the package is the top of a git checkout: sources unpacked inside some other repository (a vendor
/// directory) must not take that repository's commit for theirs.
fn in_own_checkout() -> bool {
    let Some(top) = git(&["rev-parse", "--show-toplevel"]) else {
        return false;
    };
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let canonical = |p: PathBuf| p.canonicalize().ok();
    manifest_dir
        .and_then(canonical)
        .is_some_and(|dir| canonical(PathBuf::from(top)) == Some(dir))
}

fn is_commit_hash(text: &str) -> bool {
    text.len() >= COMMIT_DIGITS && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The files whose change means another commit: HEAD itself, the branches (a directory: cargo watches every
/// file in it, so a commit on a branch whose ref was packed is seen when it writes the loose one) and the packed
/// refs. In a worktree git resolves each to the right directory.
fn files_that_move_head() -> Vec<PathBuf> {
    ["HEAD", "refs/heads", "packed-refs"]
        .iter()
        .filter_map(|name| git(&["rev-parse", "--git-path", name]))
        .map(PathBuf::from)
        // A path that does not exist would make cargo rerun this script on every build.
        .filter(|path| path.exists())
        .collect()
}

/// git's trimmed output, or `None` when git is missing or fails.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    Some(text.trim().to_owned())
}
