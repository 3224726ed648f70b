//! Every external program runs through here: podman, buildah, docker, rpm-ostree, lsinitrd, mkfs.ext4, debugfs,
//! du, base64, tar, QEMU, virt-host-validate, git (module sources) and openssl (`mok new`).
//!
//! - A [`Cmd`] is an argument vector, never a shell string: data never meets a shell.
//! - A program that fails leaves its last lines of stderr (or of its output, when it is streamed) in the
//!   error, [`Failed`], next to the command line and the exit status.
//! - JSON output is parsed by [`Cmd::read_json`], with the command named when it is not JSON.
//! - What an exit code means is decided in one place, [`Cmd::meaning`] (rpm-ostree's 77 is "unchanged",
//!   `podman image exists`' 1 is "no", ...).
//!
//! The ways to run: [`Cmd::run`] (output shown on stderr as it comes), [`Cmd::read`] (stdout captured),
//! [`Cmd::read_json`], [`Cmd::answers_yes`] (a yes/no question), [`Cmd::read_stderr`] (for programs that exit
//! 0 after failing), [`Cmd::stream`] (each output line to a callback) and [`Cmd::start`] (in the background,
//! for QEMU).

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::process::ExitStatus;
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;

use crate::verbosity::{self, Verbosity};

/// How many of a program's last lines a failure shows.
const TAIL_LINES: usize = 25;
/// The longest line kept in a tail: a program printing one endless line cannot fill the memory.
const TAIL_LINE_BYTES: usize = 4096;

/// One external program with its arguments (and optionally bytes on its stdin).
#[derive(Debug, Clone)]
pub(crate) struct Cmd {
    argv: Vec<OsString>,
    stdin: Option<Vec<u8>>,
    /// Environment variables set for it, beside the inherited ones.
    env: Vec<(OsString, OsString)>,
    /// Inherited environment variables it must not see.
    env_removed: Vec<OsString>,
}

/// How a program that did its job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Completion {
    Done,
    /// It succeeded and changed nothing (rpm-ostree's `--unchanged-exit-77`).
    Unchanged,
}

/// What an exit status means for this program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meaning {
    Done,
    Unchanged,
    /// The answer to a yes/no question is no.
    No,
    Failed,
}

/// A program ran and failed: which, how, and the last lines it printed.
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) program: String,
    pub(crate) command: String,
    pub(crate) status: ExitStatus,
    pub(crate) tail: Vec<String>,
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed ({}): {}",
            self.program, self.status, self.command
        )?;
        for line in &self.tail {
            write!(f, "\n  {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failed {}

impl Cmd {
    pub(crate) fn new(program: impl Into<OsString>) -> Cmd {
        Cmd {
            argv: vec![program.into()],
            stdin: None,
            env: Vec::new(),
            env_removed: Vec::new(),
        }
    }

    pub(crate) fn arg(mut self, arg: impl Into<OsString>) -> Cmd {
        self.argv.push(arg.into());
        self
    }

    pub(crate) fn args<I: IntoIterator<Item = A>, A: Into<OsString>>(mut self, args: I) -> Cmd {
        self.argv.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the program (git's GIT_TERMINAL_PROMPT=0: no prompt on a terminal).
    pub(crate) fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Cmd {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Keeps an inherited environment variable from the program (openssl's OPENSSL_CONF: the user's config
    /// must not change the key it makes).
    pub(crate) fn env_remove(mut self, key: impl Into<OsString>) -> Cmd {
        self.env_removed.push(key.into());
        self
    }

    /// Feeds `bytes` to the program's stdin (else it reads /dev/null).
    pub(crate) fn stdin_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(bytes.into());
        self
    }

    /// The program's name, without its directory.
    pub(crate) fn program(&self) -> String {
        std::path::Path::new(&self.argv[0])
            .file_name()
            .unwrap_or(self.argv[0].as_os_str())
            .to_string_lossy()
            .into_owned()
    }

    /// The command line as a user would type it (arguments with spaces or quotes shown quoted).
    pub(crate) fn display(&self) -> String {
        self.argv
            .iter()
            .map(|a| {
                let a = a.to_string_lossy();
                if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c))
                {
                    format!("{a:?}")
                } else {
                    a.into_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// What an exit status means, for every program this tool runs. Anything not listed other than 0 is a
    /// failure.
    fn meaning(&self, status: ExitStatus) -> Meaning {
        let args: Vec<&OsStr> = self.argv[1..].iter().map(OsString::as_os_str).collect();
        let starts = |words: &[&str]| {
            args.len() >= words.len() && words.iter().zip(&args).all(|(w, a)| OsStr::new(w) == *a)
        };
        match (self.program().as_str(), status.code()) {
            (_, Some(0)) => Meaning::Done,
            ("rpm-ostree", Some(77)) if args.contains(&OsStr::new("--unchanged-exit-77")) => {
                Meaning::Unchanged
            }
            // "No such image" is 1 for these two; buildah has a single error code (125) for everything.
            ("podman", Some(1)) if starts(&["image", "exists"]) => Meaning::No,
            ("docker", Some(1)) if starts(&["image", "inspect"]) => Meaning::No,
            ("buildah", Some(125)) if starts(&["inspect"]) => Meaning::No,
            // It exits 1 when one of its checks fails; the verdicts are in what it printed.
            ("virt-host-validate", Some(1)) => Meaning::Done,
            _ => Meaning::Failed,
        }
    }

    fn failed(&self, status: ExitStatus, tail: Vec<String>) -> anyhow::Error {
        Failed {
            program: self.program(),
            command: self.display(),
            status,
            tail,
        }
        .into()
    }

    /// The program ready to run, its command line shown first with `-v` (each way to run it comes here once).
    fn expression(&self) -> duct::Expression {
        verbosity::say(Verbosity::Verbose, format_args!("+ {}", self.display()));
        let mut expression = duct::cmd(&self.argv[0], &self.argv[1..]).unchecked();
        for (key, value) in &self.env {
            expression = expression.env(key, value);
        }
        for key in &self.env_removed {
            expression = expression.env_remove(key);
        }
        match &self.stdin {
            Some(bytes) => expression.stdin_bytes(bytes.clone()),
            None => expression.stdin_null(),
        }
    }

    fn cannot_start(&self) -> String {
        format!("cannot run {} (is it installed?)", self.program())
    }

    /// Runs it to the end with its output (stdout and stderr) shown on our stderr as it comes, as rpm-ostree's
    /// progress should be; with `-q` only the last lines show, in the error when it fails.
    pub(crate) fn run(&self) -> Result<Completion> {
        self.stream(|line| verbosity::say(Verbosity::Normal, line))
    }

    /// Runs it to the end, each line of its output (stdout and stderr together) given to `on_line` as it
    /// comes; the last lines are kept for the error. Bytes that are not UTF-8 (compilers, dracut) are shown
    /// lossily rather than failing the run.
    pub(crate) fn stream(&self, mut on_line: impl FnMut(&str)) -> Result<Completion> {
        let reader = self
            .expression()
            .stderr_to_stdout()
            .reader()
            .with_context(|| self.cannot_start())?;
        let mut tail = Tail::default();
        let mut output = BufReader::new(&reader);
        let mut raw = Vec::new();
        loop {
            raw.clear();
            match output.read_until(b'\n', &mut raw) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    // Dropping the reader does not stop the program: stop it so it does not run on unattended.
                    let _ = reader.kill();
                    return Err(e)
                        .with_context(|| format!("reading the output of {}", self.program()));
                }
            }
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\n', '\r']);
            on_line(line);
            tail.push(line);
        }
        let status = reader
            .try_wait()?
            .map(|output| output.status)
            .with_context(|| format!("{} closed its output but did not exit", self.program()))?;
        match self.meaning(status) {
            Meaning::Done => Ok(Completion::Done),
            Meaning::Unchanged => Ok(Completion::Unchanged),
            Meaning::No | Meaning::Failed => Err(self.failed(status, tail.lines())),
        }
    }

    /// Runs it quietly and returns its stdout; its stderr tail goes in the error.
    pub(crate) fn read_bytes(&self) -> Result<Vec<u8>> {
        let quiet = self.quietly()?;
        match self.meaning(quiet.status) {
            Meaning::Done => Ok(quiet.stdout),
            _ => Err(self.failed(quiet.status, quiet.stderr)),
        }
    }

    /// Runs it quietly and returns the last lines of its stderr, for programs that report failed work only in
    /// words and exit 0 all the same (debugfs).
    pub(crate) fn read_stderr(&self) -> Result<Vec<String>> {
        let quiet = self.quietly()?;
        match self.meaning(quiet.status) {
            Meaning::Done => Ok(quiet.stderr),
            _ => Err(self.failed(quiet.status, quiet.stderr)),
        }
    }

    /// [`Cmd::read_bytes`] as UTF-8 text.
    pub(crate) fn read(&self) -> Result<String> {
        String::from_utf8(self.read_bytes()?)
            .with_context(|| format!("the output of {} is not UTF-8", self.display()))
    }

    /// [`Cmd::read_bytes`] parsed as JSON.
    pub(crate) fn read_json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.read_bytes()?)
            .with_context(|| format!("reading the JSON output of {}", self.display()))
    }

    /// Runs a program that answers a yes/no question with its exit status (`podman image exists`).
    pub(crate) fn answers_yes(&self) -> Result<bool> {
        let quiet = self.quietly()?;
        match self.meaning(quiet.status) {
            Meaning::Done => Ok(true),
            Meaning::No => Ok(false),
            _ => Err(self.failed(quiet.status, quiet.stderr)),
        }
    }

    /// Runs it with stdout captured and stderr's tail kept.
    fn quietly(&self) -> Result<Quiet> {
        let (stderr, tail) = stderr_tail()?;
        let result = self.expression().stdout_capture().stderr_file(stderr).run();
        // The expression (and its copy of the pipe's write end) is gone: the tail ends with the program.
        let tail = tail.join().unwrap_or_default();
        let output = result.with_context(|| self.cannot_start())?;
        Ok(Quiet {
            status: output.status,
            stderr: tail,
            stdout: output.stdout,
        })
    }

    /// Starts it in the background (stdout to /dev/null, stderr's tail kept) and returns at once.
    pub(crate) fn start(&self) -> Result<Running> {
        let (stderr, tail) = stderr_tail()?;
        let handle = self
            .expression()
            .stdout_null()
            .stderr_file(stderr)
            .start()
            .with_context(|| self.cannot_start())?;
        Ok(Running {
            handle,
            tail,
            cmd: self.clone(),
        })
    }
}

/// How a program run by [`Cmd::quietly`] ended.
struct Quiet {
    status: ExitStatus,
    stderr: Vec<String>,
    stdout: Vec<u8>,
}

/// A program started by [`Cmd::start`].
pub(crate) struct Running {
    handle: duct::Handle,
    tail: JoinHandle<Vec<String>>,
    cmd: Cmd,
}

/// How a background program ended.
#[derive(Debug)]
pub(crate) struct Ended {
    /// Its last lines of stderr.
    pub(crate) stderr: Vec<String>,
    /// Whether its exit status means success.
    pub(crate) ok: bool,
}

impl Running {
    /// Whether it has exited (without waiting).
    pub(crate) fn has_exited(&self) -> Result<bool> {
        Ok(self.handle.try_wait()?.is_some())
    }

    pub(crate) fn kill(&self) -> Result<()> {
        self.handle
            .kill()
            .with_context(|| format!("killing {}", self.cmd.program()))
    }

    /// Waits for it to end and collects its stderr tail.
    pub(crate) fn wait(self) -> Result<Ended> {
        let status = self.handle.wait()?.status;
        drop(self.handle);
        let stderr = self.tail.join().unwrap_or_default();
        Ok(Ended {
            ok: self.cmd.meaning(status) == Meaning::Done,
            stderr,
        })
    }
}

/// A pipe for a program's stderr and a thread keeping its last lines.
fn stderr_tail() -> Result<(std::io::PipeWriter, JoinHandle<Vec<String>>)> {
    let (reader, writer) = std::io::pipe().context("making a pipe for a program's stderr")?;
    let thread = std::thread::spawn(move || {
        let mut tail = Tail::default();
        let mut reader = BufReader::new(reader);
        let mut raw = Vec::new();
        loop {
            raw.clear();
            match reader
                .by_ref()
                .take(TAIL_LINE_BYTES as u64 * 4)
                .read_until(b'\n', &mut raw)
            {
                Ok(0) | Err(_) => break,
                Ok(_) => tail.push(String::from_utf8_lossy(&raw).trim_end_matches(['\n', '\r'])),
            }
        }
        tail.lines()
    });
    Ok((writer, thread))
}

/// The last [`TAIL_LINES`] lines seen, each cut at [`TAIL_LINE_BYTES`].
#[derive(Default)]
struct Tail(VecDeque<String>);

impl Tail {
    fn push(&mut self, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        if self.0.len() == TAIL_LINES {
            self.0.pop_front();
        }
        let mut end = line.len().min(TAIL_LINE_BYTES);
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        self.0.push_back(line[..end].to_owned());
    }

    fn lines(self) -> Vec<String> {
        self.0.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Cmd {
        Cmd::new("sh").args(["-c", script])
    }

    #[test]
    fn environment_variables_reach_the_program() {
        let out = sh("echo \"$PASSTHRU_TEST_VALUE\"")
            .env("PASSTHRU_TEST_VALUE", "set")
            .read()
            .unwrap();
        assert_eq!(out, "set\n");
    }

    #[test]
    fn a_failure_keeps_the_command_its_status_and_the_tail_of_stderr() {
        let err = sh("for i in $(seq 1 40); do echo line $i >&2; done; echo out; exit 3")
            .read()
            .unwrap_err();
        let failed = err.downcast_ref::<Failed>().expect("a Failed");
        assert_eq!(failed.status.code(), Some(3));
        assert_eq!(failed.tail.len(), TAIL_LINES);
        assert_eq!(failed.tail.last().map(String::as_str), Some("line 40"));
        let text = err.to_string();
        assert!(
            text.starts_with("sh failed (exit status: 3): sh -c \"for i"),
            "{text}"
        );
        assert!(text.ends_with("\n  line 40"), "{text}");
    }

    #[test]
    fn stdout_is_read_and_stdin_fed() {
        assert_eq!(sh("tr a-z A-Z").stdin_bytes("abc").read().unwrap(), "ABC");
        let value: serde_json::Value = sh("echo '{\"transaction\": null}'").read_json().unwrap();
        assert!(value["transaction"].is_null());
        let err = sh("echo not json")
            .read_json::<serde_json::Value>()
            .unwrap_err();
        assert!(err.to_string().contains("JSON output of sh -c"), "{err}");
    }

    #[test]
    fn exit_codes_mean_what_the_program_says() {
        let exit = |code: i32| {
            use std::os::unix::process::ExitStatusExt;
            ExitStatus::from_raw(code << 8)
        };
        let kargs = Cmd::new("/usr/bin/rpm-ostree").args(["kargs", "--unchanged-exit-77"]);
        assert_eq!(kargs.meaning(exit(77)), Meaning::Unchanged);
        assert_eq!(
            Cmd::new("rpm-ostree").arg("kargs").meaning(exit(77)),
            Meaning::Failed
        );
        let exists = Cmd::new("podman").args(["image", "exists", "x"]);
        assert_eq!(exists.meaning(exit(1)), Meaning::No);
        assert_eq!(exists.meaning(exit(125)), Meaning::Failed);
        assert_eq!(
            Cmd::new("podman").arg("build").meaning(exit(1)),
            Meaning::Failed
        );
        assert_eq!(
            Cmd::new("virt-host-validate").meaning(exit(1)),
            Meaning::Done
        );
    }

    #[test]
    fn streamed_lines_reach_the_callback_and_the_error() {
        let mut seen = Vec::new();
        let err = sh("echo one; printf 'two \\377\\n' >&2; exit 4")
            .stream(|line| seen.push(line.to_owned()))
            .unwrap_err();
        assert_eq!(seen, ["one", "two \u{fffd}"]);
        assert!(
            err.to_string().ends_with("\n  one\n  two \u{fffd}"),
            "{err}"
        );
        assert!(sh("true").stream(|_| {}).is_ok());
    }

    #[test]
    fn a_missing_program_says_so() {
        let err = Cmd::new("passthru-no-such-program").read().unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot run passthru-no-such-program"),
            "{err}"
        );
    }

    #[test]
    fn background_programs_end_with_their_stderr() {
        let running = sh("echo starting >&2; exit 5").start().unwrap();
        while !running.has_exited().unwrap() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let ended = running.wait().unwrap();
        assert!(!ended.ok);
        assert_eq!(ended.stderr, ["starting"]);

        let running = sh("exec sleep 30").start().unwrap();
        assert!(!running.has_exited().unwrap());
        running.kill().unwrap();
        assert!(!running.wait().unwrap().ok);
    }
}
