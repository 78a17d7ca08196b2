//! Where `skynet up` keeps the local stack's credentials, so that `skynet up`, `skynet creds`,
//! `skynet doctor` and every other command find the same directory.
//!
//! The credentials must live outside every directory the local worker may touch: a step can
//! read whatever is under its roots, and the default root is the user's home (where the data
//! directory usually is too). So the default is the per-user runtime directory
//! (`$XDG_RUNTIME_DIR/skynet`, e.g. `/run/user/1000/skynet`), or `<tmp>/skynet-<uid>` where
//! there is none, and a location inside a root is refused rather than used.

use std::path::{Path, PathBuf};

use skynet_runtime::ConfigError;

/// The environment variable and flag that choose the credentials directory.
pub const CREDS_DIR_ENV: &str = "SKYNET_CREDS_DIR";

/// The directory for skynet's per-user runtime files: `$XDG_RUNTIME_DIR/skynet`, else
/// `<temp dir>/skynet-<uid>`.
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir.join("skynet"),
        _ => std::env::temp_dir().join(format!("skynet-{}", nix::unistd::getuid())),
    }
}

/// The default credentials directory of the local stack.
pub fn default_creds_dir() -> PathBuf {
    runtime_dir().join("creds")
}

/// The credentials directory to use: the explicit one (flag or `SKYNET_CREDS_DIR`), else the
/// default, made absolute.
pub fn creds_dir(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    let dir = explicit
        .map(Path::to_path_buf)
        .unwrap_or_else(default_creds_dir);
    std::path::absolute(&dir)
        .map_err(|e| ConfigError::new("--creds-dir", format!("{}: {e}", dir.display())))
}

/// Creates `dir` (and its parents) private to this user, refusing a directory someone else
/// owns or one reached through a symlink: the shared temp directory is writable by anyone.
pub fn private_dir(dir: &Path, flag: &str) -> Result<(), ConfigError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let err = |m: String| ConfigError::new(flag, m);
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| err(format!("creating {}: {e}", parent.display())))?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(format!("creating {}: {e}", dir.display()))),
    }
    let meta =
        std::fs::symlink_metadata(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(err(format!("{} is not a directory", dir.display())));
    }
    if meta.uid() != nix::unistd::getuid().as_raw() {
        return Err(err(format!(
            "{} belongs to another user; choose another with --creds-dir",
            dir.display()
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| err(format!("{}: {e}", dir.display())))?;
    }
    Ok(())
}

/// `path` with symlinks resolved as far as it exists (the rest appended), for comparing
/// locations that may not exist yet.
pub fn resolved(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return abs,
        }
    }
}

/// The first of `roots` that contains `path` (both resolved).
pub fn inside_root<'a>(path: &Path, roots: &'a [PathBuf]) -> Option<&'a PathBuf> {
    let path = resolved(path);
    roots.iter().find(|r| path.starts_with(resolved(r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_inside_a_root_after_resolving_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("home");
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::os::unix::fs::symlink(&root, dir.path().join("link")).unwrap();
        let roots = vec![dir.path().join("link")];
        assert!(inside_root(&root.join("src/not-yet/creds"), &roots).is_some());
        assert!(inside_root(&dir.path().join("elsewhere"), &roots).is_none());
        // A sibling whose name starts like the root is not inside it.
        assert!(inside_root(&dir.path().join("home2"), &[root]).is_none());
    }

    #[test]
    fn private_dirs_are_made_0700() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/b");
        private_dir(&d, "--creds-dir").unwrap();
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::os::unix::fs::symlink(&d, dir.path().join("l")).unwrap();
        assert!(private_dir(&dir.path().join("l"), "--creds-dir").is_err());
    }
}
