// lower-fused: expands ptc's fused ops back into core ops that have standard ONNX forms, so
// that an optimized plan exports (`ptc dump PLAN --format onnx`) to a model ONNX Runtime and
// Netron open without ptc's "ai.ptc" domain.
//
// What: gelu -> x * 0.5 * (1 + erf(x / sqrt(2))) (tanh form for approximate="tanh");
// fused_elementwise -> its postfix program as one core op per token; fused_matmul -> transpose
// (trans_b) + matmul + add (bias) + activation; attention -> transposes (layout "bthd"),
// matmul(q, k^T), mul(scale), where(mask, -inf, s) or add(mask), softmax, matmul(p, v), with
// grouped-query k / v repeated per query head first (reshape, expand, reshape);
// gemm_bgrad -> gemm + reduce_sum (+ casts to its dtype / bias_dtype); gemm_gelu_grad -> gemm
// + gelu_grad; rotary -> slices, muls, sub, add and concat; swiglu -> sigmoid, mul, mul;
// swiglu_grad -> its sigmoid / mul / sub / add expression; a fused_matmul's second output
// (the activation's input) is the add (or matmul) before its activation; linear_ce_loss with
// its one output (a forward's, e.g. a training plan's @eval) -> transpose (trans_b) + matmul
// + add (bias) + cast to f32 + mul (scale) + its softcap + softmax_ce_loss (with its gradient
// outputs it is a training op and stays); attention's dropout -> a dropout node after the
// softmax; a fused_elementwise's "dropoutK" token -> a dropout node.
// Training ops (gather_grad, adamw_update, assign, ...) have no ONNX form and stay as they are.
//
// Preconditions: the module verifies. Runs only for export (it undoes the fusions, so the
// result is slower on ptc's own runtimes); numerically it computes the same functions.
//
//   %y = fused_matmul(%x, %w, %b) {activation="relu", trans_b=0} : f32[4,8]
// becomes
//   %m = matmul(%x, %w) : f32[4,8]
//   %a = add(%m, %b) : f32[4,8]
//   %y.0 = relu(%a) : f32[4,8]
#include <cmath>
#include <limits>
#include <set>

#include "absl/strings/str_cat.h"
#include "compiler/ir/ops.h"
#include "compiler/ir/ops_fused.h"
#include "compiler/support/status.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

// Emits core ops before `anchor`, inferring each output type.
class Emitter {
 public:
  Emitter(ir::Function& f, const ir::Node& anchor) : f_(f), anchor_(anchor) {}

  absl::StatusOr<ir::Value*> Op(const std::string& op, std::vector<ir::Value*> inputs,
                                ir::AttrMap attrs = {}) {
    std::vector<ir::TensorType> types;
    for (ir::Value* v : inputs) types.push_back(v->type());
    absl::StatusOr<std::vector<ir::TensorType>> out = ir::InferTypes(op, types, attrs);
    if (!out.ok()) {
      return absl::Status(out.status().code(), absl::StrCat("lowering ", anchor_.Describe(), ": ",
                                                            op, ": ", out.status().message()));
    }
    ir::Node* n = f_.AddNode(op, std::move(inputs), *out, std::move(attrs), anchor_.loc(),
                             {anchor_.output()->name()}, &anchor_);
    return n->output();
  }

  // A constant scalar of `dtype`: f32 / f64 directly; f16 / bf16 as an f32 constant and a
  // cast (the tensor's 2-byte element cannot take the float; fold-constants folds the cast).
  ir::Value* Scalar(ir::DType dtype, double v) {
    const bool f64 = dtype == ir::DType::kF64;
    ir::Tensor t(f64 ? dtype : ir::DType::kF32, {});
    if (f64) {
      *t.mutable_data_as<double>() = v;
    } else {
      *t.mutable_data_as<float>() = static_cast<float>(v);
    }
    ir::Value* c = f_.AddNode("constant", {}, {t.type()}, {{"value", t}}, anchor_.loc(), {"c"},
                              &anchor_)
                       ->output();
    if (f64 || dtype == ir::DType::kF32) return c;
    return f_.AddNode("cast", {c}, {ir::TensorType{dtype, {}}}, {{"to", dtype}}, anchor_.loc(),
                      {"c"}, &anchor_)
        ->output();
  }

  absl::StatusOr<ir::Value*> Unary(const std::string& op, ir::Value* x) {
    ir::DType dt = x->type().dtype;
    if (op == "gelu" || op == "gelu_tanh") {
      ir::Value* half = Scalar(dt, 0.5);
      ir::Value* one = Scalar(dt, 1.0);
      ir::Value* inner;
      if (op == "gelu") {
        PTC_ASSIGN_OR_RETURN(ir::Value* s, Op("mul", {x, Scalar(dt, M_SQRT1_2)}));
        PTC_ASSIGN_OR_RETURN(inner, Op("erf", {s}));
      } else {
        PTC_ASSIGN_OR_RETURN(ir::Value* x2, Op("mul", {x, x}));
        PTC_ASSIGN_OR_RETURN(ir::Value* x3, Op("mul", {x2, x}));
        PTC_ASSIGN_OR_RETURN(ir::Value* c, Op("mul", {x3, Scalar(dt, 0.044715)}));
        PTC_ASSIGN_OR_RETURN(ir::Value* u, Op("add", {x, c}));
        PTC_ASSIGN_OR_RETURN(ir::Value* k, Op("mul", {u, Scalar(dt, std::sqrt(2.0 / M_PI))}));
        PTC_ASSIGN_OR_RETURN(inner, Op("tanh", {k}));
      }
      PTC_ASSIGN_OR_RETURN(ir::Value* p, Op("add", {inner, one}));
      PTC_ASSIGN_OR_RETURN(ir::Value* h, Op("mul", {x, half}));
      return Op("mul", {h, p});
    }
    if (op == "identity") return x;
    return Op(op, {x});
  }

 private:
  ir::Function& f_;
  const ir::Node& anchor_;
};

absl::StatusOr<ir::Value*> LowerFusedElementwise(Emitter& e, const ir::Node& n) {
  PTC_ASSIGN_OR_RETURN(ir::FusedProgram program, ir::ParseFusedProgram(n));
  // With `dtype` (mixed operand dtypes) the program runs in f32 (f64): operands cast up, the
  // result cast to the output dtype.
  const bool mixed = n.has_attr("dtype");
  const ir::DType out_dt = n.output()->type().dtype;
  const ir::DType dt = !mixed ? out_dt : out_dt == ir::DType::kF64 ? out_dt : ir::DType::kF32;
  const ir::Shape& shape = n.output()->type().shape;
  std::vector<ir::Value*> stack;
  for (const ir::FusedToken& tok : program.tokens) {
    switch (tok.kind) {
      case ir::FusedToken::kOperand: {
        ir::Value* x = n.input(tok.index);
        if (x->type().dtype != dt) {
          PTC_ASSIGN_OR_RETURN(x, e.Op("cast", {x}, {{"to", dt}}));
        }
        stack.push_back(x);
        break;
      }
      case ir::FusedToken::kConstant:
        stack.push_back(e.Scalar(dt, program.constants[tok.index]));
        break;
      case ir::FusedToken::kDropout: {
        // A dropout node over the output's elements (its mask's index): the value broadcast
        // to the output's shape first.
        const ir::FusedDropout& d = program.dropouts[tok.index];
        ir::Value* x = stack.back();
        if (x->type().shape != shape) {
          PTC_ASSIGN_OR_RETURN(x, e.Op("expand", {x}, {{"shape", shape}}));
        }
        std::vector<ir::Value*> ins = {x};
        if (d.counter >= 0) ins.push_back(n.input(d.counter));
        PTC_ASSIGN_OR_RETURN(stack.back(),
                             e.Op("dropout", ins,
                                  {{"ratio", d.ratio}, {"seed", static_cast<int64_t>(d.seed)}}));
        break;
      }
      case ir::FusedToken::kOp:
        if (tok.arity == 2) {
          ir::Value* b = stack.back();
          stack.pop_back();
          PTC_ASSIGN_OR_RETURN(stack.back(), e.Op(tok.op, {stack.back(), b}));
        } else {
          PTC_ASSIGN_OR_RETURN(stack.back(), e.Unary(tok.op, stack.back()));
        }
        break;
    }
  }
  ir::Value* r = stack.back();
  if (r->type().shape != shape) {
    PTC_ASSIGN_OR_RETURN(r, e.Op("expand", {r}, {{"shape", shape}}));
  }
  if (r->type().dtype != out_dt) {
    PTC_ASSIGN_OR_RETURN(r, e.Op("cast", {r}, {{"to", out_dt}}));
  }
  return r;
}

// fused_matmul -> matmul (+ add bias) (+ activation) (+ add addend); with a second output,
// the activation's input is that output.
absl::StatusOr<std::vector<ir::Value*>> LowerFusedMatMul(Emitter& e, const ir::Node& n) {
  PTC_ASSIGN_OR_RETURN(int64_t trans_b, n.GetInt("trans_b", 0));
  PTC_ASSIGN_OR_RETURN(std::string act, n.GetString("activation", "none"));
  ir::Value* x = n.input(0);
  ir::Value* w = n.input(1);
  // {dtype=f32} of f16 / bf16 operands: the product of the widened operands (exact), in f32.
  const ir::DType out = n.output(0)->type().dtype;
  if (out != x->type().dtype) {
    PTC_ASSIGN_OR_RETURN(x, e.Op("cast", {x}, {{"to", out}}));
    PTC_ASSIGN_OR_RETURN(w, e.Op("cast", {w}, {{"to", out}}));
  }
  if (trans_b) {
    PTC_ASSIGN_OR_RETURN(w, e.Op("transpose", {w}, {{"perm", std::vector<int64_t>{1, 0}}}));
  }
  PTC_ASSIGN_OR_RETURN(ir::Value* y, e.Op("matmul", {x, w}));
  ir::Value* bias = ir::FusedMatMulBias(n);
  ir::Value* addend = ir::FusedMatMulAddend(n);
  if (bias != nullptr) {
    PTC_ASSIGN_OR_RETURN(y, e.Op("add", {y, bias}));
  }
  ir::Value* pre = y;
  if (act != "none") {
    PTC_ASSIGN_OR_RETURN(y, e.Unary(act, y));
  }
  if (addend != nullptr) {  // activation none
    PTC_ASSIGN_OR_RETURN(y, e.Op("add", {addend, y}));
  }
  if (n.num_outputs() == 2) return std::vector<ir::Value*>{y, pre};
  return std::vector<ir::Value*>{y};
}

// gemm_gelu_grad -> gemm and gelu_grad (the unfused backward it was made from).
absl::StatusOr<ir::Value*> LowerGemmGeluGrad(Emitter& e, const ir::Node& n) {
  ir::AttrMap attrs;
  if (n.GetInt("trans_a", 0).value_or(0) != 0) attrs["trans_a"] = int64_t{1};
  if (n.GetInt("trans_b", 0).value_or(0) != 0) attrs["trans_b"] = int64_t{1};
  PTC_ASSIGN_OR_RETURN(ir::Value* g, e.Op("gemm", {n.input(0), n.input(1)}, std::move(attrs)));
  PTC_ASSIGN_OR_RETURN(std::string approx, n.GetString("approximate", "none"));
  return e.Op("gelu_grad", {g, n.input(2)}, {{"approximate", approx}});
}

// gemm_bgrad -> gemm (dW) and reduce_sum over b's rows (db; a's with bias_of="a"), each cast to
// its {dtype} / {bias_dtype} when that differs from the operands'.
absl::StatusOr<std::vector<ir::Value*>> LowerGemmBgrad(Emitter& e, const ir::Node& n) {
  ir::AttrMap attrs;
  if (n.GetInt("trans_a", 0).value_or(0) != 0) attrs["trans_a"] = int64_t{1};
  PTC_ASSIGN_OR_RETURN(ir::Value* y, e.Op("gemm", {n.input(0), n.input(1)}, std::move(attrs)));
  if (y->type().dtype != n.output(0)->type().dtype) {
    PTC_ASSIGN_OR_RETURN(y, e.Op("cast", {y}, {{"to", n.output(0)->type().dtype}}));
  }
  const int bias_src = n.GetString("bias_of", "b").value_or("b") == "a" ? 0 : 1;
  PTC_ASSIGN_OR_RETURN(ir::Value* db, e.Op("reduce_sum", {n.input(bias_src)},
                                           {{"axes", std::vector<int64_t>{0}},
                                            {"keepdims", int64_t{0}}}));
  if (db->type().dtype != n.output(1)->type().dtype) {
    PTC_ASSIGN_OR_RETURN(db, e.Op("cast", {db}, {{"to", n.output(1)->type().dtype}}));
  }
  return std::vector<ir::Value*>{y, db};
}

// rotary -> the chain match-rotary takes: slices of x's halves, concat(x1 cos - x2 sin,
// x2 cos + x1 sin); tables of another dtype (f32 with bf16 x) cast to x's, sin negated for
// inverse=1.
// (rotary_dim R < D: the rotation of x[..., :R], concatenated with x[..., R:]; interleaved: the
// pairs are the even and odd elements (step-2 slices), put back side by side through
// unsqueeze / concat / reshape.)
absl::StatusOr<ir::Value*> LowerRotary(Emitter& e, const ir::Node& n) {
  ir::Value* x_full = n.input(0);
  const ir::Shape& full = x_full->type().shape;
  const int64_t r = static_cast<int64_t>(full.size());
  const int64_t rdim = n.GetInt("rotary_dim", full.back()).value_or(full.back());
  const bool interleaved = n.GetInt("interleaved", 0).value_or(0) != 0;
  auto last_slice = [&](ir::Value* v, int64_t start, int64_t end, int64_t step) {
    std::vector<int64_t> starts(r, 0), ends = v->type().shape, steps(r, 1);
    starts.back() = start;
    ends.back() = end;
    steps.back() = step;
    return e.Op("slice", {v}, {{"starts", starts}, {"ends", ends}, {"steps", steps}});
  };
  ir::Value* x = x_full;
  if (rdim != full.back()) {
    PTC_ASSIGN_OR_RETURN(x, last_slice(x_full, 0, rdim, 1));
  }
  const int64_t h = rdim / 2;
  ir::Value* halves[2];
  for (int i = 0; i < 2; ++i) {
    if (interleaved) {
      PTC_ASSIGN_OR_RETURN(halves[i], last_slice(x, i, rdim, 2));
    } else {
      PTC_ASSIGN_OR_RETURN(halves[i], last_slice(x, i * h, (i + 1) * h, 1));
    }
  }
  ir::Value* c = n.input(1);
  ir::Value* s = n.input(2);
  if (c->type().dtype != x->type().dtype) {
    PTC_ASSIGN_OR_RETURN(c, e.Op("cast", {c}, {{"to", x->type().dtype}}));
    PTC_ASSIGN_OR_RETURN(s, e.Op("cast", {s}, {{"to", x->type().dtype}}));
  }
  if (n.GetInt("inverse", 0).value_or(0) != 0) {
    PTC_ASSIGN_OR_RETURN(s, e.Op("neg", {s}));
  }
  PTC_ASSIGN_OR_RETURN(ir::Value* a, e.Op("mul", {halves[0], c}));
  PTC_ASSIGN_OR_RETURN(ir::Value* b, e.Op("mul", {halves[1], s}));
  PTC_ASSIGN_OR_RETURN(ir::Value* o1, e.Op("sub", {a, b}));
  PTC_ASSIGN_OR_RETURN(ir::Value* p, e.Op("mul", {halves[1], c}));
  PTC_ASSIGN_OR_RETURN(ir::Value* q, e.Op("mul", {halves[0], s}));
  PTC_ASSIGN_OR_RETURN(ir::Value* o2, e.Op("add", {p, q}));
  ir::Value* y = nullptr;
  if (interleaved) {  // [..., h] x 2 -> [..., h, 2] -> [..., R]
    ir::Shape col = o1->type().shape;
    col.push_back(1);
    PTC_ASSIGN_OR_RETURN(ir::Value* u1, e.Op("reshape", {o1}, {{"shape", col}}));
    PTC_ASSIGN_OR_RETURN(ir::Value* u2, e.Op("reshape", {o2}, {{"shape", col}}));
    PTC_ASSIGN_OR_RETURN(ir::Value* pairs, e.Op("concat", {u1, u2}, {{"axis", r}}));
    ir::Shape shape = x->type().shape;
    PTC_ASSIGN_OR_RETURN(y, e.Op("reshape", {pairs}, {{"shape", shape}}));
  } else {
    PTC_ASSIGN_OR_RETURN(y, e.Op("concat", {o1, o2}, {{"axis", r - 1}}));
  }
  if (rdim == full.back()) return y;
  PTC_ASSIGN_OR_RETURN(ir::Value* pass, last_slice(x_full, rdim, full.back(), 1));
  return e.Op("concat", {y, pass}, {{"axis", r - 1}});
}

// swiglu -> the chain match-swiglu takes: (g * sigmoid(g)) * u.
// (GeGLU, activation gelu_tanh / gelu: mul(gelu(g), u), what match-swiglu takes back.)
absl::StatusOr<ir::Value*> LowerSwiglu(Emitter& e, const ir::Node& n) {
  ir::Value* g = n.input(0);
  const std::string act = n.GetString("activation", "silu").value_or("silu");
  if (act != "silu") {
    PTC_ASSIGN_OR_RETURN(ir::Value* a, e.Op("gelu", {g}, {{"approximate",
                                                          std::string(act == "gelu_tanh" ? "tanh" : "none")}}));
    return e.Op("mul", {a, n.input(1)});
  }
  PTC_ASSIGN_OR_RETURN(ir::Value* s, e.Op("sigmoid", {g}));
  PTC_ASSIGN_OR_RETURN(ir::Value* m, e.Op("mul", {g, s}));
  return e.Op("mul", {m, n.input(1)});
}

// swiglu_grad -> s = sigmoid(g), du = dy * (g * s), dg = (dy * u) * s * (1 + g * (1 - s)).
// (GeGLU: du = dy * gelu(g), dg = gelu_grad(dy * u, g).)
absl::StatusOr<std::vector<ir::Value*>> LowerSwigluGrad(Emitter& e, const ir::Node& n) {
  ir::Value* dy = n.input(0);
  ir::Value* g = n.input(1);
  const std::string act = n.GetString("activation", "silu").value_or("silu");
  if (act != "silu") {
    const std::string approx = act == "gelu_tanh" ? "tanh" : "none";
    PTC_ASSIGN_OR_RETURN(ir::Value* a, e.Op("gelu", {g}, {{"approximate", approx}}));
    PTC_ASSIGN_OR_RETURN(ir::Value* du, e.Op("mul", {dy, a}));
    PTC_ASSIGN_OR_RETURN(ir::Value* dyu, e.Op("mul", {dy, n.input(2)}));
    PTC_ASSIGN_OR_RETURN(ir::Value* dg, e.Op("gelu_grad", {dyu, g}, {{"approximate", approx}}));
    return std::vector<ir::Value*>{dg, du};
  }
  const ir::DType dt = g->type().dtype;
  ir::Value* one = e.Scalar(dt, 1.0);
  PTC_ASSIGN_OR_RETURN(ir::Value* s, e.Op("sigmoid", {g}));
  PTC_ASSIGN_OR_RETURN(ir::Value* silu, e.Op("mul", {g, s}));
  PTC_ASSIGN_OR_RETURN(ir::Value* du, e.Op("mul", {dy, silu}));
  PTC_ASSIGN_OR_RETURN(ir::Value* c, e.Op("sub", {one, s}));
  PTC_ASSIGN_OR_RETURN(c, e.Op("mul", {g, c}));
  PTC_ASSIGN_OR_RETURN(c, e.Op("add", {one, c}));
  PTC_ASSIGN_OR_RETURN(ir::Value* dg, e.Op("mul", {dy, n.input(2)}));
  PTC_ASSIGN_OR_RETURN(dg, e.Op("mul", {dg, s}));
  PTC_ASSIGN_OR_RETURN(dg, e.Op("mul", {dg, c}));
  return std::vector<ir::Value*>{dg, du};
}

absl::StatusOr<ir::Value*> LowerAttention(Emitter& e, const ir::Node& n) {
  PTC_ASSIGN_OR_RETURN(std::string layout, n.GetString("layout", "bhtd"));
  ir::Value* q = n.input(0);
  ir::Value* k = n.input(1);
  ir::Value* v = n.input(2);
  const std::vector<int64_t> swap12 = {0, 2, 1, 3};
  if (layout == "bt3hd") {  // pack-qkv: slot s of operand s, reshaped to [B, T, H, D]
    ir::Value* ops[3] = {q, k, v};
    for (int s = 0; s < 3; ++s) {
      const ir::Shape& p = ops[s]->type().shape;
      PTC_ASSIGN_OR_RETURN(
          ir::Value* sl,
          e.Op("slice", {ops[s]},
               {{"starts", std::vector<int64_t>{0, 0, s, 0, 0}},
                {"ends", std::vector<int64_t>{p[0], p[1], s + 1, p[3], p[4]}},
                {"steps", std::vector<int64_t>{1, 1, 1, 1, 1}}}));
      PTC_ASSIGN_OR_RETURN(ops[s], e.Op("reshape", {sl},
                                        {{"shape", std::vector<int64_t>{p[0], p[1], p[3], p[4]}}}));
    }
    q = ops[0];
    k = ops[1];
    v = ops[2];
    layout = "bthd";
  }
  if (layout == "bthd") {
    PTC_ASSIGN_OR_RETURN(q, e.Op("transpose", {q}, {{"perm", swap12}}));
    PTC_ASSIGN_OR_RETURN(k, e.Op("transpose", {k}, {{"perm", swap12}}));
    PTC_ASSIGN_OR_RETURN(v, e.Op("transpose", {v}, {{"perm", swap12}}));
  }
  // Grouped-query attention (k / v with Hkv < H heads): HF's repeat_kv back, each kv head
  // repeated H / Hkv times in place ([B,Hkv,T,D] -> [B,Hkv,1,T,D] -> expand -> [B,H,T,D]).
  for (ir::Value** x : {&k, &v}) {
    const ir::Shape xs = (*x)->type().shape;
    const int64_t h = q->type().shape[1];
    if (xs.size() != 4 || xs[1] == h || xs[1] <= 0 || h % xs[1] != 0) continue;
    const std::vector<int64_t> u = {xs[0], xs[1], 1, xs[2], xs[3]};
    const std::vector<int64_t> ex = {xs[0], xs[1], h / xs[1], xs[2], xs[3]};
    PTC_ASSIGN_OR_RETURN(*x, e.Op("reshape", {*x}, {{"shape", u}}));
    PTC_ASSIGN_OR_RETURN(*x, e.Op("expand", {*x}, {{"shape", ex}}));
    PTC_ASSIGN_OR_RETURN(
        *x, e.Op("reshape", {*x}, {{"shape", std::vector<int64_t>{xs[0], h, xs[2], xs[3]}}}));
  }
  double scale = 1.0 / std::sqrt(static_cast<double>(q->type().shape.back()));
  if (n.has_attr("scale")) {
    PTC_ASSIGN_OR_RETURN(scale, n.GetFloat("scale"));
  }
  PTC_ASSIGN_OR_RETURN(ir::Value* kt, e.Op("transpose", {k}, {{"perm", std::vector<int64_t>{0, 1, 3, 2}}}));
  PTC_ASSIGN_OR_RETURN(ir::Value* s, e.Op("matmul", {q, kt}));
  ir::DType dt = s->type().dtype;
  PTC_ASSIGN_OR_RETURN(s, e.Op("mul", {s, e.Scalar(dt, scale)}));
  PTC_ASSIGN_OR_RETURN(double softcap, n.GetFloat("softcap", 0.0));
  if (softcap > 0) {  // softcap * tanh(s / softcap), before the mask
    PTC_ASSIGN_OR_RETURN(s, e.Op("div", {s, e.Scalar(dt, softcap)}));
    PTC_ASSIGN_OR_RETURN(s, e.Op("tanh", {s}));
    PTC_ASSIGN_OR_RETURN(s, e.Op("mul", {s, e.Scalar(dt, softcap)}));
  }
  if (ir::Value* mask = ir::AttentionMask(n, 0)) {
    if (mask->type().dtype == ir::DType::kBool) {
      ir::Value* ninf = e.Scalar(dt, -std::numeric_limits<double>::infinity());
      PTC_ASSIGN_OR_RETURN(s, e.Op("where", {mask, ninf, s}));
    } else {
      PTC_ASSIGN_OR_RETURN(s, e.Op("add", {s, mask}));
    }
  }
  PTC_ASSIGN_OR_RETURN(ir::Value* p, e.Op("softmax", {s}, {{"axis", int64_t{3}}}));
  PTC_ASSIGN_OR_RETURN(double dropout, n.GetFloat("dropout", 0.0));
  if (dropout > 0) {  // the same mask: dropout's over the [B, H, Tq, Tk] probabilities
    std::vector<ir::Value*> ins = {p};
    if (ir::Value* counter = ir::AttentionCounter(n, 0)) ins.push_back(counter);
    PTC_ASSIGN_OR_RETURN(int64_t seed, n.GetInt("seed", 0));
    PTC_ASSIGN_OR_RETURN(p, e.Op("dropout", ins, {{"ratio", dropout}, {"seed", seed}}));
  }
  PTC_ASSIGN_OR_RETURN(ir::Value* o, e.Op("matmul", {p, v}));
  if (layout == "bthd") {
    PTC_ASSIGN_OR_RETURN(o, e.Op("transpose", {o}, {{"perm", swap12}}));
  }
  return o;
}

absl::StatusOr<ir::Value*> LowerLinearCe(Emitter& e, const ir::Node& n) {
  ir::Value* w = n.input(1);
  PTC_ASSIGN_OR_RETURN(int64_t trans_b, n.GetInt("trans_b", 0));
  if (trans_b) {
    PTC_ASSIGN_OR_RETURN(w, e.Op("transpose", {w}, {{"perm", std::vector<int64_t>{1, 0}}}));
  }
  PTC_ASSIGN_OR_RETURN(ir::Value* z, e.Op("matmul", {n.input(0), w}));
  if (n.num_inputs() == 4) {
    PTC_ASSIGN_OR_RETURN(z, e.Op("add", {z, n.input(3)}));
  }
  if (z->type().dtype != ir::DType::kF32) {  // the logits are f32 whatever x's dtype
    PTC_ASSIGN_OR_RETURN(z, e.Op("cast", {z}, {{"to", ir::DType::kF32}}));
  }
  PTC_ASSIGN_OR_RETURN(double scale, n.GetFloat("scale", 1.0));
  if (scale != 1.0) {
    PTC_ASSIGN_OR_RETURN(z, e.Op("mul", {z, e.Scalar(ir::DType::kF32, scale)}));
  }
  PTC_ASSIGN_OR_RETURN(double softcap, n.GetFloat("softcap", 0.0));
  if (softcap > 0) {  // softcap * tanh(z / softcap)
    PTC_ASSIGN_OR_RETURN(z, e.Op("div", {z, e.Scalar(ir::DType::kF32, softcap)}));
    PTC_ASSIGN_OR_RETURN(z, e.Op("tanh", {z}));
    PTC_ASSIGN_OR_RETURN(z, e.Op("mul", {z, e.Scalar(ir::DType::kF32, softcap)}));
  }
  ir::AttrMap attrs;
  for (const char* k : {"reduction", "ignore_index"}) {
    if (n.has_attr(k)) attrs[k] = n.attrs().at(k);
  }
  return e.Op("softmax_ce_loss", {z, n.input(2)}, std::move(attrs));
}

class LowerFusedPass final : public Pass {
 public:
  std::string_view name() const override { return "lower-fused"; }

  absl::StatusOr<bool> Run(ir::Module& module) override {
    bool changed = false;
    for (const auto& fn : module.functions()) {
      ir::Function& f = *fn;
      // save-attention-stats undone: an exported attention_grad recomputes the forward (its
      // saved O and log-sum-exp inputs go), so attention is lowered from its first output.
      for (const auto& n : f.nodes()) {
        if (n->op() != "attention_grad" || n->GetInt("saved_stats", 0).value_or(0) == 0) continue;
        std::vector<ir::Value*> ins(n->inputs().begin(), n->inputs().end() - 2);
        n->set_inputs(std::move(ins));
        n->mutable_attrs().erase("saved_stats");
        changed = true;
      }
      const auto uses = f.ComputeUses();
      std::vector<ir::Node*> targets;
      for (const auto& n : f.nodes()) {
        if (n->op() == "attention" && n->num_outputs() > 1 && uses.count(n->output(1))) {
          return absl::UnimplementedError(absl::StrCat(
              n->Describe(), ": its log-sum-exp output has readers besides attention_grad; "
              "it has no ONNX form"));
        }
        const std::string& op = n->op();
        if (op == "gelu" || op == "fused_elementwise" || op == "fused_matmul" ||
            op == "attention" || op == "gemm_bgrad" || op == "gemm_gelu_grad" || op == "rotary" ||
            op == "swiglu" || op == "swiglu_grad" ||
            (op == "linear_ce_loss" && n->num_outputs() == 1)) {
          targets.push_back(n.get());
        }
      }
      for (ir::Node* n : targets) {
        Emitter e(f, *n);
        absl::StatusOr<ir::Value*> r;
        if (n->op() == "gemm_bgrad") {
          PTC_ASSIGN_OR_RETURN(std::vector<ir::Value*> outs, LowerGemmBgrad(e, *n));
          f.ReplaceAllUsesWith(n->output(1), outs[1]);
          r = outs[0];
        } else if (n->op() == "gelu") {
          PTC_ASSIGN_OR_RETURN(std::string approx, n->GetString("approximate", "none"));
          r = e.Unary(approx == "tanh" ? "gelu_tanh" : "gelu", n->input(0));
        } else if (n->op() == "fused_elementwise") {
          r = LowerFusedElementwise(e, *n);
        } else if (n->op() == "fused_matmul") {
          PTC_ASSIGN_OR_RETURN(std::vector<ir::Value*> outs, LowerFusedMatMul(e, *n));
          if (outs.size() == 2) f.ReplaceAllUsesWith(n->output(1), outs[1]);
          r = outs[0];
        } else if (n->op() == "gemm_gelu_grad") {
          r = LowerGemmGeluGrad(e, *n);
        } else if (n->op() == "rotary") {
          r = LowerRotary(e, *n);
        } else if (n->op() == "swiglu") {
          r = LowerSwiglu(e, *n);
        } else if (n->op() == "linear_ce_loss") {
          r = LowerLinearCe(e, *n);
        } else if (n->op() == "swiglu_grad") {
          PTC_ASSIGN_OR_RETURN(std::vector<ir::Value*> outs, LowerSwigluGrad(e, *n));
          f.ReplaceAllUsesWith(n->output(1), outs[1]);
          r = outs[0];
        } else {
          r = LowerAttention(e, *n);
        }
        if (!r.ok()) return r.status();
        if ((*r)->type() != n->output(0)->type()) {
          return absl::InternalError(absl::StrCat("lowering ", n->Describe(), " gave ",
                                                  (*r)->type().ToString()));
        }
        f.ReplaceAllUsesWith(n->output(0), *r);
        Count(absl::StrCat("lowered.", n->op()));
        changed = true;
      }
      std::set<const ir::Node*> dead(targets.begin(), targets.end());
      f.EraseNodesIf([&](const ir::Node& n) { return dead.count(&n) > 0; });
    }
    return changed;
  }
};

}  // namespace

std::unique_ptr<Pass> CreateLowerFusedPass() { return std::make_unique<LowerFusedPass>(); }

}  // namespace ptc::passes
