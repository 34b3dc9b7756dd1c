//! Call accounting: calls between plugins (and from tasks to plugins) pass here, where
//! re-entry, wait cycles and one caller taking a plugin's whole queue are refused before
//! the call reaches the target's actor. It owns who waits on whom and the calls in flight
//! per caller, and is the [`Peers`] handle every instance holds.

use super::loaded::LoadedSet;
use crate::plugins::engine::limits::MAX_SHORT_TEXT;
use crate::plugins::instance::actor::Ticket;
use crate::plugins::instance::state::Peers;
use crate::plugins::instance::supervisor::Supervisor;
use crate::scheduler::{CallFuture, PluginCallError};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The calls under way between plugins, over the loaded set.
pub(crate) struct Calls {
    loaded: Arc<LoadedSet>,
    /// Who waits on whom: a plugin in a `call` to another (an instance makes one call at
    /// a time, so one target each). A call that would close a cycle is refused at once.
    waits: Mutex<BTreeMap<String, String>>,
    /// Calls in flight per (caller, target): a caller gets a fair share of a plugin.
    in_flight: Arc<Mutex<BTreeMap<(String, String), usize>>>,
}

impl Calls {
    /// No calls under way yet, over `loaded`.
    pub(crate) fn new(loaded: Arc<LoadedSet>) -> Calls {
        Calls { loaded, waits: Mutex::default(), in_flight: Arc::default() }
    }

    /// Calls a plugin's exported `call`. `chain` holds the plugins already waiting on this
    /// call; reaching one of them again would deadlock, so it is refused, and so is a call
    /// that would close a cycle with calls already waiting on other stacks (two plugins
    /// calling each other at the same moment): both at once, as `unavailable`, charged to
    /// no one. A quarantined plugin, a method name longer than any route handler's (or
    /// holding a control character) and arguments over the target's `max_args_kib` are
    /// refused before reaching it; the latter two are the caller's mistake.
    pub(crate) async fn call(&self, target: &str, method: &str, args: String, chain: Vec<String>) -> Result<String, PluginCallError> {
        if chain.iter().any(|c| c == target) {
            return Err(PluginCallError::Unavailable(format!("re-entrant call: plugin {target} is already on this call's stack")));
        }
        if chain.len() >= 8 {
            return Err(PluginCallError::Unavailable("plugin call chain deeper than 8".into()));
        }
        // The method is copied to the target's queue and named in its errors, spans and log.
        if method.len() > 4 * MAX_SHORT_TEXT || method.chars().count() > MAX_SHORT_TEXT {
            return Err(PluginCallError::InvalidInput(format!(
                "a method name of {} bytes, over the limit of {MAX_SHORT_TEXT} characters",
                method.len()
            )));
        }
        if method.chars().any(char::is_control) {
            return Err(PluginCallError::InvalidInput(format!("the method name {method:?} holds a control character")));
        }
        let plugin = self.loaded.plugin(target).ok_or_else(|| PluginCallError::NoSuchPlugin(target.into()))?;
        if let Some(why) = plugin.sup.unavailable() {
            return Err(PluginCallError::Unavailable(why));
        }
        let max = plugin.policy().limits.max_args_bytes();
        if args.len() > max {
            return Err(PluginCallError::InvalidInput(format!(
                "arguments of {} bytes exceed the limit of {max} bytes of plugin {target} (max_args_kib)",
                args.len()
            )));
        }
        // A plugin or task calling: at most MAX_CALLS_PER_CALLER of its calls wait on one
        // target, so no caller can take a plugin's whole queue from the others.
        let share = match chain.last() {
            Some(c) => Some(CallShare::take(self, c, target)?),
            None => None,
        };
        // The share and the bytes go with the call into the target's queue, and are given
        // back when the target is done with it, not when the caller stops waiting: a caller
        // that times out would otherwise leave its calls queued and take more.
        let ticket: Ticket = Box::new((share, plugin.sup.hold(args.len())));
        // Task runs (`task NAME`) are never waited on, so only plugin callers are edges.
        let caller = chain.last().and_then(|c| self.loaded.plugin(c));
        let _edge = match &caller {
            Some(c) => Some(WaitEdge::add(self, &c.name, target)?),
            None => None,
        };
        let out = plugin.actor.call(method.to_string(), args, chain, ticket).await;
        if let (Err(PluginCallError::Unavailable(_) | PluginCallError::Failed(_)), Some(c)) = (&out, &caller) {
            // The callee keeps its health (see `actor`); the caller sees what it caused.
            c.sup.update(|h| h.calls_failed_downstream += 1);
        }
        out
    }
}

impl Peers for Calls {
    fn has_plugin(&self, name: &str) -> bool {
        self.loaded.has_plugin(name)
    }

    fn call<'a>(&'a self, target: &'a str, method: &'a str, args: String, chain: Vec<String>) -> CallFuture<'a> {
        Box::pin(Calls::call(self, target, method, args, chain))
    }

    fn component_tasks(&self, sup: &Arc<Supervisor>, task: &str) -> Option<Vec<String>> {
        let components = self.loaded.task_components.read().unwrap();
        match components.values().find(|c| Arc::ptr_eq(&c.sup, sup)) {
            Some(c) if c.tasks.iter().any(|t| t == task) => Some(c.tasks.clone()),
            _ => None,
        }
    }

    fn owned_elsewhere(&self, sup: &Arc<Supervisor>, task: &str) -> bool {
        let components = self.loaded.task_components.read().unwrap();
        // By name: runs of a component's previous version still running after a swap have
        // a supervisor of their own, and its tasks are still theirs.
        components.values().any(|c| c.sup.name != sup.name && c.tasks.iter().any(|t| t == task))
    }
}

/// Calls one caller (a plugin, or the runs of one task) may have waiting on one plugin.
pub const MAX_CALLS_PER_CALLER: usize = 4;

/// One of a caller's calls in flight to a target, for as long as this lives.
struct CallShare {
    in_flight: Arc<Mutex<BTreeMap<(String, String), usize>>>,
    key: (String, String),
}

impl CallShare {
    fn take(calls: &Calls, caller: &str, target: &str) -> Result<CallShare, PluginCallError> {
        let key = (caller.to_string(), target.to_string());
        let mut map = calls.in_flight.lock().unwrap();
        let n = map.entry(key.clone()).or_default();
        if *n >= MAX_CALLS_PER_CALLER {
            return Err(PluginCallError::Unavailable(format!(
                "{caller} already has {MAX_CALLS_PER_CALLER} calls waiting on plugin {target}; retry later"
            )));
        }
        *n += 1;
        Ok(CallShare { in_flight: calls.in_flight.clone(), key })
    }
}

impl Drop for CallShare {
    fn drop(&mut self) {
        let mut map = self.in_flight.lock().unwrap();
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// `caller` waits on `target` for as long as this lives.
struct WaitEdge<'a> {
    calls: &'a Calls,
    caller: String,
}

impl<'a> WaitEdge<'a> {
    fn add(calls: &'a Calls, caller: &str, target: &str) -> Result<WaitEdge<'a>, PluginCallError> {
        let mut waits = calls.waits.lock().unwrap();
        // The message names only the two ends the caller knows, not who else waits.
        if closes_cycle(&waits, caller, target).is_some() {
            return Err(PluginCallError::Unavailable(format!(
                "call cycle: plugin {target} already waits on {caller}, directly or through others"
            )));
        }
        waits.insert(caller.to_string(), target.to_string());
        Ok(WaitEdge { calls, caller: caller.to_string() })
    }
}

/// The cycle `caller` waiting on `target` would close in the wait-for graph `waits`
/// (each plugin waits on at most one other), as the path from `caller` back to itself.
fn closes_cycle(waits: &BTreeMap<String, String>, caller: &str, target: &str) -> Option<Vec<String>> {
    let mut path = vec![caller.to_string(), target.to_string()];
    let mut at = target;
    while let Some(next) = waits.get(at) {
        path.push(next.clone());
        if next == caller {
            return Some(path);
        }
        if path.len() > waits.len() + 2 {
            return None;
        }
        at = next;
    }
    None
}

impl Drop for WaitEdge<'_> {
    fn drop(&mut self) {
        self.calls.waits.lock().unwrap().remove(&self.caller);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_closing_a_wait_cycle_is_found_whatever_its_length() {
        let waits: BTreeMap<String, String> =
            [("a", "b"), ("b", "c"), ("x", "y"), ("y", "x")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(closes_cycle(&waits, "c", "a").unwrap(), ["c", "a", "b", "c"]);
        assert_eq!(closes_cycle(&waits, "b", "a").unwrap(), ["b", "a", "b"]);
        assert!(closes_cycle(&waits, "c", "d").is_none());
        assert!(closes_cycle(&waits, "d", "a").is_none());
        assert!(closes_cycle(&waits, "d", "x").is_none(), "a cycle not through the caller is not its own, and ends");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_method_name_over_the_short_text_limit_is_refused_before_reaching_a_plugin() {
        let calls = Calls::new(Arc::new(LoadedSet::default()));
        for method in ["m".repeat(MAX_SHORT_TEXT + 1), "é".repeat(1 << 20)] {
            match calls.call("p", &method, "{}".into(), vec![]).await {
                Err(PluginCallError::InvalidInput(m)) => assert!(m.contains("limit of 64 characters") && m.len() < 100, "{m}"),
                other => panic!("expected invalid input, got {other:?}"),
            }
        }
        let forged = calls.call("p", "m\nERROR forged", "{}".into(), vec![]).await;
        assert!(matches!(&forged, Err(PluginCallError::InvalidInput(m)) if m.contains("control character")), "{forged:?}");
        // Within it, the call goes on: here to no plugin.
        let within = calls.call("p", &"é".repeat(MAX_SHORT_TEXT), "{}".into(), vec![]).await;
        assert!(matches!(within, Err(PluginCallError::NoSuchPlugin(_))), "{within:?}");
    }
}
