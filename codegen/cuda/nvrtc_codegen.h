// Generated CUDA code for fused_elementwise (issue 5; runtime/cuda/README.md, "What remains" 7).
//
// `ptc compile --target cuda` turns every fused_elementwise node (compiler/ir/ops_fused.cc: an
// RPN program over operands and constants, operands broadcast to `shape`) into CUDA C++: one
// `extern "C" __global__` kernel per distinct program + constants + dtype + operand / output
// shapes, the program as straight-line code (no interpreter, no stack in local memory), then
// compiles it with NVRTC to a CUBIN for the plan's architecture. The plan stores source and
// CUBIN (plan::CudaKernel); runtime/cuda/generated_kernels.cc loads the CUBIN with the CUDA
// runtime's library API and falls back to the interpreter of codegen/cuda/elementwise.cu when
// it cannot (other architecture, no CUBIN, KernelOptions::fused_interpreter).
//
// The generated source (example: bias add + exact gelu, f32[8,1024] + f32[1024]):
//
//   extern "C" __global__ void __launch_bounds__(256)
//   ptc_fused_0123456789abcdef(const float* __restrict__ x0, const float* __restrict__ x1,
//                              float* __restrict__ out) {
//     for (unsigned i = blockIdx.x * 256u + threadIdx.x; i < 8192u; i += gridDim.x * 256u) {
//       const float a0 = __ldg(x0 + i);
//       const float a1 = __ldg(x1 + i % 1024u);
//       const float t0 = a0 + a1;
//       const float t1 = 0.5f * t0 * (1.0f + erff(t0 * 0.70710678118654752440f));
//       out[i] = t1;
//     }
//   }
//
// (That is the element loop. Where the innermost merged dim allows it, the kernel first runs a
// vector loop: each thread takes `vector` consecutive elements, 16 bytes of the widest dtype
// read or written (4 f32, 8 bf16 / f16, 2 f64; 4 for a bf16 chain with an f32 operand), one
// 4- to 16-byte access per operand and for the output, an operand broadcast along the
// innermost dim loaded once; a dropout draws two elements per hash (elements 2p, 2p + 1 of a
// vector share a group of compiler/ir/dropout.h). It runs when every pointer is aligned to its
// access, checked once per thread; a view at an odd offset takes the element loop.)
//
// Everything is baked in: the element count, merged broadcast dims and strides (constant
// divisors become multiply-shifts), constants (exact round-trip literals). Indexing is 32-bit
// when the element count is below 2^31. Operands are read as: full (same shape as the output,
// index i), scalar (one element, loaded once before the loop), suffix (broadcast over leading
// dims only: i % n) or general (coordinates of the merged output dims times strides).
// f16 / bf16 compute in f32 and f64 in f64, each token exactly as the interpreter / the CPU
// kernel defines it (gelu: the erf form; max / min / relu propagate NaN as the CPU kernel
// does). No #include: f16 / bf16 conversions are a few lines of PTX / bit arithmetic, so NVRTC
// needs no headers and the text does not depend on the architecture.
//
// NVRTC is loaded with dlopen at first use: ptc never links the CUDA libraries, and
// `ptc compile --target cuda` on a machine without NVRTC still works (no kernels stored; the
// interpreter runs them).
#ifndef PTC_CODEGEN_CUDA_NVRTC_CODEGEN_H_
#define PTC_CODEGEN_CUDA_NVRTC_CODEGEN_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"
#include "runtime/plan/plan.h"

namespace ptc::cuda::codegen {

inline constexpr int kGeneratedThreads = 256;
inline constexpr char kDefaultCudaArch[] = "sm_90";

struct FusedSource {
  std::string name;    // "ptc_fused_" + 16 hex digits (FNV-1a of the text): equal text, equal name
  std::string source;  // one extern "C" __global__ kernel, no #include
  int num_operands = 0;  // parameters: x0 .. x{num_operands-1}, then out
  int64_t elements = 0;  // output elements (baked into the source)
  // Elements per thread of the kernel's vector loop (1: none): launch elements / vector threads.
  int vector = 1;
  // After out: one `unsigned long long seedK` parameter per "dropoutK" token, launched with
  // these values (the dropouts' seeds: arguments, not text, so GPT-2's residual adds, which
  // differ only in their seeds, share one kernel).
  std::vector<uint64_t> seeds;
};

// The kernel source of a fused_elementwise node (f32 / f16 / bf16 / f64). Depends only on
// what the node computes (never on value names), so identical nodes share one kernel. Errors
// (a malformed node, an empty output) name the node.
absl::StatusOr<FusedSource> GenerateFusedElementwise(const ir::Node& node);

// "sm_90" / "sm_90a" / "sm_100f"...: an error saying what is expected otherwise.
absl::Status ValidateCudaArch(std::string_view arch);

// NVRTC through dlopen. `library` overrides the search (empty: $PTC_NVRTC_LIBRARY if set, else
// the toolkit's libnvrtc found at configure time, then libnvrtc.so.13 / .12 / libnvrtc.so
// through the loader's path).
struct NvrtcInfo {
  bool available = false;
  std::string why;      // when not available
  std::string version;  // "13.0"
};
NvrtcInfo GetNvrtc(const std::string& library = "");

struct CompiledCubin {
  std::string cubin;
  std::string log;        // NVRTC's log (ptxas -v lines)
  int registers = -1;     // parsed from the ptxas info lines (-1: not reported)
  int stack_bytes = -1;
  int spill_bytes = -1;   // spill stores + spill loads
  double seconds = 0;
};
// Compiles `source` (kernel `name`) to a CUBIN for `arch` with ptxas -v. An NVRTC error
// comes back as an InternalError holding NVRTC's log.
absl::StatusOr<CompiledCubin> CompileToCubin(const std::string& name, const std::string& source,
                                             const std::string& arch,
                                             const std::string& library = "");

struct GenerateOptions {
  std::string arch = kDefaultCudaArch;
  std::string nvrtc_library;  // see GetNvrtc
};
struct GenerateReport {
  int nodes = 0;           // fused_elementwise nodes seen (every function)
  int kernels = 0;         // distinct kernels compiled
  double seconds = 0;      // NVRTC time, all kernels
  std::string nvrtc_version;
  std::string note;        // non-empty when no kernels could be made (why)
};
// Every fused_elementwise of every function of `module` -> deduplicated kernels compiled for
// options.arch (plan::CudaKernel::nodes: "@function %value"). Without NVRTC: no kernels, OK,
// report->note says why. A kernel NVRTC rejects is an InternalError naming the node, with the
// log.
absl::StatusOr<std::vector<plan::CudaKernel>> GenerateCudaKernels(const ir::Module& module,
                                                                  const GenerateOptions& options,
                                                                  GenerateReport* report = nullptr);

}  // namespace ptc::cuda::codegen

#endif  // PTC_CODEGEN_CUDA_NVRTC_CODEGEN_H_
