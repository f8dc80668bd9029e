#!/usr/bin/env bash
# What recording state costs `promoter promote`: the same cold promotion three times, into a
# fresh empty production registry each, without state (--no-state), with state in a local
# folder, and with state in S3 (SeaweedFS, `weed mini`); then a rerun of each (a complete run
# resumes from state without contacting registries; without state, production is observed).
#
# Starts its own CNCF distribution registries (docker-registry) and SeaweedFS on free
# 127.0.0.1 ports, seeds staging with bench/seed_images.py (IMAGES single-platform OCI images
# `bench/img-NNN:v1`, one base layer shared by all + 2 unique layers of LAYER_KIB KiB), and
# prints per mode: wall seconds (median of R runs), registry requests (summary.requests), state
# requests (summary.run.state_requests) and state requests per unit.
#
# Usage: bench/state-overhead.sh [--images N] [--layer-kib K] [--repeat R] [--keep]
#                                [--promoter-arg ARG]...
#
#   --images N          images (units) to promote (default 200)
#   --layer-kib K       size of each unique layer, KiB (default 4: small images)
#   --repeat R          runs of each mode, each into its own fresh production registry and
#                       fresh state; the median wall time is printed (default 3)
#   --promoter-arg ARG  extra argument for every `promoter promote` (repeatable)
#   --keep              keep the work directory (logs, manifests, outputs)
#
# The promoter is built in release mode (honours CARGO_TARGET_DIR). SeaweedFS is `$WEED`, else
# /var/tmp/promoter-venv/bin/weed (infra/local/test.sh installs it). Needs docker-registry,
# python3 and curl. A benchmark, not a test: it prints figures and fails only when a command
# does. Takes well under a minute.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

images=200
layer_kib=4
repeat=3
keep=false
promoter_args=()

die() {
  echo "state-overhead: $*" >&2
  exit 2
}

while (($#)); do
  case $1 in
    --images) images=${2:?}; shift 2 ;;
    --layer-kib) layer_kib=${2:?}; shift 2 ;;
    --repeat) repeat=${2:?}; shift 2 ;;
    --promoter-arg) promoter_args+=("${2:?}"); shift 2 ;;
    --keep) keep=true; shift ;;
    -h | --help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
if [[ ! $images =~ ^[1-9][0-9]*$ ]] || ((images > 1000)); then
  die "--images must be within 1..1000"
fi
[[ $layer_kib =~ ^[1-9][0-9]*$ ]] || die "--layer-kib must be a positive integer"
[[ $repeat =~ ^[1-9]$ ]] || die "--repeat must be within 1..9"

weed=${WEED:-/var/tmp/promoter-venv/bin/weed}
[[ -x $weed ]] || die "SeaweedFS not found at $weed (set WEED, or run infra/local/test.sh)"
for tool in docker-registry python3 curl; do
  command -v "$tool" >/dev/null || die "$tool not found"
done

echo "== building promoter-cli (release)" >&2
(cd "$root" && cargo build --release --quiet -p promoter-cli)
target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
promoter="$target_dir/release/promoter"
[[ -x $promoter ]] || die "built binary not found at $promoter"

work=$(mktemp -d "${TMPDIR:-/tmp}/state-overhead.XXXXXX")
declare -a pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ $keep == true ]]; then echo "== kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

mkdir -p "$work/docker"
echo '{"auths":{}}' >"$work/docker/config.json"
export DOCKER_CONFIG="$work/docker"
# Nothing of the caller's AWS or promoter configuration leaks into the promoter or weed.
while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(AWS_|S3_|WEED_|PROMOTER_|REGISTRY_)' || true)

# free_ports N: N distinct free loopback ports.
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# wait_http URL NAME: until URL answers 200.
wait_http() {
  for _ in $(seq 300); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" || true) == 200 ]] && return
    sleep 0.1
  done
  die "$2 did not start ($1); see $work"
}

declare -A port_of=()
start_registry() {
  local name=$1 port=$2 dir="$work/$1"
  mkdir -p "$dir/storage"
  cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
http:
  addr: 127.0.0.1:$port
  secret: state-overhead-$name
health:
  storagedriver:
    enabled: false
EOF
  docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 </dev/null &
  pids+=($!)
  port_of[$name]=$port
  wait_http "http://127.0.0.1:$port/v2/" "registry $name"
}

registries=(staging)
for mode in none local s3; do
  for r in $(seq "$repeat"); do registries+=("prod-$mode-$r"); done
done
read -ra ports <<<"$(free_ports ${#registries[@]})"
for i in "${!registries[@]}"; do start_registry "${registries[$i]}" "${ports[$i]}"; done
staging="127.0.0.1:${port_of[staging]}"

# SeaweedFS as the test harness starts it (tests/harness/seaweed.rs): every port pinned.
bucket="promoter-state"
read -r s3 s3_grpc master master_grpc volume volume_grpc filer filer_grpc <<<"$(free_ports 8)"
admin=$(python3 - <<'PY'
import socket
for _ in range(200):
    a = socket.socket(); a.bind(("127.0.0.1", 0)); port = a.getsockname()[1]
    if port + 10000 > 65535:
        continue
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", port + 10000)); print(port); break
    except OSError:
        pass
PY
)
mkdir -p "$work/weed/data" "$work/weed/tmp"
(
  cd "$work/weed"
  exec env TMPDIR="$work/weed/tmp" "$weed" mini -dir="$work/weed/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -webdav=false -admin.ui=false -master.telemetry=false -s3.autoCreateBucket=false \
    -s3.port.iceberg=0 -s3.port.lance=0 -volume.preStopSeconds=0 \
    -s3.port="$s3" -s3.port.grpc="$s3_grpc" -master.port="$master" -master.port.grpc="$master_grpc" \
    -volume.port="$volume" -volume.port.grpc="$volume_grpc" -filer.port="$filer" \
    -filer.port.grpc="$filer_grpc" -admin.port="$admin" -admin.port.grpc=$((admin + 10000)) \
    -filer.localSocket="$work/weed/filer.sock" -s3.localSocket="$work/weed/s3.sock" \
    -bucket="$bucket" >"$work/weed/weed.log" 2>&1 </dev/null
) &
pids+=($!)
wait_http "http://127.0.0.1:$s3/" "SeaweedFS S3"
for _ in $(seq 300); do
  [[ $(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/json' "http://127.0.0.1:$filer/buckets/$bucket/" || true) == 200 ]] && break
  sleep 0.1
done

echo "== seeding $images images into $staging" >&2
seed_line=$(python3 "$here/seed_images.py" images --registry "$staging" --count "$images" \
  --layer-kib "$layer_kib" --list "$work/images.txt")

# manifest FILE DEST: every seeded image to DEST, tag v1.
manifest() {
  {
    echo "registries:"
    echo "- name: $staging/bench"
    echo "  src: true"
    echo "- name: 127.0.0.1:${port_of[$2]}/bench"
    echo "images:"
    while read -r repo digest; do
      echo "- name: ${repo#bench/}"
      echo "  dmap:"
      echo "    \"$digest\": [\"v1\"]"
    done <"$work/images.txt"
  } >"$1"
}

declare -A wall_of=()
# measure NAME -- CMD...: runs CMD (stdout to NAME.out), records its wall time.
measure() {
  local name=$1 start end
  shift 2
  echo "   $name ..." >&2
  start=$(date +%s.%N)
  if ! "$@" >"$work/$name.out" 2>"$work/$name.err"; then
    tail -n 20 "$work/$name.err" >&2
    die "FAILED: $name: $*"
  fi
  end=$(date +%s.%N)
  wall_of[$name]=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
}

s3_env=(env AWS_ENDPOINT_URL_S3="http://127.0.0.1:$s3" AWS_ACCESS_KEY_ID=any
  AWS_SECRET_ACCESS_KEY=any AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
  AWS_CONFIG_FILE="$work/none" AWS_SHARED_CREDENTIALS_FILE="$work/none")
# Modes interleaved per repetition, so that drift in the machine's load hits them alike.
for r in $(seq "$repeat"); do
  for mode in none local s3; do
    manifest "$work/$mode-$r.yaml" "prod-$mode-$r"
    case $mode in
      none) cmd=("$promoter" promote "$work/$mode-$r.yaml" --output json --no-state) ;;
      local) cmd=("$promoter" promote "$work/$mode-$r.yaml" --output json --state "$work/state-$r") ;;
      s3) cmd=("${s3_env[@]}" "$promoter" promote "$work/$mode-$r.yaml" --output json
        --state "s3://$bucket/bench-$r") ;;
    esac
    echo "== $mode, run $r" >&2
    measure "$mode-cold-$r" -- "${cmd[@]}" "${promoter_args[@]}"
    measure "$mode-rerun-$r" -- "${cmd[@]}" "${promoter_args[@]}"
  done
done

# median NAME: the median wall time of NAME-1..NAME-R.
median() {
  local r
  for r in $(seq "$repeat"); do echo "${wall_of[$1-$r]}"; done | sort -n |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# field NAME PATH: a field of NAME.out's JSON (PATH like summary.run.state_requests), or -.
field() {
  python3 - "$work/$1.out" "$2" <<'PY'
import json, sys
value = json.load(open(sys.argv[1]))
for key in sys.argv[2].split("."):
    value = value.get(key) if isinstance(value, dict) else None
print("-" if value is None else value)
PY
}

echo
echo "Images: $images (1 shared + 2 unique layers of ~$layer_kib KiB + config), one destination; $seed_line"
echo "promoter: $promoter ${promoter_args[*]}"
echo
echo "Wall times: median of $repeat runs (all: in parentheses); counts from the first run."
echo
printf '%-12s %22s %6s %7s %9s %11s %11s\n' "run" "wall s" "units" "failed" "requests" "state reqs" "state/unit"
for name in none-cold local-cold s3-cold none-rerun local-rerun s3-rerun; do
  units=$(field "$name-1" summary.units)
  state=$(field "$name-1" summary.run.state_requests)
  per_unit=$(awk -v s="$state" -v u="$units" 'BEGIN { if (s == "-" || u == 0) print "-"; else printf "%.2f", s / u }')
  all=$(for r in $(seq "$repeat"); do printf '%s ' "${wall_of[$name-$r]}"; done)
  printf '%-12s %22s %6s %7s %9s %11s %11s\n' "$name" "$(median "$name") (${all% })" "$units" \
    "$(field "$name-1" summary.failed)" "$(field "$name-1" summary.requests)" "$state" "$per_unit"
done
echo
base=$(median none-cold)
for mode in local s3; do
  echo "overhead of $mode state on the cold copy (medians): $(awk -v a="$(median "$mode-cold")" -v b="$base" \
    'BEGIN { printf "%+.2f s (%+.0f%%)", a - b, (a - b) / b * 100 }')"
done
