//! `GET /throughput?minutes=N`: runs that ended on this host per 5-second bucket over the
//! last N minutes (default 10, at most 60), split into succeeded, failed and other
//! (aborted, rate limited, interrupted), for the dashboard's chart.
//!
//! Counted in memory, not read from the database: a background task reads the
//! scheduler's broadcast of committed changes and adds each run entering a final state to
//! a ring of per-bucket counts, so the chart costs no query. Hence the figures cover this
//! host only, since it started, and each failed attempt of a retried run counts once. A
//! receiver that lags behind the broadcast skips what it missed (the chart is a view, not
//! a ledger). The task ends when the broadcast closes (the scheduler is gone) or when the
//! routes holding the counts are dropped.

use crate::http::{ApiError, parse_query};
use crate::scheduler::{Scheduler, TaskRun, TaskState};
use crate::time::{from_datetime, now_us, to_datetime};
use axum::Json;
use axum::extract::RawQuery;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::broadcast;

pub const BUCKET_SECONDS: i64 = 5;
pub const DEFAULT_MINUTES: u32 = 10;
pub const MAX_MINUTES: u32 = 60;
/// Enough buckets for the longest window.
const SLOTS: usize = (MAX_MINUTES as i64 * 60 / BUCKET_SECONDS) as usize;

/// Runs that ended within one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub succeeded: u64,
    pub failed: u64,
    pub other: u64,
}

/// Per-bucket counts in a fixed ring: bucket `n` covers `[n * 5 s, (n + 1) * 5 s)` since
/// the epoch and lives in slot `n % SLOTS`; a slot remembers which bucket it holds, so a
/// slot left from an hour ago reads as empty instead of being cleared by a timer.
#[derive(Debug)]
pub struct Ring {
    slots: Vec<(i64, Counts)>,
}

impl Default for Ring {
    fn default() -> Ring {
        Ring { slots: vec![(i64::MIN, Counts::default()); SLOTS] }
    }
}

fn bucket_of(at_us: i64) -> i64 {
    at_us.div_euclid(BUCKET_SECONDS * 1_000_000)
}

impl Ring {
    /// Counts a run that reached `state` at `at_us`. Not a final state: ignored.
    pub fn record(&mut self, at_us: i64, state: TaskState) {
        if !state.is_done() {
            return;
        }
        let bucket = bucket_of(at_us);
        let slot = &mut self.slots[bucket.rem_euclid(SLOTS as i64) as usize];
        if slot.0 > bucket {
            // Older than anything the ring still shows.
            return;
        }
        if slot.0 < bucket {
            *slot = (bucket, Counts::default());
        }
        let c = &mut slot.1;
        match state {
            TaskState::Success => c.succeeded += 1,
            TaskState::Failure => c.failed += 1,
            _ => c.other += 1,
        }
    }

    /// The `minutes` (1..=60) up to and including the bucket holding `now_us`, oldest
    /// first, as (bucket start in microseconds, counts).
    pub fn window(&self, now_us: i64, minutes: u32) -> Vec<(i64, Counts)> {
        let n = (minutes.clamp(1, MAX_MINUTES) as i64 * 60 / BUCKET_SECONDS) as usize;
        let last = bucket_of(now_us);
        (0..n as i64)
            .rev()
            .map(|back| {
                let bucket = last - back;
                let (held, counts) = self.slots[bucket.rem_euclid(SLOTS as i64) as usize];
                (bucket * BUCKET_SECONDS * 1_000_000, if held == bucket { counts } else { Counts::default() })
            })
            .collect()
    }
}

/// The ring, shared by the feeding task and the handler.
#[derive(Default)]
pub struct Throughput {
    ring: Mutex<Ring>,
}

impl Throughput {
    /// Starts counting `scheduler`'s finished runs. Outside a tokio runtime nothing is
    /// counted (the chart stays empty) rather than panicking.
    pub fn start(scheduler: &Scheduler) -> Arc<Throughput> {
        let t = Arc::new(Throughput::default());
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(feed(scheduler.subscribe(), Arc::downgrade(&t)));
            }
            Err(_) => tracing::warn!("no tokio runtime: the dashboard's throughput chart will stay empty"),
        }
        t
    }

    fn record(&self, run: &TaskRun) {
        let at = run.end.map(from_datetime).unwrap_or_else(now_us);
        self.ring.lock().unwrap().record(at, run.state);
    }
}

/// Holds only a weak reference, so dropping the routes ends it at the next change.
async fn feed(mut changes: broadcast::Receiver<TaskRun>, counts: Weak<Throughput>) {
    loop {
        match changes.recv().await {
            Ok(run) if run.state.is_done() => match counts.upgrade() {
                Some(t) => t.record(&run),
                None => return,
            },
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(skipped)) => {
                tracing::debug!(skipped, "throughput chart fell behind the change broadcast; skipped changes are not counted")
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

pub fn handler(t: &Throughput, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let mut minutes = DEFAULT_MINUTES;
    for (k, v) in parse_query(q.as_deref()) {
        match k.as_str() {
            "minutes" => {
                minutes = match v.parse::<u32>() {
                    Ok(0) | Err(_) => return Err(ApiError::unprocessable(format!("minutes must be a positive integer, got {v:?}"))),
                    Ok(m) => m.min(MAX_MINUTES),
                }
            }
            other => return Err(ApiError::unprocessable(format!("unknown query parameter {other:?}"))),
        }
    }
    let window = t.ring.lock().unwrap().window(now_us(), minutes);
    let buckets: Vec<Value> = window
        .into_iter()
        .map(|(start, c)| json!({"start": to_datetime(start), "succeeded": c.succeeded, "failed": c.failed, "other": c.other}))
        .collect();
    Ok(Json(json!({"bucket_seconds": BUCKET_SECONDS, "minutes": minutes, "buckets": buckets})))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;
    /// A bucket boundary, far from the epoch.
    const T0: i64 = 1_700_000_000 * S;

    fn totals(w: &[(i64, Counts)]) -> Counts {
        w.iter().fold(Counts::default(), |a, (_, c)| Counts {
            succeeded: a.succeeded + c.succeeded,
            failed: a.failed + c.failed,
            other: a.other + c.other,
        })
    }

    #[test]
    fn counts_final_states_in_their_bucket() {
        let mut r = Ring::default();
        r.record(T0, TaskState::Success);
        r.record(T0 + 4 * S + 999_999, TaskState::Success); // same bucket, last microsecond
        r.record(T0 + 5 * S, TaskState::Failure); // next bucket
        r.record(T0 + 6 * S, TaskState::Aborted);
        r.record(T0 + 6 * S, TaskState::Interrupted);
        r.record(T0 + 6 * S, TaskState::RateLimited);
        r.record(T0 + 6 * S, TaskState::Running); // not final: ignored
        r.record(T0 + 6 * S, TaskState::Queued);
        let w = r.window(T0 + 7 * S, 1);
        assert_eq!(w.len(), 12, "one minute of 5 s buckets");
        let (start, last) = w[11];
        assert_eq!(start, T0 + 5 * S, "the newest bucket holds now");
        assert_eq!(last, Counts { succeeded: 0, failed: 1, other: 3 });
        assert_eq!(w[10], (T0, Counts { succeeded: 2, failed: 0, other: 0 }));
        assert!(w[..10].iter().all(|(_, c)| *c == Counts::default()));
        assert!(w.windows(2).all(|p| p[1].0 - p[0].0 == BUCKET_SECONDS * S), "consecutive, oldest first");
    }

    #[test]
    fn window_length_is_clamped() {
        let r = Ring::default();
        assert_eq!(r.window(T0, 10).len(), 120);
        assert_eq!(r.window(T0, 60).len(), SLOTS);
        assert_eq!(r.window(T0, 1000).len(), SLOTS);
        assert_eq!(r.window(T0, 0).len(), 12);
    }

    #[test]
    fn buckets_older_than_the_ring_read_as_empty_and_are_reused() {
        let mut r = Ring::default();
        r.record(T0, TaskState::Success);
        // One hour later, the same slot holds a new bucket.
        let hour = 3600 * S;
        r.record(T0 + hour, TaskState::Failure);
        let w = r.window(T0 + hour, 60);
        assert_eq!(totals(&w), Counts { succeeded: 0, failed: 1, other: 0 }, "the old count is gone");
        // A late change for the bucket an hour ago does not overwrite the newer one.
        r.record(T0, TaskState::Success);
        assert_eq!(totals(&r.window(T0 + hour, 60)), Counts { succeeded: 0, failed: 1, other: 0 });
        // Read far later, nothing is shown.
        assert_eq!(totals(&r.window(T0 + 3 * hour, 60)), Counts::default());
    }

    #[test]
    fn a_window_sees_only_its_own_minutes() {
        let mut r = Ring::default();
        r.record(T0, TaskState::Success);
        r.record(T0 + 120 * S, TaskState::Success);
        assert_eq!(totals(&r.window(T0 + 120 * S, 1)).succeeded, 1);
        assert_eq!(totals(&r.window(T0 + 120 * S, 3)).succeeded, 2);
    }

    #[test]
    fn times_before_the_epoch_do_not_panic() {
        let mut r = Ring::default();
        r.record(-1, TaskState::Success);
        assert_eq!(totals(&r.window(0, 1)).succeeded, 1);
    }
}
