//! The keys the running kernel trusts, and who signed a module: what decides whether a module loads under
//! Secure Boot.
//!
//! Trusted keys are the asymmetric keys of /proc/keys: the kernel's built-in keys, the firmware's `db` (the
//! `.platform` keyring) and the MOKs shim passes on (`.machine`, or `.platform`), all of which Fedora's and
//! Debian's kernels consult for module signatures (ARCHITECTURE.md#secure-boot). Their description is the
//! certificate's subject name and key ID (`Debian Secure Boot CA: 6ccece7e...`).

use anyhow::Result;

use crate::cmd::Cmd;
use crate::host::Machine;
use crate::root::Root;

pub(crate) const PROC_KEYS: &str = "/proc/keys";
/// The running kernel's release, for a root that is not this machine.
pub(crate) const OSRELEASE: &str = "/proc/sys/kernel/osrelease";

/// The subject names of the asymmetric keys the kernel holds; `None` when /proc/keys is not there.
pub(crate) fn trusted_signers(root: &Root) -> Result<Option<Vec<String>>> {
    let Some(text) = root.read_optional(PROC_KEYS)? else {
        return Ok(None);
    };
    Ok(Some(text.lines().filter_map(asymmetric_subject).collect()))
}

/// `0f0e4c1d I------ 1 perm 1f010000 0 0 asymmetri Debian Secure Boot CA: 6cce... X509.rsa 4c6c0d1f []`: the
/// type column is cut to 9 characters; the description runs to the `: KEYID` that ends the subject.
fn asymmetric_subject(line: &str) -> Option<String> {
    if line.split_whitespace().nth(7) != Some("asymmetri") {
        return None;
    }
    let rest = line.split_once(" asymmetri ")?.1.trim_start();
    let (subject, _) = rest.rsplit_once(": ")?;
    Some(subject.to_owned())
}

/// Who signed a module, as `modinfo -F signer` tells it: the certificate's subject name, or `None` for an
/// unsigned module. modinfo sees this machine's modules, or, given the root (`-b`), those of the root's running
/// kernel.
pub(crate) fn module_signer(root: &Root, machine: Machine, module: &str) -> Result<Option<String>> {
    let mut cmd = Cmd::new("modinfo");
    if machine == Machine::Other {
        let release = root.read(OSRELEASE)?.trim().to_owned();
        cmd = cmd.args(["-b", root.path().as_str(), "-k", &release]);
    }
    let signer = cmd.args(["-F", "signer", module]).read()?;
    let signer = signer.trim();
    Ok((!signer.is_empty()).then(|| signer.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asymmetric_keys_give_their_subject() {
        let keys = "\
0f0e4c1d I------     1 perm 1f010000     0     0 asymmetri Debian Secure Boot CA: 6ccece7e4c6c0d1f6149f3dd27dfcc5cbb419ea1 X509.rsa 4c6c0d1f []
1a2b3c4d I------     1 perm 1f030000     0     0 keyring   .machine: 2
2b3c4d5e I------     1 perm 1f010000     0     0 asymmetri passthru-image MOK desk: 0a1b2c3d4e5f X509.rsa 4e5f0a1b []
";
        let subjects: Vec<String> = keys.lines().filter_map(asymmetric_subject).collect();
        assert_eq!(
            subjects,
            ["Debian Secure Boot CA", "passthru-image MOK desk"]
        );
    }
}
