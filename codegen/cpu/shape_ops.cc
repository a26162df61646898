// Data-movement kernels (dtype-agnostic: they move elements by size): reshape / identity,
// expand, transpose, split, slice, concat, gather, trilu, constant, dropout.
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "codegen/cpu/kernel_util.h"
#include "compiler/ir/dropout.h"

namespace ptc::cpu::internal {
namespace {

using ir::DType;

constexpr int kMaxRank = 64;

// Parallel memcpy for large buffers.
void Copy(void* dst, const void* src, size_t bytes) {
  if (dst == src || bytes == 0) return;
  ParallelFor(static_cast<int64_t>(bytes), kElementGrain * 8, [&](int64_t b, int64_t e) {
    std::memcpy(static_cast<char*>(dst) + b, static_cast<const char*>(src) + b, e - b);
  });
}

class CopyKernel : public Kernel {
 public:
  explicit CopyKernel(size_t bytes) : bytes_(bytes) {}
  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    Copy(outputs[0], inputs[0], bytes_);
    return absl::OkStatus();
  }

 private:
  size_t bytes_;
};

// Copies along `dims` (collapsed) with input element strides; output dense. Innermost input
// stride 1 becomes memcpy of rows.
template <typename E>
class StridedCopyKernel : public Kernel {
 public:
  StridedCopyKernel(BroadcastPlan plan, int64_t in_base) : plan_(std::move(plan)), base_(in_base) {}
  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const E* x = static_cast<const E*>(inputs[0]) + base_;
    E* y = static_cast<E*>(outputs[0]);
    const int64_t s = plan_.inner_stride(0);
    ParallelFor(plan_.total, kElementGrain, [&](int64_t begin, int64_t end) {
      plan_.ForEachSegment(begin, end, [&](int64_t o, const auto& off, int64_t len) {
        const E* __restrict xx = x + off[0];
        E* __restrict yy = y + o;
        if (s == 1) {
          std::memcpy(yy, xx, len * sizeof(E));
        } else if (s == 0) {
          const E v = xx[0];
          for (int64_t i = 0; i < len; ++i) yy[i] = v;
        } else {
          for (int64_t i = 0; i < len; ++i) yy[i] = xx[i * s];
        }
      });
    });
    return absl::OkStatus();
  }

 private:
  BroadcastPlan plan_;
  int64_t base_;
};

KernelOr MakeStridedCopy(size_t esize, BroadcastPlan plan, int64_t base) {
  switch (esize) {
    case 1: return KernelPtr(new StridedCopyKernel<uint8_t>(std::move(plan), base));
    case 2: return KernelPtr(new StridedCopyKernel<uint16_t>(std::move(plan), base));
    case 4: return KernelPtr(new StridedCopyKernel<uint32_t>(std::move(plan), base));
    case 8: return KernelPtr(new StridedCopyKernel<uint64_t>(std::move(plan), base));
  }
  return absl::InternalError("bad element size");
}

// A BroadcastPlan for one input with arbitrary strides (may be negative): collapse dims.
BroadcastPlan StridedPlan(const ir::Shape& out, const std::vector<int64_t>& strides) {
  BroadcastPlan plan;
  plan.num_inputs = 1;
  plan.total = ir::NumElements(out);
  for (size_t d = 0; d < out.size(); ++d) {
    if (out[d] == 1) continue;
    if (!plan.dims.empty() && plan.strides.back()[0] == strides[d] * out[d]) {
      plan.dims.back() *= out[d];
      plan.strides.back()[0] = strides[d];
      continue;
    }
    plan.dims.push_back(out[d]);
    plan.strides.push_back({strides[d], 0, 0});
  }
  if (plan.dims.empty() || plan.total == 0) {
    plan.dims.assign(1, plan.total == 0 ? 0 : 1);
    plan.strides.assign(1, {0, 0, 0});
  }
  return plan;
}

// ---------------------------------------------------------------------------------------------
// transpose: 2-D tiles over (the output dim that reads input-contiguous, the last output dim).

template <typename E>
class TransposeKernel : public Kernel {
 public:
  // dims / in_strides: collapsed output dims with their input strides. If the last output dim
  // has input stride 1, rows are memcpy'd; otherwise dim p (input stride 1) and the last dim
  // are tiled.
  TransposeKernel(std::vector<int64_t> dims, std::vector<int64_t> in_strides)
      : dims_(std::move(dims)), is_(std::move(in_strides)) {
    const int r = static_cast<int>(dims_.size());
    os_.assign(r, 0);
    int64_t s = 1;
    for (int d = r - 1; d >= 0; --d) {
      os_[d] = s;
      s *= dims_[d];
    }
    total_ = s;
    p_ = -1;
    for (int d = 0; d < r; ++d) {
      if (is_[d] == 1) p_ = d;
    }
    plan_.num_inputs = 1;
    plan_.total = total_;
    plan_.dims = dims_;
    for (int d = 0; d < r; ++d) plan_.strides.push_back({is_[d], 0, 0});
  }

  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const E* x = static_cast<const E*>(inputs[0]);
    E* y = static_cast<E*>(outputs[0]);
    const int r = static_cast<int>(dims_.size());
    if (total_ == 0) return absl::OkStatus();
    const int q = r - 1;
    if (p_ < 0 || p_ == q) {  // no tiling needed (or impossible): row loop
      const int64_t s = is_[q];
      ParallelFor(total_, kElementGrain, [&](int64_t b, int64_t e) {
        plan_.ForEachSegment(b, e, [&](int64_t o, const auto& off, int64_t len) {
          if (s == 1) {
            std::memcpy(y + o, x + off[0], len * sizeof(E));
          } else {
            for (int64_t i = 0; i < len; ++i) y[o + i] = x[off[0] + i * s];
          }
        });
      });
      return absl::OkStatus();
    }
    // Outer iteration over all dims except p and q.
    const int64_t dp = dims_[p_], dq = dims_[q];
    const int64_t outer = total_ / (dp * dq);
    const int64_t isq = is_[q], osp = os_[p_];
    constexpr int64_t kTile = 32;
    const int64_t tiles_p = (dp + kTile - 1) / kTile;
    ParallelFor(outer * tiles_p, std::max<int64_t>(1, kElementGrain / (kTile * dq)),
                [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        int64_t o = t / tiles_p, tp = t % tiles_p;
        // Offsets of outer index o.
        int64_t in_off = 0, out_off = 0, rem = o;
        for (int d = r - 1; d >= 0; --d) {
          if (d == p_ || d == q) continue;
          int64_t i = rem % dims_[d];
          rem /= dims_[d];
          in_off += i * is_[d];
          out_off += i * os_[d];
        }
        const int64_t p0 = tp * kTile, p1 = std::min(dp, p0 + kTile);
        for (int64_t q0 = 0; q0 < dq; q0 += kTile) {
          const int64_t q1 = std::min(dq, q0 + kTile);
          for (int64_t ip = p0; ip < p1; ++ip) {
            E* __restrict yy = y + out_off + ip * osp;
            const E* __restrict xx = x + in_off + ip;
            for (int64_t iq = q0; iq < q1; ++iq) yy[iq] = xx[iq * isq];
          }
        }
      }
    });
    return absl::OkStatus();
  }

 private:
  std::vector<int64_t> dims_, is_, os_;
  int64_t total_ = 0;
  int p_ = -1;
  BroadcastPlan plan_;  // row loop when the last output dim is input-contiguous
};

// ---------------------------------------------------------------------------------------------
// concat / split: [outer, axis_dim * inner] blocks.

class ConcatKernel : public Kernel {
 public:
  ConcatKernel(int64_t outer, std::vector<int64_t> chunk_bytes)
      : outer_(outer), chunk_(std::move(chunk_bytes)) {
    row_ = std::accumulate(chunk_.begin(), chunk_.end(), int64_t{0});
  }
  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    char* y = static_cast<char*>(outputs[0]);
    ParallelFor(outer_, std::max<int64_t>(1, kElementGrain * 4 / std::max<int64_t>(row_, 1)),
                [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        char* dst = y + o * row_;
        for (size_t i = 0; i < chunk_.size(); ++i) {
          if (chunk_[i]) {
            std::memcpy(dst, static_cast<const char*>(inputs[i]) + o * chunk_[i], chunk_[i]);
          }
          dst += chunk_[i];
        }
      }
    });
    return absl::OkStatus();
  }

 private:
  int64_t outer_, row_;
  std::vector<int64_t> chunk_;
};

class SplitKernel : public Kernel {
 public:
  SplitKernel(int64_t outer, std::vector<int64_t> chunk_bytes)
      : outer_(outer), chunk_(std::move(chunk_bytes)) {
    row_ = std::accumulate(chunk_.begin(), chunk_.end(), int64_t{0});
  }
  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const char* x = static_cast<const char*>(inputs[0]);
    ParallelFor(outer_, std::max<int64_t>(1, kElementGrain * 4 / std::max<int64_t>(row_, 1)),
                [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        const char* src = x + o * row_;
        for (size_t i = 0; i < chunk_.size(); ++i) {
          if (chunk_[i]) std::memcpy(static_cast<char*>(outputs[i]) + o * chunk_[i], src, chunk_[i]);
          src += chunk_[i];
        }
      }
    });
    return absl::OkStatus();
  }

 private:
  int64_t outer_, row_;
  std::vector<int64_t> chunk_;
};

// ---------------------------------------------------------------------------------------------
// gather(data, indices) {axis}: data [outer, n, inner] -> out [outer, num_idx, inner].

template <typename I>
class GatherKernel : public Kernel {
 public:
  GatherKernel(int64_t outer, int64_t n, int64_t inner_bytes, int64_t num_idx, std::string where)
      : outer_(outer), n_(n), inner_(inner_bytes), num_idx_(num_idx), where_(std::move(where)) {}
  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const char* x = static_cast<const char*>(inputs[0]);
    const I* idx = static_cast<const I*>(inputs[1]);
    char* y = static_cast<char*>(outputs[0]);
    for (int64_t i = 0; i < num_idx_; ++i) {
      int64_t v = idx[i];
      if (v < -n_ || v >= n_) {
        return absl::InvalidArgumentError(absl::StrCat(where_, ": index ", v, " (element ", i,
                                                       ") is out of range for a dimension of ",
                                                       n_));
      }
    }
    const int64_t rows = outer_ * num_idx_;
    ParallelFor(rows, std::max<int64_t>(1, kElementGrain * 4 / std::max<int64_t>(inner_, 1)),
                [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t o = r / num_idx_, i = r % num_idx_;
        int64_t v = idx[i];
        if (v < 0) v += n_;
        std::memcpy(y + r * inner_, x + (o * n_ + v) * inner_, inner_);
      }
    });
    return absl::OkStatus();
  }

 private:
  int64_t outer_, n_, inner_, num_idx_;
  std::string where_;
};

// ---------------------------------------------------------------------------------------------
// trilu on the last two dims.

template <typename E>
class TriluKernel : public Kernel {
 public:
  TriluKernel(int64_t batch, int64_t rows, int64_t cols, bool upper, int64_t k)
      : batch_(batch), rows_(rows), cols_(cols), upper_(upper), k_(k) {}
  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const E* x = static_cast<const E*>(inputs[0]);
    E* y = static_cast<E*>(outputs[0]);
    ParallelFor(batch_ * rows_, std::max<int64_t>(1, kElementGrain / std::max<int64_t>(cols_, 1)),
                [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t i = r % rows_;
        const E* xr = x + r * cols_;
        E* yr = y + r * cols_;
        // upper keeps j - i >= k; lower keeps j - i <= k.
        for (int64_t j = 0; j < cols_; ++j) {
          bool keep = upper_ ? (j - i >= k_) : (j - i <= k_);
          yr[j] = keep ? xr[j] : E(0);
        }
      }
    });
    return absl::OkStatus();
  }

 private:
  int64_t batch_, rows_, cols_;
  bool upper_;
  int64_t k_;
};

// ---------------------------------------------------------------------------------------------

class ConstantKernel : public Kernel {
 public:
  explicit ConstantKernel(ir::Tensor t) : t_(std::move(t)) {}
  absl::Status Run(absl::Span<const void* const>, absl::Span<void* const> outputs,
                   void*) override {
    Copy(outputs[0], t_.data(), t_.nbytes());
    return absl::OkStatus();
  }

 private:
  ir::Tensor t_;
};

// dropout(x [, counter]) {ratio, seed} -> (y [, mask]) (compiler/ir/ops.h): element i is kept
// where compiler/ir/dropout.h's hash of (seed, counter, i) passes the threshold, so results do
// not depend on the thread count, and the CUDA kernel draws the same mask.
template <typename T>
class DropoutKernel : public Kernel {
 public:
  DropoutKernel(int64_t n, double ratio, uint64_t seed, ir::DType counter)
      : n_(n), ratio_(ratio), seed_(seed), counter_(counter) {}
  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const T* x = static_cast<const T*>(inputs[0]);
    T* y = static_cast<T*>(outputs[0]);
    uint8_t* mask = outputs.size() > 1 ? static_cast<uint8_t*>(outputs[1]) : nullptr;
    const int64_t counter = ir::DropoutCounter(inputs.size() > 1 ? inputs[1] : nullptr,
                                               counter_ == ir::DType::kI32);
    const uint32_t threshold = ir::DropoutThreshold(ratio_);
    const T scale = static_cast<T>(ir::DropoutScale(ratio_));
    const uint64_t key = ir::DropoutKey(seed_, counter);
    ParallelFor(n_, kElementGrain, [&](int64_t b, int64_t e) {
      if (mask == nullptr) {
        DropoutApply(key, static_cast<uint64_t>(b), e - b, threshold, scale, x + b, y + b);
        return;
      }
      ir::DropoutForEach(key, static_cast<uint64_t>(b), e - b, threshold,
                         [&](int64_t j, bool keep) {
                           const int64_t i = b + j;
                           y[i] = keep ? x[i] * scale : T(0);
                           mask[i] = keep;
                         });
    });
    return absl::OkStatus();
  }

 private:
  int64_t n_;
  double ratio_;
  uint64_t seed_;
  ir::DType counter_;
};

}  // namespace

KernelOr MakeCopyKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 1, 1, 1, 1));
  const ir::TensorType& in = node.input(0)->type();
  const ir::TensorType& out = node.output(0)->type();
  if (in.dtype != out.dtype || in.num_elements() != out.num_elements()) {
    return Invalid(node, absl::StrCat("cannot reshape ", in.ToString(), " to ", out.ToString()));
  }
  if (node.op() == "reshape" && node.has_attr("shape")) {
    PTC_ASSIGN_OR_RETURN(std::vector<int64_t> shape, node.GetInts("shape"));
    if (shape != out.shape) {
      return Invalid(node, absl::StrCat("attribute shape=", ir::ShapeToString(shape),
                                        " disagrees with the output type ", out.ToString()));
    }
  }
  if (node.op() == "identity" && in.shape != out.shape) {
    return Invalid(node, "identity output type must equal the input type");
  }
  return KernelPtr(new CopyKernel(static_cast<size_t>(in.byte_size())));
}

KernelOr MakeExpandKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 1, 1, 1, 1));
  const ir::TensorType& in = node.input(0)->type();
  const ir::TensorType& out = node.output(0)->type();
  if (in.dtype != out.dtype) return Invalid(node, "output dtype must equal the input dtype");
  auto plan = MakeBroadcastPlan(out.shape, {in.shape});
  if (!plan.ok()) return Invalid(node, plan.status().message());
  return MakeStridedCopy(ir::DTypeSize(in.dtype), std::move(plan).value(), 0);
}

KernelOr MakeTransposeKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 1, 1, 1, 1));
  const ir::TensorType& in = node.input(0)->type();
  const ir::TensorType& out = node.output(0)->type();
  const int r = in.rank();
  std::vector<int64_t> perm(r);
  std::iota(perm.rbegin(), perm.rend(), 0);  // default: reverse
  if (node.has_attr("perm")) {
    PTC_ASSIGN_OR_RETURN(perm, node.GetInts("perm"));
  }
  std::vector<bool> seen(r, false);
  bool ok = static_cast<int>(perm.size()) == r && r <= kMaxRank;
  for (int64_t p : perm) {
    if (!ok || p < 0 || p >= r || seen[p]) {
      ok = false;
      break;
    }
    seen[p] = true;
  }
  if (!ok) {
    return Invalid(node, absl::StrCat("perm [", absl::StrJoin(perm, ","),
                                      "] is not a permutation of the dims of ", in.ToString()));
  }
  ir::Shape want(r);
  for (int d = 0; d < r; ++d) want[d] = in.shape[perm[d]];
  if (out.dtype != in.dtype || out.shape != want) {
    return Invalid(node, absl::StrCat("output type ", out.ToString(), " should be ",
                                      DTypeStr(in.dtype), ir::ShapeToString(want)));
  }
  std::vector<int64_t> in_strides(r);
  int64_t s = 1;
  for (int d = r - 1; d >= 0; --d) {
    in_strides[d] = s;
    s *= in.shape[d];
  }
  // Output dims with input strides; collapse (drop 1s, merge dims contiguous in the input).
  std::vector<int64_t> dims, strides;
  for (int d = 0; d < r; ++d) {
    int64_t dim = want[d], st = in_strides[perm[d]];
    if (dim == 1) continue;
    if (!dims.empty() && strides.back() == st * dim) {
      dims.back() *= dim;
      strides.back() = st;
      continue;
    }
    dims.push_back(dim);
    strides.push_back(st);
  }
  if (dims.empty()) {
    dims.push_back(in.num_elements() == 0 ? 0 : 1);
    strides.push_back(1);
  }
  if (in.num_elements() == 0) {
    dims.assign(1, 0);
    strides.assign(1, 1);
  }
  switch (ir::DTypeSize(in.dtype)) {
    case 1: return KernelPtr(new TransposeKernel<uint8_t>(dims, strides));
    case 2: return KernelPtr(new TransposeKernel<uint16_t>(dims, strides));
    case 4: return KernelPtr(new TransposeKernel<uint32_t>(dims, strides));
    case 8: return KernelPtr(new TransposeKernel<uint64_t>(dims, strides));
  }
  return Unsupported(node, "element size");
}

namespace {
absl::StatusOr<int64_t> Axis(const ir::Node& node, int rank) {
  PTC_ASSIGN_OR_RETURN(int64_t axis, node.GetInt("axis", 0));
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank) {
    return Invalid(node, absl::StrCat("axis ", axis, " is out of range for rank ", rank));
  }
  return axis;
}
}  // namespace

KernelOr MakeSplitKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 1, 1, 1, -1));
  const ir::TensorType& in = node.input(0)->type();
  PTC_ASSIGN_OR_RETURN(int64_t axis, Axis(node, in.rank()));
  std::vector<int64_t> sizes;
  if (node.has_attr("sizes")) {
    PTC_ASSIGN_OR_RETURN(sizes, node.GetInts("sizes"));
  } else {
    for (ir::Value* v : node.outputs()) {
      sizes.push_back(v->type().rank() == in.rank() ? v->type().shape[axis] : -1);
    }
  }
  if (sizes.size() != node.num_outputs()) {
    return Invalid(node, absl::StrCat("has ", node.num_outputs(), " outputs but ", sizes.size(),
                                      " sizes"));
  }
  int64_t total = 0;
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= in.shape[d];
  for (int64_t d = axis + 1; d < in.rank(); ++d) inner *= in.shape[d];
  const int64_t es = ir::DTypeSize(in.dtype);
  std::vector<int64_t> chunks;
  for (size_t i = 0; i < sizes.size(); ++i) {
    ir::Shape want = in.shape;
    want[axis] = sizes[i];
    if (sizes[i] < 0 || node.output(i)->type() != ir::TensorType{in.dtype, want}) {
      return Invalid(node, absl::StrCat("output ", i, " has type ", OutType(node, i),
                                        ", expected ", DTypeStr(in.dtype),
                                        ir::ShapeToString(want)));
    }
    total += sizes[i];
    chunks.push_back(sizes[i] * inner * es);
  }
  if (total != in.shape[axis]) {
    return Invalid(node, absl::StrCat("sizes sum to ", total, " but dim ", axis, " of ",
                                      in.ToString(), " is ", in.shape[axis]));
  }
  return KernelPtr(new SplitKernel(outer, std::move(chunks)));
}

KernelOr MakeConcatKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 1, -1, 1, 1));
  const ir::TensorType& out = node.output(0)->type();
  PTC_ASSIGN_OR_RETURN(int64_t axis, Axis(node, out.rank()));
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= out.shape[d];
  for (int64_t d = axis + 1; d < out.rank(); ++d) inner *= out.shape[d];
  const int64_t es = ir::DTypeSize(out.dtype);
  std::vector<int64_t> chunks;
  int64_t total = 0;
  for (size_t i = 0; i < node.num_inputs(); ++i) {
    const ir::TensorType& t = node.input(i)->type();
    bool ok = t.dtype == out.dtype && t.rank() == out.rank();
    for (int d = 0; ok && d < t.rank(); ++d) {
      if (d != axis && t.shape[d] != out.shape[d]) ok = false;
    }
    if (!ok) {
      return Invalid(node, absl::StrCat("input ", i, " ", t.ToString(),
                                        " does not concatenate into ", out.ToString(),
                                        " along axis ", axis));
    }
    total += t.shape[axis];
    chunks.push_back(t.shape[axis] * inner * es);
  }
  if (total != out.shape[axis]) {
    return Invalid(node, absl::StrCat("inputs sum to ", total, " along axis ", axis, ", output is ",
                                      out.ToString()));
  }
  return KernelPtr(new ConcatKernel(outer, std::move(chunks)));
}

KernelOr MakeSliceKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 1, 1, 1, 1));
  const ir::TensorType& in = node.input(0)->type();
  const ir::TensorType& out = node.output(0)->type();
  const int r = in.rank();
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> starts, node.GetInts("starts"));
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> ends, node.GetInts("ends"));
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> steps,
                       node.GetInts("steps", std::vector<int64_t>(r, 1)));
  if (static_cast<int>(starts.size()) != r || static_cast<int>(ends.size()) != r ||
      static_cast<int>(steps.size()) != r) {
    return Invalid(node, absl::StrCat("starts/ends/steps need one entry per dim of ",
                                      in.ToString()));
  }
  ir::Shape want(r);
  std::vector<int64_t> in_strides(r), strides(r);
  int64_t s = 1;
  for (int d = r - 1; d >= 0; --d) {
    in_strides[d] = s;
    s *= in.shape[d];
  }
  int64_t base = 0;
  for (int d = 0; d < r; ++d) {
    const int64_t dim = in.shape[d], st = starts[d], en = ends[d], step = steps[d];
    bool ok = step > 0 ? (0 <= st && st <= en && en <= dim)
                       : (step < 0 && -1 <= en && en <= st && st <= dim - 1);
    if (!ok) {
      return Invalid(node, absl::StrCat("dim ", d, ": start ", st, ", end ", en,
                                        ", step ", step, " are not normalized for size ", dim));
    }
    int64_t n = step > 0 ? (en - st + step - 1) / step : (st - en + (-step) - 1) / (-step);
    want[d] = std::max<int64_t>(0, n);
    if (want[d] > 0) base += st * in_strides[d];
    strides[d] = step * in_strides[d];
  }
  if (out.dtype != in.dtype || out.shape != want) {
    return Invalid(node, absl::StrCat("output type ", out.ToString(), " should be ",
                                      DTypeStr(in.dtype), ir::ShapeToString(want)));
  }
  if (ir::NumElements(want) == 0) base = 0;
  return MakeStridedCopy(ir::DTypeSize(in.dtype), StridedPlan(want, strides), base);
}

KernelOr MakeGatherKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 2, 2, 1, 1));
  const ir::TensorType& data = node.input(0)->type();
  const ir::TensorType& idx = node.input(1)->type();
  const ir::TensorType& out = node.output(0)->type();
  PTC_ASSIGN_OR_RETURN(int64_t axis, Axis(node, data.rank()));
  ir::Shape want(data.shape.begin(), data.shape.begin() + axis);
  want.insert(want.end(), idx.shape.begin(), idx.shape.end());
  want.insert(want.end(), data.shape.begin() + axis + 1, data.shape.end());
  if (out.dtype != data.dtype || out.shape != want) {
    return Invalid(node, absl::StrCat("output type ", out.ToString(), " should be ",
                                      DTypeStr(data.dtype), ir::ShapeToString(want)));
  }
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= data.shape[d];
  for (int64_t d = axis + 1; d < data.rank(); ++d) inner *= data.shape[d];
  const int64_t inner_bytes = inner * ir::DTypeSize(data.dtype);
  const int64_t n = data.shape[axis], num_idx = idx.num_elements();
  if (idx.dtype == DType::kI64) {
    return KernelPtr(new GatherKernel<int64_t>(outer, n, inner_bytes, num_idx, node.Describe()));
  }
  if (idx.dtype == DType::kI32) {
    return KernelPtr(new GatherKernel<int32_t>(outer, n, inner_bytes, num_idx, node.Describe()));
  }
  return Invalid(node, absl::StrCat("indices must be i32 or i64, got ", idx.ToString()));
}

KernelOr MakeTriluKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 1, 1, 1, 1));
  const ir::TensorType& in = node.input(0)->type();
  if (node.output(0)->type() != in) return Invalid(node, "output type must equal the input type");
  if (in.rank() < 2) return Invalid(node, absl::StrCat("input must have rank >= 2, got ", in.ToString()));
  PTC_ASSIGN_OR_RETURN(int64_t upper, node.GetInt("upper", 1));
  PTC_ASSIGN_OR_RETURN(int64_t k, node.GetInt("k", 0));
  int64_t rows = in.shape[in.rank() - 2], cols = in.shape[in.rank() - 1];
  int64_t batch = (rows * cols != 0) ? in.num_elements() / (rows * cols) : 0;
  switch (ir::DTypeSize(in.dtype)) {
    case 1: return KernelPtr(new TriluKernel<uint8_t>(batch, rows, cols, upper != 0, k));
    case 2: return KernelPtr(new TriluKernel<uint16_t>(batch, rows, cols, upper != 0, k));
    case 4: return KernelPtr(new TriluKernel<uint32_t>(batch, rows, cols, upper != 0, k));
    case 8: return KernelPtr(new TriluKernel<uint64_t>(batch, rows, cols, upper != 0, k));
  }
  return Unsupported(node, "element size");
}

KernelOr MakeConstantKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 0, 0, 1, 1));
  if (node.has_attr("ref")) {
    return Invalid(node, "constant {ref=...} names a tensor of the module; the executor binds it "
                         "directly and it cannot be evaluated without the module");
  }
  PTC_ASSIGN_OR_RETURN(ir::Tensor t, node.GetTensor("value"));
  if (t.type() != node.output(0)->type()) {
    return Invalid(node, absl::StrCat("value has type ", t.type().ToString(),
                                      " but the output type is ", OutType(node, 0)));
  }
  return KernelPtr(new ConstantKernel(std::move(t)));
}

KernelOr MakeDropoutKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 1, 2, 1, 2));
  const ir::TensorType& in = node.input(0)->type();
  if (node.output(0)->type() != in) return Invalid(node, "output type must equal the input type");
  if (node.num_outputs() == 2 && node.output(1)->type() != ir::TensorType{DType::kBool, in.shape}) {
    return Invalid(node, "mask output must be bool with the input's shape");
  }
  PTC_ASSIGN_OR_RETURN(double ratio, node.GetFloat("ratio", 0.5));
  PTC_ASSIGN_OR_RETURN(int64_t seed, node.GetInt("seed", 0));
  if (!(ratio >= 0.0 && ratio <= 1.0)) {
    return Invalid(node, absl::StrCat("ratio ", ratio, " must be in [0, 1]"));
  }
  const DType counter = node.num_inputs() > 1 ? node.input(1)->type().dtype : DType::kI64;
  if (counter != DType::kI32 && counter != DType::kI64) {
    return Invalid(node, "the counter must be an i32 or i64 scalar");
  }
  switch (in.dtype) {
    case DType::kF32:
      return KernelPtr(new DropoutKernel<float>(in.num_elements(), ratio, seed, counter));
    case DType::kF64:
      return KernelPtr(new DropoutKernel<double>(in.num_elements(), ratio, seed, counter));
    default: return Unsupported(node, absl::StrCat("dtype ", in.ToString(), " is not supported"));
  }
}

}  // namespace ptc::cpu::internal
