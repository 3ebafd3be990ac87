#!/usr/bin/env python3
"""Decode + preprocess speed per format (JPEG, HEIC, AVIF, RAW preview), ours vs the Python
reference path, one thread (issue 11):

    python3 scripts/bench_formats.py            # --seconds 6, 16 MP files

1. makes the inputs once into .cache/bench/formats/: three photos of /work/shared/data/photos
   upscaled (Pillow bicubic) to 4896x3264 (16 MP), each saved as JPEG q90 (Pillow), HEIC q90
   (pillow-heif, x265), AVIF q90 (Pillow's AVIF writer via pillow-avif-plugin, aom speed 8) and
   a DNG laid out like a camera's (the JPEG as IFD0 preview, 16 MP of 16-bit Bayer data, a
   160 px thumbnail; scripts/make_format_fixtures.py's writer);
2. measures the reference: `load_image` + `CLIPImageProcessorPil` (Pillow with pillow-heif and
   pillow-avif-plugin registered; RAW through `rawpy.extract_thumb()`), pinned to one CPU;
3. builds and runs `examples/format_speed.rs` (`decode` + `pixel_tensor`, release build with
   the feature flags scripts/build-env.sh picks), pinned to the same CPU;
4. prints a table, writes bench-results/formats-<timestamp>.json and rewrites the section
   between the `bench:formats` markers in BENCHMARKS.md.

Same rule both sides: two warm-up calls, then calls until --seconds have passed (at least 3);
the median per file, then the median over the three files of a format.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from benchlib import (  # noqa: E402
    DEFAULT_CACHE, DEFAULT_IMAGES, REPO, CpuMonitor, ensure_reference_python, fmt, git_state, log, machine_info, machine_line,
    measure, publish, reproduce_footer, target_dir, wait_quiet,
)

SECTION = "formats"
PHOTOS = ["000000020247.jpg", "000000269314.jpg", "000000427034.jpg"]
SIZE = (4896, 3264)  # 16.0 MP, a 3:2 camera frame
FORMATS = ["jpeg", "heic", "avif", "dng"]
CONFIG = REPO / "tests" / "fixtures" / "tiny-clip" / "preprocessor_config.json"
CPU = 0


def make_inputs(folder: Path, images: Path) -> dict[str, list[Path]]:
    import pillow_avif  # noqa: F401
    import pillow_heif
    from PIL import Image

    sys.path.insert(0, str(REPO / "scripts"))
    from make_format_fixtures import jpeg_bytes, write_dng

    pillow_heif.register_heif_opener()
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[Path]] = {f: [] for f in FORMATS}
    for name in PHOTOS:
        stem = Path(name).stem
        paths = {f: folder / f"{stem}.{f if f != 'jpeg' else 'jpg'}" for f in FORMATS}
        if not all(p.is_file() for p in paths.values()):
            log(f"inputs: {name} -> {SIZE[0]}x{SIZE[1]} JPEG, HEIC, AVIF, DNG (slow encoders, done once)")
            src = Image.open(images / name).convert("RGB")
            # Landscape or portrait as the photo is.
            size = SIZE if src.width >= src.height else SIZE[::-1]
            big = src.resize(size, Image.BICUBIC)
            big.save(paths["jpeg"], quality=90)
            big.save(paths["heic"], quality=90)
            big.save(paths["avif"], quality=90, speed=8)
            sensor = big  # full-size Bayer mosaic, 16-bit, uncompressed (~32 MB)
            write_dng(paths["dng"], sensor, paths["jpeg"].read_bytes(), big.size, jpeg_bytes(big.resize((160, 107))), orientation=1)
        for f in FORMATS:
            out[f].append(paths[f])
    return out


def reference_timings(inputs: dict[str, list[Path]], seconds: float) -> dict:
    import pillow_avif  # noqa: F401
    import pillow_heif
    import rawpy
    from PIL import Image
    from transformers.image_utils import load_image
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    pillow_heif.register_heif_opener()
    processor = CLIPImageProcessorPil.from_pretrained(str(CONFIG.parent))

    def load(path: Path):
        if path.suffix == ".dng":
            with rawpy.imread(str(path)) as raw:
                thumb = raw.extract_thumb()
            img = Image.open(io.BytesIO(bytes(thumb.data)))
            return load_image(img)
        return load_image(str(path))

    results = {}
    for fmt_name, paths in inputs.items():
        per_file = []
        for path in paths:
            decode_times = []

            def call(_i, path=path, decode_times=decode_times):
                t = time.perf_counter()
                img = load(path)
                img.load()
                decode_times.append(time.perf_counter() - t)
                processor(images=img, return_tensors="np")

            times, noise = measure(seconds, call)
            per_file.append({"file": path.name, "total_s": times, "decode_s": decode_times[2:], **noise})
            log(f"  reference {path.name}: {1e3 * statistics.median(times):.0f} ms")
        results[fmt_name] = per_file
    return results


def our_timings(inputs: dict[str, list[Path]], seconds: float, no_build: bool) -> dict:
    example = target_dir() / "release" / "examples" / "format_speed"
    if not no_build:
        log("building: cargo build --release --locked --example format_speed")
        subprocess.run(["bash", "-c", 'source scripts/build-env.sh && cargo build --release --locked "${CARGO_FEATURE_FLAGS[@]}" --example format_speed'],
                       cwd=REPO, check=True, stdout=sys.stderr)
    results = {}
    for fmt_name, paths in inputs.items():
        cmd = [str(example), str(seconds), str(CONFIG)] + [str(p) for p in paths]
        with CpuMonitor() as mon:
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, preexec_fn=lambda: os.sched_setaffinity(0, {CPU})).stdout
        rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        for row in rows:
            row["file"] = Path(row["file"]).name
            row["foreign_cpu_share"] = mon.foreign_share
            log(f"  ours {row['file']}: {1e3 * statistics.median(row['total_s']):.0f} ms")
        results[fmt_name] = rows
    return results


def median_of_medians(rows: list[dict], key: str) -> float:
    return statistics.median(statistics.median(r[key]) for r in rows if r[key])


def render(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"Decode + CLIP preprocessing of one {SIZE[0]}x{SIZE[1]} (16 MP) file, one thread (both sides pinned to one CPU), "
        "median per file then over three photos. Ours: `decode` + `pixel_tensor` (release build, `heif` feature). "
        "Reference: transformers `load_image` + `CLIPImageProcessorPil`, with pillow-heif / pillow-avif-plugin "
        "registered, RAW through `rawpy.extract_thumb()`.",
        "",
        machine_line(m),
        "",
        "| format | file size | ours: decode | ours: decode + preprocess | reference: decode | reference: decode + preprocess | ours vs reference |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for f in FORMATS:
        ours, ref = results["ours"][f], results["reference"][f]
        size = statistics.median(results["sizes"][f]) / 1e6
        o_dec, o_tot = median_of_medians(ours, "decode_s"), median_of_medians(ours, "total_s")
        r_dec, r_tot = median_of_medians(ref, "decode_s"), median_of_medians(ref, "total_s")
        label = {"jpeg": "JPEG q90", "heic": "HEIC q90 (HEVC)", "avif": "AVIF q90 (AV1)", "dng": "DNG, 16 MP JPEG preview"}[f]
        lines.append(
            f"| {label} | {size:.1f} MB | {fmt(1e3 * o_dec)} ms | {fmt(1e3 * o_tot)} ms | {fmt(1e3 * r_dec)} ms | "
            f"{fmt(1e3 * r_tot)} ms | {r_tot / o_tot:.1f}x faster |"
        )
    lines += [
        "",
        f"Measured {results['when']} on {results['git']}; "
        + ("the machine was quiet before measuring" if results["quiet"].get("quiet") else
           f"the machine was not quiet after waiting {results['quiet'].get('waited_s')} s (other processes used the CPUs)")
        + f"; largest share of the CPUs other processes used during a measurement: "
          f"{100 * max(r.get('foreign_cpu_share', 0) for side in ('reference', 'ours') for rows in results[side].values() for r in rows):.0f}%.",
        "",
    ]
    lines += reproduce_footer("python3 scripts/bench_formats.py", results["json_name"])
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=6.0, help="measuring time per file and side")
    ap.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE / "formats")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-markdown", action="store_true")
    ap.add_argument("--retries", type=int, default=None,
                    help="repeat a disturbed measurement at most this often (benchlib's default otherwise); "
                         "on a shared machine 0 keeps the run short, the contention is then in the table")
    args = ap.parse_args(argv)
    if args.retries is not None:
        benchlib.CLEAN["retries"] = args.retries
    ensure_reference_python(modules=("PIL", "transformers", "pillow_heif", "pillow_avif", "rawpy", "pidng"))

    inputs = make_inputs(args.cache, args.images)
    quiet = wait_quiet(30 if args.retries == 0 else 120, check_competing=True)
    os.sched_setaffinity(0, {CPU})
    log("== reference (Python)")
    reference = reference_timings(inputs, args.seconds)
    log("== ours (Rust)")
    ours = our_timings(inputs, args.seconds, args.no_build)
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    json_name = f"formats-{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%dT%H%M%S')}.json"
    results = {
        "when": when, "git": git_state(), "machine": machine_info(threads=1), "quiet": quiet, "json_name": json_name,
        "sizes": {f: [p.stat().st_size for p in paths] for f, paths in inputs.items()},
        "reference": reference, "ours": ours,
    }
    section = render(results)
    publish(results, json_name, section, SECTION, "## Decode speed per format (HEIC, AVIF, RAW, JPEG)", markdown=not args.no_markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
