#!/usr/bin/env bash
# Regression test of the sample service on ENV through its router: the service's whole contract,
# beyond the smoke test's health check. One line per check; with --junit, also a JUnit XML report
# with one test case per check (written whether the checks pass or not). The checks:
#
#   1. GET /healthz answers 200 with a JSON body saying status ok and version VERSION
#   2. GET /version answers 200 with exactly VERSION
#   3. GET / answers 200 with "raybot sample app VERSION"
#   4. GET of an unknown path answers 404, still with x-version: VERSION
#   5. answers name the backend that served them (x-backend: stable or canary)
#   6. POST /healthz is refused with 405 (the service is read-only through its router)
#
#   regression_test.sh --env ENV --release VERSION [--junit FILE]
#
# Environment: see _sample_lib.sh. Exit: 0 passed, 1 failed, 2 usage error.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/_sample_lib.sh"

USAGE="regression_test.sh --env ENV --release VERSION [--junit FILE]"

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
command -v curl >/dev/null 2>&1 || die "curl is required"

rport=$(router_port "$env")
base="http://127.0.0.1:$rport"
headers=$(mktemp)
body=$(mktemp)
trap 'rm -f "$headers" "$body"' EXIT

# fetch METHOD PATH: sets status, version, backend (first x-version / x-backend header, trimmed) and
# text (the body, CR/LF stripped). Headers are read in bash: one curl is the only process per check.
fetch() {
    local line name value
    : >"$headers"
    : >"$body"
    status=$(http_fetch "$1" "$base$2" "$headers" "$body")
    version="" backend=""
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%$'\r'}
        [[ $line == *:* ]] || continue
        name=${line%%:*}
        value=${line#*:}
        value=${value#"${value%%[![:space:]]*}"}
        value=${value%"${value##*[![:space:]]}"}
        case ${name,,} in
        x-version) [[ -n $version ]] || version=$value ;;
        x-backend) [[ -n $backend ]] || backend=$value ;;
        esac
    done <"$headers"
    text=$(<"$body")
    text=${text//$'\r'/}
    text=${text//$'\n'/}
}

# Each check sets `problems` (empty: passed) and `seen` (what was observed, for the log).
check_health() {
    fetch GET /healthz
    seen="status=$status body=$text"
    [[ $status == 200 ]] || problems+=("status $status, expected 200")
    [[ $text =~ \"status\":[[:space:]]*\"ok\" ]] || problems+=("body does not say status ok")
    [[ $text == *"\"version\":\"$release\""* || $text == *"\"version\": \"$release\""* ]] ||
        problems+=("body does not name version $release")
}

check_version() {
    fetch GET /version
    seen="status=$status body=$text"
    [[ $status == 200 ]] || problems+=("status $status, expected 200")
    [[ $text == "$release" ]] || problems+=("body '$text', expected '$release'")
}

check_root() {
    fetch GET /
    seen="status=$status body=$text"
    [[ $status == 200 ]] || problems+=("status $status, expected 200")
    [[ $text == "raybot sample app $release" ]] || problems+=("body '$text', expected 'raybot sample app $release'")
}

check_not_found() {
    fetch GET /regression-no-such-page
    seen="status=$status x-version=${version:-<none>}"
    [[ $status == 404 ]] || problems+=("status $status, expected 404")
    [[ $version == "$release" ]] || problems+=("x-version '${version:-<none>}', expected '$release'")
}

check_backend() {
    fetch GET /version
    seen="status=$status x-backend=${backend:-<none>}"
    [[ $backend == stable || $backend == canary ]] ||
        problems+=("x-backend '${backend:-<none>}', expected stable or canary")
}

check_read_only() {
    fetch POST /healthz
    seen="status=$status"
    [[ $status == 405 ]] || problems+=("status $status, expected 405")
}

checks=(
    "check_health:GET /healthz reports status ok and version $release"
    "check_version:GET /version answers $release"
    "check_root:GET / names $release"
    "check_not_found:GET of an unknown path answers 404 with x-version $release"
    "check_backend:answers name the backend that served them"
    "check_read_only:POST /healthz is refused with 405"
)

echo "regression test of $release on $env: ${#checks[@]} checks against $base"
failed=0
total=${#checks[@]}
for ((i = 1; i <= total; i++)); do
    entry=${checks[i - 1]}
    fn=${entry%%:*}
    name="check $i/$total: ${entry#*:}"
    problems=()
    seen=""
    started=$(now_us)
    "$fn"
    took=$(seconds_since "$started")
    if ((${#problems[@]} == 0)); then
        echo "$name: PASS $seen"
        junit_case "regression.$env" "$name" "$took"
    else
        failed=$((failed + 1))
        detail=$(printf '%s; ' "${problems[@]}")
        detail=${detail%; }
        echo "$name: FAIL $seen ($detail)"
        junit_case "regression.$env" "$name" "$took" "$detail"
    fi
done
((junit_given == 0)) || junit_write "$junit" "regression $env $release" "$failed"

if ((failed > 0)); then
    echo "regression test FAILED: $failed of $total checks failed"
    exit 1
fi
echo "regression test passed: $total of $total checks"
