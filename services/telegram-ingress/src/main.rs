//! `skynet-telegram`: the Telegram ingress. Parses flags, then runs
//! [`skynet_telegram_ingress::run`].

use std::process::ExitCode;

use clap::Parser;
use skynet_runtime::{CommonArgs, ConfigError, parse_args};
use skynet_telegram_ingress::{Config, config_from};

/// SKYNET's Telegram bot: run, watch, approve and cancel jobs from a chat.
#[derive(Debug, Parser)]
#[command(name = "skynet-telegram", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// The bot token from BotFather (TELOXIDE_TOKEN is read too when this is not set).
    #[arg(long = "token", env = "TELEGRAM_BOT_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// The Bot API base URL (a local Bot API server, or a fake in tests).
    #[arg(long = "api-url", env = "TELOXIDE_API_URL")]
    api_url: Option<String>,

    /// Telegram user ids allowed to create and control jobs, comma-separated; empty means
    /// nobody.
    #[arg(
        long = "allowed-users",
        env = "SKYNET_TELEGRAM_ALLOWED_USERS",
        default_value = ""
    )]
    allowed_users: String,

    /// Telegram user ids who may approve and deny jobs, comma-separated (default: the
    /// allowed users).
    #[arg(long = "approvers", env = "SKYNET_TELEGRAM_APPROVERS")]
    approvers: Option<String>,
}

fn config(args: &Args) -> Result<Config, ConfigError> {
    config_from(
        args.token.as_deref(),
        args.api_url.as_deref(),
        &args.allowed_users,
        args.approvers.as_deref(),
    )
}

fn main() -> ExitCode {
    let args: Args = parse_args();
    let config = match config(&args).and_then(|mut c| {
        if let Some(seed) = &args.common.nats.seed {
            let key = skynet_runtime::args::read_seed(seed, "--nats-seed")?.key_pair()?;
            c.signer = Some(std::sync::Arc::new(key));
        }
        Ok(c)
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skynet-telegram: {e}");
            return ExitCode::from(skynet_runtime::EXIT_CONFIG);
        }
    };
    skynet_runtime::service::main_service("skynet-telegram", &args.common, |client, shutdown| {
        skynet_telegram_ingress::run(config.clone(), client, shutdown)
    })
}
