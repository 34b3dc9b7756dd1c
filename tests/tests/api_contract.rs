//! The API contract against a live `fluid-test-host serve` process (its own data folder,
//! the example tasks, the bundled db and stats plugins, an admin API token made with the
//! real `fluid token create`):
//!
//! - schemathesis (PyPI) fuzzes every operation of the host's own `/openapi.json` with
//!   every check it has (`--checks all`: no server error, every status, content type,
//!   header and body as documented, valid data accepted, invalid data refused, 405 for a
//!   method a path does not take, auth not ignored, ...), and must find nothing;
//! - aio-fluid 2.12.1's own pydantic models accept the answers of every route aio-fluid
//!   also has, called as an aio-fluid client calls them (`tests/api/aio_fluid_wire.py`).
//!
//! Both run from the virtualenv `tests/api/setup.sh` makes (part of the test command);
//! without it the tests fail and say so.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Examples per operation: enough to find what a wrong schema lets through, few enough for
/// CI on two cores (the whole run takes about a minute).
const MAX_EXAMPLES: &str = "40";

fn api_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("api")
}

/// A program of the virtualenv, or a failure that says how to make it.
fn venv_bin(name: &str) -> PathBuf {
    let bin = api_dir().join(".venv/bin").join(name);
    assert!(bin.exists(), "{} is missing: run tests/api/setup.sh (it installs schemathesis and aio-fluid)", bin.display());
    bin
}

/// A `fluid-test-host serve` process with an admin token, killed on drop.
struct LiveHost {
    child: Child,
    base: String,
    token: String,
    log: PathBuf,
}

impl LiveHost {
    async fn start(dir: &Path) -> LiveHost {
        let out = Command::new(env!("CARGO_BIN_EXE_fluid-test-host"))
            .arg("--data")
            .arg(dir)
            .args(["token", "create", "--role", "admin", "--name", "api-contract"])
            .output()
            .expect("run fluid token create");
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success() && token.starts_with("fluid_"),
            "fluid token create: {token} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = dir.join("host.log");
        let child = Command::new(env!("CARGO_BIN_EXE_fluid-test-host"))
            .arg("--data")
            .arg(dir)
            .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--grace", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn fluid-test-host");
        let mut host = LiveHost { child, base: format!("http://127.0.0.1:{port}"), token, log };
        // Serving, with the db plugin's routes in place (they are part of the document).
        poll("the host to serve with the db plugin active", Duration::from_secs(60), || {
            if let Some(status) = host.child.try_wait().unwrap() {
                panic!("host exited with {status} before serving:\n{}", std::fs::read_to_string(&host.log).unwrap_or_default());
            }
            let req = client().get(format!("{}/plugins/db", host.base)).bearer_auth(&host.token).send();
            async move {
                let body: Value = req.await.ok()?.json().await.ok()?;
                (body["state"] == "active").then_some(())
            }
        })
        .await;
        host
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn get(&self, path: &str) -> Value {
        let r = client().get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    /// Runs `program args` to its end; panics with its output (and the host's log) unless
    /// it succeeds.
    fn run(&self, what: &str, cmd: &mut Command) -> String {
        let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: {e}"));
        let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{what} failed ({}):\n{text}\n--- host log (tail) ---\n{}", out.status, tail(&self.logs(), 60));
        text
    }
}

impl Drop for LiveHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_against_the_openapi_document() {
    let st = venv_bin("schemathesis");
    let dir = TempDir::new();
    let host = LiveHost::start(dir.path()).await;
    let doc = host.get("/openapi.json").await;
    // What the document must hold for the fuzzing to cover it all.
    for path in ["/tasks", "/tasks/add", "/tasks/ping", "/tasks-status", "/task-runs/{id}", "/plugins", "/task-history", "/stats"] {
        assert!(doc["paths"][path].is_object(), "{path} is not in /openapi.json");
    }
    let schema = dir.path().join("openapi.json");
    std::fs::write(&schema, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let out = host.run(
        "schemathesis",
        Command::new(st)
            .current_dir(api_dir())
            // What a history cursor looks like (tests/api/hooks.py).
            .env("SCHEMATHESIS_HOOKS", api_dir().join("hooks.py"))
            .arg("run")
            .arg(&schema)
            .args(["--url", &host.base])
            .args(["--header", &format!("Authorization: Bearer {}", host.token)])
            .args(["--checks", "all", "--max-examples", MAX_EXAMPLES, "--workers", "2", "--seed", "1"])
            .args(["--request-timeout", "10", "--no-color", "--generation-database", "none"])
            .args(["--report", "junit", "--report-dir"])
            .arg(dir.path().join("report")),
    );
    println!("{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aio_fluid_models_accept_the_answers_of_its_routes() {
    let python = venv_bin("python");
    let dir = TempDir::new();
    let host = LiveHost::start(dir.path()).await;
    let out = host
        .run("tests/api/aio_fluid_wire.py", Command::new(python).arg(api_dir().join("aio_fluid_wire.py")).arg(&host.base).arg(&host.token));
    assert!(out.contains("aio-fluid's models accept every answer"), "{out}");
    println!("{out}");
}
