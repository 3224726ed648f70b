//! Runs an engine command and shows its output: a progress line per build step on a terminal, every line
//! otherwise (CI logs, `-v`), nothing with `-q`. A failure names the step that failed; its error ([`crate::cmd::Failed`]) ends
//! with the engine's last lines.

use std::ffi::OsString;
use std::io::IsTerminal;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cmd::Cmd;
use crate::verbosity::Verbosity;

/// How an engine's output is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Display {
    /// Nothing (`-q`): the last lines show in the error when it fails.
    Nothing,
    /// The step lines on a progress line (a terminal, without `-v`).
    ProgressLine,
    /// Every line (a log, or `-v`).
    EveryLine,
}

impl Display {
    fn for_run(verbosity: Verbosity) -> Display {
        match verbosity {
            Verbosity::Quiet => Display::Nothing,
            Verbosity::Normal if std::io::stderr().is_terminal() => Display::ProgressLine,
            Verbosity::Normal | Verbosity::Verbose | Verbosity::Trace => Display::EveryLine,
        }
    }
}

/// Runs `argv`, stdout and stderr merged, shown as `verbosity` asks, and fails when it exits non-zero.
pub(crate) fn run_streamed(argv: &[OsString], verbosity: Verbosity) -> Result<()> {
    let display = Display::for_run(verbosity);
    let bar = (display == Display::ProgressLine).then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed}] {msg}").expect("valid template"),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    });
    let mut step: Option<String> = None;
    let result = Cmd::new(&argv[0]).args(&argv[1..]).stream(|line| {
        if is_step(line) {
            step = Some(line.to_owned());
        }
        match &bar {
            Some(bar) if is_step(line) => bar.set_message(line.to_owned()),
            Some(_) => {}
            None if display == Display::EveryLine => crate::error::stderr_line(line),
            None => {}
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    match (result, step) {
        (Ok(_), _) => Ok(()),
        (Err(err), Some(step)) => Err(err).with_context(|| format!("at {step}")),
        (Err(err), None) => Err(err),
    }
}

/// Whether an engine output line starts a build step:
/// - podman and buildah: `STEP 3/9: RUN …`, or `[2/3] STEP 3/9: RUN …` in multi-stage builds;
/// - docker's classic builder: `Step 3/9 : RUN …`;
/// - docker's BuildKit (plain progress): `#8 [2/3] RUN …` or `#8 [builder 2/5] RUN …`.
fn is_step(line: &str) -> bool {
    let buildkit = line
        .strip_prefix('#')
        .and_then(|rest| rest.split_once(' '))
        .filter(|(n, _)| is_number(n));
    if let Some((_, rest)) = buildkit {
        return bracketed_count(rest).is_some();
    }
    let line = bracketed_count(line).unwrap_or(line);
    line.strip_prefix("STEP ")
        .or_else(|| line.strip_prefix("Step "))
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(n, _)| is_number(n))
}

/// `rest` of `[… n/m] rest`: a bracket ending in a step count, as stages and BuildKit steps are shown.
fn bracketed_count(line: &str) -> Option<&str> {
    let (inside, rest) = line.strip_prefix('[')?.split_once("] ")?;
    let count = inside.rsplit(' ').next()?;
    let (n, m) = count.split_once('/')?;
    (is_number(n) && is_number(m)).then_some(rest)
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_lines_of_each_engine() {
        assert!(is_step("STEP 3/9: RUN [\"/usr/libexec/x\"]"));
        assert!(is_step("Step 1/4 : FROM base"));
        assert!(is_step("[2/3] STEP 4/4: RUN [\"/usr/libexec/x\"]"));
        assert!(!is_step("[note] STEP 4/4: RUN"));
        assert!(!is_step("[1/2] nothing"));
        assert!(is_step("#8 [2/3] RUN [\"/usr/libexec/x\"]"));
        assert!(is_step("#12 [builder 2/5] COPY src /src"));
        assert!(!is_step("#8 [internal] load metadata for localhost/base"));
        assert!(!is_step("#8 0.312 dracut: Executing: /usr/bin/dracut"));
        assert!(!is_step("STEP: nothing"));
        assert!(!is_step("--> Using cache 1234"));
    }

    fn sh(script: &str) -> Vec<OsString> {
        ["sh", "-c", script]
            .into_iter()
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn output_that_is_not_utf8_is_shown_not_fatal() {
        let err = run_streamed(
            &sh("printf 'STEP 1/1: RUN x\\n\\377\\376 latin-1\\n'; exit 4"),
            Verbosity::Verbose,
        )
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.starts_with("at STEP 1/1: RUN x: sh failed (exit status: 4)")
                && text.ends_with("\u{fffd}\u{fffd} latin-1"),
            "{text}"
        );
    }

    #[test]
    fn a_failing_command_names_its_last_step_and_ends_with_its_last_lines() {
        let err = run_streamed(
            &sh("echo 'STEP 2/5: RUN false'; echo boom >&2; exit 3"),
            Verbosity::Verbose,
        )
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.starts_with("at STEP 2/5: RUN false: sh failed (exit status: 3)"),
            "{text}"
        );
        assert!(text.ends_with("\n  STEP 2/5: RUN false\n  boom"), "{text}");
        assert!(run_streamed(&sh("true"), Verbosity::Quiet).is_ok());
        let quiet = run_streamed(&sh("echo boom; exit 3"), Verbosity::Quiet).unwrap_err();
        assert!(
            format!("{quiet:#}").ends_with("\n  boom"),
            "-q keeps the tail: {quiet:#}"
        );
    }
}
