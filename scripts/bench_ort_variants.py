#!/usr/bin/env python3
"""Image-tower export variants through ONNX Runtime: speed and fidelity to fp32.

    python3 scripts/bench_ort_variants.py          # int8 exports -> BENCHMARKS.md (bench:int8)
    python3 scripts/bench_ort_variants.py --variants fp32,fp32_nospin,fused,dynamic,fused_q,fused_qa \
        --batches 8,32 --no-markdown                # graph fusions and session options (diagnostic)

Runs, through onnxruntime's Python API (the same libonnxruntime the service loads) with the
session options `src/embed/onnx.rs` sets (all graph optimisations, intra-op = --threads,
inter-op 1), the vision tower of .cache/bench/vit-b32 in several variants:

- int8 exports (scripts/quantize_clip_onnx.py): dynamic (today's `--quantize`), dynamic with
  per-channel weights, static QDQ with activation scales calibrated on 30 shared photos
  (MatMul only, per-channel weights, Linear layers only, or every quantizable op), and 8-bit
  `MatMulNBits` (blockwise weights, block 32 or 128, int8 compute);
- diagnostics: the graph fused by onnxruntime.transformers' CLIP optimizer ("fused",
  Attention/SkipLayerNorm/QuickGelu fusions; its dynamic int8 "fused_q", and with the
  Attention nodes quantized "fused_qa"), and session options (spinning, optimisation level,
  memory pattern).

Each variant is measured on real photos (preprocessed before the clock starts) at each batch
size, interleaved round-robin so machine noise hits all variants alike; a cell is the best
round (images / summed call time), ratios are same-round. Fidelity: cosine of each variant's
image embedding to fp32's on the held-out photos (not used for calibration). The machine's
instruction sets are recorded: int8 speed depends on them (AVX2 vs AVX-512 VNNI).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402
import quantize_clip_onnx as qz  # noqa: E402

SECTION = "int8"  # <!-- bench:int8:start/end --> in BENCHMARKS.md (AVX-512 VNNI machines)


def section_for(machine: dict) -> str:
    """Int8 speed depends on the instruction sets, so each kernel family keeps its own table:
    `int8` for AVX-512 VNNI (the first measured), `int8-avx2` and so on for the others."""
    label = isa_label(machine)
    return SECTION if label == "AVX-512 VNNI" else "int8-" + label.lower().replace(" ", "-").replace("(", "").replace(")", "")

HEADING = "## int8 export variants"
MIN_COS = 0.999  # fidelity bar for an export to be kept
INT8_VARIANTS = ["dynamic", "dynamic_per_channel", "static_qdq", "static_qdq_per_channel", "static_qdq_linear",
                 "static_qdq_all_ops",
                 "nbits8_b32", "nbits8_b128"]
DEFAULT_VARIANTS = ["fp32", *INT8_VARIANTS]
DESCRIPTIONS = {
    "fp32": "exported fp32 graph",
    "dynamic": "int8 weights (per tensor), activations quantized at run time",
    "dynamic_per_channel": "as dynamic, per-channel weights",
    "static_qdq": "static QDQ: calibrated uint8 activations, int8 weights (per tensor), MatMul only",
    "static_qdq_per_channel": "static QDQ, per-channel weights, MatMul only",
    "static_qdq_linear": "static QDQ of the Linear layers only (attention products stay fp32)",
    "static_qdq_all_ops": "static QDQ of every quantizable op (MatMul, Conv, Add, ...)",
    "nbits8_b32": "`MatMulNBits` 8-bit weights, block 32, int8 compute (accuracy_level 4)",
    "nbits8_b128": "`MatMulNBits` 8-bit weights, block 128, int8 compute (accuracy_level 4)",
}


# ---------------------------------------------------------------------------------------------
# Graphs
# ---------------------------------------------------------------------------------------------


def int8_graphs(ckpt: Path, out: Path, names: list[str], calib_pixels) -> dict:
    """Quantized vision graphs from ckpt's fp32 one, rebuilt when older than it."""
    src = ckpt / "onnx" / "vision_model.onnx"
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in names:
        dst = out / f"vision_model_{name}.onnx"
        if not dst.is_file() or dst.stat().st_mtime < src.stat().st_mtime:
            bl.log(f"quantizing: {name}")
            qz.quantize_variant(name, src, dst, calib_pixels())
        paths[name] = dst
    return paths


def fused_graphs(ckpt: Path, out: Path) -> dict:
    """The fp32 graph fused by onnxruntime.transformers (model_type=clip), and its dynamic int8
    quantizations without / with the fused Attention nodes (QAttention)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    out.mkdir(parents=True, exist_ok=True)
    fused = out / "vision_model_fused.onnx"
    if not fused.is_file():
        bl.log("fusing the vision graph (onnxruntime.transformers optimizer, model_type=clip)")
        m = optimize_model(str(ckpt / "onnx" / "vision_model.onnx"), model_type="clip", num_heads=12, hidden_size=768,
                           opt_level=0, use_gpu=False)
        bl.log("  fused ops: " + str(m.get_fused_operator_statistics()))
        m.save_model_to_file(str(fused))
    paths = {"fused": fused}
    for name, extra_ops in (("fused_q", []), ("fused_qa", ["Attention"])):
        dst = out / f"vision_model_{name}.onnx"
        if not dst.is_file():
            # Same settings as the dynamic export; contrib ops defeat shape inference, hence
            # the default tensor type.
            quantize_dynamic(model_input=str(fused), model_output=str(dst), weight_type=QuantType.QInt8,
                             op_types_to_quantize=qz.DYNAMIC_OP_TYPES + extra_ops, per_channel=False,
                             reduce_range=False, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        paths[name] = dst
    return paths


def variant_specs(ckpt: Path, names: list[str], calib_pixels) -> dict:
    """name -> (onnx path, session options) for every requested variant."""
    onnx_dir = ckpt / "onnx"
    cache = bl.DEFAULT_CACHE / "variants"
    fp32 = onnx_dir / "vision_model.onnx"
    exported_q = onnx_dir / "vision_model_quantized.onnx"
    specs = {"fp32": (fp32, {}), "fp32_nospin": (fp32, {"spinning": False}),
             "fp32_extended": (fp32, {"level": "extended"}), "fp32_nomempattern": (fp32, {"mem_pattern": False}),
             "quantized": (exported_q, {}), "quantized_nospin": (exported_q, {"spinning": False})}
    int8 = int8_graphs(ckpt, cache, [n for n in names if n in qz.VARIANTS], calib_pixels)
    specs.update({n: (p, {}) for n, p in int8.items()})
    if any(n.startswith("fused") for n in names):
        specs.update({n: (p, {}) for n, p in fused_graphs(ckpt, cache).items()})
    unknown = [n for n in names if n not in specs]
    if unknown:
        sys.exit(f"unknown variants {unknown}; known: {sorted(specs)}")
    return {n: specs[n] for n in names}


def session(path: Path, threads: int, spinning=True, level="all", mem_pattern=True):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    }[level]
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.enable_mem_pattern = mem_pattern
    so.log_severity_level = 3
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------


def embed_all(sess, pixels, batch: int = 32):
    import numpy as np

    return np.concatenate([sess.run(["image_embeds"], {"pixel_values": pixels[s:s + batch]})[0]
                           for s in range(0, len(pixels), batch)])


def fidelity(sessions: dict, pixels) -> dict:
    """Per variant: cosine of each photo's embedding to fp32's (and centred, and nearest
    neighbour agreement; see bench_embed.fidelity)."""
    import bench_embed as be

    ref = embed_all(sessions["fp32"], pixels)
    return {n: be.fidelity(ref, embed_all(s, pixels)) for n, s in sessions.items()}


def measure_rounds(sessions: dict, pixels, batches: list[int], seconds: float, rounds: int) -> dict:
    """(variant, batch) -> list of per-round {images_per_s, foreign_cpu_share}, interleaved."""
    chunks = {b: [pixels[[(k * b + j) % len(pixels) for j in range(b)]].copy()
                  for k in range(max(1, -(-len(pixels) // b)))] for b in batches}
    res = {(n, b): [] for n in sessions for b in batches}
    for r in range(rounds):
        for b in batches:
            for n, s in sessions.items():
                xs = chunks[b]
                times, info = bl.measure(seconds, lambda i: s.run(["image_embeds"], {"pixel_values": xs[i % len(xs)]}))
                rate = b * len(times) / sum(times)
                res[(n, b)].append({"images_per_s": rate, **info})
                bl.log(f"round {r + 1} batch {b:>2} {n:<24} {rate:6.1f} images/s  "
                       f"(other processes {100 * info['foreign_cpu_share']:.0f}%)")
    return res


def summarise(raw: dict, names: list[str], batches: list[int]) -> dict:
    """Best round per cell; same-round ratios to fp32 and to dynamic (median, min, max)."""
    out = {}
    for n in names:
        row = {}
        for b in batches:
            rs = raw[(n, b)]
            row[b] = {"images_per_s": max(r["images_per_s"] for r in rs),
                      "rounds": [r["images_per_s"] for r in rs],
                      "foreign_cpu_share": max(r["foreign_cpu_share"] for r in rs)}
            for base in ("fp32", "dynamic"):
                if (base, b) in raw:
                    ratios = [x["images_per_s"] / y["images_per_s"] for x, y in zip(rs, raw[(base, b)])]
                    row[b][f"vs_{base}"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
        out[n] = row
    return out


def emulated_avx2_fidelity(paths: dict, pixels, ref, threads: int) -> dict:
    """min/mean cos to `ref` (native fp32) of embeddings computed by ONNX Runtime's AVX2 kernels:
    this script re-run under `qemu-x86_64 -cpu Haswell`, whose CPUID reports AVX2 but no AVX-512,
    so MLAS dispatches its AVX2 kernels. Fidelity only: emulated speed says nothing."""
    import numpy as np

    import bench_embed as be

    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        bl.log("qemu-x86_64 not found (apt-get install qemu-user): no AVX2-kernel fidelity check")
        return {}
    out = {}
    with tempfile.TemporaryDirectory(prefix="vq-avx2-") as tmp:
        np.save(f"{tmp}/pixels.npy", pixels)
        for name, path in paths.items():
            bl.log(f"AVX2 kernels (emulated): {name} on {len(pixels)} photos")
            cmd = [qemu, "-cpu", "Haswell", sys.executable, __file__, "--child-embed", str(path),
                   f"{tmp}/pixels.npy", f"{tmp}/{name}.npy", "--threads", str(threads)]
            subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
            c = be.cos_rows(ref, np.load(f"{tmp}/{name}.npy"))
            out[name] = {"cos_min": float(c.min()), "cos_mean": float(c.mean()), "photos": len(pixels)}
            bl.log(f"  min cos {c.min():.6f}")
    return out


def child_embed(model: str, pixels_npy: str, out_npy: str, threads: int) -> int:
    """--child-embed: embed saved pixels with one model (run under the emulator)."""
    import numpy as np

    np.save(out_npy, embed_all(session(Path(model), threads), np.load(pixels_npy), batch=8))
    return 0


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def isa_label(m: dict) -> str:
    """Short name of the int8 kernel family ONNX Runtime picks on this CPU."""
    isa = set(m.get("isa", []))
    if "amx_int8" in isa:
        return "AMX"
    if "avx512_vnni" in isa:
        return "AVX-512 VNNI"
    if "avx_vnni" in isa:
        return "AVX-VNNI"
    if "avx512f" in isa:
        return "AVX-512 (no VNNI)"
    return "AVX2" if "avx2" in isa else "no AVX2"


def ratio_cell(cell: dict, key: str) -> str:
    r = cell.get(key)
    if not r:
        return ""
    spread = f" ({r['min']:.2f}–{r['max']:.2f})" if r["max"] - r["min"] >= 0.005 else ""
    return f"{r['median']:.2f}×{spread}"


def emu_cell(e: dict | None) -> str:
    return f"{e['cos_min']:.5f} ({e['photos']} photos)" if e else "—"


def best_kept(res: dict, batch: int) -> str | None:
    """Fastest int8 variant at `batch` whose min cos to fp32 holds MIN_COS."""
    ok = [n for n in res["summary"] if n in qz.VARIANTS and res["fidelity"][n]["cos_min"] >= MIN_COS]
    return max(ok, key=lambda n: res["summary"][n][batch]["images_per_s"]) if ok else None


def render(res: dict) -> str:
    m, p = res["machine"], res["params"]
    label = isa_label(m)
    batches = p["batches"]
    head = ("| variant | what | " + " | ".join(f"images/s batch {b} ({label})" for b in batches)
            + f" | batch {batches[-1]} vs fp32 | batch {batches[-1]} vs dynamic | min cos to fp32 ({label}) | mean cos "
            "| same nearest neighbour | min cos to fp32, AVX2 kernels (emulated) | file MB |")
    rows = [head, "|---|---|" + "---:|" * (len(batches) + 7)]
    emu = res.get("avx2_emulated", {})
    for n, row in res["summary"].items():
        f = res["fidelity"][n]
        mark = " (written by `--quantize`)" if n == res["export_default"] else ""
        rows.append(f"| {n}{mark} | {DESCRIPTIONS.get(n, '')} | "
                    + " | ".join(bl.fmt(row[b]["images_per_s"]) for b in batches)
                    + f" | {ratio_cell(row[batches[-1]], 'vs_fp32')} | {ratio_cell(row[batches[-1]], 'vs_dynamic')}"
                    f" | {f['cos_min']:.5f} | {f['cos_mean']:.5f} | {100 * f['nn_agreement']:.0f}% "
                    f"| {emu_cell(emu.get(n))} | {res['sizes_mb'][n]:.0f} |")
    worst = max(c["foreign_cpu_share"] for row in res["summary"].values() for c in row.values())
    kept = best_kept(res, batches[-1])
    return "\n".join([
        f"Measured {res['timestamp']} on {bl.machine_line(m)}; **{p['threads']} threads**; onnxruntime "
        f"{res['onnxruntime']} (Python API, the service's session options). Model: the image tower of the "
        f"random-weight CLIP with the real ViT-B/32 shapes. {p['rounds']} interleaved rounds of {p['seconds']:g} s "
        f"per cell on real photos; a cell is the best round, ratios are same-round (median, range over rounds). "
        f"Fidelity: image embeddings of {res['photos']['held_out']} held-out shared photos vs fp32; static variants "
        f"calibrated on {res['photos']['calibration']} other photos. Other processes used at most "
        f"{100 * worst:.0f}% of the CPUs during the reported cells.",
        "",
        *rows,
        "",
        f"Every figure above comes from **{label}** int8 kernels ({bl.isa_text(m)}). "
        + (f"Fastest at batch {batches[-1]} with min cos ≥ {MIN_COS}: **{kept}**; "
           f"`export_clip_onnx.py --quantize` writes **{res['export_default']}**." if kept else
           f"No int8 variant holds min cos ≥ {MIN_COS}."),
        "",
        "The emulated column re-runs the listed exports under `qemu-x86_64 -cpu Haswell` (CPUID: AVX2, no "
        "AVX-512), so ONNX Runtime dispatches its AVX2 int8 kernels: it checks their accuracy, not their speed."
        if res.get("avx2_emulated") else "",
        "",
        *bl.reproduce_footer(res["command"], res["json_name"]),
    ])


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                    help="comma-separated; int8: " + ", ".join(INT8_VARIANTS) + "; also quantized (the exported "
                         "file), fp32_nospin, fp32_extended, fp32_nomempattern, quantized_nospin, fused, fused_q, "
                         "fused_qa. fp32 is always included.")
    ap.add_argument("--images", type=Path, default=bl.DEFAULT_IMAGES)
    ap.add_argument("--max-images", type=int, default=0, help="use at most this many held-out photos (0 = all)")
    ap.add_argument("--wait-quiet", type=float, default=300,
                    help="wait up to this many seconds for a quiet machine before measuring (default 300)")
    ap.add_argument("--retries", type=int, default=bl.CLEAN["retries"],
                    help="re-measure a cell disturbed by other processes (>10%% of the CPUs) at most this many "
                         f"times, waiting up to --wait-quiet s for quiet (default {bl.CLEAN['retries']})")
    ap.add_argument("--avx2-emulated", type=int, default=8, metavar="N",
                    help="on an AVX-512 machine, also embed N held-out photos with the dynamic and the kept int8 "
                         "variant on AVX2 kernels under qemu-x86_64 -cpu Haswell (fidelity only; 0 = skip; default 8)")
    ap.add_argument("--no-markdown", action="store_true", help="do not rewrite BENCHMARKS.md")
    ap.add_argument("--child-embed", nargs=3, metavar=("MODEL", "PIXELS_NPY", "OUT_NPY"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_embed:
        return child_embed(*args.child_embed, args.threads)
    command = "python3 scripts/bench_ort_variants.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    batches = [int(b) for b in args.batches.split(",")]
    names = ["fp32"] + [n for n in args.variants.split(",") if n and n != "fp32"]

    import onnxruntime

    import bench_embed as be
    import export_clip_onnx as exporter

    ckpt = bl.DEFAULT_CACHE / "vit-b32"
    if not (ckpt / "onnx" / "vision_model.onnx").is_file():
        be.ensure_checkpoint(ckpt, bl.DEFAULT_CONFIG)
    bl.CLEAN.update(retries=args.retries, wait=min(args.wait_quiet, bl.CLEAN["wait"]))
    calib, held = qz.split_photos(args.images)
    held = held[:args.max_images] if args.max_images else held
    calib_cache = {}

    def calib_pixels():
        if "x" not in calib_cache:
            calib_cache["x"] = qz.calibration_pixels(calib, ckpt)
        return calib_cache["x"]

    specs = variant_specs(ckpt, names, calib_pixels)
    bl.log(f"preprocessing {len(held)} held-out photos")
    pixels = qz.calibration_pixels(held, ckpt)
    sessions = {n: session(path, args.threads, **opts) for n, (path, opts) in specs.items()}
    fid = fidelity(sessions, pixels)
    for n, f in fid.items():
        bl.log(f"{n}: min cos to fp32 {f['cos_min']:.6f}, mean {f['cos_mean']:.6f}")
    bl.wait_quiet(args.wait_quiet)
    raw = measure_rounds(sessions, pixels, batches, args.seconds, args.rounds)

    summary = summarise(raw, names, batches)
    machine = bl.machine_info(args.threads)
    emulated = {}
    if args.avx2_emulated and "avx512f" in machine["isa"]:
        kept = best_kept({"summary": summary, "fidelity": fid}, batches[-1])
        emu_names = [n for n in dict.fromkeys(["dynamic", kept]) if n in specs]
        ref = embed_all(sessions["fp32"], pixels[:args.avx2_emulated])
        emulated = emulated_avx2_fidelity({n: specs[n][0] for n in emu_names}, pixels[:args.avx2_emulated], ref,
                                          args.threads)

    stamp = dt.datetime.now(dt.timezone.utc)
    res = {
        "timestamp": stamp.strftime("%Y-%m-%d %H:%M UTC"),
        "json_name": f"ort-variants-{stamp.strftime('%Y%m%dT%H%M%SZ')}.json",
        "command": command, "machine": machine, "onnxruntime": onnxruntime.__version__,
        "params": {"threads": args.threads, "batches": batches, "seconds": args.seconds, "rounds": args.rounds},
        "photos": {"calibration": len(calib), "held_out": len(held)},
        "export_default": exporter.VISION_QUANT_VARIANT,
        "files": {n: str(p) for n, (p, _) in specs.items()},
        "sizes_mb": {n: p.stat().st_size / 1e6 for n, (p, _) in specs.items()},
        "fidelity": fid, "summary": summary, "avx2_emulated": emulated,
        "raw": {f"{n}@{b}": v for (n, b), v in raw.items()},
    }
    bl.publish(res, res["json_name"], render(res), section_for(machine), HEADING, markdown=not args.no_markdown)
    return 0


if __name__ == "__main__":
    if "--child-embed" not in sys.argv:  # the emulated child needs only onnxruntime + numpy
        bl.ensure_reference_python()
    sys.exit(main())
