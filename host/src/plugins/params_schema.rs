//! Task components' params schemas: the JSON Schema a component declares for a task's
//! params, enforced by the host when a run is queued (a 422 with the reason, not a failed
//! run), with the `jsonschema` crate.
//!
//! The schema comes from a component, which may be hostile, and validation runs on the
//! host, outside the sandbox's time and memory limits: on HTTP requests, in `queue-run`
//! calls, in the schedule loop. So a schema is accepted only when its cost is bounded:
//! - at most [`MAX_SCHEMA_BYTES`] of text;
//! - `$ref`s only to places in the same schema (`#` or `#/...`); `$id` only at the root,
//!   no `$anchor`, `$dynamicRef` or `$recursiveRef`, and draft 6 or later (draft 4's `id`
//!   moves references), so every reference can be followed here. Remote references are never fetched in any case: the crate is built without
//!   its resolvers;
//! - at most [`MAX_EXPANDED_NODES`] nodes once every `$ref` is written out (a reference
//!   back into itself counts once: validation follows it only as deep as the params go),
//!   so `allOf` over doubled references cannot make validation exponential;
//! - `pattern`s are compiled by the `regex` engine, in linear time (no look-around or
//!   back-references: a schema using them is refused).
//!
//! One reason is given for refused params (the first found), capped in length: collecting
//! every error could itself be exponential.

use crate::scheduler::{ParamsValidator, any_object};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Largest schema text accepted.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Largest schema accepted once its references are written out.
pub const MAX_EXPANDED_NODES: u64 = 5_000;
/// Longest reason given for refused params.
const MAX_REASON_CHARS: usize = 400;

/// Keywords that name or reach schemas by something other than a JSON pointer into this one.
const REFUSED_KEYWORDS: &[&str] = &["$anchor", "$dynamicAnchor", "$dynamicRef", "$recursiveRef", "$recursiveAnchor"];

/// Reads a component's params schema and builds the check its tasks' params go through.
pub fn validator(text: &str) -> Result<(Value, ParamsValidator), String> {
    if text.len() > MAX_SCHEMA_BYTES {
        return Err(format!("params-schema is {} bytes, over the {MAX_SCHEMA_BYTES} allowed", text.len()));
    }
    let schema: Value = serde_json::from_str(text).map_err(|e| format!("params-schema is not JSON: {e}"))?;
    // Draft 4's `id` moves where references point, out of sight of the count below.
    if schema.get("$schema").and_then(Value::as_str).is_some_and(|d| d.contains("draft-04") || d.contains("draft-03")) {
        return Err("params-schema: drafts 3 and 4 are not supported (their `id` moves references); use draft 6 or later".into());
    }
    let nodes = Expansion { root: &schema, memo: HashMap::new(), open: HashSet::new() }.size(&schema, true)?;
    if nodes > MAX_EXPANDED_NODES {
        return Err(format!("params-schema is too large once its $refs are followed (over {MAX_EXPANDED_NODES} nodes)"));
    }
    let compiled = jsonschema::options()
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .build(&schema)
        .map_err(|e| format!("params-schema is not a usable JSON Schema: {e}"))?;
    let check: ParamsValidator = Arc::new(move |params: Value| {
        let params = any_object(params)?;
        match compiled.validate(&params) {
            Ok(()) => Ok(params),
            Err(e) => {
                let at = e.instance_path().to_string();
                let reason = if at.is_empty() { e.to_string() } else { format!("{at}: {e}") };
                Err(capped(reason))
            }
        }
    });
    Ok((schema, check))
}

fn capped(mut s: String) -> String {
    if let Some((i, _)) = s.char_indices().nth(MAX_REASON_CHARS) {
        s.truncate(i);
        s.push('…');
    }
    s
}

/// Counts a schema's nodes with every `$ref` written out, saturating past the limit.
struct Expansion<'a> {
    root: &'a Value,
    /// Size of each reference target already counted.
    memo: HashMap<String, u64>,
    /// Targets being counted (a reference back into one of them is a cycle).
    open: HashSet<String>,
}

impl Expansion<'_> {
    fn size(&mut self, v: &Value, at_root: bool) -> Result<u64, String> {
        let mut n: u64 = 1;
        match v {
            Value::Array(items) => {
                for item in items {
                    n = n.saturating_add(self.size(item, false)?);
                    if n > MAX_EXPANDED_NODES {
                        return Ok(n);
                    }
                }
            }
            Value::Object(map) => {
                for (k, child) in map {
                    if REFUSED_KEYWORDS.contains(&k.as_str()) {
                        return Err(format!("params-schema may not use {k} (only $refs to #/... within the schema)"));
                    }
                    if k == "$id" && child.is_string() && !at_root {
                        return Err("params-schema may use $id only at its root".into());
                    }
                    if k == "$ref"
                        && let Value::String(r) = child
                    {
                        n = n.saturating_add(self.target(r)?);
                    }
                    n = n.saturating_add(self.size(child, false)?);
                    if n > MAX_EXPANDED_NODES {
                        return Ok(n);
                    }
                }
            }
            _ => {}
        }
        Ok(n)
    }

    fn target(&mut self, r: &str) -> Result<u64, String> {
        let Some(pointer) = r.strip_prefix('#') else {
            return Err(format!("params-schema $ref {r:?} leaves the schema (only #/... is allowed)"));
        };
        if let Some(&n) = self.memo.get(pointer) {
            return Ok(n);
        }
        if self.open.contains(pointer) {
            return Ok(1);
        }
        let root = self.root;
        let target = root.pointer(pointer).ok_or_else(|| format!("params-schema $ref {r:?} points at nothing"))?;
        self.open.insert(pointer.to_string());
        let n = self.size(target, false);
        self.open.remove(pointer);
        let n = n?;
        self.memo.insert(pointer.to_string(), n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn build(schema: Value) -> Result<ParamsValidator, String> {
        validator(&schema.to_string()).map(|(_, v)| v)
    }

    /// Why a schema is refused (panics if it is accepted).
    fn refused(schema: Value) -> String {
        match build(schema) {
            Ok(_) => panic!("accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn params_are_checked_against_the_schema_with_the_first_reason_at_its_place() {
        let check = build(json!({
            "type": "object",
            "properties": {"n": {"type": "integer", "minimum": 0}, "to": {"type": "string", "pattern": "^[a-z]+$"}},
            "required": ["n"],
            "additionalProperties": false
        }))
        .unwrap();
        let ok = json!({"n": 2, "to": "x"});
        assert_eq!(check(ok.clone()).unwrap(), ok, "valid params are stored as given");
        let bad = check(json!({"n": "two"})).unwrap_err();
        assert!(bad.starts_with("/n: ") && bad.contains("integer"), "{bad}");
        assert!(check(json!({"n": 1, "to": "X1"})).unwrap_err().starts_with("/to: "));
        assert!(check(json!({"n": 1, "extra": true})).unwrap_err().contains("extra"));
        assert!(check(Value::Null).unwrap_err().contains("\"n\" is a required property"), "null is {{}}, then checked");
        assert!(check(json!([1])).unwrap_err().contains("params must be a JSON object"));
        let long = check(json!({"n": 1, "x".repeat(5000): 1})).unwrap_err();
        assert!(long.chars().count() <= MAX_REASON_CHARS + 1, "a reason is capped: {} chars", long.chars().count());
    }

    #[test]
    fn local_refs_and_self_reference_are_followed() {
        let check = build(json!({
            "$id": "https://example.com/params",
            "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}, "v": {"type": "integer"}}}},
            "$ref": "#/$defs/node"
        }))
        .unwrap();
        assert!(check(json!({"v": 1, "next": {"v": 2, "next": {"v": 3}}})).is_ok());
        assert!(check(json!({"v": 1, "next": {"v": "deep"}})).unwrap_err().starts_with("/next/v: "));
    }

    #[test]
    fn schemas_whose_cost_is_not_bounded_are_refused() {
        // Each level doubles the one below: 2^40 nodes once written out, in 2 KiB.
        let mut defs = serde_json::Map::new();
        defs.insert("d0".into(), json!({"type": "string"}));
        for i in 1..=40 {
            let below = format!("#/$defs/d{}", i - 1);
            defs.insert(format!("d{i}"), json!({"allOf": [{"$ref": below}, {"$ref": below}]}));
        }
        let bomb = json!({"$defs": defs, "$ref": "#/$defs/d40"});
        assert!(refused(bomb).contains("too large"), "a reference bomb");
        assert!(refused(json!({"$ref": "http://127.0.0.1:9/s.json"})).contains("leaves the schema"), "never fetched");
        assert!(refused(json!({"$ref": "#/$defs/none"})).contains("points at nothing"));
        assert!(refused(json!({"$defs": {"a": {"$anchor": "a"}}, "$ref": "#a"})).contains("$anchor"));
        assert!(refused(json!({"properties": {"a": {"$id": "other", "type": "string"}}})).contains("$id only at its root"));
        assert!(refused(json!({"type": "string", "pattern": "(?=a)"})).contains("not a usable JSON Schema"), "no look-around");
        assert!(refused(json!({"type": 12})).contains("not a usable JSON Schema"));
        let draft4 = json!({"$schema": "http://json-schema.org/draft-04/schema#", "properties": {"a": {"id": "x", "$ref": "#"}}});
        assert!(refused(draft4).contains("drafts 3 and 4"));
        let huge = format!("{{\"enum\": [{}]}}", vec!["1"; 40_000].join(","));
        assert!(validator(&huge).err().unwrap().contains("bytes, over"));
    }
}
