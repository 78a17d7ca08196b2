//! Confining every path a step touches to the worker's roots.
//!
//! A path is expanded (`~` is the worker user's home, a relative path is relative to the
//! first root), then resolved on disk: the longest existing prefix is canonicalised (which
//! follows every symlink) and the rest may not contain `.` or `..`. The result must lie under
//! one of the canonicalised roots. So neither `..` nor a symlink can lead outside. Nor
//! inside what no step may reach whatever the policy says ([`crate::secrets::refused`]): the
//! worker's own data and credentials directories, nkey seed files, `~/.ssh` and the like.

use std::path::{Component, Path, PathBuf};

/// The directories steps may touch, canonicalised.
#[derive(Debug, Clone)]
pub struct Roots {
    roots: Vec<PathBuf>,
    home: PathBuf,
    /// The worker's own directories and files (data, credentials), resolved.
    protected: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("{0} is outside the worker's roots")]
    Outside(String),
    #[error("{path} is out of every step's reach: {why}")]
    Secret { path: String, why: String },
    #[error("{path}: {problem}")]
    Invalid { path: String, problem: String },
}

impl Roots {
    /// Canonicalises `roots` (each must exist).
    pub fn new(roots: &[PathBuf], home: PathBuf) -> Result<Self, String> {
        if roots.is_empty() {
            return Err("at least one root is needed".into());
        }
        let mut out = Vec::new();
        for r in roots {
            let expanded = expand_home(r, &home);
            let c = expanded
                .canonicalize()
                .map_err(|e| format!("root {}: {e}", expanded.display()))?;
            if !c.is_dir() {
                return Err(format!("root {} is not a directory", c.display()));
            }
            out.push(c);
        }
        Ok(Self {
            roots: out,
            home,
            protected: Vec::new(),
        })
    }

    /// The same roots, with `protected` (the worker's data and credentials) refused inside
    /// them; each is resolved as far as it exists.
    pub fn protecting(mut self, protected: &[PathBuf]) -> Self {
        self.protected = protected.iter().map(|p| resolve(p)).collect();
        self
    }

    /// What no step may reach inside the roots, resolved.
    pub fn protected(&self) -> &[PathBuf] {
        &self.protected
    }

    pub fn list(&self) -> &[PathBuf] {
        &self.roots
    }

    /// The first root: where steps run when they name no directory.
    pub fn first(&self) -> &Path {
        &self.roots[0]
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Resolves `raw` and checks it lies under a root. With `must_exist`, the path itself
    /// must exist.
    pub fn confine(&self, raw: &str, must_exist: bool) -> Result<PathBuf, PathError> {
        let invalid = |problem: &str| PathError::Invalid {
            path: raw.to_owned(),
            problem: problem.to_owned(),
        };
        if raw.trim().is_empty() {
            return Err(invalid("empty path"));
        }
        let p = expand_home(Path::new(raw), &self.home);
        let p = if p.is_absolute() {
            p
        } else {
            self.first().join(p)
        };
        // Walk up to the longest prefix that exists.
        let mut existing = p.as_path();
        let mut rest: Vec<&std::ffi::OsStr> = Vec::new();
        let resolved = loop {
            match existing.canonicalize() {
                Ok(c) => break c,
                Err(_) => {
                    let name = existing
                        .file_name()
                        .ok_or_else(|| invalid("no such directory"))?;
                    rest.push(name);
                    existing = existing
                        .parent()
                        .ok_or_else(|| invalid("no such directory"))?;
                }
            }
        };
        let mut full = resolved;
        for name in rest.iter().rev() {
            match Path::new(name).components().next() {
                Some(Component::Normal(_)) => full.push(name),
                _ => {
                    return Err(invalid(
                        "may not contain '.' or '..' after a missing directory",
                    ));
                }
            }
        }
        if !self.roots.iter().any(|r| full.starts_with(r)) {
            return Err(PathError::Outside(raw.to_owned()));
        }
        if let Some(why) = crate::secrets::refused(&full, &self.protected) {
            return Err(PathError::Secret {
                path: raw.to_owned(),
                why,
            });
        }
        if must_exist && !rest.is_empty() {
            return Err(invalid("does not exist"));
        }
        Ok(full)
    }
}

/// `p` with its longest existing prefix canonicalised.
pub fn resolve(p: &Path) -> PathBuf {
    let mut existing = p;
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            let mut full = c;
            for name in rest.iter().rev() {
                full.push(name);
            }
            return full;
        }
        match (existing.file_name(), existing.parent()) {
            (Some(n), Some(parent)) => {
                rest.push(n.to_owned());
                existing = parent;
            }
            _ => return p.to_path_buf(),
        }
    }
}

/// `~` and `~/x` become the home directory; `$HOME` likewise.
pub fn expand_home(p: &Path, home: &Path) -> PathBuf {
    let s = p.to_string_lossy();
    for prefix in ["~", "$HOME", "${HOME}"] {
        if s == prefix {
            return home.to_path_buf();
        }
        if let Some(rest) = s.strip_prefix(&format!("{prefix}/")) {
            return home.join(rest);
        }
    }
    p.to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Roots) {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let root = home.join("src");
        std::fs::create_dir_all(root.join("app")).unwrap();
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), root.join("escape")).unwrap();
        let roots = Roots::new(&[PathBuf::from("~/src")], home).unwrap();
        (dir, roots)
    }

    #[test]
    fn paths_inside_roots_resolve() {
        let (_d, roots) = setup();
        let app = roots.confine("~/src/app", true).unwrap();
        assert!(app.ends_with("src/app"));
        assert_eq!(roots.confine("app", true).unwrap(), app);
        let new = roots.confine("app/new/file.txt", false).unwrap();
        assert!(new.ends_with("app/new/file.txt"));
    }

    #[test]
    fn dot_dot_and_symlinks_cannot_escape() {
        let (_d, roots) = setup();
        for bad in [
            "~/src/../outside",
            "../outside",
            "escape",
            "escape/x",
            "/etc/passwd",
            "~",
            "/",
        ] {
            assert!(roots.confine(bad, false).is_err(), "{bad}");
        }
        assert!(matches!(
            roots.confine("app/missing/../../..", false),
            Err(PathError::Invalid { .. })
        ));
        assert!(roots.confine("app/missing", true).is_err());
    }

    #[test]
    fn the_worker_s_own_files_and_secrets_are_refused_inside_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::create_dir_all(home.join("skynet-data/creds")).unwrap();
        std::fs::write(home.join(".ssh/id_rsa"), "k").unwrap();
        std::fs::write(home.join("src.txt"), "x").unwrap();
        let roots = Roots::new(std::slice::from_ref(&home), home.clone())
            .unwrap()
            .protecting(&[home.join("skynet-data"), home.join("worker.seed")]);
        for bad in [
            "~/.ssh/id_rsa",
            "~/.ssh",
            "~/skynet-data/worker-w.db",
            "~/skynet-data/creds/admin.nk",
            "~/keys/policy.nk",
            "~/.aws/credentials",
        ] {
            assert!(
                matches!(roots.confine(bad, false), Err(PathError::Secret { .. })),
                "{bad}"
            );
        }
        assert!(roots.confine("~/src.txt", true).is_ok());
    }
}
