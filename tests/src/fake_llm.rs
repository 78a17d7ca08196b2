//! Local fakes of the Anthropic Messages API and of the OpenAI chat-completions API, for the
//! LLM planners. Built on [`crate::http::FakeHttp`] and driven through the planner's real
//! reqwest client, they speak the real wire formats: Anthropic's `tool_use` content blocks,
//! `usage` and `{"type":"error","error":{...}}` bodies; OpenAI's `tool_calls` with JSON-string
//! `arguments`, `usage` and `{"error":{...}}` bodies; `retry-after` (and `retry-after-ms`)
//! headers. Like the real APIs they refuse malformed requests (a wrong key, a missing
//! `anthropic-version`, roles that do not alternate, a tool call left unanswered) with a 400
//! or 401 in their own format, so a client bug shows up as a failed test.
//!
//! Each fake answers from a script of [`Reply`]s, one per request, and records every request.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use skynet_planner::{Backend, Config, LlmConfig, Provider, RetryPolicy, Secret};

use crate::http::{FakeHttp, Request, Response};

/// The API key the fakes accept.
pub const API_KEY: &str = "sk-test-0123456789abcdef";
/// Tokens every successful answer reports.
pub const INPUT_TOKENS: u64 = 812;
pub const OUTPUT_TOKENS: u64 = 64;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A successful answer that calls the plan tool with this input.
    Plan(Value),
    /// OpenAI only: a call of the plan function with these raw `arguments` (maybe not JSON).
    RawArguments(String),
    /// A successful answer with text and no tool call.
    Text(String),
    /// An error answer in the API's own format.
    Error {
        status: u16,
        kind: String,
        message: String,
        /// OpenAI's `error.code`, or Anthropic's `error.details.error_code`.
        code: Option<String>,
        headers: Vec<(String, String)>,
    },
    /// Never answers (the client's deadline must end the wait).
    Hang,
}

impl Reply {
    pub fn plan(input: Value) -> Self {
        Reply::Plan(input)
    }

    pub fn error(status: u16, kind: &str, message: &str) -> Self {
        Reply::Error {
            status,
            kind: kind.into(),
            message: message.into(),
            code: None,
            headers: vec![],
        }
    }

    /// Sets the error's code (`insufficient_quota`, `enforced_spend_limit_reached`, ...).
    pub fn code(mut self, value: &str) -> Self {
        if let Reply::Error { code, .. } = &mut self {
            *code = Some(value.into());
        }
        self
    }

    /// Adds a response header (`retry-after`, `retry-after-ms`).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let Reply::Error { headers, .. } = &mut self {
            headers.push((name.into(), value.into()));
        }
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Anthropic,
    OpenAi,
}

#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    requests: Vec<Request>,
    served: u64,
}

/// A fake LLM API; stopped on drop.
pub struct FakeLlm {
    http: FakeHttp,
    flavor: Flavor,
    state: Arc<Mutex<State>>,
}

impl FakeLlm {
    /// A fake Anthropic API answering with `script`.
    pub async fn anthropic(script: impl IntoIterator<Item = Reply>) -> Self {
        Self::start(Flavor::Anthropic, script).await
    }

    /// A fake OpenAI-compatible API answering with `script`.
    pub async fn openai(script: impl IntoIterator<Item = Reply>) -> Self {
        Self::start(Flavor::OpenAi, script).await
    }

    async fn start(flavor: Flavor, script: impl IntoIterator<Item = Reply>) -> Self {
        let state = Arc::new(Mutex::new(State {
            script: script.into_iter().collect(),
            ..Default::default()
        }));
        let s = state.clone();
        let http = FakeHttp::start(move |req| {
            let s = s.clone();
            async move { serve(flavor, &s, req).await }
        })
        .await;
        Self {
            http,
            flavor,
            state,
        }
    }

    /// The base URL the planner is given: the server for Anthropic (`/v1/messages` is
    /// added), `.../v1` for OpenAI (`/chat/completions` is added).
    pub fn url(&self) -> String {
        match self.flavor {
            Flavor::Anthropic => self.http.url(),
            Flavor::OpenAi => format!("{}/v1", self.http.url()),
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The JSON bodies of every request so far.
    pub fn bodies(&self) -> Vec<Value> {
        self.requests().iter().map(Request::json).collect()
    }

    /// Scripted replies not used yet.
    pub fn unused(&self) -> usize {
        self.state.lock().unwrap().script.len()
    }

    /// A planner configuration using this fake, with quick retries.
    pub fn config(&self) -> Config {
        let provider = match self.flavor {
            Flavor::Anthropic => Provider::Anthropic,
            Flavor::OpenAi => Provider::OpenAi,
        };
        let mut llm = LlmConfig::new(provider, self.url(), Some(Secret::new(API_KEY)));
        llm.retry = RetryPolicy {
            max_retries: 3,
            initial: Duration::from_millis(5),
            max: Duration::from_millis(40),
        };
        llm.timeout = Duration::from_secs(20);
        Config {
            backend: Backend::Llm(llm),
            ..Default::default()
        }
    }
}

async fn serve(flavor: Flavor, state: &Mutex<State>, req: Request) -> Response {
    let problem = match flavor {
        Flavor::Anthropic => check_anthropic(&req),
        Flavor::OpenAi => check_openai(&req),
    };
    let (reply, n) = {
        let mut s = state.lock().unwrap();
        s.requests.push(req.clone());
        if let Some(p) = problem {
            return p;
        }
        s.served += 1;
        let reply = s.script.pop_front().unwrap_or_else(|| {
            Reply::error(500, "api_error", "the fake has no more scripted replies")
        });
        (reply, s.served)
    };
    if let Reply::Hang = reply {
        futures::future::pending::<()>().await;
    }
    let body = req.json();
    match flavor {
        Flavor::Anthropic => anthropic_reply(reply, &body, n),
        Flavor::OpenAi => openai_reply(reply, &body, n),
    }
}

fn error_with_headers(status: u16, body: Value, headers: &[(String, String)]) -> Response {
    let mut r = Response::json(status, &body);
    for (k, v) in headers {
        r = r.with_header(k, v);
    }
    r
}

// ---------------------------------------------------------------- Anthropic -----------

fn anthropic_error(status: u16, kind: &str, message: &str) -> Response {
    Response::json(
        status,
        &json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
    .with_header("request-id", "req_fake")
}

/// What the Messages API would refuse, as it would refuse it.
fn check_anthropic(req: &Request) -> Option<Response> {
    if req.method != "POST" || req.path != "/v1/messages" {
        return Some(anthropic_error(404, "not_found_error", "Not found"));
    }
    if req.header("x-api-key") != Some(API_KEY) {
        return Some(anthropic_error(
            401,
            "authentication_error",
            "invalid x-api-key",
        ));
    }
    let bad = |m: &str| Some(anthropic_error(400, "invalid_request_error", m));
    if req.header("anthropic-version").is_none() {
        return bad("anthropic-version: header is required");
    }
    if !req
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        return bad("content-type must be application/json");
    }
    let body = req.json();
    if !body["model"].is_string() {
        return bad("model: Field required");
    }
    if body["max_tokens"].as_u64().unwrap_or(0) == 0 {
        return bad("max_tokens: Field required");
    }
    let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
        return bad("messages: at least one message is required");
    };
    let mut open_tool_uses: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or("");
        let wanted = if i % 2 == 0 { "user" } else { "assistant" };
        if role != wanted {
            return bad("messages: roles must alternate between \"user\" and \"assistant\"");
        }
        let blocks: Vec<Value> = match &m["content"] {
            Value::String(_) => vec![],
            Value::Array(b) => b.clone(),
            _ => {
                return bad(&format!(
                    "messages.{i}.content: Input should be a valid list"
                ));
            }
        };
        if role == "user" {
            let answered: Vec<&str> = blocks
                .iter()
                .filter(|b| b["type"] == "tool_result")
                .filter_map(|b| b["tool_use_id"].as_str())
                .collect();
            if let Some(id) = open_tool_uses
                .iter()
                .find(|id| !answered.contains(&id.as_str()))
            {
                return bad(&format!(
                    "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {id}"
                ));
            }
            open_tool_uses.clear();
        } else {
            open_tool_uses = blocks
                .iter()
                .filter(|b| b["type"] == "tool_use")
                .filter_map(|b| b["id"].as_str().map(str::to_owned))
                .collect();
        }
    }
    let Some(tools) = body["tools"].as_array() else {
        return bad("tools: a list of tools is expected");
    };
    for t in tools {
        if !t["name"].is_string() || t["input_schema"]["type"] != "object" {
            return bad("tools.0.input_schema: Input schema must have type \"object\"");
        }
    }
    let choice = &body["tool_choice"];
    if choice["type"] == "tool" && !tools.iter().any(|t| t["name"] == choice["name"]) {
        return bad("tool_choice.name: the named tool is not among `tools`");
    }
    None
}

fn anthropic_reply(reply: Reply, body: &Value, n: u64) -> Response {
    let message = |content: Value, stop: &str| {
        Response::json(
            200,
            &json!({
                "id": format!("msg_fake{n:04}"),
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": content,
                "stop_reason": stop,
                "stop_sequence": null,
                "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS}
            }),
        )
    };
    let tool = body["tool_choice"]["name"].clone();
    match reply {
        Reply::Plan(input) => message(
            json!([{"type": "tool_use", "id": format!("toolu_fake{n:04}"), "name": tool, "input": input}]),
            "tool_use",
        ),
        Reply::RawArguments(text) | Reply::Text(text) => {
            message(json!([{"type": "text", "text": text}]), "end_turn")
        }
        Reply::Error {
            status,
            kind,
            message,
            code,
            headers,
        } => {
            let mut error = json!({"type": kind, "message": message});
            if let Some(c) = code {
                error["details"] = json!({"error_code": c});
            }
            error_with_headers(
                status,
                json!({"type": "error", "error": error, "request_id": "req_fake"}),
                &headers,
            )
        }
        Reply::Hang => anthropic_error(500, "api_error", "unreachable"),
    }
}

// ---------------------------------------------------------------- OpenAI --------------

fn openai_error(status: u16, kind: &str, code: Option<&str>, message: &str) -> Response {
    Response::json(
        status,
        &json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
    )
}

/// What the chat-completions API would refuse, as it would refuse it.
fn check_openai(req: &Request) -> Option<Response> {
    if req.method != "POST" || req.path != "/v1/chat/completions" {
        return Some(openai_error(
            404,
            "invalid_request_error",
            None,
            "Invalid URL",
        ));
    }
    if req.header("authorization") != Some(&format!("Bearer {API_KEY}")) {
        return Some(openai_error(
            401,
            "invalid_request_error",
            Some("invalid_api_key"),
            "Incorrect API key provided.",
        ));
    }
    let bad = |m: &str| Some(openai_error(400, "invalid_request_error", None, m));
    let body = req.json();
    if !body["model"].is_string() {
        return bad("you must provide a model parameter");
    }
    let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
        return bad("'messages' must contain at least one message");
    };
    let mut open_calls: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or("");
        if !["system", "developer", "user", "assistant", "tool"].contains(&role) {
            return bad(&format!("Invalid value for 'messages[{i}].role'"));
        }
        if role == "tool" {
            let id = m["tool_call_id"].as_str().unwrap_or("");
            if !open_calls.iter().any(|c| c == id) {
                return bad(&format!(
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls' (messages[{i}])."
                ));
            }
            open_calls.retain(|c| c != id);
            continue;
        }
        if !open_calls.is_empty() {
            return bad(
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'.",
            );
        }
        if role == "assistant" {
            open_calls = m["tool_calls"]
                .as_array()
                .map(|c| {
                    c.iter()
                        .filter_map(|c| c["id"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
        }
    }
    let Some(tools) = body["tools"].as_array() else {
        return bad("tools: a list of tools is expected");
    };
    for t in tools {
        if t["type"] != "function"
            || !t["function"]["name"].is_string()
            || t["function"]["parameters"]["type"] != "object"
        {
            return bad(
                "Invalid schema for function: schema must be a JSON Schema of 'type: \"object\"'",
            );
        }
    }
    let choice = &body["tool_choice"];
    if choice.is_object()
        && !tools
            .iter()
            .any(|t| t["function"]["name"] == choice["function"]["name"])
    {
        return bad("Invalid value for 'tool_choice': the function is not among 'tools'.");
    }
    None
}

fn openai_reply(reply: Reply, body: &Value, n: u64) -> Response {
    let completion = |message: Value| {
        Response::json(
            200,
            &json!({
                "id": format!("chatcmpl-fake{n:04}"),
                "object": "chat.completion",
                "created": 1_764_100_800,
                "model": body["model"],
                // A forced function call ends with "stop", as the real API reports it.
                "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": INPUT_TOKENS, "completion_tokens": OUTPUT_TOKENS,
                          "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS}
            }),
        )
    };
    let name = body["tool_choice"]["function"]["name"].clone();
    let call = |arguments: String| {
        completion(json!({
            "role": "assistant", "content": null, "refusal": null,
            "tool_calls": [{"id": format!("call_fake{n:04}"), "type": "function",
                            "function": {"name": name, "arguments": arguments}}]
        }))
    };
    match reply {
        Reply::Plan(input) => call(input.to_string()),
        Reply::RawArguments(text) => call(text),
        Reply::Text(text) => {
            completion(json!({"role": "assistant", "content": text, "refusal": null}))
        }
        Reply::Error {
            status,
            kind,
            message,
            code,
            headers,
        } => error_with_headers(
            status,
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
            &headers,
        ),
        Reply::Hang => openai_error(500, "server_error", None, "unreachable"),
    }
}
