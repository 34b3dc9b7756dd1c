//! Routes with the roles they need: `GET /open` and `POST /poke` take the defaults (read,
//! operate), `GET /secret` needs operate and `POST /purge` admin. With config
//! `{"stray": true}` it also declares a role for a route it does not serve, which the
//! host refuses.

use fluid_guest::route_roles::Role;
use fluid_guest::{CallError, Plugin, Registration};
use serde_json::{Value, json};

struct Guarded;

impl Plugin for Guarded {
    fn register(config: Value) -> Result<Registration, String> {
        if config.get("stray").and_then(Value::as_bool) == Some(true) {
            fluid_guest::route_roles::require("DELETE", "/nowhere", Role::Admin);
        }
        Ok(Registration::new("guarded", "0.1.0")
            .route("GET", "/open", "open")
            .route("POST", "/poke", "poke")
            .route_with_role("GET", "/secret", "secret", Role::Operate)
            .route_with_role("POST", "/purge", "purge", Role::Admin))
    }

    fn call(method: &str, _args: Value) -> Result<Value, CallError> {
        match method {
            "open" | "poke" | "secret" | "purge" => Ok(json!({ "did": method })),
            other => Err(CallError::UnknownMethod(other.into())),
        }
    }
}

fluid_guest::export_plugin!(Guarded);
