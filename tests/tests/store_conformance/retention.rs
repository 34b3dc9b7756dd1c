//! Retention: finished runs are dropped once they ended before a cut (the run pruner),
//! never a queued or running one, a batch per call.

use crate::harness::*;
use fluid_host::time::{now_us, to_datetime};
use fluid_host::{TaskRun, TaskState};

/// Of runs that ended long ago (every end state), one ended lately, and a queued and a
/// running one queued long ago, pruning before the cut takes the old ends only, `limit`
/// at a time, then nothing.
pub async fn pruning_drops_only_runs_that_ended_before_the_cut(driver: &Driver) {
    let store = driver.fresh().await;
    let long_ago = to_datetime(now_us() - 3_600_000_000);
    let with = |n: usize, state: TaskState, end: Option<i64>| {
        let mut r = queued(n, "t");
        r.queued = Some(long_ago);
        r.state = state;
        r.start = (state != TaskState::Queued).then_some(long_ago);
        r.end = end.map(to_datetime);
        r
    };
    let old = now_us() - 3_000_000_000;
    let ends = [TaskState::Success, TaskState::Failure, TaskState::Aborted, TaskState::Interrupted, TaskState::RateLimited];
    let mut runs: Vec<TaskRun> = ends.iter().enumerate().map(|(n, s)| with(n, *s, Some(old))).collect();
    runs.push(with(5, TaskState::Success, Some(now_us())));
    runs.push(with(6, TaskState::Queued, None));
    runs.push(with(7, TaskState::Running, None));
    store.insert_runs(&runs).await.unwrap();

    let cut = now_us() - 60_000_000;
    assert_eq!(store.prune_runs(cut, 3).await.unwrap(), 3);
    assert_eq!(store.prune_runs(cut, 3).await.unwrap(), 2);
    assert_eq!(store.prune_runs(cut, 3).await.unwrap(), 0);
    for r in &runs {
        let kept = store.get_run(&r.id).await.unwrap().is_some();
        assert_eq!(kept, number(&r.id) >= 5, "run {} ({})", number(&r.id), r.state);
    }
}
