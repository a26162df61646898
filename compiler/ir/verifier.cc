// IR verifier (see verifier.h). Reports the first problem found, naming the function, the node
// (Describe()) and the types involved.
//
// Weights: a module that carries tensors (Module::tensors() non-empty: imported models,
// compiled plans) must have a tensor of the same type for every {param} parameter and for
// every `constant {ref=...}`. A module without any tensors (IR parsed from text, pass tests)
// is checked for structure and types only: its ref constants keep their declared types.
#include "compiler/ir/verifier.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "compiler/ir/op_util.h"
#include "compiler/ir/ops.h"
#include "compiler/support/status.h"

namespace ptc::ir {
namespace {

absl::Status Fail(const Function& f, std::string msg) {
  return absl::FailedPreconditionError(
      absl::StrCat("verify: function @", f.name(), ": ", msg));
}

std::string TypesStr(const std::vector<TensorType>& types) {
  std::string s = "(";
  for (size_t i = 0; i < types.size(); ++i) absl::StrAppend(&s, i ? ", " : "", types[i].ToString());
  return s + ")";
}

absl::Status CheckType(const Function& f, const TensorType& t, std::string_view what) {
  if (t.byte_size() < 0) {
    return Fail(f, absl::StrCat(std::string(what), " has an invalid shape ", t.ToString()));
  }
  return absl::OkStatus();
}

absl::Status VerifyFunction(const Module& m, const Function& f) {
  const bool has_tensors = !m.tensors().empty();
  std::set<const Value*> defined;
  std::set<std::string> names;
  auto define = [&](const Value* v, std::string_view what) -> absl::Status {
    if (v->name().empty()) return Fail(f, absl::StrCat(std::string(what), " has an empty name"));
    if (!names.insert(v->name()).second) {
      return Fail(f, absl::StrCat("value name %", v->name(), " is defined more than once"));
    }
    defined.insert(v);
    return absl::OkStatus();
  };

  for (const Value* p : f.params()) {
    if (p == nullptr) return Fail(f, "null parameter");
    PTC_RETURN_IF_ERROR(define(p, "a parameter"));
    PTC_RETURN_IF_ERROR(CheckType(f, p->type(), absl::StrCat("parameter %", p->name())));
    if (p->producer() != nullptr) {
      return Fail(f, absl::StrCat("parameter %", p->name(), " has a producer node"));
    }
    if (p->is_param() && has_tensors) {
      auto it = m.tensors().find(p->name());
      if (it == m.tensors().end()) {
        return Fail(f, absl::StrCat("weight parameter %", p->name(), " ", p->type().ToString(),
                                    " has no tensor in the module"));
      }
      if (it->second.type() != p->type()) {
        return Fail(f, absl::StrCat("weight parameter %", p->name(), " is declared ",
                                    p->type().ToString(), " but its tensor is ",
                                    it->second.type().ToString()));
      }
    }
  }

  for (const auto& node_ptr : f.nodes()) {
    const Node& n = *node_ptr;
    const std::string where = n.Describe();
    for (size_t i = 0; i < n.num_inputs(); ++i) {
      const Value* in = n.input(i);
      if (in == nullptr) return Fail(f, absl::StrCat(where, ": input ", i, " is null"));
      if (!defined.count(in)) {
        return Fail(f, absl::StrCat(where, ": input ", i, " %", in->name(),
                                    " is not defined before this node in the schedule (SSA order)"));
      }
    }
    const OpDef* def = FindOp(n.op());
    if (def == nullptr) {
      return Fail(f, absl::StrCat(where, ": unknown op '", n.op(), "' (see compiler/ir/ops.h)"));
    }
    const int n_in = static_cast<int>(n.num_inputs()), n_out = static_cast<int>(n.num_outputs());
    if (n_in < def->min_inputs || (def->max_inputs >= 0 && n_in > def->max_inputs)) {
      return Fail(f, absl::StrCat(where, ": has ", n_in, " inputs; the op takes ",
                                  def->min_inputs, def->max_inputs < 0 ? " or more" : "",
                                  def->max_inputs > def->min_inputs
                                      ? absl::StrCat(" to ", def->max_inputs)
                                      : std::string()));
    }
    if (n_out < def->min_outputs || (def->max_outputs >= 0 && n_out > def->max_outputs)) {
      return Fail(f, absl::StrCat(where, ": has ", n_out, " outputs; the op has ",
                                  def->min_outputs, def->max_outputs < 0 ? " or more" : "",
                                  def->max_outputs > def->min_outputs
                                      ? absl::StrCat(" to ", def->max_outputs)
                                      : std::string()));
    }
    for (size_t i = 0; i < n.num_outputs(); ++i) {
      const Value* out = n.output(i);
      if (out == nullptr) return Fail(f, absl::StrCat(where, ": output ", i, " is null"));
      if (out->producer() != &n || out->output_index() != static_cast<int>(i)) {
        return Fail(f, absl::StrCat(where, ": output ", i, " %", out->name(),
                                    " does not point back to its node"));
      }
      PTC_RETURN_IF_ERROR(define(out, absl::StrCat(where, ": output ", i)));
      PTC_RETURN_IF_ERROR(CheckType(f, out->type(), absl::StrCat(where, ": output %", out->name())));
    }
    auto expected = InferNodeTypes(n, &m);
    if (!expected.ok()) {
      return Fail(f, absl::StrCat(where, ": ", expected.status().message(), "; inputs ",
                                  TypesStr(InputTypes(n))));
    }
    const std::vector<TensorType> actual = OutputTypes(n);
    if (*expected != actual) {
      return Fail(f, absl::StrCat(where, ": output types ", TypesStr(actual),
                                  " differ from the inferred types ", TypesStr(*expected),
                                  " for inputs ", TypesStr(InputTypes(n))));
    }
  }

  for (size_t i = 0; i < f.results().size(); ++i) {
    const Value* r = f.results()[i];
    if (r == nullptr) return Fail(f, absl::StrCat("result ", i, " is null"));
    if (!defined.count(r)) {
      return Fail(f, absl::StrCat("result ", i, " %", r->name(), " is not defined in the function"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Verify(const Module& module) {
  std::set<std::string> fnames;
  for (const auto& f : module.functions()) {
    if (!fnames.insert(f->name()).second) {
      return absl::FailedPreconditionError(
          absl::StrCat("verify: function @", f->name(), " is defined more than once"));
    }
    PTC_RETURN_IF_ERROR(VerifyFunction(module, *f));
  }
  return absl::OkStatus();
}

}  // namespace ptc::ir
