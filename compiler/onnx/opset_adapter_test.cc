// Models of opsets newer than 17 (opset_adapter.h) and the operators torch.onnx's dynamo
// exporter writes (CumSum / GatherND on constants, Pad, IsNaN, CastLike, SplitToSequence,
// its graph signature): small ONNX models built here, the expected IR and folded values worked
// out by hand from the ONNX operator specs.
#include "compiler/onnx/opset_adapter.h"

#include <algorithm>
#include <cmath>

#include "compiler/ir/printer.h"
#include "compiler/ir/verifier.h"
#include "compiler/onnx/importer.h"
#include "compiler/onnx/import_test_util.h"
#include "compiler/onnx/onnx_test_util.h"
#include "gmock/gmock.h"
#include "google/protobuf/unknown_field_set.h"
#include "gtest/gtest.h"

namespace ptc::onnx_import {
namespace {

using namespace ::ptc::onnx_import::testing;  // NOLINT: ModelBuilder, Attr*, Import, ...
using ::testing::HasSubstr;

void ConstF32(ModelBuilder& b, const std::string& name, const std::vector<int64_t>& dims,
              const std::vector<float>& v) {
  auto* n = b.Node("Constant", {}, {name}, name + "_node");
  auto* a = n->add_attribute();
  a->set_name("value");
  a->set_type(onnx::AttributeProto::TENSOR);
  auto* t = a->mutable_t();
  t->set_data_type(F32);
  for (int64_t d : dims) t->add_dims(d);
  for (float x : v) t->add_float_data(x);
}

TEST(OpsetAdapterTest, TheTableCoversTheOpsetsTorchWrites) {
  // torch.onnx's dynamo exporter writes opset 18 by default in torch 2.5-2.8, 20 in 2.9+, and
  // up to 23 on request.
  EXPECT_GE(NewestAdaptableOpset(), 23);
}

TEST(OpsetAdapterTest, OpsetNewerThanTheTableIsAnError) {
  ModelBuilder b(/*opset=*/NewestAdaptableOpset() + 1);
  b.Input("x", F32, {int64_t{3}});
  b.Node("Relu", {"x"}, {"y"});
  b.Output("y", F32, 1);
  auto m = Import(b);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()),
              HasSubstr(absl::StrCat("opset ", NewestAdaptableOpset() + 1)));
}

TEST(OpsetAdapterTest, IrVersion10AndTypeOnlyChangesImport) {
  ModelBuilder b(/*opset=*/21);
  b.model.set_ir_version(10);
  b.Input("x", F32, {int64_t{2}, int64_t{3}});
  b.ConstI64("shape", {3, 2});
  b.Node("Reshape", {"x", "shape"}, {"r"});                    // 19, 21: types only
  AttrInts(b.Node("Transpose", {"r"}, {"t"}), "perm", {1, 0});  // 21: types only
  b.Node("Relu", {"t"}, {"y"});
  b.Output("y", F32, 2);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->main()->results()[0]->type(), T(ir::DType::kF32, {2, 3}));
  EXPECT_EQ((*m)->metadata().at("opset"), "21");
}

TEST(OpsetAdapterTest, ReduceAxesInputConstantOrFoldedAndNoop) {
  ModelBuilder b(/*opset=*/18);
  b.Input("x", F32, {int64_t{2}, int64_t{3}, int64_t{4}});
  b.ConstI64("axes", {-1});
  // Axes computed from constants (torch's export without its optimizer): Reshape of a constant.
  b.ConstI64("axes_flat", {0, 1});
  b.ConstI64("two", {2});
  b.Node("Reshape", {"axes_flat", "two"}, {"axes2"});
  AttrI(b.Node("ReduceMean", {"x", "axes"}, {"mean"}), "keepdims", 1);
  AttrI(b.Node("ReduceMax", {"x", "axes2"}, {"max"}), "keepdims", 0);
  AttrI(b.Node("ReduceMin", {"x"}, {"noop"}), "noop_with_empty_axes", 1);
  b.Node("ReduceMean", {"x"}, {"all"});
  b.Output("mean", F32, 3).Output("max", F32, 1).Output("noop", F32, 3).Output("all", F32, 3);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  auto means = Nodes(**m, "reduce_mean");
  ASSERT_EQ(means.size(), 2u) << ir::PrintModule(**m);
  EXPECT_EQ(*means[0]->GetInts("axes"), (std::vector<int64_t>{2}));
  EXPECT_EQ(means[0]->output()->type(), T(ir::DType::kF32, {2, 3, 1}));
  EXPECT_EQ(*means[1]->GetInts("axes"), (std::vector<int64_t>{}));  // all axes
  auto max = Nodes(**m, "reduce_max");
  ASSERT_EQ(max.size(), 1u);
  EXPECT_EQ(*max[0]->GetInts("axes"), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(max[0]->output()->type(), T(ir::DType::kF32, {4}));
  EXPECT_TRUE(Nodes(**m, "reduce_min").empty());  // noop_with_empty_axes: Identity
  EXPECT_EQ((*m)->main()->results()[2], (*m)->main()->params()[0]);
}

TEST(OpsetAdapterTest, ReduceAxesFromTheDataIsAnError) {
  ModelBuilder b(/*opset=*/18);
  b.Input("x", F32, {int64_t{2}, int64_t{3}});
  b.Input("axes", I64, {int64_t{1}});
  b.Node("ReduceSumSquare", {"x", "axes"}, {"y"}, "sumsq");
  b.Output("y", F32, 2);
  const std::string msg = ImportError(b);
  EXPECT_THAT(msg, HasSubstr("sumsq"));
}

TEST(OpsetAdapterTest, SplitNumOutputsAndCastSaturate) {
  ModelBuilder b(/*opset=*/19);
  b.Input("x", F32, {int64_t{2}, int64_t{6}});
  auto* s = b.Node("Split", {"x"}, {"a", "b", "c"});
  AttrI(s, "axis", 1);
  AttrI(s, "num_outputs", 3);
  auto* cast = b.Node("Cast", {"c"}, {"h"});
  AttrI(cast, "to", onnx::TensorProto::FLOAT16);
  AttrI(cast, "saturate", 1);
  b.Output("a", F32, 2).Output("b", F32, 2).Output("h", onnx::TensorProto::FLOAT16, 2);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  auto split = Nodes(**m, "split");
  ASSERT_EQ(split.size(), 1u);
  EXPECT_EQ(*split[0]->GetInts("sizes"), (std::vector<int64_t>{2, 2, 2}));
  EXPECT_EQ(Nodes(**m, "cast").size(), 1u);
}

TEST(OpsetAdapterTest, SplitNumOutputsOtherThanTheOutputsIsAnError) {
  ModelBuilder b(/*opset=*/18);
  b.Input("x", F32, {int64_t{6}});
  AttrI(b.Node("Split", {"x"}, {"a", "b"}, "split_odd"), "num_outputs", 3);
  b.Output("a", F32, 1).Output("b", F32, 1);
  const std::string msg = ImportError(b);
  EXPECT_THAT(msg, HasSubstr("split_odd"));
  EXPECT_THAT(msg, HasSubstr("num_outputs"));
}

TEST(OpsetAdapterTest, GeluAndSwishAreConverted) {
  ModelBuilder b(/*opset=*/24);
  b.Input("x", F32, {int64_t{2}, int64_t{3}});
  AttrS(b.Node("Gelu", {"x"}, {"g"}), "approximate", "tanh");
  b.Node("Gelu", {"x"}, {"e"});
  AttrF(b.Node("Swish", {"x"}, {"s"}), "alpha", 2.0f);
  b.Output("g", F32, 2).Output("e", F32, 2).Output("s", F32, 2);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  auto gelu = Nodes(**m, "gelu");
  ASSERT_EQ(gelu.size(), 2u);
  EXPECT_EQ(*gelu[0]->GetString("approximate"), "tanh");
  EXPECT_EQ(*gelu[1]->GetString("approximate"), "none");
  // Swish(x) = x * sigmoid(alpha * x)
  const ir::Node* out = (*m)->main()->results()[2]->producer();
  ASSERT_EQ(out->op(), "mul");
  EXPECT_EQ(out->input(0), (*m)->main()->params()[0]);
  ASSERT_EQ(out->input(1)->producer()->op(), "sigmoid");
  EXPECT_EQ(out->input(1)->producer()->input(0)->producer()->op(), "mul");
}

TEST(OpsetAdapterTest, UnsupportedNewOperatorNamesItsOpset) {
  ModelBuilder b(/*opset=*/18);
  b.Input("x", F32, {int64_t{3}});
  b.Node("Mish", {"x"}, {"y"}, "mish0");
  b.Output("y", F32, 1);
  auto m = Import(b);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kUnimplemented);
  std::string msg(m.status().message());
  EXPECT_THAT(msg, HasSubstr("mish0"));
  EXPECT_THAT(msg, HasSubstr("new in opset 18"));
  EXPECT_THAT(msg, HasSubstr("Gelu"));
}

TEST(OpsetAdapterTest, AddedInputOrNonDefaultAddedAttributeIsAnError) {
  ModelBuilder b(/*opset=*/18);
  b.Input("x", F32, {int64_t{2}, int64_t{3}});
  b.ConstI64("pads", {1, 1});
  b.ConstI64("axes", {1});
  b.Node("Pad", {"x", "pads", "", "axes"}, {"y"}, "pad_axes");
  b.Output("y", F32, 2);
  const std::string msg = ImportError(b);
  EXPECT_THAT(msg, HasSubstr("pad_axes"));
  EXPECT_THAT(msg, HasSubstr("'axes', added in opset 18"));

  ModelBuilder d(/*opset=*/27);
  d.ConstI64("start", {0}, /*scalar=*/true);
  d.ConstI64("limit", {4}, /*scalar=*/true);
  d.ConstI64("delta", {1}, /*scalar=*/true);
  AttrI(d.Node("Range", {"start", "limit", "delta"}, {"r"}, "range27"), "stash_type", 10);
  d.Output("r", I64, 1);
  auto r = Import(d);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("'stash_type' (added in opset 27)"));
  // Left at its default (FLOAT = 1), the attribute is dropped.
  d.graph()->mutable_node(3)->mutable_attribute(0)->set_i(1);
  auto ok = Import(d);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ResultConstant(**ok, 0), (std::vector<double>{0, 1, 2, 3}));
}

TEST(OpsetAdapterTest, CumSumAndGatherNdFoldOnConstants) {
  ModelBuilder b(/*opset=*/20);
  b.ConstI64("ones", {1, 1, 1, 1});
  b.ConstI64("axis", {0}, /*scalar=*/true);
  b.Node("CumSum", {"ones", "axis"}, {"inclusive"});
  auto* ex = b.Node("CumSum", {"ones", "axis"}, {"exclusive_reverse"});
  AttrI(ex, "exclusive", 1);
  AttrI(ex, "reverse", 1);
  // data [[0, 1], [2, 3]], indices [[1, 0], [0, 1]] -> [2, 1]; indices [[1]] -> [[2, 3]]
  b.ConstI64("data_flat", {0, 1, 2, 3});
  b.ConstI64("shape22", {2, 2});
  b.Node("Reshape", {"data_flat", "shape22"}, {"data"});
  b.ConstI64("idx_flat", {1, 0, 0, 1});
  b.Node("Reshape", {"idx_flat", "shape22"}, {"idx"});
  b.Node("GatherND", {"data", "idx"}, {"picked"});
  b.ConstI64("row_flat", {1});
  b.ConstI64("shape11", {1, 1});
  b.Node("Reshape", {"row_flat", "shape11"}, {"row"});
  b.Node("GatherND", {"data", "row"}, {"rows"});
  b.Output("inclusive", I64, 1).Output("exclusive_reverse", I64, 1).Output("picked", I64, 1);
  b.Output("rows", I64, 2);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(ResultConstant(**m, 0), (std::vector<double>{1, 2, 3, 4}));
  EXPECT_EQ(ResultConstant(**m, 1), (std::vector<double>{3, 2, 1, 0}));
  EXPECT_EQ(ResultConstant(**m, 2), (std::vector<double>{2, 1}));
  EXPECT_EQ(ResultConstant(**m, 3), (std::vector<double>{2, 3}));
  EXPECT_EQ((*m)->main()->results()[3]->type(), T(ir::DType::kI64, {1, 2}));
}

// Run-time data by constant indices (transformers' masks built from an attention_mask input):
// a gather of the rows of the flattened data.
TEST(OpsetAdapterTest, GatherNdOfRunTimeDataIsAGather) {
  ModelBuilder b(/*opset=*/20);
  b.Input("data", F32, {int64_t{2}, int64_t{3}, int64_t{4}});
  b.ConstI64("idx_flat", {1, 2, 0, -1});
  b.ConstI64("shape22", {2, 2});
  b.Node("Reshape", {"idx_flat", "shape22"}, {"idx"});
  b.Node("GatherND", {"data", "idx"}, {"rows"});
  // batch_dims 1: per batch row b, data[b, idx[b]].
  b.ConstI64("bidx_flat", {2, 0});
  b.ConstI64("shape21", {2, 1});
  b.Node("Reshape", {"bidx_flat", "shape21"}, {"bidx"});
  AttrI(b.Node("GatherND", {"data", "bidx"}, {"per_batch"}), "batch_dims", 1);
  b.Output("rows", F32, 2).Output("per_batch", F32, 2);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  auto gathers = Nodes(**m, "gather");
  ASSERT_EQ(gathers.size(), 2u) << ir::PrintModule(**m);
  // [1, 2] -> row 1 * 3 + 2 = 5 of [6, 4]; [0, -1] -> row 2.
  EXPECT_EQ(gathers[0]->input(0)->type(), T(ir::DType::kF32, {6, 4}));
  auto rows = gathers[0]->input(1)->producer()->GetTensor("value");
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(rows->GetInt(0), 5);
  EXPECT_EQ(rows->GetInt(1), 2);
  EXPECT_EQ((*m)->main()->results()[0]->type(), T(ir::DType::kF32, {2, 4}));
  // batch 0 row 2 -> 2; batch 1 row 0 -> 3 + 0 = 3.
  auto per_batch = gathers[1]->input(1)->producer()->GetTensor("value");
  ASSERT_TRUE(per_batch.ok()) << per_batch.status();
  EXPECT_EQ(per_batch->GetInt(0), 2);
  EXPECT_EQ(per_batch->GetInt(1), 3);
  EXPECT_EQ((*m)->main()->results()[1]->type(), T(ir::DType::kF32, {2, 4}));
}

// torch's ONNX optimizer drops an addmm's zero bias: a Gemm without C is a matmul (transB a
// transpose of the weight), which simplify then takes on the unflattened rows.
TEST(OpsetAdapterTest, GemmWithoutABiasIsAMatMul) {
  ModelBuilder b(/*opset=*/20);
  b.Input("x", F32, {int64_t{6}, int64_t{8}});
  b.InitF("w", {8, 5}, std::vector<float>(40, 0.5f));
  b.InitF("wt", {5, 8}, std::vector<float>(40, 0.25f));
  b.Node("Gemm", {"x", "w"}, {"y"});
  AttrI(b.Node("Gemm", {"x", "wt"}, {"z"}), "transB", 1);
  b.Output("y", F32, 2).Output("z", F32, 2);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(Nodes(**m, "gemm").empty()) << ir::PrintModule(**m);
  auto mm = Nodes(**m, "matmul");
  ASSERT_EQ(mm.size(), 2u);
  EXPECT_EQ(mm[1]->input(1)->producer()->op(), "transpose");
  EXPECT_EQ((*m)->main()->results()[1]->type(), T(ir::DType::kF32, {6, 5}));
}

TEST(OpsetAdapterTest, CumSumOfRunTimeValuesIsAnError) {
  ModelBuilder b(/*opset=*/20);
  b.Input("x", F32, {int64_t{4}});
  b.ConstI64("axis", {0}, /*scalar=*/true);
  b.Node("CumSum", {"x", "axis"}, {"y"}, "cumsum_x");
  b.Output("y", F32, 1);
  auto m = Import(b);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("cumsum_x"));
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("compile time"));
}

TEST(OpsetAdapterTest, PadIsNanCastLike) {
  ModelBuilder b(/*opset=*/20);
  // Pad [[1, 2]] by (0, 1) before / (0, -1) after... : rows 0 / 0, cols +1 before, -1 after
  ConstF32(b, "x", {1, 3}, {1, 2, 3});
  b.ConstI64("pads", {0, 1, 1, -1});  // [dim0 before, dim1 before, dim0 after, dim1 after]
  ConstF32(b, "fill", {}, {-100});
  b.Node("Pad", {"x", "pads", "fill"}, {"padded"});
  ConstF32(b, "maybe_nan", {3}, {0.0f, NAN, 1.0f});
  b.Node("IsNaN", {"maybe_nan"}, {"nan"});
  b.ConstI64("i", {7});
  b.Node("CastLike", {"i", "x"}, {"f"});
  // A run-time Pad (transformers' shifted labels): concat with a constant block.
  b.Input("labels", I64, {int64_t{2}, int64_t{3}});
  b.ConstI64("lpads", {0, 0, 0, 1});
  b.ConstI64("ignore", {-100}, /*scalar=*/true);
  b.Node("Pad", {"labels", "lpads", "ignore"}, {"shifted"});
  b.Output("padded", F32, 2).Output("nan", BOOL, 1).Output("f", F32, 1);
  b.Output("shifted", I64, 2);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(ResultConstant(**m, 0), (std::vector<double>{-100, 1, 2, -100, -100, -100}));
  EXPECT_EQ((*m)->main()->results()[0]->type(), T(ir::DType::kF32, {2, 3}));
  EXPECT_EQ(ResultConstant(**m, 1), (std::vector<double>{0, 1, 0}));
  EXPECT_EQ(ResultConstant(**m, 2), (std::vector<double>{7}));
  const ir::Value* shifted = (*m)->main()->results()[3];
  EXPECT_EQ(shifted->type(), T(ir::DType::kI64, {2, 4}));
  ASSERT_EQ(shifted->producer()->op(), "concat");
  EXPECT_EQ(*shifted->producer()->GetInt("axis"), 1);
}

TEST(OpsetAdapterTest, PadModesOtherThanConstantAreErrors) {
  ModelBuilder b(/*opset=*/19);
  b.Input("x", F32, {int64_t{4}});
  b.ConstI64("pads", {1, 1});
  AttrS(b.Node("Pad", {"x", "pads"}, {"y"}, "wrap_pad"), "mode", "wrap");
  b.Output("y", F32, 1);
  const std::string msg = ImportError(b);
  EXPECT_THAT(msg, HasSubstr("wrap"));
}

TEST(OpsetAdapterTest, SplitToSequenceAndSequenceAt) {
  ModelBuilder b(/*opset=*/20);
  b.Input("x", F32, {int64_t{2}, int64_t{7}});
  b.ConstI64("chunk", {3}, /*scalar=*/true);
  AttrI(b.Node("SplitToSequence", {"x", "chunk"}, {"seq"}), "axis", 1);
  b.ConstI64("last", {-1}, /*scalar=*/true);
  b.ConstI64("first", {0}, /*scalar=*/true);
  b.Node("SequenceAt", {"seq", "last"}, {"tail"});
  b.Node("SequenceAt", {"seq", "first"}, {"head"});
  b.Output("tail", F32, 2).Output("head", F32, 2);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  auto split = Nodes(**m, "split");
  ASSERT_EQ(split.size(), 1u);
  EXPECT_EQ(*split[0]->GetInts("sizes"), (std::vector<int64_t>{3, 3, 1}));
  EXPECT_EQ((*m)->main()->results()[0]->type(), T(ir::DType::kF32, {2, 1}));
  EXPECT_EQ((*m)->main()->results()[1]->type(), T(ir::DType::kF32, {2, 3}));
}

// torch.export's graph signature (graph metadata, IR version 10): buffers are constants.
TEST(OpsetAdapterTest, TorchExportBuffersAreConstantsNotWeights) {
  ModelBuilder b(/*opset=*/20);
  b.model.set_ir_version(10);
  b.Input("x", F32, {int64_t{2}});
  b.InitF("m.weight", {2}, {1.0f, 2.0f});
  b.InitF("m.inv_freq", {2}, {0.5f, 0.25f});
  b.Node("Mul", {"x", "m.weight"}, {"a"});
  b.Node("Mul", {"m.inv_freq", "m.inv_freq"}, {"sq"});
  b.Node("Add", {"a", "sq"}, {"y"});
  b.Output("y", F32, 1);
  onnx::StringStringEntryProto sig;
  sig.set_key("pkg.torch.export.ExportedProgram.graph_signature");
  sig.set_value(
      "\n# inputs\np_m_weight: PARAMETER target='m.weight'\n"
      "b_m_inv_freq: BUFFER target='m.inv_freq' persistent=False\nx: USER_INPUT\n");
  onnx::GraphProto* g = b.graph();
  g->GetReflection()->MutableUnknownFields(g)->AddLengthDelimited(16, sig.SerializeAsString());
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  std::vector<std::string> params;
  for (const ir::Value* p : (*m)->main()->params()) params.push_back(p->name());
  std::sort(params.begin(), params.end());
  EXPECT_EQ(params, (std::vector<std::string>{"m.weight", "x"}));
  // inv_freq * inv_freq folded: [0.25, 0.0625]
  const ir::Node* add = (*m)->main()->results()[0]->producer();
  ASSERT_EQ(add->op(), "add");
  ASSERT_EQ(add->input(1)->producer()->op(), "constant");
  auto t = add->input(1)->producer()->GetTensor("value");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->GetDouble(0), 0.25);
  EXPECT_EQ(t->GetDouble(1), 0.0625);
}

// torch's ONNX optimizer (optimize=True) folds w.T into a new initializer: one that is the
// transpose of a parameter becomes transpose(parameter) again (a tied head stays tied); other
// non-parameter initializers are constants. Parameters folded away entirely are recorded for
// the driver, which then refuses to train.
TEST(OpsetAdapterTest, OptimizedExportsTieTransposedCopiesBack) {
  // fold_away 1: a folded head's transpose, the head gone; 2: the same, all zeros, beside a
  // zero parameter of the transposed shape (which must not be taken for its source).
  auto build = [](int fold_away) {
    ModelBuilder b(/*opset=*/20);
    b.model.set_ir_version(10);
    b.Input("x", F32, {int64_t{1}, int64_t{2}});
    b.Input("ids", I64, {int64_t{1}});
    b.InitF("emb.weight", {3, 2}, {1, 2, 3, 4, 5, 6});
    if (fold_away == 1) {
      b.InitF("val_7", {2, 2}, {1, 0, 0, 1});
    } else if (fold_away == 2) {
      b.InitF("val_7", {2, 3}, std::vector<float>(6, 0.0f));
      b.InitF("zero.weight", {3, 2}, std::vector<float>(6, 0.0f));
      b.Node("Gather", {"zero.weight", "ids"}, {"z"});
    } else {
      b.InitF("val_7", {2, 3}, {1, 3, 5, 2, 4, 6});  // emb.weight^T
    }
    b.InitF("val_scale", {}, {0.5f});
    b.Node("Gather", {"emb.weight", "ids"}, {"e"});
    b.Node("MatMul", {"x", "val_7"}, {"logits"});
    b.Node("Mul", {"logits", "val_scale"}, {"y"});
    b.Output("e", F32, 2).Output("y", F32, 2);
    if (fold_away == 2) b.Output("z", F32, 2);
    onnx::StringStringEntryProto sig;
    sig.set_key("pkg.torch.export.ExportedProgram.graph_signature");
    sig.set_value(
        "\n# inputs\np_emb_weight: PARAMETER target='emb.weight'\n"
        "p_head_weight: PARAMETER target='head.weight'\n"
        "p_zero_weight: PARAMETER target='zero.weight'\nx: USER_INPUT\nids: USER_INPUT\n");
    onnx::GraphProto* g = b.graph();
    g->GetReflection()->MutableUnknownFields(g)->AddLengthDelimited(16, sig.SerializeAsString());
    return b;
  };
  auto m = Import(build(0));
  ASSERT_TRUE(m.ok()) << m.status();
  std::vector<std::string> params;
  for (const ir::Value* p : (*m)->main()->params()) params.push_back(p->name());
  std::sort(params.begin(), params.end());
  EXPECT_EQ(params, (std::vector<std::string>{"emb.weight", "ids", "x"}));
  const ir::Node* mm = Nodes(**m, "matmul")[0];
  ASSERT_EQ(mm->input(1)->producer()->op(), "transpose") << ir::PrintModule(**m);
  EXPECT_EQ(mm->input(1)->producer()->input(0)->name(), "emb.weight");
  EXPECT_EQ(Nodes(**m, "mul")[0]->input(1)->producer()->op(), "constant");
  EXPECT_EQ((*m)->metadata().count("torch.folded_parameters"), 0u);

  for (int fold_away : {1, 2}) {
    SCOPED_TRACE(fold_away);
    auto folded = Import(build(fold_away));
    ASSERT_TRUE(folded.ok()) << folded.status();
    ASSERT_EQ((*folded)->metadata().count("torch.folded_parameters"), 1u);
    EXPECT_THAT((*folded)->metadata().at("torch.folded_parameters"), HasSubstr("head.weight"));
    EXPECT_THAT((*folded)->metadata().at("torch.folded_parameters"), HasSubstr("val_7 f32["));
  }
}

}  // namespace
}  // namespace ptc::onnx_import

namespace ptc::onnx_import {
namespace {

// Opset 23's Attention, RMSNormalization and RotaryEmbedding, folded on constants through the
// CPU kernels and checked against values worked out by hand.
TEST(OpsetAdapterTest, Opset23AttentionCausalAndThreeD) {
  for (bool three_d : {false, true}) {
    SCOPED_TRACE(three_d ? "3-D" : "4-D");
    ModelBuilder b(/*opset=*/23);
    std::vector<int64_t> dims = three_d ? std::vector<int64_t>{1, 2, 1}
                                        : std::vector<int64_t>{1, 1, 2, 1};
    ConstF32(b, "q", dims, {1, 1});
    ConstF32(b, "k", dims, {0, 1});
    ConstF32(b, "v", dims, {1, 3});
    auto* a = b.Node("Attention", {"q", "k", "v"}, {"y"});
    AttrI(a, "is_causal", 1);
    AttrF(a, "scale", 1.0f);
    if (three_d) {
      AttrI(a, "q_num_heads", 1);
      AttrI(a, "kv_num_heads", 1);
    }
    b.Output("y", F32, static_cast<int>(dims.size()));
    auto m = Import(b);
    ASSERT_TRUE(m.ok()) << m.status();
    // Query 0 sees key 0 only: v0 = 1. Query 1: softmax([0, 1]) . [1, 3].
    const double p1 = std::exp(1.0) / (1.0 + std::exp(1.0));
    std::vector<double> got = ResultConstant(**m, 0);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_NEAR(got[0], 1.0, 1e-6);
    EXPECT_NEAR(got[1], (1 - p1) * 1 + p1 * 3, 1e-6);
    EXPECT_EQ((*m)->main()->results()[0]->type().shape, dims);
  }
}

// softcap (Gemma 2's capping of the scaled scores, before the mask): scores 0 and 6 become 0
// and 1.5 tanh(4).
TEST(OpsetAdapterTest, Opset23AttentionSoftcap) {
  ModelBuilder b(/*opset=*/23);
  ConstF32(b, "q", {1, 1, 1, 1}, {2});
  ConstF32(b, "k", {1, 1, 2, 1}, {0, 3});
  ConstF32(b, "v", {1, 1, 2, 1}, {1, 3});
  auto* a = b.Node("Attention", {"q", "k", "v"}, {"y"});
  AttrF(a, "scale", 1.0f);
  AttrF(a, "softcap", 1.5f);
  b.Output("y", F32, 4);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  const double c1 = 1.5 * std::tanh(6.0 / 1.5), p1 = std::exp(c1) / (1.0 + std::exp(c1));
  std::vector<double> got = ResultConstant(**m, 0);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_NEAR(got[0], (1 - p1) * 1 + p1 * 3, 1e-6);
}

TEST(OpsetAdapterTest, Opset23AttentionBoolMaskKeepsTrue) {
  ModelBuilder b(/*opset=*/23);
  ConstF32(b, "q", {1, 1, 1, 1}, {1});
  ConstF32(b, "k", {1, 1, 2, 1}, {0, 1});
  ConstF32(b, "v", {1, 1, 2, 1}, {1, 3});
  auto* keep = b.Node("Constant", {}, {"keep"}, "keep_node");
  auto* at = keep->add_attribute();
  at->set_name("value");
  at->set_type(onnx::AttributeProto::TENSOR);
  at->mutable_t()->set_data_type(BOOL);
  at->mutable_t()->add_dims(2);
  at->mutable_t()->add_int32_data(0);  // key 0 masked out
  at->mutable_t()->add_int32_data(1);
  b.Node("Attention", {"q", "k", "v", "keep"}, {"y"});
  b.Output("y", F32, 4);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(ResultConstant(**m, 0), (std::vector<double>{3}));
}

// A query row the mask empties (a padded position) attends to every key: finite, where NaN
// would reach the valid positions through the next layer.
TEST(OpsetAdapterTest, Opset23AttentionEmptiedRowAttendsToAll) {
  ModelBuilder b(/*opset=*/23);
  ConstF32(b, "q", {1, 1, 2, 1}, {1, 1});
  ConstF32(b, "k", {1, 1, 2, 1}, {0, 1});
  ConstF32(b, "v", {1, 1, 2, 1}, {1, 3});
  auto* keep = b.Node("Constant", {}, {"keep"}, "keep_node");
  auto* at = keep->add_attribute();
  at->set_name("value");
  at->set_type(onnx::AttributeProto::TENSOR);
  at->mutable_t()->set_data_type(BOOL);
  at->mutable_t()->add_dims(2);
  at->mutable_t()->add_dims(2);
  for (int x : {0, 0, 0, 1}) at->mutable_t()->add_int32_data(x);  // row 0 keeps nothing
  AttrF(b.Node("Attention", {"q", "k", "v", "keep"}, {"y"}), "scale", 1.0f);
  b.Output("y", F32, 4);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  const double p1 = std::exp(1.0) / (1.0 + std::exp(1.0));
  std::vector<double> got = ResultConstant(**m, 0);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_NEAR(got[0], (1 - p1) * 1 + p1 * 3, 1e-6);
  EXPECT_NEAR(got[1], 3.0, 1e-6);
}

TEST(OpsetAdapterTest, Opset23AttentionPastKeysAreAnError) {
  ModelBuilder b(/*opset=*/23);
  for (const char* n : {"q", "k", "v", "pk", "pv"}) b.Input(n, F32, {int64_t{1}, int64_t{1}, int64_t{2}, int64_t{4}});
  b.Node("Attention", {"q", "k", "v", "", "pk", "pv"}, {"y", "present_k", "present_v"}, "att");
  b.Output("y", F32, 4);
  auto m = Import(b);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("KV cache"));
}

TEST(OpsetAdapterTest, Opset23RmsNormAndRotary) {
  ModelBuilder b(/*opset=*/23);
  ConstF32(b, "x", {1, 2}, {3, 4});
  ConstF32(b, "scale", {2}, {1, 2});
  AttrF(b.Node("RMSNormalization", {"x", "scale"}, {"n"}), "epsilon", 0.0f);
  // x [B=1, H=1, S=1, D=2] = [1, 2], cos 0, sin 1: [1*0 - 2*1, 2*0 + 1*1] = [-2, 1]; the
  // tables [1, S, D/2] broadcast over the batch.
  ConstF32(b, "h", {1, 1, 1, 2}, {1, 2});
  ConstF32(b, "cos", {1, 1, 1}, {0});
  ConstF32(b, "sin", {1, 1, 1}, {1});
  b.Node("RotaryEmbedding", {"h", "cos", "sin"}, {"r"});
  b.Output("n", F32, 2).Output("r", F32, 4);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  const double rms = std::sqrt((9.0 + 16.0) / 2);
  std::vector<double> n = ResultConstant(**m, 0);
  ASSERT_EQ(n.size(), 2u);
  EXPECT_NEAR(n[0], 3 / rms, 1e-6);
  EXPECT_NEAR(n[1], 2 * 4 / rms, 1e-6);
  EXPECT_EQ(ResultConstant(**m, 1), (std::vector<double>{-2, 1}));
}

// RotaryEmbedding's interleaved pairs (GPT-J) and partial rotation (rotary_embedding_dim: the
// channels past it pass through) become rotary's attributes.
TEST(OpsetAdapterTest, Opset23InterleavedAndPartialRotary) {
  ModelBuilder b(/*opset=*/23);
  // x [B=1, H=1, S=1, D=6] = 1..6, rotary_embedding_dim 4, cos 0, sin 1 (a quarter turn):
  // interleaved pairs (0, 1), (2, 3) -> [-2, 1, -4, 3, 5, 6]; halves (0, 2), (1, 3) ->
  // [-3, -4, 1, 2, 5, 6].
  ConstF32(b, "h", {1, 1, 1, 6}, {1, 2, 3, 4, 5, 6});
  ConstF32(b, "cos", {1, 1, 2}, {0, 0});
  ConstF32(b, "sin", {1, 1, 2}, {1, 1});
  onnx::NodeProto* inter = b.Node("RotaryEmbedding", {"h", "cos", "sin"}, {"ri"}, "inter");
  AttrI(inter, "interleaved", 1);
  AttrI(inter, "rotary_embedding_dim", 4);
  AttrI(b.Node("RotaryEmbedding", {"h", "cos", "sin"}, {"rh"}, "halves"), "rotary_embedding_dim",
        4);
  b.Output("ri", F32, 4).Output("rh", F32, 4);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(ResultConstant(**m, 0), (std::vector<double>{-2, 1, -4, 3, 5, 6}));
  EXPECT_EQ(ResultConstant(**m, 1), (std::vector<double>{-3, -4, 1, 2, 5, 6}));
}

// Tile (torch's repeat: BLOOM's ALiBi slopes) with constant repeats, and a Constant of an
// empty list (value_ints = [], torch's empty shapes: BLOOM, Gemma 2), which onnx 1.12's checker
// rejected: a 1-D tensor of 0 elements.
TEST(OpsetAdapterTest, TileAndEmptyListConstant) {
  ModelBuilder b(/*opset=*/20);
  ConstF32(b, "x", {2, 2}, {1, 2, 3, 4});
  b.ConstI64("reps", {1, 2});
  b.Node("Tile", {"x", "reps"}, {"y"});
  onnx::NodeProto* e = b.Node("Constant", {}, {"empty"});
  onnx::AttributeProto* a = e->add_attribute();
  a->set_name("value_ints");
  a->set_type(onnx::AttributeProto::INTS);
  b.Node("Shape", {"empty"}, {"n"});
  b.Output("y", F32, 2).Output("n", I64, 1);
  auto m = Import(b);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(ResultConstant(**m, 0), (std::vector<double>{1, 2, 1, 2, 3, 4, 3, 4}));
  EXPECT_EQ(ResultConstant(**m, 1), (std::vector<double>{0}));
}

}  // namespace
}  // namespace ptc::onnx_import
