//! One path component as a glob (`*`, `?`, `[...]`), and whether a shell glob and a
//! policy's glob can match the same name.

use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum G {
    Char(char),
    Any,
    Star,
    Class {
        neg: bool,
        ranges: Vec<(char, char)>,
    },
}

impl G {
    pub(super) fn accepts(&self, c: char) -> bool {
        match self {
            G::Char(x) => *x == c,
            G::Any | G::Star => true,
            G::Class { neg, ranges } => ranges.iter().any(|(a, b)| *a <= c && c <= *b) != *neg,
        }
    }
}

/// `(char, special)` pairs into glob tokens.
pub(super) fn parse_globs(chars: &[(char, bool)]) -> Vec<G> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (c, special) = chars[i];
        if special && c == '*' {
            if out.last() != Some(&G::Star) {
                out.push(G::Star);
            }
        } else if special && c == '?' {
            out.push(G::Any);
        } else if special
            && c == '['
            && let Some((class, next)) = class(chars, i + 1)
        {
            out.push(class);
            i = next;
            continue;
        } else {
            out.push(G::Char(c));
        }
        i += 1;
    }
    out
}

/// A bracket expression starting after its `[`: the class and the index after its `]`.
pub(super) fn class(chars: &[(char, bool)], mut i: usize) -> Option<(G, usize)> {
    let mut neg = false;
    if matches!(chars.get(i), Some(('!' | '^', true))) {
        neg = true;
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    while let Some(&(c, special)) = chars.get(i) {
        if c == ']' && special && !first {
            return Some((G::Class { neg, ranges }, i + 1));
        }
        first = false;
        if c == '[' && matches!(chars.get(i + 1), Some((':', _))) {
            // `[:alpha:]` and friends: taken as any character.
            let end = (i + 2..chars.len().saturating_sub(1))
                .find(|&k| chars[k].0 == ':' && chars[k + 1].0 == ']')?;
            ranges.push(('\0', char::MAX));
            i = end + 2;
            continue;
        }
        if matches!(chars.get(i + 1), Some(('-', _)))
            && let Some(&(hi, _)) = chars.get(i + 2)
            && hi != ']'
        {
            ranges.push((c.min(hi), c.max(hi)));
            i += 3;
            continue;
        }
        ranges.push((c, c));
        i += 1;
    }
    None
}

pub(super) fn is_bare(g: &[G]) -> bool {
    !g.is_empty() && g.iter().all(|t| *t == G::Star)
}

pub(super) fn is_generic(g: &[G]) -> bool {
    g.first() == Some(&G::Star) && g[1..].iter().all(|t| matches!(t, G::Char(_)))
}

pub(super) fn balanced_classes(chars: &[(char, bool)]) -> bool {
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == ('[', true) {
            match class(chars, i + 1) {
                Some((_, next)) => i = next,
                None => return false,
            }
        } else {
            i += 1;
        }
    }
    true
}

pub(super) fn comp_overlap(w: &[G], s: &[G], anywhere: bool) -> bool {
    if anywhere && (is_bare(w) || is_generic(w)) {
        if is_bare(s) {
            return true;
        }
        if is_bare(w) || s.first() != Some(&G::Star) {
            return false;
        }
    }
    intersects(w, s)
}

/// Whether some non-empty file name matches shell glob `w` and pattern `s`; `w` follows
/// the shell in never matching a leading `.` with a wildcard.
fn intersects(w: &[G], s: &[G]) -> bool {
    let mut candidates: Vec<char> = vec!['.', 'a', '0', '_', '-', '\u{e000}'];
    for g in w.iter().chain(s) {
        match g {
            G::Char(c) => candidates.push(*c),
            G::Class { ranges, .. } => {
                for (a, b) in ranges {
                    for c in [*a, *b] {
                        candidates.push(c);
                        candidates.extend(char::from_u32(c as u32 + 1));
                        candidates.extend((c as u32).checked_sub(1).and_then(char::from_u32));
                    }
                }
            }
            _ => {}
        }
    }
    candidates.sort_unstable();
    candidates.dedup();
    let mut seen: HashSet<(usize, usize, bool)> = HashSet::new();
    let mut stack = vec![(0usize, 0usize, false)];
    while let Some(state) = stack.pop() {
        if !seen.insert(state) {
            continue;
        }
        let (p, q, started) = state;
        if p == w.len() && q == s.len() && started {
            return true;
        }
        if w.get(p) == Some(&G::Star) {
            stack.push((p + 1, q, started));
        }
        if s.get(q) == Some(&G::Star) {
            stack.push((p, q + 1, started));
        }
        let (Some(a), Some(b)) = (w.get(p), s.get(q)) else {
            continue;
        };
        let explicit_dot = *a == G::Char('.');
        let common = candidates
            .iter()
            .any(|&c| a.accepts(c) && b.accepts(c) && (started || c != '.' || explicit_dot));
        if common {
            let np = if *a == G::Star { p } else { p + 1 };
            let nq = if *b == G::Star { q } else { q + 1 };
            stack.push((np, nq, true));
        }
    }
    false
}
