//! Who made a decision: a person's approve or deny is signed by the client that sends it,
//! with the user nkey it connects to NATS with, and policy records the identity whose key
//! verifies, never a name the request claims.
//!
//! The signature covers the job, the plan hash the person saw, the verdict, the time and
//! the person a service acts for (the Telegram ingress signs for one of its approvers), so
//! it cannot be moved to another job, plan or verdict. Policy knows the public keys of the
//! approving identities ([`Approvers`], written by `skynet creds` as `approvers`).
//!
//! A schedule's approval ([`ScheduleDecision`]: the schedule's name, its plan hash, the
//! verdict `approve`) is signed the same way under another domain, so a job decision's
//! signature never counts as a schedule's approval, nor the other way round, even when a
//! job id and a schedule name are the same text.

use serde::{Deserialize, Serialize};

use crate::ids::JobId;

const DOMAIN: &[u8] = b"skynet-decision-v1\0";
const SCHEDULE_DOMAIN: &[u8] = b"skynet-schedule-decision-v1\0";

/// How far a signature's time may be from policy's clock (either way).
pub const MAX_SKEW_S: i64 = 300;

/// The signature on a `jobs.approve` / `jobs.deny` / `schedules.approve` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionSignature {
    /// The signer's public user nkey.
    pub key: String,
    /// When it was signed (Unix seconds).
    pub at: i64,
    /// The person a service signs for (Telegram: the numeric user id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// ed25519 over the decision, hex.
    pub sig: String,
}

/// What a person decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Deny,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Deny => "deny",
        }
    }
}

/// What the signature covers.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    pub job_id: &'a JobId,
    /// The plan hash (or its prefix) the person saw, as sent in the request.
    pub plan_hash: &'a str,
    pub verdict: Verdict,
}

/// What a schedule approval's signature covers: the schedule, the plan hash (or its prefix)
/// the person saw, as sent in the request, and the verdict (`approve`).
#[derive(Debug, Clone, Copy)]
pub struct ScheduleDecision<'a> {
    pub name: &'a str,
    pub plan_hash: &'a str,
}

/// Something a person signs: the exact bytes a signature at `at` (for `user`) covers.
pub trait Signable {
    fn signed_bytes(&self, at: i64, user: Option<&str>) -> Vec<u8>;
}

impl Signable for Decision<'_> {
    fn signed_bytes(&self, at: i64, user: Option<&str>) -> Vec<u8> {
        // A JSON array: every field delimited, none can run into the next.
        let body = serde_json::json!([
            self.job_id.as_str(),
            self.plan_hash,
            self.verdict.as_str(),
            at,
            user.unwrap_or("")
        ])
        .to_string();
        let mut v = DOMAIN.to_vec();
        v.extend_from_slice(body.as_bytes());
        v
    }
}

impl Signable for ScheduleDecision<'_> {
    fn signed_bytes(&self, at: i64, user: Option<&str>) -> Vec<u8> {
        let body = serde_json::json!([
            "schedule",
            self.name,
            self.plan_hash,
            Verdict::Approve.as_str(),
            at,
            user.unwrap_or("")
        ])
        .to_string();
        let mut v = SCHEDULE_DOMAIN.to_vec();
        v.extend_from_slice(body.as_bytes());
        v
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    #[error("signing the decision: {0}")]
    Signing(String),
    #[error("the decision is signed by {0}, which is not an approver's key")]
    UnknownSigner(String),
    #[error("the decision's signature does not verify")]
    BadSignature,
    #[error("the decision was signed at {at}, too far from now ({now})")]
    Stale { at: i64, now: i64 },
    #[error("{0}")]
    Malformed(String),
}

/// Signs `decision` at `at` (Unix seconds) with `key`, for `user` when a service acts for
/// a person.
pub fn sign(
    key: &nkeys::KeyPair,
    decision: &impl Signable,
    at: i64,
    user: Option<String>,
) -> Result<DecisionSignature, ApprovalError> {
    let sig = key
        .sign(&decision.signed_bytes(at, user.as_deref()))
        .map_err(|e| ApprovalError::Signing(e.to_string()))?;
    Ok(DecisionSignature {
        key: key.public_key(),
        at,
        user,
        sig: hex::encode(sig),
    })
}

/// The kinds of identity that may decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApproverKind {
    /// An approving command line identity: decides for itself.
    Cli,
    /// The Telegram ingress: decides for the Telegram user it names.
    Telegram,
}

/// One identity that may decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approver {
    pub kind: ApproverKind,
    /// The identity's name in the credentials directory (`cli`, `cli-alice`, `telegram`).
    pub name: String,
    pub public_key: String,
}

/// The identities policy accepts decisions from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Approvers(pub Vec<Approver>);

impl Approvers {
    /// Reads the `approvers` file: `<cli|telegram> <identity name> <public key>` per line,
    /// `#` comments.
    pub fn parse(text: &str) -> Result<Self, ApprovalError> {
        let mut list = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [kind, name, key] = parts[..] else {
                return Err(ApprovalError::Malformed(format!(
                    "approvers: {line:?} is not `<kind> <name> <key>`"
                )));
            };
            let kind = match kind {
                "cli" => ApproverKind::Cli,
                "telegram" => ApproverKind::Telegram,
                other => {
                    return Err(ApprovalError::Malformed(format!(
                        "approvers: unknown kind {other:?}"
                    )));
                }
            };
            list.push(Approver {
                kind,
                name: name.to_owned(),
                public_key: key.to_owned(),
            });
        }
        Ok(Self(list))
    }

    pub fn render(&self) -> String {
        let mut out = String::from(
            "# The identities whose signed approvals and denials skynet-policy accepts.\n",
        );
        for a in &self.0 {
            let kind = match a.kind {
                ApproverKind::Cli => "cli",
                ApproverKind::Telegram => "telegram",
            };
            out.push_str(&format!("{kind} {} {}\n", a.name, a.public_key));
        }
        out
    }

    /// The approving command line whose private inbox an unsigned request's reply goes to
    /// (the server lets each identity subscribe only to its own inbox, and lets only
    /// approvers publish decisions), as `cli:<name>`. Never the Telegram ingress: it decides
    /// for a user, which only its signature can name.
    pub fn by_inbox(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .find(|a| a.public_key == key && a.kind == ApproverKind::Cli)
            .map(|a| {
                format!(
                    "cli:{}",
                    a.name.strip_prefix("cli-").unwrap_or(a.name.as_str())
                )
            })
    }

    /// Checks `sig` on `decision` and returns who decided: `cli:<name>` for a CLI identity
    /// (`cli-alice` is `cli:alice`), `telegram:<user id>` for the ingress acting for a
    /// Telegram user. `now` is Unix seconds.
    pub fn verify(
        &self,
        sig: &DecisionSignature,
        decision: &impl Signable,
        now: i64,
    ) -> Result<String, ApprovalError> {
        let approver = self
            .0
            .iter()
            .find(|a| a.public_key == sig.key)
            .ok_or_else(|| ApprovalError::UnknownSigner(sig.key.clone()))?;
        let key = nkeys::KeyPair::from_public_key(&sig.key)
            .map_err(|_| ApprovalError::UnknownSigner(sig.key.clone()))?;
        let bytes = hex::decode(&sig.sig).map_err(|_| ApprovalError::BadSignature)?;
        key.verify(&decision.signed_bytes(sig.at, sig.user.as_deref()), &bytes)
            .map_err(|_| ApprovalError::BadSignature)?;
        if (now - sig.at).abs() > MAX_SKEW_S {
            return Err(ApprovalError::Stale { at: sig.at, now });
        }
        match (approver.kind, sig.user.as_deref()) {
            (ApproverKind::Cli, None) => Ok(format!(
                "cli:{}",
                approver
                    .name
                    .strip_prefix("cli-")
                    .unwrap_or(approver.name.as_str())
            )),
            (ApproverKind::Cli, Some(_)) => Err(ApprovalError::Malformed(
                "a command line decides for itself, not for a user".into(),
            )),
            (ApproverKind::Telegram, Some(user))
                if !user.is_empty() && user.chars().all(|c| c.is_ascii_digit()) =>
            {
                Ok(format!("telegram:{user}"))
            }
            (ApproverKind::Telegram, _) => Err(ApprovalError::Malformed(
                "a Telegram decision names the numeric id of the user it is for".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> JobId {
        JobId::parse("job-1").unwrap()
    }

    fn decision(job: &JobId, verdict: Verdict) -> Decision<'_> {
        Decision {
            job_id: job,
            plan_hash: "0123456789abcdef",
            verdict,
        }
    }

    fn approvers(cli: &nkeys::KeyPair, tg: &nkeys::KeyPair) -> Approvers {
        Approvers(vec![
            Approver {
                kind: ApproverKind::Cli,
                name: "cli-alice".into(),
                public_key: cli.public_key(),
            },
            Approver {
                kind: ApproverKind::Telegram,
                name: "telegram".into(),
                public_key: tg.public_key(),
            },
        ])
    }

    #[test]
    fn the_recorded_name_is_the_verified_signer() {
        let (cli, tg) = (nkeys::KeyPair::new_user(), nkeys::KeyPair::new_user());
        let known = approvers(&cli, &tg);
        let j = job();
        let d = decision(&j, Verdict::Approve);
        let s = sign(&cli, &d, 1000, None).unwrap();
        assert_eq!(known.verify(&s, &d, 1010).unwrap(), "cli:alice");
        let s = sign(&tg, &d, 1000, Some("1001".into())).unwrap();
        assert_eq!(known.verify(&s, &d, 990).unwrap(), "telegram:1001");
    }

    #[test]
    fn a_signature_does_not_move_to_another_decision_user_or_key() {
        let (cli, tg) = (nkeys::KeyPair::new_user(), nkeys::KeyPair::new_user());
        let known = approvers(&cli, &tg);
        let (j, other) = (job(), JobId::parse("job-2").unwrap());
        let d = decision(&j, Verdict::Approve);
        let s = sign(&cli, &d, 1000, None).unwrap();
        let bad = ApprovalError::BadSignature;
        assert_eq!(
            known.verify(&s, &decision(&j, Verdict::Deny), 1000),
            Err(bad.clone())
        );
        assert_eq!(
            known.verify(&s, &decision(&other, Verdict::Approve), 1000),
            Err(bad.clone())
        );
        let other_plan = Decision {
            plan_hash: "fedcba9876543210",
            ..d
        };
        assert_eq!(known.verify(&s, &other_plan, 1000), Err(bad.clone()));
        let mut later = s.clone();
        later.at = 1100;
        assert_eq!(known.verify(&later, &d, 1000), Err(bad.clone()));
        // The ingress's signature names its user; another user's name breaks it.
        let t = sign(&tg, &d, 1000, Some("1001".into())).unwrap();
        let mut moved = t.clone();
        moved.user = Some("1002".into());
        assert_eq!(known.verify(&moved, &d, 1000), Err(bad.clone()));
        // A key policy does not know, even claiming a known key's signature.
        let stranger = nkeys::KeyPair::new_user();
        let forged = sign(&stranger, &d, 1000, None).unwrap();
        assert!(matches!(
            known.verify(&forged, &d, 1000),
            Err(ApprovalError::UnknownSigner(_))
        ));
        let mut claimed = forged;
        claimed.key = cli.public_key();
        assert_eq!(known.verify(&claimed, &d, 1000), Err(bad));
        // Old signatures, and the wrong shape for the kind of signer.
        assert!(matches!(
            known.verify(&s, &d, 1000 + MAX_SKEW_S + 1),
            Err(ApprovalError::Stale { .. })
        ));
        let for_someone = sign(&cli, &d, 1000, Some("1001".into())).unwrap();
        assert!(known.verify(&for_someone, &d, 1000).is_err());
        let for_nobody = sign(&tg, &d, 1000, None).unwrap();
        assert!(known.verify(&for_nobody, &d, 1000).is_err());
        let for_a_name = sign(&tg, &d, 1000, Some("policy".into())).unwrap();
        assert!(known.verify(&for_a_name, &d, 1000).is_err());
    }

    #[test]
    fn a_job_decision_and_a_schedule_approval_never_stand_for_each_other() {
        let (cli, tg) = (nkeys::KeyPair::new_user(), nkeys::KeyPair::new_user());
        let known = approvers(&cli, &tg);
        // A job and a schedule with the same name and plan.
        let j = JobId::parse("nightly").unwrap();
        let job = decision(&j, Verdict::Approve);
        let sched = ScheduleDecision {
            name: "nightly",
            plan_hash: job.plan_hash,
        };
        let bad = ApprovalError::BadSignature;
        let for_job = sign(&cli, &job, 1000, None).unwrap();
        assert_eq!(known.verify(&for_job, &job, 1000).unwrap(), "cli:alice");
        assert_eq!(known.verify(&for_job, &sched, 1000), Err(bad.clone()));
        let for_sched = sign(&cli, &sched, 1000, None).unwrap();
        assert_eq!(known.verify(&for_sched, &sched, 1000).unwrap(), "cli:alice");
        assert_eq!(known.verify(&for_sched, &job, 1000), Err(bad.clone()));
        let tg_sched = sign(&tg, &sched, 1000, Some("1001".into())).unwrap();
        assert_eq!(
            known.verify(&tg_sched, &sched, 1000).unwrap(),
            "telegram:1001"
        );
        assert_eq!(known.verify(&tg_sched, &job, 1000), Err(bad.clone()));
        // Nor to another schedule or plan; old ones are stale.
        let other = ScheduleDecision {
            name: "weekly",
            ..sched
        };
        assert_eq!(known.verify(&for_sched, &other, 1000), Err(bad.clone()));
        let other_plan = ScheduleDecision {
            plan_hash: "fedcba9876543210",
            ..sched
        };
        assert_eq!(known.verify(&for_sched, &other_plan, 1000), Err(bad));
        assert!(matches!(
            known.verify(&for_sched, &sched, 1000 + MAX_SKEW_S + 1),
            Err(ApprovalError::Stale { .. })
        ));
    }

    #[test]
    fn the_approvers_file_reads_back_what_it_wrote() {
        let (cli, tg) = (nkeys::KeyPair::new_user(), nkeys::KeyPair::new_user());
        let known = approvers(&cli, &tg);
        assert_eq!(Approvers::parse(&known.render()).unwrap(), known);
        assert!(Approvers::parse("admin x UABC").is_err());
        assert!(Approvers::parse("cli only-two").is_err());
    }
}
