#!/usr/bin/env bash
# Runs VisionQuery with the embedded defaults: fetches the ONNX Runtime library if needed,
# builds the release binary and serves on :8000. Extra arguments go to `visionquery serve`,
# e.g. `scripts/run.sh --model ~/models/clip-vit-base-patch32 --image-root ~/Pictures`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-runtime.sh
source scripts/build-env.sh
cargo build --release --locked "${CARGO_FEATURE_FLAGS[@]}"
mkdir -p data/images
exec target/release/visionquery serve "$@"
