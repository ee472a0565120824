#!/usr/bin/env bash
# Builds and runs every fuzz target for SECONDS each (default 60), one after the other.
#
#   fuzz/run-all.sh 60            # what CI runs
#   fuzz/run-all.sh 1800 frame_parse   # one target, longer
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Each target starts from
# its committed seeds (fuzz/corpus/<target>/seed-*) plus whatever corpus earlier runs left
# there. Exits non-zero on the first crash; the input is in fuzz/artifacts/<target>/ — turn it
# into a test in tests/fuzz_regressions.rs.
set -euo pipefail

SECONDS_EACH="${1:-60}"
shift || true
cd "$(dirname "$0")/.."

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "run-all.sh: a nightly toolchain is needed (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "run-all.sh: cargo-fuzz is needed (cargo install cargo-fuzz)" >&2
    exit 2
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

for target in "${targets[@]}"; do
    echo "== fuzz target ${target}: building"
    cargo +nightly fuzz build "${target}"
    mkdir -p "fuzz/corpus/${target}"
    dict_args=()
    if [ -f "fuzz/dict/${target}.dict" ]; then
        dict_args=("-dict=fuzz/dict/${target}.dict")
    fi
    echo "== fuzz target ${target}: running ${SECONDS_EACH}s"
    # -timeout: an input taking over 10 s is a hang. -rss_limit_mb: the harnesses check memory
    # against the configured limits themselves; this only stops a runaway.
    cargo +nightly fuzz run "${target}" "fuzz/corpus/${target}" -- \
        -max_total_time="${SECONDS_EACH}" -timeout=10 -rss_limit_mb=2048 \
        -max_len=16384 -print_final_stats=1 "${dict_args[@]}"
done
echo "== all fuzz targets ran ${SECONDS_EACH}s without a crash"
