//! SQL of `fluid_runs`: the queue and the current state of every run.
//!
//! Every state change goes through [`write_state`], which updates the row; the caller (one
//! transaction in [`super::api`]) appends the snapshots it wrote to the change feed
//! ([`super::events`]) at the end of that same transaction, so the row and the feed never
//! disagree. Appending last matters on PostgreSQL: the feed's ordering lock is then taken
//! after every row lock of the transaction, so it can never be part of a lock cycle. A running run carries a `lease` (incremented at each claim): a
//! writer holding an older lease is fenced out and cannot overwrite a newer state.

use super::{Backend, StoreError};
use super::{Db, Row, query, query_built};
use crate::time::{now_us, to_datetime};
use crate::types::{Priority, RetryPolicy, TaskRun, TaskState};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

pub(crate) const COLUMNS: &str = "id, task, tags, priority, state, params, queued_at, start_at, end_at, \
    execute_after, retry_attempt, rate_limit_attempt, from_run_id, root_run_id, error, owner, lease, cancel_requested";

/// A run row: the public snapshot plus the claim bookkeeping.
#[derive(Debug, Clone)]
pub struct RunRow {
    /// The run, as the API shows it.
    pub run: TaskRun,
    /// The host running it, while it runs.
    pub owner: Option<String>,
    /// Incremented at each claim: only the current one may finish the run (fencing).
    pub lease: i64,
    /// Someone asked to cancel it while it ran: its owner stops it.
    pub cancel_requested: bool,
}

pub(crate) fn from_row(row: &Row) -> Result<RunRow, sqlx::Error> {
    let ts = |name: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>, sqlx::Error> {
        Ok(row.try_get::<Option<i64>, _>(name)?.map(to_datetime))
    };
    let state: String = row.try_get("state")?;
    let tags: String = row.try_get("tags")?;
    let params: String = row.try_get("params")?;
    let run = TaskRun {
        id: row.try_get("id")?,
        task: row.try_get("task")?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        priority: Priority::from_rank(row.try_get("priority")?),
        state: TaskState::parse(&state).ok_or_else(|| sqlx::Error::Decode(format!("unknown state {state}").into()))?,
        params: serde_json::from_str(&params).unwrap_or(serde_json::Value::Null),
        queued: ts("queued_at")?,
        start: ts("start_at")?,
        end: ts("end_at")?,
        execute_after: ts("execute_after")?,
        retry_attempt: row.try_get::<i64, _>("retry_attempt")? as u32,
        rate_limit_attempt: row.try_get::<i64, _>("rate_limit_attempt")? as u32,
        from_run_id: row.try_get("from_run_id")?,
        root_run_id: row.try_get("root_run_id")?,
        error: row.try_get("error")?,
    };
    Ok(RunRow {
        run,
        owner: row.try_get("owner")?,
        lease: row.try_get("lease")?,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
    })
}

fn us(t: Option<chrono::DateTime<chrono::Utc>>) -> Option<i64> {
    t.map(|t| t.timestamp_micros())
}

/// Inserts new queued runs (the caller appends their `queued` events). SQLite: one cached
/// statement per row (inline, a row costs a function call). PostgreSQL: 100 rows per
/// statement, one round trip each (one per row made queueing 5,000 runs take a second).
pub(crate) async fn insert(conn: &mut Db, backend: Backend, runs: &[TaskRun]) -> Result<(), sqlx::Error> {
    // The statement for `n` rows: 15 parameters each, the claim bookkeeping fixed.
    let text = |n: usize| {
        let values: Vec<String> = (0..n)
            .map(|i| {
                let p: Vec<String> = (1..=15).map(|k| format!("${}", 15 * i + k)).collect();
                format!("({}, NULL, 0, 0)", p.join(", "))
            })
            .collect();
        format!("INSERT INTO fluid_runs ({COLUMNS}) VALUES {}", values.join(", "))
    };
    let rows = backend.rows_per_insert(100);
    // Built once: every chunk but the last is full.
    let full = text(rows);
    for chunk in runs.chunks(rows) {
        let mut q = query_built(if chunk.len() == rows { full.clone() } else { text(chunk.len()) });
        for run in chunk {
            q = q
                .bind(&run.id)
                .bind(&run.task)
                .bind(serde_json::to_string(&run.tags).unwrap_or_default())
                .bind(run.priority.rank())
                .bind(run.state.as_str())
                .bind(run.params.to_string())
                .bind(us(run.queued))
                .bind(us(run.start))
                .bind(us(run.end))
                .bind(us(run.execute_after).unwrap_or(0))
                .bind(run.retry_attempt as i64)
                .bind(run.rate_limit_attempt as i64)
                .bind(&run.from_run_id)
                .bind(&run.root_run_id)
                .bind(&run.error);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Writes the run's new state (the whole snapshot); the caller appends it to the feed.
pub(crate) async fn write_state(conn: &mut Db, run: &TaskRun, owner: Option<&str>, lease: i64) -> Result<(), sqlx::Error> {
    query(
        "UPDATE fluid_runs SET state = $2, queued_at = $3, start_at = $4, end_at = $5, execute_after = $6, \
         retry_attempt = $7, rate_limit_attempt = $8, error = $9, owner = $10, lease = $11, \
         cancel_requested = CASE WHEN $2 = 'running' THEN cancel_requested ELSE 0 END WHERE id = $1",
    )
    .bind(&run.id)
    .bind(run.state.as_str())
    .bind(us(run.queued))
    .bind(us(run.start))
    .bind(us(run.end))
    .bind(us(run.execute_after).unwrap_or(0))
    .bind(run.retry_attempt as i64)
    .bind(run.rate_limit_attempt as i64)
    .bind(&run.error)
    .bind(owner)
    .bind(lease)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(crate) async fn get(conn: &mut Db, backend: Backend, id: &str, lock: bool) -> Result<Option<RunRow>, sqlx::Error> {
    let lock = if lock { backend.for_update() } else { "" };
    let sql = format!("SELECT {COLUMNS} FROM fluid_runs WHERE id = $1{lock}");
    let row = query_built(sql).bind(id).fetch_optional(&mut *conn).await?;
    row.as_ref().map(from_row).transpose()
}

/// What the claimer needs to know about each task it may start.
#[derive(Debug, Clone, Default)]
pub struct ClaimRules {
    /// Most runs of the task running at once across every host (0: no limit).
    pub max_concurrency: u32,
    /// At the limit, the run waits this policy's delay, queued and silent; without one (or
    /// once it allows no more), the run ends `rate_limited`.
    pub rate_limit_retry: Option<RetryPolicy>,
    /// The task's group and the runs of that group this claim may still start (the room
    /// left in its share of this host's workers). A full group's tasks are left out of the
    /// rules altogether, so its queued runs never take a claim's places from others.
    pub share: Option<ShareRoom>,
}

/// Room left in a group's share of this host's workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRoom {
    /// The group's name.
    pub group: String,
    /// Runs of the group this claim may still start.
    pub room: u32,
}

/// The room of every group among `rules`, to be counted down as a claim starts runs.
fn share_rooms(rules: &BTreeMap<String, ClaimRules>) -> HashMap<String, u32> {
    rules.values().filter_map(|r| r.share.as_ref()).map(|s| (s.group.clone(), s.room)).collect()
}

/// The result of one claim: runs now `running` on this host, runs reserved for it, and
/// runs that ended at the door (disabled task, concurrency limit reached).
#[derive(Debug, Default)]
pub struct Claimed {
    /// Runs now `running` on this host, each with its new lease.
    pub started: Vec<RunRow>,
    /// Runs reserved for this host (claimed ahead, see [`claim`]): still `queued` on the
    /// feed and in the API, but no other host claims them. Each carries its new lease,
    /// which [`Begin`] presents when the host starts it.
    pub reserved: Vec<RunRow>,
    /// Runs that ended at the door (`aborted`, `rate_limited`).
    pub ended: Vec<TaskRun>,
}

impl Claimed {
    /// Every snapshot the claim wrote (for the change feed).
    pub fn changes(&self) -> Vec<TaskRun> {
        self.ended.iter().cloned().chain(self.started.iter().map(|r| r.run.clone())).collect()
    }
}

/// Claims up to `limit` due runs, highest priority first, FIFO within one priority, for
/// tasks this host knows. `max_concurrency` is enforced inside the same transaction:
/// serialised by the single writer on SQLite, by a per-task advisory lock on PostgreSQL
/// (rows are picked with `FOR UPDATE SKIP LOCKED`, so hosts never claim the same run).
///
/// Then reserves up to `ahead` more, the next in the same order: a reservation is a
/// queued run with an owner and a new lease. It stays `queued` (no event, no start), so
/// it never looks running, but no other host claims it: its owner may start it at once,
/// when a worker frees, and records the start later ([`Begin`]). Only runs of tasks
/// without a concurrency limit or a share of workers are reserved, so both limits stay
/// exact: they count `running` runs only; reservations stop at the first run that cannot
/// be reserved, so none passes it (a freed worker claims it once they are started). A
/// disabled task's run ends at the door as in a claim. Runs a host reserves and will not start it releases ([`release`]); those of a
/// host that stopped are released by the rescue ([`orphaned_reservations`]).
pub(crate) async fn claim(
    conn: &mut Db,
    backend: Backend,
    host: &str,
    limit: usize,
    ahead: usize,
    rules: &BTreeMap<String, ClaimRules>,
    only: Option<&str>,
) -> Result<Claimed, sqlx::Error> {
    let mut out = Claimed::default();
    if limit + ahead == 0 || rules.is_empty() {
        return Ok(out);
    }
    let now = now_us();
    let names: Vec<&String> = rules.keys().collect();
    let placeholders: Vec<String> = (0..names.len()).map(|i| format!("${}", i + 3)).collect();
    let skip_locked = backend.skip_locked();
    let only_sql = if only.is_some() { format!(" AND id = ${}", names.len() + 3) } else { String::new() };
    let sql = format!(
        "SELECT {COLUMNS} FROM fluid_runs WHERE state = 'queued' AND owner IS NULL AND execute_after <= $1 \
         AND task IN ({}){only_sql} ORDER BY priority, execute_after, id LIMIT $2{skip_locked}",
        placeholders.join(", ")
    );
    let mut q = query_built(sql).bind(now).bind((limit + ahead) as i64);
    for n in &names {
        q = q.bind(n.as_str());
    }
    if let Some(id) = only {
        q = q.bind(id);
    }
    let rows = q.fetch_all(&mut *conn).await?;
    if rows.is_empty() {
        return Ok(out);
    }
    let candidates: Vec<RunRow> = rows.iter().map(from_row).collect::<Result<_, _>>()?;

    let disabled = disabled_tasks(conn).await?;

    // In-flight counts of the limited tasks among the candidates, taken under their locks.
    let mut limited: Vec<&str> =
        candidates.iter().map(|c| c.run.task.as_str()).filter(|t| rules.get(*t).is_some_and(|r| r.max_concurrency > 0)).collect();
    limited.sort_unstable();
    limited.dedup();
    let mut in_flight: HashMap<String, u32> = HashMap::new();
    for task in limited {
        if backend.takes_advisory_locks() {
            query(super::locks::TASK).bind(task).execute(&mut *conn).await?;
        }
        let n: i64 = query("SELECT COUNT(*) AS n FROM fluid_runs WHERE task = $1 AND state = 'running'")
            .bind(task)
            .fetch_one(&mut *conn)
            .await?
            .try_get("n")?;
        in_flight.insert(task.to_string(), n as u32);
    }

    let mut rooms = share_rooms(rules);
    for mut c in candidates {
        let rule = rules.get(&c.run.task).cloned().unwrap_or_default();
        let t = to_datetime(now);
        if disabled.contains(&c.run.task) {
            c.run.state = TaskState::Aborted;
            c.run.end = Some(t);
            c.run.error = Some("task disabled".into());
            write_state(conn, &c.run, None, c.lease).await?;
            out.ended.push(c.run);
            continue;
        }
        if out.started.len() >= limit {
            // Past the claim: reserve, where neither limit is at stake, and never past a
            // run that cannot be reserved, which the next claim must reach.
            if rule.max_concurrency > 0 || rule.share.is_some() || out.reserved.len() >= ahead {
                break;
            }
            c.lease += 1;
            c.owner = Some(host.to_string());
            query("UPDATE fluid_runs SET owner = $2, lease = $3 WHERE id = $1")
                .bind(&c.run.id)
                .bind(host)
                .bind(c.lease)
                .execute(&mut *conn)
                .await?;
            out.reserved.push(c);
            continue;
        }
        // No room left in its group's share: it stays queued, untouched, for a later claim.
        if let Some(share) = &rule.share
            && rooms.get(&share.group).is_none_or(|n| *n == 0)
        {
            continue;
        }
        if rule.max_concurrency > 0 {
            let n = in_flight.entry(c.run.task.clone()).or_default();
            if *n >= rule.max_concurrency {
                let attempt = c.run.rate_limit_attempt + 1;
                match &rule.rate_limit_retry {
                    Some(p) if p.allows(attempt) => {
                        // Silent back-off: the run stays queued, no event (as aio-fluid).
                        let after = now + p.delay(attempt).as_micros() as i64;
                        query("UPDATE fluid_runs SET execute_after = $2, rate_limit_attempt = $3 WHERE id = $1")
                            .bind(&c.run.id)
                            .bind(after)
                            .bind(attempt as i64)
                            .execute(&mut *conn)
                            .await?;
                    }
                    _ => {
                        c.run.state = TaskState::RateLimited;
                        c.run.end = Some(t);
                        c.run.error = Some(format!("max_concurrency {} reached", rule.max_concurrency));
                        write_state(conn, &c.run, None, c.lease).await?;
                        out.ended.push(c.run);
                    }
                }
                continue;
            }
            *n += 1;
        }
        if let Some(share) = &rule.share
            && let Some(n) = rooms.get_mut(&share.group)
        {
            *n -= 1;
        }
        c.run.state = TaskState::Running;
        c.run.start = Some(t);
        c.lease += 1;
        c.owner = Some(host.to_string());
        write_state(conn, &c.run, Some(host), c.lease).await?;
        out.started.push(c);
    }
    Ok(out)
}

/// A reserved run its owner has started: recorded as `running` from `at_us`, fenced like
/// a finish (only the owner of the current reservation may start it).
#[derive(Debug, Clone)]
pub struct Begin {
    /// The run.
    pub id: String,
    /// The lease it was reserved with.
    pub lease: i64,
    /// When the host started it (microseconds since the epoch): the run's `start`.
    pub at_us: i64,
}

/// For each begin, the finish that may be written with it, from `queued` to its end in one
/// write: the run's only finish in the batch, not retried, under the same lease. Each
/// finish goes with one begin at most.
pub(crate) fn pair_ends(begins: &[Begin], finishes: &[Finish]) -> Vec<Option<usize>> {
    let mut once: HashMap<&str, Option<usize>> = HashMap::with_capacity(finishes.len());
    for (i, f) in finishes.iter().enumerate() {
        once.entry(f.id.as_str()).and_modify(|seen| *seen = None).or_insert(Some(i).filter(|_| f.retry_after.is_none()));
    }
    begins
        .iter()
        .map(|b| match once.get_mut(b.id.as_str()) {
            Some(end @ Some(_)) if end.is_some_and(|i| finishes[i].lease == b.lease) => end.take(),
            _ => None,
        })
        .collect()
}

/// The `running` snapshot of a run begun and ended in one write, from the row its end wrote:
/// the start's write would have left everything else as it is.
pub(crate) fn started_of(end: &TaskRun) -> TaskRun {
    let mut start = end.clone();
    (start.state, start.end, start.error) = (TaskState::Running, None, None);
    start
}

/// What [`begin`] wrote: per begin, the run now `running` or why not; every snapshot
/// written, for the feed; and the ends written with their starts, by run.
pub(crate) type Begun = (Vec<Result<TaskRun, StoreError>>, Vec<TaskRun>, HashMap<String, TaskRun>);

/// Records the starts of reserved runs, in order. Each is the run now `running`, or why
/// not: cancelled, released and claimed elsewhere, or gone (the owner stops its
/// execution). A run of a task disabled since it was reserved ends `aborted` here, as it
/// would have at a claim.
///
/// A run that also ended in this cycle (one of `finishes`, not retried, under the same
/// lease) is written once, from `queued` to its end: a run's row is written at its
/// reservation, its start and its end, and on a busy queue each write is a row version
/// with its index entries. Its `running` snapshot goes to the feed all the same. Only
/// where that snapshot follows from the row written: no error or end kept from an earlier
/// attempt, no cancel asked; any other run takes the two writes.
pub(crate) async fn begin(conn: &mut Db, backend: Backend, host: &str, begins: &[Begin], finishes: &[Finish]) -> Result<Begun, StoreError> {
    let mut out = Vec::with_capacity(begins.len());
    let mut written = Vec::new();
    let mut ended = HashMap::new();
    if begins.is_empty() {
        return Ok((out, written, ended));
    }
    let disabled = disabled_tasks(conn).await?;
    let sql = format!(
        "UPDATE fluid_runs SET state = 'running', start_at = $4 \
         WHERE id = $1 AND lease = $2 AND owner = $3 AND state = 'queued' RETURNING {COLUMNS}"
    );
    let paired = pair_ends(begins, finishes);
    // A disabled task's run takes the two writes, and is aborted at its start.
    let not_disabled = if disabled.is_empty() { String::new() } else { format!(" AND task NOT IN ({DISABLED_TASKS})") };
    let both = format!(
        "UPDATE fluid_runs SET state = $5, start_at = $4, end_at = $6, error = $7, owner = NULL, cancel_requested = 0 \
         WHERE id = $1 AND lease = $2 AND owner = $3 AND state = 'queued' \
         AND error IS NULL AND end_at IS NULL AND cancel_requested = 0{not_disabled} RETURNING {COLUMNS}"
    );
    for (b, end) in begins.iter().zip(paired) {
        if let Some(f) = end.map(|i| &finishes[i]) {
            let (state, error) = end_state(&f.outcome);
            let row = query_built(both.clone())
                .bind(&b.id)
                .bind(b.lease)
                .bind(host)
                .bind(b.at_us)
                .bind(state.as_str())
                .bind(now_us())
                .bind(error)
                .fetch_optional(&mut *conn)
                .await?;
            if let Some(row) = row {
                let end = from_row(&row)?.run;
                let start = started_of(&end);
                written.push(start.clone());
                out.push(Ok(start));
                ended.insert(b.id.clone(), end);
                continue;
            }
        }
        let Some(row) = query_built(sql.clone()).bind(&b.id).bind(b.lease).bind(host).bind(b.at_us).fetch_optional(&mut *conn).await?
        else {
            match get(conn, backend, &b.id, false).await? {
                // Recorded by a commit whose answer was lost: begun, nothing to write.
                Some(row) if row.run.state == TaskState::Running && row.owner.as_deref() == Some(host) && row.lease == b.lease => {
                    out.push(Ok(row.run))
                }
                row => out.push(Err(fenced_out_of(&b.id, b.lease, row))),
            }
            continue;
        };
        let mut row = from_row(&row)?;
        if disabled.contains(&row.run.task) {
            row.run.state = TaskState::Aborted;
            row.run.end = Some(to_datetime(now_us()));
            row.run.error = Some("task disabled".into());
            write_state(conn, &row.run, None, row.lease).await?;
            out.push(Err(StoreError::Conflict { id: b.id.clone(), state: row.run.state.to_string(), why: "task disabled".into() }));
            written.push(row.run);
            continue;
        }
        written.push(row.run.clone());
        out.push(Ok(row.run));
    }
    Ok((out, written, ended))
}

/// Gives back reservations `host` will not start: each run is claimable again (unless
/// it moved on since: started, cancelled).
pub(crate) async fn release(conn: &mut Db, host: &str, reserved: &[(String, i64)]) -> Result<u64, sqlx::Error> {
    let mut n = 0;
    for (id, lease) in reserved {
        n += query("UPDATE fluid_runs SET owner = NULL WHERE id = $1 AND lease = $2 AND owner = $3 AND state = 'queued'")
            .bind(id)
            .bind(*lease)
            .bind(host)
            .execute(&mut *conn)
            .await?;
    }
    Ok(n)
}

/// Gives back every reservation of `host` but those of `keep` (the runs it holds or has
/// started): after a commit whose answer was lost, it holds none of what it reserved.
pub(crate) async fn release_unheld(conn: &mut Db, host: &str, keep: &[String]) -> Result<u64, sqlx::Error> {
    let placeholders: Vec<String> = (0..keep.len()).map(|i| format!("${}", i + 2)).collect();
    let except = if keep.is_empty() { String::new() } else { format!(" AND id NOT IN ({})", placeholders.join(", ")) };
    let mut q = query_built(format!("UPDATE fluid_runs SET owner = NULL WHERE state = 'queued' AND owner = $1{except}")).bind(host);
    for id in keep {
        q = q.bind(id.as_str());
    }
    q.execute(&mut *conn).await
}

/// Releases the reservations of hosts whose heartbeat is older than `dead_before` (or
/// unknown hosts): their runs are claimable again, still `queued`, with no event (a
/// reservation never showed on the feed). Returns how many.
pub(crate) async fn orphaned_reservations(conn: &mut Db, dead_before: i64) -> Result<u64, sqlx::Error> {
    query(
        "UPDATE fluid_runs SET owner = NULL WHERE state = 'queued' AND owner IS NOT NULL AND NOT EXISTS \
         (SELECT 1 FROM fluid_hosts h WHERE h.id = fluid_runs.owner AND h.heartbeat_at >= $1)",
    )
    .bind(dead_before)
    .execute(&mut *conn)
    .await
}

/// The names of the disabled tasks, as a statement: read alone, or as a subquery.
const DISABLED_TASKS: &str = "SELECT name FROM fluid_task_state WHERE enabled = 0";

async fn disabled_tasks(conn: &mut Db) -> Result<HashSet<String>, sqlx::Error> {
    query(DISABLED_TASKS).fetch_all(&mut *conn).await?.iter().map(|r| r.try_get::<String, _>("name")).collect()
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Ended well: `success`.
    Success,
    /// Failed with this error: `failure` (a retry may queue it again).
    Failure(String),
    /// Given up on (cancelled, refused): `aborted`, never retried.
    Aborted(String),
    /// Stopped by its host (a shutdown): `interrupted`.
    Interrupted(String),
}

/// One finished execution to record.
#[derive(Debug, Clone)]
pub struct Finish {
    /// The run.
    pub id: String,
    /// The lease it was claimed with: a stale one is fenced out.
    pub lease: i64,
    /// How the execution ended.
    pub outcome: Outcome,
    /// Re-queue the same run after this delay (the retry policy said so).
    pub retry_after: Option<Duration>,
}

/// Records one finished execution. Fenced: only the holder of the current lease of a
/// `running` run may finish it, so a host that lost its lease cannot overwrite what
/// happened since (a rescue, a newer claim).
///
/// Returns every snapshot written, in order: the end state, then the `queued` one when
/// the run is retried (both are state changes on the feed; the last is the current row).
pub(crate) async fn finish(conn: &mut Db, backend: Backend, f: &Finish) -> Result<Vec<TaskRun>, StoreError> {
    let now = now_us();
    let (state, error) = end_state(&f.outcome);
    // The fence and the write in one statement (one round trip on PostgreSQL, where the
    // row lock it takes is held to the commit): it changes the row only if this lease is
    // still the current one of a running run, and returns the row as written.
    let sql = format!(
        "UPDATE fluid_runs SET state = $3, end_at = $4, error = $5, owner = NULL, cancel_requested = 0 \
         WHERE id = $1 AND lease = $2 AND state = 'running' RETURNING {COLUMNS}"
    );
    let written = query_built(sql).bind(&f.id).bind(f.lease).bind(state.as_str()).bind(now).bind(error).fetch_optional(&mut *conn).await?;
    let Some(row) = written else {
        return Err(fenced_out(conn, backend, &f.id, f.lease).await?);
    };
    let mut row = from_row(&row)?;
    let run = &mut row.run;
    // The first snapshot is the end (the caller records it as the task's last run).
    let mut written = vec![run.clone()];
    if let Some(delay) = f.retry_after {
        requeue(conn, run, now + delay.as_micros() as i64, row.lease).await?;
        written.push(run.clone());
    }
    Ok(written)
}

/// The state and error an execution's outcome ends its run in.
pub(crate) fn end_state(outcome: &Outcome) -> (TaskState, Option<String>) {
    match outcome {
        Outcome::Success => (TaskState::Success, None),
        Outcome::Failure(e) => (TaskState::Failure, Some(e.clone())),
        Outcome::Aborted(e) => (TaskState::Aborted, Some(e.clone())),
        Outcome::Interrupted(e) => (TaskState::Interrupted, Some(e.clone())),
    }
}

/// Why a write fenced by `lease` (a finish, a start) changed nothing: the run is gone, or
/// it moved on (another lease, another state).
pub(crate) async fn fenced_out(conn: &mut Db, backend: Backend, id: &str, lease: i64) -> Result<StoreError, sqlx::Error> {
    Ok(fenced_out_of(id, lease, get(conn, backend, id, false).await?))
}

/// [`fenced_out`], given the row as it stands (`None`: there is no such run).
pub(crate) fn fenced_out_of(id: &str, lease: i64, row: Option<RunRow>) -> StoreError {
    match row {
        None => StoreError::RunNotFound(id.to_string()),
        Some(row) => StoreError::Conflict {
            id: id.to_string(),
            state: row.run.state.to_string(),
            why: format!("lease {lease} is stale (current {})", row.lease),
        },
    }
}

/// `failure`/`interrupted` -> `queued` again: same id, one more retry attempt.
pub(crate) async fn requeue(conn: &mut Db, run: &mut TaskRun, after_us: i64, lease: i64) -> Result<(), sqlx::Error> {
    run.state = TaskState::Queued;
    run.retry_attempt += 1;
    run.queued = Some(to_datetime(now_us()));
    run.start = None;
    run.end = None;
    run.execute_after = Some(to_datetime(after_us));
    write_state(conn, run, None, lease).await
}

/// Outcome of a cancel request.
#[derive(Debug)]
pub enum Cancel {
    /// It was queued: it is now aborted.
    Aborted(TaskRun),
    /// It is running on `owner`: the request is recorded; the owner stops it.
    Requested {
        /// The run, still running.
        run: TaskRun,
        /// The host that stops it.
        owner: String,
    },
}

pub(crate) async fn cancel(conn: &mut Db, backend: Backend, id: &str) -> Result<Cancel, StoreError> {
    let Some(mut row) = get(conn, backend, id, true).await? else {
        return Err(StoreError::RunNotFound(id.into()));
    };
    match row.run.state {
        TaskState::Queued => {
            row.run.state = TaskState::Aborted;
            row.run.end = Some(to_datetime(now_us()));
            row.run.error = Some("cancelled".into());
            write_state(conn, &row.run, None, row.lease).await?;
            Ok(Cancel::Aborted(row.run))
        }
        TaskState::Running => {
            query("UPDATE fluid_runs SET cancel_requested = 1 WHERE id = $1").bind(id).execute(&mut *conn).await?;
            Ok(Cancel::Requested { run: row.run, owner: row.owner.unwrap_or_default() })
        }
        state => Err(StoreError::Conflict {
            id: id.into(),
            state: state.to_string(),
            why: "only a queued or running run can be cancelled".into(),
        }),
    }
}

/// Aborts every queued run of the given priorities; returns how many per priority and the
/// aborted runs.
pub(crate) async fn clear_queue(
    conn: &mut Db,
    backend: Backend,
    priorities: &[Priority],
) -> Result<(BTreeMap<Priority, u64>, Vec<TaskRun>), sqlx::Error> {
    let mut counts = BTreeMap::new();
    let mut aborted = Vec::new();
    for &p in priorities {
        // Rows a claim holds are being started right now: not queued any more, skip them.
        let lock = backend.skip_locked();
        let sql = format!("SELECT {COLUMNS} FROM fluid_runs WHERE state = 'queued' AND priority = $1{lock}");
        let rows = query_built(sql).bind(p.rank()).fetch_all(&mut *conn).await?;
        let now = to_datetime(now_us());
        for r in &rows {
            let mut row = from_row(r)?;
            row.run.state = TaskState::Aborted;
            row.run.end = Some(now);
            row.run.error = Some("queue cleared".into());
            write_state(conn, &row.run, None, row.lease).await?;
            aborted.push(row.run);
        }
        counts.insert(p, rows.len() as u64);
    }
    Ok((counts, aborted))
}

/// Deletes up to `limit` runs that ended before `before_us` (never a queued or running
/// one); returns how many.
pub(crate) async fn prune(conn: &mut Db, before_us: i64, limit: usize) -> Result<u64, sqlx::Error> {
    query(
        "DELETE FROM fluid_runs WHERE id IN (SELECT id FROM fluid_runs \
         WHERE state NOT IN ('queued', 'running') AND end_at < $1 LIMIT $2)",
    )
    .bind(before_us)
    .bind(limit as i64)
    .execute(&mut *conn)
    .await
}

/// Queued runs per priority.
pub(crate) async fn queue_lengths(conn: &mut Db) -> Result<BTreeMap<Priority, u64>, sqlx::Error> {
    let rows =
        query("SELECT priority, COUNT(*) AS n FROM fluid_runs WHERE state = 'queued' GROUP BY priority").fetch_all(&mut *conn).await?;
    let mut out: BTreeMap<Priority, u64> = Priority::ALL.into_iter().map(|p| (p, 0)).collect();
    for r in rows {
        out.insert(Priority::from_rank(r.try_get("priority")?), r.try_get::<i64, _>("n")? as u64);
    }
    Ok(out)
}

/// Runs `running` on hosts whose heartbeat is older than `dead_before` (or unknown hosts).
pub(crate) async fn orphaned(conn: &mut Db, backend: Backend, dead_before: i64) -> Result<Vec<RunRow>, sqlx::Error> {
    let lock = backend.skip_locked();
    let sql = format!(
        "SELECT {COLUMNS} FROM fluid_runs WHERE state = 'running' AND NOT EXISTS \
         (SELECT 1 FROM fluid_hosts h WHERE h.id = fluid_runs.owner AND h.heartbeat_at >= $1){lock}"
    );
    let rows = query_built(sql).bind(dead_before).fetch_all(&mut *conn).await?;
    rows.iter().map(from_row).collect()
}

/// Ids of this host's running runs that someone asked to cancel.
pub(crate) async fn cancel_requests(conn: &mut Db, host: &str) -> Result<Vec<String>, sqlx::Error> {
    query("SELECT id FROM fluid_runs WHERE state = 'running' AND owner = $1 AND cancel_requested = 1")
        .bind(host)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect()
}

/// Queued runs of `tasks`, counted up to `at_most` (the scan stops there).
pub(crate) async fn queued_of(conn: &mut Db, tasks: &[String], at_most: u64) -> Result<u64, sqlx::Error> {
    if tasks.is_empty() {
        return Ok(0);
    }
    let placeholders: Vec<String> = (0..tasks.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "SELECT COUNT(*) AS n FROM (SELECT 1 FROM fluid_runs WHERE state = 'queued' AND task IN ({}) LIMIT $1) AS q",
        placeholders.join(", ")
    );
    let mut q = query_built(sql).bind(at_most as i64);
    for t in tasks {
        q = q.bind(t.as_str());
    }
    Ok(q.fetch_one(&mut *conn).await?.try_get::<i64, _>("n")? as u64)
}
