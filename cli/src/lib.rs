//! The `fluid` command line: the host's commands (`fluid_host::cli`) and `bench`
//! (`fluid_bench`), which measures the host from outside through its public API and so
//! lives in a crate of its own. A binary with native tasks of its own calls [`main`] with
//! them.

#![deny(missing_docs)]

use clap::{Parser, Subcommand};
use fluid_host::Task;
use fluid_host::cli::{self as host_cli, Global};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "fluid", version, about = "A task scheduler whose plugins are sandboxed WebAssembly components")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    #[command(flatten)]
    Host(host_cli::Command),
    /// Measure this machine: throughput, latency, event delivery, start-up, history reads.
    Bench(fluid_bench::BenchArgs),
}

/// Parses the command line and runs it, with the given native tasks beside the examples.
pub fn main(tasks: Vec<Task>) -> ExitCode {
    let Cli { global, command } = Cli::parse();
    match command {
        Command::Host(command) => {
            let quiet = host_cli::is_quiet(&command);
            let work = host_cli::run(host_cli::Cli { global: global.clone(), command }, tasks);
            host_cli::execute(&global, quiet, work)
        }
        Command::Bench(args) => host_cli::execute(&global, false, async move {
            fluid_bench::run(args).await?;
            Ok(ExitCode::SUCCESS)
        }),
    }
}
