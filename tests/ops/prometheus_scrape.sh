#!/usr/bin/env bash
# End-to-end scrape test: a REAL Prometheus scrapes a running VisionQuery and the HTTP metrics
# arrive in its TSDB.
#
#   VQ_URL=http://127.0.0.1:8123 tests/ops/prometheus_scrape.sh
#
# 1. `promtool check config monitoring/prometheus/prometheus.yml` (the real file must pass).
# 2. Derives a temp config from it: same `visionquery` job (metrics_path, scheme, labels), target
#    replaced by VQ_URL's host:port, 1 s scrape interval; checks it with promtool too.
# 3. Starts /usr/bin/prometheus on a free 127.0.0.1 port with a temp TSDB, waits until the target
#    is up (/api/v1/targets and `up{job="visionquery"} == 1`).
# 4. Sends GET /health, GET /ready, POST /search {"query":"a dog","top_k":3} (503 before the
#    model is ready is fine: it is still a request), then waits for vq_http_requests_total
#    (also for route="/search",method="POST") and vq_http_request_duration_seconds_bucket.
# 5. Runs every PromQL expression of the Grafana dashboard through Prometheus' query API: each
#    must be accepted (valid PromQL for a real Prometheus).
# Prometheus is killed and its temp dir removed on exit. Loopback only; every wait is bounded
# by VQ_SCRAPE_TIMEOUT seconds (default 60). Installs Debian's `prometheus` if missing (root).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VQ_URL="${VQ_URL:-http://127.0.0.1:8000}"
VQ_URL="${VQ_URL%/}"
TIMEOUT="${VQ_SCRAPE_TIMEOUT:-60}"
PROM_CONFIG="${PROM_CONFIG:-$ROOT/monitoring/prometheus/prometheus.yml}"
JOB=visionquery

PASS=0; FAIL=0
ok()  { PASS=$((PASS+1)); printf 'PASS %s\n' "$*"; }
bad() { FAIL=$((FAIL+1)); printf 'FAIL %s\n' "$*"; }
log() { printf '[prometheus_scrape] %s\n' "$*" >&2; }
summary() { printf 'prometheus_scrape: %d passed, %d failed\n' "$PASS" "$FAIL"; }
die() { bad "$*"; summary; exit 1; }

# ---- target: must be loopback
read -r TARGET SCHEME < <(python3 - "$VQ_URL" <<'PY'
import ipaddress, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
host = u.hostname or ""
try:
    loop = host == "localhost" or ipaddress.ip_address(host).is_loopback
except ValueError:
    loop = False
if not loop or u.scheme not in ("http", "https"):
    print("- -"); sys.exit(0)
port = u.port or (443 if u.scheme == "https" else 80)
print((f"[{host}]" if ":" in host else host) + f":{port}", u.scheme)
PY
)
[[ "$TARGET" != "-" ]] || die "VQ_URL=$VQ_URL is not an http(s) loopback URL (127.0.0.0/8, localhost, [::1])"

# ---- prometheus binaries
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing Debian's prometheus package"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) >&2 \
      || die "could not install prometheus"
  else
    die "prometheus/promtool not found (apt-get install prometheus)"
  fi
fi
log "$(prometheus --version 2>&1 | head -n1)"

TMP="$(mktemp -d -t vq-prom.XXXXXX)"
PROM_PID=""
cleanup() {
  if [[ -n "$PROM_PID" ]] && kill -0 "$PROM_PID" 2>/dev/null; then
    kill "$PROM_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$PROM_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$PROM_PID" 2>/dev/null || true
    wait "$PROM_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 1. the real config
if promtool check config "$PROM_CONFIG" >"$TMP/promtool.out" 2>&1; then
  ok "promtool check config $(realpath --relative-to="$ROOT" "$PROM_CONFIG")"
else
  sed 's/^/    /' "$TMP/promtool.out"
  die "promtool check config $(realpath --relative-to="$ROOT" "$PROM_CONFIG")"
fi

# ---- 2. derived config
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
PROM="http://127.0.0.1:$PORT"
if ! python3 - "$PROM_CONFIG" "$TMP/prometheus.yml" "$JOB" "$TARGET" "$SCHEME" "127.0.0.1:$PORT" <<'PY'
import sys, yaml
src, dst, job, target, scheme, self_addr = sys.argv[1:]
cfg = yaml.safe_load(open(src))
jobs = [j for j in cfg.get("scrape_configs", []) if j.get("job_name") == job]
if not jobs:
    sys.exit(f"no scrape job '{job}' in {src}")
j = jobs[0]
labels = {}
for sc in j.get("static_configs", []):
    labels.update(sc.get("labels", {}))
j.pop("file_sd_configs", None); j.pop("dns_sd_configs", None)
j["static_configs"] = [{"targets": [target], "labels": labels} if labels else {"targets": [target]}]
j["scheme"] = scheme
j["scrape_interval"] = "1s"
j["scrape_timeout"] = "1s"
out = {
    "global": {**cfg.get("global", {}), "scrape_interval": "1s", "evaluation_interval": "1s"},
    "scrape_configs": [j, {"job_name": "prometheus", "static_configs": [{"targets": [self_addr]}]}],
}
yaml.safe_dump(out, open(dst, "w"), sort_keys=False)
print(f"metrics_path={j.get('metrics_path', '/metrics')}", file=sys.stderr)
PY
then
  die "could not derive a scrape config from $PROM_CONFIG"
fi
if promtool check config "$TMP/prometheus.yml" >"$TMP/promtool2.out" 2>&1; then
  ok "derived config (job=$JOB target=$TARGET) passes promtool"
else
  sed 's/^/    /' "$TMP/promtool2.out"; die "derived config fails promtool"
fi

# ---- 3. start Prometheus
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/data" \
  --web.listen-address="127.0.0.1:$PORT" --log.level=warn >"$TMP/prometheus.log" 2>&1 &
PROM_PID=$!
log "prometheus pid $PROM_PID on $PROM (config $TMP/prometheus.yml)"

# wait_for DESCRIPTION COMMAND... : retry until COMMAND succeeds or TIMEOUT elapses.
wait_for() {
  local what="$1"; shift
  local deadline=$((SECONDS + TIMEOUT))
  while (( SECONDS < deadline )); do
    if ! kill -0 "$PROM_PID" 2>/dev/null; then
      tail -n 20 "$TMP/prometheus.log" | sed 's/^/    /'; return 1
    fi
    if "$@"; then return 0; fi
    sleep 0.5
  done
  log "timed out after ${TIMEOUT}s waiting for: $what"
  return 1
}

# query EXPR -> prints the number of series in the instant-query result; fails on API error.
query() {
  curl -fsS --max-time 5 "$PROM/api/v1/query" --data-urlencode "query=$1" 2>/dev/null |
    python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["status"]=="success"; r=d["data"]["result"]; print(len(r) if isinstance(r, list) else 1)'
}
has_series() { local n; n="$(query "$1")" && (( n > 0 )); }

target_up() {
  curl -fsS --max-time 5 "$PROM/api/v1/targets" 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
ts = [t for t in d["data"]["activeTargets"] if t["labels"].get("job") == sys.argv[1]]
sys.exit(0 if ts and all(t["health"] == "up" for t in ts) else 1)' "$JOB"
}

if wait_for "prometheus ready" curl -fs --max-time 2 -o /dev/null "$PROM/-/ready"; then
  ok "prometheus is ready on $PROM"
else
  die "prometheus did not become ready"
fi

if wait_for "target up" target_up; then
  ok "/api/v1/targets: job=$JOB target $TARGET is up"
else
  curl -fsS --max-time 5 "$PROM/api/v1/targets" 2>/dev/null | python3 -c '
import json,sys
ts = json.load(sys.stdin)["data"]["activeTargets"]
for t in ts:
    print("    ", t["labels"].get("job"), t["scrapeUrl"], t["health"], t.get("lastError",""))
if not ts:
    print("     (no active targets yet)")' || true
  die "target $SCHEME://$TARGET for job=$JOB never came up"
fi
if wait_for "up == 1" has_series "up{job=\"$JOB\"} == 1"; then
  ok "query up{job=\"$JOB\"} == 1"
else
  bad "query up{job=\"$JOB\"} == 1 returned nothing"
fi

# ---- 4. traffic, then the series must show up
codes=()
codes+=("GET /health $(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "$VQ_URL/health" || echo ERR)")
codes+=("GET /ready $(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "$VQ_URL/ready" || echo ERR)")
for _ in 1 2 3; do
  codes+=("POST /search $(curl -sS --max-time 30 -o /dev/null -w '%{http_code}' -H 'content-type: application/json' \
            -d '{"query":"a dog","top_k":3}' "$VQ_URL/search" || echo ERR)")
done
log "requests sent: $(IFS=', '; echo "${codes[*]}")"
if printf '%s\n' "${codes[@]}" | grep -q 'GET /health 200'; then ok "GET /health answered 200"; else bad "GET /health did not answer 200"; fi

for sel in 'vq_http_requests_total' \
           'vq_http_request_duration_seconds_bucket' \
           'vq_http_requests_total{route="/search",method="POST"}' \
           'vq_http_request_duration_seconds_count{route="/search",method="POST"}' \
           'vq_http_requests_total{route="/health",method="GET",status="200"}'; do
  q="${sel%\}}"
  if [[ "$q" == "$sel" ]]; then q="$sel{job=\"$JOB\"}"; else q="$q,job=\"$JOB\"}"; fi
  if wait_for "$q" has_series "$q"; then
    ok "series arrived in Prometheus: $q ($(query "$q") series)"
  else
    bad "no series in Prometheus for: $q"
  fi
done

# ---- 5. the dashboard's PromQL runs on a real Prometheus
if [[ -f "$ROOT/tests/ops/check_dashboard_metrics.py" ]]; then
  n=0; nbad=0
  while IFS= read -r line; do
    expr="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]))' "$line")"
    n=$((n+1))
    resp="$(curl -sS --max-time 10 "$PROM/api/v1/query" --data-urlencode "query=$expr" 2>&1 || true)"
    if ! python3 -c 'import json,sys; sys.exit(0 if json.loads(sys.argv[1]).get("status")=="success" else 1)' "$resp" 2>/dev/null; then
      nbad=$((nbad+1)); printf '    rejected: %s\n    -> %s\n' "$expr" "$resp"
    fi
  done < <(python3 "$ROOT/tests/ops/check_dashboard_metrics.py" --list-exprs)
  if (( n > 0 && nbad == 0 )); then ok "all $n dashboard PromQL expressions accepted by Prometheus"
  else bad "$nbad of $n dashboard PromQL expressions rejected by Prometheus"; fi
fi

summary
(( FAIL == 0 ))
