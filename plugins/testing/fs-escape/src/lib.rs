//! Tries the host's files: `call("read", {"path"})`, `call("write", {"path", "text"})` and
//! `call("list", {"path"})` answer `{"ok": ...}` or `{"error": ...}` (what the guest saw).

use fluid_guest::{CallError, Plugin, Registration};
use serde_json::{Value, json};

struct Fs;

fn outcome<T: Into<Value>>(r: std::io::Result<T>) -> Value {
    match r {
        Ok(v) => json!({ "ok": v.into() }),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

impl Plugin for Fs {
    fn register(_config: Value) -> Result<Registration, String> {
        Ok(Registration::new("fs_escape", "0.1.0"))
    }

    fn call(method: &str, args: Value) -> Result<Value, CallError> {
        let path = args.get("path").and_then(Value::as_str).unwrap_or("/etc/passwd").to_string();
        match method {
            "read" => Ok(outcome(std::fs::read_to_string(&path))),
            "write" => {
                let text = args.get("text").and_then(Value::as_str).unwrap_or("");
                Ok(outcome(std::fs::write(&path, text).map(|_| Value::Null)))
            }
            "list" => Ok(outcome(
                std::fs::read_dir(&path)
                    .map(|d| d.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned())).collect::<Vec<_>>()),
            )),
            other => Err(CallError::UnknownMethod(other.into())),
        }
    }
}

fluid_guest::export_plugin!(Fs);
