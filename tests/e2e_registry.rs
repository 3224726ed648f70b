//! `build --push` against Debian's docker-registry, the reference distribution registry, started by the test on
//! 127.0.0.1 (random free ports, temporary directories) and stopped by it: over TLS with a CA made by openssl for
//! the test, over plain HTTP with `--tls-verify=false`, with htpasswd authentication, and with nothing listening.
//! What was pushed is read back without the tool: `skopeo inspect` for digest and labels, and a pull into a fresh,
//! separate containers storage whose kargs.d and initramfs are checked as tests/e2e_build.rs does.
//!
//! One image is built (cold, once) and pushed in every scenario: `build --push` rebuilds it from the layer cache.
//! The registries share one storage directory, so after the TLS push the others find every blob already there
//! and the later pushes move manifests only. The engine and skopeo trust the test CA through SSL_CERT_FILE, which
//! Go's TLS reads instead of the system's roots: nothing under /etc is touched.

mod common;

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    RemoveImages, bin, bootc_kargs, build_image, build_refused, image_exists, planned_kargs,
    test_base, write_config,
};
use serde_json::Value;

const CONFIG: &str = "[cpu]\nvendor = \"amd\"\n\n[gpu]\nvendors = [\"nvidia\"]\n\n[vfio]\nids = [\"10de:2684\", \"10de:22ba\"]\n";
const SHA: &str = "4d2c1b0a99887766554433221100ffeeddccbbaa";
const USER: &str = "fleet";
const PASSWORD: &str = "s3cret-for-the-test";

/// A certificate authority made for this test, and a certificate it signed for 127.0.0.1.
struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509", "-subj", "/CN=passthru-image test CA"][..],
                &ec,
                &["-keyout", "ca.key", "-out", "ca.crt", "-days", "2"],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req", "-subj", "/CN=127.0.0.1"][..],
                &ec,
                &["-keyout", "registry.key", "-out", "registry.csr"],
            ]
            .concat(),
        );
        std::fs::write(
            dir.path().join("san.ext"),
            "subjectAltName = IP:127.0.0.1\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "registry.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "registry.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ]);
        TestCa { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A docker-registry process, killed when this value goes (and by the kernel if the test process dies).
struct Registry {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

#[derive(Clone, Copy)]
enum Transport<'a> {
    Tls(&'a TestCa),
    PlainHttp,
}

impl Registry {
    fn start(storage: &Path, transport: Transport, htpasswd: Option<&Path>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    \
             rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        if let Transport::Tls(ca) = transport {
            config += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                ca.file("registry.crt").display(),
                ca.file("registry.key").display()
            );
        }
        if let Some(htpasswd) = htpasswd {
            config += &format!(
                "auth:\n  htpasswd:\n    realm: passthru-e2e\n    path: {}\n",
                htpasswd.display()
            );
        }
        let config_file = dir.path().join("config.yml");
        std::fs::write(&config_file, config).unwrap();
        let log = dir.path().join("registry.log");
        let mut command = Command::new("docker-registry");
        command
            .arg("serve")
            .arg(&config_file)
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("stderr")).unwrap(),
            ));
        // SAFETY: prctl is async-signal-safe; the registry dies with this thread even if the test is killed.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .expect("run docker-registry (tests/setup-debian.sh installs it)");
        let mut registry = Registry {
            child,
            port,
            log,
            _dir: dir,
        };
        registry.wait_until_listening();
        registry
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("docker-registry exited ({status}): {}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen: {}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn output(&self) -> String {
        let dir = self.log.parent().unwrap();
        std::fs::read_to_string(&self.log).unwrap_or_default()
            + &std::fs::read_to_string(dir.join("stderr")).unwrap_or_default()
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A separate containers storage (its own --root and --runroot), removed with everything in it.
struct FreshStorage {
    dir: tempfile::TempDir,
}

impl FreshStorage {
    fn new() -> FreshStorage {
        FreshStorage {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn podman(&self, ca: &TestCa) -> Command {
        let mut podman = Command::new("podman");
        podman
            .env("SSL_CERT_FILE", ca.file("ca.crt"))
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("runroot"));
        podman
    }
}

impl Drop for FreshStorage {
    fn drop(&mut self) {
        let ca_free = |args: &[&str]| {
            let _ = Command::new("podman")
                .arg("--root")
                .arg(self.dir.path().join("root"))
                .arg("--runroot")
                .arg(self.dir.path().join("runroot"))
                .args(args)
                .output();
        };
        ca_free(&["image", "unmount", "--all"]);
        ca_free(&["rmi", "--all", "--force"]);
    }
}

/// Takes a name off an image without removing the image (the test base keeps its own names).
struct Untag(String);

impl Drop for Untag {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["untag", &self.0, &self.0])
            .output();
    }
}

fn run(mut command: Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn skopeo(env: &[(&str, &Path)], args: &[&str]) -> String {
    let mut skopeo = Command::new("skopeo");
    for (name, value) in env {
        skopeo.env(name, value);
    }
    skopeo.args(args);
    run(skopeo)
}

struct Pushed {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Pushed {
    /// The digest from `Pushed as REPOSITORY@DIGEST`.
    fn digest(&self) -> &str {
        let line = self
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("Pushed as "))
            .unwrap_or_else(|| panic!("no Pushed line:\n{}\n{}", self.stdout, self.stderr));
        line.rsplit_once('@').unwrap().1
    }
}

/// `passthru-image build --push` of the test's config as `tag`, with `extra` arguments and environment.
fn build_and_push(config: &Path, tag: &str, extra: &[&str], env: &[(&str, &Path)]) -> Pushed {
    let mut command = bin();
    command
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("SSL_CERT_FILE")
        .arg("--config")
        .arg(config)
        .args(["build", "--isolation", "chroot", "--tag", tag, "--push"])
        .args(extra);
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().unwrap();
    Pushed {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn pushed_images_reach_real_registries_and_read_back_without_the_tool() {
    let work = tempfile::tempdir().unwrap();
    let local = "localhost/passthru-e2e-registry:built";
    let config = write_config(work.path(), local, CONFIG);
    let ca = TestCa::new();
    let storage = work.path().join("registry-storage");
    let tls = Registry::start(&storage, Transport::Tls(&ca), None);
    let plain = Registry::start(&storage, Transport::PlainHttp, None);
    let htpasswd = work.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        run({
            let mut c = Command::new("htpasswd");
            c.args(["-Bbn", USER, PASSWORD]);
            c
        }),
    )
    .unwrap();
    let authenticated = Registry::start(&storage, Transport::Tls(&ca), Some(&htpasswd));

    let repository = "passthru-e2e/host";
    let tags: Vec<String> = [&tls, &plain, &authenticated]
        .iter()
        .map(|r| format!("{}/{repository}:desk", r.host()))
        .collect();
    let dead_tag = format!("127.0.0.1:{}/{repository}:desk", free_port());
    let mut images = tags.clone();
    images.extend([local.to_owned(), dead_tag.clone()]);
    let _cleanup = RemoveImages::new(&images);
    // The one cold build; every push below rebuilds it from the cache.
    build_image(&config, local);

    tls_push_records_the_registry_base_and_reads_back(&config, &tls, &tags[0], &ca);
    plain_http_needs_tls_verify_false(&config, &tags[1]);
    failed_pushes_exit_1_with_the_registry_message_and_keep_the_image(
        &config, &dead_tag, &tags[2], &ca,
    );
    a_login_lets_the_push_through(&config, &authenticated, &tags[2], &ca, work.path());
}

/// The base comes from the registry too (`--pull always`), so its label must equal what `skopeo inspect`
/// says of the base there: the comparison the generated workflow's daily run makes.
fn tls_push_records_the_registry_base_and_reads_back(
    config: &Path,
    registry: &Registry,
    tag: &str,
    ca: &TestCa,
) {
    let trust = [("SSL_CERT_FILE", ca.file("ca.crt"))];
    let trust: Vec<(&str, &Path)> = trust.iter().map(|(k, v)| (*k, v.as_path())).collect();
    let base = format!("{}/passthru-e2e/base:bookworm", registry.host());
    let _untag = Untag(base.clone());
    // The base's own manifest (podman's first digest of it, the one make-base.sh committed) goes as it is,
    // layers uncompressed: the registry serves the base under a digest local storage already knows, so the
    // shared test base gains no second manifest, and the copy is quick.
    let local = run({
        let mut inspect = Command::new("podman");
        inspect.args(["image", "inspect", "--format", "{{.Digest}}", test_base()]);
        inspect
    });
    let repository = test_base().rsplit_once(':').unwrap().0;
    skopeo(
        &trust,
        &[
            "copy",
            "--quiet",
            "--preserve-digests",
            &format!("containers-storage:{repository}@{}", local.trim()),
            &format!("docker://{base}"),
        ],
    );

    let digest_file = config.with_file_name("digest");
    let epoch = PathBuf::from("1700000000");
    let (server, repo, sha) = (
        PathBuf::from("https://github.com"),
        PathBuf::from("me/fleet"),
        PathBuf::from(SHA),
    );
    let mut env = trust.clone();
    env.extend([
        ("GITHUB_SERVER_URL", server.as_path()),
        ("GITHUB_REPOSITORY", repo.as_path()),
        ("GITHUB_SHA", sha.as_path()),
        ("SOURCE_DATE_EPOCH", epoch.as_path()),
    ]);
    let digest_arg = digest_file.to_str().unwrap();
    let pushed = build_and_push(
        config,
        tag,
        &[
            "--base",
            &base,
            "--pull",
            "always",
            "--digest-file",
            digest_arg,
        ],
        &env,
    );
    assert_eq!(pushed.code, Some(0), "{}", pushed.stderr);
    let digest = pushed.digest();
    assert!(
        pushed.stdout.contains(&format!(
            "Pushed as {}@{digest}\n",
            tag.rsplit_once(':').unwrap().0
        )),
        "{}",
        pushed.stdout
    );
    assert_eq!(std::fs::read_to_string(&digest_file).unwrap(), digest);

    let inspected: Value =
        serde_json::from_str(&skopeo(&trust, &["inspect", &format!("docker://{tag}")])).unwrap();
    assert_eq!(inspected["Digest"], digest);
    let labels = &inspected["Labels"];
    let base_now = skopeo(
        &trust,
        &[
            "inspect",
            "--format",
            "{{.Digest}}",
            &format!("docker://{base}"),
        ],
    );
    for (key, value) in [
        ("containers.bootc", "1"),
        ("org.opencontainers.image.base.digest", base_now.trim()),
        ("org.opencontainers.image.base.name", &base),
        (
            "org.opencontainers.image.source",
            "https://github.com/me/fleet",
        ),
        ("org.opencontainers.image.revision", SHA),
        ("org.opencontainers.image.created", "2023-11-14T22:13:20Z"),
        ("passthru-image.version", env!("CARGO_PKG_VERSION")),
    ] {
        assert_eq!(labels[key], value, "{key}: {labels:#}");
    }
    let config_hash = labels["passthru-image.config.sha256"].as_str().unwrap();
    assert!(config_hash.len() == 64 && config_hash.bytes().all(|b| b.is_ascii_hexdigit()));

    // A host's view: pull into storage that has never seen the image, and look inside.
    let fresh = FreshStorage::new();
    let by_digest = format!("{}@{digest}", tag.rsplit_once(':').unwrap().0);
    run({
        let mut pull = fresh.podman(ca);
        pull.args(["pull", "--quiet", &by_digest]);
        pull
    });
    let root = PathBuf::from(
        run({
            let mut mount = fresh.podman(ca);
            mount.args(["image", "mount", &by_digest]);
            mount
        })
        .trim(),
    );
    assert_eq!(
        bootc_kargs(&root),
        planned_kargs(&["--config", config.to_str().unwrap()])
    );
    let kernels: Vec<PathBuf> = std::fs::read_dir(root.join("usr/lib/modules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("vmlinuz").is_file())
        .collect();
    assert_eq!(kernels.len(), 1, "{kernels:?}");
    let listing = run({
        let mut lsinitrd = Command::new("lsinitrd");
        lsinitrd.arg(kernels[0].join("initramfs.img"));
        lsinitrd
    });
    for module in ["vfio.ko", "vfio_iommu_type1.ko", "vfio-pci.ko"] {
        assert!(
            listing.contains(module),
            "{module} not in the pulled initramfs"
        );
    }
}

/// containers/image never treats a registry as insecure on its own: plain HTTP fails until the push is told.
fn plain_http_needs_tls_verify_false(config: &Path, tag: &str) {
    let refused = build_and_push(config, tag, &["--pull", "never"], &[]);
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("server gave HTTP response to HTTPS client"),
        "{}",
        refused.stderr
    );
    assert!(image_exists(tag));

    let pushed = build_and_push(config, tag, &["--pull", "never", "--tls-verify=false"], &[]);
    assert_eq!(pushed.code, Some(0), "{}", pushed.stderr);
    let digest = skopeo(
        &[],
        &[
            "inspect",
            "--tls-verify=false",
            "--format",
            "{{.Digest}}",
            &format!("docker://{tag}"),
        ],
    );
    assert_eq!(digest.trim(), pushed.digest());
}

fn failed_pushes_exit_1_with_the_registry_message_and_keep_the_image(
    config: &Path,
    dead_tag: &str,
    auth_tag: &str,
    ca: &TestCa,
) {
    let down = build_and_push(config, dead_tag, &["--pull", "never"], &[]);
    assert_eq!(down.code, Some(1), "{}", down.stderr);
    assert!(
        down.stderr.contains("connection refused"),
        "{}",
        down.stderr
    );
    assert!(
        down.stderr.contains(&format!("pushing {dead_tag} failed")),
        "{}",
        down.stderr
    );
    assert!(image_exists(dead_tag));

    // No credentials: an auth file that holds none, so no login of the machine's can leak in.
    let no_login = ca.file("no-auth.json");
    std::fs::write(&no_login, "{}").unwrap();
    let ca_file = ca.file("ca.crt");
    let refused = build_and_push(
        config,
        auth_tag,
        &["--pull", "never"],
        &[
            ("SSL_CERT_FILE", &ca_file),
            ("REGISTRY_AUTH_FILE", &no_login),
        ],
    );
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    // The registry's own words (distribution's UNAUTHORIZED error).
    assert!(
        refused.stderr.contains("authentication required"),
        "{}",
        refused.stderr
    );
    assert!(image_exists(auth_tag));
}

/// The route the generated workflow takes: `podman login` into an auth file, then the push reads it.
fn a_login_lets_the_push_through(
    config: &Path,
    registry: &Registry,
    tag: &str,
    ca: &TestCa,
    work: &Path,
) {
    let auth = work.join("auth.json");
    run({
        let mut login = Command::new("podman");
        login
            .env("SSL_CERT_FILE", ca.file("ca.crt"))
            .args(["login", "--authfile"])
            .arg(&auth)
            .args(["--username", USER, "--password", PASSWORD, &registry.host()]);
        login
    });
    let ca_file = ca.file("ca.crt");
    let pushed = build_and_push(
        config,
        tag,
        &["--pull", "never"],
        &[("SSL_CERT_FILE", &ca_file), ("REGISTRY_AUTH_FILE", &auth)],
    );
    assert_eq!(pushed.code, Some(0), "{}", pushed.stderr);
    let digest = skopeo(
        &[("SSL_CERT_FILE", &ca_file), ("REGISTRY_AUTH_FILE", &auth)],
        &[
            "inspect",
            "--format",
            "{{.Digest}}",
            &format!("docker://{tag}"),
        ],
    );
    assert_eq!(digest.trim(), pushed.digest());
}

#[test]
fn bad_push_flags_exit_2_before_anything_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("passthru.toml");
    std::fs::write(
        &config,
        format!("[image]\ntag = \"localhost/passthru-e2e-registry:never\"\n\n{CONFIG}"),
    )
    .unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--digest-file", "d"], "--push"),
        (&["--tls-verify=false"], "--push"),
        (&["--push", "--tls-verify=maybe"], "--tls-verify"),
        (
            &["--push", "--digest-file", "/nonexistent/dir/digest"],
            "--digest-file",
        ),
    ];
    for (args, named) in cases {
        let stderr = build_refused(&config, args, named);
        assert!(!stderr.contains("Building "), "{args:?}: {stderr}");
    }
    // A malformed CI variable is bad input too: it would become a label.
    let out = bin()
        .env("GITHUB_SHA", "not-a-commit")
        .arg("--config")
        .arg(&config)
        .args(["build", "--pull", "never"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("GITHUB_SHA"), "{stderr}");
}
