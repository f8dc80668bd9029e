#!/usr/bin/env bash
# Benchmark `promoter validate` and `promoter plan` on a Kubernetes-scale thin-manifest tree.
#
# Builds the promoter in release mode (honours CARGO_TARGET_DIR), generates a tree shaped like
# registry.k8s.io with bench/gen_k8s_tree.py (default 500 projects, 46,000 digests, 20
# destinations each: 920,000 edges) plus a base tree without the last 10% of each project's
# digests, then runs each command RUNS times under /usr/bin/time -v and prints the median wall
# time and the maximum peak RSS.
#
# Usage: bench/plan-scale.sh [--projects N] [--digests N] [--destinations N]
#                            [--base-fraction F] [--runs N] [--keep]
#
# Exits non-zero when a promoter command fails; missing the targets is only reported (this is a
# benchmark, not a test). Needs python3 and GNU time (apt-get install time).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

projects=500
digests=46000
destinations=20
base_fraction=0.1
runs=3
keep=false

die() {
  echo "plan-scale: $*" >&2
  exit 2
}

while (($#)); do
  case $1 in
    --projects) projects=${2:?}; shift 2 ;;
    --digests) digests=${2:?}; shift 2 ;;
    --destinations) destinations=${2:?}; shift 2 ;;
    --base-fraction) base_fraction=${2:?}; shift 2 ;;
    --runs) runs=${2:?}; shift 2 ;;
    --keep) keep=true; shift ;;
    -h | --help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"

[[ -x /usr/bin/time ]] || die "/usr/bin/time not found: apt-get install -y time"
command -v python3 >/dev/null || die "python3 not found"

# --- build ----------------------------------------------------------------------------------
echo "== building promoter-cli (release)" >&2
(cd "$root" && cargo build --release --quiet -p promoter-cli)
target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
promoter="$target_dir/release/promoter"
[[ -x $promoter ]] || die "built binary not found at $promoter"

# --- generate -------------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/plan-scale.XXXXXX")
if [[ $keep == true ]]; then
  echo "== keeping $work" >&2
else
  trap 'rm -rf "$work"' EXIT
fi
tree="$work/tree"
base="$work/base"

echo "== generating $projects projects, $digests digests, $destinations destinations" >&2
counts=$(python3 "$here/gen_k8s_tree.py" "$tree" --base-out "$base" \
  --projects "$projects" --digests "$digests" --destinations "$destinations" \
  --base-fraction "$base_fraction")
declare -A count=()
for kv in $counts; do
  count[${kv%%=*}]=${kv#*=}
done
tree_size=$(du -sh "$tree" | cut -f1)

# --- measure --------------------------------------------------------------------------------
# measure NAME CMD...: runs CMD (via bash -c when it is a pipeline) $runs times; records the
# median wall time and the maximum peak RSS. A failing run aborts the benchmark.
declare -a rows=()
declare -A wall_of=() rss_of=()
measure() {
  local name=$1
  shift
  local walls=() rss_max=0 i timing wall rss
  for ((i = 1; i <= runs; i++)); do
    timing="$work/time.txt"
    if ! /usr/bin/time -v -o "$timing" "$@" >"$work/stdout" 2>"$work/stderr"; then
      echo "plan-scale: FAILED: $name" >&2
      cat "$work/stderr" >&2
      grep -h 'Exit status\|Command terminated' "$timing" >&2 || true
      exit 1
    fi
    # "Elapsed (wall clock) time (h:mm:ss or m:ss): 0:01.23" -> seconds.
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {
        n = split($2, p, ":"); s = 0; for (j = 1; j <= n; j++) s = s * 60 + p[j]; printf "%.2f", s
      }' "$timing")
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$timing")
    walls+=("$wall")
    ((rss > rss_max)) && rss_max=$rss
    echo "   $name run $i: ${wall}s, $((rss / 1024)) MiB" >&2
  done
  wall_of[$name]=$(printf '%s\n' "${walls[@]}" | sort -g | sed -n "$(((runs + 1) / 2))p")
  rss_of[$name]=$rss_max
  rows+=("$name")
}

echo "== measuring ($runs runs each)" >&2
cmd_validate="promoter validate TREE"
cmd_plan="promoter plan TREE --output json > /dev/null"
cmd_text="promoter plan TREE > /dev/null"
cmd_base="promoter plan TREE --base BASE --output json > /dev/null"
measure "$cmd_validate" "$promoter" validate "$tree"
measure "$cmd_plan" "$promoter" plan "$tree" --output json
measure "$cmd_text" "$promoter" plan "$tree" --output text
measure "$cmd_base" "$promoter" plan "$tree" --base "$base" --output json

# Output sizes (separate runs, not timed), and the plan's own summary as a cross-check.
# A failure aborts (pipefail + set -e); its stderr is shown first.
show_stderr() { cat "$work/size.err" >&2; }
trap show_stderr ERR
json_bytes=$("$promoter" plan "$tree" --output json 2>"$work/size.err" |
  tee -p >(head -c 400 >"$work/head.json") | wc -c)
base_json_bytes=$("$promoter" plan "$tree" --base "$base" --output json 2>"$work/size.err" | wc -c)
trap - ERR
# The summary comes first in the (compact) JSON document.
summary_edges=$(grep -o '"edges": *[0-9]*' "$work/head.json" | grep -o '[0-9]*$' | head -n 1)

# --- report ---------------------------------------------------------------------------------
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }

echo
echo "Tree: ${count[projects]} projects, ${count[images]} images, ${count[digests]} digests," \
  "${count[destinations]} destinations each -> ${count[edges]} edges ($tree_size on disk)"
echo "Base: ${count[base_digests]} digests (--base-fraction $base_fraction) ->" \
  "${count[added_edges]} edges added by the change"
echo "Plan summary edges: ${summary_edges:-?} (expected ${count[edges]})"
echo "Plan JSON size: $(mb "$json_bytes") (with --base: $(mb "$base_json_bytes"))"
echo "promoter: $promoter; $runs runs each, median wall, max peak RSS"
echo
printf '%-58s %8s %10s\n' "command" "wall s" "peak MiB"
printf '%-58s %8s %10s\n' "$(printf '%.0s-' {1..58})" "--------" "----------"
for name in "${rows[@]}"; do
  printf '%-58s %8s %10s\n' "$name" "${wall_of[$name]}" "$(mib "${rss_of[$name]}")"
done
echo
echo "Anchor: Kubernetes promoter: ~700 MB peak for ~1M edges; target here: plan < 2 s and < 300 MB"
verdict="met"
for name in "$cmd_plan" "$cmd_base"; do
  if awk -v w="${wall_of[$name]}" -v r="${rss_of[$name]}" \
    'BEGIN { exit !(w >= 2 || r / 1024 >= 300) }'; then
    verdict="MISSED ($name)"
  fi
done
echo "Target: $verdict"
if [[ -n $summary_edges && $summary_edges != "${count[edges]}" ]]; then
  echo "warning: the plan counts $summary_edges edges, the generator ${count[edges]}" >&2
fi
