//! The sandbox's rule set, computed from a view of the directory tree (no I/O here).
//!
//! Landlock only allows: a path is reachable when some rule grants a directory above it
//! (or the file itself). "A root minus its secrets" is therefore said by granting, instead
//! of the root, each of its children, and splitting again every child directory that holds
//! a secret below it; the secrets themselves are never granted. Symbolic links are not
//! granted when a directory is split (a rule on a link would grant whatever it points to):
//! a link is followed by the kernel and judged by where it leads, exactly as when its
//! directory is granted whole. A split directory itself may still be listed (`ls ~`): the
//! names below it, secrets' names included, can be read, never their contents; but nothing
//! can be created or removed directly in it (Landlock grants a whole tree or nothing).
//!
//! Two kinds of secrets: `holes`, exact paths (the worker's data and credentials
//! directories, `/etc/shadow`, ...), always split out however deep; and secrets known by
//! name ([`crate::secrets::by_name`]: `.ssh`, `*.nk`, ...), looked for in grants marked
//! `search`, down to `depth` levels below the grant and within `budget` directory entries
//! (past that, what is left is granted whole; the worker's own path checks still refuse
//! such files by name).

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What a directory entry is, as `lstat` says (a link is not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Link,
}

/// A read-only view of the file system.
pub trait Tree {
    /// What `path` is, following a link at the end (a grant names what it means).
    fn kind(&self, path: &Path) -> Option<Kind>;
    /// The entries of directory `dir`, links not followed; `None` when it cannot be read.
    fn list(&self, dir: &Path) -> Option<Vec<(OsString, Kind)>>;
}

/// One directory (with everything below it) or file the sandbox opens up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub path: PathBuf,
    /// Read-write (and execute); otherwise read and execute only.
    pub write: bool,
    /// Look for secrets by name below it (roots, toolchains in a home); the system's own
    /// trees are only split for the exact `holes`.
    pub search: bool,
}

/// One rule of the ruleset: `path` with the access of its grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub path: PathBuf,
    pub write: bool,
    pub dir: bool,
    /// Only listing (a directory split around a secret).
    pub list_only: bool,
}

/// The limits of the search for secrets by name.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub depth: usize,
    pub budget: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            depth: 4,
            budget: 20_000,
        }
    }
}

/// Directories not searched for secrets: build output and dependencies, huge and not
/// where credentials live.
const BULKY: &[&str] = &[
    "node_modules",
    "target",
    ".git",
    ".hg",
    "__pycache__",
    ".venv",
    "venv",
    ".tox",
    ".mypy_cache",
    ".gradle",
    ".rustup",
];

/// The rules for `grants`, without `holes` and without secrets found by name.
pub fn plan(grants: &[Grant], holes: &[PathBuf], limits: Limits, tree: &dyn Tree) -> Vec<Rule> {
    let mut out = Vec::new();
    let mut walk = Walk {
        holes,
        exact: holes.iter().map(PathBuf::as_path).collect(),
        above: holes.iter().flat_map(|h| h.ancestors().skip(1)).collect(),
        tree,
        limits,
        spent: 0,
    };
    for g in grants {
        match walk.grant(&g.path, g.search, 0) {
            Part::Whole(dir) => out.push(Rule {
                path: g.path.clone(),
                write: g.write,
                dir,
                list_only: false,
            }),
            Part::Split(parts) => {
                out.push(Rule {
                    path: g.path.clone(),
                    write: false,
                    dir: true,
                    list_only: true,
                });
                out.extend(parts.into_iter().map(|(path, dir)| Rule {
                    path,
                    write: g.write,
                    dir,
                    list_only: false,
                }))
            }
            Part::Nothing => {}
        }
    }
    out
}

enum Part {
    /// Grant the path itself (a directory, or not).
    Whole(bool),
    /// Grant these instead (path, is a directory).
    Split(Vec<(PathBuf, bool)>),
    Nothing,
}

struct Walk<'a> {
    holes: &'a [PathBuf],
    /// The holes, to look up exactly.
    exact: HashSet<&'a Path>,
    /// Every directory with a hole somewhere below it.
    above: HashSet<&'a Path>,
    tree: &'a dyn Tree,
    limits: Limits,
    spent: usize,
}

impl Walk<'_> {
    fn is_out(&self, path: &Path) -> bool {
        self.holes.iter().any(|h| path.starts_with(h)) || crate::secrets::by_name(path).is_some()
    }

    /// [`Walk::is_out`] for an entry of a directory the walk went into: nothing above it is
    /// a hole (the walk never goes into one), so only the entry itself can be.
    fn entry_is_out(&self, child: &Path) -> bool {
        self.exact.contains(child) || crate::secrets::by_name(child).is_some()
    }

    fn grant(&mut self, path: &Path, search: bool, depth: usize) -> Part {
        if self.is_out(path) {
            return Part::Nothing;
        }
        match self.tree.kind(path) {
            None => Part::Nothing,
            Some(Kind::Dir) => self.dir(path, search, depth),
            Some(_) => Part::Whole(false),
        }
    }

    fn dir(&mut self, path: &Path, search: bool, depth: usize) -> Part {
        let hole_below = self.above.contains(path);
        let bulky = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| BULKY.contains(&n));
        let look = search && depth < self.limits.depth && !bulky && self.spent < self.limits.budget;
        if !hole_below && !look {
            return Part::Whole(true);
        }
        let Some(entries) = self.tree.list(path) else {
            return Part::Whole(true);
        };
        self.spent += entries.len();
        let mut whole = true;
        let mut parts = Vec::new();
        for (name, kind) in entries {
            let child = path.join(&name);
            if self.entry_is_out(&child) {
                whole = false;
                continue;
            }
            match kind {
                Kind::Link => {}
                Kind::File => parts.push((child, false)),
                Kind::Dir => match self.dir(&child, search, depth + 1) {
                    Part::Whole(_) => parts.push((child, true)),
                    Part::Split(p) => {
                        whole = false;
                        parts.extend(p);
                    }
                    Part::Nothing => whole = false,
                },
            }
        }
        if whole {
            Part::Whole(true)
        } else {
            Part::Split(parts)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A tree from a list of paths: a path ending in `/` is a directory, `@` a link.
    struct Fake(BTreeMap<PathBuf, Kind>);

    impl Fake {
        fn new(paths: &[&str]) -> Self {
            let mut m = BTreeMap::new();
            for p in paths {
                let (p, kind) = if let Some(d) = p.strip_suffix('/') {
                    (d, Kind::Dir)
                } else if let Some(l) = p.strip_suffix('@') {
                    (l, Kind::Link)
                } else {
                    (*p, Kind::File)
                };
                let path = PathBuf::from(p);
                for a in path.ancestors().skip(1) {
                    m.entry(a.to_path_buf()).or_insert(Kind::Dir);
                }
                m.insert(path, kind);
            }
            Self(m)
        }
    }

    impl Tree for Fake {
        fn kind(&self, path: &Path) -> Option<Kind> {
            self.0.get(path).copied()
        }
        fn list(&self, dir: &Path) -> Option<Vec<(OsString, Kind)>> {
            Some(
                self.0
                    .iter()
                    .filter(|(p, _)| p.parent() == Some(dir))
                    .map(|(p, k)| (p.file_name().unwrap_or_default().to_owned(), *k))
                    .collect(),
            )
        }
    }

    /// The granted paths (the listing-only rules of split directories apart).
    fn paths(rules: &[Rule]) -> Vec<String> {
        rules
            .iter()
            .filter(|r| !r.list_only)
            .map(|r| r.path.display().to_string())
            .collect()
    }

    fn rw(p: &str) -> Grant {
        Grant {
            path: p.into(),
            write: true,
            search: true,
        }
    }

    #[test]
    fn a_root_without_secrets_is_one_rule() {
        let t = Fake::new(&["/h/src/app/main.rs", "/h/notes.txt"]);
        let r = plan(&[rw("/h")], &[], Limits::default(), &t);
        assert_eq!(paths(&r), ["/h"]);
        assert!(r[0].write && r[0].dir);
    }

    #[test]
    fn a_home_root_is_granted_child_by_child_without_its_secrets() {
        let t = Fake::new(&[
            "/h/.ssh/id_rsa",
            "/h/.aws/credentials",
            "/h/.config/gcloud/x",
            "/h/.config/nvim/init.lua",
            "/h/src/app/main.rs",
            "/h/src/app/keys/worker.nk",
            "/h/src/app/README",
            "/h/src/lib/x.rs",
            "/h/notes.txt",
            "/h/.netrc",
            "/h/link@",
        ]);
        let r = plan(&[rw("/h")], &[], Limits::default(), &t);
        assert_eq!(
            paths(&r),
            [
                "/h/.config/nvim",
                "/h/notes.txt",
                "/h/src/app/README",
                "/h/src/app/main.rs",
                "/h/src/lib",
            ]
        );
        let listed: Vec<&Rule> = r.iter().filter(|r| r.list_only).collect();
        assert!(listed.iter().any(|l| l.path == Path::new("/h") && !l.write));
        let r: Vec<&Rule> = r.iter().filter(|r| !r.list_only).collect();
        assert!(r.iter().all(|r| r.write));
        assert!(!r[1].dir && r[4].dir);
    }

    #[test]
    fn holes_are_split_out_at_any_depth_and_a_root_inside_one_is_not_granted() {
        let t = Fake::new(&[
            "/h/a/b/c/d/e/skynet-data/worker.db",
            "/h/a/b/c/d/e/other",
            "/etc/passwd",
            "/etc/shadow",
            "/etc/ssh/ssh_config",
        ]);
        let holes = vec![
            PathBuf::from("/h/a/b/c/d/e/skynet-data"),
            PathBuf::from("/etc/shadow"),
        ];
        let ro = Grant {
            path: "/etc".into(),
            write: false,
            search: false,
        };
        let r = plan(
            &[rw("/h"), ro, rw("/h/a/b/c/d/e/skynet-data")],
            &holes,
            Limits::default(),
            &t,
        );
        assert_eq!(paths(&r), ["/h/a/b/c/d/e/other", "/etc/passwd", "/etc/ssh"]);
        assert!(
            !r.iter()
                .find(|r| r.path == Path::new("/etc/passwd"))
                .unwrap()
                .write
        );
    }

    #[test]
    fn the_search_by_name_stops_at_its_depth_and_skips_bulky_directories() {
        let t = Fake::new(&[
            "/h/a/b/c/d/deep.nk",
            "/h/a/x",
            "/h/node_modules/pkg/y.nk",
            "/h/z",
        ]);
        let limits = Limits {
            depth: 3,
            budget: 1000,
        };
        assert_eq!(paths(&plan(&[rw("/h")], &[], limits, &t)), ["/h"]);
        let limits = Limits {
            depth: 5,
            budget: 1000,
        };
        assert_eq!(
            paths(&plan(&[rw("/h")], &[], limits, &t)),
            ["/h/a/x", "/h/node_modules", "/h/z"]
        );
    }

    #[test]
    fn missing_paths_give_no_rule_and_a_file_grant_is_a_file_rule() {
        let t = Fake::new(&["/dev/null"]);
        let g = |p: &str| Grant {
            path: p.into(),
            write: true,
            search: false,
        };
        let r = plan(&[g("/dev/null"), g("/nowhere")], &[], Limits::default(), &t);
        assert_eq!(paths(&r), ["/dev/null"]);
        assert!(!r[0].dir);
    }
}
