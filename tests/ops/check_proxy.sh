#!/usr/bin/env bash
# Run the committed nginx config (deploy/nginx/visionquery.conf, the `proxy` of compose's
# `postgres` profile) in a REAL nginx on loopback, in front of two stub replicas, and check how
# it behaves:
#   1. `nginx -t` accepts it;
#   2. requests are spread over both replicas, over reused (keep-alive) upstream connections,
#      with X-Forwarded-For set;
#   3. a replica's own 503 (with Retry-After) reaches the client as is, is not retried on the
#      other replica and does not take the replica out of the pool;
#   4. with one replica dropping connections mid-request, GET and POST /search still answer 200
#      (retried on the other one) while a non-idempotent POST is never replayed; with it gone
#      (connection refused) every request answers 200;
#   5. an upload declared larger than the server's limit is refused with 413 by the proxy, a
#      small one reaches a replica whole; /metrics is not served through the proxy.
#
# The config is used as committed except for what only exists inside Compose: the replica host
# names become the stubs' loopback ports, the listen port a free one, and the upstream `resolve`
# flag (nginx >= 1.27.3; the image is nginx:1.28) is dropped when the local nginx is older.
#
# nginx: `nginx` on PATH, else $VQ_NGINX, else Debian's package fetched once with
# `apt-get download nginx` and unpacked (not installed) into $VQ_OPS_CACHE. Without any of
# them the script prints SKIP and exits 0.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CONF="${1:-$ROOT/deploy/nginx/visionquery.conf}"
CACHE="${VQ_OPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/visionquery-ops}"

PASS=0; FAIL=0
ok()  { PASS=$((PASS+1)); printf 'PASS %s\n' "$*"; }
bad() { FAIL=$((FAIL+1)); printf 'FAIL %s\n' "$*"; }
log() { printf '[check_proxy] %s\n' "$*" >&2; }
summary() { printf 'check_proxy: %d passed, %d failed\n' "$PASS" "$FAIL"; }

find_nginx() {
  if command -v nginx >/dev/null; then command -v nginx; return; fi
  if [[ -n "${VQ_NGINX:-}" && -x "$VQ_NGINX" ]]; then echo "$VQ_NGINX"; return; fi
  local dir="$CACHE/nginx-deb"
  if [[ -x "$dir/usr/sbin/nginx" ]]; then echo "$dir/usr/sbin/nginx"; return; fi
  command -v apt-get >/dev/null && command -v dpkg >/dev/null || return 1
  local tmp; tmp="$(mktemp -d)"
  log "fetching Debian's nginx package (apt-get download, unpacked into $dir)"
  if (cd "$tmp" && apt-get download -q nginx >/dev/null 2>&1) && mkdir -p "$dir" \
     && dpkg -x "$tmp"/nginx_*.deb "$dir"; then
    rm -rf "$tmp"; echo "$dir/usr/sbin/nginx"; return
  fi
  rm -rf "$tmp"; return 1
}
if ! NGINX="$(find_nginx)"; then
  echo "SKIP check_proxy: no nginx (install Debian's nginx or set VQ_NGINX)"
  exit 0
fi
VERSION="$("$NGINX" -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')"
log "using $NGINX ($VERSION)"

WORK="$(mktemp -d -t vq-proxy.XXXXXX)"
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# ---- two stub replicas: answer every request with who they are; /__stats (direct only) counts
# requests and TCP connections; a file <name>.mode containing 503 makes one answer 503.
cat >"$WORK/stub.py" <<'PY'
import json, os, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

name, port, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
stats = {"connections": 0, "requests": 0, "paths": [], "xff": []}
lock = threading.Lock()

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup()
        with lock:
            stats["connections"] += 1
    def log_message(self, *a):
        pass
    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/__stats":
            out, code, extra = json.dumps(stats).encode(), 200, {}
        else:
            with lock:
                stats["requests"] += 1
                stats["paths"].append(f"{self.command} {self.path}")
                stats["xff"].append(self.headers.get("X-Forwarded-For", ""))
            try:
                mode = open(os.path.join(work, name + ".mode")).read().strip()
            except OSError:
                mode = ""
            if mode == "drop":  # a replica dying mid-request: close without an answer
                self.close_connection = True
                return
            if mode == "503":
                out, code, extra = b'{"error":"unavailable"}', 503, {"Retry-After": "7"}
            else:
                out, code, extra = json.dumps({"replica": name, "received": len(body)}).encode(), 200, {}
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST = do_DELETE = _answer

ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
declare -A STUB_PORT STUB_PID
for r in api-1 api-2; do
  STUB_PORT[$r]="$(free_port)"
  python3 "$WORK/stub.py" "$r" "${STUB_PORT[$r]}" "$WORK" &
  STUB_PID[$r]=$!; PIDS+=("$!")
done

# ---- the config, adapted to loopback
PORT="$(free_port)"
mkdir -p "$WORK"/tmp/{body,proxy,fastcgi,uwsgi,scgi}
chmod -R 777 "$WORK/tmp"
python3 - "$CONF" "$WORK/site.conf" "$PORT" "$VERSION" "${STUB_PORT[api-1]}" "${STUB_PORT[api-2]}" <<'PY'
import re, sys
src, dst, port, version, p1, p2 = sys.argv[1:]
conf = open(src).read()
conf = re.sub(r"(^\s*listen\s+)(?:[\d.]+:)?\d+", lambda m: f"{m.group(1)}127.0.0.1:{port}", conf, flags=re.M)
conf = re.sub(r"\bapi-1:8000\b", f"127.0.0.1:{p1}", conf)
conf = re.sub(r"\bapi-2:8000\b", f"127.0.0.1:{p2}", conf)
if tuple(int(x) for x in version.split(".")) < (1, 27, 3):
    conf = re.sub(r"(^\s*server\s+\S+.*?)\s+resolve\b", r"\1", conf, flags=re.M)
open(dst, "w").write(conf)
PY
cat >"$WORK/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $WORK/tmp/body;
    proxy_temp_path $WORK/tmp/proxy;
    fastcgi_temp_path $WORK/tmp/fastcgi;
    uwsgi_temp_path $WORK/tmp/uwsgi;
    scgi_temp_path $WORK/tmp/scgi;
    include $WORK/site.conf;
}
EOF

if "$NGINX" -t -p "$WORK" -e "$WORK/error.log" -c "$WORK/nginx.conf" >"$WORK/t.out" 2>&1; then
  ok "nginx -t accepts $(realpath --relative-to="$ROOT" "$CONF") (nginx $VERSION)"
else
  sed 's/^/    /' "$WORK/t.out"; bad "nginx -t rejects the config"; summary; exit 1
fi
"$NGINX" -p "$WORK" -e "$WORK/error.log" -c "$WORK/nginx.conf" >"$WORK/nginx.out" 2>&1 &
PIDS+=("$!")
URL="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "$URL/health" 2>/dev/null && break
  sleep 0.1
done

stats() { curl -fsS "http://127.0.0.1:${STUB_PORT[$1]}/__stats"; }
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
code() { curl -sS -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' "$@" 2>/dev/null || echo ERR; }

# ---- 2. both replicas, keep-alive, forwarded headers
declare -A seen=()
all200=1
for _ in $(seq 1 20); do
  c="$(code "$URL/health")"
  [[ "$c" == 200 ]] || all200=0
  r="$(field replica <"$WORK/body" 2>/dev/null || echo none)"
  seen[$r]=1
done
[[ $all200 == 1 ]] && ok "20 GET /health through the proxy answered 200" || bad "GET /health through the proxy did not always answer 200"
[[ -n "${seen[api-1]:-}" && -n "${seen[api-2]:-}" ]] && ok "requests reach both replicas (${!seen[*]})" \
  || bad "requests did not reach both replicas (${!seen[*]})"
conns=$(( $(stats api-1 | field connections) + $(stats api-2 | field connections) - 2 ))  # minus our /__stats calls
reqs=$(( $(stats api-1 | field requests) + $(stats api-2 | field requests) ))
(( conns < reqs )) && ok "upstream connections are reused ($reqs requests over $conns connections)" \
  || bad "no upstream keep-alive ($reqs requests over $conns connections)"
xff="$(stats api-1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["xff"][-1])')"
[[ "$xff" == 127.0.0.1 ]] && ok "X-Forwarded-For reaches the replica ($xff)" || bad "X-Forwarded-For missing ($xff)"

# ---- 3. a replica's own 503 is an answer, not a failure
echo 503 >"$WORK/api-2.mode"
before1="$(stats api-1 | field requests)"; before2="$(stats api-2 | field requests)"
n503=0; retry_after=""
for _ in $(seq 1 10); do
  c="$(code "$URL/ready")"
  if [[ "$c" == 503 ]]; then n503=$((n503+1)); retry_after="$(grep -i '^retry-after:' "$WORK/headers" | tr -d '\r' | awk '{print $2}')"; fi
done
after1="$(stats api-1 | field requests)"; after2="$(stats api-2 | field requests)"
(( n503 > 0 )) && [[ "$retry_after" == 7 ]] && ok "the replica's 503 reaches the client with Retry-After ($n503 of 10)" \
  || bad "503 with Retry-After did not reach the client (503s: $n503, Retry-After: '$retry_after')"
(( after1 - before1 + after2 - before2 == 10 )) && ok "a 503 is not retried on the other replica (10 requests, $((after1-before1+after2-before2)) upstream)" \
  || bad "503s were retried ($((after1-before1+after2-before2)) upstream requests for 10)"
(( after2 - before2 >= 4 )) && ok "a replica answering 503 stays in the pool ($((after2-before2)) of 10 requests)" \
  || bad "the 503 replica was taken out of the pool ($((after2-before2)) of 10 requests)"
rm -f "$WORK/api-2.mode"

# ---- 4. one replica failing: first dropping connections after reading the request (a crash
# mid-request), then gone (connection refused).
total() { echo $(( $(stats api-1 | field requests) + $(stats api-2 | field requests) )); }
echo drop >"$WORK/api-2.mode"
# A non-idempotent POST that reached a replica must not be replayed on the other one: two
# ingests (round robin sends one to each) make exactly two upstream requests.
before="$(total)"
c1="$(code -H 'content-type: application/json' -d '{"path":"x.jpg"}' "$URL/ingest/image")"
c2="$(code -H 'content-type: application/json' -d '{"path":"y.jpg"}' "$URL/ingest/image")"
after="$(total)"
(( after - before == 2 )) && ok "POST /ingest/image is never replayed on the other replica ($c1 $c2, $((after-before)) upstream requests for 2)" \
  || bad "POST /ingest/image was replayed ($c1 $c2, $((after-before)) upstream requests for 2)"
bad_search=0; bad_get=0
for _ in $(seq 1 6); do
  [[ "$(code -H 'content-type: application/json' -d '{"query":"a dog"}' "$URL/search")" == 200 ]] || bad_search=$((bad_search+1))
done
for _ in $(seq 1 6); do
  [[ "$(code "$URL/images?limit=1")" == 200 ]] || bad_get=$((bad_get+1))
done
(( bad_search == 0 )) && ok "api-2 dropping requests: POST /search answers 200 (retried, it only reads)" \
  || bad "api-2 dropping requests: $bad_search of 6 POST /search failed"
(( bad_get == 0 )) && ok "api-2 dropping requests: GET answers 200 (retried on api-1)" \
  || bad "api-2 dropping requests: $bad_get of 6 GETs failed"
rm -f "$WORK/api-2.mode"
kill "${STUB_PID[api-2]}"; wait "${STUB_PID[api-2]}" 2>/dev/null || true
bad_any=0
for _ in $(seq 1 5); do
  [[ "$(code "$URL/images?limit=1")" == 200 ]] || bad_any=$((bad_any+1))
  [[ "$(code -H 'content-type: application/json' -d '{"path":"z.jpg"}' "$URL/ingest/image")" == 200 ]] || bad_any=$((bad_any+1))
done
(( bad_any == 0 )) && ok "api-2 down (connection refused): GET and POST answer 200 from api-1" \
  || bad "api-2 down: $bad_any of 10 requests failed"

# ---- 5. body limit, upload pass-through, /metrics
limit="$(python3 - "$ROOT/src/config.rs" <<'PY'
import re, sys
m = re.search(r'env = "VQ_MAX_UPLOAD_BYTES", default_value_t = ([0-9 *]+)[,)]', open(sys.argv[1]).read())
v = 1
for p in m.group(1).split("*"):
    v *= int(p)
print(v)
PY
)"
over="$(python3 - "$PORT" "$((limit + 1))" <<'PY' || echo ERR
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
    s.sendall(f"POST /ingest/upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: {sys.argv[2]}\r\n\r\n".encode())
    print(s.recv(200).split(b"\r\n")[0].decode().split(" ")[1])
except Exception as e:  # no answer: the proxy passed the body on instead of refusing it
    print(f"no answer ({type(e).__name__})")
PY
)"
[[ "$over" == 413 ]] && ok "an upload of limit+1 bytes ($((limit + 1))) is refused by the proxy with 413" \
  || bad "an upload over the limit got '$over' (want 413)"
head -c 3000000 /dev/urandom >"$WORK/photo.bin"
c="$(code -F "files=@$WORK/photo.bin;type=image/jpeg" "$URL/ingest/upload")"
received="$(field received <"$WORK/body" 2>/dev/null || echo 0)"
[[ "$c" == 200 ]] && (( received > 3000000 )) && ok "a 3 MB upload is streamed through whole ($received bytes received)" \
  || bad "3 MB upload: $c, replica received $received bytes"
c="$(code "$URL/metrics")"
[[ "$c" == 404 ]] && ok "/metrics is not served through the proxy (Prometheus scrapes each replica)" \
  || bad "/metrics through the proxy answered $c"

if grep -Eq '\[(emerg|alert|crit)\]' "$WORK/error.log"; then
  bad "nginx logged critical errors:"; grep -E '\[(emerg|alert|crit)\]' "$WORK/error.log" | sed 's/^/    /'
fi
summary
(( FAIL == 0 ))
