#!/usr/bin/env python3
"""Writes the HEIC/AVIF/RAW fixtures in tests/fixtures/formats/ and their reference outputs.

    /root/vqref/bin/python scripts/make_format_fixtures.py

Needs the reference venv (scripts/requirements-reference.txt: Pillow, pillow-heif,
pillow-avif-plugin, rawpy, pidng, transformers, onnxruntime) and `avifenc` (Debian
`libavif-bin`, for the 10-bit AVIF: Pillow writes 8-bit AVIF only).

Sources are three of the committed COCO photos (tests/fixtures/photos/, CC BY 2.0), shrunk so
the longer side is at most 320 px, as for tests/fixtures/images/.

The reference path, as for every other format (transformers `load_image` +
`CLIPImageProcessorPil`):
  * HEIC/AVIF: Pillow with pillow-heif registered (`register_heif_opener`) and
    `pillow_avif` imported; `load_image(path)`. Which plugin opened each file is recorded.
  * RAW: `rawpy.imread(path).extract_thumb()` (LibRaw's largest preview), opened by Pillow,
    turned by LibRaw's `sizes.flip` (the RAW's EXIF orientation), then `load_image(img)`.
The embedding of the reference pixels comes from the committed tiny ONNX vision model run by
onnxruntime (the torch weights are not committed; make_fixtures.py checks that the ONNX graph
gives torch's embeddings, cos >= 0.9999).

Writes:
    tests/fixtures/formats/*                  the test files (a few KiB each; the NEF, ORF, RW2,
                                               CR2, ARW, RAF and CR3 files by scripts/raw_containers.py)
    tests/fixtures/reference/formats.json      per file: size after orientation, embedding,
                                               the reference path and plugin
    tests/fixtures/reference/formats_pixels.safetensors   reference pixel_values per file
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pillow_avif  # noqa: F401  (registers its AVIF plugin, as the brief's reference does)
import pillow_heif
import rawpy
from PIL import Image
from pidng.defs import CFAPattern, PhotometricInterpretation
from pidng.dng import DNG, Tag, Type, dngIFD, dngTag

import raw_containers  # scripts/raw_containers.py: NEF, ORF, RW2, CR2, ARW, RAF, CR3 written with struct

# TIFF tags pidng's table lacks (IFD1 thumbnails).
JPEG_INTERCHANGE_FORMAT = (513, Type.Long)
JPEG_INTERCHANGE_FORMAT_LENGTH = (514, Type.Long)

pillow_heif.register_heif_opener()

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / "tests" / "fixtures" / "photos"
OUT = ROOT / "tests" / "fixtures" / "formats"
REF = ROOT / "tests" / "fixtures" / "reference"
MODEL = ROOT / "tests" / "fixtures" / "tiny-clip"
MAX_SIDE = 320
SEED = 11
RAW_SUFFIXES = {".dng", ".nef", ".orf", ".rw2", ".cr2", ".raf", ".arw", ".cr3"}


def avifenc(source: str, out: str, *options: str) -> None:
    """Debian's `avifenc` (what Pillow cannot write: deep AVIF, an `irot`), speed 8, one thread."""
    subprocess.run(["avifenc", *options, "--speed", "8", "-j", "1", source, out], check=True, stdout=subprocess.DEVNULL)


def photo(name: str, max_side: int = MAX_SIDE) -> Image.Image:
    im = Image.open(PHOTOS / name).convert("RGB")
    scale = max_side / max(im.size)
    if scale < 1:
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
    return im


def to_16bit(im: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """8-bit RGB -> 16-bit with random low bits, so a decoder that keeps only 8 bits of a 10/12-bit
    sample the wrong way shows up."""
    a = np.asarray(im).astype(np.uint16)
    return (a << 8) | rng.integers(0, 256, a.shape, dtype=np.uint16)


def save_heic_16(path: Path, arr16: np.ndarray, twelve: bool) -> None:
    pillow_heif.options.SAVE_HDR_TO_12_BIT = twelve
    try:
        h, w, _ = arr16.shape
        heif = pillow_heif.from_bytes(mode="RGB;16", size=(w, h), data=arr16.astype("<u2").tobytes())
        heif.save(path, quality=90)
    finally:
        pillow_heif.options.SAVE_HDR_TO_12_BIT = False


def write_png16(path: Path, arr16: np.ndarray) -> None:
    import zlib

    h, w, _ = arr16.shape
    raw = b"".join(b"\0" + arr16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    path.write_bytes(png)


def jpeg_bytes(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def write_dng(path: Path, sensor: Image.Image, preview: bytes, preview_size, thumb: bytes | None, orientation: int) -> None:
    """A DNG laid out like a camera's: IFD0 holds the large JPEG preview (NewSubfileType 1) and
    the EXIF orientation, its SubIFD the Bayer sensor data (16-bit, uncompressed), and an
    optional IFD1 a small JPEG thumbnail. Built with pidng's TIFF/DNG writer."""
    rgb = np.asarray(sensor).astype(np.uint16) * 16  # 12-bit sensor values
    h, w, _ = rgb.shape
    bayer = np.empty((h, w), np.uint16)  # RGGB mosaic of the picture
    bayer[0::2, 0::2] = rgb[0::2, 0::2, 0]
    bayer[0::2, 1::2] = rgb[0::2, 1::2, 1]
    bayer[1::2, 0::2] = rgb[1::2, 0::2, 1]
    bayer[1::2, 1::2] = rgb[1::2, 1::2, 2]

    dng = DNG()
    strips = [preview, bayer.astype("<u2").tobytes()] + ([thumb] if thumb else [])
    dng.ImageDataStrips.extend(strips)

    raw = dngIFD()
    raw_offsets = dngTag(Tag.StripOffsets, [0])
    raw.tags += [
        dngTag(Tag.NewSubfileType, [0]),
        dngTag(Tag.ImageWidth, [w]),
        dngTag(Tag.ImageLength, [h]),
        dngTag(Tag.BitsPerSample, [16]),
        dngTag(Tag.Compression, [1]),
        dngTag(Tag.PhotometricInterpretation, [PhotometricInterpretation.Color_Filter_Array]),
        raw_offsets,
        dngTag(Tag.SamplesPerPixel, [1]),
        dngTag(Tag.RowsPerStrip, [h]),
        dngTag(Tag.StripByteCounts, [len(strips[1])]),
        dngTag(Tag.PlanarConfiguration, [1]),
        dngTag(Tag.CFARepeatPatternDim, [2, 2]),
        dngTag(Tag.CFAPattern, CFAPattern.RGGB),
        dngTag(Tag.BlackLevel, [0]),
        dngTag(Tag.WhiteLevel, [4095]),
    ]

    pw, ph = preview_size
    main = dngIFD()
    preview_offsets = dngTag(Tag.StripOffsets, [0])
    main.tags += [
        dngTag(Tag.NewSubfileType, [1]),
        dngTag(Tag.ImageWidth, [pw]),
        dngTag(Tag.ImageLength, [ph]),
        dngTag(Tag.BitsPerSample, [8, 8, 8]),
        dngTag(Tag.Compression, [7]),
        dngTag(Tag.PhotometricInterpretation, [6]),
        dngTag(Tag.Make, "VisionQuery"),
        dngTag(Tag.Model, "Fixture DNG"),
        preview_offsets,
        dngTag(Tag.Orientation, [orientation]),
        dngTag(Tag.SamplesPerPixel, [3]),
        dngTag(Tag.RowsPerStrip, [ph]),
        dngTag(Tag.StripByteCounts, [len(preview)]),
        dngTag(Tag.PlanarConfiguration, [1]),
        dngTag(Tag.Software, "scripts/make_format_fixtures.py (pidng)"),
        sub_ifd_tag(raw),
        dngTag(Tag.DNGVersion, [1, 4, 0, 0]),
        dngTag(Tag.DNGBackwardVersion, [1, 1, 0, 0]),
        dngTag(Tag.UniqueCameraModel, "VisionQuery Fixture DNG"),
        dngTag(Tag.ColorMatrix1, [[10000, 10000], [0, 10000], [0, 10000], [0, 10000], [10000, 10000], [0, 10000], [0, 10000], [0, 10000], [10000, 10000]]),
        dngTag(Tag.CalibrationIlluminant1, [21]),
        dngTag(Tag.AsShotNeutral, [[1, 1], [1, 1], [1, 1]]),
    ]
    dng.IFDs.append(main)
    thumb_ifd = None
    if thumb:
        thumb_ifd = dngIFD()
        thumb_offset = dngTag(JPEG_INTERCHANGE_FORMAT, [0])
        thumb_ifd.tags += [
            dngTag(Tag.NewSubfileType, [1]),
            dngTag(Tag.Compression, [6]),
            thumb_offset,
            dngTag(JPEG_INTERCHANGE_FORMAT_LENGTH, [len(thumb)]),
        ]
        dng.IFDs.append(thumb_ifd)

    total = dng.dataLen()  # also lays out the strips: dng.StripOffsets[i]
    preview_offsets.setValue([dng.StripOffsets[0]])
    raw_offsets.setValue([dng.StripOffsets[1]])
    if thumb_ifd is not None:
        thumb_offset.setValue([dng.StripOffsets[2]])
    buf = bytearray(total)
    dng.setBuffer(buf)
    if thumb_ifd is not None:
        main.NextIFDOffset = thumb_ifd.offset
    dng.write()
    path.write_bytes(bytes(buf))


def sub_ifd_tag(ifd: dngIFD) -> dngTag:
    """A SubIFDs tag pointing at `ifd` (pidng's own IFD-typed tag is broken on Python 3: it mixes
    str and bytes), laid out by pidng's writer all the same."""
    tag = dngTag((Tag.SubIFD[0], Type.Long), [0])
    tag.subIFD = ifd
    return tag


def corrupt_jpeg_quant_selector(jpeg: bytes) -> bytes:
    """The same JPEG with its first component pointing at quantisation table 3, which it does not
    define: the structure stays whole (a scanner still finds it) but libjpeg refuses to decode."""
    b = bytearray(jpeg)
    i = 2
    while i < len(b):
        marker, length = b[i + 1], struct.unpack(">H", b[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            b[i + 2 + 2 + 6 + 2] = 3  # first component: id, sampling, Tq
            return bytes(b)
        i += 2 + length
    raise ValueError("no SOF")


def patch_ispe(data: bytes, width: int, height: int) -> bytes:
    """Every `ispe` (image spatial extents) property says width x height."""
    b = bytearray(data)
    at = b.find(b"ispe")
    assert at > 0
    while at > 0:
        struct.pack_into(">II", b, at + 8, width, height)
        at = b.find(b"ispe", at + 4)
    return bytes(b)


def make_files() -> list[dict]:
    rng = np.random.default_rng(SEED)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    a = photo("000000020247.jpg")  # 320x228
    b = photo("000000012280.jpg")  # 240x320
    c = photo("000000269314.jpg")  # 320x240
    records = []

    def rec(name, source, encoding, reference=True, **extra):
        records.append({"file": name, "source": source, "encoding": encoding, "reference": reference, **extra})

    a.save(OUT / "heic_8bit.heic", quality=90)
    rec("heic_8bit.heic", "000000020247.jpg", "HEIC 8-bit 4:2:0 q90 (pillow-heif, x265)")

    save_heic_16(OUT / "heic_10bit.heic", to_16bit(b, rng), twelve=False)
    rec("heic_10bit.heic", "000000012280.jpg", "HEIC 10-bit q90 from 16-bit samples v*256 + random low byte")

    save_heic_16(OUT / "heic_12bit.heic", to_16bit(c, rng), twelve=True)
    rec("heic_12bit.heic", "000000269314.jpg", "HEIC 12-bit q90 from 16-bit samples v*256 + random low byte")

    # Pixels stored rotated; EXIF Orientation 6 on save becomes the container's irot/imir
    # (pillow-heif moves it there and writes EXIF Orientation 1).
    rotated = c.transpose(Image.ROTATE_90)  # stored 240x320, shows 320x240
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated.save(OUT / "heic_rot.heic", quality=90, exif=exif.tobytes())
    rec("heic_rot.heic", "000000269314.jpg", "HEIC 8-bit, pixels stored rotated 90° CCW, irot/imir transform to show them upright")

    a.save(OUT / "avif_8bit.avif", quality=90)
    rec("avif_8bit.avif", "000000020247.jpg", "AVIF 8-bit 4:2:0 q90 (Pillow's AVIF writer, libavif + aom)")

    with tempfile.TemporaryDirectory() as tmp:
        png16 = Path(tmp) / "b16.png"
        write_png16(png16, to_16bit(b, rng))
        avifenc(str(png16), str(OUT / "avif_10bit.avif"), "--depth", "10", "--yuv", "444", "--min", "10", "--max", "10")
    rec("avif_10bit.avif", "000000012280.jpg", "AVIF 10-bit 4:4:4 (avifenc from a 16-bit PNG, v*256 + random low byte)")

    # libavif's conversion paths the two above do not take: 10-bit 4:2:0 (bilinear chroma on
    # samples cut to 8 bits) and pixels stored rotated with an `irot` (pillow-avif-plugin turns it
    # into an EXIF Orientation that load_image applies). Made after every other use of `rng`, so
    # the files above stay as they were.
    with tempfile.TemporaryDirectory() as tmp:
        png16 = Path(tmp) / "c16.png"
        write_png16(png16, to_16bit(c, rng))
        avifenc(str(png16), str(OUT / "avif_10bit_420.avif"), "--depth", "10", "--yuv", "420", "--min", "20", "--max", "20")
        stored = Path(tmp) / "a_rot.png"
        a.transpose(Image.ROTATE_90).save(stored)  # stored 228x320, shown 320x228
        avifenc(str(stored), str(OUT / "avif_rot.avif"), "--depth", "8", "--yuv", "420", "--irot", "3", "--min", "20", "--max", "20")
    rec("avif_10bit_420.avif", "000000269314.jpg", "AVIF 10-bit 4:2:0 (avifenc from a 16-bit PNG, v*256 + random low byte)")
    rec("avif_rot.avif", "000000020247.jpg", "AVIF 8-bit 4:2:0, pixels stored rotated 90° CCW, irot 3 (270° CCW) to show them upright")

    # 16-bit source so the first frame differs from the second; Pillow writes 8-bit only here.
    # DNG: large preview in IFD0, a smaller thumbnail in IFD1 (the largest must win), Orientation 6.
    stored = c.transpose(Image.ROTATE_90)  # 240x320, shown 320x240 after Orientation 6
    preview = jpeg_bytes(stored)
    thumb = jpeg_bytes(a.resize((160, 114), Image.LANCZOS))
    write_dng(OUT / "dng_rot6.dng", c.resize((160, 120), Image.LANCZOS), preview, stored.size, thumb, orientation=6)
    rec("dng_rot6.dng", "000000269314.jpg", "DNG (pidng): 240x320 JPEG preview in IFD0 + 160x114 JPEG thumbnail of another photo in IFD1, EXIF Orientation 6, 160x120 RGGB 16-bit sensor data")

    write_dng(OUT / "dng_plain.dng", a.resize((160, 114), Image.LANCZOS), jpeg_bytes(a), a.size, None, orientation=1)
    rec("dng_plain.dng", "000000020247.jpg", "DNG (pidng): 320x228 JPEG preview in IFD0, Orientation 1")

    # Damaged files (no reference: they must be refused).
    write_dng(OUT / "dng_corrupt_preview.dng", a.resize((160, 114), Image.LANCZOS), corrupt_jpeg_quant_selector(jpeg_bytes(a)), a.size, None, orientation=1)
    rec("dng_corrupt_preview.dng", "000000020247.jpg", "dng_plain.dng with its preview's first component using undefined quantisation table 3", reference=False)

    write_dng(OUT / "dng_no_preview.dng", a.resize((160, 114), Image.LANCZOS), b"\0" * 64, a.size, None, orientation=1)
    rec("dng_no_preview.dng", "000000020247.jpg", "a DNG whose preview strip is 64 zero bytes (no JPEG anywhere)", reference=False)

    # The other makers' containers (scripts/raw_containers.py, written with struct; no camera
    # file can be downloaded here). Each is accepted by LibRaw (rawpy), and
    # LibRaw's extract_thumb gives the largest preview written.
    stored8 = a.transpose(Image.ROTATE_270)  # 228x320, shown 320x228 after Orientation 8
    (OUT / "nef_rot8.nef").write_bytes(raw_containers.nef(a, jpeg_bytes(stored8), jpeg_bytes(b.resize((120, 160), Image.LANCZOS)), orientation=8))
    rec("nef_rot8.nef", "000000020247.jpg", "NEF (raw_containers.nef, NIKON D700): 228x320 JPEG preview in SubIFD 0, 120x160 JPEG thumbnail of another photo in IFD0, EXIF Orientation 8, 160x120 12-bit uncompressed sensor data in SubIFD 1, Nikon maker note")
    (OUT / "orf_plain.orf").write_bytes(raw_containers.orf(b, jpeg_bytes(b), jpeg_bytes(a.resize((160, 114), Image.LANCZOS)), orientation=1))
    rec("orf_plain.orf", "000000012280.jpg", "ORF (raw_containers.orf, OLYMPUS E-M10): 240x320 JPEG preview in the maker note's CameraSettings, 160x114 JPEG thumbnail of another photo in IFD1, 160x120 12-bit sensor data in IFD0")
    (OUT / "rw2_plain.rw2").write_bytes(raw_containers.rw2(c, jpeg_bytes(c), orientation=1))
    rec("rw2_plain.rw2", "000000269314.jpg", "RW2 (raw_containers.rw2, Panasonic DMC-GX7): 320x240 JPEG preview as JpgFromRaw (0x2E), 128x120 12-bit sensor data")
    (OUT / "cr2_plain.cr2").write_bytes(raw_containers.cr2(jpeg_bytes(c, quality=85), c.size, jpeg_bytes(a.resize((160, 114), Image.LANCZOS)), orientation=1))
    rec("cr2_plain.cr2", "000000269314.jpg", "CR2 (raw_containers.cr2, Canon EOS 40D): 320x240 JPEG preview (q85) in IFD0, 160x114 JPEG thumbnail of another photo in IFD1, 160x120 flat lossless-JPEG sensor data in IFD3")

    (OUT / "heic_200mp_declared.heic").write_bytes(patch_ispe((OUT / "heic_8bit.heic").read_bytes(), 20000, 10000))
    rec("heic_200mp_declared.heic", "000000020247.jpg", "heic_8bit.heic with every ispe box saying 20000x10000 (200 MP); must be refused before decoding", reference=False)

    # ARW, RAF and CR3 (raw_containers.arw/raf/cr3), made after every file above so those stay as
    # they were. Each is accepted by LibRaw, whose extract_thumb gives the largest JPEG written.
    (OUT / "arw_plain.arw").write_bytes(raw_containers.arw(b, jpeg_bytes(b), jpeg_bytes(a.resize((160, 114), Image.LANCZOS)), orientation=1))
    rec("arw_plain.arw", "000000012280.jpg", "ARW (raw_containers.arw, SONY ILCE-7M3): 240x320 JPEG preview in IFD0, 160x114 JPEG thumbnail of another photo in IFD1, 160x120 14-bit uncompressed sensor data in SubIFD 0")
    (OUT / "raf_plain.raf").write_bytes(raw_containers.raf(c, jpeg_bytes(c), orientation=1))
    rec("raf_plain.raf", "000000269314.jpg", "RAF (raw_containers.raf, FUJIFILM X-A1): 320x240 JPEG preview with EXIF (Make, Model, Orientation 1) at the header's 84/88, CFA header, 160x120 12-bit sensor data")
    stored3 = a.transpose(Image.ROTATE_180)  # 320x228, shown upright after Orientation 3
    cr3_file = raw_containers.cr3(
        (160, 120), jpeg_bytes(stored3), stored3.size, jpeg_bytes(b.resize((180, 240), Image.LANCZOS)), (180, 240),
        jpeg_bytes(c.resize((160, 120), Image.LANCZOS)), (160, 120), orientation=3,
    )  # fmt: skip
    (OUT / "cr3_rot3.cr3").write_bytes(cr3_file)
    rec("cr3_rot3.cr3", "000000020247.jpg", "CR3 (raw_containers.cr3, Canon EOS R): 320x228 JPEG (stored turned 180°) as the JPEG track's sample in mdat, 180x240 PRVW preview and 160x120 THMB thumbnail of other photos, CMT1 Orientation 3, a CMP1 RAW track (160x120) whose sensor data ends mdat")
    return records


def reference_image(path: Path):
    """(PIL image as the reference embeds it, how it was read)."""
    from transformers.image_utils import load_image

    if path.suffix in RAW_SUFFIXES:
        with rawpy.imread(str(path)) as raw:
            thumb = raw.extract_thumb()
            flip = raw.sizes.flip
        assert thumb.format == rawpy.ThumbFormat.JPEG, thumb.format
        img = Image.open(io.BytesIO(bytes(thumb.data)))
        img.load()
        # LibRaw writes the RAW's orientation into the EXIF block it puts in front of a JPEG
        # preview, so load_image's exif_transpose turns it. Only a preview without that tag is
        # turned by hand (LibRaw's flip: 3 = 180°, 5 = 90° counter-clockwise, 6 = 90° clockwise).
        tagged = img.getexif().get(0x0112)
        turn = {0: None, 3: Image.ROTATE_180, 5: Image.ROTATE_90, 6: Image.ROTATE_270}[flip]
        if tagged is None and turn is not None:
            img = img.transpose(turn)
        how = f"rawpy {rawpy.__version__} extract_thumb (LibRaw {'.'.join(map(str, rawpy.libraw_version))}), flip {flip}"
        return load_image(img), how + f", preview EXIF Orientation {tagged}, {len(thumb.data)} JPEG bytes"
    with Image.open(path) as probe:
        plugin = f"{probe.format} via {type(probe).__module__}"
        mode = probe.mode
    return load_image(str(path)), f"load_image; opened as {plugin}, mode {mode}"


def main() -> int:
    import onnxruntime
    import transformers
    from safetensors.numpy import save_file
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    records = make_files()
    processor = CLIPImageProcessorPil.from_pretrained(str(MODEL))
    session = onnxruntime.InferenceSession(str(MODEL / "onnx" / "vision_model.onnx"), providers=["CPUExecutionProvider"])
    entries, pixels = [], {}
    for r in records:
        if not r["reference"]:
            continue
        img, how = reference_image(OUT / r["file"])
        pv = processor(images=img, return_tensors="np")["pixel_values"][0].astype(np.float32)
        emb = session.run(["image_embeds"], {"pixel_values": pv[None]})[0][0]
        pixels[r["file"]] = pv
        entries.append({"file": r["file"], "width": img.size[0], "height": img.size[1], "reference": how,
                        "embedding": [float(np.float32(x)) for x in emb]})
        print(f"{r['file']:28} {img.size[0]}x{img.size[1]}  {how}", file=sys.stderr)
    REF.mkdir(parents=True, exist_ok=True)
    versions = {
        "pillow": Image.__version__ if hasattr(Image, "__version__") else __import__("PIL").__version__,
        "pillow_heif": pillow_heif.__version__,
        "libheif": pillow_heif.libheif_version(),
        "pillow_avif_plugin": getattr(pillow_avif, "__version__", "?"),
        "rawpy": rawpy.__version__,
        "libraw": ".".join(map(str, rawpy.libraw_version)),
        "transformers": transformers.__version__,
        "onnxruntime": onnxruntime.__version__,
        "avifenc": subprocess.run(["avifenc", "--version"], capture_output=True, text=True).stdout.splitlines()[0],
    }
    (REF / "formats.json").write_text(json.dumps({"versions": versions, "files": records, "images": entries}, indent=1) + "\n")
    save_file(pixels, str(REF / "formats_pixels.safetensors"), metadata={"layout": "float32 [3,224,224] CHW, CLIPImageProcessorPil output"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
