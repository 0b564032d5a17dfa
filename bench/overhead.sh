#!/usr/bin/env bash
# bench/overhead.sh: what chest's layer costs next to bare axum, measured side by side in one run.
#
# Builds the release `chest` binary, starts `chest demo` on a free loopback port with a fresh
# database, warms up, then runs wrk alternately on /bare (same handler, no layer) and
# GET /api-endpoint (layer + SQLite chest). Prints each run's req/s, the per-pair ratios, and as
# its last line: overhead_ratio=<median chest req/s ÷ median bare req/s>.
#
#   bench/overhead.sh [extra `chest demo` args, e.g. --inline]
#   ROUTE=/traced NAME=user_id bench/overhead.sh   # the tracing bridge's route (facts on) instead
#   DB='nats://127.0.0.1:4222/BENCH?create=true&max_age=10m' bench/overhead.sh   # another chest URL
#
# Knobs (env): DB (default a fresh SQLite file; rows are counted for SQL chests only), ROUTE (default /api-endpoint), NAME (the variable counted, default transaction), PAIRS (default 16), DURATION (2s), THREADS (2), CONNECTIONS (32), WARMUP (3s);
# see bench/lib.sh (the measuring part, shared with bench/overhead-actix.sh). Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

cargo build --release -q -p chest-cli
chest="${CARGO_TARGET_DIR:-target}/release/chest"
db=${DB:-$bench_work/bench.db}
# In the scratch folder, where a demo writing to a server URL keeps its spool.
bench_start "chest demo" env -C "$bench_work" "$(realpath "$chest")" demo --addr 127.0.0.1:0 --db "$db" "$@"
route=${ROUTE:-/api-endpoint} name=${NAME:-transaction}
bench_pairs "$url/bare" "$url$route"
rows=$("$chest" stats --db "$db" --json --name "$name" 2>/dev/null | sed -n 's/.*"count":\([0-9]*\).*/\1/p' || true)
bench_report "route $route, demo args: ${*:-(default)}" "rows written ($name): ${rows:-0}"
