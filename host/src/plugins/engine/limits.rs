//! Fixed bounds on what a component hands the host to keep: its registration and its
//! task definitions. The host keeps these for as long as the component is loaded and
//! shows them in `/plugins`, so their size must not be the component's choice. Over a
//! bound, the component is refused at load with the bound named.
//!
//! Also how a text a component chose is quoted in the host's errors and log: cut
//! ([`truncated`], [`guest_text`]) and on one line ([`one_line`]).

use crate::plugins::wit::bindings::task_world::tc::TaskDef;
use crate::plugins::wit::bindings::tmp::Registration;
use crate::store::plugin_tables::check_ident;
use crate::types::{MAX_ERROR_BYTES, cut_text};

/// Routes one plugin may declare.
pub const MAX_ROUTES: usize = 64;
/// Subscriptions (state and tag) one plugin may declare.
pub const MAX_SUBSCRIPTIONS: usize = 64;
/// Task definitions one task component may declare.
pub const MAX_TASK_DEFS: usize = 256;
/// Characters of a plugin's name (`[a-z][a-z0-9_]*`, its file's name).
pub const MAX_PLUGIN_NAME: usize = 24;
/// Characters of a version, a tag, a handler name, a task tag, a `call` method.
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
    // PostgreSQL's text refuses it: a stored tag or description holding one would make
    // every write of it fail, another plugin's included.
    if s.contains('\0') {
        return Err(format!("{what} holds a NUL character"));
    }
    Ok(())
}

/// What `register` returned, within the bounds (that the name is its file's is checked by
/// the loader).
pub fn check_registration(reg: &Registration) -> Result<(), String> {
    if check_ident("plugin name", &reg.name, MAX_PLUGIN_NAME).is_err() {
        return Err(format!(
            "register returns the name {:?}, not a plugin name ([a-z][a-z0-9_]*, at most {MAX_PLUGIN_NAME} characters)",
            truncated(&reg.name)
        ));
    }
    short("the version", &reg.version, MAX_SHORT_TEXT)?;
    // Logged at load: a line break in it could forge a line of the log.
    if reg.version.chars().any(char::is_control) {
        return Err(format!("the version {:?} holds a control character", reg.version));
    }
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
        // Measured first: upper-casing copies it.
        if r.method.len() > 6 || !METHODS.contains(&r.method.to_ascii_uppercase().as_str()) {
            return Err(format!("route method {:?} is not one of {}", truncated(&r.method), METHODS.join(", ")));
        }
        short("a route path", &r.path, MAX_PATH)?;
        short("a route handler", &r.handler, MAX_SHORT_TEXT)?;
        // A handler is the method of a call, which refuses control characters.
        if r.handler.chars().any(char::is_control) {
            return Err(format!("the route handler {:?} holds a control character", r.handler));
        }
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

/// A guest's text as one line: a line break in it could forge what looks like a line of
/// the host's own log.
pub fn one_line(text: String) -> String {
    if text.contains(['\n', '\r']) { text.replace('\r', "\\r").replace('\n', "\\n") } else { text }
}

/// A text a component chose (an error it returned), fit for the host's errors, `/plugins`
/// and the log: at most [`MAX_ERROR_BYTES`] (cut, marked) and on one line.
pub fn guest_text(text: String) -> String {
    // Cut before escaping, so the work is bounded, and after, as escapes lengthen it.
    cut_text(one_line(cut_text(text, MAX_ERROR_BYTES)), MAX_ERROR_BYTES)
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

    #[test]
    fn a_registered_name_must_be_a_plugin_name_and_is_quoted_cut() {
        assert!(check_registration(&Registration { name: "a".repeat(MAX_PLUGIN_NAME), ..reg() }).is_ok());
        let long = check_registration(&Registration { name: "n".repeat(8 << 20), ..reg() }).unwrap_err();
        assert!(long.contains("not a plugin name") && long.len() < 300, "{}", long.len());
        let over = "a".repeat(MAX_PLUGIN_NAME + 1);
        for bad in ["", "Upper", "1st", "has-dash", "x\nERROR forged", over.as_str()] {
            let e = check_registration(&Registration { name: bad.into(), ..reg() }).unwrap_err();
            assert!(e.contains("not a plugin name") && !e.contains('\n'), "{bad}: {e}");
        }
        let forged = check_registration(&Registration { version: "1\nERROR forged".into(), ..reg() }).unwrap_err();
        assert!(forged.contains("control character") && !forged.contains('\n'), "{forged}");
        let handler = vec![Route { method: "GET".into(), path: "/x".into(), handler: "h\r\nERROR forged".into() }];
        let forged = check_registration(&Registration { routes: handler, ..reg() }).unwrap_err();
        assert!(forged.contains("control character") && !forged.contains(['\r', '\n']), "{forged}");
    }

    #[test]
    fn a_guest_text_is_one_bounded_line() {
        assert_eq!(guest_text("plain".into()), "plain");
        assert_eq!(one_line("a\r\nb".into()), "a\\r\\nb");
        let forged = guest_text(format!("x\n2026-01-01T00:00:00Z ERROR fluid_host: forged\r{}", "\n".repeat(1 << 20)));
        assert!(forged.len() <= MAX_ERROR_BYTES && !forged.contains(['\n', '\r']), "{}", forged.len());
        assert!(forged.starts_with("x\\n2026") && forged.ends_with(" B cut]"), "{forged}");
        let long = guest_text("é".repeat(1 << 20));
        assert!(long.len() <= MAX_ERROR_BYTES && long.starts_with('é'), "{}", long.len());
    }
    #[test]
    fn a_nul_in_a_stored_definition_text_is_refused() {
        let def = |description: &str, tag: &str| TaskDef {
            name: "t".into(),
            description: description.into(),
            schedule: None,
            priority: crate::plugins::wit::bindings::types::TaskPriority::Medium,
            timeout_ms: 1000,
            max_concurrency: 0,
            retry: None,
            tags: vec![tag.into()],
            params_schema: None,
        };
        assert!(check_definitions(&[def("plain", "tag")]).is_ok());
        assert!(check_definitions(&[def("a\0b", "tag")]).unwrap_err().contains("NUL"));
        assert!(check_definitions(&[def("plain", "t\0")]).unwrap_err().contains("NUL"));
        let subscriptions = vec![Subscription { state: TaskState::Success, tag: "\0".into() }];
        assert!(check_registration(&Registration { subscriptions, ..reg() }).unwrap_err().contains("NUL"));
    }
}
