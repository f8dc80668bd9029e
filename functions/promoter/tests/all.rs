//! The `promoter` command's tests, linked as one binary: each file is a module.
//!
//! Test names are `FILE::TEST`, e.g. `cargo test -p promoter-cli --test all docs_commands::`.

mod cli;
mod cli_audit;
mod cli_google;
mod cli_incremental;
mod cli_invoke;
mod cli_manifest;
mod cli_promote;
mod cli_reconcile;
mod cli_state;
mod docs_commands;
