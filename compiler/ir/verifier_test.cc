// The verifier catches each class of error (and accepts valid modules).
#include "compiler/ir/verifier.h"

#include "compiler/ir/parser.h"
#include "gtest/gtest.h"

namespace ptc::ir {
namespace {

TensorType F32(Shape s) { return TensorType{DType::kF32, std::move(s)}; }

std::unique_ptr<Module> Parse(std::string_view text) {
  auto m = ParseModule(text);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::move(*m) : std::make_unique<Module>();
}

void ExpectInvalid(const Module& m, std::vector<std::string> needles) {
  absl::Status s = Verify(m);
  ASSERT_FALSE(s.ok()) << "verified";
  for (const auto& n : needles) {
    EXPECT_NE(std::string(s.message()).find(n), std::string::npos)
        << "message '" << s.message() << "' lacks '" << n << "'";
  }
}

constexpr char kValid[] = R"(
func @main(%x: f32[2,3], %w: f32[3] {param}) -> (f32[2,3]) {
  %a = add(%x, %w) : f32[2,3]  loc("/Add")
  %c = constant() {ref="table"} : f32[4]
  return %a
}
)";

TEST(Verifier, AcceptsValidModule) {
  auto m = Parse(kValid);
  EXPECT_TRUE(Verify(*m).ok()) << Verify(*m);
  // With weights present, params and refs must match them.
  m->tensors()["w"] = Tensor(DType::kF32, {3});
  m->tensors()["table"] = Tensor(DType::kF32, {4});
  EXPECT_TRUE(Verify(*m).ok()) << Verify(*m);
}

TEST(Verifier, WrongOutputType) {
  auto m = Parse(R"(
func @main(%x: f32[2,3], %w: f32[3]) -> (f32[3,3]) {
  %a = add(%x, %w) : f32[3,3]  loc("/Add")
  return %a
}
)");
  ExpectInvalid(*m, {"op `add` (%a) at /Add", "f32[3,3]", "inferred", "f32[2,3]"});
}

TEST(Verifier, TypeInferenceErrorNamesNode) {
  auto m = Parse(R"(
func @main(%x: f32[2,3], %w: f32[4]) -> (f32[2,3]) {
  %a = add(%x, %w) : f32[2,3]
  return %a
}
)");
  ExpectInvalid(*m, {"op `add` (%a)", "broadcast", "f32[4]"});
}

TEST(Verifier, UnknownOp) {
  auto m = Parse("func @main(%x: f32[2]) -> (f32[2]) {\n  %a = frob(%x) : f32[2]\n  return %a\n}\n");
  ExpectInvalid(*m, {"unknown op 'frob'"});
}

TEST(Verifier, OperandAndResultCounts) {
  auto m = Parse(R"(
func @main(%x: f32[2]) -> (f32[2]) {
  %a = relu(%x, %x) : f32[2]
  return %a
}
)");
  ExpectInvalid(*m, {"has 2 inputs", "takes 1"});
  auto m2 = Parse(R"(
func @main(%x: f32[2]) -> (f32[2]) {
  %a, %b = relu(%x) : f32[2], f32[2]
  return %a
}
)");
  ExpectInvalid(*m2, {"has 2 outputs"});
}

TEST(Verifier, ScheduleOrder) {
  Module m;
  Function* f = m.AddFunction("main");
  Value* x = f->AddParam("x", F32({2}));
  Node* a = f->AddNode("relu", {x}, {F32({2})}, {}, "", {"a"});
  // b uses a but is scheduled before it.
  Node* b = f->AddNode("neg", {a->output()}, {F32({2})}, {}, "", {"b"}, /*before=*/a);
  f->set_results({b->output()});
  ExpectInvalid(m, {"op `neg` (%b)", "%a", "not defined before"});
  ASSERT_TRUE(f->SortTopologically().ok());
  EXPECT_TRUE(Verify(m).ok()) << Verify(m);
}

TEST(Verifier, DuplicateNames) {
  Module m;
  Function* f = m.AddFunction("main");
  Value* x = f->AddParam("x", F32({2}));
  f->AddParam("x", F32({2}));
  f->set_results({x});
  ExpectInvalid(m, {"%x", "more than once"});

  Module m2;
  m2.AddFunction("main")->set_results({});
  m2.AddFunction("main")->set_results({});
  ExpectInvalid(m2, {"@main", "more than once"});
}

TEST(Verifier, ValueFromAnotherFunction) {
  Module m;
  Function* f = m.AddFunction("f");
  Function* g = m.AddFunction("g");
  Value* x = f->AddParam("x", F32({2}));
  g->AddParam("y", F32({2}));
  Node* n = g->AddNode("relu", {x}, {F32({2})}, {}, "", {"r"});
  g->set_results({n->output()});
  f->set_results({x});
  ExpectInvalid(m, {"@g", "%x", "not defined"});
}

TEST(Verifier, ResultsMustBeDefined) {
  Module m;
  Function* f = m.AddFunction("f");
  Function* g = m.AddFunction("g");
  Value* x = f->AddParam("x", F32({2}));
  f->set_results({x});
  g->set_results({x});
  ExpectInvalid(m, {"@g", "result 0 %x", "not defined"});
  g->set_results({nullptr});
  ExpectInvalid(m, {"result 0 is null"});
}

TEST(Verifier, WeightsMustMatchParams) {
  auto m = Parse(kValid);
  m->tensors()["table"] = Tensor(DType::kF32, {4});
  ExpectInvalid(*m, {"weight parameter %w", "no tensor"});
  m->tensors()["w"] = Tensor(DType::kF32, {4});
  ExpectInvalid(*m, {"weight parameter %w", "declared f32[3]", "f32[4]"});
}

TEST(Verifier, ConstantRefsMustExistWithTheirType) {
  auto m = Parse(kValid);
  m->tensors()["w"] = Tensor(DType::kF32, {3});
  ExpectInvalid(*m, {"op `constant` (%c)", "table", "no tensor"});
  m->tensors()["table"] = Tensor(DType::kF16, {4});
  ExpectInvalid(*m, {"op `constant` (%c)", "f32[4]", "f16[4]"});
}

TEST(Verifier, BadAttributes) {
  auto m = Parse(R"(
func @main(%x: f32[2,3]) -> (f32[2,3]) {
  %a = softmax(%x) {axis="1"} : f32[2,3]
  return %a
}
)");
  ExpectInvalid(*m, {"op `softmax` (%a)", "'axis'", "integer", "string"});
}

TEST(Verifier, InvalidShapeAndNullInput) {
  Module m;
  Function* f = m.AddFunction("main");
  Value* x = f->AddParam("x", F32({-2}));
  f->set_results({x});
  ExpectInvalid(m, {"parameter %x", "invalid shape"});

  Module m2;
  Function* g = m2.AddFunction("main");
  Node* n = g->AddNode("relu", {nullptr}, {F32({2})}, {}, "", {"r"});
  g->set_results({n->output()});
  ExpectInvalid(m2, {"input 0 is null"});
}

}  // namespace
}  // namespace ptc::ir
