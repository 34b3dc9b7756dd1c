//! The db plugin's history types: what `get_history` takes and returns, and what
//! `GET /task-history` serves. One definition for the host (native tasks, through the
//! `fluid-history` crate, which includes this file) and the guests (the db plugin itself,
//! plugins and task components), so they cannot drift apart; it lives in the SDK so the
//! SDK's package holds everything it needs.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The seed's `HistoryQuery`: every field optional, all given filters ANDed; values of one
/// list filter are ORed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HistoryQuery {
    /// Task names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task: Vec<String>,
    /// States (`success`, `failure`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priority: Vec<String>,
    /// Runs queued at or after this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Runs queued at or before this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Runs whose params contain this JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    /// Runs of tasks having at least one of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Page size: 250 by default, at most 500.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// One stored run.
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

/// A page of history; `cursor` is "" on the last page.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskRunHistoryPage {
    pub data: Vec<TaskRunHistory>,
    pub cursor: String,
}
