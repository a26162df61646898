// A memory plan made at load time for a function the compiler did not plan (e.g. the @eval
// function of a training plan): greedy best-fit by size over [definition, last use] intervals,
// the algorithm of passes/plan_memory.cc (the runtime cannot depend on passes/). Assign sources
// and the function's results live to the end. Shared by the CPU and CUDA executors.
#ifndef PTC_RUNTIME_PLAN_LOCAL_PLAN_H_
#define PTC_RUNTIME_PLAN_LOCAL_PLAN_H_

#include <cstdint>
#include <functional>

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"
#include "runtime/plan/memory_plan.h"

namespace ptc::plan {

// workspace_bytes(node): scratch bytes the executor's kernel for `node` needs inside the arena
// (a "ws@<index>" buffer live at the node only); return 0 when the executor has its own.
absl::StatusOr<MemoryPlan> PlanFunctionLocally(
    const ir::Function& f, const std::function<absl::StatusOr<int64_t>(const ir::Node&)>&
                               workspace_bytes,
    int64_t alignment = 64);

}  // namespace ptc::plan

#endif  // PTC_RUNTIME_PLAN_LOCAL_PLAN_H_
