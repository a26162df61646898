#include "compiler/driver/cost_report.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "passes/memory_analysis.h"

namespace ptc::driver {

double CostReport::IdealMfu() const {
  return ms > 0 && options.peak_tflops > 0 ? flops / (ms * 1e-3 * options.peak_tflops * 1e12)
                                           : 0;
}

double CostReport::IdealTokensPerSecond() const {
  return ms > 0 ? static_cast<double>(tokens) / (ms * 1e-3) : 0;
}

CostReport BuildCostReport(const ir::Function& function, const CostOptions& options,
                           const plan::MemoryPlan* memory) {
  std::map<std::string, std::string> alias_of;  // value -> the buffer it aliases
  if (memory != nullptr) {
    for (const auto& b : memory->buffers) {
      if (!b.alias_of.empty()) alias_of[b.value] = b.alias_of;
    }
  }
  CostReport r;
  r.function = function.name();
  r.options = options;
  for (const ir::Value* p : function.params()) {
    const ir::DType d = p->type().dtype;
    if (!p->is_param() && (d == ir::DType::kI64 || d == ir::DType::kI32)) {
      r.tokens = std::max<int64_t>(0, p->type().num_elements());
      break;
    }
  }
  const double peak = options.peak_tflops * 1e12, bw = options.bandwidth_gbs * 1e9;
  std::map<std::string, OpCost> by_op;
  for (const auto& n : function.nodes()) {
    const std::string& op = n->op();
    passes::OpCost c = passes::EstimateCost(*n);
    if (op == "assign" && n->num_inputs() == 2) {  // (target, new value) updated in place
      auto it = alias_of.find(n->input(1)->name());
      if (it != alias_of.end() && it->second == n->input(0)->name()) c = {};
    }
    OpCost& o = by_op[op];
    o.op = op;
    ++o.count;
    const double cms = peak > 0 ? 1e3 * c.flops / peak : 0;
    const double mms = bw > 0 ? 1e3 * static_cast<double>(c.bytes) / bw : 0;
    o.flops += c.flops;
    o.bytes += static_cast<double>(c.bytes);
    o.compute_ms += cms;
    o.memory_ms += mms;
    o.ms += std::max(cms, mms);
    o.memory_bound += mms > cms;
  }
  for (auto& [op, o] : by_op) {
    r.flops += o.flops;
    r.bytes += o.bytes;
    r.ms += o.ms;
    r.compute_ms += o.compute_ms;
    r.memory_ms += o.memory_ms;
    r.ops.push_back(o);
  }
  std::stable_sort(r.ops.begin(), r.ops.end(),
                   [](const OpCost& a, const OpCost& b) { return a.ms > b.ms; });
  return r;
}

std::string CostReportText(const CostReport& r) {
  std::string s = absl::StrFormat(
      "@%s at the roofline of %.0f TFLOP/s and %.0f GB/s (passes::EstimateCost: operands and "
      "results moved once, a lower bound)\n",
      r.function, r.options.peak_tflops, r.options.bandwidth_gbs);
  absl::StrAppendFormat(&s, "  %-22s %6s %12s %10s %10s %7s  %s\n", "op", "nodes", "GFLOP", "GB",
                        "ideal ms", "share", "bound");
  for (const OpCost& o : r.ops) {
    if (o.ms <= 0 && o.flops <= 0 && o.bytes <= 0) continue;
    const std::string bound =
        o.memory_bound == 0 ? "compute"
        : o.memory_bound == o.count ? "memory"
                                    : absl::StrCat("memory (", o.memory_bound, " of ", o.count, ")");
    absl::StrAppendFormat(&s, "  %-22s %6d %12.1f %10.2f %10.3f %6.1f%%  %s\n", o.op, o.count,
                          o.flops / 1e9, o.bytes / 1e9, o.ms, r.ms > 0 ? 100 * o.ms / r.ms : 0,
                          bound);
  }
  absl::StrAppendFormat(&s, "  %-22s %6s %12.1f %10.2f %10.3f\n", "total", "", r.flops / 1e9,
                        r.bytes / 1e9, r.ms);
  absl::StrAppendFormat(&s,
                        "ideal step: %.2f ms (the FLOPs alone %.2f ms at the peak, the bytes "
                        "alone %.2f ms at the bandwidth); MFU at the roofline %.1f%%",
                        r.ms, r.compute_ms, r.memory_ms, 100 * r.IdealMfu());
  if (r.tokens > 0) {
    absl::StrAppendFormat(&s, "; %lld tokens per step: at most %.0f tokens/s",
                          static_cast<long long>(r.tokens), r.IdealTokensPerSecond());
  }
  absl::StrAppend(&s, "\n");
  return s;
}

std::string CostReportJson(const CostReport& r) {
  nlohmann::json j;
  j["function"] = r.function;
  j["peak_tflops"] = r.options.peak_tflops;
  j["bandwidth_gbs"] = r.options.bandwidth_gbs;
  j["flops"] = r.flops;
  j["bytes"] = r.bytes;
  j["ideal_ms"] = r.ms;
  j["compute_ms"] = r.compute_ms;
  j["memory_ms"] = r.memory_ms;
  j["ideal_mfu"] = r.IdealMfu();
  j["tokens"] = r.tokens;
  j["ideal_tokens_per_s"] = r.IdealTokensPerSecond();
  nlohmann::json ops = nlohmann::json::array();
  for (const OpCost& o : r.ops) {
    ops.push_back({{"op", o.op},
                   {"nodes", o.count},
                   {"flops", o.flops},
                   {"bytes", o.bytes},
                   {"ideal_ms", o.ms},
                   {"compute_ms", o.compute_ms},
                   {"memory_ms", o.memory_ms},
                   {"memory_bound_nodes", o.memory_bound}});
  }
  j["ops"] = ops;
  return j.dump(2);
}

}  // namespace ptc::driver
