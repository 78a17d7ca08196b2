//! Requests and replies of the NATS service `skynet` (`skynet.api.<endpoint>`).

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::event::{Event, EventKind, JobState, StepResult};
use crate::ids::{JobId, WorkerId};
use crate::job::{JobRequest, Step};

/// An API error: an HTTP-like code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} ({code})")]
pub struct ApiError {
    pub code: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(400, m)
    }
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(403, m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(404, m)
    }
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(409, m)
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(500, m)
    }
}

/// The body of every error reply: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

/// The largest API request any endpoint reads (jobs.submit carries a whole JobRequest).
pub const MAX_API_REQUEST_BYTES: usize = crate::MAX_REQUEST_BYTES;

/// Parses an API request body. An empty body reads as `{}`; anything that is not valid
/// UTF-8 JSON of the right shape is a 400 naming the problem.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.len() > MAX_API_REQUEST_BYTES {
        return Err(ApiError::bad_request(format!(
            "request is {} bytes; the limit is {MAX_API_REQUEST_BYTES}",
            bytes.len()
        )));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request("request is not valid UTF-8"))?;
    let text = if text.trim().is_empty() { "{}" } else { text };
    serde_json::from_str(text).map_err(|e| ApiError::bad_request(format!("invalid request: {e}")))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitReply {
    pub job_id: JobId,
}

/// `jobs.get`: a job id or a unique prefix of at least 6 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetRequest {
    pub job_id: String,
}

/// The shortest prefix `jobs.get` accepts.
pub const MIN_PREFIX: usize = 6;

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    pub state: JobState,
    /// The exit code a caller should take: 0 on success, the failing step's code on failure.
    pub exit_code: Option<i32>,
    pub steps: Vec<StepResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl JobResult {
    /// The result a terminal event stands for; `None` for a state that is not terminal.
    pub fn from_event(kind: &EventKind) -> Option<JobResult> {
        let state = kind.state();
        if !state.is_terminal() {
            return None;
        }
        let (steps, error, reason) = match kind {
            EventKind::Denied { reason, steps, .. } | EventKind::Rejected { reason, steps } => {
                (steps.clone(), None, Some(reason.clone()))
            }
            other => {
                let f = other.as_finished().cloned().unwrap_or_default();
                (f.steps, f.error, None)
            }
        };
        let exit_code = match state {
            JobState::Succeeded => Some(0),
            JobState::Failed => Some(
                steps
                    .iter()
                    .find_map(|s| s.exit_code.filter(|c| *c != 0))
                    .unwrap_or(1),
            ),
            _ => None,
        };
        Some(JobResult {
            state,
            exit_code,
            steps,
            error,
            reason,
        })
    }
}

/// A whole job, as `jobs.get` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub job_id: JobId,
    pub state: JobState,
    pub request: Option<JobRequest>,
    pub steps: Vec<Step>,
    pub worker: Option<WorkerId>,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_hash: Option<String>,
    pub history: Vec<Event>,
    pub result: Option<JobResult>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListRequest {
    #[serde(default)]
    pub state: Option<JobState>,
    #[serde(default)]
    pub limit: Option<u32>,
}

/// Most jobs `jobs.list` returns at once.
pub const MAX_LIST: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSummary {
    pub job_id: JobId,
    pub state: JobState,
    pub goal: Option<String>,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerId>,
    /// The plan's summary, once planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListReply {
    pub jobs: Vec<JobSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    pub job_id: JobId,
    #[serde(default)]
    pub by: Option<String>,
}

/// `jobs.approve` and `jobs.deny`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    pub job_id: JobId,
    #[serde(default)]
    pub by: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// The plan hash (or a prefix of at least 12 digits) the person saw; when given, the
    /// decision only applies to that exact plan.
    #[serde(default)]
    pub plan_hash: Option<String>,
    /// The decider's signature (`skynet_protocol::approval`): with identities on, policy
    /// records the identity whose key verifies, never `by`, and refuses unsigned decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::approval::DecisionSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateReply {
    pub job_id: JobId,
    pub state: JobState,
}

/// `jobs.logs`: the output from byte `offset`, at most `max_bytes` of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsRequest {
    pub job_id: JobId,
    #[serde(default)]
    pub offset: Option<u64>,
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

/// Most output one `jobs.logs` reply carries; callers page with `offset`.
pub const MAX_LOG_REPLY_BYTES: u64 = 256 * 1024;

/// One chunk of output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    pub step: Option<usize>,
    /// `stdout`, `stderr` or `system`.
    pub stream: String,
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsReply {
    pub job_id: JobId,
    /// `live` (the log stream) or `archive`.
    pub source: String,
    /// The output as text (invalid UTF-8 replaced), in the order it was produced.
    pub output: String,
    /// The same output split by stream and step.
    pub chunks: Vec<LogChunk>,
    pub offset: u64,
    pub next_offset: u64,
    /// True when `next_offset` is the end of the output.
    pub complete: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerStatus {
    Online,
    Offline,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerSummary {
    pub id: WorkerId,
    pub labels: Vec<String>,
    pub status: WorkerStatus,
    pub last_seen: String,
    pub running: Vec<JobId>,
    #[serde(default)]
    pub max_jobs: u32,
    #[serde(default)]
    pub roots: Vec<String>,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub arch: String,
    #[serde(default)]
    pub tools: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkersReply {
    pub workers: Vec<WorkerSummary>,
}

/// `workers.list` takes `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_unknown_fields_are_400() {
        assert_eq!(parse::<GetRequest>(b"\xff").unwrap_err().code, 400);
        assert_eq!(parse::<GetRequest>(b"[1,2").unwrap_err().code, 400);
        let e = parse::<CancelRequest>(br#"{"job_id":"a","x":1}"#).unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");
        let e = parse::<CancelRequest>(br#"{"job_id":"a.b"}"#).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(parse::<Empty>(b"").unwrap(), Empty {});
        assert_eq!(parse::<ListRequest>(b"  ").unwrap(), ListRequest::default());
        let big = vec![b' '; MAX_API_REQUEST_BYTES + 1];
        assert_eq!(parse::<Empty>(&big).unwrap_err().code, 400);
    }

    #[test]
    fn error_body_has_the_contract_shape() {
        let v = serde_json::to_value(ErrorBody {
            error: ApiError::not_found("no such job"),
        })
        .unwrap();
        assert_eq!(v["error"]["code"], 404);
        assert_eq!(v["error"]["message"], "no such job");
    }
}
