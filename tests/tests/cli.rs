//! The `fluid` command line as a user runs it: the real binary, a real data folder.

use std::path::Path;
use std::process::{Command, Output};

fn fluid(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fluid-test-host"))
        .args(["--data", data.to_str().unwrap(), "--log", "error"])
        .args(args)
        .output()
        .expect("run fluid-test-host")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn temp() -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("fluid-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&p).unwrap();
    p
}

#[test]
fn exec_runs_a_task_in_process_and_exits_by_its_outcome() {
    let dir = temp();
    let ok = fluid(&dir, &["exec", "add", "--params", r#"{"a": 1, "b": 2}"#]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let run: serde_json::Value = serde_json::from_slice(&ok.stdout).expect("the run as JSON");
    assert_eq!((run["task"].as_str(), run["state"].as_str()), (Some("add"), Some("success")));
    assert_eq!(run["params"], serde_json::json!({"a": 1, "b": 2}));

    let bad = fluid(&dir, &["exec", "add", "--params", r#"{"a": "x"}"#]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad.stderr).contains("invalid params for task add"), "{}", text(&bad.stderr));

    let garbage = fluid(&dir, &["exec", "add", "--params", "{nope"]);
    assert_eq!(garbage.status.code(), Some(1));
    assert!(text(&garbage.stderr).contains("--params is not valid JSON"));

    let unknown = fluid(&dir, &["exec", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("Task nope not found"));

    // A failing task: the run is printed and the exit code says it failed.
    let fail = fluid(&dir, &["exec", "flaky", "--params", r#"{"failures": 1}"#]);
    assert_eq!(fail.status.code(), Some(1));
    let run: serde_json::Value = serde_json::from_slice(&fail.stdout).unwrap();
    assert_eq!(run["retry_attempt"], 1, "the failure was recorded and the run re-queued for its retry: {run}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn enable_and_disable_are_stored_and_listed() {
    let dir = temp();
    let off = fluid(&dir, &["enable", "add", "--disable"]);
    assert!(off.status.success(), "{}", text(&off.stderr));
    let ls = text(&fluid(&dir, &["ls"]).stdout);
    let add = ls.lines().find(|l| l.starts_with("add ")).expect("add listed");
    assert!(add.split_whitespace().nth(1) == Some("false"), "{add}");
    assert!(fluid(&dir, &["enable", "add"]).status.success());
    let ls = text(&fluid(&dir, &["ls"]).stdout);
    let add = ls.lines().find(|l| l.starts_with("add ")).unwrap();
    assert!(add.split_whitespace().nth(1) == Some("true"), "{add}");
    let unknown = fluid(&dir, &["enable", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ls_filters_by_tag() {
    let dir = temp();
    let out = text(&fluid(&dir, &["ls", "--tags", "scheduled"]).stdout);
    let names: Vec<&str> = out.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(names, ["ping"], "{out}");
    let all = text(&fluid(&dir, &["ls"]).stdout);
    for t in ["add", "flaky", "ping", "slow", "sleepy"] {
        assert!(all.lines().any(|l| l.starts_with(&format!("{t} "))), "{t} in {all}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `fluid plugins forget`: a removed plugin's checkpoint is deleted, so it no longer holds
/// the change feed; a plugin a host delivers to is refused with the host's name, an
/// unknown one with a message, both exit 1.
#[test]
fn plugins_forget_lets_a_removed_plugin_go_and_refuses_a_delivered_one() {
    use fluid_host::store::Store;
    let dir = temp();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open_sqlite(&dir).await.unwrap();
        store.checkpoint("gone", 0).await.unwrap();
        store.checkpoint("held", 0).await.unwrap();
        assert!(store.hold_delivery("held", "host-7", std::time::Duration::from_secs(600)).await.unwrap());
        store.close().await;
    });
    let gone = fluid(&dir, &["plugins", "forget", "gone"]);
    assert!(gone.status.success(), "{}", text(&gone.stderr));
    assert!(text(&gone.stdout).starts_with("gone: forgotten"), "{}", text(&gone.stdout));
    let held = fluid(&dir, &["plugins", "forget", "held"]);
    assert_eq!(held.status.code(), Some(1));
    assert!(text(&held.stderr).contains("host host-7 delivers its events now"), "{}", text(&held.stderr));
    let unknown = fluid(&dir, &["plugins", "forget", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("no such plugin"), "{}", text(&unknown.stderr));
    rt.block_on(async {
        let store = Store::open_sqlite(&dir).await.unwrap();
        assert_eq!(store.idle_feed_holder().await.unwrap(), None, "the removed one is gone");
        assert_eq!(store.checkpoint("held", 5).await.unwrap(), 0, "the delivered one is kept as it was");
        store.close().await;
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// `fluid bench` as the README runs it (small workloads): every part measured on both
/// backends, each figure beside its baseline, the report and the plot written.
/// `fluid bench --only peer`: graphile-worker installed from npm and run on the same
/// PostgreSQL as fluid, every system's figure beside it in the same report.
#[test]
fn bench_runs_graphile_worker_beside_fluid_on_the_same_postgresql() {
    let dir = temp();
    let out = dir.join("bench");
    let admin = fluid_tests::pg::admin_url();
    let run = fluid(&dir, &["bench", "--only", "peer", "--runs", "300", "--postgres", &admin, "--out", out.to_str().unwrap()]);
    assert!(run.status.success(), "{}\n{}", text(&run.stdout), text(&run.stderr));
    let report = std::fs::read_to_string(out.join("results.md")).expect("results.md written");
    let rows: Vec<&str> = report.lines().filter(|l| l.starts_with("| graphile-worker") || l.starts_with("| fluid")).collect();
    assert_eq!(rows.len(), 5, "{report}");
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (rate, ratio): (f64, f64) = (cells[2].parse().unwrap(), cells[3].parse().unwrap());
        assert!(rate > 0.0 && ratio > 0.0, "{row}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `fluid bench --only delivery`: the db plugin's throughput at each number of events a
/// delivery round reads, on both backends, the default size always among them and the
/// ratio to it 1 on its own row.
#[test]
fn bench_sizes_the_delivery_round_by_measurement_on_both_backends() {
    let dir = temp();
    let out = dir.join("bench");
    let admin = fluid_tests::pg::admin_url();
    let args =
        ["bench", "--only", "delivery", "--runs", "300", "--event-batch", "16", "--postgres", &admin, "--out", out.to_str().unwrap()];
    let run = fluid(&dir, &args);
    assert!(run.status.success(), "{}\n{}", text(&run.stdout), text(&run.stderr));
    let report = std::fs::read_to_string(out.join("results.md")).expect("results.md written");
    let default = fluid_host::plugins::DEFAULT_EVENT_BATCH.to_string();
    for backend in ["SQLite", "PostgreSQL"] {
        let rows: Vec<Vec<&str>> =
            report.lines().filter(|l| l.starts_with(&format!("| {backend} |"))).map(|l| l.split('|').map(str::trim).collect()).collect();
        let sizes: Vec<&str> = rows.iter().map(|c| c[2]).collect();
        assert_eq!(sizes, ["16", default.as_str()], "{report}");
        for c in &rows {
            let (rate, ratio): (f64, f64) = (c[3].parse().unwrap(), c[4].parse().unwrap());
            assert!(rate > 0.0 && ratio > 0.0, "{report}");
            if c[2] == default {
                assert_eq!(c[4], "1.00", "{report}");
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `fluid bench --only reserve`: throughput at each cap on runs held reserved, without and
/// with the db plugin, on both backends, 0 (none reserved) always among them and the ratio
/// to it 1 on its own row.
#[test]
fn bench_sizes_claiming_ahead_by_measurement_on_both_backends() {
    let dir = temp();
    let out = dir.join("bench");
    let admin = fluid_tests::pg::admin_url();
    let args =
        ["bench", "--only", "reserve", "--runs", "300", "--reserve-ahead", "8", "--postgres", &admin, "--out", out.to_str().unwrap()];
    let run = fluid(&dir, &args);
    assert!(run.status.success(), "{}\n{}", text(&run.stdout), text(&run.stderr));
    let report = std::fs::read_to_string(out.join("results.md")).expect("results.md written");
    let default = fluid_host::scheduler::CompleterConfig::default().reserve_ahead.to_string();
    for backend in ["SQLite", "PostgreSQL"] {
        for db in ["none", "history"] {
            let rows: Vec<Vec<&str>> = report
                .lines()
                .filter(|l| l.starts_with(&format!("| {backend} | {db} |")))
                .map(|l| l.split('|').map(str::trim).collect())
                .collect();
            let caps: Vec<&str> = rows.iter().map(|c| c[3]).collect();
            assert_eq!(caps, ["0", "8", default.as_str()], "{report}");
            for c in &rows {
                let (rate, ratio): (f64, f64) = (c[4].parse().unwrap(), c[5].parse().unwrap());
                assert!(rate > 0.0 && ratio > 0.0, "{report}");
                if c[3] == "0" {
                    assert_eq!(c[5], "1.00", "{report}");
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bench_measures_every_part_on_both_backends_and_writes_its_report_and_plot() {
    let dir = temp();
    let out = dir.join("bench");
    let admin = fluid_tests::pg::admin_url();
    let args =
        ["bench", "--quick", "--runs", "300", "--workers", "1", "--workers", "2", "--postgres", &admin, "--out", out.to_str().unwrap()];
    let run = fluid(&dir, &args);
    assert!(run.status.success(), "{}\n{}", text(&run.stdout), text(&run.stderr));
    let report = std::fs::read_to_string(out.join("results.md")).expect("results.md written");
    assert_eq!(text(&run.stdout).lines().next(), report.lines().next(), "what is printed is what is written");
    assert!(report.contains("Machine: ") && report.contains(" cores, "), "the machine it ran on: {report}");
    for section in [
        "## End-to-end throughput",
        "## Event delivery to a component",
        "## One task-component run",
        "## Start-up with 50 plugins",
        "## GET /task-history over",
        "## The cost of observing",
        "## Queueing over HTTP",
        "## Queue-to-start latency at a steady",
    ] {
        assert!(report.contains(section), "missing {section:?} in {report}");
    }
    assert!(report.contains("| baseline: an empty plugins folder |"), "start-up beside its baseline: {report}");
    assert!(report.contains("baseline: the whole process before loading them"), "memory beside its baseline: {report}");
    // One throughput row per backend and worker count: a baseline, a figure with the db
    // plugin, and their ratio, all positive numbers.
    for backend in ["SQLite", "PostgreSQL"] {
        for workers in ["1", "2"] {
            let row = report
                .lines()
                .find(|l| l.starts_with(&format!("| {backend} | {workers} |")))
                .unwrap_or_else(|| panic!("no {backend} row for {workers} workers in {report}"));
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            for (i, what) in [(3, "baseline"), (4, "with db"), (5, "ratio"), (9, "host RSS")] {
                let v: f64 = cells[i].parse().unwrap_or_else(|_| panic!("{what} is not a number in {row}"));
                assert!(v > 0.0, "{what} in {row}");
            }
        }
    }
    let svg = std::fs::read_to_string(out.join("throughput.svg")).expect("throughput.svg written");
    assert!(svg.starts_with("<svg"), "{svg}");
    assert_eq!(svg.matches("<polyline").count(), 4, "a baseline and a db-plugin line per backend: {svg}");

    // One backend: only its rows and lines. Asking for PostgreSQL without a server is an error.
    let one = fluid(
        &dir,
        &[
            "bench",
            "--only",
            "throughput",
            "--runs",
            "100",
            "--workers",
            "1",
            "--backend",
            "postgres",
            "--postgres",
            &admin,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(one.status.success(), "{}", text(&one.stderr));
    let report = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(report.contains("| PostgreSQL | 1 |") && !report.contains("| SQLite |"), "{report}");
    assert_eq!(std::fs::read_to_string(out.join("throughput.svg")).unwrap().matches("<polyline").count(), 2);
    let none =
        fluid(&dir, &["bench", "--only", "throughput", "--backend", "postgres", "--postgres", "none", "--out", out.to_str().unwrap()]);
    assert!(
        !none.status.success() && text(&none.stderr).contains("--backend postgres needs a PostgreSQL server"),
        "{}",
        text(&none.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `fluid wit --out DIR` writes the exact contract the host was built from.
#[test]
fn wit_writes_the_contract_the_host_speaks() {
    let data = temp();
    let out = data.join("wit");
    let o = fluid(&data, &["wit", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("fluid:scheduler@0.1.1"), "{}", text(&o.stdout));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
    for entry in std::fs::read_dir(&repo).unwrap() {
        let name = entry.unwrap().file_name();
        assert_eq!(std::fs::read(out.join(&name)).unwrap(), std::fs::read(repo.join(&name)).unwrap(), "{name:?}");
    }
    let printed = fluid(&data, &["wit"]);
    assert!(text(&printed.stdout).contains("world plugin"), "printed on stdout without --out");
    // Every version it accepts, and each one's frozen text.
    let list = fluid(&data, &["wit", "--list"]);
    assert_eq!(text(&list.stdout), "fluid:scheduler@0.1.0\nfluid:scheduler@0.1.1\n");
    let old = data.join("wit-0.1.0");
    let o = fluid(&data, &["wit", "--version", "0.1.0", "--out", old.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let frozen = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/wit-released/0.1.0");
    for entry in std::fs::read_dir(&frozen).unwrap() {
        let name = entry.unwrap().file_name();
        assert_eq!(std::fs::read(old.join(&name)).unwrap(), std::fs::read(frozen.join(&name)).unwrap(), "{name:?}");
    }
    let unknown = fluid(&data, &["wit", "--version", "0.2.0"]);
    assert!(!unknown.status.success() && text(&unknown.stderr).contains("it speaks 0.1.0, 0.1.1"), "{}", text(&unknown.stderr));
    std::fs::remove_dir_all(&data).ok();
}
