// Memory plan inspection: `ptc dump PLAN --memory [--format text|json|svg|dot]` and the
// remat trade-off sweep (`ptc compile --mem-sweep`). Library functions; the CLI only prints.
//
//   text  peak, lower bound, arena (and the gap), per-phase peaks, the top buffers live at the
//         peak (name, op, shape, dtype, bytes, lifetime, category), totals by category
//         (params, optimizer state, activations, gradients, optimizer outputs, workspace),
//         recomputed values and their FLOPs as a share of the step;
//   json  all of the above plus the per-node timeline by category;
//   svg   the timeline over the schedule stacked by category, the peak marked (plain SVG);
//   dot   the graph, saved activations (forward values read by the backward) orange,
//         recomputed nodes green, forward blue, backward grey, optimizer purple.
#ifndef PTC_COMPILER_DRIVER_MEMORY_REPORT_H_
#define PTC_COMPILER_DRIVER_MEMORY_REPORT_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "passes/memory_analysis.h"
#include "passes/remat.h"
#include "runtime/plan/plan.h"

namespace ptc::driver {

struct ReportBuffer {
  std::string name, op, loc, type, category;
  int64_t bytes = 0;
  int32_t first = 0, last = 0;
};

struct RecomputedValue {
  std::string name, op;
  double flops = 0;
};

struct MemoryReport {
  std::string function;
  int64_t arena_bytes = 0;
  int64_t lower_bound = 0;
  int64_t peak = 0;          // liveness peak of the schedule (== lower bound for ptc's plans)
  int32_t peak_index = 0;
  std::string peak_node;     // "matmul %x (backward)"
  int64_t forward_peak = 0, backward_peak = 0, optimizer_peak = 0;
  // Max bytes of activations (forward values) live at any point: what remat reduces.
  int64_t activation_peak = 0;
  std::vector<ReportBuffer> top;  // live at the peak, largest first
  // By passes::Category (params, optimizer state, activations, gradients, optimizer outputs,
  // workspace): params / state are whole sizes, the rest are bytes live at the peak.
  std::array<int64_t, passes::kNumCategories> totals{};
  std::vector<RecomputedValue> recomputed;
  double recomputed_flops = 0;
  double step_flops = 0;
  // timeline[t][c]: arena bytes of category c live at schedule point t.
  std::vector<std::array<int64_t, passes::kNumCategories>> timeline;
  std::vector<std::string> phase_of_node;
  int64_t num_nodes = 0;
};

// Builds the report of `plan`'s main function (workspaces from the plan's "ws@N" buffers).
absl::StatusOr<MemoryReport> BuildMemoryReport(const plan::Plan& plan, int top = 12);

std::string MemoryReportText(const MemoryReport& report);
std::string MemoryReportJson(const MemoryReport& report);
std::string MemoryTimelineSvg(const MemoryReport& report);
// The graph with saved / recomputed values coloured (Graphviz).
std::string MemoryDot(const ir::Function& function);
// The trade-off curve as a table: budget, arena, peak, added FLOPs (% of the step).
std::string SweepTable(const std::vector<passes::SweepPoint>& sweep);

}  // namespace ptc::driver

#endif  // PTC_COMPILER_DRIVER_MEMORY_REPORT_H_
