//! The workspace integration tests, linked as one binary: each file is a module.
//!
//! Test names are `FILE::TEST`, e.g. `cargo test -p promoter-tests --test all chain::`.

mod architecture;
mod audit;
mod bundles;
mod chain;
mod chaos;
mod cloud_auth;
mod conformance;
mod functions;
mod harness_selftest;
mod hostile_registry;
mod infra_template;
mod invalid_manifests;
mod manifest_source;
mod manifest_tree;
mod notify;
mod policy;
mod promote;
mod queue;
mod registry_client;
mod sign;
mod snapshot;
mod sqs_support;
mod state_backends;
mod valid_manifests;
