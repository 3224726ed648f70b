use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::cli::{Cli, MokCommand};
use crate::mok::{self, CommonName, MokFiles};
use crate::verbosity::Verbosity;

pub(crate) fn run(cli: &Cli, command: &MokCommand) -> Result<()> {
    match command {
        MokCommand::New { dir, name } => new(cli, dir, name.as_deref()),
    }
}

fn new(cli: &Cli, dir: &Utf8Path, name: Option<&str>) -> Result<()> {
    let name = match name {
        Some(text) => CommonName::parse(text, "--name")?,
        None => CommonName::for_host(&hostname()?)?,
    };
    let files = mok::create(dir, &name)?;
    if cli.verbosity() >= Verbosity::Normal {
        out!("{}", enrollment_steps(&absolute(&files)?, &name));
    }
    Ok(())
}

fn hostname() -> Result<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("reading /proc/sys/kernel/hostname for the default --name")
}

/// The paths as the user can paste them from any directory.
fn absolute(files: &MokFiles) -> Result<MokFiles> {
    let dir = files
        .dir
        .canonicalize_utf8()
        .with_context(|| format!("resolving {}", files.dir))?;
    let file = |f: &Utf8PathBuf| dir.join(f.file_name().expect("a key file has a name"));
    Ok(MokFiles {
        key: file(&files.key),
        cert_pem: file(&files.cert_pem),
        cert_der: file(&files.cert_der),
        dir,
    })
}

fn enrollment_steps(files: &MokFiles, name: &CommonName) -> String {
    format!(
        "\
Made a Machine Owner Key \"{name}\" (RSA 2048, code signing, valid 10 years):
  {key}  private key, readable by you alone: keep it secret (in CI, a secret)
  {pem}  certificate (PEM), for signing modules and kernels
  {der}  certificate (DER), for mokutil

Enroll it on every host that boots the signed image with Secure Boot on:
  sudo mokutil --import {der}
mokutil asks for a one-time password of your choice. Reboot: before the boot menu shim starts MokManager
(a blue screen). Press a key within 10 seconds (if you miss it, run mokutil again), choose \"Enroll MOK\",
\"View key 0\" to check it is \"{name}\", then \"Continue\", \"Yes\", type the password and \"Reboot\".
Afterwards `mokutil --test-key {der}` says it is already enrolled.
",
        name = name.as_str(),
        key = files.key,
        pem = files.cert_pem,
        der = files.cert_der,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steps_name_the_der_certificate_for_mokutil_and_the_name_to_check() {
        let files = MokFiles {
            dir: "/keys".into(),
            key: "/keys/MOK.key".into(),
            cert_pem: "/keys/MOK.pem".into(),
            cert_der: "/keys/MOK.der".into(),
        };
        let name = CommonName::parse("passthru-image MOK box", "--name").unwrap();
        let text = enrollment_steps(&files, &name);
        assert!(
            text.contains("sudo mokutil --import /keys/MOK.der\n"),
            "{text}"
        );
        assert!(
            text.contains("\"View key 0\" to check it is \"passthru-image MOK box\""),
            "{text}"
        );
        assert!(text.contains("Enroll MOK"), "{text}");
    }
}
