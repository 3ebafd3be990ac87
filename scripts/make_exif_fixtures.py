#!/usr/bin/env python3
"""Writes the EXIF fixtures in tests/fixtures/exif/ and cross-checks them with exiftool.

Each fixture is a small copy of tests/fixtures/images/baseline.jpg carrying EXIF written by
piexif and saved by Pillow (JPEG, PNG eXIf chunk, WebP EXIF chunk, TIFF; HEIF through
pillow-heif). The damaged ones (truncated segment, IFD loop) are made from a well-formed file by changing a few bytes, since no tool writes
them on purpose. exiftool, an independent reader, then checks that every well-formed file says
what we meant it to say, so the Rust tests compare against values two readers agree on.

Run from the repo root:
    python3 -m venv /tmp/exifenv && /tmp/exifenv/bin/pip install piexif Pillow==13.0.0 pillow-heif==1.8.1
    apt-get install -y libimage-exiftool-perl
    /tmp/exifenv/bin/python scripts/make_exif_fixtures.py
"""

import io
import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import piexif
import pillow_heif
from PIL import Image

pillow_heif.register_heif_opener()

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests/fixtures/images/baseline.jpg"
OUT = ROOT / "tests/fixtures/exif"
# Small enough that every fixture stays well under 20 KB.
SIZE = (64, 46)


def rational_dms(degrees):
    """Degrees as EXIF's three rationals (degrees, minutes, seconds in hundredths)."""
    d = int(degrees)
    m = int((degrees - d) * 60)
    s = round(((degrees - d) * 60 - m) * 60 * 100)
    return ((d, 1), (m, 1), (s, 100))


def exif_dict(make=None, model=None, lens=None, original=None, offset=None, gps=None, other_dates=True):
    zeroth, exif, gps_ifd = {}, {}, {}
    if make is not None:
        zeroth[piexif.ImageIFD.Make] = make
    if model is not None:
        zeroth[piexif.ImageIFD.Model] = model
    if other_dates:
        # Present in every fixture with a date on purpose: the reader must use only
        # DateTimeOriginal, never these.
        zeroth[piexif.ImageIFD.DateTime] = b"2001:02:03 04:05:06"
        exif[piexif.ExifIFD.DateTimeDigitized] = b"2002:03:04 05:06:07"
    if lens is not None:
        exif[piexif.ExifIFD.LensModel] = lens
    if original is not None:
        exif[piexif.ExifIFD.DateTimeOriginal] = original
    if offset is not None:
        exif[piexif.ExifIFD.OffsetTimeOriginal] = offset
    if gps is not None:
        lat_ref, lat, lon_ref, lon = gps
        gps_ifd = {
            piexif.GPSIFD.GPSLatitudeRef: lat_ref,
            piexif.GPSIFD.GPSLatitude: lat,
            piexif.GPSIFD.GPSLongitudeRef: lon_ref,
            piexif.GPSIFD.GPSLongitude: lon,
        }
    return piexif.dump({"0th": zeroth, "Exif": exif, "GPS": gps_ifd, "1st": {}, "thumbnail": None})


def small_image():
    with Image.open(SOURCE) as im:
        return im.convert("RGB").resize(SIZE, Image.Resampling.LANCZOS)


def save(name, exif_bytes, fmt="JPEG"):
    im = small_image()
    buf = io.BytesIO()
    kwargs = {"exif": exif_bytes} if exif_bytes is not None else {}
    if fmt == "JPEG":
        im.save(buf, "JPEG", quality=70, **kwargs)
    elif fmt == "PNG":
        im.save(buf, "PNG", optimize=True, **kwargs)
    elif fmt == "WEBP":
        im.save(buf, "WEBP", quality=60, **kwargs)
    elif fmt == "TIFF":
        # Uncompressed: Pillow's own TIFF writer, which writes the Exif and GPS IFDs (its
        # libtiff path for compressed TIFF refuses them).
        im.save(buf, "TIFF", **kwargs)
    elif fmt == "HEIF":
        im.save(buf, "HEIF", quality=50, **kwargs)
    data = buf.getvalue()
    (OUT / name).write_bytes(data)
    return data


def app1_exif(data):
    """(start of the APP1 Exif segment's length field, length) in a JPEG."""
    pos = 2
    while pos + 4 <= len(data):
        marker, length = struct.unpack(">HH", data[pos:pos + 4])
        if marker == 0xFFE1 and data[pos + 4:pos + 10] == b"Exif\0\0":
            return pos + 2, length
        pos += 2 + length
    raise SystemExit("no Exif APP1 segment")


def truncate_exif_segment(data, keep):
    """Cuts the Exif APP1 payload to `keep` bytes and fixes the segment length, so the JPEG is
    still well formed but the TIFF data inside it ends early (its offsets point past the end)."""
    at, length = app1_exif(data)
    payload_start = at + 2
    payload = data[payload_start:payload_start + length - 2]
    cut = payload[:keep]
    return data[:at] + struct.pack(">H", len(cut) + 2) + cut + data[payload_start + length - 2:]


def loop_ifd0(data):
    """Points IFD0's next-IFD offset back at IFD0 itself."""
    at, _ = app1_exif(data)
    tiff = at + 2 + 6
    order = "<" if data[tiff:tiff + 2] == b"II" else ">"
    ifd0 = struct.unpack(order + "I", data[tiff + 4:tiff + 8])[0]
    count = struct.unpack(order + "H", data[tiff + ifd0:tiff + ifd0 + 2])[0]
    next_at = tiff + ifd0 + 2 + 12 * count
    return data[:next_at] + struct.pack(order + "I", ifd0) + data[next_at + 4:]


FULL = dict(
    make=b"Canon",
    model=b"Canon EOS 5D Mark IV",
    lens=b"EF24-70mm f/2.8L II USM",
    original=b"2019:07:14 12:30:05",
    offset=b"+02:00",
    # Paris, 48.8566 N 2.3522 E.
    gps=(b"N", rational_dms(48.8566), b"E", rational_dms(2.3522)),
)

# What exiftool must read from each well-formed fixture (None: the tag must be absent).
# Latitude and longitude are exiftool's signed composite values.
EXPECTED = {}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    full = exif_dict(**FULL)
    paris = {"Make": "Canon", "Model": "Canon EOS 5D Mark IV", "LensModel": "EF24-70mm f/2.8L II USM",
             "DateTimeOriginal": "2019:07:14 12:30:05", "OffsetTimeOriginal": "+02:00",
             "GPSLatitude": 48.8566, "GPSLongitude": 2.3522}

    full_jpg = save("full.jpg", full)
    EXPECTED["full.jpg"] = paris
    # PNG (eXIf chunk) and WebP (EXIF chunk) store bare TIFF data, without JPEG's "Exif\0\0".
    save("full.png", full[6:], "PNG")
    EXPECTED["full.png"] = paris
    save("full.webp", full[6:], "WEBP")
    EXPECTED["full.webp"] = paris
    save("full.tif", full, "TIFF")
    EXPECTED["full.tif"] = paris
    # HEIF keeps the EXIF in an item of its own; pillow-heif adds the offset header it needs.
    save("full.heic", full, "HEIF")
    EXPECTED["full.heic"] = paris

    save("no_offset.jpg", exif_dict(make=b"FUJIFILM", model=b"X-T3", original=b"2021:12:31 23:59:58"))
    EXPECTED["no_offset.jpg"] = {"Make": "FUJIFILM", "Model": "X-T3", "DateTimeOriginal": "2021:12:31 23:59:58",
                                 "OffsetTimeOriginal": None, "LensModel": None, "GPSLatitude": None}

    # Rio de Janeiro, 22.9083 S 43.1964 W.
    save("south_west.jpg", exif_dict(gps=(b"S", rational_dms(22.9083), b"W", rational_dms(43.1964)), other_dates=False))
    EXPECTED["south_west.jpg"] = {"GPSLatitude": -22.9083, "GPSLongitude": -43.1964, "Make": None,
                                  "DateTimeOriginal": None}

    save("no_exif.jpg", None)
    EXPECTED["no_exif.jpg"] = {"Make": None, "DateTimeOriginal": None, "GPSLatitude": None}

    # What some cameras write when the clock was never set.
    save("zero_date.jpg", exif_dict(make=b"Kodak", model=b"EasyShare C713", original=b"0000:00:00 00:00:00"))
    EXPECTED["zero_date.jpg"] = {"Make": "Kodak", "DateTimeOriginal": "0000:00:00 00:00:00"}

    save("bad_offset.jpg", exif_dict(original=b"2018:03:04 05:06:07", offset=b"+25:99"))
    EXPECTED["bad_offset.jpg"] = {"DateTimeOriginal": "2018:03:04 05:06:07", "OffsetTimeOriginal": "+25:99"}

    # Minutes with a zero denominator: the position cannot be known.
    save("gps_zero_denominator.jpg",
         exif_dict(make=b"Apple", model=b"iPhone 12",
                   gps=(b"N", ((48, 1), (51, 0), (2376, 100)), b"E", ((2, 1), (21, 1), (792, 100)))))
    EXPECTED["gps_zero_denominator.jpg"] = {"Make": "Apple", "Model": "iPhone 12"}

    # A latitude past the pole: no location, though the longitude is fine.
    save("gps_out_of_range.jpg", exif_dict(gps=(b"N", ((95, 1), (0, 1), (0, 1)), b"E", ((10, 1), (0, 1), (0, 1))), other_dates=False))
    EXPECTED["gps_out_of_range.jpg"] = {"GPSLatitude": 95, "GPSLongitude": 10}

    # Fixed-width fields padded with NULs and spaces, as several makers write them.
    save("padded_camera.jpg", exif_dict(make=b"NIKON CORPORATION\0\0\0", model=b"NIKON D750   \0\0   ",
                                        lens=b"  24.0-120.0 mm f/4.0  "))
    EXPECTED["padded_camera.jpg"] = {"Make": "NIKON CORPORATION", "Model": "NIKON D750", # exiftool keeps the lens's spaces; the Rust reader trims them.
                                        "LensModel": "  24.0-120.0 mm f/4.0  "}

    # Damaged: no tool writes these, so they are made from full.jpg by changing bytes.
    # 60 bytes keep the TIFF header and part of IFD0: entries point past the end of the segment.
    (OUT / "truncated_segment.jpg").write_bytes(truncate_exif_segment(full_jpg, 60))
    (OUT / "ifd_loop.jpg").write_bytes(loop_ifd0(full_jpg))

    for path in sorted(OUT.iterdir()):
        if path.suffix in (".jpg", ".png", ".webp", ".heic", ".tif") and path.stat().st_size >= 20_000:
            raise SystemExit(f"{path.name} is {path.stat().st_size} bytes; keep fixtures under 20 KB")

    cross_check()


def exiftool(path):
    out = subprocess.run(["exiftool", "-j", "-n", "-G", "-Make", "-Model", "-LensModel", "-DateTimeOriginal",
                          "-OffsetTimeOriginal", "-GPSLatitude", "-GPSLongitude", "-Warning", str(path)],
                         check=True, capture_output=True, text=True).stdout
    tags = json.loads(out)[0]
    read = {}
    for key, value in tags.items():
        group, _, name = key.partition(":")
        if not name:  # SourceFile
            continue
        # The signed position is exiftool's Composite tag; the EXIF one has no sign.
        if name in ("GPSLatitude", "GPSLongitude") and group != "Composite":
            continue
        read[name] = value
    return read


def cross_check():
    failures = []
    for name, expected in EXPECTED.items():
        read = exiftool(OUT / name)
        for tag, want in expected.items():
            got = read.get(tag)
            if isinstance(want, (int, float)):
                ok = isinstance(got, (int, float)) and math.isclose(got, want, abs_tol=1e-4)
            else:
                ok = (got is None) if want is None else (str(got) == want)
            if not ok:
                failures.append(f"{name}: {tag} exiftool read {got!r}, expected {want!r}")
        print(f"{name:28} {(OUT / name).stat().st_size:6} B  exiftool: {json.dumps(read, sort_keys=True)}")
    for name in ("truncated_segment.jpg", "ifd_loop.jpg"):
        print(f"{name:28} {(OUT / name).stat().st_size:6} B  exiftool: {json.dumps(exiftool(OUT / name), sort_keys=True)}")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        raise SystemExit(1)
    print("exiftool agrees with every expected value")


if __name__ == "__main__":
    main()
