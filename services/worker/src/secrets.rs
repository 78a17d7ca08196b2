//! What no step may reach, whatever the policy says: credentials and keys found by name
//! (`~/.ssh`, `*.nk`, ...), and a few system files. The worker's own path checks
//! ([`crate::paths`]) and the sandbox's rules ([`crate::sandbox::rules`]) both ask here, so
//! the two never disagree about what a secret is.

use std::path::Path;

/// Directories and files that hold credentials, by name, wherever they are.
const NAMES: &[&str] = &[
    ".ssh",
    ".gnupg",
    ".aws",
    ".kube",
    ".docker",
    ".azure",
    ".password-store",
    ".netrc",
    ".git-credentials",
    ".pgpass",
    ".npmrc",
    ".pypirc",
    ".vault-token",
];

/// The same, by the last components of the path.
const TAILS: &[&[&str]] = &[
    &[".config", "gcloud"],
    &[".config", "gh"],
    &[".cargo", "credentials"],
    &[".cargo", "credentials.toml"],
    &[".local", "share", "keyrings"],
];

/// File names starting so are private keys (`id_rsa`, `id_ed25519.pub` goes too).
const KEY_PREFIXES: &[&str] = &["id_rsa", "id_dsa", "id_ecdsa", "id_ed25519"];

/// nkey seeds and NATS credentials: `policy.nk`, `admin.seed`, `user.creds`.
const SEED_SUFFIXES: &[&str] = &[".nk", ".seed", ".creds"];

/// System files no step reads, even on a machine where the worker runs as root.
pub const SYSTEM: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssl/private",
    "/etc/security/opasswd",
    "/etc/ssh/ssh_host_rsa_key",
    "/etc/ssh/ssh_host_ecdsa_key",
    "/etc/ssh/ssh_host_ed25519_key",
    "/etc/ssh/ssh_host_dsa_key",
];

/// Why `path` is a secret by its name (or its last components), if it is one.
pub fn by_name(path: &Path) -> Option<&'static str> {
    // The last few names, newest first, without allocating: this runs for every entry the
    // sandbox's walk looks at.
    const KEEP: usize = 4;
    let mut last: [&str; KEEP] = [""; KEEP];
    let mut n = 0;
    for part in path.components().rev().filter_map(|c| match c {
        std::path::Component::Normal(n) => n.to_str(),
        _ => None,
    }) {
        last[n] = part;
        n += 1;
        if n == KEEP {
            break;
        }
    }
    let name = *last[..n].first()?;
    if NAMES.contains(&name) {
        return Some("holds credentials");
    }
    let ends_with =
        |t: &[&str]| t.len() <= n && t.iter().rev().zip(&last[..n]).all(|(a, b)| a == b);
    if TAILS.iter().any(|t| ends_with(t)) {
        return Some("holds credentials");
    }
    if KEY_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Some("is a private key");
    }
    if SEED_SUFFIXES
        .iter()
        .any(|s| name.len() > s.len() && name.ends_with(s))
    {
        return Some("is an nkey seed or NATS credentials file");
    }
    None
}

/// Why `path` (absolute, resolved) is out of every step's reach, if it is: a secret by
/// name anywhere along it, a system secret, or inside one of `protected` (the worker's
/// data and credentials directories).
pub fn refused(path: &Path, protected: &[std::path::PathBuf]) -> Option<String> {
    if let Some(p) = protected.iter().find(|p| path.starts_with(p)) {
        return Some(format!(
            "{} is inside {}, which belongs to the worker (its data or credentials)",
            path.display(),
            p.display()
        ));
    }
    if let Some(s) = SYSTEM.iter().find(|s| path.starts_with(s)) {
        return Some(format!("{} is a system secret ({s})", path.display()));
    }
    let mut prefix = std::path::PathBuf::new();
    for c in path.components() {
        prefix.push(c);
        if let Some(why) = by_name(&prefix) {
            return Some(format!("{} {why}", prefix.display()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn secrets_are_known_by_name_anywhere() {
        for s in [
            "/home/a/.ssh",
            "/home/a/src/.aws",
            "/home/a/.config/gcloud",
            "/home/a/.cargo/credentials.toml",
            "/x/id_rsa",
            "/x/id_ed25519.pub",
            "/x/creds/policy.nk",
            "/x/admin.seed",
            "/x/user.creds",
            "/home/a/.netrc",
        ] {
            assert!(by_name(Path::new(s)).is_some(), "{s}");
        }
        for s in [
            "/home/a/src",
            "/home/a/.config",
            "/home/a/.cargo",
            "/x/.nk",
            "/x/notes.txt",
            "/x/ssh",
        ] {
            assert!(by_name(Path::new(s)).is_none(), "{s}");
        }
    }

    #[test]
    fn paths_inside_secrets_and_worker_dirs_are_refused() {
        let protected = vec![PathBuf::from("/var/skynet")];
        assert!(refused(Path::new("/home/a/.ssh/id_rsa"), &protected).is_some());
        assert!(refused(Path::new("/home/a/.ssh/config"), &protected).is_some());
        assert!(refused(Path::new("/home/a/.gnupg/x/y"), &protected).is_some());
        assert!(refused(Path::new("/var/skynet/worker-w.db"), &protected).is_some());
        assert!(refused(Path::new("/var/skynet"), &protected).is_some());
        assert!(refused(Path::new("/etc/shadow"), &protected).is_some());
        assert!(refused(Path::new("/etc/sudoers.d/x"), &protected).is_some());
        assert!(refused(Path::new("/home/a/keys/w.nk"), &protected).is_some());
        assert!(refused(Path::new("/var/skynetx/a"), &protected).is_none());
        assert!(refused(Path::new("/home/a/src/app/main.rs"), &protected).is_none());
        assert!(refused(Path::new("/etc/passwd"), &protected).is_none());
    }
}
