#!/usr/bin/env bash
# bench/nats.sh: records per second through `Batched` into JetStream, a single server and the
# 3-node cluster (a stream with 3 replicas) alternately in pairs, then `chest export` from
# JetStream into PostgreSQL.
#
#   eval "$(scripts/services start)"; bench/nats.sh
#
# Each pair runs chest/examples/nats_throughput.rs (REQUESTS requests of 3 records, each into a
# fresh stream) on the single server, then on the cluster. Then EXPORTS times, a fresh durable
# consumer of the first pair's single-server stream is exported into a fresh PostgreSQL table,
# its rate read from the exporter's last progress line (so the second the exporter waits for more
# before it ends is not counted). Prints every run, then median, min and max.
#
# Knobs (env): PAIRS (5), REQUESTS (30000), EXPORTS (3). Honours CARGO_TARGET_DIR. Streams are
# made with max_age=10m, so the server forgets them.
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${PAIRS:-5} REQUESTS=${REQUESTS:-30000} EXPORTS=${EXPORTS:-3}
: "${CHEST_TEST_NATS_URL:?run eval \"\$(scripts/services start)\" first}"
: "${CHEST_TEST_NATS_CLUSTER_URLS:?run eval \"\$(scripts/services start)\" first}"
: "${CHEST_TEST_POSTGRES_URL:?run eval \"\$(scripts/services start)\" first}"

cargo build --release -q -p chest --features nats,batch --example nats_throughput
cargo build --release -q -p chest-cli
bin=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cluster="nats://$(echo "$CHEST_TEST_NATS_CLUSTER_URLS" | sed 's#nats://##g')"
run=$(date +%s)

# summary LABEL < numbers: median, min and max of the numbers.
summary() {
  sort -n | awk -v label="$1" '{a[NR] = $1}
    END {m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
         printf "%s: median %.0f records/s, min %.0f, max %.0f (n=%d)\n", label, m, a[1], a[NR], NR}'
}

# publish NAME URL: one nats_throughput run; prints records/s.
publish() {
  "$bin/examples/nats_throughput" "$2" "$REQUESTS" | sed -n 's/.*records_per_s=//p'
}

: > "$work/single"; : > "$work/cluster"
for p in $(seq "$PAIRS"); do
  s=$(publish single "$CHEST_TEST_NATS_URL/BENCH_${run}_S$p?subject=bench.$run.s$p&create=true&max_age=10m")
  c=$(publish cluster "$cluster/BENCH_${run}_C$p?subject=bench.$run.c$p&create=true&replicas=3&max_age=10m")
  echo "pair $p: single server $s records/s, R3 cluster $c records/s"
  echo "$s" >> "$work/single"; echo "$c" >> "$work/cluster"
done

: > "$work/export"
sep='?'; case "$CHEST_TEST_POSTGRES_URL" in *\?*) sep='&' ;; esac
for e in $(seq "$EXPORTS"); do
  table="bench_nats_${run}_$e"
  "$bin/chest" export --from "$CHEST_TEST_NATS_URL/BENCH_${run}_S1?subject=bench.$run.s1&consumer=bench$e" \
    --to "$CHEST_TEST_POSTGRES_URL${sep}table=$table" 2> "$work/export.log"
  rate=$(grep -o '([0-9.]*/s)' "$work/export.log" | tail -n 1 | tr -d '()/s')
  rows=$(psql "$CHEST_TEST_POSTGRES_URL" -Atc "SELECT count(*) FROM $table")
  psql "$CHEST_TEST_POSTGRES_URL" -qc "DROP TABLE $table; DROP TABLE ${table}_batches" >/dev/null
  [ "$rows" = $((REQUESTS * 3)) ] || { echo "export $e wrote $rows rows, not $((REQUESTS * 3))" >&2; exit 1; }
  echo "export $e: $rows rows into PostgreSQL, $rate records/s"
  echo "$rate" >> "$work/export"
done

echo "--- $REQUESTS requests x 3 records per run"
summary "Batched -> JetStream, single server" < "$work/single"
summary "Batched -> JetStream, R3 cluster" < "$work/cluster"
summary "chest export JetStream -> PostgreSQL" < "$work/export"
