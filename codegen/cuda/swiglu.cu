// swiglu(g, u) and swiglu_grad(dy, g, u) (compiler/ir/ops_fused.cc, ops_train.cc): one
// elementwise kernel each way, with s = sigmoid(g) recomputed in the backward,
//   y = (g s) u;   du = dy (g s),   dg = dy u s (1 + g (1 - s));
// with {activation} gelu_tanh / gelu (GeGLU: Gemma) a(g) = gelu(g) instead of g s:
//   y = a(g) u;    du = dy a(g),    dg = dy u a'(g).
// 16-bit values compute in f32, f64 in f64, each output rounded once. When every pointer is
// aligned for 16-byte accesses (and n < 2^31) a thread takes kVec elements per access with a
// 32-bit index (elementwise.cu's flat path); else one element per iteration. Both paths compute
// through the same SwigluValue / SwigluGradValue, so they give the same bits. Each thread reads
// an element of every input before writing that element of the outputs (the forward's output
// may take over g's or u's buffer: plan-memory's reuse of elementwise inputs).
#include <initializer_list>

#include "codegen/cuda/device_util.cuh"

namespace ptc::cuda::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMax32 = (int64_t{1} << 31) - 1;

template <DT D>
using S = typename Ty<D>::S;

template <typename C>
__device__ __forceinline__ C SigmoidOf(C g) {
  return C(1) / (C(1) + exp(-g));
}

// The gate's activation a(g) and its derivative a'(g): act 0 silu (g sigmoid(g)), 1 gelu's
// tanh form, 2 gelu (erf).
// (device_util.cuh's GeluOf / GeluDerivativeOf for the GELUs.)
template <typename C>
__device__ __forceinline__ C GateValue(int act, C g) {
  return act == 0 ? g * SigmoidOf(g) : GeluOf(g, act == 1);
}

template <typename C>
__device__ __forceinline__ C GateDerivative(int act, C g) {
  if (act != 0) return GeluDerivativeOf(g, act == 1);
  const C s = SigmoidOf(g);
  return s * (C(1) + g * (C(1) - s));
}

template <typename C>
__device__ __forceinline__ C SwigluValue(int act, C g, C u) {
  return GateValue(act, g) * u;
}

template <typename C>
__device__ __forceinline__ void SwigluGradValue(int act, C dy, C g, C u, C& dg, C& du) {
  if (act == 0) {  // the sigmoid once for both
    const C s = SigmoidOf(g);
    dg = dy * u * s * (C(1) + g * (C(1) - s));
    du = dy * (g * s);
    return;
  }
  dg = dy * u * GateDerivative(act, g);
  du = dy * GateValue(act, g);
}

// The forward as a two-operand map (device_util.cuh's LaunchBinaryMap).
struct SwigluOp {
  int act;
  template <typename C>
  __device__ __forceinline__ C operator()(C g, C u) const {
    return SwigluValue(act, g, u);
  }
};

template <DT D>
__device__ __forceinline__ void SwigluGradElement(int act, const S<D>* dy, const S<D>* g,
                                                  const S<D>* u, S<D>* dg, S<D>* du, int64_t i) {
  typename Ty<D>::C a, b;
  SwigluGradValue(act, Load<D>(dy, i), Load<D>(g, i), Load<D>(u, i), a, b);
  Store<D>(dg, i, a);
  Store<D>(du, i, b);
}

template <DT D>
__global__ void __launch_bounds__(kThreads)
    SwigluGradKernel(int act, int64_t n, const S<D>* dy, const S<D>* g, const S<D>* u, S<D>* dg,
                     S<D>* du) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    SwigluGradElement<D>(act, dy, g, u, dg, du, i);
  }
}

template <DT D>
__global__ void __launch_bounds__(kThreads)
    SwigluGradVecKernel(int act, uint32_t n, const S<D>* dy, const S<D>* g, const S<D>* u,
                        S<D>* dg, S<D>* du) {
  constexpr int V = kVec<S<D>>;
  const uint32_t nv = n / V, stride = gridDim.x * blockDim.x;
  const uint32_t first = blockIdx.x * blockDim.x + threadIdx.x;
  for (uint32_t i = first; i < nv; i += stride) {
    S<D> d[V], a[V], b[V], og[V], ou[V];
    LoadVec<S<D>, V>(dy + i * V, d);
    LoadVec<S<D>, V>(g + i * V, a);
    LoadVec<S<D>, V>(u + i * V, b);
#pragma unroll
    for (int j = 0; j < V; ++j) {
      typename Ty<D>::C x, z;
      SwigluGradValue(act, Widen<D>(d[j]), Widen<D>(a[j]), Widen<D>(b[j]), x, z);
      og[j] = Narrow<D>(x);
      ou[j] = Narrow<D>(z);
    }
    StoreVec<S<D>, V>(dg + i * V, og);
    StoreVec<S<D>, V>(du + i * V, ou);
  }
  const uint32_t t = nv * V + first;
  if (t < n) SwigluGradElement<D>(act, dy, g, u, dg, du, t);
}

int64_t BlocksFor(int64_t work) { return (work + kThreads - 1) / kThreads; }

// May every pointer be accessed 16 bytes at a time with a 32-bit index?
template <DT D>
bool VecPath(int64_t n, std::initializer_list<const void*> ptrs) {
  if (n > kMax32) return false;
  for (const void* p : ptrs) {
    if (!IsAligned(p, kVec<S<D>> * static_cast<int64_t>(sizeof(S<D>)))) return false;
  }
  return true;
}

template <DT D>
void LaunchSwigluT(int act, int64_t n, const void* g, const void* u, void* y,
                   cudaStream_t stream) {
  LaunchBinaryMap<D>(n, static_cast<const S<D>*>(g), static_cast<const S<D>*>(u),
                     static_cast<S<D>*>(y), SwigluOp{act}, stream);
}

template <DT D>
void LaunchSwigluGradT(int act, int64_t n, const void* dyp, const void* gp, const void* up,
                       void* dgp, void* dup, cudaStream_t stream) {
  const S<D>* dy = static_cast<const S<D>*>(dyp);
  const S<D>* g = static_cast<const S<D>*>(gp);
  const S<D>* u = static_cast<const S<D>*>(up);
  S<D>* dg = static_cast<S<D>*>(dgp);
  S<D>* du = static_cast<S<D>*>(dup);
  if (VecPath<D>(n, {dyp, gp, up, dgp, dup})) {
    const unsigned grid =
        PersistentGrid(SwigluGradVecKernel<D>, kThreads, BlocksFor(n / kVec<S<D>> + 1));
    SwigluGradVecKernel<D><<<grid, kThreads, 0, stream>>>(act, static_cast<uint32_t>(n), dy, g,
                                                          u, dg, du);
  } else {
    const unsigned grid = PersistentGrid(SwigluGradKernel<D>, kThreads, BlocksFor(n));
    SwigluGradKernel<D><<<grid, kThreads, 0, stream>>>(act, n, dy, g, u, dg, du);
  }
}

}  // namespace

cudaError_t LaunchSwiglu(DT dt, int act, int64_t n, const void* g, const void* u, void* y,
                         cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (act < 0 || act > 2) return cudaErrorInvalidValue;
  switch (dt) {
    case DT::kF32: LaunchSwigluT<DT::kF32>(act, n, g, u, y, stream); break;
    case DT::kF16: LaunchSwigluT<DT::kF16>(act, n, g, u, y, stream); break;
    case DT::kBF16: LaunchSwigluT<DT::kBF16>(act, n, g, u, y, stream); break;
    case DT::kF64: LaunchSwigluT<DT::kF64>(act, n, g, u, y, stream); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t LaunchSwigluGrad(DT dt, int act, int64_t n, const void* dy, const void* g,
                             const void* u, void* dg, void* du, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (act < 0 || act > 2) return cudaErrorInvalidValue;
  switch (dt) {
    case DT::kF32: LaunchSwigluGradT<DT::kF32>(act, n, dy, g, u, dg, du, stream); break;
    case DT::kF16: LaunchSwigluGradT<DT::kF16>(act, n, dy, g, u, dg, du, stream); break;
    case DT::kBF16: LaunchSwigluGradT<DT::kBF16>(act, n, dy, g, u, dg, du, stream); break;
    case DT::kF64: LaunchSwigluGradT<DT::kF64>(act, n, dy, g, u, dg, du, stream); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace ptc::cuda::kernels
