//! Fixed bounds on what a component hands the host to keep: its registration and its
//! task definitions. The host keeps these for as long as the component is loaded and
//! shows them in `/plugins`, so their size must not be the component's choice. Over a
//! bound, the component is refused at load with the bound named.

use crate::plugins::wit::bindings::task_world::tc::TaskDef;
use crate::plugins::wit::bindings::tmp::Registration;

/// Routes one plugin may declare.
pub const MAX_ROUTES: usize = 64;
/// Subscriptions (state and tag) one plugin may declare.
pub const MAX_SUBSCRIPTIONS: usize = 64;
/// Task definitions one task component may declare.
pub const MAX_TASK_DEFS: usize = 256;
/// Characters of a version, a tag, a handler name, a task tag.
pub const MAX_SHORT_TEXT: usize = 64;
/// Characters of a route path.
pub const MAX_PATH: usize = 256;
/// Characters of a task's description.
pub const MAX_DESCRIPTION: usize = 4096;
/// Tags of one task.
pub const MAX_TASK_TAGS: usize = 32;
/// Characters of a schedule expression.
pub const MAX_SCHEDULE: usize = 128;
/// Methods a route may serve.
pub const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

fn short(what: &str, s: &str, max: usize) -> Result<(), String> {
    if s.chars().count() > max {
        return Err(format!("{what} has {} characters, over the limit of {max}", s.chars().count()));
    }
    Ok(())
}

/// What `register` returned, within the bounds (the name rule is checked by the loader).
pub fn check_registration(reg: &Registration) -> Result<(), String> {
    short("the version", &reg.version, MAX_SHORT_TEXT)?;
    if reg.routes.len() > MAX_ROUTES {
        return Err(format!("register declares {} routes, over the limit of {MAX_ROUTES}", reg.routes.len()));
    }
    if reg.subscriptions.len() > MAX_SUBSCRIPTIONS {
        return Err(format!("register declares {} subscriptions, over the limit of {MAX_SUBSCRIPTIONS}", reg.subscriptions.len()));
    }
    for s in &reg.subscriptions {
        short("a subscription tag", &s.tag, MAX_SHORT_TEXT)?;
    }
    for r in &reg.routes {
        if !METHODS.contains(&r.method.to_ascii_uppercase().as_str()) {
            return Err(format!("route method {:?} is not one of {}", truncated(&r.method), METHODS.join(", ")));
        }
        short("a route path", &r.path, MAX_PATH)?;
        short("a route handler", &r.handler, MAX_SHORT_TEXT)?;
    }
    Ok(())
}

/// Roughly what a registration weighs in the host's memory once kept.
pub fn registration_bytes(reg: &Registration) -> u64 {
    let routes: usize = reg.routes.iter().map(|r| 64 + r.method.len() + r.path.len() + r.handler.len()).sum();
    let subs: usize = reg.subscriptions.iter().map(|s| 32 + s.tag.len()).sum();
    (256 + reg.name.len() + reg.version.len() + routes + subs) as u64
}

/// A task component's definitions, within the bounds; the count is checked before
/// anything else is looked at.
pub fn check_definitions(defs: &[TaskDef]) -> Result<(), String> {
    if defs.len() > MAX_TASK_DEFS {
        return Err(format!("definitions returned {} tasks, over the limit of {MAX_TASK_DEFS}", defs.len()));
    }
    for d in defs {
        let name = truncated(&d.name);
        short(&format!("the description of task {name:?}"), &d.description, MAX_DESCRIPTION)?;
        if d.tags.len() > MAX_TASK_TAGS {
            return Err(format!("task {name:?} has {} tags, over the limit of {MAX_TASK_TAGS}", d.tags.len()));
        }
        for t in &d.tags {
            short(&format!("a tag of task {name:?}"), t, MAX_SHORT_TEXT)?;
        }
        if let Some(s) = &d.schedule {
            short(&format!("the schedule of task {name:?}"), s, MAX_SCHEDULE)?;
        }
    }
    Ok(())
}

/// A text a component chose, cut for quoting in a message.
pub fn truncated(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX { s.to_string() } else { format!("{}…", s.chars().take(MAX).collect::<String>()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::wit::bindings::tmp::{Route, Subscription};
    use crate::plugins::wit::bindings::types::TaskState;

    fn reg() -> Registration {
        Registration { name: "p".into(), version: "1".into(), subscriptions: vec![], routes: vec![] }
    }

    #[test]
    fn registrations_over_a_bound_are_refused_naming_it() {
        assert!(check_registration(&reg()).is_ok());
        let routes = (0..65).map(|i| Route { method: "GET".into(), path: format!("/r{i}"), handler: "h".into() }).collect();
        assert!(check_registration(&Registration { routes, ..reg() }).unwrap_err().contains("limit of 64"));
        let subscriptions = (0..65).map(|i| Subscription { state: TaskState::Success, tag: format!("t{i}") }).collect();
        assert!(check_registration(&Registration { subscriptions, ..reg() }).unwrap_err().contains("subscriptions"));
        assert!(check_registration(&Registration { version: "v".repeat(65), ..reg() }).unwrap_err().contains("version"));
        let long = vec![Route { method: "GET".into(), path: format!("/{}", "a".repeat(300)), handler: "h".into() }];
        assert!(check_registration(&Registration { routes: long, ..reg() }).unwrap_err().contains("route path"));
        let odd = vec![Route { method: "BREW".into(), path: "/x".into(), handler: "h".into() }];
        assert!(check_registration(&Registration { routes: odd, ..reg() }).unwrap_err().contains("BREW"));
    }
}
