#!/usr/bin/env bash
# Benchmark what signing costs: `promoter promote` without a key (the baseline, same run) vs
# with a key in each signature format, to 1 and to 5 mirrors, and the rerun.
#
# Starts anonymous CNCF distribution registries (docker-registry) on free 127.0.0.1 ports: one
# staging registry seeded with IMAGES single-platform images (bench/seed_images.py), and one
# empty production registry per phase (mirrors are repository prefixes m1..m5 in it). Phases,
# each `promoter promote --no-state` (production observed afresh, as skopeo would):
#
#   unsigned-1   1 mirror, no key                     (baseline)
#   legacy-1     1 mirror, --signature-format legacy  (the .sig image only)
#   both-1       1 mirror, --signature-format both    (.sig + signature, promotion, summary bundles)
#   both-1-again the same again: everything present
#   unsigned-5   5 mirrors, no key                    (baseline)
#   both-5       5 mirrors, --signature-format both
#
# Prints per phase: wall seconds, the promoter's own request count (summary.requests), the
# requests the registries logged, signatures added and signing operations; then signing
# operations per digest and the requests signing adds per digest and mirror (signed − unsigned).
#
# Usage: bench/signing.sh [--images N] [--keep]      (default 200 images)
# Needs docker-registry, python3, curl; builds the promoter in release mode.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
images=200
keep=false
while (($#)); do
  case $1 in
    --images) images=$2; shift 2 ;;
    --keep) keep=true; shift ;;
    *) echo "signing: unknown argument $1" >&2; exit 2 ;;
  esac
done

(cd "$root" && cargo build --release --quiet -p promoter-cli)
target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
promoter="$target_dir/release/promoter"

work=$(mktemp -d "${TMPDIR:-/tmp}/signing-bench.XXXXXX")
declare -a pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ $keep == true ]]; then echo "== kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
mkdir -p "$work/docker"
echo '{"auths":{}}' >"$work/docker/config.json"
export DOCKER_CONFIG="$work/docker"

declare -A port_of=()
start_registry() {
  local name=$1 dir="$work/$1" port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$dir/storage"
  cat >"$dir/config.yml" <<CONFIG
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/storage
http:
  addr: 127.0.0.1:$port
  secret: signing-bench-$name
health:
  storagedriver:
    enabled: false
CONFIG
  (
    while read -r var; do unset "$var"; done < <(compgen -e | grep '^REGISTRY_' || true)
    exec docker-registry serve "$dir/config.yml" >>"$dir/access.log" 2>>"$dir/app.log" </dev/null
  ) &
  pids+=($!)
  port_of[$name]=$port
  for _ in $(seq 100); do
    if [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/v2/" || true) == 200 ]]; then
      : >"$dir/access.log"
      return
    fi
    sleep 0.1
  done
  echo "signing: registry $name did not start" >&2
  exit 1
}

phases=(unsigned-1 legacy-1 both-1 unsigned-5 both-5)
start_registry staging
for phase in "${phases[@]}"; do start_registry "$phase"; done
staging="127.0.0.1:${port_of[staging]}"
echo "== seeding $images images into $staging" >&2
python3 "$here/seed_images.py" images --registry "$staging" --count "$images" \
  --layer-kib 16 --list "$work/images.txt" >/dev/null

# manifest FILE REGISTRY MIRRORS: every seeded image to MIRRORS prefixes m1.. of REGISTRY.
manifest() {
  local file=$1 registry=$2 mirrors=$3 repo digest i
  {
    echo "registries:"
    echo "- name: $staging/bench"
    echo "  src: true"
    for ((i = 1; i <= mirrors; i++)); do echo "- name: 127.0.0.1:${port_of[$registry]}/m$i"; done
    echo "images:"
    while read -r repo digest; do
      echo "- name: ${repo#bench/}"
      echo "  dmap:"
      echo "    \"$digest\": [\"v1\"]"
    done <"$work/images.txt"
  } >"$file"
}

"$promoter" keys generate "$work/release" >/dev/null
declare -A summary_of=() logged_of=() wall_of=()
# run NAME REGISTRY MIRRORS [ARGS...]
run() {
  local name=$1 registry=$2 mirrors=$3 before after start end
  shift 3
  manifest "$work/$name.yaml" "$registry" "$mirrors"
  before=$(wc -l <"$work/$registry/access.log")
  start=$(date +%s.%N)
  "$promoter" promote "$work/$name.yaml" --no-state --output json "$@" >"$work/$name.json"
  end=$(date +%s.%N)
  sleep 0.2
  after=$(wc -l <"$work/$registry/access.log")
  logged_of[$name]=$((after - before))
  wall_of[$name]=$(python3 -c "print(f'{$end - $start:.2f}')")
  summary_of[$name]=$(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
print(s["requests"], s["signatures_added"], s.get("signing_operations", 0), s["failed"])' "$work/$name.json")
}

key=(--key "$work/release.key")
run unsigned-1 unsigned-1 1
run legacy-1 legacy-1 1 "${key[@]}" --signature-format legacy
run both-1 both-1 1 "${key[@]}" --signature-format both
run both-1-again both-1 1 "${key[@]}" --signature-format both
run unsigned-5 unsigned-5 5
run both-5 both-5 5 "${key[@]}" --signature-format both

echo
echo "signing benchmark: $images images, promoter $("$promoter" --version 2>/dev/null || echo)"
printf '%-14s %8s %10s %12s %10s %10s %7s\n' phase wall_s requests prod_logged signatures sign_ops failed
for name in unsigned-1 legacy-1 both-1 both-1-again unsigned-5 both-5; do
  read -r requests added ops failed <<<"${summary_of[$name]}"
  printf '%-14s %8s %10s %12s %10s %10s %7s\n' "$name" "${wall_of[$name]}" "$requests" \
    "${logged_of[$name]}" "$added" "$ops" "$failed"
done
python3 - "$images" "${summary_of[unsigned-1]}" "${summary_of[legacy-1]}" "${summary_of[both-1]}" \
  "${summary_of[both-1-again]}" "${summary_of[unsigned-5]}" "${summary_of[both-5]}" \
  "${wall_of[unsigned-1]}" "${wall_of[both-1]}" "${wall_of[unsigned-5]}" "${wall_of[both-5]}" <<'PY'
import sys
n = int(sys.argv[1])
u1, l1, b1, again, u5, b5 = (list(map(int, a.split())) for a in sys.argv[2:8])
w_u1, w_b1, w_u5, w_b5 = map(float, sys.argv[8:12])
print()
print(f"signing operations per digest: 1 mirror {b1[2] / n:.2f}, 5 mirrors {b5[2] / n:.2f}, rerun {again[2] / n:.2f}")
print(f"requests signing adds per digest per mirror: legacy {(l1[0] - u1[0]) / n:.1f}, "
      f"both {(b1[0] - u1[0]) / n:.1f} (1 mirror), {(b5[0] - u5[0]) / (5 * n):.1f} (5 mirrors)")
print(f"rerun requests per digest (everything present, signed): {again[0] / n:.1f} "
      f"(unsigned cold copy: {u1[0] / n:.1f})")
print(f"wall overhead of signing (both): 1 mirror {w_b1 / w_u1:.2f}x ({w_u1:.2f}s -> {w_b1:.2f}s), "
      f"5 mirrors {w_b5 / w_u5:.2f}x ({w_u5:.2f}s -> {w_b5:.2f}s)")
PY
