// Ops made by fusion and training passes. See ops_fused.h.
//
//   fused_elementwise(x0, x1, ...) {program=[...], constants=[...], shape=[...]}
//       One elementwise expression evaluated per output element (made by passes/
//       fuse_elementwise.cc; CPU kernel codegen/cpu/fused_elementwise.cc). All operands share
//       one float dtype and broadcast (numpy) to `shape`, the output shape. `program` is a
//       postfix (RPN) token list over a stack: "xI" pushes operand I, "cI" pushes constants[I],
//       a unary op (neg abs sqrt reciprocal exp log erf tanh sigmoid relu floor ceil identity
//       gelu gelu_tanh) pops one value, a binary op (add sub mul div pow max min) pops b then a
//       and pushes a OP b. The program leaves exactly one value. `constants` may be absent.
//   Example (bias add + exact gelu):
//       %y = fused_elementwise(%h, %b) {program=["x0", "x1", "add", "gelu"], shape=[8,1024]}
//            : f32[8,1024]
#include "compiler/ir/ops_fused.h"

#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "compiler/ir/op_util.h"
#include "compiler/support/status.h"

namespace ptc::ir {
namespace {

constexpr int kMaxFusedProgram = 256;

int FusedTokenArity(std::string_view t) {
  for (std::string_view u : {"neg", "abs", "sqrt", "reciprocal", "exp", "log", "erf", "tanh",
                             "sigmoid", "relu", "floor", "ceil", "identity", "gelu",
                             "gelu_tanh"}) {
    if (t == u) return 1;
  }
  for (std::string_view b : {"add", "sub", "mul", "div", "pow", "max", "min"}) {
    if (t == b) return 2;
  }
  return -1;
}

absl::StatusOr<std::vector<TensorType>> InferFusedElementwise(
    const std::vector<TensorType>& inputs, const AttrMap& attrs, int num_outputs) {
  if (num_outputs != 1) return absl::InvalidArgumentError("fused_elementwise has one output");
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> shape, GetIntsAttr(attrs, "shape"));
  if (NumElements(shape) < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("attribute 'shape' ", ShapeToString(shape), " is not a valid shape"));
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].dtype != inputs[0].dtype) {
      return absl::InvalidArgumentError(absl::StrCat("operand ", i, " is ",
                                                     inputs[i].ToString(), " but operand 0 is ",
                                                     inputs[0].ToString(), "; dtypes must match"));
    }
    absl::StatusOr<Shape> b = BroadcastShapes(inputs[i].shape, shape);
    if (!b.ok() || *b != shape) {
      return absl::InvalidArgumentError(absl::StrCat("operand ", i, " ", inputs[i].ToString(),
                                                     " does not broadcast to shape ",
                                                     ShapeToString(shape)));
    }
  }
  if (!IsFloat(inputs[0].dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("operands must be floating point, got ", inputs[0].ToString()));
  }
  size_t num_constants = 0;
  if (auto it = attrs.find("constants"); it != attrs.end()) {
    if (const auto* c = std::get_if<std::vector<double>>(&it->second)) {
      num_constants = c->size();
    } else if (const auto* e = std::get_if<std::vector<int64_t>>(&it->second); !e || !e->empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "attribute 'constants' must be a list of floats, got ", std::string(AttrKindName(it->second))));
    }
  }
  auto it = attrs.find("program");
  const auto* program =
      it == attrs.end() ? nullptr : std::get_if<std::vector<std::string>>(&it->second);
  if (program == nullptr || program->empty() || program->size() > kMaxFusedProgram) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attribute 'program' must be a non-empty list of at most ", kMaxFusedProgram,
        " strings"));
  }
  int depth = 0;
  for (const std::string& t : *program) {
    int pops = 0;
    if (t.size() >= 2 && (t[0] == 'x' || t[0] == 'c')) {
      uint32_t idx = 0;
      if (!absl::SimpleAtoi(t.substr(1), &idx) ||
          idx >= (t[0] == 'x' ? inputs.size() : num_constants)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "program token '", t, "' refers to a missing ",
            t[0] == 'x' ? "operand" : "constant", " (", inputs.size(), " operands, ",
            num_constants, " constants)"));
      }
    } else {
      pops = FusedTokenArity(t);
      if (pops < 0) {
        return absl::InvalidArgumentError(absl::StrCat("unknown program token '", t, "'"));
      }
    }
    if (depth < pops) {
      return absl::InvalidArgumentError(
          absl::StrCat("program token '", t, "' pops ", pops, " values from a stack of ", depth));
    }
    depth = depth - pops + 1;
  }
  if (depth != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("program leaves ", depth, " values on the stack; it must leave one"));
  }
  return std::vector<TensorType>{TensorType{inputs[0].dtype, shape}};
}

}  // namespace

const std::vector<OpDef>& FusedOpDefs() {
  static const std::vector<OpDef>* defs = new std::vector<OpDef>{
      {.name = "fused_elementwise",
       .min_inputs = 1,
       .max_inputs = -1,
       .infer = InferFusedElementwise,
       .elementwise = true},
  };
  return *defs;
}

}  // namespace ptc::ir
