#!/usr/bin/env bash
# Runs every test this repository has: the engine and adapters under each promised feature
# combination, the no_std build check, doc tests, and the interop suite against real peers.
# Usage: bash scripts/test-all.sh            (everything)
#        SKIP_INTEROP=1 bash scripts/test-all.sh   (Rust tests only)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "tests, no default features (no_std core)"
cargo test --no-default-features --lib --tests
step "tests, default features (std)"
cargo test
step "tests, all features (std + tokio adapters)"
cargo test --all-features
step "no_std build check (a #![no_std] binary with its own allocator and panic handler)"
cargo run --quiet --manifest-path nostd-check/Cargo.toml
if [ "${SKIP_INTEROP:-0}" != 1 ] && [ -x tests/interop/run.sh ]; then
  step "interop against real peers (python websockets, node ws, chromium)"
  bash tests/interop/run.sh
fi
step "all tests passed"
