//! The part of bash a dkms.conf is written in, read without a shell.
//!
//! dkms `source`s dkms.conf in bash, and later `eval`s its MAKE line: both are shell. This lexer takes what
//! dkms.conf files are made of — assignments, single and double quotes, backslash escapes, comments, line
//! continuations and `$NAME`, `${NAME}`, `${NAME[i]}` references — and refuses, naming the line, every construct
//! that needs a shell to mean anything: command substitution, arithmetic, control flow, functions, pipes,
//! redirections, a second command after `;` or `&&`, and variables nobody defined.

use std::collections::BTreeMap;

/// A variable that exists only while dkms builds the module for one kernel: a placeholder until the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BuildVar {
    /// `$kernelver`: the kernel release the module is built for.
    KernelVer,
    /// `${kernel_source_dir}`: that kernel's headers, /usr/lib/modules/$kernelver/build.
    KernelSourceDir,
    /// `$parallel_jobs`: how many jobs dkms gives `make -j` (the build machine's CPUs).
    ParallelJobs,
}

impl BuildVar {
    /// The variable's name in dkms, and in the placeholders the build fills.
    pub(crate) fn name(self) -> &'static str {
        match self {
            BuildVar::KernelVer => "kernelver",
            BuildVar::KernelSourceDir => "kernel_source_dir",
            BuildVar::ParallelJobs => "parallel_jobs",
        }
    }
}

/// dkms's `$module` and `$module_version`: the package's own PACKAGE_NAME and PACKAGE_VERSION, which dkms
/// takes from the whole file, so a reference is settled once the file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PackageVar {
    Name,
    Version,
}

/// A piece of a value: text, or a variable only known later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Part {
    Text(String),
    Build(BuildVar),
    Package(PackageVar),
}

/// A shell value (one word), its text pieces merged.
pub(super) type Value = Vec<Part>;

fn push_text(value: &mut Value, text: &str) {
    if let Some(Part::Text(last)) = value.last_mut() {
        last.push_str(text);
    } else if !text.is_empty() {
        value.push(Part::Text(text.to_owned()));
    }
}

fn push_part(value: &mut Value, part: &Part) {
    match part {
        Part::Text(text) => push_text(value, text),
        other => value.push(other.clone()),
    }
}

/// What went wrong, and on which line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ShellError {
    pub(crate) line: usize,
    pub(crate) message: String,
}

/// One element of a variable, with the line that assigned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Assigned {
    pub(crate) value: Value,
    pub(crate) line: usize,
}

/// The variables a dkms.conf assigned (every bash variable is an array; `NAME=` sets element 0), and the ones
/// dkms itself defines.
#[derive(Debug, Clone)]
pub(super) struct Scope {
    vars: BTreeMap<String, BTreeMap<usize, Assigned>>,
    builtin: fn(&str) -> Option<Value>,
}

impl Scope {
    pub(super) fn new(builtin: fn(&str) -> Option<Value>) -> Scope {
        Scope {
            vars: BTreeMap::new(),
            builtin,
        }
    }

    /// The same builtins, and of these variables only the ones `keep` accepts.
    pub(super) fn only(&self, keep: impl Fn(&str) -> bool) -> Scope {
        Scope {
            vars: self
                .vars
                .iter()
                .filter(|(name, _)| keep(name))
                .map(|(name, elements)| (name.clone(), elements.clone()))
                .collect(),
            builtin: self.builtin,
        }
    }

    pub(super) fn names(&self) -> impl Iterator<Item = &str> {
        self.vars.keys().map(String::as_str)
    }

    /// The elements of an assigned variable, by index.
    pub(super) fn elements(&self, name: &str) -> Option<&BTreeMap<usize, Assigned>> {
        self.vars.get(name)
    }

    fn assign(&mut self, name: String, index: usize, value: Value, line: usize) {
        self.vars
            .entry(name)
            .or_default()
            .insert(index, Assigned { value, line });
    }

    /// `$NAME` is element 0; an element never assigned is unknown, not empty as in bash.
    fn get(&self, name: &str, index: usize) -> Option<Value> {
        match self.vars.get(name) {
            Some(elements) => elements.get(&index).map(|a| a.value.clone()),
            None if index == 0 => (self.builtin)(name),
            None => None,
        }
    }
}

/// Reads a whole dkms.conf: assignments only, each expanded as bash would while sourcing the file.
pub(super) fn read_assignments(
    text: &str,
    builtin: fn(&str) -> Option<Value>,
) -> Result<Scope, ShellError> {
    // dkms strips the carriage return a DOS line ending leaves at the end of each value.
    let text = text.replace("\r\n", "\n");
    let mut lexer = Lexer::new(text.chars().map(Sym::Char).collect(), Mode::Source, 1);
    let mut scope = Scope::new(builtin);
    while lexer.skip_to_statement() {
        lexer.statement(&mut scope)?;
    }
    Ok(scope)
}

/// Splits a command string into its words the way dkms's `eval` would, expanding what dkms defines then.
/// `line` is where the string was assigned, for messages.
pub(super) fn split_command(
    command: &Value,
    line: usize,
    scope: &Scope,
) -> Result<Vec<Value>, ShellError> {
    let syms = command
        .iter()
        .flat_map(|part| match part {
            Part::Text(text) => text.chars().map(Sym::Char).collect::<Vec<_>>(),
            other => vec![Sym::Opaque(other.clone())],
        })
        .collect();
    let mut lexer = Lexer::new(syms, Mode::Eval, line);
    let mut words = Vec::new();
    loop {
        lexer.skip_blanks();
        match lexer.peek() {
            None | Some('#') => break,
            Some('\n') => return Err(lexer.error("a newline starts a second command")),
            Some(c) if is_operator(c) => return Err(lexer.operator_error()),
            _ => {}
        }
        if words.is_empty() && lexer.assignment_ahead() {
            return Err(lexer.error(
                "an assignment before the command sets an environment variable, which needs a \
                 shell",
            ));
        }
        words.push(lexer.word(scope)?);
    }
    Ok(words)
}

/// Where the input is read: dkms.conf while dkms sources it, or the MAKE string dkms evals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Source,
    Eval,
}

#[derive(Debug, Clone)]
enum Sym {
    Char(char),
    /// A variable expanded before this text was read (the MAKE string's `${kernel_source_dir}`).
    Opaque(Part),
}

const CONTROL_WORDS: &[&str] = &[
    "if", "then", "elif", "else", "fi", "for", "while", "until", "do", "done", "case", "esac",
    "select", "in", "{", "}", "[[", "]]", "!", "time", "coproc",
];

const ONLY_ASSIGNMENTS: &str = "only assignments (NAME=value, NAME[i]=value) are read";

fn is_operator(c: char) -> bool {
    matches!(c, ';' | '&' | '|' | '<' | '>' | '(' | ')')
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether the quote of the word at hand changes what `$` and `\` mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    Unquoted,
    Double,
}

struct Lexer {
    syms: Vec<Sym>,
    pos: usize,
    mode: Mode,
    line: usize,
}

impl Lexer {
    fn new(syms: Vec<Sym>, mode: Mode, line: usize) -> Lexer {
        Lexer {
            syms,
            pos: 0,
            mode,
            line,
        }
    }

    fn error(&self, message: impl Into<String>) -> ShellError {
        ShellError {
            line: self.line,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        match self.syms.get(self.pos + ahead) {
            Some(Sym::Char(c)) => Some(*c),
            Some(Sym::Opaque(_)) => Some('\u{0}'),
            None => None,
        }
    }

    /// Moves past one symbol, counting lines in the file (an evaluated string keeps its assignment's line).
    fn advance(&mut self) {
        if self.mode == Mode::Source && self.peek() == Some('\n') {
            self.line += 1;
        }
        self.pos += 1;
    }

    /// Spaces, tabs and backslash-newline continuations.
    fn skip_blanks(&mut self) {
        loop {
            match (self.peek(), self.peek_at(1)) {
                (Some(' ' | '\t'), _) => self.advance(),
                (Some('\\'), Some('\n')) => {
                    self.advance();
                    self.advance();
                }
                _ => return,
            }
        }
    }

    fn skip_comment(&mut self) {
        while !matches!(self.peek(), None | Some('\n')) {
            self.advance();
        }
    }

    /// Skips blank lines and comments; whether a statement follows.
    fn skip_to_statement(&mut self) -> bool {
        loop {
            self.skip_blanks();
            match self.peek() {
                Some('\n') => self.advance(),
                Some('#') => self.skip_comment(),
                Some(_) => return true,
                None => return false,
            }
        }
    }

    /// One line's simple command: assignments only, each applied before the next is read (as bash does).
    fn statement(&mut self, scope: &mut Scope) -> Result<(), ShellError> {
        let mut first = true;
        loop {
            self.skip_blanks();
            match self.peek() {
                None | Some('\n') => return Ok(()),
                Some('#') => {
                    self.skip_comment();
                    return Ok(());
                }
                Some('(') if first && self.peek_at(1) == Some('(') => {
                    return Err(
                        self.error(format!("`((` arithmetic needs a shell; {ONLY_ASSIGNMENTS}"))
                    );
                }
                Some(c) if is_operator(c) => return Err(self.operator_error()),
                _ => {}
            }
            let line = self.line;
            match self.assignment_target()? {
                Some((name, index)) => {
                    if self.peek() == Some('(') {
                        return Err(self.error(format!(
                            "{name}=(...) is a compound array assignment; write {name}[0]=..., \
                             {name}[1]=... instead"
                        )));
                    }
                    let value = self.word(scope)?;
                    scope.assign(name, index, value, line);
                }
                None => return Err(self.command_error(first)),
            }
            first = false;
        }
    }

    /// Whether the word at hand starts with `NAME=` or `NAME[...]=`.
    fn assignment_ahead(&self) -> bool {
        let mut i = 0;
        if !self.peek().is_some_and(is_name_start) {
            return false;
        }
        while self.peek_at(i).is_some_and(is_name_char) {
            i += 1;
        }
        if self.peek_at(i) == Some('[') {
            while !matches!(self.peek_at(i), None | Some(']' | '\n')) {
                i += 1;
            }
            i += 1;
        }
        matches!(self.peek_at(i), Some('='))
            || matches!(
                (self.peek_at(i), self.peek_at(i + 1)),
                (Some('+'), Some('='))
            )
    }

    /// Reads `NAME=` or `NAME[i]=` and returns the name and index; `None` (nothing read) for any other word.
    fn assignment_target(&mut self) -> Result<Option<(String, usize)>, ShellError> {
        if !self.assignment_ahead() {
            return Ok(None);
        }
        let mut name = String::new();
        while let Some(c) = self.peek().filter(|c| is_name_char(*c)) {
            name.push(c);
            self.advance();
        }
        let mut index = 0;
        if self.peek() == Some('[') {
            self.advance();
            let mut digits = String::new();
            while let Some(c) = self.peek().filter(|c| *c != ']') {
                digits.push(c);
                self.advance();
            }
            self.advance();
            index = digits
                .parse()
                .ok()
                .filter(|_| digits.chars().all(|c| c.is_ascii_digit()))
                .ok_or_else(|| {
                    self.error(format!(
                        "{name}[{digits}]: an array index must be a plain number (an expression \
                         needs a shell)"
                    ))
                })?;
        }
        if self.peek() == Some('+') {
            return Err(self.error(format!(
                "{name}+= appends, which is not read here; assign the whole value with {name}="
            )));
        }
        self.advance();
        Ok(Some((name, index)))
    }

    /// What a non-assignment at this point is, for the message refusing it.
    fn command_error(&mut self, first: bool) -> ShellError {
        let line = self.line;
        let mut word = String::new();
        while let Some(c) = self
            .peek()
            .filter(|c| !c.is_whitespace() && !is_operator(*c))
        {
            word.push(c);
            self.advance();
        }
        self.skip_blanks();
        let what = if !first {
            format!("`{word}` after an assignment runs a command with it")
        } else if word == "function" || self.peek() == Some('(') {
            "a function definition".to_owned()
        } else if CONTROL_WORDS.contains(&word.as_str()) {
            format!("control flow (`{word}`)")
        } else {
            format!("`{word}` runs a command")
        };
        ShellError {
            line,
            message: format!("{what} needs a shell; {ONLY_ASSIGNMENTS}"),
        }
    }

    fn operator_error(&self) -> ShellError {
        let pair = (self.peek(), self.peek_at(1));
        let what = match pair {
            (Some('&'), Some('&')) => "`&&` (a second command)",
            (Some('|'), Some('|')) => "`||` (a second command)",
            (Some(';'), _) => "`;` (a second command)",
            (Some('&'), _) => "`&` (a background command)",
            (Some('|'), _) => "`|` (a pipe)",
            (Some('<' | '>'), _) => "a redirection",
            _ => "`(` or `)` (a subshell or function)",
        };
        self.error(format!("{what} needs a shell; {ONLY_ASSIGNMENTS}"))
    }

    /// One word: quoted and unquoted pieces up to an unquoted blank, newline or operator.
    fn word(&mut self, scope: &Scope) -> Result<Value, ShellError> {
        let mut value = Value::new();
        // Where bash would expand `~`: at the start of a word, and after an unquoted `=` or `:`.
        let mut tilde_expands = true;
        while let Some(c) = self.peek() {
            if let Some(Sym::Opaque(part)) = self.syms.get(self.pos) {
                push_part(&mut value, &part.clone());
                self.advance();
                tilde_expands = false;
                continue;
            }
            match c {
                ' ' | '\t' | '\n' => break,
                c if is_operator(c) => break,
                quote @ ('\'' | '"') => self.quoted(&mut value, quote, scope)?,
                '\\' => {
                    self.advance();
                    match self.peek() {
                        Some('\n') => self.advance(),
                        Some(escaped) => {
                            push_text(&mut value, &escaped.to_string());
                            self.advance();
                        }
                        None => push_text(&mut value, "\\"),
                    }
                }
                '$' => self.dollar(&mut value, scope, Quoting::Unquoted)?,
                '`' => return Err(self.backtick()),
                '~' if tilde_expands => {
                    return Err(self.error(
                        "an unquoted `~` expands to a home directory, which needs a shell; quote \
                         it",
                    ));
                }
                c => {
                    push_text(&mut value, &c.to_string());
                    self.advance();
                }
            }
            tilde_expands = matches!(c, '=' | ':');
        }
        Ok(value)
    }

    /// A quoted piece, from its opening `quote` to the closing one. Inside single quotes every
    /// character stands for itself; inside double quotes `$`, `` ` `` and some `\` escapes keep
    /// their meaning.
    fn quoted(&mut self, value: &mut Value, quote: char, scope: &Scope) -> Result<(), ShellError> {
        let opened = self.line;
        let double = quote == '"';
        self.advance();
        loop {
            match self.syms.get(self.pos).cloned() {
                None => return Err(self.unterminated(quote, opened)),
                Some(Sym::Char(c)) if c == quote => {
                    self.advance();
                    return Ok(());
                }
                Some(Sym::Char('\\')) if double => {
                    self.advance();
                    match self.peek() {
                        Some('\n') => self.advance(),
                        Some(c @ ('$' | '`' | '"' | '\\')) => {
                            push_text(value, &c.to_string());
                            self.advance();
                        }
                        _ => push_text(value, "\\"),
                    }
                }
                Some(Sym::Char('$')) if double => self.dollar(value, scope, Quoting::Double)?,
                Some(Sym::Char('`')) if double => return Err(self.backtick()),
                Some(Sym::Char(c)) => {
                    push_text(value, &c.to_string());
                    self.advance();
                }
                Some(Sym::Opaque(part)) => {
                    push_part(value, &part);
                    self.advance();
                }
            }
        }
    }

    fn unterminated(&self, quote: char, opened: usize) -> ShellError {
        ShellError {
            line: opened,
            message: format!("the {quote} opened on this line is never closed"),
        }
    }

    fn backtick(&self) -> ShellError {
        self.error(
            "`...` (backticks) is command substitution, which runs a program; it needs a shell",
        )
    }

    /// `$` and what follows it: a variable reference, a refused expansion, or a plain `$`.
    fn dollar(
        &mut self,
        value: &mut Value,
        scope: &Scope,
        quoting: Quoting,
    ) -> Result<(), ShellError> {
        self.advance();
        match self.peek() {
            Some('(') if self.peek_at(1) == Some('(') => {
                Err(self.error("$((...)) is arithmetic, which needs a shell"))
            }
            Some('(') => Err(self
                .error("$(...) is command substitution, which runs a program; it needs a shell")),
            Some('[') => Err(self.error("$[...] is arithmetic, which needs a shell")),
            Some('{') => {
                self.advance();
                let mut inner = String::new();
                loop {
                    match self.peek() {
                        None | Some('\n') => {
                            return Err(self.error("${ is never closed with }"));
                        }
                        Some('}') => break,
                        Some(c) => {
                            inner.push(c);
                            self.advance();
                        }
                    }
                }
                self.advance();
                let (name, index) = braced_reference(&inner).ok_or_else(|| {
                    self.error(format!(
                        "${{{inner}}}: only ${{NAME}} and ${{NAME[i]}} are read, no parameter \
                         expansion operators"
                    ))
                })?;
                self.expand(
                    value,
                    scope,
                    quoting,
                    &name,
                    index,
                    &format!("${{{inner}}}"),
                )
            }
            Some('\'' | '"') if quoting == Quoting::Unquoted => {
                Err(self.error("$'...' and $\"...\" quoting need a shell; use plain quotes"))
            }
            Some(c) if is_name_start(c) => {
                let mut name = String::new();
                while let Some(c) = self.peek().filter(|c| is_name_char(*c)) {
                    name.push(c);
                    self.advance();
                }
                let reference = format!("${name}");
                self.expand(value, scope, quoting, &name, 0, &reference)
            }
            Some(c) if c.is_ascii_digit() || "@*#?-$!".contains(c) => Err(self.error(format!(
                "${c} is a shell's special parameter; it has no value in dkms.conf"
            ))),
            _ => {
                push_text(value, "$");
                Ok(())
            }
        }
    }

    fn expand(
        &self,
        value: &mut Value,
        scope: &Scope,
        quoting: Quoting,
        name: &str,
        index: usize,
        reference: &str,
    ) -> Result<(), ShellError> {
        let Some(expanded) = scope.get(name, index) else {
            let known = match self.mode {
                Mode::Source => "the file's own earlier assignments",
                Mode::Eval => "dkms's directives (PACKAGE_NAME, ...)",
            };
            return Err(self.error(format!(
                "{reference} is not defined: only {known} and dkms's variables ({}) have a value \
                 here",
                super::DKMS_VARIABLES.join(", ")
            )));
        };
        if self.mode == Mode::Eval && quoting == Quoting::Unquoted {
            // eval splits an unquoted expansion into words and globs it; plain values are left as they are.
            let splits_or_globs = |c: char| c.is_whitespace() || "*?[".contains(c);
            let splits = expanded
                .iter()
                .any(|part| matches!(part, Part::Text(t) if t.chars().any(splits_or_globs)));
            if splits {
                return Err(self.error(format!(
                    "{reference} holds blanks or wildcards, which the shell would split or expand; \
                     quote it"
                )));
            }
        }
        for part in &expanded {
            push_part(value, part);
        }
        Ok(())
    }
}

/// `NAME` or `NAME[digits]` inside `${...}`.
fn braced_reference(inner: &str) -> Option<(String, usize)> {
    let (name, index) = match inner.split_once('[') {
        Some((name, rest)) => {
            let digits = rest.strip_suffix(']')?;
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            (name, digits.parse().ok()?)
        }
        None => (inner, 0),
    };
    let valid = name.starts_with(is_name_start) && name.chars().all(is_name_char);
    valid.then(|| (name.to_owned(), index))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_builtins(name: &str) -> Option<Value> {
        match name {
            "kernelver" => Some(vec![Part::Build(BuildVar::KernelVer)]),
            _ => None,
        }
    }

    fn text(s: &str) -> Value {
        vec![Part::Text(s.to_owned())]
    }

    fn value_of(conf: &str, name: &str) -> Value {
        let scope = read_assignments(conf, no_builtins).unwrap();
        scope.get(name, 0).unwrap()
    }

    fn error_of(conf: &str) -> ShellError {
        read_assignments(conf, no_builtins).unwrap_err()
    }

    #[test]
    fn quoting_escapes_and_continuations_read_as_bash_reads_them() {
        assert_eq!(value_of("A=plain\n", "A"), text("plain"));
        assert_eq!(
            value_of("A='$literal \"x\"'\n", "A"),
            text("$literal \"x\"")
        );
        assert_eq!(
            value_of("A=\"a \\\"b\\\" \\$c \\d\"\n", "A"),
            text("a \"b\" $c \\d")
        );
        assert_eq!(value_of("A=one\\ word\n", "A"), text("one word"));
        assert_eq!(value_of("A=\"long \\\nline\"\n", "A"), text("long line"));
        assert_eq!(value_of("A=x\\\ny\n", "A"), text("xy"));
        assert_eq!(value_of("A=''\n", "A"), Value::new());
        assert_eq!(
            value_of("A=mixed'single'\"double\"\n", "A"),
            text("mixedsingledouble")
        );
        assert_eq!(value_of("A=a#b # a comment\n", "A"), text("a#b"));
        assert_eq!(value_of("A=$ B=\"$\"\n", "B"), text("$"));
        assert_eq!(value_of("A=x\r\nB=\"$A\"\r\n", "B"), text("x"));
    }

    #[test]
    fn references_expand_earlier_assignments_and_keep_build_variables() {
        let conf = "N=\"vr\"\nA[1]=second\nB=\"${N}-$N ${A[1]} $kernelver\"\n";
        assert_eq!(
            value_of(conf, "B"),
            vec![
                Part::Text("vr-vr second ".into()),
                Part::Build(BuildVar::KernelVer)
            ]
        );
        // Several assignments on a line are applied left to right.
        assert_eq!(value_of("A=1 B=$A\n", "B"), text("1"));
    }

    #[test]
    fn arrays_are_indexed_by_plain_numbers() {
        let scope = read_assignments("M[0]=a\nM[2]=c\n", no_builtins).unwrap();
        let indices: Vec<usize> = scope.elements("M").unwrap().keys().copied().collect();
        assert_eq!(indices, [0, 2]);
        assert!(error_of("M[$i]=a\n").message.contains("plain number"));
        assert!(error_of("M=(a b)\n").message.contains("M[0]="));
    }

    #[test]
    fn anything_that_needs_a_shell_is_refused_with_its_line() {
        let cases = [
            ("A=$(id)\n", "command substitution"),
            ("A=\"`id`\"\n", "backticks"),
            ("A=$((1+1))\n", "arithmetic"),
            ("((x=1))\n", "arithmetic"),
            ("A=1; B=2\n", "`;`"),
            ("A=1 && B=2\n", "`&&`"),
            ("A=1 | cat\n", "pipe"),
            ("A=1 > /tmp/x\n", "redirection"),
            ("if true; then A=1; fi\n", "control flow (`if`)"),
            ("build() { make; }\n", "function definition"),
            ("function f {\n", "function definition"),
            ("rm -rf /\n", "`rm` runs a command"),
            ("A=1 make\n", "`make` after an assignment"),
            ("A=$UNSET\n", "$UNSET is not defined"),
            ("A=${HOME:-/root}\n", "parameter expansion"),
            ("A=$1\n", "special parameter"),
            ("A=~/src\n", "home directory"),
            ("A+=x\n", "appends"),
            ("A=\"open\n", "never closed"),
            ("A=$'\\n'\n", "quoting"),
        ];
        for (conf, expected) in cases {
            let err = error_of(&format!("# first line\n{conf}"));
            assert!(err.message.contains(expected), "{conf:?}: {}", err.message);
            assert_eq!(err.line, 2, "{conf:?}");
        }
    }

    #[test]
    fn a_command_string_splits_into_words_with_its_placeholders() {
        let scope = read_assignments("PACKAGE_NAME=vr\n", no_builtins).unwrap();
        let command = vec![
            Part::Text("'make' KDIR=".into()),
            Part::Build(BuildVar::KernelSourceDir),
            Part::Text(" 'A B' \"$PACKAGE_NAME\" v=$kernelver # comment".into()),
        ];
        let words = split_command(&command, 7, &scope).unwrap();
        assert_eq!(
            words,
            [
                text("make"),
                vec![
                    Part::Text("KDIR=".into()),
                    Part::Build(BuildVar::KernelSourceDir)
                ],
                text("A B"),
                text("vr"),
                vec![Part::Text("v=".into()), Part::Build(BuildVar::KernelVer)],
            ]
        );
        for (bad, expected) in [
            ("make; reboot", "`;`"),
            ("make && reboot", "`&&`"),
            ("CC=clang make", "environment variable"),
            ("make $(nproc)", "command substitution"),
            ("make\nreboot", "newline"),
        ] {
            let err = split_command(&text(bad), 7, &scope).unwrap_err();
            assert!(err.message.contains(expected), "{bad:?}: {}", err.message);
            assert_eq!(err.line, 7);
        }
    }

    #[test]
    fn an_evaluated_expansion_that_the_shell_would_split_is_refused() {
        let scope = read_assignments("CLEAN=\"make clean\"\n", no_builtins).unwrap();
        let scope = scope.only(|name| name == "CLEAN");
        let err = split_command(&text("echo $CLEAN"), 3, &scope).unwrap_err();
        assert!(err.message.contains("split"), "{}", err.message);
        let words = split_command(&text("echo \"$CLEAN\""), 3, &scope).unwrap();
        assert_eq!(words[1], text("make clean"));
    }
}
