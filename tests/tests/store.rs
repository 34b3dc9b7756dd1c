//! The store's query layer (`fluid_host::store::query`) on both drivers: sqlx for
//! PostgreSQL, rusqlite inline for SQLite. One SQL text, the same answers, the same
//! guarantees. Also SQLite's files, and the scheduler cycle's two implementations held to
//! one result. The store's own operations have their suite: `store_conformance`.

mod common;

use common::*;
use fluid_host::store::{Backend, Store, StoreError, query, query_built};
use fluid_host::store::{ClaimRules, Finish, Outcome};
use fluid_host::time::{now_us, to_datetime};
use fluid_host::{TaskRun, TaskState};
use std::collections::BTreeMap;
use std::time::Duration;

async fn open(env: &TestEnv) -> Store {
    let store = Store::connect(&env.url()).await.expect("store opens");
    let mut tx = store.write_tx().await.unwrap();
    query("CREATE TABLE IF NOT EXISTS scratch (k TEXT PRIMARY KEY, n BIGINT NOT NULL)").execute(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    store
}

async fn count(store: &Store) -> i64 {
    query("SELECT COUNT(*) AS n FROM scratch").fetch_one(&mut store.read().await.unwrap()).await.unwrap().try_get("n").unwrap()
}

/// `$N` is the N-th argument wherever it appears, repeated or out of order.
async fn numbered_parameters_bind_by_number_wherever_they_appear(db: Db) {
    let env = TestEnv::new(db).await;
    let store = open(&env).await;
    let mut tx = store.write_tx().await.unwrap();
    query("INSERT INTO scratch (n, k) VALUES ($2, $1)").bind("first").bind(7i64).execute(&mut tx).await.unwrap();
    let changed =
        query("UPDATE scratch SET n = $2 + $2 WHERE k = $1 AND n = $3").bind("first").bind(20i64).bind(7i64).execute(&mut tx).await;
    assert_eq!(changed.unwrap(), 1, "one row changed");
    tx.commit().await.unwrap();
    let row = query("SELECT k, n FROM scratch WHERE k = $1").bind("first").fetch_one(&mut store.read().await.unwrap()).await.unwrap();
    assert_eq!(row.try_get::<String, _>("k").unwrap(), "first");
    assert_eq!(row.try_get::<i64, _>(1usize).unwrap(), 40);
    assert!(row.try_get::<String, _>("n").is_err(), "an int is not read as text");
    assert!(row.try_get::<i64, _>("missing").is_err(), "no such column");
    store.close().await;
}

/// A write transaction dropped before `commit` (an error, a cancelled request) leaves
/// nothing behind, and the next one can begin: the single SQLite writer is not left
/// inside a dangling transaction.
async fn a_dropped_write_transaction_leaves_nothing_and_the_next_one_begins(db: Db) {
    let env = TestEnv::new(db).await;
    let store = open(&env).await;
    {
        let mut tx = store.write_tx().await.unwrap();
        query("INSERT INTO scratch (k, n) VALUES ($1, $2)").bind("lost").bind(1i64).execute(&mut tx).await.unwrap();
    }
    let mut tx = store.write_tx().await.unwrap();
    query("INSERT INTO scratch (k, n) VALUES ($1, $2)").bind("kept").bind(2i64).execute(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.write_tx().await.unwrap();
    query("INSERT INTO scratch (k, n) VALUES ($1, $2)").bind("rolled back").bind(3i64).execute(&mut tx).await.unwrap();
    tx.rollback().await.unwrap();
    let keys: Vec<String> = query("SELECT k FROM scratch ORDER BY k")
        .fetch_all(&mut store.read().await.unwrap())
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get("k").unwrap())
        .collect();
    assert_eq!(keys, ["kept"]);
    store.close().await;
}

/// Many write transactions at once on one host all commit: they wait their turn
/// instead of failing with SQLITE_BUSY or a lost update.
async fn concurrent_write_transactions_all_commit(db: Db) {
    let env = TestEnv::new(db).await;
    let store = open(&env).await;
    let mut tx = store.write_tx().await.unwrap();
    query("INSERT INTO scratch (k, n) VALUES ('counter', 0)").execute(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    // Read, then write what was read: only serialised writers keep every increment (on
    // PostgreSQL, by the row lock; on SQLite, by the one writer).
    let read = match store.backend {
        Backend::Postgres => "SELECT n FROM scratch WHERE k = 'counter' FOR UPDATE",
        Backend::Sqlite => "SELECT n FROM scratch WHERE k = 'counter'",
    };
    let writers: Vec<_> = (0..40)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tx = store.write_tx().await?;
                let n: i64 = query(read).fetch_one(&mut tx).await?.try_get("n")?;
                tokio::task::yield_now().await;
                query("UPDATE scratch SET n = $1 WHERE k = 'counter'").bind(n + 1).execute(&mut tx).await?;
                query("INSERT INTO scratch (k, n) VALUES ($1, $2)").bind(format!("w{i}")).bind(i as i64).execute(&mut tx).await?;
                tx.commit().await
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap().expect("every writer commits");
    }
    assert_eq!(count(&store).await, 41);
    let n: i64 =
        query("SELECT n FROM scratch WHERE k = 'counter'").fetch_one(&mut store.read().await.unwrap()).await.unwrap().try_get("n").unwrap();
    assert_eq!(n, 40, "no increment lost");
    store.close().await;
}

/// A constraint violation comes back as sqlx reports one (a unique violation, with the
/// database's message), and the connection stays usable.
async fn a_unique_violation_is_reported_as_such_and_the_writer_stays_usable(db: Db) {
    let env = TestEnv::new(db).await;
    let store = open(&env).await;
    let mut tx = store.write_tx().await.unwrap();
    query("INSERT INTO scratch (k, n) VALUES ('one', 1)").execute(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.write_tx().await.unwrap();
    let err = query("INSERT INTO scratch (k, n) VALUES ('one', 2)").execute(&mut tx).await.unwrap_err();
    let db_err = err.as_database_error().expect("a database error");
    assert!(db_err.is_unique_violation(), "{err}");
    assert!(!db_err.message().is_empty());
    drop(tx);
    let err = query_built("SELEC broken".to_string()).execute(&mut store.write_tx().await.unwrap()).await.unwrap_err();
    assert!(err.to_string().to_lowercase().contains("syntax"), "{err}");
    let mut tx = store.write_tx().await.unwrap();
    query("INSERT INTO scratch (k, n) VALUES ('two', 2)").execute(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(count(&store).await, 2);
    store.close().await;
}

/// Values come back with their types on both drivers: null, integers, floats, text.
async fn values_round_trip_with_their_types(db: Db) {
    let env = TestEnv::new(db).await;
    let store = open(&env).await;
    let mut tx = store.write_tx().await.unwrap();
    query("CREATE TABLE IF NOT EXISTS typed (k TEXT PRIMARY KEY, i BIGINT, f DOUBLE PRECISION, t TEXT)").execute(&mut tx).await.unwrap();
    query("INSERT INTO typed (k, i, f, t) VALUES ($1, $2, $3, $4)")
        .bind("a")
        .bind(i64::MIN)
        .bind(2.5f64)
        .bind("héllo 'quoted' \"x\"")
        .execute(&mut tx)
        .await
        .unwrap();
    query("INSERT INTO typed (k, i, f, t) VALUES ($1, $2, NULL, $3)")
        .bind("b")
        .bind(None::<i64>)
        .bind(None::<String>)
        .execute(&mut tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let rows = query("SELECT k, i, f, t FROM typed ORDER BY k").fetch_all(&mut store.read().await.unwrap()).await.unwrap();
    assert_eq!(rows[0].try_get::<i64, _>("i").unwrap(), i64::MIN);
    assert_eq!(rows[0].try_get::<f64, _>("f").unwrap(), 2.5);
    assert_eq!(rows[0].try_get::<String, _>("t").unwrap(), "héllo 'quoted' \"x\"");
    assert_eq!(rows[1].try_get::<Option<i64>, _>("i").unwrap(), None);
    assert_eq!(rows[1].try_get::<Option<f64>, _>("f").unwrap(), None);
    assert_eq!(rows[1].try_get::<Option<String>, _>("t").unwrap(), None);
    store.close().await;
}

/// After `close`, new transactions are refused on both drivers (SQLite's connections live
/// as long as any clone of the store; the store refuses them as sqlx refuses a closed pool).
async fn a_closed_store_refuses_new_transactions(db: Db) {
    let env = TestEnv::new(db).await;
    let store = open(&env).await;
    let clone = store.clone();
    store.close().await;
    assert!(clone.write_tx().await.is_err(), "no write after close");
    assert!(clone.read().await.is_err(), "no read after close");
}

/// A SQLite URL means what it says: without `mode=rwc` a missing file is an error (a typo
/// in the path must not start an empty queue), the path is percent-decoded as sqlx decodes
/// it, and modes or parameters that cannot hold a queue are refused by name.
#[tokio::test]
async fn sqlite_urls_create_only_with_mode_rwc_and_refuse_what_cannot_hold_a_queue() {
    let dir = tempdir();
    let missing = dir.join("typo.db");
    let err = Store::connect(&format!("sqlite://{}", missing.display())).await.unwrap_err();
    assert!(format!("{err:#}").contains("unable to open"), "{err:#}");
    assert!(!missing.exists(), "no empty database was created");
    let err = Store::connect(&format!("sqlite://{}?mode=rw", missing.display())).await.unwrap_err();
    assert!(!missing.exists(), "{err:#}");

    let spaced = dir.join("with space.db");
    let url = format!("sqlite://{}?mode=rwc", dir.join("with%20space.db").display());
    let store = Store::connect(&url).await.expect("percent-decoded path opens");
    store.close().await;
    assert!(spaced.exists(), "the decoded name was created");
    let store =
        Store::connect(&format!("sqlite://{}", dir.join("with%20space.db").display())).await.expect("an existing file opens without rwc");
    store.close().await;

    for (url, word) in [
        (format!("sqlite://{}?mode=ro", spaced.display()), "mode=ro"),
        (format!("sqlite://{}?cache=shared", spaced.display()), "cache"),
        ("sqlite::memory:".to_string(), "in-memory"),
    ] {
        let err = Store::connect(&url).await.unwrap_err();
        assert!(format!("{err:#}").contains(word), "{url}: {err:#}");
    }
}

/// On SQLite, plugins' tables are in a file of their own with its own writer: a plugin
/// writes while a queue transaction holds the queue's file.
#[tokio::test]
async fn a_plugin_table_write_does_not_wait_for_the_queue_write_lock() {
    let dir = tempdir();
    let queue = Store::open_sqlite(&dir).await.unwrap();
    let plugins = queue.plugin_store().await.unwrap();
    assert!(dir.join("fluid.plugins.db").exists());
    let held = queue.write_tx().await.unwrap();
    let write = async {
        let mut tx = plugins.write_tx().await.unwrap();
        query("CREATE TABLE p_1_x_t (k TEXT PRIMARY KEY)").execute(&mut tx).await.unwrap();
        query("INSERT INTO p_1_x_t (k) VALUES ('a')").execute(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(10), write).await.expect("the plugins' write went ahead while the queue's was held");
    drop(held);
    // And the queue's file holds no plugin table.
    let n: i64 = query("SELECT COUNT(*) AS n FROM sqlite_master WHERE substr(name, 1, 2) = 'p_'")
        .fetch_one(&mut queue.read().await.unwrap())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(n, 0);
    plugins.close().await;
    queue.close().await;
}

/// Tables an earlier fluid kept in the queue's SQLite file move to the plugins' file with
/// their rows, schema rows and indexes; a move cut short after the copy (the table in both
/// files) ends at the next open without copying twice; a queue copy with rows the plugins'
/// copy lacks is never dropped.
#[tokio::test]
async fn plugin_tables_left_in_the_queue_file_move_with_every_row_and_index() {
    let dir = tempdir();
    let queue = Store::open_sqlite(&dir).await.unwrap();
    let old_layout = |table: &'static str, plugin: &'static str, name: &'static str, rows: i64| {
        let queue = queue.clone();
        async move {
            let mut tx = queue.write_tx().await.unwrap();
            query_built(format!("CREATE TABLE \"{table}\" (\"id\" TEXT PRIMARY KEY, \"n\" BIGINT NOT NULL)"))
                .execute(&mut tx)
                .await
                .unwrap();
            query_built(format!("CREATE INDEX \"{table}_n\" ON \"{table}\" (\"n\")")).execute(&mut tx).await.unwrap();
            for i in 0..rows {
                query_built(format!("INSERT INTO \"{table}\" (\"id\", \"n\") VALUES ($1, $2)"))
                    .bind(format!("r{i}"))
                    .bind(i)
                    .execute(&mut tx)
                    .await
                    .unwrap();
            }
            query("INSERT INTO fluid_plugin_tables (plugin, name, physical, columns, primary_key) VALUES ($1, $2, $3, '[]', '[\"id\"]')")
                .bind(plugin)
                .bind(name)
                .bind(table)
                .execute(&mut tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    };
    old_layout("p_2_db_fluid_tasks", "db", "fluid_tasks", 500).await;
    old_layout("p_5_stats_counts", "stats", "counts", 3).await;
    let scalar = |store: Store, sql: &'static str| async move {
        query(sql).fetch_one(&mut store.read().await.unwrap()).await.unwrap().try_get::<i64, _>("n").unwrap()
    };

    let plugins = queue.plugin_store().await.unwrap();
    assert_eq!(scalar(plugins.clone(), "SELECT COUNT(*) AS n FROM p_2_db_fluid_tasks").await, 500);
    assert_eq!(scalar(plugins.clone(), "SELECT SUM(n) AS n FROM p_2_db_fluid_tasks").await, (0..500).sum::<i64>());
    assert_eq!(scalar(plugins.clone(), "SELECT COUNT(*) AS n FROM p_5_stats_counts").await, 3);
    assert_eq!(scalar(plugins.clone(), "SELECT COUNT(*) AS n FROM fluid_plugin_tables").await, 2);
    assert_eq!(
        scalar(plugins.clone(), "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'index' AND name = 'p_2_db_fluid_tasks_n'").await,
        1
    );
    assert_eq!(scalar(queue.clone(), "SELECT COUNT(*) AS n FROM fluid_plugin_tables").await, 0);
    assert_eq!(scalar(queue.clone(), "SELECT COUNT(*) AS n FROM sqlite_master WHERE substr(name, 1, 2) = 'p_'").await, 0);
    plugins.close().await;

    // Cut short: the copy committed in the plugins' file, the drop never happened.
    old_layout("p_5_stats_counts", "stats", "counts", 3).await;
    let plugins = queue.plugin_store().await.unwrap();
    assert_eq!(scalar(plugins.clone(), "SELECT COUNT(*) AS n FROM p_5_stats_counts").await, 3, "not copied twice");
    assert_eq!(scalar(queue.clone(), "SELECT COUNT(*) AS n FROM sqlite_master WHERE substr(name, 1, 2) = 'p_'").await, 0);
    plugins.close().await;

    // In both files, and the queue's copy holds a row the plugins' lacks (an older fluid ran
    // on these files since): nothing is dropped, the queue's copy is kept under a new name.
    old_layout("p_5_stats_counts", "stats", "counts", 4).await;
    let plugins = queue.plugin_store().await.unwrap();
    assert_eq!(scalar(plugins.clone(), "SELECT COUNT(*) AS n FROM p_5_stats_counts").await, 3);
    let kept: String = query("SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, 2) = 'p_'")
        .fetch_one(&mut queue.read().await.unwrap())
        .await
        .expect("the queue's copy is kept")
        .try_get("name")
        .unwrap();
    assert!(kept.starts_with("p_5_stats_counts_unmoved_"), "{kept}");
    let rows: i64 = query_built(format!("SELECT COUNT(*) AS n FROM \"{kept}\""))
        .fetch_one(&mut queue.read().await.unwrap())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(rows, 4, "every row of the queue's copy is kept");
    assert_eq!(scalar(queue.clone(), "SELECT COUNT(*) AS n FROM fluid_plugin_tables").await, 0, "and not moved again");
    plugins.close().await;
    queue.close().await;
}

fn tempdir() -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("fluid-store-url-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn queued_run(n: usize) -> TaskRun {
    let t = to_datetime(now_us() - 1_000_000 + n as i64);
    TaskRun::queued(format!("{n:032x}"), "cycle", t)
}

/// A statement given a time limit (plugin storage's `statement_timeout_ms`) is stopped past
/// it on both backends, read or write, and the limit ends with the statement: it is never
/// left on a pooled connection for the host's own statements.
async fn a_time_limit_stops_a_statement_and_ends_with_it(db: Db) {
    let env = TestEnv::new(db).await;
    let store = open(&env).await;
    let rows = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000)";
    let endless = || query_built(format!("{rows} SELECT COUNT(*) AS n FROM c"));
    let stopped = |e: sqlx::Error| {
        let text = e.to_string();
        assert!(text.contains("interrupt") || text.contains("statement timeout"), "{text}");
    };
    let limit = Duration::from_millis(50);
    let mut conn = store.read().await.unwrap();
    stopped(endless().time_limit(limit).fetch_all(&mut conn).await.unwrap_err());
    stopped(endless().time_limit(limit).fetch_all_within(&mut conn, 1 << 20).await.unwrap_err());
    let n: i64 = query("SELECT COUNT(*) AS n FROM scratch").time_limit(limit).fetch_one(&mut conn).await.unwrap().try_get("n").unwrap();
    assert_eq!(n, 0, "a statement within its limit answers");
    if store.backend == Backend::Postgres {
        let row = query("SHOW statement_timeout").fetch_one(&mut conn).await.unwrap();
        assert_eq!(row.try_get::<String, _>(0usize).unwrap(), "0", "the limit did not outlive its statement");
    }
    drop(conn);
    let mut tx = store.write_tx().await.unwrap();
    let fill = query_built(format!("INSERT INTO scratch (k, n) {rows} SELECT 'k' || x, x FROM c"));
    stopped(fill.time_limit(limit).execute(&mut tx).await.unwrap_err());
    drop(tx);
    assert_eq!(count(&store).await, 0, "nothing of the stopped write stays");
}

/// What one scripted scenario of the scheduler cycle gives, runs named by their number:
/// each step's snapshots as (run, state, error, retry attempts, rate-limit attempts).
type Trace = Vec<(String, Vec<(usize, TaskState, Option<String>, u32, u32)>)>;

/// One scenario of claims and finishes through `finish_and_claim`, the cycle every host
/// runs: a task at its concurrency limit (with a rate-limit retry), a disabled task, a
/// group of tasks with one worker left in its share, and finishes that succeed, fail for
/// good, fail with a retry, and come with a stale lease.
async fn cycle_trace(db: Db) -> Trace {
    use fluid_host::RetryPolicy;
    use fluid_host::store::ShareRoom;
    let env = TestEnv::new(db).await;
    let store = Store::connect(&env.url()).await.expect("store opens");
    let tasks = ["lim", "lim", "lim", "off", "grp", "grp", "free", "free"];
    let runs: Vec<TaskRun> = tasks.iter().enumerate().map(|(n, t)| TaskRun { task: t.to_string(), ..queued_run(n) }).collect();
    store.insert_runs(&runs).await.unwrap();
    store.set_enabled("off", false).await.unwrap();
    let minute = RetryPolicy::new(5).wait(Duration::from_secs(60));
    let rules: BTreeMap<String, ClaimRules> = [
        ("lim".to_string(), ClaimRules { max_concurrency: 1, rate_limit_retry: Some(minute.clone()), share: None }),
        ("off".to_string(), ClaimRules::default()),
        ("grp".to_string(), ClaimRules { share: Some(ShareRoom { group: "g".into(), room: 1 }), ..Default::default() }),
        ("free".to_string(), ClaimRules::default()),
    ]
    .into();
    let index = |id: &str| runs.iter().position(|r| r.id == id).unwrap_or(usize::MAX);
    let snap = |r: &TaskRun| (index(&r.id), r.state, r.error.clone(), r.retry_attempt, r.rate_limit_attempt);
    let mut trace: Trace = vec![];
    let (_, first) = store.finish_and_claim(&[], "h", 8, &rules).await.unwrap();
    let mut step: Vec<_> = first.changes().iter().map(snap).collect();
    step.sort_by_key(|s| s.0);
    trace.push(("first claim".into(), step));
    let lease = |id: &str| first.started.iter().find(|r| r.run.id == id).map(|r| r.lease);
    let finish = |n: usize, outcome: Outcome, retry: Option<Duration>, stale: bool| {
        let id = runs[n].id.clone();
        let lease = lease(&id).unwrap_or(1) + if stale { 1 } else { 0 };
        Finish { id, lease, outcome, retry_after: retry }
    };
    let started: Vec<usize> = first.started.iter().map(|r| index(&r.run.id)).collect();
    let mut finishes = vec![];
    for (k, n) in started.iter().enumerate() {
        finishes.push(match k % 4 {
            0 => finish(*n, Outcome::Success, None, false),
            1 => finish(*n, Outcome::Failure("for good".into()), None, false),
            2 => finish(*n, Outcome::Failure("again".into()), Some(Duration::from_secs(60)), false),
            _ => finish(*n, Outcome::Success, None, true),
        });
    }
    let (results, second) = store.finish_and_claim(&finishes, "h", 8, &rules).await.unwrap();
    for (f, r) in finishes.iter().zip(&results) {
        let what = match r {
            Ok(written) => written.iter().map(snap).collect(),
            Err(StoreError::Conflict { state, .. }) => {
                vec![(index(&f.id), TaskState::parse(state).unwrap(), Some("fenced out".into()), 0, 0)]
            }
            Err(e) => panic!("{e}"),
        };
        trace.push((format!("finish of run {}", index(&f.id)), what));
    }
    let mut step: Vec<_> = second.changes().iter().map(snap).collect();
    step.sort_by_key(|s| s.0);
    trace.push(("second claim".into(), step));
    // The state machine has one source, `TaskState::can_become`: every change the cycle
    // wrote to the feed, run by run, is a move it allows.
    let mut last: std::collections::HashMap<String, TaskState> = std::collections::HashMap::new();
    for e in store.events_after(0, 100_000, usize::MAX).await.unwrap() {
        let from = last.insert(e.run.id.clone(), e.run.state).unwrap_or(TaskState::Init);
        assert!(from.can_become(e.run.state), "run {}: {from} -> {} is not a move the state machine allows", index(&e.run.id), e.run.state);
    }
    store.close().await;
    trace
}

/// The cycle is one thing in two implementations: on SQLite it is Rust, on PostgreSQL a
/// server-side function. The same scenario must give the same snapshots on both, and
/// every change either writes must be a move `TaskState::can_become` allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_and_postgresql_cycles_give_the_same_results() {
    let sqlite = cycle_trace(Db::Sqlite).await;
    let postgres = cycle_trace(Db::Postgres).await;
    assert!(sqlite.len() >= 4 && sqlite[0].1.len() >= 4, "the scenario exercises the cycle: {sqlite:#?}");
    assert_eq!(sqlite, postgres);
}

crate::backend_tests!(
    a_time_limit_stops_a_statement_and_ends_with_it,
    a_closed_store_refuses_new_transactions,
    numbered_parameters_bind_by_number_wherever_they_appear,
    a_dropped_write_transaction_leaves_nothing_and_the_next_one_begins,
    concurrent_write_transactions_all_commit,
    a_unique_violation_is_reported_as_such_and_the_writer_stays_usable,
    values_round_trip_with_their_types,
);
