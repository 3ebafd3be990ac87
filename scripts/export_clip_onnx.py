#!/usr/bin/env python3
"""Export a Hugging Face `transformers` CLIPModel or SiglipModel to ONNX (Xenova/HF layout).

Families (read from the checkpoint's config.json `model_type`, never from a flag):

* `clip`: CLIPModel, as below.
* `siglip`: SiglipModel -- SigLIP and the fixed-resolution SigLIP 2 checkpoints (which say
  `siglip` and carry a Gemma tokenizer). The towers are exported without `attention_mask`: the
  text is padded to the model's fixed length (64) and pooled at the last position, so padding
  is part of the model, as in training. `image_embeds`/`text_embeds` are the towers'
  `pooler_output` (what `get_image_features`/`get_text_features` return). The sigmoid head
  (`logit_scale`, `logit_bias`), which the two towers alone lose, is written to
  `score_head.json`: `{"logit_scale": s, "logit_bias": b}` with the raw parameters, so
  `probability = sigmoid(cos * exp(s) + b)`.

Output layout (the same as `Xenova/clip-vit-base-patch32`, which VisionQuery
loads):

    OUT/
      config.json, preprocessor_config.json,
      tokenizer.json, tokenizer_config.json, special_tokens_map.json,
      vocab.json, merges.txt
      onnx/vision_model.onnx            pixel_values -> image_embeds, last_hidden_state
      onnx/text_model.onnx              input_ids, attention_mask -> text_embeds, last_hidden_state
      onnx/vision_model_quantized.onnx  (--quantize) int8, variant VISION_QUANT_VARIANT
      onnx/text_model_quantized.onnx    (--quantize) dynamic int8 weights

The int8 variants (dynamic, static QDQ calibrated on photos, MatMulNBits) live in
scripts/quantize_clip_onnx.py; scripts/bench_ort_variants.py measures them.

Graph signatures (all dims named; "batch_size"/"sequence_length" are dynamic):

    vision_model.onnx
      in : pixel_values       float32 [batch_size, C, H, W]   (H, W fixed = image_size)
      out: image_embeds       float32 [batch_size, projection_dim]   (NOT L2-normalised)
           last_hidden_state  float32 [batch_size, 1 + (H/patch)*(W/patch), vision_hidden]
    text_model.onnx
      in : input_ids          int64   [batch_size, sequence_length]
           attention_mask     int64   [batch_size, sequence_length]
      out: text_embeds        float32 [batch_size, projection_dim]   (NOT L2-normalised)
           last_hidden_state  float32 [batch_size, sequence_length, text_hidden]

`image_embeds` / `text_embeds` are exactly what `CLIPVisionModelWithProjection` /
`CLIPTextModelWithProjection` (equivalently `CLIPModel.get_image_features` /
`get_text_features`) return.

After exporting, the script runs the ONNX graphs with onnxruntime and compares
them with torch (batch 1 and 3; padded-vs-unpadded text batches).  Any mismatch
raises, so a successful run means the files are usable.

Examples:

    # a real checkpoint directory (config.json + model.safetensors + tokenizer files)
    python scripts/export_clip_onnx.py --checkpoint path/to/clip-vit-base-patch32 \
        --out models/clip-vit-base-patch32 --quantize

    # random weights with the real ViT-B/32 shapes (benchmarks; no weights needed)
    python scripts/export_clip_onnx.py \
        --random-config /work/shared/models/clip-tokenizer/config.json --seed 0 \
        --tokenizer-dir /work/shared/models/clip-tokenizer --out /tmp/clip-random --quantize

The functions `export_clip`, `build_random_clip`, `quantize_onnx` and
`verify_export` are importable (scripts/make_fixtures.py uses them).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quantize_clip_onnx as qz  # noqa: E402

# Files copied verbatim from the checkpoint / tokenizer directory into OUT.
AUX_FILES = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "preprocessor_config.json",
    "config.json",
    "spiece.model",
]

# The file beside config.json that keeps a sigmoid-head model's score head (see above).
SCORE_HEAD_FILE = "score_head.json"

DEFAULT_OPSET = 17

# Tolerances for the torch <-> onnxruntime check of the fp32 graphs.
FP32_MIN_COS = 0.99999
FP32_MAX_ABS_REL = 1e-3  # max |diff| relative to max |torch value|
# int8 graphs are only reported (never fatal); flagged below this cosine.
INT8_WARN_COS = 0.99


# --------------------------------------------------------------------------
# Model construction
# --------------------------------------------------------------------------


def build_random_clip(config, seed: int = 0, attn_implementation: str = "eager"):
    """Build a CLIPModel with random weights from a CLIPConfig, a config dict
    or a path to config.json. Deterministic for a given seed and torch version."""
    from transformers import CLIPConfig, CLIPModel

    if isinstance(config, (str, os.PathLike)):
        config = CLIPConfig.from_json_file(str(config))
    elif isinstance(config, dict):
        config = CLIPConfig.from_dict(config)
    torch.manual_seed(seed)
    model = CLIPModel._from_config(config, attn_implementation=attn_implementation)
    return model.eval()


def model_type_of(config) -> str:
    """`clip` or `siglip`: the family of a config (object, dict or path to config.json)."""
    import json

    if isinstance(config, (str, os.PathLike)):
        config = json.loads(Path(config).read_text())
    kind = config.get("model_type") if isinstance(config, dict) else config.model_type
    if kind not in ("clip", "siglip"):
        raise SystemExit(f"model_type {kind!r} is not supported (clip, siglip)")
    return kind


def build_random_model(config, seed: int = 0, attn_implementation: str = "eager"):
    """A random-weight CLIPModel or SiglipModel, by the config's model_type."""
    if model_type_of(config) == "clip":
        return build_random_clip(config, seed, attn_implementation)
    from transformers import SiglipConfig, SiglipModel

    if isinstance(config, (str, os.PathLike)):
        config = SiglipConfig.from_json_file(str(config))
    elif isinstance(config, dict):
        config = SiglipConfig.from_dict(config)
    torch.manual_seed(seed)
    model = SiglipModel._from_config(config, attn_implementation=attn_implementation)
    return model.eval()


def load_model(checkpoint_dir, attn_implementation: str = "eager"):
    """Load a CLIPModel or SiglipModel checkpoint directory in fp32."""
    if model_type_of(Path(checkpoint_dir) / "config.json") == "clip":
        return load_clip(checkpoint_dir, attn_implementation)
    from transformers import SiglipModel

    model = SiglipModel.from_pretrained(str(checkpoint_dir), attn_implementation=attn_implementation, dtype=torch.float32)
    return model.eval()


def is_siglip(model) -> bool:
    return model.config.model_type == "siglip"


def load_clip(checkpoint_dir, attn_implementation: str = "eager"):
    """Load a CLIPModel checkpoint directory in fp32."""
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(
        str(checkpoint_dir), attn_implementation=attn_implementation, dtype=torch.float32
    )
    return model.eval()


class VisionWithProjection(nn.Module):
    """Same computation as CLIPVisionModelWithProjection, sharing CLIPModel's weights."""

    def __init__(self, clip):
        super().__init__()
        self.vision_model = clip.vision_model
        self.visual_projection = clip.visual_projection

    def forward(self, pixel_values):
        out = self.vision_model(pixel_values=pixel_values, return_dict=True)
        image_embeds = self.visual_projection(out.pooler_output)
        return image_embeds, out.last_hidden_state


class TextWithProjection(nn.Module):
    """Same computation as CLIPTextModelWithProjection, sharing CLIPModel's weights.

    Pooling (inside CLIPTextModel): if text_config.eos_token_id == 2 (all OpenAI
    checkpoints), the pooled token is argmax(input_ids) per row -- the first
    occurrence of the highest id, i.e. <|endoftext|> = 49407; otherwise it is the
    first position where input_ids == eos_token_id."""

    def __init__(self, clip):
        super().__init__()
        self.text_model = clip.text_model
        self.text_projection = clip.text_projection

    def forward(self, input_ids, attention_mask):
        out = self.text_model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        text_embeds = self.text_projection(out.pooler_output)
        return text_embeds, out.last_hidden_state


class SiglipVision(nn.Module):
    """SiglipModel.get_image_features: the vision tower's attention-pooled `pooler_output`."""

    def __init__(self, model):
        super().__init__()
        self.vision_model = model.vision_model

    def forward(self, pixel_values):
        out = self.vision_model(pixel_values=pixel_values, return_dict=True)
        return out.pooler_output, out.last_hidden_state


class SiglipText(nn.Module):
    """SiglipModel.get_text_features without an attention mask: the last position (padding
    included) through the head, as the model was trained."""

    def __init__(self, model):
        super().__init__()
        self.text_model = model.text_model

    def forward(self, input_ids):
        out = self.text_model(input_ids=input_ids, return_dict=True)
        return out.pooler_output, out.last_hidden_state


def text_length(model) -> int | None:
    """The fixed text length of a sigmoid-head model (None: CLIP pads to the longest text)."""
    return model.config.text_config.max_position_embeddings if is_siglip(model) else None


def write_score_head(model, out_dir) -> None:
    """score_head.json with the raw logit_scale and logit_bias (SigLIP only)."""
    import json

    if not is_siglip(model):
        return
    head = {"logit_scale": float(model.logit_scale.detach().reshape(-1)[0]), "logit_bias": float(model.logit_bias.detach().reshape(-1)[0])}
    (Path(out_dir) / SCORE_HEAD_FILE).write_text(json.dumps(head, indent=2) + "\n")


# --------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------


def _torch_export(module, args, path, input_names, output_names, dynamic_axes, opset):
    """torch.onnx.export with the legacy TorchScript exporter (dynamo=False):
    simple, single-file output, dynamic axes via `dynamic_axes`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = dict(
        input_names=input_names,
        output_names=output_names,
        dynamic_axes=dynamic_axes,
        opset_version=opset,
        do_constant_folding=True,
    )
    with warnings.catch_warnings():
        # Expected tracer noise: shape checks on python ints (image size, seq <= 77)
        # become constants, which is fine for fixed image size / dynamic batch+seq;
        # the onnxruntime verification below is the real check.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*advanced indexing.*")
        try:
            torch.onnx.export(module, args, str(path), dynamo=False, **kwargs)
        except TypeError:  # very old torch without the `dynamo` argument
            torch.onnx.export(module, args, str(path), **kwargs)


def _dummy_text_inputs(vocab_size: int, eos_id: int, batch: int = 2, seq: int = 7):
    """Dummy ids ending with <|endoftext|>-like highest id (only used for tracing)."""
    ids = torch.randint(1, max(2, vocab_size - 2), (batch, seq), dtype=torch.int64)
    ids[:, 0] = vocab_size - 2  # <|startoftext|>
    ids[:, -1] = vocab_size - 1  # <|endoftext|> (highest id; argmax pooling)
    mask = torch.ones_like(ids)
    return ids, mask


@torch.no_grad()
def export_onnx_models(clip, onnx_dir, opset: int = DEFAULT_OPSET):
    """Write vision_model.onnx and text_model.onnx into onnx_dir."""
    onnx_dir = Path(onnx_dir)
    clip = clip.eval()
    vcfg = clip.config.vision_config
    tcfg = clip.config.text_config
    if is_siglip(clip):
        return export_siglip_onnx_models(clip, onnx_dir, opset)

    pixel_values = torch.randn(2, vcfg.num_channels, vcfg.image_size, vcfg.image_size)
    _torch_export(
        VisionWithProjection(clip).eval(),
        (pixel_values,),
        onnx_dir / "vision_model.onnx",
        input_names=["pixel_values"],
        output_names=["image_embeds", "last_hidden_state"],
        dynamic_axes={
            "pixel_values": {0: "batch_size"},
            "image_embeds": {0: "batch_size"},
            "last_hidden_state": {0: "batch_size"},
        },
        opset=opset,
    )

    ids, mask = _dummy_text_inputs(tcfg.vocab_size, tcfg.eos_token_id)
    _torch_export(
        TextWithProjection(clip).eval(),
        (ids, mask),
        onnx_dir / "text_model.onnx",
        input_names=["input_ids", "attention_mask"],
        output_names=["text_embeds", "last_hidden_state"],
        dynamic_axes={
            "input_ids": {0: "batch_size", 1: "sequence_length"},
            "attention_mask": {0: "batch_size", 1: "sequence_length"},
            "text_embeds": {0: "batch_size"},
            "last_hidden_state": {0: "batch_size", 1: "sequence_length"},
        },
        opset=opset,
    )
    # The TorchScript exporter names non-dynamic output dims after internal nodes
    # (e.g. "Addlast_hidden_state_dim_1"); declare the real static/dynamic dims.
    n_pos = (vcfg.image_size // vcfg.patch_size) ** 2 + 1
    proj = clip.config.projection_dim
    _set_output_dims(
        onnx_dir / "vision_model.onnx",
        {"image_embeds": ["batch_size", proj], "last_hidden_state": ["batch_size", n_pos, vcfg.hidden_size]},
    )
    _set_output_dims(
        onnx_dir / "text_model.onnx",
        {"text_embeds": ["batch_size", proj], "last_hidden_state": ["batch_size", "sequence_length", tcfg.hidden_size]},
    )


@torch.no_grad()
def export_siglip_onnx_models(model, onnx_dir, opset: int = DEFAULT_OPSET):
    """SigLIP towers: pixel_values -> image_embeds; input_ids [batch, 64] -> text_embeds."""
    vcfg, tcfg = model.config.vision_config, model.config.text_config
    pixel_values = torch.randn(2, vcfg.num_channels, vcfg.image_size, vcfg.image_size)
    _torch_export(
        SiglipVision(model).eval(),
        (pixel_values,),
        onnx_dir / "vision_model.onnx",
        input_names=["pixel_values"],
        output_names=["image_embeds", "last_hidden_state"],
        dynamic_axes={"pixel_values": {0: "batch_size"}, "image_embeds": {0: "batch_size"}, "last_hidden_state": {0: "batch_size"}},
        opset=opset,
    )
    length = tcfg.max_position_embeddings
    ids = torch.randint(0, tcfg.vocab_size, (2, length), dtype=torch.int64)
    _torch_export(
        SiglipText(model).eval(),
        (ids,),
        onnx_dir / "text_model.onnx",
        input_names=["input_ids"],
        output_names=["text_embeds", "last_hidden_state"],
        dynamic_axes={"input_ids": {0: "batch_size"}, "text_embeds": {0: "batch_size"}, "last_hidden_state": {0: "batch_size"}},
        opset=opset,
    )
    n_pos = (vcfg.image_size // vcfg.patch_size) ** 2
    _set_output_dims(
        onnx_dir / "vision_model.onnx",
        {"image_embeds": ["batch_size", vcfg.hidden_size], "last_hidden_state": ["batch_size", n_pos, vcfg.hidden_size]},
    )
    _set_output_dims(
        onnx_dir / "text_model.onnx",
        {"text_embeds": ["batch_size", tcfg.projection_size], "last_hidden_state": ["batch_size", length, tcfg.hidden_size]},
    )


def _set_output_dims(path, dims):
    """Overwrite graph output shapes with the given dims (str = symbolic, int = static)."""
    import onnx

    model = onnx.load(str(path))
    for out in model.graph.output:
        if out.name not in dims:
            continue
        shape = out.type.tensor_type.shape
        want = dims[out.name]
        if len(shape.dim) != len(want):
            raise AssertionError(f"{path}: output {out.name} has rank {len(shape.dim)}, expected {len(want)}")
        for d, w in zip(shape.dim, want):
            if isinstance(w, str):
                d.dim_param = w
            else:
                d.dim_value = w
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


# Dynamic quantization (text tower always; image tower when VISION_QUANT_VARIANT is
# "dynamic"): QInt8 weights with ORT's uint8 activations give the U8S8 MatMulInteger kernels,
# the fast path on x86-64 (AVX2 VPMADDUBSW / AVX512-VNNI VPDPBUSD). MatMul covers every Linear
# layer, Gather the token embedding; Conv (patch embedding) stays fp32 (see quantize_clip_onnx).
QUANT_WEIGHT_TYPE = "QInt8"
# SigLIP: uint8 weights (U8U8 kernels) instead. On x86-64 CPUs without VNNI (AVX2 only),
# VPMADDUBSW adds two uint8 x int8 products in a saturating int16; SigLIP's towers reach that
# limit: on an AVX2-only AMD EPYC the int8 image tower of the SigLIP fixture gave cos 0.962 to
# fp32 (SigLIP 2: 0.983), with uint8 weights 0.9999 (CLIP's: 0.9994 with int8 weights). VNNI's
# VPDPBUSD does not saturate. `reduce_range` (7-bit weights) also avoids it but cost CLIP 0.009.
SIGLIP_QUANT_WEIGHT_TYPE = "QUInt8"
QUANT_OP_TYPES = qz.DYNAMIC_OP_TYPES
# What `--quantize` writes for the image tower: a variant of scripts/quantize_clip_onnx.py,
# chosen by the measurements in BENCHMARKS.md ("int8 export variants"; the fastest one that
# keeps cos >= 0.999 to fp32).
VISION_QUANT_VARIANT = "dynamic"


def quantize_onnx(src, dst, weight_type: str = QUANT_WEIGHT_TYPE):
    """Dynamic (int8 weights, activations quantized at run time) quantization."""
    qz.quantize_dynamic_int8(src, dst, weight_type=weight_type)


def quantize_towers(out_dir, vision_variant: str = VISION_QUANT_VARIANT, calibration_images=qz.DEFAULT_IMAGES,
                    weight_type: str = QUANT_WEIGHT_TYPE):
    """Write onnx/{vision,text}_model_quantized.onnx next to the fp32 graphs. Static variants
    calibrate on photos preprocessed with out_dir's preprocessor_config.json; dynamic ones use
    `weight_type` (see SIGLIP_QUANT_WEIGHT_TYPE)."""
    onnx_dir = Path(out_dir) / "onnx"
    pixels = None
    if qz.VARIANTS[vision_variant][1]:
        calib, _ = qz.split_photos(calibration_images)
        if not calib:
            raise FileNotFoundError(f"no calibration photos in {calibration_images}")
        pixels = qz.calibration_pixels(calib, out_dir)
    print(f"quantizing vision_model ({vision_variant}" + (f", calibrated on {len(pixels)} photos)" if pixels is not None else ")"))
    if vision_variant == "dynamic":
        quantize_onnx(onnx_dir / "vision_model.onnx", onnx_dir / "vision_model_quantized.onnx", weight_type=weight_type)
    else:
        qz.quantize_variant(vision_variant, onnx_dir / "vision_model.onnx", onnx_dir / "vision_model_quantized.onnx", pixels)
    print(f"quantizing text_model (dynamic, weights {weight_type}, ops {QUANT_OP_TYPES})")
    quantize_onnx(onnx_dir / "text_model.onnx", onnx_dir / "text_model_quantized.onnx", weight_type=weight_type)


def copy_aux_files(src_dirs, out_dir, config=None):
    """Copy tokenizer / preprocessor / config files into out_dir.

    src_dirs are searched in order.  If `config` (a CLIPConfig) is given,
    config.json is written from it instead of being copied (random models)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    missing = []
    for name in AUX_FILES:
        if name == "config.json" and config is not None:
            config.to_json_file(str(out_dir / name), use_diff=False)
            continue
        for d in src_dirs:
            if d is not None and (Path(d) / name).is_file():
                shutil.copyfile(Path(d) / name, out_dir / name)
                break
        else:
            missing.append(name)
    if missing:
        print(f"warning: not found, not copied: {', '.join(missing)}", file=sys.stderr)


# --------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------


def _cos_rows(a, b):
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    b = b.reshape(b.shape[0], -1).astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _compare(tag, ort_out, torch_out, min_cos, max_abs_rel, strict=True):
    diff = np.abs(ort_out - torch_out).max()
    scale = max(np.abs(torch_out).max(), 1e-12)
    cos = _cos_rows(ort_out, torch_out).min()
    ok = cos >= min_cos and diff / scale <= max_abs_rel
    print(f"  {tag:<44} max|diff|={diff:.3e} (rel {diff / scale:.1e})  min cos={cos:.7f}  {'ok' if ok else ('MISMATCH' if strict else 'LOW (int8; not fatal)')}")
    if strict and not ok:
        raise AssertionError(f"{tag}: onnxruntime output does not match torch")
    return float(diff), float(cos)


def _session(path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _sample_texts_ids(clip, tokenizer):
    """Token ids for texts of different lengths (unpadded, one list per text)."""
    texts = ["a photo of a cat", "two dogs playing in the snow near a red fence", "pizza"]
    if tokenizer is not None:
        return [tokenizer(t, truncation=True, max_length=77)["input_ids"] for t in texts]
    # No tokenizer: synthesise <bos> x... <eos> sequences of different lengths.
    v = clip.config.text_config.vocab_size
    g = torch.Generator().manual_seed(1)
    out = []
    for n in (4, 11, 1):
        mid = torch.randint(1, v - 2, (n,), generator=g).tolist()
        out.append([v - 2] + mid + [v - 1])
    return out


@torch.no_grad()
def verify_export(clip, onnx_dir, tokenizer=None, quantized: bool = False):
    """Compare onnxruntime with torch; raises AssertionError on mismatch.

    Checks: vision batch 1 and 3; text batch 1 and 3 (padded with the pad token,
    attention_mask 0 on padding) and that each padded row equals the text run
    alone.  Quantized graphs (if present) are compared too, but only reported:
    int8 error depends on the weights."""
    onnx_dir = Path(onnx_dir)
    clip = clip.eval()
    if is_siglip(clip):
        return verify_siglip_export(clip, onnx_dir, tokenizer, quantized)
    vcfg = clip.config.vision_config
    tcfg = clip.config.text_config
    pad_id = tcfg.pad_token_id if tcfg.pad_token_id is not None else tcfg.vocab_size - 1
    if tokenizer is not None and tokenizer.pad_token_id is not None:
        pad_id = tokenizer.pad_token_id

    results = {}
    g = torch.Generator().manual_seed(1234)
    pix3 = torch.randn(3, vcfg.num_channels, vcfg.image_size, vcfg.image_size, generator=g)
    ids_list = _sample_texts_ids(clip, tokenizer)
    L = max(len(x) for x in ids_list)
    ids3 = torch.full((len(ids_list), L), pad_id, dtype=torch.int64)
    mask3 = torch.zeros((len(ids_list), L), dtype=torch.int64)
    for i, x in enumerate(ids_list):
        ids3[i, : len(x)] = torch.tensor(x)
        mask3[i, : len(x)] = 1

    # Torch references (CLIPModel's public API, not our wrappers).
    t_img3 = clip.get_image_features(pixel_values=pix3).pooler_output.numpy()
    t_txt_alone = [
        clip.get_text_features(
            input_ids=torch.tensor([x]), attention_mask=torch.ones(1, len(x), dtype=torch.int64)
        ).pooler_output.numpy()[0]
        for x in ids_list
    ]
    t_txt_alone = np.stack(t_txt_alone)
    t_txt3 = clip.get_text_features(input_ids=ids3, attention_mask=mask3).pooler_output.numpy()
    # torch itself must be padding-invariant, otherwise the reference is meaningless
    _compare("torch text padded vs alone", t_txt3, t_txt_alone, FP32_MIN_COS, FP32_MAX_ABS_REL)

    variants = [("", True)] + ([("_quantized", False)] if quantized else [])
    for suffix, strict in variants:
        min_cos, max_rel = (FP32_MIN_COS, FP32_MAX_ABS_REL) if strict else (INT8_WARN_COS, float("inf"))
        print(f"verify {onnx_dir / ('vision_model' + suffix + '.onnx')}")
        vs = _session(onnx_dir / f"vision_model{suffix}.onnx")
        o1 = vs.run(["image_embeds"], {"pixel_values": pix3[:1].numpy()})[0]
        o3, lhs3 = vs.run(["image_embeds", "last_hidden_state"], {"pixel_values": pix3.numpy()})
        results[f"vision{suffix}_b1"] = _compare("image_embeds batch 1", o1, t_img3[:1], min_cos, max_rel, strict)
        results[f"vision{suffix}_b3"] = _compare("image_embeds batch 3", o3, t_img3, min_cos, max_rel, strict)
        if strict:
            t_lhs3 = clip.vision_model(pixel_values=pix3).last_hidden_state.numpy()
            _compare("vision last_hidden_state batch 3", lhs3, t_lhs3, min_cos, max_rel, strict)

        print(f"verify {onnx_dir / ('text_model' + suffix + '.onnx')}")
        ts = _session(onnx_dir / f"text_model{suffix}.onnx")
        alone = []
        for x in ids_list:
            ids = np.array([x], dtype=np.int64)
            alone.append(ts.run(["text_embeds"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0])
        alone = np.stack(alone)
        padded, tlhs = ts.run(
            ["text_embeds", "last_hidden_state"], {"input_ids": ids3.numpy(), "attention_mask": mask3.numpy()}
        )
        results[f"text{suffix}_b1"] = _compare("text_embeds batch 1 (each text alone)", alone, t_txt_alone, min_cos, max_rel, strict)
        results[f"text{suffix}_b3"] = _compare("text_embeds batch 3 padded", padded, t_txt3, min_cos, max_rel, strict)
        # Padding invariance inside the ONNX graph itself.  Exact for fp32.  For
        # int8 it is only approximate: DynamicQuantizeLinear picks one activation
        # scale per tensor, i.e. over the whole batch including padding rows.
        results[f"text{suffix}_pad"] = _compare(
            "text_embeds padded vs alone (onnx)", padded, alone, min_cos, max_rel, strict
        )
        if strict:
            t_tlhs = clip.text_model(input_ids=ids3, attention_mask=mask3).last_hidden_state.numpy()
            # compare only non-padding positions (padding positions are garbage by design)
            m = mask3.numpy().astype(bool)
            _compare("text last_hidden_state (valid positions)", tlhs[m][None], t_tlhs[m][None], min_cos, max_rel, strict)
    return results


@torch.no_grad()
def verify_siglip_export(model, onnx_dir, tokenizer=None, quantized: bool = False):
    """SigLIP: vision batch 1 and 3; texts padded to the fixed length (as the processor does
    with padding="max_length"), batch 1 and 3, against SiglipModel's get_*_features."""
    vcfg = model.config.vision_config
    length = text_length(model)
    g = torch.Generator().manual_seed(1234)
    pix3 = torch.randn(3, vcfg.num_channels, vcfg.image_size, vcfg.image_size, generator=g)
    texts = ["a photo of a cat", "two dogs playing in the snow near a red fence", "pizza"]
    if tokenizer is not None:
        ids3 = torch.tensor([tokenizer(t, padding="max_length", truncation=True, max_length=length)["input_ids"] for t in texts])
    else:
        ids3 = torch.randint(0, model.config.text_config.vocab_size, (3, length), generator=g)
    t_img3 = model.get_image_features(pixel_values=pix3).pooler_output.numpy()
    t_txt3 = model.get_text_features(input_ids=ids3).pooler_output.numpy()
    results = {}
    variants = [("", True)] + ([("_quantized", False)] if quantized else [])
    for suffix, strict in variants:
        min_cos, max_rel = (FP32_MIN_COS, FP32_MAX_ABS_REL) if strict else (INT8_WARN_COS, float("inf"))
        print(f"verify {onnx_dir / ('vision_model' + suffix + '.onnx')}")
        vs = _session(onnx_dir / f"vision_model{suffix}.onnx")
        o1 = vs.run(["image_embeds"], {"pixel_values": pix3[:1].numpy()})[0]
        o3 = vs.run(["image_embeds"], {"pixel_values": pix3.numpy()})[0]
        results[f"vision{suffix}_b1"] = _compare("image_embeds batch 1", o1, t_img3[:1], min_cos, max_rel, strict)
        results[f"vision{suffix}_b3"] = _compare("image_embeds batch 3", o3, t_img3, min_cos, max_rel, strict)
        print(f"verify {onnx_dir / ('text_model' + suffix + '.onnx')}")
        ts = _session(onnx_dir / f"text_model{suffix}.onnx")
        alone = np.stack([ts.run(["text_embeds"], {"input_ids": ids3[i : i + 1].numpy()})[0][0] for i in range(len(texts))])
        batch = ts.run(["text_embeds"], {"input_ids": ids3.numpy()})[0]
        results[f"text{suffix}_b1"] = _compare("text_embeds batch 1 (each text alone)", alone, t_txt3, min_cos, max_rel, strict)
        results[f"text{suffix}_b3"] = _compare("text_embeds batch 3", batch, t_txt3, min_cos, max_rel, strict)
    return results


# --------------------------------------------------------------------------
# Top-level
# --------------------------------------------------------------------------


def export_clip(
    clip,
    out_dir,
    aux_dirs=(),
    quantize: bool = False,
    opset: int = DEFAULT_OPSET,
    write_config: bool = False,
    verify: bool = True,
    vision_quant: str = VISION_QUANT_VARIANT,
    calibration_images=qz.DEFAULT_IMAGES,
):
    """Export an in-memory CLIPModel to out_dir in the HF/Xenova ONNX layout.

    aux_dirs: directories searched (in order) for tokenizer/preprocessor/config
    files to copy.  write_config=True writes config.json from the model's config
    (use it for random/modified models).  Returns verification results."""
    out_dir = Path(out_dir)
    onnx_dir = out_dir / "onnx"
    onnx_dir.mkdir(parents=True, exist_ok=True)
    clip = clip.float().eval()

    print(f"exporting to {onnx_dir} (opset {opset})")
    export_onnx_models(clip, onnx_dir, opset=opset)
    # Before quantizing: static calibration preprocesses photos with preprocessor_config.json.
    copy_aux_files(list(aux_dirs), out_dir, config=clip.config if write_config else None)
    write_score_head(clip, out_dir)
    if quantize:
        weight_type = SIGLIP_QUANT_WEIGHT_TYPE if is_siglip(clip) else QUANT_WEIGHT_TYPE
        quantize_towers(out_dir, vision_quant, calibration_images, weight_type=weight_type)

    results = {}
    if verify:
        tokenizer = None
        if is_siglip(clip) and (out_dir / "tokenizer_config.json").is_file():
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(out_dir))
        elif (out_dir / "tokenizer.json").is_file():
            from transformers import CLIPTokenizerFast

            tokenizer = CLIPTokenizerFast.from_pretrained(str(out_dir))
        results = verify_export(clip, onnx_dir, tokenizer=tokenizer, quantized=quantize)
        print("verification passed")
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="transformers CLIPModel or SiglipModel checkpoint directory")
    src.add_argument("--random-config", type=Path, help="config.json: build a random-weight CLIPModel or SiglipModel")
    ap.add_argument("--seed", type=int, default=0, help="seed for --random-config (default 0)")
    ap.add_argument(
        "--tokenizer-dir",
        type=Path,
        help="where to take tokenizer/preprocessor files from (default: the checkpoint "
        "dir, or the directory of --random-config)",
    )
    ap.add_argument("--out", type=Path, required=True, help="output directory")
    ap.add_argument("--quantize", action="store_true",
                    help=f"also write *_quantized.onnx (image tower: {VISION_QUANT_VARIANT}; text tower: dynamic int8)")
    ap.add_argument("--vision-quant", choices=sorted(qz.VARIANTS), default=VISION_QUANT_VARIANT,
                    help=f"int8 variant of the image tower for --quantize (default {VISION_QUANT_VARIANT})")
    ap.add_argument("--calibration-images", type=Path, default=qz.DEFAULT_IMAGES,
                    help="photos for static (calibrated) variants (default: the shared COCO photos)")
    ap.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (>= 17, default {DEFAULT_OPSET})")
    ap.add_argument("--no-verify", action="store_true", help="skip the onnxruntime vs torch check")
    args = ap.parse_args(argv)

    if args.opset < 17:
        ap.error("--opset must be >= 17")
    torch.set_grad_enabled(False)
    if args.checkpoint:
        clip = load_model(args.checkpoint)
        aux = [args.tokenizer_dir, args.checkpoint]
        write_config = False
    else:
        clip = build_random_model(args.random_config, seed=args.seed)
        aux = [args.tokenizer_dir, args.random_config.parent]
        write_config = True  # config.json must describe the exported model
    export_clip(
        clip,
        args.out,
        aux_dirs=[d for d in aux if d is not None],
        quantize=args.quantize,
        opset=args.opset,
        write_config=write_config,
        verify=not args.no_verify,
        vision_quant=args.vision_quant,
        calibration_images=args.calibration_images,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
