//! Kernel confinement of steps: every step runs under Landlock on Linux, so what no rule of
//! policy or of the worker foresaw still cannot reach outside the worker's roots.
//!
//! The worker decides once, at start, how it can confine ([`decide`], from `--sandbox` and
//! what the kernel offers), and says so in its registry entry. For each attempt it builds a
//! [`Spec`] ([`Sandbox::spec`]): read-write the roots and a private temp dir, read-only the
//! system and the toolchains on `PATH`, a few devices, outbound TCP only when the grant
//! allows network, no signals to (or ptrace of) processes outside the step, and the holes:
//! the worker's data and credentials, secrets found by name. The supervisor
//! ([`crate::supervise`]) computes the rules from the disk ([`rules::plan`], pure) and
//! confines itself with them before it starts the step, so the step and everything it
//! starts are confined ([`enforce`]). Each step's log starts with a line that says so
//! ([`Sandbox::banner`]), so a "Permission denied" is explained where it is read.

pub mod rules;

#[cfg(target_os = "linux")]
mod kernel;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use rules::{Grant, Kind, Tree};

/// `--sandbox`: what the worker does when it cannot confine steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Confine every step with Landlock; refuse to start where the kernel cannot.
    Require,
    /// Confine where the kernel can; otherwise run steps unconfined, and say so.
    BestEffort,
    /// Never confine (steps are confined by policy and the worker's path checks only).
    Off,
}

/// How this worker confines steps, as decided at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Level {
    /// Landlock with the kernel's ABI `abi`; `require`: a step that cannot be confined
    /// does not run.
    Landlock { abi: u8, require: bool },
    /// Best effort, and the kernel cannot: steps run unconfined, for this reason.
    Unconfined(String),
    /// `--sandbox off`.
    Off,
}

/// The ABI this worker knows how to use; a newer kernel is used at this level.
pub const MAX_ABI: u8 = 7;

/// The level for `mode` (`None`: the default, `require` where the kernel can confine and
/// best effort elsewhere) given what the kernel offers (`probe`: its Landlock ABI, or why
/// there is none). An error is a refusal to start.
pub fn decide(mode: Option<Mode>, probe: Result<u8, String>) -> Result<Level, String> {
    match (mode, probe) {
        (Some(Mode::Off), _) => Ok(Level::Off),
        (Some(Mode::Require) | None, Ok(abi)) => Ok(Level::Landlock {
            abi: abi.min(MAX_ABI),
            require: true,
        }),
        (Some(Mode::BestEffort), Ok(abi)) => Ok(Level::Landlock {
            abi: abi.min(MAX_ABI),
            require: false,
        }),
        (Some(Mode::Require), Err(why)) => Err(format!(
            "--sandbox require: this system cannot confine steps ({why}); \
             run with --sandbox best-effort or --sandbox off to run them unconfined"
        )),
        (Some(Mode::BestEffort) | None, Err(why)) => Ok(Level::Unconfined(why)),
    }
}

impl Level {
    /// For the registry (`workers.list`): `landlock abi 7`, `best-effort: ...`, `off`.
    pub fn describe(&self) -> String {
        match self {
            Level::Landlock { abi, .. } => match self.missing() {
                Some(m) => format!("landlock abi {abi} (partial: {m})"),
                None => format!("landlock abi {abi}"),
            },
            Level::Unconfined(why) => format!("best-effort: steps run unconfined ({why})"),
            Level::Off => "off".into(),
        }
    }

    /// What this level cannot confine, if anything.
    fn missing(&self) -> Option<String> {
        let Level::Landlock { abi, .. } = self else {
            return None;
        };
        let mut m = Vec::new();
        if *abi < 4 {
            m.push("no network rules");
        }
        if *abi < 6 {
            m.push("no signal or abstract socket scoping");
        }
        (!m.is_empty()).then(|| m.join(", "))
    }

    /// The warning to log at start when steps are not fully confined.
    pub fn warning(&self) -> Option<String> {
        match self {
            Level::Landlock { .. } => self.missing().map(|m| {
                format!(
                    "steps are only partly confined: the kernel's Landlock lacks {m}; \
                     a newer kernel confines them fully"
                )
            }),
            Level::Unconfined(why) => Some(format!(
                "STEPS RUN UNCONFINED: the kernel cannot confine them ({why}); \
                 only policy and the worker's path checks stand between a step and this machine"
            )),
            Level::Off => Some(
                "STEPS RUN UNCONFINED (--sandbox off): only policy and the worker's path \
                 checks stand between a step and this machine"
                    .into(),
            ),
        }
    }
}

/// What one attempt's steps may reach, for the supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    pub abi: u8,
    pub require: bool,
    pub grants: Vec<Grant>,
    pub holes: Vec<PathBuf>,
    pub network: bool,
}

/// The system, read-only.
const SYSTEM: &[&str] = &[
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/bin",
    "/sbin",
    "/etc",
    "/opt",
    "/proc",
    "/sys",
    "/dev",
    "/run/systemd/resolve",
    "/run/resolvconf",
    "/nix/store",
];

/// Devices steps may write to.
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
    "/dev/shm",
];

/// The worker's sandbox: its level, and what every attempt may reach.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub level: Level,
    roots: Vec<PathBuf>,
    toolchains: Vec<PathBuf>,
    holes: Vec<PathBuf>,
}

impl Sandbox {
    /// `roots` and `protected` (the worker's data and credentials, resolved); `path` is the
    /// `PATH` steps get: its directories outside the system are granted read-only.
    pub fn new(
        level: Level,
        roots: &[PathBuf],
        home: &Path,
        protected: &[PathBuf],
        path: Option<&str>,
    ) -> Self {
        let mut holes: Vec<PathBuf> = protected.to_vec();
        holes.extend(crate::secrets::SYSTEM.iter().map(PathBuf::from));
        Self {
            level,
            roots: roots.to_vec(),
            toolchains: toolchains(path, home),
            holes,
        }
    }

    /// The spec for an attempt with its private temp dir `tmp`; `None` when steps run
    /// unconfined.
    pub fn spec(&self, tmp: &Path, network: bool) -> Option<Spec> {
        let Level::Landlock { abi, require } = self.level else {
            return None;
        };
        let grant = |p: &Path, write, search| Grant {
            path: p.to_path_buf(),
            write,
            search,
        };
        let mut grants: Vec<Grant> = SYSTEM
            .iter()
            .map(|s| grant(Path::new(s), false, false))
            .collect();
        grants.extend(self.toolchains.iter().map(|t| grant(t, false, true)));
        grants.extend(DEVICES.iter().map(|d| grant(Path::new(d), true, false)));
        grants.extend(self.roots.iter().map(|r| grant(r, true, true)));
        grants.push(grant(tmp, true, false));
        Some(Spec {
            abi,
            require,
            grants,
            holes: self.holes.clone(),
            network,
        })
    }

    /// The line every step's log starts with, so a "Permission denied" is explained.
    pub fn banner(&self, network: bool) -> String {
        match self.level {
            Level::Landlock { .. } => {
                format!("skynet: confined by {}", self.describe_attempt(network))
            }
            _ => format!(
                "skynet: not confined by the kernel ({})",
                self.level.describe()
            ),
        }
    }

    /// How an attempt's steps are confined, for its `running` event.
    pub fn describe_attempt(&self, network: bool) -> String {
        match &self.level {
            Level::Landlock { abi, .. } => {
                let roots = self
                    .roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                let net = match (network, *abi >= 4) {
                    (true, _) => "network allowed",
                    (false, true) => "no network (TCP connect refused)",
                    (false, false) => "network not confined (kernel too old)",
                };
                let scope = if *abi >= 6 {
                    "; no signals outside the step"
                } else {
                    ""
                };
                format!(
                    "landlock abi {abi}: read-write {roots} and a private TMPDIR; {net}{scope}; \
                     secrets and the worker's own files unreachable"
                )
            }
            other => other.describe(),
        }
    }
}

/// The directories of `PATH` outside the system, as the trees they belong to: a `bin`
/// or `shims` directory means its parent (`~/.cargo/bin` is `~/.cargo`), unless that is
/// the home itself or above it; `~/.cargo` brings `~/.rustup` (where its programs live).
pub fn toolchains(path: Option<&str>, home: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for dir in std::env::split_paths(path.unwrap_or("")) {
        if !dir.is_absolute() || SYSTEM.iter().any(|s| dir.starts_with(s)) {
            continue;
        }
        let named = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| matches!(n, "bin" | "sbin" | "shims"));
        let tree = match dir.parent() {
            Some(p) if named && p.parent().is_some() && !home.starts_with(p) => p.to_path_buf(),
            _ => dir.clone(),
        };
        let mut add = vec![tree.clone()];
        if tree.file_name().is_some_and(|n| n == ".cargo")
            && let Some(p) = tree.parent()
        {
            add.push(p.join(".rustup"));
        }
        for t in add {
            if !out.iter().any(|o| t.starts_with(o)) {
                out.retain(|o| !o.starts_with(&t));
                out.push(t);
            }
        }
    }
    out
}

/// The Landlock ABI of this kernel (capped at [`MAX_ABI`]), or why there is none.
pub fn probe() -> Result<u8, String> {
    #[cfg(target_os = "linux")]
    {
        kernel::probe()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(format!("no Landlock on {}", std::env::consts::OS))
    }
}

/// The real file system, as [`rules::plan`] sees it.
pub struct Disk;

impl Tree for Disk {
    fn kind(&self, path: &Path) -> Option<Kind> {
        let m = std::fs::metadata(path).ok()?;
        Some(if m.is_dir() { Kind::Dir } else { Kind::File })
    }

    fn list(&self, dir: &Path) -> Option<Vec<(std::ffi::OsString, Kind)>> {
        let entries = std::fs::read_dir(dir).ok()?;
        Some(
            entries
                .flatten()
                .filter_map(|e| {
                    let t = e.file_type().ok()?;
                    let kind = if t.is_symlink() {
                        Kind::Link
                    } else if t.is_dir() {
                        Kind::Dir
                    } else {
                        Kind::File
                    };
                    Some((e.file_name(), kind))
                })
                .collect(),
        )
    }
}

/// Confines the calling thread (and whatever it starts from then on) as `spec` says.
/// Called by the supervisor before it starts any thread or the step.
pub fn enforce(spec: &Spec) -> Result<(), String> {
    let rules = rules::plan(&spec.grants, &spec.holes, rules::Limits::default(), &Disk);
    #[cfg(target_os = "linux")]
    {
        kernel::apply(spec, &rules)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = rules;
        Err(format!("no Landlock on {}", std::env::consts::OS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_is_the_default_where_the_kernel_confines_and_refuses_to_start_where_not() {
        assert_eq!(
            decide(None, Ok(7)),
            Ok(Level::Landlock {
                abi: 7,
                require: true
            })
        );
        assert_eq!(
            decide(None, Err("no Landlock".into())),
            Ok(Level::Unconfined("no Landlock".into()))
        );
        let e = decide(Some(Mode::Require), Err("no Landlock".into())).unwrap_err();
        assert!(
            e.contains("--sandbox require") && e.contains("no Landlock"),
            "{e}"
        );
        assert_eq!(decide(Some(Mode::Off), Ok(7)), Ok(Level::Off));
        assert_eq!(
            decide(Some(Mode::BestEffort), Ok(9)),
            Ok(Level::Landlock {
                abi: MAX_ABI,
                require: false
            })
        );
    }

    #[test]
    fn a_worker_that_cannot_fully_confine_says_so() {
        let full = Level::Landlock {
            abi: 7,
            require: true,
        };
        assert_eq!(full.describe(), "landlock abi 7");
        assert!(full.warning().is_none());
        let old = Level::Landlock {
            abi: 3,
            require: true,
        };
        assert!(old.describe().contains("partial: no network rules"));
        assert!(old.warning().is_some());
        assert!(
            Level::Unconfined("x".into())
                .describe()
                .starts_with("best-effort")
        );
        assert!(Level::Off.warning().unwrap().contains("UNCONFINED"));
    }

    #[test]
    fn an_attempt_spec_grants_roots_and_tmp_and_holds_the_network_choice() {
        let s = Sandbox::new(
            Level::Landlock {
                abi: 7,
                require: true,
            },
            &[PathBuf::from("/h")],
            Path::new("/h"),
            &[PathBuf::from("/h/skynet-data")],
            Some("/h/.cargo/bin:/usr/bin:/opt/x/bin:/h/bin"),
        );
        let spec = s.spec(Path::new("/tmp/skynet-j-1"), false).unwrap();
        let rw: Vec<&Path> = spec
            .grants
            .iter()
            .filter(|g| g.write)
            .map(|g| g.path.as_path())
            .collect();
        assert!(rw.contains(&Path::new("/h")) && rw.contains(&Path::new("/tmp/skynet-j-1")));
        assert!(rw.contains(&Path::new("/dev/null")));
        assert!(!rw.contains(&Path::new("/etc")));
        assert!(spec.holes.contains(&PathBuf::from("/h/skynet-data")));
        assert!(spec.holes.contains(&PathBuf::from("/etc/shadow")));
        assert!(!spec.network);
        assert!(
            s.banner(false).contains("no network"),
            "{}",
            s.banner(false)
        );
        assert!(s.banner(true).contains("network allowed"));
        assert!(s.spec(Path::new("/t"), true).unwrap().network);
        let off = Sandbox::new(Level::Off, &[], Path::new("/h"), &[], None);
        assert!(off.spec(Path::new("/t"), false).is_none());
        assert_eq!(off.describe_attempt(false), "off");
    }

    #[test]
    fn toolchains_on_path_are_their_trees() {
        let t = toolchains(
            Some("/r/.cargo/bin:/r/.pyenv/shims:/r/.pyenv/bin:/usr/local/bin:/h/bin:rel/bin"),
            Path::new("/h"),
        );
        assert_eq!(
            t,
            [
                PathBuf::from("/r/.cargo"),
                PathBuf::from("/r/.rustup"),
                PathBuf::from("/r/.pyenv"),
                PathBuf::from("/h/bin"),
            ]
        );
    }
}
