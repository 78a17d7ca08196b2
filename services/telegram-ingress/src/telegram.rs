//! Talking to the Bot API through teloxide: HTML messages, edits, buttons, documents and
//! callback answers, with Telegram's flood control (429 `retry_after`) honoured.

use std::future::{Future, IntoFuture};
use std::time::Duration;

use teloxide::prelude::*;
use teloxide::types::{
    CallbackQueryId, ChatId, InlineKeyboardMarkup, InputFile, MessageId, ParseMode, ReplyParameters,
};
use teloxide::{ApiError, RequestError};
use tokio_util::sync::CancellationToken;

use crate::html::{Doc, MAX_MESSAGE};

/// Why a message could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The ingress is stopping; nothing was sent.
    #[error("shutting down")]
    Shutdown,
    /// Telegram refused it for good (a chat the bot cannot write to, a blocked bot, a
    /// malformed request): trying again would not help.
    #[error("Telegram refused: {0}")]
    Refused(String),
    /// Telegram could not be reached, or kept asking to wait: try again later.
    #[error("Telegram unavailable: {0}")]
    Unavailable(String),
}

/// How often a request is tried before it counts as unavailable.
const ATTEMPTS: u32 = 6;
/// The longest flood-control wait honoured in place; longer ones count as unavailable.
const MAX_WAIT: Duration = Duration::from_secs(120);

/// The bot, as the rest of the ingress uses it.
#[derive(Clone)]
pub struct Telegram {
    pub bot: Bot,
    shutdown: CancellationToken,
}

fn chat(id: i64) -> ChatId {
    ChatId(id)
}

fn reply(to: Option<i32>) -> Option<ReplyParameters> {
    to.map(|m| ReplyParameters::new(MessageId(m)).allow_sending_without_reply())
}

/// True for an edit that changed nothing because the message already says it.
pub fn not_modified(e: &RequestError) -> bool {
    matches!(e, RequestError::Api(ApiError::MessageNotModified))
}

impl Telegram {
    pub fn new(bot: Bot, shutdown: CancellationToken) -> Self {
        Self { bot, shutdown }
    }

    async fn pause(&self, d: Duration) -> Result<(), SendError> {
        tokio::select! {
            _ = self.shutdown.cancelled() => Err(SendError::Shutdown),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }

    /// Runs `request` until it succeeds, waiting out flood control and network trouble.
    async fn retrying<T, F, Fut>(&self, what: &str, mut request: F) -> Result<T, SendError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RequestError>>,
    {
        let mut backoff = Duration::from_millis(500);
        for attempt in 1..=ATTEMPTS {
            if self.shutdown.is_cancelled() {
                return Err(SendError::Shutdown);
            }
            match request().await {
                Ok(v) => return Ok(v),
                Err(RequestError::RetryAfter(s)) => {
                    let wait = s.duration();
                    tracing::info!(what, wait_s = s.seconds(), "Telegram asks to wait (429)");
                    if wait > MAX_WAIT || attempt == ATTEMPTS {
                        return Err(SendError::Unavailable(format!(
                            "flood control: retry after {} s",
                            s.seconds()
                        )));
                    }
                    self.pause(wait).await?;
                }
                Err(RequestError::Network(e)) => {
                    tracing::warn!(what, error = %e, attempt, "cannot reach Telegram");
                    if attempt == ATTEMPTS {
                        return Err(SendError::Unavailable(e.to_string()));
                    }
                    self.pause(backoff).await?;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(e) => return Err(SendError::Refused(e.to_string())),
            }
        }
        Err(SendError::Unavailable(format!("{what}: gave up")))
    }

    /// Sends one HTML message (at most [`MAX_MESSAGE`] characters); returns its id.
    pub async fn send_html(
        &self,
        chat_id: i64,
        html: &str,
        buttons: Option<InlineKeyboardMarkup>,
        reply_to: Option<i32>,
    ) -> Result<i32, SendError> {
        let msg = self
            .retrying("sendMessage", || {
                let mut req = self
                    .bot
                    .send_message(chat(chat_id), html.to_owned())
                    .parse_mode(ParseMode::Html);
                if let Some(b) = &buttons {
                    req = req.reply_markup(b.clone());
                }
                if let Some(r) = reply(reply_to) {
                    req = req.reply_parameters(r);
                }
                req.into_future()
            })
            .await?;
        Ok(msg.id.0)
    }

    /// Sends a document of any length, split over as many messages as it takes.
    pub async fn send_doc(
        &self,
        chat_id: i64,
        doc: &Doc,
        reply_to: Option<i32>,
    ) -> Result<(), SendError> {
        for (i, part) in doc.split(MAX_MESSAGE).iter().enumerate() {
            let to = if i == 0 { reply_to } else { None };
            self.send_html(chat_id, part, None, to).await?;
        }
        Ok(())
    }

    /// One attempt at editing a message; the caller decides what a failure means.
    pub async fn edit_once(
        &self,
        chat_id: i64,
        message: i32,
        html: &str,
        buttons: Option<InlineKeyboardMarkup>,
    ) -> Result<(), RequestError> {
        let mut req = self
            .bot
            .edit_message_text(chat(chat_id), MessageId(message), html.to_owned())
            .parse_mode(ParseMode::Html);
        if let Some(b) = buttons {
            req = req.reply_markup(b);
        }
        req.await.map(|_| ())
    }

    /// Edits a message, waiting out flood control. An edit that changes nothing succeeds.
    pub async fn edit(
        &self,
        chat_id: i64,
        message: i32,
        html: &str,
        buttons: Option<InlineKeyboardMarkup>,
    ) -> Result<(), SendError> {
        self.retrying("editMessageText", || {
            let buttons = buttons.clone();
            async move {
                match self.edit_once(chat_id, message, html, buttons).await {
                    Err(e) if not_modified(&e) => Ok(()),
                    other => other,
                }
            }
        })
        .await
    }

    /// Answers a button press (the small notice the presser sees).
    pub async fn answer(&self, callback_id: &str, text: &str, alert: bool) {
        let result = self
            .retrying("answerCallbackQuery", || {
                self.bot
                    .answer_callback_query(CallbackQueryId(callback_id.to_owned()))
                    .text(text.to_owned())
                    .show_alert(alert)
                    .into_future()
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not answer a button press");
        }
    }

    /// Sends `bytes` as a file with an HTML caption.
    pub async fn send_document(
        &self,
        chat_id: i64,
        file_name: &str,
        bytes: bytes::Bytes,
        caption: &str,
        reply_to: Option<i32>,
    ) -> Result<i32, SendError> {
        let msg = self
            .retrying("sendDocument", || {
                let file = InputFile::memory(bytes.clone()).file_name(file_name.to_owned());
                let mut req = self
                    .bot
                    .send_document(chat(chat_id), file)
                    .caption(caption.to_owned())
                    .parse_mode(ParseMode::Html);
                if let Some(r) = reply(reply_to) {
                    req = req.reply_parameters(r);
                }
                req.into_future()
            })
            .await?;
        Ok(msg.id.0)
    }
}
