// fused_elementwise kernel against double-precision references written out per case.
#include <cmath>
#include <random>

#include "codegen/cpu/fused_kernels.h"
#include "codegen/cpu/kernel.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ptc::cpu {
namespace {

using ir::DType;
using ir::Shape;
using ir::Tensor;

std::vector<float> Random(int64_t n, uint32_t seed, float lo = -3.f, float hi = 3.f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Builds fused_elementwise over params of `shapes` and runs it through CreateFusedKernel.
absl::StatusOr<std::vector<float>> RunFused(const std::vector<Shape>& shapes,
                                            const std::vector<std::vector<float>>& data,
                                            std::vector<std::string> program,
                                            std::vector<double> constants, Shape out) {
  ir::Function fn("f");
  std::vector<ir::Value*> ins;
  for (size_t i = 0; i < shapes.size(); ++i) {
    ins.push_back(fn.AddParam("x" + std::to_string(i), {DType::kF32, shapes[i]}));
  }
  ir::AttrMap attrs{{"program", program}, {"shape", out}};
  if (!constants.empty()) attrs["constants"] = constants;
  ir::Node* n = fn.AddNode("fused_elementwise", ins, {{DType::kF32, out}}, attrs);
  auto k = CreateFusedKernel(*n);
  if (!k.ok()) return k.status();
  std::vector<const void*> in_ptrs;
  for (const auto& d : data) in_ptrs.push_back(d.data());
  std::vector<float> result(ir::NumElements(out), -1.f);
  void* out_ptr = result.data();
  auto s = (*k)->Run(in_ptrs, absl::Span<void* const>(&out_ptr, 1), nullptr);
  if (!s.ok()) return s;
  return result;
}

double GeluRef(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }

TEST(FusedElementwiseTest, BiasGeluWithSuffixBroadcast) {
  // [B*T, C] + bias [C], then exact gelu; 3 x 1000 crosses tiles and a bias row boundary.
  const int64_t rows = 3, c = 1000;
  auto h = Random(rows * c, 1), b = Random(c, 2);
  auto y = RunFused({{rows, c}, {c}}, {h, b}, {"x0", "x1", "add", "gelu"}, {}, {rows, c});
  ASSERT_TRUE(y.ok()) << y.status();
  for (int64_t i = 0; i < rows * c; ++i) {
    double ref = GeluRef(double(h[i]) + double(b[i % c]));
    ASSERT_NEAR((*y)[i], ref, 2e-6 + 2e-6 * std::fabs(ref)) << i;
  }
}

TEST(FusedElementwiseTest, ScalarGeneralBroadcastAndConstants) {
  // a [4,1,6] (general broadcast over the middle dim), s [] (scalar), c [4,5,6] (full):
  // y = exp(a * 0.5) - s * c + 2.0
  auto a = Random(24, 3), s = Random(1, 4), c = Random(120, 5);
  auto y = RunFused({{4, 1, 6}, {}, {4, 5, 6}}, {a, s, c},
                    {"x0", "c0", "mul", "exp", "x1", "x2", "mul", "sub", "c1", "add"}, {0.5, 2.0},
                    {4, 5, 6});
  ASSERT_TRUE(y.ok()) << y.status();
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 5; ++j) {
      for (int k = 0; k < 6; ++k) {
        int64_t o = (i * 5 + j) * 6 + k;
        double ref = std::exp(a[i * 6 + k] * 0.5) - double(s[0]) * c[o] + 2.0;
        ASSERT_NEAR((*y)[o], ref, 1e-5 * (1 + std::fabs(ref))) << o;
      }
    }
  }
}

TEST(FusedElementwiseTest, UnaryOpsMatchLibm) {
  const int64_t n = 777;
  auto x = Random(n, 6, 0.1f, 4.f);  // positive: sqrt and log are defined
  struct Case {
    const char* op;
    double (*ref)(double);
  };
  const Case cases[] = {
      {"neg", [](double v) { return -v; }},
      {"abs", [](double v) { return std::fabs(v); }},
      {"sqrt", [](double v) { return std::sqrt(v); }},
      {"reciprocal", [](double v) { return 1 / v; }},
      {"exp", [](double v) { return std::exp(v); }},
      {"log", [](double v) { return std::log(v); }},
      {"erf", [](double v) { return std::erf(v - 2); }},  // program subtracts 2 first
      {"tanh", [](double v) { return std::tanh(v - 2); }},
      {"sigmoid", [](double v) { return 1 / (1 + std::exp(-(v - 2))); }},
      {"relu", [](double v) { return std::max(v - 2, 0.0); }},
      {"floor", [](double v) { return std::floor(v); }},
      {"ceil", [](double v) { return std::ceil(v); }},
      {"cos", [](double v) { return std::cos(v); }},
      {"sin", [](double v) { return std::sin(v); }},
      {"gelu", [](double v) { return GeluRef(v - 2); }},
      {"gelu_tanh", [](double v) {
         double u = v - 2;
         return 0.5 * u * (1 + std::tanh(std::sqrt(2 / M_PI) * (u + 0.044715 * u * u * u)));
       }},
  };
  for (const Case& c : cases) {
    std::string op = c.op;
    bool shifted = op == "erf" || op == "tanh" || op == "sigmoid" || op == "relu" ||
                   op == "gelu" || op == "gelu_tanh";
    std::vector<std::string> program = shifted ? std::vector<std::string>{"x0", "c0", "sub", op}
                                               : std::vector<std::string>{"x0", op};
    auto y = RunFused({{n}}, {x}, program, shifted ? std::vector<double>{2.0} : std::vector<double>{},
                      {n});
    ASSERT_TRUE(y.ok()) << op << ": " << y.status();
    for (int64_t i = 0; i < n; ++i) {
      double ref = c.ref(x[i]);
      ASSERT_NEAR((*y)[i], ref, 1e-6 + 2e-6 * std::fabs(ref)) << op << " at " << x[i];
    }
  }
}

TEST(FusedElementwiseTest, BinaryOpsAndNanPropagation) {
  std::vector<float> a = {1.f, -2.f, 3.f, NAN, 2.f};
  std::vector<float> b = {4.f, 5.f, -6.f, 1.f, 3.f};
  auto mx = RunFused({{5}, {5}}, {a, b}, {"x0", "x1", "max"}, {}, {5});
  auto mn = RunFused({{5}, {5}}, {a, b}, {"x0", "x1", "min"}, {}, {5});
  auto pw = RunFused({{5}, {5}}, {a, b}, {"x0", "x1", "pow"}, {}, {5});
  auto dv = RunFused({{5}, {5}}, {a, b}, {"x0", "x1", "div"}, {}, {5});
  ASSERT_TRUE(mx.ok() && mn.ok() && pw.ok() && dv.ok());
  EXPECT_THAT(std::vector<float>(mx->begin(), mx->begin() + 3), testing::ElementsAre(4, 5, 3));
  EXPECT_THAT(std::vector<float>(mn->begin(), mn->begin() + 3), testing::ElementsAre(1, -2, -6));
  EXPECT_TRUE(std::isnan((*mx)[3]));
  EXPECT_TRUE(std::isnan((*mn)[3]));
  EXPECT_FLOAT_EQ((*pw)[4], 8.f);
  EXPECT_FLOAT_EQ((*dv)[2], -0.5f);
}

TEST(FusedElementwiseTest, SingleLoadProgramCopies) {
  std::vector<float> a = {1.f, 2.f, 3.f};
  auto y = RunFused({{3}}, {a}, {"x0"}, {}, {3});
  ASSERT_TRUE(y.ok());
  EXPECT_THAT(*y, testing::ElementsAre(1, 2, 3));
}

TEST(FusedElementwiseTest, LargeParallelMatchesSerialReference) {
  // 1<<20 elements: split across threads; residual add of three operands.
  const int64_t n = 1 << 20;
  auto a = Random(n, 7), b = Random(n, 8), c = Random(n, 9);
  auto y = RunFused({{n}, {n}, {n}}, {a, b, c}, {"x0", "x1", "x2", "add", "add"}, {}, {n});
  ASSERT_TRUE(y.ok());
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_FLOAT_EQ((*y)[i], a[i] + (b[i] + c[i])) << i;
  }
}

TEST(FusedElementwiseTest, BadProgramsAreErrors) {
  std::vector<float> a = {1.f};
  auto underflow = RunFused({{1}}, {a}, {"x0", "add"}, {}, {1});
  EXPECT_FALSE(underflow.ok());
  auto leftover = RunFused({{1}}, {a}, {"x0", "x0"}, {}, {1});
  EXPECT_FALSE(leftover.ok());
  auto unknown = RunFused({{1}}, {a}, {"x0", "frobnicate"}, {}, {1});
  EXPECT_FALSE(unknown.ok());
  EXPECT_THAT(std::string(unknown.status().message()), testing::HasSubstr("frobnicate"));
  auto operand = RunFused({{1}}, {a}, {"x1"}, {}, {1});
  EXPECT_FALSE(operand.ok());
  auto constant = RunFused({{1}}, {a}, {"c0"}, {}, {1});
  EXPECT_FALSE(constant.ok());
}

TEST(FusedElementwiseTest, CreateKernelDispatchesFusedOps) {
  ir::Function fn("f");
  ir::Value* x = fn.AddParam("x", {DType::kF32, {2}});
  ir::Node* n = fn.AddNode("fused_elementwise", {x}, {{DType::kF32, {2}}},
                           {{"program", std::vector<std::string>{"x0", "neg"}},
                            {"shape", std::vector<int64_t>{2}}});
  EXPECT_TRUE(HasKernel("fused_elementwise"));
  auto out = EvaluateNode(*n, {Tensor::FromVector<float>(DType::kF32, {2}, {1.f, -2.f})});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].GetDouble(0), -1.0);
  EXPECT_EQ((*out)[0].GetDouble(1), 2.0);
}

}  // namespace
}  // namespace ptc::cpu

namespace ptc::cpu {
namespace {

// Mixed dtypes (a --precision plan's chain, `dtype` attribute): a bf16 operand read widened,
// an f32 operand, the program in f32 and one rounding to the bf16 result, through the generic
// CreateKernel (HalfWrapperKernel); matches cast-up, add, gelu, cast-down run op by op.
TEST(FusedElementwise, MixedDtypesRoundOnceLikeTheUnfusedOps) {
  const Shape s{6, 16};
  ir::Function fn("f");
  ir::Value* x = fn.AddParam("x", {DType::kBF16, s});
  ir::Value* b = fn.AddParam("b", {DType::kF32, {16}});
  ir::Node* fused = fn.AddNode(
      "fused_elementwise", {x, b}, {{DType::kBF16, s}},
      {{"program", std::vector<std::string>{"x0", "x1", "add", "gelu"}},
       {"shape", s},
       {"dtype", DType::kBF16}});
  ir::Node* up = fn.AddNode("cast", {x}, {{DType::kF32, s}}, {{"to", DType::kF32}});
  ir::Node* add = fn.AddNode("add", {up->output(), b}, {{DType::kF32, s}}, {});
  ir::Node* gelu = fn.AddNode("gelu", {add->output()}, {{DType::kF32, s}},
                              {{"approximate", std::string("none")}});
  ir::Node* down = fn.AddNode("cast", {gelu->output()}, {{DType::kBF16, s}},
                              {{"to", DType::kBF16}});
  Tensor xt(DType::kF32, s), bt(DType::kF32, {16});
  std::vector<float> xv = Random(96, 7), bv = Random(16, 8);
  for (int64_t i = 0; i < 96; ++i) xt.mutable_data_as<float>()[i] = xv[i];
  for (int64_t i = 0; i < 16; ++i) bt.mutable_data_as<float>()[i] = bv[i];
  auto xb = EvaluateNode(*fn.AddNode("cast", {fn.AddParam("xf", {DType::kF32, s})},
                                     {{DType::kBF16, s}}, {{"to", DType::kBF16}}),
                         {xt});
  ASSERT_TRUE(xb.ok()) << xb.status();
  auto got = EvaluateNode(*fused, {(*xb)[0], bt});
  ASSERT_TRUE(got.ok()) << got.status();
  auto u = EvaluateNode(*up, {(*xb)[0]});
  ASSERT_TRUE(u.ok());
  auto a = EvaluateNode(*add, {(*u)[0], bt});
  ASSERT_TRUE(a.ok());
  auto g = EvaluateNode(*gelu, {(*a)[0]});
  ASSERT_TRUE(g.ok());
  auto want = EvaluateNode(*down, {(*g)[0]});
  ASSERT_TRUE(want.ok());
  ASSERT_EQ((*got)[0].type(), (*want)[0].type());
  int differ = 0;
  for (int64_t i = 0; i < 96; ++i) {
    const double w = (*want)[0].GetDouble(i), v = (*got)[0].GetDouble(i);
    EXPECT_NEAR(v, w, 8e-3 * std::fabs(w) + 1e-6) << i;  // one bf16 ulp at most
    differ += v != w;
  }
  EXPECT_LE(differ, 4) << "gelu's f32 rounding may flip a bf16 tie now and then";
}

}  // namespace
}  // namespace ptc::cpu
