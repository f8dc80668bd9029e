#!/usr/bin/env bash
# What a hostile or dead staging registry costs `promoter promote`: peak memory against a
# 200 MB manifest answer, and the time until a registry that never answers (or trickles a
# byte a second) is reported. The registry is bench/hostile-registry.py on loopback; the
# destination is a second one that answers 404 to everything (nothing promoted yet).
#
# A unit that timed out is handled once by the command's chain (other retryable failures up
# to 5 times, as the deployed SQS queues' maxReceiveCount); before 2026-12-06 a hung registry
# cost five retry budgets (453 s).
#
#   bash bench/hostile-registry.sh            # the defaults (60 s request deadline)
#   TIMEOUT=10 bash bench/hostile-registry.sh # with --request-timeout 10
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/promoter-target}"
cargo build --release --quiet -p promoter-cli --bin promoter
promoter="$CARGO_TARGET_DIR/release/promoter"
timeout_flag=()
if [[ -n ${TIMEOUT:-} ]]; then timeout_flag=(--request-timeout "$TIMEOUT"); fi

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
digest=sha256:1111111111111111111111111111111111111111111111111111111111111111

measure() { # MODE
    local mode=$1 staging production
    staging=$(port)
    production=$(port)
    python3 bench/hostile-registry.py "$staging" "$mode" &
    pids+=($!)
    python3 bench/hostile-registry.py "$production" huge &
    pids+=($!)
    sleep 0.5
    cat >"$work/m.yaml" <<EOF
registries:
- name: 127.0.0.1:$staging/staging
  src: true
- name: 127.0.0.1:$production/prod
images:
- name: app
  dmap:
    "$digest": ["v1"]
EOF
    local started ended status
    started=$(date +%s.%N)
    set +e
    /usr/bin/time -f '%M' -o "$work/rss" "$promoter" promote "$work/m.yaml" --no-state \
        "${timeout_flag[@]}" >"$work/out" 2>"$work/err"
    status=$?
    set -e
    ended=$(date +%s.%N)
    printf '%-8s exit %s  %6.1f s  peak RSS %6.1f MiB  %s\n' "$mode" "$status" \
        "$(echo "$ended - $started" | bc)" "$(echo "$(tail -1 "$work/rss") / 1024" | bc -l)" \
        "$(grep -m1 -o 'FAILED.*' "$work/out" | cut -c1-150)"
}

echo "promoter promote against a hostile staging registry (request deadline ${TIMEOUT:-60} s):"
measure huge
measure hang
measure trickle
