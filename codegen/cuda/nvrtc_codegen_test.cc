// The fused_elementwise code generator: golden source, indexing modes, deduplication, NVRTC
// compiling every token for every float dtype and broadcast pattern (resource usage checked:
// no spills, no stack), and the compile driver storing the kernels in a CUDA plan. No GPU
// needed; the NVRTC tests skip when NVRTC cannot be loaded.
#include "codegen/cuda/nvrtc_codegen.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "compiler/driver/driver.h"
#include "compiler/ir/ops.h"
#include "compiler/onnx/importer.h"
#include "gtest/gtest.h"
#include "models/models.h"
#include "passes/pass.h"
#include "runtime/plan/plan.h"

namespace ptc::cuda::codegen {
namespace {

using ir::DType;
using ir::TensorType;

struct Built {
  std::unique_ptr<ir::Module> module;
  ir::Node* node = nullptr;
};

Built Fused(std::vector<TensorType> inputs, std::vector<std::string> program,
            std::vector<double> constants, ir::Shape shape, std::string fn = "main",
            std::string out_name = "y", ir::AttrMap attrs = {}) {
  Built b;
  b.module = std::make_unique<ir::Module>();
  ir::Function* f = b.module->AddFunction(fn);
  std::vector<ir::Value*> params;
  for (size_t i = 0; i < inputs.size(); ++i) {
    params.push_back(f->AddParam(absl::StrCat("p", i), inputs[i]));
  }
  attrs["program"] = program;
  attrs["shape"] = shape;
  if (!constants.empty()) attrs["constants"] = constants;
  auto types = ir::InferTypes("fused_elementwise", inputs, attrs, 1);
  EXPECT_TRUE(types.ok()) << types.status();
  b.node = f->AddNode("fused_elementwise", params, *types, attrs, "", {out_name});
  f->set_results({b.node->output()});
  return b;
}

// The text with the kernel's hashed name replaced by NAME (the name is checked separately).
std::string Normalized(const FusedSource& s) {
  return absl::StrReplaceAll(s.source, {{s.name, "NAME"}});
}

// The vector loop (4 f32 per thread, 16-byte accesses) when every pointer is aligned, the
// element loop otherwise.
TEST(FusedCodegen, GoldenBiasGeluF32) {
  Built b = Fused({{DType::kF32, {8, 1024}}, {DType::kF32, {1024}}}, {"x0", "x1", "add", "gelu"},
                  {}, {8, 1024});
  auto src = GenerateFusedElementwise(*b.node);
  ASSERT_TRUE(src.ok()) << src.status();
  EXPECT_TRUE(std::regex_match(src->name, std::regex("ptc_fused_[0-9a-f]{16}"))) << src->name;
  EXPECT_EQ(src->num_operands, 2);
  EXPECT_EQ(src->elements, 8192);
  EXPECT_EQ(Normalized(*src),
            R"(// ptc fused_elementwise -> f32[8,1024]
// program: x0 x1 add gelu
// operands: f32[8,1024], f32[1024]
// merged dims: [8,1024], 32-bit indexing, 4 elements per thread
struct alignas(16) ptc_w4 { unsigned w[4]; };
extern "C" __global__ void __launch_bounds__(256)
NAME(const float* __restrict__ x0, const float* __restrict__ x1, float* __restrict__ out) {
  if (((reinterpret_cast<unsigned long long>(x0) & 15ull) |
       (reinterpret_cast<unsigned long long>(x1) & 15ull) |
       (reinterpret_cast<unsigned long long>(out) & 15ull)) == 0ull) {
    for (unsigned v = blockIdx.x * 256u + threadIdx.x; v < 2048u; v += gridDim.x * 256u) {
      const unsigned i = v * 4u;
      const ptc_w4 w0 = *reinterpret_cast<const ptc_w4*>(x0 + i);
      const float a0_0 = __uint_as_float(w0.w[0]);
      const float a0_1 = __uint_as_float(w0.w[1]);
      const float a0_2 = __uint_as_float(w0.w[2]);
      const float a0_3 = __uint_as_float(w0.w[3]);
      const ptc_w4 w1 = *reinterpret_cast<const ptc_w4*>(x1 + i % 1024u);
      const float a1_0 = __uint_as_float(w1.w[0]);
      const float a1_1 = __uint_as_float(w1.w[1]);
      const float a1_2 = __uint_as_float(w1.w[2]);
      const float a1_3 = __uint_as_float(w1.w[3]);
      const float t0_0 = a0_0 + a1_0;
      const float t1_0 = 0.5f * t0_0 * (1.0f + erff(t0_0 * 0.70710678118654752440f));
      const float t0_1 = a0_1 + a1_1;
      const float t1_1 = 0.5f * t0_1 * (1.0f + erff(t0_1 * 0.70710678118654752440f));
      const float t0_2 = a0_2 + a1_2;
      const float t1_2 = 0.5f * t0_2 * (1.0f + erff(t0_2 * 0.70710678118654752440f));
      const float t0_3 = a0_3 + a1_3;
      const float t1_3 = 0.5f * t0_3 * (1.0f + erff(t0_3 * 0.70710678118654752440f));
      ptc_w4 o;
      o.w[0] = __float_as_uint(t1_0);
      o.w[1] = __float_as_uint(t1_1);
      o.w[2] = __float_as_uint(t1_2);
      o.w[3] = __float_as_uint(t1_3);
      *reinterpret_cast<ptc_w4*>(out + i) = o;
    }
    return;
  }
  for (unsigned i = blockIdx.x * 256u + threadIdx.x; i < 8192u; i += gridDim.x * 256u) {
    const float a0 = __ldg(x0 + i);
    const float a1 = __ldg(x1 + i % 1024u);
    const float t0 = a0 + a1;
    const float t1 = 0.5f * t0 * (1.0f + erff(t0 * 0.70710678118654752440f));
    out[i] = t1;
  }
}
)");
}

// bf16: f32 math, RNE store; a scalar operand hoisted out of the loop; an operand broadcast in
// the middle ([4,1,6] against [4,5,6]) through coordinates; constants as exact literals. The
// innermost dim (6) allows 2 elements per thread, not 8.
TEST(FusedCodegen, GoldenBf16ScalarAndGeneralBroadcast) {
  Built b = Fused({{DType::kBF16, {4, 1, 6}}, {DType::kBF16, {1}}, {DType::kBF16, {4, 5, 6}}},
                  {"x0", "x1", "mul", "c0", "max", "x2", "add"}, {0.1, -2.0}, {4, 5, 6});
  auto src = GenerateFusedElementwise(*b.node);
  ASSERT_TRUE(src.ok()) << src.status();
  EXPECT_EQ(Normalized(*src),
            R"(// ptc fused_elementwise -> bf16[4,5,6]
// program: x0 x1 mul c0 max x2 add
// constants: 0.10000000000000001, -2.0
// operands: bf16[4,1,6], bf16[1], bf16[4,5,6]
// merged dims: [4,5,6], 32-bit indexing, 2 elements per thread
struct alignas(4) ptc_w1 { unsigned w[1]; };
__device__ __forceinline__ float ptc_bf2f(unsigned short h) {
  return __uint_as_float(static_cast<unsigned>(h) << 16);
}
__device__ __forceinline__ unsigned short ptc_f2bf(float f) {
  unsigned u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<unsigned short>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<unsigned short>(u >> 16);
}
extern "C" __global__ void __launch_bounds__(256)
NAME(const unsigned short* __restrict__ x0, const unsigned short* __restrict__ x1, const unsigned short* __restrict__ x2, unsigned short* __restrict__ out) {
  const float k0 = 0.100000001f;
  const float a1 = ptc_bf2f(__ldg(x1));
  if (((reinterpret_cast<unsigned long long>(x0) & 3ull) |
       (reinterpret_cast<unsigned long long>(x2) & 3ull) |
       (reinterpret_cast<unsigned long long>(out) & 3ull)) == 0ull) {
    for (unsigned v = blockIdx.x * 256u + threadIdx.x; v < 60u; v += gridDim.x * 256u) {
      const unsigned i = v * 2u;
      unsigned r = i;
      const unsigned c2 = r % 6u;
      r /= 6u;
      const unsigned c1 = r % 5u;
      r /= 5u;
      const unsigned c0 = r;
      const ptc_w1 w0 = *reinterpret_cast<const ptc_w1*>(x0 + c0 * 6u + c2);
      const float a0_0 = ptc_bf2f(static_cast<unsigned short>(w0.w[0]));
      const float a0_1 = ptc_bf2f(static_cast<unsigned short>(w0.w[0] >> 16));
      const ptc_w1 w2 = *reinterpret_cast<const ptc_w1*>(x2 + i);
      const float a2_0 = ptc_bf2f(static_cast<unsigned short>(w2.w[0]));
      const float a2_1 = ptc_bf2f(static_cast<unsigned short>(w2.w[0] >> 16));
      const float t0_0 = a0_0 * a1;
      const float t1_0 = (t0_0 > k0 || t0_0 != t0_0) ? t0_0 : k0;
      const float t2_0 = t1_0 + a2_0;
      const float t0_1 = a0_1 * a1;
      const float t1_1 = (t0_1 > k0 || t0_1 != t0_1) ? t0_1 : k0;
      const float t2_1 = t1_1 + a2_1;
      ptc_w1 o;
      o.w[0] = static_cast<unsigned>(ptc_f2bf(t2_0)) | (static_cast<unsigned>(ptc_f2bf(t2_1)) << 16);
      *reinterpret_cast<ptc_w1*>(out + i) = o;
    }
    return;
  }
  for (unsigned i = blockIdx.x * 256u + threadIdx.x; i < 120u; i += gridDim.x * 256u) {
    unsigned r = i;
    const unsigned c2 = r % 6u;
    r /= 6u;
    const unsigned c1 = r % 5u;
    r /= 5u;
    const unsigned c0 = r;
    const float a0 = ptc_bf2f(__ldg(x0 + c0 * 6u + c2));
    const float a2 = ptc_bf2f(__ldg(x2 + i));
    const float t0 = a0 * a1;
    const float t1 = (t0 > k0 || t0 != t0) ? t0 : k0;
    const float t2 = t1 + a2;
    out[i] = ptc_f2bf(t2);
  }
}
)");
}

TEST(FusedCodegen, SixtyFourBitIndexingAndRowBroadcast) {
  // 2^31 elements: 64-bit indices. [N,1] against [N,C] reads x1 at i / C (a general operand
  // whose only stride is the row).
  Built b = Fused({{DType::kF64, {int64_t{1} << 24, 128}}, {DType::kF64, {int64_t{1} << 24, 1}}},
                  {"x0", "x1", "sub", "exp"}, {}, {int64_t{1} << 24, 128});
  auto src = GenerateFusedElementwise(*b.node);
  ASSERT_TRUE(src.ok()) << src.status();
  EXPECT_NE(src->source.find("for (long long i = static_cast<long long>(blockIdx.x) * 256 + "
                             "threadIdx.x; i < 2147483648ll;"),
            std::string::npos)
      << src->source;
  EXPECT_NE(src->source.find("const double a1 = __ldg(x1 + c0);"), std::string::npos)
      << src->source;
  // The vector loop: 2 f64 per thread, x1 (broadcast along the row) loaded once per vector.
  EXPECT_EQ(src->vector, 2);
  EXPECT_NE(src->source.find("for (long long v = static_cast<long long>(blockIdx.x) * 256 + "
                             "threadIdx.x; v < 1073741824ll;"),
            std::string::npos)
      << src->source;
  EXPECT_NE(src->source.find("const long long i = v * 2ll;"), std::string::npos);
  EXPECT_NE(src->source.find("const ptc_w4 w0 = *reinterpret_cast<const ptc_w4*>(x0 + i);"),
            std::string::npos);
  EXPECT_NE(src->source.find("      const double a1 = __ldg(x1 + c0);"), std::string::npos);
  EXPECT_NE(src->source.find("const double t1 = exp(t0);"), std::string::npos) << src->source;
  // Just under 2^31: 32-bit.
  Built s = Fused({{DType::kF32, {(int64_t{1} << 31) - 1}}}, {"x0", "neg"}, {},
                  {(int64_t{1} << 31) - 1});
  auto s32 = GenerateFusedElementwise(*s.node);
  ASSERT_TRUE(s32.ok()) << s32.status();
  EXPECT_NE(s32->source.find("for (unsigned i ="), std::string::npos);
  // An odd innermost dim: the element loop only.
  EXPECT_EQ(s32->vector, 1);
  EXPECT_EQ(s32->source.find("ptc_w"), std::string::npos) << s32->source;
}

// The vector loop's width: 16 bytes of the widest dtype read or written (bf16 8, with an f32
// operand 4), halved until it divides the innermost dim; operands broadcast along the
// innermost dim load once per vector; a dropout hashes once per two elements.
TEST(FusedCodegen, VectorWidths) {
  auto vector_of = [](std::vector<TensorType> in, ir::Shape shape, ir::AttrMap attrs = {}) {
    Built b = Fused(std::move(in), {"x0", "x1", "add"}, {}, shape, "main", "y", attrs);
    auto src = GenerateFusedElementwise(*b.node);
    EXPECT_TRUE(src.ok()) << src.status();
    return src.ok() ? src->vector : 0;
  };
  EXPECT_EQ(vector_of({{DType::kBF16, {4, 64}}, {DType::kBF16, {64}}}, {4, 64}), 8);
  EXPECT_EQ(vector_of({{DType::kBF16, {4, 64}}, {DType::kF32, {64}}}, {4, 64},
                      {{"dtype", DType::kBF16}}),
            4);
  EXPECT_EQ(vector_of({{DType::kF16, {4, 12}}, {DType::kF16, {4, 1}}}, {4, 12}), 4);
  EXPECT_EQ(vector_of({{DType::kF64, {4, 12}}, {DType::kF64, {12}}}, {4, 12}), 2);
  EXPECT_EQ(vector_of({{DType::kF32, {4, 6}}, {DType::kF32, {6}}}, {4, 6}), 2);
  EXPECT_EQ(vector_of({{DType::kF32, {4, 7}}, {DType::kF32, {7}}}, {4, 7}), 1);
  EXPECT_EQ(vector_of({{DType::kF32, {}}, {DType::kF32, {}}}, {}), 1);  // rank 0
  // A scalar operand takes no part.
  EXPECT_EQ(vector_of({{DType::kBF16, {2, 16}}, {DType::kF32, {1}}}, {2, 16},
                      {{"dtype", DType::kBF16}}),
            8);

  Built d = Fused({{DType::kBF16, {4, 64}}}, {"x0", "dropout0"}, {}, {4, 64}, "main", "y",
                  {{"dropout_ratio", std::vector<double>{0.1}},
                   {"dropout_seed", std::vector<int64_t>{1}},
                   {"dropout_counter", std::vector<int64_t>{-1}}});
  auto src = GenerateFusedElementwise(*d.node);
  ASSERT_TRUE(src.ok()) << src.status();
  EXPECT_EQ(src->vector, 8);
  const std::string& t = src->source;
  EXPECT_NE(t.find("const unsigned long long h0_3 = ptc_mix(key0 + "), std::string::npos) << t;
  EXPECT_EQ(t.find("h0_4"), std::string::npos) << "four hashes per 8 elements: " << t;
  EXPECT_NE(t.find("static_cast<unsigned>((h0_3 >> (s0 + 32u)) & 0xffffull) >= 6554u"),
            std::string::npos)
      << t;
}

TEST(FusedCodegen, SourceDependsOnWhatIsComputedNotOnNames) {
  Built a = Fused({{DType::kF32, {4, 8}}}, {"x0", "c0", "mul"}, {0.5}, {4, 8}, "main", "a");
  Built b = Fused({{DType::kF32, {4, 8}}}, {"x0", "c0", "mul"}, {0.5}, {4, 8}, "eval", "b");
  Built c = Fused({{DType::kF32, {4, 8}}}, {"x0", "c0", "mul"}, {0.25}, {4, 8});
  Built d = Fused({{DType::kF16, {4, 8}}}, {"x0", "c0", "mul"}, {0.5}, {4, 8});
  auto sa = GenerateFusedElementwise(*a.node), sb = GenerateFusedElementwise(*b.node);
  auto sc = GenerateFusedElementwise(*c.node), sd = GenerateFusedElementwise(*d.node);
  ASSERT_TRUE(sa.ok() && sb.ok() && sc.ok() && sd.ok());
  EXPECT_EQ(sa->source, sb->source);
  EXPECT_EQ(sa->name, sb->name);
  EXPECT_NE(sa->name, sc->name);
  EXPECT_NE(sa->name, sd->name);
  // Generating twice gives the same text.
  EXPECT_EQ(GenerateFusedElementwise(*a.node)->source, sa->source);
}

// Dropout tokens: the seed is a kernel argument (FusedSource::seeds), so GPT-2's residual adds,
// which differ only in their dropouts' seeds, share one kernel; the ratio and the counter's
// dtype are part of the text. The mask's hash is spelled out once, the key computed once per
// thread from the counter read on the device.
TEST(FusedCodegen, DropoutSeedsAreArguments) {
  auto residual = [](int64_t seed, double ratio, DType counter) {
    return Fused({{DType::kF32, {4, 8}}, {DType::kF32, {4, 8}}, {counter, {}}},
                 {"x0", "x1", "dropout0", "add"}, {}, {4, 8}, "main", "y",
                 {{"dropout_ratio", std::vector<double>{ratio}},
                  {"dropout_seed", std::vector<int64_t>{seed}},
                  {"dropout_counter", std::vector<int64_t>{2}}});
  };
  Built a = residual(3, 0.1, DType::kI64), b = residual(7, 0.1, DType::kI64);
  Built c = residual(3, 0.2, DType::kI64), d = residual(3, 0.1, DType::kI32);
  auto sa = GenerateFusedElementwise(*a.node), sb = GenerateFusedElementwise(*b.node);
  auto sc = GenerateFusedElementwise(*c.node), sd = GenerateFusedElementwise(*d.node);
  ASSERT_TRUE(sa.ok()) << sa.status();
  ASSERT_TRUE(sb.ok() && sc.ok() && sd.ok());
  EXPECT_EQ(sa->source, sb->source);
  EXPECT_EQ(sa->seeds, std::vector<uint64_t>{3});
  EXPECT_EQ(sb->seeds, std::vector<uint64_t>{7});
  EXPECT_NE(sa->name, sc->name);
  EXPECT_NE(sa->name, sd->name);
  const std::string& t = sa->source;
  EXPECT_NE(t.find("float* __restrict__ out, unsigned long long seed0)"), std::string::npos) << t;
  EXPECT_NE(t.find("const long long* __restrict__ x2"), std::string::npos) << t;
  EXPECT_NE(t.find("key0 = ptc_dropout_key(seed0, static_cast<long long>(__ldg(x2)));"),
            std::string::npos)
      << t;
  EXPECT_NE(t.find("ptc_keep(key0, static_cast<unsigned long long>(i), "), std::string::npos) << t;
  EXPECT_EQ(t.find("__ldg(x2 +"), std::string::npos) << "the counter is read once: " << t;
}

TEST(FusedCodegen, RejectsWhatItCannotGenerate) {
  Built empty = Fused({{DType::kF32, {0, 4}}}, {"x0", "neg"}, {}, {0, 4});
  EXPECT_FALSE(GenerateFusedElementwise(*empty.node).ok());
  Built bad = Fused({{DType::kF32, {4}}}, {"x0", "neg"}, {}, {4});
  bad.node->set_attr("program", std::vector<std::string>{"x0", "frobnicate"});
  auto s = GenerateFusedElementwise(*bad.node);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("unknown program token 'frobnicate'"), std::string::npos);
  bad.node->set_attr("program", std::vector<std::string>{"x0", "x3", "add"});
  EXPECT_NE(GenerateFusedElementwise(*bad.node).status().message().find("missing operand"),
            std::string::npos);
  bad.node->set_attr("program", std::vector<std::string>{"x0", "dropout0"});
  EXPECT_NE(GenerateFusedElementwise(*bad.node).status().message().find("missing dropout"),
            std::string::npos);
}

TEST(FusedCodegen, ValidatesArch) {
  EXPECT_TRUE(ValidateCudaArch("sm_90").ok());
  EXPECT_TRUE(ValidateCudaArch("sm_90a").ok());
  EXPECT_TRUE(ValidateCudaArch("sm_100").ok());
  EXPECT_FALSE(ValidateCudaArch("90").ok());
  EXPECT_FALSE(ValidateCudaArch("compute_90").ok());
  EXPECT_FALSE(ValidateCudaArch("sm_9").ok());
  EXPECT_FALSE(ValidateCudaArch("sm_90 --foo").ok());
}

// ------------------------------------------------------------------------------------ NVRTC

#define PTC_SKIP_WITHOUT_NVRTC()                                                       \
  do {                                                                                 \
    const NvrtcInfo nv_ = GetNvrtc();                                                  \
    if (!nv_.available) GTEST_SKIP() << "SKIPPED: NVRTC not available (" << nv_.why << ")"; \
  } while (0)

std::vector<std::string> EveryTokenProgram() {
  // Every unary token in a chain, then every binary one against x1, then a constant.
  std::vector<std::string> p = {"x0"};
  for (const char* u : {"neg", "abs", "sqrt", "reciprocal", "exp", "log", "erf", "tanh",
                        "sigmoid", "relu", "floor", "ceil", "cos", "sin", "identity", "gelu",
                        "gelu_tanh"}) {
    p.push_back(u);
  }
  for (const char* bin : {"add", "sub", "mul", "div", "pow", "max", "min"}) {
    p.push_back("x1");
    p.push_back(bin);
  }
  p.push_back("c0");
  p.push_back("add");
  return p;
}

struct CompileCase {
  std::string name;
  std::vector<TensorType> inputs;
  std::vector<std::string> program;
  ir::Shape shape;
};

std::vector<CompileCase> CompileCases() {
  std::vector<CompileCase> cs;
  for (DType d : {DType::kF32, DType::kF16, DType::kBF16, DType::kF64}) {
    const std::string n(ir::DTypeName(d));
    cs.push_back({"every_token_suffix_" + n, {{d, {4, 33}}, {d, {33}}}, EveryTokenProgram(),
                  {4, 33}});
    cs.push_back({"every_token_general_" + n, {{d, {4, 1, 6}}, {d, {5, 1}}}, EveryTokenProgram(),
                  {4, 5, 6}});
    cs.push_back({"scalar_" + n, {{d, {1}}, {d, {3, 7}}}, {"x1", "x0", "div", "c0", "pow"},
                  {3, 7}});
  }
  cs.push_back({"index64_f32", {{DType::kF32, {int64_t{1} << 23, 256}}, {DType::kF32, {256}}},
                {"x0", "x1", "mul", "gelu_tanh"}, {int64_t{1} << 23, 256}});
  cs.push_back({"rank6_general_f32",
                {{DType::kF32, {2, 1, 3, 1, 5, 1}}, {DType::kF32, {1, 4, 1, 2, 1, 3}}},
                {"x0", "x1", "sub", "sigmoid"}, {2, 4, 3, 2, 5, 3}});
  return cs;
}

TEST(NvrtcCompile, EveryTokenDtypeAndBroadcastCompilesWithoutSpills) {
  PTC_SKIP_WITHOUT_NVRTC();
  double total = 0;
  int count = 0;
  for (const CompileCase& c : CompileCases()) {
    Built b = Fused(c.inputs, c.program, {1.5}, c.shape);
    auto src = GenerateFusedElementwise(*b.node);
    ASSERT_TRUE(src.ok()) << c.name << ": " << src.status();
    auto bin = CompileToCubin(src->name, src->source, kDefaultCudaArch);
    ASSERT_TRUE(bin.ok()) << c.name << ": " << bin.status() << "\n" << src->source;
    EXPECT_EQ(bin->cubin.substr(0, 4), "\x7f" "ELF") << c.name;
    EXPECT_GT(bin->registers, 0) << c.name << ": " << bin->log;
    EXPECT_LE(bin->registers, 64) << c.name << ": " << bin->log;
    EXPECT_EQ(bin->spill_bytes, 0) << c.name << ": " << bin->log;
    // cosf / sinf reduce a huge argument (Payne-Hanek) in a small local array: stack, not a
    // spill, and only on that rare path.
    const bool trig = std::find(c.program.begin(), c.program.end(), "cos") != c.program.end() ||
                      std::find(c.program.begin(), c.program.end(), "sin") != c.program.end();
    EXPECT_LE(bin->stack_bytes, trig ? 64 : 0) << c.name << ": " << bin->log;
    std::printf("  %-28s %3d registers  %6zu-byte cubin  %.3f s\n", c.name.c_str(),
                bin->registers, bin->cubin.size(), bin->seconds);
    total += bin->seconds;
    ++count;
  }
  std::printf("  NVRTC %s: %d kernels, %.3f s per kernel\n", GetNvrtc().version.c_str(), count,
              total / count);
}

// Mixed dtypes (fused_elementwise's `dtype`, a --precision chain): bf16 and f16 operands read
// widened next to an f32 one, the result rounded to bf16 (and an f32 result); compiles clean.
TEST(NvrtcCompile, MixedDtypeOperandsCompile) {
  PTC_SKIP_WITHOUT_NVRTC();
  for (DType out : {DType::kBF16, DType::kF32}) {
    const std::vector<TensorType> inputs = {
        {DType::kBF16, {64, 96}}, {DType::kF32, {96}}, {DType::kF16, {64, 1}}};
    ir::AttrMap attrs = {{"program", std::vector<std::string>{"x0", "x1", "add", "x2", "mul",
                                                              "gelu"}},
                         {"shape", ir::Shape{64, 96}},
                         {"dtype", out}};
    auto types = ir::InferTypes("fused_elementwise", inputs, attrs, 1);
    ASSERT_TRUE(types.ok()) << types.status();
    ASSERT_EQ((*types)[0].dtype, out);
    ir::Module module;
    ir::Function* f = module.AddFunction("main");
    std::vector<ir::Value*> params;
    for (size_t i = 0; i < inputs.size(); ++i) {
      params.push_back(f->AddParam(absl::StrCat("p", i), inputs[i]));
    }
    ir::Node* n = f->AddNode("fused_elementwise", params, *types, attrs, "", {"y"});
    auto src = GenerateFusedElementwise(*n);
    ASSERT_TRUE(src.ok()) << src.status();
    EXPECT_NE(src->source.find("const unsigned short* __restrict__ x0"), std::string::npos);
    EXPECT_NE(src->source.find("const float* __restrict__ x1"), std::string::npos);
    EXPECT_NE(src->source.find("ptc_bf2f(__ldg(x0"), std::string::npos) << src->source;
    EXPECT_NE(src->source.find("ptc_h2f(__ldg(x2"), std::string::npos) << src->source;
    auto bin = CompileToCubin(src->name, src->source, kDefaultCudaArch);
    ASSERT_TRUE(bin.ok()) << bin.status() << "\n" << src->source;
    EXPECT_EQ(bin->spill_bytes, 0) << bin->log;
  }
}

TEST(NvrtcCompile, ErrorsCarryTheLog) {
  PTC_SKIP_WITHOUT_NVRTC();
  auto bin = CompileToCubin("broken", "extern \"C\" __global__ void broken() { undeclared(); }",
                            kDefaultCudaArch);
  ASSERT_FALSE(bin.ok());
  EXPECT_NE(bin.status().message().find("undeclared"), std::string::npos) << bin.status();
  EXPECT_FALSE(CompileToCubin("k", "", "sm9").ok());
}

TEST(NvrtcCompile, MissingNvrtcMeansNoKernels) {
  Built b = Fused({{DType::kF32, {4, 8}}}, {"x0", "exp"}, {}, {4, 8});
  GenerateOptions o;
  o.nvrtc_library = "/nonexistent/libnvrtc.so";
  GenerateReport r;
  auto ks = GenerateCudaKernels(*b.module, o, &r);
  ASSERT_TRUE(ks.ok()) << ks.status();
  EXPECT_TRUE(ks->empty());
  EXPECT_EQ(r.nodes, 1);
  EXPECT_NE(r.note.find("NVRTC not found"), std::string::npos) << r.note;
}

// Three nodes, two of them identical (in two functions): two kernels, the shared one naming
// both nodes.
TEST(NvrtcCompile, GenerateCudaKernelsDeduplicates) {
  PTC_SKIP_WITHOUT_NVRTC();
  auto m = std::make_unique<ir::Module>();
  for (const char* fn : {"main", "eval"}) {
    ir::Function* f = m->AddFunction(fn);
    ir::Value* x = f->AddParam("x", {DType::kF32, {4, 8}});
    ir::AttrMap attrs = {{"program", std::vector<std::string>{"x0", "tanh"}},
                         {"shape", std::vector<int64_t>{4, 8}}};
    ir::Node* n = f->AddNode("fused_elementwise", {x}, {{DType::kF32, {4, 8}}}, attrs, "", {"t"});
    if (std::string(fn) == "main") {
      attrs["program"] = std::vector<std::string>{"x0", "exp"};
      ir::Node* e = f->AddNode("fused_elementwise", {x}, {{DType::kF32, {4, 8}}}, attrs, "", {"e"});
      f->set_results({n->output(), e->output()});
    } else {
      f->set_results({n->output()});
    }
  }
  GenerateReport r;
  auto ks = GenerateCudaKernels(*m, GenerateOptions{}, &r);
  ASSERT_TRUE(ks.ok()) << ks.status();
  ASSERT_EQ(ks->size(), 2u);
  EXPECT_EQ(r.nodes, 3);
  EXPECT_EQ(r.kernels, 2);
  EXPECT_EQ((*ks)[0].nodes, (std::vector<std::string>{"@main %t", "@eval %t"}));
  EXPECT_EQ((*ks)[1].nodes, (std::vector<std::string>{"@main %e"}));
  EXPECT_EQ((*ks)[0].arch, "sm_90");
  EXPECT_FALSE((*ks)[0].cubin.empty());
  EXPECT_EQ((*ks)[0].spill_bytes, 0);
}

absl::StatusOr<plan::Plan> TinyGpt(const std::string& target, bool train, bool codegen = true,
                                   const std::string& precision = "fp32",
                                   const std::string& passes = "default") {
  auto config = models::Gpt2Preset("tiny");
  if (!config.ok()) return config.status();
  config->with_loss = train;
  auto model = models::BuildGpt2(*config);
  if (!model.ok()) return model.status();
  onnx_import::ImportOptions io;
  io.dims = {{"batch", 2}, {"seq", 16}};
  auto module = onnx_import::ImportOnnxBytes(model->SerializeAsString(), "", "gpt2-tiny", io);
  if (!module.ok()) return module.status();
  driver::CompileOptions o;
  o.target = target;
  o.train = train;
  o.dims = io.dims;
  o.cuda_codegen = codegen;
  o.precision = precision;
  o.passes = passes;
  return driver::CompileModule(*std::move(module), o);
}

// `ptc compile --target cuda` stores a kernel for every fused_elementwise node; the plan file
// keeps them; --target cpu and cuda_codegen = false store none. The default passes leave the
// tiny GPT none (its residual adds went into fused_matmul with fuse-residual-add; the GELUs
// are in fused_matmul epilogues; the fp32 step's one chain became gather_grad's base), so the
// training step here skips fuse-residual-add (and fold-matmul-casts, which would take the
// products' casts up): its residual adds with their casts are fused elementwise chains.
TEST(NvrtcCompile, CudaPlanStoresKernelsForEveryFusedNode) {
  PTC_SKIP_WITHOUT_NVRTC();
  std::string no_residual;
  for (const std::string& p : passes::DefaultPassList("cpu")) {  // "default" on every target
    if (p == "fuse-residual-add" || p == "fold-matmul-casts") continue;
    absl::StrAppend(&no_residual, no_residual.empty() ? "" : ",", p);
  }
  for (bool train : {true, false}) {
    const std::string precision = "bf16";
    const auto t0 = std::chrono::steady_clock::now();
    auto plan = TinyGpt("cuda", train, /*codegen=*/true, precision,
                        train ? no_residual : "default");
    ASSERT_TRUE(plan.ok()) << plan.status();
    std::printf("  tiny GPT (%s, %s): %zu kernels, compile %.2f s\n",
                train ? "train" : "inference", precision.c_str(), plan->cuda_kernels.size(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    if (train) ASSERT_GE(plan->cuda_kernels.size(), 1u);
    EXPECT_EQ(plan->options.at("cuda_arch"), "sm_90");
    std::set<std::string> covered;
    for (const plan::CudaKernel& k : plan->cuda_kernels) {
      EXPECT_EQ(k.spill_bytes, 0) << k.name;
      for (const std::string& n : k.nodes) covered.insert(n);
    }
    for (const auto& fn : plan->module->functions()) {
      for (const auto& n : fn->nodes()) {
        if (n->op() != "fused_elementwise") continue;
        const std::string key = absl::StrCat("@", fn->name(), " %", n->output()->name());
        EXPECT_TRUE(covered.count(key)) << key;
        // The stored source is what the runtime regenerates for the node.
        auto src = GenerateFusedElementwise(*n);
        ASSERT_TRUE(src.ok());
        bool found = false;
        for (const plan::CudaKernel& k : plan->cuda_kernels) found |= k.source == src->source;
        EXPECT_TRUE(found) << key;
      }
    }
    // The process id: two test runs on one machine (ctest of two build trees) write apart.
    const std::string path =
        absl::StrCat(::testing::TempDir(), "/nvrtc_codegen_test_", ::getpid(), ".plan");
    ASSERT_TRUE(plan::SavePlan(*plan, path).ok());
    auto loaded = plan::LoadPlan(path);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    ASSERT_EQ(loaded->cuda_kernels.size(), plan->cuda_kernels.size());
    for (size_t i = 0; i < plan->cuda_kernels.size(); ++i) {
      EXPECT_EQ(loaded->cuda_kernels[i].cubin, plan->cuda_kernels[i].cubin);
      EXPECT_EQ(loaded->cuda_kernels[i].source, plan->cuda_kernels[i].source);
      EXPECT_EQ(loaded->cuda_kernels[i].nodes, plan->cuda_kernels[i].nodes);
    }
    std::remove(path.c_str());
    std::remove((path + ".weights").c_str());
  }
  auto cpu = TinyGpt("cpu", false);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_TRUE(cpu->cuda_kernels.empty());
  auto off = TinyGpt("cuda", false, /*codegen=*/false);
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_TRUE(off->cuda_kernels.empty());
}

TEST(NvrtcCompile, BadArchIsACompileError) {
  auto config = models::Gpt2Preset("tiny");
  ASSERT_TRUE(config.ok());
  auto model = models::BuildGpt2(*config);
  ASSERT_TRUE(model.ok());
  onnx_import::ImportOptions io;
  io.dims = {{"batch", 1}, {"seq", 4}};
  auto module = onnx_import::ImportOnnxBytes(model->SerializeAsString(), "", "gpt2-tiny", io);
  ASSERT_TRUE(module.ok());
  driver::CompileOptions o;
  o.target = "cuda";
  o.dims = io.dims;
  o.cuda_arch = "hopper";
  auto plan = driver::CompileModule(*std::move(module), o);
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("must look like sm_90"), std::string::npos);
}

}  // namespace
}  // namespace ptc::cuda::codegen
