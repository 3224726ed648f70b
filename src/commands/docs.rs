//! `completions` and `man`: shell completion scripts and man pages, generated from the same clap definitions
//! as the parser, so neither can offer an option the command line does not take.

use std::time::SystemTime;

use anyhow::{Context, Result};
use camino::Utf8PathBuf;
use clap::CommandFactory;

use super::Destination;
use crate::atomic::{self, TreeFile};
use crate::cli::{Cli, CompletionShell, CompletionsArgs, ManArgs};
use crate::error::InputError;
use crate::verbosity::Verbosity;

/// The name the scripts complete and the pages are named after: the installed binary's.
const BIN: &str = "passthru-image";

/// The name bash's script is generated for: clap_complete's bash scripts never complete a subcommand's options
/// when the name has a hyphen (clap-rs/clap#6421: the dispatch loop and the case arms escape it differently), so
/// the script is made for this name and registered for [`BIN`].
const BASH_NAME: &str = "passthru_image";

pub(crate) fn completions(args: &CompletionsArgs) -> Result<()> {
    let script = completion_script(args.shell)?;
    match Destination::of(args.write.as_deref()) {
        Destination::Stdout => out!("{script}"),
        Destination::File(path) => {
            atomic::write_file(path, "--write", script.as_bytes(), 0o644)?;
            infoln!("Wrote {path}");
        }
    }
    Ok(())
}

fn completion_script(shell: CompletionShell) -> Result<String> {
    let name = match shell {
        CompletionShell::Bash => BASH_NAME,
        CompletionShell::Zsh | CompletionShell::Fish => BIN,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell.generator(), &mut Cli::command(), name, &mut script);
    let script = String::from_utf8(script).context("the completion script is not UTF-8")?;
    Ok(match shell {
        CompletionShell::Bash => registered_for_bin(&script),
        CompletionShell::Zsh | CompletionShell::Fish => script,
    })
}

/// The bash script with its `complete -F _passthru_image ... passthru_image` lines completing `passthru-image`.
fn registered_for_bin(script: &str) -> String {
    script
        .lines()
        .map(|line| match line.trim_start().starts_with("complete -F ") {
            true => match line.strip_suffix(&format!(" {BASH_NAME}")) {
                Some(start) => format!("{start} {BIN}\n"),
                None => format!("{line}\n"),
            },
            false => format!("{line}\n"),
        })
        .collect()
}

pub(crate) fn man(args: &ManArgs) -> Result<()> {
    if !args.dir.is_dir() {
        return Err(InputError::new(
            "DIR",
            format!("{} is not an existing directory; create it first", args.dir),
        )
        .into());
    }
    let pages = pages()?;
    let files: Vec<TreeFile> = pages
        .iter()
        .map(|(name, content)| TreeFile {
            path: name,
            mode: 0o644,
            content,
        })
        .collect();
    atomic::write_tree(&args.dir, "DIR", &files, SystemTime::now())?;
    infoln!("Wrote {} man pages to {}", pages.len(), args.dir);
    for (name, _) in &pages {
        crate::verbosity::say(
            Verbosity::Verbose,
            format_args!("  {}", args.dir.join(name)),
        );
    }
    Ok(())
}

/// Every page by its file name: passthru-image.1 for the whole tool, passthru-image-COMMAND.1 for each command
/// and passthru-image-COMMAND-SUBCOMMAND.1 below it (`mok new`), as git names its pages.
fn pages() -> Result<Vec<(Utf8PathBuf, Vec<u8>)>> {
    let mut top = Cli::command().disable_help_subcommand(true);
    // Built, a command knows its subcommands' full names (`passthru-image-mok-new`), which name their pages.
    top.build();
    let mut pages = Vec::new();
    add_pages(top, &mut pages)?;
    Ok(pages)
}

fn add_pages(command: clap::Command, pages: &mut Vec<(Utf8PathBuf, Vec<u8>)>) -> Result<()> {
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        add_pages(sub.clone(), pages)?;
    }
    let man = clap_mangen::Man::new(command);
    let mut page = Vec::new();
    man.render(&mut page)
        .with_context(|| format!("rendering the man page {}", man.get_filename()))?;
    pages.push((man.get_filename().into(), page));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bash_script_completes_the_binary_by_its_name() {
        let script = completion_script(CompletionShell::Bash).unwrap();
        let registered: Vec<&str> = script
            .lines()
            .filter(|l| l.trim_start().starts_with("complete -F "))
            .collect();
        assert!(!registered.is_empty(), "{script}");
        for line in registered {
            assert!(
                line.starts_with("    complete -F _passthru_image ")
                    && line.ends_with(" passthru-image"),
                "{line}"
            );
        }
    }

    #[test]
    fn one_page_for_the_tool_and_each_command() {
        let names: Vec<String> = pages()
            .unwrap()
            .into_iter()
            .map(|(name, _)| name.into_string())
            .collect();
        for name in [
            "passthru-image.1",
            "passthru-image-groups.1",
            "passthru-image-mok.1",
            "passthru-image-mok-new.1",
            "passthru-image-ci-github.1",
            "passthru-image-man.1",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
        assert!(
            !names.iter().any(|n| n.contains("help")),
            "clap's help command is no page: {names:?}"
        );
    }
}
