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
#      the promoter's peak RSS (/usr/bin/time -v), wall time and throughput.
#
# Targets printed beside the figures: >= 5x faster than skopeo sync cold, >= 10x on the no-op
# rerun, 1x unique bytes read for the fan-out, < 64 MiB peak RSS for the big layer.
#
# Usage: bench/promote-vs-skopeo.sh [--images N] [--layer-kib K] [--big-mib M] [--keep]
#                                   [--promoter-arg ARG]...
#
#   --images N          images to seed and copy (default 200)
#   --layer-kib K       size of each small layer's file, KiB (default 300)
#   --big-mib M         size of the big layer, MiB (default 1024; 0 skips phase 5)
#   --promoter-arg ARG  extra argument for every `promoter promote` (repeatable), e.g.
#                       --promoter-arg --max-requests-per-second --promoter-arg 1000
#   --keep              keep the work directory (registry logs, manifests, outputs)
#
# The promoter is built in release mode (honours CARGO_TARGET_DIR). Both tools run anonymous
# against plain-HTTP loopback registries, with an empty Docker config (DOCKER_CONFIG) and no
# skopeo auth file. skopeo keeps its blob-info cache in /var/lib/containers/cache (root) or
# ~/.local/share/containers/cache; its entries are keyed by registry host:port, so the fresh
# ports of each run start cold. Registries and the work directory are removed on exit.
#
# Exits non-zero when a command fails; missing the targets is only reported (this is a
# benchmark, not a test). Needs docker-registry, skopeo, python3, curl and GNU time
# (apt-get install docker-registry skopeo curl time). Takes a few minutes.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

images=200
layer_kib=300
big_mib=1024
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
cleanup() {
  local pid
  for pid in "${registry_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${registry_pids[@]}"; do
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

registries=(staging prod-promoter prod-skopeo fan-1 fan-2 fan-3)
((big_mib > 0)) && registries+=(prod-big)
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
promoter_manifest "$work/promote.yaml" prod-promoter
promoter_manifest "$work/fanout.yaml" fan-1 fan-2 fan-3
{
  echo "$staging:"
  echo "  tls-verify: false"
  echo "  images:"
  while read -r repo _; do
    echo "    $repo: [\"v1\"]"
  done <"$work/images.txt"
} >"$work/sync.yaml"

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

# --- request breakdown ----------------------------------------------------------------------
# breakdown NAME REGISTRY ROLE: requests REGISTRY logged during NAME, per image, by method,
# kind and status.
breakdown() {
  local name=$1 reg=$2 role=$3
  # (sed would print line FROM+1 of an empty range.)
  ((to_line[$name/$reg] > from_line[$name/$reg])) || return 0
  sed -n "$((from_line[$name/$reg] + 1)),${to_line[$name/$reg]}p" "$work/$reg/access.log" | awk -v role="$role" -v n="$images" '
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

cold_ratio=$(ratio "${wall_of[skopeo-cold]}" "${wall_of[promoter-cold]}")
noop_ratio=$(ratio "${wall_of[skopeo-noop]}" "${wall_of[promoter-noop]}")
fan_read=$(summary promoter-fanout bytes_read_from_source)
fan_ratio=$(awk -v a="$fan_read" -v b="${seed[unique_blob_bytes]}" 'BEGIN { printf "%.2fx", a / b }')

echo
echo "Images: $images x (1 shared + 2 unique layers of ~$layer_kib KiB + config), OCI, tag v1;" \
  "${seed[blobs]} unique blobs, $(mib "${seed[unique_blob_bytes]}")"
echo "promoter: $promoter ${promoter_args[*]}"
echo "skopeo:   $(skopeo --version) (sync, serial)"
echo
row() { printf '%-44s %14s %14s %8s %10s %8s\n' "$@"; }
row "measure" "promoter" "skopeo sync" "ratio" "target" "verdict"
row "$(printf '%.0s-' {1..44})" "--------------" "--------------" "--------" "----------" "--------"
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
echo
echo "Promoter summaries (units copied/present/failed, blobs copied/mounted, manifests, tags, requests, retried, s):"
for name in promoter-cold promoter-noop promoter-fanout ${big[digest]:+promoter-big}; do
  printf '  %-16s %s\n' "$name" "$(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
print("{units} units: {copied}/{present}/{failed}; blobs {blobs_copied}/{blobs_mounted}; "
      "manifests {manifests_written}; tags {tags_written}; requests {requests} ({requests_retried}); "
      "{seconds:.2f}s".format(**s))' "$work/$name.out")"
done
echo
echo "Requests logged per phase, by registry, method, kind and status (per image = / $images):"
for phase in cold noop; do
  echo "  promoter-$phase:"
  breakdown "promoter-$phase" staging staging
  breakdown "promoter-$phase" prod-promoter production
  echo "  skopeo-$phase:"
  breakdown "skopeo-$phase" staging staging
  breakdown "skopeo-$phase" prod-skopeo production
done
