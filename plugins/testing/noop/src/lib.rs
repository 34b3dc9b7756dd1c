//! Subscribes to every state and does nothing with the events: the baseline of delivery
//! cost. Its registered name is `config.name` (default `noop`), so many copies can be
//! loaded at once (`n01.wasm` with `n01.json` = `{"name": "n01"}`). `call("ping")` answers
//! `"pong"`: the cost of one call through the host.

use fluid_guest::{ALL_EVENT_STATES, CallError, Event, Plugin, Registration};
use serde_json::{Value, json};

struct Noop;

impl Plugin for Noop {
    fn register(config: Value) -> Result<Registration, String> {
        let name = config.get("name").and_then(Value::as_str).unwrap_or("noop");
        Ok(Registration::new(name, "0.1.0").subscribe(&ALL_EVENT_STATES, "noop"))
    }

    fn on_events(events: Vec<Event>) -> Result<(), String> {
        std::hint::black_box(events);
        Ok(())
    }

    fn call(method: &str, _args: Value) -> Result<Value, CallError> {
        match method {
            "ping" => Ok(json!("pong")),
            other => Err(CallError::UnknownMethod(other.into())),
        }
    }
}

fluid_guest::export_plugin!(Noop);
