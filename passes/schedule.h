// schedule: a deterministic operator order that lowers the peak (see schedule.cc).
#ifndef PTC_PASSES_SCHEDULE_H_
#define PTC_PASSES_SCHEDULE_H_

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "compiler/ir/ir.h"
#include "passes/pass.h"
#include "passes/passes.h"

namespace ptc::passes {

// Rebuilds `function`'s node list in `order` (a permutation of its nodes that respects data
// dependencies), keeping every value's name, type and flags.
absl::Status ApplyOrder(ir::Function& function, const std::vector<ir::Node*>& order);

// CreateSchedulePass(hoist_updates) is declared in passes.h.

}  // namespace ptc::passes

#endif  // PTC_PASSES_SCHEDULE_H_
