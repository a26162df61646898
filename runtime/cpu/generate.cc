#include "runtime/cpu/generate.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "compiler/support/status.h"
#include "runtime/cpu/executor.h"

namespace ptc::generate {
namespace {

bool IsInput(const ir::Value* p) { return !p->is_param() && p->flags().count("state") == 0; }

// Samples the next byte from one row of logits (bytes only: the first 256 entries).
class Sampler {
 public:
  explicit Sampler(const GenerateOptions& o) : o_(o), rng_(o.seed), cand_(256) {}

  int64_t Next(const float* row) {
    if (o_.temperature <= 0) return std::max_element(row, row + 256) - row;
    for (int64_t v = 0; v < 256; ++v) cand_[v] = {row[v], v};
    const int64_t k = o_.top_k > 0 ? std::min<int64_t>(o_.top_k, 256) : 256;
    std::partial_sort(cand_.begin(), cand_.begin() + k, cand_.end(),
                      [](const auto& a, const auto& b) { return a.first > b.first; });
    double mx = cand_[0].first, sum = 0;
    std::vector<double> p(k);
    for (int64_t i = 0; i < k; ++i) sum += p[i] = std::exp((cand_[i].first - mx) / o_.temperature);
    double r = std::uniform_real_distribution<double>(0, sum)(rng_);
    for (int64_t i = 0; i < k; ++i) {
      if ((r -= p[i]) <= 0) return cand_[i].second;
    }
    return cand_[k - 1].second;
  }

 private:
  const GenerateOptions& o_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int64_t>> cand_;
};

struct Shapes {
  const ir::Value* ids = nullptr;
  int64_t T = 0;
  int64_t V = 0;
};

absl::StatusOr<Shapes> CheckPlan(const plan::Plan& plan) {
  const ir::Function* f = plan.module ? plan.module->main() : nullptr;
  if (f == nullptr) return absl::InvalidArgumentError("plan has no main function");
  Shapes s;
  for (const ir::Value* p : f->params()) {
    if (!IsInput(p)) continue;
    if (s.ids != nullptr) {
      return absl::InvalidArgumentError(
          "generation needs a plan with one input (token ids); compile the model without its "
          "loss (ptc model ... without --loss) and with --dim batch=1");
    }
    s.ids = p;
  }
  if (s.ids == nullptr || s.ids->type().dtype != ir::DType::kI64 || s.ids->type().rank() != 2 ||
      s.ids->type().shape[0] != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "generation needs token ids i64[1, T]; this plan's input is ",
        s.ids ? s.ids->type().ToString() : "missing", " (compile with --dim batch=1)"));
  }
  if (f->results().empty() || f->results()[0]->type().rank() != 3 ||
      f->results()[0]->type().dtype != ir::DType::kF32) {
    return absl::InvalidArgumentError("generation needs f32 logits [1, T, V] as the first output");
  }
  s.T = s.ids->type().shape[1];
  s.V = f->results()[0]->type().shape[2];
  if (s.V < 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("byte-level generation needs a vocabulary of at least 256, got ", s.V));
  }
  return s;
}

std::vector<int64_t> PromptTokens(const std::string& prompt) {
  std::vector<int64_t> tokens;
  for (unsigned char c : prompt) tokens.push_back(c);
  if (tokens.empty()) tokens.push_back('\n');
  return tokens;
}

absl::StatusOr<Runner> MakeRunner(const GenerateOptions& o, const plan::Plan& plan,
                                  bool decoder) {
  return o.runner_factory ? o.runner_factory(plan, decoder) : CpuRunner(plan, decoder);
}

absl::StatusOr<std::string> GenerateFullWindow(const plan::Plan& plan, const Shapes& s,
                                               const GenerateOptions& o) {
  PTC_ASSIGN_OR_RETURN(Runner run, MakeRunner(o, plan, /*decoder=*/false));
  std::vector<int64_t> tokens = PromptTokens(o.prompt);
  Sampler sampler(o);
  std::string out;
  ir::Tensor input(ir::DType::kI64, {1, s.T});
  for (int64_t step = 0; step < o.tokens; ++step) {
    int64_t n = std::min<int64_t>(s.T, tokens.size());
    int64_t* in = input.mutable_data_as<int64_t>();
    std::fill(in, in + s.T, 0);
    std::copy(tokens.end() - n, tokens.end(), in);
    PTC_ASSIGN_OR_RETURN(std::vector<ir::Tensor> outs, run({{s.ids->name(), input}}));
    int64_t next = sampler.Next(outs[0].data_as<float>() + (n - 1) * s.V);
    tokens.push_back(next);
    std::string piece(1, static_cast<char>(next));
    out += piece;
    if (o.on_token) o.on_token(piece);
  }
  return out;
}

absl::StatusOr<std::string> GenerateWithCache(const Shapes& s, const GenerateOptions& o) {
  const plan::Plan& dp = *o.decode_plan;
  const ir::Function* f = dp.module ? dp.module->main() : nullptr;
  if (f == nullptr) return absl::InvalidArgumentError("the decode plan has no function");
  const ir::Value* ids = nullptr;
  const ir::Value* pos = nullptr;
  for (const ir::Value* p : f->params()) {
    if (IsInput(p)) (p->type().rank() == 2 ? ids : pos) = p;
  }
  if (ids == nullptr || pos == nullptr || ids->type() != ir::TensorType{ir::DType::kI64, {1, 1}} ||
      pos->type() != ir::TensorType{ir::DType::kI64, {1}} || f->results().empty() ||
      f->results()[0]->type() != ir::TensorType{ir::DType::kF32, {1, 1, s.V}}) {
    return absl::InvalidArgumentError(
        "the decode plan must take ids i64[1,1] and pos i64[1] and return logits [1,1,V]");
  }
  PTC_ASSIGN_OR_RETURN(Runner run, MakeRunner(o, dp, /*decoder=*/true));
  ir::Tensor id(ir::DType::kI64, {1, 1}), at(ir::DType::kI64, {1});
  int64_t n = 0;  // positions in the cache
  std::vector<ir::Tensor> outs;
  auto feed = [&](int64_t token) -> absl::Status {
    id.mutable_data_as<int64_t>()[0] = token;
    at.mutable_data_as<int64_t>()[0] = n++;
    PTC_ASSIGN_OR_RETURN(outs, run({{ids->name(), id}, {pos->name(), at}}));
    return absl::OkStatus();
  };
  std::vector<int64_t> tokens = PromptTokens(o.prompt);
  const int64_t first = std::max<int64_t>(0, static_cast<int64_t>(tokens.size()) - s.T);
  for (size_t i = first; i < tokens.size(); ++i) PTC_RETURN_IF_ERROR(feed(tokens[i]));
  Sampler sampler(o);
  std::string out;
  for (int64_t step = 0; step < o.tokens; ++step) {
    int64_t next = sampler.Next(outs[0].data_as<float>());
    tokens.push_back(next);
    std::string piece(1, static_cast<char>(next));
    out += piece;
    if (o.on_token) o.on_token(piece);
    if (step + 1 == o.tokens) break;
    if (n == s.T) {  // full: restart with the last T/2 tokens
      n = 0;
      const int64_t keep = std::max<int64_t>(1, s.T / 2);
      for (size_t i = tokens.size() - keep; i + 1 < tokens.size(); ++i) {
        PTC_RETURN_IF_ERROR(feed(tokens[i]));
      }
    }
    PTC_RETURN_IF_ERROR(feed(next));
  }
  return out;
}

}  // namespace

absl::StatusOr<Runner> CpuRunner(const plan::Plan& plan, bool decoder) {
  const ir::Function* f = plan.module ? plan.module->main() : nullptr;
  if (f == nullptr) return absl::InvalidArgumentError("plan has no main function");
  cpu::ExecutorOptions eo;
  eo.function = f->name();
  if (decoder) {
    // Weights are read in place from the plan (the executor would copy them otherwise: the
    // decoder's assigns make it look like a training step).
    for (const ir::Value* p : f->params()) {
      if (!p->is_param()) continue;
      auto it = plan.module->tensors().find(p->name());
      if (it != plan.module->tensors().end()) eo.shared_state[p->name()] = it->second;
    }
  }
  PTC_ASSIGN_OR_RETURN(std::unique_ptr<cpu::Executor> exec,
                       decoder ? cpu::Executor::Create(plan, eo) : cpu::Executor::Create(plan));
  std::shared_ptr<cpu::Executor> shared(std::move(exec));
  return Runner([shared](const std::map<std::string, ir::Tensor>& inputs) {
    return shared->Run(inputs);
  });
}

absl::Status CheckGenerationPlan(const plan::Plan& plan) { return CheckPlan(plan).status(); }

absl::StatusOr<std::string> Generate(const plan::Plan& plan, const GenerateOptions& o) {
  PTC_ASSIGN_OR_RETURN(Shapes s, CheckPlan(plan));
  if (o.tokens <= 0) return std::string();
  if (o.decode_plan != nullptr) return GenerateWithCache(s, o);
  return GenerateFullWindow(plan, s, o);
}

}  // namespace ptc::generate
