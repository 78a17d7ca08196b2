//! The conversations of jobs in flight.
//!
//! Each job with a Telegram origin (or a chat watching it) has a conversation record in the
//! `skynet-telegram` bucket and, while the ingress runs, a [`Live`] entry here: its events
//! folded into a [`JobStatus`], the tail of its output, and which version of it the status
//! message shows. Everything the conversation needs is brought about by [`Hub::reconcile`],
//! which compares what the job is with what the chat has been told, so replaying an event,
//! restarting, or reconciling twice sends nothing twice.
//!
//! Status messages are edited by one renderer task, at most once per `edit_interval` in each
//! chat, and not before a 429's `retry_after` has passed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_nats::jetstream::{self, stream::DirectGetErrorKind};
use futures::StreamExt;
use skynet_protocol::{Event, EventKind, JobId, JobState, streams, subjects};
use skynet_runtime::Shutdown;
use skynet_runtime::events::EventLog;
use teloxide::{ApiError, RequestError};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access::Access;
use crate::job::{JobStatus, Tail};
use crate::render;
use crate::store::{FinalMark, MessageRef, Store, Versioned};
use crate::telegram::{SendError, Telegram, not_modified};

/// How the hub paces itself.
#[derive(Debug, Clone)]
pub struct Pace {
    /// Least time between two edits in one chat.
    pub edit_interval: Duration,
    /// How often a running job's message is refreshed without news (its elapsed time moves).
    pub heartbeat: Duration,
    pub tail_lines: usize,
    /// How long the final message waits for the last of the output to arrive.
    pub tail_wait: Duration,
}

/// One job the ingress is talking about.
struct Live {
    status: JobStatus,
    conv: Versioned,
    tail: Arc<Mutex<Tail>>,
    tail_seq: watch::Sender<u64>,
    tail_stop: Option<CancellationToken>,
    /// Bumped by every change the status message should show.
    version: u64,
    /// The version the status message shows.
    shown: u64,
    /// Since when it shows less than there is.
    pending_since: Option<Instant>,
    /// The status message cannot be sent or edited (deleted, chat gone): stop trying.
    status_failed: bool,
    /// The final message is handled and the output complete: once the status message
    /// shows the last version, the conversation is over.
    final_done: bool,
    last_heartbeat: Instant,
}

impl Live {
    fn new(status: JobStatus, conv: Versioned, tail_lines: usize) -> Self {
        Self {
            status,
            conv,
            tail: Arc::new(Mutex::new(Tail::new(tail_lines))),
            tail_seq: watch::Sender::new(0),
            tail_stop: None,
            version: 1,
            shown: 0,
            pending_since: Some(Instant::now()),
            status_failed: false,
            final_done: false,
            last_heartbeat: Instant::now(),
        }
    }

    fn bump(&mut self) {
        self.version += 1;
        self.pending_since.get_or_insert_with(Instant::now);
    }

    fn tail_lines(&self) -> Vec<String> {
        lock(&self.tail).lines()
    }
}

#[derive(Default)]
struct State {
    jobs: HashMap<JobId, Live>,
    /// When each chat may see its next edit.
    next_edit: HashMap<i64, Instant>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps half-changed in a way that
    // matters more than stopping would; carry on with them.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `telegram:<chat_id>` → the chat id.
pub fn telegram_chat(origin: Option<&str>) -> Option<i64> {
    origin?.strip_prefix(crate::TELEGRAM_PREFIX)?.parse().ok()
}

pub struct Hub {
    pub tg: Telegram,
    pub store: Store,
    pub access: Arc<Access>,
    js: jetstream::Context,
    log: EventLog,
    pace: Pace,
    state: Mutex<State>,
    wake: Notify,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Hub {
    pub fn new(
        tg: Telegram,
        store: Store,
        access: Arc<Access>,
        js: jetstream::Context,
        log: EventLog,
        pace: Pace,
        shutdown: &Shutdown,
    ) -> Self {
        Self {
            tg,
            store,
            access,
            js,
            log,
            pace,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            tasks: shutdown.tasks.clone(),
            shutdown: shutdown.token.clone(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Marks the job's status message as behind.
    fn touch(&self, job: &JobId) {
        if let Some(live) = self.state().jobs.get_mut(job) {
            live.bump();
        }
        self.wake.notify_one();
    }

    /// Takes a newer copy of a job's record.
    fn set_conv(&self, job: &JobId, v: Versioned) {
        if let Some(live) = self.state().jobs.get_mut(job)
            && v.revision > live.conv.revision
        {
            live.conv = v;
        }
    }

    /// The plan hash of a job the hub follows.
    pub fn plan_hash(&self, job: &JobId) -> Option<String> {
        self.state()
            .jobs
            .get(job)
            .and_then(|l| l.status.plan_hash.clone())
    }

    /// Records where a job about to be submitted from `chat` should be talked about, before
    /// it exists, so its first event already finds the conversation.
    pub async fn prepare(&self, job: &JobId, chat: i64, reply_to: i32) -> anyhow::Result<()> {
        self.store
            .update(job, true, |c| {
                let changed = c.chat != Some(chat) || c.reply_to != Some(reply_to);
                c.chat = Some(chat);
                c.reply_to = Some(reply_to);
                changed
            })
            .await?;
        Ok(())
    }

    /// Forgets a conversation prepared for a job that was never submitted.
    pub async fn unprepare(&self, job: &JobId) {
        if let Err(e) = self.store.remove(job).await {
            tracing::warn!(job_id = %job, error = %e, "removing a conversation record");
        }
    }

    /// Makes `chat` hear how `job` ends (a `/cancel` from a chat the job did not come
    /// from). Returns false when the chat hears it anyway.
    pub async fn watch(&self, job: &JobId, chat: i64) -> anyhow::Result<bool> {
        let mut added = false;
        let v = self
            .store
            .update(job, true, |c| {
                if c.chat == Some(chat) || c.watchers.contains(&chat) {
                    return false;
                }
                c.watchers.push(chat);
                added = true;
                true
            })
            .await?;
        if let Some(v) = v {
            self.set_conv(job, v);
        }
        Ok(added)
    }

    /// Undoes [`Hub::watch`] after a cancel that did not go through.
    pub async fn unwatch(&self, job: &JobId, chat: i64) -> anyhow::Result<()> {
        let v = self
            .store
            .update(job, false, |c| {
                let before = c.watchers.len();
                c.watchers.retain(|w| *w != chat);
                c.watchers.len() != before
            })
            .await?;
        if let Some(v) = &v
            && v.conv.chat.is_none()
            && v.conv.watchers.is_empty()
            && !self.state().jobs.contains_key(job)
        {
            self.store.remove(job).await?;
        }
        if let Some(v) = v {
            self.set_conv(job, v);
        }
        Ok(())
    }

    /// Takes in one event from `SKYNET_EVENTS` (at stream position `seq`). Errors are
    /// passing trouble (NATS, Telegram unreachable): the caller tries the event again.
    pub async fn on_event(self: &Arc<Self>, seq: u64, event: &Event) -> anyhow::Result<()> {
        let job = &event.job_id;
        let known = {
            let mut st = self.state();
            match st.jobs.get_mut(job) {
                Some(live) => {
                    let before = live.status.clone();
                    live.status.apply(seq, event);
                    if live.status != before {
                        live.bump();
                    }
                    true
                }
                None => false,
            }
        };
        if !known {
            let conv = match &event.kind {
                EventKind::Received { request } => match telegram_chat(request.origin.as_deref()) {
                    Some(chat) => {
                        self.store
                            .update(job, true, |c| {
                                if c.chat.is_some() {
                                    return false;
                                }
                                c.chat = Some(chat);
                                true
                            })
                            .await?
                    }
                    None => self.store.get(job).await?,
                },
                _ => self.store.get(job).await?,
            };
            let Some(conv) = conv else {
                return Ok(());
            };
            if !self.load(job, conv).await? {
                return Ok(());
            }
        }
        self.wake.notify_one();
        self.reconcile(job).await
    }

    /// Starts following a job that has a record: its history is folded from the event
    /// stream. Returns false (and forgets the record) when the job has no events at all.
    async fn load(self: &Arc<Self>, job: &JobId, conv: Versioned) -> anyhow::Result<bool> {
        let history = self.log.history(job).await?;
        if history.is_empty() {
            tracing::info!(job_id = %job, "conversation of a job that never started; forgotten");
            self.store.remove(job).await?;
            return Ok(false);
        }
        let status = JobStatus::from_events(job.clone(), history.iter().map(|s| (s.seq, &s.event)));
        let mut st = self.state();
        st.jobs
            .entry(job.clone())
            .or_insert_with(|| Live::new(status, conv, self.pace.tail_lines));
        Ok(true)
    }

    /// Takes up every conversation left by an earlier run (or a crash).
    pub async fn restore(self: &Arc<Self>) -> anyhow::Result<()> {
        let jobs = self.store.jobs().await?;
        tracing::info!(conversations = jobs.len(), "taking up conversations");
        for job in jobs {
            let Some(conv) = self.store.get(&job).await? else {
                continue;
            };
            if !self.load(&job, conv).await? {
                continue;
            }
            let mut delay = Duration::from_millis(500);
            loop {
                match self.reconcile(&job).await {
                    Ok(()) => break,
                    Err(_) if self.shutdown.is_cancelled() => return Ok(()),
                    Err(e) => {
                        tracing::warn!(job_id = %job, error = %e, "taking up a conversation; retrying");
                        tokio::select! {
                            _ = self.shutdown.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(delay) => {}
                        }
                        delay = (delay * 2).min(Duration::from_secs(30));
                    }
                }
            }
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Brings the chat up to date with the job: status message, approval requests, the
    /// output tail, the final message. Each step checks what was done already.
    pub async fn reconcile(self: &Arc<Self>, job: &JobId) -> anyhow::Result<()> {
        self.ensure_status_message(job).await?;
        self.ensure_approval_requests(job).await?;
        self.ensure_approvals_closed(job).await?;
        self.ensure_tail(job);
        self.ensure_final(job).await
    }

    async fn ensure_status_message(&self, job: &JobId) -> anyhow::Result<()> {
        let (chat, reply_to, text, buttons, version) = {
            let st = self.state();
            let Some(live) = st.jobs.get(job) else {
                return Ok(());
            };
            let c = &live.conv.conv;
            let Some(chat) = c.chat else {
                return Ok(());
            };
            if c.status_message.is_some() || live.status_failed {
                return Ok(());
            }
            (
                chat,
                c.reply_to,
                render::status_message(
                    &live.status,
                    &live.tail_lines(),
                    skynet_protocol::time::now_ms(),
                ),
                render::status_buttons(&live.status),
                live.version,
            )
        };
        match self.tg.send_html(chat, &text, buttons, reply_to).await {
            Ok(message) => {
                let v = self
                    .store
                    .update(job, false, |c| {
                        if c.status_message.is_some() {
                            return false;
                        }
                        c.status_message = Some(message);
                        true
                    })
                    .await?;
                let mut st = self.state();
                st.next_edit
                    .insert(chat, Instant::now() + self.pace.edit_interval);
                if let Some(live) = st.jobs.get_mut(job) {
                    if let Some(v) = v
                        && v.revision > live.conv.revision
                    {
                        live.conv = v;
                    }
                    live.shown = live.shown.max(version);
                    if live.shown >= live.version {
                        live.pending_since = None;
                    }
                }
                Ok(())
            }
            Err(SendError::Refused(e)) => {
                tracing::warn!(job_id = %job, chat, error = %e, "cannot send the status message");
                if let Some(live) = self.state().jobs.get_mut(job) {
                    live.status_failed = true;
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Approvers who are not in the job's chat get their own request with buttons, unless
    /// the requester could approve it themselves.
    async fn ensure_approval_requests(&self, job: &JobId) -> anyhow::Result<()> {
        let (targets, text, buttons) = {
            let st = self.state();
            let Some(live) = st.jobs.get(job) else {
                return Ok(());
            };
            let c = &live.conv.conv;
            if live.status.state != Some(JobState::AwaitingApproval)
                || !c.approvals.is_empty()
                || c.approvals_closed
            {
                return Ok(());
            }
            if live
                .status
                .requester_user()
                .is_some_and(|u| self.access.can_approve(u))
            {
                return Ok(());
            }
            let targets: Vec<i64> = self
                .access
                .approver_chats()
                .filter(|chat| Some(*chat) != c.chat)
                .collect();
            if targets.is_empty() {
                return Ok(());
            }
            (
                targets,
                render::approval_request(&live.status),
                render::approval_buttons(job),
            )
        };
        let mut sent = Vec::new();
        let mut failure = None;
        for chat in targets {
            match self
                .tg
                .send_html(chat, &text, Some(buttons.clone()), None)
                .await
            {
                Ok(message) => sent.push(MessageRef { chat, message }),
                Err(SendError::Refused(e)) => {
                    // Usually an approver who never opened a chat with the bot.
                    tracing::warn!(job_id = %job, chat, error = %e, "cannot ask an approver");
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if !sent.is_empty() {
            let v = self
                .store
                .update(job, false, |c| {
                    c.approvals.extend(sent.iter().copied());
                    true
                })
                .await?;
            if let Some(v) = v {
                self.set_conv(job, v);
            }
        }
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Once the job no longer waits, the approval requests say how it was decided and
    /// lose their buttons.
    async fn ensure_approvals_closed(&self, job: &JobId) -> anyhow::Result<()> {
        let (refs, text) = {
            let st = self.state();
            let Some(live) = st.jobs.get(job) else {
                return Ok(());
            };
            let c = &live.conv.conv;
            if matches!(live.status.state, None | Some(JobState::AwaitingApproval))
                || c.approvals.is_empty()
                || c.approvals_closed
            {
                return Ok(());
            }
            (c.approvals.clone(), render::approval_closed(&live.status))
        };
        for r in refs {
            match self.tg.edit(r.chat, r.message, &text, None).await {
                Ok(()) => {}
                Err(SendError::Refused(e)) => {
                    tracing::warn!(job_id = %job, chat = r.chat, error = %e, "cannot close an approval request");
                }
                Err(e) => return Err(e.into()),
            }
        }
        let v = self
            .store
            .update(job, false, |c| {
                c.approvals_closed = true;
                true
            })
            .await?;
        if let Some(v) = v {
            self.set_conv(job, v);
        }
        Ok(())
    }

    /// Follows the output of a job that reached a worker.
    fn ensure_tail(self: &Arc<Self>, job: &JobId) {
        let (tail, seq, stop) = {
            let mut st = self.state();
            let Some(live) = st.jobs.get_mut(job) else {
                return;
            };
            if !live.status.reached_worker() || live.tail_stop.is_some() {
                return;
            }
            let stop = self.shutdown.child_token();
            live.tail_stop = Some(stop.clone());
            (live.tail.clone(), live.tail_seq.clone(), stop)
        };
        let hub = self.clone();
        let job = job.clone();
        self.tasks.spawn(async move {
            hub.follow_output(job, tail, seq, stop).await;
        });
    }

    async fn follow_output(
        &self,
        job: JobId,
        tail: Arc<Mutex<Tail>>,
        seq: watch::Sender<u64>,
        stop: CancellationToken,
    ) {
        // Reading again from the start after an error is harmless: the tail skips chunks
        // it has taken in already.
        loop {
            let stream = tokio::select! {
                _ = stop.cancelled() => return,
                s = skynet_runtime::logs::follow(&self.js, &job) => s,
            };
            match stream {
                Ok(stream) => {
                    futures::pin_mut!(stream);
                    loop {
                        let next = tokio::select! {
                            _ = stop.cancelled() => return,
                            n = stream.next() => n,
                        };
                        match next {
                            Some(Ok(m)) => {
                                lock(&tail).push(m.seq, &m.data);
                                seq.send_replace(m.seq);
                                self.touch(&job);
                            }
                            Some(Err(e)) => {
                                tracing::warn!(job_id = %job, error = %e, "following output");
                                break;
                            }
                            None => break,
                        }
                    }
                }
                Err(e) => tracing::warn!(job_id = %job, error = %e, "following output"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Waits until the tail has taken in the last chunk of output stored (the worker's
    /// output is relayed before its end is recorded, so at the end it is all there).
    async fn wait_for_output(&self, job: &JobId, mut seen: watch::Receiver<u64>) {
        let last = match self.js.get_stream_no_info(streams::LOGS).await {
            Ok(stream) => match stream
                .direct_get_last_for_subject(subjects::logs(job))
                .await
            {
                Ok(m) => m.sequence,
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => 0,
                Err(e) => {
                    tracing::warn!(job_id = %job, error = %e, "reading the end of the output");
                    0
                }
            },
            Err(e) => {
                tracing::warn!(job_id = %job, error = %e, "reading the end of the output");
                0
            }
        };
        if last == 0 {
            return;
        }
        let caught_up = tokio::time::timeout(self.pace.tail_wait, seen.wait_for(|s| *s >= last));
        if caught_up.await.is_err() {
            tracing::warn!(job_id = %job, "the last of the output did not arrive in time");
        }
    }

    /// Sends the message that closes the conversation, to the job's chat and its
    /// watchers, exactly once: the record is claimed before sending, so neither a
    /// redelivered event nor a restart sends it again.
    async fn ensure_final(&self, job: &JobId) -> anyhow::Result<()> {
        let (mark, reached, seen) = {
            let st = self.state();
            let Some(live) = st.jobs.get(job) else {
                return Ok(());
            };
            if !live.status.is_terminal() || live.final_done {
                return Ok(());
            }
            (
                live.conv.conv.final_message,
                live.status.reached_worker(),
                live.tail_seq.subscribe(),
            )
        };
        if reached {
            self.wait_for_output(job, seen).await;
        }
        match mark {
            FinalMark::Sent => {}
            FinalMark::Sending => {
                // Claimed by a run that stopped before it could say whether it sent it.
                // A missing message is better than a second one: the status message still
                // shows the end.
                tracing::warn!(job_id = %job, "final message may not have gone out before a restart; not sending it again");
            }
            FinalMark::None => self.send_final(job).await?,
        }
        let mut st = self.state();
        if let Some(live) = st.jobs.get_mut(job) {
            live.final_done = true;
            live.bump();
        }
        drop(st);
        self.wake.notify_one();
        Ok(())
    }

    async fn send_final(&self, job: &JobId) -> anyhow::Result<()> {
        let mut claimed = false;
        let v = self
            .store
            .update(job, false, |c| {
                claimed = c.final_message == FinalMark::None;
                if claimed {
                    c.final_message = FinalMark::Sending;
                }
                claimed
            })
            .await?;
        let Some(v) = v else {
            return Ok(());
        };
        self.set_conv(job, v.clone());
        if !claimed {
            return Ok(());
        }
        let text = {
            let st = self.state();
            let Some(live) = st.jobs.get(job) else {
                return Ok(());
            };
            render::final_message(&live.status, &live.tail_lines())
        };
        let mut sent_any = false;
        for chat in v.conv.final_chats() {
            let reply_to = if Some(chat) == v.conv.chat {
                v.conv.status_message
            } else {
                None
            };
            match self.tg.send_html(chat, &text, None, reply_to).await {
                Ok(_) => sent_any = true,
                Err(SendError::Refused(e)) => {
                    tracing::warn!(job_id = %job, chat, error = %e, "cannot send the final message");
                }
                Err(e) => {
                    if !sent_any {
                        // Nothing went out: give the claim back so it is tried again.
                        let released = self
                            .store
                            .update(job, false, |c| {
                                c.final_message = FinalMark::None;
                                true
                            })
                            .await;
                        if let Ok(Some(v)) = released {
                            self.set_conv(job, v);
                        }
                    }
                    return Err(e.into());
                }
            }
        }
        let v = self
            .store
            .update(job, false, |c| {
                c.final_message = FinalMark::Sent;
                true
            })
            .await?;
        if let Some(v) = v {
            self.set_conv(job, v);
        }
        tracing::info!(job_id = %job, "final message sent");
        Ok(())
    }

    /// Edits status messages as jobs change, within Telegram's limits, and ends the
    /// conversations that are over. Runs until shutdown.
    pub async fn render_loop(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            let (picks, over) = self.pick();
            for pick in picks {
                self.show(pick).await;
            }
            for job in over {
                self.finish(&job).await;
            }
        }
    }

    /// The next edit for each chat whose turn it is, and the conversations that are over.
    fn pick(&self) -> (Vec<Pick>, Vec<JobId>) {
        let now = Instant::now();
        let now_ms = skynet_protocol::time::now_ms();
        let heartbeat = self.pace.heartbeat;
        let mut st = self.state();
        let State { jobs, next_edit } = &mut *st;
        let mut best: HashMap<i64, (Instant, JobId)> = HashMap::new();
        let mut over = Vec::new();
        for (id, live) in jobs.iter_mut() {
            let chat = live.conv.conv.chat;
            let editable =
                chat.is_some() && live.conv.conv.status_message.is_some() && !live.status_failed;
            if live.final_done && (!editable || live.shown >= live.version) {
                over.push(id.clone());
                continue;
            }
            if !editable {
                continue;
            }
            if live.status.state.is_some_and(JobState::on_worker)
                && live.last_heartbeat.elapsed() >= heartbeat
            {
                live.last_heartbeat = now;
                live.bump();
            }
            if live.shown >= live.version {
                continue;
            }
            let Some(chat) = chat else { continue };
            if next_edit.get(&chat).is_some_and(|t| *t > now) {
                continue;
            }
            let since = live.pending_since.unwrap_or(now);
            match best.get(&chat) {
                Some((t, _)) if *t <= since => {}
                _ => {
                    best.insert(chat, (since, id.clone()));
                }
            }
        }
        let picks = best
            .into_iter()
            .filter_map(|(chat, (_, id))| {
                let live = jobs.get(&id)?;
                Some(Pick {
                    chat,
                    message: live.conv.conv.status_message?,
                    text: render::status_message(&live.status, &live.tail_lines(), now_ms),
                    buttons: render::status_buttons(&live.status),
                    version: live.version,
                    job: id,
                })
            })
            .collect();
        (picks, over)
    }

    async fn show(&self, pick: Pick) {
        let result = self
            .tg
            .edit_once(pick.chat, pick.message, &pick.text, pick.buttons)
            .await;
        let now = Instant::now();
        let mut st = self.state();
        let next = match &result {
            Err(RequestError::RetryAfter(s)) => {
                tracing::info!(
                    chat = pick.chat,
                    wait_s = s.seconds(),
                    "Telegram asks to wait (429)"
                );
                now + s.duration()
            }
            _ => now + self.pace.edit_interval,
        };
        st.next_edit.insert(pick.chat, next);
        let Some(live) = st.jobs.get_mut(&pick.job) else {
            return;
        };
        let shown = match &result {
            Ok(()) => true,
            Err(e) if not_modified(e) => true,
            Err(RequestError::RetryAfter(_) | RequestError::Network(_)) => false,
            Err(RequestError::Api(
                e @ (ApiError::MessageToEditNotFound
                | ApiError::MessageCantBeEdited
                | ApiError::BotBlocked
                | ApiError::ChatNotFound
                | ApiError::UserDeactivated
                | ApiError::BotKicked
                | ApiError::BotKickedFromSupergroup),
            )) => {
                tracing::warn!(job_id = %pick.job, error = %e, "the status message is gone; no more edits");
                live.status_failed = true;
                true
            }
            Err(e) => {
                tracing::error!(job_id = %pick.job, error = %e, "editing the status message failed");
                true
            }
        };
        if shown {
            live.shown = live.shown.max(pick.version);
            if live.shown >= live.version {
                live.pending_since = None;
            }
        }
    }

    /// Ends a conversation: the record goes, the output is no longer followed.
    async fn finish(&self, job: &JobId) {
        if let Err(e) = self.store.remove(job).await {
            tracing::warn!(job_id = %job, error = %e, "removing a finished conversation; will retry");
            return;
        }
        if let Some(live) = self.state().jobs.remove(job)
            && let Some(stop) = live.tail_stop
        {
            stop.cancel();
        }
        tracing::debug!(job_id = %job, "conversation over");
    }
}

/// One status message edit about to be made.
struct Pick {
    chat: i64,
    message: i32,
    job: JobId,
    text: String,
    buttons: Option<teloxide::types::InlineKeyboardMarkup>,
    version: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_name_their_chat() {
        assert_eq!(telegram_chat(Some("telegram:42")), Some(42));
        assert_eq!(telegram_chat(Some("telegram:-1001234")), Some(-1001234));
        assert_eq!(telegram_chat(Some("cli:alice")), None);
        assert_eq!(telegram_chat(Some("telegram:x")), None);
        assert_eq!(telegram_chat(None), None);
    }
}
