//! Who may do what: API tokens made by the real `fluid token` command, checked by the
//! real HTTP server on every request, by role; refusals as `{"detail": ...}`; revocation
//! within seconds; every state-changing request audited; and a host that refuses to serve
//! an open API on an address others can reach.

mod common;

use common::*;
use fluid_host::Task;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// `fluid token ARGS` on the data folder `data`: status and stdout.
fn token(data: &Path, args: &[&str]) -> (bool, String) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_fluid-test-host")).arg("--data").arg(data).arg("token").args(args).output().expect("run fluid");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn create(data: &Path, role: &str) -> String {
    let (ok, out) = token(data, &["create", "--role", role, "--name", role]);
    assert!(ok && out.starts_with("fluid_"), "{out}");
    out
}

async fn send(h: &fluid_host::Host, method: reqwest::Method, path: &str, bearer: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut req = client().request(method, url(h, path));
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_decide_what_each_request_may_do_by_role() {
    let dir = TempDir::new();
    let mut c = config(dir.path());
    c.scheduler.consume = false;
    let h = start(c, vec![Task::new("ok").run(|_| async { Ok(()) })]).await;
    // No token yet, on loopback: open, as before.
    assert_eq!(send(&h, reqwest::Method::GET, "/tasks", None, None).await.0, 200);
    let (read, operate, admin) = (create(dir.path(), "read"), create(dir.path(), "operate"), create(dir.path(), "admin"));
    use reqwest::Method as M;
    let body = poll("tokens in force", WAIT, || async {
        let (status, body) = send(&h, M::GET, "/tasks", None, None).await;
        (status == 401).then_some(body)
    })
    .await;
    assert!(body["detail"].as_str().unwrap().contains("Authorization: Bearer"), "{body}");
    assert_eq!(send(&h, M::GET, "/tasks", Some("fluid_not-a-token"), None).await.0, 401);
    assert_eq!(send(&h, M::GET, "/tasks", Some(&read), None).await.0, 200);
    assert_eq!(send(&h, M::GET, "/metrics", None, None).await.0, 401, "metrics need a token unless left open");
    assert_eq!(client().get(url(&h, "/ui/")).send().await.unwrap().status().as_u16(), 200, "the dashboard's files are open");
    let (status, body) = send(&h, M::POST, "/tasks/ok", Some(&read), Some(json!({}))).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("operate is needed"), "{body}");
    let (status, run) = send(&h, M::POST, "/tasks/ok", Some(&operate), Some(json!({}))).await;
    assert!((200..300).contains(&status), "{status} {run}");
    let id = run["id"].as_str().unwrap();
    assert_eq!(send(&h, M::POST, &format!("/task-runs/{id}/cancel"), Some(&operate), None).await.0, 200, "operate cancels");
    assert_eq!(send(&h, M::DELETE, "/tasks-queue", Some(&operate), None).await.0, 403, "clearing the queue is admin's");
    assert_eq!(send(&h, M::DELETE, "/tasks-queue", Some(&admin), None).await.0, 200);
    let (status, body) = send(&h, M::POST, "/plugins/db/enable?skip_events=true", Some(&operate), None).await;
    assert_eq!(status, 403, "dropping a plugin's held events is admin's: {body}");
    // Revoked: refused within seconds, on every host.
    let (ok, list) = token(dir.path(), &["ls"]);
    let read_id = list.lines().find(|l| l.contains(" read ")).and_then(|l| l.split_whitespace().next()).unwrap().to_string();
    assert!(ok && !list.contains(&read[6..]), "the list never shows a token: {list}");
    assert!(token(dir.path(), &["revoke", &read_id]).0);
    poll("the revoked token to be refused", WAIT, || async {
        (send(&h, M::GET, "/tasks", Some(&read), None).await.0 == 401).then_some(())
    })
    .await;
    // Audited: who (by role), what, how it ended.
    let (_, metrics) = send(&h, M::GET, "/metrics", Some(&admin), None).await;
    let metrics = metrics.as_str().unwrap().to_string();
    for line in [
        r#"role="operate",method="POST",status="2"#,
        r#"role="read",method="POST",status="403""#,
        r#"role="admin",method="DELETE",status="200""#,
    ] {
        assert!(metrics.lines().any(|l| l.starts_with("fluid_http_audited_requests_total{") && l.contains(line)), "{line}: {metrics}");
    }
    // Revoking every token closes the API; it does not open it again.
    let (_, list) = token(dir.path(), &["ls"]);
    for id in list.lines().skip(1).filter(|l| !l.contains(" read ")).filter_map(|l| l.split_whitespace().next()) {
        assert!(token(dir.path(), &["revoke", id]).0, "{id}");
    }
    poll("the revoked admin token to be refused", WAIT, || async {
        (send(&h, M::GET, "/tasks", Some(&admin), None).await.0 == 401).then_some(())
    })
    .await;
    assert_eq!(send(&h, M::GET, "/tasks", None, None).await.0, 401, "no valid token left: still closed");
    h.shutdown(Duration::ZERO).await;
}

/// Without tokens, a loopback host answers only requests to a loopback address and from no
/// other site: a web page the operator visits cannot queue runs (a cross-site POST) nor
/// read the API through DNS rebinding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_no_other_site_can_drive_a_loopback_host() {
    let dir = TempDir::new();
    let mut c = config(dir.path());
    c.scheduler.consume = false;
    let h = start(c, vec![Task::new("ok").run(|_| async { Ok(()) })]).await;
    let post = |origin: Option<&'static str>, host: Option<&'static str>| {
        let mut req = client().post(url(&h, "/tasks/ok")).json(&json!({}));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        if let Some(hh) = host {
            req = req.header("host", hh);
        }
        req.send()
    };
    assert_eq!(post(None, None).await.unwrap().status().as_u16(), 201, "a local client");
    assert_eq!(post(Some("http://127.0.0.1:8080"), None).await.unwrap().status().as_u16(), 201, "the dashboard");
    let cross = post(Some("https://evil.example"), None).await.unwrap();
    assert_eq!(cross.status().as_u16(), 403);
    let body: Value = cross.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("loopback"), "{body}");
    assert_eq!(post(None, Some("evil.example:8080")).await.unwrap().status().as_u16(), 403, "DNS rebinding");
    h.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_others_can_reach_is_never_served_open_unless_told() {
    let dir = TempDir::new();
    let mut c = config(dir.path());
    c.bind = "0.0.0.0:0".parse().unwrap();
    let refused = fluid_host::Host::start(c.clone(), vec![]).await.err().expect("refused without tokens");
    assert!(format!("{refused:#}").contains("fluid token create"), "{refused:#}");
    c.insecure_no_auth = true;
    let h = start(c.clone(), vec![]).await;
    h.shutdown(Duration::ZERO).await;
    // With a token, it starts and wants it.
    let admin = create(dir.path(), "admin");
    c.insecure_no_auth = false;
    let h = start(c, vec![]).await;
    let port = h.addr.port();
    let plain = client().get(format!("http://127.0.0.1:{port}/tasks")).send().await.unwrap();
    assert_eq!(plain.status().as_u16(), 401);
    let with = client().get(format!("http://127.0.0.1:{port}/tasks")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(with.status().as_u16(), 200);
    h.shutdown(Duration::ZERO).await;
}

/// A plugin declares the role each of its routes needs (`route-roles`); the rest follow
/// their method. A declaration for a route it does not serve refuses the plugin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_routes_need_the_roles_their_plugin_declares() {
    use reqwest::Method as M;
    let dir = TempDir::new();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let built = fluid_host::plugins::bundled::guest_wasm_dir().join("fluid_test_guarded.wasm");
    std::fs::copy(&built, plugins.join("guarded.wasm")).unwrap();
    let (read, operate, admin) = (create(dir.path(), "read"), create(dir.path(), "operate"), create(dir.path(), "admin"));
    let mut c = config(dir.path());
    c.load_plugins = true;
    let h = start(c, vec![]).await;
    let at = |p: &str| format!("/plugins/guarded/routes{p}");
    let mut seen = vec![];
    for (method, path) in [(M::GET, "/open"), (M::POST, "/poke"), (M::GET, "/secret"), (M::POST, "/purge")] {
        let mut row = vec![];
        for token in [&read, &operate, &admin] {
            let body = (method == M::POST).then(|| json!({}));
            row.push(send(&h, method.clone(), &at(path), Some(token), body).await.0);
        }
        seen.push((path, row));
    }
    assert_eq!(
        seen,
        [("/open", vec![200, 200, 200]), ("/poke", vec![403, 200, 200]), ("/secret", vec![403, 200, 200]), ("/purge", vec![403, 403, 200])],
        "per route: what read, operate and admin tokens get"
    );
    let (status, body) = send(&h, M::GET, &at("/secret"), Some(&read), None).await;
    assert!(status == 403 && body["detail"].as_str().unwrap().contains("operate is needed"), "{body}");
    h.shutdown(Duration::ZERO).await;

    // A role for a route it does not serve: refused, and why.
    std::fs::write(dir.path().join("fluid.toml"), "[plugins.guarded]\nconfig = { stray = true }\n").unwrap();
    let mut c = config(dir.path());
    c.load_plugins = true;
    let h = start(c, vec![]).await;
    let info = send(&h, M::GET, "/plugins/guarded", Some(&admin), None).await.1;
    assert_eq!(info["state"], "failed", "{info}");
    assert!(info["error"].as_str().unwrap_or("").contains("a role for DELETE /nowhere, which register does not return"), "{info}");
    h.shutdown(Duration::ZERO).await;
}
