#include "runtime/plan/local_plan.h"

#include <algorithm>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "compiler/support/status.h"

namespace ptc::plan {

// Arena plan for functions the compiler did not plan (e.g. @eval): greedy by size over
// [definition, last use] intervals, the same algorithm as passes/plan_memory.cc (the runtime
// cannot depend on passes/). Assign sources and results live to the end.
absl::StatusOr<MemoryPlan> PlanFunctionLocally(
    const ir::Function& f, const std::function<absl::StatusOr<int64_t>(const ir::Node&)>&
                               workspace_bytes,
    int64_t alignment) {
  auto align_up = [alignment](int64_t x) { return (x + alignment - 1) / alignment * alignment; };
  const auto& nodes = f.nodes();
  const int32_t end = static_cast<int32_t>(nodes.size());
  std::vector<BufferAssignment> bufs;
  std::map<const ir::Value*, size_t> index_of;
  for (int32_t i = 0; i < end; ++i) {
    const ir::Node& n = *nodes[i];
    if (n.op() == "constant") continue;
    for (const ir::Value* in : n.inputs()) {
      auto it = index_of.find(in);
      if (it != index_of.end()) bufs[it->second].last = n.op() == "assign" ? end : i;
    }
    for (const ir::Value* out : n.outputs()) {
      int64_t bytes = out->type().byte_size();
      if (bytes < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(n.Describe(), ": output size overflows: ", out->type().ToString()));
      }
      index_of[out] = bufs.size();
      bufs.push_back({out->name(), -1, align_up(bytes), i, i, ""});
    }
    if (n.op() != "assign") {
      PTC_ASSIGN_OR_RETURN(int64_t ws, workspace_bytes(n));
      if (ws > 0) bufs.push_back({absl::StrCat("ws@", i), -1, align_up(ws), i, i, ""});
    }
  }
  for (const ir::Value* r : f.results()) {
    auto it = index_of.find(r);
    if (it != index_of.end()) bufs[it->second].last = end;
  }
  std::vector<size_t> order(bufs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return bufs[a].bytes > bufs[b].bytes; });
  MemoryPlan mp;
  std::vector<size_t> placed;
  for (size_t idx : order) {
    BufferAssignment& b = bufs[idx];
    std::vector<std::pair<int64_t, int64_t>> busy;
    for (size_t p : placed) {
      const BufferAssignment& o = bufs[p];
      if (o.first <= b.last && b.first <= o.last) busy.push_back({o.offset, o.offset + o.bytes});
    }
    std::sort(busy.begin(), busy.end());
    int64_t cursor = 0;
    for (const auto& [lo, hi] : busy) {
      if (lo - cursor >= b.bytes) break;
      cursor = std::max(cursor, hi);
    }
    b.offset = cursor;
    mp.arena_bytes = std::max(mp.arena_bytes, cursor + b.bytes);
    placed.push_back(idx);
  }
  mp.buffers = std::move(bufs);
  return mp;
}

}  // namespace ptc::plan
