//! Builds the bundled components in plugins/ for wasm32-wasip2, so that the README's two
//! commands need no extra step. The guests get their own target folder (sharing the
//! host's deadlocks on its lock) and a clean environment (the host build's CARGO_* and
//! RUSTFLAGS variables must not leak into a build for another target).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    for p in ["guest-sdk/wit", "guest-sdk/src", "guest-sdk/Cargo.toml", "history", "plugins"] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // OUT_DIR = <target>/<profile>/build/<pkg>-<hash>/out; guests go to <target>/guests.
    let target_root = out_dir.ancestors().nth(4).map(Path::to_path_buf).unwrap_or_else(|| out_dir.join("guests"));
    let guest_target = target_root.join("guests");

    let mut cmd = Command::new("cargo");
    cmd.env_clear();
    for key in ["PATH", "HOME", "RUSTUP_HOME", "CARGO_HOME", "RUSTUP_AUTO_INSTALL", "RUSTUP_TOOLCHAIN_SOURCE"] {
        if let Ok(v) = std::env::var(key) {
            cmd.env(key, v);
        }
    }
    cmd.current_dir(root.join("plugins")).args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"]).arg(&guest_target);
    let status = cmd.status().expect("cannot run cargo to build the bundled plugins");
    if !status.success() {
        panic!(
            "building the bundled plugins (plugins/) for wasm32-wasip2 failed. \
             Is the target installed? Run: rustup target add wasm32-wasip2"
        );
    }
    let wasm_dir = guest_target.join("wasm32-wasip2").join("release");
    for (file, name) in [("fluid_db_plugin.wasm", "db.wasm"), ("fluid_stats_plugin.wasm", "stats.wasm")] {
        std::fs::copy(wasm_dir.join(file), out_dir.join(name)).unwrap_or_else(|e| panic!("copy {file}: {e}"));
    }
    println!("cargo:rustc-env=FLUID_GUEST_WASM_DIR={}", wasm_dir.display());
}
