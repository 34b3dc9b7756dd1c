//! Prometheus metrics, served at `GET /metrics` in the OpenMetrics text format.
//!
//! One [`Metrics`] per host (a field of the scheduler, not a global: tests run many hosts
//! in one process, and each must report only its own work). Counters and histograms are
//! recorded where the work happens and cost one atomic add or a bucket search:
//!
//! - runs: every state change this host commits passes through one place
//!   (`Scheduler::committed`), which counts runs queued and runs ended by final state;
//!   the executor observes run duration and enqueue-to-start latency;
//! - plugins: each plugin's actor holds its own counter and histogram handles
//!   (`PluginMeters`), resolved once, so a call records without a label lookup;
//! - the store: each transaction of `store::api` is timed by operation ([`StoreMetrics`]).
//!
//! Gauges that describe shared state (queue depth by priority, how far each plugin's
//! checkpoint is behind the change feed) are read from the database when scraped, since
//! with PostgreSQL the queue belongs to every host at once.
//!
//! Names follow Prometheus conventions: the `fluid_` prefix, `_total` on counters (added
//! by the encoder), base units in the name (`_seconds`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::time::{Duration, Instant};

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    task: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskStateLabels {
    task: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PriorityLabels {
    priority: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

/// `export` is the plugin function called: `on-events` or `call`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginExportLabels {
    plugin: String,
    export: String,
}

/// A state-changing HTTP request: the role of its token (`none` without one), its method
/// and the status it was answered with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuditLabels {
    role: &'static str,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Durations from 50 µs to about 28 minutes (50 µs × 2^25), doubling.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 26))
}

/// Store operations from 10 µs to about 10 s (10 µs × 2^20), doubling.
fn store_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 2.0, 21))
}

/// Timing of the store's transactions; owned by the store (so it can time them before any
/// scheduler exists), registered by [`Metrics::new`]. Its `Default` is an empty set.
#[derive(Clone)]
pub struct StoreMetrics {
    duration: HistogramFamily<OpLabels>,
    errors: Family<OpLabels, Counter>,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics { duration: Family::new_with_constructor(store_histogram), errors: Family::default() }
    }
}

impl StoreMetrics {
    /// Runs `op`, recording how long it took and whether it failed.
    pub(crate) async fn timed<T, E>(&self, op: &'static str, f: impl Future<Output = Result<T, E>>) -> Result<T, E> {
        let started = Instant::now();
        let out = f.await;
        let labels = OpLabels { op };
        self.duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
        if out.is_err() {
            self.errors.get_or_create(&labels).inc();
        }
        out
    }
}

/// Every metric of one host.
pub struct Metrics {
    registry: Registry,
    runs_queued: Family<TaskLabels, Counter>,
    runs_finished: Family<TaskStateLabels, Counter>,
    run_duration: HistogramFamily<TaskLabels>,
    start_latency: HistogramFamily<TaskLabels>,
    running: Gauge,
    queue_depth: Family<PriorityLabels, Gauge>,
    feed_lag: Family<PluginLabels, Gauge>,
    plugin_calls: Family<PluginExportLabels, Counter>,
    plugin_call_duration: HistogramFamily<PluginExportLabels>,
    plugin_errors: Family<PluginLabels, Counter>,
    plugin_traps: Family<PluginLabels, Counter>,
    plugin_events: Family<PluginLabels, Counter>,
    plugin_cpu: Family<PluginLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    plugin_limits_hit: Family<PluginLabels, Counter>,
    http_audit: Family<AuditLabels, Counter>,
}

impl Metrics {
    /// A registry of every metric, all at zero, with the store's timings registered beside
    /// them. The scheduler makes one per host; measurements can make their own.
    pub fn new(store: &StoreMetrics) -> Metrics {
        let mut registry = Registry::with_prefix("fluid");
        let m = Metrics {
            runs_queued: Family::default(),
            runs_finished: Family::default(),
            run_duration: Family::new_with_constructor(seconds_histogram),
            start_latency: Family::new_with_constructor(seconds_histogram),
            running: Gauge::default(),
            queue_depth: Family::default(),
            feed_lag: Family::default(),
            plugin_calls: Family::default(),
            plugin_call_duration: Family::new_with_constructor(seconds_histogram),
            plugin_errors: Family::default(),
            plugin_traps: Family::default(),
            plugin_events: Family::default(),
            plugin_cpu: Family::default(),
            plugin_limits_hit: Family::default(),
            http_audit: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register("runs_queued", "Runs queued by this host (new runs, schedule fires and retries)", m.runs_queued.clone());
        r.register("runs_finished", "Runs this host recorded in a final state, by task and state", m.runs_finished.clone());
        r.register_with_unit("run_duration", "Execution time of runs on this host, by task", Unit::Seconds, m.run_duration.clone());
        r.register_with_unit(
            "run_start_latency",
            "Time from when a run was due (queued, or its delay or retry wait over) to its start on this host",
            Unit::Seconds,
            m.start_latency.clone(),
        );
        r.register("runs_running", "Runs executing on this host now", m.running.clone());
        r.register("queue_depth", "Runs queued in the shared queue, by priority (read when scraped)", m.queue_depth.clone());
        r.register(
            "plugin_feed_lag_events",
            "Change-feed events a plugin has not handled yet: feed head minus its checkpoint (read when scraped)",
            m.feed_lag.clone(),
        );
        r.register("plugin_calls", "Calls into a plugin by this host, by export (on-events or call)", m.plugin_calls.clone());
        r.register_with_unit(
            "plugin_call_duration",
            "Time of one call into a plugin, by export",
            Unit::Seconds,
            m.plugin_call_duration.clone(),
        );
        r.register("plugin_errors", "Calls a plugin answered with an error (caller mistakes excluded)", m.plugin_errors.clone());
        r.register("plugin_traps", "Calls in which a plugin trapped (its instance is discarded)", m.plugin_traps.clone());
        r.register("plugin_events_delivered", "Change-feed events a plugin acknowledged", m.plugin_events.clone());
        r.register_with_unit(
            "plugin_cpu",
            "CPU time of a plugin's or task component's guest code, host calls it made included",
            Unit::Seconds,
            m.plugin_cpu.clone(),
        );
        r.register(
            "plugin_limits_hit",
            "Times a plugin or task component ran into one of its limits (see /plugins for which)",
            m.plugin_limits_hit.clone(),
        );
        r.register(
            "http_audited_requests",
            "State-changing HTTP requests, by the role of their token, method and status",
            m.http_audit.clone(),
        );
        r.register_with_unit(
            "store_operation_duration",
            "Time of one store transaction, by operation",
            Unit::Seconds,
            store.duration.clone(),
        );
        r.register("store_operation_errors", "Store transactions that failed, by operation", store.errors.clone());
        Metrics { registry, ..m }
    }

    /// The registry in the OpenMetrics text format (what Prometheus scrapes).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    pub(crate) fn audited(&self, role: &'static str, method: &str, status: u16) {
        // Methods outside the usual ones are counted under one label: the set stays small.
        let method = if matches!(method, "POST" | "PUT" | "PATCH" | "DELETE") { method.to_string() } else { "other".to_string() };
        self.http_audit.get_or_create(&AuditLabels { role, method, status }).inc();
    }

    /// Counts a run queued for `task`.
    pub fn run_queued(&self, task: &str) {
        self.runs_queued.get_or_create(&TaskLabels { task: task.to_string() }).inc();
    }

    /// Counts a run of `task` that ended for good in `state`.
    pub fn run_finished(&self, task: &str, state: &str) {
        self.runs_finished.get_or_create(&TaskStateLabels { task: task.to_string(), state: state.to_string() }).inc();
    }

    /// Records a run of `task` started after waiting `waited` since it was due.
    pub fn run_started(&self, task: &str, waited: Duration) {
        self.start_latency.get_or_create(&TaskLabels { task: task.to_string() }).observe(waited.as_secs_f64());
        self.running.inc();
    }

    /// Records an execution of `task` that took `took`.
    pub fn run_ended(&self, task: &str, took: Duration) {
        self.run_duration.get_or_create(&TaskLabels { task: task.to_string() }).observe(took.as_secs_f64());
        self.running.dec();
    }

    pub(crate) fn set_queue_depth(&self, priority: &str, depth: i64) {
        self.queue_depth.get_or_create(&PriorityLabels { priority: priority.to_string() }).set(depth);
    }

    pub(crate) fn set_feed_lag(&self, plugin: &str, lag: i64) {
        self.feed_lag.get_or_create(&PluginLabels { plugin: plugin.to_string() }).set(lag);
    }

    /// The handles one plugin records into.
    pub(crate) fn plugin(&self, plugin: &str) -> PluginMeters {
        let export = |e: &str| PluginExportLabels { plugin: plugin.to_string(), export: e.to_string() };
        let labels = PluginLabels { plugin: plugin.to_string() };
        // One statement each: a family's guard lives to the end of its statement, and a
        // second insert into the same family while it is held would deadlock.
        let event_calls = self.plugin_calls.get_or_create(&export("on-events")).clone();
        let calls = self.plugin_calls.get_or_create(&export("call")).clone();
        let event_duration = self.plugin_call_duration.get_or_create(&export("on-events")).clone();
        let call_duration = self.plugin_call_duration.get_or_create(&export("call")).clone();
        let errors = self.plugin_errors.get_or_create(&labels).clone();
        let traps = self.plugin_traps.get_or_create(&labels).clone();
        let events = self.plugin_events.get_or_create(&labels).clone();
        let cpu_seconds = self.plugin_cpu.get_or_create(&labels).clone();
        let limits_hit = self.plugin_limits_hit.get_or_create(&labels).clone();
        PluginMeters { event_calls, calls, event_duration, call_duration, errors, traps, events, cpu_seconds, limits_hit }
    }
}

/// One plugin's counters and histograms (clones share the series).
#[derive(Clone)]
pub(crate) struct PluginMeters {
    pub event_calls: Counter,
    pub calls: Counter,
    pub event_duration: Histogram,
    pub call_duration: Histogram,
    pub errors: Counter,
    pub traps: Counter,
    pub events: Counter,
    pub cpu_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    pub limits_hit: Counter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_follows_prometheus_naming() {
        let store = StoreMetrics::default();
        let m = Metrics::new(&store);
        m.run_queued("report");
        m.run_finished("report", "success");
        m.run_started("report", Duration::from_millis(3));
        m.run_ended("report", Duration::from_millis(20));
        m.plugin("db").traps.inc();
        let text = m.encode();
        for line in [
            "fluid_runs_queued_total{task=\"report\"} 1",
            "fluid_runs_finished_total{task=\"report\",state=\"success\"} 1",
            "fluid_run_duration_seconds_count{task=\"report\"} 1",
            "fluid_run_start_latency_seconds_count{task=\"report\"} 1",
            "fluid_runs_running 0",
            "fluid_plugin_traps_total{plugin=\"db\"} 1",
            "fluid_plugin_calls_total{plugin=\"db\",export=\"on-events\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(text.contains("# TYPE fluid_run_duration_seconds histogram"));
        assert!(text.contains("# UNIT fluid_run_duration_seconds seconds"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[tokio::test]
    async fn store_operations_are_timed_and_failures_counted() {
        let store = StoreMetrics::default();
        let m = Metrics::new(&store);
        let _: Result<(), ()> = store.timed("claim", async { Ok(()) }).await;
        let _: Result<(), ()> = store.timed("claim", async { Err(()) }).await;
        let text = m.encode();
        assert!(text.contains("fluid_store_operation_duration_seconds_count{op=\"claim\"} 2"), "{text}");
        assert!(text.contains("fluid_store_operation_errors_total{op=\"claim\"} 1"), "{text}");
    }
}
