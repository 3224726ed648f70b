//! Property tests of config -> plan -> render on generated configs, many of them wrong on purpose:
//! - every step either succeeds or fails with bad input (exit 2), never a panic or another error;
//! - what is rendered always re-parses: kargs.d by bootc's rules (the TOML schema, and every entry exactly one
//!   kernel argument) with the plan's kargs in its order, and every Containerfile `RUN` as a JSON array;
//! - nothing unvalidated reaches it: a user's kernel argument that made it into the plan holds none of the
//!   characters the rules refuse, and no rendered line carries a control character.
//!
//! `cargo test` runs 64 cases per property (`PROPTEST_CASES` sets another count); tests/bench/props-long.sh runs
//! many more.

use passthru_image::config::Config;
use passthru_image::error::{InputError, exit_code};
use passthru_image::image::render::{self, BuildContext};
use passthru_image::kargs::Karg;
use passthru_image::kargs_d::KargsD;
use passthru_image::plan::{Plan, Target};
use passthru_image::root::Root;
use proptest::prelude::*;
use serde::Deserialize;
use toml::{Table, Value};

const KARGS_D: &str = "layers/host/usr/lib/bootc/kargs.d/50-passthru.toml";

fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 64;
    }
    config
}

/// A value for a config field: plausible, or (in a hostile config) now and then anything: printable ASCII with
/// quotes, spaces and shell characters, any Unicode, control characters.
fn text(plausible: &'static str, hostile: bool) -> BoxedStrategy<String> {
    if !hostile {
        return plausible.boxed();
    }
    prop_oneof![
        6 => plausible,
        1 => "[ -~]{0,24}",
        1 => "\\PC{0,12}",
        1 => "[\\t\\n\\r\\x00 \"'$;`\\\\]{1,4}",
    ]
    .boxed()
}

fn karg(hostile: bool) -> BoxedStrategy<String> {
    let plausible = text(
        "[a-z][a-z0-9_.-]{0,10}(=[a-zA-Z0-9:,._/+-]{0,16})?",
        hostile,
    );
    if !hostile {
        return plausible;
    }
    prop_oneof![
        6 => plausible,
        1 => prop::sample::select(vec![
            "iommu=off", "iommu=pt", "intel_iommu=off", "amd_iommu=off", "vfio-pci.ids=10de:1401",
            "video=efifb:off", "rd.driver.pre=vfio", "nouveau.modeset=1", "quiet", "dyndbg=\"file x +p\"",
            "-x", "--unchanged-exit-77", "a=b c", "=1",
        ])
        .prop_map(str::to_owned),
    ]
    .boxed()
}

fn image_ref(hostile: bool) -> BoxedStrategy<String> {
    text(
        "(quay\\.io/fedora/fedora-bootc|localhost/[a-z0-9]{1,8}|ghcr\\.io/[a-z]{1,6}/[a-z0-9]{1,4}(-[a-z0-9]{1,4})?)(:[a-z0-9][a-z0-9._-]{0,7})?",
        hostile,
    )
}

/// At least `min` of `items` (none at all in a hostile config), the items after the first `plain` ones only in a
/// hostile config.
fn some_of(
    items: &[&'static str],
    plain: usize,
    min: usize,
    hostile: bool,
) -> BoxedStrategy<Vec<&'static str>> {
    let (items, min) = match hostile {
        true => (items.to_vec(), 0),
        false => (items[..plain].to_vec(), min),
    };
    let len = items.len();
    prop::sample::subsequence(items, min..=len).boxed()
}

fn strings(items: Vec<String>) -> Value {
    Value::Array(items.into_iter().map(Value::String).collect())
}

/// A passthru.toml, built as a TOML table so every generated value reaches the tool as the string it is. Half
/// of them are hostile: any field may hold anything.
fn config_text() -> impl Strategy<Value = String> {
    any::<bool>().prop_flat_map(config_text_of)
}

fn config_text_of(hostile: bool) -> impl Strategy<Value = String> {
    let image = (
        image_ref(hostile),
        prop::option::of(image_ref(hostile)),
        prop::option::of(text("sha256:[0-9a-f]{64}", hostile)),
    );
    let vendors: &[&str] = &["intel", "amd", "auto", "arm"];
    let cpu = (
        prop::sample::select(if hostile { vendors } else { &vendors[..2] }),
        prop::array::uniform5(any::<bool>()),
    );
    let vfio = (
        prop::collection::vec(text("[0-9a-fA-F]{4}:[0-9a-fA-F]{4}", hostile), 0..5),
        any::<bool>(),
    );
    let gpu = (
        some_of(&["nvidia", "amd", "intel", "matrox"], 3, 0, hostile),
        any::<bool>(),
    );
    let extra = prop::collection::vec(karg(hostile), 0..8);
    // A module source on: git sources are fetched before rendering (the network), so they are checked here
    // as config only, with the module off.
    let vendor_reset = prop_oneof![
        Just(None),
        prop::sample::select(vec!["auto", "false"]).prop_map(|s| Some((s, None))),
        (
            text("https://[a-z]{1,8}\\.org/[a-z-]{1,8}\\.git", hostile),
            text("[0-9a-f]{40}", hostile)
        )
            .prop_map(|g| Some(("false", Some(g)))),
    ];
    let acs = prop::option::of((
        some_of(&["downstream", "multifunction", "upstream"], 2, 1, hostile),
        prop::collection::vec(
            text("[0-9a-f]{4}:[0-9a-f]{4}", hostile),
            0..if hostile { 18 } else { 15 },
        ),
        text("https://[a-z]{1,8}\\.org/[a-z-]{1,8}\\.repo", hostile),
    ));
    (image, cpu, vfio, gpu, extra, vendor_reset, acs).prop_map(
        |(image, cpu, vfio, gpu, extra, vendor_reset, acs)| {
            let mut doc = Table::new();
            let mut t = Table::new();
            t.insert("base".into(), Value::String(image.0));
            if let Some(tag) = image.1 {
                t.insert("tag".into(), Value::String(tag));
            }
            if let Some(digest) = image.2 {
                t.insert("digest".into(), Value::String(digest));
            }
            doc.insert("image".into(), Value::Table(t));
            let mut t = Table::new();
            t.insert("vendor".into(), Value::String(cpu.0.into()));
            for (key, on) in ["npt", "avic", "nested", "sev", "ignore-msrs"]
                .iter()
                .zip(cpu.1)
            {
                t.insert((*key).into(), Value::Boolean(on));
            }
            doc.insert("cpu".into(), Value::Table(t));
            let mut t = Table::new();
            t.insert("ids".into(), strings(vfio.0));
            t.insert("early-binding".into(), Value::Boolean(vfio.1));
            doc.insert("vfio".into(), Value::Table(t));
            let mut t = Table::new();
            t.insert(
                "vendors".into(),
                strings(gpu.0.into_iter().map(str::to_owned).collect()),
            );
            t.insert("disable-boot-framebuffers".into(), Value::Boolean(gpu.1));
            doc.insert("gpu".into(), Value::Table(t));
            let mut t = Table::new();
            t.insert("extra".into(), strings(extra));
            doc.insert("kargs".into(), Value::Table(t));
            if let Some((enabled, git)) = vendor_reset {
                let mut t = Table::new();
                t.insert(
                    "enabled".into(),
                    match enabled {
                        "auto" => Value::String("auto".into()),
                        other => Value::Boolean(other == "true"),
                    },
                );
                if let Some((url, commit)) = git {
                    t.insert("git".into(), Value::String(url));
                    t.insert("commit".into(), Value::String(commit));
                }
                doc.insert("vendor-reset".into(), Value::Table(t));
            }
            if let Some((mode, ids, repo)) = acs {
                let mut t = Table::new();
                t.insert("enabled".into(), Value::Boolean(true));
                t.insert(
                    "mode".into(),
                    strings(mode.into_iter().map(str::to_owned).collect()),
                );
                t.insert("ids".into(), strings(ids));
                t.insert("repo".into(), Value::String(repo));
                doc.insert("acs-override".into(), Value::Table(t));
            }
            toml::to_string(&doc).expect("a table serialises")
        },
    )
}

/// A failure must be bad input (exit 2) naming a field.
fn is_bad_input(err: &anyhow::Error) -> Result<(), TestCaseError> {
    prop_assert_eq!(exit_code(err), 2, "not bad input: {:#}", err);
    let input = err
        .chain()
        .find_map(|cause| cause.downcast_ref::<InputError>())
        .expect("exit 2 comes from an InputError");
    prop_assert!(!input.field.is_empty(), "no field named: {:#}", err);
    Ok(())
}

/// The kernel's own split of a command line (words separated by whitespace, double quotes keeping spaces
/// inside a value), written here again so the check does not lean on the code under test.
fn kernel_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted) = (Vec::new(), String::new(), false);
    for c in line.chars() {
        if c == '"' {
            quoted = !quoted;
        }
        if c.is_ascii_whitespace() && !quoted {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
        } else {
            word.push(c);
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// bootc's own schema for a kargs.d file.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[allow(dead_code)]
struct BootcKargsD {
    kargs: Vec<String>,
    match_architectures: Option<Vec<String>>,
}

fn check_kargs_d(ctx: &BuildContext, plan: &Plan) -> Result<(), TestCaseError> {
    let file = ctx.get(KARGS_D).expect("the host layer has a kargs.d file");
    let text = std::str::from_utf8(&file.content).expect("UTF-8");
    let bootc: BootcKargsD =
        toml::from_str(text).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let ours = KargsD::parse(text).map_err(TestCaseError::fail)?;
    let planned: Vec<String> = plan.kargs.iter().map(|k| k.to_string()).collect();
    prop_assert_eq!(&bootc.kargs, &planned);
    prop_assert_eq!(&ours.kargs, &planned);
    for entry in &bootc.kargs {
        prop_assert_eq!(
            kernel_words(entry),
            vec![entry.clone()],
            "not one argument: {:?}",
            entry
        );
        prop_assert!(
            Karg::parse(entry).is_ok(),
            "{:?} breaks the karg rules",
            entry
        );
    }
    Ok(())
}

fn check_containerfile(ctx: &BuildContext, plan: &Plan) -> Result<(), TestCaseError> {
    let text = ctx.containerfile();
    for line in text.lines() {
        prop_assert!(
            !line.chars().any(char::is_control),
            "a control character in {:?}",
            line
        );
        if let Some(run) = line.strip_prefix("RUN ") {
            // Mounts (the kernel packages, caches on tmpfs) may come first; the command is exec form.
            let mut command = run;
            while let Some(rest) = command.strip_prefix("--mount=") {
                command = rest.split_once(' ').map_or("", |(_, after)| after);
            }
            let argv: Vec<String> = serde_json::from_str(command).map_err(|e| {
                TestCaseError::fail(format!("RUN is not a JSON array ({e}): {line}"))
            })?;
            prop_assert!(!argv.is_empty(), "an empty RUN: {}", line);
        }
        if let Some(from) = line.strip_prefix("FROM ") {
            let image = from.split(' ').next().unwrap_or_default();
            prop_assert!(
                image == plan.image.base.as_str() || image == "system",
                "FROM {:?} is not the planned base {}",
                image,
                plan.image.base.as_str()
            );
        }
    }
    Ok(())
}

/// A user's argument that reached the plan holds nothing the rules refuse.
fn check_extras(config: &Config) -> Result<(), TestCaseError> {
    for extra in &config.kargs.extra {
        let text = extra.0.as_str();
        prop_assert!(
            !text.is_empty()
                && text.chars().all(|c| c.is_ascii_graphic())
                && !text.contains(['"', '\'', '`', '$', ';', '\\'])
                && !text.starts_with('='),
            "{:?} was accepted",
            text
        );
    }
    Ok(())
}

fn render_or_refuse(text: &str) -> Result<(), TestCaseError> {
    let config = match Config::from_toml(text, "generated.toml") {
        Ok(config) => config,
        Err(err) => return is_bad_input(&err),
    };
    check_extras(&config)?;
    let plan = match Plan::resolve(&config, &Target::Host(Root::new("/nonexistent"))) {
        Ok(plan) => plan,
        Err(err) => return is_bad_input(&err),
    };
    let ctx = match render::render(&plan) {
        Ok(ctx) => ctx,
        Err(err) => return is_bad_input(&err),
    };
    check_kargs_d(&ctx, &plan)?;
    check_containerfile(&ctx, &plan)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn configs_render_to_files_that_reparse_or_are_refused_as_bad_input(text in config_text()) {
        render_or_refuse(&text)?;
    }

    #[test]
    fn any_text_as_a_config_is_refused_as_bad_input_or_renders(text in "\\PC{0,200}") {
        render_or_refuse(&text)?;
    }
}
