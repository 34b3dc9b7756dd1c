//! Traps on every delivery (a panic is a trap in wasm). `call("ping")` still answers, so
//! a test can see that a fresh instance follows each trap.

use fluid_guest::{ALL_EVENT_STATES, CallError, Event, Plugin, Registration};
use serde_json::{Value, json};

struct Trap;

impl Plugin for Trap {
    fn register(_config: Value) -> Result<Registration, String> {
        Ok(Registration::new("trap_events", "0.1.0").subscribe(&ALL_EVENT_STATES, "trap"))
    }

    fn on_events(events: Vec<Event>) -> Result<(), String> {
        panic!("trap_events refuses {} events", events.len());
    }

    fn call(method: &str, _args: Value) -> Result<Value, CallError> {
        match method {
            "ping" => Ok(json!("pong")),
            other => Err(CallError::UnknownMethod(other.into())),
        }
    }
}

fluid_guest::export_plugin!(Trap);
