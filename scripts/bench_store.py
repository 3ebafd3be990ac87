#!/usr/bin/env python3
"""Store benchmark (issue 8, "Measured"): N CLIP-like 512-d vectors in the embedded store and in
PostgreSQL + pgvector, measured side by side through the real HTTP server.

One command does everything:

    python3 scripts/bench_store.py                       # 1,000,000 vectors (quiet machine, ~1.5 h)
    python3 scripts/bench_store.py --vectors 100000      # CI-sized run (minutes)
    python3 scripts/bench_store.py --from-json bench-results/store-<ts>.json   # re-render only

1. generates N unit vectors shaped like CLIP image embeddings (seeded; written once to
   .cache/bench/store/clip-like-N-512-s<seed>.f32 and reused): a few thousand topic clusters
   whose centres share one large common direction (as real CLIP embeddings do), cluster sizes
   skewed (Zipf), and each point = normalize(centre + noise) with a per-cluster spread and an
   anisotropic, power-law noise spectrum (real embeddings use few directions strongly);
2. computes in numpy the exact top-10 (f32 cosine) of 200 query images, the pairwise cosine
   distribution, and what storing vectors as halfvec does to scores and to the exact ranking;
3. builds the release binary and `examples/load_vectors.rs` (the loader: embedded store through
   its own `upsert_many`, PostgreSQL by binary COPY with the HNSW index built after the load),
   both bound to the model fingerprint of `--model` (default .cache/bench/vit-b32, the random-
   weight ViT-B/32 that bench_serving.py builds: 512-d, so the server accepts the index);
4. per backend: starts an empty server (baseline RSS), loads, starts the server on the loaded
   index (start-up time), then recall@10 of `/search {"image_id", "top_k": 10}` against the exact
   top-10 (and of `"exact": true` when the server accepts it), wrk at 1 and 16 clients rotating
   image ids for a fixed duration, server RSS after warm-up, CPU seconds per search of the
   server process and (PostgreSQL) of the database backends serving it (/proc);
5. PostgreSQL in the database (psql): ef_search sweep (recall@10 and EXPLAIN ANALYZE execution
   time per ef_search, checking the plan uses the HNSW index), an exact sequential scan sample,
   table/index sizes, max_connections; and a projected-throughput model for N replicas (and K
   read replicas) from the CPU per search;
6. writes bench-results/store-<UTC>.json and the `bench:store-<N>` section of BENCHMARKS.md.

Needs: numpy (re-runs itself under the reference Python when missing, see benchlib), `wrk`,
`psql`, and a PostgreSQL 16 with pgvector (`--pg-url` or env VQ_BENCH_PG_URL: a superuser URL;
by default `scripts/pg.sh url` starts the repository's own). It creates and drops its own
database `bench_store_<N>`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    DEFAULT_CACHE, REPO, CpuMonitor, cpu_seconds_of, ensure_reference_python, fmt, log, machine_info, machine_line,
    publish, update_markdown, wait_quiet, DEFAULT_CONFIG, ServerProcess, ensure_checkpoint, free_port, http, rss_bytes,
    target_dir, run_wrk, write_wrk_search_lua, wrk_version,
)

ensure_reference_python(("numpy",))
import numpy as np  # noqa: E402


HEADING_PREFIX = "## Store at scale"
STORE_CACHE = DEFAULT_CACHE / "store"


# ---------------------------------------------------------------------------------------------
# 1. Generator
# ---------------------------------------------------------------------------------------------

GEN = {
    "version": 1,
    # centre = normalize(ALPHA * common + sqrt(1 - ALPHA^2) * own random unit direction)
    "alpha": 0.85,
    # noise norm relative to the (unit) centre, drawn per cluster
    "spread": (0.45, 0.85),
    # noise variance of the i-th direction of a fixed random basis ~ (i + 1) ** -DECAY
    "decay": 1.0,
    # cluster sizes ~ rank ** -ZIPF
    "zipf": 0.7,
    "images_per_cluster": 250,
}


def vectors_path(n: int, dim: int, seed: int) -> Path:
    return STORE_CACHE / f"clip-like-{n}-{dim}-s{seed}-v{GEN['version']}.f32"


def generate(n: int, dim: int, seed: int, path: Path) -> dict:
    """Writes n unit f32 vectors to `path` (raw little-endian, row-major); returns the parameters."""
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file() and path.stat().st_size == n * dim * 4:
        log(f"vectors: reusing {path}")
        return json.loads(meta_path.read_text())
    t0 = time.monotonic()
    rng = np.random.default_rng(seed)
    k = max(8, n // GEN["images_per_cluster"])
    common = rng.standard_normal(dim)
    common /= np.linalg.norm(common)
    own = rng.standard_normal((k, dim))
    own -= np.outer(own @ common, common)  # orthogonal to the common direction
    own /= np.linalg.norm(own, axis=1, keepdims=True)
    a = GEN["alpha"]
    centres = (a * common + np.sqrt(1 - a * a) * own).astype(np.float32)
    spread = rng.uniform(*GEN["spread"], size=k).astype(np.float32)
    lam = (np.arange(dim) + 1.0) ** -GEN["decay"]
    scale = np.sqrt(lam / lam.sum()).astype(np.float32)  # E|noise|^2 = 1 before the spread
    basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    basis = basis.astype(np.float32)
    weights = (np.arange(k) + 1.0) ** -GEN["zipf"]
    weights = rng.permutation(weights / weights.sum())
    assign = rng.choice(k, size=n, p=weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        for start in range(0, n, 50_000):
            c = assign[start:start + 50_000]
            z = rng.standard_normal((len(c), dim), dtype=np.float32) * scale
            x = centres[c] + spread[c, None] * (z @ basis.T)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            f.write(x.astype("<f4").tobytes())
    tmp.rename(path)
    sizes = np.bincount(assign, minlength=k)
    meta = {"n": n, "dim": dim, "seed": seed, "clusters": k, **GEN,
            "cluster_size": {"min": int(sizes.min()), "median": float(np.median(sizes)), "max": int(sizes.max())},
            "generate_s": round(time.monotonic() - t0, 1)}
    meta_path.write_text(json.dumps(meta, indent=1))
    log(f"vectors: wrote {n} x {dim} to {path} in {meta['generate_s']} s ({k} clusters)")
    return meta


def load_vectors(path: Path, n: int, dim: int) -> np.ndarray:
    return np.memmap(path, dtype="<f4", mode="r", shape=(n, dim))


# ---------------------------------------------------------------------------------------------
# 2. Ground truth, cosine distribution, halfvec
# ---------------------------------------------------------------------------------------------


def topk_exact(vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = 100_000, score=None):
    """Exact top-k of every query over all rows: (ids, scores), ties by id like the stores.
    `score(queries, block)` gives the similarities of a block of rows (default: the dot product,
    the cosine of unit vectors)."""
    score = score or (lambda q, block: q @ block.T)
    n = vectors.shape[0]
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, n, chunk):
        s = score(queries, np.asarray(vectors[start:start + chunk], dtype=np.float32))
        take = min(k + 5, s.shape[1])
        part = np.argpartition(-s, take - 1, axis=1)[:, :take]
        best_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
        best_i = np.concatenate([best_i, part + start], axis=1)
        order = np.lexsort((best_i, -best_s), axis=1)[:, :k + 5]
        best_s = np.take_along_axis(best_s, order, 1)
        best_i = np.take_along_axis(best_i, order, 1)
    return best_i[:, :k], best_s[:, :k]


def cosine_stats(vectors: np.ndarray, rng, pairs: int = 200_000) -> dict:
    n = vectors.shape[0]
    i = rng.integers(0, n, pairs)
    j = rng.integers(0, n, pairs)
    keep = i != j
    a = np.asarray(vectors[i[keep]], dtype=np.float32)
    b = np.asarray(vectors[j[keep]], dtype=np.float32)
    cos = np.einsum("ij,ij->i", a, b)
    q = np.percentile(cos, [1, 5, 25, 50, 75, 95, 99])
    return {"pairs": int(keep.sum()), "mean": float(cos.mean()), "p1": q[0], "p5": q[1], "p25": q[2], "p50": q[3],
            "p75": q[4], "p95": q[5], "p99": q[6], "share_0.4_0.9": float(((cos >= 0.4) & (cos <= 0.9)).mean())}


def ground_truth(vectors: np.ndarray, n_queries: int, k: int, seed: int) -> dict:
    t0 = time.monotonic()
    rng = np.random.default_rng(seed + 1)
    n = vectors.shape[0]
    qids = np.sort(rng.choice(n, size=min(n_queries, n), replace=False))
    q32 = np.asarray(vectors[qids], dtype=np.float32)
    ids32, s32 = topk_exact(vectors, q32, k)
    # halfvec: every stored vector and the query rounded to f16 (the store binds the query as
    # halfvec too); pgvector then computes the cosine in f32 from the halves.
    q16 = q32.astype(np.float16).astype(np.float32)
    max_abs, sum_abs, count = 0.0, 0.0, 0
    ids16 = topk_exact_f16(vectors, q16, k)
    for start in range(0, n, 100_000):
        block = np.asarray(vectors[start:start + 100_000], dtype=np.float32)
        b16 = block.astype(np.float16).astype(np.float32)
        c32 = q32 @ block.T
        c16 = (q16 @ b16.T) / np.outer(np.linalg.norm(q16, axis=1), np.linalg.norm(b16, axis=1))
        d = np.abs(c16 - c32)
        max_abs = max(max_abs, float(d.max()))
        sum_abs += float(d.sum())
        count += d.size
    nn = s32[:, 1]  # the best neighbour other than the query itself
    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(ids32, ids16)])
    out = {
        "query_ids": [int(x) for x in qids],
        "exact_top": ids32.tolist(),
        "exact_scores": s32.tolist(),
        "cosine_random_pairs": cosine_stats(vectors, rng),
        "cosine_nearest_neighbour": {"p5": float(np.percentile(nn, 5)), "p50": float(np.median(nn)),
                                     "p95": float(np.percentile(nn, 95))},
        "cosine_10th_neighbour": {"p50": float(np.median(s32[:, -1]))},
        "halfvec": {"max_abs_cos_diff": max_abs, "mean_abs_cos_diff": sum_abs / count, "pairs": count,
                    "exact_top10_overlap": float(overlap)},
        "seconds": round(time.monotonic() - t0, 1),
    }
    return out


def topk_exact_f16(vectors: np.ndarray, q16: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k by cosine with the rows rounded to half precision, as halfvec stores them."""
    norms = np.linalg.norm(q16, axis=1, keepdims=True)

    def cosine_f16(q, block):
        b16 = block.astype(np.float16).astype(np.float32)
        return (q @ b16.T) / norms / np.linalg.norm(b16, axis=1)[None, :]

    return topk_exact(vectors, q16, k, score=cosine_f16)[0]


def image_id(i: int) -> str:
    """The loader's id of image i (examples/load_vectors.rs)."""
    return f"{i:016x}"


# ---------------------------------------------------------------------------------------------
# 3. Build, loader, PostgreSQL helpers
# ---------------------------------------------------------------------------------------------


def build(no_build: bool) -> tuple[Path, Path]:
    if not no_build:
        log("building: cargo build --release --locked --bin visionquery --example load_vectors")
        subprocess.run(["bash", "-c", 'source scripts/build-env.sh && cargo build --release --locked --bin visionquery '
                        '--example load_vectors "${CARGO_FEATURE_FLAGS[@]}"'], cwd=REPO, check=True, stdout=sys.stderr)
    binary, loader = target_dir() / "release" / "visionquery", target_dir() / "release" / "examples" / "load_vectors"
    for p in (binary, loader):
        if not p.is_file():
            sys.exit(f"{p} is missing (build with: cargo build --release --bin visionquery --example load_vectors)")
    return binary, loader


def run_loader(loader: Path, args, vec_path: Path, n: int, extra: list[str]) -> dict:
    cmd = [str(loader), "--vectors", str(vec_path), "--dim", str(args.dim), "--count", str(n),
           "--model", str(args.model), "--precision", args.precision, "--m", str(args.m),
           "--ef-construction", str(args.ef_construction), *extra]
    log("loading:", " ".join(cmd))
    t0 = time.monotonic()
    with CpuMonitor() as mon:
        p = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"loader failed ({p.returncode})")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out.update({"wall_s": time.monotonic() - t0, "command": " ".join(cmd), "foreign_cpu_share": mon.foreign_share})
    return out


def db_url(admin_url: str, name: str) -> str:
    base, _, rest = admin_url.rpartition("/")
    query = rest.partition("?")[2]
    return f"{base}/{name}" + (f"?{query}" if query else "")


def psql(url: str, sql: str, timeout: float = 7200) -> list[str]:
    """Runs `sql` with psql (unaligned, tuples only) and returns the output lines."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(sql)
        name = f.name
    try:
        p = subprocess.run(["psql", url, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", name],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    finally:
        os.unlink(name)
    if p.returncode != 0:
        raise RuntimeError(f"psql failed: {p.stderr.strip()[:2000]}")
    return p.stdout.splitlines()


def psql_value(url: str, sql: str) -> str:
    lines = [l for l in psql(url, sql) if l.strip()]
    return lines[-1] if lines else ""


def halfvec_literal(v: np.ndarray) -> str:
    h = v.astype(np.float16)
    return "'[" + ",".join(f"{float(x):.6g}" for x in h) + "]'::halfvec"


def backend_pids(url: str, dbname: str) -> set[int]:
    rows = psql(url, f"SELECT pid FROM pg_stat_activity WHERE datname = '{dbname}' AND pid <> pg_backend_pid();")
    return {int(r) for r in rows if r.strip().isdigit()}


class DbCpu:
    """CPU seconds of the database backends serving one database, over a block (/proc)."""

    def __init__(self, url: str, dbname: str):
        self.url, self.dbname = url, dbname

    def __enter__(self):
        self.start = {p: cpu_seconds_of(p) for p in backend_pids(self.url, self.dbname)}
        return self

    def __exit__(self, *exc):
        pids = backend_pids(self.url, self.dbname)
        self.connections = len(pids)
        # backends started during the block count whole
        self.seconds = sum(cpu_seconds_of(p) - self.start.get(p, 0.0) for p in pids)
        return False


# ---------------------------------------------------------------------------------------------
# 4. Server, wrk
# ---------------------------------------------------------------------------------------------


def dir_bytes(path: Path) -> int:
    """Space the files take on disk (allocated blocks: redb grows its file ahead of use, sparsely)."""
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


class Server(ServerProcess):
    def __init__(self, binary: Path, args, data_dir: Path, workdir: Path, name: str, store: str | None = None,
                 ef_search: int | None = None):
        roots = workdir / "image-root"
        roots.mkdir(exist_ok=True)
        port = free_port()
        cmd = [str(binary), "serve", "--model", str(args.model), "--precision", args.precision,
               "--data-dir", str(data_dir), "--image-root", str(roots), "--host", "127.0.0.1", "--port", str(port)]
        if store:
            # The first server to bind the store builds its index: it must use the shape asked for.
            cmd += ["--store", store, "--pg-pool-size", str(args.pool_size), "--hnsw-m", str(args.m),
                    "--hnsw-ef-construction", str(args.ef_construction)]
            if ef_search:
                cmd += ["--hnsw-ef-search", str(ef_search)]
        elif ef_search:
            cmd += ["--ann-ef-search", str(ef_search)]
        super().__init__(cmd, port, workdir / f"server-{name}.log")

    def start(self, timeout: float = 3600.0) -> float:
        return super().start(timeout)

    def search(self, body: dict):
        return http("POST", self.base + "/search", body, timeout=120)


def server_help(binary: Path) -> str:
    p = subprocess.run([str(binary), "serve", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return p.stdout


# ---------------------------------------------------------------------------------------------
# 5. One backend
# ---------------------------------------------------------------------------------------------


def recall_of(server: Server, gt: dict, k: int, exact: bool = False, limit: int | None = None) -> dict:
    """recall@k of `/search` by image_id against the exact f32 top-k, over the first `limit` query
    images (all by default)."""
    hits, times, scores_vs = 0, [], []
    queries = gt["query_ids"][:limit] if limit else gt["query_ids"]
    for qi, i in enumerate(queries):
        body = {"image_id": image_id(i), "top_k": k}
        if exact:
            body["exact"] = True
        t = time.perf_counter()
        status, res = server.search(body)
        times.append(time.perf_counter() - t)
        if status != 200:
            return {"supported": False, "status": status, "answer": str(res)[:300]}
        got = [int(r["id"], 16) for r in res["results"]]
        hits += len(set(got) & set(gt["exact_top"][qi][:k]))
        if res["results"]:
            scores_vs.append(abs(res["results"][-1]["score"] - gt["exact_scores"][qi][len(got) - 1]))
    times.sort()
    return {"supported": True, "recall": hits / (k * len(queries)), "queries": len(queries),
            "sequential_p50_ms": 1e3 * times[len(times) // 2],
            "max_abs_score_diff_at_k": max(scores_vs) if scores_vs else None}


def measure_backend(kind: str, binary: Path, loader: Path, args, vec_path: Path, n: int, gt: dict, workdir: Path,
                    lua: Path, admin_url: str | None) -> dict:
    res = {"backend": kind}
    store = dbname = None
    if kind == "postgres":
        dbname = f"bench_store_{n}"
        psql(admin_url, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE);\nCREATE DATABASE "{dbname}";')
        store = db_url(admin_url, dbname)
        res["database"] = dbname
    serve = kind == "embedded" or args.store_flag
    if serve:
        # An empty server: the baseline of memory (model loaded, store open, a few searches answered).
        empty_dir = workdir / f"empty-{kind}"
        srv = Server(binary, args, empty_dir, workdir, f"{kind}-empty", store)
        try:
            res["empty_ready_s"] = srv.start()
            for i in range(50):
                srv.search({"image_id": image_id(i), "top_k": 10})  # 404: binds the model, warms the paths
            time.sleep(1)
            res["rss_empty"] = rss_bytes(srv.proc.pid)
        finally:
            srv.stop()
    else:
        log(f"  {kind}: this build's `serve` has no --store flag: measuring the load and the database only")
        res["http_skipped"] = "`visionquery serve` of this build has no --store flag"

    data_dir = workdir / f"data-{kind}"
    extra = ["--embedded", str(data_dir)] if kind == "embedded" else [
        "--postgres", store, "--maintenance-work-mem", args.maintenance_work_mem,
        "--parallel-workers", str(args.parallel_workers)]
    wait_quiet(args.wait_quiet, check_competing=True)
    res["load"] = run_loader(loader, args, vec_path, n, extra)
    log(f"  {kind}: loaded {n} in {res['load']['load_s']:.1f} s"
        + (f", HNSW index built in {res['load']['index_s']:.1f} s" if res["load"].get("index_s") else ""))

    if kind == "embedded":
        res["disk_bytes"] = dir_bytes(data_dir)
    else:
        sizes = psql(store, "SELECT pg_total_relation_size('vq_images'), pg_total_relation_size('vq_paths'), "
                            "pg_relation_size('vq_images_embedding'), pg_relation_size('vq_images'), "
                            "current_setting('max_connections'), current_setting('shared_buffers'), "
                            "(SELECT extversion FROM pg_extension WHERE extname = 'vector'), version();")[0].split("|")
        res["disk_bytes"] = int(sizes[0]) + int(sizes[1])
        res["pg"] = {"images_total_bytes": int(sizes[0]), "paths_total_bytes": int(sizes[1]),
                     "hnsw_index_bytes": int(sizes[2]), "heap_bytes": int(sizes[3]), "max_connections": int(sizes[4]),
                     "shared_buffers": sizes[5], "pgvector": sizes[6], "version": sizes[7]}

    res["disk_per_image"] = res["disk_bytes"] / n
    if kind == "postgres":
        # First, so the server can be measured at the breadth the sweep chose.
        res["in_database"] = pg_in_database(store, args, vec_path, n, gt)
        res["ef_search"] = choose_ef([(s["ef_search"], s["recall"]) for s in res["in_database"]["sweep"]
                                      if s["ef_search"] != "exact"], args.server_ef_search, args.pg_recall_goal)
        log(f"  postgres: the server runs with hnsw.ef_search {res['ef_search']['chosen']} ({res['ef_search']['why']})")
    if serve:
        measure_http(res, kind, binary, args, data_dir, workdir, store, dbname, admin_url, gt, lua)
        res["memory_per_image"] = (res["rss_loaded"] - res["rss_empty"]) / n
    if kind == "postgres" and not args.keep:
        psql(admin_url, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE);')
    return res


def choose_ef(measured: list, asked: str, goal: float, default: int | None = None) -> dict:
    """The search breadth the server runs with: the one asked for, or (`auto`) the smallest measured one whose
    recall reaches the goal, else the most accurate measured."""
    measured = sorted((int(ef), recall) for ef, recall in measured if recall is not None)
    if asked == "default":
        # None when the server's help names no default: the server then runs with its own all the same.
        return {"chosen": default, "why": "the server's default", "goal": goal}
    if asked != "auto":
        return {"chosen": int(asked), "why": "asked for", "goal": goal}
    for ef, recall in measured:
        if recall >= goal:
            return {"chosen": ef, "why": f"the smallest measured reaching recall@10 {goal}", "goal": goal}
    if not measured:
        return {"chosen": None, "why": "nothing measured: the server's default", "goal": goal}
    ef, recall = max(measured, key=lambda m: (m[1], -m[0]))
    return {"chosen": ef, "why": f"none measured reaches recall@10 {goal}: the most accurate", "goal": goal}


def embedded_ef_sweep(res, binary, args, data_dir, workdir, gt) -> None:
    """Recall and sequential latency of the embedded store at each `--ann-ef-sweep` breadth (a server per value,
    on the saved index), then the breadth the measured server runs with."""
    sweep = []
    for ef in args.ann_ef_sweep:
        srv = Server(binary, args, data_dir, workdir, f"embedded-ef{ef}", ef_search=ef)
        try:
            ready = srv.start()
            run = recall_of(srv, gt, args.top_k)
            run = {"ef_search": ef, "ready_s": ready, **run}
            sweep.append(run)
            log(f"  embedded ef {ef}: recall@{args.top_k} {run.get('recall')}, sequential p50 "
                f"{run.get('sequential_p50_ms', 0):.2f} ms (ready after {ready:.1f} s)")
        finally:
            srv.stop()
    res["ef_sweep_http"] = sweep
    res["ef_search"] = choose_ef([(s["ef_search"], s.get("recall")) for s in sweep], args.ann_ef_search,
                                 args.embedded_recall_goal, args.ann_ef_default)
    log(f"  embedded: the server runs with ef {res['ef_search']['chosen']} ({res['ef_search']['why']})")


def measure_http(res, kind, binary, args, data_dir, workdir, store, dbname, admin_url, gt, lua):
    if kind == "embedded":
        embedded_ef_sweep(res, binary, args, data_dir, workdir, gt)
    srv = Server(binary, args, data_dir, workdir, kind, store, ef_search=res.get("ef_search", {}).get("chosen"))
    try:
        res["ready_s"] = srv.start()
        log(f"  {kind}: server ready after {res['ready_s']:.1f} s")
        res["recall"] = recall_of(srv, gt, args.top_k)
        log(f"  {kind}: recall@{args.top_k} = {res['recall'].get('recall')}")
        # The embedded store's exact search reads every f32 vector (0.4-0.5 s a query at 1M on 2
        # cores from its vector file; about 10 s from redb without one): --exact-flag-queries keeps
        # that pass to a sample there.
        res["recall_exact_flag"] = recall_of(srv, gt, args.top_k, exact=True, limit=args.exact_flag_queries)
        res["levels"] = []
        for c in args.clients:
            q = wait_quiet(args.wait_quiet, exclude_pids=[srv.proc.pid], check_competing=True)
            run_wrk(srv.base, lua, c, min(c, 2), args.warmup, 30)
            with CpuMonitor([srv.proc.pid]) as mon:
                if dbname:
                    with DbCpu(admin_url, dbname) as db:
                        w = run_wrk(srv.base, lua, c, min(c, 2), args.seconds, 30)
                else:
                    db = None
                    w = run_wrk(srv.base, lua, c, min(c, 2), args.seconds, 30)
            level = {"clients": c, "wrk": w, "quiet_wait": q,
                     "server_cpu_ms_per_search": 1e3 * mon.pids_cores * mon.wall / max(w["requests"], 1),
                     "server_cores": mon.pids_cores, "wrk_cores": mon.children_cores, "foreign_share": mon.foreign_share}
            if db is not None:
                level["db_cpu_ms_per_search"] = 1e3 * db.seconds / max(w["requests"], 1)
                level["db_cores"] = db.seconds / mon.wall
                level["db_connections"] = db.connections
            res["levels"].append(level)
            lat = w["latency_us"]
            log(f"  {kind} c={c}: {w['rps']:.0f} req/s, p50 {lat['p50'] / 1e3:.2f} ms, p99 {lat['p99'] / 1e3:.2f} ms, "
                f"server {level['server_cpu_ms_per_search']:.2f} ms CPU/search"
                + (f", database {level['db_cpu_ms_per_search']:.2f} ms CPU/search" if db is not None else "")
                + f", other processes {100 * mon.foreign_share:.0f}%")
        res["rss_loaded"] = rss_bytes(srv.proc.pid)
        res["server_command"] = " ".join(srv.cmd)
    finally:
        srv.stop()


def pg_in_database(url: str, args, vec_path: Path, n: int, gt: dict) -> dict:
    """ef_search sweep through psql: the server's query (ORDER BY the distance alone, LIMIT k+1),
    recall@k against the exact f32 top-k, EXPLAIN ANALYZE execution time; and an exact sequential
    scan for a sample."""
    vectors = load_vectors(vec_path, n, args.dim)
    k = args.top_k
    qids = gt["query_ids"]
    lits = [halfvec_literal(np.asarray(vectors[i])) for i in qids]
    sql = ["SET hnsw.iterative_scan = relaxed_order;"]

    def query(lit):
        return (f"SELECT id, record::text, embedding <=> {lit} AS distance FROM vq_images "
                f"ORDER BY embedding <=> {lit} LIMIT {k + 1}")

    runs = [(ef, list(range(len(qids)))) for ef in args.ef_sweep]
    runs.append(("exact", list(range(min(args.exact_sample, len(qids))))))
    for ef, which in runs:
        if ef == "exact":
            sql.append("SET enable_indexscan = off; SET max_parallel_workers_per_gather = 0;")
        else:
            sql.append(f"SET hnsw.ef_search = {ef};")
        # a discarded warm-up pass over the same queries (the index pages into memory); the exact
        # scan reads the whole table anyway
        for qi in (which if ef != "exact" else []):
            sql.append(f"SELECT count(*) FROM ({query(lits[qi])}) s;")
        for qi in which:
            sql.append(f"\\echo @@ {ef} {qi}")
            sql.append(f"SELECT string_agg(id, ',' ORDER BY distance, id) FROM ({query(lits[qi])}) s;")
            sql.append(f"EXPLAIN (ANALYZE, BUFFERS) {query(lits[qi])};")
    log(f"  postgres in the database: ef_search {args.ef_sweep} over {len(qids)} queries, exact scan of {runs[-1][1].__len__()}")
    t0 = time.monotonic()
    lines = psql(url, "\n".join(sql))
    out = {}
    cur = None
    for line in lines:
        if line.startswith("@@ "):
            _, ef, qi = line.split()
            cur = {"ef": ef, "qi": int(qi), "ids": None, "ms": None, "index": False, "hit": 0, "read": 0}
            out.setdefault(ef, []).append(cur)
        elif cur is not None and cur["ids"] is None:
            cur["ids"] = line.split(",") if line else []
        elif cur is not None:
            if "vq_images_embedding" in line:
                cur["index"] = True
            m = re.search(r"Buffers: shared (?:hit=(\d+))?\s*(?:read=(\d+))?", line)
            if m and cur["hit"] == 0 and cur["read"] == 0:
                cur["hit"], cur["read"] = int(m.group(1) or 0), int(m.group(2) or 0)
            m = re.match(r"\s*Execution Time: ([\d.]+) ms", line)
            if m:
                cur["ms"] = float(m.group(1))
    sweep = []
    for ef, rows in out.items():
        ms = sorted(r["ms"] for r in rows)
        hits = sum(len({int(x, 16) for x in r["ids"][:k]} & set(gt["exact_top"][r["qi"]][:k])) for r in rows)
        sweep.append({"ef_search": ef, "queries": len(rows), "recall": hits / (k * len(rows)),
                      "p50_ms": ms[len(ms) // 2], "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
                      "mean_buffers": sum(r["hit"] + r["read"] for r in rows) / len(rows),
                      "all_use_hnsw_index": all(r["index"] for r in rows),
                      "none_use_hnsw_index": not any(r["index"] for r in rows)})
    return {"sweep": sweep, "seconds": round(time.monotonic() - t0, 1)}


# ---------------------------------------------------------------------------------------------
# 6. Report
# ---------------------------------------------------------------------------------------------


def kib(x):
    return None if x is None else x / 1024


def level_of(b: dict, c: int):
    return next((l for l in b.get("levels", []) if l["clients"] == c), None)


def ratio(p, e):
    if p is None or e is None or e == 0:
        return "—"
    return f"{p / e:.2f}×"


def projection(results: dict) -> dict | None:
    pg = results["backends"].get("postgres")
    if not pg or not pg.get("levels"):
        return None
    top = max(pg["levels"], key=lambda l: l["clients"])
    c_rep, c_db = top["server_cpu_ms_per_search"], top.get("db_cpu_ms_per_search")
    default_ef = str(results["params"]["server_ef_search"])
    t_db = next((s["p50_ms"] for s in pg.get("in_database", {}).get("sweep", []) if s["ef_search"] == default_ef), None)
    if not c_db or not t_db:
        return None
    cores = results["machine"].get("logical_cpus") or 2
    pool = results["params"]["pool_size"]
    max_conn = pg["pg"]["max_connections"]
    rows = []
    for d in (cores, 16):
        for k in (0, 1, 3):
            for n in (1, 2, 4, 8, 16, 32):
                rep = n * cores * 1e3 / c_rep
                db = (k + 1) * d * 1e3 / c_db
                conns = min(n * pool, (k + 1) * (max_conn - 3))
                conn = conns * 1e3 / t_db
                x = min(rep, db, conn)
                bound = "replicas" if x == rep else "database CPU" if x == db else "connections"
                rows.append({"replicas": n, "read_replicas": k, "db_cores": d, "searches_per_s": x, "bound": bound})
    return {"c_rep_ms": c_rep, "c_db_ms": c_db, "t_db_ms": t_db, "cores": cores, "pool": pool,
            "max_connections": max_conn, "rows": rows, "columns": [(cores, 0), (cores, 1), (16, 0), (16, 1), (16, 3)]}


def merge_runs(runs: list) -> dict:
    """One result from runs of one backend each (same N and generator): each backend's numbers and
    parameters as its own run measured them; the runs' commands, times and versions all listed."""
    merged = json.loads(json.dumps(runs[0]))
    for run in runs[1:]:
        if run["params"]["vectors"] != merged["params"]["vectors"]:
            sys.exit("runs of different sizes cannot be shown side by side")
        merged["backends"].update(run["backends"])
        for key, value in run["params"].items():
            if merged["params"].get(key) is None:
                merged["params"][key] = value
    if len(runs) > 1:
        merged["timestamp"] = " and ".join(r["timestamp"] for r in runs)
        merged["git"] = " and ".join(dict.fromkeys(r["git"] for r in runs))
        merged["command"] = "\n".join(r["command"] for r in runs)
        merged["json_name"] = "`, `bench-results/".join(r["json_name"] for r in runs)
    return merged


def render(results: dict) -> str:
    m, prm, gen, gt = results["machine"], results["params"], results["generator"], results["ground_truth"]
    n = prm["vectors"]
    e, p = results["backends"].get("embedded", {}), results["backends"].get("postgres", {})
    k = prm["top_k"]

    def lat(b, c, key):
        l = level_of(b, c)
        return None if l is None else l["wrk"]["latency_us"][key] / 1e3

    def rps(b, c):
        l = level_of(b, c)
        return None if l is None else l["wrk"]["rps"]

    def cpu(b, c, key):
        l = level_of(b, c)
        return None if l is None else l.get(key)

    def rec(b, key="recall"):
        r = b.get(key) or {}
        return r.get("recall") if r.get("supported") else None

    def row(name, ev, pv, digits=1, show_ratio=True):
        return f"| {name} | {fmt(ev, digits)} | {fmt(pv, digits)} | {ratio(pv, ev) if show_ratio else '—'} |"

    el, pl = e.get("load", {}), p.get("load", {})
    hi = max(prm["clients"])
    lines = [
        f"Measured {results['timestamp']} on {machine_line(m)}; VisionQuery {results['git']}; "
        f"{p.get('pg', {}).get('version', 'PostgreSQL ?').split(' on ')[0]}, pgvector {p.get('pg', {}).get('pgvector', '?')}; "
        f"load tool {results.get('wrk_version', 'wrk')}.",
        "",
        "Reproduce (the lead's quiet-machine run; CI-sized: `--vectors 100000`):",
        "",
        "```sh",
        results["command"],
        "```",
        "",
        f"**{n:,} vectors** of {prm['dim']} dimensions (generator below), each an image with a unique id and path, "
        f"bound to the fingerprint of `{prm['model_name']}` ({prm['precision']}). Searches are "
        f"`POST /search {{\"image_id\", \"top_k\": {k}}}` through the real server over loopback (the text model is not "
        f"in the figure), wrk closed-loop for {prm['seconds']:g} s per level after {prm['warmup']:g} s of warm-up, "
        f"rotating through {prm['wrk_ids']:,} image ids. Recall@{k}: the {len(gt['query_ids'])} query images' "
        f"`/search` answers against their exact f32 top-{k} computed in numpy from the raw vectors (the query image "
        f"itself included, as `/search` returns it). PostgreSQL: HNSW m={prm['m']}, ef_construction="
        f"{prm['ef_construction']}, the server's ef_search {prm['server_ef_search']}, pool of {prm['pool_size']} "
        f"connections per replica; the database runs on the same {m.get('logical_cpus')} CPUs as the server and wrk.",
        "",
        "| | embedded | PostgreSQL | PostgreSQL / embedded |",
        "|---|---:|---:|---:|",
        row("load (s)", el.get("load_s"), pl.get("load_s")),
        row("load (images/s)", n / el["load_s"] if el.get("load_s") else None, n / pl["load_s"] if pl.get("load_s") else None, 0),
        f"| index build (s) | {'in the load' if el.get('load_s') else '—'} | {fmt(pl.get('index_s'))} | — |",
        row("server start-up until ready (s)", e.get("ready_s"), p.get("ready_s")),
        row("disk per image (KiB)", kib(e.get("disk_per_image")), kib(p.get("disk_per_image")), 2),
        row("server memory per image (KiB, RSS loaded − empty)", kib(e.get("memory_per_image")), kib(p.get("memory_per_image")), 2),
        row(f"recall@{k}, default `/search`", rec(e), rec(p), 3),
        row(f"recall@{k}, `\"exact\": true`", rec(e, "recall_exact_flag"), rec(p, "recall_exact_flag"), 3),
    ]
    for c in prm["clients"]:
        lines += [
            row(f"{c} client{'s' if c > 1 else ''}: p50 (ms)", lat(e, c, "p50"), lat(p, c, "p50"), 2),
            row(f"{c} client{'s' if c > 1 else ''}: p99 (ms)", lat(e, c, "p99"), lat(p, c, "p99"), 2),
            row(f"{c} client{'s' if c > 1 else ''}: searches/s", rps(e, c), rps(p, c), 0),
        ]
    lines += [
        row(f"server CPU per search at {hi} clients (ms)", cpu(e, hi, "server_cpu_ms_per_search"),
            cpu(p, hi, "server_cpu_ms_per_search"), 2),
        f"| database CPU per search at {hi} clients (ms) | — | {fmt(cpu(p, hi, 'db_cpu_ms_per_search'), 2)} | — |",
        f"| database connections per replica (pool; open during the run) | — | {prm['pool_size']} "
        f"({cpu(p, hi, 'db_connections') if cpu(p, hi, 'db_connections') is not None else '?'}) | — |",
    ]
    notes = []
    if p.get("pg"):
        g = p["pg"]
        notes.append(f"PostgreSQL disk: `vq_images` {g['images_total_bytes'] / 2**20:,.0f} MiB in all (heap "
                     f"{g['heap_bytes'] / 2**20:,.0f} MiB, HNSW index {g['hnsw_index_bytes'] / 2**20:,.0f} MiB = "
                     f"{g['hnsw_index_bytes'] / n:,.0f} B per image), `vq_paths` {g['paths_total_bytes'] / 2**20:,.0f} MiB. "
                     f"The replica holds no vectors (its memory per image is noise around zero); the database's working set "
                     f"for fast search is the HNSW index (all of it must stay in RAM: shared_buffers {g['shared_buffers']} "
                     f"plus the OS page cache here). Index built with maintenance_work_mem {prm['maintenance_work_mem']}, "
                     f"{prm['parallel_workers']} parallel worker(s), after a binary COPY of all rows.")
    if e:
        notes.append(f"Embedded: load = the store's own `upsert_many` in batches of 5,000 (one redb transaction each), "
                     f"which also inserts into the approximate index (usearch HNSW over int8 copies, M=32, keeping pruned connections, on both cores); "
                     f"the load time includes building that index and writing the flat f32 vector file, and the loader "
                     f"saves both at the end. Start-up loads the saved index and every image's id and facets; searches "
                     f"walk the index and re-score its best candidates with f32 vectors read (`pread`) from the vector "
                     f"file (`\"exact\": true` reads the whole file in order). Its disk per image counts redb (the record) "
                     f"and the vector file (2 KiB per image). Its memory per image is the server's RSS growth: the index, "
                     f"ids and facets, redb's page cache (16 MiB at most) and the allocator's slack; the vector file is "
                     f"read through the OS page cache, outside the process.")
    for b in (e, p):
        r = b.get("recall_exact_flag") or {}
        if b and not r.get("supported"):
            notes.append(f"{b['backend']}: `\"exact\": true` is not accepted by this build (HTTP {r.get('status')}), "
                         f"so that row is empty (the harness sends it and fills the row once the server accepts it).")
    noisy = [f"{b['backend']} at {l['clients']} client{'s' if l['clients'] > 1 else ''} ({100 * l['foreign_share']:.0f}%)"
             for b in (e, p) if b for l in b.get("levels", []) if l["foreign_share"] > 0.10]
    if noisy:
        notes.append("**Noisy rows** (other processes used more than 10% of the CPUs during the run): "
                     + ", ".join(noisy) + ". Treat those latencies as upper bounds.")
    lines += ["", *[f"- {x}" for x in notes]]

    sweep = p.get("in_database", {}).get("sweep", [])
    if sweep:
        lines += ["", f"PostgreSQL in the database (psql on the same machine, the server's query: `ORDER BY embedding <=> $1 "
                      f"LIMIT {k + 1}`, iterative scan relaxed_order; time = `EXPLAIN (ANALYZE, BUFFERS)` execution time "
                      f"after a warm-up pass over the same queries; *exact* = the same query with index scans off, a "
                      f"sequential scan over every halfvec):", "",
                  f"| ef_search | queries | recall@{k} | p50 (ms) | p99 (ms) | buffers per query | plan |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for s in sweep:
            plan = "HNSW index" if s["all_use_hnsw_index"] else "sequential scan" if s["none_use_hnsw_index"] else "mixed"
            lines.append(f"| {s['ef_search']} | {s['queries']} | {s['recall']:.3f} | {fmt(s['p50_ms'], 2)} | "
                         f"{fmt(s['p99_ms'], 2)} | {fmt(s['mean_buffers'], 0)} | {plan} |")
    esweep = e.get("ef_sweep_http", [])
    if esweep:
        ch = e.get("ef_search", {})
        lines += ["", f"Embedded store, approximate index breadth (usearch `ef`, a server started per value on the saved "
                      f"index; recall@{k} and one-at-a-time latency of `/search` over HTTP; the measured server above runs "
                      f"with ef {ch.get('chosen')}: {ch.get('why')}):", "",
                  f"| ef | recall@{k} | sequential p50 (ms) | start-up until ready (s) |", "|---:|---:|---:|---:|"]
        for s in esweep:
            lines.append(f"| {s['ef_search']} | {fmt(s.get('recall'), 3)} | {fmt(s.get('sequential_p50_ms'), 2)} | "
                         f"{fmt(s.get('ready_s'), 1)} |")
    if p.get("ef_search"):
        lines += ["", f"PostgreSQL's server ran with hnsw.ef_search {p['ef_search']['chosen']}: {p['ef_search']['why']} "
                      f"(from the in-database sweep below)."]
    h = gt["halfvec"]
    lines += ["", f"halfvec against vector (f32), over all {h['pairs']:,} query × image pairs: |cos_halfvec − cos_f32| "
                  f"max {h['max_abs_cos_diff']:.1e}, mean {h['mean_abs_cos_diff']:.1e}; the exact top-{k} by halfvec "
                  f"shares {100 * h['exact_top10_overlap']:.1f}% of its images with the exact top-{k} by f32. "
                  f"Scores move in the 4th-5th decimal; rankings only where two images tie that closely."]
    pr = projection(results)
    if pr:
        lines += ["", "Projected search throughput with N replicas on separate machines against one database "
                      "(a model, not a measurement):", "",
                  f"X(N, K) = min( N · R / c_rep, (K + 1) · D / c_db, min(N · P, (K + 1) · (M − 3)) / t_db ), with "
                  f"c_rep = {pr['c_rep_ms']:.2f} ms CPU per search in a replica and c_db = {pr['c_db_ms']:.2f} ms CPU "
                  f"per search in PostgreSQL (both measured above at {hi} clients, /proc CPU seconds ÷ searches), "
                  f"t_db = {pr['t_db_ms']:.2f} ms per search on one connection (in-database p50 at ef_search "
                  f"{prm['server_ef_search']}), P = {pr['pool']} connections per replica, M = {pr['max_connections']} "
                  f"max_connections per PostgreSQL node, R = {pr['cores']} cores per replica machine (this one), D "
                  f"cores per database node, K read replicas each as big as the primary. A search costs the database "
                  f"{pr['c_db_ms'] / pr['c_rep_ms']:.1f}× the CPU it costs a replica, so the database (its cores, "
                  f"then its read replicas) is what scale-out must grow.", "",
                  "| replicas N | " + " | ".join(f"D = {d}, K = {kr}" for d, kr in pr["columns"]) + " |",
                  "|---:|" + "---:|" * len(pr["columns"])]
        for nrep in sorted({x["replicas"] for x in pr["rows"]}):
            cells = []
            for d, kr in pr["columns"]:
                r = next(x for x in pr["rows"] if x["replicas"] == nrep and x["read_replicas"] == kr and x["db_cores"] == d)
                cells.append(f"{fmt(r['searches_per_s'], 0)}/s ({r['bound']})")
            lines.append(f"| {nrep} | " + " | ".join(cells) + " |")
        lines += ["", "Assumptions: c_rep and c_db as measured in the run above (CPU time is less disturbed by a busy "
                      "machine than latency, but still runs high on one); searches only (writes go to the primary and are not modelled); CPU is the limit "
                      "and scales linearly with cores and machines; the HNSW index stays in RAM on every database node; "
                      "the network adds latency but no CPU; the load balancer spreads clients evenly; read replicas "
                      "lag a little (a just-ingested image may miss a search on a replica); without a pooler "
                      "(PgBouncer) every replica holds its full pool open, so N · P must stay under max_connections "
                      "(a pooler in transaction mode lifts that bound, the CPU bounds remain)."]
    rp = gt["cosine_random_pairs"]
    nn = gt["cosine_nearest_neighbour"]
    lines += ["", f"Generator (`scripts/bench_store.py`, seed {prm['seed']}, written once to "
                  f"`.cache/bench/store/` and reused): {gen['clusters']:,} topic clusters (about one per "
                  f"{gen['images_per_cluster']} images; sizes Zipf-skewed with exponent {gen['zipf']}: "
                  f"{gen['cluster_size']['min']}–{gen['cluster_size']['max']} images, median "
                  f"{gen['cluster_size']['median']:.0f}); each centre = normalize({gen['alpha']} · c + "
                  f"{(1 - gen['alpha'] ** 2) ** 0.5:.2f} · u_k) with c one direction shared by all (real CLIP "
                  f"embeddings have a large common component) and u_k the cluster's own random direction; each image = "
                  f"normalize(centre + s_k · Q·(g ⊙ σ)) with g standard normal, σ_i² ∝ (i+1)^−{gen['decay']} "
                  f"(a power-law spectrum: a few directions carry most of the variation, as in real embeddings), Q a "
                  f"fixed random rotation and a per-cluster spread s_k uniform in {gen['spread'][0]}–{gen['spread'][1]}. "
                  f"Cosine of random image pairs: median {rp['p50']:.2f}, 5–95% {rp['p5']:.2f}–{rp['p95']:.2f}, "
                  f"{100 * rp['share_0.4_0.9']:.0f}% within 0.4–0.9; cosine of an image to its nearest other image: "
                  f"median {nn['p50']:.2f} (5–95% {nn['p5']:.2f}–{nn['p95']:.2f}); to its 10th: "
                  f"{gt['cosine_10th_neighbour']['p50']:.2f}."]
    lines += ["", f"Raw numbers, server and loader commands: `bench-results/{results['json_name']}` (not committed)."]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def git_state() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, stdout=subprocess.PIPE, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, stdout=subprocess.PIPE,
                               text=True).stdout.strip()
        return f"`{rev}`" + (" (with local changes)" if dirty else "")
    except OSError:
        return "?"


def section_name(n: int) -> str:
    return f"store-{n}"


def heading(n: int) -> str:
    return f"{HEADING_PREFIX}: {n:,} vectors, embedded and PostgreSQL side by side"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vectors", type=int, default=1_000_000, help="images in each store (default 1,000,000)")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--queries", type=int, default=200, help="query images for recall (default 200)")
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--clients", default="1,16", help="wrk connection levels (default 1,16)")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured wrk run per level (default 20)")
    ap.add_argument("--warmup", type=float, default=5.0, help="discarded wrk run before each level (default 5)")
    ap.add_argument("--wrk-ids", type=int, default=5000, help="image ids wrk rotates through (default 5000)")
    ap.add_argument("--ef-sweep", default="40,100,200,400", help="hnsw.ef_search values measured in the database")
    ap.add_argument("--exact-sample", type=int, default=20, help="queries timed as an exact sequential scan in PostgreSQL")
    ap.add_argument("--exact-flag-queries", type=int, default=None,
                    help="query images for the `\"exact\": true` recall pass (default: all)")
    ap.add_argument("--backends", default="embedded,postgres")
    ap.add_argument("--pg-url", default=os.environ.get("VQ_BENCH_PG_URL"),
                    help="superuser URL of a PostgreSQL with pgvector (default: env VQ_BENCH_PG_URL, else scripts/pg.sh url)")
    ap.add_argument("--model", type=Path, default=DEFAULT_CACHE / "vit-b32",
                    help="model the server runs (default .cache/bench/vit-b32, built like bench_serving.py if missing)")
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="CLIP config.json for a missing checkpoint")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--m", type=int, default=16, help="HNSW m (default 16, the store's)")
    ap.add_argument("--ef-construction", type=int, default=64, help="HNSW ef_construction (default 64, the store's)")
    ap.add_argument("--server-ef-search", default="auto",
                    help="PostgreSQL: the server's hnsw.ef_search, or `auto` (default): the smallest of --ef-sweep "
                         "whose recall in the database reaches --pg-recall-goal")
    ap.add_argument("--pg-recall-goal", type=float, default=0.95)
    ap.add_argument("--ann-ef-sweep", default="64,128,256,512",
                    help="embedded: the approximate index's search breadths measured for recall through HTTP")
    ap.add_argument("--ann-ef-search", default="default",
                    help="embedded: the breadth the measured server runs with: `default` (the server's own, what "
                         "users get), `auto` (the smallest of --ann-ef-sweep reaching --embedded-recall-goal) or a number")
    ap.add_argument("--embedded-recall-goal", type=float, default=0.97)
    ap.add_argument("--pool-size", type=int, default=16, help="the server's connection pool (store default 16)")
    ap.add_argument("--maintenance-work-mem", default="4GB", help="for the HNSW build (default 4GB)")
    ap.add_argument("--parallel-workers", type=int, default=1, help="max_parallel_maintenance_workers for the build")
    ap.add_argument("--workdir", type=Path, default=None, help="data directories (default .cache/bench/store/run-N)")
    ap.add_argument("--keep", action="store_true", help="keep the data directories and the database")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--wait-quiet", type=float, default=600,
                    help="wait up to this many seconds for other builds/benchmarks before each step (default 600)")
    ap.add_argument("--no-markdown", action="store_true")
    ap.add_argument("--from-json", type=Path, nargs="+",
                    help="re-render from saved results; several files (one backend each, same N) are shown side by side")
    args = ap.parse_args(argv)
    if args.from_json:
        results = merge_runs([json.loads(p.read_text()) for p in args.from_json])
        section = render(results)
        print(section)
        if not args.no_markdown:
            update_markdown(section_name(results["params"]["vectors"]), section, heading(results["params"]["vectors"]))
        return 0
    command = "python3 scripts/bench_store.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    args.clients = [int(c) for c in args.clients.split(",")]
    args.ef_sweep = [int(x) for x in args.ef_sweep.split(",")]
    args.ann_ef_sweep = [int(x) for x in args.ann_ef_sweep.split(",") if x.strip()]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    n = args.vectors
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
    if "postgres" in backends and shutil.which("psql") is None:
        sys.exit("psql is not installed (Debian/Ubuntu: apt-get install postgresql-client)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t_start = time.monotonic()

    args.model = args.model.resolve()
    if args.model == (DEFAULT_CACHE / "vit-b32").resolve():
        ensure_checkpoint(args.model, args.config)
    admin_url = None
    if "postgres" in backends:
        admin_url = args.pg_url or subprocess.run([str(REPO / "scripts" / "pg.sh"), "url"], stdout=subprocess.PIPE,
                                                  text=True, check=True).stdout.strip()
    vec_path = vectors_path(n, args.dim, args.seed)
    gen = generate(n, args.dim, args.seed, vec_path)
    vectors = load_vectors(vec_path, n, args.dim)
    log(f"ground truth: exact top-{args.top_k} of {args.queries} queries over {n} vectors")
    gt = ground_truth(vectors, args.queries, args.top_k, args.seed)
    log(f"  done in {gt['seconds']} s; random-pair cosine median {gt['cosine_random_pairs']['p50']:.2f}")
    del vectors

    if not args.no_build:
        wait_quiet(args.wait_quiet, check_competing=True)
    binary, loader = build(args.no_build)
    # The ONNX Runtime library the server and the loader load (idempotent; from PyPI into .runtime/).
    subprocess.run([str(REPO / "scripts" / "install-runtime.sh")], cwd=REPO, check=True, stdout=sys.stderr)
    help_text = server_help(binary)
    args.store_flag = "--store" in help_text
    # The breadth users get, read from the server itself (`[default: N]` in its help).
    found = re.search(r"--ann-ef-search <\w+>\n.*?\[default: (\d+)\]", help_text, re.S)
    args.ann_ef_default = int(found.group(1)) if found else None
    git = git_state()
    rng = np.random.default_rng(args.seed + 2)
    wrk_ids = [image_id(int(i)) for i in rng.choice(n, size=min(args.wrk_ids, n), replace=False)]

    workdir = (args.workdir or STORE_CACHE / f"run-{n}").resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    lua = workdir / "search.lua"
    write_wrk_search_lua(lua, [{"image_id": i, "top_k": args.top_k} for i in wrk_ids],
                         "scripts/bench_store.py: POST /search by image_id, rotating ids")
    results = {"backends": {}}
    try:
        for kind in backends:
            log(f"{kind}:")
            results["backends"][kind] = measure_backend(kind, binary, loader, args, vec_path, n, gt, workdir, lua, admin_url)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    stamp = dt.datetime.now(dt.timezone.utc)
    json_name = f"store-{n}-{stamp.strftime('%Y%m%dT%H%M%SZ')}.json"
    gt_small = {k: v for k, v in gt.items() if k not in ("exact_top", "exact_scores")}
    gt_small["query_ids"] = gt["query_ids"]
    results.update({
        "timestamp": stamp.strftime("%Y-%m-%d %H:%M UTC"),
        "json_name": json_name,
        "command": command,
        "git": git,
        "machine": machine_info(),
        "wrk_version": wrk_version(),
        "generator": gen,
        "ground_truth": gt_small,
        "wall_s": round(time.monotonic() - t_start, 1),
        "params": {"vectors": n, "dim": args.dim, "seed": args.seed, "queries": args.queries, "top_k": args.top_k,
                   "clients": args.clients, "seconds": args.seconds, "warmup": args.warmup, "wrk_ids": len(wrk_ids),
                   "ef_sweep": args.ef_sweep, "exact_sample": args.exact_sample, "model": str(args.model),
                   "model_name": args.model.name, "precision": args.precision, "m": args.m,
                   "ef_construction": args.ef_construction,
                   "server_ef_search": results["backends"].get("postgres", {}).get("ef_search", {}).get("chosen"),
                   "ann_ef_search": results["backends"].get("embedded", {}).get("ef_search", {}).get("chosen"),
                   "pg_recall_goal": args.pg_recall_goal, "embedded_recall_goal": args.embedded_recall_goal,
                   "pool_size": args.pool_size, "maintenance_work_mem": args.maintenance_work_mem,
                   "parallel_workers": args.parallel_workers, "store_flag": args.store_flag},
    })
    publish(results, json_name, render(results), section_name(n), heading(n), markdown=not args.no_markdown)
    log(f"total wall time {results['wall_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
