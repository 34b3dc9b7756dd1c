//! A real `fluid` binary for process-level tests (SIGKILL, restart): the example tasks
//! plus a few tasks whose behaviour the tests control.

fn main() -> std::process::ExitCode {
    fluid_cli::main(fluid_tests::test_tasks())
}

/// The `fluid` binary's allocator, so these processes hold memory as it does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
