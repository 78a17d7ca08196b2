//! Schedules from Telegram: `/every <spec> <request>` creates one (`skynet.api.schedules.create`),
//! `/schedules` lists them with buttons to pause, resume and approve
//! (`spause:<name>`, `sresume:<name>`, `sapprove:<name>:<plan hash prefix>`).

use async_nats::Client;
use serde_json::json;
use skynet_protocol::JobId;
use skynet_protocol::api::Empty;
use skynet_protocol::approval::ScheduleDecision;
use skynet_protocol::schedule::{ApproveRequest, ListReply, NameRequest, Schedule, ScheduleState};
use skynet_protocol::subjects::api;
use skynet_runtime::api::{CallError, call};
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};

use crate::commands::Intent;
use crate::html::{clip, esc};

pub const PAUSE: &str = "spause";
pub const RESUME: &str = "sresume";
pub const APPROVE: &str = "sapprove";

/// A schedule's button.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Button {
    Pause(String),
    Resume(String),
    Approve { name: String, plan_hash: String },
}

pub fn parse_button(data: &str) -> Option<Button> {
    let (action, rest) = data.split_once(':')?;
    let name = |n: &str| {
        skynet_protocol::schedule::check_name(n)
            .ok()
            .map(|_| n.to_owned())
    };
    match action {
        PAUSE => Some(Button::Pause(name(rest)?)),
        RESUME => Some(Button::Resume(name(rest)?)),
        APPROVE => {
            let (n, h) = rest.split_once(':')?;
            (h.len() >= 12 && h.chars().all(|c| c.is_ascii_hexdigit())).then_some(())?;
            Some(Button::Approve {
                name: name(n)?,
                plan_hash: h.to_owned(),
            })
        }
        _ => None,
    }
}

/// `/every 1h run the tests in ~/src/app`: the calendar (a duration, or `@hourly`/`@daily`),
/// and what to do.
pub fn parse_every(args: &str) -> Option<(String, String)> {
    let args = args.trim();
    let (spec, rest) = args.split_once(char::is_whitespace)?;
    let cron = if spec.starts_with('@') {
        spec.to_owned()
    } else {
        format!("@every {spec}")
    };
    let rest = rest.trim();
    (!rest.is_empty()).then(|| (cron, rest.to_owned()))
}

/// A schedule name from the words of the request, made unique by `salt`.
pub fn name_for(request: &str, salt: &str) -> String {
    let words: Vec<String> = request
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let mut base = String::new();
    for w in words {
        if base.len() + w.len() + 1 > 22 {
            break;
        }
        if !base.is_empty() {
            base.push('-');
        }
        base.push_str(&w);
    }
    if base.is_empty() {
        base.push_str("every");
    }
    let tag = JobId::derive(salt);
    format!("{base}-{}", &tag.as_str()[..6])
}

/// Buttons for a schedule: pause or resume, and approve while it waits for a person.
pub fn buttons(s: &Schedule) -> Option<InlineKeyboardMarkup> {
    let b = match s.state {
        ScheduleState::Active => {
            InlineKeyboardButton::callback("⏸ Pause", format!("{PAUSE}:{}", s.name))
        }
        ScheduleState::Paused => {
            InlineKeyboardButton::callback("▶️ Resume", format!("{RESUME}:{}", s.name))
        }
        ScheduleState::AwaitingApproval => InlineKeyboardButton::callback(
            "✅ Approve",
            format!(
                "{APPROVE}:{}:{}",
                s.name,
                &s.plan_hash[..12.min(s.plan_hash.len())]
            ),
        ),
    };
    Some(InlineKeyboardMarkup::new([[b]]))
}

/// One schedule, for a message.
pub fn render(s: &Schedule) -> String {
    let mut out = format!(
        "🗓 <b>{}</b> — {} · <code>{}</code> ({})\n{}",
        esc(&s.name),
        s.state.as_str(),
        esc(&s.cron),
        esc(&s.tz),
        esc(&clip(&s.summary, 300))
    );
    if let Some(next) = &s.next_run {
        out.push_str(&format!("\nNext run: {}", esc(next)));
    }
    if let (Some(job), Some(run)) = (&s.last_job_id, &s.last_run) {
        let state = s.last_state.map(|st| st.as_str()).unwrap_or("submitted");
        out.push_str(&format!(
            "\nLast run: {} <code>{}</code> {}",
            esc(run),
            esc(job.as_str()),
            state
        ));
    }
    if s.state == ScheduleState::AwaitingApproval {
        out.push_str(&format!(
            "\nNeeds approval: {}\nPlan hash: {}",
            esc(&s.reasons.join("; ")),
            &s.plan_hash[..12.min(s.plan_hash.len())]
        ));
    }
    out
}

/// Creates the schedule `/every` asks for; the reply text and its buttons.
pub async fn every(
    nats: &Client,
    name: String,
    cron: String,
    intent: Intent,
    by: String,
    origin: String,
) -> (String, Option<InlineKeyboardMarkup>) {
    let request = match intent {
        Intent::Goal(g) => json!({"goal": g, "origin": origin}),
        Intent::Shell(cmd) => {
            json!({"steps": [{"action": "shell", "cmd": cmd}], "origin": origin})
        }
    };
    let body = json!({"name": name, "cron": cron, "request": request, "by": by});
    match call::<_, Schedule>(nats, api::SCHEDULES_CREATE, &body).await {
        Ok(s) => (render(&s), buttons(&s)),
        Err(e) => (format!("❌ Not scheduled: {}", trouble(&e)), None),
    }
}

pub async fn list(nats: &Client) -> Vec<(String, Option<InlineKeyboardMarkup>)> {
    match call::<_, ListReply>(nats, api::SCHEDULES_LIST, &Empty {}).await {
        Ok(r) if r.schedules.is_empty() => {
            vec![(
                "No schedules. <code>/every 1h run the tests in ~/src/app</code> makes one.".into(),
                None,
            )]
        }
        Ok(r) => r
            .schedules
            .iter()
            .take(20)
            .map(|s| (render(s), buttons(s)))
            .collect(),
        Err(e) => vec![(trouble(&e), None)],
    }
}

/// What a schedule button pressed by Telegram user `uid` does; the short answer for the
/// person. An approval is signed for `uid` with `signer` (the ingress's key) when it has one.
pub async fn press(
    nats: &Client,
    button: Button,
    uid: u64,
    signer: Option<&nkeys::KeyPair>,
) -> String {
    let by = format!("{}{uid}", crate::TELEGRAM_PREFIX);
    let result = match &button {
        Button::Pause(name) | Button::Resume(name) => {
            let endpoint = if matches!(button, Button::Pause(_)) {
                api::SCHEDULES_PAUSE
            } else {
                api::SCHEDULES_RESUME
            };
            let req = NameRequest {
                name: name.clone(),
                by: Some(by),
            };
            call::<_, Schedule>(nats, endpoint, &req).await
        }
        Button::Approve { name, plan_hash } => {
            // Signed for this user: policy records `telegram:<uid>` because the ingress's
            // key says so, not because the request does.
            let signature = signer.and_then(|key| {
                skynet_protocol::approval::sign(
                    key,
                    &ScheduleDecision { name, plan_hash },
                    skynet_protocol::time::now_ms() / 1000,
                    Some(uid.to_string()),
                )
                .map_err(|e| tracing::warn!(error = %e, "signing a schedule approval"))
                .ok()
            });
            let req = ApproveRequest {
                name: name.clone(),
                plan_hash: plan_hash.clone(),
                by: Some(by),
                signature,
            };
            call::<_, Schedule>(nats, api::SCHEDULES_APPROVE, &req).await
        }
    };
    match result {
        Ok(s) => format!("{}: {}", s.name, s.state.as_str()),
        Err(CallError::Api(e)) => clip(&e.message, 190),
        Err(_) => "SKYNET is not answering right now; try again.".into(),
    }
}

fn trouble(e: &CallError) -> String {
    match e {
        CallError::Api(a) => esc(&clip(&a.message, 600)),
        _ => "SKYNET is not answering right now; try again in a moment.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reads_a_duration_or_a_keyword_and_the_request() {
        assert_eq!(
            parse_every("1h run the tests in ~/src/app"),
            Some(("@every 1h".into(), "run the tests in ~/src/app".into()))
        );
        assert_eq!(
            parse_every("@daily df -h"),
            Some(("@daily".into(), "df -h".into()))
        );
        assert_eq!(parse_every("1h"), None);
        let n = name_for("run the tests in ~/src/app", "x");
        assert!(skynet_protocol::schedule::check_name(&n).is_ok(), "{n}");
        assert!(n.starts_with("run-the-tests-in-src-"), "{n}");
    }

    #[test]
    fn buttons_parse_and_weird_data_does_not() {
        assert_eq!(
            parse_button("spause:tests"),
            Some(Button::Pause("tests".into()))
        );
        assert_eq!(
            parse_button("sapprove:tests:0123456789ab"),
            Some(Button::Approve {
                name: "tests".into(),
                plan_hash: "0123456789ab".into()
            })
        );
        assert_eq!(parse_button("sapprove:tests:xyz"), None);
        assert_eq!(parse_button("spause:Bad Name"), None);
        assert_eq!(parse_button("approve:job"), None);
    }
}
