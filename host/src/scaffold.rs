//! `fluid new`: a standalone project for a plugin or a task component, anywhere on disk.
//!
//! The binary carries what a project needs to build without this repository: the Rust
//! guest SDK's sources (the history types included) with the WIT contract it generates
//! its bindings from, written under the project's `vendor/` and used as a path
//! dependency. So a project builds offline from crates.io's usual crates alone, and
//! against exactly the contract of the `fluid` that made it.

use std::path::{Path, PathBuf};

/// What `fluid new` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// A plugin: subscriptions, storage, routes, calls.
    Plugin,
    /// A task component: tasks the host schedules and runs.
    Task,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Plugin => "plugin",
            Kind::Task => "task",
        }
    }
}

/// The languages `fluid new` writes projects in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Cargo, the guest SDK (vendored); `cargo build --release`.
    Rust,
    /// componentize-py; `./build.sh`.
    Python,
    /// componentize-js; `./build.sh` (`npm run build`).
    Js,
}

/// The guest SDK (the history types included), as the project's `vendor/` holds it.
pub const VENDORED: &[(&str, &str)] = &[
    ("guest-sdk/Cargo.toml", include_str!("../../guest-sdk/Cargo.toml")),
    ("guest-sdk/src/lib.rs", include_str!("../../guest-sdk/src/lib.rs")),
    ("guest-sdk/src/history.rs", include_str!("../../guest-sdk/src/history.rs")),
    ("guest-sdk/src/log.rs", include_str!("../../guest-sdk/src/log.rs")),
    ("guest-sdk/src/task.rs", include_str!("../../guest-sdk/src/task.rs")),
    ("guest-sdk/src/history_types.rs", include_str!("../../guest-sdk/src/history_types.rs")),
];

const CARGO_TOML: &str = include_str!("../templates/rust/Cargo.toml.tmpl");
const CARGO_CONFIG: &str = include_str!("../templates/rust/cargo/config.toml");
const PLUGIN_RS: &str = include_str!("../templates/rust/plugin.rs.tmpl");
const TASK_RS: &str = include_str!("../templates/rust/task.rs.tmpl");
const README: &str = include_str!("../templates/rust/README.md.tmpl");

mod python {
    pub const PLUGIN: &str = include_str!("../templates/python/plugin.py");
    pub const TASK: &str = include_str!("../templates/python/task.py");
    pub const BUILD: &str = include_str!("../templates/python/build.sh");
    pub const README: &str = include_str!("../templates/python/README.md");
}

mod js {
    pub const PLUGIN: &str = include_str!("../templates/js/plugin.js");
    pub const TASK: &str = include_str!("../templates/js/task.js");
    pub const BUILD: &str = include_str!("../templates/js/build.sh");
    pub const README: &str = include_str!("../templates/js/README.md");
    pub const PACKAGE: &str = include_str!("../templates/js/package.json");
    pub const COMPONENTIZE: &str = include_str!("../templates/js/componentize.mjs");
}

/// Writes the project `name` of `kind` in `lang` to `dir/name`; returns its folder. Refused
/// when the name is not a valid plugin name (the file name is the name) or the folder
/// exists.
pub fn new_project(kind: Kind, name: &str, lang: Lang, dir: &Path) -> anyhow::Result<PathBuf> {
    // The host's own rule for a plugin name (the file name).
    anyhow::ensure!(
        crate::plugins::storage::check_ident("plugin name", name, 24).is_ok(),
        "{name:?} is not a valid name: [a-z][a-z0-9_]*, at most 24 characters (the .wasm file is named after it), e.g. {}",
        crate::plugins::loader::valid_name(name)
    );
    let root = dir.join(name);
    anyhow::ensure!(!root.exists(), "{} exists already", root.display());
    let fill = |t: &str| {
        t.replace("{{name}}", name).replace("{{type}}", &type_name(name)).replace("{{kind}}", kind.as_str()).replace(
            "{{world}}",
            match kind {
                Kind::Plugin => "plugin",
                Kind::Task => "task",
            },
        )
    };
    let plugin = kind == Kind::Plugin;
    let (mut files, wit_dir): (Vec<(&str, String)>, &str) = match lang {
        Lang::Rust => (
            vec![
                ("Cargo.toml", fill(CARGO_TOML)),
                (".cargo/config.toml", CARGO_CONFIG.to_string()),
                ("src/lib.rs", fill(if plugin { PLUGIN_RS } else { TASK_RS })),
                ("README.md", fill(README)),
                (".gitignore", "/target\n".to_string()),
            ],
            "vendor/guest-sdk/wit",
        ),
        Lang::Python => (
            vec![
                ("app.py", fill(if plugin { python::PLUGIN } else { python::TASK })),
                ("build.sh", fill(python::BUILD)),
                ("README.md", fill(python::README)),
                (".gitignore", "*.wasm\n__pycache__/\n".to_string()),
            ],
            "wit",
        ),
        Lang::Js => (
            vec![
                ("app.js", fill(if plugin { js::PLUGIN } else { js::TASK })),
                ("package.json", fill(js::PACKAGE)),
                ("componentize.mjs", js::COMPONENTIZE.to_string()),
                ("build.sh", fill(js::BUILD)),
                ("README.md", fill(js::README)),
                (".gitignore", "*.wasm\nnode_modules/\n".to_string()),
            ],
            "wit",
        ),
    };
    let mut paths: Vec<(PathBuf, String)> = files.drain(..).map(|(p, t)| (PathBuf::from(p), t)).collect();
    if lang == Lang::Rust {
        for (path, text) in VENDORED {
            paths.push((Path::new("vendor").join(path), text.to_string()));
        }
    }
    for (file, text) in crate::plugins::bindings::WIT_FILES {
        paths.push((Path::new(wit_dir).join(file), text.to_string()));
    }
    for (path, text) in paths {
        let script = path.extension().is_some_and(|e| e == "sh");
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        if script {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(root)
}

/// The command that builds a project written by [`new_project`], run in its folder.
pub fn build_command(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "cargo build --release",
        Lang::Python | Lang::Js => "./build.sh",
    }
}

/// `my_plugin` -> `MyPlugin`.
fn type_name(name: &str) -> String {
    name.split('_').filter(|p| !p.is_empty()).map(|p| p[..1].to_ascii_uppercase() + &p[1..]).collect::<String>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every source file of the SDK is carried: a file added there is written into new
    /// projects too.
    #[test]
    fn the_vendored_sdk_is_whole() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for dir in ["guest-sdk/src"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let rel = format!("{dir}/{}", entry.unwrap().file_name().to_string_lossy());
                assert!(VENDORED.iter().any(|(p, _)| *p == rel), "{rel} is not in VENDORED");
            }
        }
    }

    #[test]
    fn names_are_checked_and_types_derived() {
        let dir = std::env::temp_dir().join(format!("fluid-new-{}", uuid::Uuid::new_v4().simple()));
        let err = new_project(Kind::Plugin, "my-plugin", Lang::Rust, &dir).unwrap_err().to_string();
        assert!(err.contains("e.g. my_plugin"), "{err}");
        assert_eq!(type_name("my_first_plugin"), "MyFirstPlugin");
        let root = new_project(Kind::Task, "jobs", Lang::Rust, &dir).unwrap();
        assert!(root.join("vendor/guest-sdk/wit/worlds.wit").is_file() && root.join("src/lib.rs").is_file());
        assert!(new_project(Kind::Task, "jobs", Lang::Rust, &dir).is_err(), "an existing folder is left alone");
        std::fs::remove_dir_all(&dir).ok();
    }
}
