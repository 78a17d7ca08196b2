//! The routing lease (`lifecycle::lease`): which copy of the dispatcher routes.
//!
//! [`Lease::hold`] runs beside the main loop (in the same task, so a copy that dies stops
//! renewing with it): on every turn of its own clock it reads the key
//! `skynet-routing/lease` (unless it holds it), asks `lifecycle::lease::next_step` what to
//! write, and writes that with compare-and-set. Each operation is bounded by the time a
//! holder may route after a renewal (`Timing::route_hold`: a slow renewal that still lands
//! in time keeps it routing), so a NATS outage never stalls it: the first turn after a
//! reconnect renews. The main loop asks [`Gate::may_route`] before every routing decision.

use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use skynet_protocol::lifecycle::Timing;
use skynet_protocol::lifecycle::lease::{self, LeaseStep, RouteLease, Seen};
use skynet_protocol::streams;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the main loop sees of the lease.
#[derive(Clone)]
pub(crate) struct Gate {
    base: Instant,
    timing: Timing,
    /// When the latest successful write of the lease was sent (ms since `base`), while held.
    renewed: watch::Receiver<Option<u64>>,
}

impl Gate {
    /// Whether this copy may route now.
    pub(crate) fn may_route(&self) -> bool {
        lease::may_route(*self.renewed.borrow(), ms_since(self.base), &self.timing)
    }

    /// Resolves when this copy gained or lost the lease; `Err` once the lease loop ended.
    pub(crate) async fn changed(&mut self) -> Result<(), watch::error::RecvError> {
        self.renewed.changed().await
    }
}

/// The writing side, run by [`Lease::hold`].
pub(crate) struct Lease {
    kv: kv::Store,
    me: String,
    base: Instant,
    timing: Timing,
    renewed: watch::Sender<Option<u64>>,
}

fn ms_since(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Lease {
    pub(crate) fn new(kv: kv::Store, me: String, timing: Timing) -> (Self, Gate) {
        let base = Instant::now();
        let (tx, rx) = watch::channel(None);
        let gate = Gate {
            base,
            timing: timing.clone(),
            renewed: rx,
        };
        (
            Self {
                kv,
                me,
                base,
                timing,
                renewed: tx,
            },
            gate,
        )
    }

    /// Sets when the latest successful write was sent; wakes the main loop only when this
    /// copy gains or loses the lease.
    fn set(&self, renewed: Option<u64>) {
        self.renewed.send_if_modified(|r| {
            let flipped = r.is_some() != renewed.is_some();
            *r = renewed;
            if flipped {
                match renewed {
                    Some(_) => tracing::info!(instance = %self.me, "this copy routes now (routing lease held)"),
                    None => tracing::info!(instance = %self.me, "this copy stopped routing (routing lease not held)"),
                }
            }
            flipped
        });
    }

    fn value(&self, holder: Option<&str>) -> bytes::Bytes {
        let v = RouteLease {
            holder: holder.map(str::to_owned),
            at: skynet_protocol::time::now(),
        };
        serde_json::to_vec(&v).unwrap_or_default().into()
    }

    /// The lease as it is in the bucket now; `Err` when it could not be read.
    async fn read(&self, seen: Option<&Seen>, now: u64) -> anyhow::Result<Option<Seen>> {
        let bound = self.timing.route_hold();
        let entry = tokio::time::timeout(bound, self.kv.entry(streams::ROUTING_LEASE_KEY))
            .await
            .map_err(|_| anyhow::anyhow!("reading the routing lease timed out"))??;
        Ok(entry.map(|e| {
            let holder = match e.operation {
                kv::Operation::Put => match serde_json::from_slice::<RouteLease>(&e.value) {
                    Ok(v) => v.holder,
                    // Unreadable: somebody's, until it goes unrenewed for a lease time.
                    Err(_) => Some(String::new()),
                },
                _ => None,
            };
            lease::observe(seen, e.revision, holder, now)
        }))
    }

    /// Carries out `step`; the revision written, or `None` when nothing was written.
    async fn write(&self, step: &LeaseStep) -> anyhow::Result<Option<u64>> {
        let bound = self.timing.route_hold();
        let value = self.value(Some(&self.me));
        let op = async {
            match step {
                LeaseStep::Create => self
                    .kv
                    .create(streams::ROUTING_LEASE_KEY, value)
                    .await
                    .map(Some)
                    .map_err(anyhow::Error::from),
                LeaseStep::Renew { revision } | LeaseStep::TakeOver { revision } => self
                    .kv
                    .update(streams::ROUTING_LEASE_KEY, value, *revision)
                    .await
                    .map(Some)
                    .map_err(anyhow::Error::from),
                LeaseStep::Wait => Ok(None),
            }
        };
        tokio::time::timeout(bound, op)
            .await
            .map_err(|_| anyhow::anyhow!("writing the routing lease timed out"))?
    }

    /// Holds, renews or watches the lease until `shutdown`; then lets it go if held, so
    /// another copy routes at once.
    pub(crate) async fn hold(self, shutdown: CancellationToken) {
        let mut seen: Option<Seen> = None;
        // Whether `seen` is what this copy wrote last (then it need not read first).
        let mut mine = false;
        let mut tick = tokio::time::interval(self.timing.route_renew);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let now = ms_since(self.base);
            if !mine {
                match self.read(seen.as_ref(), now).await {
                    Ok(s) => seen = s,
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot read the routing lease");
                        self.set(None);
                        continue;
                    }
                }
            }
            let step = lease::next_step(seen.as_ref(), &self.me, now, &self.timing);
            if step == LeaseStep::Wait {
                self.set(None);
                continue;
            }
            match self.write(&step).await {
                Ok(Some(revision)) => {
                    if !matches!(step, LeaseStep::Renew { .. }) {
                        tracing::info!(instance = %self.me, ?step, "took the routing lease");
                    }
                    seen = Some(Seen {
                        holder: Some(self.me.clone()),
                        revision,
                        since_ms: now,
                    });
                    mine = true;
                    self.set(Some(now));
                }
                Ok(None) => self.set(None),
                Err(e) => {
                    // Refused (another copy wrote it) or no answer: stop routing at once,
                    // and read the lease again on the next turn.
                    tracing::debug!(error = %e, ?step, "routing lease not written");
                    mine = false;
                    self.set(None);
                }
            }
        }
        if let (true, Some(s)) = (mine, seen) {
            self.set(None);
            let release = self
                .kv
                .update(streams::ROUTING_LEASE_KEY, self.value(None), s.revision);
            match tokio::time::timeout(Duration::from_secs(1), release).await {
                Ok(Ok(_)) => tracing::info!(instance = %self.me, "routing lease let go"),
                _ => tracing::debug!("could not let the routing lease go; it will expire"),
            }
        }
    }
}
