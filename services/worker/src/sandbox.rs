//! Kernel confinement of steps: every step runs under Landlock on Linux, so what no rule of
//! policy or of the worker foresaw still cannot reach outside the worker's roots.
//!
//! The worker decides once, at start, how it can confine ([`decide`], from `--sandbox` and
//! what the kernel offers), and says so in its registry entry. What an attempt may reach:
//! read-write the roots and a private temp dir, read-only the system and the toolchains on
//! `PATH`, a few devices, outbound TCP only when the grant allows network, no signals to (or
//! ptrace of) processes outside the step, and the holes: the worker's data and credentials,
//! secrets found by name. Before each step the worker
//! computes the rules from the disk ([`rules::plan`], pure; reused while what it looked at
//! is unchanged, [`Sandbox::confinement`]) and hands them to the supervisor
//! ([`crate::supervise`]), which confines itself with them before it starts the step, so the
//! step and everything it starts are confined ([`enforce`]). Each step's log starts with a
//! line that says so ([`Sandbox::banner`]), so a "Permission denied" is explained where it
//! is read.

pub mod rules;

#[cfg(target_os = "linux")]
mod kernel;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use rules::{Grant, Kind, Planned, Rule, Stamp, Tree};

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

/// What the supervisor confines a step with: the rules the worker computed for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confinement {
    pub abi: u8,
    pub require: bool,
    pub network: bool,
    pub rules: Vec<Rule>,
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
    /// The last plan of what every attempt may reach (all but its temp dir), reused while
    /// it holds.
    plan: Arc<Mutex<Option<Arc<Planned>>>>,
    /// How long a directory must have been unchanged for a plan that read it to be reused.
    settle_ns: i128,
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
            plan: Arc::default(),
            settle_ns: rules::SETTLED_NS,
        }
    }

    /// What every attempt may reach: the system, the toolchains, devices and the roots.
    fn shared_grants(&self) -> Vec<Grant> {
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
        grants
    }

    fn tmp_grant(tmp: &Path) -> Grant {
        Grant {
            path: tmp.to_path_buf(),
            write: true,
            search: false,
        }
    }

    /// The rules a step of the attempt with temp dir `tmp` is confined by, as the disk is
    /// now; `None` when steps run unconfined. Blocking: it reads the disk. The walk over
    /// what every attempt shares is reused while nothing it looked at changed (one `stat`
    /// per directory it read instead of reading them again); the temp dir is added per
    /// attempt.
    pub fn confinement(&self, tmp: &Path, network: bool) -> Option<Confinement> {
        let Level::Landlock { abi, require } = self.level else {
            return None;
        };
        let limits = rules::Limits::default();
        let last = self.plan.lock().ok().and_then(|p| p.clone());
        let shared = match last {
            Some(p) if p.holds(&Disk) => p,
            _ => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as i128)
                    .unwrap_or(0);
                let p = Arc::new(rules::plan_stamped(
                    &self.shared_grants(),
                    &self.holes,
                    limits,
                    &Disk,
                    now - self.settle_ns,
                ));
                if let Ok(mut last) = self.plan.lock() {
                    *last = Some(p.clone());
                }
                p
            }
        };
        let mut all = shared.rules.clone();
        all.extend(rules::plan(
            &[Self::tmp_grant(tmp)],
            &self.holes,
            limits,
            &Disk,
        ));
        Some(Confinement {
            abi,
            require,
            network,
            rules: all,
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

/// Whether the change times of `path` move with every change, as on a local file system;
/// a network file system's client caches them.
#[cfg(target_os = "linux")]
fn exact_times(path: &Path) -> bool {
    use nix::sys::statfs::{
        AFS_SUPER_MAGIC, CODA_SUPER_MAGIC, FUSE_SUPER_MAGIC, NFS_SUPER_MAGIC, SMB_SUPER_MAGIC,
    };
    // CIFS, SMB2, 9P and Ceph, which nix does not name.
    const OTHERS: [i64; 4] = [0xFF53_4D42, 0xFE53_4D42, 0x0102_1997, 0x00C3_6400];
    match nix::sys::statfs::statfs(path) {
        Ok(fs) => {
            let t = fs.filesystem_type();
            ![
                AFS_SUPER_MAGIC,
                CODA_SUPER_MAGIC,
                FUSE_SUPER_MAGIC,
                NFS_SUPER_MAGIC,
                SMB_SUPER_MAGIC,
            ]
            .contains(&t)
                && !OTHERS.contains(&{
                    // The width of the type differs between C libraries.
                    #[allow(clippy::unnecessary_cast)]
                    let raw = t.0 as i64;
                    raw
                })
        }
        Err(_) => false,
    }
}

#[cfg(not(target_os = "linux"))]
fn exact_times(_: &Path) -> bool {
    false
}

/// The real file system, as [`rules::plan`] sees it.
pub struct Disk;

impl Tree for Disk {
    fn kind(&self, path: &Path) -> Option<Kind> {
        let m = std::fs::metadata(path).ok()?;
        Some(if m.is_dir() { Kind::Dir } else { Kind::File })
    }

    fn stamp(&self, path: &Path) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        let ns = |s: i64, n: i64| s as i128 * 1_000_000_000 + n as i128;
        Some(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            mtime: ns(m.mtime(), m.mtime_nsec()),
            ctime: ns(m.ctime(), m.ctime_nsec()),
        })
    }

    fn exact_times(&self, path: &Path) -> bool {
        exact_times(path)
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

/// Confines the calling thread (and whatever it starts from then on) as `c` says.
/// Called by the supervisor before it starts any thread or the step.
pub fn enforce(c: &Confinement) -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        kernel::apply(c)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = c;
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
    fn an_attempt_may_write_its_roots_and_tmp_and_holds_the_network_choice() {
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
        let grants = s.shared_grants();
        let rw: Vec<&Path> = grants
            .iter()
            .filter(|g| g.write)
            .map(|g| g.path.as_path())
            .collect();
        assert!(rw.contains(&Path::new("/h")) && rw.contains(&Path::new("/dev/null")));
        assert!(!rw.contains(&Path::new("/etc")));
        assert!(
            grants
                .iter()
                .any(|g| g.path == Path::new("/etc") && !g.write)
        );
        assert!(Sandbox::tmp_grant(Path::new("/tmp/skynet-j-1")).write);
        assert!(s.holes.contains(&PathBuf::from("/h/skynet-data")));
        assert!(s.holes.contains(&PathBuf::from("/etc/shadow")));
        assert!(
            s.banner(false).contains("no network"),
            "{}",
            s.banner(false)
        );
        assert!(s.banner(true).contains("network allowed"));
        assert!(s.confinement(Path::new("/t"), true).unwrap().network);
        assert!(!s.confinement(Path::new("/t"), false).unwrap().network);
        let off = Sandbox::new(Level::Off, &[], Path::new("/h"), &[], None);
        assert!(off.confinement(Path::new("/t"), false).is_none());
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

    #[test]
    fn a_secret_made_in_a_root_after_a_plan_is_out_of_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("h");
        std::fs::create_dir_all(root.join("src/app")).unwrap();
        std::fs::write(root.join("src/app/main.rs"), "fn main() {}\n").unwrap();
        // Old enough to be trusted: the directories last changed an hour ago. (Setting
        // that moves their ctime to now, so here "settled" means "before the walk".)
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for d in [&root, &root.join("src"), &root.join("src/app")] {
            std::fs::File::open(d)
                .unwrap()
                .set_modified(hour_ago)
                .unwrap();
        }
        let mut s = Sandbox::new(
            Level::Landlock {
                abi: 7,
                require: true,
            },
            std::slice::from_ref(&root),
            &root,
            &[],
            None,
        );
        s.settle_ns = 0;
        let tmp = dir.path().join("t");
        let granted = |c: &Confinement, p: &Path| {
            c.rules
                .iter()
                .any(|r| !r.list_only && p.starts_with(&r.path))
        };
        let first = s.confinement(&tmp, false).unwrap();
        assert!(granted(&first, &root.join("src/app/main.rs")));
        let reused = s.confinement(&tmp, false).unwrap();
        assert_eq!(reused, first);
        assert!(s.plan.lock().unwrap().as_ref().unwrap().holds(&Disk));
        // A key appears where the walk looked: the next step's rules leave it out.
        std::fs::write(root.join("src/app/id_ed25519"), "KEY\n").unwrap();
        let next = s.confinement(&tmp, false).unwrap();
        assert!(
            !granted(&next, &root.join("src/app/id_ed25519")),
            "{next:?}"
        );
        assert!(granted(&next, &root.join("src/app/main.rs")));
        // The attempt's temp dir is its own rule, never part of what later ones reuse.
        let t2 = dir.path().join("t2");
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::create_dir_all(&t2).unwrap();
        let mine = s.confinement(&tmp, false).unwrap();
        let theirs = s.confinement(&t2, false).unwrap();
        assert!(granted(&mine, &tmp.join("x")) && !granted(&mine, &t2.join("x")));
        assert!(granted(&theirs, &t2.join("x")) && !granted(&theirs, &tmp.join("x")));
    }
}
