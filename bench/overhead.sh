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
#
# Knobs (env): ROUTE (default /api-endpoint), NAME (the variable counted, default transaction), PAIRS (default 16), DURATION (2s), THREADS (2), CONNECTIONS (32), WARMUP (3s);
# see bench/lib.sh (the measuring part, shared with bench/overhead-actix.sh). Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

cargo build --release -q -p chest-cli
chest="${CARGO_TARGET_DIR:-target}/release/chest"
bench_start "chest demo" "$chest" demo --addr 127.0.0.1:0 --db "$bench_work/bench.db" "$@"
route=${ROUTE:-/api-endpoint} name=${NAME:-transaction}
bench_pairs "$url/bare" "$url$route"
rows=$("$chest" stats --db "$bench_work/bench.db" --json --name "$name" | sed -n 's/.*"count":\([0-9]*\).*/\1/p')
bench_report "route $route, demo args: ${*:-(default)}" "rows written ($name): ${rows:-0}"
