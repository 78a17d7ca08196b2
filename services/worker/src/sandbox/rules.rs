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
//!
//! A plan can be reused while the tree it was made from is unchanged ([`Planned::holds`]):
//! every path the walk looked at is stamped (identity and change times) before it looks, and
//! a directory cannot gain, lose or rename an entry, or change its permissions, without its
//! change times moving. A stamp too recent to tell a later change apart (timestamps are as
//! coarse as the file system's clock) makes the plan one-off.

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
    /// What `path` (a link at the end followed) is and when it last changed; `None` when it
    /// cannot be read.
    fn stamp(&self, path: &Path) -> Option<Stamp>;
    /// Whether the change times of `path` move with every change; a network file system's
    /// client caches them, so a plan that looked there is not reused.
    fn exact_times(&self, _path: &Path) -> bool {
        true
    }
}

/// A path's identity and change times: while they stay, so do a directory's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    /// Nanoseconds since the epoch.
    pub mtime: i128,
    pub ctime: i128,
}

/// How recent a change time may be for a plan to be reused: a later change within the
/// same tick of the file system's clock (as coarse as 2 s on some) would leave it as it was.
pub const SETTLED_NS: i128 = 3_000_000_000;

/// Rules with the stamps of what they were computed from.
#[derive(Debug, Clone)]
pub struct Planned {
    pub rules: Vec<Rule>,
    seen: Vec<(PathBuf, Look, Option<Stamp>)>,
    reusable: bool,
}

/// How the walk looked at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    /// Only what it is: the same file or directory is the same answer.
    Kind,
    /// Its entries too: their change times must also be as they were.
    List,
}

impl Planned {
    /// Whether a walk of `tree` now would make these same rules: every path the walk looked
    /// at is as it was (the same file; for a directory it read, unchanged since), and none
    /// was too recently changed to tell.
    pub fn holds(&self, tree: &dyn Tree) -> bool {
        self.reusable
            && self.seen.iter().all(|(p, look, was)| {
                let now = tree.stamp(p);
                match look {
                    Look::List => now == *was,
                    Look::Kind => now.map(|s| (s.dev, s.ino)) == was.map(|s| (s.dev, s.ino)),
                }
            })
    }
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    walk(grants, holes, limits, tree, None).rules
}

/// [`plan`], stamping what it looks at so that the plan can be reused while that stays
/// ([`Planned::holds`]). A directory it reads that changed after `settled` (nanoseconds
/// since the epoch; the walk's start less [`SETTLED_NS`]) makes the plan one-off.
pub fn plan_stamped(
    grants: &[Grant],
    holes: &[PathBuf],
    limits: Limits,
    tree: &dyn Tree,
    settled: i128,
) -> Planned {
    walk(grants, holes, limits, tree, Some(settled))
}

fn walk(
    grants: &[Grant],
    holes: &[PathBuf],
    limits: Limits,
    tree: &dyn Tree,
    settled: Option<i128>,
) -> Planned {
    let mut out = Vec::new();
    let mut walk = Walk {
        holes,
        exact: holes.iter().map(PathBuf::as_path).collect(),
        above: holes.iter().flat_map(|h| h.ancestors().skip(1)).collect(),
        tree,
        limits,
        spent: 0,
        settled,
        seen: Vec::new(),
        reusable: settled.is_some(),
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
    Planned {
        rules: out,
        seen: walk.seen,
        reusable: walk.reusable,
    }
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
    /// When stamping: changes after this are too recent to tell apart from later ones.
    settled: Option<i128>,
    seen: Vec<(PathBuf, Look, Option<Stamp>)>,
    reusable: bool,
}

impl Walk<'_> {
    /// Stamps `path` before the walk looks at it (a change after that moves the stamp).
    fn note(&mut self, path: &Path, look: Look) {
        let Some(settled) = self.settled else {
            return;
        };
        let stamp = self.tree.stamp(path);
        if look == Look::List
            && let Some(s) = stamp
            && (s.mtime.max(s.ctime) > settled || !self.tree.exact_times(path))
        {
            self.reusable = false;
        }
        self.seen.push((path.to_path_buf(), look, stamp));
    }

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
        self.note(path, Look::Kind);
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
        self.note(path, Look::List);
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

    /// A path of a [`Fake`] tree: what it is, its inode and when its entries last changed.
    #[derive(Clone, Copy)]
    struct Node {
        kind: Kind,
        ino: u64,
        mtime: i128,
    }

    /// A tree from a list of paths: a path ending in `/` is a directory, `@` a link.
    #[derive(Clone)]
    struct Fake(BTreeMap<PathBuf, Node>);

    impl Fake {
        fn new(paths: &[&str]) -> Self {
            let mut t = Self(BTreeMap::new());
            for p in paths {
                t = t.with(p, 0);
            }
            t
        }

        /// This tree with `p` (and any missing directory above it) made at time `at`,
        /// which moves the change time of the directory it is made in.
        fn with(&self, p: &str, at: i128) -> Self {
            let (p, kind) = if let Some(d) = p.strip_suffix('/') {
                (d, Kind::Dir)
            } else if let Some(l) = p.strip_suffix('@') {
                (l, Kind::Link)
            } else {
                (p, Kind::File)
            };
            let mut m = self.0.clone();
            let path = PathBuf::from(p);
            let mut made: Vec<(PathBuf, Kind)> = path
                .ancestors()
                .skip(1)
                .filter(|a| !m.contains_key(*a))
                .map(|a| (a.to_path_buf(), Kind::Dir))
                .collect();
            made.reverse();
            made.push((path, kind));
            for (path, kind) in made {
                let ino = m.len() as u64 + 1;
                if let Some(parent) = path.parent().and_then(|d| m.get_mut(d)) {
                    parent.mtime = at;
                }
                m.insert(
                    path,
                    Node {
                        kind,
                        ino,
                        mtime: at,
                    },
                );
            }
            Self(m)
        }

        /// This tree without `p` and what is below it, removed at time `at`.
        fn without(&self, p: &str, at: i128) -> Self {
            let path = Path::new(p);
            let mut m = self.0.clone();
            m.retain(|q, _| !q.starts_with(path));
            if let Some(parent) = path.parent().and_then(|d| m.get_mut(d)) {
                parent.mtime = at;
            }
            Self(m)
        }
    }

    impl Tree for Fake {
        fn kind(&self, path: &Path) -> Option<Kind> {
            self.0.get(path).map(|n| n.kind)
        }
        fn list(&self, dir: &Path) -> Option<Vec<(OsString, Kind)>> {
            Some(
                self.0
                    .iter()
                    .filter(|(p, _)| p.parent() == Some(dir))
                    .map(|(p, n)| (p.file_name().unwrap_or_default().to_owned(), n.kind))
                    .collect(),
            )
        }
        fn stamp(&self, path: &Path) -> Option<Stamp> {
            self.0.get(path).map(|n| Stamp {
                dev: 1,
                ino: n.ino,
                mtime: n.mtime,
                ctime: n.mtime,
            })
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

    const SEC: i128 = 1_000_000_000;

    fn home() -> Fake {
        Fake::new(&[
            "/h/.ssh/id_rsa",
            "/h/src/app/main.rs",
            "/h/src/app/deep/er/still/x.rs",
            "/h/src/lib/x.rs",
            "/h/notes.txt",
        ])
    }

    #[test]
    fn a_plan_holds_while_nothing_it_looked_at_changed_and_not_after() {
        let t = home();
        let now = 100 * SEC;
        let p = plan_stamped(
            &[rw("/h"), rw("/x")],
            &[],
            Limits::default(),
            &t,
            now - SETTLED_NS,
        );
        assert_eq!(
            p.rules,
            plan(&[rw("/h"), rw("/x")], &[], Limits::default(), &t)
        );
        assert!(p.holds(&t));
        // A secret made where the walk looked: the plan is redone, and leaves it out.
        let t2 = t.with("/h/src/app/.env", now + SEC);
        assert!(!p.holds(&t2));
        let again = plan(&[rw("/h"), rw("/x")], &[], Limits::default(), &t2);
        assert!(!paths(&again).contains(&"/h/src/app".to_string()));
        // A file removed, and a grant that did not exist appearing, do too.
        assert!(!p.holds(&t.without("/h/notes.txt", now + SEC)));
        assert!(!p.holds(&t.with("/x/", now + SEC)));
        // Below the depth searched the walk did not look, and a new walk would not either.
        let deep = t.with("/h/src/app/deep/er/still/.env", now + SEC);
        assert!(p.holds(&deep));
        assert_eq!(
            p.rules,
            plan(&[rw("/h"), rw("/x")], &[], Limits::default(), &deep)
        );
    }

    #[test]
    fn a_plan_that_looked_at_a_fresh_change_is_not_reused() {
        let now = 100 * SEC;
        let t = home().with("/h/src/lib/y.rs", now - SEC);
        let p = plan_stamped(&[rw("/h")], &[], Limits::default(), &t, now - SETTLED_NS);
        assert!(!p.holds(&t));
        let settled = plan_stamped(&[rw("/h")], &[], Limits::default(), &t, now);
        assert!(settled.holds(&t));
    }

    proptest::proptest! {
        /// Whenever a plan holds after any changes, a new walk makes exactly its rules.
        #[test]
        fn a_plan_that_holds_is_what_a_new_walk_makes(
            changes in proptest::collection::vec((0usize..14, proptest::bool::ANY, 0usize..4), 1..6),
            depth in 1usize..5,
        ) {
            const PATHS: [&str; 14] = [
                "/h/a/",
                "/h/a/b/",
                "/h/a/b/c/",
                "/h/a/b/c/d/",
                "/h/a/b/c/d/e/",
                "/h/z",
                "/h/node_modules/",
                "/h/a/b/.env",
                "/h/a/b/c/d/e/key.nk",
                "/h/.ssh/",
                "/h/a/link@",
                "/h/a/b/c/f",
                "/h/x/",
                "/h/a/b/c/d/id_rsa",
            ];
            let limits = Limits { depth, budget: 20_000 };
            let grants = [rw("/h"), rw("/h/x"), Grant { path: "/etc".into(), write: false, search: false }];
            let holes = vec![PathBuf::from("/etc/shadow")];
            let mut t = Fake::new(&["/h/a/b/c/d/e/f", "/h/readme", "/etc/passwd", "/etc/shadow"]);
            let now = 100 * SEC;
            let p = plan_stamped(&grants, &holes, limits, &t, now - SETTLED_NS);
            proptest::prop_assert!(p.holds(&t));
            for (k, (i, add, later)) in changes.into_iter().enumerate() {
                let at = now + (k as i128 + 1 + later as i128) * SEC;
                let path = PATHS[i];
                t = if add { t.with(path, at) } else { t.without(path.trim_end_matches(['/', '@']), at) };
            }
            if p.holds(&t) {
                proptest::prop_assert_eq!(&p.rules, &plan(&grants, &holes, limits, &t));
            }
        }
    }
}
