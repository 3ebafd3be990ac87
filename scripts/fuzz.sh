#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of what parses untrusted bytes: image decoding
# and preprocessing, EXIF, JSON request bodies and multipart uploads (fuzz/fuzz_targets/).
#   scripts/fuzz.sh                      every target for 30 s (the test command runs this)
#   scripts/fuzz.sh 3600 json_bodies     one target for an hour
# Seeds are made from the committed fixtures (fuzz/make_seeds.py); what the fuzzer learns
# grows in fuzz/corpus/. A crash stops the run and leaves its input in fuzz/artifacts/<target>/:
# once fixed, commit that input to fuzz/regressions/<target>/, which every run replays first.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-30}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode_image photo_meta json_bodies multipart_upload)

./scripts/install-runtime.sh
source scripts/build-env.sh
# cargo-fuzz is built from its crates.io source into .runtime/ when the machine lacks it.
CARGO_FUZZ_VERSION=0.13.2
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  if [ ! -x .runtime/cargo-fuzz/bin/cargo-fuzz ]; then
    echo "installing cargo-fuzz ${CARGO_FUZZ_VERSION} into .runtime/cargo-fuzz" >&2
    cargo install --locked --quiet cargo-fuzz --version "${CARGO_FUZZ_VERSION}" --root .runtime/cargo-fuzz
  fi
  export PATH="$PWD/.runtime/cargo-fuzz/bin:$PATH"
fi
# libFuzzer's coverage instrumentation and AddressSanitizer take rustc flags that only nightly
# accepts; RUSTC_BOOTSTRAP lets this stable toolchain take them, for these builds only.
export RUSTC_BOOTSTRAP=1
# The API targets load the tiny test model in-process.
ORT_DYLIB_PATH="$(ls "$PWD"/.runtime/onnxruntime/capi/libonnxruntime.so.* | head -n 1)"
export ORT_DYLIB_PATH

python3 fuzz/make_seeds.py fuzz/seeds >/dev/null
cd fuzz
echo "== building the fuzz targets (cargo fuzz build)"
cargo fuzz build -O "${CARGO_FEATURE_FLAGS[@]}"
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "regressions/$target"
  echo "== fuzzing $target for ${seconds} s"
  # libFuzzer runs every input of the folders given (the regressions too) before mutating;
  # new inputs go to the first, corpus/.
  log="artifacts/$target.log"
  mkdir -p artifacts
  if ! cargo fuzz run -O "${CARGO_FEATURE_FLAGS[@]}" "$target" "corpus/$target" "seeds/$target" "regressions/$target" -- \
      -max_total_time="$seconds" -timeout=60 -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz target $target failed: the input is in fuzz/artifacts/$target/, the log in fuzz/$log" >&2
    exit 1
  fi
  grep -E "^(#[0-9]+[[:space:]]+(INITED|DONE)|stat::(number_of_executed_units|peak_rss_mb))" "$log" || true
done
