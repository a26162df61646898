// Generated fused_elementwise kernels (nvrtc_codegen.h) compiled for the host: the same source
// text, built by the C++ compiler that built ptc behind a shim (CUDA's qualifiers as nothing,
// __ldg as a load, the bit casts through memcpy, blockIdx / threadIdx / gridDim as globals,
// the two PTX f16 conversions as bit arithmetic with the same IEEE rounding) into a shared
// object, and "launched" block by block, thread by thread (a generated kernel has no shared
// memory and no barrier, so its threads may run one after another).
//
// Two users: the generated-kernel case table (tests/cuda/generated_kernels_test.cc) checks the
// text against the CPU kernels on every CI run, and the CUDA CPU emulation (runtime/cuda/emu)
// runs a plan's generated kernels with it instead of their CUBINs, so the runtime's path to
// them (lookup, arguments, seeds, grid, graph capture) runs in the emulated tests too.
//
// What it cannot check is the device itself: CUDA's libm (host libm here), FMA contraction,
// the PTX conversions' hardware.
#ifndef PTC_CODEGEN_CUDA_HOST_KERNEL_H_
#define PTC_CODEGEN_CUDA_HOST_KERNEL_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace ptc::cuda::codegen {

struct HostKernelOptions {
  std::string compiler;      // empty: the C++ compiler that built ptc
  bool address_sanitizer = false;  // -fsanitize=address (a process that has its runtime)
  // Where compiled kernels are kept between processes (a file per source and options; written
  // atomically); empty: compile into a temporary file every time.
  std::string cache_dir;
};

// The compiler that built ptc (its path at configure time; empty where unknown).
std::string DefaultHostCompiler();

class HostKernel {
 public:
  // The kernel `name` of `source` (a FusedSource's text), compiled for the host. Errors carry
  // the compiler's output and the text.
  static absl::StatusOr<std::shared_ptr<HostKernel>> Compile(const std::string& name,
                                                             const std::string& source,
                                                             const HostKernelOptions& options = {});
  ~HostKernel();
  HostKernel(const HostKernel&) = delete;
  HostKernel& operator=(const HostKernel&) = delete;

  // The kernel's parameters (operands, out, seeds): each 8 bytes, a pointer or a seed.
  int num_params() const { return num_params_; }
  // Runs `grid` blocks of `block` threads. args[i] points at parameter i's value (as for
  // cudaLaunchKernel). Not reentrant: the shim's thread indices are the library's globals.
  void Launch(void* const* args, unsigned grid, unsigned block) const;
  // Vector accesses (the vector loop's loads and stores, each checked for its alignment: a
  // misaligned one aborts) of every launch so far.
  uint64_t vector_accesses() const;

 private:
  HostKernel() = default;
  void* handle_ = nullptr;
  void (*launch_)(void* const*, unsigned, unsigned) = nullptr;
  unsigned long long (*vectors_)() = nullptr;
  int num_params_ = 0;
};

}  // namespace ptc::cuda::codegen

#endif  // PTC_CODEGEN_CUDA_HOST_KERNEL_H_
