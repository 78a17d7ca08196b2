//! What people send the bot: commands, plain text and button presses, read by teloxide's
//! long polling and answered through the `skynet` API.
//!
//! Updates are handled one at a time, in order. teloxide's poller confirms a batch of
//! updates to Telegram only when it asks for the next batch, which is after the previous one
//! was handled; an update redelivered after a crash is harmless because a job's id is
//! derived from the message that asked for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use futures::StreamExt;
use skynet_protocol::api::{
    CancelRequest, DecisionRequest, Empty, GetRequest, JobView, ListReply, ListRequest, LogsReply,
    LogsRequest, StateReply, SubmitReply, WorkersReply,
};
use skynet_protocol::{JobId, JobRequest, JobState, Step, subjects};
use skynet_runtime::api::{CallError, call};
use teloxide::prelude::*;
use teloxide::types::{AllowedUpdate, CallbackQuery, MessageEntityKind, Update, UpdateKind};
use teloxide::update_listeners::{AsUpdateStream, Polling, UpdateListener};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::commands::{self, Command, Intent, Parsed};
use crate::html::{Doc, MAX_CAPTION, clip, esc, text_len};
use crate::hub::Hub;
use crate::job::JobStatus;
use crate::telegram::SendError;
use crate::{render, schedules};

/// Output up to this many characters is shown in a message; more goes as a file.
const INLINE_LOG_CHARS: usize = 3500;
/// The most output `/logs` sends as a file (Telegram takes files up to 50 MB).
const MAX_LOG_FILE: usize = 40 << 20;
/// A stranger hears the refusal at most this often.
const REFUSAL_EVERY: Duration = Duration::from_secs(60);

/// The bot's own identity, from `getMe`.
#[derive(Debug, Clone)]
pub struct Me {
    pub id: u64,
    pub username: Option<String>,
}

pub struct Handler {
    pub hub: Arc<Hub>,
    pub nats: Client,
    pub me: Me,
    /// Signs decisions for the approvers (see `Config::signer`).
    signer: Option<Arc<nkeys::KeyPair>>,
    refused: HashMap<u64, Instant>,
}

/// What a command needs of its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Read,
    Run,
    Approve,
}

impl Handler {
    pub fn new(hub: Arc<Hub>, nats: Client, me: Me, signer: Option<Arc<nkeys::KeyPair>>) -> Self {
        Self {
            hub,
            nats,
            me,
            signer,
            refused: HashMap::new(),
        }
    }

    /// Long-polls Telegram until `shutdown`, handling each update in turn. On shutdown the
    /// poller confirms what was handled, so a restart does not see it again.
    pub async fn poll(mut self, timeout: Duration, shutdown: CancellationToken) {
        let mut polling = Polling::builder(self.hub.tg.bot.clone())
            .timeout(timeout)
            // Only what the bot acts on: messages and button presses.
            .allowed_updates(vec![AllowedUpdate::Message, AllowedUpdate::CallbackQuery])
            .delete_webhook()
            .await
            .build();
        let stop = polling.stop_token();
        let stopper = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                stop.stop();
            })
        };
        let stream = polling.as_stream();
        futures::pin_mut!(stream);
        tracing::info!(bot = ?self.me.username, "listening to Telegram");
        while let Some(update) = stream.next().await {
            match update {
                Ok(update) => self.handle(update).await,
                Err(e) => tracing::warn!(error = %e, "getting updates from Telegram"),
            }
        }
        stopper.abort();
    }

    async fn handle(&mut self, update: Update) {
        match update.kind {
            UpdateKind::Message(msg) => self.on_message(&msg).await,
            UpdateKind::CallbackQuery(q) => self.on_button(&q).await,
            _ => {}
        }
    }

    #[tracing::instrument(skip_all, fields(chat = msg.chat.id.0, message = msg.id.0))]
    async fn on_message(&mut self, msg: &Message) {
        let Some(text) = msg.text() else {
            return;
        };
        let Some(user) = msg.from.as_ref() else {
            return;
        };
        if user.is_bot {
            return;
        }
        let uid = user.id.0;
        let chat = msg.chat.id.0;
        let group = !msg.chat.is_private();
        let Parsed::Command(command) = commands::parse(text, self.me.username.as_deref(), group)
        else {
            return;
        };
        let access = self.hub.access.clone();
        if !access.can_read(uid) {
            tracing::warn!(user_id = uid, chat, "refused a user who is not allowed");
            self.refuse(uid, chat, msg.id.0).await;
            return;
        }
        let need = match &command {
            Command::Run(_) | Command::Cancel(_) | Command::Every(_) => Need::Run,
            Command::Approve(_) | Command::Deny { .. } => Need::Approve,
            _ => Need::Read,
        };
        let refusal = match need {
            Need::Run if !access.can_run(uid) => Some("Only allowed users can run or cancel jobs."),
            Need::Approve if !access.can_approve(uid) => {
                Some("Only approvers can approve or deny jobs.")
            }
            _ => None,
        };
        if let Some(refusal) = refusal {
            tracing::warn!(
                user_id = uid,
                chat,
                ?need,
                "refused an action the user may not take"
            );
            self.say(chat, msg.id.0, &format!("⛔ {refusal}")).await;
            return;
        }
        let reply_to = msg.id.0;
        match command {
            Command::Help => self.send_doc(chat, &render::help(), reply_to).await,
            Command::Run(args) => self.run(msg, uid, chat, &args).await,
            Command::Status(id) => self.status(chat, reply_to, &id).await,
            Command::Jobs => self.jobs(chat, reply_to).await,
            Command::Logs(id) => self.logs(chat, reply_to, &id).await,
            Command::Cancel(id) => self.cancel(uid, chat, reply_to, &id).await,
            Command::Approve(id) => self.decide(uid, chat, reply_to, &id, true, None).await,
            Command::Deny { id, reason } => {
                self.decide(uid, chat, reply_to, &id, false, reason).await
            }
            Command::Workers => self.workers(chat, reply_to).await,
            Command::Every(args) => self.every(msg, uid, chat, &args).await,
            Command::Schedules => {
                for (text, buttons) in schedules::list(&self.nats).await {
                    if let Err(e) = self
                        .hub
                        .tg
                        .send_html(chat, &text, buttons, Some(reply_to))
                        .await
                    {
                        tracing::warn!(chat, error = %e, "could not reply");
                    }
                }
            }
            Command::Unknown(name) => {
                let text = format!("I do not know /{}. /help lists what I can do.", esc(&name));
                self.say(chat, reply_to, &text).await;
            }
        }
    }

    async fn refuse(&mut self, uid: u64, chat: i64, reply_to: i32) {
        let now = Instant::now();
        if self.refused.len() > 10_000 {
            self.refused
                .retain(|_, at| now.duration_since(*at) < REFUSAL_EVERY);
        }
        if self
            .refused
            .get(&uid)
            .is_some_and(|at| now.duration_since(*at) < REFUSAL_EVERY)
        {
            return;
        }
        self.refused.insert(uid, now);
        self.say(chat, reply_to, &render::refusal(uid)).await;
    }

    /// Sends a short reply (already HTML).
    async fn say(&self, chat: i64, reply_to: i32, html: &str) {
        if let Err(e) = self
            .hub
            .tg
            .send_html(chat, html, None, Some(reply_to))
            .await
        {
            tracing::warn!(chat, error = %e, "could not reply");
        }
    }

    async fn send_doc(&self, chat: i64, doc: &Doc, reply_to: i32) {
        if let Err(e) = self.hub.tg.send_doc(chat, doc, Some(reply_to)).await {
            tracing::warn!(chat, error = %e, "could not reply");
        }
    }

    /// What a failed API call means to a person.
    fn api_trouble(e: &CallError) -> String {
        match e {
            CallError::Api(a) => esc(&clip(&a.message, 600)),
            CallError::NoService(_) | CallError::Timeout(_) => {
                "SKYNET is not answering right now; try again in a moment.".into()
            }
            other => {
                tracing::warn!(error = %other, "calling the SKYNET API");
                "Something went wrong talking to SKYNET; try again.".into()
            }
        }
    }

    /// Is the whole of `args` marked as code by the client (`` `cmd` `` becomes an entity)?
    fn whole_is_code(msg: &Message, args: &str) -> bool {
        let (Some(text), Some(entities)) = (msg.text(), msg.entities()) else {
            return false;
        };
        entities.iter().any(|e| {
            matches!(
                e.kind,
                MessageEntityKind::Code | MessageEntityKind::Pre { .. }
            ) && utf16_slice(text, e.offset, e.length)
                .is_some_and(|code| code.trim() == args.trim() && !code.trim().is_empty())
        })
    }

    /// `/every <spec> <request>`.
    async fn every(&self, msg: &Message, uid: u64, chat: i64, args: &str) {
        let reply_to = msg.id.0;
        let parsed = schedules::parse_every(args).and_then(|(cron, rest)| {
            let intent = commands::intent(&rest, Self::whole_is_code(msg, &rest))?;
            Some((cron, rest, intent))
        });
        let Some((cron, rest, intent)) = parsed else {
            self.say(
                chat,
                reply_to,
                "Tell me how often and what: <code>/every 1h run the tests in ~/src/app</code> (or <code>@daily</code>, <code>@hourly</code>).",
            )
            .await;
            return;
        };
        let name = schedules::name_for(
            &rest,
            &format!("telegram:{}:{chat}:{}", self.me.id, msg.id.0),
        );
        let (text, buttons) = schedules::every(
            &self.nats,
            name,
            cron,
            intent,
            format!("{}{uid}", crate::TELEGRAM_PREFIX),
            format!("{}{chat}", crate::TELEGRAM_PREFIX),
        )
        .await;
        if let Err(e) = self
            .hub
            .tg
            .send_html(chat, &text, buttons, Some(reply_to))
            .await
        {
            tracing::warn!(chat, error = %e, "could not reply");
        }
    }

    async fn run(&self, msg: &Message, uid: u64, chat: i64, args: &str) {
        let reply_to = msg.id.0;
        let Some(intent) = commands::intent(args, Self::whole_is_code(msg, args)) else {
            self.say(
                chat,
                reply_to,
                "Tell me what to do: <code>/run run the tests in ~/src/app</code>, or an exact command in backticks.",
            )
            .await;
            return;
        };
        // The same message always makes the same job: a redelivered update never runs twice.
        let job = JobId::derive(&format!("telegram:{}:{chat}:{}", self.me.id, msg.id.0));
        let (goal, steps) = match intent {
            Intent::Goal(g) => (Some(g), None),
            Intent::Shell(cmd) => (
                None,
                Some(vec![Step::Shell {
                    cmd: Some(cmd),
                    argv: None,
                    cwd: None,
                    env: Default::default(),
                    timeout_s: None,
                    artifacts: vec![],
                }]),
            ),
        };
        let request = JobRequest {
            id: Some(job.clone()),
            goal,
            steps,
            worker: None,
            labels: vec![],
            timeout_s: None,
            retries: 0,
            requested_by: Some(format!("{}{uid}", crate::TELEGRAM_PREFIX)),
            origin: Some(format!("{}{chat}", crate::TELEGRAM_PREFIX)),
            ..Default::default()
        };
        if let Err(e) = request.validate() {
            let text = format!("That cannot be run: {}", esc(&clip(&e.to_string(), 600)));
            self.say(chat, reply_to, &text).await;
            return;
        }
        if let Err(e) = self.hub.prepare(&job, chat, reply_to).await {
            tracing::warn!(job_id = %job, error = %e, "recording the conversation");
            self.say(chat, reply_to, "Something went wrong; try again.")
                .await;
            return;
        }
        match call::<_, SubmitReply>(&self.nats, subjects::api::JOBS_SUBMIT, &request).await {
            Ok(reply) => {
                tracing::info!(job_id = %reply.job_id, user_id = uid, chat, "job submitted");
            }
            Err(e) => {
                self.hub.unprepare(&job).await;
                let text = format!("❌ Not submitted: {}", Self::api_trouble(&e));
                self.say(chat, reply_to, &text).await;
            }
        }
    }

    async fn get(&self, id: &str) -> Result<JobView, CallError> {
        call(
            &self.nats,
            subjects::api::JOBS_GET,
            &GetRequest {
                job_id: id.to_owned(),
            },
        )
        .await
    }

    /// The job an id or prefix names, or a reply saying why there is none.
    async fn find(&self, chat: i64, reply_to: i32, id: &str, usage: &str) -> Option<JobView> {
        if id.is_empty() {
            self.say(chat, reply_to, usage).await;
            return None;
        }
        match self.get(id).await {
            Ok(view) => Some(view),
            Err(e) => {
                let text = match e.code() {
                    Some(404) => format!("No job <code>{}</code>.", esc(&clip(id, 64))),
                    _ => Self::api_trouble(&e),
                };
                self.say(chat, reply_to, &text).await;
                None
            }
        }
    }

    async fn status(&self, chat: i64, reply_to: i32, id: &str) {
        let Some(view) = self
            .find(
                chat,
                reply_to,
                id,
                "Which job? <code>/status &lt;id&gt;</code>",
            )
            .await
        else {
            return;
        };
        let status =
            JobStatus::from_events(view.job_id.clone(), view.history.iter().map(|e| (0, e)));
        let doc = render::status_full(
            &status,
            skynet_protocol::time::now_ms(),
            &view.created_at,
            &view.updated_at,
        );
        self.send_doc(chat, &doc, reply_to).await;
    }

    async fn jobs(&self, chat: i64, reply_to: i32) {
        let request = ListRequest {
            state: None,
            limit: Some(15),
        };
        match call::<_, ListReply>(&self.nats, subjects::api::JOBS_LIST, &request).await {
            Ok(reply) => {
                let doc = render::jobs_list(&reply.jobs, skynet_protocol::time::now_ms());
                self.send_doc(chat, &doc, reply_to).await;
            }
            Err(e) => self.say(chat, reply_to, &Self::api_trouble(&e)).await,
        }
    }

    async fn workers(&self, chat: i64, reply_to: i32) {
        match call::<_, WorkersReply>(&self.nats, subjects::api::WORKERS_LIST, &Empty {}).await {
            Ok(reply) => {
                let doc = render::workers_list(&reply.workers, skynet_protocol::time::now_ms());
                self.send_doc(chat, &doc, reply_to).await;
            }
            Err(e) => self.say(chat, reply_to, &Self::api_trouble(&e)).await,
        }
    }

    async fn logs(&self, chat: i64, reply_to: i32, id: &str) {
        let Some(view) = self
            .find(
                chat,
                reply_to,
                id,
                "Which job? <code>/logs &lt;id&gt;</code>",
            )
            .await
        else {
            return;
        };
        let job = view.job_id;
        let mut output = String::new();
        let mut offset = 0;
        let mut truncated = false;
        loop {
            let request = LogsRequest {
                job_id: job.clone(),
                offset: Some(offset),
                max_bytes: None,
            };
            let page =
                match call::<_, LogsReply>(&self.nats, subjects::api::JOBS_LOGS, &request).await {
                    Ok(p) => p,
                    Err(e) => {
                        self.say(chat, reply_to, &Self::api_trouble(&e)).await;
                        return;
                    }
                };
            output.push_str(&page.output);
            if page.complete || page.next_offset <= offset {
                break;
            }
            if output.len() >= MAX_LOG_FILE {
                truncated = true;
                break;
            }
            offset = page.next_offset;
        }
        let short = esc(job.short());
        if output.trim().is_empty() {
            self.say(
                chat,
                reply_to,
                &format!("Job <code>{short}</code> has no output."),
            )
            .await;
            return;
        }
        if text_len(&output) <= INLINE_LOG_CHARS && !truncated {
            let mut doc = Doc::new();
            doc.line(format!("Output of job <code>{short}</code>:"));
            doc.pre(output);
            self.send_doc(chat, &doc, reply_to).await;
            return;
        }
        let caption = clip(
            &format!(
                "Output of job <code>{short}</code> ({} bytes{})",
                output.len(),
                if truncated { ", the first part" } else { "" }
            ),
            MAX_CAPTION,
        );
        let file = format!("{}.log", job.short());
        if let Err(e) = self
            .hub
            .tg
            .send_document(
                chat,
                &file,
                output.into_bytes().into(),
                &caption,
                Some(reply_to),
            )
            .await
        {
            tracing::warn!(job_id = %job, error = %e, "could not send the output file");
            if !matches!(e, SendError::Shutdown) {
                self.say(chat, reply_to, "Could not send the output file; try again.")
                    .await;
            }
        }
    }

    async fn cancel(&self, uid: u64, chat: i64, reply_to: i32, id: &str) {
        let Some(view) = self
            .find(
                chat,
                reply_to,
                id,
                "Which job? <code>/cancel &lt;id&gt;</code>",
            )
            .await
        else {
            return;
        };
        let job = view.job_id;
        let short = esc(job.short());
        if view.state.is_terminal() {
            let text = format!(
                "Job <code>{short}</code> already ended: {}.",
                render::state_word(view.state)
            );
            self.say(chat, reply_to, &text).await;
            return;
        }
        // Register before cancelling, so the end cannot slip past unheard.
        let added = match self.hub.watch(&job, chat).await {
            Ok(added) => added,
            Err(e) => {
                tracing::warn!(job_id = %job, error = %e, "recording who waits for the cancel");
                false
            }
        };
        let request = CancelRequest {
            job_id: job.clone(),
            by: Some(format!("{}{uid}", crate::TELEGRAM_PREFIX)),
        };
        match call::<_, StateReply>(&self.nats, subjects::api::JOBS_CANCEL, &request).await {
            Ok(reply) => {
                tracing::info!(job_id = %job, user_id = uid, state = %reply.state, "cancel requested");
                let text = format!("⏹ Cancel requested for job <code>{short}</code>.");
                self.say(chat, reply_to, &text).await;
            }
            Err(e) => {
                if added && let Err(e) = self.hub.unwatch(&job, chat).await {
                    tracing::warn!(job_id = %job, error = %e, "undoing a watch");
                }
                self.say(chat, reply_to, &Self::api_trouble(&e)).await;
            }
        }
    }

    /// `/approve` and `/deny`: the decision applies to the plan the job has now.
    async fn decide(
        &self,
        uid: u64,
        chat: i64,
        reply_to: i32,
        id: &str,
        approve: bool,
        reason: Option<String>,
    ) {
        let usage = if approve {
            "Which job? <code>/approve &lt;id&gt;</code>"
        } else {
            "Which job? <code>/deny &lt;id&gt; [reason]</code>"
        };
        let Some(view) = self.find(chat, reply_to, id, usage).await else {
            return;
        };
        if view.state != JobState::AwaitingApproval {
            let text = format!(
                "Job <code>{}</code> is {}, not awaiting approval.",
                esc(view.job_id.short()),
                render::state_word(view.state)
            );
            self.say(chat, reply_to, &text).await;
            return;
        }
        let text = match self
            .decision(uid, &view.job_id, approve, reason, view.plan_hash.clone())
            .await
        {
            Ok(reply) => format!(
                "{} Job <code>{}</code> {}{}.",
                render::state_icon(reply.state),
                esc(view.job_id.short()),
                render::state_word(reply.state),
                view.plan_hash
                    .as_deref()
                    .map(|h| format!(
                        " (plan <code>{}</code>)",
                        esc(skynet_protocol::spec::short_hash(h))
                    ))
                    .unwrap_or_default()
            ),
            Err(e) => Self::api_trouble(&e),
        };
        self.say(chat, reply_to, &text).await;
    }

    async fn decision(
        &self,
        uid: u64,
        job: &JobId,
        approve: bool,
        reason: Option<String>,
        plan_hash: Option<String>,
    ) -> Result<StateReply, CallError> {
        let endpoint = if approve {
            subjects::api::JOBS_APPROVE
        } else {
            subjects::api::JOBS_DENY
        };
        // Signed for this user: policy records `telegram:<uid>` because the ingress's key
        // says so, not because the request does.
        let signature = match (&self.signer, &plan_hash) {
            (Some(key), Some(hash)) => skynet_protocol::approval::sign(
                key,
                &skynet_protocol::approval::Decision {
                    job_id: job,
                    plan_hash: hash,
                    verdict: if approve {
                        skynet_protocol::approval::Verdict::Approve
                    } else {
                        skynet_protocol::approval::Verdict::Deny
                    },
                },
                skynet_protocol::time::now_ms() / 1000,
                Some(uid.to_string()),
            )
            .map_err(|e| {
                tracing::warn!(error = %e, "signing a decision");
            })
            .ok(),
            _ => None,
        };
        let request = DecisionRequest {
            job_id: job.clone(),
            by: Some(format!("{}{uid}", crate::TELEGRAM_PREFIX)),
            reason,
            plan_hash,
            signature,
        };
        call(&self.nats, endpoint, &request).await
    }

    /// A press of an approve or deny button.
    #[tracing::instrument(skip_all, fields(user_id = q.from.id.0))]
    async fn on_button(&mut self, q: &CallbackQuery) {
        let uid = q.from.id.0;
        let tg = self.hub.tg.clone();
        if let Some(button) = q.data.as_deref().and_then(schedules::parse_button) {
            let allowed = match button {
                schedules::Button::Approve { .. } => self.hub.access.can_approve(uid),
                _ => self.hub.access.can_run(uid),
            };
            if !allowed {
                tracing::warn!(
                    user_id = uid,
                    "a schedule button pressed by someone who may not"
                );
                tg.answer(&q.id.0, "Not allowed.", true).await;
                return;
            }
            let answer = schedules::press(&self.nats, button, uid, self.signer.as_deref()).await;
            tracing::info!(user_id = uid, %answer, "schedule button");
            tg.answer(&q.id.0, &answer, false).await;
            return;
        }
        let Some((approve, job)) = q.data.as_deref().and_then(parse_button) else {
            tracing::warn!(user_id = uid, "a button with unknown data");
            tg.answer(&q.id.0, "This button is not understood.", false)
                .await;
            return;
        };
        if !self.hub.access.can_approve(uid) {
            tracing::warn!(user_id = uid, job_id = %job, "a button pressed by someone who may not decide");
            tg.answer(&q.id.0, "Not allowed: only approvers can decide.", true)
                .await;
            return;
        }
        // What the person saw is what they decide: the plan hash in the message they
        // pressed, else the plan the job has.
        let shown = q
            .message
            .as_ref()
            .and_then(|m| m.regular_message())
            .and_then(|m| m.text())
            .and_then(shown_plan_hash);
        let plan_hash = match shown.or_else(|| self.hub.plan_hash(&job)) {
            Some(h) => Some(h),
            None => self.get(job.as_str()).await.ok().and_then(|v| v.plan_hash),
        };
        let answer = match self.decision(uid, &job, approve, None, plan_hash).await {
            Ok(reply) => {
                tracing::info!(job_id = %job, user_id = uid, state = %reply.state, "decided by button");
                if approve { "Approved." } else { "Denied." }.to_owned()
            }
            Err(CallError::Api(e)) if e.code == 404 => "No such job.".to_owned(),
            Err(CallError::Api(e)) => clip(&e.message, 190),
            Err(e) => {
                tracing::warn!(error = %e, "deciding by button");
                "SKYNET is not answering right now; try again.".to_owned()
            }
        };
        tg.answer(&q.id.0, &answer, false).await;
    }
}

/// `approve:<job_id>` / `deny:<job_id>`.
pub fn parse_button(data: &str) -> Option<(bool, JobId)> {
    let (action, id) = data.split_once(':')?;
    let approve = match action {
        render::APPROVE => true,
        render::DENY => false,
        _ => return None,
    };
    Some((approve, JobId::parse(id).ok()?))
}

/// The plan hash a message showed (`Plan hash: 0123456789ab`).
fn shown_plan_hash(text: &str) -> Option<String> {
    let (_, rest) = text.split_once("Plan hash: ")?;
    let hash: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
    (hash.len() >= 12).then_some(hash)
}

/// The part of `text` at UTF-16 `offset` and `length` (how Telegram counts), if those
/// fall on character boundaries.
fn utf16_slice(text: &str, offset: usize, length: usize) -> Option<&str> {
    let end16 = offset.checked_add(length)?;
    let (mut start, mut end) = (None, None);
    let mut pos16 = 0;
    for (i, c) in text.char_indices() {
        if pos16 == offset {
            start = Some(i);
        }
        if pos16 == end16 {
            end = Some(i);
            break;
        }
        pos16 += c.len_utf16();
    }
    if pos16 == end16 && end.is_none() {
        end = Some(text.len());
    }
    if offset == end16 && start.is_none() && pos16 == offset {
        start = Some(text.len());
    }
    text.get(start?..end?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buttons_parse_and_weird_data_does_not() {
        let (approve, job) = parse_button("approve:abc_123").unwrap();
        assert!(approve);
        assert_eq!(job.as_str(), "abc_123");
        assert!(!parse_button("deny:x").unwrap().0);
        for bad in [
            "",
            ":",
            "approve:",
            "approve",
            "nuke:abc",
            "approve:a.b",
            "deny:🙂",
            "approve:a:b",
        ] {
            assert!(parse_button(bad).is_none(), "{bad}");
        }
        let long = format!("approve:{}", "x".repeat(49));
        assert!(parse_button(&long).is_none());
    }

    #[test]
    fn the_shown_plan_hash_is_read_back() {
        assert_eq!(
            shown_plan_hash("Job x\nPlan hash: 0123456789ab\nPolicy"),
            Some("0123456789ab".into())
        );
        assert_eq!(shown_plan_hash("Plan hash: 01234"), None);
        assert_eq!(shown_plan_hash("no hash"), None);
    }

    #[test]
    fn utf16_offsets_map_to_text() {
        let t = "😀 `ls` é";
        // 😀 is two UTF-16 units.
        assert_eq!(utf16_slice(t, 3, 4), Some("`ls`"));
        assert_eq!(utf16_slice(t, 0, 2), Some("😀"));
        assert_eq!(utf16_slice(t, 1, 2), None);
        assert_eq!(utf16_slice(t, 8, 1), Some("é"));
        assert_eq!(utf16_slice(t, 8, 5), None);
        assert_eq!(utf16_slice(t, usize::MAX, 2), None);
    }
}
