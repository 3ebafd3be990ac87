#!/usr/bin/env bash
# The API contract: Schemathesis runs every check (`--checks all`) in every phase, the stateful
# one included, against a real server started with an admin key, so every protected route is
# exercised and its `/openapi.json` describes keyed access. Bounded (examples per operation and a
# time budget) with a fixed seed; any failure fails the test command.
#
#   VQ_BIN                    the server binary (default target/debug/visionquery)
#   VQ_CONTRACT_MAX_EXAMPLES  examples per operation and phase (default 20)
#   VQ_CONTRACT_MAX_TIME      seconds for the whole run (default 150)
#   VQ_CONTRACT_SEED          generation seed (default 12)
#   VQ_CONTRACT_REPORT        directory for a JUnit report (optional)
set -euo pipefail
cd "$(dirname "$0")/../.."

SCHEMATHESIS_VERSION=4.32.5
if ! schemathesis --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
  echo "installing schemathesis==$SCHEMATHESIS_VERSION with pip" >&2
  python3 -m pip install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi

bin="${VQ_BIN:-target/debug/visionquery}"
if [ ! -x "$bin" ]; then
  source scripts/build-env.sh
  cargo build --locked "${CARGO_FEATURE_FLAGS[@]}"
fi
max_examples="${VQ_CONTRACT_MAX_EXAMPLES:-20}"
max_time="${VQ_CONTRACT_MAX_TIME:-150}"
seed="${VQ_CONTRACT_SEED:-12}"

work="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
key="vq-contract-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
# Real images under the root, so ingest, thumbnails and files have something to work on.
mkdir -p "$work/images/album"
cp tests/fixtures/images/baseline.jpg "$work/images/album/"
cp tests/fixtures/images/baseline.jpg "$work/images/photo.jpg"
VQ_API_KEY="$key" "$bin" serve --model tests/fixtures/tiny-clip --data-dir "$work/data" --image-root "$work/images" \
  --host 127.0.0.1 --port "$port" >"$work/server.log" 2>&1 &
server=$!
url="http://127.0.0.1:$port"
source scripts/lib/wait-ready.sh
wait_ready "$url" "$server" "$work/server.log"
# One indexed image, so the stateful phase has ids to follow.
curl -fsS "$url/ingest/image" -H "Authorization: Bearer $key" -H 'content-type: application/json' \
  -d '{"path": "photo.jpg"}' >/dev/null

report=()
if [ -n "${VQ_CONTRACT_REPORT:-}" ]; then
  report=(--report junit --report-dir "$(realpath -m "$VQ_CONTRACT_REPORT")")
fi
echo "schemathesis $SCHEMATHESIS_VERSION: --max-examples $max_examples --max-time $max_time --seed $seed"
status=0
# From the scratch directory: Schemathesis keeps a `.schemathesis/` folder in the working one.
repo="$(pwd)"
(cd "$work" && schemathesis --config-file "$repo/tests/ops/schemathesis.toml" --no-color run "$url/openapi.json" \
  --checks all \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "$max_examples" --max-time "$max_time" --seed "$seed" \
  --generation-database none \
  --workers 1 \
  -H "Authorization: Bearer $key" \
  "${report[@]}") || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- server log (last 50 lines)" >&2
  tail -n 50 "$work/server.log" >&2
  echo "FAIL check_contract: schemathesis found failures (exit $status)" >&2
  exit 1
fi
echo "PASS check_contract"
