// annotate-causal: attention / attention_grad whose mask is a constant that masks exactly the
// keys after each query (bottom-right aligned: key j of query i is masked iff
// j > i + Tk - Tq) get the attribute causal=1. The mask stays an operand (the CPU kernels, the
// hand-written CUDA kernels and every fallback read it); a kernel that knows the pattern
// (cuDNN's fused attention, runtime/cuda/cudnn_attention.cc) uses the attribute instead.
//
// Masks: bool (true = masked out) or additive (masked: at most -1e4; kept: 0), with any leading
// broadcast dims; every [Tq, Tk] slice must be the triangle. Counters: "annotated",
// "declined.not_constant", "declined.not_causal".
//
//   before:  %m = constant() {value=dense<bool[3,3]: false, true, true, false, false, true,
//                                                    false, false, false>} : bool[3,3]
//            %o = attention(%q, %k, %v, %m) {layout="bthd"} : f32[1,3,2,4]
//   after:   %o = attention(%q, %k, %v, %m) {causal=1, layout="bthd"} : f32[1,3,2,4]
#include "compiler/ir/ops_fused.h"
#include "compiler/support/status.h"
#include "passes/matcher.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

// Whether every [tq, tk] slice of t (its last two dims) masks exactly the future keys.
bool IsCausalMask(const ir::Tensor& t, int64_t tq, int64_t tk) {
  const ir::Shape& s = t.shape();
  if (s.size() < 2 || s[s.size() - 2] != tq || s.back() != tk) return false;
  const bool is_bool = t.dtype() == ir::DType::kBool;
  for (int64_t e = 0; e < t.num_elements(); ++e) {
    const int64_t i = (e / tk) % tq, j = e % tk;
    const double x = t.GetDouble(e);
    const bool masked = is_bool ? x != 0 : x <= -1e4;
    if (j > i + tk - tq ? !masked : x != 0) return false;
  }
  return true;
}

class AnnotateCausalPass : public Pass {
 public:
  std::string_view name() const override { return "annotate-causal"; }

  absl::StatusOr<bool> Run(ir::Module& module) override {
    bool changed = false;
    for (const auto& fn : module.functions()) {
      for (const auto& n : fn->nodes()) {
        const bool fwd = n->op() == "attention";
        if (!fwd && n->op() != "attention_grad") continue;
        const int q = fwd ? 0 : 1;  // attention_grad(dy, q, k, v[, mask][, counter][, o, lse])
        const int saved = !fwd && n->GetInt("saved_stats", 0).value_or(0) != 0 ? 2 : 0;
        const ir::Value* mask_operand = ir::AttentionMask(*n, q, saved);
        if (mask_operand == nullptr || n->has_attr("causal")) continue;
        PTC_ASSIGN_OR_RETURN(std::string layout, n->GetString("layout", "bhtd"));
        const int t_axis = layout == "bthd" ? 1 : 2;
        const ir::TensorType& qt = n->input(q)->type();
        const ir::TensorType& kt = n->input(q + 1)->type();
        if (qt.rank() != 4 || kt.rank() != 4) continue;
        std::optional<ir::Tensor> mask = ConstantTensor(module, mask_operand);
        if (!mask.has_value()) {
          Count("declined.not_constant");
          continue;
        }
        if (!IsCausalMask(*mask, qt.shape[t_axis], kt.shape[t_axis])) {
          Count("declined.not_causal");
          continue;
        }
        n->set_attr("causal", int64_t{1});
        Count("annotated");
        changed = true;
      }
    }
    return changed;
  }
};

}  // namespace

std::unique_ptr<Pass> CreateAnnotateCausalPass() { return std::make_unique<AnnotateCausalPass>(); }

}  // namespace ptc::passes
