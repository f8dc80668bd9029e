#!/usr/bin/env bash
# Sets up what the tests need on a fresh Debian machine with Rust, then runs every test.
# This is the README's test command; .ci/run calls it after the format and lint checks.
#
# The tests of this stage (manifests and planning) need no server and no system package beyond
# Rust. Later stages add the registries, object stores and emulators they need here.
set -euo pipefail
cd "$(dirname "$0")/../.."

# A target folder outside the checkout survives clean clones (CI clones afresh each run).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/promoter-target}"

cargo test --workspace --locked
