// Exporter tests: exported models pass onnx::checker and strict ONNX shape inference, and
// import -> export -> import gives back the same IR text.
#include "compiler/onnx/exporter.h"

#include "compiler/ir/parser.h"
#include "compiler/ir/printer.h"
#include "compiler/ir/verifier.h"
#include "compiler/onnx/importer.h"
#include "compiler/onnx/onnx_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "onnx/checker.h"
#include "onnx/shape_inference/implementation.h"

namespace ptc::onnx_import {
namespace {

using ::ptc::onnx_import::testing::AttrI;
using ::ptc::onnx_import::testing::ModelBuilder;
using ::testing::HasSubstr;

constexpr int F32 = onnx::TensorProto::FLOAT;

// Parses exported bytes and runs the ONNX checker and strict shape inference on them.
absl::StatusOr<onnx::ModelProto> CheckExported(const std::string& bytes) {
  onnx::ModelProto model;
  if (!model.ParseFromString(bytes)) return absl::InternalError("exported bytes do not parse");
  try {
    onnx::checker::check_model(model);
    onnx::ModelProto inferred = model;
    onnx::shape_inference::InferShapes(inferred, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions(true, 1, true));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("onnx rejects the export: ", e.what()));
  }
  return model;
}

std::unique_ptr<ir::Module> Parse(const std::string& text) {
  auto m = ir::ParseModule(text);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *std::move(m) : nullptr;
}

ir::Tensor Iota(ir::DType d, ir::Shape s, float scale) {
  ir::Tensor t(d, s);
  for (int64_t i = 0; i < t.num_elements(); ++i) t.mutable_data_as<float>()[i] = scale * i;
  return t;
}

// IR in the importer's canonical form (every node has a loc, constants sit right before their
// first use, inputs before weights), so that export -> import must reproduce it exactly.
// Float attributes are float-representable (ONNX stores them as float32).
constexpr char kCanonicalIr[] = R"(module {opset="17", producer="ptc", source="rt.onnx"}

func @main(%x: f32[2,3], %idx: i64[2], %z: f32[0,3], %lab: i64[2], %w: f32[3,4] {param}, %s: f32[4] {param}) -> (f16[2,2], f32[3,0], bool[2,3], f32[], f32[], f32[2,3]) {
  %g = gelu(%x) {approximate="tanh"} : f32[2,3]  loc("g")
  %d, %m = dropout(%g) {ratio=0.5, seed=42} : f32[2,3], bool[2,3]  loc("drop")
  %mm = matmul(%d, %w) : f32[2,4]  loc("mm")
  %c = constant() {ref="c"} : f32[2,4]  loc("c")
  %a = add(%mm, %c) : f32[2,4]  loc("a")
  %ln, %mean, %isd = layer_norm(%a, %s, %s) {axis=1, epsilon=0.25} : f32[2,4], f32[2,1], f32[2,1]  loc("ln")
  %sm = softmax(%ln) {axis=1} : f32[2,4]  loc("sm")
  %gm = gemm(%sm, %w) {alpha=0.5, beta=1.0, trans_a=0, trans_b=1} : f32[2,3]  loc("gm")
  %rs = reduce_sum(%gm) {axes=[1], keepdims=1} : f32[2,1]  loc("rs")
  %rm = reduce_mean(%gm) {axes=[], keepdims=0} : f32[]  loc("rm")
  %ex = expand(%rs) {shape=[2, 3]} : f32[2,3]  loc("ex")
  %tr = transpose(%ex) {perm=[1, 0]} : f32[3,2]  loc("tr")
  %sl = slice(%tr) {ends=[-1, 2], starts=[2, 0], steps=[-2, 1]} : f32[2,2]  loc("sl")
  %s0, %s1 = split(%tr) {axis=0, sizes=[1, 2]} : f32[1,2], f32[2,2]  loc("sp")
  %cat = concat(%s0, %sl, %s1) {axis=0} : f32[5,2]  loc("cat")
  %gat = gather(%cat, %idx) {axis=0} : f32[2,2]  loc("gat")
  %tri = trilu(%gat) {k=-1, upper=0} : f32[2,2]  loc("tri")
  %rsh = reshape(%z) {shape=[3, 0]} : f32[3,0]  loc("rsh")
  %k = constant() {value=dense<f32[2]: 1.0, 2.5>} : f32[2]  loc("k")
  %kk = add(%tri, %k) : f32[2,2]  loc("kk")
  %eq = equal(%kk, %tri) : bool[2,2]  loc("eq")
  %ne = not(%eq) : bool[2,2]  loc("ne")
  %wh = where(%ne, %kk, %tri) : f32[2,2]  loc("wh")
  %h = cast(%wh) {to=f16} : f16[2,2]  loc("h")
  %loss, %logp = softmax_ce_loss(%sm, %lab) {ignore_index=-1, reduction="mean"} : f32[], f32[2,4]  loc("ce")
  return %h, %rsh, %m, %loss, %rm, %x
}
)";

TEST(ExportTest, CanonicalIrSurvivesExportAndImport) {
  auto m = Parse(kCanonicalIr);
  ASSERT_NE(m, nullptr);
  m->tensors()["w"] = Iota(ir::DType::kF32, {3, 4}, 0.5f);
  m->tensors()["s"] = Iota(ir::DType::kF32, {4}, 1.0f);
  m->tensors()["c"] = Iota(ir::DType::kF32, {2, 4}, -1.0f);
  ASSERT_TRUE(ir::Verify(*m).ok()) << ir::Verify(*m);
  std::string expected = ir::PrintModule(*m);

  auto bytes = ExportOnnxBytes(*m);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto model = CheckExported(*bytes);
  ASSERT_TRUE(model.ok()) << model.status();
  // gelu and dropout have no ONNX opset-17 form: they use the ai.ptc domain.
  bool has_ptc = false;
  for (const auto& imp : model->opset_import()) has_ptc |= imp.domain() == "ai.ptc";
  EXPECT_TRUE(has_ptc);
  int ptc_nodes = 0;
  for (const auto& n : model->graph().node()) ptc_nodes += n.domain() == "ai.ptc";
  EXPECT_EQ(ptc_nodes, 2);

  auto back = ImportOnnxBytes(*bytes, "", "rt.onnx", {.inline_constant_limit = 4});
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(ir::Verify(**back).ok());
  EXPECT_EQ(ir::PrintModule(**back), expected);
  for (const char* name : {"w", "s", "c"}) {
    ASSERT_EQ((*back)->tensors().count(name), 1u) << name;
    EXPECT_TRUE((*back)->tensors().at(name).BitEquals(m->tensors().at(name))) << name;
  }
}

TEST(ExportTest, ImportExportImportGivesTheSameIr) {
  ModelBuilder b;
  b.Input("x", F32, {std::string("batch"), int64_t{4}});
  b.InitF("w", {4, 4}, std::vector<float>(16, 0.25f));
  b.Node("MatMul", {"x", "w"}, {"/mm_out"}, "/layer/MatMul");
  b.Node("Shape", {"/mm_out"}, {"s"});
  b.ConstI64("idx", {1}, true);
  AttrI(b.Node("Gather", {"s", "idx"}, {"d"}), "axis", 0);
  b.ConstI64("ax", {0});
  b.Node("Unsqueeze", {"d", "ax"}, {"du"});
  b.ConstI64("m1", {-1});
  AttrI(b.Node("Concat", {"m1", "du"}, {"shape"}), "axis", 0);
  b.Node("Reshape", {"/mm_out", "shape"}, {"r"});
  b.Node("Tanh", {"r"}, {"th"});
  b.Node("Cos", {"th"}, {"co"});
  b.Node("Sin", {"th"}, {"si"});
  b.Node("Add", {"co", "si"}, {"t"});
  auto* sm = b.Node("LogSoftmax", {"t"}, {"y"});
  AttrI(sm, "axis", -1);
  b.Output("y", F32, 2);
  ImportOptions opts{.dims = {{"batch", 3}}};
  auto first = ImportOnnxBytes(b.Bytes(), "", "model.onnx", opts);
  ASSERT_TRUE(first.ok()) << first.status();
  auto bytes = ExportOnnxBytes(**first);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  ASSERT_TRUE(CheckExported(*bytes).ok()) << CheckExported(*bytes).status();
  auto second = ImportOnnxBytes(*bytes, "", "model.onnx", opts);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(ir::PrintModule(**second), ir::PrintModule(**first));
  EXPECT_TRUE((*second)->tensors().at("w").BitEquals((*first)->tensors().at("w")));
}

TEST(ExportTest, ParamsInputsOutputsAndDomains) {
  auto m = Parse(R"(module {}

func @main(%x: f32[2], %w: f32[2] {param}) -> (f32[2], f32[2], f32[2]) {
  %y = add(%x, %w) : f32[2]
  return %y, %w, %y
}
)");
  ASSERT_NE(m, nullptr);
  m->tensors()["w"] = Iota(ir::DType::kF32, {2}, 1.0f);
  auto bytes = ExportOnnxBytes(*m);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto model = CheckExported(*bytes);
  ASSERT_TRUE(model.ok()) << model.status();
  const auto& g = model->graph();
  ASSERT_EQ(g.input_size(), 1);
  EXPECT_EQ(g.input(0).name(), "x");
  ASSERT_EQ(g.initializer_size(), 1);
  EXPECT_EQ(g.initializer(0).name(), "w");
  ASSERT_EQ(g.output_size(), 3);
  EXPECT_EQ(g.output(0).name(), "y");
  // A param and a repeated result are copied through Identity (ONNX outputs are distinct).
  EXPECT_NE(g.output(1).name(), "w");
  EXPECT_NE(g.output(2).name(), "y");
  for (const auto& imp : model->opset_import()) {
    EXPECT_NE(imp.domain(), "ai.ptc");  // nothing needs it
    if (imp.domain().empty()) EXPECT_EQ(imp.version(), 17);
  }
  auto back = ImportOnnxBytes(*bytes, "", "m.onnx");
  ASSERT_TRUE(back.ok()) << back.status();
  const auto& results = (*back)->main()->results();
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[1], (*back)->main()->params()[1]);
  EXPECT_EQ(results[0], results[2]);
}

// An op with {dtype} (the ONNX op computes in its inputs' dtype) exports as `onnx_op` and a
// Cast writing the result `y`, checker clean, and imports back as `ir_op` + cast. The ONNX op
// carries no dtype attribute.
void ExpectOpThenCast(const std::string& ir, const std::string& onnx_op, const std::string& y,
                      const std::string& ir_op) {
  auto m = Parse(ir);
  ASSERT_NE(m, nullptr);
  auto bytes = ExportOnnxBytes(*m);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto model = CheckExported(*bytes);
  ASSERT_TRUE(model.ok()) << model.status();
  const auto& g = model->graph();
  ASSERT_EQ(g.node_size(), 2);
  EXPECT_EQ(g.node(0).op_type(), onnx_op);
  EXPECT_EQ(g.node(1).op_type(), "Cast");
  EXPECT_EQ(g.node(1).input(0), g.node(0).output(0));
  EXPECT_EQ(g.node(1).output(0), y);
  for (const auto& a : g.node(0).attribute()) EXPECT_NE(a.name(), "dtype");
  auto back = ImportOnnxBytes(*bytes, "", "m.onnx");
  ASSERT_TRUE(back.ok()) << back.status();
  const std::string text = ir::PrintModule(**back);
  EXPECT_NE(text.find(ir_op + "("), std::string::npos) << text;
  EXPECT_NE(text.find("cast("), std::string::npos) << text;
}

// layer_norm {dtype=bf16} (fold-norm-casts): LayerNormalization and a Cast.
TEST(ExportTest, LowPrecisionLayerNormBecomesNormAndCast) {
  ExpectOpThenCast(R"(module {}

func @main(%x: f32[2,8], %g: f32[8], %b: f32[8]) -> (bf16[2,8]) {
  %y = layer_norm(%x, %g, %b) {axis=1, dtype=bf16, epsilon=1e-05} : bf16[2,8]
  return %y
}
)",
                   "LayerNormalization", "y", "layer_norm");
}

// gemm {dtype=f32} of bf16 operands (fold-grad-casts): Gemm and a Cast.
TEST(ExportTest, F32GemmOfBf16BecomesGemmAndCast) {
  ExpectOpThenCast(R"(module {}

func @main(%x: bf16[8,16], %dy: bf16[8,32]) -> (f32[16,32]) {
  %dw = gemm(%x, %dy) {dtype=f32, trans_a=1} : f32[16,32]
  return %dw
}
)",
                   "Gemm", "dw", "gemm");
}

TEST(ExportTest, RejectsMultiFunctionModulesAndMissingRefs) {
  auto two = Parse(R"(module {}

func @main(%a: f32[]) -> (f32[]) {
  return %a
}

func @other(%a: f32[]) -> (f32[]) {
  return %a
}
)");
  ASSERT_NE(two, nullptr);
  EXPECT_FALSE(ExportOnnxBytes(*two).ok());
  auto ref = Parse(R"(module {}

func @main() -> (f32[2]) {
  %c = constant() {ref="nope"} : f32[2]
  return %c
}
)");
  ASSERT_NE(ref, nullptr);
  auto r = ExportOnnxBytes(*ref);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("nope"));
}

}  // namespace
}  // namespace ptc::onnx_import
