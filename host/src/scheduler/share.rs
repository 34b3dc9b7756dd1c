//! Shares of this host's workers held by groups of tasks (see [`super::WorkerShare`]).
//!
//! A task component's runs may each wait up to their timeout (in a host call, where no CPU
//! budget sees them), so without a cap one component could hold every worker and stop the
//! queue. Each claim is given the room left in every group's share: a full group's tasks
//! are left out of the claim (its queued runs never take a claim's places from other
//! tasks), and a claim starts at most the room left of the others. The count is this
//! host's: it rises when a claim starts a run of the group and falls when the execution
//! ends, before its end is committed, so the commit that records it may start the next.

use crate::store::{ClaimRules, RunRow, ShareRoom};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

type Rules = Arc<BTreeMap<String, ClaimRules>>;

#[derive(Default)]
pub(crate) struct Shares {
    /// Whether any registered task belongs to a group (most hosts: none, and a claim then
    /// uses the registered rules as they are).
    grouped: AtomicBool,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    /// Runs executing here, per group.
    running: HashMap<String, u32>,
    /// The group of each run counted in `running`.
    runs: HashMap<String, String>,
}

impl Shares {
    /// Called with the registered rules whenever they change.
    pub(crate) fn registered(&self, rules: &BTreeMap<String, ClaimRules>) {
        self.grouped.store(rules.values().any(|r| r.share.is_some()), Ordering::Relaxed);
    }

    /// The rules a claim may use now: `base` (each group's room being its whole share)
    /// without the tasks of full groups, the others with the room they have left.
    pub(crate) fn rules_now(&self, base: Rules) -> Rules {
        if !self.grouped.load(Ordering::Relaxed) {
            return base;
        }
        let held = self.held.lock().unwrap();
        let rules = base
            .iter()
            .filter_map(|(name, rule)| {
                let Some(share) = &rule.share else {
                    return Some((name.clone(), rule.clone()));
                };
                let room = share.room.saturating_sub(held.running.get(&share.group).copied().unwrap_or(0));
                let share = Some(ShareRoom { group: share.group.clone(), room });
                (room > 0).then(|| (name.clone(), ClaimRules { share, ..rule.clone() }))
            })
            .collect();
        Arc::new(rules)
    }

    /// Counts the runs a claim made with `rules` started.
    pub(crate) fn hold(&self, rules: &BTreeMap<String, ClaimRules>, started: &[RunRow]) {
        if !self.grouped.load(Ordering::Relaxed) {
            return;
        }
        let mut held = self.held.lock().unwrap();
        for row in started {
            if let Some(share) = rules.get(&row.run.task).and_then(|r| r.share.as_ref()) {
                *held.running.entry(share.group.clone()).or_default() += 1;
                held.runs.insert(row.run.id.clone(), share.group.clone());
            }
        }
    }

    /// The execution of run `id` is over (a no-op for a run of no group).
    pub(crate) fn release(&self, id: &str) {
        let mut held = self.held.lock().unwrap();
        let Some(group) = held.runs.remove(id) else { return };
        if let Some(n) = held.running.get_mut(&group) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.running.remove(&group);
            }
        }
    }

    /// Runs of `group` executing here now.
    #[cfg(test)]
    pub(crate) fn running(&self, group: &str) -> u32 {
        self.held.lock().unwrap().running.get(group).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::TaskRun;

    fn rules() -> Rules {
        let share = |room| Some(ShareRoom { group: "c".into(), room });
        Arc::new(BTreeMap::from([
            ("native".to_string(), ClaimRules::default()),
            ("c.a".to_string(), ClaimRules { share: share(2), ..Default::default() }),
            ("c.b".to_string(), ClaimRules { share: share(2), ..Default::default() }),
        ]))
    }

    fn started(id: &str, task: &str) -> RunRow {
        let run: TaskRun = serde_json::from_value(serde_json::json!({
            "id": id, "task": task, "priority": "medium", "state": "running", "params": {},
            "retry_attempt": 0, "rate_limit_attempt": 0, "from_run_id": "", "root_run_id": "", "error": null,
        }))
        .unwrap();
        RunRow { run, owner: Some("here".into()), lease: 1, cancel_requested: false }
    }

    #[test]
    fn a_full_group_is_left_out_and_a_released_run_makes_room() {
        let shares = Shares::default();
        let base = rules();
        shares.registered(&base);
        let now = shares.rules_now(base.clone());
        assert_eq!(now["c.a"].share.as_ref().unwrap().room, 2);
        shares.hold(&now, &[started("1", "c.a"), started("2", "native")]);
        assert_eq!(shares.rules_now(base.clone())["c.b"].share.as_ref().unwrap().room, 1, "the group's tasks share one count");
        shares.hold(&now, &[started("3", "c.b")]);
        let full = shares.rules_now(base.clone());
        assert!(!full.contains_key("c.a") && !full.contains_key("c.b") && full.contains_key("native"), "{full:?}");
        shares.release("2");
        assert_eq!(shares.running("c"), 2, "a run of no group frees nothing");
        shares.release("1");
        assert_eq!(shares.rules_now(base)["c.a"].share.as_ref().unwrap().room, 1);
        shares.release("1");
        assert_eq!(shares.running("c"), 1, "a run is released once");
    }

    #[test]
    fn without_groups_the_registered_rules_are_used_as_they_are() {
        let shares = Shares::default();
        let base: Rules = Arc::new(BTreeMap::from([("native".to_string(), ClaimRules::default())]));
        shares.registered(&base);
        assert!(Arc::ptr_eq(&shares.rules_now(base.clone()), &base));
    }
}
