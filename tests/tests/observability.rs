//! What an operator observes: `GET /metrics` counts what really happened (runs by task and
//! final state, queue depth, plugin calls, traps and feed lag, store timings), on both
//! backends; traces reach a real OTLP/HTTP collector when configured and are off otherwise.

mod common;

use common::*;
use fluid_host::plugins::bundled::guest_wasm_dir;
use fluid_host::scheduler::QueueOptions;
use fluid_host::telemetry::{LogStyle, TelemetryConfig};
use fluid_host::{Priority, Task, TaskError, TaskState};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;

fn tasks() -> Vec<Task> {
    vec![Task::new("ok").run(|_| async { Ok(()) }), Task::new("boom").run(|_| async { Err(TaskError::Failed("boom".into())) })]
}

/// `series -> value` of an OpenMetrics text page (comments skipped).
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_string(), v.parse().expect("numeric sample"))))
        .collect()
}

fn sample(all: &HashMap<String, f64>, series: &str) -> f64 {
    let name = series.split('{').next().unwrap_or(series);
    *all.get(series)
        .unwrap_or_else(|| panic!("no series {series}; have {:?}", all.keys().filter(|k| k.starts_with(name)).collect::<Vec<_>>()))
}

async fn metrics_count_what_happened(db: Db) {
    let env = TestEnv::new(db).await;
    let plugins = env.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(guest_wasm_dir().join("fluid_test_trap_events.wasm"), plugins.join("trap_events.wasm")).unwrap();
    let mut c = env.config();
    c.load_plugins = true;
    let h = start(c, tasks()).await;
    let s = h.scheduler.clone();
    for task in ["ok", "ok", "ok", "boom", "boom"] {
        let run = queue(&s, task, json!({})).await;
        wait_done(&s, &run.id).await;
    }
    // Two runs that stay queued: due in an hour.
    for _ in 0..2 {
        let opts = QueueOptions { priority: Some(Priority::High), delay: Some(Duration::from_secs(3600)), ..Default::default() };
        s.queue("ok", json!({}), opts).await.unwrap();
    }
    caught_up(&h, "db").await;
    let trap = h.plugins.clone().unwrap().get("trap_events").expect("trap_events loaded");
    poll("the trap to be recorded", WAIT, || {
        let trap = trap.clone();
        async move { (trap.health().traps > 0).then_some(()) }
    })
    .await;
    let head = s.store().feed_head().await.unwrap() as f64;

    let resp = client().get(url(&h, "/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    let text = resp.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"));
    assert!(text.contains("# TYPE fluid_runs_finished counter"), "{text}");
    assert!(text.contains("# TYPE fluid_run_duration_seconds histogram"));
    let m = samples(&text);

    assert_eq!(sample(&m, r#"fluid_runs_finished_total{task="ok",state="success"}"#), 3.0);
    assert_eq!(sample(&m, r#"fluid_runs_finished_total{task="boom",state="failure"}"#), 2.0);
    assert_eq!(sample(&m, r#"fluid_runs_queued_total{task="ok"}"#), 5.0);
    assert_eq!(sample(&m, r#"fluid_runs_queued_total{task="boom"}"#), 2.0);
    assert_eq!(sample(&m, r#"fluid_run_duration_seconds_count{task="ok"}"#), 3.0);
    assert_eq!(sample(&m, r#"fluid_run_start_latency_seconds_count{task="boom"}"#), 2.0);
    assert_eq!(sample(&m, "fluid_runs_running"), 0.0);
    assert_eq!(sample(&m, r#"fluid_queue_depth{priority="high"}"#), 2.0);
    assert_eq!(sample(&m, r#"fluid_queue_depth{priority="medium"}"#), 0.0);
    // Plugins: the db plugin acknowledged the whole feed; the trapping one none of it.
    assert!(sample(&m, r#"fluid_plugin_calls_total{plugin="db",export="on-events"}"#) >= 1.0);
    assert_eq!(sample(&m, r#"fluid_plugin_events_delivered_total{plugin="db"}"#), head);
    assert_eq!(sample(&m, r#"fluid_plugin_feed_lag_events{plugin="db"}"#), 0.0);
    assert!(sample(&m, r#"fluid_plugin_traps_total{plugin="trap_events"}"#) >= 1.0);
    assert_eq!(sample(&m, r#"fluid_plugin_events_delivered_total{plugin="trap_events"}"#), 0.0);
    assert_eq!(sample(&m, r#"fluid_plugin_feed_lag_events{plugin="trap_events"}"#), head);
    assert!(sample(&m, r#"fluid_plugin_call_duration_seconds_count{plugin="db",export="on-events"}"#) >= 1.0);
    // The store: the claim and finish transactions were timed.
    assert!(sample(&m, r#"fluid_store_operation_duration_seconds_count{op="claim"}"#) >= 1.0);
    assert!(sample(&m, r#"fluid_store_operation_duration_seconds_count{op="finish_and_claim"}"#) >= 1.0);
    h.shutdown(Duration::ZERO).await;
}

crate::backend_tests!(metrics_count_what_happened);

/// A span's name and its attributes as text.
type Span = (String, HashMap<String, String>);

/// What an OTLP/HTTP collector received: every span with its string and int attributes.
#[derive(Default, Clone)]
struct Received {
    spans: Arc<Mutex<Vec<Span>>>,
    services: Arc<Mutex<Vec<String>>>,
}

fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.clone()) {
        Some(AnyValue::StringValue(s)) => s,
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

/// A real OTLP/HTTP endpoint (protobuf), on its own thread and runtime so the exporter's
/// blocking flush cannot stall it.
fn collector() -> (String, Received) {
    let received = Received::default();
    let r = received.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/v1/traces",
                axum::routing::post(move |body: axum::body::Bytes| {
                    let r = r.clone();
                    async move {
                        let req = ExportTraceServiceRequest::decode(body).expect("a valid OTLP protobuf body");
                        for rs in req.resource_spans {
                            for a in rs.resource.iter().flat_map(|r| r.attributes.iter()) {
                                if a.key == "service.name" {
                                    r.services.lock().unwrap().push(text(&a.value));
                                }
                            }
                            for ss in rs.scope_spans {
                                for span in ss.spans {
                                    let attrs = span.attributes.iter().map(|a| (a.key.clone(), text(&a.value))).collect();
                                    r.spans.lock().unwrap().push((span.name, attrs));
                                }
                            }
                        }
                        axum::http::StatusCode::OK
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    let addr = rx.recv().unwrap();
    (format!("http://{addr}"), received)
}

fn config(otlp: Option<String>) -> TelemetryConfig {
    TelemetryConfig { log: "warn".into(), style: LogStyle::Plain, otlp_endpoint: otlp, service_name: "fluid-test".into() }
}

// One thread: the subscriber set for this test applies to every task of the host.
#[tokio::test(flavor = "current_thread")]
async fn run_life_and_plugin_deliveries_reach_an_otlp_collector() {
    let (endpoint, received) = collector();
    let (layers, provider) = fluid_host::telemetry::layers(&config(Some(endpoint)), std::io::sink).unwrap();
    let provider = provider.expect("traces on");
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layers));

    let env = TestEnv::new(Db::Sqlite).await;
    let mut c = env.config();
    c.load_plugins = true;
    let h = start(c, tasks()).await;
    let s = h.scheduler.clone();
    let run = queue(&s, "ok", json!({})).await;
    assert_eq!(wait_done(&s, &run.id).await.state, TaskState::Success);
    caught_up(&h, "db").await;
    h.shutdown(Duration::ZERO).await;
    tokio::task::spawn_blocking(move || provider.force_flush()).await.unwrap().expect("spans flushed");

    let spans = received.spans.lock().unwrap().clone();
    let find = |name: &str, key: &str, value: &str| spans.iter().any(|(n, a)| n == name && a.get(key).map(String::as_str) == Some(value));
    assert!(find("fluid.queue", "run_id", &run.id), "queue span of the run: {spans:?}");
    assert!(spans.iter().any(|(n, _)| n == "fluid.claim"), "a claim span");
    assert!(find("fluid.run", "run_id", &run.id), "execution span of the run");
    assert!(find("fluid.run", "state", "success"), "the run span records the final state");
    assert!(spans.iter().any(|(n, _)| n == "fluid.finish"), "a finish span");
    assert!(find("fluid.deliver", "plugin", "db"), "a delivery span of the db plugin");
    assert!(received.services.lock().unwrap().iter().any(|s| s == "fluid-test"));
}

#[tokio::test(flavor = "current_thread")]
async fn spans_are_disabled_without_an_otlp_endpoint() {
    let (layers, provider) = fluid_host::telemetry::layers(&config(None), std::io::sink).unwrap();
    assert!(provider.is_none());
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layers));
    // The same target and level as the host's run spans.
    let span = tracing::debug_span!(target: "fluid_host::scheduler::engine", "fluid.run", run_id = "x");
    assert!(span.is_disabled(), "run spans cost nothing when traces are off");
    let (layers, _provider) = fluid_host::telemetry::layers(&config(Some("http://127.0.0.1:9".into())), std::io::sink).unwrap();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layers));
    let span = tracing::debug_span!(target: "fluid_host::scheduler::engine", "fluid.run", run_id = "x");
    assert!(!span.is_disabled(), "with an endpoint the same span is recorded");
}
