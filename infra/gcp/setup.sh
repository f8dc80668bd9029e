#!/usr/bin/env bash
# Connects Google registries to the promoter: a GCS bucket for state, a least-privilege service
# account, the `gcr` Pub/Sub topic pushed to the audit endpoint (with retries and a dead-letter
# topic), and optionally Workload Identity Federation for a promoter running on AWS.
# Idempotent: every resource is described before it is created; bindings are re-added as is.
# See infra/gcp/README.md; `setup.sh --help` lists the inputs.
set -euo pipefail

PROG=${0##*/}

usage() {
    cat <<'EOF'
Usage: setup.sh [--dry-run] --project ID --region REGION --state-bucket NAME
                --production-registry NAME [...] [--staging-registry NAME ...]
                --audit-url URL (--audit-token-secret SECRET | --audit-token-file FILE)
                [options]

Each option can also come from the environment variable shown; flags win. List options take
repeated flags or comma-separated values.

Required
  --project ID                  PROMOTER_GCP_PROJECT: project of the bucket, service account
                                and Workload Identity pool
  --region REGION               PROMOTER_GCP_REGION: the state bucket's location (a region such
                                as us-central1, or a multi-region such as us)
  --state-bucket NAME           PROMOTER_GCP_STATE_BUCKET: bucket for the promoter's state
  --production-registry NAME    PROMOTER_GCP_PRODUCTION_REGISTRIES: production registries as the
                                manifests name them: LOCATION-docker.pkg.dev/PROJECT/REPO[/PATH]
                                or [us.|eu.|asia.]gcr.io/PROJECT[/PATH] (gcr.io repositories in
                                Artifact Registry). Gets roles/artifactregistry.writer on the
                                repository; the `gcr` topic of each repository's project is
                                pushed to the audit endpoint.
  --audit-url URL               PROMOTER_GCP_AUDIT_URL: the audit function's URL (AWS Lambda
                                Function URL, or a Cloud Run URL): https, no query string
  --audit-token-secret SECRET   PROMOTER_GCP_AUDIT_TOKEN_SECRET: Secret Manager secret holding
                                PROMOTER_AUDIT_TOKEN: NAME, or projects/P/secrets/NAME, optionally
                                ending in /versions/V (default: latest)
  --audit-token-file FILE       PROMOTER_GCP_AUDIT_TOKEN_FILE: or a file holding it (one line)
                                The token is never printed: 16 to 512 characters of
                                A-Z a-z 0-9 . _ ~ - (it travels as ?token= in the push URL).

Options
  --staging-registry NAME       PROMOTER_GCP_STAGING_REGISTRIES: staging registries (same forms;
                                omit staging that is not on Google): roles/artifactregistry.reader
                                on each repository
  --state-prefix PREFIX         PROMOTER_GCP_STATE_PREFIX (promoter): names under the bucket;
                                PROMOTER_STATE=gs://BUCKET/PREFIX
  --project-number NUMBER       PROMOTER_GCP_PROJECT_NUMBER: --project's number (else looked up)
  --kms-key KEY                 PROMOTER_GCP_KMS_KEY: CMEK for the bucket,
                                projects/P/locations/L/keyRings/R/cryptoKeys/K
  --noncurrent-days DAYS        PROMOTER_GCP_NONCURRENT_DAYS (30): delete replaced state object
                                versions after DAYS (0: keep them; versioning stays on)
  --service-account ID          PROMOTER_GCP_SERVICE_ACCOUNT (promoter): the promoter's account,
                                ID@PROJECT.iam.gserviceaccount.com
  --subscription NAME           PROMOTER_GCP_SUBSCRIPTION (promoter-audit): push subscription
  --dead-letter-topic NAME      PROMOTER_GCP_DEAD_LETTER_TOPIC (promoter-audit-dead-letter): also
                                the name of the pull subscription that keeps dead letters
  --ack-deadline SECONDS        PROMOTER_GCP_ACK_DEADLINE (60): how long a push may take, 10-600
  --min-retry-delay DURATION    PROMOTER_GCP_MIN_RETRY_DELAY (10s): exponential backoff bounds,
  --max-retry-delay DURATION    PROMOTER_GCP_MAX_RETRY_DELAY (600s): 0s-600s
  --max-delivery-attempts N     PROMOTER_GCP_MAX_DELIVERY_ATTEMPTS (10): then the message goes to
                                the dead-letter topic, 5-100
  --push-auth-service-account ID_OR_EMAIL
                                PROMOTER_GCP_PUSH_AUTH_SERVICE_ACCOUNT: also sign each push with
                                an OIDC token of this account (created if an ID is given).
                                The audit handler does not verify the OIDC token: it still
                                authenticates the push by its ?token= (checked first).
  --push-auth-token-audience AUDIENCE
                                PROMOTER_GCP_PUSH_AUTH_TOKEN_AUDIENCE: the OIDC token's audience
                                (default: the push endpoint)
  --aws-account-id ID           PROMOTER_GCP_AWS_ACCOUNT_ID: Workload Identity Federation for a
  --aws-role NAME               PROMOTER_GCP_AWS_ROLES: promoter on AWS: these IAM roles (the
                                Lambda functions' execution roles) of that account may act as
                                the service account. Both or neither.
  --wif-pool ID                 PROMOTER_GCP_WIF_POOL (promoter-aws): workload identity pool
  --wif-provider ID             PROMOTER_GCP_WIF_PROVIDER (aws-lambda): its AWS provider
  --wif-credentials-file FILE   PROMOTER_GCP_WIF_CREDENTIALS_FILE
                                (promoter-google-credentials.json): where to write the credential
                                configuration (GOOGLE_APPLICATION_CREDENTIALS; holds no secret)
  --dry-run                     print every gcloud command instead of running it (nothing is
                                called; existing resources are taken as absent)
  -h, --help                    this text

PROMOTER_GCP_GCLOUD names the gcloud to run (default: gcloud; the check uses a fake).
EOF
}

log() { printf '%s\n' "$*" >&2; }
die() {
    log "$PROG: $*"
    exit 1
}

# --- inputs ---------------------------------------------------------------------------------

PROJECT=${PROMOTER_GCP_PROJECT:-}
PROJECT_NUMBER=${PROMOTER_GCP_PROJECT_NUMBER:-}
REGION=${PROMOTER_GCP_REGION:-}
BUCKET=${PROMOTER_GCP_STATE_BUCKET:-}
PREFIX=${PROMOTER_GCP_STATE_PREFIX-promoter}
KMS_KEY=${PROMOTER_GCP_KMS_KEY:-}
NONCURRENT_DAYS=${PROMOTER_GCP_NONCURRENT_DAYS:-30}
SA_ID=${PROMOTER_GCP_SERVICE_ACCOUNT:-promoter}
AUDIT_URL=${PROMOTER_GCP_AUDIT_URL:-}
TOKEN_SECRET=${PROMOTER_GCP_AUDIT_TOKEN_SECRET:-}
TOKEN_FILE=${PROMOTER_GCP_AUDIT_TOKEN_FILE:-}
SUBSCRIPTION=${PROMOTER_GCP_SUBSCRIPTION:-promoter-audit}
DEAD_LETTER=${PROMOTER_GCP_DEAD_LETTER_TOPIC:-promoter-audit-dead-letter}
ACK_DEADLINE=${PROMOTER_GCP_ACK_DEADLINE:-60}
MIN_RETRY=${PROMOTER_GCP_MIN_RETRY_DELAY:-10s}
MAX_RETRY=${PROMOTER_GCP_MAX_RETRY_DELAY:-600s}
MAX_ATTEMPTS=${PROMOTER_GCP_MAX_DELIVERY_ATTEMPTS:-10}
PUSH_SA=${PROMOTER_GCP_PUSH_AUTH_SERVICE_ACCOUNT:-}
PUSH_AUDIENCE=${PROMOTER_GCP_PUSH_AUTH_TOKEN_AUDIENCE:-}
AWS_ACCOUNT=${PROMOTER_GCP_AWS_ACCOUNT_ID:-}
WIF_POOL=${PROMOTER_GCP_WIF_POOL:-promoter-aws}
WIF_PROVIDER=${PROMOTER_GCP_WIF_PROVIDER:-aws-lambda}
WIF_FILE=${PROMOTER_GCP_WIF_CREDENTIALS_FILE:-promoter-google-credentials.json}
GCLOUD=${PROMOTER_GCP_GCLOUD:-gcloud}
DRY_RUN=0

# Comma-separated environment lists; flags append to them.
split_into() {
    local -n list_ref=$1
    local item
    local -a items
    IFS=, read -r -a items <<<"$2"
    for item in "${items[@]}"; do
        item=${item//[[:space:]]/}
        [[ -z $item ]] || list_ref+=("$item")
    done
}
PRODUCTION=()
STAGING=()
AWS_ROLES=()
split_into PRODUCTION "${PROMOTER_GCP_PRODUCTION_REGISTRIES:-}"
split_into STAGING "${PROMOTER_GCP_STAGING_REGISTRIES:-}"
split_into AWS_ROLES "${PROMOTER_GCP_AWS_ROLES:-}"

# `--flag=value` becomes `--flag value`.
args=()
for arg in "$@"; do
    case $arg in
    --*=*) args+=("${arg%%=*}" "${arg#*=}") ;;
    *) args+=("$arg") ;;
    esac
done
set -- "${args[@]+"${args[@]}"}"
while (($#)); do
    flag=$1
    shift
    case $flag in
    -h | --help)
        usage
        exit 0
        ;;
    --dry-run)
        DRY_RUN=1
        continue
        ;;
    --*) (($#)) || die "$flag needs a value (see --help)" ;;
    *) die "unexpected argument: $flag (see --help)" ;;
    esac
    value=$1
    shift
    case $flag in
    --project) PROJECT=$value ;;
    --project-number) PROJECT_NUMBER=$value ;;
    --region) REGION=$value ;;
    --state-bucket) BUCKET=$value ;;
    --state-prefix) PREFIX=$value ;;
    --kms-key) KMS_KEY=$value ;;
    --noncurrent-days) NONCURRENT_DAYS=$value ;;
    --service-account) SA_ID=$value ;;
    --production-registry) split_into PRODUCTION "$value" ;;
    --staging-registry) split_into STAGING "$value" ;;
    --audit-url) AUDIT_URL=$value ;;
    --audit-token-secret) TOKEN_SECRET=$value ;;
    --audit-token-file) TOKEN_FILE=$value ;;
    --subscription) SUBSCRIPTION=$value ;;
    --dead-letter-topic) DEAD_LETTER=$value ;;
    --ack-deadline) ACK_DEADLINE=$value ;;
    --min-retry-delay) MIN_RETRY=$value ;;
    --max-retry-delay) MAX_RETRY=$value ;;
    --max-delivery-attempts) MAX_ATTEMPTS=$value ;;
    --push-auth-service-account) PUSH_SA=$value ;;
    --push-auth-token-audience) PUSH_AUDIENCE=$value ;;
    --aws-account-id) AWS_ACCOUNT=$value ;;
    --aws-role) split_into AWS_ROLES "$value" ;;
    --wif-pool) WIF_POOL=$value ;;
    --wif-provider) WIF_PROVIDER=$value ;;
    --wif-credentials-file) WIF_FILE=$value ;;
    *) die "unknown option: $flag (see --help)" ;;
    esac
done

# --- validation -----------------------------------------------------------------------------

PROJECT_RE='[a-z][a-z0-9-]{4,28}[a-z0-9]'
SA_RE='^[a-z][a-z0-9-]{4,28}[a-z0-9]$'
RESOURCE_RE='^[A-Za-z][A-Za-z0-9._~%+-]{2,254}$' # Pub/Sub topic and subscription IDs
DURATION_RE='^(0|[1-9][0-9]{0,3})s?$'

check() { # VALUE REGEX WHAT
    [[ $1 =~ $2 ]] || die "invalid $3: '$1'"
}
seconds() { # a DURATION as seconds
    printf '%s' "${1%s}"
}

[[ -n $PROJECT ]] || die "--project is required (see --help)"
check "$PROJECT" "^$PROJECT_RE\$" "--project"
[[ -z $PROJECT_NUMBER ]] || check "$PROJECT_NUMBER" '^[1-9][0-9]{5,18}$' "--project-number"
[[ -n $REGION ]] || die "--region is required"
check "$REGION" '^[a-z][a-z0-9-]*[a-z0-9]$' "--region"
[[ -n $BUCKET ]] || die "--state-bucket is required"
check "$BUCKET" '^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$' "--state-bucket (3-63 of a-z 0-9 _ -)"
[[ $BUCKET != goog* ]] || die "--state-bucket may not start with goog"
[[ -z $PREFIX ]] || check "$PREFIX" '^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$' "--state-prefix"
[[ -z $KMS_KEY ]] ||
    check "$KMS_KEY" "^projects/$PROJECT_RE/locations/[a-z0-9-]+/keyRings/[A-Za-z0-9_-]+/cryptoKeys/[A-Za-z0-9_-]+\$" "--kms-key"
check "$NONCURRENT_DAYS" '^(0|[1-9][0-9]{0,4})$' "--noncurrent-days"
check "$SA_ID" "$SA_RE" "--service-account (6-30 of a-z 0-9 -)"
check "$SUBSCRIPTION" "$RESOURCE_RE" "--subscription"
check "$DEAD_LETTER" "$RESOURCE_RE" "--dead-letter-topic"
[[ $DEAD_LETTER != gcr ]] || die "--dead-letter-topic cannot be gcr"
check "$ACK_DEADLINE" '^[1-9][0-9]{0,3}$' "--ack-deadline"
((ACK_DEADLINE >= 10 && ACK_DEADLINE <= 600)) || die "--ack-deadline must be 10-600 seconds"
check "$MIN_RETRY" "$DURATION_RE" "--min-retry-delay (SECONDSs)"
check "$MAX_RETRY" "$DURATION_RE" "--max-retry-delay (SECONDSs)"
(($(seconds "$MIN_RETRY") <= $(seconds "$MAX_RETRY") && $(seconds "$MAX_RETRY") <= 600)) ||
    die "retry delays must satisfy min <= max <= 600s"
check "$MAX_ATTEMPTS" '^[1-9][0-9]{0,3}$' "--max-delivery-attempts"
((MAX_ATTEMPTS >= 5 && MAX_ATTEMPTS <= 100)) || die "--max-delivery-attempts must be 5-100"

[[ -n $AUDIT_URL ]] || die "--audit-url is required"
check "$AUDIT_URL" '^https://[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._~%!$&()*+,;=:@/-]*)?$' \
    "--audit-url (https://HOST[/PATH], no query, no fragment)"
[[ -z $PUSH_AUDIENCE || -n $PUSH_SA ]] || die "--push-auth-token-audience needs --push-auth-service-account"
[[ -z $PUSH_AUDIENCE ]] || check "$PUSH_AUDIENCE" '^[^[:space:]'\'']+$' "--push-auth-token-audience"
PUSH_SA_CREATE=0
if [[ -n $PUSH_SA ]]; then
    if [[ $PUSH_SA =~ $SA_RE ]]; then
        PUSH_SA_CREATE=1
        PUSH_SA="$PUSH_SA@$PROJECT.iam.gserviceaccount.com"
    else
        check "$PUSH_SA" '^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9.-]+\.gserviceaccount\.com$' \
            "--push-auth-service-account (an ID, or a service account's email)"
    fi
fi

if [[ -n $AWS_ACCOUNT || ${#AWS_ROLES[@]} -gt 0 ]]; then
    [[ -n $AWS_ACCOUNT && ${#AWS_ROLES[@]} -gt 0 ]] || die "--aws-account-id and --aws-role go together"
    check "$AWS_ACCOUNT" '^[0-9]{12}$' "--aws-account-id"
    for role in "${AWS_ROLES[@]}"; do
        check "$role" '^[A-Za-z0-9+=.@_-]{1,64}$' "--aws-role (a role name, not an ARN)"
    done
    check "$WIF_POOL" '^[a-z0-9][a-z0-9-]{2,30}[a-z0-9]$' "--wif-pool"
    [[ $WIF_POOL != gcp-* ]] || die "--wif-pool may not start with gcp-"
    check "$WIF_PROVIDER" '^[a-z0-9][a-z0-9-]{2,30}[a-z0-9]$' "--wif-provider"
    [[ $WIF_PROVIDER != gcp-* ]] || die "--wif-provider may not start with gcp-"
    [[ -n $WIF_FILE ]] || die "--wif-credentials-file is empty"
fi

# A registry name -> its Artifact Registry repository, REPLY="PROJECT LOCATION REPOSITORY".
repository() {
    local name=$1 what=$2
    if [[ $name =~ ^([a-z0-9-]+)-docker\.pkg\.dev/($PROJECT_RE)/([a-z][a-z0-9-]{0,62})(/.*)?$ ]]; then
        REPLY="${BASH_REMATCH[2]} ${BASH_REMATCH[1]} ${BASH_REMATCH[3]}"
    elif [[ $name =~ ^((us|eu|asia)\.)?gcr\.io/($PROJECT_RE)(/.*)?$ ]]; then
        local location
        case ${BASH_REMATCH[2]} in
        eu) location=europe ;;
        asia) location=asia ;;
        *) location=us ;;
        esac
        REPLY="${BASH_REMATCH[3]} $location ${name%%/*}"
    else
        die "invalid $what '$name': expected LOCATION-docker.pkg.dev/PROJECT/REPOSITORY[/PATH] or [us.|eu.|asia.]gcr.io/PROJECT[/PATH]"
    fi
}
# Registry names ($2...) -> the unique repositories, in REPOS.
repositories() {
    local what=$1 name
    local -a found=()
    shift
    REPOS=()
    for name in "$@"; do
        repository "$name" "$what"
        found+=("$REPLY")
    done
    if ((${#found[@]} > 0)); then
        mapfile -t REPOS < <(printf '%s\n' "${found[@]}" | sort -u)
    fi
}
((${#PRODUCTION[@]} > 0)) || die "--production-registry is required (at least one)"
repositories --production-registry "${PRODUCTION[@]}"
PROD_REPOS=("${REPOS[@]}")
repositories --staging-registry "${STAGING[@]+"${STAGING[@]}"}"
STAGING_REPOS=("${REPOS[@]+"${REPOS[@]}"}")
for repo in "${STAGING_REPOS[@]+"${STAGING_REPOS[@]}"}"; do
    for prod in "${PROD_REPOS[@]}"; do
        [[ $repo != "$prod" ]] || die "repository '$repo' is both staging and production"
    done
done
# Projects whose `gcr` topics carry production pushes.
mapfile -t PUBSUB_PROJECTS < <(printf '%s\n' "${PROD_REPOS[@]}" | cut -d' ' -f1 | sort -u)

[[ -n $TOKEN_SECRET || -n $TOKEN_FILE ]] || die "--audit-token-secret or --audit-token-file is required"
[[ -z $TOKEN_SECRET || -z $TOKEN_FILE ]] || die "--audit-token-secret and --audit-token-file exclude each other"
if [[ -n $TOKEN_SECRET ]]; then
    if [[ $TOKEN_SECRET =~ ^projects/($PROJECT_RE)/secrets/([A-Za-z0-9_-]{1,255})(/versions/([a-z0-9]+))?$ ]]; then
        SECRET_PROJECT=${BASH_REMATCH[1]}
        SECRET_NAME=${BASH_REMATCH[2]}
        SECRET_VERSION=${BASH_REMATCH[4]:-latest}
    elif [[ $TOKEN_SECRET =~ ^([A-Za-z0-9_-]{1,255})(/versions/([a-z0-9]+))?$ ]]; then
        SECRET_PROJECT=$PROJECT
        SECRET_NAME=${BASH_REMATCH[1]}
        SECRET_VERSION=${BASH_REMATCH[3]:-latest}
    else
        die "invalid --audit-token-secret: expected NAME or projects/PROJECT/secrets/NAME[/versions/V]"
    fi
fi

# --- running gcloud -------------------------------------------------------------------------

export CLOUDSDK_CORE_DISABLE_PROMPTS=1
AUDIT_TOKEN=""

# Replaces the audit token in text.
redact() {
    local text=$1
    if [[ -n $AUDIT_TOKEN ]]; then
        text=${text//"$AUDIT_TOKEN"/<audit token>}
    fi
    printf '%s' "$text"
}

# A command line, each argument quoted for a POSIX shell only where needed.
quote() {
    local out=() arg sq="'" esc="'\\''"
    for arg in "$@"; do
        if [[ $arg =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
            out+=("$arg")
        else
            out+=("'${arg//"$sq"/$esc}'")
        fi
    done
    printf '%s\n' "${out[*]}"
}

note() {
    if ((DRY_RUN)); then
        printf '# %s\n' "$*"
    else
        log "== $*"
    fi
}

# Runs gcloud ARGS (prints them in a dry run).
run() {
    if ((DRY_RUN)); then
        quote gcloud "$@"
        return 0
    fi
    log "+ $(quote gcloud "$@")"
    "$GCLOUD" "$@"
}

# As run, for a command that carries the audit token (in a flags file): gcloud's file log
# (which records arguments) is off, and its output is shown with the token replaced.
run_sensitive() {
    if ((DRY_RUN)); then
        quote gcloud "$@"
        return 0
    fi
    log "+ $(quote gcloud "$@")"
    local out status=0
    out=$(CLOUDSDK_CORE_DISABLE_FILE_LOGGING=1 "$GCLOUD" "$@" 2>&1) || status=$?
    [[ -z $out ]] || log "$(redact "$out")"
    return "$status"
}

# As run, retried a few times: IAM bindings on a service account created seconds ago can
# fail until the account has propagated.
run_retry() {
    local attempt
    for attempt in 1 2 3 4 5; do
        if run "$@"; then
            return 0
        fi
        ((attempt < 5)) || break
        log "retrying in $((attempt * 5))s"
        sleep $((attempt * 5))
    done
    die "failed: $(quote gcloud "$@")"
}

# Whether `gcloud ARGS` (a describe) finds the resource WHAT. A dry run prints it and answers
# no. Denied access stops the script rather than being taken for absence.
exists() {
    local what=$1
    shift
    if ((DRY_RUN)); then
        printf '# does %s exist? (a dry run assumes not)\n' "$what"
        quote gcloud "$@"
        return 1
    fi
    log "+ $(quote gcloud "$@")"
    local err
    if err=$(CLOUDSDK_CORE_DISABLE_FILE_LOGGING=1 "$GCLOUD" "$@" 2>&1 >/dev/null); then
        log "   $what exists"
        return 0
    fi
    if [[ $err =~ PERMISSION_DENIED|[Pp]ermission|403 ]]; then
        die "cannot tell whether $what exists: $(redact "$err")"
    fi
    log "   $what does not exist"
    return 1
}

declare -A NUMBERS=()
[[ -z $PROJECT_NUMBER ]] || NUMBERS[$PROJECT]=$PROJECT_NUMBER
# The number of project $1 (its Pub/Sub service agent is named after it).
project_number() {
    local project=$1
    if [[ -z ${NUMBERS[$project]:-} ]]; then
        if ((DRY_RUN)); then
            quote gcloud projects describe "$project" '--format=value(projectNumber)'
            NUMBERS[$project]="PROJECT_NUMBER_OF_$project"
        else
            log "+ $(quote gcloud projects describe "$project" '--format=value(projectNumber)')"
            NUMBERS[$project]=$("$GCLOUD" projects describe "$project" '--format=value(projectNumber)')
            [[ ${NUMBERS[$project]} =~ ^[0-9]+$ ]] || die "no project number for $project"
        fi
    fi
}

WORK=""
cleanup() {
    [[ -z $WORK ]] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if ((DRY_RUN)); then
    WORK_SHOWN="<tmp>"
else
    WORK=$(umask 077 && mktemp -d)
    WORK_SHOWN=$WORK
fi

# --- 0. the audit token ---------------------------------------------------------------------

if ((DRY_RUN)); then
    printf '# %s --dry-run: the gcloud commands a run would execute, in order (with\n' "$PROG"
    printf '# CLOUDSDK_CORE_DISABLE_PROMPTS=1). Nothing was called.\n'
fi
if [[ -n $TOKEN_FILE ]]; then
    note "audit token: read from $TOKEN_FILE (never printed)"
    [[ -r $TOKEN_FILE ]] || die "cannot read --audit-token-file $TOKEN_FILE"
    AUDIT_TOKEN=$(<"$TOKEN_FILE")
    TOKEN_SHOWN="the token read from $TOKEN_FILE"
elif ((DRY_RUN)); then
    note "audit token: from Secret Manager (captured, never printed)"
    quote gcloud secrets versions access "$SECRET_VERSION" "--secret=$SECRET_NAME" "--project=$SECRET_PROJECT"
    TOKEN_SHOWN="the token from Secret Manager"
else
    note "audit token: from Secret Manager (captured, never printed)"
    log "+ $(quote gcloud secrets versions access "$SECRET_VERSION" "--secret=$SECRET_NAME" "--project=$SECRET_PROJECT")"
    AUDIT_TOKEN=$(CLOUDSDK_CORE_DISABLE_FILE_LOGGING=1 "$GCLOUD" secrets versions access "$SECRET_VERSION" \
        "--secret=$SECRET_NAME" "--project=$SECRET_PROJECT") ||
        die "cannot read the audit token from Secret Manager (secret $SECRET_NAME in $SECRET_PROJECT)"
    TOKEN_SHOWN="the token from Secret Manager"
fi
AUDIT_TOKEN=${AUDIT_TOKEN%$'\n'}
AUDIT_TOKEN=${AUDIT_TOKEN%$'\r'}
if [[ -n $TOKEN_FILE ]] || ((!DRY_RUN)); then
    # Never echo it: say what is wrong, not what it is.
    [[ $AUDIT_TOKEN =~ ^[A-Za-z0-9._~-]{16,512}$ ]] ||
        die "the audit token must be 16-512 characters of A-Z a-z 0-9 . _ ~ - (got ${#AUDIT_TOKEN} characters)"
fi

SA_EMAIL="$SA_ID@$PROJECT.iam.gserviceaccount.com"
SA_MEMBER="serviceAccount:$SA_EMAIL"

# --- 1. APIs --------------------------------------------------------------------------------

note "APIs (enabling an enabled API changes nothing)"
apis=(artifactregistry.googleapis.com pubsub.googleapis.com storage.googleapis.com iam.googleapis.com)
if ((${#AWS_ROLES[@]} > 0)); then
    apis+=(iamcredentials.googleapis.com sts.googleapis.com)
fi
run services enable "${apis[@]}" "--project=$PROJECT"

# --- 2. the state bucket --------------------------------------------------------------------

note "state bucket gs://$BUCKET"
if [[ -n $KMS_KEY ]]; then
    # Lets the project's Cloud Storage service agent use the key.
    run storage service-agent "--project=$PROJECT" "--authorize-cmek=$KMS_KEY"
fi
if ! exists "bucket gs://$BUCKET" storage buckets describe "gs://$BUCKET" "--project=$PROJECT"; then
    create=(storage buckets create "gs://$BUCKET" "--project=$PROJECT" "--location=$REGION"
        --uniform-bucket-level-access --public-access-prevention)
    [[ -z $KMS_KEY ]] || create+=("--default-encryption-key=$KMS_KEY")
    run "${create[@]}"
fi
# Converges an existing bucket too: versioning (create has no flag for it), access settings,
# the key, and the clean-up of replaced versions.
update=(storage buckets update "gs://$BUCKET" "--project=$PROJECT" --versioning
    --uniform-bucket-level-access --public-access-prevention)
[[ -z $KMS_KEY ]] || update+=("--default-encryption-key=$KMS_KEY")
if ((NONCURRENT_DAYS > 0)); then
    lifecycle="{\"rule\": [{\"action\": {\"type\": \"Delete\"}, \"condition\": {\"isLive\": false, \"daysSinceNoncurrentTime\": $NONCURRENT_DAYS}}]}"
    if ((DRY_RUN)); then
        printf '# %s/lifecycle.json: %s\n' "$WORK_SHOWN" "$lifecycle"
    else
        printf '%s\n' "$lifecycle" >"$WORK/lifecycle.json"
    fi
    update+=("--lifecycle-file=$WORK_SHOWN/lifecycle.json")
else
    update+=(--clear-lifecycle)
fi
run "${update[@]}"

# --- 3. the promoter's service account ------------------------------------------------------

note "service account $SA_EMAIL"
if ! exists "service account $SA_EMAIL" iam service-accounts describe "$SA_EMAIL" "--project=$PROJECT"; then
    run iam service-accounts create "$SA_ID" "--project=$PROJECT" "--display-name=Image promoter" \
        "--description=Promotes images to production registries; state in gs://$BUCKET"
fi
note "state: objects of gs://$BUCKET only (bucket-level binding)"
run_retry storage buckets add-iam-policy-binding "gs://$BUCKET" "--member=$SA_MEMBER" \
    --role=roles/storage.objectAdmin --condition=None --format=none
note "production: push to these repositories only (repository-level bindings)"
for repo in "${PROD_REPOS[@]}"; do
    read -r project location name <<<"$repo"
    run_retry artifacts repositories add-iam-policy-binding "$name" "--location=$location" \
        "--project=$project" "--member=$SA_MEMBER" --role=roles/artifactregistry.writer \
        --condition=None --format=none
done
if ((${#STAGING_REPOS[@]} > 0)); then
    note "staging: read only"
    for repo in "${STAGING_REPOS[@]}"; do
        read -r project location name <<<"$repo"
        run_retry artifacts repositories add-iam-policy-binding "$name" "--location=$location" \
            "--project=$project" "--member=$SA_MEMBER" --role=roles/artifactregistry.reader \
            --condition=None --format=none
    done
fi

# --- 4. Pub/Sub: topic gcr -> audit ---------------------------------------------------------

ENDPOINT_SHOWN="$AUDIT_URL?token=<audit token>"
PUSH_FLAGS="$WORK_SHOWN/push-endpoint.yaml"
if ((DRY_RUN)); then
    printf "# %s holds the push endpoint (%s):\n#   --push-endpoint: '%s'\n" \
        "$PUSH_FLAGS" "$TOKEN_SHOWN, not shown" "$ENDPOINT_SHOWN"
else
    (umask 077 && printf -- "--push-endpoint: '%s?token=%s'\n" "$AUDIT_URL" "$AUDIT_TOKEN" >"$PUSH_FLAGS")
fi

if [[ -n $PUSH_SA ]]; then
    log "$PROG: note: --push-auth-service-account: Pub/Sub will also send 'Authorization: Bearer <OIDC token>';"
    log "  the audit handler does not verify it and authenticates the push by its ?token= (see infra/gcp/README.md)."
    note "push authentication: $PUSH_SA signs each push (OIDC)"
    if ((PUSH_SA_CREATE)) && ! exists "service account $PUSH_SA" iam service-accounts describe "$PUSH_SA" "--project=$PROJECT"; then
        run iam service-accounts create "${PUSH_SA%%@*}" "--project=$PROJECT" \
            "--display-name=Pub/Sub push to the promoter's audit endpoint"
    fi
fi

for project in "${PUBSUB_PROJECTS[@]}"; do
    project_number "$project"
    agent="serviceAccount:service-${NUMBERS[$project]}@gcp-sa-pubsub.iam.gserviceaccount.com"
    note "Pub/Sub in $project: topic gcr -> $ENDPOINT_SHOWN"
    if ! exists "topic gcr in $project" pubsub topics describe gcr "--project=$project"; then
        run pubsub topics create gcr "--project=$project"
    fi
    if ! exists "topic $DEAD_LETTER in $project" pubsub topics describe "$DEAD_LETTER" "--project=$project"; then
        run pubsub topics create "$DEAD_LETTER" "--project=$project"
    fi
    # Dead letters stay 31 days in a pull subscription, for inspection and replay.
    if ! exists "subscription $DEAD_LETTER in $project" pubsub subscriptions describe "$DEAD_LETTER" "--project=$project"; then
        run pubsub subscriptions create "$DEAD_LETTER" "--project=$project" "--topic=$DEAD_LETTER" \
            --message-retention-duration=31d --expiration-period=never
    fi
    settings=("--flags-file=$PUSH_FLAGS" "--ack-deadline=$ACK_DEADLINE"
        "--min-retry-delay=$MIN_RETRY" "--max-retry-delay=$MAX_RETRY"
        "--dead-letter-topic=$DEAD_LETTER" "--max-delivery-attempts=$MAX_ATTEMPTS"
        --expiration-period=never)
    if [[ -n $PUSH_SA ]]; then
        settings+=("--push-auth-service-account=$PUSH_SA")
        [[ -z $PUSH_AUDIENCE ]] || settings+=("--push-auth-token-audience=$PUSH_AUDIENCE")
    fi
    if exists "subscription $SUBSCRIPTION in $project" pubsub subscriptions describe "$SUBSCRIPTION" "--project=$project"; then
        # Brings it to the settings above (and to the current token); its topic stays.
        run_sensitive pubsub subscriptions update "$SUBSCRIPTION" "--project=$project" "${settings[@]}"
    else
        run_sensitive pubsub subscriptions create "$SUBSCRIPTION" "--project=$project" --topic=gcr "${settings[@]}"
    fi
    # Pub/Sub's service agent forwards undeliverable messages: it publishes to the dead-letter
    # topic and acknowledges on the subscription.
    run_retry pubsub topics add-iam-policy-binding "$DEAD_LETTER" "--project=$project" \
        "--member=$agent" --role=roles/pubsub.publisher --format=none
    run_retry pubsub subscriptions add-iam-policy-binding "$SUBSCRIPTION" "--project=$project" \
        "--member=$agent" --role=roles/pubsub.subscriber --format=none
    if [[ -n $PUSH_SA ]]; then
        # Lets the service agent mint OIDC tokens as the push account (needed for projects
        # created before 8 April 2021; harmless after).
        run_retry iam service-accounts add-iam-policy-binding "$PUSH_SA" "--project=$PROJECT" \
            "--member=$agent" --role=roles/iam.serviceAccountTokenCreator --condition=None --format=none
    fi
done

# --- 5. Workload Identity Federation for a promoter on AWS ----------------------------------

if ((${#AWS_ROLES[@]} > 0)); then
    project_number "$PROJECT"
    number=${NUMBERS[$PROJECT]}
    note "Workload Identity Federation: AWS account $AWS_ACCOUNT, roles ${AWS_ROLES[*]} -> $SA_EMAIL"
    if ! exists "workload identity pool $WIF_POOL" iam workload-identity-pools describe "$WIF_POOL" \
        --location=global "--project=$PROJECT"; then
        run iam workload-identity-pools create "$WIF_POOL" --location=global "--project=$PROJECT" \
            "--display-name=Image promoter on AWS"
    fi
    arns=()
    for role in "${AWS_ROLES[@]}"; do
        arns+=("\"arn:aws:sts::$AWS_ACCOUNT:assumed-role/$role\"")
    done
    condition="attribute.aws_role in [$(
        IFS=,
        printf '%s' "${arns[*]}"
    )]"
    condition=${condition//,/, }
    if ! exists "provider $WIF_PROVIDER" iam workload-identity-pools providers describe "$WIF_PROVIDER" \
        "--workload-identity-pool=$WIF_POOL" --location=global "--project=$PROJECT"; then
        # The default AWS attribute mapping: google.subject = the caller's ARN, attribute.aws_role
        # = arn:aws:sts::ACCOUNT:assumed-role/ROLE (without the session name).
        run iam workload-identity-pools providers create-aws "$WIF_PROVIDER" \
            "--workload-identity-pool=$WIF_POOL" --location=global "--project=$PROJECT" \
            "--account-id=$AWS_ACCOUNT" "--attribute-condition=$condition"
    fi
    pool="projects/$number/locations/global/workloadIdentityPools/$WIF_POOL"
    for role in "${AWS_ROLES[@]}"; do
        run_retry iam service-accounts add-iam-policy-binding "$SA_EMAIL" "--project=$PROJECT" \
            --role=roles/iam.workloadIdentityUser \
            "--member=principalSet://iam.googleapis.com/$pool/attribute.aws_role/arn:aws:sts::$AWS_ACCOUNT:assumed-role/$role" \
            --condition=None --format=none
    done
    run iam workload-identity-pools create-cred-config "$pool/providers/$WIF_PROVIDER" \
        "--service-account=$SA_EMAIL" --aws "--output-file=$WIF_FILE"
fi

# --- summary --------------------------------------------------------------------------------

state="gs://$BUCKET"
[[ -z $PREFIX ]] || state+="/$PREFIX"
summary() {
    local done="Done."
    ((!DRY_RUN)) || done="Done (dry run: nothing was changed)."
    cat <<EOF
$done
  PROMOTER_STATE=$state
  service account: $SA_EMAIL
  Pub/Sub push: topic gcr -> subscription $SUBSCRIPTION -> $ENDPOINT_SHOWN (in ${PUBSUB_PROJECTS[*]})
  dead letters: topic and subscription $DEAD_LETTER, after $MAX_ATTEMPTS attempts
EOF
    if ((${#AWS_ROLES[@]} > 0)); then
        cat <<EOF
  Workload Identity Federation: GOOGLE_APPLICATION_CREDENTIALS=<path of $WIF_FILE in the function>
EOF
    fi
    cat <<EOF
Verify: gcloud pubsub subscriptions describe $SUBSCRIPTION --project=${PUBSUB_PROJECTS[0]} --format='yaml(ackDeadlineSeconds,deadLetterPolicy,retryPolicy,expirationPolicy)'
See infra/gcp/README.md for the end-to-end check.
EOF
}
if ((DRY_RUN)); then
    summary | sed 's/^/# /'
else
    summary >&2
fi
