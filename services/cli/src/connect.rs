//! How the CLI reaches NATS: one quick attempt (a hang would look like a bug), errors that
//! say what to do (which seed, how to set it), the identity of the local `skynet up` found
//! by itself, and refusals by the server reported at once instead of as a time-out.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::{Client, ConnectErrorKind, Event, ServerError};
use serde::{Serialize, de::DeserializeOwned};
use skynet_runtime::NatsArgs;
use skynet_runtime::api::CallError;
use tokio::sync::broadcast;

use crate::paths;

/// A connection and the refusals the server sent on it.
pub struct Conn {
    pub client: Client,
    refusals: broadcast::Sender<String>,
    /// The identity's key, which signs approvals and denials (none when anonymous).
    pub signer: Option<std::sync::Arc<nkeys::KeyPair>>,
}

/// Where the identity came from.
#[derive(Debug, Clone)]
pub enum Identity {
    /// `--nats-seed` / `SKYNET_NATS_SEED_FILE`.
    Given(PathBuf),
    /// The CLI identity of the local `skynet up` serving this URL.
    Found(PathBuf),
    /// None: the server must allow anonymous clients.
    Anonymous,
}

/// `args`, with the local stack's CLI seed when none is given and a `skynet up` on this
/// machine wrote that it serves exactly this URL.
pub fn discover(args: &NatsArgs) -> (NatsArgs, Identity) {
    if let Some(seed) = &args.seed {
        return (args.clone(), Identity::Given(seed.clone()));
    }
    let dir = std::env::var_os(paths::CREDS_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(paths::default_creds_dir);
    let seed = dir.join("cli.nk");
    let serves_this = crate::up::stack_file(&dir).is_some_and(|s| s.url.trim() == args.url.trim());
    if serves_this && seed.is_file() {
        let mut found = args.clone();
        found.seed = Some(seed.clone());
        return (found, Identity::Found(seed));
    }
    (args.clone(), Identity::Anonymous)
}

/// Connects once (at most 10 s), explaining failures.
pub async fn connect(args: &NatsArgs, name: &str) -> anyhow::Result<Conn> {
    let (tx, _) = broadcast::channel(16);
    let refusals = tx.clone();
    let opts = skynet_runtime::connect::options(args, name, false)?.event_callback(move |event| {
        let tx = tx.clone();
        async move {
            match event {
                Event::ServerError(ServerError::Other(text)) => {
                    if let Some(subject) = refused_subject(&text) {
                        let _ = tx.send(subject);
                    } else {
                        tracing::warn!("the server said: {text}");
                    }
                }
                Event::Disconnected => tracing::warn!("disconnected from NATS; reconnecting"),
                Event::SlowConsumer(_) => tracing::warn!("slow consumer: messages dropped"),
                _ => {}
            }
        }
    });
    let servers = skynet_runtime::connect::servers(args)?;
    let client = match tokio::time::timeout(Duration::from_secs(10), opts.connect(servers)).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => return Err(explain(args, e.kind(), &e.to_string())),
        Err(_) => anyhow::bail!(
            "cannot reach NATS at {} (timed out). Is skynet up running? Another server: --nats-url or SKYNET_NATS_URL.",
            args.url
        ),
    };
    let signer = match &args.seed {
        Some(seed) => Some(std::sync::Arc::new(
            skynet_runtime::args::read_seed(seed, "--nats-seed")?.key_pair()?,
        )),
        None => None,
    };
    Ok(Conn {
        client,
        refusals,
        signer,
    })
}

fn explain(args: &NatsArgs, kind: ConnectErrorKind, text: &str) -> anyhow::Error {
    match (kind, &args.seed) {
        (ConnectErrorKind::AuthorizationViolation, None) => {
            let local = paths::default_creds_dir().join("cli.nk");
            let hint = if local.is_file() {
                format!(
                    "\n  The local skynet up's CLI identity is {}: export SKYNET_NATS_SEED_FILE={}",
                    local.display(),
                    local.display()
                )
            } else {
                "\n  skynet up prints the one it made; skynet creds show lists the identities of a credentials directory.".into()
            };
            anyhow::anyhow!(
                "NATS at {} wants an identity (authorization violation): set SKYNET_NATS_SEED_FILE \
                 (or --nats-seed) to your CLI seed file.{hint}",
                args.url
            )
        }
        (ConnectErrorKind::AuthorizationViolation, Some(seed)) => {
            let key = skynet_runtime::args::read_seed(seed, "--nats-seed")
                .and_then(|s| s.key_pair())
                .map(|k| k.public_key())
                .unwrap_or_default();
            anyhow::anyhow!(
                "NATS at {} refused the identity in {} (public key {key}): it is not one of that \
                 server's users. skynet creds show lists the identities of a credentials directory.",
                args.url,
                seed.display()
            )
        }
        _ => anyhow::anyhow!(
            "cannot reach NATS at {}: {text}. Is skynet up running? Another server: --nats-url or SKYNET_NATS_URL.",
            args.url
        ),
    }
}

/// The subject of a "Permissions Violation for Publish to "x"" (or Subscription) error.
fn refused_subject(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let at = lower.find("permissions violation for")?;
    let rest = &text[at..];
    let start = rest.find('"')? + 1;
    let end = rest[start..].find('"')? + start;
    Some(rest[start..end].to_owned())
}

/// Why a call failed, for the CLI.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(
        "the server refused: this identity may not use {0}. It is allowed only its own subjects (skynet creds show lists the identities)."
    )]
    Refused(String),
}

impl Failure {
    pub fn code(&self) -> Option<u16> {
        match self {
            Failure::Call(c) => c.code(),
            Failure::Refused(_) => Some(403),
        }
    }
}

impl Conn {
    /// A future that resolves when the server refuses `subject` on this connection.
    pub fn refused(&self, subject: String) -> impl std::future::Future<Output = ()> + use<> {
        let mut rx = self.refusals.subscribe();
        async move {
            loop {
                match rx.recv().await {
                    Ok(s) if s == subject => return,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => {
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }

    /// Calls `skynet.api.<endpoint>`; a refusal by the server fails it at once.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        endpoint: &str,
        request: &Req,
    ) -> Result<Resp, Failure> {
        let subject = skynet_protocol::subjects::api(endpoint);
        let refused = self.refused(subject.clone());
        tokio::select! {
            r = skynet_runtime::api::call(&self.client, endpoint, request) => Ok(r?),
            _ = refused => Err(Failure::Refused(subject)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_their_subject() {
        assert_eq!(
            refused_subject("Permissions Violation for Publish to \"skynet.api.jobs.list\"")
                .as_deref(),
            Some("skynet.api.jobs.list")
        );
        assert_eq!(
            refused_subject("permissions violation for subscription to \"_INBOX.x\"").as_deref(),
            Some("_INBOX.x")
        );
        assert_eq!(refused_subject("maximum payload exceeded"), None);
    }
}
