#!/usr/bin/env bash
# Instructions per message (callgrind), for wsframe's receive and send paths.
#
#   benches/callgrind.sh            # 16 B and 1 KiB: receive binary and ASCII text, send as
#                                   # server and as client (masked)
#   benches/callgrind.sh 125 16384  # other payload sizes (binary and text)
#
# Runs benches/callgrind_driver.rs (receive: one server engine, 64 KiB reads, every event taken;
# send: `common::wsframe_send`, one message at a time, as server or masked client) under
# `valgrind --tool=callgrind` at two message counts and prints
# (instructions(N2) - instructions(N1)) / (N2 - N1): the setup (input generation, engine
# creation) cancels out, what is left is the steady-state cost of one message.
# Needs valgrind (apt-get install valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed" >&2; exit 2; }

sizes=("$@")
[ "${#sizes[@]}" -gt 0 ] || sizes=(16 1024)

exe=$(cargo bench --bench callgrind_driver --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[ -x "$exe" ] || { echo "callgrind.sh: could not build the driver" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

instructions() { # receive|send size messages binary|text|server|client
    valgrind --tool=callgrind --callgrind-out-file="$tmp/out" "$exe" "$1" "$2" "$3" "$4" \
        >/dev/null 2>"$tmp/log"
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$tmp/log"
}

printf '%-8s %-12s %-8s %14s\n' path kind size 'instr/message'
for what in receive send; do
  kinds=(binary text binary-lent)
  [ "$what" = send ] && kinds=(server client)
  for kind in "${kinds[@]}"; do
    for size in "${sizes[@]}"; do
        # Enough messages that the difference dominates; fewer for big payloads.
        n1=$(( size >= 16384 ? 200 : 2000 ))
        n2=$(( n1 * 5 ))
        a=$(instructions "$what" "$size" "$n1" "$kind")
        b=$(instructions "$what" "$size" "$n2" "$kind")
        printf '%-8s %-12s %-8s %14.1f\n' "$what" "$kind" "$size" \
            "$(echo "($b - $a) / ($n2 - $n1)" | bc -l)"
    done
  done
done
