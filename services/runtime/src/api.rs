//! Both sides of the `skynet` NATS service: serving endpoints (typed handlers, contract
//! error replies) and calling them (typed client with clear errors).

use std::future::Future;
use std::time::Duration;

use async_nats::{
    Client, HeaderMap,
    client::RequestErrorKind,
    service::{Request, Service, ServiceExt, endpoint::Endpoint},
};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Serialize, de::DeserializeOwned};
use skynet_protocol::api::{ApiError, ErrorBody, parse};
use skynet_protocol::subjects;

use crate::shutdown::Shutdown;

const SERVICE_ERROR: &str = "Nats-Service-Error";
const SERVICE_ERROR_CODE: &str = "Nats-Service-Error-Code";

/// Registers this process as an instance of the `skynet` service. Each service adds the
/// endpoints it owns; `$SRV.INFO.skynet` lists them all.
pub async fn start_service(client: &Client, role: &str) -> anyhow::Result<Service> {
    client
        .service_builder()
        .description(format!("SKYNET API ({role})"))
        .start(subjects::api::SERVICE, skynet_protocol::VERSION)
        .await
        .map_err(|e| anyhow::anyhow!("starting the skynet service: {e}"))
}

/// Adds `skynet.api.<endpoint>` to `service`.
pub async fn endpoint(service: &Service, endpoint: &str) -> anyhow::Result<Endpoint> {
    service
        .endpoint_builder()
        .name(endpoint.replace('.', "_"))
        .add(subjects::api(endpoint))
        .await
        .map_err(|e| anyhow::anyhow!("adding endpoint {endpoint}: {e}"))
}

/// Sends `result` as the reply to `request`: JSON on success; on error the contract's body
/// `{"error": {"code", "message"}}` with the NATS service error headers.
pub async fn respond<T: Serialize>(request: &Request, result: Result<T, ApiError>) {
    let (payload, headers) = match result.and_then(|v| {
        serde_json::to_vec(&v).map_err(|e| ApiError::internal(format!("encoding reply: {e}")))
    }) {
        Ok(body) => (Bytes::from(body), HeaderMap::new()),
        Err(err) => {
            let mut headers = HeaderMap::new();
            headers.insert(
                SERVICE_ERROR,
                err.message.replace(['\r', '\n'], " ").as_str(),
            );
            headers.insert(SERVICE_ERROR_CODE, err.code.to_string().as_str());
            let body = serde_json::to_vec(&ErrorBody { error: err }).unwrap_or_default();
            (Bytes::from(body), headers)
        }
    };
    if let Err(e) = request.respond_with_headers(Ok(payload), headers).await {
        tracing::warn!(subject = %request.message.subject, error = %e, "could not reply");
    }
}

/// Serves `endpoint` until shutdown: each request is parsed into `Req` (a parse failure is
/// a 400 naming the problem) and handled concurrently.
pub async fn serve<Req, Resp, F, Fut>(endpoint: Endpoint, shutdown: Shutdown, handler: F)
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: Fn(Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, ApiError>> + Send + 'static,
{
    serve_raw(endpoint, shutdown, move |payload: Bytes| {
        let handler = handler.clone();
        async move { handler(parse::<Req>(&payload)?).await }
    })
    .await
}

/// Who sent a request, as far as the server vouches for it: the key of the private inbox
/// its reply goes to (`_INBOX.<public key>.…`; every identity may subscribe only to its own,
/// and only identities allowed to publish on the endpoint reach it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub inbox_key: Option<String>,
}

impl Caller {
    /// The caller of a request with reply subject `reply`.
    pub fn of_reply(reply: Option<&str>) -> Self {
        let inbox_key = reply
            .and_then(|r| r.strip_prefix("_INBOX."))
            .and_then(|r| r.split('.').next())
            .filter(|k| k.len() == 56 && k.chars().all(|c| c.is_ascii_alphanumeric()))
            .map(str::to_owned);
        Self { inbox_key }
    }
}

/// As [`serve`], with the [`Caller`] of each request.
pub async fn serve_from<Req, Resp, F, Fut>(endpoint: Endpoint, shutdown: Shutdown, handler: F)
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: Fn(Req, Caller) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, ApiError>> + Send + 'static,
{
    serve_requests(endpoint, shutdown, move |payload: Bytes, caller| {
        let handler = handler.clone();
        async move { handler(parse::<Req>(&payload)?, caller).await }
    })
    .await
}

/// Serves `endpoint` with a handler of the raw request body, for endpoints that parse it
/// themselves.
pub async fn serve_raw<Resp, F, Fut>(endpoint: Endpoint, shutdown: Shutdown, handler: F)
where
    Resp: Serialize + Send + 'static,
    F: Fn(Bytes) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, ApiError>> + Send + 'static,
{
    serve_requests(endpoint, shutdown, move |payload: Bytes, _| {
        handler(payload)
    })
    .await
}

/// The serving loop of every endpoint: each request handled concurrently, until shutdown.
async fn serve_requests<Resp, F, Fut>(mut endpoint: Endpoint, shutdown: Shutdown, handler: F)
where
    Resp: Serialize + Send + 'static,
    F: Fn(Bytes, Caller) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, ApiError>> + Send + 'static,
{
    loop {
        let request = tokio::select! {
            _ = shutdown.token.cancelled() => break,
            r = endpoint.next() => match r {
                Some(r) => r,
                None => break,
            },
        };
        let handler = handler.clone();
        shutdown.tasks.spawn(async move {
            let caller = Caller::of_reply(request.message.reply.as_deref());
            let result = handler(request.message.payload.clone(), caller).await;
            if let Err(e) = &result
                && e.code >= 500
            {
                tracing::error!(subject = %request.message.subject, error = %e, "request failed");
            }
            respond(&request, result).await;
        });
    }
}

/// Why an API call failed, from the caller's side.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Api(ApiError),
    #[error("nothing answers {0}: is the service that owns it running?")]
    NoService(String),
    #[error("{0} did not answer in time")]
    Timeout(String),
    #[error("{0}")]
    Transport(String),
    #[error("unreadable reply from {subject}: {message}")]
    BadReply { subject: String, message: String },
}

impl CallError {
    /// The API error code, when the service answered with one.
    pub fn code(&self) -> Option<u16> {
        match self {
            CallError::Api(e) => Some(e.code),
            _ => None,
        }
    }
}

/// Calls `skynet.api.<endpoint>` with raw bytes and a timeout.
pub async fn call_raw(
    client: &Client,
    endpoint: &str,
    payload: Bytes,
    timeout: Duration,
) -> Result<Bytes, CallError> {
    let subject = subjects::api(endpoint);
    let reply = tokio::time::timeout(timeout, client.request(subject.clone(), payload))
        .await
        .map_err(|_| CallError::Timeout(subject.clone()))?;
    let msg = match reply {
        Ok(m) => m,
        Err(e) if e.kind() == RequestErrorKind::NoResponders => {
            return Err(CallError::NoService(subject));
        }
        Err(e) if e.kind() == RequestErrorKind::TimedOut => {
            return Err(CallError::Timeout(subject));
        }
        Err(e) => return Err(CallError::Transport(e.to_string())),
    };
    let code = msg
        .headers
        .as_ref()
        .and_then(|h| h.get(SERVICE_ERROR_CODE))
        .map(|v| v.as_str().to_owned());
    if let Some(code) = code {
        let err = serde_json::from_slice::<ErrorBody>(&msg.payload)
            .map(|b| b.error)
            .unwrap_or_else(|_| {
                let message = msg
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(SERVICE_ERROR))
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default();
                ApiError::new(code.parse().unwrap_or(500), message)
            });
        return Err(CallError::Api(err));
    }
    Ok(msg.payload)
}

/// Calls `skynet.api.<endpoint>` with a typed request and reply.
pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
    client: &Client,
    endpoint: &str,
    request: &Req,
) -> Result<Resp, CallError> {
    let body = serde_json::to_vec(request).map_err(|e| CallError::Transport(e.to_string()))?;
    let reply = call_raw(client, endpoint, body.into(), Duration::from_secs(10)).await?;
    serde_json::from_slice(&reply).map_err(|e| CallError::BadReply {
        subject: subjects::api(endpoint),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::Caller;

    #[test]
    fn the_caller_is_the_key_of_the_private_inbox_the_reply_goes_to() {
        let key = "U".to_string() + &"A".repeat(55);
        assert_eq!(
            Caller::of_reply(Some(&format!("_INBOX.{key}.abc.1"))).inbox_key,
            Some(key.clone())
        );
        for other in ["_INBOX.abc.1", "reply.to.me", "_INBOX.", ""] {
            assert_eq!(Caller::of_reply(Some(other)).inbox_key, None, "{other}");
        }
        assert_eq!(Caller::of_reply(None).inbox_key, None);
    }
}
