// rotary (compiler/ir/ops_fused.cc): one thread per rotated pair (x[i], x[h + i]) of a row,
//   y[i] = x[i] c - x[h+i] s,  y[h+i] = x[h+i] c + x[i] s    (s negated for inverse=1),
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
  const int64_t pairs = d.rows * d.half;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < pairs;
       p += stride) {
    const int64_t row = p / d.half, i = p - row * d.half;
    int64_t off = i * d.pair_stride;
    for (int64_t q = row, a = d.rank - 1; a >= 0; --a) {
      const int64_t n = d.lead_shape[a];
      off += (q % n) * d.lead_strides[a];
      q /= n;
    }
    const C c = static_cast<C>(Load<TD>(cos, off));
    C s = static_cast<C>(Load<TD>(sin, off));
    if (d.inverse) s = -s;
    const int64_t base = row * 2 * d.half + i;
    const C x1 = Load<D>(x, base), x2 = Load<D>(x, base + d.half);
    Store<D>(y, base, x1 * c - x2 * s);
    Store<D>(y, base + d.half, x2 * c + x1 * s);
  }
}

template <DT D, DT TD>
void LaunchRotaryT(const RotaryDesc& d, const void* x, const void* cos, const void* sin, void* y,
                   cudaStream_t stream) {
  using S = typename Ty<D>::S;
  using TS = typename Ty<TD>::S;
  const int64_t pairs = d.rows * d.half;
  RotaryKernel<D, TD><<<GridFor(pairs, kThreads), kThreads, 0, stream>>>(
      d, static_cast<const S*>(x), static_cast<const TS*>(cos), static_cast<const TS*>(sin),
      static_cast<S*>(y));
}

}  // namespace

cudaError_t LaunchRotary(DT dt, DT table_dt, const RotaryDesc& d, const void* x, const void* cos,
                         const void* sin, void* y, cudaStream_t stream) {
  if (d.rows * d.half == 0) return cudaSuccess;
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
