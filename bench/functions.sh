#!/usr/bin/env bash
# Size and cold start of each Lambda function, as deployed: `cargo lambda build --release`
# (x86_64, cargo-lambda's release settings) of the five function crates, then each bootstrap
# (CARGO_TARGET_DIR/lambda/NAME/bootstrap; its size as built, with the workspace's line-tables
# debug info, and stripped) run against cargo-lambda's Runtime API emulator
# (`cargo lambda watch --only-lambda-apis`, which compiles and starts nothing itself).
#
# Per function and per cold start, a fresh emulator gets the function's event first, then the
# bootstrap is started: `cold` is the time from starting the bootstrap until that event is
# answered (process start, `Deps::from_env`, the first poll of the Runtime API, the handler);
# `warm` is the same event sent again to the running process (median of W); `init` is cold
# minus warm, what a cold start adds. `rss` is the process's peak resident memory after the
# warm invocations (VmHWM). The events need no server: a Function URL push without a signature
# (validate-manifest: 401), a Pub/Sub push with a wrong token (audit: 401), an SQS batch of one
# message for a run state does not hold (copy-digest, sign, notify: consumed, no failure). The
# functions get a full production-like environment (SQS queue URLs, a signing key, a webhook
# sink), so their initialisation is the deployed one; state is a local folder.
#
# Usage: bench/functions.sh [--repeat R] [--warm W] [--no-build] [--keep]
#
#   --repeat R   cold starts per function, each its own emulator and process; the median is
#                printed (default 5)
#   --warm W     warm invocations per cold start; the median is printed (default 5)
#   --no-build   use the bootstraps already built
#   --keep       keep the work directory (logs, events, state)
#
# cargo-lambda is `$CARGO_LAMBDA`, else /var/tmp/promoter-venv/bin/cargo-lambda
# (infra/local/test.sh installs it). Needs curl, python3, openssl and strip (binutils). A benchmark, not a test:
# it prints figures and fails only when a command does. The release build takes a while the
# first time (several minutes on 2 cores); the measurements under a minute.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

repeat=5
warm=5
build=true
keep=false

die() {
  echo "functions: $*" >&2
  exit 2
}

while (($#)); do
  case $1 in
    --repeat) repeat=${2:?}; shift 2 ;;
    --warm) warm=${2:?}; shift 2 ;;
    --no-build) build=false; shift ;;
    --keep) keep=true; shift ;;
    -h | --help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ $repeat =~ ^[1-9][0-9]?$ ]] || die "--repeat must be within 1..99"
[[ $warm =~ ^[1-9][0-9]?$ ]] || die "--warm must be within 1..99"

cargo_lambda=${CARGO_LAMBDA:-/var/tmp/promoter-venv/bin/cargo-lambda}
[[ -x $cargo_lambda ]] || die "cargo-lambda not found at $cargo_lambda: run infra/local/test.sh (it installs it) or set CARGO_LAMBDA"
for tool in curl python3 openssl strip; do
  command -v "$tool" >/dev/null || die "$tool is needed"
done
target=${CARGO_TARGET_DIR:-$root/target}
functions=(validate-manifest copy-digest sign notify audit)

if $build; then
  packages=()
  for f in "${functions[@]}"; do packages+=(-p "$f"); done
  echo "building: cargo lambda build --release ${packages[*]}" >&2
  # cargo-lambda links with Zig; the PyPI package brings it (`python3 -m ziglang`) into its venv.
  (cd "$root" && PATH="$(dirname "$cargo_lambda"):$PATH" \
    "$cargo_lambda" lambda build --release "${packages[@]}" >&2)
fi
for f in "${functions[@]}"; do
  [[ -x $target/lambda/$f/bootstrap ]] || die "$target/lambda/$f/bootstrap missing: build first (without --no-build)"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-functions.XXXXXX")
emulator_pid=
function_pid=
cleanup() {
  for pid in $function_pid $emulator_pid; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if $keep; then echo "work directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A signing key (PKCS#8 P-256, as `promoter keys generate` writes) and the shared environment.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/sign.key" 2>/dev/null
mkdir -p "$work/home" "$work/docker" "$work/state"
common_env=(
  HOME="$work/home"
  DOCKER_CONFIG="$work/docker"
  PATH="$PATH"
  RUST_LOG=info
  AWS_LAMBDA_FUNCTION_VERSION=1
  AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024
  AWS_REGION=us-east-1
  AWS_ACCESS_KEY_ID=bench
  AWS_SECRET_ACCESS_KEY=bench
  AWS_EC2_METADATA_DISABLED=true
  AWS_ENDPOINT_URL_SQS=http://127.0.0.1:9
  PROMOTER_STATE="file://$work/state"
  PROMOTER_COPY_QUEUE_URL=http://127.0.0.1:9/123456789012/copy
  PROMOTER_SIGN_QUEUE_URL=http://127.0.0.1:9/123456789012/sign
  PROMOTER_NOTIFY_QUEUE_URL=http://127.0.0.1:9/123456789012/notify
  PROMOTER_GITHUB_WEBHOOK_SECRET=bench-secret
  PROMOTER_AUDIT_TOKEN=bench-token
  PROMOTER_SIGN_KEY="$work/sign.key"
  PROMOTER_WEBHOOK_URL=http://127.0.0.1:9/hook
)

# One SQS batch of one message whose run state does not hold (permanent: consumed).
sqs_batch() {
  python3 -c '
import json, sys
body = sys.argv[1]
print(json.dumps({"Records": [{
    "messageId": "bench-1", "receiptHandle": "bench-receipt", "body": body,
    "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
    "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:bench",
    "awsRegion": "us-east-1"}]}))' "$1"
}
sqs_batch '{"run":"0000000000000000","unit":"0000000000000000"}' >"$work/copy-digest.json"
cp "$work/copy-digest.json" "$work/sign.json"
sqs_batch '{"notify":"run","run":"0000000000000000"}' >"$work/notify.json"
printf '%s' '{"ref":"refs/heads/main","after":"0000000000000000000000000000000000000001"}' >"$work/validate-manifest.json"
printf '%s' '{"message":{"data":"e30=","messageId":"bench"},"subscription":"bench"}' >"$work/audit.json"

# curl arguments sending function $1's event to the emulator on port $2.
request() {
  local f=$1 port=$2
  case $f in
    validate-manifest)
      echo "-X POST http://127.0.0.1:$port/lambda-url/$f/ -H content-type:application/json -H x-github-event:push --data-binary @$work/$f.json" ;;
    audit)
      echo "-X POST http://127.0.0.1:$port/lambda-url/$f/?token=wrong -H content-type:application/json --data-binary @$work/$f.json" ;;
    *)
      echo "-X POST http://127.0.0.1:$port/2015-03-31/functions/$f/invocations -H content-type:application/json --data-binary @$work/$f.json" ;;
  esac
}

start_emulator() {
  local port=$1
  "$cargo_lambda" lambda watch --only-lambda-apis -A 127.0.0.1 -P "$port" \
    --manifest-path "$root/Cargo.toml" >"$work/emulator-$port.log" 2>&1 &
  emulator_pid=$!
  for _ in $(seq 1 300); do
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/lambda-url/no-such-function/"; then
      return 0
    fi
    sleep 0.05
  done
  cat "$work/emulator-$port.log" >&2
  die "the emulator did not start"
}

stop() {
  local pid=$1
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Microseconds since the epoch, without a fork.
now_us() {
  local t=${EPOCHREALTIME/./}
  echo "$t"
}

median() {
  sort -n | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

# One cold start of function $1: prints "cold_ms warm_ms rss_kib status".
measure() {
  local f=$1 port
  port=$(free_port)
  start_emulator "$port"
  local args
  read -r -a args <<<"$(request "$f" "$port")"
  # The event is queued first: a release build of lambda_runtime must not find the queue empty.
  curl -s -o "$work/$f.cold.out" -w '%{http_code}' --max-time 120 "${args[@]}" >"$work/$f.cold.code" &
  local curl_pid=$!
  sleep 0.5
  local start end
  start=$(now_us)
  env -i "${common_env[@]}" AWS_LAMBDA_FUNCTION_NAME="$f" \
    AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$port/.rt/$f" \
    "$target/lambda/$f/bootstrap" >>"$work/$f.log" 2>&1 &
  function_pid=$!
  wait "$curl_pid"
  end=$(now_us)
  local cold_us=$((end - start))
  local warm_s
  warm_s=$(for _ in $(seq 1 "$warm"); do
    curl -s -o /dev/null -w '%{time_total}\n' --max-time 60 "${args[@]}"
  done | median)
  local rss
  rss=$(awk '/^VmHWM:/ {print $2}' "/proc/$function_pid/status" 2>/dev/null || echo 0)
  stop "$function_pid"
  function_pid=
  stop "$emulator_pid"
  emulator_pid=
  awk -v c="$cold_us" -v w="$warm_s" -v r="${rss:-0}" -v s="$(cat "$work/$f.cold.code")" \
    'BEGIN {printf "%.1f %.1f %d %s\n", c / 1000, w * 1000, r, s}'
}

printf '%-18s %8s %8s %6s %8s %8s %8s %8s\n' \
  function size_MiB strip_MiB answer cold_ms warm_ms init_ms rss_MiB
for f in "${functions[@]}"; do
  size=$(stat -c %s "$target/lambda/$f/bootstrap")
  strip -o "$work/$f.stripped" "$target/lambda/$f/bootstrap"
  stripped=$(stat -c %s "$work/$f.stripped")
  : >"$work/$f.runs"
  for _ in $(seq 1 "$repeat"); do
    measure "$f" >>"$work/$f.runs"
  done
  cold=$(awk '{print $1}' "$work/$f.runs" | median)
  warm_ms=$(awk '{print $2}' "$work/$f.runs" | median)
  rss=$(awk '{print $3}' "$work/$f.runs" | median)
  status=$(awk '{print $4}' "$work/$f.runs" | sort -u | paste -sd/)
  awk -v f="$f" -v s="$size" -v x="$stripped" -v st="$status" -v c="$cold" -v w="$warm_ms" \
    -v r="$rss" 'BEGIN {printf "%-18s %8.1f %8.1f %6s %8.1f %8.1f %8.1f %8.1f\n",
      f, s / 1048576, x / 1048576, st, c, w, c - w, r / 1024}'
done
echo "cold: bootstrap started -> first event answered (median of $repeat); warm: median of $warm; init = cold - warm" >&2
