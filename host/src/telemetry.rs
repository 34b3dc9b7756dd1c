//! Logs and traces: one `tracing` subscriber for the whole process.
//!
//! Logs go to stderr (plain or JSON) through an `EnvFilter` (`--log`, default `info`).
//!
//! Traces are off by default. The scheduler and the plugin runtime open `debug` level spans
//! for a run's life (`fluid.queue`, `fluid.claim`, `fluid.run` around one execution and the
//! recording of its end, `fluid.finish` for a batch of ends) and for plugin work
//! (`fluid.deliver` for one batch of change-feed events, `fluid.plugin_call`). Each span
//! carries the run id (or plugin and feed positions), so a trace backend can show a run's
//! whole life. With the default filter these spans are disabled at their call site, which
//! costs one relaxed atomic load each (`fluid bench --only observe` measures it).
//!
//! With `--otlp-endpoint URL` (or `OTEL_EXPORTER_OTLP_ENDPOINT`) the spans are exported by
//! OpenTelemetry over OTLP/HTTP (protobuf) to `URL/v1/traces`, batched on a background
//! thread, so a slow or absent collector never blocks a run: spans it cannot take are
//! dropped and counted by the exporter, not queued without end.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStyle {
    /// Human-readable lines, one per event.
    Plain,
    /// One JSON object per line, for log collectors.
    Json,
}

/// What the process logs and where its traces go.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// `EnvFilter` directives for logs, e.g. `info` or `fluid_host=debug`.
    pub log: String,
    /// The format of log lines.
    pub style: LogStyle,
    /// OTLP/HTTP collector base URL (`http://127.0.0.1:4318`); None: traces off.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

/// One layer of the process's subscriber (logs, or the trace exporter).
pub type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Keeps the trace exporter alive; [`Telemetry::shutdown`] flushes what is batched.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still batched and stops the exporter.
    pub fn shutdown(&self) {
        if let Some(p) = &self.provider
            && let Err(e) = p.shutdown()
        {
            eprintln!("fluid: flushing traces failed: {e}");
        }
    }
}

/// The OTLP traces URL for a collector base URL.
fn traces_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1/traces") { base.to_string() } else { format!("{base}/v1/traces") }
}

/// Builds the subscriber's layers; also used by the benchmark to compare set-ups in one
/// process. Returns the layers and the trace provider (when traces are on).
pub fn layers(
    config: &TelemetryConfig,
    writer: impl for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
) -> anyhow::Result<(Vec<BoxedLayer>, Option<SdkTracerProvider>)> {
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    let mut layers: Vec<BoxedLayer> = vec![match config.style {
        LogStyle::Json => fmt.json().with_filter(filter).boxed(),
        LogStyle::Plain => fmt.with_filter(filter).boxed(),
    }];
    let mut provider = None;
    if let Some(endpoint) = &config.otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(traces_url(endpoint))
            .build()?;
        let p = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name(config.service_name.clone()).build())
            .build();
        let tracer = p.tracer("fluid");
        // Only fluid's own spans and events: not every dependency's debug output.
        let targets = Targets::new().with_target("fluid_host", Level::DEBUG);
        layers.push(tracing_opentelemetry::layer().with_tracer(tracer).with_filter(targets).boxed());
        provider = Some(p);
    }
    Ok((layers, provider))
}

/// Installs the process-wide subscriber. A second call keeps the first subscriber.
pub fn init(config: &TelemetryConfig) -> anyhow::Result<Telemetry> {
    let (layers, provider) = layers(config, std::io::stderr)?;
    let _ = tracing_subscriber::registry().with(layers).try_init();
    if let Some(endpoint) = &config.otlp_endpoint {
        tracing::info!(endpoint = %traces_url(endpoint), "exporting traces over OTLP/HTTP");
    }
    Ok(Telemetry { provider })
}
