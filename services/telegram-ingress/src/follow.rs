//! The ingress's two durable consumers: job events (`SKYNET_EVENTS`, consumer `telegram`)
//! feed the conversations, and alerts (`SKYNET_ALERTS`, consumer `telegram-alerts`) go to
//! the approvers' chats, once per alert and chat.
//!
//! Each message is acknowledged only once it was fully handled, and handled again (after a
//! pause) while the trouble is passing, so a restart resumes exactly where this one stopped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
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

/// Handles `msg` with `handle` until it succeeds, then acknowledges it. Returns false when
/// shutting down (the message stays unacknowledged and comes back after a restart).
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
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=MAX_TRIES {
        match handle().await {
            Ok(()) => break,
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
    if let Err(e) = msg.ack().await {
        tracing::warn!(what, error = %e, "acknowledging a message");
    }
    true
}

async fn messages(
    consumer: &PullConsumer,
) -> anyhow::Result<async_nats::jetstream::consumer::pull::Stream> {
    Ok(consumer
        .stream()
        .max_messages_per_batch(64)
        .heartbeat(Duration::from_millis(2500))
        .expires(Duration::from_secs(5))
        .messages()
        .await?)
}

/// Feeds every job event to the hub, in stream order, until shutdown.
pub async fn events(hub: Arc<Hub>, consumer: PullConsumer, shutdown: CancellationToken) {
    let mut stream = loop {
        match messages(&consumer).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(error = %e, "opening the event consumer");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            n = stream.next() => n,
        };
        let msg = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "event consumer");
                continue;
            }
            None => {
                tracing::error!("the event consumer ended");
                return;
            }
        };
        let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
        let event: Event = match serde_json::from_slice(&msg.payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(seq, error = %e, "unreadable event skipped");
                let _ = msg.ack().await;
                continue;
            }
        };
        let done = settle(&msg, "event", &shutdown, || hub.on_event(seq, &event)).await;
        if !done {
            return;
        }
    }
}

/// Delivers every new alert to each approver's chat, once, until shutdown.
pub async fn alerts(hub: Arc<Hub>, consumer: PullConsumer, shutdown: CancellationToken) {
    let mut stream = loop {
        match messages(&consumer).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(error = %e, "opening the alert consumer");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            n = stream.next() => n,
        };
        let msg = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "alert consumer");
                continue;
            }
            None => {
                tracing::error!("the alert consumer ended");
                return;
            }
        };
        let alert: Alert = match serde_json::from_slice(&msg.payload) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable alert skipped");
                let _ = msg.ack().await;
                continue;
            }
        };
        let done = settle(&msg, "alert", &shutdown, || deliver(&hub, &alert)).await;
        if !done {
            return;
        }
    }
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
