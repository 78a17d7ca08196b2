//! Who routes: the routing lease of the owner's copies.
//!
//! Several dispatcher copies may run, and each follows every job; but routing is decided on
//! the whole picture (every waiting job against every worker and every held lock), and two
//! copies deciding on two views could each hand out a different job of one lock, or fill one
//! worker's last slot twice. So only the copy that holds the routing lease routes. The lease
//! is the key [`crate::streams::ROUTING_LEASE_KEY`] of the KV bucket
//! [`crate::streams::ROUTING_BUCKET`], written only with compare-and-set:
//!
//! - the holder renews it on every turn of its clock ([`Timing::route_renew`]) on the
//!   revision it wrote last;
//! - the others watch it, and take it over (on the revision they saw) only once that
//!   revision has not changed for [`Timing::route_lease`] by their own clock, or at once
//!   when the holder let it go;
//! - the holder routes only while its latest renewal (counted from when it was *sent*) is
//!   younger than [`Timing::route_hold`], which ends a full renew interval before anybody
//!   else may take over; a renewal that fails or is refused stops its routing at once.
//!
//! Nothing here does I/O: [`next_step`] decides what a copy writes, from what it saw.

use serde::{Deserialize, Serialize};

use super::Timing;

/// The lease's value in the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteLease {
    /// The copy that holds it (its instance id); `None` when its holder let it go.
    pub holder: Option<String>,
    /// When it was written (RFC 3339), for people reading the bucket.
    pub at: String,
}

/// The lease as this copy last saw it in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub holder: Option<String>,
    /// The entry's KV revision.
    pub revision: u64,
    /// When (this copy's monotonic clock, ms) it first saw this revision.
    pub since_ms: u64,
}

/// What a copy does about the lease on a turn of its clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseStep {
    /// Nobody has written it yet: create it (fails when another copy was quicker).
    Create,
    /// It is mine: write it again on this revision.
    Renew { revision: u64 },
    /// Its holder stopped renewing (or let it go): write it on the revision seen.
    TakeOver { revision: u64 },
    /// Another copy holds it: only watch.
    Wait,
}

/// Decides what `me` writes, from the lease as it last saw it (`None`: no entry) at
/// `now_ms` (the same monotonic clock as [`Seen::since_ms`]).
pub fn next_step(seen: Option<&Seen>, me: &str, now_ms: u64, timing: &Timing) -> LeaseStep {
    let Some(seen) = seen else {
        return LeaseStep::Create;
    };
    match seen.holder.as_deref() {
        Some(holder) if holder == me => LeaseStep::Renew {
            revision: seen.revision,
        },
        None => LeaseStep::TakeOver {
            revision: seen.revision,
        },
        Some(_) => {
            let unchanged = now_ms.saturating_sub(seen.since_ms);
            if u128::from(unchanged) >= timing.route_lease.as_millis() {
                LeaseStep::TakeOver {
                    revision: seen.revision,
                }
            } else {
                LeaseStep::Wait
            }
        }
    }
}

/// Takes in the entry read (`revision`, `holder`) at `now_ms`: the time it was first seen
/// moves only when the revision changed.
pub fn observe(seen: Option<&Seen>, revision: u64, holder: Option<String>, now_ms: u64) -> Seen {
    match seen {
        Some(s) if s.revision == revision => s.clone(),
        _ => Seen {
            holder,
            revision,
            since_ms: now_ms,
        },
    }
}

/// Whether a copy whose latest successful write of the lease was sent at `renewed_ms`
/// (`None`: it holds no lease) may route at `now_ms`.
pub fn may_route(renewed_ms: Option<u64>, now_ms: u64, timing: &Timing) -> bool {
    renewed_ms
        .is_some_and(|at| now_ms >= at && u128::from(now_ms - at) < timing.route_hold().as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(holder: Option<&str>, revision: u64, since_ms: u64) -> Seen {
        Seen {
            holder: holder.map(str::to_owned),
            revision,
            since_ms,
        }
    }

    #[test]
    fn the_first_copy_creates_it_and_the_holder_renews_on_its_revision() {
        let t = Timing::default();
        assert_eq!(next_step(None, "a", 0, &t), LeaseStep::Create);
        let mine = seen(Some("a"), 7, 0);
        // Renewed whatever the time: it is mine until a write of mine is refused.
        assert_eq!(
            next_step(Some(&mine), "a", 60_000, &t),
            LeaseStep::Renew { revision: 7 }
        );
    }

    #[test]
    fn others_take_over_only_after_a_lease_time_without_renewal() {
        let t = Timing::default();
        let lease = t.route_lease.as_millis() as u64;
        let held = seen(Some("a"), 7, 1_000);
        assert_eq!(next_step(Some(&held), "b", 1_000, &t), LeaseStep::Wait);
        assert_eq!(
            next_step(Some(&held), "b", 1_000 + lease - 1, &t),
            LeaseStep::Wait
        );
        assert_eq!(
            next_step(Some(&held), "b", 1_000 + lease, &t),
            LeaseStep::TakeOver { revision: 7 }
        );
        // A renewal (a new revision) starts the count again.
        let renewed = observe(Some(&held), 8, Some("a".into()), 1_000 + lease - 10);
        assert_eq!(renewed.since_ms, 1_000 + lease - 10);
        assert_eq!(
            next_step(Some(&renewed), "b", 1_000 + lease, &t),
            LeaseStep::Wait
        );
        // The same revision read again does not.
        let again = observe(Some(&held), 7, Some("a".into()), 1_000 + lease);
        assert_eq!(again.since_ms, 1_000);
        // A lease let go is taken at once.
        let free = seen(None, 9, 5_000);
        assert_eq!(
            next_step(Some(&free), "b", 5_000, &t),
            LeaseStep::TakeOver { revision: 9 }
        );
    }

    #[test]
    fn the_holder_stops_routing_a_renew_interval_before_anyone_may_take_over() {
        let t = Timing::default();
        assert!(!may_route(None, 0, &t));
        assert!(may_route(Some(1_000), 1_000, &t));
        let hold = t.route_hold().as_millis() as u64;
        assert!(may_route(Some(1_000), 1_000 + hold - 1, &t));
        assert!(!may_route(Some(1_000), 1_000 + hold, &t));
        // A clock that went backwards proves nothing.
        assert!(!may_route(Some(1_000), 999, &t));
        assert!(t.route_hold() + t.route_renew <= t.route_lease);
        assert!(t.route_hold() > t.route_renew);
    }
}
