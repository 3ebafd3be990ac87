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
