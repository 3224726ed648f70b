//! Every shell script the tool embeds (layers/) or the suite runs (tests/**/*.sh) passes shellcheck, so
//! `cargo test` covers them like the Rust code. tests/setup-debian.sh installs shellcheck.

use std::path::{Path, PathBuf};
use std::process::Command;

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let entry = entry.unwrap();
        // Not through symlinks: the sysfs fixture trees link in circles, as sysfs does.
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            files.extend(files_under(&entry.path()));
        } else if kind.is_file() {
            files.push(entry.path());
        }
    }
    files
}

/// A file whose first line runs it with sh or bash.
fn is_shell_script(path: &Path) -> bool {
    let text = std::fs::read(path).unwrap();
    let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = String::from_utf8_lossy(first);
    let Some(interpreter) = first.strip_prefix("#!") else {
        return false;
    };
    let mut words = interpreter.split_whitespace();
    let program = match words.next() {
        Some("/usr/bin/env") => words.next(),
        other => other,
    };
    program.is_some_and(|p| matches!(p.rsplit('/').next(), Some("sh" | "bash")))
}

#[test]
fn every_shell_script_passes_shellcheck() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut scripts: Vec<PathBuf> = files_under(&repo.join("layers"))
        .into_iter()
        .filter(|p| is_shell_script(p))
        .collect();
    scripts.extend(
        files_under(&repo.join("tests"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "sh")),
    );
    scripts.sort();
    // The build scripts the binary embeds are all found, whatever else is there.
    for name in [
        "image-kernel",
        "swap-kernel",
        "build-kmods",
        "mok-sign",
        "depmod-kernel",
        "regenerate-initramfs",
        "lint-image",
    ] {
        assert!(
            scripts.contains(&repo.join("layers/scripts").join(name)),
            "{name} not among {scripts:#?}"
        );
    }
    // So is the dracut module whose hook binds by address.
    for name in ["module-setup.sh", "passthru-vfio-bind.sh"] {
        assert!(
            scripts.contains(&repo.join("layers/dracut/90passthru-vfio").join(name)),
            "{name} not among {scripts:#?}"
        );
    }
    let out = Command::new("shellcheck")
        .args(&scripts)
        .output()
        .expect("run shellcheck (tests/setup-debian.sh installs it)");
    assert!(
        out.status.success(),
        "shellcheck:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
