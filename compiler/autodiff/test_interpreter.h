// Test helper: runs a function node by node with ptc::cpu::EvaluateNode (the CPU kernels),
// independent of the runtime. assign nodes are collected, not applied (training.h contract).
#ifndef PTC_COMPILER_AUTODIFF_TEST_INTERPRETER_H_
#define PTC_COMPILER_AUTODIFF_TEST_INTERPRETER_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "codegen/cpu/kernel.h"
#include "compiler/ir/ir.h"
#include "compiler/support/status.h"

namespace ptc::autodiff::testing {

struct RunResult {
  std::vector<ir::Tensor> results;
  std::vector<std::pair<std::string, ir::Tensor>> assigns;  // (target param, new value)
};

// `params` by parameter name; missing ones are taken from module->tensors() when given, and
// "state" parameters without a tensor start at zero (as in the executors).
inline absl::StatusOr<RunResult> Interpret(const ir::Function& f,
                                           const std::map<std::string, ir::Tensor>& params,
                                           const ir::Module* module = nullptr) {
  std::map<const ir::Value*, ir::Tensor> env;
  for (const ir::Value* p : f.params()) {
    auto it = params.find(p->name());
    if (it == params.end() && module != nullptr) {
      auto mt = module->tensors().find(p->name());
      if (mt != module->tensors().end()) {
        env[p] = mt->second;
        continue;
      }
    }
    if (it == params.end() && p->flags().count("state")) {
      env[p] = ir::Tensor(p->type().dtype, p->type().shape);  // as the executors: state starts at 0
      continue;
    }
    if (it == params.end()) return absl::NotFoundError(absl::StrCat("no value for %", p->name()));
    env[p] = it->second;
  }
  RunResult out;
  for (const auto& n : f.nodes()) {
    std::vector<ir::Tensor> ins;
    for (const ir::Value* v : n->inputs()) ins.push_back(env.at(v));
    if (n->op() == "assign") {
      out.assigns.emplace_back(n->input(0)->name(), ins[1]);
      continue;
    }
    if (n->op() == "constant" && n->has_attr("ref")) {
      PTC_ASSIGN_OR_RETURN(std::string ref, n->GetString("ref"));
      if (module == nullptr || !module->tensors().count(ref)) {
        return absl::NotFoundError(absl::StrCat("no tensor ", ref));
      }
      env[n->output(0)] = module->tensors().at(ref);
      continue;
    }
    PTC_ASSIGN_OR_RETURN(std::vector<ir::Tensor> outs, cpu::EvaluateNode(*n, ins));
    for (size_t i = 0; i < outs.size(); ++i) env[n->output(i)] = std::move(outs[i]);
  }
  for (const ir::Value* r : f.results()) out.results.push_back(env.at(r));
  return out;
}

}  // namespace ptc::autodiff::testing

#endif  // PTC_COMPILER_AUTODIFF_TEST_INTERPRETER_H_
