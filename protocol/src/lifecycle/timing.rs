//! Every timing rule of a job's life, in one place.

use std::time::Duration;

/// How long things may take before someone acts. Services take the parts they need; the
/// defaults are the documented behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// How often workers heartbeat into the registry (a worker says its own interval in
    /// its entry; this is the default it is given).
    pub heartbeat: Duration,
    /// Heartbeats a worker may miss before it counts as offline.
    pub missed_heartbeats: u32,
    /// While many workers fall silent at once (a partition, not deaths), offline is declared
    /// only after this much more.
    pub partition_hold: Duration,
    /// A dispatched attempt whose worker has not said it started is handed its spec again
    /// this often (the spec was lost with a dispatcher that stopped between writing
    /// `dispatched` and sending it, say).
    pub spec_resend: Duration,
    /// How often the owner repeats a stop request nobody confirmed.
    pub nudge_every: Duration,
    /// After a job's time limit the worker stops it itself; after this much more, the owner
    /// asks the worker to stop it.
    pub timeout_grace: Duration,
    /// How long a stop (a cancel, or a stop after the time limit) may go unconfirmed before
    /// the owner ends the job without the worker's word (`force_cancelled`, `timed_out`).
    pub stop_confirm: Duration,
    /// A running job with no output and no progress for this long is stalled (an alert).
    pub stall_after: Duration,
    /// A waiting job no online worker could take for this long is unroutable (an alert).
    pub unroutable_after: Duration,
    /// A job still on a worker this long past its time limit is overdue (an alert).
    pub overdue_grace: Duration,
    /// How often the owner copy that routes renews its routing lease (`lifecycle::lease`).
    pub route_renew: Duration,
    /// A routing lease not renewed for this long (by the watcher's clock) may be taken over
    /// by another owner copy.
    pub route_lease: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(5),
            missed_heartbeats: 3,
            partition_hold: Duration::from_secs(15),
            spec_resend: Duration::from_secs(10),
            nudge_every: Duration::from_secs(2),
            timeout_grace: Duration::from_secs(10),
            stop_confirm: Duration::from_secs(15),
            stall_after: Duration::from_secs(600),
            unroutable_after: Duration::from_secs(60),
            overdue_grace: Duration::from_secs(30),
            route_renew: Duration::from_millis(250),
            route_lease: Duration::from_secs(1),
        }
    }
}

impl Timing {
    /// Silence after which a worker heartbeating every `heartbeat` is offline.
    pub fn offline_after(&self, heartbeat: Duration) -> Duration {
        heartbeat * self.missed_heartbeats.max(1)
    }

    /// How long a worker heartbeating every `heartbeat` may keep running steps without one of
    /// its heartbeats reaching the server: one heartbeat less than the silence that makes it
    /// offline, so its steps are gone before anyone can declare it lost and run the job again.
    pub fn lease(&self, heartbeat: Duration) -> Duration {
        heartbeat * self.missed_heartbeats.max(2).saturating_sub(1)
    }

    /// How long after sending its latest renewal the routing lease's holder may still route:
    /// one renew interval less than the lease, so it has stopped before anyone may take over.
    pub fn route_hold(&self) -> Duration {
        self.route_lease.saturating_sub(self.route_renew)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_ends_a_heartbeat_before_the_worker_counts_as_lost() {
        let t = Timing::default();
        let hb = Duration::from_secs(5);
        assert_eq!(t.offline_after(hb), Duration::from_secs(15));
        assert_eq!(t.lease(hb), Duration::from_secs(10));
        assert!(t.lease(hb) < t.offline_after(hb));
        let one = Timing {
            missed_heartbeats: 1,
            ..Timing::default()
        };
        // Even with one missed heartbeat allowed, the lease is shorter than the silence.
        assert!(one.lease(hb) <= one.offline_after(hb));
    }
}
