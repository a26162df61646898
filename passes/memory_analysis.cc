// Memory analyses: phases, cost model, liveness (see memory_analysis.h).
#include "passes/memory_analysis.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "compiler/ir/ops_fused.h"
#include "compiler/ir/ops.h"
#include "compiler/support/status.h"

namespace ptc::passes {
namespace {

int64_t AlignUp(int64_t x, int64_t a) { return (x + a - 1) / a * a; }

bool IsOptimizerOp(std::string_view op) {
  return op == "adamw_update" || op == "sgd_update" || op == "lr_schedule" || op == "assign";
}

}  // namespace

std::vector<std::pair<int, int>> UpdatePairs(const ir::Node& n) {
  if (n.op() == "adamw_update") return {{0, 0}, {1, 2}, {2, 3}};
  if (n.op() == "sgd_update") {
    if (n.num_outputs() == 2 && n.num_inputs() == 4) return {{0, 0}, {1, 3}};
    return {{0, 0}};
  }
  return {};
}

const ir::Value* AssignedBackTo(const ir::Function& f, const ir::Value* value,
                                const Uses& uses) {
  for (const ir::Value* r : f.results()) {
    if (r == value) return nullptr;
  }
  auto it = uses.find(value);
  if (it == uses.end() || it->second.size() != 1) return nullptr;
  const auto& [user, idx] = it->second[0];
  if (user->op() != "assign" || idx != 1 || user->input(0)->producer() != nullptr) return nullptr;
  return user->input(0);
}

bool IsAssignedBack(const ir::Function& f, const ir::Node& n, int o, int in, const Uses& uses) {
  if (o >= static_cast<int>(n.num_outputs()) || in >= static_cast<int>(n.num_inputs())) {
    return false;
  }
  return AssignedBackTo(f, n.output(o), uses) == n.input(in);
}

std::string_view PhaseName(Phase phase) {
  switch (phase) {
    case Phase::kForward: return "forward";
    case Phase::kBackward: return "backward";
    case Phase::kOptimizer: return "optimizer";
  }
  return "?";
}

std::string_view CategoryName(Category c) {
  switch (c) {
    case Category::kParam: return "params";
    case Category::kOptimizerState: return "optimizer state";
    case Category::kActivation: return "activations";
    case Category::kGradient: return "gradients";
    case Category::kOptimizer: return "optimizer outputs";
    case Category::kWorkspace: return "workspace";
  }
  return "?";
}

bool IsRecomputed(const ir::Node& node) {
  return node.num_outputs() > 0 && absl::StrContains(node.output(0)->name(), ".remat");
}

std::vector<Phase> ClassifyPhases(const ir::Function& f) {
  const auto& nodes = f.nodes();
  std::vector<Phase> phase(nodes.size(), Phase::kBackward);
  bool training = false;
  for (const auto& n : nodes) training |= n->op() == "assign";
  if (!training || f.results().empty()) {
    std::fill(phase.begin(), phase.end(), Phase::kForward);
    return phase;
  }
  std::map<const ir::Node*, int> index;
  for (size_t i = 0; i < nodes.size(); ++i) index[nodes[i].get()] = static_cast<int>(i);
  // Forward: ancestors of the loss (result 0). Recomputed clones are forward work placed in
  // the backward phase: they count as backward (their bytes live there).
  std::vector<const ir::Value*> stack = {f.results()[0]};
  std::set<const ir::Node*> forward;
  while (!stack.empty()) {
    const ir::Value* v = stack.back();
    stack.pop_back();
    const ir::Node* p = v->producer();
    if (p == nullptr || !forward.insert(p).second) continue;
    for (const ir::Value* in : p->inputs()) stack.push_back(in);
  }
  // Optimizer: optimizer ops, and nodes reading state or an optimizer value.
  std::set<const ir::Value*> opt_values;
  for (const ir::Value* p : f.params()) {
    if (p->flags().count("state")) opt_values.insert(p);
  }
  for (size_t i = 0; i < nodes.size(); ++i) {
    const ir::Node& n = *nodes[i];
    if (forward.count(&n)) {
      phase[i] = Phase::kForward;
      continue;
    }
    bool opt = IsOptimizerOp(n.op());
    for (const ir::Value* in : n.inputs()) opt |= opt_values.count(in) > 0;
    if (opt) {
      phase[i] = Phase::kOptimizer;
      for (const ir::Value* o : n.outputs()) opt_values.insert(o);
    }
  }
  return phase;
}

OpCost EstimateCost(const ir::Node& n) {
  OpCost c;
  // Views (the planner aliases their output to the input) and constants move nothing.
  if (n.op() == "reshape" || n.op() == "identity" || n.op() == "constant") return c;
  // Each distinct operand once (attention's packed q, k, v are one tensor read once).
  for (size_t i = 0; i < n.num_inputs(); ++i) {
    const ir::Value* v = n.input(i);
    bool seen = false;
    for (size_t j = 0; j < i; ++j) seen |= n.input(j) == v;
    if (!seen) c.bytes += std::max<int64_t>(0, v->type().byte_size());
  }
  int64_t out_elems = 0;
  for (const ir::Value* v : n.outputs()) {
    c.bytes += std::max<int64_t>(0, v->type().byte_size());
    out_elems += std::max<int64_t>(0, v->type().num_elements());
  }
  const std::string& op = n.op();
  if (op == "matmul" && n.num_inputs() == 2) {
    const ir::Shape& a = n.input(0)->type().shape;
    int64_t k = a.empty() ? 1 : a.back();
    c.flops = 2.0 * static_cast<double>(out_elems) * static_cast<double>(k);
  } else if (op == "fused_matmul" && n.num_inputs() >= 2) {
    // matmul(x, w or w^T) [+ bias] [activation]: K is x's last dim (a second output, the
    // activation's input, is written by the same epilogue: bytes, no FLOPs).
    const ir::Shape& a = n.input(0)->type().shape;
    int64_t k = a.empty() ? 1 : a.back();
    const double y = static_cast<double>(std::max<int64_t>(0, n.output(0)->type().num_elements()));
    c.flops = 2.0 * y * static_cast<double>(k) + 8.0 * y;
  } else if ((op == "attention" && n.num_inputs() >= 3) ||
             (op == "attention_grad" && n.num_inputs() >= 4)) {
    // q k^T and p v over B*H*Tq*Tk scores, the open ones of a causal node (+ the softmax);
    // the gradient recomputes the scores and does four more products of the same size.
    const int first = op == "attention" ? 0 : 1;
    const int trailing = op == "attention_grad" && n.GetInt("saved_stats", 0).value_or(0) ? 2 : 0;
    absl::StatusOr<ir::AttentionProblem> p = ir::DescribeAttention(n, first, trailing);
    if (p.ok()) {
      // Causal (causal=1): only the open scores are computed (key j <= t + tk - tq).
      double open = static_cast<double>(p->tq) * p->tk;
      if (p->causal) {
        open = 0;
        for (int64_t t = 0; t < p->tq; ++t) {
          open += static_cast<double>(std::clamp<int64_t>(t + p->tk - p->tq + 1, 0, p->tk));
        }
      }
      const double scores = static_cast<double>(p->b) * p->h * open;
      c.flops = (op == "attention" ? 1.0 : 2.5) * 2.0 * scores * static_cast<double>(p->d + p->dv) +
                5.0 * scores;
    }
  } else if (op == "linear_ce_loss" && n.num_inputs() >= 3) {
    // x [N, D] times the [D, V] weight; with the gradient outputs two more products.
    const ir::Shape& x = n.input(0)->type().shape;
    const ir::Shape& w = n.input(1)->type().shape;
    if (x.size() == 2 && w.size() == 2) {
      const double prod = 2.0 * static_cast<double>(x[0]) * static_cast<double>(w[0]) *
                          static_cast<double>(w[1]);
      c.flops = prod * (n.num_outputs() >= 3 ? 3.0 : 1.0) +
                8.0 * static_cast<double>(x[0]) * static_cast<double>(w[0] * w[1] / x[1]);
    }
  } else if ((op == "gemm" || op == "gemm_bgrad" || op == "gemm_gelu_grad") &&
             n.num_inputs() >= 2) {
    // gemm_bgrad: the product plus one add per element of b for the bias gradient;
    // gemm_gelu_grad: plus gelu' (as gelu_grad) per output element.
    const ir::Shape& a = n.input(0)->type().shape;
    int64_t trans_a = n.GetInt("trans_a", 0).value_or(0);
    int64_t k = a.size() == 2 ? (trans_a ? a[0] : a[1]) : 1;
    auto elems = [](const ir::Value* v) {
      return static_cast<double>(std::max<int64_t>(0, v->type().num_elements()));
    };
    c.flops = 2.0 * elems(n.output(0)) * static_cast<double>(k);
    if (op == "gemm_bgrad") {
      c.flops += elems(n.input(n.GetString("bias_of", "b").value_or("b") == "a" ? 0 : 1));
    }
    if (op == "gemm_gelu_grad") c.flops += 8.0 * elems(n.output(0));
  } else if (op == "reshape" || op == "identity" || op == "transpose" || op == "concat" ||
             op == "split" || op == "slice" || op == "gather" || op == "expand" ||
             op == "constant" || op == "cast" || op == "assign" || op == "trilu") {
    c.flops = 0;
  } else if (op == "softmax" || op == "log_softmax" || op == "layer_norm" ||
             op == "layer_norm_grad" || op == "softmax_ce_loss" || op == "softmax_ce_loss_grad") {
    int64_t in_elems = n.num_inputs() ? std::max<int64_t>(0, n.input(0)->type().num_elements()) : 0;
    c.flops = 5.0 * static_cast<double>(std::max(in_elems, out_elems));
  } else if (op == "fused_elementwise") {
    int tokens = 1;
    if (auto it = n.attrs().find("program"); it != n.attrs().end()) {
      if (auto* p = std::get_if<std::vector<std::string>>(&it->second)) {
        tokens = 0;
        for (const std::string& t : *p) tokens += !(absl::StartsWith(t, "x") || absl::StartsWith(t, "c"));
        tokens = std::max(tokens, 1);
      }
    }
    c.flops = static_cast<double>(out_elems) * tokens;
  } else if (op == "rotary") {  // per pair: four products and two sums
    c.flops = 3.0 * static_cast<double>(out_elems);
  } else if (op == "swiglu") {  // sigmoid and two products (the fused_elementwise it replaces)
    c.flops = 3.0 * static_cast<double>(out_elems);
  } else if (op == "swiglu_grad") {  // sigmoid and nine sums / products per (dg, du) pair
    c.flops = 5.0 * static_cast<double>(out_elems);
  } else if (op == "gelu" || op == "gelu_grad" || op == "erf" || op == "tanh" || op == "exp" ||
             op == "cos" || op == "sin") {
    c.flops = 8.0 * static_cast<double>(out_elems);
  } else if (absl::StartsWith(op, "reduce_")) {
    c.flops = n.num_inputs() ? static_cast<double>(n.input(0)->type().num_elements()) : 0;
  } else if (op == "adamw_update") {
    c.flops = 12.0 * static_cast<double>(n.input(0)->type().num_elements());
  } else {
    c.flops = static_cast<double>(out_elems);
  }
  return c;
}

absl::StatusOr<LivenessAnalysis> LivenessAnalysis::Run(const ir::Function& f,
                                                       const LivenessOptions& options) {
  LivenessAnalysis a;
  a.function_ = &f;
  a.phases_ = ClassifyPhases(f);
  const auto& nodes = f.nodes();
  const int32_t end = static_cast<int32_t>(nodes.size());
  for (const ir::Value* p : f.params()) {
    int64_t b = std::max<int64_t>(0, p->type().byte_size());
    if (p->flags().count("state")) {
      a.state_bytes_ += b;
    } else if (p->is_param()) {
      a.param_bytes_ += b;
    }
  }

  auto uses = f.ComputeUses();
  std::map<const ir::Node*, int32_t> index;
  for (int32_t i = 0; i < end; ++i) index[nodes[i].get()] = i;

  if (options.inplace_updates) {
    for (int32_t i = 0; i < end; ++i) {
      const ir::Node& n = *nodes[i];
      for (auto [o, in] : UpdatePairs(n)) {
        // Assigned back, and every other reader of the target runs before this update.
        if (!IsAssignedBack(f, n, o, in, uses)) continue;
        const ir::Value* target = n.input(in);
        bool ok = true;
        for (const auto& [user, idx] : uses[target]) {
          if (user == &n || user->op() == "assign") continue;
          ok &= index.at(user) < i;
        }
        if (ok) a.inplace_[n.output(o)] = target;
      }
      // An elementwise node whose output is only assigned back to a parameter that nothing
      // reads from here on (a gradient accumulator's where(apply, 0, acc + g)) writes into that
      // parameter's storage too, unless it reads the parameter's bytes itself (directly or
      // through a reshape / identity view).
      const ir::OpDef* def = ir::FindOp(n.op());
      if (def == nullptr || !def->elementwise || n.op() == "cast" || n.num_outputs() != 1) continue;
      const ir::Value* out = n.output(0);
      const ir::Value* target = AssignedBackTo(f, out, uses);
      if (target == nullptr || target->type() != out->type()) continue;
      bool ok = true;
      for (const auto& [user, idx] : uses[target]) {
        if (user->op() != "assign") ok &= index.at(user) < i;
      }
      for (const ir::Value* in : n.inputs()) {
        const ir::Value* root = in;
        while (root->producer() != nullptr &&
               (root->producer()->op() == "reshape" || root->producer()->op() == "identity")) {
          root = root->producer()->input(0);
        }
        ok &= root != target;
      }
      if (ok) a.inplace_[out] = target;
    }
  }

  auto is_arena_value = [&](const ir::Value* v) {
    return v->producer() != nullptr && v->producer()->op() != "constant" && !a.inplace_.count(v);
  };
  auto category_of = [&](int32_t i) {
    switch (a.phases_[i]) {
      case Phase::kForward: return Category::kActivation;
      case Phase::kBackward: return Category::kGradient;
      case Phase::kOptimizer: return Category::kOptimizer;
    }
    return Category::kActivation;
  };

  // Values that must outlive the schedule: results and the new values of `assign` (written
  // into their targets after the whole step has run).
  std::vector<const ir::Value*> live_to_end(f.results().begin(), f.results().end());
  for (const auto& n : nodes) {
    if (n->op() == "assign" && n->num_inputs() == 2) live_to_end.push_back(n->input(1));
  }
  const std::set<const ir::Value*> to_end(live_to_end.begin(), live_to_end.end());
  // Last reader of every value (for reuse_elementwise_inputs).
  std::map<const ir::Value*, int32_t> last_read;
  for (const auto& [v, vu] : uses) {
    for (const auto& [user, idx] : vu) {
      auto it = index.find(user);
      if (it != index.end()) last_read[v] = std::max(last_read[v], it->second);
    }
  }
  // The root buffer an elementwise node's output may take over: an input of its type whose
  // buffer (with every alias of it) is read for the last time here.
  auto donor_for = [&](const ir::Node& n, int32_t i) -> int {
    const ir::OpDef* def = ir::FindOp(n.op());
    // (cast: a same-type cast is a copy, which may not overlap itself)
    if (!options.reuse_elementwise_inputs || def == nullptr ||
        (!def->elementwise && def->inplace_input < 0) || n.op() == "cast" ||
        n.num_outputs() != 1 || to_end.count(n.output(0))) {
      return -1;
    }
    for (size_t k = 0; k < n.num_inputs(); ++k) {
      const ir::Value* in = n.input(k);
      if (in->type() != n.output(0)->type()) continue;
      if (!def->elementwise && static_cast<int>(k) != def->inplace_input) continue;
      auto it = a.buffer_of_.find(in);
      if (it == a.buffer_of_.end()) continue;
      const LiveBuffer& b = a.buffers_[it->second];
      if (b.value == nullptr) continue;
      bool dies = true;
      std::vector<const ir::Value*> members = b.aliases;
      members.push_back(b.value);
      for (const ir::Value* m : members) {
        auto lr = last_read.find(m);
        dies &= !to_end.count(m) && (lr == last_read.end() || lr->second <= i);
      }
      if (dies) return it->second;
    }
    return -1;
  };

  for (int32_t i = 0; i < end; ++i) {
    const ir::Node& n = *nodes[i];
    if (n.op() == "constant") continue;
    bool alias = options.alias_reshapes && (n.op() == "reshape" || n.op() == "identity") &&
                 n.num_inputs() == 1 && is_arena_value(n.input(0));
    const int donor = alias ? -1 : donor_for(n, i);
    for (const ir::Value* out : n.outputs()) {
      if (a.inplace_.count(out)) continue;
      if (alias || donor >= 0) {
        int root = alias ? a.buffer_of_.at(n.input(0)) : donor;
        a.buffer_of_[out] = root;
        a.buffers_[root].aliases.push_back(out);
        continue;
      }
      int64_t bytes = out->type().byte_size();
      if (bytes < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(n.Describe(), ": output size overflows: ", out->type().ToString()));
      }
      a.buffer_of_[out] = static_cast<int>(a.buffers_.size());
      LiveBuffer b;
      b.name = out->name();
      b.value = out;
      b.bytes = AlignUp(bytes, options.alignment);
      b.first = b.last = i;
      // Recomputed values are activations, wherever the schedule puts them.
      b.category = IsRecomputed(n) ? Category::kActivation : category_of(i);
      a.buffers_.push_back(std::move(b));
    }
    if (options.workspace_bytes) {
      PTC_ASSIGN_OR_RETURN(int64_t ws, options.workspace_bytes(n));
      if (ws > 0) {
        LiveBuffer b;
        b.name = absl::StrCat("ws@", i);
        b.bytes = AlignUp(ws, options.alignment);
        b.first = b.last = i;
        b.category = Category::kWorkspace;
        a.buffers_.push_back(std::move(b));
      }
    }
    for (const ir::Value* in : n.inputs()) {
      auto it = a.buffer_of_.find(in);
      if (it == a.buffer_of_.end()) continue;  // params, constants, in-place values
      LiveBuffer& b = a.buffers_[it->second];
      b.last = std::max(b.last, i);
    }
  }
  // Results and the new values of `assign` live to the end of the schedule.
  for (const ir::Value* r : live_to_end) {
    auto it = a.buffer_of_.find(r);
    if (it != a.buffer_of_.end()) a.buffers_[it->second].last = end;
  }

  a.live_.assign(end + 1, 0);
  for (const LiveBuffer& b : a.buffers_) {
    for (int32_t t = b.first; t <= b.last; ++t) a.live_[t] += b.bytes;
  }
  for (int32_t t = 0; t <= end; ++t) {
    if (a.live_[t] > a.peak_) {
      a.peak_ = a.live_[t];
      a.peak_index_ = t;
    }
  }
  return a;
}

int64_t LivenessAnalysis::PhasePeak(Phase phase) const {
  int64_t peak = 0;
  for (size_t t = 0; t < phases_.size(); ++t) {
    if (phases_[t] == phase) peak = std::max(peak, live_[t]);
  }
  return peak;
}

std::vector<int> LivenessAnalysis::LiveAt(int32_t t) const {
  std::vector<int> out;
  for (size_t i = 0; i < buffers_.size(); ++i) {
    if (buffers_[i].first <= t && t <= buffers_[i].last) out.push_back(static_cast<int>(i));
  }
  std::sort(out.begin(), out.end(), [&](int x, int y) {
    if (buffers_[x].bytes != buffers_[y].bytes) return buffers_[x].bytes > buffers_[y].bytes;
    return buffers_[x].name < buffers_[y].name;
  });
  return out;
}

std::map<Category, int64_t> LivenessAnalysis::BytesAtPeak() const {
  std::map<Category, int64_t> out;
  out[Category::kParam] = param_bytes_;
  out[Category::kOptimizerState] = state_bytes_;
  for (Category c : {Category::kActivation, Category::kGradient, Category::kOptimizer,
                     Category::kWorkspace}) {
    out[c] = 0;
  }
  for (int i : LiveAt(peak_index_)) out[buffers_[i].category] += buffers_[i].bytes;
  return out;
}

std::string LivenessAnalysis::ToString(int top) const {
  std::string s;
  const auto& nodes = function_->nodes();
  std::string where = "the end";
  if (peak_index_ < static_cast<int32_t>(nodes.size())) {
    const ir::Node& n = *nodes[peak_index_];
    where = absl::StrCat("node ", peak_index_, " (", n.op(),
                         n.num_outputs() ? absl::StrCat(" %", n.output(0)->name()) : "", ", ",
                         std::string(PhaseName(phases_[peak_index_])), ")");
  }
  absl::StrAppend(&s, "peak ", FormatBytes(peak_), " at ", where, "\n");
  for (Phase p : {Phase::kForward, Phase::kBackward, Phase::kOptimizer}) {
    absl::StrAppend(&s, "  ", std::string(PhaseName(p)), " peak ", FormatBytes(PhasePeak(p)), "\n");
  }
  int shown = 0;
  for (int i : LiveAt(peak_index_)) {
    if (shown++ >= top) break;
    const LiveBuffer& b = buffers_[i];
    std::string op = b.value && b.value->producer() ? b.value->producer()->op() : "workspace";
    absl::StrAppend(&s, "  ", FormatBytes(b.bytes), "  %", b.name, " = ", op, " [", b.first,
                    ", ", b.last, "] ", std::string(CategoryName(b.category)), "\n");
  }
  return s;
}

std::string FormatBytes(int64_t bytes) {
  double b = static_cast<double>(bytes);
  if (std::abs(b) >= 1024.0 * 1024 * 1024) return absl::StrFormat("%.2f GiB", b / (1 << 30));
  if (std::abs(b) >= 1024.0 * 1024) return absl::StrFormat("%.1f MiB", b / (1 << 20));
  if (std::abs(b) >= 1024.0) return absl::StrFormat("%.1f KiB", b / 1024);
  return absl::StrCat(bytes, " B");
}

absl::StatusOr<int64_t> ParseBytes(std::string_view text) {
  std::string t(absl::StripAsciiWhitespace(absl::string_view(text.data(), text.size())));
  size_t i = 0;
  while (i < t.size() && (absl::ascii_isdigit(t[i]) || t[i] == '.')) ++i;
  std::string num = t.substr(0, i), unit = absl::AsciiStrToLower(
                                        absl::StripAsciiWhitespace(t.substr(i)));
  double v = 0;
  if (num.empty() || !absl::SimpleAtod(num, &v) || v < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid byte size '", t, "': expected a number with an optional unit (2GiB, 512MiB, "
        "1.5GB, 4096)"));
  }
  static const std::map<std::string, double> kUnits = {
      {"", 1},          {"b", 1},       {"k", 1024},     {"kb", 1e3},    {"kib", 1024},
      {"m", 1 << 20},   {"mb", 1e6},    {"mib", 1 << 20}, {"g", 1 << 30}, {"gb", 1e9},
      {"gib", 1 << 30}, {"tb", 1e12},   {"tib", 1099511627776.0}};
  auto it = kUnits.find(unit);
  if (it == kUnits.end()) {
    return absl::InvalidArgumentError(absl::StrCat("invalid byte size '", t, "': unknown unit '",
                                                   unit, "' (use B, KiB, MiB, GiB, KB, MB, GB)"));
  }
  double bytes = v * it->second;
  if (bytes > 9.0e18) return absl::InvalidArgumentError(absl::StrCat("byte size '", t, "' too large"));
  return static_cast<int64_t>(std::llround(bytes));
}

}  // namespace ptc::passes
