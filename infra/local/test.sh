#!/usr/bin/env bash
# Sets up what the tests need on a fresh Debian machine with Rust, then runs every test.
# This is the README's test command; .ci/run calls it after the format and lint checks.
#
# The integration tests start their own CNCF distribution registries (docker-registry), token
# issuer and skopeo checks, on loopback ports they pick; this script installs those packages.
set -euo pipefail
cd "$(dirname "$0")/../.."

# A target folder outside the checkout survives clean clones (CI clones afresh each run).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/promoter-target}"

bash infra/local/stack.sh install
cargo test --workspace --locked
