// The CUDA kernel case table (ggml test-backend-ops style): every case builds one IR node, draws
// fresh random inputs, evaluates the node with the CPU kernels (cpu::EvaluateNode, the
// reference) and with the CUDA kernels (cuda::EvaluateNodeOnDevice, outputs poisoned before
// the launch), and compares them with per-dtype bounds. Without a GPU the device tests skip
// with "SKIPPED: no CUDA device"; the reference side of the table runs everywhere.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "codegen/cpu/kernel.h"
#include "compiler/ir/ops.h"
#include "compiler/support/status.h"
#include "gtest/gtest.h"
#include "tests/cuda/cuda_test_util.h"
#include "runtime/cuda/device.h"

#if PTC_HAVE_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "codegen/cuda/kernels.h"
#include "runtime/cuda/autotune.h"
#endif

namespace ptc::cuda {
namespace {

using ir::DType;
using ir::TensorType;

// kLabel: [0, index_range); kStep: an integer step count in [1, 20] (as float); kZero: zeros
// (an RMS norm's mean); kCausal: a bool
// attention mask over its last two dims [.., Tq, Tk], true (masked) where key j > i + Tk - Tq.
enum class Gen { kNormal, kPositive, kSmallInt, kNonZeroInt, kBool, kIndex, kLabel, kStep,
                 kCausal, kZero };

struct Case {
  std::string name;
  std::string op;
  std::vector<TensorType> inputs;
  ir::AttrMap attrs;
  int num_outputs = 1;
  std::vector<Gen> gens;  // per input; kNormal (floats) / kSmallInt (ints) when absent
  int64_t index_range = 0;  // kIndex: valid indices are [-index_range, index_range)
  double tolerance_scale = 1;  // GEMMs: accumulated rounding grows with K
  // The CPU kernel has no f16/bf16 version (losses, training ops, attention): the reference is
  // the f32 node on the same (exactly widened) inputs, its outputs rounded to the case's dtype.
  bool ref_in_f32 = false;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

TensorType T(DType d, ir::Shape s) { return TensorType{d, std::move(s)}; }

std::vector<Case> Cases() {
  const DType f32 = DType::kF32, f16 = DType::kF16, bf16 = DType::kBF16, f64 = DType::kF64;
  const DType i32 = DType::kI32, i64 = DType::kI64, b = DType::kBool;
  std::vector<Case> cs;
  // Binary ops with broadcasting, every float dtype and the integer ones.
  for (const char* op : {"add", "sub", "mul", "div", "max", "min"}) {
    cs.push_back({absl::StrCat(op, "_f32_bcast"), op, {T(f32, {4, 1, 8}), T(f32, {3, 1})}});
    cs.push_back({absl::StrCat(op, "_f32_same"), op, {T(f32, {1000}), T(f32, {1000})}});
    cs.push_back({absl::StrCat(op, "_bf16"), op, {T(bf16, {5, 16}), T(bf16, {16})}});
    cs.push_back({absl::StrCat(op, "_f16"), op, {T(f16, {5, 16}), T(f16, {5, 1})}});
    cs.push_back({absl::StrCat(op, "_f64"), op, {T(f64, {3, 7}), T(f64, {3, 7})}});
    Case ci{absl::StrCat(op, "_i64"), op, {T(i64, {6, 5}), T(i64, {5})}};
    ci.gens = {Gen::kSmallInt, Gen::kNonZeroInt};
    cs.push_back(ci);
    ci.name = absl::StrCat(op, "_i32");
    ci.inputs = {T(i32, {2, 3, 4}), T(i32, {3, 1})};
    cs.push_back(ci);
  }
  cs.push_back({"pow_f32", "pow", {T(f32, {8, 9}), T(f32, {9})}, {}, 1,
                {Gen::kPositive, Gen::kNormal}});
  for (const char* op : {"equal", "less", "greater", "less_equal", "greater_equal"}) {
    cs.push_back({absl::StrCat(op, "_f32"), op, {T(f32, {6, 7}), T(f32, {7})}});
    Case ci{absl::StrCat(op, "_i64"), op, {T(i64, {6, 7}), T(i64, {6, 1})}};
    ci.gens = {Gen::kSmallInt, Gen::kSmallInt};
    cs.push_back(ci);
  }
  for (const char* op : {"and", "or", "xor"}) {
    cs.push_back({absl::StrCat(op, "_bool"), op, {T(b, {4, 9}), T(b, {9})}, {}, 1,
                  {Gen::kBool, Gen::kBool}});
  }
  cs.push_back({"not_bool", "not", {T(b, {33})}, {}, 1, {Gen::kBool}});
  // Unary ops.
  for (const char* op : {"neg", "abs", "exp", "erf", "tanh", "sigmoid", "relu", "identity",
                         "floor", "ceil", "cos", "sin"}) {
    cs.push_back({absl::StrCat(op, "_f32"), op, {T(f32, {37, 65})}});
    cs.push_back({absl::StrCat(op, "_bf16"), op, {T(bf16, {3, 50})}});
  }
  for (const char* op : {"sqrt", "reciprocal", "log"}) {
    cs.push_back({absl::StrCat(op, "_f32"), op, {T(f32, {37, 65})}, {}, 1, {Gen::kPositive}});
    cs.push_back({absl::StrCat(op, "_f16"), op, {T(f16, {3, 50})}, {}, 1, {Gen::kPositive}});
  }
  for (const char* op : {"neg", "abs", "relu"}) {
    Case ci{absl::StrCat(op, "_i64"), op, {T(i64, {40})}};
    ci.gens = {Gen::kSmallInt};
    cs.push_back(ci);
  }
  cs.push_back({"gelu_f32", "gelu", {T(f32, {16, 64})}});
  cs.push_back({"gelu_tanh_f32", "gelu", {T(f32, {16, 64})}, {{"approximate", std::string("tanh")}}});
  cs.push_back({"gelu_bf16", "gelu", {T(bf16, {16, 64})}});
  // rotary: tables f32 or x's dtype, broadcast over batch and heads ([T, D/2]) or per batch
  // ([B, 1, T, D/2]), both directions.
  {
    const ir::AttrMap inv = {{"inverse", int64_t{1}}};
    cs.push_back(
        {"rotary_f32", "rotary", {T(f32, {2, 3, 16, 8}), T(f32, {16, 4}), T(f32, {16, 4})}});
    cs.push_back({"rotary_f32_inverse", "rotary",
                  {T(f32, {2, 3, 16, 8}), T(f32, {16, 4}), T(f32, {16, 4})}, inv});
    cs.push_back({"rotary_bf16_f32_tables", "rotary",
                  {T(bf16, {2, 4, 12, 64}), T(f32, {12, 32}), T(f32, {12, 32})}});
    cs.push_back({"rotary_bf16_inverse", "rotary",
                  {T(bf16, {2, 4, 12, 64}), T(bf16, {12, 32}), T(bf16, {12, 32})}, inv});
    cs.push_back({"rotary_f16_f16_tables", "rotary",
                  {T(f16, {3, 10, 16}), T(f16, {10, 8}), T(f16, {10, 8})}});
    cs.push_back({"rotary_f16_f32_tables_inverse", "rotary",
                  {T(f16, {3, 10, 16}), T(f32, {10, 8}), T(f32, {10, 8})}, inv});
    cs.push_back({"rotary_f32_per_batch_tables", "rotary",
                  {T(f32, {2, 3, 5, 8}), T(f32, {2, 1, 5, 4}), T(f32, {2, 1, 5, 4})}});
    cs.push_back({"rotary_f64_f32_tables", "rotary",
                  {T(f64, {4, 6}), T(f32, {4, 3}), T(f32, {4, 3})}, inv});
    cs.push_back({"rotary_f32_one_angle", "rotary", {T(f32, {7, 2}), T(f32, {1}), T(f32, {1})}});
    // Partial rotation (Phi, GPT-NeoX: the channels past rotary_dim copied) and interleaved
    // pairs (GPT-J), both directions.
    const ir::AttrMap part = {{"rotary_dim", int64_t{32}}};
    const ir::AttrMap part_inv = {{"rotary_dim", int64_t{32}}, {"inverse", int64_t{1}}};
    const ir::AttrMap inter = {{"rotary_dim", int64_t{16}}, {"interleaved", int64_t{1}}};
    const ir::AttrMap inter_inv = {{"interleaved", int64_t{1}}, {"inverse", int64_t{1}}};
    cs.push_back({"rotary_bf16_partial", "rotary",
                  {T(bf16, {2, 12, 4, 80}), T(f32, {1, 12, 1, 16}), T(f32, {1, 12, 1, 16})}, part});
    cs.push_back({"rotary_f32_partial_inverse", "rotary",
                  {T(f32, {2, 3, 5, 40}), T(f32, {5, 16}), T(f32, {5, 16})}, part_inv});
    cs.push_back({"rotary_f32_interleaved_partial", "rotary",
                  {T(f32, {2, 3, 5, 64}), T(f32, {5, 8}), T(f32, {5, 8})}, inter});
    cs.push_back({"rotary_bf16_interleaved_inverse", "rotary",
                  {T(bf16, {2, 4, 12, 64}), T(bf16, {12, 32}), T(bf16, {12, 32})}, inter_inv});
  }
  // where / cast / trilu.
  cs.push_back({"where_f32", "where", {T(b, {4, 1}), T(f32, {1, 5}), T(f32, {4, 5})}, {}, 1,
                {Gen::kBool, Gen::kNormal, Gen::kNormal}});
  cs.push_back({"where_i64", "where", {T(b, {3, 4}), T(i64, {4}), T(i64, {3, 1})}, {}, 1,
                {Gen::kBool, Gen::kSmallInt, Gen::kSmallInt}});
  cs.push_back({"where_bf16", "where", {T(b, {2, 8}), T(bf16, {2, 8}), T(bf16, {1})}, {}, 1,
                {Gen::kBool, Gen::kNormal, Gen::kNormal}});
  const std::vector<std::pair<DType, DType>> casts = {
      {f32, i32}, {f32, i64}, {f32, f16}, {f32, bf16}, {f16, f32}, {bf16, f32}, {i64, f32},
      {i32, i64}, {i64, i32}, {f32, b},   {b, f32},    {f64, f32}, {f32, f64}, {bf16, f16}};
  for (const auto& [from, to] : casts) {
    Case c{absl::StrCat("cast_", std::string(ir::DTypeName(from)), "_", std::string(ir::DTypeName(to))), "cast",
           {T(from, {9, 13})}, {{"to", to}}};
    if (from == b) c.gens = {Gen::kBool};
    cs.push_back(c);
  }
  cs.push_back({"trilu_upper", "trilu", {T(f32, {2, 5, 7})}, {{"upper", int64_t{1}}, {"k", int64_t{1}}}});
  cs.push_back({"trilu_lower", "trilu", {T(f32, {6, 6})}, {{"upper", int64_t{0}}, {"k", int64_t{-1}}}});
  // GEMMs.
  auto gemm = [&](std::string name, std::string op, std::vector<TensorType> in, ir::AttrMap attrs,
                  double scale) {
    Case c{std::move(name), std::move(op), std::move(in), std::move(attrs)};
    c.tolerance_scale = scale;
    cs.push_back(c);
  };
  gemm("matmul_f32_batched", "matmul", {T(f32, {2, 3, 17, 33}), T(f32, {2, 3, 33, 19})}, {}, 10);
  gemm("matmul_f32_shared_rhs", "matmul", {T(f32, {5, 16, 32}), T(f32, {32, 24})}, {}, 10);
  gemm("matmul_f32_shared_lhs", "matmul", {T(f32, {16, 32}), T(f32, {3, 32, 24})}, {}, 10);
  gemm("matmul_f32_bcast_loop", "matmul", {T(f32, {3, 1, 8, 12}), T(f32, {1, 4, 12, 10})}, {}, 10);
  // The broadcast loop with odd matrices: operand offsets of 3 x 3 x 4 = 36 bytes (cuBLASLt is
  // told the alignment the pointers keep).
  gemm("matmul_f32_bcast_loop_odd", "matmul", {T(f32, {3, 1, 3, 3}), T(f32, {1, 2, 3, 5})}, {}, 10);
  gemm("matmul_f32_vec_mat", "matmul", {T(f32, {7}), T(f32, {7, 5})}, {}, 10);
  gemm("matmul_f32_mat_vec", "matmul", {T(f32, {4, 6}), T(f32, {6})}, {}, 10);
  gemm("matmul_f32_large", "matmul", {T(f32, {128, 512}), T(f32, {512, 96})}, {}, 30);
  gemm("matmul_bf16", "matmul", {T(bf16, {64, 128}), T(bf16, {128, 96})}, {}, 2);
  gemm("matmul_f16", "matmul", {T(f16, {64, 128}), T(f16, {128, 96})}, {}, 2);
  // Odd N (rows of B and D 2-byte aligned, like a tied LM head's 50257 columns): the padded
  // path (PaddedMatmulKernel), bf16 and f32.
  gemm("matmul_bf16_odd_n_padded", "matmul", {T(bf16, {3, 40, 64}), T(bf16, {64, 101})}, {}, 2);
  gemm("matmul_f32_odd_n_padded", "matmul", {T(f32, {70, 32}), T(f32, {32, 67})}, {}, 10);
  // The same for fused_matmul reading a tied [V, D] table as is (trans_b=1: only D padded), and
  // without trans_b (B copied into padded rows); >= 256 rows.
  gemm("fused_matmul_bf16_odd_n_trans_padded", "fused_matmul",
       {T(bf16, {3, 100, 64}), T(bf16, {101, 64})}, {{"trans_b", int64_t{1}}}, 2);
  gemm("fused_matmul_f32_odd_n_padded", "fused_matmul", {T(f32, {260, 32}), T(f32, {32, 67})}, {},
       10);
  // fold-matmul-casts' LM head: bf16 operands, the f32 product written by the GEMM (padded f32
  // rows of an odd N, with and without trans_b), and a plain 2-D weight with an odd N too few
  // rows to pad.
  gemm("fused_matmul_bf16_f32_out_odd_n_trans_padded", "fused_matmul",
       {T(bf16, {3, 100, 64}), T(bf16, {101, 64})}, {{"trans_b", int64_t{1}}, {"dtype", f32}}, 2);
  gemm("fused_matmul_bf16_f32_out_odd_n_padded", "fused_matmul",
       {T(bf16, {260, 32}), T(bf16, {32, 67})}, {{"dtype", f32}}, 2);
  gemm("fused_matmul_bf16_f32_out_odd_n_direct", "fused_matmul",
       {T(bf16, {2, 5, 32}), T(bf16, {32, 67})}, {{"dtype", f32}}, 2);
  gemm("matmul_bf16_attention", "matmul", {T(bf16, {2, 4, 16, 32}), T(bf16, {2, 4, 32, 16})}, {}, 2);
  gemm("matmul_f64", "matmul", {T(f64, {9, 10}), T(f64, {10, 11})}, {}, 10);
  gemm("gemm_bias_row", "gemm", {T(f32, {8, 16}), T(f32, {16, 12}), T(f32, {12})},
       {{"alpha", 0.5}, {"beta", 2.0}}, 10);
  gemm("gemm_trans_bias_col", "gemm", {T(f32, {16, 8}), T(f32, {12, 16}), T(f32, {8, 1})},
       {{"trans_a", int64_t{1}}, {"trans_b", int64_t{1}}}, 10);
  gemm("gemm_no_c", "gemm", {T(f32, {8, 16}), T(f32, {12, 16})}, {{"trans_b", int64_t{1}}}, 10);
  // fold-grad-casts: a bf16 / f16 weight gradient written in f32 by the GEMM itself.
  gemm("gemm_bf16_f32_out_trans_a", "gemm", {T(bf16, {64, 32}), T(bf16, {64, 48})},
       {{"trans_a", int64_t{1}}, {"dtype", DType::kF32}}, 2);
  gemm("gemm_f16_f32_out", "gemm", {T(f16, {16, 40}), T(f16, {40, 24})},
       {{"dtype", DType::kF32}}, 2);
  // Weight + bias gradients in one node (fuse-bias-grad): db in cuBLASLt's BGRAD epilogue;
  // M != N so that a sum over the wrong side shows. bf16 with f32 weight and bias gradients
  // (what a --precision bf16 step has), bf16 with only the bias gradient in f32, f16 keeping
  // its dtype, f32 without trans_a.
  auto bgrad = [&](std::string name, std::vector<TensorType> in, ir::AttrMap attrs, double scale) {
    Case c{std::move(name), "gemm_bgrad", std::move(in), std::move(attrs), 2};
    c.tolerance_scale = scale;
    cs.push_back(c);
  };
  bgrad("gemm_bgrad_bf16_f32_grads", {T(bf16, {96, 48}), T(bf16, {96, 80})},
        {{"trans_a", int64_t{1}}, {"dtype", DType::kF32}, {"bias_dtype", DType::kF32}}, 2);
  bgrad("gemm_bgrad_bf16_f32_bias", {T(bf16, {64, 40}), T(bf16, {64, 56})},
        {{"trans_a", int64_t{1}}, {"bias_dtype", DType::kF32}}, 2);
  // Only y in f32: db (bf16) must not get BGRADA's f32 vector (it would write 4n bytes into
  // 2n): the reduce fallback takes it.
  bgrad("gemm_bgrad_bf16_f32_y_only", {T(bf16, {64, 40}), T(bf16, {64, 56})},
        {{"trans_a", int64_t{1}}, {"dtype", DType::kF32}}, 2);
  bgrad("gemm_bgrad_f16", {T(f16, {64, 32}), T(f16, {64, 24})}, {{"trans_a", int64_t{1}}}, 2);
  // bias_of="a": nn.Linear's [out, in] dW = dy^T x with db the column sums of dy (BGRADB);
  // the f32 grads of a bf16 step, the bias alone in f32 (the reduce fallback), f32.
  const ir::AttrMap of_a = {{"trans_a", int64_t{1}}, {"bias_of", std::string("a")}};
  ir::AttrMap of_a_f32 = of_a;
  of_a_f32["dtype"] = DType::kF32;
  of_a_f32["bias_dtype"] = DType::kF32;
  ir::AttrMap of_a_bias32 = of_a;
  of_a_bias32["bias_dtype"] = DType::kF32;
  bgrad("gemm_bgrad_of_a_bf16_f32_grads", {T(bf16, {96, 80}), T(bf16, {96, 48})}, of_a_f32, 2);
  bgrad("gemm_bgrad_of_a_bf16_f32_bias", {T(bf16, {64, 56}), T(bf16, {64, 40})}, of_a_bias32, 2);
  bgrad("gemm_bgrad_of_a_f32", {T(f32, {40, 24}), T(f32, {40, 56})}, of_a, 10);
  // fuse-gelu-aux: fused_matmul also writing the GELU's input (cuBLASLt's GELU_AUX_BIAS for the
  // tanh form, with and without a bias; the erf form and an N that is no multiple of 8 through
  // the GEMM into output 1 and the gelu pass), and gemm_gelu_grad (DGELU for tanh, else the
  // GEMM and an in-place gelu_grad), every float dtype, both transposes.
  auto aux = [&](std::string name, std::vector<TensorType> in, std::string act, double scale) {
    Case c{std::move(name), "fused_matmul", std::move(in), {{"activation", std::move(act)}}, 2};
    c.tolerance_scale = scale;
    cs.push_back(c);
  };
  aux("fused_matmul_bf16_gelu_tanh_aux", {T(bf16, {2, 32, 32}), T(bf16, {32, 48}), T(bf16, {48})},
      "gelu_tanh", 2);
  aux("fused_matmul_f16_gelu_tanh_aux_no_bias", {T(f16, {40, 32}), T(f16, {32, 64})}, "gelu_tanh",
      2);
  aux("fused_matmul_f32_gelu_aux", {T(f32, {2, 8, 32}), T(f32, {32, 48}), T(f32, {48})}, "gelu",
      10);
  aux("fused_matmul_f32_gelu_tanh_aux_odd_n", {T(f32, {9, 16}), T(f32, {16, 12}), T(f32, {12})},
      "gelu_tanh", 10);
  auto dgelu = [&](std::string name, std::vector<TensorType> in, ir::AttrMap attrs,
                   double scale) {
    Case c{std::move(name), "gemm_gelu_grad", std::move(in), std::move(attrs)};
    c.tolerance_scale = scale;
    cs.push_back(c);
  };
  const std::string tanh_form = "tanh";
  dgelu("gemm_gelu_grad_bf16_tanh", {T(bf16, {64, 48}), T(bf16, {32, 48}), T(bf16, {64, 32})},
        {{"trans_b", int64_t{1}}, {"approximate", tanh_form}}, 2);
  dgelu("gemm_gelu_grad_f16_tanh_trans_a", {T(f16, {48, 40}), T(f16, {48, 24}), T(f16, {40, 24})},
        {{"trans_a", int64_t{1}}, {"approximate", tanh_form}}, 2);
  dgelu("gemm_gelu_grad_f32_erf", {T(f32, {16, 24}), T(f32, {24, 40}), T(f32, {16, 40})},
        {{"approximate", std::string("none")}}, 10);
  dgelu("gemm_gelu_grad_f32_tanh_odd_n", {T(f32, {16, 24}), T(f32, {13, 24}), T(f32, {16, 13})},
        {{"trans_b", int64_t{1}}, {"approximate", tanh_form}}, 10);
  bgrad("gemm_bgrad_f32", {T(f32, {24, 40}), T(f32, {40, 56})}, {}, 10);
  gemm("fused_matmul_bias_gelu", "fused_matmul", {T(f32, {2, 8, 32}), T(f32, {32, 48}), T(f32, {48})},
       {{"activation", std::string("gelu")}}, 10);
  gemm("fused_matmul_trans_relu", "fused_matmul", {T(f32, {8, 32}), T(f32, {24, 32}), T(f32, {24})},
       {{"activation", std::string("relu")}, {"trans_b", int64_t{1}}}, 10);
  gemm("fused_matmul_gelu_tanh_no_bias", "fused_matmul", {T(f32, {3, 5, 16}), T(f32, {16, 8})},
       {{"activation", std::string("gelu_tanh")}}, 10);
  // gelu_tanh in cuBLASLt's GELU_BIAS epilogue, in bf16 (one rounding, of the activation).
  gemm("fused_matmul_bf16_bias_gelu_tanh", "fused_matmul",
       {T(bf16, {64, 32}), T(bf16, {32, 48}), T(bf16, {48})},
       {{"activation", std::string("gelu_tanh")}}, 2);
  gemm("fused_matmul_trans_bias", "fused_matmul", {T(f32, {16, 64}), T(f32, {32, 64}), T(f32, {32})},
       {{"trans_b", int64_t{1}}}, 10);
  // fuse-residual-add: the addend as cuBLASLt's C (beta 1, its own buffer); in f32, and from
  // bf16 operands with the f32 bias and result of {dtype=f32}.
  gemm("fused_matmul_addend_f32", "fused_matmul",
       {T(f32, {2, 8, 32}), T(f32, {48, 32}), T(f32, {48}), T(f32, {2, 8, 48})},
       {{"trans_b", int64_t{1}}}, 10);
  gemm("fused_matmul_bf16_addend_f32_out", "fused_matmul",
       {T(bf16, {64, 32}), T(bf16, {48, 32}), T(f32, {48}), T(f32, {64, 48})},
       {{"trans_b", int64_t{1}}, {"dtype", DType::kF32}}, 2);
  // Without a bias (Llama's projections): the addend is the third operand.
  gemm("fused_matmul_addend_no_bias_f32", "fused_matmul",
       {T(f32, {2, 8, 32}), T(f32, {32, 48}), T(f32, {2, 8, 48})}, {}, 10);
  gemm("fused_matmul_bf16_addend_no_bias_f32_out", "fused_matmul",
       {T(bf16, {2, 32, 32}), T(bf16, {32, 48}), T(f32, {2, 32, 48})},
       {{"dtype", DType::kF32}}, 2);
  // A row of 50 (not 16-byte aligned in bf16): the padded path would drop the addend.
  gemm("fused_matmul_bf16_addend_no_bias_odd_n", "fused_matmul",
       {T(bf16, {8, 32}), T(bf16, {50, 32}), T(f32, {8, 50})},
       {{"trans_b", int64_t{1}}, {"dtype", DType::kF32}}, 2);
  {
    Case a{"attention_bhtd_causal", "attention",
           {T(f32, {2, 3, 16, 8}), T(f32, {2, 3, 16, 8}), T(f32, {2, 3, 16, 8}), T(b, {1, 1, 16, 16})},
           {{"scale", 0.35}}};
    a.gens = {Gen::kNormal, Gen::kNormal, Gen::kNormal, Gen::kBool};
    a.tolerance_scale = 10;
    cs.push_back(a);
    Case c{"attention_bthd_additive", "attention",
           {T(f32, {2, 12, 4, 8}), T(f32, {2, 20, 4, 8}), T(f32, {2, 20, 4, 16}), T(f32, {2, 1, 12, 20})},
           {{"layout", std::string("bthd")}}};
    c.tolerance_scale = 10;
    cs.push_back(c);
    Case n{"attention_bhtd_no_mask", "attention",
           {T(f32, {1, 2, 7, 32}), T(f32, {1, 2, 9, 32}), T(f32, {1, 2, 9, 5})}, {}};
    n.tolerance_scale = 10;
    cs.push_back(n);
  }
  // Softmax, layer_norm, reductions.
  cs.push_back({"softmax_last", "softmax", {T(f32, {6, 50})}, {{"axis", int64_t{1}}}});
  cs.push_back({"softmax_middle", "softmax", {T(f32, {3, 7, 5})}, {{"axis", int64_t{1}}}});
  cs.push_back({"softmax_vocab_bf16", "softmax", {T(bf16, {4, 1000})}, {{"axis", int64_t{1}}}});
  cs.push_back({"log_softmax_last", "log_softmax", {T(f32, {5, 300})}, {{"axis", int64_t{1}}}});
  cs.push_back({"log_softmax_first", "log_softmax", {T(f32, {9, 4})}, {{"axis", int64_t{0}}}});
  Case ln{"layer_norm_bias_stats", "layer_norm", {T(f32, {4, 6, 32}), T(f32, {32}), T(f32, {32})},
          {{"axis", int64_t{2}}, {"epsilon", 1e-5}}, 3};
  cs.push_back(ln);
  cs.push_back({"layer_norm_two_axes", "layer_norm", {T(f32, {3, 4, 5}), T(f32, {4, 5})},
                {{"axis", int64_t{1}}, {"epsilon", 1e-3}}});
  cs.push_back({"layer_norm_bf16", "layer_norm", {T(bf16, {8, 64}), T(bf16, {64}), T(bf16, {64})},
                {{"axis", int64_t{1}}}});
  cs.push_back({"layer_norm_wide", "layer_norm", {T(f32, {2, 3000}), T(f32, {3000}), T(f32, {3000})},
                {{"axis", int64_t{1}}}});
  cs.push_back({"reduce_sum_middle", "reduce_sum", {T(f32, {4, 300, 3})},
                {{"axes", std::vector<int64_t>{1}}, {"keepdims", int64_t{1}}}});
  cs.push_back({"reduce_mean_all", "reduce_mean", {T(f32, {17, 33})},
                {{"axes", std::vector<int64_t>{}}, {"keepdims", int64_t{0}}}});
  cs.push_back({"reduce_max_outer", "reduce_max", {T(f32, {5, 6, 7})},
                {{"axes", std::vector<int64_t>{0, 2}}, {"keepdims", int64_t{0}}}});
  cs.push_back({"reduce_min_last", "reduce_min", {T(f32, {40, 9})},
                {{"axes", std::vector<int64_t>{1}}, {"keepdims", int64_t{1}}}});
  cs.push_back({"reduce_mean_bf16", "reduce_mean", {T(bf16, {8, 512})},
                {{"axes", std::vector<int64_t>{1}}, {"keepdims", int64_t{0}}}});
  Case rs{"reduce_sum_i64", "reduce_sum", {T(i64, {6, 10})},
          {{"axes", std::vector<int64_t>{0}}, {"keepdims", int64_t{0}}}};
  rs.gens = {Gen::kSmallInt};
  cs.push_back(rs);
  // Data movement.
  cs.push_back({"reshape", "reshape", {T(f32, {6, 4})}, {{"shape", std::vector<int64_t>{2, 12}}}});
  cs.push_back({"expand", "expand", {T(f32, {3, 1})}, {{"shape", std::vector<int64_t>{2, 3, 4}}}});
  cs.push_back({"transpose_3d", "transpose", {T(f32, {4, 5, 6})},
                {{"perm", std::vector<int64_t>{2, 0, 1}}}});
  cs.push_back({"transpose_heads_bf16", "transpose", {T(bf16, {2, 16, 4, 8})},
                {{"perm", std::vector<int64_t>{0, 2, 1, 3}}}});
  Case ti{"transpose_i64", "transpose", {T(i64, {33, 65})}, {{"perm", std::vector<int64_t>{1, 0}}}};
  ti.gens = {Gen::kSmallInt};
  cs.push_back(ti);
  cs.push_back({"split_three", "split", {T(f32, {4, 6, 3})},
                {{"axis", int64_t{1}}, {"sizes", std::vector<int64_t>{2, 3, 1}}}, 3});
  cs.push_back({"slice_steps", "slice", {T(f32, {10, 8})},
                {{"starts", std::vector<int64_t>{1, 7}},
                 {"ends", std::vector<int64_t>{9, 0}},
                 {"steps", std::vector<int64_t>{3, -2}}}});
  cs.push_back({"slice_narrow", "slice", {T(f32, {2, 32, 96})},
                {{"starts", std::vector<int64_t>{0, 0, 32}},
                 {"ends", std::vector<int64_t>{2, 32, 64}},
                 {"steps", std::vector<int64_t>{1, 1, 1}}}});
  cs.push_back({"concat_three", "concat", {T(f32, {2, 3, 4}), T(f32, {2, 1, 4}), T(f32, {2, 5, 4})},
                {{"axis", int64_t{1}}}});
  // The QKV split / concat in 16-byte units (codegen/cuda/copy_plan.h), and pieces whose
  // sizes only allow narrower units (10 bf16 = 20 bytes: 4-byte units; 3: elementwise).
  cs.push_back({"split_qkv_bf16", "split", {T(bf16, {2, 8, 72})},
                {{"axis", int64_t{2}}, {"sizes", std::vector<int64_t>{24, 24, 24}}}, 3});
  cs.push_back({"concat_qkv_bf16", "concat",
                {T(bf16, {2, 8, 24}), T(bf16, {2, 8, 24}), T(bf16, {2, 8, 24})},
                {{"axis", int64_t{2}}}});
  cs.push_back({"split_odd_bf16", "split", {T(bf16, {3, 5, 23})},
                {{"axis", int64_t{2}}, {"sizes", std::vector<int64_t>{10, 10, 3}}}, 3});
  Case ge{"gather_embedding", "gather", {T(f32, {50, 16}), T(i64, {2, 7})}, {{"axis", int64_t{0}}}};
  ge.gens = {Gen::kNormal, Gen::kIndex};
  ge.index_range = 50;
  cs.push_back(ge);
  // kv_cache_write: the decoder's cache update (out != cache here: the copy, then the slab);
  // keys transposed (axis 3) and values (axis 2), bf16 and f32.
  Case kv{"kv_cache_write_keys", "kv_cache_write",
          {T(f32, {1, 4, 16, 24}), T(f32, {1, 4, 16, 1}), T(i64, {1})}, {{"axis", int64_t{3}}}};
  kv.gens = {Gen::kNormal, Gen::kNormal, Gen::kLabel};  // a position in [0, 24)
  kv.index_range = 24;
  cs.push_back(kv);
  Case kvv{"kv_cache_write_values_bf16", "kv_cache_write",
           {T(bf16, {1, 4, 24, 16}), T(bf16, {1, 4, 1, 16}), T(i64, {1})}, {{"axis", int64_t{2}}}};
  kvv.gens = {Gen::kNormal, Gen::kNormal, Gen::kLabel};
  kvv.index_range = 24;
  cs.push_back(kvv);
  Case g1{"gather_axis1_i32", "gather", {T(bf16, {3, 20, 4}), T(i32, {5})}, {{"axis", int64_t{1}}}};
  g1.gens = {Gen::kNormal, Gen::kIndex};
  g1.index_range = 20;
  cs.push_back(g1);
  // fused_elementwise (the interpreter).
  cs.push_back({"fused_bias_gelu", "fused_elementwise", {T(f32, {8, 32}), T(f32, {32})},
                {{"program", std::vector<std::string>{"x0", "x1", "add", "gelu"}},
                 {"shape", std::vector<int64_t>{8, 32}}}});
  cs.push_back({"fused_constants_f64", "fused_elementwise", {T(f64, {4, 1, 6}), T(f64, {5, 1})},
                {{"program", std::vector<std::string>{"x0", "c0", "mul", "x1", "sub", "tanh",
                                                      "c1", "max"}},
                 {"constants", std::vector<double>{0.5, -0.25}},
                 {"shape", std::vector<int64_t>{4, 5, 6}}}});
  // fused_elementwise's "dropoutK" tokens (a training step's dropout absorbed by
  // fuse-elementwise): the dropout op's mask over the output index, the counter read on the
  // device. GPT-2's residual add of a dropped-out bf16 projection in the f32 stream, the
  // embeddings' dropout(wte + wpe) over a broadcast operand, and two dropouts in one program
  // (an i32 counter, and none: counter 0) in f64.
  {
    Case residual{"fused_dropout_residual_bf16_into_f32", "fused_elementwise",
                  {T(f32, {16, 96}), T(bf16, {16, 96}), T(i64, {})},
                  {{"program", std::vector<std::string>{"x0", "x1", "dropout0", "add"}},
                   {"dtype", f32},
                   {"dropout_ratio", std::vector<double>{0.1}},
                   {"dropout_seed", std::vector<int64_t>{3}},
                   {"dropout_counter", std::vector<int64_t>{2}},
                   {"shape", std::vector<int64_t>{16, 96}}}};
    residual.gens = {Gen::kNormal, Gen::kNormal, Gen::kSmallInt};
    residual.ref_in_f32 = true;
    cs.push_back(residual);
    Case embed{"fused_dropout_embeddings_f32", "fused_elementwise",
               {T(f32, {3, 50, 32}), T(f32, {50, 32}), T(i64, {})},
               {{"program", std::vector<std::string>{"x0", "x1", "add", "dropout0"}},
                {"dropout_ratio", std::vector<double>{0.25}},
                {"dropout_seed", std::vector<int64_t>{0}},
                {"dropout_counter", std::vector<int64_t>{2}},
                {"shape", std::vector<int64_t>{3, 50, 32}}}};
    embed.gens = {Gen::kNormal, Gen::kNormal, Gen::kSmallInt};
    cs.push_back(embed);
    Case two{"fused_dropout_two_f64_i32_and_no_counter", "fused_elementwise",
             {T(i32, {}), T(f64, {5, 37})},
             {{"program", std::vector<std::string>{"x1", "dropout0", "x1", "dropout1", "mul"}},
              {"dropout_ratio", std::vector<double>{0.5, 0.3}},
              {"dropout_seed", std::vector<int64_t>{7, 12}},
              {"dropout_counter", std::vector<int64_t>{0, -1}},
              {"shape", std::vector<int64_t>{5, 37}}}};
    two.gens = {Gen::kSmallInt, Gen::kNormal};
    cs.push_back(two);
  }
  // Losses and training ops (ops_train.cc).
  auto add = [&](Case c) { cs.push_back(std::move(c)); };
  auto loss = [&](std::string name, std::string op, std::vector<TensorType> in, ir::AttrMap attrs,
                  int64_t classes, int outs = 1, bool f32_ref = false) {
    Case c{std::move(name), std::move(op), std::move(in), std::move(attrs), outs};
    c.gens = {Gen::kNormal, Gen::kLabel, Gen::kPositive};
    c.index_range = classes;
    c.tolerance_scale = 10;
    c.ref_in_f32 = f32_ref;
    add(c);
  };
  loss("softmax_ce_mean", "softmax_ce_loss", {T(f32, {8, 10}), T(i64, {8})}, {}, 10);
  loss("softmax_ce_mean_log_prob", "softmax_ce_loss", {T(f32, {6, 33}), T(i32, {6})}, {}, 33, 2);
  loss("softmax_ce_weighted_ignore", "softmax_ce_loss",
       {T(f32, {2, 5, 3}), T(i64, {2, 3}), T(f32, {5})},
       {{"ignore_index", int64_t{1}}, {"reduction", std::string("mean")}}, 5);
  loss("softmax_ce_none_spatial", "softmax_ce_loss", {T(f32, {3, 4, 2, 5}), T(i32, {3, 2, 5})},
       {{"reduction", std::string("none")}}, 4, 2);
  loss("softmax_ce_sum_vocab", "softmax_ce_loss", {T(f32, {4, 1000}), T(i64, {4})},
       {{"reduction", std::string("sum")}}, 1000);
  loss("softmax_ce_vocab_bf16", "softmax_ce_loss", {T(bf16, {4, 1000}), T(i64, {4})}, {}, 1000, 2,
       true);
  loss("softmax_ce_f64", "softmax_ce_loss", {T(f64, {7, 9}), T(i64, {7})}, {}, 9);
  loss("nll_mean", "nll_loss", {T(f32, {8, 10}), T(i64, {8})}, {}, 10);
  loss("nll_weighted_ignore_sum", "nll_loss", {T(f32, {9, 4}), T(i32, {9}), T(f32, {4})},
       {{"ignore_index", int64_t{2}}, {"reduction", std::string("sum")}}, 4);
  loss("nll_none_f16", "nll_loss", {T(f16, {5, 6, 3}), T(i64, {5, 3})},
       {{"reduction", std::string("none")}}, 6, 1, true);
  auto loss_grad = [&](std::string name, std::string op, std::vector<TensorType> in,
                       ir::AttrMap attrs, int64_t classes, bool f32_ref = false) {
    Case c{std::move(name), std::move(op), std::move(in), std::move(attrs)};
    c.gens = {Gen::kNormal, Gen::kNormal, Gen::kLabel, Gen::kPositive};
    c.index_range = classes;
    c.tolerance_scale = 4;
    c.ref_in_f32 = f32_ref;
    add(c);
  };
  loss_grad("softmax_ce_grad_mean", "softmax_ce_loss_grad",
            {T(f32, {}), T(f32, {8, 10}), T(i64, {8})}, {}, 10);
  loss_grad("softmax_ce_grad_weighted_ignore", "softmax_ce_loss_grad",
            {T(f32, {}), T(f32, {2, 5, 3}), T(i32, {2, 3}), T(f32, {5})},
            {{"ignore_index", int64_t{1}}}, 5);
  loss_grad("softmax_ce_grad_none", "softmax_ce_loss_grad",
            {T(f32, {3, 2}), T(f32, {3, 7, 2}), T(i64, {3, 2})},
            {{"reduction", std::string("none")}}, 7);
  loss_grad("softmax_ce_grad_vocab_bf16", "softmax_ce_loss_grad",
            {T(bf16, {}), T(bf16, {4, 1000}), T(i64, {4})}, {{"reduction", std::string("sum")}},
            1000, true);
  loss_grad("nll_grad_mean_weighted", "nll_loss_grad",
            {T(f32, {}), T(f32, {9, 4}), T(i64, {9}), T(f32, {4})}, {}, 4);
  loss_grad("nll_grad_none_ignore", "nll_loss_grad", {T(f32, {5, 3}), T(f32, {5, 6, 3}), T(i32, {5, 3})},
            {{"reduction", std::string("none")}, {"ignore_index", int64_t{0}}}, 6);
  {
    auto lng = [&](std::string name, DType dt, ir::Shape x, int64_t axis, double tol, bool f32_ref) {
      ir::Shape norm(x.begin() + axis, x.end()), stat(x.begin(), x.begin() + axis);
      stat.resize(x.size(), 1);
      Case c{std::move(name), "layer_norm_grad",
             {T(dt, x), T(dt, x), T(dt, norm), T(f32, stat), T(f32, stat)},
             {{"axis", axis}}, 3};
      c.gens = {Gen::kNormal, Gen::kNormal, Gen::kNormal, Gen::kNormal, Gen::kPositive};
      c.tolerance_scale = tol;
      c.ref_in_f32 = f32_ref;
      add(c);
    };
    lng("layer_norm_grad_rows", f32, {4, 6, 32}, 2, 10, false);
    lng("layer_norm_grad_two_axes", f32, {3, 4, 5}, 1, 10, false);
    lng("layer_norm_grad_many_rows", f32, {300, 48}, 1, 30, false);  // several row chunks
    lng("layer_norm_grad_wide", f32, {2, 3000}, 1, 30, false);
    lng("layer_norm_grad_bf16", bf16, {16, 64}, 1, 2, true);
    lng("layer_norm_grad_f64", f64, {5, 7}, 1, 10, false);
  }
  add({"gelu_grad_f32", "gelu_grad", {T(f32, {16, 64}), T(f32, {16, 64})}});
  add({"gelu_grad_tanh_f32", "gelu_grad", {T(f32, {1000}), T(f32, {1000})},
       {{"approximate", std::string("tanh")}}});
  {
    Case c{"gelu_grad_bf16", "gelu_grad", {T(bf16, {8, 40}), T(bf16, {8, 40})}};
    c.ref_in_f32 = true;
    add(c);
    Case f{"gelu_grad_f16_tanh", "gelu_grad", {T(f16, {300}), T(f16, {300})},
           {{"approximate", std::string("tanh")}}};
    f.ref_in_f32 = true;
    add(f);
  }
  // dropout: the CPU kernel's mask bit for bit (compiler/ir/dropout.h) from the seed and the
  // counter read on the device; every float dtype, the vector path and its tail, an i32
  // counter, no counter (0), the mask output, ratio 0.
  for (const auto& [dn, dt] : std::vector<std::pair<const char*, DType>>{
           {"f32", f32}, {"bf16", bf16}, {"f16", f16}, {"f64", f64}}) {
    for (const ir::Shape& shape : {ir::Shape{16, 64}, ir::Shape{3, 37}}) {
      const std::string size = shape[1] == 64 ? "aligned" : "odd";
      const ir::AttrMap da = {{"ratio", 0.3}, {"seed", int64_t{11}}};
      add({absl::StrCat("dropout_", dn, "_", size), "dropout", {T(dt, shape), T(i64, {})}, da, 2,
           {Gen::kNormal, Gen::kSmallInt}});
    }
  }
  add({"dropout_f32_i32_counter", "dropout", {T(f32, {5, 40}), T(i32, {})},
       {{"ratio", 0.5}, {"seed", int64_t{2}}}, 1, {Gen::kNormal, Gen::kSmallInt}});
  add({"dropout_f32_no_counter", "dropout", {T(f32, {1000})}, {{"ratio", 0.1}}, 2});
  add({"dropout_bf16_ratio_0", "dropout", {T(bf16, {8, 24}), T(i64, {})}, {{"ratio", 0.0}}, 2,
       {Gen::kNormal, Gen::kSmallInt}});
  // swiglu / swiglu_grad: every float dtype, sizes a multiple of the 16-byte vector (the vector
  // path) and odd ones (its scalar tail); the CPU kernels compute half types in f32 too.
  for (const auto& [dn, dt] : std::vector<std::pair<const char*, DType>>{
           {"f32", f32}, {"bf16", bf16}, {"f16", f16}, {"f64", f64}}) {
    for (const ir::Shape& shape : {ir::Shape{16, 64}, ir::Shape{3, 37}}) {
      const std::string size = shape[1] == 64 ? "aligned" : "odd";
      add({absl::StrCat("swiglu_", dn, "_", size), "swiglu", {T(dt, shape), T(dt, shape)}});
      add({absl::StrCat("swiglu_grad_", dn, "_", size), "swiglu_grad",
           {T(dt, shape), T(dt, shape), T(dt, shape)}, {}, 2});
      // GeGLU (Gemma: gelu(g) u), the tanh and the erf form.
      for (const char* act : {"gelu_tanh", "gelu"}) {
        const ir::AttrMap aa = {{"activation", std::string(act)}};
        add({absl::StrCat("geglu_", act, "_", dn, "_", size), "swiglu",
             {T(dt, shape), T(dt, shape)}, aa});
        add({absl::StrCat("geglu_grad_", act, "_", dn, "_", size), "swiglu_grad",
             {T(dt, shape), T(dt, shape), T(dt, shape)}, aa, 2});
      }
    }
  }
  {
    auto gg = [&](std::string name, DType dt, TensorType idx, int64_t axis, ir::Shape shape,
                  double tol, bool f32_ref) {
      ir::Shape dy(shape.begin(), shape.begin() + axis);
      dy.insert(dy.end(), idx.shape.begin(), idx.shape.end());
      dy.insert(dy.end(), shape.begin() + axis + 1, shape.end());
      const int64_t n = shape[axis];
      Case c{std::move(name), "gather_grad", {T(dt, dy), idx}, {{"axis", axis}, {"shape", shape}}};
      c.gens = {Gen::kNormal, Gen::kIndex};
      c.index_range = n;
      c.tolerance_scale = tol;
      c.ref_in_f32 = f32_ref;
      add(c);
    };
    gg("gather_grad_embedding", f32, T(i64, {2, 7}), 0, {50, 16}, 1, false);
    gg("gather_grad_repeats", f32, T(i64, {300}), 0, {10, 33}, 10, false);  // ~30 per row
    gg("gather_grad_axis1_i32", f32, T(i32, {5}), 1, {3, 20, 4}, 1, false);
    gg("gather_grad_many_buckets", f32, T(i32, {4, 40}), 0, {1500, 8}, 4, false);
    // Three fill chunks (1024 positions each) and three scan blocks (4096 buckets each).
    gg("gather_grad_chunks", f32, T(i64, {3, 700}), 0, {9000, 3}, 4, false);
    gg("gather_grad_chunks_repeats", bf16, T(i32, {2100}), 0, {37, 5}, 8, true);
    gg("gather_grad_bf16", bf16, T(i64, {64}), 0, {12, 16}, 2, true);
    gg("gather_grad_f64", f64, T(i64, {3, 5}), 1, {2, 6, 3}, 1, false);
    // With a base (a tied embedding's other gradient): the sums are added to it.
    Case b{"gather_grad_base", "gather_grad", {T(f32, {2, 7, 16}), T(i64, {2, 7}), T(f32, {50, 16})},
           {{"axis", int64_t{0}}, {"shape", ir::Shape{50, 16}}}};
    b.gens = {Gen::kNormal, Gen::kIndex, Gen::kNormal};
    b.index_range = 50;
    add(b);
  }
  add({"slice_grad_steps", "slice_grad", {T(f32, {3, 4})},
       {{"starts", std::vector<int64_t>{1, 7}}, {"ends", std::vector<int64_t>{9, 0}},
        {"steps", std::vector<int64_t>{3, -2}}, {"shape", std::vector<int64_t>{10, 8}}}});
  add({"slice_grad_narrow", "slice_grad", {T(f32, {2, 1, 32})},
       {{"starts", std::vector<int64_t>{0, 5, 32}}, {"ends", std::vector<int64_t>{2, 6, 64}},
        {"steps", std::vector<int64_t>{1, 1, 1}}, {"shape", std::vector<int64_t>{2, 8, 96}}}});
  {
    Case c{"lr_schedule_cosine_warmup", "lr_schedule", {T(f32, {})},
           {{"lr", 3e-4}, {"schedule", std::string("cosine")}, {"warmup", int64_t{5}},
            {"total_steps", int64_t{15}}, {"min_lr_ratio", 0.1}}};
    c.gens = {Gen::kStep};
    add(c);
    Case k{"lr_schedule_constant", "lr_schedule", {T(f32, {})}, {{"lr", 0.01}}};
    k.gens = {Gen::kStep};
    add(k);
  }
  {
    const ir::AttrMap adam = {{"beta1", 0.9}, {"beta2", 0.95}, {"eps", 1e-8},
                              {"weight_decay", 0.1}};
    auto aw = [&](std::string name, DType dt, ir::Shape s, bool f32_ref) {
      Case c{std::move(name), "adamw_update",
             {T(dt, s), T(dt, s), T(dt, s), T(dt, s), T(f32, {}), T(f32, {})}, adam, 3};
      c.gens = {Gen::kNormal, Gen::kNormal, Gen::kNormal, Gen::kPositive, Gen::kPositive,
                Gen::kStep};
      c.tolerance_scale = 4;
      c.ref_in_f32 = f32_ref;
      add(c);
    };
    aw("adamw_f32_vec4", f32, {64, 48}, false);  // 16-byte loads
    aw("adamw_f32_tail", f32, {1001}, false);    // chunks of 1024 with a ragged end
    aw("adamw_f32_small", f32, {3}, false);
    aw("adamw_bf16", bf16, {40, 9}, true);
    aw("adamw_f64", f64, {77}, false);
    // With the apply flag (gradient accumulation, fp16 step skipping): false leaves w, m, v.
    Case ap{"adamw_f32_apply", "adamw_update",
            {T(f32, {300}), T(f32, {300}), T(f32, {300}), T(f32, {300}), T(f32, {}), T(f32, {}),
             T(DType::kBool, {})},
            adam, 3};
    ap.gens = {Gen::kNormal, Gen::kNormal, Gen::kNormal, Gen::kPositive, Gen::kPositive,
               Gen::kStep, Gen::kBool};
    ap.tolerance_scale = 4;
    add(ap);
    Case sm{"sgd_momentum_wd", "sgd_update", {T(f32, {5, 7}), T(f32, {5, 7}), T(f32, {}), T(f32, {5, 7})},
            {{"momentum", 0.9}, {"weight_decay", 0.01}}, 2};
    sm.gens = {Gen::kNormal, Gen::kNormal, Gen::kPositive, Gen::kNormal};
    add(sm);
    Case sp{"sgd_plain", "sgd_update", {T(f32, {100}), T(f32, {100}), T(f32, {})}, {}, 1};
    sp.gens = {Gen::kNormal, Gen::kNormal, Gen::kPositive};
    add(sp);
  }
  // Flash attention, beyond the f32 cases above: half types (reference: the f32 CPU kernel),
  // several key tiles with a ragged end, head dim 128, additive masks of q's dtype, and the
  // two-GEMM fallback (head dim over 128).
  {
    auto att = [&](std::string name, DType dt, ir::Shape q, ir::Shape k, ir::Shape v,
                   std::optional<TensorType> mask, ir::AttrMap attrs, bool f32_ref) {
      const bool counter = attrs.count("dropout") > 0;  // attention dropout: the counter last
      Case c{std::move(name), "attention", {T(dt, q), T(dt, k), T(dt, v)}, std::move(attrs)};
      c.gens = {Gen::kNormal, Gen::kNormal, Gen::kNormal};
      if (mask) {
        c.inputs.push_back(*mask);
        c.gens.push_back(mask->dtype == b ? Gen::kBool : Gen::kNormal);
      }
      if (counter) {
        c.inputs.push_back(T(i64, {}));
        c.gens.push_back(Gen::kSmallInt);
      }
      c.tolerance_scale = f32_ref ? 2 : 10;
      c.ref_in_f32 = f32_ref;
      add(c);
    };
    att("attention_long_tk_tiles", f32, {1, 2, 20, 16}, {1, 2, 100, 16}, {1, 2, 100, 24},
        T(b, {1, 1, 20, 100}), {}, false);
    att("attention_head_dim_128", f32, {1, 2, 33, 128}, {1, 2, 33, 128}, {1, 2, 33, 128},
        std::nullopt, {}, false);
    att("attention_bthd_bf16", bf16, {2, 40, 3, 32}, {2, 40, 3, 32}, {2, 40, 3, 32},
        T(b, {1, 1, 40, 40}), {{"layout", std::string("bthd")}}, true);
    att("attention_f16_additive", f16, {1, 2, 17, 64}, {1, 2, 50, 64}, {1, 2, 50, 64},
        T(f16, {1, 2, 17, 50}), {}, true);
    att("attention_two_gemm_fallback_d160", f32, {1, 2, 9, 160}, {1, 2, 9, 160},
        {1, 2, 9, 160}, std::nullopt, {}, false);
    // attention_grad (flash forward recomputed + flash backward) against the CPU kernel.
    auto grad = [&](std::string name, DType dt, ir::Shape q, ir::Shape k, ir::Shape v,
                    ir::Shape o, std::optional<TensorType> mask, ir::AttrMap attrs) {
      const bool counter = attrs.count("dropout") > 0;
      Case c{std::move(name), "attention_grad", {T(dt, o), T(dt, q), T(dt, k), T(dt, v)},
             std::move(attrs), 3};
      c.gens = {Gen::kNormal, Gen::kNormal, Gen::kNormal, Gen::kNormal};
      if (mask) {
        c.inputs.push_back(*mask);
        c.gens.push_back(mask->dtype == b ? Gen::kBool : Gen::kNormal);
      }
      if (counter) {
        c.inputs.push_back(T(i64, {}));
        c.gens.push_back(Gen::kSmallInt);
      }
      c.tolerance_scale = dt == f32 ? 20 : 4;
      c.ref_in_f32 = dt != f32;
      add(c);
    };
    // linear_ce_loss (cuBLASLt blocks + the row kernel) against the CPU kernel: loss only, and
    // with the gradient outputs; both weight layouts, an ignore_index.
    {
      Case l{"linear_ce_loss_tied", "linear_ce_loss", {T(f32, {70, 16}), T(f32, {300, 16}), T(i64, {70})},
             {{"trans_b", int64_t{1}}, {"ignore_index", int64_t{5}}}, 3};
      l.gens = {Gen::kNormal, Gen::kNormal, Gen::kLabel};
      l.index_range = 300;
      l.tolerance_scale = 20;
      add(l);
      Case lb{"linear_ce_loss_bf16", "linear_ce_loss", {T(bf16, {40, 32}), T(bf16, {200, 32}), T(i64, {40})},
              {{"trans_b", int64_t{1}}}, 3};
      lb.gens = {Gen::kNormal, Gen::kNormal, Gen::kLabel};
      lb.index_range = 200;
      // The logits in bf16 (as autocast's): a logit l carries up to 2^-9 |l| of rounding
      // (these reach |l| ~ 20), which the loss and p = softmax carry on: bounds 4e-4 for the
      // loss, 4e-3 for the gradients. KernelOptions::linear_ce_f32_logits keeps the logits in
      // f32: CudaKernelOptions.LinearCeF32LogitsMatchCpu holds that to the old bounds.
      lb.tolerance_scale = 20;
      lb.ref_in_f32 = true;
      add(lb);
      // fold-grad-casts: the gradient parts in f32 (dx from the GEMM, dw summed in place).
      Case lf{"linear_ce_loss_bf16_f32_grads", "linear_ce_loss",
              {T(bf16, {40, 32}), T(bf16, {200, 32}), T(i64, {40})},
              {{"trans_b", int64_t{1}}, {"grad_dtype", DType::kF32}}, 3};
      lf.gens = {Gen::kNormal, Gen::kNormal, Gen::kLabel};
      lf.index_range = 200;
      // G (softmax - one-hot) is rounded to bf16 before the two gradient GEMMs (their operands
      // are bf16): the f32 dx / dw carry that 2^-9 relative rounding, which the exact f32
      // reference does not (the CPU emulation measured up to 3e-3 relative): bounds 1e-3 with
      // f32 logits; with bf16 logits (above) 4e-3.
      lf.tolerance_scale = 200;
      lf.ref_in_f32 = true;
      add(lf);
      Case m{"linear_ce_loss_sum_loss_only", "linear_ce_loss", {T(f32, {33, 8}), T(f32, {8, 50}), T(i64, {33})},
             {{"reduction", std::string("sum")}}, 1};
      m.gens = {Gen::kNormal, Gen::kNormal, Gen::kLabel};
      m.index_range = 50;
      m.tolerance_scale = 20;
      add(m);
      // An LM head with a bias (Phi, GPT-J): the bias added by the row kernel, its gradient
      // (db_unit, the fourth output) summed over G's columns block by block.
      for (Case b : {l, lb, lf, m}) {
        b.name += "_bias";
        const int64_t v = b.index_range;
        b.inputs.push_back(T(b.inputs[0].dtype, {v}));
        b.gens.push_back(Gen::kNormal);
        if (b.num_outputs == 3) b.num_outputs = 4;
        // bf16 logits: the bias widens them, and their 2^-9 relative rounding (the loss's error
        // is the label logits' rounding averaged over the rows) measured up to 5e-4 of the loss
        // on the emulation: twice the bound of the bias-free case.
        if (b.name == "linear_ce_loss_bf16_bias") b.tolerance_scale = 40;
        add(b);
      }
      // softcap (Gemma 2's logits capped to softcap * tanh(z / softcap) in the row kernel, G
      // times 1 - tanh^2): f32 tied with an ignored label, bf16 logits, f32 gradients, a bias.
      for (Case c : {l, lb, lf}) {
        c.name += "_softcap";
        c.attrs["softcap"] = 3.0;
        add(c);
      }
      // A logit scale (Cohere's logit_scale): the logits and G times it in the row kernel.
      for (Case c : {l, lb}) {
        c.name += "_scale";
        c.attrs["scale"] = 0.4;
        add(c);
      }
      {
        Case c = lf;
        c.name = "linear_ce_loss_bf16_f32_grads_scale_softcap";
        c.attrs["scale"] = 1.5;
        c.attrs["softcap"] = 3.0;
        add(c);
      }
      {
        Case c = m;
        c.name = "linear_ce_loss_softcap_bias_sum";
        c.attrs["softcap"] = 2.0;
        c.inputs.push_back(T(f32, {c.index_range}));
        c.gens.push_back(Gen::kNormal);
        add(c);
      }
    }
    grad("attention_grad_bhtd_causal", f32, {2, 3, 40, 16}, {2, 3, 40, 16}, {2, 3, 40, 16},
         {2, 3, 40, 16}, T(b, {1, 1, 40, 40}), {{"scale", 0.25}});
    grad("attention_grad_bthd_bf16", bf16, {2, 70, 2, 32}, {2, 70, 2, 32}, {2, 70, 2, 32},
         {2, 70, 2, 32}, T(b, {1, 1, 70, 70}), {{"layout", std::string("bthd")}});
    grad("attention_grad_additive_tq_lt_tk", f32, {1, 2, 9, 8}, {1, 2, 33, 8}, {1, 2, 33, 12},
         {1, 2, 9, 12}, T(f32, {1, 2, 9, 33}), {});
    // Head dim 256 (Gemma's): the SIMT kernels' wide instantiation, bf16 with GQA.
    att("attention_head_dim_256_bf16_gqa", bf16, {1, 24, 4, 256}, {1, 24, 2, 256},
        {1, 24, 2, 256}, T(b, {1, 1, 24, 24}), {{"layout", std::string("bthd")}}, true);
    grad("attention_grad_head_dim_256_bf16", bf16, {1, 2, 24, 256}, {1, 2, 24, 256},
         {1, 2, 24, 256}, {1, 2, 24, 256}, T(b, {1, 1, 24, 24}), {{"softcap", 1.5}});
    // softcap on the SIMT kernels (f32; head dim 16 is theirs alone).
    att("attention_softcap_f32_bhtd_causal", f32, {2, 3, 40, 16}, {2, 3, 40, 16},
        {2, 3, 40, 16}, T(b, {1, 1, 40, 40}), {{"scale", 0.5}, {"softcap", 0.8}}, false);
    grad("attention_grad_softcap_f32_bthd_additive", f32, {1, 9, 2, 16}, {1, 33, 2, 16},
         {1, 33, 2, 12}, {1, 9, 2, 12}, T(f32, {1, 2, 9, 33}),
         {{"layout", std::string("bthd")}, {"scale", 0.5}, {"softcap", 0.8}});
    // Attention dropout on the SIMT kernels (f32) and the two-GEMM fallback (the dropout
    // kernel on its probabilities): the CPU kernel's mask from the counter operand.
    const ir::AttrMap drop = {{"dropout", 0.3}, {"seed", int64_t{9}}};
    att("attention_dropout_f32_long_tk", f32, {1, 2, 20, 16}, {1, 2, 100, 16}, {1, 2, 100, 24},
        T(b, {1, 1, 20, 100}), drop, false);
    att("attention_dropout_two_gemm_d160", f32, {1, 2, 9, 160}, {1, 2, 9, 160}, {1, 2, 9, 160},
        std::nullopt, drop, false);
    grad("attention_grad_dropout_f32_gqa_bthd", f32, {1, 9, 4, 8}, {1, 33, 2, 8},
         {1, 33, 2, 12}, {1, 9, 4, 12}, T(b, {9, 33}),
         {{"layout", std::string("bthd")}, {"dropout", 0.5}, {"seed", int64_t{4}}});
    // Grouped-query attention (k / v with fewer heads than q; dk / dv summed over each kv
    // head's query heads) on the SIMT kernels, f32: both layouts, causal bool / additive masks.
    att("attention_gqa_f32_bthd_causal", f32, {2, 20, 4, 16}, {2, 20, 2, 16}, {2, 20, 2, 24},
        T(b, {1, 1, 20, 20}), {{"layout", std::string("bthd")}}, false);
    att("attention_gqa_f32_bhtd_additive", f32, {1, 6, 9, 8}, {1, 2, 30, 8}, {1, 2, 30, 8},
        T(f32, {1, 6, 9, 30}), {}, false);
    grad("attention_grad_gqa_f32_bhtd_causal", f32, {2, 4, 40, 16}, {2, 2, 40, 16},
         {2, 2, 40, 16}, {2, 4, 40, 16}, T(b, {1, 1, 40, 40}), {{"scale", 0.25}});
    grad("attention_grad_gqa_f32_bthd_additive", f32, {1, 9, 6, 8}, {1, 33, 3, 8},
         {1, 33, 3, 12}, {1, 9, 6, 12}, T(f32, {1, 6, 9, 33}), {{"layout", std::string("bthd")}});
  }
  // Tensor-core attention (attention_tc.cu: f16 / bf16, d == dv in {64, 128}; every case named
  // attention_tc_* / attention_grad_tc_* takes that path by default, and TensorCoreAttention
  // below runs them again with KernelOptions::attention_simt). Sequences not a multiple of the
  // 64-row tiles, real causal masks (whole key tiles skipped), rows with every key masked (NaN,
  // as the CPU kernel), Tq != Tk, both layouts, masks broadcast in different ways.
  {
    auto tc = [&](std::string name, DType dt, ir::Shape q, ir::Shape k, ir::Shape o,
                  std::optional<TensorType> mask, Gen mask_gen, std::string layout, bool grad,
                  ir::AttrMap attrs = {}) {
      if (!layout.empty()) attrs["layout"] = layout;
      const bool counter = attrs.count("dropout") > 0;  // attention dropout: the counter last
      Case c{std::move(name), grad ? "attention_grad" : "attention",
             {T(dt, q), T(dt, k), T(dt, k)}, std::move(attrs), grad ? 3 : 1};
      c.gens = {Gen::kNormal, Gen::kNormal, Gen::kNormal};
      if (grad) {
        c.inputs.insert(c.inputs.begin(), T(dt, o));
        c.gens.push_back(Gen::kNormal);
      }
      if (mask) {
        c.inputs.push_back(*mask);
        c.gens.push_back(mask_gen);
      }
      if (counter) {
        c.inputs.push_back(T(i64, {}));
        c.gens.push_back(Gen::kSmallInt);
      }
      c.tolerance_scale = grad ? 4 : 2;
      c.ref_in_f32 = true;
      add(c);
    };
    tc("attention_tc_bf16_causal_ragged", bf16, {2, 3, 130, 64}, {2, 3, 130, 64}, {},
       T(b, {1, 1, 130, 130}), Gen::kCausal, "", false);
    tc("attention_tc_f16_bthd_additive_tq_ne_tk_d128", f16, {2, 70, 4, 128}, {2, 150, 4, 128}, {},
       T(f16, {1, 4, 70, 150}), Gen::kNormal, "bthd", false);
    tc("attention_tc_bf16_bthd_no_mask_d128", bf16, {1, 65, 2, 128}, {1, 65, 2, 128}, {},
       std::nullopt, Gen::kNormal, "bthd", false);
    tc("attention_tc_f16_fully_masked_rows", f16, {1, 2, 80, 64}, {1, 2, 50, 64}, {},
       T(b, {80, 50}), Gen::kCausal, "", false);
    tc("attention_tc_bf16_random_bool_per_head", bf16, {1, 2, 64, 64}, {1, 2, 64, 64}, {},
       T(b, {1, 2, 64, 64}), Gen::kBool, "", false);
    tc("attention_grad_tc_bf16_causal_ragged", bf16, {2, 2, 100, 64}, {2, 2, 100, 64},
       {2, 2, 100, 64}, T(b, {1, 1, 100, 100}), Gen::kCausal, "", true);
    tc("attention_grad_tc_f16_bthd_additive_tq_lt_tk_d128", f16, {1, 40, 2, 128},
       {1, 130, 2, 128}, {1, 40, 2, 128}, T(f16, {1, 2, 40, 130}), Gen::kNormal, "bthd", true);
    tc("attention_grad_tc_bf16_no_mask_d128", bf16, {1, 2, 64, 128}, {1, 2, 64, 128},
       {1, 2, 64, 128}, std::nullopt, Gen::kNormal, "", true);
    tc("attention_grad_tc_f16_causal_tq_lt_tk", f16, {1, 3, 70, 64}, {1, 3, 140, 64},
       {1, 3, 70, 64}, T(b, {70, 140}), Gen::kCausal, "", true);
    // causal=1 (annotate-causal's attribute): the CUDA kernels mask by index, visit only the
    // tiles below the diagonal and never read the mask; the CPU reference reads it. Ragged
    // tiles, Tq > Tk (rows with every key masked: NaN) and Tq < Tk, both layouts, head dims 64
    // and 128; the names put them through the SIMT kernels too (TensorCoreAttention).
    const ir::AttrMap causal{{"causal", int64_t{1}}};
    tc("attention_tc_bf16_causal_attr_ragged", bf16, {2, 3, 130, 64}, {2, 3, 130, 64}, {},
       T(b, {1, 1, 130, 130}), Gen::kCausal, "", false, causal);
    tc("attention_tc_f16_causal_attr_tq_gt_tk", f16, {1, 2, 80, 64}, {1, 2, 50, 64}, {},
       T(b, {80, 50}), Gen::kCausal, "", false, causal);
    tc("attention_tc_bf16_causal_attr_bthd_d128", bf16, {1, 150, 2, 128}, {1, 150, 2, 128}, {},
       T(b, {150, 150}), Gen::kCausal, "bthd", false, causal);
    tc("attention_grad_tc_bf16_causal_attr_ragged", bf16, {2, 2, 150, 64}, {2, 2, 150, 64},
       {2, 2, 150, 64}, T(b, {1, 1, 150, 150}), Gen::kCausal, "", true, causal);
    tc("attention_grad_tc_f16_causal_attr_tq_lt_tk", f16, {1, 3, 70, 64}, {1, 3, 140, 64},
       {1, 3, 70, 64}, T(b, {70, 140}), Gen::kCausal, "", true, causal);
    // Grouped-query attention (Llama's kv_heads < heads): k / v with 1 or 2 heads for 4 query
    // heads; the dK / dV kernel sums each kv head's group in one block. causal=1 (the
    // double-buffered loop over the group's query tiles), bool masks per query head (the bias
    // tiles), both layouts; through the SIMT kernels too (TensorCoreAttention).
    tc("attention_tc_gqa_bf16_causal_attr_ragged", bf16, {1, 4, 130, 64}, {1, 2, 130, 64}, {},
       T(b, {1, 1, 130, 130}), Gen::kCausal, "", false, causal);
    tc("attention_tc_gqa_f16_bthd_bool_per_head", f16, {1, 70, 4, 64}, {1, 70, 2, 64}, {},
       T(b, {1, 4, 70, 70}), Gen::kBool, "bthd", false);
    tc("attention_grad_tc_gqa_bf16_bthd_causal_attr", bf16, {1, 100, 4, 64}, {1, 100, 1, 64},
       {1, 100, 4, 64}, T(b, {100, 100}), Gen::kCausal, "bthd", true, causal);
    tc("attention_grad_tc_gqa_f16_bool_per_head_d128", f16, {1, 4, 70, 128}, {1, 2, 70, 128},
       {1, 4, 70, 128}, T(b, {1, 4, 70, 70}), Gen::kBool, "", true);
    tc("attention_grad_tc_bf16_causal_attr_bthd_d128", bf16, {1, 100, 2, 128},
       {1, 100, 2, 128}, {1, 100, 2, 128}, T(b, {100, 100}), Gen::kCausal, "bthd", true, causal);
    // softcap (Gemma 2: the scaled scores capped to softcap * tanh(s / softcap) before the
    // mask; the backwards multiply dS by 1 - tanh^2): causal by index and ragged, an additive
    // mask, grouped-query, both layouts; through the SIMT kernels too (TensorCoreAttention).
    ir::AttrMap causal_cap = causal;
    causal_cap["softcap"] = 1.0;
    tc("attention_tc_bf16_softcap_causal_attr_ragged", bf16, {2, 2, 130, 64}, {2, 2, 130, 64},
       {}, T(b, {1, 1, 130, 130}), Gen::kCausal, "", false, causal_cap);
    tc("attention_grad_tc_bf16_softcap_causal_attr_ragged", bf16, {1, 2, 130, 64},
       {1, 2, 130, 64}, {1, 2, 130, 64}, T(b, {1, 1, 130, 130}), Gen::kCausal, "", true,
       causal_cap);
    tc("attention_grad_tc_f16_softcap_bthd_additive_d128", f16, {1, 40, 2, 128},
       {1, 100, 2, 128}, {1, 40, 2, 128}, T(f16, {1, 2, 40, 100}), Gen::kNormal, "bthd", true,
       {{"softcap", 0.7}});
    tc("attention_grad_tc_gqa_bf16_softcap_bthd_causal_attr", bf16, {1, 100, 4, 64},
       {1, 100, 2, 64}, {1, 100, 4, 64}, T(b, {100, 100}), Gen::kCausal, "bthd", true,
       causal_cap);
    // Attention dropout (the CPU kernel's mask over [B, H, Tq, Tk], redrawn by the dK / dV and
    // dQ passes): causal by index (the double-buffered loops) and ragged, bool masks (the bias
    // tiles), grouped-query (the dK / dV pass over a group's heads), both layouts, head dims 64
    // and 128; through the SIMT kernels too (TensorCoreAttention).
    ir::AttrMap causal_drop = causal;
    causal_drop["dropout"] = 0.2;
    causal_drop["seed"] = int64_t{3};
    const ir::AttrMap drop_only = {{"dropout", 0.4}, {"seed", int64_t{8}}};
    tc("attention_tc_bf16_dropout_causal_attr_ragged", bf16, {2, 2, 130, 64}, {2, 2, 130, 64},
       {}, T(b, {1, 1, 130, 130}), Gen::kCausal, "", false, causal_drop);
    tc("attention_tc_f16_dropout_bthd_bool_d128", f16, {1, 70, 2, 128}, {1, 90, 2, 128}, {},
       T(b, {1, 2, 70, 90}), Gen::kBool, "bthd", false, drop_only);
    tc("attention_grad_tc_bf16_dropout_causal_attr_ragged", bf16, {1, 2, 130, 64},
       {1, 2, 130, 64}, {1, 2, 130, 64}, T(b, {1, 1, 130, 130}), Gen::kCausal, "", true,
       causal_drop);
    tc("attention_grad_tc_f16_dropout_bool_tq_lt_tk_d128", f16, {1, 2, 40, 128},
       {1, 2, 100, 128}, {1, 2, 40, 128}, T(b, {40, 100}), Gen::kBool, "", true, drop_only);
    tc("attention_grad_tc_gqa_bf16_dropout_bthd_causal_attr", bf16, {1, 100, 4, 64},
       {1, 100, 2, 64}, {1, 100, 4, 64}, T(b, {100, 100}), Gen::kCausal, "bthd", true,
       causal_drop);
    // The same with Tk a multiple of 16 (AttentionDropper::Grouped: a hash per four
    // probabilities of a thread, halves swapped between threads in dK / dV), a partial last
    // key tile (144 = 2 x 64 + 16).
    tc("attention_tc_bf16_dropout_causal_attr_grouped", bf16, {2, 2, 144, 64}, {2, 2, 144, 64},
       {}, T(b, {1, 1, 144, 144}), Gen::kCausal, "", false, causal_drop);
    tc("attention_tc_f16_dropout_bthd_bool_d128_grouped", f16, {1, 70, 2, 128},
       {1, 96, 2, 128}, {}, T(b, {1, 2, 70, 96}), Gen::kBool, "bthd", false, drop_only);
    tc("attention_grad_tc_bf16_dropout_causal_attr_grouped", bf16, {1, 2, 144, 64},
       {1, 2, 144, 64}, {1, 2, 144, 64}, T(b, {1, 1, 144, 144}), Gen::kCausal, "", true,
       causal_drop);
    tc("attention_grad_tc_f16_dropout_bool_tq_lt_tk_d128_grouped", f16, {1, 2, 40, 128},
       {1, 2, 112, 128}, {1, 2, 40, 128}, T(b, {40, 112}), Gen::kBool, "", true, drop_only);
    tc("attention_grad_tc_gqa_bf16_dropout_bthd_causal_attr_grouped", bf16, {1, 96, 4, 64},
       {1, 96, 2, 64}, {1, 96, 4, 64}, T(b, {96, 96}), Gen::kCausal, "bthd", true, causal_drop);
    // Rows with every key masked (Tq > Tk) add nothing to the gradients (P = 0, dS = 0 though
    // their D is NaN), on every backend: several key tiles (causal by index) and two query
    // tiles (bool mask tiles).
    tc("attention_grad_tc_f16_causal_attr_tq_gt_tk", f16, {1, 2, 200, 64}, {1, 2, 150, 64},
       {1, 2, 200, 64}, T(b, {200, 150}), Gen::kCausal, "", true, causal);
    tc("attention_grad_tc_bf16_fully_masked_rows", bf16, {1, 2, 128, 64}, {1, 2, 64, 64},
       {1, 2, 128, 64}, T(b, {128, 64}), Gen::kCausal, "", true);
    // Tk - Tq = 17: the warp-uniform limits of the skipped products on diagonal tiles fall on
    // the last element of a 16-chunk.
    tc("attention_tc_bf16_causal_attr_offset_17", bf16, {1, 100, 2, 64}, {1, 117, 2, 64}, {},
       T(b, {100, 117}), Gen::kCausal, "bthd", false, causal);
    tc("attention_grad_tc_bf16_causal_attr_offset_17", bf16, {1, 100, 2, 64}, {1, 117, 2, 64},
       {1, 100, 2, 64}, T(b, {100, 117}), Gen::kCausal, "bthd", true, causal);
    // Layout bt3hd (pack-qkv): q, k, v as slots 0, 1, 2 of packed [B, T, 3, H, D] operands,
    // attention_grad's one packed gradient. Tensor cores (the attention_tc_ names: also run
    // through SIMT below) and SIMT (f32; bf16 with head dim 32, whose f32 gradients go through
    // one packed scratch and cast).
    auto packed = [&](std::string name, DType dt, ir::Shape qkv, int64_t t, bool grad,
                      int outputs, bool causal_attr) {
      ir::AttrMap attrs = {{"layout", std::string("bt3hd")}};
      if (causal_attr) attrs["causal"] = int64_t{1};
      Case c{std::move(name), grad ? "attention_grad" : "attention",
             {T(dt, qkv), T(dt, qkv), T(dt, qkv), T(b, {t, t})}, std::move(attrs), outputs};
      c.gens = {Gen::kNormal, Gen::kNormal, Gen::kNormal, Gen::kCausal};
      if (grad) {  // dy first
        c.inputs.insert(c.inputs.begin(), T(dt, {qkv[0], qkv[1], qkv[3], qkv[4]}));
        c.gens.insert(c.gens.begin(), Gen::kNormal);
      }
      c.tolerance_scale = grad ? 4 : 2;
      c.ref_in_f32 = dt != f32;
      add(c);
    };
    packed("attention_tc_bf16_packed_causal", bf16, {2, 130, 3, 2, 64}, 130, false, 2, true);
    packed("attention_grad_tc_bf16_packed_causal", bf16, {2, 130, 3, 2, 64}, 130, true, 1, true);
    packed("attention_grad_tc_f16_packed_d128", f16, {1, 70, 3, 2, 128}, 70, true, 1, false);
    packed("attention_packed_f32", f32, {2, 20, 3, 2, 16}, 20, false, 1, false);
    packed("attention_grad_packed_f32", f32, {2, 20, 3, 2, 16}, 20, true, 1, true);
    packed("attention_grad_packed_bf16_simt_d32", bf16, {1, 40, 3, 3, 32}, 40, true, 1, false);
    // The log-sum-exp as a second output (save-attention-stats): f32 [B, H, Tq], tensor cores
    // and SIMT.
    Case lse_tc{"attention_lse_tc_bf16_bthd_causal", "attention",
                {T(bf16, {2, 130, 3, 64}), T(bf16, {2, 130, 3, 64}), T(bf16, {2, 130, 3, 64}),
                 T(b, {1, 1, 130, 130})},
                {{"layout", std::string("bthd")}}, 2};
    lse_tc.gens = {Gen::kNormal, Gen::kNormal, Gen::kNormal, Gen::kCausal};
    lse_tc.tolerance_scale = 2;
    lse_tc.ref_in_f32 = true;
    add(lse_tc);
    Case lse_simt{"attention_lse_f32_causal", "attention",
                  {T(f32, {1, 2, 40, 16}), T(f32, {1, 2, 40, 16}), T(f32, {1, 2, 40, 16}),
                   T(b, {40, 40})},
                  {{"scale", 0.3}}, 2};
    lse_simt.gens = {Gen::kNormal, Gen::kNormal, Gen::kNormal, Gen::kCausal};
    lse_simt.tolerance_scale = 4;
    add(lse_simt);
    Case lse_causal{"attention_lse_tc_bf16_causal_attr", "attention",
                    {T(bf16, {1, 2, 130, 64}), T(bf16, {1, 2, 130, 64}), T(bf16, {1, 2, 130, 64}),
                     T(b, {130, 130})},
                    causal, 2};
    lse_causal.gens = {Gen::kNormal, Gen::kNormal, Gen::kNormal, Gen::kCausal};
    lse_causal.tolerance_scale = 2;
    lse_causal.ref_in_f32 = true;
    add(lse_causal);
    Case simt_causal{"attention_grad_f32_causal_attr", "attention_grad",
                     {T(f32, {1, 2, 40, 16}), T(f32, {1, 2, 40, 16}), T(f32, {1, 2, 40, 16}),
                      T(f32, {1, 2, 40, 16}), T(b, {40, 40})},
                     causal, 3};
    simt_causal.gens = {Gen::kNormal, Gen::kNormal, Gen::kNormal, Gen::kNormal, Gen::kCausal};
    simt_causal.tolerance_scale = 20;
    add(simt_causal);
  }
  // Fast paths of the memory-bound kernels (elementwise.cu, reduce.cu, train.cu): the executor's
  // buffers are 256-byte aligned, so these hit the 16-byte vector paths; sizes with a tail
  // (n % vector width != 0), large enough that every thread of the persistent grid loops
  // several times (and, for rows, the (row, col) cursor wraps mid-stride), the bias-row and
  // column broadcasts of the rank-2 path, and the general path beside them.
  {
    for (DType dt : {f32, bf16, f16, f64}) {
      const std::string d(ir::DTypeName(dt));
      cs.push_back({"fast_add_flat_tail_4099_" + d, "add", {T(dt, {4099}), T(dt, {4099})}});
      cs.push_back({"fast_mul_flat_1000_" + d, "mul", {T(dt, {1000}), T(dt, {1000})}});
      cs.push_back({"fast_sub_scalar_rhs_" + d, "sub", {T(dt, {4099}), T(dt, {})}});
      cs.push_back({"fast_add_bias_row_" + d, "add", {T(dt, {64, 768}), T(dt, {768})}});
      cs.push_back({"fast_mul_bias_row_lhs_" + d, "mul", {T(dt, {768}), T(dt, {33, 768})}});
      cs.push_back({"fast_div_column_" + d, "div", {T(dt, {48, 256}), T(dt, {48, 1})}, {}, 1,
                    {Gen::kNormal, Gen::kPositive}});
      cs.push_back({"fast_max_outer_" + d, "max", {T(dt, {40, 1}), T(dt, {1, 64})}});
      cs.push_back({"general_add_rows_not_multiple_" + d, "add",
                    {T(dt, {7, 1001}), T(dt, {1001})}});
      cs.push_back({"general_add_rank3_" + d, "add", {T(dt, {2, 3, 4, 5}), T(dt, {3, 1, 5})}});
    }
    cs.push_back({"fast_add_flat_many_strides_f32", "add", {T(f32, {3000003}), T(f32, {3000003})}});
    cs.push_back({"fast_add_bias_rows_wrap_f32", "add", {T(f32, {3000, 1000}), T(f32, {1000})}});
    cs.push_back({"fast_add_bias_rows_wrap_bf16", "add", {T(bf16, {6000, 1000}), T(bf16, {1000})}});
    cs.push_back({"general_add_many_strides_f32", "add", {T(f32, {3000, 1001}), T(f32, {1001})}});
    cs.push_back({"fast_less_flat_tail_f32", "less", {T(f32, {4099}), T(f32, {4099})}});
    cs.push_back({"fast_greater_bias_row_bf16", "greater", {T(bf16, {16, 96}), T(bf16, {96})}});
    cs.push_back({"fast_equal_flat_f64", "equal", {T(f64, {1001}), T(f64, {1})}});
    for (const char* op : {"exp", "gelu", "sigmoid", "relu", "tanh"}) {
      cs.push_back({absl::StrCat("fast_", op, "_flat_tail_bf16"), op, {T(bf16, {4099})}});
      cs.push_back({absl::StrCat("fast_", op, "_flat_tail_f32"), op, {T(f32, {4099})}});
    }
    cs.push_back({"fast_sqrt_flat_f16", "sqrt", {T(f16, {4099})}, {}, 1, {Gen::kPositive}});
    Case di{"fast_div_flat_i32", "div", {T(i32, {1003}), T(i32, {1003})}};
    di.gens = {Gen::kSmallInt, Gen::kNonZeroInt};
    cs.push_back(di);
    Case dr{"fast_sub_bias_row_i64", "sub", {T(i64, {9, 40}), T(i64, {40})}};
    dr.gens = {Gen::kSmallInt, Gen::kSmallInt};
    cs.push_back(dr);
    auto where = [&](std::string name, TensorType c, TensorType a, TensorType bb) {
      cs.push_back({std::move(name), "where", {c, a, bb}, {}, 1,
                    {Gen::kBool, Gen::kNormal, Gen::kNormal}});
    };
    where("fast_where_flat_tail_f32", T(b, {4099}), T(f32, {4099}), T(f32, {4099}));
    where("fast_where_flat_tail_bf16", T(b, {4099}), T(bf16, {4099}), T(bf16, {}));
    where("fast_where_causal_rows_f32", T(b, {1, 1, 16, 16}), T(f32, {2, 3, 16, 16}), T(f32, {}));
    where("fast_where_rows_f64", T(b, {8, 1}), T(f64, {8, 12}), T(f64, {12}));
    where("general_where_rank3_f16", T(b, {3, 1, 5}), T(f16, {2, 3, 4, 5}), T(f16, {4, 1}));
    for (const auto& [from, to] : std::vector<std::pair<DType, DType>>{
             {f32, bf16}, {bf16, f32}, {f32, f16}, {f16, f32}}) {
      cs.push_back({absl::StrCat("fast_cast_4099_", std::string(ir::DTypeName(from)), "_",
                                 std::string(ir::DTypeName(to))),
                    "cast", {T(from, {4099})}, {{"to", to}}});
    }
    // Rows in registers (one warp per row up to 1024 elements, a block beyond; f64, rows not a
    // multiple of the vector width and rows over 8192 elements take the streaming kernels).
    for (DType dt : {f32, bf16, f16}) {
      const std::string d(ir::DTypeName(dt));
      for (int64_t n : {64, 768, 1024, 3000, 5000}) {
        const std::string w = absl::StrCat(n, "_", d);
        cs.push_back({"softmax_rows_" + w, "softmax", {T(dt, {6, n})}, {{"axis", int64_t{1}}}});
        cs.push_back({"log_softmax_rows_" + w, "log_softmax", {T(dt, {5, n})},
                      {{"axis", int64_t{1}}}});
        cs.push_back({"layer_norm_rows_" + w, "layer_norm",
                      {T(dt, {5, n}), T(dt, {n}), T(dt, {n})},
                      {{"axis", int64_t{1}}, {"epsilon", 1e-5}}, 3});
        cs.push_back({"rms_norm_rows_" + w, "layer_norm", {T(dt, {5, n}), T(dt, {n})},
                      {{"axis", int64_t{1}}, {"epsilon", 1e-5}, {"rms", int64_t{1}}}, 3});
        Case g{"layer_norm_grad_rows_" + w, "layer_norm_grad",
               {T(dt, {6, n}), T(dt, {6, n}), T(dt, {n}), T(f32, {6, 1}), T(f32, {6, 1})},
               {{"axis", int64_t{1}}}, 3};
        g.gens = {Gen::kNormal, Gen::kNormal, Gen::kNormal, Gen::kNormal, Gen::kPositive};
        g.tolerance_scale = dt == f32 ? 30 : 2;
        g.ref_in_f32 = dt != f32;
        cs.push_back(g);
        // RMSNorm's gradient: no mean(g) term; the mean operand as the forward writes it (0).
        g.name = "rms_norm_grad_rows_" + w;
        g.attrs["rms"] = int64_t{1};
        g.gens[3] = Gen::kZero;
        cs.push_back(g);
      }
    }
    // RMSNorm on the streaming kernels (f64; a row that is not a multiple of the vector; a
    // low-precision y from an f32 x) and its gradient with a bf16 dy and dx_low.
    cs.push_back({"rms_norm_streaming_f64", "layer_norm", {T(f64, {3, 40}), T(f64, {40})},
                  {{"axis", int64_t{1}}, {"epsilon", 1e-6}, {"rms", int64_t{1}}}, 3});
    cs.push_back({"rms_norm_streaming_1001_f32", "layer_norm", {T(f32, {4, 1001}), T(f32, {1001})},
                  {{"axis", int64_t{1}}, {"rms", int64_t{1}}}, 3});
    cs.push_back({"rms_norm_two_axes_f32", "layer_norm", {T(f32, {3, 4, 5}), T(f32, {4, 5})},
                  {{"axis", int64_t{1}}, {"epsilon", 1e-3}, {"rms", int64_t{1}}}});
    cs.push_back({"rms_norm_f32_to_bf16_rows", "layer_norm", {T(f32, {512, 2048}), T(f32, {2048})},
                  {{"axis", int64_t{1}}, {"dtype", DType::kBF16}, {"rms", int64_t{1}}}, 3});
    cs.push_back({"softmax_rows_many_bf16", "softmax", {T(bf16, {4096, 768})},
                  {{"axis", int64_t{1}}}});
    cs.push_back({"softmax_rows_streaming_9000_f32", "softmax", {T(f32, {3, 9000})},
                  {{"axis", int64_t{1}}}});
    cs.push_back({"softmax_rows_streaming_1001_f32", "softmax", {T(f32, {3, 1001})},
                  {{"axis", int64_t{1}}}});
    cs.push_back({"layer_norm_rows_many_bf16", "layer_norm",
                  {T(bf16, {4096, 768}), T(bf16, {768}), T(bf16, {768})},
                  {{"axis", int64_t{1}}}, 3});
    cs.push_back({"layer_norm_rows_scale_only_1001_f32", "layer_norm",
                  {T(f32, {4, 1001}), T(f32, {1001})}, {{"axis", int64_t{1}}}});
    cs.push_back({"layer_norm_rows_scalar_scale_f32", "layer_norm",
                  {T(f32, {4, 768}), T(f32, {1}), T(f32, {1})}, {{"axis", int64_t{1}}}});
    {
      Case g{"layer_norm_grad_rows_many_bf16", "layer_norm_grad",
             {T(bf16, {2048, 768}), T(bf16, {2048, 768}), T(bf16, {768}), T(f32, {2048, 1}),
              T(f32, {2048, 1})},
             {{"axis", int64_t{1}}}, 3};
      g.gens = {Gen::kNormal, Gen::kNormal, Gen::kNormal, Gen::kNormal, Gen::kPositive};
      g.tolerance_scale = 2;
      g.ref_in_f32 = true;
      cs.push_back(g);
    }
    // fold-norm-casts: an f32 layer norm writing bf16 / f16, and its gradient reading a bf16 /
    // f16 dy; the register-row kernels (d = 768) and the streaming ones (d = 1001).
    cs.push_back({"layer_norm_f32_to_bf16_rows", "layer_norm",
                  {T(f32, {2048, 768}), T(f32, {768}), T(f32, {768})},
                  {{"axis", int64_t{1}}, {"dtype", DType::kBF16}}, 3});
    cs.push_back({"layer_norm_f32_to_f16_streaming_1001", "layer_norm",
                  {T(f32, {3, 1001}), T(f32, {1001}), T(f32, {1001})},
                  {{"axis", int64_t{1}}, {"dtype", DType::kF16}}, 3});
    // layer_norm_grad(dy, x, scale, mean, inv_std_dev[, addend]) over rows `x`, dy in `dy`.
    // With low_dropout > 0: dx_low's dropout (fold-norm-casts), its counter last when
    // `counter` is an integer type.
    auto norm_grad = [&](const char* name, DType dy, const ir::Shape& x, bool addend,
                         int outputs, double low_dropout = 0, DType counter = DType::kF32) {
      const ir::Shape norm{x[1]}, stat{x[0], 1};
      Case g{name, "layer_norm_grad",
             {T(dy, x), T(f32, x), T(f32, norm), T(f32, stat), T(f32, stat)},
             {{"axis", int64_t{1}}}, outputs};
      g.gens = {Gen::kNormal, Gen::kNormal, Gen::kNormal, Gen::kNormal, Gen::kPositive};
      if (addend) {
        g.inputs.push_back(T(f32, x));
        g.gens.push_back(Gen::kNormal);
      }
      if (low_dropout > 0) {
        g.attrs["low_dropout"] = low_dropout;
        g.attrs["low_seed"] = int64_t{21};
      }
      if (counter == i32 || counter == i64) {
        g.inputs.push_back(T(counter, {}));
        g.gens.push_back(Gen::kSmallInt);
      }
      g.tolerance_scale = 30;
      cs.push_back(g);
    };
    norm_grad("layer_norm_grad_bf16_dy_rows", bf16, {2048, 768}, false, 3);
    norm_grad("layer_norm_grad_f16_dy_streaming_1001", f16, {5, 1001}, false, 3);
    // fuse-norm-grad-add: dx + addend, on the register-row (d = 768, bf16 dy) and the
    // streaming (d = 1001) kernels.
    norm_grad("layer_norm_grad_addend_bf16_dy_rows", bf16, {1024, 768}, true, 3);
    norm_grad("layer_norm_grad_addend_streaming_1001", f32, {5, 1001}, true, 3);
    // dx_low (fold-norm-casts): dx also written in dy's bf16 / f16, the bits of a cast of dx;
    // register (d = 768, with the addend) and streaming (d = 1001) kernels.
    norm_grad("layer_norm_grad_dx_low_bf16_rows", bf16, {1024, 768}, true, 4);
    norm_grad("layer_norm_grad_dx_low_f16_streaming_1001", f16, {5, 1001}, true, 4);
    // dx_low's dropout (fold-norm-casts; GPT-2's residual dropout in the backward): the dropout
    // op's mask over dx_low's index, dx scaled and rounded once; both kernels, an i64 / i32
    // counter or none (0).
    norm_grad("layer_norm_grad_dx_low_dropout_bf16_rows", bf16, {1024, 768}, true, 4, 0.1, i64);
    norm_grad("layer_norm_grad_dx_low_dropout_bf16_rows_no_addend", bf16, {64, 768}, false, 4,
              0.3, i32);
    norm_grad("layer_norm_grad_dx_low_dropout_f16_streaming_1001", f16, {5, 1001}, true, 4, 0.5);
    for (DType dt : {f32, bf16, f16}) {
      Case c{absl::StrCat("gelu_grad_flat_tail_4099_", std::string(ir::DTypeName(dt))),
             "gelu_grad", {T(dt, {4099}), T(dt, {4099})}};
      c.ref_in_f32 = dt != f32;
      cs.push_back(c);
    }
    // Column reductions (bias gradients): row chunks in scratch, then a fixed-order final sum.
    cs.push_back({"reduce_sum_bias_grad_f32", "reduce_sum", {T(f32, {8, 128, 96})},
                  {{"axes", std::vector<int64_t>{0, 1}}, {"keepdims", int64_t{0}}}});
    cs.push_back({"reduce_sum_bias_grad_bf16", "reduce_sum", {T(bf16, {4096, 768})},
                  {{"axes", std::vector<int64_t>{0}}, {"keepdims", int64_t{0}}}});
    cs.push_back({"reduce_mean_columns_keepdims_f32", "reduce_mean", {T(f32, {300, 40})},
                  {{"axes", std::vector<int64_t>{0}}, {"keepdims", int64_t{1}}}});
    cs.push_back({"reduce_max_columns_f32", "reduce_max", {T(f32, {2000, 33})},
                  {{"axes", std::vector<int64_t>{0}}, {"keepdims", int64_t{0}}}});
    cs.push_back({"reduce_min_columns_f64", "reduce_min", {T(f64, {130, 5})},
                  {{"axes", std::vector<int64_t>{0}}, {"keepdims", int64_t{0}}}});
    {
      Case c{"reduce_sum_columns_i64", "reduce_sum", {T(i64, {500, 7})},
             {{"axes", std::vector<int64_t>{0}}, {"keepdims", int64_t{0}}}};
      c.gens = {Gen::kSmallInt};
      cs.push_back(c);
    }
    cs.push_back({"reduce_sum_columns_few_rows_f32", "reduce_sum", {T(f32, {40, 300})},
                  {{"axes", std::vector<int64_t>{0}}, {"keepdims", int64_t{0}}}});
    {
      Case c{"softmax_ce_grad_rows_wrap", "softmax_ce_loss_grad",
             {T(f32, {}), T(f32, {600, 5000}), T(i64, {600})}, {}};
      c.gens = {Gen::kNormal, Gen::kNormal, Gen::kLabel};
      c.index_range = 5000;
      c.tolerance_scale = 4;
      cs.push_back(c);
    }
  }
  return cs;
}

ir::Tensor Random(const TensorType& t, Gen gen, int64_t index_range, std::mt19937_64& rng) {
  if (t.dtype == DType::kF16 || t.dtype == DType::kBF16) {
    // Draw in f32 and let the CPU cast kernel round (it is the reference side anyway).
    return CastTo(Random(TensorType{DType::kF32, t.shape}, gen, index_range, rng), t.dtype);
  }
  ir::Tensor out(t.dtype, t.shape);
  const int64_t n = t.num_elements();
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> positive(0.5, 2.0);
  std::uniform_int_distribution<int64_t> small(-10, 10);
  std::uniform_int_distribution<int64_t> index(-index_range, index_range - 1);
  std::uniform_int_distribution<int64_t> label(0, index_range > 0 ? index_range - 1 : 0);
  std::uniform_int_distribution<int64_t> step(1, 20);
  for (int64_t i = 0; i < n; ++i) {
    double v = 0;
    switch (gen) {
      case Gen::kNormal: v = ir::IsFloat(t.dtype) ? normal(rng) : double(small(rng)); break;
      case Gen::kPositive: v = positive(rng); break;
      case Gen::kSmallInt: v = double(small(rng)); break;
      case Gen::kNonZeroInt: do { v = double(small(rng)); } while (v == 0); break;
      case Gen::kBool: v = double(rng() & 1); break;
      case Gen::kIndex: v = double(index(rng)); break;
      case Gen::kLabel: v = double(label(rng)); break;
      case Gen::kStep: v = double(step(rng)); break;
      case Gen::kZero: break;
      case Gen::kCausal: {
        const int64_t tk = t.shape[t.rank() - 1], tq = t.rank() >= 2 ? t.shape[t.rank() - 2] : 1;
        v = i % tk > (i / tk) % tq + tk - tq ? 1 : 0;
        break;
      }
    }
    char* p = static_cast<char*>(out.mutable_data()) + i * ir::DTypeSize(t.dtype);
    switch (t.dtype) {
      case DType::kF32: { float f = float(v); std::memcpy(p, &f, 4); break; }
      case DType::kF64: std::memcpy(p, &v, 8); break;
      case DType::kF16:
      case DType::kBF16: break;  // drawn as f32 above, converted below
      case DType::kI32: { int32_t x = int32_t(v); std::memcpy(p, &x, 4); break; }
      case DType::kI64: { int64_t x = int64_t(v); std::memcpy(p, &x, 8); break; }
      case DType::kI8: { int8_t x = int8_t(v); std::memcpy(p, &x, 1); break; }
      case DType::kU8:
      case DType::kBool: { uint8_t x = uint8_t(v); std::memcpy(p, &x, 1); break; }
    }
  }
  return out;
}

bool IsHalf(DType d) { return d == DType::kF16 || d == DType::kBF16; }

struct Built {
  std::unique_ptr<ir::Module> module;
  ir::Node* node = nullptr;
};

absl::StatusOr<Built> Build(const Case& c) {
  Built b;
  b.module = std::make_unique<ir::Module>();
  ir::Function* f = b.module->AddFunction("main");
  std::vector<ir::Value*> params;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    params.push_back(f->AddParam(absl::StrCat("x", i), c.inputs[i]));
  }
  auto types = ir::InferTypes(c.op, c.inputs, c.attrs, c.num_outputs);
  if (!types.ok()) return types.status();
  b.node = f->AddNode(c.op, params, *types, c.attrs, /*loc=*/c.name);
  return b;
}

// The CPU reference outputs of case `c` (built as `node`) on `in`.
absl::StatusOr<std::vector<ir::Tensor>> Reference(const Case& c, const ir::Node& node,
                                                  const std::vector<ir::Tensor>& in) {
  if (!c.ref_in_f32) return cpu::EvaluateNode(node, in);
  Case wide = c;
  std::vector<ir::Tensor> wide_in;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    if (IsHalf(c.inputs[i].dtype)) wide.inputs[i].dtype = DType::kF32;
    wide_in.push_back(CastTo(in[i], wide.inputs[i].dtype));
  }
  PTC_ASSIGN_OR_RETURN(Built built, Build(wide));
  PTC_ASSIGN_OR_RETURN(std::vector<ir::Tensor> out, cpu::EvaluateNode(*built.node, wide_in));
  for (size_t i = 0; i < out.size(); ++i) out[i] = CastTo(out[i], node.output(i)->type().dtype);
  return out;
}

std::vector<ir::Tensor> Inputs(const Case& c, std::mt19937_64& rng) {
  std::vector<ir::Tensor> in;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    Gen g = i < c.gens.size() ? c.gens[i] : Gen::kNormal;
    in.push_back(Random(c.inputs[i], g, c.index_range, rng));
  }
  return in;
}

class CudaKernelCase : public testing::TestWithParam<Case> {};

// Runs without a GPU: every case is a valid node whose CPU reference evaluates.
TEST_P(CudaKernelCase, ReferenceEvaluates) {
  const Case& c = GetParam();
  auto built = Build(c);
  ASSERT_TRUE(built.ok()) << c.name << ": " << built.status();
  std::mt19937_64 rng(std::hash<std::string>{}(c.name));
  auto ref = Reference(c, *built->node, Inputs(c, rng));
  ASSERT_TRUE(ref.ok()) << c.name << ": " << ref.status();
  EXPECT_EQ(ref->size(), built->node->num_outputs());
  EXPECT_TRUE(HasDeviceKernel(c.op) || !BuiltWithCuda()) << c.op << " has no CUDA kernel";
}

TEST_P(CudaKernelCase, MatchesCpu) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  const Case& c = GetParam();
  auto built = Build(c);
  ASSERT_TRUE(built.ok()) << c.name << ": " << built.status();
  // Two draws: the kernel must compute the same function on any valid input.
  for (uint64_t seed : {uint64_t{1}, uint64_t{2}}) {
    std::mt19937_64 rng(std::hash<std::string>{}(c.name) + seed);
    const std::vector<ir::Tensor> in = Inputs(c, rng);
    auto ref = Reference(c, *built->node, in);
    ASSERT_TRUE(ref.ok()) << ref.status();
    auto got = EvaluateNodeOnDevice(*built->node, in);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->size(), ref->size());
    for (size_t i = 0; i < ref->size(); ++i) {
      const std::string err = Compare((*got)[i], (*ref)[i], c.tolerance_scale);
      EXPECT_TRUE(err.empty()) << c.name << " output " << i << " (seed " << seed << "): " << err;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Table, CudaKernelCase, testing::ValuesIn(Cases()),
                         [](const testing::TestParamInfo<Case>& info) { return info.param.name; });

TEST(CudaKernelErrors, GatherIndexOutOfRangeIsAnError) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  Case c{"gather_bad", "gather", {T(DType::kF32, {4, 3}), T(DType::kI64, {2})},
         {{"axis", int64_t{0}}}};
  auto built = Build(c);
  ASSERT_TRUE(built.ok()) << built.status();
  std::vector<ir::Tensor> in = {ir::Tensor(DType::kF32, {4, 3}),
                                ir::Tensor::FromVector<int64_t>(DType::kI64, {2}, {1, 4})};
  auto got = EvaluateNodeOnDevice(*built->node, in);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("out of range"), std::string::npos) << got.status();
}

TEST(CudaKernelErrors, UnsupportedOpNamesTheNode) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  // Every op of the registry has a CUDA kernel but assign, which the executor carries out
  // itself (a copy into the parameter after the step). The host fallback is covered by
  // CudaE2e (e2e_test.cc).
  ASSERT_TRUE(HasDeviceKernel("dropout"));
  ASSERT_FALSE(HasDeviceKernel("assign"));
  Case c{"assign", "assign", {T(DType::kF32, {4, 5}), T(DType::kF32, {4, 5})}, {}, 0};
  auto built = Build(c);
  ASSERT_TRUE(built.ok()) << built.status();
  std::vector<ir::Tensor> in = {ir::Tensor(DType::kF32, {4, 5}), ir::Tensor(DType::kF32, {4, 5})};
  auto got = EvaluateNodeOnDevice(*built->node, in);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnimplemented) << got.status();
  EXPECT_NE(got.status().message().find("assign"), std::string::npos) << got.status();
}

TEST(CudaKernelErrors, LossLabelOutOfRangeIsAnError) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  Case c{"ce_bad", "softmax_ce_loss", {T(DType::kF32, {3, 4}), T(DType::kI64, {3})}, {}};
  auto built = Build(c);
  ASSERT_TRUE(built.ok()) << built.status();
  std::vector<ir::Tensor> in = {ir::Tensor(DType::kF32, {3, 4}),
                                ir::Tensor::FromVector<int64_t>(DType::kI64, {3}, {0, 4, 1})};
  auto got = EvaluateNodeOnDevice(*built->node, in);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("out of range"), std::string::npos) << got.status();
}

// Same inputs, same bits: gather_grad sums each row in index order (no float atomics), and
// layer_norm_grad's and reduce_sum's column sums use a fixed chunking.
TEST(CudaKernelDeterminism, GatherGradAndLayerNormGradAreBitwiseRepeatable) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  for (const Case& c : Cases()) {
    if (c.name != "gather_grad_repeats" && c.name != "gather_grad_chunks_repeats" &&
        c.name != "layer_norm_grad_many_rows" &&
        c.name != "reduce_sum_bias_grad_bf16" && c.name != "layer_norm_grad_rows_many_bf16") {
      continue;
    }
    auto built = Build(c);
    ASSERT_TRUE(built.ok()) << built.status();
    std::mt19937_64 rng(7);
    const std::vector<ir::Tensor> in = Inputs(c, rng);
    auto a = EvaluateNodeOnDevice(*built->node, in);
    auto b = EvaluateNodeOnDevice(*built->node, in);
    ASSERT_TRUE(a.ok() && b.ok()) << c.name;
    for (size_t i = 0; i < a->size(); ++i) {
      ASSERT_EQ((*a)[i].nbytes(), (*b)[i].nbytes());
      EXPECT_EQ(std::memcmp((*a)[i].data(), (*b)[i].data(), (*a)[i].nbytes()), 0)
          << c.name << " output " << i;
    }
  }
}

bool IsTensorCoreAttentionCase(const Case& c) {
  return c.name.rfind("attention_tc_", 0) == 0 || c.name.rfind("attention_grad_tc_", 0) == 0;
}

// The cases `take` selects through `options`, against the CPU reference (inputs seeded from the
// case name + `seed`); *seen counts them.
// `scale` > 0: that tolerance scale instead of the cases' own.
void ExpectCasesMatchCpu(const std::function<bool(const Case&)>& take,
                         const KernelOptions& options, uint64_t seed, int* seen,
                         Tuner* tuner = nullptr, double scale = 0) {
  for (const Case& c : Cases()) {
    if (!take(c)) continue;
    ++*seen;
    auto built = Build(c);
    ASSERT_TRUE(built.ok()) << built.status();
    std::mt19937_64 rng(std::hash<std::string>{}(c.name) + seed);
    const std::vector<ir::Tensor> in = Inputs(c, rng);
    auto ref = Reference(c, *built->node, in);
    ASSERT_TRUE(ref.ok()) << ref.status();
    auto got = EvaluateNodeOnDevice(*built->node, in, options, tuner);
    ASSERT_TRUE(got.ok()) << c.name << ": " << got.status();
    for (size_t i = 0; i < ref->size(); ++i) {
      EXPECT_EQ(Compare((*got)[i], (*ref)[i], scale > 0 ? scale : c.tolerance_scale), "")
          << c.name << " output " << i;
    }
  }
}

// The tensor-core cases again through the SIMT kernels (KernelOptions::attention_simt): the
// bypass computes the same function.
TEST(CudaKernelOptions, AttentionSimtBypassMatchesCpu) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  KernelOptions simt;
  simt.attention_simt = true;
  int seen = 0;
  ExpectCasesMatchCpu(IsTensorCoreAttentionCase, simt, 3, &seen);
  if (HasFatalFailure()) return;
  EXPECT_GT(seen, 0);
}

// linear_ce_loss in several row blocks with a tail block (KernelOptions::linear_ce_rows; the
// default blocks hold every row of these small cases): the same function.
TEST(CudaKernelOptions, LinearCeSmallRowBlocksMatchCpu) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  KernelOptions small;
  small.linear_ce_rows = 16;
  int seen = 0;
  ExpectCasesMatchCpu([](const Case& c) { return c.op == "linear_ce_loss"; }, small, 5, &seen);
  if (HasFatalFailure()) return;
  EXPECT_GE(seen, 3);
}

// linear_ce_loss of bf16 inputs with its logits in f32 (KernelOptions::linear_ce_f32_logits,
// the form before session 13): the bounds the cases had then (loss 8e-5; f32 gradients 1e-3,
// bf16 ones 2^-9 relative).
TEST(CudaKernelOptions, LinearCeF32LogitsMatchCpu) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  KernelOptions f32_logits;
  f32_logits.linear_ce_f32_logits = true;
  int seen = 0;
  ExpectCasesMatchCpu([](const Case& c) { return c.name == "linear_ce_loss_bf16"; }, f32_logits, 1,
                      &seen, nullptr, 4);
  ExpectCasesMatchCpu([](const Case& c) { return c.name == "linear_ce_loss_bf16_f32_grads"; },
                      f32_logits, 1, &seen, nullptr, 50);
  if (HasFatalFailure()) return;
  EXPECT_EQ(seen, 2);
}

#if PTC_HAVE_CUDA
// A tuner whose "timings" favour one candidate of every problem: `pick`, or the last one with
// pick < 0 (so the candidates other than the defaults are what runs). The launches still run.
class ScriptedTuner final : public Tuner {
 public:
  explicit ScriptedTuner(int pick) : Tuner(/*device=*/0, /*reps=*/1), pick_(pick) {}
  int timed = 0;

 protected:
  absl::StatusOr<double> TimeLaunch(const std::string&, int candidate, cudaStream_t,
                                    const std::function<absl::Status()>& launch) override {
    ++timed;
    PTC_RETURN_IF_ERROR(launch());
    if (pick_ < 0) return 100.0 / (1 + candidate);
    return candidate == pick_ ? 1.0 : 2.0;
  }

 private:
  int pick_;
};

bool IsTunableCase(const Case& c) {
  return c.op == "matmul" || c.op == "gemm" || c.op == "gemm_bgrad" || c.op == "fused_matmul" ||
         c.op == "linear_ce_loss" || c.op == "attention" || c.op == "attention_grad";
}

// Autotuning with every problem's last candidate chosen (cuBLASLt's last heuristic algorithm,
// the SIMT attention kernels where the tensor-core ones are the default, linear_ce_loss's
// larger row blocks, gemm_bgrad's column reduction, the direct product on unaligned rows): the
// same functions. linear_ce_loss in row blocks of 16 (or 32)
// accumulates dw over the blocks (beta 1, C = D): tuning restores dw from its snapshot before
// every candidate, so it is summed once.
TEST(CudaAutotune, LastCandidatesMatchCpu) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  ClearTuneCache();
  ScriptedTuner tuner(-1);
  KernelOptions options;
  options.autotune = true;
  int seen = 0;
  ExpectCasesMatchCpu(IsTunableCase, options, 11, &seen, &tuner);
  if (HasFatalFailure()) return;
  options.linear_ce_rows = 16;
  ExpectCasesMatchCpu([](const Case& c) { return c.op == "linear_ce_loss"; }, options, 12, &seen,
                      &tuner);
  if (HasFatalFailure()) return;
  EXPECT_GT(seen, 40);
  // Every problem chose its last candidate; the problems with a choice, by candidate list.
  std::map<std::vector<std::string>, int> lists;
  int gemm_choices = 0;
  for (const TuneRecord& r : tuner.records()) {
    ASSERT_FALSE(r.candidates.empty()) << r.key;
    EXPECT_EQ(r.chosen, static_cast<int>(r.candidates.size()) - 1) << r.key;
    if (r.candidates.size() < 2) continue;
    if (r.kind == "gemm") {
      ++gemm_choices;  // cuBLASLt's algorithms
    } else {
      ++lists[r.candidates];
    }
  }
  auto with = [&](std::vector<std::string> names) { return lists[names]; };
  EXPECT_GT(gemm_choices, 10) << tuner.Table();
  EXPECT_GT(with({"tc", "simt"}), 4) << tuner.Table();        // attention (grad)
  EXPECT_GE(with({"rows16", "rows32"}), 3) << tuner.Table();  // linear_ce_loss blocks
  EXPECT_GE(with({"epilogue", "reduce"}), 2) << tuner.Table();  // gemm_bgrad's db
  EXPECT_GE(with({"padded", "direct"}), 2) << tuner.Table();    // unaligned output rows
  std::printf("%s\n", tuner.Summary().c_str());
}

// A problem is timed once per process: a second tuner reuses the first one's choice (and the
// kernel gives the same bits). Under the emulation the choice is visible in the bits: its
// algorithms sum over k in 1..4 chunks.
TEST(CudaAutotune, ChoicesAreCachedPerProblem) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  ClearTuneCache();
  Case c{"matmul_k1021", "matmul", {T(DType::kF32, {24, 1021}), T(DType::kF32, {1021, 40})}};
  auto built = Build(c);
  ASSERT_TRUE(built.ok()) << built.status();
  std::mt19937_64 rng(5);
  const std::vector<ir::Tensor> in = Inputs(c, rng);
  KernelOptions options;
  options.autotune = true;
  ScriptedTuner first(-1);
  auto a = EvaluateNodeOnDevice(*built->node, in, options, &first);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(first.records().size(), 1u);
  const TuneRecord& r = first.records()[0];
  EXPECT_FALSE(r.reused);
  EXPECT_EQ(r.calls, 1);
  EXPECT_EQ(r.chosen, static_cast<int>(r.candidates.size()) - 1);
  EXPECT_EQ(first.timed, static_cast<int>(r.candidates.size()));  // reps 1 each
  ScriptedTuner second(0);
  auto b = EvaluateNodeOnDevice(*built->node, in, options, &second);
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(second.records().size(), 1u);
  EXPECT_TRUE(second.records()[0].reused);
  EXPECT_EQ(second.records()[0].chosen, r.chosen);
  EXPECT_EQ(second.timed, 0);
  EXPECT_EQ(std::memcmp((*a)[0].data(), (*b)[0].data(), (*a)[0].nbytes()), 0);
  // Without a tuner: cuBLASLt's first algorithm.
  auto plain = EvaluateNodeOnDevice(*built->node, in, options);
  ASSERT_TRUE(plain.ok()) << plain.status();
#if PTC_CUDA_EMU
  ASSERT_EQ(r.candidates.size(), 4u);
  EXPECT_NE(std::memcmp((*a)[0].data(), (*plain)[0].data(), (*a)[0].nbytes()), 0)
      << "the chosen algorithm (4 chunks over k) should round differently from the first";
#endif
  auto ref = Reference(c, *built->node, in);
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_EQ(Compare((*a)[0], (*ref)[0], 10), "");
  EXPECT_EQ(Compare((*plain)[0], (*ref)[0], 10), "");
}
#endif  // PTC_HAVE_CUDA

// gemm_bgrad through the plain GEMM and a column reduction (KernelOptions::bgrad_reduce, the
// fallback where cuBLASLt has no BGRAD algorithm): the same function as the epilogue.
TEST(CudaKernelOptions, GemmBgradReduceMatchesCpu) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  KernelOptions reduce;
  reduce.bgrad_reduce = true;
  int seen = 0;
  ExpectCasesMatchCpu([](const Case& c) { return c.op == "gemm_bgrad"; }, reduce, 7, &seen);
  if (HasFatalFailure()) return;
  EXPECT_GE(seen, 5);
}

// The GELU epilogues off (KernelOptions::gelu_pass, the path where cuBLASLt has no GELU_AUX /
// DGELU algorithm): the separate passes compute the same functions.
TEST(CudaKernelOptions, GeluPassMatchesCpu) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  KernelOptions pass;
  pass.gelu_pass = true;
  int seen = 0;
  ExpectCasesMatchCpu(
      [](const Case& c) {
        return c.op == "gemm_gelu_grad" ||
               (c.op == "fused_matmul" && c.name.find("gelu") != std::string::npos);
      },
      pass, 7, &seen);
  if (HasFatalFailure()) return;
  EXPECT_GE(seen, 10);
}

// attention_grad {saved_stats=1} reads the forward's output and log-sum-exp (attention's two
// outputs) instead of running the forward again: the same bits as the recomputing backward
// (the same forward kernel made them), on the tensor-core and the SIMT kernels.
TEST(CudaKernelOptions, SavedStatsBackwardMatchesRecomputing) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  const DType bf16 = DType::kBF16, f32 = DType::kF32;
  struct Config {
    DType dt;
    ir::Shape q;  // bthd
    bool simt;
  };
  for (const Config& cfg : {Config{bf16, {2, 100, 2, 64}, false}, Config{bf16, {2, 100, 2, 64}, true},
                            Config{f32, {1, 70, 3, 32}, false}}) {
    const ir::AttrMap attrs = {{"layout", std::string("bthd")}};
    const int64_t t = cfg.q[1];
    Case fwd{"fwd", "attention", {T(cfg.dt, cfg.q), T(cfg.dt, cfg.q), T(cfg.dt, cfg.q),
                                  T(DType::kBool, {t, t})}, attrs, 2};
    fwd.gens = {Gen::kNormal, Gen::kNormal, Gen::kNormal, Gen::kCausal};
    auto built_fwd = Build(fwd);
    ASSERT_TRUE(built_fwd.ok()) << built_fwd.status();
    std::mt19937_64 rng(7);
    const std::vector<ir::Tensor> in = Inputs(fwd, rng);
    KernelOptions options;
    options.attention_simt = cfg.simt;
    auto out = EvaluateNodeOnDevice(*built_fwd->node, in, options);
    ASSERT_TRUE(out.ok()) << out.status();
    Case grad{"grad", "attention_grad", {T(cfg.dt, cfg.q), T(cfg.dt, cfg.q), T(cfg.dt, cfg.q),
                                         T(cfg.dt, cfg.q), T(DType::kBool, {t, t})}, attrs, 3};
    auto built_grad = Build(grad);
    ASSERT_TRUE(built_grad.ok()) << built_grad.status();
    ir::Tensor dy = Random(T(cfg.dt, cfg.q), Gen::kNormal, 0, rng);
    std::vector<ir::Tensor> grad_in = {dy, in[0], in[1], in[2], in[3]};
    auto recomputed = EvaluateNodeOnDevice(*built_grad->node, grad_in, options);
    ASSERT_TRUE(recomputed.ok()) << recomputed.status();
    Case saved = grad;
    saved.inputs.push_back((*out)[0].type());
    saved.inputs.push_back((*out)[1].type());
    saved.attrs["saved_stats"] = int64_t{1};
    auto built_saved = Build(saved);
    ASSERT_TRUE(built_saved.ok()) << built_saved.status();
    grad_in.push_back((*out)[0]);
    grad_in.push_back((*out)[1]);
    auto got = EvaluateNodeOnDevice(*built_saved->node, grad_in, options);
    ASSERT_TRUE(got.ok()) << got.status();
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(Compare((*got)[i], (*recomputed)[i], 0), "")
          << ir::DTypeName(cfg.dt) << (cfg.simt ? " simt" : "") << " gradient " << i;
    }
  }
}

// The tensor-core backward has no atomics: same inputs, same bits.
TEST(CudaKernelDeterminism, TensorCoreAttentionGradIsBitwiseRepeatable) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  int seen = 0;
  for (const Case& c : Cases()) {
    if (!IsTensorCoreAttentionCase(c) || c.op != "attention_grad") continue;
    ++seen;
    auto built = Build(c);
    ASSERT_TRUE(built.ok()) << built.status();
    std::mt19937_64 rng(11);
    const std::vector<ir::Tensor> in = Inputs(c, rng);
    auto a = EvaluateNodeOnDevice(*built->node, in);
    auto b = EvaluateNodeOnDevice(*built->node, in);
    ASSERT_TRUE(a.ok() && b.ok()) << c.name;
    for (size_t i = 0; i < a->size(); ++i) {
      ASSERT_EQ((*a)[i].nbytes(), (*b)[i].nbytes());
      EXPECT_EQ(std::memcmp((*a)[i].data(), (*b)[i].data(), (*a)[i].nbytes()), 0)
          << c.name << " output " << i;
    }
  }
  EXPECT_GT(seen, 0);
}

#if PTC_HAVE_CUDA
// The fast paths of LaunchElementwise / LaunchWhere / LaunchCast / LaunchGeluGrad (16-byte
// accesses, rank-2 rows) against their general paths on the same inputs: the same bits. The
// general path is forced by an output pointer one element off the vector alignment (every fast
// path requires an aligned output).
namespace k = ::ptc::cuda::kernels;

class DeviceBytes {
 public:
  explicit DeviceBytes(size_t bytes) {
    ok_ = cudaMalloc(&p_, bytes + 64) == cudaSuccess;
    if (ok_) ok_ = cudaMemset(p_, 0xff, bytes + 64) == cudaSuccess;
  }
  ~DeviceBytes() { cudaFree(p_); }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  bool ok() const { return ok_; }
  char* get() const { return static_cast<char*>(p_); }

 private:
  void* p_ = nullptr;
  bool ok_ = false;
};

int Bytes(k::DT dt) {
  switch (dt) {
    case k::DT::kF16: case k::DT::kBF16: return 2;
    case k::DT::kF64: case k::DT::kI64: return 8;
    case k::DT::kI8: case k::DT::kU8: case k::DT::kBool: return 1;
    default: return 4;
  }
}

// n random values of dt (normal floats, small non-zero integers, 0/1 for bool) as bytes.
std::vector<char> RandomBytes(k::DT dt, int64_t n, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.f, 2.f);
  std::uniform_int_distribution<int> small(1, 9);
  std::vector<char> out(static_cast<size_t>(n) * Bytes(dt));
  for (int64_t i = 0; i < n; ++i) {
    char* p = out.data() + i * Bytes(dt);
    const float f = normal(rng);
    switch (dt) {
      case k::DT::kF32: std::memcpy(p, &f, 4); break;
      case k::DT::kF64: { const double v = f; std::memcpy(p, &v, 8); break; }
      case k::DT::kF16: { const __half h = __float2half_rn(f); std::memcpy(p, &h, 2); break; }
      case k::DT::kBF16: {
        const __nv_bfloat16 h = __float2bfloat16_rn(f);
        std::memcpy(p, &h, 2);
        break;
      }
      case k::DT::kI32: {
        const int32_t v = small(rng) * ((rng() & 1) ? 1 : -1);
        std::memcpy(p, &v, 4);
        break;
      }
      case k::DT::kBool: { const uint8_t v = rng() & 1; std::memcpy(p, &v, 1); break; }
      default: break;
    }
  }
  return out;
}

std::vector<char> Download(const char* p, size_t bytes) {
  std::vector<char> h(bytes);
  EXPECT_EQ(cudaMemcpy(h.data(), p, bytes, cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

// Operands of one launch: `count` elements each, uploaded once, 256-byte aligned.
struct Operands {
  std::vector<std::unique_ptr<DeviceBytes>> bufs;
  bool Add(k::DT dt, int64_t count, std::mt19937_64& rng) {
    const std::vector<char> h = RandomBytes(dt, count, rng);
    bufs.push_back(std::make_unique<DeviceBytes>(h.size()));
    return bufs.back()->ok() &&
           cudaMemcpy(bufs.back()->get(), h.data(), h.size(), cudaMemcpyHostToDevice) ==
               cudaSuccess;
  }
  const void* operator[](size_t i) const { return bufs[i]->get(); }
};

// Runs `launch(out)` into an aligned buffer and into one `shift` bytes off, and compares bytes.
template <typename Launch>
void ExpectSameBits(const std::string& what, size_t out_bytes, int shift, Launch launch) {
  DeviceBytes fast(out_bytes), general(out_bytes + shift);
  ASSERT_TRUE(fast.ok() && general.ok()) << what;
  ASSERT_EQ(launch(static_cast<void*>(fast.get())), cudaSuccess) << what;
  ASSERT_EQ(launch(static_cast<void*>(general.get() + shift)), cudaSuccess) << what;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
  const std::vector<char> a = Download(fast.get(), out_bytes);
  const std::vector<char> b = Download(general.get() + shift, out_bytes);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), out_bytes), 0) << what << ": fast and general differ";
  // The fast path wrote every byte (the buffers start as 0xff; a value of all-ones bytes is a
  // NaN / -1 that the random inputs cannot produce for every element).
  EXPECT_NE(a, std::vector<char>(out_bytes, static_cast<char>(0xff))) << what;
}

// The multi-tensor cast (the executor's batch of a step's weight casts) writes each tensor as
// its own LaunchCast does: tensors of 1, 3, 4096, 4099, 8192 and 70001 elements in one launch,
// every mixed-precision pair; an unaligned or oversized member is refused.
TEST(CudaFastPaths, CastBatchMatchesSingleCasts) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  const std::vector<int64_t> sizes = {1, 4099, 3, 8192, 70001, 4096};
  std::mt19937_64 rng(5);
  for (const auto& [from, to] : std::vector<std::pair<k::DT, k::DT>>{
           {k::DT::kF32, k::DT::kBF16}, {k::DT::kBF16, k::DT::kF32},
           {k::DT::kF32, k::DT::kF16}, {k::DT::kF16, k::DT::kF32}}) {
    const std::string what = absl::StrCat("cast ", static_cast<int>(from), "->",
                                          static_cast<int>(to));
    Operands in;
    std::vector<std::unique_ptr<DeviceBytes>> batched, single;
    k::CastTensors t;
    for (int64_t n : sizes) {
      ASSERT_TRUE(in.Add(from, n, rng)) << what;
      const size_t bytes = static_cast<size_t>(n) * Bytes(to);
      batched.push_back(std::make_unique<DeviceBytes>(bytes));
      single.push_back(std::make_unique<DeviceBytes>(bytes));
      ASSERT_TRUE(batched.back()->ok() && single.back()->ok()) << what;
      ASSERT_TRUE(k::CastBatchable(from, to, n, in[t.count], batched.back()->get())) << what;
      t.in[t.count] = in[t.count];
      t.out[t.count] = batched.back()->get();
      t.n[t.count] = n;
      ++t.count;
      ASSERT_EQ(k::LaunchCast(from, to, n, in[t.count - 1], single.back()->get(), nullptr),
                cudaSuccess) << what;
    }
    ASSERT_EQ(k::LaunchCastBatch(from, to, t, nullptr), cudaSuccess) << what;
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
    for (size_t i = 0; i < sizes.size(); ++i) {
      const size_t bytes = static_cast<size_t>(sizes[i]) * Bytes(to);
      EXPECT_EQ(Download(batched[i]->get(), bytes), Download(single[i]->get(), bytes))
          << what << " tensor " << i << " of " << sizes[i];
    }
    // 2 bytes off: not a member (the executor launches it alone).
    EXPECT_FALSE(k::CastBatchable(from, to, 8, static_cast<const char*>(in[0]) + 2,
                                  batched[0]->get()));
    k::CastTensors bad = t;
    bad.out[1] = batched[1]->get() + 2;
    EXPECT_EQ(k::LaunchCastBatch(from, to, bad, nullptr), cudaErrorInvalidValue) << what;
  }
}

TEST(CudaFastPaths, ElementwiseFastAndGeneralPathsGiveTheSameBits) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  struct Layout {
    std::string name;
    int64_t m, n;  // m == 0: flat, n elements
    int bcast;     // 0: b like a, 1: b a row [n], 2: b a column [m, 1], 3: b one value
  };
  const std::vector<Layout> layouts = {
      {"flat_4099", 0, 4099, 0},      {"flat_3000003", 0, 3000003, 0},
      {"flat_scalar", 0, 4099, 3},    {"bias_row_64x768", 64, 768, 1},
      {"bias_rows_3000x1000", 3000, 1000, 1}, {"column_48x256", 48, 256, 2}};
  const std::vector<std::pair<k::Op, const char*>> ops = {
      {k::Op::kAdd, "add"}, {k::Op::kMul, "mul"}, {k::Op::kDiv, "div"}, {k::Op::kMax, "max"},
      {k::Op::kLess, "less"}, {k::Op::kGelu, "gelu"}, {k::Op::kExp, "exp"},
      {k::Op::kSigmoid, "sigmoid"}, {k::Op::kNeg, "neg"}};
  std::mt19937_64 rng(11);
  for (k::DT dt : {k::DT::kF32, k::DT::kBF16, k::DT::kF16, k::DT::kF64, k::DT::kI32}) {
    for (const Layout& l : layouts) {
      const int64_t total = l.m ? l.m * l.n : l.n;
      const int64_t b_count = l.bcast == 0 ? total : l.bcast == 1 ? l.n : l.bcast == 2 ? l.m : 1;
      Operands in;
      ASSERT_TRUE(in.Add(dt, total, rng) && in.Add(dt, b_count, rng));
      k::BroadcastDesc d;
      d.n = total;
      if (l.m == 0) {
        d.rank = 1;
        d.shape[0] = l.n;
        d.strides[0][0] = 1;
        d.strides[1][0] = l.bcast == 0 ? 1 : 0;
      } else {
        d.rank = 2;
        d.shape[0] = l.m;
        d.shape[1] = l.n;
        d.strides[0][0] = l.n;
        d.strides[0][1] = 1;
        d.strides[1][0] = l.bcast == 2 ? 1 : 0;
        d.strides[1][1] = l.bcast == 1 ? 1 : 0;
      }
      for (const auto& [op, op_name] : ops) {
        const bool float_only = op == k::Op::kGelu || op == k::Op::kExp || op == k::Op::kSigmoid;
        if (dt == k::DT::kI32 && float_only) continue;
        const int out_bytes = k::IsComparison(op) ? 1 : Bytes(dt);
        ExpectSameBits(absl::StrCat(op_name, " ", static_cast<int>(dt), " ", l.name),
                       static_cast<size_t>(total) * out_bytes, out_bytes, [&](void* out) {
                         return k::LaunchElementwise(op, dt, d, in[0], in[1], out, nullptr);
                       });
      }
      // where over the same layout: cond like a, a like b's layout swapped in, b like a.
      Operands w;
      ASSERT_TRUE(w.Add(k::DT::kBool, total, rng) && w.Add(dt, b_count, rng) &&
                  w.Add(dt, total, rng));
      k::BroadcastDesc wd = d;
      for (int r = 0; r < d.rank; ++r) {
        wd.strides[0][r] = d.strides[0][r];
        wd.strides[1][r] = d.strides[1][r];
        wd.strides[2][r] = d.strides[0][r];
      }
      ExpectSameBits(absl::StrCat("where ", static_cast<int>(dt), " ", l.name),
                     static_cast<size_t>(total) * Bytes(dt), Bytes(dt), [&](void* out) {
                       return k::LaunchWhere(Bytes(dt), wd, w[0], w[1], w[2], out, nullptr);
                     });
    }
  }
  // Casts of the mixed-precision pairs, swiglu / swiglu_grad and gelu_grad (flat only).
  for (int64_t n : {int64_t{4099}, int64_t{3000003}}) {
    for (const auto& [from, to] : std::vector<std::pair<k::DT, k::DT>>{
             {k::DT::kF32, k::DT::kBF16}, {k::DT::kBF16, k::DT::kF32},
             {k::DT::kF32, k::DT::kF16}, {k::DT::kF16, k::DT::kF32}}) {
      Operands in;
      ASSERT_TRUE(in.Add(from, n, rng));
      ExpectSameBits(absl::StrCat("cast ", static_cast<int>(from), "->", static_cast<int>(to),
                                  " ", n),
                     static_cast<size_t>(n) * Bytes(to), Bytes(to), [&](void* out) {
                       return k::LaunchCast(from, to, n, in[0], out, nullptr);
                     });
    }
    // swiglu and swiglu_grad (each output of the gradient in turn misaligned).
    for (k::DT dt : {k::DT::kF32, k::DT::kBF16, k::DT::kF16}) {
      Operands in;
      ASSERT_TRUE(in.Add(dt, n, rng) && in.Add(dt, n, rng) && in.Add(dt, n, rng));
      const size_t bytes = static_cast<size_t>(n) * Bytes(dt);
      DeviceBytes other(bytes);
      ASSERT_TRUE(other.ok());
      for (int act : {0, 1, 2}) {  // silu, gelu_tanh, gelu (GeGLU)
        ExpectSameBits(absl::StrCat("swiglu ", act, " ", static_cast<int>(dt), " ", n), bytes,
                       Bytes(dt), [&](void* out) {
                         return k::LaunchSwiglu(dt, act, n, in[0], in[1], out, nullptr);
                       });
        for (int which = 0; which < 2; ++which) {
          ExpectSameBits(
              absl::StrCat("swiglu_grad ", act, " ", which, " ", static_cast<int>(dt), " ", n),
              bytes, Bytes(dt), [&](void* out) {
                void* dg = which == 0 ? out : static_cast<void*>(other.get());
                void* du = which == 1 ? out : static_cast<void*>(other.get());
                return k::LaunchSwigluGrad(dt, act, n, in[0], in[1], in[2], dg, du, nullptr);
              });
        }
      }
    }
    for (k::DT dt : {k::DT::kF32, k::DT::kBF16, k::DT::kF16}) {
      for (bool tanh_approx : {false, true}) {
        Operands in;
        ASSERT_TRUE(in.Add(dt, n, rng) && in.Add(dt, n, rng));
        ExpectSameBits(absl::StrCat("gelu_grad ", static_cast<int>(dt), " ", n),
                       static_cast<size_t>(n) * Bytes(dt), Bytes(dt), [&](void* out) {
                         return k::LaunchGeluGrad(dt, tanh_approx, n, in[0], in[1], out, nullptr);
                       });
      }
    }
  }
}
#endif  // PTC_HAVE_CUDA

}  // namespace
}  // namespace ptc::cuda
