#!/usr/bin/env bash
# bench/durability-sqlite.sh: records/s into SQLite through a Batched chest with each durability
# level (memory, process, disk alternating, ROUNDS rounds of RECORDS records, 16 writers, one
# record per write), then the recovery time of RECOVER records a crash (abort) left in a
# `Durability::Process` journal (read into the spool, then replayed into SQLite). See chest/examples/durability_sqlite.rs.
#
#   bench/durability-sqlite.sh
#
# Knobs (env): RECORDS (default 200000), ROUNDS (5), RECOVER (1000000). Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${RECORDS:-200000} ROUNDS=${ROUNDS:-5} RECOVER=${RECOVER:-1000000}
cargo build --release -q -p chest --features sqlite,batch --example durability_sqlite
run="${CARGO_TARGET_DIR:-target}/release/examples/durability_sqlite"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$run" ingest "$work" "$RECORDS" "$ROUNDS"
"$run" crash "$work" "$RECOVER" || echo "(the crash run aborted, as it should)"
"$run" recover "$work"
