//! `call("huge", {"kib": n})` returns a JSON string of n KiB, far over the result limit the
//! test grants; `call("size")` answers with the size of the arguments it got.

use fluid_guest::{CallError, Plugin, Registration};
use serde_json::{Value, json};

struct Huge;

impl Plugin for Huge {
    fn register(_config: Value) -> Result<Registration, String> {
        Ok(Registration::new("huge_result", "0.1.0"))
    }

    fn call(method: &str, args: Value) -> Result<Value, CallError> {
        match method {
            "huge" => {
                let kib = args.get("kib").and_then(Value::as_u64).unwrap_or(1024) as usize;
                Ok(json!("x".repeat(kib * 1024)))
            }
            "size" => Ok(json!(args.to_string().len())),
            other => Err(CallError::UnknownMethod(other.into())),
        }
    }
}

fluid_guest::export_plugin!(Huge);
