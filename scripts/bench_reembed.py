#!/usr/bin/env python3
"""Re-embed benchmark: how fast a running index is re-embedded with another model
(`serve --model NEW --reembed`), and what the build does to search latency (the goal: searches
during the build stay within 2x their idle p50).

    python3 scripts/bench_reembed.py                                   # 1,000 photos, CLIP -> SigLIP
    python3 scripts/bench_reembed.py --model tests/fixtures/tiny-clip --target tests/fixtures/tiny-siglip \\
        --photos 100 --search-seconds 5 --wait-quiet 0 --no-write     # a short trial
    python3 scripts/bench_reembed.py --from-json bench-results/reembed-<ts>.json   # re-render only

Models: the random-weight ViT-B/32 CLIP of the other server benchmarks (--model, .cache/bench/vit-b32)
is re-embedded with the random-weight SigLIP B/16-224 of `bench_embed.py --family siglip` (--target,
.cache/bench/siglip-b16-224; built by that script's own function, reference Python, when missing).

1. Index: a server with --model on a fresh data dir indexes --photos (1,000) distinct photos (the
   shared COCO photos cycled, each copy made distinct by a JPEG comment) by a directory job.
2. Idle: one client sends sequential text searches (COCO captions, top 10) for --search-seconds
   (20): p50, p99, searches/s. The answer (its scores) to every query asked is kept.
3. Re-embed: the server is stopped (SIGTERM) and started on the same data dir with --target and
   --reembed. From its /ready the same client searches again, cycling through the queries of the
   idle phase, until `GET /reindex` (polled every --poll s) names a new current generation, then
   --after-seconds (3) more. Each answer must be HTTP 200 with results; it was answered by the old
   model when its scores equal the idle answer to the same query, else by the new one. Latency
   during the build = the old model's answers from /ready on (none may come after the switch, and
   no new-model answer before it). Re-embed rate = the job's total / (finished_at - started_at);
   also the wall time from /ready to the switch.
4. Baseline: a fresh server with --target indexes the same photos by a directory job: the
   target model's plain ingest rate, the same formula.

Writes bench-results/reembed-<UTC>.json and the `bench:reembed` section of BENCHMARKS.md (unless
--no-write). Standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    add_output_arguments, command_line,
    DEFAULT_CACHE, REPO, SCRIPTS, CpuMonitor, ServerProcess, add_server_arguments, build_binary, ensure_checkpoint,
    fmt, free_port, http, jpegs, load_queries, log, machine_line, pct, process_stats, publish, reference_python,
    reproduce_footer, rerender_saved, run_directory_job, stamp_results, tagged_jpeg, wait_quiet,
)

SECTION = "reembed"  # <!-- bench:reembed:start/end --> in BENCHMARKS.md
HEADING = "## Re-embedding with another model"
DEFAULT_TARGET = DEFAULT_CACHE / "siglip-b16-224"
TARGET_FILES = ["config.json", "tokenizer.json", "preprocessor_config.json", "onnx/vision_model.onnx",
                "onnx/text_model.onnx", "onnx/vision_model_quantized.onnx", "onnx/text_model_quantized.onnx"]


class Server(ServerProcess):
    def __init__(self, binary: Path, args, model: Path, data_dir: Path, root: Path, log_path: Path, reembed=False):
        port = free_port()
        cmd = [str(binary), "serve", "--model", str(model), "--precision", args.precision, "--data-dir", str(data_dir),
               "--image-root", str(root), "--host", "127.0.0.1", "--port", str(port), "--threads", str(args.server_threads)]
        cmd += (["--reembed"] if reembed else []) + (["--ort-library", str(args.ort_library)] if args.ort_library else [])
        super().__init__(cmd, port, log_path)


def ensure_target(target: Path) -> str:
    """The SigLIP B/16-224 of bench_embed.py --family siglip, built by its ensure_checkpoint when
    missing or made by another scripts/export_clip_onnx.py; another --target is used as it is."""
    complete = all((target / f).is_file() for f in TARGET_FILES)
    stamp = target / "bench-stamp.json"
    current = not stamp.is_file() or json.loads(stamp.read_text()).get("exporter_sha256") == \
        hashlib.sha256((SCRIPTS / "export_clip_onnx.py").read_bytes()).hexdigest()
    if complete and (current or target != DEFAULT_TARGET):
        log(f"target: reusing {target}")
        return "reused"
    if target != DEFAULT_TARGET:
        sys.exit(f"{target} is not a model directory (missing some of {TARGET_FILES})")
    python = reference_python()
    log(f"target: building the random-weight SigLIP B/16-224 of `scripts/bench_embed.py --family siglip` into {target} "
        f"(its ensure_checkpoint, with {python})")
    code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); import bench_embed as b; "
            "b.ensure_checkpoint(Path(sys.argv[2]), b.DEFAULT_CONFIG, b.FAMILIES['siglip'])")
    subprocess.run([str(python), "-c", code, str(SCRIPTS), str(target)], cwd=REPO, check=True, stdout=sys.stderr)
    return "built"


def write_photos(folder: Path, sources: list[Path], n: int) -> None:
    folder.mkdir(parents=True)
    originals = [p.read_bytes() for p in sources[:n]]
    for i in range(n):
        (folder / f"{i:05d}.jpg").write_bytes(tagged_jpeg(originals[i % len(originals)], f"vq-reembed {i}"))


def job_rate(job: dict) -> float:
    """Images per second of a finished job: total / (finished_at - started_at)."""
    s = (dt.datetime.fromisoformat(job["finished_at"]) - dt.datetime.fromisoformat(job["started_at"])).total_seconds()
    return job["total"] / s if s > 0 else float("nan")


def search(base: str, query: str) -> dict:
    """One text search: start/end (monotonic), latency, whether it answered, its scores."""
    t0 = time.monotonic()
    try:
        status, body = http("POST", base + "/search", {"query": query, "top_k": 10}, timeout=120)
    except OSError as e:  # a reset or refused connection counts as a failed search
        status, body = f"{type(e).__name__}: {e}", None
    t1 = time.monotonic()
    ok = status == 200 and isinstance(body, dict) and bool(body.get("results"))
    return {"t0": t0, "t1": t1, "s": t1 - t0, "ok": ok, "q": query, "status": status,
            "scores": tuple(round(r["score"], 4) for r in body["results"]) if ok else None}


def summary(runs: list[dict]) -> dict:
    lat = [r["s"] for r in runs]
    span = runs[-1]["t1"] - runs[0]["t0"] if runs else 0
    return {"searches": len(runs), "failed": sum(not r["ok"] for r in runs), "p50_ms": 1e3 * pct(lat, 50) if lat else None,
            "p99_ms": 1e3 * pct(lat, 99) if lat else None, "per_s": len(runs) / span if span > 0 else None}


def index_and_idle(binary, args, data: Path, photos: Path, workdir: Path, queries: list[str]) -> tuple[dict, dict]:
    server = Server(binary, args, args.model, data, photos, workdir / "server-index.log")
    try:
        server.start()
        wait_quiet(args.wait_quiet, exclude_pids=[server.proc.pid], check_competing=True)
        log(f"indexing {args.photos} photos with {args.model.name}")
        job = run_directory_job(server.base, photos, timeout=args.timeout)
        ingest = {k: job[k] for k in ("total", "indexed", "skipped", "failed")} | {"images_per_s": job_rate(job)}
        log(f"  {ingest['images_per_s']:.1f} images/s; idle searches for {args.search_seconds} s")
        wait_quiet(args.wait_quiet, exclude_pids=[server.proc.pid], check_competing=True)
        for q in queries[:2]:
            search(server.base, q)  # warm-up
        runs = []
        with CpuMonitor([server.proc.pid]) as mon:
            end = time.monotonic() + args.search_seconds
            while time.monotonic() < end:
                runs.append(search(server.base, queries[len(runs) % len(queries)]))
        idle = summary(runs) | {"foreign_share": round(mon.foreign_share, 3),
                                "answers": {r["q"]: r["scores"] for r in runs if r["ok"]}}
        log(f"  idle: p50 {idle['p50_ms']:.1f} ms, p99 {idle['p99_ms']:.1f} ms, {idle['per_s']:.1f} searches/s")
        return ingest, idle
    finally:
        server.stop()


def during_reembed(binary, args, data: Path, photos: Path, workdir: Path, answers: dict) -> dict:
    server = Server(binary, args, args.target, data, photos, workdir / "server-reembed.log", reembed=True)
    wait_quiet(args.wait_quiet, check_competing=True)
    try:
        ready_s = server.start()
        ready = time.monotonic()
        status, before = http("GET", server.base + "/reindex")
        if status != 200 or not before.get("reembed"):
            raise RuntimeError(f"no re-embed after the restart: {status} {before}; log:\n{server.log_tail()}")
        old_name = before["current"]["name"]
        polls = []  # (request sent, answer read, current generation)
        stop = threading.Event()

        def poll():
            while not stop.is_set():
                r0 = time.monotonic()
                try:
                    status, body = http("GET", server.base + "/reindex", timeout=60)
                except OSError:
                    status = None
                if status == 200:
                    polls.append((r0, time.monotonic(), body["current"]["name"]))
                time.sleep(args.poll)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        queries = list(answers)
        runs, switch_seen = [], None

        def one_search():
            if server.proc.poll() is not None or time.monotonic() > ready + args.timeout:
                raise RuntimeError(f"no switch after {time.monotonic() - ready:.0f} s; log:\n{server.log_tail()}")
            runs.append(search(server.base, queries[len(runs) % len(queries)]))

        log(f"re-embedding with {args.target.name} (job {before['reembed']['job_id']}); searching until the switch")
        with CpuMonitor([server.proc.pid]) as mon:
            while switch_seen is None:
                one_search()
                switch_seen = next((t1 for _, t1, name in polls if name != old_name), None)
        while time.monotonic() < switch_seen + args.after_seconds:
            one_search()
        stop.set()
        poller.join()
        hwm = process_stats(server.proc.pid)["hwm_bytes"]
        status, listing = http("GET", server.base + "/jobs", timeout=30)
        job = next(j for j in listing["jobs"] if j["kind"] == "reembed")
        _, after = http("GET", server.base + "/reindex")
        for r in runs:
            r["model"] = "old" if r["ok"] and r["scores"] == answers[r["q"]] else "new" if r["ok"] else None
        # During the build: what the old model answered (and failures) before the switch was seen;
        # new-model answers begun in the last poll interval before it are counted after the switch.
        build = [r for r in runs if r["t0"] < switch_seen and r["model"] != "new"]
        after_runs = [r for r in runs if r["t0"] >= switch_seen or r["model"] == "new"]
        last_old = max((r0 for r0, _, name in polls if name == old_name), default=ready)
        first_new = min(t1 for _, t1, name in polls if name != old_name)

        def by_model(rs):
            return {"old": sum(r["model"] == "old" for r in rs), "new": sum(r["model"] == "new" for r in rs)}

        out = {"ready_s": round(ready_s, 1), "ready_to_switch_s": round(switch_seen - ready, 1), "old_generation": old_name,
               "new_generation": after["current"]["name"], "previous": after.get("previous"),
               "build": summary(build) | by_model(build), "after": summary(after_runs) | by_model(after_runs),
               "new_before_seen": sum(r["model"] == "new" and r["t0"] < switch_seen for r in runs),
               "new_before_switch": sum(r["model"] == "new" and r["t1"] < last_old for r in runs),
               "old_after_switch": sum(r["model"] == "old" and r["t0"] > first_new for r in runs),
               "job": {k: job[k] for k in ("id", "state", "total", "done", "indexed", "skipped", "failed", "rate",
                                           "started_at", "finished_at", "error")},
               "images_per_s": job_rate(job) if job["state"] == "completed" else None,
               "hwm_mib": round(hwm / 2**20, 1), "poll_s": args.poll, "foreign_share": round(mon.foreign_share, 3),
               "server_cores": round(mon.pids_cores, 2), "latencies_ms": [round(1e3 * r["s"], 2) for r in runs],
               "errors": [r["status"] for r in runs if not r["ok"]][:20]}
        b = out["build"]
        log(f"  build: p50 {fmt(b['p50_ms'])} ms, p99 {fmt(b['p99_ms'])} ms over {b['searches']} searches "
            f"({b['old']} old model, {b['new']} new, {b['failed']} failed); job {job['state']}, "
            f"{fmt(out['images_per_s'])} images/s; switch {out['ready_to_switch_s']} s after /ready")
        return out
    finally:
        server.stop()


def baseline(binary, args, photos: Path, workdir: Path) -> dict:
    server = Server(binary, args, args.target, workdir / "data-baseline", photos, workdir / "server-baseline.log")
    try:
        server.start()
        wait_quiet(args.wait_quiet, exclude_pids=[server.proc.pid], check_competing=True)
        log(f"baseline: indexing the photos with {args.target.name} on a fresh server")
        with CpuMonitor([server.proc.pid]) as mon:
            job = run_directory_job(server.base, photos, timeout=args.timeout)
        out = {k: job[k] for k in ("total", "indexed", "skipped", "failed")} | {
            "images_per_s": job_rate(job), "wall_s": round(job["wall_s"], 1), "foreign_share": round(mon.foreign_share, 3)}
        log(f"  {out['images_per_s']:.1f} images/s")
        return out
    finally:
        server.stop()


def render(r: dict) -> str:
    idle, re, base = r["idle"], r["reembed"], r["baseline"]
    b, a = re["build"], re["after"]
    ratio = b["p50_ms"] / idle["p50_ms"] if b["p50_ms"] and idle["p50_ms"] else None
    speed = re["images_per_s"] / base["images_per_s"] if re["images_per_s"] and base["images_per_s"] else None
    p = r["params"]
    old, new = Path(p["model"]).name, Path(p["target"]).name
    threads = f"`--threads {p['server_threads']}` ({'all cores; ' if not p['server_threads'] else ''}"
    lines = [
        f"Measured {r['timestamp']} on {machine_line(r['machine'])}; git {r['git']}. Models: `{old}` (current) "
        f"re-embedded with `{new}` ({p['precision']}), release build, {threads}the re-embed's model runs with one "
        f"thread less). {r['photos']:,} distinct photos (COCO, each made distinct by a JPEG comment), indexed by a "
        "directory job; then the server is restarted with the new model and `--reembed`.",
        "",
        f"**Search latency**, one client, sequential text searches (top 10). An answer is the old model's when its "
        f"scores equal the idle answer to the same query, else the new model's. The switch is when `GET /reindex` "
        f"(polled every {re['poll_s']} s) first names `{re['new_generation']}`; during the re-embed = the old model's "
        "answers from the restart's `/ready` on.",
        "",
        "| phase | searches | failed | p50 | p99 | searches/s |",
        "|---|---|---|---|---|---|",
    ]
    for label, s in ((f"idle (`{old}`, before the restart)", idle), (f"during the re-embed (`{old}`)", b),
                     (f"after the switch (`{new}`, {p['after_seconds']:g} s)", a)):
        lines.append(f"| {label} | {s['searches']:,} | {s['failed']} | {fmt(s['p50_ms'])} ms | {fmt(s['p99_ms'])} ms "
                     f"| {fmt(s['per_s'])} |")
    lines += [
        "",
        f"During/idle p50: **{fmt(ratio, 2)}×** (goal ≤ 2×: **{'met' if ratio and ratio <= 2 else 'not met'}**). "
        f"From `/ready` on, {b['old'] + a['old']:,} searches were answered by the old model and {b['new'] + a['new']:,} "
        f"by the new one ({re['new_before_seen']} of them begun in the poll interval before the switch was seen), "
        f"{b['failed'] + a['failed']} failed; new-model answers before a `/reindex` that still named "
        f"`{re['old_generation']}`: {re['new_before_switch']}, old-model answers after one that named "
        f"`{re['new_generation']}`: {re['old_after_switch']} (both should be 0).",
        "",
        "**Throughput**: the re-embed job's images / (finished − started); the baseline is a fresh server with the "
        "new model indexing the same photos by a directory job (same formula).",
        "",
        "| photos | re-embed | /ready → switch | ingest with the new model | re-embed / ingest | re-embed failed "
        "| server VmHWM (two models) | other processes |",
        "|---|---|---|---|---|---|---|---|",
        f"| {r['photos']:,} | {fmt(re['images_per_s'])} images/s | {fmt(re['ready_to_switch_s'])} s "
        f"| {fmt(base['images_per_s'])} images/s | {fmt(speed, 2)}× | {re['job']['failed']} | {fmt(re['hwm_mib'])} MiB "
        f"| {fmt(100 * re['foreign_share'], 0)}% |",
        "",
    ]
    lines += reproduce_footer(r["command"], r["json_name"])
    return "\n".join(lines)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", type=Path, default=DEFAULT_TARGET,
                    help="model to re-embed with (default: the random SigLIP B/16-224 of bench_embed.py)")
    ap.add_argument("--photos", type=int, default=1000, help="distinct photos indexed (default 1000)")
    ap.add_argument("--search-seconds", type=float, default=20, help="idle search loop length (default 20)")
    ap.add_argument("--after-seconds", type=float, default=3, help="searches after the switch (default 3)")
    ap.add_argument("--poll", type=float, default=0.25, help="seconds between GET /reindex (default 0.25)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds each job may take (default 3600)")
    add_server_arguments(ap, images_help="photos the indexed files are made from")
    ap.add_argument("--wait-quiet", type=float, default=300,
                    help="wait up to this many seconds for other benchmarks/builds before measuring (default 300)")
    add_output_arguments(ap)
    args = ap.parse_args(argv)
    args.model, args.target = args.model.resolve(), args.target.resolve()
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.from_json:
        return rerender_saved(args.from_json, render, SECTION, HEADING, write=not args.no_write)
    command = command_line("bench_reembed.py", argv)
    ckpt_state = f"{ensure_checkpoint(args.model, args.config)}; target {ensure_target(args.target)}"
    binary = args.binary.resolve() if args.binary else build_binary(no_build=False)
    queries = load_queries()
    with tempfile.TemporaryDirectory(prefix="vq-bench-reembed-") as tmp:
        workdir = Path(tmp)
        photos = workdir / "photos"
        write_photos(photos, jpegs(args.images), args.photos)
        ingest, idle = index_and_idle(binary, args, workdir / "data", photos, workdir, queries)
        answers = idle.pop("answers")
        if not answers:
            sys.exit("no idle search was answered")
        results = {"photos": args.photos, "ingest_old": ingest, "idle": idle,
                   "reembed": during_reembed(binary, args, workdir / "data", photos, workdir, answers),
                   "baseline": baseline(binary, args, photos, workdir)}
    json_name = stamp_results(results, "reembed", command, args, binary, ckpt_state)
    publish(results, json_name, render(results), SECTION, HEADING, markdown=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
