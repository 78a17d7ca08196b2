//! `skynet.api.schedules.create`: a new schedule is checked, planned (as a job would be)
//! and judged by policy once (`schedules.judge`), then written to the `skynet-schedules`
//! bucket only if no schedule of that name exists. Nothing is created when any of it fails.

use std::sync::Arc;

use async_nats::Client;
use async_nats::jetstream::kv;
use bytes::Bytes;
use skynet_protocol::api::{ApiError, parse};
use skynet_protocol::lifecycle::schedule::SCHEDULER;
use skynet_protocol::schedule::{
    CreateRequest, JudgeReply, JudgeRequest, Schedule, ScheduleState, Verdict, wire_time,
};
use skynet_protocol::spec::plan_hash;
use skynet_protocol::subjects;
use skynet_runtime::api::{self, CallError};

use crate::Intake;
use crate::plan::Outcome;

pub(crate) async fn create(
    intake: &Arc<Intake>,
    client: &Client,
    kv: &kv::Store,
    payload: &Bytes,
) -> Result<Schedule, ApiError> {
    let req: CreateRequest = parse(payload)?;
    let c = req.check().map_err(ApiError::bad_request)?;
    let exists = |name: &str| {
        ApiError::bad_request(format!("`name`: a schedule named {name} already exists"))
    };
    if kv
        .get(&c.name)
        .await
        .map_err(|e| ApiError::internal(format!("reading schedules: {e}")))?
        .is_some()
    {
        return Err(exists(&c.name));
    }
    let plan = match intake.plan(&c.request).await {
        Outcome::Plan(p) => p,
        Outcome::Reject(reason) => {
            return Err(ApiError::bad_request(format!("`request`: {reason}")));
        }
    };
    let hash = plan_hash(&plan.steps);
    let judged: JudgeReply = api::call(
        client,
        subjects::api::SCHEDULES_JUDGE,
        &JudgeRequest {
            steps: plan.steps.clone(),
        },
    )
    .await
    .map_err(|e| match e {
        CallError::Api(e) => e,
        other => ApiError::internal(format!("asking policy about the plan: {other}")),
    })?;
    if judged.plan_hash != hash {
        return Err(ApiError::internal("policy judged another plan"));
    }
    let now_s = skynet_protocol::time::now_ms() / 1000;
    let (state, approved_by, next_run) = match judged.verdict {
        Verdict::Deny => {
            return Err(ApiError::bad_request(format!(
                "`request`: policy denies the plan: {}",
                judged.reasons.join("; ")
            )));
        }
        Verdict::Allow => (
            ScheduleState::Active,
            Some("policy".to_owned()),
            c.calendar.next_after(now_s).map(wire_time),
        ),
        Verdict::Approve => (ScheduleState::AwaitingApproval, None, None),
    };
    let mut request = c.request.clone();
    request.steps = Some(plan.steps);
    if request.lock.is_none() {
        request.lock = plan.lock;
    }
    let mut schedule = Schedule {
        name: c.name.clone(),
        cron: c.cron,
        tz: c.tz,
        state,
        overlap: c.overlap,
        catch_up: c.catch_up,
        plan_hash: hash,
        next_run,
        last_run: None,
        last_job_id: None,
        last_state: None,
        created_by: c.by.clone(),
        created_at: wire_time(now_s),
        summary: plan.summary,
        risk: Some(judged.risk),
        reasons: judged.reasons,
        approved_by,
        request,
        pending: None,
        history: vec![],
    };
    schedule.record(now_s, &c.by, "created", None);
    if state == ScheduleState::Active {
        schedule.record(now_s, SCHEDULER, "approved", Some("by policy".into()));
    }
    let body = serde_json::to_vec(&schedule).map_err(|e| ApiError::internal(e.to_string()))?;
    match kv.create(&c.name, body.into()).await {
        Ok(_) => {
            tracing::info!(schedule = %c.name, state = state.as_str(), by = %c.by, "schedule created");
            Ok(schedule)
        }
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Err(exists(&c.name)),
        Err(e) => Err(ApiError::internal(format!("writing the schedule: {e}"))),
    }
}
