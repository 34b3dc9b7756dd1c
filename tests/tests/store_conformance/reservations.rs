//! Reservations: runs claimed ahead for a host's next free workers. A reserved run stays
//! `queued` (no event), owned by its host under a new lease; no other host claims it. Its
//! start is recorded later ([`Begin`]), fenced like a finish; it may be released, and a
//! dead host's are released by the rescue. Only tasks without a concurrency limit or a
//! share of workers are reserved.

use crate::harness::*;
use fluid_host::store::{Begin, ClaimRules, Cycle, CycleOutcome, Finish, Outcome, RunRow, ShareRoom, Store, StoreError};
use fluid_host::time::now_us;
use fluid_host::{TaskRun, TaskState};
use std::collections::BTreeMap;

async fn cycle(
    store: &Store,
    host: &str,
    begins: &[Begin],
    finishes: &[Finish],
    limit: usize,
    ahead: usize,
    rules: &BTreeMap<String, ClaimRules>,
) -> CycleOutcome {
    store.cycle(&Cycle { host, begins, finishes, limit, ahead, rules }).await.unwrap()
}

fn numbers(rows: &[RunRow]) -> Vec<usize> {
    rows.iter().map(|r| number(&r.run.id)).collect()
}

fn begin(row: &RunRow, at_us: i64) -> Begin {
    Begin { id: row.run.id.clone(), lease: row.lease, at_us }
}

fn conflict_state(r: &Result<TaskRun, StoreError>) -> String {
    match r {
        Err(StoreError::Conflict { state, .. }) => state.clone(),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// A cycle starts `limit` runs and reserves the next `ahead` in claim order (priority, then
/// FIFO). Reserved runs stay `queued` with no event and a new lease; another host's claim
/// passes them by. A start presented by the owner records `running` with the start given,
/// and an end in the same cycle follows it on the feed: queued, running, success.
pub async fn a_cycle_reserves_the_next_runs_which_stay_queued_until_their_start_is_recorded(driver: &Driver) {
    let store = driver.fresh().await;
    let runs: Vec<TaskRun> = (0..6).map(|n| queued(n, "t")).collect();
    store.insert_runs(&runs).await.unwrap();
    let rules = rules(&[("t", ClaimRules::default())]);
    let head = store.feed_head().await.unwrap();

    let first = cycle(&store, "host-a", &[], &[], 1, 3, &rules).await;
    assert_eq!(numbers(&first.claimed.started), [0]);
    assert_eq!(numbers(&first.claimed.reserved), [1, 2, 3], "the next three, in claim order");
    for r in &first.claimed.reserved {
        let stored = store.get_run(&r.run.id).await.unwrap().unwrap();
        assert_eq!((stored.state, stored.start), (TaskState::Queued, None), "a reservation never looks running");
        assert_eq!(r.owner.as_deref(), Some("host-a"));
    }
    assert_eq!(feed_states_after(&store, head).await, BTreeMap::from([(0, vec![TaskState::Running])]), "no event for a reservation");

    let b = store.another_host().await;
    let taken = b.claim("host-b", 10, &rules).await.unwrap();
    assert_eq!(numbers(&taken.started), [4, 5], "another host passes reservations by");

    let head = store.feed_head().await.unwrap();
    let at = now_us() - 500;
    let reserved = &first.claimed.reserved[0];
    let end = Finish { id: reserved.run.id.clone(), lease: reserved.lease, outcome: Outcome::Success, retry_after: None };
    let second = cycle(&store, "host-a", &[begin(reserved, at)], &[end], 0, 0, &rules).await;
    let begun = second.begun[0].as_ref().expect("the owner's start is recorded");
    assert_eq!(begun.state, TaskState::Running);
    assert_eq!(begun.start.map(|t| t.timestamp_micros()), Some(at), "the start the host gave");
    assert_eq!(second.finished[0].as_ref().unwrap()[0].state, TaskState::Success);
    assert_eq!(feed_states_after(&store, head).await, BTreeMap::from([(1, vec![TaskState::Running, TaskState::Success])]));
    assert_eq!(second.written.iter().map(|r| r.state).collect::<Vec<_>>(), [TaskState::Running, TaskState::Success]);
    assert_the_feed_follows_the_state_machine(&store).await;
}

/// A start is fenced: another host, a stale lease, a run cancelled or released and claimed
/// elsewhere, or a run that is gone are each refused and change nothing; a run of a task
/// disabled since it was reserved is refused and ends `aborted`.
pub async fn a_start_is_refused_unless_its_host_still_holds_the_reservation(driver: &Driver) {
    let store = driver.fresh().await;
    let runs: Vec<TaskRun> = (0..5).map(|n| queued(n, if n == 4 { "off" } else { "t" })).collect();
    store.insert_runs(&runs).await.unwrap();
    let rules = rules(&[("t", ClaimRules::default()), ("off", ClaimRules::default())]);
    let held = cycle(&store, "host-a", &[], &[], 0, 5, &rules).await.claimed.reserved;
    assert_eq!(numbers(&held), [0, 1, 2, 3, 4]);
    let now = now_us();

    // Another host presenting a's reservation; a stale lease.
    let wrong_host = cycle(&store, "host-b", &[begin(&held[0], now)], &[], 0, 0, &rules).await;
    assert_eq!(conflict_state(&wrong_host.begun[0]), "queued");
    let stale = Begin { lease: held[0].lease - 1, ..begin(&held[0], now) };
    assert_eq!(conflict_state(&cycle(&store, "host-a", &[stale], &[], 0, 0, &rules).await.begun[0]), "queued");

    // Cancelled while reserved: aborted at once; the start is refused.
    assert!(matches!(store.cancel(&held[1].run.id).await.unwrap(), fluid_host::store::Cancel::Aborted(_)));
    // Released, then claimed by another host: a's start is refused.
    assert_eq!(store.release("host-a", &[(held[2].run.id.clone(), held[2].lease)]).await.unwrap(), 1);
    let b = store.another_host().await;
    let on_b = b.claim("host-b", 10, &rules).await.unwrap();
    assert_eq!(numbers(&on_b.started), [2], "a released run is claimable again");
    // Disabled since it was reserved.
    store.set_enabled("off", false).await.unwrap();

    let head = store.feed_head().await.unwrap();
    let begins = [begin(&held[1], now), begin(&held[2], now), begin(&held[4], now), begin(&held[3], now)];
    let done = cycle(&store, "host-a", &begins, &[], 0, 0, &rules).await;
    assert_eq!(conflict_state(&done.begun[0]), "aborted", "cancelled");
    assert_eq!(conflict_state(&done.begun[1]), "running", "running on b");
    assert_eq!(conflict_state(&done.begun[2]), "aborted", "its task is disabled");
    assert_eq!(done.begun[3].as_ref().unwrap().state, TaskState::Running, "the one still held starts");
    // A start presented again (its commit's answer was lost) is begun, and writes nothing.
    let head_again = store.feed_head().await.unwrap();
    let again = cycle(&store, "host-a", &[begin(&held[3], now)], &[], 0, 0, &rules).await;
    assert_eq!(again.begun[0].as_ref().unwrap().state, TaskState::Running);
    assert_eq!(store.feed_head().await.unwrap(), head_again, "no second event");
    let off = store.get_run(&held[4].run.id).await.unwrap().unwrap();
    assert_eq!((off.state, off.error.as_deref()), (TaskState::Aborted, Some("task disabled")));
    assert_eq!(
        feed_states_after(&store, head).await,
        BTreeMap::from([(3, vec![TaskState::Running]), (4, vec![TaskState::Aborted])]),
        "refused starts write nothing but the disabled task's end"
    );
    let missing = Begin { id: "0".repeat(32).replace('0', "f"), lease: 1, at_us: now };
    assert!(matches!(cycle(&store, "host-a", &[missing], &[], 0, 0, &rules).await.begun[0], Err(StoreError::RunNotFound(_))));
    assert_the_feed_follows_the_state_machine(&store).await;
}

/// Runs of a task with a concurrency limit or a share of workers are never reserved, so
/// both limits count what runs and stay exact; and reservations stop at the first of them,
/// so none passes it: the next claim takes it.
pub async fn runs_of_limited_tasks_are_never_reserved_nor_passed(driver: &Driver) {
    let store = driver.fresh().await;
    let tasks = ["t", "t", "limited", "shared", "t"];
    let runs: Vec<TaskRun> = tasks.iter().enumerate().map(|(n, t)| queued(n, t)).collect();
    store.insert_runs(&runs).await.unwrap();
    let limited = ClaimRules { max_concurrency: 5, ..Default::default() };
    let shared = ClaimRules { share: Some(ShareRoom { group: "g".into(), room: 5 }), ..Default::default() };
    let rules = rules(&[("t", ClaimRules::default()), ("limited", limited), ("shared", shared)]);
    let done = cycle(&store, "host-a", &[], &[], 1, 10, &rules).await;
    assert_eq!(numbers(&done.claimed.started), [0]);
    assert_eq!(numbers(&done.claimed.reserved), [1], "up to the limited run, not past it");
    let next = store.claim("host-a", 10, &rules).await.unwrap();
    assert_eq!(numbers(&next.started), [2, 3, 4], "the next claim takes the limited runs, in order");
}

/// A host that stopped beating loses its reservations to the rescue: back in the queue
/// as they were (still `queued`, no event, nothing `interrupted`), claimable by any host.
/// A live host's reservations stay. A host that releases all of its own gives back only
/// its own.
pub async fn the_rescue_and_release_all_return_reservations_to_the_queue(driver: &Driver) {
    let store = driver.fresh().await;
    let runs: Vec<TaskRun> = (0..4).map(|n| queued(n, "t")).collect();
    store.insert_runs(&runs).await.unwrap();
    let rules = rules(&[("t", ClaimRules::default())]);
    store.heartbeat("host-a", now_us(), 4).await.unwrap();
    let on_a = cycle(&store, "host-a", &[], &[], 0, 1, &rules).await.claimed.reserved;
    let cutoff = a_moment_later().await;
    store.heartbeat("host-b", now_us(), 4).await.unwrap();
    let on_b = cycle(&store, "host-b", &[], &[], 0, 2, &rules).await.claimed.reserved;
    let on_c = cycle(&store, "host-c", &[], &[], 0, 1, &rules).await.claimed.reserved;
    assert_eq!((numbers(&on_a), numbers(&on_b), numbers(&on_c)), (vec![0], vec![1, 2], vec![3]));

    let head = store.feed_head().await.unwrap();
    assert!(store.rescue(cutoff, |_| None).await.unwrap().is_empty(), "nothing was running: nothing interrupted");
    assert_eq!(store.feed_head().await.unwrap(), head, "no event");
    let d = store.another_host().await;
    assert_eq!(numbers(&d.claim("host-d", 10, &rules).await.unwrap().started), [0, 3], "the silent and the unknown host's");
    let a_start = cycle(&store, "host-a", &[begin(&on_a[0], now_us())], &[], 0, 0, &rules).await;
    assert_eq!(conflict_state(&a_start.begun[0]), "running", "the lost host's late start is fenced out");

    // After a lost answer: all but what the host holds.
    assert_eq!(store.release_unheld("host-b", std::slice::from_ref(&on_b[0].run.id)).await.unwrap(), 1);
    assert_eq!(numbers(&d.claim("host-d", 10, &rules).await.unwrap().started), [2]);
    assert_eq!(store.release_all("host-b").await.unwrap(), 1);
    assert_eq!(numbers(&d.claim("host-d", 10, &rules).await.unwrap().started), [1]);
    assert_the_feed_follows_the_state_machine(&store).await;
}

/// A run begun and ended in one cycle leaves on the feed what a start in one cycle and an
/// end in the next leave: `running` with the start the host gave and neither end nor
/// error, then its end. So does a failure (the error on its end only) and a run retried
/// (its end, then `queued` again); a run whose earlier attempt left its error keeps it
/// while it runs, as before. The task's last run is recorded from the end written.
pub async fn a_run_begun_and_ended_in_one_cycle_shows_its_start_then_its_end(driver: &Driver) {
    let store = driver.fresh().await;
    let runs: Vec<TaskRun> = (0..4).map(|n| queued(n, "t")).collect();
    store.insert_runs(&runs).await.unwrap();
    let rules = rules(&[("t", ClaimRules::default())]);
    let held = cycle(&store, "host-a", &[], &[], 0, 4, &rules).await.claimed.reserved;
    assert_eq!(numbers(&held), [0, 1, 2, 3]);
    let end = |row: &RunRow, outcome: Outcome, retry_after: Option<std::time::Duration>| Finish {
        id: row.run.id.clone(),
        lease: row.lease,
        outcome,
        retry_after,
    };
    let head = store.feed_head().await.unwrap();
    let at = now_us() - 700;
    // 0 succeeds, 1 fails, 2 fails and is retried, all begun in the same cycle; 3 begins
    // here and ends in the next one, the reference.
    let begins: Vec<Begin> = held.iter().map(|r| begin(r, at)).collect();
    let finishes = [
        end(&held[0], Outcome::Success, None),
        end(&held[1], Outcome::Failure("boom".into()), None),
        end(&held[2], Outcome::Failure("again".into()), Some(std::time::Duration::ZERO)),
    ];
    let one = cycle(&store, "host-a", &begins, &finishes, 0, 0, &rules).await;
    let two = cycle(&store, "host-a", &[], &[end(&held[3], Outcome::Success, None)], 0, 0, &rules).await;
    for (i, b) in one.begun.iter().enumerate() {
        let b = b.as_ref().expect("begun");
        assert_eq!(
            (b.state, b.start.map(|t| t.timestamp_micros()), b.end, b.error.as_deref()),
            (TaskState::Running, Some(at), None, None),
            "run {i}"
        );
    }
    let ended: Vec<Vec<TaskState>> = one.finished.iter().map(|w| w.as_ref().unwrap().iter().map(|r| r.state).collect()).collect();
    assert_eq!(ended, [vec![TaskState::Success], vec![TaskState::Failure], vec![TaskState::Failure, TaskState::Queued]]);
    assert!(two.finished[0].is_ok());
    let t = store.task_statuses().await.unwrap().remove("t").expect("task t");
    assert_eq!(t.last_run_state.as_deref(), Some("success"), "run 3's, the last end");

    let events = store.events_after(head, 1000, usize::MAX).await.unwrap();
    let of = |n: usize| -> Vec<TaskRun> { events.iter().filter(|e| number(&e.run.id) == n).map(|e| e.run.clone()).collect() };
    // Each run's snapshots as (state, start, has an end, error).
    let shape = |n: usize| -> Vec<(TaskState, Option<i64>, bool, Option<String>)> {
        of(n).iter().map(|r| (r.state, r.start.map(|t| t.timestamp_micros()), r.end.is_some(), r.error.clone())).collect()
    };
    assert_eq!(shape(0), shape(3), "begun and ended at once, as in two cycles");
    assert_eq!(shape(0), [(TaskState::Running, Some(at), false, None), (TaskState::Success, Some(at), true, None)]);
    assert_eq!(shape(1), [(TaskState::Running, Some(at), false, None), (TaskState::Failure, Some(at), true, Some("boom".into()))]);
    assert_eq!(
        shape(2),
        [
            (TaskState::Running, Some(at), false, None),
            (TaskState::Failure, Some(at), true, Some("again".into())),
            (TaskState::Queued, None, false, Some("again".into())),
        ]
    );
    for n in [0, 1] {
        let stored = store.get_run(&held[n].run.id).await.unwrap().unwrap();
        assert_eq!(stored, *of(n).last().unwrap(), "the row is the last snapshot");
    }

    // The retried run, reserved and begun and ended again in one cycle: its earlier error
    // shows while it runs, and its success clears it.
    let again = cycle(&store, "host-a", &[], &[], 0, 1, &rules).await.claimed.reserved;
    assert_eq!(numbers(&again), [2]);
    let head = store.feed_head().await.unwrap();
    let at = now_us();
    cycle(&store, "host-a", &[begin(&again[0], at)], &[end(&again[0], Outcome::Success, None)], 0, 0, &rules).await;
    let states: Vec<(TaskState, Option<String>)> =
        store.events_after(head, 1000, usize::MAX).await.unwrap().into_iter().map(|e| (e.run.state, e.run.error)).collect();
    assert_eq!(states, [(TaskState::Running, Some("again".into())), (TaskState::Success, None)]);
    let t = store.task_statuses().await.unwrap().remove("t").expect("task t");
    assert_eq!(t.last_run_state.as_deref(), Some("success"), "the task's last run");
    assert_eq!(t.last_run_duration_us, t.last_run_end.map(|end| end - at), "from its start to its end");
    assert_the_feed_follows_the_state_machine(&store).await;
}

/// A run of a task disabled since it was reserved, begun and ended in one cycle, is not
/// written in one step from queued to its end: its start is refused and it ends `aborted`,
/// its end is fenced out, and the feed holds only the abort. A run of an enabled task
/// begun and ended beside it in the same cycle is written as usual.
pub async fn a_run_of_a_task_disabled_since_reserved_is_aborted_even_when_it_ends_in_the_same_cycle(driver: &Driver) {
    let store = driver.fresh().await;
    let runs = [queued(0, "t"), queued(1, "off")];
    store.insert_runs(&runs).await.unwrap();
    let rules = rules(&[("t", ClaimRules::default()), ("off", ClaimRules::default())]);
    let held = cycle(&store, "host-a", &[], &[], 0, 2, &rules).await.claimed.reserved;
    assert_eq!(numbers(&held), [0, 1]);
    store.set_enabled("off", false).await.unwrap();
    let head = store.feed_head().await.unwrap();
    let at = now_us();
    let begins: Vec<Begin> = held.iter().map(|r| begin(r, at)).collect();
    let finishes: Vec<Finish> =
        held.iter().map(|r| Finish { id: r.run.id.clone(), lease: r.lease, outcome: Outcome::Success, retry_after: None }).collect();
    let done = cycle(&store, "host-a", &begins, &finishes, 0, 0, &rules).await;
    assert_eq!(done.begun[0].as_ref().unwrap().state, TaskState::Running);
    assert_eq!(done.finished[0].as_ref().unwrap().iter().map(|r| r.state).collect::<Vec<_>>(), [TaskState::Success]);
    assert_eq!(conflict_state(&done.begun[1]), "aborted", "its task is disabled");
    assert!(done.finished[1].is_err(), "its end is fenced out: {:?}", done.finished[1]);
    let off = store.get_run(&held[1].run.id).await.unwrap().unwrap();
    assert_eq!((off.state, off.error.as_deref()), (TaskState::Aborted, Some("task disabled")));
    assert_eq!(
        feed_states_after(&store, head).await,
        BTreeMap::from([(0, vec![TaskState::Running, TaskState::Success]), (1, vec![TaskState::Aborted])]),
    );
    assert_the_feed_follows_the_state_machine(&store).await;
}

/// Starts and ends handed in together, in orders of their own: an end goes with its start
/// only when it is its run's one end in the cycle, not retried, under the start's lease;
/// the others are recorded as ends in a later cycle would be (a retried run ends, then is
/// queued again; a stale lease is fenced out). The cycle's answer lists every snapshot in
/// the feed's order, and each begin and finish gets its own result.
pub async fn starts_and_ends_handed_in_any_order_are_answered_as_the_feed_holds_them(driver: &Driver) {
    let store = driver.fresh().await;
    let runs: Vec<TaskRun> = (0..6).map(|n| queued(n, "t")).collect();
    store.insert_runs(&runs).await.unwrap();
    let rules = rules(&[("t", ClaimRules::default())]);
    let held = cycle(&store, "host-a", &[], &[], 0, 6, &rules).await.claimed.reserved;
    assert_eq!(numbers(&held), [0, 1, 2, 3, 4, 5]);
    let end = |n: usize, lease: i64| Finish { id: held[n].run.id.clone(), lease, outcome: Outcome::Success, retry_after: None };
    let retried =
        Finish { outcome: Outcome::Failure("again".into()), retry_after: Some(std::time::Duration::ZERO), ..end(5, held[5].lease) };
    let head = store.feed_head().await.unwrap();
    let at = now_us();
    let begins: Vec<Begin> = [4, 0, 1, 2, 3, 5].iter().map(|&n| begin(&held[n], at)).collect();
    // 3 and 4 end once (in the other order); 1 ends twice; 0's end is under a stale lease;
    // 5 fails and is retried; 2 only starts.
    let finishes =
        [end(3, held[3].lease), end(1, held[1].lease), end(0, held[0].lease - 1), end(1, held[1].lease), retried, end(4, held[4].lease)];
    let done = cycle(&store, "host-a", &begins, &finishes, 0, 0, &rules).await;

    for (b, r) in begins.iter().zip(&done.begun) {
        let r = r.as_ref().expect("every start is recorded");
        assert_eq!((r.id.as_str(), r.state, r.start.map(|t| t.timestamp_micros())), (b.id.as_str(), TaskState::Running, Some(at)));
    }
    let answered: Vec<Result<Vec<TaskState>, ()>> =
        done.finished.iter().map(|w| w.as_ref().map(|w| w.iter().map(|r| r.state).collect()).map_err(|_| ())).collect();
    assert_eq!(
        answered,
        [
            Ok(vec![TaskState::Success]),
            Ok(vec![TaskState::Success]),
            Err(()),
            Err(()),
            Ok(vec![TaskState::Failure, TaskState::Queued]),
            Ok(vec![TaskState::Success])
        ],
        "3 ends; 1 ends once and its second end is fenced out; 0's stale lease is fenced out; 5 fails and is queued again; 4 ends"
    );
    let feed: Vec<TaskRun> = store.events_after(head, 1000, usize::MAX).await.unwrap().into_iter().map(|e| e.run).collect();
    assert_eq!(done.written, feed, "the answer lists the feed's snapshots in its order");
    let order: Vec<(usize, TaskState)> = feed.iter().map(|r| (number(&r.id), r.state)).collect();
    assert_eq!(
        order,
        [
            (4, TaskState::Running),
            (0, TaskState::Running),
            (1, TaskState::Running),
            (2, TaskState::Running),
            (3, TaskState::Running),
            (5, TaskState::Running),
            (3, TaskState::Success),
            (1, TaskState::Success),
            (5, TaskState::Failure),
            (5, TaskState::Queued),
            (4, TaskState::Success),
        ],
        "the starts in the order handed in, then the ends in theirs"
    );
    let states = [TaskState::Running, TaskState::Success, TaskState::Running, TaskState::Success, TaskState::Success, TaskState::Queued];
    for (n, state) in states.into_iter().enumerate() {
        assert_eq!(store.get_run(&held[n].run.id).await.unwrap().unwrap().state, state, "run {n}");
    }
    assert_the_feed_follows_the_state_machine(&store).await;
}
