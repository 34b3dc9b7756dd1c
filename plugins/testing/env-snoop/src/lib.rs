//! `call("env")` returns every environment variable the guest can see.

use fluid_guest::{CallError, Plugin, Registration};
use serde_json::{Value, json};

struct Env;

impl Plugin for Env {
    fn register(_config: Value) -> Result<Registration, String> {
        Ok(Registration::new("env_snoop", "0.1.0"))
    }

    fn call(method: &str, _args: Value) -> Result<Value, CallError> {
        match method {
            "env" => Ok(json!(std::env::vars().collect::<std::collections::BTreeMap<String, String>>())),
            other => Err(CallError::UnknownMethod(other.into())),
        }
    }
}

fluid_guest::export_plugin!(Env);
