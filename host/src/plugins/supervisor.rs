//! Supervision of one loaded plugin: its counters, its recent failures and its state.
//!
//! A trap already costs the plugin its instance (see `actor`). Failures are counted in a
//! sliding window; `quarantine_after` of them within `quarantine_window_s` quarantine the
//! plugin: its actor and delivery loop stop, callers get `unavailable`, and its checkpoint
//! stays where it is, so the events it missed wait for it until the operator re-enables it
//! (or skips them). One bad plugin thus costs the host a bounded amount of work, not a
//! retry loop forever.

use super::config::Policy;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Call durations kept for the mean and p99 shown in `/plugins`.
const DURATIONS: usize = 256;

/// Counters and health of one plugin, shown by `/plugins`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Health {
    pub calls: u64,
    pub errors: u64,
    pub traps: u64,
    pub events_delivered: u64,
    pub checkpoint: i64,
    pub last_error: Option<String>,
    /// `active`, `failing` while deliveries fail and are retried, or `quarantined`.
    pub state: String,
    /// Failures within the current quarantine window.
    pub recent_failures: usize,
    /// Log lines dropped by the rate limit.
    pub log_lines_dropped: u64,
    /// Over the last 256 calls into the plugin (`call` and `on-events`).
    pub mean_call_ms: f64,
    pub p99_call_ms: f64,
}

#[derive(Default)]
struct Inner {
    health: Health,
    failures: VecDeque<Instant>,
    durations: VecDeque<Duration>,
}

/// Shared by a plugin's entry, its actor and its delivery loop.
pub struct Supervisor {
    pub name: String,
    pub policy: Arc<Policy>,
    /// Cancelled when the plugin is unloaded, replaced or quarantined.
    pub stop: CancellationToken,
    inner: Mutex<Inner>,
}

impl Supervisor {
    pub fn new(name: &str, policy: Arc<Policy>, stop: CancellationToken) -> Supervisor {
        let health = Health { state: "active".into(), ..Default::default() };
        Supervisor { name: name.into(), policy, stop, inner: Mutex::new(Inner { health, ..Default::default() }) }
    }

    pub fn health(&self) -> Health {
        let g = self.inner.lock().unwrap();
        let mut h = g.health.clone();
        h.recent_failures = g.failures.len();
        let mut ms: Vec<f64> = g.durations.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        if !ms.is_empty() {
            ms.sort_by(f64::total_cmp);
            h.mean_call_ms = ms.iter().sum::<f64>() / ms.len() as f64;
            h.p99_call_ms = ms[((ms.len() * 99).div_ceil(100)).saturating_sub(1)];
        }
        h
    }

    pub fn quarantined(&self) -> bool {
        self.inner.lock().unwrap().health.state == "quarantined"
    }

    /// Why calls are refused, when they are.
    pub fn unavailable(&self) -> Option<String> {
        let g = self.inner.lock().unwrap();
        (g.health.state == "quarantined").then(|| {
            format!(
                "plugin {} is quarantined (last error: {}); POST /plugins/{}/enable restarts it",
                self.name,
                g.health.last_error.as_deref().unwrap_or("none"),
                self.name
            )
        })
    }

    pub fn update(&self, f: impl FnOnce(&mut Health)) {
        f(&mut self.inner.lock().unwrap().health)
    }

    pub fn record_duration(&self, d: Duration) {
        let mut g = self.inner.lock().unwrap();
        if g.durations.len() == DURATIONS {
            g.durations.pop_front();
        }
        g.durations.push_back(d);
    }

    /// Records a failure (a trap when `trap`, else a refused or oversized delivery or an
    /// oversized result) and quarantines the plugin when the window is full. Returns whether it is now quarantined.
    pub fn fail(&self, msg: &str, trap: bool) -> bool {
        let limits = &self.policy.limits;
        let mut g = self.inner.lock().unwrap();
        if trap {
            g.health.traps += 1;
        }
        g.health.errors += 1;
        g.health.last_error = Some(msg.to_string());
        let now = Instant::now();
        g.failures.push_back(now);
        while g.failures.front().is_some_and(|t| now.duration_since(*t) > limits.quarantine_window()) {
            g.failures.pop_front();
        }
        let full = limits.quarantine_after > 0 && g.failures.len() >= limits.quarantine_after as usize;
        if full && g.health.state != "quarantined" {
            g.health.state = "quarantined".into();
            drop(g);
            tracing::error!(plugin = %self.name, failures = limits.quarantine_after, window_s = limits.quarantine_window_s, error = %msg,
                "plugin quarantined: no more calls or deliveries until it is re-enabled or replaced; its events are kept");
            self.stop.cancel();
            return true;
        }
        full
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::config::Limits;

    fn sup(after: u32) -> Supervisor {
        let limits = Limits { quarantine_after: after, quarantine_window_s: 60, ..Limits::default() };
        Supervisor::new("p", Arc::new(Policy { limits, grants: Default::default(), config: None }), CancellationToken::new())
    }

    #[test]
    fn k_failures_in_the_window_quarantine_and_stop_the_plugin() {
        let s = sup(3);
        assert!(!s.fail("a", true) && !s.fail("b", false));
        assert!(s.unavailable().is_none() && !s.stop.is_cancelled());
        assert!(s.fail("c", true));
        assert!(s.quarantined() && s.stop.is_cancelled());
        assert!(s.unavailable().unwrap().contains("last error: c"));
        let h = s.health();
        assert_eq!((h.traps, h.errors, h.recent_failures), (2, 3, 3));
    }

    #[test]
    fn zero_means_never_quarantined() {
        let s = sup(0);
        for _ in 0..100 {
            assert!(!s.fail("x", true));
        }
        assert!(!s.quarantined());
    }

    #[test]
    fn mean_and_p99_come_from_recent_durations() {
        let s = sup(5);
        for ms in 1..=100 {
            s.record_duration(Duration::from_millis(ms));
        }
        let h = s.health();
        assert!((h.mean_call_ms - 50.5).abs() < 0.01 && (h.p99_call_ms - 99.0).abs() < 0.01, "{h:?}");
    }
}
