//! Grants and execution specs: exactly what a worker may run, and policy's word for it.
//!
//! When policy approves a job (by itself, or for a person through its API) it writes a
//! [`Grant`]: the job, the hash of its plan, how many attempts may run, the time limit, the
//! routing constraints, the variables that change what runs which the approval covers, who
//! approved and until when. It seals the grant's JSON text with its ed25519 nkey; the sealed
//! grant travels in the `approved` event. The dispatcher then hands each attempt to a worker
//! as an [`ExecutionSpec`]: the steps, the attempt, the worker, and the sealed grant. The
//! worker opens the seal over the very bytes it received (no canonicalisation step can make
//! two parties disagree about what was sealed), and checks that the steps hash to the sealed
//! plan, that the attempt is one the grant allows, that it is a worker the grant allows, and
//! that the grant has not expired. So nobody but policy can make a worker run anything, and
//! whoever routes work (the dispatcher) can only choose where and when an approved plan runs.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{JobId, WorkerId};
use crate::job::{Step, ValidationError, validate_steps};

const GRANT_DOMAIN: &[u8] = b"skynet-grant-v1\n";

/// What an approval lets run. Policy seals exactly these fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub job_id: JobId,
    pub plan_hash: String,
    /// Attempts `1..=max_attempt` may run: the job's retries plus one.
    pub max_attempt: u32,
    /// The job's time limit, in seconds.
    pub timeout_s: u64,
    /// The worker the request asked for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerId>,
    /// Labels a worker must have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Variables that change what runs (`LD_PRELOAD`, `GIT_*`, ...) that this approval lets
    /// through; the worker drops every other such variable from a step's environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Whether the steps may open outbound TCP connections: a person's approval, or a
    /// policy rule with `network = true` that allowed the plan. The worker's sandbox denies
    /// TCP connect otherwise (where the kernel can). Left out of the text when false, so
    /// a grant without network reads as it did before the field existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub network: bool,
    /// Who approved: `policy`, or the person.
    pub by: String,
    /// Unix seconds when policy sealed it.
    pub issued_at: i64,
    /// Unix seconds after which no attempt may start.
    pub not_after: i64,
}

/// A grant as policy sealed it: the JSON text byte for byte, the sealer's public nkey, and
/// the hex ed25519 signature over the domain prefix and the text.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seal {
    pub grant: String,
    pub signer: String,
    pub signature: String,
}

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seal")
            .field("grant", &self.grant)
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

/// One attempt of a sealed plan, as it travels on `skynet.work.<worker>.<job>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionSpec {
    pub job_id: JobId,
    pub attempt: u32,
    pub worker: WorkerId,
    pub steps: Vec<Step>,
    pub seal: Seal,
}

/// Why a worker refused a spec, or a seal did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("spec is not an execution spec: {0}")]
    Malformed(String),
    #[error("the approval is sealed by {0}, which this worker does not trust")]
    UntrustedSigner(String),
    #[error("the approval's seal does not verify (tampered or corrupt)")]
    BadSignature,
    #[error("the approval is for job {0}, not this one")]
    WrongJob(String),
    #[error("spec is for worker {0}, not this one")]
    WrongWorker(String),
    #[error("this worker lacks the label {0} the job needs")]
    MissingLabel(String),
    #[error("attempt {attempt} is more than the {max} the approval allows")]
    TooManyAttempts { attempt: u32, max: u32 },
    #[error("the approval expired at {0}")]
    Expired(String),
    #[error("the steps are not the plan that was approved (plan hash differs)")]
    PlanHashMismatch,
    #[error("spec steps are invalid: {0}")]
    InvalidSteps(#[from] ValidationError),
    #[error("sealing failed: {0}")]
    Signing(String),
}

/// The hash that names a plan: SHA-256 over the JSON of its steps, as hex. People see its
/// first 12 digits when they approve; the grant carries the whole of it.
pub fn plan_hash(steps: &[Step]) -> String {
    let bytes = serde_json::to_vec(steps).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// The short form of a plan hash shown to people.
pub fn short_hash(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

fn sealed_bytes(grant: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(GRANT_DOMAIN.len() + grant.len());
    v.extend_from_slice(GRANT_DOMAIN);
    v.extend_from_slice(grant.as_bytes());
    v
}

impl Grant {
    /// Seals the grant with `key` (an nkey with a seed).
    pub fn seal(&self, key: &nkeys::KeyPair) -> Result<Seal, SpecError> {
        let grant = serde_json::to_string(self).map_err(|e| SpecError::Signing(e.to_string()))?;
        let sig = key
            .sign(&sealed_bytes(&grant))
            .map_err(|e| SpecError::Signing(e.to_string()))?;
        Ok(Seal {
            grant,
            signer: key.public_key(),
            signature: hex::encode(sig),
        })
    }
}

impl Seal {
    /// Checks that one of `trusted` sealed the grant and returns it.
    pub fn open(&self, trusted: &[String]) -> Result<Grant, SpecError> {
        if !trusted.iter().any(|k| k == &self.signer) {
            return Err(SpecError::UntrustedSigner(self.signer.clone()));
        }
        let key = nkeys::KeyPair::from_public_key(&self.signer)
            .map_err(|_| SpecError::UntrustedSigner(self.signer.clone()))?;
        let sig = hex::decode(&self.signature).map_err(|_| SpecError::BadSignature)?;
        key.verify(&sealed_bytes(&self.grant), &sig)
            .map_err(|_| SpecError::BadSignature)?;
        serde_json::from_str(&self.grant).map_err(|e| SpecError::Malformed(e.to_string()))
    }

    /// The grant without checking the seal: for display, never for a decision to run.
    pub fn peek(&self) -> Option<Grant> {
        serde_json::from_str(&self.grant).ok()
    }
}

/// What a worker knows about itself when it judges a spec.
pub struct Me<'a> {
    pub id: &'a WorkerId,
    pub labels: &'a [String],
    pub trusted: &'a [String],
}

impl ExecutionSpec {
    pub fn from_slice(bytes: &[u8]) -> Result<Self, SpecError> {
        serde_json::from_slice(bytes).map_err(|e| SpecError::Malformed(e.to_string()))
    }

    /// Checks the seal, the plan, the attempt, the addressee and expiry; returns the grant if
    /// the attempt may run. `now` is Unix seconds. Replays are the worker's to catch: it knows
    /// which attempts it already ran.
    pub fn verify(&self, me: &Me<'_>, now: i64) -> Result<Grant, SpecError> {
        let grant = self.seal.open(me.trusted)?;
        if grant.job_id != self.job_id {
            return Err(SpecError::WrongJob(grant.job_id.to_string()));
        }
        if &self.worker != me.id {
            return Err(SpecError::WrongWorker(self.worker.to_string()));
        }
        if let Some(w) = &grant.worker
            && w != me.id
        {
            return Err(SpecError::WrongWorker(w.to_string()));
        }
        if let Some(l) = grant.labels.iter().find(|l| !me.labels.contains(l)) {
            return Err(SpecError::MissingLabel(l.clone()));
        }
        if self.attempt == 0 || self.attempt > grant.max_attempt {
            return Err(SpecError::TooManyAttempts {
                attempt: self.attempt,
                max: grant.max_attempt,
            });
        }
        if grant.not_after < now {
            return Err(SpecError::Expired(crate::time::from_unix_ms(
                grant.not_after * 1000,
            )));
        }
        validate_steps(&self.steps, false)?;
        if plan_hash(&self.steps) != grant.plan_hash {
            return Err(SpecError::PlanHashMismatch);
        }
        Ok(grant)
    }

    /// Reads the job id and attempt of bytes that may not even be a spec, to report a refusal.
    pub fn peek(bytes: &[u8]) -> Option<(JobId, u32)> {
        #[derive(Deserialize)]
        struct Peek {
            job_id: JobId,
            attempt: u32,
        }
        serde_json::from_slice::<Peek>(bytes)
            .ok()
            .map(|p| (p.job_id, p.attempt))
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(cmd: &str) -> Vec<Step> {
        vec![Step::Shell {
            cmd: Some(cmd.into()),
            argv: None,
            cwd: None,
            env: Default::default(),
            timeout_s: None,
            artifacts: vec![],
        }]
    }

    fn grant(worker: Option<&str>, labels: &[&str]) -> Grant {
        Grant {
            job_id: JobId::parse("j1").unwrap(),
            plan_hash: plan_hash(&steps("echo hi")),
            max_attempt: 2,
            timeout_s: 60,
            worker: worker.map(|w| WorkerId::parse(w).unwrap()),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            env: vec![],
            network: false,
            by: "policy".into(),
            issued_at: 1_900_000_000,
            not_after: 2_000_000_000,
        }
    }

    fn spec(key: &nkeys::KeyPair, g: &Grant, worker: &str, attempt: u32) -> ExecutionSpec {
        ExecutionSpec {
            job_id: g.job_id.clone(),
            attempt,
            worker: WorkerId::parse(worker).unwrap(),
            steps: steps("echo hi"),
            seal: g.seal(key).unwrap(),
        }
    }

    struct Ctx {
        id: WorkerId,
        labels: Vec<String>,
        trusted: Vec<String>,
    }

    impl Ctx {
        fn new(key: &nkeys::KeyPair, id: &str, labels: &[&str]) -> Self {
            Self {
                id: WorkerId::parse(id).unwrap(),
                labels: labels.iter().map(|l| l.to_string()).collect(),
                trusted: vec![key.public_key()],
            }
        }
        fn me(&self) -> Me<'_> {
            Me {
                id: &self.id,
                labels: &self.labels,
                trusted: &self.trusted,
            }
        }
    }

    #[test]
    fn a_sealed_grant_runs_on_a_matching_worker() {
        let key = nkeys::KeyPair::new_user();
        let g = grant(None, &["linux"]);
        let s = spec(&key, &g, "w1", 2);
        let ctx = Ctx::new(&key, "w1", &["linux", "gpu"]);
        assert_eq!(s.verify(&ctx.me(), 1_950_000_000), Ok(g));
        // The wire form parses back to the same spec.
        assert_eq!(ExecutionSpec::from_slice(&s.to_json()).unwrap(), s);
        assert_eq!(
            ExecutionSpec::peek(&s.to_json()),
            Some((JobId::parse("j1").unwrap(), 2))
        );
    }

    #[test]
    fn tampered_foreign_expired_and_untrusted_specs_are_refused() {
        let key = nkeys::KeyPair::new_user();
        let ctx = Ctx::new(&key, "w1", &[]);
        let g = grant(None, &[]);

        let mut tampered = spec(&key, &g, "w1", 1);
        tampered.seal.grant = tampered
            .seal
            .grant
            .replace("\"max_attempt\":2", "\"max_attempt\":9");
        assert_eq!(tampered.verify(&ctx.me(), 0), Err(SpecError::BadSignature));

        let mut swapped = spec(&key, &g, "w1", 1);
        swapped.steps = steps("rm -rf ~");
        assert_eq!(
            swapped.verify(&ctx.me(), 0),
            Err(SpecError::PlanHashMismatch)
        );

        let mut other_job = spec(&key, &g, "w1", 1);
        other_job.job_id = JobId::parse("j2").unwrap();
        assert!(matches!(
            other_job.verify(&ctx.me(), 0),
            Err(SpecError::WrongJob(_))
        ));

        let foreign = spec(&key, &g, "w2", 1);
        assert!(matches!(
            foreign.verify(&ctx.me(), 0),
            Err(SpecError::WrongWorker(_))
        ));
        let pinned = spec(&key, &grant(Some("w2"), &[]), "w1", 1);
        assert!(matches!(
            pinned.verify(&ctx.me(), 0),
            Err(SpecError::WrongWorker(_))
        ));
        let labelled = spec(&key, &grant(None, &["gpu"]), "w1", 1);
        assert!(matches!(
            labelled.verify(&ctx.me(), 0),
            Err(SpecError::MissingLabel(_))
        ));

        let too_many = spec(&key, &g, "w1", 3);
        assert!(matches!(
            too_many.verify(&ctx.me(), 0),
            Err(SpecError::TooManyAttempts { attempt: 3, max: 2 })
        ));
        let zero = spec(&key, &g, "w1", 0);
        assert!(zero.verify(&ctx.me(), 0).is_err());

        let fresh = spec(&key, &g, "w1", 1);
        assert!(matches!(
            fresh.verify(&ctx.me(), 2_000_000_001),
            Err(SpecError::Expired(_))
        ));

        let other = nkeys::KeyPair::new_user();
        let by_other = spec(&other, &g, "w1", 1);
        assert!(matches!(
            by_other.verify(&ctx.me(), 0),
            Err(SpecError::UntrustedSigner(_))
        ));
        // A seal claiming a trusted signer but made with another key does not open.
        let mut forged = spec(&other, &g, "w1", 1);
        forged.seal.signer = key.public_key();
        assert_eq!(forged.verify(&ctx.me(), 0), Err(SpecError::BadSignature));
    }
}
