//! The `fluid` binary: the host with the built-in example tasks, and `fluid bench`.

fn main() -> std::process::ExitCode {
    fluid_cli::main(Vec::new())
}

/// mimalloc, not the system's allocator: a run allocates and frees many small values on
/// every thread (rows, snapshots, events), and glibc's malloc and free were among the
/// largest entries of the host's profile. Measured in docs/performance.md, with what it
/// costs in resident memory.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
