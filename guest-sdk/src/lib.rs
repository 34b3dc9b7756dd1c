//! Write a fluid plugin in Rust.
//!
//! A plugin is a type implementing [`Plugin`] (every hook but `register` defaults to a
//! no-op) and one [`export_plugin!`] line. Build it for `wasm32-wasip2` and drop the
//! `.wasm` into the host's plugins folder.
//!
//! ```ignore
//! use fluid_guest::{Plugin, Registration, Event, subscribe_all};
//!
//! struct Hello;
//! impl Plugin for Hello {
//!     fn register(_config: serde_json::Value) -> Result<Registration, String> {
//!         Ok(Registration::new("hello", "0.1.0").subscribe(&[fluid_guest::TaskState::Success], "hello"))
//!     }
//!     fn on_events(events: Vec<Event>) -> Result<(), String> {
//!         for e in events { fluid_guest::log::info(&format!("{} succeeded", e.run.task)); }
//!         Ok(())
//!     }
//! }
//! fluid_guest::export_plugin!(Hello);
//! ```
//!
//! A task component (the `task` world) is a type implementing [`TaskComponent`] and one
//! [`export_task!`] line; see [`task`].

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "fluid_guest::bindings",
    });
}

/// The `task` world, sharing `types` and `host` with the plugin world so the history
/// helpers and `host` work the same in both.
#[doc(hidden)]
pub mod task_bindings {
    wit_bindgen::generate!({
        world: "task",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_task_world",
        default_bindings_module: "fluid_guest::task_bindings",
        with: {
            "fluid:scheduler/types@0.1.1": crate::bindings::fluid::scheduler::types,
            "fluid:scheduler/host@0.1.1": crate::bindings::fluid::scheduler::host,
        },
    });
}

pub mod history;
mod history_types;
pub mod log;
pub mod task;

pub use bindings::exports::fluid::scheduler::task_manager_plugin::{Event, Registration, Route, Subscription};
pub use bindings::fluid::scheduler::host;
/// Who may call a plugin's routes: `Registration::route_with_role`, or `require` itself.
pub use bindings::fluid::scheduler::route_roles;
pub use bindings::fluid::scheduler::storage;
pub use bindings::fluid::scheduler::types::{CallError, TaskPriority, TaskRun, TaskState};
pub use history::{DbPlugin, HistoryQuery, TaskRunHistory, TaskRunHistoryPage, get_db_plugin};
pub use task::{RetryPolicy, RunContext, TaskComponent, TaskDef, TaskError};

use serde_json::Value;

/// A plugin. Implement `register`; the other hooks default to doing nothing.
pub trait Plugin: 'static {
    /// Called once per instance with the operator's config for this plugin (`{}` when
    /// none). Return the name, version, subscriptions and routes.
    fn register(config: Value) -> Result<Registration, String>;

    /// Subscribed state changes, in commit order, at least once: be idempotent.
    fn on_events(events: Vec<Event>) -> Result<(), String> {
        let _ = events;
        Ok(())
    }

    /// A method called by a task, another plugin or an HTTP route.
    fn call(method: &str, args: Value) -> Result<Value, CallError> {
        let _ = args;
        Err(CallError::UnknownMethod(method.to_string()))
    }
}

impl Registration {
    pub fn new(name: &str, version: &str) -> Registration {
        Registration { name: name.into(), version: version.into(), subscriptions: vec![], routes: vec![] }
    }

    /// Subscribes `tag` to runs entering each of `states`.
    pub fn subscribe(mut self, states: &[TaskState], tag: &str) -> Registration {
        for &state in states {
            self.subscriptions.push(Subscription { state, tag: tag.into() });
        }
        self
    }

    /// Serves `method path` (path may hold `{name}` segments) with `call(handler, ...)`.
    pub fn route(mut self, method: &str, path: &str, handler: &str) -> Registration {
        self.routes.push(Route { method: method.into(), path: path.into(), handler: handler.into() });
        self
    }

    /// `route`, and requests to it need `role` once the host's API wants tokens (without
    /// this, GET routes need `read` and others `operate`). Call it while building the
    /// registration `register` returns: the host records it during `register` only.
    pub fn route_with_role(self, method: &str, path: &str, handler: &str, role: route_roles::Role) -> Registration {
        route_roles::require(method, path, role);
        self.route(method, path, handler)
    }
}

/// Every state a run can be seen in (all but `init`, which is never an event).
pub const ALL_EVENT_STATES: [TaskState; 7] = [
    TaskState::Queued,
    TaskState::Running,
    TaskState::Success,
    TaskState::Failure,
    TaskState::Aborted,
    TaskState::RateLimited,
    TaskState::Interrupted,
];

impl TaskState {
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

    pub fn parse(s: &str) -> Option<TaskState> {
        [TaskState::Init].into_iter().chain(ALL_EVENT_STATES).find(|st| st.as_str() == s)
    }
}

impl TaskPriority {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskPriority::High => "high",
            TaskPriority::Medium => "medium",
            TaskPriority::Low => "low",
        }
    }

    pub fn parse(s: &str) -> Option<TaskPriority> {
        [TaskPriority::High, TaskPriority::Medium, TaskPriority::Low].into_iter().find(|p| p.as_str() == s)
    }
}

/// The args of a routed HTTP request: `{"path": {...}, "query": [[k, v], ...], "body": ...}`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct HttpArgs {
    #[serde(default)]
    pub path: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub query: Vec<(String, String)>,
    #[serde(default)]
    pub body: Value,
}

impl HttpArgs {
    /// Every value of a repeatable query key.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.query.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()
    }

    /// The last value of a query key.
    pub fn one(&self, key: &str) -> Option<String> {
        self.query.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }
}

#[doc(hidden)]
pub fn __register<P: Plugin>(config_json: String) -> Result<Registration, String> {
    let config: Value = serde_json::from_str(&config_json).map_err(|e| format!("config is not JSON: {e}"))?;
    P::register(config)
}

#[doc(hidden)]
pub fn __call<P: Plugin>(method: String, args_json: String) -> Result<String, CallError> {
    let args: Value = if args_json.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&args_json).map_err(|e| CallError::InvalidInput(format!("arguments are not JSON: {e}")))?
    };
    let out = P::call(&method, args)?;
    Ok(out.to_string())
}

/// Exports a [`Plugin`] implementation as the component's `task-manager-plugin`.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        pub struct __FluidPluginExport;
        impl $crate::bindings::exports::fluid::scheduler::task_manager_plugin::Guest for __FluidPluginExport {
            fn register(config_json: String) -> Result<$crate::Registration, String> {
                $crate::__register::<$plugin>(config_json)
            }
            fn on_events(events: Vec<$crate::Event>) -> Result<(), String> {
                <$plugin as $crate::Plugin>::on_events(events)
            }
            fn call(method: String, args_json: String) -> Result<String, $crate::CallError> {
                $crate::__call::<$plugin>(method, args_json)
            }
        }
        $crate::bindings::__export_plugin_world!(__FluidPluginExport);
    };
}
