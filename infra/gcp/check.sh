#!/usr/bin/env bash
# Checks infra/gcp/setup.sh without a Google Cloud project or network:
#   1. shellcheck on infra/gcp/*.sh (installed by infra/local/stack.sh install if missing);
#   2. --dry-run with sample inputs prints the expected gcloud commands and never the token,
#      and matches the transcript in infra/gcp/README.md;
#   3. invalid inputs are refused (and a malformed token is not echoed);
#   4. if gcloud is installed, every printed command is parsed by the real gcloud, offline and
#      signed out (an unknown flag fails with "unrecognized arguments"; a valid command stops
#      at "You do not currently have an active account selected");
#   5. a real (non-dry) run against a fake gcloud: the token reaches gcloud only inside a
#      private flags file (never argv, never the output), describe output is discarded, a second
#      run over existing resources updates instead of creating, denied access stops the run.
#
# Usage: infra/gcp/check.sh                 run the checks
#        infra/gcp/check.sh --update-readme rewrite the README's dry-run transcript
set -euo pipefail
cd "$(dirname "$0")/../.."

SETUP=$PWD/infra/gcp/setup.sh
README=infra/gcp/README.md
TOKEN=Zm9yLXRlc3RzLW9ubHktbm90LWEtcmVhbC10b2tlbg-sample
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

failures=0
pass() { printf 'ok   %s\n' "$*"; }
fail() {
    printf 'FAIL %s\n' "$*" >&2
    failures=$((failures + 1))
}

# The README's sample: every option that changes the commands printed.
sample_args=(
    --project example-promoter --project-number 123456789012 --region us-central1
    --state-bucket example-promoter-state
    --production-registry "us-docker.pkg.dev/example-promoter/images,europe-docker.pkg.dev/example-promoter/images"
    --production-registry gcr.io/example-promoter
    --staging-registry us-docker.pkg.dev/example-staging/staging
    --audit-url https://abcdefghij.lambda-url.eu-west-1.on.aws/
    --audit-token-file audit-token
    --aws-account-id 111122223333 --aws-role "promoter-copy-digest,promoter-sign,promoter-audit"
)
printf '%s\n' "$TOKEN" >"$WORK/audit-token"
dry_run() { # runs setup.sh --dry-run ARGS in $WORK (so the token file's name is fixed)
    (cd "$WORK" && "$SETUP" --dry-run "$@")
}

# --- --update-readme ------------------------------------------------------------------------

BEGIN_MARK='<!-- dry-run:begin (infra/gcp/check.sh --update-readme) -->'
END_MARK='<!-- dry-run:end -->'
transcript() {
    local i
    printf '```console\n$ infra/gcp/setup.sh --dry-run'
    for ((i = 0; i < ${#sample_args[@]}; i += 2)); do
        printf ' \\\n    %s %s' "${sample_args[i]}" "${sample_args[i + 1]}"
    done
    printf '\n'
    dry_run "${sample_args[@]}" 2>/dev/null
    printf '```\n'
}
readme_block() {
    awk -v b="$BEGIN_MARK" -v e="$END_MARK" '$0 == e { on = 0 } on { print } $0 == b { on = 1 }' "$README"
}
if [[ ${1:-} == --update-readme ]]; then
    transcript >"$WORK/transcript"
    awk -v b="$BEGIN_MARK" -v e="$END_MARK" -v f="$WORK/transcript" '
        $0 == b { print; while ((getline line < f) > 0) print line; skip = 1; next }
        $0 == e { skip = 0 }
        !skip { print }' "$README" >"$WORK/readme"
    cp "$WORK/readme" "$README"
    echo "updated $README"
    exit 0
fi

# --- 1. shellcheck --------------------------------------------------------------------------

if ! command -v shellcheck >/dev/null; then
    bash infra/local/stack.sh install
fi
if shellcheck infra/gcp/*.sh; then
    pass "shellcheck infra/gcp/*.sh"
else
    fail "shellcheck infra/gcp/*.sh"
fi

# --- 2. the dry run -------------------------------------------------------------------------

if "$SETUP" --help | grep -q -- '--audit-token-secret'; then
    pass "--help"
else
    fail "--help"
fi

if dry_run "${sample_args[@]}" >"$WORK/dry.out" 2>"$WORK/dry.err"; then
    pass "dry run with sample inputs"
else
    fail "dry run with sample inputs: $(cat "$WORK/dry.err")"
fi
if grep -qF -- "$TOKEN" "$WORK/dry.out" "$WORK/dry.err"; then
    fail "the dry run printed the audit token"
else
    pass "the dry run does not print the audit token"
fi
if grep -v '^#' "$WORK/dry.out" | grep -qv '^gcloud '; then
    fail "the dry run printed a line that is neither a gcloud command nor a comment"
fi
expected=(
    'gcloud services enable artifactregistry.googleapis.com pubsub.googleapis.com storage.googleapis.com iam.googleapis.com iamcredentials.googleapis.com sts.googleapis.com --project=example-promoter'
    'gcloud storage buckets describe gs://example-promoter-state --project=example-promoter'
    'gcloud storage buckets create gs://example-promoter-state --project=example-promoter --location=us-central1 --uniform-bucket-level-access --public-access-prevention'
    "gcloud storage buckets update gs://example-promoter-state --project=example-promoter --versioning --uniform-bucket-level-access --public-access-prevention '--lifecycle-file=<tmp>/lifecycle.json'"
    'gcloud iam service-accounts describe promoter@example-promoter.iam.gserviceaccount.com --project=example-promoter'
    'gcloud iam service-accounts create promoter --project=example-promoter'
    'gcloud storage buckets add-iam-policy-binding gs://example-promoter-state --member=serviceAccount:promoter@example-promoter.iam.gserviceaccount.com --role=roles/storage.objectAdmin --condition=None'
    'gcloud artifacts repositories add-iam-policy-binding images --location=us --project=example-promoter --member=serviceAccount:promoter@example-promoter.iam.gserviceaccount.com --role=roles/artifactregistry.writer'
    'gcloud artifacts repositories add-iam-policy-binding images --location=europe --project=example-promoter --member=serviceAccount:promoter@example-promoter.iam.gserviceaccount.com --role=roles/artifactregistry.writer'
    'gcloud artifacts repositories add-iam-policy-binding gcr.io --location=us --project=example-promoter --member=serviceAccount:promoter@example-promoter.iam.gserviceaccount.com --role=roles/artifactregistry.writer'
    'gcloud artifacts repositories add-iam-policy-binding staging --location=us --project=example-staging --member=serviceAccount:promoter@example-promoter.iam.gserviceaccount.com --role=roles/artifactregistry.reader'
    'gcloud pubsub topics describe gcr --project=example-promoter'
    'gcloud pubsub topics create gcr --project=example-promoter'
    'gcloud pubsub topics create promoter-audit-dead-letter --project=example-promoter'
    'gcloud pubsub subscriptions create promoter-audit-dead-letter --project=example-promoter --topic=promoter-audit-dead-letter --message-retention-duration=31d --expiration-period=never'
    "gcloud pubsub subscriptions create promoter-audit --project=example-promoter --topic=gcr '--flags-file=<tmp>/push-endpoint.yaml' --ack-deadline=60 --min-retry-delay=10s --max-retry-delay=600s --dead-letter-topic=promoter-audit-dead-letter --max-delivery-attempts=10 --expiration-period=never"
    "#   --push-endpoint: 'https://abcdefghij.lambda-url.eu-west-1.on.aws/?token=<audit token>'"
    'gcloud pubsub topics add-iam-policy-binding promoter-audit-dead-letter --project=example-promoter --member=serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com --role=roles/pubsub.publisher'
    'gcloud pubsub subscriptions add-iam-policy-binding promoter-audit --project=example-promoter --member=serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com --role=roles/pubsub.subscriber'
    'gcloud iam workload-identity-pools create promoter-aws --location=global --project=example-promoter'
    'gcloud iam workload-identity-pools providers create-aws aws-lambda --workload-identity-pool=promoter-aws --location=global --project=example-promoter --account-id=111122223333'
    'gcloud iam service-accounts add-iam-policy-binding promoter@example-promoter.iam.gserviceaccount.com --project=example-promoter --role=roles/iam.workloadIdentityUser --member=principalSet://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/promoter-aws/attribute.aws_role/arn:aws:sts::111122223333:assumed-role/promoter-sign'
    'gcloud iam workload-identity-pools create-cred-config projects/123456789012/locations/global/workloadIdentityPools/promoter-aws/providers/aws-lambda --service-account=promoter@example-promoter.iam.gserviceaccount.com --aws --output-file=promoter-google-credentials.json'
    '#   PROMOTER_STATE=gs://example-promoter-state/promoter'
)
missing=0
for line in "${expected[@]}"; do
    if ! grep -qF -- "$line" "$WORK/dry.out"; then
        fail "the dry run lacks: $line"
        missing=$((missing + 1))
    fi
done
((missing > 0)) || pass "the dry run prints the ${#expected[@]} expected commands"
# Least privilege: no project-level grant, no broad role.
if grep -E '^gcloud (projects add-iam-policy-binding|.*roles/(owner|editor|viewer|storage\.admin|artifactregistry\.(admin|repoAdmin)))' "$WORK/dry.out"; then
    fail "the dry run grants a project-level or broad role"
else
    pass "no project-level binding, no broad role"
fi
if ! grep -qF -- 'roles/artifactregistry.writer' <(grep 'staging' "$WORK/dry.out"); then
    pass "staging is only read"
else
    fail "staging gets write access"
fi

if diff -u <(readme_block) <(transcript) >"$WORK/readme.diff"; then
    pass "README transcript matches the dry run"
else
    cat "$WORK/readme.diff" >&2
    fail "README transcript differs from the dry run (infra/gcp/check.sh --update-readme)"
fi

# With OIDC push, CMEK, Secret Manager and a production registry in a second project.
if dry_run --project example-promoter --region eu --state-bucket s-b \
    --kms-key projects/example-promoter/locations/eu/keyRings/promoter/cryptoKeys/state \
    --production-registry eu.gcr.io/other-project/x,us-docker.pkg.dev/example-promoter/images \
    --audit-url https://audit.example.com/pubsub --audit-token-secret projects/sec-project/secrets/audit-token \
    --push-auth-service-account promoter-push --push-auth-token-audience https://audit.example.com \
    >"$WORK/dry2.out" 2>"$WORK/dry2.err"; then
    ok=1
    for line in \
        'gcloud storage service-agent --project=example-promoter --authorize-cmek=projects/example-promoter/locations/eu/keyRings/promoter/cryptoKeys/state' \
        '--public-access-prevention --default-encryption-key=projects/example-promoter/locations/eu/keyRings/promoter/cryptoKeys/state' \
        'gcloud secrets versions access latest --secret=audit-token --project=sec-project' \
        'gcloud artifacts repositories add-iam-policy-binding eu.gcr.io --location=europe --project=other-project' \
        "gcloud projects describe other-project '--format=value(projectNumber)'" \
        'gcloud pubsub topics create gcr --project=other-project' \
        '--push-auth-service-account=promoter-push@example-promoter.iam.gserviceaccount.com --push-auth-token-audience=https://audit.example.com' \
        'gcloud iam service-accounts add-iam-policy-binding promoter-push@example-promoter.iam.gserviceaccount.com --project=example-promoter --member=serviceAccount:service-PROJECT_NUMBER_OF_other-project@gcp-sa-pubsub.iam.gserviceaccount.com --role=roles/iam.serviceAccountTokenCreator'; do
        grep -qF -- "$line" "$WORK/dry2.out" || {
            ok=0
            fail "the second dry run lacks: $line"
        }
    done
    grep -q 'note: --push-auth-service-account' "$WORK/dry2.err" || {
        ok=0
        fail "no note that the audit handler authenticates OIDC-signed pushes by their ?token="
    }
    ((ok == 0)) || pass "dry run with CMEK, Secret Manager, OIDC push and two projects"
else
    fail "second dry run: $(cat "$WORK/dry2.err")"
fi

# --- 3. invalid inputs ----------------------------------------------------------------------

refuse() { # DESCRIPTION EXPECTED-MESSAGE ARGS...
    local what=$1 message=$2
    shift 2
    if dry_run "$@" >"$WORK/bad.out" 2>"$WORK/bad.err"; then
        fail "accepted $what"
    elif ! grep -qF -- "$message" "$WORK/bad.err"; then
        fail "refused $what without saying '$message': $(cat "$WORK/bad.err")"
    else
        pass "refuses $what"
    fi
}
without() { # the sample arguments without option $1 (and its value)
    local skip=$1 i
    WITHOUT=()
    for ((i = 0; i < ${#sample_args[@]}; i += 2)); do
        [[ ${sample_args[i]} == "$skip" ]] || WITHOUT+=("${sample_args[i]}" "${sample_args[i + 1]}")
    done
}
without --project
refuse "a missing --project" "--project is required" "${WITHOUT[@]}"
refuse "an audit URL with a query" "invalid --audit-url" "${sample_args[@]}" --audit-url 'https://a.example/?x=1'
refuse "an http audit URL" "invalid --audit-url" "${sample_args[@]}" --audit-url 'http://a.example/'
refuse "a registry that is not Google's" "invalid --production-registry" "${sample_args[@]}" --production-registry 'docker.io/library/x'
refuse "a repository both staging and production" "both staging and production" "${sample_args[@]}" \
    --staging-registry us-docker.pkg.dev/example-promoter/images/x
refuse "both token sources" "exclude each other" "${sample_args[@]}" --audit-token-secret s
refuse "too few delivery attempts" "--max-delivery-attempts must be 5-100" "${sample_args[@]}" --max-delivery-attempts 3
refuse "an AWS role without an account" "go together" --project example-promoter --region us \
    --state-bucket b-b-b --production-registry gcr.io/example-promoter --audit-url https://a.example/ \
    --audit-token-file audit-token --aws-role r
refuse "an unknown option" "unknown option: --bogus" "${sample_args[@]}" --bogus 1
bad_token='not a url-safe token & "quoted"'
printf '%s\n' "$bad_token" >"$WORK/bad-token"
refuse "a token that is not URL-safe" "the audit token must be" "${sample_args[@]}" --audit-token-file bad-token
if grep -qF -- "url-safe token" "$WORK/bad.err" "$WORK/bad.out"; then
    fail "the refusal echoed the malformed token"
fi

# --- 4. the real gcloud parses every command (offline, signed out) ---------------------------

# The README's gcloud commands outside the transcript: fenced sh lines joined across `\`,
# comments dropped, those needing the shell ($(...), pipes) or elided (…) left out.
readme_commands() {
    awk '/^```sh$/ { on = 1; next } /^```/ { on = 0 } on' "$README" |
        sed 's/[[:space:]]*#.*$//' |
        awk '/\\$/ { sub(/\\$/, ""); line = line $0; next } { print line $0; line = "" }' |
        grep '^gcloud ' | grep -vF -e "\$(" -e '|' -e '…' || true
}

if command -v gcloud >/dev/null && command -v python3 >/dev/null; then
    export CLOUDSDK_CONFIG="$WORK/gcloud-config" CLOUDSDK_CORE_DISABLE_PROMPTS=1 \
        CLOUDSDK_CORE_CHECK_GCE_METADATA=false CLOUDSDK_CORE_DISABLE_FILE_LOGGING=1 \
        CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK=1 CLOUDSDK_CORE_DISABLE_USAGE_REPORTING=true
    mkdir -p "$CLOUDSDK_CONFIG"
    printf -- "--push-endpoint: 'https://audit.example/?token=x'\n" >"$WORK/push-endpoint.yaml"
    printf '{"rule": []}\n' >"$WORK/lifecycle.json"
    parsed=0
    while IFS= read -r line; do
        line=${line//<tmp>/$WORK}
        line=${line//--output-file=promoter-google-credentials.json/--output-file=$WORK/cred.json}
        mapfile -d '' -t argv < <(python3 -c 'import shlex, sys; sys.stdout.write("\0".join(shlex.split(sys.argv[1])))' "$line")
        status=0
        out=$(timeout 120 "${argv[@]}" </dev/null 2>&1) || status=$?
        if ((status == 0)) || [[ $out == *"You do not currently have an active account selected"* ]]; then
            parsed=$((parsed + 1))
        else
            fail "gcloud does not accept: $line"$'\n'"$(printf '%s\n' "$out" | head -5)"
        fi
    done < <({
        cat "$WORK/dry.out" "$WORK/dry2.out"
        readme_commands
    } | grep '^gcloud ' | sort -u)
    pass "gcloud $(gcloud version 2>/dev/null | head -1 | sed 's/Google Cloud SDK //') parsed $parsed commands (the dry runs' and the README's)"
    unset CLOUDSDK_CONFIG CLOUDSDK_CORE_DISABLE_FILE_LOGGING
else
    echo "skip gcloud not installed: commands not parsed by gcloud"
fi

# --- 5. a real run against a fake gcloud ----------------------------------------------------

cat >"$WORK/fake-gcloud" <<'EOF'
#!/usr/bin/env bash
# Records each call; answers describes as FAKE_MODE says (absent, present, denied).
set -euo pipefail
printf '%s\n' "$*" >>"$FAKE_DIR/calls"
args=" $* "
sensitive() {
    [[ ${CLOUDSDK_CORE_DISABLE_FILE_LOGGING:-} == 1 ]] || echo "file logging on: $1" >>"$FAKE_DIR/problems"
}
case $args in
" projects describe "*) echo 123456789012 ;;
" secrets versions access "*)
    sensitive "secrets access"
    printf '%s\n' "$FAKE_TOKEN"
    ;;
*" describe "*)
    case $FAKE_MODE in
    absent) echo "ERROR: NOT_FOUND: Resource not found" >&2 && exit 1 ;;
    denied) echo "ERROR: PERMISSION_DENIED: caller lacks permission" >&2 && exit 1 ;;
    # What gcloud prints for a subscription includes its endpoint, token and all.
    *) echo "pushConfig: {pushEndpoint: 'https://a.example/?token=$FAKE_TOKEN'}" ;;
    esac
    ;;
*" --flags-file="*)
    sensitive "subscriptions"
    for arg in "$@"; do
        if [[ $arg == --flags-file=* ]]; then
            file=${arg#--flags-file=}
            printf '%s\n' "$file" >>"$FAKE_DIR/flags-files"
            [[ $(stat -c %a "$file") == 600 ]] || echo "flags file mode $(stat -c %a "$file")" >>"$FAKE_DIR/problems"
            if [[ $(<"$file") == "--push-endpoint: '$FAKE_URL?token=$FAKE_TOKEN'" ]]; then
                echo ok >>"$FAKE_DIR/flags-ok"
            else
                echo "flags file content differs" >>"$FAKE_DIR/problems"
            fi
        fi
    done
    # Echo the endpoint as an unwary tool might: the script must redact it.
    echo "Updated subscription [x] with pushEndpoint https://a.example/?token=$FAKE_TOKEN" >&2
    ;;
*" create-cred-config "*)
    for arg in "$@"; do
        [[ $arg != --output-file=* ]] || echo '{"type": "external_account"}' >"${arg#--output-file=}"
    done
    ;;
esac
EOF
chmod +x "$WORK/fake-gcloud"
real_run() { # MODE ARGS...: a real run of setup.sh on the fake gcloud, in $WORK/run-MODE
    local mode=$1
    shift
    local dir="$WORK/run-$mode"
    mkdir -p "$dir"
    cp "$WORK/audit-token" "$dir/"
    (cd "$dir" && FAKE_DIR=$dir FAKE_MODE=$mode FAKE_TOKEN=$TOKEN \
        FAKE_URL=https://abcdefghij.lambda-url.eu-west-1.on.aws/ PROMOTER_GCP_GCLOUD="$WORK/fake-gcloud" \
        "$SETUP" "$@" >"$dir/out" 2>"$dir/err")
}
for mode in absent present; do
    dir="$WORK/run-$mode"
    if ! real_run "$mode" "${sample_args[@]}"; then
        fail "real run ($mode) on a fake gcloud: $(tail -5 "$dir/err")"
        continue
    fi
    if grep -qF -- "$TOKEN" "$dir/out" "$dir/err" "$dir/calls"; then
        fail "real run ($mode): the token appears in the output or in gcloud's arguments"
    elif [[ -s $dir/problems ]]; then
        fail "real run ($mode): $(sort -u "$dir/problems" | tr '\n' ';')"
    elif [[ ! -s $dir/flags-ok ]]; then
        fail "real run ($mode): no subscription got the push endpoint through a flags file"
    elif [[ -e $(dirname "$(head -1 "$dir/flags-files")") ]]; then
        fail "real run ($mode): the private temporary folder was left behind"
    elif [[ ! -s $dir/promoter-google-credentials.json ]]; then
        fail "real run ($mode): no credential configuration written"
    else
        pass "real run ($mode) on a fake gcloud: token only in a 0600 flags file, removed after"
    fi
done
# bucket, service account, topics gcr and dead letters, their two subscriptions, pool, provider
creates=$(grep -cE ' create(-aws)? ' "$WORK/run-absent/calls" || true)
if grep -qE ' create(-aws)? ' "$WORK/run-present/calls"; then
    fail "the second run created a resource that exists"
elif ! grep -q '^pubsub subscriptions update promoter-audit ' "$WORK/run-present/calls"; then
    fail "the second run did not update the existing subscription"
elif ((creates != 8)); then
    fail "the first run created $creates resources, not 8"
else
    pass "idempotent: first run creates $creates resources, second run updates instead"
fi
if real_run denied "${sample_args[@]}"; then
    fail "a denied describe did not stop the run"
elif grep -q 'cannot tell whether .* exists' "$WORK/run-denied/err" && ! grep -q ' create ' "$WORK/run-denied/calls"; then
    pass "a denied describe stops the run before any create"
else
    fail "a denied describe: $(tail -3 "$WORK/run-denied/err")"
fi
without --audit-token-file
if real_run secret "${WITHOUT[@]}" --audit-token-secret projects/sec-project/secrets/audit-token/versions/3 &&
    grep -q '^secrets versions access 3 --secret=audit-token --project=sec-project$' "$WORK/run-secret/calls" &&
    [[ -s $WORK/run-secret/flags-ok ]] && ! grep -qF -- "$TOKEN" "$WORK/run-secret/out" "$WORK/run-secret/err"; then
    pass "the token read from Secret Manager reaches the flags file only"
else
    fail "Secret Manager token: $(tail -3 "$WORK/run-secret/err")"
fi

if ((failures > 0)); then
    echo "infra/gcp/check.sh: $failures failure(s)" >&2
    exit 1
fi
echo "infra/gcp/check.sh: all checks passed"
