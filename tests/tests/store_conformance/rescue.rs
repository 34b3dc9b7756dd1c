//! Rescue: runs left `running` by a host that stopped beating (its heartbeat older than
//! the cutoff, or no heartbeat at all) become `interrupted`, then `queued` again when the
//! retry policy given says so; every host's heartbeat runs it (the scheduler's
//! `heartbeat_once`). A late finish from the lost host is fenced out.

use crate::harness::*;
use fluid_host::store::{ClaimRules, Finish, Outcome, RunRow, Store, StoreError};
use fluid_host::time::now_us;
use fluid_host::{TaskRun, TaskState};
use std::collections::BTreeMap;
use std::time::Duration;

/// The retry a rescue is given: runs of `retried` go again after `delay`, others do not.
fn retry_of_retried(delay: Duration) -> impl Fn(&TaskRun) -> Option<Duration> {
    move |run: &TaskRun| (run.task == "retried").then_some(delay)
}

async fn claim_one(store: &Store, host: &str, run: &TaskRun) -> RunRow {
    let rules = rules(&[(run.task.as_str(), ClaimRules::default())]);
    store.claim_one(host, &run.id, &rules).await.unwrap().started.pop().expect("claimed")
}

/// Host a beats, claims two runs, and goes silent; host b beats after the cutoff and
/// claims one; a third host never beat at all. The rescue takes exactly the runs of a and
/// of the host never seen: each `interrupted` (naming its host), then, for the task whose
/// policy retries, `queued` again with one more retry attempt, due after the delay. Host
/// b's run and queued runs are not touched, a second rescue finds nothing, and a's late
/// finishes are fenced out, even once its run is running again elsewhere.
pub async fn runs_of_a_host_whose_heartbeat_lapsed_are_interrupted_and_retried_by_policy(driver: &Driver) {
    let store = driver.fresh().await;
    let tasks = ["retried", "dropped", "retried", "dropped", "retried"];
    let runs: Vec<TaskRun> = tasks.iter().enumerate().map(|(n, t)| queued(n, t)).collect();
    store.insert_runs(&runs).await.unwrap();
    store.heartbeat("host-a", now_us(), 4).await.unwrap();
    let on_a = [claim_one(&store, "host-a", &runs[0]).await, claim_one(&store, "host-a", &runs[1]).await];
    let cutoff = a_moment_later().await;
    store.heartbeat("host-b", now_us(), 4).await.unwrap();
    claim_one(&store, "host-b", &runs[2]).await;
    claim_one(&store, "ghost", &runs[3]).await;
    assert_eq!(store.live_hosts(cutoff).await.unwrap().iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["host-b"]);

    let head = store.feed_head().await.unwrap();
    let before = now_us();
    let rescued = store.rescue(cutoff, retry_of_retried(Duration::from_secs(30))).await.unwrap();
    let after = now_us();
    let mut by_run: BTreeMap<usize, Vec<&TaskRun>> = BTreeMap::new();
    for r in &rescued {
        by_run.entry(number(&r.id)).or_default().push(r);
    }
    let states = |rs: &Vec<&TaskRun>| rs.iter().map(|r| r.state).collect::<Vec<_>>();
    assert_eq!(by_run.keys().copied().collect::<Vec<_>>(), [0, 1, 3], "the runs of the silent host and of the unknown one");
    assert_eq!(states(&by_run[&0]), [TaskState::Interrupted, TaskState::Queued]);
    assert_eq!(states(&by_run[&1]), [TaskState::Interrupted]);
    assert_eq!(states(&by_run[&3]), [TaskState::Interrupted]);
    let interrupted = by_run[&1][0];
    assert_eq!(interrupted.error.as_deref(), Some("host host-a stopped before the run ended"));
    assert!(interrupted.end.is_some());
    assert_eq!(by_run[&3][0].error.as_deref(), Some("host ghost stopped before the run ended"));
    let again = by_run[&0][1];
    assert_eq!((again.retry_attempt, again.start, again.end), (1, None, None));
    let due = again.execute_after.unwrap().timestamp_micros();
    assert!((before + 30_000_000..=after + 30_000_000).contains(&due), "due after the delay: {due} vs {before}..{after}");
    for (n, written) in &by_run {
        assert_eq!(store.get_run(&runs[*n].id).await.unwrap().as_ref(), written.last().copied(), "run {n}: the row is its last snapshot");
    }
    let on_feed = feed_states_after(&store, head).await;
    assert_eq!(on_feed, by_run.iter().map(|(n, rs)| (*n, states(rs))).collect(), "the feed holds what the rescue wrote");
    assert_eq!(store.get_run(&runs[2].id).await.unwrap().unwrap().state, TaskState::Running, "a beating host keeps its run");
    assert_eq!(store.get_run(&runs[4].id).await.unwrap().as_ref(), Some(&runs[4]), "a queued run is not touched");
    assert!(store.rescue(cutoff, retry_of_retried(Duration::ZERO)).await.unwrap().is_empty(), "rescued once");

    // Host a comes back too late: its finishes change nothing.
    let late: Vec<Finish> =
        on_a.iter().map(|r| Finish { id: r.run.id.clone(), lease: r.lease, outcome: Outcome::Success, retry_after: None }).collect();
    let (results, _) = store.finish_and_claim(&late, "host-a", 0, &BTreeMap::new()).await.unwrap();
    let fenced: Vec<String> = results
        .iter()
        .map(|r| match r {
            Err(StoreError::Conflict { state, .. }) => state.clone(),
            other => panic!("not fenced out: {other:?}"),
        })
        .collect();
    assert_eq!(fenced, ["queued", "interrupted"]);
    assert_the_feed_follows_the_state_machine(&store).await;
    store.close().await;
}

/// A host removed from the store (a clean shutdown that could not finish its runs) no
/// longer counts as alive, whatever its last heartbeat: its runs are rescued at once.
pub async fn a_removed_host_s_runs_are_rescued_whatever_its_last_heartbeat(driver: &Driver) {
    let store = driver.fresh().await;
    let run = queued(0, "retried");
    store.insert_runs(std::slice::from_ref(&run)).await.unwrap();
    store.heartbeat("host-a", now_us(), 1).await.unwrap();
    let held = claim_one(&store, "host-a", &run).await;
    let cutoff = now_us() - 60_000_000;
    assert!(store.rescue(cutoff, retry_of_retried(Duration::ZERO)).await.unwrap().is_empty(), "host a is alive");
    store.remove_host("host-a").await.unwrap();
    assert!(store.live_hosts(cutoff).await.unwrap().is_empty());
    let rescued = store.rescue(cutoff, retry_of_retried(Duration::ZERO)).await.unwrap();
    assert_eq!(rescued.iter().map(|r| r.state).collect::<Vec<_>>(), [TaskState::Interrupted, TaskState::Queued]);
    // Queued again for no time: another host claims it under a newer lease, and host a's
    // finish with the old one is fenced out while the new holder's goes through.
    let again = claim_one(&store, "host-b", &run).await;
    assert_eq!((again.lease, again.run.retry_attempt), (held.lease + 1, 1));
    let finish = |lease| Finish { id: run.id.clone(), lease, outcome: Outcome::Success, retry_after: None };
    let (results, _) = store.finish_and_claim(&[finish(held.lease), finish(again.lease)], "host-b", 0, &BTreeMap::new()).await.unwrap();
    assert!(matches!(&results[0], Err(StoreError::Conflict { state, .. }) if state == "running"), "{:?}", results[0]);
    assert_eq!(results[1].as_ref().unwrap()[0].state, TaskState::Success);
    assert_the_feed_follows_the_state_machine(&store).await;
    store.close().await;
}
