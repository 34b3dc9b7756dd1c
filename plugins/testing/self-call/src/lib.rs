//! `call("recurse")` calls itself through `get-plugin("self_call")`: the host must refuse
//! the re-entry with `unavailable` (a value), not deadlock. It answers with what it got.

use fluid_guest::host::get_plugin;
use fluid_guest::{CallError, Plugin, Registration};
use serde_json::{Value, json};

struct SelfCall;

impl Plugin for SelfCall {
    fn register(_config: Value) -> Result<Registration, String> {
        Ok(Registration::new("self_call", "0.1.0"))
    }

    fn call(method: &str, _args: Value) -> Result<Value, CallError> {
        match method {
            "recurse" => {
                let me = get_plugin("self_call").ok_or_else(|| CallError::Failed("cannot find myself".into()))?;
                Ok(match me.call("recurse", "{}") {
                    Ok(v) => json!({ "ok": v }),
                    Err(e) => json!({ "error": format!("{e:?}") }),
                })
            }
            other => Err(CallError::UnknownMethod(other.into())),
        }
    }
}

fluid_guest::export_plugin!(SelfCall);
