# syntax=docker/dockerfile:1
#
# VisionQuery container image.
#
#   docker build -t visionquery .
#   docker run -p 8000:8000 -v vq-index:/data/index -v vq-models:/models \
#              -v "$PWD/data/images:/data/images:ro" visionquery
#
# Stages:
#   builder  - compiles the release binary (dependencies are built in their own layer first,
#              so editing src/ does not recompile the whole dependency tree)
#   ort      - fetches libonnxruntime.so from the pinned PyPI wheel (the binary dlopen()s it)
#   runtime  - debian:bookworm-slim with the binary, the ONNX Runtime shared libraries, curl
#              for HEALTHCHECK and a non-root user
#
# tests/ops/check_dockerfile.py checks this file statically against the real onnxruntime wheel.

ARG ONNXRUNTIME_VERSION=1.32.0

########################################################################################
FROM rust:1-bookworm AS builder
WORKDIR /build

# nasm: libjpeg-turbo's SIMD JPEG decoder (the default `jpeg-simd` feature) is assembled with it.
# cmake, pkg-config, libde265-dev, libdav1d-dev: libheif for HEIC/AVIF (the `heif` feature).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends nasm cmake pkg-config libde265-dev libdav1d-dev \
 && rm -rf /var/lib/apt/lists/*

# 1) Dependencies only: the manifest and lock file with a dummy main (and the patched usearch the
#    manifest points to, vendor/usearch/VENDORED.md).
COPY Cargo.toml Cargo.lock ./
COPY vendor ./vendor
RUN mkdir -p src \
 && echo 'fn main() {}' > src/main.rs \
 && cargo build --release --locked --features heif \
 && rm -rf src

# 2) The real sources. COPY keeps the files' original mtimes, which can be older than the dummy
#    build, so drop the crate's own fingerprints (and touch the sources) to force a rebuild of it.
COPY . .
RUN rm -rf target/release/.fingerprint/visionquery-* \
           target/release/deps/visionquery-* \
           target/release/visionquery \
 && find src -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --features heif \
 && install -Dm755 target/release/visionquery /out/visionquery

########################################################################################
FROM python:3.11-slim-bookworm AS ort
ARG ONNXRUNTIME_VERSION
# Only the wheel's C shared library is used; --no-deps skips numpy & co.
RUN pip install --no-cache-dir --no-deps --only-binary :all: \
        --target /opt/onnxruntime "onnxruntime==${ONNXRUNTIME_VERSION}" \
 && test -f "/opt/onnxruntime/onnxruntime/capi/libonnxruntime.so.${ONNXRUNTIME_VERSION}"

########################################################################################
FROM debian:bookworm-slim AS runtime
ARG ONNXRUNTIME_VERSION

# ca-certificates: HTTPS to the Hugging Face hub for the first model download.
# curl: HEALTHCHECK (the binary has no health subcommand).
# libstdc++6/libgcc-s1: needed by libonnxruntime.so (normally already in slim; stated explicitly).
# Versions come from the pinned bookworm base image, so they are not pinned individually.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libstdc++6 libgcc-s1 libde265-0 libdav1d6 \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 visionquery \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/visionquery --create-home \
            --shell /usr/sbin/nologin visionquery \
 && mkdir -p /data/index /data/images /data/uploads /models \
 && chown -R visionquery:visionquery /data/index /data/uploads /models

# Only the shared libraries from the wheel's capi/ directory (libonnxruntime.so.<ver> has
# RUNPATH $ORIGIN, so libonnxruntime_providers_shared.so is found next to it).
COPY --from=ort /opt/onnxruntime/onnxruntime/capi/libonnxruntime.so.${ONNXRUNTIME_VERSION} \
                /opt/onnxruntime/onnxruntime/capi/libonnxruntime_providers_shared.so \
                /opt/onnxruntime/lib/
COPY --from=builder /out/visionquery /usr/local/bin/visionquery

# Fail the build if the runtime image lacks a library that ONNX Runtime or the binary needs.
RUN ldd /opt/onnxruntime/lib/libonnxruntime.so.${ONNXRUNTIME_VERSION} /usr/local/bin/visionquery \
        > /tmp/ldd.txt \
 && if grep 'not found' /tmp/ldd.txt; then exit 1; fi \
 && rm /tmp/ldd.txt

ENV VQ_DATA_DIR=/data/index \
    VQ_IMAGE_ROOTS=/data/images \
    VQ_HOST=0.0.0.0 \
    VQ_PORT=8000 \
    VQ_LOG_FORMAT=json \
    HF_HOME=/models \
    ORT_DYLIB_PATH=/opt/onnxruntime/lib/libonnxruntime.so.${ONNXRUNTIME_VERSION}

# Index and model cache are state; images are mounted read-only at /data/images by compose.
# /data/uploads exists (owned by the runtime user) for the replicas of compose's `postgres`
# profile, which mount one shared volume there (VQ_UPLOADS_DIR): an empty named volume takes
# the ownership of the image directory it is mounted on. Not a VOLUME: without VQ_UPLOADS_DIR
# uploads live in the data dir.
VOLUME ["/data/index", "/models"]
EXPOSE 8000

# Numeric so that orchestrators can verify runAsNonRoot (10001 = visionquery).
USER 10001:10001
WORKDIR /home/visionquery

# /health answers 200 as soon as the HTTP server is up (also while the model loads or
# downloads); readiness for search is /ready. start-period covers a first model download.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["sh", "-c", "curl -fsS -o /dev/null \"http://127.0.0.1:${VQ_PORT:-8000}/health\" || exit 1"]

ENTRYPOINT ["visionquery"]
CMD ["serve"]
