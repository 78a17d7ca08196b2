//! `skynet creds`: identities (nkeys) and the nats-server configuration that confines each.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use skynet_protocol::WorkerId;
use skynet_runtime::ConfigError;
use skynet_runtime::creds::{CredsDir, ServerSettings};

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
        id: String,
        #[arg(long, env = "SKYNET_CREDS_DIR", default_value = "./skynet-creds")]
        dir: PathBuf,
    },
    /// Add another CLI identity, `cli-<name>`; `--approver` lets it approve and deny.
    AddCli {
        name: String,
        #[arg(long)]
        approver: bool,
        #[arg(long, env = "SKYNET_CREDS_DIR", default_value = "./skynet-creds")]
        dir: PathBuf,
    },
    /// Give an identity a new key (a lost laptop, a leaked seed); reload the server after.
    Rotate {
        name: String,
        #[arg(long, env = "SKYNET_CREDS_DIR", default_value = "./skynet-creds")]
        dir: PathBuf,
    },
    /// List the identities and their public keys.
    Show {
        #[arg(long, env = "SKYNET_CREDS_DIR", default_value = "./skynet-creds")]
        dir: PathBuf,
    },
}

pub fn main(args: CredsArgs) -> Result<ExitCode, ConfigError> {
    match args.command {
        CredsCommand::Init {
            dir,
            listen,
            store_dir,
        } => {
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
            let mut creds = CredsDir::open(&dir)?;
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
            let mut creds = CredsDir::open(&dir)?;
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
            let mut creds = CredsDir::open(&dir)?;
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
        CredsCommand::Show { dir } => show(&CredsDir::open(&dir)?),
    }
    Ok(ExitCode::SUCCESS)
}

fn show(creds: &CredsDir) {
    println!("credentials in {}:", creds.dir().display());
    for i in creds.identities() {
        let note = if i.kind == "cli" && i.approver {
            " (approver)"
        } else {
            ""
        };
        println!("  {:<20} {}{note}", i.name, i.public_key);
    }
}
