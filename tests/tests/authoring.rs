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

/// `fluid new KIND NAME --lang LANG` in `dir`, then the build command its README gives,
/// run in the project; the built component.
fn new_and_build(dir: &Path, kind: &str, name: &str, lang: &str) -> PathBuf {
    let (ok, out) = fluid(dir, &["new", kind, name, "--lang", lang, "--dir", dir.to_str().unwrap()]);
    assert!(ok, "{out}");
    let project = dir.join(name);
    let (mut build, built) = if lang == "rust" {
        // Kept across runs (the build of the SDK's dependencies is most of the time).
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("authoring-target");
        let mut cargo = Command::new("cargo");
        cargo.args(["build", "--release"]).env("RUSTUP_TOOLCHAIN", toolchain()).env("CARGO_TARGET_DIR", &target).env_remove("RUSTFLAGS");
        (cargo, target.join(format!("wasm32-wasip2/release/{name}.wasm")))
    } else {
        // A C build wraps its core module with this binary (`fluid componentize`).
        let mut script = Command::new("./build.sh");
        script.env("FLUID", env!("CARGO_BIN_EXE_fluid-test-host"));
        (script, project.join(format!("{name}.wasm")))
    };
    let out = build.current_dir(&project).output().expect("run the build");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(built.is_file(), "{}", built.display());
    built
}

/// For `lang`: a plugin and a task component from `fluid new`, built outside this
/// repository, checked, dropped into a running host: the plugin's subscription fires, its
/// storage keeps the count, its route answers and it finds the db plugin; the task's
/// params are checked on queue and its run queues a child run that runs.
async fn made_by_fluid_new_they_build_check_and_run(lang: &str) {
    let dir = TempDir::new();
    assert!(!dir.path().starts_with(Path::new(env!("CARGO_MANIFEST_DIR")).join("..")), "outside the repository");
    let (p, t) = (format!("{lang}_counts"), format!("{lang}_jobs"));
    let plugin = new_and_build(dir.path(), "plugin", &p, lang);
    let task = new_and_build(dir.path(), "task", &t, lang);
    let data = dir.path().join("data");
    for built in [&plugin, &task] {
        let (ok, out) = fluid(&data, &["plugins", "check", built.to_str().unwrap()]);
        assert!(ok && out.contains(": loads: "), "{out}");
    }
    std::fs::create_dir_all(data.join("plugins")).unwrap();
    std::fs::copy(&plugin, data.join(format!("plugins/{p}.wasm"))).unwrap();
    std::fs::copy(&task, data.join(format!("plugins/{t}.wasm"))).unwrap();
    let mut c = config(&data);
    c.load_plugins = true;
    let h = start(c, vec![Task::new("ok").run(|_| async { Ok(()) })]).await;
    let run = queue(&h.scheduler, "ok", json!({})).await;
    wait_done(&h.scheduler, &run.id).await;
    caught_up(&h, &p).await;
    let (status, body) = get_json(&h, &format!("/plugins/{p}/routes/counts")).await;
    assert_eq!((status, body["counts"]["ok"]["success"].as_u64(), body["history"].as_bool()), (200, Some(1), Some(true)), "{body}");
    let refused = client().post(url(&h, &format!("/tasks/{t}.greet"))).json(&json!({})).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 422, "params are checked against the schema");
    let greet = queue(&h.scheduler, &format!("{t}.greet"), json!({ "name": "ann" })).await;
    assert_eq!(wait_done(&h.scheduler, &greet.id).await.state, fluid_host::TaskState::Success);
    let log_task = format!("{t}.log");
    let child = poll("the child run", WAIT, || async {
        let events = h.scheduler.store().events_after(0, 100_000, usize::MAX).await.ok()?;
        events.into_iter().map(|e| e.run).find(|r| r.task == log_task && r.from_run_id == greet.id)
    })
    .await;
    assert_eq!(wait_done(&h.scheduler, &child.id).await.state, fluid_host::TaskState::Success);
    h.shutdown(Duration::ZERO).await;
    if lang == "rust" {
        assert!(std::fs::metadata(&plugin).unwrap().len() < 400 << 10, "the size-saving profile applies");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_components_made_by_fluid_new_build_outside_the_repository_check_and_run() {
    made_by_fluid_new_they_build_check_and_run("rust").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_components_made_by_fluid_new_build_outside_the_repository_check_and_run() {
    made_by_fluid_new_they_build_check_and_run("python").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_components_made_by_fluid_new_build_outside_the_repository_check_and_run() {
    made_by_fluid_new_they_build_check_and_run("js").await;
}

/// C: clang and wasi-libc make a core module against the bindings `fluid new` generated
/// from its own contract, and `fluid componentize` makes it a component.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_components_made_by_fluid_new_build_outside_the_repository_check_and_run() {
    made_by_fluid_new_they_build_check_and_run("c").await;
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
