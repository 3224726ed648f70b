//! Runs an engine command and shows its output: a progress line per build step on a terminal, every line
//! otherwise (CI logs, `-v`). A failure names the step that failed and ends with the engine's last lines.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, IsTerminal};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

/// How many of the engine's last lines a failure shows.
const TAIL_LINES: usize = 25;

/// Runs `argv`, stdout and stderr merged, and fails when it exits non-zero.
pub fn run_streamed(argv: &[OsString], verbose: bool) -> Result<()> {
    let program = argv[0].to_string_lossy().into_owned();
    let reader = duct::cmd(&argv[0], &argv[1..])
        .stderr_to_stdout()
        .unchecked()
        .reader()
        .with_context(|| format!("cannot run {program}"))?;
    let bar = (!verbose && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed}] {msg}").expect("valid template"),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    });
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let mut step: Option<String> = None;
    for line in BufReader::new(&reader).lines() {
        let line = line.with_context(|| format!("reading the output of {program}"))?;
        if is_step(&line) {
            step = Some(line.clone());
        }
        match &bar {
            Some(bar) if is_step(&line) => bar.set_message(line.clone()),
            Some(_) => {}
            None => eprintln!("{line}"),
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let status = reader
        .try_wait()?
        .map(|output| output.status)
        .context("the engine closed its output but did not exit")?;
    if !status.success() {
        let at = step.map_or_else(String::new, |step| format!(" at {step}"));
        // On a terminal the lines were hidden behind the progress display: show the end of them now.
        let shown = if bar.is_some() {
            format!("\n{}", Vec::from(tail).join("\n"))
        } else {
            String::new()
        };
        bail!("{program} failed ({status}){at}{shown}");
    }
    Ok(())
}

/// podman and buildah print `STEP 3/9: RUN …` (`[2/3] STEP 3/9: RUN …` in multi-stage builds), docker's
/// classic builder `Step 3/9 : RUN …`.
fn is_step(line: &str) -> bool {
    let line = line
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
        .filter(|(stage, _)| stage.bytes().all(|b| b.is_ascii_digit() || b == b'/'))
        .map_or(line, |(_, rest)| rest);
    line.strip_prefix("STEP ")
        .or_else(|| line.strip_prefix("Step "))
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
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
        assert!(!is_step("STEP: nothing"));
        assert!(!is_step("--> Using cache 1234"));
    }

    #[test]
    fn a_failing_command_names_its_last_step() {
        let argv: Vec<OsString> = [
            "sh",
            "-c",
            "echo 'STEP 2/5: RUN false'; echo boom >&2; exit 3",
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        let err = run_streamed(&argv, true).unwrap_err().to_string();
        assert!(err.starts_with("sh failed"), "{err}");
        assert!(err.contains("at STEP 2/5: RUN false"), "{err}");
        assert!(
            run_streamed(
                &argv[..1]
                    .iter()
                    .cloned()
                    .chain(["-c".into(), "true".into()])
                    .collect::<Vec<_>>(),
                true
            )
            .is_ok()
        );
    }
}
