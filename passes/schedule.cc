// schedule: move pure nodes down to just before their first reader when that allocates their
// output later without keeping any input alive longer ("sink"), e.g. a transpose of a saved
// activation made in the forward for the backward, a broadcast of a weight, or a recomputed
// value. Every move can only shorten a lifetime, so the peak never grows; nodes are visited in
// reverse schedule order and ties keep the original order, so the result is deterministic.
//
// Preconditions: the function verifies. Runs after remat, before plan-memory. Impure nodes
// (dropout, assign) and nodes producing function results never move.
//
//   %t = transpose(%w) : f32[256,768]      %a = exp(%x) : f32[4]
//   %a = exp(%x) : f32[4]              ->  %t = transpose(%w) : f32[256,768]
//   %y = matmul(%a, %t)                    %y = matmul(%a, %t)
#include "passes/schedule.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "compiler/ir/ops.h"
#include "compiler/support/status.h"

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

class SchedulePass : public Pass {
 public:
  std::string_view name() const override { return "schedule"; }
  absl::StatusOr<bool> Run(ir::Module& module) override {
    bool changed = false;
    for (const auto& fn : module.functions()) {
      PTC_ASSIGN_OR_RETURN(bool c, RunOn(*fn));
      changed |= c;
    }
    return changed;
  }

 private:
  absl::StatusOr<bool> RunOn(ir::Function& f) {
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
    if (moved == 0) return false;
    PTC_RETURN_IF_ERROR(ApplyOrder(f, order));
    return true;
  }
};

}  // namespace

std::unique_ptr<Pass> CreateSchedulePass() { return std::make_unique<SchedulePass>(); }

}  // namespace ptc::passes
