//! Splits shell text into words, operators and redirections. Quotes, backslashes,
//! `$'...'`, parameter expansions, command and process substitutions, arithmetic and
//! here-documents are read the way bash reads them; the commands inside substitutions are
//! parsed on the spot (into the same [`Script`]), so nothing they run goes unjudged.

mod dollar;

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
