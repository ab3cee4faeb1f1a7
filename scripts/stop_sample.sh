#!/usr/bin/env bash
# Stops the sample service processes (router, blue, green) recorded in the pid files of one
# environment, or of every environment under the state root. The route state is kept.
#
#   stop_sample.sh [--env ENV]
#
# Environment: SAMPLE_STATE_DIR (see _sample_lib.sh). Exit: 0 done, 2 usage error.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/_sample_lib.sh"

USAGE="stop_sample.sh [--env ENV]"

env=""
while (($#)); do
    case $1 in
    --env)
        need_value "$@"
        env=$2
        shift 2
        ;;
    -h | --help)
        echo "usage: $USAGE"
        exit 0
        ;;
    *) usage_error "unknown argument $(printf '%q' "$1")" ;;
    esac
done

dirs=()
if [[ -n $env ]]; then
    validate_env "$env"
    [[ -d $(env_dir "$env") ]] && dirs+=("$(env_dir "$env")")
else
    root=$(state_root)
    if [[ -d $root ]]; then
        for d in "$root"/*/; do
            [[ -d $d ]] && dirs+=("${d%/}")
        done
    fi
fi

if ((${#dirs[@]} == 0)); then
    echo "nothing to stop${env:+ on $env}"
    exit 0
fi
for d in "${dirs[@]}"; do
    for pidfile in "$d"/*.pid; do
        [[ -e $pidfile ]] || continue
        name=${pidfile##*/}
        name=${name%.pid}
        msg=$(stop_process "$d" "$name" || true)
        echo "$(basename "$d"): ${msg:-$name was not running (stale pid file removed)}"
    done
done
echo "sample processes stopped${env:+ on $env}"
