#!/usr/bin/env bash
# Installs the ONNX Runtime shared library (C API) from the PyPI wheel into .runtime/, where the
# binary finds it without any variable being set. Idempotent; no binary is downloaded from
# anywhere but the package registry.
set -euo pipefail
cd "$(dirname "$0")/.."
ORT_VERSION="${ORT_VERSION:-1.32.0}"
lib=".runtime/onnxruntime/capi/libonnxruntime.so.${ORT_VERSION}"
if [ -f "$lib" ]; then
  exit 0
fi
python3 -m pip --version >/dev/null 2>&1 || { echo "python3 with pip is required to fetch onnxruntime" >&2; exit 1; }
echo "installing onnxruntime ${ORT_VERSION} (shared library only) into .runtime/" >&2
python3 -m pip install --quiet --disable-pip-version-check --no-deps --target .runtime "onnxruntime==${ORT_VERSION}"
test -f "$lib" || { echo "onnxruntime wheel did not contain $lib" >&2; exit 1; }
