#!/usr/bin/env bash
# A local registry stack on loopback, for trying the promoter by hand:
#
#   staging     127.0.0.1:5001  anonymous
#   production  127.0.0.1:5002  htpasswd auth, user `promoter`, password `promoter`
#
# Both are CNCF distribution (`docker-registry` from apt) with filesystem storage. State
# (configs, storage, pid files, logs, seeded.txt) lives in ${PROMOTER_STACK_DIR:-/var/tmp/promoter-stack}.
# PROMOTER_STAGING_PORT / PROMOTER_PRODUCTION_PORT move the ports (e.g. for a second stack).
#
# Usage: stack.sh install   apt-get install what is missing (docker-registry, skopeo,
#                           apache2-utils, the shell linter, git, openssl, python3-venv)
#        stack.sh up        install if needed, then (re)start both registries; storage is kept
#        stack.sh seed      push sample images, built from nothing, to staging; print REPO@DIGEST TAG
#        stack.sh status    show what runs
#        stack.sh down      stop both registries
#        stack.sh purge     stop, then delete all state
#
# Seeded (deterministic digests): staging/hello/hello:1.0 (OCI index, linux/amd64 + linux/arm64),
# staging/hello/charts/hello:0.1.0 (single image), staging/tools/debug:v1 and :v2 (sharing a base
# layer).
set -euo pipefail

STACK_DIR=$(realpath -m "${PROMOTER_STACK_DIR:-/var/tmp/promoter-stack}")
STAGING_PORT="${PROMOTER_STAGING_PORT:-5001}"
PRODUCTION_PORT="${PROMOTER_PRODUCTION_PORT:-5002}"
PROD_USER=promoter
PROD_PASSWORD=promoter

log() { printf '%s\n' "$*" >&2; }
die() {
    log "stack.sh: $*"
    exit 1
}

install() {
    local missing=()
    command -v docker-registry >/dev/null || missing+=(docker-registry)
    command -v skopeo >/dev/null || missing+=(skopeo)
    command -v htpasswd >/dev/null || missing+=(apache2-utils)
    command -v curl >/dev/null || missing+=(curl)
    command -v python3 >/dev/null || missing+=(python3)
    python3 -c "import ensurepip" 2>/dev/null || missing+=(python3-venv)
    command -v shellcheck >/dev/null || missing+=(shellcheck)
    command -v git >/dev/null || missing+=(git)
    command -v openssl >/dev/null || missing+=(openssl)
    if ((${#missing[@]} == 0)); then
        return
    fi
    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "need root (or sudo) to install: ${missing[*]}"
        sudo=(sudo)
    fi
    log "installing: ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# The pid in NAME's pid file if that process is still our docker-registry, else nothing.
running_pid() {
    local name=$1 pidfile="$STACK_DIR/$1/registry.pid" pid
    [[ -f $pidfile ]] || return 0
    pid=$(<"$pidfile")
    if [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/cmdline ]] &&
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "docker-registry serve $STACK_DIR/$name/config.yml"; then
        echo "$pid"
    fi
}

stop_one() {
    local name=$1 pid
    pid=$(running_pid "$name")
    if [[ -n $pid ]]; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            [[ -d /proc/$pid ]] || break
            sleep 0.1
        done
        if [[ -d /proc/$pid ]]; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
        log "stopped $name (pid $pid)"
    fi
    rm -f "$STACK_DIR/$name/registry.pid"
}

# The HTTP status of GET /v2/ on PORT, or 000 if nothing answers.
probe() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/v2/" || true
}

start_one() {
    local name=$1 port=$2 auth=$3 dir="$STACK_DIR/$1" status
    mkdir -p "$dir/storage"
    status=$(probe "$port")
    [[ $status == 000 ]] || die "127.0.0.1:$port is already taken by another process (HTTP $status)"
    local auth_yaml=""
    if [[ $auth == htpasswd ]]; then
        htpasswd -Bbn "$PROD_USER" "$PROD_PASSWORD" >"$dir/htpasswd"
        auth_yaml="auth:
  htpasswd:
    realm: promoter-$name
    path: $dir/htpasswd"
    fi
    cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: promoter-local-$name
health:
  storagedriver:
    enabled: false
$auth_yaml
EOF
    (
        # distribution takes REGISTRY_* variables as config overrides: none may leak in.
        while read -r var; do unset "$var"; done < <(compgen -e | grep '^REGISTRY_' || true)
        exec setsid docker-registry serve "$dir/config.yml" >>"$dir/registry.log" 2>&1 </dev/null
    ) &
    echo $! >"$dir/registry.pid"
    for _ in $(seq 300); do  # 30 s: a loaded 2-core CI machine can be slow to start it
        status=$(probe "$port")
        if [[ $status == 200 || $status == 401 ]]; then
            log "started $name on 127.0.0.1:$port (pid $(<"$dir/registry.pid"), GET /v2/ -> $status)"
            return
        fi
        [[ -n $(running_pid "$name") ]] || break
        sleep 0.1
    done
    tail -n 20 "$dir/registry.log" >&2 || true
    die "$name did not start; log: $dir/registry.log"
}

up() {
    install
    mkdir -p "$STACK_DIR"
    stop_one staging
    stop_one production
    start_one staging "$STAGING_PORT" anonymous
    start_one production "$PRODUCTION_PORT" htpasswd
    log "staging:    127.0.0.1:$STAGING_PORT (anonymous)"
    log "production: 127.0.0.1:$PRODUCTION_PORT (user $PROD_USER, password $PROD_PASSWORD)"
    log "state:      $STACK_DIR"
}

down() {
    stop_one staging
    stop_one production
}

status() {
    local name port pid
    for name in staging production; do
        [[ $name == staging ]] && port=$STAGING_PORT || port=$PRODUCTION_PORT
        pid=$(running_pid "$name")
        if [[ -n $pid ]]; then
            echo "$name: running, pid $pid, 127.0.0.1:$port, GET /v2/ -> $(probe "$port")"
        else
            echo "$name: stopped"
        fi
    done
}

# Writes OCI image layouts under $1 (one per repository; tags as ref.name annotations) and prints
# "LAYOUT TAG DIGEST" for each tag. Python stdlib only; gzip'd tar layers with mtime 0, so the
# digests do not change from one run to the next.
make_layouts() {
    python3 - "$1" <<'PY'
import gzip, hashlib, io, json, os, shutil, sys, tarfile

out = sys.argv[1]

def dump(obj):
    return json.dumps(obj, separators=(",", ":")).encode()

class Layout:
    def __init__(self, name):
        self.dir = os.path.join(out, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(os.path.join(self.dir, "blobs", "sha256"))
        self.name, self.refs = name, []

    def blob(self, data, media_type):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.dir, "blobs", "sha256", digest), "wb") as f:
            f.write(data)
        return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}

    def tag(self, descriptor, tag):
        ref = dict(descriptor)
        ref["annotations"] = {"org.opencontainers.image.ref.name": tag}
        self.refs.append(ref)
        print(self.name, tag, descriptor["digest"])

    def close(self):
        with open(os.path.join(self.dir, "oci-layout"), "wb") as f:
            f.write(dump({"imageLayoutVersion": "1.0.0"}))
        with open(os.path.join(self.dir, "index.json"), "wb") as f:
            f.write(dump({"schemaVersion": 2, "manifests": self.refs}))

def layer(files):
    """A gzip'd tar (mtime 0, root-owned) of {path: text}; returns (blob, diff_id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, compresslevel=9, mtime=0), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()

BASE = layer({"etc/os-release": "NAME=promoter-sample-base\nID=sample\n"})

def image(layout, arch, layers, cmd):
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": cmd, "Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id for _, diff_id in layers]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "stack.sh seed"} for _ in layers],
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": layout.blob(dump(config), "application/vnd.oci.image.config.v1+json"),
        "layers": [layout.blob(blob, "application/vnd.oci.image.layer.v1.tar+gzip") for blob, _ in layers],
    }
    descriptor = layout.blob(dump(manifest), manifest["mediaType"])
    descriptor["platform"] = {"architecture": arch, "os": "linux"}
    return descriptor

hello = Layout("hello")
children = [
    image(hello, arch, [BASE, layer({"hello": "hello from linux/%s\n" % arch})], ["/hello"])
    for arch in ("amd64", "arm64")
]
index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": children}
hello.tag(hello.blob(dump(index), index["mediaType"]), "1.0")
hello.close()

chart = Layout("charts-hello")
single = image(chart, "amd64", [BASE, layer({"chart/Chart.yaml": "name: hello\nversion: 0.1.0\n"})], ["/hello"])
single.pop("platform")
chart.tag(single, "0.1.0")
chart.close()

debug = Layout("debug")
for version in ("v1", "v2"):
    descriptor = image(debug, "amd64", [BASE, layer({"usr/bin/debug": "debug tool %s\n" % version})], ["/usr/bin/debug"])
    descriptor.pop("platform")
    debug.tag(descriptor, version)
debug.close()
PY
}

seed() {
    [[ $(probe "$STAGING_PORT") == 200 ]] || die "staging is not up on 127.0.0.1:$STAGING_PORT: run '$0 up' first"
    local layouts="$STACK_DIR/layouts" seeded="$STACK_DIR/seeded.txt" line layout tag digest repo got
    mkdir -p "$layouts"
    local -A repos=([hello]=staging/hello/hello [charts-hello]=staging/hello/charts/hello [debug]=staging/tools/debug)
    local lines=()
    while read -r line; do lines+=("$line"); done < <(make_layouts "$layouts")
    : >"$seeded.tmp"
    for line in "${lines[@]}"; do
        read -r layout tag digest <<<"$line"
        repo=${repos[$layout]}
        skopeo copy --all --preserve-digests --quiet --dest-tls-verify=false \
            "oci:$layouts/$layout:$tag" "docker://127.0.0.1:$STAGING_PORT/$repo:$tag" >&2
        # Check with an independent read: the registry serves exactly the bytes built.
        got=sha256:$(skopeo inspect --raw --no-creds --tls-verify=false \
            "docker://127.0.0.1:$STAGING_PORT/$repo:$tag" | sha256sum | cut -d' ' -f1)
        [[ $got == "$digest" ]] || die "$repo:$tag: pushed $digest but the registry serves $got"
        echo "$repo@$digest $tag" | tee -a "$seeded.tmp"
    done
    mv "$seeded.tmp" "$seeded"
    log "seeded 127.0.0.1:$STAGING_PORT; list in $seeded"
}

purge() {
    down
    rm -rf "$STACK_DIR"
    log "removed $STACK_DIR"
}

case "${1:-}" in
install) install ;;
up) up ;;
seed) seed ;;
status) status ;;
down) down ;;
purge) purge ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
