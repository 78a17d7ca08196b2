//! Connecting to NATS the same way everywhere: identity from a seed file, optional TLS,
//! endless reconnects with a short backoff, and connection events in the log.

use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event, ServerAddr};

use crate::args::{ConfigError, NatsArgs, read_seed};

/// Builds the connect options for `args`, naming the connection `name`. With
/// `wait_for_server`, the first connection is retried until the server is up.
pub fn options(
    args: &NatsArgs,
    name: &str,
    wait_for_server: bool,
) -> Result<ConnectOptions, ConfigError> {
    let mut opts = ConnectOptions::new()
        .name(name)
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .ping_interval(Duration::from_secs(10))
        .reconnect_delay_callback(|attempts| {
            // Quick first retries, then at most every 2 s: a laptop back from sleep should
            // be reachable again within a heartbeat or two.
            let ms = (attempts as u64).saturating_mul(100).min(2_000);
            Duration::from_millis(ms)
        })
        .event_callback({
            let name = name.to_owned();
            move |event| {
                let name = name.clone();
                async move {
                    match event {
                        Event::Connected => tracing::info!(conn = %name, "connected to NATS"),
                        Event::Disconnected => {
                            tracing::warn!(conn = %name, "disconnected from NATS; reconnecting")
                        }
                        Event::SlowConsumer(sid) => {
                            tracing::warn!(conn = %name, sid, "slow consumer: messages dropped")
                        }
                        Event::LameDuckMode => {
                            tracing::warn!(conn = %name, "server entering lame duck mode")
                        }
                        Event::ServerError(e) => {
                            tracing::warn!(conn = %name, error = %e, "the server refused something")
                        }
                        other => tracing::info!(conn = %name, event = %other, "NATS event"),
                    }
                }
            }
        });
    if wait_for_server {
        opts = opts.retry_on_initial_connect();
    }
    if let Some(path) = &args.seed {
        let seed = read_seed(path, "--nats-seed")?;
        // Replies come to a private inbox, the only one this identity may subscribe to.
        let public = seed.key_pair()?.public_key();
        opts = opts
            .nkey(seed.expose().to_owned())
            .custom_inbox_prefix(skynet_protocol::permissions::inbox_prefix(&public));
    }
    if let Some(ca) = &args.ca {
        if !ca.is_file() {
            return Err(ConfigError::new(
                "--nats-ca",
                format!("{} is not a readable file", ca.display()),
            ));
        }
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    Ok(opts)
}

/// The server list of `--nats-url`.
pub fn servers(args: &NatsArgs) -> Result<Vec<ServerAddr>, ConfigError> {
    let list = args
        .url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ServerAddr>().map_err(|e| {
                ConfigError::new("--nats-url", format!("{s:?} is not a NATS URL: {e}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if list.is_empty() {
        return Err(ConfigError::new("--nats-url", "no server given"));
    }
    Ok(list)
}

/// Connects a service, waiting for the server if it is not up yet. Configuration problems
/// come back as [`ConfigError`] inside the `anyhow::Error`.
pub async fn connect(args: &NatsArgs, name: &str) -> anyhow::Result<Client> {
    let client = options(args, name, true)?.connect(servers(args)?).await?;
    Ok(client)
}

/// Connects once, failing fast when nothing answers: for the CLI, where waiting forever for
/// a server would look like a hang.
pub async fn connect_once(args: &NatsArgs, name: &str) -> anyhow::Result<Client> {
    let opts = options(args, name, false)?;
    let servers = servers(args)?;
    match tokio::time::timeout(Duration::from_secs(10), opts.connect(servers)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(anyhow::anyhow!("cannot reach NATS at {}: {e}", args.url)),
        Err(_) => Err(anyhow::anyhow!(
            "cannot reach NATS at {} (timed out)",
            args.url
        )),
    }
}

/// How many times `client` has connected so far (the first connection included).
pub fn connects(client: &Client) -> u64 {
    client
        .statistics()
        .connects
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// Resolves once `client` has connected again since it had connected `seen` times: a
/// restarted server has forgotten the ephemeral consumers of its old life, and whoever
/// followed a stream through one should make a new one at once instead of waiting for
/// missed heartbeats.
pub async fn reconnected(client: &Client, seen: u64) {
    loop {
        if connects(client) != seen {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
