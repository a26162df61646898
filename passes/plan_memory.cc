// plan-memory: static arena planning over the final schedule.
//
// What: every intermediate value (node outputs other than constants) and every kernel workspace
// gets a 64-byte aligned offset in one arena; buffers whose lifetimes do not overlap share
// bytes. Lifetimes come from LivenessAnalysis (memory_analysis.h): reshape/identity outputs
// alias their input's buffer, results and the new values of `assign` nodes (applied by the
// runtime after the step) live to the end.
//
// Algorithm: offset assignment is NP-hard in general (dynamic storage allocation); on these
// graphs greedy placement with best fit is within a few percent of the lower bound (the most
// bytes live at any schedule point). Each buffer, in a placement order, goes into the smallest
// gap between already placed buffers whose lifetimes overlap it that fits (else on top). Three
// orders are tried — largest first (TFLite's "greedy by size"), largest size x lifetime first,
// longest-lived first — and the smallest arena wins; ties keep the first, so the plan is
// deterministic. The plan records the lower bound next to the arena size.
//
// Preconditions: the function verifies; the schedule is final (run last: after remat and
// schedule).
//
//   %a = exp(%x) : f32[256]      a: [0,1]  offset 0
//   %b = exp(%a) : f32[256]      b: [1,2]  offset 1024
//   %c = exp(%b) : f32[256]      c: [2,3]  offset 0   (reuses a's bytes)
#include "passes/plan_memory.h"

#include <algorithm>
#include <map>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "compiler/support/status.h"
#include "passes/memory_analysis.h"

namespace ptc::passes {
namespace {

int64_t PlaceInOrder(std::vector<Interval>& iv, const std::vector<int>& order) {
  // Placed intervals sorted by first index would speed this up; n is a few thousand and each
  // step is a linear scan, fine for compile time (~10 ms on GPT-2 small training graphs).
  std::vector<int> placed;
  placed.reserve(order.size());
  int64_t arena = 0;
  std::vector<std::pair<int64_t, int64_t>> busy;
  for (int idx : order) {
    Interval& x = iv[idx];
    busy.clear();
    for (int p : placed) {
      const Interval& o = iv[p];
      if (o.first <= x.last && x.first <= o.last) busy.push_back({o.offset, o.offset + o.bytes});
    }
    std::sort(busy.begin(), busy.end());
    int64_t best = -1, best_gap = INT64_MAX, cursor = 0;
    for (const auto& [lo, hi] : busy) {
      if (lo > cursor) {
        int64_t gap = lo - cursor;
        if (gap >= x.bytes && gap < best_gap) {
          best = cursor;
          best_gap = gap;
        }
      }
      cursor = std::max(cursor, hi);
    }
    if (best < 0) best = cursor;
    x.offset = best;
    arena = std::max(arena, best + x.bytes);
    placed.push_back(idx);
  }
  return arena;
}

}  // namespace

int64_t AssignOffsets(std::vector<Interval>& iv) {
  const int n = static_cast<int>(iv.size());
  auto life = [&](int i) { return static_cast<int64_t>(iv[i].last - iv[i].first + 1); };
  std::vector<std::function<bool(int, int)>> keys = {
      [&](int a, int b) { return iv[a].bytes > iv[b].bytes; },
      [&](int a, int b) { return iv[a].bytes * life(a) > iv[b].bytes * life(b); },
      [&](int a, int b) {
        return life(a) != life(b) ? life(a) > life(b) : iv[a].bytes > iv[b].bytes;
      },
  };
  int64_t best_arena = -1;
  std::vector<int64_t> best_offsets;
  for (const auto& key : keys) {
    std::vector<int> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      if (key(a, b)) return true;
      if (key(b, a)) return false;
      return iv[a].first < iv[b].first;
    });
    int64_t arena = PlaceInOrder(iv, order);
    if (best_arena < 0 || arena < best_arena) {
      best_arena = arena;
      best_offsets.resize(n);
      for (int i = 0; i < n; ++i) best_offsets[i] = iv[i].offset;
    }
  }
  for (int i = 0; i < n; ++i) iv[i].offset = best_offsets[i];
  return std::max<int64_t>(best_arena, 0);
}

absl::StatusOr<plan::MemoryPlan> PlanMemory(const ir::Function& f,
                                            const PlanMemoryOptions& options) {
  LivenessOptions lo;
  lo.alignment = options.alignment;
  lo.alias_reshapes = options.alias_reshapes;
  lo.workspace_bytes = options.workspace_bytes;
  lo.inplace_updates = options.inplace_updates;
  lo.reuse_elementwise_inputs = options.reuse_elementwise_inputs;
  PTC_ASSIGN_OR_RETURN(LivenessAnalysis live, LivenessAnalysis::Run(f, lo));

  std::vector<Interval> iv;
  iv.reserve(live.buffers().size());
  for (const LiveBuffer& b : live.buffers()) iv.push_back({b.bytes, b.first, b.last, -1});
  int64_t arena = AssignOffsets(iv);

  plan::MemoryPlan mp;
  mp.arena_bytes = arena;
  mp.lower_bound = live.peak();
  for (size_t i = 0; i < iv.size(); ++i) {
    const LiveBuffer& b = live.buffers()[i];
    plan::BufferAssignment a;
    a.value = b.name;
    a.offset = iv[i].offset;
    a.bytes = b.bytes;
    a.first = b.first;
    a.last = b.last;
    mp.buffers.push_back(a);
  }
  // Aliases (reshape / identity outputs, elementwise outputs in a dying input's buffer) share
  // their root buffer's bytes and lifetime; alias_of names the input whose bytes they take.
  for (size_t i = 0; i < iv.size(); ++i) {
    const LiveBuffer& b = live.buffers()[i];
    for (const ir::Value* v : b.aliases) {
      plan::BufferAssignment a;
      a.value = v->name();
      for (const ir::Value* in : v->producer()->inputs()) {
        auto it = live.buffer_of().find(in);
        if (it != live.buffer_of().end() && it->second == static_cast<int>(i)) {
          a.alias_of = in->name();
          break;
        }
      }
      a.offset = iv[i].offset;
      a.bytes = ((v->type().byte_size() + options.alignment - 1) / options.alignment) *
                options.alignment;
      a.first = f.NodeIndex(v->producer());
      a.last = b.last;
      mp.buffers.push_back(a);
    }
  }
  // In-place optimizer outputs: no arena bytes, they alias the parameter's storage.
  for (const auto& [v, param] : live.inplace()) {
    plan::BufferAssignment a;
    a.value = v->name();
    a.alias_of = param->name();
    a.offset = -1;
    a.bytes = v->type().byte_size();
    a.first = f.NodeIndex(v->producer());
    a.last = static_cast<int32_t>(f.nodes().size());
    mp.buffers.push_back(a);
  }
  return mp;
}

}  // namespace ptc::passes
