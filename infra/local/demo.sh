#!/usr/bin/env bash
# The quick start: builds the promoter and runs it on the example manifests in examples/.
#
# 1. validates every example manifest (plain file and thin-manifest tree) together;
# 2. plans the thin tree against its base (the manifests before the change), as a presubmit
#    would: only what the change adds, as text and as the Markdown a bot posts on the PR;
# 3. shows that a change removing promoted images is refused.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/promoter-target}"

cargo build --locked --quiet -p promoter-cli
promoter="$CARGO_TARGET_DIR/debug/promoter"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

cd examples
step promoter validate promoter-manifest.yaml thin
"$promoter" validate promoter-manifest.yaml thin

step promoter plan thin --base thin-base
"$promoter" plan thin --base thin-base

step promoter plan thin --base thin-base --output markdown
"$promoter" plan thin --base thin-base --output markdown

step promoter plan thin-removal --base thin-base "   # refused: exit 1"
if "$promoter" plan thin-removal --base thin-base; then
    echo "expected the removal to be refused" >&2
    exit 1
fi
printf '\nThe demo ran: manifests validated, plan computed, removal refused.\n'
