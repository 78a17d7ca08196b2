//! What the worker's machine offers, for the registry and the planner.

use std::path::Path;

const TOOLS: &[&str] = &[
    "git", "python3", "python", "pytest", "cargo", "rustc", "node", "npm", "go", "make", "cmake",
    "docker", "java", "gcc", "clang",
];

/// The tools from the list above found on `PATH`.
pub fn tools(path: Option<&str>) -> Vec<String> {
    let Some(path) = path else { return Vec::new() };
    TOOLS
        .iter()
        .filter(|t| std::env::split_paths(path).any(|dir| is_executable(&dir.join(t))))
        .map(|t| (*t).to_owned())
        .collect()
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Free bytes on the file system of `dir`.
pub fn free_disk(dir: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(s.blocks_available() as u64 * s.fragment_size() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tools_and_disk() {
        let path = std::env::var("PATH").ok();
        // The test machine builds Rust, so cargo is on PATH.
        assert!(tools(path.as_deref()).contains(&"cargo".to_string()));
        assert!(tools(Some("/nonexistent")).is_empty());
        assert!(free_disk(Path::new("/")).is_some_and(|b| b > 0));
    }
}
