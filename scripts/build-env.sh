# Sourced by the scripts: decides the cargo feature flags for this machine.
# The default `jpeg-simd` feature assembles libjpeg-turbo's SIMD decoder with nasm. Install nasm
# when we can (root with apt); otherwise build the portable C decoder (same pixels, slower).
if ! command -v nasm >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing nasm (SIMD JPEG decoding) with apt-get" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nasm >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nasm >/dev/null 2>&1; } || true
fi
if command -v nasm >/dev/null 2>&1; then
  CARGO_FEATURE_FLAGS=()
else
  echo "note: nasm not found; building the portable JPEG decoder (install nasm for 2x faster decoding)" >&2
  CARGO_FEATURE_FLAGS=(--no-default-features)
fi

# The `heif` feature (HEIC/HEIF/AVIF through libheif, built from its vendored source) needs
# cmake, a C++ compiler, pkg-config and the libde265 (HEVC) and dav1d (AV1) development files.
# Install them when we can (root with apt); without them the build leaves HEIF out and such
# files are refused per file ("HEIC support not built in").
heif_build_deps_present() {
  command -v cmake >/dev/null 2>&1 && command -v c++ >/dev/null 2>&1 && command -v pkg-config >/dev/null 2>&1 \
    && pkg-config --exists libde265 dav1d 2>/dev/null
}
if ! heif_build_deps_present && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing cmake, g++, pkg-config, libde265-dev and libdav1d-dev (HEIC/AVIF decoding) with apt-get" >&2
  heif_pkgs=(cmake g++ pkg-config libde265-dev libdav1d-dev)
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${heif_pkgs[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 \
         && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${heif_pkgs[@]}" >/dev/null 2>&1; } || true
fi
# libheif also links every codec it finds: an x265 encoder (libx265-dev) pulls in libnuma.
if pkg-config --exists x265 2>/dev/null && ! pkg-config --exists numa 2>/dev/null && [ ! -e /usr/lib/x86_64-linux-gnu/libnuma.so ] \
  && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libnuma-dev >/dev/null 2>&1 || true
fi
if heif_build_deps_present; then
  CARGO_FEATURE_FLAGS+=(--features heif)
else
  echo "note: cmake/libde265-dev/libdav1d-dev not found; building without HEIC/AVIF support (see README, Formats)" >&2
fi
