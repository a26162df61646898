// Static memory planning over a function's schedule (see plan_memory.cc).
#ifndef PTC_PASSES_PLAN_MEMORY_H_
#define PTC_PASSES_PLAN_MEMORY_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"
#include "runtime/plan/memory_plan.h"

namespace ptc::passes {

struct PlanMemoryOptions {
  int64_t alignment = 64;
  // Reshape / identity outputs share their input's buffer (no copy).
  bool alias_reshapes = true;
  // Workspace bytes a node's kernel needs (target specific); null means none.
  std::function<absl::StatusOr<int64_t>(const ir::Node&)> workspace_bytes;
};

// Assigns every node output (except constants) and every kernel workspace an arena offset.
absl::StatusOr<plan::MemoryPlan> PlanMemory(const ir::Function& function,
                                            const PlanMemoryOptions& options);

}  // namespace ptc::passes

#endif  // PTC_PASSES_PLAN_MEMORY_H_
