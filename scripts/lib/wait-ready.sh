# Sourced by scripts that start a server: waits until it answers /ready (30 s at most), and
# shows its log if it exits or never gets ready.
#   wait_ready URL PID LOG
wait_ready() {
  local url="$1" pid="$2" log="$3"
  for _ in $(seq 1 300); do
    curl -fsS "$url/ready" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "server exited" >&2; exit 1; }
    sleep 0.1
  done
  curl -fsS "$url/ready" >/dev/null || { cat "$log"; echo "server not ready" >&2; exit 1; }
}
