// Data-movement kernels: one strided copy for transpose / slice / expand / concat / split, and
// gather (embedding lookup). Element width is a template parameter (1, 2, 4, 8 bytes; the copy
// also moves 16-byte units where copy_plan.h's WidenCopy regroups runs), the dtype does not
// matter.
#include <type_traits>

#include "codegen/cuda/copy_plan.h"
#include "codegen/cuda/device_util.cuh"

namespace ptc::cuda::kernels {
namespace {

constexpr int kThreads = 256;

// I: int32_t when CopyFitsInt32 (copy_plan.h), else int64_t. B: the unit WidenCopy chose.
template <int B, typename I>
__global__ void __launch_bounds__(kThreads)
    StridedCopyKernel(CopyDesc d, const typename Bits<B>::T* __restrict__ in,
                      typename Bits<B>::T* __restrict__ out) {
  using U = std::make_unsigned_t<I>;  // the element counter: i + grid stride cannot overflow
  const U n = static_cast<U>(d.n), stride = static_cast<U>(gridDim.x) * blockDim.x;
  for (U i = static_cast<U>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    I src = static_cast<I>(d.in_offset), dst = static_cast<I>(d.out_offset);
    U r = i;
    for (int k = d.rank - 1; k >= 0; --k) {
      const U dim = static_cast<U>(d.shape[k]);
      const I c = static_cast<I>(r % dim);
      r /= dim;
      src += c * static_cast<I>(d.in_strides[k]);
      dst += c * static_cast<I>(d.out_strides[k]);
    }
    out[dst] = in[src];
  }
}

// out[o, j, i] = data[o, idx[j], i] over [outer, num_indices, inner].
template <int B, typename I>
__global__ void __launch_bounds__(kThreads)
    GatherKernel(int64_t n, int64_t axis_dim, int64_t num_indices, int64_t inner,
                 const typename Bits<B>::T* __restrict__ data, const I* __restrict__ indices,
                 typename Bits<B>::T* __restrict__ out, int* error_flag, int error_code) {
  for (int64_t e = GlobalThread(); e < n; e += GridStride()) {
    const int64_t i = e % inner;
    const int64_t j = (e / inner) % num_indices;
    const int64_t o = e / (inner * num_indices);
    int64_t idx = static_cast<int64_t>(indices[j]);
    if (idx < 0) idx += axis_dim;
    if (idx < 0 || idx >= axis_dim) {
      out[e] = typename Bits<B>::T(0);
      if (error_flag != nullptr) atomicCAS(error_flag, 0, error_code);
      continue;
    }
    out[e] = data[(o * axis_dim + idx) * inner + i];
  }
}

// kv_cache_write's slab: out[o, pos, i] = update[o, 0, i] over [outer, rows, inner] (units of
// B bytes); pos is read on the device (the decoder's position input), out of range sets the
// error flag and writes nothing.
template <int B>
__global__ void __launch_bounds__(kThreads)
    KvSlabKernel(int64_t n, int64_t rows, int64_t inner, const int64_t* __restrict__ pos,
                 const typename Bits<B>::T* __restrict__ update,
                 typename Bits<B>::T* __restrict__ out, int* error_flag, int error_code) {
  const int64_t p = *pos;
  if (p < 0 || p >= rows) {
    if (GlobalThread() == 0 && error_flag != nullptr) atomicCAS(error_flag, 0, error_code);
    return;
  }
  for (int64_t e = GlobalThread(); e < n; e += GridStride()) {
    const int64_t o = e / inner, i = e - o * inner;
    out[(o * rows + p) * inner + i] = update[e];
  }
}

}  // namespace

cudaError_t LaunchKvCacheWrite(int64_t outer, int64_t rows, int64_t inner_bytes, const void* cache,
                               const void* update, const void* pos, void* out, int* error_flag,
                               int error_code, cudaStream_t stream) {
  if (out != cache) {  // not written in place: the whole cache first (stream-ordered copy)
    const cudaError_t e = cudaMemcpyAsync(out, cache, static_cast<size_t>(outer * rows * inner_bytes),
                                          cudaMemcpyDeviceToDevice, stream);
    if (e != cudaSuccess) return e;
  }
  const int unit = inner_bytes % 8 == 0 ? 8 : inner_bytes % 4 == 0 ? 4 : inner_bytes % 2 == 0 ? 2 : 1;
  const int64_t inner = inner_bytes / unit, n = outer * inner;
  if (n == 0) return cudaSuccess;
  const unsigned grid = GridFor(n, kThreads);
  const auto* p = static_cast<const int64_t*>(pos);
#define PTC_KV_CASE(B)                                                                     \
  case B:                                                                                  \
    KvSlabKernel<B><<<grid, kThreads, 0, stream>>>(n, rows, inner, p,                      \
                                                   static_cast<const Bits<B>::T*>(update), \
                                                   static_cast<Bits<B>::T*>(out), error_flag, \
                                                   error_code);                            \
    break;
  switch (unit) {
    PTC_KV_CASE(1)
    PTC_KV_CASE(2)
    PTC_KV_CASE(4)
    PTC_KV_CASE(8)
    default: return cudaErrorInvalidValue;
  }
#undef PTC_KV_CASE
  return cudaGetLastError();
}

cudaError_t LaunchStridedCopy(int elem_bytes, const CopyDesc& elems, const void* in, void* out,
                              cudaStream_t stream) {
  if (elems.n == 0) return cudaSuccess;
  WideCopy w = WidenCopy(elems, elem_bytes);
  if (!CopyUnitFits(in, out, w.unit_bytes)) w = WideCopy{elems, elem_bytes};
  const CopyDesc& d = w.desc;
  const bool i32 = CopyFitsInt32(d);
  const unsigned grid = GridFor(d.n, kThreads);
#define PTC_COPY_CASE(B)                                                                  \
  case B:                                                                                 \
    if (i32) {                                                                            \
      StridedCopyKernel<B, int32_t><<<grid, kThreads, 0, stream>>>(                       \
          d, static_cast<const Bits<B>::T*>(in), static_cast<Bits<B>::T*>(out));          \
    } else {                                                                              \
      StridedCopyKernel<B, int64_t><<<grid, kThreads, 0, stream>>>(                       \
          d, static_cast<const Bits<B>::T*>(in), static_cast<Bits<B>::T*>(out));          \
    }                                                                                     \
    break;
  switch (w.unit_bytes) {
    PTC_COPY_CASE(1)
    PTC_COPY_CASE(2)
    PTC_COPY_CASE(4)
    PTC_COPY_CASE(8)
    PTC_COPY_CASE(16)
    default: return cudaErrorInvalidValue;
  }
#undef PTC_COPY_CASE
  return cudaGetLastError();
}

cudaError_t LaunchGather(int elem_bytes, int64_t outer, int64_t axis_dim, int64_t num_indices,
                         int64_t inner, const void* data, const void* indices, bool indices_i64,
                         void* out, int* error_flag, int error_code, cudaStream_t stream) {
  const int64_t n = outer * num_indices * inner;
  if (n == 0) return cudaSuccess;
  const unsigned grid = GridFor(n, kThreads);
#define PTC_GATHER_CASE(B)                                                                 \
  case B:                                                                                  \
    if (indices_i64) {                                                                     \
      GatherKernel<B, int64_t><<<grid, kThreads, 0, stream>>>(                             \
          n, axis_dim, num_indices, inner, static_cast<const Bits<B>::T*>(data),           \
          static_cast<const int64_t*>(indices), static_cast<Bits<B>::T*>(out), error_flag, \
          error_code);                                                                     \
    } else {                                                                               \
      GatherKernel<B, int32_t><<<grid, kThreads, 0, stream>>>(                             \
          n, axis_dim, num_indices, inner, static_cast<const Bits<B>::T*>(data),           \
          static_cast<const int32_t*>(indices), static_cast<Bits<B>::T*>(out), error_flag, \
          error_code);                                                                     \
    }                                                                                      \
    break;
  switch (elem_bytes) {
    PTC_GATHER_CASE(1)
    PTC_GATHER_CASE(2)
    PTC_GATHER_CASE(4)
    PTC_GATHER_CASE(8)
    default: return cudaErrorInvalidValue;
  }
#undef PTC_GATHER_CASE
  return cudaGetLastError();
}

}  // namespace ptc::cuda::kernels
