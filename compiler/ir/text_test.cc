// Printer and parser: exact round trip of a hand-written module (every op, every attribute
// kind, quoted names), bit-exact constants, error messages with line:col, and robustness on
// truncated / corrupted input.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "compiler/ir/ops.h"
#include "compiler/ir/ops_decode.h"
#include "compiler/ir/ops_fused.h"
#include "compiler/ir/ops_train.h"
#include "compiler/ir/parser.h"
#include "compiler/ir/printer.h"
#include "compiler/ir/verifier.h"
#include "gtest/gtest.h"

namespace ptc::ir {
namespace {

std::filesystem::path SourceDir() {
  if (const char* env = std::getenv("PTC_SOURCE_DIR")) return env;
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
}

std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Drops full-line `//` comments and blank lines.
std::string StripComments(std::string_view text) {
  std::string out;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    size_t first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line.compare(first, 2, "//") == 0) continue;
    out += line + "\n";
  }
  return out;
}

std::string AllOpsText() { return ReadFile(SourceDir() / "compiler/ir/testdata/all_ops.ir"); }

TEST(Text, AllOpsRoundTripsExactly) {
  const std::string text = AllOpsText();
  ASSERT_FALSE(text.empty());
  auto m = ParseModule(text);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(StripComments(PrintModule(**m)), StripComments(text));
  // Every op of the core table (ops.cc) appears in the module.
  std::set<std::string> ops;
  for (const auto& n : (*m)->main()->nodes()) ops.insert(n->op());
  std::set<std::string_view> extra;
  for (const auto* table : {&FusedOpDefs(), &TrainOpDefs(), &DecodeOpDefs()}) {
    for (const OpDef& def : *table) extra.insert(def.name);
  }
  int core = 0;
  for (auto name : AllOpNames()) {
    if (extra.count(name)) continue;
    ++core;
    EXPECT_TRUE(ops.count(std::string(name))) << "all_ops.ir lacks op " << name;
  }
  EXPECT_EQ(core, 55);
  // The hand-computed types agree with type inference.
  EXPECT_TRUE(Verify(**m).ok()) << Verify(**m);
}

TEST(Text, ParsedStructure) {
  auto m = ParseModule(AllOpsText());
  ASSERT_TRUE(m.ok()) << m.status();
  const Module& mod = **m;
  EXPECT_EQ(mod.metadata().at("producer name"), "hand \"written\"");
  EXPECT_EQ(mod.metadata().at("opset"), "17");
  ASSERT_EQ(mod.functions().size(), 2u);
  EXPECT_EQ(mod.functions()[1]->name(), "second fn");
  const Function& f = *mod.main();
  ASSERT_EQ(f.params().size(), 6u);
  EXPECT_EQ(f.params()[3]->name(), "onnx::MatMul_12");
  EXPECT_EQ(f.params()[3]->flags(), (std::set<std::string>{"frozen", "param"}));
  EXPECT_TRUE(f.params()[2]->is_param());
  EXPECT_FALSE(f.params()[0]->is_param());
  EXPECT_EQ(f.results()[0]->name(), "weird name\"q\\");
  const Node* ident = f.results()[0]->producer();
  ASSERT_NE(ident, nullptr);
  EXPECT_EQ(std::get<int64_t>(ident->attrs().at("a key")), 3);
  EXPECT_EQ(std::get<DType>(ident->attrs().at("dt")), DType::kBF16);
  EXPECT_EQ(std::get<std::vector<std::string>>(ident->attrs().at("names")),
            (std::vector<std::string>{"a", "b\\c\n"}));
  const auto& scales = std::get<std::vector<double>>(ident->attrs().at("scales"));
  ASSERT_EQ(scales.size(), 4u);
  EXPECT_EQ(scales[2], 1e20);
  EXPECT_TRUE(std::isinf(scales[3]));
  EXPECT_EQ(f.FindValue("mm")->producer()->loc(), "/h.0/attn/MatMul");
  EXPECT_EQ(f.FindValue("mask")->flags(), (std::set<std::string>{"keep"}));
  EXPECT_EQ(std::get<double>(f.FindValue("ln")->producer()->attrs().at("epsilon")), 1e-5);
}

// Constants read back bit for bit; the element values are checked against independently
// written bit patterns.
TEST(Text, ConstantsAreBitExact) {
  auto m = ParseModule(AllOpsText());
  ASSERT_TRUE(m.ok()) << m.status();
  const Function& f = *(*m)->main();
  auto tensor = [&](const char* name) {
    return std::get<Tensor>(f.FindValue(name)->producer()->attrs().at("value"));
  };
  auto bits16 = [](const Tensor& t, int i) {
    uint16_t b;
    std::memcpy(&b, t.data_as<char>() + 2 * i, 2);
    return b;
  };
  auto bits32 = [](const Tensor& t, int i) {
    uint32_t b;
    std::memcpy(&b, t.data_as<char>() + 4 * i, 4);
    return b;
  };
  Tensor c4 = tensor("c4");  // f16: 0.5, -inf, 65504
  EXPECT_EQ(bits16(c4, 0), 0x3800);
  EXPECT_EQ(bits16(c4, 1), 0xfc00);
  EXPECT_EQ(bits16(c4, 2), 0x7bff);
  Tensor c5 = tensor("c5");  // bf16: 1.0, nan
  EXPECT_EQ(bits16(c5, 0), 0x3f80);
  EXPECT_EQ(bits16(c5, 1), 0x7fc0);
  Tensor c11 = tensor("c11");  // f32: smallest denormal, FLT_MAX, nan payload
  EXPECT_EQ(bits32(c11, 0), 0x00000001u);
  EXPECT_EQ(bits32(c11, 1), 0x7f7fffffu);
  EXPECT_EQ(bits32(c11, 2), 0x7fc00001u);
  EXPECT_EQ(bits32(tensor("c10"), 0), 0x80000000u);  // -0.0
  Tensor c2 = tensor("c2");
  EXPECT_EQ(c2.data_as<int64_t>()[2], INT64_MAX);
  EXPECT_EQ(c2.data_as<int64_t>()[3], INT64_MIN);
  EXPECT_EQ(tensor("c6").data_as<double>()[0], 0.1);
  EXPECT_TRUE(std::signbit(tensor("c6").data_as<double>()[1]));
  EXPECT_EQ(tensor("c7").data_as<int8_t>()[0], -128);
  EXPECT_EQ(tensor("c8").data_as<uint8_t>()[0], 255);
  EXPECT_EQ(tensor("c9").num_elements(), 0);
  EXPECT_EQ(tensor("c3").data_as<uint8_t>()[1], 0);
}

// Random bit patterns of every float dtype survive print -> parse unchanged.
TEST(Text, RandomFloatBitsRoundTrip) {
  uint64_t state = 0x9e3779b97f4a7c15ull;
  auto next = [&] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  for (DType d : {DType::kF32, DType::kF64, DType::kF16, DType::kBF16}) {
    const int n = 2000;
    std::vector<uint8_t> bytes(n * DTypeSize(d));
    for (auto& b : bytes) b = static_cast<uint8_t>(next());
    Tensor t = Tensor::FromBytes(d, {n}, bytes.data(), bytes.size());
    Module m;
    Function* f = m.AddFunction("main");
    Node* c = f->AddNode("constant", {}, {t.type()}, {{"value", t}});
    f->set_results({c->output()});
    const std::string text = PrintModule(m);
    auto back = ParseModule(text);
    ASSERT_TRUE(back.ok()) << DTypeName(d) << ": " << back.status();
    const Tensor& u = std::get<Tensor>((*back)->main()->nodes()[0]->attrs().at("value"));
    EXPECT_TRUE(u.BitEquals(t)) << DTypeName(d);
  }
  // Doubles in attributes as well.
  std::vector<double> values;
  for (int i = 0; i < 500; ++i) {
    uint64_t b = next();
    double v;
    std::memcpy(&v, &b, 8);
    values.push_back(v);
  }
  std::string printed = PrintAttrValue(values);
  Module m;
  Function* f = m.AddFunction("main");
  f->AddNode("identity", {}, {}, {{"v", values}});
  auto back = ParseModule(PrintModule(m));
  ASSERT_TRUE(back.ok()) << back.status();
  const auto& got = std::get<std::vector<double>>((*back)->main()->nodes()[0]->attrs().at("v"));
  ASSERT_EQ(got.size(), values.size());
  EXPECT_EQ(std::memcmp(got.data(), values.data(), 8 * values.size()), 0);
}

TEST(Text, PrintAttrValueForms) {
  EXPECT_EQ(PrintAttrValue(int64_t{-3}), "-3");
  EXPECT_EQ(PrintAttrValue(2.0), "2.0");
  EXPECT_EQ(PrintAttrValue(-0.0), "-0.0");
  EXPECT_EQ(PrintAttrValue(1e300), "1e+300");
  EXPECT_EQ(PrintAttrValue(std::numeric_limits<double>::quiet_NaN()), "nan");
  EXPECT_EQ(PrintAttrValue(-std::numeric_limits<double>::infinity()), "-inf");
  EXPECT_EQ(PrintAttrValue(std::string("a\"b\\\x01")), "\"a\\\"b\\\\\\x01\"");
  EXPECT_EQ(PrintAttrValue(std::vector<int64_t>{}), "[]");
  EXPECT_EQ(PrintAttrValue(std::vector<double>{1.0, 0.25}), "[1.0, 0.25]");
  EXPECT_EQ(PrintAttrValue(DType::kI64), "i64");
  EXPECT_EQ(PrintAttrValue(Tensor::FromVector<uint8_t>(DType::kBool, {2}, {1, 0})),
            "dense<bool[2]: true, false>");
  EXPECT_EQ(PrintAttrValue(Tensor(DType::kF32, {0, 3})), "dense<f32[0,3]>");
}

TEST(Text, ZeroOutputNodeAndEmptyFunction) {
  const std::string text =
      "func @f() -> () {\n"
      "  side_effect() {x=1}  loc(\"/s\")\n"
      "  return\n"
      "}\n";
  auto m = ParseModule(text);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(PrintModule(**m), text);
  auto empty = ParseModule("  // nothing\n");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE((*empty)->functions().empty());
  EXPECT_EQ(PrintModule(**empty), "");
}

TEST(Text, CommentsAndFreeWhitespace) {
  auto m = ParseModule(
      "// RUN: ptc opt %s\n"
      "func @main(%x : f32[ 2 , 3 ]) -> ( f32[2,3] ) { // trailing\n"
      "  %y=relu( %x ):f32[2,3]\n"
      "  return %y  // CHECK: relu\n"
      "}\n");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(PrintModule(**m),
            "func @main(%x: f32[2,3]) -> (f32[2,3]) {\n"
            "  %y = relu(%x) : f32[2,3]\n"
            "  return %y\n"
            "}\n");
}

struct ErrorCase {
  const char* text;
  const char* position;  // "line:col"
  const char* needle;
};

TEST(Text, ErrorsHaveLineColumnAndExpectation) {
  const ErrorCase cases[] = {
      {"func @main() -> () {\n  return\n", "3:1", "expected '}'"},
      {"func @main(%x: f32[2]) -> (f32[2]) {\n  %y = relu(%z) : f32[2]\n  return %y\n}\n", "2:13",
       "undefined value %z"},
      {"func @main(%x: f32[2]) -> (f32[2]) {\n  %x = relu(%x) : f32[2]\n  return %x\n}\n", "2:3",
       "redefinition of %x"},
      {"func @main(%x: f33[2]) -> () {\n  return\n}\n", "1:16", "expected a dtype"},
      {"func @main(%x: f32[2) -> () {\n  return\n}\n", "1:21", "expected ',' or ']'"},
      {"func @main(%x: f32[2]) -> (f32[3]) {\n  return %x\n}\n", "2:3",
       "declares f32[3]"},
      {"func @main(%x: f32[2]) -> (f32[2]) {\n  %y = relu(%x) : f32[2], f32[2]\n  return %y\n}\n",
       "2:25", "expected 1 output types"},
      {"func @main(%x: f32[2]) -> (f32[2]) {\n  %y, %z = split(%x) {axis=0} : f32[2]\n"
       "  return %y\n}\n",
       "3:3", "a type for each of the 2 outputs"},
      {"func @main() -> () {\n  %c = constant() {value=dense<f32[3]: 1.0, 2.0>} : f32[3]\n"
       "  return\n}\n",
       "2:32", "needs 3 elements, got 2"},
      {"func @main() -> () {\n  %c = constant() {value=dense<f32[1]: 1.0, 2.0>} : f32[1]\n"
       "  return\n}\n",
       "2:45", "holds 1 elements"},
      {"func @main() -> () {\n  %c = constant() {value=dense<i8[1]: 300>} : i8[1]\n  return\n}\n",
       "2:39", "out of range for i8"},
      {"func @main() -> () {\n  %c = constant() {v=\"abc} : i8[1]\n  return\n}\n", "2:22",
       "unterminated string"},
      {"func @main() -> () {\n  %c = constant() {v=1, v=2} : i8[1]\n  return\n}\n", "2:25",
       "duplicate attribute 'v'"},
      {"func @main() -> () {\n  %c = constant() {v=99999999999999999999} : i8[1]\n  return\n}\n",
       "2:22", "int64 range"},
      {"func @main(%x: f32[9223372036854775807,2]) -> () {\n  return\n}\n", "1:16", "too large"},
      {"func @main() -> () {\n  %c = constant() {v=[1, \"a\"]} : i8[1]\n  return\n}\n", "2:26",
       "do not mix"},
      {"func @main() -> () {\n  %c = constant() {v=bogus} : i8[1]\n  return\n}\n", "2:22",
       "expected an attribute value"},
      {"func @main() -> () {\n  return\n}\nfunc @main() -> () {\n  return\n}\n", "4:6",
       "redefinition of function @main"},
      {"module {a=\"1\"}\nmodule {b=\"2\"}\n", "2:1", "expected 'func'"},
      {"func @main() -> () {\n  %c = constant() {v=nan(0x1)} : i8[1]\n  return\n}\n", "2:22",
       "not a NaN"},
      {"func @main(% x: f32[1]) -> () {\n  return\n}\n", "1:13", "expected a name after '%'"},
      {"func @main() -> () {\n  %c = constant() {v=\"\\q\"} : i8[1]\n  return\n}\n", "2:23",
       "unknown escape"},
  };
  for (const auto& c : cases) {
    auto m = ParseModule(c.text);
    ASSERT_FALSE(m.ok()) << "parsed: " << c.text;
    const std::string msg(m.status().message());
    EXPECT_EQ(msg.rfind(std::string(c.position) + ": ", 0), 0u) << msg << "\nfor: " << c.text;
    EXPECT_NE(msg.find(c.needle), std::string::npos) << msg << "\nfor: " << c.text;
  }
}

TEST(Text, AbsurdSizesAreRejectedWithoutAllocating) {
  // A declared element count far beyond memory: must fail on the element count, not allocate.
  auto m = ParseModule(
      "func @main() -> () {\n"
      "  %c = constant() {value=dense<f32[1000000000,1000000000]: 1.0>} : f32[1]\n"
      "  return\n}\n");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(std::string(m.status().message()).find("needs 1000000000000000000 elements"),
            std::string::npos)
      << m.status();
  std::string deep = "func @main(%x: f32[";
  for (int i = 0; i < 65; ++i) deep += "1,";
  deep += "1]) -> () {\n  return\n}\n";
  auto d = ParseModule(deep);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(std::string(d.status().message()).find("rank exceeds 64"), std::string::npos);
  // Huge declared shapes in types are only metadata and parse fine.
  EXPECT_TRUE(ParseModule("func @main(%x: f32[100000000000]) -> () {\n  return\n}\n").ok());
}

// Truncations and byte flips of a valid module never crash; whatever parses prints, re-parses
// and prints the same again (and the verifier can run on it).
TEST(Text, RobustToTruncationAndCorruption) {
  const std::string text = AllOpsText();
  ASSERT_FALSE(text.empty());
  int parsed = 0, rejected = 0;
  auto check = [&](std::string_view input) {
    auto m = ParseModule(input);
    if (!m.ok()) {
      ++rejected;
      EXPECT_FALSE(m.status().message().empty());
      return;
    }
    ++parsed;
    const std::string p1 = PrintModule(**m);
    (void)Verify(**m);
    auto m2 = ParseModule(p1);
    ASSERT_TRUE(m2.ok()) << m2.status() << "\n" << p1;
    EXPECT_EQ(PrintModule(**m2), p1);
  };
  for (size_t len = 0; len <= text.size(); len += 3) check(std::string_view(text).substr(0, len));
  const char replacements[] = {'\0', '"', '%', '9', '{', '}', '\xff', '-', ',', '\n', '\\', '['};
  for (size_t i = 0; i < text.size(); i += 3) {
    for (char r : replacements) {
      std::string corrupted = text;
      corrupted[i] = r;
      check(corrupted);
    }
  }
  EXPECT_GT(parsed, 0);
  EXPECT_GT(rejected, 0);
}

}  // namespace
}  // namespace ptc::ir
