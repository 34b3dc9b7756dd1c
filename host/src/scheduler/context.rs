//! What a running task can reach: its run, its params, cancellation, child runs with
//! lineage, and plugins through `get_plugin` (aio-fluid's `get_db_plugin(ctx.task_manager)`).

use super::engine::{QueueError, QueueOptions, Scheduler};
use super::task::TaskError;
use crate::types::TaskRun;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Why a call to another plugin did not return a result. Mirrors the WIT `call-error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[serde(tag = "kind", content = "message", rename_all = "kebab-case")]
pub enum PluginCallError {
    /// No plugin of that name is loaded on this host (the payload is the name).
    #[error("no plugin named {0:?} is loaded")]
    NoSuchPlugin(String),
    /// The plugin is loaded but does not answer that method.
    #[error("unknown method: {0}")]
    UnknownMethod(String),
    /// The arguments were rejected: not serialisable, or refused by the plugin.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The plugin understood the call but what it was asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The plugin returned an error, or a result the caller could not deserialise.
    #[error("plugin failed: {0}")]
    Failed(String),
    /// The plugin is quarantined, still loading, trapped or timed out.
    #[error("plugin unavailable: {0}")]
    Unavailable(String),
}

/// The future a [`PluginDirectory::call`] returns: the plugin's JSON result text, or why
/// there is none. Boxed so the trait stays object safe.
pub type CallFuture<'a> = Pin<Box<dyn Future<Output = Result<String, PluginCallError>> + Send + 'a>>;

/// The plugin side as the scheduler sees it. Implemented by the component runtime; the
/// scheduler itself knows nothing of WebAssembly.
pub trait PluginDirectory: Send + Sync {
    /// Whether a plugin of that name is loaded.
    fn has_plugin(&self, name: &str) -> bool;
    /// Calls `method` on the plugin's exported `call` with JSON arguments.
    fn call<'a>(&'a self, plugin: &'a str, method: &'a str, args_json: String) -> CallFuture<'a>;
}

/// A plugin as a task holds it: `ctx.get_plugin("db")`.
#[derive(Clone)]
pub struct PluginHandle {
    name: String,
    directory: Arc<dyn PluginDirectory>,
}

impl PluginHandle {
    /// The plugin's name, as passed to `get_plugin`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Raw call: JSON text in, JSON text out.
    pub async fn call_json(&self, method: &str, args_json: String) -> Result<String, PluginCallError> {
        self.directory.call(&self.name, method, args_json).await
    }

    /// Typed call: serialises `args`, deserialises the result.
    pub async fn call<A: serde::Serialize, R: DeserializeOwned>(&self, method: &str, args: &A) -> Result<R, PluginCallError> {
        let args = serde_json::to_string(args).map_err(|e| PluginCallError::InvalidInput(e.to_string()))?;
        let out = self.call_json(method, args).await?;
        serde_json::from_str(&out).map_err(|e| PluginCallError::Failed(format!("bad result from {}.{method}: {e}", self.name)))
    }
}

/// The context a task runs with.
#[derive(Clone)]
pub struct TaskContext {
    /// The run being executed, as claimed: its id, task, params, attempt and lineage.
    pub run: TaskRun,
    pub(crate) scheduler: Scheduler,
    pub(crate) cancel: CancellationToken,
}

impl TaskContext {
    /// The context of `run` on `scheduler`, for calling a task's body outside the
    /// scheduler ([`Task::call`](super::Task::call)); nothing cancels it.
    pub fn new(run: TaskRun, scheduler: Scheduler) -> TaskContext {
        TaskContext { run, scheduler, cancel: CancellationToken::new() }
    }

    /// The id of the run being executed.
    pub fn id(&self) -> &str {
        &self.run.id
    }

    /// The run's params as `P`.
    pub fn params<P: DeserializeOwned>(&self) -> Result<P, TaskError> {
        serde_json::from_value(self.run.params.clone()).map_err(|e| TaskError::Failed(format!("bad params: {e}")))
    }

    /// The run's params as raw JSON, for tasks that read them without a typed struct.
    pub fn params_json(&self) -> &Value {
        &self.run.params
    }

    /// Builds the error that ends this run as `aborted` (`return Err(ctx.abort("why"))`).
    pub fn abort(&self, reason: impl Into<String>) -> TaskError {
        TaskError::Aborted(reason.into())
    }

    /// Resolves when the run is cancelled or the host shuts down; long tasks can select on it.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// Whether the run has been cancelled or the host is shutting down; for polling
    /// between steps where [`cancelled`](Self::cancelled) cannot be awaited.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Queues a child run; its `from_run_id` is this run and its `root_run_id` this run's root.
    pub async fn queue(&self, task: &str, params: Value) -> Result<TaskRun, QueueError> {
        self.scheduler.queue(task, params, QueueOptions { parent: Some(self.run.clone()), ..Default::default() }).await
    }

    /// A loaded plugin by name (aio-fluid: `get_db_plugin(context.task_manager)`).
    pub fn get_plugin(&self, name: &str) -> Option<PluginHandle> {
        self.scheduler.get_plugin(name)
    }

    /// The scheduler running this task, for what the context has no shortcut for
    /// (queueing with options, looking up other runs).
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }
}

impl Scheduler {
    /// A loaded plugin by name, if the plugin runtime is attached and has it.
    pub fn get_plugin(&self, name: &str) -> Option<PluginHandle> {
        let directory = self.plugin_directory()?;
        directory.has_plugin(name).then(|| PluginHandle { name: name.to_string(), directory })
    }
}
