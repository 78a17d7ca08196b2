//! A fake of the Telegram Bot API, for driving the real teloxide client of `skynet-telegram`
//! from tests.
//!
//! It answers `getMe`, `getWebhookInfo`, `deleteWebhook`, a long-polling `getUpdates`
//! (offsets confirm updates, as Telegram does), `sendMessage`, `editMessageText`,
//! `answerCallbackQuery`, `sendDocument` (multipart) and `setMyCommands`, and is as strict
//! as Telegram where the bot could get things wrong: HTML that does not parse, text over
//! 4096 characters, edits that change nothing, callback data over 64 bytes, and chats the
//! bot may not write to first are refused with Telegram's own errors. Tests can make it
//! answer 429 with `retry_after`. Every call is recorded with the time it arrived.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::http::{FakeHttp, Request, Response};

/// The token the fake accepts.
pub const TOKEN: &str = "123456789:TEST-fake_token";
pub const BOT_ID: u64 = 123_456_789;
pub const BOT_USERNAME: &str = "skynet_test_bot";

/// One request the bot made.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method, lower case (`sendmessage`).
    pub method: String,
    pub at: Instant,
    /// The parameters (JSON body, or the text fields of a multipart body).
    pub params: Value,
    /// The HTTP status the fake answered with.
    pub status: u16,
}

/// A message the bot sent (successfully).
#[derive(Debug, Clone)]
pub struct Sent {
    pub chat: i64,
    pub message_id: i32,
    /// The HTML as sent.
    pub html: String,
    /// The text as people see it.
    pub text: String,
    pub buttons: Option<Value>,
    pub reply_to: Option<i32>,
    pub at: Instant,
}

/// A successful edit of a message.
#[derive(Debug, Clone)]
pub struct Edit {
    pub chat: i64,
    pub message_id: i32,
    pub html: String,
    pub text: String,
    pub buttons: Option<Value>,
    pub at: Instant,
}

/// A file the bot sent.
#[derive(Debug, Clone)]
pub struct Document {
    pub chat: i64,
    pub file_name: String,
    pub bytes: Bytes,
    pub caption: String,
}

/// A button press answered by the bot.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub callback_id: String,
    pub text: String,
    pub alert: bool,
}

/// A message as it stands now.
#[derive(Debug, Clone, PartialEq)]
pub struct Shown {
    pub html: String,
    pub text: String,
    pub buttons: Option<Value>,
}

struct Fault {
    method: String,
    remaining: u32,
    retry_after: u32,
}

#[derive(Default)]
struct State {
    /// Updates not yet confirmed by an offset.
    updates: Vec<Value>,
    next_update: i64,
    next_message: i32,
    next_callback: u64,
    /// Chats the bot may write to (users who wrote to it, groups it is in).
    open_chats: Vec<i64>,
    messages: BTreeMap<(i64, i32), Shown>,
    calls: Vec<Call>,
    sent: Vec<Sent>,
    edits: Vec<Edit>,
    documents: Vec<Document>,
    answers: Vec<Answer>,
    commands: Option<Value>,
    faults: Vec<Fault>,
}

/// A running fake Bot API; stopped on drop.
pub struct FakeTelegram {
    http: FakeHttp,
    state: Arc<Mutex<State>>,
    changed: watch::Sender<u64>,
}

/// How long `wait_*` helpers wait before failing the test.
pub const WAIT: Duration = Duration::from_secs(30);

fn user_json(user: u64) -> Value {
    json!({"id": user, "is_bot": false, "first_name": format!("User{user}"), "username": format!("user{user}")})
}

fn bot_json() -> Value {
    json!({"id": BOT_ID, "is_bot": true, "first_name": "SKYNET", "username": BOT_USERNAME})
}

fn chat_json(chat: i64) -> Value {
    if chat > 0 {
        json!({"id": chat, "type": "private", "first_name": format!("User{chat}")})
    } else {
        json!({"id": chat, "type": "supergroup", "title": "ops"})
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn ok(result: Value) -> Response {
    Response::json(200, &json!({"ok": true, "result": result}))
}

fn error(code: u16, description: &str) -> Response {
    Response::json(
        code,
        &json!({"ok": false, "error_code": code, "description": description}),
    )
}

fn too_many(retry_after: u32) -> Response {
    Response::json(
        429,
        &json!({
            "ok": false,
            "error_code": 429,
            "description": format!("Too Many Requests: retry after {retry_after}"),
            "parameters": {"retry_after": retry_after},
        }),
    )
}

/// Parses Telegram's HTML parse mode as strictly as Telegram: known tags only, properly
/// nested, `<` and `&` only as tags and entities. Returns the visible text.
pub fn parse_html(html: &str) -> Result<String, String> {
    const TAGS: [&str; 15] = [
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "code",
        "pre",
        "a",
        "tg-spoiler",
        "span",
        "blockquote",
    ];
    let mut out = String::new();
    let mut stack: Vec<String> = Vec::new();
    let mut chars = html.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '<' => {
                let Some(end) = html[i..].find('>') else {
                    return Err(format!("Unclosed start tag at byte offset {i}"));
                };
                let inner = &html[i + 1..i + end];
                while chars.peek().is_some_and(|(j, _)| *j <= i + end) {
                    chars.next();
                }
                if let Some(name) = inner.strip_prefix('/') {
                    match stack.pop() {
                        Some(open) if open == name.trim() => {}
                        _ => {
                            return Err(format!(
                                "Unmatched end tag at byte offset {i}, expected \"</{}>\"",
                                name.trim()
                            ));
                        }
                    }
                } else {
                    let name = inner.split_whitespace().next().unwrap_or("").to_owned();
                    if !TAGS.contains(&name.as_str()) {
                        return Err(format!(
                            "Unsupported start tag \"{name}\" at byte offset {i}"
                        ));
                    }
                    stack.push(name);
                }
            }
            '&' => {
                let rest = &html[i + 1..];
                let Some(semi) = rest.find(';').filter(|s| *s <= 10) else {
                    return Err(format!("Character entity expected at byte offset {i}"));
                };
                let entity = &rest[..semi];
                let decoded = match entity {
                    "lt" => '<',
                    "gt" => '>',
                    "amp" => '&',
                    "quot" => '"',
                    e if e.starts_with('#') => e[1..]
                        .parse::<u32>()
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or_else(|| format!("Bad character entity at byte offset {i}"))?,
                    _ => return Err(format!("Unsupported HTML entity at byte offset {i}")),
                };
                out.push(decoded);
                for _ in 0..=semi {
                    chars.next();
                }
            }
            c => out.push(c),
        }
    }
    if let Some(open) = stack.pop() {
        return Err(format!(
            "Can't find end tag corresponding to start tag \"{open}\""
        ));
    }
    Ok(out)
}

/// Checks message text the way Telegram does; returns the visible text or the error reply.
fn check_text(html: &str, editing: bool) -> Result<String, Response> {
    let text = parse_html(html)
        .map_err(|e| error(400, &format!("Bad Request: can't parse entities: {e}")))?;
    if text.trim().is_empty() {
        return Err(error(400, "Bad Request: message text is empty"));
    }
    if text.encode_utf16().count() > 4096 {
        return Err(if editing {
            error(400, "Bad Request: MESSAGE_TOO_LONG")
        } else {
            error(400, "Bad Request: message is too long")
        });
    }
    Ok(text)
}

fn check_buttons(markup: &Option<Value>) -> Result<(), Response> {
    let Some(m) = markup else { return Ok(()) };
    for row in m["inline_keyboard"].as_array().into_iter().flatten() {
        for button in row.as_array().into_iter().flatten() {
            if let Some(data) = button["callback_data"].as_str()
                && (data.is_empty() || data.len() > 64)
            {
                return Err(error(400, "Bad Request: BUTTON_DATA_INVALID"));
            }
        }
    }
    Ok(())
}

/// A `multipart/form-data` body as (name, file name, content) parts.
fn multipart(content_type: &str, body: &[u8]) -> Vec<(String, Option<String>, Bytes)> {
    let Some(boundary) = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))
    else {
        return Vec::new();
    };
    let boundary = boundary.trim_matches('"');
    let delimiter = format!("--{boundary}");
    let d = delimiter.as_bytes();
    let mut parts = Vec::new();
    let mut positions = Vec::new();
    let mut i = 0;
    while i + d.len() <= body.len() {
        if &body[i..i + d.len()] == d {
            positions.push(i);
            i += d.len();
        } else {
            i += 1;
        }
    }
    for w in positions.windows(2) {
        let mut part = &body[w[0] + d.len()..w[1]];
        part = part.strip_prefix(b"\r\n").unwrap_or(part);
        part = part.strip_suffix(b"\r\n").unwrap_or(part);
        let Some(split) = part.windows(4).position(|x| x == b"\r\n\r\n") else {
            continue;
        };
        let headers = String::from_utf8_lossy(&part[..split]).to_string();
        let content = Bytes::copy_from_slice(&part[split + 4..]);
        let disposition = headers
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))
            .unwrap_or("");
        let field = |key: &str| {
            disposition.split(';').map(str::trim).find_map(|p| {
                p.strip_prefix(&format!("{key}="))
                    .map(|v| v.trim_matches('"').to_owned())
            })
        };
        if let Some(name) = field("name") {
            parts.push((name, field("filename"), content));
        }
    }
    parts
}

impl FakeTelegram {
    /// Starts the fake on a random loopback port.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State {
            next_update: 1,
            next_message: 1,
            ..Default::default()
        }));
        let changed = watch::Sender::new(0u64);
        let http = {
            let state = state.clone();
            let changed = changed.clone();
            FakeHttp::start(move |req| {
                let state = state.clone();
                let changed = changed.clone();
                async move { handle(&state, &changed, req).await }
            })
            .await
        };
        Self {
            http,
            state,
            changed,
        }
    }

    /// The Bot API base URL (for `TELOXIDE_API_URL`).
    pub fn url(&self) -> String {
        self.http.url()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let out = f(&mut self.state.lock().unwrap());
        self.changed.send_modify(|v| *v += 1);
        out
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.lock().unwrap())
    }

    /// Lets the bot write to `chat` (a user who started it, a group it was added to).
    pub fn open_chat(&self, chat: i64) {
        self.with(|s| {
            if !s.open_chats.contains(&chat) {
                s.open_chats.push(chat);
            }
        });
    }

    fn push_message(&self, chat: i64, user: u64, text: &str, entities: Option<Value>) -> i32 {
        self.with(|s| {
            if !s.open_chats.contains(&chat) {
                s.open_chats.push(chat);
            }
            let message_id = s.next_message;
            s.next_message += 1;
            let update_id = s.next_update;
            s.next_update += 1;
            let mut message = json!({
                "message_id": message_id,
                "date": unix_now(),
                "chat": chat_json(chat),
                "from": user_json(user),
                "text": text,
            });
            if let Some(e) = entities {
                message["entities"] = e;
            }
            s.updates
                .push(json!({"update_id": update_id, "message": message}));
            message_id
        })
    }

    /// `user` writes `text` to the bot in their private chat; returns the message id.
    pub fn user_says(&self, user: u64, text: &str) -> i32 {
        self.push_message(user as i64, user, text, None)
    }

    /// `user` writes `text` in `chat` (a group when negative).
    pub fn user_says_in(&self, chat: i64, user: u64, text: &str) -> i32 {
        self.push_message(chat, user, text, None)
    }

    /// `user` writes `text` with the part `code` formatted as code (as clients do with
    /// `` `...` ``, removing the backticks).
    pub fn user_says_code(&self, user: u64, text: &str, code: &str) -> i32 {
        let start = text.find(code).expect("code inside text");
        let offset = text[..start].encode_utf16().count();
        let length = code.encode_utf16().count();
        let entities = json!([{"type": "code", "offset": offset, "length": length}]);
        self.push_message(user as i64, user, text, Some(entities))
    }

    /// `user` presses a button with `data` under message `message_id` in `chat`; returns
    /// the callback query id.
    pub fn press(&self, user: u64, chat: i64, message_id: i32, data: &str) -> String {
        self.with(|s| {
            let id = format!("cb{}", s.next_callback);
            s.next_callback += 1;
            let update_id = s.next_update;
            s.next_update += 1;
            let shown = s.messages.get(&(chat, message_id)).cloned();
            let mut message = json!({
                "message_id": message_id,
                "date": unix_now(),
                "chat": chat_json(chat),
                "from": bot_json(),
                "text": shown.as_ref().map(|m| m.text.clone()).unwrap_or_else(|| "?".into()),
            });
            if let Some(b) = shown.and_then(|m| m.buttons) {
                message["reply_markup"] = b;
            }
            s.updates.push(json!({
                "update_id": update_id,
                "callback_query": {
                    "id": id,
                    "from": user_json(user),
                    "message": message,
                    "chat_instance": format!("ci{chat}"),
                    "data": data,
                }
            }));
            id
        })
    }

    /// Makes the next `count` calls of `method` (e.g. `editMessageText`) fail with 429 and
    /// `retry_after` seconds.
    pub fn fail_next(&self, method: &str, count: u32, retry_after: u32) {
        self.with(|s| {
            s.faults.push(Fault {
                method: method.to_ascii_lowercase(),
                remaining: count,
                retry_after,
            })
        });
    }

    /// An ingress configuration pointed at this fake: `allowed` may run jobs, `approvers`
    /// (default: the allowed) may decide them.
    pub fn config(
        &self,
        allowed: &[u64],
        approvers: Option<&[u64]>,
    ) -> skynet_telegram_ingress::Config {
        let token = skynet_telegram_ingress::BotToken::parse("token", TOKEN).unwrap();
        let mut config = skynet_telegram_ingress::Config::new(
            token,
            allowed.iter().copied().collect(),
            approvers.map(|a| a.iter().copied().collect()),
        );
        config.api_url = Some(self.url());
        config.poll_timeout = Duration::from_secs(5);
        config
    }

    /// Waits until `pred` holds of the fake's records, or fails the test after [`WAIT`].
    pub async fn wait_until<T>(
        &self,
        what: &str,
        mut pred: impl FnMut(&Records) -> Option<T>,
    ) -> T {
        let mut rx = self.changed.subscribe();
        let deadline = Instant::now() + WAIT;
        loop {
            rx.borrow_and_update();
            let found = self.read(|s| pred(&Records(s)));
            if let Some(v) = found {
                return v;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, rx.changed()).await.is_err() {
                let summary = self.read(|s| {
                    s.sent
                        .iter()
                        .map(|m| format!("[{} #{}] {}", m.chat, m.message_id, m.text))
                        .collect::<Vec<_>>()
                        .join("\n")
                });
                panic!(
                    "fake Telegram: {what} did not happen within {WAIT:?}; messages sent:\n{summary}"
                );
            }
        }
    }

    /// Waits for a message to `chat` whose visible text contains every one of `needles`.
    pub async fn wait_sent(&self, chat: i64, needles: &[&str]) -> Sent {
        self.wait_until(&format!("a message to {chat} with {needles:?}"), |r| {
            r.sent()
                .iter()
                .find(|m| m.chat == chat && needles.iter().all(|n| m.text.contains(n)))
                .cloned()
        })
        .await
    }

    /// Waits until a message sent to `chat` shows every one of `needles`, as sent or as
    /// edited since (a job's status message is often sent at `received` and shows its plan
    /// only after an edit); returns it as sent.
    pub async fn wait_status(&self, chat: i64, needles: &[&str]) -> Sent {
        self.wait_until(&format!("a message in {chat} showing {needles:?}"), |r| {
            r.sent_to(chat).into_iter().find(|m| {
                let now = r.shown(chat, m.message_id).map(|s| s.text);
                let text = now.as_deref().unwrap_or(&m.text);
                needles.iter().all(|n| text.contains(n))
            })
        })
        .await
    }

    /// Waits until message `message_id` in `chat` shows every one of `needles`.
    pub async fn wait_shown(&self, chat: i64, message_id: i32, needles: &[&str]) -> Shown {
        self.wait_until(
            &format!("message {message_id} in {chat} showing {needles:?}"),
            |r| {
                r.shown(chat, message_id)
                    .filter(|m| needles.iter().all(|n| m.text.contains(n)))
            },
        )
        .await
    }

    /// Waits for the answer to a button press.
    pub async fn wait_answer(&self, callback_id: &str) -> Answer {
        self.wait_until(&format!("an answer to {callback_id}"), |r| {
            r.answers()
                .iter()
                .find(|a| a.callback_id == callback_id)
                .cloned()
        })
        .await
    }

    /// Waits until the bot has asked for updates `n` times (it is listening).
    pub async fn wait_polling(&self, n: usize) {
        self.wait_until(&format!("{n} getUpdates calls"), |r| {
            (r.calls("getupdates").len() >= n).then_some(())
        })
        .await
    }

    /// A snapshot of everything recorded.
    pub fn records<T>(&self, f: impl FnOnce(&Records) -> T) -> T {
        self.read(|s| f(&Records(s)))
    }
}

/// Read access to what the fake recorded.
pub struct Records<'a>(&'a State);

impl Records<'_> {
    pub fn calls(&self, method: &str) -> Vec<Call> {
        let m = method.to_ascii_lowercase();
        self.0
            .calls
            .iter()
            .filter(|c| c.method == m)
            .cloned()
            .collect()
    }
    pub fn sent(&self) -> &[Sent] {
        &self.0.sent
    }
    pub fn sent_to(&self, chat: i64) -> Vec<Sent> {
        self.0
            .sent
            .iter()
            .filter(|m| m.chat == chat)
            .cloned()
            .collect()
    }
    pub fn edits(&self) -> &[Edit] {
        &self.0.edits
    }
    pub fn documents(&self) -> &[Document] {
        &self.0.documents
    }
    pub fn answers(&self) -> &[Answer] {
        &self.0.answers
    }
    pub fn commands(&self) -> Option<&Value> {
        self.0.commands.as_ref()
    }
    pub fn shown(&self, chat: i64, message_id: i32) -> Option<Shown> {
        self.0.messages.get(&(chat, message_id)).cloned()
    }
    /// Updates not yet confirmed by the bot.
    pub fn unconfirmed(&self) -> usize {
        self.0.updates.len()
    }
}

async fn handle(state: &Mutex<State>, changed: &watch::Sender<u64>, req: Request) -> Response {
    let Some(rest) = req.path.strip_prefix(&format!("/bot{TOKEN}/")) else {
        return error(404, "Not Found");
    };
    let method = rest.to_ascii_lowercase();
    let (params, files) = if req
        .header("content-type")
        .is_some_and(|c| c.starts_with("multipart/form-data"))
    {
        let parts = multipart(req.header("content-type").unwrap_or(""), &req.body);
        let mut params = serde_json::Map::new();
        let mut files = Vec::new();
        for (name, file_name, content) in parts {
            match file_name {
                Some(f) => files.push((name, f, content)),
                None => {
                    let text = String::from_utf8_lossy(&content).to_string();
                    // Nested objects travel as JSON text.
                    let value = serde_json::from_str::<Value>(&text)
                        .ok()
                        .filter(|v| v.is_object())
                        .unwrap_or(Value::String(text));
                    params.insert(name, value);
                }
            }
        }
        (Value::Object(params), files)
    } else if req.body.is_empty() {
        (json!({}), Vec::new())
    } else {
        (req.json(), Vec::new())
    };

    if method == "getupdates" {
        return get_updates(state, changed, &params).await;
    }

    let response = {
        let mut s = state.lock().unwrap();
        let fault = s
            .faults
            .iter_mut()
            .find(|f| f.method == method && f.remaining > 0);
        let response = match fault {
            Some(f) => {
                f.remaining -= 1;
                too_many(f.retry_after)
            }
            None => answer(&mut s, &method, &params, files),
        };
        s.calls.push(Call {
            method: method.clone(),
            at: Instant::now(),
            params,
            status: response.status,
        });
        response
    };
    changed.send_modify(|v| *v += 1);
    response
}

fn chat_of(params: &Value) -> Option<i64> {
    match &params["chat_id"] {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn markup(params: &Value) -> Option<Value> {
    match &params["reply_markup"] {
        Value::Null => None,
        Value::String(s) => serde_json::from_str(s).ok(),
        v => Some(v.clone()),
    }
}

fn answer(
    s: &mut State,
    method: &str,
    params: &Value,
    files: Vec<(String, String, Bytes)>,
) -> Response {
    match method {
        "getme" => ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "SKYNET", "username": BOT_USERNAME,
            "can_join_groups": true, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "has_main_web_app": false,
        })),
        "getwebhookinfo" => {
            ok(json!({"url": "", "has_custom_certificate": false, "pending_update_count": 0}))
        }
        "deletewebhook" => ok(json!(true)),
        "setmycommands" => {
            s.commands = Some(params["commands"].clone());
            ok(json!(true))
        }
        "answercallbackquery" => {
            s.answers.push(Answer {
                callback_id: params["callback_query_id"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                text: params["text"].as_str().unwrap_or("").to_owned(),
                alert: params["show_alert"].as_bool().unwrap_or(false),
            });
            ok(json!(true))
        }
        "sendmessage" => {
            let Some(chat) = chat_of(params) else {
                return error(400, "Bad Request: chat not found");
            };
            if !s.open_chats.contains(&chat) {
                return error(
                    403,
                    "Forbidden: bot can't initiate conversation with a user",
                );
            }
            if params["parse_mode"] != "HTML" {
                return error(400, "Bad Request: the fake expects parse_mode HTML");
            }
            let html = params["text"].as_str().unwrap_or("").to_owned();
            let text = match check_text(&html, false) {
                Ok(t) => t,
                Err(r) => return r,
            };
            let buttons = markup(params);
            if let Err(r) = check_buttons(&buttons) {
                return r;
            }
            let message_id = s.next_message;
            s.next_message += 1;
            let reply_to = params["reply_parameters"]["message_id"]
                .as_i64()
                .map(|m| m as i32);
            s.messages.insert(
                (chat, message_id),
                Shown {
                    html: html.clone(),
                    text: text.clone(),
                    buttons: buttons.clone(),
                },
            );
            s.sent.push(Sent {
                chat,
                message_id,
                html,
                text: text.clone(),
                buttons: buttons.clone(),
                reply_to,
                at: Instant::now(),
            });
            let mut m = json!({
                "message_id": message_id, "date": unix_now(), "chat": chat_json(chat),
                "from": bot_json(), "text": text,
            });
            if let Some(b) = buttons {
                m["reply_markup"] = b;
            }
            ok(m)
        }
        "editmessagetext" => {
            let (Some(chat), Some(message_id)) = (
                chat_of(params),
                params["message_id"].as_i64().map(|m| m as i32),
            ) else {
                return error(400, "Bad Request: message identifier is not specified");
            };
            let html = params["text"].as_str().unwrap_or("").to_owned();
            let text = match check_text(&html, true) {
                Ok(t) => t,
                Err(r) => return r,
            };
            let buttons = markup(params);
            if let Err(r) = check_buttons(&buttons) {
                return r;
            }
            let Some(current) = s.messages.get_mut(&(chat, message_id)) else {
                return error(400, "Bad Request: message to edit not found");
            };
            if current.text == text && current.buttons == buttons && current.html == html {
                return error(
                    400,
                    "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
                );
            }
            // Without reply_markup, an edit removes the buttons, as Telegram does.
            *current = Shown {
                html: html.clone(),
                text: text.clone(),
                buttons: buttons.clone(),
            };
            s.edits.push(Edit {
                chat,
                message_id,
                html,
                text: text.clone(),
                buttons: buttons.clone(),
                at: Instant::now(),
            });
            let mut m = json!({
                "message_id": message_id, "date": unix_now(), "edit_date": unix_now(),
                "chat": chat_json(chat), "from": bot_json(), "text": text,
            });
            if let Some(b) = buttons {
                m["reply_markup"] = b;
            }
            ok(m)
        }
        "senddocument" => {
            let Some(chat) = chat_of(params) else {
                return error(400, "Bad Request: chat not found");
            };
            if !s.open_chats.contains(&chat) {
                return error(
                    403,
                    "Forbidden: bot can't initiate conversation with a user",
                );
            }
            let caption_html = params["caption"].as_str().unwrap_or("").to_owned();
            let caption = match parse_html(&caption_html) {
                Ok(c) if c.encode_utf16().count() <= 1024 => c,
                Ok(_) => return error(400, "Bad Request: message caption is too long"),
                Err(e) => {
                    return error(400, &format!("Bad Request: can't parse entities: {e}"));
                }
            };
            let attach = params["document"].as_str().unwrap_or("");
            let wanted = attach.strip_prefix("attach://").unwrap_or(attach);
            let Some((_, file_name, bytes)) = files
                .into_iter()
                .find(|(name, _, _)| name == wanted || name == "document")
            else {
                return error(400, "Bad Request: there is no document in the request");
            };
            if bytes.is_empty() {
                return error(400, "Bad Request: file must be non-empty");
            }
            let message_id = s.next_message;
            s.next_message += 1;
            let size = bytes.len();
            s.documents.push(Document {
                chat,
                file_name: file_name.clone(),
                bytes,
                caption: caption.clone(),
            });
            ok(json!({
                "message_id": message_id, "date": unix_now(), "chat": chat_json(chat),
                "from": bot_json(), "caption": caption,
                "document": {"file_id": format!("file{message_id}"), "file_unique_id": format!("u{message_id}"),
                             "file_name": file_name, "file_size": size},
            }))
        }
        other => error(404, &format!("Not Found: method {other}")),
    }
}

/// `getUpdates`: confirms what is below `offset`, then waits up to `timeout` seconds for
/// anything new.
async fn get_updates(
    state: &Mutex<State>,
    changed: &watch::Sender<u64>,
    params: &Value,
) -> Response {
    let offset = params["offset"].as_i64().unwrap_or(0);
    let limit = params["limit"].as_u64().unwrap_or(100).clamp(1, 100) as usize;
    let timeout = Duration::from_secs(params["timeout"].as_u64().unwrap_or(0).min(50));
    {
        let mut s = state.lock().unwrap();
        if offset > 0 {
            s.updates
                .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
        }
        s.calls.push(Call {
            method: "getupdates".into(),
            at: Instant::now(),
            params: params.clone(),
            status: 200,
        });
    }
    changed.send_modify(|v| *v += 1);
    let mut rx = changed.subscribe();
    let deadline = Instant::now() + timeout;
    loop {
        rx.borrow_and_update();
        let batch: Vec<Value> = {
            let s = state.lock().unwrap();
            s.updates.iter().take(limit).cloned().collect()
        };
        if !batch.is_empty() || Instant::now() >= deadline {
            return ok(Value::Array(batch));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, rx.changed()).await.is_err() {
            return ok(json!([]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_checked_like_telegram() {
        assert_eq!(parse_html("<b>a</b> &lt;x&gt; &amp;").unwrap(), "a <x> &");
        assert_eq!(parse_html("<pre>x</pre>").unwrap(), "x");
        assert!(parse_html("<b>a").is_err());
        assert!(parse_html("a < b").is_err());
        assert!(parse_html("a & b").is_err());
        assert!(parse_html("<script>x</script>").is_err());
        assert!(parse_html("<b><i>x</b></i>").is_err());
        assert_eq!(parse_html("&#65;").unwrap(), "A");
    }

    #[test]
    fn multipart_bodies_parse() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"chat_id\"\r\n\r\n42\r\n--XX\r\nContent-Disposition: form-data; name=\"f1\"; filename=\"a.log\"\r\nContent-Type: application/octet-stream\r\n\r\nline\r\nline2\r\n--XX--\r\n";
        let parts = multipart("multipart/form-data; boundary=XX", body);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0, "chat_id");
        assert_eq!(&parts[0].2[..], b"42");
        assert_eq!(parts[1].1.as_deref(), Some("a.log"));
        assert_eq!(&parts[1].2[..], b"line\r\nline2");
    }
}
