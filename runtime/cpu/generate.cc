#include "runtime/cpu/generate.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "compiler/support/status.h"
#include "runtime/cpu/executor.h"

namespace ptc::generate {

absl::StatusOr<std::string> Generate(const plan::Plan& plan, const GenerateOptions& o) {
  const ir::Function* f = plan.module ? plan.module->main() : nullptr;
  if (f == nullptr) return absl::InvalidArgumentError("plan has no main function");
  const ir::Value* ids = nullptr;
  for (const ir::Value* p : f->params()) {
    if (p->is_param()) continue;
    if (ids != nullptr) {
      return absl::InvalidArgumentError(
          "generation needs a plan with one input (token ids); compile the model without its "
          "loss (ptc model ... without --loss) and with --dim batch=1");
    }
    ids = p;
  }
  if (ids == nullptr || ids->type().dtype != ir::DType::kI64 || ids->type().rank() != 2 ||
      ids->type().shape[0] != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "generation needs token ids i64[1, T]; this plan's input is ",
        ids ? ids->type().ToString() : "missing", " (compile with --dim batch=1)"));
  }
  if (f->results().empty() || f->results()[0]->type().rank() != 3) {
    return absl::InvalidArgumentError("generation needs logits [1, T, V] as the first output");
  }
  const int64_t T = ids->type().shape[1];
  const int64_t V = f->results()[0]->type().shape[2];
  if (V < 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("byte-level generation needs a vocabulary of at least 256, got ", V));
  }
  PTC_ASSIGN_OR_RETURN(auto exec, cpu::Executor::Create(plan));
  std::vector<int64_t> tokens;
  for (unsigned char c : o.prompt) tokens.push_back(c);
  if (tokens.empty()) tokens.push_back('\n');
  std::mt19937_64 rng(o.seed);
  std::string out;
  ir::Tensor input(ir::DType::kI64, {1, T});
  std::vector<std::pair<float, int64_t>> cand(V);
  for (int64_t step = 0; step < o.tokens; ++step) {
    int64_t n = std::min<int64_t>(T, tokens.size());
    int64_t* in = input.mutable_data_as<int64_t>();
    std::fill(in, in + T, 0);
    std::copy(tokens.end() - n, tokens.end(), in);
    PTC_ASSIGN_OR_RETURN(std::vector<ir::Tensor> outs, exec->Run({{ids->name(), input}}));
    const ir::Tensor& logits = outs[0];
    if (logits.dtype() != ir::DType::kF32) {
      return absl::InvalidArgumentError("generation needs f32 logits");
    }
    const float* row = logits.data_as<float>() + (n - 1) * V;
    int64_t next = 0;
    if (o.temperature <= 0) {
      next = std::max_element(row, row + 256) - row;
    } else {
      for (int64_t v = 0; v < 256; ++v) cand[v] = {row[v], v};  // bytes only
      int64_t k = o.top_k > 0 ? std::min<int64_t>(o.top_k, 256) : 256;
      std::partial_sort(cand.begin(), cand.begin() + k, cand.begin() + 256,
                        [](const auto& a, const auto& b) { return a.first > b.first; });
      double mx = cand[0].first, sum = 0;
      std::vector<double> p(k);
      for (int64_t i = 0; i < k; ++i) sum += p[i] = std::exp((cand[i].first - mx) / o.temperature);
      double r = std::uniform_real_distribution<double>(0, sum)(rng);
      next = cand[k - 1].second;
      for (int64_t i = 0; i < k; ++i) {
        if ((r -= p[i]) <= 0) {
          next = cand[i].second;
          break;
        }
      }
    }
    tokens.push_back(next);
    std::string piece(1, static_cast<char>(next));
    out += piece;
    if (o.on_token) o.on_token(piece);
  }
  return out;
}

}  // namespace ptc::generate
