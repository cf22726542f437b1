#!/usr/bin/env bash
# Longer runs of the suite's randomized tests than `cargo test` makes, in release mode:
# 1. the parser property tests (tests/suite/fuzz.rs), CASES cases per property (default 100000);
#    failing inputs are shrunk and saved to tests/proptest-regressions/fuzz.txt, which every
#    later `cargo test` replays first;
# 2. the model of the archive (tests/suite/model.rs), SEEDS random sequences per backend
#    (default 100), from a random first seed (FIRST_SEED to choose it). A failing seed is
#    printed with its shortest sequence: add it to REGRESSION_SEEDS in model.rs.
#   benches/fuzz.sh                     # about 100k cases per parser, 100 sequences per backend
#   CASES=1000000 SEEDS=1000 benches/fuzz.sh
#   ONLY=model SEEDS=20 benches/fuzz.sh # the model alone
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${ONLY:-}" != model ]; then
    PROPTEST_CASES="${CASES:-100000}" cargo test --release --test suite fuzz:: -- --test-threads 4
fi
if [ "${ONLY:-}" != fuzz ]; then
    first="${FIRST_SEED:-$(( (RANDOM << 30) ^ (RANDOM << 15) ^ RANDOM ))}"
    echo "model: ${SEEDS:-100} sequences per backend from seed $first"
    for suite in suite suite_postgres; do
        CHATSINK_MODEL_SEEDS="${SEEDS:-100}" CHATSINK_MODEL_FIRST_SEED="$first" \
            cargo test --release --test "$suite" model:: -- --nocapture
    done
fi
