//! The limits a claim enforces inside its own transaction: `max_concurrency` across every
//! host sharing the store (with the rate-limit retry, or `rate_limited`), disabled tasks,
//! and a group's share of this host's workers.

use crate::harness::*;
use fluid_host::store::{ClaimRules, Finish, Outcome, ShareRoom};
use fluid_host::time::now_us;
use fluid_host::{RetryPolicy, TaskRun, TaskState};
use std::collections::BTreeMap;
use std::time::Duration;

fn at_most(n: u32, retry: Option<RetryPolicy>) -> ClaimRules {
    ClaimRules { max_concurrency: n, rate_limit_retry: retry, share: None }
}

/// `max_concurrency` counts the task's running runs on every host, not only the claimer's:
/// a run claimed past it (without a rate-limit retry) ends `rate_limited` at once; a slot
/// freed by a finish is taken by the next claim.
pub async fn max_concurrency_counts_the_runs_of_every_host(driver: &Driver) {
    let fresh = driver.fresh().await;
    let (a, b) = (fresh.store.clone(), fresh.another_host().await);
    let runs: Vec<TaskRun> = (0..6).map(|n| queued(n, "lim")).collect();
    a.insert_runs(&runs[..5]).await.unwrap();
    let rules = rules(&[("lim", at_most(2, None))]);

    let on_a = a.claim("host-a", 1, &rules).await.unwrap();
    assert_eq!(on_a.started.iter().map(|r| number(&r.run.id)).collect::<Vec<_>>(), [0]);
    let on_b = b.claim("host-b", 10, &rules).await.unwrap();
    assert_eq!(on_b.started.iter().map(|r| number(&r.run.id)).collect::<Vec<_>>(), [1], "one slot was left");
    let ended: Vec<(usize, TaskState, Option<&str>, u32)> =
        on_b.ended.iter().map(|r| (number(&r.id), r.state, r.error.as_deref(), r.rate_limit_attempt)).collect();
    let refused = |n| (n, TaskState::RateLimited, Some("max_concurrency 2 reached"), 0);
    assert_eq!(ended, [refused(2), refused(3), refused(4)]);
    for run in &runs[2..5] {
        assert_eq!(a.get_run(&run.id).await.unwrap().unwrap().state, TaskState::RateLimited);
    }

    // A slot frees: the next run starts, on whichever host claims.
    let done = Finish { id: runs[0].id.clone(), lease: on_a.started[0].lease, outcome: Outcome::Success, retry_after: None };
    a.insert_runs(&runs[5..]).await.unwrap();
    let (results, next) = a.finish_and_claim(&[done], "host-a", 10, &rules).await.unwrap();
    assert!(results[0].is_ok());
    assert_eq!(next.started.iter().map(|r| number(&r.run.id)).collect::<Vec<_>>(), [5], "the freed slot is filled in the same cycle");
    assert!(next.ended.is_empty());
    assert_the_feed_follows_the_state_machine(&a).await;
    b.close().await;
    a.close().await;
}

/// At the limit, a task with a rate-limit retry leaves the run queued, due after the
/// policy's delay, its `rate_limit_attempt` counted, and writes no event (a silent
/// back-off); once the policy allows no more attempts, the run ends `rate_limited`.
pub async fn at_the_limit_a_rate_limit_retry_waits_queued_and_silent_then_gives_up(driver: &Driver) {
    let store = driver.fresh().await;
    let mut runs: Vec<TaskRun> = (0..3).map(|n| queued(n, "now")).collect();
    runs.extend((3..5).map(|n| queued(n, "later")));
    store.insert_runs(&runs).await.unwrap();
    let rules = rules(&[
        ("now", at_most(1, Some(RetryPolicy::new(1).wait(Duration::ZERO)))),
        ("later", at_most(1, Some(RetryPolicy::new(3).wait(Duration::from_secs(60))))),
    ]);
    let head = store.feed_head().await.unwrap();
    let before = now_us();
    let first = store.claim("host-a", 10, &rules).await.unwrap();
    let after = now_us();
    assert_eq!(first.started.iter().map(|r| number(&r.run.id)).collect::<Vec<_>>(), [0, 3]);
    assert!(first.ended.is_empty(), "backing off ends nothing");
    assert_eq!(feed_states_after(&store, head).await, BTreeMap::from([(0, vec![TaskState::Running]), (3, vec![TaskState::Running])]));
    let later = store.get_run(&runs[4].id).await.unwrap().unwrap();
    assert_eq!((later.state, later.rate_limit_attempt), (TaskState::Queued, 1));
    let due = later.execute_after.unwrap().timestamp_micros();
    assert!((before + 60_000_000..=after + 60_000_000).contains(&due), "due after the policy's delay: {due} vs {before}..{after}");

    // The runs of `now` backed off for no time: due again, but their one attempt is spent.
    let head = store.feed_head().await.unwrap();
    let second = store.claim("host-a", 10, &rules).await.unwrap();
    assert!(second.started.is_empty());
    let ended: Vec<(usize, TaskState, Option<&str>, u32)> =
        second.ended.iter().map(|r| (number(&r.id), r.state, r.error.as_deref(), r.rate_limit_attempt)).collect();
    let gave_up = |n| (n, TaskState::RateLimited, Some("max_concurrency 1 reached"), 1);
    assert_eq!(ended, [gave_up(1), gave_up(2)]);
    assert_eq!(
        feed_states_after(&store, head).await,
        BTreeMap::from([(1, vec![TaskState::RateLimited]), (2, vec![TaskState::RateLimited])])
    );
    assert_eq!(store.get_run(&runs[4].id).await.unwrap().unwrap(), later, "a run not due is not touched");
    assert_the_feed_follows_the_state_machine(&store).await;
    store.close().await;
}

/// Hosts claiming the same limited task at the same moment never start more runs than
/// its `max_concurrency` between them (serialised by the one writer on SQLite, by the
/// task's lock on PostgreSQL), and no run is claimed twice.
pub async fn concurrent_claims_of_many_hosts_never_pass_max_concurrency(driver: &Driver) {
    let fresh = driver.fresh().await;
    let runs: Vec<TaskRun> = (0..24).map(|n| queued(n, "lim")).collect();
    fresh.store.insert_runs(&runs).await.unwrap();
    let rules = rules(&[("lim", at_most(3, None))]);
    let mut hosts = vec![];
    for _ in 0..6 {
        hosts.push(fresh.another_host().await);
    }
    let claims: Vec<_> = hosts
        .iter()
        .enumerate()
        .map(|(i, store)| {
            let (store, rules) = (store.clone(), rules.clone());
            tokio::spawn(async move { store.claim(&format!("host-{i}"), 4, &rules).await })
        })
        .collect();
    let (mut started, mut ended) = (vec![], vec![]);
    for c in claims {
        let claimed = c.await.unwrap().expect("every claim commits");
        started.extend(claimed.started.into_iter().map(|r| r.run.id));
        ended.extend(claimed.ended.into_iter().map(|r| r.id));
    }
    assert_eq!(started.len(), 3, "exactly the limit started: {started:?}");
    let mut all: Vec<&String> = started.iter().chain(&ended).collect();
    all.sort();
    let claimed = all.len();
    all.dedup();
    assert_eq!(all.len(), claimed, "no run was claimed twice");
    let mut running = 0;
    for r in &runs {
        running += (fresh.store.get_run(&r.id).await.unwrap().unwrap().state == TaskState::Running) as usize;
    }
    assert_eq!(running, 3);
    assert_the_feed_follows_the_state_machine(&fresh.store).await;
    for h in hosts {
        h.close().await;
    }
    fresh.store.close().await;
}

/// A disabled task's due runs are aborted at the door ("task disabled"), on every host; once
/// enabled again its runs start.
pub async fn a_disabled_task_is_aborted_at_the_door(driver: &Driver) {
    let store = driver.fresh().await;
    let runs: Vec<TaskRun> = (0..3).map(|n| queued(n, if n == 2 { "on" } else { "off" })).collect();
    store.insert_runs(&runs[..2]).await.unwrap();
    store.set_enabled("off", false).await.unwrap();
    assert!(!store.task_statuses().await.unwrap()["off"].enabled);
    let rules = rules(&[("off", ClaimRules::default()), ("on", ClaimRules::default())]);
    let claimed = store.claim("host-a", 10, &rules).await.unwrap();
    assert!(claimed.started.is_empty());
    let ended: Vec<(usize, TaskState, Option<&str>)> = claimed.ended.iter().map(|r| (number(&r.id), r.state, r.error.as_deref())).collect();
    assert_eq!(ended, [(0, TaskState::Aborted, Some("task disabled")), (1, TaskState::Aborted, Some("task disabled"))]);
    store.set_enabled("off", true).await.unwrap();
    let again = queued(3, "off");
    store.insert_runs(&[again.clone(), runs[2].clone()]).await.unwrap();
    let claimed = store.claim("host-a", 10, &rules).await.unwrap();
    let mut started: Vec<usize> = claimed.started.iter().map(|r| number(&r.run.id)).collect();
    started.sort();
    assert_eq!(started, [2, 3]);
    assert_the_feed_follows_the_state_machine(&store).await;
    store.close().await;
}

/// Tasks sharing a group start no more runs in one claim than the group's room; the rest
/// stay queued, untouched and silent, without taking the claim's places from other tasks.
pub async fn a_group_starts_no_more_runs_than_its_room(driver: &Driver) {
    let store = driver.fresh().await;
    let tasks = ["g1", "g2", "g1", "g2", "free"];
    let runs: Vec<TaskRun> = tasks.iter().enumerate().map(|(n, t)| queued(n, t)).collect();
    store.insert_runs(&runs).await.unwrap();
    let grouped = ClaimRules { share: Some(ShareRoom { group: "g".into(), room: 2 }), ..Default::default() };
    let rules = rules(&[("g1", grouped.clone()), ("g2", grouped), ("free", ClaimRules::default())]);
    let head = store.feed_head().await.unwrap();
    let claimed = store.claim("host-a", 10, &rules).await.unwrap();
    assert_eq!(claimed.started.iter().map(|r| number(&r.run.id)).collect::<Vec<_>>(), [0, 1, 4]);
    assert!(claimed.ended.is_empty());
    for n in [2, 3] {
        assert_eq!(store.get_run(&runs[n].id).await.unwrap().as_ref(), Some(&runs[n]), "run {n} stays queued, untouched");
    }
    assert_eq!(feed_states_after(&store, head).await.keys().copied().collect::<Vec<_>>(), [0, 1, 4], "only the starts are on the feed");
    store.close().await;
}
