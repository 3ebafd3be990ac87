#!/usr/bin/env python3
"""Serving benchmark: text-query latency through the real HTTP server under concurrent load.

One command does everything (standard library only; needs `wrk`, Debian package `wrk`):

    python3 scripts/bench_serving.py                      # fp32 and quantized, 3 rounds of 15 s per level
    python3 scripts/bench_serving.py --no-quantized --rounds 1 --seconds 5 --wait-quiet 0   # quick look
    python3 scripts/bench_serving.py --from-json bench-results/serving-<ts>.json  # re-render only

1. builds the release binary (`cargo build --release --locked`) and, if missing, the
   random-weight ViT-B/32 CLIP checkpoint in .cache/bench/vit-b32/ (scripts/export_clip_onnx.py
   run by the reference Python: /root/vqref, .cache/bench/venv, or a new venv made from
   scripts/requirements-reference.txt). Speed does not depend on the weight values;
2. starts one `target/release/visionquery serve` per precision (fp32, and quantized unless
   --no-quantized) on free loopback ports with fresh data directories, waits for `GET /ready`,
   and indexes the shared COCO photos into each with a `POST /ingest/directory` job (the photos
   are read in place, never copied). An idle server uses no CPU, so both stay up;
3. runs `wrk --latency` at 1, 8 and 32 connections against each server (a discarded warm-up run
   first, then a fixed duration), repeated --rounds times with the precisions interleaved so slow
   drift of a shared machine hits both alike; each level reports its median-throughput round.
   A generated Lua script POSTs `/search {"query": <caption>, "top_k": 10}` bodies rotating
   through the real COCO captions (each wrk thread starts at a different caption) and counts
   response statuses;
4. reads the server's `/metrics` before and after every run: the average text batch the dynamic
   batcher formed (`vq_embed_batch_size{modality="text"}` sum / count), the mean model time per
   text batch, the batch-size histogram and `/search` responses by status; records the CPU used
   by the server, by wrk and by other processes during every run;
5. stops the servers (always), prints a table, writes bench-results/serving-<UTC timestamp>.json
   and rewrites the section between the `bench:serving` markers in BENCHMARKS.md.

Before building and before every measured run the script waits (up to --wait-quiet seconds) until
no other benchmark or cargo build is running and the machine is idle, and it measures a level again
(up to --retries times) when other processes used more than --max-other of the CPUs during the run.
wrk itself runs on the same cores as the server; its CPU use is recorded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    DEFAULT_CACHE, DEFAULT_CAPTIONS, DEFAULT_CONFIG, DEFAULT_IMAGES, REPO, CpuMonitor, build_binary, ensure_checkpoint,
    fmt, git_state, load_queries, log, machine_info, machine_line, run_directory_job, update_markdown, wait_quiet,
    ServerProcess, free_port, http, run_wrk, write_wrk_search_lua, wrk_version,
)

SECTION = "serving"  # <!-- bench:serving:start/end --> in BENCHMARKS.md
HEADING = "## Query latency under load"


# ---------------------------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------------------------


class Server(ServerProcess):
    def __init__(self, binary: Path, model: Path, precision: str, images: Path, threads: int, max_batch: int | None,
                 workdir: Path):
        self.precision = precision
        self.log_mark = 0
        self.data_dir = workdir / f"data-{precision}"
        port = free_port()
        cmd = [str(binary), "serve", "--model", str(model), "--data-dir", str(self.data_dir),
               "--image-root", str(images), "--host", "127.0.0.1", "--port", str(port),
               "--precision", precision, "--threads", str(threads)]
        if max_batch:
            cmd += ["--max-batch", str(max_batch)]
        super().__init__(cmd, port, workdir / f"server-{precision}.log")

    def stop(self) -> int | None:
        return super().stop(grace=15)

    def metrics(self) -> dict:
        status, text = http("GET", self.base + "/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return parse_prometheus(text)

    def index(self, images: Path) -> dict:
        return run_directory_job(self.base, images)


def parse_prometheus(text: str) -> dict:
    """{(name, frozenset(labels)): value} for every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([A-Za-z_:][A-Za-z0-9_:]*)(\{(.*)\})?\s+(\S+)', line)
        if not m:
            continue
        labels = frozenset(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        try:
            out[(m.group(1), labels)] = float(m.group(4))
        except ValueError:
            pass
    return out


def metric_sum(metrics: dict, name: str, **want) -> float:
    return sum(v for (n, labels), v in metrics.items()
               if n == name and all((k, str(w)) in labels for k, w in want.items()))


def metric_deltas(before: dict, after: dict) -> dict:
    def d(name, **kw):
        return metric_sum(after, name, **kw) - metric_sum(before, name, **kw)

    n_batches = d("vq_embed_batch_size_count", modality="text")
    texts = d("vq_embed_batch_size_sum", modality="text")
    model_s = d("vq_embed_duration_seconds_sum", modality="text")
    statuses = {}
    for (name, labels), v in after.items():
        if name == "vq_http_requests_total" and ("route", "/search") in labels:
            code = dict(labels).get("status", "?")
            delta = v - metric_sum(before, name, route="/search", status=code)
            if delta:
                statuses[code] = int(delta)
    buckets = {}
    for (name, labels), v in after.items():
        if name == "vq_embed_batch_size_bucket" and ("modality", "text") in labels:
            le = dict(labels).get("le")
            buckets[le] = int(v - metric_sum(before, name, modality="text", le=le))
    return {
        "text_batches": int(n_batches),
        "texts_embedded": int(texts),
        "avg_text_batch": texts / n_batches if n_batches else None,
        "model_ms_per_text_batch": 1e3 * model_s / n_batches if n_batches else None,
        "model_busy_s": model_s,
        "search_status_counts": statuses,
        "text_batch_size_buckets": dict(sorted(buckets.items(), key=lambda kv: float("inf") if kv[0] == "+Inf" else float(kv[0]))),
    }


# ---------------------------------------------------------------------------------------------
# wrk
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# One precision
# ---------------------------------------------------------------------------------------------


def prepare(server: "Server", args, queries: list[str]) -> dict:
    """Starts a server, indexes the photos and checks one query; returns the pass record."""
    out = {"precision": server.precision, "server_command": " ".join(server.cmd), "levels": []}
    out["ready_s"] = server.start()
    log(f"  ready after {out['ready_s']:.1f} s on port {server.port}; indexing {args.images}")
    job = server.index(args.images)
    out["index"] = {k: job[k] for k in ("total", "indexed", "skipped", "failed", "wall_s")}
    log(f"  indexed {job['indexed']}/{job['total']} photos in {job['wall_s']:.1f} s ({job['failed']} failed)")
    status, ready = http("GET", server.base + "/ready")
    out["index"]["images_in_index"] = ready["index"]["images"] if isinstance(ready, dict) else None
    # Sanity: one query answers top_k results from the index.
    status, body = http("POST", server.base + "/search", {"query": queries[0], "top_k": args.top_k})
    if status != 200 or len(body.get("results", [])) != min(args.top_k, out["index"]["images_in_index"] or 0):
        raise RuntimeError(f"sanity search failed: {status} {str(body)[:300]}")
    server.log_mark = len(server.log_lines())
    return out


def measure_level(server: "Server", c: int, args, lua: Path) -> dict:
    """One wrk run at `c` connections (after a discarded warm-up), re-measured while other
    processes used more than --max-other of the CPUs. Idle servers of other precisions are not
    excluded from "other" CPU (they use none when idle)."""
    t = min(c, args.wrk_threads)
    discarded = []
    for attempt in range(args.retries + 1):
        q = wait_quiet(args.wait_quiet, exclude_pids=[server.proc.pid], check_competing=True)
        if args.warmup > 0:
            run_wrk(server.base, lua, c, t, args.warmup, args.wrk_timeout)
        before = server.metrics()
        with CpuMonitor([server.proc.pid]) as mon:
            res = run_wrk(server.base, lua, c, t, args.seconds, args.wrk_timeout)
        after = server.metrics()
        if mon.foreign_share <= args.max_other or attempt == args.retries:
            break
        log(f"  c={c}: other processes used {100 * mon.foreign_share:.0f}% of the CPUs during the run "
            f"({res['rps']:.1f} req/s); discarding it and measuring again")
        discarded.append({"foreign_share": mon.foreign_share, "rps": res["rps"], "latency_us": res["latency_us"]})
    level = {"connections": c, "wrk_threads": t, "seconds": args.seconds, "wrk": res,
             "server": metric_deltas(before, after),
             "queue_depth_after": metric_sum(after, "vq_embed_queue_depth", modality="text"),
             "cpu": {"server_cores": mon.pids_cores, "wrk_cores": mon.children_cores,
                     "foreign_share": mon.foreign_share, "logical_cpus": mon.cpus},
             "quiet_wait": q, "discarded_attempts": discarded}
    lat = res["latency_us"]
    log(f"  {server.precision:>9} c={c:>3} t={t}: {res['rps']:7.1f} req/s  p50 {lat['p50'] / 1e3:7.1f} ms"
        f"  p90 {lat['p90'] / 1e3:7.1f}  p99 {lat['p99'] / 1e3:7.1f}  max {lat['max'] / 1e3:7.1f}"
        f"  non-200 {res['requests'] - res['status']['200']}"
        f"  socket errors {sum(v for k, v in res['errors'].items() if k != 'status')}"
        f"  avg text batch {fmt(level['server']['avg_text_batch'], 2)}"
        f"  server {mon.pids_cores:.2f} cores, wrk {mon.children_cores:.2f}, other {100 * mon.foreign_share:.0f}%")
    return level


def median_round(rounds: list[dict]) -> dict:
    """The round with the median throughput (the lower middle one for an even count), with a
    summary of all rounds attached."""
    order = sorted(rounds, key=lambda l: l["wrk"]["rps"])
    chosen = dict(order[(len(order) - 1) // 2])
    chosen["rounds"] = [{"rps": l["wrk"]["rps"], "p50_us": l["wrk"]["latency_us"]["p50"],
                         "p99_us": l["wrk"]["latency_us"]["p99"], "max_us": l["wrk"]["latency_us"]["max"],
                         "avg_text_batch": l["server"]["avg_text_batch"], "foreign_share": l["cpu"]["foreign_share"],
                         "non_200": l["wrk"]["requests"] - l["wrk"]["status"]["200"]} for l in rounds]
    chosen["all_rounds"] = rounds
    return chosen


def run_all(precisions: list[str], args, binary: Path, lua: Path, workdir: Path, queries: list[str]) -> list[dict]:
    """All servers up at once (an idle one uses no CPU); rounds interleave the precisions so slow
    drift of the machine hits them alike; each level reports its median round."""
    servers = [Server(binary, args.model, pr, args.images, args.server_threads, args.max_batch, workdir)
               for pr in precisions]
    passes = []
    try:
        for server in servers:
            log(f"== {server.precision}: start and index")
            passes.append(prepare(server, args, queries))
        raw = {(sv.precision, c): [] for sv in servers for c in args.connections}
        for r in range(args.rounds):
            log(f"== round {r + 1}/{args.rounds}")
            for server in servers:
                for c in args.connections:
                    raw[(server.precision, c)].append(measure_level(server, c, args, lua))
        for server, out in zip(servers, passes):
            out["levels"] = [median_round(raw[(server.precision, c)]) for c in args.connections]
            status, _ = http("GET", server.base + "/ready")
            out["ready_after_load"] = status
            lines = server.log_lines()[server.log_mark:]
            noisy = [l for l in lines if re.search(r"\b(WARN|ERROR)\b", l)]
            out["server_log"] = {"lines_during_load": len(lines), "warn_or_error": len(noisy), "examples": noisy[:10]}
    finally:
        for server, out in zip(servers, passes + [{}] * (len(servers) - len(passes))):
            out["exit_code"] = server.stop()
    return passes


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def ms(us) -> str:
    return fmt(us / 1e3)


def per_query_model_ms(level: dict):
    s = level["server"]
    if not s["avg_text_batch"] or s["model_ms_per_text_batch"] is None:
        return None
    return s["model_ms_per_text_batch"] / s["avg_text_batch"]


def all_rounds(level: dict) -> str:
    rounds = level.get("rounds") or [{"rps": level["wrk"]["rps"]}]
    return ", ".join(fmt(r["rps"]) for r in sorted(rounds, key=lambda r: r["rps"]))


def table(results: dict) -> list[str]:
    rows = ["| precision | clients (wrk -c / -t) | req/s | req/s, all rounds | p50 ms | p90 ms | p99 ms | max ms "
            "| non-200 / socket errors | avg text batch | model ms per batch | model ms per query | other CPU |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in results["passes"]:
        for lv in p["levels"]:
            w, s, cpu = lv["wrk"], lv["server"], lv["cpu"]
            lat = w["latency_us"]
            non200 = w["requests"] - w["status"]["200"]
            sock = sum(v for k, v in w["errors"].items() if k != "status")
            rows.append(f"| {p['precision']} | {lv['connections']} ({lv['connections']} / {lv['wrk_threads']}) | "
                        f"{fmt(w['rps'])} | {all_rounds(lv)} | {ms(lat['p50'])} | {ms(lat['p90'])} | {ms(lat['p99'])} | {ms(lat['max'])} | "
                        f"{non200} / {sock} | {fmt(s['avg_text_batch'], 2)} | {fmt(s['model_ms_per_text_batch'])} | "
                        f"{fmt(per_query_model_ms(lv), 2)} | {100 * cpu['foreign_share']:.0f}% |")
    return rows


def batch_distribution(buckets: dict) -> list[tuple[str, int]]:
    """Cumulative Prometheus buckets (le -> count) as (range label, count) pairs."""
    items = sorted(((float("inf") if k == "+Inf" else float(k)), v) for k, v in buckets.items())
    out, prev_le, prev_n = [], 0.0, 0
    for le, n in items:
        lo = int(prev_le) + 1
        if le == float("inf"):
            label = f">{int(prev_le)}"
        elif lo >= int(le):
            label = f"{int(le)}"
        else:
            label = f"{lo}–{int(le)}"
        out.append((label, n - prev_n))
        prev_le, prev_n = le, n
    return out


def round_ratios(num: dict, den: dict) -> list[float]:
    """Throughput ratios of two levels measured in the same rounds (close in time), round by round."""
    a = [r["wrk"]["rps"] for r in num.get("all_rounds", [num])]
    b = [r["wrk"]["rps"] for r in den.get("all_rounds", [den])]
    if len(a) != len(b):
        return [num["wrk"]["rps"] / den["wrk"]["rps"]] if den["wrk"]["rps"] else []
    return [x / y for x, y in zip(a, b) if y]


def ratio_text(ratios: list[float]) -> str:
    if not ratios:
        return "—"
    if len(ratios) == 1:
        return f"{ratios[0]:.2f}×"
    lo, hi = min(ratios), max(ratios)
    return f"{sorted(ratios)[(len(ratios) - 1) // 2]:.2f}× (rounds: {lo:.2f}–{hi:.2f}×)"


def interpret(results: dict) -> list[str]:
    out = []
    for p in results["passes"]:
        lv = {l["connections"]: l for l in p["levels"]}
        if len(lv) < 2:
            continue
        lo, hi = min(lv), max(lv)
        a, b = lv[lo], lv[hi]
        best_c = max(lv, key=lambda c: lv[c]["wrk"]["rps"])
        ra, rb, rbest = a["wrk"]["rps"], b["wrk"]["rps"], lv[best_c]["wrk"]["rps"]
        ba, bb = a["server"]["avg_text_batch"] or 1, b["server"]["avg_text_batch"] or 1
        qa, qb = per_query_model_ms(a), per_query_model_ms(b)
        model_hi = b["server"]["model_ms_per_text_batch"] or 0
        busy_lo = a["server"]["model_busy_s"] / a["seconds"] if a["seconds"] else 0
        busy_hi = b["server"]["model_busy_s"] / b["seconds"] if b["seconds"] else 0
        mean_hi = b["wrk"]["latency_us"]["mean"] / 1e3
        little = 1e3 * hi / rb if rb else 0
        peak = "" if best_c in (lo, hi) else f"; the best median is {fmt(rbest)} req/s at {best_c} clients"
        text = (f"**{p['precision']}**: from {lo} to {hi} concurrent clients throughput goes {fmt(ra)} → {fmt(rb)} "
                f"req/s; measured in the same round, {hi} clients get {ratio_text(round_ratios(b, a))} the "
                f"throughput of {lo}{peak}. ")
        if qa and qb:
            pairs = list(zip(a.get("all_rounds", [a]), b.get("all_rounds", [b])))
            changes = sorted(per_query_model_ms(y) / per_query_model_ms(x) - 1 for x, y in pairs
                             if per_query_model_ms(x) and per_query_model_ms(y))
            if len(changes) != len(pairs) or not changes:
                changes = [qb / qa - 1]
            med = changes[(len(changes) - 1) // 2]
            saving = -med

            def pc(x):
                return f"{'−' if x < 0 else '+'}{abs(100 * x):.0f}%"

            spread = (f" (median of the same-round comparisons; range {pc(changes[0])} to {pc(changes[-1])})"
                      if len(changes) > 1 else "")
            text += (f"Behind this: the text model is busy {100 * busy_lo:.0f}% of the time at {lo} client and "
                     f"{100 * busy_hi:.0f}% at {hi} (HTTP, tokenising and ranking then overlap inference instead of "
                     f"running between model calls); and the batcher packs {bb:.1f} queries per model call, which "
                     f"changes the model time per query by {pc(med)}{spread}")
            # Texts are grouped by length (issue 13), so padding is no longer the explanation:
            # what is left is the model's own batching curve on this CPU.
            if saving <= 0:
                text += (", i.e. batching saves nothing here: the text model's cost per caption does not fall "
                         "with batch size on this CPU (see the batching ceiling below)")
            elif saving < 0.2:
                text += (", a small saving: the text model's cost per caption falls little with batch size on "
                         "this CPU, its batched cost being mostly per token (see the batching ceiling below)")
            text += ". "
        text += (f"The {hi}-client latency is queueing, not slower queries: the mean ({fmt(mean_hi)} ms) matches "
                 f"Little's law for a saturated server, clients / throughput = {fmt(little)} ms, and only "
                 f"{fmt(model_hi)} ms of it is the model call the query rides in; the rest is waiting for the calls "
                 f"ahead of it.")
        out.append(text)
        dist = batch_distribution(b["server"]["text_batch_size_buckets"])
        if dist:
            total = sum(n for _, n in dist)
            small = sum(n for label, n in dist if label in ("1", "2", "3–4"))
            parts = ", ".join(f"{label}: {n}" for label, n in dist if n)
            line = f"{p['precision']} at {hi} clients, model calls by texts per call: {parts}."
            big = sum(n for label, n in dist if label in ("17–32", "33–64", "65–128", ">128"))
            if total and small / total >= 0.2 and big / total >= 0.3:
                line += (" The sizes alternate between large and small: the batcher takes whatever is queued the "
                         "moment the model frees up, so the clients answered by a large call come back just after "
                         "the next (small) call has started and wait it out.")
            out.append(line)
    byp = {p["precision"]: {l["connections"]: l for l in p["levels"]} for p in results["passes"]}
    if "fp32" in byp and "quantized" in byp:
        common = sorted(set(byp["fp32"]) & set(byp["quantized"]))
        ratios = "; ".join(f"{c} client{'s' if c > 1 else ''}: "
                           f"{ratio_text(round_ratios(byp['quantized'][c], byp['fp32'][c]))}" for c in common)
        out.append(f"Throughput of `--precision quantized` (int8 towers) relative to fp32, same round: {ratios}.")
    spreads = []
    for p in results["passes"]:
        for l in p["levels"]:
            rps = [r["rps"] for r in l.get("rounds", [])]
            if len(rps) > 1:
                spreads.append(((max(rps) - min(rps)) / l["wrk"]["rps"], p["precision"], l["connections"]))
    if spreads:
        worst = max(spreads)
        quiet = max(l["cpu"]["foreign_share"] for p in results["passes"] for l in p["levels"])
        out.append(f"Noise: repeating a row moved its throughput by up to {100 * worst[0]:.0f}% of the median "
                   f"({worst[1]} at {worst[2]} clients) while other processes used at most {100 * quiet:.0f}% of "
                   f"the CPUs: the shared VM's own speed drifts. Read differences of a few tens of percent between "
                   f"rows with care; the same-round ratios above are the steadier comparison.")
    return out


def render(results: dict) -> str:
    m = results["machine"]
    prm = results["params"]
    n_rounds = prm.get("rounds", 1)
    rounds_text = (f"all levels of both precisions are repeated {n_rounds} times, interleaved (both servers stay up; an idle "
                   f"one uses no CPU), and each row is the round with the median throughput; *req/s, all rounds* shows "
                   f"the spread, which is the machine's noise." if n_rounds > 1 else "one round.")
    anomalies = []
    for p in results["passes"]:
        for lv in p["levels"]:
            w = lv["wrk"]
            bad = {k: v for k, v in w["status"].items() if k != "200" and v}
            sock = {k: v for k, v in w["errors"].items() if k != "status" and v}
            if bad or sock:
                anomalies.append(f"{p['precision']} at {lv['connections']} clients: statuses {bad}, socket errors {sock}")
        if p.get("server_log", {}).get("warn_or_error"):
            anomalies.append(f"{p['precision']}: {p['server_log']['warn_or_error']} WARN/ERROR server log lines under load")
    cpu_rows = [lv["cpu"] for p in results["passes"] for lv in p["levels"]]
    noisy = [f"{p['precision']} at {lv['connections']} clients ({100 * lv['cpu']['foreign_share']:.0f}%)"
             for p in results["passes"] for lv in p["levels"]
             if lv["cpu"]["foreign_share"] > prm.get("max_other", 0.1)]
    wrk_max = max((c["wrk_cores"] for c in cpu_rows), default=None)
    srv_min = min((c["server_cores"] for c in cpu_rows), default=None)
    srv_max = max((c["server_cores"] for c in cpu_rows), default=None)
    index_s = ", ".join(f"{p['precision']} {p['index']['indexed']} photos in {p['index']['wall_s']:.0f} s"
                        for p in results["passes"] if "index" in p)
    lines = [
        f"Measured {results['timestamp']} on {machine_line(m)}; VisionQuery {results['git']}; "
        f"load tool **{results['wrk_version']}**.",
        "",
        f"What is measured: `POST /search {{\"query\": <caption>, \"top_k\": {prm['top_k']}}}` against "
        f"`target/release/visionquery serve` (model `.cache/bench/vit-b32`: random-weight CLIP with the real "
        f"ViT-B/32 shapes; ONNX Runtime threads = {prm['server_threads'] or 'all cores'}, "
        f"max batch = {prm['max_batch'] or 'default (32)'}) over loopback, with {results['index_size']} indexed COCO photos "
        f"({index_s} through a `/ingest/directory` job). Each request carries a different real COCO caption "
        f"(rotating through {results['queries']} captions). wrk is closed-loop: each connection sends its next "
        f"query when the previous answer arrives, so *clients* = queries in flight. Each level: {prm['warmup']:g} s "
        f"warm-up (discarded), then {prm['seconds']:g} s measured; {rounds_text} Latencies are wrk's (`--latency`; "
        f"p50/p90/p99 from its histogram, max exact); avg text batch and model time per batch come from the server's "
        f"`/metrics` (`vq_embed_batch_size` / `vq_embed_duration_seconds`, `modality=\"text\"`) over the same "
        f"{prm['seconds']:g} s.",
        "",
        *table(results),
        "",
        *[f"- {s}" for s in interpret(results)],
        f"- wrk runs on the same {m.get('logical_cpus')} CPUs as the server: it used {fmt(wrk_max, 2)} CPU cores at most "
        f"(the server {fmt(srv_min, 2)}–{fmt(srv_max, 2)}), so at these request rates the load generator takes "
        f"little from the server; loopback also hides the network latency a remote client would add. *Other CPU* "
        f"is the share of the machine used by anything else during the row.",
        *([f"- **Noisy rows** (other processes used more than {100 * prm.get('max_other', 0.1):.0f}% of the CPUs "
           f"after up to {prm.get('retries', 0)} re-measurements): " + ", ".join(noisy) + "; treat them with care."]
          if noisy else []),
        "- No non-200 answers or socket errors." if not anomalies else
        "- **Anomalies**: " + "; ".join(anomalies) + ".",
        "",
        f"Reproduce (≈ {2 + len(results['passes']) * n_rounds * len(prm['connections']) * (prm['warmup'] + prm['seconds'] + 3) / 60:.0f} min "
        f"on a quiet machine, after the build; needs `wrk`, e.g. `apt-get install wrk`):",
        "",
        "```sh",
        results["command"],
        "```",
        "",
        f"Raw numbers, wrk output and the server commands: `bench-results/{results['json_name']}` (not committed).",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", default="1,8,32", help="wrk -c levels (default 1,8,32)")
    ap.add_argument("--wrk-threads", type=int, default=2, help="wrk -t, capped at the connections (default 2)")
    ap.add_argument("--seconds", type=float, default=15.0, help="measured wrk run per level and round (default 15)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="repeat every level this many times, precisions interleaved; the median round is reported "
                         "(default 3)")
    ap.add_argument("--warmup", type=float, default=3.0, help="discarded wrk run before each level (default 3)")
    ap.add_argument("--wrk-timeout", type=float, default=30.0, help="wrk --timeout seconds (default 30)")
    ap.add_argument("--quantized", action=argparse.BooleanOptionalAction, default=True,
                    help="also measure --precision quantized (default: yes; --no-quantized for fp32 only)")
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--server-threads", type=int, default=0, help="serve --threads (default 0 = all cores)")
    ap.add_argument("--max-batch", type=int, default=None, help="serve --max-batch (default: the server's)")
    ap.add_argument("--model", type=Path, default=DEFAULT_CACHE / "vit-b32")
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="CLIP config.json for a missing checkpoint")
    ap.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="photos to index (read in place)")
    ap.add_argument("--captions", type=Path, default=DEFAULT_CAPTIONS, help="JSON file -> captions, used as queries")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build (use the existing binary)")
    ap.add_argument("--wait-quiet", type=float, default=1800,
                    help="wait up to this many seconds for other benchmarks/builds to finish before building and "
                         "before each measured run (default 1800; 0 = don't wait)")
    ap.add_argument("--max-other", type=float, default=0.10,
                    help="re-measure a level when other processes used more than this share of the CPUs (default 0.10)")
    ap.add_argument("--retries", type=int, default=3, help="re-measurements per level at most (default 3)")
    ap.add_argument("--no-markdown", action="store_true", help="do not rewrite BENCHMARKS.md")
    ap.add_argument("--from-json", type=Path, help="measure nothing: re-render BENCHMARKS.md from a saved results file")
    args = ap.parse_args(argv)
    if args.from_json:
        section = render(json.loads(args.from_json.read_text()))
        print(section)
        if not args.no_markdown:
            update_markdown(SECTION, section, HEADING)
        return 0
    args.connections = [int(c) for c in args.connections.split(",")]
    args.model = args.model.resolve()
    args.images = args.images.resolve()
    command = "python3 scripts/bench_serving.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))

    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
    # SIGTERM → SystemExit, so the finally blocks stop the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    ckpt_state = ensure_checkpoint(args.model, args.config)
    if not args.no_build:
        wait_quiet(args.wait_quiet, check_competing=True)
    binary = build_binary(args.no_build)
    git = git_state()  # the state the binary was built from
    queries = load_queries(args.captions)
    n_images = sum(1 for p in args.images.iterdir() if p.is_file())

    results = {"passes": []}
    with tempfile.TemporaryDirectory(prefix="vq-bench-serving-") as tmp:
        workdir = Path(tmp)
        lua = workdir / "search.lua"
        write_wrk_search_lua(lua, [{"query": q, "top_k": args.top_k} for q in queries],
                             "scripts/bench_serving.py: POST /search rotating through real captions")
        precisions = ["fp32"] + (["quantized"] if args.quantized else [])
        results["passes"] = run_all(precisions, args, binary, lua, workdir, queries)

    stamp = dt.datetime.now(dt.timezone.utc)
    json_name = f"serving-{stamp.strftime('%Y%m%dT%H%M%SZ')}.json"
    results.update({
        "timestamp": stamp.strftime("%Y-%m-%d %H:%M UTC"),
        "json_name": json_name,
        "command": command,
        "params": {"connections": args.connections, "wrk_threads": args.wrk_threads, "seconds": args.seconds,
                   "rounds": args.rounds,
                   "warmup": args.warmup, "top_k": args.top_k, "server_threads": args.server_threads,
                   "max_batch": args.max_batch, "model": str(args.model), "images": str(args.images),
                   "captions": str(args.captions), "checkpoint": ckpt_state,
                   "max_other": args.max_other, "retries": args.retries},
        "queries": len(queries),
        "index_size": next((p["index"]["images_in_index"] for p in results["passes"] if "index" in p), n_images),
        "machine": machine_info(),
        "wrk_version": wrk_version(),
        "git": git,
    })
    out_dir = REPO / "bench-results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / json_name).write_text(json.dumps(results, indent=1, default=str))
    section = render(results)
    print(section)
    if not args.no_markdown:
        update_markdown(SECTION, section, HEADING)
        log(f"updated BENCHMARKS.md; raw results in bench-results/{json_name}")
    else:
        log(f"raw results in bench-results/{json_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
