// CUDA device discovery and single-node evaluation. Built in every configuration: without nvcc
// (runtime/cuda/cuda_stub.cc) each function returns an error saying ptc was built without CUDA,
// so callers and tests need no #ifdef.
#ifndef PTC_RUNTIME_CUDA_DEVICE_H_
#define PTC_RUNTIME_CUDA_DEVICE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"
#include "runtime/plan/plan.h"

namespace ptc::cuda {

struct DeviceInfo {
  int ordinal = 0;
  std::string name;        // "NVIDIA H100 80GB HBM3"
  int cc_major = 0;        // compute capability
  int cc_minor = 0;
  int sm_count = 0;
  int64_t total_bytes = 0;
  int64_t free_bytes = 0;  // cudaMemGetInfo at the time of the call
  int driver_version = 0;  // cudaDriverGetVersion (e.g. 13000)
  int runtime_version = 0;
  std::string ToString() const;  // "NVIDIA H200 (sm_90, 132 SMs, 139.8 GiB, 139.2 GiB free)"
};

// Whether this ptc was compiled with the CUDA toolkit (PTC_HAVE_CUDA).
bool BuiltWithCuda();

// The device `ordinal`, made current for this thread. Errors: "this ptc was built without
// CUDA ..." (stub build), "no CUDA device: ..." (no driver, no GPU, or ordinal out of range).
absl::StatusOr<DeviceInfo> GetDevice(int ordinal = 0);

class GeneratedKernels;  // runtime/cuda/generated_kernels.h

struct KernelOptions {
  bool allow_tf32 = false;    // fp32 GEMMs on tensor cores (10-bit mantissa products)
  bool host_fallback = false;  // run ops without a CUDA kernel through the CPU kernels
  // attention through two cuBLASLt GEMMs + a T x T scratch instead of the flash kernel (f32
  // only; for comparisons).
  bool attention_two_gemm = false;
  // attention / attention_grad through the SIMT flash kernels (attention.cu) even where the
  // tensor-core ones (attention_tc.cu: f16 / bf16, head dim 64 or 128) apply: a bypass for a
  // device where those misbehave, and the baseline for comparisons.
  bool attention_simt = false;
  // attention / attention_grad (f16 / bf16, no mask or a causal=1 one) through cuDNN's fused
  // SDPA (runtime/cuda/cudnn_attention.h) when libcudnn.so.9 loads; every node it declines
  // runs on the kernels above.
  bool attention_cudnn = false;
  // fused_elementwise through the RPN interpreter even where a generated kernel is available.
  bool fused_interpreter = false;
  // linear_ce_loss: rows of logits per block (0: about 256 MiB of logits, at least 256).
  // With autotuning, blocks of twice as many rows are the other candidate.
  int64_t linear_ce_rows = 0;
  // linear_ce_loss of f16 / bf16 inputs: the logits in f32 instead of the inputs' dtype (what
  // autocast computes; twice the bytes through the row pass).
  bool linear_ce_f32_logits = false;
  // gemm_bgrad: the bias gradient by a column reduction after the GEMM instead of in cuBLASLt's
  // BGRAD epilogue (the path taken anyway where cuBLASLt has no BGRAD algorithm).
  bool bgrad_reduce = false;
  // GELU in a separate pass instead of cuBLASLt's GELU epilogues: fused_matmul's gelu_tanh
  // (GELU_BIAS / GELU_AUX_BIAS) and gemm_gelu_grad's tanh form (DGELU); the paths taken anyway
  // for the erf form or where cuBLASLt has no such algorithm. With autotuning gemm_gelu_grad
  // times both.
  bool gelu_pass = false;
  // Every buffer a kernel is given starts at a multiple of this many bytes (a power of two): the
  // executor sets the largest that divides 256 and all of the plan's arena offsets (CUDA plans
  // are laid out at 256, CPU plans at 64). cuBLASLt is told it (its algorithms may assume it).
  int64_t buffer_align = 256;
  // Offer alternatives to the autotuner (runtime/cuda/autotune.h): attention also gets the
  // kernels it would not take by default (cuDNN's where it loads). The executor sets it from
  // ExecutorOptions::autotune; off for single-node evaluation.
  bool autotune = false;
  // A matmul whose output rows are not 16-byte aligned (a 50257-column LM head) through padded
  // scratch (PaddedMatmulKernel); false: the direct product (the autotuner's other candidate).
  bool padded_matmul = true;
  // Generated fused_elementwise kernels (runtime/cuda/generated_kernels.h): the executor sets
  // them from the plan (LoadGeneratedKernels); a node without one runs on the interpreter.
  std::shared_ptr<const GeneratedKernels> generated;
};

// The plan's generated kernels (plan::Plan::cuda_kernels) for `device`: those built for its
// architecture are loaded (cudaLibraryLoadData: the CUDA runtime API, no libcuda link); the
// others, or CUBINs the driver rejects, are skipped, and the first fused_elementwise node that
// then falls back to the interpreter prints why, once per process. Errors only without CUDA.
absl::StatusOr<std::shared_ptr<const GeneratedKernels>> LoadGeneratedKernels(
    const std::vector<plan::CudaKernel>& kernels, const DeviceInfo& device);
// "sm_90" for compute capability 9.0.
std::string CudaArch(const DeviceInfo& device);
// Process-wide counts of fused_elementwise device kernels made so far (tests, logs).
struct GeneratedKernelStats {
  int64_t generated_nodes = 0;    // through a generated kernel
  int64_t interpreted_nodes = 0;  // through the interpreter
  int64_t compiled_at_load = 0;   // kernels a plan lacked, compiled with NVRTC at load
};
GeneratedKernelStats GetGeneratedKernelStats();

// Whether `op` has a CUDA kernel (some dtypes may still be unsupported; CreateDeviceKernel says).
bool HasDeviceKernel(std::string_view op);

// Runs `node` once on the device on host tensors (uploaded, run, synchronized, downloaded):
// the CUDA counterpart of cpu::EvaluateNode, for the kernel case table and debugging.
// With `tuner` (runtime/cuda/autotune.h), kernels with alternatives choose among them as in
// an executor's first run.
class Tuner;
absl::StatusOr<std::vector<ir::Tensor>> EvaluateNodeOnDevice(const ir::Node& node,
                                                             const std::vector<ir::Tensor>& inputs,
                                                             const KernelOptions& options = {},
                                                             Tuner* tuner = nullptr);

}  // namespace ptc::cuda

#endif  // PTC_RUNTIME_CUDA_DEVICE_H_
