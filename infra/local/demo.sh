#!/usr/bin/env bash
# The quick start: a full local promotion on loopback registries.
#
# 1. installs (apt) and starts a staging registry (127.0.0.1:5001) and a production registry
#    with htpasswd auth (127.0.0.1:5002), and seeds staging with sample images built from
#    nothing (infra/local/stack.sh);
# 2. validates and plans the example thin-manifest tree (examples/thin), against its base as a
#    presubmit would;
# 3. promotes it, signing every digest with a fresh key: a dry run, the real copy, then a rerun
#    that finds everything done; verifies a signature;
# 4. checks with skopeo, an independent client, that production holds staging's exact bytes.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/promoter-target}"
export PROMOTER_STACK_DIR="${PROMOTER_STACK_DIR:-/var/tmp/promoter-stack}"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

bash infra/local/stack.sh up
bash infra/local/stack.sh seed >/dev/null
cargo build --locked --quiet -p promoter-cli
promoter="$CARGO_TARGET_DIR/debug/promoter"

# Production credentials the way docker login stores them.
export DOCKER_CONFIG="$PROMOTER_STACK_DIR/docker"
mkdir -p "$DOCKER_CONFIG"
printf '{"auths":{"127.0.0.1:5002":{"auth":"%s"}}}\n' "$(printf promoter:promoter | base64)" \
    >"$DOCKER_CONFIG/config.json"

cd examples
step promoter validate thin
"$promoter" validate thin

step promoter plan thin --base thin-base --output markdown
"$promoter" plan thin --base thin-base --output markdown

step promoter promote thin --dry-run
"$promoter" promote thin --dry-run | tail -n 3

# A signing key, cosign's way (PREFIX.key private, PREFIX.pub public), and fresh state for this
# demo (outside the checkout), so that every run of the demo promotes and signs with its key.
rm -f "$PROMOTER_STACK_DIR/cosign.key" "$PROMOTER_STACK_DIR/cosign.pub"
export PROMOTER_STATE="$PROMOTER_STACK_DIR/demo-state"
rm -rf "$PROMOTER_STATE"
"$promoter" keys generate "$PROMOTER_STACK_DIR/cosign" >/dev/null

step promoter promote thin --key cosign.key
"$promoter" promote thin --key "$PROMOTER_STACK_DIR/cosign.key"

step promoter promote thin --key cosign.key "   # again: nothing left to do"
"$promoter" promote thin --key "$PROMOTER_STACK_DIR/cosign.key"

step promoter verify 127.0.0.1:5002/eu/hello/hello:1.0 --key cosign.pub
"$promoter" verify 127.0.0.1:5002/eu/hello/hello:1.0 --key "$PROMOTER_STACK_DIR/cosign.pub"

step "skopeo inspect --raw: production equals staging, byte for byte"
for image in hello/hello:1.0 hello/charts/hello:0.1.0 tools/debug:v2; do
    repo=${image%%:*} tag=${image##*:}
    staging=$(skopeo inspect --raw --tls-verify=false "docker://127.0.0.1:5001/staging/$repo:$tag" | sha256sum)
    for region in us eu asia; do
        production=$(skopeo inspect --raw --tls-verify=false --creds promoter:promoter \
            "docker://127.0.0.1:5002/$region/$repo:$tag" | sha256sum)
        if [[ $production != "$staging" ]]; then
            echo "MISMATCH: $region/$repo:$tag" >&2
            exit 1
        fi
        printf '  %-32s sha256:%s\n' "$region/$repo:$tag" "${production%% *}"
    done
done
printf '\nThe demo ran: manifests validated and planned, images promoted to 3 mirrors and signed, verified.\n'
