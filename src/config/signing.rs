//! `[signing]`: the Machine Owner Key (`passthru-image mok new`) that signs out-of-tree modules (`sign-file`)
//! and a replacement kernel (`sbsign`), so a host booted with Secure Boot loads and boots them.
//!
//! Each input is a PEM file on the build machine, or, when its key is left out, an environment variable
//! holding the PEM text (how CI passes secrets). The certificate is public: every command that plans reads
//! and checks it. The private key is read by `build` alone, just before the engine runs, and reaches the build
//! only as a build secret (src/image/secrets.rs); `plan` and `doctor` work where the key is not.

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cmd::{Cmd, Failed};
use crate::error::InputError;
use crate::root::{UserFile, read_user_file};

/// Holds the private key's PEM text when `signing.key` is left out (a CI secret).
pub(crate) const KEY_ENV: &str = "PASSTHRU_MOK_KEY";
/// Holds the certificate's PEM text when `signing.cert` is left out.
pub(crate) const CERT_ENV: &str = "PASSTHRU_MOK_CERT";

/// shim's verify_eku skips a signer whose extended key usage names this OID (module signing only) when it
/// checks a boot image: a kernel signed with such a certificate does not boot (tests/secureboot shows it).
const MODULE_SIGNING_ONLY_OID: &str = "1.3.6.1.4.1.2312.16.1.2";
/// RSA is what shim, MokManager and the kernel's module verifier all accept; below 2048 bits is too weak to
/// trust with the boot chain.
const MIN_RSA_BITS: u32 = 2048;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct SigningConfig {
    /// The private key (PEM); without it, [`KEY_ENV`] holds it when `build` runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<Utf8PathBuf>,
    /// The certificate (PEM or DER); without it, [`CERT_ENV`] holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cert: Option<Utf8PathBuf>,
}

impl SigningConfig {
    /// Where the private key comes from. Only `build` reads it.
    pub(crate) fn key_source(&self) -> PemSource {
        PemSource::of(self.key.as_deref(), KEY_ENV)
    }

    /// Where the certificate comes from.
    pub(crate) fn cert_source(&self) -> PemSource {
        PemSource::of(self.cert.as_deref(), CERT_ENV)
    }

    /// Relative paths are relative to the config file's directory.
    pub(super) fn paths_mut(&mut self) -> impl Iterator<Item = &mut Utf8PathBuf> {
        [&mut self.key, &mut self.cert].into_iter().flatten()
    }
}

/// Where a signing input comes from: the file the config names, or the environment variable that stands in
/// for a file the config leaves out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "from")]
pub(crate) enum PemSource {
    File { path: Utf8PathBuf },
    Environment { variable: &'static str },
}

impl PemSource {
    fn of(path: Option<&Utf8Path>, variable: &'static str) -> PemSource {
        match path {
            Some(path) => PemSource::File {
                path: path.to_owned(),
            },
            None => PemSource::Environment { variable },
        }
    }

    /// The config key or variable that errors name.
    fn field(&self, key: &'static str) -> &'static str {
        match self {
            PemSource::File { .. } => key,
            PemSource::Environment { variable } => variable,
        }
    }

    /// How messages name it: the file, or the variable.
    fn describe(&self) -> String {
        match self {
            PemSource::File { path } => path.to_string(),
            PemSource::Environment { variable } => format!("the contents of {variable}"),
        }
    }

    /// Its bytes; `key` is the config key that names the file.
    fn read(&self, key: &'static str) -> Result<Vec<u8>, InputError> {
        match self {
            PemSource::File { path } => read_user_file(path, UserFile::SigningPem, key),
            PemSource::Environment { variable } => match std::env::var_os(variable) {
                Some(value) if !value.is_empty() => {
                    Ok(std::os::unix::ffi::OsStringExt::into_vec(value))
                }
                _ => Err(InputError::new(
                    key,
                    format!(
                        "not set in [signing], and {variable} is empty: give the path of the file \
                         (`passthru-image mok new` makes MOK.key and MOK.pem), or set {variable} \
                         to its contents (a CI secret)"
                    ),
                )),
            },
        }
    }
}

/// The certificate of the signing key, checked for what shim and the kernel need, in the one form the build
/// gets it (PEM, one certificate, no text around it).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Certificate {
    pub(crate) source: PemSource,
    /// As OpenSSL prints it (RFC 2253): `CN=passthru-image MOK host`.
    pub(crate) subject: String,
    /// The SHA-256 fingerprint (of the DER form), lowercase hex: on the build steps that sign, so another
    /// key signs again, and checked there against the certificate the engine mounts.
    pub(crate) sha256: String,
    /// Its extended key usages as OpenSSL names them (`Code Signing`), empty when it has none.
    pub(crate) extended_key_usage: Vec<String>,
    #[serde(skip)]
    pub(crate) pem: String,
    /// Its public key (PEM), which the private key must match.
    #[serde(skip)]
    public_key: String,
}

impl Certificate {
    const FIELD: &'static str = "signing.cert";

    /// Reads and checks the certificate `signing` names.
    pub(crate) fn read(signing: &SigningConfig) -> Result<Certificate> {
        let source = signing.cert_source();
        let field = source.field(Self::FIELD);
        let bytes = source.read(Self::FIELD)?;
        let not_a_certificate = |e: anyhow::Error| {
            input_error_from(e, field, |tail| {
                format!(
                    "{} is not an X.509 certificate in PEM or DER ({tail}); give `mok new`'s \
                     MOK.pem",
                    source.describe()
                )
            })
        };
        let inform = if is_pem(&bytes) { "PEM" } else { "DER" };
        let pem = openssl(&["x509", "-inform", inform, "-outform", "PEM"], bytes)
            .map_err(not_a_certificate)?;
        let der = openssl_bytes(&["x509", "-outform", "DER"], pem.clone().into_bytes())?;
        let subject = openssl(
            &["x509", "-noout", "-subject", "-nameopt", "RFC2253"],
            pem.clone(),
        )?;
        let text = openssl(&["x509", "-noout", "-text"], pem.clone())?;
        let public_key = openssl(&["x509", "-noout", "-pubkey"], pem.clone())?;
        let certificate = Certificate {
            subject: subject
                .trim()
                .strip_prefix("subject=")
                .unwrap_or(subject.trim())
                .to_owned(),
            sha256: format!("{:x}", Sha256::digest(&der)),
            extended_key_usage: extended_key_usage(&text),
            pem,
            public_key,
            source,
        };
        certificate.check_key_type(&text)?;
        Ok(certificate)
    }

    /// RSA of at least [`MIN_RSA_BITS`].
    fn check_key_type(&self, text: &str) -> Result<(), InputError> {
        let algorithm = value_after(text, "Public Key Algorithm:").unwrap_or("none");
        let bits = value_after(text, "Public-Key: (")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0);
        if algorithm == "rsaEncryption" && bits >= MIN_RSA_BITS {
            return Ok(());
        }
        Err(InputError::new(
            self.source.field(Self::FIELD),
            format!(
                "{} holds a {algorithm} key of {bits} bits; shim, MokManager and the kernel's \
                 module verifier all take RSA of at least {MIN_RSA_BITS} bits (`passthru-image mok \
                 new` makes one)",
                self.source.describe()
            ),
        ))
    }

    /// A kernel signed with this certificate must boot through shim: no module-signing-only usage.
    pub(crate) fn check_signs_kernels(&self) -> Result<(), InputError> {
        if !self
            .extended_key_usage
            .iter()
            .any(|usage| usage == MODULE_SIGNING_ONLY_OID)
        {
            return Ok(());
        }
        Err(InputError::new(
            self.source.field(Self::FIELD),
            format!(
                "{} ({}) has the extended key usage {MODULE_SIGNING_ONLY_OID} (module signing \
                 only): shim refuses to boot a kernel signed with it, and this plan replaces the \
                 kernel. Make a key for both with `passthru-image mok new DIR` and enroll it",
                self.source.describe(),
                self.subject
            ),
        ))
    }
}

/// The private key, read by `build` alone. Its Debug form never shows the key.
pub(crate) struct SigningKey {
    pub(crate) pem: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    const FIELD: &'static str = "signing.key";

    /// Reads the key from `source` and checks that it is the unencrypted private key of `certificate`.
    pub(crate) fn read(source: &PemSource, certificate: &Certificate) -> Result<SigningKey> {
        let field = source.field(Self::FIELD);
        let pem = source.read(Self::FIELD)?;
        let text = String::from_utf8_lossy(&pem);
        let bad = |what: String| InputError::new(field, format!("{} {what}", source.describe()));
        if !(text.contains("-----BEGIN ") && text.contains("PRIVATE KEY-----")) {
            return Err(bad("is not a private key in PEM (`mok new`'s MOK.key)".into()).into());
        }
        if text.contains("ENCRYPTED") {
            return Err(bad(
                "is encrypted with a passphrase; the build signs unattended and needs the key \
                 without one (`openssl pkey -in KEY -out PLAIN`; keep it secret, in CI a secret)"
                    .into(),
            )
            .into());
        }
        // An empty passphrase rather than a prompt, should openssl think it needs one.
        let public_key =
            openssl(&["pkey", "-pubout", "-passin", "pass:"], pem.clone()).map_err(|e| {
                input_error_from(e, field, |tail| {
                    format!(
                        "{} cannot be read as a private key ({tail})",
                        source.describe()
                    )
                })
            })?;
        if public_key.trim() != certificate.public_key.trim() {
            return Err(bad(format!(
                "is not the private key of the certificate {} ({})",
                certificate.source.describe(),
                certificate.subject
            ))
            .into());
        }
        Ok(SigningKey { pem })
    }
}

fn is_pem(bytes: &[u8]) -> bool {
    String::from_utf8_lossy(bytes).contains("-----BEGIN ")
}

/// The extended key usages in `openssl x509 -text`: the line after the extension's name, comma-separated.
fn extended_key_usage(text: &str) -> Vec<String> {
    let mut lines = text.lines();
    if !lines.any(|line| line.trim().starts_with("X509v3 Extended Key Usage:")) {
        return Vec::new();
    }
    lines
        .next()
        .map(|line| line.split(',').map(|u| u.trim().to_owned()).collect())
        .unwrap_or_default()
}

/// The rest of the first line of `text` that holds `label`, after it.
fn value_after<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.split_once(label).map(|(_, rest)| rest.trim()))
}

/// openssl's refusal of the input is bad input for `field` (the message from `describe`, given openssl's last
/// line); openssl missing or failing otherwise stays what it is.
fn input_error_from(
    e: anyhow::Error,
    field: &str,
    describe: impl FnOnce(&str) -> String,
) -> anyhow::Error {
    match e.downcast_ref::<Failed>() {
        Some(failed) => {
            let tail = failed.tail.last().map_or("", String::as_str);
            InputError::new(field, describe(tail)).into()
        }
        None => e,
    }
}

/// Runs `openssl ARGS` with `input` on its stdin and returns what it printed.
fn openssl_bytes(args: &[&str], input: Vec<u8>) -> Result<Vec<u8>> {
    Cmd::new("openssl")
        .args(args)
        .stdin_bytes(input)
        .read_bytes()
}

fn openssl(args: &[&str], input: impl Into<Vec<u8>>) -> Result<String> {
    Cmd::new("openssl").args(args).stdin_bytes(input).read()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key pair made like `mok new`'s, with the extended key usage `eku` and the key `openssl req` makes
    /// with the options `newkey`.
    fn key_pair(dir: &Utf8Path, newkey: &[&str], eku: &str) -> SigningConfig {
        let config = dir.join("req.cnf");
        std::fs::write(
            &config,
            format!(
                "[ req ]\ndistinguished_name = dn\nx509_extensions = ext\nprompt = no\n[ dn ]\n[ \
                 ext ]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = \
                 digitalSignature\nextendedKeyUsage = {eku}\n"
            ),
        )
        .unwrap();
        let key = dir.join("MOK.key");
        let cert = dir.join("MOK.pem");
        Cmd::new("openssl")
            .args(["req", "-new", "-x509", "-nodes", "-days", "1"])
            .args(newkey)
            .args(["-config", config.as_str(), "-subj", "/CN=unit test MOK"])
            .args(["-keyout", key.as_str(), "-out", cert.as_str()])
            .read()
            .unwrap();
        SigningConfig {
            key: Some(key),
            cert: Some(cert),
        }
    }

    const RSA_2048: &[&str] = &["-newkey", "rsa:2048"];

    fn tmp() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap().to_owned();
        (dir, path)
    }

    fn input_error(e: anyhow::Error) -> InputError {
        e.downcast::<InputError>()
            .unwrap_or_else(|e| panic!("not bad input: {e:#}"))
    }

    #[test]
    fn a_mok_certificate_is_read_with_its_fingerprint_and_matches_its_key() {
        let (_guard, dir) = tmp();
        let signing = key_pair(&dir, RSA_2048, "codeSigning");
        let cert = Certificate::read(&signing).unwrap();
        assert_eq!(cert.subject, "CN=unit test MOK");
        assert_eq!(cert.extended_key_usage, ["Code Signing"]);
        let der = Cmd::new("openssl")
            .args([
                "x509",
                "-outform",
                "DER",
                "-in",
                signing.cert.as_ref().unwrap().as_str(),
            ])
            .read_bytes()
            .unwrap();
        assert_eq!(cert.sha256, format!("{:x}", Sha256::digest(&der)));
        assert!(cert.pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        cert.check_signs_kernels().unwrap();
        let key = SigningKey::read(&signing.key_source(), &cert).unwrap();
        assert!(String::from_utf8_lossy(&key.pem).contains("PRIVATE KEY"));
        assert_eq!(format!("{key:?}"), "SigningKey(..)");
    }

    #[test]
    fn a_der_certificate_and_text_around_a_pem_one_give_the_same_certificate() {
        let (_guard, dir) = tmp();
        let signing = key_pair(&dir, RSA_2048, "codeSigning");
        let pem_path = signing.cert.clone().unwrap();
        let der = dir.join("MOK.der");
        Cmd::new("openssl")
            .args([
                "x509",
                "-in",
                pem_path.as_str(),
                "-outform",
                "DER",
                "-out",
                der.as_str(),
            ])
            .read()
            .unwrap();
        let texty = dir.join("texty.pem");
        let pem = std::fs::read_to_string(&pem_path).unwrap();
        std::fs::write(&texty, format!("Certificate:\n    Data: ...\n{pem}")).unwrap();
        let of = |path: &Utf8Path| {
            Certificate::read(&SigningConfig {
                key: None,
                cert: Some(path.to_owned()),
            })
            .unwrap()
        };
        let (a, b, c) = (of(&pem_path), of(&der), of(&texty));
        assert_eq!((&a.sha256, &a.pem), (&b.sha256, &b.pem));
        assert_eq!((&a.sha256, &a.pem), (&c.sha256, &c.pem));
    }

    #[test]
    fn a_module_signing_only_certificate_signs_modules_but_not_kernels() {
        let (_guard, dir) = tmp();
        let signing = key_pair(&dir, RSA_2048, "codeSigning, 1.3.6.1.4.1.2312.16.1.2");
        let cert = Certificate::read(&signing).unwrap();
        let err = cert.check_signs_kernels().unwrap_err();
        assert_eq!(err.field, "signing.cert");
        assert!(err.message.contains("shim"), "{}", err.message);
    }

    #[test]
    fn keys_shim_or_the_kernel_would_not_take_are_refused() {
        let (_guard, dir) = tmp();
        let cases: [(&[&str], &str); 2] = [
            (&["-newkey", "rsa:1024"], "rsaEncryption key of 1024 bits"),
            (
                &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
                "id-ecPublicKey key of 256 bits",
            ),
        ];
        for (newkey, what) in cases {
            let signing = key_pair(&dir, newkey, "codeSigning");
            let err = input_error(Certificate::read(&signing).unwrap_err());
            assert_eq!(err.field, "signing.cert");
            assert!(err.message.contains(what), "{}", err.message);
        }
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let (_a, one) = tmp();
        let (_b, other) = tmp();
        let first = key_pair(&one, RSA_2048, "codeSigning");
        let second = key_pair(&other, RSA_2048, "codeSigning");
        let cert = Certificate::read(&first).unwrap();
        let err = input_error(SigningKey::read(&second.key_source(), &cert).unwrap_err());
        assert_eq!(err.field, "signing.key");
        assert!(
            err.message
                .contains("is not the private key of the certificate"),
            "{}",
            err.message
        );
        // The certificate in place of the key, and an encrypted key.
        let err = input_error(SigningKey::read(&first.cert_source(), &cert).unwrap_err());
        assert!(err.message.contains("not a private key"), "{}", err.message);
        let encrypted = one.join("encrypted.key");
        Cmd::new("openssl")
            .args([
                "pkey",
                "-in",
                first.key.as_ref().unwrap().as_str(),
                "-aes256",
            ])
            .args(["-passout", "pass:secret", "-out", encrypted.as_str()])
            .read()
            .unwrap();
        let source = PemSource::File { path: encrypted };
        let err = input_error(SigningKey::read(&source, &cert).unwrap_err());
        assert!(err.message.contains("passphrase"), "{}", err.message);
    }

    #[test]
    fn files_that_are_missing_or_not_certificates_name_the_field() {
        let (_guard, dir) = tmp();
        let missing = SigningConfig {
            key: None,
            cert: Some(dir.join("nope.pem")),
        };
        let err = input_error(Certificate::read(&missing).unwrap_err());
        assert_eq!(err.field, "signing.cert");
        assert!(err.message.contains("does not exist"), "{}", err.message);
        std::fs::write(
            dir.join("junk.pem"),
            "-----BEGIN CERTIFICATE-----\nnot base64\n",
        )
        .unwrap();
        let junk = SigningConfig {
            key: None,
            cert: Some(dir.join("junk.pem")),
        };
        let err = input_error(Certificate::read(&junk).unwrap_err());
        assert!(
            err.message.contains("not an X.509 certificate"),
            "{}",
            err.message
        );
        std::fs::create_dir(dir.join("adir")).unwrap();
        let source = PemSource::File {
            path: dir.join("adir"),
        };
        let err = source.read("signing.key").unwrap_err();
        assert_eq!(err.field, "signing.key");
        assert!(
            err.message.contains("not a regular file"),
            "{}",
            err.message
        );
    }

    #[test]
    fn an_input_left_out_comes_from_its_variable() {
        let signing = SigningConfig {
            key: None,
            cert: None,
        };
        assert_eq!(
            signing.key_source(),
            PemSource::Environment { variable: KEY_ENV }
        );
        // A variable no test sets: the same rule, observed without touching the process environment.
        let source = PemSource::Environment {
            variable: "PASSTHRU_TEST_NEVER_SET",
        };
        let err = source.read("signing.key").unwrap_err();
        assert_eq!(err.field, "signing.key");
        assert!(
            err.message.contains("PASSTHRU_TEST_NEVER_SET is empty"),
            "{}",
            err.message
        );
    }
}
