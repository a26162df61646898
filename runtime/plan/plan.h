// The plan file: a versioned protobuf (plan.proto) holding the optimized IR (text form), the
// schedule (node order of the IR), the memory plan, the target and the options used; plus a
// weights file PLAN.weights (64-byte aligned tensors, indexed from the plan, mmap-able).
// Both files are untrusted on load: versions, sizes, offsets and shapes are checked.
#ifndef PTC_RUNTIME_PLAN_PLAN_H_
#define PTC_RUNTIME_PLAN_PLAN_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"
#include "runtime/plan/memory_plan.h"

namespace ptc::plan {

inline constexpr uint32_t kPlanFormatVersion = 1;
inline constexpr uint32_t kWeightsFormatVersion = 1;
// File layouts (little-endian):
//   plan:    "PTCPLAN\0" | u32 format_version | u32 0 | PlanProto (plan.proto)
//   weights: "PTCWGT\0\1" | u32 version | u32 0 | u64 file size | zeros to byte 64 | tensors,
//            each at a 64-byte aligned offset given by the plan's weights index.
inline constexpr char kPlanMagic[8] = {'P', 'T', 'C', 'P', 'L', 'A', 'N', '\0'};
inline constexpr char kWeightsMagic[8] = {'P', 'T', 'C', 'W', 'G', 'T', '\0', '\1'};
inline constexpr size_t kPlanHeaderBytes = 16;
inline constexpr size_t kWeightsHeaderBytes = 64;
inline constexpr int64_t kWeightsAlignment = 64;

// A generated CUDA kernel stored in the plan (plan.proto's CudaKernelProto).
struct CudaKernel {
  std::string name;    // extern "C" symbol
  std::string arch;    // "sm_90"
  std::string source;  // CUDA C++
  std::string cubin;   // NVRTC's CUBIN for arch (bytes)
  std::vector<std::string> nodes;  // "@main %y"
  int32_t registers = -1;
  int32_t spill_bytes = -1;
};

struct Plan {
  std::unique_ptr<ir::Module> module;  // weights / large constants in module->tensors()
  std::string target = "cpu";
  std::map<std::string, std::string> options;  // flags used by `ptc compile`
  MemoryPlan memory;
  std::vector<CudaKernel> cuda_kernels;  // target cuda: generated fused_elementwise kernels
};

struct LoadOptions {
  // The weights checksum (XXH64 of the whole weights file) reads every byte of the file, which
  // defeats lazy mmap paging for very large weights: kAuto verifies files up to
  // auto_checksum_limit bytes. LoadPlanFromBytes always verifies unless kNever.
  enum class Checksum { kAuto, kAlways, kNever };
  Checksum checksum = Checksum::kAuto;
  int64_t auto_checksum_limit = int64_t{4} << 30;
};

// Writes `path` and `path + ".weights"` (both via temp file + fsync + rename + fsync folder;
// the weights first, so a plan file never names weights that are not there).
absl::Status SavePlan(const Plan& plan, const std::string& path);
// Loads and validates; the weights are mmap'd copy-on-write (the file is opened read-only and
// never changed; tensors borrow the mapping, and in-place updates stay private to the process).
absl::StatusOr<Plan> LoadPlan(const std::string& path);
absl::StatusOr<Plan> LoadPlan(const std::string& path, const LoadOptions& options);
// For the fuzzer and tests: the same checks on in-memory bytes.
absl::StatusOr<Plan> LoadPlanFromBytes(const std::string& plan_bytes,
                                       const std::string& weights_bytes,
                                       const LoadOptions& options = {});

}  // namespace ptc::plan

#endif  // PTC_RUNTIME_PLAN_PLAN_H_
