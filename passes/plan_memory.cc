// plan-memory: static arena planning over the final schedule.
//
// What: every intermediate value (node outputs other than constants) and every kernel workspace
// gets a 64-byte aligned offset in one arena; buffers whose lifetimes do not overlap share
// bytes. Reshape/identity outputs alias their input's buffer (lifetime extended to the last use
// of any alias). Lifetimes are schedule indices [def, last use]; results and the new values of
// `assign` nodes (applied by the runtime after the step) live to the end.
//
// Algorithm: greedy by size (largest first), each buffer placed at the lowest offset that does
// not collide with an already placed buffer whose lifetime overlaps (the "greedy by size"
// offset calculation of TFLite's arena planner; close to the lower bound on transformer graphs
// because the big activations are placed first). The lower bound reported is the most bytes
// live at any schedule point.
//
// Preconditions: the function verifies; the schedule is final (run last).
//
//   %a = exp(%x) : f32[256]      a: [0,1]  offset 0
//   %b = exp(%a) : f32[256]      b: [1,2]  offset 1024
//   %c = exp(%b) : f32[256]      c: [2,3]  offset 0   (reuses a's bytes)
#include "passes/plan_memory.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "compiler/support/status.h"

namespace ptc::passes {
namespace {

int64_t AlignUp(int64_t x, int64_t a) { return (x + a - 1) / a * a; }

struct Interval {
  std::string name;
  int64_t bytes = 0;
  int32_t first = 0;
  int32_t last = 0;
  int64_t offset = -1;
};

}  // namespace

absl::StatusOr<plan::MemoryPlan> PlanMemory(const ir::Function& f,
                                            const PlanMemoryOptions& options) {
  const auto& nodes = f.nodes();
  const int32_t end = static_cast<int32_t>(nodes.size());
  // Root buffer of each value (aliases resolve to the value that owns the bytes).
  std::map<const ir::Value*, const ir::Value*> root;
  std::map<const ir::Value*, int> index_of;  // root value -> interval index
  std::vector<Interval> intervals;
  std::vector<plan::BufferAssignment> aliases;

  auto is_arena_value = [](const ir::Value* v) {
    return v->producer() != nullptr && v->producer()->op() != "constant";
  };

  for (int32_t i = 0; i < end; ++i) {
    const ir::Node& n = *nodes[i];
    if (n.op() == "constant") continue;
    bool alias = options.alias_reshapes && (n.op() == "reshape" || n.op() == "identity") &&
                 n.num_inputs() == 1 && is_arena_value(n.input(0));
    for (const ir::Value* out : n.outputs()) {
      if (alias) {
        const ir::Value* r = root.at(n.input(0));
        root[out] = r;
        plan::BufferAssignment a;
        a.value = out->name();
        a.alias_of = n.input(0)->name();
        a.first = i;
        a.bytes = AlignUp(out->type().byte_size(), options.alignment);
        aliases.push_back(a);
        continue;
      }
      int64_t bytes = out->type().byte_size();
      if (bytes < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(n.Describe(), ": output size overflows: ", out->type().ToString()));
      }
      root[out] = out;
      index_of[out] = static_cast<int>(intervals.size());
      intervals.push_back({out->name(), AlignUp(bytes, options.alignment), i, i, -1});
    }
    if (options.workspace_bytes) {
      PTC_ASSIGN_OR_RETURN(int64_t ws, options.workspace_bytes(n));
      if (ws > 0) {
        intervals.push_back({absl::StrCat("ws@", i), AlignUp(ws, options.alignment), i, i, -1});
      }
    }
    for (const ir::Value* in : n.inputs()) {
      auto it = root.find(in);
      if (it == root.end()) continue;  // params and constants
      Interval& iv = intervals[index_of.at(it->second)];
      iv.last = std::max(iv.last, i);
    }
  }
  // Results, and the new values of `assign` (written into their targets after the whole step
  // has run), live to the end of the schedule.
  std::vector<const ir::Value*> live_to_end(f.results().begin(), f.results().end());
  for (const auto& n : nodes) {
    if (n->op() == "assign" && n->num_inputs() == 2) live_to_end.push_back(n->input(1));
  }
  for (const ir::Value* r : live_to_end) {
    auto it = root.find(r);
    if (it != root.end()) intervals[index_of.at(it->second)].last = end;
  }

  // Lower bound: most bytes live at any schedule point.
  std::vector<int64_t> live(end + 1, 0);
  for (const Interval& iv : intervals) {
    for (int32_t t = iv.first; t <= iv.last; ++t) live[t] += iv.bytes;
  }
  int64_t lower = 0;
  for (int64_t b : live) lower = std::max(lower, b);

  std::vector<int> order(intervals.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    if (intervals[a].bytes != intervals[b].bytes) return intervals[a].bytes > intervals[b].bytes;
    return intervals[a].first < intervals[b].first;
  });
  std::vector<int> placed;
  int64_t arena = 0;
  for (int idx : order) {
    Interval& iv = intervals[idx];
    // Collect conflicting placed ranges, sorted by offset; take the first gap that fits
    // (smallest gap that fits: best fit).
    std::vector<std::pair<int64_t, int64_t>> busy;
    for (int p : placed) {
      const Interval& o = intervals[p];
      if (o.first <= iv.last && iv.first <= o.last) busy.push_back({o.offset, o.offset + o.bytes});
    }
    std::sort(busy.begin(), busy.end());
    int64_t best = -1, best_gap = INT64_MAX, cursor = 0;
    for (const auto& [lo, hi] : busy) {
      if (lo > cursor) {
        int64_t gap = lo - cursor;
        if (gap >= iv.bytes && gap < best_gap) {
          best = cursor;
          best_gap = gap;
        }
      }
      cursor = std::max(cursor, hi);
    }
    if (best < 0) best = cursor;
    iv.offset = best;
    arena = std::max(arena, best + iv.bytes);
    placed.push_back(idx);
  }

  plan::MemoryPlan mp;
  mp.arena_bytes = arena;
  mp.lower_bound = lower;
  for (const Interval& iv : intervals) {
    plan::BufferAssignment b;
    b.value = iv.name;
    b.offset = iv.offset;
    b.bytes = iv.bytes;
    b.first = iv.first;
    b.last = iv.last;
    mp.buffers.push_back(b);
  }
  std::map<std::string, const plan::BufferAssignment*> by_name;
  for (const auto& b : mp.buffers) by_name[b.value] = &b;
  std::vector<plan::BufferAssignment> resolved;
  for (plan::BufferAssignment a : aliases) {
    // Alias chains point at the value they were made from; offsets follow the root.
    const ir::Value* v = f.FindValue(a.value);
    const ir::Value* r = root.at(v);
    const plan::BufferAssignment* rb = by_name.at(r->name());
    a.offset = rb->offset;
    a.last = rb->last;
    resolved.push_back(a);
  }
  mp.buffers.insert(mp.buffers.end(), resolved.begin(), resolved.end());
  return mp;
}

}  // namespace ptc::passes
