// The plan file: a versioned protobuf (plan.proto) holding the optimized IR (text form), the
// schedule (node order of the IR), the memory plan, the target and the options used; plus a
// weights file PLAN.weights (64-byte aligned tensors, indexed from the plan, mmap-able).
// Both files are untrusted on load: versions, sizes, offsets and shapes are checked.
#ifndef PTC_RUNTIME_PLAN_PLAN_H_
#define PTC_RUNTIME_PLAN_PLAN_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"
#include "runtime/plan/memory_plan.h"

namespace ptc::plan {

inline constexpr uint32_t kPlanFormatVersion = 1;

struct Plan {
  std::unique_ptr<ir::Module> module;  // weights / large constants in module->tensors()
  std::string target = "cpu";
  std::map<std::string, std::string> options;  // flags used by `ptc compile`
  MemoryPlan memory;
};

// Writes `path` and `path + ".weights"` (both via temp file + rename).
absl::Status SavePlan(const Plan& plan, const std::string& path);
// Loads and validates; the weights are mmap'd (tensors borrow the mapping).
absl::StatusOr<Plan> LoadPlan(const std::string& path);
// For the fuzzer and tests: the same checks on in-memory bytes.
absl::StatusOr<Plan> LoadPlanFromBytes(const std::string& plan_bytes,
                                       const std::string& weights_bytes);

}  // namespace ptc::plan

#endif  // PTC_RUNTIME_PLAN_PLAN_H_
