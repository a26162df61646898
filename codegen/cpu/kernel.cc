// Kernel registry (op name -> factory), the f16/bf16 wrapper, broadcast plans and EvaluateNode.
#include "codegen/cpu/kernel.h"

#include <cstdlib>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "codegen/cpu/fused_kernels.h"
#include "codegen/cpu/kernel_util.h"
#include "codegen/cpu/decode_kernels.h"
#include "codegen/cpu/train_kernels.h"
#include "compiler/support/status.h"

namespace ptc::cpu {
namespace internal {

absl::StatusOr<BroadcastPlan> MakeBroadcastPlan(const ir::Shape& out,
                                                const std::vector<ir::Shape>& ins) {
  BroadcastPlan plan;
  plan.num_inputs = static_cast<int>(ins.size());
  if (plan.num_inputs > kMaxBroadcastInputs) return absl::InternalError("too many inputs");
  const int r = static_cast<int>(out.size());
  // Dense strides of each input, aligned to the output's dims (0 where broadcast).
  std::vector<std::array<int64_t, kMaxBroadcastInputs>> strides(r);
  for (int i = 0; i < plan.num_inputs; ++i) {
    const ir::Shape& s = ins[i];
    if (static_cast<int>(s.size()) > r) {
      return absl::InvalidArgumentError(absl::StrCat("input shape ", ir::ShapeToString(s),
                                                     " has more dims than the output ",
                                                     ir::ShapeToString(out)));
    }
    int64_t stride = 1;
    for (int d = r - 1; d >= 0; --d) {
      int sd = d - (r - static_cast<int>(s.size()));
      int64_t dim = sd >= 0 ? s[sd] : 1;
      if (dim != out[d] && dim != 1) {
        return absl::InvalidArgumentError(absl::StrCat("shape ", ir::ShapeToString(s),
                                                       " does not broadcast to ",
                                                       ir::ShapeToString(out)));
      }
      strides[d][i] = (dim == 1) ? 0 : stride;
      stride *= dim;
    }
  }
  plan.total = ir::NumElements(out);
  if (plan.total < 0) return absl::InvalidArgumentError("output shape overflows");
  // Drop size-1 dims, merge adjacent dims whose strides are compatible for every input.
  for (int d = 0; d < r; ++d) {
    if (out[d] == 1) continue;
    if (!plan.dims.empty()) {
      bool mergeable = true;
      for (int i = 0; i < plan.num_inputs; ++i) {
        if (plan.strides.back()[i] != strides[d][i] * out[d]) mergeable = false;
      }
      if (mergeable) {
        plan.dims.back() *= out[d];
        plan.strides.back() = strides[d];
        continue;
      }
    }
    plan.dims.push_back(out[d]);
    plan.strides.push_back(strides[d]);
  }
  if (plan.dims.empty()) {
    plan.dims.push_back(plan.total == 0 ? 0 : 1);
    plan.strides.push_back({0, 0, 0});
  }
  if (plan.total == 0) {  // some dim is 0: one empty dim is enough
    plan.dims.assign(1, 0);
    plan.strides.assign(1, {0, 0, 0});
  }
  return plan;
}

namespace {

bool IsHalf(ir::DType d) { return ir::IsHalfFloat(d); }

void ToF32(ir::DType d, const uint16_t* in, float* out, int64_t n) {
  if (d == ir::DType::kF16) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = HalfToFloat(in[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = Bf16ToFloat(in[i]);
  }
}
void FromF32(ir::DType d, const float* in, uint16_t* out, int64_t n) {
  if (d == ir::DType::kF16) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = FloatToHalf(in[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = FloatToBf16(in[i]);
  }
}

size_t Align64(size_t n) { return (n + 63) / 64 * 64; }

// Runs an op on f16 / bf16 tensors by converting them to f32 around the f32 kernel.
class HalfWrapperKernel : public Kernel {
 public:
  static KernelOr Create(const ir::Node& node, KernelOr (*factory)(const ir::Node&)) {
    auto k = std::unique_ptr<HalfWrapperKernel>(new HalfWrapperKernel());
    k->fn_ = std::make_unique<ir::Function>("half_wrapper");
    std::vector<ir::Value*> ins;
    size_t ws = 0;
    for (size_t i = 0; i < node.num_inputs(); ++i) {
      ir::TensorType t = node.input(i)->type();
      Slot s{t.dtype, t.num_elements(), 0};
      if (IsHalf(t.dtype)) {
        t.dtype = ir::DType::kF32;
        s.offset = ws;
        ws += Align64(s.n * 4);
      }
      k->in_.push_back(s);
      ins.push_back(k->fn_->AddParam(absl::StrCat("x", i), t));
    }
    std::vector<ir::TensorType> outs;
    for (size_t i = 0; i < node.num_outputs(); ++i) {
      ir::TensorType t = node.output(i)->type();
      Slot s{t.dtype, t.num_elements(), 0};
      if (IsHalf(t.dtype)) {
        t.dtype = ir::DType::kF32;
        s.offset = ws;
        ws += Align64(s.n * 4);
      }
      k->out_.push_back(s);
      outs.push_back(t);
    }
    ir::Node* inner = k->fn_->AddNode(node.op(), ins, outs, node.attrs(), node.loc());
    PTC_ASSIGN_OR_RETURN(k->inner_, factory(*inner));
    k->inner_ws_offset_ = ws;
    k->ws_bytes_ = ws + k->inner_->WorkspaceBytes();
    k->in_ptrs_.resize(k->in_.size());
    k->out_ptrs_.resize(k->out_.size());
    return KernelPtr(std::move(k));
  }

  size_t WorkspaceBytes() const override { return ws_bytes_; }

  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void* workspace) override {
    char* ws = static_cast<char*>(workspace);
    // The pointer arrays are members: Run is not reentrant (like every kernel's workspace).
    for (size_t i = 0; i < in_.size(); ++i) {
      if (IsHalf(in_[i].dtype)) {
        float* f = reinterpret_cast<float*>(ws + in_[i].offset);
        ToF32(in_[i].dtype, static_cast<const uint16_t*>(inputs[i]), f, in_[i].n);
        in_ptrs_[i] = f;
      } else {
        in_ptrs_[i] = inputs[i];
      }
    }
    for (size_t i = 0; i < out_.size(); ++i) {
      out_ptrs_[i] = IsHalf(out_[i].dtype) ? static_cast<void*>(ws + out_[i].offset) : outputs[i];
    }
    PTC_RETURN_IF_ERROR(inner_->Run(in_ptrs_, out_ptrs_, ws + inner_ws_offset_));
    for (size_t i = 0; i < out_.size(); ++i) {
      if (IsHalf(out_[i].dtype)) {
        FromF32(out_[i].dtype, static_cast<const float*>(out_ptrs_[i]),
                static_cast<uint16_t*>(outputs[i]), out_[i].n);
      }
    }
    return absl::OkStatus();
  }

 private:
  struct Slot {
    ir::DType dtype;
    int64_t n;
    size_t offset;
  };
  HalfWrapperKernel() = default;
  std::unique_ptr<ir::Function> fn_;
  KernelPtr inner_;
  std::vector<Slot> in_, out_;
  std::vector<const void*> in_ptrs_;
  std::vector<void*> out_ptrs_;
  size_t inner_ws_offset_ = 0, ws_bytes_ = 0;
};

struct OpEntry {
  std::string_view op;
  KernelOr (*factory)(const ir::Node&);
  bool half_via_f32;  // f16/bf16 computed in f32 through HalfWrapperKernel
};

constexpr OpEntry kOps[] = {
    {"add", MakeElementwiseKernel, true},
    {"sub", MakeElementwiseKernel, true},
    {"mul", MakeElementwiseKernel, true},
    {"div", MakeElementwiseKernel, true},
    {"pow", MakeElementwiseKernel, true},
    {"max", MakeElementwiseKernel, true},
    {"min", MakeElementwiseKernel, true},
    {"equal", MakeElementwiseKernel, true},
    {"less", MakeElementwiseKernel, true},
    {"greater", MakeElementwiseKernel, true},
    {"less_equal", MakeElementwiseKernel, true},
    {"greater_equal", MakeElementwiseKernel, true},
    {"and", MakeElementwiseKernel, false},
    {"or", MakeElementwiseKernel, false},
    {"xor", MakeElementwiseKernel, false},
    {"not", MakeElementwiseKernel, false},
    {"neg", MakeElementwiseKernel, true},
    {"abs", MakeElementwiseKernel, true},
    {"sqrt", MakeElementwiseKernel, true},
    {"reciprocal", MakeElementwiseKernel, true},
    {"exp", MakeElementwiseKernel, true},
    {"log", MakeElementwiseKernel, true},
    {"erf", MakeElementwiseKernel, true},
    {"tanh", MakeElementwiseKernel, true},
    {"sigmoid", MakeElementwiseKernel, true},
    {"relu", MakeElementwiseKernel, true},
    {"floor", MakeElementwiseKernel, true},
    {"ceil", MakeElementwiseKernel, true},
    {"cos", MakeElementwiseKernel, true},
    {"sin", MakeElementwiseKernel, true},
    {"gelu", MakeElementwiseKernel, true},
    {"identity", MakeCopyKernel, false},
    {"where", MakeWhereKernel, false},
    {"cast", MakeCastKernel, false},
    {"matmul", MakeMatMulKernel, true},
    {"gemm", MakeGemmKernel, true},
    {"gemm_bgrad", MakeGemmBgradKernel, true},
    {"gemm_gelu_grad", MakeGemmGeluGradKernel, true},
    {"rotary", MakeRotaryKernel, true},
    {"swiglu", MakeSwigluKernel, true},
    {"attention", MakeAttentionKernel, false},
    {"attention_grad", MakeAttentionGradKernel, false},
    {"linear_ce_loss", MakeLinearCeLossKernel, false},
    {"softmax", MakeSoftmaxKernel, true},
    {"log_softmax", MakeSoftmaxKernel, true},
    {"layer_norm", MakeLayerNormKernel, true},
    {"reduce_sum", MakeReduceKernel, true},
    {"reduce_mean", MakeReduceKernel, true},
    {"reduce_max", MakeReduceKernel, true},
    {"reduce_min", MakeReduceKernel, true},
    {"reshape", MakeCopyKernel, false},
    {"expand", MakeExpandKernel, false},
    {"transpose", MakeTransposeKernel, false},
    {"split", MakeSplitKernel, false},
    {"slice", MakeSliceKernel, false},
    {"concat", MakeConcatKernel, false},
    {"gather", MakeGatherKernel, false},
    {"trilu", MakeTriluKernel, false},
    {"constant", MakeConstantKernel, false},
    {"softmax_ce_loss", MakeSoftmaxCeLossKernel, true},
    {"nll_loss", MakeNllLossKernel, true},
    {"dropout", MakeDropoutKernel, true},
};

const OpEntry* FindEntry(std::string_view op) {
  for (const OpEntry& e : kOps) {
    if (e.op == op) return &e;
  }
  return nullptr;
}

struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};

}  // namespace

KernelOr WrapHalfViaF32(const ir::Node& node, KernelOr (*factory)(const ir::Node&)) {
  return HalfWrapperKernel::Create(node, factory);
}

}  // namespace internal

absl::StatusOr<std::unique_ptr<Kernel>> CreateKernel(const ir::Node& node) {
  if (node.op().rfind("fused_", 0) == 0) {
    // Fused ops on f16 / bf16 (a --precision plan's fused_matmul evaluated on the host, or a
    // half-precision model) compute in f32 like the plain ops.
    bool half = false;
    for (ir::Value* v : node.inputs()) half |= v != nullptr && internal::IsHalf(v->type().dtype);
    for (ir::Value* v : node.outputs()) half |= internal::IsHalf(v->type().dtype);
    if (half) return internal::HalfWrapperKernel::Create(node, CreateFusedKernel);
    return CreateFusedKernel(node);
  }
  const internal::OpEntry* e = internal::FindEntry(node.op());
  if (e == nullptr) {
    PTC_ASSIGN_OR_RETURN(std::unique_ptr<Kernel> train, CreateTrainKernel(node));
    if (train != nullptr) return train;
    PTC_ASSIGN_OR_RETURN(std::unique_ptr<Kernel> decode, CreateDecodeKernel(node));
    if (decode != nullptr) return decode;
    return absl::UnimplementedError(
        absl::StrCat(node.Describe(), ": no CPU kernel for this op (see compiler/ir/ops.h)"));
  }
  for (ir::Value* v : node.inputs()) {
    if (v == nullptr) return internal::Invalid(node, "has a null input");
    if (v->type().num_elements() < 0) {
      return internal::Invalid(node, absl::StrCat("input type ", v->type().ToString(),
                                                   " has an invalid element count"));
    }
  }
  for (ir::Value* v : node.outputs()) {
    if (v->type().num_elements() < 0 || v->type().byte_size() < 0) {
      return internal::Invalid(node, absl::StrCat("output type ", v->type().ToString(),
                                                  " has an invalid element count"));
    }
  }
  if (e->half_via_f32) {
    bool half = false;
    for (ir::Value* v : node.inputs()) half |= internal::IsHalf(v->type().dtype);
    for (ir::Value* v : node.outputs()) half |= internal::IsHalf(v->type().dtype);
    if (half) return internal::HalfWrapperKernel::Create(node, e->factory);
  }
  return e->factory(node);
}

bool HasKernel(std::string_view op) {
  if (op.rfind("fused_", 0) == 0) return HasFusedKernel(op);
  return internal::FindEntry(op) != nullptr || HasTrainKernel(op) || HasDecodeKernel(op);
}

absl::StatusOr<std::vector<ir::Tensor>> EvaluateNode(const ir::Node& node,
                                                     const std::vector<ir::Tensor>& inputs) {
  if (node.op() == "constant" && node.has_attr("ref")) {
    return absl::InvalidArgumentError(absl::StrCat(
        node.Describe(),
        ": constant {ref=...} names a tensor of the module and cannot be evaluated without it; "
        "look the tensor up in Module::tensors()"));
  }
  if (inputs.size() != node.num_inputs()) {
    return absl::InvalidArgumentError(absl::StrCat(node.Describe(), ": expects ",
                                                   node.num_inputs(), " inputs, got ",
                                                   inputs.size()));
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].type() != node.input(i)->type()) {
      return absl::InvalidArgumentError(absl::StrCat(
          node.Describe(), ": input ", i, " has type ", inputs[i].type().ToString(),
          " but the node expects ", node.input(i)->type().ToString()));
    }
  }
  PTC_ASSIGN_OR_RETURN(std::unique_ptr<Kernel> kernel, CreateKernel(node));
  std::vector<ir::Tensor> outputs;
  std::vector<const void*> in_ptrs;
  std::vector<void*> out_ptrs;
  for (const ir::Tensor& t : inputs) in_ptrs.push_back(t.data());
  for (ir::Value* v : node.outputs()) {
    outputs.emplace_back(v->type().dtype, v->type().shape);
    out_ptrs.push_back(outputs.back().mutable_data());
  }
  size_t ws = kernel->WorkspaceBytes();
  std::unique_ptr<void, internal::AlignedFree> workspace(
      ws ? std::aligned_alloc(64, internal::Align64(ws)) : nullptr);
  if (ws && !workspace) return absl::ResourceExhaustedError("cannot allocate workspace");
  PTC_RETURN_IF_ERROR(kernel->Run(in_ptrs, out_ptrs, workspace.get()));
  return outputs;
}

}  // namespace ptc::cpu
