"""Camera RAW containers written from scratch (struct), for scripts/make_format_fixtures.py.

Each file is laid out the way the maker's cameras write it, small: a 160x120-ish sensor strip
(uncompressed, a flat lossless JPEG for CR2, a placeholder for CR3's CRX), the maker's
Make/Model strings of a real camera that LibRaw (the reference, via rawpy) knows, the maker
note entries rawler (the RAW library VisionQuery used before its own container reader) insisted
on (NEF, ORF, RW2, CR2; ARW, RAF and CR3 were written after rawler was gone and are checked with
LibRaw only), a JPEG preview where the maker keeps it, and optionally smaller JPEG thumbnails
where the maker keeps those. The sensor data always comes last, as cameras write it. What each
reader needed is said at each writer. No camera's file was available to copy: these follow the
public descriptions of the formats (ExifTool's tag tables, LibRaw's and rawler's parsers).
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


def arw(sensor: Image.Image, preview: bytes, thumb: bytes, orientation: int) -> bytes:
    """Sony ARW (ILCE-7M3), little-endian TIFF as Sony writes it: IFD0 with Make "SONY", Model,
    Orientation and the JPEG preview (JPEGInterchangeFormat, ExifTool's PreviewImage), IFD1 a
    small JPEG thumbnail, SubIFD 0 the sensor data (160x120, uncompressed 14 bits in 16-bit
    little-endian words, CFA tags), EXIF IFD.
    LibRaw: knows "ILCE-7M3", takes the raw IFD with the most pixels (uncompressed 14-bit: its
    byte count is width x height x 2) and, as for every TIFF RAW, the largest JPEG of the other
    IFDs as the preview. Sony's encrypted SR2 private block (0xC634) is not needed for that."""
    w, h = 160, 120
    raw = (bayer(sensor, w, h, 14).astype("<u2")).tobytes()
    exif = IFD([DATE])
    raw_ifd = IFD([
        (0x00FE, LONG, [0]), (0x0100, LONG, [w]), (0x0101, LONG, [h]), (0x0102, SHORT, [14]), (0x0103, SHORT, [1]),
        (0x0106, SHORT, [32803]), (0x0111, LONG, [Blob(raw, last=True)]), (0x0115, SHORT, [1]), (0x0116, LONG, [h]),
        (0x0117, LONG, [len(raw)]), (0x828D, SHORT, [2, 2]), (0x828E, BYTE, [0, 1, 1, 2]),
    ])  # fmt: skip
    ifd1 = IFD([(0x00FE, LONG, [1]), (0x0103, SHORT, [6]), (0x0201, LONG, [Blob(thumb)]), (0x0202, LONG, [len(thumb)])])
    ifd0 = IFD([
        (0x00FE, LONG, [1]), (0x0103, SHORT, [6]), (0x010F, ASCII, "SONY"), (0x0110, ASCII, "ILCE-7M3"),
        (0x0112, SHORT, [orientation]), (0x0131, ASCII, "ILCE-7M3 v3.01"), (0x014A, LONG, [raw_ifd]),
        (0x0201, LONG, [Blob(preview)]), (0x0202, LONG, [len(preview)]), (0x8769, LONG, [exif]),
    ], ifd1)  # fmt: skip
    return build_tiff(ifd0, "<", b"II*\0\0\0\0\0")


def jpeg_with_exif(jpeg: bytes, exif_tiff: bytes) -> bytes:
    """`jpeg` (as Pillow writes it: SOI, JFIF APP0, ...) with its APP0 replaced by an APP1 `Exif`
    segment holding `exif_tiff`, right after SOI, as cameras write their JPEGs (LibRaw reads a
    RAF's EXIF at the JPEG's byte 12: SOI, APP1 marker and length, "Exif\\0\\0")."""
    assert jpeg[:4] == b"\xFF\xD8\xFF\xE0", jpeg[:4]
    rest = jpeg[4 + struct.unpack(">H", jpeg[4:6])[0] :]
    app1 = b"Exif\0\0" + exif_tiff
    return b"\xFF\xD8\xFF\xE1" + struct.pack(">H", len(app1) + 2) + app1 + rest


def raf(sensor: Image.Image, preview: bytes, orientation: int) -> bytes:
    """Fujifilm RAF (X-A1, a Bayer sensor), big-endian, as Fujifilm writes it: the 16-byte magic
    "FUJIFILMCCD-RAW ", format version "0201", camera ID, the camera name (28..60) and directory
    version "0100" (60..64); at 84/88 the JPEG's offset and length, at 92/96 the CFA header's, at
    100/104 the CFA data's. Then the JPEG preview, whose APP1 EXIF carries Make "FUJIFILM", the
    Model and the Orientation (LibRaw reads them there: parse_tiff at the JPEG's byte 12); the CFA
    header, a count and (tag, length, value) records: 0x100 the raw size, 0x121 the output size,
    0x2FF0 the white balance; last the sensor data (160x120, 12 bits in 16-bit little-endian words).
    LibRaw: takes the file on its magic, sizes from the CFA header (0x100, else 0x121; with no
    size at all the file is refused), the preview from 84/88; it unpacks the sensor data as 12-bit samples in the
    EXIF's byte order (14-bit or big-endian samples are "data corrupted")."""
    w, h = 160, 120
    exif = build_tiff(IFD([
        (0x010F, ASCII, "FUJIFILM"), (0x0110, ASCII, "X-A1"), (0x0112, SHORT, [orientation]),
        (0x0131, ASCII, "Digital Camera X-A1 Ver1.00"), (0x8769, LONG, [IFD([DATE])]),
    ]), "<", b"II*\0\0\0\0\0")  # fmt: skip
    jpeg = jpeg_with_exif(preview, exif)
    raw = bayer(sensor, w, h, 12).astype("<u2").tobytes()

    def record(tag, values):
        return struct.pack(">HH", tag, 2 * len(values)) + struct.pack(f">{len(values)}H", *values)

    cfa_header = struct.pack(">I", 3) + record(0x0100, [h, w]) + record(0x0121, [h, w]) + record(0x2FF0, [302, 512, 302, 512])
    header_len = 148
    jpeg_at = header_len
    cfa_header_at = jpeg_at + len(jpeg)
    raw_at = cfa_header_at + len(cfa_header)
    raw_at += -raw_at % 16
    header = bytearray(header_len)
    header[0:16] = b"FUJIFILMCCD-RAW "
    header[16:20] = b"0201"
    header[20:28] = b"FF129502"
    header[28:60] = b"X-A1".ljust(32, b"\0")
    header[60:64] = b"0100"
    struct.pack_into(">6I", header, 84, jpeg_at, len(jpeg), cfa_header_at, len(cfa_header), raw_at, len(raw))
    out = bytes(header) + jpeg + cfa_header
    return out + bytes(raw_at - len(out)) + raw


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full_box(kind: bytes, body: bytes, version_flags: int = 0) -> bytes:
    return _box(kind, struct.pack(">I", version_flags) + body)


CANON_CR3_UUID = bytes.fromhex("85c0b687820f11e08111f4ce462b6a48")
CANON_PREVIEW_UUID = bytes.fromhex("eaf42b5e1c984b88b9fbb7dc406e4d16")


def _cr3_track(sample_entry_children: bytes, width: int, height: int, chunk_offset: int, size: int) -> bytes:
    """A `trak` whose one sample (`size` bytes at `chunk_offset` in the file) is described by a
    CRAW sample entry: a VisualSampleEntry (78 bytes) + 4 bytes, then `sample_entry_children`."""
    visual = bytes(6) + struct.pack(">H", 1) + bytes(16) + struct.pack(">HHII", width, height, 0x480000, 0x480000)
    visual += bytes(4) + struct.pack(">H", 1) + bytes(32) + struct.pack(">Hh", 24, -1)
    craw = _box(b"CRAW", visual + bytes(4) + sample_entry_children)
    stbl = _box(b"stbl", b"".join([
        _full_box(b"stsd", struct.pack(">I", 1) + craw),
        _full_box(b"stts", struct.pack(">III", 1, 1, 1)),
        _full_box(b"stsc", struct.pack(">IIII", 1, 1, 1, 1)),
        _full_box(b"stsz", struct.pack(">II", size, 1)),
        _full_box(b"co64", struct.pack(">IQ", 1, chunk_offset)),
    ]))  # fmt: skip
    dinf = _box(b"dinf", _full_box(b"dref", struct.pack(">I", 1) + _full_box(b"url ", b"", 1)))
    minf = _box(b"minf", _full_box(b"vmhd", bytes(8), 1) + dinf + stbl)
    mdia = _box(b"mdia", _full_box(b"mdhd", struct.pack(">IIIIHH", 0, 0, 1, 1, 0x55C4, 0)) + _full_box(b"hdlr", bytes(4) + b"vide" + bytes(12) + b"\0") + minf)
    tkhd = _full_box(b"tkhd", struct.pack(">IIIII", 0, 0, 1, 0, 1) + bytes(52) + struct.pack(">II", width << 16, height << 16), 3)
    return _box(b"trak", tkhd + mdia)


def cr3(sensor_size: tuple[int, int], jpeg: bytes, jpeg_size, preview: bytes, preview_size, thumb: bytes, thumb_size, orientation: int) -> bytes:
    """Canon CR3 (EOS R), ISO-BMFF as Canon writes it:
      ftyp  brand "crx ", compatible "crx " "isom"
      moov  uuid 85c0b687-820f-11e0-8111-f4ce462b6a48 (Canon): CNCV (version string), CMT1 (a
            TIFF: IFD0 with the picture size, Make, Model, Orientation), CMT2 (EXIF IFD), CMT3
            (the Canon maker note: ModelID 0x80000424 = EOS R), CMT4 (GPS IFD), THMB (a small
            JPEG thumbnail after a 16-byte header: version, width, height, size);
            mvhd; trak 1: a CRAW sample entry with a JPEG box, its sample the full-size JPEG in
            mdat; trak 2: a CRAW sample entry with a CMP1 box (the CRX header: 4 planes of 14 bits,
            RGGB, one tile), its sample the sensor data in mdat
      uuid  eaf42b5e-1c98-4b88-b9fb-b7dc406e4d16: 8 bytes, then PRVW (a header with width and
            height, then a mid-size JPEG preview running to the box's end)
      mdat  the full-size JPEG, then the sensor data (to the file's end)
    LibRaw (parseCR3, selectCRXTrack): walks the atoms it knows by name (an unknown name last
    in its list is an error that refuses the file), CMT1 for Make/Model/Orientation (through the IFD with the largest
    ImageLength), the tracks' hdlr "vide" + CRAW sample entries (JPEG -> a JPEG track, a valid
    CMP1 -> a RAW track; without a RAW track the file is refused), stsz/co64 for each sample's
    size and place. Its preview is the largest JPEG track's sample (here the full-size JPEG,
    ahead of PRVW and THMB). The sensor data is not a real CRX stream: LibRaw identifies the
    file and extracts the preview without decoding it."""
    sw, sh = sensor_size

    def tiff(entries):
        return build_tiff(IFD(entries), "<", b"II*\0\0\0\0\0")

    jw, jh = jpeg_size
    cmt1 = tiff([
        (0x0100, LONG, [jw]), (0x0101, LONG, [jh]), (0x010F, ASCII, "Canon"), (0x0110, ASCII, "Canon EOS R"),
        (0x0112, SHORT, [orientation]), (0x0132, ASCII, "2024:05:01 12:00:00"),
    ])  # fmt: skip
    cmt2 = tiff([DATE])
    cmt3 = tiff([(0x0010, LONG, [0x80000424])])
    cmt4 = tiff([(0x0000, BYTE, [2, 3, 0, 0])])
    tw, th = thumb_size
    thmb = _box(b"THMB", struct.pack(">IHHIHH", 0, tw, th, len(thumb), 1, 0) + thumb)
    canon = _box(b"uuid", CANON_CR3_UUID + b"".join([
        _box(b"CNCV", b"CanonCR3_001/00.10.00/00.00.00"),
        _box(b"CMT1", cmt1), _box(b"CMT2", cmt2), _box(b"CMT3", cmt3), _box(b"CMT4", cmt4), thmb,
    ]))  # fmt: skip
    mvhd = _full_box(b"mvhd", struct.pack(">IIII", 0, 0, 1, 1) + struct.pack(">IH", 0x10000, 0x100) + bytes(10) + struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000) + bytes(24) + struct.pack(">I", 3))

    # CMP1 (CRX image header): version 0x100, full size, tile = full size, 14 bits, 4 planes +
    # CFA layout 0 (RGGB), encoding 0 with no wavelet levels, no tile rows/columns, and the size
    # of the header that starts the sensor data in mdat.
    mdat_header_len = 0x30
    cmp1 = struct.pack(">HHHHIIIIBBBBI", 0, 0x30, 0x100, 0, sw, sh, sw, sh, 14, 0x40, 0x00, 0x00, mdat_header_len) + bytes(28)
    sensor = bytes(mdat_header_len) + bytes(sw * sh * 2)  # (not a CRX stream: never decoded here)
    pw, ph = preview_size
    prvw = _box(b"PRVW", struct.pack(">IHHHHI", 0, 1, pw, ph, 1, len(preview)) + preview)
    prvw_uuid = _box(b"uuid", CANON_PREVIEW_UUID + struct.pack(">Q", 1) + prvw)
    ftyp = _box(b"ftyp", b"crx " + struct.pack(">I", 1) + b"crx isom")

    def moov(jpeg_at, sensor_at):
        return _box(b"moov", canon + mvhd
                    + _cr3_track(_box(b"JPEG", bytes(4)), jw, jh, jpeg_at, len(jpeg))
                    + _cr3_track(_box(b"CMP1", cmp1), sw, sh, sensor_at, len(sensor)))  # fmt: skip

    head_len = len(ftyp) + len(moov(0, 0)) + len(prvw_uuid) + 8
    return ftyp + moov(head_len, head_len + len(jpeg)) + prvw_uuid + _box(b"mdat", jpeg + sensor)
