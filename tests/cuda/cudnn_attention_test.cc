// The optional cuDNN fused attention (runtime/cuda/cudnn_attention.h, KernelOptions::
// attention_cudnn) against the CPU reference: attention and attention_grad in bf16, both
// layouts, no mask and the compiler-marked causal mask (causal=1 plus the bool triangle), a
// sequence that is not a multiple of any tile. The kernel counters prove that cuDNN (not the
// fallback) ran. Nodes cuDNN must decline (another mask, f32) still give the right answer
// through the flash kernels. Without a GPU these tests skip with "SKIPPED: no CUDA device",
// without a loadable libcudnn.so.9 with "SKIPPED: cuDNN not available"; the declines that need
// neither run everywhere.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codegen/cpu/kernel.h"
#include "compiler/ir/ops.h"
#include "compiler/support/status.h"
#include "gtest/gtest.h"
#include "runtime/cuda/device.h"
#include "tests/cuda/cuda_test_util.h"

#if PTC_HAVE_CUDA
#include "runtime/cuda/cudnn_attention.h"
#include "runtime/cuda/device_kernels.h"
#endif

namespace ptc::cuda {
namespace {

#if PTC_HAVE_CUDA

using ir::DType;
using ir::TensorType;

#define PTC_SKIP_WITHOUT_CUDNN()                                                       \
  do {                                                                                 \
    PTC_SKIP_WITHOUT_CUDA_DEVICE();                                                    \
    const absl::Status ptc_cudnn_ = CudnnAttentionAvailable();                         \
    if (!ptc_cudnn_.ok()) {                                                            \
      GTEST_SKIP() << "SKIPPED: cuDNN not available (" << ptc_cudnn_.message() << ")"; \
    }                                                                                  \
  } while (0)

struct AttnCase {
  std::string name;
  bool grad = false;
  std::string layout;  // "bhtd" / "bthd"
  int64_t b = 1, h = 1, t = 1, d = 64;
  enum Mask { kNone, kCausal, kRandomBool } mask = kNone;
  DType dtype = DType::kBF16;
};

void PrintTo(const AttnCase& c, std::ostream* os) { *os << c.name; }

// [b, h, t, d] in the case's layout.
ir::Shape Operand(const AttnCase& c) {
  return c.layout == "bthd" ? ir::Shape{c.b, c.t, c.h, c.d} : ir::Shape{c.b, c.h, c.t, c.d};
}

std::vector<TensorType> InputTypes(const AttnCase& c, DType dt) {
  std::vector<TensorType> in;
  if (c.grad) in.push_back({dt, Operand(c)});  // dy
  for (int i = 0; i < 3; ++i) in.push_back({dt, Operand(c)});
  if (c.mask != AttnCase::kNone) in.push_back({DType::kBool, {1, 1, c.t, c.t}});
  return in;
}

struct Built {
  std::unique_ptr<ir::Module> module;
  ir::Node* node = nullptr;
};

absl::StatusOr<Built> Build(const AttnCase& c, DType dt) {
  Built b;
  b.module = std::make_unique<ir::Module>();
  ir::Function* f = b.module->AddFunction("main");
  const std::vector<TensorType> types = InputTypes(c, dt);
  std::vector<ir::Value*> params;
  for (size_t i = 0; i < types.size(); ++i) {
    params.push_back(f->AddParam(absl::StrCat("x", i), types[i]));
  }
  ir::AttrMap attrs = {{"layout", c.layout}};
  if (c.mask == AttnCase::kCausal) attrs["causal"] = int64_t{1};
  const std::string op = c.grad ? "attention_grad" : "attention";
  PTC_ASSIGN_OR_RETURN(std::vector<TensorType> out,
                       ir::InferTypes(op, types, attrs, c.grad ? 3 : 1));
  b.node = f->AddNode(op, params, out, attrs, /*loc=*/c.name);
  return b;
}

// Normal floats (rounded to `dt` by the CPU cast kernel) and the bool mask: the causal triangle
// (key j masked iff j > i) or random bits.
std::vector<ir::Tensor> Inputs(const AttnCase& c, DType dt, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<ir::Tensor> in;
  for (const TensorType& t : InputTypes(c, DType::kF32)) {
    if (t.dtype == DType::kBool) {
      ir::Tensor m(DType::kBool, t.shape);
      auto* p = static_cast<uint8_t*>(m.mutable_data());
      for (int64_t i = 0; i < c.t; ++i) {
        for (int64_t j = 0; j < c.t; ++j) {
          p[i * c.t + j] = c.mask == AttnCase::kCausal ? (j > i ? 1 : 0)
                                                       // keep the diagonal: no empty rows
                                                       : (j != i && (rng() & 1) ? 1 : 0);
        }
      }
      in.push_back(std::move(m));
      continue;
    }
    ir::Tensor x(DType::kF32, t.shape);
    auto* p = static_cast<float*>(x.mutable_data());
    for (int64_t i = 0; i < x.num_elements(); ++i) p[i] = normal(rng);
    in.push_back(CastTo(x, dt));
  }
  return in;
}

// The CPU attention has no bf16 kernel: the reference is the f32 node on the same (exactly
// widened) inputs, its outputs rounded to the case's dtype. The causal attribute is ignored
// by the CPU kernel, which applies the mask tensor itself: an independent check of cuDNN's
// causal masking.
absl::StatusOr<std::vector<ir::Tensor>> Reference(const AttnCase& c,
                                                  const std::vector<ir::Tensor>& in) {
  PTC_ASSIGN_OR_RETURN(Built wide, Build(c, DType::kF32));
  std::vector<ir::Tensor> wide_in;
  for (const ir::Tensor& t : in) {
    wide_in.push_back(t.dtype() == DType::kBool ? t : CastTo(t, DType::kF32));
  }
  PTC_ASSIGN_OR_RETURN(std::vector<ir::Tensor> out, cpu::EvaluateNode(*wide.node, wide_in));
  for (ir::Tensor& t : out) t = CastTo(t, c.dtype);
  return out;
}

KernelOptions CudnnOptions() {
  KernelOptions o;
  o.attention_cudnn = true;
  return o;
}

// The bf16 bounds of kernels_test.cc's attention cases: x2 forward, x4 backward.
double Tolerance(const AttnCase& c) { return c.grad ? 4 : 2; }

std::vector<AttnCase> Cases() {
  std::vector<AttnCase> cs;
  for (bool grad : {false, true}) {
    for (const char* layout : {"bthd", "bhtd"}) {
      const std::string op = grad ? "attention_grad" : "attention";
      cs.push_back({absl::StrCat(op, "_", layout, "_causal_t128_d64"), grad, layout, 2, 3, 128, 64,
                    AttnCase::kCausal});
      cs.push_back({absl::StrCat(op, "_", layout, "_causal_ragged_t200_d128"), grad, layout, 1, 2,
                    200, 128, AttnCase::kCausal});
      cs.push_back({absl::StrCat(op, "_", layout, "_no_mask_t128_d64"), grad, layout, 2, 3, 128, 64,
                    AttnCase::kNone});
    }
  }
  return cs;
}

class CudnnAttention : public testing::TestWithParam<AttnCase> {};

TEST_P(CudnnAttention, MatchesCpuThroughCudnn) {
  PTC_SKIP_WITHOUT_CUDNN();
  const AttnCase& c = GetParam();
  auto built = Build(c, c.dtype);
  ASSERT_TRUE(built.ok()) << built.status();
  for (uint64_t seed : {uint64_t{1}, uint64_t{2}}) {
    const std::vector<ir::Tensor> in = Inputs(c, c.dtype, std::hash<std::string>{}(c.name) + seed);
    auto ref = Reference(c, in);
    ASSERT_TRUE(ref.ok()) << ref.status();
    const CudnnAttentionStats before = GetCudnnAttentionStats();
    auto got = EvaluateNodeOnDevice(*built->node, in, CudnnOptions());
    ASSERT_TRUE(got.ok()) << got.status();
    const CudnnAttentionStats after = GetCudnnAttentionStats();
    // cuDNN made the kernel: a decline would have run the flash kernels instead.
    EXPECT_EQ(after.declined, before.declined) << c.name;
    if (c.grad) {
      EXPECT_EQ(after.backward_kernels, before.backward_kernels + 1) << c.name;
    } else {
      EXPECT_EQ(after.forward_kernels, before.forward_kernels + 1) << c.name;
    }
    ASSERT_EQ(got->size(), ref->size());
    for (size_t i = 0; i < ref->size(); ++i) {
      EXPECT_EQ(Compare((*got)[i], (*ref)[i], Tolerance(c)), "")
          << c.name << " output " << i << " (seed " << seed << ")";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Bf16, CudnnAttention, testing::ValuesIn(Cases()),
                         [](const testing::TestParamInfo<AttnCase>& info) {
                           return info.param.name;
                         });

// save-attention-stats through cuDNN: the forward's second output (cuDNN's softmax statistics)
// is the CPU kernel's log-sum-exp (natural log of the scaled, masked scores), and the backward
// {saved_stats=1} that reads it (with O) matches the CPU gradients, through cuDNN and through
// the tensor-core flash backward alike (a forward and its backward may take different kernels).
TEST(CudnnAttentionSavedStats, StatisticsAreTheLogSumExpAndFeedEitherBackward) {
  PTC_SKIP_WITHOUT_CUDNN();
  const AttnCase c{"saved", false, "bthd", 2, 3, 128, 64, AttnCase::kCausal};
  const DType bf16 = DType::kBF16;
  const std::vector<ir::Tensor> in = Inputs(c, bf16, 11);  // q, k, v, mask
  const ir::AttrMap attrs = {{"layout", c.layout}, {"causal", int64_t{1}}};
  auto node = [&](ir::Module& m, const std::string& op, const std::vector<TensorType>& types,
                  const ir::AttrMap& a, int outs) -> absl::StatusOr<ir::Node*> {
    ir::Function* f = m.AddFunction(absl::StrCat("f", m.functions().size()));
    std::vector<ir::Value*> params;
    for (size_t i = 0; i < types.size(); ++i) {
      params.push_back(f->AddParam(absl::StrCat("x", i), types[i]));
    }
    PTC_ASSIGN_OR_RETURN(std::vector<TensorType> out, ir::InferTypes(op, types, a, outs));
    return f->AddNode(op, params, out, a);
  };
  auto types = [](const std::vector<ir::Tensor>& ts) {
    std::vector<TensorType> t;
    for (const ir::Tensor& x : ts) t.push_back(x.type());
    return t;
  };
  auto widen = [](const std::vector<ir::Tensor>& ts) {
    std::vector<ir::Tensor> w;
    for (const ir::Tensor& t : ts) w.push_back(t.dtype() == DType::kBool ? t : CastTo(t, DType::kF32));
    return w;
  };
  ir::Module m;
  // The forward with statistics, through cuDNN and on the CPU (f32 reference).
  auto fwd = node(m, "attention", types(in), attrs, 2);
  ASSERT_TRUE(fwd.ok()) << fwd.status();
  auto got = EvaluateNodeOnDevice(**fwd, in, CudnnOptions());
  ASSERT_TRUE(got.ok()) << got.status();
  auto fwd32 = node(m, "attention", types(widen(in)), attrs, 2);
  ASSERT_TRUE(fwd32.ok()) << fwd32.status();
  auto ref = cpu::EvaluateNode(**fwd32, widen(in));
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_EQ(Compare((*got)[1], (*ref)[1], 20), "") << "cuDNN statistics vs the log-sum-exp";
  // The backward reading them: cuDNN, then the flash kernels, against the CPU gradients.
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal(0.f, 1.f);
  ir::Tensor dy32(DType::kF32, in[0].shape());
  for (int64_t i = 0; i < dy32.num_elements(); ++i) dy32.mutable_data_as<float>()[i] = normal(rng);
  const ir::Tensor dy = CastTo(dy32, bf16);
  std::vector<ir::Tensor> gin = {dy, in[0], in[1], in[2], in[3], (*got)[0], (*got)[1]};
  ir::AttrMap gattrs = attrs;
  gattrs["saved_stats"] = int64_t{1};
  auto grad = node(m, "attention_grad", types(gin), gattrs, 3);
  ASSERT_TRUE(grad.ok()) << grad.status();
  auto grad32 = node(m, "attention_grad", types(widen({dy, in[0], in[1], in[2], in[3]})), attrs, 3);
  ASSERT_TRUE(grad32.ok()) << grad32.status();
  auto gref = cpu::EvaluateNode(**grad32, widen({dy, in[0], in[1], in[2], in[3]}));
  ASSERT_TRUE(gref.ok()) << gref.status();
  for (bool through_cudnn : {true, false}) {
    auto g = EvaluateNodeOnDevice(**grad, gin, through_cudnn ? CudnnOptions() : KernelOptions{});
    ASSERT_TRUE(g.ok()) << g.status();
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(Compare((*g)[i], CastTo((*gref)[i], bf16), 4), "")
          << (through_cudnn ? "cuDNN" : "flash") << " backward, gradient " << i;
    }
  }
}

// A mask without causal=1 (here random bits) is declined, and the node runs on the flash
// kernels: still correct.
TEST(CudnnAttentionDecline, ArbitraryMaskFallsBackAndMatchesCpu) {
  PTC_SKIP_WITHOUT_CUDNN();
  for (bool grad : {false, true}) {
    AttnCase c{grad ? "grad_random_mask" : "random_mask",
               grad,
               "bthd",
               2,
               2,
               96,
               64,
               AttnCase::kRandomBool};
    auto built = Build(c, c.dtype);
    ASSERT_TRUE(built.ok()) << built.status();
    const std::vector<ir::Tensor> in = Inputs(c, c.dtype, 5);
    auto ref = Reference(c, in);
    ASSERT_TRUE(ref.ok()) << ref.status();
    const CudnnAttentionStats before = GetCudnnAttentionStats();
    auto got = EvaluateNodeOnDevice(*built->node, in, CudnnOptions());
    ASSERT_TRUE(got.ok()) << got.status();
    const CudnnAttentionStats after = GetCudnnAttentionStats();
    EXPECT_EQ(after.declined, before.declined + 1) << c.name;
    EXPECT_EQ(after.forward_kernels, before.forward_kernels) << c.name;
    EXPECT_EQ(after.backward_kernels, before.backward_kernels) << c.name;
    for (size_t i = 0; i < ref->size(); ++i) {
      EXPECT_EQ(Compare((*got)[i], (*ref)[i], Tolerance(c)), "") << c.name << " output " << i;
    }
  }
}

// Runs without a GPU and without cuDNN: the declines that depend only on the node come before
// any cuDNN call, and creation on a machine without a device (or libcudnn) declines instead of
// crashing.
// The status of creating case `c`'s kernel in dtype `dt`, which must be a decline.
absl::Status ExpectDecline(const AttnCase& c, DType dt) {
  auto built = Build(c, dt);
  EXPECT_TRUE(built.ok()) << built.status();
  if (!built.ok()) return built.status();
  auto k = c.grad ? CreateCudnnAttentionGrad(*built->node) : CreateCudnnAttention(*built->node);
  EXPECT_FALSE(k.ok()) << c.name;
  if (k.ok()) return absl::OkStatus();
  EXPECT_EQ(k.status().code(), absl::StatusCode::kUnimplemented) << k.status();
  return k.status();
}

TEST(CudnnAttentionDecline, DeclinesWithoutTouchingTheDevice) {
  (void)ExpectDecline({"f32", false, "bhtd", 1, 2, 16, 64, AttnCase::kNone, DType::kF32},
                      DType::kF32);
  const absl::Status masked =
      ExpectDecline({"masked", true, "bthd", 1, 2, 16, 64, AttnCase::kRandomBool}, DType::kBF16);
  EXPECT_NE(masked.message().find("mask"), std::string::npos) << masked;
  (void)ExpectDecline({"odd_head_dim", false, "bhtd", 1, 2, 16, 20, AttnCase::kNone},
                      DType::kBF16);

  // A node cuDNN could take: OK where a device and cuDNN are usable, a decline elsewhere.
  AttnCase causal{"causal", true, "bthd", 1, 2, 64, 64, AttnCase::kCausal};
  auto bc = Build(causal, DType::kBF16);
  ASSERT_TRUE(bc.ok()) << bc.status();
  auto kc = CreateCudnnAttentionGrad(*bc->node);
  const bool usable = NoDeviceReason().empty() && CudnnAttentionAvailable().ok();
  if (usable) {
    EXPECT_TRUE(kc.ok()) << kc.status();
  } else {
    ASSERT_FALSE(kc.ok());
    EXPECT_EQ(kc.status().code(), absl::StatusCode::kUnimplemented) << kc.status();
  }
  if (!BuiltWithCudnn()) {
    EXPECT_FALSE(CudnnAttentionAvailable().ok());
  }
}

// With the option set, evaluating on a machine without a device is an error, not a crash.
TEST(CudnnAttentionDecline, OptionWithoutDeviceIsAnErrorNotACrash) {
  if (NoDeviceReason().empty()) GTEST_SKIP() << "SKIPPED: a CUDA device is present";
  AttnCase c{"causal", false, "bthd", 1, 2, 64, 64, AttnCase::kCausal};
  auto built = Build(c, DType::kBF16);
  ASSERT_TRUE(built.ok()) << built.status();
  auto got = EvaluateNodeOnDevice(*built->node, Inputs(c, DType::kBF16, 1), CudnnOptions());
  EXPECT_FALSE(got.ok());
}

#else  // !PTC_HAVE_CUDA

TEST(CudnnAttention, NeedsCuda) { GTEST_SKIP() << "SKIPPED: this ptc was built without CUDA"; }

#endif  // PTC_HAVE_CUDA

}  // namespace
}  // namespace ptc::cuda
