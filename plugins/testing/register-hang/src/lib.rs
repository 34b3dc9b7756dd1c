//! Never returns from `register`: the host's time limit must refuse it, and the start of
//! the host must not wait for it.

use fluid_guest::{Plugin, Registration};
use serde_json::Value;

struct Hang;

impl Plugin for Hang {
    fn register(_config: Value) -> Result<Registration, String> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

fluid_guest::export_plugin!(Hang);
