#!/usr/bin/env bash
# Slack load, back to back on this machine with the same wrk scripts, against a minimal Slack
# Bolt-JS app whose handlers are a bare `ack()` (Bolt verifies the same signatures):
#
# 1. `/ray status`: distinct signed slash commands (`raybot serve` on its embedded store).
# 2. durable ✅ toggles: distinct signed `reaction_added` / `reaction_removed` Events API callbacks
#    on the change-freeze message of a real release (Redis with append-only persistence; the
#    release is driven there by signed commands: deploy, two approvals). raybot answers each 200
#    only once the event is recorded; Bolt acknowledges before its (empty) listener runs. After
#    the rounds, the script counts the events in Redis against the 200s wrk saw.
#
# Rounds alternate raybot / Bolt so that both see the same machine; the ratios are printed per round.
#
# Usage: scripts/load_slack.sh [SECONDS=10] [CONNECTIONS=16] [ROUNDS=3]
# Needs: wrk (apt-get install wrk), node + npm (Bolt is installed into target/load/bolt), python3,
# redis-server and redis-cli, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
conns="${2:-16}"
rounds="${3:-3}"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
command -v npm >/dev/null || { echo "node and npm are needed for the Bolt-JS peer (apt-get install nodejs npm)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }

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
  endpoints: ['/slack/commands', '/slack/events'],
});
app.command('/ray', async ({ ack }) => { await ack(); });
// Events are acknowledged by Bolt itself before the listener runs.
app.event('reaction_added', async () => {});
app.event('reaction_removed', async () => {});
app.start(Number(process.env.PORT)).then(() => console.log('bolt listening'));
EOF

echo "== building raybot (release)"
cargo build --release --quiet
secret="8f742231b10e8888abcd99yyyzzz85a5"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tmp="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -d "$tmp/ws" ]; then (cd "$tmp/ws" && SAMPLE_STATE_DIR=.raybot/sample scripts/stop_sample.sh >/dev/null 2>&1 || true); fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# wrk's script for a file of signed requests: the signing timestamp on the first line, then one
# "signature<TAB>body" line each. Each wrk thread takes its own share; with `wrap` it goes round its
# share again, without it every request is sent once (and running out is reported).
wrk_script() { # requests-file path content-type per-thread wrap(0|1) → the script on stdout
  cat <<LUA
local threads = 0
function setup(thread) thread:set("first", threads * $4); threads = threads + 1 end
function init(args)
  reqs, n = {}, 0
  local lines = io.lines("$1")
  TS = lines()
  local i = 0
  for line in lines do
    if i >= first and i < first + $4 then
      local tab = line:find("\t", 1, true)
      reqs[#reqs + 1] = { line:sub(1, tab - 1), line:sub(tab + 1) }
    end
    i = i + 1
  end
end
function request()
  if n < #reqs then n = n + 1 elseif $5 == 1 then n = 1 else io.stderr:write("ran out of requests\n") end
  local r = reqs[n]
  return wrk.format("POST", "$2", {
    ["Content-Type"] = "$3",
    ["X-Slack-Request-Timestamp"] = TS,
    ["X-Slack-Signature"] = r[1],
  }, r[2])
end
function response(status, headers, body)
  if status ~= 200 then io.stderr:write("status " .. status .. "\n") end
end
LUA
}

# 50,000 distinct signed `/ray status` commands (valid for five minutes).
python3 - "$secret" "$tmp/requests.txt" <<'EOF'
import hashlib, hmac, sys, time, urllib.parse
secret, out = sys.argv[1].encode(), sys.argv[2]
ts = str(int(time.time()))
with open(out, "w") as f:
    f.write(ts + "\n")
    for i in range(50000):
        body = urllib.parse.urlencode({
            "token": "x", "team_id": "T0ACME0001", "team_domain": "acme", "channel_id": "C0WARROOM01",
            "channel_name": "release-war-room", "user_id": "U0BOB00002", "user_name": "bob", "command": "/ray",
            "text": "status", "api_app_id": "A0RAYBOT01", "is_enterprise_install": "false",
            "response_url": "http://127.0.0.1:1/response", "trigger_id": f"load.{i}.{ts}",
        })
        sig = "v0=" + hmac.new(secret, f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
        f.write(sig + "\t" + body + "\n")
EOF
wrk_script "$tmp/requests.txt" /slack/commands application/x-www-form-urlencoded 25000 1 >"$tmp/load.lua"

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

measure() { # name port wrk-script → "rps p99 requests"
  local out
  out="$(wrk -t2 -c"$conns" -d"${seconds}s" --latency -s "$3" "http://127.0.0.1:$2" 2>"$tmp/$1.err")"
  echo "$out" >"$tmp/$1.out"
  if [ -s "$tmp/$1.err" ]; then echo "  $1: $(sort "$tmp/$1.err" | uniq -c | tr '\n' ' ')" >&2; fi
  echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') $(echo "$out" | awk '$1=="99%" {print $2}') $(echo "$out" | awk '/requests in/ {print $1}')"
}
to_ms() { python3 -c "v='$1'; print(float(v[:-2]) if v.endswith('ms') else float(v[:-2])/1000 if v.endswith('us') else float(v[:-1])*1000)"; }

echo "== wrk -t2 -c$conns -d${seconds}s, distinct signed /ray status commands, $rounds alternating rounds"
printf '%-6s %14s %12s %14s %12s %10s %10s\n' round raybot_req/s raybot_p99 bolt_req/s bolt_p99 rps_ratio p99_ratio
for r in $(seq 1 "$rounds"); do
  read -r ray_rps ray_p99 _ < <(measure raybot "$raybot_port" "$tmp/load.lua")
  read -r bolt_rps bolt_p99 _ < <(measure bolt "$bolt_port" "$tmp/load.lua")
  ray_ms="$(to_ms "$ray_p99")"
  bolt_ms="$(to_ms "$bolt_p99")"
  python3 -c "print(f'{$r:<6} {float($ray_rps):14.0f} {float($ray_ms):10.2f}ms {float($bolt_rps):14.0f} {float($bolt_ms):10.2f}ms {float($ray_rps)/float($bolt_rps):10.2f} {float($ray_ms)/float($bolt_ms):10.2f}')"
done
echo "(targets: raybot/Bolt req/s >= 2, raybot/Bolt p99 <= 0.5)"

# ---- 2. durable ✅ toggles ----------------------------------------------------------------------
echo
echo "== durable ✅ toggles: a real release on Redis, waiting for change-freeze acknowledgements"
bin="$PWD/target/release/raybot"
redis_port="$(free_port)"
mkdir -p "$tmp/redis"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync everysec \
  --dir "$tmp/redis" --loglevel warning >/dev/null &
pids+=($!)
until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.1; done

# A workspace like a project's: the sample scripts and inputs, the config on free ports with short
# health windows, and the sample service at v1.1 on staging and production.
ws="$tmp/ws"
mkdir -p "$ws"
cp -r scripts config examples "$ws/"
# 32 stakeholders who toggle ✅ during the rounds (on the freeze list like erin).
for k in $(seq 0 31); do
  printf '  - name: Load %04d\n    roles: [stakeholder]\n    local: load%04d\n    slack: U0LOAD%04d\n' "$k" "$k" "$k"
done >>"$ws/config/release-approvers.yaml"
staging="$(free_port)"
production="$(free_port)"
sed -i -e "s/18080/$staging/g" -e "s/18090/$production/g" -e 's/duration_seconds = [0-9]*/duration_seconds = 2/' \
  -e 's/interval_seconds = [0-9]*/interval_seconds = 1/' "$ws/config/raybot.toml"
for env in staging production; do
  (cd "$ws" && RAYBOT_BIN="$bin" SAMPLE_STATE_DIR=.raybot/sample SAMPLE_PORT_STAGING="$staging" \
    SAMPLE_PORT_PRODUCTION="$production" scripts/deploy_backend.sh --env "$env" --release v1.1 --percent 100 >/dev/null)
done

# Slack's Web API on loopback: raybot posts the release's messages here (always ok).
fake_port="$(free_port)"
cat > "$tmp/fake_slack.py" <<'PY'
import json, sys, threading, time, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
posts, lock, seq, calls = [], threading.Lock(), [0], {}
class H(BaseHTTPRequestHandler):
    # Keep-alive, as Slack's Web API: raybot's client reuses its connections.
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def reply(self, out):
        body = json.dumps(out).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_GET(self):
        with lock: self.reply(dict(calls) if self.path == "/calls" else list(posts))
    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        try: req = json.loads(raw or b"{}")
        except ValueError: req = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
        method = self.path.rsplit("/", 1)[-1]
        with lock:
            calls[method] = calls.get(method, 0) + 1
            seq[0] += 1
            ts = f"{int(time.time())}.{seq[0]:06d}"
            if method == "chat.postMessage": posts.append({"ts": ts, "text": req.get("text", "")})
        text = req.get("text", "")
        if method == "auth.test":
            self.reply({"ok": True, "url": "https://acme.slack.com/", "team": "Acme", "user": "raybot",
                        "team_id": "T0ACME0001", "user_id": "U0RAYBOT01", "bot_id": "B0RAYBOT01"})
        elif method == "chat.postMessage":
            self.reply({"ok": True, "channel": req.get("channel"), "ts": ts, "message": {"type": "message",
                        "text": text, "ts": ts, "user": "U0RAYBOT01", "bot_id": "B0RAYBOT01"}})
        elif method == "chat.update":
            self.reply({"ok": True, "channel": req.get("channel"), "ts": req.get("ts"), "text": text,
                        "message": {"type": "message", "text": text, "user": "U0RAYBOT01"}})
        elif method == "chat.postEphemeral":
            self.reply({"ok": True, "message_ts": ts})
        else:
            self.reply({"ok": True})
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$tmp/fake_slack.py" "$fake_port" &
pids+=($!)
until curl -sf "http://127.0.0.1:$fake_port/" >/dev/null; do sleep 0.1; done

ray2_port="$(free_port)"
(cd "$ws" && RAYBOT_STORE="redis://127.0.0.1:$redis_port" RAYBOT_ARTIFACTS="$tmp/artifacts2" RAYBOT_LOG=warn \
  SLACK_BOT_TOKEN=xoxb-load-0000 SLACK_SIGNING_SECRET="$secret" SLACK_API_URL="http://127.0.0.1:$fake_port/api" \
  exec "$bin" serve --listen "127.0.0.1:$ray2_port" 2>"$tmp/raybot2.log") &
pids+=($!)
until curl -sf "http://127.0.0.1:$ray2_port/healthz" >/dev/null; do sleep 0.2; done

say() { # user text → raybot's answer
  python3 - "$secret" "$ray2_port" "$1" "$2" <<'PY'
import hashlib, hmac, json, sys, time, urllib.parse, urllib.request
secret, port, user, text = sys.argv[1].encode(), sys.argv[2], sys.argv[3], sys.argv[4]
ts = str(int(time.time()))
body = urllib.parse.urlencode({"channel_id": "C0WARROOM01", "user_id": user, "command": "/ray", "text": text,
    "team_id": "T0ACME0001", "api_app_id": "A0RAYBOT01", "trigger_id": f"say.{time.time_ns()}",
    "response_url": "http://127.0.0.1:1/response", "token": "x", "team_domain": "acme", "channel_name": "w",
    "user_name": user, "is_enterprise_install": "false"})
sig = "v0=" + hmac.new(secret, f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
req = urllib.request.Request(f"http://127.0.0.1:{port}/slack/commands", data=body.encode(), headers={
    "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig})
with urllib.request.urlopen(req, timeout=5) as r:
    print(json.loads(r.read())["text"])
PY
}
wait_post() { # substring → ts of the first post containing it
  local deadline=$((SECONDS + 120)) ts
  while [ "$SECONDS" -lt "$deadline" ]; do
    ts="$(curl -sf "http://127.0.0.1:$fake_port/" | python3 -c \
      "import json,sys; print(next((p['ts'] for p in json.load(sys.stdin) if sys.argv[1] in p['text']), ''))" "$1")"
    if [ -n "$ts" ]; then echo "$ts"; return 0; fi
    sleep 0.5
  done
  echo "no post containing '$1' within 120 s; raybot's log:" >&2
  tail -20 "$tmp/raybot2.log" >&2
  return 1
}
echo "  alice: /ray deploy v1.2 → $(say U0ALICE001 'deploy v1.2')"
wait_post "[APPROVAL REQUEST]" >/dev/null
echo "  alice: /ray approve → $(say U0ALICE001 'approve')"
echo "  bob: /ray approve → $(say U0BOB00002 'approve')"
freeze_ts="$(wait_post 'Change freeze in effect')"
release="$(redis-cli -p "$redis_port" hkeys raybot:unfinished | head -1)"
echo "  release $release waits for acknowledgements on message $freeze_ts"

# Distinct signed callbacks, one file per round (so that every request raybot gets is a new event).
# As on Slack, each person's ✅ goes on and off in turn (a person cannot add the same reaction
# twice): each wrk thread toggles its own 16 stakeholders round robin, so one person's add and
# remove are 16 requests apart while a thread keeps 8 in flight (erin never acknowledges, so the
# release stays in the freeze). Each wrk thread walks its own half, once.
per_thread=$((12000 * seconds))
make_callbacks() { # round → file
  python3 - "$secret" "$tmp/reactions_$1.txt" "$freeze_ts" "$1" "$per_thread" <<'PY'
import hashlib, hmac, json, sys, time
secret, out, message_ts, rnd, per = sys.argv[1].encode(), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
ts = str(int(time.time()))
with open(out, "w") as f:
    f.write(ts + "\n")
    for i in range(2 * per):
        thread, j = divmod(i, per)
        people = [f"U0LOAD{thread * 16 + k:04d}" for k in range(16)]
        added = (j // len(people)) % 2 == 0
        body = json.dumps({"token": "x", "team_id": "T0ACME0001", "api_app_id": "A0RAYBOT01",
            "event": {"type": "reaction_added" if added else "reaction_removed", "user": people[j % len(people)],
                      "reaction": "white_check_mark", "item_user": "U0RAYBOT01",
                      "item": {"type": "message", "channel": "C0WARROOM01", "ts": message_ts},
                      "event_ts": f"{ts}.{i:06d}"},
            "type": "event_callback", "event_id": f"Ev{ts}R{rnd}N{i}", "event_time": int(ts),
            "authorizations": [{"enterprise_id": None, "team_id": "T0ACME0001", "user_id": "U0RAYBOT01",
                                "is_bot": True, "is_enterprise_install": False}],
            "is_ext_shared_channel": False}, separators=(",", ":"))
        sig = "v0=" + hmac.new(secret, f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
        f.write(sig + "\t" + body + "\n")
PY
  wrk_script "$tmp/reactions_$1.txt" /slack/events application/json "$per_thread" 0 >"$tmp/react_$1.lua"
}
log_len() { redis-cli -p "$redis_port" xlen "raybot:{$release}:log"; }
metric() { curl -sf "http://127.0.0.1:$ray2_port/metrics" | awk -v m="$1" '$1==m {print $2}'; }
before="$(log_len)"
calls_before="$(curl -sf "http://127.0.0.1:$fake_port/calls")"
requests_before="$(metric raybot_store_requests_total)"
recorded_before="$(metric raybot_events_recorded_total)"
answered=0
echo "== wrk -t2 -c$conns -d${seconds}s, distinct signed ✅ add/remove callbacks, $rounds alternating rounds"
printf '%-6s %14s %12s %14s %12s %10s\n' round raybot_req/s raybot_p99 bolt_req/s bolt_p99 rps_ratio
for r in $(seq 1 "$rounds"); do
  make_callbacks "$r"
  read -r ray_rps ray_p99 ray_n < <(measure raybot_events "$ray2_port" "$tmp/react_$r.lua")
  read -r bolt_rps bolt_p99 _ < <(measure bolt_events "$bolt_port" "$tmp/react_$r.lua")
  answered=$((answered + ray_n))
  ray_ms="$(to_ms "$ray_p99")"
  bolt_ms="$(to_ms "$bolt_p99")"
  python3 -c "print(f'{$r:<6} {float($ray_rps):14.0f} {float($ray_ms):10.2f}ms {float($bolt_rps):14.0f} {float($bolt_ms):10.2f}ms {float($ray_rps)/float($bolt_rps):10.2f}')"
done
after="$(log_len)"
python3 -c "import json,sys; b, a = json.loads(sys.argv[1]), json.loads(sys.argv[2]); print('Slack Web API calls during the rounds:', {k: a[k] - b.get(k, 0) for k in a if a[k] != b.get(k, 0)})" \
  "$calls_before" "$(curl -sf "http://127.0.0.1:$fake_port/calls")"
echo "recorded in Redis: $((after - before)) ✅ events; raybot answered $answered callbacks (wrk's count)"
requests=$(( $(metric raybot_store_requests_total) - requests_before ))
recorded=$(( $(metric raybot_events_recorded_total) - recorded_before ))
python3 -c "print(f'Redis requests per recorded event: {$requests / max($recorded, 1):.3f} ({$requests} requests, {$recorded} events; heartbeats and job polling included)')"
echo "(target: raybot/Bolt req/s >= 1 for durable toggles)"
