//! The LLM planners: Claude through the Anthropic Messages API and any OpenAI-compatible
//! chat-completions API, both forced to call one tool whose input is the plan.
//!
//! For both: the answer is parsed into protocol steps and validated (skills expanded); an
//! invalid plan gets one repair round trip that shows the model the error, and a second
//! invalid plan rejects the job with that error. Calls that fail with 429, 529 or 5xx (or
//! cannot connect) are retried with exponential backoff and jitter, never sooner than the
//! server's `retry-after`; other 4xx and spend-limit refusals are not retried. The whole
//! planning of one goal has a deadline.

pub mod anthropic;
pub mod openai;
pub mod prompt;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use serde_json::Value;
use skynet_protocol::event::Usage;
use skynet_protocol::job::validate_steps;
use skynet_protocol::worker::WorkerInfo;
use skynet_protocol::{JobRequest, Step};
use tokio::time::Instant;

use crate::config::{LlmConfig, Provider, RetryPolicy};
use crate::plan::{Outcome, Plan};
use crate::skills::Skills;

/// Why an API call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    /// The API answered with an error status.
    #[error("{status} {kind}: {message}{}", if *spend_limit { " (a spend limit, so it was not retried)" } else { "" })]
    Api {
        status: u16,
        /// The error's `type` (`rate_limit_error`, `invalid_request_error`, ...).
        kind: String,
        message: String,
        retry_after: Option<Duration>,
        spend_limit: bool,
    },
    #[error("could not reach the API: {0}")]
    Transport(String),
    #[error("no plan within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: Box<LlmError> },
    /// A success status with a body that is not what the API promises.
    #[error("the API's answer is unreadable: {0}")]
    BadResponse(String),
}

impl LlmError {
    /// 429, 529 and 5xx (unless a spend limit), and trouble reaching the server.
    pub fn retryable(&self) -> bool {
        match self {
            LlmError::Api {
                status,
                spend_limit,
                ..
            } => !spend_limit && (*status == 429 || *status == 529 || (500..600).contains(status)),
            LlmError::Transport(_) => true,
            _ => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Codes and types by which the APIs say that money, not load, is the problem.
const SPEND_LIMIT_CODES: &[&str] = &[
    "insufficient_quota",
    "billing_hard_limit_reached",
    "billing_not_active",
    "billing_error",
    "enforced_spend_limit_reached",
    "credit_balance_exhausted",
    "spend_limit_reached",
];

/// Reads an error answer: Anthropic's `{"type":"error","error":{"type","message"}}`,
/// OpenAI's `{"error":{"message","type","code"}}`, or a local server's `{"error":"..."}`.
pub fn api_error(status: u16, body: &[u8], retry_after: Option<Duration>) -> LlmError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let e = &v["error"];
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let (kind, message, code) = match e {
        Value::String(s) => ("error".to_owned(), s.clone(), None),
        _ => (
            text(&e["type"]).unwrap_or_else(|| "error".into()),
            text(&e["message"]).unwrap_or_else(|| {
                let raw = String::from_utf8_lossy(body);
                clip(raw.trim(), 200)
            }),
            text(&e["code"]).or_else(|| text(&e["details"]["error_code"])),
        ),
    };
    let lower = message.to_lowercase();
    let spend_limit = status == 402
        || SPEND_LIMIT_CODES.contains(&kind.as_str())
        || code
            .as_deref()
            .is_some_and(|c| SPEND_LIMIT_CODES.contains(&c))
        || [
            "spend limit",
            "credit balance",
            "exceeded your current quota",
            "usage limit",
        ]
        .iter()
        .any(|p| lower.contains(p));
    LlmError::Api {
        status,
        kind,
        message,
        retry_after,
        spend_limit,
    }
}

/// How long the server asks to wait: `retry-after-ms` (OpenAI), else `retry-after` in
/// seconds or as an HTTP date.
pub fn retry_after(retry_after_ms: Option<&str>, retry_after: Option<&str>) -> Option<Duration> {
    const LONGEST: f64 = 24.0 * 3600.0;
    let secs = |s: &str| {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    if let Some(ms) = retry_after_ms.and_then(secs) {
        return Some(Duration::from_secs_f64((ms / 1000.0).min(LONGEST)));
    }
    let v = retry_after?.trim();
    if let Some(s) = secs(v) {
        return Some(Duration::from_secs_f64(s.min(LONGEST)));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or_default()
            .min(Duration::from_secs_f64(LONGEST)),
    )
}

fn header_retry_after(h: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
    retry_after(get("retry-after-ms"), get("retry-after"))
}

/// A number in [0, 1) that differs from call to call, for jitter. The standard library's
/// per-instance random hash keys are random enough for spreading retries.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (0-based): the exponential step, of which
    /// the upper half is random.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let step = self
            .initial
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max);
        step / 2 + step.mul_f64(jitter() / 2.0)
    }
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

/// One answer of a model, in provider-neutral terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub model: Option<String>,
    pub usage: Usage,
    /// The plan tool's input, or why the answer holds none that can be read.
    pub input: Result<Value, String>,
}

/// A checked plan from a model.
#[derive(Debug, Clone, PartialEq)]
pub enum Checked {
    Plan {
        /// The steps as the model wrote them (skills not yet expanded).
        original: Vec<Step>,
        /// What will be proposed to policy: low-level actions only.
        steps: Vec<Step>,
        summary: String,
    },
    /// No steps: the model declined, and the summary says why.
    Declined(String),
}

/// Parses and validates a plan tool's input. The error is what the model is shown in the
/// repair round, and the rejection reason if the repair fails too.
pub fn check(input: &Value, skills: &Skills) -> Result<Checked, String> {
    let Some(obj) = input.as_object() else {
        return Err(format!(
            "the plan must be an object with `summary` and `steps`, not {}",
            clip(&input.to_string(), 80)
        ));
    };
    if let Some(k) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "summary" | "steps"))
    {
        return Err(format!(
            "unknown field `{k}` in the plan (it has `summary` and `steps`)"
        ));
    }
    let summary = match obj.get("summary") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => tidy_summary(s),
        Some(other) => {
            return Err(format!(
                "`summary` must be a string, not {}",
                clip(&other.to_string(), 60)
            ));
        }
    };
    let raw = match obj.get("steps") {
        Some(Value::Array(items)) => items,
        Some(Value::String(s)) => {
            // Some models send a nested object as a JSON string; accept that, strictly.
            return match serde_json::from_str::<Value>(s) {
                Ok(v @ Value::Array(_)) => {
                    let mut fixed = obj.clone();
                    fixed.insert("steps".into(), v);
                    check(&Value::Object(fixed), skills)
                }
                _ => Err("`steps` must be an array of steps".into()),
            };
        }
        _ => return Err("the plan needs `steps`, an array of steps".into()),
    };
    if raw.is_empty() {
        let why = if summary.is_empty() {
            "it gave no reason".to_owned()
        } else {
            summary
        };
        return Ok(Checked::Declined(why));
    }
    let mut original = Vec::with_capacity(raw.len());
    for (i, item) in raw.iter().enumerate() {
        let step: Step =
            serde_json::from_value(item.clone()).map_err(|e| format!("`steps[{i}]`: {e}"))?;
        original.push(step);
    }
    validate_steps(&original, true).map_err(|e| e.to_string())?;
    let steps = skills.expand(&original).map_err(|e| e.to_string())?;
    validate_steps(&steps, false)
        .map_err(|e| format!("once its skills are expanded, the plan is not valid: {e}"))?;
    Ok(Checked::Plan {
        original,
        steps,
        summary,
    })
}

/// One paragraph: whitespace collapsed, control characters dropped, at most 1000 characters.
fn tidy_summary(s: &str) -> String {
    let words: Vec<&str> = s.split_whitespace().collect();
    let one: String = words
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    clip(&one, 1000)
}

/// What planning one goal with an LLM came to.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmResult {
    pub outcome: Outcome,
    /// Tokens spent, on every answer (the repair round's too).
    pub usage: Usage,
    /// Answers received.
    pub answers: u32,
    pub model: String,
}

/// A planner backed by an LLM API.
pub struct LlmPlanner {
    cfg: LlmConfig,
    http: reqwest::Client,
    skills: Arc<Skills>,
    policy_brief: Arc<str>,
    schema: Value,
}

impl std::fmt::Debug for LlmPlanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmPlanner")
            .field("cfg", &self.cfg)
            .finish()
    }
}

#[derive(Default)]
struct Tally {
    usage: Usage,
    answers: u32,
    model: Option<String>,
}

impl LlmPlanner {
    pub fn new(
        cfg: LlmConfig,
        skills: Arc<Skills>,
        policy_brief: Arc<str>,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("skynet-planner/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        let schema = prompt::tool_schema(&skills);
        Ok(Self {
            cfg,
            http,
            skills,
            policy_brief,
            schema,
        })
    }

    pub fn name(&self) -> &'static str {
        self.cfg.provider.name()
    }

    /// Plans `goal` for `req` given the workers online. Never fails: problems become a
    /// rejection with a reason.
    pub async fn plan(&self, goal: &str, req: &JobRequest, workers: &[WorkerInfo]) -> LlmResult {
        let deadline = Instant::now() + self.cfg.timeout;
        let mut tally = Tally::default();
        let talk = self.converse(goal, req, workers, deadline, &mut tally);
        let outcome = match tokio::time::timeout(self.cfg.timeout, talk).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => Outcome::Reject(format!(
                "the {} planner could not plan this goal: {e}",
                self.name()
            )),
            Err(_) => Outcome::Reject(format!(
                "the {} planner could not plan this goal: {}",
                self.name(),
                LlmError::Timeout(self.cfg.timeout)
            )),
        };
        LlmResult {
            outcome,
            usage: tally.usage,
            answers: tally.answers,
            model: tally.model.unwrap_or_else(|| self.cfg.model.clone()),
        }
    }

    async fn converse(
        &self,
        goal: &str,
        req: &JobRequest,
        workers: &[WorkerInfo],
        deadline: Instant,
        tally: &mut Tally,
    ) -> Result<Outcome, LlmError> {
        let system = prompt::system_prompt(&self.skills, &self.policy_brief, workers, req);
        let user = prompt::user_message(goal);
        let mut messages = match self.cfg.provider {
            Provider::Anthropic => anthropic::initial(&user),
            Provider::OpenAi => openai::initial(&system, &user),
        };
        let (endpoint, headers) = match self.cfg.provider {
            Provider::Anthropic => (
                anthropic::endpoint(&self.cfg.base_url),
                anthropic::headers(self.cfg.api_key.as_ref()),
            ),
            Provider::OpenAi => (
                openai::endpoint(&self.cfg.base_url),
                openai::headers(self.cfg.api_key.as_ref()),
            ),
        };
        for round in 0..2 {
            let body = match self.cfg.provider {
                Provider::Anthropic => {
                    anthropic::request(&self.cfg, &system, &messages, &self.schema)
                }
                Provider::OpenAi => openai::request(&self.cfg, &messages, &self.schema),
            };
            let reply = self.post(&endpoint, &headers, &body, deadline).await?;
            let (answer, turn) = match self.cfg.provider {
                Provider::Anthropic => anthropic::read(&reply),
                Provider::OpenAi => openai::read(&reply),
            }
            .map_err(LlmError::BadResponse)?;
            tally.answers += 1;
            tally.usage.input_tokens += answer.usage.input_tokens;
            tally.usage.output_tokens += answer.usage.output_tokens;
            if answer.model.is_some() {
                tally.model = answer.model.clone();
            }
            let model = tally
                .model
                .clone()
                .unwrap_or_else(|| self.cfg.model.clone());
            match answer.input.clone().and_then(|i| check(&i, &self.skills)) {
                Ok(Checked::Plan {
                    original,
                    steps,
                    summary,
                }) => {
                    let summary = if summary.is_empty() {
                        crate::plan::summarize(&original, &self.skills)
                    } else {
                        summary
                    };
                    return Ok(Outcome::Plan(Plan {
                        lock: crate::plan::default_lock(&original),
                        steps,
                        summary,
                        planner: self.name().into(),
                        model: Some(model),
                        usage: Some(tally.usage.clone()),
                    }));
                }
                Ok(Checked::Declined(why)) => {
                    return Ok(Outcome::Reject(format!(
                        "the {} planner made no plan: {why}",
                        self.name()
                    )));
                }
                Err(e) if round == 0 => {
                    tracing::info!(error = %e, "the model's plan is invalid; asking it to repair");
                    let text = prompt::repair_message(&e);
                    match self.cfg.provider {
                        Provider::Anthropic => anthropic::repair(&mut messages, turn, &text),
                        Provider::OpenAi => openai::repair(&mut messages, turn, &text),
                    }
                }
                Err(e) => {
                    return Ok(Outcome::Reject(format!(
                        "the {} planner's plan is not valid, even after a repair: {e}",
                        self.name()
                    )));
                }
            }
        }
        Err(LlmError::BadResponse(
            "no plan after the repair round".into(),
        ))
    }

    /// POSTs `body`, retrying what is worth retrying until `deadline`.
    async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: &Value,
        deadline: Instant,
    ) -> Result<Value, LlmError> {
        let policy = &self.cfg.retry;
        let mut attempt: u32 = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LlmError::Timeout(self.cfg.timeout));
            }
            let mut request = self.http.post(url).timeout(left).json(body);
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            let error = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let wait = header_retry_after(response.headers());
                    match response.bytes().await {
                        Ok(bytes) if (200..300).contains(&status) => {
                            return serde_json::from_slice(&bytes)
                                .map_err(|e| LlmError::BadResponse(format!("not JSON ({e})")));
                        }
                        Ok(bytes) => api_error(status, &bytes, wait),
                        Err(e) => LlmError::Transport(e.to_string()),
                    }
                }
                Err(e) if e.is_timeout() => return Err(LlmError::Timeout(self.cfg.timeout)),
                Err(e) => LlmError::Transport(transport_text(&e)),
            };
            if !error.retryable() {
                return Err(error);
            }
            if attempt >= policy.max_retries {
                return Err(LlmError::GaveUp {
                    attempts: attempt + 1,
                    last: Box::new(error),
                });
            }
            let wait = policy
                .backoff(attempt)
                .max(error.retry_after().unwrap_or_default());
            if Instant::now() + wait >= deadline {
                return Err(LlmError::GaveUp {
                    attempts: attempt + 1,
                    last: Box::new(error),
                });
            }
            tracing::info!(
                planner = self.name(),
                %error,
                wait_ms = wait.as_millis() as u64,
                retry = attempt + 1,
                "LLM call failed; retrying"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// A transport error with its causes (reqwest's own text omits them).
fn transport_text(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rate_limits_overload_and_server_errors_are_retried_and_nothing_else() {
        let e = |status: u16, body: Value| api_error(status, body.to_string().as_bytes(), None);
        let anthropic =
            |kind: &str| json!({"type": "error", "error": {"type": kind, "message": "m"}});
        assert!(e(429, anthropic("rate_limit_error")).retryable());
        assert!(e(529, anthropic("overloaded_error")).retryable());
        assert!(e(500, anthropic("api_error")).retryable());
        assert!(
            e(
                503,
                json!({"error": {"message": "busy", "type": "server_error"}})
            )
            .retryable()
        );
        assert!(!e(400, anthropic("invalid_request_error")).retryable());
        assert!(!e(401, anthropic("authentication_error")).retryable());
        assert!(!e(404, json!({"error": "model 'x' not found"})).retryable());
        assert!(LlmError::Transport("refused".into()).retryable());
        // Spend limits look like rate limits but waiting does not help.
        let spend = e(
            429,
            json!({"type": "error", "error": {"type": "rate_limit_error",
            "message": "You have reached your spend limit.", "details": {"error_code": "enforced_spend_limit_reached"}}}),
        );
        assert!(!spend.retryable(), "{spend}");
        assert!(spend.to_string().contains("not retried"));
        let quota = e(
            429,
            json!({"error": {"message": "You exceeded your current quota, please check your plan and billing details.",
            "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}),
        );
        assert!(!quota.retryable());
        assert!(!e(402, anthropic("billing_error")).retryable());
        assert_eq!(
            e(400, anthropic("invalid_request_error")).to_string(),
            "400 invalid_request_error: m"
        );
        assert_eq!(e(502, json!(null)).to_string(), "502 error: null");
    }

    #[test]
    fn retry_after_is_read_in_its_three_forms() {
        assert_eq!(retry_after(None, Some("3")), Some(Duration::from_secs(3)));
        assert_eq!(
            retry_after(Some("1500"), Some("3")),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after(None, Some("0.25")),
            Some(Duration::from_millis(250))
        );
        assert_eq!(retry_after(None, Some("garbage")), None);
        assert_eq!(retry_after(None, Some("-1")), None);
        assert_eq!(retry_after(None, None), None);
        let later = SystemTime::now() + Duration::from_secs(120);
        let d = retry_after(None, Some(&httpdate::fmt_http_date(later))).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(
            retry_after(None, Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let p = RetryPolicy {
            max_retries: 5,
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        for (attempt, step) in [
            (0, 100),
            (1, 200),
            (2, 400),
            (3, 800),
            (4, 1000),
            (30, 1000),
        ] {
            let step = Duration::from_millis(step);
            for _ in 0..20 {
                let d = p.backoff(attempt);
                assert!(d >= step / 2 && d <= step, "attempt {attempt}: {d:?}");
            }
        }
        let waits: std::collections::HashSet<Duration> = (0..20).map(|_| p.backoff(3)).collect();
        assert!(waits.len() > 1, "no jitter: {waits:?}");
    }

    fn skills() -> Skills {
        Skills::builtin().unwrap()
    }

    #[test]
    fn a_valid_plan_is_checked_and_its_skills_expanded() {
        let input = json!({"summary": "Runs the\n tests.", "steps": [
            {"action": "skill", "name": "run_tests", "args": {"dir": "~/app"}},
            {"action": "file_read", "path": "~/app/README.md"}
        ]});
        let Checked::Plan {
            original,
            steps,
            summary,
        } = check(&input, &skills()).unwrap()
        else {
            panic!()
        };
        assert_eq!(summary, "Runs the tests.");
        assert_eq!(original.len(), 2);
        assert_eq!(steps.len(), 2);
        assert!(matches!(&steps[0], Step::Shell { cwd: Some(d), .. } if d == "~/app"));
    }

    #[test]
    fn invalid_plans_get_errors_a_model_can_act_on() {
        for (input, wanted) in [
            (json!("run ls"), "must be an object"),
            (
                json!({"steps": [{"action": "shell", "command": "ls"}]}),
                "`steps[0]`: unknown field `command`",
            ),
            (
                json!({"steps": [{"action": "bash", "cmd": "ls"}]}),
                "`steps[0]`: unknown variant `bash`",
            ),
            (
                json!({"steps": [{"action": "shell", "cmd": "ls", "argv": ["ls"]}]}),
                "exactly one of `cmd` and `argv`",
            ),
            (
                json!({"steps": [{"action": "skill", "name": "run_tests", "args": {}}]}),
                "argument `dir` is required",
            ),
            (
                json!({"steps": [{"action": "skill", "name": "deploy", "args": {}}]}),
                "there is no skill \"deploy\"",
            ),
            (json!({"plan": []}), "unknown field `plan`"),
            (json!({"summary": "s"}), "needs `steps`"),
            (
                json!({"summary": 3, "steps": []}),
                "`summary` must be a string",
            ),
        ] {
            let e = check(&input, &skills()).unwrap_err();
            assert!(e.contains(wanted), "{wanted:?} not in {e:?}");
        }
        let too_many: Vec<Value> = (0..40)
            .map(|_| json!({"action": "skill", "name": "git_commit", "args": {"repo": "~/r", "message": "m"}}))
            .collect();
        let e = check(&json!({"steps": too_many}), &skills()).unwrap_err();
        assert!(e.contains("once its skills are expanded"), "{e}");
    }

    #[test]
    fn no_steps_is_a_refusal_with_the_models_reason() {
        assert_eq!(
            check(
                &json!({"summary": "That would delete your home.", "steps": []}),
                &skills()
            )
            .unwrap(),
            Checked::Declined("That would delete your home.".into())
        );
        assert!(matches!(
            check(
                &json!({"steps": "[{\"action\":\"file_read\",\"path\":\"x\"}]"}),
                &skills()
            ),
            Ok(Checked::Plan { .. })
        ));
    }
}
