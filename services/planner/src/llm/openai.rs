//! OpenAI-compatible chat completions (`POST {base}/chat/completions`) with a forced function
//! call: OpenAI itself, and local servers that speak the same API (Ollama, vLLM, llama.cpp).

use serde_json::{Value, json};
use skynet_protocol::event::Usage;

use super::Answer;
use super::prompt::{TOOL, TOOL_DESCRIPTION};
use crate::config::{LlmConfig, Secret};

pub fn endpoint(base: &str) -> String {
    format!("{}/chat/completions", base.trim_end_matches('/'))
}

pub fn headers(key: Option<&Secret>) -> Vec<(&'static str, String)> {
    match key {
        Some(k) => vec![("authorization", format!("Bearer {}", k.expose()))],
        None => vec![],
    }
}

/// The first turns: the system prompt and the goal.
pub fn initial(system: &str, user: &str) -> Vec<Value> {
    vec![
        json!({"role": "system", "content": system}),
        json!({"role": "user", "content": user}),
    ]
}

/// The request body. No token limit is sent: the parameter's name differs between OpenAI's
/// newer models (`max_completion_tokens`) and the servers that copy the API (`max_tokens`).
pub fn request(cfg: &LlmConfig, messages: &[Value], schema: &Value) -> Value {
    json!({
        "model": cfg.model,
        "messages": messages,
        "tools": [{"type": "function", "function": {
            "name": TOOL, "description": TOOL_DESCRIPTION, "parameters": schema}}],
        "tool_choice": {"type": "function", "function": {"name": TOOL}},
    })
}

/// Reads a chat completion: the function call's arguments (a JSON string), the tokens
/// spent, and the assistant turn to send back in a repair round.
pub fn read(body: &Value) -> Result<(Answer, Value), String> {
    let Some(choice) = body["choices"].as_array().and_then(|c| c.first()) else {
        return Err("a chat completion has a non-empty `choices` array".into());
    };
    let message = &choice["message"];
    if !message.is_object() {
        return Err("the chat completion's choice has no `message`".into());
    }
    let usage = Usage {
        input_tokens: body["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
        output_tokens: body["usage"]["completion_tokens"].as_u64().unwrap_or(0),
    };
    let call = message["tool_calls"]
        .as_array()
        .and_then(|calls| calls.iter().find(|c| c["function"]["name"] == TOOL));
    let input = match call {
        _ if choice["finish_reason"] == "length" => Err(
            "the answer was cut off at the token limit before the plan was complete; make the plan shorter"
                .to_owned(),
        ),
        Some(c) => match &c["function"]["arguments"] {
            Value::String(text) => serde_json::from_str::<Value>(text)
                .map_err(|e| format!("the `{TOOL}` arguments are not valid JSON ({e})")),
            // Some servers send the arguments as an object already.
            Value::Object(_) => Ok(c["function"]["arguments"].clone()),
            _ => Err(format!("the `{TOOL}` call has no arguments")),
        },
        None => Err(format!("the answer did not call the `{TOOL}` function")),
    };
    let mut turn = json!({"role": "assistant", "content": message["content"].clone()});
    if let Some(calls) = message.get("tool_calls").filter(|c| c.is_array()) {
        turn["tool_calls"] = calls.clone();
    }
    let answer = Answer {
        model: body["model"].as_str().map(str::to_owned),
        usage,
        input,
    };
    Ok((answer, turn))
}

/// Adds the model's turn and the error: one `tool` message per tool call (the API wants an
/// answer to each), or a user message when it called none.
pub fn repair(messages: &mut Vec<Value>, turn: Value, error: &str) {
    let ids: Vec<String> = turn["tool_calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .filter_map(|c| c["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    messages.push(turn);
    if ids.is_empty() {
        messages.push(json!({"role": "user", "content": error}));
    } else {
        for id in ids {
            messages.push(json!({"role": "tool", "tool_call_id": id, "content": error}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_call_is_read_with_its_usage() {
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4.1-mini-2025-04-14",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": null,
                "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "submit_plan", "arguments": "{\"summary\":\"s\",\"steps\":[]}"}}]}}],
            "usage": {"prompt_tokens": 90, "completion_tokens": 12, "total_tokens": 102}
        });
        let (answer, turn) = read(&body).unwrap();
        assert_eq!(
            answer.usage,
            Usage {
                input_tokens: 90,
                output_tokens: 12
            }
        );
        assert_eq!(answer.input.unwrap()["summary"], "s");
        let mut messages = initial("sys", "goal");
        repair(&mut messages, turn, "bad");
        assert_eq!(messages[2]["tool_calls"][0]["id"], "call_1");
        assert_eq!(
            messages[3],
            json!({"role": "tool", "tool_call_id": "call_1", "content": "bad"})
        );
    }

    #[test]
    fn garbage_arguments_and_plain_text_are_invalid_plans() {
        let bad = json!({"choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "submit_plan", "arguments": "{\"steps\": [oops"}}]}}]});
        assert!(
            read(&bad)
                .unwrap()
                .0
                .input
                .unwrap_err()
                .contains("not valid JSON")
        );
        let text =
            json!({"choices": [{"message": {"role": "assistant", "content": "I'd rather not."}}]});
        let (answer, turn) = read(&text).unwrap();
        assert!(answer.input.unwrap_err().contains("did not call"));
        let mut messages = initial("sys", "goal");
        repair(&mut messages, turn, "bad");
        assert_eq!(messages[3], json!({"role": "user", "content": "bad"}));
        assert!(read(&json!({"error": {"message": "x"}})).is_err());
    }
}
