//! Schedules: a job at every tick of a calendar. The types of the `skynet.api.schedules.*`
//! endpoints and of the record kept in the `skynet-schedules` KV bucket (one key per
//! schedule: its name), and the checks of a new schedule. What a tick does is decided in
//! [`crate::lifecycle::schedule`]; the calendar is [`calendar`].

pub mod calendar;

use serde::{Deserialize, Serialize};

use crate::event::{JobState, Risk};
use crate::ids::JobId;
use crate::job::{JobRequest, limits};

pub use calendar::{Calendar, CalendarError};

/// The longest schedule name.
pub const NAME_CHARS: usize = 32;
/// History entries a schedule keeps (the oldest go first; `created_by`/`created_at` stay).
pub const HISTORY: usize = 100;
/// `requested_by` of every tick's job: `schedule:<name>`.
pub const REQUESTED_BY_PREFIX: &str = "schedule:";

/// What a tick does while the previous job of the schedule has not ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// The tick makes no job (and is recorded in the history).
    #[default]
    Skip,
    /// The tick waits until the previous job ends; at most one waits.
    Queue,
    /// The previous job is cancelled; the tick's job starts once it has ended.
    Replace,
}

/// Ticks missed while nothing could fire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Missed ticks make no job.
    None,
    /// One job for all of them.
    #[default]
    One,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleState {
    Active,
    Paused,
    AwaitingApproval,
}

impl ScheduleState {
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleState::Active => "active",
            ScheduleState::Paused => "paused",
            ScheduleState::AwaitingApproval => "awaiting_approval",
        }
    }
}

/// One change to a schedule, or one tick that made no job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: String,
    pub by: String,
    /// `created`, `approved`, `paused`, `resumed`, `skipped`, `missed`, `queued`, `replaced`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A schedule, as the API returns it and the `skynet-schedules` bucket keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub name: String,
    pub cron: String,
    pub tz: String,
    pub state: ScheduleState,
    pub overlap: Overlap,
    pub catch_up: CatchUp,
    pub plan_hash: String,
    pub next_run: Option<String>,
    pub last_run: Option<String>,
    pub last_job_id: Option<JobId>,
    pub last_state: Option<JobState>,
    pub created_by: String,
    pub created_at: String,
    /// The plan, in words.
    #[serde(default)]
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<Risk>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// Who let the plan run unattended: `policy`, or the person who approved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// What every tick submits: the request with the planned steps (so it is planned as
    /// is and hashes to `plan_hash`).
    pub request: JobRequest,
    /// A tick waiting for the previous job to end (`overlap` `queue` or `replace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
}

impl Schedule {
    /// The calendar (checked when the schedule was created).
    pub fn calendar(&self) -> Result<Calendar, CalendarError> {
        Calendar::parse(&self.cron, Some(&self.tz))
    }

    pub fn next_run_s(&self) -> Option<i64> {
        secs(self.next_run.as_deref())
    }

    pub fn pending_s(&self) -> Option<i64> {
        secs(self.pending.as_deref())
    }

    /// Adds to the history, keeping it to [`HISTORY`] entries.
    pub fn record(&mut self, at_s: i64, by: &str, action: &str, detail: Option<String>) {
        self.history.push(HistoryEntry {
            at: wire_time(at_s),
            by: by.to_owned(),
            action: action.to_owned(),
            detail,
        });
        if self.history.len() > HISTORY {
            let extra = self.history.len() - HISTORY;
            self.history.drain(..extra);
        }
    }

    /// The request the tick at `tick_s` submits: its job id is `<name>-<UTC time>`.
    pub fn tick_request(&self, tick_s: i64) -> JobRequest {
        let mut r = self.request.clone();
        r.id = Some(tick_job_id(&self.name, tick_s));
        r.requested_by = Some(format!("{REQUESTED_BY_PREFIX}{}", self.name));
        r
    }
}

fn secs(t: Option<&str>) -> Option<i64> {
    crate::time::parse(t?).map(|t| t.unix_timestamp())
}

/// A Unix time in seconds on the wire.
pub fn wire_time(s: i64) -> String {
    crate::time::from_unix_ms(s.saturating_mul(1000))
}

/// The job of the tick at `tick_s`: `<name>-<UTC yyyymmddHHMMSS>`. A name is at most 32
/// characters of the job id alphabet, so this is always a valid job id.
pub fn tick_job_id(name: &str, tick_s: i64) -> JobId {
    let stamp = jiff::Timestamp::from_second(tick_s)
        .map(|t| t.strftime("%Y%m%d%H%M%S").to_string())
        .unwrap_or_else(|_| tick_s.to_string());
    JobId::parse(&format!("{name}-{stamp}")).unwrap_or_else(|_| JobId::derive(name))
}

/// The schedule a job belongs to, from its `requested_by` and id (both must agree).
pub fn schedule_of(job: &JobId, requested_by: Option<&str>) -> Option<String> {
    let name = requested_by?.strip_prefix(REQUESTED_BY_PREFIX)?;
    let rest = job.as_str().strip_prefix(name)?.strip_prefix('-')?;
    (rest.len() == 14 && rest.chars().all(|c| c.is_ascii_digit()) && check_name(name).is_ok())
        .then(|| name.to_owned())
}

/// `[a-z0-9][a-z0-9_-]{0,31}`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok_first = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok_rest = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if name.is_empty() || name.chars().count() > NAME_CHARS || !ok_first || !ok_rest {
        return Err(format!(
            "`name`: {name:?} is not a schedule name ([a-z0-9][a-z0-9_-]{{0,31}})"
        ));
    }
    Ok(())
}

/// `skynet.api.schedules.create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub name: String,
    pub cron: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    pub request: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// A create request that passed every check.
#[derive(Debug, Clone)]
pub struct Checked {
    pub name: String,
    pub cron: String,
    pub tz: String,
    pub calendar: Calendar,
    pub request: JobRequest,
    pub overlap: Overlap,
    pub catch_up: CatchUp,
    pub by: String,
}

impl CreateRequest {
    /// Checks everything; the error names the field (`name`, `cron`, `tz`, `request...`,
    /// `overlap`, `catch_up`, `by`).
    pub fn check(&self) -> Result<Checked, String> {
        check_name(&self.name)?;
        let calendar =
            Calendar::parse(&self.cron, self.tz.as_deref()).map_err(|e| e.to_string())?;
        let tz = self
            .tz
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or("UTC")
            .to_owned();
        if !self.request.is_object() {
            return Err("`request`: must be a JobRequest object".into());
        }
        if self.request.get("id").is_some() {
            return Err(
                "`request.id`: a schedule's request has no id (each tick's job is <name>-<time>)"
                    .into(),
            );
        }
        let bytes = serde_json::to_vec(&self.request).map_err(|e| format!("`request`: {e}"))?;
        let mut request = JobRequest::from_slice(&bytes).map_err(|e| format!("`request`: {e}"))?;
        request.requested_by = Some(format!("{REQUESTED_BY_PREFIX}{}", self.name));
        let overlap = match self.overlap.as_deref() {
            None => Overlap::Skip,
            Some("skip") => Overlap::Skip,
            Some("queue") => Overlap::Queue,
            Some("replace") => Overlap::Replace,
            Some(o) => {
                return Err(format!(
                    "`overlap`: unknown {o:?}; one of skip, queue, replace"
                ));
            }
        };
        let catch_up = match self.catch_up.as_deref() {
            None => CatchUp::One,
            Some("one") => CatchUp::One,
            Some("none") => CatchUp::None,
            Some(c) => return Err(format!("`catch_up`: unknown {c:?}; one of none, one")),
        };
        let by = self
            .by
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .unwrap_or("api");
        if by.chars().count() > limits::REQUESTED_BY_CHARS || by.chars().any(char::is_control) {
            return Err("`by`: too long or contains control characters".into());
        }
        Ok(Checked {
            name: self.name.clone(),
            cron: self.cron.trim().to_owned(),
            tz,
            calendar,
            request,
            overlap,
            catch_up,
            by: by.to_owned(),
        })
    }
}

/// `schedules.get`, `.pause`, `.resume`, `.delete`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameRequest {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// `schedules.approve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    pub name: String,
    pub plan_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The approver's signature over the name, `plan_hash` and verdict
    /// (`crate::approval::ScheduleDecision`): with identities on, policy records the identity
    /// whose key verifies, never `by`, and refuses unsigned approvals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::approval::DecisionSignature>,
}

/// `schedules.list`'s reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListReply {
    pub schedules: Vec<Schedule>,
}

/// `schedules.delete`'s reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deleted {
    pub name: String,
    pub deleted: bool,
}

/// The internal `schedules.judge` (policy): what policy says about a plan, once, when a
/// schedule is created.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeRequest {
    pub steps: Vec<crate::job::Step>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    Approve,
    Deny,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JudgeReply {
    pub verdict: Verdict,
    pub risk: Risk,
    pub reasons: Vec<String>,
    pub plan_hash: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(v: serde_json::Value) -> Result<Checked, String> {
        serde_json::from_value::<CreateRequest>(v)
            .map_err(|e| e.to_string())?
            .check()
    }

    #[test]
    fn bad_input_names_the_field() {
        let ok = serde_json::json!({"goal": "g"});
        let e = |v| create(v).unwrap_err();
        assert!(
            e(serde_json::json!({"name": "Bad", "cron": "@daily", "request": ok}))
                .starts_with("`name`")
        );
        assert!(
            e(serde_json::json!({"name": "a".repeat(33), "cron": "@daily", "request": ok}))
                .starts_with("`name`")
        );
        assert!(
            e(serde_json::json!({"name": "n", "cron": "* *", "request": ok})).starts_with("`cron`")
        );
        assert!(e(serde_json::json!({"name": "n", "cron": "@daily", "tz": "Nowhere/City", "request": ok})).starts_with("`tz`"));
        assert!(e(serde_json::json!({"name": "n", "cron": "@daily", "request": {"id": "x", "goal": "g"}})).starts_with("`request.id`"));
        assert!(e(serde_json::json!({"name": "n", "cron": "@daily", "request": {"goal": "g", "priority": "urgent"}})).contains("`priority`"));
        assert!(e(serde_json::json!({"name": "n", "cron": "@daily", "request": {"goal": "g", "lock": "l".repeat(129)}})).contains("`lock`"));
        assert!(
            e(serde_json::json!({"name": "n", "cron": "@daily", "request": ok, "overlap": "pile"}))
                .starts_with("`overlap`")
        );
        assert!(
            e(serde_json::json!({"name": "n", "cron": "@daily", "request": ok, "catch_up": "all"}))
                .starts_with("`catch_up`")
        );
        let c = create(serde_json::json!({"name": "n-1_x", "cron": "@every 1s", "request": ok}))
            .unwrap();
        assert_eq!(
            (c.overlap, c.catch_up, c.tz.as_str()),
            (Overlap::Skip, CatchUp::One, "UTC")
        );
        assert_eq!(c.request.requested_by.as_deref(), Some("schedule:n-1_x"));
    }

    #[test]
    fn tick_job_ids_are_the_name_and_the_utc_time_and_lead_back_to_the_schedule() {
        let id = tick_job_id("nightly", 1_764_100_800);
        assert_eq!(id.as_str(), "nightly-20251125200000");
        let longest = "a".repeat(NAME_CHARS);
        assert_eq!(tick_job_id(&longest, 0).as_str().len(), 47);
        assert_eq!(
            schedule_of(&id, Some("schedule:nightly")).as_deref(),
            Some("nightly")
        );
        assert_eq!(schedule_of(&id, Some("schedule:night")), None);
        assert_eq!(schedule_of(&id, Some("cli:alice")), None);
        assert_eq!(
            schedule_of(
                &JobId::parse("nightly-x").unwrap(),
                Some("schedule:nightly")
            ),
            None
        );
    }
}
