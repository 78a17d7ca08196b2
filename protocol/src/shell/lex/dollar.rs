//! What follows a `$` or a backquote: parameters (`$x`, `${x:-y}`), command substitutions,
//! arithmetic and `$'...'`. Forms bash can run code from (`${x@P}`, `${!x}`, computed
//! subscripts, arithmetic on variables) are noted on the script.

use super::super::ParseError;
use super::super::word::Atom;
use super::{Lexer, balanced, balanced_text, braced, err};

impl Lexer<'_> {
    /// After a `$`.
    pub(super) fn dollar(&mut self, quoted: bool, atoms: &mut Vec<Atom>) -> Result<(), ParseError> {
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

    pub(super) fn backtick(
        &mut self,
        quoted: bool,
        atoms: &mut Vec<Atom>,
    ) -> Result<(), ParseError> {
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
