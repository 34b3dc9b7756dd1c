//! `call("connect", {"addr": "ip:port"})` opens a TCP connection and writes a line;
//! `call("lookup", {"host"})` resolves a name. Each answers `{"ok": ...}` or `{"error": ...}`.

use fluid_guest::{CallError, Plugin, Registration};
use serde_json::{Value, json};
use std::io::Write;
use std::net::ToSocketAddrs;

struct Net;

impl Plugin for Net {
    fn register(_config: Value) -> Result<Registration, String> {
        Ok(Registration::new("net_connect", "0.1.0"))
    }

    fn call(method: &str, args: Value) -> Result<Value, CallError> {
        let arg = |k: &str| args.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        match method {
            "connect" => Ok(match std::net::TcpStream::connect(arg("addr")).and_then(|mut s| s.write_all(b"hello from a plugin\n")) {
                Ok(()) => json!({ "ok": "connected" }),
                Err(e) => json!({ "error": e.to_string() }),
            }),
            "lookup" => Ok(match (arg("host").as_str(), 80).to_socket_addrs() {
                Ok(addrs) => json!({ "ok": addrs.map(|a| a.to_string()).collect::<Vec<_>>() }),
                Err(e) => json!({ "error": e.to_string() }),
            }),
            other => Err(CallError::UnknownMethod(other.into())),
        }
    }
}

fluid_guest::export_plugin!(Net);
