#!/usr/bin/env python3
"""End-to-end ingest benchmark: `visionquery index` vs a PIL + PyTorch pipeline.

    python3 scripts/bench_ingest.py                  # 2,000 files
    python3 scripts/bench_ingest.py --files 10000

1. generates N image files once into .cache/bench/ingest-<N>/ by re-encoding the shared
   photos at varied sizes and formats (mostly 1600-4000 px JPEG q90, some PNG and WebP),
   like a folder of camera photos (the photos never enter the repository);
2. times `target/release/visionquery index DIR --model .cache/bench/vit-b32 ...` for fp32 and
   quantized, each into a fresh data directory (read + decode + preprocess + embed + store);
3. times the same work done by Python: read bytes, PIL `load_image` semantics
   (exif_transpose + convert RGB), `CLIPImageProcessorPil`, PyTorch `CLIPModel` fp32 in
   batches (torch.inference_mode, same threads), unit-normalised vectors kept in memory
   (no database: that favours the reference). Decoding runs on a thread pool overlapping
   the model (Pillow releases the GIL while decoding and resizing), at most two batches
   ahead; the best of the tried pool sizes is reported;
4. writes bench-results/ingest-<timestamp>.json and the `bench:ingest` section of BENCHMARKS.md.

The model checkpoint is the one scripts/bench_embed.py builds (built here if missing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_embed as be  # noqa: E402  (ensure_checkpoint: the same model)
import benchlib as bl  # noqa: E402

REPO = bl.REPO
SECTION = "ingest"  # <!-- bench:ingest:start/end --> in BENCHMARKS.md
SOURCES = [Path("/work/shared/data/photos/images"), Path("/work/shared/data/flickr8k/images")]
GEN_VERSION = 1


def source_photos() -> list[Path]:
    out = []
    for d in SOURCES:
        if d.is_dir():
            out += sorted(p for p in d.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return out


def _make_one(job):
    """Re-encode one photo: upscale to the long side, format and quality chosen by the job."""
    from PIL import Image, ImageOps

    src, dst, long_side, fmt = job
    with Image.open(src) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        w, h = im.size
        scale = long_side / max(w, h)
        im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)
        if fmt == "jpg":
            im.save(dst, "JPEG", quality=90)
        elif fmt == "png":
            im.save(dst, "PNG", compress_level=6)
        else:
            im.save(dst, "WEBP", quality=90)
    return os.path.getsize(dst), im.size[0] * im.size[1]


def ensure_files(n: int, cache: Path, seed: int = 0) -> dict:
    out = cache / f"ingest-{n}"
    stamp = out / ".bench-stamp.json"
    srcs = source_photos()
    want = {"files": n, "seed": seed, "version": GEN_VERSION, "sources": len(srcs)}
    if stamp.is_file():
        have = json.loads(stamp.read_text())
        if {k: have.get(k) for k in want} == want:
            bl.log(f"files: reusing {out}")
            return have
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        src = srcs[i % len(srcs)]
        r = rng.random()
        # 80% JPEG q90 1600-4000 px; 10% PNG and 10% WebP, 1600-2400 px (PNG at 4000 px is
        # 30+ MB, unlike what people keep).
        if r < 0.8:
            fmt, side = "jpg", rng.randint(1600, 4000)
        elif r < 0.9:
            fmt, side = "png", rng.randint(1600, 2400)
        else:
            fmt, side = "webp", rng.randint(1600, 2400)
        jobs.append((str(src), str(out / f"img{i:06d}.{fmt}"), side, fmt))
    bl.log(f"files: generating {n} files into {out} (one-off)")
    t = time.perf_counter()
    total_bytes = total_px = 0
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        for k, (size, px) in enumerate(pool.map(_make_one, jobs, chunksize=8)):
            total_bytes += size
            total_px += px
            if (k + 1) % 500 == 0:
                bl.log(f"  {k + 1}/{n}")
    counts = {f: sum(1 for j in jobs if j[3] == f) for f in ("jpg", "png", "webp")}
    info = dict(want, bytes=total_bytes, megapixels=total_px / 1e6, formats=counts,
                seconds_to_generate=time.perf_counter() - t)
    stamp.write_text(json.dumps(info, indent=1))
    return info


def drop_page_cache_hint(d: Path) -> None:
    """Reads the files once so every run starts with them in the page cache (fair to both)."""
    for p in d.iterdir():
        if p.is_file():
            p.read_bytes()


def run_ours(binary: Path, files_dir: Path, ckpt: Path, precision: str, threads: int, max_batch: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="vq-bench-ingest-", dir=str(bl.DEFAULT_CACHE)) as data:
        cmd = [str(binary), "index", str(files_dir), "--model", str(ckpt), "--data-dir", data,
               "--precision", precision, "--threads", str(threads), "--max-batch", str(max_batch)]
        bl.log("running:", " ".join(cmd))
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            sys.exit(f"visionquery index failed:\n{proc.stdout}\n{proc.stderr}")
    m = re.search(r"indexed (\d+), already indexed (\d+), failed (\d+) in ([\d.]+)s \(([\d.]+) images/s\)", proc.stdout)
    if not m:
        sys.exit(f"unexpected output of visionquery index:\n{proc.stdout}")
    indexed, _, failed, secs, rate = m.groups()
    return {"indexed": int(indexed), "failed": int(failed), "seconds": float(secs), "images_per_s": float(rate),
            "wall_seconds_with_model_load": wall, "command": " ".join(cmd[:1] + ["index", "DIR"] + cmd[3:4] + ["..."])}


def run_reference(files: list[Path], ckpt: Path, threads: int, batch: int, workers: int) -> dict:
    """PIL + CLIPImageProcessorPil + PyTorch, decoding on `workers` threads (0 = inline)."""
    import io

    import numpy as np
    import PIL.Image
    import torch
    from transformers import CLIPModel
    from transformers.image_utils import load_image
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    torch.set_num_threads(threads)
    model = CLIPModel.from_pretrained(str(ckpt), dtype=torch.float32, attn_implementation="sdpa").eval()
    processor = CLIPImageProcessorPil.from_pretrained(str(ckpt))

    def prep(path: Path):
        try:
            img = load_image(PIL.Image.open(io.BytesIO(path.read_bytes())))
            return processor(images=img, return_tensors="np")["pixel_values"][0]
        except Exception:  # noqa: BLE001 - counted as failed, like the service does
            return None

    vectors = []
    failed = 0
    t = time.perf_counter()

    def flush(buf):
        with torch.inference_mode():
            e = model.get_image_features(pixel_values=torch.from_numpy(np.stack(buf))).pooler_output
            e = torch.nn.functional.normalize(e, dim=-1)
        vectors.append(e.numpy())

    def bounded(pool, window):
        """pool.map in order, with at most `window` files decoded ahead (bounded memory)."""
        from collections import deque

        pending = deque()
        for f in files:
            pending.append(pool.submit(prep, f))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    buf = []
    if workers > 0:
        pool = ThreadPoolExecutor(max_workers=workers)
        results = bounded(pool, 2 * batch)
    else:
        pool = None
        results = map(prep, files)
    for pv in results:
        if pv is None:
            failed += 1
            continue
        buf.append(pv)
        if len(buf) == batch:
            flush(buf)
            buf = []
    if buf:
        flush(buf)
    if pool:
        pool.shutdown()
    secs = time.perf_counter() - t
    n = sum(len(v) for v in vectors)
    return {"indexed": n, "failed": failed, "seconds": secs, "images_per_s": len(files) / secs,
            "batch": batch, "decode_workers": workers}


def render(res: dict) -> str:
    g = res["files"]
    m = res["machine"]
    rows = ["| pipeline | images/s | seconds | ratio vs PyTorch + PIL |", "|---|---|---|---|"]
    ref = res["reference_best"]["images_per_s"]
    rows.append(f"| PyTorch fp32 + PIL (batch {res['reference_best']['batch']}, "
                f"{res['reference_best']['decode_workers']} decode threads) | {ref:.1f} | {res['reference_best']['seconds']:.1f} | 1.00× |")
    for key, label in (("ours_fp32", "`visionquery index` fp32"), ("ours_quantized", "`visionquery index` quantized")):
        r = res.get(key)
        if r:
            rows.append(f"| {label} | {r['images_per_s']:.1f} | {r['seconds']:.1f} | {r['images_per_s'] / ref:.2f}× |")
    tried = ", ".join(f"{t['decode_workers']} threads: {t['images_per_s']:.1f}" for t in res["reference_tried"])
    return "\n".join([
        f"Measured {res['timestamp']} on {bl.machine_line(m)}; **{res['threads']} threads** for the model on both sides.",
        f"{g['files']:,} files ({g['formats']['jpg']} JPEG q90 1600–4000 px, {g['formats']['png']} PNG and "
        f"{g['formats']['webp']} WebP 1600–2400 px; {g['bytes'] / 1e9:.2f} GB, {g['megapixels'] / g['files']:.1f} MP per file on average), "
        "re-encoded from the shared photos, in the page cache. Ours: the whole `index` command (read, decode, "
        "preprocess, embed, store in the index); time as printed by it (excludes model loading). "
        "Reference: read + PIL `load_image` + `CLIPImageProcessorPil` + `CLIPModel.get_image_features`, "
        "vectors kept in memory (no storage).",
        "",
        *rows,
        "",
        f"Reference decode-pool sizes tried (images/s): {tried}. Other processes' CPU share during the runs: "
        + ", ".join(f"{k} {100 * v:.0f}%" for k, v in res["contention"].items())
        + f", reference ≤ {100 * max(t['foreign_cpu_share'] for t in res['reference_tried']):.0f}%.",
        "",
        *bl.reproduce_footer(res["command"], res["json_name"]),
    ])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--workers", default="2,4", help="reference decode thread-pool sizes to try (0 = inline)")
    ap.add_argument("--cache", type=Path, default=bl.DEFAULT_CACHE)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-markdown", action="store_true")
    ap.add_argument("--wait-quiet", type=float, default=300)
    args = ap.parse_args(argv)
    command = "python3 scripts/bench_ingest.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))

    ckpt = args.cache / "vit-b32"
    be.ensure_checkpoint(ckpt, bl.DEFAULT_CONFIG)
    info = ensure_files(args.files, args.cache)
    files_dir = args.cache / f"ingest-{args.files}"
    files = sorted(p for p in files_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    binary = REPO / "target" / "release" / "visionquery"
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bin", "visionquery"], cwd=REPO, check=True, stdout=sys.stderr)
    drop_page_cache_hint(files_dir)

    res = {"threads": args.threads, "files": info, "command": command}
    contention = {}
    for prec in ("fp32", "quantized"):
        bl.wait_quiet(args.wait_quiet)
        with bl.CpuMonitor() as mon:
            res[f"ours_{prec}"] = run_ours(binary, files_dir, ckpt, prec, args.threads, args.max_batch)
        contention[f"ours_{prec}"] = mon.foreign_share
        bl.log(f"  ours {prec}: {res[f'ours_{prec}']['images_per_s']:.1f} images/s (other processes {100 * mon.foreign_share:.0f}%)")
    tried = []
    for w in [int(x) for x in args.workers.split(",")]:
        bl.wait_quiet(args.wait_quiet)
        with bl.CpuMonitor() as mon:
            r = run_reference(files, ckpt, args.threads, args.max_batch, w)
        r["foreign_cpu_share"] = mon.foreign_share
        tried.append(r)
        bl.log(f"  reference, {w} decode threads: {r['images_per_s']:.1f} images/s (other processes {100 * mon.foreign_share:.0f}%)")
    res["reference_tried"] = tried
    res["reference_best"] = max(tried, key=lambda r: r["images_per_s"])
    res["contention"] = contention
    stamp = dt.datetime.now(dt.timezone.utc)
    res["timestamp"] = stamp.strftime("%Y-%m-%d %H:%M UTC")
    res["json_name"] = f"ingest-{stamp.strftime('%Y%m%dT%H%M%SZ')}.json"
    res["machine"] = bl.machine_info(args.threads)
    bl.publish(res, res["json_name"], render(res), SECTION, "## End-to-end ingest", markdown=not args.no_markdown)
    return 0


if __name__ == "__main__":
    bl.ensure_reference_python()
    sys.exit(main())
