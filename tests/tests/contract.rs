//! The versioned contract: components built against the first released version,
//! `fluid:scheduler@0.1.0`, load and run in this host as committed; a component built
//! against a version this host does not speak is refused, naming the versions it speaks.

mod common;

use common::*;
use fluid_host::plugins::inspect::check_file;
use serde_json::json;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/contract-0.1.0").join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_of_the_first_released_contract_load_and_run() {
    let dir = TempDir::new();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for f in ["compat_plugin.wasm", "compat_tasks.wasm"] {
        std::fs::copy(fixture(f), plugins.join(f)).unwrap();
    }
    let mut c = config(dir.path());
    c.load_plugins = true;
    let h = start(c, vec![]).await;
    let (_, list) = get_json(&h, "/plugins").await;
    let world = |name: &str| list.as_array().unwrap().iter().find(|p| p["name"] == name).map(|p| p["world"].clone());
    assert_eq!(world("compat_plugin"), Some(json!("fluid:scheduler/plugin@0.1.0")), "{list}");
    assert_eq!(world("compat_tasks"), Some(json!("fluid:scheduler/task@0.1.0")), "{list}");

    // Its params schema holds; its run queues a child through the 0.1.0 `host` import.
    let refused = client().post(url(&h, "/tasks/compat_tasks.parent")).json(&json!({})).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 422);
    let parent = queue(&h.scheduler, "compat_tasks.parent", json!({ "n": 7 })).await;
    assert_eq!(wait_done(&h.scheduler, &parent.id).await.state, fluid_host::TaskState::Success);
    let child = poll("the child run", WAIT, || async {
        let events = h.scheduler.store().events_after(0, 100_000, usize::MAX).await.ok()?;
        events.into_iter().map(|e| e.run).find(|r| r.task == "compat_tasks.child" && r.from_run_id == parent.id)
    })
    .await;
    assert_eq!(wait_done(&h.scheduler, &child.id).await.state, fluid_host::TaskState::Success);

    // The 0.1.0 plugin saw both successes through its subscription, stored them through
    // the 0.1.0 `storage` import, and answers on its route; it finds the db plugin.
    caught_up(&h, "compat_plugin").await;
    let (status, body) = get_json(&h, "/plugins/compat_plugin/routes/seen").await;
    let mut tasks: Vec<String> = serde_json::from_value(body["tasks"].clone()).unwrap_or_default();
    tasks.sort();
    assert_eq!(
        (status, tasks, body["db"].clone()),
        (200, vec!["compat_tasks.child".into(), "compat_tasks.parent".into()], json!(true)),
        "{body}"
    );
    h.shutdown(std::time::Duration::ZERO).await;
}

/// The fixture with every `@0.1.0` of its names rewritten to `version` (same length, so
/// the binary stays well formed), as if built against that version.
fn rebuilt_as(dir: &Path, version: &str) -> PathBuf {
    assert_eq!(version.len(), 5);
    let mut bytes = std::fs::read(fixture("compat_plugin.wasm")).unwrap();
    let (from, to) = (b"@0.1.0", format!("@{version}"));
    let mut i = 0;
    while let Some(at) = bytes[i..].windows(from.len()).position(|w| w == from) {
        bytes[i + at..i + at + from.len()].copy_from_slice(to.as_bytes());
        i += at + from.len();
    }
    let path = dir.join("compat_plugin.wasm");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_of_a_version_this_host_does_not_speak_is_refused_naming_those_it_speaks() {
    let dir = TempDir::new();
    for (version, newer) in [("0.1.9", true), ("0.2.0", true), ("0.0.1", false)] {
        let path = rebuilt_as(dir.path(), version);
        let why = check_file(&path, None).unwrap().unwrap_err();
        assert!(why.contains(&format!("built against fluid:scheduler@{version}")), "{why}");
        assert!(why.contains("this host speaks fluid:scheduler 0.1.0, 0.1.1"), "{why}");
        assert_eq!(why.contains("a newer contract needs a newer fluid"), newer, "{why}");
    }
    // In a host: refused with that reason in /plugins, the other plugins unharmed.
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("plugins")).unwrap();
    let path = rebuilt_as(&data.join("plugins"), "0.2.0");
    assert!(path.is_file());
    let mut c = config(&data);
    c.load_plugins = true;
    let h = start(c, vec![]).await;
    let info = plugin_info(&h, "compat_plugin").await;
    assert_eq!(info["state"], "failed", "{info}");
    assert!(info["error"].as_str().unwrap_or("").contains("this host speaks fluid:scheduler 0.1.0, 0.1.1"), "{info}");
    assert_eq!(plugin_info(&h, "db").await["state"], "active");
    h.shutdown(std::time::Duration::ZERO).await;
}
