#!/usr/bin/env bash
# End-to-end tests of the web page in headless Debian Chromium (playwright-core, node --test).
#
#   bash tests/e2e/run.sh                  # starts target/debug/visionquery on a free loopback port
#   VQ_BIN=/tmp/vq-bin bash tests/e2e/run.sh
#   VQ_URL=http://127.0.0.1:8000 VQ_IMAGE_ROOT=/srv/images bash tests/e2e/run.sh   # a running server
#   bash tests/e2e/run.sh tests/e2e/a11y.test.mjs                                    # some test files only
#
# With VQ_URL, nothing is started; VQ_IMAGE_ROOT (one of that server's --image-root folders,
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
TMP=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
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
