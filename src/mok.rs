//! Machine Owner Keys: the key pair that signs out-of-tree modules (`sign-file`) and replacement kernels
//! (`sbsign`) so that a host booted with Secure Boot through shim accepts them once the certificate is enrolled
//! with `mokutil --import`.
//!
//! Each attribute of the certificate answers a check made by shim or the kernel (README "Secure Boot"):
//! - RSA 2048 with SHA-256: what shim, MokManager and the kernel's module verifier all accept, and what
//!   Ubuntu's and Fedora's own MOK tools make;
//! - extended key usage codeSigning and nothing else: shim (its verify_eku) refuses to boot an image whose
//!   signer carries the module-signing-only OID 1.3.6.1.4.1.2312.16.1.2 (tests/secureboot shows it), and
//!   the kernel reads no extended key usage for modules, so one key signs both;
//! - basicConstraints CA:FALSE and keyUsage digitalSignature: a plain signing key. Kernels built with
//!   CONFIG_INTEGRITY_CA_MACHINE_KEYRING (RHEL 10) put such a MOK in `.platform`, which Fedora's and RHEL's
//!   module verifier also consults (a patch they and Debian carry); Debian 12's 6.1 puts it in `.machine`;
//! - ten years of validity: neither shim nor the kernel checks the dates, so a long one only spares a renewal.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};

use crate::atomic::{self, Occupied};
use crate::cmd::Cmd;
use crate::error::InputError;

/// The private key (PEM, mode 0600): `sign-file` and `sbsign` take it.
pub(crate) const KEY_FILE: &str = "MOK.key";
/// The certificate in PEM: `sbsign --cert`, `sign-file`, `sbverify --cert`.
pub(crate) const CERT_PEM_FILE: &str = "MOK.pem";
/// The certificate in DER: what `mokutil --import` takes.
pub(crate) const CERT_DER_FILE: &str = "MOK.der";

const KEY_BITS: &str = "rsa:2048";
const VALID_DAYS: &str = "3650";

/// X.509 v3 extensions of a MOK. The subject comes from `-subj`, so no user data is in this text.
const OPENSSL_CONFIG: &str = "\
[ req ]
distinguished_name = mok_subject
x509_extensions = mok_extensions
prompt = no
string_mask = utf8only

[ mok_subject ]

[ mok_extensions ]
basicConstraints = critical, CA:FALSE
keyUsage = digitalSignature
extendedKeyUsage = codeSigning
subjectKeyIdentifier = hash
";

/// The certificate's subject common name: what MokManager, `mokutil --list-enrolled` and `modinfo -F signer`
/// show. Restricted to characters that need no escaping in an OpenSSL subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommonName(String);

impl CommonName {
    /// X.520 limits a common name to 64 characters.
    const MAX_LEN: usize = 64;

    /// `field` names where `text` came from, for the error.
    pub(crate) fn parse(text: &str, field: &str) -> Result<CommonName, InputError> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || " -._():@".contains(c);
        if text.is_empty() || text.len() > Self::MAX_LEN {
            return Err(InputError::new(
                field,
                format!("{text:?} must be 1 to {} characters", Self::MAX_LEN),
            ));
        }
        if !text.chars().all(allowed) || text.trim() != text {
            return Err(InputError::new(
                field,
                format!(
                    "{text:?} may hold only letters, digits, spaces inside and - . _ ( ) : @ \
                     (no / + = \\ or quotes, which an X.509 subject would need escaped)"
                ),
            ));
        }
        Ok(CommonName(text.to_owned()))
    }

    /// The default name: the tool and the machine that made the key, so an enrolled key tells where it came
    /// from. A hostname that is not a valid name asks for `--name`.
    pub(crate) fn for_host(hostname: &str) -> Result<CommonName, InputError> {
        let text = format!("passthru-image MOK {}", hostname.trim());
        CommonName::parse(&text, "--name").map_err(|e| {
            InputError::new(
                "--name",
                format!(
                    "no default from this host's name ({}); pass --name",
                    e.message
                ),
            )
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    fn openssl_subject(&self) -> String {
        format!("/CN={}", self.0)
    }
}

/// The files of a key made by [`create`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MokFiles {
    pub(crate) dir: Utf8PathBuf,
    pub(crate) key: Utf8PathBuf,
    pub(crate) cert_pem: Utf8PathBuf,
    pub(crate) cert_der: Utf8PathBuf,
}

impl MokFiles {
    fn in_dir(dir: &Utf8Path) -> MokFiles {
        MokFiles {
            dir: dir.to_owned(),
            key: dir.join(KEY_FILE),
            cert_pem: dir.join(CERT_PEM_FILE),
            cert_der: dir.join(CERT_DER_FILE),
        }
    }
}

/// Makes a key pair and its certificate in `dir`, which must be absent or empty: a key is never overwritten.
/// Everything is made in a directory beside `dir` (mode 0700) and renamed into place, so a failure leaves
/// nothing behind.
pub(crate) fn create(dir: &Utf8Path, name: &CommonName) -> Result<MokFiles> {
    refuse_used_dir(dir)?;
    atomic::replace_dir(dir, "DIR", Occupied::Refuse, |staging| {
        std::fs::set_permissions(staging, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {staging} private"))?;
        let files = MokFiles::in_dir(staging);
        generate(&files, name)?;
        Ok(())
    })?;
    Ok(MokFiles::in_dir(dir))
}

fn refuse_used_dir(dir: &Utf8Path) -> Result<()> {
    if dir.is_symlink() || (dir.exists() && !dir.is_dir()) {
        bail!(InputError::new(
            "DIR",
            format!("{dir} exists and is not a directory")
        ));
    }
    if dir.is_dir() {
        let mut entries = dir
            .read_dir_utf8()
            .with_context(|| format!("reading {dir}"))?;
        if entries.next().is_some() {
            bail!(InputError::new(
                "DIR",
                format!("{dir} is not empty; mok new never overwrites a key: name a new directory")
            ));
        }
    }
    Ok(())
}

fn generate(files: &MokFiles, name: &CommonName) -> Result<()> {
    let mut config = tempfile::NamedTempFile::new().context("creating the openssl config")?;
    config
        .write_all(OPENSSL_CONFIG.as_bytes())
        .context("writing the openssl config")?;
    let config_path = Utf8Path::from_path(config.path()).context("temporary path is not UTF-8")?;
    openssl(&req_args(config_path, files, name))?;
    // openssl may create the key with the umask's mode; the key must be readable by its owner alone.
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting the mode of {}", files.key))?;
    openssl(&der_args(files))?;
    Ok(())
}

fn req_args(config: &Utf8Path, files: &MokFiles, name: &CommonName) -> Vec<OsString> {
    let args: [&str; 17] = [
        "req",
        "-new",
        "-x509",
        "-newkey",
        KEY_BITS,
        // -nodes rather than 3.0's -noenc: the build reads the key unattended, and 1.1.1 knows only -nodes.
        "-nodes",
        "-sha256",
        "-days",
        VALID_DAYS,
        "-config",
        config.as_str(),
        "-subj",
        &name.openssl_subject(),
        "-keyout",
        files.key.as_str(),
        "-out",
        files.cert_pem.as_str(),
    ];
    args.into_iter().map(OsString::from).collect()
}

fn der_args(files: &MokFiles) -> Vec<OsString> {
    [
        "x509",
        "-in",
        files.cert_pem.as_str(),
        "-outform",
        "DER",
        "-out",
        files.cert_der.as_str(),
    ]
    .into_iter()
    .map(OsString::from)
    .collect()
}

/// Runs the `openssl` program; a failure carries the end of what it said.
fn openssl(args: &[OsString]) -> Result<()> {
    Cmd::new("openssl")
        .args(args)
        .env_remove("OPENSSL_CONF")
        .read_bytes()
        .context("running openssl (is the openssl package installed?)")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap().to_owned();
        (dir, path)
    }

    fn mode(path: &Utf8Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn names_that_need_no_escaping_are_taken() {
        for ok in [
            "passthru-image MOK host.example",
            "a",
            "MOK (CI): me@build_01",
        ] {
            assert_eq!(CommonName::parse(ok, "--name").unwrap().as_str(), ok);
        }
    }

    #[test]
    fn names_an_openssl_subject_would_read_differently_are_refused() {
        for bad in [
            "",
            "a/O=evil",
            "a+b",
            "a=b",
            "back\\slash",
            "quote\"",
            " padded",
            "tab\there",
            "ünïcode",
        ] {
            let err = CommonName::parse(bad, "--name").unwrap_err();
            assert_eq!(err.field, "--name", "{bad:?}");
        }
        assert!(CommonName::parse(&"x".repeat(64), "--name").is_ok());
        assert!(CommonName::parse(&"x".repeat(65), "--name").is_err());
    }

    #[test]
    fn the_default_name_tells_the_tool_and_the_host() {
        let name = CommonName::for_host("workstation\n").unwrap();
        assert_eq!(name.as_str(), "passthru-image MOK workstation");
        let err = CommonName::for_host("odd/host").unwrap_err();
        assert_eq!(err.field, "--name");
        assert!(err.message.contains("pass --name"), "{}", err.message);
    }

    #[test]
    fn the_openssl_command_line_carries_the_subject_as_one_argument() {
        let files = MokFiles::in_dir(Utf8Path::new("/k"));
        let name = CommonName::parse("MOK of me", "--name").unwrap();
        let args = req_args(Utf8Path::new("/c.cnf"), &files, &name);
        let subj = args.iter().position(|a| a == "-subj").unwrap();
        assert_eq!(args[subj + 1], "/CN=MOK of me");
        let newkey = args.iter().position(|a| a == "-newkey").unwrap();
        assert_eq!(args[newkey + 1], "rsa:2048");
        assert!(args.contains(&OsString::from("/k/MOK.key")));
    }

    #[test]
    fn a_key_is_made_private_in_a_private_directory() {
        let (_guard, top) = tmp();
        let dir = top.join("mok");
        let name = CommonName::parse("unit test MOK", "--name").unwrap();
        let files = create(&dir, &name).unwrap();
        assert_eq!(mode(&files.dir), 0o700);
        assert_eq!(mode(&files.key), 0o600);
        let der = std::fs::read(&files.cert_der).unwrap();
        // DER: a SEQUENCE with a two-byte length, as shim's verify_x509 expects of a certificate.
        assert_eq!(&der[..2], &[0x30, 0x82]);
        let pem = std::fs::read_to_string(&files.cert_pem).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let names: Vec<String> = dir
            .read_dir_utf8()
            .unwrap()
            .map(|e| e.unwrap().file_name().to_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn a_used_directory_is_refused_before_any_key_is_made() {
        let (_guard, top) = tmp();
        let dir = top.join("mok");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("MOK.key"), "the user's old key").unwrap();
        let name = CommonName::parse("unit test MOK", "--name").unwrap();
        let err = create(&dir, &name).unwrap_err();
        assert!(err.downcast_ref::<InputError>().is_some(), "{err:#}");
        assert_eq!(
            std::fs::read_to_string(dir.join("MOK.key")).unwrap(),
            "the user's old key"
        );
        let file = top.join("file");
        std::fs::write(&file, "").unwrap();
        assert!(create(&file, &name).unwrap_err().is::<InputError>());
        assert_eq!(top.read_dir_utf8().unwrap().count(), 2, "no staging left");
    }
}
