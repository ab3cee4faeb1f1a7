#!/usr/bin/env bash
# Shared helpers of the sample deploy scripts (deploy_backend.sh, rollback_backend.sh, smoke_test.sh,
# regression_test.sh, refresh_staging_data.sh, stop_sample.sh). Sourced, never run on its own.
#
# Environment:
#   RAYBOT_BIN            binary with the `sample-app serve|router` subcommands (default: raybot)
#   SAMPLE_STATE_DIR      state root (default: .raybot/sample, relative to the working directory);
#                         <root>/<env>/ holds route.json, *.pid, *.version, *.log
#   SAMPLE_PORT_<ENV>     router port of an environment (ENV upper-cased, '-' -> '_'); blue listens
#                         on port+1, green on port+2. Defaults: staging 18080, production 18090.
#   SAMPLE_FAIL           failure injection, comma-separated: <env>:deploy, <env>:smoke
#   SAMPLE_START_TIMEOUT  seconds to wait for a started process to answer (default: 10)
#
# route.json is written by these scripts (atomically; parsed with grep/sed, so backend objects must
# stay flat) and read by
# the router on every request:
#   {"stable": {"port": P, "version": V}, "canary": null|{...}, "weight": 0..100, "previous": null|{...}}

set -euo pipefail
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    echo "_sample_lib.sh only defines helpers for the sample scripts: source it, do not run it" >&2
    exit 2
fi

SAMPLE_SELF=${0##*/}

die() {
    echo "ERROR: $*" >&2
    exit 1
}

usage_error() {
    echo "usage error: $1" >&2
    echo "usage: ${USAGE:-$SAMPLE_SELF}" >&2
    exit 2
}

# need_value "$@": the current flag must be followed by a value.
need_value() {
    [[ $# -ge 2 ]] || usage_error "$1 needs a value"
}

validate_env() {
    [[ $1 =~ ^[a-z0-9_-]+$ ]] || usage_error "invalid env $(printf '%q' "$1") (expected [a-z0-9_-]+)"
}

validate_version() {
    [[ $1 =~ ^[A-Za-z0-9._-]{1,64}$ ]] ||
        usage_error "invalid release $(printf '%q' "$1") (expected [A-Za-z0-9._-]{1,64})"
}

now_utc() {
    date -u +%Y-%m-%dT%H:%M:%SZ
}

state_root() {
    printf '%s\n' "${SAMPLE_STATE_DIR:-.raybot/sample}"
}

# env_dir ENV: the environment's state directory (not created).
env_dir() {
    printf '%s/%s\n' "$(state_root)" "$1"
}

# make_env_dir ENV: creates the state directory and prints its absolute path.
make_env_dir() {
    local dir
    dir=$(env_dir "$1")
    mkdir -p "$dir"
    (cd "$dir" && pwd)
}

# router_port ENV
router_port() {
    local var port
    var="SAMPLE_PORT_${1^^}"
    var=${var//-/_}
    port=${!var:-}
    if [[ -z $port ]]; then
        case $1 in
        staging) port=18080 ;;
        production) port=18090 ;;
        *) die "no port for env '$1': set $var (router port; blue and green use the next two ports)" ;;
        esac
    fi
    if ! [[ $port =~ ^[0-9]{1,5}$ ]] || ((10#$port < 1 || 10#$port > 65533)); then
        die "$var=$port is not a usable port (1..65533)"
    fi
    printf '%s\n' "$((10#$port))"
}

# color_port ROUTER_PORT COLOR
color_port() {
    case $2 in
    blue) printf '%s\n' "$(($1 + 1))" ;;
    green) printf '%s\n' "$(($1 + 2))" ;;
    *) die "unknown color $2" ;;
    esac
}

# port_color ROUTER_PORT PORT: blue / green, or dies.
port_color() {
    if (($2 == $1 + 1)); then
        echo blue
    elif (($2 == $1 + 2)); then
        echo green
    else
        die "route state refers to port $2, which is neither blue ($(($1 + 1))) nor green ($(($1 + 2))); check SAMPLE_PORT_*"
    fi
}

other_color() {
    if [[ $1 == blue ]]; then echo green; else echo blue; fi
}

# sample_fail ENV WHAT: true when SAMPLE_FAIL asks for this failure.
sample_fail() {
    local item items
    IFS=, read -ra items <<<"${SAMPLE_FAIL:-}"
    for item in "${items[@]}"; do
        item=${item//[[:space:]]/}
        [[ $item == "$1:$2" ]] && return 0
    done
    return 1
}

resolve_bin() {
    local bin=${RAYBOT_BIN:-raybot}
    command -v "$bin" >/dev/null 2>&1 ||
        die "cannot run '$bin': set RAYBOT_BIN to the raybot binary (it needs the 'sample-app' subcommand)"
    printf '%s\n' "$bin"
}

# --- processes -------------------------------------------------------------------------------------

# pid_alive PID: running (a zombie does not count).
pid_alive() {
    local pid=$1 state
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r /proc/$pid/stat ]]; then
        state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
        [[ $state != Z && $state != X && -n $state ]] || return 1
    fi
    return 0
}

# pid_is_sample PID: a live process of ours (guards against a recycled pid).
pid_is_sample() {
    local pid=$1 cmd
    pid_alive "$pid" || return 1
    if [[ -r /proc/$pid/cmdline ]]; then
        cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    else
        cmd=$(ps -o args= -p "$pid" 2>/dev/null) || return 1
    fi
    [[ $cmd == *sample-app* ]]
}

# running_pid DIR NAME: pid of the live sample process recorded in DIR/NAME.pid, or nothing.
running_pid() {
    local file="$1/$2.pid" pid
    [[ -f $file ]] || return 0
    pid=$(head -n1 "$file" 2>/dev/null || true)
    if pid_is_sample "$pid"; then
        printf '%s\n' "$pid"
    fi
}

# stop_process DIR NAME: stops the process recorded in DIR/NAME.pid (TERM, then KILL), removes
# DIR/NAME.pid and DIR/NAME.version. Prints what it stopped.
stop_process() {
    local dir=$1 name=$2 pid i
    pid=$(running_pid "$dir" "$name")
    if [[ -n $pid ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            pid_alive "$pid" || break
            sleep 0.1
        done
        if pid_alive "$pid"; then
            kill -KILL "$pid" 2>/dev/null || true
            for ((i = 0; i < 20; i++)); do
                pid_alive "$pid" || break
                sleep 0.1
            done
        fi
        echo "stopped $name (pid $pid)"
    fi
    rm -f "$dir/$name.pid" "$dir/$name.version"
}

# start_daemon DIR NAME ARGS...: starts "$RAYBOT_BIN" ARGS... in its own session, output appended to
# DIR/NAME.log, pid in DIR/NAME.pid. It survives the job's process group being killed and does not
# hold the job's pipes.
start_daemon() {
    local dir=$1 name=$2 bin pid
    shift 2
    bin=$(resolve_bin)
    echo "--- $(now_utc) starting: $bin $*" >>"$dir/$name.log"
    # fd 9 is the environment lock (lock_env): a daemon must not inherit it.
    setsid "$bin" "$@" >>"$dir/$name.log" 2>&1 </dev/null 9>&- &
    pid=$!
    printf '%s\n' "$pid" >"$dir/$name.pid"
}

# --- HTTP ------------------------------------------------------------------------------------------

# http_probe URL HEADER_FILE: prints the status code ("000" when nothing answered).
http_probe() {
    curl -s --noproxy '*' --max-time 2 -o /dev/null -D "$2" -w '%{http_code}' "$1" 2>/dev/null || true
}

# http_fetch METHOD URL HEADER_FILE BODY_FILE: prints the status code ("000" when nothing answered).
http_fetch() {
    curl -s --noproxy '*' --max-time 2 -X "$1" -o "$4" -D "$3" -w '%{http_code}' "$2" 2>/dev/null || true
}

# header_value HEADER_FILE NAME
header_value() {
    grep -i "^$2:" "$1" 2>/dev/null | head -n1 | cut -d: -f2- | tr -d '\r' |
        sed 's/^[[:space:]]*//; s/[[:space:]]*$//' || true
}

# wait_answer PORT PID [VERSION]: waits until 127.0.0.1:PORT/healthz answers (any status; with
# VERSION, only an answer carrying x-version: VERSION counts) while PID is alive.
wait_answer() {
    local port=$1 pid=$2 want=${3:-} limit headers status i
    limit=${SAMPLE_START_TIMEOUT:-10}
    [[ $limit =~ ^[0-9]+$ ]] || limit=10
    headers=$(mktemp)
    for ((i = 0; i < limit * 10; i++)); do
        pid_alive "$pid" || break
        status=$(http_probe "http://127.0.0.1:$port/healthz" "$headers")
        if [[ $status != 000 ]]; then
            if [[ -z $want || $(header_value "$headers" x-version) == "$want" ]]; then
                rm -f "$headers"
                return 0
            fi
        fi
        sleep 0.1
    done
    rm -f "$headers"
    return 1
}

# --- route state -----------------------------------------------------------------------------------

# shellcheck disable=SC2034 # the ROUTE_* globals are read by the scripts that source this file
# load_route FILE: sets ROUTE_EXISTS, ROUTE_{STABLE,CANARY,PREV}_{PORT,VERSION}, ROUTE_WEIGHT.
load_route() {
    local file=$1 json stable canary previous
    ROUTE_EXISTS=0
    ROUTE_STABLE_PORT="" ROUTE_STABLE_VERSION=""
    ROUTE_CANARY_PORT="" ROUTE_CANARY_VERSION=""
    ROUTE_PREV_PORT="" ROUTE_PREV_VERSION=""
    ROUTE_WEIGHT=0
    [[ -f $file ]] || return 0
    ROUTE_EXISTS=1
    json=$(tr -d '\n\r' <"$file")
    # Separate assignments so that a corrupt entry (json_backend dies) stops the script.
    stable=$(json_backend "$json" stable "$file")
    canary=$(json_backend "$json" canary "$file")
    previous=$(json_backend "$json" previous "$file")
    read -r ROUTE_STABLE_PORT ROUTE_STABLE_VERSION <<<"$stable"
    read -r ROUTE_CANARY_PORT ROUTE_CANARY_VERSION <<<"$canary"
    read -r ROUTE_PREV_PORT ROUTE_PREV_VERSION <<<"$previous"
    ROUTE_WEIGHT=$(grep -o '"weight"[[:space:]]*:[[:space:]]*[0-9]*' <<<"$json" | grep -o '[0-9]*$' || true)
    ROUTE_WEIGHT=${ROUTE_WEIGHT:-0}
    [[ -n $ROUTE_STABLE_PORT ]] || die "corrupt route state $file: no stable backend"
}

# json_backend JSON KEY FILE: prints "PORT VERSION", or nothing for null / absent.
json_backend() {
    local obj port version
    obj=$(grep -o "\"$2\"[[:space:]]*:[[:space:]]*{[^}]*}" <<<"$1" | head -n1 || true)
    [[ -n $obj ]] || return 0
    port=$(grep -o '"port"[[:space:]]*:[[:space:]]*[0-9]*' <<<"$obj" | grep -o '[0-9]*$' || true)
    version=$(grep -o '"version"[[:space:]]*:[[:space:]]*"[^"]*"' <<<"$obj" | sed 's/.*"\([^"]*\)"$/\1/' || true)
    [[ -n $port && -n $version ]] || die "corrupt route state $3 ($2)"
    printf '%s %s\n' "$port" "$version"
}

backend_json() {
    if [[ -z $1 ]]; then
        printf 'null'
    else
        printf '{"port": %s, "version": "%s"}' "$1" "$2"
    fi
}

# write_route FILE STABLE_PORT STABLE_VERSION CANARY_PORT CANARY_VERSION WEIGHT PREV_PORT PREV_VERSION
# (empty port = null). Atomic: temp file in the same directory, then rename.
write_route() {
    local file=$1 tmp
    tmp=$(mktemp "$file.tmp.XXXXXX")
    {
        printf '{\n'
        printf '  "stable": %s,\n' "$(backend_json "$2" "$3")"
        printf '  "canary": %s,\n' "$(backend_json "$4" "$5")"
        printf '  "weight": %s,\n' "$6"
        printf '  "previous": %s\n' "$(backend_json "$7" "$8")"
        printf '}\n'
    } >"$tmp"
    mv -f "$tmp" "$file"
}

# describe_route: one line from the ROUTE_* variables.
describe_route() {
    local canary="none" prev="none"
    [[ -n $ROUTE_CANARY_PORT ]] && canary="$ROUTE_CANARY_VERSION (port $ROUTE_CANARY_PORT) weight=$ROUTE_WEIGHT%"
    [[ -n $ROUTE_PREV_PORT ]] && prev="$ROUTE_PREV_VERSION (port $ROUTE_PREV_PORT)"
    echo "stable=$ROUTE_STABLE_VERSION (port $ROUTE_STABLE_PORT) canary=$canary previous=$prev"
}

# lock_env DIR: one deploy / rollback per environment at a time (when flock is available).
lock_env() {
    command -v flock >/dev/null 2>&1 || return 0
    exec 9>"$1/.lock"
    flock -w 60 9 || die "another deploy or rollback holds $1/.lock"
}

# ensure_router DIR ROUTER_PORT: starts the router if it is not running.
ensure_router() {
    local dir=$1 port=$2 pid
    pid=$(running_pid "$dir" router)
    if [[ -n $pid ]]; then
        return 0
    fi
    echo "starting router on 127.0.0.1:$port (state $dir/route.json)"
    start_daemon "$dir" router sample-app router --port "$port" --state "$dir/route.json"
    pid=$(head -n1 "$dir/router.pid")
    if ! wait_answer "$port" "$pid"; then
        tail -n 5 "$dir/router.log" >&2 || true
        stop_process "$dir" router >/dev/null
        die "router did not come up on port $port (see $dir/router.log)"
    fi
}

# start_backend DIR COLOR PORT VERSION [--unhealthy]: (re)starts the sample app on a color and waits
# until it answers as VERSION.
start_backend() {
    local dir=$1 color=$2 port=$3 version=$4 pid
    shift 4
    stop_process "$dir" "$color"
    echo "starting $version on $color (127.0.0.1:$port)${1:+ $1}"
    start_daemon "$dir" "$color" sample-app serve --port "$port" --version "$version" "$@"
    printf '%s\n' "$version" >"$dir/$color.version"
    pid=$(head -n1 "$dir/$color.pid")
    if ! wait_answer "$port" "$pid" "$version"; then
        tail -n 5 "$dir/$color.log" >&2 || true
        stop_process "$dir" "$color" >/dev/null
        die "$version did not answer on $color (port $port) within ${SAMPLE_START_TIMEOUT:-10}s (see $dir/$color.log)"
    fi
    echo "$version answers on $color (pid $pid)"
}

# ensure_backend DIR ROUTER_PORT PORT VERSION: restarts a routed backend whose process is gone.
ensure_backend() {
    local dir=$1 rport=$2 port=$3 version=$4 color recorded
    color=$(port_color "$rport" "$port")
    recorded=$(cat "$dir/$color.version" 2>/dev/null || true)
    if [[ -n $(running_pid "$dir" "$color") && $recorded == "$version" ]]; then
        return 0
    fi
    echo "$version on $color is not running; restarting it"
    start_backend "$dir" "$color" "$port" "$version"
}

# --- JUnit reports ---------------------------------------------------------------------------------
# A test script given --junit FILE records one test case per check (junit_case) and then writes
# them as JUnit XML (junit_write), passed or failed, before it exits. raybot reads the file after
# the job and counts its <testcase> elements (src/test_report.rs): a check that is not recorded is
# not counted, so record every check, including the ones that fail.

JUNIT_CASES=()

# now_us: microseconds since the epoch (0 without EPOCHREALTIME, bash < 5).
now_us() {
    local t=${EPOCHREALTIME:-0}
    t=${t//[!0-9]/}
    printf '%s\n' "$((10#${t:-0}))"
}

# seconds_since START_US: e.g. 0.012
seconds_since() {
    local d
    d=$(($(now_us) - $1))
    ((d >= 0)) || d=0
    printf '%d.%03d\n' "$((d / 1000000))" "$((d / 1000 % 1000))"
}

# xml_escape TEXT: TEXT for an XML attribute or text node, on one line (control characters become
# spaces). Pure bash: it runs for every check. The replacements are quoted so that bash 5.2's
# patsub_replacement does not read their `&` as the matched text.
xml_escape() {
    local s=${1//[[:cntrl:]]/ }
    s=${s//&/'&amp;'}
    s=${s//</'&lt;'}
    s=${s//>/'&gt;'}
    s=${s//\"/'&quot;'}
    s=${s//\'/'&apos;'}
    printf '%s' "$s"
}

# junit_case CLASSNAME NAME SECONDS [FAILURE_MESSAGE]: records a check, failed when a message is given.
junit_case() {
    local entry
    entry="    <testcase classname=\"$(xml_escape "$1")\" name=\"$(xml_escape "$2")\" time=\"$3\""
    if (($# >= 4)); then
        entry+=">"$'\n'"      <failure type=\"check\" message=\"$(xml_escape "$4")\">$(xml_escape "$4")</failure>"
        entry+=$'\n'"    </testcase>"
    else
        entry+="/>"
    fi
    JUNIT_CASES+=("$entry")
}

# junit_write FILE SUITE FAILURES: writes the recorded checks as one <testsuite> named SUITE, atomically
# (a temp file in the same directory, then rename).
junit_write() {
    local file=$1 suite tests=${#JUNIT_CASES[@]} failures=$3 dir tmp
    suite=$(xml_escape "$2")
    dir=$(dirname "$file")
    mkdir -p "$dir" || die "cannot create $dir for the JUnit report"
    tmp=$(mktemp "$file.tmp.XXXXXX") || die "cannot write the JUnit report $file"
    {
        printf '<?xml version="1.0" encoding="UTF-8"?>\n'
        printf '<testsuites name="%s" tests="%d" failures="%d" errors="0" skipped="0">\n' "$suite" "$tests" "$failures"
        printf '  <testsuite name="%s" tests="%d" failures="%d" errors="0" skipped="0" timestamp="%s">\n' \
            "$suite" "$tests" "$failures" "$(now_utc)"
        if ((tests > 0)); then
            printf '%s\n' "${JUNIT_CASES[@]}"
        fi
        printf '  </testsuite>\n</testsuites>\n'
    } >"$tmp" || {
        rm -f "$tmp"
        die "cannot write the JUnit report $file"
    }
    mv -f "$tmp" "$file"
    echo "wrote JUnit report $file ($tests checks, $failures failed)"
}

# validate_report_path PATH: a file path for --junit (not empty, not a directory).
validate_report_path() {
    [[ -n $1 ]] || usage_error "--junit needs a file path"
    [[ ! -d $1 ]] || usage_error "--junit $(printf '%q' "$1") is a directory, expected a file path"
}
