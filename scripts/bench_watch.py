#!/usr/bin/env python3
"""Watch benchmark (issue 11): how soon files dropped into a watched folder are searchable, and
the memory of absorbing a burst, with a real `visionquery serve --watch`.

    python3 scripts/bench_watch.py                                  # 1,000 dropped, then 10,000
    python3 scripts/bench_watch.py --drop 200 --burst 2000 --no-write      # a short trial
    python3 scripts/bench_watch.py --from-json bench-results/watch-<ts>.json   # re-render only

Latency: a server watches an empty root. --drop (1,000) distinct photos are written into a new
folder of the root by one thread as fast as it can, each opened, written and closed; the time
right after each close is kept. A poller lists the newest images (`GET /images`, newest ingest
first) every --poll (0.25) s and notes when each path first appears there: from then on a search
can return it. Latency = first listed - closed, per file: p50, p90, p99 and max (the poll interval
is their resolution), and files per second from the first close to the last file listed.

Memory: a fresh server (its resident memory is the model and an empty index) watches another
empty root; --burst (10,000) distinct photos are written at once. Every 0.5 s the server's
resident memory (VmRSS, /proc) is sampled, with the index size and the watcher's pending gauge
(`vq_watch_pending`), until every file is indexed. Reported: RSS before the burst, its peak while
absorbing, at the end, the peak pending paths, the watch jobs the burst became, and the time.

The photos are the shared COCO photos (then Flickr8k's), cycled, each copy made distinct by a JPEG
comment (new bytes, the same pixels), written from memory so the disk is not the bottleneck.
The model is the random-weight ViT-B/32 the other server benchmarks use.

Writes bench-results/watch-<UTC>.json and the `bench:watch` section of BENCHMARKS.md (unless
--no-write). Standard library only.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    add_output_arguments, command_line,
    add_server_arguments, CpuMonitor, ServerProcess, build_binary, ensure_checkpoint, fmt,
    free_port, http, jpegs, log, machine_line, pct, process_stats, publish,
    reproduce_footer, rerender_saved, stamp_results, tagged_jpeg, wait_quiet,
)

SECTION = "watch"  # <!-- bench:watch:start/end --> in BENCHMARKS.md
HEADING = "## Watched folders"
MORE_PHOTOS = Path("/work/shared/data/flickr8k/images")
FINISHED = ("completed", "failed", "cancelled")


class Server(ServerProcess):
    def __init__(self, binary: Path, args, root: Path, workdir: Path, name: str):
        port = free_port()
        cmd = [str(binary), "serve", "--watch", "--model", str(args.model), "--precision", args.precision,
               "--data-dir", str(workdir / f"data-{name}"), "--image-root", str(root), "--host", "127.0.0.1",
               "--port", str(port), "--threads", str(args.server_threads)]
        if args.settle_ms is not None:
            cmd += ["--watch-settle-ms", str(args.settle_ms)]
        if args.ort_library:
            cmd += ["--ort-library", str(args.ort_library)]
        super().__init__(cmd, port, workdir / f"server-{name}.log")


class Photos:
    """`n` distinct JPEGs made from `sources` (cycled), each made when written (the sources are
    read into memory once, so writing is not slowed by reading)."""

    def __init__(self, sources: list[Path], n: int, tag: str):
        self.originals = [p.read_bytes() for p in sources[:n]]
        self.n, self.tag = n, tag

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for i in range(self.n):
            yield tagged_jpeg(self.originals[i % len(self.originals)], f"vq-watch {self.tag} {i}")


def metric(base: str, name: str) -> float | None:
    status, text = http("GET", base + "/metrics", timeout=10)
    if status != 200 or not isinstance(text, str):
        return None
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            try:
                return float(line.rsplit(" ", 1)[1])
            except ValueError:
                return None
    return None


def index_size(base: str) -> int:
    status, body = http("GET", base + "/health", timeout=10)
    return body["index"]["images"] if status == 200 else -1


def watch_jobs(base: str) -> list[dict]:
    status, body = http("GET", base + "/jobs", timeout=30)
    return [j for j in body.get("jobs", []) if j.get("kind") == "watch"] if status == 200 else []


def wait_watch_idle(base: str, timeout: float = 600) -> None:
    """Until the start's reconcile pass (and any other watch job) has finished."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if all(j["state"] in FINISHED for j in watch_jobs(base)) and metric(base, "vq_watch_last_reconcile_timestamp_seconds"):
            return
        time.sleep(0.5)
    raise RuntimeError("the watcher's start did not settle")


def write_files(folder: Path, contents: Photos) -> dict[str, float]:
    """Writes each file (open, write, close) as fast as one thread can: path -> time after its close."""
    folder.mkdir(parents=True)
    closed = {}
    for i, data in enumerate(contents):
        path = folder / f"{i:05d}.jpg"
        with open(path, "wb") as f:
            f.write(data)
        closed[str(path)] = time.time()
    return closed


def latency(binary: Path, args, workdir: Path, contents: Photos) -> dict:
    root = workdir / "root-latency"
    root.mkdir()
    server = Server(binary, args, root, workdir, "latency")
    try:
        ready_s = server.start()
        wait_watch_idle(server.base)
        quiet = wait_quiet(args.wait_quiet, exclude_pids=[server.proc.pid], check_competing=True)
        seen: dict[str, float] = {}
        stop = threading.Event()
        real_root = root.resolve()

        def poll():
            while not stop.is_set():
                status, body = http("GET", server.base + "/images?limit=1000&offset=0", timeout=60)
                now = time.time()
                if status == 200:
                    for image in body["images"]:
                        seen.setdefault(image["path"], now)
                time.sleep(args.poll)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        log(f"latency: dropping {len(contents)} files into the watched root")
        with CpuMonitor([server.proc.pid]) as mon:
            closed = write_files(root / "drop", contents)
            closed = {str(real_root / Path(p).relative_to(root)): t for p, t in closed.items()}
            deadline = time.monotonic() + args.timeout
            while len([p for p in closed if p in seen]) < len(closed):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {len([p for p in closed if p in seen])} of {len(closed)} files listed")
                time.sleep(0.5)
        stop.set()
        poller.join()
        waits = [seen[p] - t for p, t in closed.items()]
        first_close, last_seen = min(closed.values()), max(seen[p] for p in closed)
        write_s = max(closed.values()) - first_close
        jobs = [j for j in watch_jobs(server.base) if j["total"] > 0]
        out = {"files": len(closed), "ready_s": round(ready_s, 1), "quiet_wait": quiet, "write_s": round(write_s, 2),
               "p50_s": pct(waits, 50), "p90_s": pct(waits, 90), "p99_s": pct(waits, 99), "max_s": max(waits),
               "min_s": min(waits), "files_per_s": len(closed) / (last_seen - first_close),
               "server_cores": round(mon.pids_cores, 2), "foreign_share": round(mon.foreign_share, 3),
               "jobs": [{k: j[k] for k in ("total", "indexed", "skipped", "failed")} for j in jobs],
               "poll_s": args.poll}
        log(f"  p50 {out['p50_s']:.1f} s, p99 {out['p99_s']:.1f} s, {out['files_per_s']:.1f} files/s, "
            f"{len(jobs)} watch job(s), other processes {100 * mon.foreign_share:.0f}%")
        return out
    finally:
        server.stop()


def memory(binary: Path, args, workdir: Path, contents: Photos) -> dict:
    root = workdir / "root-burst"
    root.mkdir()
    server = Server(binary, args, root, workdir, "burst")
    try:
        server.start()
        wait_watch_idle(server.base)
        wait_quiet(args.wait_quiet, exclude_pids=[server.proc.pid], check_competing=True)
        pid = server.proc.pid
        before = process_stats(pid)
        samples = []
        log(f"memory: dropping {len(contents)} files into the watched root at once")
        t0 = time.monotonic()
        writer = threading.Thread(target=write_files, args=(root / "burst", contents), daemon=True)
        with CpuMonitor([pid]) as mon:
            writer.start()
            deadline = t0 + args.timeout
            while True:
                stats = process_stats(pid)
                indexed = index_size(server.base)
                pending = metric(server.base, "vq_watch_pending")
                samples.append({"t": round(time.monotonic() - t0, 2), "rss_mib": round(stats["rss_bytes"] / 2**20, 1),
                                "indexed": indexed, "pending": pending})
                if indexed >= len(contents):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {indexed} of {len(contents)} files indexed")
                time.sleep(0.5)
        writer.join()
        absorb_s = time.monotonic() - t0
        after = process_stats(pid)
        jobs = [j for j in watch_jobs(server.base) if j["total"] > 0]
        out = {"files": len(contents), "absorb_s": round(absorb_s, 1), "files_per_s": round(len(contents) / absorb_s, 1),
               "rss_before_mib": round(before["rss_bytes"] / 2**20, 1),
               "rss_peak_sampled_mib": max(s["rss_mib"] for s in samples),
               "rss_hwm_mib": round(after["hwm_bytes"] / 2**20, 1),
               "rss_end_mib": round(after["rss_bytes"] / 2**20, 1),
               "pending_peak": max((s["pending"] or 0) for s in samples),
               "jobs": len(jobs), "largest_job": max((j["total"] for j in jobs), default=0),
               "failed": sum(j["failed"] for j in jobs),
               "server_cores": round(mon.pids_cores, 2), "foreign_share": round(mon.foreign_share, 3),
               "samples": samples}
        log(f"  RSS {out['rss_before_mib']} MiB before, peak {out['rss_peak_sampled_mib']} MiB, end {out['rss_end_mib']} MiB; "
            f"{out['jobs']} watch job(s), {out['absorb_s']} s")
        return out
    finally:
        server.stop()


def render(r: dict) -> str:
    lat, mem = r["latency"], r["memory"]
    m = r["machine"]
    lines = [
        f"Measured {r['timestamp']} on {machine_line(m)}; git {r['git']}. Model: random-weight ViT-B/32 "
        f"({r['params']['precision']}), `serve --watch` with the default settle time "
        f"({r['params']['settle_ms'] or 1000} ms) unless stated, release build.",
        "",
        f"**Latency**: {lat['files']:,} distinct photos (COCO, each made distinct by a JPEG comment) written into a new "
        f"folder of the watched root by one thread ({fmt(lat['write_s'], 2)} s to write them all); a file counts as "
        f"searchable when `GET /images` (polled every {lat['poll_s']} s) first lists it.",
        "",
        "| files | p50 | p90 | p99 | max | files/s (first close → last listed) | watch jobs | server CPU | other processes |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {lat['files']:,} | {fmt(lat['p50_s'])} s | {fmt(lat['p90_s'])} s | {fmt(lat['p99_s'])} s | {fmt(lat['max_s'])} s "
        f"| {fmt(lat['files_per_s'])} | {len(lat['jobs'])} ({', '.join(str(j['total']) for j in lat['jobs'])} files) "
        f"| {fmt(lat['server_cores'], 2)} cores | {fmt(100 * lat['foreign_share'], 0)}% |",
        "",
        "The quickest file waited {} s: the settle time, the hand-over to a job, and its batch (the pipeline "
        "embeds a window of files together and commits them together, so a file is listed with its batch). "
        "With this many files at once the wait is the queue: files are embedded at the model's rate, so a "
        "file's wait grows with its place in the drop.".format(fmt(lat["min_s"])),
        "",
        f"**Memory** while absorbing a burst: a fresh server, {mem['files']:,} photos written at once.",
        "",
        "| files | RSS before | RSS peak (sampled every 0.5 s) | VmHWM | RSS at the end | peak pending paths | watch jobs (largest) | failed | time | files/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {mem['files']:,} | {fmt(mem['rss_before_mib'])} MiB | {fmt(mem['rss_peak_sampled_mib'])} MiB | {fmt(mem['rss_hwm_mib'])} MiB "
        f"| {fmt(mem['rss_end_mib'])} MiB | {mem['pending_peak']:,.0f} | {mem['jobs']} ({mem['largest_job']:,}) | {mem['failed']} "
        f"| {fmt(mem['absorb_s'])} s | {fmt(mem['files_per_s'])} |",
        "",
    ]
    lines += reproduce_footer(r["command"], r["json_name"])
    return "\n".join(lines)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--drop", type=int, default=1000, help="files dropped at once for the latency (default 1000)")
    ap.add_argument("--burst", type=int, default=10000, help="files written at once for the memory (default 10000)")
    ap.add_argument("--poll", type=float, default=0.25, help="seconds between listings of the index (default 0.25)")
    ap.add_argument("--settle-ms", type=int, help="serve --watch-settle-ms (default: the server's default)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds each phase may take (default 3600)")
    add_server_arguments(ap, images_help="photos the files are made from")
    ap.add_argument("--wait-quiet", type=float, default=300,
                    help="wait up to this many seconds for other benchmarks/builds before measuring (default 300)")
    add_output_arguments(ap)
    args = ap.parse_args(argv)
    args.model = args.model.resolve()
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.from_json:
        return rerender_saved(args.from_json, render, SECTION, HEADING, write=not args.no_write)
    command = command_line("bench_watch.py", argv)
    ckpt_state = ensure_checkpoint(args.model, args.config)
    binary = args.binary.resolve() if args.binary else build_binary(no_build=False)
    sources = jpegs(args.images) + (jpegs(MORE_PHOTOS) if MORE_PHOTOS.is_dir() else [])
    with tempfile.TemporaryDirectory(prefix="vq-bench-watch-") as tmp:
        workdir = Path(tmp)
        results = {"latency": latency(binary, args, workdir, Photos(sources, args.drop, "drop")),
                   "memory": memory(binary, args, workdir, Photos(sources, args.burst, "burst"))}
    results["sources"] = len(sources)
    json_name = stamp_results(results, "watch", command, args, binary, ckpt_state)
    publish(results, json_name, render(results), SECTION, HEADING, markdown=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
