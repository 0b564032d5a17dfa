#!/usr/bin/env bash
# bench/instructions.sh: instructions per request of the axum request path, bare and with chest's
# layer, counted by valgrind's callgrind (chest/examples/request_instructions.rs, in process).
# Counts do not depend on what else the machine is doing, so two commits can be compared exactly;
# they do not show what memory shared between cores costs (bench/overhead*.sh do).
#
# Variants: bare, identity, inline, batched (Memory), two, prometheus, process (Durability::Process,
# the journal); see chest/examples/request_instructions.rs.
# Each variant runs twice, with N and 2N requests; the difference divided by N removes the start
# and shutdown. Prints a line per variant, instruction_ratio=<bare ÷ batched>, and, last, the
# SQLite writer thread's instructions per row (chest/examples/sqlite_instructions.rs: 3N and 6N
# rows written in batches of 1,000; the thread that makes the records is not counted).
#
#   bench/instructions.sh            # N=20000
#   N=5000 bench/instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20000}

if ! command -v valgrind >/dev/null; then
  echo "installing valgrind (Debian package)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
fi

cargo build --release -q -p chest --example request_instructions --features axum,batch,prometheus
cargo build --release -q -p chest --example sqlite_instructions --features sqlite
program="${CARGO_TARGET_DIR:-target}/release/examples/request_instructions"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# instructions VARIANT REQUESTS: the program's total instruction count.
instructions() {
  valgrind --tool=callgrind --callgrind-out-file="$work/out" "$program" "$1" "$2" 2>"$work/log" ||
    { cat "$work/log" >&2; exit 1; }
  sed -n 's/^==[0-9]*== Collected : \([0-9]*\).*/\1/p' "$work/log"
}

declare -A per_request
for variant in bare identity inline batched two prometheus process; do
  once=$(instructions "$variant" "$N")
  twice=$(instructions "$variant" $((2 * N)))
  per_request[$variant]=$(((twice - once) / N))
  printf '%-8s %6d instructions per request\n' "$variant" "${per_request[$variant]}"
done
echo "axum's route_layer alone (Identity): +$((per_request[identity] - per_request[bare])) instructions per request"
echo "layer + 3 vars + Batched hand-off and worker: +$((per_request[batched] - per_request[bare])) instructions per request"
echo "Durability::Process (the journal) over Memory: +$((per_request[process] - per_request[batched])) instructions per request"
awk -v b="${per_request[bare]}" -v c="${per_request[batched]}" 'BEGIN {printf "instruction_ratio=%.3f\n", b / c}'
awk -v b="${per_request[bare]}" -v c="${per_request[process]}" 'BEGIN {printf "instruction_ratio_process=%.3f\n", b / c}'

# writer_instructions ROWS: the instruction count of the SQLite writer thread (callgrind's second
# thread: the program's main thread is the first, the runtime starts no other).
writer_instructions() {
  rm -rf "$work/db" "$work"/threads* && mkdir "$work/db"
  valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$work/threads" \
    "${CARGO_TARGET_DIR:-target}/release/examples/sqlite_instructions" "$work/db" "$1" \
    2>"$work/log" || { cat "$work/log" >&2; exit 1; }
  sed -n 's/^summary: //p' "$work/threads-02"
}
rows=$((3 * N))
once=$(writer_instructions "$rows")
twice=$(writer_instructions $((2 * rows)))
echo "sqlite_writer_instructions_per_row=$(((twice - once) / rows))"
