//! `call("recurse")` recurses without end, each frame holding a buffer: the wasm stack
//! (or the shadow stack in linear memory) runs out and the instance traps.

use fluid_guest::{CallError, Plugin, Registration};
use serde_json::{Value, json};

struct Deep;

#[inline(never)]
fn down(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    let frame = std::hint::black_box([depth as u8; 256]);
    down(depth + 1).wrapping_add(frame[(depth % 256) as usize] as u64)
}

impl Plugin for Deep {
    fn register(_config: Value) -> Result<Registration, String> {
        Ok(Registration::new("deep_recursion", "0.1.0"))
    }

    fn call(method: &str, _args: Value) -> Result<Value, CallError> {
        match method {
            "recurse" => Ok(json!(down(0))),
            "ping" => Ok(json!("pong")),
            other => Err(CallError::UnknownMethod(other.into())),
        }
    }
}

fluid_guest::export_plugin!(Deep);
