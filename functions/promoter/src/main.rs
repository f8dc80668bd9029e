//! `promoter`: the command-line front of the image promoter.
//!
//! A thin adapter: it parses arguments with clap, calls the library, prints, and maps outcomes
//! to exit codes (0 success, 1 invalid manifests or refused plan, 2 usage errors).

mod chain;
mod cli;
mod commands;
mod config;
mod exit;
mod functions;
mod manifest_add;
mod promote;
mod pull_request;
mod reconcile;
mod report;
mod runs;
mod signing;
mod snapshot;
mod terminal;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_tracing();
    match commands::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", terminal::clean(&format!("{error:#}")));
            exit::usage_error()
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings), as text on a terminal.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
