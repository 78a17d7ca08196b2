//! Schedules (contract: Schedules, `skynet.api.schedules.*`): each tick makes one ordinary
//! job `<name>-<UTC yyyymmddHHMMSS>` requested by `schedule:<name>`, even with two owners
//! firing; a skipped tick is recorded; missed ticks make one job with `catch_up: one`; the
//! plan is judged once, and one that needs a person waits for `schedules.approve` with its
//! hash; pause, resume and delete are audited; bad input is refused naming the field and
//! creates nothing.

use std::time::Duration;

use serde_json::{Value, json};
use skynet_protocol::{EventKind, JobId, JobState, subjects::api};
use skynet_tests::{Options, Stack};

async fn call(stack: &Stack, endpoint: &str, body: Value) -> Result<Value, (u16, String)> {
    stack.api_raw(endpoint, body.to_string().as_bytes()).await
}

async fn create(stack: &Stack, body: Value) -> Value {
    call(stack, api::SCHEDULES_CREATE, body)
        .await
        .unwrap_or_else(|e| panic!("creating a schedule: {e:?}"))
}

async fn get(stack: &Stack, name: &str) -> Value {
    call(stack, api::SCHEDULES_GET, json!({"name": name}))
        .await
        .unwrap()
}

/// Waits until the schedule satisfies `pred` (it is a KV record, polled through the API).
async fn wait_schedule(stack: &Stack, name: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + skynet_tests::stack::WAIT;
    loop {
        let s = get(stack, name).await;
        if pred(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "schedule {name} never got there: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next job of schedule `name` to reach `state` whose id is not in `seen`.
async fn next_tick_job(stack: &Stack, name: &str, state: JobState, seen: &[JobId]) -> JobId {
    let prefix = format!("{name}-");
    stack
        .wait_event_matching(|e| {
            e.job_id.as_str().starts_with(&prefix)
                && e.state() == state
                && !seen.contains(&e.job_id)
        })
        .await
        .job_id
}

fn tick_of(job: &JobId, name: &str) -> i64 {
    let stamp = job.as_str().strip_prefix(&format!("{name}-")).unwrap();
    assert_eq!(stamp.len(), 14, "{job}");
    let t: jiff::civil::DateTime = jiff::civil::DateTime::strptime("%Y%m%d%H%M%S", stamp).unwrap();
    t.to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp()
        .as_second()
}

#[tokio::test]
async fn every_second_makes_one_ordinary_job_per_tick_named_after_the_tick() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let s = create(
        &stack,
        json!({"name": "beat", "cron": "@every 1s", "by": "cli:alice",
               "request": {"goal": "say hello", "steps": [{"action": "shell", "cmd": "echo hello"}]}}),
    )
    .await;
    assert_eq!(s["state"], "active");
    assert_eq!(s["created_by"], "cli:alice");
    assert_eq!(s["overlap"], "skip");
    assert_eq!(s["catch_up"], "one");
    assert_eq!(s["plan_hash"].as_str().unwrap().len(), 64);

    let first = next_tick_job(&stack, "beat", JobState::Succeeded, &[]).await;
    let second = next_tick_job(
        &stack,
        "beat",
        JobState::Succeeded,
        std::slice::from_ref(&first),
    )
    .await;
    assert!(tick_of(&second, "beat") > tick_of(&first, "beat"));
    let events = stack.events(&first).await;
    let EventKind::Received { request } = &events[0].kind else {
        panic!("{events:?}")
    };
    assert_eq!(request.requested_by.as_deref(), Some("schedule:beat"));
    assert_eq!(
        events
            .iter()
            .filter(|e| e.state() == JobState::Received)
            .count(),
        1
    );
    let approved = events
        .iter()
        .find(|e| e.state() == JobState::Approved)
        .unwrap();
    assert!(matches!(&approved.kind, EventKind::Approved { by, .. } if by == "policy"));
    assert!(stack.output(&first).await.contains("hello"));
    // An ordinary job: the ledger has it.
    stack.ledger_state(&first, JobState::Succeeded).await;

    let s = wait_schedule(&stack, "beat", |s| s["last_state"] == "succeeded").await;
    let last = s["last_job_id"].as_str().unwrap();
    assert!(last.starts_with("beat-"), "{s:#}");
    let next = skynet_protocol::time::parse(s["next_run"].as_str().unwrap()).unwrap();
    let last_run = skynet_protocol::time::parse(s["last_run"].as_str().unwrap()).unwrap();
    assert!(next > last_run);
    assert_eq!(s["history"][0]["action"], "created");
    assert_eq!(s["history"][0]["by"], "cli:alice");
    let listed = call(&stack, api::SCHEDULES_LIST, json!({})).await.unwrap();
    assert_eq!(listed["schedules"][0]["name"], "beat");
}

#[tokio::test]
async fn two_owners_fire_each_tick_once() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let url = stack.nats.url();
    stack
        .start_service_at("dispatcher", "dispatcher-2", &url)
        .await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    create(
        &stack,
        json!({"name": "twice", "cron": "@every 1s", "overlap": "queue",
               "request": {"steps": [{"action": "shell", "cmd": "true"}]}}),
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let job = next_tick_job(&stack, "twice", JobState::Succeeded, &seen).await;
        seen.push(job);
    }
    let mut ticks: Vec<i64> = seen.iter().map(|j| tick_of(j, "twice")).collect();
    ticks.sort();
    ticks.dedup();
    assert_eq!(ticks.len(), 4);
    for job in &seen {
        let events = stack.events(job).await;
        for state in [JobState::Received, JobState::Dispatched, JobState::Running] {
            assert_eq!(
                events.iter().filter(|e| e.state() == state).count(),
                1,
                "{job}: {events:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_tick_while_the_previous_job_runs_is_skipped_and_recorded_and_pause_resume_are_audited() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let w = stack.add_worker(stack.worker_config("w1")).await;
    let gate = w.home().join("gate");
    create(
        &stack,
        json!({"name": "slow", "cron": "@every 1s",
               "request": {"steps": [{"action": "shell", "cmd": format!("while [ ! -e {} ]; do sleep 0.05; done", gate.display())}]}}),
    )
    .await;
    let first = next_tick_job(&stack, "slow", JobState::Running, &[]).await;
    let s = wait_schedule(&stack, "slow", |s| {
        s["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["action"] == "skipped")
    })
    .await;
    let skipped = s["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["action"] == "skipped")
        .unwrap();
    assert!(
        skipped["detail"].as_str().unwrap().contains(first.as_str()),
        "{skipped}"
    );
    assert_eq!(s["last_job_id"], first.as_str());

    let paused = call(
        &stack,
        api::SCHEDULES_PAUSE,
        json!({"name": "slow", "by": "cli:bob"}),
    )
    .await
    .unwrap();
    assert_eq!(paused["state"], "paused");
    assert!(paused["next_run"].is_null());
    std::fs::write(&gate, "").unwrap();
    stack.wait_state(&first, JobState::Succeeded).await;
    let s = wait_schedule(&stack, "slow", |s| s["last_state"] == "succeeded").await;
    assert_eq!(
        s["last_job_id"],
        first.as_str(),
        "a paused schedule made a job"
    );

    let resumed = call(
        &stack,
        api::SCHEDULES_RESUME,
        json!({"name": "slow", "by": "cli:carol"}),
    )
    .await
    .unwrap();
    assert_eq!(resumed["state"], "active");
    let after = next_tick_job(
        &stack,
        "slow",
        JobState::Succeeded,
        std::slice::from_ref(&first),
    )
    .await;
    assert!(tick_of(&after, "slow") > tick_of(&first, "slow"));
    let s = get(&stack, "slow").await;
    let audit: Vec<(String, String)> = s["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["action"] == "paused" || h["action"] == "resumed")
        .map(|h| {
            (
                h["action"].as_str().unwrap().into(),
                h["by"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        audit,
        [
            ("paused".into(), "cli:bob".into()),
            ("resumed".into(), "cli:carol".into())
        ]
    );

    let gone = call(&stack, api::SCHEDULES_DELETE, json!({"name": "slow"}))
        .await
        .unwrap();
    assert_eq!(gone, json!({"name": "slow", "deleted": true}));
    let (code, _) = call(&stack, api::SCHEDULES_GET, json!({"name": "slow"}))
        .await
        .unwrap_err();
    assert_eq!(code, 404);
}

#[tokio::test]
async fn a_plan_that_needs_a_person_waits_for_approve_with_its_hash_then_runs_as_theirs() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let s = create(
        &stack,
        json!({"name": "asks", "cron": "@every 1s",
               "request": {"steps": [{"action": "shell", "cmd": "approve-me"}]}}),
    )
    .await;
    assert_eq!(s["state"], "awaiting_approval");
    assert!(s["next_run"].is_null());
    let hash = s["plan_hash"].as_str().unwrap().to_owned();
    let (code, message) = call(
        &stack,
        api::SCHEDULES_APPROVE,
        json!({"name": "asks", "plan_hash": "0123456789ab", "by": "alice"}),
    )
    .await
    .unwrap_err();
    assert_eq!(code, 409, "{message}");
    let (code, _) = call(
        &stack,
        api::SCHEDULES_APPROVE,
        json!({"name": "nope", "plan_hash": hash, "by": "alice"}),
    )
    .await
    .unwrap_err();
    assert_eq!(code, 404);
    // Without identities the name given is recorded, but never policy's own.
    for by in ["policy", "schedule:asks"] {
        let (code, message) = call(
            &stack,
            api::SCHEDULES_APPROVE,
            json!({"name": "asks", "plan_hash": hash, "by": by}),
        )
        .await
        .unwrap_err();
        assert_eq!(code, 403, "{by}: {message}");
    }
    assert!(get(&stack, "asks").await["last_job_id"].is_null());
    assert_eq!(get(&stack, "asks").await["state"], "awaiting_approval");

    let ok = call(
        &stack,
        api::SCHEDULES_APPROVE,
        json!({"name": "asks", "plan_hash": &hash[..12], "by": "alice"}),
    )
    .await
    .unwrap();
    assert_eq!(ok["state"], "active");
    let job = next_tick_job(&stack, "asks", JobState::Approved, &[]).await;
    let approved = stack.wait_state(&job, JobState::Approved).await;
    let EventKind::Approved { by, seal, .. } = &approved.kind else {
        unreachable!()
    };
    assert_eq!(by, "alice");
    assert!(seal.is_some());
    let history = get(&stack, "asks").await["history"].clone();
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["action"] == "approved" && h["by"] == "alice")
    );
}

#[tokio::test]
async fn a_job_claiming_a_schedule_with_another_plan_is_denied() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let s = create(
        &stack,
        json!({"name": "real", "cron": "@daily", "request": {"steps": [{"action": "shell", "cmd": "approve-me"}]}}),
    )
    .await;
    let hash = s["plan_hash"].as_str().unwrap().to_owned();
    call(
        &stack,
        api::SCHEDULES_APPROVE,
        json!({"name": "real", "plan_hash": hash, "by": "alice"}),
    )
    .await
    .unwrap();
    let forged = JobId::parse("real-20260101000000").unwrap();
    stack
        .publish(
            &json!({"id": forged, "requested_by": "schedule:real",
                    "steps": [{"action": "shell", "cmd": "approve-me --and-more"}]})
            .to_string(),
        )
        .await;
    let done = stack.wait_terminal(&forged).await;
    let EventKind::Denied { reason, .. } = &done.kind else {
        panic!("{done:?}")
    };
    assert!(reason.contains("not the one of schedule real"), "{reason}");
}

#[tokio::test]
async fn missed_ticks_make_one_job_with_catch_up_one() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    stack.stop_service("dispatcher").await;
    let s = create(
        &stack,
        json!({"name": "late", "cron": "@every 1s", "request": {"steps": [{"action": "shell", "cmd": "true"}]}}),
    )
    .await;
    // Nothing fires while the owner is down; three ticks pass.
    let first_tick = skynet_protocol::time::parse(s["next_run"].as_str().unwrap()).unwrap();
    let until = first_tick + time::Duration::seconds(3);
    while time::OffsetDateTime::now_utc() < until + time::Duration::milliseconds(200) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // (The owner serves `schedules.get`; while it is down, the bucket says.)
    let kv = stack.js.get_key_value("skynet-schedules").await.unwrap();
    let record: Value = serde_json::from_slice(&kv.get("late").await.unwrap().unwrap()).unwrap();
    assert!(record["last_job_id"].is_null());
    let restarted = time::OffsetDateTime::now_utc().unix_timestamp();
    stack.start_service("dispatcher").await;
    stack.wait_endpoints(&[api::SCHEDULES_GET]).await;
    let s = wait_schedule(&stack, "late", |s| {
        s["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["action"] == "missed")
    })
    .await;
    let missed = s["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["action"] == "missed")
        .unwrap();
    let count: u32 = missed["detail"]
        .as_str()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(count >= 4, "{missed}");
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(next_tick_job(&stack, "late", JobState::Succeeded, &seen).await);
    }
    // One job stands for every tick missed before the restart; the rest are on time.
    let before: Vec<&JobId> = seen
        .iter()
        .filter(|j| tick_of(j, "late") <= restarted)
        .collect();
    assert!(before.len() <= 1, "{seen:?} (restart at {restarted})");
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_nothing_is_created() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let ok = json!({"steps": [{"action": "shell", "cmd": "true"}]});
    create(
        &stack,
        json!({"name": "taken", "cron": "@daily", "request": ok}),
    )
    .await;
    for (body, field) in [
        (
            json!({"name": "Bad Name", "cron": "@daily", "request": ok}),
            "`name`",
        ),
        (
            json!({"name": "taken", "cron": "@daily", "request": ok}),
            "`name`",
        ),
        (
            json!({"name": "c", "cron": "61 * * * *", "request": ok}),
            "`cron`",
        ),
        (
            json!({"name": "c", "cron": "@every 0s", "request": ok}),
            "`cron`",
        ),
        (
            json!({"name": "c", "cron": "@daily", "tz": "Mars/Base", "request": ok}),
            "`tz`",
        ),
        (
            json!({"name": "c", "cron": "@daily", "request": {"id": "x", "goal": "g"}}),
            "`request.id`",
        ),
        (
            json!({"name": "c", "cron": "@daily", "request": {"goal": "g", "priority": "asap"}}),
            "`priority`",
        ),
        (
            json!({"name": "c", "cron": "@daily", "request": {"goal": "g", "lock": "l".repeat(200)}}),
            "`lock`",
        ),
        (
            json!({"name": "c", "cron": "@daily", "request": ok, "overlap": "pile"}),
            "`overlap`",
        ),
        (
            json!({"name": "c", "cron": "@daily", "request": {"steps": [{"action": "shell", "cmd": "rm -rf ~"}]}}),
            "denies",
        ),
    ] {
        let (code, message) = call(&stack, api::SCHEDULES_CREATE, body.clone())
            .await
            .unwrap_err();
        assert_eq!(code, 400, "{body}: {message}");
        assert!(message.contains(field), "{body}: {message}");
    }
    let listed = call(&stack, api::SCHEDULES_LIST, json!({})).await.unwrap();
    let names: Vec<&str> = listed["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["taken"]);
    for endpoint in [
        api::SCHEDULES_GET,
        api::SCHEDULES_PAUSE,
        api::SCHEDULES_RESUME,
        api::SCHEDULES_DELETE,
    ] {
        let (code, _) = call(&stack, endpoint, json!({"name": "ghost"}))
            .await
            .unwrap_err();
        assert_eq!(code, 404, "{endpoint}");
    }
}

#[tokio::test]
async fn schedules_work_with_every_identity_confined_to_its_permissions() {
    let mut o = Options {
        secure: true,
        workers: vec!["w1"],
        policy: Some(skynet_tests::PERMISSIVE_POLICY.into()),
        ..Default::default()
    };
    o.timing.unroutable_after = Duration::from_millis(200);
    let mut stack = Stack::start_with(o).await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let cli = stack.connect_as("cli").await;
    let created: Value = skynet_runtime::api::call(
        &cli,
        api::SCHEDULES_CREATE,
        &json!({"name": "secure", "cron": "@every 1s", "by": "cli:alice",
                "request": {"steps": [{"action": "shell", "cmd": "echo confined"}]}}),
    )
    .await
    .unwrap();
    assert_eq!(created["state"], "active");
    let job = next_tick_job(&stack, "secure", JobState::Succeeded, &[]).await;
    assert!(stack.output(&job).await.contains("confined"));
    let paused: Value =
        skynet_runtime::api::call(&cli, api::SCHEDULES_PAUSE, &json!({"name": "secure"}))
            .await
            .unwrap();
    assert_eq!(paused["state"], "paused");
    let listed: Value = skynet_runtime::api::call(&cli, api::SCHEDULES_LIST, &json!({}))
        .await
        .unwrap();
    assert_eq!(listed["schedules"][0]["name"], "secure");
}

#[tokio::test]
async fn a_schedule_approval_is_recorded_as_its_signer_and_an_unsigned_one_is_refused() {
    let o = Options {
        secure: true,
        workers: vec!["w1"],
        policy: Some(skynet_tests::PERMISSIVE_POLICY.into()),
        ..Default::default()
    };
    let stack = Stack::start_with(o).await;
    let cli = stack.connect_as("cli").await;
    let created: Value = skynet_runtime::api::call(
        &cli,
        api::SCHEDULES_CREATE,
        &json!({"name": "signed", "cron": "@daily", "by": "cli:alice",
                "request": {"steps": [{"action": "shell", "cmd": "approve-me"}]}}),
    )
    .await
    .unwrap();
    assert_eq!(created["state"], "awaiting_approval");
    let hash = created["plan_hash"].as_str().unwrap().to_owned();
    let approve = |body: Value| {
        let cli = cli.clone();
        async move {
            let reply = cli
                .request(
                    skynet_protocol::subjects::api(api::SCHEDULES_APPROVE),
                    body.to_string().into(),
                )
                .await
                .unwrap();
            serde_json::from_slice::<Value>(&reply.payload).unwrap()
        }
    };
    let still_waiting = |s: Value| {
        assert_eq!(s["state"], "awaiting_approval", "{s:#}");
        assert!(s["approved_by"].is_null(), "{s:#}");
        assert!(
            !s["history"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["action"] == "approved"),
            "{s:#}"
        );
    };
    // Unsigned with a reply inbox that is not an approver's: refused (the refusal goes to
    // that inbox; the schedule tells).
    let worker_key = stack.creds_public_key("worker-w1");
    cli.publish_with_reply(
        skynet_protocol::subjects::api(api::SCHEDULES_APPROVE),
        format!("_INBOX.{worker_key}.forged"),
        json!({"name": "signed", "plan_hash": hash, "by": "policy"})
            .to_string()
            .into(),
    )
    .await
    .unwrap();
    cli.flush().await.unwrap();
    // A job decision's signature for a job of the same name and plan does not count.
    let job = JobId::parse("signed").unwrap();
    let mut replayed = stack.signed_decision("cli", &job, &hash, true, "policy");
    let sig = replayed["signature"].take();
    let r = approve(json!({"name": "signed", "plan_hash": hash, "signature": sig})).await;
    assert_eq!(r["error"]["code"], 403, "{r}");
    // Signed by a key that is not an approver's (a worker's), or for another plan.
    let r = approve(stack.signed_schedule_approval("worker-w1", "signed", &hash, "policy")).await;
    assert_eq!(r["error"]["code"], 403, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not an approver"),
        "{r}"
    );
    let mut moved = stack.signed_schedule_approval("cli", "signed", "0123456789ab", "policy");
    moved["plan_hash"] = json!(hash);
    let r = approve(moved).await;
    assert_eq!(r["error"]["code"], 403, "{r}");
    still_waiting(get(&stack, "signed").await);

    // Signed by the approving CLI, still claiming policy: recorded as the CLI.
    let r = approve(stack.signed_schedule_approval("cli", "signed", &hash[..12], "policy")).await;
    assert_eq!(r["state"], "active", "{r}");
    let s = get(&stack, "signed").await;
    assert_eq!(s["approved_by"], "cli:cli", "{s:#}");
    assert!(
        s["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["action"] == "approved" && h["by"] == "cli:cli"),
        "{s:#}"
    );

    // Unsigned (a plain NATS request, as the contract has it) from the approving CLI,
    // claiming policy or a person: recorded as the CLI the server vouches for.
    for (name, by) in [("plain-policy", "policy"), ("plain-alice", "alice")] {
        let created: Value = skynet_runtime::api::call(
            &cli,
            api::SCHEDULES_CREATE,
            &json!({"name": name, "cron": "@daily",
                    "request": {"steps": [{"action": "shell", "cmd": "approve-me"}]}}),
        )
        .await
        .unwrap();
        let hash = created["plan_hash"].as_str().unwrap().to_owned();
        let r = approve(json!({"name": name, "plan_hash": hash, "by": by})).await;
        assert_eq!(r["state"], "active", "{r}");
        assert_eq!(get(&stack, name).await["approved_by"], "cli:cli");
    }
}
