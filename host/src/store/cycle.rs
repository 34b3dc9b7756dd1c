//! A host's scheduler cycle as one transaction: record the starts of runs it reserved, the
//! ends of runs it finished, then claim runs into the slots they free and reserve the next
//! ones; append every change to the feed last. This module holds the cycle's request and
//! answer and the statement-by-statement path SQLite takes; PostgreSQL runs the same rules
//! server-side (`pg_cycle`).

use super::runs::{self, Begin, ClaimRules, Claimed, Finish};
use super::{Backend, Db, StoreError, events, tasks};
use crate::types::TaskRun;
use std::collections::{BTreeMap, HashMap};

/// What one cycle records and claims for a host.
#[derive(Debug, Clone, Copy)]
pub struct Cycle<'a> {
    /// The host.
    pub host: &'a str,
    /// Reserved runs the host has started since its last cycle.
    pub begins: &'a [Begin],
    /// Executions that ended since its last cycle.
    pub finishes: &'a [Finish],
    /// Runs to start as `running` now: the host's free worker slots.
    pub limit: usize,
    /// Runs to reserve beyond those (see [`Store::claim`](super::Store::claim)'s rules).
    pub ahead: usize,
    /// The tasks the host runs and their limits.
    pub rules: &'a BTreeMap<String, ClaimRules>,
}

/// What one cycle did.
#[derive(Debug, Default)]
pub struct CycleOutcome {
    /// Per begin, in order: the run now `running`, or why not (the owner then stops it).
    pub begun: Vec<Result<TaskRun, StoreError>>,
    /// Per finish, in order: the snapshots written (the end, then `queued` again when
    /// retried), or why not.
    pub finished: Vec<Result<Vec<TaskRun>, StoreError>>,
    /// The runs claimed, reserved and ended at the door.
    pub claimed: Claimed,
    /// Every snapshot the cycle appended to the feed, in the feed's order.
    pub written: Vec<TaskRun>,
}

/// The cycle inside `tx`, on the statement-by-statement path.
pub(crate) async fn run_in(tx: &mut Db, backend: Backend, c: &Cycle<'_>) -> Result<CycleOutcome, StoreError> {
    let (begun, mut written, mut ended) = runs::begin(tx, backend, c.host, c.begins, c.finishes).await?;
    let (finished, ends) = finish_in(tx, backend, c.finishes, &mut ended).await?;
    written.extend(ends);
    let claimed = runs::claim(tx, backend, c.host, c.limit, c.ahead, c.rules, None).await?;
    // Starts, ends, then the claim: the feed's order is the order things happened.
    written.extend(claimed.changes());
    events::append(tx, backend, &written).await?;
    Ok(CycleOutcome { begun, finished, claimed, written })
}

/// The finishes of one batch inside `tx`: each one's result, and every snapshot written (for
/// the feed, which the caller appends last). `ended`: the ends already written with their
/// starts, by run.
async fn finish_in(
    tx: &mut Db,
    backend: Backend,
    finishes: &[Finish],
    ended: &mut HashMap<String, TaskRun>,
) -> Result<(Vec<Result<Vec<TaskRun>, StoreError>>, Vec<TaskRun>), StoreError> {
    let mut out = Vec::with_capacity(finishes.len());
    for f in finishes {
        if let Some(end) = ended.remove(&f.id) {
            out.push(Ok(vec![end]));
            continue;
        }
        match runs::finish(tx, backend, f).await {
            Err(StoreError::Db(e)) => return Err(StoreError::Db(e)),
            r => out.push(r),
        }
    }
    let written: Vec<TaskRun> = out.iter().filter_map(|r| r.as_ref().ok()).flatten().cloned().collect();
    // Each task's last run once per batch, not once per run (in name order: PostgreSQL
    // transactions of several hosts lock these rows in one order, so never in a cycle).
    let mut last: BTreeMap<&str, &TaskRun> = BTreeMap::new();
    for end in out.iter().filter_map(|r| r.as_ref().ok().and_then(|w| w.first())) {
        last.insert(&end.task, end);
    }
    for end in last.into_values() {
        tasks::record_last_run(tx, end).await?;
    }
    Ok((out, written))
}
