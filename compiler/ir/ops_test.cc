// Type inference and attribute validation for every op in ops.h. Expected types are computed
// by hand from the op specifications (numpy / ONNX semantics).
#include "compiler/ir/ops.h"

#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "compiler/ir/op_util.h"
#include "compiler/ir/ops_decode.h"
#include "compiler/ir/ops_fused.h"
#include "compiler/ir/ops_train.h"
#include "gtest/gtest.h"

namespace ptc::ir {
namespace {

TensorType T(DType d, Shape s) { return TensorType{d, std::move(s)}; }
TensorType F32(Shape s) { return T(DType::kF32, std::move(s)); }
TensorType I64(Shape s) { return T(DType::kI64, std::move(s)); }
TensorType Bool(Shape s) { return T(DType::kBool, std::move(s)); }

std::vector<TensorType> Infer(std::string_view op, std::vector<TensorType> in, AttrMap attrs = {},
                              int num_outputs = 1) {
  auto r = InferTypes(op, in, attrs, num_outputs);
  EXPECT_TRUE(r.ok()) << op << ": " << r.status();
  return r.ok() ? *r : std::vector<TensorType>{};
}

// Expects an error whose message contains every one of `needles`.
void ExpectError(std::string_view op, std::vector<TensorType> in, AttrMap attrs,
                 std::vector<std::string> needles, int num_outputs = 1) {
  auto r = InferTypes(op, in, attrs, num_outputs);
  ASSERT_FALSE(r.ok()) << op << " unexpectedly inferred " << (*r)[0].ToString();
  for (const auto& n : needles) {
    EXPECT_NE(std::string(r.status().message()).find(n), std::string::npos)
        << "message '" << r.status().message() << "' lacks '" << n << "'";
  }
}

TEST(Ops, RegistryIsCompleteAndUnique) {
  const std::vector<std::string> spec = {
      "add", "sub", "mul", "div", "pow", "max", "min", "equal", "less", "greater", "less_equal",
      "greater_equal", "and", "or", "xor", "not", "where", "neg", "abs", "sqrt", "reciprocal",
      "exp", "log", "erf", "tanh", "sigmoid", "relu", "identity", "floor", "ceil", "cos", "sin", "gelu", "cast",
      "matmul", "gemm", "softmax", "log_softmax", "layer_norm", "reduce_sum", "reduce_mean",
      "reduce_max", "reduce_min", "reshape", "expand", "transpose", "split", "slice", "concat",
      "gather", "trilu", "constant", "softmax_ce_loss", "nll_loss", "dropout"};
  for (const auto& name : spec) {
    const OpDef* def = FindOp(name);
    ASSERT_NE(def, nullptr) << name;
    EXPECT_EQ(def->name, name);
    EXPECT_NE(def->infer, nullptr) << name;
  }
  EXPECT_EQ(FindOp("Add"), nullptr);
  EXPECT_EQ(FindOp("no_such_op"), nullptr);
  std::set<std::string_view> seen;
  for (auto n : AllOpNames()) EXPECT_TRUE(seen.insert(n).second) << "duplicate op " << n;
  EXPECT_EQ(AllOpNames().size(), spec.size() + FusedOpDefs().size() + TrainOpDefs().size() +
                                     DecodeOpDefs().size());
  EXPECT_TRUE(FindOp("dropout")->pure);  // counter-based: recomputable
  EXPECT_FALSE(FindOp("assign")->pure);
  EXPECT_TRUE(FindOp("add")->elementwise);
  EXPECT_FALSE(FindOp("matmul")->elementwise);
}

TEST(Ops, BroadcastShapes) {
  EXPECT_EQ(*BroadcastShapes({2, 1, 4}, {3, 1}), (Shape{2, 3, 4}));
  EXPECT_EQ(*BroadcastShapes({}, {5}), (Shape{5}));
  EXPECT_EQ(*BroadcastShapes({0, 1}, {1, 7}), (Shape{0, 7}));
  auto bad = BroadcastShapes({2, 3}, {4});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("[2,3]"), std::string::npos);
  EXPECT_NE(std::string(bad.status().message()).find("[4]"), std::string::npos);
}

TEST(Ops, ElementwiseBinary) {
  for (const char* op : {"add", "sub", "mul", "div", "pow", "max", "min"}) {
    EXPECT_EQ(Infer(op, {F32({2, 1, 4}), F32({3, 1})}), (std::vector{F32({2, 3, 4})})) << op;
  }
  EXPECT_EQ(Infer("add", {I64({2}), I64({})}), (std::vector{I64({2})}));
  ExpectError("add", {F32({2, 3}), F32({4})}, {}, {"broadcast", "f32[2,3]", "f32[4]"});
  ExpectError("mul", {F32({2}), I64({2})}, {}, {"dtype mismatch", "input 1", "i64[2]"});
  ExpectError("add", {Bool({2}), Bool({2})}, {}, {"bool"});
  ExpectError("add", {F32({2})}, {}, {"takes 2 inputs, got 1"});
  ExpectError("add", {F32({2}), F32({2})}, {}, {"outputs"}, /*num_outputs=*/2);
}

TEST(Ops, ComparisonsAndLogical) {
  for (const char* op : {"equal", "less", "greater", "less_equal", "greater_equal"}) {
    EXPECT_EQ(Infer(op, {F32({2, 3}), F32({3})}), (std::vector{Bool({2, 3})})) << op;
  }
  EXPECT_EQ(Infer("equal", {Bool({2}), Bool({2})}), (std::vector{Bool({2})}));
  for (const char* op : {"and", "or", "xor"}) {
    EXPECT_EQ(Infer(op, {Bool({4, 1}), Bool({5})}), (std::vector{Bool({4, 5})})) << op;
  }
  EXPECT_EQ(Infer("not", {Bool({3})}), (std::vector{Bool({3})}));
  ExpectError("and", {F32({2}), F32({2})}, {}, {"must be bool"});
  ExpectError("not", {I64({2})}, {}, {"must be bool"});
}

TEST(Ops, Where) {
  EXPECT_EQ(Infer("where", {Bool({2, 1}), F32({3}), F32({1, 1})}), (std::vector{F32({2, 3})}));
  ExpectError("where", {F32({2}), F32({2}), F32({2})}, {}, {"input 0", "bool"});
  ExpectError("where", {Bool({2}), F32({2}), I64({2})}, {}, {"dtype mismatch"});
  ExpectError("where", {Bool({2}), F32({3}), F32({3})}, {}, {"broadcast"});
}

TEST(Ops, Unary) {
  for (const char* op : {"neg", "abs", "sqrt", "reciprocal", "exp", "log", "erf", "tanh",
                         "sigmoid", "relu", "identity", "floor", "ceil"}) {
    EXPECT_EQ(Infer(op, {T(DType::kF16, {2, 3})}), (std::vector{T(DType::kF16, {2, 3})})) << op;
  }
  EXPECT_EQ(Infer("neg", {I64({2})}), (std::vector{I64({2})}));
  EXPECT_EQ(Infer("identity", {Bool({2})}), (std::vector{Bool({2})}));
  ExpectError("sqrt", {I64({2})}, {}, {"float"});
  ExpectError("exp", {F32({2}), F32({2})}, {}, {"takes 1 inputs, got 2"});
}

TEST(Ops, GeluAndCast) {
  EXPECT_EQ(Infer("gelu", {F32({4})}), (std::vector{F32({4})}));
  EXPECT_EQ(Infer("gelu", {F32({4})}, {{"approximate", std::string("tanh")}}),
            (std::vector{F32({4})}));
  ExpectError("gelu", {F32({4})}, {{"approximate", std::string("fast")}}, {"approximate", "fast"});
  EXPECT_EQ(Infer("cast", {F32({2, 2})}, {{"to", DType::kBF16}}),
            (std::vector{T(DType::kBF16, {2, 2})}));
  ExpectError("cast", {F32({2})}, {}, {"'to'", "required"});
  ExpectError("cast", {F32({2})}, {{"to", int64_t{1}}}, {"'to'", "dtype", "an integer"});
}

TEST(Ops, MatMul) {
  EXPECT_EQ(Infer("matmul", {F32({2, 3}), F32({3, 4})}), (std::vector{F32({2, 4})}));
  EXPECT_EQ(Infer("matmul", {F32({5, 1, 2, 3}), F32({7, 3, 4})}),
            (std::vector{F32({5, 7, 2, 4})}));
  EXPECT_EQ(Infer("matmul", {F32({3}), F32({3, 4})}), (std::vector{F32({4})}));
  EXPECT_EQ(Infer("matmul", {F32({2, 3}), F32({3})}), (std::vector{F32({2})}));
  EXPECT_EQ(Infer("matmul", {F32({3}), F32({3})}), (std::vector{F32({})}));
  ExpectError("matmul", {F32({2, 3}), F32({4, 5})}, {}, {"inner", "3 vs 4", "f32[2,3]", "f32[4,5]"});
  ExpectError("matmul", {F32({2, 2, 3}), F32({3, 3, 4})}, {}, {"batch"});
  ExpectError("matmul", {F32({}), F32({3})}, {}, {"rank >= 1"});
}

TEST(Ops, Gemm) {
  EXPECT_EQ(Infer("gemm", {F32({2, 3}), F32({3, 4})}), (std::vector{F32({2, 4})}));
  AttrMap t = {{"trans_a", int64_t{1}}, {"trans_b", int64_t{1}}, {"alpha", 2.0}};
  EXPECT_EQ(Infer("gemm", {F32({3, 2}), F32({4, 3}), F32({4})}, t), (std::vector{F32({2, 4})}));
  ExpectError("gemm", {F32({2, 3}), F32({3, 4}), F32({3})}, {}, {"bias", "f32[3]", "[2,4]"});
  ExpectError("gemm", {F32({2, 3}), F32({2, 4})}, {}, {"inner"});
  ExpectError("gemm", {F32({2, 3, 1}), F32({3, 4})}, {}, {"rank 2"});
  ExpectError("gemm", {F32({2, 3}), F32({3, 4})}, {{"alpha", std::string("x")}}, {"'alpha'"});
  ExpectError("gemm", {F32({2, 3}), F32({3, 4})}, {{"trans_a", int64_t{2}}}, {"trans_a"});
}

TEST(Ops, SoftmaxAndLayerNorm) {
  EXPECT_EQ(Infer("softmax", {F32({2, 5})}, {{"axis", int64_t{1}}}), (std::vector{F32({2, 5})}));
  EXPECT_EQ(Infer("log_softmax", {F32({2, 5})}, {{"axis", int64_t{0}}}),
            (std::vector{F32({2, 5})}));
  ExpectError("softmax", {F32({2, 5})}, {}, {"'axis'", "required"});
  ExpectError("softmax", {F32({2, 5})}, {{"axis", int64_t{-1}}}, {"'axis'", "-1", "[0, 2)"});
  ExpectError("softmax", {F32({2, 5})}, {{"axis", int64_t{2}}}, {"out of range"});

  AttrMap ln = {{"axis", int64_t{2}}, {"epsilon", 1e-5}};
  const auto x = T(DType::kF16, {2, 3, 4});
  EXPECT_EQ(Infer("layer_norm", {x, T(DType::kF16, {4})}, ln), (std::vector{x}));
  EXPECT_EQ(Infer("layer_norm", {x, T(DType::kF16, {4}), T(DType::kF16, {4})}, ln, 3),
            (std::vector{x, F32({2, 3, 1}), F32({2, 3, 1})}));
  AttrMap ln1 = {{"axis", int64_t{1}}};
  EXPECT_EQ(Infer("layer_norm", {F32({2, 3, 4}), F32({3, 4})}, ln1, 2),
            (std::vector{F32({2, 3, 4}), F32({2, 1, 1})}));
  ExpectError("layer_norm", {F32({2, 3, 4}), F32({3})}, ln, {"scale", "f32[3]", "[4]"});
  ExpectError("layer_norm", {F32({2, 4}), F32({4})}, {{"axis", int64_t{1}}}, {"outputs"}, 4);
  ExpectError("layer_norm", {F32({2, 4})}, {{"axis", int64_t{1}}}, {"takes 2 to 3 inputs"});
}

TEST(Ops, Reductions) {
  const auto x = F32({2, 3, 4});
  for (const char* op : {"reduce_sum", "reduce_mean", "reduce_max", "reduce_min"}) {
    EXPECT_EQ(Infer(op, {x}, {{"axes", std::vector<int64_t>{0, 2}}, {"keepdims", int64_t{0}}}),
              (std::vector{F32({3})}))
        << op;
    EXPECT_EQ(Infer(op, {x}, {{"axes", std::vector<int64_t>{1}}, {"keepdims", int64_t{1}}}),
              (std::vector{F32({2, 1, 4})}))
        << op;
    EXPECT_EQ(Infer(op, {x}, {{"axes", std::vector<int64_t>{}}, {"keepdims", int64_t{0}}}),
              (std::vector{F32({})}))
        << op;
  }
  ExpectError("reduce_sum", {x}, {{"axes", std::vector<int64_t>{2, 0}}}, {"sorted"});
  ExpectError("reduce_sum", {x}, {{"axes", std::vector<int64_t>{1, 1}}}, {"unique"});
  ExpectError("reduce_sum", {x}, {{"axes", std::vector<int64_t>{3}}}, {"'axes'", "3"});
  ExpectError("reduce_sum", {x}, {{"keepdims", int64_t{2}}}, {"keepdims"});
}

TEST(Ops, ReshapeExpandTranspose) {
  EXPECT_EQ(Infer("reshape", {F32({2, 3, 4})}, {{"shape", std::vector<int64_t>{6, 4}}}),
            (std::vector{F32({6, 4})}));
  ExpectError("reshape", {F32({2, 3})}, {{"shape", std::vector<int64_t>{4, 2}}},
              {"6 elements", "8 elements"});
  ExpectError("reshape", {F32({2, 3})}, {{"shape", std::vector<int64_t>{-1, 3}}}, {"-1"});
  ExpectError("reshape", {F32({2, 3})}, {}, {"'shape'", "required"});
  EXPECT_EQ(Infer("expand", {F32({3, 1})}, {{"shape", std::vector<int64_t>{2, 3, 4}}}),
            (std::vector{F32({2, 3, 4})}));
  ExpectError("expand", {F32({3, 2})}, {{"shape", std::vector<int64_t>{3, 4}}},
              {"f32[3,2]", "[3,4]"});
  ExpectError("expand", {F32({3})}, {{"shape", std::vector<int64_t>{1}}}, {"broadcast"});
  EXPECT_EQ(Infer("transpose", {F32({2, 3, 4})}, {{"perm", std::vector<int64_t>{2, 0, 1}}}),
            (std::vector{F32({4, 2, 3})}));
  ExpectError("transpose", {F32({2, 3})}, {{"perm", std::vector<int64_t>{0, 0}}}, {"permutation"});
  ExpectError("transpose", {F32({2, 3})}, {{"perm", std::vector<int64_t>{1, 0, 2}}},
              {"permutation"});
}

TEST(Ops, Split) {
  AttrMap a = {{"axis", int64_t{1}}, {"sizes", std::vector<int64_t>{1, 4}}};
  EXPECT_EQ(Infer("split", {F32({2, 5})}, a, 2), (std::vector{F32({2, 1}), F32({2, 4})}));
  ExpectError("split", {F32({2, 5})}, a, {"'sizes'", "2 entries", "3 outputs"}, 3);
  AttrMap bad = {{"axis", int64_t{1}}, {"sizes", std::vector<int64_t>{2, 2}}};
  ExpectError("split", {F32({2, 5})}, bad, {"sum to", "(5)"}, 2);
  AttrMap neg = {{"axis", int64_t{1}}, {"sizes", std::vector<int64_t>{-1, 6}}};
  ExpectError("split", {F32({2, 5})}, neg, {"non-negative"}, 2);
}

TEST(Ops, Slice) {
  AttrMap a = {{"starts", std::vector<int64_t>{0, 2, 1}},
               {"ends", std::vector<int64_t>{3, -1, 4}},
               {"steps", std::vector<int64_t>{2, -1, 1}}};
  // axis 0: ceil(3/2)=2; axis 1: indices 2,1,0 -> 3; axis 2: 1..4 -> 3
  EXPECT_EQ(Infer("slice", {F32({5, 3, 4})}, a), (std::vector{F32({2, 3, 3})}));
  AttrMap empty = {{"starts", std::vector<int64_t>{2}},
                   {"ends", std::vector<int64_t>{2}},
                   {"steps", std::vector<int64_t>{3}}};
  EXPECT_EQ(Infer("slice", {F32({4})}, empty), (std::vector{F32({0})}));
  AttrMap past = {{"starts", std::vector<int64_t>{0}},
                  {"ends", std::vector<int64_t>{5}},
                  {"steps", std::vector<int64_t>{1}}};
  ExpectError("slice", {F32({4})}, past, {"axis 0", "end=5", "normalized"});
  AttrMap zero = {{"starts", std::vector<int64_t>{0}},
                  {"ends", std::vector<int64_t>{1}},
                  {"steps", std::vector<int64_t>{0}}};
  ExpectError("slice", {F32({4})}, zero, {"step=0"});
  AttrMap short_attrs = {{"starts", std::vector<int64_t>{0}},
                         {"ends", std::vector<int64_t>{1}},
                         {"steps", std::vector<int64_t>{1}}};
  ExpectError("slice", {F32({4, 4})}, short_attrs, {"one entry per axis"});
}

TEST(Ops, ConcatGatherTrilu) {
  EXPECT_EQ(Infer("concat", {F32({2, 3}), F32({2, 1}), F32({2, 4})}, {{"axis", int64_t{1}}}),
            (std::vector{F32({2, 8})}));
  ExpectError("concat", {F32({2, 3}), F32({3, 3})}, {{"axis", int64_t{1}}},
              {"input 1", "f32[3,3]"});
  ExpectError("concat", {}, {{"axis", int64_t{0}}}, {"at least 1"});
  EXPECT_EQ(Infer("gather", {F32({10, 4}), I64({2, 3})}, {{"axis", int64_t{0}}}),
            (std::vector{F32({2, 3, 4})}));
  EXPECT_EQ(Infer("gather", {F32({10, 4}), T(DType::kI32, {})}, {{"axis", int64_t{1}}}),
            (std::vector{F32({10})}));
  ExpectError("gather", {F32({10, 4}), F32({2})}, {{"axis", int64_t{0}}}, {"i32 or i64"});
  ExpectError("gather", {F32({10, 4}), I64({2})}, {{"axis", int64_t{2}}}, {"'axis'"});
  EXPECT_EQ(Infer("trilu", {F32({2, 3, 3})}, {{"upper", int64_t{0}}, {"k", int64_t{-1}}}),
            (std::vector{F32({2, 3, 3})}));
  ExpectError("trilu", {F32({3})}, {}, {"rank >= 2"});
}

TEST(Ops, Constant) {
  Tensor t = Tensor::FromVector<float>(DType::kF32, {2}, {1.0f, 2.0f});
  EXPECT_EQ(Infer("constant", {}, {{"value", t}}), (std::vector{F32({2})}));
  ExpectError("constant", {}, {}, {"exactly one", "'value'", "'ref'"});
  ExpectError("constant", {}, {{"value", t}, {"ref", std::string("w")}}, {"exactly one"});
  ExpectError("constant", {}, {{"value", int64_t{3}}}, {"'value'", "a tensor"});
  auto ref = InferTypes("constant", {}, {{"ref", std::string("w")}});
  ASSERT_FALSE(ref.ok());
  EXPECT_EQ(ref.status().code(), absl::StatusCode::kFailedPrecondition);

  // InferNodeTypes resolves refs through the module.
  Module m;
  Function* f = m.AddFunction("main");
  Node* c = f->AddNode("constant", {}, {F32({3})}, {{"ref", std::string("w")}});
  EXPECT_EQ(*InferNodeTypes(*c, nullptr), (std::vector{F32({3})}));  // declared type accepted
  m.tensors()["w"] = Tensor(DType::kF32, {4});
  EXPECT_EQ(*InferNodeTypes(*c, &m), (std::vector{F32({4})}));
  m.tensors().clear();
  m.tensors()["other"] = Tensor(DType::kF32, {4});
  EXPECT_FALSE(InferNodeTypes(*c, &m).ok());
}

TEST(Ops, Losses) {
  const auto scores = F32({8, 10});
  EXPECT_EQ(Infer("softmax_ce_loss", {scores, I64({8})}), (std::vector{F32({})}));
  EXPECT_EQ(Infer("softmax_ce_loss", {scores, I64({8}), F32({10})},
                  {{"reduction", std::string("none")}, {"ignore_index", int64_t{-100}}}, 2),
            (std::vector{F32({8}), scores}));
  EXPECT_EQ(Infer("softmax_ce_loss", {F32({2, 5, 3, 4}), T(DType::kI32, {2, 3, 4})},
                  {{"reduction", std::string("none")}}),
            (std::vector{F32({2, 3, 4})}));
  ExpectError("softmax_ce_loss", {scores, I64({7})}, {}, {"labels", "i64[7]", "[8]"});
  ExpectError("softmax_ce_loss", {scores, F32({8})}, {}, {"i32 or i64"});
  ExpectError("softmax_ce_loss", {scores, I64({8}), F32({9})}, {}, {"weights", "f32[10]"});
  ExpectError("softmax_ce_loss", {scores, I64({8})}, {{"reduction", std::string("avg")}},
              {"'reduction'", "avg"});
  ExpectError("softmax_ce_loss", {F32({8}), I64({8})}, {}, {"rank >= 2"});
  ExpectError("softmax_ce_loss", {scores, I64({8})}, {}, {"outputs"}, 3);
  EXPECT_EQ(Infer("nll_loss", {scores, I64({8})}, {{"reduction", std::string("sum")}}),
            (std::vector{F32({})}));
  EXPECT_EQ(Infer("nll_loss", {scores, I64({8}), F32({10})}, {{"reduction", std::string("none")}}),
            (std::vector{F32({8})}));
  ExpectError("nll_loss", {scores, I64({8})}, {}, {"outputs"}, 2);
}

TEST(Ops, Dropout) {
  EXPECT_EQ(Infer("dropout", {F32({2, 3})}, {{"ratio", 0.1}, {"seed", int64_t{7}}}, 2),
            (std::vector{F32({2, 3}), Bool({2, 3})}));
  EXPECT_EQ(Infer("dropout", {F32({2, 3})}, {}), (std::vector{F32({2, 3})}));
  ExpectError("dropout", {F32({2})}, {{"ratio", 1.0}}, {"'ratio'", "[0, 1)"});
  EXPECT_EQ(Infer("dropout", {F32({2, 3}), I64({})}, {{"ratio", 0.1}}),
            (std::vector{F32({2, 3})}));
  ExpectError("dropout", {F32({2}), I64({1})}, {}, {"counter", "scalar"});
  ExpectError("dropout", {F32({2}), F32({})}, {}, {"i32 or i64"});
}

TEST(Ops, GemmBgrad) {
  const TensorType bf_x = T(DType::kBF16, {1024, 768}), bf_dy = T(DType::kBF16, {1024, 256});
  const AttrMap ta = {{"trans_a", int64_t{1}}};
  EXPECT_EQ(Infer("gemm_bgrad", {bf_x, bf_dy}, ta, 2),
            (std::vector{T(DType::kBF16, {768, 256}), T(DType::kBF16, {256})}));
  AttrMap f32_bias = ta;
  f32_bias["bias_dtype"] = DType::kF32;
  EXPECT_EQ(Infer("gemm_bgrad", {bf_x, bf_dy}, f32_bias, 2),
            (std::vector{T(DType::kBF16, {768, 256}), F32({256})}));
  AttrMap all_f32 = f32_bias;
  all_f32["dtype"] = DType::kF32;
  EXPECT_EQ(Infer("gemm_bgrad", {bf_x, bf_dy}, all_f32, 2),
            (std::vector{F32({768, 256}), F32({256})}));
  EXPECT_EQ(Infer("gemm_bgrad", {F32({3, 5}), F32({5, 2})}, {}, 2),
            (std::vector{F32({3, 2}), F32({2})}));
  ExpectError("gemm_bgrad", {F32({3, 5}), F32({4, 2})}, {}, {"inner", "f32[4,2]"}, 2);
  AttrMap f16_bias = ta;
  f16_bias["bias_dtype"] = DType::kF16;
  ExpectError("gemm_bgrad", {F32({5, 3}), F32({5, 2})}, f16_bias, {"bias_dtype", "f16"}, 2);
  ExpectError("gemm_bgrad", {bf_x, F32({1024, 256})}, ta, {"one dtype"}, 2);
  ExpectError("gemm_bgrad", {bf_x, bf_dy}, ta, {"2 outputs"}, 1);
}

// rotary: x's type out; tables f32 or x's dtype, one type for both, broadcasting to x's half.
TEST(Ops, Rotary) {
  const TensorType x = T(DType::kBF16, {2, 4, 16, 64});
  EXPECT_EQ(Infer("rotary", {x, F32({16, 32}), F32({16, 32})}), (std::vector{x}));
  EXPECT_EQ(Infer("rotary", {x, T(DType::kBF16, {2, 1, 16, 32}), T(DType::kBF16, {2, 1, 16, 32})},
                  {{"inverse", int64_t{1}}}),
            (std::vector{x}));
  EXPECT_EQ(Infer("rotary", {F32({3, 2}), F32({1}), F32({1})}), (std::vector{F32({3, 2})}));
  ExpectError("rotary", {F32({2, 5}), F32({2, 2}), F32({2, 2})}, {}, {"even", "f32[2,5]"});
  ExpectError("rotary", {x, F32({16, 64}), F32({16, 64})}, {}, {"broadcast", "[2,4,16,32]"});
  ExpectError("rotary", {x, F32({32, 32}), F32({32, 32})}, {}, {"broadcast"});
  ExpectError("rotary", {x, F32({16, 32}), T(DType::kBF16, {16, 32})}, {}, {"one type"});
  ExpectError("rotary", {x, T(DType::kF16, {16, 32}), T(DType::kF16, {16, 32})}, {},
              {"f32 or x's dtype"});
  ExpectError("rotary", {T(DType::kI64, {2, 4}), F32({2}), F32({2})}, {}, {"float"});
  ExpectError("rotary", {F32({2, 4}), F32({2}), F32({2})}, {{"inverse", int64_t{2}}},
              {"inverse", "0 or 1"});
}

// swiglu: one float type for g and u, no broadcast; swiglu_grad: (dg, du) of that type.
TEST(Ops, Swiglu) {
  const TensorType g = T(DType::kBF16, {2, 16, 64});
  EXPECT_EQ(Infer("swiglu", {g, g}), (std::vector{g}));
  EXPECT_EQ(Infer("swiglu", {F32({3}), F32({3})}), (std::vector{F32({3})}));
  EXPECT_TRUE(FindOp("swiglu")->elementwise);
  ExpectError("swiglu", {F32({2, 64}), F32({64})}, {}, {"one type", "broadcast", "f32[64]"});
  ExpectError("swiglu", {g, T(DType::kF32, {2, 16, 64})}, {}, {"one type", "bf16[2,16,64]"});
  ExpectError("swiglu", {I64({4}), I64({4})}, {}, {"float", "i64[4]"});
  EXPECT_EQ(Infer("swiglu_grad", {g, g, g}, {}, 2), (std::vector{g, g}));
  ExpectError("swiglu_grad", {F32({2, 64}), g, g}, {}, {"one type", "f32[2,64]"}, 2);
  ExpectError("swiglu_grad", {g, g, g}, {}, {"2 outputs"}, 1);
  ExpectError("swiglu_grad", {I64({4}), I64({4}), I64({4})}, {}, {"float"}, 2);
}

// fuse-gelu-aux's forms: fused_matmul's second output (the GELU's input, gelu activations
// only) and gemm_gelu_grad (pre is the product's [M, N] of its dtype).
TEST(Ops, GeluAuxForms) {
  const TensorType x = T(DType::kBF16, {2, 8, 32}), w = T(DType::kBF16, {32, 48});
  const TensorType b = T(DType::kBF16, {48}), y = T(DType::kBF16, {2, 8, 48});
  EXPECT_EQ(Infer("fused_matmul", {x, w, b}, {{"activation", std::string("gelu_tanh")}}, 2),
            (std::vector{y, y}));
  ExpectError("fused_matmul", {x, w, b}, {{"activation", std::string("relu")}},
              {"second output", "relu"}, 2);
  ExpectError("fused_matmul", {x, w, b}, {}, {"second output", "none"}, 2);
  const TensorType dy = T(DType::kBF16, {16, 48}), pre = T(DType::kBF16, {16, 32});
  EXPECT_EQ(Infer("gemm_gelu_grad", {dy, w, pre},
                  {{"trans_b", int64_t{1}}, {"approximate", std::string("tanh")}}),
            (std::vector{pre}));
  EXPECT_EQ(Infer("gemm_gelu_grad", {T(DType::kF32, {48, 16}), F32({48, 32}), F32({16, 32})},
                  {{"trans_a", int64_t{1}}}),
            (std::vector{F32({16, 32})}));
  ExpectError("gemm_gelu_grad", {dy, w, T(DType::kBF16, {16, 31})}, {{"trans_b", int64_t{1}}},
              {"pre", "bf16[16,32]", "bf16[16,31]"});
  ExpectError("gemm_gelu_grad", {dy, w, pre},
              {{"trans_b", int64_t{1}}, {"approximate", std::string("fast")}},
              {"approximate", "fast"});
  ExpectError("gemm_gelu_grad", {dy, w, pre}, {}, {"inner"});
}

// layer_norm_grad's optional addend (fuse-norm-grad-add) has x's type; a low-precision dy is
// allowed for an f32 x (fold-norm-casts).
TEST(Ops, LayerNormGradAddendAndLowDy) {
  const TensorType x = F32({4, 8}), p = F32({8}), st = F32({4, 1});
  const std::vector<TensorType> grads = {x, p, p};
  const AttrMap attrs = {{"axis", int64_t{1}}};
  EXPECT_EQ(Infer("layer_norm_grad", {x, x, p, st, st, x}, attrs, 3), grads);
  EXPECT_EQ(Infer("layer_norm_grad", {T(DType::kBF16, {4, 8}), x, p, st, st}, attrs, 3), grads);
  ExpectError("layer_norm_grad", {x, x, p, st, st, F32({4, 7})}, attrs, {"addend"}, 3);
  ExpectError("layer_norm_grad", {T(DType::kBF16, {4, 7}), x, p, st, st}, attrs, {"dy"}, 3);
  // dx_low (fold-norm-casts): a fourth output, dx in dy's low dtype, for an f32 x only.
  const TensorType low = T(DType::kBF16, {4, 8});
  std::vector<TensorType> four = grads;
  four.push_back(low);
  EXPECT_EQ(Infer("layer_norm_grad", {low, x, p, st, st, x}, attrs, 4), four);
  ExpectError("layer_norm_grad", {x, x, p, st, st}, attrs, {"fourth output", "f16 / bf16 dy"}, 4);
  // dx_low's dropout (fold-norm-casts): low_dropout / low_seed and the counter last, after the
  // addend or without it; only with dx_low.
  AttrMap drop = attrs;
  drop["low_dropout"] = 0.1;
  drop["low_seed"] = int64_t{3};
  EXPECT_EQ(Infer("layer_norm_grad", {low, x, p, st, st, x, I64({})}, drop, 4), four);
  EXPECT_EQ(Infer("layer_norm_grad", {low, x, p, st, st, T(DType::kI32, {})}, drop, 4), four);
  EXPECT_EQ(Infer("layer_norm_grad", {low, x, p, st, st}, drop, 4), four);
  ExpectError("layer_norm_grad", {low, x, p, st, st, I64({1})}, drop, {"counter", "scalar"}, 4);
  ExpectError("layer_norm_grad", {low, x, p, st, st, I64({}), x}, drop, {"counter"}, 4);
  ExpectError("layer_norm_grad", {low, x, p, st, st}, drop, {"dx_low"}, 3);
  AttrMap bad = drop;
  bad["low_dropout"] = 1.0;
  ExpectError("layer_norm_grad", {low, x, p, st, st}, bad, {"low_dropout", "[0, 1)"}, 4);
  // The helpers that tell the optional operands apart.
  Module m;
  Function* f = m.AddFunction("main");
  std::vector<Value*> ins;
  for (const TensorType& t : {low, x, p, st, st, x, I64({})}) {
    ins.push_back(f->AddParam(absl::StrCat("a", ins.size()), t));
  }
  Node* n = f->AddNode("layer_norm_grad", ins, four, drop);
  EXPECT_EQ(LayerNormGradAddend(*n), ins[5]);
  EXPECT_EQ(LayerNormGradCounter(*n), ins[6]);
  Node* plain = f->AddNode("layer_norm_grad", {ins[0], ins[1], ins[2], ins[3], ins[4]}, four, attrs);
  EXPECT_EQ(LayerNormGradAddend(*plain), nullptr);
  EXPECT_EQ(LayerNormGradCounter(*plain), nullptr);
}

// The one description of attention's operands that InferAttention and every kernel (CPU, the
// CUDA flash kernels, cuDNN) build on.
TEST(Ops, DescribeAttention) {
  const TensorType q = F32({2, 16, 4, 8}), k = F32({2, 20, 4, 8}), v = F32({2, 20, 4, 6});
  AttrMap attrs = {{"layout", std::string("bthd")}, {"causal", int64_t{1}}};
  auto p = DescribeAttention({q, k, v, Bool({16, 20})}, attrs);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->bthd && p->causal);
  EXPECT_EQ(p->b, 2);
  EXPECT_EQ(p->h, 4);
  EXPECT_EQ(p->tq, 16);
  EXPECT_EQ(p->tk, 20);
  EXPECT_EQ(p->d, 8);
  EXPECT_EQ(p->dv, 6);
  EXPECT_DOUBLE_EQ(p->scale, 1.0 / std::sqrt(8.0));
  EXPECT_EQ(p->mask_kind, 1);
  EXPECT_EQ(p->mask_strides, (std::array<int64_t, 4>{0, 0, 20, 1}));
  EXPECT_EQ(p->out_shape, (Shape{2, 16, 4, 6}));
  // An additive per-batch mask [B, 1, Tq, Tk] in bhtd, with an explicit scale.
  auto a = DescribeAttention({F32({2, 4, 16, 8}), F32({2, 4, 20, 8}), F32({2, 4, 20, 8}),
                              F32({2, 1, 16, 20})},
                             {{"scale", 0.5}});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->mask_kind, 2);
  EXPECT_EQ(a->mask_strides, (std::array<int64_t, 4>{320, 0, 20, 1}));
  EXPECT_DOUBLE_EQ(a->scale, 0.5);
  EXPECT_FALSE(a->causal);
  auto bad = DescribeAttention({q, k, v, Bool({3, 20})}, attrs);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("does not broadcast"), std::string::npos);
  attrs["causal"] = int64_t{2};
  EXPECT_FALSE(DescribeAttention({q, k, v}, attrs).ok());
  EXPECT_FALSE(
      DescribeAttention({q, F32({2, 20, 4, 7}), v}, {{"layout", std::string("bthd")}}).ok());
  EXPECT_EQ(p->hkv, 4);
}

// Grouped-query attention: k / v with fewer heads that divide q's, in both layouts; the output
// keeps q's heads and attention_grad's dk / dv keep k's / v's shapes.
TEST(Ops, DescribeAttentionGroupedQuery) {
  auto bthd = DescribeAttention({F32({2, 16, 8, 4}), F32({2, 20, 2, 4}), F32({2, 20, 2, 6})},
                                {{"layout", std::string("bthd")}});
  ASSERT_TRUE(bthd.ok()) << bthd.status();
  EXPECT_EQ(bthd->h, 8);
  EXPECT_EQ(bthd->hkv, 2);
  EXPECT_EQ(bthd->out_shape, (Shape{2, 16, 8, 6}));
  auto bhtd = DescribeAttention({F32({2, 6, 16, 4}), F32({2, 3, 20, 4}), F32({2, 3, 20, 4}),
                                 Bool({1, 6, 16, 20})},
                                {});
  ASSERT_TRUE(bhtd.ok()) << bhtd.status();
  EXPECT_EQ(bhtd->hkv, 3);
  EXPECT_EQ(bhtd->mask_strides, (std::array<int64_t, 4>{0, 320, 20, 1}));
  // 4 kv heads do not divide 6 query heads; k and v must agree on their heads.
  auto bad = DescribeAttention({F32({2, 6, 16, 4}), F32({2, 4, 20, 4}), F32({2, 4, 20, 4})}, {});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("must divide"), std::string::npos);
  EXPECT_FALSE(
      DescribeAttention({F32({2, 6, 16, 4}), F32({2, 3, 20, 4}), F32({2, 6, 20, 4})}, {}).ok());
  auto grad = InferTypes("attention_grad",
                         {F32({2, 6, 16, 4}), F32({2, 6, 16, 4}), F32({2, 3, 20, 4}),
                          F32({2, 3, 20, 4})},
                         {}, /*num_outputs=*/3);
  ASSERT_TRUE(grad.ok()) << grad.status();
  EXPECT_EQ((*grad)[1].shape, (Shape{2, 3, 20, 4}));
  EXPECT_EQ((*grad)[2].shape, (Shape{2, 3, 20, 4}));
}

TEST(Ops, UnknownOpAndBadInputShape) {
  auto r = InferTypes("frobnicate", {}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find("frobnicate"), std::string::npos);
  ExpectError("relu", {F32({-3})}, {}, {"invalid shape"});
}

TEST(Ops, AttrHelpers) {
  AttrMap a = {{"i", int64_t{3}}, {"f", 2.5}, {"s", std::string("x")}};
  EXPECT_EQ(*GetFloatAttr(a, "i"), 3.0);  // ints accepted as floats
  EXPECT_EQ(*GetIntAttr(a, "missing", 9), 9);
  auto bad = GetIntAttr(a, "f");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(std::string(bad.status().message()), "attribute 'f' must be an integer, got a float");
  EXPECT_EQ(std::string(GetStringAttr(a, "nope").status().message()),
            "attribute 'nope' is required");
}

}  // namespace
}  // namespace ptc::ir
