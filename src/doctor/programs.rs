//! Checks made by other programs, which see the machine they run on: run only when the root is this
//! machine's own.

use super::Facts;
use crate::checks::{Check, Finding};
use crate::cmd::Cmd;
use crate::host::Machine;

pub(super) static VIRT_HOST_VALIDATE: Check<Facts> = Check {
    name: "virt-host-validate",
    verifies: "libvirt's `virt-host-validate qemu` passes each of its checks (when installed)",
    requires: &[],
    judge: |facts, _| {
        if facts.machine == Machine::Other {
            return Ok(vec![Finding::not_run(format!(
                "the root is {}: virt-host-validate would judge this machine, not the root",
                facts.root.path()
            ))]);
        }
        let Some(program) = find_program("virt-host-validate") else {
            return Ok(vec![Finding::not_run(
                "virt-host-validate (libvirt) is not installed",
            )]);
        };
        let mut text = String::new();
        let run = Cmd::new(program).arg("qemu").stream(|line| {
            text.push_str(line);
            text.push('\n');
        });
        Ok(match run {
            Ok(_) => parse(&text),
            Err(e) => vec![Finding::warn(
                format!("could not run virt-host-validate: {e:#}"),
                "run `virt-host-validate qemu` yourself",
            )],
        })
    },
};

/// One finding per `  QEMU: Checking for hardware virtualization     : PASS` line, about what it checks.
fn parse(text: &str) -> Vec<Finding> {
    let fix = "see `virt-host-validate qemu` and libvirt's documentation for that line";
    text.lines()
        .filter_map(|line| {
            let (what, verdict) = line.rsplit_once(": ")?;
            let what = what.trim().strip_prefix("QEMU:")?.trim();
            let subject = ["Checking for ", "Checking if ", "Checking "]
                .iter()
                .find_map(|p| what.strip_prefix(p))
                .unwrap_or(what);
            let verdict = verdict.trim();
            let finding = if verdict.starts_with("PASS") {
                Finding::pass(verdict)
            } else if verdict.starts_with("WARN") {
                Finding::warn(verdict, fix)
            } else if verdict.starts_with("FAIL") {
                Finding::fail(verdict, fix)
            } else {
                return None;
            };
            Some(finding.about(subject))
        })
        .collect()
}

fn find_program(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;

    #[test]
    fn each_qemu_line_is_its_own_finding() {
        let text = concat!(
            "  QEMU: Checking for hardware virtualization                                 : FAIL ",
            "(Only emulated CPUs are available, performance will be significantly limited)\n",
            "  QEMU: Checking if device /dev/vhost-net exists                             : PASS\n",
            "  QEMU: Checking for secure guest support                                    : WARN ",
            "(Unknown if this platform has Secure Guest support)\n",
            "   LXC: Checking for cgroup 'cpu' controller support                         : PASS\n",
        );
        let findings = parse(text);
        let statuses: Vec<Status> = findings.iter().map(|f| f.status()).collect();
        assert_eq!(statuses, [Status::Fail, Status::Pass, Status::Warn]);
        let debug = format!("{:?}", findings[1]);
        assert!(debug.contains("device /dev/vhost-net exists"), "{debug}");
    }
}
