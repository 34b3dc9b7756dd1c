//! The `fluid` binary: the host with the built-in example tasks, and `fluid bench`.

fn main() -> std::process::ExitCode {
    fluid_cli::main(Vec::new())
}
