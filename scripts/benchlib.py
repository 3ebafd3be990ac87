"""Shared parts of the bench_*.py scripts (standard library only at import time).

- paths and defaults (repository, cache, shared model config and photos);
- the reference Python (`/root/vqref`, `.cache/bench/venv`, or a new venv made from
  scripts/requirements-reference.txt) and re-running a script under it;
- machine facts, including the SIMD instruction sets that decide int8 speed;
- the noise check: other processes' share of the CPUs (from /proc/stat), waiting for a quiet
  machine, and the repeat-while-disturbed measuring rule;
- rewriting one `<!-- bench:NAME:start/end -->` section of BENCHMARKS.md;
- building the release binary (or an example) and the random-weight ViT-B/32 checkpoint, the
  COCO captions used as queries, the git state of a measurement;
- photos made distinct (a JPEG comment: new bytes, same pixels);
- a `visionquery serve` process, directory jobs on it, and its resident memory, open files and
  threads (/proc).

What each benchmark measures stays in its own script.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import json
import math
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
DEFAULT_CACHE = REPO / ".cache" / "bench"
DEFAULT_CONFIG = Path("/work/shared/models/clip-tokenizer/config.json")
DEFAULT_IMAGES = Path("/work/shared/data/photos/images")
DEFAULT_CAPTIONS = Path("/work/shared/data/photos/captions.json")
BENCHMARKS_MD = REPO / "BENCHMARKS.md"

# Instruction sets that decide which int8/fp32 GEMM kernels ONNX Runtime (MLAS), PyTorch
# (fbgemm/oneDNN) pick at run time, in /proc/cpuinfo spelling.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni",
             "amx_tile", "amx_int8")
# The ones the int8 figures depend on; named (present or absent) in every machine line.
INT8_ISA = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Reference Python
# ---------------------------------------------------------------------------------------------


def reference_python() -> Path:
    """A Python with the reference stack: /root/vqref, .cache/bench/venv, or a new venv."""
    for c in (Path("/root/vqref/bin/python"), DEFAULT_CACHE / "venv" / "bin" / "python"):
        if c.is_file():
            return c
    venv = DEFAULT_CACHE / "venv"
    log(f"creating {venv} from scripts/requirements-reference.txt")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(SCRIPTS / "requirements-reference.txt")],
                   check=True)
    return python


def ensure_reference_python(modules=("onnxruntime", "PIL", "torch", "transformers")) -> None:
    """Re-exec the running script under the reference Python unless `modules` import here."""
    # numpy's OpenBLAS reads its thread count at import: make it match --threads.
    if "--threads" in sys.argv[:-1]:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", sys.argv[sys.argv.index("--threads") + 1])
    try:
        for m in modules:
            __import__(m)
        return
    except ImportError:
        pass
    if os.environ.get("VQ_BENCH_REEXEC"):
        sys.exit(f"the reference Python stack ({', '.join(modules)}) is not importable")
    python = reference_python()
    env = dict(os.environ, VQ_BENCH_REEXEC="1")
    os.execve(str(python), [str(python), *sys.argv], env)


# ---------------------------------------------------------------------------------------------
# Machine facts
# ---------------------------------------------------------------------------------------------


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine_info(threads: int | None = None) -> dict:
    """CPU model, logical CPUs / cores, memory, kernel, Python and the SIMD sets present."""
    info = {"cpu": platform.processor() or "?", "logical_cpus": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], stdout=subprocess.PIPE, text=True, check=True).stdout
        f = {k.strip(): v.strip() for k, v in (l.split(":", 1) for l in out.splitlines() if ":" in l)}
        info["cpu"] = f.get("Model name", info["cpu"])
        info["logical_cpus"] = int(f.get("CPU(s)", os.cpu_count()))
        info["threads_per_core"] = int(f.get("Thread(s) per core", 1))
        info["cores_per_socket"] = int(f.get("Core(s) per socket", 0)) or None
        info["sockets"] = int(f.get("Socket(s)", 1))
    except Exception:  # noqa: BLE001 - lscpu missing: keep what platform/os know
        pass
    try:
        with open("/proc/meminfo") as fh:
            info["mem_gib"] = round(int(fh.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    flags = cpu_flags()
    info["isa"] = [f for f in ISA_FLAGS if f in flags]
    info["kernel"] = platform.release()
    info["python"] = platform.python_version()
    if threads is not None:
        info["threads_used"] = threads
    return info


def isa_text(m: dict) -> str:
    """'avx2, avx512f, avx512_vnni; no avx_vnni, amx_int8' (int8-relevant sets only)."""
    if "isa" not in m:  # results saved before the sets were recorded
        return "not recorded"
    have = [f for f in INT8_ISA if f in m.get("isa", [])]
    missing = [f for f in INT8_ISA if f not in m.get("isa", [])]
    text = ", ".join(have) if have else "none of " + ", ".join(INT8_ISA)
    return text + (f"; no {', '.join(missing)}" if have and missing else "")


def machine_line(m: dict) -> str:
    """One markdown line fragment naming the machine, e.g. for 'Measured <time> on ...'."""
    cores = f"{m.get('logical_cpus')} logical CPUs"
    if m.get("cores_per_socket") and m.get("threads_per_core"):
        cores += f" ({m['cores_per_socket'] * m.get('sockets', 1)} cores, {m['threads_per_core']} thread(s) per core)"
    return (f"**{m['cpu']}**, {cores}, {m.get('mem_gib', '?')} GiB, Linux {m.get('kernel', '?')}; "
            f"instruction sets: **{isa_text(m)}**")


# ---------------------------------------------------------------------------------------------
# Noise check
# ---------------------------------------------------------------------------------------------

# Processes that mean "someone else is measuring or compiling": argv[0] basenames, and script
# names anywhere in the command line.
COMPETING_EXES = {"cargo", "rustc"}
COMPETING_SCRIPTS = re.compile(r"(^|/)bench_(embed|ingest|search|ort_variants)(\.py)?$|(^|/)bench_embed$")


def cpu_seconds_of(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class CpuMonitor:
    """Machine CPU time while a block runs, split into: the watched pids (e.g. a server), this
    process and its waited-for children, and everything else ("foreign", from /proc/stat)."""

    def __init__(self, pids=()):
        self.pids = list(pids)

    def _snap(self):
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:9]]
        tick = os.sysconf("SC_CLK_TCK")
        t = os.times()
        return {
            "total": sum(vals) / tick,
            "idle": (vals[3] + vals[4]) / tick,
            "self": t.user + t.system,
            "children": t.children_user + t.children_system,
            "pids": sum(cpu_seconds_of(p) for p in self.pids),
            "wall": time.monotonic(),
        }

    def __enter__(self):
        self.start = self._snap()
        return self

    def __exit__(self, *exc):
        a, b = self.start, self._snap()
        wall = b["wall"] - a["wall"]
        total = b["total"] - a["total"]
        busy = total - (b["idle"] - a["idle"])
        pids = b["pids"] - a["pids"]
        children = b["children"] - a["children"]
        own = pids + children + (b["self"] - a["self"])
        self.wall = wall
        self.cpus = total / wall if wall > 0 else 0.0  # logical CPUs the kernel accounted
        self.pids_cores = pids / wall if wall > 0 else 0.0
        self.children_cores = children / wall if wall > 0 else 0.0
        self.own_cpus = own / wall if wall > 0 else 0.0
        self.foreign_share = max(0.0, busy - own) / total if total > 0 else 0.0
        return False


def competing_processes() -> list[str]:
    """Other benchmarks or cargo/rustc processes (not this script)."""
    mine = {os.getpid()}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in mine:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if not argv:
            continue
        exe = os.path.basename(argv[0])
        if exe in COMPETING_EXES or any(COMPETING_SCRIPTS.search(a) for a in argv[:3]):
            found.append(f"{entry} {' '.join(argv)[:120]}")
    return found


def wait_quiet(max_wait: float, threshold: float = 0.10, quiet_seconds: int = 3, exclude_pids=(),
               check_competing: bool = False) -> dict:
    """Waits (up to max_wait s) until other processes use less than `threshold` of the CPUs
    for `quiet_seconds` consecutive seconds (and, with check_competing, no other benchmark or
    cargo build runs). Returns {"waited_s", "quiet", ...}."""
    start = time.monotonic()
    quiet = 0
    last_note = -1e9
    while True:
        others = competing_processes() if check_competing else []
        with CpuMonitor(exclude_pids) as mon:
            time.sleep(1.0)
        quiet = quiet + 1 if (not others and mon.foreign_share < threshold) else 0
        waited = time.monotonic() - start
        if quiet >= quiet_seconds:
            return {"waited_s": round(waited, 1), "quiet": True}
        if waited >= max_wait:
            if max_wait > 0:
                log(f"  machine still busy after {max_wait:.0f} s; measuring anyway (see the contention figures)")
            return {"waited_s": round(waited, 1), "quiet": False, "competing": others,
                    "foreign_share": mon.foreign_share}
        if waited > 5 and time.monotonic() - last_note > 60:
            what = "; ".join(others[:3]) if others else f"other processes use {100 * mon.foreign_share:.0f}% of the CPUs"
            log(f"  waiting for a quiet machine ({waited:.0f}/{max_wait:.0f} s): {what}")
            last_note = time.monotonic()


# The in-process measuring rule's noise check (same as examples/bench_embed.rs).
CLEAN = {"max_foreign_share": 0.10, "retries": 3, "wait": 120}


def measure(seconds: float, call) -> tuple[list[float], dict]:
    """Two warm-up calls, then calls until `seconds` have passed (at least 3): per-call times.

    Repeated (after waiting for a quiet machine) while other processes used more than
    CLEAN["max_foreign_share"] of the CPUs, up to CLEAN["retries"] times; the least
    disturbed attempt is kept. Same rule as examples/bench_embed.rs."""
    best = None
    attempts = 0
    while True:
        attempts += 1
        call(0)
        call(1)
        times = []
        with CpuMonitor() as mon:
            start = time.perf_counter()
            i = 0
            while len(times) < 3 or time.perf_counter() - start < seconds:
                t = time.perf_counter()
                call(i)
                times.append(time.perf_counter() - t)
                i += 1
        if best is None or mon.foreign_share < best[1]:
            best = (times, mon.foreign_share)
        if mon.foreign_share <= CLEAN["max_foreign_share"] or attempts > CLEAN["retries"]:
            return best[0], {"foreign_cpu_share": best[1], "attempts": attempts}
        log(f"  measurement disturbed (other processes used {100 * mon.foreign_share:.0f}% of the CPUs); repeating it")
        wait_quiet(CLEAN["wait"], CLEAN["max_foreign_share"])


def pct(times: list[float], p: float) -> float:
    """Nearest-rank percentile (same as the Rust example)."""
    s = sorted(times)
    k = min(max(math.ceil(p / 100 * len(s)), 1), len(s))
    return s[k - 1]


# ---------------------------------------------------------------------------------------------
# BENCHMARKS.md
# ---------------------------------------------------------------------------------------------


def update_markdown(name: str, section: str, heading: str, md: Path = BENCHMARKS_MD) -> None:
    """Replace the text between `<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->`;
    without the markers, append `heading` and a new marked section."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    text = md.read_text() if md.is_file() else "# Benchmarks\n"
    block = f"{start}\n{section}\n{end}"
    if start in text and end in text:
        pre, rest = text.split(start, 1)
        text = pre + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + f"\n\n{heading}\n\n" + block + "\n"
    md.write_text(text)


def publish(results: dict, json_name: str, section: str, name: str, heading: str, markdown: bool = True) -> None:
    """Writes the raw results to bench-results/JSON_NAME, prints the rendered section and (unless
    told not to) puts it in BENCHMARKS.md."""
    out_dir = REPO / "bench-results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / json_name).write_text(json.dumps(results, indent=1, default=str))
    print(section)
    if markdown:
        update_markdown(name, section, heading)
        log(f"updated BENCHMARKS.md; raw results in bench-results/{json_name}")


def rerender_saved(saved: Path, render, name: str, heading: str, write: bool = True) -> int:
    """`--from-json`: renders a saved results file again (no measuring) and, unless told not to,
    puts the section in BENCHMARKS.md."""
    section = render(json.loads(saved.read_text()))
    print(section)
    if write:
        update_markdown(name, section, heading)
    return 0


def stamp_results(results: dict, prefix: str, command: str, args, binary: Path, checkpoint: str) -> str:
    """Adds what every server benchmark's results carry (when, the command, the commit, the
    machine, the binary and the parameters) and returns the results file name PREFIX-<UTC>.json."""
    stamp = dt.datetime.now(dt.timezone.utc)
    json_name = f"{prefix}-{stamp.strftime('%Y%m%dT%H%M%SZ')}.json"
    results.update({
        "timestamp": stamp.strftime("%Y-%m-%d %H:%M UTC"), "json_name": json_name, "command": command,
        "git": git_state(), "machine": machine_info(), "binary": str(binary),
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()} | {"checkpoint": checkpoint},
    })
    return json_name


def fmt(x, digits=1):
    if x is None:
        return "—"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def reproduce_footer(command: str, json_name: str) -> list[str]:
    """The closing lines every bench section ends with: the command and where the raw numbers are."""
    return ["Command:", "", "```sh", command, "```", "", f"Raw numbers: `bench-results/{json_name}` (not committed)."]


# ---------------------------------------------------------------------------------------------
# What the server benchmarks run: binary, checkpoint, queries
# ---------------------------------------------------------------------------------------------

CHECKPOINT_SEED = 0
CHECKPOINT_FILES = ["config.json", "tokenizer.json", "preprocessor_config.json",
                    "onnx/vision_model.onnx", "onnx/text_model.onnx",
                    "onnx/vision_model_quantized.onnx", "onnx/text_model_quantized.onnx"]


def add_output_arguments(ap) -> None:
    """--no-write and --from-json, as every benchmark with a BENCHMARKS.md section takes them."""
    ap.add_argument("--no-write", "--no-markdown", dest="no_write", action="store_true", help="do not rewrite BENCHMARKS.md")
    ap.add_argument("--from-json", type=Path, help="measure nothing: re-render BENCHMARKS.md from a saved results file")


def command_line(script: str, argv) -> str:
    """How the running benchmark was invoked, for its reproduce footer."""
    return f"python3 scripts/{script}" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))


def add_server_arguments(ap, images_help: str) -> None:
    """The options of the benchmarks that run a visionquery server on the random ViT-B/32."""
    ap.add_argument("--binary", type=Path, help="visionquery binary to run (default: cargo build --release)")
    ap.add_argument("--ort-library", type=Path, help="serve --ort-library (default: the server's own lookup)")
    ap.add_argument("--precision", choices=("fp32", "quantized"), default="fp32")
    ap.add_argument("--server-threads", type=int, default=0, help="serve --threads (default 0 = all cores)")
    ap.add_argument("--model", type=Path, default=DEFAULT_CACHE / "vit-b32")
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="CLIP config.json for a missing checkpoint")
    ap.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help=images_help)


def ensure_checkpoint(ckpt: Path, config: Path) -> str:
    """The random-weight ViT-B/32 CLIP (fp32 and int8) in `ckpt`, built from `config` by
    scripts/export_clip_onnx.py under the reference Python when missing: "reused" or "built"."""
    if all((ckpt / f).is_file() for f in CHECKPOINT_FILES):
        log(f"checkpoint: reusing {ckpt}")
        return "reused"
    python = reference_python()
    log(f"checkpoint: building a random-weight ViT-B/32 CLIP (seed {CHECKPOINT_SEED}) into {ckpt} with {python}")
    cmd = [str(python), str(SCRIPTS / "export_clip_onnx.py"), "--random-config", str(config),
           "--seed", str(CHECKPOINT_SEED), "--tokenizer-dir", str(config.parent), "--out", str(ckpt), "--quantize"]
    subprocess.run(cmd, cwd=REPO, check=True, stdout=sys.stderr)
    missing = [f for f in CHECKPOINT_FILES if not (ckpt / f).is_file()]
    if missing:
        sys.exit(f"export_clip_onnx.py did not write {missing} into {ckpt}")
    return "built"


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))


def build_binary(no_build: bool, example: str | None = None) -> Path:
    """target/release/visionquery, or target/release/examples/EXAMPLE, built first (`cargo build
    --release --locked` with the feature flags scripts/build-env.sh picks) unless `no_build`."""
    binary = target_dir() / "release" / (f"examples/{example}" if example else "visionquery")
    cargo = "cargo build --release --locked" + (f" --example {example}" if example else "")
    if not no_build:
        log(f"building: {cargo}")
        subprocess.run(["bash", "-c", f'source scripts/build-env.sh && {cargo} "${{CARGO_FEATURE_FLAGS[@]}}"'],
                       cwd=REPO, check=True, stdout=sys.stderr)
    if not binary.is_file():
        sys.exit(f"{binary} is missing (build with: {cargo})")
    return binary


def git_state() -> str:
    """Short HEAD, and whether src/ or the Cargo files have uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip()
        return head + (" + uncommitted src changes" if dirty else "")
    except Exception:  # noqa: BLE001
        return "?"


def load_queries(captions: Path = DEFAULT_CAPTIONS, seed: int = 0) -> list[str]:
    """Every COCO caption (photo -> [captions] JSON), shuffled so that neighbours in a rotation
    come from different photos."""
    doc = json.loads(captions.read_text())
    queries = [c.strip() for k in sorted(doc) for c in doc[k] if c.strip()]
    random.Random(seed).shuffle(queries)
    return queries


# ---------------------------------------------------------------------------------------------
# Photos
# ---------------------------------------------------------------------------------------------


def tagged_jpeg(data: bytes, tag: str) -> bytes:
    """`data` with a JPEG comment (COM segment) holding `tag` after its APPn segments (JFIF and
    EXIF stay first): other bytes, hence another content hash, the same pixels."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    pos = 2
    while data[pos] == 0xFF and 0xE0 <= data[pos + 1] <= 0xEF:
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    payload = tag.encode()
    return data[:pos] + b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload + data[pos:]


def jpegs(folder: Path) -> list[Path]:
    """The JPEG files of a folder, sorted."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg") and p.is_file())


# ---------------------------------------------------------------------------------------------
# A `visionquery serve` process for the benchmarks
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    """Child side of Popen: get SIGKILL if this script dies without cleaning up."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def http(method: str, url: str, body=None, timeout: float = 30.0):
    """(status, JSON body or text) of one request."""
    data = None if body is None else json.dumps(body).encode()
    # X-Requested-With: state changes without an API key need it (README, Access control).
    headers = {"X-Requested-With": "visionquery"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw = e.read()
        status = e.code
    text = raw.decode(errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


class ServerProcess:
    """A server started with `cmd` on `port`, logging to `log_path`; subclasses build `cmd`."""

    def __init__(self, cmd: list[str], port: int, log_path: Path):
        self.cmd = cmd
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.proc = None

    def start(self, timeout: float = 300.0) -> float:
        """Seconds until /ready answered 200; raises with the log's tail if it never does."""
        log("starting:", " ".join(self.cmd))
        self._log = open(self.log_path, "w")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with code {self.proc.returncode}; log:\n{self.log_tail()}")
            try:
                status, body = http("GET", self.base + "/ready", timeout=2)
                if status == 200:
                    return time.monotonic() - t0
                if isinstance(body, dict) and isinstance(body.get("model"), dict) and body["model"].get("state") == "failed":
                    raise RuntimeError(f"the server's model failed to load; log:\n{self.log_tail()}")
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout:.0f} s; log:\n{self.log_tail()}")

    def log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_lines()[-n:])

    def stop(self, grace: float = 30.0) -> int | None:
        """SIGTERM (the server saves its caches), SIGKILL after `grace` seconds."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log("server did not stop after SIGTERM; killing it")
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        code = self.proc.returncode
        self.proc = None
        return code


def run_directory_job(base: str, folder: Path, timeout: float = 1800.0, poll: float = 0.5) -> dict:
    """`POST /ingest/directory` of `folder` (not recursive) and `GET /jobs/{id}` until it ends;
    the finished job with its wall time ("wall_s"). Raises unless it completed."""
    status, job = http("POST", base + "/ingest/directory", {"path": str(folder), "recursive": False})
    if status != 202:
        raise RuntimeError(f"POST /ingest/directory answered {status}: {job}")
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        time.sleep(poll)
        status, job = http("GET", f"{base}/jobs/{job['id']}")
        if status != 200:
            raise RuntimeError(f"GET /jobs answered {status}: {job}")
        if job["state"] in ("completed", "failed", "cancelled"):
            break
    else:
        raise RuntimeError("indexing job did not finish")
    if job["state"] != "completed":
        raise RuntimeError(f"indexing job ended {job['state']}: {job.get('error')}")
    job["wall_s"] = time.monotonic() - t0
    return job


# ---------------------------------------------------------------------------------------------
# A process's memory, files and threads (/proc)
# ---------------------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """Resident memory (VmRSS) of a process, in bytes."""
    return process_stats(pid)["rss_bytes"]


def process_stats(pid: int) -> dict:
    """Resident memory now and at its peak (VmRSS, VmHWM, bytes), open file descriptors and
    threads of a running process, from /proc."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()

    def number(key: str) -> int:
        return int(fields[key][0]) if fields.get(key) else 0

    return {"rss_bytes": number("VmRSS") * 1024, "hwm_bytes": number("VmHWM") * 1024,
            "fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": number("Threads")}


def thread_names(pid: int) -> dict[str, int]:
    """How many threads of a process carry each name (/proc/PID/task/*/comm), most first."""
    names = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue  # the thread ended meanwhile
        names[name] = names.get(name, 0) + 1
    return dict(sorted(names.items(), key=lambda kv: (-kv[1], kv[0])))


# ---------------------------------------------------------------------------------------------
# wrk: the HTTP load of the serving and store benchmarks
# ---------------------------------------------------------------------------------------------


def lua_string(s: str) -> str:
    level = 0
    while f"]{'=' * level}]" in s:
        level += 1
    return f"[{'=' * level}[{s}]{'=' * level}]"


def write_wrk_search_lua(path: Path, bodies: list[dict], origin: str) -> None:
    """A wrk script that POSTs `bodies` to /search in rotation (each thread starting elsewhere in
    it), counts the answers by status and prints one `WRKJSON {...}` line that `run_wrk` reads.
    `origin` says in the script's first line what generated it."""
    lua_bodies = ",\n".join("  " + lua_string(json.dumps(b)) for b in bodies)
    path.write_text(f"""-- generated by {origin}
local bodies = {{
{lua_bodies}
}}
local headers = {{ ["Content-Type"] = "application/json" }}
local threads = {{}}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  -- each thread starts at a different place in the rotation
  counter = math.floor((id or 0) * #bodies / 7)
  ok = 0; s503 = 0; s4xx = 0; s5xx = 0; other = 0
end

function request()
  counter = counter + 1
  return wrk.format("POST", "/search", headers, bodies[(counter % #bodies) + 1])
end

function response(status, hdrs, body)
  if status == 200 then ok = ok + 1
  elseif status == 503 then s503 = s503 + 1
  elseif status >= 500 then s5xx = s5xx + 1
  elseif status >= 400 then s4xx = s4xx + 1
  else other = other + 1 end
end

function done(summary, latency, requests)
  local c = {{ ok = 0, s503 = 0, s4xx = 0, s5xx = 0, other = 0 }}
  for _, t in ipairs(threads) do
    for k, _ in pairs(c) do c[k] = c[k] + (tonumber(t:get(k)) or 0) end
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"duration_us":%d,"requests":%d,"bytes":%d,' ..
    '"errors":{{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}},' ..
    '"status":{{"200":%d,"503":%d,"4xx":%d,"5xx_other":%d,"other":%d}},' ..
    '"latency_us":{{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,' ..
    '"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p99_9":%d}}}}\\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    c.ok, c.s503, c.s4xx, c.s5xx, c.other,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
""")


def wrk_version() -> str:
    p = subprocess.run(["wrk", "-v"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = p.stdout.strip().splitlines()[0] if p.stdout.strip() else "?"
    return first.split(" Copyright")[0].strip()


def run_wrk(base: str, lua: Path, connections: int, threads: int, seconds: float, timeout_s: float) -> dict:
    """Runs wrk closed-loop with a `write_wrk_search_lua` script; its counts, latencies (µs) and rps."""
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s", "--timeout", f"{timeout_s:g}s",
           "--latency", "-s", str(lua), base + "/search"]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = next((l for l in p.stdout.splitlines() if l.startswith("WRKJSON ")), None)
    if p.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({p.returncode}):\n{p.stdout}")
    res = json.loads(line[len("WRKJSON "):])
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    res["command"] = " ".join(cmd)
    res["stdout"] = "\n".join(l for l in p.stdout.splitlines() if not l.startswith("WRKJSON "))
    return res
