#!/usr/bin/env bash
# Smoke test of the sample service on ENV through its router: SMOKE_REQUESTS (default 5) GETs of
# /healthz; every one must answer 200 with x-version: VERSION. One line per check; with --junit,
# also a JUnit XML report with one test case per check (written whether the checks pass or not).
#
#   smoke_test.sh --env ENV --release VERSION [--junit FILE]
#
# Environment: see _sample_lib.sh; SMOKE_REQUESTS. Exit: 0 passed, 1 failed, 2 usage error.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/_sample_lib.sh"

USAGE="smoke_test.sh --env ENV --release VERSION [--junit FILE]"

env="" release="" junit="" junit_given=0
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
    --junit)
        need_value "$@"
        junit=$2
        junit_given=1
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
[[ -n $release ]] || usage_error "--release is required"
validate_env "$env"
validate_version "$release"
((junit_given == 0)) || validate_report_path "$junit"
requests=${SMOKE_REQUESTS:-5}
if ! [[ $requests =~ ^[0-9]{1,3}$ ]] || ((10#$requests < 1)); then
    die "SMOKE_REQUESTS=$requests is not a count (1..999)"
fi
requests=$((10#$requests))
command -v curl >/dev/null 2>&1 || die "curl is required"

rport=$(router_port "$env")
url="http://127.0.0.1:$rport/healthz"
headers=$(mktemp)
trap 'rm -f "$headers"' EXIT

echo "smoke test of $release on $env: $requests x GET $url"
failed=0
for ((i = 1; i <= requests; i++)); do
    : >"$headers"
    started=$(now_us)
    status=$(http_probe "$url" "$headers")
    took=$(seconds_since "$started")
    check="check $i/$requests: GET /healthz answers 200 with x-version $release"
    version=$(header_value "$headers" x-version)
    problems=()
    [[ $status == 200 ]] || problems+=("status $status, expected 200")
    [[ $version == "$release" ]] || problems+=("x-version '${version:-<none>}', expected '$release'")
    if ((${#problems[@]} == 0)); then
        echo "check $i/$requests: PASS status=$status x-version=$version"
        junit_case "smoke.$env" "$check" "$took"
    else
        failed=$((failed + 1))
        detail=$(printf '%s; ' "${problems[@]}")
        detail=${detail%; }
        echo "check $i/$requests: FAIL status=$status x-version=${version:-<none>} ($detail)"
        junit_case "smoke.$env" "$check" "$took" "$detail"
    fi
done
((junit_given == 0)) || junit_write "$junit" "smoke $env $release" "$failed"

if ((failed > 0)); then
    echo "smoke test FAILED: $failed of $requests checks failed"
    exit 1
fi
echo "smoke test passed: $requests of $requests checks"
