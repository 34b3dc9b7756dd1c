//! Panics in `register` (a trap): the host must refuse it with the reason and go on.

use fluid_guest::{Plugin, Registration};
use serde_json::Value;

struct Panic;

impl Plugin for Panic {
    fn register(_config: Value) -> Result<Registration, String> {
        panic!("register_panic panics on purpose");
    }
}

fluid_guest::export_plugin!(Panic);
