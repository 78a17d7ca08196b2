//! The whole SKYNET control plane in-process against a throwaway nats-server, plus workers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use futures::StreamExt;
use skynet_protocol::lifecycle::Timing;
use skynet_protocol::streams::Retention;
use skynet_protocol::{Event, JobId, JobState, WorkerId, subjects};
use skynet_runtime::setup::{Existing, ensure_all};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::NatsServer;

/// How long a test waits for something before it fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// Installs a log subscriber when `RUST_LOG` is set, so failing tests can be read.
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// Knobs of a test stack.
#[derive(Clone)]
pub struct Options {
    /// Policy TOML; `None` for the built-in policy.
    pub policy: Option<String>,
    pub approval_ttl: Option<Duration>,
    /// The timing rules every service of the stack runs with.
    pub timing: Timing,
    pub planner: skynet_planner::Config,
    /// Auth on: every service, worker and the test's own client connect with their own
    /// nkey, and the server enforces each identity's permissions.
    pub secure: bool,
    /// Worker identities to create up front when `secure`.
    pub workers: Vec<&'static str>,
    /// The control-plane services run in-process.
    pub services: Vec<&'static str>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            policy: None,
            approval_ttl: None,
            timing: Timing {
                stop_confirm: Duration::from_secs(8),
                timeout_grace: Duration::from_secs(2),
                ..Timing::default()
            },
            planner: skynet_planner::Config::default(),
            secure: false,
            workers: vec![],
            services: vec![
                "ledger",
                "planner",
                "policy",
                "dispatcher",
                "sentinel",
                "archiver",
            ],
        }
    }
}

impl Options {
    /// The defaults with [`PERMISSIVE_POLICY`], for tests about other things than policy.
    pub fn permissive() -> Self {
        Self {
            policy: Some(PERMISSIVE_POLICY.into()),
            ..Default::default()
        }
    }
}

/// A policy that allows everything but the worst, for tests about other things.
pub const PERMISSIVE_POLICY: &str = r#"
[defaults]
verdict = "allow"
redirect = "allow"
[[rule]]
name = "needs a person"
verdict = "approve"
command = ['^approve-me(\s|$)']
reason = "this command asks for approval"
[[rule]]
name = "never"
verdict = "deny"
command = ['^rm\s+-rf\s+~']
reason = "deletes the home directory"
"#;

struct Service {
    token: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
}

/// A running stack. Dropping it stops everything.
pub struct Stack {
    pub nats: NatsServer,
    pub client: Client,
    pub js: async_nats::jetstream::Context,
    pub dir: tempfile::TempDir,
    pub signer: Arc<nkeys::KeyPair>,
    pub options: Options,
    /// The credentials, when auth is on.
    pub creds: Option<skynet_runtime::creds::CredsDir>,
    services: HashMap<String, Service>,
}

impl Stack {
    /// nats-server and every control-plane service, with the built-in policy.
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        init_tracing();
        let dir = tempfile::tempdir().expect("temp dir");
        let (nats, creds, signer) = if options.secure {
            let mut creds = skynet_runtime::creds::CredsDir::init(
                &dir.path().join("creds"),
                skynet_runtime::creds::ServerSettings {
                    listen: "127.0.0.1:4222".into(),
                    store_dir: dir.path().join("unused"),
                },
            )
            .expect("creating credentials");
            for w in &options.workers {
                creds
                    .add_worker(&WorkerId::parse(w).expect("worker id"))
                    .expect("worker identity");
            }
            let nats = NatsServer::start_with_config(&creds.authorization());
            let signer = skynet_runtime::args::read_seed(&creds.seed_path("policy"), "policy")
                .and_then(|s| s.key_pair())
                .expect("policy key");
            (nats, Some(creds), Arc::new(signer))
        } else {
            (
                NatsServer::start(),
                None,
                Arc::new(nkeys::KeyPair::new_user()),
            )
        };
        let admin = match &creds {
            Some(c) => skynet_runtime::connect(
                &skynet_runtime::NatsArgs {
                    url: nats.url(),
                    seed: Some(c.seed_path("admin")),
                    ca: None,
                },
                "test-admin",
            )
            .await
            .expect("admin connection"),
            None => nats.client().await,
        };
        let js = async_nats::jetstream::new(admin.clone());
        ensure_all(&js, &Retention::default(), Existing::Update)
            .await
            .expect("creating streams");
        let mut stack = Self {
            nats,
            client: admin,
            js,
            dir,
            signer,
            options,
            creds,
            services: HashMap::new(),
        };
        for name in stack.options.services.clone() {
            stack.start_service(name).await;
        }
        let all_api = ["ledger", "planner", "policy", "dispatcher"]
            .iter()
            .all(|s| stack.options.services.contains(s));
        if all_api {
            stack.wait_api_ready().await;
        }
        stack
    }

    /// Waits until every API endpoint answers (with a 400 to an empty-field probe).
    pub async fn wait_api_ready(&self) {
        self.wait_endpoints(&subjects::api::ALL).await;
    }

    /// Waits until the given API endpoints answer.
    pub async fn wait_endpoints(&self, endpoints: &[&str]) {
        let deadline = tokio::time::Instant::now() + WAIT;
        for endpoint in endpoints.iter().copied() {
            while let Err(skynet_runtime::api::CallError::NoService(_)) =
                skynet_runtime::api::call_raw(
                    &self.client,
                    endpoint,
                    bytes::Bytes::from_static(b"{\"probe\":1}"),
                    Duration::from_secs(2),
                )
                .await
            {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{endpoint} never came up"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// A directory under the stack's temp dir, created.
    pub fn path(&self, rel: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(&p).expect("creating test dir");
        p
    }

    /// The connection settings of identity `name` (its seed when auth is on).
    pub fn nats_args(&self, url: &str, name: &str) -> skynet_runtime::NatsArgs {
        skynet_runtime::NatsArgs {
            url: url.to_owned(),
            seed: self.creds.as_ref().map(|c| c.seed_path(name)),
            ca: None,
        }
    }

    /// A client connected as identity `name` (auth on) that reports the server's errors, such
    /// as permission violations, on the returned channel.
    pub async fn raw_client(
        &self,
        name: &str,
    ) -> (Client, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let creds = self.creds.as_ref().expect("auth is off");
        let seed = skynet_runtime::args::read_seed(&creds.seed_path(name), name).expect("seed");
        let public = seed.key_pair().expect("key").public_key();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let client = async_nats::ConnectOptions::with_nkey(seed.expose().to_owned())
            .custom_inbox_prefix(skynet_protocol::permissions::inbox_prefix(&public))
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    if let async_nats::Event::ServerError(e) = event {
                        let _ = tx.send(e.to_string());
                    }
                }
            })
            .connect(self.nats.url())
            .await
            .expect("connecting");
        (client, rx)
    }

    /// The public key of identity `name` (auth on).
    pub fn creds_public_key(&self, name: &str) -> String {
        self.key_of(name).public_key()
    }

    /// The key pair of identity `name` (auth on), from its seed file.
    fn key_of(&self, name: &str) -> nkeys::KeyPair {
        let creds = self.creds.as_ref().expect("auth is off");
        skynet_runtime::args::read_seed(&creds.seed_path(name), name)
            .expect("seed")
            .key_pair()
            .expect("key")
    }

    /// `decision` signed now by identity `name`, as a person's CLI signs it.
    fn sign_now(
        &self,
        name: &str,
        decision: &impl skynet_protocol::approval::Signable,
    ) -> skynet_protocol::approval::DecisionSignature {
        skynet_protocol::approval::sign(
            &self.key_of(name),
            decision,
            skynet_protocol::time::now_ms() / 1000,
            None,
        )
        .expect("signing")
    }

    /// The body of a `jobs.approve` (or, `approve` false, `jobs.deny`) for `job`'s plan
    /// `plan_hash`, signed by identity `name` (auth on) as `skynet approve` signs it, and
    /// claiming the free-text `by`.
    pub fn signed_decision(
        &self,
        name: &str,
        job: &JobId,
        plan_hash: &str,
        approve: bool,
        by: &str,
    ) -> serde_json::Value {
        use skynet_protocol::approval::{Decision, Verdict};
        let verdict = if approve {
            Verdict::Approve
        } else {
            Verdict::Deny
        };
        let decision = Decision {
            job_id: job,
            plan_hash,
            verdict,
        };
        let signature = self.sign_now(name, &decision);
        serde_json::json!({"job_id": job, "plan_hash": plan_hash, "by": by, "signature": signature})
    }

    /// A `schedules.approve` body for `schedule` and `plan_hash`, signed with the seed of
    /// identity `name`, claiming to be `by`.
    pub fn signed_schedule_approval(
        &self,
        name: &str,
        schedule: &str,
        plan_hash: &str,
        by: &str,
    ) -> serde_json::Value {
        let decision = skynet_protocol::approval::ScheduleDecision {
            name: schedule,
            plan_hash,
        };
        let signature = self.sign_now(name, &decision);
        serde_json::json!({"name": schedule, "plan_hash": plan_hash, "by": by, "signature": signature})
    }

    /// A client connected as identity `name`.
    pub async fn connect_as(&self, name: &str) -> Client {
        skynet_runtime::connect(&self.nats_args(&self.nats.url(), name), name)
            .await
            .expect("connecting")
    }

    /// Starts (or restarts) a control-plane service by name.
    pub async fn start_service(&mut self, name: &str) {
        let url = self.nats.url();
        self.start_service_at(name, name, &url).await;
    }

    /// Starts a service under `label` connected to `url` (a proxy, say).
    pub async fn start_service_at(&mut self, name: &str, label: &str, url: &str) {
        let client = skynet_runtime::connect(&self.nats_args(url, name), label)
            .await
            .expect("connecting a service");
        let token = CancellationToken::new();
        let t = token.clone();
        let handle = match name {
            "ledger" => {
                let config = skynet_ledger::Config {
                    data_dir: self.path("ledger"),
                    missed_heartbeats: 3,
                };
                tokio::spawn(skynet_ledger::run(config, client, t))
            }
            "planner" => tokio::spawn(skynet_planner::run(self.options.planner.clone(), client, t)),
            "policy" => {
                let mut policy = match &self.options.policy {
                    Some(text) => skynet_policy::Policy::from_toml(text).expect("test policy"),
                    None => skynet_policy::Policy::builtin().expect("built-in policy"),
                };
                if let Some(ttl) = self.options.approval_ttl {
                    policy.approval_ttl = ttl;
                }
                let config = skynet_policy::Config {
                    policy: Arc::new(policy),
                    signing_key: self.signer.clone(),
                    grant_ttl: Duration::from_secs(24 * 3600),
                    deciders: match &self.creds {
                        Some(c) => skynet_policy::Deciders::File(
                            c.dir().join(skynet_policy::APPROVERS_FILE),
                        ),
                        None => skynet_policy::Deciders::Anyone,
                    },
                };
                tokio::spawn(skynet_policy::run(config, client, t))
            }
            "dispatcher" => tokio::spawn(skynet_dispatcher::run(
                skynet_dispatcher::Config {
                    timing: self.options.timing.clone(),
                },
                client,
                t,
            )),
            "sentinel" => tokio::spawn(skynet_sentinel::run(
                skynet_sentinel::Config {
                    timing: self.options.timing.clone(),
                },
                client,
                t,
            )),
            "archiver" => tokio::spawn(skynet_archiver::run(Default::default(), client, t)),
            other => panic!("no service {other}"),
        };
        self.services
            .insert(label.into(), Service { token, handle });
    }

    /// Panics if any in-process service has stopped (crashed or returned).
    pub fn assert_services_running(&self) {
        for (name, s) in &self.services {
            assert!(!s.handle.is_finished(), "service {name} stopped");
        }
    }

    /// Restarts a service and waits for the API to answer again.
    pub async fn restart_service(&mut self, name: &str) {
        self.stop_service(name).await;
        self.start_service(name).await;
        self.wait_api_ready().await;
    }

    /// Stops a service cleanly and checks it exited without error.
    pub async fn stop_service(&mut self, name: &str) {
        let s = self
            .services
            .remove(name)
            .unwrap_or_else(|| panic!("{name} not running"));
        s.token.cancel();
        let result = tokio::time::timeout(WAIT, s.handle)
            .await
            .unwrap_or_else(|_| panic!("{name} did not stop"))
            .expect("service task");
        result.unwrap_or_else(|e| panic!("{name} failed: {e:#}"));
    }

    /// Kills a service as a crash would: its task is dropped mid-flight (nothing is let go,
    /// nothing drained), then whatever it had spawned is told to stop.
    pub fn kill_service(&mut self, label: &str) {
        let s = self
            .services
            .remove(label)
            .unwrap_or_else(|| panic!("{label} not running"));
        s.handle.abort();
        s.token.cancel();
    }

    /// A worker configuration with its home and root in the stack's temp dir.
    pub fn worker_config(&self, id: &str) -> skynet_worker::Config {
        let home = self.path(&format!("home-{id}"));
        skynet_worker::Config {
            id: WorkerId::parse(id).expect("worker id"),
            labels: vec![],
            roots: vec![home.clone()],
            home,
            max_jobs: 1,
            heartbeat: Duration::from_millis(500),
            missed_heartbeats: self.options.timing.missed_heartbeats,
            supervisor: crate::process::supervisor_program(),
            trusted_keys: vec![self.signer.public_key()],
            data_dir: self.path(&format!("worker-data-{id}")),
            kill_grace: Duration::from_secs(5),
            env_allow: skynet_worker::DEFAULT_ENV_ALLOW
                .iter()
                .map(|s| s.to_string())
                .collect(),
            forbid: vec![],
            redact: vec![],
            artifact_max_bytes: 64 << 20,
            sandbox: None,
            protected: vec![],
        }
    }

    /// Starts a worker and waits until the registry lists it.
    pub async fn add_worker(&mut self, config: skynet_worker::Config) -> WorkerHandle {
        let id = config.id.clone();
        let client = self.connect_as(&format!("worker-{id}")).await;
        let token = CancellationToken::new();
        let handle = tokio::spawn(skynet_worker::run(config.clone(), client, token.clone()));
        let handle = WorkerHandle {
            id: id.clone(),
            config,
            token,
            handle: Some(handle),
        };
        self.wait_worker_registered(&id).await;
        handle
    }

    /// Waits until `id` has written its registry entry.
    pub async fn wait_worker_registered(&self, id: &WorkerId) {
        let kv = self
            .js
            .get_key_value(skynet_protocol::streams::WORKERS_BUCKET)
            .await
            .expect("registry");
        let mut watch = kv.watch_with_history(id.as_str()).await.expect("watch");
        tokio::time::timeout(WAIT, watch.next())
            .await
            .unwrap_or_else(|_| panic!("worker {id} never registered"));
    }

    /// Submits a request the way `nats pub` does (JetStream-stored, no API).
    pub async fn publish(&self, body: &str) {
        self.js
            .publish(subjects::SUBMIT, body.to_owned().into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }

    /// Submits a JSON JobRequest with a fresh id and returns the id.
    pub async fn submit(&self, mut request: serde_json::Value) -> JobId {
        let id = JobId::generate();
        request["id"] = serde_json::Value::String(id.to_string());
        self.publish(&request.to_string()).await;
        id
    }

    /// Submits a one-step shell job.
    pub async fn submit_shell(&self, cmd: &str) -> JobId {
        self.submit(serde_json::json!({"steps": [{"action": "shell", "cmd": cmd}]}))
            .await
    }

    /// Waits for `job` to reach `state` and returns that event. Fails if the job ends in
    /// another terminal state first.
    pub async fn wait_state(&self, job: &JobId, state: JobState) -> Event {
        let mut seen = Vec::new();
        let found = self
            .wait_event(job, |e| {
                seen.push(e.state());
                e.state() == state || e.state().is_terminal()
            })
            .await;
        assert_eq!(
            found.state(),
            state,
            "job {job} ended {} while waiting for {state}: {found:?}",
            found.state()
        );
        found
    }

    /// Waits for the job's terminal event.
    pub async fn wait_terminal(&self, job: &JobId) -> Event {
        self.wait_event(job, |e| e.state().is_terminal()).await
    }

    /// Reads the job's events from the start until `pred` holds.
    pub async fn wait_event(&self, job: &JobId, mut pred: impl FnMut(&Event) -> bool) -> Event {
        // The server may be on its way back from a restart: keep asking.
        let deadline = tokio::time::Instant::now() + WAIT;
        let name = skynet_protocol::streams::ordered_consumer_name();
        let consumer = loop {
            let made = async {
                self.js
                    .get_stream(skynet_protocol::streams::EVENTS)
                    .await?
                    .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                        name: Some(name.clone()),
                        filter_subject: subjects::events(job),
                        ..Default::default()
                    })
                    .await
                    .map_err(anyhow::Error::from)
            };
            match made.await {
                Ok(c) => break c,
                Err(e) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "cannot read the events of {job}: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let mut messages = consumer.messages().await.expect("messages");
        let mut history = Vec::new();
        let found = tokio::time::timeout(WAIT, async {
            while let Some(msg) = messages.next().await {
                let msg = msg.expect("event message");
                let event: Event = serde_json::from_slice(&msg.payload).expect("event json");
                history.push(format!("{}", event.state()));
                if pred(&event) {
                    return Some(event);
                }
            }
            None
        })
        .await;
        drop(messages);
        // Gone at once, not after the server's inactivity threshold: tests count consumers.
        if let Ok(stream) = self
            .js
            .get_stream_no_info(skynet_protocol::streams::EVENTS)
            .await
        {
            let _ = stream.delete_consumer(&name).await;
        }
        match found {
            Ok(Some(e)) => e,
            _ => panic!("job {job}: condition not met within {WAIT:?}; events so far: {history:?}"),
        }
    }

    /// Follows every job's events from the start until one satisfies `pred`.
    pub async fn wait_event_matching(&self, mut pred: impl FnMut(&Event) -> bool) -> Event {
        let log = skynet_runtime::EventLog::open(self.js.clone())
            .await
            .expect("event log");
        let events = log.follow(1).await.expect("follow");
        futures::pin_mut!(events);
        let found = tokio::time::timeout(WAIT, async {
            while let Some(e) = events.next().await {
                let e = e.expect("event").event;
                if pred(&e) {
                    return Some(e);
                }
            }
            None
        })
        .await;
        found
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no such event within {WAIT:?}"))
    }

    /// Every event of `job` stored so far.
    pub async fn events(&self, job: &JobId) -> Vec<Event> {
        let log = skynet_runtime::EventLog::open(self.js.clone())
            .await
            .expect("event log");
        log.history(job)
            .await
            .expect("history")
            .into_iter()
            .map(|s| s.event)
            .collect()
    }

    /// The job's output stored so far, as text.
    pub async fn output(&self, job: &JobId) -> String {
        let msgs = skynet_runtime::logs::read_all(&self.js, job)
            .await
            .expect("logs");
        msgs.iter()
            .filter(|m| m.stream != "system")
            .map(|m| String::from_utf8_lossy(&m.data).into_owned())
            .collect()
    }

    /// Follows `skynet.alerts` from the start until an alert satisfies `pred`.
    pub async fn wait_alert(
        &self,
        mut pred: impl FnMut(&skynet_protocol::alert::Alert) -> bool,
    ) -> skynet_protocol::alert::Alert {
        let stream = self
            .js
            .get_stream(skynet_protocol::streams::ALERTS)
            .await
            .expect("alerts stream");
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                name: Some(skynet_protocol::streams::ordered_consumer_name()),
                ..Default::default()
            })
            .await
            .expect("consumer");
        let mut messages = consumer.messages().await.expect("messages");
        let mut seen = Vec::new();
        let found = tokio::time::timeout(WAIT, async {
            while let Some(msg) = messages.next().await {
                let alert: skynet_protocol::alert::Alert =
                    serde_json::from_slice(&msg.expect("alert").payload).expect("alert json");
                seen.push(format!("{} {}", alert.kind, alert.detail));
                if pred(&alert) {
                    return Some(alert);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(a)) => a,
            _ => panic!("no such alert within {WAIT:?}; alerts so far: {seen:?}"),
        }
    }

    /// Waits until the archiver has stored `job`'s archive, and returns it.
    pub async fn wait_archived(&self, job: &JobId) -> skynet_runtime::archive::Archive {
        let store = skynet_runtime::archive::ArchiveStore::open(&self.js)
            .await
            .expect("archive store");
        let objects = self
            .js
            .get_object_store(skynet_protocol::streams::ARCHIVE_BUCKET)
            .await
            .expect("archive bucket");
        let mut watch = objects.watch().await.expect("watching the archive");
        let name = skynet_protocol::streams::archive_object(job);
        let found = tokio::time::timeout(WAIT, async {
            if let Some(a) = store.get(job).await.expect("archive") {
                return a;
            }
            while let Some(info) = watch.next().await {
                if info.expect("object info").name == name
                    && let Some(a) = store.get(job).await.expect("archive")
                {
                    return a;
                }
            }
            panic!("archive watch ended");
        })
        .await;
        found.unwrap_or_else(|_| panic!("job {job} was not archived within {WAIT:?}"))
    }

    /// Every alert stored so far.
    pub async fn alerts(&self) -> Vec<skynet_protocol::alert::Alert> {
        skynet_runtime::logs::read_subject(
            &self.js,
            skynet_protocol::streams::ALERTS,
            subjects::ALERTS,
        )
        .await
        .expect("alerts")
        .into_iter()
        .map(|r| serde_json::from_slice(&r.payload).expect("alert json"))
        .collect()
    }

    /// Waits until the job's output contains `needle`.
    pub async fn wait_output(&self, job: &JobId, needle: &str) {
        let logs = skynet_runtime::logs::follow(&self.js, job)
            .await
            .expect("follow logs");
        futures::pin_mut!(logs);
        let mut seen = String::new();
        let found = tokio::time::timeout(WAIT, async {
            while let Some(m) = logs.next().await {
                let m = m.expect("log");
                if m.stream == "system" {
                    continue;
                }
                seen.push_str(&String::from_utf8_lossy(&m.data));
                if seen.contains(needle) {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            matches!(found, Ok(true)),
            "job {job}: output never showed {needle:?}; got {seen:?}"
        );
    }

    /// Calls an API endpoint with raw bytes; returns the reply body and error code if any.
    pub async fn api_raw(
        &self,
        endpoint: &str,
        body: &[u8],
    ) -> Result<serde_json::Value, (u16, String)> {
        match skynet_runtime::api::call_raw(&self.client, endpoint, body.to_vec().into(), WAIT)
            .await
        {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).expect("reply json")),
            Err(skynet_runtime::api::CallError::Api(e)) => Err((e.code, e.message)),
            Err(other) => panic!("calling {endpoint}: {other}"),
        }
    }

    /// Waits until the ledger serves `job` in `state` (the ledger lags the stream a little).
    pub async fn ledger_state(&self, job: &JobId, state: JobState) -> serde_json::Value {
        let body = serde_json::json!({"job_id": job}).to_string();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let reply = skynet_runtime::api::call_raw(
                &self.client,
                subjects::api::JOBS_GET,
                body.clone().into(),
                Duration::from_secs(5),
            )
            .await;
            let last = match reply {
                Ok(bytes) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
                    Ok(v) if v["state"] == state.as_str() => return v,
                    Ok(v) => format!("state {}", v["state"]),
                    Err(e) => format!("unreadable reply: {e}"),
                },
                Err(e) => e.to_string(),
            };
            assert!(
                tokio::time::Instant::now() < deadline,
                "ledger never showed {job} as {state}; last: {last}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The Telegram ingress running in-process.
pub struct TelegramHandle {
    token: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Stack {
    /// Starts the Telegram ingress (`skynet_telegram_ingress::run`) against this stack.
    pub async fn start_telegram(
        &self,
        mut config: skynet_telegram_ingress::Config,
    ) -> TelegramHandle {
        let client = self.connect_as("telegram").await;
        // With identities on, the ingress signs its approvers' decisions with its own key.
        if let Some(creds) = &self.creds {
            let seed = skynet_runtime::args::read_seed(&creds.seed_path("telegram"), "telegram")
                .expect("telegram seed");
            config.signer = Some(Arc::new(seed.key_pair().expect("telegram key")));
        }
        let token = CancellationToken::new();
        let handle = tokio::spawn(skynet_telegram_ingress::run(config, client, token.clone()));
        TelegramHandle {
            token,
            handle: Some(handle),
        }
    }
}

impl TelegramHandle {
    /// Stops the ingress cleanly and checks it exited without error.
    pub async fn stop(&mut self) {
        self.token.cancel();
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(WAIT, h)
                .await
                .expect("the Telegram ingress did not stop")
                .expect("ingress task")
                .expect("the Telegram ingress failed");
        }
    }
}

impl Drop for TelegramHandle {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// A worker running in-process.
pub struct WorkerHandle {
    pub id: WorkerId,
    pub config: skynet_worker::Config,
    token: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl WorkerHandle {
    /// Stops the worker cleanly.
    pub async fn stop(&mut self) {
        self.token.cancel();
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(WAIT, h)
                .await
                .expect("worker did not stop")
                .expect("worker task")
                .expect("worker failed");
        }
    }

    pub fn home(&self) -> &Path {
        &self.config.home
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for s in self.services.values() {
            s.token.cancel();
        }
    }
}
