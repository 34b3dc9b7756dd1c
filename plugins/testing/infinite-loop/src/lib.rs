//! `call("spin")` never returns: the host's time limit must stop it, and the next call
//! must get a fresh instance.

use fluid_guest::{CallError, Plugin, Registration};
use serde_json::{Value, json};

struct Spin;

impl Plugin for Spin {
    fn register(_config: Value) -> Result<Registration, String> {
        Ok(Registration::new("infinite_loop", "0.1.0"))
    }

    fn call(method: &str, _args: Value) -> Result<Value, CallError> {
        match method {
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "ping" => Ok(json!("pong")),
            other => Err(CallError::UnknownMethod(other.into())),
        }
    }
}

fluid_guest::export_plugin!(Spin);
