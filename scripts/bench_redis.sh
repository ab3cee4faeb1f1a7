#!/usr/bin/env bash
# Redis load benchmark: raybot's delivery path (driver + engine + RedisStore) next to redis-benchmark on the same
# redis-server, printed side by side with the ratio. Usage: scripts/bench_redis.sh [RATE] [SECONDS]
set -euo pipefail
rate="${1:-1000}"
seconds="${2:-10}"
command -v redis-server >/dev/null || { echo "redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }
command -v redis-benchmark >/dev/null || { echo "redis-benchmark is not installed (apt-get install redis-tools)" >&2; exit 1; }
dir="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --loglevel warning >/dev/null &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$dir"' EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done

echo "== redis-benchmark -t set (1 client, no pipelining: one round trip per request)"
bench="$(redis-benchmark -p "$port" -t set -n 20000 -c 1 -q --csv | tail -1)"
echo "$bench"
set_rps="$(echo "$bench" | cut -d, -f2 | tr -d '"')"

echo "== raybot: deliveries through the driver (dedup check, catch-up, engine, append) on Redis, ${rate}/s for ${seconds} s"
out="$(REDIS_URL="redis://127.0.0.1:$port" RAYBOT_LOAD_RATE="$rate" RAYBOT_LOAD_SECONDS="$seconds" \
  cargo bench --quiet --bench redis_load 2>/dev/null)"
echo "$out"
achieved="$(echo "$out" | sed -n 's/^achieved: \([0-9.]*\).*/\1/p')"

echo "== unthrottled capacity (as fast as it goes, 10000 events)"
cap="$(REDIS_URL="redis://127.0.0.1:$port" RAYBOT_LOAD_RATE=10000 RAYBOT_LOAD_SECONDS=1 \
  cargo bench --quiet --bench redis_load 2>/dev/null | sed -n 's/^achieved: \([0-9.]*\).*/\1/p')"
echo "raybot events/s (unthrottled): $cap"
python3 -c "print(f'ratio raybot events/s : redis SET/s = {float($cap)/float($set_rps):.2f} ({float($cap):.0f} / {float($set_rps):.0f})')"
