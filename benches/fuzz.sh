#!/usr/bin/env bash
# Runs the parser property tests (tests/suite/fuzz.rs) for longer than `cargo test` does:
# CASES cases per property (default 100000), in release mode. Failing inputs are shrunk and
# saved to tests/proptest-regressions/fuzz.txt, which every later `cargo test` replays first.
#   benches/fuzz.sh            # about 100k cases per parser
#   CASES=1000000 benches/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PROPTEST_CASES="${CASES:-100000}" exec cargo test --release --test suite fuzz:: -- --test-threads 4
