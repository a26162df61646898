// rotary(x, cos, sin) {inverse, rotary_dim, interleaved} (compiler/ir/ops_fused.cc): per row of
// x [rows, D] and pair i < h = rotary_dim / 2, with c, s the tables' values at the row's position
// and pair i (broadcast strides) and the pair (a, b) = (i, h + i), or (2i, 2i + 1) interleaved,
//   y[a] = x[a] c - x[b] s,  y[b] = x[b] c + x[a] s    (s negated for inverse=1);
// y[j] = x[j] for j >= rotary_dim.
// f32 / f64 x (f16 / bf16 through the f32 kernel, kernel.cc's HalfWrapperKernel); tables f32 or
// x's dtype. Rows in parallel; every output element is written by one thread.
#include <vector>

#include "absl/strings/str_cat.h"
#include "codegen/cpu/kernel_util.h"
#include "compiler/ir/strides.h"

namespace ptc::cpu::internal {
namespace {

template <typename T, typename C>
class RotaryKernel final : public Kernel {
 public:
  RotaryKernel(int64_t rows, int64_t d, int64_t half, bool inverse, bool interleaved,
               ir::Shape lead, std::vector<int64_t> lead_strides, int64_t pair_stride)
      : rows_(rows),
        d_(d),
        half_(half),
        inverse_(inverse),
        interleaved_(interleaved),
        lead_(std::move(lead)),
        lead_strides_(std::move(lead_strides)),
        pair_stride_(pair_stride) {}

  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const T* x = static_cast<const T*>(inputs[0]);
    const C* cos = static_cast<const C*>(inputs[1]);
    const C* sin = static_cast<const C*>(inputs[2]);
    T* y = static_cast<T*>(outputs[0]);
    const int64_t h = half_, d = d_;
    const int64_t da = interleaved_ ? 2 : 1, db = interleaved_ ? 1 : h;  // a = da i, b = a + db
    const T sign = inverse_ ? T(-1) : T(1);
    ParallelFor(rows_, std::max<int64_t>(1, kElementGrain / std::max<int64_t>(d, 1)),
                [&](int64_t r0, int64_t r1) {
                  for (int64_t r = r0; r < r1; ++r) {
                    // The tables' offset of row r: its leading index times their strides.
                    int64_t off = 0;
                    for (int64_t q = r, a = static_cast<int64_t>(lead_.size()) - 1; a >= 0; --a) {
                      off += (q % lead_[a]) * lead_strides_[a];
                      q /= lead_[a];
                    }
                    const T* xr = x + r * d;
                    T* yr = y + r * d;
                    for (int64_t i = 0; i < h; ++i) {
                      const T c = static_cast<T>(cos[off + i * pair_stride_]);
                      const T s = sign * static_cast<T>(sin[off + i * pair_stride_]);
                      const int64_t a = da * i, b = a + db;
                      const T x1 = xr[a], x2 = xr[b];
                      yr[a] = x1 * c - x2 * s;
                      yr[b] = x2 * c + x1 * s;
                    }
                    for (int64_t j = 2 * h; j < d; ++j) yr[j] = xr[j];
                  }
                });
    return absl::OkStatus();
  }

 private:
  int64_t rows_, d_, half_;
  bool inverse_, interleaved_;
  ir::Shape lead_;                     // x's leading dims (all but the last)
  std::vector<int64_t> lead_strides_;  // the tables' element strides over them (0: broadcast)
  int64_t pair_stride_;                // the tables' stride over the pairs (0 or 1)
};

}  // namespace

KernelOr MakeRotaryKernel(const ir::Node& node) {
  if (node.num_inputs() != 3 || node.num_outputs() != 1) {
    return Invalid(node, "takes x, cos, sin and has one output");
  }
  const ir::TensorType& x = node.input(0)->type();
  const ir::TensorType& t = node.input(1)->type();
  if (node.input(2)->type() != t || x.rank() < 1 || x.shape.back() % 2 != 0) {
    return Invalid(node, absl::StrCat("needs x [..., D] with D even and one type for cos and sin, "
                                      "got ", x.ToString(), ", ", t.ToString(), ", ",
                                      node.input(2)->type().ToString()));
  }
  const int64_t inverse = node.GetInt("inverse", 0).value_or(0);
  const int64_t interleaved = node.GetInt("interleaved", 0).value_or(0);
  const int64_t rdim = node.GetInt("rotary_dim", x.shape.back()).value_or(x.shape.back());
  if (rdim <= 0 || rdim % 2 != 0 || rdim > x.shape.back()) {
    return Invalid(node, absl::StrCat("rotary_dim ", rdim, " must be even and in (0, ",
                                      x.shape.back(), "]"));
  }
  ir::Shape half = x.shape;
  half.back() = rdim / 2;
  if (t.rank() > static_cast<int>(half.size())) {
    return Invalid(node, absl::StrCat("cos / sin ", t.ToString(), " have more dims than x's half ",
                                      ir::ShapeToString(half)));
  }
  const std::vector<int64_t> strides = ir::BroadcastStrides(t.shape, half);
  ir::Shape lead(half.begin(), half.end() - 1);
  std::vector<int64_t> lead_strides(strides.begin(), strides.end() - 1);
  const int64_t pair_stride = strides.back();
  const int64_t d = x.shape.back();
  const int64_t rows = d == 0 ? 0 : x.num_elements() / d;
  auto make = [&](auto tx, auto tc) -> KernelOr {
    using T = decltype(tx);
    using C = decltype(tc);
    return KernelPtr(new RotaryKernel<T, C>(rows, d, rdim / 2, inverse != 0, interleaved != 0,
                                            lead, lead_strides, pair_stride));
  };
  if (x.dtype == ir::DType::kF32 && t.dtype == ir::DType::kF32) return make(float{}, float{});
  if (x.dtype == ir::DType::kF64 && t.dtype == ir::DType::kF64) return make(double{}, double{});
  if (x.dtype == ir::DType::kF64 && t.dtype == ir::DType::kF32) return make(double{}, float{});
  return absl::UnimplementedError(absl::StrCat(
      node.Describe(), ": no CPU kernel for rotary on ", x.ToString(), " with tables ",
      t.ToString(), " (x f32 / f64 / f16 / bf16, tables f32 or x's dtype)"));
}

}  // namespace ptc::cpu::internal
