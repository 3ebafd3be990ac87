#!/usr/bin/env bash
# End-to-end tests of the web page in headless Debian Chromium (playwright-core, node --test).
#
#   bash tests/e2e/run.sh                  # starts target/debug/visionquery on a free loopback port
#   VQ_BIN=/tmp/vq-bin bash tests/e2e/run.sh
#   VQ_URL=http://127.0.0.1:8000 VQ_IMAGE_ROOT=/srv/images bash tests/e2e/run.sh   # a running server
#   bash tests/e2e/run.sh tests/e2e/a11y.test.mjs                                    # some test files only
#
# Without VQ_URL a second server that needs an API key is started too (VQ_KEYED_URL, VQ_KEYED_KEY)
# for the key prompt test; with VQ_URL, nothing is started (set both to run that test); VQ_IMAGE_ROOT (one of that server's --image-root folders,
# writable by this user) lets the tests add their own photos, otherwise they use what is indexed.
# Writes docs/screenshot.png; failure screenshots go to tests/e2e/artifacts/.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

if [ ! -x /usr/bin/chromium ] && [ -z "${VQ_CHROMIUM:-}" ]; then
  echo "e2e: Debian's chromium is missing (apt-get install -y chromium)" >&2
  exit 1
fi
if [ ! -d "$HERE/node_modules/playwright-core" ] || [ ! -d "$HERE/node_modules/axe-core" ]; then
  echo "e2e: installing playwright-core and axe-core (npm ci)"
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
fi
rm -rf "$HERE/artifacts"

SERVER_PID=""
KEYED_PID=""
TMP=""
stop() {
  local pid="$1"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}
cleanup() {
  stop "$SERVER_PID"
  stop "$KEYED_PID"
  if [ -n "$TMP" ]; then
    if [ -f "$TMP/server.log" ] && [ -d "$HERE/artifacts" ]; then cp "$TMP/server.log" "$HERE/artifacts/server.log"; fi
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${VQ_URL:-}" ]; then
  BIN="${VQ_BIN:-target/debug/visionquery}"
  if [ ! -x "$BIN" ]; then
    echo "e2e: no server binary at $BIN (cargo build, or set VQ_BIN / VQ_URL)" >&2
    exit 1
  fi
  TMP="$(mktemp -d /tmp/vq-e2e.XXXXXX)"
  mkdir -p "$TMP/data" "$TMP/images"
  PORT="$(node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")"
  echo "e2e: starting $BIN on 127.0.0.1:$PORT (built $(date -r "$BIN" '+%F %T'))"
  "$BIN" serve --model tests/fixtures/tiny-clip --data-dir "$TMP/data" --image-root "$TMP/images" \
    --host 127.0.0.1 --port "$PORT" >"$TMP/server.log" 2>&1 &
  SERVER_PID=$!
  export VQ_URL="http://127.0.0.1:$PORT"
  export VQ_IMAGE_ROOT="$TMP/images"
  ready=""
  for _ in $(seq 1 240); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "e2e: the server exited early:" >&2; tail -n 40 "$TMP/server.log" >&2; exit 1
    fi
    if node -e 'fetch(process.argv[1], { signal: AbortSignal.timeout(2000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "$VQ_URL/ready"; then ready=1; break; fi
    sleep 0.25
  done
  if [ -z "$ready" ]; then
    echo "e2e: the server was not ready within 60 s:" >&2; tail -n 40 "$TMP/server.log" >&2; exit 1
  fi
  # A second server that needs an API key, for the key prompt test (auth.test.mjs), sharing
  # the image root.
  KEYED_PORT="$(node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")"
  export VQ_KEYED_KEY="e2e-$(node -e "console.log(require('crypto').randomBytes(16).toString('hex'))")"
  VQ_API_KEY="$VQ_KEYED_KEY" "$BIN" serve --model tests/fixtures/tiny-clip --data-dir "$TMP/keyed-data" --image-root "$TMP/images" \
    --host 127.0.0.1 --port "$KEYED_PORT" >"$TMP/keyed-server.log" 2>&1 &
  KEYED_PID=$!
  export VQ_KEYED_URL="http://127.0.0.1:$KEYED_PORT"
  for _ in $(seq 1 240); do
    if node -e 'fetch(process.argv[1], { signal: AbortSignal.timeout(2000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "$VQ_KEYED_URL/ready"; then break; fi
    sleep 0.25
  done
fi

echo "e2e: testing $VQ_URL"
status=0
if [ "$#" -eq 0 ]; then set -- "$HERE"/*.test.mjs; fi
node --test --test-concurrency=1 --test-timeout=120000 "$@" || status=$?
if [ "$status" -ne 0 ]; then
  mkdir -p "$HERE/artifacts"   # the server log is copied here on exit
  echo "e2e: FAILED; screenshots and the server log are in tests/e2e/artifacts/" >&2
fi
exit "$status"
