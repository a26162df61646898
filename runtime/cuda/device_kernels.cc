// Node -> CUDA kernel: attribute validation and descriptor preparation for the launchers of
// codegen/cuda/kernels.h. GEMMs live in gemm.cc.
#include "runtime/cuda/device_kernels.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codegen/cpu/kernel.h"
#include "codegen/cuda/kernels.h"
#include "compiler/ir/dropout.h"
#include "compiler/ir/ops.h"
#include "compiler/ir/ops_fused.h"
#include "compiler/ir/strides.h"
#include "compiler/support/status.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/generated_kernels.h"

namespace ptc::cuda {
namespace {

namespace k = ::ptc::cuda::kernels;
using ir::DType;
using KernelOr = absl::StatusOr<std::unique_ptr<DeviceKernel>>;

absl::Status Unsupported(const ir::Node& node, std::string_view what) {
  return absl::UnimplementedError(
      absl::StrCat(node.Describe(), ": no CUDA kernel for ", std::string(what),
                   " (run with --target cpu, or enable the host fallback)"));
}
absl::Status Invalid(const ir::Node& node, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(node.Describe(), ": ", std::string(what)));
}

absl::Status LaunchStatus(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return CudaStatus(e, what, __FILE__, __LINE__);
}

k::DT ToDT(DType d) { return static_cast<k::DT>(static_cast<int>(d)); }
bool IsFloatType(DType d) { return ir::IsFloat(d); }

// Merges dims (ir::MergeDims); false when more than kMaxRank dims remain.
bool Simplify(ir::Shape& shape, const std::vector<std::vector<int64_t>*>& strides) {
  ir::MergeDims(shape, strides);
  return shape.size() <= static_cast<size_t>(k::kMaxRank);
}

absl::StatusOr<k::BroadcastDesc> MakeBroadcast(const ir::Node& node,
                                               const std::vector<ir::Shape>& ins,
                                               const ir::Shape& out) {
  ir::Shape shape = out;
  std::vector<std::vector<int64_t>> st(3, std::vector<int64_t>(out.size(), 0));
  for (size_t i = 0; i < ins.size(); ++i) {
    if (ins[i].size() > out.size()) return Invalid(node, "operand has more dims than the output");
    st[i] = ir::BroadcastStrides(ins[i], out);
  }
  if (!Simplify(shape, {&st[0], &st[1], &st[2]})) {
    return Unsupported(node, absl::StrCat("broadcasts over more than ", k::kMaxRank, " dims"));
  }
  k::BroadcastDesc d;
  d.rank = static_cast<int32_t>(shape.size());
  d.n = ir::NumElements(out);
  for (size_t i = 0; i < shape.size(); ++i) {
    d.shape[i] = shape[i];
    for (int j = 0; j < 3; ++j) d.strides[j][i] = st[j][i];
  }
  return d;
}

absl::StatusOr<k::CopyDesc> MakeCopy(const ir::Node& node, ir::Shape shape,
                                     std::vector<int64_t> in_strides,
                                     std::vector<int64_t> out_strides, int64_t in_offset,
                                     int64_t out_offset) {
  k::CopyDesc d;
  d.n = ir::NumElements(shape);
  if (!Simplify(shape, {&in_strides, &out_strides})) {
    return Unsupported(node, absl::StrCat("copies over more than ", k::kMaxRank, " dims"));
  }
  d.rank = static_cast<int32_t>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) {
    d.shape[i] = shape[i];
    d.in_strides[i] = in_strides[i];
    d.out_strides[i] = out_strides[i];
  }
  d.in_offset = in_offset;
  d.out_offset = out_offset;
  return d;
}

const std::map<std::string_view, k::Op>& ElementwiseOps() {
  static const auto* ops = new std::map<std::string_view, k::Op>{
      {"add", k::Op::kAdd}, {"sub", k::Op::kSub}, {"mul", k::Op::kMul}, {"div", k::Op::kDiv},
      {"pow", k::Op::kPow}, {"max", k::Op::kMax}, {"min", k::Op::kMin},
      {"equal", k::Op::kEqual}, {"less", k::Op::kLess}, {"greater", k::Op::kGreater},
      {"less_equal", k::Op::kLessEqual}, {"greater_equal", k::Op::kGreaterEqual},
      {"and", k::Op::kAnd}, {"or", k::Op::kOr}, {"xor", k::Op::kXor}, {"not", k::Op::kNot},
      {"neg", k::Op::kNeg}, {"abs", k::Op::kAbs}, {"sqrt", k::Op::kSqrt},
      {"reciprocal", k::Op::kReciprocal}, {"exp", k::Op::kExp}, {"log", k::Op::kLog},
      {"erf", k::Op::kErf}, {"tanh", k::Op::kTanh}, {"sigmoid", k::Op::kSigmoid},
      {"relu", k::Op::kRelu}, {"floor", k::Op::kFloor}, {"ceil", k::Op::kCeil},
      {"cos", k::Op::kCos}, {"sin", k::Op::kSin},
      {"gelu", k::Op::kGelu}, {"gelu_tanh", k::Op::kGeluTanh}, {"identity", k::Op::kIdentity},
  };
  return *ops;
}

bool IsFloatOnly(k::Op op) {
  switch (op) {
    case k::Op::kSqrt: case k::Op::kReciprocal: case k::Op::kExp: case k::Op::kLog:
    case k::Op::kErf: case k::Op::kTanh: case k::Op::kSigmoid: case k::Op::kGelu:
    case k::Op::kGeluTanh: case k::Op::kFloor: case k::Op::kCeil: case k::Op::kCos:
    case k::Op::kSin:
      return true;
    default:
      return false;
  }
}

// ---------------------------------------------------------------------------------------------

class ElementwiseKernel final : public DeviceKernel {
 public:
  ElementwiseKernel(k::Op op, k::DT dt, k::BroadcastDesc d) : op_(op), dt_(dt), d_(d) {}
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    return LaunchStatus(k::LaunchElementwise(op_, dt_, d_, in[0], in.size() > 1 ? in[1] : nullptr,
                                             out[0], ctx.stream),
                        "LaunchElementwise");
  }

 private:
  k::Op op_;
  k::DT dt_;
  k::BroadcastDesc d_;
};

KernelOr MakeElementwise(const ir::Node& node) {
  auto it = ElementwiseOps().find(node.op());
  k::Op op = it->second;
  if (node.op() == "gelu") {
    PTC_ASSIGN_OR_RETURN(std::string approx, node.GetString("approximate", "none"));
    if (approx == "tanh") {
      op = k::Op::kGeluTanh;
    } else if (approx != "none") {
      return Invalid(node, absl::StrCat("approximate must be \"none\" or \"tanh\", got \"",
                                        approx, "\""));
    }
  }
  const int arity = k::IsBinary(op) ? 2 : 1;
  if (static_cast<int>(node.num_inputs()) != arity || node.num_outputs() != 1) {
    return Invalid(node, absl::StrCat("expects ", arity, " inputs and one output"));
  }
  const DType dt = node.input(0)->type().dtype;
  for (const ir::Value* v : node.inputs()) {
    if (v->type().dtype != dt) return Invalid(node, "operands must share one dtype");
  }
  if (IsFloatOnly(op) && !IsFloatType(dt)) {
    return Unsupported(node, absl::StrCat("dtype ", std::string(ir::DTypeName(dt))));
  }
  std::vector<ir::Shape> shapes;
  for (const ir::Value* v : node.inputs()) shapes.push_back(v->type().shape);
  PTC_ASSIGN_OR_RETURN(k::BroadcastDesc d, MakeBroadcast(node, shapes, node.output()->type().shape));
  return std::unique_ptr<DeviceKernel>(new ElementwiseKernel(op, ToDT(dt), d));
}

class WhereKernel final : public DeviceKernel {
 public:
  WhereKernel(int bytes, k::BroadcastDesc d) : bytes_(bytes), d_(d) {}
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    return LaunchStatus(k::LaunchWhere(bytes_, d_, in[0], in[1], in[2], out[0], ctx.stream),
                        "LaunchWhere");
  }

 private:
  int bytes_;
  k::BroadcastDesc d_;
};

KernelOr MakeWhere(const ir::Node& node) {
  if (node.num_inputs() != 3) return Invalid(node, "where takes (cond, a, b)");
  if (node.input(0)->type().dtype != DType::kBool) return Invalid(node, "cond must be bool");
  if (node.input(1)->type().dtype != node.input(2)->type().dtype) {
    return Invalid(node, "a and b must share one dtype");
  }
  PTC_ASSIGN_OR_RETURN(
      k::BroadcastDesc d,
      MakeBroadcast(node, {node.input(0)->type().shape, node.input(1)->type().shape,
                           node.input(2)->type().shape},
                    node.output()->type().shape));
  return std::unique_ptr<DeviceKernel>(
      new WhereKernel(static_cast<int>(ir::DTypeSize(node.output()->type().dtype)), d));
}

// Casts of one mixed-precision pair (f32 <-> f16 / bf16) scheduled back to back (a --precision
// step's weight casts: their runs before each layer) are batched by the executor into
// multi-tensor launches (k::LaunchCastBatch).
class CastKernel final : public DeviceKernel {
 public:
  CastKernel(k::DT from, k::DT to, int64_t n) : from_(from), to_(to), n_(n) {}
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    return LaunchStatus(k::LaunchCast(from_, to_, n_, in[0], out[0], ctx.stream), "LaunchCast");
  }
  std::string BatchKey(absl::Span<const void* const> in) const override {
    // (The output's alignment is checked at the launch: an unaligned member runs alone.)
    if (!k::CastBatchable(from_, to_, n_, in[0], in[0])) return std::string();
    return absl::StrCat("cast ", static_cast<int>(from_), " ", static_cast<int>(to_));
  }
  absl::Status LaunchBatch(const LaunchContext& ctx, const std::vector<BatchItem>& items) override {
    k::CastTensors t;
    auto flush = [&]() -> absl::Status {
      if (t.count == 0) return absl::OkStatus();
      const cudaError_t e = k::LaunchCastBatch(from_, to_, t, ctx.stream);
      t = k::CastTensors();
      return LaunchStatus(e, "LaunchCastBatch");
    };
    for (const BatchItem& it : items) {
      const int64_t n = static_cast<const CastKernel*>(it.kernel)->n_;
      if (!k::CastBatchable(from_, to_, n, it.inputs[0], it.outputs[0])) {
        PTC_RETURN_IF_ERROR(it.kernel->Launch(ctx, it.inputs, it.outputs, nullptr));
        continue;
      }
      t.in[t.count] = it.inputs[0];
      t.out[t.count] = it.outputs[0];
      t.n[t.count] = n;
      if (++t.count == k::kMaxCastTensors) PTC_RETURN_IF_ERROR(flush());
    }
    return flush();
  }

 private:
  k::DT from_, to_;
  int64_t n_;
};

// reshape / identity / expand-free copies: a device-to-device copy (skipped when aliased).
class CopyKernel final : public DeviceKernel {
 public:
  explicit CopyKernel(size_t bytes) : bytes_(bytes) {}
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    if (in[0] == out[0] || bytes_ == 0) return absl::OkStatus();
    PTC_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(out[0], in[0], bytes_, cudaMemcpyDeviceToDevice, ctx.stream));
    return absl::OkStatus();
  }

 private:
  size_t bytes_;
};

// transpose / slice / expand (one copy), concat (one per input), split (one per output).
class StridedCopyKernel final : public DeviceKernel {
 public:
  enum class Mode { kOne, kPerInput, kPerOutput };
  StridedCopyKernel(Mode mode, int bytes, std::vector<k::CopyDesc> descs)
      : mode_(mode), bytes_(bytes), descs_(std::move(descs)) {}
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    for (size_t i = 0; i < descs_.size(); ++i) {
      const void* src = mode_ == Mode::kPerInput ? in[i] : in[0];
      void* dst = mode_ == Mode::kPerOutput ? out[i] : out[0];
      PTC_RETURN_IF_ERROR(LaunchStatus(k::LaunchStridedCopy(bytes_, descs_[i], src, dst,
                                                            ctx.stream),
                                       "LaunchStridedCopy"));
    }
    return absl::OkStatus();
  }

 private:
  Mode mode_;
  int bytes_;
  std::vector<k::CopyDesc> descs_;
};

KernelOr MakeTranspose(const ir::Node& node) {
  const ir::Shape& in = node.input(0)->type().shape;
  const int r = static_cast<int>(in.size());
  std::vector<int64_t> perm(r);
  for (int i = 0; i < r; ++i) perm[i] = r - 1 - i;
  if (node.has_attr("perm")) {
    PTC_ASSIGN_OR_RETURN(perm, node.GetInts("perm"));
  }
  if (static_cast<int>(perm.size()) != r) return Invalid(node, "perm must list every axis");
  const std::vector<int64_t> cs = ir::ContiguousStrides(in);
  ir::Shape out_shape(r);
  std::vector<int64_t> in_strides(r);
  std::vector<bool> seen(r, false);
  for (int d = 0; d < r; ++d) {
    if (perm[d] < 0 || perm[d] >= r || seen[perm[d]]) return Invalid(node, "perm is not a permutation");
    seen[perm[d]] = true;
    out_shape[d] = in[perm[d]];
    in_strides[d] = cs[perm[d]];
  }
  PTC_ASSIGN_OR_RETURN(k::CopyDesc d, MakeCopy(node, out_shape, in_strides,
                                               ir::ContiguousStrides(out_shape), 0, 0));
  return std::unique_ptr<DeviceKernel>(new StridedCopyKernel(
      StridedCopyKernel::Mode::kOne, static_cast<int>(ir::DTypeSize(node.output()->type().dtype)),
      {d}));
}

KernelOr MakeSlice(const ir::Node& node) {
  const ir::Shape& in = node.input(0)->type().shape;
  const size_t r = in.size();
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> starts, node.GetInts("starts"));
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> steps,
                       node.GetInts("steps", std::vector<int64_t>(r, 1)));
  const ir::Shape& out = node.output()->type().shape;
  if (starts.size() != r || steps.size() != r || out.size() != r) {
    return Invalid(node, "starts / steps must have one entry per axis");
  }
  const std::vector<int64_t> cs = ir::ContiguousStrides(in);
  std::vector<int64_t> in_strides(r);
  int64_t offset = 0;
  for (size_t d = 0; d < r; ++d) {
    if (steps[d] == 0) return Invalid(node, "slice step 0");
    if (out[d] > 0 && (starts[d] < 0 || starts[d] >= in[d] ||
                       starts[d] + (out[d] - 1) * steps[d] < 0 ||
                       starts[d] + (out[d] - 1) * steps[d] >= in[d])) {
      return Invalid(node, absl::StrCat("slice on axis ", d, " reads outside ",
                                        node.input(0)->type().ToString()));
    }
    in_strides[d] = cs[d] * steps[d];
    if (out[d] > 0) offset += starts[d] * cs[d];
  }
  PTC_ASSIGN_OR_RETURN(k::CopyDesc d,
                       MakeCopy(node, out, in_strides, ir::ContiguousStrides(out), offset, 0));
  return std::unique_ptr<DeviceKernel>(new StridedCopyKernel(
      StridedCopyKernel::Mode::kOne, static_cast<int>(ir::DTypeSize(node.output()->type().dtype)),
      {d}));
}

KernelOr MakeExpand(const ir::Node& node) {
  const ir::Shape& out = node.output()->type().shape;
  const ir::Shape& in = node.input(0)->type().shape;
  if (in.size() > out.size()) return Invalid(node, "expand cannot drop dims");
  PTC_ASSIGN_OR_RETURN(k::CopyDesc d, MakeCopy(node, out, ir::BroadcastStrides(in, out),
                                               ir::ContiguousStrides(out), 0, 0));
  return std::unique_ptr<DeviceKernel>(new StridedCopyKernel(
      StridedCopyKernel::Mode::kOne, static_cast<int>(ir::DTypeSize(node.output()->type().dtype)),
      {d}));
}

KernelOr MakeConcat(const ir::Node& node) {
  const ir::Shape& out = node.output()->type().shape;
  PTC_ASSIGN_OR_RETURN(int64_t axis, node.GetInt("axis"));
  if (axis < 0) axis += static_cast<int64_t>(out.size());
  if (axis < 0 || axis >= static_cast<int64_t>(out.size())) return Invalid(node, "bad axis");
  const std::vector<int64_t> os = ir::ContiguousStrides(out);
  std::vector<k::CopyDesc> descs;
  int64_t pos = 0;
  for (const ir::Value* v : node.inputs()) {
    const ir::Shape& s = v->type().shape;
    PTC_ASSIGN_OR_RETURN(k::CopyDesc d,
                         MakeCopy(node, s, ir::ContiguousStrides(s), os, 0, pos * os[axis]));
    descs.push_back(d);
    pos += s[axis];
  }
  if (pos != out[axis]) return Invalid(node, "inputs do not add up to the output along axis");
  return std::unique_ptr<DeviceKernel>(new StridedCopyKernel(
      StridedCopyKernel::Mode::kPerInput,
      static_cast<int>(ir::DTypeSize(node.output()->type().dtype)), std::move(descs)));
}

KernelOr MakeSplit(const ir::Node& node) {
  const ir::Shape& in = node.input(0)->type().shape;
  PTC_ASSIGN_OR_RETURN(int64_t axis, node.GetInt("axis", 0));
  if (axis < 0) axis += static_cast<int64_t>(in.size());
  if (axis < 0 || axis >= static_cast<int64_t>(in.size())) return Invalid(node, "bad axis");
  const std::vector<int64_t> is = ir::ContiguousStrides(in);
  std::vector<k::CopyDesc> descs;
  int64_t pos = 0;
  for (const ir::Value* v : node.outputs()) {
    const ir::Shape& s = v->type().shape;
    PTC_ASSIGN_OR_RETURN(k::CopyDesc d,
                         MakeCopy(node, s, is, ir::ContiguousStrides(s), pos * is[axis], 0));
    descs.push_back(d);
    pos += s[axis];
  }
  if (pos > in[axis]) return Invalid(node, "outputs exceed the input along axis");
  return std::unique_ptr<DeviceKernel>(new StridedCopyKernel(
      StridedCopyKernel::Mode::kPerOutput,
      static_cast<int>(ir::DTypeSize(node.input(0)->type().dtype)), std::move(descs)));
}

class GatherKernel final : public DeviceKernel {
 public:
  GatherKernel(int bytes, int64_t outer, int64_t axis_dim, int64_t num, int64_t inner, bool i64)
      : bytes_(bytes), outer_(outer), axis_dim_(axis_dim), num_(num), inner_(inner), i64_(i64) {}
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    return LaunchStatus(k::LaunchGather(bytes_, outer_, axis_dim_, num_, inner_, in[0], in[1],
                                        i64_, out[0], ctx.error_flag, ctx.error_code, ctx.stream),
                        "LaunchGather");
  }

 private:
  int bytes_;
  int64_t outer_, axis_dim_, num_, inner_;
  bool i64_;
};

KernelOr MakeGather(const ir::Node& node) {
  const ir::TensorType& data = node.input(0)->type();
  const ir::TensorType& idx = node.input(1)->type();
  if (idx.dtype != DType::kI32 && idx.dtype != DType::kI64) {
    return Invalid(node, "indices must be i32 or i64");
  }
  PTC_ASSIGN_OR_RETURN(int64_t axis, node.GetInt("axis", 0));
  if (axis < 0) axis += data.rank();
  if (axis < 0 || axis >= data.rank()) return Invalid(node, "bad axis");
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= data.shape[i];
  for (int64_t i = axis + 1; i < data.rank(); ++i) inner *= data.shape[i];
  return std::unique_ptr<DeviceKernel>(new GatherKernel(
      static_cast<int>(ir::DTypeSize(data.dtype)), outer, data.shape[axis], idx.num_elements(),
      inner, idx.dtype == DType::kI64));
}

// kv_cache_write (compiler/ir/ops_decode.cc): the new position's keys / values written into
// the cache; in place when the memory plan gives the output the cache's buffer.
class KvCacheWriteKernel final : public DeviceKernel {
 public:
  KvCacheWriteKernel(int64_t outer, int64_t rows, int64_t inner_bytes)
      : outer_(outer), rows_(rows), inner_bytes_(inner_bytes) {}
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    return LaunchStatus(k::LaunchKvCacheWrite(outer_, rows_, inner_bytes_, in[0], in[1], in[2],
                                              out[0], ctx.error_flag, ctx.error_code,
                                              ctx.stream),
                        "LaunchKvCacheWrite");
  }

 private:
  int64_t outer_, rows_, inner_bytes_;
};

KernelOr MakeKvCacheWrite(const ir::Node& node) {
  if (node.num_inputs() != 3 || node.num_outputs() != 1) {
    return Invalid(node, "kv_cache_write takes (cache, update, pos) and has one output");
  }
  const ir::TensorType& cache = node.input(0)->type();
  const ir::TensorType& update = node.input(1)->type();
  const ir::TensorType& pos = node.input(2)->type();
  PTC_ASSIGN_OR_RETURN(int64_t axis, node.GetInt("axis"));
  if (axis < 0 || axis >= cache.rank() || update.dtype != cache.dtype ||
      update.rank() != cache.rank() || update.shape[axis] != 1 ||
      node.output()->type() != cache || pos.dtype != DType::kI64 || pos.num_elements() != 1) {
    return Invalid(node, absl::StrCat("bad types: cache ", cache.ToString(), ", update ",
                                      update.ToString(), ", pos ", pos.ToString(), ", axis ",
                                      axis));
  }
  int64_t outer = 1, inner_bytes = static_cast<int64_t>(ir::DTypeSize(cache.dtype));
  for (int64_t i = 0; i < axis; ++i) outer *= cache.shape[i];
  for (int64_t i = axis + 1; i < cache.rank(); ++i) inner_bytes *= cache.shape[i];
  return std::unique_ptr<DeviceKernel>(
      new KvCacheWriteKernel(outer, cache.shape[axis], inner_bytes));
}

class SoftmaxKernel final : public DeviceKernel {
 public:
  SoftmaxKernel(k::DT dt, int64_t outer, int64_t n, int64_t inner, bool log)
      : dt_(dt), outer_(outer), n_(n), inner_(inner), log_(log) {}
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    return LaunchStatus(k::LaunchSoftmax(dt_, outer_, n_, inner_, log_, in[0], out[0], ctx.stream),
                        "LaunchSoftmax");
  }

 private:
  k::DT dt_;
  int64_t outer_, n_, inner_;
  bool log_;
};

KernelOr MakeSoftmax(const ir::Node& node) {
  const ir::TensorType& t = node.input(0)->type();
  if (!IsFloatType(t.dtype)) return Unsupported(node, absl::StrCat("dtype ", t.ToString()));
  PTC_ASSIGN_OR_RETURN(int64_t axis, node.GetInt("axis", -1));
  if (axis < 0) axis += t.rank();
  if (t.rank() == 0) axis = 0;
  if (axis < 0 || (t.rank() > 0 && axis >= t.rank())) return Invalid(node, "bad axis");
  int64_t outer = 1, inner = 1, n = t.rank() ? t.shape[axis] : 1;
  for (int64_t i = 0; i < axis; ++i) outer *= t.shape[i];
  for (int64_t i = axis + 1; i < t.rank(); ++i) inner *= t.shape[i];
  return std::unique_ptr<DeviceKernel>(
      new SoftmaxKernel(ToDT(t.dtype), outer, n, inner, node.op() == "log_softmax"));
}

class LayerNormKernel final : public DeviceKernel {
 public:
  LayerNormKernel(k::DT dt, k::DT out_dt, int64_t rows, int64_t d, double eps, bool rms,
                  bool scale_bcast, bool has_bias, bool bias_bcast)
      : dt_(dt), out_dt_(out_dt), rows_(rows), d_(d), eps_(eps), rms_(rms),
        scale_bcast_(scale_bcast), has_bias_(has_bias), bias_bcast_(bias_bcast) {}
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    return LaunchStatus(
        k::LaunchLayerNorm(dt_, out_dt_, rows_, d_, eps_, rms_, in[0], in[1], scale_bcast_,
                           has_bias_ ? in[2] : nullptr, bias_bcast_, out[0],
                           out.size() > 1 ? static_cast<float*>(out[1]) : nullptr,
                           out.size() > 2 ? static_cast<float*>(out[2]) : nullptr, ctx.stream),
        "LaunchLayerNorm");
  }

 private:
  k::DT dt_, out_dt_;
  int64_t rows_, d_;
  double eps_;
  bool rms_, scale_bcast_, has_bias_, bias_bcast_;
};

KernelOr MakeLayerNorm(const ir::Node& node) {
  if (node.num_inputs() < 2 || node.num_inputs() > 3 || node.num_outputs() > 3) {
    return Invalid(node, "layer_norm takes (x, scale [, bias]) -> (y [, mean [, inv_std_dev]])");
  }
  const ir::TensorType& t = node.input(0)->type();
  if (!IsFloatType(t.dtype)) return Unsupported(node, absl::StrCat("dtype ", t.ToString()));
  PTC_ASSIGN_OR_RETURN(int64_t axis, node.GetInt("axis", -1));
  if (axis < 0) axis += t.rank();
  if (axis < 0 || axis > t.rank()) return Invalid(node, "bad axis");
  PTC_ASSIGN_OR_RETURN(double eps, node.GetFloat("epsilon", 1e-5));
  PTC_ASSIGN_OR_RETURN(int64_t rms, node.GetInt("rms", 0));
  int64_t rows = 1, d = 1;
  for (int64_t i = 0; i < axis; ++i) rows *= t.shape[i];
  for (int64_t i = axis; i < t.rank(); ++i) d *= t.shape[i];
  const ir::TensorType& s = node.input(1)->type();
  if (s.dtype != t.dtype || (s.num_elements() != d && s.num_elements() != 1)) {
    return Invalid(node, absl::StrCat("scale ", s.ToString(), " must have the normalized shape of ",
                                      t.ToString()));
  }
  bool has_bias = node.num_inputs() == 3, bias_bcast = false;
  if (has_bias && rms != 0) return Invalid(node, "an RMS norm (rms=1) has no bias");
  if (has_bias) {
    const ir::TensorType& b = node.input(2)->type();
    if (b.dtype != t.dtype || (b.num_elements() != d && b.num_elements() != 1)) {
      return Invalid(node, absl::StrCat("bias ", b.ToString(),
                                        " must have the normalized shape of ", t.ToString()));
    }
    bias_bcast = b.num_elements() != d;
  }
  for (size_t i = 1; i < node.num_outputs(); ++i) {
    const ir::TensorType& o = node.output(i)->type();
    if (o.dtype != DType::kF32 || o.num_elements() != rows) {
      return Invalid(node, absl::StrCat("output ", i, " must be f32 with one element per row"));
    }
  }
  // y: x's dtype, or f16 / bf16 from an f32 x ({dtype}, fold-norm-casts).
  const DType y = node.output(0)->type().dtype;
  if (y != t.dtype && !(t.dtype == DType::kF32 && ir::IsHalfFloat(y))) {
    return Invalid(node, absl::StrCat("y ", node.output(0)->type().ToString(),
                                      " must have x's dtype, or f16 / bf16 for an f32 x"));
  }
  return std::unique_ptr<DeviceKernel>(new LayerNormKernel(
      ToDT(t.dtype), ToDT(y), rows, d, eps, rms != 0, s.num_elements() != d, has_bias,
      bias_bcast));
}

class ReduceKernel final : public DeviceKernel {
 public:
  ReduceKernel(k::DT dt, k::ReduceKind kind, k::ReduceDesc d) : dt_(dt), kind_(kind), d_(d) {}
  size_t WorkspaceBytes() const override { return k::ReduceWorkspaceBytes(dt_, d_); }
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void* workspace) override {
    return LaunchStatus(k::LaunchReduce(dt_, kind_, d_, in[0], out[0], workspace, ctx.stream),
                        "LaunchReduce");
  }

 private:
  k::DT dt_;
  k::ReduceKind kind_;
  k::ReduceDesc d_;
};

KernelOr MakeReduce(const ir::Node& node) {
  const ir::TensorType& t = node.input(0)->type();
  if (!IsFloatType(t.dtype) && t.dtype != DType::kI32 && t.dtype != DType::kI64) {
    return Unsupported(node, absl::StrCat("dtype ", t.ToString()));
  }
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> axes,
                       node.GetInts("axes", std::vector<int64_t>{}));
  std::vector<bool> reduced(t.rank(), axes.empty());
  for (int64_t a : axes) {
    if (a < 0) a += t.rank();
    if (a < 0 || a >= t.rank()) return Invalid(node, "axis out of range");
    reduced[a] = true;
  }
  const std::vector<int64_t> cs = ir::ContiguousStrides(t.shape);
  k::ReduceDesc d;
  d.out_n = node.output()->type().num_elements();
  d.count = 1;
  for (int i = 0; i < t.rank(); ++i) {
    if (t.shape[i] == 1) continue;
    if (reduced[i]) {
      if (d.red_rank == k::kMaxRank) return Unsupported(node, "more than 8 reduced dims");
      d.red_shape[d.red_rank] = t.shape[i];
      d.red_strides[d.red_rank++] = cs[i];
      d.count *= t.shape[i];
    } else {
      if (d.kept_rank == k::kMaxRank) return Unsupported(node, "more than 8 kept dims");
      d.kept_shape[d.kept_rank] = t.shape[i];
      d.kept_strides[d.kept_rank++] = cs[i];
    }
  }
  if (t.num_elements() == 0) d.count = 0;
  static const std::map<std::string_view, k::ReduceKind> kinds = {
      {"reduce_sum", k::ReduceKind::kSum}, {"reduce_mean", k::ReduceKind::kMean},
      {"reduce_max", k::ReduceKind::kMax}, {"reduce_min", k::ReduceKind::kMin}};
  return std::unique_ptr<DeviceKernel>(
      new ReduceKernel(ToDT(t.dtype), kinds.at(node.op()), d));
}

class TriluKernel final : public DeviceKernel {
 public:
  TriluKernel(int bytes, int64_t batch, int64_t rows, int64_t cols, bool upper, int64_t k)
      : bytes_(bytes), batch_(batch), rows_(rows), cols_(cols), upper_(upper), k_(k) {}
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    return LaunchStatus(
        k::LaunchTrilu(bytes_, batch_, rows_, cols_, upper_, k_, in[0], out[0], ctx.stream),
        "LaunchTrilu");
  }

 private:
  int bytes_;
  int64_t batch_, rows_, cols_;
  bool upper_;
  int64_t k_;
};

KernelOr MakeTrilu(const ir::Node& node) {
  const ir::TensorType& t = node.input(0)->type();
  if (t.rank() < 2) return Invalid(node, "trilu needs rank >= 2");
  PTC_ASSIGN_OR_RETURN(int64_t upper, node.GetInt("upper", 1));
  PTC_ASSIGN_OR_RETURN(int64_t kk, node.GetInt("k", 0));
  const int64_t rows = t.shape[t.rank() - 2], cols = t.shape[t.rank() - 1];
  const int64_t batch = (rows * cols != 0) ? t.num_elements() / (rows * cols) : 0;
  return std::unique_ptr<DeviceKernel>(new TriluKernel(
      static_cast<int>(ir::DTypeSize(t.dtype)), batch, rows, cols, upper != 0, kk));
}

// fused_elementwise through the RPN interpreter (when the plan has no generated kernel for the
// node, see generated_kernels.h): the descriptor lives in device memory for the kernel's
// lifetime.
class FusedKernel final : public DeviceKernel {
 public:
  FusedKernel(k::DT dt, int64_t n, DeviceBuffer desc) : dt_(dt), n_(n), desc_(std::move(desc)) {}
  size_t ResidentBytes() const override { return desc_.bytes(); }
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    k::FusedOperands ops{};
    for (size_t i = 0; i < in.size(); ++i) ops.ptr[i] = in[i];
    return LaunchStatus(k::LaunchFused(dt_, reinterpret_cast<const k::FusedDesc*>(desc_.get()),
                                       ops, n_, out[0], ctx.stream),
                        "LaunchFused");
  }

 private:
  k::DT dt_;
  int64_t n_;
  DeviceBuffer desc_;
};

KernelOr MakeFused(const ir::Node& node) {
  const DType dt = node.output()->type().dtype;
  if (!IsFloatType(dt)) return Unsupported(node, absl::StrCat("dtype ", std::string(ir::DTypeName(dt))));
  if (node.num_inputs() > static_cast<size_t>(k::kMaxFusedOperands)) {
    return Unsupported(node, absl::StrCat("more than ", k::kMaxFusedOperands, " operands"));
  }
  PTC_ASSIGN_OR_RETURN(ir::FusedProgram program, ir::ParseFusedProgram(node));
  if (program.constants.size() > static_cast<size_t>(k::kMaxFusedConstants) ||
      program.tokens.size() > static_cast<size_t>(k::kMaxFusedProgram) ||
      program.dropouts.size() > static_cast<size_t>(k::kMaxFusedDropouts)) {
    return Unsupported(node, absl::StrCat("a program this long (more than ", k::kMaxFusedProgram,
                                          " tokens, ", k::kMaxFusedConstants, " constants or ",
                                          k::kMaxFusedDropouts, " dropouts)"));
  }
  if (program.max_depth > k::kMaxFusedStack) {
    return Unsupported(node, absl::StrCat("a program deeper than ", k::kMaxFusedStack));
  }
  auto d = std::make_unique<k::FusedDesc>();
  const ir::Shape& out = node.output()->type().shape;
  // Broadcast strides per operand, merged over the output dims.
  ir::Shape shape = out;
  std::vector<std::vector<int64_t>> st(node.num_inputs());
  std::vector<std::vector<int64_t>*> stp;
  for (size_t i = 0; i < node.num_inputs(); ++i) {
    const DType odt = node.input(i)->type().dtype;
    d->operand_dt[i] = static_cast<int32_t>(ToDT(odt));
    if (program.counter[i]) continue;  // a dropout counter: one integer, read by the kernel
    if (odt != dt && (!IsFloatType(odt) || (odt == DType::kF64) != (dt == DType::kF64))) {
      return Invalid(node, "operands must be f16 / bf16 / f32 (f64 only with an f64 result)");
    }
    if (node.input(i)->type().rank() > static_cast<int>(out.size())) {
      return Invalid(node, "operand has more dims than the output");
    }
    st[i] = ir::BroadcastStrides(node.input(i)->type().shape, out);
    stp.push_back(&st[i]);
  }
  if (!Simplify(shape, stp)) return Unsupported(node, "broadcasts over more than 8 dims");
  d->rank = static_cast<int32_t>(shape.size());
  d->num_operands = static_cast<int32_t>(node.num_inputs());
  d->n = ir::NumElements(out);
  for (size_t k = 0; k < shape.size(); ++k) {
    d->shape[k] = shape[k];
    for (size_t i = 0; i < node.num_inputs(); ++i) {
      d->strides[i][k] = program.counter[i] ? 0 : st[i][k];
    }
  }
  for (size_t t = 0; t < program.tokens.size(); ++t) {
    const ir::FusedToken& tok = program.tokens[t];
    k::FusedToken ft{};
    ft.index = static_cast<int16_t>(tok.index);
    switch (tok.kind) {
      case ir::FusedToken::kOperand: ft.kind = 0; break;
      case ir::FusedToken::kConstant: ft.kind = 1; break;
      case ir::FusedToken::kDropout: ft.kind = 3; break;
      case ir::FusedToken::kOp: {
        k::Op op;
        if (tok.op == "gelu_tanh") {
          op = k::Op::kGeluTanh;
        } else {
          auto it = ElementwiseOps().find(tok.op);
          if (it == ElementwiseOps().end() ||
              (it->second > k::Op::kMin && it->second < k::Op::kNeg)) {
            return Invalid(node, absl::StrCat("unknown program token \"", tok.op, "\""));
          }
          op = it->second;
        }
        ft.kind = 2;
        ft.index = static_cast<int16_t>(op);
        break;
      }
    }
    d->program[t] = ft;
  }
  d->program_size = static_cast<int32_t>(program.tokens.size());
  for (size_t i = 0; i < program.constants.size(); ++i) d->constants[i] = program.constants[i];
  d->num_dropouts = static_cast<int32_t>(program.dropouts.size());
  for (size_t k = 0; k < program.dropouts.size(); ++k) {
    const ir::FusedDropout& dr = program.dropouts[k];
    d->dropout_counter[k] = dr.counter;
    d->dropout_counter_i32[k] =
        dr.counter >= 0 && node.input(dr.counter)->type().dtype == DType::kI32;
    d->dropout_seed[k] = dr.seed;
    d->dropout_threshold[k] = ir::DropoutThreshold(dr.ratio);
    d->dropout_scale[k] = ir::DropoutScale(dr.ratio);
  }
  DeviceBuffer buf;
  PTC_RETURN_IF_ERROR(buf.Allocate(sizeof(k::FusedDesc), "a fused_elementwise descriptor"));
  PTC_CUDA_RETURN_IF_ERROR(cudaMemcpy(buf.get(), d.get(), sizeof(k::FusedDesc),
                                      cudaMemcpyHostToDevice));
  return std::unique_ptr<DeviceKernel>(new FusedKernel(ToDT(dt), d->n, std::move(buf)));
}

// Any op with a CPU kernel: host copies in, CPU kernel, copy back (synchronizes the stream).
class HostFallbackKernel final : public DeviceKernel {
 public:
  HostFallbackKernel(const ir::Node& node, std::unique_ptr<cpu::Kernel> kernel)
      : node_(node), kernel_(std::move(kernel)) {
    for (const ir::Value* v : node.inputs()) in_.emplace_back(v->type().dtype, v->type().shape);
    for (const ir::Value* v : node.outputs()) out_.emplace_back(v->type().dtype, v->type().shape);
    workspace_.resize(kernel_->WorkspaceBytes());
  }
  bool host_fallback() const override { return true; }
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    std::vector<const void*> hin;
    std::vector<void*> hout;
    for (size_t i = 0; i < in.size(); ++i) {
      if (in_[i].nbytes()) {
        PTC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(in_[i].mutable_data(), in[i], in_[i].nbytes(),
                                                 cudaMemcpyDeviceToHost, ctx.stream));
      }
      hin.push_back(in_[i].data());
    }
    for (ir::Tensor& t : out_) hout.push_back(t.mutable_data());
    PTC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(ctx.stream));
    PTC_RETURN_IF_ERROR(kernel_->Run(hin, hout, workspace_.data()));
    for (size_t i = 0; i < out.size(); ++i) {
      if (out_[i].nbytes()) {
        PTC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(out[i], out_[i].data(), out_[i].nbytes(),
                                                 cudaMemcpyHostToDevice, ctx.stream));
      }
    }
    // The host tensors are reused by the next launch: finish the uploads first.
    PTC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(ctx.stream));
    return absl::OkStatus();
  }

 private:
  const ir::Node& node_;
  std::unique_ptr<cpu::Kernel> kernel_;
  std::vector<ir::Tensor> in_, out_;
  std::vector<char> workspace_;
};

class RotaryKernel final : public DeviceKernel {
 public:
  RotaryKernel(k::DT dt, k::DT table_dt, k::RotaryDesc d) : dt_(dt), table_dt_(table_dt), d_(d) {}
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    return LaunchStatus(
        k::LaunchRotary(dt_, table_dt_, d_, in[0], in[1], in[2], out[0], ctx.stream),
        "LaunchRotary");
  }

 private:
  k::DT dt_, table_dt_;
  k::RotaryDesc d_;
};

// rotary(x, cos, sin): x as [rows, D]; the tables' broadcast strides over x's leading dims
// (merged) and over the pairs.
KernelOr MakeRotary(const ir::Node& node) {
  if (node.num_inputs() != 3 || node.num_outputs() != 1) {
    return Invalid(node, "takes x, cos, sin and has one output");
  }
  const ir::TensorType& x = node.input(0)->type();
  const ir::TensorType& t = node.input(1)->type();
  const bool dt_ok = x.dtype == DType::kF32 || x.dtype == DType::kF16 ||
                     x.dtype == DType::kBF16 || x.dtype == DType::kF64;
  if (!dt_ok || (t.dtype != DType::kF32 && t.dtype != x.dtype)) {
    return Unsupported(node, absl::StrCat("x ", x.ToString(), " with tables ", t.ToString()));
  }
  if (node.input(2)->type() != t || x.rank() < 1 || x.shape.back() % 2 != 0 ||
      t.rank() > x.rank()) {
    return Invalid(node, absl::StrCat("needs x [..., D] with D even and one type for cos and sin "
                                      "broadcasting to x's half, got ", x.ToString(), " and ",
                                      t.ToString()));
  }
  PTC_ASSIGN_OR_RETURN(int64_t rdim, node.GetInt("rotary_dim", x.shape.back()));
  PTC_ASSIGN_OR_RETURN(int64_t interleaved, node.GetInt("interleaved", 0));
  if (rdim <= 0 || rdim % 2 != 0 || rdim > x.shape.back()) {
    return Invalid(node, absl::StrCat("rotary_dim ", rdim, " must be even and in (0, ",
                                      x.shape.back(), "]"));
  }
  ir::Shape half = x.shape;
  half.back() = rdim / 2;
  const std::vector<int64_t> strides = ir::BroadcastStrides(t.shape, half);
  ir::Shape lead(half.begin(), half.end() - 1);
  std::vector<int64_t> lead_strides(strides.begin(), strides.end() - 1);
  if (!Simplify(lead, {&lead_strides})) {
    return Unsupported(node,
                       absl::StrCat("tables broadcast over more than ", k::kMaxRank, " dims"));
  }
  k::RotaryDesc d;
  PTC_ASSIGN_OR_RETURN(int64_t inverse, node.GetInt("inverse", 0));
  d.inverse = inverse != 0;
  d.interleaved = interleaved != 0;
  d.half = half.back();
  d.d = x.shape.back();
  d.rows = d.d == 0 ? 0 : x.num_elements() / d.d;
  d.pair_stride = strides.back();
  d.rank = static_cast<int32_t>(lead.size());
  for (size_t i = 0; i < lead.size(); ++i) {
    d.lead_shape[i] = lead[i];
    d.lead_strides[i] = lead_strides[i];
  }
  return std::unique_ptr<DeviceKernel>(new RotaryKernel(ToDT(x.dtype), ToDT(t.dtype), d));
}

class SwigluKernel final : public DeviceKernel {
 public:
  SwigluKernel(k::DT dt, int act, int64_t n) : dt_(dt), act_(act), n_(n) {}
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    return LaunchStatus(k::LaunchSwiglu(dt_, act_, n_, in[0], in[1], out[0], ctx.stream),
                        "LaunchSwiglu");
  }

 private:
  k::DT dt_;
  int act_;
  int64_t n_;
};

// swiglu(g, u): g, u and y of one float type (no broadcast), one elementwise kernel.
KernelOr MakeSwiglu(const ir::Node& node) {
  if (node.num_inputs() != 2 || node.num_outputs() != 1) {
    return Invalid(node, "takes g, u and has one output");
  }
  const ir::TensorType& g = node.input(0)->type();
  const bool dt_ok = g.dtype == DType::kF32 || g.dtype == DType::kF16 ||
                     g.dtype == DType::kBF16 || g.dtype == DType::kF64;
  if (!dt_ok) return Unsupported(node, absl::StrCat("g ", g.ToString()));
  if (node.input(1)->type() != g || node.output()->type() != g) {
    return Invalid(node, absl::StrCat("needs g, u and y of one type, got ", g.ToString(), ", ",
                                      node.input(1)->type().ToString(), " -> ",
                                      node.output()->type().ToString()));
  }
  absl::StatusOr<ir::GateActivation> act = ir::SwigluActivation(node.attrs());
  if (!act.ok()) return Invalid(node, std::string(act.status().message()));
  return std::unique_ptr<DeviceKernel>(
      new SwigluKernel(ToDT(g.dtype), static_cast<int>(*act), g.num_elements()));
}

using Factory = KernelOr (*)(const ir::Node&);

const std::map<std::string_view, Factory>& Factories() {
  static const auto* f = [] {
    auto* m = new std::map<std::string_view, Factory>;
    for (const auto& [name, op] : ElementwiseOps()) (*m)[name] = MakeElementwise;
    (*m)["where"] = MakeWhere;
    (*m)["transpose"] = MakeTranspose;
    (*m)["slice"] = MakeSlice;
    (*m)["expand"] = MakeExpand;
    (*m)["concat"] = MakeConcat;
    (*m)["split"] = MakeSplit;
    (*m)["gather"] = MakeGather;
    (*m)["kv_cache_write"] = MakeKvCacheWrite;
    (*m)["softmax"] = MakeSoftmax;
    (*m)["log_softmax"] = MakeSoftmax;
    (*m)["layer_norm"] = MakeLayerNorm;
    for (const char* r : {"reduce_sum", "reduce_mean", "reduce_max", "reduce_min"}) {
      (*m)[r] = MakeReduce;
    }
    (*m)["trilu"] = MakeTrilu;
    (*m)["fused_elementwise"] = MakeFused;
    (*m)["rotary"] = MakeRotary;
    (*m)["swiglu"] = MakeSwiglu;
    return m;
  }();
  return *f;
}

}  // namespace

bool HasDeviceKernel(std::string_view op) {
  return Factories().count(op) > 0 || op == "matmul" || op == "gemm" || op == "cast" ||
         op == "fused_matmul" || op == "attention" || op == "attention_grad" ||
         op == "linear_ce_loss" || op == "gemm_bgrad" || op == "gemm_gelu_grad" ||
         op == "reshape" || op == "identity" || HasTrainDeviceKernel(op);
}

KernelOr CreateDeviceKernel(const ir::Node& node, const KernelOptions& options,
                            cublasLtHandle_t lt) {
  for (const ir::Value* v : node.inputs()) {
    if (v == nullptr) return Invalid(node, "has a null input");
    if (v->type().num_elements() < 0 || v->type().rank() > 16) {
      return Invalid(node, absl::StrCat("input type ", v->type().ToString(), " is invalid"));
    }
  }
  for (const ir::Value* v : node.outputs()) {
    if (v->type().num_elements() < 0) {
      return Invalid(node, absl::StrCat("output type ", v->type().ToString(), " is invalid"));
    }
  }
  const std::string& op = node.op();
  if (op == "fused_elementwise") {
    // The plan's generated kernel (runtime/cuda/generated_kernels.h); else the interpreter.
    PTC_ASSIGN_OR_RETURN(std::unique_ptr<DeviceKernel> generated,
                         CreateGeneratedFusedKernel(node, options));
    if (generated != nullptr) return generated;
  }
  absl::StatusOr<std::unique_ptr<DeviceKernel>> kernel;
  if (op == "matmul" || op == "gemm" || op == "fused_matmul" || op == "attention" ||
      op == "attention_grad" || op == "linear_ce_loss" || op == "gemm_bgrad" ||
      op == "gemm_gelu_grad") {
    kernel = CreateGemmKernel(node, options, lt);
  } else if (op == "reshape" || op == "identity") {
    if (node.num_inputs() != 1 || node.num_outputs() != 1 ||
        node.input(0)->type().byte_size() != node.output()->type().byte_size()) {
      return Invalid(node, "input and output sizes differ");
    }
    kernel = std::unique_ptr<DeviceKernel>(
        new CopyKernel(static_cast<size_t>(node.output()->type().byte_size())));
  } else if (op == "cast") {
    if (node.num_inputs() != 1) return Invalid(node, "cast takes one input");
    kernel = std::unique_ptr<DeviceKernel>(new CastKernel(ToDT(node.input(0)->type().dtype),
                                                          ToDT(node.output()->type().dtype),
                                                          node.output()->type().num_elements()));
  } else if (HasTrainDeviceKernel(op)) {
    kernel = CreateTrainDeviceKernel(node);
  } else if (auto it = Factories().find(op); it != Factories().end()) {
    kernel = it->second(node);
  } else {
    kernel = Unsupported(node, "this op");
  }
  if (kernel.ok() || !options.host_fallback || kernel.status().code() != absl::StatusCode::kUnimplemented) {
    return kernel;
  }
  PTC_ASSIGN_OR_RETURN(std::unique_ptr<cpu::Kernel> cpu_kernel, cpu::CreateKernel(node));
  return std::unique_ptr<DeviceKernel>(new HostFallbackKernel(node, std::move(cpu_kernel)));
}

}  // namespace ptc::cuda
