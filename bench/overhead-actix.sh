#!/usr/bin/env bash
# bench/overhead-actix.sh: what chest's actix-web middleware costs next to bare actix-web,
# measured side by side in one run.
#
# Builds the release example chest/examples/actix_overhead.rs, starts it on a free loopback port
# with a fresh database, warms up, then runs wrk alternately on /bare (the handler alone) and
# GET /api-endpoint (the same handler behind ChestMiddleware + a Batched SQLite chest). Prints
# each run's req/s, the per-pair ratios, what the chest wrote (read back after a drained
# shutdown), and as its last line: overhead_ratio=<median chest req/s ÷ median bare req/s>.
#
#   bench/overhead-actix.sh
#   SINK=discard bench/overhead-actix.sh   # the batched chest's sink only counts: the middleware
#                                          # and the queue without SQLite's cost
#   SINK=none bench/overhead-actix.sh      # no chest: the middleware alone
#
# Knobs (env): PAIRS (default 16), DURATION (2s), THREADS (2), CONNECTIONS (32), WARMUP (3s);
# see bench/lib.sh (the measuring part, shared with bench/overhead.sh). Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

cargo build --release -q -p chest --example actix_overhead --features actix,sqlite,batch
server="${CARGO_TARGET_DIR:-target}/release/examples/actix_overhead"
SINK=${SINK:-sqlite}
bench_start "actix_overhead" "$server" "$bench_work/bench.db" 0 "$SINK"
bench_pairs "$url/bare" "$url/api-endpoint"
# Stopping drains the batched chest; the example then prints its counters and the rows it finds.
bench_stop
stats=$(sed -n 's/^stats //p' "$bench_work/server.out")
field() { printf '%s' "$stats" | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }
# "dropped":{"oldest":N,...}: the total, and the reasons that are not zero.
dropped=$(printf '%s' "$stats" | sed -n 's/.*"dropped":{\([^}]*\)}.*/\1/p' | tr -d '"' | tr ',' '\n' |
  awk -F: '{n += $2} $2 > 0 {why = why sep $1 " " $2; sep = ", "} END {print n + 0 (why ? " (" why ")" : "")}')
rows=$(sed -n 's/^rows transaction=//p' "$bench_work/server.out")
bench_report "server: actix_overhead (actix-web, Batched chest, sink: $SINK)" \
  "batched chest: enqueued $(field enqueued), written $(field written), dropped $dropped" \
  "rows read back (transaction; with SINK=discard|none, records the sink got): ${rows:-0}"
