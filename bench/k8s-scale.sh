#!/usr/bin/env bash
# What a merge costs at scale, incremental runs against the old behaviour (`--full`), in one
# run: IMAGES digests (each in its own repository, `bench/img-NNN:v1`) promoted to 3 mirrors
# (three path prefixes of one production registry), state in a local folder; then one digest
# added to the manifest and promoted (incremental: desired − promoted), then the same manifest
# promoted with `--full` (every unit observed in every mirror, as every merge did before), then
# `promoter reconcile --dry-run` with nothing missing (every mirror read by inventory).
# Prints wall time and registry requests (the promoter's own count, and the registries' access
# logs) of each, and extrapolates to Kubernetes' size (16,543 units × 21 mirrors, Artifact
# Registry's ~50 requests/s per host).
#
# Usage: bench/k8s-scale.sh [--images N] [--keep]     (default 2000 images)
#
# Builds promoter-cli in release mode (honours CARGO_TARGET_DIR). Needs docker-registry,
# python3 and curl. A benchmark, not a test: it fails only when a command does.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
images=2000
keep=false
while (($#)); do
  case $1 in
    --images) images=${2:?}; shift 2 ;;
    --keep) keep=true; shift ;;
    -h | --help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "k8s-scale: unknown argument $1" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/promoter-target}"
echo "== building promoter-cli (release)" >&2
(cd "$root" && cargo build --release --quiet -p promoter-cli)
promoter="$CARGO_TARGET_DIR/release/promoter"

work=$(mktemp -d "${TMPDIR:-/tmp}/k8s-scale.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [[ $keep == true ]]; then echo "== kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
mkdir -p "$work/docker" && echo '{"auths":{}}' >"$work/docker/config.json"
export DOCKER_CONFIG="$work/docker"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_registry() { # NAME PORT
  local dir="$work/$1"
  mkdir -p "$dir/storage"
  printf 'version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n  secret: k8s-scale\n' \
    "$dir/storage" "$2" >"$dir/config.yml"
  (
    while read -r var; do unset "$var"; done < <(compgen -e | grep '^REGISTRY_' || true)
    exec docker-registry serve "$dir/config.yml" >>"$dir/access.log" 2>>"$dir/app.log" </dev/null
  ) &
  pids+=($!)
  for _ in $(seq 100); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$2/v2/" || true) == 200 ]] && { : >"$dir/access.log"; return; }
    sleep 0.1
  done
  echo "k8s-scale: registry $1 did not start" >&2; exit 1
}
staging_port=$(free_port); prod_port=$(free_port)
start_registry staging "$staging_port"
start_registry prod "$prod_port"
staging="127.0.0.1:$staging_port"; prod="127.0.0.1:$prod_port"

echo "== seeding $((images + 1)) images into $staging" >&2
python3 "$here/seed_images.py" images --registry "$staging" --count "$((images + 1))" \
  --layer-kib 1 --list "$work/all.txt" >/dev/null
head -n "$images" "$work/all.txt" >"$work/promoted.txt"

manifest() { # LIST > manifest
  echo "registries:"
  echo "- name: $staging/bench"
  echo "  src: true"
  for m in mirror-a mirror-b mirror-c; do echo "- name: $prod/$m"; done
  echo "images:"
  while read -r repo digest; do
    printf -- '- name: %s\n  dmap:\n    "%s": ["v1"]\n' "${repo#bench/}" "$digest"
  done <"$1"
}
manifest "$work/promoted.txt" >"$work/m.yaml"

logged() { sleep 0.3; cat "$work/staging/access.log" "$work/prod/access.log" | wc -l; }
declare -A wall=() requests=() logged_requests=() units=()
run() { # NAME ARGS...
  local name=$1 before after start end out
  shift
  before=$(logged)
  start=$(date +%s.%N)
  (cd "$work" && "$promoter" promote m.yaml --output json --state "$work/state" "$@" >"$work/$name.json" 2>"$work/$name.err") || true
  end=$(date +%s.%N)
  after=$(logged)
  wall[$name]=$(python3 -c "print(f'{$end - $start:.2f}')")
  out=$(python3 -c "import json; s=json.load(open('$work/$name.json'))['summary']; print(s['requests'], s['copied'], s['present'], s['failed'])")
  read -r requests[$name] copied present failed <<<"$out"
  units[$name]="copied=$copied present=$present failed=$failed"
  logged_requests[$name]=$((after - before))
  echo "== $name: ${wall[$name]} s, ${requests[$name]} requests (${logged_requests[$name]} logged), ${units[$name]}" >&2
}

run first
manifest "$work/all.txt" >"$work/m.yaml"
run one-digest
run full --full --revision full-observation

# Reconcile with nothing missing: every (repository, mirror) read by inventory, nothing written.
before=$(logged)
start=$(date +%s.%N)
(cd "$work" && "$promoter" reconcile m.yaml --dry-run --output json --state "$work/state" >"$work/reconcile.json" 2>"$work/reconcile.err") || true
end=$(date +%s.%N)
after=$(logged)
wall[reconcile]=$(python3 -c "print(f'{$end - $start:.2f}')")
read -r requests[reconcile] repositories drifted < <(python3 -c "
import json; s = json.load(open('$work/reconcile.json'))['summary']
print(s['requests'], s['repositories'], s['drifted'])")
logged_requests[reconcile]=$((after - before))
units[reconcile]="repositories=$repositories drifted=$drifted"
echo "== reconcile: ${wall[reconcile]} s, ${requests[reconcile]} requests, ${units[reconcile]}" >&2

edges=$((images * 3))
cat <<EOF

k8s-scale: $images promoted digests in $images repositories × 3 mirrors ($edges edges), then one digest added
phase          wall s   requests  logged   units
first          $(printf '%7s  %8s  %6s' "${wall[first]}" "${requests[first]}" "${logged_requests[first]}")   ${units[first]}
one-digest     $(printf '%7s  %8s  %6s' "${wall[one-digest]}" "${requests[one-digest]}" "${logged_requests[one-digest]}")   ${units[one-digest]}   (incremental: desired − promoted)
full           $(printf '%7s  %8s  %6s' "${wall[full]}" "${requests[full]}" "${logged_requests[full]}")   ${units[full]}   (--full: the old behaviour, every edge observed)
reconcile      $(printf '%7s  %8s  %6s' "${wall[reconcile]}" "${requests[reconcile]}" "${logged_requests[reconcile]}")   ${units[reconcile]}   (--dry-run, nothing missing: by inventory)
EOF
python3 - "${requests[one-digest]}" "${requests[full]}" "$edges" "${wall[one-digest]}" "${wall[full]}" "${requests[reconcile]}" "$repositories" <<'PY'
import sys
one, full, edges, wall_one, wall_full = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
reconcile, repositories = int(sys.argv[6]), int(sys.argv[7])
per_edge = full / edges
k8s_edges = 538_090
k8s_full = per_edge * k8s_edges
hosts = 21
print(f"ratio full / one-digest: {full / max(one, 1):.0f}x requests, {wall_full / max(wall_one, 0.01):.0f}x wall time")
print(f"full observation: {per_edge:.2f} requests per (digest, mirror) edge")
print(f"at Kubernetes' size ({k8s_edges:,} edges, {hosts} mirror hosts at 50 requests/s each): "
      f"a full run ~{k8s_full:,.0f} requests, >= {k8s_full / (50 * hosts) / 60:.0f} min of request budget; "
      f"an incremental one-digest merge ~{one} requests (constant in the set's size), under a second of budget")
per_repo = reconcile / max(repositories, 1)
print(f"reconcile with nothing missing: {per_repo:.2f} requests per (repository, mirror) (target <= 1.5); "
      f"distribution lists tags without digests, so each tag costs a HEAD: 1 listing + 1 HEAD per tag "
      f"(Google's registries list every digest and tag in the one listing: 1 request per page)")
PY
