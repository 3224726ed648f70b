//! The Secure Boot build secrets of one build: the Machine Owner Key and its certificate, written into a
//! private directory (0700, files 0600) outside the build context, handed to the engine as
//! `--secret id=…,src=…`, and removed when the build ends. The Containerfile mounts them (by these ids) only
//! in the throwaway stages that sign, so no byte of the key reaches a layer, the history or a label.

use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result, bail};
use camino::Utf8PathBuf;

use super::engine::BuildSecret;
use crate::atomic;
use crate::config::signing::{Certificate, SigningKey};

/// The build secret of the private key.
pub(crate) const MOK_KEY: &str = "mok-key";
/// The build secret of the certificate.
pub(crate) const MOK_CERT: &str = "mok-cert";

/// The key and certificate of one build, on disk while it lives.
#[derive(Debug)]
pub(crate) struct SigningSecrets {
    /// Removed, with the files in it, when dropped.
    _dir: tempfile::TempDir,
    key: Utf8PathBuf,
    cert: Utf8PathBuf,
}

impl SigningSecrets {
    /// Writes `key` and the certificate (in the one PEM form the build checks the fingerprint of).
    pub(crate) fn write(key: &SigningKey, certificate: &Certificate) -> Result<SigningSecrets> {
        // Private from its creation on: the key is never in a directory others can list or enter.
        let dir = tempfile::Builder::new()
            .prefix("passthru-image-secrets.")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .context("creating a private directory for the build secrets")?;
        let path = Utf8PathBuf::try_from(dir.path().to_owned())
            .context("the temporary directory's path is not UTF-8")?;
        // An engine reads `--secret id=ID,src=PATH` as comma-separated key=value pairs.
        if path.as_str().contains([',', '=']) {
            bail!(
                "the temporary directory {path} has a ',' or '=' in its path, which the engine's \
                 --secret option cannot hold: set TMPDIR to another directory"
            );
        }
        let secrets = SigningSecrets {
            key: path.join(MOK_KEY),
            cert: path.join(MOK_CERT),
            _dir: dir,
        };
        atomic::write_file(&secrets.key, "signing.key", &key.pem, 0o600)?;
        atomic::write_file(
            &secrets.cert,
            "signing.cert",
            certificate.pem.as_bytes(),
            0o600,
        )?;
        Ok(secrets)
    }

    /// The engine's `--secret` options for them.
    pub(crate) fn build_secrets(&self) -> Vec<BuildSecret> {
        vec![
            BuildSecret {
                id: MOK_KEY,
                src: self.key.clone(),
            },
            BuildSecret {
                id: MOK_CERT,
                src: self.cert.clone(),
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secrets_are_private_files_in_a_private_directory_removed_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let dir = camino::Utf8Path::from_path(dir.path()).unwrap();
        crate::cmd::Cmd::new("openssl")
            .args([
                "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=secrets test",
                "-keyout",
                dir.join("k").as_str(),
            ])
            .args(["-out", dir.join("c").as_str()])
            .read()
            .unwrap();
        let signing = crate::config::SigningConfig {
            key: Some(dir.join("k")),
            cert: Some(dir.join("c")),
        };
        let certificate = Certificate::read(&signing).unwrap();
        let key = SigningKey::read(&signing.key_source(), &certificate).unwrap();
        let secrets = SigningSecrets::write(&key, &certificate).unwrap();
        let mode =
            |path: &Utf8PathBuf| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let top = secrets.key.parent().unwrap().to_owned();
        assert_eq!(mode(&top), 0o700);
        assert_eq!(mode(&secrets.key), 0o600);
        assert_eq!(mode(&secrets.cert), 0o600);
        assert_eq!(std::fs::read(&secrets.key).unwrap(), key.pem);
        assert_eq!(
            std::fs::read_to_string(&secrets.cert).unwrap(),
            certificate.pem
        );
        let options: Vec<(&str, Utf8PathBuf)> = secrets
            .build_secrets()
            .into_iter()
            .map(|s| (s.id, s.src))
            .collect();
        assert_eq!(
            options,
            [
                ("mok-key", top.join("mok-key")),
                ("mok-cert", top.join("mok-cert"))
            ]
        );
        drop(secrets);
        assert!(!top.exists());
    }
}
