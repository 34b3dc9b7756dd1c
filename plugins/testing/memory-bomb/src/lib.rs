//! `call("bomb")` keeps every MiB it allocates: linear memory grows until the host's
//! memory cap refuses, and the instance traps.

use fluid_guest::{CallError, Plugin, Registration};
use serde_json::{Value, json};

struct Bomb;

impl Plugin for Bomb {
    fn register(_config: Value) -> Result<Registration, String> {
        Ok(Registration::new("memory_bomb", "0.1.0"))
    }

    fn call(method: &str, _args: Value) -> Result<Value, CallError> {
        match method {
            "bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
            }
            "ping" => Ok(json!("pong")),
            other => Err(CallError::UnknownMethod(other.into())),
        }
    }
}

fluid_guest::export_plugin!(Bomb);
