//! One way to declare, run and print a check, for `doctor` and `test-boot` alike.
//!
//! Each check is a `static` [`Check`]: its name, what it verifies and the function that judges it, declared
//! once (bootc's `lib/src/lints.rs` is the model). [`run`] runs a list of them in order over one set of facts;
//! [`print`] prints the outcome for people, and the [`Report`] serializes for `--json`.
//!
//! A check answers its question once, or once per subject (each planned karg, each planned device): its
//! outcomes are then named `check:subject`. Two rules keep a report from repeating itself:
//! - a check whose [`Check::requires`] failed is not run; it says which check failed instead;
//! - a failure that follows from an earlier one names it ([`Finding::because`]) and gives no fix of its own,
//!   and equal fixes are printed once, with the checks they answer: one fix line per cause, not per symptom.

use std::io::{IsTerminal, Write};

use anyhow::{Context, Result};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Status {
    Pass,
    /// Works, but probably not as the user hopes.
    Warn,
    Fail,
    /// Not decidable here (a required check failed, the facts are not there, a program may not run).
    NotRun,
}

impl Status {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::NotRun => "SKIP",
        }
    }

    /// The ANSI colour of the label on a terminal.
    fn colour(self) -> &'static str {
        match self {
            Status::Pass => "\x1b[32m",
            Status::Warn => "\x1b[33m",
            Status::Fail => "\x1b[31m",
            Status::NotRun => "\x1b[2m",
        }
    }
}

/// A check's function: judges the facts, sees the outcomes of the checks before it.
pub(crate) type Judge<F> = fn(&F, &Earlier) -> Result<Vec<Finding>>;

/// One check, declared once as a `static`.
pub(crate) struct Check<F: 'static> {
    /// `kebab-case`, unique in its list; the prefix of every outcome's name.
    pub(crate) name: &'static str,
    /// What a pass means, in one line (`--list-checks`).
    pub(crate) verifies: &'static str,
    /// Checks that must not have failed for this one to be judged at all.
    pub(crate) requires: &'static [&'static Check<F>],
    /// Its findings: none when there is nothing to judge (no planned device), one, or one per subject. An
    /// error stops the whole run: the facts could not be read (bad input), not a failed check.
    pub(crate) judge: Judge<F>,
}

/// What a check found about one subject (or about the host as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    subject: Option<String>,
    status: Status,
    detail: String,
    fix: Option<String>,
    cause: Option<String>,
}

impl Finding {
    pub(crate) fn pass(detail: impl Into<String>) -> Finding {
        Finding::new(Status::Pass, detail.into(), None)
    }

    pub(crate) fn warn(detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding::new(Status::Warn, detail.into(), Some(fix.into()))
    }

    pub(crate) fn fail(detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding::new(Status::Fail, detail.into(), Some(fix.into()))
    }

    /// A failure with nothing for the user to do but read the detail (test-boot's verdicts).
    pub(crate) fn fail_plain(detail: impl Into<String>) -> Finding {
        Finding::new(Status::Fail, detail.into(), None)
    }

    pub(crate) fn not_run(reason: impl Into<String>) -> Finding {
        Finding::new(Status::NotRun, reason.into(), None)
    }

    fn new(status: Status, detail: String, fix: Option<String>) -> Finding {
        Finding {
            subject: None,
            status,
            detail,
            fix,
            cause: None,
        }
    }

    /// What this finding is about, when the check answers once per subject.
    pub(crate) fn about(mut self, subject: impl std::fmt::Display) -> Finding {
        self.subject = Some(subject.to_string());
        self
    }

    /// The earlier outcome (its name) this one follows from, if any: the finding then gives no fix of its
    /// own, the cause's fix is the one to apply. A pass has no cause.
    pub(crate) fn because(mut self, cause: Option<String>) -> Finding {
        if self.status != Status::Pass && cause.is_some() {
            self.fix = None;
            self.cause = cause;
        }
        self
    }

    /// For the unit tests of each check, which judge a finding by its status.
    #[cfg(test)]
    pub(crate) fn status(&self) -> Status {
        self.status
    }
}

/// One outcome of a run: a finding under its check's name.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Outcome {
    /// `check` or `check:subject`.
    pub(crate) name: String,
    pub(crate) status: Status,
    pub(crate) detail: String,
    /// What to do; `None` when it passed, or when it follows from `caused_by`.
    pub(crate) fix: Option<String>,
    /// The earlier outcome whose failure explains this one.
    pub(crate) caused_by: Option<String>,
    #[serde(skip)]
    check: &'static str,
    #[serde(skip)]
    subject: Option<String>,
}

impl Outcome {
    fn new(check: &'static str, finding: Finding) -> Outcome {
        Outcome {
            name: match &finding.subject {
                Some(subject) => format!("{check}:{subject}"),
                None => check.to_owned(),
            },
            status: finding.status,
            detail: finding.detail,
            fix: finding.fix,
            caused_by: finding.cause,
            check,
            subject: finding.subject,
        }
    }

    fn is(&self, check: &str, subject: Option<&str>) -> bool {
        self.check == check && subject.is_none_or(|s| self.subject.as_deref() == Some(s))
    }
}

/// The outcomes of the checks run so far, for a check that wants to name the cause of its failure.
pub(crate) struct Earlier<'a>(&'a [Outcome]);

impl Earlier<'_> {
    /// The name of the first failed outcome of `check` (about `subject`, when given).
    pub(crate) fn failed<F>(&self, check: &Check<F>, subject: Option<&str>) -> Option<String> {
        self.0
            .iter()
            .find(|o| o.status == Status::Fail && o.is(check.name, subject))
            .map(|o| o.name.clone())
    }

    /// The first of `causes` that failed, in the order given (the most direct cause first).
    pub(crate) fn first_failed<'c, F: 'static>(
        &self,
        causes: impl IntoIterator<Item = (&'c Check<F>, Option<&'c str>)>,
    ) -> Option<String> {
        causes
            .into_iter()
            .find_map(|(check, subject)| self.failed(check, subject))
    }
}

/// Every outcome of a run, in the order the checks ran.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub(crate) struct Report {
    pub(crate) outcomes: Vec<Outcome>,
}

/// A fix and the outcomes it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Fix {
    pub(crate) fix: String,
    pub(crate) checks: Vec<String>,
}

impl Report {
    pub(crate) fn count(&self, status: Status) -> usize {
        self.outcomes.iter().filter(|o| o.status == status).count()
    }

    pub(crate) fn passed(&self) -> bool {
        self.count(Status::Fail) == 0
    }

    /// Each distinct fix once, in the order of first need, with the outcomes it answers.
    pub(crate) fn fixes(&self) -> Vec<Fix> {
        let mut fixes: Vec<Fix> = Vec::new();
        for outcome in &self.outcomes {
            let Some(fix) = &outcome.fix else { continue };
            match fixes.iter_mut().find(|f| f.fix == *fix) {
                Some(known) => known.checks.push(outcome.name.clone()),
                None => fixes.push(Fix {
                    fix: fix.clone(),
                    checks: vec![outcome.name.clone()],
                }),
            }
        }
        fixes
    }

    /// The failed outcomes alone, with their fixes: what a quiet run shows.
    pub(crate) fn failures(&self) -> Report {
        Report {
            outcomes: self
                .outcomes
                .iter()
                .filter(|o| o.status == Status::Fail)
                .cloned()
                .collect(),
        }
    }

    /// The outcome named `name`, for the unit tests that look at one.
    #[cfg(test)]
    pub(crate) fn get(&self, name: &str) -> Option<&Outcome> {
        self.outcomes.iter().find(|o| o.name == name)
    }
}

/// Runs `checks` in order over `facts`.
pub(crate) fn run<F>(checks: &[&Check<F>], facts: &F) -> Result<Report> {
    let mut outcomes: Vec<Outcome> = Vec::new();
    for check in checks {
        let findings = match blocker(check, &outcomes) {
            Some(blocker) => {
                vec![
                    Finding::not_run(format!("not checked: {blocker} failed"))
                        .because(Some(blocker)),
                ]
            }
            None => (check.judge)(facts, &Earlier(&outcomes))
                .with_context(|| format!("running the check {}", check.name))?,
        };
        outcomes.extend(findings.into_iter().map(|f| Outcome::new(check.name, f)));
    }
    Ok(Report { outcomes })
}

/// The first outcome of a required check that failed or could not be judged.
fn blocker<F>(check: &Check<F>, outcomes: &[Outcome]) -> Option<String> {
    check.requires.iter().find_map(|required| {
        outcomes
            .iter()
            .find(|o| o.check == required.name && matches!(o.status, Status::Fail | Status::NotRun))
            .map(|o| o.name.clone())
    })
}

/// Whether labels are coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Colour {
    On,
    Off,
}

impl Colour {
    /// On when stdout is a terminal and NO_COLOR (https://no-color.org) is unset or empty.
    pub(crate) fn for_stdout() -> Colour {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        match std::io::stdout().is_terminal() && !no_color {
            true => Colour::On,
            false => Colour::Off,
        }
    }

    fn label(self, status: Status) -> String {
        match self {
            Colour::On => format!("{}{}\x1b[0m", status.colour(), status.label()),
            Colour::Off => status.label().to_owned(),
        }
    }
}

/// Most outcome names listed under a fix; the rest are counted.
const NAMES_PER_FIX: usize = 4;

/// Prints one line per outcome, then each fix once with the outcomes it answers.
pub(crate) fn print(report: &Report, out: &mut impl Write, colour: Colour) -> std::io::Result<()> {
    let fixes = report.fixes();
    for outcome in &report.outcomes {
        let note = match (&outcome.caused_by, &outcome.fix) {
            // A check that was not run says why in its detail.
            (Some(_), _) if outcome.status == Status::NotRun => String::new(),
            (Some(cause), _) => format!(" (because {cause} failed)"),
            (None, Some(fix)) => {
                let number = fixes.iter().position(|f| f.fix == *fix).unwrap_or(0) + 1;
                format!(" [fix {number}]")
            }
            (None, None) => String::new(),
        };
        writeln!(
            out,
            "{}  {}: {}{note}",
            colour.label(outcome.status),
            outcome.name,
            outcome.detail
        )?;
    }
    if fixes.is_empty() {
        return Ok(());
    }
    writeln!(out, "\nTo fix:")?;
    for (number, fix) in fixes.iter().enumerate() {
        writeln!(out, "  [fix {}] {}", number + 1, fix.fix)?;
        writeln!(out, "          for {}", some_of(&fix.checks, NAMES_PER_FIX))?;
    }
    Ok(())
}

/// `a, b, c and 5 more`.
pub(crate) fn some_of(items: &[impl AsRef<str>], shown: usize) -> String {
    let listed: Vec<&str> = items.iter().take(shown).map(AsRef::as_ref).collect();
    match items.len().saturating_sub(shown) {
        0 => listed.join(", "),
        more => format!("{} and {more} more", listed.join(", ")),
    }
}

/// Prints each check's name and what it verifies (`--list-checks`).
pub(crate) fn list<F>(checks: &[&Check<F>], out: &mut impl Write) -> std::io::Result<()> {
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for check in checks {
        writeln!(out, "{:width$}  {}", check.name, check.verifies)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TestFacts of the test checks: what each of them finds.
    struct TestFacts {
        base: Status,
        items: Vec<(&'static str, Status)>,
    }

    static BASE: Check<TestFacts> = Check {
        name: "base",
        verifies: "the base is there",
        requires: &[],
        judge: |facts, _| {
            Ok(vec![match facts.base {
                Status::Pass => Finding::pass("there"),
                _ => Finding::fail("missing", "install the base"),
            }])
        },
    };

    static ITEM: Check<TestFacts> = Check {
        name: "item",
        verifies: "each item works",
        requires: &[],
        judge: |facts, earlier| {
            Ok(facts
                .items
                .iter()
                .map(|(name, status)| {
                    let finding = match status {
                        Status::Pass => Finding::pass("works"),
                        _ => Finding::fail("broken", "apply the plan and reboot"),
                    };
                    finding.about(name).because(earlier.failed(&BASE, None))
                })
                .collect())
        },
    };

    static NEEDS_BASE: Check<TestFacts> = Check {
        name: "needs-base",
        verifies: "something on top of the base",
        requires: &[&BASE],
        judge: |_, _| Ok(vec![Finding::pass("fine")]),
    };

    static NOTHING: Check<TestFacts> = Check {
        name: "nothing",
        verifies: "a check with nothing to judge",
        requires: &[],
        judge: |_, _| Ok(Vec::new()),
    };

    const ALL: &[&Check<TestFacts>] = &[&BASE, &ITEM, &NEEDS_BASE, &NOTHING];

    fn printed(report: &Report) -> String {
        let mut out = Vec::new();
        print(report, &mut out, Colour::Off).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_quiet_report_holds_the_failures_and_their_fixes_alone() {
        let facts = TestFacts {
            base: Status::Pass,
            items: vec![("a", Status::Pass), ("b", Status::Fail)],
        };
        let report = run(ALL, &facts).unwrap();
        let text = printed(&report.failures());
        assert_eq!(
            text,
            concat!(
                "FAIL  item:b: broken [fix 1]\n",
                "\n",
                "To fix:\n",
                "  [fix 1] apply the plan and reboot\n",
                "          for item:b\n",
            )
        );
        let facts = TestFacts {
            base: Status::Pass,
            items: vec![("a", Status::Pass)],
        };
        assert_eq!(printed(&run(ALL, &facts).unwrap().failures()), "");
    }

    #[test]
    fn a_fix_is_printed_once_for_every_check_it_answers() {
        let facts = TestFacts {
            base: Status::Pass,
            items: vec![
                ("a", Status::Fail),
                ("b", Status::Fail),
                ("c", Status::Pass),
            ],
        };
        let report = run(ALL, &facts).unwrap();
        let names: Vec<&str> = report.outcomes.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["base", "item:a", "item:b", "item:c", "needs-base"]);
        assert!(!report.passed());
        assert_eq!(
            report.fixes(),
            [Fix {
                fix: "apply the plan and reboot".into(),
                checks: vec!["item:a".into(), "item:b".into()]
            }]
        );
        let text = printed(&report);
        assert_eq!(
            text.matches("apply the plan and reboot").count(),
            1,
            "{text}"
        );
        assert!(text.contains("FAIL  item:a: broken [fix 1]\n"), "{text}");
        assert!(
            text.contains("  [fix 1] apply the plan and reboot\n          for item:a, item:b\n")
        );
    }

    #[test]
    fn a_failure_that_follows_from_another_names_it_instead_of_a_fix() {
        let facts = TestFacts {
            base: Status::Fail,
            items: vec![("a", Status::Fail), ("c", Status::Pass)],
        };
        let report = run(ALL, &facts).unwrap();
        let a = report.get("item:a").unwrap();
        assert_eq!(
            (a.fix.as_deref(), a.caused_by.as_deref()),
            (None, Some("base"))
        );
        // A pass has no cause, whatever failed before it.
        assert_eq!(report.get("item:c").unwrap().caused_by, None);
        let blocked = report.get("needs-base").unwrap();
        assert_eq!(blocked.status, Status::NotRun);
        assert_eq!(blocked.detail, "not checked: base failed");
        let text = printed(&report);
        assert_eq!(text.matches("[fix").count(), 2, "{text}");
        assert!(
            text.contains("FAIL  item:a: broken (because base failed)\n"),
            "{text}"
        );
        assert!(
            text.contains("SKIP  needs-base: not checked: base failed\n"),
            "{text}"
        );
        assert!(
            text.ends_with("  [fix 1] install the base\n          for base\n"),
            "{text}"
        );
    }

    #[test]
    fn labels_are_coloured_only_when_asked_and_lists_are_cut() {
        let report = run(
            &[&BASE],
            &TestFacts {
                base: Status::Pass,
                items: vec![],
            },
        )
        .unwrap();
        let mut out = Vec::new();
        print(&report, &mut out, Colour::On).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\x1b[32mPASS\x1b[0m  base: there\n"
        );
        assert_eq!(printed(&report), "PASS  base: there\n");
        assert_eq!(some_of(&["a", "b", "c"], 2), "a, b and 1 more");
        assert_eq!(some_of(&["a"], 2), "a");
    }

    #[test]
    fn the_list_names_each_check_with_what_it_verifies() {
        let mut out = Vec::new();
        list(ALL, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("base        the base is there\n"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 4);
    }
}
