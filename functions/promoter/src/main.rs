//! `promoter`: the command-line front of the image promoter.
//!
//! A thin adapter: it parses arguments with clap, calls the library, prints, and maps outcomes
//! to exit codes (0 success, 1 invalid manifests or refused plan, 2 usage errors).

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            commands::usage_error()
        }
    }
}
