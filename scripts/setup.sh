#!/usr/bin/env bash
# Installs ptc's build and test dependencies (Debian 12 packages). Needs root (or sudo).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
PKGS=(cmake ninja-build g++ ccache pkg-config python3
      libonnx-dev libonnx-testdata libprotobuf-dev protobuf-compiler libabsl-dev
      libopenblas-dev libdnnl-dev libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev libcli11-dev
      llvm-14-tools graphviz fortunes python3-numpy python3-onnx)
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
