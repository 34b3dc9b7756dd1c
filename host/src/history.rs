//! The db plugin's history types and a typed handle for native tasks: aio-fluid's
//! `get_db_plugin(context.task_manager)` is [`get_db_plugin`]`(&ctx)`.
//!
//! ```no_run
//! # async fn report(ctx: fluid_host::TaskContext) -> Result<(), fluid_host::TaskError> {
//! use fluid_host::history::{get_db_plugin, HistoryQuery};
//! let db = get_db_plugin(&ctx).ok_or_else(|| fluid_host::TaskError::failed("no db plugin"))?;
//! let page = db.get_history(&HistoryQuery { task: vec!["my-task".into()], limit: Some(10), ..Default::default() }).await
//!     .map_err(fluid_host::TaskError::failed)?;
//! for run in page.data { tracing::info!(id = %run.id, state = %run.state); }
//! # Ok(()) }
//! ```

use crate::scheduler::{PluginCallError, PluginHandle, TaskContext};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The seed's `HistoryQuery` (same fields as the guest SDK's).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HistoryQuery {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priority: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskRunHistory {
    pub id: String,
    pub task: String,
    pub priority: String,
    pub state: String,
    pub queued: String,
    pub start: Option<String>,
    pub end: Option<String>,
    pub params: Value,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub retry_attempt: u32,
    #[serde(default)]
    pub rate_limit_attempt: u32,
    #[serde(default)]
    pub from_run_id: String,
    #[serde(default)]
    pub root_run_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskRunHistoryPage {
    pub data: Vec<TaskRunHistory>,
    pub cursor: String,
}

/// Typed handle to the db plugin.
pub struct DbPlugin(PluginHandle);

/// The db plugin, when loaded.
pub fn get_db_plugin(ctx: &TaskContext) -> Option<DbPlugin> {
    ctx.get_plugin("db").map(DbPlugin)
}

impl DbPlugin {
    pub fn new(handle: PluginHandle) -> DbPlugin {
        DbPlugin(handle)
    }

    pub async fn get_history(&self, q: &HistoryQuery) -> Result<TaskRunHistoryPage, PluginCallError> {
        self.0.call("get_history", q).await
    }

    pub async fn get_run(&self, id: &str) -> Result<TaskRunHistory, PluginCallError> {
        self.0.call("get_run", &serde_json::json!({ "id": id })).await
    }
}
