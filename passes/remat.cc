// remat: choose which forward values a training step keeps for the backward pass and which it
// recomputes, so that the planned arena fits a byte budget at the least added compute.
//
// Model. The forward graph (ancestors of the loss, memory_analysis.h ClassifyPhases) is cut
// into segments at the schedule points where at most one short-lived forward value crosses
// (the residual stream between and inside transformer blocks; values read across many blocks,
// such as masks or the encoder output of an encoder-decoder, count as "global" and are always
// kept). Per segment there are three options:
//   keep       every value the backward reads stays live (no remat);
//   selective  outputs of matmul / gemm / fused_matmul (and of impure ops, which must never be
//              recomputed; dropout is pure: its counter redraws the same mask) are kept, everything else the backward reads is recomputed from
//              them (cheap elementwise / normalization / softmax work; Korthikanti et al.'s
//              "selective recomputation", PyTorch's min-cut partitioner's preference);
//   full       only the segment's input is kept and the segment is recomputed (Chen et al.).
// Each option has an exact added cost (FLOPs of the cloned nodes, cost model in
// memory_analysis.h) and a byte saving (root buffers no longer live across the
// forward/backward boundary).
//
// Solver. Minimizing added FLOPs subject to saving >= (no-remat arena - budget) is a
// multiple-choice knapsack over segments, solved exactly by dynamic programming over the
// saving discretized into 2048 units (rounded down, so the solution's true saving is at least
// the modelled one: optimal for the additive model up to one unit per segment). The additive
// model ignores the transient of recomputed values and planner fragmentation, so each solution
// is checked by applying it to a copy and planning the arena exactly; when it does not fit,
// the required saving is bisected between the modelled one and the largest possible one (the
// DP's cost is monotone in it) and the cheapest plan that fits is kept (about 12 rounds).
// Why not the others: Checkmate's MILP is optimal over every schedule but needs an ILP solver
// and minutes on a few thousand nodes; Chen's sqrt(n) is one point of this family (full
// recompute of every k-th segment) and ignores op costs; PyTorch's min-cut partitioner picks
// one cut (save matmul outputs, recompute the rest) with no budget, which is our "selective"
// on every segment; its knapsack budget mode and XLA's HloRematerialization greedily evict by
// a cost/benefit score. On transformer graphs the segments are the natural cut points, so this
// family contains the plans those methods find, and within it the DP is optimal.
//
// Bit-exactness: recomputed nodes are clones of the forward nodes (same op, attributes and
// inputs, so the same kernels in the same order) inserted right before the first backward node
// that reads any of the segment's recomputed values; backward uses are rewired to the clones
// (outputs named "<value>.remat"), the forward originals then die at their last forward use.
//
// Preconditions: a training step (compiler/autodiff/training.h), after cse (cse would merge
// the clones back) and fusion passes; schedule and plan-memory run after it.
//
//   %h = matmul(%x, %w)         ...  %h = matmul(%x, %w)
//   %g = gelu(%h)                    %g = gelu(%h)          (dies in the forward)
//   %y = matmul(%g, %w2)             %y = matmul(%g, %w2)
//   ... backward ...                 %g.remat = gelu(%h)    (selective: %h kept)
//   %dw2 = gemm(%g, %dy)             %dw2 = gemm(%g.remat, %dy)
#include "passes/remat.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "compiler/ir/ops.h"
#include "compiler/support/status.h"
#include "passes/memory_analysis.h"
#include "passes/plan_memory.h"

namespace ptc::passes {
namespace {

enum Option { kKeep = 0, kSelective = 1, kFull = 2 };

struct Choice {
  std::vector<int> nodes;                // node indices (schedule of the original) to clone
  double flops = 0;
  int64_t saving = 0;
};

struct Segment {
  int begin = 0, end = 0;  // forward positions, interior [begin, end)
  Choice options[3];
};

struct Analysis {
  std::vector<int> forward;  // node indices of forward nodes, in order
  std::vector<Segment> segments;
  double step_flops = 0;
};

// Ops worth keeping rather than recomputing (many FLOPs per byte of output).
bool IsExpensive(const ir::Node& n) {
  return n.op() == "matmul" || n.op() == "gemm" || n.op() == "fused_matmul" ||
         n.op() == "gemm_bgrad" || n.op() == "gemm_gelu_grad";
}
bool IsImpure(const ir::Node& n) {
  const ir::OpDef* def = ir::FindOp(n.op());
  return def == nullptr || !def->pure;
}

absl::StatusOr<Analysis> Analyze(const ir::Function& f, const LivenessOptions& lo) {
  Analysis a;
  const auto& nodes = f.nodes();
  std::vector<Phase> phase = ClassifyPhases(f);
  for (const auto& n : nodes) a.step_flops += EstimateCost(*n).flops;
  std::map<const ir::Node*, int> index;
  for (size_t i = 0; i < nodes.size(); ++i) index[nodes[i].get()] = static_cast<int>(i);
  std::vector<int> pos(nodes.size(), -1);  // forward position of a node
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (phase[i] == Phase::kForward) {
      pos[i] = static_cast<int>(a.forward.size());
      a.forward.push_back(static_cast<int>(i));
    }
  }
  bool has_backward = false;
  for (Phase p : phase) has_backward |= p != Phase::kForward;
  const int nf = static_cast<int>(a.forward.size());
  if (!has_backward || nf < 3) return a;

  PTC_ASSIGN_OR_RETURN(LivenessAnalysis live, LivenessAnalysis::Run(f, lo));
  auto uses = f.ComputeUses();
  std::set<const ir::Value*> results(f.results().begin(), f.results().end());
  auto arena_value = [&](const ir::Value* v) {
    return v->producer() != nullptr && v->producer()->op() != "constant";
  };
  auto pos_of = [&](const ir::Value* v) { return pos[index.at(v->producer())]; };

  // Crossing counts of short-lived forward values (difference array over positions).
  std::vector<int> cross(nf + 1, 0);
  for (int p = 0; p < nf; ++p) {
    const ir::Node& n = *nodes[a.forward[p]];
    for (const ir::Value* v : n.outputs()) {
      if (!arena_value(v)) continue;
      int last = p;
      for (const auto& [user, idx] : uses[v]) {
        int up = pos[index.at(user)];
        if (up >= 0) last = std::max(last, up);
      }
      if (last - p > std::max(16, nf / 4)) continue;  // global: always kept
      cross[p] += 1;
      cross[last] -= 1;
    }
  }
  std::vector<int> cuts;
  int running = 0;
  for (int p = 0; p + 1 < nf; ++p) {
    running += cross[p];
    if (running <= 1) cuts.push_back(p);
  }
  if (cuts.empty()) return a;
  cuts.push_back(nf - 1);  // the tail (head of the model, loss) is the last segment

  // Forward values the backward reads.
  auto needed_by_backward = [&](const ir::Value* v) {
    if (results.count(v)) return false;
    for (const auto& [user, idx] : uses[v]) {
      if (pos[index.at(user)] < 0) return true;
    }
    return false;
  };
  auto root_of = [&](const ir::Value* v) -> int {
    auto it = live.buffer_of().find(v);
    return it == live.buffer_of().end() ? -1 : it->second;
  };

  for (size_t k = 0; k + 1 < cuts.size(); ++k) {
    Segment s;
    s.begin = cuts[k] + 1;
    s.end = cuts[k + 1];  // the next cut's node produces the next checkpoint: kept
    if (k + 2 == cuts.size()) s.end = nf;  // last segment runs to the loss
    if (s.end <= s.begin) continue;
    auto interior = [&](const ir::Value* v) {
      if (!arena_value(v)) return false;
      int p = pos_of(v);
      return p >= s.begin && p < s.end;
    };
    std::vector<const ir::Value*> needed;
    for (int p = s.begin; p < s.end; ++p) {
      for (const ir::Value* v : nodes[a.forward[p]]->outputs()) {
        if (arena_value(v) && needed_by_backward(v)) needed.push_back(v);
      }
    }
    if (needed.empty()) continue;
    // Roots produced in the interior that stay live into the backward, per option.
    auto kept_bytes = [&](const std::set<const ir::Value*>& kept) {
      std::set<int> roots;
      for (const ir::Value* v : kept) {
        int r = root_of(v);
        if (r < 0 || live.buffers()[r].value == nullptr) continue;
        if (!interior(live.buffers()[r].value)) continue;
        roots.insert(r);
      }
      int64_t bytes = 0;
      for (int r : roots) bytes += live.buffers()[r].bytes;
      return bytes;
    };
    std::set<const ir::Value*> keep_all(needed.begin(), needed.end());
    int64_t base = kept_bytes(keep_all);
    for (int opt : {kSelective, kFull}) {
      auto keep_node = [&](const ir::Node& n) {
        return IsImpure(n) || (opt == kSelective && IsExpensive(n));
      };
      std::set<int> clone;
      std::set<const ir::Value*> kept;
      std::vector<const ir::Value*> stack;
      for (const ir::Value* v : needed) {
        if (keep_node(*v->producer())) {
          kept.insert(v);
        } else {
          stack.push_back(v);
        }
      }
      while (!stack.empty()) {
        const ir::Value* v = stack.back();
        stack.pop_back();
        int ni = index.at(v->producer());
        if (!clone.insert(ni).second) continue;
        for (const ir::Value* in : nodes[ni]->inputs()) {
          if (!arena_value(in)) continue;
          if (interior(in) && !keep_node(*in->producer())) {
            stack.push_back(in);
          } else {
            kept.insert(in);
          }
        }
      }
      Choice& c = s.options[opt];
      c.nodes.assign(clone.begin(), clone.end());
      for (int ni : c.nodes) c.flops += EstimateCost(*nodes[ni]).flops;
      c.saving = base - kept_bytes(kept);
    }
    a.segments.push_back(std::move(s));
  }
  return a;
}

// Clones the chosen nodes of each segment before the first backward reader (see the header).
int Apply(ir::Function& f, const Analysis& a, const std::vector<int>& choice) {
  // Resolve node indices to nodes before inserting anything.
  std::vector<ir::Node*> by_index;
  for (const auto& n : f.nodes()) by_index.push_back(n.get());
  std::set<const ir::Node*> forward;
  for (int i : a.forward) forward.insert(by_index[i]);
  int cloned = 0;
  for (size_t k = 0; k < a.segments.size(); ++k) {
    if (choice[k] == kKeep) continue;
    const Choice& c = a.segments[k].options[choice[k]];
    if (c.nodes.empty()) continue;
    std::set<const ir::Value*> recomputed;
    for (int ni : c.nodes) {
      for (const ir::Value* v : by_index[ni]->outputs()) recomputed.insert(v);
    }
    // First non-forward reader of a recomputed value, in the current schedule.
    const ir::Node* insert_before = nullptr;
    int best = INT32_MAX;
    auto uses = f.ComputeUses();
    for (const ir::Value* v : recomputed) {
      for (const auto& [user, idx] : uses[v]) {
        if (forward.count(user) || IsRecomputed(*user)) continue;
        int ui = f.NodeIndex(user);
        if (ui < best) {
          best = ui;
          insert_before = user;
        }
      }
    }
    if (insert_before == nullptr) continue;
    std::map<ir::Value*, ir::Value*> clone_of;
    for (int ni : c.nodes) {  // ascending index = forward order
      ir::Node* n = by_index[ni];
      std::vector<ir::Value*> ins;
      for (ir::Value* in : n->inputs()) {
        auto it = clone_of.find(in);
        ins.push_back(it == clone_of.end() ? in : it->second);
      }
      std::vector<ir::TensorType> types;
      std::vector<std::string> names;
      for (const ir::Value* o : n->outputs()) {
        types.push_back(o->type());
        names.push_back(absl::StrCat(o->name(), ".remat"));
      }
      ir::Node* cl = f.AddNode(n->op(), ins, types, n->attrs(), n->loc(), names, insert_before);
      for (size_t i = 0; i < n->num_outputs(); ++i) clone_of[n->output(i)] = cl->output(i);
      ++cloned;
    }
    // Rewire backward readers (not forward nodes, not other clones) to the clones.
    for (const auto& node : f.nodes()) {
      if (forward.count(node.get()) || IsRecomputed(*node)) continue;
      for (size_t i = 0; i < node->num_inputs(); ++i) {
        auto it = clone_of.find(node->input(i));
        if (it != clone_of.end()) node->set_input(i, it->second);
      }
    }
  }
  return cloned;
}

struct Measured {
  int64_t arena = 0;
  int64_t peak = 0;
};

absl::StatusOr<Measured> Measure(const ir::Function& f, const LivenessOptions& lo) {
  PTC_ASSIGN_OR_RETURN(LivenessAnalysis live, LivenessAnalysis::Run(f, lo));
  std::vector<Interval> iv;
  for (const LiveBuffer& b : live.buffers()) iv.push_back({b.bytes, b.first, b.last, -1});
  return Measured{AssignOffsets(iv), live.peak()};
}

// Multiple-choice knapsack: least FLOPs with modelled saving >= need.
std::vector<int> Solve(const Analysis& a, int64_t need) {
  const int s = static_cast<int>(a.segments.size());
  std::vector<int> choice(s, kKeep);
  if (need <= 0) return choice;
  constexpr int kUnits = 2048;
  double unit = static_cast<double>(need) / kUnits;
  const double inf = 1e300;
  // dp[k][u]: least flops over segments [0, k) reaching min(u, kUnits) units.
  std::vector<std::vector<double>> dp(s + 1, std::vector<double>(kUnits + 1, inf));
  std::vector<std::vector<int8_t>> pick(s + 1, std::vector<int8_t>(kUnits + 1, 0));
  dp[0][0] = 0;
  for (int k = 0; k < s; ++k) {
    for (int u = 0; u <= kUnits; ++u) {
      if (dp[k][u] >= inf) continue;
      for (int o : {kKeep, kSelective, kFull}) {
        const Choice& c = a.segments[k].options[o];
        if (o != kKeep && (c.nodes.empty() || c.saving <= 0)) continue;
        int gain = o == kKeep ? 0 : static_cast<int>(std::floor(c.saving / unit));
        int nu = std::min(kUnits, u + gain);
        double cost = dp[k][u] + (o == kKeep ? 0 : c.flops);
        if (cost < dp[k + 1][nu]) {
          dp[k + 1][nu] = cost;
          pick[k + 1][nu] = static_cast<int8_t>(o);
        }
      }
    }
  }
  if (dp[s][kUnits] >= inf) {
    std::fill(choice.begin(), choice.end(), kFull);  // the most aggressive plan
    return choice;
  }
  // Backtrack: find u' at level k with dp[k][u'] + cost(o) == dp[k+1][u] and the same transition.
  int u = kUnits;
  for (int k = s; k > 0; --k) {
    int o = pick[k][u];
    const Choice& c = a.segments[k - 1].options[o];
    int gain = o == kKeep ? 0 : static_cast<int>(std::floor(c.saving / unit));
    double cost = o == kKeep ? 0 : c.flops;
    int prev = -1;
    for (int pu = 0; pu <= kUnits; ++pu) {
      if (dp[k - 1][pu] >= inf) continue;
      if (std::min(kUnits, pu + gain) == u && dp[k - 1][pu] + cost == dp[k][u]) {
        prev = pu;
        break;
      }
    }
    PTC_CHECK(prev >= 0);
    choice[k - 1] = o;
    u = prev;
  }
  return choice;
}

std::string LargestAtPeak(const ir::Function& f, const LivenessOptions& lo, int top) {
  absl::StatusOr<LivenessAnalysis> live = LivenessAnalysis::Run(f, lo);
  if (!live.ok()) return "";
  std::string s;
  int shown = 0;
  for (int i : live->LiveAt(live->peak_index())) {
    if (shown++ >= top) break;
    const LiveBuffer& b = live->buffers()[i];
    if (b.value == nullptr) {
      absl::StrAppend(&s, "\n  ", FormatBytes(b.bytes), "  ", b.name, " (kernel workspace)");
      continue;
    }
    absl::StrAppend(&s, "\n  ", FormatBytes(b.bytes), "  %", b.name, " ",
                    b.value->type().ToString(), " from ", b.value->producer()->Describe(), " (",
                    std::string(CategoryName(b.category)), ", live [", b.first, ", ", b.last,
                    "])");
  }
  return s;
}

absl::StatusOr<RematResult> RunRemat(ir::Module& module, const RematOptions& options) {
  RematResult r;
  ir::Function* f = module.main();
  if (f == nullptr) return r;
  LivenessOptions lo;
  lo.workspace_bytes = options.workspace_bytes;
  lo.inplace_updates = options.inplace_updates;
  lo.reuse_elementwise_inputs = options.reuse_elementwise_inputs;
  if (options.mode != "none" && options.mode != "auto" && options.mode != "per-block") {
    return absl::InvalidArgumentError(absl::StrCat("--remat ", options.mode,
                                                   ": expected none, per-block or auto"));
  }
  PTC_ASSIGN_OR_RETURN(Measured before, Measure(*f, lo));
  r.arena_before = r.arena_after = before.arena;
  r.peak_before = r.peak_after = before.peak;
  PTC_ASSIGN_OR_RETURN(Analysis a, Analyze(*f, lo));
  r.segments = static_cast<int>(a.segments.size());
  r.step_flops = a.step_flops;
  if (options.mode == "none") return r;
  bool budgeted = options.mode == "auto" && options.budget > 0;
  if (options.mode == "auto" && !budgeted) return r;
  if (budgeted && before.arena <= options.budget) return r;  // fits: remat must not fire

  auto try_choice = [&](const std::vector<int>& choice, std::unique_ptr<ir::Module>* out,
                        RematResult* res) -> absl::StatusOr<Measured> {
    auto copy = module.Clone();
    int cloned = Apply(*copy->main(), a, choice);
    PTC_ASSIGN_OR_RETURN(Measured m, Measure(*copy->main(), lo));
    *res = r;
    res->recomputed_nodes = cloned;
    res->changed = cloned > 0;
    res->added_flops = 0;
    res->recomputed_segments = 0;
    for (size_t k = 0; k < choice.size(); ++k) {
      if (choice[k] == kKeep) continue;
      res->added_flops += a.segments[k].options[choice[k]].flops;
      res->recomputed_segments += !a.segments[k].options[choice[k]].nodes.empty();
    }
    res->arena_after = m.arena;
    res->peak_after = m.peak;
    *out = std::move(copy);
    return m;
  };

  std::vector<int> choice;
  std::unique_ptr<ir::Module> result;
  RematResult res;
  if (!budgeted) {
    choice.assign(a.segments.size(), kFull);
    PTC_RETURN_IF_ERROR(try_choice(choice, &result, &res).status());
  } else {
    // The DP's cost is non-decreasing in the required saving; the measured arena is (almost)
    // non-increasing in it. Find the smallest required saving whose DP plan fits the budget:
    // first the modelled need, then a bisection between it and the saving of the most
    // aggressive plan. The cheapest fitting plan seen wins.
    int64_t need = before.arena - options.budget;
    int64_t max_saving = 0;
    for (const Segment& s : a.segments) max_saving += std::max<int64_t>(0, s.options[kFull].saving);
    bool ok = false;
    double best_flops = 0;
    std::unique_ptr<ir::Module> best;
    RematResult best_res;
    auto attempt = [&](int64_t n) -> absl::StatusOr<bool> {
      std::vector<int> c = Solve(a, n);
      std::unique_ptr<ir::Module> m_out;
      RematResult m_res;
      PTC_ASSIGN_OR_RETURN(Measured m, try_choice(c, &m_out, &m_res));
      if (m.arena > options.budget) return false;
      if (!ok || m_res.added_flops < best_flops) {
        ok = true;
        best_flops = m_res.added_flops;
        best = std::move(m_out);
        best_res = m_res;
      }
      return true;
    };
    PTC_ASSIGN_OR_RETURN(bool fits, attempt(need));
    if (!fits && max_saving > need) {
      int64_t lo = need, hi = max_saving;
      PTC_ASSIGN_OR_RETURN(bool hi_fits, attempt(hi));
      for (int round = 0; hi_fits && round < 12 && hi - lo > 4096; ++round) {
        int64_t mid = lo + (hi - lo) / 2;
        PTC_ASSIGN_OR_RETURN(bool f, attempt(mid));
        if (f) {
          hi = mid;
        } else {
          lo = mid;
        }
      }
    }
    if (ok) {
      result = std::move(best);
      res = best_res;
    }
    if (!ok) {
      // The most aggressive plan, for the error message.
      std::vector<int> full(a.segments.size(), kFull);
      PTC_ASSIGN_OR_RETURN(Measured m, try_choice(full, &result, &res));
      if (m.arena > options.budget) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "memory budget ", FormatBytes(options.budget), " (", options.budget,
            " bytes) is infeasible for @", f->name(), ": the minimum feasible budget is ",
            FormatBytes(m.arena), " (", m.arena, " bytes, arena with every block recomputed; ",
            "without remat ", FormatBytes(before.arena), "); largest buffers live at the peak:",
            LargestAtPeak(*result->main(), lo, 6),
            "\nraise --mem-budget to at least ", m.arena,
            " bytes, or lower the batch size / sequence length"));
      }
    }
  }
  // Move the rewritten function into `module`.
  module = std::move(*result);
  return res;
}

class RematPass : public Pass {
 public:
  explicit RematPass(RematOptions options) : options_(std::move(options)) {}
  std::string_view name() const override { return "remat"; }
  absl::StatusOr<bool> Run(ir::Module& module) override {
    PTC_ASSIGN_OR_RETURN(RematResult r, Rematerialize(module, options_));
    Count("segments", r.segments);
    if (!r.changed) {
      Count(r.segments == 0 ? "declined.no-segments" : "declined.fits-or-off");
      return false;
    }
    Count("recomputed.segments", r.recomputed_segments);
    Count("recomputed.nodes", r.recomputed_nodes);
    Count("added.mflops", static_cast<int64_t>(r.added_flops / 1e6));
    Count("arena.before.kib", r.arena_before / 1024);
    Count("arena.after.kib", r.arena_after / 1024);
    return true;
  }

 private:
  RematOptions options_;
};

}  // namespace

absl::StatusOr<RematResult> Rematerialize(ir::Module& module, const RematOptions& options) {
  return RunRemat(module, options);
}

absl::StatusOr<std::vector<SweepPoint>> RematSweep(const ir::Module& module,
                                                   const RematOptions& options, int points) {
  std::vector<SweepPoint> out;
  RematOptions full = options;
  full.mode = "per-block";
  auto copy = module.Clone();
  PTC_ASSIGN_OR_RETURN(RematResult most, Rematerialize(*copy, full));
  int64_t hi = most.arena_before, lo = most.arena_after;
  points = std::max(points, 2);
  for (int i = 0; i < points; ++i) {
    int64_t budget = hi - (hi - lo) * i / (points - 1);
    RematOptions o = options;
    o.mode = "auto";
    o.budget = budget;
    auto c = module.Clone();
    absl::StatusOr<RematResult> r = Rematerialize(*c, o);
    if (!r.ok()) continue;  // below what the DP family reaches at this point
    out.push_back({budget, *r});
  }
  return out;
}

std::unique_ptr<Pass> CreateRematPass(RematOptions options) {
  return std::make_unique<RematPass>(std::move(options));
}

}  // namespace ptc::passes
