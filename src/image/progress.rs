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
    let mut output = BufReader::new(&reader);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        // Compilers and dracut may print bytes that are not UTF-8: show them lossily rather than fail the build.
        match output.read_until(b'\n', &mut raw) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                // Dropping the reader does not stop the engine: stop it so it does not build on unattended.
                let _ = reader.kill();
                return Err(e).with_context(|| format!("reading the output of {program}"));
            }
        }
        let line = String::from_utf8_lossy(&raw)
            .trim_end_matches(['\n', '\r'])
            .to_owned();
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

    #[test]
    fn output_that_is_not_utf8_is_shown_not_fatal() {
        let argv: Vec<OsString> = [
            "sh",
            "-c",
            "printf 'STEP 1/1: RUN x\\n\\377\\376 latin-1\\n'; exit 4",
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        let err = run_streamed(&argv, true).unwrap_err().to_string();
        assert!(
            err.contains("exit status: 4") && err.contains("at STEP 1/1: RUN x"),
            "{err}"
        );
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
