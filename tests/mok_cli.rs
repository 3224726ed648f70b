//! `mok new` through the real binary, its certificate read back by the `openssl` program: the attributes shim
//! and the kernel look at, the key that belongs to it, the DER form mokutil takes, the enrollment steps, and a
//! used directory refused (exit 2, untouched).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use assert_cmd::Command;
use predicates::prelude::PredicateBooleanExt;

fn bin() -> Command {
    let mut cmd = Command::cargo_bin("passthru-image").unwrap();
    cmd.current_dir(std::env::temp_dir());
    cmd
}

fn openssl(args: &[&str], dir: &Path) -> Output {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .env_remove("OPENSSL_CONF")
        .output()
        .expect("run openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The lines of an extension in `openssl x509 -text`: its header and the value line below it.
fn extension(cert_text: &str, header: &str) -> String {
    let mut lines = cert_text.lines();
    lines
        .find(|l| l.trim_start().starts_with(header))
        .unwrap_or_else(|| panic!("no {header} in\n{cert_text}"));
    lines.next().unwrap().trim().to_owned()
}

#[test]
fn the_certificate_has_what_shim_and_the_kernel_require() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mok");
    let out = bin()
        .args(["mok", "new", "--name", "passthru-image MOK test"])
        .arg(&dir)
        .assert()
        .success()
        .get_output()
        .clone();

    let cert = text(&openssl(
        &["x509", "-in", "MOK.pem", "-noout", "-text"],
        &dir,
    ));
    assert!(cert.contains("Public-Key: (2048 bit)"), "{cert}");
    assert!(
        cert.contains("Signature Algorithm: sha256WithRSAEncryption"),
        "{cert}"
    );
    assert!(
        cert.contains("Subject: CN = passthru-image MOK test"),
        "{cert}"
    );
    assert!(
        cert.contains("Issuer: CN = passthru-image MOK test"),
        "{cert}"
    );
    assert!(
        cert.contains("X509v3 Basic Constraints: critical"),
        "{cert}"
    );
    assert_eq!(extension(&cert, "X509v3 Basic Constraints"), "CA:FALSE");
    assert_eq!(extension(&cert, "X509v3 Key Usage"), "Digital Signature");
    // codeSigning alone: shim refuses images signed by a certificate with the module-signing-only OID.
    assert_eq!(
        extension(&cert, "X509v3 Extended Key Usage"),
        "Code Signing"
    );
    assert!(!cert.contains("1.3.6.1.4.1.2312.16.1.2"), "{cert}");

    // The key is the certificate's, and readable by its owner alone in a directory only its owner enters.
    let cert_key = text(&openssl(
        &["x509", "-in", "MOK.pem", "-noout", "-pubkey"],
        &dir,
    ));
    let key = text(&openssl(&["pkey", "-in", "MOK.key", "-pubout"], &dir));
    assert_eq!(cert_key, key);
    assert_eq!(mode(&dir.join("MOK.key")), 0o600);
    assert_eq!(mode(&dir), 0o700);

    // MOK.der is the same certificate, in the form mokutil --import takes.
    let from_der = openssl(
        &[
            "x509", "-inform", "DER", "-in", "MOK.der", "-outform", "PEM",
        ],
        &dir,
    );
    assert_eq!(
        text(&from_der),
        std::fs::read_to_string(dir.join("MOK.pem")).unwrap()
    );

    // The self-signature verifies: the certificate is whole.
    openssl(
        &["verify", "-CAfile", "MOK.pem", "-partial_chain", "MOK.pem"],
        &dir,
    );

    let stdout = String::from_utf8(out.stdout).unwrap();
    let der = dir.canonicalize().unwrap().join("MOK.der");
    assert!(
        stdout.contains(&format!("sudo mokutil --import {}\n", der.display())),
        "{stdout}"
    );
    assert!(stdout.contains("Enroll MOK"), "{stdout}");
    assert!(stdout.contains("\"passthru-image MOK test\""), "{stdout}");
}

#[test]
fn the_default_name_is_the_tool_and_this_host() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mok");
    bin()
        .args(["-q", "mok", "new"])
        .arg(&dir)
        .assert()
        .success()
        .stdout("");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let subject = text(&openssl(
        &["x509", "-in", "MOK.pem", "-noout", "-subject"],
        &dir,
    ));
    assert_eq!(
        subject.trim(),
        format!("subject=CN = passthru-image MOK {}", host.trim())
    );
}

#[test]
fn a_used_directory_or_a_bad_name_is_bad_input_and_nothing_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("MOK.key"), "the user's key").unwrap();
    bin()
        .args(["mok", "new"])
        .arg(&dir)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("DIR:").and(predicates::str::contains("not empty")));
    assert_eq!(
        std::fs::read_to_string(dir.join("MOK.key")).unwrap(),
        "the user's key"
    );

    let fresh = tmp.path().join("fresh");
    bin()
        .args(["mok", "new", "--name", "me/O=evil"])
        .arg(&fresh)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--name:"));
    assert!(!fresh.exists());
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "only the user's directory: {left:?}");
}
