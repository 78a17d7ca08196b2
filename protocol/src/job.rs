//! JobRequest and Step: what people and scripts submit, and how it is checked.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{IdError, JobId, WorkerId};

/// Limits that keep a request small enough to travel and to show to a person.
pub mod limits {
    pub const GOAL_CHARS: usize = 8_000;
    pub const STEPS: usize = 64;
    pub const CMD_BYTES: usize = 64 * 1024;
    pub const CODE_BYTES: usize = 256 * 1024;
    pub const CONTENT_BYTES: usize = 256 * 1024;
    pub const PATH_BYTES: usize = 4_096;
    pub const ARGV: usize = 1_024;
    pub const ENV_VARS: usize = 64;
    pub const LABELS: usize = 32;
    pub const LABEL_CHARS: usize = 64;
    pub const ARTIFACTS: usize = 32;
    pub const TIMEOUT_S: u64 = 7 * 24 * 3600;
    pub const RETRIES: u32 = 10;
    pub const REQUESTED_BY_CHARS: usize = 200;
    pub const SKILL_NAME_CHARS: usize = 64;
    pub const LOCK_CHARS: usize = 128;
}

/// Job timeout used when a request gives none.
pub const DEFAULT_TIMEOUT_S: u64 = 3600;

/// A request for work. At least one of `goal` and `steps`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<JobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<Step>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// Where replies about this job go, e.g. `telegram:<chat_id>`. Set by front ends so the
    /// conversation can be resumed from the job itself after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Among jobs waiting for the same workers, a higher priority is dispatched first (FIFO
    /// within a priority).
    #[serde(default, skip_serializing_if = "Priority::is_normal")]
    pub priority: Priority,
    /// Jobs with the same lock never run at the same time, anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// How urgent a job is, among jobs waiting for the same workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
}

impl Priority {
    pub fn is_normal(&self) -> bool {
        *self == Priority::Normal
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }
}

/// Read by name, with a refusal that names the field (`priority`) and the choices.
impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|e: String| serde::de::Error::custom(format!("`priority`: {e}")))
    }
}

impl std::str::FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "low" => Ok(Priority::Low),
            "normal" => Ok(Priority::Normal),
            "high" => Ok(Priority::High),
            other => Err(format!(
                "unknown priority {other:?}; one of high, normal, low"
            )),
        }
    }
}

/// The operations of the `git` action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum GitOp {
    Status,
    Diff,
    Log,
    Clone,
    Pull,
    Checkout,
    Commit,
    Push,
}

impl GitOp {
    pub fn as_str(self) -> &'static str {
        match self {
            GitOp::Status => "status",
            GitOp::Diff => "diff",
            GitOp::Log => "log",
            GitOp::Clone => "clone",
            GitOp::Pull => "pull",
            GitOp::Checkout => "checkout",
            GitOp::Commit => "commit",
            GitOp::Push => "push",
        }
    }
}

// The doc comments of `Step` also describe steps to LLM planners: with the `schema` feature
// they become the descriptions in the JSON Schema of `step_schema`.
/// One step of a job, tagged by `action`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Runs a command: exactly one of `cmd` (a command line for `/bin/sh -c`) and `argv`
    /// (a program and its arguments, no shell).
    Shell {
        /// A command line run by `/bin/sh -c`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cmd: Option<String>,
        /// A program and its arguments, run without a shell.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        argv: Option<Vec<String>>,
        /// The directory to run in (`~` is the worker user's home; default: the worker's
        /// first root).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cwd: Option<String>,
        /// Extra environment variables.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        env: BTreeMap<String, String>,
        /// The step's own time limit in seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_s: Option<u64>,
        /// Files (paths or globs) to keep after the step.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        artifacts: Vec<String>,
    },
    /// Runs Python code with `python3 -c`.
    Python {
        /// The program text.
        code: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cwd: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_s: Option<u64>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        artifacts: Vec<String>,
    },
    /// Shows a file's content (at most 8 MiB).
    FileRead {
        path: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        artifacts: Vec<String>,
    },
    /// Writes (or with `append`, appends) `content` to a file.
    FileWrite {
        path: String,
        content: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        append: bool,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        artifacts: Vec<String>,
    },
    /// A git operation on the repository at `repo`: `url` only and always for `clone`,
    /// `branch` only for `checkout`, `message` only for `commit`.
    Git {
        op: GitOp,
        repo: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        branch: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        artifacts: Vec<String>,
    },
    /// A named high-level capability with its arguments; the planner expands it into the
    /// actions above, so workers never see it.
    Skill {
        name: String,
        #[serde(default)]
        args: serde_json::Map<String, serde_json::Value>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        artifacts: Vec<String>,
    },
}

/// The JSON Schema (draft 7, every subschema inlined) of one [`Step`], as serde reads it:
/// generated from the type, so it cannot drift from what the planner accepts.
#[cfg(feature = "schema")]
pub fn step_schema() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft07()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .for_deserialize()
        .into_generator();
    let mut schema = generator.into_root_schema_for::<Step>().to_value();
    if let Some(map) = schema.as_object_mut() {
        map.remove("title");
        map.remove("$schema");
    }
    schema
}

impl Step {
    /// The `action` tag.
    pub fn action(&self) -> &'static str {
        match self {
            Step::Shell { .. } => "shell",
            Step::Python { .. } => "python",
            Step::FileRead { .. } => "file_read",
            Step::FileWrite { .. } => "file_write",
            Step::Git { .. } => "git",
            Step::Skill { .. } => "skill",
        }
    }

    /// The artifact patterns the step declares.
    pub fn artifacts(&self) -> &[String] {
        match self {
            Step::Shell { artifacts, .. }
            | Step::Python { artifacts, .. }
            | Step::FileRead { artifacts, .. }
            | Step::FileWrite { artifacts, .. }
            | Step::Git { artifacts, .. }
            | Step::Skill { artifacts, .. } => artifacts,
        }
    }

    /// The step's own time limit, if it has one.
    pub fn timeout_s(&self) -> Option<u64> {
        match self {
            Step::Shell { timeout_s, .. } | Step::Python { timeout_s, .. } => *timeout_s,
            _ => None,
        }
    }

    /// A one-line rendering for people: the exact command where there is one.
    pub fn describe(&self) -> String {
        match self {
            Step::Shell {
                cmd: Some(cmd),
                cwd,
                ..
            } => with_cwd(cmd.clone(), cwd),
            Step::Shell {
                argv: Some(argv),
                cwd,
                ..
            } => with_cwd(shell_quote_argv(argv), cwd),
            Step::Shell { .. } => "shell (empty)".into(),
            Step::Python { code, cwd, .. } => {
                let first = code.lines().next().unwrap_or("");
                let more = if code.lines().count() > 1 { " …" } else { "" };
                with_cwd(format!("python3 -c {first}{more}"), cwd)
            }
            Step::FileRead { path, .. } => format!("read {path}"),
            Step::FileWrite {
                path,
                content,
                append,
                ..
            } => format!(
                "{} {path} ({} bytes)",
                if *append { "append to" } else { "write" },
                content.len()
            ),
            Step::Git {
                op,
                repo,
                url,
                branch,
                message,
                ..
            } => {
                let mut s = format!("git {} in {repo}", op.as_str());
                if let Some(u) = url {
                    s.push_str(&format!(" from {u}"));
                }
                if let Some(b) = branch {
                    s.push_str(&format!(" branch {b}"));
                }
                if let Some(m) = message {
                    s.push_str(&format!(" message {m:?}"));
                }
                s
            }
            Step::Skill { name, args, .. } => {
                format!("skill {name} {}", serde_json::Value::Object(args.clone()))
            }
        }
    }
}

fn with_cwd(cmd: String, cwd: &Option<String>) -> String {
    match cwd {
        Some(dir) => format!("(cd {dir} && {cmd})"),
        None => cmd,
    }
}

/// Quotes an argv the way a POSIX shell would read it back.
pub fn shell_quote_argv(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why a request (or a step) was refused. The message is meant for the person who sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("request is {0} bytes; the limit is {max}", max = crate::MAX_REQUEST_BYTES)]
    TooLarge(usize),
    #[error("request is not valid UTF-8")]
    NotUtf8,
    #[error("request is not a valid JobRequest: {0}")]
    Malformed(String),
    #[error("request needs at least one of `goal` and `steps`")]
    NothingToDo,
    #[error("`{field}`: {problem}")]
    Field { field: String, problem: String },
    #[error(transparent)]
    Id(#[from] IdError),
}

fn field(field: impl Into<String>, problem: impl Into<String>) -> ValidationError {
    ValidationError::Field {
        field: field.into(),
        problem: problem.into(),
    }
}

fn check_text(name: &str, s: &str, max_bytes: usize) -> Result<(), ValidationError> {
    if s.len() > max_bytes {
        return Err(field(
            name,
            format!("is {} bytes; the limit is {max_bytes}", s.len()),
        ));
    }
    if s.contains('\0') {
        return Err(field(name, "contains a NUL byte"));
    }
    Ok(())
}

fn check_path(name: &str, s: &str) -> Result<(), ValidationError> {
    if s.trim().is_empty() {
        return Err(field(name, "must not be empty"));
    }
    check_text(name, s, limits::PATH_BYTES)
}

fn check_timeout(name: &str, t: Option<u64>) -> Result<(), ValidationError> {
    match t {
        Some(0) => Err(field(name, "must be at least 1 second")),
        Some(t) if t > limits::TIMEOUT_S => Err(field(
            name,
            format!("is {t} s; the limit is {} s (7 days)", limits::TIMEOUT_S),
        )),
        _ => Ok(()),
    }
}

impl Step {
    /// Checks the step's shape. `at` names it in messages (e.g. `steps[2]`).
    pub fn validate(&self, at: &str) -> Result<(), ValidationError> {
        let f = |name: &str| format!("{at}.{name}");
        if self.artifacts().len() > limits::ARTIFACTS {
            return Err(field(
                f("artifacts"),
                format!("at most {} patterns", limits::ARTIFACTS),
            ));
        }
        for (i, a) in self.artifacts().iter().enumerate() {
            check_path(&f(&format!("artifacts[{i}]")), a)?;
        }
        match self {
            Step::Shell {
                cmd,
                argv,
                cwd,
                env,
                timeout_s,
                ..
            } => {
                match (cmd, argv) {
                    (Some(_), Some(_)) => {
                        return Err(field(at, "shell takes exactly one of `cmd` and `argv`"));
                    }
                    (None, None) => {
                        return Err(field(at, "shell needs one of `cmd` and `argv`"));
                    }
                    (Some(cmd), None) => {
                        if cmd.trim().is_empty() {
                            return Err(field(f("cmd"), "must not be empty"));
                        }
                        check_text(&f("cmd"), cmd, limits::CMD_BYTES)?;
                    }
                    (None, Some(argv)) => {
                        if argv.is_empty() || argv[0].is_empty() {
                            return Err(field(f("argv"), "needs a program as its first element"));
                        }
                        if argv.len() > limits::ARGV {
                            return Err(field(
                                f("argv"),
                                format!("at most {} arguments", limits::ARGV),
                            ));
                        }
                        for (i, a) in argv.iter().enumerate() {
                            check_text(&f(&format!("argv[{i}]")), a, limits::CMD_BYTES)?;
                        }
                    }
                }
                if let Some(cwd) = cwd {
                    check_path(&f("cwd"), cwd)?;
                }
                if env.len() > limits::ENV_VARS {
                    return Err(field(
                        f("env"),
                        format!("at most {} variables", limits::ENV_VARS),
                    ));
                }
                for (k, v) in env {
                    let valid_name = !k.is_empty()
                        && !k.starts_with(|c: char| c.is_ascii_digit())
                        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !valid_name {
                        return Err(field(
                            f("env"),
                            format!("{k:?} is not a valid variable name"),
                        ));
                    }
                    check_text(&f(&format!("env.{k}")), v, limits::CMD_BYTES)?;
                }
                check_timeout(&f("timeout_s"), *timeout_s)
            }
            Step::Python {
                code,
                cwd,
                timeout_s,
                ..
            } => {
                if code.trim().is_empty() {
                    return Err(field(f("code"), "must not be empty"));
                }
                check_text(&f("code"), code, limits::CODE_BYTES)?;
                if let Some(cwd) = cwd {
                    check_path(&f("cwd"), cwd)?;
                }
                check_timeout(&f("timeout_s"), *timeout_s)
            }
            Step::FileRead { path, .. } => check_path(&f("path"), path),
            Step::FileWrite { path, content, .. } => {
                check_path(&f("path"), path)?;
                check_text(&f("content"), content, limits::CONTENT_BYTES)
            }
            Step::Git {
                op,
                repo,
                url,
                branch,
                message,
                ..
            } => {
                check_path(&f("repo"), repo)?;
                let needs = |name: &str, v: &Option<String>, wanted: bool| match (v, wanted) {
                    (None, true) => Err(field(
                        f(name),
                        format!("is required for git {}", op.as_str()),
                    )),
                    (Some(_), false) => Err(field(
                        f(name),
                        format!("does not apply to git {}", op.as_str()),
                    )),
                    (Some(v), true) if v.trim().is_empty() => {
                        Err(field(f(name), "must not be empty"))
                    }
                    (Some(v), true) => check_text(&f(name), v, limits::PATH_BYTES),
                    (None, false) => Ok(()),
                };
                needs("url", url, *op == GitOp::Clone)?;
                needs("branch", branch, *op == GitOp::Checkout)?;
                needs("message", message, *op == GitOp::Commit)?;
                if let Some(b) = branch
                    && b.starts_with('-')
                {
                    return Err(field(f("branch"), "must not start with '-'"));
                }
                if let Some(u) = url
                    && u.starts_with('-')
                {
                    return Err(field(f("url"), "must not start with '-'"));
                }
                Ok(())
            }
            Step::Skill { name, .. } => {
                let ok = !name.is_empty()
                    && name.len() <= limits::SKILL_NAME_CHARS
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if ok {
                    Ok(())
                } else {
                    Err(field(
                        f("name"),
                        "a skill name is 1-64 characters of a-z, 0-9 and '_'",
                    ))
                }
            }
        }
    }
}

/// Checks a list of steps; `allow_skills` is false for anything a worker will see.
pub fn validate_steps(steps: &[Step], allow_skills: bool) -> Result<(), ValidationError> {
    if steps.is_empty() {
        return Err(field("steps", "must not be empty"));
    }
    if steps.len() > limits::STEPS {
        return Err(field("steps", format!("at most {} steps", limits::STEPS)));
    }
    for (i, step) in steps.iter().enumerate() {
        let at = format!("steps[{i}]");
        step.validate(&at)?;
        if !allow_skills && matches!(step, Step::Skill { .. }) {
            return Err(field(at, "skills must be expanded before they run"));
        }
    }
    Ok(())
}

fn check_label(i: usize, l: &str) -> Result<(), ValidationError> {
    let ok = !l.is_empty()
        && l.len() <= limits::LABEL_CHARS
        && l.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(field(
            format!("labels[{i}]"),
            "a label is 1-64 characters of letters, digits, '-', '_', '.' and ':'",
        ))
    }
}

impl JobRequest {
    /// Parses and validates a request from raw bytes, as it arrives on a subject.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ValidationError> {
        if bytes.len() > crate::MAX_REQUEST_BYTES {
            return Err(ValidationError::TooLarge(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| ValidationError::NotUtf8)?;
        let req: JobRequest =
            serde_json::from_str(text).map_err(|e| ValidationError::Malformed(e.to_string()))?;
        req.validate()?;
        Ok(req)
    }

    /// Checks everything a deserializer cannot.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let goal = self
            .goal
            .as_deref()
            .map(str::trim)
            .filter(|g| !g.is_empty());
        if let Some(g) = &self.goal {
            if g.chars().count() > limits::GOAL_CHARS {
                return Err(field(
                    "goal",
                    format!("is longer than {} characters", limits::GOAL_CHARS),
                ));
            }
            check_text("goal", g, usize::MAX)?;
        }
        match (&self.steps, goal) {
            (None, None) => return Err(ValidationError::NothingToDo),
            (Some(steps), _) => validate_steps(steps, true)?,
            (None, Some(_)) => {}
        }
        if self.labels.len() > limits::LABELS {
            return Err(field(
                "labels",
                format!("at most {} labels", limits::LABELS),
            ));
        }
        for (i, l) in self.labels.iter().enumerate() {
            check_label(i, l)?;
        }
        check_timeout("timeout_s", self.timeout_s)?;
        if self.retries > limits::RETRIES {
            return Err(field(
                "retries",
                format!("is {}; the limit is {}", self.retries, limits::RETRIES),
            ));
        }
        if let Some(lock) = &self.lock {
            if lock.trim().is_empty() {
                return Err(field("lock", "must not be empty"));
            }
            if lock.chars().count() > limits::LOCK_CHARS {
                return Err(field(
                    "lock",
                    format!("is longer than {} characters", limits::LOCK_CHARS),
                ));
            }
            if lock.chars().any(char::is_control) {
                return Err(field("lock", "contains control characters"));
            }
        }
        for (name, v) in [
            ("requested_by", &self.requested_by),
            ("origin", &self.origin),
        ] {
            if let Some(v) = v {
                if v.chars().count() > limits::REQUESTED_BY_CHARS {
                    return Err(field(
                        name,
                        format!("is longer than {} characters", limits::REQUESTED_BY_CHARS),
                    ));
                }
                if v.chars().any(char::is_control) {
                    return Err(field(name, "contains control characters"));
                }
            }
        }
        Ok(())
    }

    /// The job's overall time limit.
    pub fn timeout(&self) -> u64 {
        self.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S)
    }
}

/// Finds a usable job id in bytes that failed to parse as a JobRequest, so the rejection can
/// be reported on the job's own event subject. `None` when there is none to be found.
pub fn salvage_id(bytes: &[u8]) -> Option<JobId> {
    if bytes.len() > crate::MAX_REQUEST_BYTES {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let id = value.get("id")?.as_str()?;
    JobId::parse(id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<JobRequest, ValidationError> {
        JobRequest::from_slice(s.as_bytes())
    }

    #[test]
    fn the_contract_example_parses() {
        let req = parse(
            r#"{
  "id": "nightly-42",
  "goal": "run the test suite of ~/src/app",
  "steps": [ {"action": "shell", "cmd": "cargo test", "cwd": "~/src/app"} ],
  "worker": "laptop-1",
  "labels": ["linux"],
  "timeout_s": 600,
  "retries": 0,
  "requested_by": "cli:alice"
}"#,
        )
        .unwrap();
        assert_eq!(req.id.unwrap().as_str(), "nightly-42");
        assert_eq!(req.steps.unwrap().len(), 1);
    }

    #[test]
    fn unknown_fields_are_refused_at_both_levels() {
        let e = parse(r#"{"goal":"x","colour":"red"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `colour`"), "{e}");
        let e = parse(r#"{"steps":[{"action":"shell","cmd":"ls","sudo":true}]}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `sudo`"), "{e}");
        let e = parse(r#"{"steps":[{"action":"teleport"}]}"#).unwrap_err();
        assert!(e.to_string().contains("teleport"), "{e}");
    }

    #[test]
    fn bad_ids_missing_work_and_garbage_are_refused() {
        assert!(matches!(
            parse(r#"{"id":"a b","goal":"x"}"#),
            Err(ValidationError::Malformed(_))
        ));
        assert_eq!(parse(r#"{"goal":"  "}"#), Err(ValidationError::NothingToDo));
        assert_eq!(parse("{}"), Err(ValidationError::NothingToDo));
        assert!(matches!(parse("nope"), Err(ValidationError::Malformed(_))));
        assert_eq!(
            JobRequest::from_slice(&[0xff, 0xfe]),
            Err(ValidationError::NotUtf8)
        );
        let big = vec![b' '; crate::MAX_REQUEST_BYTES + 1];
        assert!(matches!(
            JobRequest::from_slice(&big),
            Err(ValidationError::TooLarge(_))
        ));
    }

    #[test]
    fn step_shapes_are_checked() {
        for bad in [
            r#"{"action":"shell"}"#,
            r#"{"action":"shell","cmd":"ls","argv":["ls"]}"#,
            r#"{"action":"shell","argv":[]}"#,
            r#"{"action":"shell","cmd":"ls","env":{"1X":"y"}}"#,
            r#"{"action":"shell","cmd":"ls","timeout_s":0}"#,
            r#"{"action":"git","op":"clone","repo":"~/x"}"#,
            r#"{"action":"git","op":"status","repo":"~/x","url":"u"}"#,
            r#"{"action":"git","op":"checkout","repo":"~/x","branch":"--force"}"#,
            r#"{"action":"file_read","path":""}"#,
            r#"{"action":"skill","name":"Run Tests"}"#,
            r#"{"action":"python","code":""}"#,
        ] {
            let req = format!(r#"{{"steps":[{bad}]}}"#);
            assert!(parse(&req).is_err(), "accepted {bad}");
        }
        assert!(parse(r#"{"steps":[]}"#).is_err());
    }

    #[test]
    fn skills_are_allowed_in_requests_but_not_in_what_runs() {
        let steps = vec![Step::Skill {
            name: "run_tests".into(),
            args: Default::default(),
            artifacts: vec![],
        }];
        assert!(validate_steps(&steps, true).is_ok());
        assert!(validate_steps(&steps, false).is_err());
    }

    #[test]
    fn round_trip_keeps_the_shape() {
        let src = r#"{"id":"j1","steps":[{"action":"shell","argv":["echo","a b"],"env":{"A":"1"}},{"action":"file_write","path":"x","content":"y","append":true},{"action":"git","op":"commit","repo":".","message":"m"}],"labels":["linux"],"retries":1}"#;
        let req = parse(src).unwrap();
        let again = serde_json::to_string(&req).unwrap();
        assert_eq!(parse(&again).unwrap(), req);
    }

    #[test]
    fn describe_quotes_argv() {
        let s = Step::Shell {
            cmd: None,
            argv: Some(vec!["echo".into(), "it's".into()]),
            cwd: None,
            env: Default::default(),
            timeout_s: None,
            artifacts: vec![],
        };
        assert_eq!(s.describe(), r"echo 'it'\''s'");
    }

    #[test]
    fn priorities_and_locks_are_checked() {
        let req = parse(r#"{"goal":"x","priority":"high","lock":"repo:~/src/app"}"#).unwrap();
        assert_eq!(req.priority, Priority::High);
        assert_eq!(req.lock.as_deref(), Some("repo:~/src/app"));
        assert_eq!(parse(r#"{"goal":"x"}"#).unwrap().priority, Priority::Normal);
        let e = parse(r#"{"goal":"x","priority":"urgent"}"#).unwrap_err();
        assert!(e.to_string().contains("urgent"), "{e}");
        assert!(e.to_string().contains("`priority`"), "{e}");
        let long = "l".repeat(129);
        let e = parse(&format!(r#"{{"goal":"x","lock":"{long}"}}"#)).unwrap_err();
        assert!(e.to_string().contains("`lock`"), "{e}");
        assert!(parse(r#"{"goal":"x","lock":" "}"#).is_err());
        assert!(Priority::High > Priority::Normal && Priority::Normal > Priority::Low);
    }

    #[test]
    fn ids_are_salvaged_from_invalid_requests() {
        assert_eq!(
            salvage_id(br#"{"id":"abc","bogus":1}"#).unwrap().as_str(),
            "abc"
        );
        assert!(salvage_id(b"garbage").is_none());
        assert!(salvage_id(br#"{"id":"a b"}"#).is_none());
    }
}

/// What `skynet.rejected` carries: a request that could not even be given a job id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub reason: String,
    pub at: String,
    /// Size of the refused payload in bytes.
    pub bytes: usize,
    /// Its first bytes, as text, for whoever investigates.
    pub preview: String,
    /// Where it came from: the intake stream sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submit_seq: Option<u64>,
}

impl Rejection {
    pub fn new(reason: impl Into<String>, payload: &[u8], submit_seq: Option<u64>) -> Self {
        let preview: String = String::from_utf8_lossy(&payload[..payload.len().min(200)])
            .chars()
            .map(|c| if c.is_control() { '\u{fffd}' } else { c })
            .collect();
        Self {
            reason: reason.into(),
            at: crate::time::now(),
            bytes: payload.len(),
            preview,
            submit_seq,
        }
    }
}

#[cfg(all(test, feature = "schema"))]
mod schema_tests {
    use super::*;

    /// The schema has one branch per action, each closed to unknown fields, and a step
    /// written to the schema's shape parses.
    #[test]
    fn the_step_schema_has_one_closed_branch_per_action() {
        let schema = step_schema();
        let branches = schema["oneOf"].as_array().expect("oneOf");
        let actions: Vec<&str> = branches
            .iter()
            .map(|b| b["properties"]["action"]["const"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            ["shell", "python", "file_read", "file_write", "git", "skill"]
        );
        for b in branches {
            assert_eq!(b["additionalProperties"], false, "{b}");
            assert!(b["required"].as_array().unwrap().contains(&"action".into()));
        }
        let git = &branches[4];
        let ops: Vec<&str> = git["properties"]["op"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            ops,
            [
                "status", "diff", "log", "clone", "pull", "checkout", "commit", "push"
            ]
        );
        assert!(schema.get("$schema").is_none() && schema.get("definitions").is_none());
    }
}
