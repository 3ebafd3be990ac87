#!/usr/bin/env python3
"""int8 variants of an exported CLIP image tower (companion of scripts/export_clip_onnx.py).

Each function reads an fp32 `vision_model.onnx` (or `text_model.onnx`) and writes a quantized
graph with the same inputs and outputs, so the service can load any of them unchanged:

- `quantize_dynamic_int8`: int8 weights, activations quantized at run time
  (DynamicQuantizeLinear before every MatMul: one min/max pass over each activation);
- `quantize_static_qdq`: int8 weights and uint8 activations whose scales are calibrated
  beforehand on photos (QuantizeLinear/DequantizeLinear pairs, "QDQ"); no min/max pass at
  run time;
- `quantize_matmul_nbits`: blockwise 8-bit weights in `MatMulNBits` nodes
  (accuracy_level 4 = int8 compute on blockwise-quantized activations).

`calibration_pixels` preprocesses photos exactly as the benchmarks do (CLIPImageProcessorPil
with the checkpoint's preprocessor_config.json).

    python3 scripts/quantize_clip_onnx.py --model .cache/bench/vit-b32 --variant static_qdq \
        --out /tmp/vision_model_static.onnx
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_IMAGES = Path("/work/shared/data/photos/images")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
# Calibration uses every CALIBRATION_STRIDE-th photo (sorted by name), at most
# CALIBRATION_COUNT of them; fidelity checks use the others.
CALIBRATION_STRIDE = 8
CALIBRATION_COUNT = 32


# ---------------------------------------------------------------------------------------------
# Photos
# ---------------------------------------------------------------------------------------------


def photo_paths(images: Path) -> list[Path]:
    return sorted(p for p in Path(images).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def split_photos(images: Path) -> tuple[list[Path], list[Path]]:
    """(calibration photos, held-out photos): disjoint, deterministic."""
    paths = photo_paths(images)
    calib = [p for i, p in enumerate(paths) if i % CALIBRATION_STRIDE == 0][:CALIBRATION_COUNT]
    chosen = set(calib)
    return calib, [p for p in paths if p not in chosen]


def calibration_pixels(paths: list[Path], model_dir: Path):
    """float32 [N, 3, H, W]: PIL load_image + CLIPImageProcessorPil (the reference pipeline)."""
    import numpy as np
    from transformers.image_utils import load_image
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    processor = CLIPImageProcessorPil.from_pretrained(str(model_dir))
    out = [processor(images=load_image(str(p)), return_tensors="np")["pixel_values"][0] for p in paths]
    return np.stack(out).astype(np.float32)


class PixelReader:
    """onnxruntime CalibrationDataReader over preprocessed photos, one image per call."""

    def __init__(self, pixels, input_name: str = "pixel_values"):
        self._items = iter([{input_name: pixels[i:i + 1]} for i in range(len(pixels))])

    def get_next(self):
        return next(self._items, None)


# ---------------------------------------------------------------------------------------------
# Quantizers
# ---------------------------------------------------------------------------------------------

# MatMul covers every Linear layer (q/k/v/out proj, MLP, projections); Gather the token
# embedding of the text tower. Conv (patch embedding) stays fp32: ConvInteger with int8
# weights is not implemented on the ORT CPU EP, and it is a single small layer.
DYNAMIC_OP_TYPES = ["MatMul", "Gather"]


def quantize_dynamic_int8(src, dst, weight_type: str = "QInt8", per_channel: bool = False) -> None:
    """Dynamic quantization: int8 weights, uint8 activations quantized at run time.

    ORT always quantizes activations to uint8 here, so QInt8 weights give the U8S8
    MatMulInteger kernels (AVX2 VPMADDUBSW / AVX512-VNNI VPDPBUSD)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(model_input=str(src), model_output=str(dst), weight_type=getattr(QuantType, weight_type),
                     op_types_to_quantize=DYNAMIC_OP_TYPES, per_channel=per_channel, reduce_range=False)


def weight_matmuls(path) -> list[str]:
    """Names of the MatMul nodes with a constant (initializer) input: the Linear layers, not
    the attention products of two activations."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    consts = {i.name for i in graph.initializer}
    return [n.name for n in graph.node if n.op_type == "MatMul" and any(x in consts for x in n.input)]


def quantize_static_qdq(src, dst, pixels, per_channel: bool = False, op_types=("MatMul",),
                        method: str = "MinMax", linear_only: bool = False) -> None:
    """Static QDQ: uint8 activations with calibrated scales, int8 (symmetric) weights.
    linear_only: leave the attention products (activation x activation MatMuls) in fp32."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        model_input=str(src), model_output=str(dst), calibration_data_reader=PixelReader(pixels),
        quant_format=QuantFormat.QDQ, op_types_to_quantize=list(op_types) if op_types else None,
        nodes_to_quantize=weight_matmuls(src) if linear_only else None,
        per_channel=per_channel, reduce_range=False, activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8, calibrate_method=getattr(CalibrationMethod, method),
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
    )


def quantize_matmul_nbits(src, dst, bits: int = 8, block_size: int = 32, accuracy_level: int = 4) -> None:
    """Blockwise weight-only quantization of constant-weight MatMuls into MatMulNBits."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, accuracy_level=accuracy_level,
                                          op_types_to_quantize=("MatMul",), bits=bits)
    quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), bits=bits, block_size=block_size, is_symmetric=True,
                                     accuracy_level=accuracy_level, algo_config=config)
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)


# name -> (function, needs calibration pixels, keyword arguments)
VARIANTS = {
    "dynamic": (quantize_dynamic_int8, False, {}),
    "dynamic_per_channel": (quantize_dynamic_int8, False, {"per_channel": True}),
    "static_qdq": (quantize_static_qdq, True, {}),
    "static_qdq_per_channel": (quantize_static_qdq, True, {"per_channel": True}),
    "static_qdq_linear": (quantize_static_qdq, True, {"linear_only": True}),
    "static_qdq_all_ops": (quantize_static_qdq, True, {"op_types": None}),
    "nbits8_b32": (quantize_matmul_nbits, False, {"block_size": 32}),
    "nbits8_b128": (quantize_matmul_nbits, False, {"block_size": 128}),
}


def quantize_variant(name: str, src, dst, pixels=None) -> None:
    fn, needs_pixels, kwargs = VARIANTS[name]
    if needs_pixels:
        if pixels is None:
            raise ValueError(f"{name} needs calibration pixels")
        fn(src, dst, pixels, **kwargs)
    else:
        fn(src, dst, **kwargs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="export directory (onnx/vision_model.onnx)")
    ap.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="calibration photos")
    args = ap.parse_args(argv)
    pixels = None
    if VARIANTS[args.variant][1]:
        calib, _ = split_photos(args.images)
        pixels = calibration_pixels(calib, args.model)
    quantize_variant(args.variant, args.model / "onnx" / "vision_model.onnx", args.out, pixels)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
