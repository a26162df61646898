// Generated fused_elementwise kernels (codegen/cuda/nvrtc_codegen.h, runtime/cuda/
// generated_kernels.h) on the device, in the case-table style of kernels_test.cc: every token
// for every float dtype and the broadcast patterns, source generated, compiled by NVRTC for the
// device, loaded from the CUBIN and launched, against the CPU kernel (f16 / bf16: the f32 CPU
// node on the same widened inputs, rounded). Plus the interpreter fallback and the executor
// using a plan's kernels. Without a GPU every test here skips.
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "codegen/cpu/kernel.h"
#include "codegen/cuda/host_kernel.h"
#include "codegen/cuda/nvrtc_codegen.h"
#include "compiler/driver/driver.h"
#include "compiler/ir/ops.h"
#include "compiler/onnx/importer.h"
#include "compiler/support/status.h"
#include "gtest/gtest.h"
#include "models/models.h"
#include "runtime/cuda/device.h"
#include "runtime/cuda/executor.h"
#include "tests/cuda/cuda_test_util.h"

namespace ptc::cuda {
namespace {

using ir::DType;
using ir::TensorType;

struct Case {
  std::string name;
  std::vector<TensorType> inputs;
  std::vector<std::string> program;
  std::vector<double> constants;
  ir::Shape shape;
  std::vector<bool> positive;  // per input: draw from [0.5, 2] (sqrt, log, pow bases ...)
  std::optional<DType> dtype;  // fused_elementwise's `dtype` (mixed operand dtypes)
  // "dropoutK" tokens: their ratios, seeds and counter operands (integer inputs, each drawn as
  // one small value).
  std::vector<double> dropout_ratio = {};
  std::vector<int64_t> dropout_seed = {}, dropout_counter = {};
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

std::vector<Case> Cases() {
  std::vector<Case> cs;
  for (DType d : {DType::kF32, DType::kF16, DType::kBF16, DType::kF64}) {
    const std::string dn(ir::DTypeName(d));
    for (const char* u : {"neg", "abs", "sqrt", "reciprocal", "exp", "log", "erf", "tanh",
                          "sigmoid", "relu", "floor", "ceil", "cos", "sin", "identity", "gelu",
                          "gelu_tanh"}) {
      const bool pos = std::string(u) == "sqrt" || std::string(u) == "log" ||
                       std::string(u) == "reciprocal";
      cs.push_back({absl::StrCat(u, "_", dn), {{d, {37, 65}}}, {"x0", u}, {}, {37, 65}, {pos}});
    }
    for (const char* b : {"add", "sub", "mul", "div", "pow", "max", "min"}) {
      const bool pos = std::string(b) == "pow";
      // Suffix broadcast ([65] against [37, 65]).
      cs.push_back({absl::StrCat(b, "_", dn), {{d, {37, 65}}, {d, {65}}}, {"x0", "x1", b}, {},
                    {37, 65}, {pos, false}});
    }
    // Middle-dim broadcast through coordinates, a scalar operand, constants.
    cs.push_back({"general_" + dn, {{d, {4, 1, 6}}, {d, {5, 1}}, {d, {1}}},
                  {"x0", "c0", "mul", "x1", "sub", "tanh", "x2", "mul", "c1", "max"},
                  {0.5, -0.25}, {4, 5, 6}, {}});
    cs.push_back({"bias_gelu_" + dn, {{d, {3, 50, 96}}, {d, {96}}}, {"x0", "x1", "add", "gelu"},
                  {}, {3, 50, 96}, {}});
    cs.push_back({"row_bcast_" + dn, {{d, {70, 1}}, {d, {70, 33}}}, {"x1", "x0", "sub", "exp"},
                  {}, {70, 33}, {}});
  }
  // More elements than one grid pass covers at once, and a single-operand program.
  cs.push_back({"large_f32", {{DType::kF32, {1 << 22}}}, {"x0", "sigmoid"}, {}, {1 << 22}, {}});
  cs.push_back({"copy_f32", {{DType::kF32, {5, 7}}}, {"x0"}, {}, {5, 7}, {}});
  // A scalar (rank 0: the loss scale's update under --precision fp16).
  cs.push_back({"scalar_f32", {{DType::kF32, {}}, {DType::kF32, {}}}, {"x0", "x1", "mul"}, {}, {},
                {}});
  // Mixed dtypes (a --precision chain): bf16 / f16 operands read widened next to f32 ones,
  // rounded once to bf16, or an f32 result (the residual add).
  cs.push_back({"mixed_to_bf16", {{DType::kBF16, {40, 96}}, {DType::kF32, {96}}, {DType::kF16, {40, 1}}},
                {"x0", "x1", "add", "x2", "mul", "gelu"}, {}, {40, 96}, {}, DType::kBF16});
  cs.push_back({"mixed_residual_f32", {{DType::kF32, {40, 96}}, {DType::kBF16, {40, 96}}},
                {"x0", "x1", "add"}, {}, {40, 96}, {}, DType::kF32});
  // Dropout tokens (fuse-elementwise's absorbed dropouts): GPT-2's residual add of a
  // dropped-out bf16 projection into the f32 stream, the embeddings' dropout over a broadcast
  // operand, two dropouts (an i32 counter first among the operands, and none) in f64 and f16.
  cs.push_back({"dropout_residual_bf16_into_f32",
                {{DType::kF32, {40, 96}}, {DType::kBF16, {40, 96}}, {DType::kI64, {}}},
                {"x0", "x1", "dropout0", "add"}, {}, {40, 96}, {}, DType::kF32, {0.1}, {3}, {2}});
  cs.push_back({"dropout_embeddings_f32",
                {{DType::kF32, {3, 50, 32}}, {DType::kF32, {50, 32}}, {DType::kI64, {}}},
                {"x0", "x1", "add", "dropout0"}, {}, {3, 50, 32}, {}, std::nullopt, {0.25}, {0},
                {2}});
  for (DType d : {DType::kF64, DType::kF16}) {
    cs.push_back({absl::StrCat("dropout_two_", std::string(ir::DTypeName(d))),
                  {{DType::kI32, {}}, {d, {5, 37}}},
                  {"x1", "dropout0", "x1", "dropout1", "mul"}, {}, {5, 37}, {}, std::nullopt,
                  {0.5, 0.3}, {7, 12}, {0, -1}});
  }
  // The vector loop (FusedSource::vector): bf16 8 per thread, two dropouts (one of threshold
  // 0, kept without a hash) over both halves of a 16-element block; f64 2 per thread with a
  // row-broadcast operand (one load per vector); f32 4 per thread with a dropout over a suffix
  // operand.
  cs.push_back({"dropout_vector8_bf16", {{DType::kBF16, {6, 64}}, {DType::kBF16, {64}}},
                {"x0", "x1", "dropout0", "add", "dropout1"}, {}, {6, 64}, {}, std::nullopt,
                {0.3, 1e-6}, {5, 9}, {-1, -1}});
  cs.push_back({"dropout_vector2_f64", {{DType::kF64, {9, 10}}, {DType::kF64, {9, 1}}},
                {"x0", "x1", "mul", "dropout0"}, {}, {9, 10}, {}, std::nullopt, {0.4}, {11},
                {-1}});
  cs.push_back({"dropout_vector4_f32", {{DType::kF32, {7, 24}}, {DType::kF32, {24}}},
                {"x0", "dropout0", "x1", "sub"}, {}, {7, 24}, {}, std::nullopt, {0.6}, {2},
                {-1}});
  return cs;
}

ir::Tensor Random(const TensorType& t, bool positive, std::mt19937_64& rng) {
  if (t.dtype == DType::kI32 || t.dtype == DType::kI64) {  // a dropout counter
    ir::Tensor c(t.dtype, t.shape);
    for (int64_t i = 0; i < c.num_elements(); ++i) {
      const int64_t v = static_cast<int64_t>(rng() % 1000);
      if (t.dtype == DType::kI32) {
        c.mutable_data_as<int32_t>()[i] = static_cast<int32_t>(v);
      } else {
        c.mutable_data_as<int64_t>()[i] = v;
      }
    }
    return c;
  }
  ir::Tensor f(t.dtype == DType::kF64 ? DType::kF64 : DType::kF32, t.shape);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> pos(0.5, 2.0);
  for (int64_t i = 0; i < f.num_elements(); ++i) {
    const double v = positive ? pos(rng) : normal(rng);
    if (f.dtype() == DType::kF64) {
      f.mutable_data_as<double>()[i] = v;
    } else {
      f.mutable_data_as<float>()[i] = static_cast<float>(v);
    }
  }
  return CastTo(f, t.dtype);
}

struct Built {
  std::unique_ptr<ir::Module> module;
  ir::Node* node = nullptr;
};

// The case's node: its operands in their own dtypes, or all in `all` (the CPU reference: f32,
// or f64 for f64 cases).
Built Build(const Case& c, std::optional<DType> all = std::nullopt) {
  Built b;
  b.module = std::make_unique<ir::Module>();
  ir::Function* f = b.module->AddFunction("main");
  std::vector<ir::Value*> params;
  std::vector<TensorType> types;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const bool counter = !ir::IsFloat(c.inputs[i].dtype);
    types.push_back({counter ? c.inputs[i].dtype : all.value_or(c.inputs[i].dtype),
                     c.inputs[i].shape});
    params.push_back(f->AddParam(absl::StrCat("x", i), types.back()));
  }
  ir::AttrMap attrs = {{"program", c.program}, {"shape", c.shape}};
  if (!c.constants.empty()) attrs["constants"] = c.constants;
  if (!c.dropout_ratio.empty()) {
    attrs["dropout_ratio"] = c.dropout_ratio;
    attrs["dropout_seed"] = c.dropout_seed;
    attrs["dropout_counter"] = c.dropout_counter;
  }
  if (c.dtype.has_value()) attrs["dtype"] = *c.dtype;
  auto out = ir::InferTypes("fused_elementwise", types, attrs, 1);
  PTC_CHECK(out.ok());
  b.node = f->AddNode("fused_elementwise", params, *out, attrs, c.name);
  return b;
}

// The CPU reference of case `c` on inputs drawn from (the case's name + seed): its node with
// every operand in f32 (f64 for f64 cases: the CPU kernel has those two), fed the inputs
// exactly widened; f16 / bf16 results are compared after rounding it to the case's dtype.
// `in` receives the inputs in the case's own dtypes.
absl::StatusOr<ir::Tensor> CpuReference(const Case& c, uint64_t seed,
                                        std::vector<ir::Tensor>* in) {
  bool f64 = false;
  for (const TensorType& t : c.inputs) f64 |= t.dtype == DType::kF64;
  const DType ref_dtype = f64 ? DType::kF64 : DType::kF32;
  Built ref_node = Build(c, ref_dtype);
  std::mt19937_64 rng(std::hash<std::string>{}(c.name) + seed);
  std::vector<ir::Tensor> ref_in;
  in->clear();
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    in->push_back(Random(c.inputs[i], i < c.positive.size() && c.positive[i], rng));
    ref_in.push_back(ir::IsFloat(c.inputs[i].dtype) ? CastTo(in->back(), ref_dtype) : in->back());
  }
  PTC_ASSIGN_OR_RETURN(std::vector<ir::Tensor> out, cpu::EvaluateNode(*ref_node.node, ref_in));
  return out[0];
}

// KernelOptions whose generated kernels hold `node`'s kernel, compiled now for this device.
absl::StatusOr<KernelOptions> CompileForDevice(const ir::Node& node) {
  PTC_ASSIGN_OR_RETURN(DeviceInfo device, GetDevice(0));
  PTC_ASSIGN_OR_RETURN(codegen::FusedSource src, codegen::GenerateFusedElementwise(node));
  PTC_ASSIGN_OR_RETURN(codegen::CompiledCubin bin,
                       codegen::CompileToCubin(src.name, src.source, CudaArch(device)));
  plan::CudaKernel k;
  k.name = src.name;
  k.arch = CudaArch(device);
  k.source = src.source;
  k.cubin = bin.cubin;
  KernelOptions o;
  PTC_ASSIGN_OR_RETURN(o.generated, LoadGeneratedKernels({k}, device));
  return o;
}

// Under the CUDA CPU emulation the plan's kernels run as their source compiled for the host
// (runtime/cuda/emu/emu.h): that needs the host compiler too.
#define PTC_SKIP_WITHOUT_DEVICE_AND_NVRTC()                                                 \
  PTC_SKIP_WITHOUT_CUDA_DEVICE();                                                          \
  if (!codegen::GetNvrtc().available) {                                                    \
    GTEST_SKIP() << "SKIPPED: NVRTC not available (" << codegen::GetNvrtc().why << ")";    \
  }                                                                                        \
  if (access(codegen::DefaultHostCompiler().c_str(), X_OK) != 0) {                         \
    PTC_SKIP_UNDER_EMULATION("generated kernels run compiled for the host: no compiler");  \
  }

class GeneratedKernelCase : public testing::TestWithParam<Case> {};

// Runs without a GPU: every case's CPU reference evaluates and its source compiles for sm_90
// (when NVRTC can be loaded) without spills.
TEST_P(GeneratedKernelCase, ReferenceEvaluatesAndSourceCompiles) {
  const Case& c = GetParam();
  std::vector<ir::Tensor> in;
  auto ref = CpuReference(c, 0, &in);
  ASSERT_TRUE(ref.ok()) << ref.status();
  Built node = Build(c);
  auto src = codegen::GenerateFusedElementwise(*node.node);
  ASSERT_TRUE(src.ok()) << src.status();
  if (!codegen::GetNvrtc().available) return;  // the NVRTC tests of codegen/cuda say why
  auto bin = codegen::CompileToCubin(src->name, src->source, codegen::kDefaultCudaArch);
  ASSERT_TRUE(bin.ok()) << bin.status();
  EXPECT_EQ(bin->spill_bytes, 0) << bin->log;
}

TEST_P(GeneratedKernelCase, MatchesCpu) {
  PTC_SKIP_WITHOUT_DEVICE_AND_NVRTC();
  const Case& c = GetParam();
  Built node = Build(c);
  auto options = CompileForDevice(*node.node);
  ASSERT_TRUE(options.ok()) << options.status();
  for (uint64_t seed : {uint64_t{1}, uint64_t{2}}) {
    std::vector<ir::Tensor> in;
    auto ref = CpuReference(c, seed, &in);
    ASSERT_TRUE(ref.ok()) << ref.status();
    const GeneratedKernelStats before = GetGeneratedKernelStats();
    auto got = EvaluateNodeOnDevice(*node.node, in, *options);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(GetGeneratedKernelStats().generated_nodes, before.generated_nodes + 1)
        << "the generated kernel was not used";
    const std::string err =
        Compare((*got)[0], CastTo(*ref, node.node->output(0)->type().dtype));
    EXPECT_TRUE(err.empty()) << c.name << " (seed " << seed << "): " << err;
  }
}

// ------------------------------------------------------------------------- host emulation
// Without a GPU the generated source itself is still checked: the same text, compiled for the
// host (codegen/cuda/host_kernel.h) and "launched" block by block, thread by thread. That runs
// the generator's index arithmetic (grid-stride loops, bounds, the vector loop and its
// alignment check, suffix / general broadcast, constant loads, 32/64-bit indexing), its
// constants and every token against the CPU kernel on every CI run. What it cannot check is
// the device itself: CUDA's libm (host libm here; the error bounds cover both), FMA
// contraction, and the two PTX f16 conversions, replaced by bit arithmetic with the same IEEE
// rounding (to nearest even, as cvt.rn). Skips where the compiler that built the test is not
// installed (the device machine may lack it).

// A case's generated kernel built for the host.
class HostKernel {
 public:
  static absl::StatusOr<HostKernel> Build(const ir::Node& node) {
    PTC_ASSIGN_OR_RETURN(codegen::FusedSource src, codegen::GenerateFusedElementwise(node));
    HostKernel k;
    PTC_ASSIGN_OR_RETURN(k.kernel_, codegen::HostKernel::Compile(src.name, src.source));
    k.src_ = src;
    return k;
  }

  // Up to 3 blocks, one more than the threads need: the grid-stride loop wraps (more
  // elements than a pass covers) and the bounds check masks a block past the end. The tensors'
  // buffers are 64-byte aligned, so a vector kernel takes its vector loop; `off` moves argument
  // `off` (an operand, or the output at in.size()) one element off its alignment.
  ir::Tensor Run(const ir::Node& node, const std::vector<ir::Tensor>& in, int off = -1) const {
    ir::Tensor out(node.output(0)->type().dtype, node.output(0)->type().shape);
    std::vector<char> moved;
    auto place = [&](const ir::Tensor& t, int arg) -> void* {
      if (arg != off) return const_cast<void*>(t.data());
      moved.resize(t.nbytes() + 64);
      char* p = moved.data();
      p += (64 - reinterpret_cast<uintptr_t>(p) % 64) % 64 + ir::DTypeSize(t.dtype());
      std::memcpy(p, t.data(), t.nbytes());
      return p;
    };
    // Parameter values (pointers, then the seeds) and, as cudaLaunchKernel takes them, their
    // addresses.
    std::vector<void*> pointers;
    for (size_t i = 0; i < in.size(); ++i) pointers.push_back(place(in[i], static_cast<int>(i)));
    pointers.push_back(place(out, static_cast<int>(in.size())));
    std::vector<uint64_t> seeds = src_.seeds;
    std::vector<void*> args;
    for (void*& p : pointers) args.push_back(&p);
    for (uint64_t& s : seeds) args.push_back(&s);
    EXPECT_EQ(kernel_->num_params(), static_cast<int>(args.size()));
    const int64_t threads = src_.elements / src_.vector;
    const int64_t blocks = (threads + codegen::kGeneratedThreads - 1) / codegen::kGeneratedThreads;
    kernel_->Launch(args.data(), static_cast<unsigned>(std::min<int64_t>(3, blocks + 1)),
                    codegen::kGeneratedThreads);
    if (pointers.back() != out.data()) {
      std::memcpy(out.mutable_data(), pointers.back(), out.nbytes());
    }
    return out;
  }
  int vector() const { return src_.vector; }
  // Vector accesses (loads and stores) of the runs so far.
  uint64_t vector_accesses() const { return kernel_->vector_accesses(); }

 private:
  codegen::FusedSource src_;
  std::shared_ptr<codegen::HostKernel> kernel_;
};

TEST_P(GeneratedKernelCase, HostCompiledSourceMatchesCpu) {
  if (access(codegen::DefaultHostCompiler().c_str(), X_OK) != 0) {
    GTEST_SKIP() << "SKIPPED: no host C++ compiler at " << codegen::DefaultHostCompiler();
  }
  const Case& c = GetParam();
  Built node = Build(c);
  auto kernel = HostKernel::Build(*node.node);
  ASSERT_TRUE(kernel.ok()) << kernel.status();
  std::vector<ir::Tensor> in;
  auto ref = CpuReference(c, 1, &in);
  ASSERT_TRUE(ref.ok()) << ref.status();
  const ir::Tensor got = kernel->Run(*node.node, in);
  const std::string err = Compare(got, CastTo(*ref, node.node->output(0)->type().dtype));
  EXPECT_TRUE(err.empty()) << c.name << ": " << err;
  const uint64_t vectors = kernel->vector_accesses();
  if (kernel->vector() == 1) {
    EXPECT_EQ(vectors, 0u) << c.name;
    return;
  }
  // Aligned buffers ran the vector loop: every output vector stored once.
  EXPECT_GE(vectors, static_cast<uint64_t>(got.num_elements() / kernel->vector())) << c.name;
  // The output one element off runs the element loop (no vector access), to the same bits;
  // an operand off does too where its vector access would be misaligned (the shim aborts on
  // one), else the vector loop.
  const ir::Tensor element_loop = kernel->Run(*node.node, in, static_cast<int>(in.size()));
  EXPECT_EQ(kernel->vector_accesses(), vectors) << c.name << ": a vector access";
  EXPECT_EQ(std::memcmp(element_loop.data(), got.data(), got.nbytes()), 0)
      << c.name << ": the vector and element loops differ";
  for (size_t i = 0; i < in.size(); ++i) {
    const ir::Tensor moved = kernel->Run(*node.node, in, static_cast<int>(i));
    EXPECT_EQ(std::memcmp(moved.data(), got.data(), got.nbytes()), 0)
        << c.name << ": operand " << i << " one element off";
  }
}

INSTANTIATE_TEST_SUITE_P(Table, GeneratedKernelCase, testing::ValuesIn(Cases()),
                         [](const testing::TestParamInfo<Case>& info) { return info.param.name; });

// The generated kernel and the interpreter compute the same values (both on the device).
TEST(GeneratedKernels, AgreesWithTheInterpreter) {
  PTC_SKIP_WITHOUT_DEVICE_AND_NVRTC();
  Case c{"chain", {{DType::kF32, {64, 257}}, {DType::kF32, {257}}},
         {"x0", "x1", "mul", "gelu_tanh", "x0", "sigmoid", "add", "c0", "pow"}, {2.0},
         {64, 257}, {false, false}};
  Built node = Build(c, DType::kF32);
  auto options = CompileForDevice(*node.node);
  ASSERT_TRUE(options.ok()) << options.status();
  std::mt19937_64 rng(7);
  std::vector<ir::Tensor> in = {Random(c.inputs[0], false, rng), Random(c.inputs[1], false, rng)};
  auto gen = EvaluateNodeOnDevice(*node.node, in, *options);
  KernelOptions interp = *options;
  interp.fused_interpreter = true;
  auto ref = EvaluateNodeOnDevice(*node.node, in, interp);
  ASSERT_TRUE(gen.ok() && ref.ok());
  EXPECT_EQ(Compare((*gen)[0], (*ref)[0]), "");
}

// A plan kernel for another architecture is not loaded: the node's kernel is compiled with
// NVRTC at load for the device (once for every node of that source), and is right.
TEST(GeneratedKernels, OtherArchCompilesAtLoad) {
  PTC_SKIP_WITHOUT_DEVICE_AND_NVRTC();
  Case c{"exp", {{DType::kF32, {4, 9}}}, {"x0", "exp"}, {}, {4, 9}, {false}};
  Built node = Build(c, DType::kF32);
  auto device = GetDevice(0);
  ASSERT_TRUE(device.ok());
  auto src = codegen::GenerateFusedElementwise(*node.node);
  ASSERT_TRUE(src.ok());
  const std::string other = CudaArch(*device) == "sm_80" ? "sm_90" : "sm_80";
  auto bin = codegen::CompileToCubin(src->name, src->source, other);
  ASSERT_TRUE(bin.ok()) << bin.status();
  plan::CudaKernel k{src->name, other, src->source, bin->cubin, {"@main %y"}, -1, -1};
  KernelOptions o;
  auto g = LoadGeneratedKernels({k}, *device);
  ASSERT_TRUE(g.ok()) << g.status();
  o.generated = *g;
  const GeneratedKernelStats before = GetGeneratedKernelStats();
  std::mt19937_64 rng(3);
  std::vector<ir::Tensor> in = {Random(c.inputs[0], false, rng)};
  for (int run = 0; run < 2; ++run) {
    auto got = EvaluateNodeOnDevice(*node.node, in, o);
    ASSERT_TRUE(got.ok()) << got.status();
    auto ref = cpu::EvaluateNode(*node.node, in);
    ASSERT_TRUE(ref.ok());
    EXPECT_EQ(Compare((*got)[0], (*ref)[0]), "");
  }
  EXPECT_EQ(GetGeneratedKernelStats().generated_nodes, before.generated_nodes + 2);
  EXPECT_EQ(GetGeneratedKernelStats().interpreted_nodes, before.interpreted_nodes);
  EXPECT_EQ(GetGeneratedKernelStats().compiled_at_load, before.compiled_at_load + 1)
      << "one kernel for both nodes";
}

// The executor loads the plan's kernels: the bf16 tiny GPT's 4 GELU chains run through one
// generated kernel, and the logits match the interpreter's run of the same plan.
TEST(GeneratedKernels, ExecutorUsesThePlansKernels) {
  PTC_SKIP_WITHOUT_DEVICE_AND_NVRTC();
  auto config = models::Gpt2Preset("tiny");
  ASSERT_TRUE(config.ok());
  auto model = models::BuildGpt2(*config);
  ASSERT_TRUE(model.ok());
  onnx_import::ImportOptions io;
  io.dims = {{"batch", 2}, {"seq", 16}};
  auto module = onnx_import::ImportOnnxBytes(model->SerializeAsString(), "", "gpt2-tiny", io);
  ASSERT_TRUE(module.ok());
  driver::CompileOptions co;
  co.target = "cuda";
  co.precision = "bf16";
  co.dims = io.dims;
  auto device = GetDevice(0);
  ASSERT_TRUE(device.ok());
  co.cuda_arch = CudaArch(*device);
  auto plan = driver::CompileModule(*std::move(module), co);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_FALSE(plan->cuda_kernels.empty());
  int fused = 0;
  for (const auto& n : plan->module->main()->nodes()) fused += n->op() == "fused_elementwise";
  std::map<std::string, ir::Tensor> inputs;
  for (const ir::Value* p : plan->module->main()->params()) {
    if (p->is_param()) continue;
    ir::Tensor t(DType::kI64, p->type().shape);
    for (int64_t i = 0; i < t.num_elements(); ++i) t.mutable_data_as<int64_t>()[i] = (i * 7) % 50;
    inputs[p->name()] = std::move(t);
  }
  const GeneratedKernelStats before = GetGeneratedKernelStats();
  auto exec = Executor::Create(*plan);
  ASSERT_TRUE(exec.ok()) << exec.status();
  EXPECT_EQ(GetGeneratedKernelStats().generated_nodes, before.generated_nodes + fused);
  auto out = (*exec)->Run(inputs);
  ASSERT_TRUE(out.ok()) << out.status();
  ExecutorOptions interp;
  interp.kernels.fused_interpreter = true;
  auto exec2 = Executor::Create(*plan, interp);
  ASSERT_TRUE(exec2.ok()) << exec2.status();
  auto out2 = (*exec2)->Run(inputs);
  ASSERT_TRUE(out2.ok()) << out2.status();
  ASSERT_EQ(out->size(), out2->size());
  // A plan without kernels (--no-cuda-codegen) gets them compiled at load: the same logits.
  auto module3 = onnx_import::ImportOnnxBytes(model->SerializeAsString(), "", "gpt2-tiny", io);
  ASSERT_TRUE(module3.ok());
  co.cuda_codegen = false;
  auto bare = driver::CompileModule(*std::move(module3), co);
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_TRUE(bare->cuda_kernels.empty());
  const GeneratedKernelStats before_bare = GetGeneratedKernelStats();
  auto exec3 = Executor::Create(*bare);
  ASSERT_TRUE(exec3.ok()) << exec3.status();
  EXPECT_EQ(GetGeneratedKernelStats().generated_nodes, before_bare.generated_nodes + fused);
  EXPECT_EQ(GetGeneratedKernelStats().interpreted_nodes, before_bare.interpreted_nodes);
  EXPECT_GT(GetGeneratedKernelStats().compiled_at_load, before_bare.compiled_at_load);
  auto out3 = (*exec3)->Run(inputs);
  ASSERT_TRUE(out3.ok()) << out3.status();
  ASSERT_EQ(out3->size(), out->size());
  for (size_t i = 0; i < out->size(); ++i) {
    EXPECT_EQ(std::memcmp((*out3)[i].data(), (*out)[i].data(), (*out)[i].nbytes()), 0)
        << "output " << i;
  }
  // bf16 activations: the two runs differ only by rounding inside erf's chain.
  for (size_t i = 0; i < out->size(); ++i) {
    double worst = 0;
    for (int64_t j = 0; j < (*out)[i].num_elements(); ++j) {
      worst = std::max(worst, std::fabs((*out)[i].GetDouble(j) - (*out2)[i].GetDouble(j)));
    }
    EXPECT_LT(worst, 5e-2) << "output " << i;
  }
}

}  // namespace
}  // namespace ptc::cuda
