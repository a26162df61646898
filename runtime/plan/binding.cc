#include "runtime/plan/binding.h"

#include "absl/strings/str_cat.h"

namespace ptc::plan {

absl::Status CheckInputs(const std::vector<const ir::Value*>& input_params,
                         const std::map<std::string, ir::Tensor>& inputs) {
  for (const ir::Value* p : input_params) {
    auto it = inputs.find(p->name());
    if (it == inputs.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("missing input '", p->name(), "' (", p->type().ToString(), ")"));
    }
    if (it->second.type() != p->type()) {
      return absl::InvalidArgumentError(absl::StrCat("input '", p->name(), "' is ",
                                                     it->second.type().ToString(),
                                                     " but the plan expects ",
                                                     p->type().ToString()));
    }
  }
  for (const auto& [name, t] : inputs) {
    bool known = false;
    for (const ir::Value* p : input_params) known |= p->name() == name;
    if (!known) {
      return absl::InvalidArgumentError(absl::StrCat("the plan has no input named '", name, "'"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<const ir::Value*> FindStateParam(const std::vector<const ir::Value*>& state_params,
                                                const std::string& function,
                                                const std::string& name, const ir::Tensor& t) {
  const ir::Value* p = nullptr;
  for (const ir::Value* q : state_params) {
    if (q->name() == name) p = q;
  }
  if (p == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "state tensor '", name, "' is not a \"param\" or \"state\" parameter of @", function));
  }
  if (t.type() != p->type()) {
    return absl::InvalidArgumentError(absl::StrCat("state tensor '", name, "' is ",
                                                   t.type().ToString(), " but @", function,
                                                   " expects ", p->type().ToString()));
  }
  return p;
}

}  // namespace ptc::plan
