//! A component toolchain for languages that have none of their own (C, and any language
//! whose compiler makes a `wasm32-wasi` core module): bindings generated from the contract
//! this binary speaks, and the step that wraps a core module into a component. So a C
//! author needs a C compiler with wasi-libc and `fluid`, nothing else.
//!
//! `fluid new --lang c` and `fluid componentize` are its callers; what is public is
//! [`World`], the argument those commands take.

use crate::plugins::contract;
use anyhow::{Context, anyhow};
use wit_parser::{Resolve, WorldId};

/// The two worlds a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum World {
    /// `plugin`: exports `task-manager-plugin`.
    Plugin,
    /// `task`: exports `task-component`.
    Task,
}

impl World {
    /// The world's name in the WIT contract (`plugin` or `task`).
    pub fn name(self) -> &'static str {
        match self {
            World::Plugin => "plugin",
            World::Task => "task",
        }
    }
}

/// The newest contract, resolved, and the world asked for.
fn resolve(world: World) -> anyhow::Result<(Resolve, WorldId)> {
    let mut map = wit_parser::SourceMap::new();
    for (file, text) in contract::newest().files {
        map.push(std::path::Path::new(file), *text);
    }
    let mut resolve = Resolve::default();
    let group = map.parse().map_err(|(_, e)| anyhow!("{e}"))?;
    let package = resolve.push_group(group)?;
    let world = resolve.select_world(&[package], Some(world.name()))?;
    Ok((resolve, world))
}

/// C bindings of `world` (wit-bindgen's C generator): `(file name, text)` pairs, a `.h`
/// and a `.c`. The component type is not compiled in (no object file): `componentize`
/// embeds it, so the bindings are plain C any compiler takes.
pub(crate) fn c_bindings(world: World) -> anyhow::Result<Vec<(String, String)>> {
    let (mut resolve, id) = resolve(world)?;
    let mut files = wit_bindgen_core::Files::default();
    let opts = wit_bindgen_c::Opts { no_object_file: true, ..Default::default() };
    opts.build().generate(&mut resolve, id, &mut files)?;
    files
        .iter()
        .map(|(name, bytes)| {
            let text = String::from_utf8(bytes.to_vec()).context("generated C is text")?;
            Ok((name.to_string(), without_object_file_link(text)))
        })
        .collect()
}

/// The generator still makes the `.c` reference a symbol of the object file it was told
/// not to write, which fails to link; that function only forces the object in, so it goes.
fn without_object_file_link(text: String) -> String {
    let Some(start) = text.find("// Ensure that the *_component_type.o object is linked in") else { return text };
    let Some(end) = text[start..].find("\n}\n").map(|i| start + i + 3) else { return text };
    format!("{}{}", &text[..start], &text[end..])
}

/// Wraps a `wasm32-wasi` (preview 1) core module that exports `world`'s functions, as
/// `c_bindings` names them, into a component of the newest contract: the world's type is
/// embedded, and WASI preview 1 calls are adapted to preview 2 with wasmtime's reactor
/// adapter. The result is validated.
pub(crate) fn componentize(core: &[u8], world: World) -> anyhow::Result<Vec<u8>> {
    if core.get(..8) != Some(b"\0asm\x01\0\0\0") {
        return Err(anyhow!("not a core WebAssembly module (it must be what a wasm32-wasi compiler writes)"));
    }
    let (resolve, id) = resolve(world)?;
    let mut module = core.to_vec();
    wit_component::embed_component_metadata(&mut module, &resolve, id, wit_component::StringEncoding::UTF8)?;
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)?
        .adapter("wasi_snapshot_preview1", wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER)?
        .encode()
        .with_context(|| format!("the module does not fit the {} world of {}@{}", world.name(), contract::PACKAGE, contract::NEWEST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_bindings_declare_what_a_plugin_exports_and_imports() {
        let files = c_bindings(World::Plugin).unwrap();
        let header = &files.iter().find(|(n, _)| n.ends_with(".h")).unwrap().1;
        for f in
            ["exports_fluid_scheduler_task_manager_plugin_register", "fluid_scheduler_storage_upsert", "fluid_scheduler_host_get_plugin"]
        {
            assert!(header.contains(f), "{f}");
        }
        assert!(files.iter().all(|(n, t)| !n.ends_with(".o") && !t.contains("__component_type_object")), "no object file");
    }

    #[test]
    fn componentize_refuses_what_is_not_a_core_module() {
        let e = componentize(b"\0asm\x0d\0\x01\0", World::Plugin).unwrap_err().to_string();
        assert!(e.contains("not a core WebAssembly module"), "{e}");
        // An empty module exports nothing the world asks for.
        let e = format!("{:#}", componentize(b"\0asm\x01\0\0\0", World::Task).unwrap_err());
        assert!(e.contains("does not fit the task world"), "{e}");
    }
}
