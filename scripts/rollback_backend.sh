#!/usr/bin/env bash
# Rolls back the sample service on ENV.
#
#   rollback_backend.sh --env ENV [--release VERSION]
#
# Without --release: a canary that is not yet promoted is dropped (all traffic back on stable);
# otherwise stable goes back to the previous version. With --release VERSION (the release being
# rolled back): if VERSION is the canary it is dropped, if it is stable the previous version takes
# over, and if it never received traffic (e.g. its deploy failed before routing) its idle process is
# stopped and nothing else changes. The withdrawn version's process is stopped. route.json is
# replaced atomically. Fails (exit 1) when there is nothing to roll back to.
# Environment: see _sample_lib.sh. Exit: 0 done, 1 failed, 2 usage error.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/_sample_lib.sh"

USAGE="rollback_backend.sh --env ENV [--release VERSION]"

env="" release=""
while (($#)); do
    case $1 in
    --env)
        need_value "$@"
        env=$2
        shift 2
        ;;
    --release)
        need_value "$@"
        release=$2
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
validate_env "$env"
[[ -z $release ]] || validate_version "$release"

rport=$(router_port "$env")
dir=$(env_dir "$env")
[[ -d $dir ]] || die "nothing to roll back on $env: no deployment recorded ($dir does not exist)"
dir=$(make_env_dir "$env")
route="$dir/route.json"
lock_env "$dir"
load_route "$route"

# stop_idle VERSION: stops VERSION wherever it runs without being stable or previous; true if any.
stop_idle() {
    local color port found=1
    for color in blue green; do
        port=$(color_port "$rport" "$color")
        if [[ $(cat "$dir/$color.version" 2>/dev/null || true) == "$1" &&
            $port != "$ROUTE_STABLE_PORT" && $port != "$ROUTE_PREV_PORT" ]]; then
            stop_process "$dir" "$color"
            found=0
        fi
    done
    return "$found"
}

if ((!ROUTE_EXISTS)); then
    # A first deploy that failed before routing: only an idle instance may be left.
    if [[ -n $release ]] && stop_idle "$release"; then
        echo "rolled back: $release never received traffic on $env (nothing was live); its idle instance is stopped"
        exit 0
    fi
    die "nothing to roll back on $env: no deployment recorded ($route does not exist)"
fi
echo "rollback on $env${release:+ of $release}"
echo "current: $(describe_route)"

drop_canary() {
    local color
    color=$(port_color "$rport" "$ROUTE_CANARY_PORT")
    write_route "$route" "$ROUTE_STABLE_PORT" "$ROUTE_STABLE_VERSION" "" "" 0 "$ROUTE_PREV_PORT" "$ROUTE_PREV_VERSION"
    echo "rolled back: canary $ROUTE_CANARY_VERSION removed; 100% of the traffic on stable $ROUTE_STABLE_VERSION"
    stop_process "$dir" "$color"
}

restore_previous() {
    local bad_color
    [[ -n $ROUTE_PREV_PORT ]] ||
        die "cannot roll back $ROUTE_STABLE_VERSION on $env: no previous version recorded (nothing to roll back to)"
    bad_color=$(port_color "$rport" "$ROUTE_STABLE_PORT")
    ensure_backend "$dir" "$rport" "$ROUTE_PREV_PORT" "$ROUTE_PREV_VERSION"
    write_route "$route" "$ROUTE_PREV_PORT" "$ROUTE_PREV_VERSION" "" "" 0 "" ""
    echo "rolled back: stable $ROUTE_STABLE_VERSION -> $ROUTE_PREV_VERSION (port $ROUTE_PREV_PORT)"
    stop_process "$dir" "$bad_color"
}

ensure_router "$dir" "$rport"
if [[ -z $release ]]; then
    if [[ -n $ROUTE_CANARY_PORT ]]; then
        drop_canary
    elif [[ -n $ROUTE_PREV_PORT ]]; then
        restore_previous
    else
        die "nothing to roll back to on $env: stable $ROUTE_STABLE_VERSION has no previous version and no canary is running"
    fi
elif [[ $release == "$ROUTE_CANARY_VERSION" ]]; then
    drop_canary
elif [[ $release == "$ROUTE_STABLE_VERSION" ]]; then
    restore_previous
elif stop_idle "$release"; then
    echo "rolled back: $release never received traffic on $env; its idle instance is stopped; stable stays $ROUTE_STABLE_VERSION"
else
    echo "nothing to change: $release is not live on $env; stable stays $ROUTE_STABLE_VERSION"
fi

load_route "$route"
echo "route: $(describe_route)"
