#!/usr/bin/env bash
# The project's one test command (README, CI): installs what the tests need, then runs the Rust
# test suite, a short coverage-guided fuzzing run per target, and the operational checks against
# a real server, Prometheus and Chromium.
#   scripts/test.sh            everything
#   scripts/test.sh --rust     only `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."
# Each phase says how long it took, so a slow CI run shows where its time went.
phase_start=$SECONDS
phase() { echo "== $1 (previous phase took $((SECONDS - phase_start)) s; $SECONDS s in all)"; phase_start=$SECONDS; }

./scripts/install-runtime.sh
# NumPy for the reference implementations some tests compare with (`visionquery eval`).
PYTHONPATH=.runtime/python python3 -c 'import numpy' 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check --target .runtime/python "numpy==2.2.6"
source scripts/build-env.sh
# A real PostgreSQL + pgvector for the PostgreSQL store's tests (installed from PyPI, run as an
# unprivileged user on loopback), stopped again when the tests end.
phase "PostgreSQL $(./scripts/pg.sh start)"
trap './scripts/pg.sh stop' EXIT

phase "cargo test"
cargo test --locked "${CARGO_FEATURE_FLAGS[@]}" 2>&1

if [ "${1:-}" = "--rust" ]; then
  exit 0
fi

phase "fuzzing (what parses untrusted bytes, 30 s per target; SECURITY.md has the long runs)"
./scripts/fuzz.sh 30

phase "operational checks"
./scripts/ops-checks.sh
phase "done"
