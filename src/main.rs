//! `fathom`: the command line. It wires the crates together and holds no
//! business logic: parsing arguments and config, drawing progress, printing
//! results.

mod cli;
mod config;
mod progress;
mod schedule;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // Callers' queries are bounded before they are planned (see
    // `fathom_warehouse::query::guard`); the larger worker stack is a
    // margin on top, for the engine's recursion over bounded plans.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(8 << 20)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
