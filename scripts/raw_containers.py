"""Camera RAW containers written from scratch (struct), for scripts/make_format_fixtures.py.

Each file is laid out the way the maker's cameras write it, small: a 160x120-ish sensor strip
(uncompressed, or a flat lossless JPEG for CR2), the maker's Make/Model strings of a real
camera that LibRaw (the reference, via rawpy) knows, the maker note entries rawler (the RAW
library VisionQuery used before its own container reader) insisted on, a JPEG preview where the maker keeps it, and optionally a
smaller JPEG thumbnail where the maker keeps that. What each reader needed is said at each
writer. No camera's file was available to copy: these follow the public descriptions of the
formats (ExifTool's tag tables, LibRaw's and rawler's parsers).
"""

from __future__ import annotations

import struct

import numpy as np
from PIL import Image

# TIFF field types.
BYTE, ASCII, SHORT, LONG, UNDEFINED, IFD_TYPE = 1, 2, 3, 4, 7, 13
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 8: 2, 9: 4, 10: 8, 13: 4}
_FMT = {1: "B", 3: "H", 4: "I", 7: "B", 8: "h", 9: "i", 13: "I"}


class IFD:
    """A TIFF directory: (tag, type, value) entries, value a str (ASCII), bytes (UNDEFINED) or a
    list of ints, IFDs (written as their offset) or Blobs (written as their offset)."""

    def __init__(self, entries, next=None):
        self.entries = entries
        self.next = next
        self.off = None


class Blob:
    """Data placed after the directories (strips, JPEG streams); its offset is known at layout.
    `last` blobs go at the end of the file, as cameras put the sensor data."""

    def __init__(self, data: bytes, last: bool = False):
        self.data = data
        self.last = last
        self.off = None


def _items(v):
    return v if isinstance(v, list) else [v]


def _count(typ, val):
    if typ == ASCII:
        return len(val) + 1
    if isinstance(val, (bytes, bytearray)):
        return len(val) // _TYPE_SIZE[typ]
    return len(_items(val))


def _value_bytes(bo, typ, val, base):
    if typ == ASCII:
        return val.encode() + b"\0"
    if isinstance(val, (bytes, bytearray)):
        return bytes(val)
    out = b""
    for v in _items(val):
        if isinstance(v, (IFD, Blob)):
            v = v.off + base
        out += struct.pack(bo + _FMT[typ], v)
    return out


def build_tiff(ifd0: IFD, bo: str, header: bytes, header_len: int | None = None, ifd0_ptr_at: int | None = 4) -> bytes:
    """`header`, then IFD0 and every directory it reaches (sub-IFDs, next-IFD chain), then every
    blob. Offsets count from the start of the result (a maker note built this way has offsets
    relative to its own start, as Nikon's and Olympus's do)."""
    header_len = len(header) if header_len is None else header_len
    ifds, blobs = [], []

    def collect(ifd):
        if any(i is ifd for i in ifds):
            return
        ifds.append(ifd)
        for _, _, val in ifd.entries:
            if isinstance(val, (bytes, bytearray, str)):
                continue
            for v in _items(val):
                if isinstance(v, IFD):
                    collect(v)
                elif isinstance(v, Blob) and not any(b is v for b in blobs):
                    blobs.append(v)
        if ifd.next is not None:
            collect(ifd.next)

    collect(ifd0)
    blobs.sort(key=lambda b: b.last)
    pos = header_len
    for ifd in ifds:
        ifd.entries.sort(key=lambda e: e[0])
        pos += pos & 1
        ifd.off = pos
        pos += 2 + 12 * len(ifd.entries) + 4
        for _, typ, val in ifd.entries:
            n = _count(typ, val) * _TYPE_SIZE[typ]
            if n > 4:
                pos += n + (n & 1)
    for b in blobs:
        pos += pos & 1
        b.off = pos
        pos += len(b.data)
    out = bytearray(pos)
    out[: len(header)] = header
    if ifd0_ptr_at is not None:
        struct.pack_into(bo + "I", out, ifd0_ptr_at, ifd0.off)
    for ifd in ifds:
        p = ifd.off
        struct.pack_into(bo + "H", out, p, len(ifd.entries))
        data_at = p + 2 + 12 * len(ifd.entries) + 4
        for i, (tag, typ, val) in enumerate(ifd.entries):
            vb = _value_bytes(bo, typ, val, 0)
            e = p + 2 + 12 * i
            struct.pack_into(bo + "HHI", out, e, tag, typ, _count(typ, val))
            if len(vb) <= 4:
                out[e + 8 : e + 8 + len(vb)] = vb
            else:
                struct.pack_into(bo + "I", out, e + 8, data_at)
                out[data_at : data_at + len(vb)] = vb
                data_at += len(vb) + (len(vb) & 1)
        struct.pack_into(bo + "I", out, p + 2 + 12 * len(ifd.entries), ifd.next.off if ifd.next is not None else 0)
    for b in blobs:
        out[b.off : b.off + len(b.data)] = b.data
    return bytes(out)


def bayer(im: Image.Image, width: int, height: int, bits: int) -> np.ndarray:
    """An RGGB mosaic of the picture at `bits` bits per sample."""
    a = np.asarray(im.resize((width, height), Image.LANCZOS)).astype(np.uint32) << (bits - 8)
    m = np.empty((height, width), np.uint32)
    m[0::2, 0::2] = a[0::2, 0::2, 0]
    m[0::2, 1::2] = a[0::2, 1::2, 1]
    m[1::2, 0::2] = a[1::2, 0::2, 1]
    m[1::2, 1::2] = a[1::2, 1::2, 2]
    return m


def pack12be(m: np.ndarray) -> bytes:
    """12-bit samples packed big-endian, two in three bytes (Nikon's uncompressed NEF)."""
    f = m.reshape(-1, 2)
    a, b = f[:, 0], f[:, 1]
    return np.stack([a >> 4, ((a & 15) << 4) | (b >> 8), b & 255], 1).astype(np.uint8).tobytes()


def unpacked12le_left(m: np.ndarray) -> bytes:
    """12-bit samples in 16-bit little-endian words, left-aligned (Olympus, Panasonic unpacked)."""
    return (m.astype("<u2") << 4).tobytes()


def flat_ljpeg(width: int, height: int, bits: int = 14, comps: int = 2) -> bytes:
    """A lossless JPEG (SOF3, predictor 1) of a flat picture, as Canon stores CR2 sensor data
    (two components of width/2 each): one Huffman code ('0') for difference category 0, so every
    sample is the predictor's start value 1 << (bits - 1). Valid to any lossless-JPEG reader."""

    def seg(marker, data):
        return b"\xFF" + bytes([marker]) + struct.pack(">H", len(data) + 2) + data

    dht = seg(0xC4, bytes([0x00]) + bytes([1] + [0] * 15) + bytes([0]))
    sof = seg(0xC3, bytes([bits]) + struct.pack(">HHB", height, width // comps, comps) + b"".join(bytes([i + 1, 0x11, 0]) for i in range(comps)))
    sos = seg(0xDA, bytes([comps]) + b"".join(bytes([i + 1, 0x00]) for i in range(comps)) + bytes([1, 0, 0]))
    return b"\xFF\xD8" + dht + sof + sos + bytes((width * height + 7) // 8) + b"\xFF\xD9"


DATE = (0x9003, ASCII, "2024:05:01 12:00:00")  # EXIF DateTimeOriginal


def nef(sensor: Image.Image, preview: bytes, thumb: bytes | None, orientation: int) -> bytes:
    """Nikon NEF (D700), big-endian TIFF as Nikon writes it: IFD0 with Make/Model/Orientation (and
    here a small JPEG thumbnail through JPEGInterchangeFormat), SubIFD 0 the JPEG preview
    (NewSubfileType 1, JPEGInterchangeFormat), SubIFD 1 the sensor data (160x120, 12-bit
    uncompressed, CFA tags), EXIF IFD with the Nikon type-2 maker note ("Nikon\\0" 02 10 00 00
    and its own big-endian TIFF; NEFCompression 3 = uncompressed).
    LibRaw: knows "NIKON D700" and takes 12-bit uncompressed strips. rawler: needs the camera in
    its database for mode "12bit", a maker note, and maker note and TIFF in the same byte order."""
    w, h = 160, 120
    raw = pack12be(bayer(sensor, w, h, 12))
    mn_ifd = IFD([(0x0001, UNDEFINED, b"0210"), (0x0093, SHORT, [3])])
    makernote = b"Nikon\0\x02\x10\0\0" + build_tiff(mn_ifd, ">", b"MM\0*\0\0\0\0")
    exif = IFD([(0x927C, UNDEFINED, makernote), DATE])
    preview_ifd = IFD([(0x00FE, LONG, [1]), (0x0103, SHORT, [6]), (0x0201, LONG, [Blob(preview)]), (0x0202, LONG, [len(preview)])])
    raw_ifd = IFD([
        (0x00FE, LONG, [0]), (0x0100, LONG, [w]), (0x0101, LONG, [h]), (0x0102, SHORT, [12]), (0x0103, SHORT, [1]),
        (0x0106, SHORT, [32803]), (0x0111, LONG, [Blob(raw, last=True)]), (0x0115, SHORT, [1]), (0x0116, LONG, [h]),
        (0x0117, LONG, [len(raw)]), (0x828D, SHORT, [2, 2]), (0x828E, BYTE, [0, 1, 1, 2]),
    ])  # fmt: skip
    entries = [
        (0x00FE, LONG, [1]), (0x010F, ASCII, "NIKON CORPORATION"), (0x0110, ASCII, "NIKON D700"),
        (0x0112, SHORT, [orientation]), (0x0131, ASCII, "Ver.1.00"), (0x014A, LONG, [preview_ifd, raw_ifd]), (0x8769, LONG, [exif]),
    ]  # fmt: skip
    if thumb is not None:
        entries += [(0x0103, SHORT, [6]), (0x0201, LONG, [Blob(thumb)]), (0x0202, LONG, [len(thumb)])]
    return build_tiff(IFD(entries), ">", b"MM\0*\0\0\0\0")


def orf(sensor: Image.Image, preview: bytes, thumb: bytes | None, orientation: int) -> bytes:
    """Olympus ORF (E-M10): "IIRO" magic, IFD0 = the sensor data (160x120, 12 bits in 16-bit
    words), IFD1 a small JPEG thumbnail, EXIF maker note "OLYMPUS\\0II" 03 00 whose offsets count
    from the note's start: CameraSettings (0x2020) holds the JPEG preview (PreviewImageStart and
    Length, 0x101/0x102), where LibRaw finds it; ImageProcessing (0x2040) holds WB_RBLevels,
    BlackLevel2 and ValidBits, without which rawler refuses the file ("Couldn't find ImgProc IFD")."""
    w, h = 160, 120
    raw = unpacked12le_left(bayer(sensor, w, h, 12))
    camera_settings = IFD([(0x0100, LONG, [1]), (0x0101, LONG, [Blob(preview)]), (0x0102, LONG, [len(preview)])])
    image_processing = IFD([
        (0x0000, UNDEFINED, b"0112"), (0x0100, SHORT, [512, 448]), (0x0600, SHORT, [64, 64, 64, 64]), (0x0611, SHORT, [12]),
        (0x0612, SHORT, [0]), (0x0613, SHORT, [0]), (0x0614, SHORT, [w]), (0x0615, SHORT, [h]),
    ])  # fmt: skip
    mn_ifd = IFD([(0x0000, UNDEFINED, b"0100"), (0x2020, IFD_TYPE, [camera_settings]), (0x2040, IFD_TYPE, [image_processing])])
    makernote = build_tiff(mn_ifd, "<", b"OLYMPUS\0II\x03\0", header_len=12, ifd0_ptr_at=None)
    exif = IFD([(0x927C, UNDEFINED, makernote), DATE])
    entries = [
        (0x00FE, LONG, [0]), (0x0100, LONG, [w]), (0x0101, LONG, [h]), (0x0102, SHORT, [16]), (0x0103, SHORT, [1]),
        (0x0106, SHORT, [32803]), (0x010F, ASCII, "OLYMPUS IMAGING CORP.  "), (0x0110, ASCII, "E-M10"),
        (0x0111, LONG, [Blob(raw, last=True)]), (0x0112, SHORT, [orientation]), (0x0115, SHORT, [1]), (0x0116, LONG, [h]),
        (0x0117, LONG, [len(raw)]), (0x8769, LONG, [exif]),
    ]  # fmt: skip
    ifd1 = None
    if thumb is not None:
        ifd1 = IFD([(0x0103, SHORT, [6]), (0x0201, LONG, [Blob(thumb)]), (0x0202, LONG, [len(thumb)])])
    return build_tiff(IFD(entries, ifd1), "<", b"IIRO\0\0\0\0")


def rw2(sensor: Image.Image, preview: bytes, orientation: int) -> bytes:
    """Panasonic RW2 (DMC-GX7): "IIU\\0" magic, IFD0 at 0x18 holding Panasonic's own tags
    (sensor size 0x02/0x03 and borders 0x04-0x07, CFA 0x09, bits 0x0A, black levels 0x1C-0x1E,
    WB 0x11/0x12 and 0x24-0x26) next to the TIFF ones, the sensor data (128x120, 12 bits in
    16-bit words) through StripOffsets, and the JPEG preview as JpgFromRaw (0x2E, UNDEFINED),
    where LibRaw finds it. The sensor is 128 wide because rawler's GX7 modes cut a 208-pixel
    right border off a 4:3 frame (a narrower one makes it panic); 128x120 is its 1:1 mode."""
    w, h = 128, 120
    raw = unpacked12le_left(bayer(sensor, w, h, 12))
    entries = [
        (0x0001, UNDEFINED, b"0340"), (0x0002, SHORT, [w]), (0x0003, SHORT, [h]), (0x0004, SHORT, [0]), (0x0005, SHORT, [0]),
        (0x0006, SHORT, [h]), (0x0007, SHORT, [w]), (0x0008, SHORT, [1]), (0x0009, SHORT, [1]), (0x000A, SHORT, [12]),
        (0x000B, SHORT, [34316]), (0x0011, SHORT, [512]), (0x0012, SHORT, [512]), (0x0017, SHORT, [200]),
        (0x001C, SHORT, [0]), (0x001D, SHORT, [0]), (0x001E, SHORT, [0]), (0x0024, SHORT, [512]), (0x0025, SHORT, [256]),
        (0x0026, SHORT, [512]), (0x002E, UNDEFINED, preview), (0x010F, ASCII, "Panasonic"), (0x0110, ASCII, "DMC-GX7"),
        (0x0111, LONG, [Blob(raw, last=True)]), (0x0112, SHORT, [orientation]), (0x0116, LONG, [h]), (0x0117, LONG, [len(raw)]),
    ]  # fmt: skip
    return build_tiff(IFD(entries), "<", b"IIU\0\x18\0\0\0" + bytes(16))


def cr2(preview: bytes, preview_size: tuple[int, int], thumb: bytes, orientation: int) -> bytes:
    """Canon CR2 (EOS 40D): "II*\\0", IFD0 at 0x10, "CR" 02 00 and the RAW IFD's offset at 8..16.
    IFD0: the JPEG preview through StripOffsets (Compression 6, its size), Make/Model/Orientation,
    EXIF IFD with the Canon maker note (a plain IFD: CameraSettings with sRAW quality 0 = RAW,
    which rawler reads for its mode, and the 40D's ModelID). IFD1: a small JPEG thumbnail
    (JPEGInterchangeFormat). IFD3 (the next after IFD1 here; real files have an RGB IFD2 between)
    the sensor data: a 160x120 lossless JPEG (flat), Cr2Id (0xC5D8) and CR2 slices (0xC640).
    LibRaw and rawler both read the lossless JPEG's frame header for the sensor size."""
    w, h = 160, 120
    raw = flat_ljpeg(w, h)
    makernote = IFD([(0x0001, SHORT, [0] * 48), (0x0010, LONG, [0x80000190])])
    exif = IFD([(0x927C, IFD_TYPE, [makernote]), DATE])
    raw_ifd = IFD([(0x0103, SHORT, [6]), (0x0111, LONG, [Blob(raw, last=True)]), (0x0117, LONG, [len(raw)]), (0xC5D8, LONG, [1]), (0xC640, SHORT, [0, w, w])])
    ifd1 = IFD([(0x0103, SHORT, [6]), (0x0201, LONG, [Blob(thumb)]), (0x0202, LONG, [len(thumb)])], raw_ifd)
    pw, ph = preview_size
    ifd0 = IFD([
        (0x0100, SHORT, [pw]), (0x0101, SHORT, [ph]), (0x0102, SHORT, [8, 8, 8]), (0x0103, SHORT, [6]),
        (0x010F, ASCII, "Canon"), (0x0110, ASCII, "Canon EOS 40D"), (0x0111, LONG, [Blob(preview)]),
        (0x0112, SHORT, [orientation]), (0x0117, LONG, [len(preview)]), (0x8769, LONG, [exif]),
    ], ifd1)  # fmt: skip
    data = bytearray(build_tiff(ifd0, "<", b"II*\0\0\0\0\0CR\x02\0\0\0\0\0"))
    struct.pack_into("<I", data, 12, raw_ifd.off)
    return bytes(data)
