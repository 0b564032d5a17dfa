#!/usr/bin/env bash
# bench/vs-flask-chest.sh: chest against Flask-Chest, the same sample app, side by side.
#
# Installs flask-chest==0.0.10 (with icecream, which its decorator imports, and gunicorn) in a
# virtualenv from PyPI, serves Flask-Chest's sample app (GET|POST /api-endpoint, tracked vars
# GET → transaction, POST → transaction + response_time, FlaskChestSQLite) under `gunicorn -w 2`,
# and `chest demo` (batched SQLite), runs wrk alternately on both with the same settings, then
# prints both req/s, both databases' row counts against the requests wrk completed, and as its
# last line speedup=<chest req/s ÷ flask-chest req/s>.
#
# Knobs (env): PAIRS (3), DURATION (5s), THREADS (2), CONNECTIONS (8).
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${PAIRS:-3} DURATION=${DURATION:-5s} THREADS=${THREADS:-2} CONNECTIONS=${CONNECTIONS:-8}
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"' EXIT
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }

venv=${FLASK_CHEST_VENV:-target/flask-chest-venv}
if [ ! -x "$venv/bin/gunicorn" ]; then
  echo "installing flask-chest==0.0.10, icecream, gunicorn into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q flask-chest==0.0.10 icecream gunicorn
fi
cat > "$work/app.py" <<'PY'
import os, time, itertools
from flask import Flask, g
from flask_chest import FlaskChestSQLite
from flask_chest.decorator import flask_chest

app = Flask(__name__)
chest = FlaskChestSQLite(app=app, db_uri=os.environ["FLASK_CHEST_DB"])
counter = itertools.count(1)

@app.route("/api-endpoint", methods=["GET", "POST"])
@flask_chest(chests=[chest], tracked_vars={"GET": ["transaction"], "POST": ["transaction", "response_time"]})
def api_endpoint():
    started = time.perf_counter()
    g.transaction = next(counter)
    g.response_time = time.perf_counter() - started
    return "Hello, World!"
PY
cargo build --release -q -p chest-cli
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
fport=$(port)
FLASK_CHEST_DB="$work/flask.db" "$venv/bin/gunicorn" -w 2 -b "127.0.0.1:$fport" --chdir "$work" \
  --log-level error app:app >"$work/gunicorn.log" 2>&1 &
pids+=($!)
"${CARGO_TARGET_DIR:-target}/release/chest" demo --addr 127.0.0.1:0 --db "$work/chest.db" --no-prometheus \
  >"$work/demo.out" 2>"$work/demo.log" &
pids+=($!)
demo=$!
for _ in $(seq 100); do
  grep -q 'listening on' "$work/demo.out" 2>/dev/null && curl -fs "127.0.0.1:$fport/api-endpoint" >/dev/null 2>&1 && break
  sleep 0.2
done
curl_url=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$work/demo.out" | head -n1)
[ -n "$curl_url" ] || { echo "chest demo did not start" >&2; cat "$work/demo.log" >&2; exit 1; }
furl="http://127.0.0.1:$fport/api-endpoint" curl_url="$curl_url/api-endpoint"

# run URL: "req/s completed-requests"
run() { wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "$1" | awk '/requests in/ {n=$1} /Requests\/sec/ {r=$2} END {print r, n}'; }
f_sum=0 c_sum=0 f_req=1 c_req=0 f_rates=() c_rates=()
f_req=0
for i in $(seq "$PAIRS"); do
  read -r fr fn < <(run "$furl"); read -r cr cn < <(run "$curl_url")
  f_rates+=("$fr") c_rates+=("$cr") f_req=$((f_req + fn)) c_req=$((c_req + cn))
  printf 'pair %d: flask-chest %10.1f req/s   chest %10.1f req/s\n' "$i" "$fr" "$cr"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mf=$(median "${f_rates[@]}") mc=$(median "${c_rates[@]}")
kill -TERM "$demo"; wait "$demo" 2>/dev/null || true   # the demo drains its queue on SIGTERM
# The one request each side got before the runs (readiness probe / none) is counted too.
f_rows=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM flask_chest').fetchone()[0])" "$work/flask.db")
c_rows=$("${CARGO_TARGET_DIR:-target}/release/chest" stats --db "$work/chest.db" --json --name transaction | sed -n 's/.*"count":\([0-9]*\).*/\1/p')
echo "settings: wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $PAIRS alternating pairs (GET /api-endpoint: one tracked var)"
echo "flask-chest: median $mf req/s; $f_req requests completed by wrk, $f_rows rows (+1 readiness request)"
echo "chest:       median $mc req/s; $c_req requests completed by wrk, ${c_rows:-0} rows"
awk -v c="$mc" -v f="$mf" 'BEGIN {printf "speedup=%.0f\n", c / f}'
