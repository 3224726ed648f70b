//! Hostile input, as a table: configs, flags, host trees under `--root`, live state files and output paths that
//! are wrong on purpose. Each case builds its input in a temp dir of its own at test time, runs the binary in
//! that dir, and asserts:
//! - the exit code (2 for bad input, 1 for a failed write, 0 where the input is only huge);
//! - a message naming the field or path, and what is wrong;
//! - nothing written: the temp dir listed before and after (kinds, modes, contents, link targets) is the same;
//! - no panic;
//! - an end within 10 s (each case's time is printed; the slowest is reported).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::fs::{FileTypeExt, MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use std::io::Read;
use std::process::{Command, Output, Stdio};

const LIMIT: Duration = Duration::from_secs(10);
/// The GPU of the intel-nvidia fixture, and where its sysfs directory is.
const GPU: &str = "0000:01:00.0";
const GPU_DIR: &str = "host/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0";
const DEVICES: &str = "host/sys/bus/pci/devices";
const GROUPS: &str = "host/sys/kernel/iommu_groups";
const STATE: &str = "host/etc/passthru-image/live-state.json";
const MODPROBE: &str = "/etc/modprobe.d/50-passthru-vfio.conf";
const DRACUT: &str = "/etc/dracut.conf.d/50-passthru-vfio.conf";

/// Where a case's stdout goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stdout {
    Captured,
    /// /dev/full: every write fails with ENOSPC.
    Full,
}

/// Makes a case's input in its sandbox and returns the arguments (after the program name).
type Setup = Box<dyn Fn(&Sandbox) -> Vec<String> + Sync>;

struct Case {
    name: &'static str,
    setup: Setup,
    code: i32,
    /// Each must appear in what the run printed (stderr, and stdout when it is captured).
    says: Vec<&'static str>,
    stdout: Stdout,
}

fn case(
    name: &'static str,
    code: i32,
    says: &[&'static str],
    setup: impl Fn(&Sandbox) -> Vec<String> + Sync + 'static,
) -> Case {
    Case {
        name,
        setup: Box::new(setup),
        code,
        says: says.to_vec(),
        stdout: Stdout::Captured,
    }
}

fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// A case's own directory: the binary runs in it, and it is listed before and after (with any shared tree the
/// case uses, see [`Sandbox::watch`]).
struct Sandbox {
    _dir: tempfile::TempDir,
    path: PathBuf,
    watched: RefCell<Vec<PathBuf>>,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("pt-hostile-")
            .tempdir()
            .unwrap();
        let path = dir.path().to_owned();
        Sandbox {
            _dir: dir,
            path,
            watched: RefCell::default(),
        }
    }

    /// Lists a tree made once for several cases with the sandbox (kinds, sizes, modes and times: reading
    /// thousands of files twice per case would cost more than the case).
    fn watch(&self, tree: &Path) -> String {
        self.watched.borrow_mut().push(tree.to_owned());
        tree.to_str().unwrap().to_owned()
    }

    /// The absolute path of `rel`, as an argument.
    fn at(&self, rel: &str) -> String {
        self.path.join(rel).to_str().unwrap().to_owned()
    }

    fn parent_of(&self, rel: &str) {
        std::fs::create_dir_all(self.path.join(rel).parent().unwrap()).unwrap();
    }

    fn file(&self, rel: &str, content: impl AsRef<[u8]>) -> String {
        self.remove(rel);
        self.parent_of(rel);
        std::fs::write(self.path.join(rel), content).unwrap();
        self.at(rel)
    }

    fn dir(&self, rel: &str) -> String {
        std::fs::create_dir_all(self.path.join(rel)).unwrap();
        self.at(rel)
    }

    fn remove(&self, rel: &str) {
        let path = self.path.join(rel);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path).unwrap(),
            Ok(_) => std::fs::remove_file(path).unwrap(),
            Err(_) => {}
        }
    }

    /// Replaces whatever is at `rel` with a FIFO.
    fn fifo(&self, rel: &str) -> String {
        self.remove(rel);
        self.parent_of(rel);
        let path = CString::new(self.at(rel)).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
        self.at(rel)
    }

    /// Replaces whatever is at `rel` with a character device node (the suite runs as root).
    fn char_device(&self, rel: &str, major: u32, minor: u32) -> String {
        self.remove(rel);
        self.parent_of(rel);
        let path = CString::new(self.at(rel)).unwrap();
        // SAFETY: a valid NUL-terminated path.
        let made = unsafe {
            libc::mknod(
                path.as_ptr(),
                libc::S_IFCHR | 0o644,
                libc::makedev(major, minor),
            )
        };
        assert_eq!(made, 0, "mknod needs root");
        self.at(rel)
    }

    /// Replaces whatever is at `rel` with a symlink to `target`.
    fn link(&self, target: &str, rel: &str) -> String {
        self.remove(rel);
        self.parent_of(rel);
        symlink(target, self.path.join(rel)).unwrap();
        self.at(rel)
    }

    /// A host tree at `host/`: a copy of the intel-nvidia fixture (Intel CPU, GTX 960 at 0000:01:00.0 in
    /// group 1, bound to nvidia).
    fn host(&self) -> String {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/intel-nvidia");
        let out = std::process::Command::new("cp")
            .arg("-a")
            .arg(&fixture)
            .arg(self.path.join("host"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        self.at("host")
    }

    /// `--root host --config CFG` of a booted ostree host, and a directory that passes for an ostree sysroot
    /// (enough for everything before the sysroot is read).
    fn live_host(&self) -> Vec<String> {
        let mut a = self.revert_host();
        a.extend(args(&["--config", &self.config(LIVE_CONFIG)]));
        a
    }

    /// [`Sandbox::live_host`] with a real ostree sysroot (copied from one made once per run).
    /// [`Sandbox::live_host`] for `revert`, which reads no config.
    fn revert_host(&self) -> Vec<String> {
        self.host();
        self.file("host/run/ostree-booted", "");
        self.dir("host/etc");
        self.dir("sysroot/ostree/repo");
        self.dir("sysroot/ostree/deploy");
        args(&["--root", &self.at("host")])
    }

    fn live_host_with_sysroot(&self) -> Vec<String> {
        let args = self.live_host();
        self.remove("sysroot");
        let out = std::process::Command::new("cp")
            .arg("-a")
            .arg(template_sysroot().join("sysroot"))
            .arg(self.path.join("sysroot"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        args
    }

    /// A state file as apply writes it, with `json` as its whole text.
    fn state(&self, json: &str) {
        self.file(STATE, json);
    }

    fn config(&self, body: &str) -> String {
        self.file("cfg.toml", body)
    }

    /// Every entry under the sandbox without following links: kind, mode, and content or link target; then the
    /// watched trees by metadata.
    fn listing(&self) -> BTreeMap<String, String> {
        let mut entries = BTreeMap::new();
        walk(&self.path, &mut |rel, path, meta| {
            let kind = meta.file_type();
            let what = if kind.is_symlink() {
                format!("link {:?}", std::fs::read_link(path).unwrap())
            } else if kind.is_dir() {
                "dir".to_owned()
            } else if kind.is_file() {
                let bytes = std::fs::read(path).unwrap();
                format!("file {} {:x}", bytes.len(), fnv(&bytes))
            } else if kind.is_fifo() {
                "fifo".to_owned()
            } else {
                format!("special {:x}", meta.rdev())
            };
            entries.insert(rel.to_owned(), format!("{what} {:o}", meta.mode()));
        });
        for tree in self.watched.borrow().iter() {
            walk(tree, &mut |rel, _, meta| {
                entries.insert(
                    format!("{}/{rel}", tree.display()),
                    format!(
                        "{:o} {} {}.{}",
                        meta.mode(),
                        meta.size(),
                        meta.mtime(),
                        meta.mtime_nsec()
                    ),
                );
            });
        }
        entries
    }
}

/// Calls `each` with every entry under `top` (its path relative to `top`, its path, its metadata), without
/// following links.
fn walk(top: &Path, each: &mut dyn FnMut(&str, &Path, &std::fs::Metadata)) {
    let mut pending = vec![top.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                pending.push(path.clone());
            }
            let rel = path
                .strip_prefix(top)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            each(&rel, &path, &meta);
        }
    }
}

/// A content fingerprint for the listing (FNV-1a): enough to see that a file changed.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

const LIVE_CONFIG: &str =
    "[cpu]\nvendor = \"amd\"\n[vfio]\nids = [\"10de:1401\"]\n[gpu]\nvendors = [\"nvidia\"]\n";

/// A tree made once per machine under cargo's temporary directory for tests and kept there for the next run:
/// built beside its place and renamed in, so a run that stops half-way leaves no half tree. `name` carries a
/// version: change it when `make` changes.
fn cached_tree(name: &str, make: impl FnOnce(&Path)) -> PathBuf {
    let top = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let tree = top.join(name);
    if !tree.exists() {
        let staging = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .tempdir_in(top)
            .unwrap();
        make(staging.path());
        match std::fs::rename(staging.path(), &tree) {
            Ok(()) => drop(staging.keep()),
            Err(_) if tree.exists() => {}
            Err(e) => panic!("moving {} into place: {e}", tree.display()),
        }
    }
    tree
}

/// An ostree sysroot with one deployment, made with the `ostree` CLI (as tests/live_apply.rs makes its
/// hosts); cases copy it.
fn template_sysroot() -> &'static Path {
    static SYSROOT: OnceLock<PathBuf> = OnceLock::new();
    SYSROOT.get_or_init(|| cached_tree("hostile-sysroot-v1", make_sysroot))
}

fn make_sysroot(base: &Path) {
    let sysroot = base.join("sysroot");
    let tree = base.join("tree");
    let modules = tree.join("usr/lib/modules/6.1.0-pt-hostile");
    std::fs::create_dir_all(&modules).unwrap();
    std::fs::create_dir_all(tree.join("usr/etc")).unwrap();
    std::fs::create_dir_all(&sysroot).unwrap();
    std::fs::write(modules.join("vmlinuz"), "not a kernel\n").unwrap();
    std::fs::write(modules.join("initramfs.img"), "not an initramfs\n").unwrap();
    std::fs::write(tree.join("usr/etc/os-release"), "ID=testos\n").unwrap();
    std::fs::write(base.join("origin"), "[origin]\nrefspec=testos/stable\n").unwrap();
    let s = sysroot.to_str().unwrap();
    let ostree = |args: &[&str]| {
        let out = Command::new("ostree")
            .args(args)
            .env("OSTREE_SYSROOT_DEBUG", "mutable-deployments")
            .output()
            .expect("the ostree CLI runs");
        assert!(out.status.success(), "ostree {args:?}: {out:?}");
    };
    ostree(&["admin", "init-fs", "--modern", s]);
    ostree(&["admin", "os-init", &format!("--sysroot={s}"), "testos"]);
    ostree(&[
        &format!("--repo={s}/ostree/repo"),
        "commit",
        "--branch=testos/stable",
        "--bootable",
        &format!("--tree=dir={}", tree.display()),
        "-s",
        "base",
    ]);
    ostree(&[
        "admin",
        "deploy",
        &format!("--sysroot={s}"),
        "--os=testos",
        &format!("--origin-file={}", base.join("origin").display()),
        "--karg=root=UUID=1",
        "--karg=rw",
        "testos/stable",
    ]);
    std::fs::remove_dir_all(&tree).unwrap();
}

/// Runs one case; `Err` says what it got wrong. Returns how long the binary ran.
fn run(case: &Case) -> Result<Duration, String> {
    let sandbox = Sandbox::new();
    let args = (case.setup)(&sandbox);
    let before = sandbox.listing();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_passthru-image"));
    cmd.current_dir(&sandbox.path)
        .env_remove("PASSTHRU_ENGINE")
        // No rpm-ostree here: a live case that got past its checks would fail on it, not change a host.
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
        .args(&args)
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    match case.stdout {
        Stdout::Captured => cmd.stdout(Stdio::piped()),
        Stdout::Full => cmd.stdout(std::fs::File::create("/dev/full").unwrap()),
    };
    let started = Instant::now();
    let output = run_with_deadline(cmd, LIMIT + Duration::from_secs(5))?;
    let took = started.elapsed();
    let printed = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    let mut wrong = Vec::new();
    if output.status.code() != Some(case.code) {
        wrong.push(format!(
            "exit {:?}, expected {}",
            output.status.code(),
            case.code
        ));
    }
    if took > LIMIT {
        wrong.push(format!("took {took:?}"));
    }
    if printed.contains("panicked") || output.status.code() == Some(101) {
        wrong.push("panicked".into());
    }
    for want in &case.says {
        if !printed.contains(want) {
            wrong.push(format!("does not say {want:?}"));
        }
    }
    let after = sandbox.listing();
    if before != after {
        let changed: Vec<String> = after
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(v))
            .map(|(k, v)| format!("+ {k}: {v}"))
            .chain(
                before
                    .keys()
                    .filter(|k| !after.contains_key(*k))
                    .map(|k| format!("- {k}")),
            )
            .collect();
        wrong.push(format!("wrote: {}", changed.join("; ")));
    }
    if wrong.is_empty() {
        Ok(took)
    } else {
        let shown: String = printed.chars().take(1500).collect();
        Err(format!(
            "{}: {}\n  args: {args:?}\n  printed: {shown}",
            case.name,
            wrong.join(", ")
        ))
    }
}

/// Runs `cmd` to its end, or kills it at `deadline`.
fn run_with_deadline(mut cmd: Command, deadline: Duration) -> Result<Output, String> {
    let mut child = cmd.spawn().map_err(|e| format!("did not run: {e}"))?;
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            break child.wait().map_err(|e| e.to_string())?;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    })
}

/// Runs a class of cases, reporting every case that fails at once.
fn run_all(class: &str, cases: Vec<Case>) {
    let mut failures = Vec::new();
    let mut slowest = (Duration::ZERO, "");
    for case in &cases {
        match run(case) {
            Ok(took) => {
                eprintln!("{class}/{}: {took:?}", case.name);
                if took > slowest.0 {
                    slowest = (took, case.name);
                }
            }
            Err(why) => failures.push(why),
        }
    }
    eprintln!(
        "{class}: {} cases, slowest {} in {:?}",
        cases.len(),
        slowest.1,
        slowest.0
    );
    assert!(
        failures.is_empty(),
        "{} of {} {class} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn config_cases() -> Vec<Case> {
    let with = |body: &'static str| move |s: &Sandbox| args(&["--config", &s.config(body), "plan"]);
    vec![
        case(
            "config is a directory",
            2,
            &["--config", "a directory"],
            |s| args(&["--config", &s.dir("cfg.d"), "plan"]),
        ),
        case("config is a FIFO", 2, &["--config", "a FIFO"], |s| {
            args(&["--config", &s.fifo("cfg.toml"), "plan"])
        }),
        case(
            "config is a dangling link",
            2,
            &["--config", "does not exist"],
            |s| args(&["--config", &s.link("nowhere.toml", "cfg.toml"), "plan"]),
        ),
        case(
            "config is /dev/zero",
            2,
            &["--config", "/dev/zero", "a device"],
            |_| args(&["--config", "/dev/zero", "plan"]),
        ),
        case("config is not UTF-8", 2, &["--config", "not UTF-8"], |s| {
            args(&[
                "--config",
                &s.file("cfg.toml", b"[cpu]\nvendor = \"\xff\"\n"),
                "plan",
            ])
        }),
        case("config of 2 MiB", 2, &["--config", "larger than"], |s| {
            args(&["--config", &s.file("cfg.toml", "#".repeat(2 << 20)), "plan"])
        }),
        case(
            "config is empty path",
            2,
            &["--config", "does not exist"],
            |_| args(&["--config", "", "plan"]),
        ),
        case(
            "./passthru.toml is a directory",
            2,
            &["passthru.toml", "a directory"],
            |s| {
                s.dir("passthru.toml");
                args(&["plan"])
            },
        ),
        case(
            "./passthru.toml is a FIFO",
            2,
            &["passthru.toml", "a FIFO"],
            |s| {
                s.fifo("passthru.toml");
                args(&["plan"])
            },
        ),
        case(
            "./passthru.toml is a dangling link",
            2,
            &["passthru.toml", "does not exist"],
            |s| {
                s.link("gone.toml", "passthru.toml");
                args(&["plan"])
            },
        ),
        case(
            "./passthru.toml links to /dev/zero",
            2,
            &["passthru.toml", "a device"],
            |s| {
                s.link("/dev/zero", "passthru.toml");
                args(&["plan"])
            },
        ),
        case("not TOML", 2, &["cfg.toml", "TOML"], with("[cpu\n")),
        case(
            "unknown key",
            2,
            &["cpu", "vendr"],
            with("[cpu]\nvendr = \"intel\"\n"),
        ),
        case(
            "unknown table",
            2,
            &["unknown field", "vfi"],
            with("[vfi]\nids = []\n"),
        ),
        case(
            "device ID without device",
            2,
            &["vfio.ids[0]"],
            with("[vfio]\nids = [\"10de\"]\n"),
        ),
        case(
            "device ID not hex",
            2,
            &["vfio.ids[1]"],
            with("[vfio]\nids = [\"10de:1401\", \"10de:zzzz\"]\n"),
        ),
        case(
            "karg with whitespace",
            2,
            &["kargs.extra[0]", "whitespace"],
            with("[cpu]\nvendor = \"intel\"\n[kargs]\nextra = [\"iommu=pt quiet\"]\n"),
        ),
        case(
            "karg with a quote",
            2,
            &["kargs.extra[0]", "not allowed"],
            with("[cpu]\nvendor = \"intel\"\n[kargs]\nextra = [\"a=\\\"b\\\"\"]\n"),
        ),
        case(
            "karg with command substitution",
            2,
            &["kargs.extra[0]", "not allowed"],
            with("[cpu]\nvendor = \"intel\"\n[kargs]\nextra = [\"a=$(reboot)\"]\n"),
        ),
        case(
            "karg with a newline",
            2,
            &["kargs.extra[1]"],
            with("[cpu]\nvendor = \"intel\"\n[kargs]\nextra = [\"quiet\", \"a\\nb\"]\n"),
        ),
        case(
            "karg with a NUL",
            2,
            &["kargs.extra[0]"],
            with("[cpu]\nvendor = \"intel\"\n[kargs]\nextra = [\"a\\u0000b\"]\n"),
        ),
        case(
            "karg that is only a value",
            2,
            &["kargs.extra[0]", "no parameter name"],
            with("[cpu]\nvendor = \"intel\"\n[kargs]\nextra = [\"=1\"]\n"),
        ),
        case(
            "karg conflicting with the plan",
            2,
            &["kargs.extra[0]", "iommu=off turns the IOMMU off"],
            with("[cpu]\nvendor = \"intel\"\n[kargs]\nextra = [\"iommu=off\"]\n"),
        ),
        case(
            "karg conflicting whatever the spelling",
            2,
            &["kargs.extra[0]", "vfio_pci.ids"],
            with(
                "[cpu]\nvendor = \"intel\"\n[vfio]\nids = [\"10de:1401\"]\n[kargs]\nextra = [\"vfio-pci.ids=1002:67df\"]\n",
            ),
        ),
        case(
            "16 ACS IDs",
            2,
            &["acs-override.ids", "at most 15"],
            with(&*Box::leak(
                format!(
                    "[acs-override]\nids = [{}]\n",
                    (0..16)
                        .map(|i| format!("\"10de:{i:04x}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
                .into_boxed_str(),
            )),
        ),
        case(
            "vendor-reset over http",
            2,
            &["vendor-reset.git"],
            with(
                "[vendor-reset]\nenabled = true\ngit = \"http://example.org/v.git\"\ncommit = \"084881c6e9e11bdadaf05798e669568848e698a3\"\n",
            ),
        ),
        case(
            "vendor-reset commit by branch",
            2,
            &["vendor-reset.commit", "40"],
            with(
                "[vendor-reset]\nenabled = true\ngit = \"https://example.org/v.git\"\ncommit = \"master\"\n",
            ),
        ),
        case(
            "vendor-reset enabled = yes",
            2,
            &["vendor-reset.enabled"],
            with("[vendor-reset]\nenabled = \"yes\"\n"),
        ),
        case(
            "vendor-reset dkms.conf is a FIFO",
            2,
            &["vendor-reset.path", "dkms.conf", "a FIFO"],
            |s| {
                s.fifo("vr/dkms.conf");
                args(&[
                    "--config",
                    &s.config(
                        "[cpu]\nvendor = \"amd\"\n[vendor-reset]\nenabled = true\npath = \"vr\"\n",
                    ),
                    "plan",
                ])
            },
        ),
        case(
            "vendor-reset dkms.conf is /dev/zero",
            2,
            &["vendor-reset.path", "a device"],
            |s| {
                s.link("/dev/zero", "vr/dkms.conf");
                args(&[
                    "--config",
                    &s.config(
                        "[cpu]\nvendor = \"amd\"\n[vendor-reset]\nenabled = true\npath = \"vr\"\n",
                    ),
                    "plan",
                ])
            },
        ),
        case(
            "vendor-reset path holding a disk image",
            2,
            &[
                "vendor-reset.path",
                "disk.img",
                "the one with its dkms.conf",
            ],
            |s| {
                s.file(
                    "vr/dkms.conf",
                    "PACKAGE_NAME=\"vendor-reset\"\nPACKAGE_VERSION=\"0.1.1\"\n\
                     BUILT_MODULE_NAME[0]=\"${PACKAGE_NAME}\"\nMAKE[0]=\"make KDIR=${kernel_source_dir}\"\n\
                     DEST_MODULE_LOCATION[0]=\"/kernel/drivers/misc\"\n",
                );
                // Sparse: larger than any module source, read by nobody.
                let image = std::fs::File::create(s.at("vr/disk.img")).unwrap();
                image.set_len(300 << 20).unwrap();
                args(&[
                    "--config",
                    &s.config(
                        "[cpu]\nvendor = \"amd\"\n[vendor-reset]\nenabled = true\npath = \"vr\"\n",
                    ),
                    "generate",
                    "-o",
                    &s.at("out"),
                ])
            },
        ),
        case(
            "vendor-reset path missing",
            2,
            &["vendor-reset.path", "dkms.conf"],
            with(
                "[cpu]\nvendor = \"amd\"\n[vendor-reset]\nenabled = true\npath = \"/nonexistent/vr\"\n",
            ),
        ),
        case(
            "ACS packages directory missing",
            2,
            &["acs-override.packages"],
            with(
                "[cpu]\nvendor = \"amd\"\n[acs-override]\nenabled = true\npackages = \"/nonexistent/rpms\"\n",
            ),
        ),
        case(
            "ACS package that is a FIFO",
            2,
            &["acs-override.packages", "a FIFO"],
            |s| {
                s.fifo("rpms/kernel-core-6.11.4-301.acs.fc41.x86_64.rpm");
                args(&["--config", &s.config("[cpu]\nvendor = \"amd\"\n[acs-override]\nenabled = true\npackages = \"rpms\"\n"), "generate", "-o", &s.at("out")])
            },
        ),
        case(
            "ACS repo over http",
            2,
            &["acs-override.repo", "https"],
            with("[acs-override]\nenabled = true\nrepo = \"http://example.org/acs.repo\"\n"),
        ),
        case(
            "base with a space",
            2,
            &["image.base"],
            with("[image]\nbase = \"quay.io/fedora/fedora bootc:44\"\n"),
        ),
        case(
            "tag in capitals",
            2,
            &["image.tag"],
            with("[image]\ntag = \"localhost/Passthru:1\"\n"),
        ),
        case(
            "digest that is not sha256",
            2,
            &["image.digest"],
            with("[image]\ndigest = \"md5:abc\"\n"),
        ),
        case(
            "CPU vendor arm",
            2,
            &["cpu.vendor"],
            with("[cpu]\nvendor = \"arm\"\n"),
        ),
        case(
            "GPU vendor matrox",
            2,
            &["gpu.vendors[0]"],
            with("[gpu]\nvendors = [\"matrox\"]\n"),
        ),
        case(
            "switch that is a number",
            2,
            &["cpu.npt"],
            with("[cpu]\nnpt = 1\n"),
        ),
    ]
}

fn flag_cases() -> Vec<Case> {
    let intel = |s: &Sandbox| s.config("[cpu]\nvendor = \"intel\"\n");
    vec![
        case(
            "--root missing",
            2,
            &["--root", "not an existing directory"],
            |_| args(&["--root", "/nonexistent/host", "groups"]),
        ),
        case("--root is a file", 2, &["--root"], |s| {
            args(&["--root", &s.file("host", "x"), "groups"])
        }),
        case("--root without sys", 2, &["--root", "no sys/"], |s| {
            args(&["--root", &s.dir("empty"), "groups"])
        }),
        case("--vfio-ids without device", 2, &["--vfio-ids"], move |s| {
            args(&["--config", &intel(s), "plan", "--vfio-ids", "10de"])
        }),
        case(
            "--vfio-ids with a shell word",
            2,
            &["--vfio-ids"],
            move |s| {
                args(&[
                    "--config",
                    &intel(s),
                    "plan",
                    "--vfio-ids",
                    "10de:1401,$(id)",
                ])
            },
        ),
        case("--device that is no address", 2, &["--device"], |s| {
            args(&["--root", &s.host(), "detect", "--device", "0000:01:00"])
        }),
        case(
            "--device that is not on the host",
            2,
            &["--device", "no PCI device at 0000:09:00.0"],
            |s| args(&["--root", &s.host(), "detect", "--device", "0000:09:00.0"]),
        ),
        case("--tag in capitals", 2, &["--tag"], move |s| {
            args(&["--config", &intel(s), "plan", "--tag", "Local/X:1"])
        }),
        case("--base with a space", 2, &["--base"], move |s| {
            args(&["--config", &intel(s), "plan", "--base", "quay.io/a b"])
        }),
        case("--base that is an option", 2, &["--base"], move |s| {
            args(&["--config", &intel(s), "plan", "--base=--privileged"])
        }),
        case("--label that is an option", 2, &["--label"], move |s| {
            args(&["--config", &intel(s), "build", "--label=-a=b"])
        }),
        case("--label with a newline", 2, &["--label"], move |s| {
            args(&["--config", &intel(s), "build", "--label", "k=a\nb"])
        }),
        case("--engine unknown", 2, &["--engine"], move |s| {
            args(&["--config", &intel(s), "build", "--engine", "rkt"])
        }),
        case("--timeout 0", 2, &["--timeout"], |_| {
            args(&["test-boot", "localhost/x:1", "--timeout", "0"])
        }),
        case(
            "--capture onto a file",
            2,
            &["--capture", "not an empty directory"],
            |s| {
                args(&[
                    "test-boot",
                    "localhost/x:1",
                    "--iommu",
                    "intel",
                    "--capture",
                    &s.file("cap", "x"),
                ])
            },
        ),
        case(
            "--capture onto a symlink",
            2,
            &["--capture", "symlink"],
            |s| {
                s.dir("empty");
                args(&[
                    "test-boot",
                    "localhost/x:1",
                    "--iommu",
                    "intel",
                    "--capture",
                    &s.link("empty", "cap"),
                ])
            },
        ),
        case(
            "--sysroot that is no sysroot (apply)",
            2,
            &["--sysroot", "not an ostree sysroot"],
            |s| {
                let mut a = s.live_host();
                a.extend(args(&["apply", "--sysroot", &s.dir("plain")]));
                a
            },
        ),
        case(
            "--sysroot that is no sysroot (revert)",
            2,
            &["--sysroot", "not an ostree sysroot"],
            |s| {
                let mut a = s.revert_host();
                a.extend(args(&["revert", "--sysroot", &s.dir("plain")]));
                a
            },
        ),
        case("--json without --dry-run", 2, &["--dry-run"], |_| {
            args(&["apply", "--json"])
        }),
        case("unknown command", 2, &["unrecognized subcommand"], |_| {
            args(&["format-disk"])
        }),
    ]
}

/// `--root host COMMAND` after `break_it` changed the copied host tree.
fn host_case(
    name: &'static str,
    command: &'static [&'static str],
    says: &[&'static str],
    break_it: impl Fn(&Sandbox) + Sync + 'static,
) -> Case {
    case(name, 2, says, move |s| {
        let root = s.host();
        break_it(s);
        let mut a = args(&["--root", &root]);
        if command[0] == "plan" || command[0] == "doctor" {
            // Plans here read the CPU vendor from the tree: no config pins it.
            a.extend(args(&[
                "--config",
                &s.config("[vfio]\nids = [\"10de:1401\"]\n"),
            ]));
        }
        a.extend(args(command));
        a
    })
}

fn host_tree_cases() -> Vec<Case> {
    const PLAN: &[&str] = &["plan"];
    const GROUPS_JSON: &[&str] = &["groups", "--json"];
    const DETECT: &[&str] = &["detect"];
    const DOCTOR: &[&str] = &["doctor"];
    let gpu = |attr: &str| format!("{GPU_DIR}/{attr}");
    vec![
        host_case(
            "cpuinfo missing",
            PLAN,
            &["proc/cpuinfo", "does not exist"],
            |s| s.remove("host/proc/cpuinfo"),
        ),
        host_case(
            "cpuinfo is a FIFO",
            PLAN,
            &["proc/cpuinfo", "a FIFO"],
            |s| {
                s.fifo("host/proc/cpuinfo");
            },
        ),
        host_case(
            "cpuinfo is a FIFO (detect)",
            DETECT,
            &["proc/cpuinfo", "a FIFO"],
            |s| {
                s.fifo("host/proc/cpuinfo");
            },
        ),
        host_case(
            "cpuinfo is a /dev/zero node",
            PLAN,
            &["proc/cpuinfo", "a device"],
            |s| {
                s.char_device("host/proc/cpuinfo", 1, 5);
            },
        ),
        host_case(
            "cpuinfo links to /dev/zero",
            PLAN,
            &["proc/cpuinfo", "leads outside"],
            |s| {
                s.link("/dev/zero", "host/proc/cpuinfo");
            },
        ),
        host_case(
            "cpuinfo links up and out",
            PLAN,
            &["proc/cpuinfo", "leads outside"],
            |s| {
                s.link("../../../../../../../../../etc/passwd", "host/proc/cpuinfo");
            },
        ),
        host_case(
            "cpuinfo is not UTF-8",
            PLAN,
            &["proc/cpuinfo", "not UTF-8"],
            |s| {
                s.file("host/proc/cpuinfo", b"vendor_id\t: Genuine\xffIntel\n");
            },
        ),
        host_case(
            "cpuinfo of 20 MiB",
            PLAN,
            &["proc/cpuinfo", "larger than"],
            |s| {
                s.file(
                    "host/proc/cpuinfo",
                    "processor\t: 0\n".repeat(20 << 20 >> 4),
                );
            },
        ),
        host_case(
            "cpuinfo is a directory",
            PLAN,
            &["proc/cpuinfo", "a directory"],
            |s| {
                s.remove("host/proc/cpuinfo");
                s.dir("host/proc/cpuinfo");
            },
        ),
        host_case("/proc links out", PLAN, &["proc", "leads outside"], |s| {
            s.remove("host/proc");
            s.link("/proc", "host/proc");
        }),
        host_case(
            "cmdline is a FIFO",
            DOCTOR,
            &["proc/cmdline", "a FIFO"],
            |s| {
                s.fifo("host/proc/cmdline");
            },
        ),
        host_case(
            "cmdline missing",
            DOCTOR,
            &["proc/cmdline", "does not exist"],
            |s| s.remove("host/proc/cmdline"),
        ),
        host_case(
            "cmdline is not UTF-8",
            DOCTOR,
            &["proc/cmdline", "not UTF-8"],
            |s| {
                s.file("host/proc/cmdline", b"ro \xfe\n");
            },
        ),
        host_case(
            "modules is a FIFO",
            DOCTOR,
            &["proc/modules", "a FIFO"],
            |s| {
                s.fifo("host/proc/modules");
            },
        ),
        host_case(
            "modules of 2 MiB",
            DOCTOR,
            &["proc/modules", "larger than"],
            |s| {
                s.file("host/proc/modules", "vfio 1 0 - Live 0x0\n".repeat(110_000));
            },
        ),
        host_case(
            "vendor is a FIFO",
            GROUPS_JSON,
            &["0000:01:00.0/vendor", "a FIFO"],
            move |s| {
                s.fifo(&gpu("vendor"));
            },
        ),
        host_case(
            "vendor is a FIFO (doctor)",
            DOCTOR,
            &["0000:01:00.0/vendor", "a FIFO"],
            move |s| {
                s.fifo(&gpu("vendor"));
            },
        ),
        host_case(
            "vendor is not UTF-8",
            GROUPS_JSON,
            &["0000:01:00.0/vendor", "not UTF-8"],
            move |s| {
                s.file(&gpu("vendor"), b"0x10\xde\n");
            },
        ),
        host_case(
            "vendor missing",
            GROUPS_JSON,
            &["0000:01:00.0/vendor", "does not exist"],
            move |s| s.remove(&gpu("vendor")),
        ),
        host_case(
            "vendor is a name",
            GROUPS_JSON,
            &["0000:01:00.0/vendor", "16-bit hex"],
            move |s| {
                s.file(&gpu("vendor"), "nvidia\n");
            },
        ),
        host_case(
            "class of 1 MiB",
            GROUPS_JSON,
            &["0000:01:00.0/class", "larger than"],
            move |s| {
                s.file(&gpu("class"), "0".repeat(1 << 20));
            },
        ),
        host_case(
            "class links to /dev/urandom",
            GROUPS_JSON,
            &["0000:01:00.0/class", "leads outside"],
            move |s| {
                s.link("/dev/urandom", &gpu("class"));
            },
        ),
        host_case(
            "boot_vga of 2",
            GROUPS_JSON,
            &["boot_vga", "0 or 1"],
            move |s| {
                s.file(&gpu("boot_vga"), "2\n");
            },
        ),
        host_case(
            "reset_method is a FIFO",
            GROUPS_JSON,
            &["reset_method", "a FIFO"],
            move |s| {
                s.fifo(&gpu("reset_method"));
            },
        ),
        host_case(
            "driver is a file, not a link",
            GROUPS_JSON,
            &["0000:01:00.0/driver", "not a symlink"],
            move |s| {
                s.file(&gpu("driver"), "nvidia\n");
            },
        ),
        host_case(
            "iommu_group link names no number",
            GROUPS_JSON,
            &["iommu_group", "numbered group"],
            move |s| {
                s.link("../../../../kernel/iommu_groups/one", &gpu("iommu_group"));
            },
        ),
        host_case(
            "device link to /etc",
            GROUPS_JSON,
            &["0000:01:00.0", "leads outside"],
            |s| {
                s.link("/etc", &format!("{DEVICES}/{GPU}"));
            },
        ),
        host_case(
            "device link up and out",
            GROUPS_JSON,
            &["0000:01:00.0", "leads outside"],
            |s| {
                s.link(
                    "../../../../../../../../../../sys/devices/pci0000:00/0000:00:00.0",
                    &format!("{DEVICES}/{GPU}"),
                );
            },
        ),
        host_case(
            "device link to this machine's /sys",
            GROUPS_JSON,
            &["0000:01:00.0", "leads outside"],
            |s| {
                s.link("/sys/devices/system/cpu", &format!("{DEVICES}/{GPU}"));
            },
        ),
        host_case(
            "device link to this machine's /sys (doctor)",
            DOCTOR,
            &["0000:01:00.0", "leads outside"],
            |s| {
                s.link("/sys/devices/system/cpu", &format!("{DEVICES}/{GPU}"));
            },
        ),
        host_case(
            "device entry that is no address",
            GROUPS_JSON,
            &["sys/bus/pci/devices", "not a PCI address"],
            |s| {
                s.dir(&format!("{DEVICES}/nvidia"));
            },
        ),
        host_case(
            "device entry in capitals",
            GROUPS_JSON,
            &["sys/bus/pci/devices", "0000:0A:00.0"],
            |s| {
                s.link(
                    "../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0",
                    &format!("{DEVICES}/0000:0A:00.0"),
                );
            },
        ),
        host_case(
            "devices directory is a FIFO",
            GROUPS_JSON,
            &["sys/bus/pci/devices"],
            |s| {
                s.fifo(DEVICES);
            },
        ),
        host_case(
            "group +13",
            GROUPS_JSON,
            &["iommu_groups", "\"+13\""],
            |s| {
                s.dir(&format!("{GROUPS}/+13/devices"));
            },
        ),
        host_case(
            "group 0001 beside group 1",
            GROUPS_JSON,
            &["iommu_groups", "\"0001\""],
            |s| {
                s.dir(&format!("{GROUPS}/0001/devices"));
            },
        ),
        host_case(
            "group abc",
            GROUPS_JSON,
            &["iommu_groups", "\"abc\""],
            |s| {
                s.dir(&format!("{GROUPS}/abc/devices"));
            },
        ),
        host_case(
            "group devices is a file",
            GROUPS_JSON,
            &["iommu_groups/1/devices", "not a directory"],
            |s| {
                s.remove(&format!("{GROUPS}/1/devices"));
                s.file(&format!("{GROUPS}/1/devices"), "0000:01:00.0\n");
            },
        ),
        host_case(
            "group without devices",
            GROUPS_JSON,
            &["iommu_groups/1/devices", "missing"],
            |s| {
                s.remove(&format!("{GROUPS}/1/devices"));
            },
        ),
        host_case(
            "device in two groups",
            GROUPS_JSON,
            &["0000:01:00.0 is in group 1 and in group 9"],
            |s| {
                s.link(
                    "../../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0",
                    &format!("{GROUPS}/9/devices/{GPU}"),
                );
            },
        ),
        host_case(
            "group member in capitals",
            GROUPS_JSON,
            &["iommu_groups/1/devices", "\"0000:0A:00.0\""],
            |s| {
                s.link(
                    "../../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0",
                    &format!("{GROUPS}/1/devices/0000:0A:00.0"),
                );
            },
        ),
        host_case(
            "iommu_groups links out",
            GROUPS_JSON,
            &["iommu_groups", "leads outside"],
            |s| {
                s.remove(GROUPS);
                s.link("/sys/kernel/iommu_groups", GROUPS);
            },
        ),
    ]
}

/// Inputs that are only huge: every command ends in time, with short messages.
fn huge_host_tree_cases() -> Vec<Case> {
    vec![
        case(
            "8,000 GPUs in one group (groups)",
            0,
            &["\"sharing_count\": 7999"],
            |s| args(&["--root", &s.watch(many_gpus()), "groups", "--json"]),
        ),
        case(
            "8,000 GPUs in one group (detect)",
            0,
            &["and 7983 more", "and 7992 more"],
            |s| args(&["--root", &s.watch(many_gpus()), "detect"]),
        ),
        case(
            "8,000 GPUs in one group (doctor)",
            1,
            &["bound to a host driver", "and 7991 more", "checks failed"],
            |s| {
                let root = s.watch(many_gpus());
                args(&[
                    "--root",
                    &root,
                    "--config",
                    // The twins are the point here: the plan may take them all.
                    &s.config(
                        "[cpu]\nvendor = \"amd\"\n[vfio]\nids = [\"10de:1401\"]\n\
                         [accept-risk]\nidentical-devices = true\n",
                    ),
                    "doctor",
                ])
            },
        ),
    ]
}

/// A host with 8,000 identical GPUs (10de:1401, each its own slot, bound to nouveau) all in IOMMU group 1.
fn many_gpus() -> &'static Path {
    static TREE: OnceLock<PathBuf> = OnceLock::new();
    TREE.get_or_init(|| cached_tree("hostile-8000-gpus-v1", make_many_gpus))
}

fn make_many_gpus(top: &Path) {
    let write = |rel: &str, text: &str| {
        let path = top.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "proc/cpuinfo",
        "vendor_id\t: AuthenticAMD\nflags\t\t: svm\n",
    );
    write("proc/cmdline", "ro\n");
    for dir in [
        "sys/bus/pci/drivers/nouveau",
        "sys/bus/pci/devices",
        "sys/kernel/iommu_groups/1/devices",
    ] {
        std::fs::create_dir_all(top.join(dir)).unwrap();
    }
    for i in 0..8000 {
        let address = format!("0000:{:02x}:{:02x}.0", i / 32, i % 32);
        let dir = top.join(format!("sys/devices/pci0000:00/{address}"));
        std::fs::create_dir_all(&dir).unwrap();
        for (attr, value) in [
            ("vendor", "0x10de\n"),
            ("device", "0x1401\n"),
            ("class", "0x030000\n"),
        ] {
            std::fs::write(dir.join(attr), value).unwrap();
        }
        symlink("../../../bus/pci/drivers/nouveau", dir.join("driver")).unwrap();
        symlink(
            format!("../../../devices/pci0000:00/{address}"),
            top.join(format!("sys/bus/pci/devices/{address}")),
        )
        .unwrap();
        symlink(
            format!("../../../../devices/pci0000:00/{address}"),
            top.join(format!("sys/kernel/iommu_groups/1/devices/{address}")),
        )
        .unwrap();
    }
}

/// `revert` on a live host whose state file is `json`.
fn state_case(name: &'static str, says: &[&'static str], json: &'static str) -> Case {
    case(name, 2, says, move |s| {
        let mut a = s.revert_host();
        s.state(json);
        a.extend(args(&["revert", "--sysroot", &s.at("sysroot")]));
        a
    })
}

const NO_KARGS: &str = r#""kargs_appended":[],"kargs_deleted":[],"initramfs_enabled":false"#;

fn state_cases() -> Vec<Case> {
    let files = |entry: &'static str| -> &'static str {
        Box::leak(format!(r#"{{{NO_KARGS},"kernel":null,"files":[{entry}]}}"#).into_boxed_str())
    };
    let kargs = |key: &str, list: &str| -> &'static str {
        let body = NO_KARGS.replace(&format!(r#""{key}":[]"#), &format!(r#""{key}":{list}"#));
        Box::leak(format!(r#"{{{body},"kernel":null,"files":[]}}"#).into_boxed_str())
    };
    let kernel = |change: &str| -> &'static str {
        Box::leak(format!(r#"{{{NO_KARGS},"kernel":{change},"files":[]}}"#).into_boxed_str())
    };
    let ours = files(
        r#"{"path":"/etc/modprobe.d/50-passthru-vfio.conf","backup":"/etc/passthru-image/backup/etc/modprobe.d/50-passthru-vfio.conf"}"#,
    );
    vec![
        state_case("file ../../etc/passwd", &["live-state.json: files[0].path", "not a file apply writes"], files(r#"{"path":"../../etc/passwd","backup":null}"#)),
        state_case("file /etc/passwd", &["files[0].path", "/etc/passwd"], files(r#"{"path":"/etc/passwd","backup":null}"#)),
        state_case("file of another drop-in", &["files[0].path"], files(r#"{"path":"/etc/modprobe.d/blacklist.conf","backup":null}"#)),
        state_case("file recorded twice", &["files[1].path", "recorded twice"], Box::leak(format!(r#"{{{NO_KARGS},"kernel":null,"files":[{{"path":"{MODPROBE}","backup":null}},{{"path":"{MODPROBE}","backup":null}}]}}"#).into_boxed_str())),
        state_case("backup /etc/shadow", &["files[0].backup", "/etc/passthru-image/backup/etc/modprobe.d"], files(r#"{"path":"/etc/modprobe.d/50-passthru-vfio.conf","backup":"/etc/shadow"}"#)),
        state_case("backup relative", &["files[0].backup"], files(r#"{"path":"/etc/dracut.conf.d/50-passthru-vfio.conf","backup":"x"}"#)),
        state_case("backup of the other file", &["files[0].backup"], files(r#"{"path":"/etc/dracut.conf.d/50-passthru-vfio.conf","backup":"/etc/passthru-image/backup/etc/modprobe.d/50-passthru-vfio.conf"}"#)),
        state_case("karg that is an rpm-ostree option", &["kargs_appended[0]", "begins with `-`"], kargs("kargs_appended", r#"["--unchanged-exit-77"]"#)),
        state_case("karg -x", &["kargs_deleted[0]", "begins with `-`"], kargs("kargs_deleted", r#"["-x"]"#)),
        state_case("karg with a space", &["kargs_appended[1]", "not exactly one"], kargs("kargs_appended", r#"["iommu=pt","a b"]"#)),
        state_case("karg with a newline", &["kargs_appended[0]", "not exactly one kernel argument"], kargs("kargs_appended", r#"["a\nb"]"#)),
        state_case("karg with an open quote", &["kargs_deleted[0]", "unbalanced double quote"], kargs("kargs_deleted", r#"["dyndbg=\"file x"]"#)),
        state_case("empty karg", &["kargs_deleted[0]", "not exactly one kernel argument"], kargs("kargs_deleted", r#"[""]"#)),
        state_case("karg of 5000 bytes", &["kargs_appended[0]", "5002-byte argument"], Box::leak(kargs("kargs_appended", &format!(r#"["a={}"]"#, "x".repeat(5000))).to_owned().into_boxed_str())),
        state_case("kernel package that is an option", &["kernel.packages[0]"], kernel(r#"{"kind":"replace","packages":["/srv/-rf.rpm"]}"#)),
        state_case("kernel package that is no rpm", &["kernel.packages[0]"], kernel(r#"{"kind":"replace","packages":["/etc/passwd"]}"#)),
        state_case("kernel package in an option directory", &["kernel.install[0]"], kernel(r#"{"kind":"remove-install","remove":["kernel","kernel-core","kernel-modules","kernel-modules-core","kernel-modules-extra"],"install":["--repo=/x/kernel-acs-6.1-1.x86_64.rpm"]}"#)),
        state_case("kernel removal of glibc", &["kernel.remove", "glibc"], kernel(r#"{"kind":"remove-install","remove":["glibc"],"install":[]}"#)),
        state_case("kernel of another kind", &["live-state.json: kernel.kind", "unknown variant"], kernel(r#"{"kind":"rm-rf","packages":[]}"#)),
        state_case("stale marker that is a path", &["initramfs_stale_in"], Box::leak(format!(r#"{{{NO_KARGS},"kernel":null,"files":[],"initramfs_stale_in":"../../x"}}"#).into_boxed_str())),
        state_case("not JSON", &["live-state.json", "not what apply records"], "kargs_appended = []\n"),
        state_case("unknown field", &["live-state.json", "unknown field"], Box::leak(format!(r#"{{{NO_KARGS},"kernel":null,"files":[],"run":"rm -rf /"}}"#).into_boxed_str())),
        case("state file is a FIFO", 2, &["live-state.json", "a FIFO"], |s| {
            let mut a = s.revert_host();
            s.fifo(STATE);
            a.extend(args(&["revert", "--sysroot", &s.at("sysroot")]));
            a
        }),
        case("state file of 2 MiB", 2, &["live-state.json", "larger than"], |s| {
            let mut a = s.revert_host();
            s.state(&" ".repeat(2 << 20));
            a.extend(args(&["revert", "--sysroot", &s.at("sysroot")]));
            a
        }),
        case("state file links to /etc/passwd", 2, &["live-state.json", "leads outside"], |s| {
            let mut a = s.revert_host();
            s.link("/etc/passwd", STATE);
            a.extend(args(&["revert", "--sysroot", &s.at("sysroot")]));
            a
        }),
        case("state directory links inside the root", 2, &["etc/passthru-image", "is a symlink"], move |s| {
            let mut a = s.revert_host();
            s.file("host/srv/elsewhere/live-state.json", ours);
            s.link("../srv/elsewhere", "host/etc/passthru-image");
            a.extend(args(&["revert", "--sysroot", &s.at("sysroot")]));
            a
        }),
        case("restore into a symlinked modprobe.d", 2, &["etc/modprobe.d", "is a symlink"], move |s| {
            let mut a = s.revert_host();
            s.state(ours);
            s.file("host/etc/passthru-image/backup/etc/modprobe.d/50-passthru-vfio.conf", "mine\n");
            s.dir("elsewhere");
            s.link(&s.at("elsewhere"), "host/etc/modprobe.d");
            a.extend(args(&["revert", "--sysroot", &s.at("sysroot")]));
            a
        }),
        case("backup directory is a symlink", 2, &["etc/passthru-image/backup", "is a symlink"], move |s| {
            let mut a = s.revert_host();
            s.state(ours);
            s.file("host/srv/etc/modprobe.d/50-passthru-vfio.conf", "mine\n");
            s.link("../../srv", "host/etc/passthru-image/backup");
            a.extend(args(&["revert", "--sysroot", &s.at("sysroot")]));
            a
        }),
        case("apply reads the state file too", 2, &["kargs_appended[0]"], move |s| {
            let mut a = s.live_host();
            s.state(kargs("kargs_appended", r#"["--delete=root"]"#));
            a.extend(args(&["apply", "--dry-run", "--sysroot", &s.at("sysroot")]));
            a
        }),
    ]
}

/// `apply` on a live host with a real sysroot after `break_it` changed the host's /etc.
fn live_case(
    name: &'static str,
    extra: &'static [&'static str],
    says: &[&'static str],
    break_it: impl Fn(&Sandbox) + Sync + 'static,
) -> Case {
    case(name, 2, says, move |s| {
        let mut a = s.live_host_with_sysroot();
        break_it(s);
        a.extend(args(&["apply", "--sysroot", &s.at("sysroot")]));
        a.extend(args(extra));
        a
    })
}

fn live_tree_cases() -> Vec<Case> {
    let etc = |path: &str| format!("host{path}");
    vec![
        live_case(
            "modprobe.d links out of the root",
            &[],
            &["etc/modprobe.d", "leads outside"],
            |s| {
                s.dir("elsewhere");
                s.link(&s.at("elsewhere"), "host/etc/modprobe.d");
            },
        ),
        live_case(
            "modprobe.d links inside the root",
            &[],
            &["etc/modprobe.d", "is a symlink"],
            |s| {
                s.dir("host/srv/modprobe");
                s.link("../srv/modprobe", "host/etc/modprobe.d");
            },
        ),
        live_case(
            "dracut.conf.d links inside the root (dry run)",
            &["--dry-run"],
            &["etc/dracut.conf.d", "is a symlink"],
            |s| {
                s.dir("host/srv/dracut");
                s.link("../srv/dracut", "host/etc/dracut.conf.d");
            },
        ),
        live_case(
            "/etc is a symlink",
            &[],
            &["host/etc", "is a symlink"],
            |s| {
                s.remove("host/etc");
                s.dir("host/srv/etc");
                s.link("srv/etc", "host/etc");
            },
        ),
        live_case(
            "state directory is a symlink",
            &[],
            &["etc/passthru-image", "is a symlink"],
            |s| {
                s.dir("host/srv/state");
                s.link("../srv/state", "host/etc/passthru-image");
            },
        ),
        live_case(
            "drop-in is a directory",
            &[],
            &["50-passthru-vfio.conf", "a directory"],
            move |s| {
                s.dir(&etc(MODPROBE));
            },
        ),
        live_case(
            "drop-in is a FIFO",
            &[],
            &["50-passthru-vfio.conf", "a FIFO"],
            move |s| {
                s.fifo(&etc(DRACUT));
            },
        ),
        live_case(
            "drop-in links to /etc/passwd",
            &[],
            &["50-passthru-vfio.conf", "leads outside"],
            move |s| {
                s.link("/etc/passwd", &etc(MODPROBE));
            },
        ),
        live_case(
            "state file is a directory",
            &[],
            &["live-state.json", "a directory"],
            |s| {
                s.dir(STATE);
            },
        ),
        live_case(
            "backup place is a directory",
            &[],
            &[
                "backup/etc/modprobe.d/50-passthru-vfio.conf",
                "is a directory",
            ],
            move |s| {
                s.file(&etc(MODPROBE), "options snd_hda_intel power_save=0\n");
                s.dir("host/etc/passthru-image/backup/etc/modprobe.d/50-passthru-vfio.conf");
            },
        ),
    ]
}

fn output_cases() -> Vec<Case> {
    let generate = |s: &Sandbox, out: &str, force: bool| {
        let mut a = args(&[
            "--config",
            &s.config("[cpu]\nvendor = \"intel\"\n"),
            "generate",
            "-o",
            out,
        ]);
        if force {
            a.push("--force".into());
        }
        a
    };
    let mut cases = vec![
        case(
            "generate onto a symlink to a directory",
            2,
            &["--output", "is a symlink"],
            move |s| {
                s.dir("real");
                let out = s.link("real", "out");
                generate(s, &out, false)
            },
        ),
        case(
            "generate onto a symlink with --force",
            2,
            &["--output", "is a symlink"],
            move |s| {
                s.file("real/mine", "x");
                let out = s.link("real", "out");
                generate(s, &out, true)
            },
        ),
        case(
            "generate onto a dangling symlink",
            2,
            &["--output", "is a symlink"],
            move |s| {
                let out = s.link("gone", "out");
                generate(s, &out, false)
            },
        ),
        case(
            "generate onto a file",
            2,
            &["--output", "not a directory"],
            move |s| {
                let out = s.file("out", "x");
                generate(s, &out, false)
            },
        ),
        case(
            "generate onto /dev/null",
            2,
            &["--output", "not a directory"],
            move |s| generate(s, "/dev/null", true),
        ),
        case(
            "generate into a foreign directory",
            2,
            &["--output", "not empty"],
            move |s| {
                s.file("out/notes.txt", "mine");
                generate(s, &s.at("out"), false)
            },
        ),
        case(
            "generate --force where a folder stands for the Containerfile",
            2,
            &["--output", "out/Containerfile", "is a directory"],
            move |s| {
                s.file("out/notes.txt", "mine");
                s.dir("out/Containerfile");
                generate(s, &s.at("out"), true)
            },
        ),
        case(
            "generate --force where a file stands for layers/",
            2,
            &["--output", "out/layers", "not a directory"],
            move |s| {
                s.file("out/Containerfile", "FROM mine\n");
                s.file("out/layers", "mine");
                generate(s, &s.at("out"), true)
            },
        ),
        case(
            "generate --force with layers/ linked elsewhere",
            2,
            &["--output", "out/layers", "is a symlink"],
            move |s| {
                s.file("out/Containerfile", "FROM mine\n");
                s.dir("elsewhere");
                s.link(&s.at("elsewhere"), "out/layers");
                generate(s, &s.at("out"), true)
            },
        ),
        case(
            "generate --force with scripts/ linked elsewhere",
            2,
            &["--output", "out/scripts", "is a symlink"],
            move |s| {
                s.file("out/Containerfile", "FROM mine\n");
                s.dir("elsewhere");
                s.link("../elsewhere", "out/scripts");
                generate(s, &s.at("out"), true)
            },
        ),
        case(
            "generate into a missing parent",
            2,
            &["--output", "is not a directory"],
            move |s| generate(s, &s.at("no/such/out"), false),
        ),
        case("generate to an empty path", 2, &["--output"], move |s| {
            generate(s, "", false)
        }),
        case(
            "build --context onto a symlink",
            2,
            &["--output", "is a symlink"],
            |s| {
                s.dir("real");
                let out = s.link("real", "ctx");
                args(&[
                    "--config",
                    &s.config("[cpu]\nvendor = \"intel\"\n"),
                    "build",
                    "--context",
                    &out,
                    "--pull",
                    "never",
                ])
            },
        ),
        case(
            "detect --write onto an existing file",
            2,
            &["--write", "exists"],
            |s| {
                let root = s.host();
                args(&[
                    "--root",
                    &root,
                    "detect",
                    "--write",
                    &s.file("passthru.toml.new", "mine\n"),
                ])
            },
        ),
        case(
            "detect --write into a missing directory",
            2,
            &["--write", "existing directory"],
            |s| {
                let root = s.host();
                args(&[
                    "--root",
                    &root,
                    "detect",
                    "--write",
                    &s.at("no/dir/passthru.toml"),
                ])
            },
        ),
        case(
            "detect --write --force onto a directory",
            2,
            &["--write", "is a directory"],
            |s| {
                let root = s.host();
                args(&[
                    "--root",
                    &root,
                    "detect",
                    "--write",
                    &s.dir("conf"),
                    "--force",
                ])
            },
        ),
        case("detect --write to an empty path", 2, &["--write"], |s| {
            let root = s.host();
            args(&["--root", &root, "detect", "--write", ""])
        }),
        case(
            "test-boot --capture into a non-empty directory",
            2,
            &["--capture", "not an empty directory"],
            |s| {
                s.file("cap/x", "mine");
                args(&[
                    "test-boot",
                    "localhost/x:1",
                    "--iommu",
                    "amd",
                    "--capture",
                    &s.at("cap"),
                ])
            },
        ),
    ];
    for (name, command) in [
        ("plan > /dev/full", &["--config", "CONFIG", "plan"][..]),
        (
            "plan --json > /dev/full",
            &["--config", "CONFIG", "plan", "--json"][..],
        ),
        (
            "groups --json > /dev/full",
            &["--root", "HOST", "groups", "--json"][..],
        ),
        ("detect > /dev/full", &["--root", "HOST", "detect"][..]),
    ] {
        let mut full = case(
            name,
            1,
            &["writing to standard output", "No space left on device"],
            move |s| {
                let mut a = args(command);
                for word in a.iter_mut() {
                    if word == "CONFIG" {
                        *word = s.config("[cpu]\nvendor = \"intel\"\n");
                    } else if word == "HOST" {
                        *word = s.host();
                    }
                }
                a
            },
        );
        full.stdout = Stdout::Full;
        cases.push(full);
    }
    cases
}

#[test]
fn hostile_configs() {
    run_all("config", config_cases());
}

#[test]
fn hostile_flags() {
    run_all("flags", flag_cases());
}

#[test]
fn hostile_host_trees() {
    run_all("host-tree", host_tree_cases());
}

#[test]
fn hostile_huge_host_trees() {
    run_all("huge-host-tree", huge_host_tree_cases());
}

#[test]
fn hostile_state_files() {
    run_all("state", state_cases());
}

#[test]
fn hostile_live_trees() {
    run_all("live-tree", live_tree_cases());
}

#[test]
fn hostile_output_paths() {
    run_all("output", output_cases());
}

/// The whole planned command line must fit what an x86 kernel keeps (2048 bytes with the terminating NUL), and
/// planning stays near linear: 20,000 extras took half a minute before `Kargs::push` was rewritten.
#[test]
fn hostile_command_lines() {
    let many: String = (0..20_000)
        .map(|i| format!("\"pt{i}=1\""))
        .collect::<Vec<_>>()
        .join(", ");
    let many: &'static str = Box::leak(
        format!("[cpu]\nvendor = \"intel\"\n[kargs]\nextra = [{many}]\n").into_boxed_str(),
    );
    let huge: &'static str = Box::leak(
        format!(
            "[cpu]\nvendor = \"intel\"\n[kargs]\nextra = [\"a={}\"]\n",
            "x".repeat(1_000_000)
        )
        .into_boxed_str(),
    );
    run_all(
        "command-line",
        vec![
            case(
                "20,000 extra kargs",
                2,
                &["kargs.extra", "holds 2047"],
                move |s| args(&["--config", &s.config(many), "plan"]),
            ),
            case("a 1 MB karg", 2, &["kargs.extra", "holds 2047"], move |s| {
                args(&["--config", &s.config(huge), "plan"])
            }),
        ],
    );
}
