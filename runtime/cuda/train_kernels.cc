// Node -> CUDA kernel for the losses (softmax_ce_loss, nll_loss) and the training ops of
// compiler/ir/ops_train.cc, on the launchers of codegen/cuda/train.cu. Validation mirrors the
// CPU kernels (codegen/cpu/loss.cc, train_*_kernels.cc); f16 / bf16 are supported here too
// (f32 arithmetic), which the CPU kernels are not.
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "codegen/cuda/kernels.h"
#include "compiler/ir/ops_fused.h"
#include "compiler/ir/ops_train.h"
#include "compiler/support/status.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/device_kernels.h"

namespace ptc::cuda {
namespace {

namespace k = ::ptc::cuda::kernels;
using ir::DType;
using KernelOr = absl::StatusOr<std::unique_ptr<DeviceKernel>>;

absl::Status Invalid(const ir::Node& node, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(node.Describe(), ": ", std::string(what)));
}
absl::Status Unsupported(const ir::Node& node, std::string_view what) {
  return absl::UnimplementedError(
      absl::StrCat(node.Describe(), ": no CUDA kernel for ", std::string(what),
                   " (run with --target cpu, or enable the host fallback)"));
}
absl::Status LaunchStatus(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return CudaStatus(e, what, __FILE__, __LINE__);
}
k::DT ToDT(DType d) { return static_cast<k::DT>(static_cast<int>(d)); }
bool IsFloatDType(DType d) {
  return d == DType::kF32 || d == DType::kF16 || d == DType::kBF16 || d == DType::kF64;
}
absl::Status RequireFloat(const ir::Node& node, const ir::TensorType& t, std::string_view what) {
  if (!IsFloatDType(t.dtype)) {
    return Unsupported(node, absl::StrCat(std::string(what), " ", t.ToString()));
  }
  return absl::OkStatus();
}
absl::Status Arity(const ir::Node& node, size_t in_min, size_t in_max, size_t out_min,
                   size_t out_max) {
  if (node.num_inputs() < in_min || node.num_inputs() > in_max || node.num_outputs() < out_min ||
      node.num_outputs() > out_max) {
    return Invalid(node, absl::StrCat("has ", node.num_inputs(), " inputs and ",
                                      node.num_outputs(), " outputs"));
  }
  return absl::OkStatus();
}

// ------------------------------------------------------------------------------------ losses
struct LossSetup {
  k::LossDesc desc;
  k::DT dt;
  bool labels_i64 = false;
  bool has_weight = false;
};

// scores at input `x_index`, labels next, optional weights after.
absl::StatusOr<LossSetup> SetUpLoss(const ir::Node& node, size_t x_index) {
  const ir::TensorType& x = node.input(x_index)->type();
  const ir::TensorType& lab = node.input(x_index + 1)->type();
  PTC_RETURN_IF_ERROR(RequireFloat(node, x, "scores"));
  if (x.rank() < 2) return Invalid(node, absl::StrCat("scores must be [N, C, ...], got ", x.ToString()));
  ir::Shape lab_want = x.shape;
  lab_want.erase(lab_want.begin() + 1);
  if (lab.shape != lab_want || (lab.dtype != DType::kI32 && lab.dtype != DType::kI64)) {
    return Invalid(node, absl::StrCat("labels must be i32/i64", ir::ShapeToString(lab_want),
                                      " for scores ", x.ToString(), ", got ", lab.ToString()));
  }
  LossSetup s;
  s.dt = ToDT(x.dtype);
  s.labels_i64 = lab.dtype == DType::kI64;
  s.desc.n = x.shape[0];
  s.desc.c = x.shape[1];
  s.desc.d = s.desc.n * s.desc.c != 0 ? x.num_elements() / (s.desc.n * s.desc.c) : 0;
  s.has_weight = node.num_inputs() > x_index + 2;
  if (s.has_weight) {
    const ir::TensorType& w = node.input(x_index + 2)->type();
    if (w.dtype != x.dtype || w.shape != ir::Shape{s.desc.c}) {
      return Invalid(node, absl::StrCat("weights must be [", s.desc.c, "] of the scores' dtype, got ",
                                        w.ToString()));
    }
  }
  PTC_ASSIGN_OR_RETURN(std::string rs, node.GetString("reduction", "mean"));
  if (rs == "none") {
    s.desc.reduction = 0;
  } else if (rs == "sum") {
    s.desc.reduction = 1;
  } else if (rs == "mean") {
    s.desc.reduction = 2;
  } else {
    return Invalid(node, absl::StrCat("reduction must be none, sum or mean, got \"", rs, "\""));
  }
  if (node.has_attr("ignore_index")) {
    PTC_ASSIGN_OR_RETURN(int64_t ii, node.GetInt("ignore_index"));
    s.desc.has_ignore = true;
    s.desc.ignore_index = ii;
  }
  return s;
}

class LossKernel final : public DeviceKernel {
 public:
  LossKernel(bool softmax, LossSetup s) : softmax_(softmax), s_(s) {}
  size_t WorkspaceBytes() const override { return k::LossWorkspaceBytes(s_.dt, s_.desc); }
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void* workspace) override {
    return LaunchStatus(
        k::LaunchLoss(s_.dt, softmax_, s_.desc, in[0], in[1], s_.labels_i64,
                      s_.has_weight ? in[2] : nullptr, out[0], out.size() > 1 ? out[1] : nullptr,
                      workspace, ctx.error_flag, ctx.error_code, ctx.stream),
        "LaunchLoss");
  }

 private:
  bool softmax_;
  LossSetup s_;
};

KernelOr MakeLoss(const ir::Node& node) {
  const bool softmax = node.op() == "softmax_ce_loss";
  PTC_RETURN_IF_ERROR(Arity(node, 2, 3, 1, softmax ? 2 : 1));
  PTC_ASSIGN_OR_RETURN(LossSetup s, SetUpLoss(node, 0));
  const ir::TensorType& x = node.input(0)->type();
  ir::Shape loss_shape = node.input(1)->type().shape;
  ir::TensorType loss_want{x.dtype, s.desc.reduction == 0 ? loss_shape : ir::Shape{}};
  if (node.output(0)->type() != loss_want) {
    return Invalid(node, absl::StrCat("loss output should be ", loss_want.ToString(), ", got ",
                                      node.output(0)->type().ToString()));
  }
  if (node.num_outputs() == 2 && node.output(1)->type() != x) {
    return Invalid(node, absl::StrCat("log_prob output should be ", x.ToString()));
  }
  return std::unique_ptr<DeviceKernel>(new LossKernel(softmax, s));
}

class LossGradKernel final : public DeviceKernel {
 public:
  LossGradKernel(bool softmax, LossSetup s) : softmax_(softmax), s_(s) {}
  size_t WorkspaceBytes() const override { return 16; }
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void* workspace) override {
    return LaunchStatus(
        k::LaunchLossGrad(s_.dt, softmax_, s_.desc, in[0], in[1], in[2], s_.labels_i64,
                          s_.has_weight ? in[3] : nullptr, out[0], workspace, ctx.error_flag,
                          ctx.error_code, ctx.stream),
        "LaunchLossGrad");
  }

 private:
  bool softmax_;
  LossSetup s_;
};

KernelOr MakeLossGrad(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(Arity(node, 3, 4, 1, 1));
  PTC_ASSIGN_OR_RETURN(LossSetup s, SetUpLoss(node, 1));
  const ir::TensorType& x = node.input(1)->type();
  const ir::TensorType& dl = node.input(0)->type();
  const int64_t want = s.desc.reduction == 0 ? s.desc.n * s.desc.d : 1;
  if (dl.dtype != x.dtype || dl.num_elements() != want) {
    return Invalid(node, absl::StrCat("dloss ", dl.ToString(), " must have ", want,
                                      " elements of the scores' dtype"));
  }
  if (node.output(0)->type() != x) {
    return Invalid(node, absl::StrCat("output must be ", x.ToString()));
  }
  return std::unique_ptr<DeviceKernel>(
      new LossGradKernel(node.op() == "softmax_ce_loss_grad", s));
}

// --------------------------------------------------------------------------- layer_norm_grad
class LayerNormGradKernel final : public DeviceKernel {
 public:
  // addend / counter: their input indices (-1: none); low: dx_low's dropout (threshold 0: none).
  LayerNormGradKernel(k::DT dt, k::DT dy_dt, int64_t rows, int64_t d, bool rms, int addend,
                      int counter, k::DropoutArgs low)
      : dt_(dt), dy_dt_(dy_dt), rows_(rows), d_(d), rms_(rms), addend_(addend),
        counter_(counter), low_(low) {}
  size_t WorkspaceBytes() const override {
    return k::LayerNormGradWorkspaceBytes(dt_, rows_, d_);
  }
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void* workspace) override {
    k::DropoutArgs low = low_;
    low.counter = counter_ >= 0 ? in[counter_] : nullptr;  // read on the device
    return LaunchStatus(
        k::LaunchLayerNormGrad(dt_, dy_dt_, rows_, d_, rms_, in[0], in[1], in[2],
                               static_cast<const float*>(in[3]), static_cast<const float*>(in[4]),
                               addend_ >= 0 ? in[addend_] : nullptr, out[0], out[1], out[2],
                               out.size() > 3 ? out[3] : nullptr, workspace, ctx.stream, low),
        "LaunchLayerNormGrad");
  }

 private:
  k::DT dt_, dy_dt_;
  int64_t rows_, d_;
  bool rms_;
  int addend_, counter_;
  k::DropoutArgs low_;
};

KernelOr MakeLayerNormGrad(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(Arity(node, 5, 7, 3, 4));
  const ir::TensorType& x = node.input(1)->type();
  const ir::Value* addend = ir::LayerNormGradAddend(node);
  const ir::Value* counter = ir::LayerNormGradCounter(node);
  if (addend != nullptr && addend->type() != x) {
    return Invalid(node, "the addend must have x's type");
  }
  PTC_ASSIGN_OR_RETURN(double low_ratio, node.GetFloat("low_dropout", 0.0));
  PTC_ASSIGN_OR_RETURN(int64_t low_seed, node.GetInt("low_seed", 0));
  if (!(low_ratio >= 0 && low_ratio < 1) || (low_ratio > 0 && node.num_outputs() != 4)) {
    return Invalid(node, "low_dropout must be in [0, 1), on a dx_low output");
  }
  // The counter's pointer is set per launch.
  const k::DropoutArgs low = k::MakeDropoutArgs(
      low_ratio, static_cast<uint64_t>(low_seed), nullptr,
      counter != nullptr && counter->type().dtype == DType::kI32);
  if (node.num_outputs() == 4 &&
      (x.dtype != DType::kF32 || node.output(3)->type() != node.input(0)->type())) {
    return Invalid(node, "dx_low (the fourth output) needs an f32 x and has dy's type");
  }
  PTC_RETURN_IF_ERROR(RequireFloat(node, x, "x"));
  const int64_t d = node.input(2)->type().num_elements();
  const int64_t rows = d ? x.num_elements() / d : 0;
  // dy: x's type, or f16 / bf16 of x's shape for an f32 x (fold-norm-casts).
  const ir::TensorType& dy = node.input(0)->type();
  const bool low_dy = x.dtype == DType::kF32 && ir::IsHalfFloat(dy.dtype);
  if (dy.shape != x.shape || (dy.dtype != x.dtype && !low_dy) ||
      node.input(2)->type().dtype != x.dtype || (d != 0 && rows * d != x.num_elements())) {
    return Invalid(node, "dy must have x's type (or f16 / bf16 for an f32 x) and scale x's "
                         "normalized shape and dtype");
  }
  for (int i : {3, 4}) {
    const ir::TensorType& t = node.input(i)->type();
    if (t.dtype != DType::kF32 || t.num_elements() != rows) {
      return Invalid(node, absl::StrCat("mean / inv_std_dev must be f32 with one element per row (",
                                        rows, "), got ", t.ToString()));
    }
  }
  PTC_ASSIGN_OR_RETURN(int64_t rms, node.GetInt("rms", 0));
  return std::unique_ptr<DeviceKernel>(new LayerNormGradKernel(
      ToDT(x.dtype), ToDT(dy.dtype), rows, d, rms != 0, addend != nullptr ? 5 : -1,
      counter != nullptr ? static_cast<int>(node.num_inputs()) - 1 : -1, low));
}

// ---------------------------------------------------------------------------------- gelu_grad
class GeluGradKernel final : public DeviceKernel {
 public:
  GeluGradKernel(k::DT dt, bool tanh_approx, int64_t n) : dt_(dt), tanh_(tanh_approx), n_(n) {}
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    return LaunchStatus(k::LaunchGeluGrad(dt_, tanh_, n_, in[0], in[1], out[0], ctx.stream),
                        "LaunchGeluGrad");
  }

 private:
  k::DT dt_;
  bool tanh_;
  int64_t n_;
};

KernelOr MakeGeluGrad(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(Arity(node, 2, 2, 1, 1));
  const ir::TensorType& x = node.input(1)->type();
  PTC_RETURN_IF_ERROR(RequireFloat(node, x, "x"));
  if (node.input(0)->type() != x) return Invalid(node, "dy must have x's type");
  // (Held in the StatusOr: GCC 12 warns of an uninitialized string when it is moved out.)
  const absl::StatusOr<std::string> approx = node.GetString("approximate", "none");
  if (!approx.ok()) return approx.status();
  if (*approx != "none" && *approx != "tanh") {
    return Invalid(node, absl::StrCat("approximate must be \"none\" or \"tanh\", got \"",
                                      *approx, "\""));
  }
  return std::unique_ptr<DeviceKernel>(
      new GeluGradKernel(ToDT(x.dtype), *approx == "tanh", x.num_elements()));
}

// -------------------------------------------------------------------------------- swiglu_grad
class SwigluGradKernel final : public DeviceKernel {
 public:
  SwigluGradKernel(k::DT dt, int act, int64_t n) : dt_(dt), act_(act), n_(n) {}
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    return LaunchStatus(
        k::LaunchSwigluGrad(dt_, act_, n_, in[0], in[1], in[2], out[0], out[1], ctx.stream),
        "LaunchSwigluGrad");
  }

 private:
  k::DT dt_;
  int act_;
  int64_t n_;
};

// swiglu_grad(dy, g, u) -> (dg, du): all of g's type, one elementwise kernel.
KernelOr MakeSwigluGrad(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(Arity(node, 3, 3, 2, 2));
  const ir::TensorType& g = node.input(1)->type();
  PTC_RETURN_IF_ERROR(RequireFloat(node, g, "g"));
  for (const ir::Value* v : {node.input(0), node.input(2), node.output(0), node.output(1)}) {
    if (v->type() != g) {
      return Invalid(node, absl::StrCat("dy, u, dg and du must have g's type ", g.ToString(),
                                        ", got ", v->type().ToString()));
    }
  }
  absl::StatusOr<ir::GateActivation> act = ir::SwigluActivation(node.attrs());
  if (!act.ok()) return Invalid(node, std::string(act.status().message()));
  return std::unique_ptr<DeviceKernel>(
      new SwigluGradKernel(ToDT(g.dtype), static_cast<int>(*act), g.num_elements()));
}

// -------------------------------------------------------------------------------- gather_grad
class GatherGradKernel final : public DeviceKernel {
 public:
  GatherGradKernel(k::DT dt, int64_t outer, int64_t n, int64_t ni, int64_t inner, bool i64)
      : dt_(dt), outer_(outer), n_(n), ni_(ni), inner_(inner), i64_(i64) {}
  size_t WorkspaceBytes() const override { return k::GatherGradWorkspaceBytes(n_, ni_); }
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void* workspace) override {
    return LaunchStatus(k::LaunchGatherGrad(dt_, outer_, n_, ni_, inner_, in[0], in[1], i64_,
                                            in.size() > 2 ? in[2] : nullptr, out[0], workspace,
                                            ctx.error_flag, ctx.error_code, ctx.stream),
                        "LaunchGatherGrad");
  }

 private:
  k::DT dt_;
  int64_t outer_, n_, ni_, inner_;
  bool i64_;
};

KernelOr MakeGatherGrad(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(Arity(node, 2, 3, 1, 1));
  if (node.num_inputs() == 3 && node.input(2)->type() != node.output(0)->type()) {
    return Invalid(node, "base must have the result's type");
  }
  const ir::TensorType& dy = node.input(0)->type();
  const ir::TensorType& idx = node.input(1)->type();
  PTC_RETURN_IF_ERROR(RequireFloat(node, dy, "dy"));
  if (idx.dtype != DType::kI32 && idx.dtype != DType::kI64) {
    return Invalid(node, "indices must be i32 or i64");
  }
  PTC_ASSIGN_OR_RETURN(int64_t axis, node.GetInt("axis"));
  const ir::Shape& s = node.output(0)->type().shape;
  if (axis < 0 || axis >= static_cast<int64_t>(s.size())) return Invalid(node, "axis out of range");
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= s[i];
  for (size_t i = axis + 1; i < s.size(); ++i) inner *= s[i];
  const int64_t ni = idx.num_elements();
  if (dy.num_elements() != outer * ni * inner) {
    return Invalid(node, absl::StrCat("dy ", dy.ToString(), " does not match the output ",
                                      node.output(0)->type().ToString(), " and indices ",
                                      idx.ToString()));
  }
  if (s[axis] >= (int64_t{1} << 31) || ni >= (int64_t{1} << 31)) {
    return Unsupported(node, "2^31 or more rows or indices");
  }
  return std::unique_ptr<DeviceKernel>(new GatherGradKernel(ToDT(dy.dtype), outer, s[axis], ni,
                                                            inner, idx.dtype == DType::kI64));
}

// --------------------------------------------------------------------------------- slice_grad
// Zeros, then dy copied to the positions the forward slice reads (copy.cu's strided copy).
class SliceGradKernel final : public DeviceKernel {
 public:
  SliceGradKernel(int bytes, size_t out_bytes, k::CopyDesc d)
      : bytes_(bytes), out_bytes_(out_bytes), d_(d) {}
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    if (out_bytes_ == 0) return absl::OkStatus();
    PTC_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(out[0], 0, out_bytes_, ctx.stream));
    if (d_.n == 0) return absl::OkStatus();
    return LaunchStatus(k::LaunchStridedCopy(bytes_, d_, in[0], out[0], ctx.stream),
                        "LaunchStridedCopy (slice_grad)");
  }

 private:
  int bytes_;
  size_t out_bytes_;
  k::CopyDesc d_;
};

KernelOr MakeSliceGrad(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(Arity(node, 1, 1, 1, 1));
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> starts, node.GetInts("starts"));
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> steps, node.GetInts("steps"));
  const ir::Shape& out = node.output(0)->type().shape;
  const ir::Shape& dy = node.input(0)->type().shape;
  if (starts.size() != out.size() || steps.size() != out.size() || dy.size() != out.size()) {
    return Invalid(node, "starts/steps must have one entry per axis");
  }
  // Drop size-1 dims of dy (they carry no stride) and keep the rank within the copy's limit.
  std::vector<int64_t> ostride(out.size() + 1, 1);
  for (int d = static_cast<int>(out.size()) - 1; d >= 0; --d) ostride[d] = ostride[d + 1] * out[d];
  k::CopyDesc c;
  c.n = ir::NumElements(dy);
  std::vector<int64_t> shape, in_st, out_st;
  int64_t in_stride = 1;
  std::vector<int64_t> dy_stride(dy.size(), 1);
  for (int d = static_cast<int>(dy.size()) - 1; d >= 0; --d) {
    dy_stride[d] = in_stride;
    in_stride *= dy[d];
  }
  for (size_t d = 0; d < out.size(); ++d) {
    c.out_offset += starts[d] * ostride[d + 1];
    if (dy[d] == 1) continue;
    shape.push_back(dy[d]);
    in_st.push_back(dy_stride[d]);
    out_st.push_back(steps[d] * ostride[d + 1]);
  }
  if (shape.size() > static_cast<size_t>(k::kMaxRank)) {
    return Unsupported(node, absl::StrCat("slices over more than ", k::kMaxRank, " dims"));
  }
  c.rank = static_cast<int32_t>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) {
    c.shape[i] = shape[i];
    c.in_strides[i] = in_st[i];
    c.out_strides[i] = out_st[i];
  }
  const ir::TensorType& ot = node.output(0)->type();
  return std::unique_ptr<DeviceKernel>(new SliceGradKernel(
      static_cast<int>(ir::DTypeSize(ot.dtype)), static_cast<size_t>(ot.byte_size()), c));
}

// -------------------------------------------------------------------------------- optimizers
absl::Status RequireScalarF32(const ir::Node& node, size_t i, std::string_view what) {
  if (node.input(i)->type() != ir::TensorType{DType::kF32, {}}) {
    return Invalid(node, absl::StrCat(std::string(what), " must be f32[], got ",
                                      node.input(i)->type().ToString()));
  }
  return absl::OkStatus();
}

class LrScheduleKernel final : public DeviceKernel {
 public:
  LrScheduleKernel(double lr, bool cosine, int64_t warmup, int64_t total, double min_ratio)
      : lr_(lr), cosine_(cosine), warmup_(warmup), total_(total), min_ratio_(min_ratio) {}
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    return LaunchStatus(
        k::LaunchLrSchedule(lr_, cosine_, warmup_, total_, min_ratio_,
                            static_cast<const float*>(in[0]), static_cast<float*>(out[0]),
                            ctx.stream),
        "LaunchLrSchedule");
  }

 private:
  double lr_;
  bool cosine_;
  int64_t warmup_, total_;
  double min_ratio_;
};

KernelOr MakeLrSchedule(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(Arity(node, 1, 1, 1, 1));
  PTC_RETURN_IF_ERROR(RequireScalarF32(node, 0, "step"));
  PTC_ASSIGN_OR_RETURN(double lr, node.GetFloat("lr"));
  PTC_ASSIGN_OR_RETURN(std::string s, node.GetString("schedule", "constant"));
  if (s != "constant" && s != "cosine") {
    return Invalid(node, absl::StrCat("schedule must be constant or cosine, got \"", s, "\""));
  }
  PTC_ASSIGN_OR_RETURN(int64_t warmup, node.GetInt("warmup", 0));
  PTC_ASSIGN_OR_RETURN(int64_t total, node.GetInt("total_steps", 0));
  PTC_ASSIGN_OR_RETURN(double min_ratio, node.GetFloat("min_lr_ratio", 0.0));
  return std::unique_ptr<DeviceKernel>(
      new LrScheduleKernel(lr, s == "cosine", warmup, total, min_ratio));
}

// One tensor per node: the multi-tensor launcher with count 1 (the executor may batch
// consecutive updates of one dtype and hyper-parameters into one launch later).
class AdamWKernel final : public DeviceKernel {
 public:
  AdamWKernel(k::DT dt, int64_t n, k::AdamWParams p) : dt_(dt), n_(n), p_(p) {}
  // Parameters of one dtype and hyper-parameters reading the same lr and step scalars.
  std::string BatchKey(absl::Span<const void* const> in) const override {
    return absl::StrFormat("adamw_update %d %a %a %a %a %p %p %p", static_cast<int>(dt_),
                           p_.beta1, p_.beta2, p_.eps, p_.weight_decay, in[4], in[5],
                           in.size() > 6 ? in[6] : nullptr);
  }
  // kMaxAdamTensors tensors per launch.
  absl::Status LaunchBatch(const LaunchContext& ctx,
                           const std::vector<BatchItem>& items) override {
    for (size_t first = 0; first < items.size(); first += k::kMaxAdamTensors) {
      k::AdamWTensors t;
      const size_t end = std::min(items.size(), first + k::kMaxAdamTensors);
      for (size_t i = first; i < end; ++i) {
        const BatchItem& it = items[i];
        const int c = t.count++;
        t.w[c] = it.inputs[0];
        t.g[c] = it.inputs[1];
        t.m[c] = it.inputs[2];
        t.v[c] = it.inputs[3];
        t.w_out[c] = it.outputs[0];
        t.m_out[c] = it.outputs[1];
        t.v_out[c] = it.outputs[2];
        t.n[c] = static_cast<const AdamWKernel*>(it.kernel)->n_;
      }
      PTC_RETURN_IF_ERROR(LaunchStatus(
          k::LaunchAdamW(dt_, t, p_, static_cast<const float*>(items[first].inputs[4]),
                         static_cast<const float*>(items[first].inputs[5]),
                         Apply(items[first].inputs), ctx.stream),
          "LaunchAdamW (multi-tensor)"));
    }
    return absl::OkStatus();
  }
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    k::AdamWTensors t;
    t.count = 1;
    t.w[0] = in[0];
    t.g[0] = in[1];
    t.m[0] = in[2];
    t.v[0] = in[3];
    t.w_out[0] = out[0];
    t.m_out[0] = out[1];
    t.v_out[0] = out[2];
    t.n[0] = n_;
    return LaunchStatus(k::LaunchAdamW(dt_, t, p_, static_cast<const float*>(in[4]),
                                       static_cast<const float*>(in[5]), Apply(in), ctx.stream),
                        "LaunchAdamW");
  }

 private:
  // The optional `apply` flag (input 6).
  template <typename In>
  static const bool* Apply(const In& in) {
    return in.size() > 6 ? static_cast<const bool*>(in[6]) : nullptr;
  }

  k::DT dt_;
  int64_t n_;
  k::AdamWParams p_;
};

KernelOr MakeAdamW(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(Arity(node, 6, 7, 3, 3));
  if (node.num_inputs() == 7 && node.input(6)->type() != ir::TensorType{DType::kBool, {}}) {
    return Invalid(node, "apply must be bool[]");
  }
  const ir::TensorType& w = node.input(0)->type();
  PTC_RETURN_IF_ERROR(RequireFloat(node, w, "w"));
  for (int i = 1; i < 4; ++i) {
    if (node.input(i)->type() != w) return Invalid(node, "w, g, m, v must share one type");
  }
  PTC_RETURN_IF_ERROR(RequireScalarF32(node, 4, "lr"));
  PTC_RETURN_IF_ERROR(RequireScalarF32(node, 5, "step"));
  k::AdamWParams p;
  PTC_ASSIGN_OR_RETURN(p.beta1, node.GetFloat("beta1"));
  PTC_ASSIGN_OR_RETURN(p.beta2, node.GetFloat("beta2"));
  PTC_ASSIGN_OR_RETURN(p.eps, node.GetFloat("eps"));
  PTC_ASSIGN_OR_RETURN(p.weight_decay, node.GetFloat("weight_decay"));
  if (w.num_elements() >= (int64_t{1} << 40)) return Unsupported(node, "a tensor this large");
  return std::unique_ptr<DeviceKernel>(new AdamWKernel(ToDT(w.dtype), w.num_elements(), p));
}

class SgdKernel final : public DeviceKernel {
 public:
  SgdKernel(k::DT dt, int64_t n, double momentum, double wd, bool has_mom)
      : dt_(dt), n_(n), momentum_(momentum), wd_(wd), has_mom_(has_mom) {}
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    return LaunchStatus(
        k::LaunchSgd(dt_, n_, momentum_, wd_, static_cast<const float*>(in[2]), in[0], in[1],
                     has_mom_ ? in[3] : nullptr, out[0], has_mom_ ? out[1] : nullptr, ctx.stream),
        "LaunchSgd");
  }

 private:
  k::DT dt_;
  int64_t n_;
  double momentum_, wd_;
  bool has_mom_;
};

KernelOr MakeSgd(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(Arity(node, 3, 4, 1, 2));
  const ir::TensorType& w = node.input(0)->type();
  PTC_RETURN_IF_ERROR(RequireFloat(node, w, "w"));
  const bool has_mom = node.num_inputs() == 4;
  if (node.num_outputs() != (has_mom ? 2u : 1u)) {
    return Invalid(node, "sgd_update has 2 outputs with a momentum buffer, else 1");
  }
  if (node.input(1)->type() != w || (has_mom && node.input(3)->type() != w)) {
    return Invalid(node, "g and mom must have w's type");
  }
  PTC_RETURN_IF_ERROR(RequireScalarF32(node, 2, "lr"));
  PTC_ASSIGN_OR_RETURN(double momentum, node.GetFloat("momentum", 0.0));
  PTC_ASSIGN_OR_RETURN(double wd, node.GetFloat("weight_decay", 0.0));
  return std::unique_ptr<DeviceKernel>(
      new SgdKernel(ToDT(w.dtype), w.num_elements(), momentum, wd, has_mom));
}

// ------------------------------------------------------------------------------------ dropout
class DropoutKernel final : public DeviceKernel {
 public:
  DropoutKernel(k::DT dt, int64_t n, bool counter_i32, double ratio, uint64_t seed)
      : dt_(dt), n_(n), counter_i32_(counter_i32), ratio_(ratio), seed_(seed) {}
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    return LaunchStatus(
        k::LaunchDropout(dt_, n_, in[0], in.size() > 1 ? in[1] : nullptr, counter_i32_, ratio_,
                         seed_, out[0], out.size() > 1 ? out[1] : nullptr, ctx.stream),
        "LaunchDropout");
  }

 private:
  k::DT dt_;
  int64_t n_;
  bool counter_i32_;
  double ratio_;
  uint64_t seed_;
};

// dropout(x [, counter]) -> y [, mask]: x and y of one float type, the counter an i32 / i64
// scalar read on the device, the mask bool.
KernelOr MakeDropout(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(Arity(node, 1, 2, 1, 2));
  const ir::TensorType& x = node.input(0)->type();
  PTC_RETURN_IF_ERROR(RequireFloat(node, x, "x"));
  if (node.output(0)->type() != x) return Invalid(node, "y must have x's type");
  if (node.num_outputs() > 1 && node.output(1)->type() != ir::TensorType{DType::kBool, x.shape}) {
    return Invalid(node, "the mask must be bool of x's shape");
  }
  bool counter_i32 = false;
  if (node.num_inputs() > 1) {
    const ir::TensorType& c = node.input(1)->type();
    if ((c.dtype != DType::kI32 && c.dtype != DType::kI64) || !c.shape.empty()) {
      return Invalid(node, absl::StrCat("the counter must be an i32 or i64 scalar, got ",
                                        c.ToString()));
    }
    counter_i32 = c.dtype == DType::kI32;
  }
  PTC_ASSIGN_OR_RETURN(double ratio, node.GetFloat("ratio", 0.5));
  PTC_ASSIGN_OR_RETURN(int64_t seed, node.GetInt("seed", 0));
  if (!(ratio >= 0.0 && ratio <= 1.0)) {
    return Invalid(node, absl::StrCat("ratio ", ratio, " must be in [0, 1]"));
  }
  return std::unique_ptr<DeviceKernel>(new DropoutKernel(
      ToDT(x.dtype), x.num_elements(), counter_i32, ratio, static_cast<uint64_t>(seed)));
}

struct Entry {
  std::string_view op;
  KernelOr (*make)(const ir::Node&);
};
constexpr Entry kTrainOps[] = {
    {"softmax_ce_loss", MakeLoss},
    {"nll_loss", MakeLoss},
    {"softmax_ce_loss_grad", MakeLossGrad},
    {"nll_loss_grad", MakeLossGrad},
    {"layer_norm_grad", MakeLayerNormGrad},
    {"gelu_grad", MakeGeluGrad},
    {"swiglu_grad", MakeSwigluGrad},
    {"gather_grad", MakeGatherGrad},
    {"slice_grad", MakeSliceGrad},
    {"lr_schedule", MakeLrSchedule},
    {"adamw_update", MakeAdamW},
    {"sgd_update", MakeSgd},
    {"dropout", MakeDropout},
};

}  // namespace

bool HasTrainDeviceKernel(std::string_view op) {
  for (const Entry& e : kTrainOps) {
    if (e.op == op) return true;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<DeviceKernel>> CreateTrainDeviceKernel(const ir::Node& node) {
  for (const Entry& e : kTrainOps) {
    if (e.op == node.op()) return e.make(node);
  }
  return Unsupported(node, "this op");
}

}  // namespace ptc::cuda
