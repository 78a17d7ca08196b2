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
    // A word without wildcards is one name: match it against the pattern directly (the
    // general search below grows with the word's length times the pattern's).
    if !w.is_empty() && w.iter().all(|g| matches!(g, G::Char(_))) {
        let name: Vec<char> = w
            .iter()
            .filter_map(|g| match g {
                G::Char(c) => Some(*c),
                _ => None,
            })
            .collect();
        return matches_name(s, &name);
    }
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

/// Whether glob `s` matches the name `name` (the classic two-cursor match, backtracking to
/// the last `*`).
fn matches_name(s: &[G], name: &[char]) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match s.get(p) {
            Some(G::Star) => {
                star = Some((p, n));
                p += 1;
            }
            Some(g) if g.accepts(name[n]) => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    s[p..].iter().all(|g| *g == G::Star)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globs(text: &str) -> Vec<G> {
        let chars: Vec<(char, bool)> = text.chars().map(|c| (c, true)).collect();
        parse_globs(&chars)
    }

    fn literal(text: &str) -> Vec<G> {
        text.chars().map(G::Char).collect()
    }

    #[test]
    fn a_plain_name_is_matched_like_the_general_search_would() {
        for (pattern, name, want) in [
            ("id_rsa*", "id_rsa", true),
            ("id_rsa*", "id_rsa.pub", true),
            ("*.nk", "policy.nk", true),
            ("*.nk", "policy.nkx", false),
            ("[.]ssh", ".ssh", true),
            (".ss?", ".ssh", true),
            ("*", ".hidden", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
        ] {
            assert_eq!(
                intersects(&literal(name), &globs(pattern)),
                want,
                "{pattern} {name}"
            );
        }
        // A very long name is judged in time linear in its length.
        let long = "x".repeat(200_000);
        assert!(!intersects(&literal(&long), &globs("id_rsa*")));
        assert!(intersects(&literal(&long), &globs("*x")));
    }
}
