#!/usr/bin/env python3
"""(Re)build every file in tests/fixtures/ deterministically.

    python scripts/make_fixtures.py --shared /work/shared --out tests/fixtures

Needs the reference venv (scripts/requirements-reference.txt) and the shared
directory with:
    models/clip-tokenizer/   real openai/clip-vit-base-patch32 tokenizer + configs (no weights)
    data/photos/images/      COCO photos;  data/photos/captions.json, meta.json

What it writes (see tests/fixtures/README.md for the details):
    tiny-clip/               random-weight tiny CLIP, ONNX (fp32 + int8) in the HF/Xenova layout
    images/                  small derived test images in many encodings
    reference/manifest.json  versions, model summary, provenance of every file
    reference/tokens.json    reference token ids (CLIPTokenizerFast)
    reference/images.json    reference image embeddings (load_image -> CLIPImageProcessorPil -> torch)
    reference/pixels.safetensors, reference/image_embeds_from_pixels.json
    reference/texts.json     reference text embeddings
    reference/search.json    text x image cosine similarities

Everything is seeded; re-running with the same package versions gives
byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import export_clip_onnx as exporter  # noqa: E402

SEED = 20240607

# ---------------------------------------------------------------------------
# Tiny model: real tokenizer / vocab (49408), 77 positions, 224 px images with
# 32 px patches (so the real preprocessor_config.json applies), the real
# bos/eos/pad ids and the real pooling rule (eos_token_id == 2 -> argmax of
# input_ids).  Dims are small to keep the ONNX files small: the 49408 x hidden
# token embedding dominates, hence text hidden 16.  initializer_factor 4 makes
# the random model discriminate between inputs (with the default 1.0, embeddings
# of different photos have mean pairwise cosine ~0.95, max ~0.998).
# ---------------------------------------------------------------------------
TINY_PROJECTION_DIM = 32
TINY_INIT_FACTOR = 4.0
TINY_TEXT = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
TINY_VISION = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)

# Source photos for the derived images: all COCO licence 4 = CC BY 2.0, which
# allows derivatives.
SRC_A = "000000020247.jpg"  # landscape, bears
SRC_B = "000000012280.jpg"  # portrait, airport
SRC_C = "000000269314.jpg"  # landscape, cat in a banana tree

# Shared photos referenced by name (never copied into the repo).
SHARED_REFS = [
    SRC_A,
    SRC_B,
    SRC_C,
    "000000000139.jpg",
    "000000099053.jpg",
    "000000126107.jpg",
    "000000214753.jpg",
    "000000252332.jpg",
    "000000405279.jpg",
    "000000423617.jpg",
    "000000427034.jpg",
    "000000551780.jpg",
]
# pixel_values saved for these (processor output fed straight to the models)
PIXEL_KEYS = [f"shared:{SHARED_REFS[3]}", f"shared:{SHARED_REFS[1]}", "exif_rot6.jpg", "rgba.png"]

# COCO licence table (meta.json mixes numeric ids and names).
COCO_LICENSES = {
    1: ("Attribution-NonCommercial-ShareAlike License", "http://creativecommons.org/licenses/by-nc-sa/2.0/"),
    2: ("Attribution-NonCommercial License", "http://creativecommons.org/licenses/by-nc/2.0/"),
    3: ("Attribution-NonCommercial-NoDerivs License", "http://creativecommons.org/licenses/by-nc-nd/2.0/"),
    4: ("Attribution License", "http://creativecommons.org/licenses/by/2.0/"),
    5: ("Attribution-ShareAlike License", "http://creativecommons.org/licenses/by-sa/2.0/"),
    6: ("Attribution-NoDerivs License", "http://creativecommons.org/licenses/by-nd/2.0/"),
    7: ("No known copyright restrictions", "http://flickr.com/commons/usage/"),
    8: ("United States Government Work", "http://www.usa.gov/copyright.shtml"),
}
LICENSE_IDS = {name: i for i, (name, _) in COCO_LICENSES.items()}

MAX_SIDE = 320  # derived images: longer side <= 320 px


def log(*a):
    print(*a, flush=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def license_of(meta: dict, name: str) -> dict:
    lic = meta[name]["license"]
    lic_id = lic if isinstance(lic, int) else LICENSE_IDS[lic]
    lname, url = COCO_LICENSES[lic_id]
    return {"coco_license_id": lic_id, "license": lname, "license_url": url, "flickr_url": meta[name]["flickr_url"]}


# ---------------------------------------------------------------------------
# Derived images
# ---------------------------------------------------------------------------


def shrink(im: Image.Image, max_side: int = MAX_SIDE) -> Image.Image:
    """Resize (PIL LANCZOS) so that the longer side is <= max_side."""
    w, h = im.size
    s = min(1.0, max_side / max(w, h))
    if s >= 1.0:
        return im.copy()
    return im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)


def write_png16(path: Path, arr: np.ndarray) -> None:
    """Minimal PNG encoder for 16-bit greyscale (HxW) or 16-bit RGB (HxWx3).
    Pillow cannot write 16-bit RGB PNGs, so we do it by hand (filter 0)."""
    h, w = arr.shape[:2]
    color_type = 2 if arr.ndim == 3 else 0
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    )


def write_safetensors(path: Path, tensors: dict, metadata: dict) -> None:
    """Write a float32 safetensors file with a byte-stable header (sorted keys).
    (safetensors.numpy.save_file orders __metadata__ entries non-deterministically.)"""
    header, offset, blobs = {"__metadata__": dict(sorted(metadata.items()))}, 0, []
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name], dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
        blobs.append(arr.tobytes())
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * (-len(hjson) % 8)  # pad header to 8-byte alignment
    path.write_bytes(struct.pack("<Q", len(hjson)) + hjson + b"".join(blobs))


def to_16bit(a8: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """8-bit -> 16-bit with a random low byte: high byte = original value, so a
    decoder that keeps the high byte (>> 8) and one that rounds (v / 257) differ."""
    return a8.astype(np.uint16) * 256 + rng.integers(0, 256, size=a8.shape, dtype=np.uint16)


def with_exif_orientation(im: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    return exif.tobytes()


def make_images(photos_dir: Path, out_dir: Path, meta: dict) -> tuple[list[dict], dict]:
    """Write the derived images; return (provenance records, {name: 16-bit array})."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    src = {k: Image.open(photos_dir / k).convert("RGB") for k in (SRC_A, SRC_B, SRC_C)}
    small = {k: shrink(v) for k, v in src.items()}
    records = []

    def rec(name, source, transform, **extra):
        p = out_dir / name
        r = {
            "file": name,
            "source": f"shared:{source}" if source else None,
            "transformation": transform,
            "bytes": p.stat().st_size,
        }
        with Image.open(p) as im:
            r["stored_mode"] = im.mode
            r["stored_size"] = list(im.size)
            r["format"] = im.format
        r.update(extra)
        records.append(r)

    a, b, c = small[SRC_A], small[SRC_B], small[SRC_C]
    shrink_note = f"PIL LANCZOS resize to longer side {MAX_SIDE}"

    a.save(out_dir / "baseline.jpg", "JPEG", quality=90)
    rec("baseline.jpg", SRC_A, f"{shrink_note}; baseline JPEG q90 4:2:0")

    b.save(out_dir / "progressive.jpg", "JPEG", quality=90, progressive=True, optimize=True)
    rec("progressive.jpg", SRC_B, f"{shrink_note}; progressive JPEG q90")

    # Orientation 6 = "rotate 90 deg clockwise to display": store the pixels
    # rotated 90 deg counter-clockwise so that exif_transpose restores the photo.
    c.transpose(Image.Transpose.ROTATE_90).save(
        out_dir / "exif_rot6.jpg", "JPEG", quality=90, exif=with_exif_orientation(c, 6)
    )
    rec("exif_rot6.jpg", SRC_C, f"{shrink_note}; pixels stored rotated 90 CCW, EXIF Orientation=6; JPEG q90")

    a.transpose(Image.Transpose.ROTATE_180).save(
        out_dir / "exif_rot3.jpg", "JPEG", quality=90, exif=with_exif_orientation(a, 3)
    )
    rec("exif_rot3.jpg", SRC_A, f"{shrink_note}; pixels stored rotated 180, EXIF Orientation=3; JPEG q90")

    b.save(out_dir / "rgb.png", "PNG", optimize=True)
    rec("rgb.png", SRC_B, f"{shrink_note}; PNG RGB 8-bit")

    # RGBA: radial alpha (opaque centre, fully transparent corners, partial in
    # between).  Colour is kept under transparent pixels.
    w, h = c.size
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((xx - w / 2) / (w / 2), (yy - h / 2) / (h / 2))
    alpha = np.clip((1.2 - r) / 0.6, 0, 1) * 255
    rgba = np.dstack([np.asarray(c), alpha.round().astype(np.uint8)])
    Image.fromarray(rgba, "RGBA").save(out_dir / "rgba.png", "PNG", optimize=True)
    rec("rgba.png", SRC_C, f"{shrink_note}; PNG RGBA, radial alpha 255 centre -> 0 corners (RGB kept under alpha)")

    a.convert("L").save(out_dir / "grey.png", "PNG", optimize=True)
    rec("grey.png", SRC_A, f"{shrink_note}; PIL convert('L'); PNG greyscale 8-bit")

    la = Image.merge("LA", (b.convert("L"), Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90).resize(b.size)))
    la.save(out_dir / "grey_alpha.png", "PNG", optimize=True)
    rec("grey_alpha.png", SRC_B, f"{shrink_note}; PNG greyscale+alpha (LA), horizontal alpha gradient")

    # 16-bit PNGs: smaller (longer side 160) because the random low bytes do not compress.
    c16, a16 = shrink(c, 160), shrink(a, 160)
    note16 = "PIL LANCZOS resize to longer side 160"
    raw16 = {"grey16.png": to_16bit(np.asarray(c16.convert("L")), rng), "rgb16.png": to_16bit(np.asarray(a16), rng)}
    write_png16(out_dir / "grey16.png", raw16["grey16.png"])
    rec("grey16.png", SRC_C, f"{note16}; convert('L'); 16-bit greyscale PNG, value = v*256 + random low byte")

    write_png16(out_dir / "rgb16.png", raw16["rgb16.png"])
    rec("rgb16.png", SRC_A, f"{note16}; 16-bit RGB PNG, value = v*256 + random low byte")

    pal = b.quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    pal.save(out_dir / "palette.png", "PNG", optimize=False)
    rec("palette.png", SRC_B, f"{shrink_note}; quantize 64 colours median-cut, no dither; palette PNG (P), no transparency")

    palc = c.quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    trns_index = int(np.bincount(np.asarray(palc).ravel()).argmax())  # most frequent colour
    palc.save(out_dir / "palette_trns.png", "PNG", optimize=False, transparency=trns_index)
    rec(
        "palette_trns.png",
        SRC_C,
        f"{shrink_note}; quantize 64 colours; palette PNG with tRNS: index {trns_index} (most frequent) transparent",
        transparent_index=trns_index,
    )

    a.save(out_dir / "webp_lossy.webp", "WEBP", quality=80, method=4)
    rec("webp_lossy.webp", SRC_A, f"{shrink_note}; WebP lossy q80")

    b.save(out_dir / "webp_lossless.webp", "WEBP", lossless=True, quality=100, method=4)
    rec("webp_lossless.webp", SRC_B, f"{shrink_note}; WebP lossless")

    f2 = a.resize(c.size, Image.Resampling.LANCZOS)
    c.save(out_dir / "animated.gif", "GIF", save_all=True, append_images=[f2], duration=500, loop=0)
    rec("animated.gif", SRC_C, f"{shrink_note}; 2-frame animated GIF (frame 0 = this photo, frame 1 = {SRC_A}); reference = frame 0")

    # CMYK with grey-component replacement so K carries information.
    rgbf = np.asarray(b).astype(np.float64)
    cmy = 255.0 - rgbf
    k = cmy.min(axis=2, keepdims=True)
    cmy_ = np.where(k < 255, (cmy - k) / np.maximum(255 - k, 1e-9) * 255, 0)
    cmyk = np.dstack([cmy_, k]).round().clip(0, 255).astype(np.uint8)
    Image.fromarray(cmyk, "CMYK").save(out_dir / "cmyk.jpg", "JPEG", quality=90)
    rec("cmyk.jpg", SRC_B, f"{shrink_note}; RGB->CMYK with full grey-component replacement (K=min(C,M,Y)); CMYK JPEG q90 (Adobe marker, as Pillow writes it)")

    # Very wide/thin: a 320x40 strip from the middle.
    sw, sh = a.size
    top = (sh - 40) // 2
    a.crop((0, top, 320, top + 40)).save(out_dir / "wide_320x40.jpg", "JPEG", quality=90)
    rec("wide_320x40.jpg", SRC_A, f"{shrink_note}; crop 320x40 from the vertical middle; JPEG q90")

    # Tiny: 20x15 (224*20/15 = 298.67 -> resize maths truncates to 298).
    c.resize((20, 15), Image.Resampling.LANCZOS).save(out_dir / "tiny_20x15.png", "PNG")
    rec("tiny_20x15.png", SRC_C, "PIL LANCZOS resize to 20x15; PNG RGB")

    for r_ in records:
        r_["source_license"] = license_of(meta, r_["source"].split(":", 1)[1])
    return records, raw16


# ---------------------------------------------------------------------------
# Token fixtures
# ---------------------------------------------------------------------------


def edge_case_texts(tokenizer) -> list[str]:
    texts = [
        "",
        " ",
        "   \t  \n ",
        "A PHOTO OF A CAT",
        "A Photo Of A Cat On A MacBook",
        "HeLLo WoRLD",
        "Hello, world! How's it going?? (fine...) -- yes; no: maybe.",
        "!!!???...,,,;;;:::",
        "numbers 0 1 2 10 42 123 2024 3.14159 1,000,000 1e-5 #1 50%",
        "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber Stra\u00dfe se\u00f1or \u00e5ngstr\u00f6m",
        "Cafe\u0301 (combining accent) vs Caf\u00e9",
        "\u732b\u304c\u5ea7\u3063\u3066\u3044\u308b \u4e00\u53ea\u732b \uace0\uc591\uc774",
        "a dog \U0001F436 and a cat \U0001F431 \u2764\ufe0f \U0001F44D\U0001F3FD \U0001F1EB\U0001F1F7",
        "line one\nline two\r\nline three\ttabbed",
        "repeated     spaces   between    words",
        "  leading and trailing spaces  ",
        "<b>bold</b> <img src=\"x.jpg\"/> &amp; &lt;tag&gt; <|endoftext|>",
        "don't it's we're I'm you'll they've she'd DON'T IT'S",
        "rock'n'roll o'clock 'quoted' \"double quoted\" \u2018curly\u2019 \u201ccurly\u201d",
        "e-mail user@example.com http://example.com/a?b=c#d",
        "snake_case camelCase kebab-case CONSTANT_CASE",
        "a",
        "<|startoftext|>",
        "\u00a0non-breaking\u00a0space and zero\u200bwidth",
        "\u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u0442\u0435\u043a\u0441\u0442 \u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u0627\u0644\u0639\u0631\u0628\u064a\u0629",
    ]
    # exactly 77 tokens (75 + <|startoftext|> + <|endoftext|>), 76 and 78 around it
    for n in (75, 76, 74):
        texts.append(" ".join(["cat"] * n))
    # much longer than 77 tokens: truncation must keep <|endoftext|> at the end
    texts.append(
        "A very long description of a photograph: " + " ".join(f"item{i} and a red bicycle" for i in range(40))
    )
    for t in texts[-4:]:
        n = len(tokenizer(t)["input_ids"])
        log(f"  long text: {n} tokens untruncated")
    return texts


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def tiny_config(real_config_path: Path):
    from transformers import CLIPConfig

    cfg = json.loads(real_config_path.read_text())
    cfg["projection_dim"] = TINY_PROJECTION_DIM
    cfg["initializer_factor"] = TINY_INIT_FACTOR
    cfg["text_config"].update(TINY_TEXT, projection_dim=TINY_PROJECTION_DIM, initializer_factor=TINY_INIT_FACTOR)
    cfg["vision_config"].update(TINY_VISION, projection_dim=TINY_PROJECTION_DIM, initializer_factor=TINY_INIT_FACTOR)
    config = CLIPConfig.from_dict(cfg)
    # invariants the tests rely on
    t, v = config.text_config, config.vision_config
    assert t.vocab_size == 49408 and t.max_position_embeddings == 77
    assert t.eos_token_id == 2 and t.bos_token_id == 0  # -> argmax pooling, as the real model
    assert v.image_size == 224 and v.patch_size == 32
    return config


def pairwise_cos_stats(emb: np.ndarray) -> dict:
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    s = e @ e.T
    iu = np.triu_indices(len(e), 1)
    return {"n": int(len(e)), "mean": round(float(s[iu].mean()), 4), "max": round(float(s[iu].max()), 4)}


def rfloats(a) -> list[float]:
    # float32 -> shortest repr that round-trips to the same float32
    return [float(repr_f32(x)) for x in np.asarray(a, dtype=np.float32).ravel()]


def repr_f32(x: np.float32) -> str:
    return np.format_float_positional(np.float32(x), unique=True, trim="-") if np.isfinite(x) else str(x)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Rebuild tests/fixtures deterministically")
    ap.add_argument("--shared", type=Path, required=True, help="the shared directory (e.g. /work/shared)")
    ap.add_argument("--out", type=Path, required=True, help="fixtures directory (e.g. tests/fixtures)")
    args = ap.parse_args(argv)

    import onnxruntime
    import safetensors
    import transformers
    from safetensors.numpy import load_file
    from transformers import CLIPTokenizerFast
    from transformers.image_utils import load_image
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    torch.set_grad_enabled(False)
    torch.use_deterministic_algorithms(True)
    tok_dir = args.shared / "models" / "clip-tokenizer"
    photos = args.shared / "data" / "photos"
    images_dir = photos / "images"
    captions = json.loads((photos / "captions.json").read_text())
    meta = json.loads((photos / "meta.json").read_text())
    out = args.out
    ref_dir = out / "reference"
    for d in ("tiny-clip", "images", "reference"):
        if (out / d).exists():
            shutil.rmtree(out / d)
    ref_dir.mkdir(parents=True)

    # ---- tiny model + ONNX export ------------------------------------------------
    log("== tiny model")
    config = tiny_config(tok_dir / "config.json")
    model = exporter.build_random_clip(config, seed=SEED)
    verify = exporter.export_clip(
        model, out / "tiny-clip", aux_dirs=[tok_dir], quantize=True, write_config=True, verify=True
    )

    # ---- reference pipeline ------------------------------------------------------
    tokenizer = CLIPTokenizerFast.from_pretrained(str(tok_dir))
    # transformers 5.x: `CLIPImageProcessor` resolves to a torchvision backend when
    # torchvision is installed and falls back to the PIL backend otherwise.  We
    # always use the PIL/numpy backend explicitly (the historical "slow" one).
    processor = CLIPImageProcessorPil.from_pretrained(str(tok_dir))

    def pixels_of(path) -> tuple[np.ndarray, tuple[int, int]]:
        img = load_image(str(path))  # exif_transpose + convert("RGB")
        pv = processor(images=img, return_tensors="np")["pixel_values"][0].astype(np.float32)
        return pv, img.size

    def image_embed(pv: np.ndarray) -> np.ndarray:
        return model.get_image_features(pixel_values=torch.from_numpy(pv[None])).pooler_output[0].numpy()

    def text_embed(text: str) -> np.ndarray:
        enc = tokenizer(text, truncation=True, max_length=77, return_tensors="pt")
        return model.get_text_features(**enc).pooler_output[0].numpy()

    # ---- images ------------------------------------------------------------------
    log("== images")
    img_records, raw16 = make_images(images_dir, out / "images", meta)
    entries, pixel_store = [], {}
    paths = [(r["file"], out / "images" / r["file"]) for r in img_records]
    paths += [(f"shared:{n}", images_dir / n) for n in SHARED_REFS]
    for key, path in paths:
        pv, (w, h) = pixels_of(path)
        emb = image_embed(pv)
        e = {"file": key, "width": w, "height": h, "embedding": rfloats(emb)}
        entries.append(e)
        if key in PIXEL_KEYS:
            pixel_store[key] = pv
    # VisionQuery deliberately reads 16-bit greyscale by its high byte (Pillow clips it to 255,
    # a nearly white picture); record what the reference gives for that 8-bit twin too.
    for e in entries:
        if e["file"] == "grey16.png":
            twin = Image.fromarray((raw16["grey16.png"] >> 8).astype(np.uint8)).convert("RGB")
            twin_pv = processor(images=twin, return_tensors="np")["pixel_values"][0].astype(np.float32)
            e["embedding_high_byte"] = rfloats(image_embed(twin_pv))
    (ref_dir / "images.json").write_text(json.dumps(entries, indent=1, ensure_ascii=False) + "\n")

    # pixel_values + embeddings of exactly these pixels
    pix_keys = [k for k in PIXEL_KEYS if k in pixel_store]
    assert pix_keys == PIXEL_KEYS, pix_keys
    write_safetensors(
        ref_dir / "pixels.safetensors",
        {k: pixel_store[k] for k in pix_keys},
        metadata={"layout": "float32 [3,224,224] CHW, CLIPImageProcessorPil output", "keys": json.dumps(pix_keys)},
    )
    check = load_file(str(ref_dir / "pixels.safetensors"))
    assert all(np.array_equal(check[k], pixel_store[k]) for k in pix_keys)
    batch = torch.from_numpy(np.stack([pixel_store[k] for k in pix_keys]))
    from_pix = model.get_image_features(pixel_values=batch).pooler_output.numpy()
    (ref_dir / "image_embeds_from_pixels.json").write_text(
        json.dumps([{"file": k, "embedding": rfloats(from_pix[i])} for i, k in enumerate(pix_keys)], indent=1) + "\n"
    )

    # ---- tokens ------------------------------------------------------------------
    log("== tokens")
    cap_files = sorted(captions)
    token_texts = [captions[f][0] for f in cap_files] + [captions[f][1] for f in cap_files[: 300 - len(cap_files)]]
    token_texts += edge_case_texts(tokenizer)
    tokens = [{"text": t, "ids": tokenizer(t, truncation=True, max_length=77)["input_ids"]} for t in token_texts]
    (ref_dir / "tokens.json").write_text(json.dumps(tokens, indent=1, ensure_ascii=False) + "\n")

    # ---- texts -------------------------------------------------------------------
    log("== texts")
    text_list = [captions[n][0] for n in SHARED_REFS] + [captions[n][1] for n in SHARED_REFS[:8]]
    text_embs = np.stack([text_embed(t) for t in text_list])
    (ref_dir / "texts.json").write_text(
        json.dumps([{"text": t, "embedding": rfloats(e)} for t, e in zip(text_list, text_embs)], indent=1, ensure_ascii=False) + "\n"
    )

    # ---- search ------------------------------------------------------------------
    shared_embs = np.stack([np.array(e["embedding"], dtype=np.float32) for e in entries if e["file"].startswith("shared:")])
    ti = text_embs / np.linalg.norm(text_embs, axis=1, keepdims=True)
    ii = shared_embs / np.linalg.norm(shared_embs, axis=1, keepdims=True)
    scores = ti.astype(np.float64) @ ii.astype(np.float64).T
    (ref_dir / "search.json").write_text(
        json.dumps(
            {
                "texts": text_list,
                "images": [f"shared:{n}" for n in SHARED_REFS],
                "scores": [[round(float(x), 6) for x in row] for row in scores],
            },
            indent=1,
            ensure_ascii=False,
        )
        + "\n"
    )

    # ---- discrimination stats ----------------------------------------------------
    log("== stats")
    all_photo = sorted(captions)
    photo_embs = np.stack([image_embed(pixels_of(images_dir / n)[0]) for n in all_photo])
    cap_embs = np.stack([text_embed(captions[n][0]) for n in all_photo])
    stats = {
        "images_all_shared_photos": pairwise_cos_stats(photo_embs),
        "images_in_images_json": pairwise_cos_stats(np.stack([np.array(e["embedding"]) for e in entries])),
        "texts_first_caption_all_photos": pairwise_cos_stats(cap_embs),
        "texts_in_texts_json": pairwise_cos_stats(text_embs),
    }
    log(json.dumps(stats))

    # ---- sensitivity: how far plausible *wrong* decodings are from the reference -----
    # (cosine between the reference embedding and the embedding of an alternative
    # interpretation; tells whether a cos >= 0.999 test can tell them apart)
    log("== sensitivity")
    ref_emb = {e["file"]: np.array(e["embedding"], dtype=np.float32) for e in entries}

    def emb_of_pil(img: Image.Image, resample=None, size_round=False) -> np.ndarray:
        kw = {}
        if resample is not None:
            kw["resample"] = resample
        if size_round:  # shortest edge 224, other edge rounded instead of truncated, then usual crop
            w, h = img.size
            s = 224 / min(w, h)
            img = img.resize((max(224, round(w * s)), max(224, round(h * s))), Image.Resampling.BICUBIC)
        pv = processor(images=np.asarray(img), return_tensors="np", **kw)["pixel_values"][0].astype(np.float32)
        return image_embed(pv)

    def cos(a, b):
        return round(float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))), 5)

    def white(img):
        img = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img).convert("RGB")

    imgd = out / "images"
    p16, rgb16 = raw16["grey16.png"], raw16["rgb16.png"]
    cm = np.asarray(Image.open(imgd / "cmyk.jpg")).astype(np.int32)
    sens = {
        "exif_rot6.jpg: EXIF orientation ignored": cos(ref_emb["exif_rot6.jpg"], emb_of_pil(Image.open(imgd / "exif_rot6.jpg").convert("RGB"))),
        "exif_rot3.jpg: EXIF orientation ignored": cos(ref_emb["exif_rot3.jpg"], emb_of_pil(Image.open(imgd / "exif_rot3.jpg").convert("RGB"))),
        "rgba.png: alpha composited on white (instead of dropped)": cos(ref_emb["rgba.png"], emb_of_pil(white(Image.open(imgd / "rgba.png")))),
        "grey_alpha.png: alpha composited on white (instead of dropped)": cos(ref_emb["grey_alpha.png"], emb_of_pil(white(Image.open(imgd / "grey_alpha.png")))),
        "palette_trns.png: tRNS ignored (reference composites it on white)": cos(ref_emb["palette_trns.png"], emb_of_pil(Image.open(imgd / "palette_trns.png").convert("RGB").copy())),
        "grey16.png: 16->8 bit by >>8 (reference clips to 255)": cos(ref_emb["grey16.png"], emb_of_pil(Image.fromarray((p16 >> 8).astype(np.uint8)).convert("RGB"))),
        "rgb16.png: 16->8 bit by round(v/257) (reference: v>>8)": cos(ref_emb["rgb16.png"], emb_of_pil(Image.fromarray(np.round(rgb16 / 257).clip(0, 255).astype(np.uint8)))),
        "cmyk.jpg: R = 255 - min(255, C+K) (reference: (255-C)(255-K)/255)": cos(ref_emb["cmyk.jpg"], emb_of_pil(Image.fromarray((255 - np.minimum(255, cm[..., :3] + cm[..., 3:])).astype(np.uint8)))),
        "baseline.jpg: bilinear resize (reference: bicubic)": cos(ref_emb["baseline.jpg"], emb_of_pil(load_image(str(imgd / "baseline.jpg")), resample=Image.Resampling.BILINEAR)),
        "tiny_20x15.png: long edge rounded 299 (reference truncates to 298)": cos(ref_emb["tiny_20x15.png"], emb_of_pil(load_image(str(imgd / "tiny_20x15.png")), size_round=True)),
        "baseline.jpg vs shared source photo (re-encode + downscale)": cos(ref_emb["baseline.jpg"], ref_emb[f"shared:{SRC_A}"]),
        "animated.gif vs shared source photo (palette)": cos(ref_emb["animated.gif"], ref_emb[f"shared:{SRC_C}"]),
    }
    for k, v in sens.items():
        log(f"  {v:.5f}  {k}")

    # ---- manifest ----------------------------------------------------------------
    import onnx

    tc, vc = config.text_config, config.vision_config
    manifest = {
        "generator": "scripts/make_fixtures.py --shared <shared> --out tests/fixtures",
        "seed": SEED,
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": __import__("tokenizers").__version__,
            "pillow": PIL.__version__,
            "numpy": np.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "safetensors": safetensors.__version__,
        },
        "model": {
            "kind": "random-weight CLIPModel (transformers), exported with scripts/export_clip_onnx.py --quantize",
            "dir": "tiny-clip",
            "projection_dim": config.projection_dim,
            "initializer_factor": TINY_INIT_FACTOR,
            "text": {k: getattr(tc, k) for k in ("vocab_size", "max_position_embeddings", "hidden_size", "num_hidden_layers",
                                                  "num_attention_heads", "intermediate_size", "hidden_act", "bos_token_id",
                                                  "eos_token_id", "pad_token_id")},
            "vision": {k: getattr(vc, k) for k in ("image_size", "patch_size", "hidden_size", "num_hidden_layers",
                                                    "num_attention_heads", "intermediate_size", "hidden_act")},
            "text_pooling": "eos_token_id == 2 -> pooled position = argmax(input_ids, dim=-1) (first occurrence of the "
                            "highest id, i.e. the first <|endoftext|> = 49407), same as openai/clip-vit-base-patch32",
            "attn_implementation": "eager",
            "onnx": {
                "vision_model.onnx": {"inputs": {"pixel_values": "float32 [batch_size,3,224,224]"},
                                      "outputs": {"image_embeds": "float32 [batch_size,32]",
                                                  "last_hidden_state": "float32 [batch_size,50,64]"}},
                "text_model.onnx": {"inputs": {"input_ids": "int64 [batch_size,sequence_length]",
                                               "attention_mask": "int64 [batch_size,sequence_length]"},
                                    "outputs": {"text_embeds": "float32 [batch_size,32]",
                                                "last_hidden_state": "float32 [batch_size,sequence_length,16]"}},
                "quantization": f"onnxruntime.quantization.quantize_dynamic, weight_type={exporter.QUANT_WEIGHT_TYPE}, "
                                f"op_types={exporter.QUANT_OP_TYPES}, per_channel=False",
                "opset": exporter.DEFAULT_OPSET,
                "sha256": {str(p.relative_to(out)): sha256(p) for p in sorted((out / "tiny-clip" / "onnx").glob("*.onnx"))},
                "export_verification": verify,
            },
        },
        "reference_pipeline": {
            "image": "transformers.image_utils.load_image(path) [PIL.Image.open -> ImageOps.exif_transpose -> "
                     ".convert('RGB')] -> CLIPImageProcessorPil(preprocessor_config.json)(images=img) -> "
                     "CLIPModel.get_image_features(pixel_values).pooler_output (torch fp32, unnormalized)",
            "image_processor_class": f"{type(processor).__module__}.{type(processor).__name__}",
            "image_processor_note": "transformers 5.x CLIPImageProcessor = torchvision backend if torchvision is installed, "
                                    "else falls back to CLIPImageProcessorPil; torchvision is NOT installed here and the "
                                    "PIL backend is used explicitly",
            "resize": "PIL Image.resize(resample=BICUBIC (3), reducing_gap=None) on the uint8 RGB image; target size: "
                      "shortest edge -> 224, other edge = int(224 * long / short) (truncation)",
            "center_crop": "224x224, top = (h - 224) // 2, left = (w - 224) // 2 (zero padding if smaller)",
            "rescale_normalize": "x.astype(float64) * (1/255) -> float32; (x - mean) / std in float32; "
                                 "mean [0.48145466,0.4578275,0.40821073], std [0.26862954,0.26130258,0.27577711]",
            "text": "CLIPTokenizerFast.from_pretrained(tokenizer dir)(text, truncation=True, max_length=77) (no padding) "
                    "-> CLIPModel.get_text_features(input_ids, attention_mask).pooler_output (unnormalized)",
            "tokenizer_class": f"{type(tokenizer).__module__}.{type(tokenizer).__name__}",
        },
        "cosine_stats": stats,
        "sensitivity_cosines": sens,
        "images": img_records,
        "shared_references": [
            {"file": f"shared:{n}", "path": f"data/photos/images/{n}", **license_of(meta, n)} for n in SHARED_REFS
        ],
        "pixels": {"file": "reference/pixels.safetensors", "keys": pix_keys,
                   "embeddings": "reference/image_embeds_from_pixels.json"},
        "texts": {"file": "reference/texts.json", "source": "captions.json: first caption of each SHARED_REFS photo, "
                                                             "then the second caption of the first 8"},
        "tokens": {"file": "reference/tokens.json", "count": len(tokens),
                   "source": f"first caption of all {len(cap_files)} photos (sorted), second caption of the first "
                             f"{300 - len(cap_files)}, then {len(tokens) - 300} edge cases"},
    }
    (ref_dir / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")

    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    log(f"== done: {out} total {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
