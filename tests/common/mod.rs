//! Shared by the end-to-end tests: the offline test base image and building derived images from it.
//! Each test binary includes this module and uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use assert_cmd::Command;

pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> Command {
    let mut cmd = Command::cargo_bin("passthru-image").unwrap();
    // Tests never read the machine's own /sys, /proc or ./passthru.toml by accident.
    cmd.env_remove("PASSTHRU_ENGINE").current_dir(repo_dir());
    cmd
}

/// The offline bootc-layout test base (tests/base/make-base.sh), built once per machine and cached by the hash
/// of its inputs. A failure here fails the test: the end-to-end suite never skips for lack of a program.
pub fn test_base() -> &'static str {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(|| {
        let out = std::process::Command::new("bash")
            .arg(repo_dir().join("tests/base/make-base.sh"))
            .env("BUILDAH_ISOLATION", "chroot")
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run tests/base/make-base.sh");
        assert!(out.status.success(), "tests/base/make-base.sh failed");
        let stdout = String::from_utf8(out.stdout).unwrap();
        stdout
            .lines()
            .last()
            .expect("make-base.sh printed the image")
            .trim()
            .to_owned()
    })
}

/// What a program that must have succeeded printed on stdout; its stderr is the failure message.
pub fn stdout_of(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a host program that must succeed, and returns what it printed on stdout.
pub fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The release of the test base's kernel.
pub fn test_base_kernel() -> &'static str {
    static KVER: OnceLock<String> = OnceLock::new();
    KVER.get_or_init(|| MountedImage::new(test_base()).only_kernel())
}

/// The directory of the alternative (cloud) kernel's .debs for the kernel ABI of `base_kver`, which every
/// base of the tests runs (the test base's), fetched once per machine by tests/base/fetch-alt-kernel.sh (which
/// also serialises concurrent callers itself).
pub fn alt_kernel_debs(base_kver: &str) -> &'static str {
    static DIR: OnceLock<String> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = run(std::process::Command::new("bash")
            .arg(repo_dir().join("tests/base/fetch-alt-kernel.sh"))
            .arg(base_kver)
            .stderr(std::process::Stdio::inherit()));
        out.lines()
            .last()
            .expect("fetch-alt-kernel.sh printed its directory")
            .trim()
            .to_owned()
    })
}

/// A test base made to show one fact of real bases: tests/base/variants/NAME on top of [`test_base`], built
/// once per machine by tests/base/make-variant.sh and cached by the hash of its inputs.
pub fn test_base_variant(name: &str) -> String {
    let out = std::process::Command::new("bash")
        .arg(repo_dir().join("tests/base/make-variant.sh"))
        .arg(name)
        .env("BUILDAH_ISOLATION", "chroot")
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run tests/base/make-variant.sh");
    assert!(
        out.status.success(),
        "tests/base/make-variant.sh {name} failed"
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .expect("make-variant.sh printed the image")
        .trim()
        .to_owned()
}

/// The kernel arguments `passthru-image plan --json ARGS` plans, in their order.
pub fn planned_kargs(args: &[&str]) -> Vec<String> {
    let out = bin().args(["plan", "--json"]).args(args).output().unwrap();
    let plan: serde_json::Value = serde_json::from_str(&stdout_of(out)).unwrap();
    plan["kargs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect()
}

/// The kernel arguments bootc would apply from the root filesystem at `root`, read the way bootc reads them
/// and not with the tool's own parser: every `*.toml` in /usr/lib/bootc/kargs.d in name order, a table with
/// `kargs` (required, strings) and optionally `match-architectures` and nothing else, each entry split like a
/// kernel command line.
pub fn bootc_kargs(root: &Path) -> Vec<String> {
    let dir = root.join("usr/lib/bootc/kargs.d");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.toml in {}", dir.display());
    let mut kargs = Vec::new();
    for file in files {
        let table: toml::Table = std::fs::read_to_string(&file)
            .unwrap()
            .parse()
            .unwrap_or_else(|e| panic!("{}: not TOML: {e}", file.display()));
        for key in table.keys() {
            assert!(
                ["kargs", "match-architectures"].contains(&key.as_str()),
                "{}: key {key}",
                file.display()
            );
        }
        if let Some(arches) = table.get("match-architectures") {
            let arches = arches.as_array().expect("match-architectures is an array");
            if !arches.iter().any(|a| a.as_str() == Some("x86_64")) {
                continue;
            }
        }
        let entries = table
            .get("kargs")
            .and_then(|k| k.as_array())
            .expect("kargs is a required array");
        for entry in entries {
            let entry = entry.as_str().expect("each karg is a string");
            kargs.extend(entry.split_whitespace().map(str::to_owned));
        }
    }
    kargs
}

/// A passthru.toml on the test base with `body` appended (everything but `[image]`).
pub fn write_config(dir: &Path, tag: &str, body: &str) -> PathBuf {
    let path = dir.join("passthru.toml");
    let text = format!(
        "[image]\nbase = \"{}\"\ntag = \"{tag}\"\n\n{body}",
        test_base()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `passthru-image --config CONFIG build` with the options every test build needs on our machines (chroot
/// isolation for hybrid cgroups, no registry); add more arguments to it.
pub fn build_command(config: &Path) -> Command {
    let mut cmd = bin();
    cmd.arg("--config")
        .arg(config)
        .args(["build", "--isolation", "chroot", "--pull", "never"]);
    cmd
}

/// `passthru-image --config CONFIG build ARGS`, which must exit 2 (bad input) with a message that names
/// `named`; returns its stderr.
pub fn build_refused(config: &Path, args: &[&str], named: &str) -> String {
    let out = bin()
        .arg("--config")
        .arg(config)
        .arg("build")
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(
        stderr.contains(named),
        "{args:?} does not name {named}: {stderr}"
    );
    stderr
}

/// Builds `config` into the image `tag` in local storage with `passthru-image build`, and returns what the
/// engine printed (the cache tests read its "Using cache" lines).
pub fn build_image(config: &Path, tag: &str) -> String {
    let out = build_command(config)
        .args(["--tag", tag])
        .output()
        .expect("run passthru-image build");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "build of {} failed:\n{text}",
        config.display()
    );
    text
}

/// One step of a podman build, as its output tells it: the `STEP n/m: INSTRUCTION` line (without the
/// `[k/s] ` stage prefix of multi-stage builds) and whether podman took it from its layer cache.
#[derive(Debug)]
pub struct BuildStep {
    pub line: String,
    pub cached: bool,
}

/// The steps of a podman build's output, in the order they started.
///
/// podman ends each step but FROM with `--> ID`, preceded by `--> Using cache ID` when it was cached. The
/// two cannot simply be given to the last STEP line: a `COPY --from=STAGE` prints its STEP line, then builds
/// STAGE (whose steps print theirs), and only then its own `-->` lines. So open steps are kept on a stack and
/// each `-->` line belongs to the innermost one.
pub fn build_steps(output: &str) -> Vec<BuildStep> {
    let mut steps: Vec<BuildStep> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    for line in output.lines() {
        let bare = line.trim_start_matches(|c: char| {
            c == '[' || c == ']' || c == '/' || c.is_ascii_digit() || c == ' '
        });
        if bare.starts_with("STEP ") && bare.contains(": ") {
            steps.push(BuildStep {
                line: bare.to_owned(),
                cached: false,
            });
            // FROM prints no `-->` line of its own.
            if !bare
                .split_once(": ")
                .is_some_and(|(_, i)| i.starts_with("FROM "))
            {
                open.push(steps.len() - 1);
            }
        } else if line.starts_with("--> Using cache") {
            if let Some(&i) = open.last() {
                steps[i].cached = true;
            }
        } else if line.starts_with("--> ") {
            open.pop();
        }
    }
    steps
}

/// An image's root filesystem, mounted read-only by podman for as long as this value lives. Tests inspect
/// images through it, never through the tool that built them.
pub struct MountedImage {
    image: String,
    pub root: PathBuf,
}

impl MountedImage {
    pub fn new(image: &str) -> MountedImage {
        let out = std::process::Command::new("podman")
            .args(["image", "mount", image])
            .output()
            .expect("run podman image mount");
        assert!(
            out.status.success(),
            "podman image mount {image}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let root = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        MountedImage {
            image: image.to_owned(),
            root,
        }
    }

    pub fn path(&self, inside: &str) -> PathBuf {
        self.root.join(inside.trim_start_matches('/'))
    }

    /// A text file of the image.
    pub fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.path(path))
            .unwrap_or_else(|e| panic!("{path} in the image: {e}"))
    }

    /// The release of the image's only kernel: exactly one /usr/lib/modules/* holds a vmlinuz.
    pub fn only_kernel(&self) -> String {
        let modules = self.path("/usr/lib/modules");
        let kernels: Vec<String> = std::fs::read_dir(&modules)
            .unwrap_or_else(|e| panic!("{}: {e}", modules.display()))
            .map(|e| e.unwrap())
            .filter(|e| e.path().join("vmlinuz").is_file())
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        assert_eq!(kernels.len(), 1, "kernels with a vmlinuz: {kernels:?}");
        kernels.into_iter().next().unwrap()
    }
}

impl Drop for MountedImage {
    fn drop(&mut self) {
        let _ = std::process::Command::new("podman")
            .args(["image", "unmount", &self.image])
            .output();
    }
}

/// A label of an image in local storage, if set.
pub fn image_label(image: &str, label: &str) -> Option<String> {
    let out = std::process::Command::new("podman")
        .args([
            "image",
            "inspect",
            "--format",
            &format!("{{{{index .Labels \"{label}\"}}}}"),
            image,
        ])
        .output()
        .expect("run podman image inspect");
    assert!(out.status.success(), "podman image inspect {image}");
    let value = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    (!value.is_empty() && value != "<no value>").then_some(value)
}

/// Whether `image` is in local storage.
pub fn image_exists(image: &str) -> bool {
    std::process::Command::new("podman")
        .args(["image", "exists", image])
        .status()
        .expect("run podman image exists")
        .success()
}

/// The instructions that made each of `image`'s layers, in full (`podman history`): where a layer's files
/// came from.
pub fn image_history(image: &str) -> String {
    run(std::process::Command::new("podman").args([
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}",
        image,
    ]))
}

/// Removes the images a test made when it goes out of scope, also when an assertion failed half-way.
pub struct RemoveImages(pub Vec<String>);

impl RemoveImages {
    pub fn new<S: AsRef<str>>(images: &[S]) -> RemoveImages {
        RemoveImages(images.iter().map(|i| i.as_ref().to_owned()).collect())
    }
}

impl Drop for RemoveImages {
    fn drop(&mut self) {
        let _ = std::process::Command::new("podman")
            .args(["rmi", "--force", "--ignore"])
            .args(&self.0)
            .output();
    }
}

/// The stand-in for gnif/vendor-reset: a module of the tests' own whose dkms.conf and build use upstream's
/// forms (`BUILT_MODULE_NAME[0]="${PACKAGE_NAME}"`, `MAKE[0]="make KDIR=${kernel_source_dir}"`, `M=$(PWD)`).
pub fn standin_source() -> PathBuf {
    repo_dir().join("tests/fixtures/vendor-reset-standin")
}

/// A git repository made at run time from a fixture directory, as a user's clone would be: the fixture's
/// files in a first commit, then one more commit per `(file, content)` of `later`. Returns the repository and
/// the full hash of each commit, in order.
pub fn git_repository_of(
    fixture: &Path,
    later: &[(&str, &str)],
) -> (tempfile::TempDir, Vec<String>) {
    let repo = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(repo.path())
            .args([
                "-c",
                "user.name=passthru-tests",
                "-c",
                "user.email=tests@invalid",
            ])
            .args(args)
            .output()
            .expect("run git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    git(&["init", "--quiet"]);
    copy_dir(fixture, repo.path());
    git(&["add", "--all"]);
    git(&["commit", "--quiet", "-m", "fixture"]);
    let mut commits = vec![git(&["rev-parse", "HEAD"])];
    for (file, content) in later {
        std::fs::write(repo.path().join(file), content).unwrap();
        git(&[
            "commit",
            "--quiet",
            "--all",
            "-m",
            &format!("change {file}"),
        ]);
        commits.push(git(&["rev-parse", "HEAD"]));
    }
    (repo, commits)
}

/// The `file://` URL of a local repository.
pub fn file_url(repo: &Path) -> String {
    format!("file://{}", repo.display())
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
