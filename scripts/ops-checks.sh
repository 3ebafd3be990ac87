#!/usr/bin/env bash
# Deployment and observability checks against the real thing: compose/Dockerfile validation,
# a running VisionQuery scraped by a real Prometheus, the Grafana dashboard's metrics, the API
# contract (Schemathesis), and the web page in headless Chromium. Called by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-test-deps.sh
took() { echo "[ops-checks] $1 done at ${SECONDS} s"; }

bash tests/ops/check_compose.sh
took check_compose
bash tests/ops/check_proxy.sh
took check_proxy
python3 tests/ops/check_dockerfile.py
python3 tests/ops/check_dashboard_metrics.py --self-test

bin="${VQ_BIN:-target/debug/visionquery}"
if [ ! -x "$bin" ]; then
  source scripts/build-env.sh
  cargo build --locked "${CARGO_FEATURE_FLAGS[@]}"
fi
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
mkdir -p "$work/images"
"$bin" serve --model tests/fixtures/tiny-clip --data-dir "$work/index" --image-root "$work/images" \
  --host 127.0.0.1 --port "$port" >"$work/server.log" 2>&1 &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
url="http://127.0.0.1:$port"
source scripts/lib/wait-ready.sh
wait_ready "$url" "$server" "$work/server.log"

VQ_URL="$url" bash tests/ops/prometheus_scrape.sh
took prometheus_scrape
VQ_URL="$url" bash tests/ops/prometheus_replicas.sh
took prometheus_replicas
python3 tests/ops/check_dashboard_metrics.py --metrics-url "$url/metrics"
# The API contract (Schemathesis) against its own server, started with an API key.
VQ_BIN="$bin" bash tests/ops/check_contract.sh
took check_contract

if [ -x tests/e2e/run.sh ]; then
  VQ_BIN="$bin" bash tests/e2e/run.sh
  took run
fi
