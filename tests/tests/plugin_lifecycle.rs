//! A plugin's life while the host runs: dropped into the folder, replaced (without losing
//! or doubling an event), replaced by a broken file, still being written, removed; the
//! compile cache across a restart; and the `fluid plugins` commands and the log of a real
//! `fluid` process.

mod common;

use common::*;
use fluid_host::plugins::bundled::guest_wasm_dir;
use fluid_host::{Host, Task};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Scans of the plugins folder in these tests (500 ms in production).
const SCAN: Duration = Duration::from_millis(200);

fn event_log_wasm() -> Vec<u8> {
    std::fs::read(guest_wasm_dir().join("fluid_test_event_log.wasm")).unwrap()
}

/// The same component with a custom section appended: another file, another hash.
fn event_log_v2() -> Vec<u8> {
    let mut b = event_log_wasm();
    b.extend_from_slice(&[0x00, 0x08, 0x02, b'v', b'2', b'f', b'l', b'u', b'i', b'd']);
    b
}

async fn host(dir: &Path) -> Host {
    std::fs::create_dir_all(dir.join("plugins")).unwrap();
    let mut c = config(dir);
    c.load_plugins = true;
    c.plugin_scan_interval = Some(SCAN);
    start(c, vec![Task::new("ok").run(|_| async { Ok(()) })]).await
}

async fn plugins(h: &Host) -> Vec<Value> {
    let r = client().get(url(h, "/plugins")).send().await.unwrap();
    r.json::<Vec<Value>>().await.unwrap()
}

async fn plugin(h: &Host, name: &str) -> Option<Value> {
    plugins(h).await.into_iter().find(|p| p["name"] == name)
}

async fn wait_plugin(h: &Host, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    poll(what, WAIT, || async { plugin(h, name).await.filter(|p| pred(p)) }).await
}

/// Waits until event_log has consumed the feed, then checks it saw every event once.
async fn every_event_once(h: &Host) {
    every_event_after_once(h, 0).await
}

/// Waits until event_log has consumed the feed, then checks it saw every event after
/// `seq` once, and none before.
async fn every_event_after_once(h: &Host, seq: i64) {
    let store = h.scheduler.store().clone();
    let head = store.feed_head().await.unwrap();
    wait_plugin(h, "event_log", "event_log to catch up", |p| p["health"]["checkpoint"].as_i64() >= Some(head)).await;
    let want: Vec<(i64, i64)> = store.events_after(seq, 1_000_000, usize::MAX).await.unwrap().iter().map(|e| (e.seq, 1)).collect();
    let got: Vec<(i64, i64)> =
        serde_json::from_str(&h.scheduler.get_plugin("event_log").unwrap().call_json("seen", "{}".into()).await.unwrap()).unwrap();
    assert_eq!(got, want, "each event exactly once, none missing");
}

/// A plugin dropped into a running host starts at the head of the feed: it receives what
/// happens from then on, not the past (nor is it quarantined by the past).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_dropped_into_the_folder_is_loaded_and_a_removed_one_unloaded() {
    let dir = TempDir::new();
    let h = host(dir.path()).await;
    let run = queue(&h.scheduler, "ok", json!({})).await;
    wait_done(&h.scheduler, &run.id).await;
    let before = h.scheduler.store().feed_head().await.unwrap();
    assert!(before > 0);
    let file = dir.path().join("plugins/event_log.wasm");
    std::fs::write(&file, event_log_wasm()).unwrap();
    wait_plugin(&h, "event_log", "event_log to load", |p| p["state"] == "active").await;
    let run = queue(&h.scheduler, "ok", json!({})).await;
    wait_done(&h.scheduler, &run.id).await;
    every_event_after_once(&h, before).await;
    std::fs::remove_file(&file).unwrap();
    poll("event_log to be unloaded", WAIT, || async { plugin(&h, "event_log").await.is_none().then_some(()) }).await;
    assert!(h.scheduler.get_plugin("event_log").is_none());
    assert_eq!(plugin(&h, "db").await.unwrap()["state"], "active");
    // Unloaded, it gave its delivery lease up: removed for good, it can be forgotten at once.
    let forgot = h.scheduler.store().forget_checkpoint("event_log").await.unwrap();
    assert!(matches!(forgot, fluid_host::store::Forget::Forgotten { .. }), "{forgot:?}");
    h.shutdown(Duration::ZERO).await;
}

/// `start = "oldest"`: a plugin seen for the first time also receives the retained past.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_told_to_start_at_the_oldest_event_receives_the_retained_past() {
    let dir = TempDir::new();
    let h = host(dir.path()).await;
    for _ in 0..3 {
        let run = queue(&h.scheduler, "ok", json!({})).await;
        wait_done(&h.scheduler, &run.id).await;
    }
    std::fs::write(dir.path().join("fluid.toml"), "[plugins.event_log]\nstart = \"oldest\"\n").unwrap();
    std::fs::write(dir.path().join("plugins/event_log.wasm"), event_log_wasm()).unwrap();
    wait_plugin(&h, "event_log", "event_log to load", |p| p["state"] == "active").await;
    every_event_once(&h).await;
    h.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_plugin_resumes_from_its_checkpoint_without_losing_or_doubling_events() {
    let dir = TempDir::new();
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    std::fs::write(dir.path().join("plugins/event_log.wasm"), event_log_wasm()).unwrap();
    let h = host(dir.path()).await;
    // Runs keep coming while the plugin is swapped.
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (s, stop) = (h.scheduler.clone(), stop.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                ids.push(queue(&s, "ok", json!({})).await.id);
                tokio::task::yield_now().await;
            }
            for id in &ids {
                wait_done(&s, id).await;
            }
            ids.len()
        })
    };
    wait_plugin(&h, "event_log", "some events delivered", |p| p["health"]["events_delivered"].as_u64() > Some(10)).await;
    let v2 = event_log_v2();
    std::fs::write(dir.path().join("fluid.toml"), "[plugins.event_log.config]\nversion = \"2\"").unwrap();
    std::fs::write(dir.path().join("plugins/event_log.wasm"), &v2).unwrap();
    let sha = fluid_host::plugins::sha256(&v2);
    let swapped = wait_plugin(&h, "event_log", "version 2 to run", |p| p["version"] == "2" && p["sha256"] == sha.as_str()).await;
    assert_eq!(swapped["state"], "active", "{swapped}");
    stop.store(true, Ordering::SeqCst);
    assert!(producer.await.unwrap() > 0);
    every_event_once(&h).await;
    h.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_still_being_written_is_never_loaded_until_it_settles() {
    let dir = TempDir::new();
    let h = host(dir.path()).await;
    let bytes = event_log_wasm();
    let file = dir.path().join("plugins/event_log.wasm");
    // A slow copy: a chunk every 50 ms, each scan (200 ms) sees another size.
    let writer = {
        let (file, bytes) = (file.clone(), bytes.clone());
        tokio::spawn(async move {
            use std::io::Write;
            let mut f = std::fs::File::create(&file).unwrap();
            for chunk in bytes.chunks(bytes.len().div_ceil(30)) {
                f.write_all(chunk).unwrap();
                f.flush().unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    while !writer.is_finished() {
        assert!(plugin(&h, "event_log").await.is_none(), "a half-written file was acted on");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    writer.await.unwrap();
    let p = wait_plugin(&h, "event_log", "the finished file to be acted on", |p| p["state"] == "active" || p["state"] == "failed").await;
    assert_eq!(p["state"], "active", "{p}");
    h.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_that_fails_to_load_leaves_the_running_version_in_place() {
    let dir = TempDir::new();
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    let file = dir.path().join("plugins/event_log.wasm");
    std::fs::write(&file, event_log_wasm()).unwrap();
    let h = host(dir.path()).await;
    let sha = plugin(&h, "event_log").await.unwrap()["sha256"].clone();
    // Replaced the careful way (beside, then renamed), but with a broken file.
    let tmp = dir.path().join("plugins/.event_log.wasm.part");
    std::fs::write(&tmp, b"\0asm\x0d\0\x01\0 broken").unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let p = wait_plugin(&h, "event_log", "the refused replacement to show", |p| p["replacement_error"].is_string()).await;
    assert_eq!((p["state"].as_str(), &p["sha256"]), (Some("active"), &sha), "{p}");
    assert!(p["replacement_error"].as_str().unwrap().contains("not a valid component"), "{p}");
    let run = queue(&h.scheduler, "ok", json!({})).await;
    wait_done(&h.scheduler, &run.id).await;
    every_event_once(&h).await;
    // A good file later is picked up.
    std::fs::write(&file, event_log_v2()).unwrap();
    wait_plugin(&h, "event_log", "the fixed file to load", |p| p["replacement_error"].is_null() && p["sha256"] != sha).await;
    h.shutdown(Duration::ZERO).await;
}

fn cache_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    // By inode: a rewrite renames a new file into place; a use only renews the time.
    use std::os::unix::fs::MetadataExt;
    let mut v: Vec<(PathBuf, u64)> = std::fs::read_dir(dir.join("cache"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .map(|p| (p.clone(), std::fs::metadata(&p).unwrap().ino()))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reuses_the_compiled_components_in_the_cache() {
    let dir = TempDir::new();
    let h = host(dir.path()).await;
    h.shutdown(Duration::ZERO).await;
    let first = cache_files(dir.path());
    assert_eq!(first.len(), 2, "db and stats compiled once: {first:?}");
    let h = host(dir.path()).await;
    assert_eq!(plugin(&h, "db").await.unwrap()["state"], "active");
    assert_eq!(cache_files(dir.path()), first, "nothing recompiled or rewritten");
    h.shutdown(Duration::ZERO).await;
}

/// `fluid-test-host ARGS` (a real `fluid` binary): exit status and stdout.
fn fluid(data: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fluid-test-host"))
        .arg("--data")
        .arg(data)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run fluid");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `fluid plugins check` loads a file as a host would and prints what it declares.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_check_loads_a_component_as_a_host_would_and_says_what_it_declares() {
    let dir = TempDir::new();
    let good = dir.path().join("event_log.wasm");
    std::fs::write(&good, event_log_wasm()).unwrap();
    let (ok, out) = fluid(dir.path(), &["plugins", "check", good.to_str().unwrap()]);
    assert!(ok && out.contains("loads: event_log 1, fluid:scheduler/plugin@0.1.1"), "{out}");
    assert!(out.contains("subscriptions: queued.log") && out.contains("fluid:scheduler/storage@0.1.1"), "{out}");
    let task = guest_wasm_dir().join("fluid_report_task.wasm");
    let (ok, out) = fluid(dir.path(), &["plugins", "check", "--json", task.to_str().unwrap()]);
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(ok && report["error"].is_null(), "{report}");
    assert_eq!((report["world"].as_str(), report["tasks"].clone()), (Some("fluid:scheduler/task@0.1.1"), json!(["report"])));
    assert!(report["size_bytes"].as_u64() > Some(1000) && report["load_ms"].as_f64() > Some(0.0), "{report}");
}

/// Every file a host refuses, `check` refuses first, in the same words: the two run the
/// same loader. Broken in every way an author can break one: not WebAssembly, a core
/// module, not a fluid component, an invalid plugin name, a name that does not match the
/// file, `register` failing, task definitions that clash or are too many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_check_refuses_what_the_host_refuses_in_the_same_words() {
    let dir = TempDir::new();
    let folder = dir.path().join("plugins");
    std::fs::create_dir_all(&folder).unwrap();
    let built = |krate: &str| std::fs::read(guest_wasm_dir().join(format!("{krate}.wasm"))).unwrap();
    let broken: Vec<(&str, Vec<u8>)> = vec![
        ("junk", b"not wasm at all".to_vec()),
        ("core_module", b"\0asm\x01\0\0\0".to_vec()),
        ("not_a_plugin", built("not_a_plugin")),
        ("my-plugin", event_log_wasm()),
        ("wrong_name", event_log_wasm()),
        ("register_panic", built("fluid_test_register_panic")),
        ("bad_tasks", built("fluid_test_bad_tasks")),
        ("many_tasks", built("fluid_test_many_tasks")),
    ];
    let mut said = Vec::new();
    for (name, bytes) in &broken {
        let file = folder.join(format!("{name}.wasm"));
        std::fs::write(&file, bytes).unwrap();
        let (ok, out) = fluid(dir.path(), &["plugins", "check", file.to_str().unwrap()]);
        assert!(!ok, "{name}: check must refuse it: {out}");
        said.push((file.display().to_string(), out.trim().to_string()));
    }
    let words = |name: &str| said.iter().find(|(f, _)| f.ends_with(&format!("/{name}.wasm"))).unwrap().1.clone();
    assert!(words("my-plugin").contains("e.g. my_plugin.wasm"), "a valid name is suggested: {}", words("my-plugin"));
    assert!(words("wrong_name").contains("name the file event_log.wasm"), "{}", words("wrong_name"));
    let panic = words("register_panic");
    assert!(panic.contains("panics on purpose") && !panic.contains("backtrace"), "the guest's words, not a wasm backtrace: {panic}");
    let h = host(dir.path()).await;
    let listed = plugins(&h).await;
    for (file, check_said) in &said {
        let entry = listed.iter().find(|p| p["file"] == file.as_str()).unwrap_or_else(|| panic!("{file} listed: {listed:?}"));
        assert_eq!(entry["state"], "failed", "{entry}");
        assert_eq!(entry["error"].as_str().unwrap(), check_said, "the host and check say the same of {file}");
    }
    h.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_ls_shows_files_and_limits_offline_and_live_state_with_url() {
    let dir = TempDir::new();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::write(plugins.join("event_log.wasm"), event_log_wasm()).unwrap();
    std::fs::write(plugins.join("junk.wasm"), b"junk").unwrap();
    std::fs::write(
        dir.path().join("fluid.toml"),
        "[plugins.event_log.limits]\nmemory_mib = 99\n[plugins.event_log.grants]\nenv = [\"PATH\"]",
    )
    .unwrap();
    let (ok, out) = fluid(dir.path(), &["plugins", "ls", "--json"]);
    assert!(ok, "{out}");
    let list: Vec<Value> = serde_json::from_str(&out).unwrap();
    let by = |n: &str| list.iter().find(|p| p["name"] == n).cloned().unwrap_or_else(|| panic!("{n}: {out}"));
    let e = by("event_log");
    assert_eq!(
        (e["state"].as_str(), e["limits"]["memory_mib"].as_u64(), e["grants"]["env"].clone()),
        (Some("loadable"), Some(99), json!(["PATH"])),
        "{e}"
    );
    assert!(by("junk")["error"].as_str().unwrap().contains("not a WebAssembly file"));
    let h = host(dir.path()).await;
    let (ok, out) = fluid(dir.path(), &["plugins", "ls", "--url", &format!("http://{}", h.addr)]);
    assert!(ok, "{out}");
    let line = out.lines().find(|l| l.starts_with("event_log")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("active") && line.contains("99"), "{line}");
    assert!(out.contains("junk: ") && out.contains("not a WebAssembly file"), "{out}");
    h.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantine_is_written_to_the_log_of_a_real_host() {
    let dir = TempDir::new();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(guest_wasm_dir().join("fluid_test_trap_events.wasm"), plugins.join("trap_events.wasm")).unwrap();
    std::fs::write(dir.path().join("fluid.toml"), "[plugins.trap_events.limits]\nquarantine_after = 2").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = dir.path().join("host.log");
    let _child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_fluid-test-host"))
            .arg("--data")
            .arg(dir.path())
            .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--no-examples"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let c = client();
    poll("the host to answer", WAIT, || async { c.get(format!("{base}/tasks")).send().await.ok().filter(|r| r.status().is_success()) })
        .await;
    let r = c.post(format!("{base}/tasks/sleepy")).json(&json!({ "seconds": 0 })).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    poll("trap_events to be quarantined", WAIT, || async {
        let p: Value = c.get(format!("{base}/plugins/trap_events")).send().await.ok()?.json().await.ok()?;
        (p["state"] == "quarantined").then_some(())
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.lines().any(|l| l.contains("trap_events") && l.contains("plugin trapped")), "{text}");
    assert!(text.lines().any(|l| l.contains("trap_events") && l.contains("plugin quarantined")), "{text}");
}

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `[trust] policy = "signed"`: a file runs only with a signature by a trusted key
/// (`fluid keygen`, `fluid plugins sign`); a changed file needs a new one, and `check`
/// says so in the host's words; a refused replacement leaves the running version in
/// place; the bundled plugins, as the binary carries them, run as the binary does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_files_signed_by_a_trusted_key_run_under_a_signed_policy() {
    let dir = TempDir::new();
    let key = dir.path().join("signing.key");
    let (ok, public) = fluid(dir.path(), &["keygen", "--out", key.to_str().unwrap()]);
    assert!(ok && public.trim().len() == 64, "{public}");
    std::fs::write(dir.path().join("fluid.toml"), format!("[trust]\npolicy = \"signed\"\nkeys = [\"{}\"]\n", public.trim())).unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let signed = plugins.join("event_log.wasm");
    std::fs::write(&signed, event_log_wasm()).unwrap();
    let (ok, out) = fluid(dir.path(), &["plugins", "sign", signed.to_str().unwrap(), "--key", key.to_str().unwrap()]);
    assert!(ok, "{out}");
    // Signed, then changed: the signature no longer holds.
    let tampered = dir.path().join("tampered/event_log.wasm");
    std::fs::create_dir_all(tampered.parent().unwrap()).unwrap();
    std::fs::write(&tampered, event_log_v2()).unwrap();
    std::fs::copy(fluid_host::plugins::trust::signature_path(&signed), fluid_host::plugins::trust::signature_path(&tampered)).unwrap();
    let (ok, out) = fluid(dir.path(), &["plugins", "check", tampered.to_str().unwrap()]);
    assert!(!ok && out.contains("refused by the trust policy: its signature is not by any key"), "{out}");
    let h = host(dir.path()).await;
    assert_eq!(plugin(&h, "event_log").await.unwrap()["state"], "active");
    assert_eq!(plugin(&h, "db").await.unwrap()["state"], "active", "the bundled db runs as the binary does");
    // An unsigned replacement is refused; the signed version keeps running.
    let sha = plugin(&h, "event_log").await.unwrap()["sha256"].clone();
    std::fs::write(&signed, event_log_v2()).unwrap();
    let p = wait_plugin(&h, "event_log", "the refused replacement to show", |p| p["replacement_error"].is_string()).await;
    assert!(p["replacement_error"].as_str().unwrap().contains("trust policy"), "{p}");
    assert_eq!((p["state"].as_str(), &p["sha256"]), (Some("active"), &sha), "{p}");
    h.shutdown(Duration::ZERO).await;
}

/// A trust policy tightened while the host runs applies to what runs now: a loaded plugin
/// the new policy does not admit is unloaded, with the reason; the bundled ones stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tightened_trust_policy_unloads_what_it_no_longer_admits() {
    let dir = TempDir::new();
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    std::fs::write(dir.path().join("plugins/event_log.wasm"), event_log_wasm()).unwrap();
    let h = host(dir.path()).await;
    assert_eq!(plugin(&h, "event_log").await.unwrap()["state"], "active");
    let pin = fluid_host::plugins::sha256(b"another file");
    std::fs::write(dir.path().join("fluid.toml"), format!("[trust]\npolicy = \"pinned\"\n[trust.pinned]\nevent_log = \"{pin}\"\n"))
        .unwrap();
    let p = wait_plugin(&h, "event_log", "the unpinned plugin to be unloaded", |p| p["state"] == "failed").await;
    assert!(p["error"].as_str().unwrap().contains("not the one pinned"), "{p}");
    assert!(h.scheduler.get_plugin("event_log").is_none());
    assert_eq!(plugin(&h, "db").await.unwrap()["state"], "active", "the bundled db stays");
    h.shutdown(Duration::ZERO).await;
}
