//! Splits shell text into words, operators and redirections. Quotes, backslashes,
//! `$'...'`, parameter expansions, command and process substitutions, arithmetic and
//! here-documents are read the way bash reads them; the commands inside substitutions are
//! parsed on the spot (into the same [`Script`]), so nothing they run goes unjudged.

use super::word::{Atom, Word, valid_name};
use super::{ParseError, RedirKind, Script, parse};

/// A control operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Semi,
    Amp,
    AndIf,
    OrIf,
    Pipe,
    LParen,
    RParen,
    /// `;;`, `;&`, `;;&`: the end of a case item.
    CaseEnd,
    Newline,
}

#[derive(Debug, Clone)]
pub(crate) enum Tok {
    Word(Word),
    Op(Op),
    Redir {
        fd: Option<u32>,
        kind: RedirKind,
        target: Word,
    },
    /// `(( ... ))`: an arithmetic command, with its text.
    Arith(String),
}

struct Heredoc {
    delim: String,
    strip_tabs: bool,
    expand: bool,
}

pub(crate) struct Lexer<'a> {
    chars: Vec<char>,
    i: usize,
    depth: usize,
    out: &'a mut Script,
    pending: Vec<Heredoc>,
}

fn err<T>(s: &str) -> Result<T, ParseError> {
    Err(ParseError(s.to_owned()))
}

fn is_meta(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\r' | '\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>'
    )
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(text: &str, depth: usize, out: &'a mut Script) -> Self {
        Self {
            chars: text.chars().collect(),
            i: 0,
            depth,
            out,
            pending: Vec::new(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn at(&self, k: usize) -> Option<char> {
        self.chars.get(self.i + k).copied()
    }

    fn eat(&mut self, s: &str) -> bool {
        let n = s.chars().count();
        if self.chars[self.i..].iter().take(n).copied().eq(s.chars()) {
            self.i += n;
            true
        } else {
            false
        }
    }

    /// Parses the body of a substitution as commands of their own.
    fn nested(&mut self, body: &str) -> Result<std::ops::Range<usize>, ParseError> {
        let start = self.out.commands.len();
        parse::parse_into(body, self.depth + 1, self.out)?;
        Ok(start..self.out.commands.len())
    }

    pub(crate) fn tokens(mut self) -> Result<Vec<Tok>, ParseError> {
        let mut toks = Vec::new();
        loop {
            // Blanks and line continuations.
            loop {
                match self.peek() {
                    Some(' ' | '\t' | '\r') => self.i += 1,
                    Some('\\') if self.at(1) == Some('\n') => self.i += 2,
                    _ => break,
                }
            }
            let Some(c) = self.peek() else { break };
            match c {
                '\n' => {
                    self.i += 1;
                    toks.push(Tok::Op(Op::Newline));
                    self.heredoc_bodies()?;
                }
                '#' => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.i += 1;
                    }
                }
                ';' => {
                    if self.eat(";;&") || self.eat(";;") || self.eat(";&") {
                        toks.push(Tok::Op(Op::CaseEnd));
                    } else {
                        self.i += 1;
                        toks.push(Tok::Op(Op::Semi));
                    }
                }
                '&' => {
                    if self.eat("&&") {
                        toks.push(Tok::Op(Op::AndIf));
                    } else if self.eat("&>>") {
                        toks.push(self.redirect(None, RedirKind::Append)?);
                    } else if self.eat("&>") {
                        toks.push(self.redirect(None, RedirKind::Write)?);
                    } else {
                        self.i += 1;
                        toks.push(Tok::Op(Op::Amp));
                    }
                }
                '|' => {
                    if self.eat("||") {
                        toks.push(Tok::Op(Op::OrIf));
                    } else {
                        // `|&` pipes stderr too.
                        let _ = self.eat("|&") || self.eat("|");
                        toks.push(Tok::Op(Op::Pipe));
                    }
                }
                '(' => {
                    if self.at(1) == Some('(')
                        && let Some(text) = self.arith_command()
                    {
                        toks.push(Tok::Arith(text));
                    } else {
                        self.i += 1;
                        toks.push(Tok::Op(Op::LParen));
                    }
                }
                ')' => {
                    self.i += 1;
                    toks.push(Tok::Op(Op::RParen));
                }
                '<' | '>' if self.at(1) == Some('(') => toks.push(Tok::Word(self.word()?)),
                '<' | '>' => toks.push(self.redirect_op(None)?),
                '0'..='9' => {
                    let mut k = 0;
                    while self.at(k).is_some_and(|c| c.is_ascii_digit()) {
                        k += 1;
                    }
                    if matches!(self.at(k), Some('<' | '>')) && self.at(k + 1) != Some('(') {
                        let fd: String = self.chars[self.i..self.i + k].iter().collect();
                        self.i += k;
                        toks.push(self.redirect_op(fd.parse().ok())?);
                    } else {
                        toks.push(Tok::Word(self.word()?));
                    }
                }
                _ => toks.push(Tok::Word(self.word()?)),
            }
        }
        // A here-document cut short by the end of the text still runs (bash warns).
        self.heredoc_bodies()?;
        Ok(toks)
    }

    /// `((...))` as a command: its text, when the parentheses close as `))`.
    fn arith_command(&mut self) -> Option<String> {
        let start = self.i + 2;
        let mut depth = 0i32;
        let mut j = start;
        while j < self.chars.len() {
            match self.chars[j] {
                '(' => depth += 1,
                ')' if depth > 0 => depth -= 1,
                ')' => {
                    if self.chars.get(j + 1) == Some(&')') {
                        let text: String = self.chars[start..j].iter().collect();
                        self.i = j + 2;
                        return Some(text);
                    }
                    return None;
                }
                '\n' => return None,
                _ => {}
            }
            j += 1;
        }
        None
    }

    fn redirect_op(&mut self, fd: Option<u32>) -> Result<Tok, ParseError> {
        let kind = if self.eat("<<<") {
            RedirKind::HereString
        } else if self.eat("<<-") {
            return self.heredoc(fd, true);
        } else if self.eat("<<") {
            return self.heredoc(fd, false);
        } else if self.eat("<>") {
            RedirKind::ReadWrite
        } else if self.eat("<&") {
            RedirKind::Dup
        } else if self.eat(">&") {
            // `>&2` duplicates; `>&file` writes the file (stdout and stderr).
            let tok = self.redirect(fd, RedirKind::Write)?;
            return Ok(match tok {
                Tok::Redir { fd, target, .. }
                    if target
                        .literal()
                        .is_some_and(|t| t == "-" || t.chars().all(|c| c.is_ascii_digit())) =>
                {
                    Tok::Redir {
                        fd,
                        kind: RedirKind::Dup,
                        target,
                    }
                }
                t => t,
            });
        } else if self.eat(">>") {
            RedirKind::Append
        } else if self.eat(">|") || self.eat(">") {
            RedirKind::Write
        } else {
            self.i += 1;
            RedirKind::Read
        };
        self.redirect(fd, kind)
    }

    fn redirect(&mut self, fd: Option<u32>, kind: RedirKind) -> Result<Tok, ParseError> {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.i += 1;
        }
        match self.peek() {
            Some(c) if !is_meta(c) || (matches!(c, '<' | '>') && self.at(1) == Some('(')) => {
                Ok(Tok::Redir {
                    fd,
                    kind,
                    target: self.word()?,
                })
            }
            _ => err("a redirection without a target"),
        }
    }

    fn heredoc(&mut self, fd: Option<u32>, strip_tabs: bool) -> Result<Tok, ParseError> {
        let tok = self.redirect(fd, RedirKind::Heredoc)?;
        if let Tok::Redir { target, .. } = &tok {
            let quoted = target
                .atoms
                .iter()
                .any(|a| matches!(a, Atom::Char { quoted: true, .. }));
            self.pending.push(Heredoc {
                delim: target.text(),
                strip_tabs,
                expand: !quoted && !target.is_dynamic(),
            });
        }
        Ok(tok)
    }

    /// Reads the bodies of the here-documents begun on the line that just ended.
    fn heredoc_bodies(&mut self) -> Result<(), ParseError> {
        for h in std::mem::take(&mut self.pending) {
            let mut body = String::new();
            loop {
                if self.i >= self.chars.len() {
                    break;
                }
                let start = self.i;
                while self.peek().is_some_and(|c| c != '\n') {
                    self.i += 1;
                }
                let line: String = self.chars[start..self.i].iter().collect();
                if self.peek() == Some('\n') {
                    self.i += 1;
                }
                let cmp = if h.strip_tabs {
                    line.trim_start_matches('\t')
                } else {
                    line.as_str()
                };
                if cmp == h.delim {
                    break;
                }
                body.push_str(&line);
                body.push('\n');
            }
            if h.expand {
                // An unquoted delimiter: the body's `$(...)` and backticks run.
                let mut sub = Lexer::new(&body, self.depth, self.out);
                sub.expansions_only()?;
            }
        }
        Ok(())
    }

    /// Reads text in which only `$`, backquotes and backslashes are special (a here-document
    /// body, the operand of `${x:-...}`), parsing the substitutions it holds.
    fn expansions_only(&mut self) -> Result<(), ParseError> {
        let mut w = Vec::new();
        while let Some(c) = self.peek() {
            match c {
                '\\' => self.i += 2,
                '$' => {
                    self.i += 1;
                    self.dollar(true, &mut w)?;
                }
                '`' => {
                    self.i += 1;
                    self.backtick(true, &mut w)?;
                }
                _ => self.i += 1,
            }
        }
        Ok(())
    }

    fn word(&mut self) -> Result<Word, ParseError> {
        let mut atoms: Vec<Atom> = Vec::new();
        while let Some(c) = self.peek() {
            match c {
                '<' | '>' if self.at(1) == Some('(') => {
                    let (body, next) = balanced(&self.chars, self.i + 2)?;
                    let commands = self.nested(&body)?;
                    atoms.push(Atom::Subst {
                        text: format!("{c}({body})"),
                        quoted: false,
                        commands,
                    });
                    self.i = next;
                }
                c if is_meta(c) => break,
                '\'' => {
                    self.i += 1;
                    loop {
                        match self.peek() {
                            None => return err("unclosed single quote"),
                            Some('\'') => break,
                            Some(c) => {
                                atoms.push(Atom::Char { c, quoted: true });
                                self.i += 1;
                            }
                        }
                    }
                    self.i += 1;
                }
                '"' => {
                    self.i += 1;
                    self.dquoted(&mut atoms)?;
                }
                '\\' => {
                    match self.at(1) {
                        Some('\n') => {}
                        Some(n) => atoms.push(Atom::Char { c: n, quoted: true }),
                        None => atoms.push(Atom::Char {
                            c: '\\',
                            quoted: true,
                        }),
                    }
                    self.i += 2;
                }
                '$' => {
                    self.i += 1;
                    self.dollar(false, &mut atoms)?;
                }
                '`' => {
                    self.i += 1;
                    self.backtick(false, &mut atoms)?;
                }
                '~' if atoms.is_empty() || tilde_may_follow(&atoms) => {
                    self.i += 1;
                    let mut user = String::new();
                    while let Some(c) = self.peek() {
                        if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                            user.push(c);
                            self.i += 1;
                        } else {
                            break;
                        }
                    }
                    if matches!(self.peek(), None | Some('/' | ':'))
                        || self.peek().is_some_and(is_meta)
                    {
                        atoms.push(Atom::Tilde(user));
                    } else {
                        // `~x"y"`: not a tilde prefix, plain characters.
                        atoms.push(Atom::Char {
                            c: '~',
                            quoted: false,
                        });
                        atoms.extend(user.chars().map(|c| Atom::Char { c, quoted: false }));
                    }
                }
                _ => {
                    atoms.push(Atom::Char { c, quoted: false });
                    self.i += 1;
                }
            }
        }
        Ok(Word { atoms })
    }

    fn dquoted(&mut self, atoms: &mut Vec<Atom>) -> Result<(), ParseError> {
        loop {
            match self.peek() {
                None => return err("unclosed double quote"),
                Some('"') => {
                    self.i += 1;
                    return Ok(());
                }
                Some('\\') => {
                    match self.at(1) {
                        Some('\n') => {}
                        Some(n @ ('"' | '\\' | '$' | '`')) => {
                            atoms.push(Atom::Char { c: n, quoted: true })
                        }
                        Some(n) => {
                            atoms.push(Atom::Char {
                                c: '\\',
                                quoted: true,
                            });
                            atoms.push(Atom::Char { c: n, quoted: true });
                        }
                        None => return err("unclosed double quote"),
                    }
                    self.i += 2;
                }
                Some('$') => {
                    self.i += 1;
                    self.dollar(true, atoms)?;
                }
                Some('`') => {
                    self.i += 1;
                    self.backtick(true, atoms)?;
                }
                Some(c) => {
                    atoms.push(Atom::Char { c, quoted: true });
                    self.i += 1;
                }
            }
        }
    }

    /// After a `$`.
    fn dollar(&mut self, quoted: bool, atoms: &mut Vec<Atom>) -> Result<(), ParseError> {
        match self.peek() {
            Some('(') => {
                let (body, next) = balanced(&self.chars, self.i + 1)?;
                self.i = next;
                if let Some(inner) = body.strip_prefix('(').and_then(|b| b.strip_suffix(')'))
                    && balanced_text(inner)
                {
                    self.arith(inner)?;
                    atoms.push(Atom::Arith {
                        text: format!("$(({inner}))"),
                        quoted,
                    });
                } else {
                    let commands = self.nested(&body)?;
                    atoms.push(Atom::Subst {
                        text: format!("$({body})"),
                        quoted,
                        commands,
                    });
                }
            }
            Some('{') => {
                let (body, next) = braced(&self.chars, self.i + 1)?;
                self.i = next;
                let (name, plain) = self.param_body(&body)?;
                atoms.push(Atom::Param {
                    name,
                    text: format!("${{{body}}}"),
                    quoted,
                    plain,
                });
            }
            Some('\'') if !quoted => {
                self.i += 1;
                self.ansi_c(atoms)?;
            }
            Some('"') if !quoted => {
                self.i += 1;
                self.dquoted(atoms)?;
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let mut name = String::new();
                while let Some(c) = self
                    .peek()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                {
                    name.push(c);
                    self.i += 1;
                }
                atoms.push(Atom::Param {
                    text: format!("${name}"),
                    name,
                    quoted,
                    plain: true,
                });
            }
            Some(c @ ('0'..='9' | '@' | '*' | '#' | '?' | '-' | '$' | '!')) => {
                self.i += 1;
                atoms.push(Atom::Param {
                    name: c.to_string(),
                    text: format!("${c}"),
                    quoted,
                    plain: true,
                });
            }
            _ => atoms.push(Atom::Char { c: '$', quoted }),
        }
        Ok(())
    }

    /// The inside of `${...}`: its parameter name and whether it is the bare value.
    /// Forms bash can run code from (`${x@P}`, indirection, array subscripts) are noted.
    fn param_body(&mut self, body: &str) -> Result<(String, bool), ParseError> {
        let (prefix, rest) = match body.strip_prefix(['#', '!']) {
            Some(r) if !r.is_empty() && !r.starts_with(['}', ':', '=', '-', '+', '?']) => {
                (body.chars().next(), r)
            }
            _ => (None, body),
        };
        let name_len = if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len())
        } else if rest.starts_with(|c: char| c.is_ascii_digit()) {
            rest.find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len())
        } else if rest.starts_with(['@', '*', '#', '?', '-', '$', '!']) {
            1
        } else {
            0
        };
        let name = &rest[..name_len];
        let op = &rest[name_len..];
        if name.is_empty() {
            self.out
                .dynamic
                .push(format!("`${{{body}}}` is not a parameter it can read"));
            return Ok((String::new(), false));
        }
        if prefix == Some('!') {
            self.out.dynamic.push(format!(
                "`${{{body}}}` names another variable (bash evaluates what it holds)"
            ));
        }
        if op.starts_with('[') && !op.starts_with("[@]") && !op.starts_with("[*]") {
            let sub = op.trim_start_matches('[');
            let sub = sub.split(']').next().unwrap_or("");
            if !sub.chars().all(|c| c.is_ascii_digit()) {
                self.out.dynamic.push(format!(
                    "`${{{body}}}` has a computed subscript (bash runs commands hidden in it)"
                ));
            }
        }
        if op.contains('@') && !op.starts_with("[@]") {
            self.out.dynamic.push(format!(
                "`${{{body}}}` transforms a value (`@P` runs what it holds)"
            ));
        }
        if !op.is_empty() {
            // `${x:-$(cmd)}`: the operand's substitutions run.
            let mut sub = Lexer::new(op, self.depth, self.out);
            sub.expansions_only()?;
        }
        Ok((name.to_owned(), prefix.is_none() && op.is_empty()))
    }

    /// Arithmetic text: its substitutions run, and a variable in it may hide a command
    /// (bash evaluates array subscripts inside values).
    fn arith(&mut self, text: &str) -> Result<(), ParseError> {
        let mut sub = Lexer::new(text, self.depth, self.out);
        sub.expansions_only()?;
        if has_identifier(text) {
            self.out.dynamic.push(format!(
                "`$(({text}))` computes with variables (bash runs commands hidden in their values)"
            ));
        }
        Ok(())
    }

    fn backtick(&mut self, quoted: bool, atoms: &mut Vec<Atom>) -> Result<(), ParseError> {
        let mut body = String::new();
        loop {
            match self.peek() {
                None => return err("unclosed backtick"),
                Some('`') => {
                    self.i += 1;
                    break;
                }
                Some('\\') => {
                    match self.at(1) {
                        Some(n @ ('`' | '\\' | '$')) => body.push(n),
                        Some('"') if quoted => body.push('"'),
                        Some(n) => {
                            body.push('\\');
                            body.push(n);
                        }
                        None => return err("unclosed backtick"),
                    }
                    self.i += 2;
                }
                Some(c) => {
                    body.push(c);
                    self.i += 1;
                }
            }
        }
        let commands = self.nested(&body)?;
        atoms.push(Atom::Subst {
            text: format!("`{body}`"),
            quoted,
            commands,
        });
        Ok(())
    }

    /// `$'...'` (bash): backslash escapes decoded.
    fn ansi_c(&mut self, atoms: &mut Vec<Atom>) -> Result<(), ParseError> {
        let push = |atoms: &mut Vec<Atom>, c: char| atoms.push(Atom::Char { c, quoted: true });
        loop {
            let Some(c) = self.peek() else {
                return err("unclosed $'");
            };
            self.i += 1;
            match c {
                '\'' => return Ok(()),
                '\\' => {
                    let Some(e) = self.peek() else {
                        return err("unclosed $'");
                    };
                    self.i += 1;
                    let simple = match e {
                        'a' => Some('\x07'),
                        'b' => Some('\x08'),
                        'e' | 'E' => Some('\x1b'),
                        'f' => Some('\x0c'),
                        'n' => Some('\n'),
                        'r' => Some('\r'),
                        't' => Some('\t'),
                        'v' => Some('\x0b'),
                        '\\' | '\'' | '"' | '?' => Some(e),
                        _ => None,
                    };
                    if let Some(s) = simple {
                        push(atoms, s);
                        continue;
                    }
                    let (radix, max) = match e {
                        '0'..='7' => {
                            self.i -= 1;
                            (8, 3)
                        }
                        'x' => (16, 2),
                        'u' => (16, 4),
                        'U' => (16, 8),
                        'c' => {
                            let ctl = self.peek().map(|c| ((c as u32) & 0x1f) as u8 as char);
                            self.i += 1;
                            push(atoms, ctl.unwrap_or('c'));
                            continue;
                        }
                        other => {
                            push(atoms, '\\');
                            push(atoms, other);
                            continue;
                        }
                    };
                    let mut v = 0u32;
                    let mut n = 0;
                    while n < max
                        && let Some(d) = self.peek().and_then(|c| c.to_digit(radix))
                    {
                        v = v * radix + d;
                        self.i += 1;
                        n += 1;
                    }
                    if n == 0 {
                        push(atoms, '\\');
                        push(atoms, e);
                    } else {
                        push(atoms, char::from_u32(v).unwrap_or('\u{fffd}'));
                    }
                }
                c => push(atoms, c),
            }
        }
    }
}

/// Whether a tilde here starts a home directory (after `NAME=` or `:` in an assignment).
fn tilde_may_follow(atoms: &[Atom]) -> bool {
    let Some(Atom::Char { c, quoted: false }) = atoms.last() else {
        return false;
    };
    if !matches!(c, '=' | ':') {
        return false;
    }
    let eq = atoms.iter().position(|a| {
        matches!(
            a,
            Atom::Char {
                c: '=',
                quoted: false
            }
        )
    });
    let Some(eq) = eq else { return false };
    let name: Option<String> = atoms[..eq]
        .iter()
        .map(|a| match a {
            Atom::Char { c, quoted: false } => Some(*c),
            _ => None,
        })
        .collect();
    name.is_some_and(|n| valid_name(&n))
}

fn has_identifier(text: &str) -> bool {
    let mut prev: Option<char> = None;
    for c in text.chars() {
        if (c.is_ascii_alphabetic() || c == '_')
            && !prev.is_some_and(|p| p.is_ascii_alphanumeric() || p == '#' || p == '_')
        {
            return true;
        }
        prev = Some(c);
    }
    false
}

fn balanced_text(s: &str) -> bool {
    let chars: Vec<char> = format!("{s})").chars().collect();
    matches!(balanced(&chars, 0), Ok((_, n)) if n == chars.len())
}

/// The body of `$( ... )` (or `<( ... )`) starting just after the `(`, and the index after
/// its `)`.
fn balanced(chars: &[char], mut i: usize) -> Result<(String, usize), ParseError> {
    let start = i;
    let mut depth = 1;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => i += 1,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '\\') => i += 1,
            (None, '(') => depth += 1,
            (None, ')') => {
                depth -= 1;
                if depth == 0 {
                    return Ok((chars[start..i].iter().collect(), i + 1));
                }
            }
            _ => {}
        }
        i += 1;
    }
    err("unclosed $(")
}

/// The body of `${ ... }` starting after the `{`, and the index after its `}`.
fn braced(chars: &[char], mut i: usize) -> Result<(String, usize), ParseError> {
    let start = i;
    let mut depth = 1;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => i += 1,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '\\') => i += 1,
            (None, '{') => depth += 1,
            (None, '}') => {
                depth -= 1;
                if depth == 0 {
                    return Ok((chars[start..i].iter().collect(), i + 1));
                }
            }
            _ => {}
        }
        i += 1;
    }
    err("unclosed ${")
}
