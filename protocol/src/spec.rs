//! ExecutionSpec: exactly what a worker may run, signed by policy.
//!
//! Policy signs the spec's JSON bytes (with a domain prefix) using its ed25519 nkey. The
//! worker verifies the signature over the very bytes it received before parsing them, so no
//! canonicalisation step can make two parties disagree about what was signed.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{JobId, WorkerId};
use crate::job::{Step, ValidationError, validate_steps};

const DOMAIN: &[u8] = b"skynet-execution-spec-v1\n";

/// What one attempt of one job on one worker may run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionSpec {
    pub job_id: JobId,
    pub attempt: u32,
    pub worker: WorkerId,
    pub steps: Vec<Step>,
    pub plan_hash: String,
    pub timeout_s: u64,
    /// Unix seconds after which the spec must not start.
    pub not_after: i64,
    /// Unix seconds when policy issued it.
    pub issued_at: i64,
}

/// A spec as it travels on `skynet.work.<worker>.<job>`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedSpec {
    /// The ExecutionSpec as JSON text, byte for byte what was signed.
    pub spec: String,
    /// The signer's public nkey.
    pub signer: String,
    /// Hex ed25519 signature over the domain prefix and `spec`.
    pub signature: String,
}

impl std::fmt::Debug for SignedSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedSpec")
            .field("signer", &self.signer)
            .field("spec_bytes", &self.spec.len())
            .finish_non_exhaustive()
    }
}

/// Why a worker refused a spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("spec is not a signed execution spec: {0}")]
    Malformed(String),
    #[error("spec is signed by {0}, which this worker does not trust")]
    UntrustedSigner(String),
    #[error("spec signature does not verify (tampered or corrupt)")]
    BadSignature,
    #[error("spec is for worker {0}, not this one")]
    WrongWorker(String),
    #[error("spec expired at {0}")]
    Expired(String),
    #[error("spec plan hash does not match its steps")]
    PlanHashMismatch,
    #[error("spec steps are invalid: {0}")]
    InvalidSteps(#[from] ValidationError),
    #[error("signing failed: {0}")]
    Signing(String),
}

/// The hash that names a plan: SHA-256 over the JSON of its steps, as hex. People see its
/// first 12 digits when they approve; the signed spec carries the whole of it.
pub fn plan_hash(steps: &[Step]) -> String {
    let bytes = serde_json::to_vec(steps).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

const APPROVAL_DOMAIN: &[u8] = b"skynet-approval-v1\n";

fn approval_bytes(job: &JobId, plan_hash: &str) -> Vec<u8> {
    let mut v = APPROVAL_DOMAIN.to_vec();
    v.extend_from_slice(job.as_str().as_bytes());
    v.push(b'\n');
    v.extend_from_slice(plan_hash.as_bytes());
    v
}

/// Policy's seal on an approval of `plan_hash` for `job` (hex ed25519).
pub fn seal_approval(
    key: &nkeys::KeyPair,
    job: &JobId,
    plan_hash: &str,
) -> Result<String, SpecError> {
    key.sign(&approval_bytes(job, plan_hash))
        .map(hex::encode)
        .map_err(|e| SpecError::Signing(e.to_string()))
}

/// Whether `seal` is `public_key`'s seal on approving `plan_hash` for `job`.
pub fn verify_approval(public_key: &str, job: &JobId, plan_hash: &str, seal: &str) -> bool {
    let (Ok(key), Ok(sig)) = (
        nkeys::KeyPair::from_public_key(public_key),
        hex::decode(seal),
    ) else {
        return false;
    };
    key.verify(&approval_bytes(job, plan_hash), &sig).is_ok()
}

/// The short form of a plan hash shown to people.
pub fn short_hash(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

fn signed_bytes(spec: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(DOMAIN.len() + spec.len());
    v.extend_from_slice(DOMAIN);
    v.extend_from_slice(spec.as_bytes());
    v
}

impl ExecutionSpec {
    /// Signs the spec with `key` (any nkey with a seed).
    pub fn sign(&self, key: &nkeys::KeyPair) -> Result<SignedSpec, SpecError> {
        let spec = serde_json::to_string(self).map_err(|e| SpecError::Signing(e.to_string()))?;
        let sig = key
            .sign(&signed_bytes(&spec))
            .map_err(|e| SpecError::Signing(e.to_string()))?;
        Ok(SignedSpec {
            spec,
            signer: key.public_key(),
            signature: hex::encode(sig),
        })
    }
}

impl SignedSpec {
    pub fn from_slice(bytes: &[u8]) -> Result<Self, SpecError> {
        serde_json::from_slice(bytes).map_err(|e| SpecError::Malformed(e.to_string()))
    }

    /// Checks signer, signature, addressee, expiry and shape; returns the spec if it may run.
    /// `now` is Unix seconds. Replays are the worker's to catch: it knows what it already ran.
    pub fn verify(
        &self,
        trusted: &[String],
        me: &WorkerId,
        now: i64,
    ) -> Result<ExecutionSpec, SpecError> {
        if !trusted.iter().any(|k| k == &self.signer) {
            return Err(SpecError::UntrustedSigner(self.signer.clone()));
        }
        let key = nkeys::KeyPair::from_public_key(&self.signer)
            .map_err(|_| SpecError::UntrustedSigner(self.signer.clone()))?;
        let sig = hex::decode(&self.signature).map_err(|_| SpecError::BadSignature)?;
        key.verify(&signed_bytes(&self.spec), &sig)
            .map_err(|_| SpecError::BadSignature)?;
        let spec: ExecutionSpec =
            serde_json::from_str(&self.spec).map_err(|e| SpecError::Malformed(e.to_string()))?;
        if &spec.worker != me {
            return Err(SpecError::WrongWorker(spec.worker.to_string()));
        }
        if spec.not_after < now {
            return Err(SpecError::Expired(crate::time::from_unix_ms(
                spec.not_after * 1000,
            )));
        }
        validate_steps(&spec.steps, false)?;
        if plan_hash(&spec.steps) != spec.plan_hash {
            return Err(SpecError::PlanHashMismatch);
        }
        Ok(spec)
    }

    /// Reads the job id and attempt without trusting anything, to report a refusal.
    pub fn peek(&self) -> Option<(JobId, u32)> {
        #[derive(Deserialize)]
        struct Peek {
            job_id: JobId,
            attempt: u32,
        }
        serde_json::from_str::<Peek>(&self.spec)
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

    fn spec(worker: &str) -> ExecutionSpec {
        let steps = vec![Step::Shell {
            cmd: Some("echo hi".into()),
            argv: None,
            cwd: None,
            env: Default::default(),
            timeout_s: None,
            artifacts: vec![],
        }];
        ExecutionSpec {
            job_id: JobId::parse("j1").unwrap(),
            attempt: 1,
            worker: WorkerId::parse(worker).unwrap(),
            plan_hash: plan_hash(&steps),
            steps,
            timeout_s: 60,
            not_after: 2_000_000_000,
            issued_at: 1_900_000_000,
        }
    }

    #[test]
    fn a_signed_spec_verifies_for_its_worker() {
        let key = nkeys::KeyPair::new_user();
        let signed = spec("w1").sign(&key).unwrap();
        let me = WorkerId::parse("w1").unwrap();
        let trusted = vec![key.public_key()];
        let got = signed.verify(&trusted, &me, 1_950_000_000).unwrap();
        assert_eq!(got, spec("w1"));
    }

    #[test]
    fn tampered_foreign_expired_and_untrusted_specs_are_refused() {
        let key = nkeys::KeyPair::new_user();
        let trusted = vec![key.public_key()];
        let me = WorkerId::parse("w1").unwrap();

        let mut tampered = spec("w1").sign(&key).unwrap();
        tampered.spec = tampered.spec.replace("echo hi", "rm -rf ~");
        assert_eq!(
            tampered.verify(&trusted, &me, 0),
            Err(SpecError::BadSignature)
        );

        let foreign = spec("w2").sign(&key).unwrap();
        assert!(matches!(
            foreign.verify(&trusted, &me, 0),
            Err(SpecError::WrongWorker(_))
        ));

        let signed = spec("w1").sign(&key).unwrap();
        assert!(matches!(
            signed.verify(&trusted, &me, 2_000_000_001),
            Err(SpecError::Expired(_))
        ));

        let other = nkeys::KeyPair::new_user();
        let by_other = spec("w1").sign(&other).unwrap();
        assert!(matches!(
            by_other.verify(&trusted, &me, 0),
            Err(SpecError::UntrustedSigner(_))
        ));
    }

    #[test]
    fn a_spec_whose_hash_does_not_match_is_refused_even_if_signed() {
        let key = nkeys::KeyPair::new_user();
        let mut s = spec("w1");
        s.plan_hash = "0".repeat(64);
        let signed = s.sign(&key).unwrap();
        assert_eq!(
            signed.verify(&[key.public_key()], &WorkerId::parse("w1").unwrap(), 0),
            Err(SpecError::PlanHashMismatch)
        );
    }

    #[test]
    fn approval_seals_bind_job_plan_and_key() {
        let key = nkeys::KeyPair::new_user();
        let job = JobId::parse("j1").unwrap();
        let seal = seal_approval(&key, &job, "abc").unwrap();
        assert!(verify_approval(&key.public_key(), &job, "abc", &seal));
        assert!(!verify_approval(&key.public_key(), &job, "abd", &seal));
        assert!(!verify_approval(
            &key.public_key(),
            &JobId::parse("j2").unwrap(),
            "abc",
            &seal
        ));
        let other = nkeys::KeyPair::new_user();
        assert!(!verify_approval(&other.public_key(), &job, "abc", &seal));
        assert!(!verify_approval(&key.public_key(), &job, "abc", "zz"));
    }

    #[test]
    fn peek_reads_the_job_of_an_untrusted_spec() {
        let key = nkeys::KeyPair::new_user();
        let signed = spec("w1").sign(&key).unwrap();
        assert_eq!(signed.peek().unwrap().0.as_str(), "j1");
    }
}
