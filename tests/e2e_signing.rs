//! End-to-end tests of issue 18, phase 2: `[signing]` in real image builds on the offline Debian test base.
//!
//! One image carries both signed parts: the vendor-reset stand-in (tests/fixtures/vendor-reset-standin), signed
//! with the kernel's own sign-file, and the replacement kernel (Debian's cloud flavour of the base's ABI, from
//! tests/base/fetch-alt-kernel.sh's .debs), signed for shim with sbsign. Both are checked independently of the
//! tool: the module's appended PKCS#7 is cut out and verified with `openssl cms` against the certificate,
//! `modinfo -F signer` names the key, `sbverify --cert` accepts the kernel. Every layer of the image, its config
//! (with the history and labels) and the build context are searched for the private key, as base64 and as DER.
//! A rebuild with the same key comes from the layer cache; one with another key signs again. The refusals run
//! no engine: a plan for a Secure Boot host without `[signing]`, and a key that is not the certificate's.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    MountedImage, RemoveImages, alt_kernel_debs, bin, build_command, build_steps, image_exists,
    image_history, run, standin_source, stdout_of, test_base_kernel, write_config,
};

/// The module the stand-in builds (its dkms.conf's BUILT_MODULE_NAME).
const MODULE: &str = "vendor-reset-standin";
/// A Polaris 10 GPU: in vendor-reset's table.
const POLARIS: &str = "1002:67df";
/// The end of a signed module: `struct module_signature` (12 bytes) and this magic follow the PKCS#7.
const MODULE_SIGNATURE_MAGIC: &[u8] = b"~Module signature appended~\n";

fn succeeds(cmd: &mut Command) -> bool {
    cmd.output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
        .status
        .success()
}

fn tag(name: &str) -> String {
    format!(
        "localhost/passthru-e2e-signing-{name}:{}",
        std::process::id()
    )
}

/// A key made by `passthru-image mok new DIR --name NAME`.
struct Mok {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    name: &'static str,
}

impl Mok {
    fn new(name: &'static str) -> Mok {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("mok");
        bin()
            .args(["-q", "mok", "new"])
            .arg(&dir)
            .args(["--name", name])
            .assert()
            .success();
        Mok {
            _dir: top,
            dir,
            name,
        }
    }

    fn key(&self) -> PathBuf {
        self.dir.join("MOK.key")
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("MOK.pem")
    }

    fn signing_toml(&self) -> String {
        format!(
            "[signing]\nkey = \"{}\"\ncert = \"{}\"\n",
            self.key().display(),
            self.cert().display()
        )
    }
}

/// The stand-in module and the ACS-override kernel for a Polaris GPU, with `extra` (a `[signing]`).
fn config(dir: &Path, tag: &str, extra: &str) -> PathBuf {
    let body = format!(
        "[cpu]\nvendor = \"intel\"\n\n[gpu]\nvendors = [\"amd\"]\n\n[vfio]\nids = [\"{POLARIS}\"]\n\n\
         [vendor-reset]\nenabled = true\npath = \"{}\"\n\n[acs-override]\nenabled = true\npackages = \"{}\"\n\n\
         {extra}",
        standin_source().display(),
        alt_kernel_debs(test_base_kernel())
    );
    write_config(dir, tag, &body)
}

/// `passthru-image build` keeping its context in `context`; returns the engine's output.
fn build(config: &Path, tag: &str, context: &Path) -> String {
    let out = build_command(config)
        .args(["--tag", tag, "--context"])
        .arg(context)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "build of {tag} failed:\n{text}");
    text
}

/// The module's bytes the signature covers, and its PKCS#7 signature (DER), as the kernel reads them.
fn split_module_signature(ko: &[u8]) -> (&[u8], &[u8]) {
    let body = ko
        .strip_suffix(MODULE_SIGNATURE_MAGIC)
        .expect("the module ends with the signature magic");
    let (rest, info) = body.split_at(body.len() - 12);
    // struct module_signature: algo, hash, id_type (2: PKCS#7), signer_len, key_id_len, 3 pad, be32 sig_len.
    assert_eq!(info[2], 2, "id_type of the signature is not PKCS#7");
    let sig_len = u32::from_be_bytes(info[8..12].try_into().unwrap()) as usize;
    rest.split_at(rest.len() - sig_len)
}

/// `openssl cms -verify` of the module's own signature against `cert` alone (it is its own CA).
fn cms_verifies(content: &[u8], pkcs7: &[u8], cert: &Path) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let (content_file, p7) = (dir.path().join("module.bin"), dir.path().join("sig.p7"));
    std::fs::write(&content_file, content).unwrap();
    std::fs::write(&p7, pkcs7).unwrap();
    succeeds(
        Command::new("openssl")
            .args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
            .arg(&p7)
            .arg("-content")
            .arg(&content_file)
            .arg("-certfile")
            .arg(cert)
            .arg("-CAfile")
            .arg(cert)
            // Without it openssl wants an S/MIME purpose: "unsuitable certificate purpose".
            .args(["-purpose", "any", "-out", "/dev/null"]),
    )
}

/// Runs of the private key that no other file should hold: 48 characters of its base64 (from the middle of a
/// full 64-character PEM line) and 24 bytes of its DER (with no newline or NUL, so grep takes them as one
/// fixed string).
fn key_needles(key: &Path) -> Vec<Vec<u8>> {
    let pem = std::fs::read_to_string(key).unwrap();
    let lines: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let full: Vec<&str> = lines.iter().copied().filter(|l| l.len() == 64).collect();
    let base64_run = full[full.len() / 2].as_bytes()[8..56].to_vec();
    let der = Command::new("openssl")
        .args(["pkey", "-outform", "DER", "-in"])
        .arg(key)
        .output()
        .unwrap()
        .stdout;
    let start = (der.len() / 2..der.len() - 24)
        .find(|&i| !der[i..i + 24].iter().any(|&b| b == b'\n' || b == 0))
        .expect("a run of the DER without newline or NUL");
    vec![base64_run, der[start..start + 24].to_vec()]
}

/// The files under `dir` that hold any of `needles`, byte for byte.
fn files_holding(dir: &Path, needles: &[Vec<u8>]) -> Vec<String> {
    let patterns = tempfile::NamedTempFile::new().unwrap();
    let mut text = Vec::new();
    for needle in needles {
        text.extend_from_slice(needle);
        text.push(b'\n');
    }
    std::fs::write(patterns.path(), text).unwrap();
    let out = Command::new("grep")
        .env("LC_ALL", "C")
        .args(["-r", "-l", "-F", "-a", "-f"])
        .arg(patterns.path())
        .arg(dir)
        .output()
        .unwrap();
    // grep: 0 found, 1 none, 2 trouble.
    assert!(out.status.code() != Some(2), "grep failed: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The image saved as an OCI layout with uncompressed layers, so each layer is a plain tar: its files' bytes
/// are in it as they are in the image. The config blob carries the history and the labels.
fn save_uncompressed(image: &str, dir: &Path) -> Vec<PathBuf> {
    run(Command::new("podman")
        .args([
            "save",
            "--quiet",
            "--format",
            "oci-dir",
            "--uncompressed",
            "-o",
        ])
        .arg(dir)
        .arg(image));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let blob = |digest: &str| {
        dir.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| {
            assert_eq!(
                layer["mediaType"], "application/vnd.oci.image.layer.v1.tar",
                "a compressed layer"
            );
            blob(layer["digest"].as_str().unwrap())
        })
        .collect()
}

/// The steps of a build's output that run mok-sign, and whether each came from the cache.
fn signing_steps(output: &str) -> Vec<bool> {
    build_steps(output)
        .into_iter()
        .filter(|s| s.line.contains("RUN ") && s.line.contains("mok-sign"))
        .map(|s| s.cached)
        .collect()
}

fn step_cached(output: &str, marker: &str) -> bool {
    let steps = build_steps(output);
    let step = steps
        .iter()
        .find(|s| s.line.contains(marker))
        .unwrap_or_else(|| panic!("no step with {marker}:\n{output}"));
    step.cached
}

#[test]
fn an_image_carries_the_module_and_the_kernel_signed_with_the_mok_and_no_byte_of_its_key() {
    let mok = Mok::new("e2e signing MOK");
    let stranger = Mok::new("e2e never enrolled");
    let first = tag("signed");
    let again = tag("signed-again");
    let other = tag("signed-other-key");
    let _cleanup = RemoveImages::new(&[&first, &again, &other]);
    let dir = tempfile::tempdir().unwrap();
    let contexts = tempfile::tempdir().unwrap();
    let context = contexts.path().join("first");

    let t0 = std::time::Instant::now();
    let output = build(
        &config(dir.path(), &first, &mok.signing_toml()),
        &first,
        &context,
    );
    eprintln!("signed build: {:?}", t0.elapsed());
    assert!(
        output.contains("mok-sign: signed vendor-reset-standin.ko"),
        "{output}"
    );

    let image = MountedImage::new(&first);
    let kver = image.only_kernel();
    assert_ne!(kver, test_base_kernel(), "the kernel was not swapped");

    // The module: its appended PKCS#7 verifies against the MOK's certificate (and not another's), over the
    // module's own bytes; modinfo names the key.
    let ko = image.path(&format!("/usr/lib/modules/{kver}/extra/{MODULE}.ko"));
    let bytes = std::fs::read(&ko).unwrap();
    let (content, pkcs7) = split_module_signature(&bytes);
    assert!(
        content.starts_with(b"\x7fELF"),
        "the signed bytes are not the module"
    );
    assert!(
        !content.ends_with(MODULE_SIGNATURE_MAGIC),
        "the module carries a second signature"
    );
    assert!(
        cms_verifies(content, pkcs7, &mok.cert()),
        "openssl cms rejects the module's signature"
    );
    assert!(
        !cms_verifies(content, pkcs7, &stranger.cert()),
        "verified by another key"
    );
    let signer = run(Command::new("modinfo").args(["-F", "signer"]).arg(&ko));
    assert_eq!(signer.trim(), mok.name);
    doctor_judges_the_signer_on_a_secure_boot_host(
        &dir.path().join("passthru.toml"),
        &kver,
        &bytes,
        &mok,
    );

    // The kernel: signed for shim with the MOK alone (Debian's own signature removed).
    let vmlinuz = image.path(&format!("/usr/lib/modules/{kver}/vmlinuz"));
    assert!(succeeds(
        Command::new("sbverify")
            .arg("--cert")
            .arg(mok.cert())
            .arg(&vmlinuz)
    ));
    assert!(!succeeds(
        Command::new("sbverify")
            .arg("--cert")
            .arg(stranger.cert())
            .arg(&vmlinuz)
    ));
    let signatures = run(Command::new("sbverify").arg("--list").arg(&vmlinuz));
    assert!(signatures.contains("signature 1\n"), "{signatures}");
    assert!(!signatures.contains("signature 2"), "{signatures}");
    assert!(
        signatures.contains(&format!("/CN={}", mok.name)),
        "{signatures}"
    );
    // The mode Debian's package gives it (sbsign writes its output with the umask's).
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&vmlinuz).unwrap().permissions(),
    );
    assert_eq!(mode & 0o7777, 0o644);

    // Nothing of the signing reached the final image: no sbsigntools, no secrets directory.
    assert!(!image.path("/usr/bin/sbsign").exists());
    let status = std::fs::read_to_string(image.path("/var/lib/dpkg/status")).unwrap();
    assert!(!status.contains("Package: sbsigntool\n"));
    assert!(!image.path("/run/secrets").exists());
    drop(image);

    // No byte of the key in any layer, the config (history, labels) or the build context. The search is
    // shown to find the key where it is.
    let needles = key_needles(&mok.key());
    assert_eq!(
        files_holding(&mok.dir, &needles),
        [mok.key().display().to_string()]
    );
    let saved = tempfile::tempdir().unwrap();
    let layers = save_uncompressed(&first, saved.path());
    assert!(layers.len() > 3, "{layers:?}");
    assert_eq!(files_holding(saved.path(), &needles), Vec::<String>::new());
    assert_eq!(files_holding(&context, &needles), Vec::<String>::new());
    for layer in &layers {
        let listing = run(Command::new("tar").arg("-tf").arg(layer));
        assert!(
            !listing
                .lines()
                .any(|l| l.trim_start_matches("./").starts_with("run/secrets")),
            "{} has /run/secrets",
            layer.display()
        );
    }
    let history = image_history(&first);
    assert!(
        !history.contains("type=secret") && !history.contains("mok-sign"),
        "{history}"
    );

    // The same key again: all from the cache. Another key: only the signing steps and what follows them.
    let output = build(
        &config(dir.path(), &again, &mok.signing_toml()),
        &again,
        &contexts.path().join("again"),
    );
    assert_eq!(signing_steps(&output), [true, true], "{output}");
    let newer = Mok::new("e2e second MOK");
    let t0 = std::time::Instant::now();
    let output = build(
        &config(dir.path(), &other, &newer.signing_toml()),
        &other,
        &contexts.path().join("other"),
    );
    eprintln!("rebuild with another key: {:?}", t0.elapsed());
    assert_eq!(signing_steps(&output), [false, false], "{output}");
    assert!(
        step_cached(&output, "swap-kernel"),
        "the kernel was swapped again:\n{output}"
    );
    assert!(
        step_cached(&output, "build-kmods\",\"--name"),
        "the module was built again:\n{output}"
    );
    let image = MountedImage::new(&other);
    let ko = image.path(&format!("/usr/lib/modules/{kver}/extra/{MODULE}.ko"));
    let signer = run(Command::new("modinfo").args(["-F", "signer"]).arg(&ko));
    assert_eq!(signer.trim(), newer.name);
    let vmlinuz = image.path(&format!("/usr/lib/modules/{kver}/vmlinuz"));
    assert!(succeeds(
        Command::new("sbverify")
            .arg("--cert")
            .arg(newer.cert())
            .arg(&vmlinuz)
    ));
    assert!(!succeeds(
        Command::new("sbverify")
            .arg("--cert")
            .arg(mok.cert())
            .arg(&vmlinuz)
    ));
}

/// doctor's module-signer on a host booted with Secure Boot and holding the built module: it passes when the
/// kernel holds the MOK (its subject among the asymmetric keys of /proc/keys), and fails naming the signer when
/// the kernel holds only its own and the distribution's keys.
fn doctor_judges_the_signer_on_a_secure_boot_host(config: &Path, kver: &str, ko: &[u8], mok: &Mok) {
    let host = secure_boot_host();
    let root = host.path();
    let modules = root.join(format!("lib/modules/{kver}"));
    std::fs::create_dir_all(modules.join("extra")).unwrap();
    std::fs::write(modules.join(format!("extra/{MODULE}.ko")), ko).unwrap();
    run(Command::new("depmod").arg("-b").arg(root).arg(kver));
    std::fs::create_dir_all(root.join("proc/sys/kernel")).unwrap();
    std::fs::create_dir_all(root.join("sys/bus/pci/devices")).unwrap();
    for (path, text) in [
        ("proc/sys/kernel/osrelease", format!("{kver}\n")),
        (
            "proc/cpuinfo",
            "vendor_id\t: GenuineIntel\nflags\t: vmx\n".to_owned(),
        ),
        ("proc/cmdline", "root=/dev/vda ro\n".to_owned()),
        ("proc/modules", String::new()),
    ] {
        std::fs::write(root.join(path), text).unwrap();
    }
    let keys = |subjects: &[&str]| -> String {
        subjects
            .iter()
            .enumerate()
            .map(|(i, s)| {
                format!("{i:08x} I------     1 perm 1f010000     0     0 asymmetri {s}: 0a1b2c3d X509.rsa 0a1b2c3d []\n")
            })
            .collect()
    };
    let signer_check = |report: &serde_json::Value| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == format!("module-signer:{MODULE}"))
            .unwrap_or_else(|| panic!("no module-signer check: {report:#}"))
            .clone()
    };
    let doctor = || -> serde_json::Value {
        let out = bin()
            .arg("--root")
            .arg(root)
            .arg("--config")
            .arg(config)
            .args(["doctor", "--json"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
    };
    std::fs::write(
        root.join("proc/keys"),
        keys(&["Debian Secure Boot CA", mok.name]),
    )
    .unwrap();
    let trusted = signer_check(&doctor());
    assert_eq!(trusted["status"], "pass", "{trusted:#}");
    std::fs::write(root.join("proc/keys"), keys(&["Debian Secure Boot CA"])).unwrap();
    let untrusted = signer_check(&doctor());
    assert_eq!(untrusted["status"], "fail", "{untrusted:#}");
    assert!(
        untrusted["detail"].as_str().unwrap().contains(mok.name),
        "{untrusted:#}"
    );
    assert!(
        untrusted["fix"]
            .as_str()
            .unwrap()
            .contains("mokutil --import"),
        "{untrusted:#}"
    );
}

/// A host tree whose firmware has Secure Boot on.
fn secure_boot_host() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let efivars = root.path().join("sys/firmware/efi/efivars");
    std::fs::create_dir_all(&efivars).unwrap();
    std::fs::write(
        efivars.join("SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"),
        [6, 0, 0, 0, 1],
    )
    .unwrap();
    root
}

#[test]
fn a_secure_boot_host_refuses_an_unsigned_plan_and_takes_a_signed_one() {
    let root = secure_boot_host();
    let dir = tempfile::tempdir().unwrap();
    let tag = tag("refused");
    let _cleanup = RemoveImages::new(&[&tag]);
    let unsigned = config(dir.path(), &tag, "");
    for command in [
        &["plan"][..],
        &["build", "--isolation", "chroot", "--pull", "never"],
    ] {
        let out = bin()
            .arg("--config")
            .arg(&unsigned)
            .arg("--root")
            .arg(root.path())
            .args(command)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {stderr}");
        let refused = format!(
            "signing: not set, but on the host under {} Secure Boot is on",
            root.path().display()
        );
        for part in [
            refused.as_str(),
            "the vendor-reset-standin module would not load",
            "the ACS-override kernel would not boot",
            "passthru-image mok new DIR",
            "sudo mokutil --import DIR/MOK.der",
        ] {
            assert!(stderr.contains(part), "{part:?} not in: {stderr}");
        }
    }
    assert!(!image_exists(&tag));

    // With the key, the same host takes the plan; for an image (no --root) the unsigned plan is a warning.
    let mok = Mok::new("e2e refusal MOK");
    let signed_dir = tempfile::tempdir().unwrap();
    let signed = config(signed_dir.path(), &tag, &mok.signing_toml());
    let stdout = stdout_of(
        bin()
            .arg("--config")
            .arg(&signed)
            .arg("--root")
            .arg(root.path())
            .args(["plan", "--json"])
            .output()
            .unwrap(),
    );
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        plan["signing"]["certificate"]["subject"],
        "CN=e2e refusal MOK"
    );
    let out = bin()
        .arg("--config")
        .arg(&unsigned)
        .arg("plan")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("warning: [signing] is not set"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn build_refuses_a_key_that_is_not_the_certificates_before_anything_runs() {
    let mok = Mok::new("e2e cert MOK");
    let other = Mok::new("e2e other key");
    let dir = tempfile::tempdir().unwrap();
    let tag = tag("wrong-key");
    let _cleanup = RemoveImages::new(&[&tag]);
    let signing = format!(
        "[signing]\nkey = \"{}\"\ncert = \"{}\"\n",
        other.key().display(),
        mok.cert().display()
    );
    let out = build_command(&config(dir.path(), &tag, &signing))
        .args(["--tag", &tag])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("signing.key: ")
            && stderr.contains("is not the private key of the certificate"),
        "{stderr}"
    );
    assert!(!stderr.contains("STEP "), "the engine ran:\n{stderr}");
    assert!(!image_exists(&tag));
}
