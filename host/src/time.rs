//! Timestamps as microseconds since the Unix epoch (UTC).
//!
//! Both backends store times as BIGINT microseconds: one encoding, exact ordering, no
//! time-zone or precision surprises between SQLite and PostgreSQL.

use chrono::{DateTime, TimeZone, Utc};
use std::sync::atomic::{AtomicI64, Ordering};

static LAST: AtomicI64 = AtomicI64::new(0);

/// Now, strictly increasing within this process, so runs queued by one host keep FIFO order
/// even when two land in the same microsecond.
pub fn now_us() -> i64 {
    let wall = Utc::now().timestamp_micros();
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = wall.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

pub fn to_datetime(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

pub fn from_datetime(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}
