//! Supervision of one loaded plugin: its counters, its recent failures and its state.
//!
//! A trap already costs the plugin its instance (see `actor`). Failures are counted in a
//! sliding window; `quarantine_after` of them within `quarantine_window_s` quarantine the
//! plugin: its actor and delivery loop stop, callers get `unavailable`, and its checkpoint
//! stays where it is, so the events it missed wait for it until the operator re-enables it
//! (or skips them). One bad plugin thus costs the host a bounded amount of work, not a
//! retry loop forever.

use crate::plugins::engine::policy::Policy;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Call durations kept for the mean and p99 shown in `/plugins`.
const DURATIONS: usize = 256;

/// Counters and health of one plugin, shown by `/plugins`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Health {
    /// Calls into its `call` export.
    pub calls: u64,
    /// Failed calls and deliveries, traps included.
    pub errors: u64,
    /// Times its instance trapped (and was discarded).
    pub traps: u64,
    /// Events it acknowledged.
    pub events_delivered: u64,
    /// The feed position its deliveries have reached.
    pub checkpoint: i64,
    /// What went wrong last.
    pub last_error: Option<String>,
    /// `active`, `failing` while deliveries fail and are retried, or `quarantined`.
    pub state: String,
    /// Failures within the current quarantine window.
    pub recent_failures: usize,
    /// Log lines dropped by the rate limit.
    pub log_lines_dropped: u64,
    /// Over the last 256 calls into the plugin (`call` and `on-events`).
    pub mean_call_ms: f64,
    /// Over the same calls.
    pub p99_call_ms: f64,
    /// CPU time its guest code (and the host calls it made) has used since it was loaded.
    pub cpu_ms: u64,
    /// Bytes the host holds on its behalf now: its registration, results and arguments
    /// in flight through the host (its instance's own memory is `limits.memory_mib`).
    pub host_bytes: u64,
    /// The last limit it ran into (`limit: what happened`), and how many times it did.
    pub last_limit: Option<String>,
    /// How many times it ran into a limit.
    pub limits_hit: u64,
    /// Calls it made that failed in the plugin called (counted against it, not the callee).
    pub calls_failed_downstream: u64,
}

#[derive(Default)]
struct Inner {
    health: Health,
    failures: VecDeque<Instant>,
    durations: VecDeque<Duration>,
    /// The CPU budget's window: when it started and the CPU counter then.
    cpu_window: Option<(Instant, u64)>,
}

/// Shared by a plugin's entry, its actor and its delivery loop.
pub struct Supervisor {
    /// The plugin's name (`task component NAME` for a task component).
    pub name: String,
    /// What it was loaded with.
    pub policy: Arc<Policy>,
    /// Cancelled when the plugin is unloaded, replaced or quarantined.
    pub stop: CancellationToken,
    /// CPU time of all its guest work, in nanoseconds (see `guest_pool::Metered`).
    pub cpu_ns: AtomicU64,
    /// The part of `cpu_ns` spent on work the host gave it (deliveries, `register`):
    /// what its CPU budget counts. CPU a caller asks for through `call` is bounded per
    /// call by `call_timeout_ms` and never costs the callee its health.
    pub own_cpu_ns: AtomicU64,
    /// Bytes held on its behalf (see [`Health::host_bytes`]).
    pub host_bytes: AtomicU64,
    /// Its `queue-run` allowance (`queue_per_s`, `queue_burst`), shared by its instances.
    queue_bucket: Mutex<TokenBucket>,
    /// The same in bytes of params (`queue_kib_per_s`, `queue_burst_kib`): every run it
    /// queues is stored, sent to every plugin and kept in history.
    queue_bytes: Mutex<TokenBucket>,
    /// Queued runs as last counted, and how many it queued since, per set counted (its
    /// component's own tasks under `""`, else the task; see `host_api`'s `queue_run`):
    /// counted again only near the bound or now and then. Known tasks only, so bounded.
    pub(crate) queued_estimate: Mutex<std::collections::HashMap<String, (u64, u64)>>,
    /// Its log lines' allowance, shared by its instances (a task component's runs, a
    /// plugin's fresh instances after traps), so a new instance is no fresh budget.
    pub(crate) log_budget: Mutex<LogBudget>,
    inner: Mutex<Inner>,
}

/// Bytes counted in [`Supervisor::host_bytes`] while it lives.
pub struct HeldBytes {
    sup: Arc<Supervisor>,
    bytes: u64,
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        self.sup.host_bytes.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// Full: `burst` tokens (at least one).
    pub fn new(rate: u64, burst: u64) -> TokenBucket {
        let burst = burst.max(1) as f64;
        TokenBucket { rate: rate as f64, burst, tokens: burst, last: Instant::now() }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self) -> bool {
        self.take_n(1.0)
    }

    /// Takes `n` tokens if there are that many.
    pub fn take_n(&mut self, n: f64) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

impl Supervisor {
    /// An `active` plugin with no counts yet; `stop` is cancelled by a quarantine.
    pub fn new(name: &str, policy: Arc<Policy>, stop: CancellationToken) -> Supervisor {
        let health = Health { state: "active".into(), ..Default::default() };
        Supervisor {
            name: name.into(),
            queue_bucket: Mutex::new(TokenBucket::new(policy.limits.queue_per_s, policy.limits.queue_burst)),
            log_budget: Mutex::default(),
            queued_estimate: Mutex::default(),
            queue_bytes: Mutex::new(TokenBucket::new(
                policy.limits.queue_kib_per_s.saturating_mul(1024),
                policy.limits.queue_burst_kib.saturating_mul(1024),
            )),
            policy,
            stop,
            cpu_ns: AtomicU64::new(0),
            own_cpu_ns: AtomicU64::new(0),
            host_bytes: AtomicU64::new(0),
            inner: Mutex::new(Inner { health, ..Default::default() }),
        }
    }

    /// A supervisor named `p` with these limits and no grants, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_test(limits: crate::plugins::engine::policy::Limits) -> Supervisor {
        let start = crate::plugins::engine::policy::FeedStart::Now;
        Supervisor::new("p", Arc::new(Policy { limits, grants: Default::default(), config: None, start }), CancellationToken::new())
    }

    /// A snapshot of its counters and state.
    pub fn health(&self) -> Health {
        let g = self.inner.lock().unwrap();
        let mut h = g.health.clone();
        h.recent_failures = g.failures.len();
        h.cpu_ms = self.cpu_ns.load(Ordering::Relaxed) / 1_000_000;
        h.host_bytes = self.host_bytes.load(Ordering::Relaxed);
        let mut ms: Vec<f64> = g.durations.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        if !ms.is_empty() {
            ms.sort_by(f64::total_cmp);
            h.mean_call_ms = ms.iter().sum::<f64>() / ms.len() as f64;
            h.p99_call_ms = ms[((ms.len() * 99).div_ceil(100)).saturating_sub(1)];
        }
        h
    }

    /// Whether it is quarantined.
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

    /// Changes its health under the lock.
    pub fn update(&self, f: impl FnOnce(&mut Health)) {
        f(&mut self.inner.lock().unwrap().health)
    }

    /// Keeps a call's duration for the mean and p99.
    pub fn record_duration(&self, d: Duration) {
        let mut g = self.inner.lock().unwrap();
        if g.durations.len() == DURATIONS {
            g.durations.pop_front();
        }
        g.durations.push_back(d);
    }

    /// Records that it ran into `limit` (a fluid.toml key) and what happened: shown in
    /// `/plugins` and counted in the metrics; not a failure by itself.
    pub fn limit_hit(&self, limit: &str, what: &str) {
        let mut g = self.inner.lock().unwrap();
        g.health.limits_hit += 1;
        g.health.last_limit = Some(format!("{limit}: {what}"));
    }

    /// Checks the CPU budget after some of its own work (deliveries, `register`): over
    /// `cpu_budget_ms` within `cpu_window_s` is one failure, and a new window starts.
    /// Returns the failure's message when the budget was crossed.
    pub fn check_cpu_budget(&self) -> Option<String> {
        let limits = &self.policy.limits;
        if limits.cpu_budget_ms == 0 {
            return None;
        }
        let now = Instant::now();
        let cpu = self.own_cpu_ns.load(Ordering::Relaxed);
        let msg = {
            let mut g = self.inner.lock().unwrap();
            let (start, base) = *g.cpu_window.get_or_insert((now, cpu));
            let used_ms = cpu.saturating_sub(base) / 1_000_000;
            if now.duration_since(start) >= limits.cpu_window() {
                g.cpu_window = Some((now, cpu));
                return None;
            }
            if used_ms <= limits.cpu_budget_ms {
                return None;
            }
            g.cpu_window = Some((now, cpu));
            g.health.limits_hit += 1;
            let msg = format!(
                "used {used_ms} ms of CPU within {} s, over its budget of {} ms (cpu_budget_ms)",
                limits.cpu_window_s, limits.cpu_budget_ms
            );
            g.health.last_limit = Some(format!("cpu_budget_ms: {msg}"));
            msg
        };
        self.fail(&msg, false);
        Some(msg)
    }

    /// Counts `bytes` as held on its behalf (arguments waiting for it, a batch in hand)
    /// until the guard is dropped.
    pub fn hold(self: &Arc<Self>, bytes: usize) -> HeldBytes {
        self.host_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        HeldBytes { sup: self.clone(), bytes: bytes as u64 }
    }

    /// Takes one run of `params_bytes` from its `queue-run` allowance, or says why not
    /// (and records the hit).
    pub fn take_queue_token(&self, params_bytes: usize) -> Result<(), String> {
        let l = &self.policy.limits;
        if !self.queue_bucket.lock().unwrap().take() {
            let msg = format!(
                "queue-run refused: over {} runs a second (queue_per_s) after a burst of {} (queue_burst)",
                l.queue_per_s, l.queue_burst
            );
            self.limit_hit("queue_per_s", &msg);
            return Err(msg);
        }
        if !self.queue_bytes.lock().unwrap().take_n(params_bytes as f64) {
            let msg = format!(
                "queue-run refused: over {} KiB of params a second (queue_kib_per_s) after a burst of {} KiB (queue_burst_kib)",
                l.queue_kib_per_s, l.queue_burst_kib
            );
            self.limit_hit("queue_kib_per_s", &msg);
            return Err(msg);
        }
        Ok(())
    }

    /// A trap or an oversized result in a `call`: counted and shown, but not a failure
    /// toward quarantine, since the caller chose the arguments (and pays the wait).
    pub fn call_trapped(&self, msg: &str) {
        let mut g = self.inner.lock().unwrap();
        g.health.traps += 1;
        g.health.errors += 1;
        g.health.last_error = Some(msg.to_string());
    }

    /// Whether a task component's next run may start: not while the CPU its runs used in
    /// the current window (`cpu_window_s`) is over `cpu_budget_ms` (then the hit is recorded).
    pub fn run_allowed(&self) -> Result<(), String> {
        let limits = &self.policy.limits;
        if limits.cpu_budget_ms == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let cpu = self.own_cpu_ns.load(Ordering::Relaxed);
        let mut g = self.inner.lock().unwrap();
        let (start, base) = *g.cpu_window.get_or_insert((now, cpu));
        if now.duration_since(start) >= limits.cpu_window() {
            g.cpu_window = Some((now, cpu));
            return Ok(());
        }
        let used_ms = cpu.saturating_sub(base) / 1_000_000;
        if used_ms <= limits.cpu_budget_ms {
            return Ok(());
        }
        let msg = format!(
            "{} used {used_ms} ms of CPU within {} s, over its budget of {} ms (cpu_budget_ms): no run starts until the window ends",
            self.name, limits.cpu_window_s, limits.cpu_budget_ms
        );
        g.health.limits_hit += 1;
        g.health.last_limit = Some(format!("cpu_budget_ms: {msg}"));
        Err(msg)
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

/// A token bucket for plugin log lines: a flood is dropped, not fatal.
pub struct LogBudget {
    tokens: f64,
    last: std::time::Instant,
    dropped: u64,
}

impl Default for LogBudget {
    fn default() -> Self {
        LogBudget { tokens: 200.0, last: std::time::Instant::now(), dropped: 0 }
    }
}

impl LogBudget {
    /// 100 lines per second, bursts of 200.
    pub fn take(&mut self) -> bool {
        let now = std::time::Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * 100.0).min(200.0);
        self.last = now;
        if self.tokens >= 1.0 {
            if self.dropped > 0 {
                tracing::warn!(target: "fluid::plugin", dropped = self.dropped, "plugin log lines dropped (over 100/s)");
                self.dropped = 0;
            }
            self.tokens -= 1.0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::engine::policy::Limits;

    fn sup(after: u32) -> Supervisor {
        Supervisor::for_test(Limits { quarantine_after: after, quarantine_window_s: 60, ..Limits::default() })
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
    fn the_queue_allowance_is_a_burst_then_a_rate() {
        let limits = Limits { queue_per_s: 0, queue_burst: 3, ..Limits::default() };
        let s = Supervisor::for_test(limits);
        assert!((0..3).all(|_| s.take_queue_token(2).is_ok()));
        assert!(s.take_queue_token(2).unwrap_err().contains("queue_per_s"));
        let h = s.health();
        assert_eq!(h.limits_hit, 1);
        assert!(h.last_limit.unwrap().starts_with("queue_per_s: "));
    }

    #[test]
    fn the_queue_allowance_counts_params_bytes_too() {
        let limits = Limits { queue_kib_per_s: 0, queue_burst_kib: 4, ..Limits::default() };
        let s = Supervisor::for_test(limits);
        assert!(s.take_queue_token(3000).is_ok());
        assert!(s.take_queue_token(3000).unwrap_err().contains("queue_kib_per_s"));
        assert!(s.take_queue_token(1000).is_ok(), "what is left still serves a smaller run");
    }

    #[test]
    fn over_the_cpu_budget_within_the_window_is_a_failure() {
        let limits = Limits { cpu_budget_ms: 100, cpu_window_s: 60, quarantine_after: 2, ..Limits::default() };
        let s = Supervisor::for_test(limits);
        assert!(s.check_cpu_budget().is_none(), "opens the window");
        s.own_cpu_ns.fetch_add(90_000_000, Ordering::Relaxed);
        assert!(s.check_cpu_budget().is_none(), "within budget");
        s.own_cpu_ns.fetch_add(20_000_000, Ordering::Relaxed);
        assert!(s.check_cpu_budget().unwrap().contains("cpu_budget_ms"));
        assert!(s.check_cpu_budget().is_none(), "a new window starts");
        s.cpu_ns.fetch_add(10_000_000_000, Ordering::Relaxed);
        assert!(s.check_cpu_budget().is_none(), "CPU callers asked for is not counted");
        s.own_cpu_ns.fetch_add(200_000_000, Ordering::Relaxed);
        assert!(s.check_cpu_budget().is_some() && s.quarantined(), "two failures quarantine");
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
