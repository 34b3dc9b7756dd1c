//! The `fluid` binary: the host with the built-in example tasks.

fn main() -> std::process::ExitCode {
    fluid_host::cli::main(Vec::new())
}
