//! Writing a component outside this repository, as a third-party author does: `fluid new`
//! into a temporary folder, the documented build command, `fluid plugins check`, then the
//! file dropped into a running host, where its subscription fires, its route answers and
//! its tasks run.

mod common;

use common::*;
use fluid_host::Task;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The real `fluid` binary: exit status and stdout.
fn fluid(data: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fluid-test-host")).arg("--data").arg(data).args(args).output().expect("run fluid");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// The toolchain this repository pins (whose `wasm32-wasip2` target the set-up adds): a
/// project outside it would otherwise build with whatever rustup's default is.
fn toolchain() -> String {
    let pinned = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../rust-toolchain.toml")).unwrap();
    let line = pinned.lines().find(|l| l.trim_start().starts_with("channel")).expect("a channel");
    line.split('"').nth(1).unwrap().to_string()
}

/// `fluid new KIND NAME` in `dir`, then `cargo build --release` in the project as its
/// README says; the built component.
fn new_and_build(dir: &Path, kind: &str, name: &str) -> PathBuf {
    let (ok, out) = fluid(dir, &["new", kind, name, "--lang", "rust", "--dir", dir.to_str().unwrap()]);
    assert!(ok, "{out}");
    let project = dir.join(name);
    // Kept across runs (the build of the SDK's dependencies is most of the time).
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("authoring-target");
    let build = Command::new("cargo")
        .args(["build", "--release"])
        .current_dir(&project)
        .env("RUSTUP_TOOLCHAIN", toolchain())
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo");
    assert!(build.status.success(), "{}", String::from_utf8_lossy(&build.stderr));
    let built = target.join(format!("wasm32-wasip2/release/{name}.wasm"));
    assert!(built.is_file(), "{}", built.display());
    built
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_plugin_and_task_made_by_fluid_new_build_outside_the_repository_check_and_run() {
    let dir = TempDir::new();
    assert!(!dir.path().starts_with(Path::new(env!("CARGO_MANIFEST_DIR")).join("..")), "outside the repository");
    let plugin = new_and_build(dir.path(), "plugin", "hello");
    let task = new_and_build(dir.path(), "task", "jobs");
    assert!(std::fs::metadata(&plugin).unwrap().len() < 400 << 10, "the size-saving profile applies");
    for built in [&plugin, &task] {
        let (ok, out) = fluid(dir.path(), &["plugins", "check", built.to_str().unwrap()]);
        assert!(ok && out.contains(": loads: "), "{out}");
    }
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("plugins")).unwrap();
    std::fs::copy(&plugin, data.join("plugins/hello.wasm")).unwrap();
    std::fs::copy(&task, data.join("plugins/jobs.wasm")).unwrap();
    let mut c = config(&data);
    c.load_plugins = true;
    let h = start(c, vec![Task::new("ok").run(|_| async { Ok(()) })]).await;
    // The plugin: its subscription fires, its storage keeps the count, its route answers.
    let run = queue(&h.scheduler, "ok", json!({})).await;
    wait_done(&h.scheduler, &run.id).await;
    caught_up(&h, "hello").await;
    let (status, body) = get_json(&h, "/plugins/hello/routes/counts").await;
    assert_eq!((status, body["counts"]["ok"]["success"].as_u64(), body["history"].as_bool()), (200, Some(1), Some(true)), "{body}");
    // The task component: typed params checked on queue, a child run queued and run.
    let refused = client().post(url(&h, "/tasks/jobs.greet")).json(&json!({})).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 422);
    let greet = queue(&h.scheduler, "jobs.greet", json!({ "name": "ann" })).await;
    assert_eq!(wait_done(&h.scheduler, &greet.id).await.state, fluid_host::TaskState::Success);
    let child = poll("the child run", WAIT, || async {
        let events = h.scheduler.store().events_after(0, 100_000, usize::MAX).await.ok()?;
        events.into_iter().map(|e| e.run).find(|r| r.task == "jobs.log" && r.from_run_id == greet.id)
    })
    .await;
    assert_eq!(wait_done(&h.scheduler, &child.id).await.state, fluid_host::TaskState::Success);
    h.shutdown(Duration::ZERO).await;
}

/// The guest SDK is a package of its own: `cargo package` builds it from its packaged
/// form alone (its WIT and the history types inside it), outside any workspace.
#[test]
fn the_guest_sdk_builds_from_its_package_alone() {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sdk-package");
    let out = Command::new("cargo")
        .args(["package", "--allow-dirty", "--target-dir", target.to_str().unwrap()])
        .current_dir(&sdk)
        .env("RUSTUP_TOOLCHAIN", toolchain())
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run cargo");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && log.contains("Verifying fluid-guest"), "{log}");
}
