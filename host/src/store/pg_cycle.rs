//! PostgreSQL's scheduler cycle in one round trip: record the ends of finished runs, claim
//! runs into the slots they free, append every change to the feed.
//!
//! Why server-side: on PostgreSQL each statement is a round trip, and the cycle written as
//! statements ([`super::runs::finish`], [`super::runs::claim`], [`super::events::append`])
//! was about twenty of them for eight runs. On a small machine each round trip waits for a
//! core the host, the server and the plugins share, and those waits were the cycle's cost
//! (0.9 ms alone, 2.1 ms beside the db plugin's delivery). Set-based statements were tried
//! instead and lost: planning a join over a JSON batch cost more than the round trips it
//! saved. A PL/pgSQL function runs the same per-row statements with plans cached by the
//! server, and the whole cycle is one statement, so one transaction, in autocommit.
//!
//! The rules are those of the Rust path, which SQLite keeps (there a statement is a
//! function call): ends fenced by lease, a retried run queued again under the same id,
//! each task's last run once per batch in name order, claims highest priority first with
//! `FOR UPDATE SKIP LOCKED`, disabled tasks aborted at the door, `max_concurrency` counted
//! under a per-task advisory lock taken in name order, silent rate-limit back-off or
//! `rate_limited`, and the feed appended last under its ordering lock. The scheduler's
//! test suite runs on both backends and holds the two paths to the same behaviour.
//!
//! The function carries a version suffix: hosts of two versions may share a database, and
//! each calls the function it was written for. A released version is never edited (the
//! migrations create it only where it is missing, so a host connecting as another role
//! than the function's owner still starts); a change is a new suffix.

use super::cycle::{Cycle, CycleOutcome};
use super::locks::{feed_lock, task_lock};
use super::runs::{end_state, fenced_out_of, from_row, pair_ends, started_of};
use super::{Db, StoreError, query};
use crate::time::now_us;
use serde_json::{Value, json};

/// The function's name, for the migrations: they install it where it is missing.
pub(crate) const FUNCTION_NAME: &str = "fluid_finish_and_claim_v6";

/// The cycle. `p_begins`: [{idx, id, lease, at, state, error}], reserved runs this host
/// started, with the end to write with the start where the host paired one (see
/// [`super::runs::pair_ends`]); `p_finishes`: [{idx, id, lease, state, error, retry_in_us,
/// paired}], `paired` naming the begin it goes with; `p_limit` runs to start and
/// `p_ahead` to reserve beyond them; `p_tasks`: the task names this host runs; `p_limited`:
/// {task: {max, retry, attempts, wait_s, backoff, max_wait_s}} for tasks with a
/// concurrency limit; `p_groups`: {task: group} for tasks sharing a cap on this host's
/// workers, `p_rooms`: {group: runs it may still start} (`v2` added these two; `v3` takes
/// the locks of `locks`; `v4` added begins and reservations; `v5` writes a run begun and
/// ended in the same cycle once, as [`super::runs::begin`] does, and the reservations in
/// one statement; `v6` takes that pairing from the host and answers such a run with one
/// row). Returns, in the order written: `begun` (idx = the begin), `begun_ended` (idx =
/// the begin, the run as its paired end wrote it), `begun_before` (a commit whose answer
/// was lost recorded it), `begin_refused` (its task is disabled: aborted), `begin_conflict`
/// or `begin_missing`; `end` and `requeued` rows (idx = the finish; none for a finish
/// written with its begin),
/// `conflict` (a fenced-out finish, with the row as it stands) or `missing` (no such run);
/// `ended` (claimed and ended at the door), `started`, `reserved`.
pub(crate) const FUNCTION: &str = concat!(
    r#"CREATE OR REPLACE FUNCTION fluid_finish_and_claim_v6(
        p_begins TEXT, p_finishes TEXT, p_now BIGINT, p_host TEXT, p_limit BIGINT, p_ahead BIGINT,
        p_tasks TEXT, p_limited TEXT, p_groups TEXT, p_rooms TEXT
    ) RETURNS TABLE (o_kind TEXT, o_idx BIGINT, o_run fluid_runs)
    LANGUAGE plpgsql
    -- Every lookup here has its index. Until the first ANALYZE the planner takes a busy
    -- new queue for a few rows, and claimed with a bitmap scan and a sort of every
    -- queued run: 7 ms a claim at 5,000 queued, against 0.1 ms for the ordered scan.
    -- Disabling a method adds a huge cost rather than forbidding it, and a huge cost
    -- turns on JIT compilation (0.4 s a call), which never pays for these statements.
    SET enable_sort = off SET enable_bitmapscan = off SET jit = off
    AS $fn$
    DECLARE
        b RECORD;
        f RECORD;
        r fluid_runs;
        c fluid_runs;
        cands fluid_runs[] := '{}';
        evs fluid_runs[] := '{}';
        starts fluid_runs[] := '{}';
        ends fluid_runs[] := '{}';
        disabled TEXT[];
        limited JSONB := p_limited::jsonb;
        groups JSONB := p_groups::jsonb;
        rooms JSONB := p_rooms::jsonb;
        g TEXT;
        flight JSONB := '{}';
        rule JSONB;
        t TEXT;
        n BIGINT;
        attempt BIGINT;
        d FLOAT8;
        nstarted BIGINT := 0;
        nreserved BIGINT := 0;
        -- By begin (idx + 1): the run written from queued to its end, and whether it was.
        mrows fluid_runs[] := '{}';
        mok BOOLEAN[] := '{}';
        rr fluid_runs;
        reserve TEXT[] := '{}';
    BEGIN
        -- Starts of runs this host reserved, fenced: only the owner of the current
        -- reservation of a queued run may start it.
        IF p_begins <> '[]' THEN
            disabled := ARRAY(SELECT name FROM fluid_task_state WHERE enabled = 0);
            FOR b IN SELECT * FROM json_to_recordset(p_begins::json)
                     AS x(idx BIGINT, id TEXT, lease BIGINT, at BIGINT, state TEXT, error TEXT) LOOP
                -- Begun and ended in this cycle: one write from queued to its end. Only where
                -- the start's snapshot follows from the row written (no error or end kept
                -- from an earlier attempt, no cancel asked), so it is the one written before;
                -- the host derives that snapshot from the row answered.
                IF b.state IS NOT NULL THEN
                    UPDATE fluid_runs SET state = b.state, start_at = b.at, end_at = p_now, error = b.error,
                        owner = NULL, cancel_requested = 0
                        WHERE id = b.id AND lease = b.lease AND owner = p_host AND state = 'queued'
                          AND error IS NULL AND end_at IS NULL AND cancel_requested = 0 AND task <> ALL(disabled)
                        RETURNING * INTO r;
                    IF FOUND THEN
                        o_kind := 'begun_ended'; o_idx := b.idx; o_run := r; RETURN NEXT;
                        rr := r;
                        rr.state := 'running'; rr.end_at := NULL; rr.error := NULL; rr.owner := p_host;
                        evs := array_append(evs, rr);
                        mrows[b.idx + 1] := r;
                        mok[b.idx + 1] := true;
                        CONTINUE;
                    END IF;
                END IF;
                UPDATE fluid_runs SET state = 'running', start_at = b.at
                    WHERE id = b.id AND lease = b.lease AND owner = p_host AND state = 'queued' RETURNING * INTO r;
                IF NOT FOUND THEN
                    SELECT * INTO r FROM fluid_runs WHERE id = b.id;
                    IF FOUND AND r.state = 'running' AND r.owner = p_host AND r.lease = b.lease THEN
                        -- Recorded by a commit whose answer was lost: begun, nothing to write.
                        o_kind := 'begun_before'; o_run := r;
                    ELSIF FOUND THEN o_kind := 'begin_conflict'; o_run := r;
                    ELSE o_kind := 'begin_missing'; o_run := NULL; END IF;
                    o_idx := b.idx; RETURN NEXT;
                    CONTINUE;
                END IF;
                IF r.task = ANY(disabled) THEN
                    UPDATE fluid_runs SET state = 'aborted', end_at = p_now, error = 'task disabled', owner = NULL,
                        cancel_requested = 0 WHERE id = b.id RETURNING * INTO r;
                    o_kind := 'begin_refused'; o_idx := b.idx; o_run := r; RETURN NEXT;
                    evs := array_append(evs, r);
                    CONTINUE;
                END IF;
                o_kind := 'begun'; o_idx := b.idx; o_run := r; RETURN NEXT;
                evs := array_append(evs, r);
            END LOOP;
        END IF;

        -- Ends, fenced: only the current lease of a running run may end it.
        FOR f IN SELECT * FROM json_to_recordset(p_finishes::json)
                 AS x(idx BIGINT, id TEXT, lease BIGINT, state TEXT, error TEXT, retry_in_us BIGINT, paired BIGINT) LOOP
            IF f.paired IS NOT NULL AND mok[f.paired + 1] THEN
                -- Written with its start above, and answered there.
                r := mrows[f.paired + 1];
                evs := array_append(evs, r);
                ends := array_append(ends, r);
                CONTINUE;
            END IF;
            UPDATE fluid_runs SET state = f.state, end_at = p_now, error = f.error, owner = NULL, cancel_requested = 0
                WHERE id = f.id AND lease = f.lease AND state = 'running' RETURNING * INTO r;
            IF NOT FOUND THEN
                -- Why, from the row as this transaction sees it.
                SELECT * INTO r FROM fluid_runs WHERE id = f.id;
                IF FOUND THEN o_kind := 'conflict'; o_run := r; ELSE o_kind := 'missing'; o_run := NULL; END IF;
                o_idx := f.idx; RETURN NEXT;
                CONTINUE;
            END IF;
            o_kind := 'end'; o_idx := f.idx; o_run := r; RETURN NEXT;
            evs := array_append(evs, r);
            ends := array_append(ends, r);
            IF f.retry_in_us IS NOT NULL THEN
                UPDATE fluid_runs SET state = 'queued', retry_attempt = retry_attempt + 1, queued_at = p_now,
                    start_at = NULL, end_at = NULL, execute_after = p_now + f.retry_in_us, owner = NULL, cancel_requested = 0
                    WHERE id = f.id RETURNING * INTO r;
                o_kind := 'requeued'; o_run := r; RETURN NEXT;
                evs := array_append(evs, r);
            END IF;
        END LOOP;

        -- Each task's last run, once per batch, rows locked in name order.
        INSERT INTO fluid_task_state (name, enabled, last_run_end, last_run_duration_us, last_run_state)
            SELECT DISTINCT ON (e.task COLLATE "C") e.task, 1, e.end_at, e.end_at - e.start_at, e.state
            FROM unnest(ends) WITH ORDINALITY AS e
            WHERE e.start_at IS NOT NULL AND e.end_at IS NOT NULL
            ORDER BY e.task COLLATE "C", e.ordinality DESC
            ON CONFLICT (name) DO UPDATE SET last_run_end = excluded.last_run_end,
                last_run_duration_us = excluded.last_run_duration_us, last_run_state = excluded.last_run_state;

        -- Claim: due runs of known tasks, highest priority first, FIFO within one; the
        -- first p_limit start, the next p_ahead are reserved.
        IF p_limit + p_ahead > 0 THEN
            FOR c IN SELECT * FROM fluid_runs
                     WHERE state = 'queued' AND owner IS NULL AND execute_after <= p_now
                       AND task = ANY(ARRAY(SELECT json_array_elements_text(p_tasks::json)))
                     ORDER BY priority, execute_after, id LIMIT p_limit + p_ahead FOR UPDATE SKIP LOCKED LOOP
                cands := array_append(cands, c);
            END LOOP;
        END IF;
        IF cardinality(cands) > 0 THEN
            disabled := ARRAY(SELECT name FROM fluid_task_state WHERE enabled = 0);
            -- In-flight counts of the limited tasks among the candidates, under their locks.
            FOR t IN SELECT DISTINCT x.task COLLATE "C" FROM unnest(cands) AS x
                     WHERE limited -> x.task IS NOT NULL ORDER BY 1 LOOP
                PERFORM "#,
    task_lock!("t"),
    r#";
                SELECT count(*) INTO n FROM fluid_runs WHERE task = t AND state = 'running';
                flight := flight || jsonb_build_object(t, n);
            END LOOP;
            FOREACH c IN ARRAY cands LOOP
                IF c.task = ANY(disabled) THEN
                    UPDATE fluid_runs SET state = 'aborted', end_at = p_now, error = 'task disabled', owner = NULL,
                        cancel_requested = 0 WHERE id = c.id RETURNING * INTO r;
                    o_kind := 'ended'; o_idx := 0; o_run := r; RETURN NEXT;
                    evs := array_append(evs, r);
                    CONTINUE;
                END IF;
                -- Past the claim: reserve, where neither limit is at stake (no event), and
                -- never past a run that cannot be reserved.
                IF nstarted >= p_limit THEN
                    IF groups ->> c.task IS NOT NULL OR limited -> c.task IS NOT NULL OR nreserved >= p_ahead THEN
                        EXIT;
                    END IF;
                    reserve := array_append(reserve, c.id);
                    nreserved := nreserved + 1;
                    CONTINUE;
                END IF;
                -- No room left in its group's share: it stays queued, untouched.
                g := groups ->> c.task;
                IF g IS NOT NULL AND coalesce((rooms ->> g)::bigint, 0) <= 0 THEN
                    CONTINUE;
                END IF;
                rule := limited -> c.task;
                IF rule IS NOT NULL THEN
                    n := (flight ->> c.task)::bigint;
                    IF n >= (rule ->> 'max')::bigint THEN
                        attempt := c.rate_limit_attempt + 1;
                        IF (rule ->> 'retry')::boolean
                           AND (rule ->> 'attempts' IS NULL OR attempt <= (rule ->> 'attempts')::bigint) THEN
                            -- Silent back-off: the run stays queued, no event (as aio-fluid).
                            -- The delay as RetryPolicy::delay, in seconds: wait * backoff^(attempt-1),
                            -- the longest when not finite, capped, rounded to the nanosecond as
                            -- Duration::from_secs_f64 does, then whole microseconds.
                            BEGIN
                                d := (rule ->> 'wait_s')::float8 * power((rule ->> 'backoff')::float8, attempt - 1);
                            EXCEPTION WHEN numeric_value_out_of_range THEN
                                d := CASE WHEN abs((rule ->> 'backoff')::float8) < 1 THEN 0 ELSE 'Infinity'::float8 END;
                            END;
                            IF d IN ('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8) THEN
                                d := 'Infinity';
                            END IF;
                            d := greatest(least(d, (rule ->> 'max_wait_s')::float8), 0);
                            UPDATE fluid_runs SET execute_after = p_now + floor(round(d * 1e9) / 1000)::bigint,
                                rate_limit_attempt = attempt WHERE id = c.id;
                        ELSE
                            UPDATE fluid_runs SET state = 'rate_limited', end_at = p_now,
                                error = format('max_concurrency %s reached', rule ->> 'max'), owner = NULL, cancel_requested = 0
                                WHERE id = c.id RETURNING * INTO r;
                            o_kind := 'ended'; o_idx := 0; o_run := r; RETURN NEXT;
                            evs := array_append(evs, r);
                        END IF;
                        CONTINUE;
                    END IF;
                    flight := jsonb_set(flight, ARRAY[c.task], to_jsonb(n + 1));
                END IF;
                IF g IS NOT NULL THEN
                    rooms := jsonb_set(rooms, ARRAY[g], to_jsonb((rooms ->> g)::bigint - 1));
                END IF;
                UPDATE fluid_runs SET state = 'running', start_at = p_now, lease = lease + 1, owner = p_host
                    WHERE id = c.id RETURNING * INTO r;
                o_kind := 'started'; o_idx := 0; o_run := r; RETURN NEXT;
                starts := array_append(starts, r);
                nstarted := nstarted + 1;
            END LOOP;
            -- On the feed, runs ended at the door come before the runs started, as the
            -- Rust path writes them and as the host broadcasts them.
            evs := array_cat(evs, starts);
            -- The reservations in one statement (they are not on the feed), in claim order.
            IF cardinality(reserve) > 0 THEN
                RETURN QUERY WITH u AS (UPDATE fluid_runs SET owner = p_host, lease = lease + 1 WHERE id = ANY(reserve) RETURNING *)
                    SELECT 'reserved'::text, 0::bigint, u::fluid_runs FROM u ORDER BY u.priority, u.execute_after, u.id;
            END IF;
        END IF;

        -- The feed last: its ordering lock after every row lock (see events.rs).
        IF cardinality(evs) > 0 THEN
            PERFORM "#,
    feed_lock!(),
    r#";
            -- Each snapshot is the JSON of `TaskRun` (timestamps as RFC 3339 text), built
            -- inline: SQL helper functions here ran as calls, not inlined, 23 to 150 µs
            -- a row, most of the cycle's cost.
            INSERT INTO fluid_events (run_id, state, snapshot)
                SELECT e.id, e.state, json_build_object(
                    'id', e.id, 'task', e.task, 'tags', e.tags::json,
                    'priority', CASE e.priority WHEN 0 THEN 'high' WHEN 2 THEN 'low' ELSE 'medium' END,
                    'state', e.state, 'params', e.params::json,
                    'queued', to_char(TIMESTAMP 'epoch' + e.queued_at * INTERVAL '1 microsecond', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                    'start', to_char(TIMESTAMP 'epoch' + e.start_at * INTERVAL '1 microsecond', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                    'end', to_char(TIMESTAMP 'epoch' + e.end_at * INTERVAL '1 microsecond', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                    'execute_after', to_char(TIMESTAMP 'epoch' + e.execute_after * INTERVAL '1 microsecond', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                    'retry_attempt', e.retry_attempt, 'rate_limit_attempt', e.rate_limit_attempt,
                    'from_run_id', e.from_run_id, 'root_run_id', e.root_run_id, 'error', e.error)::text
                FROM unnest(evs) WITH ORDINALITY AS e ORDER BY e.ordinality;
            PERFORM pg_notify('fluid', '');
        END IF;
    END
    $fn$"#
);

/// The cycle as one statement on a pooled connection (autocommit: one transaction).
pub(crate) async fn run(conn: &mut Db, c: &Cycle<'_>) -> Result<CycleOutcome, StoreError> {
    let paired = pair_ends(c.begins, c.finishes);
    // Each finish's end once, for itself and for the begin it goes with.
    let ends: Vec<_> = c.finishes.iter().map(|f| end_state(&f.outcome)).collect();
    let mut begin_of = vec![None; c.finishes.len()];
    for (bi, fi) in paired.iter().enumerate() {
        if let Some(fi) = fi {
            begin_of[*fi] = Some(bi);
        }
    }
    let begins: Vec<Value> = c
        .begins
        .iter()
        .zip(&paired)
        .enumerate()
        .map(|(idx, (b, end))| {
            let (state, error) = end.map_or((None, None), |fi| (Some(ends[fi].0.as_str()), ends[fi].1.as_deref()));
            json!({"idx": idx, "id": b.id, "lease": b.lease, "at": b.at_us, "state": state, "error": error})
        })
        .collect();
    let batch: Vec<Value> = c
        .finishes
        .iter()
        .zip(&ends)
        .zip(&begin_of)
        .enumerate()
        .map(|(idx, ((f, (state, error)), begin))| {
            json!({
                "idx": idx, "id": f.id, "lease": f.lease, "state": state.as_str(), "error": error,
                "retry_in_us": f.retry_after.map(|d| d.as_micros() as i64), "paired": begin,
            })
        })
        .collect();
    let rules = c.rules;
    let tasks: Vec<&String> = rules.keys().collect();
    let limited: serde_json::Map<String, Value> = rules
        .iter()
        .filter(|(_, r)| r.max_concurrency > 0)
        .map(|(name, r)| {
            let retry = r.rate_limit_retry.as_ref();
            let rule = json!({
                "max": r.max_concurrency,
                "retry": retry.is_some(),
                "attempts": retry.and_then(|p| p.max_attempts),
                "wait_s": retry.map_or(0.0, |p| p.wait.as_secs_f64()),
                // JSON has no NaN or infinity: those go as text, which PostgreSQL reads.
                "backoff": retry.map_or(json!(1.0), |p| if p.backoff.is_finite() { json!(p.backoff) } else { json!(p.backoff.to_string()) }),
                "max_wait_s": retry.map_or(0.0, |p| p.max_wait.as_secs_f64()),
            });
            (name.clone(), rule)
        })
        .collect();
    let groups: serde_json::Map<String, Value> =
        rules.iter().filter_map(|(name, r)| r.share.as_ref().map(|s| (name.clone(), json!(s.group)))).collect();
    let rooms: serde_json::Map<String, Value> =
        rules.values().filter_map(|r| r.share.as_ref()).map(|s| (s.group.clone(), json!(s.room))).collect();
    let rows = query(
        "SELECT c.o_kind AS kind, c.o_idx AS idx, (c.o_run).* FROM fluid_finish_and_claim_v6($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) AS c",
    )
    .bind(Value::Array(begins).to_string())
    .bind(Value::Array(batch).to_string())
    .bind(now_us())
    .bind(c.host)
    .bind(if rules.is_empty() { 0 } else { c.limit as i64 })
    .bind(if rules.is_empty() { 0 } else { c.ahead as i64 })
    .bind(serde_json::to_string(&tasks).unwrap_or_default())
    .bind(Value::Object(limited).to_string())
    .bind(Value::Object(groups).to_string())
    .bind(Value::Object(rooms).to_string())
    .fetch_all(&mut *conn)
    .await?;

    let mut out = CycleOutcome {
        begun: (0..c.begins.len()).map(|_| Err(StoreError::Other(anyhow::anyhow!("no answer")))).collect(),
        finished: (0..c.finishes.len()).map(|_| Ok(Vec::new())).collect(),
        ..Default::default()
    };
    for row in &rows {
        let kind: String = row.try_get("kind")?;
        let idx = row.try_get::<i64, _>("idx")? as usize;
        match kind.as_str() {
            "begun" => {
                let run = from_row(row)?.run;
                out.written.push(run.clone());
                out.begun[idx] = Ok(run);
            }
            "begun_ended" => {
                let end = from_row(row)?.run;
                let start = started_of(&end);
                out.written.push(start.clone());
                out.begun[idx] = Ok(start);
                if let Some(fi) = paired.get(idx).copied().flatten() {
                    out.finished[fi] = Ok(vec![end]);
                }
            }
            "begun_before" => out.begun[idx] = Ok(from_row(row)?.run),
            "begin_refused" => {
                let run = from_row(row)?.run;
                let why = run.error.clone().unwrap_or_default();
                out.begun[idx] = Err(StoreError::Conflict { id: run.id.clone(), state: run.state.to_string(), why });
                out.written.push(run);
            }
            "begin_conflict" => out.begun[idx] = Err(fenced_out_of(&c.begins[idx].id, c.begins[idx].lease, Some(from_row(row)?))),
            "begin_missing" => out.begun[idx] = Err(fenced_out_of(&c.begins[idx].id, c.begins[idx].lease, None)),
            "end" | "requeued" => {
                if let Some(Ok(written)) = out.finished.get_mut(idx) {
                    written.push(from_row(row)?.run);
                }
            }
            "conflict" => out.finished[idx] = Err(fenced_out_of(&c.finishes[idx].id, c.finishes[idx].lease, Some(from_row(row)?))),
            "missing" => out.finished[idx] = Err(fenced_out_of(&c.finishes[idx].id, c.finishes[idx].lease, None)),
            "ended" => out.claimed.ended.push(from_row(row)?.run),
            "started" => out.claimed.started.push(from_row(row)?),
            "reserved" => out.claimed.reserved.push(from_row(row)?),
            other => return Err(StoreError::Other(anyhow::anyhow!("{FUNCTION_NAME} returned kind {other:?}"))),
        }
    }
    // The ends in the order of the finishes (those written with their starts included),
    // then runs ended at the door before the runs started, as the function appends them.
    out.written.extend(out.finished.iter().filter_map(|f| f.as_ref().ok()).flatten().cloned());
    out.written.extend(out.claimed.changes());
    Ok(out)
}
