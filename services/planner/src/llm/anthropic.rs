//! The Anthropic Messages API (`POST {base}/v1/messages`), with forced tool use.

use serde_json::{Value, json};
use skynet_protocol::event::Usage;

use super::Answer;
use super::prompt::{TOOL, TOOL_DESCRIPTION};
use crate::config::{LlmConfig, Secret};

/// The API version this client speaks.
pub const VERSION: &str = "2023-06-01";

pub fn endpoint(base: &str) -> String {
    format!("{}/v1/messages", base.trim_end_matches('/'))
}

pub fn headers(key: Option<&Secret>) -> Vec<(&'static str, String)> {
    let mut h = vec![("anthropic-version", VERSION.to_owned())];
    if let Some(k) = key {
        h.push(("x-api-key", k.expose().to_owned()));
    }
    h
}

/// The first turn of the conversation.
pub fn initial(user: &str) -> Vec<Value> {
    vec![json!({"role": "user", "content": user})]
}

/// The request body: the conversation so far, the one tool, and `tool_choice` forcing it.
pub fn request(cfg: &LlmConfig, system: &str, messages: &[Value], schema: &Value) -> Value {
    json!({
        "model": cfg.model,
        "max_tokens": cfg.max_tokens,
        "system": system,
        "messages": messages,
        "tools": [{"name": TOOL, "description": TOOL_DESCRIPTION, "input_schema": schema}],
        "tool_choice": {"type": "tool", "name": TOOL},
    })
}

/// Reads a Messages response: the `tool_use` block's input, the tokens spent, and the
/// assistant turn to send back in a repair round. An error means the body is not a Messages
/// response at all.
pub fn read(body: &Value) -> Result<(Answer, Value), String> {
    let Some(content) = body.get("content").and_then(Value::as_array) else {
        return Err("a Messages response has a `content` array".into());
    };
    let count = |key: &str| body["usage"][key].as_u64().unwrap_or(0);
    let usage = Usage {
        // Cache reads and writes are input tokens too.
        input_tokens: count("input_tokens")
            + count("cache_creation_input_tokens")
            + count("cache_read_input_tokens"),
        output_tokens: count("output_tokens"),
    };
    let tool = content
        .iter()
        .find(|b| b["type"] == "tool_use" && b["name"] == TOOL);
    let input = match tool {
        _ if body["stop_reason"] == "max_tokens" => Err(
            "the answer was cut off at max_tokens before the plan was complete; make the plan shorter"
                .to_owned(),
        ),
        Some(block) => Ok(block["input"].clone()),
        None => Err(format!("the answer did not call the `{TOOL}` tool")),
    };
    let answer = Answer {
        model: body["model"].as_str().map(str::to_owned),
        usage,
        input,
    };
    let turn = json!({"role": "assistant", "content": content});
    Ok((answer, turn))
}

/// Adds the model's turn and the error to the conversation: a `tool_result` marked as an
/// error for the tool call (the API wants one for each), or plain text without one.
pub fn repair(messages: &mut Vec<Value>, turn: Value, error: &str) {
    let ids: Vec<String> = turn["content"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b["type"] == "tool_use")
                .filter_map(|b| b["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let empty = turn["content"].as_array().is_none_or(Vec::is_empty);
    messages.push(if empty {
        json!({"role": "assistant", "content": "(no answer)"})
    } else {
        turn
    });
    let content: Value = if ids.is_empty() {
        Value::String(error.to_owned())
    } else {
        Value::Array(
            ids.iter()
                .map(|id| json!({"type": "tool_result", "tool_use_id": id, "is_error": true, "content": error}))
                .collect(),
        )
    };
    messages.push(json!({"role": "user", "content": content}));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_use_answer_is_read_with_its_usage() {
        let body = json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "tool_use", "id": "toolu_01", "name": "submit_plan",
                         "input": {"summary": "s", "steps": []}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 100, "output_tokens": 20, "cache_read_input_tokens": 5}
        });
        let (answer, turn) = read(&body).unwrap();
        assert_eq!(answer.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
        assert_eq!(
            answer.usage,
            Usage {
                input_tokens: 105,
                output_tokens: 20
            }
        );
        assert_eq!(answer.input.unwrap()["summary"], "s");
        let mut messages = initial("goal");
        repair(&mut messages, turn, "bad");
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[1]["role"], "assistant");
        assert_eq!(
            messages[2]["content"][0],
            json!({"type": "tool_result", "tool_use_id": "toolu_01", "is_error": true, "content": "bad"})
        );
    }

    #[test]
    fn answers_without_the_tool_or_cut_short_are_invalid_plans() {
        let text = json!({"content": [{"type": "text", "text": "Sure!"}], "stop_reason": "end_turn", "usage": {}});
        assert!(
            read(&text)
                .unwrap()
                .0
                .input
                .unwrap_err()
                .contains("did not call")
        );
        let cut = json!({"content": [{"type": "tool_use", "id": "t", "name": "submit_plan", "input": {}}],
                         "stop_reason": "max_tokens", "usage": {}});
        assert!(
            read(&cut)
                .unwrap()
                .0
                .input
                .unwrap_err()
                .contains("max_tokens")
        );
        assert!(read(&json!({"type": "error"})).is_err());
    }
}
