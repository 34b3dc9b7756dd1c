//! The store's transactions, as the scheduler and plugins use them. Each method is one
//! transaction; the per-table SQL lives in the sibling modules.

use super::checkpoints::Forget;
use super::cycle::{self, Cycle, CycleOutcome};
use super::events::Event;
use super::hosts::HostRow;
use super::runs::{self, Cancel, ClaimRules, Claimed, Finish};
use super::tasks::TaskStatus;
use super::{Backend, Store, StoreError, checkpoints, events, hosts, pg_cycle, query, schedules, tasks, tokens};
use crate::time::now_us;
use crate::types::{Priority, TaskRun};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

impl Store {
    /// Stores new queued runs and their `queued` events, all in one transaction.
    pub async fn insert_runs(&self, new_runs: &[TaskRun]) -> Result<(), StoreError> {
        self.metrics
            .timed("insert_runs", async {
                let mut tx = self.write_tx().await?;
                runs::insert(&mut tx, self.backend, new_runs).await?;
                events::append(&mut tx, self.backend, new_runs).await?;
                tx.commit().await?;
                Ok(())
            })
            .await
    }

    /// Claims due runs for `host` (see `runs::claim`).
    pub async fn claim(&self, host: &str, limit: usize, rules: &BTreeMap<String, ClaimRules>) -> Result<Claimed, StoreError> {
        self.metrics
            .timed("claim", async {
                if self.backend == Backend::Postgres {
                    let c = Cycle { host, begins: &[], finishes: &[], limit, ahead: 0, rules };
                    return Ok(pg_cycle::run(&mut self.read().await?, &c).await?.claimed);
                }
                let mut tx = self.write_tx().await?;
                let claimed = runs::claim(&mut tx, self.backend, host, limit, 0, rules, None).await?;
                events::append(&mut tx, self.backend, &claimed.changes()).await?;
                tx.commit().await?;
                Ok(claimed)
            })
            .await
    }

    /// Claims one given run, if it is due (`fluid exec`).
    pub async fn claim_one(&self, host: &str, id: &str, rules: &BTreeMap<String, ClaimRules>) -> Result<Claimed, StoreError> {
        self.metrics
            .timed("claim_one", async {
                let mut tx = self.write_tx().await?;
                let claimed = runs::claim(&mut tx, self.backend, host, 1, 0, rules, Some(id)).await?;
                events::append(&mut tx, self.backend, &claimed.changes()).await?;
                tx.commit().await?;
                Ok(claimed)
            })
            .await
    }

    /// Records many finished executions in one transaction; each gets its own result
    /// (a fenced-out one fails alone): the snapshots it wrote, in order (the end state,
    /// then `queued` again when retried). In the same transaction, claims up to `limit`
    /// due runs for `host` (see `runs::claim`; none when 0): the slots those executions
    /// free are filled in the commit that frees them, one transaction per cycle, not two.
    /// A [`cycle`](Self::cycle) that starts no reserved runs and reserves none.
    pub async fn finish_and_claim(
        &self,
        finishes: &[Finish],
        host: &str,
        limit: usize,
        rules: &BTreeMap<String, ClaimRules>,
    ) -> Result<(Vec<Result<Vec<TaskRun>, StoreError>>, Claimed), StoreError> {
        let done = self.cycle(&Cycle { host, begins: &[], finishes, limit, ahead: 0, rules }).await?;
        Ok((done.finished, done.claimed))
    }

    /// One scheduler cycle of a host, in one transaction (see [`Cycle`]): the starts of
    /// runs it reserved, the ends of runs it finished, then runs claimed into the slots
    /// they free and reserved beyond them, every change appended to the feed in order.
    pub async fn cycle(&self, c: &Cycle<'_>) -> Result<CycleOutcome, StoreError> {
        self.metrics
            .timed("finish_and_claim", async {
                if self.backend == Backend::Postgres {
                    return pg_cycle::run(&mut self.read().await?, c).await;
                }
                let mut tx = self.write_tx().await?;
                let done = cycle::run_in(&mut tx, self.backend, c).await?;
                tx.commit().await?;
                Ok(done)
            })
            .await
    }

    /// Gives back reservations `host` will not start (each is `(id, lease)`): the runs are
    /// claimable again, unless they moved on since. Returns how many were released.
    pub async fn release(&self, host: &str, reserved: &[(String, i64)]) -> Result<u64, StoreError> {
        self.metrics
            .timed("release", async {
                let mut tx = self.write_tx().await?;
                let n = runs::release(&mut tx, host, reserved).await?;
                tx.commit().await?;
                Ok(n)
            })
            .await
    }

    /// Gives back every reservation of `host` but those of `keep`, the runs it holds or has
    /// started (after a cycle whose answer was lost). Returns how many were released.
    pub async fn release_unheld(&self, host: &str, keep: &[String]) -> Result<u64, StoreError> {
        self.metrics
            .timed("release", async {
                let mut tx = self.write_tx().await?;
                let n = runs::release_unheld(&mut tx, host, keep).await?;
                tx.commit().await?;
                Ok(n)
            })
            .await
    }

    /// Gives back every reservation of `host`: when it stops, and when it starts (under an
    /// id a previous process may have used).
    pub async fn release_all(&self, host: &str) -> Result<u64, StoreError> {
        self.release_unheld(host, &[]).await
    }

    /// The run as stored now.
    pub async fn get_run(&self, id: &str) -> Result<Option<TaskRun>, StoreError> {
        self.metrics
            .timed("get_run", async {
                let mut conn = self.read().await?;
                Ok(runs::get(&mut conn, self.backend, id, false).await?.map(|r| r.run))
            })
            .await
    }

    /// Cancels a run: a queued one is aborted at once, a running one is asked to stop (its
    /// owner sees the request at its next heartbeat).
    pub async fn cancel(&self, id: &str) -> Result<Cancel, StoreError> {
        self.metrics
            .timed("cancel", async {
                let mut tx = self.write_tx().await?;
                let out = runs::cancel(&mut tx, self.backend, id).await?;
                if let Cancel::Aborted(run) = &out {
                    events::append(&mut tx, self.backend, std::slice::from_ref(run)).await?;
                }
                tx.commit().await?;
                Ok(out)
            })
            .await
    }

    /// Aborts every queued run of `priorities`: how many per priority, and the aborted runs.
    pub async fn clear_queue(&self, priorities: &[Priority]) -> Result<(BTreeMap<Priority, u64>, Vec<TaskRun>), StoreError> {
        self.metrics
            .timed("clear_queue", async {
                let mut tx = self.write_tx().await?;
                let out = runs::clear_queue(&mut tx, self.backend, priorities).await?;
                events::append(&mut tx, self.backend, &out.1).await?;
                tx.commit().await?;
                Ok(out)
            })
            .await
    }

    /// Queued runs of `tasks`, counted up to `at_most`.
    pub async fn queued_runs_of(&self, tasks: &[String], at_most: u64) -> Result<u64, StoreError> {
        self.metrics
            .timed("queued_runs_of", async {
                let mut conn = self.read().await?;
                Ok(runs::queued_of(&mut conn, tasks, at_most).await?)
            })
            .await
    }

    /// Queued runs per priority (every priority listed, 0 when empty).
    pub async fn queue_lengths(&self) -> Result<BTreeMap<Priority, u64>, StoreError> {
        self.metrics
            .timed("queue_lengths", async {
                let mut conn = self.read().await?;
                Ok(runs::queue_lengths(&mut conn).await?)
            })
            .await
    }

    /// Every task's switch and last-run summary, by name (tasks never seen are missing).
    pub async fn task_statuses(&self) -> Result<HashMap<String, TaskStatus>, StoreError> {
        self.metrics
            .timed("task_statuses", async {
                let mut conn = self.read().await?;
                Ok(tasks::all(&mut conn).await?)
            })
            .await
    }

    /// Enables or disables a task on every host sharing the database.
    pub async fn set_enabled(&self, task: &str, enabled: bool) -> Result<(), StoreError> {
        self.metrics
            .timed("set_enabled", async {
                let mut tx = self.write_tx().await?;
                tasks::set_enabled(&mut tx, task, enabled).await?;
                tx.commit().await?;
                Ok(())
            })
            .await
    }

    /// The next due time of a schedule, set to `first` when new.
    pub async fn schedule_due(&self, task: &str, first: i64) -> Result<i64, StoreError> {
        self.metrics
            .timed("schedule_due", async {
                let mut tx = self.write_tx().await?;
                let due = schedules::next_due(&mut tx, task, first).await?;
                tx.commit().await?;
                Ok(due)
            })
            .await
    }

    /// Advances a schedule from `seen` to `next` and, if this host won, queues `run`.
    /// Returns whether this host fired it.
    pub async fn fire_schedule(&self, task: &str, seen: i64, next: i64, run: Option<&TaskRun>) -> Result<bool, StoreError> {
        self.metrics
            .timed("fire_schedule", async {
                let mut tx = self.write_tx().await?;
                if !schedules::advance(&mut tx, task, seen, next).await? {
                    return Ok(false);
                }
                if let Some(run) = run {
                    runs::insert(&mut tx, self.backend, std::slice::from_ref(run)).await?;
                    events::append(&mut tx, self.backend, std::slice::from_ref(run)).await?;
                }
                tx.commit().await?;
                Ok(true)
            })
            .await
    }

    /// Records that `host` is alive now, with `workers` slots: its runs are not rescued
    /// while it keeps beating.
    pub async fn heartbeat(&self, host: &str, started_at: i64, workers: usize) -> Result<(), StoreError> {
        self.metrics
            .timed("heartbeat", async {
                let mut tx = self.write_tx().await?;
                hosts::beat(&mut tx, host, started_at, now_us(), workers as i64).await?;
                tx.commit().await?;
                Ok(())
            })
            .await
    }

    /// Forgets `host` (a clean shutdown): runs it still holds are rescued by the next
    /// [`Store::rescue`], whatever its last heartbeat.
    pub async fn remove_host(&self, host: &str) -> Result<(), StoreError> {
        self.metrics
            .timed("remove_host", async {
                let mut tx = self.write_tx().await?;
                hosts::remove(&mut tx, host).await?;
                tx.commit().await?;
                Ok(())
            })
            .await
    }

    /// The hosts whose last heartbeat is at or after `alive_after`, oldest first.
    pub async fn live_hosts(&self, alive_after: i64) -> Result<Vec<HostRow>, StoreError> {
        self.metrics
            .timed("live_hosts", async {
                let mut conn = self.read().await?;
                Ok(hosts::live(&mut conn, alive_after).await?)
            })
            .await
    }

    /// Rescues runs left `running` by hosts silent since `dead_before`: each becomes
    /// `interrupted`, then `queued` again when `retry` gives a delay for it. Their
    /// reservations are released. Returns every
    /// snapshot written, in order (so a retried run appears twice: interrupted, queued).
    pub async fn rescue(&self, dead_before: i64, retry: impl Fn(&TaskRun) -> Option<Duration>) -> Result<Vec<TaskRun>, StoreError> {
        self.metrics
            .timed("rescue", async {
                let mut tx = self.write_tx().await?;
                // Their reservations never showed as started: they go back to the queue as
                // they were, with no event.
                runs::orphaned_reservations(&mut tx, dead_before).await?;
                let orphans = runs::orphaned(&mut tx, self.backend, dead_before).await?;
                let mut out = Vec::new();
                for mut row in orphans {
                    let now = now_us();
                    row.run.state = crate::types::TaskState::Interrupted;
                    row.run.end = Some(crate::time::to_datetime(now));
                    row.run.error = Some(format!("host {} stopped before the run ended", row.owner.as_deref().unwrap_or("?")));
                    runs::write_state(&mut tx, &row.run, None, row.lease).await?;
                    if let Some(delay) = retry(&row.run) {
                        out.push(row.run.clone());
                        runs::requeue(&mut tx, &mut row.run, now + delay.as_micros() as i64, row.lease).await?;
                    }
                    out.push(row.run);
                }
                events::append(&mut tx, self.backend, &out).await?;
                tx.commit().await?;
                Ok(out)
            })
            .await
    }

    /// Ids of `host`'s running runs someone asked to cancel.
    pub async fn cancel_requests(&self, host: &str) -> Result<Vec<String>, StoreError> {
        self.metrics
            .timed("cancel_requests", async {
                let mut conn = self.read().await?;
                Ok(runs::cancel_requests(&mut conn, host).await?)
            })
            .await
    }

    /// Up to `limit` events of the change feed after `seq`, in order, and no more than
    /// `max_bytes` of snapshots (but always the first).
    pub async fn events_after(&self, seq: i64, limit: i64, max_bytes: usize) -> Result<Vec<Event>, StoreError> {
        self.metrics
            .timed("events_after", async {
                let mut conn = self.read().await?;
                Ok(events::after(&mut conn, seq, limit, max_bytes).await?)
            })
            .await
    }

    /// The last `seq` of the change feed (0 when empty).
    pub async fn feed_head(&self) -> Result<i64, StoreError> {
        self.metrics
            .timed("feed_head", async {
                let mut conn = self.read().await?;
                Ok(events::head(&mut conn).await?)
            })
            .await
    }

    /// How many feed events each plugin (by checkpoint row) has not handled yet.
    pub async fn feed_lag(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.metrics
            .timed("feed_lag", async {
                let mut conn = self.read().await?;
                let head = events::head(&mut conn).await?;
                Ok(checkpoints::all(&mut conn).await?.into_iter().map(|(p, seq)| (p, (head - seq).max(0))).collect())
            })
            .await
    }

    /// A plugin's checkpoint; new plugins start at `start`.
    pub async fn checkpoint(&self, plugin: &str, start: i64) -> Result<i64, StoreError> {
        self.metrics
            .timed("checkpoint", async {
                let mut tx = self.write_tx().await?;
                let seq = checkpoints::get_or_init(&mut tx, plugin, start).await?;
                tx.commit().await?;
                Ok(seq)
            })
            .await
    }

    /// Of the plugins no host delivers to now (removed, quarantined, or on hosts that are
    /// down), the one whose checkpoint is furthest behind, and how many events the feed
    /// keeps for it. None when every checkpoint is being delivered.
    pub async fn idle_feed_holder(&self) -> Result<Option<(String, i64)>, StoreError> {
        self.metrics
            .timed("idle_feed_holder", async {
                let mut conn = self.read().await?;
                let Some((plugin, seq)) = checkpoints::furthest_behind_idle(&mut conn, now_us()).await? else {
                    return Ok(None);
                };
                Ok(Some((plugin, events::kept_after(&mut conn, seq).await?)))
            })
            .await
    }

    /// Records `module` as the owner of the task names nobody owns yet, all or none: when
    /// another module owns one, nothing is recorded and those names are returned with
    /// their owner.
    pub async fn claim_task_owners(&self, module: &str, names: &[String]) -> Result<Vec<(String, String)>, StoreError> {
        self.metrics
            .timed("claim_task_owners", async {
                let mut tx = self.write_tx().await?;
                let taken = tasks::claim_owners(&mut tx, module, names).await?;
                if taken.is_empty() {
                    tx.commit().await?;
                } else {
                    tx.rollback().await?;
                }
                Ok(taken)
            })
            .await
    }

    /// Stores a new API token (its hash).
    pub async fn add_token(&self, t: &tokens::TokenRow) -> Result<(), StoreError> {
        self.metrics
            .timed("add_token", async {
                let mut tx = self.write_tx().await?;
                tokens::insert(&mut tx, t).await?;
                tx.commit().await?;
                Ok(())
            })
            .await
    }

    /// Every API token, revoked ones too.
    pub async fn tokens(&self) -> Result<Vec<tokens::TokenRow>, StoreError> {
        self.metrics
            .timed("tokens", async {
                let mut conn = self.read().await?;
                Ok(tokens::all(&mut conn).await?)
            })
            .await
    }

    /// Revokes a token by id; false when no valid token has that id.
    pub async fn revoke_token(&self, id: &str) -> Result<bool, StoreError> {
        self.metrics
            .timed("revoke_token", async {
                let mut tx = self.write_tx().await?;
                let done = tokens::revoke(&mut tx, id, now_us()).await?;
                tx.commit().await?;
                Ok(done)
            })
            .await
    }

    /// Releases the task names `module` owns (`fluid plugins forget`); how many.
    pub async fn release_task_owner(&self, module: &str) -> Result<u64, StoreError> {
        self.metrics
            .timed("release_task_owner", async {
                let mut tx = self.write_tx().await?;
                let n = tasks::release_owner(&mut tx, module).await?;
                tx.commit().await?;
                Ok(n)
            })
            .await
    }

    /// Deletes the checkpoint of a plugin no host delivers to now (`fluid plugins forget`),
    /// so the feed is no longer kept for it.
    pub async fn forget_checkpoint(&self, plugin: &str) -> Result<Forget, StoreError> {
        self.metrics
            .timed("forget_checkpoint", async {
                let mut tx = self.write_tx().await?;
                let done = checkpoints::forget(&mut tx, plugin, now_us()).await?;
                tx.commit().await?;
                Ok(done)
            })
            .await
    }

    /// Deletes up to `limit` runs that ended before `before_us` (never a queued or running
    /// one), in one transaction; returns how many.
    pub async fn prune_runs(&self, before_us: i64, limit: usize) -> Result<u64, StoreError> {
        self.metrics
            .timed("prune_runs", async {
                let mut tx = self.write_tx().await?;
                let n = runs::prune(&mut tx, before_us, limit).await?;
                tx.commit().await?;
                Ok(n)
            })
            .await
    }

    /// Drops the change feed's events every plugin has consumed, but for the latest `keep`.
    pub async fn prune_feed(&self, keep: i64) -> Result<u64, StoreError> {
        self.metrics
            .timed("prune_feed", async {
                let mut tx = self.write_tx().await?;
                let head = events::head(&mut tx).await?;
                let upto = checkpoints::min(&mut tx).await?.unwrap_or(head).min(head - keep);
                let n = if upto > 0 { events::prune(&mut tx, upto).await? } else { 0 };
                tx.commit().await?;
                Ok(n)
            })
            .await
    }
}

impl Store {
    /// Sets a plugin's checkpoint, backwards too (an operator replaying events).
    pub async fn reset_checkpoint(&self, plugin: &str, seq: i64) -> Result<(), StoreError> {
        self.metrics
            .timed("reset_checkpoint", async {
                let mut tx = self.write_tx().await?;
                query("UPDATE fluid_plugin_checkpoints SET seq = $2 WHERE plugin = $1").bind(plugin).bind(seq).execute(&mut tx).await?;
                tx.commit().await?;
                Ok(())
            })
            .await
    }
}

impl Store {
    /// Takes or renews `host`'s lease on delivering `plugin`'s events for `ttl`.
    pub async fn hold_delivery(&self, plugin: &str, host: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.metrics
            .timed("hold_delivery", async {
                let now = now_us();
                let mut tx = self.write_tx().await?;
                let held = checkpoints::hold(&mut tx, plugin, host, now, now + ttl.as_micros() as i64).await?;
                tx.commit().await?;
                Ok(held)
            })
            .await
    }

    /// Advances `plugin`'s checkpoint if `host` still holds its delivery lease, and renews
    /// that lease for `ttl`.
    pub async fn advance_checkpoint_as(&self, plugin: &str, host: &str, seq: i64, ttl: Duration) -> Result<bool, StoreError> {
        self.metrics
            .timed("advance_checkpoint_as", async {
                let until = now_us() + ttl.as_micros() as i64;
                let mut tx = self.write_tx().await?;
                let done = checkpoints::advance_as(&mut tx, plugin, host, seq, until).await?;
                tx.commit().await?;
                Ok(done)
            })
            .await
    }

    /// Gives up `host`'s delivery lease of `plugin` (shutdown, quarantine, unload), so
    /// another host takes over at once.
    pub async fn release_delivery(&self, plugin: &str, host: &str) -> Result<(), StoreError> {
        self.metrics
            .timed("release_delivery", async {
                let mut tx = self.write_tx().await?;
                checkpoints::release(&mut tx, plugin, host).await?;
                tx.commit().await?;
                Ok(())
            })
            .await
    }
}
