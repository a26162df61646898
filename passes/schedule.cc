// schedule: move pure nodes down to just before their first reader when that allocates their
// output later without keeping any input alive longer ("sink"), e.g. a transpose of a saved
// activation made in the forward for the backward, a broadcast of a weight, or a recomputed
// value; then move optimizer updates up to as soon as their gradient is final and the weight
// they write has no reader left ("hoist", HoistUpdates below): the gradient's buffer is freed
// there instead of at the end of the backward. Every move shortens lifetimes (bar the few bytes
// of the scalars an update waits for, which move up with it), so the peak does not grow; nodes
// are visited in a fixed order and ties keep the original order, so the result is
// deterministic. With a group window (CUDA plans), the hoisted updates then gather into runs
// ("group", GroupUpdates below) that the GPU launches as multi-tensor batches: the one move
// that lengthens lifetimes, each gradient's by at most the window.
//
// Preconditions: the function verifies. The driver runs it before remat and plan-memory
// (compiler/driver/driver.cc). Impure nodes (assign) never move; sinking leaves nodes
// producing function results in place.
//
//   %t = transpose(%w) : f32[256,768]      %a = exp(%x) : f32[4]
//   %a = exp(%x) : f32[4]              ->  %t = transpose(%w) : f32[256,768]
//   %y = matmul(%a, %t)                    %y = matmul(%a, %t)
#include "passes/schedule.h"

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "compiler/ir/ops.h"
#include "compiler/support/status.h"
#include "passes/memory_analysis.h"

namespace ptc::passes {

absl::Status ApplyOrder(ir::Function& f, const std::vector<ir::Node*>& order) {
  if (order.size() != f.nodes().size()) {
    return absl::InternalError("ApplyOrder: order is not a permutation of the nodes");
  }
  // Two rounds of cloning: first under temporary names, then (originals erased) under the
  // original names again.
  std::map<const ir::Value*, std::string> original_name;  // temporary clone -> name
  for (int round = 0; round < 2; ++round) {
    std::vector<ir::Node*> cur = order;
    if (round == 1) {
      cur.clear();
      for (const auto& n : f.nodes()) cur.push_back(n.get());
    }
    std::set<const ir::Node*> old(cur.begin(), cur.end());
    std::map<ir::Value*, ir::Value*> map;
    for (ir::Node* n : cur) {
      std::vector<ir::Value*> ins;
      for (ir::Value* in : n->inputs()) {
        auto it = map.find(in);
        ins.push_back(it == map.end() ? in : it->second);
      }
      std::vector<ir::TensorType> types;
      std::vector<std::string> names;
      for (const ir::Value* o : n->outputs()) {
        types.push_back(o->type());
        names.push_back(round == 0 ? absl::StrCat(o->name(), ".sched") : original_name.at(o));
      }
      ir::Node* c = f.AddNode(n->op(), ins, types, n->attrs(), n->loc(), names);
      for (size_t i = 0; i < n->num_outputs(); ++i) {
        c->output(i)->mutable_flags() = n->output(i)->flags();
        map[n->output(i)] = c->output(i);
        if (round == 0) original_name[c->output(i)] = n->output(i)->name();
      }
    }
    std::vector<ir::Value*> results = f.results();
    for (ir::Value*& r : results) {
      auto it = map.find(r);
      if (it != map.end()) r = it->second;
    }
    f.set_results(results);
    f.EraseNodesIf([&](const ir::Node& n) { return old.count(&n) > 0; });
  }
  return absl::OkStatus();
}

namespace {

class SchedulePass : public FunctionPass {
 public:
  SchedulePass(bool hoist_updates, int group_window)
      : hoist_updates_(hoist_updates), group_window_(group_window) {}
  std::string_view name() const override { return "schedule"; }
 private:
  absl::StatusOr<bool> RunOnFunction(ir::Module&, ir::Function& f) override {
    std::vector<ir::Node*> order;
    for (const auto& n : f.nodes()) order.push_back(n.get());
    std::set<const ir::Value*> results(f.results().begin(), f.results().end());
    auto uses = f.ComputeUses();
    int moved = 0;
    std::map<const ir::Node*, int> pos;
    auto reindex = [&] {
      for (size_t j = 0; j < order.size(); ++j) pos[order[j]] = static_cast<int>(j);
    };
    reindex();
    for (int i = static_cast<int>(order.size()) - 1; i >= 0; --i) {
      ir::Node* n = order[i];
      const ir::OpDef* def = ir::FindOp(n->op());
      if (def == nullptr || !def->pure || n->num_outputs() == 0 || n->op() == "constant") continue;
      int first_user = INT32_MAX;
      bool ok = true;
      for (const ir::Value* o : n->outputs()) {
        if (results.count(o)) ok = false;
        for (const auto& [u, idx] : uses[o]) first_user = std::min(first_user, pos.at(u));
      }
      if (!ok || first_user == INT32_MAX || first_user <= i + 1) continue;
      // Inputs must stay live until first_user anyway (read there or later), or not be arena
      // values (params, constants).
      for (const ir::Value* in : n->inputs()) {
        if (in->producer() == nullptr || in->producer()->op() == "constant") continue;
        int last = -1;
        for (const auto& [u, idx] : uses[in]) {
          if (u != n) last = std::max(last, pos.at(u));
        }
        if (results.count(in)) last = INT32_MAX;
        ok &= last >= first_user;
      }
      if (!ok) continue;
      order.erase(order.begin() + i);
      order.insert(order.begin() + (first_user - 1), n);
      reindex();
      ++moved;
    }
    Count("sunk", moved);
    std::vector<ir::Node*> hoisted_updates;
    const int hoisted =
        hoist_updates_ ? HoistUpdates(f, order, results, uses, &hoisted_updates) : 0;
    Count("hoisted", hoisted);
    const int grouped = group_window_ > 0 ? GroupUpdates(order, hoisted_updates) : 0;
    Count("grouped", grouped);
    if (moved == 0 && hoisted == 0 && grouped == 0) return false;
    PTC_RETURN_IF_ERROR(ApplyOrder(f, order));
    return true;
  }

  // Optimizer updates (adamw_update, sgd_update) move up to just after the last of: their
  // inputs' producers and every other reader of the values they update (so plan-memory still
  // writes them in place). A gradient whose last reader is its update is then freed as soon as
  // the gradient is final instead of when the backward ends: with gradients not kept as
  // results, the backward's peak no longer holds every gradient at once. Only updates whose
  // every output is the new value of its input, read by nothing but that input's `assign`
  // (the in-place case), and that free some arena input move; the scalar producers they wait
  // for (learning rate, step counter) move up first the same way. Data dependencies decide the
  // rest: with global-norm clipping every update waits for the norm, i.e. for every gradient.
  int HoistUpdates(const ir::Function& f, std::vector<ir::Node*>& order,
                   const std::set<const ir::Value*>& results,
                   Uses& uses, std::vector<ir::Node*>* moved_updates) {
    std::map<const ir::Node*, int> pos;
    auto reindex = [&] {
      for (size_t j = 0; j < order.size(); ++j) pos[order[j]] = static_cast<int>(j);
    };
    reindex();
    int hoisted = 0;  // nodes moved: updates and the scalars they wait for
    auto move_up = [&](ir::Node* n, int to) {
      const int from = pos.at(n);
      if (to >= from) return false;
      order.erase(order.begin() + from);
      order.insert(order.begin() + to, n);
      reindex();
      return true;
    };
    auto after_inputs = [&](const ir::Node* n) {
      int e = 0;
      for (const ir::Value* in : n->inputs()) {
        if (in->producer() != nullptr) e = std::max(e, pos.at(in->producer()) + 1);
      }
      return e;
    };
    // Pure nodes with scalar outputs only (lr_schedule, the step counter, loss scale logic;
    // a scalar result lives to the end anyway).
    std::function<void(ir::Node*)> hoist_scalar = [&](ir::Node* n) {
      const ir::OpDef* def = ir::FindOp(n->op());
      if (def == nullptr || !def->pure || n->num_outputs() == 0) return;
      for (const ir::Value* o : n->outputs()) {
        if (o->type().num_elements() > 1) return;
      }
      for (ir::Value* in : n->inputs()) {
        if (in->producer() != nullptr) hoist_scalar(in->producer());
      }
      hoisted += move_up(n, after_inputs(n)) ? 1 : 0;
    };
    std::vector<ir::Node*> updates;
    for (ir::Node* n : order) {
      if (!UpdatePairs(*n).empty()) updates.push_back(n);
    }
    for (ir::Node* n : updates) {
      const auto pairs = UpdatePairs(*n);
      bool in_place = pairs.size() == n->num_outputs();
      for (auto [o, in] : pairs) in_place &= IsAssignedBack(f, *n, o, in, uses);
      bool frees = false;  // some arena tensor (not a scalar) is last read here
      for (const ir::Value* in : n->inputs()) {
        if (in->producer() == nullptr || in->producer()->op() == "constant" || results.count(in) ||
            in->type().num_elements() <= 1) {
          continue;
        }
        bool last = true;
        for (const auto& [u, idx] : uses[in]) last &= u == n || pos.at(u) < pos.at(n);
        frees |= last;
      }
      if (!in_place || !frees) continue;
      for (ir::Value* in : n->inputs()) {
        if (in->producer() != nullptr) hoist_scalar(in->producer());
      }
      int to = after_inputs(n);
      for (auto [o, in] : pairs) {
        for (const auto& [u, idx] : uses[n->input(in)]) {
          if (u != n && u->op() != "assign") to = std::max(to, pos.at(u) + 1);
        }
      }
      hoisted += move_up(n, to) ? 1 : 0;
      moved_updates->push_back(n);
    }
    return hoisted;
  }

  // Hoisted updates are grouped in order, each group spanning at most group_window_ nodes from
  // its first member, and every member moves down to sit right before the group's last: a run
  // of back-to-back updates, which the CUDA executor launches as multi-tensor
  // batches (DeviceKernel::BatchKey). Moving an update later is always legal here (its inputs
  // are before it, its outputs are read only by the assigns at the end) and keeps each
  // gradient alive at most group_window_ nodes longer. Returns the updates moved.
  int GroupUpdates(std::vector<ir::Node*>& order, const std::vector<ir::Node*>& updates) {
    std::map<const ir::Node*, int> pos;
    for (size_t j = 0; j < order.size(); ++j) pos[order[j]] = static_cast<int>(j);
    std::vector<ir::Node*> sorted = updates;
    std::sort(sorted.begin(), sorted.end(),
              [&](const ir::Node* a, const ir::Node* b) { return pos.at(a) < pos.at(b); });
    // A group also ends at an impure node (an assign: it may read what an update writes).
    std::vector<int> impure_before(order.size() + 1, 0);
    for (size_t j = 0; j < order.size(); ++j) {
      const ir::OpDef* def = ir::FindOp(order[j]->op());
      impure_before[j + 1] = impure_before[j] + (def == nullptr || !def->pure ? 1 : 0);
    }
    std::vector<std::vector<ir::Node*>> groups;
    for (ir::Node* n : sorted) {
      if (groups.empty() || pos.at(n) - pos.at(groups.back().front()) > group_window_ ||
          impure_before[pos.at(n)] != impure_before[pos.at(groups.back().back()) + 1]) {
        groups.emplace_back();
      }
      groups.back().push_back(n);
    }
    int moved = 0;
    for (const auto& g : groups) {
      const int span = pos.at(g.back()) - pos.at(g.front());
      if (span == static_cast<int>(g.size()) - 1) continue;  // already back to back
      moved += static_cast<int>(g.size()) - 1;
      std::set<const ir::Node*> members(g.begin(), g.end() - 1);
      std::vector<ir::Node*> next;
      next.reserve(order.size());
      for (ir::Node* n : order) {
        if (members.count(n)) continue;
        if (n == g.back()) next.insert(next.end(), g.begin(), g.end() - 1);
        next.push_back(n);
      }
      order = std::move(next);
      for (size_t j = 0; j < order.size(); ++j) pos[order[j]] = static_cast<int>(j);
    }
    return moved;
  }

  bool hoist_updates_;
  int group_window_;
};

}  // namespace

std::unique_ptr<Pass> CreateSchedulePass(bool hoist_updates, int group_window) {
  return std::make_unique<SchedulePass>(hoist_updates, group_window);
}

}  // namespace ptc::passes
