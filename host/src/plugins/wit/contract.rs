//! The contract with components: which versions of the `fluid:scheduler` WIT package this
//! host speaks, their text, and the check that a component was built against one of them.
//!
//! The newest version is `guest-sdk/wit/` (what `bindings` is generated from). Each older
//! released version is frozen, as it was released, in `guest-sdk/wit-released/VERSION/`.
//! Versions follow semver with WASI's reading for `0.x`: `0.1.0` → `0.1.1` only adds
//! (marked `@since`), so the newest bindings serve every older version of the same track
//! (wasmtime matches `@0.1.0` imports and exports to `@0.1.1` definitions), while a
//! component built against a version this host does not know is refused up front, with the
//! versions it does know, rather than failing on whichever import happens not to fit.

/// The WIT package every world and interface belongs to.
pub const PACKAGE: &str = "fluid:scheduler";

/// The newest version, the one `bindings` is generated from and new components build
/// against.
pub const NEWEST: &str = "0.1.1";

/// The world every plugin implements, in the newest contract version.
pub const WORLD: &str = "fluid:scheduler/plugin@0.1.1";

/// The world every task component implements, in the newest contract version.
pub const TASK_WORLD: &str = "fluid:scheduler/task@0.1.1";

/// One released version of the contract and its files.
pub struct Version {
    /// Its number, `0.1.1`.
    pub version: &'static str,
    /// Its WIT files: name and text.
    pub files: &'static [(&'static str, &'static str)],
}

macro_rules! wit_files {
    ($dir:literal $(, $extra:literal)*) => {
        &[
            ("types.wit", include_str!(concat!("../../../../guest-sdk/", $dir, "/types.wit"))),
            ("host.wit", include_str!(concat!("../../../../guest-sdk/", $dir, "/host.wit"))),
            ("storage.wit", include_str!(concat!("../../../../guest-sdk/", $dir, "/storage.wit"))),
            ("task-manager-plugin.wit", include_str!(concat!("../../../../guest-sdk/", $dir, "/task-manager-plugin.wit"))),
            ("task.wit", include_str!(concat!("../../../../guest-sdk/", $dir, "/task.wit"))),
            ("worlds.wit", include_str!(concat!("../../../../guest-sdk/", $dir, "/worlds.wit"))),
            $(($extra, include_str!(concat!("../../../../guest-sdk/", $dir, "/", $extra))),)*
        ]
    };
}

/// Every version this host accepts components of, oldest first; the last is `NEWEST`.
pub const VERSIONS: [Version; 2] = [
    Version { version: "0.1.0", files: wit_files!("wit-released/0.1.0") },
    Version { version: NEWEST, files: wit_files!("wit", "route-roles.wit") },
];

/// The WIT files of the newest version.
pub fn newest() -> &'static Version {
    &VERSIONS[VERSIONS.len() - 1]
}

/// A released version by its number.
pub fn version(v: &str) -> Option<&'static Version> {
    VERSIONS.iter().find(|x| x.version == v)
}

/// `0.1.0, 0.1.1`: for messages.
pub fn spoken() -> String {
    VERSIONS.iter().map(|v| v.version).collect::<Vec<_>>().join(", ")
}

/// The contract version a component was built against, from the names of its imports and
/// exports (`fluid:scheduler/storage@0.1.1`): the newest one it names. Every name in the
/// package must carry a version this host speaks; otherwise the message says which one it
/// was built against and which this host speaks.
pub fn built_against<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<&'static str, String> {
    let mut newest: Option<usize> = None;
    for name in names {
        let Some(rest) = name.strip_prefix(PACKAGE).and_then(|r| r.strip_prefix('/')) else { continue };
        let version = rest.split_once('@').map(|(_, v)| v).unwrap_or("");
        let Some(i) = VERSIONS.iter().position(|v| v.version == version) else {
            let built = if version.is_empty() { "an unversioned".to_string() } else { format!("{PACKAGE}@{version}") };
            return Err(format!(
                "built against {built} (it uses {name}); this host speaks {PACKAGE} {}{}",
                spoken(),
                if is_newer(version) { ": a newer contract needs a newer fluid" } else { "" }
            ));
        };
        newest = newest.max(Some(i));
    }
    // A component that names nothing of the package is told so by the world check.
    Ok(VERSIONS[newest.unwrap_or(VERSIONS.len() - 1)].version)
}

/// Whether `v` is a valid version above the newest this host speaks.
fn is_newer(v: &str) -> bool {
    let parse = |s: &str| -> Option<(u64, u64, u64)> {
        let mut it = s.split('.').map(|p| p.parse::<u64>().ok());
        Some((it.next()??, it.next()??, it.next()??))
    };
    matches!((parse(v), parse(NEWEST)), (Some(a), Some(b)) if a > b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of the contract is in `VERSIONS`: a file added to `wit/` is written out
    /// and frozen too.
    #[test]
    fn every_wit_file_is_listed() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
        for (v, dir) in [(NEWEST, root.join("wit")), ("0.1.0", root.join("wit-released/0.1.0"))] {
            let mut on_disk: Vec<String> =
                std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            on_disk.sort();
            let mut listed: Vec<String> = version(v).unwrap().files.iter().map(|(n, _)| n.to_string()).collect();
            listed.sort();
            assert_eq!(listed, on_disk, "{v}");
        }
        let mut released: Vec<String> = std::fs::read_dir(root.join("wit-released"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_type().unwrap().is_dir())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        released.push(NEWEST.into());
        released.sort();
        assert_eq!(released, VERSIONS.iter().map(|v| v.version).collect::<Vec<_>>());
    }

    /// The text of a version without comments, blank lines, `@since` gates and its
    /// package line: what a component is built against.
    fn signature_lines(files: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut out = vec![];
        for (file, text) in files {
            for line in text.lines().map(str::trim) {
                if line.is_empty() || line.starts_with("//") || line.starts_with("@since") || line.starts_with("package ") {
                    continue;
                }
                out.push((file.to_string(), line.to_string()));
            }
        }
        out
    }

    /// What the policy promises: a released version is never changed, only added to. Each
    /// older version's signatures appear, in order, in every later one; every item a later
    /// version adds carries an `@since` gate newer than the version it was added after.
    #[test]
    fn released_versions_are_frozen_and_later_ones_only_add_gated_items() {
        for pair in VERSIONS.windows(2) {
            let (old, new) = (&pair[0], &pair[1]);
            let (old_lines, new_lines) = (signature_lines(old.files), signature_lines(new.files));
            let mut it = new_lines.iter();
            for line in &old_lines {
                assert!(it.any(|l| l == line), "{} changed or dropped in {}: {line:?}", old.version, new.version);
            }
            // Items the newer version adds: each one's gate names a version after `old`.
            let resolve = |files: &[(&str, &str)]| {
                let mut map = wit_parser::SourceMap::new();
                for (f, t) in files {
                    map.push(std::path::Path::new(f), *t);
                }
                let mut r = wit_parser::Resolve::default();
                let id = r.push_group(map.parse().map_err(|(_, e)| e.to_string()).unwrap()).unwrap();
                (r, id)
            };
            let (old_r, old_id) = resolve(old.files);
            let (new_r, new_id) = resolve(new.files);
            let old_v = semver(old.version);
            let gated_after_old = |s: &wit_parser::Stability| match s {
                wit_parser::Stability::Stable { since, .. } => (since.major, since.minor, since.patch) > old_v,
                _ => false,
            };
            let mut added = 0;
            for (name, iface) in &new_r.packages[new_id].interfaces {
                let new_iface = &new_r.interfaces[*iface];
                let Some(old_iface) = old_r.packages[old_id].interfaces.get(name).map(|i| &old_r.interfaces[*i]) else {
                    assert!(gated_after_old(&new_iface.stability), "interface {name} added without a newer @since");
                    continue;
                };
                for (f, func) in &new_iface.functions {
                    if !old_iface.functions.contains_key(f) {
                        assert!(gated_after_old(&func.stability), "{name}.{f} added after {} without a newer @since", old.version);
                        added += 1;
                    }
                }
                for (t, ty) in &new_iface.types {
                    if !old_iface.types.contains_key(t) {
                        assert!(gated_after_old(&new_r.types[*ty].stability), "{name}.{t} added without a newer @since");
                        added += 1;
                    }
                }
            }
            assert!(
                added > 0 || new_r.packages[new_id].interfaces.len() > old_r.packages[old_id].interfaces.len(),
                "{} adds nothing",
                new.version
            );
        }
    }

    fn semver(v: &str) -> (u64, u64, u64) {
        let p: Vec<u64> = v.split('.').map(|x| x.parse().unwrap()).collect();
        (p[0], p[1], p[2])
    }

    #[test]
    fn the_world_names_are_of_the_newest_version() {
        assert_eq!(WORLD, format!("{PACKAGE}/plugin@{NEWEST}"));
        assert_eq!(TASK_WORLD, format!("{PACKAGE}/task@{NEWEST}"));
    }

    #[test]
    fn a_component_is_built_against_the_newest_version_it_names() {
        let names = ["wasi:io/streams@0.2.0", "fluid:scheduler/storage@0.1.1", "fluid:scheduler/host@0.1.0"];
        assert_eq!(built_against(names), Ok("0.1.1"));
        assert_eq!(built_against(["fluid:scheduler/task-component@0.1.0"]), Ok("0.1.0"));
    }

    #[test]
    fn versions_this_host_does_not_speak_are_refused_with_the_ones_it_does() {
        for (name, newer) in [
            ("fluid:scheduler/host@0.1.2", true),
            ("fluid:scheduler/host@0.2.0", true),
            ("fluid:scheduler/host@1.0.0", true),
            ("fluid:scheduler/host@0.0.9", false),
            ("fluid:scheduler/host@0.1.1-rc.1", false),
            ("fluid:scheduler/host", false),
        ] {
            let e = built_against([name]).unwrap_err();
            assert!(e.contains("this host speaks fluid:scheduler 0.1.0, 0.1.1"), "{e}");
            assert_eq!(e.contains("needs a newer fluid"), newer, "{e}");
        }
    }
}
