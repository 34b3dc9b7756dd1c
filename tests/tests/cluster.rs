//! Three real `fluid serve` processes on one PostgreSQL database: 5,000 runs, one process
//! killed with SIGKILL half-way. Every run ends in exactly one terminal state, in the runs
//! table and in the db plugin's history; no run executes twice (a run lost with its host
//! is `interrupted`, and `sleepy` has no retry policy, so it is never re-run); schedules
//! are not doubled.

use fluid_tests::pg::TestDb;
use sqlx::{AnyPool, Row};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 5000;
const HOSTS: usize = 3;

struct Proc {
    child: Child,
    port: u16,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn(dir: &Path, url: &str) -> Proc {
    let port = free_port();
    std::fs::create_dir_all(dir).unwrap();
    let log = std::fs::File::create(dir.join("host.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_fluid-test-host"))
        .args(["--data", dir.to_str().unwrap(), "--database-url", url, "--log", "warn"])
        .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--host-timeout", "2", "--workers", "8", "--no-examples"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn fluid-test-host");
    Proc { child, port }
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn scalar(pool: &AnyPool, sql: &'static str) -> i64 {
    sqlx::query(sql).fetch_one(pool).await.unwrap().try_get::<i64, _>(0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_share_one_queue_and_survive_a_sigkill() {
    let db = TestDb::create().await;
    let t0 = Instant::now();
    let root: PathBuf = std::env::temp_dir().join(format!("fluid-cluster-{}", &db.name));
    let mut procs: Vec<Option<Proc>> = (0..HOSTS).map(|i| Some(spawn(&root.join(format!("h{i}")), &db.url))).collect();
    let http = reqwest::Client::new();
    for p in procs.iter().flatten() {
        let url = format!("http://127.0.0.1:{}/tasks-status", p.port);
        wait_until("a host to answer", Duration::from_secs(120), || {
            let (http, url) = (http.clone(), url.clone());
            async move { http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
    }
    let started = Instant::now();
    let pool = AnyPool::connect(&db.url).await.unwrap();

    // 5,000 runs, queued through all three hosts, 16 requests at a time.
    let ports: Vec<u16> = procs.iter().flatten().map(|p| p.port).collect();
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..RUNS {
        let url = format!("http://127.0.0.1:{}/tasks/sleepy", ports[i % HOSTS]);
        let http = http.clone();
        pending.spawn(async move {
            let r = http.post(url).body(r#"{"seconds": 0.01}"#).send().await.expect("POST");
            assert_eq!(r.status().as_u16(), 201);
        });
        if pending.len() >= 16 {
            pending.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(r) = pending.join_next().await {
        r.unwrap();
    }

    // Half-way through, kill one host outright.
    wait_until("half of the runs to finish", Duration::from_secs(300), || {
        let pool = pool.clone();
        async move {
            scalar(&pool, "SELECT COUNT(*) FROM fluid_runs WHERE task = 'sleepy' AND state IN ('success','failure','aborted','rate_limited','interrupted')").await
                >= (RUNS / 2) as i64
        }
    })
    .await;
    let victim = procs[0].take().unwrap();
    drop(victim); // SIGKILL (Child::kill) and reap

    wait_until("every run to reach a terminal state", Duration::from_secs(300), || {
        let pool = pool.clone();
        async move { scalar(&pool, "SELECT COUNT(*) FROM fluid_runs WHERE task = 'sleepy' AND state IN ('queued','running')").await == 0 }
    })
    .await;
    let elapsed = started.elapsed();
    eprintln!("{RUNS} runs on {HOSTS} hosts (one killed) in {elapsed:?}");

    // Exactly one terminal state per run.
    assert_eq!(scalar(&pool, "SELECT COUNT(*) FROM fluid_runs WHERE task = 'sleepy'").await, RUNS as i64);
    let interrupted = scalar(&pool, "SELECT COUNT(*) FROM fluid_runs WHERE task = 'sleepy' AND state = 'interrupted'").await;
    let success = scalar(&pool, "SELECT COUNT(*) FROM fluid_runs WHERE task = 'sleepy' AND state = 'success'").await;
    assert_eq!(success + interrupted, RUNS as i64, "only success, or interrupted with the killed host");
    assert!(interrupted <= 8, "at most the killed host's 8 workers were lost: {interrupted}");
    // Nothing executed twice: one `running` change per run in the feed.
    assert_eq!(
        scalar(
            &pool,
            "SELECT COUNT(*) FROM (SELECT run_id FROM fluid_events WHERE state = 'running' GROUP BY run_id HAVING COUNT(*) > 1) AS twice"
        )
        .await,
        0
    );
    assert_eq!(scalar(&pool, "SELECT COUNT(DISTINCT run_id) FROM fluid_events e JOIN fluid_runs r ON r.id = e.run_id WHERE r.task = 'sleepy' AND e.state = 'running'").await, RUNS as i64);

    // History: the db plugin (delivered by one host at a time) agrees with the runs table.
    wait_until("the db plugin to consume the feed", Duration::from_secs(300), || {
        let pool = pool.clone();
        async move {
            scalar(&pool, "SELECT COALESCE(MAX(seq), 0) FROM fluid_events").await
                <= scalar(&pool, "SELECT COALESCE(MAX(seq), 0) FROM fluid_plugin_checkpoints WHERE plugin = 'db'").await
        }
    })
    .await;
    assert_eq!(
        scalar(
            &pool,
            "SELECT COUNT(*) FROM p_2_db_fluid_tasks h JOIN fluid_runs r ON r.id = h.id WHERE r.task = 'sleepy' AND h.state = r.state"
        )
        .await,
        RUNS as i64
    );

    // Schedules: `tick` fires every second on whichever host wins each due time.
    let ticks = scalar(&pool, "SELECT COUNT(*) FROM fluid_runs WHERE task = 'tick'").await;
    let bound = t0.elapsed().as_secs() as i64 + 3;
    assert!(ticks <= bound, "{ticks} tick runs in {:?}: a due time fired more than once", t0.elapsed());
    assert!(ticks >= 1, "the schedule fired");
    pool.close().await;
    drop(procs);
    let _ = std::fs::remove_dir_all(&root);
}
