#!/usr/bin/env bash
# validate-manifest's answer to a GitHub push on a Kubernetes-sized manifest tree, in one run:
# the generated tree (bench/gen_k8s_tree.py: 46,000 digests in 500 projects × 21 mirrors, about
# 966,000 edges), everything in it already promoted (the promoted ledger written from its plan),
# and a merge that adds one digest. The webhook is signed and handled exactly as Lambda would
# (`promoter invoke validate-manifest` on a Function URL event): HMAC check, the manifests folder
# fetched from a local stand-in for GitHub's Git database API (the tree, then only the blobs not
# in the blob cache in state), every manifest validated and planned, the ledger read, the run
# recorded in a local state folder, its one unit sent to an SQS queue in moto. The commit before
# is pushed first (it finds everything promoted, and fills the blob cache).
#
# Prints each push's latency (the process, start to answer, as a cold Lambda would spend it
# minus the runtime's own start), the units and messages it enqueued, the requests and bytes it
# took from GitHub (beside the tarball a push used to download), and the target (< 5 s; GitHub
# gives a webhook 10 s). As a baseline in the same run, the same push with
# `PROMOTER_FULL_RUNS=true` (every unit enqueued, the behaviour before the ledger) is timed too,
# with moto's SendMessageBatch throughput beside it, up to --full-limit digests: moto slows down
# as its queue grows (150 messages/s into an empty queue, 17/s by 2,000), so beyond that the
# baseline would measure moto, not the promoter.
#
# Usage: bench/webhook-scale.sh [--digests N] [--projects N] [--mirrors N] [--full-limit N] [--keep]
#
# Builds promoter-cli in release mode (honours CARGO_TARGET_DIR). Needs python3 and the
# tests' venv (/var/tmp/promoter-venv, with moto; infra/local/test.sh makes it). A benchmark,
# not a test: it fails only when a command does.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
digests=46000
projects=500
mirrors=21
full_limit=2000
keep=false
while (($#)); do
  case $1 in
    --digests) digests=${2:?}; shift 2 ;;
    --projects) projects=${2:?}; shift 2 ;;
    --mirrors) mirrors=${2:?}; shift 2 ;;
    --full-limit) full_limit=${2:?}; shift 2 ;;
    --keep) keep=true; shift ;;
    -h | --help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "webhook-scale: unknown argument $1" >&2; exit 2 ;;
  esac
done
venv=${PROMOTER_VENV:-/var/tmp/promoter-venv}
[[ -x $venv/bin/moto_server ]] || { echo "webhook-scale: no moto in $venv (run infra/local/test.sh once)" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/promoter-target}"
echo "== building promoter-cli (release)" >&2
(cd "$root" && cargo build --release --quiet -p promoter-cli)
promoter="$CARGO_TARGET_DIR/release/promoter"

work=$(mktemp -d "${TMPDIR:-/tmp}/webhook-scale.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [[ $keep == true ]]; then echo "== kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== generating $digests digests in $projects projects × $mirrors mirrors" >&2
python3 "$here/gen_k8s_tree.py" "$work/repo" --digests "$digests" --projects "$projects" \
  --destinations "$mirrors" >"$work/counts.txt"
cat "$work/counts.txt" >&2

echo "== writing the promoted ledger of everything (from the plan)" >&2
"$promoter" plan "$work/repo" --output json >"$work/plan.json"
mkdir -p "$work/state"
python3 - "$work/plan.json" "$work/state" <<'PY'
# The promoted ledger as copy-digest writes it after verifying each unit everywhere
# (shared/src/state/ledger/promoted.rs): promoted/<first two hex of the unit id>.json, each
# destination a fingerprint, 16 hex of sha256(REPOSITORY "\n" TAG,TAG,...) (plan/incremental.rs).
import hashlib, json, os, sys
plan, state = json.load(open(sys.argv[1])), sys.argv[2]
shards = {}
for unit in plan["units"]:
    prints = sorted(
        hashlib.sha256((d["repository"] + "\n" + ",".join(d["tags"])).encode()).hexdigest()[:16]
        for d in unit["destinations"])
    shards.setdefault(unit["id"][:2], {})[unit["id"]] = {
        "destinations": prints, "signed": True, "attested": True}
os.makedirs(os.path.join(state, "promoted"), exist_ok=True)
for shard, units in shards.items():
    with open(os.path.join(state, "promoted", shard + ".json"), "w") as f:
        json.dump({"schema": "promoter.promoted/v1", "units": units}, f)
print(f"{len(plan['units'])} units in {len(shards)} shards", file=sys.stderr)
PY
rm "$work/plan.json"

echo "== the merge: one digest added to the first project" >&2
cp -r "$work/repo" "$work/repo-base"
first=$(find "$work/repo/images" -name images.yaml | sort | awk 'NR == 1')
printf -- '- name: webhook-scale-added\n  dmap:\n    "sha256:%s": ["v1"]\n' \
  "$(printf 'webhook-scale' | sha256sum | cut -c1-64)" >>"$first"
base_sha=0000000000000000000000000000000000000b45
sha=0123456789abcdef0123456789abcdef01234567
python3 - "$work/repo" "$work/tarball.tar.gz" "$sha" <<'PY'
# GitHub's tarball: one top-level folder, owner-name-sha/ (only to print its size).
import sys, tarfile
repo, out, sha = sys.argv[1], sys.argv[2], sys.argv[3]
with tarfile.open(out, "w:gz") as tar:
    tar.add(repo, arcname=f"example-manifests-{sha[:7]}")
PY
tarball_bytes=$(stat -c %s "$work/tarball.tar.gz")

github_port=$(free_port)
python3 - "$github_port" "$work/github.log" "$base_sha=$work/repo-base" "$sha=$work/repo" <<'PY' &
# A stand-in for GitHub's Git database API of example/manifests: the tree of each commit
# (recursive) and its blobs by id, as validate-manifest reads them; each answer logged with its
# size.
import hashlib, http.server, json, os, sys
port, log = int(sys.argv[1]), sys.argv[2]
trees, blobs = {}, {}
for arg in sys.argv[3:]:
    sha, root = arg.split("=", 1)
    entries = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            content = open(path, "rb").read()
            blob = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
            blobs[blob] = content
            entries.append({"path": os.path.relpath(path, root), "mode": "100644", "type": "blob",
                            "sha": blob, "size": len(content)})
    trees[sha] = json.dumps({"sha": sha, "tree": entries, "truncated": False}).encode()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        prefix = "/repos/example/manifests/git/"
        body = None
        if self.path.startswith(prefix + "trees/"):
            body = trees.get(self.path[len(prefix + "trees/"):].split("?")[0])
        elif self.path.startswith(prefix + "blobs/"):
            body = blobs.get(self.path[len(prefix + "blobs/"):])
        with open(log, "a") as f:
            f.write(f"{self.path} {len(body) if body else 0}\n")
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
PY
pids+=($!)
moto_port=$(free_port)
"$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$moto_port/" && curl -s -o /dev/null "http://127.0.0.1:$github_port/" && break
  sleep 0.1
done

export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export AWS_ENDPOINT_URL_SQS="http://127.0.0.1:$moto_port"
queue() { # NAME → queue URL
  "$venv/bin/python" - "$1" <<'PY'
import boto3, sys
sqs = boto3.client("sqs")
print(sqs.create_queue(QueueName=sys.argv[1])["QueueUrl"])
PY
}
secret=webhook-scale-secret
push_event() { # BEFORE AFTER DELIVERY OUT
  "$venv/bin/python" - "$@" "$secret" <<'PY'
# A Function URL event carrying a signed GitHub push.
import hashlib, hmac, json, sys
before, sha, delivery, out, secret = sys.argv[1:6]
body = json.dumps({
    "ref": "refs/heads/main",
    "before": before,
    "after": sha,
    "repository": {"full_name": "example/manifests", "name": "manifests", "owner": {"login": "example"}},
    "pusher": {"name": "maintainer"},
    "commits": [{"id": sha, "message": "Promote one image"}],
    "head_commit": {"id": sha, "message": "Promote one image"},
})
signature = "sha256=" + hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
event = {
    "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
    "headers": {"content-type": "application/json", "x-github-event": "push",
                "x-github-delivery": delivery, "x-hub-signature-256": signature},
    "requestContext": {"accountId": "anonymous", "apiId": "x", "domainName": "x.lambda-url.us-east-1.on.aws",
                       "domainPrefix": "x", "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1",
                       "sourceIp": "127.0.0.1", "userAgent": "GitHub-Hookshot/bench"},
                       "requestId": "bench", "routeKey": "$default", "stage": "$default",
                       "time": "06/Dec/2026:12:00:00 +0000", "timeEpoch": 1796558400000},
    "body": body, "isBase64Encoded": False,
}
json.dump(event, open(out, "w"))
PY
}
push_event 0000000000000000000000000000000000000000 "$base_sha" webhook-scale-0 "$work/push-base.json"
push_event "$base_sha" "$sha" webhook-scale-1 "$work/push.json"

declare -A wall=() units=() enqueued=() gh_requests=() gh_bytes=()
webhook() { # NAME EVENT STATE QUEUE [VAR=VALUE...]
  local name=$1 event=$2 state=$3 queue_url=$4 start end logged
  shift 4
  [[ $queue_url == http* ]] || { echo "webhook-scale: no SQS queue in moto" >&2; exit 1; }
  logged=$(wc -l <"$work/github.log" 2>/dev/null || echo 0)
  start=$(date +%s.%N)
  env PROMOTER_STATE="$state" PROMOTER_COPY_QUEUE_URL="$queue_url" \
    PROMOTER_GITHUB_API="http://127.0.0.1:$github_port" PROMOTER_GITHUB_WEBHOOK_SECRET="$secret" \
    PROMOTER_CHAIN_SIGNS=true RUST_LOG="${RUST_LOG:-warn}" "$@" \
    "$promoter" invoke validate-manifest --event "$event" >"$work/$name.json" 2>"$work/$name.err"
  end=$(date +%s.%N)
  wall[$name]=$(python3 -c "print(f'{$end - $start:.2f}')")
  read -r units[$name] enqueued[$name] < <(python3 -c "
import json, sys
answer = json.load(open('$work/$name.json'))['result']
body = json.loads(answer['body'])
print(body.get('units', '-'), body.get('enqueued', '-'))")
  read -r gh_requests[$name] gh_bytes[$name] < <(tail -n +"$((logged + 1))" "$work/github.log" |
    awk '{n++; b += $2} END {print n + 0, b + 0}')
  echo "== $name: ${wall[$name]} s, ${units[$name]} units, ${enqueued[$name]} enqueued, GitHub ${gh_requests[$name]} requests ${gh_bytes[$name]} bytes" >&2
}

touch "$work/github.log"
# The previous commit first: its push finds everything promoted and fills the blob cache.
webhook previous "$work/push-base.json" "$work/state" "$(queue previous)"
cp -r "$work/state" "$work/state-full"
webhook incremental "$work/push.json" "$work/state" "$(queue incremental)"
if ((digests <= full_limit)); then
  webhook full "$work/push.json" "$work/state-full" "$(queue full)" PROMOTER_FULL_RUNS=true
else
  wall[full]=-; units[full]=0; enqueued[full]="skipped (> --full-limit $full_limit digests)"
fi

edges=$(sed -n 's/.*edges=\([0-9]*\).*/\1/p' "$work/counts.txt")
cat <<EOF

webhook-scale: a push adding one digest to $digests promoted digests × $mirrors mirrors ($edges edges)
the whole tree as a tarball would be $tarball_bytes bytes (one request per push, before)
case          wall s   units   enqueued   GitHub requests, bytes
previous      $(printf '%6s  %6s  %8s   %6s %10s' "${wall[previous]}" "${units[previous]}" "${enqueued[previous]}" "${gh_requests[previous]}" "${gh_bytes[previous]}")   (the commit before, blob cache empty: the tree and every file)
incremental   $(printf '%6s  %6s  %8s   %6s %10s' "${wall[incremental]}" "${units[incremental]}" "${enqueued[incremental]}" "${gh_requests[incremental]}" "${gh_bytes[incremental]}")   (desired − promoted, the tree and the changed file; target < 5 s)
full          $(printf '%6s  %6s  %8s' "${wall[full]}" "${units[full]}" "${enqueued[full]}")   (PROMOTER_FULL_RUNS=true: every unit, the behaviour before the ledger; SQS in moto)
EOF
[[ ${wall[full]} == - ]] || python3 -c "
full, units = float('${wall[full]}'), int('${units[full]}' or 0)
inc = float('${wall[incremental]}')
print(f'full / incremental: {full / max(inc, 0.01):.1f}x wall; moto took {units / max(full - inc, 0.01):,.0f} messages/s in SendMessageBatch calls of 10, 8 in flight')
"
