#!/usr/bin/env bash
# Instructions per loopback echo round trip (callgrind), client and server together, for
# every library of the e2e benchmark:
#
#   benches/callgrind_e2e.sh            # 16-byte messages
#   benches/callgrind_e2e.sh 65536      # other payload sizes
#
# Runs benches/peers/benches/e2e_count.rs under `valgrind --tool=callgrind` at two round-trip
# counts and prints (instructions(N2) - instructions(N1)) / (N2 - N1). User space only: each
# system call counts as one instruction (every library here makes the same three per side).
set -euo pipefail
cd "$(dirname "$0")/peers"

command -v valgrind >/dev/null || { echo "callgrind_e2e.sh: valgrind is not installed" >&2; exit 2; }

sizes=("$@")
[ "${#sizes[@]}" -gt 0 ] || sizes=(16)

exe=$(cargo bench --bench e2e_count --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[ -x "$exe" ] || { echo "callgrind_e2e.sh: could not build the driver" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

instructions() { # library round-trips size
    valgrind --tool=callgrind --callgrind-out-file="$tmp/out" "$exe" "$1" "$2" "$3" \
        >/dev/null 2>"$tmp/log"
    # The main process only (the log may name others).
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$tmp/log" | sort -n | tail -1
}

printf '%-18s %-8s %16s\n' library size 'instr/round trip'
for size in "${sizes[@]}"; do
  for library in wsframe wsframe-defaults wsframe-direct wsframe-direct-defaults \
      tokio-tungstenite fastwebsockets raw-tcp; do
    n1=2000 n2=12000
    i1=$(instructions "$library" "$n1" "$size")
    i2=$(instructions "$library" "$n2" "$size")
    printf '%-18s %-8s %16.1f\n' "$library" "$size" "$(echo "($i2 - $i1) / ($n2 - $n1)" | bc -l)"
  done
done
