//! A task run: its states, the rules between them, and its priority.
//!
//! The state machine follows aio-fluid (reference section 4) with two deliberate changes:
//! a run that never executes (cancelled, disabled, rate-limited at the door) goes straight
//! from `queued` to its final state instead of passing through a fake `running`, and a
//! retry moves the same run from `failure` (or `interrupted`, after a lost host) back to
//! `queued`. `init` exists only before a run is stored; it is never an event.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The eight states of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Made, not yet stored (never an event).
    Init,
    /// Waiting in the queue.
    Queued,
    /// Claimed by a host and executing.
    Running,
    /// Ended well.
    Success,
    /// Ended with an error or a timeout (a retry policy may queue it again).
    Failure,
    /// Cancelled, disabled, or given up on by its task: never retried.
    Aborted,
    /// Refused at the task's concurrency limit.
    RateLimited,
    /// Its host was lost or shut down while it ran (a retry policy may queue it again).
    Interrupted,
}

impl TaskState {
    /// Every state, in order.
    pub const ALL: [TaskState; 8] = [
        TaskState::Init,
        TaskState::Queued,
        TaskState::Running,
        TaskState::Success,
        TaskState::Failure,
        TaskState::Aborted,
        TaskState::RateLimited,
        TaskState::Interrupted,
    ];

    /// Its name, as the API and the database write it.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Init => "init",
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Success => "success",
            TaskState::Failure => "failure",
            TaskState::Aborted => "aborted",
            TaskState::RateLimited => "rate_limited",
            TaskState::Interrupted => "interrupted",
        }
    }

    /// The state of that name.
    pub fn parse(s: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Finished states: nothing happens to the run unless a retry re-queues it.
    pub fn is_done(self) -> bool {
        matches!(self, TaskState::Success | TaskState::Failure | TaskState::Aborted | TaskState::RateLimited | TaskState::Interrupted)
    }

    /// Whether `self -> to` is allowed. Setting the same state again is not a transition;
    /// callers treat it as a no-op.
    pub fn can_become(self, to: TaskState) -> bool {
        use TaskState::*;
        matches!(
            (self, to),
            (Init, Queued)
                | (Queued, Running | Aborted | RateLimited)
                | (Running, Success | Failure | Aborted | RateLimited | Interrupted)
                | (Failure | Interrupted, Queued)
        )
    }

    /// Checks a transition, with the error aio-fluid users know.
    pub fn transition(self, to: TaskState) -> Result<TaskState, InvalidTransition> {
        if self == to || self.can_become(to) { Ok(to) } else { Err(InvalidTransition { from: self, to }) }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A move the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid state transition {from} -> {to}")]
pub struct InvalidTransition {
    /// The state the run was in.
    pub from: TaskState,
    /// The state asked for.
    pub to: TaskState,
}

/// Queue priority: every queued `high` run starts before any `medium` one, and so on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord, Default)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Before any other.
    High,
    /// The default.
    #[default]
    Medium,
    /// After any other.
    Low,
}

impl Priority {
    /// Every priority, highest first.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Medium, Priority::Low];

    /// Sort key in the queue: lower starts first.
    pub fn rank(self) -> i64 {
        self as i64
    }

    /// The priority of a sort key (`rank`).
    pub fn from_rank(rank: i64) -> Priority {
        match rank {
            0 => Priority::High,
            2 => Priority::Low,
            _ => Priority::Medium,
        }
    }

    /// Its name, as the API and aio-fluid write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Low => "low",
        }
    }

    /// The priority of that name.
    pub fn parse(s: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Largest params of a run, as JSON text, however it is queued (HTTP, a plugin, a task,
/// a child run): every run enters the change feed, and every plugin must be able to take
/// it within its default `max_args_kib`.
pub const MAX_PARAMS_BYTES: usize = 1 << 20;

/// Most JSON values in a run's params (every value, nested ones included): a run's params
/// are held parsed while it is reserved and running, where a value takes tens
/// of bytes however short its text.
pub const MAX_PARAMS_VALUES: usize = 65_536;

/// What bounds a run's params besides their size, in one walk: how many values they hold
/// (themselves included), the bytes of their strings and keys, and whether one holds a NUL
/// character.
#[derive(Debug, Default, Clone, Copy)]
pub struct ParamsShape {
    /// JSON values, nested ones and the params themselves included.
    pub values: usize,
    /// Bytes of every string and key.
    pub string_bytes: usize,
    /// Whether a string or key holds a NUL character.
    pub nul: bool,
}

impl ParamsShape {
    /// The shape of `value` (nesting is bounded by the JSON parser's depth limit).
    pub fn of(value: &serde_json::Value) -> ParamsShape {
        let mut shape = ParamsShape::default();
        shape.walk(value, (usize::MAX, usize::MAX));
        shape
    }

    /// Whether `value` holds at most `values` values and `string_bytes` bytes of strings
    /// and keys; the walk stops past either, so its cost is bounded by them whatever the
    /// params hold.
    pub fn within(value: &serde_json::Value, values: usize, string_bytes: usize) -> bool {
        ParamsShape::default().walk(value, (values, string_bytes))
    }

    /// Counts `value` in; false, and stops, once the counts pass `max` (values, bytes).
    fn walk(&mut self, value: &serde_json::Value, max: (usize, usize)) -> bool {
        use serde_json::Value;
        self.values += 1;
        let within = |s: &ParamsShape| s.values <= max.0 && s.string_bytes <= max.1;
        match value {
            Value::String(s) => self.text(s),
            Value::Array(items) => return within(self) && items.iter().all(|v| self.walk(v, max)),
            Value::Object(map) => {
                return within(self)
                    && map.iter().all(|(k, v)| {
                        self.text(k);
                        self.walk(v, max)
                    });
            }
            _ => {}
        }
        within(self)
    }

    fn text(&mut self, s: &str) {
        self.string_bytes += s.len();
        self.nul |= s.contains('\0');
    }
}

/// Longest error message kept on a run; a longer one is cut (the run's events carry it to
/// every plugin, so its size must not be the task's choice).
pub const MAX_ERROR_BYTES: usize = 4096;

/// A run's error as it is stored: at most [`MAX_ERROR_BYTES`], and no NUL character
/// (PostgreSQL's text refuses one, so the end holding it could never be recorded).
pub fn error_text(text: String) -> String {
    let text = cut_text(text, MAX_ERROR_BYTES);
    if !text.contains('\0') {
        return text;
    }
    cut_text(text.replace('\0', "\u{FFFD}"), MAX_ERROR_BYTES)
}

/// `text` cut to at most `max` bytes on a character boundary, marked as cut.
pub fn cut_text(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    // The marker names at most the whole text's length, so it never outgrows its room.
    let marker_len = format!("… [{} B cut]", text.len()).len();
    let mut end = max.saturating_sub(marker_len);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let dropped = text.len() - end;
    text.truncate(end);
    text.push_str(&format!("… [{dropped} B cut]"));
    text
}

#[cfg(test)]
mod cut_tests {
    use super::cut_text;

    #[test]
    fn an_error_text_is_bounded_and_holds_no_nul() {
        assert_eq!(super::error_text("plain".into()), "plain");
        assert_eq!(super::error_text("a\0b".into()), "a\u{FFFD}b");
        let long = super::error_text("\0".repeat(1 << 20));
        assert!(long.len() <= super::MAX_ERROR_BYTES && !long.contains('\0'), "{}", long.len());
    }

    #[test]
    fn cut_texts_fit_their_bound_and_say_so() {
        assert_eq!(cut_text("short".into(), 10), "short");
        for len in [4097, 10_000, 8 << 20] {
            let cut = cut_text("é".repeat(len / 2 + 1), 4096);
            assert!(cut.len() <= 4096 && cut.ends_with(" B cut]"), "{}", cut.len());
        }
    }
}

/// One run of a task, as stored and as every plugin sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRun {
    /// 32 lowercase hex characters (a uuid without dashes), as in aio-fluid. A v7 uuid:
    /// its first 48 bits are the creation time, so new ids sort after older ones.
    pub id: String,
    /// The task's name.
    pub task: String,
    /// The task's tags when this snapshot was taken.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Its place in the queue.
    pub priority: Priority,
    /// Where it stands.
    pub state: TaskState,
    /// The validated params, a JSON object.
    pub params: serde_json::Value,
    /// When it was (last) queued.
    #[serde(default, with = "crate::time::rfc3339")]
    pub queued: Option<DateTime<Utc>>,
    /// When it started running; none if it never ran.
    #[serde(default, with = "crate::time::rfc3339")]
    pub start: Option<DateTime<Utc>>,
    /// When it reached a finished state.
    #[serde(default, with = "crate::time::rfc3339")]
    pub end: Option<DateTime<Utc>>,
    /// Not claimed before this time (retry and rate-limit back-off).
    #[serde(default, with = "crate::time::rfc3339")]
    pub execute_after: Option<DateTime<Utc>>,
    /// Retries so far (0 on the first attempt).
    pub retry_attempt: u32,
    /// Times it was put back at its task's concurrency limit.
    pub rate_limit_attempt: u32,
    /// The run that queued this one, or "".
    pub from_run_id: String,
    /// The first run of the chain, or "".
    pub root_run_id: String,
    /// Why the run failed, aborted or was interrupted.
    pub error: Option<String>,
}

impl TaskRun {
    /// Time-ordered (v7), not random (v4) as in aio-fluid: every index keyed by run id
    /// (the queue's primary key, a history plugin's) then takes new rows at its right
    /// edge, so a commit dirties a few pages instead of one per row. An id tells when it
    /// was made, to the millisecond, and is not a secret: nothing relies on ids being
    /// unguessable (their end, not their start, tells apart runs made together).
    pub fn new_id() -> String {
        uuid::Uuid::now_v7().simple().to_string()
    }

    /// A run `id` of `task`, queued at `at` and due then: medium priority, params `{}`, a
    /// first attempt with no lineage. For code that writes runs to the store itself (the
    /// scheduler builds its runs from the task's options instead).
    pub fn queued(id: String, task: impl Into<String>, at: DateTime<Utc>) -> TaskRun {
        TaskRun {
            id,
            task: task.into(),
            tags: vec![],
            priority: Priority::Medium,
            state: TaskState::Queued,
            params: serde_json::json!({}),
            queued: Some(at),
            start: None,
            end: None,
            execute_after: Some(at),
            retry_attempt: 0,
            rate_limit_attempt: 0,
            from_run_id: String::new(),
            root_run_id: String::new(),
            error: None,
        }
    }

    /// Run time, when it has both a start and an end.
    pub fn duration(&self) -> Option<chrono::Duration> {
        Some(self.end? - self.start?)
    }
}

#[cfg(test)]
mod tests {
    use super::TaskState::*;
    use super::*;

    #[test]
    fn within_counts_values_and_string_bytes_and_stops_past_either() {
        let params = serde_json::json!({"ab": ["xyz", 1, {"c": null}]});
        // Values: the object, the array, "xyz", 1, the inner object, null: 6. Strings and
        // keys: "ab", "xyz", "c": 6 bytes.
        let shape = ParamsShape::of(&params);
        assert_eq!((shape.values, shape.string_bytes), (6, 6));
        assert!(ParamsShape::within(&params, 6, 6));
        assert!(!ParamsShape::within(&params, 5, 6));
        assert!(!ParamsShape::within(&params, 6, 5));
        let many = serde_json::Value::Array(vec![serde_json::Value::Null; 100_000]);
        assert!(!ParamsShape::within(&many, 1000, usize::MAX));
        assert!(ParamsShape::within(&many, 100_001, 0));
    }

    #[test]
    fn only_documented_transitions_are_allowed() {
        let allowed = [
            (Init, Queued),
            (Queued, Running),
            (Queued, Aborted),
            (Queued, RateLimited),
            (Running, Success),
            (Running, Failure),
            (Running, Aborted),
            (Running, RateLimited),
            (Running, Interrupted),
            (Failure, Queued),
            (Interrupted, Queued),
        ];
        for from in TaskState::ALL {
            for to in TaskState::ALL {
                let expected = allowed.contains(&(from, to));
                assert_eq!(from.can_become(to), expected, "{from} -> {to}");
                let checked = from.transition(to);
                assert_eq!(checked.is_ok(), expected || from == to, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn queued_cannot_be_interrupted_or_succeed_without_running() {
        assert_eq!(Queued.transition(Interrupted).unwrap_err().to_string(), "invalid state transition queued -> interrupted");
        assert!(Queued.transition(Success).is_err());
        assert!(Success.transition(Queued).is_err());
    }

    #[test]
    fn states_and_priorities_round_trip_through_text() {
        for s in TaskState::ALL {
            assert_eq!(TaskState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for p in Priority::ALL {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
            assert_eq!(Priority::from_rank(p.rank()), p);
        }
        assert!(Priority::High.rank() < Priority::Medium.rank());
        assert!(Priority::Medium.rank() < Priority::Low.rank());
    }
}
