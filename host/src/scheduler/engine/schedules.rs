//! Maintenance: schedules. Each due time of a cron or interval task queues one run, once
//! across every host sharing the store.

use super::*;

/// The schedules' config.
#[derive(Debug, Clone)]
pub struct SchedulesConfig {
    /// How often due times are checked. Default: 200 ms, the latest a scheduled run starts
    /// queueing after its due time.
    pub tick: Duration,
    /// A due time already this far past when first seen was missed (the host was down):
    /// it is skipped, not queued late. Default: 5 s.
    pub misfire_grace: Duration,
}

impl Default for SchedulesConfig {
    fn default() -> Self {
        SchedulesConfig { tick: Duration::from_millis(200), misfire_grace: Duration::from_secs(5) }
    }
}

impl Scheduler {
    pub(super) async fn schedule_loop(self) {
        let mut due: HashMap<String, i64> = HashMap::new();
        let mut pending: HashMap<String, String> = HashMap::new();
        loop {
            if let Err(e) = self.schedule_tick(&mut due, &mut pending).await {
                tracing::error!(error = %e, "schedule tick failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.inner.config.schedules.tick) => {}
                _ = self.inner.stop_claiming.cancelled() => return,
            }
        }
    }

    /// Fires every schedule whose due time has come. `due` caches each task's next due
    /// time; the stored one decides (another host may have fired it). `pending`: the last
    /// run this host's schedules queued for each task with a worker share (an untrusted
    /// component's): while it has not started, that task's due times are skipped, so a
    /// component whose runs cannot start (its share is full) does not pile up a backlog
    /// every claim would have to look past.
    pub(super) async fn schedule_tick(
        &self,
        due: &mut HashMap<String, i64>,
        pending: &mut HashMap<String, String>,
    ) -> Result<(), StoreError> {
        let store = &self.inner.store;
        for task in self.tasks() {
            let Some(schedule) = &task.schedule else { continue };
            let now = now_us();
            let cached = match due.get(&task.name) {
                Some(&d) => d,
                None => store.schedule_due(&task.name, schedule.first_due(to_datetime(now)).timestamp_micros()).await?,
            };
            due.insert(task.name.clone(), cached);
            if now < cached {
                continue;
            }
            let seen = store.schedule_due(&task.name, cached).await?;
            if seen != cached {
                due.insert(task.name.clone(), seen);
                continue;
            }
            let next = schedule.next_due(to_datetime(seen), to_datetime(now)).timestamp_micros();
            let late = now - seen > self.inner.config.schedules.misfire_grace.as_micros() as i64;
            let enabled = store.task_statuses().await?.get(&task.name).is_none_or(|s| s.enabled);
            let waiting = match pending.get(&task.name) {
                Some(id) => store.get_run(id).await?.is_some_and(|r| r.state == TaskState::Queued),
                None => false,
            };
            if waiting {
                tracing::debug!(task = %task.name, "its last scheduled run has not started; this due time is skipped");
            }
            let run = if late || !enabled || waiting {
                None
            } else {
                let delay = schedule.jitter();
                match self.new_run(&task.name, Value::Null, &QueueOptions { delay: Some(delay), ..Default::default() }) {
                    Ok(run) => Some(run),
                    Err(e) => {
                        // Registration refuses a scheduled task whose params refuse none; should
                        // one get here anyway, it loses this due time, not the other schedules.
                        tracing::error!(task = %task.name, error = %e, "a schedule could not queue its run; this due time is skipped");
                        None
                    }
                }
            };
            let publish = self.inner.publish.read().await;
            if store.fire_schedule(&task.name, seen, next, run.as_ref()).await? {
                match run {
                    Some(run) => {
                        tracing::debug!(task = %task.name, run = %run.id, "schedule fired");
                        if task.workers.is_some() {
                            pending.insert(task.name.clone(), run.id.clone());
                        }
                        self.committed([run]);
                        self.inner.wake.notify_one();
                    }
                    None if late => tracing::info!(task = %task.name, missed = %to_datetime(seen), "missed due time skipped"),
                    None => {}
                }
            }
            drop(publish);
            due.insert(task.name.clone(), store.schedule_due(&task.name, next).await?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Fixture;
    use super::*;
    use crate::scheduler::Schedule;

    /// A due time found further past than `misfire_grace` (the host was down) is skipped;
    /// within the grace it queues its run.
    #[tokio::test]
    async fn a_due_time_past_the_misfire_grace_is_skipped() {
        for (grace_s, runs) in [(5, 0), (60, 1)] {
            let schedules = SchedulesConfig { misfire_grace: Duration::from_secs(grace_s), ..Default::default() };
            let f = Fixture::new(SchedulerConfig { schedules, consume: false, ..Default::default() }).await;
            let s = &f.scheduler;
            s.register(Task::new("every").schedule(Schedule::every(Duration::from_secs(3600))).run(|_| async { Ok(()) })).unwrap();
            // The stored due time: ten seconds ago, as if this host had been down since.
            let due = now_us() - 10_000_000;
            assert_eq!(s.store().schedule_due("every", due).await.unwrap(), due);
            s.schedule_tick(&mut HashMap::new(), &mut HashMap::new()).await.unwrap();
            assert_eq!(s.store().count_runs("every", TaskState::Queued).await.unwrap(), runs, "misfire grace {grace_s} s");
            assert!(s.store().schedule_due("every", 0).await.unwrap() > now_us(), "the next due time is ahead either way");
        }
    }
}
