//! What every suite function is given: a backend that makes fresh stores, and the helpers
//! the suite shares (runs to queue, claim rules, the state machine check, the clock).

use crate::common::{Db, TestEnv};
use fluid_host::store::{ClaimRules, Store};
use fluid_host::time::{now_us, to_datetime};
use fluid_host::{TaskRun, TaskState};
use std::collections::{BTreeMap, HashMap};

/// A backend under test: it makes empty stores of its own kind.
pub struct Driver(pub Db);

/// An empty store (a SQLite file in a temp folder, or a PostgreSQL database of its own),
/// removed when dropped.
pub struct Fresh {
    pub store: Store,
    env: TestEnv,
}

impl Driver {
    pub async fn fresh(&self) -> Fresh {
        let env = TestEnv::new(self.0).await;
        let store = Store::connect(&env.url()).await.expect("store opens");
        Fresh { store, env }
    }
}

/// The store itself: a suite function uses it as a `Store` while the database lives.
impl std::ops::Deref for Fresh {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl Fresh {
    /// Another handle on the same database, as a second host has one: connections of its
    /// own (on SQLite, a writer of its own, as another process).
    pub async fn another_host(&self) -> Store {
        Store::connect(&self.env.url()).await.expect("store opens")
    }
}

/// Run `n` of `task`, queued and due, queued `n` µs after run `n - 1` (so FIFO order is
/// the order of `n`); its id spells `n`.
pub fn queued(n: usize, task: &str) -> TaskRun {
    let t = to_datetime(now_us() - 1_000_000 + n as i64);
    TaskRun::queued(format!("{n:032x}"), task, t)
}

/// The number a run of [`queued`] was made with.
pub fn number(id: &str) -> usize {
    usize::from_str_radix(id, 16).expect("an id of `queued`")
}

/// Claim rules: each task with its rules.
pub fn rules(tasks: &[(&str, ClaimRules)]) -> BTreeMap<String, ClaimRules> {
    tasks.iter().map(|(t, r)| (t.to_string(), r.clone())).collect()
}

/// A time strictly after every time read so far: heartbeats before it are older than it.
pub async fn a_moment_later() -> i64 {
    let t = now_us();
    while now_us() <= t {
        tokio::task::yield_now().await;
    }
    now_us()
}

/// Every change on the feed, run by run, is a move `TaskState::can_become` allows (from
/// `Init` for a run's first event). The feed must not have been pruned.
pub async fn assert_the_feed_follows_the_state_machine(store: &Store) {
    let mut last: HashMap<String, TaskState> = HashMap::new();
    for e in store.events_after(0, 100_000, usize::MAX).await.unwrap() {
        let from = last.insert(e.run.id.clone(), e.run.state).unwrap_or(TaskState::Init);
        assert!(from.can_become(e.run.state), "run {}: {from} -> {} is not a move the state machine allows", e.run.id, e.run.state);
    }
}

/// The states the feed holds after `seq`, by run number, each run's in order.
pub async fn feed_states_after(store: &Store, seq: i64) -> BTreeMap<usize, Vec<TaskState>> {
    let mut out: BTreeMap<usize, Vec<TaskState>> = BTreeMap::new();
    for e in store.events_after(seq, 100_000, usize::MAX).await.unwrap() {
        out.entry(number(&e.run.id)).or_default().push(e.run.state);
    }
    out
}
