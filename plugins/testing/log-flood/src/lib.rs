//! `call("flood", {"lines": n, "bytes": m})` writes n log lines of m bytes each as fast as
//! it can; the host must cut and rate-limit them and stay responsive.

use fluid_guest::{CallError, Plugin, Registration, log};
use serde_json::{Value, json};

struct Flood;

impl Plugin for Flood {
    fn register(_config: Value) -> Result<Registration, String> {
        Ok(Registration::new("log_flood", "0.1.0"))
    }

    fn call(method: &str, args: Value) -> Result<Value, CallError> {
        if method != "flood" {
            return Err(CallError::UnknownMethod(method.into()));
        }
        let lines = args.get("lines").and_then(Value::as_u64).unwrap_or(100_000);
        let line = "z".repeat(args.get("bytes").and_then(Value::as_u64).unwrap_or(100) as usize);
        for _ in 0..lines {
            log::error(&line);
        }
        Ok(json!(lines))
    }
}

fluid_guest::export_plugin!(Flood);
