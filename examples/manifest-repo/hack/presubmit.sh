#!/usr/bin/env bash
# The presubmit check of this manifest repository: validates a pull request's manifests and
# plans what it adds to the target branch, as Markdown for a pull-request comment.
#
# Usage: hack/presubmit.sh PR_CHECKOUT BASE_CHECKOUT >comment.md
#
#   PR_CHECKOUT    the pull request as it would merge (GitHub's merge commit)
#   BASE_CHECKOUT  the target branch at the pull request's base commit
#
# In PR_CHECKOUT it runs
#
#   promoter validate .
#   promoter plan . --base BASE_CHECKOUT --output markdown
#
# and prints one Markdown document on stdout: the plan, or what was wrong, headed by the marker
# <!-- promoter-presubmit --> by which the workflow finds its comment to update it. Exit status:
# 0 when both commands pass, else the first failing command's (1 invalid manifests, a refused
# removal, or a new digest failing a `require` rule of its project's policy; 2 usage error).
# A policy failure prints the plan itself: its policy table says which rule failed and why.
#
# Environment: PROMOTER, the promoter binary (default: `promoter` on PATH);
# PRESUBMIT_ALLOW_REMOVAL=true passes --allow-removal to plan (the workflow sets it from the
# pull request's `promoter/allow-removal` label).
set -uo pipefail

if (($# != 2)); then
    sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
promoter=${PROMOTER:-promoter}
base=$(realpath -e -- "$2") || exit 2
cd -- "$1" || exit 2

allow=()
if [[ ${PRESUBMIT_ALLOW_REMOVAL:-false} == true ]]; then
    allow=(--allow-removal)
fi

echo '<!-- promoter-presubmit -->'

# Prints a failed command's diagnostics as a comment. They name files as ./images/... (this
# checkout) or BASE/images/... (the target branch); the comment names them from each
# repository's root.
report_failure() {
    local command=$1 status=$2 errors=$3 hint=$4 line
    echo "### Promotion presubmit: failed"
    echo
    echo "\`$command\` exited with status $status:"
    echo
    echo '```text'
    while IFS= read -r line; do
        line=${line#./}
        line=${line/#"$base"\//(target branch) }
        printf '%s\n' "$line"
    done <"$errors"
    echo '```'
    echo
    echo "$hint"
}

errors=$(mktemp)
trap 'rm -f "$errors"' EXIT

"$promoter" validate . >/dev/null 2>"$errors"
status=$?
if ((status != 0)); then
    report_failure "promoter validate ." "$status" "$errors" \
        "Fix each FILE:LINE:COL above and push again."
    cat "$errors" >&2
    exit "$status"
fi

plan=$("$promoter" plan . --base "$base" "${allow[@]}" --output markdown 2>"$errors")
status=$?
if ((status == 1)) && [[ -n $plan ]]; then
    # Planned, and a digest fails its project's policy: the plan's table says why.
    echo "$plan"
    cat "$errors" >&2
    exit "$status"
fi
if ((status != 0)); then
    report_failure "promoter plan . --base BASE${allow:+ ${allow[*]}}" "$status" "$errors" \
        "A removal is refused: keep the entry (production keeps the image either way), or ask an owner for the label promoter/allow-removal."
    cat "$errors" >&2
    exit "$status"
fi
# Warnings (e.g. the deprecated imagesPath) go to the job's log.
cat "$errors" >&2

echo "$plan"
if ((${#allow[@]} > 0)); then
    echo
    echo "Removals were accepted (label \`promoter/allow-removal\`): production keeps those images, the promoter never deletes."
fi
