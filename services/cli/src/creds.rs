//! `skynet creds`: identities (nkeys) and the nats-server configuration that confines each.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use skynet_protocol::WorkerId;
use skynet_runtime::ConfigError;
use skynet_runtime::creds::{CredsDir, ServerSettings};

use crate::paths;

#[derive(Debug, Args)]
pub struct CredsArgs {
    #[command(subcommand)]
    command: CredsCommand,
}

#[derive(Debug, Subcommand)]
enum CredsCommand {
    /// Create keys for every service, the CLI (an approver) and an admin, and a
    /// nats-server configuration giving each only its permissions.
    Init {
        /// The credentials directory (created, mode 0700).
        dir: PathBuf,
        /// Where the generated nats-server listens.
        #[arg(long, default_value = "127.0.0.1:4222")]
        listen: String,
        /// Where the generated nats-server keeps JetStream data.
        #[arg(long)]
        store_dir: Option<PathBuf>,
    },
    /// Add a worker's identity (it may only touch its own work and reports).
    AddWorker {
        /// The worker's id (what it runs with as --id).
        id: String,
        /// The credentials directory [default: the one skynet up uses, $XDG_RUNTIME_DIR/skynet/creds
        /// or <tmp>/skynet-<uid>/creds]
        #[arg(long, env = paths::CREDS_DIR_ENV)]
        dir: Option<PathBuf>,
    },
    /// Add another CLI identity, `cli-<name>`; `--approver` lets it approve and deny.
    AddCli {
        /// The new identity is called cli-<NAME>.
        name: String,
        /// It may approve and deny jobs.
        #[arg(long)]
        approver: bool,
        /// The credentials directory [default: the one skynet up uses, $XDG_RUNTIME_DIR/skynet/creds
        /// or <tmp>/skynet-<uid>/creds]
        #[arg(long, env = paths::CREDS_DIR_ENV)]
        dir: Option<PathBuf>,
    },
    /// Give an identity a new key (a lost laptop, a leaked seed); reload the server after.
    Rotate {
        /// The identity's name, as skynet creds show lists it (ledger, cli, worker-laptop-1...).
        name: String,
        /// The credentials directory [default: the one skynet up uses, $XDG_RUNTIME_DIR/skynet/creds
        /// or <tmp>/skynet-<uid>/creds]
        #[arg(long, env = paths::CREDS_DIR_ENV)]
        dir: Option<PathBuf>,
    },
    /// List the identities and their public keys.
    Show {
        /// The credentials directory [default: the one skynet up uses, $XDG_RUNTIME_DIR/skynet/creds
        /// or <tmp>/skynet-<uid>/creds]
        #[arg(long, env = paths::CREDS_DIR_ENV)]
        dir: Option<PathBuf>,
    },
}

/// Opens the credentials directory `dir` (default: `skynet up`'s), saying how to make one
/// when there is none.
fn open(dir: Option<&Path>) -> Result<(PathBuf, CredsDir), ConfigError> {
    let dir = paths::creds_dir(dir)?;
    if !dir.join("identities.json").is_file() {
        return Err(ConfigError::new(
            "--dir",
            format!(
                "no credentials in {}: skynet up makes them there when it starts its own NATS, \
                 and skynet creds init DIR makes a set for a server of your own",
                dir.display()
            ),
        ));
    }
    let creds = CredsDir::open(&dir)?;
    Ok((dir, creds))
}

pub fn main(args: CredsArgs) -> Result<ExitCode, ConfigError> {
    match args.command {
        CredsCommand::Init {
            dir,
            listen,
            store_dir,
        } => {
            let dir = std::path::absolute(&dir)
                .map_err(|e| ConfigError::new("dir", format!("{}: {e}", dir.display())))?;
            let store_dir = store_dir.unwrap_or_else(|| dir.join("jetstream"));
            let creds = CredsDir::init(&dir, ServerSettings { listen, store_dir })?;
            show(&creds);
            println!(
                "\nstart the server:   nats-server -c {}\n\
                 connect a service:  skynet-ledger --nats-seed {}\n\
                 trust for workers:  skynet-worker --trust-file {}\n\
                 add a worker:       skynet creds add-worker <id> --dir {}",
                dir.join("nats-server.conf").display(),
                creds.seed_path("ledger").display(),
                dir.join("trusted-keys").display(),
                dir.display()
            );
        }
        CredsCommand::AddWorker { id, dir } => {
            let id = WorkerId::parse(&id).map_err(|e| ConfigError::new("id", e.to_string()))?;
            let (dir, mut creds) = open(dir.as_deref())?;
            let identity = creds.add_worker(&id)?;
            println!(
                "worker {id}: {}\n  seed: {}\n  run:  skynet-worker --id {id} --nats-seed {} --trust-file {}\n\
                 Reload the server to admit it: nats-server --signal reload",
                identity.public_key,
                creds.seed_path(&identity.name).display(),
                creds.seed_path(&identity.name).display(),
                dir.join("trusted-keys").display()
            );
        }
        CredsCommand::AddCli {
            name,
            approver,
            dir,
        } => {
            let (_, mut creds) = open(dir.as_deref())?;
            let identity = creds.add_cli(&name, approver)?;
            println!(
                "{}{}: {}\n  seed: {}\nReload the server to admit it: nats-server --signal reload",
                identity.name,
                if approver { " (approver)" } else { "" },
                identity.public_key,
                creds.seed_path(&identity.name).display()
            );
        }
        CredsCommand::Rotate { name, dir } => {
            let (dir, mut creds) = open(dir.as_deref())?;
            let identity = creds.rotate(&name)?;
            println!(
                "{}: new key {}\n  seed: {}\nReload the server (nats-server --signal reload) and give the new seed to its owner.{}",
                identity.name,
                identity.public_key,
                creds.seed_path(&identity.name).display(),
                if identity.name == "policy" {
                    format!(
                        "\nWorkers must trust the new policy key: {} (keep the old key in their trust file until they have it).",
                        dir.join("trusted-keys").display()
                    )
                } else {
                    String::new()
                }
            );
        }
        CredsCommand::Show { dir } => show(&open(dir.as_deref())?.1),
    }
    Ok(ExitCode::SUCCESS)
}

fn show(creds: &CredsDir) {
    println!("credentials in {}:", creds.dir().display());
    println!("  {:<20} {:<56} seed", "IDENTITY", "PUBLIC KEY");
    for i in creds.identities() {
        let note = if i.kind == "cli" && i.approver {
            " (approver)"
        } else {
            ""
        };
        println!(
            "  {:<20} {:<56} {}{note}",
            i.name,
            i.public_key,
            creds.seed_path(&i.name).display()
        );
    }
}
