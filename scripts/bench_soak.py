#!/usr/bin/env python3
"""Soak benchmark (issue 12): a real server through a "day of load" for an hour or more.

    python3 scripts/bench_soak.py                          # 60 min of load after the initial index
    python3 scripts/bench_soak.py --minutes 5 --photos 300 --no-write         # a short trial
    python3 scripts/bench_soak.py --from-json bench-results/soak-<ts>.json    # re-render only

What it measures: whether `visionquery serve` stays healthy under mixed, steady load. For
--minutes (after an initial index, so the clock measures steady state), all at once:

- --clients (16) threads, each with one keep-alive connection, send
  `POST /search {"query": <COCO caption>, "top_k": 10}` back to back;
- one thread re-runs a directory job over the image root (`POST /ingest/directory`, then
  `GET /jobs/{id}` every second until it ends), run after run. Before each run it rewrites
  --rewrite (50) random files of the root with a new JPEG comment (new bytes, same pixels), so
  every run re-embeds those and skips the rest;
- one thread uploads a photo of the upload pool (Flickr8k, bytes made unique the same way)
  every --upload-every (2) s through `POST /ingest/upload`, and deletes the oldest upload
  (`DELETE /images/{id}`) whenever more than --keep-uploads (100) are indexed;
- a sampler every 10 s reads the server's resident memory (VmRSS), open file descriptors,
  threads and CPU from /proc, the index size (`GET /ready`), the data directory's size and the
  CPU share of other processes; once a minute it logs the last minute's search p50/p99 and the
  requests, 5xx and other non-2xx answers per endpoint.

The image root holds --photos (2,000) files copied from the COCO photos (sorted; when there are
fewer photos than that, each is copied several times, every copy made distinct by its own JPEG
comment, so the index holds --photos different files whose pixels repeat).

The verdicts, computed from the data (with W = the first / last 10 minutes, or half the run
when it is shorter than 20 minutes):
- no 5xx answer at all (the first bodies are kept, to diagnose one);
- resident memory flat: growth from the end of the first W to the end, in MiB and %, and the
  least-squares slope (MiB per hour) after the first W; flat = both at most 5% of the RSS
  at the end of the first W;
- open fds flat: min/max after the first W; flat = the last W's peak at most 4 above the
  first W's;
- p99 search latency of the last W at most 1.5x the first W's.

Writes bench-results/soak-<UTC>.json (every sample, every minute's latencies, every job run)
and the `bench:soak` section of BENCHMARKS.md (unless --no-write), and exits 1 when a verdict
fails. Ctrl-C or SIGTERM during the soak ends it early and still reports what was measured.
Standard library only.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import random
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    add_output_arguments, command_line,
    DEFAULT_CAPTIONS, add_server_arguments, CpuMonitor, ServerProcess, build_binary,
    ensure_checkpoint, fmt, free_port, load_queries, log, machine_line, pct, process_stats,
    jpegs, publish, rerender_saved, reproduce_footer, run_directory_job, stamp_results, tagged_jpeg, thread_names,
    wait_quiet,
)

SECTION = "soak"  # <!-- bench:soak:start/end --> in BENCHMARKS.md
HEADING = "## Soak"
DEFAULT_UPLOAD_POOL = Path("/work/shared/data/flickr8k/images")
SAMPLE_EVERY_S = 10.0
JOB_POLL_S = 1.0
VERDICT_WINDOW_MIN = 10  # "the first ten minutes" and the last ten
P99_LIMIT = 1.5  # p99 at the end / p99 of the first window
RSS_FLAT_PCT = 5.0  # growth and hourly slope after the first window, % of its RSS
FD_SLACK = 4  # the last window's fd peak may exceed the first window's by this many
KEEP_BODIES = 10  # 5xx answers / connection errors whose bodies are kept
FINISHED = ("completed", "failed", "cancelled")


# ---------------------------------------------------------------------------------------------
# Photos: the image root and the upload pool
# ---------------------------------------------------------------------------------------------


class PhotoRoot:
    """The image root: `n` distinct JPEG files made from `sources` (cycled), and the rewriting of
    a few of them before each job run."""

    def __init__(self, root: Path, sources: list[Path], n: int):
        self.root = root
        cycled = [sources[i % len(sources)] for i in range(n)]
        self.files = [(root / f"{i:05d}-{src.name}", src) for i, src in enumerate(cycled)]
        self.sources = len(sources)
        self.generation = 0

    def create(self) -> int:
        """Writes every file; returns the bytes written."""
        self.root.mkdir(parents=True)
        for path, src in self.files:
            self._write(path, src)
        return sum(path.stat().st_size for path, _ in self.files)

    def rewrite(self, k: int, rng: random.Random) -> int:
        """Rewrites `k` random files with a new comment (new content, new mtime)."""
        self.generation += 1
        chosen = rng.sample(self.files, min(k, len(self.files)))
        for path, src in chosen:
            self._write(path, src)
        return len(chosen)

    def _write(self, path: Path, src: Path) -> None:
        # Written beside it under a hidden name (jobs skip hidden files) and renamed over it, so
        # a job never reads half a file.
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(tagged_jpeg(src.read_bytes(), f"vq-soak {path.name} v{self.generation}"))
        os.replace(tmp, path)


def multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body with one file part; (body, content type)."""
    boundary = uuid.uuid4().hex
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


# ---------------------------------------------------------------------------------------------
# HTTP: keep-alive clients and what every request got
# ---------------------------------------------------------------------------------------------


class Client:
    """One keep-alive HTTP/1.1 connection to the server, reopened when the server closed it."""

    # X-Requested-With: state changes without an API key need it (README, Access control).
    HEADERS = {"X-Requested-With": "visionquery"}

    def __init__(self, port: int, timeout: float):
        self.port, self.timeout = port, timeout
        self.conn = None
        self.reconnects = 0

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None):
        """(status, body bytes). A kept-alive connection the server closed meanwhile is reopened
        and the request sent again once; other failures raise (OSError, HTTPException)."""
        headers = dict(self.HEADERS, **({"Content-Type": content_type} if content_type else {}))
        for attempt in (0, 1):
            reused = self.conn is not None
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if reused and attempt == 0:
                    self.reconnects += 1
                    continue
                raise
            except (OSError, http.client.HTTPException):
                self.close()
                raise
            if resp.will_close:
                self.close()
            return resp.status, data
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def new_minute() -> dict:
    # seconds: per endpoint [answers, summed seconds, slowest], connection errors included
    return {"status": collections.defaultdict(collections.Counter), "search_ms": [], "events": collections.Counter(),
            "seconds": collections.defaultdict(lambda: [0, 0.0, 0.0])}


class Recorder:
    """Every request's answer by minute of the soak (by when it was sent): status counts per
    endpoint, the latencies of answered searches, events (uploads, deletes, job runs), and the
    first 5xx answers and connection errors with their bodies."""

    def __init__(self):
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.minutes = collections.defaultdict(new_minute)
        self.errors_5xx = []
        self.connection_errors = []
        self.totals = collections.Counter()

    def start(self) -> None:
        self.t0 = time.monotonic()

    def now(self) -> float:
        """Seconds since the soak started."""
        return time.monotonic() - self.t0

    def call(self, client: Client, endpoint: str, method: str, path: str, body: bytes | None = None,
             content_type: str | None = None):
        """Sends one request and records it; (status, body) or (None, None) after a connection error."""
        t = time.monotonic()
        try:
            status, data = client.request(method, path, body, content_type)
        except (OSError, http.client.HTTPException) as e:
            self._record(endpoint, "conn_error", t, time.monotonic() - t, repr(e))
            return None, None
        self._record(endpoint, status, t, time.monotonic() - t, data)
        return status, data

    def _record(self, endpoint: str, status, t: float, seconds: float, body) -> None:
        minute = int((t - self.t0) // 60)
        with self.lock:
            m = self.minutes[minute]
            m["status"][endpoint][str(status)] += 1
            took = m["seconds"][endpoint]
            took[0], took[1], took[2] = took[0] + 1, took[1] + seconds, max(took[2], seconds)
            self.totals[(endpoint, str(status))] += 1
            if endpoint == "POST /search" and status == 200:
                m["search_ms"].append(round(seconds * 1e3, 2))
            if status == "conn_error":
                kept = self.connection_errors
            elif status >= 500:
                kept = self.errors_5xx
            else:
                return
            if len(kept) < KEEP_BODIES:
                text = body.decode(errors="replace") if isinstance(body, bytes) else body
                kept.append({"t_s": round(t - self.t0, 1), "endpoint": endpoint, "status": status,
                             "seconds": round(seconds, 3), "body": text[:2000]})
                log(f"  !! {endpoint} answered {status} after {seconds:.2f} s: {text[:300]}")

    def event(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.minutes[int(self.now() // 60)]["events"][name] += n

    def minute_summary(self, minute: int) -> dict:
        with self.lock:
            m = self.minutes.get(minute) or new_minute()
            return {"status": {e: dict(c) for e, c in m["status"].items()}, "search_ms": list(m["search_ms"]),
                    "events": dict(m["events"]),
                    "seconds": {e: [n, round(total, 3), round(top, 3)] for e, (n, total, top) in m["seconds"].items()}}


# ---------------------------------------------------------------------------------------------
# The load
# ---------------------------------------------------------------------------------------------


def search_client(n: int, clients: int, port: int, queries: list[str], top_k: int, rec: Recorder,
                  stop: threading.Event) -> None:
    """Back-to-back searches, each client starting at another place in the captions."""
    client = Client(port, timeout=300)
    i = n * len(queries) // clients
    while not stop.is_set():
        body = json.dumps({"query": queries[i % len(queries)], "top_k": top_k}).encode()
        status, _ = rec.call(client, "POST /search", "POST", "/search", body, "application/json")
        if status is None:
            stop.wait(0.5)  # connection refused or reset: no busy loop while the server is down
        i += 1
    client.close()


def run_job_once(client: Client, root: Path, rec: Recorder, stop: threading.Event) -> dict | None:
    """One directory job over the root, polled until it ends (or the soak does)."""
    body = json.dumps({"path": str(root), "recursive": False}).encode()
    t = rec.now()
    status, data = rec.call(client, "POST /ingest/directory", "POST", "/ingest/directory", body, "application/json")
    if status != 202:
        stop.wait(5)
        return None
    job = json.loads(data)
    while job["state"] not in FINISHED:
        if stop.wait(JOB_POLL_S):
            return None
        status, data = rec.call(client, "GET /jobs/{id}", "GET", f"/jobs/{job['id']}")
        if status == 200:
            job = json.loads(data)
    rec.event("job_runs")
    return {"t_s": round(t, 1), "wall_s": round(rec.now() - t, 2), "id": job["id"], "state": job["state"],
            **{k: job[k] for k in ("total", "indexed", "skipped", "failed")}, "error": job.get("error"),
            "failures": job.get("failures", [])[:3]}


def job_runner(port: int, photos: PhotoRoot, rewrite: int, seed: int, rec: Recorder, stop: threading.Event,
               runs: list) -> None:
    """Directory jobs over the root, one after another, `rewrite` files rewritten before each."""
    client = Client(port, timeout=60)
    rng = random.Random(seed)
    while not stop.is_set():
        rewritten = photos.rewrite(rewrite, rng) if rewrite else 0
        run = run_job_once(client, photos.root, rec, stop)
        if run is not None:
            run["rewritten"] = rewritten
            runs.append(run)
            if run["state"] != "completed" or run["failed"]:
                log(f"  !! job {run['id']} ended {run['state']}, {run['failed']} failed: {run['error']} {run['failures']}")
    client.close()


def uploader(port: int, pool: list[Path], every: float, keep: int, rec: Recorder, stop: threading.Event,
             notes: list) -> None:
    """An upload every `every` seconds (each with unique bytes); the oldest deleted beyond `keep`."""
    client = Client(port, timeout=300)
    kept = collections.deque()
    n = 0
    next_at = time.monotonic()
    while not stop.wait(max(0.0, next_at - time.monotonic())):
        next_at = max(next_at + every, time.monotonic())
        src = pool[n % len(pool)]
        n += 1
        body, ctype = multipart("files", f"soak-{n}-{src.name}", tagged_jpeg(src.read_bytes(), f"vq-soak upload {n}"))
        status, data = rec.call(client, "POST /ingest/upload", "POST", "/ingest/upload", body, ctype)
        if status == 200:
            result = json.loads(data)["results"][0]
            if result["status"] == "ok" and not result.get("duplicate"):
                kept.append(result["id"])
                rec.event("uploads")
            else:
                rec.event("uploads_refused")
                if len(notes) < KEEP_BODIES:
                    notes.append({"t_s": round(rec.now(), 1), "upload": result})
        while len(kept) > keep and not stop.is_set():
            status, _ = rec.call(client, "DELETE /images/{id}", "DELETE", f"/images/{kept[0]}")
            if status is None:
                break  # connection error: try again after the next upload
            kept.popleft()
            if status == 200:
                rec.event("deletes")
    client.close()


def minute_line(minute: int, m: dict, s: dict) -> str:
    """One progress line: the last sample and the last full minute's answers."""
    lat = m["search_ms"]
    n5 = sum(v for codes in m["status"].values() for c, v in codes.items() if c.startswith("5"))
    other = sum(v for codes in m["status"].values() for c, v in codes.items() if not c.startswith(("2", "5")))
    ev = m["events"]
    return (f"  [{minute + 1:>3} min] RSS {s['rss_mib']:.1f} MiB, fds {s['fds']}, threads {s['threads']}, "
            f"index {s.get('index_images')} | searches {len(lat) / 60:.1f}/s p50 {fmt(pct(lat, 50) if lat else None)} "
            f"p99 {fmt(pct(lat, 99) if lat else None)} ms, uploads {ev.get('uploads', 0)}, deletes "
            f"{ev.get('deletes', 0)}, job runs {ev.get('job_runs', 0)}, 5xx {n5}, other non-2xx {other} | "
            f"server {s['server_cores']:.2f} cores, this script {s['own_cores'] - s['server_cores']:.2f}, "
            f"other {100 * s['foreign_share']:.0f}%")


def minute_record(minute: int, m: dict) -> dict:
    """A minute of the soak as saved: its counts, search p50/p99 and the raw latencies."""
    lat = m["search_ms"]
    return {"minute": minute, "searches": len(lat), "search_p50_ms": pct(lat, 50) if lat else None,
            "search_p99_ms": pct(lat, 99) if lat else None, **m}


def dir_bytes(path: Path) -> int:
    """Space the files take on disk (allocated blocks)."""
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def sampler(server: "Server", rec: Recorder, stop: threading.Event, samples: list) -> None:
    """Every SAMPLE_EVERY_S: the server's memory, fds, threads, CPU and index size; a progress
    line at each new minute. Ends the soak when the server exits."""
    client = Client(server.port, timeout=30)
    pid = server.proc.pid
    logged = 0
    while not stop.is_set():
        with CpuMonitor([pid]) as mon:
            stop.wait(SAMPLE_EVERY_S)
        if server.proc.poll() is not None:
            log(f"  !! the server exited with code {server.proc.returncode}; ending the soak")
            server.exited_at = rec.now()
            stop.set()
            break
        try:
            p = process_stats(pid)
            if not samples:
                server.threads_at_start = thread_names(pid)
        except OSError:
            continue  # it exited just now: the next round ends the soak
        status, data = rec.call(client, "GET /ready", "GET", "/ready")
        ready = json.loads(data) if status in (200, 503) else {}
        samples.append({"t_s": round(rec.now(), 1), "rss_mib": round(p["rss_bytes"] / 2**20, 1),
                        "hwm_mib": round(p["hwm_bytes"] / 2**20, 1), "fds": p["fds"], "threads": p["threads"],
                        "index_images": ready.get("index", {}).get("images"),
                        "data_dir_mib": round(dir_bytes(server.data_dir) / 2**20, 1),
                        "server_cores": round(mon.pids_cores, 3), "own_cores": round(mon.own_cpus, 3),
                        "foreign_share": round(mon.foreign_share, 3)})
        while logged < int(rec.now() // 60):
            log(minute_line(logged, rec.minute_summary(logged), samples[-1]))
            logged += 1
    client.close()


# ---------------------------------------------------------------------------------------------
# Server and the soak
# ---------------------------------------------------------------------------------------------


class Server(ServerProcess):
    def __init__(self, binary: Path, args, root: Path, workdir: Path):
        self.data_dir = workdir / "data"
        self.exited_at = None
        self.threads_at_start = None
        port = free_port()
        cmd = [str(binary), "serve", "--model", str(args.model), "--precision", args.precision,
               "--data-dir", str(self.data_dir), "--image-root", str(root), "--host", "127.0.0.1",
               "--port", str(port), "--threads", str(args.server_threads)]
        if args.ort_library:
            cmd += ["--ort-library", str(args.ort_library)]
        super().__init__(cmd, port, workdir / "server.log")


def initial_index(server: Server, root: Path, photos: int) -> dict:
    """Indexes the root once, timed (the server alone, no other load)."""
    log(f"initial index of {photos} photos (the soak clock starts after it)")
    with CpuMonitor([server.proc.pid]) as mon:
        job = run_directory_job(server.base, root, timeout=4 * 3600, poll=1.0)
    out = {k: job[k] for k in ("total", "indexed", "skipped", "failed")}
    out.update({"wall_s": round(job["wall_s"], 1), "photos_per_s": round(job["indexed"] / job["wall_s"], 2),
                "server_cores": round(mon.pids_cores, 2), "foreign_share": round(mon.foreign_share, 3)})
    log(f"  indexed {job['indexed']}/{job['total']} in {job['wall_s']:.0f} s ({out['photos_per_s']} photos/s, "
        f"server {mon.pids_cores:.2f} cores, other processes {100 * mon.foreign_share:.0f}%)")
    return out


class SoakEnded(Exception):
    """SIGINT or SIGTERM during the soak: stop early and report what was measured."""


def soak(server: Server, args, photos: PhotoRoot, queries: list[str], pool: list[Path]) -> dict:
    """Runs the load for args.minutes; the time series and everything recorded."""
    rec, stop = Recorder(), threading.Event()
    samples, runs, notes = [], [], []
    workers = [threading.Thread(target=search_client, name=f"search-{n}", daemon=True,
                                args=(n, args.clients, server.port, queries, args.top_k, rec, stop))
               for n in range(args.clients)]
    workers += [
        threading.Thread(target=job_runner, name="jobs", daemon=True,
                         args=(server.port, photos, args.rewrite, args.seed, rec, stop, runs)),
        threading.Thread(target=uploader, name="uploads", daemon=True,
                         args=(server.port, pool, args.upload_every, args.keep_uploads, rec, stop, notes)),
        threading.Thread(target=sampler, name="sampler", daemon=True, args=(server, rec, stop, samples)),
    ]
    log_mark = len(server.log_lines())
    log(f"soak: {args.minutes:g} min of load")
    rec.start()
    for w in workers:
        w.start()
    ended_early = None
    try:
        if stop.wait(args.minutes * 60):
            ended_early = "the server exited"
    except SoakEnded:
        ended_early = "interrupted"
        log("  interrupted: ending the soak early and reporting what was measured")
    duration = rec.now()
    stop.set()
    deadline = time.monotonic() + 60  # requests in flight end; a hung one is left behind
    for w in workers:
        w.join(timeout=max(0.0, deadline - time.monotonic()))
    minutes = [minute_record(m, rec.minute_summary(m)) for m in sorted(rec.minutes)]
    threads_at_end = thread_names(server.proc.pid) if server.proc.poll() is None else None
    lines = server.log_lines()[log_mark:]
    noisy = [l for l in lines if re.search(r"\b(WARN|ERROR)\b", l)]
    return {
        "planned_s": args.minutes * 60, "duration_s": round(duration, 1), "ended_early": ended_early,
        "server_exited_at_s": server.exited_at,
        "thread_names": {"first_sample": server.threads_at_start, "end": threads_at_end},
        "samples": samples, "minutes": minutes, "job_runs": runs, "upload_notes": notes,
        "totals": [{"endpoint": e, "status": s, "count": n} for (e, s), n in sorted(rec.totals.items())],
        "errors_5xx": rec.errors_5xx, "connection_errors": rec.connection_errors,
        "server_log": {"lines": len(lines), "warn_or_error": len(noisy), "examples": noisy[:20]},
    }


# ---------------------------------------------------------------------------------------------
# Analysis (from the results alone, so --from-json re-renders exactly)
# ---------------------------------------------------------------------------------------------


def window_minutes(duration_s: float) -> int:
    """Minutes compared at the start and the end: 10, or half of a shorter run."""
    return max(1, min(VERDICT_WINDOW_MIN, int(duration_s // 60) // 2))


def last_window_start(duration_s: float) -> int:
    """The minute the last window starts at (whole minutes; the few seconds past the last whole
    minute belong to it too)."""
    return max(0, int(duration_s // 60) - window_minutes(duration_s))


def latencies(minutes: list[dict], lo_min: float, hi_min: float) -> list[float]:
    return [x for m in minutes if lo_min <= m["minute"] < hi_min for x in m["search_ms"]]


def status_count(minutes: list[dict], test) -> int:
    return sum(n for m in minutes for codes in m["status"].values() for code, n in codes.items() if test(code))


def is_5xx(code: str) -> bool:
    return code.startswith("5")


def is_other(code: str) -> bool:
    return not code.startswith(("2", "5"))


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per hour."""
    if len(points) < 3:
        return None
    mx = statistics.fmean(t for t, _ in points)
    my = statistics.fmean(v for _, v in points)
    den = sum((t - mx) ** 2 for t, _ in points)
    return 3600 * sum((t - mx) * (v - my) for t, v in points) / den if den else None


def verdicts(soak_: dict) -> dict:
    """The four verdicts, with the numbers behind them."""
    w, last_from = window_minutes(soak_["duration_s"]), last_window_start(soak_["duration_s"])
    samples, minutes = soak_["samples"], soak_["minutes"]
    first = [s for s in samples if s["t_s"] <= w * 60]
    after = [s for s in samples if s["t_s"] > w * 60]
    last = [s for s in samples if s["t_s"] > last_from * 60]
    out = {"window_min": w}

    n5 = status_count(minutes, is_5xx)
    out["5xx"] = {"count": n5, "requests": status_count(minutes, lambda c: True), "pass": n5 == 0}

    if first and after:
        base, end = first[-1]["rss_mib"], samples[-1]["rss_mib"]
        slope = slope_per_hour([(s["t_s"], s["rss_mib"]) for s in after])
        out["rss"] = {"at_window_end_mib": base, "at_end_mib": end, "growth_mib": round(end - base, 1),
                      "growth_pct": round(100 * (end - base) / base, 2),
                      "slope_mib_per_h": None if slope is None else round(slope, 1),
                      "slope_pct_per_h": None if slope is None else round(100 * slope / base, 2),
                      "min_mib": min(s["rss_mib"] for s in after), "max_mib": max(s["rss_mib"] for s in after),
                      "peak_hwm_mib": samples[-1]["hwm_mib"]}
        out["rss"]["pass"] = (out["rss"]["growth_pct"] <= RSS_FLAT_PCT
                              and (slope is None or out["rss"]["slope_pct_per_h"] <= RSS_FLAT_PCT))
        fds_first, fds_last = [s["fds"] for s in first], [s["fds"] for s in last]
        fds_after = [s["fds"] for s in after]
        out["fds"] = {"first_min": min(fds_first), "first_max": max(fds_first), "after_min": min(fds_after),
                      "after_max": max(fds_after), "last_min": min(fds_last), "last_max": max(fds_last),
                      "at_end": samples[-1]["fds"], "pass": max(fds_last) <= max(fds_first) + FD_SLACK}

    lat_first, lat_last = latencies(minutes, 0, w), latencies(minutes, last_from, float("inf"))
    if lat_first and lat_last:
        p_first, p_last = pct(lat_first, 99), pct(lat_last, 99)
        out["p99"] = {"first_ms": p_first, "last_ms": p_last, "ratio": round(p_last / p_first, 3),
                      "first_searches": len(lat_first), "last_searches": len(lat_last),
                      "pass": p_last <= P99_LIMIT * p_first}
        out["p99"]["other_cpu_first"] = mean_share(first)
        out["p99"]["other_cpu_last"] = mean_share(last)
    return out


def mean_share(samples: list[dict]) -> float | None:
    return round(statistics.fmean(s["foreign_share"] for s in samples), 3) if samples else None


def periods(soak_: dict, step: int) -> list[dict]:
    """Per `step` minutes (the last period takes the remainder): RSS and fds, latencies, rates
    and answers."""
    rows = []
    duration_min = soak_["duration_s"] / 60
    n = max(1, round(duration_min / step))
    for i in range(n):
        lo = i * step
        hi = duration_min if i == n - 1 else lo + step
        top = float("inf") if i == n - 1 else hi
        ss = [s for s in soak_["samples"] if lo * 60 < s["t_s"] <= top * 60]
        ms = [m for m in soak_["minutes"] if lo <= m["minute"] < top]
        lat = [x for m in ms for x in m["search_ms"]]
        ev = collections.Counter()
        for m in ms:
            ev.update(m["events"])
        rows.append({
            "from_min": lo, "to_min": round(hi, 1),
            "rss_mib": ss[-1]["rss_mib"] if ss else None,
            "fds": (min(s["fds"] for s in ss), max(s["fds"] for s in ss)) if ss else None,
            "threads": max(s["threads"] for s in ss) if ss else None,
            "index_images": ss[-1]["index_images"] if ss else None,
            "data_dir_mib": ss[-1]["data_dir_mib"] if ss else None,
            "p50_ms": pct(lat, 50) if lat else None, "p99_ms": pct(lat, 99) if lat else None,
            "searches_per_s": len(lat) / ((hi - lo) * 60) if hi > lo else None,
            "uploads": ev.get("uploads", 0), "deletes": ev.get("deletes", 0), "job_runs": ev.get("job_runs", 0),
            "5xx": status_count(ms, is_5xx), "other_non_2xx": status_count(ms, is_other),
            "other_cpu": mean_share(ss),
        })
    return rows


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int, min_span: float) -> str:
    """`values` in at most `width` columns (each the column's maximum), scaled from the minimum
    (▁) to the minimum + max(range, `min_span`) (█), so that small wobbles stay low."""
    if not values:
        return ""
    n = len(values)
    cols = [max(values[i * n // width:max((i + 1) * n // width, i * n // width + 1)]) for i in range(min(width, n))]
    lo = min(values)
    span = max(max(values) - lo, min_span)
    return "".join(SPARKS[min(len(SPARKS) - 1, int((v - lo) / span * len(SPARKS)))] for v in cols)


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def verdict_lines(v: dict) -> list[str]:
    w = v["window_min"]

    def mark(ok: bool) -> str:
        return "**PASS**" if ok else "**FAIL**"

    out = [f"- {mark(v['5xx']['pass'])} 5xx answers: {v['5xx']['count']} of {v['5xx']['requests']:,} requests."]
    if "rss" in v:
        r = v["rss"]
        slope = (f"{r['slope_mib_per_h']:+.1f} MiB/h ({r['slope_pct_per_h']:+.2f}%/h)"
                 if r["slope_mib_per_h"] is not None else "— (too few samples)")
        out.append(f"- {mark(r['pass'])} resident memory flat: {fmt(r['at_window_end_mib'])} MiB at the end of the "
                   f"first {w} min → {fmt(r['at_end_mib'])} MiB at the end ({r['growth_mib']:+.1f} MiB, "
                   f"{r['growth_pct']:+.2f}%); least-squares slope after the first {w} min: {slope}; range after "
                   f"the first {w} min {fmt(r['min_mib'])}–{fmt(r['max_mib'])} MiB, peak (VmHWM) "
                   f"{fmt(r['peak_hwm_mib'])} MiB. Flat = growth and slope both at most {RSS_FLAT_PCT:g}%.")
        f = v["fds"]
        out.append(f"- {mark(f['pass'])} open file descriptors flat: {f['after_min']}–{f['after_max']} after the "
                   f"first {w} min ({f['first_min']}–{f['first_max']} during them, {f['last_min']}–{f['last_max']} in "
                   f"the last {w} min, {f['at_end']} at the end). Flat = the last {w} min's peak at most {FD_SLACK} "
                   f"above the first {w} min's.")
    else:
        out.append("- **FAIL** memory and fds: too few samples to judge (the run was too short).")
    if "p99" in v:
        p = v["p99"]
        noise = ""
        if max(p["other_cpu_first"] or 0, p["other_cpu_last"] or 0) > 0.10:
            noise = (f" Other processes used {100 * p['other_cpu_first']:.0f}% of the CPUs in the first window and "
                     f"{100 * p['other_cpu_last']:.0f}% in the last: the ratio is disturbed by them, read it with care.")
        out.append(f"- {mark(p['pass'])} p99 at the end: {fmt(p['last_ms'])} ms over the last {w} min "
                   f"({p['last_searches']:,} searches) vs {fmt(p['first_ms'])} ms over the first {w} min "
                   f"({p['first_searches']:,}): **{p['ratio']:.2f}×** (limit {P99_LIMIT:g}×).{noise}")
    else:
        out.append("- **FAIL** p99: no answered searches in the first or last window.")
    return out


def curve_lines(soak_: dict) -> list[str]:
    samples = soak_["samples"]
    if not samples:
        return []
    rss, fds = [s["rss_mib"] for s in samples], [s["fds"] for s in samples]
    width = min(60, len(samples))
    per = soak_["duration_s"] / 60 / width
    rss_span = RSS_FLAT_PCT / 100 * min(rss)
    return ["```text",
            f"RSS MiB {min(rss):>7.1f} {sparkline(rss, width, rss_span)} {max(rss):.1f}",
            f"fds     {min(fds):>7} {sparkline(fds, width, 2 * FD_SLACK)} {max(fds)}",
            f"{'':>15} 0 min{'':>{max(1, width - 10)}}{soak_['duration_s'] / 60:.0f} min",
            "```",
            f"Each mark is the highest sample of {per:.1f} min (samples every {SAMPLE_EVERY_S:g} s); ▁ is the "
            f"series' minimum (left number) and █ its maximum (right number) or, when the series moves less, "
            f"the minimum + {RSS_FLAT_PCT:g}% (RSS) or + {2 * FD_SLACK} (fds), so a flat series stays low."]


def table_lines(soak_: dict) -> list[str]:
    step = 5 if soak_["duration_s"] >= 20 * 60 else 1
    rows = ["| minutes | RSS MiB (end) | fds (min–max) | threads (max) | index size | data dir MiB | p50 ms | p99 ms "
            "| searches/s | uploads | deletes | job runs | 5xx | other non-2xx | other CPU |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in periods(soak_, step):
        fds = f"{r['fds'][0]}–{r['fds'][1]}" if r["fds"] else "—"
        other = f"{100 * r['other_cpu']:.0f}%" if r["other_cpu"] is not None else "—"
        rows.append(f"| {r['from_min']}–{fmt(r['to_min'], 0)} | {fmt(r['rss_mib'])} | {fds} | {r['threads'] or '—'} | "
                    f"{fmt(r['index_images'])} | {fmt(r['data_dir_mib'])} | "
                    f"{fmt(r['p50_ms'])} | "
                    f"{fmt(r['p99_ms'])} | {fmt(r['searches_per_s'])} | {r['uploads']} | {r['deletes']} | "
                    f"{r['job_runs']} | {r['5xx']} | {r['other_non_2xx']} | {other} |")
    return rows


def job_summary(soak_: dict) -> str:
    runs = soak_["job_runs"]
    if not runs:
        return "no directory job run finished during the soak"
    walls = [r["wall_s"] for r in runs]
    indexed = [r["indexed"] for r in runs]
    bad = [r for r in runs if r["state"] != "completed" or r["failed"]]
    return (f"{len(runs)} directory job runs finished (wall time median {fmt(statistics.median(walls))} s, max "
            f"{fmt(max(walls))} s; indexed per run {min(indexed)}–{max(indexed)}, i.e. the rewritten files)"
            + (f"; **{len(bad)} ended badly** (first: {bad[0]['state']}, {bad[0]['failed']} failed: "
               f"{bad[0]['error'] or bad[0]['failures']})" if bad else ""))


def endpoint_seconds(soak_: dict) -> dict:
    """Per endpoint over the soak: [answers, summed seconds, slowest]."""
    out = collections.defaultdict(lambda: [0, 0.0, 0.0])
    for m in soak_["minutes"]:
        for endpoint, (n, total, top) in m.get("seconds", {}).items():
            acc = out[endpoint]
            acc[0], acc[1], acc[2] = acc[0] + n, acc[1] + total, max(acc[2], top)
    return out


def other_endpoints_line(soak_: dict) -> str:
    took = endpoint_seconds(soak_)
    parts = [f"`{e}` {n:,} × mean {fmt(total / n, 2)} s, slowest {fmt(top, 2)} s"
             for e, (n, total, top) in sorted(took.items()) if e != "POST /search" and n]
    samples = soak_["samples"]
    disk = (f"; the data directory took {fmt(samples[0]['data_dir_mib'])} MiB at the first sample and "
            f"{fmt(samples[-1]['data_dir_mib'])} MiB at the last" if samples else "")
    return "- Other requests: " + "; ".join(parts) + disk + "."


def threads_line(soak_: dict) -> list[str]:
    names = soak_.get("thread_names") or {}
    samples = soak_["samples"]
    if not samples or not names.get("end"):
        return []

    def named(counts: dict) -> str:
        return ", ".join(f"{name} {n}" for name, n in counts.items())

    return [f"- Threads: {samples[0]['threads']} at the first sample, {max(s['threads'] for s in samples)} at most, "
            f"{samples[-1]['threads']} at the last; by name at the first sample: {named(names['first_sample'])}; "
            f"at the end: {named(names['end'])}."]


def anomaly_lines(soak_: dict) -> list[str]:
    out = []
    bad = [t for t in soak_["totals"] if not t["status"].startswith("2")]
    if bad:
        out.append("- Non-2xx answers and connection errors by endpoint: "
                   + "; ".join(f"`{t['endpoint']}` {t['status']}: {t['count']}" for t in bad) + ".")
    for e in soak_["errors_5xx"][:5]:
        out.append(f"  - {e['endpoint']} {e['status']} at {e['t_s']:.0f} s after {e['seconds']} s: `{e['body'][:300]}`")
    for e in soak_["connection_errors"][:3]:
        out.append(f"  - {e['endpoint']} connection error at {e['t_s']:.0f} s: `{e['body'][:200]}`")
    for n in soak_["upload_notes"][:3]:
        out.append(f"  - upload not indexed at {n['t_s']:.0f} s: `{json.dumps(n['upload'])[:300]}`")
    log_ = soak_["server_log"]
    if log_["warn_or_error"]:
        out.append(f"- The server logged {log_['warn_or_error']} WARN/ERROR lines during the soak, e.g. "
                   f"`{log_['examples'][0][:300]}`.")
    out = out or ["- No non-2xx answers, connection errors or WARN/ERROR server log lines."]
    if soak_["ended_early"]:
        out.append(f"- **The soak ended early** ({soak_['ended_early']}) after {soak_['duration_s'] / 60:.1f} of "
                   f"{soak_['planned_s'] / 60:g} minutes.")
    return out


def quiet_text(results: dict) -> str:
    q = results.get("quiet_wait") or {}
    if not results["params"].get("wait_quiet"):
        return "The clock started without waiting for a quiet machine (--wait-quiet 0)."
    if q.get("quiet"):
        return f"The clock started on a quiet machine (after waiting {q['waited_s']:.0f} s)."
    if q:
        return (f"The machine was still busy when the clock started (waited {q['waited_s']:.0f} s, the most "
                f"--wait-quiet allowed).")
    return ""


def render(results: dict) -> str:
    prm, s = results["params"], results["soak"]
    v = verdicts(s)
    idx = results.get("initial_index")
    index_text = (f"an initial index of the {idx['indexed']:,} photos took **{idx['wall_s']:.0f} s** "
                  f"({idx['photos_per_s']} photos/s, other processes {100 * idx['foreign_share']:.0f}% of the CPUs) "
                  f"before the clock started" if idx else "no initial index: the first job run indexed the root "
                  "during the soak")
    samples = s["samples"]
    script_cores = statistics.fmean(x["own_cores"] - x["server_cores"] for x in samples) if samples else 0
    server_cores = statistics.fmean(x["server_cores"] for x in samples) if samples else 0
    root = results["root"]
    lines = [
        f"Measured {results['timestamp']} on {machine_line(results['machine'])}; VisionQuery {results['git']}; "
        f"**{s['duration_s'] / 60:.1f} minutes** of load"
        + (f" (**ended early**: {s['ended_early']}; {s['planned_s'] / 60:g} planned)." if s["ended_early"] else "."),
        "",
        *verdict_lines(v),
        "",
        f"What ran: `visionquery serve` ({prm['precision']}, model `{Path(prm['model']).name}`: random-weight CLIP "
        f"with the real ViT-B/32 shapes; ONNX Runtime threads = {prm['server_threads'] or 'all cores'}) with a fresh "
        f"data directory and an image root of {root['files']:,} JPEG files ({root['mib']:.0f} MiB) copied from "
        f"{root['sources']} COCO photos"
        + (" (each photo several times, every copy made distinct by its own JPEG comment)" if root['files'] > root['sources'] else "")
        + f"; {index_text}. Then, all at once: {prm['clients']} clients sending `POST /search {{\"query\": <COCO "
        f"caption>, \"top_k\": {prm['top_k']}}}` back to back over keep-alive connections ({results['queries']:,} "
        f"captions in rotation); a `POST /ingest/directory` job over the root, re-run as soon as the last one "
        f"ended, with {prm['rewrite']} random files rewritten before each run (a new JPEG comment: new bytes, same "
        f"pixels), so each run re-embeds those and skips the rest; an upload (`POST /ingest/upload`) every "
        f"{prm['upload_every']:g} s (or as soon as the previous one is answered, when that takes longer) from {results['upload_pool']['files']} Flickr8k photos (bytes made unique the same "
        f"way), deleting the oldest upload (`DELETE /images/{{id}}`) beyond {prm['keep_uploads']}. Sampled every "
        f"{SAMPLE_EVERY_S:g} s from /proc: the server's VmRSS, open fds and threads. Latencies are the clients' "
        f"(request sent → answer read), of answered (200) searches.",
        "",
        *curve_lines(s),
        "",
        *table_lines(s),
        "",
        f"- {job_summary(s)}; {sum(m['events'].get('uploads', 0) for m in s['minutes'])} uploads, "
        f"{sum(m['events'].get('deletes', 0) for m in s['minutes'])} deletes.",
        other_endpoints_line(s),
        *threads_line(s),
        f"- CPU: the server used {server_cores:.2f} cores on average, this script's {prm['clients']} client threads "
        f"{script_cores:.2f}; *other CPU* is the share of the machine other processes used. {quiet_text(results)}",
        *anomaly_lines(s),
        f"- The server stopped (SIGTERM) with exit code {results['server'].get('exit_code')} after "
        f"{fmt(results['server'].get('stop_s'))} s.",
        "",
        *reproduce_footer(results["command"], results["json_name"]),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="minutes of load after the initial index (default 60)")
    ap.add_argument("--photos", type=int, default=2000, help="files in the image root (default 2000)")
    ap.add_argument("--clients", type=int, default=16, help="search client threads (default 16)")
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--rewrite", type=int, default=50, help="files rewritten before each job run (default 50)")
    ap.add_argument("--upload-every", type=float, default=2.0, help="seconds between uploads (default 2)")
    ap.add_argument("--keep-uploads", type=int, default=100, help="uploads kept indexed; older ones are deleted")
    ap.add_argument("--warmup-index", action=argparse.BooleanOptionalAction, default=True,
                    help="index the root before the clock starts (default: yes)")
    add_server_arguments(ap, images_help="COCO photos the root is made from")
    ap.add_argument("--captions", type=Path, default=DEFAULT_CAPTIONS, help="JSON file -> captions, used as queries")
    ap.add_argument("--upload-pool", type=Path, default=DEFAULT_UPLOAD_POOL, help="photos to upload")
    ap.add_argument("--seed", type=int, default=0, help="which files are rewritten")
    ap.add_argument("--wait-quiet", type=float, default=300,
                    help="wait up to this many seconds for other benchmarks/builds to finish before building and "
                         "before the clock starts (default 300; 0 = don't wait)")
    add_output_arguments(ap)
    args = ap.parse_args(argv)
    args.model = args.model.resolve()
    return args


def on_signal(*_):
    raise SoakEnded()


def measure(args, binary: Path, workdir: Path, queries: list[str]) -> dict:
    """Makes the root, starts the server, indexes, soaks, stops; everything measured."""
    sources = jpegs(args.images)
    photos = PhotoRoot(workdir / "photos", sources[:args.photos], args.photos)
    root_bytes = photos.create()
    log(f"image root: {args.photos} files ({root_bytes / 2**20:.0f} MiB) from {photos.sources} photos in {args.images}")
    pool = jpegs(args.upload_pool)
    out = {"root": {"files": args.photos, "sources": photos.sources, "source_dir": str(args.images),
                    "mib": round(root_bytes / 2**20, 1)},
           "upload_pool": {"dir": str(args.upload_pool), "files": len(pool)}}
    server = Server(binary, args, photos.root, workdir)
    out["server"] = {"command": " ".join(server.cmd)}
    try:
        out["server"]["ready_s"] = round(server.start(), 1)
        out["initial_index"] = initial_index(server, photos.root, args.photos) if args.warmup_index else None
        out["quiet_wait"] = wait_quiet(args.wait_quiet, exclude_pids=[server.proc.pid], check_competing=True)
        out["soak"] = soak(server, args, photos, queries, pool)
    finally:
        t = time.monotonic()
        out["server"]["exit_code"] = server.stop()
        out["server"]["stop_s"] = round(time.monotonic() - t, 1)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.from_json:
        return rerender_saved(args.from_json, render, SECTION, HEADING, write=not args.no_write)
    command = command_line("bench_soak.py", argv)
    # SIGTERM/SIGINT: during the soak, end it early and report; before it, stop (finally blocks
    # stop the server).
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    ckpt_state = ensure_checkpoint(args.model, args.config)
    if args.binary is None:
        wait_quiet(args.wait_quiet, check_competing=True)
    binary = args.binary.resolve() if args.binary else build_binary(no_build=False)
    queries = load_queries(args.captions)
    with tempfile.TemporaryDirectory(prefix="vq-bench-soak-") as tmp:
        results = measure(args, binary, Path(tmp), queries)

    results["queries"] = len(queries)
    json_name = stamp_results(results, "soak", command, args, binary, ckpt_state)
    results["verdicts"] = verdicts(results["soak"])
    publish(results, json_name, render(results), SECTION, HEADING, markdown=not args.no_write)
    if args.no_write:
        log(f"raw results in bench-results/{json_name}")
    return 0 if all(x.get("pass", True) for x in results["verdicts"].values() if isinstance(x, dict)) else 1


if __name__ == "__main__":
    sys.exit(main())
