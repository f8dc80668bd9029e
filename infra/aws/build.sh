#!/usr/bin/env bash
# Builds the five Lambda functions for deployment, lean: `cargo lambda build --release`, then
# each bootstrap's debug information moved out of it into a file of its own beside the build
# (objcopy --only-keep-debug, then --strip-debug with a GNU debuglink to that file). The
# deployed bootstrap keeps its symbol table, so a panic's backtrace in the logs still names
# every function; the file and line of each frame are read back from the kept debug file
# (`addr2line -e target/lambda-debug/NAME/bootstrap.debug ADDRESS`, or gdb, which follows the
# debuglink). The template's CodeUri folders (target/lambda/NAME/) hold the bootstrap only.
#
# Usage: infra/aws/build.sh [--no-build] [--google-credentials FILE]
#   --no-build                 only split the bootstraps already built
#   --google-credentials FILE  ship FILE (the Workload Identity Federation configuration that
#                              infra/gcp/setup.sh --aws-account-id writes; no secret) in each
#                              function as /var/task/google-credentials.json, for the stack
#                              parameter GoogleCredentialsFile=/var/task/google-credentials.json
#
# Needs cargo-lambda (pip install cargo-lambda) and objcopy (binutils). Honours
# CARGO_TARGET_DIR: the bootstraps are read from and written to $CARGO_TARGET_DIR/lambda.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=true
google=""
while (($#)); do
  case $1 in
    --no-build) build=false; shift ;;
    --google-credentials) google=${2:?--google-credentials needs a file}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "build: unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v objcopy >/dev/null || { echo "build: objcopy (binutils) is needed" >&2; exit 2; }
target=${CARGO_TARGET_DIR:-$root/target}
functions=(validate-manifest copy-digest sign notify audit)
if $build; then
  packages=()
  for f in "${functions[@]}"; do packages+=(-p "$f"); done
  (cd "$root" && cargo lambda build --release "${packages[@]}")
fi
for f in "${functions[@]}"; do
  bootstrap="$target/lambda/$f/bootstrap"
  [[ -x $bootstrap ]] || { echo "build: $bootstrap missing" >&2; exit 1; }
  debug_dir="$target/lambda-debug/$f"
  mkdir -p "$debug_dir"
  before=$(stat -c %s "$bootstrap")
  objcopy --only-keep-debug "$bootstrap" "$debug_dir/bootstrap.debug"
  objcopy --strip-debug --add-gnu-debuglink="$debug_dir/bootstrap.debug" "$bootstrap"
  after=$(stat -c %s "$bootstrap")
  if [[ -n $google ]]; then
    grep -q '"external_account"' "$google" ||
      { echo "build: $google is not an external_account configuration (keys do not belong in a package)" >&2; exit 2; }
    install -m 0644 "$google" "$target/lambda/$f/google-credentials.json"
  fi
  awk -v f="$f" -v b="$before" -v a="$after" -v d="$debug_dir/bootstrap.debug" \
    'BEGIN { printf "%-18s %6.1f MiB -> %5.1f MiB deployed (debug info in %s)\n", f, b / 1048576, a / 1048576, d }'
done
