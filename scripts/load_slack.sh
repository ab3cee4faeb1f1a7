#!/usr/bin/env bash
# Slack slash-command load, back to back on this machine with the same wrk script: `raybot serve`
# answering signed `/ray status` commands, against a minimal Slack Bolt-JS app whose handler is a
# bare `ack()` (Bolt verifies the same signature). Every request is a distinct signed command.
# Rounds alternate raybot / Bolt so that both see the same machine; the ratios are printed per round.
#
# Usage: scripts/load_slack.sh [SECONDS=10] [CONNECTIONS=16] [ROUNDS=3]
# Needs: wrk (apt-get install wrk), node + npm (Bolt is installed into target/load/bolt), python3.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
conns="${2:-16}"
rounds="${3:-3}"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
command -v npm >/dev/null || { echo "node and npm are needed for the Bolt-JS peer (apt-get install nodejs npm)" >&2; exit 1; }

work="target/load"
mkdir -p "$work/bolt"
if [ ! -d "$work/bolt/node_modules/@slack/bolt" ]; then
  echo "== installing @slack/bolt into $work/bolt"
  (cd "$work/bolt" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund @slack/bolt@4 >/dev/null)
fi
cat > "$work/bolt/app.js" <<'EOF'
// The peer: a Slack Bolt app answering `/ray` with a bare ack().
const { App } = require('@slack/bolt');
const app = new App({
  token: 'xoxb-load-0000',
  signingSecret: process.env.SECRET,
  tokenVerificationEnabled: false,
  // Known ids: Bolt then never calls auth.test (nothing leaves this machine).
  botId: 'B0RAYBOT01',
  botUserId: 'U0RAYBOT01',
  endpoints: '/slack/commands',
});
app.command('/ray', async ({ ack }) => { await ack(); });
app.start(Number(process.env.PORT)).then(() => console.log('bolt listening'));
EOF

echo "== building raybot (release)"
cargo build --release --quiet
secret="8f742231b10e8888abcd99yyyzzz85a5"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tmp="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

# 50,000 distinct signed `/ray status` commands (valid for five minutes), as a Lua table.
python3 - "$secret" "$tmp/requests.lua" <<'EOF'
import hashlib, hmac, sys, time, urllib.parse
secret, out = sys.argv[1].encode(), sys.argv[2]
ts = str(int(time.time()))
with open(out, "w") as f:
    f.write("return {\n")
    for i in range(50000):
        body = urllib.parse.urlencode({
            "token": "x", "team_id": "T0ACME0001", "team_domain": "acme", "channel_id": "C0WARROOM01",
            "channel_name": "release-war-room", "user_id": "U0BOB00002", "user_name": "bob", "command": "/ray",
            "text": "status", "api_app_id": "A0RAYBOT01", "is_enterprise_install": "false",
            "response_url": "http://127.0.0.1:1/response", "trigger_id": f"load.{i}.{ts}",
        })
        sig = "v0=" + hmac.new(secret, f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
        f.write(f'{{"{sig}","{body}"}},\n')
    f.write("}\n")
    f.write(f'-- timestamp {ts}\n')
EOF
cat > "$tmp/load.lua" <<EOF
local reqs = dofile("$tmp/requests.lua")
local TS = "$(tail -1 "$tmp/requests.lua" | awk '{print $3}')"
local n = 0
local threads = 0
function setup(thread) threads = threads + 1; thread:set("offset", threads * 20000) end
function init(args) n = offset or 0 end
function request()
  n = n + 1
  local r = reqs[(n % #reqs) + 1]
  return wrk.format("POST", "/slack/commands", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["X-Slack-Request-Timestamp"] = TS,
    ["X-Slack-Signature"] = r[1],
  }, r[2])
end
function response(status, headers, body)
  if status ~= 200 then io.stderr:write("status " .. status .. "\n") end
end
EOF

raybot_port="$(free_port)"
RAYBOT_STORE="file://$tmp/store" RAYBOT_ARTIFACTS="$tmp/artifacts" RAYBOT_LOG=error \
  SLACK_BOT_TOKEN=xoxb-load-0000 SLACK_SIGNING_SECRET="$secret" SLACK_API_URL="http://127.0.0.1:1/api" \
  target/release/raybot serve --listen "127.0.0.1:$raybot_port" 2>"$tmp/raybot.log" &
pids+=($!)
bolt_port="$(free_port)"
(cd "$work/bolt" && SECRET="$secret" PORT="$bolt_port" exec node app.js >"$tmp/bolt.log" 2>&1) &
pids+=($!)
for url in "http://127.0.0.1:$raybot_port/healthz"; do
  until curl -sf "$url" >/dev/null; do sleep 0.2; done
done
until grep -q "bolt listening" "$tmp/bolt.log"; do sleep 0.2; done

# Both must answer a signed command 200 before they are measured.
check() {
  python3 - "$secret" "$1" <<'EOF'
import hashlib, hmac, sys, time, urllib.parse, urllib.request
secret, port = sys.argv[1].encode(), sys.argv[2]
ts = str(int(time.time()))
body = urllib.parse.urlencode({"channel_id": "C0WARROOM01", "user_id": "U0BOB00002", "command": "/ray",
    "text": "status", "team_id": "T0ACME0001", "api_app_id": "A0RAYBOT01", "trigger_id": "check." + ts,
    "response_url": "http://127.0.0.1:1/response", "token": "x", "team_domain": "acme", "channel_name": "w",
    "user_name": "bob", "is_enterprise_install": "false"})
sig = "v0=" + hmac.new(secret, f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
req = urllib.request.Request(f"http://127.0.0.1:{port}/slack/commands", data=body.encode(), headers={
    "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig})
with urllib.request.urlopen(req, timeout=5) as r:
    print(f"  port {port}: {r.status} {r.read()[:80]!r}")
EOF
}
echo "== both peers answer a signed /ray status"
check "$raybot_port"
check "$bolt_port"

measure() { # name port → "rps p99_ms"
  local out
  out="$(wrk -t2 -c"$conns" -d"${seconds}s" --latency -s "$tmp/load.lua" "http://127.0.0.1:$2" 2>"$tmp/$1.err")"
  echo "$out" >"$tmp/$1.out"
  if [ -s "$tmp/$1.err" ]; then echo "  $1: non-200 answers: $(sort "$tmp/$1.err" | uniq -c | tr '\n' ' ')" >&2; fi
  local rps p99
  rps="$(echo "$out" | awk '/Requests\/sec/ {print $2}')"
  p99="$(echo "$out" | awk '$1=="99%" {print $2}')"
  echo "$rps $p99"
}
to_ms() { python3 -c "v='$1'; print(float(v[:-2]) if v.endswith('ms') else float(v[:-2])/1000 if v.endswith('us') else float(v[:-1])*1000)"; }

echo "== wrk -t2 -c$conns -d${seconds}s, distinct signed /ray status commands, $rounds alternating rounds"
printf '%-6s %14s %12s %14s %12s %10s %10s\n' round raybot_req/s raybot_p99 bolt_req/s bolt_p99 rps_ratio p99_ratio
for r in $(seq 1 "$rounds"); do
  read -r ray_rps ray_p99 < <(measure raybot "$raybot_port")
  read -r bolt_rps bolt_p99 < <(measure bolt "$bolt_port")
  ray_ms="$(to_ms "$ray_p99")"
  bolt_ms="$(to_ms "$bolt_p99")"
  python3 -c "print(f'{$r:<6} {float($ray_rps):14.0f} {float($ray_ms):10.2f}ms {float($bolt_rps):14.0f} {float($bolt_ms):10.2f}ms {float($ray_rps)/float($bolt_rps):10.2f} {float($ray_ms)/float($bolt_ms):10.2f}')"
done
echo "(targets: raybot/Bolt req/s >= 2, raybot/Bolt p99 <= 0.5)"
