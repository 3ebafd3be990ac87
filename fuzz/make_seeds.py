#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora from the committed test fixtures.

  fuzz/make_seeds.py OUT      -> OUT/<target>/<seed> for every target

Seeds give the fuzzer the shapes it would take long to find: every image format the decoder
knows, EXIF in each container, well-formed JSON bodies of each route and multipart uploads of
real images. Inputs are laid out as the targets read them (a leading choice byte where a target
has one).
"""

import json
import struct
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
BOUNDARY = b"vqfuzz"
# Small enough that a mutation runs fast; the photos are real camera JPEGs with EXIF.
MAX_SEED_BYTES = 200_000


def images() -> list[Path]:
    # formats/: HEIC (8/10/12-bit, rotated), AVIF, DNG previews and the damaged ones.
    found = sorted((FIXTURES / "images").iterdir()) + sorted((FIXTURES / "exif").glob("*.*")) + sorted((FIXTURES / "formats").iterdir())
    return [p for p in found if p.suffix.lower() != ".md" and p.stat().st_size <= MAX_SEED_BYTES]


def bmp(width: int, height: int) -> bytes:
    """A 24-bit BMP, written by hand: no fixture is a BMP and the decoder reads them."""
    row = (width * 3 + 3) & ~3
    pixels = b"".join(bytes(b for x in range(width) for b in (x * 40 % 256, y * 60 % 256, 128)).ljust(row, b"\0") for y in range(height))
    header = b"BM" + struct.pack("<IHHI", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return header + info + pixels


def json_bodies() -> list[bytes]:
    search = [
        {"query": "a dog on a beach", "top_k": 5},
        {"query": "red car", "top_k": 3, "offset": 1, "exact": True, "sort": "-taken_at"},
        {"query": "cat", "positive": ["kitten", {"query": "sofa", "weight": 0.5}], "negative": [{"query": "dog", "weight": 2}]},
        {"query": "city", "filters": {"taken_after": "2019-01-01", "taken_before": "2020-12-31T23:59:59Z",
                                      "camera": ["Canon", "NIKON"], "folder": "photos", "format": "jpeg",
                                      "near": {"lat": 48.85, "lon": 2.35, "radius_km": 10}, "min_score": 0.2}},
        {"image_id": "56d201e984683526", "top_k": 2},  # baseline.jpg, indexed at start
        {"image_id": "56d201e984683526", "filters": {"format": ["png", "webp"]}, "sort": "taken_at", "offset": 1},
    ]
    ingest = [{"path": "baseline.jpg"}, {"path": "rgb.png"}, {"path": "../etc/passwd"}]
    directory = [{"path": "."}, {"path": ".", "recursive": True}]
    # The choice byte: route index (0 search, 1 ingest image, 2 directory); content type JSON.
    return [bytes([route]) + json.dumps(body).encode() for route, bodies in ((0, search), (1, ingest), (2, directory)) for body in bodies]


def multipart(parts: list[tuple[str, str, bytes]]) -> bytes:
    out = b""
    for name, filename, data in parts:
        out += b"--" + BOUNDARY + b"\r\n"
        out += f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'.encode()
        out += b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
    return out + b"--" + BOUNDARY + b"--\r\n"


def multipart_bodies() -> list[bytes]:
    small = [p for p in images() if p.stat().st_size <= 20_000]
    seeds = []
    for i, image in enumerate(small):
        seeds.append(bytes([0]) + multipart([("files", image.name, image.read_bytes())]))
        seeds.append(bytes([1]) + multipart([("file", image.name, image.read_bytes())]))
        if i + 1 < len(small):
            seeds.append(bytes([0]) + multipart([("files", image.name, image.read_bytes()), ("files", small[i + 1].name, small[i + 1].read_bytes())]))
    seeds.append(bytes([0]) + multipart([("other", "x.txt", b"not an image")]))
    return seeds


def main() -> int:
    out = Path(sys.argv[1])
    corpora = {
        "decode_image": [p.read_bytes() for p in images()] + [bmp(7, 5)],
        "photo_meta": [p.read_bytes() for p in sorted((FIXTURES / "exif").glob("*.*")) if p.suffix != ".md"],
        "json_bodies": json_bodies(),
        "multipart_upload": multipart_bodies(),
    }
    for target, seeds in corpora.items():
        folder = out / target
        folder.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(seeds):
            (folder / f"seed-{i:03}").write_bytes(seed)
        print(f"{target}: {len(seeds)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
