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
  // Optimizer outputs written straight into their parameter's storage (memory_analysis.h,
  // LivenessOptions::inplace_updates): recorded as BufferAssignment{alias_of=PARAM, offset=-1}.
  // Needs the runtime to bind those outputs to the parameter and skip the assign copy.
  bool inplace_updates = false;
  // Elementwise outputs take the buffer of an input read for the last time there
  // (LivenessOptions::reuse_elementwise_inputs): recorded as BufferAssignment{alias_of=INPUT}.
  // Needs kernels that accept an output aliasing that input.
  bool reuse_elementwise_inputs = false;
};

// Assigns every node output (except constants) and every kernel workspace an arena offset.
absl::StatusOr<plan::MemoryPlan> PlanMemory(const ir::Function& function,
                                            const PlanMemoryOptions& options);

// The offset assignment alone: intervals [first, last] with sizes -> offsets; returns the arena
// size. Tries several placement orders (largest first, longest-lived first, largest area first)
// with best-fit gaps and keeps the smallest arena (deterministic).
struct Interval {
  int64_t bytes = 0;
  int32_t first = 0;
  int32_t last = 0;
  int64_t offset = -1;
};
int64_t AssignOffsets(std::vector<Interval>& intervals);

}  // namespace ptc::passes

#endif  // PTC_PASSES_PLAN_MEMORY_H_
