//! The scheduler core end to end, in process: a real `Host` on a real SQLite file, runs
//! queued through the scheduler or the real HTTP server, observed through the change
//! broadcast (`Scheduler::subscribe`) and the store.

mod common;

use common::*;
use fluid_host::scheduler::QueueOptions;
use fluid_host::store::Store;
use fluid_host::{Host, Priority, RetryPolicy, Schedule, Task, TaskContext, TaskError, TaskState};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn ok_task(name: &str) -> Task {
    Task::new(name).run(|_ctx: TaskContext| async { Ok(()) })
}

/// Finishes `b` as a task that waits on `gate`, counting its executions in `flight`.
fn gated_task(b: fluid_host::scheduler::TaskBuilder, gate: &Gate, flight: &InFlight) -> Task {
    let (gate, flight) = (gate.clone(), flight.clone());
    b.run(move |_ctx: TaskContext| {
        let (gate, flight) = (gate.clone(), flight.clone());
        async move {
            let _in = flight.enter();
            gate.wait().await;
            Ok(())
        }
    })
}

async fn runs_go_queued_running_then_success_or_failure_with_error(db: Db) {
    let dir = TestEnv::new(db).await;
    let tasks = vec![
        ok_task("ok"),
        Task::new("boom").run(|_ctx: TaskContext| async { Err(TaskError::failed("boom: it broke")) }),
        // A NUL in an error: PostgreSQL's text refuses it, and the end must still be recorded.
        Task::new("nul").run(|_ctx: TaskContext| async { Err(TaskError::failed("bad\0byte")) }),
    ];
    let host = start(dir.config(), tasks).await;
    let s = &host.scheduler;
    let mut rx = s.subscribe();

    let ok = queue(s, "ok", json!({})).await;
    assert_eq!(ok.state, TaskState::Queued);
    let seen = history_until(&mut rx, &ok.id, |r| r.state.is_done()).await;
    assert_eq!(states(&seen), [TaskState::Queued, TaskState::Running, TaskState::Success]);
    let done = seen.last().unwrap();
    assert!(done.error.is_none());
    assert!(done.queued.unwrap() <= done.start.unwrap() && done.start.unwrap() <= done.end.unwrap());

    let bad = queue(s, "boom", json!({})).await;
    let seen = history_until(&mut rx, &bad.id, |r| r.state.is_done()).await;
    assert_eq!(states(&seen), [TaskState::Queued, TaskState::Running, TaskState::Failure]);
    assert_eq!(seen.last().unwrap().error.as_deref(), Some("boom: it broke"));
    // The store agrees with what was broadcast.
    let stored = s.get_run(&bad.id).await.unwrap().unwrap();
    assert_eq!(stored.state, TaskState::Failure);
    assert_eq!(stored.error.as_deref(), Some("boom: it broke"));

    let nul = queue(s, "nul", json!({})).await;
    let seen = history_until(&mut rx, &nul.id, |r| r.state.is_done()).await;
    assert_eq!(seen.last().unwrap().error.as_deref(), Some("bad\u{FFFD}byte"));
    let after = queue(s, "ok", json!({})).await;
    assert_eq!(history_until(&mut rx, &after.id, |r| r.state.is_done()).await.last().unwrap().state, TaskState::Success);
    host.shutdown(Duration::from_secs(5)).await;
}

/// A receiver of the change broadcast that falls behind holds every change it has not
/// read: runs with params past the broadcast's bounds come with them left out, while the
/// store keeps them whole. Params under the bounds come whole.
async fn the_broadcast_leaves_out_params_past_its_bounds_and_the_store_keeps_them(db: Db) {
    use fluid_host::scheduler::{BROADCAST_PARAMS_BYTES, BROADCAST_PARAMS_VALUES};
    let dir = TestEnv::new(db).await;
    let host = start(dir.config(), vec![ok_task("ok")]).await;
    let s = &host.scheduler;
    let mut rx = s.subscribe();
    let marker = json!({"$truncated": {"params": true}});
    let many = json!({ "v": vec![0; BROADCAST_PARAMS_VALUES] });
    let long = json!({ "s": "x".repeat(BROADCAST_PARAMS_BYTES) });
    // At both bounds: the object, the array and the string are 3 values beside the
    // numbers, and the keys 2 bytes beside the string's.
    let under = json!({ "v": vec![0; BROADCAST_PARAMS_VALUES - 3], "s": "x".repeat(BROADCAST_PARAMS_BYTES - 2) });
    for (params, whole) in [(many, false), (long, false), (under, true)] {
        let run = queue(s, "ok", params.clone()).await;
        let seen = history_until(&mut rx, &run.id, |r| r.state.is_done()).await;
        assert_eq!(states(&seen), [TaskState::Queued, TaskState::Running, TaskState::Success]);
        for r in &seen {
            let expected = if whole { &params } else { &marker };
            assert!(r.params == *expected, "{:?}: params should come {}", r.state, if whole { "whole" } else { "left out" });
        }
        assert!(s.get_run(&run.id).await.unwrap().unwrap().params == params, "stored whole");
    }
    host.shutdown(Duration::from_secs(5)).await;
}

async fn failed_run_is_retried_under_same_id_no_sooner_than_policy_delay(db: Db) {
    let dir = TestEnv::new(db).await;
    let policy = RetryPolicy::new(3).wait(Duration::from_millis(150)).backoff(2.0).max_wait(Duration::from_secs(5));
    let flaky = Task::new("flaky").retry(policy.clone()).run(|ctx: TaskContext| async move {
        if ctx.run.retry_attempt < 2 {
            return Err(TaskError::failed(format!("attempt {} fails", ctx.run.retry_attempt)));
        }
        Ok(())
    });
    let host = start(dir.config(), vec![flaky]).await;
    let s = &host.scheduler;
    let mut rx = s.subscribe();
    let run = queue(s, "flaky", json!({})).await;
    let seen = history_until(&mut rx, &run.id, |r| r.state == TaskState::Success).await;
    use TaskState::*;
    assert_eq!(
        states(&seen),
        [Queued, Running, Failure, Queued, Running, Failure, Queued, Running, Success],
        "every state change of a retried run is broadcast"
    );
    let attempts: Vec<u32> = seen.iter().map(|r| r.retry_attempt).collect();
    assert_eq!(attempts, [0, 0, 0, 1, 1, 1, 2, 2, 2]);
    assert_eq!(seen[2].error.as_deref(), Some("attempt 0 fails"));
    assert_eq!(seen[5].error.as_deref(), Some("attempt 1 fails"));
    for (failure, retry_number) in [(2usize, 1u32), (5, 2)] {
        let ended = seen[failure].end.expect("a failure has an end");
        let requeued = &seen[failure + 1];
        let started = seen[failure + 2].start.expect("a running run has a start");
        let delay = chrono::Duration::from_std(policy.delay(retry_number)).unwrap();
        assert!(requeued.execute_after.unwrap() >= ended + delay, "retry {retry_number} is due after its delay");
        assert!(
            started - ended >= delay,
            "retry {retry_number} started {:?} after the failure, before its delay {delay:?}",
            started - ended
        );
    }
    let stored = s.get_run(&run.id).await.unwrap().unwrap();
    assert_eq!((stored.state, stored.retry_attempt, stored.error), (Success, 2, None));
    host.shutdown(Duration::from_secs(5)).await;
}

async fn exhausted_retries_end_in_failure(db: Db) {
    let dir = TestEnv::new(db).await;
    let flight = InFlight::default();
    let f = flight.clone();
    let always = Task::new("always-fails").retry(RetryPolicy::new(2).wait(Duration::from_millis(30))).run(move |_ctx: TaskContext| {
        let f = f.clone();
        async move {
            let _in = f.enter();
            Err(TaskError::failed("nope"))
        }
    });
    let host = start(dir.config(), vec![always]).await;
    let s = &host.scheduler;
    let run = queue(s, "always-fails", json!({})).await;
    // The end of the last attempt is committed with no re-queue in the same transaction.
    let last = wait_run(s, &run.id, "failed for good", |r| r.state == TaskState::Failure && r.retry_attempt == 2).await;
    assert_eq!(last.error.as_deref(), Some("nope"));
    assert_eq!(flight.total(), 3, "the first attempt and two retries");
    host.shutdown(Duration::from_secs(5)).await;
    let store = Store::connect(&dir.url()).await.unwrap();
    let stored = store.get_run(&run.id).await.unwrap().unwrap();
    assert_eq!((stored.state, stored.retry_attempt), (TaskState::Failure, 2));
    store.close().await;
}

async fn queued_runs_start_by_priority_then_fifo(db: Db) {
    let dir = TestEnv::new(db).await;
    let gate = Gate::new();
    let flight = InFlight::default();
    let order: Arc<Mutex<Vec<String>>> = Arc::default();
    let o = order.clone();
    let record = Task::new("record").run(move |ctx: TaskContext| {
        let o = o.clone();
        async move {
            o.lock().unwrap().push(ctx.params_json()["label"].as_str().unwrap_or("?").to_string());
            Ok(())
        }
    });
    let mut cfg = dir.config();
    cfg.scheduler.workers = 1;
    let host = start(cfg, vec![gated_task(Task::new("blocker"), &gate, &flight), record]).await;
    let s = &host.scheduler;
    // Occupy the only worker, so everything queued next waits in the queue.
    let blocker = queue(s, "blocker", json!({})).await;
    wait_state(s, &blocker.id, TaskState::Running).await;
    let mut ids = Vec::new();
    for (label, p) in [
        ("low-1", Priority::Low),
        ("medium-1", Priority::Medium),
        ("high-1", Priority::High),
        ("low-2", Priority::Low),
        ("high-2", Priority::High),
        ("medium-2", Priority::Medium),
        ("high-3", Priority::High),
        ("low-3", Priority::Low),
    ] {
        let run = s.queue("record", json!({"label": label}), QueueOptions { priority: Some(p), ..Default::default() }).await.unwrap();
        assert_eq!(run.priority, p);
        ids.push(run.id);
    }
    assert!(order.lock().unwrap().is_empty(), "nothing starts while the only worker is busy");
    gate.open();
    for id in &ids {
        assert_eq!(wait_done(s, id).await.state, TaskState::Success);
    }
    assert_eq!(*order.lock().unwrap(), ["high-1", "high-2", "high-3", "medium-1", "medium-2", "low-1", "low-2", "low-3"]);
    host.shutdown(Duration::from_secs(5)).await;
}

async fn max_concurrency_holds_under_contention_and_excess_is_rate_limited(db: Db) {
    let dir = TestEnv::new(db).await;
    let gate = Gate::new();
    let flight = InFlight::default();
    let limited = gated_task(Task::new("limited").max_concurrency(2), &gate, &flight);
    let mut cfg = dir.config();
    cfg.scheduler.workers = 6;
    let host = start(cfg, vec![limited]).await;
    let s = &host.scheduler;
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(queue(s, "limited", json!({})).await.id);
    }
    // While two runs hold the limit, every other one is turned away at the door.
    let mut ended = BTreeMap::new();
    for id in &ids {
        let r = wait_run(s, id, "running or rate_limited", |r| matches!(r.state, TaskState::Running | TaskState::RateLimited)).await;
        *ended.entry(r.state).or_insert(0) += 1;
        if r.state == TaskState::RateLimited {
            assert_eq!(r.error.as_deref(), Some("max_concurrency 2 reached"));
            assert!(r.start.is_none(), "a rate-limited run never started");
        }
    }
    assert_eq!(ended, BTreeMap::from([(TaskState::Running, 2), (TaskState::RateLimited, 6)]));
    gate.open();
    let mut finals = BTreeMap::new();
    for id in &ids {
        *finals.entry(wait_done(s, id).await.state).or_insert(0) += 1;
    }
    assert_eq!(finals, BTreeMap::from([(TaskState::Success, 2), (TaskState::RateLimited, 6)]));
    assert!(flight.max() <= 2, "max in flight was {}", flight.max());
    assert_eq!(flight.total(), 2, "rate-limited runs never execute");
    host.shutdown(Duration::from_secs(5)).await;
}

/// Tasks sharing a worker share hold at most its cap of this host's workers (0: half),
/// however many of their runs are queued ahead, and other tasks' runs go past them.
async fn a_worker_share_caps_its_group_and_other_runs_go_past_its_queued_ones(db: Db) {
    let dir = TestEnv::new(db).await;
    let gate = Gate::new();
    let flight = InFlight::default();
    let a = gated_task(Task::new("g.a").worker_share("g", 0), &gate, &flight);
    let b = gated_task(Task::new("g.b").worker_share("g", 0), &gate, &flight);
    let mut cfg = dir.config();
    cfg.scheduler.workers = 4;
    let host = start(cfg, vec![a, b, ok_task("ok")]).await;
    let s = &host.scheduler;
    let mut grouped = Vec::new();
    for i in 0..6 {
        grouped.push(queue(s, if i % 2 == 0 { "g.a" } else { "g.b" }, json!({})).await.id);
    }
    poll("two runs of the group executing", WAIT, || async { (flight.total() == 2).then_some(()) }).await;
    // Runs queued behind the group's go through the two workers left.
    let mut others = Vec::new();
    for _ in 0..10 {
        others.push(queue(s, "ok", json!({})).await.id);
    }
    for id in &others {
        assert_eq!(wait_done(s, id).await.state, TaskState::Success);
    }
    let mut states = BTreeMap::new();
    for id in &grouped {
        *states.entry(s.get_run(id).await.unwrap().unwrap().state).or_insert(0) += 1;
    }
    assert_eq!(states, BTreeMap::from([(TaskState::Queued, 4), (TaskState::Running, 2)]));
    gate.open();
    for id in &grouped {
        assert_eq!(wait_done(s, id).await.state, TaskState::Success);
    }
    assert_eq!((flight.max(), flight.total()), (2, 6), "never more than half of the 4 workers");
    host.shutdown(Duration::from_secs(5)).await;
}

/// A scheduled task of a worker share whose last scheduled run has not started (its share
/// is full) skips its due times instead of piling runs up in the queue.
async fn a_schedule_of_a_full_worker_share_skips_its_due_times_instead_of_piling_up(db: Db) {
    let dir = TestEnv::new(db).await;
    let gate = Gate::new();
    let flight = InFlight::default();
    let period = Duration::from_millis(100);
    let tick = gated_task(Task::new("g.tick").worker_share("g", 1).schedule(Schedule::every(period)), &gate, &flight);
    let mut cfg = dir.config();
    cfg.scheduler.workers = 4;
    cfg.scheduler.run_schedules = true;
    cfg.scheduler.schedules.tick = Duration::from_millis(20);
    let host = start(cfg, vec![tick]).await;
    let store = host.scheduler.store().clone();
    poll("the first scheduled run holding the share", WAIT, || async { (flight.total() == 1).then_some(()) }).await;
    let from = fluid_host::time::now_us();
    // Ten due times go by while the share is full.
    poll("ten due times", WAIT, || async {
        let next = store.schedule_due("g.tick", 0).await.unwrap();
        (next > from + 10 * period.as_micros() as i64).then_some(())
    })
    .await;
    let events = store.events_after(0, 100_000, usize::MAX).await.unwrap();
    let mut ids: Vec<String> = events.iter().filter(|e| e.run.task == "g.tick").map(|e| e.run.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2, "one running, one waiting to start, no more: {ids:?}");
    gate.open();
    host.shutdown(Duration::from_secs(5)).await;
}

async fn rate_limit_retry_defers_excess_runs_until_all_succeed_within_the_limit(db: Db) {
    let dir = TestEnv::new(db).await;
    let gate = Gate::new();
    let flight = InFlight::default();
    let (g, f) = (gate.clone(), flight.clone());
    let limited = Task::new("limited").max_concurrency(2).rate_limit_retry(RetryPolicy::default().wait(Duration::from_millis(20))).run(
        move |_ctx: TaskContext| {
            let (g, f) = (g.clone(), f.clone());
            async move {
                let _in = f.enter();
                g.wait().await;
                // Some work, so released runs overlap and contend for the two slots.
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(())
            }
        },
    );
    let mut cfg = dir.config();
    cfg.scheduler.workers = 8;
    let host = start(cfg, vec![limited]).await;
    let s = &host.scheduler;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(queue(s, "limited", json!({})).await.id);
    }
    // Wait until each run either holds a slot or was deferred at least once.
    for id in &ids {
        poll("runs running or deferred", WAIT, || async {
            let r = s.get_run(id).await.unwrap().unwrap();
            (r.state == TaskState::Running || (r.state == TaskState::Queued && r.rate_limit_attempt >= 1)).then_some(())
        })
        .await;
    }
    assert!(flight.max() <= 2, "max in flight was {}", flight.max());
    gate.open();
    for id in &ids {
        let r = wait_done(s, id).await;
        assert_eq!(r.state, TaskState::Success, "{r:?}");
    }
    assert_eq!(flight.total(), 10);
    assert!(flight.max() <= 2, "max in flight was {}", flight.max());
    host.shutdown(Duration::from_secs(5)).await;
}

async fn timeout_ends_run_in_failure_with_timeout_message(db: Db) {
    let dir = TestEnv::new(db).await;
    let never = Gate::new();
    let slow = Task::new("slow").timeout(Duration::from_millis(200)).run(move |_ctx: TaskContext| {
        let g = never.clone();
        async move {
            g.wait().await;
            Ok(())
        }
    });
    let host = start(dir.config(), vec![slow]).await;
    let s = &host.scheduler;
    let run = queue(s, "slow", json!({})).await;
    let done = wait_done(s, &run.id).await;
    assert_eq!(done.state, TaskState::Failure);
    assert_eq!(done.error.as_deref(), Some("timeout after 200ms"));
    assert!(done.duration().unwrap() >= chrono::Duration::milliseconds(200));
    host.shutdown(Duration::from_secs(5)).await;
}

async fn task_abort_ends_run_aborted_and_is_not_retried(db: Db) {
    let dir = TestEnv::new(db).await;
    let flight = InFlight::default();
    let f = flight.clone();
    let quitter = Task::new("quitter").retry(RetryPolicy::new(3).wait(Duration::ZERO)).run(move |ctx: TaskContext| {
        let f = f.clone();
        async move {
            let _in = f.enter();
            Err(ctx.abort("nothing to do"))
        }
    });
    let host = start(dir.config(), vec![quitter]).await;
    let s = &host.scheduler;
    let mut rx = s.subscribe();
    let run = queue(s, "quitter", json!({})).await;
    let seen = history_until(&mut rx, &run.id, |r| r.state.is_done()).await;
    assert_eq!(states(&seen), [TaskState::Queued, TaskState::Running, TaskState::Aborted]);
    assert_eq!(seen[2].error.as_deref(), Some("nothing to do"));
    let stored = s.get_run(&run.id).await.unwrap().unwrap();
    assert_eq!((stored.state, stored.retry_attempt), (TaskState::Aborted, 0));
    assert_eq!(flight.total(), 1);
    host.shutdown(Duration::from_secs(5)).await;
}

async fn disabled_task_runs_are_aborted_without_executing(db: Db) {
    let dir = TestEnv::new(db).await;
    let flight = InFlight::default();
    let f = flight.clone();
    let t = Task::new("switchable").run(move |_ctx: TaskContext| {
        let f = f.clone();
        async move {
            let _in = f.enter();
            Ok(())
        }
    });
    let host = start(dir.config(), vec![t]).await;
    let http = client();
    let r = http.patch(url(&host, "/tasks/switchable")).json(&json!({"enabled": false})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["enabled"], false);
    let info: serde_json::Value = http.get(url(&host, "/tasks/switchable")).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["enabled"], false);

    let r = http.post(url(&host, "/tasks/switchable")).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let run: fluid_host::TaskRun = r.json().await.unwrap();
    let done = wait_done(&host.scheduler, &run.id).await;
    assert_eq!(done.state, TaskState::Aborted);
    assert_eq!(done.error.as_deref(), Some("task disabled"));
    assert!(done.start.is_none());
    assert_eq!(flight.total(), 0, "a disabled task never executes");

    // Enabled again, it runs.
    let r = http.patch(url(&host, "/tasks/switchable")).json(&json!({"enabled": true})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let run = queue(&host.scheduler, "switchable", json!({})).await;
    assert_eq!(wait_done(&host.scheduler, &run.id).await.state, TaskState::Success);
    assert_eq!(flight.total(), 1);
    host.shutdown(Duration::from_secs(5)).await;
}

async fn cancel_aborts_queued_and_running_runs_and_refuses_finished_or_unknown(db: Db) {
    let dir = TestEnv::new(db).await;
    let never = Gate::new();
    let flight = InFlight::default();
    let mut cfg = dir.config();
    cfg.scheduler.workers = 1;
    let host = start(cfg, vec![gated_task(Task::new("blocker"), &never, &flight)]).await;
    let s = &host.scheduler;
    let http = client();
    let running = queue(s, "blocker", json!({})).await;
    wait_state(s, &running.id, TaskState::Running).await;
    let waiting = queue(s, "blocker", json!({})).await;

    // Queued: aborted at once.
    let r = http.post(url(&host, &format!("/task-runs/{}/cancel", waiting.id))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: fluid_host::TaskRun = r.json().await.unwrap();
    assert_eq!((body.state, body.error.as_deref()), (TaskState::Aborted, Some("cancelled")));
    let stored = s.get_run(&waiting.id).await.unwrap().unwrap();
    assert_eq!(stored.state, TaskState::Aborted);

    // Running: accepted, then stopped.
    let r = http.post(url(&host, &format!("/task-runs/{}/cancel", running.id))).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let body: fluid_host::TaskRun = r.json().await.unwrap();
    assert_eq!(body.id, running.id);
    let done = wait_done(s, &running.id).await;
    assert_eq!((done.state, done.error.as_deref()), (TaskState::Aborted, Some("cancelled")));

    // Finished: conflict. Unknown: not found. Both JSON errors.
    for (id, code) in [(running.id.as_str(), 409), (waiting.id.as_str(), 409), ("0123456789abcdef0123456789abcdef", 404)] {
        let r = http.post(url(&host, &format!("/task-runs/{id}/cancel"))).send().await.unwrap();
        assert_eq!(r.status(), code, "POST /task-runs/{id}/cancel");
        let e: serde_json::Value = r.json().await.unwrap();
        assert!(e["detail"].is_string(), "{e}");
    }
    assert_eq!(flight.total(), 1, "the cancelled queued run never executed");
    assert_eq!(s.get_run(&running.id).await.unwrap().unwrap().state, TaskState::Aborted);
    host.shutdown(Duration::from_secs(5)).await;
}

async fn queued_runs_survive_restart(db: Db) {
    let dir = TestEnv::new(db).await;
    let flight = InFlight::default();
    let task = || {
        let f = flight.clone();
        Task::new("durable").run(move |_ctx: TaskContext| {
            let f = f.clone();
            async move {
                let _in = f.enter();
                Ok(())
            }
        })
    };
    let mut api_only = dir.config();
    api_only.scheduler.consume = false;
    let first = start(api_only, vec![task()]).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(queue(&first.scheduler, "durable", json!({"i": i})).await.id);
    }
    let delayed = first
        .scheduler
        .queue("durable", json!({"delayed": true}), QueueOptions { delay: Some(Duration::from_millis(300)), ..Default::default() })
        .await
        .unwrap();
    ids.push(delayed.id.clone());
    first.shutdown(Duration::from_secs(5)).await;
    assert_eq!(flight.total(), 0);

    let second = start(dir.config(), vec![task()]).await;
    for (i, id) in ids.iter().enumerate() {
        let r = wait_done(&second.scheduler, id).await;
        assert_eq!(r.state, TaskState::Success);
        if i < 3 {
            assert_eq!(r.params, json!({"i": i}));
        }
    }
    let d = second.scheduler.get_run(&delayed.id).await.unwrap().unwrap();
    assert!(d.start.unwrap() >= d.execute_after.unwrap(), "a delayed run does not start before its time");
    assert_eq!(flight.total(), 4);
    second.shutdown(Duration::from_secs(5)).await;
}

async fn shutdown_without_grace_marks_running_runs_interrupted(db: Db) {
    let dir = TestEnv::new(db).await;
    let never = Gate::new();
    let flight = InFlight::default();
    // A retry policy must not re-queue a run interrupted by shutdown.
    let b = Task::new("long").retry(RetryPolicy::new(3).wait(Duration::ZERO));
    let host = start(dir.config(), vec![gated_task(b, &never, &flight)]).await;
    let run = queue(&host.scheduler, "long", json!({})).await;
    wait_state(&host.scheduler, &run.id, TaskState::Running).await;
    tokio::time::timeout(WAIT, host.shutdown(Duration::ZERO)).await.expect("shutdown does not wait for the run");

    let store = Store::connect(&dir.url()).await.unwrap();
    let stored = store.get_run(&run.id).await.unwrap().unwrap();
    assert_eq!(stored.state, TaskState::Interrupted);
    assert_eq!(stored.error.as_deref(), Some("host shutting down"));
    assert!(stored.end.is_some());
    assert_eq!(stored.retry_attempt, 0);
    store.close().await;
}

async fn shutdown_lets_running_runs_finish_within_grace(db: Db) {
    let dir = TestEnv::new(db).await;
    let gate = Gate::new();
    let flight = InFlight::default();
    let host = start(dir.config(), vec![gated_task(Task::new("finishing"), &gate, &flight)]).await;
    let run = queue(&host.scheduler, "finishing", json!({})).await;
    wait_state(&host.scheduler, &run.id, TaskState::Running).await;
    // Shutdown waits for the run (30 s of grace); once released, the run ends normally.
    let stopping = tokio::spawn(host.shutdown(Duration::from_secs(30)));
    gate.open();
    tokio::time::timeout(WAIT, stopping).await.expect("shutdown ends once runs end").unwrap();
    let store = Store::connect(&dir.url()).await.unwrap();
    assert_eq!(store.get_run(&run.id).await.unwrap().unwrap().state, TaskState::Success);
    store.close().await;
}

async fn chained_runs_record_parent_and_root(db: Db) {
    let dir = TestEnv::new(db).await;
    let chain = Task::new("chain").run(|ctx: TaskContext| async move {
        let depth = ctx.params_json()["depth"].as_u64().unwrap_or(0);
        if depth > 0 {
            ctx.queue("chain", json!({"depth": depth - 1})).await.map_err(TaskError::failed)?;
        }
        Ok(())
    });
    let host = start(dir.config(), vec![chain]).await;
    let s = &host.scheduler;
    let mut rx = s.subscribe();
    let root = queue(s, "chain", json!({"depth": 2})).await;
    assert_eq!((root.from_run_id.as_str(), root.root_run_id.as_str()), ("", ""));
    // Collect the queued snapshots of the two descendants.
    let mut children = Vec::new();
    while children.len() < 2 {
        let r = tokio::time::timeout(WAIT, rx.recv()).await.expect("children queued").unwrap();
        if r.state == TaskState::Queued && r.id != root.id {
            children.push(r);
        }
    }
    let (child, grandchild) = (&children[0], &children[1]);
    assert_eq!(child.params, json!({"depth": 1}));
    assert_eq!((child.from_run_id.as_str(), child.root_run_id.as_str()), (root.id.as_str(), root.id.as_str()));
    assert_eq!(grandchild.params, json!({"depth": 0}));
    assert_eq!((grandchild.from_run_id.as_str(), grandchild.root_run_id.as_str()), (child.id.as_str(), root.id.as_str()));
    for id in [&root.id, &child.id, &grandchild.id] {
        assert_eq!(wait_done(s, id).await.state, TaskState::Success);
    }
    // Lineage is stored, not only broadcast.
    let stored = s.get_run(&grandchild.id).await.unwrap().unwrap();
    assert_eq!((stored.from_run_id, stored.root_run_id), (child.id.clone(), root.id.clone()));
    host.shutdown(Duration::from_secs(5)).await;
}

async fn every_schedule_fires_repeatedly_and_once_per_due_time_across_hosts(db: Db) {
    let dir = TestEnv::new(db).await;
    let period = Duration::from_millis(300);
    let ticking = || Task::new("tick").schedule(Schedule::every(period)).run(|_ctx: TaskContext| async { Ok(()) });
    let both: Vec<Host> = {
        let mut v = Vec::new();
        for _ in 0..2 {
            let mut c = dir.config();
            c.scheduler.run_schedules = true;
            c.scheduler.schedules.tick = Duration::from_millis(40);
            v.push(start(c, vec![ticking()]).await);
        }
        v
    };
    let store = both[0].scheduler.store().clone();
    // Wait for 8 fires, read from the change feed both hosts write to.
    let fires = poll("8 scheduled runs", WAIT, || async {
        let events = store.events_after(0, 100_000, usize::MAX).await.unwrap();
        let mut queued: Vec<_> =
            events.into_iter().filter(|e| e.run.task == "tick" && e.run.state == TaskState::Queued).map(|e| e.run).collect();
        queued.sort_by_key(|r| r.queued);
        queued.dedup_by(|a, b| a.id == b.id);
        (queued.len() >= 8).then_some(queued)
    })
    .await;
    for h in both {
        h.shutdown(Duration::from_secs(5)).await;
    }
    let store = Store::connect(&dir.url()).await.unwrap();
    let events = store.events_after(0, 100_000, usize::MAX).await.unwrap();
    store.close().await;
    let mut ids: Vec<String> =
        events.iter().filter(|e| e.run.task == "tick" && e.run.state == TaskState::Queued).map(|e| e.run.id.clone()).collect();
    ids.sort();
    ids.dedup();
    let first = fires.first().unwrap().queued.unwrap();
    let last = events.iter().filter(|e| e.run.task == "tick").filter_map(|e| e.run.queued).max().unwrap();
    let span = (last - first).to_std().unwrap();
    let allowed = (span.as_secs_f64() / period.as_secs_f64()).floor() as usize + 2;
    assert!(ids.len() >= 8);
    assert!(ids.len() <= allowed, "{} runs in {span:?} with a period of {period:?}: a due time fired twice", ids.len());
}

async fn panicking_task_fails_its_run_only(db: Db) {
    let dir = TestEnv::new(db).await;
    let tasks = vec![Task::new("panics").run(|_ctx: TaskContext| async { panic!("kaboom") }), ok_task("ok")];
    let host = start(dir.config(), tasks).await;
    let s = &host.scheduler;
    let bad = queue(s, "panics", json!({})).await;
    let done = wait_done(s, &bad.id).await;
    assert_eq!(done.state, TaskState::Failure);
    assert_eq!(done.error.as_deref(), Some("task panicked: kaboom"));
    // The host carries on.
    let ok = queue(s, "ok", json!({})).await;
    assert_eq!(wait_done(s, &ok.id).await.state, TaskState::Success);
    host.shutdown(Duration::from_secs(5)).await;
}

async fn two_hosts_on_one_sqlite_file_share_the_queue_without_errors_or_double_runs(db: Db) {
    let dir = TestEnv::new(db).await;
    let executions: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let task = || {
        let ex = executions.clone();
        Task::new("shared").run(move |ctx: TaskContext| {
            let ex = ex.clone();
            async move {
                *ex.lock().unwrap().entry(ctx.run.id.clone()).or_default() += 1;
                Ok(())
            }
        })
    };
    let mut hosts = Vec::new();
    for _ in 0..2 {
        let mut c = dir.config();
        c.scheduler.heartbeat.interval = Duration::from_millis(50);
        hosts.push(start(c, vec![task()]).await);
    }
    let http = client();
    let mut ids = Vec::new();
    // Queue through one host and cancel some through the other while both claim and finish.
    for i in 0..150 {
        let r = http.post(url(&hosts[i % 2], "/tasks/shared")).json(&json!({})).send().await.unwrap();
        assert_eq!(r.status(), 201, "POST: {}", r.text().await.unwrap());
        let id = r.json::<fluid_host::TaskRun>().await.unwrap().id;
        if i % 3 == 0 {
            let r = http.post(url(&hosts[(i + 1) % 2], &format!("/task-runs/{id}/cancel"))).send().await.unwrap();
            let code = r.status().as_u16();
            assert!([200, 202, 409].contains(&code), "cancel: {code} {}", r.text().await.unwrap());
        }
        ids.push(id);
    }
    for id in &ids {
        // Either host may claim, finish or cancel it; each broadcasts only its own commits.
        let r = wait_run_any(&[&hosts[0].scheduler, &hosts[1].scheduler], id, "done", |r| r.state.is_done()).await;
        let n = executions.lock().unwrap().get(id).copied().unwrap_or(0);
        match r.state {
            TaskState::Success => assert_eq!(n, 1, "run {id} executed {n} times"),
            TaskState::Aborted => assert!(n <= 1 && r.error.as_deref() == Some("cancelled"), "{r:?} executed {n} times"),
            other => panic!("run {id} ended {other}: {r:?}"),
        }
    }
    for h in hosts {
        h.shutdown(Duration::from_secs(5)).await;
    }
}

async fn runs_of_a_dead_host_are_rescued_as_interrupted_then_requeued_per_policy(db: Db) {
    use fluid_host::store::ClaimRules;
    let dir = TestEnv::new(db).await;
    let wait = Duration::from_millis(200);
    let tasks =
        || vec![ok_task("plain"), Task::new("retried").retry(RetryPolicy::new(1).wait(wait)).run(|_ctx: TaskContext| async { Ok(()) })];
    let mut cfg = dir.config();
    cfg.scheduler.consume = false; // only the rescue is under test here
    cfg.scheduler.heartbeat.interval = Duration::from_millis(50);
    cfg.scheduler.heartbeat.host_timeout = Duration::from_millis(500);
    let host = start(cfg, tasks()).await;

    // Another "host", that never heartbeats, claims two runs through its own connection.
    let ghost = Store::connect(&dir.url()).await.unwrap();
    let plain = queue(&host.scheduler, "plain", json!({})).await;
    let retried = queue(&host.scheduler, "retried", json!({})).await;
    let mut rx = host.scheduler.subscribe();
    let rules = BTreeMap::from([("plain".to_string(), ClaimRules::default()), ("retried".to_string(), ClaimRules::default())]);
    let claimed = ghost.claim("ghost-host", 10, &rules).await.unwrap();
    assert_eq!(claimed.started.len(), 2);
    ghost.close().await;

    // Everything broadcast about the two runs until the rescue is over.
    let mut seen: BTreeMap<String, Vec<fluid_host::TaskRun>> = BTreeMap::new();
    let rescued = |seen: &BTreeMap<String, Vec<fluid_host::TaskRun>>| {
        let last = |id: &str| seen.get(id).and_then(|v| v.last()).map(|r| (r.state, r.retry_attempt));
        last(&plain.id) == Some((TaskState::Interrupted, 0)) && last(&retried.id) == Some((TaskState::Queued, 1))
    };
    while !rescued(&seen) {
        let r = tokio::time::timeout(WAIT, rx.recv()).await.unwrap_or_else(|_| panic!("no rescue; seen {seen:?}")).unwrap();
        seen.entry(r.id.clone()).or_default().push(r);
    }
    use TaskState::*;
    let plain_seen = &seen[&plain.id];
    assert_eq!(states(plain_seen), [Interrupted]);
    assert_eq!(plain_seen[0].error.as_deref(), Some("host ghost-host stopped before the run ended"));
    assert!(plain_seen[0].end.is_some());
    let retried_seen = &seen[&retried.id];
    assert_eq!(states(retried_seen), [Interrupted, Queued], "both steps of a rescue with retry are broadcast");
    let delay = chrono::Duration::from_std(wait).unwrap();
    assert!(retried_seen[1].execute_after.unwrap() >= retried_seen[0].end.unwrap() + delay, "the retry waits for its policy's delay");
    assert!(retried_seen[1].start.is_none() && retried_seen[1].end.is_none());

    // The store agrees.
    let stored = host.scheduler.get_run(&plain.id).await.unwrap().unwrap();
    assert_eq!((stored.state, stored.retry_attempt), (Interrupted, 0));
    let stored = host.scheduler.get_run(&retried.id).await.unwrap().unwrap();
    assert_eq!((stored.state, stored.retry_attempt), (Queued, 1));
    host.shutdown(Duration::from_secs(5)).await;
}

/// Fencing: a host that comes back after its runs were rescued finishes them with a stale
/// lease; the store refuses, and the newer state stays.
async fn late_host_cannot_overwrite_a_rescued_run(db: Db) {
    use fluid_host::store::StoreError;
    use fluid_host::store::{ClaimRules, Finish, Outcome};
    let dir = TestEnv::new(db).await;
    let mut cfg = dir.config();
    cfg.scheduler.consume = false;
    cfg.scheduler.heartbeat.interval = Duration::from_millis(50);
    cfg.scheduler.heartbeat.host_timeout = Duration::from_millis(300);
    let host = start(cfg, vec![ok_task("plain")]).await;
    let late = Store::connect(&dir.url()).await.unwrap();
    let run = queue(&host.scheduler, "plain", json!({})).await;
    let rules = BTreeMap::from([("plain".to_string(), ClaimRules::default())]);
    let claimed = late.claim("late-host", 1, &rules).await.unwrap();
    let lease = claimed.started[0].lease;
    wait_state(&host.scheduler, &run.id, TaskState::Interrupted).await;
    // The late host wakes up and reports success with the lease it had.
    let finish = Finish { id: run.id.clone(), lease, outcome: Outcome::Success, retry_after: None };
    let (results, _) = late.finish_and_claim(&[finish], "late-host", 0, &rules).await.unwrap();
    assert!(matches!(results[0], Err(StoreError::Conflict { .. })), "stale lease refused: {:?}", results[0]);
    let stored = host.scheduler.get_run(&run.id).await.unwrap().unwrap();
    assert_eq!(stored.state, TaskState::Interrupted, "the newer state stays");
    late.close().await;
    host.shutdown(Duration::from_secs(5)).await;
}

/// The change feed is pruned only below every plugin's checkpoint, and never within the
/// kept tail: no plugin loses an event it has not consumed.
async fn feed_pruning_keeps_every_unconsumed_event(db: Db) {
    let dir = TestEnv::new(db).await;
    let mut cfg = dir.config();
    cfg.scheduler.consume = false;
    let host = start(cfg, vec![ok_task("plain")]).await;
    let store = host.scheduler.store().clone();
    for _ in 0..10 {
        queue(&host.scheduler, "plain", json!({})).await;
    }
    let head = store.feed_head().await.unwrap();
    assert_eq!(head, 10, "one `queued` event per run, numbered from 1");
    // A slow plugin has consumed only up to head - 6.
    store.checkpoint("slow", head - 6).await.unwrap();
    assert_eq!(store.prune_feed(0).await.unwrap(), 4, "only what the slow plugin passed");
    let left = store.events_after(0, 100, usize::MAX).await.unwrap();
    assert_eq!(left.first().map(|e| e.seq), Some(head - 5), "the first unconsumed event is kept");
    assert_eq!(left.len(), 6);
    // With the plugin caught up, the kept tail still holds the latest events.
    store.reset_checkpoint("slow", head).await.unwrap();
    store.prune_feed(3).await.unwrap();
    let left = store.events_after(0, 100, usize::MAX).await.unwrap();
    assert_eq!(left.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![head - 2, head - 1, head]);
    host.shutdown(Duration::from_secs(1)).await;
}

/// A retry with no wait can be claimed in the very commit that re-queued it, so its next
/// attempt may start before the failed one has finished its bookkeeping: cancelling the
/// new attempt must still reach it.
async fn a_retry_started_at_once_can_still_be_cancelled(db: Db) {
    let dir = TestEnv::new(db).await;
    let never = Gate::new();
    let mut cfg = dir.config();
    cfg.scheduler.workers = 2;
    let gate = never.clone();
    let task = Task::new("fails-then-waits").retry(RetryPolicy::new(1).wait(Duration::ZERO)).run(move |ctx: TaskContext| {
        let gate = gate.clone();
        async move {
            if ctx.run.retry_attempt == 0 {
                return Err(TaskError::failed("first attempt fails"));
            }
            gate.wait().await;
            Ok(())
        }
    });
    let host = start(cfg, vec![task]).await;
    let s = &host.scheduler;
    for _ in 0..5 {
        let run = queue(s, "fails-then-waits", json!({})).await;
        wait_run(s, &run.id, "running its retry", |r| r.state == TaskState::Running && r.retry_attempt == 1).await;
        // Its execution registers itself just after the commit that started it.
        poll("the retry to be counted as running here", WAIT, || async { (s.running_here() == 1).then_some(()) }).await;
        s.cancel(&run.id).await.unwrap();
        let done = wait_done(s, &run.id).await;
        assert_eq!((done.state, done.error.as_deref()), (TaskState::Aborted, Some("cancelled")), "{done:?}");
    }
    host.shutdown(Duration::ZERO).await;
}

/// Inserts of runs, as the store counts them (`fluid_store_operation_duration_seconds`).
fn insert_commits(s: &fluid_host::scheduler::Scheduler) -> u64 {
    let text = s.metrics().encode();
    let line = text.lines().find_map(|l| l.strip_prefix("fluid_store_operation_duration_seconds_count{op=\"insert_runs\"} "));
    line.and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

/// Runs queued one at a time but together share commits (group commit): every caller gets
/// its own run back, every run is stored and broadcast once, in fewer commits than runs.
async fn runs_queued_at_once_share_commits_and_each_caller_gets_its_run(db: Db) {
    let dir = TestEnv::new(db).await;
    let mut cfg = dir.config();
    cfg.scheduler.consume = false;
    let host = start(cfg, vec![ok_task("ok")]).await;
    let s = host.scheduler.clone();
    let mut rx = s.subscribe();
    let before = insert_commits(&s);
    let n = 400;
    let mut callers = tokio::task::JoinSet::new();
    for i in 0..n {
        let s = s.clone();
        callers.spawn(async move { (i, s.queue("ok", json!({ "i": i }), Default::default()).await) });
    }
    let mut ids = std::collections::HashSet::new();
    while let Some(done) = callers.join_next().await {
        let (i, run) = done.unwrap();
        let run = run.unwrap();
        assert_eq!(run.params["i"], i, "each caller gets its own run");
        assert_eq!(s.get_run(&run.id).await.unwrap().unwrap().state, TaskState::Queued);
        ids.insert(run.id);
    }
    assert_eq!(ids.len(), n);
    let mut seen = std::collections::HashSet::new();
    while seen.len() < n {
        let run = tokio::time::timeout(WAIT, rx.recv()).await.expect("every run is broadcast").unwrap();
        assert!(ids.contains(&run.id) && seen.insert(run.id), "broadcast once, only the runs queued");
    }
    let commits = insert_commits(&s) - before;
    assert!(commits < n as u64, "{commits} commits for {n} runs queued at once");
    host.shutdown(Duration::from_secs(5)).await;
}

crate::backend_tests!(
    a_retry_started_at_once_can_still_be_cancelled,
    runs_queued_at_once_share_commits_and_each_caller_gets_its_run,
    feed_pruning_keeps_every_unconsumed_event,
    late_host_cannot_overwrite_a_rescued_run,
    runs_go_queued_running_then_success_or_failure_with_error,
    the_broadcast_leaves_out_params_past_its_bounds_and_the_store_keeps_them,
    failed_run_is_retried_under_same_id_no_sooner_than_policy_delay,
    exhausted_retries_end_in_failure,
    queued_runs_start_by_priority_then_fifo,
    max_concurrency_holds_under_contention_and_excess_is_rate_limited,
    rate_limit_retry_defers_excess_runs_until_all_succeed_within_the_limit,
    a_worker_share_caps_its_group_and_other_runs_go_past_its_queued_ones,
    a_schedule_of_a_full_worker_share_skips_its_due_times_instead_of_piling_up,
    timeout_ends_run_in_failure_with_timeout_message,
    task_abort_ends_run_aborted_and_is_not_retried,
    disabled_task_runs_are_aborted_without_executing,
    cancel_aborts_queued_and_running_runs_and_refuses_finished_or_unknown,
    queued_runs_survive_restart,
    shutdown_without_grace_marks_running_runs_interrupted,
    shutdown_lets_running_runs_finish_within_grace,
    chained_runs_record_parent_and_root,
    every_schedule_fires_repeatedly_and_once_per_due_time_across_hosts,
    panicking_task_fails_its_run_only,
    two_hosts_on_one_sqlite_file_share_the_queue_without_errors_or_double_runs,
    runs_of_a_dead_host_are_rescued_as_interrupted_then_requeued_per_policy,
);
