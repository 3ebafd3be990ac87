#!/usr/bin/env bash
# The `visionquery` scrape job of monitoring/prometheus/prometheus.yml finds the API processes of
# the compose stack through Docker's embedded DNS (dns_sd_configs). This runs a REAL Prometheus
# with that job against a stand-in for Docker's DNS, in both modes of docker-compose.yml:
#   default             only `api` resolves           -> one target, replica="api"
#   profile `postgres`  only `api-1`, `api-2` resolve -> two targets, replica="api-1"/"api-2",
#                                                        instance="api-1:8000"/"api-2:8000"
# and checks that every discovered target is up, and that the names of the other mode yield no
# target at all (no permanently-down targets).
#
#   VQ_URL=http://127.0.0.1:8123 tests/ops/prometheus_replicas.sh
#
# Every name resolves to VQ_URL's loopback host and the job's port is replaced by VQ_URL's, so
# each "replica" is the one running VisionQuery. The stand-in DNS server listens on
# 127.0.11.11:53 and Prometheus sees it through its own /etc/resolv.conf,
# bind-mounted in a private mount namespace (`unshare -m`): the machine's resolver is untouched.
# Needs root and unshare; otherwise prints SKIP and exits 0.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VQ_URL="${VQ_URL:-http://127.0.0.1:8000}"
PROM_CONFIG="${PROM_CONFIG:-$ROOT/monitoring/prometheus/prometheus.yml}"
TIMEOUT="${VQ_SCRAPE_TIMEOUT:-60}"
JOB=visionquery

PASS=0; FAIL=0
ok()  { PASS=$((PASS+1)); printf 'PASS %s\n' "$*"; }
bad() { FAIL=$((FAIL+1)); printf 'FAIL %s\n' "$*"; }
log() { printf '[prometheus_replicas] %s\n' "$*" >&2; }

if [[ $(id -u) -ne 0 ]] || ! command -v unshare >/dev/null || ! unshare -m true 2>/dev/null; then
  echo "SKIP prometheus_replicas: needs root and unshare (a private /etc/resolv.conf for Prometheus)"
  exit 0
fi
command -v prometheus >/dev/null || { bad "prometheus not found (scripts/install-test-deps.sh)"; exit 1; }

read -r HOST PORT < <(python3 -c '
import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1]); print(u.hostname, u.port or 80)' "$VQ_URL")
[[ "$HOST" == 127.* ]] || { bad "VQ_URL=$VQ_URL must be an IPv4 loopback URL"; exit 1; }

WORK="$(mktemp -d -t vq-promsd.XXXXXX)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# The job as committed, but with VQ_URL's port, fast refreshes and the DNS names unchanged.
python3 - "$PROM_CONFIG" "$WORK/prometheus.yml" "$JOB" "$PORT" <<'PY' || { bad "could not derive a config"; exit 1; }
import sys, yaml
src, dst, job, port = sys.argv[1:]
cfg = yaml.safe_load(open(src))
j = next(j for j in cfg["scrape_configs"] if j.get("job_name") == job)
assert j.get("dns_sd_configs"), f"job {job} has no dns_sd_configs"
for sd in j["dns_sd_configs"]:
    sd["port"] = int(port)
    sd["refresh_interval"] = "1s"
j["scrape_interval"] = "1s"
j["scrape_timeout"] = "1s"
cfg["scrape_configs"] = [j]
cfg["global"] = {**cfg.get("global", {}), "scrape_interval": "1s"}
yaml.safe_dump(cfg, open(dst, "w"), sort_keys=False)
PY
NAMES="$(python3 -c '
import sys, yaml
j = next(j for j in yaml.safe_load(open(sys.argv[1]))["scrape_configs"] if j.get("job_name") == sys.argv[2])
print(" ".join(n for sd in j["dns_sd_configs"] for n in sd["names"]))' "$PROM_CONFIG" "$JOB")"
log "DNS names of job $JOB: $NAMES"

# Docker's embedded DNS, reduced: A records for the given names, NXDOMAIN for everything else.
cat >"$WORK/dns.py" <<'PY'
import socket, struct, sys
names = dict(a.split("=") for a in sys.argv[2:])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
while True:
    data, addr = s.recvfrom(512)
    tid = struct.unpack(">H", data[:2])[0]
    i, labels = 12, []
    while data[i]:
        labels.append(data[i + 1:i + 1 + data[i]].decode()); i += 1 + data[i]
    qtype = struct.unpack(">H", data[i + 1:i + 3])[0]
    question = data[12:i + 5]
    ip = names.get(".".join(labels).lower())
    if ip and qtype == 1:
        answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 5, 4) + socket.inet_aton(ip)
        s.sendto(struct.pack(">HHHHHH", tid, 0x8180, 1, 1, 0, 0) + question + answer, addr)
    else:  # NXDOMAIN (or an empty answer for other types of a known name)
        s.sendto(struct.pack(">HHHHHH", tid, 0x8180 if ip else 0x8183, 1, 0, 0, 0) + question, addr)
PY
# Not Docker's own 127.0.0.11: inside a container that address is NATed to Docker's resolver.
DNS_ADDR=127.0.11.11
printf 'nameserver %s\noptions ndots:0\n' "$DNS_ADDR" >"$WORK/resolv.conf"   # as Docker writes it

# run_mode LABEL NAME... : Prometheus sees only NAMEs in DNS; prints the job's active targets
# as JSON lines once they are all up (or at the timeout).
run_mode() {
  local label="$1"; shift
  local maps=() n
  for n in "$@"; do maps+=("$n=$HOST"); done
  local prom_port
  prom_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  rm -rf "$WORK/data"
  python3 "$WORK/dns.py" "$DNS_ADDR" "${maps[@]}" 2>"$WORK/dns.err" &
  local dns=$!
  PIDS+=("$dns")
  sleep 0.3
  if ! kill -0 "$dns" 2>/dev/null; then
    echo "FAIL $label: the stand-in DNS server could not start: $(tail -n1 "$WORK/dns.err")"; return 1
  fi
  unshare -m env WORK="$WORK" PROM_PORT="$prom_port" sh -c '
    mount --bind "$WORK/resolv.conf" /etc/resolv.conf || exit 1
    exec prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/data" \
      --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn' >"$WORK/prometheus-$label.log" 2>&1 &
  local prom=$!
  PIDS+=("$prom")
  local deadline=$((SECONDS + TIMEOUT)) want=$#
  while (( SECONDS < deadline )); do
    if curl -fsS --max-time 2 "http://127.0.0.1:$prom_port/api/v1/targets" >"$WORK/targets.json" 2>/dev/null \
       && python3 - "$WORK/targets.json" "$want" <<'PY'
import json, sys
ts = json.load(open(sys.argv[1]))["data"]["activeTargets"]
sys.exit(0 if len(ts) == int(sys.argv[2]) and all(t["health"] == "up" for t in ts) else 1)
PY
    then break; fi
    sleep 0.5
  done
  sleep 2   # two more refreshes: names of the other mode must still yield nothing
  curl -fsS --max-time 2 "http://127.0.0.1:$prom_port/api/v1/targets" >"$WORK/targets.json" 2>/dev/null || echo '{"data":{"activeTargets":[]}}' >"$WORK/targets.json"
  kill "$prom" "$dns" 2>/dev/null || true
  wait "$prom" "$dns" 2>/dev/null || true
}

check_mode() {  # LABEL NAME... : the targets are exactly NAMEs, labelled, up
  local label="$1"; shift
  run_mode "$label" "$@" || return 0
  python3 - "$WORK/targets.json" "$label" "$PORT" "$@" <<'PY' | while IFS= read -r line; do
import json, sys
path, label, port, *names = sys.argv[1:]
ts = json.load(open(path))["data"]["activeTargets"]
got = sorted(t["labels"].get("replica", "") for t in ts)
print(("PASS" if got == sorted(names) else "FAIL") + f" {label}: targets are exactly {sorted(names)} (got {got})")
for t in ts:
    r = t["labels"].get("replica", "")
    okay = t["health"] == "up" and t["labels"].get("instance") == f"{r}:8000" and t["labels"].get("job") == "visionquery"
    print(("PASS" if okay else "FAIL") + f" {label}: replica={r} instance={t['labels'].get('instance')} is {t['health']} ({t['scrapeUrl']}) {t.get('lastError', '')}")
PY
    case "$line" in PASS*) ok "${line#PASS }";; *) bad "${line#FAIL }";; esac
  done
}

# `while read` in a pipeline runs in a subshell: count from its output instead.
{
  check_mode default api
  check_mode postgres api-1 api-2
} | tee "$WORK/out.txt"
PASS=$(grep -c '^PASS' "$WORK/out.txt" || true)
FAIL=$(grep -c '^FAIL' "$WORK/out.txt" || true)
for n in api api-1 api-2; do
  grep -q " $n" <<<" $NAMES" || { echo "FAIL job $JOB does not look up $n"; FAIL=$((FAIL+1)); }
done
printf 'prometheus_replicas: %d passed, %d failed\n' "$PASS" "$FAIL"
(( FAIL == 0 ))
