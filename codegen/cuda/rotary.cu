// rotary (compiler/ir/ops_fused.cc): one thread per rotated pair (x[a], x[b]) of a row, (a, b) =
// (i, h + i) or, interleaved, (2i, 2i + 1), with h = rotary_dim / 2,
//   y[a] = x[a] c - x[b] s,  y[b] = x[b] c + x[a] s    (s negated for inverse=1),
// and one per element past rotary_dim (copied: partial rotary),
// c and s read from the tables through their broadcast strides (runtime/cuda/device_kernels.cc
// fills RotaryDesc). Neighbouring threads take neighbouring pairs of a row, so the x, y and
// table accesses of a warp are contiguous; 16-bit values compute in f32, f64 in f64, each
// output rounded once.
#include "codegen/cuda/device_util.cuh"

namespace ptc::cuda::kernels {
namespace {

constexpr int kThreads = 256;

template <DT D, DT TD>
__global__ void __launch_bounds__(kThreads)
    RotaryKernel(RotaryDesc d, const typename Ty<D>::S* x, const typename Ty<TD>::S* cos,
                 const typename Ty<TD>::S* sin, typename Ty<D>::S* y) {
  using C = typename Ty<D>::C;
  const int64_t per_row = d.d - d.half;  // pairs, then the elements passed through
  const int64_t items = d.rows * per_row;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < items;
       p += stride) {
    const int64_t row = p / per_row, i = p - row * per_row;
    if (i >= d.half) {  // x[..., rotary_dim:]
      const int64_t e = row * d.d + d.half + i;
      Store<D>(y, e, static_cast<C>(Load<D>(x, e)));
      continue;
    }
    int64_t off = i * d.pair_stride;
    for (int64_t q = row, a = d.rank - 1; a >= 0; --a) {
      const int64_t n = d.lead_shape[a];
      off += (q % n) * d.lead_strides[a];
      q /= n;
    }
    const C c = static_cast<C>(Load<TD>(cos, off));
    C s = static_cast<C>(Load<TD>(sin, off));
    if (d.inverse) s = -s;
    const int64_t a = row * d.d + (d.interleaved ? 2 * i : i);
    const int64_t b = a + (d.interleaved ? 1 : d.half);
    const C x1 = Load<D>(x, a), x2 = Load<D>(x, b);
    Store<D>(y, a, x1 * c - x2 * s);
    Store<D>(y, b, x2 * c + x1 * s);
  }
}

template <DT D, DT TD>
void LaunchRotaryT(const RotaryDesc& d, const void* x, const void* cos, const void* sin, void* y,
                   cudaStream_t stream) {
  using S = typename Ty<D>::S;
  using TS = typename Ty<TD>::S;
  const int64_t items = d.rows * (d.d - d.half);
  RotaryKernel<D, TD><<<GridFor(items, kThreads), kThreads, 0, stream>>>(
      d, static_cast<const S*>(x), static_cast<const TS*>(cos), static_cast<const TS*>(sin),
      static_cast<S*>(y));
}

}  // namespace

cudaError_t LaunchRotary(DT dt, DT table_dt, const RotaryDesc& d, const void* x, const void* cos,
                         const void* sin, void* y, cudaStream_t stream) {
  if (d.rows * (d.d - d.half) == 0) return cudaSuccess;
  if (d.d < 2 * d.half) return cudaErrorInvalidValue;
  const bool f32_tables = table_dt == DT::kF32;
  if (!f32_tables && table_dt != dt) return cudaErrorInvalidValue;
  switch (dt) {
    case DT::kF32:
      LaunchRotaryT<DT::kF32, DT::kF32>(d, x, cos, sin, y, stream);
      break;
    case DT::kF16:
      if (f32_tables) {
        LaunchRotaryT<DT::kF16, DT::kF32>(d, x, cos, sin, y, stream);
      } else {
        LaunchRotaryT<DT::kF16, DT::kF16>(d, x, cos, sin, y, stream);
      }
      break;
    case DT::kBF16:
      if (f32_tables) {
        LaunchRotaryT<DT::kBF16, DT::kF32>(d, x, cos, sin, y, stream);
      } else {
        LaunchRotaryT<DT::kBF16, DT::kBF16>(d, x, cos, sin, y, stream);
      }
      break;
    case DT::kF64:
      if (f32_tables) {
        LaunchRotaryT<DT::kF64, DT::kF32>(d, x, cos, sin, y, stream);
      } else {
        LaunchRotaryT<DT::kF64, DT::kF64>(d, x, cos, sin, y, stream);
      }
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace ptc::cuda::kernels
