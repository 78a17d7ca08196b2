//! The ingress's durable memory: one conversation record per job in the `skynet-telegram`
//! bucket, and one key per delivered alert and chat in `skynet-telegram-alerts`.
//!
//! Records are changed with compare-and-set on their revision, so the update handlers and
//! the event follower never overwrite each other's changes.

use async_nats::jetstream::{
    self,
    kv::{self, CreateErrorKind, UpdateErrorKind},
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use skynet_protocol::{JobId, streams};

/// A message the bot sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRef {
    pub chat: i64,
    pub message: i32,
}

/// Where the message that closes a conversation stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalMark {
    #[default]
    None,
    /// Being sent: claimed before sending, so a restart never sends it a second time.
    Sending,
    Sent,
}

/// Everything about a job's conversation that must survive a restart. The rest (state,
/// plan, output) is read again from the event and log streams.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// The chat the job came from (`origin: telegram:<chat>`); `None` when only watchers
    /// follow it (a job from elsewhere that someone cancelled from a chat).
    #[serde(default)]
    pub chat: Option<i64>,
    /// The message that asked for the job, for the status message to answer.
    #[serde(default)]
    pub reply_to: Option<i32>,
    /// The job's status message in `chat`.
    #[serde(default)]
    pub status_message: Option<i32>,
    /// Approval requests sent to approvers' own chats.
    #[serde(default)]
    pub approvals: Vec<MessageRef>,
    /// Whether those requests were updated with the decision.
    #[serde(default)]
    pub approvals_closed: bool,
    /// Other chats that want to hear how the job ends.
    #[serde(default)]
    pub watchers: Vec<i64>,
    #[serde(default)]
    pub final_message: FinalMark,
}

impl Conversation {
    /// Every chat the final message goes to, once each.
    pub fn final_chats(&self) -> Vec<i64> {
        let mut chats: Vec<i64> = self.chat.into_iter().collect();
        for w in &self.watchers {
            if !chats.contains(w) {
                chats.push(*w);
            }
        }
        chats
    }
}

/// A record and the revision it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    pub conv: Conversation,
    pub revision: u64,
}

#[derive(Clone)]
pub struct Store {
    jobs: kv::Store,
    alerts: kv::Store,
}

impl Store {
    pub async fn open(js: &jetstream::Context) -> anyhow::Result<Self> {
        Ok(Self {
            jobs: js.get_key_value(streams::TELEGRAM_BUCKET).await?,
            alerts: js.get_key_value(streams::TELEGRAM_ALERTS_BUCKET).await?,
        })
    }

    /// The record of `job`, if there is one.
    pub async fn get(&self, job: &JobId) -> anyhow::Result<Option<Versioned>> {
        let Some(entry) = self.jobs.entry(streams::telegram_job_key(job)).await? else {
            return Ok(None);
        };
        if matches!(
            entry.operation,
            kv::Operation::Delete | kv::Operation::Purge
        ) {
            return Ok(None);
        }
        let conv = serde_json::from_slice(&entry.value).unwrap_or_else(|e| {
            tracing::warn!(job_id = %job, error = %e, "unreadable conversation record; starting afresh");
            Conversation::default()
        });
        Ok(Some(Versioned {
            conv,
            revision: entry.revision,
        }))
    }

    /// Changes `job`'s record with `change` (which returns whether it changed anything),
    /// creating it first when `create` is set. Returns the record as stored afterwards, or
    /// `None` when there is none and `create` is not set.
    pub async fn update(
        &self,
        job: &JobId,
        create: bool,
        mut change: impl FnMut(&mut Conversation) -> bool,
    ) -> anyhow::Result<Option<Versioned>> {
        let key = streams::telegram_job_key(job);
        for _ in 0..16 {
            let current = self.get(job).await?;
            let (mut conv, revision) = match current {
                Some(v) => (v.conv, Some(v.revision)),
                None if create => (Conversation::default(), None),
                None => return Ok(None),
            };
            let changed = change(&mut conv);
            if !changed && let Some(revision) = revision {
                return Ok(Some(Versioned { conv, revision }));
            }
            let body = serde_json::to_vec(&conv)?;
            let written = match revision {
                Some(rev) => match self.jobs.update(&key, body.into(), rev).await {
                    Ok(r) => Some(r),
                    Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => None,
                    Err(e) => return Err(e.into()),
                },
                None => match self.jobs.create(&key, body.into()).await {
                    Ok(r) => Some(r),
                    Err(e) if e.kind() == CreateErrorKind::AlreadyExists => None,
                    Err(e) => return Err(e.into()),
                },
            };
            if let Some(revision) = written {
                return Ok(Some(Versioned { conv, revision }));
            }
            // Someone else changed it in between: read again and re-apply.
        }
        anyhow::bail!("the conversation record of {job} keeps changing")
    }

    /// Forgets `job`'s conversation.
    pub async fn remove(&self, job: &JobId) -> anyhow::Result<()> {
        self.jobs.purge(streams::telegram_job_key(job)).await?;
        Ok(())
    }

    /// Every job that has a record.
    pub async fn jobs(&self) -> anyhow::Result<Vec<JobId>> {
        let mut keys = self.jobs.keys().await?;
        let mut out = Vec::new();
        while let Some(key) = keys.next().await {
            match JobId::parse(&key?) {
                Ok(id) => out.push(id),
                Err(e) => tracing::warn!(error = %e, "foreign key in the conversation bucket"),
            }
        }
        Ok(out)
    }

    /// Claims the delivery of alert `id` to `chat`: true for the first caller only.
    pub async fn claim_alert(&self, id: &str, chat: i64) -> anyhow::Result<bool> {
        let key = streams::telegram_alert_key(id, chat);
        match self
            .alerts
            .create(&key, skynet_protocol::time::now().into())
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives a claim back after a delivery that certainly failed, so it is tried again.
    pub async fn release_alert(&self, id: &str, chat: i64) -> anyhow::Result<()> {
        self.alerts
            .purge(streams::telegram_alert_key(id, chat))
            .await?;
        Ok(())
    }
}
