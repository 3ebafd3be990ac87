#!/usr/bin/env python3
"""Diagnostic A/B of ONNX Runtime settings for the image tower (not part of the report).

    python3 scripts/bench_ort_variants.py [--threads 2] [--batches 8,32] [--seconds 4] [--rounds 3]

Runs, through onnxruntime's Python API (the same libonnxruntime the service loads), the
vision tower of .cache/bench/vit-b32 in several variants, interleaved round-robin so machine
noise hits all variants alike, and prints images/s (best round) per variant and batch:

- graph: the exported graph ("base") vs the graph fused by onnxruntime.transformers'
  optimizer for CLIP ("fused": Attention, SkipLayerNorm, QuickGelu/BiasGelu fusions),
  each in fp32 and dynamic int8 (the int8 one quantized from the fused graph with the
  same settings as scripts/export_clip_onnx.py);
  and the fused graph with its Attention nodes quantized too (QAttention: "fused_qa");
- session options: spinning on/off, graph optimisation level, memory pattern.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_embed as be  # noqa: E402


def fused_graphs(ckpt: Path, out: Path) -> dict:
    import onnx
    from onnxruntime.transformers.optimizer import optimize_model

    sys.path.insert(0, str(be.SCRIPTS))
    import export_clip_onnx as exporter

    out.mkdir(parents=True, exist_ok=True)
    fused = out / "vision_model_fused.onnx"
    fused_q = out / "vision_model_fused_quantized.onnx"
    fused_qa = out / "vision_model_fused_quantized_attention.onnx"
    if not fused.is_file():
        be.log("fusing the vision graph (onnxruntime.transformers optimizer, model_type=clip)")
        m = optimize_model(str(ckpt / "onnx" / "vision_model.onnx"), model_type="clip", num_heads=12, hidden_size=768,
                           opt_level=0, use_gpu=False)
        be.log("  fused ops: " + str(m.get_fused_operator_statistics()))
        m.save_model_to_file(str(fused))
    if not fused_q.is_file():
        # Same settings as scripts/export_clip_onnx.py; contrib ops defeat shape inference,
        # hence the default tensor type.
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(model_input=str(fused), model_output=str(fused_q),
                         weight_type=getattr(QuantType, exporter.QUANT_WEIGHT_TYPE),
                         op_types_to_quantize=exporter.QUANT_OP_TYPES, per_channel=False, reduce_range=False,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    if not fused_qa.is_file():
        # Also quantize the fused Attention nodes (their QKV projection) into QAttention.
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(model_input=str(fused), model_output=str(fused_qa),
                         weight_type=getattr(QuantType, exporter.QUANT_WEIGHT_TYPE),
                         op_types_to_quantize=exporter.QUANT_OP_TYPES + ["Attention"], per_channel=False,
                         reduce_range=False, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    ops = {}
    for p in (fused, fused_q, fused_qa):
        g = onnx.load(str(p), load_external_data=False).graph
        c = {}
        for n in g.node:
            c[n.op_type] = c.get(n.op_type, 0) + 1
        ops[p.name] = c
    return {"fused": fused, "fused_quantized": fused_q, "fused_quantized_attention": fused_qa, "ops": ops}


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="8,32")
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variants", default="base,base_nospin,fused,base_q,base_q_nospin,fused_q,fused_qa")
    args = ap.parse_args(argv)
    import numpy as np

    ckpt = be.DEFAULT_CACHE / "vit-b32"
    g = fused_graphs(ckpt, be.DEFAULT_CACHE / "variants")
    for k, v in g["ops"].items():
        be.log(f"{k}: {dict(sorted(v.items(), key=lambda x: -x[1])[:12])}")
    onnx_dir = ckpt / "onnx"
    specs = {
        "base": (onnx_dir / "vision_model.onnx", {}),
        "base_nospin": (onnx_dir / "vision_model.onnx", {"spinning": False}),
        "base_extended": (onnx_dir / "vision_model.onnx", {"level": "extended"}),
        "base_nomempattern": (onnx_dir / "vision_model.onnx", {"mem_pattern": False}),
        "fused": (g["fused"], {}),
        "base_q": (onnx_dir / "vision_model_quantized.onnx", {}),
        "base_q_nospin": (onnx_dir / "vision_model_quantized.onnx", {"spinning": False}),
        "fused_q": (g["fused_quantized"], {}),
        "fused_qa": (g["fused_quantized_attention"], {}),
        "fused_qa_nospin": (g["fused_quantized_attention"], {"spinning": False}),
    }
    names = args.variants.split(",")
    sessions = {n: session(specs[n][0], args.threads, **specs[n][1]) for n in names}
    rng = np.random.default_rng(0)
    batches = [int(b) for b in args.batches.split(",")]
    pix = rng.standard_normal((max(batches), 3, 224, 224), dtype=np.float32)
    ref = {}
    for n, s in sessions.items():
        ref[n] = s.run(["image_embeds"], {"pixel_values": pix[:4]})[0]
    base_out = ref.get("base")
    if base_out is not None:
        for n, o in ref.items():
            be.log(f"{n}: min cos to base fp32 = {be.cos_rows(base_out, o).min():.6f}")
    best = {(n, b): 0.0 for n in names for b in batches}
    for r in range(args.rounds):
        for b in batches:
            for n in names:
                x = pix[:b]
                times, info = be.measure(args.seconds, lambda i: sessions[n].run(["image_embeds"], {"pixel_values": x}))
                rate = b * len(times) / sum(times)
                best[(n, b)] = max(best[(n, b)], rate)
                be.log(f"round {r + 1} batch {b:>2} {n:<16} {rate:6.1f} images/s  (other processes {100 * info['foreign_cpu_share']:.0f}%)")
    print(f"| variant | " + " | ".join(f"batch {b}" for b in batches) + " |")
    print("|---|" + "---|" * len(batches))
    for n in names:
        print(f"| {n} | " + " | ".join(f"{best[(n, b)]:.1f}" for b in batches) + " |")
    return 0


if __name__ == "__main__":
    be.ensure_reference_python()
    sys.exit(main())
