//! Who may do what on the bus: the subject permissions of every SKYNET identity, rendered
//! into the nats-server configuration by `skynet creds`. Keeping them next to the subject
//! builders means a new subject and the rule that guards it change together.
//!
//! Each identity has a private inbox prefix, `_INBOX.<its public key>`, and may subscribe
//! only there for replies, so nobody reads anybody else's replies (the CLI included: it
//! connects with its own prefix like every SKYNET client). Services answer API requests
//! through `allow_responses`. A worker may touch only what carries its own id.
//!
//! Named durable consumers belong to one identity each ([`DURABLES`]). Readers of a stream
//! follow it with ordered consumers whose names the server (or the client library, after a
//! reset) makes up, so their consumer API is granted by wildcard; NATS permissions match
//! whole tokens, never a name's prefix, so every durable of the control plane is instead
//! denied by name to everyone but its owner: nobody else can create, rewrite, pull from,
//! acknowledge, inspect or delete it.

use crate::ids::WorkerId;
use crate::streams;
use crate::subjects::{self, api};

/// The kinds of identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Everything: stream set-up, operations.
    Admin,
    Planner,
    Policy,
    Dispatcher,
    Ledger,
    Sentinel,
    Archiver,
    Telegram,
    /// The command line; `approver` adds approve and deny.
    Cli {
        approver: bool,
    },
    Worker(WorkerId),
}

impl Role {
    /// The identity's name in the credentials directory.
    pub fn name(&self) -> String {
        match self {
            Role::Admin => "admin".into(),
            Role::Planner => "planner".into(),
            Role::Policy => "policy".into(),
            Role::Dispatcher => "dispatcher".into(),
            Role::Ledger => "ledger".into(),
            Role::Sentinel => "sentinel".into(),
            Role::Archiver => "archiver".into(),
            Role::Telegram => "telegram".into(),
            Role::Cli { .. } => "cli".into(),
            Role::Worker(id) => format!("worker-{id}"),
        }
    }
}

/// Allowed subjects of one identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
    /// Never allowed, whatever `publish` says (a deny beats an allow in nats-server).
    pub publish_deny: Vec<String>,
    /// May reply to requests it received (services answering the API).
    pub allow_responses: bool,
}

/// The private inbox prefix of the identity with this public key.
pub fn inbox_prefix(public_key: &str) -> String {
    format!("_INBOX.{public_key}")
}

const JS: &str = "$JS.API";

fn stream_info(stream: &str) -> String {
    format!("{JS}.STREAM.INFO.{stream}")
}

/// Reading a stream: ephemeral (ordered) consumers, direct gets, stream info.
fn read(p: &mut Permissions, stream: &str) {
    p.publish.extend([
        stream_info(stream),
        // Unnamed creates are denied again on streams with durables (see `DURABLES`).
        format!("{JS}.CONSUMER.CREATE.{stream}"),
        format!("{JS}.CONSUMER.CREATE.{stream}.>"),
        format!("{JS}.CONSUMER.INFO.{stream}.>"),
        format!("{JS}.CONSUMER.MSG.NEXT.{stream}.>"),
        format!("{JS}.DIRECT.GET.{stream}"),
        format!("{JS}.DIRECT.GET.{stream}.>"),
        format!("{JS}.STREAM.MSG.GET.{stream}"),
    ]);
}

/// Consuming with a durable consumer of a given name (and acking).
fn durable(p: &mut Permissions, stream: &str, consumer: &str) {
    p.publish.extend([
        stream_info(stream),
        format!("{JS}.CONSUMER.CREATE.{stream}.{consumer}"),
        format!("{JS}.CONSUMER.CREATE.{stream}.{consumer}.>"),
        format!("{JS}.CONSUMER.INFO.{stream}.{consumer}"),
        format!("{JS}.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
        format!("$JS.ACK.{stream}.{consumer}.>"),
    ]);
}

/// Every named durable consumer: its stream, its name and the one identity that may use it.
/// A worker's own consumer on `SKYNET_WORK` is not listed: nobody else reads that stream.
pub const DURABLES: [(&str, &str, &str); 5] = [
    (streams::SUBMIT, streams::PLANNER_CONSUMER, "planner"),
    (streams::OUTBOX, streams::RELAY_CONSUMER, "dispatcher"),
    (streams::EVENTS, streams::ARCHIVER_CONSUMER, "archiver"),
    (
        streams::EVENTS,
        streams::TELEGRAM_EVENTS_CONSUMER,
        "telegram",
    ),
    (
        streams::ALERTS,
        streams::TELEGRAM_ALERTS_CONSUMER,
        "telegram",
    ),
];

/// Everything one can do to the durable `consumer` of `stream`.
fn durable_subjects(stream: &str, consumer: &str) -> Vec<String> {
    vec![
        format!("{JS}.CONSUMER.CREATE.{stream}.{consumer}"),
        format!("{JS}.CONSUMER.CREATE.{stream}.{consumer}.>"),
        format!("{JS}.CONSUMER.DURABLE.CREATE.{stream}.{consumer}"),
        format!("{JS}.CONSUMER.INFO.{stream}.{consumer}"),
        format!("{JS}.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
        format!("{JS}.CONSUMER.DELETE.{stream}.{consumer}"),
        format!("{JS}.CONSUMER.PAUSE.{stream}.{consumer}"),
        format!("{JS}.CONSUMER.UNPIN.{stream}.{consumer}.>"),
        format!("{JS}.CONSUMER.LEADER.STEPDOWN.{stream}.{consumer}"),
        format!("$JS.ACK.{stream}.{consumer}.>"),
        format!("$JS.FC.{stream}.{consumer}.>"),
    ]
}

/// Watching a KV bucket (push consumers answer flow control).
fn kv_read(p: &mut Permissions, bucket: &str) {
    read(p, &format!("KV_{bucket}"));
    p.publish.push(format!("$JS.FC.KV_{bucket}.>"));
}

fn obj_read(p: &mut Permissions, bucket: &str) {
    read(p, &format!("OBJ_{bucket}"));
    p.publish.push(format!("$JS.FC.OBJ_{bucket}.>"));
}

/// Writing objects; `purge` lets a put replace an object of the same name.
fn obj_write(p: &mut Permissions, bucket: &str, purge: bool) {
    obj_read(p, bucket);
    p.publish.push(format!("$O.{bucket}.>"));
    if purge {
        p.publish.push(format!("{JS}.STREAM.PURGE.OBJ_{bucket}"));
    }
}

/// Reading every snapshot and writing one's own (`<service>.json.gz`): the object's
/// metadata subject carries its name, so no service can replace another's snapshot.
fn snapshot(p: &mut Permissions, service: &str) {
    use base64::Engine as _;
    let bucket = streams::SNAPSHOTS_BUCKET;
    obj_read(p, bucket);
    let name = base64::engine::general_purpose::URL_SAFE.encode(format!("{service}.json.gz"));
    p.publish.extend([
        format!("$O.{bucket}.C.>"),
        format!("$O.{bucket}.M.{name}"),
        format!("{JS}.STREAM.PURGE.OBJ_{bucket}"),
    ]);
}

/// Serving API endpoints as part of the NATS service `skynet`.
fn serve(p: &mut Permissions, endpoints: &[&str]) {
    p.subscribe
        .extend(endpoints.iter().map(|e| subjects::api(e)));
    p.subscribe.push("$SRV.>".into());
    p.allow_responses = true;
}

fn call(p: &mut Permissions, endpoints: &[&str]) {
    p.publish.extend(endpoints.iter().map(|e| subjects::api(e)));
}

/// Every stream, bucket and store, for services that check them at start.
fn info_all(p: &mut Permissions) {
    for s in [
        streams::SUBMIT,
        streams::EVENTS,
        streams::LOGS,
        streams::WORK,
        streams::OUTBOX,
        streams::ALERTS,
        streams::REJECTED,
    ] {
        p.publish.push(stream_info(s));
    }
    for kv in [
        streams::WORKERS_BUCKET,
        streams::SENTINEL_BUCKET,
        streams::PLANNER_USAGE_BUCKET,
        streams::TELEGRAM_BUCKET,
        streams::TELEGRAM_ALERTS_BUCKET,
        streams::SCHEDULES_BUCKET,
        streams::ROUTING_BUCKET,
    ] {
        p.publish.push(stream_info(&format!("KV_{kv}")));
    }
    for obj in [
        streams::ARTIFACTS_BUCKET,
        streams::ARCHIVE_BUCKET,
        streams::SNAPSHOTS_BUCKET,
    ] {
        p.publish.push(stream_info(&format!("OBJ_{obj}")));
    }
}

const EVENTS_ANY: &str = subjects::EVENTS_ANY_JOB;

/// Reading and writing (compare-and-set) the schedules.
fn schedules(p: &mut Permissions) {
    kv_read(p, streams::SCHEDULES_BUCKET);
    p.publish
        .push(format!("$KV.{}.>", streams::SCHEDULES_BUCKET));
}

/// The permissions of `role`, whose inbox prefix is `inbox`.
pub fn permissions(role: &Role, inbox: &str) -> Permissions {
    let mut p = Permissions::default();
    p.subscribe.push(format!("{inbox}.>"));
    match role {
        Role::Admin => {
            p.publish = vec![">".into()];
            p.subscribe = vec![">".into()];
            p.allow_responses = true;
        }
        Role::Planner => {
            info_all(&mut p);
            serve(&mut p, &[api::JOBS_SUBMIT, api::SCHEDULES_CREATE]);
            // A new schedule's plan is judged by policy, once.
            call(&mut p, &[api::SCHEDULES_JUDGE]);
            schedules(&mut p);
            durable(&mut p, streams::SUBMIT, streams::PLANNER_CONSUMER);
            read(&mut p, streams::EVENTS);
            kv_read(&mut p, streams::WORKERS_BUCKET);
            kv_read(&mut p, streams::PLANNER_USAGE_BUCKET);
            p.publish.extend([
                subjects::SUBMIT.into(),
                EVENTS_ANY.into(),
                subjects::REJECTED.into(),
                format!("$KV.{}.>", streams::PLANNER_USAGE_BUCKET),
                // Telling JetStream a slow (LLM) plan is still in progress.
                format!(
                    "$JS.ACK.{}.{}.>",
                    streams::SUBMIT,
                    streams::PLANNER_CONSUMER
                ),
            ]);
        }
        Role::Policy => {
            info_all(&mut p);
            serve(
                &mut p,
                &[
                    api::JOBS_APPROVE,
                    api::JOBS_DENY,
                    api::SCHEDULES_APPROVE,
                    api::SCHEDULES_JUDGE,
                ],
            );
            schedules(&mut p);
            read(&mut p, streams::EVENTS);
            snapshot(&mut p, "policy");
            p.publish.push(EVENTS_ANY.into());
        }
        Role::Dispatcher => {
            info_all(&mut p);
            serve(&mut p, &[api::JOBS_CANCEL]);
            serve(&mut p, &api::SCHEDULES_OWNER);
            schedules(&mut p);
            read(&mut p, streams::EVENTS);
            durable(&mut p, streams::OUTBOX, streams::RELAY_CONSUMER);
            kv_read(&mut p, streams::WORKERS_BUCKET);
            kv_read(&mut p, streams::SENTINEL_BUCKET);
            kv_read(&mut p, streams::ROUTING_BUCKET);
            snapshot(&mut p, "dispatcher");
            p.publish.extend([
                // The routing lease: only the owner's copies write it (compare-and-set).
                format!("$KV.{}.>", streams::ROUTING_BUCKET),
                EVENTS_ANY.into(),
                // Each schedule's tick becomes an ordinary request.
                subjects::SUBMIT.into(),
                subjects::LOGS_ANY_JOB.into(),
                subjects::CONTROL_ALL.into(),
                // Handing approved work to workers.
                subjects::WORK_ANY.into(),
                // Withdrawing an unstarted spec (by subject) when a job moved on.
                format!("{JS}.STREAM.PURGE.{}", streams::WORK),
                // Naming the artifacts a job's current worker stored.
                subjects::artifact_meta_all(),
            ]);
        }
        Role::Ledger => {
            info_all(&mut p);
            serve(
                &mut p,
                &[
                    api::JOBS_GET,
                    api::JOBS_LIST,
                    api::JOBS_LOGS,
                    api::WORKERS_LIST,
                ],
            );
            read(&mut p, streams::EVENTS);
            read(&mut p, streams::LOGS);
            kv_read(&mut p, streams::WORKERS_BUCKET);
            obj_read(&mut p, streams::ARCHIVE_BUCKET);
        }
        Role::Sentinel => {
            info_all(&mut p);
            read(&mut p, streams::EVENTS);
            kv_read(&mut p, streams::WORKERS_BUCKET);
            kv_read(&mut p, streams::SENTINEL_BUCKET);
            snapshot(&mut p, "sentinel");
            p.publish.extend([
                subjects::ALERTS.into(),
                format!("$KV.{}.>", streams::SENTINEL_BUCKET),
            ]);
        }
        Role::Archiver => {
            info_all(&mut p);
            durable(&mut p, streams::EVENTS, streams::ARCHIVER_CONSUMER);
            read(&mut p, streams::EVENTS);
            read(&mut p, streams::LOGS);
            obj_read(&mut p, streams::ARTIFACTS_BUCKET);
            obj_write(&mut p, streams::ARCHIVE_BUCKET, true);
        }
        Role::Telegram => {
            info_all(&mut p);
            // It acts for its people, approvers among them.
            call(&mut p, &api::ALL);
            durable(&mut p, streams::EVENTS, streams::TELEGRAM_EVENTS_CONSUMER);
            durable(&mut p, streams::ALERTS, streams::TELEGRAM_ALERTS_CONSUMER);
            read(&mut p, streams::EVENTS);
            read(&mut p, streams::LOGS);
            for bucket in [streams::TELEGRAM_BUCKET, streams::TELEGRAM_ALERTS_BUCKET] {
                kv_read(&mut p, bucket);
                p.publish.push(format!("$KV.{bucket}.>"));
            }
        }
        Role::Cli { approver } => {
            p.publish.push(subjects::SUBMIT.into());
            let mut endpoints = vec![
                api::JOBS_SUBMIT,
                api::JOBS_GET,
                api::JOBS_LIST,
                api::JOBS_CANCEL,
                api::JOBS_LOGS,
                api::WORKERS_LIST,
                api::SCHEDULES_CREATE,
                api::SCHEDULES_GET,
                api::SCHEDULES_LIST,
                api::SCHEDULES_PAUSE,
                api::SCHEDULES_RESUME,
                api::SCHEDULES_DELETE,
            ];
            if *approver {
                endpoints.extend([api::JOBS_APPROVE, api::JOBS_DENY, api::SCHEDULES_APPROVE]);
            }
            call(&mut p, &endpoints);
            read(&mut p, streams::EVENTS);
            read(&mut p, streams::LOGS);
            obj_read(&mut p, streams::ARTIFACTS_BUCKET);
            // Watching live (`nats sub 'skynet.events.>'`). Replies come to its own inbox
            // only: standard NATS tools need `--inbox-prefix` (see SECURITY.md).
            p.subscribe.extend([
                "$SRV.>".into(),
                subjects::EVENTS_ALL.into(),
                subjects::LOGS_ALL.into(),
                subjects::ALERTS.into(),
            ]);
        }
        Role::Worker(id) => {
            let consumer = streams::work_consumer_name(id);
            p.publish.extend([
                stream_info(streams::WORK),
                format!(
                    "{JS}.CONSUMER.CREATE.{}.{consumer}.{}",
                    streams::WORK,
                    subjects::work_filter(id)
                ),
                format!("{JS}.CONSUMER.INFO.{}.{consumer}", streams::WORK),
                format!("{JS}.CONSUMER.MSG.NEXT.{}.{consumer}", streams::WORK),
                format!("$JS.ACK.{}.{consumer}.>", streams::WORK),
                // Checking a spec in hand is still waiting (not withdrawn) before it starts.
                format!(
                    "{JS}.DIRECT.GET.{}.{}",
                    streams::WORK,
                    subjects::work_filter(id)
                ),
                stream_info(streams::OUTBOX),
                subjects::outbox_filter(id),
                stream_info(&format!("KV_{}", streams::WORKERS_BUCKET)),
                format!("$KV.{}.{id}", streams::WORKERS_BUCKET),
            ]);
            // Artifacts: chunks under its own id only; the dispatcher writes the metadata
            // that names them, for the job's current attempt (`skynet_protocol::artifact`).
            p.publish.extend([
                stream_info(&format!("OBJ_{}", streams::ARTIFACTS_BUCKET)),
                subjects::artifact_chunks_of(id),
            ]);
            p.subscribe.push(subjects::control(id));
            // Answering the stop requests it receives.
            p.allow_responses = true;
        }
    }
    if *role != Role::Admin {
        for (stream, consumer, owner) in DURABLES {
            if role.name() != owner {
                p.publish_deny.extend(durable_subjects(stream, consumer));
            }
            // The unnamed create: JetStream takes the consumer's name from the request's
            // config there, so it could name a durable. Readers name their consumers.
            let unnamed = format!("{JS}.CONSUMER.CREATE.{stream}");
            if !p.publish_deny.contains(&unnamed) {
                p.publish_deny.push(unnamed);
            }
        }
    }
    p
}

/// Renders the `authorization` block of a nats-server configuration for these users
/// (public key, role, comment).
pub fn render_authorization(users: &[(String, Role)]) -> String {
    let mut out = String::from("authorization {\n  users = [\n");
    for (key, role) in users {
        let p = permissions(role, &inbox_prefix(key));
        let list = |v: &[String]| {
            v.iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!("    # {}\n", role.name()));
        out.push_str(&format!("    {{ nkey: \"{key}\", permissions: {{\n"));
        if p.publish_deny.is_empty() {
            out.push_str(&format!(
                "        publish: {{ allow: [{}] }},\n",
                list(&p.publish)
            ));
        } else {
            out.push_str(&format!(
                "        publish: {{ allow: [{}],\n          deny: [{}] }},\n",
                list(&p.publish),
                list(&p.publish_deny)
            ));
        }
        out.push_str(&format!(
            "        subscribe: {{ allow: [{}] }}",
            list(&p.subscribe)
        ));
        if p.allow_responses {
            out.push_str(",\n        allow_responses: true");
        }
        out.push_str("\n    } },\n");
    }
    out.push_str("  ]\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, subject: &str) -> bool {
        let p: Vec<&str> = pattern.split('.').collect();
        let s: Vec<&str> = subject.split('.').collect();
        for (i, t) in p.iter().enumerate() {
            match *t {
                ">" => return s.len() > i,
                "*" => {
                    if i >= s.len() {
                        return false;
                    }
                }
                t => {
                    if s.get(i) != Some(&t) {
                        return false;
                    }
                }
            }
        }
        p.len() == s.len()
    }

    fn may_publish(role: &Role, subject: &str) -> bool {
        let p = permissions(role, "_INBOX.K");
        p.publish.iter().any(|a| matches(a, subject))
            && !p.publish_deny.iter().any(|d| matches(d, subject))
    }

    fn may_subscribe(role: &Role, subject: &str) -> bool {
        permissions(role, "_INBOX.K")
            .subscribe
            .iter()
            .any(|a| matches(a, subject))
    }

    fn every_role() -> Vec<Role> {
        vec![
            Role::Planner,
            Role::Policy,
            Role::Dispatcher,
            Role::Ledger,
            Role::Sentinel,
            Role::Archiver,
            Role::Telegram,
            Role::Cli { approver: true },
            Role::Cli { approver: false },
            Role::Worker(WorkerId::parse("w1").unwrap()),
        ]
    }

    #[test]
    fn nobody_subscribes_to_another_identitys_inbox() {
        for role in every_role() {
            assert!(may_subscribe(&role, "_INBOX.K.abc"), "{role:?}");
            for other in ["_INBOX.OTHER.abc", "_INBOX.abc", "_INBOX.>", ">"] {
                assert!(!may_subscribe(&role, other), "{role:?} {other}");
            }
        }
    }

    #[test]
    fn a_durable_is_used_by_its_owner_only_while_readers_keep_their_ordered_consumers() {
        for role in every_role() {
            for (stream, consumer, owner) in DURABLES {
                let mine = role.name() == owner;
                for subject in durable_subjects(stream, consumer) {
                    if !mine {
                        assert!(!may_publish(&role, &subject), "{role:?} {subject}");
                    }
                }
                if mine {
                    for s in [
                        format!("$JS.API.CONSUMER.CREATE.{stream}.{consumer}"),
                        format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
                        format!("$JS.ACK.{stream}.{consumer}.1.2.3.4.5"),
                    ] {
                        assert!(may_publish(&role, &s), "{role:?} {s}");
                    }
                }
            }
        }
        // A reader still makes and pulls its own (named) ordered consumers; the unnamed
        // create, whose config could name a durable, only where no durable lives.
        let cli = Role::Cli { approver: false };
        for role in every_role() {
            for (stream, _, _) in DURABLES {
                let unnamed = format!("$JS.API.CONSUMER.CREATE.{stream}");
                assert!(!may_publish(&role, &unnamed), "{role:?} {unnamed}");
            }
        }
        assert!(may_publish(
            &Role::Planner,
            "$JS.API.CONSUMER.CREATE.KV_skynet-workers"
        ));
        for s in [
            "$JS.API.CONSUMER.CREATE.SKYNET_LOGS",
            "$JS.API.CONSUMER.CREATE.SKYNET_EVENTS.x1_2.skynet.events.j1",
            "$JS.API.CONSUMER.MSG.NEXT.SKYNET_LOGS.Ab12Cd",
        ] {
            assert!(may_publish(&cli, s), "{s}");
        }
        // The owners' consumers keep their own rights.
        assert!(may_publish(
            &Role::Archiver,
            "$JS.API.CONSUMER.MSG.NEXT.SKYNET_EVENTS.archiver"
        ));
        assert!(!may_publish(
            &Role::Archiver,
            "$JS.API.CONSUMER.MSG.NEXT.SKYNET_EVENTS.telegram"
        ));
    }

    #[test]
    fn only_the_owner_hands_out_work_and_only_the_sentinel_records_offline_workers() {
        assert!(may_publish(&Role::Dispatcher, "skynet.work.w1.job1"));
        for role in [Role::Policy, Role::Sentinel, Role::Planner] {
            assert!(!may_publish(&role, "skynet.work.w1.job1"), "{role:?}");
        }
        // The sentinel decides nothing about jobs.
        assert!(!may_publish(&Role::Sentinel, "skynet.events.job1"));
        assert!(may_publish(
            &Role::Sentinel,
            "$KV.skynet-sentinel.worker_offline.w1"
        ));
        assert!(!may_publish(
            &Role::Dispatcher,
            "$KV.skynet-sentinel.worker_offline.w1"
        ));
        // Each service writes its own snapshot only.
        use base64::Engine as _;
        let meta = |s: &str| {
            format!(
                "$O.skynet-snapshots.M.{}",
                base64::engine::general_purpose::URL_SAFE.encode(format!("{s}.json.gz"))
            )
        };
        assert!(may_publish(&Role::Policy, &meta("policy")));
        assert!(!may_publish(&Role::Dispatcher, &meta("policy")));
        assert!(!may_publish(&Role::Sentinel, &meta("dispatcher")));
    }

    #[test]
    fn only_the_owner_writes_the_routing_lease() {
        let key = format!(
            "$KV.{}.{}",
            streams::ROUTING_BUCKET,
            streams::ROUTING_LEASE_KEY
        );
        assert!(may_publish(&Role::Dispatcher, &key));
        assert!(may_publish(
            &Role::Dispatcher,
            "$JS.API.DIRECT.GET.KV_skynet-routing.$KV.skynet-routing.lease"
        ));
        for role in every_role() {
            if role != Role::Dispatcher {
                assert!(!may_publish(&role, &key), "{role:?}");
                assert!(
                    !may_publish(&role, "$JS.API.STREAM.PURGE.KV_skynet-routing"),
                    "{role:?}"
                );
            }
        }
    }

    #[test]
    fn a_worker_touches_only_its_own_subjects() {
        let me = Role::Worker(WorkerId::parse("w1").unwrap());
        assert!(may_publish(&me, "skynet.out.w1.job1.log"));
        assert!(may_publish(&me, "$KV.skynet-workers.w1"));
        assert!(may_publish(
            &me,
            "$JS.API.CONSUMER.MSG.NEXT.SKYNET_WORK.worker-w1"
        ));
        for forbidden in [
            "skynet.out.w2.job1.log",
            "$KV.skynet-workers.w2",
            "skynet.events.job1",
            "skynet.logs.job1",
            "skynet.work.w2.job1",
            "skynet.api.jobs.approve",
            "skynet.jobs.submit",
            "$JS.API.CONSUMER.MSG.NEXT.SKYNET_WORK.worker-w2",
            "$JS.API.STREAM.DELETE.SKYNET_EVENTS",
            "$JS.API.STREAM.PURGE.SKYNET_WORK",
            "$JS.API.STREAM.UPDATE.SKYNET_WORK",
            "$JS.API.DIRECT.GET.SKYNET_WORK.skynet.work.w2.job1",
            "$JS.API.DIRECT.GET.SKYNET_WORK",
        ] {
            assert!(!may_publish(&me, forbidden), "{forbidden}");
        }
        assert!(may_publish(
            &me,
            "$JS.API.DIRECT.GET.SKYNET_WORK.skynet.work.w1.job1"
        ));
        // Artifacts: its own chunks, never metadata, never another worker's chunks.
        assert!(may_publish(&me, "$O.skynet-artifacts.C.w1.abc"));
        for forbidden in [
            "$O.skynet-artifacts.C.w2.abc",
            "$O.skynet-artifacts.C.abc",
            "$O.skynet-artifacts.M.ajEvcmVwb3J0LnR4dA==",
            "$JS.API.STREAM.PURGE.OBJ_skynet-artifacts",
        ] {
            assert!(!may_publish(&me, forbidden), "{forbidden}");
        }
        assert!(may_publish(
            &Role::Dispatcher,
            "$O.skynet-artifacts.M.ajEvcmVwb3J0LnR4dA=="
        ));
        let subs = permissions(&me, "_INBOX.K").subscribe;
        assert_eq!(subs, ["_INBOX.K.>", "skynet.control.w1"]);
    }

    #[test]
    fn only_approvers_approve() {
        assert!(may_publish(
            &Role::Cli { approver: true },
            "skynet.api.jobs.approve"
        ));
        assert!(!may_publish(
            &Role::Cli { approver: false },
            "skynet.api.jobs.approve"
        ));
        assert!(may_publish(&Role::Telegram, "skynet.api.jobs.approve"));
        assert!(!may_publish(&Role::Planner, "skynet.api.jobs.approve"));
        assert!(!may_publish(
            &Role::Cli { approver: true },
            "skynet.events.x"
        ));
    }

    #[test]
    fn only_approvers_approve_schedules_and_only_the_owner_fires_them() {
        let approve = "skynet.api.schedules.approve";
        assert!(may_publish(&Role::Cli { approver: true }, approve));
        assert!(!may_publish(&Role::Cli { approver: false }, approve));
        assert!(may_publish(
            &Role::Cli { approver: false },
            "skynet.api.schedules.create"
        ));
        // Judging is asked by the planner only; people never see that endpoint.
        assert!(may_publish(&Role::Planner, "skynet.api.schedules.judge"));
        assert!(!may_publish(
            &Role::Cli { approver: true },
            "skynet.api.schedules.judge"
        ));
        assert!(may_publish(&Role::Dispatcher, "skynet.jobs.submit"));
        assert!(may_publish(
            &Role::Dispatcher,
            "$KV.skynet-schedules.nightly"
        ));
        for role in [Role::Ledger, Role::Sentinel, Role::Archiver, Role::Telegram] {
            assert!(
                !may_publish(&role, "$KV.skynet-schedules.nightly"),
                "{role:?}"
            );
        }
    }

    #[test]
    fn the_authorization_block_names_every_user() {
        let text = render_authorization(&[
            ("UAAA".into(), Role::Admin),
            ("UBBB".into(), Role::Worker(WorkerId::parse("w1").unwrap())),
        ]);
        assert!(text.contains("nkey: \"UAAA\""));
        assert!(text.contains("\"_INBOX.UBBB.>\""));
        assert!(text.contains("# worker-w1"));
    }
}
