//! A credentials directory: one nkey seed per identity (mode 0600), the list of identities,
//! the policy key workers trust, the approvers policy accepts decisions from, and the nats-server configuration that gives each identity
//! exactly its permissions (see `skynet_protocol::permissions`). Written by `skynet creds`
//! and `skynet up`; read by tests.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use skynet_protocol::WorkerId;
use skynet_protocol::approval::{Approver, ApproverKind, Approvers};
use skynet_protocol::permissions::{Role, render_authorization};

use crate::args::{ConfigError, read_seed};

/// One identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub approver: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerId>,
    pub public_key: String,
}

impl Identity {
    pub fn role(&self) -> Option<Role> {
        Some(match self.kind.as_str() {
            "admin" => Role::Admin,
            "planner" => Role::Planner,
            "policy" => Role::Policy,
            "dispatcher" => Role::Dispatcher,
            "ledger" => Role::Ledger,
            "sentinel" => Role::Sentinel,
            "archiver" => Role::Archiver,
            "telegram" => Role::Telegram,
            "cli" => Role::Cli {
                approver: self.approver,
            },
            "worker" => Role::Worker(self.worker.clone()?),
            _ => return None,
        })
    }
}

/// Where the generated server listens and keeps its store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSettings {
    pub listen: String,
    pub store_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Index {
    server: ServerSettings,
    identities: Vec<Identity>,
}

/// The control-plane identities `init` creates, besides the CLI and admin.
pub const SERVICES: [&str; 7] = [
    "planner",
    "policy",
    "dispatcher",
    "ledger",
    "sentinel",
    "archiver",
    "telegram",
];

/// A credentials directory.
pub struct CredsDir {
    dir: PathBuf,
    index: Index,
}

fn io(path: &Path, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::new("creds", format!("{}: {e}", path.display()))
}

impl CredsDir {
    /// Creates (or completes) a directory with every service identity, `admin` and an
    /// approving `cli`. Existing seeds are kept.
    pub fn init(dir: &Path, server: ServerSettings) -> Result<Self, ConfigError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| io(dir, e))?;
        }
        let mut me = match Self::open(dir) {
            Ok(mut existing) => {
                existing.index.server = server;
                existing
            }
            Err(_) => Self {
                dir: dir.to_path_buf(),
                index: Index {
                    server,
                    identities: Vec::new(),
                },
            },
        };
        me.add("admin", "admin", false, None)?;
        for s in SERVICES {
            me.add(s, s, false, None)?;
        }
        me.add("cli", "cli", true, None)?;
        me.save()?;
        Ok(me)
    }

    pub fn open(dir: &Path) -> Result<Self, ConfigError> {
        let path = dir.join("identities.json");
        let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        let index: Index = serde_json::from_str(&text).map_err(|e| io(&path, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            index,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn seed_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.nk"))
    }

    pub fn identity(&self, name: &str) -> Option<&Identity> {
        self.index.identities.iter().find(|i| i.name == name)
    }

    pub fn identities(&self) -> &[Identity] {
        &self.index.identities
    }

    fn add(
        &mut self,
        name: &str,
        kind: &str,
        approver: bool,
        worker: Option<WorkerId>,
    ) -> Result<Identity, ConfigError> {
        let path = self.seed_path(name);
        let public_key = if path.exists() {
            read_seed(&path, "creds")?.key_pair()?.public_key()
        } else {
            let kp = nkeys::KeyPair::new_user();
            let seed = kp
                .seed()
                .map_err(|e| ConfigError::new("creds", format!("generating a key: {e}")))?;
            crate::keys::write_seed(&path, &seed).map_err(|e| io(&path, e))?;
            kp.public_key()
        };
        let identity = Identity {
            name: name.to_owned(),
            kind: kind.to_owned(),
            approver,
            worker,
            public_key,
        };
        self.index.identities.retain(|i| i.name != name);
        self.index.identities.push(identity.clone());
        Ok(identity)
    }

    /// Adds (or keeps) the identity of worker `id`.
    pub fn add_worker(&mut self, id: &WorkerId) -> Result<Identity, ConfigError> {
        let identity = self.add(&format!("worker-{id}"), "worker", false, Some(id.clone()))?;
        self.save()?;
        Ok(identity)
    }

    /// Adds (or keeps) a CLI identity `cli-<name>`.
    pub fn add_cli(&mut self, name: &str, approver: bool) -> Result<Identity, ConfigError> {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(ConfigError::new(
                "name",
                "letters, digits, '-' and '_' only",
            ));
        }
        let identity = self.add(&format!("cli-{name}"), "cli", approver, None)?;
        self.save()?;
        Ok(identity)
    }

    /// Replaces identity `name`'s key with a new one (same kind and rights). The old key
    /// stops working once the server reloads the configuration.
    pub fn rotate(&mut self, name: &str) -> Result<Identity, ConfigError> {
        let old = self
            .identity(name)
            .cloned()
            .ok_or_else(|| ConfigError::new("name", format!("no identity {name:?}")))?;
        let path = self.seed_path(name);
        // Keep the old seed aside rather than destroying it outright.
        let aside = self.dir.join(format!(
            "{name}.nk.rotated-{}",
            skynet_protocol::time::now_ms()
        ));
        std::fs::rename(&path, &aside).map_err(|e| io(&path, e))?;
        let new = self.add(&old.name, &old.kind, old.approver, old.worker.clone())?;
        self.save()?;
        Ok(new)
    }

    /// The `authorization` block for every identity.
    pub fn authorization(&self) -> String {
        let users: Vec<(String, Role)> = self
            .index
            .identities
            .iter()
            .filter_map(|i| Some((i.public_key.clone(), i.role()?)))
            .collect();
        render_authorization(&users)
    }

    /// The identities whose signed decisions policy accepts: approving CLIs and the
    /// Telegram ingress (which decides for its approvers).
    pub fn approvers(&self) -> Approvers {
        Approvers(
            self.index
                .identities
                .iter()
                .filter_map(|i| {
                    let kind = match i.role()? {
                        Role::Cli { approver: true } => ApproverKind::Cli,
                        Role::Telegram => ApproverKind::Telegram,
                        _ => return None,
                    };
                    Some(Approver {
                        kind,
                        name: i.name.clone(),
                        public_key: i.public_key.clone(),
                    })
                })
                .collect(),
        )
    }

    /// A complete nats-server configuration.
    pub fn server_config(&self) -> String {
        let s = &self.index.server;
        format!(
            "# Generated by `skynet creds`; regenerate rather than edit.\n\
             listen: {}\n\
             server_name: skynet\n\
             jetstream {{\n  store_dir: \"{}\"\n}}\n\
             max_payload: 1MB\n\n{}",
            s.listen,
            s.store_dir.display(),
            self.authorization()
        )
    }

    /// Writes `identities.json`, `nats-server.conf` and `trusted-keys`.
    pub fn save(&self) -> Result<(), ConfigError> {
        let write = |name: &str, body: String| {
            let path = self.dir.join(name);
            std::fs::write(&path, body).map_err(|e| io(&path, e))
        };
        write(
            "identities.json",
            serde_json::to_string_pretty(&self.index).unwrap_or_default(),
        )?;
        write("nats-server.conf", self.server_config())?;
        // For server configurations of your own (TLS, clusters): `include authorization.conf`.
        write("authorization.conf", self.authorization())?;
        let policy = self
            .identity("policy")
            .map(|i| i.public_key.clone())
            .unwrap_or_default();
        write(
            "trusted-keys",
            format!("# The key skynet-policy signs execution specs with.\n{policy}\n"),
        )?;
        write("approvers", self.approvers().render())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_makes_private_seeds_and_a_config_and_keeps_them() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("skynet-creds-{}", std::process::id()));
        let server = ServerSettings {
            listen: "127.0.0.1:4222".into(),
            store_dir: dir.join("js"),
        };
        let mut c = CredsDir::init(&dir, server.clone()).unwrap();
        let policy_key = c.identity("policy").unwrap().public_key.clone();
        let mode = std::fs::metadata(c.seed_path("policy"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        c.add_worker(&WorkerId::parse("laptop-1").unwrap()).unwrap();
        let conf = std::fs::read_to_string(dir.join("nats-server.conf")).unwrap();
        assert!(conf.contains("# worker-laptop-1"));
        assert!(conf.contains("skynet.control.laptop-1"));
        let trusted = std::fs::read_to_string(dir.join("trusted-keys")).unwrap();
        assert!(trusted.contains(&policy_key));
        // Policy accepts decisions from the approving CLI and the Telegram ingress only.
        let approvers = std::fs::read_to_string(dir.join("approvers")).unwrap();
        let approvers = skynet_protocol::approval::Approvers::parse(&approvers).unwrap();
        let names: Vec<&str> = approvers.0.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.contains(&"cli") && names.contains(&"telegram"));
        // Rotation gives a new key, and the configuration follows.
        let old_cli = c.identity("cli").unwrap().public_key.clone();
        let new_cli = c.rotate("cli").unwrap().public_key;
        assert_ne!(old_cli, new_cli);
        let conf = std::fs::read_to_string(dir.join("nats-server.conf")).unwrap();
        assert!(conf.contains(&new_cli) && !conf.contains(&old_cli));
        assert!(c.identity("cli").unwrap().approver);
        // Running init again keeps every key.
        let again = CredsDir::init(&dir, server).unwrap();
        assert_eq!(again.identity("policy").unwrap().public_key, policy_key);
        assert!(again.identity("worker-laptop-1").is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
