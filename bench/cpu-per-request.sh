#!/usr/bin/env bash
# bench/cpu-per-request.sh: where the server's CPU goes, per request, for /bare and the recorded
# route of `chest demo`: each run reads the CPU time of every server thread from /proc before and
# after wrk, and prints the microseconds of CPU per request by thread name (tokio workers, the
# SQLite writer, …). A ratio says how much slower; this says which thread pays.
#
#   bench/cpu-per-request.sh [extra `chest demo` args, e.g. --no-prometheus]
#
# Knobs (env): RUNS (default 3 per route), DURATION (3s), THREADS, CONNECTIONS (see bench/lib.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-3s}
. bench/lib.sh
RUNS=${RUNS:-3}

cargo build --release -q -p chest-cli
chest="${CARGO_TARGET_DIR:-target}/release/chest"
bench_start "chest demo" "$chest" demo --addr 127.0.0.1:0 --db "$bench_work/bench.db" "$@"

# CPU ticks (user + system) of each thread of the server, as "name ticks" lines.
thread_ticks() {
  for stat in /proc/"$bench_server"/task/*/stat; do
    # The name is in parentheses and may hold spaces: take what follows the last ')'.
    sed -E 's/^[0-9]+ \((.*)\) (.*)$/\1\t\2/' "$stat" | awk -F'\t' '{split($2, f, " "); print $1 "\t" f[12] + f[13]}'
  done
}

hz=$(getconf CLK_TCK)
rps "$WARMUP" "$url/bare" >/dev/null
rps "$WARMUP" "$url/api-endpoint" >/dev/null
for run in $(seq "$RUNS"); do
  for route in bare api-endpoint; do
    before=$(thread_ticks)
    requests=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "$url/$route" | awk '/requests in/ {print $1}')
    after=$(thread_ticks)
    # Per thread name: (ticks after - ticks before) / requests, in µs.
    awk -F'\t' -v n="$requests" -v hz="$hz" -v route="$route" -v run="$run" '
      NR == FNR { before[$1] += $2; next }
      { after[$1] += $2 }
      END {
        line = sprintf("run %d %-13s %8d requests:", run, route, n)
        for (t in after) { us = (after[t] - before[t]) * 1e6 / hz / n; total += us
          if (us >= 0.05) line = line sprintf("  %s %.1f", t, us) }
        printf "%s  | total %.1f µs CPU per request\n", line, total
      }' <(echo "$before") <(echo "$after")
  done
done
