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
//! - no reference back into itself (a recursive schema): validation would follow it as
//!   deep as the params go, and two such references side by side (`allOf`, `items`)
//!   double the work at every level of the params;
//! - at most [`MAX_EXPANDED_NODES`] nodes once every `$ref` is written out, so `allOf`
//!   over doubled references cannot make validation exponential either;
//! - object keys of at most [`MAX_KEY_BYTES`] and at most [`MAX_COMPILED_BYTES`] of
//!   locations in all: the compiled schema keeps the JSON-pointer location of every
//!   node, so its memory grows with nodes times the length of their paths;
//! - `pattern`s are compiled by the `regex` engine, in linear time (no look-around or
//!   back-references: a schema using them is refused).
//!
//! - each check, at most [`MAX_VALIDATION_WORK`] schema nodes times the params' size (their
//!   values, and their strings' bytes by [`STRING_BYTES_PER_UNIT`]): a schema within every
//!   bound above still meets every value of large params (`items` over two thousand
//!   failing `anyOf` branches, against an array of thousands; as many `pattern`s, each
//!   reading a long string), on a host thread.
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
/// Longest object key (a property name, a `$defs` name) in a schema.
pub const MAX_KEY_BYTES: usize = 128;
/// Most bytes of node locations one schema may compile to (see [`Expansion`]); a task
/// component's schemas together get [`MAX_COMPONENT_SCHEMA_BYTES`].
pub const MAX_COMPILED_BYTES: u64 = 1 << 20;
/// What all the params schemas of one task component may compile to, together.
pub const MAX_COMPONENT_SCHEMA_BYTES: u64 = 8 << 20;
/// What each compiled node costs besides its location.
const NODE_BYTES: u64 = 64;
/// Most work one check may take: the schema's nodes (references written out, what
/// annotations hold left out) times the params' size in units (see [`size_in_units`]),
/// which bounds what validation can visit. A schema of 48 such nodes still checks params
/// of the largest size allowed (65,536 values and 1 MiB of text).
pub const MAX_VALIDATION_WORK: u64 = 4_000_000;
/// Bytes of string that count as one unit of params: a `pattern` or a `format` reads a
/// whole string, and a long one costs as much as many values.
pub const STRING_BYTES_PER_UNIT: u64 = 64;
/// Longest reason given for refused params.
const MAX_REASON_CHARS: usize = 400;

/// Keywords whose values validation never reads: not counted in a check's work.
const ANNOTATIONS: &[&str] = &["description", "title", "examples", "default", "$comment", "deprecated", "readOnly", "writeOnly"];

/// Keywords that name or reach schemas by something other than a JSON pointer into this one.
const REFUSED_KEYWORDS: &[&str] = &["$anchor", "$dynamicAnchor", "$dynamicRef", "$recursiveRef", "$recursiveAnchor"];

/// Reads a component's params schema and builds the check its tasks' params go through,
/// drawing what the schema compiles to from `budget` (a component's schemas share one).
pub fn validator_within(text: &str, budget: &mut u64) -> Result<(Value, ParamsValidator), String> {
    if text.len() > MAX_SCHEMA_BYTES {
        return Err(format!("params-schema is {} bytes, over the {MAX_SCHEMA_BYTES} allowed", text.len()));
    }
    let schema: Value = serde_json::from_str(text).map_err(|e| format!("params-schema is not JSON: {e}"))?;
    // Draft 4's `id` moves where references point, out of sight of the count below.
    if schema.get("$schema").and_then(Value::as_str).is_some_and(|d| d.contains("draft-04") || d.contains("draft-03")) {
        return Err("params-schema: drafts 3 and 4 are not supported (their `id` moves references); use draft 6 or later".into());
    }
    let cost = Expansion { root: &schema, memo: HashMap::new(), open: HashSet::new() }.size(&schema, true, 0)?;
    if cost.nodes > MAX_EXPANDED_NODES {
        return Err(format!("params-schema is too large once its $refs are followed (over {MAX_EXPANDED_NODES} nodes)"));
    }
    let bytes = cost.bytes(0);
    if bytes > MAX_COMPILED_BYTES.min(*budget) {
        return Err(format!(
            "params-schema would compile to over {} KiB of node locations (nodes times the length of their paths; {} KiB per schema, {} KiB per component)",
            bytes / 1024,
            MAX_COMPILED_BYTES / 1024,
            MAX_COMPONENT_SCHEMA_BYTES / 1024
        ));
    }
    *budget -= bytes;
    let compiled = jsonschema::options()
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .build(&schema)
        .map_err(|e| format!("params-schema is not a usable JSON Schema: {e}"))?;
    let checked = cost.checked.max(1);
    let check: ParamsValidator = Arc::new(move |params: Value| {
        let params = any_object(params)?;
        let units = size_in_units(&params);
        if units.saturating_mul(checked) > MAX_VALIDATION_WORK {
            return Err(format!(
                "params of {units} units (JSON values, and {STRING_BYTES_PER_UNIT} bytes of string each) are too large \
                 to check against this task's schema of {checked} nodes (units times nodes may be at most {MAX_VALIDATION_WORK})"
            ));
        }
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

/// The size of `v` for validation: one unit a value (itself included), one more for each
/// [`STRING_BYTES_PER_UNIT`] bytes of its strings and keys.
fn size_in_units(v: &Value) -> u64 {
    let shape = crate::types::ParamsShape::of(v);
    (shape.values + shape.string_bytes / STRING_BYTES_PER_UNIT as usize) as u64
}

fn capped(mut s: String) -> String {
    if let Some((i, _)) = s.char_indices().nth(MAX_REASON_CHARS) {
        s.truncate(i);
        s.push('…');
    }
    s
}

/// What a (sub)schema costs once every `$ref` is written out: its nodes, and the sum of
/// their locations' lengths below it (a node at depth `d` under a parent location of
/// length `p` has a location of length `p` plus its own part).
#[derive(Clone, Copy, Default)]
struct Cost {
    nodes: u64,
    /// Of those, the ones validation may visit: all but what annotations hold (a
    /// description, an example), which it never reads.
    checked: u64,
    /// Sum over its nodes of the length of their location relative to it.
    inner: u64,
}

impl Cost {
    /// Bytes it compiles to under a location of `prefix` bytes.
    fn bytes(&self, prefix: u64) -> u64 {
        self.nodes.saturating_mul(prefix.saturating_add(NODE_BYTES)).saturating_add(self.inner)
    }

    /// Adds `child`, found `step` bytes below this node's location.
    fn add(&mut self, child: Cost, step: u64) {
        self.nodes = self.nodes.saturating_add(child.nodes);
        self.checked = self.checked.saturating_add(child.checked);
        self.inner = self.inner.saturating_add(child.inner).saturating_add(child.nodes.saturating_mul(step));
    }
}

/// Counts a schema's nodes with every `$ref` written out, saturating past the limit.
struct Expansion<'a> {
    root: &'a Value,
    /// Cost of each reference target already counted.
    memo: HashMap<String, Cost>,
    /// Targets being counted (a reference back into one of them is a cycle).
    open: HashSet<String>,
}

impl Expansion<'_> {
    fn size(&mut self, v: &Value, at_root: bool, depth: usize) -> Result<Cost, String> {
        let mut cost = Cost { nodes: 1, checked: 1, inner: 0 };
        if depth > 64 {
            return Err("params-schema nests deeper than 64 levels".into());
        }
        match v {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let step = 1 + i.to_string().len() as u64;
                    cost.add(self.size(item, false, depth + 1)?, step);
                    if cost.nodes > MAX_EXPANDED_NODES {
                        return Ok(cost);
                    }
                }
            }
            Value::Object(map) => {
                for (k, child) in map {
                    if k.len() > MAX_KEY_BYTES {
                        return Err(format!("params-schema has a key of {} bytes, over the {MAX_KEY_BYTES} allowed", k.len()));
                    }
                    if REFUSED_KEYWORDS.contains(&k.as_str()) {
                        return Err(format!("params-schema may not use {k} (only $refs to #/... within the schema)"));
                    }
                    if k == "$id" && child.is_string() && !at_root {
                        return Err("params-schema may use $id only at its root".into());
                    }
                    // A key is escaped in a location (`~0`, `~1`): count it twice.
                    let step = 1 + 2 * k.len() as u64;
                    if k == "$ref"
                        && let Value::String(r) = child
                    {
                        cost.add(self.target(r, depth)?, step);
                    }
                    let mut below = self.size(child, false, depth + 1)?;
                    if ANNOTATIONS.contains(&k.as_str()) {
                        below.checked = 0;
                    }
                    cost.add(below, step);
                    if cost.nodes > MAX_EXPANDED_NODES {
                        return Ok(cost);
                    }
                }
            }
            _ => {}
        }
        Ok(cost)
    }

    fn target(&mut self, r: &str, depth: usize) -> Result<Cost, String> {
        let Some(pointer) = r.strip_prefix('#') else {
            return Err(format!("params-schema $ref {r:?} leaves the schema (only #/... is allowed)"));
        };
        if let Some(&c) = self.memo.get(pointer) {
            return Ok(c);
        }
        if self.open.contains(pointer) {
            return Err(format!(
                "params-schema $ref {r:?} refers back into itself: recursive schemas are not accepted (their validation grows with the params)"
            ));
        }
        let root = self.root;
        let target = root.pointer(pointer).ok_or_else(|| format!("params-schema $ref {r:?} points at nothing"))?;
        self.open.insert(pointer.to_string());
        let c = self.size(target, false, depth + 1);
        self.open.remove(pointer);
        let c = c?;
        self.memo.insert(pointer.to_string(), c);
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One schema alone, with the budget of one.
    fn validator(text: &str) -> Result<(Value, ParamsValidator), String> {
        validator_within(text, &mut { MAX_COMPILED_BYTES })
    }
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
    fn a_check_whose_work_would_pass_its_bound_is_refused_before_it_starts() {
        // Within every bound on the schema: two thousand failing branches for each item.
        let branches: Vec<Value> = (0..2_000).map(|i| json!({"const": format!("no{i}")})).collect();
        let check = build(json!({"properties": {"p": {"items": {"anyOf": branches}}}})).unwrap();
        assert!(check(json!({"p": ["no7"]})).is_ok());
        let big = json!({"p": vec![0; 5_000]});
        let refused = check(big).unwrap_err();
        assert!(refused.contains("5002 units") && refused.contains("at most 4000000"), "{refused}");
        // As many patterns, each reading one long string.
        let patterns: Vec<Value> = (0..2_000).map(|i| json!({"pattern": format!("^no{i}$")})).collect();
        let check = build(json!({"properties": {"s": {"anyOf": patterns}}})).unwrap();
        assert!(check(json!({"s": "no7"})).is_ok());
        let refused = check(json!({"s": "a".repeat(256 * 1024)})).unwrap_err();
        assert!(refused.contains("4098 units"), "{refused}");
        // A small schema still checks large params.
        let check = build(json!({"properties": {"p": {"items": {"type": "integer"}}}})).unwrap();
        assert!(check(json!({"p": vec![0; 100_000]})).is_ok());
        // A plain schema of thirty fields, descriptions and all, takes params near the size limit.
        let fields: serde_json::Map<String, Value> =
            (0..30).map(|i| (format!("f{i}"), json!({"type": "string", "description": "one of the fields"}))).collect();
        let check = build(json!({"type": "object", "properties": fields, "required": ["f0"]})).unwrap();
        assert!(check(json!({"f0": "x".repeat(900_000)})).is_ok());
        assert!(check(json!({"f0": "x", "list": vec![0; 50_000]})).is_ok());
        // Enum values and boolean subschemas are checked against every value: counted.
        let values: Vec<u32> = (0..4_000).collect();
        let check = build(json!({"properties": {"p": {"items": {"enum": values}}}})).unwrap();
        assert!(check(json!({"p": vec![7; 2_000]})).unwrap_err().contains("too large"));
        let falses: Vec<Value> = (0..4_000).map(|_| json!(false)).chain([json!(true)]).collect();
        let check = build(json!({"properties": {"p": {"items": {"anyOf": falses}}}})).unwrap();
        assert!(check(json!({"p": vec![7; 2_000]})).unwrap_err().contains("too large"));
    }

    #[test]
    fn local_refs_are_followed_and_recursive_ones_refused() {
        let check = build(json!({
            "$id": "https://example.com/params",
            "$defs": {"v": {"type": "integer"}, "pair": {"type": "object", "properties": {"a": {"$ref": "#/$defs/v"}, "b": {"$ref": "#/$defs/v"}}}},
            "$ref": "#/$defs/pair"
        }))
        .unwrap();
        assert!(check(json!({"a": 1, "b": 2})).is_ok());
        assert!(check(json!({"a": 1, "b": "deep"})).unwrap_err().starts_with("/b: "));
        // Two references back into the node side by side: validating 120 levels of params
        // would take 2^120 steps.
        let doubling = json!({
            "properties": {"x": {"$ref": "#/$defs/n"}},
            "$defs": {"n": {"allOf": [{"items": {"$ref": "#/$defs/n"}}, {"items": {"$ref": "#/$defs/n"}}]}}
        });
        assert!(refused(doubling).contains("refers back into itself"));
        let list = json!({"$defs": {"node": {"properties": {"next": {"$ref": "#/$defs/node"}}}}, "$ref": "#/$defs/node"});
        assert!(refused(list).contains("recursive schemas are not accepted"));
    }

    #[test]
    fn what_a_schema_compiles_to_is_bounded_per_schema_and_per_component() {
        // A long key above many nodes: every node's location repeats it.
        let children: serde_json::Map<String, Value> = (0..1_600).map(|i| (format!("p{i}"), json!({"type": "string"}))).collect();
        let long_key = json!({"properties": {"k".repeat(MAX_KEY_BYTES + 1): {"properties": children.clone()}}});
        assert!(refused(long_key).contains("a key of"));
        let deep_paths = json!({"properties": {"k".repeat(MAX_KEY_BYTES): {"properties": {"k".repeat(MAX_KEY_BYTES): {"properties": {"k".repeat(MAX_KEY_BYTES): {"properties": children}}}}}}});
        assert!(refused(deep_paths).contains("node locations"));
        let modest = json!({"properties": {"a": {"type": "integer"}, "b": {"type": "string"}}}).to_string();
        let mut budget = MAX_COMPONENT_SCHEMA_BYTES;
        let mut accepted = 0;
        while validator_within(&modest, &mut budget).is_ok() {
            accepted += 1;
        }
        assert!(accepted > 1000, "a component's many small schemas fit: {accepted}");
        assert!(validator_within(&modest, &mut budget).err().unwrap().contains("per component"));
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
