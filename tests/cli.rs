//! The command line as users meet it (issue 21): completion scripts and man pages generated from the clap
//! definitions and read back by bash, zsh, fish and man; every option every command's help lists, each with a
//! case that shows its effect or its refusal; one verbosity model; `-` for the standard streams; messages that
//! name the host under `--root`; the commit in `--version`; `PASSTHRU_CONFIG`.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::{Mutex, OnceLock};

use assert_cmd::cargo::cargo_bin;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> String {
    repo()
        .join("tests/fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// A run of the binary: its exit code and output, and what it was run with, for messages.
struct Out {
    args: Vec<String>,
    code: i32,
    stdout: String,
    stderr: String,
}

type Check = Result<(), String>;

/// Whether an output stream must have a text or lack it.
#[derive(Clone, Copy)]
enum Holds {
    Has,
    Lacks,
}

impl Out {
    fn fail(&self, what: String) -> String {
        format!(
            "{what}\n  args: {:?}\n  exit: {}\n  stdout: {}\n  stderr: {}",
            self.args,
            self.code,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }

    fn code(&self, code: i32) -> Result<&Out, String> {
        match self.code == code {
            true => Ok(self),
            false => Err(self.fail(format!("exit {code} expected"))),
        }
    }

    fn out_has(&self, text: &str) -> Result<&Out, String> {
        self.holds("stdout", &self.stdout, text, Holds::Has)
    }

    fn out_lacks(&self, text: &str) -> Result<&Out, String> {
        self.holds("stdout", &self.stdout, text, Holds::Lacks)
    }

    fn err_has(&self, text: &str) -> Result<&Out, String> {
        self.holds("stderr", &self.stderr, text, Holds::Has)
    }

    fn err_lacks(&self, text: &str) -> Result<&Out, String> {
        self.holds("stderr", &self.stderr, text, Holds::Lacks)
    }

    /// `stream` (named `name` in the failure) has or lacks `text`, as `wanted` says.
    fn holds(&self, name: &str, stream: &str, text: &str, wanted: Holds) -> Result<&Out, String> {
        match (stream.contains(text), wanted) {
            (true, Holds::Has) | (false, Holds::Lacks) => Ok(self),
            (false, Holds::Has) => Err(self.fail(format!("{name} lacks {text:?}"))),
            (true, Holds::Lacks) => Err(self.fail(format!("{name} has {text:?}"))),
        }
    }

    /// stderr holds the error alone.
    fn only_the_error(&self) -> Result<&Out, String> {
        match self
            .stderr
            .lines()
            .all(|l| l.starts_with("error: ") || l.starts_with("  "))
        {
            true => Ok(self),
            false => Err(self.fail("stderr holds more than the error".into())),
        }
    }

    fn json(&self) -> Result<Value, String> {
        serde_json::from_str(&self.stdout)
            .map_err(|e| self.fail(format!("stdout is not JSON: {e}")))
    }
}

/// A working directory of its own (so no ./passthru.toml is picked up) for one case.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::Builder::new()
                .prefix("pt-cli-")
                .tempdir()
                .unwrap(),
        }
    }

    fn at(&self, rel: &str) -> String {
        self.dir.path().join(rel).to_string_lossy().into_owned()
    }

    fn file(&self, rel: &str, text: &str) -> String {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    fn config(&self, text: &str) -> String {
        self.file("cfg.toml", text)
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(rel)).unwrap_or_default()
    }

    /// Every file under `rel` holds `text` somewhere (a build context).
    fn tree_has(&self, rel: &str, text: &str) -> Check {
        let mut found = false;
        let mut stack = vec![self.dir.path().join(rel)];
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            } else if std::fs::read_to_string(&path).is_ok_and(|t| t.contains(text)) {
                found = true;
            }
        }
        match found {
            true => Ok(()),
            false => Err(format!("no file under {rel} holds {text:?}")),
        }
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, None, &[])
    }

    fn run_with(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Out {
        let mut cmd = Process::new(cargo_bin("passthru-image"));
        cmd.current_dir(self.dir.path())
            .args(args)
            .env_remove("PASSTHRU_CONFIG")
            .env_remove("PASSTHRU_ENGINE")
            .env("BUILDAH_ISOLATION", "chroot")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            cmd.env(key, value);
        }
        let mut child = cmd.spawn().unwrap();
        let input = stdin.unwrap_or("").to_owned();
        let mut pipe = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
        let output = child.wait_with_output().unwrap();
        writer.join().unwrap();
        Out {
            args: args.iter().map(|a| a.to_string()).collect(),
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Completions and man pages

fn completion_script(sb: &Sandbox, shell: &str) -> String {
    let out = sb.run(&["completions", shell]);
    out.code(0).unwrap();
    sb.file(&format!("completion.{shell}"), &out.stdout)
}

/// What bash offers for `words`, the last one being completed, as a user's Tab would: the script sourced into
/// a real bash, its completion function called the way `complete -F` calls it.
fn bash_completes(script: &str, words: &[&str]) -> Vec<String> {
    let array: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{script}'\n\
         function=$(complete -p passthru-image | sed -E 's/.* -F ([^ ]+) .*/\\1/')\n\
         COMP_WORDS=({})\n\
         COMP_CWORD={}\n\
         COMP_LINE=\"${{COMP_WORDS[*]}}\"\n\
         COMP_POINT=${{#COMP_LINE}}\n\
         \"$function\" passthru-image \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        array.join(" "),
        words.len() - 1
    );
    common::run(Process::new("bash").args(["-c", &program]))
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completes_commands_their_own_options_and_nested_commands() {
    let sb = Sandbox::new();
    let script = completion_script(&sb, "bash");
    assert_eq!(
        bash_completes(&script, &["passthru-image", "gr"]),
        ["groups"]
    );
    assert_eq!(
        bash_completes(&script, &["passthru-image", "test-b"]),
        ["test-boot"]
    );
    let groups = bash_completes(&script, &["passthru-image", "groups", "--"]);
    for option in [
        "--json",
        "--gpus",
        "--class",
        "--root",
        "--verbose",
        "--quiet",
    ] {
        assert!(groups.iter().any(|o| o == option), "{option} in {groups:?}");
    }
    assert!(
        !groups.iter().any(|o| o == "--config"),
        "groups reads no config, so it is not offered: {groups:?}"
    );
    assert_eq!(
        bash_completes(&script, &["passthru-image", "test-boot", "--cap"]),
        ["--capture"]
    );
    assert_eq!(
        bash_completes(&script, &["passthru-image", "mok", "n"]),
        ["new"]
    );
    assert_eq!(
        bash_completes(&script, &["passthru-image", "mok", "new", "--na"]),
        ["--name"]
    );
    assert_eq!(
        bash_completes(&script, &["passthru-image", "completions", "f"]),
        ["fish"]
    );
}

#[test]
fn zsh_and_fish_read_their_scripts() {
    let sb = Sandbox::new();
    let zsh = completion_script(&sb, "zsh");
    assert!(
        std::fs::read_to_string(&zsh)
            .unwrap()
            .starts_with("#compdef passthru-image")
    );
    common::run(Process::new("zsh").args(["-n", &zsh]));
    let fish = completion_script(&sb, "fish");
    common::run(Process::new("fish").args(["--no-execute", &fish]));
    // Each completion fish registers is for the binary by its name.
    let text = std::fs::read_to_string(&fish).unwrap();
    let registered: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("complete "))
        .collect();
    assert!(!registered.is_empty(), "{text}");
    for line in registered {
        assert!(line.starts_with("complete -c passthru-image "), "{line}");
    }
}

/// The commands as `--help` lists them, nested ones as `mok new`.
fn commands() -> Vec<Vec<String>> {
    let mut found = vec![Vec::new()];
    let mut queue = vec![Vec::<String>::new()];
    while let Some(path) = queue.pop() {
        let sb = Sandbox::new();
        let args: Vec<&str> = path.iter().map(String::as_str).chain(["-h"]).collect();
        let out = sb.run(&args);
        out.code(0).unwrap();
        for name in section(&out.stdout, "Commands:")
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| *n != "help")
        {
            let mut sub = path.clone();
            sub.push(name.to_owned());
            found.push(sub.clone());
            queue.push(sub);
        }
    }
    found.sort();
    found
}

/// The indented lines of one section of a help text.
fn section<'a>(help: &'a str, heading: &str) -> impl Iterator<Item = &'a str> {
    help.lines()
        .skip_while(move |l| *l != heading)
        .skip(1)
        .take_while(|l| l.starts_with(' ') || l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.trim().is_empty())
}

#[test]
fn man_writes_one_page_per_command_that_man_renders_without_warnings() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.at("man1")).unwrap();
    let out = sb.run(&["man", "man1"]);
    out.code(0).unwrap();
    let written: BTreeSet<String> = std::fs::read_dir(sb.at("man1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<String> = commands()
        .iter()
        .map(|path| {
            std::iter::once("passthru-image")
                .chain(path.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join("-")
                + ".1"
        })
        .collect();
    assert_eq!(written, expected);
    for page in &written {
        let out = Process::new("man")
            .args(["--warnings", "-l"])
            .arg(sb.at(&format!("man1/{page}")))
            .env("MANWIDTH", "100")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stderr.is_empty(),
            "{page}: {stderr}"
        );
        let name = page.trim_end_matches(".1");
        assert!(
            text.contains("NAME") && text.contains(name),
            "{page}:\n{text}"
        );
    }
    // The tool's own page lists the commands, a command's page its options.
    let man = |page: &str| {
        let out = Process::new("man")
            .args(["-l", &sb.at(&format!("man1/{page}"))])
            .env("MANWIDTH", "200")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(man("passthru-image.1").contains("passthru-image-groups(1)"));
    assert!(man("passthru-image-groups.1").contains("--class"));
    assert!(!man("passthru-image-groups.1").contains("--config"));

    sb.run(&["man", "nowhere"])
        .code(2)
        .and_then(|o| o.err_has("nowhere is not an existing directory"))
        .unwrap();
}

// ---------------------------------------------------------------------------------------------------------
// Every option every command lists, each used

/// How an option is shown to be used.
enum Proof {
    /// A case run here, in a sandbox of its own.
    Run(Box<dyn Fn(&Sandbox) -> Check>),
    /// A test elsewhere in the suite that shows the effect with what only it has (a registry, a built image
    /// that boots); the file must have the test, and the test file the option.
    Elsewhere {
        file: &'static str,
        test: &'static str,
    },
}

struct Case {
    command: &'static str,
    option: &'static str,
    proof: Proof,
}

fn run(
    command: &'static str,
    option: &'static str,
    check: impl Fn(&Sandbox) -> Check + 'static,
) -> Case {
    Case {
        command,
        option,
        proof: Proof::Run(Box::new(check)),
    }
}

fn elsewhere(
    command: &'static str,
    option: &'static str,
    file: &'static str,
    test: &'static str,
) -> Case {
    Case {
        command,
        option,
        proof: Proof::Elsewhere { file, test },
    }
}

/// The options a command's help lists: `--long` (and positionals as `<NAME>`), from the summary (`-h`): one
/// line per option.
fn listed_options(command: &[String]) -> (Vec<String>, String) {
    let sb = Sandbox::new();
    let args: Vec<&str> = command.iter().map(String::as_str).chain(["-h"]).collect();
    let out = sb.run(&args);
    out.code(0).unwrap();
    let mut options = Vec::new();
    for line in section(&out.stdout, "Arguments:") {
        let word = line.split_whitespace().next().unwrap();
        options.push(format!("<{}>", word.trim_matches(['<', '>', '[', ']'])));
    }
    for heading in ["Options:", "Global options:"] {
        for line in section(&out.stdout, heading) {
            let long = line
                .split_whitespace()
                .find(|w| w.starts_with("--"))
                .unwrap_or_else(|| panic!("no long option in {line:?}"));
            let name: String = long
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            options.push(name);
        }
    }
    (options, out.stdout)
}

const INTEL: &str = "[cpu]\nvendor = \"intel\"\n";
const NOUVEAU_OFF: &str = "[cpu]\nvendor = \"intel\"\n[gpu]\ndisable-nouveau = true\n";
const MISSING: &str = "localhost/pt-cli-missing:1";

fn table() -> Vec<Case> {
    let mut cases = top_cases();
    cases.extend(plan_cases());
    cases.extend(generate_cases());
    cases.extend(build_cases());
    cases.extend(apply_cases());
    cases.extend(revert_cases());
    cases.extend(groups_cases());
    cases.extend(detect_cases());
    cases.extend(doctor_cases());
    cases.extend(test_boot_cases());
    cases.extend(mok_cases());
    cases.extend(ci_cases());
    cases.extend(docs_cases());
    cases
}

fn top_cases() -> Vec<Case> {
    vec![
        run("", "--version", |sb| {
            sb.run(&["--version"]).code(0)?.out_has(concat!(
                "passthru-image ",
                env!("CARGO_PKG_VERSION"),
                " ("
            ))?;
            Ok(())
        }),
        run("", "--verbose", |sb| {
            let root = fixture("intel-nvidia");
            sb.run(&["-vv", "groups", "--root", &root])
                .code(0)?
                .err_has(&format!(
                    "reading {root}/sys/bus/pci/devices/0000:01:00.0/vendor"
                ))?;
            Ok(())
        }),
        run("", "--quiet", |sb| {
            let args = ["groups", "--root", &fixture("iommu-off")];
            sb.run(&args)
                .code(0)?
                .out_has("Enable it in the firmware setup")?;
            let mut quiet = vec!["-q"];
            quiet.extend(args);
            sb.run(&quiet)
                .code(0)?
                .out_has("The IOMMU is off")
                .and_then(|o| o.out_lacks("Enable it"))?;
            Ok(())
        }),
    ]
}

/// `--root` on a host with an ID no device has: a warning naming the host.
fn unknown_id_warning(sb: &Sandbox, command: &[&str]) -> Check {
    let root = fixture("intel-nvidia");
    let mut args = command.to_vec();
    args.extend(["--cpu", "intel", "--vfio-ids", "1234:5678", "--root", &root]);
    let out = sb.run(&args);
    out.err_has(&format!(
        "no device of the host under {root} has the ID 1234:5678"
    ))?;
    Ok(())
}

/// `-vv` shows the config being read.
fn traces_the_config(sb: &Sandbox, command: &[&str]) -> Check {
    let config = sb.config(INTEL);
    let mut args = vec!["-vv"];
    args.extend(command);
    args.extend(["--config", &config]);
    sb.run(&args)
        .err_has(&format!("reading {config} (--config)"))?;
    Ok(())
}

fn plan_cases() -> Vec<Case> {
    vec![
        run("plan", "--json", |sb| {
            let json = sb
                .run(&["plan", "--json", "--cpu", "intel"])
                .code(0)?
                .json()?;
            match json["kargs"][0] == "intel_iommu=on" {
                true => Ok(()),
                false => Err(format!("kargs: {json}")),
            }
        }),
        run("plan", "--hosts", |sb| {
            sb.file(
                "fleet/desk.toml",
                "[image]\ntag = \"localhost/pt-cli/vfio\"\n[cpu]\nvendor = \"intel\"\n",
            );
            sb.run(&["plan", "--hosts", "fleet"])
                .code(0)?
                .out_has("Fleet fleet: 1 hosts on 1 stacks")?
                .out_has("desk -> localhost/pt-cli/vfio:desk")?;
            Ok(())
        }),
        run("plan", "--cpu", |sb| {
            sb.run(&["plan", "--cpu", "intel"])
                .code(0)?
                .out_has("intel_iommu=on")?;
            sb.run(&["plan", "--cpu", "amd"])
                .code(0)?
                .out_lacks("intel_iommu=on")?
                .out_has("kvm_amd.npt=1")?;
            Ok(())
        }),
        run("plan", "--gpu", |sb| {
            let config = sb.config(NOUVEAU_OFF);
            sb.run(&["plan", "--config", &config])
                .code(0)?
                .out_lacks("nouveau.modeset=0")?;
            sb.run(&["plan", "--config", &config, "--gpu", "nvidia"])
                .code(0)?
                .out_has("nouveau.modeset=0")?;
            Ok(())
        }),
        run("plan", "--vfio-ids", |sb| {
            sb.run(&[
                "plan",
                "--cpu",
                "intel",
                "--vfio-ids",
                "10de:1401,10de:0fba",
            ])
            .code(0)?
            .out_has("vfio_pci.ids=10de:1401,10de:0fba")?;
            Ok(())
        }),
        run("plan", "--base", |sb| {
            sb.run(&[
                "plan",
                "--cpu",
                "intel",
                "--base",
                "localhost/pt-cli-base:1",
            ])
            .code(0)?
            .out_has("Image: localhost/pt-cli-base:1 -> ")?;
            Ok(())
        }),
        run("plan", "--tag", |sb| {
            sb.run(&["plan", "--cpu", "intel", "--tag", "localhost/pt-cli-tag:1"])
                .code(0)?
                .out_has(" -> localhost/pt-cli-tag:1")?;
            Ok(())
        }),
        run("plan", "--config", |sb| {
            let config = sb.config("[cpu]\nvendor = \"amd\"\n");
            sb.run(&["plan", "--config", &config])
                .code(0)?
                .out_has(&format!("Plan from {config}, CPU vendor amd"))?;
            Ok(())
        }),
        run("plan", "--root", |sb| {
            let root = fixture("intel-nvidia");
            sb.run(&["plan", "--cpu", "intel", "--root", &root])
                .code(0)?
                .out_has(&format!("For the host under {root}: its devices were read"))?;
            Ok(())
        }),
        run("plan", "--verbose", |sb| traces_the_config(sb, &["plan"])),
        run("plan", "--quiet", |sb| {
            unknown_id_warning(sb, &["plan"])?;
            let root = fixture("intel-nvidia");
            sb.run(&[
                "plan",
                "-q",
                "--cpu",
                "intel",
                "--vfio-ids",
                "1234:5678",
                "--root",
                &root,
            ])
            .code(0)?
            .out_has("Kernel arguments:")?
            .only_the_error()?;
            Ok(())
        }),
    ]
}

fn generate_cases() -> Vec<Case> {
    let generate = |sb: &Sandbox, extra: &[&str]| {
        let mut args = vec!["generate", "-o", "out"];
        args.extend(extra);
        sb.run(&args)
    };
    vec![
        run("generate", "--output", move |sb| {
            generate(sb, &["--cpu", "intel"]).code(0)?;
            sb.tree_has("out/Containerfile", "FROM quay.io/fedora/fedora-bootc:44")
        }),
        run("generate", "--force", move |sb| {
            sb.file("out/mine", "mine");
            generate(sb, &["--cpu", "intel"])
                .code(2)?
                .err_has("--force")?;
            generate(sb, &["--cpu", "intel", "--force"]).code(0)?;
            sb.tree_has("out", "FROM ")
        }),
        run("generate", "--cpu", move |sb| {
            generate(sb, &["--cpu", "intel"]).code(0)?;
            sb.tree_has("out", "intel_iommu=on")
        }),
        run("generate", "--gpu", move |sb| {
            let config = sb.config(NOUVEAU_OFF);
            generate(sb, &["--config", &config, "--gpu", "nvidia"]).code(0)?;
            sb.tree_has("out", "nouveau.modeset=0")
        }),
        run("generate", "--vfio-ids", move |sb| {
            generate(sb, &["--cpu", "intel", "--vfio-ids", "10de:1401"]).code(0)?;
            sb.tree_has("out", "vfio_pci.ids=10de:1401")
        }),
        run("generate", "--base", move |sb| {
            generate(sb, &["--cpu", "intel", "--base", "localhost/pt-cli-base:1"]).code(0)?;
            sb.tree_has("out/Containerfile", "FROM localhost/pt-cli-base:1")
        }),
        run("generate", "--tag", move |sb| {
            generate(sb, &["--cpu", "intel", "--tag", "localhost/pt-cli-tag:1"])
                .code(0)?
                .err_has("Wrote the build context for localhost/pt-cli-tag:1")?;
            Ok(())
        }),
        run("generate", "--config", move |sb| {
            let config = sb.config("[cpu]\nvendor = \"amd\"\n");
            generate(sb, &["--config", &config])
                .code(0)?
                .err_has(&format!("from {config} to out"))?;
            sb.tree_has("out", "kvm_amd.npt=1")
        }),
        run("generate", "--root", |sb| {
            unknown_id_warning(sb, &["generate", "-o", "out"])
        }),
        run("generate", "--verbose", |sb| {
            traces_the_config(sb, &["generate", "-o", "out"])
        }),
        run("generate", "--quiet", move |sb| {
            generate(sb, &["--cpu", "intel"])
                .code(0)?
                .err_has("Wrote the build context")?;
            sb.run(&["generate", "-q", "-o", "quiet", "--cpu", "intel"])
                .code(0)?
                .only_the_error()?;
            sb.tree_has("quiet", "FROM ")
        }),
    ]
}

/// A local image with nothing in it: a build from it writes its context, runs the engine and fails at the
/// first RUN step, in about a second. Made once, removed by [`remove_scratch_images`].
fn scratch_base() -> &'static str {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(|| {
        let name = "localhost/pt-cli-scratch:1";
        let from = Process::new("buildah")
            .args(["from", "scratch"])
            .env("BUILDAH_ISOLATION", "chroot")
            .output()
            .unwrap();
        assert!(
            from.status.success(),
            "{}",
            String::from_utf8_lossy(&from.stderr)
        );
        let container = String::from_utf8(from.stdout).unwrap().trim().to_owned();
        let commit = Process::new("buildah")
            .args(["commit", "-q", &container, name])
            .output()
            .unwrap();
        assert!(
            commit.status.success(),
            "{}",
            String::from_utf8_lossy(&commit.stderr)
        );
        let _ = Process::new("buildah").args(["rm", &container]).output();
        let id = String::from_utf8(commit.stdout).unwrap().trim().to_owned();
        SCRATCH_LAYERS.lock().unwrap().push(id);
        name.to_owned()
    })
}

/// The scratch base and the layers builds from it left (podman keeps each step's layer: `--layers`).
static SCRATCH_LAYERS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// `build -v` from the scratch base: the engine's command line and output are on stderr.
fn scratch_build(sb: &Sandbox, extra: &[&str]) -> Out {
    let mut args = vec![
        "-v",
        "build",
        "--pull",
        "never",
        "--base",
        scratch_base(),
        "--cpu",
        "intel",
    ];
    args.extend(extra);
    let out = sb.run(&args);
    let mut layers = SCRATCH_LAYERS.lock().unwrap();
    for line in out.stderr.lines() {
        let id = line
            .trim_start()
            .strip_prefix("--> ")
            .map(|rest| rest.trim_start_matches("Using cache "));
        if let Some(id) = id.filter(|id| id.len() >= 8 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            layers.push(id.to_owned());
        }
    }
    out
}

fn remove_scratch_images() {
    let mut layers = SCRATCH_LAYERS.lock().unwrap();
    // The newest layers first: an image goes only after the ones made from it.
    layers.reverse();
    layers.dedup();
    for image in layers.drain(..) {
        // --force: the scratch base is also tagged; every layer here is one this test made.
        let _ = Process::new("podman")
            .args(["rmi", "--force", "--ignore", &image])
            .output();
    }
}

fn build_cases() -> Vec<Case> {
    let missing = |sb: &Sandbox, extra: &[&str]| {
        let mut args = vec!["build", "--pull", "never", "--base", MISSING];
        args.extend(extra);
        sb.run(&args)
    };
    vec![
        run("build", "--engine", move |sb| {
            missing(sb, &["--cpu", "intel", "--engine", "buildah"])
                .code(2)?
                .err_has("not in buildah's local storage")?;
            Ok(())
        }),
        run("build", "--isolation", |sb| {
            scratch_build(sb, &["--isolation", "chroot"])
                .code(1)?
                .err_has("+ podman build --layers --pull=never --isolation chroot ")?;
            Ok(())
        }),
        run("build", "--pull", move |sb| {
            missing(sb, &["--cpu", "intel"]).code(2)?.err_has(&format!(
                "--pull: never, but {MISSING} is not in podman's local storage"
            ))?;
            Ok(())
        }),
        run("build", "--label", |sb| {
            scratch_build(sb, &["--label", "pt.cli=1"])
                .code(1)?
                .err_has(" --label pt.cli=1 ")?;
            Ok(())
        }),
        elsewhere(
            "build",
            "--push",
            "tests/e2e_registry.rs",
            "pushed_images_reach_real_registries_and_read_back_without_the_tool",
        ),
        run("build", "--digest-file", move |sb| {
            missing(sb, &["--push", "--digest-file", "nowhere/digest"])
                .code(2)?
                .err_has("--digest-file: nowhere/digest is not a file in an existing directory")?;
            Ok(())
        }),
        elsewhere(
            "build",
            "--tls-verify",
            "tests/e2e_registry.rs",
            "plain_http_needs_tls_verify_false",
        ),
        run("build", "--hosts", |sb| {
            sb.file("fleet/desk.toml", "[vfio]\nids = [\"zz\"]\n");
            sb.run(&["build", "--hosts", "fleet"])
                .code(2)?
                .err_has("fleet/desk.toml: vfio.ids[0]")?;
            Ok(())
        }),
        run("build", "--context", |sb| {
            scratch_build(sb, &["--context", "ctx"]).code(1)?;
            sb.tree_has("ctx/Containerfile", &format!("FROM {}", scratch_base()))
        }),
        run("build", "--cpu", move |sb| {
            missing(sb, &[])
                .code(2)?
                .err_has("warning: cpu.vendor = \"auto\" read this machine's CPU")?;
            missing(sb, &["--cpu", "intel"])
                .code(2)?
                .err_lacks("cpu.vendor")?;
            Ok(())
        }),
        run("build", "--gpu", |sb| {
            let config = sb.config(NOUVEAU_OFF);
            scratch_build(
                sb,
                &["--config", &config, "--gpu", "nvidia", "--context", "ctx"],
            )
            .code(1)?;
            sb.tree_has("ctx", "nouveau.modeset=0")
        }),
        run("build", "--vfio-ids", |sb| {
            scratch_build(sb, &["--vfio-ids", "10de:1401", "--context", "ctx"]).code(1)?;
            sb.tree_has("ctx", "vfio_pci.ids=10de:1401")
        }),
        run("build", "--base", move |sb| {
            missing(sb, &["--cpu", "intel"]).code(2)?.err_has(MISSING)?;
            Ok(())
        }),
        run("build", "--tag", |sb| {
            scratch_build(sb, &["--tag", "localhost/pt-cli-tag:1"])
                .code(1)?
                .err_has("the build of localhost/pt-cli-tag:1 failed")?
                .err_has(" --tag localhost/pt-cli-tag:1 ")?;
            Ok(())
        }),
        run("build", "--config", |sb| {
            let config = sb.config(&format!("[image]\nbase = \"{MISSING}\"\n{INTEL}"));
            sb.run(&["build", "--pull", "never", "--config", &config])
                .code(2)?
                .err_has(MISSING)?;
            Ok(())
        }),
        run("build", "--root", move |sb| {
            unknown_id_warning(sb, &["build", "--pull", "never", "--base", MISSING])
        }),
        run("build", "--verbose", move |sb| {
            let mut args = vec!["-v"];
            args.extend([
                "build", "--pull", "never", "--base", MISSING, "--cpu", "intel",
            ]);
            sb.run(&args)
                .code(2)?
                .err_has(&format!("+ podman image exists {MISSING}"))?;
            Ok(())
        }),
        run("build", "--quiet", move |sb| {
            missing(sb, &[]).code(2)?.err_has("warning: ")?;
            sb.run(&["build", "-q", "--pull", "never", "--base", MISSING])
                .code(2)?
                .only_the_error()?;
            Ok(())
        }),
    ]
}

/// A booted ostree host: `root/` with /run/ostree-booted, an ostree `sysroot/` with one deployment carrying
/// `kargs`, and the rpm-ostree test double (tests/live/rpm-ostree) on PATH, as tests/live_apply.rs uses them.
struct Live {
    root: String,
    sysroot: String,
    path: String,
    log: String,
}

fn live_host(sb: &Sandbox, kargs: &[&str]) -> Live {
    let path = std::env::join_paths(
        std::iter::once(repo().join("tests/live"))
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let live = Live {
        root: sb.at("root"),
        sysroot: sb.at("sysroot"),
        path: path.to_string_lossy().into_owned(),
        log: sb.at("rpm-ostree.log"),
    };
    // A case that runs twice reuses its host.
    if !Path::new(&live.sysroot).exists() {
        make_live_host(sb, &live, kargs);
    }
    live
}

fn make_live_host(sb: &Sandbox, live: &Live, kargs: &[&str]) {
    let ostree = |args: &[&str]| {
        let out = Process::new("ostree")
            .args(args)
            .env("OSTREE_SYSROOT_DEBUG", "mutable-deployments")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ostree {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sb.file("root/run/ostree-booted", "");
    std::fs::create_dir_all(sb.at("root/etc")).unwrap();
    std::fs::create_dir_all(sb.at("root/sys/bus/pci/devices")).unwrap();
    sb.file(
        "tree/usr/lib/modules/6.1.0-pt-cli/vmlinuz",
        "not a kernel\n",
    );
    sb.file(
        "tree/usr/lib/modules/6.1.0-pt-cli/initramfs.img",
        "not an initramfs\n",
    );
    sb.file("tree/usr/etc/os-release", "ID=testos\n");
    let sysroot = &live.sysroot;
    std::fs::create_dir_all(sysroot).unwrap();
    ostree(&["admin", "init-fs", "--modern", sysroot]);
    ostree(&[
        "admin",
        "os-init",
        &format!("--sysroot={sysroot}"),
        "testos",
    ]);
    ostree(&[
        &format!("--repo={sysroot}/ostree/repo"),
        "commit",
        "--branch=testos/stable",
        "--bootable",
        &format!("--tree=dir={}", sb.at("tree")),
        "-s",
        "base",
    ]);
    let origin = sb.file("origin", "[origin]\nrefspec=testos/stable\n");
    let mut deploy = vec![
        "admin".to_owned(),
        "deploy".into(),
        format!("--sysroot={sysroot}"),
        "--os=testos".into(),
        format!("--origin-file={origin}"),
        "--karg=root=UUID=6e1d6a1c-3b2a-4f7e-9a0e-1f2d3c4b5a69".into(),
    ];
    deploy.extend(kargs.iter().map(|k| format!("--karg={k}")));
    deploy.push("testos/stable".into());
    ostree(&deploy.iter().map(String::as_str).collect::<Vec<_>>());
}

impl Live {
    fn run(&self, sb: &Sandbox, args: &[&str]) -> Out {
        let mut all = args.to_vec();
        all.extend(["--root", &self.root, "--sysroot", &self.sysroot]);
        sb.run_with(
            &all,
            None,
            &[("PATH", &self.path), ("PT_RPM_OSTREE_LOG", &self.log)],
        )
    }
}

fn apply_cases() -> Vec<Case> {
    let dry_run = |sb: &Sandbox, extra: &[&str]| {
        let live = live_host(sb, &[]);
        let config = sb.config("[cpu]\nvendor = \"amd\"\n");
        let mut args = vec!["apply", "--dry-run", "--config", &config];
        args.extend(extra);
        live.run(sb, &args)
    };
    vec![
        run("apply", "--dry-run", move |sb| {
            dry_run(sb, &[]).code(0)?.out_has("Would run, in order:")?;
            match sb.read("rpm-ostree.log").contains("\"kargs\"") {
                false => Ok(()),
                true => Err(format!(
                    "a dry run changed kargs: {}",
                    sb.read("rpm-ostree.log")
                )),
            }
        }),
        run("apply", "--replace-conflicts", |sb| {
            let live = live_host(sb, &["iommu=off"]);
            let config = sb.config("[cpu]\nvendor = \"amd\"\n");
            live.run(sb, &["apply", "--dry-run", "--config", &config])
                .code(2)?
                .err_has("--replace-conflicts")?;
            live.run(
                sb,
                &[
                    "apply",
                    "--dry-run",
                    "--config",
                    &config,
                    "--replace-conflicts",
                ],
            )
            .code(0)?
            .out_has("Conflict, removed: iommu=off")?;
            Ok(())
        }),
        run("apply", "--json", move |sb| {
            let json = dry_run(sb, &["--json"]).code(0)?.json()?;
            match json["steps"].is_array() {
                true => Ok(()),
                false => Err(format!("no steps: {json}")),
            }
        }),
        run("apply", "--sysroot", |sb| {
            std::fs::create_dir(sb.at("plain")).unwrap();
            let root = sb.file("root/run/ostree-booted", "");
            let root = root.trim_end_matches("/run/ostree-booted");
            sb.run(&[
                "apply",
                "--dry-run",
                "--cpu",
                "amd",
                "--root",
                root,
                "--sysroot",
                "plain",
            ])
            .code(2)?
            .err_has("--sysroot: plain is not an ostree sysroot")?;
            Ok(())
        }),
        run("apply", "--cpu", move |sb| {
            dry_run(sb, &["--cpu", "intel"])
                .code(0)?
                .out_has("intel_iommu=on")?;
            Ok(())
        }),
        run("apply", "--gpu", |sb| {
            let live = live_host(sb, &[]);
            let config = sb.config("[cpu]\nvendor = \"amd\"\n");
            let args = ["apply", "--dry-run", "--config", &config];
            live.run(sb, &args)
                .code(0)?
                .out_lacks("nouveau.modeset=0")?;
            let mut gpu = args.to_vec();
            gpu.extend(["--gpu", "nvidia"]);
            live.run(sb, &gpu).code(0)?.out_has("nouveau.modeset=0")?;
            Ok(())
        }),
        run("apply", "--vfio-ids", move |sb| {
            dry_run(sb, &["--vfio-ids", "10de:1401"])
                .code(0)?
                .out_has("vfio_pci.ids=10de:1401")?;
            Ok(())
        }),
        run("apply", "--config", move |sb| {
            let live = live_host(sb, &[]);
            let config = sb.config(INTEL);
            live.run(sb, &["apply", "--dry-run", "--config", &config])
                .code(0)?
                .out_has("intel_iommu=on")?;
            Ok(())
        }),
        run("apply", "--root", move |sb| {
            let live = live_host(sb, &[]);
            live.run(
                sb,
                &[
                    "apply",
                    "--dry-run",
                    "--cpu",
                    "amd",
                    "--vfio-ids",
                    "1234:5678",
                ],
            )
            .code(0)?
            .err_has(&format!(
                "no device of the host under {} has the ID 1234:5678",
                live.root
            ))?;
            Ok(())
        }),
        run("apply", "--verbose", move |sb| {
            dry_run(sb, &["-v"]).code(0)?.err_has("+ lsinitrd ")?;
            Ok(())
        }),
        run("apply", "--quiet", move |sb| {
            dry_run(sb, &["--vfio-ids", "1234:5678"])
                .code(0)?
                .err_has("warning: ")?;
            dry_run(sb, &["-q", "--vfio-ids", "1234:5678"])
                .code(0)?
                .out_has("Would run, in order:")?
                .only_the_error()?;
            Ok(())
        }),
    ]
}

fn revert_cases() -> Vec<Case> {
    vec![
        run("revert", "--sysroot", |sb| {
            let live = live_host(sb, &[]);
            live.run(sb, &["revert"])
                .code(0)?
                .out_has("Nothing to revert")?;
            std::fs::create_dir(sb.at("plain")).unwrap();
            sb.run(&["revert", "--root", &live.root, "--sysroot", "plain"])
                .code(2)?
                .err_has("--sysroot: plain is not an ostree sysroot")?;
            Ok(())
        }),
        run("revert", "--root", |sb| {
            let live = live_host(sb, &[]);
            sb.file("root/etc/passthru-image/live-state.json", "not JSON");
            live.run(sb, &["revert"])
                .code(2)?
                .err_has(&format!("{}/etc/passthru-image/live-state.json", live.root))?;
            Ok(())
        }),
        run("revert", "--verbose", |sb| {
            let live = live_host(sb, &[]);
            live.run(sb, &["revert", "-v"])
                .code(0)?
                .err_has("+ rpm-ostree status ")?;
            Ok(())
        }),
        run("revert", "--quiet", |sb| {
            let live = live_host(sb, &[]);
            live.run(sb, &["revert", "-q"])
                .code(0)?
                .out_lacks("Nothing to revert")?
                .only_the_error()?;
            Ok(())
        }),
    ]
}

/// `COMMAND --root` on the Intel + NVIDIA fixture, with `extra` after it.
fn on_intel_nvidia(sb: &Sandbox, command: &str, extra: &[&str]) -> Out {
    let root = fixture("intel-nvidia");
    let mut args = vec![command, "--root", &root];
    args.extend(extra);
    sb.run(&args)
}

fn groups_cases() -> Vec<Case> {
    let groups = |sb: &Sandbox, extra: &[&str]| on_intel_nvidia(sb, "groups", extra);
    let group_lines = |out: &Out| {
        out.stdout
            .lines()
            .filter(|l| l.starts_with("IOMMU Group"))
            .count()
    };
    vec![
        run("groups", "--json", move |sb| {
            let json = groups(sb, &["--json"]).code(0)?.json()?;
            match json["iommu_enabled"] == true {
                true => Ok(()),
                false => Err(format!("{json}")),
            }
        }),
        run("groups", "--gpus", move |sb| {
            let all = groups(sb, &[]);
            let gpus = groups(sb, &["--gpus"]);
            gpus.code(0)?
                .out_has("VGA compatible controller")?
                .out_lacks("USB controller")?;
            match group_lines(&gpus) < group_lines(&all) {
                true => Ok(()),
                false => Err(gpus.fail("--gpus lists every group".into())),
            }
        }),
        run("groups", "--class", move |sb| {
            groups(sb, &["--class", "usb"])
                .code(0)?
                .out_has("USB controller")?
                .out_lacks("VGA compatible")?;
            Ok(())
        }),
        run("groups", "--root", move |sb| {
            groups(sb, &[])
                .code(0)?
                .out_has("0000:01:00.0 VGA compatible controller")?;
            Ok(())
        }),
        run("groups", "--verbose", move |sb| {
            groups(sb, &["-vv"]).code(0)?.err_has("reading ")?;
            groups(sb, &["-v"]).code(0)?.err_lacks("reading ")?;
            Ok(())
        }),
        run("groups", "--quiet", |sb| {
            let root = fixture("iommu-off");
            sb.run(&["groups", "--root", &root])
                .code(0)?
                .out_has("Enable it in the firmware")?;
            sb.run(&["groups", "-q", "--root", &root])
                .code(0)?
                .out_lacks("Enable it")?
                .out_has("The IOMMU is off")?;
            Ok(())
        }),
    ]
}

fn detect_cases() -> Vec<Case> {
    let detect = |sb: &Sandbox, extra: &[&str]| on_intel_nvidia(sb, "detect", extra);
    vec![
        run("detect", "--write", move |sb| {
            detect(sb, &["--write", "p.toml"])
                .code(0)?
                .out_lacks("[cpu]")?
                .err_has("Wrote p.toml")?;
            match sb.read("p.toml").contains("[cpu]") {
                true => Ok(()),
                false => Err("p.toml not written".into()),
            }
        }),
        run("detect", "--force", move |sb| {
            sb.file("p.toml", "mine");
            detect(sb, &["--write", "p.toml"])
                .code(2)?
                .err_has("--force")?;
            detect(sb, &["--write", "p.toml", "--force"]).code(0)?;
            match sb.read("p.toml").contains("[cpu]") {
                true => Ok(()),
                false => Err("p.toml not replaced".into()),
            }
        }),
        run("detect", "--merge", move |sb| {
            sb.file("p.toml", "# mine\n[kargs]\nextra = [\"quiet\"]\n");
            detect(sb, &["--write", "p.toml", "--merge"]).code(0)?;
            let text = sb.read("p.toml");
            match text.contains("# mine") && text.contains("vendor = \"intel\"") {
                true => Ok(()),
                false => Err(format!("not merged: {text}")),
            }
        }),
        run("detect", "--device", move |sb| {
            detect(sb, &["--device", "0000:09:00.0"])
                .code(2)?
                .err_has(&format!(
                    "no PCI device at 0000:09:00.0 on the host under {}",
                    fixture("intel-nvidia")
                ))?;
            Ok(())
        }),
        run("detect", "--sysroot", move |sb| {
            detect(sb, &["--sysroot", "plain"])
                .code(2)?
                .err_has("--sysroot: plain is not an ostree sysroot")?;
            Ok(())
        }),
        run("detect", "--json", move |sb| {
            let json = detect(sb, &["--json"]).code(0)?.json()?;
            match json["toml"].as_str().is_some_and(|t| t.contains("[cpu]")) {
                true => Ok(()),
                false => Err(format!("{json}")),
            }
        }),
        run("detect", "--config", move |sb| {
            let config = sb.config("# mine\n[kargs]\nextra = [\"quiet\"]\n");
            detect(sb, &["--config", &config])
                .code(0)?
                .out_has("# mine")?
                .out_has("extra = [\"quiet\"]")?;
            Ok(())
        }),
        run("detect", "--root", move |sb| {
            detect(sb, &[])
                .code(0)?
                .out_has(&format!("from the host under {}", fixture("intel-nvidia")))?;
            Ok(())
        }),
        run("detect", "--verbose", move |sb| {
            detect(sb, &["-vv"])
                .code(0)?
                .err_has(&format!("reading {}/proc/cpuinfo", fixture("intel-nvidia")))?;
            Ok(())
        }),
        run("detect", "--quiet", |sb| {
            let root = fixture("iommu-off");
            sb.run(&["detect", "--root", &root])
                .code(0)?
                .err_has("warning: the IOMMU is off")?;
            sb.run(&["detect", "-q", "--root", &root])
                .code(0)?
                .out_has("[cpu]")?
                .only_the_error()?;
            Ok(())
        }),
    ]
}

fn doctor_cases() -> Vec<Case> {
    let doctor = |sb: &Sandbox, extra: &[&str]| on_intel_nvidia(sb, "doctor", extra);
    let check_names = |out: &Out| -> Result<Vec<String>, String> {
        Ok(out.json()?["checks"]
            .as_array()
            .ok_or_else(|| out.fail("no checks".into()))?
            .iter()
            .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
            .collect())
    };
    let has_check = move |out: &Out, name: &str| -> Check {
        match check_names(out)?.iter().any(|n| n == name) {
            true => Ok(()),
            false => Err(out.fail(format!("no check {name}"))),
        }
    };
    vec![
        run("doctor", "--json", move |sb| {
            let json = doctor(sb, &["--json"]).json()?;
            match json["schema_version"] == 1 {
                true => Ok(()),
                false => Err(format!("{json}")),
            }
        }),
        run("doctor", "--list-checks", |sb| {
            sb.run(&["doctor", "--list-checks"])
                .code(0)?
                .out_has("cpu-virtualization")?;
            sb.run(&["doctor", "--list-checks", "--json"])
                .code(2)?
                .err_has("--json")?;
            Ok(())
        }),
        run("doctor", "--cpu", move |sb| {
            has_check(
                &doctor(sb, &["--json", "--cpu", "intel"]),
                "karg:intel_iommu=on",
            )
        }),
        run("doctor", "--gpu", move |sb| {
            let args = [
                "--json",
                "--cpu",
                "intel",
                "--vfio-ids",
                "10de:1401,10de:0fba",
            ];
            let mut gpu = args.to_vec();
            gpu.extend(["--gpu", "nvidia"]);
            has_check(&doctor(sb, &gpu), "karg:nouveau.modeset=0")?;
            match check_names(&doctor(sb, &args))?
                .iter()
                .any(|n| n == "karg:nouveau.modeset=0")
            {
                false => Ok(()),
                true => Err("nouveau.modeset=0 planned without an NVIDIA GPU".into()),
            }
        }),
        run("doctor", "--vfio-ids", move |sb| {
            doctor(sb, &["--cpu", "intel", "--vfio-ids", "1234:5678"])
                .code(1)?
                .out_has(&format!("FAIL  device:1234:5678: vfio.ids lists 1234:5678 but no such device is on the host under {}", fixture("intel-nvidia")))?;
            Ok(())
        }),
        run("doctor", "--config", move |sb| {
            let config = sb.config(INTEL);
            doctor(sb, &["--config", &config])
                .out_has(&format!("against the plan from {config}"))?;
            Ok(())
        }),
        run("doctor", "--root", move |sb| {
            doctor(sb, &[]).out_has(&format!("Checking {}", fixture("intel-nvidia")))?;
            Ok(())
        }),
        run("doctor", "--verbose", move |sb| {
            doctor(sb, &["-vv"])
                .err_has(&format!("reading {}/proc/cmdline", fixture("intel-nvidia")))?;
            Ok(())
        }),
        run("doctor", "--quiet", move |sb| {
            let args = ["--cpu", "intel", "--vfio-ids", "1234:5678"];
            doctor(sb, &args).code(1)?.out_has("PASS  ")?;
            let mut quiet = args.to_vec();
            quiet.push("-q");
            let out = doctor(sb, &quiet);
            out.code(1)?
                .out_has("FAIL  device:1234:5678")?
                .out_has("To fix:")?
                .out_lacks("Checking")?;
            match out
                .stdout
                .lines()
                .filter(|l| !l.is_empty())
                .all(|l| l.starts_with("FAIL  ") || l.starts_with("To fix:") || l.starts_with("  "))
            {
                true => Ok(()),
                false => Err(out.fail("more than the failures and their fixes".into())),
            }
        }),
    ]
}

fn test_boot_cases() -> Vec<Case> {
    vec![
        run("test-boot", "<IMAGE>", |sb| {
            sb.run(&["test-boot", MISSING, "--iommu", "intel"])
                .code(2)?
                .err_has(&format!(
                    "IMAGE: {MISSING} is not in podman's local storage"
                ))?;
            Ok(())
        }),
        elsewhere(
            "test-boot",
            "--json",
            "tests/e2e_boot.rs",
            "built_images_boot_with_the_stand_in_on_vfio_pci_under_intel_and_amd_iommus",
        ),
        elsewhere(
            "test-boot",
            "--timeout",
            "tests/e2e_boot.rs",
            "an_image_whose_kargs_d_was_emptied_fails_kargs_and_binding",
        ),
        run("test-boot", "--iommu", |sb| {
            // Without --iommu the config is read for the CPU vendor: here a config that does not read.
            sb.file("passthru.toml", "[cpu]\nvendor = \"arm\"\n");
            sb.run(&["test-boot", MISSING])
                .code(2)?
                .err_has("passthru.toml: cpu.vendor")?;
            sb.run(&["test-boot", MISSING, "--iommu", "amd"])
                .code(2)?
                .err_has("not in podman's local storage")?;
            Ok(())
        }),
        run("test-boot", "--capture", |sb| {
            let file = sb.file("cap", "x");
            sb.run(&["test-boot", MISSING, "--iommu", "intel", "--capture", &file])
                .code(2)?
                .err_has("--capture")?;
            Ok(())
        }),
        run("test-boot", "--list-checks", |sb| {
            sb.run(&["test-boot", "--list-checks"])
                .code(0)?
                .out_has("stand-in-on-vfio-pci")?;
            Ok(())
        }),
        run("test-boot", "--config", |sb| {
            let config = sb.config(
                "[image]\ntag = \"localhost/pt-cli-missing:2\"\n[cpu]\nvendor = \"intel\"\n",
            );
            sb.run(&["test-boot", "--config", &config])
                .code(2)?
                .err_has("localhost/pt-cli-missing:2 is not in podman's local storage")?;
            // With IMAGE and --iommu nothing is left to read from it: refused rather than ignored.
            sb.run(&[
                "test-boot",
                MISSING,
                "--iommu",
                "intel",
                "--config",
                &config,
            ])
            .code(2)?
            .err_has("--config: test-boot reads the config only for")?;
            Ok(())
        }),
        run("test-boot", "--verbose", |sb| {
            sb.run(&["test-boot", "-v", MISSING, "--iommu", "intel"])
                .code(2)?
                .err_has(&format!("+ podman image exists {MISSING}"))?;
            Ok(())
        }),
        run("test-boot", "--quiet", |sb| {
            sb.run(&["test-boot", MISSING, "--iommu", "intel"])
                .code(2)?
                .err_has(&format!("Mounting {MISSING}"))?;
            sb.run(&["test-boot", "-q", MISSING, "--iommu", "intel"])
                .code(2)?
                .only_the_error()?;
            Ok(())
        }),
    ]
}

fn mok_cases() -> Vec<Case> {
    vec![
        run("mok", "--verbose", |sb| {
            sb.run(&["mok", "-v", "new", "keys"])
                .code(0)?
                .err_has("+ openssl ")?;
            Ok(())
        }),
        run("mok", "--quiet", |sb| {
            sb.run(&["mok", "-q", "new", "keys"])
                .code(0)?
                .only_the_error()?;
            match sb.run(&["mok", "-q", "new", "more"]).stdout.is_empty() {
                true => Ok(()),
                false => Err("mok -q new printed the enrollment steps".into()),
            }
        }),
        run("mok new", "<DIR>", |sb| {
            sb.run(&["mok", "new", "keys"])
                .code(0)?
                .out_has("sudo mokutil --import ")?;
            match Path::new(&sb.at("keys/MOK.der")).is_file() {
                true => Ok(()),
                false => Err("no keys/MOK.der".into()),
            }
        }),
        run("mok new", "--name", |sb| {
            sb.run(&["mok", "new", "keys", "--name", "pt cli key"])
                .code(0)?
                .out_has("Made a Machine Owner Key \"pt cli key\"")?;
            Ok(())
        }),
        run("mok new", "--verbose", |sb| {
            sb.run(&["mok", "new", "keys", "-v"])
                .code(0)?
                .err_has("+ openssl ")?;
            Ok(())
        }),
        run("mok new", "--quiet", |sb| {
            let out = sb.run(&["mok", "new", "keys", "-q"]);
            out.code(0)?.only_the_error()?.out_lacks("mokutil")?;
            Ok(())
        }),
    ]
}

const TOOL_IMAGE: &str = "ghcr.io/me/passthru-image@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn fleet(sb: &Sandbox) {
    sb.file(
        "fleet/desk.toml",
        "[image]\nbase = \"quay.io/fedora/fedora-bootc:44\"\ntag = \"ghcr.io/me/vfio\"\n[cpu]\nvendor = \"intel\"\n",
    );
}

fn github(sb: &Sandbox, extra: &[&str]) -> Out {
    fleet(sb);
    let mut args = vec![
        "ci",
        "github",
        "--hosts",
        "fleet",
        "--tool-image",
        TOOL_IMAGE,
    ];
    args.extend(extra);
    sb.run(&args)
}

fn ci_cases() -> Vec<Case> {
    vec![
        run("ci", "--verbose", |sb| {
            fleet(sb);
            sb.run(&[
                "ci",
                "-vv",
                "github",
                "--hosts",
                "fleet",
                "--tool-image",
                TOOL_IMAGE,
            ])
            .code(0)?
            .err_has("reading fleet/desk.toml")?;
            Ok(())
        }),
        run("ci", "--quiet", |sb| {
            fleet(sb);
            sb.run(&[
                "ci",
                "-q",
                "github",
                "--hosts",
                "fleet",
                "--tool-image",
                TOOL_IMAGE,
                "--write",
                "w.yml",
            ])
            .code(0)?
            .only_the_error()?;
            Ok(())
        }),
        run("ci github", "--hosts", |sb| {
            github(sb, &[]).code(0)?.out_has("HOSTS: \"fleet\"")?;
            Ok(())
        }),
        run("ci github", "--tool-image", |sb| {
            github(sb, &[]).code(0)?.out_has(TOOL_IMAGE)?;
            Ok(())
        }),
        run("ci github", "--branch", |sb| {
            github(sb, &["--branch", "release"])
                .code(0)?
                .out_has("- \"release\"")?;
            Ok(())
        }),
        run("ci github", "--schedule", |sb| {
            github(sb, &["--schedule", "5 3 * * *"])
                .code(0)?
                .out_has("cron: \"5 3 * * *\"")?;
            Ok(())
        }),
        run("ci github", "--sign", |sb| {
            github(sb, &[]).code(0)?.out_lacks("cosign sign")?;
            github(sb, &["--sign", "cosign"])
                .code(0)?
                .out_has("cosign sign")?;
            Ok(())
        }),
        run("ci github", "--write", |sb| {
            github(sb, &["--write", "w.yml"])
                .code(0)?
                .err_has("Wrote w.yml")?;
            match sb
                .read("w.yml")
                .starts_with("# Generated by passthru-image")
            {
                true => Ok(()),
                false => Err("w.yml not written".into()),
            }
        }),
        run("ci github", "--force", |sb| {
            sb.file("w.yml", "mine");
            github(sb, &["--write", "w.yml"])
                .code(2)?
                .err_has("--force")?;
            github(sb, &["--write", "w.yml", "--force"]).code(0)?;
            match sb.read("w.yml").starts_with("# Generated") {
                true => Ok(()),
                false => Err("w.yml not replaced".into()),
            }
        }),
        run("ci github", "--verbose", |sb| {
            github(sb, &["-vv"])
                .code(0)?
                .err_has("reading fleet/desk.toml")?;
            Ok(())
        }),
        run("ci github", "--quiet", |sb| {
            github(sb, &["--write", "w.yml"])
                .code(0)?
                .err_has("Wrote")?;
            github(sb, &["--write", "q.yml", "-q"])
                .code(0)?
                .only_the_error()?;
            Ok(())
        }),
    ]
}

fn docs_cases() -> Vec<Case> {
    vec![
        run("completions", "<SHELL>", |sb| {
            sb.run(&["completions", "bash"])
                .code(0)?
                .out_has("complete -F _passthru_image")?;
            sb.run(&["completions", "fish"])
                .code(0)?
                .out_has("complete -c passthru-image")?;
            Ok(())
        }),
        run("completions", "--write", |sb| {
            let stdout = sb.run(&["completions", "zsh"]).stdout;
            sb.run(&["completions", "zsh", "--write", "_passthru-image"])
                .code(0)?
                .out_lacks("#compdef")?;
            match sb.read("_passthru-image") == stdout {
                true => Ok(()),
                false => Err("the written script is not the printed one".into()),
            }
        }),
        // The script is its only output: -v has nothing to add, and adds nothing to it.
        run("completions", "--verbose", |sb| {
            let plain = sb.run(&["completions", "bash"]);
            let verbose = sb.run(&["completions", "bash", "-vv"]);
            verbose.code(0)?;
            match verbose.stdout == plain.stdout && verbose.stderr.is_empty() {
                true => Ok(()),
                false => Err(verbose.fail("-vv changed the script or added to stderr".into())),
            }
        }),
        run("completions", "--quiet", |sb| {
            sb.run(&["completions", "bash", "--write", "c"])
                .code(0)?
                .err_has("Wrote c")?;
            sb.run(&["completions", "bash", "--write", "d", "-q"])
                .code(0)?
                .only_the_error()?;
            Ok(())
        }),
        run("man", "<DIR>", |sb| {
            std::fs::create_dir(sb.at("m")).unwrap();
            sb.run(&["man", "m"]).code(0)?.err_has("man pages to m")?;
            match Path::new(&sb.at("m/passthru-image-doctor.1")).is_file() {
                true => Ok(()),
                false => Err("no m/passthru-image-doctor.1".into()),
            }
        }),
        run("man", "--verbose", |sb| {
            std::fs::create_dir(sb.at("m")).unwrap();
            sb.run(&["man", "m", "-v"])
                .code(0)?
                .err_has("  m/passthru-image-doctor.1")?;
            Ok(())
        }),
        run("man", "--quiet", |sb| {
            std::fs::create_dir(sb.at("m")).unwrap();
            sb.run(&["man", "m", "-q"]).code(0)?.only_the_error()?;
            Ok(())
        }),
    ]
}

/// Checks a proof kept in another test file: the test is there, and the file uses the option.
fn check_elsewhere(file: &str, test: &str, option: &str) -> Check {
    let text = std::fs::read_to_string(repo().join(file)).map_err(|e| format!("{file}: {e}"))?;
    if !text.contains(&format!("fn {test}(")) {
        return Err(format!("{file} has no test {test}"));
    }
    match text.contains(option) {
        true => Ok(()),
        false => Err(format!("{file} never uses {option}")),
    }
}

#[test]
fn every_option_a_command_lists_is_used() {
    let cases = table();
    let mut failures = Vec::new();
    for command in commands() {
        let name = command.join(" ");
        let (listed, help) = listed_options(&command);
        // A command's own options come first, the global ones after them under their own heading.
        let own = help
            .find("\nOptions:")
            .unwrap_or_else(|| panic!("{name}: no options:\n{help}"));
        let global = help
            .find("\nGlobal options:")
            .unwrap_or_else(|| panic!("{name}: no global options:\n{help}"));
        assert!(own < global, "{name}: {help}");
        for option in &listed {
            if option == "--help" {
                // This very run.
                continue;
            }
            let matching: Vec<&Case> = cases
                .iter()
                .filter(|c| c.command == name && c.option == option)
                .collect();
            if matching.is_empty() {
                failures.push(format!(
                    "`{name}` lists {option}, and no case shows it used"
                ));
            }
            for case in matching {
                let result = match &case.proof {
                    Proof::Run(check) => check(&Sandbox::new()),
                    Proof::Elsewhere { file, test } => check_elsewhere(file, test, option),
                };
                if let Err(why) = result {
                    failures.push(format!("`{name}` {option}: {why}"));
                }
            }
        }
        for case in cases.iter().filter(|c| c.command == name) {
            if !listed.iter().any(|o| o == case.option) {
                failures.push(format!(
                    "`{name}` does not list {}, which its case uses",
                    case.option
                ));
            }
        }
    }
    remove_scratch_images();
    assert!(
        failures.is_empty(),
        "{} failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn options_a_command_does_not_use_are_refused() {
    let sb = Sandbox::new();
    // Given before the command, where they used to be global: moved to a command that takes them, else refused.
    for (args, field, says) in [
        (
            &["--config", "/nonexistent.toml", "groups"][..],
            "--config",
            "`groups` reads no config",
        ),
        (
            &["--config", "x.toml", "revert"],
            "--config",
            "`revert` reads no config",
        ),
        (
            &["--config", "x.toml", "mok", "new", "k"],
            "--config",
            "`mok` reads no config",
        ),
        (
            &["--root", "/", "ci", "github", "--tool-image", TOOL_IMAGE],
            "--root",
            "`ci` reads no host",
        ),
        (
            &["--root", "/", "test-boot", MISSING, "--iommu", "intel"],
            "--root",
            "`test-boot` reads no host",
        ),
        (
            &["--root", "/", "completions", "bash"],
            "--root",
            "`completions` reads no host",
        ),
        (
            &["--root", "/", "groups", "--root", "/tmp"],
            "--root",
            "given twice",
        ),
    ] {
        sb.run(args)
            .code(2)
            .and_then(|o| o.err_has(&format!("error: {field}: {says}")))
            .unwrap();
    }
    // After the command they are not options of it at all.
    for args in [
        &["groups", "--config", "x.toml"][..],
        &["revert", "--config", "x.toml"],
        &["apply", "--tag", "localhost/x:1"],
        &["doctor", "--base", "localhost/x:1"],
        &["plan", "--gpu"],
        &["plan", "--vfio-ids"],
        &["doctor", "--list-checks", "--cpu", "intel"],
        &["test-boot", "--list-checks", "--config", "x.toml"],
    ] {
        sb.run(args)
            .code(2)
            .and_then(|o| o.err_has("error: "))
            .unwrap();
    }
    // Before the command, taken as the command's own.
    let config = sb.config(INTEL);
    sb.run(&["--config", &config, "plan"])
        .code(0)
        .and_then(|o| o.out_has(&format!("Plan from {config}")))
        .unwrap();
}

// ---------------------------------------------------------------------------------------------------------
// Verbosity, standard streams, the host's name, the version, PASSTHRU_CONFIG

#[test]
fn verbose_and_quiet_are_one_model_on_every_command() {
    let sb = Sandbox::new();
    let help_of = |command: &[&str]| {
        let mut args = command.to_vec();
        args.push("-h");
        sb.run(&args).stdout
    };
    let verbose_help = |help: &str| {
        section(help, "Global options:")
            .find(|l| l.trim_start().starts_with("-v, --verbose"))
            .map(str::to_owned)
    };
    let top = verbose_help(&help_of(&[])).expect("-v in the top help");
    assert!(top.contains("-vv also every file read"), "{top}");
    for command in commands() {
        let command: Vec<&str> = command.iter().map(String::as_str).collect();
        assert_eq!(
            verbose_help(&help_of(&command)).as_deref(),
            Some(top.as_str()),
            "{command:?}"
        );
    }
    sb.run(&["-v", "-q", "plan"])
        .code(2)
        .and_then(|o| o.err_has("cannot be used with"))
        .unwrap();
    // -vv is the file trace, which -v leaves out.
    let config = sb.config(INTEL);
    sb.run(&["plan", "-v", "--config", &config])
        .code(0)
        .and_then(|o| o.err_lacks("reading "))
        .unwrap();
    sb.run(&["plan", "-vvv", "--config", &config])
        .code(0)
        .and_then(|o| o.err_has("reading "))
        .unwrap();
}

#[test]
fn dash_is_standard_output_for_write_and_standard_input_for_config() {
    let sb = Sandbox::new();
    let root = fixture("intel-nvidia");
    let plain = sb.run(&["detect", "--root", &root]);
    let dash = sb.run(&["detect", "--root", &root, "--write", "-"]);
    dash.code(0).unwrap();
    assert_eq!(dash.stdout, plain.stdout);
    assert!(!Path::new(&sb.at("-")).exists(), "no file named -");
    assert!(!dash.stderr.contains("Wrote"), "{}", dash.stderr);
    for flag in ["--force", "--merge"] {
        sb.run(&["detect", "--root", &root, "--write", "-", flag])
            .code(2)
            .and_then(|o| o.err_has(&format!("{flag}: --write - writes to standard output")))
            .unwrap();
    }
    // What detect proposes, piped into plan (CI: a config made by an earlier step).
    let piped = sb.run_with(
        &["plan", "--config", "-", "--root", &root],
        Some(&plain.stdout),
        &[],
    );
    piped
        .code(0)
        .and_then(|o| o.out_has("Plan from standard input, CPU vendor intel"))
        .unwrap();
    // Bad input from standard input names it.
    sb.run_with(
        &["plan", "--config", "-"],
        Some("[cpu]\nvendor = \"arm\"\n"),
        &[],
    )
    .code(2)
    .and_then(|o| o.err_has("error: standard input: cpu.vendor"))
    .unwrap();
    // Relative paths in it are relative to the current directory.
    std::os::unix::fs::symlink(
        repo().join("tests/fixtures/vendor-reset-standin"),
        sb.at("vr"),
    )
    .unwrap();
    let module = "[cpu]\nvendor = \"intel\"\n[vendor-reset]\nenabled = true\npath = \"vr\"\n";
    sb.run_with(&["plan", "--config", "-"], Some(module), &[])
        .code(0)
        .and_then(|o| o.out_has("Module: "))
        .unwrap();
    let elsewhere = Sandbox::new();
    elsewhere
        .run_with(&["plan", "--config", "-"], Some(module), &[])
        .code(2)
        .and_then(|o| o.err_has("vr/dkms.conf does not exist"))
        .unwrap();
    // The other --write options.
    let wf = github(&sb, &["--write", "-"]);
    wf.code(0)
        .and_then(|o| o.out_has("# Generated by passthru-image"))
        .unwrap();
    sb.run(&["completions", "bash", "--write", "-"])
        .code(0)
        .and_then(|o| o.out_has("_passthru_image"))
        .unwrap();
}

#[test]
fn a_config_on_standard_input_that_is_a_terminal_is_refused() {
    // script(1) gives the binary a terminal on stdin, as an interactive shell would.
    let sb = Sandbox::new();
    let command = format!("{} plan --config -", cargo_bin("passthru-image").display());
    let out = Process::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(sb.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("--config: - reads standard input, which is a terminal"),
        "{text}"
    );
}

#[test]
fn messages_under_root_name_that_host_never_this_machine() {
    let sb = Sandbox::new();
    // The Secure Boot refusal: amd-two-gpus has Secure Boot on, the config builds a module unsigned.
    let secure = fixture("amd-two-gpus");
    let config = sb.config(&format!(
        "[cpu]\nvendor = \"amd\"\n[vendor-reset]\nenabled = true\npath = \"{}\"\n",
        fixture("vendor-reset-standin")
    ));
    sb.run(&["plan", "--config", &config, "--root", &secure])
        .code(2)
        .and_then(|o| {
            o.err_has(&format!(
                "signing: not set, but on the host under {secure} Secure Boot is on"
            ))
        })
        .unwrap();
    // Everything the host commands say about each fixture tree.
    let trees: Vec<String> = std::fs::read_dir(repo().join("tests/fixtures"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().join("sys").is_dir())
        .map(|e| e.path().to_string_lossy().into_owned())
        .collect();
    assert!(trees.len() >= 8, "{trees:?}");
    for root in &trees {
        for args in [
            &["groups"][..],
            &["detect"],
            &["detect", "--device", "0000:09:00.0"],
            &["doctor"],
            &["doctor", "--vfio-ids", "1234:5678,10de:1401"],
            &["plan", "--cpu", "intel", "--vfio-ids", "1234:5678"],
            &[
                "generate",
                "-o",
                "out",
                "--force",
                "--cpu",
                "intel",
                "--vfio-ids",
                "1234:5678",
            ],
        ] {
            let mut all = args.to_vec();
            all.extend(["--root", root]);
            let out = sb.run(&all);
            // Said of the machine the tool runs on, against the root: what a program run here would see.
            let text = format!("{}{}", out.stdout, out.stderr)
                .replace("journalctl without -D would read this machine's", "")
                .replace("would judge this machine, not the root", "");
            for wrong in ["this machine", "this host"] {
                assert!(!text.contains(wrong), "{all:?} says {wrong:?}:\n{text}");
            }
        }
    }
    // On the machine itself, the messages say so.
    sb.run(&[
        "plan",
        "--cpu",
        "intel",
        "--vfio-ids",
        "1234:5678",
        "--root",
        "/",
    ])
    .code(0)
    .and_then(|o| o.err_has("no device of this machine has the ID 1234:5678"))
    .unwrap();
}

#[test]
fn the_version_names_the_commit_it_was_built_from() {
    let sb = Sandbox::new();
    let out = sb.run(&["--version"]);
    out.code(0).unwrap();
    let head = Process::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(head.status.success(), "the suite runs in a git checkout");
    let head = String::from_utf8(head.stdout).unwrap().trim().to_owned();
    assert_eq!(
        out.stdout,
        format!(
            "passthru-image {} (commit {head})\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn passthru_config_names_the_config_where_no_flag_does() {
    let sb = Sandbox::new();
    let config = sb.config("[cpu]\nvendor = \"amd\"\n");
    let other = sb.file("other.toml", INTEL);
    let env = [("PASSTHRU_CONFIG", config.as_str())];
    sb.run_with(&["plan"], None, &env)
        .code(0)
        .and_then(|o| o.out_has(&format!("Plan from {config}, CPU vendor amd")))
        .unwrap();
    // The flag wins, before or after the command.
    for args in [
        &["plan", "--config", &other][..],
        &["--config", &other, "plan"],
    ] {
        sb.run_with(args, None, &env)
            .code(0)
            .and_then(|o| o.out_has(&format!("Plan from {other}")))
            .unwrap();
    }
    // Bad input names the variable.
    sb.run_with(&["plan"], None, &[("PASSTHRU_CONFIG", "/nonexistent.toml")])
        .code(2)
        .and_then(|o| o.err_has("error: PASSTHRU_CONFIG: /nonexistent.toml does not exist"))
        .unwrap();
    sb.file("fleet/desk.toml", INTEL);
    sb.run_with(&["plan", "--hosts", "fleet"], None, &env)
        .code(2)
        .and_then(|o| o.err_has("error: PASSTHRU_CONFIG: cannot be used with --hosts"))
        .unwrap();
    // Commands that read no config do not read it either.
    sb.run_with(
        &["groups", "--root", &fixture("intel-nvidia")],
        None,
        &[("PASSTHRU_CONFIG", "/nonexistent.toml")],
    )
    .code(0)
    .unwrap();
    // Empty is unset.
    sb.run_with(
        &["plan", "--cpu", "intel"],
        None,
        &[("PASSTHRU_CONFIG", "")],
    )
    .code(0)
    .and_then(|o| o.out_has("Plan from the embedded default config"))
    .unwrap();
}
