// Importer tests: small ONNX models built in C++; expected IR attributes are worked out by hand
// from the ONNX operator specs (https://onnx.ai/onnx/operators/), not taken from the importer.
#include "compiler/onnx/importer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "compiler/ir/printer.h"
#include "compiler/ir/verifier.h"
#include "compiler/onnx/import_test_util.h"
#include "compiler/onnx/onnx_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ptc::onnx_import {
namespace {

using ::ptc::onnx_import::testing::AttrF;
using ::ptc::onnx_import::testing::AttrI;
using ::ptc::onnx_import::testing::AttrInts;
using ::ptc::onnx_import::testing::AttrS;
using ::ptc::onnx_import::testing::Import;
using ::ptc::onnx_import::testing::ModelBuilder;
using ::ptc::onnx_import::testing::Nodes;
using ::ptc::onnx_import::testing::ResultConstant;
using ::ptc::onnx_import::testing::T;
using ::testing::HasSubstr;

constexpr int F32 = onnx::TensorProto::FLOAT;
constexpr int I64 = onnx::TensorProto::INT64;
constexpr int BOOL = onnx::TensorProto::BOOL;
constexpr int F16 = onnx::TensorProto::FLOAT16;

std::vector<int64_t> Ints(const ir::Node* n, const std::string& attr) {
  auto v = n->GetInts(attr);
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() ? *v : std::vector<int64_t>{};
}


TEST(ImportTest, ShapeChainFoldsIntoOneReshape) {
  // Shape -> Gather(0) -> Unsqueeze -> Concat([-1]) -> Reshape: the pattern torch emits for
  // x.view(x.size(0), -1).
  ModelBuilder b;
  b.Input("x", F32, {int64_t{2}, int64_t{3}, int64_t{4}});
  b.Node("Shape", {"x"}, {"s"});
  b.ConstI64("zero", {0}, /*scalar=*/true);
  AttrI(b.Node("Gather", {"s", "zero"}, {"d0"}), "axis", 0);
  b.ConstI64("axes0", {0});
  b.Node("Unsqueeze", {"d0", "axes0"}, {"d0u"});
  b.ConstI64("minus1", {-1});
  AttrI(b.Node("Concat", {"d0u", "minus1"}, {"shape"}), "axis", 0);
  b.Node("Reshape", {"x", "shape"}, {"y"}, "view");
  b.Output("y", F32, 2);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  auto nodes = Nodes(**m);
  ASSERT_EQ(nodes.size(), 1u) << ir::PrintModule(**m);
  EXPECT_EQ(nodes[0]->op(), "reshape");
  EXPECT_EQ(Ints(nodes[0], "shape"), (std::vector<int64_t>{2, 12}));
  EXPECT_EQ(nodes[0]->loc(), "view");
  EXPECT_EQ((*m)->main()->results()[0]->type(), T(ir::DType::kF32, {2, 12}));
}

// torch.onnx writes squeeze(x, 1) of a dynamic dim as If(shape[1] == 1, Squeeze, Identity):
// with the dims bound the condition folds and the taken branch is imported in place, its
// nodes reading the enclosing graph's values by name. A condition from the data is an error
// that says so.
ModelBuilder SqueezeIf(bool data_condition) {
  ModelBuilder b;
  b.Input("x", F32, {std::string("batch"), std::string("one"), int64_t{4}});
  if (data_condition) {
    b.Input("flag", onnx::TensorProto::BOOL, {});
  } else {
    b.Node("Shape", {"x"}, {"s"});
    b.ConstI64("i1", {1}, /*scalar=*/true);
    AttrI(b.Node("Gather", {"s", "i1"}, {"d1"}), "axis", 0);
    b.ConstI64("c1", {1}, /*scalar=*/true);
    b.Node("Equal", {"d1", "c1"}, {"flag"});
  }
  b.ConstI64("axes", {1});
  onnx::NodeProto* n = b.Node("If", {"flag"}, {"y"}, "squeeze_if");
  auto branch = [&](const char* name, bool squeeze) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::GRAPH);
    onnx::GraphProto* g = a->mutable_g();
    g->set_name(name);
    onnx::NodeProto* inner = g->add_node();
    inner->set_op_type(squeeze ? "Squeeze" : "Identity");
    inner->add_input("x");
    if (squeeze) inner->add_input("axes");
    inner->add_output(std::string(name) + "_y");
    onnx::ValueInfoProto* out = g->add_output();
    out->set_name(std::string(name) + "_y");
    out->mutable_type()->mutable_tensor_type()->set_elem_type(F32);
  };
  branch("then_branch", true);
  branch("else_branch", false);
  b.Node("Relu", {"y"}, {"z"});
  b.Output("z", F32, 2);
  return b;
}

TEST(ImportTest, IfWithAConditionKnownAtCompileTimeTakesItsBranch) {
  ImportOptions opts{.dims = {{"batch", 3}, {"one", 1}}};
  auto m = Import(SqueezeIf(false), opts);
  ASSERT_TRUE(m.ok()) << m.status();
  auto nodes = Nodes(**m);
  ASSERT_EQ(nodes.size(), 2u) << ir::PrintModule(**m);
  EXPECT_EQ(nodes[0]->op(), "reshape");
  EXPECT_EQ(nodes[1]->op(), "relu");
  EXPECT_EQ((*m)->main()->results()[0]->type(), T(ir::DType::kF32, {3, 4}));
  // The else branch (the dim is not 1): Identity, and the output keeps the rank.
  ModelBuilder other = SqueezeIf(false);
  other.graph()->mutable_output(0)->mutable_type()->mutable_tensor_type()->mutable_shape()->add_dim();
  opts.dims["one"] = 2;
  auto e = Import(other, opts);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ((*e)->main()->results()[0]->type(), T(ir::DType::kF32, {3, 2, 4}));
  auto data = Import(SqueezeIf(true), ImportOptions{.dims = {{"batch", 3}, {"one", 1}}});
  ASSERT_FALSE(data.ok());
  EXPECT_EQ(data.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(std::string(data.status().message()).find("computed from the data"),
            std::string::npos)
      << data.status();
  EXPECT_NE(std::string(data.status().message()).find("squeeze_if"), std::string::npos)
      << data.status();
}

TEST(ImportTest, ReshapeZeroCopiesAndMinusOneInfers) {
  ModelBuilder b;
  b.Input("x", F32, {int64_t{2}, int64_t{3}, int64_t{4}});
  b.ConstI64("shape", {0, -1});
  b.Node("Reshape", {"x", "shape"}, {"y"});
  b.Output("y", F32, 2);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(Ints(Nodes(**m, "reshape")[0], "shape"), (std::vector<int64_t>{2, 12}));
}

TEST(ImportTest, ReshapeAllowZeroKeepsZero) {
  ModelBuilder b;
  b.Input("x", F32, {int64_t{0}, int64_t{3}});
  b.ConstI64("shape", {3, 0});
  AttrI(b.Node("Reshape", {"x", "shape"}, {"y"}), "allowzero", 1);
  b.Output("y", F32, 2);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(Ints(Nodes(**m, "reshape")[0], "shape"), (std::vector<int64_t>{3, 0}));
}

TEST(ImportTest, ReshapeElementCountMismatchIsAnError) {
  ModelBuilder b;
  b.Input("x", F32, {int64_t{2}, int64_t{3}});
  b.ConstI64("shape", {4, -1});
  b.Node("Reshape", {"x", "shape"}, {"y"}, "bad_reshape");
  b.Output("y", F32, 2);
  auto m = ImportOnnxBytes(b.Bytes(), "", "test.onnx", {.run_checker = true});
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("test.onnx"));
}

TEST(ImportTest, FlattenSqueezeUnsqueezeBecomeReshape) {
  ModelBuilder b;
  b.Input("x", F32, {int64_t{2}, int64_t{3}, int64_t{4}});
  b.Input("s", F32, {int64_t{1}, int64_t{3}, int64_t{1}});
  b.Input("u", F32, {int64_t{3}});
  AttrI(b.Node("Flatten", {"x"}, {"fx"}), "axis", -1);
  b.Node("Squeeze", {"s"}, {"ss"});
  b.ConstI64("uaxes", {-1, 0});
  b.Node("Unsqueeze", {"u", "uaxes"}, {"uu"});
  b.Output("fx", F32, 2).Output("ss", F32, 1).Output("uu", F32, 3);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  auto r = Nodes(**m, "reshape");
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(Ints(r[0], "shape"), (std::vector<int64_t>{6, 4}));
  EXPECT_EQ(Ints(r[1], "shape"), (std::vector<int64_t>{3}));
  EXPECT_EQ(Ints(r[2], "shape"), (std::vector<int64_t>{1, 3, 1}));
}

TEST(ImportTest, SqueezeOfNonUnitAxisIsAnError) {
  ModelBuilder b;
  b.Input("x", F32, {int64_t{2}, int64_t{3}});
  b.ConstI64("axes", {0});
  b.Node("Squeeze", {"x", "axes"}, {"y"});
  b.Output("y", F32, 1);
  EXPECT_FALSE(Import(b).ok());
}

TEST(ImportTest, SliceClampsAndNormalizesPerOnnxRules) {
  ModelBuilder b;
  b.Input("x", F32, {int64_t{10}, int64_t{6}, int64_t{4}});
  b.ConstI64("starts", {-3, 100, -1});
  b.ConstI64("ends", {INT64_MAX, -100, -5});
  b.ConstI64("axes", {0, 1, -1});
  b.ConstI64("steps", {1, -2, -1});
  b.Node("Slice", {"x", "starts", "ends", "axes", "steps"}, {"y"});
  b.Output("y", F32, 3);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  const ir::Node* s = Nodes(**m, "slice")[0];
  // axis 0: start -3 -> 7, end INT64_MAX -> 10 (3 elements)
  // axis 1: step -2, start 100 -> 5, end -100 -> -94 -> -1: indices 5, 3, 1
  // axis 2: step -1, start -1 -> 3, end -5 -> -1 -> -1: indices 3, 2, 1, 0
  EXPECT_EQ(Ints(s, "starts"), (std::vector<int64_t>{7, 5, 3}));
  EXPECT_EQ(Ints(s, "ends"), (std::vector<int64_t>{10, -1, -1}));
  EXPECT_EQ(Ints(s, "steps"), (std::vector<int64_t>{1, -2, -1}));
  EXPECT_EQ(s->output()->type(), T(ir::DType::kF32, {3, 3, 4}));
}

TEST(ImportTest, SliceOmittedAxesAndStepsCoverLeadingDims) {
  ModelBuilder b;
  b.Input("x", F32, {int64_t{5}, int64_t{6}});
  b.ConstI64("starts", {1});
  b.ConstI64("ends", {-1});
  b.Node("Slice", {"x", "starts", "ends"}, {"y"});
  b.Output("y", F32, 2);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  const ir::Node* s = Nodes(**m, "slice")[0];
  EXPECT_EQ(Ints(s, "starts"), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(Ints(s, "ends"), (std::vector<int64_t>{4, 6}));
  EXPECT_EQ(Ints(s, "steps"), (std::vector<int64_t>{1, 1}));
}

TEST(ImportTest, ReduceAxesNormalization) {
  ModelBuilder b;
  b.Input("x", F32, {int64_t{2}, int64_t{3}, int64_t{4}});
  b.ConstI64("axes", {-1, 0});
  AttrI(b.Node("ReduceSum", {"x", "axes"}, {"sum"}), "keepdims", 0);
  AttrI(b.Node("ReduceSum", {"x"}, {"noop"}), "noop_with_empty_axes", 1);
  AttrInts(b.Node("ReduceMean", {"x"}, {"mean"}), "axes", {-2});
  b.Node("ReduceMax", {"x"}, {"max"});
  b.Output("sum", F32, 1).Output("noop", F32, 3).Output("mean", F32, 3).Output("max", F32, 3);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  auto sum = Nodes(**m, "reduce_sum");
  ASSERT_EQ(sum.size(), 1u);  // the noop ReduceSum made no node
  EXPECT_EQ(Ints(sum[0], "axes"), (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(sum[0]->output()->type(), T(ir::DType::kF32, {3}));
  EXPECT_EQ((*m)->main()->results()[1], (*m)->main()->params()[0]);
  const ir::Node* mean = Nodes(**m, "reduce_mean")[0];
  EXPECT_EQ(Ints(mean, "axes"), (std::vector<int64_t>{1}));
  EXPECT_EQ(mean->output()->type(), T(ir::DType::kF32, {2, 1, 4}));
  const ir::Node* max = Nodes(**m, "reduce_max")[0];
  EXPECT_EQ(Ints(max, "axes"), (std::vector<int64_t>{}));
  EXPECT_EQ(max->output()->type(), T(ir::DType::kF32, {1, 1, 1}));
}

TEST(ImportTest, SplitSizesFromInputOrEqualParts) {
  ModelBuilder b;
  b.Input("x", F32, {int64_t{2}, int64_t{4}});
  b.ConstI64("split", {1, 3});
  AttrI(b.Node("Split", {"x", "split"}, {"a", "b"}), "axis", -1);
  b.Node("Split", {"x"}, {"c", "d"});
  b.Output("a", F32, 2).Output("b", F32, 2).Output("c", F32, 2).Output("d", F32, 2);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  auto s = Nodes(**m, "split");
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(Ints(s[0], "sizes"), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(*s[0]->GetInt("axis"), 1);
  EXPECT_EQ(Ints(s[1], "sizes"), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(*s[1]->GetInt("axis"), 0);
}

TEST(ImportTest, UnevenEqualSplitIsAnError) {
  ModelBuilder b;
  b.Input("x", F32, {int64_t{3}});
  b.Node("Split", {"x"}, {"a", "b"}, "split3");
  b.Output("a", F32, 1).Output("b", F32, 1);
  auto m = ImportOnnxBytes(b.Bytes(), "", "test.onnx", {.run_checker = false});
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("split3"));
}

TEST(ImportTest, TriluExpandGemmAttributes) {
  ModelBuilder b;
  b.Input("x", F32, {int64_t{4}, int64_t{4}});
  b.Input("e", F32, {int64_t{3}, int64_t{1}});
  b.Input("a", F32, {int64_t{5}, int64_t{2}});
  b.Input("w", F32, {int64_t{5}, int64_t{3}});
  b.ConstI64("k", {-1}, /*scalar=*/true);
  AttrI(b.Node("Trilu", {"x", "k"}, {"t"}), "upper", 0);
  b.ConstI64("eshape", {2, 1, 6});
  b.Node("Expand", {"e", "eshape"}, {"ex"});
  auto* g = b.Node("Gemm", {"a", "w"}, {"gm"});
  AttrI(g, "transA", 1);
  AttrF(g, "alpha", 0.5f);
  b.Output("t", F32, 2).Output("ex", F32, 3).Output("gm", F32, 2);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  const ir::Node* t = Nodes(**m, "trilu")[0];
  EXPECT_EQ(*t->GetInt("k"), -1);
  EXPECT_EQ(*t->GetInt("upper"), 0);
  const ir::Node* ex = Nodes(**m, "expand")[0];
  EXPECT_EQ(Ints(ex, "shape"), (std::vector<int64_t>{2, 3, 6}));
  const ir::Node* gm = Nodes(**m, "gemm")[0];
  EXPECT_EQ(*gm->GetInt("trans_a"), 1);
  EXPECT_EQ(*gm->GetInt("trans_b"), 0);
  EXPECT_DOUBLE_EQ(*gm->GetFloat("alpha"), 0.5);
  EXPECT_DOUBLE_EQ(*gm->GetFloat("beta"), 1.0);
  EXPECT_EQ(gm->output()->type(), T(ir::DType::kF32, {2, 3}));
}

TEST(ImportTest, LayerNormOptionalOutputsAndStashType) {
  ModelBuilder b;
  b.Input("x", F32, {int64_t{2}, int64_t{3}, int64_t{4}});
  b.Input("g", F32, {int64_t{3}, int64_t{4}});
  auto* ln = b.Node("LayerNormalization", {"x", "g"}, {"y", "", "inv"});
  AttrI(ln, "axis", -2);
  b.Node("LayerNormalization", {"x", "g"}, {"y2"});
  AttrI(b.graph()->mutable_node(1), "axis", 1);
  b.Output("y", F32, 3).Output("inv", F32, 3).Output("y2", F32, 3);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  auto lns = Nodes(**m, "layer_norm");
  ASSERT_EQ(lns.size(), 2u);
  EXPECT_EQ(lns[0]->num_outputs(), 3u);
  EXPECT_EQ(*lns[0]->GetInt("axis"), 1);
  EXPECT_NEAR(*lns[0]->GetFloat("epsilon"), 1e-5, 1e-12);
  EXPECT_EQ(lns[0]->output(2)->type(), T(ir::DType::kF32, {2, 1, 1}));
  EXPECT_EQ(lns[1]->num_outputs(), 1u);

  ModelBuilder bad;
  bad.Input("x", F32, {int64_t{2}, int64_t{4}});
  bad.Input("g", F32, {int64_t{4}});
  AttrI(bad.Node("LayerNormalization", {"x", "g"}, {"y"}), "stash_type", 10);
  bad.Output("y", F32, 2);
  auto e = Import(bad);
  ASSERT_FALSE(e.ok());
  EXPECT_THAT(std::string(e.status().message()), HasSubstr("stash_type"));
}

TEST(ImportTest, CastDropoutIdentity) {
  ModelBuilder b;
  b.Input("x", F32, {int64_t{2}, int64_t{3}});
  AttrI(b.Node("Cast", {"x"}, {"h"}), "to", F16);
  b.Node("Dropout", {"x"}, {"d", "mask"});
  b.Node("Identity", {"d"}, {"i"});
  b.Output("h", F16, 2).Output("i", F32, 2).Output("mask", BOOL, 2);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  const ir::Node* c = Nodes(**m, "cast")[0];
  EXPECT_EQ(*c->GetDType("to"), ir::DType::kF16);
  EXPECT_TRUE(Nodes(**m, "dropout").empty());
  EXPECT_TRUE(Nodes(**m, "identity").empty());
  const auto& results = (*m)->main()->results();
  EXPECT_EQ(results[1], (*m)->main()->params()[0]);  // Dropout + Identity alias x
  EXPECT_EQ(results[2]->type(), T(ir::DType::kBool, {2, 3}));
  // Inference dropout: the mask is all true.
  EXPECT_EQ(ResultConstant(**m, 2), std::vector<double>(6, 1.0));
}

// A model exported in training mode keeps its dropouts (the training step applies them,
// inference plans strip them): ratio from the `ratio` input, 0.5 without it; ratio 0 is the
// identity. A training_mode computed at run time is an error that names the node.
TEST(ImportTest, DropoutInTrainingModeIsDropout) {
  ModelBuilder b;
  b.Input("x", F32, {int64_t{2}, int64_t{3}});
  auto* t = b.Node("Constant", {}, {"train"});
  auto* a = t->add_attribute();
  a->set_name("value");
  a->set_type(onnx::AttributeProto::TENSOR);
  a->mutable_t()->set_data_type(BOOL);
  a->mutable_t()->add_int32_data(1);
  AttrF(b.Node("Constant", {}, {"r"}), "value_float", 0.25f);
  AttrF(b.Node("Constant", {}, {"r0"}), "value_float", 0.0f);
  b.Node("Dropout", {"x", "r", "train"}, {"y", "mask"}, "drop");
  b.Node("Dropout", {"y", "", "train"}, {"z"}, "drop_half");
  b.Node("Dropout", {"z", "r0", "train"}, {"w"}, "drop_none");
  b.Output("w", F32, 2).Output("mask", BOOL, 2);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  std::vector<const ir::Node*> drops = Nodes(**m, "dropout");
  ASSERT_EQ(drops.size(), 2u);
  EXPECT_DOUBLE_EQ(*drops[0]->GetFloat("ratio"), 0.25);
  EXPECT_EQ(drops[0]->num_outputs(), 2u);
  EXPECT_DOUBLE_EQ(*drops[1]->GetFloat("ratio"), 0.5);
  EXPECT_EQ((*m)->main()->results()[0], drops[1]->output());  // ratio 0: the identity

  ModelBuilder r;
  r.Input("x", F32, {int64_t{2}});
  r.Input("flag", BOOL, {});
  r.Node("Dropout", {"x", "", "flag"}, {"y"}, "drop");
  r.Output("y", F32, 1);
  auto bad = Import(r);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("training_mode"));
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("drop"));
}

TEST(ImportTest, ConstantFormsShapeRangeConstantOfShape) {
  ModelBuilder b;
  b.Input("x", F32, {int64_t{3}, int64_t{4}, int64_t{5}});
  AttrF(b.Node("Constant", {}, {"cf"}), "value_float", 2.5f);
  AttrInts(b.Node("Constant", {}, {"ci"}), "value_ints", {7, 8});
  auto* sh = b.Node("Shape", {"x"}, {"s"});
  AttrI(sh, "start", -2);
  b.ConstI64("r0", {1}, true);
  b.ConstI64("r1", {10}, true);
  b.ConstI64("r2", {3}, true);
  b.Node("Range", {"r0", "r1", "r2"}, {"range"});
  b.ConstI64("cshape", {2, 2});
  auto* cos = b.Node("ConstantOfShape", {"cshape"}, {"cos"});
  auto* v = cos->add_attribute();
  v->set_name("value");
  v->set_type(onnx::AttributeProto::TENSOR);
  v->mutable_t()->set_data_type(I64);
  v->mutable_t()->add_dims(1);
  v->mutable_t()->add_int64_data(9);
  b.Node("Add", {"ci", "s"}, {"sum"});  // folded: [7+4, 8+5]
  b.Output("cf", F32, 0).Output("s", I64, 1).Output("range", I64, 1).Output("cos", I64, 2);
  b.Output("sum", I64, 1);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(ResultConstant(**m, 0), (std::vector<double>{2.5}));
  EXPECT_EQ(ResultConstant(**m, 1), (std::vector<double>{4, 5}));
  EXPECT_EQ(ResultConstant(**m, 2), (std::vector<double>{1, 4, 7}));
  EXPECT_EQ(ResultConstant(**m, 3), (std::vector<double>{9, 9, 9, 9}));
  EXPECT_EQ(ResultConstant(**m, 4), (std::vector<double>{11, 13}));
  EXPECT_TRUE(Nodes(**m, "add").empty());
}

TEST(ImportTest, FloatRangeSizeSumAndComparisons) {
  ModelBuilder b;
  b.Input("x", F32, {int64_t{2}, int64_t{3}});
  AttrF(b.Node("Constant", {}, {"start"}), "value_float", 1.0f);
  AttrF(b.Node("Constant", {}, {"limit"}), "value_float", 2.0f);
  AttrF(b.Node("Constant", {}, {"delta"}), "value_float", 0.25f);
  b.Node("Range", {"start", "limit", "delta"}, {"r"});
  b.Node("Size", {"x"}, {"n"});
  b.Node("Sum", {"x", "x", "x"}, {"s3"});
  b.Node("Equal", {"s3", "x"}, {"eq"});
  b.Node("Not", {"eq"}, {"ne"});
  b.Node("Where", {"ne", "s3", "x"}, {"w"});
  b.Output("r", F32, 1).Output("n", I64, 0).Output("w", F32, 2);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  // ceil((2 - 1) / 0.25) = 4 elements: 1, 1.25, 1.5, 1.75
  EXPECT_EQ(ResultConstant(**m, 0), (std::vector<double>{1.0, 1.25, 1.5, 1.75}));
  EXPECT_EQ(ResultConstant(**m, 1), (std::vector<double>{6}));
  EXPECT_EQ(Nodes(**m, "add").size(), 2u);  // Sum of three inputs: two adds
  EXPECT_EQ(Nodes(**m, "equal").size(), 1u);
  EXPECT_EQ(Nodes(**m, "not").size(), 1u);
  EXPECT_EQ(Nodes(**m, "where")[0]->output()->type(), T(ir::DType::kF32, {2, 3}));
}

TEST(ImportTest, HugeConstantOfShapeStaysAnExpand) {
  ModelBuilder b;
  b.ConstI64("shape", {4096, 8192});  // 128 MiB of f32: not folded into a stored constant
  b.Node("ConstantOfShape", {"shape"}, {"z"});
  b.OutputDims("z", F32, {int64_t{4096}, int64_t{8192}});
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  auto ex = Nodes(**m, "expand");
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(Ints(ex[0], "shape"), (std::vector<int64_t>{4096, 8192}));
  EXPECT_TRUE((*m)->tensors().empty());
}

TEST(ImportTest, LargeConstantsGoToModuleTensors) {
  ModelBuilder b;
  b.Input("x", F32, {int64_t{20}});
  auto* big = b.Node("Constant", {}, {"big"});
  testing::AttrFloats(big, "value_floats", std::vector<float>(20, 1.5f));
  auto* small = b.Node("Constant", {}, {"small"});
  testing::AttrFloats(small, "value_floats", {1, 2, 3, 4});
  b.Node("Add", {"x", "big"}, {"y"});
  b.ConstI64("st", {0});
  b.ConstI64("en", {4});
  b.Node("Slice", {"y", "st", "en"}, {"y4"});
  b.Node("Mul", {"y4", "small"}, {"z"});
  b.Output("z", F32, 1);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  auto consts = Nodes(**m, "constant");
  ASSERT_EQ(consts.size(), 2u) << ir::PrintModule(**m);
  ASSERT_TRUE(consts[0]->has_attr("ref"));
  std::string ref = *consts[0]->GetString("ref");
  ASSERT_EQ((*m)->tensors().count(ref), 1u);
  EXPECT_EQ((*m)->tensors().at(ref).num_elements(), 20);
  EXPECT_EQ((*m)->tensors().at(ref).GetDouble(19), 1.5);
  EXPECT_TRUE(consts[1]->has_attr("value"));
  // A smaller limit moves the small one out too.
  auto m2 = Import(b, {.inline_constant_limit = 2});
  ASSERT_TRUE(m2.ok()) << m2.status();
  for (const ir::Node* n : Nodes(**m2, "constant")) EXPECT_TRUE(n->has_attr("ref"));
}

TEST(ImportTest, InitializersBecomeParamsUnlessOnlyShapeData) {
  ModelBuilder b;
  b.Input("x", F32, {int64_t{2}, int64_t{3}});
  b.InitF("onnx::MatMul_7", {3, 2}, {1, 2, 3, 4, 5, 6});
  b.InitI64("shape", {1}, {4});
  b.Node("MatMul", {"x", "onnx::MatMul_7"}, {"y"});
  b.Node("Reshape", {"y", "shape"}, {"z"});
  b.Output("z", F32, 1);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  const auto& params = (*m)->main()->params();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0]->name(), "x");
  EXPECT_FALSE(params[0]->is_param());
  EXPECT_EQ(params[1]->name(), "onnx::MatMul_7");  // exact ONNX name
  EXPECT_TRUE(params[1]->is_param());
  ASSERT_EQ((*m)->tensors().count("onnx::MatMul_7"), 1u);
  EXPECT_EQ((*m)->tensors().at("onnx::MatMul_7").GetDouble(5), 6.0);
  EXPECT_EQ((*m)->tensors().count("shape"), 0u);
}

TEST(ImportTest, InitializerThatIsAlsoAnInputIsAParam) {
  ModelBuilder b;
  b.Input("x", F32, {int64_t{2}});
  b.Input("w", F32, {int64_t{2}});
  b.InitF("w", {2}, {1, 2});
  b.Node("Add", {"x", "w"}, {"y"});
  b.Output("y", F32, 1);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  const auto& params = (*m)->main()->params();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_TRUE(params[1]->is_param());
  EXPECT_EQ((*m)->tensors().count("w"), 1u);
}

TEST(ImportTest, TypedDataFields) {
  ModelBuilder b;
  b.Input("x", F32, {int64_t{1}});
  b.Node("Identity", {"x"}, {"xo"});
  auto add = [&](const std::string& name, int type, std::vector<int64_t> dims) {
    auto* t = b.graph()->add_initializer();
    t->set_name(name);
    t->set_data_type(type);
    for (int64_t d : dims) t->add_dims(d);
    b.OutputDims(name, type, {dims.begin(), dims.end()});
    return t;
  };
  add("f64", onnx::TensorProto::DOUBLE, {2})->add_double_data(0.25);
  b.graph()->mutable_initializer(0)->add_double_data(-8);
  auto* h = add("f16", F16, {2});
  h->add_int32_data(0x3C00);  // 1.0
  h->add_int32_data(0xC000);  // -2.0
  auto* bo = add("b", BOOL, {3});
  for (int v : {1, 0, 1}) bo->add_int32_data(v);
  auto* i8 = add("i8", onnx::TensorProto::INT8, {2});
  i8->add_int32_data(-128);
  i8->add_int32_data(127);
  auto* raw = add("raw", onnx::TensorProto::INT32, {2});
  int32_t vals[2] = {-5, 70000};
  raw->set_raw_data(std::string(reinterpret_cast<char*>(vals), sizeof(vals)));
  b.Output("xo", F32, 1);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  const auto& t = (*m)->tensors();
  ASSERT_EQ(t.count("f64"), 1u);
  EXPECT_EQ(t.at("f64").GetDouble(0), 0.25);
  EXPECT_EQ(t.at("f64").GetDouble(1), -8.0);
  EXPECT_EQ(t.at("f16").GetDouble(0), 1.0);
  EXPECT_EQ(t.at("f16").GetDouble(1), -2.0);
  EXPECT_EQ(t.at("b").GetInt(0), 1);
  EXPECT_EQ(t.at("b").GetInt(1), 0);
  EXPECT_EQ(t.at("i8").GetInt(0), -128);
  EXPECT_EQ(t.at("i8").GetInt(1), 127);
  EXPECT_EQ(t.at("raw").GetInt(1), 70000);
}

TEST(ImportTest, MalformedTensorDataIsAnErrorNotACrash) {
  struct Case {
    std::string what;
    std::function<void(onnx::TensorProto*)> edit;
  };
  std::vector<Case> cases = {
      {"raw_data", [](onnx::TensorProto* t) {
         t->clear_float_data();
         t->set_raw_data(std::string(7, 'x'));
       }},
      {"float_data", [](onnx::TensorProto* t) { t->add_float_data(1); }},
      {"negative", [](onnx::TensorProto* t) { t->set_dims(0, -4); }},
      {"too many", [](onnx::TensorProto* t) {
         t->set_dims(0, int64_t{1} << 40);
         t->add_dims(int64_t{1} << 40);
       }},
      {"not supported", [](onnx::TensorProto* t) { t->set_data_type(onnx::TensorProto::STRING); }},
  };
  for (const auto& c : cases) {
    ModelBuilder b;
    b.Input("x", F32, {int64_t{2}});
    c.edit(b.InitF("w", {2}, {1, 2}));
    b.Node("Add", {"x", "w"}, {"y"});
    b.Output("y", F32, 1);
    for (bool checker : {true, false}) {
      auto m = ImportOnnxBytes(b.Bytes(), "", "test.onnx", {.run_checker = checker});
      ASSERT_FALSE(m.ok()) << c.what;
      EXPECT_THAT(std::string(m.status().message()), HasSubstr("'w'")) << c.what;
    }
  }
}

TEST(ImportTest, HugeOrNegativeInputDimsAreErrors) {
  for (int64_t d : {int64_t{-3}, int64_t{1} << 62}) {
    ModelBuilder b;
    b.Input("x", F32, {d, d});
    b.Node("Relu", {"x"}, {"y"});
    b.Output("y", F32, 2);
    auto m = ImportOnnxBytes(b.Bytes(), "", "test.onnx", {.run_checker = false});
    ASSERT_FALSE(m.ok());
    EXPECT_THAT(std::string(m.status().message()), HasSubstr("'x'"));
  }
}

TEST(ImportTest, SymbolicDimsBound) {
  ModelBuilder b;
  b.Input("ids", I64, {std::string("batch"), std::string("seq")});
  b.Input("w", F32, {int64_t{10}, int64_t{4}});
  AttrI(b.Node("Gather", {"w", "ids"}, {"e"}), "axis", 0);
  b.OutputDims("e", F32, {std::string("batch"), std::string("seq"), int64_t{4}});
  auto m = Import(b, {.dims = {{"batch", 2}, {"seq", 7}}});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->main()->params()[0]->type(), T(ir::DType::kI64, {2, 7}));
  EXPECT_EQ((*m)->main()->results()[0]->type(), T(ir::DType::kF32, {2, 7, 4}));
}

TEST(ImportTest, SymbolicDimUnboundNamesDimInputAndFlag) {
  ModelBuilder b;
  b.Input("ids", I64, {std::string("batch"), int64_t{8}});
  b.Node("Neg", {"ids"}, {"y"});
  b.Output("y", I64, 2);
  auto m = Import(b);
  ASSERT_FALSE(m.ok());
  std::string msg(m.status().message());
  EXPECT_THAT(msg, HasSubstr("'batch'"));
  EXPECT_THAT(msg, HasSubstr("graph input 'ids'"));
  EXPECT_THAT(msg, HasSubstr("--dim batch=N"));
  EXPECT_THAT(msg, HasSubstr("test.onnx"));
}

TEST(ImportTest, UnsupportedOpErrorNamesOpOpsetNodeAndFile) {
  ModelBuilder b;
  b.Input("x", F32, {int64_t{1}, int64_t{1}, int64_t{4}, int64_t{4}});
  b.InitF("k", {1, 1, 3, 3}, std::vector<float>(9, 1.0f));
  b.Node("Conv", {"x", "k"}, {"y"}, "my_conv");
  b.Output("y", F32, 4);
  auto m = Import(b);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kUnimplemented);
  std::string msg(m.status().message());
  EXPECT_THAT(msg, HasSubstr("Conv"));
  EXPECT_THAT(msg, HasSubstr("opset 17"));
  EXPECT_THAT(msg, HasSubstr("my_conv"));
  EXPECT_THAT(msg, HasSubstr("test.onnx"));
}

TEST(ImportTest, OldOpsetWithChangedOpIsAnError) {
  ModelBuilder b(/*opset=*/11);
  b.Input("x", F32, {int64_t{3}});
  AttrInts(b.Node("Unsqueeze", {"x"}, {"y"}), "axes", {0});  // Unsqueeze changed in opset 13
  b.Output("y", F32, 2);
  auto m = Import(b);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("opset 11"));
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("convert_version"));
}

TEST(ImportTest, OldOpsetWithUnchangedOpsIsAccepted) {
  ModelBuilder b(/*opset=*/7);
  b.Input("a", BOOL, {int64_t{3}});
  b.Input("c", BOOL, {int64_t{3}});
  b.Node("Xor", {"a", "c"}, {"y"});  // Xor is unchanged since opset 7
  b.Output("y", BOOL, 1);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(Nodes(**m, "xor").size(), 1u);
}

TEST(ImportTest, OtherDomainIsAnError) {
  ModelBuilder b;
  auto* ml = b.model.add_opset_import();
  ml->set_domain("ai.onnx.ml");
  ml->set_version(3);
  b.Input("x", F32, {int64_t{2}, int64_t{3}});
  auto* n = b.Node("Normalizer", {"x"}, {"y"}, "norm");
  n->set_domain("ai.onnx.ml");
  AttrS(n, "norm", "MAX");
  b.Output("y", F32, 2);
  auto m = Import(b);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("ai.onnx.ml"));
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("norm"));
}

TEST(ImportTest, RuntimeShapeOperandIsAnErrorUnlessGivenAValue) {
  ModelBuilder b;
  b.Input("x", F32, {int64_t{2}, int64_t{3}});
  b.Input("shape", I64, {int64_t{1}});
  b.Node("Reshape", {"x", "shape"}, {"y"}, "dyn");
  b.Output("y", F32, 1);
  auto m = Import(b);
  ASSERT_FALSE(m.ok());
  std::string msg(m.status().message());
  EXPECT_THAT(msg, HasSubstr("Reshape"));
  EXPECT_THAT(msg, HasSubstr("dyn"));
  EXPECT_THAT(msg, HasSubstr("'shape'"));
  ImportOptions o;
  o.input_values["shape"] = ir::Tensor::FromVector<int64_t>(ir::DType::kI64, {1}, {6});
  auto ok = Import(b, o);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(Ints(Nodes(**ok, "reshape")[0], "shape"), (std::vector<int64_t>{6}));
}

TEST(ImportTest, NamesLocsAndMetadata) {
  ModelBuilder b;
  b.model.set_producer_name("pytorch");
  b.Input("x", F32, {int64_t{2}});
  b.Node("Relu", {"x"}, {"/h.0/Relu_output_0"}, "/h.0/Relu");
  b.Node("Neg", {"/h.0/Relu_output_0"}, {"y"});
  b.Output("y", F32, 1);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  auto nodes = Nodes(**m);
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_EQ(nodes[0]->loc(), "/h.0/Relu");
  EXPECT_EQ(nodes[0]->output()->name(), "_h.0_Relu_output_0");
  EXPECT_EQ(nodes[1]->loc(), "Neg_1");
  EXPECT_EQ((*m)->metadata().at("source"), "test.onnx");
  EXPECT_EQ((*m)->metadata().at("opset"), "17");
  EXPECT_EQ((*m)->metadata().at("producer"), "pytorch");
}

TEST(ImportTest, NodesOutOfOrderAreSortedTopologically) {
  ModelBuilder b;
  b.Input("x", F32, {int64_t{2}});
  b.Node("Neg", {"r"}, {"y"}, "second");
  b.Node("Relu", {"x"}, {"r"}, "first");
  b.Output("y", F32, 1);
  // The checker rejects unsorted graphs; without it the importer sorts.
  EXPECT_FALSE(Import(b).ok());
  auto m = ImportOnnxBytes(b.Bytes(), "", "test.onnx", {.run_checker = false});
  ASSERT_TRUE(m.ok()) << m.status();
  auto nodes = Nodes(**m);
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_EQ(nodes[0]->loc(), "first");
  EXPECT_EQ(nodes[1]->loc(), "second");
}

TEST(ImportTest, PowMixedTypesMaxVariadicAndAxes) {
  ModelBuilder b;
  b.Input("x", F32, {int64_t{2}, int64_t{3}});
  b.Input("p", I64, {});
  b.Input("i", I64, {int64_t{2}});
  b.Node("Pow", {"x", "p"}, {"pw"});
  b.Node("Max", {"x", "x", "pw"}, {"mx"});
  AttrI(b.Node("Softmax", {"mx"}, {"sm"}), "axis", -1);
  b.Node("Transpose", {"sm"}, {"tr"});
  AttrI(b.Node("Concat", {"tr", "tr"}, {"cc"}), "axis", -2);
  AttrI(b.Node("Gather", {"cc", "i"}, {"g"}), "axis", -1);
  b.Output("g", F32, 2);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  const ir::Node* pw = Nodes(**m, "pow")[0];
  EXPECT_EQ(pw->input(1)->producer()->op(), "cast");  // exponent cast to f32
  EXPECT_EQ(Nodes(**m, "max").size(), 2u);
  EXPECT_EQ(*Nodes(**m, "softmax")[0]->GetInt("axis"), 1);
  EXPECT_EQ(Ints(Nodes(**m, "transpose")[0], "perm"), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(*Nodes(**m, "concat")[0]->GetInt("axis"), 0);
  EXPECT_EQ(*Nodes(**m, "gather")[0]->GetInt("axis"), 1);
  EXPECT_EQ((*m)->main()->results()[0]->type(), T(ir::DType::kF32, {6, 2}));
}

TEST(ImportTest, SoftmaxCrossEntropyLoss) {
  ModelBuilder b;
  b.Input("scores", F32, {int64_t{4}, int64_t{5}});
  b.Input("labels", I64, {int64_t{4}});
  auto* n = b.Node("SoftmaxCrossEntropyLoss", {"scores", "labels"}, {"loss", "logp"});
  AttrS(n, "reduction", "sum");
  AttrI(n, "ignore_index", -100);
  b.Output("loss", F32, 0).Output("logp", F32, 2);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  const ir::Node* l = Nodes(**m, "softmax_ce_loss")[0];
  EXPECT_EQ(*l->GetString("reduction"), "sum");
  EXPECT_EQ(*l->GetInt("ignore_index"), -100);
  EXPECT_EQ(l->num_outputs(), 2u);
  EXPECT_EQ(l->output(0)->type(), T(ir::DType::kF32, {}));
}

// Every prefix of a valid model and random bit flips: an error or a valid module, never a
// crash.
TEST(ImportTest, TruncatedAndBitFlippedBytes) {
  ModelBuilder b;
  b.Input("x", F32, {int64_t{2}, int64_t{3}});
  b.InitF("w", {3, 2}, {1, 2, 3, 4, 5, 6});
  b.Node("MatMul", {"x", "w"}, {"y"}, "mm");
  b.ConstI64("shape", {-1});
  b.Node("Reshape", {"y", "shape"}, {"z"});
  b.Output("z", F32, 1);
  std::string bytes = b.Bytes();
  ASSERT_TRUE(ImportOnnxBytes(bytes, "", "t.onnx").ok());
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto m = ImportOnnxBytes(bytes.substr(0, n), "", "t.onnx");
    EXPECT_FALSE(m.ok()) << "prefix of " << n << " bytes imported";
  }
  std::mt19937 rng(42);
  for (int i = 0; i < 400; ++i) {
    std::string flipped = bytes;
    for (int k = 0; k < 1 + i % 3; ++k) {
      size_t pos = rng() % flipped.size();
      flipped[pos] = static_cast<char>(flipped[pos] ^ (1 << (rng() % 8)));
    }
    for (bool checker : {true, false}) {
      auto m = ImportOnnxBytes(flipped, "", "t.onnx", {.run_checker = checker});
      if (m.ok()) EXPECT_TRUE(ir::Verify(**m).ok()) << ir::PrintModule(**m);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// External data

class ExternalDataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::path(::testing::TempDir()) /
            ("ptc_onnx_ext_" + std::to_string(::getpid()));
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_ / "model" / "sub");
    // 64 junk bytes then 4 floats, so offset 64 is aligned (borrowed) and 4 is not (copied).
    std::string data(64, 'j');
    float w[4] = {1.5f, -2.0f, 3.25f, 4.0f};
    data.append(reinterpret_cast<const char*>(w), sizeof(w));
    Write(root_ / "model" / "sub" / "w.bin", data);
    Write(root_ / "model" / "w4.bin", std::string(4, 'j') + std::string(data, 64));
    Write(root_ / "outside.bin", data);
    std::filesystem::create_symlink(root_ / "outside.bin", root_ / "model" / "link.bin");
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  static void Write(const std::filesystem::path& p, const std::string& s) {
    std::ofstream f(p, std::ios::binary);
    f.write(s.data(), static_cast<std::streamsize>(s.size()));
  }

  // Writes model.onnx with `w` (f32[4]) stored externally and imports it.
  absl::StatusOr<std::unique_ptr<ir::Module>> ImportWith(const std::string& location,
                                                         const std::string& offset,
                                                         const std::string& length) {
    ModelBuilder b;
    b.Input("x", F32, {int64_t{4}});
    auto* t = b.graph()->add_initializer();
    t->set_name("w");
    t->set_data_type(F32);
    t->add_dims(4);
    t->set_data_location(onnx::TensorProto::EXTERNAL);
    auto add = [&](const std::string& k, const std::string& v) {
      if (v.empty()) return;
      auto* e = t->add_external_data();
      e->set_key(k);
      e->set_value(v);
    };
    add("location", location);
    add("offset", offset);
    add("length", length);
    b.Node("Add", {"x", "w"}, {"y"});
    b.Output("y", F32, 1);
    std::string path = (root_ / "model" / "model.onnx").string();
    Write(path, b.Bytes());
    return ImportOnnxFile(path);
  }

  std::filesystem::path root_;
};

TEST_F(ExternalDataTest, ReadsAlignedAndUnalignedData) {
  for (auto [loc, off] : {std::pair<std::string, std::string>{"sub/w.bin", "64"},
                          {"w4.bin", "4"}}) {
    auto m = ImportWith(loc, off, "16");
    ASSERT_TRUE(m.ok()) << m.status();
    const ir::Tensor& w = (*m)->tensors().at("w");
    EXPECT_EQ(w.GetDouble(0), 1.5);
    EXPECT_EQ(w.GetDouble(1), -2.0);
    EXPECT_EQ(w.GetDouble(2), 3.25);
    EXPECT_EQ(w.GetDouble(3), 4.0);
  }
  // No length: the rest of the file.
  auto m = ImportWith("sub/w.bin", "64", "");
  ASSERT_TRUE(m.ok()) << m.status();
}

TEST_F(ExternalDataTest, RejectsEscapes) {
  auto up = ImportWith("../outside.bin", "64", "16");
  ASSERT_FALSE(up.ok());
  EXPECT_THAT(std::string(up.status().message()), HasSubstr(".."));
  auto up2 = ImportWith("sub/../../outside.bin", "64", "16");
  ASSERT_FALSE(up2.ok());
  auto abs = ImportWith((root_ / "outside.bin").string(), "64", "16");
  ASSERT_FALSE(abs.ok());
  EXPECT_THAT(std::string(abs.status().message()), HasSubstr("absolute"));
  auto link = ImportWith("link.bin", "64", "16");
  ASSERT_FALSE(link.ok());
  EXPECT_THAT(std::string(link.status().message()), HasSubstr("outside the model's folder"));
}

TEST_F(ExternalDataTest, RejectsShortFilesAndSizeMismatch) {
  auto past = ImportWith("sub/w.bin", "100", "16");  // file is 80 bytes
  ASSERT_FALSE(past.ok());
  EXPECT_THAT(std::string(past.status().message()), HasSubstr("'w'"));
  auto short_file = ImportWith("sub/w.bin", "72", "16");
  ASSERT_FALSE(short_file.ok());
  EXPECT_THAT(std::string(short_file.status().message()), HasSubstr("truncated"));
  auto wrong_len = ImportWith("sub/w.bin", "64", "12");
  ASSERT_FALSE(wrong_len.ok());
  EXPECT_THAT(std::string(wrong_len.status().message()), HasSubstr("f32[4]"));
  auto missing = ImportWith("nope.bin", "0", "16");
  ASSERT_FALSE(missing.ok());
  auto neg = ImportWith("sub/w.bin", "-1", "16");
  ASSERT_FALSE(neg.ok());
  // Bytes without a folder: no external data at all.
  ModelBuilder b;
  b.Input("x", F32, {int64_t{4}});
  auto* t = b.InitF("w", {4}, {});
  t->set_data_location(onnx::TensorProto::EXTERNAL);
  auto* e = t->add_external_data();
  e->set_key("location");
  e->set_value("sub/w.bin");
  b.Node("Add", {"x", "w"}, {"y"});
  b.Output("y", F32, 1);
  EXPECT_FALSE(ImportOnnxBytes(b.Bytes(), "", "bytes").ok());
}

TEST(ImportTest, SupportedOpsListsTheBriefsOps) {
  auto ops = SupportedOnnxOps();
  for (const char* op : {"MatMul", "Gemm", "LayerNormalization", "Reshape", "Slice", "Split",
                         "SoftmaxCrossEntropyLoss", "Trilu", "Range", "Shape", "Where"}) {
    EXPECT_NE(std::find(ops.begin(), ops.end(), op), ops.end()) << op;
  }
  EXPECT_EQ(std::find(ops.begin(), ops.end(), "Conv"), ops.end());
}

}  // namespace
}  // namespace ptc::onnx_import
