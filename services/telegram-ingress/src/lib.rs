//! skynet-telegram: run, watch, approve and cancel SKYNET jobs from a Telegram chat.
//!
//! Long-polls the Bot API with teloxide (the base URL is configurable, so tests talk to a
//! local fake) and registers its commands with `setMyCommands`. Only allowed users may
//! create or control jobs and only approvers may decide them; anyone else is refused, logged
//! with their user id, and causes nothing.
//!
//! NATS, as a client of the rest of SKYNET:
//! - calls the `skynet` service: `skynet.api.jobs.submit` (`/run` and plain text, with
//!   `requested_by: telegram:<user_id>` and `origin: telegram:<chat_id>`), `jobs.get`,
//!   `jobs.list`, `jobs.cancel`, `jobs.approve`/`jobs.deny` (with the plan hash the person
//!   saw), `jobs.logs` and `workers.list`;
//! - reads `skynet.events.>` (stream `SKYNET_EVENTS`) with the durable consumer `telegram`,
//!   so every job whose origin is a chat gets one status message kept up to date and,
//!   exactly once, a final message;
//! - reads `skynet.logs.<job>` (stream `SKYNET_LOGS`) for the live tail of those jobs;
//! - reads `skynet.alerts` (stream `SKYNET_ALERTS`) with the durable consumer
//!   `telegram-alerts` and tells the approvers, once per alert;
//! - keeps each conversation in the key-value bucket `skynet-telegram` and the delivered
//!   alerts in `skynet-telegram-alerts`, so nothing lives only in memory: a restarted
//!   ingress carries on with the jobs in flight.

mod access;
mod commands;
mod follow;
mod html;
mod hub;
mod job;
mod render;
mod schedules;
mod store;
mod telegram;
mod updates;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream;
use skynet_protocol::streams;
use skynet_runtime::events::EventLog;
use skynet_runtime::setup::{Existing, ensure_all, retention_from_env};
use skynet_runtime::{ConfigError, Shutdown};
use teloxide::prelude::*;
use teloxide::types::BotCommand;
use teloxide::{ApiError, RequestError};
use tokio_util::sync::CancellationToken;

use crate::access::Access;
use crate::hub::{Hub, Pace};
use crate::store::Store;
use crate::telegram::Telegram;
use crate::updates::{Handler, Me};

/// `requested_by` and `origin` values start with this.
pub const TELEGRAM_PREFIX: &str = "telegram:";

/// The bot token. Its `Debug` never shows it.
#[derive(Clone)]
pub struct BotToken(String);

impl BotToken {
    /// Checks the shape BotFather gives tokens (`123456:ABC-def_...`): anything else would
    /// end up inside a URL path.
    pub fn parse(flag: &str, token: &str) -> Result<Self, ConfigError> {
        let token = token.trim();
        let valid = token.split_once(':').is_some_and(|(id, secret)| {
            !id.is_empty()
                && id.chars().all(|c| c.is_ascii_digit())
                && !secret.is_empty()
                && secret
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
        if !valid {
            return Err(ConfigError::new(
                flag,
                "not a bot token (BotFather gives tokens like 123456789:AAH...)",
            ));
        }
        Ok(Self(token.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for BotToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BotToken(<redacted>)")
    }
}

/// Parses a comma-separated list of Telegram user ids.
pub fn parse_users(flag: &str, list: &str) -> Result<BTreeSet<u64>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u64>().map_err(|_| {
                ConfigError::new(
                    flag,
                    format!("{s:?} is not a Telegram user id (a whole number)"),
                )
            })
        })
        .collect()
}

/// Settings of the ingress.
#[derive(Debug, Clone)]
pub struct Config {
    pub token: BotToken,
    /// The Bot API base URL (`https://api.telegram.org` when `None`).
    pub api_url: Option<String>,
    /// Who may create and control jobs (empty: nobody).
    pub allowed_users: BTreeSet<u64>,
    /// Who may approve and deny jobs.
    pub approvers: BTreeSet<u64>,
    /// Least time between two edits in one chat (Telegram allows about one a second).
    pub edit_interval: Duration,
    /// How long one `getUpdates` waits for news.
    pub poll_timeout: Duration,
    /// Lines of output a status message shows.
    pub tail_lines: usize,
    /// How often a running job's status is refreshed when nothing else changes.
    pub heartbeat: Duration,
    /// The ingress's own NATS key (its `--nats-seed`): it signs each approver's decision,
    /// naming the Telegram user, so policy records who decided. None without identities.
    pub signer: Option<std::sync::Arc<nkeys::KeyPair>>,
}

impl Config {
    /// A configuration with the usual pacing; `approvers` defaults to the allowed users.
    pub fn new(
        token: BotToken,
        allowed_users: BTreeSet<u64>,
        approvers: Option<BTreeSet<u64>>,
    ) -> Self {
        Self {
            token,
            api_url: None,
            approvers: approvers.unwrap_or_else(|| allowed_users.clone()),
            allowed_users,
            edit_interval: Duration::from_secs(2),
            poll_timeout: Duration::from_secs(10),
            tail_lines: 15,
            heartbeat: Duration::from_secs(15),
            signer: None,
        }
    }

    /// The teloxide bot for this configuration.
    pub fn bot(&self) -> Result<Bot, anyhow::Error> {
        // The HTTP timeout must outlast a long poll.
        let client = teloxide::net::default_reqwest_settings()
            .timeout(self.poll_timeout + Duration::from_secs(10))
            .build()?;
        let bot = Bot::with_client(self.token.expose(), client);
        Ok(match &self.api_url {
            Some(url) => {
                let parsed = reqwest::Url::parse(url.trim_end_matches('/')).map_err(|e| {
                    ConfigError::new("TELOXIDE_API_URL", format!("{url:?} is not a URL: {e}"))
                })?;
                if parsed.cannot_be_a_base() {
                    return Err(ConfigError::new(
                        "--api-url",
                        format!("{url:?} is not an http(s) URL"),
                    )
                    .into());
                }
                bot.set_api_url(parsed)
            }
            None => bot,
        })
    }
}

/// The configuration from its outside form (flags or environment): the token (`token`,
/// else `TELOXIDE_TOKEN`), the Bot API URL, and the two user lists. Errors name the
/// variable to fix.
pub fn config_from(
    token: Option<&str>,
    api_url: Option<&str>,
    allowed_users: &str,
    approvers: Option<&str>,
) -> Result<Config, ConfigError> {
    let token = match token.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => BotToken::parse("TELEGRAM_BOT_TOKEN", t)?,
        None => match std::env::var("TELOXIDE_TOKEN") {
            Ok(t) if !t.trim().is_empty() => BotToken::parse("TELOXIDE_TOKEN", &t)?,
            _ => {
                return Err(ConfigError::new(
                    "TELEGRAM_BOT_TOKEN",
                    "no bot token: set TELEGRAM_BOT_TOKEN (or TELOXIDE_TOKEN, or --token) to the token BotFather gave you",
                ));
            }
        },
    };
    let allowed = parse_users("SKYNET_TELEGRAM_ALLOWED_USERS", allowed_users)?;
    let approvers = match approvers.map(str::trim) {
        Some(list) if !list.is_empty() => Some(parse_users("SKYNET_TELEGRAM_APPROVERS", list)?),
        _ => None,
    };
    let mut config = Config::new(token, allowed, approvers);
    config.api_url = api_url
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned);
    // Fails now, before anything connects, on a URL that cannot work.
    let _checked = config
        .bot()
        .map_err(|e| match e.downcast::<ConfigError>() {
            Ok(c) => c,
            Err(e) => ConfigError::new("TELOXIDE_API_URL", e.to_string()),
        })?;
    Ok(config)
}

/// The configuration from the environment when a bot token is set (`TELEGRAM_BOT_TOKEN` or
/// `TELOXIDE_TOKEN`), for `skynet up`; `None` without a token.
pub fn config_from_env() -> Result<Option<Config>, ConfigError> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let token = var("TELEGRAM_BOT_TOKEN");
    if token.is_none() && var("TELOXIDE_TOKEN").is_none() {
        return Ok(None);
    }
    config_from(
        token.as_deref(),
        var("TELOXIDE_API_URL").as_deref(),
        &var("SKYNET_TELEGRAM_ALLOWED_USERS").unwrap_or_default(),
        var("SKYNET_TELEGRAM_APPROVERS").as_deref(),
    )
    .map(Some)
}

/// Asks Telegram who the bot is, waiting for it to be reachable. A token Telegram refuses
/// is a configuration error.
async fn who_am_i(bot: &Bot, shutdown: &CancellationToken) -> anyhow::Result<Option<Me>> {
    let mut delay = Duration::from_millis(500);
    loop {
        match bot.get_me().await {
            Ok(me) => {
                return Ok(Some(Me {
                    id: me.user.id.0,
                    username: me.user.username.clone(),
                }));
            }
            Err(RequestError::Api(ApiError::InvalidToken)) => {
                return Err(ConfigError::new(
                    "TELEGRAM_BOT_TOKEN",
                    "Telegram does not accept this bot token",
                )
                .into());
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach Telegram yet");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Registers the command list people see when they type `/` (best effort: the bot works
/// without it).
async fn register_commands(tg: &Telegram, shutdown: &CancellationToken) {
    let list: Vec<BotCommand> = commands::LIST
        .iter()
        .map(|(c, d)| BotCommand::new(*c, *d))
        .collect();
    for attempt in 1..=3u32 {
        let wait = match tg.bot.set_my_commands(list.clone()).await {
            Ok(_) => return,
            Err(RequestError::RetryAfter(s)) => s.duration(),
            Err(e) => {
                tracing::warn!(error = %e, attempt, "registering the command list");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Runs the ingress until `shutdown` is cancelled.
pub async fn run(config: Config, nats: Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    let bot = config.bot()?;
    let access = Arc::new(Access::new(
        config.allowed_users.clone(),
        config.approvers.clone(),
    ));
    if access.nobody_allowed() {
        tracing::warn!(
            "SKYNET_TELEGRAM_ALLOWED_USERS is empty: the bot will refuse everyone (it tells each person their user id)"
        );
    }
    let js = jetstream::new(nats.clone());
    ensure_all(&js, &retention_from_env()?, Existing::Keep).await?;
    let store = Store::open(&js).await?;
    let log = EventLog::open(js.clone()).await?;
    // Created now, before anyone can submit from a chat, so no event of theirs is missed.
    let events_consumer = follow::Durable {
        js: js.clone(),
        stream: streams::EVENTS,
        config: streams::telegram_events_consumer(),
    };
    let alerts_consumer = follow::Durable {
        js: js.clone(),
        stream: streams::ALERTS,
        config: streams::telegram_alerts_consumer(),
    };
    for durable in [&events_consumer, &alerts_consumer] {
        js.get_stream(durable.stream)
            .await?
            .get_or_create_consumer(
                durable.config.durable_name.as_deref().unwrap_or_default(),
                durable.config.clone(),
            )
            .await?;
    }

    let Some(me) = who_am_i(&bot, &shutdown).await? else {
        return Ok(());
    };
    tracing::info!(bot_id = me.id, username = ?me.username, "Telegram bot");
    let tasks = Shutdown::new(shutdown.clone());
    let tg = Telegram::new(bot, shutdown.clone());
    register_commands(&tg, &shutdown).await;

    let hub = Arc::new(Hub::new(
        tg,
        store,
        access,
        js,
        log,
        Pace {
            edit_interval: config.edit_interval,
            heartbeat: config.heartbeat,
            tail_lines: config.tail_lines,
            tail_wait: Duration::from_secs(10),
        },
        &tasks,
    ));
    hub.restore().await?;
    if shutdown.is_cancelled() {
        tasks.drain(Duration::from_secs(10)).await;
        return Ok(());
    }
    tasks.tasks.spawn(hub.clone().render_loop());
    tasks.tasks.spawn(follow::events(
        hub.clone(),
        events_consumer,
        shutdown.clone(),
    ));
    tasks.tasks.spawn(follow::alerts(
        hub.clone(),
        alerts_consumer,
        shutdown.clone(),
    ));

    Handler::new(hub, nats.clone(), me, config.signer.clone())
        .poll(config.poll_timeout, shutdown.clone())
        .await;
    tasks.drain(Duration::from_secs(10)).await;
    // Until the server sees this connection go, it may still hand messages to its pull
    // requests, where they wait out the ack wait before the next copy can have them:
    // closing it now keeps that window short.
    if let Err(e) = nats.drain().await {
        tracing::debug!(error = %e, "draining the connection");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_and_never_shown() {
        let t = BotToken::parse("TELEGRAM_BOT_TOKEN", " 123456:AAH-x_y ").unwrap();
        assert_eq!(t.expose(), "123456:AAH-x_y");
        assert!(!format!("{t:?}").contains("AAH"));
        let config = Config::new(t, BTreeSet::new(), None);
        assert!(!format!("{config:?}").contains("AAH"));
        for bad in [
            "", "abc", "123456:", ":abc", "12x:abc", "123:a/b", "123:a b",
        ] {
            let e = BotToken::parse("TELEGRAM_BOT_TOKEN", bad).unwrap_err();
            assert_eq!(e.flag, "TELEGRAM_BOT_TOKEN");
        }
    }

    #[test]
    fn user_lists_parse_and_approvers_default_to_the_allowed() {
        let users = parse_users("SKYNET_TELEGRAM_ALLOWED_USERS", " 1, 22 ,,333").unwrap();
        assert_eq!(users, [1, 22, 333].into());
        assert!(parse_users("x", "").unwrap().is_empty());
        let e = parse_users("SKYNET_TELEGRAM_APPROVERS", "1,bob").unwrap_err();
        assert_eq!(e.flag, "SKYNET_TELEGRAM_APPROVERS");
        assert!(e.message.contains("bob"));
        assert!(parse_users("x", "-5").is_err());
        let token = BotToken::parse("t", "1:a").unwrap();
        let c = Config::new(token.clone(), users.clone(), None);
        assert_eq!(c.approvers, users);
        let c = Config::new(token, users, Some([9].into()));
        assert_eq!(c.approvers, [9].into());
    }

    #[test]
    fn the_api_url_must_be_a_url() {
        let token = BotToken::parse("t", "1:a").unwrap();
        let mut c = Config::new(token, BTreeSet::new(), None);
        c.api_url = Some("http://127.0.0.1:8081/".into());
        assert_eq!(
            c.bot().unwrap().api_url().as_str(),
            "http://127.0.0.1:8081/"
        );
        c.api_url = Some("not a url".into());
        let e = c.bot().unwrap_err();
        assert_eq!(
            e.downcast_ref::<ConfigError>().unwrap().flag,
            "TELOXIDE_API_URL"
        );
    }
}
