//! The ingress's two durable consumers: job events (`SKYNET_EVENTS`, consumer `telegram`)
//! feed the conversations, and alerts (`SKYNET_ALERTS`, consumer `telegram-alerts`) go to
//! the approvers' chats, once per alert and chat.
//!
//! Each message is acknowledged only once it was fully handled, and handled again (after a
//! pause) while the trouble is passing; one interrupted by a shutdown is handed back at
//! once. So a restart resumes exactly where this one stopped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use futures::StreamExt;
use skynet_protocol::Event;
use skynet_protocol::alert::Alert;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::render;
use crate::telegram::SendError;

/// After this many failed tries a message is given up (logged) rather than blocking every
/// message behind it for ever.
const MAX_TRIES: u32 = 40;

/// How often a message being handled is reported as in progress, so its ack wait never runs
/// out while Telegram makes us wait. The ack wait is short (10 s) because a message handed
/// to a copy of the ingress that is going away (the server learns of it a moment late) only
/// comes back once it runs out.
const PROGRESS_EVERY: Duration = Duration::from_secs(3);

/// Handles `msg` with `handle` until it succeeds, then acknowledges it. Returns false when
/// shutting down: the message is then handed back (nak) for the next run to take at once.
async fn settle<F, Fut>(
    msg: &jetstream::Message,
    what: &str,
    shutdown: &CancellationToken,
    mut handle: F,
) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let work = async {
        let mut delay = Duration::from_millis(500);
        for attempt in 1..=MAX_TRIES {
            match handle().await {
                Ok(()) => return true,
                Err(_) if shutdown.is_cancelled() => return false,
                Err(e) if attempt == MAX_TRIES => {
                    tracing::error!(what, error = %e, "giving up on a message after {MAX_TRIES} tries");
                }
                Err(e) => {
                    tracing::warn!(what, error = %e, attempt, "handling a message; trying again");
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
        true
    };
    futures::pin_mut!(work);
    let mut progress =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    let done = loop {
        tokio::select! {
            done = &mut work => break done,
            _ = progress.tick() => {
                if let Err(e) = msg.ack_with(AckKind::Progress).await {
                    tracing::debug!(what, error = %e, "reporting progress");
                }
            }
        }
    };
    // Handed back with a short delay: at once, it could go straight back to this copy's own
    // pull request, which is about to go away.
    let ack = if done {
        AckKind::Ack
    } else {
        AckKind::Nak(Some(Duration::from_secs(1)))
    };
    if let Err(e) = msg.ack_with(ack).await {
        tracing::warn!(what, error = %e, "acknowledging a message");
    }
    done
}

/// A durable consumer, (re)created on demand.
pub struct Durable {
    pub js: jetstream::Context,
    pub stream: &'static str,
    pub config: jetstream::consumer::pull::Config,
}

impl Durable {
    async fn open(&self) -> anyhow::Result<jetstream::consumer::pull::Stream> {
        let name = self.config.durable_name.clone().unwrap_or_default();
        let consumer: PullConsumer = self
            .js
            .get_stream(self.stream)
            .await?
            .get_or_create_consumer(&name, self.config.clone())
            .await?;
        Ok(consumer
            .stream()
            .max_messages_per_batch(64)
            .heartbeat(Duration::from_millis(2500))
            .expires(Duration::from_secs(5))
            .messages()
            .await?)
    }

    /// Hands every message to `handle` in order until shutdown. When the consumer or its
    /// stream goes away (deleted, a server without its store), it is created again: the
    /// ingress never carries on deaf.
    async fn each<F, Fut>(&self, what: &str, shutdown: &CancellationToken, mut handle: F)
    where
        F: FnMut(jetstream::Message) -> Fut,
        Fut: Future<Output = bool>,
    {
        loop {
            let mut messages = match self.open().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(what, error = %e, "opening the consumer; trying again");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    n = messages.next() => n,
                };
                match next {
                    Some(Ok(msg)) => {
                        if !handle(msg).await {
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(what, error = %e, "consumer");
                    }
                    None => {
                        tracing::warn!(what, "the consumer ended; opening it again");
                        break;
                    }
                }
            }
        }
    }
}

/// Feeds every job event to the hub, in stream order, until shutdown.
pub async fn events(hub: Arc<Hub>, consumer: Durable, shutdown: CancellationToken) {
    consumer
        .each("events", &shutdown, |msg| {
            let hub = hub.clone();
            let shutdown = shutdown.clone();
            async move {
                let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
                let event: Event = match serde_json::from_slice(&msg.payload) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(seq, error = %e, "unreadable event skipped");
                        let _ = msg.ack().await;
                        return true;
                    }
                };
                settle(&msg, "event", &shutdown, || hub.on_event(seq, &event)).await
            }
        })
        .await;
}

/// Delivers every new alert to each approver's chat, once, until shutdown.
pub async fn alerts(hub: Arc<Hub>, consumer: Durable, shutdown: CancellationToken) {
    consumer
        .each("alerts", &shutdown, |msg| {
            let hub = hub.clone();
            let shutdown = shutdown.clone();
            async move {
                let alert: Alert = match serde_json::from_slice(&msg.payload) {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable alert skipped");
                        let _ = msg.ack().await;
                        return true;
                    }
                };
                settle(&msg, "alert", &shutdown, || deliver(&hub, &alert)).await
            }
        })
        .await;
}

/// Sends one alert to every approver's chat that has not had it yet.
async fn deliver(hub: &Hub, alert: &Alert) -> anyhow::Result<()> {
    let text = render::alert(alert);
    let chats: Vec<i64> = hub.access.approver_chats().collect();
    for chat in chats {
        if !hub.store.claim_alert(&alert.id, chat).await? {
            continue;
        }
        match hub.tg.send_html(chat, &text, None, None).await {
            Ok(_) => tracing::info!(alert = %alert.id, chat, "alert delivered"),
            Err(SendError::Refused(e)) => {
                // An approver who never opened a chat with the bot: nothing to retry.
                tracing::warn!(alert = %alert.id, chat, error = %e, "cannot deliver an alert");
            }
            Err(e) => {
                hub.store.release_alert(&alert.id, chat).await?;
                return Err(e.into());
            }
        }
    }
    Ok(())
}
