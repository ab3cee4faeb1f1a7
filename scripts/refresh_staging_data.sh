#!/usr/bin/env bash
# Refreshes the sample environment's data and writes a short markdown note of what was refreshed.
#
#   refresh_staging_data.sh --env ENV --output FILE
#
# Feature flags come from ${SAMPLE_STATE_DIR}/ENV/feature-flags.env, else
# ${SAMPLE_STATE_DIR}/feature-flags.env (lines NAME=VALUE, '#' comments). The refresh time is
# recorded in ${SAMPLE_STATE_DIR}/ENV/last-refresh. The note is written atomically and names the
# release it belongs to from RAYBOT_RELEASE and RAYBOT_VERSION (raybot sets both for every job).
# Environment: see _sample_lib.sh. Exit: 0 done, 1 failed, 2 usage error.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/_sample_lib.sh"

USAGE="refresh_staging_data.sh --env ENV --output FILE"

env="" output=""
while (($#)); do
    case $1 in
    --env)
        need_value "$@"
        env=$2
        shift 2
        ;;
    --output)
        need_value "$@"
        output=$2
        shift 2
        ;;
    -h | --help)
        echo "usage: $USAGE"
        exit 0
        ;;
    *) usage_error "unknown argument $(printf '%q' "$1")" ;;
    esac
done
[[ -n $env ]] || usage_error "--env is required"
[[ -n $output ]] || usage_error "--output is required"
validate_env "$env"

dir=$(make_env_dir "$env")
root=$(state_root)
flags_file=""
for candidate in "$dir/feature-flags.env" "$root/feature-flags.env"; do
    if [[ -f $candidate ]]; then
        flags_file=$candidate
        break
    fi
done

stamp=$(now_utc)
load_route "$dir/route.json"

mkdir -p "$(dirname "$output")"
tmp=$(mktemp "$output.tmp.XXXXXX")
trap 'rm -f "$tmp"' EXIT
flag_count=0
{
    echo "# Data refresh: $env"
    echo
    if [[ -n ${RAYBOT_RELEASE:-} ]]; then
        echo "- Release: \`$RAYBOT_RELEASE\` (version \`${RAYBOT_VERSION:-unknown}\`)"
    else
        echo "- Release: none given (RAYBOT_RELEASE is not set: run outside a raybot release)"
    fi
    echo "- Refreshed at: $stamp"
    echo "- Environment: \`$env\`"
    echo "- State directory: \`$dir\`"
    if ((ROUTE_EXISTS)); then
        echo "- Live route: $(describe_route)"
    else
        echo "- Live route: nothing deployed yet"
    fi
    echo
    echo "## Feature flags"
    echo
    if [[ -z $flags_file ]]; then
        echo "No feature flag file found (looked for \`$dir/feature-flags.env\` and \`$root/feature-flags.env\`); defaults apply."
    else
        echo "Source: \`$flags_file\`"
        echo
        echo "| flag | value |"
        echo "| --- | --- |"
        while IFS= read -r line || [[ -n $line ]]; do
            line=${line%$'\r'}
            [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
            [[ $line == *=* ]] || continue
            name=${line%%=*}
            value=${line#*=}
            name=${name//|/\\|}
            value=${value//|/\\|}
            echo "| \`${name//[[:space:]]/}\` | ${value} |"
            flag_count=$((flag_count + 1))
        done <"$flags_file"
    fi
} >"$tmp"
mv -f "$tmp" "$output"
trap - EXIT
printf '%s\n' "$stamp" >"$dir/last-refresh"
echo "refreshed $env data at $stamp: $flag_count feature flag(s)${flags_file:+ from $flags_file}"
echo "wrote $output"
