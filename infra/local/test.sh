#!/usr/bin/env bash
# Sets up what the tests need on a fresh Debian machine with Rust, then runs every test.
# This is the README's test command; .ci/run calls it after the format and lint checks.
#
# The integration tests start their own servers on loopback ports they pick: CNCF distribution
# registries (docker-registry), a token issuer, and a moto server (ECR); they check results
# with skopeo. This script installs those (apt packages, a Python venv).
set -euo pipefail
cd "$(dirname "$0")/../.."

# A target folder outside the checkout survives clean clones (CI clones afresh each run).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/promoter-target}"

bash infra/local/stack.sh install

# Python emulators in a venv kept outside the checkout: moto (ECR's GetAuthorizationToken).
venv=/var/tmp/promoter-venv
if [[ ! -x $venv/bin/moto_server ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'moto[server]'
fi
export MOTO_SERVER="$venv/bin/moto_server"

cargo test --workspace --locked
