//! From tokens to simple commands: reserved words, `case`, `for`, function definitions,
//! assignments and redirections, pipelines; then each command's wrappers are peeled
//! ([`super::unwrap`]) and the scripts they carry parsed in turn.

use std::iter::Peekable;

use super::lex::{Lexer, Op, Tok};
use super::unwrap::{Nested, unwrap};
use super::word::{Atom, Word, valid_name};
use super::{
    Assign, Command, MAX_COMMANDS, MAX_DEPTH, ParseError, RedirKind, Redirect, Run, Script,
};

fn err<T>(s: &str) -> Result<T, ParseError> {
    Err(ParseError(s.to_owned()))
}

/// Parses `text` (at nesting `depth`) into `out`.
pub(crate) fn parse_into(text: &str, depth: usize, out: &mut Script) -> Result<(), ParseError> {
    if depth > MAX_DEPTH {
        return err("commands nested too deeply");
    }
    let toks = Lexer::new(text, depth, out).tokens()?;
    let mut p = Parser {
        out,
        depth,
        ctx: Vec::new(),
        words: Vec::new(),
        assigns: Vec::new(),
        redirects: Vec::new(),
        pipeline: None,
    };
    p.run(toks)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    /// After `case WORD`, waiting for `in`.
    In,
    /// Reading a case item's patterns.
    Patterns,
    /// Reading a case item's commands.
    Body,
}

struct Parser<'a> {
    out: &'a mut Script,
    depth: usize,
    ctx: Vec<Case>,
    words: Vec<Word>,
    assigns: Vec<(String, Word)>,
    redirects: Vec<(Option<u32>, RedirKind, Word)>,
    /// The pipeline the next command joins, after a `|`.
    pipeline: Option<usize>,
}

type Toks = Peekable<std::vec::IntoIter<Tok>>;

/// A reserved word: only when unquoted, whole, and where a command starts.
fn keyword(w: &Word) -> Option<String> {
    w.atoms
        .iter()
        .map(|a| match a {
            Atom::Char { c, quoted: false } => Some(*c),
            _ => None,
        })
        .collect()
}

impl Parser<'_> {
    fn run(&mut self, toks: Vec<Tok>) -> Result<(), ParseError> {
        let mut it = toks.into_iter().peekable();
        while let Some(tok) = it.next() {
            match self.ctx.last().copied() {
                Some(Case::In) => {
                    match &tok {
                        Tok::Op(Op::Newline) => {}
                        Tok::Word(w) if keyword(w).as_deref() == Some("in") => {
                            self.set_ctx(Case::Patterns);
                        }
                        _ => return err("`case` without `in`"),
                    }
                    continue;
                }
                Some(Case::Patterns) => {
                    match tok {
                        Tok::Word(w) if keyword(&w).as_deref() == Some("esac") => {
                            self.ctx.pop();
                        }
                        Tok::Word(w) => self.out.data.push(w),
                        Tok::Op(Op::Pipe | Op::LParen | Op::Newline | Op::Semi) => {}
                        Tok::Op(Op::RParen) => self.set_ctx(Case::Body),
                        _ => return err("a `case` pattern it cannot read"),
                    }
                    continue;
                }
                _ => {}
            }
            match tok {
                Tok::Word(w) => self.word(w, &mut it)?,
                Tok::Redir { fd, kind, target } => self.redirects.push((fd, kind, target)),
                Tok::Arith(text) => {
                    self.finish(false)?;
                    if text.chars().any(|c| c.is_ascii_alphabetic() || c == '_') {
                        self.out.note(format!(
                            "`(({text}))` computes with variables (bash runs commands hidden in their values)"
                        ));
                    }
                }
                Tok::Op(op) => match op {
                    Op::LParen => {
                        if self.words.len() == 1
                            && self.assigns.is_empty()
                            && matches!(it.peek(), Some(Tok::Op(Op::RParen)))
                        {
                            // `name() { ...; }`: a function definition; its body follows.
                            it.next();
                            if let Some(name) = self.words.pop() {
                                self.out.functions.push(name.text());
                            }
                        } else {
                            self.finish(false)?;
                        }
                    }
                    Op::Pipe => self.finish(true)?,
                    Op::CaseEnd => {
                        self.finish(false)?;
                        if self.ctx.last() == Some(&Case::Body) {
                            self.set_ctx(Case::Patterns);
                        }
                    }
                    Op::RParen | Op::Semi | Op::Amp | Op::AndIf | Op::OrIf | Op::Newline => {
                        self.finish(false)?
                    }
                },
            }
        }
        self.finish(false)?;
        if !self.ctx.is_empty() {
            return err("`case` without `esac`");
        }
        Ok(())
    }

    fn set_ctx(&mut self, c: Case) {
        if let Some(top) = self.ctx.last_mut() {
            *top = c;
        }
    }

    fn word(&mut self, w: Word, it: &mut Toks) -> Result<(), ParseError> {
        if self.words.is_empty() && self.assigns.is_empty() {
            match keyword(&w).as_deref() {
                Some(
                    "!" | "{" | "}" | "if" | "then" | "else" | "elif" | "fi" | "do" | "done"
                    | "while" | "until",
                ) => return Ok(()),
                Some("esac") if self.ctx.last() == Some(&Case::Body) => {
                    self.ctx.pop();
                    return Ok(());
                }
                Some("case") => {
                    match it.next() {
                        Some(Tok::Word(subject)) => self.out.data.push(subject),
                        _ => return err("`case` without a word"),
                    }
                    self.ctx.push(Case::In);
                    return Ok(());
                }
                Some("for" | "select") => return self.for_loop(it),
                Some("function") => {
                    match it.next() {
                        Some(Tok::Word(name)) => self.out.functions.push(name.text()),
                        _ => return err("`function` without a name"),
                    }
                    if matches!(it.peek(), Some(Tok::Op(Op::LParen))) {
                        it.next();
                        if !matches!(it.next(), Some(Tok::Op(Op::RParen))) {
                            return err("a function definition it cannot read");
                        }
                    }
                    return Ok(());
                }
                Some("[[") => return self.conditional(w, it),
                _ => {}
            }
        }
        if self.words.is_empty()
            && let Some((name, value)) = w.assignment()
        {
            self.assigns.push((name, value));
            return Ok(());
        }
        self.words.push(w);
        Ok(())
    }

    /// `for NAME [in WORDS]; do` (and `select`): NAME takes each word in turn.
    fn for_loop(&mut self, it: &mut Toks) -> Result<(), ParseError> {
        let name = match it.next() {
            Some(Tok::Word(w)) => w.text(),
            Some(Tok::Arith(text)) => {
                self.out.note(format!(
                    "`for (({text}))` computes with variables (bash runs commands hidden in their values)"
                ));
                return Ok(());
            }
            _ => return err("`for` without a name"),
        };
        if !valid_name(&name) {
            return err("`for` with a bad name");
        }
        let mut values = Vec::new();
        let mut listed = false;
        while let Some(Tok::Op(Op::Newline)) = it.peek() {
            it.next();
        }
        if let Some(Tok::Word(w)) = it.peek()
            && keyword(w).as_deref() == Some("in")
        {
            it.next();
            listed = true;
            while let Some(Tok::Word(_)) = it.peek() {
                if let Some(Tok::Word(w)) = it.next() {
                    match w.expand_braces() {
                        Some(ws) => values.extend(ws),
                        None => values.push(w),
                    }
                }
            }
        }
        if listed {
            for v in values {
                self.out.data.push(v.clone());
                self.out.assigns.push(Assign {
                    name: name.clone(),
                    value: Some(v),
                    command: None,
                });
            }
        } else {
            self.out.assigns.push(Assign {
                name,
                value: None,
                command: None,
            });
        }
        Ok(())
    }

    /// `[[ ... ]]`: one command; its operators are part of it.
    fn conditional(&mut self, first: Word, it: &mut Toks) -> Result<(), ParseError> {
        let mut words = vec![first];
        loop {
            match it.next() {
                None => return err("`[[` without `]]`"),
                Some(Tok::Word(w)) => {
                    let end = keyword(&w).as_deref() == Some("]]");
                    words.push(w);
                    if end {
                        break;
                    }
                }
                Some(Tok::Redir { target, .. }) => words.push(target),
                Some(Tok::Op(Op::Newline)) => return err("`[[` without `]]`"),
                Some(_) => {}
            }
        }
        self.words = words;
        Ok(())
    }

    /// Ends the simple command being read; `piped` when a `|` follows.
    fn finish(&mut self, piped: bool) -> Result<(), ParseError> {
        let words = std::mem::take(&mut self.words);
        let assigns = std::mem::take(&mut self.assigns);
        let redirects = std::mem::take(&mut self.redirects);
        if words.is_empty() && assigns.is_empty() && redirects.is_empty() {
            if !piped {
                self.pipeline = None;
            }
            return Ok(());
        }
        let pipeline = self.pipeline.take();
        let (index, used) = push_command(self.out, words, assigns, self.depth, pipeline)?;
        if piped {
            self.pipeline = Some(used);
        }
        for (fd, kind, target) in redirects {
            self.out.redirects.push(Redirect {
                fd,
                kind,
                target,
                command: index,
            });
        }
        Ok(())
    }
}

/// Adds one simple command (and the commands it carries) to `out`: its index, if it runs
/// anything, and its pipeline.
pub(crate) fn push_command(
    out: &mut Script,
    words: Vec<Word>,
    prefix: Vec<(String, Word)>,
    depth: usize,
    pipeline: Option<usize>,
) -> Result<(Option<usize>, usize), ParseError> {
    if out.commands.len() >= MAX_COMMANDS {
        return err("too many commands");
    }
    let pipeline = pipeline.unwrap_or_else(|| {
        out.pipelines += 1;
        out.pipelines
    });
    let mut expanded = Vec::with_capacity(words.len());
    for w in words {
        match w.expand_braces() {
            Some(ws) => expanded.extend(ws),
            None => {
                out.note(format!(
                    "`{}` brace-expands into too many words to judge",
                    w.text()
                ));
                expanded.push(w);
            }
        }
    }
    let index = out.commands.len();
    for (name, value) in &prefix {
        note_subscript(out, name);
        out.assigns.push(Assign {
            name: name.clone(),
            value: Some(value.clone()),
            command: (!expanded.is_empty()).then_some(index),
        });
    }
    if expanded.is_empty() {
        return Ok((None, pipeline));
    }
    let u = unwrap(&expanded);
    for (name, value) in &u.assigns {
        note_subscript(out, name);
        out.assigns.push(Assign {
            name: name.clone(),
            value: value.clone(),
            command: Some(index),
        });
    }
    let mut assigns = prefix;
    assigns.extend(
        u.assigns
            .iter()
            .filter_map(|(n, v)| v.clone().map(|v| (n.clone(), v))),
    );
    let command = Command {
        words: expanded,
        assigns,
        run: u.run,
        args: u.args,
        wrappers: u.wrappers,
        stdin_args: u.stdin_args,
        writes: u.writes,
        pipeline,
        depth,
    };
    builtin_effects(out, &command);
    out.commands.push(command);
    for why in u.notes {
        out.note(why);
    }
    for nested in u.nested {
        match nested {
            Nested::Script(text) => parse_into(&text, depth + 1, out)?,
            Nested::Words(words) => {
                if depth + 1 > MAX_DEPTH {
                    return err("commands nested too deeply");
                }
                push_command(out, words, Vec::new(), depth + 1, None)?;
            }
        }
    }
    Ok((Some(index), pipeline))
}

/// `a[$(cmd)]=x`: bash evaluates the subscript.
fn note_subscript(out: &mut Script, name: &str) {
    if let Some((_, sub)) = name.split_once('[')
        && !sub
            .trim_end_matches(']')
            .chars()
            .all(|c| c.is_ascii_digit())
    {
        out.note(format!(
            "`{name}` has a computed subscript (bash runs commands hidden in it)"
        ));
    }
}

/// What builtins that name variables do to them: `export X=1`, `read X`, `unset 'a[i]'`.
fn builtin_effects(out: &mut Script, c: &Command) {
    let Run::Program { name, path: None } = &c.run else {
        return;
    };
    let index = out.commands.len();
    let mut names: Vec<(&Word, bool)> = Vec::new();
    match name.as_str() {
        "export" | "readonly" | "local" | "declare" | "typeset" => {
            for a in c
                .args
                .iter()
                .filter(|a| !a.may_be_option() || a.is_dynamic())
            {
                if let Some((n, v)) = a.assignment() {
                    note_subscript(out, &n);
                    out.assigns.push(Assign {
                        name: n,
                        value: Some(v),
                        command: Some(index),
                    });
                } else {
                    names.push((a, false));
                }
            }
        }
        "read" | "getopts" | "mapfile" | "readarray" | "unset" => {
            let mut skip_value = false;
            let mut operands = 0;
            for a in &c.args {
                if skip_value {
                    skip_value = false;
                    continue;
                }
                if let Some(l) = a.literal()
                    && l.starts_with('-')
                {
                    // Options with a value: read -p -d -n -N -t -u -i -a; mapfile -d -n -O -s -u -C -c.
                    skip_value = l.len() == 2 && "pdnNtuiaOsCc".contains(&l[1..]);
                    if name == "read" && l == "-a" {
                        skip_value = false;
                    }
                    continue;
                }
                operands += 1;
                // `getopts OPTSTRING NAME`: only the second operand is a name.
                if name == "getopts" && operands != 2 {
                    continue;
                }
                names.push((a, name != "unset"));
            }
        }
        "printf" => {
            if let Some(pos) = c
                .args
                .iter()
                .position(|a| a.literal().as_deref() == Some("-v"))
                && let Some(a) = c.args.get(pos + 1)
            {
                names.push((a, true));
            }
        }
        _ => return,
    }
    for (w, assigns) in names {
        match w.literal() {
            Some(n) if valid_name(&n) => {
                if assigns {
                    out.assigns.push(Assign {
                        name: n,
                        value: None,
                        command: Some(index),
                    });
                }
            }
            Some(n) if n.contains('[') => note_subscript(out, &n),
            Some(_) => {}
            None => out.note(format!(
                "`{name}` names a variable only known when it runs (bash may run commands hidden in it)"
            )),
        }
    }
}
