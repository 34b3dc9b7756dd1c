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
pub use fluid_history::{HistoryQuery, TaskRunHistory, TaskRunHistoryPage};

/// Typed handle to the bundled db plugin, which keeps the run history in its own tables
/// (fed by the change feed) and answers queries on it.
pub struct DbPlugin(PluginHandle);

/// The db plugin, when loaded.
pub fn get_db_plugin(ctx: &TaskContext) -> Option<DbPlugin> {
    ctx.get_plugin("db").map(DbPlugin)
}

impl DbPlugin {
    /// Wraps a handle to a plugin that speaks the db plugin's methods (normally
    /// `get_plugin("db")`; [`get_db_plugin`] does both).
    pub fn new(handle: PluginHandle) -> DbPlugin {
        DbPlugin(handle)
    }

    /// One page of run history matching `q`, newest first, with what the next page needs.
    pub async fn get_history(&self, q: &HistoryQuery) -> Result<TaskRunHistoryPage, PluginCallError> {
        self.0.call("get_history", q).await
    }

    /// One run as the history holds it; a [`PluginCallError::NotFound`] when it has none.
    pub async fn get_run(&self, id: &str) -> Result<TaskRunHistory, PluginCallError> {
        self.0.call("get_run", &serde_json::json!({ "id": id })).await
    }
}
