//! Keys kept on disk: nkey seeds in private files.

use std::io::Write;
use std::path::Path;

use crate::args::{ConfigError, read_seed};

/// Writes `seed` to `path` readable by the owner only (0600), creating parent directories.
pub fn write_seed(path: &Path, seed: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(seed.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// Loads the seed at `path`, creating a new user nkey there first if there is none.
pub fn load_or_create(path: &Path, flag: &str) -> Result<nkeys::KeyPair, ConfigError> {
    if !path.exists() {
        let kp = nkeys::KeyPair::new_user();
        let seed = kp
            .seed()
            .map_err(|e| ConfigError::new(flag, format!("generating a key: {e}")))?;
        write_seed(path, &seed)
            .map_err(|e| ConfigError::new(flag, format!("writing {}: {e}", path.display())))?;
        tracing::info!(path = %path.display(), public_key = %kp.public_key(), "created a new key");
    }
    read_seed(path, flag)?.key_pair()
}
