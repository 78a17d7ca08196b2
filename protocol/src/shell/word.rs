//! Words as the shell sees them before it expands them: a sequence of atoms that remembers
//! what was quoted, where a variable or a command substitution stands, and where `~` is.
//! Brace expansion lives here too, because it turns one word into several.

use std::ops::Range;

/// The most words one word may brace-expand into; past that it is judged as unknowable.
pub const MAX_BRACE_WORDS: usize = 256;

/// One piece of a word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Atom {
    /// A character. `quoted` when it was quoted or escaped, so it is never glob or brace
    /// syntax.
    Char { c: char, quoted: bool },
    /// `~` (empty user) or `~user` at the start of a word or of an assignment's value.
    Tilde(String),
    /// `$name`, `${...}`, `$1`, `$@`, ...: `plain` when it is the bare value (no operator).
    Param {
        name: String,
        text: String,
        quoted: bool,
        plain: bool,
    },
    /// `$(...)`, backticks, `<(...)`, `>(...)`: the text as written and the commands it runs
    /// (indices into [`super::Script::commands`]).
    Subst {
        text: String,
        quoted: bool,
        commands: Range<usize>,
    },
    /// `$((...))`.
    Arith { text: String, quoted: bool },
}

impl Atom {
    fn unquoted(&self, ch: char) -> bool {
        matches!(self, Atom::Char { c, quoted: false } if *c == ch)
    }

    /// Whether the atom's value is only known when the command runs.
    pub fn is_expansion(&self) -> bool {
        matches!(
            self,
            Atom::Param { .. } | Atom::Subst { .. } | Atom::Arith { .. }
        )
    }
}

/// A shell word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Word {
    pub atoms: Vec<Atom>,
}

impl Word {
    /// A word made of `s` taken literally (an argv item, say).
    pub fn quoted(s: &str) -> Self {
        Self {
            atoms: s.chars().map(|c| Atom::Char { c, quoted: true }).collect(),
        }
    }

    /// A word of `s` whose characters keep their glob meaning (the value of an unquoted
    /// expansion).
    pub fn unquoted(s: &str) -> Self {
        Self {
            atoms: s.chars().map(|c| Atom::Char { c, quoted: false }).collect(),
        }
    }

    /// The word's value when it is fixed: no expansion, no `~`, no glob characters.
    pub fn literal(&self) -> Option<String> {
        if self.has_glob() {
            return None;
        }
        let mut s = String::new();
        for a in &self.atoms {
            match a {
                Atom::Char { c, .. } => s.push(*c),
                _ => return None,
            }
        }
        Some(s)
    }

    /// The word as people read it: quotes removed, expansions as written.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for a in &self.atoms {
            match a {
                Atom::Char { c, .. } => s.push(*c),
                Atom::Tilde(user) => {
                    s.push('~');
                    s.push_str(user);
                }
                Atom::Param { text, .. } | Atom::Subst { text, .. } | Atom::Arith { text, .. } => {
                    s.push_str(text)
                }
            }
        }
        s
    }

    /// Whether part of the word is only known when it runs (a variable, a substitution).
    pub fn is_dynamic(&self) -> bool {
        self.atoms.iter().any(Atom::is_expansion)
    }

    /// Whether the word may become several words (an unquoted expansion is split on
    /// blanks) or none.
    pub fn may_split(&self) -> bool {
        self.atoms.iter().any(|a| match a {
            Atom::Param { quoted, name, .. } => !quoted || name == "@",
            Atom::Subst { quoted, .. } | Atom::Arith { quoted, .. } => !quoted,
            _ => false,
        })
    }

    /// Whether the word has unquoted glob characters.
    pub fn has_glob(&self) -> bool {
        self.atoms.iter().enumerate().any(|(i, a)| match a {
            Atom::Char {
                c: '*' | '?',
                quoted: false,
            } => true,
            // `[` opens a bracket expression only when a `]` closes it (`[ -f x ]` is no glob).
            Atom::Char {
                c: '[',
                quoted: false,
            } => self.atoms[i + 1..].iter().skip(1).any(|b| b.unquoted(']')),
            _ => false,
        })
    }

    /// Whether the word starts with an unquoted `-` or with something that could be one.
    pub fn may_be_option(&self) -> bool {
        match self.atoms.first() {
            Some(Atom::Char { c, .. }) => *c == '-',
            Some(Atom::Tilde(_)) | None => false,
            Some(_) => true,
        }
    }

    /// `NAME=value` (or `NAME+=value`): the name and the value's atoms.
    pub fn assignment(&self) -> Option<(String, Word)> {
        let mut name = String::new();
        for (i, a) in self.atoms.iter().enumerate() {
            match a {
                Atom::Char {
                    c: '=',
                    quoted: false,
                } if valid_name(&name) => {
                    return Some((
                        name,
                        Word {
                            atoms: self.atoms[i + 1..].to_vec(),
                        },
                    ));
                }
                Atom::Char {
                    c: '+',
                    quoted: false,
                } if valid_name(&name)
                    && self.atoms.get(i + 1).is_some_and(|a| a.unquoted('=')) =>
                {
                    return Some((
                        name,
                        Word {
                            atoms: self.atoms[i + 2..].to_vec(),
                        },
                    ));
                }
                Atom::Char { c, quoted: false } if c.is_ascii_alphanumeric() || *c == '_' => {
                    name.push(*c)
                }
                // `a[i]=x`: an array element; its subscript is arithmetic.
                Atom::Char {
                    c: '[',
                    quoted: false,
                } if valid_name(&name) => {
                    let close = self.atoms[i..].iter().position(|a| a.unquoted(']'))?;
                    if self
                        .atoms
                        .get(i + close + 1)
                        .is_some_and(|a| a.unquoted('='))
                    {
                        let sub: String = Word {
                            atoms: self.atoms[i..=i + close].to_vec(),
                        }
                        .text();
                        return Some((
                            format!("{name}{sub}"),
                            Word {
                                atoms: self.atoms[i + close + 2..].to_vec(),
                            },
                        ));
                    }
                    return None;
                }
                _ => return None,
            }
        }
        None
    }

    /// The part after the first unquoted `=`, for words like `--file=PATH` or `if=PATH`.
    pub fn after_equals(&self) -> Option<Word> {
        let i = self
            .atoms
            .iter()
            .position(|a| matches!(a, Atom::Char { c: '=', .. }))?;
        let rest = &self.atoms[i + 1..];
        (!rest.is_empty()).then(|| Word {
            atoms: rest.to_vec(),
        })
    }

    /// The words bash's brace expansion makes of this one (`{a,b}`, `{1..3}`), at most
    /// [`MAX_BRACE_WORDS`]; `None` when there would be more.
    pub fn expand_braces(&self) -> Option<Vec<Word>> {
        let mut out = Vec::new();
        expand(&self.atoms, &mut out, 0)?;
        if out.len() == 1 {
            return Some(vec![self.clone()]);
        }
        Some(out.into_iter().map(tilde_prefix).collect())
    }
}

/// Tilde expansion comes after brace expansion: `{~,x}` gives `~`, the home directory.
fn tilde_prefix(mut atoms: Vec<Atom>) -> Word {
    if atoms.first().is_some_and(|a| a.unquoted('~')) {
        let end = atoms
            .iter()
            .position(|a| !matches!(a, Atom::Char { c, quoted: false } if c.is_ascii_alphanumeric() || matches!(c, '~' | '_' | '-' | '.')))
            .unwrap_or(atoms.len());
        let rest_ok = end == atoms.len() || atoms[end].unquoted('/');
        let user: String = atoms[1..end]
            .iter()
            .filter_map(|a| match a {
                Atom::Char { c, .. } => Some(*c),
                _ => None,
            })
            .collect();
        if rest_ok && !user.contains('~') {
            atoms.splice(0..end, [Atom::Tilde(user)]);
        }
    }
    Word { atoms }
}

/// A shell variable name.
pub fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

const MAX_BRACE_DEPTH: usize = 16;

fn expand(atoms: &[Atom], out: &mut Vec<Vec<Atom>>, depth: usize) -> Option<()> {
    if depth > MAX_BRACE_DEPTH {
        return None;
    }
    // The first brace group with a top-level comma or a sequence decides.
    let mut i = 0;
    while i < atoms.len() {
        if atoms[i].unquoted('{')
            && let Some((close, alts)) = group(atoms, i)
        {
            let prefix = &atoms[..i];
            let suffix = &atoms[close + 1..];
            for alt in alts {
                let mut joined = prefix.to_vec();
                joined.extend(alt);
                joined.extend_from_slice(suffix);
                expand(&joined, out, depth + 1)?;
                if out.len() > MAX_BRACE_WORDS {
                    return None;
                }
            }
            return Some(());
        }
        i += 1;
    }
    out.push(atoms.to_vec());
    (out.len() <= MAX_BRACE_WORDS).then_some(())
}

/// The brace group opening at `open`: the index of its `}` and its alternatives, when it
/// is a real group (`{a,b}` or `{x..y}`), not a literal `{}` or `{a}`.
fn group(atoms: &[Atom], open: usize) -> Option<(usize, Vec<Vec<Atom>>)> {
    let mut depth = 0usize;
    let mut commas = Vec::new();
    let mut close = None;
    for (j, a) in atoms.iter().enumerate().skip(open) {
        if a.unquoted('{') {
            depth += 1;
        } else if a.unquoted('}') {
            depth -= 1;
            if depth == 0 {
                close = Some(j);
                break;
            }
        } else if a.unquoted(',') && depth == 1 {
            commas.push(j);
        }
    }
    let close = close?;
    if commas.is_empty() {
        return sequence(&atoms[open + 1..close]).map(|alts| (close, alts));
    }
    let mut alts = Vec::new();
    let mut start = open + 1;
    for c in commas.into_iter().chain([close]) {
        alts.push(atoms[start..c].to_vec());
        start = c + 1;
    }
    Some((close, alts))
}

/// `{1..5}`, `{a..e}`, `{1..10..2}`.
fn sequence(inner: &[Atom]) -> Option<Vec<Vec<Atom>>> {
    let text: String = inner
        .iter()
        .map(|a| match a {
            Atom::Char { c, quoted: false } => Some(*c),
            _ => None,
        })
        .collect::<Option<String>>()?;
    let parts: Vec<&str> = text.split("..").collect();
    if !(2..=3).contains(&parts.len()) {
        return None;
    }
    let step: i64 = match parts.get(2) {
        Some(s) => s.parse::<i64>().ok()?.checked_abs()?.max(1),
        None => 1,
    };
    let chars =
        |s: &str| -> Vec<Atom> { s.chars().map(|c| Atom::Char { c, quoted: true }).collect() };
    if let (Ok(a), Ok(b)) = (parts[0].parse::<i64>(), parts[1].parse::<i64>()) {
        let n = (a.abs_diff(b) / step as u64) as usize + 1;
        if n > MAX_BRACE_WORDS {
            // Too many to list; the caller gives up on the word.
            return Some(vec![vec![]; MAX_BRACE_WORDS + 1]);
        }
        let mut v = Vec::with_capacity(n);
        let mut x = a;
        for _ in 0..n {
            v.push(chars(&x.to_string()));
            x = if a <= b { x + step } else { x - step };
        }
        return Some(v);
    }
    let (mut ca, mut cb) = (parts[0].chars(), parts[1].chars());
    match (ca.next(), ca.next(), cb.next(), cb.next()) {
        (Some(a), None, Some(b), None) if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            Some(
                (lo..=hi)
                    .step_by(step as usize)
                    .map(|c| vec![Atom::Char { c, quoted: true }])
                    .collect(),
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Word {
        Word::unquoted(s)
    }

    fn texts(w: &Word) -> Vec<String> {
        w.expand_braces().unwrap().iter().map(Word::text).collect()
    }

    #[test]
    fn braces_expand_like_bash() {
        assert_eq!(texts(&raw("~/{.ssh,x}/id")), ["~/.ssh/id", "~/x/id"]);
        assert_eq!(texts(&raw("{rm,-rf,/}")), ["rm", "-rf", "/"]);
        let w = raw("{rm,~/x}").expand_braces().unwrap();
        assert_eq!(w[1].atoms[0], Atom::Tilde(String::new()));
        assert_eq!(texts(&raw("a{b,{c,d}}e")), ["abe", "ace", "ade"]);
        assert_eq!(texts(&raw("x{1..3}")), ["x1", "x2", "x3"]);
        assert_eq!(texts(&raw("{a..c}")), ["a", "b", "c"]);
        assert_eq!(texts(&raw("{}")), ["{}"]);
        assert_eq!(texts(&raw("{a}")), ["{a}"]);
        assert_eq!(texts(&raw("c{u,}rl")), ["curl", "crl"]);
        assert!(raw("{1..100000}").expand_braces().is_none());
        assert!(
            raw("{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}")
                .expand_braces()
                .is_none()
        );
    }

    #[test]
    fn quoted_braces_and_globs_are_plain_characters() {
        let w = Word::quoted("{a,b}*");
        assert_eq!(texts(&w), ["{a,b}*"]);
        assert_eq!(w.literal().as_deref(), Some("{a,b}*"));
        assert!(raw("a*").literal().is_none());
        assert!(raw("a*").has_glob());
    }

    #[test]
    fn assignments_are_recognised() {
        let (n, v) = raw("PATH=/x:/y").assignment().unwrap();
        assert_eq!((n.as_str(), v.text().as_str()), ("PATH", "/x:/y"));
        assert_eq!(raw("A+=1").assignment().unwrap().0, "A");
        assert_eq!(raw("a[1]=x").assignment().unwrap().0, "a[1]");
        assert!(raw("1A=x").assignment().is_none());
        assert!(raw("--x=y").assignment().is_none());
        assert!(Word::quoted("A=x").assignment().is_none());
    }
}
