# Sourced on the device machine (copied to .gpu/env.sh by bench/gpu/prepare.sh): unpacks the
# carried binaries and libraries to /tmp/ptc-gpu and points PATH / LD_LIBRARY_PATH at them and
# at the device's CUDA libraries.
ptc_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PTC_GPU_DIR=/tmp/ptc-gpu
mkdir -p "$PTC_GPU_DIR"
tar -xzf "$ptc_root/.gpu/bundle.tar.gz" -C "$PTC_GPU_DIR"
ptc_cuda_dirs=""
for lib in libcublasLt.so.13 libcudart.so.13; do
  d=""
  for c in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -e "$c/$lib" ] && { d=$c; break; }
  done
  if [ -z "$d" ]; then
    f=$(find /usr/local /opt /usr/lib -name "$lib" -print -quit 2>/dev/null)
    [ -n "$f" ] && d=$(dirname "$f")
  fi
  [ -n "$d" ] && ptc_cuda_dirs="$ptc_cuda_dirs:$d"
  [ -z "$d" ] && echo "env.sh: $lib not found on this machine" >&2
done
export LD_LIBRARY_PATH="$PTC_GPU_DIR/lib$ptc_cuda_dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# cuDNN 9 for PTC_CUDA_OPTIONS=attention_cudnn (dlopen'ed by ptc-cuda, never linked, never
# bundled): PyTorch's copy first, then the toolkit's. Missing: attention runs the flash kernels.
ptc_cudnn_dir=""
for c in /opt/torch/.venv/lib/python3*/site-packages/nvidia/cudnn/lib /usr/local/cuda*/lib*; do
  [ -e "$c/libcudnn.so.9" ] && { ptc_cudnn_dir=$c; break; }
done
if [ -n "$ptc_cudnn_dir" ]; then
  export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$ptc_cudnn_dir"
else
  echo "env.sh: libcudnn.so.9 not found on this machine (attention_cudnn falls back)" >&2
fi
export PATH="$PTC_GPU_DIR/bin:/usr/local/cuda/bin:$PATH"
export PTC_E2E_DATA_DIR="$ptc_root/tests/data/e2e"
export PTC_SOURCE_DIR="$ptc_root"
