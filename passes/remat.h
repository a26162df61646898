// Rematerialization of training steps under a byte budget (see remat.cc for the algorithm).
#ifndef PTC_PASSES_REMAT_H_
#define PTC_PASSES_REMAT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"
#include "passes/pass.h"

namespace ptc::passes {

struct RematOptions {
  // "none": never recompute. "per-block": recompute every block from its input (Chen et al.'s
  // checkpoint per block, like torch.utils.checkpoint around each transformer block).
  // "auto": the cheapest plan (least recomputed FLOPs) whose arena fits `budget`; with no
  // budget, nothing changes.
  std::string mode = "auto";
  // Arena bytes (everything planned per step: activations, gradients, optimizer outputs,
  // workspaces; params and optimizer state live outside the arena). 0: no budget.
  int64_t budget = 0;
  std::function<absl::StatusOr<int64_t>(const ir::Node&)> workspace_bytes;
  bool inplace_updates = false;  // as PlanMemoryOptions::inplace_updates
  bool reuse_elementwise_inputs = false;  // as PlanMemoryOptions::reuse_elementwise_inputs
};

struct RematResult {
  bool changed = false;
  int segments = 0;              // recomputable segments found in the forward graph
  int recomputed_segments = 0;
  int recomputed_nodes = 0;
  double added_flops = 0;        // FLOPs of the recomputed nodes
  double step_flops = 0;         // FLOPs of the step before remat
  int64_t arena_before = 0;      // planned arena without remat
  int64_t arena_after = 0;
  int64_t peak_before = 0;       // liveness lower bound without remat
  int64_t peak_after = 0;
};

// Rewrites module.main() in place. Infeasible budget: InvalidArgument (ResourceExhausted code)
// with the minimum feasible budget, the budget asked, and the largest buffers live at the peak
// of the most aggressive plan with the ops that produce them.
absl::StatusOr<RematResult> Rematerialize(ir::Module& module, const RematOptions& options);

// The memory / compute trade-off curve: for `points` budgets from the no-remat arena down to
// the minimum feasible one, the chosen plan's arena, peak and added FLOPs. Does not change
// `module`.
struct SweepPoint {
  int64_t budget = 0;
  RematResult result;
};
absl::StatusOr<std::vector<SweepPoint>> RematSweep(const ir::Module& module,
                                                   const RematOptions& options, int points = 8);

std::unique_ptr<Pass> CreateRematPass(RematOptions options = {});

}  // namespace ptc::passes

#endif  // PTC_PASSES_REMAT_H_
