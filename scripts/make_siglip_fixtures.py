#!/usr/bin/env python3
"""Rebuild the SigLIP and SigLIP 2 fixtures: tiny random checkpoints, their ONNX layout and the
`transformers` reference outputs the Rust tests compare with (no Python needed to run them).

    /root/vqref/bin/python scripts/make_siglip_fixtures.py --shared /work/shared --out tests/fixtures

Writes, for FAMILY in siglip, siglip2:

    tiny-FAMILY/         the layout VisionQuery loads (exported by scripts/export_clip_onnx.py)
    reference-FAMILY/    tokens.json, pixels.safetensors, image_embeds_from_pixels.json,
                         images.json, texts.json, search.json, manifest.json

* siglip: `SiglipModel` + `SiglipTokenizer` on a small SentencePiece model trained here, converted
  to tokenizer.json by scripts/siglip_tokenizers.py (the conversion is checked on every run);
  224 px, bicubic, no crop.
* siglip2: the fixed-resolution SigLIP 2 shape: `model_type` siglip, a Gemma tokenizer
  (`GemmaTokenizer`, byte-fallback BPE trained here), text lowercased before tokenizing (the
  model card's instruction, which `Siglip2Tokenizer` enforces); 256 px, bilinear, no crop.

The reference pipeline is the one `transformers` documents for these models: the tokenizer with
`padding="max_length", max_length=64, truncation=True` (on the lowercased text for SigLIP 2),
`SiglipImageProcessorPil` after `load_image`, and `get_text_features(input_ids)` /
`get_image_features(pixel_values)` (the towers as trained: no attention mask).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import export_clip_onnx as exporter  # noqa: E402
import make_fixtures as clipfx  # noqa: E402
import siglip_tokenizers as st  # noqa: E402

SEED = 20261202
TEXT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
VISION = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, patch_size=32)
# The sigmoid head of the tiny models (the real ones learn about 4.7 and -12.9).
LOGIT_SCALE, LOGIT_BIAS = 2.5, -1.5

FAMILIES = {
    "siglip": dict(image_size=224, resample=3),
    "siglip2": dict(image_size=256, resample=2),
}
# pixel_values saved for these: a landscape photo, an EXIF-rotated one and an 8:1 strip (the
# square resize without a crop shows most there).
PIXEL_KEYS = ["shared:000000000139.jpg", "exif_rot6.jpg", "wide_320x40.jpg"]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def preprocessor_config(image_size: int, resample: int) -> dict:
    return {
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "SiglipImageProcessor",
        "image_std": [0.5, 0.5, 0.5],
        "processor_class": "SiglipProcessor",
        "resample": resample,
        "rescale_factor": 0.00392156862745098,
        "size": {"height": image_size, "width": image_size},
    }


def build_tokenizer(family: str, lines: list[str], tok_dir: Path):
    """(reference tokenizer, how texts are prepared for it, conversion record)."""
    if family == "siglip":
        spiece = st.train_siglip_spm(lines, tok_dir)
        slow = st.siglip_slow_tokenizer(spiece, tok_dir)
        fast = st.convert_siglip(slow)
        fast.save(str(tok_dir / "tokenizer.json"))
        checked = st.check_conversion(slow, fast, lines[:400] + st.MULTILINGUAL + long_texts())
        from tokenizers import Tokenizer

        st.check_conversion(slow, Tokenizer.from_file(str(tok_dir / "tokenizer.json")), st.MULTILINGUAL)
        return slow, (lambda t: t), {"slow": "SiglipTokenizer (sentencepiece)", "strings_identical": checked}
    vocab, merges = st.train_gemma_bpe(lines)
    tok = st.gemma_tokenizer(vocab, merges, tok_dir)
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    checked = st.check_conversion(tok, raw, [t.lower() for t in lines[:400] + st.MULTILINGUAL + long_texts()])
    return tok, str.lower, {"tokenizer": "GemmaTokenizer (tokenizers BPE, byte fallback)", "strings_identical": checked}


def long_texts() -> list[str]:
    out = [" ".join(["cat"] * n) for n in (61, 62, 63, 64, 70)]
    out.append("A very long description of a photograph: " + " ".join(f"item{i} and a red bicycle" for i in range(30)))
    return out


def make_family(family: str, args, lines, captions) -> dict:
    from safetensors.numpy import save_file
    from transformers import SiglipConfig
    from transformers.image_utils import load_image
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    spec = FAMILIES[family]
    model_dir = args.out / f"tiny-{family}"
    ref_dir = args.out / f"reference-{family}"
    tok_dir = args.out / f".tok-{family}"
    for d in (model_dir, ref_dir, tok_dir):
        if d.exists():
            shutil.rmtree(d)
    ref_dir.mkdir(parents=True)
    tok_dir.mkdir(parents=True)

    log(f"== {family}: tokenizer")
    tokenizer, prepare, conversion = build_tokenizer(family, lines, tok_dir)
    (tok_dir / "preprocessor_config.json").write_text(json.dumps(preprocessor_config(spec["image_size"], spec["resample"]), indent=2) + "\n")

    log(f"== {family}: model")
    text = dict(TEXT, vocab_size=len(tokenizer), projection_size=VISION["hidden_size"])
    text.update(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    text["bos_token_id"] = tokenizer.bos_token_id
    config = SiglipConfig(text_config=text, vision_config=dict(VISION, image_size=spec["image_size"]))
    model = exporter.build_random_model(config, seed=SEED)
    # transformers' own init tells pictures apart but gives texts nearly parallel embeddings
    # (pairwise cos 0.93); unit-gain weights in the text tower spread them (cosine_stats in the
    # manifest). The head is set by hand, since init zeroes it.
    with torch.no_grad():
        g = torch.Generator().manual_seed(SEED)
        for name, p in model.text_model.named_parameters():
            if p.dim() >= 2 and "embedding" not in name:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
        model.logit_scale.fill_(LOGIT_SCALE)
        model.logit_bias.fill_(LOGIT_BIAS)
    verify = exporter.export_clip(model, model_dir, aux_dirs=[tok_dir], quantize=True, write_config=True, verify=True)
    shutil.rmtree(tok_dir)

    processor = SiglipImageProcessorPil.from_pretrained(str(model_dir))
    length = model.config.text_config.max_position_embeddings

    def ids_of(t: str) -> list[int]:
        return tokenizer(prepare(t), padding="max_length", truncation=True, max_length=length)["input_ids"]

    def text_embed(t: str) -> np.ndarray:
        return model.get_text_features(input_ids=torch.tensor([ids_of(t)])).pooler_output[0].numpy()

    def pixels_of(path) -> tuple[np.ndarray, tuple[int, int]]:
        img = load_image(str(path))
        return processor(images=img, return_tensors="np")["pixel_values"][0].astype(np.float32), img.size

    def image_embed(pv: np.ndarray) -> np.ndarray:
        return model.get_image_features(pixel_values=torch.from_numpy(pv[None])).pooler_output[0].numpy()

    def path_of(key: str) -> Path:
        return args.out / "photos" / key[7:] if key.startswith("shared:") else args.out / "images" / key

    log(f"== {family}: references")
    token_texts = lines[:200] + st.MULTILINGUAL + long_texts()
    tokens = [{"text": t, "ids": ids_of(t)} for t in token_texts]
    (ref_dir / "tokens.json").write_text(json.dumps(tokens, indent=1, ensure_ascii=False) + "\n")

    image_keys = sorted(p.name for p in (args.out / "images").iterdir() if p.name not in ("grey16.png",))
    image_keys += [f"shared:{p.name}" for p in sorted((args.out / "photos").glob("*.jpg"))]
    entries, pixels = [], {}
    for key in image_keys:
        pv, (w, h) = pixels_of(path_of(key))
        entries.append({"file": key, "width": w, "height": h, "embedding": clipfx.rfloats(image_embed(pv))})
        if key in PIXEL_KEYS:
            pixels[key] = pv
    (ref_dir / "images.json").write_text(json.dumps(entries, indent=1) + "\n")
    save_file({k: pixels[k] for k in PIXEL_KEYS}, str(ref_dir / "pixels.safetensors"), metadata={"layout": f"float32 [3,{spec['image_size']},{spec['image_size']}] CHW, SiglipImageProcessorPil output"})
    from_pix = model.get_image_features(pixel_values=torch.from_numpy(np.stack([pixels[k] for k in PIXEL_KEYS]))).pooler_output.numpy()
    (ref_dir / "image_embeds_from_pixels.json").write_text(
        json.dumps([{"file": k, "embedding": clipfx.rfloats(from_pix[i])} for i, k in enumerate(PIXEL_KEYS)], indent=1) + "\n"
    )

    shared = [e for e in entries if e["file"].startswith("shared:")]
    text_list = [captions[e["file"][7:]][0] for e in shared if e["file"][7:] in captions][:12] + st.MULTILINGUAL[10:18]
    text_embs = np.stack([text_embed(t) for t in text_list])
    (ref_dir / "texts.json").write_text(
        json.dumps([{"text": t, "embedding": clipfx.rfloats(e)} for t, e in zip(text_list, text_embs)], indent=1, ensure_ascii=False) + "\n"
    )
    img_embs = np.stack([np.array(e["embedding"], dtype=np.float32) for e in shared])
    ti = text_embs / np.linalg.norm(text_embs, axis=1, keepdims=True)
    ii = img_embs / np.linalg.norm(img_embs, axis=1, keepdims=True)
    cos = ti.astype(np.float64) @ ii.astype(np.float64).T
    # The model's own sigmoid head on the same pairs (logits_per_text of SiglipModel.forward).
    logits = cos * np.exp(LOGIT_SCALE) + LOGIT_BIAS
    prob = 1.0 / (1.0 + np.exp(-logits))
    (ref_dir / "search.json").write_text(
        json.dumps(
            {
                "texts": text_list,
                "images": [e["file"] for e in shared],
                "scores": [[round(float(x), 6) for x in row] for row in cos],
                "probabilities": [[round(float(x), 6) for x in row] for row in prob],
            },
            indent=1,
            ensure_ascii=False,
        )
        + "\n"
    )
    # The head as SiglipModel.forward computes it, so the formula above is checked, not assumed.
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor([ids_of(text_list[0])]),
            pixel_values=torch.from_numpy(pixels_of(path_of(shared[0]["file"]))[0][None]),
        )
    assert abs(float(torch.sigmoid(out.logits_per_text)[0, 0]) - prob[0, 0]) < 1e-5

    import onnxruntime
    import tokenizers
    import transformers

    manifest = {
        "family": family,
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__,
        },
        "seed": SEED,
        "text_config": text,
        "vision_config": dict(VISION, image_size=spec["image_size"]),
        "logit_scale": LOGIT_SCALE,
        "logit_bias": LOGIT_BIAS,
        "tokenizer_conversion": conversion,
        "export_verification": {k: [round(v[0], 8), round(v[1], 8)] for k, v in verify.items()},
        "cosine_stats": {"images": clipfx.pairwise_cos_stats(img_embs), "texts": clipfx.pairwise_cos_stats(text_embs)},
    }
    (ref_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    log(json.dumps(manifest["cosine_stats"]))
    return manifest


def main(argv=None):
    ap = argparse.ArgumentParser(description="Rebuild the SigLIP fixtures deterministically")
    ap.add_argument("--shared", type=Path, required=True, help="the shared directory (e.g. /work/shared)")
    ap.add_argument("--out", type=Path, required=True, help="fixtures directory (e.g. tests/fixtures)")
    ap.add_argument("--family", choices=sorted(FAMILIES), action="append", help="only these (default: all)")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    torch.use_deterministic_algorithms(True)
    lines = st.training_lines(args.shared / "data" / "flickr8k" / "captions.tsv")
    captions = json.loads((args.shared / "data" / "photos" / "captions.json").read_text())
    for family in args.family or sorted(FAMILIES):
        make_family(family, args, lines, captions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
