#!/usr/bin/env bash
# Deploys RELEASE of the sample service to ENV behind the env's local router (blue/green colors).
#
#   deploy_backend.sh --env ENV --release VERSION [--strategy bluegreen|canary|rolling]
#                     [--percent N] [--dry-run]
#
# The new version starts on the idle color and must answer /healthz (any status) within
# SAMPLE_START_TIMEOUT seconds. Then traffic moves: --percent 100 promotes it (stable=new,
# previous=old stable, which keeps running for an instant rollback); --percent 0..99 makes it the
# canary with that share of the traffic (re-run with a higher percent to move on). The strategies
# differ only in their default percent: bluegreen 100, canary 10, rolling 25. The first deploy on an
# env makes the new version stable whatever the percent.
#
# Failure injection (SAMPLE_FAIL, comma-separated): ENV:deploy fails after starting the new version,
# before it gets traffic; ENV:smoke starts it unhealthy (/healthz answers 503).
# Environment: see _sample_lib.sh. Exit: 0 done, 1 failed, 2 usage error.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/_sample_lib.sh"

USAGE="deploy_backend.sh --env ENV --release VERSION [--strategy bluegreen|canary|rolling] [--percent N] [--dry-run]"

env="" release="" strategy="bluegreen" percent="" dry_run=0
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
    --strategy)
        need_value "$@"
        strategy=$2
        shift 2
        ;;
    --percent)
        need_value "$@"
        percent=$2
        shift 2
        ;;
    --dry-run)
        dry_run=1
        shift
        ;;
    -h | --help)
        echo "usage: $USAGE"
        exit 0
        ;;
    *) usage_error "unknown argument $(printf '%q' "$1")" ;;
    esac
done

[[ -n $env ]] || usage_error "--env is required"
[[ -n $release ]] || usage_error "--release is required"
validate_env "$env"
validate_version "$release"
case $strategy in
bluegreen) default_percent=100 ;;
canary) default_percent=10 ;;
rolling) default_percent=25 ;;
*) usage_error "invalid strategy $(printf '%q' "$strategy") (bluegreen, canary or rolling)" ;;
esac
percent=${percent:-$default_percent}
if ! [[ $percent =~ ^[0-9]{1,3}$ ]] || ((10#$percent > 100)); then
    usage_error "invalid percent $(printf '%q' "$percent") (0..100)"
fi
percent=$((10#$percent))

rport=$(router_port "$env")
dir=$(env_dir "$env")
route="$dir/route.json"
load_route "$route"
unhealthy=()
if sample_fail "$env" smoke; then
    unhealthy=(--unhealthy)
fi

# plan: from the ROUTE_* variables, sets target_color/target_port (where the new version runs;
# empty when nothing is started), stable_color, reuse (the new version already runs there as the
# canary), plan (text) and new (the route to write).
plan() {
    # Where the new version runs: the color that does not serve stable traffic.
    if ((ROUTE_EXISTS)); then
        stable_color=$(port_color "$rport" "$ROUTE_STABLE_PORT")
        target_color=$(other_color "$stable_color")
    else
        stable_color=""
        target_color=blue
    fi
    target_port=$(color_port "$rport" "$target_color")

    if ((!ROUTE_EXISTS)); then
        plan="first deploy: $release becomes stable on $target_color"
        new=("$target_port" "$release" "" "" 0 "" "")
    elif [[ $ROUTE_STABLE_VERSION == "$release" ]]; then
        plan="$release is already stable on $stable_color"
        [[ -n $ROUTE_CANARY_PORT ]] && plan+="; removing canary $ROUTE_CANARY_VERSION"
        new=("$ROUTE_STABLE_PORT" "$release" "" "" 0 "$ROUTE_PREV_PORT" "$ROUTE_PREV_VERSION")
        target_color="" # nothing to start
    elif ((percent == 100)); then
        plan="promote $release on $target_color to stable (100%); previous=$ROUTE_STABLE_VERSION on $stable_color"
        new=("$target_port" "$release" "" "" 0 "$ROUTE_STABLE_PORT" "$ROUTE_STABLE_VERSION")
    else
        plan="$release on $target_color becomes canary with $percent% of the traffic; stable stays $ROUTE_STABLE_VERSION"
        # The previous version ran on the target color: it is replaced, so it is no longer a rollback target.
        new=("$ROUTE_STABLE_PORT" "$ROUTE_STABLE_VERSION" "$target_port" "$release" "$percent" "" "")
    fi

    reuse=0
    if [[ -n $target_color && $ROUTE_CANARY_VERSION == "$release" && $ROUTE_CANARY_PORT == "$target_port" ]]; then
        reuse=1
    fi
}

echo "deploy $release to $env: strategy=$strategy percent=$percent router=127.0.0.1:$rport"
if ((ROUTE_EXISTS)); then
    echo "current: $(describe_route)"
else
    echo "current: nothing deployed on $env yet"
fi
plan

if ((dry_run)); then
    echo "DRY RUN: nothing is changed"
    if [[ -n $target_color ]]; then
        if ((reuse)); then
            echo "DRY RUN: would reuse the running canary $release on $target_color (127.0.0.1:$target_port)"
        else
            echo "DRY RUN: would start $release on $target_color (127.0.0.1:$target_port)${unhealthy[*]:+ ${unhealthy[*]}}"
        fi
    fi
    echo "DRY RUN: would route: $plan"
    exit 0
fi

dir=$(make_env_dir "$env")
route="$dir/route.json"
lock_env "$dir"
# Re-read under the lock: another run may have changed it in between.
load_route "$route"
plan
ensure_router "$dir" "$rport"
if ((ROUTE_EXISTS)); then
    ensure_backend "$dir" "$rport" "$ROUTE_STABLE_PORT" "$ROUTE_STABLE_VERSION"
fi

if [[ -n $target_color ]]; then
    if ((reuse)) && [[ -n $(running_pid "$dir" "$target_color") ]] &&
        [[ $(cat "$dir/$target_color.version" 2>/dev/null || true) == "$release" ]]; then
        echo "$release is already running on $target_color as canary"
    else
        if ((ROUTE_EXISTS)) && [[ $ROUTE_CANARY_PORT == "$target_port" || $ROUTE_PREV_PORT == "$target_port" ]]; then
            # Take the old occupant of the target color out of the route before stopping it.
            write_route "$route" "$ROUTE_STABLE_PORT" "$ROUTE_STABLE_VERSION" "" "" 0 "" ""
            load_route "$route"
            echo "route: $(describe_route)"
        fi
        start_backend "$dir" "$target_color" "$target_port" "$release" "${unhealthy[@]}"
    fi
    if sample_fail "$env" deploy; then
        echo "ERROR: injected failure (SAMPLE_FAIL=$env:deploy): aborting before routing traffic to $release" >&2
        echo "$release keeps running idle on $target_color; live traffic stays on ${ROUTE_STABLE_VERSION:-nothing}" >&2
        exit 1
    fi
else
    # Already stable: only a canary may have to go.
    if [[ -n $ROUTE_CANARY_PORT ]]; then
        canary_color=$(port_color "$rport" "$ROUTE_CANARY_PORT")
        write_route "$route" "${new[@]}"
        stop_process "$dir" "$canary_color"
    fi
fi

write_route "$route" "${new[@]}"
load_route "$route"
echo "routed: $plan"
echo "route: $(describe_route)"
echo "deploy of $release to $env done"
