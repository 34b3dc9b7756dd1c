//! Task definitions: what aio-fluid's `@task` decorator declares, as a builder.
//!
//! ```no_run
//! use fluid_host::{Task, TaskContext, TaskError, Schedule};
//! use std::time::Duration;
//!
//! #[derive(serde::Deserialize, serde::Serialize)]
//! struct Add { a: i64, b: i64 }
//!
//! let add = Task::new("add")
//!     .description("Adds two numbers")
//!     .params::<Add>()
//!     .run(|ctx: TaskContext| async move {
//!         let p: Add = ctx.params()?;
//!         tracing::info!(sum = p.a + p.b);
//!         Ok(())
//!     });
//! let ping = Task::new("ping")
//!     .schedule(Schedule::every(Duration::from_secs(5)))
//!     .run(|_ctx| async { Ok::<(), TaskError>(()) });
//! ```

use super::context::TaskContext;
use super::schedule::Schedule;
use crate::types::{Priority, RetryPolicy};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// How a run ends other than by success.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TaskError {
    /// An error: the run ends in `failure` and the retry policy may re-queue it.
    #[error("{0}")]
    Failed(String),
    /// The task gave up on purpose: `aborted`, never retried.
    #[error("aborted: {0}")]
    Aborted(String),
}

impl TaskError {
    /// A [`Failed`](TaskError::Failed) error from anything displayable:
    /// `.map_err(TaskError::failed)?`.
    pub fn failed(msg: impl std::fmt::Display) -> TaskError {
        TaskError::Failed(msg.to_string())
    }
}

impl From<anyhow::Error> for TaskError {
    fn from(e: anyhow::Error) -> Self {
        TaskError::Failed(format!("{e:#}"))
    }
}

impl From<serde_json::Error> for TaskError {
    fn from(e: serde_json::Error) -> Self {
        TaskError::Failed(e.to_string())
    }
}

/// What a task's body returns: a boxed future of its outcome, `Ok` for success.
pub type TaskFuture = Pin<Box<dyn Future<Output = Result<(), TaskError>> + Send>>;
/// A task's body, boxed: called once per run with the run's context. [`TaskBuilder::run`]
/// builds one from a closure; [`TaskBuilder::executor`] takes one ready-made (what task
/// components use).
pub type Executor = Arc<dyn Fn(TaskContext) -> TaskFuture + Send + Sync>;
/// Turns the JSON a caller sent into the params stored with the run, or says why not.
pub type ParamsValidator = Arc<dyn Fn(Value) -> Result<Value, String> + Send + Sync>;

/// Workers of one host that the runs of a group of tasks may hold at once. The tasks of one
/// untrusted component share one, so its runs (which may each wait up to their timeout)
/// can never take every worker from the rest of the queue: past it, its runs stay queued
/// and runs of other tasks are claimed ahead of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerShare {
    /// The group's name: tasks with the same name share the cap.
    pub group: String,
    /// At most this many; 0 is half of the host's workers (at least one).
    pub max: u32,
}

impl WorkerShare {
    /// The cap on a host with `workers` workers.
    pub fn cap(&self, workers: usize) -> usize {
        if self.max == 0 { workers.div_ceil(2).max(1) } else { self.max as usize }
    }
}

/// A task: a name, its options and the code that runs it.
#[derive(Clone)]
pub struct Task {
    /// Unique name the task is queued by: 1 to 64 letters, digits, `-`, `_` or `.`.
    pub name: String,
    /// Free text shown by `GET /tasks`, the CLI and the dashboard.
    pub description: String,
    /// When the host queues runs of the task by itself, if ever.
    pub schedule: Option<Schedule>,
    /// Default priority of its runs; a caller may set another when queueing.
    pub priority: Priority,
    /// How long one run may execute before it ends as `failure` (then it may be retried).
    pub timeout: Duration,
    /// In-flight runs allowed at once across all hosts; 0 means no limit.
    pub max_concurrency: u32,
    /// How a run that ends in `failure` or `interrupted` is queued again; None: never.
    pub retry: Option<RetryPolicy>,
    /// How a run refused at [`max_concurrency`](Self::max_concurrency) waits and tries
    /// again (it stays queued, with a later due time); None: it ends as `rate_limited`.
    pub rate_limit_retry: Option<RetryPolicy>,
    /// Labels copied onto each run, for filtering tasks and runs in the API and CLI.
    pub tags: BTreeSet<String>,
    /// JSON schema of the params, when known (shown in /tasks and the OpenAPI document).
    pub params_schema: Option<Value>,
    /// Where the task comes from: `native` or the component file that defines it.
    pub module: String,
    /// The tasks whose runs share a cap on this host's workers (a task component's), if any.
    pub workers: Option<WorkerShare>,
    pub(crate) validate: ParamsValidator,
    /// The params schema, compiled, when the host checks it before `validate` (a native
    /// task's); a component's validator checks its own.
    pub(crate) schema_check: Option<Arc<jsonschema::Validator>>,
    pub(crate) executor: Executor,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task").field("name", &self.name).field("schedule", &self.schedule).finish_non_exhaustive()
    }
}

impl Task {
    /// Runs the task's body once with `ctx`, outside the scheduler: no timeout, no retry,
    /// nothing recorded. What a measurement of the body alone needs.
    pub fn call(&self, ctx: TaskContext) -> TaskFuture {
        (self.executor)(ctx)
    }

    /// Starts a task definition. The default options are aio-fluid's: medium priority,
    /// 60 s timeout, no concurrency limit, no retry, no schedule, params any JSON object.
    // A builder on purpose: `Task::new("x").retry(..).run(f)` reads as the definition.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(name: impl Into<String>) -> TaskBuilder {
        TaskBuilder {
            task: Task {
                name: name.into(),
                description: String::new(),
                schedule: None,
                priority: Priority::Medium,
                timeout: Duration::from_secs(60),
                max_concurrency: 0,
                retry: None,
                rate_limit_retry: None,
                tags: BTreeSet::new(),
                params_schema: None,
                module: "native".into(),
                workers: None,
                validate: Arc::new(any_object),
                schema_check: None,
                executor: Arc::new(|_| Box::pin(async { Ok(()) })),
            },
        }
    }

    /// Validates and normalises params for a new run of this task.
    pub fn validate_params(&self, params: Value) -> Result<Value, String> {
        if let Some(schema) = &self.schema_check {
            let empty = Value::Object(Default::default());
            if let Err(e) = schema.validate(if params.is_null() { &empty } else { &params }) {
                let at = e.instance_path().to_string();
                return Err(if at.is_empty() { e.to_string() } else { format!("{at}: {e}") });
            }
        }
        (self.validate)(params)
    }

    /// Checks the options themselves (a name, a positive timeout).
    pub fn check(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.len() > 64 {
            return Err("a task name must have 1 to 64 characters".into());
        }
        if !self.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(format!("task name {:?} may only use letters, digits, '-', '_' and '.'", self.name));
        }
        if self.timeout.is_zero() {
            return Err(format!("task {}: timeout must be positive", self.name));
        }
        // Its schedule queues runs with no params: they must be accepted, or every due
        // time would fail to queue.
        if self.schedule.is_some()
            && let Err(e) = self.validate_params(Value::Null)
        {
            return Err(format!(
                "task {}: it has a schedule, which queues runs with no params, but its params refuse none: {e}",
                self.name
            ));
        }
        Ok(())
    }
}

/// Params of a task without a params type: `null` becomes `{}`, any object is kept.
pub(crate) fn any_object(v: Value) -> Result<Value, String> {
    match v {
        Value::Null => Ok(Value::Object(Default::default())),
        Value::Object(_) => Ok(v),
        other => Err(format!("params must be a JSON object, got {}", json_kind(&other))),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A task being defined, from [`Task::new`]: set options, then finish with
/// [`run`](Self::run) (or [`executor`](Self::executor)), which returns the [`Task`].
pub struct TaskBuilder {
    task: Task,
}

impl TaskBuilder {
    /// Sets the description shown in the API, the CLI and the dashboard.
    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.task.description = d.into();
        self
    }
    /// Makes the host queue a run (with no params) at each due time of `s`.
    pub fn schedule(mut self, s: Schedule) -> Self {
        self.task.schedule = Some(s);
        self
    }
    /// Sets the default priority of its runs.
    pub fn priority(mut self, p: Priority) -> Self {
        self.task.priority = p;
        self
    }
    /// Sets how long one run may execute; it must be positive.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.task.timeout = t;
        self
    }
    /// Limits the runs in flight at once across all hosts (0: no limit). Past it a run is
    /// rate limited: see [`rate_limit_retry`](Self::rate_limit_retry).
    pub fn max_concurrency(mut self, n: u32) -> Self {
        self.task.max_concurrency = n;
        self
    }
    /// Puts the task in a group whose runs hold at most `max` of a host's workers at once
    /// (0: half of them).
    pub fn worker_share(mut self, group: impl Into<String>, max: u32) -> Self {
        self.task.workers = Some(WorkerShare { group: group.into(), max });
        self
    }
    /// Queues a run that failed or was interrupted again, as `r` allows.
    pub fn retry(mut self, r: RetryPolicy) -> Self {
        self.task.retry = Some(r);
        self
    }
    /// Keeps a run refused at the concurrency limit queued and retries its claim later, as
    /// `r` allows, instead of ending it as `rate_limited`.
    pub fn rate_limit_retry(mut self, r: RetryPolicy) -> Self {
        self.task.rate_limit_retry = Some(r);
        self
    }
    /// Adds one tag.
    pub fn tag(mut self, t: impl Into<String>) -> Self {
        self.task.tags.insert(t.into());
        self
    }
    /// Adds several tags.
    pub fn tags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Self {
        self.task.tags.extend(tags.into_iter().map(Into::into));
        self
    }
    /// Says where the task comes from (default `native`); task components set their file.
    pub fn module(mut self, m: impl Into<String>) -> Self {
        self.task.module = m.into();
        self
    }
    /// Declares the params' JSON Schema: shown by `GET /tasks` and `/openapi.json`, and
    /// checked when a run is queued, before the typed check of [`params`](Self::params).
    /// A native task's schema is part of the program: one that does not compile is a bug.
    pub fn params_schema(mut self, schema: Value) -> Self {
        let compiled = jsonschema::options()
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .build(&schema)
            .unwrap_or_else(|e| panic!("task {}: its params schema is not a usable JSON Schema: {e}", self.task.name));
        self.task.schema_check = Some(Arc::new(compiled));
        self.task.params_schema = Some(schema);
        self
    }

    /// Shows `schema` as the params schema without checking it here: the validator set
    /// with [`validator`](Self::validator) checks it (a task component's, compiled within
    /// the sandbox's bounds).
    pub fn params_schema_of_validator(mut self, schema: Value) -> Self {
        self.task.params_schema = Some(schema);
        self
    }

    /// Types the params: a run is only queued when its JSON deserialises into `P`
    /// (missing fields take their serde defaults; `null` is read as `{}`; a number with no
    /// fraction, `2.0`, is an integer, as JSON Schema counts it). What is stored
    /// is `P` serialised again, so defaults are visible in the history.
    pub fn params<P: DeserializeOwned + Serialize + 'static>(mut self) -> Self {
        self.task.validate = Arc::new(|v: Value| {
            let v = if v.is_null() { Value::Object(Default::default()) } else { integral(v) };
            let typed: P = serde_json::from_value(v).map_err(|e| e.to_string())?;
            serde_json::to_value(typed).map_err(|e| e.to_string())
        });
        self
    }

    /// Sets a custom params validator (used by task components with a JSON schema).
    pub fn validator(mut self, v: ParamsValidator) -> Self {
        self.task.validate = v;
        self
    }

    /// The code of the task; finishes the definition.
    pub fn run<F, Fut>(mut self, f: F) -> Task
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
    {
        self.task.executor = Arc::new(move |ctx| Box::pin(f(ctx)));
        self.task
    }

    /// Finishes with an already boxed executor.
    pub fn executor(mut self, e: Executor) -> Task {
        self.task.executor = e;
        self.task
    }
}

/// `v` with every number that has no fraction and fits an `i64` written as an integer:
/// JSON Schema's `integer` admits `2.0`, and serde would refuse it for an integer field.
fn integral(v: Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            // Strictly inside: a literal past either end rounds to the end itself.
            Some(f) if f.fract() == 0.0 && f > i64::MIN as f64 && f < i64::MAX as f64 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(integral).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, integral(v))).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // aio-fluid tests/scheduler/test_retry.py: fixed, exponential and capped delays.
    #[test]
    fn typed_params_are_validated_and_normalised() {
        #[derive(serde::Deserialize, serde::Serialize)]
        struct P {
            a: i64,
            #[serde(default)]
            b: i64,
        }
        let t = Task::new("t").params::<P>().run(|_| async { Ok(()) });
        assert_eq!(t.validate_params(serde_json::json!({"a": 1})).unwrap(), serde_json::json!({"a": 1, "b": 0}));
        assert!(t.validate_params(serde_json::json!({"a": "x"})).unwrap_err().contains("invalid type"));
        assert_eq!(t.validate_params(serde_json::json!({"a": 2.0})).unwrap(), serde_json::json!({"a": 2, "b": 0}), "2.0 is an integer");
        assert!(t.validate_params(serde_json::json!({"a": 2.5})).is_err());
        assert!(t.validate_params(Value::Null).unwrap_err().contains("missing field"));
        let untyped = Task::new("u").run(|_| async { Ok(()) });
        assert_eq!(untyped.validate_params(Value::Null).unwrap(), serde_json::json!({}));
        assert!(untyped.validate_params(serde_json::json!([1])).is_err());
    }

    #[test]
    fn a_schedule_needs_params_that_accept_none() {
        #[derive(serde::Deserialize, serde::Serialize)]
        struct Needs {
            a: i64,
        }
        #[derive(serde::Deserialize, serde::Serialize, Default)]
        struct Optional {
            #[serde(default)]
            a: i64,
        }
        let every = Schedule::every(Duration::from_secs(5));
        let t = Task::new("t").schedule(every.clone()).params::<Needs>().run(|_| async { Ok(()) });
        assert!(t.check().unwrap_err().contains("has a schedule"), "a due time could never be queued");
        assert!(Task::new("t").schedule(every).params::<Optional>().run(|_| async { Ok(()) }).check().is_ok());
        assert!(Task::new("t").params::<Needs>().run(|_| async { Ok(()) }).check().is_ok(), "no schedule, no constraint");
    }

    #[test]
    fn task_options_are_checked() {
        assert!(Task::new("ok-name_1").run(|_| async { Ok(()) }).check().is_ok());
        assert!(Task::new("").run(|_| async { Ok(()) }).check().is_err());
        assert!(Task::new("has space").run(|_| async { Ok(()) }).check().is_err());
        assert!(Task::new("t").timeout(Duration::ZERO).run(|_| async { Ok(()) }).check().is_err());
    }
}
