//! skynet-planner: the intake of SKYNET, and the planner that turns goals into plans.
//!
//! Reads `skynet.jobs.submit` (stream `SKYNET_SUBMIT`) with the durable consumer `planner`,
//! which copies of the planner share. Each request is validated, given its job id (its `id`,
//! else its `Nats-Msg-Id`, else one derived from its stream position so a redelivery never
//! makes a second job), recorded as `received` (written only if the job has no events yet,
//! so a repeated id never becomes a second job) and planned into `planned` or `rejected` on
//! `skynet.events.<job>`. Requests without any usable id go to `skynet.rejected`.
//!
//! Planning: explicit steps pass through, with their skills expanded; a goal alone is planned
//! by the configured backend: `rules` (offline, [`rules`]), or an LLM ([`llm`]: Anthropic or
//! any OpenAI-compatible API), which is told the online workers (read from the
//! `skynet-workers` KV bucket), the skills ([`skills`]) and the policy in brief. Tokens the
//! LLMs spend are added up per day in the `skynet-planner-usage` KV bucket ([`usage`]). The
//! planner never runs or approves anything: every plan goes to policy.
//!
//! Serves `skynet.api.jobs.submit`, which validates, assigns an id and stores the request in
//! the intake stream before replying, and `skynet.api.schedules.create` ([`schedules`]),
//! which plans a new schedule once, has policy judge it, and writes it to `skynet-schedules`.

pub mod config;
pub mod llm;
pub mod plan;
pub mod rules;
mod schedules;
pub mod skills;
pub mod usage;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::Client;
use async_nats::jetstream::{self, AckKind, context::PublishErrorKind, message::PublishMessage};
use bytes::Bytes;
use futures::StreamExt;
use skynet_protocol::api::{ApiError, SubmitReply};
use skynet_protocol::job::{Rejection, salvage_id};
use skynet_protocol::lifecycle::Job;
use skynet_protocol::spec::plan_hash;
use skynet_protocol::worker::WorkerInfo;
use skynet_protocol::{EventKind, JobId, JobRequest, streams, subjects};
use skynet_runtime::events::EventLog;
use skynet_runtime::{Shutdown, api};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use crate::config::{
    Backend, BackendKind, Config, LlmConfig, PlannerArgs, Provider, RetryPolicy, Secret,
};
use crate::llm::LlmPlanner;
use crate::plan::Outcome;
use crate::skills::Skills;
use crate::usage::UsageBook;

/// Heartbeats missed before a worker counts as offline (as the ledger counts).
const MISSED_HEARTBEATS: u32 = 3;

/// How often a request being planned tells JetStream it is still in progress, well inside
/// the consumer's ack wait, so a slow LLM does not get the request redelivered.
const PROGRESS_EVERY: Duration = Duration::from_secs(15);

/// The worker registry (`skynet-workers`), read when a goal is planned so the model is told
/// exactly who is online then (a plan costs an LLM call; a few KV reads are nothing next to
/// it, and there is no watcher to lag behind).
struct Workers {
    kv: async_nats::jetstream::kv::Store,
}

/// More workers than this are not described to the model one by one.
const MAX_WORKERS_IN_PROMPT: usize = 50;

impl Workers {
    async fn open(js: &jetstream::Context) -> anyhow::Result<Self> {
        let kv = js
            .get_key_value(streams::WORKERS_BUCKET)
            .await
            .context("opening the worker registry")?;
        Ok(Self { kv })
    }

    /// The online workers that could run `req`. Trouble reading the registry leaves the
    /// list short, never the plan undone: policy and the dispatcher decide where it runs.
    async fn for_request(&self, req: &JobRequest) -> Vec<WorkerInfo> {
        let mut keys = match self.kv.keys().await {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, "reading the worker registry");
                return vec![];
            }
        };
        let now = skynet_protocol::time::now_ms();
        let mut out = Vec::new();
        while let Some(key) = keys.next().await {
            let Ok(key) = key else { continue };
            let Ok(Some(bytes)) = self.kv.get(&key).await else {
                continue;
            };
            let Ok(info) = serde_json::from_slice::<WorkerInfo>(&bytes) else {
                continue;
            };
            // An entry under another worker's key is not believed (as the registry watch).
            if info.id.as_str() != key {
                continue;
            }
            if info.is_online(now, MISSED_HEARTBEATS)
                && info.matches(req.worker.as_ref(), &req.labels)
            {
                out.push(info);
                if out.len() >= MAX_WORKERS_IN_PROMPT {
                    break;
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

/// What writes plans for goals.
enum Engine {
    Rules,
    Llm(Box<LlmEngine>),
}

struct LlmEngine {
    planner: LlmPlanner,
    workers: Workers,
    usage: UsageBook,
}

struct Intake {
    js: jetstream::Context,
    log: EventLog,
    /// Creation time of the intake stream, to derive ids unique to this incarnation of it.
    stream_created: String,
    skills: Arc<Skills>,
    engine: Engine,
    shutdown: CancellationToken,
}

/// Runs the planner until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    client: Client,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Some((js, log)) = skynet_runtime::setup::open(&client, &shutdown).await? else {
        return Ok(());
    };
    let mut stream = js.get_stream(streams::SUBMIT).await?;
    let stream_created = stream
        .info()
        .await?
        .created
        .unix_timestamp_nanos()
        .to_string();
    let tasks = Shutdown::new(shutdown.clone());
    let engine = match config.backend {
        Backend::Rules => Engine::Rules,
        Backend::Llm(llm) => {
            let planner = LlmPlanner::new(llm, config.skills.clone(), config.policy_brief.clone())
                .context("setting up the LLM client")?;
            let workers = Workers::open(&js).await?;
            Engine::Llm(Box::new(LlmEngine {
                planner,
                workers,
                usage: UsageBook::open(&js).await?,
            }))
        }
    };
    let intake = Arc::new(Intake {
        js: js.clone(),
        log,
        stream_created,
        skills: config.skills.clone(),
        engine,
        shutdown: shutdown.clone(),
    });

    let service = api::start_service(&client, "planner").await?;
    {
        let js = js.clone();
        tasks.tasks.spawn(api::serve_raw(
            api::endpoint(&service, subjects::api::JOBS_SUBMIT).await?,
            tasks.clone(),
            move |payload: Bytes| {
                let js = js.clone();
                async move { submit(&js, &payload).await }
            },
        ));
    }
    {
        let kv = js
            .get_key_value(streams::SCHEDULES_BUCKET)
            .await
            .context("opening the schedules bucket")?;
        let (intake, client) = (intake.clone(), client.clone());
        tasks.tasks.spawn(api::serve_raw(
            api::endpoint(&service, subjects::api::SCHEDULES_CREATE).await?,
            tasks.clone(),
            move |payload: Bytes| {
                let (intake, client, kv) = (intake.clone(), client.clone(), kv.clone());
                async move { schedules::create(&intake, &client, &kv, &payload).await }
            },
        ));
    }

    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(streams::PLANNER_CONSUMER, streams::planner_consumer())
        .await
        .context("creating the planner consumer")?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(64)
        .heartbeat(Duration::from_millis(2500))
        .expires(Duration::from_secs(5))
        .messages()
        .await?;
    let limit = Arc::new(Semaphore::new(config.concurrency.max(1)));
    tracing::info!(
        backend = intake.engine_name(),
        skills = intake.skills.names().len(),
        "planner ready"
    );
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => break,
            m = messages.next() => m,
        };
        let msg = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "intake consumer");
                continue;
            }
            None => anyhow::bail!("intake consumer ended"),
        };
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        let intake = intake.clone();
        tasks.tasks.spawn(async move {
            let _permit = permit;
            let work = intake.handle(&msg);
            tokio::pin!(work);
            // First due one period from now: an interval's immediate first tick still waits
            // for the timer wheel's next millisecond, and would hold up every request.
            let mut progress = tokio::time::interval_at(
                tokio::time::Instant::now() + PROGRESS_EVERY,
                PROGRESS_EVERY,
            );
            let result = loop {
                tokio::select! {
                    r = &mut work => break r,
                    _ = progress.tick() => {
                        if let Err(e) = msg.ack_with(AckKind::Progress).await {
                            tracing::debug!(error = %e, "marking a request in progress");
                        }
                    }
                }
            };
            let ack = match result {
                Ok(()) => AckKind::Ack,
                Err(e) => {
                    tracing::warn!(error = %e, "request not processed; will retry");
                    AckKind::Nak(Some(Duration::from_secs(1)))
                }
            };
            if let Err(e) = msg.ack_with(ack).await {
                tracing::warn!(error = %e, "acking intake message");
            }
        });
    }
    let _ = service.stop().await;
    tasks.drain(Duration::from_secs(10)).await;
    Ok(())
}

/// `skynet.api.jobs.submit`: validate, assign an id, store durably, reply with the id.
async fn submit(js: &jetstream::Context, payload: &[u8]) -> Result<SubmitReply, ApiError> {
    let mut req =
        JobRequest::from_slice(payload).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let id = req.id.get_or_insert_with(JobId::generate).clone();
    let body = serde_json::to_vec(&req).map_err(|e| ApiError::internal(e.to_string()))?;
    let ack = js
        .send_publish(
            subjects::SUBMIT,
            PublishMessage::build()
                .payload(body.into())
                .message_id(id.as_str()),
        )
        .await
        .map_err(|e| ApiError::internal(format!("storing the request: {e}")))?
        .await;
    match ack {
        Ok(_) => Ok(SubmitReply { job_id: id }),
        Err(e) if e.kind() == PublishErrorKind::StreamNotFound => {
            Err(ApiError::internal("the intake stream is missing"))
        }
        Err(e) => Err(ApiError::internal(format!("storing the request: {e}"))),
    }
}

impl Intake {
    fn engine_name(&self) -> &'static str {
        match &self.engine {
            Engine::Rules => "rules",
            Engine::Llm(llm) => llm.planner.name(),
        }
    }

    /// Plans a request: explicit steps pass through; a goal goes to the backend.
    async fn plan(&self, req: &JobRequest) -> Outcome {
        if let Some(outcome) = plan::pass_through(req, &self.skills) {
            return outcome;
        }
        let goal = req.goal.as_deref().unwrap_or_default().trim();
        match &self.engine {
            Engine::Rules => plan::rules(goal, req, &self.skills),
            Engine::Llm(llm) => {
                let LlmEngine {
                    planner,
                    workers,
                    usage,
                } = llm.as_ref();
                let online = workers.for_request(req).await;
                let result = planner.plan(goal, req, &online).await;
                if result.answers > 0
                    && let Err(e) = usage
                        .add(planner.name(), &result.model, &result.usage, result.answers)
                        .await
                {
                    tracing::warn!(error = %e, "could not add to the daily token totals");
                }
                result.outcome
            }
        }
    }

    async fn handle(&self, msg: &jetstream::Message) -> anyhow::Result<()> {
        let seq = msg.info().map(|i| i.stream_sequence).ok();
        let msg_id = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_owned());
        let header_id = msg_id
            .as_deref()
            .map(|m| JobId::parse(m).unwrap_or_else(|_| JobId::derive(m)));
        match JobRequest::from_slice(&msg.payload) {
            Ok(mut req) => {
                let id = req.id.clone().or(header_id).unwrap_or_else(|| {
                    JobId::derive(&format!("{}:{}", self.stream_created, seq.unwrap_or(0)))
                });
                req.id = Some(id.clone());
                self.admit(id, req).await
            }
            Err(e) => {
                let reason = e.to_string();
                match salvage_id(&msg.payload).or(header_id) {
                    Some(id) => {
                        tracing::info!(job_id = %id, %reason, "request rejected");
                        let kind = EventKind::Rejected {
                            reason,
                            steps: vec![],
                        };
                        match self.log.append(&Job::new(id), kind).await {
                            Ok(_) => Ok(()),
                            Err(e) if e.is_race() => Ok(()),
                            Err(e) => Err(e.into()),
                        }
                    }
                    None => {
                        tracing::info!(%reason, "request without a usable id rejected");
                        let rejection = Rejection::new(reason, &msg.payload, seq);
                        self.js
                            .publish(subjects::REJECTED, serde_json::to_vec(&rejection)?.into())
                            .await?
                            .await?;
                        Ok(())
                    }
                }
            }
        }
    }

    /// Records the request as `received` (once per job id, ever) and plans it.
    async fn admit(&self, id: JobId, req: JobRequest) -> anyhow::Result<()> {
        let received = EventKind::Received {
            request: req.clone(),
        };
        let job = match self.log.append(&Job::new(id.clone()), received).await {
            Ok(stored) => {
                let mut job = Job::new(id.clone());
                job.apply(stored.seq, &stored.event);
                job
            }
            Err(e) if e.is_race() => {
                // Either a redelivery of a request this planner (or a copy) began, or a
                // repeated id. Only the former continues.
                let history = self.log.history(&id).await?;
                match history.as_slice() {
                    [first] if matches!(&first.event.kind, EventKind::Received { request } if *request == req) => {
                        Job::fold(id.clone(), [(first.seq, &first.event)])
                    }
                    _ => {
                        tracing::info!(job_id = %id, "repeated job id; the request is ignored");
                        return Ok(());
                    }
                }
            }
            Err(e) => return Err(e.into()),
        };
        // A planner stopping mid-plan leaves the request to be redelivered (to a copy, or to
        // itself after a restart) rather than half-decided.
        let outcome = tokio::select! {
            o = self.plan(&req) => o,
            _ = self.shutdown.cancelled() => anyhow::bail!("stopping before {id} was planned"),
        };
        if let Outcome::Reject(reason) = &outcome {
            tracing::info!(job_id = %id, %reason, "goal not planned");
        }
        let kind = match outcome {
            Outcome::Plan(p) => EventKind::Planned {
                plan_hash: plan_hash(&p.steps),
                steps: p.steps,
                summary: p.summary,
                planner: p.planner,
                model: p.model,
                usage: p.usage,
                lock: p.lock,
            },
            Outcome::Reject(reason) => EventKind::Rejected {
                reason,
                steps: vec![],
            },
        };
        match self.log.append(&job, kind).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_race() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
