#!/usr/bin/env bash
# Benchmark `promoter promote` against `skopeo sync` on real registries, in one run.
#
# Starts its own CNCF distribution registries (docker-registry) on free 127.0.0.1 ports: one
# staging registry, and separate empty production registries for each tool and phase (neither
# tool benefits from the other's work). Seeds staging with bench/seed_images.py over the raw
# registry HTTP API: IMAGES single-platform OCI images, `bench/img-NNN:v1`, each with one base
# layer shared by all plus 2 unique layers of LAYER_KIB KiB (deterministic content). Then:
#
#   1. cold copy, empty production: `promoter promote` (200 units, one destination) vs
#      `skopeo sync --src yaml --dest docker` (serial, a YAML file listing the images, tag v1);
#   2. no-op rerun (everything already there), both tools again;
#   3. HTTP requests per image for both, counted in the registries' access logs (staging +
#      production, per phase), beside the promoter's own `summary.requests`, with a
#      breakdown of the requests by method, kind and status;
#   4. 3-destination fan-out (3 production registries on 3 ports): the promoter's
#      `summary.bytes_read_from_source` vs the unique bytes of the images' blobs;
#   5. one image with a BIG_MIB MiB layer (streamed while seeding, never held in memory):
#      the promoter's peak RSS (/usr/bin/time -v), wall time and throughput;
#   6. cold copy behind realistic latency: bench/delay_proxy.py (a TCP proxy delaying every
#      chunk by LATENCY_MS/2 each way while it goes on reading, so throughput is limited only
#      by an 8 MiB window per connection, and charging one round trip per new connection, as a
#      TCP handshake does) in front of staging and of fresh empty production registries, one
#      per tool; the first LATENCY_IMAGES images copied by `skopeo sync` and by `promoter
#      promote`, both through the proxies, timed (and, for reference, the promoter's copy of
#      the same images without the proxies: what the registries and CPUs cost without
#      latency).
#
# The latency floor (phase 6) is what one image costs the promoter in round trips, times the
# round trip: with every image copied in parallel, N images could take no less (a leaner
# request sequence would lower it). It is measured, not assumed: the promoter copies ONE image
# (img-000, into its own empty registry) behind the proxies, which trace every request
# (bench/critical_path.py reads the traces). Each request and each TCP connection counts one
# round trip; a request depends on its connection and on every request answered before it
# began. The longest such chain is the critical path: round trips the promoter overlapped (the
# image's blobs go in parallel, each HEAD, POST upload, GET from staging streamed into a PUT)
# count once, the ones it waited for one after the other (connections, HEAD of the tag and of
# the digest in production, GET of the source manifest, tag listing, referrers query, blob
# round trips, manifest PUT) each count. The chain is printed, request by request, and the
# round trips of each run's critical path by kind of request. As a cross-check, the same image
# copied without the proxies gives (wall behind the proxies - wall without) / RTT, the round
# trips the one-image run actually waited for (process start and planning cancel out). The
# promoter's figures are then: wall(N images) / floor, and skopeo's wall / the promoter's.
#
# Targets printed beside the figures: >= 5x faster than skopeo sync cold, >= 10x on the no-op
# rerun, 1x unique bytes read for the fan-out, < 64 MiB peak RSS for the big layer; behind a
# 30 ms round trip, >= 20x faster than skopeo sync and within 2x of the latency floor.
#
# Usage: bench/promote-vs-skopeo.sh [--images N] [--layer-kib K] [--big-mib M] [--keep]
#                                   [--latency-ms MS] [--latency-images N] [--only-latency]
#                                   [--promoter-arg ARG]...
#
#   --images N          images to seed and copy (default 200)
#   --layer-kib K       size of each small layer's file, KiB (default 300)
#   --big-mib M         size of the big layer, MiB (default 1024; 0 skips phase 5)
#   --latency-ms MS     round trip the delay proxies add in phase 6 (default 30; 0 skips it)
#   --latency-images N  images copied in phase 6 (default 40; at most --images, unless
#                       --only-latency)
#   --only-latency      run phase 6 only (seeds LATENCY_IMAGES images; --images, --big-mib
#                       ignored)
#   --promoter-arg ARG  extra argument for every `promoter promote` (repeatable), e.g.
#                       --promoter-arg --max-requests-per-second --promoter-arg 1000
#   --keep              keep the work directory (registry logs, manifests, outputs, traces)
#
# The promoter is built in release mode (honours CARGO_TARGET_DIR). Both tools run anonymous
# against plain-HTTP loopback registries, with an empty Docker config (DOCKER_CONFIG) and no
# skopeo auth file. skopeo keeps its blob-info cache in /var/lib/containers/cache (root) or
# ~/.local/share/containers/cache; its entries are keyed by registry host:port, so the fresh
# ports of each run start cold. Registries and the work directory are removed on exit.
#
# Exits non-zero when a command fails; missing the targets is only reported (this is a
# benchmark, not a test). Needs docker-registry, skopeo, python3, curl and GNU time
# (apt-get install docker-registry skopeo curl time). Takes a few minutes (phase 6 alone,
# 40 images at 30 ms: about a minute, most of it skopeo's).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

images=200
layer_kib=300
big_mib=1024
latency_ms=30
latency_images=40
only_latency=false
keep=false
# Like skopeo, without recorded state: the promoter observes production on every run
# (bench/state-overhead.sh measures what state costs).
promoter_args=(--no-state)

die() {
  echo "promote-vs-skopeo: $*" >&2
  exit 2
}

while (($#)); do
  case $1 in
    --images) images=${2:?}; shift 2 ;;
    --layer-kib) layer_kib=${2:?}; shift 2 ;;
    --big-mib) big_mib=${2:?}; shift 2 ;;
    --latency-ms) latency_ms=${2:?}; shift 2 ;;
    --latency-images) latency_images=${2:?}; shift 2 ;;
    --only-latency) only_latency=true; shift ;;
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
[[ $big_mib =~ ^[0-9]+$ ]] || die "--big-mib must be a non-negative integer"
if [[ ! $latency_ms =~ ^[0-9]+$ ]] || ((latency_ms > 1000)); then
  die "--latency-ms must be within 0..1000"
fi
if [[ ! $latency_images =~ ^[1-9][0-9]*$ ]] || ((latency_images > 1000)); then
  die "--latency-images must be within 1..1000"
fi
if [[ $only_latency == true ]]; then
  ((latency_ms > 0)) || die "--only-latency needs --latency-ms above 0"
  images=$latency_images
  big_mib=0
elif ((latency_images > images)); then
  echo "promote-vs-skopeo: --latency-images $latency_images is above --images: copying $images" >&2
  latency_images=$images
fi

for tool in docker-registry skopeo python3 curl; do
  command -v "$tool" >/dev/null || die "$tool not found (see --help)"
done
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found: apt-get install -y time"

# --- build ----------------------------------------------------------------------------------
echo "== building promoter-cli (release)" >&2
(cd "$root" && cargo build --release --quiet -p promoter-cli)
target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
promoter="$target_dir/release/promoter"
[[ -x $promoter ]] || die "built binary not found at $promoter"

# --- registries -----------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/promote-vs-skopeo.XXXXXX")
declare -a registry_pids=()
declare -A proxy_pid_of=()
cleanup() {
  local pid
  for pid in "${registry_pids[@]}" "${proxy_pid_of[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${registry_pids[@]}" "${proxy_pid_of[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ $keep == true ]]; then
    echo "== kept $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# Empty credentials for both tools: every registry here is anonymous.
mkdir -p "$work/docker"
echo '{"auths":{}}' >"$work/docker/config.json"
export DOCKER_CONFIG="$work/docker"
export REGISTRY_AUTH_FILE="$work/docker/config.json"

declare -A port_of=() pid_of=()
clock_ticks=$(getconf CLK_TCK)
# free_ports N: N distinct free loopback ports (held open together while choosing).
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# start_registry NAME PORT: an anonymous registry logging every request to NAME/access.log.
start_registry() {
  local name=$1 port=$2 dir="$work/$1" status
  mkdir -p "$dir/storage"
  cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: promote-vs-skopeo-$name
health:
  storagedriver:
    enabled: false
EOF
  (
    # distribution takes REGISTRY_* variables as config overrides: none may leak in.
    while read -r var; do unset "$var"; done < <(compgen -e | grep '^REGISTRY_' || true)
    # The access log (one line per request) goes to stdout, the application log to stderr.
    # Appending, so that truncating the log below leaves no hole in it.
    exec docker-registry serve "$dir/config.yml" >>"$dir/access.log" 2>>"$dir/app.log" </dev/null
  ) &
  registry_pids+=($!)
  pid_of[$name]=$!
  port_of[$name]=$port
  for _ in $(seq 100); do
    status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/v2/" || true)
    if [[ $status == 200 ]]; then
      : >"$dir/access.log" # forget the readiness probes
      return
    fi
    sleep 0.1
  done
  tail -n 20 "$dir/app.log" >&2 || true
  echo "promote-vs-skopeo: registry $name did not start on 127.0.0.1:$port" >&2
  exit 1
}

# CPU seconds (user + system) a registry has used so far.
cpu_of_registry() {
  awk -v hz="$clock_ticks" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/${pid_of[$1]}/stat"
}

# Access-log lines (one per request) a registry has logged so far.
requests_of() {
  sleep 0.2 # a request's line is written once its handler returns
  wc -l <"$work/$1/access.log"
}

registries=(staging)
[[ $only_latency == true ]] || registries+=(prod-promoter prod-skopeo fan-1 fan-2 fan-3)
((big_mib > 0)) && registries+=(prod-big)
# Phase 6: production for each tool, for the one-image run behind the proxies and without,
# and for the promoter's copy of the same images without the proxies.
((latency_ms > 0)) && registries+=(lat-promoter lat-skopeo lat-one lat-direct lat-base)
read -ra ports <<<"$(free_ports "${#registries[@]}")"
for i in "${!registries[@]}"; do
  start_registry "${registries[$i]}" "${ports[$i]}"
done
echo "== registries: $(for r in "${registries[@]}"; do printf '%s=127.0.0.1:%s ' "$r" "${port_of[$r]}"; done)" >&2
staging="127.0.0.1:${port_of[staging]}"

# --- seed -----------------------------------------------------------------------------------
echo "== seeding $images images (3 layers of ~$layer_kib KiB, 1 shared) into $staging" >&2
declare -A seed=()
seed_line=$(python3 "$here/seed_images.py" images --registry "$staging" --count "$images" \
  --layer-kib "$layer_kib" --list "$work/images.txt")
for kv in $seed_line; do seed[${kv%%=*}]=${kv#*=}; done

# promoter_manifest FILE DEST_NAME...: a plain manifest of every seeded image, tag v1.
promoter_manifest() {
  local file=$1 dest repo digest
  shift
  {
    echo "registries:"
    echo "- name: $staging/bench"
    echo "  src: true"
    for dest in "$@"; do echo "- name: 127.0.0.1:${port_of[$dest]}/bench"; done
    echo "images:"
    while read -r repo digest; do
      echo "- name: ${repo#bench/}"
      echo "  dmap:"
      echo "    \"$digest\": [\"v1\"]"
    done <"$work/images.txt"
  } >"$file"
}
if [[ $only_latency == false ]]; then
  promoter_manifest "$work/promote.yaml" prod-promoter
  promoter_manifest "$work/fanout.yaml" fan-1 fan-2 fan-3
fi
# sync_yaml FILE SOURCE_HOST [COUNT]: skopeo sync's source list, the first COUNT images.
sync_yaml() {
  local file=$1 source=$2 count=${3:-$images} repo
  {
    echo "$source:"
    echo "  tls-verify: false"
    echo "  images:"
    head -n "$count" "$work/images.txt" | while read -r repo _; do
      echo "    $repo: [\"v1\"]"
    done
  } >"$file"
}
sync_yaml "$work/sync.yaml" "$staging"

# --- measure --------------------------------------------------------------------------------
declare -A wall_of=() rss_of=() cpu_of=() reg_cpu_of=() reqs_of=() from_line=() to_line=()

# measure NAME REGISTRY... -- CMD...: runs CMD once under /usr/bin/time -v (stdout to
# NAME.out); records its wall time, peak RSS and CPU, and the requests the REGISTRIES logged
# and the CPU they used meanwhile.
measure() {
  local name=$1 r before=() cpu_before=() i=0 total=0 reg_cpu=0 timing="$work/$1.time" wall
  shift
  local regs=()
  while [[ $1 != -- ]]; do regs+=("$1"); shift; done
  shift
  for r in "${regs[@]}"; do
    before+=("$(requests_of "$r")")
    from_line[$name/$r]=${before[-1]}
    cpu_before+=("$(cpu_of_registry "$r")")
  done
  echo "   $name ..." >&2
  if ! /usr/bin/time -v -o "$timing" "$@" >"$work/$name.out" 2>"$work/$name.err"; then
    echo "promote-vs-skopeo: FAILED: $name: $*" >&2
    tail -n 30 "$work/$name.err" >&2
    head -c 2000 "$work/$name.out" >&2
    grep -h 'Exit status\|Command terminated' "$timing" >&2 || true
    exit 1
  fi
  for r in "${regs[@]}"; do
    to_line[$name/$r]=$(requests_of "$r")
    total=$((total + to_line[$name/$r] - before[i]))
    reg_cpu=$(awk -v s="$reg_cpu" -v a="$(cpu_of_registry "$r")" -v b="${cpu_before[i]}" \
      'BEGIN { printf "%.2f", s + a - b }')
    i=$((i + 1))
  done
  # "Elapsed (wall clock) time (h:mm:ss or m:ss): 0:01.23" -> seconds.
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {
      n = split($2, p, ":"); s = 0; for (j = 1; j <= n; j++) s = s * 60 + p[j]; printf "%.2f", s
    }' "$timing")
  wall_of[$name]=$wall
  rss_of[$name]=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$timing")
  cpu_of[$name]=$(awk -F': ' '/(User|System) time \(seconds\)/ {s += $2} END {printf "%.2f", s}' "$timing")
  reqs_of[$name]=$total
  reg_cpu_of[$name]=$reg_cpu
  echo "   $name: ${wall}s, $((rss_of[$name] / 1024)) MiB peak, $total requests logged" >&2
}

# summary NAME KEY: a field of the promoter's JSON summary in NAME.out.
summary() {
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["summary"][sys.argv[2]])' \
    "$work/$1.out" "$2"
}

skopeo_sync=(skopeo sync --src yaml --dest docker --src-no-creds --dest-no-creds
  --dest-tls-verify=false --preserve-digests)

if [[ $only_latency == false ]]; then
  echo "== phase 1+2: cold copy and no-op rerun, $images images" >&2
  measure promoter-cold staging prod-promoter -- \
    "$promoter" promote "$work/promote.yaml" --output json "${promoter_args[@]}"
  measure skopeo-cold staging prod-skopeo -- \
    "${skopeo_sync[@]}" "$work/sync.yaml" "127.0.0.1:${port_of[prod-skopeo]}/bench"
  measure promoter-noop staging prod-promoter -- \
    "$promoter" promote "$work/promote.yaml" --output json "${promoter_args[@]}"
  measure skopeo-noop staging prod-skopeo -- \
    "${skopeo_sync[@]}" "$work/sync.yaml" "127.0.0.1:${port_of[prod-skopeo]}/bench"

  echo "== checking both productions serve every digest" >&2
  for r in prod-promoter prod-skopeo; do
    python3 "$here/seed_images.py" check --registry "127.0.0.1:${port_of[$r]}" \
      --list "$work/images.txt" >/dev/null
  done

  echo "== phase 4: fan-out to 3 registries" >&2
  measure promoter-fanout staging fan-1 fan-2 fan-3 -- \
    "$promoter" promote "$work/fanout.yaml" --output json "${promoter_args[@]}"
  for r in fan-1 fan-2 fan-3; do
    python3 "$here/seed_images.py" check --registry "127.0.0.1:${port_of[$r]}" \
      --list "$work/images.txt" >/dev/null
  done
fi

declare -A big=()
if ((big_mib > 0)); then
  echo "== phase 5: seeding one image with a $big_mib MiB layer, then promoting it" >&2
  big_line=$(python3 "$here/seed_images.py" big --registry "$staging" --repo bench/big --mib "$big_mib")
  for kv in $big_line; do big[${kv%%=*}]=${kv#*=}; done
  cat >"$work/big.yaml" <<EOF
registries:
- name: $staging/bench
  src: true
- name: 127.0.0.1:${port_of[prod-big]}/bench
images:
- name: big
  dmap:
    "${big[digest]}": ["v1"]
EOF
  measure promoter-big staging prod-big -- \
    "$promoter" promote "$work/big.yaml" --output json "${promoter_args[@]}"
fi

# --- phase 6: behind latency ------------------------------------------------------------------
declare -A proxy_port_of=() proxy_cpu_of=() one=() run_path=()
one_way_ms=$(awk -v r="$latency_ms" 'BEGIN { printf "%g", r / 2 }')

# start_proxy NAME REGISTRY: a delay proxy in front of REGISTRY on a free port, tracing every
# request to NAME.trace.
start_proxy() {
  local name=$1 registry=$2 port
  port=$(free_ports 1)
  python3 "$here/delay_proxy.py" --listen "127.0.0.1:$port" \
    --target "127.0.0.1:${port_of[$registry]}" --one-way-ms "$one_way_ms" \
    --trace "$work/$name.trace" </dev/null 2>"$work/$name.proxy.log" &
  proxy_pid_of[$name]=$!
  proxy_port_of[$name]=$port
  for _ in $(seq 100); do
    grep -q '^delay_proxy: ready' "$work/$name.proxy.log" && return
    kill -0 "${proxy_pid_of[$name]}" 2>/dev/null || break
    sleep 0.05
  done
  cat "$work/$name.proxy.log" >&2
  echo "promote-vs-skopeo: delay proxy $name did not start on 127.0.0.1:$port" >&2
  exit 1
}

# stop_proxy RUN NAME...: stops the proxies (each writes the requests still open to its
# trace); adds the CPU seconds they used to proxy_cpu_of[RUN].
stop_proxy() {
  local run=$1 name cpu
  shift
  for name in "$@"; do
    cpu=$(awk -v hz="$clock_ticks" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/${proxy_pid_of[$name]}/stat")
    proxy_cpu_of[$run]=$(awk -v a="${proxy_cpu_of[$run]:-0}" -v b="$cpu" 'BEGIN { printf "%.2f", a + b }')
    kill "${proxy_pid_of[$name]}"
    wait "${proxy_pid_of[$name]}" 2>/dev/null || true
    unset "proxy_pid_of[$name]"
  done
}

# lat_manifest FILE SOURCE_HOST DEST_HOST COUNT: a plain manifest of the first COUNT images.
lat_manifest() {
  local file=$1 source=$2 dest=$3 count=$4 repo digest
  {
    echo "registries:"
    echo "- name: $source/bench"
    echo "  src: true"
    echo "- name: $dest/bench"
    echo "images:"
    head -n "$count" "$work/images.txt" | while read -r repo digest; do
      echo "- name: ${repo#bench/}"
      echo "  dmap:"
      echo "    \"$digest\": [\"v1\"]"
    done
  } >"$file"
}

# critical_path NAME: the critical path of run NAME from the traces of proxies NAME-staging
# and NAME-production (the chain in NAME.chain, its round trips by kind in NAME.kinds);
# prints its KEY=VALUE line.
critical_path() {
  python3 "$here/critical_path.py" --one-way-ms "$one_way_ms" --chain "$work/$1.chain" \
    --kinds "$work/$1.kinds" "staging=$work/$1-staging.trace" "production=$work/$1-production.trace"
}

# check_lat REGISTRY COUNT: REGISTRY serves the first COUNT images' digests.
check_lat() {
  head -n "$2" "$work/images.txt" >"$work/check-$1.txt"
  python3 "$here/seed_images.py" check --registry "127.0.0.1:${port_of[$1]}" \
    --list "$work/check-$1.txt" >/dev/null
}

if ((latency_ms > 0)); then
  echo "== phase 6: cold copy behind a $latency_ms ms round trip ($one_way_ms ms each way)" >&2
  # One image (img-000) without the proxies, then behind them: the latency floor.
  lat_manifest "$work/one-direct.yaml" "$staging" "127.0.0.1:${port_of[lat-direct]}" 1
  measure promoter-one-direct staging lat-direct -- \
    "$promoter" promote "$work/one-direct.yaml" --output json "${promoter_args[@]}"
  start_proxy one-staging staging
  start_proxy one-production lat-one
  lat_manifest "$work/one.yaml" "127.0.0.1:${proxy_port_of[one-staging]}" \
    "127.0.0.1:${proxy_port_of[one-production]}" 1
  measure promoter-one staging lat-one -- \
    "$promoter" promote "$work/one.yaml" --output json "${promoter_args[@]}"
  stop_proxy promoter-one one-staging one-production

  # LATENCY_IMAGES images: the promoter without the proxies (what the copy costs on loopback),
  # then each tool into its own empty production, through its own proxies.
  lat_manifest "$work/lat-base.yaml" "$staging" "127.0.0.1:${port_of[lat-base]}" "$latency_images"
  measure promoter-lat-base staging lat-base -- \
    "$promoter" promote "$work/lat-base.yaml" --output json "${promoter_args[@]}"
  start_proxy promoter-lat-staging staging
  start_proxy promoter-lat-production lat-promoter
  lat_manifest "$work/lat.yaml" "127.0.0.1:${proxy_port_of[promoter-lat-staging]}" \
    "127.0.0.1:${proxy_port_of[promoter-lat-production]}" "$latency_images"
  measure promoter-lat staging lat-promoter -- \
    "$promoter" promote "$work/lat.yaml" --output json "${promoter_args[@]}"
  stop_proxy promoter-lat promoter-lat-staging promoter-lat-production

  start_proxy skopeo-lat-staging staging
  start_proxy skopeo-lat-production lat-skopeo
  sync_yaml "$work/lat-sync.yaml" "127.0.0.1:${proxy_port_of[skopeo-lat-staging]}" "$latency_images"
  measure skopeo-lat staging lat-skopeo -- \
    "${skopeo_sync[@]}" "$work/lat-sync.yaml" "127.0.0.1:${proxy_port_of[skopeo-lat-production]}/bench"
  stop_proxy skopeo-lat skopeo-lat-staging skopeo-lat-production

  echo "== checking the latency phase's productions serve every digest" >&2
  check_lat lat-direct 1
  check_lat lat-one 1
  check_lat lat-base "$latency_images"
  check_lat lat-promoter "$latency_images"
  check_lat lat-skopeo "$latency_images"

  for kv in $(critical_path one); do one[${kv%%=*}]=${kv#*=}; done
  for name in promoter-lat skopeo-lat; do
    for kv in $(critical_path "$name"); do run_path[$name/${kv%%=*}]=${kv#*=}; done
  done
fi

# --- request breakdown ----------------------------------------------------------------------
# breakdown NAME REGISTRY ROLE [IMAGES]: requests REGISTRY logged during NAME, per image (of
# IMAGES, default all), by method, kind and status.
breakdown() {
  local name=$1 reg=$2 role=$3 n=${4:-$images}
  # (sed would print line FROM+1 of an empty range.)
  ((to_line[$name/$reg] > from_line[$name/$reg])) || return 0
  sed -n "$((from_line[$name/$reg] + 1)),${to_line[$name/$reg]}p" "$work/$reg/access.log" | awk -v role="$role" -v n="$n" '
    match($0, /"[A-Z]+ [^ ]+ HTTP/) {
      split(substr($0, RSTART + 1, RLENGTH - 1), req, " ")
      method = req[1]; path = req[2]
      rest = substr($0, RSTART + RLENGTH); split(rest, after, " "); status = after[2]
      if (path == "/v2/") kind = "/v2/ (ping)"
      else if (path ~ /\/manifests\/sha256:/) kind = "manifests/<digest>"
      else if (path ~ /\/manifests\//) kind = "manifests/<tag>"
      else if (path ~ /\/blobs\/uploads\/\?.*mount=/) kind = "blobs/uploads/?mount="
      else if (path ~ /\/blobs\/uploads\/$/) kind = "blobs/uploads/"
      else if (path ~ /\/blobs\/uploads\//) kind = "blobs/uploads/<session>"
      else if (path ~ /\/blobs\//) kind = "blobs/<digest>"
      else kind = "other"
      count[method " " kind " " status]++
    }
    END { for (k in count) printf "      %-10s %-46s %6d  %6.2f/image\n", role, k, count[k], count[k] / n }
  ' | sort -k1,1 -k5,5nr
}

# --- report ---------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "-" }'; }
per_image() { awk -v r="$1" -v n="$images" 'BEGIN { printf "%.1f", r / n }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
verdict() { if awk "BEGIN { exit !($1) }"; then echo "met"; else echo "MISSED"; fi; }

echo
echo "Images: $images x (1 shared + 2 unique layers of ~$layer_kib KiB + config), OCI, tag v1;" \
  "${seed[blobs]} unique blobs, $(mib "${seed[unique_blob_bytes]}")"
echo "promoter: $promoter ${promoter_args[*]}"
echo "skopeo:   $(skopeo --version) (sync, serial)"
echo
row() { printf '%-44s %14s %14s %8s %10s %8s\n' "$@"; }
header() {
  row "measure" "promoter" "skopeo sync" "ratio" "target" "verdict"
  row "$(printf '%.0s-' {1..44})" "--------------" "--------------" "--------" "----------" "--------"
}
if [[ $only_latency == false ]]; then
  cold_ratio=$(ratio "${wall_of[skopeo-cold]}" "${wall_of[promoter-cold]}")
  noop_ratio=$(ratio "${wall_of[skopeo-noop]}" "${wall_of[promoter-noop]}")
  fan_read=$(summary promoter-fanout bytes_read_from_source)
  fan_ratio=$(awk -v a="$fan_read" -v b="${seed[unique_blob_bytes]}" 'BEGIN { printf "%.2fx", a / b }')

  header
  row "cold copy, wall s" "${wall_of[promoter-cold]}" "${wall_of[skopeo-cold]}" "$cold_ratio" ">= 5x" \
    "$(verdict "${wall_of[skopeo-cold]} >= 5 * ${wall_of[promoter-cold]}")"
  row "no-op rerun, wall s" "${wall_of[promoter-noop]}" "${wall_of[skopeo-noop]}" "$noop_ratio" ">= 10x" \
    "$(verdict "${wall_of[skopeo-noop]} >= 10 * ${wall_of[promoter-noop]}")"
  row "cold: requests/image (registry logs)" "$(per_image "${reqs_of[promoter-cold]}")" \
    "$(per_image "${reqs_of[skopeo-cold]}")" "$(ratio "${reqs_of[skopeo-cold]}" "${reqs_of[promoter-cold]}")" "" ""
  row "no-op: requests/image (registry logs)" "$(per_image "${reqs_of[promoter-noop]}")" \
    "$(per_image "${reqs_of[skopeo-noop]}")" "$(ratio "${reqs_of[skopeo-noop]}" "${reqs_of[promoter-noop]}")" "" ""
  row "cold / no-op: promoter summary.requests" \
    "$(summary promoter-cold requests) / $(summary promoter-noop requests)" "" "" "" ""
  row "cold / no-op: peak RSS MiB" "$((rss_of[promoter-cold] / 1024)) / $((rss_of[promoter-noop] / 1024))" \
    "$((rss_of[skopeo-cold] / 1024)) / $((rss_of[skopeo-noop] / 1024))" "" "" ""
  row "cold / no-op: CPU s (user+sys)" "${cpu_of[promoter-cold]} / ${cpu_of[promoter-noop]}" \
    "${cpu_of[skopeo-cold]} / ${cpu_of[skopeo-noop]}" "" "" ""
  row "cold / no-op: registries' CPU s (src+dest)" \
    "${reg_cpu_of[promoter-cold]} / ${reg_cpu_of[promoter-noop]}" \
    "${reg_cpu_of[skopeo-cold]} / ${reg_cpu_of[skopeo-noop]}" "" "" ""
  row "fan-out x3: bytes read from staging" "$(mib "$fan_read")" "" "$fan_ratio" "1x" \
    "$(verdict "$fan_read <= ${seed[unique_blob_bytes]}")"
  row "  unique blob bytes of the images" "$(mib "${seed[unique_blob_bytes]}")" "" "" "" ""
  row "  wall s / requests logged (4 registries)" \
    "${wall_of[promoter-fanout]} / ${reqs_of[promoter-fanout]}" "" "" "" ""
  if ((big_mib > 0)); then
    big_read=$(summary promoter-big bytes_read_from_source)
    row "$big_mib MiB layer: peak RSS" "$(mib $((rss_of[promoter-big] * 1024)))" "" "" "< 64 MiB" \
      "$(verdict "${rss_of[promoter-big]} < 65536")"
    row "$big_mib MiB layer: wall s / CPU s" "${wall_of[promoter-big]} / ${cpu_of[promoter-big]}" "" "" "" ""
    row "$big_mib MiB layer: throughput" \
      "$(awk -v b="${big[layer_bytes]}" -v s="${wall_of[promoter-big]}" 'BEGIN { printf "%.0f MiB/s", b / 1048576 / s }')" \
      "" "" "" ""
    row "  bytes read from staging" "$(mib "$big_read")" "" "" "" ""
  fi
fi
if ((latency_ms > 0)); then
  floor=$(awk -v k="${one[round_trips]}" -v r="$latency_ms" 'BEGIN { printf "%.3f", k * r / 1000 }')
  [[ $only_latency == true ]] || echo
  echo "Phase 6: cold copy of $latency_images images behind a $latency_ms ms round trip" \
    "(delay proxies in front of staging and production):"
  header
  row "cold copy behind latency, wall s" "${wall_of[promoter-lat]}" "${wall_of[skopeo-lat]}" \
    "$(ratio "${wall_of[skopeo-lat]}" "${wall_of[promoter-lat]}")" ">= 20x" \
    "$(verdict "${wall_of[skopeo-lat]} >= 20 * ${wall_of[promoter-lat]}")"
  row "  the same copy without the proxies, wall s" "${wall_of[promoter-lat-base]}" "" "" "" ""
  row "  (behind - without) / RTT, round trips" "$(awk -v a="${wall_of[promoter-lat]}" \
    -v b="${wall_of[promoter-lat-base]}" -v r="$latency_ms" 'BEGIN { printf "%.1f", (a - b) * 1000 / r }')" \
    "" "" "" ""
  row "  requests: summary.requests / logged" \
    "$(summary promoter-lat requests) / ${reqs_of[promoter-lat]}" "${reqs_of[skopeo-lat]}" "" "" ""
  row "  CPU s: the tool / the 2 delay proxies" "${cpu_of[promoter-lat]} / ${proxy_cpu_of[promoter-lat]}" \
    "${cpu_of[skopeo-lat]} / ${proxy_cpu_of[skopeo-lat]}" "" "" ""
  row "  TCP connections opened (traced)" "${run_path[promoter-lat/connections]}" \
    "${run_path[skopeo-lat/connections]}" "" "" ""
  row "  round trips on the run's critical path" "${run_path[promoter-lat/round_trips]}" \
    "${run_path[skopeo-lat/round_trips]}" "" "" ""
  row "latency floor: ${one[round_trips]} round trips x $latency_ms ms" "$floor" "" "" "" ""
  row "  promoter wall / latency floor" "$(ratio "${wall_of[promoter-lat]}" "$floor")" "" "" "<= 2x" \
    "$(verdict "${wall_of[promoter-lat]} <= 2 * $floor")"
  row "one image: wall s behind proxies / without" \
    "${wall_of[promoter-one]} / ${wall_of[promoter-one-direct]}" "" "" "" ""
  row "  (behind - without) / RTT, round trips" "$(awk -v a="${wall_of[promoter-one]}" \
    -v b="${wall_of[promoter-one-direct]}" -v r="$latency_ms" 'BEGIN { printf "%.1f", (a - b) * 1000 / r }')" \
    "" "" "" ""
  row "  requests / TCP connections (traced)" "${one[requests]} / ${one[connections]}" "" "" "" ""
  echo
  echo "Critical path of one image (img-000) behind the proxies, one round trip a line" \
    "(begun -> answered, from the first connection):"
  sed 's/^/  /' "$work/one.chain"
  echo
  echo "Round trips on each critical path, by kind of request (traced):"
  printf '  %-24s %s\n' "promoter, 1 image:" "$(cat "$work/one.kinds")" \
    "promoter, $latency_images images:" "$(cat "$work/promoter-lat.kinds")" \
    "skopeo sync, $latency_images images:" "$(cat "$work/skopeo-lat.kinds")"
fi
echo
echo "Promoter summaries (units copied/present/failed, blobs copied/mounted, manifests, tags, requests, retried, s):"
summaries=()
[[ $only_latency == true ]] || summaries+=(promoter-cold promoter-noop promoter-fanout)
((big_mib > 0)) && summaries+=(promoter-big)
((latency_ms > 0)) && summaries+=(promoter-one-direct promoter-one promoter-lat-base promoter-lat)
for name in "${summaries[@]}"; do
  printf '  %-19s %s\n' "$name" "$(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
print("{units} units: {copied}/{present}/{failed}; blobs {blobs_copied}/{blobs_mounted}; "
      "manifests {manifests_written}; tags {tags_written}; requests {requests} ({requests_retried}); "
      "{seconds:.2f}s".format(**s))' "$work/$name.out")"
done
echo
echo "Requests logged per phase, by registry, method, kind and status (per image):"
if [[ $only_latency == false ]]; then
  for phase in cold noop; do
    echo "  promoter-$phase:"
    breakdown "promoter-$phase" staging staging
    breakdown "promoter-$phase" prod-promoter production
    echo "  skopeo-$phase:"
    breakdown "skopeo-$phase" staging staging
    breakdown "skopeo-$phase" prod-skopeo production
  done
fi
if ((latency_ms > 0)); then
  echo "  promoter-one (behind latency, 1 image):"
  breakdown promoter-one staging staging 1
  breakdown promoter-one lat-one production 1
  echo "  promoter-lat ($latency_images images):"
  breakdown promoter-lat staging staging "$latency_images"
  breakdown promoter-lat lat-promoter production "$latency_images"
  echo "  skopeo-lat ($latency_images images):"
  breakdown skopeo-lat staging staging "$latency_images"
  breakdown skopeo-lat lat-skopeo production "$latency_images"
fi
