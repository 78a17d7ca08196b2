//! Peels the programs that only run other programs (`sudo`, `env`, `nice`, `timeout`,
//! `xargs`, `sh -c`, `eval`, ...) so a command is judged by what it finally runs. Each
//! wrapper's options are data ([`Opts`]), read the way getopt reads them (bundles, attached
//! values, unambiguous abbreviations of long options); an option a wrapper does not know
//! makes the command dynamic, never guessed.

use super::Run;
use super::opts::{
    COMMAND, DOAS, ENV, EXEC, IONICE, NICE, Opts, PLAIN, SETSID, STDBUF, SU, SUDO, TIME, TIMEOUT,
    WATCH, XARGS, has, options, value,
};
use super::word::{Atom, Word, valid_name};

/// A script or a command that a command carries.
pub(crate) enum Nested {
    /// A script to parse (`sh -c TEXT`, `eval`, `su -c`, `trap`).
    Script(String),
    /// A command given as words (`find -exec ... ;`).
    Words(Vec<Word>),
}

#[derive(Default)]
pub(crate) struct Unwrapped {
    pub run: Run,
    pub args: Vec<Word>,
    pub wrappers: Vec<String>,
    pub stdin_args: bool,
    /// Variables set (`env X=1`, `sudo X=1`); `None` for a value not given.
    pub assigns: Vec<(String, Option<Word>)>,
    pub writes: Vec<Word>,
    pub nested: Vec<Nested>,
    pub notes: Vec<String>,
}

/// Shells whose `-c` scripts are read as POSIX shell.
const POSIX_SHELLS: &[&str] = &[
    "sh", "bash", "dash", "ksh", "ash", "mksh", "yash", "posh", "rbash", "ksh93", "lksh",
];
/// Shells with a syntax of their own: their scripts are read as POSIX shell, and noted.
const OTHER_SHELLS: &[&str] = &["zsh", "fish", "csh", "tcsh"];

pub(crate) fn is_shell(name: &str) -> bool {
    POSIX_SHELLS.contains(&name) || OTHER_SHELLS.contains(&name)
}

fn basename(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

/// The script a word hands to another shell (`sh -c WORD`), when the text shows it: a
/// literal, or one that only uses `$HOME` (a path, not code). Any other expansion could
/// carry code of its own, so the script is only known when it runs.
fn script_text(w: &Word) -> Option<String> {
    if let Some(l) = w.literal() {
        return Some(l);
    }
    if w.has_glob() {
        return None;
    }
    let mut s = String::new();
    for a in &w.atoms {
        match a {
            Atom::Char { c, .. } => s.push(*c),
            Atom::Param {
                name, plain: true, ..
            } if name == "HOME" => s.push_str("\"$HOME\""),
            _ => return None,
        }
    }
    Some(s)
}

/// The script text of words joined as a shell would see them (`eval a b`).
fn joined(words: &[Word]) -> Option<String> {
    words
        .iter()
        .map(script_text)
        .collect::<Option<Vec<_>>>()
        .map(|v| v.join(" "))
}

/// A word standing for text read from input (`xargs -I{}`).
fn from_input(w: &Word) -> Word {
    Word {
        atoms: vec![Atom::Subst {
            text: w.text(),
            quoted: false,
            commands: 0..0,
        }],
    }
}

const MAX_WRAPPERS: usize = 32;

/// Peels wrappers off `words` (a command with at least one word).
pub(crate) fn unwrap(words: &[Word]) -> Unwrapped {
    let mut u = Unwrapped::default();
    let mut rest: Vec<Word> = words.to_vec();
    for _ in 0..MAX_WRAPPERS {
        let Some(first) = rest.first().cloned() else {
            return u;
        };
        let Some(prog) = first.literal() else {
            let why = if first.has_glob() && !first.is_dynamic() {
                "the command is a pattern, only matched when it runs"
            } else {
                "the command is only known when it runs"
            };
            u.run = Run::Dynamic {
                why: why.into(),
                word: Some(first),
            };
            u.args = rest[1..].to_vec();
            return u;
        };
        let name = basename(&prog).to_owned();
        let args = &rest[1..];
        let dynamic = |u: &mut Unwrapped, why: String| {
            u.run = Run::Dynamic { why, word: None };
            u.args = args.to_vec();
        };
        let step = match name.as_str() {
            "sudo" | "doas" => wrap_sudo(&name, args, &mut u),
            "env" => wrap_env(args, &mut u),
            "nice" => wrap_simple(args, &NICE, 0),
            "ionice" => match options(args, &IONICE) {
                Ok((f, _)) if has(&f, &["-p", "-P", "-u", "--pid", "--pgid", "--uid"]) => {
                    Step::Done
                }
                _ => wrap_simple(args, &IONICE, 0),
            },
            "timeout" => wrap_simple(args, &TIMEOUT, 1),
            "nohup" | "builtin" | "unbuffer" => wrap_simple(args, &PLAIN, 0),
            "setsid" => wrap_simple(args, &SETSID, 0),
            "stdbuf" => wrap_simple(args, &STDBUF, 0),
            "time" => match options(args, &TIME) {
                Ok((f, i)) => {
                    if let Some(out) = value(&f, &["-o", "--output"]) {
                        u.writes.push(out.clone());
                    }
                    Step::Cmd(i + 1)
                }
                Err(e) => Step::Unknown(e),
            },
            "command" => match options(args, &COMMAND) {
                Ok((f, _)) if has(&f, &["-v", "-V"]) => Step::Done,
                Ok((_, i)) => Step::Cmd(i + 1),
                Err(e) => Step::Unknown(e),
            },
            "exec" => match options(args, &EXEC) {
                Ok((_, i)) if i >= args.len() => {
                    u.wrappers.push(name);
                    return u;
                }
                Ok((_, i)) => Step::Cmd(i + 1),
                Err(e) => Step::Unknown(e),
            },
            "busybox" if !args.is_empty() => Step::Cmd(1),
            "xargs" => wrap_xargs(args, &mut u),
            "eval" => match joined(args) {
                Some(text) => Step::Script(text),
                None => Step::Dynamic("`eval` of text only known when it runs".into()),
            },
            "su" | "runuser" => match options(args, &SU) {
                Ok((f, _)) => match value(&f, &["-c", "--command"]) {
                    Some(w) => match script_text(w) {
                        Some(text) => Step::Script(text),
                        None => Step::Dynamic(format!(
                            "`{name} -c` of a script only known when it runs"
                        )),
                    },
                    None => Step::Done,
                },
                Err(e) => Step::Unknown(e),
            },
            "watch" => match options(args, &WATCH) {
                Ok((_, i)) => match joined(&args[i..]) {
                    Some(text) if !text.is_empty() => Step::Script(text),
                    Some(_) => Step::Done,
                    None => Step::Dynamic("`watch` of a command only known when it runs".into()),
                },
                Err(e) => Step::Unknown(e),
            },
            n if is_shell(n) => wrap_shell(n, args, &mut u),
            _ => Step::Done,
        };
        match step {
            Step::Done => {
                finish(&mut u, &rest, &name, &prog);
                return u;
            }
            Step::Cmd(skip) => {
                u.wrappers.push(name);
                if skip >= rest.len() {
                    // A wrapper with nothing to run (`env`, `nice`) is itself the command.
                    let w = u.wrappers.pop().unwrap_or_default();
                    finish(&mut u, &rest, &w, &prog);
                    return u;
                }
                rest = rest[skip..].to_vec();
            }
            Step::Replace(words) => {
                u.wrappers.push(name);
                if words.is_empty() {
                    let w = u.wrappers.pop().unwrap_or_default();
                    finish(&mut u, &rest, &w, &prog);
                    return u;
                }
                rest = words;
            }
            Step::Script(text) => {
                u.wrappers.push(name);
                u.run = Run::Script;
                u.args = args.to_vec();
                u.nested.push(Nested::Script(text));
                return u;
            }
            Step::Dynamic(why) => {
                u.wrappers.push(name);
                dynamic(&mut u, why);
                return u;
            }
            Step::Unknown(opt) => {
                dynamic(
                    &mut u,
                    format!("`{name}` with an option this reader does not know ({opt})"),
                );
                u.wrappers.push(name);
                return u;
            }
        }
    }
    u.run = Run::Dynamic {
        why: "too many wrappers".into(),
        word: None,
    };
    u
}

enum Step {
    /// The program here is what runs.
    Done,
    /// Skip this many words; the command continues there.
    Cmd(usize),
    /// The command continues as these words.
    Replace(Vec<Word>),
    /// It runs this script.
    Script(String),
    Dynamic(String),
    /// An option it does not know.
    Unknown(String),
}

fn finish(u: &mut Unwrapped, rest: &[Word], name: &str, prog: &str) {
    let path = prog.contains('/').then(|| prog.to_owned());
    u.run = Run::Program {
        name: name.to_owned(),
        path,
    };
    u.args = rest[1..].to_vec();
    if name == "find" {
        find_exec(&u.args, &mut u.nested);
    }
    if name == "trap" {
        let ops: Vec<&Word> = u.args.iter().filter(|a| !a.may_be_option()).collect();
        if ops.len() >= 2 {
            match script_text(ops[0]) {
                Some(text) => u.nested.push(Nested::Script(text)),
                None => u
                    .notes
                    .push("`trap` of a command only known when it runs".into()),
            }
        }
    }
}

fn wrap_simple(args: &[Word], spec: &Opts, positional: usize) -> Step {
    match options(args, spec) {
        Ok((_, i)) => Step::Cmd(i + 1 + positional),
        Err(e) => Step::Unknown(e),
    }
}

fn wrap_sudo(name: &str, args: &[Word], u: &mut Unwrapped) -> Step {
    let spec = if name == "doas" { &DOAS } else { &SUDO };
    let (found, mut i) = match options(args, spec) {
        Ok(x) => x,
        Err(e) => return Step::Unknown(e),
    };
    if has(&found, &["-e", "--edit"]) {
        return Step::Dynamic("`sudo -e` opens an editor".into());
    }
    if has(&found, &["-A", "--askpass"]) {
        return Step::Dynamic("`sudo -A` runs the askpass program".into());
    }
    while let Some((n, v)) = args.get(i).and_then(Word::assignment) {
        u.assigns.push((n, Some(v)));
        i += 1;
    }
    if has(&found, &["-s", "--shell", "-i", "--login"]) && i < args.len() {
        return match joined(&args[i..]) {
            Some(text) => Step::Script(text),
            None => Step::Dynamic(format!("`{name} -s` of a command only known when it runs")),
        };
    }
    Step::Cmd(i + 1)
}

fn wrap_env(args: &[Word], u: &mut Unwrapped) -> Step {
    let mut args: Vec<Word> = args.to_vec();
    for _ in 0..MAX_WRAPPERS {
        // `env -` is `env -i`.
        let lead = args
            .iter()
            .take_while(|a| a.literal().as_deref() == Some("-"))
            .count();
        let (found, mut i) = match options(&args[lead..], &ENV) {
            Ok((f, i)) => (f, i + lead),
            Err(e) => return Step::Unknown(e),
        };
        if let Some(s) = value(&found, &["-S", "--split-string"]) {
            // `env -S 'cmd args'`: the string becomes words, then the rest follows.
            let Some(text) = s.literal() else {
                return Step::Dynamic("`env -S` of text only known when it runs".into());
            };
            let split = match split_string(&text) {
                Ok(w) => w,
                Err(e) => return Step::Dynamic(format!("`env -S` text it cannot read ({e})")),
            };
            let mut next = split;
            next.extend_from_slice(&args[i..]);
            args = next;
            continue;
        }
        while let Some(w) = args.get(i) {
            // env sees strings: quoting does not stop `'PATH=x'` from being an assignment.
            let text = w.text();
            match text.split_once('=') {
                Some((n, _))
                    if valid_name(n) && !w.atoms.first().is_some_and(Atom::is_expansion) =>
                {
                    let value = Word {
                        atoms: w.atoms[n.chars().count() + 1..].to_vec(),
                    };
                    u.assigns.push((n.to_owned(), Some(value)));
                    i += 1;
                }
                _ => break,
            }
        }
        let mut words = vec![Word::quoted("env")];
        words.extend_from_slice(&args[i..]);
        return Step::Replace(words[1..].to_vec());
    }
    Step::Dynamic("`env -S` nested too deeply".into())
}

fn wrap_xargs(args: &[Word], u: &mut Unwrapped) -> Step {
    let (found, i) = match options(args, &XARGS) {
        Ok(x) => x,
        Err(e) => return Step::Unknown(e),
    };
    if let Some(var) = value(&found, &["--process-slot-var"]) {
        u.assigns.push((var.text(), None));
    }
    let replace = value(&found, &["-I", "-i", "--replace"])
        .map(Word::text)
        .or_else(|| has(&found, &["-i", "--replace"]).then(|| "{}".to_owned()));
    u.stdin_args = true;
    let mut words: Vec<Word> = if i < args.len() {
        args[i..].to_vec()
    } else {
        vec![Word::quoted("echo")]
    };
    if let Some(r) = replace.filter(|r| !r.is_empty()) {
        for w in &mut words {
            if w.text().contains(&r) {
                *w = from_input(w);
            }
        }
    }
    Step::Replace(words)
}

fn wrap_shell(name: &str, args: &[Word], u: &mut Unwrapped) -> Step {
    let mut i = 0;
    let mut script_mode = false;
    while let Some(w) = args.get(i) {
        let Some(lit) = w.literal() else {
            if w.may_be_option() {
                return Step::Dynamic(format!("`{name}` with options only known when they run"));
            }
            break;
        };
        if lit == "--" || lit == "-" {
            i += 1;
            break;
        }
        if !(lit.starts_with('-') || lit.starts_with('+')) {
            break;
        }
        if lit.starts_with("--") {
            // --rcfile FILE, --init-file FILE take a value; other long options are flags.
            if matches!(lit.as_str(), "--rcfile" | "--init-file") {
                i += 1;
            }
            i += 1;
            continue;
        }
        let flags = &lit[1..];
        if flags.contains('c') {
            script_mode = true;
        }
        // -o OPTION, -O SHOPT take the next word.
        i += 1 + flags.chars().filter(|c| matches!(c, 'o' | 'O')).count();
    }
    if !script_mode {
        return Step::Done;
    }
    if OTHER_SHELLS.contains(&name) {
        u.notes.push(format!(
            "`{name} -c` scripts have a syntax of their own; read as POSIX shell"
        ));
    }
    match args.get(i) {
        Some(w) => match script_text(w) {
            Some(text) => Step::Script(text),
            None => Step::Dynamic(format!("`{name} -c` of a script only known when it runs")),
        },
        None => Step::Done,
    }
}

/// `find ... -exec CMD ... ;` (and `-execdir`, `-ok`, `-okdir`): the commands find runs,
/// with `{}` standing for each file found.
fn find_exec(args: &[Word], nested: &mut Vec<Nested>) {
    let mut i = 0;
    while i < args.len() {
        let lit = args[i].literal();
        if matches!(
            lit.as_deref(),
            Some("-exec" | "-execdir" | "-ok" | "-okdir")
        ) {
            let mut words = Vec::new();
            i += 1;
            while let Some(w) = args.get(i) {
                let l = w.literal();
                if l.as_deref() == Some(";")
                    || (l.as_deref() == Some("+")
                        && words.last().is_some_and(|p: &Word| p.text() == "{}"))
                {
                    break;
                }
                words.push(if w.text().contains("{}") {
                    from_input(w)
                } else {
                    w.clone()
                });
                i += 1;
            }
            if !words.is_empty() {
                nested.push(Nested::Words(words));
            }
        }
        i += 1;
    }
}

/// GNU `env -S`'s own splitting: blanks separate, quotes group, `\_` is a separator outside
/// double quotes, `${NAME}` is a variable, `#` starts a comment.
fn split_string(s: &str) -> Result<Vec<Word>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut words = Vec::new();
    let mut cur: Vec<Atom> = Vec::new();
    let mut in_word = false;
    let mut i = 0;
    let lit = |c: char| Atom::Char { c, quoted: true };
    let flush = |cur: &mut Vec<Atom>, in_word: &mut bool, words: &mut Vec<Word>| {
        if *in_word {
            words.push(Word {
                atoms: std::mem::take(cur),
            });
            *in_word = false;
        }
    };
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        match (quote, c) {
            (None, ' ' | '\t' | '\n') => flush(&mut cur, &mut in_word, &mut words),
            (None, '#') if !in_word => break,
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => cur.push(lit(c)),
            (_, '\\') => {
                i += 1;
                let e = *chars.get(i).ok_or("a trailing backslash")?;
                match e {
                    '_' if quote.is_none() => flush(&mut cur, &mut in_word, &mut words),
                    '_' => cur.push(lit(' ')),
                    'c' => break,
                    't' => cur.push(lit('\t')),
                    'n' => cur.push(lit('\n')),
                    'r' => cur.push(lit('\r')),
                    'f' => cur.push(lit('\x0c')),
                    'v' => cur.push(lit('\x0b')),
                    '\\' | '\'' | '"' | '$' | '#' => cur.push(lit(e)),
                    _ => return Err(format!("unknown escape \\{e}")),
                }
                if e != '_' || quote.is_some() {
                    in_word = true;
                }
            }
            (_, '$') if chars.get(i + 1) == Some(&'{') => {
                let end = chars[i..]
                    .iter()
                    .position(|&c| c == '}')
                    .ok_or("unclosed ${")?
                    + i;
                let name: String = chars[i + 2..end].iter().collect();
                cur.push(Atom::Param {
                    text: format!("${{{name}}}"),
                    name,
                    quoted: true,
                    plain: true,
                });
                in_word = true;
                i = end;
            }
            (_, '$') => return Err("`$` without `{`".into()),
            (_, c) => {
                cur.push(lit(c));
                in_word = true;
            }
        }
        i += 1;
    }
    if quote.is_some() {
        return Err("an unclosed quote".into());
    }
    flush(&mut cur, &mut in_word, &mut words);
    Ok(words)
}
