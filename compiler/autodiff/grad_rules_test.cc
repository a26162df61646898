// Every gradient rule against central finite differences in float64: a tiny graph per case
// (random inputs), loss = sum over the op's float outputs of sum(y * r) with a random constant
// r, analytic gradients from AppendGradients, numeric ones from (L(x+h) - L(x-h)) / 2h.
#include <cmath>
#include <functional>
#include <random>

#include "compiler/autodiff/test_interpreter.h"
#include "compiler/autodiff/training.h"
#include "compiler/ir/ops.h"
#include "compiler/ir/verifier.h"
#include "gtest/gtest.h"

namespace ptc::autodiff {
namespace {

using ir::DType;
using ir::Shape;
using ir::Value;

class GraphMaker {
 public:
  GraphMaker() : f_(*module_.AddFunction("main")), rng_(1234) {}
  ir::Function& f() { return f_; }
  ir::Module& module() { return module_; }

  // A differentiable f64 parameter with values uniform in [lo, hi] (sign-flipped at random
  // when `random_sign`, to stay away from kinks at 0).
  Value* P(const Shape& shape, double lo = -1, double hi = 1, bool random_sign = false) {
    ir::Tensor t(DType::kF64, shape);
    std::uniform_real_distribution<double> u(lo, hi);
    for (int64_t i = 0; i < t.num_elements(); ++i) {
      double v = u(rng_);
      if (random_sign && (rng_() & 1)) v = -v;
      t.mutable_data_as<double>()[i] = v;
    }
    std::string name = "x" + std::to_string(values_.size());
    Value* p = f_.AddParam(name, t.type());
    values_[name] = t;
    wrt_.push_back(p);
    return p;
  }
  Value* Const(const ir::Tensor& t) {
    return f_.AddNode("constant", {}, {t.type()}, {{"value", t}})->output(0);
  }
  Value* Ints(const Shape& shape, std::vector<int64_t> v) {
    return Const(ir::Tensor::FromVector(DType::kI64, shape, v));
  }
  Value* Bools(const Shape& shape, std::vector<uint8_t> v) {
    return Const(ir::Tensor::FromVector(DType::kBool, shape, v));
  }
  Value* Random(const Shape& shape) {
    ir::Tensor t(DType::kF64, shape);
    std::uniform_real_distribution<double> u(-1, 1);
    for (int64_t i = 0; i < t.num_elements(); ++i) t.mutable_data_as<double>()[i] = u(rng_);
    return Const(t);
  }
  std::vector<Value*> OpN(const std::string& op, std::vector<Value*> ins, ir::AttrMap attrs,
                          int n) {
    std::vector<ir::TensorType> types;
    for (Value* v : ins) types.push_back(v->type());
    auto out = ir::InferTypes(op, types, attrs, n);
    EXPECT_TRUE(out.ok()) << op << ": " << out.status();
    if (!out.ok()) return {};
    return f_.AddNode(op, ins, *out, attrs)->outputs();
  }
  Value* Op(const std::string& op, std::vector<Value*> ins, ir::AttrMap attrs = {}) {
    auto o = OpN(op, ins, std::move(attrs), 1);
    return o.empty() ? nullptr : o[0];
  }

  std::map<std::string, ir::Tensor> values_;
  std::vector<Value*> wrt_;

 private:
  ir::Module module_;
  ir::Function& f_;
  std::mt19937_64 rng_;
};

using BuildFn = std::function<std::vector<Value*>(GraphMaker&)>;

double LossAt(const ir::Function& f, const std::map<std::string, ir::Tensor>& params) {
  auto r = testing::Interpret(f, params);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->results[0].GetDouble(0) : NAN;
}

void CheckGradients(const BuildFn& build, double tol = 1e-6) {
  GraphMaker g;
  std::vector<Value*> outs = build(g);
  ASSERT_FALSE(outs.empty());
  Value* loss = nullptr;
  for (Value* y : outs) {
    Value* term = g.Op("reduce_sum", {g.Op("mul", {y, g.Random(y->type().shape)})},
                       {{"axes", std::vector<int64_t>{}}, {"keepdims", int64_t{0}}});
    loss = loss ? g.Op("add", {loss, term}) : term;
  }
  ir::Function& f = g.f();
  f.set_results({loss});
  std::vector<Value*> wrt = g.wrt_;
  auto grads = AppendGradients(f, loss, wrt);
  ASSERT_TRUE(grads.ok()) << grads.status();
  std::vector<Value*> results = {f.results()[0]};
  for (Value* v : *grads) {
    ASSERT_NE(v, nullptr);
    results.push_back(v);
  }
  f.set_results(results);
  auto verified = ir::Verify(g.module());
  ASSERT_TRUE(verified.ok()) << verified;
  auto run = testing::Interpret(f, g.values_);
  ASSERT_TRUE(run.ok()) << run.status();
  const double h = 1e-6;
  for (size_t k = 0; k < wrt.size(); ++k) {
    const std::string& name = wrt[k]->name();
    const ir::Tensor& analytic = run->results[k + 1];
    ASSERT_EQ(analytic.type(), wrt[k]->type());
    for (int64_t i = 0; i < analytic.num_elements(); ++i) {
      auto params = g.values_;
      ir::Tensor t = params[name].Clone();
      params[name] = t;
      double* x = t.mutable_data_as<double>();
      const double x0 = x[i];
      x[i] = x0 + h;
      const double lp = LossAt(f, params);
      x[i] = x0 - h;
      const double lm = LossAt(f, params);
      const double numeric = (lp - lm) / (2 * h);
      const double a = analytic.GetDouble(i);
      EXPECT_NEAR(a, numeric, tol * std::max(1.0, std::fabs(numeric)))
          << "d loss / d " << name << "[" << i << "]";
    }
  }
}

using Attrs = ir::AttrMap;
using Ints = std::vector<int64_t>;

struct Case {
  const char* name;
  BuildFn build;
  double tol = 1e-6;
};

std::vector<Value*> Unary(GraphMaker& g, const char* op, double lo, double hi, bool sign,
                          Attrs attrs = {}) {
  return {g.Op(op, {g.P({2, 3}, lo, hi, sign)}, attrs)};
}

std::vector<Case> Cases() {
  return {
      {"add_broadcast", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("add", {g.P({2, 1, 3}), g.P({4, 1})})};
       }},
      {"sub_broadcast", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("sub", {g.P({3}), g.P({2, 3})})};
       }},
      {"mul_broadcast", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("mul", {g.P({2, 3}), g.P({2, 1})})};
       }},
      {"div_broadcast", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("div", {g.P({2, 3}), g.P({3}, 0.5, 1.5, true)})};
       }},
      {"pow_both", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("pow", {g.P({2, 3}, 0.5, 2), g.P({3}, -1.5, 1.5)})};
       }},
      {"pow_const_2", [](GraphMaker& g) {
         ir::Tensor two = ir::Tensor::FromVector(DType::kF64, {}, std::vector<double>{2.0});
         return std::vector<Value*>{g.Op("pow", {g.P({2, 3}), g.Const(two)})};
       }},
      {"pow_const_3", [](GraphMaker& g) {
         ir::Tensor e = ir::Tensor::FromVector(DType::kF64, {}, std::vector<double>{3.0});
         return std::vector<Value*>{g.Op("pow", {g.P({2, 3}, 0.2, 1.5), g.Const(e)})};
       }},
      {"neg", [](GraphMaker& g) { return Unary(g, "neg", -1, 1, false); }},
      {"abs", [](GraphMaker& g) { return Unary(g, "abs", 0.1, 1, true); }},
      {"reciprocal", [](GraphMaker& g) { return Unary(g, "reciprocal", 0.5, 2, true); }},
      {"sqrt", [](GraphMaker& g) { return Unary(g, "sqrt", 0.2, 2, false); }},
      {"exp", [](GraphMaker& g) { return Unary(g, "exp", -1, 1, false); }},
      {"log", [](GraphMaker& g) { return Unary(g, "log", 0.2, 2, false); }},
      {"erf", [](GraphMaker& g) { return Unary(g, "erf", -2, 2, false); }},
      {"tanh", [](GraphMaker& g) { return Unary(g, "tanh", -2, 2, false); }},
      {"cos", [](GraphMaker& g) { return Unary(g, "cos", -3, 3, false); }},
      {"sin", [](GraphMaker& g) { return Unary(g, "sin", -3, 3, false); }},
      {"sigmoid", [](GraphMaker& g) { return Unary(g, "sigmoid", -3, 3, false); }},
      {"relu", [](GraphMaker& g) { return Unary(g, "relu", 0.1, 1, true); }},
      {"identity", [](GraphMaker& g) { return Unary(g, "identity", -1, 1, false); }},
      {"gelu_none", [](GraphMaker& g) {
         return Unary(g, "gelu", -3, 3, false, {{"approximate", std::string("none")}});
       }},
      {"gelu_tanh", [](GraphMaker& g) {
         return Unary(g, "gelu", -3, 3, false, {{"approximate", std::string("tanh")}});
       }},
      {"trilu", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("trilu", {g.P({2, 3, 3})}, {{"upper", int64_t{0}}})};
       }},
      {"cast_f64", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("cast", {g.P({2, 3})}, {{"to", DType::kF64}})};
       }},
      {"where", [](GraphMaker& g) {
         Value* c = g.Bools({2, 3}, {1, 0, 1, 0, 0, 1});
         return std::vector<Value*>{g.Op("where", {c, g.P({2, 3}), g.P({3})})};
       }},
      {"dropout", [](GraphMaker& g) {
         return g.OpN("dropout", {g.P({4, 8})}, {{"ratio", 0.3}, {"seed", int64_t{5}}}, 1);
       }},
      {"dropout_counter", [](GraphMaker& g) {  // the step's counter: the same mask both ways
         Value* x = g.P({4, 8});
         return g.OpN("dropout", {x, g.Ints({}, {7})}, {{"ratio", 0.3}, {"seed", int64_t{5}}}, 1);
       }},
      {"matmul_batched_weight", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("matmul", {g.P({2, 3, 4}), g.P({4, 5})})};
       }},
      {"matmul_broadcast_batch", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("matmul", {g.P({2, 1, 3, 4}), g.P({3, 4, 2})})};
       }},
      {"matmul_matrix_batched", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("matmul", {g.P({3, 4}), g.P({2, 4, 5})})};
       }},
      {"matmul_vec_left", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("matmul", {g.P({4}), g.P({2, 4, 5})})};
       }},
      {"matmul_vec_right", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("matmul", {g.P({2, 3, 4}), g.P({4})})};
       }},
      {"matmul_vec_vec", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("matmul", {g.P({4}), g.P({4})})};
       }},
      {"matmul_2d", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("matmul", {g.P({3, 4}), g.P({4, 2})})};
       }},
      {"gemm_nn_c", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("gemm", {g.P({3, 4}), g.P({4, 2}), g.P({2})},
                                         {{"alpha", 0.7}, {"beta", 1.3}})};
       }},
      {"gemm_tn", [](GraphMaker& g) {
         return std::vector<Value*>{
             g.Op("gemm", {g.P({4, 3}), g.P({4, 2})}, {{"alpha", 0.7}, {"trans_a", int64_t{1}}})};
       }},
      {"gemm_nt", [](GraphMaker& g) {
         return std::vector<Value*>{
             g.Op("gemm", {g.P({3, 4}), g.P({2, 4}), g.P({3, 1})}, {{"trans_b", int64_t{1}}})};
       }},
      {"gemm_tt", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op(
             "gemm", {g.P({4, 3}), g.P({2, 4})}, {{"trans_a", int64_t{1}}, {"trans_b", int64_t{1}}})};
       }},
      {"attention_bhtd_bool_mask", [](GraphMaker& g) {
         // Causal-like with Tq < Tk: query i sees keys 0..i+1; no row is fully masked.
         std::vector<uint8_t> m;
         for (int i = 0; i < 5; ++i) {
           for (int j = 0; j < 6; ++j) m.push_back(j > i + 1);
         }
         return std::vector<Value*>{g.Op("attention", {g.P({2, 2, 5, 3}), g.P({2, 2, 6, 3}),
                                                       g.P({2, 2, 6, 4}), g.Bools({5, 6}, m)},
                                         {{"scale", 0.7}})};
       }},
      {"attention_bthd_additive_mask", [](GraphMaker& g) {
         std::vector<double> m;
         for (int i = 0; i < 4 * 3; ++i) m.push_back(0.25 * (i % 5) - 0.5);
         return std::vector<Value*>{g.Op(
             "attention", {g.P({2, 4, 2, 3}), g.P({2, 3, 2, 3}), g.P({2, 3, 2, 2}),
                           g.Const(ir::Tensor::FromVector(DType::kF64, {1, 2, 4, 3}, [&] {
                             std::vector<double> x(m.begin(), m.end());
                             x.insert(x.end(), m.begin(), m.end());
                             return x;
                           }()))},
             {{"layout", std::string("bthd")}})};
       }},
      {"attention_grouped_query_bhtd", [](GraphMaker& g) {  // 4 query heads, 2 kv heads
         std::vector<uint8_t> m;
         for (int i = 0; i < 4; ++i) {
           for (int j = 0; j < 5; ++j) m.push_back(j > i + 1);
         }
         return std::vector<Value*>{g.Op("attention", {g.P({1, 4, 4, 3}), g.P({1, 2, 5, 3}),
                                                       g.P({1, 2, 5, 2}), g.Bools({4, 5}, m)},
                                         {{"scale", 0.6}})};
       }},
      {"attention_grouped_query_bthd", [](GraphMaker& g) {  // 3 query heads, 1 kv head
         return std::vector<Value*>{g.Op("attention", {g.P({2, 3, 3, 2}), g.P({2, 4, 1, 2}),
                                                       g.P({2, 4, 1, 3})},
                                         {{"layout", std::string("bthd")}})};
       }},
      {"attention_softcap_bool_mask", [](GraphMaker& g) {  // Gemma 2's tanh capping
         std::vector<uint8_t> m;
         for (int i = 0; i < 5; ++i) {
           for (int j = 0; j < 6; ++j) m.push_back(j > i + 1);
         }
         return std::vector<Value*>{g.Op("attention", {g.P({2, 2, 5, 3}), g.P({2, 2, 6, 3}),
                                                       g.P({2, 2, 6, 4}), g.Bools({5, 6}, m)},
                                         {{"scale", 1.5}, {"softcap", 0.8}})};
       }},
      {"attention_softcap_grouped_query_bthd", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("attention", {g.P({2, 3, 4, 2}), g.P({2, 4, 2, 2}),
                                                       g.P({2, 4, 2, 3})},
                                         {{"layout", std::string("bthd")}, {"scale", 2.0},
                                          {"softcap", 0.5}})};
       }},
      {"attention_dropout_bool_mask", [](GraphMaker& g) {  // the mask redrawn by the backward
         std::vector<uint8_t> m;
         for (int i = 0; i < 5; ++i) {
           for (int j = 0; j < 6; ++j) m.push_back(j > i + 1);
         }
         return std::vector<Value*>{g.Op("attention", {g.P({2, 2, 5, 3}), g.P({2, 2, 6, 3}),
                                                       g.P({2, 2, 6, 4}), g.Bools({5, 6}, m),
                                                       g.Ints({}, {7})},
                                         {{"scale", 0.7}, {"dropout", 0.3}, {"seed", int64_t{5}}})};
       }},
      {"attention_dropout_grouped_query_bthd", [](GraphMaker& g) {  // no counter: 0
         return std::vector<Value*>{g.Op("attention", {g.P({2, 3, 4, 2}), g.P({2, 4, 2, 2}),
                                                       g.P({2, 4, 2, 3})},
                                         {{"layout", std::string("bthd")}, {"dropout", 0.5},
                                          {"seed", int64_t{2}}})};
       }},
      {"attention_two_query_blocks", [](GraphMaker& g) {  // Tq > the kernel's 32-row block
         return std::vector<Value*>{g.Op("attention", {g.P({1, 1, 35, 2}), g.P({1, 1, 7, 2}),
                                                       g.P({1, 1, 7, 3})})};
       }},
      {"softmax", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("softmax", {g.P({2, 3, 4})}, {{"axis", int64_t{1}}})};
       }},
      {"log_softmax", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("log_softmax", {g.P({2, 3, 4})}, {{"axis", int64_t{2}}})};
       }},
      {"layer_norm", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("layer_norm", {g.P({2, 3, 4}), g.P({3, 4}), g.P({3, 4})},
                                         {{"axis", int64_t{1}}, {"epsilon", 1e-5}})};
       }, 2e-6},
      {"rms_norm", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("layer_norm", {g.P({2, 3, 4}), g.P({3, 4})},
                                         {{"axis", int64_t{1}}, {"epsilon", 1e-5},
                                          {"rms", int64_t{1}}})};
       }, 2e-6},
      {"rms_norm_last_axis", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("layer_norm", {g.P({3, 8}), g.P({8})},
                                         {{"axis", int64_t{1}}, {"epsilon", 1e-6},
                                          {"rms", int64_t{1}}})};
       }, 2e-6},
      {"layer_norm_broadcast_scale", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("layer_norm", {g.P({2, 3, 4}), g.P({1}), g.P({1})},
                                         {{"axis", int64_t{1}}, {"epsilon", 1e-5}})};
       }, 2e-6},
      {"reduce_sum_axis", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("reduce_sum", {g.P({2, 3, 4})},
                                         {{"axes", Ints{1}}, {"keepdims", int64_t{0}}})};
       }},
      {"reduce_mean_all", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("reduce_mean", {g.P({2, 3})},
                                         {{"axes", Ints{}}, {"keepdims", int64_t{0}}})};
       }},
      {"reduce_mean_keepdims", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("reduce_mean", {g.P({2, 3, 4})},
                                         {{"axes", Ints{0, 2}}, {"keepdims", int64_t{1}}})};
       }},
      {"reshape", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("reshape", {g.P({2, 3, 4})}, {{"shape", Ints{6, 4}}})};
       }},
      {"expand", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("expand", {g.P({3, 1})}, {{"shape", Ints{2, 3, 4}}})};
       }},
      {"transpose", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("transpose", {g.P({2, 3, 4})}, {{"perm", Ints{2, 0, 1}}})};
       }},
      {"split_partial_use", [](GraphMaker& g) {
         auto o = g.OpN("split", {g.P({2, 4, 3})}, {{"axis", int64_t{1}}, {"sizes", Ints{1, 2, 1}}},
                        3);
         return std::vector<Value*>{o[0], o[2]};
       }},
      {"slice_steps", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("slice", {g.P({4, 5})}, {{"starts", Ints{1, 4}},
                                                                  {"ends", Ints{4, -1}},
                                                                  {"steps", Ints{2, -2}}})};
       }},
      {"concat", [](GraphMaker& g) {
         return std::vector<Value*>{
             g.Op("concat", {g.P({2, 1}), g.P({2, 3}), g.P({2, 2})}, {{"axis", int64_t{1}}})};
       }},
      {"gather_embedding", [](GraphMaker& g) {
         Value* idx = g.Ints({2, 3}, {0, 4, 1, 4, -1, 2});
         return std::vector<Value*>{g.Op("gather", {g.P({5, 3}), idx}, {{"axis", int64_t{0}}})};
       }},
      // A tied embedding: one weight gathered and multiplied (the LM head), either order; its
      // gradient is gather_grad with the matmul's gradient as its base.
      {"gather_tied_with_matmul", [](GraphMaker& g) {
         Value* w = g.P({5, 3});
         Value* idx = g.Ints({2, 2}, {0, 4, 4, 2});
         Value* e = g.Op("gather", {w, idx}, {{"axis", int64_t{0}}});
         Value* wt = g.Op("transpose", {w}, {{"perm", Ints{1, 0}}});
         return std::vector<Value*>{g.Op("matmul", {e, wt})};
       }},
      {"gather_tied_read_first", [](GraphMaker& g) {
         Value* w = g.P({4, 3});
         Value* s = g.Op("mul", {w, w});
         Value* idx = g.Ints({3}, {1, 3, 1});
         Value* e = g.Op("gather", {s, idx}, {{"axis", int64_t{0}}});
         return std::vector<Value*>{g.Op("add", {e, g.Op("gather", {w, idx}, {{"axis", int64_t{0}}})})};
       }},
      {"gather_axis1", [](GraphMaker& g) {
         Value* idx = g.Ints({3}, {2, 0, 2});
         return std::vector<Value*>{g.Op("gather", {g.P({2, 3, 2}), idx}, {{"axis", int64_t{1}}})};
       }},
      {"softmax_ce_mean_ignore_weights", [](GraphMaker& g) {
         Value* labels = g.Ints({4}, {1, -100, 0, 2});
         Value* w = g.Const(ir::Tensor::FromVector(DType::kF64, {3}, std::vector<double>{0.5, 1, 2}));
         return g.OpN("softmax_ce_loss", {g.P({4, 3}), labels, w},
                      {{"reduction", std::string("mean")}, {"ignore_index", int64_t{-100}}}, 1);
       }},
      {"softmax_ce_none_3d_log_prob", [](GraphMaker& g) {
         Value* labels = g.Ints({2, 2}, {1, 0, 2, 2});
         return g.OpN("softmax_ce_loss", {g.P({2, 3, 2}), labels},
                      {{"reduction", std::string("none")}}, 2);
       }},
      {"softmax_ce_sum", [](GraphMaker& g) {
         Value* labels = g.Ints({3}, {1, 0, 2});
         return g.OpN("softmax_ce_loss", {g.P({3, 4}), labels},
                      {{"reduction", std::string("sum")}}, 1);
       }},
      // rotary: dx is the inverse rotation of dy (tables constants, broadcast over the batch).
      {"rotary", [](GraphMaker& g) {
         return std::vector<Value*>{
             g.Op("rotary", {g.P({2, 3, 6}), g.Random({3, 3}), g.Random({3, 3})})};
       }},
      {"rotary_inverse_of_rotary", [](GraphMaker& g) {
         Value* c = g.Random({1, 2});
         Value* s = g.Random({1, 2});
         Value* y = g.Op("rotary", {g.P({3, 4}), c, s}, {{"inverse", int64_t{1}}});
         return std::vector<Value*>{g.Op("rotary", {g.Op("mul", {y, y}), c, s})};
       }},
      // swiglu: swiglu_grad's (dg, du); u a constant (dg only); one value as both operands
      // (dg + du summed); g in [-6, 6] (both tails of the sigmoid).
      {"swiglu", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("swiglu", {g.P({2, 3, 5}), g.P({2, 3, 5})})};
       }},
      {"swiglu_constant_u", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("swiglu", {g.P({4, 3}), g.Random({4, 3})})};
       }},
      {"swiglu_same_operand", [](GraphMaker& g) {
         Value* x = g.P({7});
         return std::vector<Value*>{g.Op("swiglu", {x, x})};
       }},
      {"swiglu_wide_g", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("swiglu", {g.P({3, 4}, -6, 6), g.P({3, 4})})};
       }},
      // GeGLU: swiglu {activation=gelu_tanh | gelu}.
      {"geglu_tanh", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("swiglu", {g.P({3, 4}, -4, 4), g.P({3, 4})},
                                         {{"activation", std::string("gelu_tanh")}})};
       }},
      {"geglu_erf", [](GraphMaker& g) {
         return std::vector<Value*>{g.Op("swiglu", {g.P({3, 4}, -4, 4), g.P({3, 4})},
                                         {{"activation", std::string("gelu")}})};
       }},
      {"nll_loss_mean_weights", [](GraphMaker& g) {
         Value* labels = g.Ints({4}, {1, 7, 0, 2});
         Value* w = g.Const(ir::Tensor::FromVector(DType::kF64, {3}, std::vector<double>{0.5, 1, 2}));
         return g.OpN("nll_loss", {g.P({4, 3}), labels, w},
                      {{"reduction", std::string("mean")}, {"ignore_index", int64_t{7}}}, 1);
       }},
  };
}

class GradRuleTest : public ::testing::TestWithParam<Case> {};

TEST_P(GradRuleTest, MatchesFiniteDifferences) {
  CheckGradients(GetParam().build, GetParam().tol);
}

INSTANTIATE_TEST_SUITE_P(AllRules, GradRuleTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

TEST(AppendGradientsTest, ErrorNamesOpWithoutRule) {
  ir::Function f("main");
  Value* x = f.AddParam("x", {DType::kF64, {2, 3}});
  ir::Node* n = f.AddNode("reduce_max", {x}, {{DType::kF64, {}}},
                          {{"axes", Ints{}}, {"keepdims", int64_t{0}}}, "/m/ReduceMax");
  auto g = AppendGradients(f, n->output(0), {x});
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("reduce_max"), std::string::npos) << g.status();
  EXPECT_NE(g.status().message().find("/m/ReduceMax"), std::string::npos) << g.status();
}

TEST(AppendGradientsTest, UnreachableAndIntegerInputsHaveNoGradient) {
  ir::Function f("main");
  Value* x = f.AddParam("x", {DType::kF64, {3}});
  Value* unused = f.AddParam("unused", {DType::kF64, {3}});
  Value* idx = f.AddParam("idx", {DType::kI64, {2}});
  Value* y = f.AddNode("gather", {x, idx}, {{DType::kF64, {2}}}, {{"axis", int64_t{0}}})->output(0);
  Value* l = f.AddNode("reduce_sum", {y}, {{DType::kF64, {}}},
                       {{"axes", Ints{}}, {"keepdims", int64_t{0}}})->output(0);
  auto g = AppendGradients(f, l, {x, unused, idx});
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_NE((*g)[0], nullptr);
  EXPECT_EQ((*g)[1], nullptr);
  EXPECT_EQ((*g)[2], nullptr);
}

TEST(AppendGradientsTest, RotaryTablesHaveNoGradient) {
  ir::Function f("main");
  Value* x = f.AddParam("x", {DType::kF64, {2, 4}});
  Value* c = f.AddParam("cos", {DType::kF64, {2, 2}});
  Value* y = f.AddNode("rotary", {x, c, c}, {{DType::kF64, {2, 4}}}, {}, "/rope")->output(0);
  Value* l = f.AddNode("reduce_sum", {y}, {{DType::kF64, {}}},
                       {{"axes", Ints{}}, {"keepdims", int64_t{0}}})->output(0);
  auto g = AppendGradients(f, l, {x, c});
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("cos / sin"), std::string::npos) << g.status();
  EXPECT_NE(g.status().message().find("/rope"), std::string::npos) << g.status();
}

TEST(AppendGradientsTest, FusedOpIsAPreconditionError) {
  ir::Function f("main");
  Value* x = f.AddParam("x", {DType::kF32, {3}});
  Value* y = f.AddNode("fused_elementwise", {x}, {{DType::kF32, {3}}},
                       {{"program", std::string("x0 neg")}})->output(0);
  Value* l = f.AddNode("reduce_sum", {y}, {{DType::kF32, {}}},
                       {{"axes", Ints{}}, {"keepdims", int64_t{0}}})->output(0);
  auto g = AppendGradients(f, l, {x});
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("before fusion"), std::string::npos) << g.status();
}

}  // namespace
}  // namespace ptc::autodiff
