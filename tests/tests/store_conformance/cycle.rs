//! The claim/finish cycle: which runs a claim takes and in what order, what a finish
//! writes, and fencing (only the holder of a run's current lease may end it).

use crate::harness::*;
use fluid_host::store::{Cancel, ClaimRules, Finish, Outcome, StoreError};
use fluid_host::{Priority, TaskRun, TaskState};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

/// A claim takes due runs of the tasks it is given, highest priority first, then in the
/// order they were queued, at most as many as asked; runs of other tasks and runs not due
/// yet stay queued, untouched. Each run claimed is `running` on the claiming host, under a
/// new lease.
pub async fn claims_take_due_runs_of_known_tasks_highest_priority_first_then_fifo(driver: &Driver) {
    let store = driver.fresh().await;
    let mut runs: Vec<TaskRun> = (0..7).map(|n| queued(n, "t")).collect();
    runs[3].priority = Priority::High;
    runs[4].priority = Priority::Low;
    runs[5].task = "other".into();
    runs[6].execute_after = Some(fluid_host::time::to_datetime(fluid_host::time::now_us() + 3_600_000_000));
    store.insert_runs(&runs).await.unwrap();
    let rules = rules(&[("t", ClaimRules::default())]);

    let first = store.claim("host-a", 2, &rules).await.unwrap();
    let taken: Vec<usize> = first.started.iter().map(|r| number(&r.run.id)).collect();
    assert_eq!(taken, [3, 0], "the high one, then the oldest medium one");
    let second = store.claim("host-a", 10, &rules).await.unwrap();
    let taken: Vec<usize> = second.started.iter().map(|r| number(&r.run.id)).collect();
    assert_eq!(taken, [1, 2, 4], "the rest of the due runs of known tasks, low last");
    assert!(first.ended.is_empty() && second.ended.is_empty());
    for r in first.started.iter().chain(&second.started) {
        assert_eq!((r.run.state, r.owner.as_deref(), r.lease), (TaskState::Running, Some("host-a"), 1), "run {}", number(&r.run.id));
        assert!(r.run.start.is_some());
        assert_eq!(store.get_run(&r.run.id).await.unwrap().as_ref(), Some(&r.run), "the row is what the claim returned");
    }
    assert!(store.claim("host-a", 10, &rules).await.unwrap().started.is_empty(), "nothing else is due");
    for n in [5, 6] {
        assert_eq!(store.get_run(&runs[n].id).await.unwrap().as_ref(), Some(&runs[n]), "run {n} stays queued, untouched");
    }
    let lengths = store.queue_lengths().await.unwrap();
    assert_eq!(lengths, BTreeMap::from([(Priority::High, 0), (Priority::Medium, 2), (Priority::Low, 0)]));
    assert!(store.claim("host-a", 10, &BTreeMap::new()).await.unwrap().started.is_empty(), "no tasks, no claim");
    assert!(
        store.claim("host-a", 0, &crate::harness::rules(&[("other", ClaimRules::default())])).await.unwrap().started.is_empty(),
        "no room, no claim"
    );

    // One run by id (`fluid exec`): that one only, and only when due.
    let only = store.claim_one("host-b", &runs[5].id, &crate::harness::rules(&[("other", ClaimRules::default())])).await.unwrap();
    assert_eq!(only.started.iter().map(|r| number(&r.run.id)).collect::<Vec<_>>(), [5]);
    let early = store.claim_one("host-b", &runs[6].id, &rules).await.unwrap();
    assert!(early.started.is_empty(), "a run not due yet is not claimed by id either");
    assert_the_feed_follows_the_state_machine(&store).await;
    store.close().await;
}

/// Every state a scheduler cycle writes reaches the change feed exactly as the cycle
/// returned it, in the order written: starts, ends, a retried run queued again, the runs
/// claimed in the same cycle. On PostgreSQL the cycle is a server-side function that
/// builds each snapshot's JSON itself; this holds it to the Rust one, field by field
/// (texts with quotes and accents, nested params, big integers, microseconds).
pub async fn the_feed_holds_exactly_the_snapshots_a_cycle_wrote(driver: &Driver) {
    let store = driver.fresh().await;
    let mut runs: Vec<TaskRun> = (0..4).map(|n| queued(n, "cycle")).collect();
    runs[0].tags = vec!["a".into(), "ü \"quoted\" \\ tab\t".into()];
    runs[0].params = json!({"n": 1.5, "big": 9_007_199_254_740_993i64, "nested": {"z": [1, null, "é\n"]}, "yes": true});
    runs[1].from_run_id = "f".repeat(32);
    runs[1].root_run_id = "e".repeat(32);
    runs[3].priority = Priority::High;
    store.insert_runs(&runs).await.unwrap();
    let head = store.feed_head().await.unwrap();
    let rules: BTreeMap<String, ClaimRules> = [("cycle".to_string(), ClaimRules::default())].into();

    let first = store.claim("host-a", 3, &rules).await.unwrap();
    let started: Vec<&str> = first.started.iter().map(|r| r.run.id.as_str()).collect();
    assert_eq!(started, [&runs[3].id, &runs[0].id, &runs[1].id], "highest priority first, then FIFO");
    assert!(first.started.iter().all(|r| r.run.state == TaskState::Running && r.owner.as_deref() == Some("host-a")));
    let lease = |i: usize| first.started.iter().find(|r| r.run.id == runs[i].id).unwrap().lease;

    let finishes = [
        Finish { id: runs[3].id.clone(), lease: lease(3), outcome: Outcome::Success, retry_after: None },
        Finish {
            id: runs[0].id.clone(),
            lease: lease(0),
            outcome: Outcome::Failure("boom: \"✗\"".into()),
            retry_after: Some(Duration::from_millis(60_000)),
        },
        Finish { id: runs[1].id.clone(), lease: lease(1) + 1, outcome: Outcome::Success, retry_after: None },
        Finish { id: "no-such-run".into(), lease: 1, outcome: Outcome::Success, retry_after: None },
    ];
    let (results, second) = store.finish_and_claim(&finishes, "host-a", 2, &rules).await.unwrap();
    assert_eq!(results.len(), 4, "one result per finish");
    let ended = results[0].as_ref().expect("the current lease ends its run");
    assert_eq!((ended.len(), ended[0].state), (1, TaskState::Success));
    let retried = results[1].as_ref().expect("a failure with a retry policy");
    assert_eq!(retried.iter().map(|r| r.state).collect::<Vec<_>>(), [TaskState::Failure, TaskState::Queued]);
    assert_eq!(retried[0].error.as_deref(), Some("boom: \"✗\""));
    assert_eq!((retried[1].retry_attempt, retried[1].start, retried[1].end), (1, None, None));
    assert_eq!(retried[1].execute_after.unwrap() - retried[0].end.unwrap(), chrono::Duration::seconds(60), "queued again after the delay");
    assert!(matches!(&results[2], Err(StoreError::Conflict { state, .. }) if state == "running"), "a stale lease is fenced out");
    assert!(matches!(&results[3], Err(StoreError::RunNotFound(_))), "an unknown run is reported as such");
    let started: Vec<&str> = second.started.iter().map(|r| r.run.id.as_str()).collect();
    assert_eq!(started, [&runs[2].id], "the retried run is not due yet: only the last queued one starts");

    let mut written = first.changes();
    written.extend(results.iter().filter_map(|r| r.as_ref().ok()).flatten().cloned());
    written.extend(second.changes());
    let feed: Vec<TaskRun> = store.events_after(head, 100, usize::MAX).await.unwrap().into_iter().map(|e| e.run).collect();
    assert_eq!(feed, written, "the feed is what the cycles wrote, in order");
    // Read by bytes: a budget smaller than one snapshot still gives the first event, and
    // a page is cut where the bytes run out, in order.
    let one = store.events_after(head, 100, 1).await.unwrap();
    assert_eq!(one.iter().map(|e| &e.run).collect::<Vec<_>>(), [&written[0]]);
    let some = store.events_after(head, 100, 1500).await.unwrap();
    assert!(!some.is_empty() && some.len() < written.len(), "{} of {}", some.len(), written.len());
    assert_eq!(some.iter().map(|e| e.run.clone()).collect::<Vec<_>>(), written[..some.len()]);
    for id in [&runs[0].id, &runs[2].id, &runs[3].id] {
        let last = written.iter().rev().find(|r| &r.id == id).unwrap();
        assert_eq!(store.get_run(id).await.unwrap().as_ref(), Some(last), "the row is its last snapshot");
    }
    assert_the_feed_follows_the_state_machine(&store).await;
    store.close().await;
}

/// A finish carries the lease its run was claimed with: once the run moved on (ended,
/// queued again, claimed by another host under a newer lease) that finish changes nothing,
/// is reported as a conflict with the run's current state, and writes nothing to the feed;
/// the other finishes of its batch still go through. A finish of an unknown run says so.
pub async fn a_finish_from_a_lease_that_lost_the_run_is_fenced_out(driver: &Driver) {
    let fresh = driver.fresh().await;
    let (a, b) = (fresh.store.clone(), fresh.another_host().await);
    let runs: Vec<TaskRun> = (0..2).map(|n| queued(n, "t")).collect();
    a.insert_runs(&runs).await.unwrap();
    let rules = rules(&[("t", ClaimRules::default())]);
    let claimed = a.claim("host-a", 2, &rules).await.unwrap().started;
    let lease = |n: usize| claimed.iter().find(|r| number(&r.run.id) == n).unwrap().lease;
    let finish = |n: usize, lease: i64, outcome: Outcome, retry_after: Option<Duration>| Finish {
        id: runs[n].id.clone(),
        lease,
        outcome,
        retry_after,
    };

    // Run 0 ends; its holder's second finish (a replay) is fenced out by the end itself.
    // Run 1 fails and is queued again at once, then host b claims it under a newer lease.
    let (results, _) = a
        .finish_and_claim(
            &[finish(0, lease(0), Outcome::Success, None), finish(1, lease(1), Outcome::Failure("x".into()), Some(Duration::ZERO))],
            "host-a",
            0,
            &rules,
        )
        .await
        .unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let taken = b.claim("host-b", 10, &rules).await.unwrap().started;
    assert_eq!(taken.iter().map(|r| (number(&r.run.id), r.lease)).collect::<Vec<_>>(), [(1, lease(1) + 1)], "a newer lease");
    let head = a.feed_head().await.unwrap();

    let late = [
        finish(0, lease(0), Outcome::Success, None),
        finish(1, lease(1), Outcome::Failure("late".into()), Some(Duration::ZERO)),
        Finish { id: "no-such-run".into(), lease: 1, outcome: Outcome::Success, retry_after: None },
        finish(1, lease(1) + 1, Outcome::Success, None),
    ];
    let (results, _) = a.finish_and_claim(&late, "host-a", 0, &rules).await.unwrap();
    let conflict = |r: &Result<Vec<TaskRun>, StoreError>| match r {
        Err(StoreError::Conflict { state, why, .. }) => (state.clone(), why.clone()),
        other => panic!("not fenced out: {other:?}"),
    };
    assert_eq!(conflict(&results[0]), ("success".into(), format!("lease {} is stale (current {})", lease(0), lease(0))));
    assert_eq!(conflict(&results[1]), ("running".into(), format!("lease {} is stale (current {})", lease(1), lease(1) + 1)));
    assert!(matches!(&results[2], Err(StoreError::RunNotFound(id)) if id == "no-such-run"), "{:?}", results[2]);
    let ended = results[3].as_ref().expect("the current lease ends the run, whoever sends it");
    assert_eq!(ended.iter().map(|r| r.state).collect::<Vec<_>>(), [TaskState::Success]);
    assert_eq!(feed_states_after(&a, head).await, BTreeMap::from([(1, vec![TaskState::Success])]), "fenced-out finishes write nothing");
    assert_eq!(a.get_run(&runs[1].id).await.unwrap().unwrap().retry_attempt, 1, "the late failure did not queue it again");
    assert_the_feed_follows_the_state_machine(&a).await;
    b.close().await;
    a.close().await;
}

/// Cancelling a queued run aborts it at once; cancelling a running one records a request
/// its owner (and only its owner) is told about, and the run ends when the owner says so.
/// A finished run cannot be cancelled; clearing the queue aborts every queued run of the
/// priorities named.
pub async fn cancel_aborts_a_queued_run_and_asks_the_owner_to_stop_a_running_one(driver: &Driver) {
    let store = driver.fresh().await;
    let mut runs: Vec<TaskRun> = (0..4).map(|n| queued(n, "t")).collect();
    runs[3].priority = Priority::Low;
    store.insert_runs(&runs).await.unwrap();
    let rules = rules(&[("t", ClaimRules::default())]);
    let running = store.claim("host-a", 1, &rules).await.unwrap().started.remove(0);
    assert_eq!(number(&running.run.id), 0);

    match store.cancel(&runs[1].id).await.unwrap() {
        Cancel::Aborted(run) => assert_eq!((run.state, run.error.as_deref()), (TaskState::Aborted, Some("cancelled"))),
        other => panic!("{other:?}"),
    }
    let again = store.cancel(&runs[1].id).await;
    assert!(matches!(&again, Err(StoreError::Conflict { state, .. }) if state == "aborted"), "{again:?}");
    assert!(matches!(store.cancel("no-such-run").await, Err(StoreError::RunNotFound(_))));

    match store.cancel(&running.run.id).await.unwrap() {
        Cancel::Requested { run, owner } => assert_eq!((run.state, owner.as_str()), (TaskState::Running, "host-a")),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.cancel_requests("host-a").await.unwrap(), std::slice::from_ref(&running.run.id));
    assert!(store.cancel_requests("host-b").await.unwrap().is_empty(), "only the owner is asked");
    let stop =
        Finish { id: running.run.id.clone(), lease: running.lease, outcome: Outcome::Aborted("cancelled".into()), retry_after: None };
    let (results, _) = store.finish_and_claim(&[stop], "host-a", 0, &rules).await.unwrap();
    assert_eq!(results[0].as_ref().unwrap()[0].state, TaskState::Aborted);
    assert!(store.cancel_requests("host-a").await.unwrap().is_empty(), "the request ends with the run");

    let (counts, aborted) = store.clear_queue(&[Priority::Medium]).await.unwrap();
    assert_eq!(counts, BTreeMap::from([(Priority::Medium, 1)]));
    assert_eq!(
        aborted.iter().map(|r| (number(&r.id), r.state, r.error.as_deref())).collect::<Vec<_>>(),
        [(2, TaskState::Aborted, Some("queue cleared"))]
    );
    assert_eq!(store.get_run(&runs[3].id).await.unwrap().unwrap().state, TaskState::Queued, "other priorities stay queued");
    assert_the_feed_follows_the_state_machine(&store).await;
    store.close().await;
}
