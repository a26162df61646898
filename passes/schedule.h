// schedule: a deterministic operator order that lowers the peak (see schedule.cc).
#ifndef PTC_PASSES_SCHEDULE_H_
#define PTC_PASSES_SCHEDULE_H_

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "compiler/ir/ir.h"
#include "passes/pass.h"

namespace ptc::passes {

// Rebuilds `function`'s node list in `order` (a permutation of its nodes that respects data
// dependencies), keeping every value's name, type and flags.
absl::Status ApplyOrder(ir::Function& function, const std::vector<ir::Node*>& order);

std::unique_ptr<Pass> CreateSchedulePass();

}  // namespace ptc::passes

#endif  // PTC_PASSES_SCHEDULE_H_
