//! The db plugin's history types and a typed handle to it, for plugins and task
//! components: `get_db_plugin()?.get_history(&HistoryQuery { task: vec!["my-task".into()],
//! limit: Some(10), ..Default::default() })`.

use crate::CallError;
use crate::host::{Plugin as PluginRef, get_plugin};
use serde::Deserialize;
use serde_json::Value;

pub use crate::history_types::{HistoryQuery, TaskRunHistory, TaskRunHistoryPage};

/// A typed handle to the db plugin.
pub struct DbPlugin(PluginRef);

/// The db plugin, when loaded (aio-fluid's `get_db_plugin(task_manager)`).
pub fn get_db_plugin() -> Option<DbPlugin> {
    get_plugin("db").map(DbPlugin)
}

impl DbPlugin {
    pub fn get_history(&self, q: &HistoryQuery) -> Result<TaskRunHistoryPage, CallError> {
        self.typed("get_history", &serde_json::to_value(q).unwrap_or_default())
    }

    pub fn get_run(&self, id: &str) -> Result<TaskRunHistory, CallError> {
        self.typed("get_run", &serde_json::json!({ "id": id }))
    }

    fn typed<R: for<'de> Deserialize<'de>>(&self, method: &str, args: &Value) -> Result<R, CallError> {
        let out = self.0.call(method, &args.to_string())?;
        serde_json::from_str(&out).map_err(|e| CallError::Failed(format!("bad reply from db.{method}: {e}")))
    }
}
