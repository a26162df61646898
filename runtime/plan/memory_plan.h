// The static memory plan: every intermediate value and kernel workspace gets an offset in one
// arena. Produced by passes/plan_memory, stored in the plan file, used by the runtimes.
#ifndef PTC_RUNTIME_PLAN_MEMORY_PLAN_H_
#define PTC_RUNTIME_PLAN_MEMORY_PLAN_H_

#include <cstdint>
#include <string>
#include <vector>

namespace ptc::plan {

struct BufferAssignment {
  std::string value;     // IR value name, or "ws@N" for node N's workspace
  int64_t offset = 0;    // bytes from the arena start (64-byte aligned)
  int64_t bytes = 0;
  int32_t first = 0;     // schedule index where it is defined (-1 for inputs)
  int32_t last = 0;      // schedule index of its last use (nodes.size() for results)
  std::string alias_of;  // non-empty: shares the buffer of that value (reshape, in-place)
};

struct MemoryPlan {
  int64_t arena_bytes = 0;
  int64_t lower_bound = 0;  // max bytes live at any point of the schedule
  std::vector<BufferAssignment> buffers;
};

}  // namespace ptc::plan

#endif  // PTC_RUNTIME_PLAN_MEMORY_PLAN_H_
