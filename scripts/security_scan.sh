#!/usr/bin/env bash
# Simple secret scan for a release: looks for private keys and AWS-style credentials in the release
# inputs and in scripts/. Findings name the file and line, never the secret itself.
#
#   security_scan.sh --release VERSION
#
# Scans ${RAYBOT_INPUTS_DIR:-examples/release-inputs} (relative to the working directory; skipped
# with a note when it does not exist) and the directory this script lives in (scripts/).
# Blocking: private key blocks, AWS access key ids, AWS secret access keys, and any file that could
# not be scanned. Warnings (not blocking): quoted literal values assigned to password/secret/token.
# The last line is always `blocking_findings=N`.
# Exit: 0 clean, 1 blocking findings, 2 usage error.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/_sample_lib.sh"

USAGE="security_scan.sh --release VERSION"

release=""
while (($#)); do
    case $1 in
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
[[ -n $release ]] || usage_error "--release is required"
validate_version "$release"

inputs=${RAYBOT_INPUTS_DIR:-examples/release-inputs}
targets=()
if [[ -d $inputs ]]; then
    targets+=("$inputs")
else
    echo "note: inputs directory $inputs does not exist; skipped"
fi
targets+=("$SCRIPT_DIR")

# The patterns are written so that they do not match their own text.
dashes='-----'
q="[\"']"
rules=(
    "BLOCKING|private-key|-E|${dashes}BEGIN ([A-Z0-9]+ )*PRIVATE KEY( BLOCK)?${dashes}"
    "BLOCKING|aws-access-key-id|-E|(^|[^A-Z0-9])(AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}([^A-Z0-9]|$)"
    "BLOCKING|aws-secret-access-key|-iE|aws_?secret_?(access_?)?key${q}?[[:space:]]*[:=][[:space:]]*${q}?[A-Za-z0-9/+]{40}([^A-Za-z0-9/+]|$)"
    "WARNING|hard-coded-credential|-iE|(password|passwd|secret|token)${q}?[[:space:]]*[:=][[:space:]]*${q}[^\"'\$[:space:]]{8,}${q}"
)

files=$(find "${targets[@]}" -type f -not -path '*/.git/*' 2>/dev/null | wc -l)
echo "security scan for $release: $files files in ${targets[*]}"

blocking=0
warnings=0
for rule in "${rules[@]}"; do
    IFS='|' read -r level name flags pattern <<<"$rule"
    rc=0
    hits=$(grep -rnIZ --exclude-dir=.git "$flags" -e "$pattern" -- "${targets[@]}" 2>/dev/null | tr '\0' '\t' | cut -f1,2 | cut -d: -f1) || rc=$?
    if ((rc > 1)); then
        echo "BLOCKING scan-error: grep failed ($rc) for rule $name; the scan is incomplete"
        blocking=$((blocking + 1))
    fi
    while IFS=$'\t' read -r file line; do
        [[ -n $file ]] || continue
        echo "$level $name $file:$line"
        if [[ $level == BLOCKING ]]; then
            blocking=$((blocking + 1))
        else
            warnings=$((warnings + 1))
        fi
    done <<<"$hits"
done

echo "warnings=$warnings"
if ((blocking > 0)); then
    echo "security scan FAILED for $release: $blocking blocking finding(s)"
else
    echo "security scan passed for $release"
fi
echo "blocking_findings=$blocking"
((blocking == 0)) || exit 1
