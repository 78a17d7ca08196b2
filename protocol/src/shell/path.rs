//! What paths a word could name, and whether they could meet a path pattern: glob against
//! glob, never the filesystem (policy runs on another machine than the files).
//!
//! A word becomes [`PathPattern`]s: braces are already expanded, variables the line sets
//! are replaced by each value they could hold ([`Vars`]), `~` and `$HOME` are the home
//! directory, `.` and `..` are resolved, a relative path starts in the step's directory, and
//! anything only known when it runs is opaque: it could be any path at all. [`Pattern`] is
//! the other side: a policy's glob (`**/.ssh/**`, `/etc/shadow`, `~`). [`Pattern::overlap`]
//! says whether some path matches both, and whether that depends on an opaque part.
//!
//! Shell globs follow the shell: `*`, `?` and `[...]` never match a leading `.`. A bare `*`
//! (or `*.ext`) is "every file here", not a spelling of a particular file a pattern looks
//! for anywhere (`**/id_rsa*`): `cat *.rs` does not read keys, `cat ~/.ss?/id_rs?` does.

use std::collections::HashSet;

use super::glob::{G, balanced_classes, comp_overlap, is_bare, parse_globs};
use super::vars::Vars;
use super::word::{Atom, Word};

/// How a word's paths meet a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Overlap {
    /// No path it could name matches.
    No,
    /// Only if something known at run time (a variable, a substitution) turns out so.
    Maybe,
    /// Some path it names matches.
    Sure,
}

/// One component of a path a word names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum WComp {
    Root,
    Home,
    /// The directory the command starts in, unknown.
    Cwd,
    /// Only known at run time: any number of components, of any name.
    Opaque,
    Glob(Vec<G>),
}

/// A path a word could name, as a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    comps: Vec<WComp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SComp {
    Root,
    Home,
    DStar,
    Glob(Vec<G>),
}

/// A policy's path pattern: `*`, `?`, `[...]`, `{a,b}` within a component, `**` for any
/// number of components, a leading `~` for the home directory. One that does not start with
/// `/`, `~` or `**` matches at any depth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    alts: Vec<Vec<SComp>>,
}

const MAX_EXPANSIONS: usize = 64;

impl PathPattern {
    /// The directory relative paths start in: `cwd` as the step gives it, or unknown.
    pub fn base(cwd: Option<&str>) -> Self {
        match cwd {
            Some(c) if !c.trim().is_empty() => Self::literal(c.trim(), &Self::unknown()),
            _ => Self::unknown(),
        }
    }

    fn unknown() -> Self {
        Self {
            comps: vec![WComp::Cwd],
        }
    }

    /// A path taken literally (a step's `path`, `repo`, `cwd`), with `~`, `$HOME` and
    /// `${HOME}` for the home directory.
    pub fn literal(path: &str, base: &PathPattern) -> Self {
        let (home, rest) = if path == "~" || path.starts_with("~/") {
            (true, &path[1..])
        } else if let Some(r) = path.strip_prefix("${HOME}") {
            (true, r)
        } else if let Some(r) = path
            .strip_prefix("$HOME")
            .filter(|r| r.is_empty() || r.starts_with('/'))
        {
            (true, r)
        } else {
            (false, path)
        };
        let mut comps = Vec::new();
        if home {
            comps.push(WComp::Home);
        } else if rest.starts_with('/') {
            comps.push(WComp::Root);
        } else {
            comps.extend(base.comps.iter().cloned());
        }
        for part in rest.split('/') {
            comps.push(WComp::Glob(part.chars().map(G::Char).collect()));
        }
        normalize(comps)
    }

    /// Every path `word` could name, relative paths starting at `base`.
    pub fn of_word(word: &Word, base: &PathPattern, vars: &Vars) -> Vec<PathPattern> {
        let mut out = Vec::new();
        for w in vars.expand(word) {
            if w.atoms.is_empty() {
                continue;
            }
            let p = from_atoms(&w.atoms, base);
            // `X/*` names everything in X, which is X itself for a recursive command.
            if matches!(p.comps.last(), Some(WComp::Glob(g)) if is_bare(g)) && p.comps.len() > 1 {
                let mut parent = p.clone();
                parent.comps.pop();
                out.push(parent);
            }
            out.push(p);
            if out.len() > MAX_EXPANSIONS {
                break;
            }
        }
        out
    }

    /// Whether part of the path is only known at run time.
    pub fn is_opaque(&self) -> bool {
        self.comps.contains(&WComp::Opaque)
    }
}

fn from_atoms(atoms: &[Atom], base: &PathPattern) -> PathPattern {
    // Split on `/`, quoted or not: the kernel sees one either way.
    let mut parts: Vec<&[Atom]> = Vec::new();
    let mut start = 0;
    for (i, a) in atoms.iter().enumerate() {
        if matches!(a, Atom::Char { c: '/', .. }) {
            parts.push(&atoms[start..i]);
            start = i + 1;
        }
    }
    parts.push(&atoms[start..]);
    let mut comps = Vec::new();
    for (k, part) in parts.iter().enumerate() {
        let comp = match part {
            [] if k == 0 => WComp::Root,
            [Atom::Tilde(user)] if k == 0 && user.is_empty() => WComp::Home,
            [
                Atom::Param {
                    name, plain: true, ..
                },
            ] if k == 0 && name == "HOME" => WComp::Home,
            [
                Atom::Param {
                    name, plain: true, ..
                },
            ] if name == "PWD" => WComp::Cwd,
            part if part.iter().any(|a| !matches!(a, Atom::Char { .. })) => WComp::Opaque,
            part => WComp::Glob(globs(part)),
        };
        if k == 0 && matches!(comp, WComp::Glob(_)) {
            comps.extend(base.comps.iter().cloned());
        }
        comps.push(comp);
    }
    normalize(comps)
}

/// Drops empty and `.` components, resolves `..` (a parent of something unknown is
/// unknown), keeps a leading root or home.
fn normalize(comps: Vec<WComp>) -> PathPattern {
    let mut out: Vec<WComp> = Vec::new();
    for c in comps {
        match &c {
            WComp::Glob(g) if g.is_empty() || *g == [G::Char('.')] => {}
            WComp::Glob(g) if *g == [G::Char('.'), G::Char('.')] => match out.last() {
                Some(WComp::Root) => {}
                Some(WComp::Glob(_)) => {
                    out.pop();
                }
                Some(WComp::Cwd) => {}
                Some(WComp::Home | WComp::Opaque) => {
                    out.pop();
                    out.push(WComp::Opaque);
                }
                None => out.push(WComp::Opaque),
            },
            WComp::Root if !out.is_empty() => {}
            _ => out.push(c),
        }
    }
    PathPattern { comps: out }
}

/// Glob tokens of a component's characters: only unquoted `*`, `?`, `[...]` are special.
fn globs(atoms: &[Atom]) -> Vec<G> {
    let chars: Vec<(char, bool)> = atoms
        .iter()
        .filter_map(|a| match a {
            Atom::Char { c, quoted } => Some((*c, !quoted)),
            _ => None,
        })
        .collect();
    parse_globs(&chars)
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("an empty pattern".into());
        }
        let words = Word::unquoted(text)
            .expand_braces()
            .ok_or("too many brace alternatives")?;
        let mut alts = Vec::new();
        for w in words {
            let s = w.text();
            let mut comps = Vec::new();
            let rest = if s == "~" || s.starts_with("~/") {
                comps.push(SComp::Home);
                &s[1..]
            } else if s.starts_with('/') {
                comps.push(SComp::Root);
                &s[..]
            } else {
                if !s.starts_with("**") {
                    comps.push(SComp::DStar);
                }
                &s[..]
            };
            for part in rest.split('/').filter(|p| !p.is_empty()) {
                if part == "**" {
                    if comps.last() != Some(&SComp::DStar) {
                        comps.push(SComp::DStar);
                    }
                    continue;
                }
                let mut chars = Vec::new();
                let mut it = part.chars();
                while let Some(c) = it.next() {
                    if c == '\\' {
                        chars.push((it.next().ok_or("a trailing backslash")?, false));
                    } else {
                        chars.push((c, true));
                    }
                }
                if chars.iter().any(|&(c, s)| s && c == '[') && !balanced_classes(&chars) {
                    return Err(format!("an unclosed `[` in {part:?}"));
                }
                comps.push(SComp::Glob(parse_globs(&chars)));
            }
            alts.push(comps);
        }
        Ok(Self {
            text: text.to_owned(),
            alts,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether some path `path` could name matches this pattern.
    pub fn overlap(&self, path: &PathPattern) -> Overlap {
        self.alts
            .iter()
            .map(|s| overlap(&path.comps, s))
            .max()
            .unwrap_or(Overlap::No)
    }
}

fn wild_only(s: &SComp) -> bool {
    match s {
        SComp::DStar => true,
        SComp::Glob(g) => is_bare(g),
        _ => false,
    }
}

fn overlap(w: &[WComp], s: &[SComp]) -> Overlap {
    let mut seen: HashSet<(usize, usize, bool)> = HashSet::new();
    let mut stack = vec![(0usize, 0usize, false)];
    let mut best = Overlap::No;
    while let Some(state) = stack.pop() {
        if !seen.insert(state) {
            continue;
        }
        let (i, j, maybe) = state;
        if i == w.len() && j == s.len() {
            if !maybe {
                return Overlap::Sure;
            }
            best = Overlap::Maybe;
            continue;
        }
        if let Some(SComp::DStar) = s.get(j) {
            stack.push((i, j + 1, maybe));
            if i < w.len() {
                stack.push((i + 1, j, maybe));
            }
        }
        if let Some(WComp::Opaque) = w.get(i) {
            stack.push((i + 1, j, maybe));
            if let Some(sc) = s.get(j) {
                stack.push((i, j + 1, maybe || !wild_only(sc)));
            }
        }
        if let (Some(wc), Some(sc)) = (w.get(i), s.get(j)) {
            let ok = match (wc, sc) {
                (WComp::Root, SComp::Root) | (WComp::Home, SComp::Home) => true,
                (WComp::Glob(a), SComp::Glob(b)) => {
                    let anywhere = j > 0 && s[j - 1] == SComp::DStar;
                    comp_overlap(a, b, anywhere)
                }
                _ => false,
            };
            if ok {
                stack.push((i + 1, j + 1, maybe));
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use crate::shell::parse;

    fn paths(cmd_word: &str) -> Vec<PathPattern> {
        let script = parse(&format!("cat {cmd_word}")).unwrap();
        let vars = Vars::new(&script, &BTreeMap::new());
        let base = PathPattern::base(None);
        script
            .commands
            .iter()
            .find(|c| c.name() == Some("cat"))
            .unwrap()
            .args
            .iter()
            .flat_map(|w| PathPattern::of_word(w, &base, &vars))
            .collect()
    }

    fn ov(pattern: &str, word: &str) -> Overlap {
        let p = Pattern::parse(pattern).unwrap();
        paths(word)
            .iter()
            .map(|w| p.overlap(w))
            .max()
            .unwrap_or(Overlap::No)
    }

    #[test]
    fn globs_that_could_reach_a_secret_do() {
        let ssh = "**/.ssh/**";
        for w in [
            "~/.ssh/id_rsa",
            "~/.ss?/id_rs?",
            "~/.[s]sh/*",
            "~/.s*",
            "~/{.ssh,x}/id_rsa",
            "$HOME/.ssh/id_rsa",
            "${HOME}/.ssh/id_rsa",
            "\"$HOME\"/.ssh/id_rsa",
            "~/.ssh/../.ssh/id_rsa",
            "~/src/../.ssh",
            ".ssh/config",
            "/home/*/.ssh/id_rsa",
            "/home/$USER/.ssh/id_rsa",
            "~root/.ssh/id_rsa",
            "~/.*",
            "~/.ssh",
        ] {
            assert_eq!(ov(ssh, w), Overlap::Sure, "{w}");
        }
        for w in [
            "~/*",
            "*",
            "~/src/*.rs",
            "../x",
            "/etc/passwd",
            "~/.bashrc",
            "..",
            ".",
        ] {
            assert_eq!(ov(ssh, w), Overlap::No, "{w}");
        }
        for w in ["$X", "~/$X", "$(printf x)", "`echo`/x"] {
            assert_eq!(ov(ssh, w), Overlap::Maybe, "{w}");
        }
    }

    #[test]
    fn a_bare_star_is_not_a_spelling_of_a_key_name() {
        let key = "**/id_rsa*";
        assert_eq!(ov(key, "*"), Overlap::No);
        assert_eq!(ov(key, "*.rs"), Overlap::No);
        assert_eq!(ov(key, "~/keys/*"), Overlap::No);
        assert_eq!(ov(key, "id_rs?"), Overlap::Sure);
        assert_eq!(ov(key, "~/x/id_*"), Overlap::Sure);
        assert_eq!(ov(key, "[i]d_rsa"), Overlap::Sure);
        assert_eq!(ov("**/*.nk", "*.nk"), Overlap::Sure);
        assert_eq!(ov("**/*.nk", "*.rs"), Overlap::No);
        assert_eq!(ov("**/*.nk", "*"), Overlap::No);
        // Under a fixed directory a star means every file there.
        assert_eq!(ov("/etc/shadow", "/etc/*"), Overlap::Sure);
        assert_eq!(ov("/etc/shadow", "/etc/sha*"), Overlap::Sure);
        assert_eq!(ov("/etc/shadow", "/etc/passwd"), Overlap::No);
    }

    #[test]
    fn destructive_targets_are_seen_through_spellings() {
        let homes = ["/", "~", "/home", "/home/*", "/root"];
        let any = |w: &str| homes.iter().map(|h| ov(h, w)).max().unwrap();
        for w in [
            "/",
            "/*",
            "~",
            "~/",
            "~/*",
            "$HOME",
            "${HOME}/",
            "\"$HOME\"",
            "~/src/..",
            "/h*",
            "/ho?e/alice",
            "//",
            "/./",
            "/home/alice/*",
            "~/.",
            "/tmp/..",
        ] {
            assert_eq!(any(w), Overlap::Sure, "{w}");
        }
        for w in ["~/src", "/tmp", "build", "./target", "~/src/*"] {
            assert_eq!(any(w), Overlap::No, "{w}");
        }
    }

    #[test]
    fn variables_set_by_the_line_are_followed() {
        let script =
            parse("f=~/.ssh/id_rsa; d=.ssh; for g in *.log; do cat $f ~/$d/x $g; done").unwrap();
        let vars = Vars::new(&script, &BTreeMap::new());
        let base = PathPattern::base(None);
        let cat = script
            .commands
            .iter()
            .find(|c| c.name() == Some("cat"))
            .unwrap();
        let p = Pattern::parse("**/.ssh/**").unwrap();
        let got: Vec<Overlap> = cat
            .args
            .iter()
            .map(|w| {
                PathPattern::of_word(w, &base, &vars)
                    .iter()
                    .map(|x| p.overlap(x))
                    .max()
                    .unwrap()
            })
            .collect();
        assert_eq!(got, [Overlap::Sure, Overlap::Sure, Overlap::No]);
        let mut env = BTreeMap::new();
        env.insert("K".to_owned(), "/home/u/.ssh/id_rsa".to_owned());
        let script = parse("cat \"$K\"").unwrap();
        let vars = Vars::new(&script, &env);
        let w = &script.commands[0].args[0];
        assert_eq!(
            PathPattern::of_word(w, &base, &vars)
                .iter()
                .map(|x| p.overlap(x))
                .max(),
            Some(Overlap::Sure)
        );
        assert_eq!(vars.literals(w).unwrap(), ["/home/u/.ssh/id_rsa"]);
    }

    #[test]
    fn literal_paths_and_bad_patterns() {
        let base = PathPattern::base(Some("~/src"));
        let p = Pattern::parse("~/src/**").unwrap();
        assert_eq!(
            p.overlap(&PathPattern::literal("app", &base)),
            Overlap::Sure
        );
        assert_eq!(p.overlap(&PathPattern::literal("/tmp", &base)), Overlap::No);
        // A step's own path is not globbed.
        let lit = PathPattern::literal("~/.s*", &base);
        assert_eq!(
            Pattern::parse("**/.ssh").unwrap().overlap(&lit),
            Overlap::No
        );
        assert!(Pattern::parse("a/[b").is_err());
        assert!(Pattern::parse("").is_err());
    }
}
