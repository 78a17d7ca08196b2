//! `skynet`: the command line of SKYNET.
//!
//! Submits jobs (publishing to `skynet.jobs.submit`, so the request is durable even while the
//! planner is down), watches them (`skynet.events.<job>`, `skynet.logs.<job>`, and
//! `skynet.alerts` for the job), and talks to the `skynet` NATS service for everything else.
//! `skynet up` runs the whole stack locally; `skynet doctor` checks a setup.
//!
//! `main` only parses and dispatches: commands that talk to NATS live in `remote`, the local
//! ones in their own modules, and hidden subcommands (`__guard`, the first stage of a child
//! that must die with `skynet up`) are one variant and one module each.

mod artifacts;
mod connect;
mod creds;
mod docs;
mod doctor;
mod exit;
mod guard;
mod paths;
mod remote;
mod render;
mod sandbox;
mod schedule;
mod signals;
mod submit;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use skynet_runtime::NatsArgs;

/// SKYNET: run work on your own machines from anywhere, safely.
#[derive(Debug, Parser)]
#[command(
    name = "skynet",
    version,
    propagate_version = true,
    after_help = "Start here: `skynet up` in one terminal, then `skynet submit --wait -- uname -a` in another.\n`skynet doctor` checks a setup and says what to fix."
)]
struct Cli {
    #[command(flatten)]
    nats: NatsArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Remote(remote::Command),
    /// Check this setup: the NATS connection, the identity and its permissions, the streams,
    /// the workers, the sandbox and the clock; says what to fix.
    Doctor,
    /// Manage identities: keys for services, CLIs and workers, and the server configuration.
    Creds(creds::CredsArgs),
    /// Run the whole stack here in the foreground: NATS (if none answers), every service
    /// and one local worker, and the Telegram bot when TELEGRAM_BOT_TOKEN is set. Ctrl-C
    /// stops it all.
    Up(up::UpArgs),
    /// Print a shell completion script: `skynet completions bash > ~/.local/share/bash-completion/completions/skynet`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `skynet man | man -l -`; `--out DIR` writes one page per
    /// command.
    Man {
        /// Write skynet.1 and skynet-<command>.1 into this directory instead.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    #[command(name = "__guard", hide = true)]
    Guard(guard::GuardArgs),
}

fn main() -> ExitCode {
    // `skynet up` runs a worker in this process: its steps are supervised by this binary.
    if let Some(code) = skynet_worker::supervise::main_if_asked() {
        return code;
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // clap's whole message: the suggestion, the valid values, the usage, the `--` tip.
        Err(e) => {
            let _ = e.print();
            if let Some(tip) = submit_tip(&e, std::env::args().skip(1).collect()) {
                eprintln!("{tip}");
            }
            return exit::code(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    match cli.command {
        Command::Guard(args) => guard::main(args),
        Command::Up(args) => up::main(cli.nats, args),
        Command::Creds(args) => match creds::main(args) {
            Ok(code) => code,
            Err(e) => remote::report(e.into()),
        },
        Command::Completions { shell } => docs::completions(shell),
        Command::Man { out } => docs::man(out.as_deref()),
        Command::Doctor => doctor::main(cli.nats),
        Command::Remote(command) => remote::main(cli.nats, command),
    }
}

/// `skynet submit cargo test`: the words of a command given without `--` before them.
fn submit_tip(e: &clap::Error, args: Vec<String>) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(word)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    if word.starts_with('-') {
        return None;
    }
    let at = args.iter().position(|a| a == "submit")?;
    let rest = &args[at + 1..];
    let from = rest.iter().position(|a| a == word)?;
    Some(format!(
        "tip: a command goes after --: skynet submit {}-- {}",
        rest[..from]
            .iter()
            .map(|a| format!("{a} "))
            .collect::<String>(),
        rest[from..].join(" ")
    ))
}

/// The command tree, for completions and the manual.
fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag and argument says what it is for in `--help`.
    #[test]
    fn every_flag_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") || arg.is_hide_set() {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.is_hide_set() || sub.get_name() == "help" {
                    continue;
                }
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (the command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&command(), "skynet", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }

    #[test]
    fn the_command_tree_is_consistent() {
        command().debug_assert();
    }
}
