#!/usr/bin/env bash
# bench/dashboard.sh: `chest dashboard` on SQLite tables of 1M and 10M rows (issue 16): the time
# of each API call (median and spread of RUNS calls, through curl) and of the page load in a
# headless Chromium (navigation to the first complete update, drawn; median of LOADS loads).
#
#   cargo build --release -p chest-cli && bench/dashboard.sh [ROWS...]   (default: 1000000 10000000)
#
# The rows are spread evenly over the last 24 h, ending now: four variables (two numeric, on
# POST and GET /api-endpoint; one numeric and one text on GET /x), a request id per 4 rows.
# They are bulk-inserted by sqlite3 (a recursive CTE), then the two indexes chest creates
# (request_id, recorded_at) are built, as a chest of that size would have them.
# Knobs (env): RUNS (7), LOADS (5), CHEST (target/release/chest), KEEP_DB (a folder to keep the
# tables in, and to take them from when there).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
RUNS=${RUNS:-7} LOADS=${LOADS:-5}
CHEST=${CHEST:-${CARGO_TARGET_DIR:-target}/release/chest}
[ -x "$CHEST" ] || { echo "build it first: cargo build --release -p chest-cli ($CHEST)" >&2; exit 1; }
command -v sqlite3 >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3 >/dev/null
for x in chromium chromedriver; do command -v $x >/dev/null || { echo "$x missing: scripts/services start installs it" >&2; exit 1; }; done
[ $# -gt 0 ] || set -- 1000000 10000000
dbdir=${KEEP_DB:-$bench_work}

# make_db ROWS PATH: the table, as chest's SQLite chest makes it, filled in one transaction.
make_db() {
  local rows=$1 path=$2 now
  now=$(date +%s)
  rm -f "$path"
  sqlite3 "$path" >/dev/null <<SQL
PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;
CREATE TABLE "chest" ("unique_id" INTEGER PRIMARY KEY AUTOINCREMENT, "request_id" TEXT NOT NULL,
  "name" TEXT NOT NULL, "value" TEXT, "value_num" REAL, "value_type" TEXT, "method" TEXT,
  "route" TEXT, "recorded_at" TEXT);
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $rows),
  r AS (SELECT i, i % 4 AS k, ($now - 86400) * 1000000 + i * (86400000000 / $rows) AS us,
          ((i * 7919) % 100000) / 1000.0 AS v FROM n)
INSERT INTO "chest" (request_id, name, value, value_num, value_type, method, route, recorded_at)
SELECT printf('req-%d', i / 4),
  CASE k WHEN 0 THEN 'response_time' WHEN 1 THEN 'transaction' WHEN 2 THEN 'latency_ms' ELSE 'user' END,
  CASE k WHEN 3 THEN printf('user %d', i % 97) WHEN 1 THEN CAST(i / 4 AS TEXT) ELSE CAST(v AS TEXT) END,
  CASE k WHEN 3 THEN NULL WHEN 1 THEN i / 4 ELSE v END,
  CASE k WHEN 3 THEN 'text' WHEN 1 THEN 'int' ELSE 'float' END,
  CASE k WHEN 0 THEN 'POST' ELSE 'GET' END,
  CASE WHEN k < 2 THEN '/api-endpoint' ELSE '/x' END,
  strftime('%Y-%m-%dT%H:%M:%S', us / 1000000, 'unixepoch') || printf('.%06dZ', us % 1000000)
FROM r;
CREATE INDEX "chest_request_id" ON "chest" ("request_id");
CREATE INDEX "chest_recorded_at" ON "chest" ("recorded_at");
SQL
}

# times URL: RUNS calls' total times in ms (after one warm-up call), and the answer's size.
times() {
  curl -sf -o /dev/null "$1"
  local out=() t
  for _ in $(seq "$RUNS"); do
    t=$(curl -sf -o /dev/null -w '%{time_total}' "$1")
    out+=("$(awk -v t="$t" 'BEGIN {printf "%.1f", t * 1000}')")
  done
  printf '%s\n' "${out[@]}"
}

# summary VALUES...: "median (min–max)".
summary() { printf '%s (%s–%s)' "$(median "$@")" "$(printf '%s\n' "$@" | sort -g | head -n1)" "$(printf '%s\n' "$@" | sort -g | tail -n1)"; }

# WebDriver (chromedriver's HTTP API) with curl: page loads in a headless Chromium.
wd_port=$((20000 + RANDOM % 20000))
chromedriver --port=$wd_port >/dev/null 2>&1 &
wd_pid=$!
trap 'kill $wd_pid 2>/dev/null || true; bench_stop; rm -rf "$bench_work"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$wd_port/status" >/dev/null && break; sleep 0.1; done
wd() { curl -sf -X "$1" "http://127.0.0.1:$wd_port$2" -H 'content-type: application/json' ${3:+-d "$3"}; }
session=$(wd POST /session '{"capabilities":{"alwaysMatch":{"browserName":"chrome","goog:chromeOptions":{"binary":"'"$(command -v chromium)"'","args":["--headless=new","--no-sandbox","--disable-gpu","--disable-dev-shm-usage"]}}}}' |
  sed -n 's/.*"sessionId":"\([^"]*\)".*/\1/p')
[ -n "$session" ] || { echo "no WebDriver session" >&2; exit 1; }

# page_load URL: ms from navigation to the first complete update (the page's own clock).
page_load() {
  wd POST "/session/$session/url" "{\"url\":\"$1\"}" >/dev/null
  local ms=""
  for _ in $(seq 600); do
    ms=$(wd POST "/session/$session/execute/sync" \
      '{"script":"const d = window.chestDashboard; return d && d.loaded_ms !== null ? d.loaded_ms : null;","args":[]}' |
      sed -n 's/.*"value":\([0-9.]*\).*/\1/p')
    [ -n "$ms" ] && break
    sleep 0.05
  done
  [ -n "$ms" ] || { echo "the page did not load: $1" >&2; exit 1; }
  awk -v m="$ms" 'BEGIN {printf "%.0f", m}'
}

echo "machine: $(nproc) cores, $(sqlite3 --version | cut -d' ' -f1) (sqlite3 CLI), chest $("$CHEST" --version)"
for rows in "$@"; do
  db="$dbdir/dash-$rows.db"
  start=$(date +%s.%N)
  # With KEEP_DB, a table made by an earlier run is used again (its rows end when it was made).
  [ -n "${KEEP_DB:-}" ] && [ -s "$db" ] || make_db "$rows" "$db"
  echo
  echo "== $rows rows ($(du -h "$db" | cut -f1)), built in $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.0f", e - s}') s"
  in_hour=$(sqlite3 "$db" "SELECT COUNT(*) FROM chest WHERE recorded_at >= strftime('%Y-%m-%dT%H:%M:%S', 'now', '-1 hour')")
  echo "rows in the last hour (the default view): $in_hour"
  bench_start "chest dashboard" "$CHEST" dashboard --db "$db" --addr 127.0.0.1:0
  url=${url%/}
  printf '%-34s %s\n' "call" "ms: median (min–max) of $RUNS"
  for call in "series?range=5m" "series?range=1h" "series?range=24h" "series?range=all" \
              "series?range=1h&name=response_time" "records?limit=50" "records?limit=50&request_id=req-$((rows / 8))" "health"; do
    mapfile -t t < <(times "$url/api/v1/$call")
    printf '%-34s %s\n' "/api/v1/$call" "$(summary "${t[@]}")"
  done
  for range in 1h 5m 24h; do
    loads=()
    page_load "$url/?range=$range" >/dev/null # warm
    for _ in $(seq "$LOADS"); do loads+=("$(page_load "$url/?range=$range")"); done
    printf '%-34s %s\n' "page load, range $range" "$(summary "${loads[@]}") ms of $LOADS"
  done
  bench_stop
done
wd DELETE "/session/$session" >/dev/null || true
